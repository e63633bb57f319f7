//! The ops endpoints over a real socket: liveness, readiness that follows
//! the role's check, and the metrics exposition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moralsweep_telemetry::ops::{spawn_ops, HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
use moralsweep_telemetry::Metrics;

#[tokio::test]
async fn healthz_readyz_and_metrics_answer() {
    let metrics = Metrics::new("coordinator");
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let r = ready.clone();
    let server = spawn_ops(
        "127.0.0.1:0",
        metrics.clone(),
        move || {
            let r = r.clone();
            async move { r.load(Ordering::SeqCst) }
        },
        async move {
            let _ = stop_rx.await;
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr);
    let client = reqwest::Client::new();

    let live = client
        .get(format!("{base}{HEALTHZ_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    let not_ready = client
        .get(format!("{base}{READYZ_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), 503);
    ready.store(true, Ordering::SeqCst);
    let is_ready = client
        .get(format!("{base}{READYZ_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(is_ready.status(), 200);

    metrics.slots_done("sw", "m", 7);
    metrics.set_workers(3);
    let resp = client
        .get(format!("{base}{METRICS_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("moralsweep_slots_done_total{sweep=\"sw\",model=\"m\"} 7"),
        "{body}"
    );
    assert!(body.contains("moralsweep_workers 3"), "{body}");

    let missing = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    stop_tx.send(()).unwrap();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_hanging_readiness_check_counts_as_not_ready() {
    let (_stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = spawn_ops(
        "127.0.0.1:0",
        Metrics::new("coordinator"),
        || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            true
        },
        async move {
            let _ = stop_rx.await;
        },
    )
    .await
    .unwrap();
    let resp = reqwest::get(format!("http://{}{READYZ_PATH}", server.local_addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("timed out"));
}

#[tokio::test]
async fn binding_a_busy_port_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = spawn_ops(
        &addr,
        Metrics::new("worker"),
        || async { true },
        std::future::pending::<()>(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains(&addr), "{err}");
}
