//! Span export end to end: a real OTLP receiver (gRPC and HTTP/protobuf) in
//! this process, and a child process (this test binary run again, see
//! `child_entry`) configured only through the standard `OTEL_*` variables,
//! which sets up telemetry with `init`, emits spans and log lines carrying
//! an API key and a worker token, and exits. The spans must arrive with the
//! role's service name and their attributes, and neither the exported bytes
//! nor the child's log output may contain either secret.

use std::process::Command;
use std::time::Duration;

use moralsweep_telemetry::{init, TelemetryOptions};
use moralsweep_testsupport::otlp::OtlpReceiver;

const CHILD_VAR: &str = "MORALSWEEP_TELEMETRY_TEST_CHILD";
const API_KEY: &str = "sk-test-otlp-9f8e7d6c5b4a3210";
const WORKER_TOKEN: &str = "wtok-otlp-0123456789abcdef";
const KEY_VAR: &str = "MORALSWEEP_TEST_PROVIDER_KEY";

/// Not a test of its own: the body of the child process. Does nothing unless
/// the parent set `MORALSWEEP_TELEMETRY_TEST_CHILD`.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_VAR) else {
        return;
    };
    let key = std::env::var(KEY_VAR).unwrap();
    let token = std::env::var("MORALSWEEP_TOKEN").unwrap();
    let guard = init(
        &role,
        TelemetryOptions {
            secret_env_vars: vec![KEY_VAR.to_string()],
            ..TelemetryOptions::default()
        },
    )
    .expect("init");
    println!(
        "CHILD exporting={} service={}",
        guard.exporting(),
        guard.service_name()
    );
    {
        let sweep = tracing::info_span!("sweep", sweep = "s-otlp", models = 1);
        let _s = sweep.enter();
        let model = tracing::info_span!("model", sweep = "s-otlp", model.key = "m-one");
        let _m = model.enter();
        let call = tracing::info_span!(
            "provider_call",
            model.key = "m-one",
            provider = "sim",
            rate_group = "g-one",
            http.status = 200,
            latency_ms = 12,
            tokens.input = 100,
            tokens.output = 1,
            retries = 0,
            url = %format!("http://127.0.0.1:1/v1beta/models/x:generate?key={key}"),
        );
        call.in_scope(|| {
            tracing::info!(authorization = %format!("Bearer {token}"), "sent a request with key {key}");
        });
        tracing::warn!("the provider echoed {key} back");
    }
    guard.shutdown();
}

fn run_child(
    protocol: Option<&str>,
    endpoint: Option<String>,
    extra: &[(&str, &str)],
) -> (String, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "worker")
        .env(KEY_VAR, API_KEY)
        .env("MORALSWEEP_TOKEN", WORKER_TOKEN)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("RUST_LOG");
    if let Some(p) = protocol {
        cmd.env("OTEL_EXPORTER_OTLP_PROTOCOL", p);
    }
    if let Some(e) = endpoint {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", e);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

async fn export_roundtrip(protocol: &str, log_format: &str) {
    let rx = OtlpReceiver::start().await.unwrap();
    let endpoint = rx.endpoint(protocol);
    let protocol_owned = protocol.to_string();
    let log_format_owned = log_format.to_string();
    let (stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_child(
            Some(&protocol_owned),
            Some(endpoint),
            &[
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-test-tenant=moralsweep"),
                ("MORALSWEEP_LOG_FORMAT", &log_format_owned),
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        stdout.contains("CHILD exporting=true service=moralsweep-worker"),
        "{stdout}"
    );

    // The child flushed at shutdown, before it exited: everything is here.
    let spans = rx.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for want in ["sweep", "model", "provider_call"] {
        assert!(names.contains(&want), "span {want} missing from {names:?}");
    }
    let call = spans.iter().find(|s| s.name == "provider_call").unwrap();
    assert_eq!(call.service_name, "moralsweep-worker");
    assert_eq!(
        call.resource.get("moralsweep.role").map(String::as_str),
        Some("worker")
    );
    for (k, v) in [
        ("model.key", "m-one"),
        ("provider", "sim"),
        ("rate_group", "g-one"),
        ("http.status", "200"),
        ("tokens.input", "100"),
        ("tokens.output", "1"),
        ("retries", "0"),
    ] {
        assert_eq!(
            call.attributes.get(k).map(String::as_str),
            Some(v),
            "{k} in {:?}",
            call.attributes
        );
    }
    assert!(
        call.attributes["url"].contains("key=[redacted]"),
        "{:?}",
        call.attributes
    );
    // Parent/child links: provider_call inside model inside sweep, one trace.
    let model = spans.iter().find(|s| s.name == "model").unwrap();
    let sweep = spans.iter().find(|s| s.name == "sweep").unwrap();
    assert_eq!(call.parent_span_id, model.span_id);
    assert_eq!(model.parent_span_id, sweep.span_id);
    assert_eq!(call.trace_id, sweep.trace_id);
    // The log event inside the call became a span event, redacted.
    let (ev_name, ev_attrs) = call
        .events
        .iter()
        .find(|(n, _)| n.contains("sent a request"))
        .expect("the log event inside provider_call is a span event");
    assert!(ev_name.contains("[redacted]"), "{ev_name}");
    assert_eq!(
        ev_attrs.get("authorization").map(String::as_str),
        Some("Bearer [redacted]")
    );

    // Headers from OTEL_EXPORTER_OTLP_HEADERS arrive with every export.
    let exports = rx.exports();
    assert!(exports
        .iter()
        .all(|e| e.transport == if protocol == "grpc" { "grpc" } else { "http" }));
    assert!(exports
        .iter()
        .all(|e| e.headers.get("x-test-tenant").map(String::as_str) == Some("moralsweep")));

    // No secret anywhere: not in the exported bytes, not in the logs.
    for secret in [API_KEY, WORKER_TOKEN] {
        assert!(!rx.raw_contains(secret), "{secret} was exported");
        assert!(!stderr.contains(secret), "{secret} was logged:\n{stderr}");
        assert!(!stdout.contains(secret), "{secret} was printed:\n{stdout}");
    }
    assert!(stderr.contains("[redacted]"), "{stderr}");
    if log_format == "json" {
        for line in stderr.lines().filter(|l| l.starts_with('{')) {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{e}: {line}"));
        }
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with('{') && l.contains("\"level\":\"WARN\"")),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn spans_arrive_over_otlp_grpc_without_secrets() {
    if std::env::var(CHILD_VAR).is_ok() {
        return;
    }
    export_roundtrip("grpc", "json").await;
}

#[tokio::test]
async fn spans_arrive_over_otlp_http_protobuf_without_secrets() {
    if std::env::var(CHILD_VAR).is_ok() {
        return;
    }
    export_roundtrip("http/protobuf", "human").await;
}

#[tokio::test]
async fn service_name_is_overridable_and_nothing_is_exported_without_endpoint() {
    if std::env::var(CHILD_VAR).is_ok() {
        return;
    }
    let rx = OtlpReceiver::start().await.unwrap();
    let endpoint = rx.endpoint("grpc");
    let (stdout, _) = tokio::task::spawn_blocking(move || {
        run_child(
            Some("grpc"),
            Some(endpoint),
            &[("OTEL_SERVICE_NAME", "ms-custom")],
        )
    })
    .await
    .unwrap();
    assert!(stdout.contains("service=ms-custom"), "{stdout}");
    assert!(rx.spans().iter().all(|s| s.service_name == "ms-custom"));
    assert!(!rx.spans().is_empty());

    // No endpoint: no exporter, and the process still logs (redacted).
    let (stdout, stderr) = tokio::task::spawn_blocking(|| run_child(None, None, &[]))
        .await
        .unwrap();
    assert!(stdout.contains("CHILD exporting=false"), "{stdout}");
    assert!(
        !stderr.contains(API_KEY) && stderr.contains("[redacted]"),
        "{stderr}"
    );

    // Turned off explicitly, with an endpoint set.
    let endpoint = rx.endpoint("grpc");
    let (stdout, _) = tokio::task::spawn_blocking(move || {
        run_child(
            Some("grpc"),
            Some(endpoint),
            &[("OTEL_TRACES_EXPORTER", "none")],
        )
    })
    .await
    .unwrap();
    assert!(stdout.contains("CHILD exporting=false"), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_collector_does_not_stop_or_hang_the_process() {
    if std::env::var(CHILD_VAR).is_ok() {
        return;
    }
    // A port nobody listens on: exports fail, the process carries on and exits.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let started = std::time::Instant::now();
    let (stdout, _) = tokio::task::spawn_blocking(move || {
        run_child(
            Some("grpc"),
            Some(endpoint),
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")],
        )
    })
    .await
    .unwrap();
    assert!(stdout.contains("CHILD exporting=true"), "{stdout}");
    // Generous bound: the exit is bounded by the export timeout, not forever.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn bad_protocol_is_named_in_the_error() {
    if std::env::var(CHILD_VAR).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "worker")
        .env(KEY_VAR, API_KEY)
        .env("MORALSWEEP_TOKEN", WORKER_TOKEN)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && text.contains("grpc"),
        "{text}"
    );
}
