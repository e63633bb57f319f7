//! The gRPC contract against a real coordinator process (with its own
//! redis-server): unauthenticated calls are refused, bad requests get the
//! right status code and a readable message, and duplicate or late reports
//! change nothing.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moralsweep_proto::v1 as pb;
use moralsweep_testsupport::{free_port, RedisServer};
use moralsweep_worker::client::{sweeps_client, workers_client, ConnectOptions};
use tonic::Code;

const TOKEN: &str = "api-test-token";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn coordinator(redis: &RedisServer, dir: &Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(bin())
        .args([
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis",
            &redis.url(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--lease-ttl",
            "0.5",
            "--reclaim-every",
            "0.2",
        ])
        .env("MORALSWEEP_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "coordinator did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

fn opts(url: &str, token: Option<&str>) -> ConnectOptions {
    ConnectOptions {
        url: url.to_string(),
        token: token.map(String::from),
        tls: None,
        timeout: Some(Duration::from_secs(10)),
    }
}

fn spec() -> String {
    spec_text("api", &["m"], 3, 2, "")
}

fn personas() -> Vec<String> {
    (0..3).map(|i| format!("persona {i}")).collect()
}

fn sample(slot: u32, lease: &str, rating: i32) -> pb::SlotResult {
    pb::SlotResult {
        lease_id: lease.to_string(),
        sweep: "api".into(),
        model: "m".into(),
        mode: "persona".into(),
        slot,
        outcome: Some(pb::slot_result::Outcome::Sample(pb::SampleResult {
            rating,
            failures: 0,
            response: rating.to_string(),
            collected_at: "2026-01-01T00:00:00.000000".into(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_bad_requests_and_duplicate_reports() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let (_coord, url) = coordinator(&redis, dir.path());

    // No token, wrong token: UNAUTHENTICATED on both services.
    for token in [None, Some("wrong")] {
        let e = sweeps_client(&opts(&url, token))
            .unwrap()
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = workers_client(&opts(&url, token))
            .unwrap()
            .lease(pb::LeaseRequest {
                worker: "x".into(),
                max_slots: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    }

    let o = opts(&url, Some(TOKEN));
    let mut sweeps = sweeps_client(&o).unwrap();
    let mut workers = workers_client(&o).unwrap();

    // Bad specs: INVALID_ARGUMENT naming the key.
    for (text, needle) in [
        (
            spec().replace("repetitions = 2", "repetitions = 0"),
            "repetitions",
        ),
        (spec().replace("synthetic", "nonesuch"), "model[0].provider"),
        (format!("{}tpm = 0\n", spec()), "model[0].tpm"),
        ("name = [".to_string(), "line 1"),
    ] {
        let e = sweeps
            .submit_sweep(pb::SubmitSweepRequest {
                spec_toml: text,
                spec_name: "s.toml".into(),
                personas: personas(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains(needle) && e.message().contains("s.toml"),
            "{e:?}"
        );
    }
    let e = sweeps
        .submit_sweep(pb::SubmitSweepRequest {
            spec_toml: spec(),
            spec_name: "s.toml".into(),
            personas: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A good one; twice is fine; a different spec under the name is not.
    let submit = |text: String| pb::SubmitSweepRequest {
        spec_toml: text,
        spec_name: "s.toml".into(),
        personas: personas(),
        ..Default::default()
    };
    let r = sweeps
        .submit_sweep(submit(spec()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created);
    assert_eq!(r.total_slots, 3 * 30 * 2 + 30 * 2);
    let r = sweeps
        .submit_sweep(submit(spec()))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.created);
    let e = sweeps
        .submit_sweep(submit(spec().replace("repetitions = 2", "repetitions = 3")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

    // Unknown sweep: NOT_FOUND; results of a running sweep: FAILED_PRECONDITION.
    let e = sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("nope"));
    let e = sweeps
        .fetch_results(pb::FetchResultsRequest {
            sweep: "api".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = workers
        .lease(pb::LeaseRequest {
            worker: "w".into(),
            max_slots: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Lease a batch of the persona unit.
    let lease = loop {
        let r = workers
            .lease(pb::LeaseRequest {
                worker: "w".into(),
                max_slots: 10,
            })
            .await
            .unwrap()
            .into_inner();
        if let Some(l) = r.leases.into_iter().find(|l| l.mode == "persona") {
            break l;
        }
    };
    let s0 = lease.slots[0];
    let s1 = lease.slots[1];
    let report = |results: Vec<pb::SlotResult>| pb::ReportRequest {
        worker: "w".into(),
        results,
        release: vec![],
        ..Default::default()
    };
    let r = workers
        .report(report(vec![sample(s0, &lease.lease_id, 3)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.recorded, r.duplicates), (1, 0));
    // The same report again, and another answer for the same slot: ignored.
    let r = workers
        .report(report(vec![
            sample(s0, &lease.lease_id, 3),
            sample(s0, &lease.lease_id, 5),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.recorded, r.duplicates), (0, 2));

    // Bad reports: out-of-range slot, unknown model, bad rating, unknown sweep.
    let mut bad = sample(1_000_000, "", 1);
    let e = workers.report(report(vec![bad.clone()])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("out of range"), "{e:?}");
    bad.slot = 0;
    bad.model = "ghost".into();
    let e = workers.report(report(vec![bad.clone()])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("ghost"), "{e:?}");
    let e = workers
        .report(report(vec![sample(0, "", 9)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("rating 9"), "{e:?}");
    bad.model = "m".into();
    bad.sweep = "nope".into();
    let e = workers.report(report(vec![bad])).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The lease expires and is reclaimed; extending it says it is lost.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = workers
        .extend_leases(pb::ExtendLeasesRequest {
            lease_ids: vec![lease.lease_id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.lost, vec![lease.lease_id.clone()]);
    // Another worker gets the unrecorded slots, never the recorded one.
    let mut regranted = Vec::new();
    for _ in 0..20 {
        let r = workers
            .lease(pb::LeaseRequest {
                worker: "w2".into(),
                max_slots: 400,
            })
            .await
            .unwrap()
            .into_inner();
        for l in r.leases.into_iter().filter(|l| l.mode == "persona") {
            regranted.push(l);
        }
        if regranted.iter().any(|l| l.slots.contains(&s1)) {
            break;
        }
    }
    assert!(
        regranted.iter().any(|l| l.slots.contains(&s1)),
        "reclaimed slot not granted again"
    );
    assert!(
        !regranted.iter().any(|l| l.slots.contains(&s0)),
        "a recorded slot was granted again"
    );
    let second = regranted.iter().find(|l| l.slots.contains(&s1)).unwrap();
    // The first worker reports late: recorded once. The second's answer is a duplicate.
    let r = workers
        .report(report(vec![sample(s1, &lease.lease_id, 2)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.recorded, r.duplicates), (1, 0));
    let r = workers
        .report(report(vec![sample(s1, &second.lease_id, 4)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.recorded, r.duplicates), (0, 1));
    let st = sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep: "api".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.done, 2);

    // Cancel: the sweep stops handing out slots.
    let c = sweeps
        .cancel_sweep(pb::CancelSweepRequest {
            sweep: "api".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.status.unwrap().state, "cancelled");
    let r = workers
        .lease(pb::LeaseRequest {
            worker: "w".into(),
            max_slots: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.leases.is_empty());
    assert!(r.retry_after_ms > 0);
}
