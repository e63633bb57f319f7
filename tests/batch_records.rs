//! Provider-batch records through a real coordinator process over gRPC, on
//! a real redis-server with an append-only file: a batch's slots belong to
//! it from before it is submitted (never leased again, whatever happens to
//! the lease they came from), its provider id survives a SIGKILL of the
//! coordinator, and a batch whose worker stopped polling goes to another
//! worker with that provider id (to poll, never to submit again); closing
//! it requeues only the slots without a recorded result.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use moralsweep_common::slot::{SampleRecord, SlotRecord};
use moralsweep_common::Mode;
use moralsweep_protocol::{Outcome, SlotReport, UnitKey};
use moralsweep_testsupport::{free_port, Persistence, RedisServer};
use moralsweep_worker::batch_link::BatchLink;
use moralsweep_worker::client::{ConnectOptions, GrpcLink};
use moralsweep_worker::runtime::Link;

const TOKEN: &str = "batch-records-test-token";

fn link(port: u16) -> GrpcLink {
    GrpcLink::new(&ConnectOptions {
        url: format!("http://127.0.0.1:{port}"),
        token: Some(TOKEN.into()),
        tls: None,
        timeout: Some(Duration::from_secs(10)),
    })
    .unwrap()
}

fn answer(unit: &UnitKey, slot: u32) -> SlotReport {
    SlotReport {
        lease_id: None,
        unit: unit.clone(),
        slot,
        outcome: Outcome::Record(SlotRecord::Sample(SampleRecord {
            rating: 3,
            failures: 0,
            response: "3".into(),
            collected_at: "2026-01-01T00:00:00.000000".into(),
        })),
    }
}

/// Every slot of `unit` a worker can lease now (leases held, not
/// reported), and the lease ids.
async fn lease_all(l: &GrpcLink, worker: &str, unit: &UnitKey) -> (BTreeSet<u32>, Vec<String>) {
    let (mut got, mut ids) = (BTreeSet::new(), Vec::new());
    loop {
        let out = l.lease(worker, 500).await.unwrap();
        if out.grants.is_empty() {
            return (got, ids);
        }
        for g in out.grants {
            if &g.lease.unit == unit {
                got.extend(g.lease.slots);
            }
            ids.push(g.lease.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_slots_survive_a_coordinator_kill_and_go_to_the_next_worker() {
    let dir = tempfile::tempdir().unwrap();
    write_personas(dir.path(), 2);
    std::fs::write(
        dir.path().join("s.toml"),
        spec_text("bt", &["m"], 2, 2, "")
            .replace("modes = [\"persona\", \"self\"]", "modes = [\"persona\"]"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let redis = RedisServer::start_with(Persistence::AofAlways);
    let ttl = ["--lease-ttl", "3", "--reclaim-every", "0.2"];
    let port = free_port();
    let mut coord = spawn_coordinator(port, &redis.url(), &data, TOKEN, &ttl, dir.path());
    submit(dir.path(), &format!("http://127.0.0.1:{port}"), TOKEN);
    let unit = UnitKey {
        sweep: "bt".into(),
        model: "m".into(),
        mode: Mode::Persona,
    };
    let total = 2 * 30 * 2;

    // Worker 1 leases 10 slots and opens a batch for six of them (and one
    // it does not hold, which the batch leaves out).
    let l1 = link(port);
    let g = l1.lease("w1", 10).await.unwrap().grants.remove(0);
    assert_eq!(g.lease.slots, (0..10).collect::<Vec<_>>());
    let b = l1
        .open_batch(
            "w1",
            vec![g.lease.id.clone()],
            unit.clone(),
            vec![0, 1, 2, 3, 4, 5, 50],
        )
        .await
        .unwrap();
    assert_eq!(b.slots, vec![0, 1, 2, 3, 4, 5]);
    assert!(b.provider_id.is_none());
    assert!(l1
        .batch_submitted("bt", &b.id, "batch_provider_1")
        .await
        .unwrap());

    // The coordinator dies (SIGKILL) with the batch in flight; worker 1
    // dies too (it simply stops extending). A new coordinator resumes from
    // Redis alone.
    coord.0.kill().unwrap();
    coord.0.wait().unwrap();
    drop(l1);
    let port = free_port();
    let _coord = spawn_coordinator(port, &redis.url(), &data, TOKEN, &ttl, dir.path());
    let l2 = link(port);
    // Until worker 1's deadline passes nobody else takes the batch.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    // Worker 2 leases everything there is: the lease of worker 1 expired, so
    // slots 6..10 come back, but never a slot of the open batch.
    let (leased, held) = lease_all(&l2, "w2", &unit).await;
    let expected: BTreeSet<u32> = (6..total).collect();
    assert_eq!(leased, expected, "batch slots must never be leased again");

    // The batch goes to worker 2, with the provider id: poll, not resubmit.
    let claimed = l2.claim_batches("w2", 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, b.id);
    assert_eq!(claimed[0].provider_id.as_deref(), Some("batch_provider_1"));
    assert_eq!(claimed[0].worker, "w2");
    assert_eq!(claimed[0].slots, b.slots);
    assert!(
        l2.claim_batches("w3", 10).await.unwrap().is_empty(),
        "held by w2"
    );
    assert!(l2
        .extend_batches("w2", vec![("bt", b.id.clone()).into()])
        .await
        .unwrap()
        .is_empty());

    // Four of the six lines answered; closing requeues the other two, which
    // are then leased like any retried slot.
    let out = l2
        .report(
            "w2",
            [0, 1, 3, 4].iter().map(|&s| answer(&unit, s)).collect(),
            vec![],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.recorded, 4);
    assert_eq!(l2.close_batch("bt", &b.id).await.unwrap(), 2);
    assert_eq!(l2.close_batch("bt", &b.id).await.unwrap(), 0, "closed once");
    // The other slots are still leased by w2; only 2 and 5 are free again.
    assert!(l2.extend(held).await.unwrap().is_empty());
    let (again, _) = lease_all(&l2, "w2", &unit).await;
    assert_eq!(again, BTreeSet::from([2, 5]));
    // Bad input: an unknown sweep, a slot out of range.
    let e = l2
        .open_batch(
            "w2",
            vec![],
            UnitKey {
                sweep: "nope".into(),
                ..unit.clone()
            },
            vec![0],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = l2
        .open_batch("w2", vec![], unit.clone(), vec![total])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}
