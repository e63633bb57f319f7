//! The store test suite: the same tests against both stores.
//!
//! Every generic test takes an `Arc<dyn Store>`; the `suite!` macro at the
//! bottom instantiates each of them once per store (module `embedded` and
//! module `redis`). The Redis tests each start their own `redis-server`
//! (see `moralsweep_testsupport`) because `reclaim_expired`
//! and `leases` see the whole store. Durability tests for each store follow
//! the generic ones.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use moralsweep_common::Mode;
use moralsweep_coordinator::store::{open_store, EmbeddedStore, Lease, RedisStore, Store};
use moralsweep_protocol::{BatchRecord, UnitKey};
use moralsweep_testsupport::{Persistence, RedisServer};

const FAR: u64 = u64::MAX / 4;

fn unit(sweep: &str, model: &str) -> UnitKey {
    UnitKey {
        sweep: sweep.into(),
        model: model.into(),
        mode: Mode::Persona,
    }
}

fn rec(slot: u32, tag: &str) -> (u32, Vec<u8>) {
    (slot, format!("{tag}:{slot}").into_bytes())
}

fn sorted_leases(mut v: Vec<Lease>) -> Vec<Lease> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    for l in &mut v {
        l.slots.sort_unstable();
    }
    v
}

async fn all_results(s: &dyn Store, u: &UnitKey) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = 0u32;
    loop {
        let page = s.scan_results(u, from, 97).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.0 + 1;
        out.extend(page);
    }
    out
}

// ----------------------------------------------------------------------
// Generic tests
// ----------------------------------------------------------------------

async fn sweeps_create_update_list_delete(s: Arc<dyn Store>) {
    assert!(s.sweep_ids().await.unwrap().is_empty());
    assert!(s.create_sweep("b", b"one").await.unwrap());
    assert!(!s.create_sweep("b", b"two").await.unwrap(), "second create");
    assert_eq!(
        s.load_sweep("b").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert!(s.create_sweep("a", b"").await.unwrap());
    assert!(s.create_sweep("c{x}:y", b"\0\xff").await.unwrap());
    assert_eq!(s.sweep_ids().await.unwrap(), vec!["a", "b", "c{x}:y"]);
    s.update_sweep("b", b"three").await.unwrap();
    assert_eq!(
        s.load_sweep("b").await.unwrap().as_deref(),
        Some(&b"three"[..])
    );
    assert_eq!(
        s.load_sweep("c{x}:y").await.unwrap().as_deref(),
        Some(&b"\0\xff"[..])
    );
    // Updating a sweep that does not exist changes nothing.
    s.update_sweep("zz", b"ghost").await.unwrap();
    assert_eq!(s.load_sweep("zz").await.unwrap(), None);
    s.delete_sweep("b").await.unwrap();
    assert_eq!(s.load_sweep("b").await.unwrap(), None);
    assert_eq!(s.sweep_ids().await.unwrap(), vec!["a", "c{x}:y"]);
    // Deleting twice (or a missing sweep) is fine.
    s.delete_sweep("b").await.unwrap();
    s.ping().await.unwrap();
}

/// The workers' usage: per field the newest version only, listed per
/// sweep, removed with its sweep.
async fn usage_keeps_the_newest_version_and_goes_with_the_sweep(s: Arc<dyn Store>) {
    assert!(s.usage("u").await.unwrap().is_empty());
    assert!(s.create_sweep("u", b"r").await.unwrap());
    assert!(s.create_sweep("u2", b"r").await.unwrap());
    s.put_usage("u", "w1\u{1f}m", 2, b"two").await.unwrap();
    // An older version arriving late, and a repeat, change nothing.
    s.put_usage("u", "w1\u{1f}m", 1, b"one").await.unwrap();
    s.put_usage("u", "w1\u{1f}m", 2, b"two again")
        .await
        .unwrap();
    s.put_usage("u", "w2\u{1f}m", 7, b"{|}").await.unwrap();
    s.put_usage("u2", "w1\u{1f}m", 1, b"other sweep")
        .await
        .unwrap();
    let mut got = s.usage("u").await.unwrap();
    got.sort();
    assert_eq!(got, vec![b"two".to_vec(), b"{|}".to_vec()]);
    s.put_usage("u", "w1\u{1f}m", 3, b"three").await.unwrap();
    let mut got = s.usage("u").await.unwrap();
    got.sort();
    assert_eq!(got, vec![b"three".to_vec(), b"{|}".to_vec()]);
    s.delete_sweep("u").await.unwrap();
    assert!(s.usage("u").await.unwrap().is_empty());
    assert_eq!(s.usage("u2").await.unwrap(), vec![b"other sweep".to_vec()]);
}

fn batch(u: &UnitKey, id: &str, slots: &[u32], worker: &str, deadline_ms: u64) -> BatchRecord {
    BatchRecord {
        id: id.into(),
        unit: u.clone(),
        slots: slots.to_vec(),
        provider_id: None,
        worker: worker.into(),
        deadline_ms,
        created_ms: 7,
    }
}

async fn batches_own_their_slots_until_closed(s: Arc<dyn Store>) {
    let u = unit("bs", "m");
    s.create_sweep("bs", b"r").await.unwrap();
    assert_eq!(
        s.grant(&u, 20, 6, "l1", "w1", FAR).await.unwrap(),
        vec![0, 1, 2, 3, 4, 5]
    );
    // Only slots the named leases hold go into the batch (9 is nobody's).
    let b = s
        .open_batch(&["l1".into()], &batch(&u, "b1", &[2, 0, 1, 9], "w1", 100))
        .await
        .unwrap();
    assert_eq!(b, batch(&u, "b1", &[0, 1, 2], "w1", 100));
    // A retried open returns the stored record, whatever it is asked.
    assert_eq!(
        s.open_batch(&["l1".into()], &batch(&u, "b1", &[3], "w9", 5))
            .await
            .unwrap(),
        b
    );
    // The lease keeps the rest; releasing it never requeues batch slots,
    // and neither does reclaiming expired leases.
    let leases = s.leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].slots, vec![3, 4, 5]);
    assert_eq!(s.release("l1").await.unwrap(), 3);
    assert!(s.reclaim_expired(FAR).await.unwrap().is_empty());
    assert_eq!(
        s.grant(&u, 20, 4, "l2", "w1", FAR).await.unwrap(),
        vec![3, 4, 5, 6]
    );
    // A batch whose slots all left: nothing stored, its lease emptied is gone.
    let none = s
        .open_batch(&["l2".into()], &batch(&u, "b0", &[0, 1], "w1", 100))
        .await
        .unwrap();
    assert!(none.slots.is_empty());
    let emptied = s
        .open_batch(&["l2".into()], &batch(&u, "b2", &[3, 4, 5, 6], "w1", FAR))
        .await
        .unwrap();
    assert_eq!(emptied.slots, vec![3, 4, 5, 6]);
    assert!(
        s.leases().await.unwrap().is_empty(),
        "lease l2 gave all its slots"
    );
    // The provider's id, the holder's deadline.
    assert!(s.batch_submitted("bs", "b1", "batch_abc").await.unwrap());
    assert!(!s.batch_submitted("bs", "nope", "x").await.unwrap());
    assert!(!s.extend_batch("bs", "b1", "w2", 150).await.unwrap());
    assert!(s.extend_batch("bs", "b1", "w1", 150).await.unwrap());
    let open = s.batches().await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].provider_id.as_deref(), Some("batch_abc"));
    assert_eq!((open[0].worker.as_str(), open[0].deadline_ms), ("w1", 150));
    // Before its deadline nobody else takes it; after, another worker does,
    // with the provider id (to poll, never to resubmit).
    assert!(s
        .claim_batches("w2", 150, 500, 10)
        .await
        .unwrap()
        .is_empty());
    let claimed = s.claim_batches("w2", 151, 500, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (
            claimed[0].id.as_str(),
            claimed[0].worker.as_str(),
            claimed[0].deadline_ms
        ),
        ("b1", "w2", 500)
    );
    assert_eq!(claimed[0].provider_id.as_deref(), Some("batch_abc"));
    assert_eq!(claimed[0].slots, vec![0, 1, 2]);
    assert!(
        !s.extend_batch("bs", "b1", "w1", 900).await.unwrap(),
        "w1 lost it"
    );
    // Results are recorded without a lease; closing requeues the rest.
    assert_eq!(
        s.record(&u, None, &[rec(1, "b")]).await.unwrap(),
        vec![true]
    );
    assert_eq!(s.close_batch("bs", "b1").await.unwrap(), 2);
    assert_eq!(s.close_batch("bs", "b1").await.unwrap(), 0, "closed once");
    assert_eq!(s.batches().await.unwrap().len(), 1);
    assert_eq!(
        s.grant(&u, 20, 3, "l3", "w1", FAR).await.unwrap(),
        vec![0, 2, 7]
    );
    // Deleting the sweep removes its batches.
    s.delete_sweep("bs").await.unwrap();
    assert!(s.batches().await.unwrap().is_empty());
}

async fn grant_cells_never_splits_a_fresh_cell(s: Arc<dyn Store>) {
    let u = unit("cells", "m");
    // Cells of 4 in 0..10, the last one short (8, 9): room for ten takes
    // all three.
    assert_eq!(
        s.grant_cells(&u, 10, 10, 4, "c1", "w", FAR).await.unwrap(),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    );
    let v = unit("cells", "n");
    assert_eq!(
        // Room for 6: one cell, never half of the second.
        s.grant_cells(&v, 10, 6, 4, "c2", "w", FAR).await.unwrap(),
        vec![0, 1, 2, 3]
    );
    // Less room than a cell: nothing fresh, and no lease is stored.
    assert!(s
        .grant_cells(&v, 10, 3, 4, "c3", "w", FAR)
        .await
        .unwrap()
        .is_empty());
    assert!(s.leases().await.unwrap().iter().all(|l| l.id != "c3"));
    // A cursor left inside a cell by a single-slot grant completes the cell
    // first, then whole cells again.
    assert_eq!(s.grant(&v, 10, 1, "c4", "w", FAR).await.unwrap(), vec![4]);
    assert_eq!(
        s.grant_cells(&v, 10, 4, 4, "c5", "w", FAR).await.unwrap(),
        vec![5, 6, 7]
    );
    // Recorded slots of a cell are skipped, the cell still taken whole.
    s.record(&v, None, &[rec(9, "late")]).await.unwrap();
    assert_eq!(
        s.grant_cells(&v, 10, 4, 4, "c6", "w", FAR).await.unwrap(),
        vec![8]
    );
    // The retry queue comes first, slot by slot, as with single grants.
    assert_eq!(s.release("c2").await.unwrap(), 4);
    assert_eq!(
        s.grant_cells(&v, 10, 3, 4, "c7", "w", FAR).await.unwrap(),
        vec![0, 1, 2]
    );
}

async fn grant_retry_first_then_fresh_never_beyond_total(s: Arc<dyn Store>) {
    let u = unit("s1", "m");
    assert_eq!(
        s.grant(&u, 10, 4, "l1", "w", FAR).await.unwrap(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        s.grant(&u, 10, 4, "l2", "w", FAR).await.unwrap(),
        vec![4, 5, 6, 7]
    );
    assert_eq!(s.release("l1").await.unwrap(), 4);
    assert_eq!(
        s.record(&u, Some("l2"), &[rec(5, "a")]).await.unwrap(),
        vec![true]
    );
    // Retry queue (0..4) first, then fresh slots up to total.
    assert_eq!(
        s.grant(&u, 10, 7, "l3", "w", FAR).await.unwrap(),
        vec![0, 1, 2, 3, 8, 9]
    );
    // Nothing left: no lease is stored.
    assert!(s.grant(&u, 10, 4, "l4", "w", FAR).await.unwrap().is_empty());
    assert!(s.leases().await.unwrap().iter().all(|l| l.id != "l4"));
    assert!(s
        .grant(&u, 10, 0, "l4b", "w", FAR)
        .await
        .unwrap()
        .is_empty());
    // Slot 5 is recorded: only 4, 6, 7 go back.
    assert_eq!(s.release("l2").await.unwrap(), 3);
    // A slot recorded while queued for retry (a late report) is skipped.
    assert_eq!(
        s.record(&u, None, &[rec(6, "late")]).await.unwrap(),
        vec![true]
    );
    assert_eq!(
        s.grant(&u, 10, 10, "l5", "w", FAR).await.unwrap(),
        vec![4, 7]
    );
    // A slot recorded before it was ever granted is skipped too.
    let v = unit("s1", "other");
    s.record(&v, None, &[rec(1, "x")]).await.unwrap();
    assert_eq!(s.grant(&v, 3, 5, "l6", "w", FAR).await.unwrap(), vec![0, 2]);
    // Units are independent: the same slot numbers in another mode.
    let w = UnitKey {
        mode: Mode::Logprob,
        ..u.clone()
    };
    assert_eq!(s.grant(&w, 2, 5, "l7", "w", FAR).await.unwrap(), vec![0, 1]);
    // Reusing a live lease id is refused.
    assert!(s.grant(&u, 100, 1, "l7", "w", FAR).await.is_err());
}

async fn record_once_duplicates_and_late_reports(s: Arc<dyn Store>) {
    let u = unit("s", "m");
    assert_eq!(
        s.grant(&u, 5, 5, "l1", "w1", 1_000).await.unwrap(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(
        s.record(&u, Some("l1"), &[rec(0, "a"), rec(1, "a")])
            .await
            .unwrap(),
        vec![true, true]
    );
    assert_eq!(s.done_count(&u).await.unwrap(), 2);
    // A duplicate report changes nothing.
    assert_eq!(
        s.record(&u, Some("l1"), &[rec(0, "dup")]).await.unwrap(),
        vec![false]
    );
    assert_eq!(s.done_count(&u).await.unwrap(), 2);
    // The lease expires: what it still held goes back.
    let reclaimed = s.reclaim_expired(2_000).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    let mut l = reclaimed[0].clone();
    l.slots.sort_unstable();
    assert_eq!(
        l,
        Lease {
            id: "l1".into(),
            unit: u.clone(),
            worker: "w1".into(),
            slots: vec![2, 3, 4],
            deadline_ms: 1_000,
        }
    );
    // A late report of the reclaimed lease is still recorded, once.
    assert_eq!(
        s.record(&u, Some("l1"), &[rec(2, "late")]).await.unwrap(),
        vec![true]
    );
    assert_eq!(s.done_count(&u).await.unwrap(), 3);
    assert_eq!(
        s.grant(&u, 5, 5, "l2", "w2", FAR).await.unwrap(),
        vec![3, 4]
    );
    assert_eq!(
        s.record(&u, Some("l2"), &[rec(2, "b"), rec(3, "b"), rec(4, "b")])
            .await
            .unwrap(),
        vec![false, true, true]
    );
    assert_eq!(s.done_count(&u).await.unwrap(), 5);
    // Every slot of l2 is recorded: the lease is gone.
    assert!(s.leases().await.unwrap().is_empty());
    assert!(!s.extend("l2", FAR).await.unwrap());
    let got = all_results(&*s, &u).await;
    let want: Vec<(u32, Vec<u8>)> = vec![
        rec(0, "a"),
        rec(1, "a"),
        rec(2, "late"),
        rec(3, "b"),
        rec(4, "b"),
    ];
    assert_eq!(got, want);
    // The same slot twice in one batch: the first wins.
    let v = unit("s", "n");
    assert_eq!(
        s.record(&v, None, &[rec(7, "x"), rec(7, "y")])
            .await
            .unwrap(),
        vec![true, false]
    );
    assert_eq!(s.done_count(&v).await.unwrap(), 1);
    assert_eq!(all_results(&*s, &v).await, vec![rec(7, "x")]);
    // A report naming a lease of another unit leaves that lease alone.
    assert!(s.grant(&u, 5, 5, "l3", "w", FAR).await.unwrap().is_empty());
    assert_eq!(
        s.grant(&v, 10, 2, "l4", "w", FAR).await.unwrap(),
        vec![0, 1]
    );
    s.record(&u, Some("l4"), &[rec(0, "z")]).await.unwrap();
    let leases = s.leases().await.unwrap();
    assert_eq!(sorted_leases(leases)[0].slots, vec![0, 1]);
    assert!(s.record(&u, None, &[]).await.unwrap().is_empty());
    // Done counters of units never touched are 0.
    assert_eq!(s.done_count(&unit("nope", "m")).await.unwrap(), 0);
}

async fn extend_release_reclaim(s: Arc<dyn Store>) {
    let u = unit("s", "m");
    assert_eq!(
        s.grant(&u, 100, 3, "l1", "w1", 1_000).await.unwrap(),
        vec![0, 1, 2]
    );
    assert_eq!(
        s.grant(&u, 100, 3, "l2", "w2", 5_000).await.unwrap(),
        vec![3, 4, 5]
    );
    let leases = sorted_leases(s.leases().await.unwrap());
    assert_eq!(leases.len(), 2);
    assert_eq!(leases[0].worker, "w1");
    assert_eq!(leases[0].deadline_ms, 1_000);
    assert_eq!(leases[0].unit, u);
    assert_eq!(leases[1].slots, vec![3, 4, 5]);
    assert!(s.extend("l1", 9_000).await.unwrap());
    assert!(!s.extend("nope", 9_000).await.unwrap());
    let reclaimed = sorted_leases(s.reclaim_expired(6_000).await.unwrap());
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].id, "l2");
    assert_eq!(reclaimed[0].worker, "w2");
    assert_eq!(reclaimed[0].slots, vec![3, 4, 5]);
    assert_eq!(reclaimed[0].deadline_ms, 5_000);
    let leases = s.leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].deadline_ms, 9_000);
    assert!(s.reclaim_expired(6_000).await.unwrap().is_empty());
    assert_eq!(s.release("l1").await.unwrap(), 3);
    assert_eq!(s.release("l1").await.unwrap(), 0);
    assert!(!s.extend("l1", 10_000).await.unwrap());
    assert!(s.leases().await.unwrap().is_empty());
    assert_eq!(
        s.grant(&u, 100, 10, "l3", "w", 7_000).await.unwrap(),
        (0..10).collect::<Vec<u32>>()
    );
    // A deadline equal to now has not passed yet.
    assert!(s.reclaim_expired(7_000).await.unwrap().is_empty());
    assert_eq!(s.reclaim_expired(7_001).await.unwrap().len(), 1);
    // An extended lease is reclaimed by its new deadline, not the old one.
    s.grant(&u, 100, 1, "l4", "w", 1_000).await.unwrap();
    assert!(s.extend("l4", 20_000).await.unwrap());
    assert!(s.reclaim_expired(10_000).await.unwrap().is_empty());
    assert_eq!(s.reclaim_expired(20_001).await.unwrap().len(), 1);
    // Released slots that were recorded meanwhile are not requeued.
    assert_eq!(
        s.grant(&u, 100, 2, "l5", "w", FAR).await.unwrap(),
        vec![0, 1]
    );
    s.record(&u, None, &[rec(0, "r")]).await.unwrap();
    assert_eq!(s.release("l5").await.unwrap(), 1);
}

async fn scan_results_order_and_paging(s: Arc<dyn Store>) {
    let u = unit("s", "m");
    let total = 1000u32;
    // Recorded in a scrambled order, every third slot missing.
    let order: Vec<u32> = (0..total)
        .map(|i| (i * 7919) % total)
        .filter(|i| i % 3 != 0)
        .collect();
    for chunk in order.chunks(100) {
        let batch: Vec<_> = chunk.iter().map(|&i| rec(i, "v")).collect();
        assert!(s.record(&u, None, &batch).await.unwrap().iter().all(|&b| b));
    }
    // Noise in other units of the same and another sweep.
    let other_mode = UnitKey {
        mode: Mode::SelfMode,
        ..u.clone()
    };
    s.record(&other_mode, None, &[rec(1, "no"), rec(2000, "no")])
        .await
        .unwrap();
    s.record(&unit("s", "m2"), None, &[rec(3, "no")])
        .await
        .unwrap();
    s.record(&unit("t", "m"), None, &[rec(4, "no")])
        .await
        .unwrap();

    let mut want: Vec<u32> = order.clone();
    want.sort_unstable();
    let mut got = Vec::new();
    let mut from = 0;
    loop {
        let page = s.scan_results(&u, from, 50).await.unwrap();
        assert!(page.len() <= 50);
        if page.is_empty() {
            break;
        }
        for (i, v) in &page {
            assert_eq!(v, &format!("v:{i}").into_bytes());
        }
        from = page.last().unwrap().0 + 1;
        got.extend(page.into_iter().map(|(i, _)| i));
    }
    assert_eq!(got, want);
    assert_eq!(s.done_count(&u).await.unwrap(), want.len() as u64);
    let page = s.scan_results(&u, 500, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![500, 502, 503]
    );
    assert!(s.scan_results(&u, 0, 0).await.unwrap().is_empty());
    assert!(s.scan_results(&u, total, 10).await.unwrap().is_empty());
    // Large and sparse slot numbers.
    let big = unit("s", "big");
    s.record(
        &big,
        None,
        &[rec(4_000_000_000, "v"), rec(1_000_000, "v"), rec(5, "v")],
    )
    .await
    .unwrap();
    let page = s.scan_results(&big, 6, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1_000_000, 4_000_000_000]
    );
    assert_eq!(s.scan_results(&big, 0, 1).await.unwrap()[0].0, 5);
}

async fn concurrent_grants_never_share_a_slot(s: Arc<dyn Store>) {
    let u = unit("s", "m");
    let total = 1500u32;
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = s.clone();
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for k in 0.. {
                let id = format!("t{t}-{k}");
                let got = s.grant(&u, total, 11, &id, "w", FAR).await.unwrap();
                if got.is_empty() {
                    break;
                }
                mine.push((id, got));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut leases = Vec::new();
    for t in tasks {
        for (id, slots) in t.await.unwrap() {
            for slot in &slots {
                assert!(seen.insert(*slot), "slot {slot} granted twice");
            }
            leases.push((id, slots));
        }
    }
    assert_eq!(seen.len(), total as usize);
    assert!(seen.iter().all(|&s| s < total));

    // Second round: half the leases are handed back, the others recorded
    // (concurrently), then everything is granted and recorded again. Every
    // slot must end up recorded exactly once.
    let mut tasks = Vec::new();
    for (n, (id, slots)) in leases.into_iter().enumerate() {
        let s = s.clone();
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                s.release(&id).await.unwrap();
                0
            } else {
                let batch: Vec<_> = slots.iter().map(|&i| rec(i, "v")).collect();
                let r = s.record(&u, Some(&id), &batch).await.unwrap();
                r.iter().filter(|&&b| b).count()
            }
        }));
    }
    let mut newly = 0;
    for t in tasks {
        newly += t.await.unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = s.clone();
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for k in 0.. {
                let id = format!("r{t}-{k}");
                let got = s.grant(&u, total, 13, &id, "w", FAR).await.unwrap();
                if got.is_empty() {
                    break;
                }
                // Report twice: the second is a duplicate.
                let batch: Vec<_> = got.iter().map(|&i| rec(i, "v")).collect();
                n += s
                    .record(&u, Some(&id), &batch)
                    .await
                    .unwrap()
                    .iter()
                    .filter(|&&b| b)
                    .count();
                assert!(s
                    .record(&u, Some(&id), &batch)
                    .await
                    .unwrap()
                    .iter()
                    .all(|&b| !b));
            }
            n
        }));
    }
    for t in tasks {
        newly += t.await.unwrap();
    }
    assert_eq!(newly, total as usize);
    assert_eq!(s.done_count(&u).await.unwrap(), total as u64);
    let got: BTreeSet<u32> = all_results(&*s, &u)
        .await
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(got, (0..total).collect());
    assert!(s.leases().await.unwrap().is_empty());
}

async fn delete_sweep_removes_units_results_and_leases(s: Arc<dyn Store>) {
    s.create_sweep("d", b"rec").await.unwrap();
    s.create_sweep("e", b"rec").await.unwrap();
    let d = unit("d", "m");
    let e = unit("e", "m");
    assert_eq!(
        s.grant(&d, 10, 4, "ld1", "w", FAR).await.unwrap(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(s.grant(&d, 10, 2, "ld2", "w", 5).await.unwrap(), vec![4, 5]);
    s.release("ld2").await.unwrap();
    s.record(&d, Some("ld1"), &[rec(0, "v")]).await.unwrap();
    assert_eq!(
        s.grant(&e, 10, 2, "le1", "w", FAR).await.unwrap(),
        vec![0, 1]
    );
    s.record(&e, None, &[rec(9, "v")]).await.unwrap();
    s.delete_sweep("d").await.unwrap();
    assert_eq!(s.sweep_ids().await.unwrap(), vec!["e"]);
    let leases = s.leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].id, "le1");
    assert_eq!(s.done_count(&d).await.unwrap(), 0);
    assert!(s.scan_results(&d, 0, 10).await.unwrap().is_empty());
    assert!(!s.extend("ld1", FAR).await.unwrap());
    assert_eq!(s.release("ld1").await.unwrap(), 0);
    // The unit starts over: cursor and retry queue are gone too.
    assert_eq!(
        s.grant(&d, 10, 3, "ld3", "w", FAR).await.unwrap(),
        vec![0, 1, 2]
    );
    // The other sweep is untouched.
    assert_eq!(s.done_count(&e).await.unwrap(), 1);
    assert_eq!(
        s.grant(&e, 10, 2, "le2", "w", FAR).await.unwrap(),
        vec![2, 3]
    );
}

/// A plain in-memory model of the store contract, to compare both stores
/// against on random operation sequences.
#[derive(Default)]
struct Model {
    cursor: std::collections::HashMap<UnitKey, u32>,
    retry: std::collections::HashMap<UnitKey, BTreeSet<u32>>,
    results: std::collections::BTreeMap<(UnitKey, u32), Vec<u8>>,
    leases: std::collections::BTreeMap<String, Lease>,
    /// Open batches by (sweep, id).
    batches: std::collections::BTreeMap<(String, String), BatchRecord>,
}

impl Model {
    fn grant(
        &mut self,
        u: &UnitKey,
        total: u32,
        (max, cell): (u32, u32),
        id: &str,
        deadline: u64,
    ) -> Vec<u32> {
        let mut got = Vec::new();
        if max == 0 {
            return got;
        }
        let retry = self.retry.entry(u.clone()).or_default();
        while got.len() < max as usize {
            let Some(slot) = retry.pop_first() else { break };
            if slot < total && !self.results.contains_key(&(u.clone(), slot)) {
                got.push(slot);
            }
        }
        // Fresh slots in whole cells; a cursor inside a cell completes it.
        let cursor = self.cursor.entry(u.clone()).or_default();
        while *cursor < total {
            let end = (*cursor / cell * cell + cell).min(total);
            if got.len() + (end - *cursor) as usize > max as usize {
                break;
            }
            for slot in *cursor..end {
                if !self.results.contains_key(&(u.clone(), slot)) {
                    got.push(slot);
                }
            }
            *cursor = end;
        }
        if !got.is_empty() {
            self.leases.insert(
                id.to_string(),
                Lease {
                    id: id.to_string(),
                    unit: u.clone(),
                    worker: "w".into(),
                    slots: got.clone(),
                    deadline_ms: deadline,
                },
            );
        }
        got
    }

    /// `grant` from the retry queue only.
    fn grant_queued(
        &mut self,
        u: &UnitKey,
        total: u32,
        max: u32,
        id: &str,
        deadline: u64,
    ) -> Vec<u32> {
        let cursor = *self.cursor.entry(u.clone()).or_default();
        self.cursor.insert(u.clone(), total);
        let got = self.grant(u, total, (max, 1), id, deadline);
        self.cursor.insert(u.clone(), cursor);
        got
    }

    /// `record`, queueing `fanout` slots of `spawn` per newly recorded slot.
    fn record_spawning(
        &mut self,
        u: &UnitKey,
        lease: Option<&str>,
        batch: &[(u32, Vec<u8>)],
        spawn: &UnitKey,
        fanout: u32,
    ) -> Vec<bool> {
        let out = self.record(u, lease, batch);
        for ((slot, _), new) in batch.iter().zip(&out) {
            if *new {
                let q = self.retry.entry(spawn.clone()).or_default();
                for k in 0..fanout {
                    q.insert(slot * fanout + k);
                }
            }
        }
        out
    }

    fn record(&mut self, u: &UnitKey, lease: Option<&str>, batch: &[(u32, Vec<u8>)]) -> Vec<bool> {
        let mut out = Vec::new();
        for (slot, v) in batch {
            let key = (u.clone(), *slot);
            let new = !self.results.contains_key(&key);
            if new {
                self.results.insert(key, v.clone());
            }
            out.push(new);
        }
        if let Some(id) = lease {
            if let Some(l) = self.leases.get_mut(id).filter(|l| &l.unit == u) {
                l.slots.retain(|s| !batch.iter().any(|(b, _)| b == s));
                if l.slots.is_empty() {
                    self.leases.remove(id);
                }
            }
        }
        out
    }

    fn release(&mut self, id: &str) -> Option<(Lease, u32)> {
        let l = self.leases.remove(id)?;
        let mut n = 0;
        for &s in &l.slots {
            if !self.results.contains_key(&(l.unit.clone(), s)) {
                self.retry.entry(l.unit.clone()).or_default().insert(s);
                n += 1;
            }
        }
        Some((l, n))
    }

    fn open_batch(&mut self, lease_ids: &[String], b: &BatchRecord) -> BatchRecord {
        let key = (b.unit.sweep.clone(), b.id.clone());
        if let Some(open) = self.batches.get(&key) {
            return open.clone();
        }
        let mut kept = Vec::new();
        for &slot in &b.slots {
            let holder = lease_ids.iter().find(|id| {
                self.leases
                    .get(id.as_str())
                    .is_some_and(|l| l.unit == b.unit && l.slots.contains(&slot))
            });
            if let Some(id) = holder {
                let l = self.leases.get_mut(id.as_str()).unwrap();
                l.slots.retain(|&s| s != slot);
                if !self.results.contains_key(&(b.unit.clone(), slot)) {
                    kept.push(slot);
                }
            }
        }
        for id in lease_ids {
            if self
                .leases
                .get(id.as_str())
                .is_some_and(|l| l.unit == b.unit && l.slots.is_empty())
            {
                self.leases.remove(id.as_str());
            }
        }
        kept.sort_unstable();
        let stored = BatchRecord {
            slots: kept,
            ..b.clone()
        };
        if !stored.slots.is_empty() {
            self.batches.insert(key, stored.clone());
        }
        stored
    }

    fn close_batch(&mut self, sweep: &str, id: &str) -> u32 {
        let Some(b) = self.batches.remove(&(sweep.to_string(), id.to_string())) else {
            return 0;
        };
        let mut n = 0;
        for &s in &b.slots {
            if !self.results.contains_key(&(b.unit.clone(), s)) {
                self.retry.entry(b.unit.clone()).or_default().insert(s);
                n += 1;
            }
        }
        n
    }

    fn done(&self, u: &UnitKey) -> u64 {
        self.results.keys().filter(|(k, _)| k == u).count() as u64
    }
}

/// A small deterministic generator (no dependency needed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn random_operations_match_the_model(s: Arc<dyn Store>) {
    random_operations(s, [1, 1, 1], false).await;
}

/// The same with provider batches opened from leases and closed.
async fn random_batch_operations_match_the_model(s: Arc<dyn Store>) {
    random_operations(s, [3, 7, 1], true).await;
}

/// The same with cell grants: units whose slots come in cells of 3 and 7
/// (the last cell of the second unit is short) beside a unit of single slots.
async fn random_cell_operations_match_the_model(s: Arc<dyn Store>) {
    random_operations(s, [3, 7, 1], false).await;
}

async fn random_operations(s: Arc<dyn Store>, cells: [u32; 3], batches: bool) {
    let units = [unit("a", "m1"), unit("a", "m2"), unit("b", "m1")];
    let totals = [40u32, 25, 60];
    let mut m = Model::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ids: Vec<String> = Vec::new();
    let mut now = 1_000u64;
    // How often each interesting case happened (the test checks it did).
    let (mut granted, mut fresh_records, mut dups, mut requeued, mut reclaimed) = (0, 0, 0, 0, 0);
    let (mut opened, mut closed) = (0, 0);
    let mut bids: Vec<(String, String)> = Vec::new();
    for step in 0..400 {
        now += rng.below(50);
        if batches && rng.below(4) == 0 {
            let live: Vec<String> = m.leases.keys().cloned().collect();
            if rng.below(2) == 0 && !live.is_empty() {
                // A batch from a live lease and another lease (live or
                // gone, maybe of another unit): some of their slots and a
                // slot nobody holds.
                let mut from = vec![live[rng.below(live.len() as u64) as usize].clone()];
                from.push(ids[rng.below(ids.len() as u64) as usize].clone());
                let k = units
                    .iter()
                    .position(|u| *u == m.leases[&from[0]].unit)
                    .unwrap();
                let mut slots: Vec<u32> = from
                    .iter()
                    .filter_map(|id| m.leases.get(id))
                    .flat_map(|l| l.slots.clone())
                    .filter(|_| rng.below(3) != 0)
                    .collect();
                slots.push(rng.below(totals[k] as u64) as u32);
                let b = BatchRecord {
                    id: format!("b{step}"),
                    unit: units[k].clone(),
                    slots,
                    provider_id: None,
                    worker: "w".into(),
                    deadline_ms: now + 500,
                    created_ms: now,
                };
                let want = m.open_batch(&from, &b);
                let got = s.open_batch(&from, &b).await.unwrap();
                assert_eq!(got, want, "step {step}: open_batch");
                if !got.slots.is_empty() {
                    opened += 1;
                    bids.push((b.unit.sweep.clone(), b.id.clone()));
                }
            } else if !bids.is_empty() {
                let (sweep, id) = bids.swap_remove(rng.below(bids.len() as u64) as usize);
                let want = m.close_batch(&sweep, &id);
                assert_eq!(
                    s.close_batch(&sweep, &id).await.unwrap(),
                    want,
                    "step {step}: close_batch"
                );
                closed += 1;
            }
        }
        match rng.below(10) {
            0..=3 => {
                let k = rng.below(3) as usize;
                let max = rng.below(9) as u32;
                let id = format!("l{step}");
                let deadline = now + rng.below(400);
                let want = m.grant(&units[k], totals[k], (max, cells[k]), &id, deadline);
                let got = if cells[k] == 1 {
                    s.grant(&units[k], totals[k], max, &id, "w", deadline).await
                } else {
                    s.grant_cells(&units[k], totals[k], max, cells[k], &id, "w", deadline)
                        .await
                }
                .unwrap();
                assert_eq!(got, want, "step {step}: grant");
                granted += got.len();
                if !got.is_empty() {
                    ids.push(id);
                }
            }
            4..=6 => {
                // Report some slots: of a live lease, of a gone one, or none.
                let k = rng.below(3) as usize;
                let lease = if ids.is_empty() || rng.below(4) == 0 {
                    None
                } else {
                    Some(ids[rng.below(ids.len() as u64) as usize].clone())
                };
                let mut batch = Vec::new();
                if let Some(l) = lease.as_ref().and_then(|id| m.leases.get(id)) {
                    if l.unit == units[k] {
                        for &slot in &l.slots {
                            if rng.below(3) != 0 {
                                batch.push(rec(slot, &format!("s{step}")));
                            }
                        }
                    }
                }
                for _ in 0..rng.below(3) {
                    batch.push(rec(rng.below(totals[k] as u64) as u32, &format!("x{step}")));
                }
                let want = m.record(&units[k], lease.as_deref(), &batch);
                let got = s.record(&units[k], lease.as_deref(), &batch).await.unwrap();
                assert_eq!(got, want, "step {step}: record");
                fresh_records += got.iter().filter(|&&b| b).count();
                dups += got.iter().filter(|&&b| !b).count();
            }
            7 => {
                if let Some(id) = ids
                    .get(rng.below(ids.len().max(1) as u64) as usize)
                    .cloned()
                {
                    let want = m.release(&id).map_or(0, |(_, n)| n);
                    requeued += want;
                    assert_eq!(s.release(&id).await.unwrap(), want, "step {step}: release");
                }
            }
            8 => {
                if let Some(id) = ids
                    .get(rng.below(ids.len().max(1) as u64) as usize)
                    .cloned()
                {
                    let deadline = now + rng.below(400);
                    let want = match m.leases.get_mut(&id) {
                        Some(l) => {
                            l.deadline_ms = deadline;
                            true
                        }
                        None => false,
                    };
                    assert_eq!(
                        s.extend(&id, deadline).await.unwrap(),
                        want,
                        "step {step}: extend"
                    );
                }
            }
            _ => {
                let expired: Vec<String> = m
                    .leases
                    .values()
                    .filter(|l| l.deadline_ms < now)
                    .map(|l| l.id.clone())
                    .collect();
                let want: Vec<Lease> = expired
                    .iter()
                    .filter_map(|id| m.release(id))
                    .map(|(l, _)| l)
                    .collect();
                let got = sorted_leases(s.reclaim_expired(now).await.unwrap());
                assert_eq!(got, sorted_leases(want), "step {step}: reclaim_expired");
                reclaimed += got.len();
            }
        }
        if step % 50 == 49 {
            let want: Vec<BatchRecord> = m.batches.values().cloned().collect();
            assert_eq!(s.batches().await.unwrap(), want, "step {step}: batches");
            let want: Vec<Lease> = m.leases.values().cloned().collect();
            assert_eq!(
                sorted_leases(s.leases().await.unwrap()),
                sorted_leases(want),
                "step {step}: leases"
            );
            for u in &units {
                assert_eq!(
                    s.done_count(u).await.unwrap(),
                    m.done(u),
                    "step {step}: done"
                );
            }
        }
    }
    assert!(
        granted > 100 && fresh_records > 50 && dups > 10 && requeued > 5 && reclaimed > 5,
        "too few interesting cases: granted {granted}, recorded {fresh_records}, \
         duplicates {dups}, requeued {requeued}, reclaimed {reclaimed}"
    );
    assert!(
        !batches || (opened > 10 && closed > 5),
        "too few batches: opened {opened}, closed {closed}"
    );
    for u in &units {
        let want: Vec<(u32, Vec<u8>)> = m
            .results
            .iter()
            .filter(|((k, _), _)| k == u)
            .map(|((_, slot), v)| (*slot, v.clone()))
            .collect();
        assert_eq!(all_results(&*s, u).await, want);
    }
}

/// The judge's unit of a misalignment check: its slots are queued by the
/// records of the answers unit (two per newly recorded answer, in the same
/// atomic step), and granted only from that queue.
async fn spawned_work_exists_once_and_is_granted_only_from_the_queue(s: Arc<dyn Store>) {
    let answers = UnitKey {
        mode: Mode::EmCheck,
        ..unit("em", "m")
    };
    let judge = UnitKey {
        mode: Mode::EmJudge,
        ..unit("em", "m")
    };
    // Deadlines well inside a double's exact integers (Redis scores).
    const D: u64 = 5_000;
    // Nothing recorded: the judge's unit has nothing to grant, and its
    // cursor never hands out fresh slots.
    assert!(s
        .grant_queued(&judge, 8, 8, "j0", "w", D)
        .await
        .unwrap()
        .is_empty());
    let got = s.grant(&answers, 4, 4, "a1", "w", D).await.unwrap();
    assert_eq!(got, vec![0, 1, 2, 3]);
    let flags = s
        .record_spawning(&answers, Some("a1"), &[rec(1, "x"), rec(3, "x")], &judge, 2)
        .await
        .unwrap();
    assert_eq!(flags, vec![true, true]);
    // A repeated or late report of the same answers creates nothing more.
    let flags = s
        .record_spawning(&answers, None, &[rec(1, "y"), rec(0, "y")], &judge, 2)
        .await
        .unwrap();
    assert_eq!(flags, vec![false, true]);
    let mut granted = s.grant_queued(&judge, 8, 3, "j1", "w", D).await.unwrap();
    assert_eq!(granted, vec![0, 1, 2]);
    granted.extend(s.grant_queued(&judge, 8, 10, "j2", "w", D).await.unwrap());
    assert_eq!(granted, vec![0, 1, 2, 3, 6, 7]);
    assert!(s
        .grant_queued(&judge, 8, 10, "j3", "w", D)
        .await
        .unwrap()
        .is_empty());
    // Judged slots stay judged; a released lease's unjudged slots come back.
    assert_eq!(
        s.record(&judge, Some("j1"), &[rec(0, "a"), rec(2, "c")])
            .await
            .unwrap(),
        vec![true, true]
    );
    assert_eq!(s.release("j1").await.unwrap(), 1);
    assert_eq!(
        s.grant_queued(&judge, 8, 10, "j4", "w", D).await.unwrap(),
        vec![1]
    );
    // Expired leases come back the same way.
    assert_eq!(s.reclaim_expired(10_000).await.unwrap().len(), 3);
    let back = s.grant_queued(&judge, 8, 10, "j5", "w", D).await.unwrap();
    assert_eq!(back, vec![1, 3, 6, 7]);
    assert_eq!(s.done_count(&judge).await.unwrap(), 2);
    assert_eq!(s.done_count(&answers).await.unwrap(), 3);
    // Deleting the sweep removes the queued work too.
    let _ = s.release("j5").await.unwrap();
    s.delete_sweep("em").await.unwrap();
    assert!(s
        .grant_queued(&judge, 8, 10, "j6", "w", D)
        .await
        .unwrap()
        .is_empty());
}

/// Random grants, spawning records, queued grants, releases and expiries
/// against the model: the judge's slots match it step by step.
async fn random_spawning_matches_the_model(s: Arc<dyn Store>) {
    let answers = UnitKey {
        mode: Mode::EmCheck,
        ..unit("r", "m")
    };
    let judge = UnitKey {
        mode: Mode::EmJudge,
        ..unit("r", "m")
    };
    let (ta, tj) = (30u32, 60u32);
    let mut m = Model::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut ids: Vec<String> = Vec::new();
    let mut now = 1_000u64;
    let (mut spawned_grants, mut judged) = (0, 0);
    for step in 0..400 {
        now += rng.below(50);
        let id = format!("r{step}");
        let deadline = now + rng.below(400);
        match rng.below(9) {
            0..=1 => {
                let max = rng.below(6) as u32;
                let want = m.grant(&answers, ta, (max, 1), &id, deadline);
                let got = s
                    .grant(&answers, ta, max, &id, "w", deadline)
                    .await
                    .unwrap();
                assert_eq!(got, want, "step {step}: grant");
                if !got.is_empty() {
                    ids.push(id);
                }
            }
            2..=3 => {
                let max = rng.below(8) as u32;
                let want = m.grant_queued(&judge, tj, max, &id, deadline);
                let got = s
                    .grant_queued(&judge, tj, max, &id, "w", deadline)
                    .await
                    .unwrap();
                assert_eq!(got, want, "step {step}: grant_queued");
                spawned_grants += got.len();
                if !got.is_empty() {
                    ids.push(id);
                }
            }
            4..=5 => {
                let lease = ids.last().cloned().filter(|_| rng.below(4) != 0);
                let mut batch = Vec::new();
                if let Some(l) = lease.as_ref().and_then(|id| m.leases.get(id)) {
                    if l.unit == answers {
                        batch.extend(l.slots.iter().map(|&slot| rec(slot, "a")));
                    }
                }
                batch.push(rec(rng.below(ta as u64) as u32, "late"));
                let want = m.record_spawning(&answers, lease.as_deref(), &batch, &judge, 2);
                let got = s
                    .record_spawning(&answers, lease.as_deref(), &batch, &judge, 2)
                    .await
                    .unwrap();
                assert_eq!(got, want, "step {step}: record_spawning");
            }
            6 => {
                let lease = ids.last().cloned();
                let mut batch = Vec::new();
                if let Some(l) = lease.as_ref().and_then(|id| m.leases.get(id)) {
                    if l.unit == judge {
                        batch.extend(
                            l.slots
                                .iter()
                                .filter(|_| rng.below(2) == 0)
                                .map(|&slot| rec(slot, "j")),
                        );
                    }
                }
                let want = m.record(&judge, lease.as_deref(), &batch);
                let got = s.record(&judge, lease.as_deref(), &batch).await.unwrap();
                assert_eq!(got, want, "step {step}: record judge");
                judged += got.iter().filter(|b| **b).count();
            }
            7 => {
                if let Some(id) = ids
                    .get(rng.below(ids.len().max(1) as u64) as usize)
                    .cloned()
                {
                    let want = m.release(&id).map_or(0, |(_, n)| n);
                    assert_eq!(s.release(&id).await.unwrap(), want, "step {step}: release");
                }
            }
            _ => {
                let expired: Vec<String> = m
                    .leases
                    .values()
                    .filter(|l| l.deadline_ms < now)
                    .map(|l| l.id.clone())
                    .collect();
                let want: Vec<Lease> = expired
                    .iter()
                    .filter_map(|id| m.release(id))
                    .map(|(l, _)| l)
                    .collect();
                let got = sorted_leases(s.reclaim_expired(now).await.unwrap());
                assert_eq!(got, sorted_leases(want), "step {step}: reclaim_expired");
            }
        }
    }
    assert!(
        spawned_grants > 30 && judged > 10,
        "too few cases: {spawned_grants} granted, {judged} judged"
    );
    // Every judged slot belongs to a recorded answer.
    for (slot, _) in all_results(&*s, &judge).await {
        assert!(
            m.results.contains_key(&(answers.clone(), slot / 2)),
            "judge slot {slot} without its answer"
        );
    }
    assert_eq!(s.done_count(&judge).await.unwrap(), m.done(&judge));
}

// ----------------------------------------------------------------------
// Instantiation per store
// ----------------------------------------------------------------------

/// A store plus whatever must live as long as it (temp dir, server).
struct Harness {
    store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn embedded() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store.redb")).unwrap();
    Harness {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

/// A `redis-server` of the test's own: `reclaim_expired` and `leases` see
/// the whole database, so tests running in parallel must not share one.
async fn redis() -> Harness {
    let server = RedisServer::start_with(Persistence::None);
    let store = RedisStore::connect(&server.url()).await.unwrap();
    Harness {
        store: Arc::new(store),
        _guard: Box::new(server),
    }
}

macro_rules! suite {
    ($module:ident, $make:expr; $($test:ident),* $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let h: Harness = $make.await;
                    super::$test(h.store.clone()).await;
                }
            )*
        }
    };
}

suite!(embedded_store, embedded();
    sweeps_create_update_list_delete,
    grant_retry_first_then_fresh_never_beyond_total,
    record_once_duplicates_and_late_reports,
    extend_release_reclaim,
    scan_results_order_and_paging,
    concurrent_grants_never_share_a_slot,
    delete_sweep_removes_units_results_and_leases,
    random_operations_match_the_model,
    grant_cells_never_splits_a_fresh_cell,
    random_cell_operations_match_the_model,
    batches_own_their_slots_until_closed,
    random_batch_operations_match_the_model,
    spawned_work_exists_once_and_is_granted_only_from_the_queue,
    random_spawning_matches_the_model,
    usage_keeps_the_newest_version_and_goes_with_the_sweep,
);

suite!(redis_store, redis();
    sweeps_create_update_list_delete,
    grant_retry_first_then_fresh_never_beyond_total,
    record_once_duplicates_and_late_reports,
    extend_release_reclaim,
    scan_results_order_and_paging,
    concurrent_grants_never_share_a_slot,
    delete_sweep_removes_units_results_and_leases,
    random_operations_match_the_model,
    grant_cells_never_splits_a_fresh_cell,
    random_cell_operations_match_the_model,
    batches_own_their_slots_until_closed,
    random_batch_operations_match_the_model,
    spawned_work_exists_once_and_is_granted_only_from_the_queue,
    random_spawning_matches_the_model,
    usage_keeps_the_newest_version_and_goes_with_the_sweep,
);

// ----------------------------------------------------------------------
// Embedded store: durability
// ----------------------------------------------------------------------

#[tokio::test]
async fn embedded_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let u = unit("s", "m");
    {
        let s = EmbeddedStore::open(&path).unwrap();
        s.create_sweep("s", b"record").await.unwrap();
        assert_eq!(
            s.grant(&u, 10, 4, "l1", "w", 1_000).await.unwrap(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            s.grant(&u, 10, 2, "l2", "w", FAR).await.unwrap(),
            vec![4, 5]
        );
        s.record(&u, Some("l1"), &[rec(0, "v"), rec(1, "v")])
            .await
            .unwrap();
    }
    let s = EmbeddedStore::open(&path).unwrap();
    assert_eq!(
        s.load_sweep("s").await.unwrap().as_deref(),
        Some(&b"record"[..])
    );
    assert_eq!(s.done_count(&u).await.unwrap(), 2);
    assert_eq!(all_results(&s, &u).await, vec![rec(0, "v"), rec(1, "v")]);
    let leases = sorted_leases(s.leases().await.unwrap());
    assert_eq!(leases.len(), 2);
    assert_eq!(leases[0].slots, vec![2, 3]);
    // Cursor and leases survived: l1's rest comes back after expiry.
    assert_eq!(s.reclaim_expired(2_000).await.unwrap().len(), 1);
    assert_eq!(
        s.grant(&u, 10, 10, "l3", "w", FAR).await.unwrap(),
        vec![2, 3, 6, 7, 8, 9]
    );
}

const CHILD_ENV: &str = "MORALSWEEP_STORE_SUITE_CHILD";

/// Not a test on its own: when `CHILD_ENV` names a file, this is the child
/// process of `embedded_survives_sigkill_mid_writes`, which grants and
/// records batches forever and prints `ACK first last` after each record
/// call returned. Without the variable it does nothing.
#[tokio::test]
async fn embedded_kill9_child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    use std::io::Write;
    let s = EmbeddedStore::open(path).unwrap();
    let u = unit("s", "m");
    for k in 0u32.. {
        let id = format!("l{k}");
        let got = s.grant(&u, u32::MAX, 16, &id, "child", FAR).await.unwrap();
        let batch: Vec<_> = got.iter().map(|&i| rec(i, "v")).collect();
        s.record(&u, Some(&id), &batch).await.unwrap();
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {} {}", got[0], got[got.len() - 1]).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn embedded_survives_sigkill_mid_writes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "embedded_kill9_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    // Let it write a while, then SIGKILL it mid-stream.
    while acked.len() < 60 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (a, b) = rest.split_once(' ').unwrap();
            acked.push((a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acks already in the pipe count too.
    for line in lines {
        if let Some(rest) = line.unwrap().strip_prefix("ACK ") {
            let (a, b) = rest.split_once(' ').unwrap();
            acked.push((a.parse().unwrap(), b.parse().unwrap()));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = EmbeddedStore::open(&path).expect("the store opens after SIGKILL");
        let u = unit("s", "m");
        let results = all_results(&s, &u).await;
        let recorded: BTreeSet<u32> = results.iter().map(|(i, _)| *i).collect();
        for (a, b) in &acked {
            for i in *a..=*b {
                assert!(recorded.contains(&i), "acknowledged slot {i} lost");
            }
        }
        // The counter agrees with the results, and recorded slots are a
        // prefix of the slot space (each batch is all-or-nothing).
        assert_eq!(s.done_count(&u).await.unwrap(), recorded.len() as u64);
        assert_eq!(recorded, (0..recorded.len() as u32).collect());
        // At most the one lease in flight survives, and it is usable.
        let leases = s.leases().await.unwrap();
        assert!(leases.len() <= 1, "{leases:?}");
        s.record(&u, None, &[rec(u32::MAX - 1, "after")])
            .await
            .unwrap();
    });
}

// ----------------------------------------------------------------------
// Redis store: durability through `kill -9` of redis-server
// ----------------------------------------------------------------------

/// Restarts the server from a blocking section (it waits for PING).
fn restart(server: &mut RedisServer) {
    tokio::task::block_in_place(|| server.restart());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_state_survives_kill9_and_restart() {
    let mut server = RedisServer::start();
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let u = unit("s", "m");
    s.create_sweep("s", b"record").await.unwrap();
    assert_eq!(
        s.grant(&u, 1000, 10, "l1", "w", FAR).await.unwrap(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        s.grant(&u, 1000, 5, "l2", "w", 1_000).await.unwrap(),
        (10..15).collect::<Vec<_>>()
    );
    let batch: Vec<_> = (0..6).map(|i| rec(i, "v")).collect();
    s.record(&u, Some("l1"), &batch).await.unwrap();

    server.kill9();
    // A call made while Redis is down waits for it to come back.
    let pending = tokio::spawn({
        let s = s.clone();
        let u = u.clone();
        async move { s.record(&u, Some("l1"), &[rec(6, "during")]).await }
    });
    // Down long enough for the connection manager's own reconnect attempts
    // to give up: the store's retries carry the call over.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    restart(&mut server);
    assert_eq!(pending.await.unwrap().unwrap(), vec![true]);

    // Everything is back, through the same (reconnected) store ...
    assert_eq!(
        s.load_sweep("s").await.unwrap().as_deref(),
        Some(&b"record"[..])
    );
    assert_eq!(s.done_count(&u).await.unwrap(), 7);
    let leases = sorted_leases(s.leases().await.unwrap());
    assert_eq!(leases.len(), 2);
    assert_eq!(leases[0].slots, vec![7, 8, 9]);
    assert_eq!(leases[1].slots, (10..15).collect::<Vec<_>>());
    // ... and through a new connection.
    let t = RedisStore::connect(&server.url()).await.unwrap();
    let mut want: Vec<_> = (0..6).map(|i| rec(i, "v")).collect();
    want.push(rec(6, "during"));
    assert_eq!(all_results(&t, &u).await, want);
    // The cursor survived: no slot is handed out twice.
    assert_eq!(t.reclaim_expired(2_000).await.unwrap().len(), 1);
    assert_eq!(
        t.grant(&u, 1000, 8, "l3", "w", FAR).await.unwrap(),
        vec![10, 11, 12, 13, 14, 15, 16, 17]
    );
    assert!(t.extend("l1", FAR).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acknowledged_records_survive_kill9_mid_writes() {
    let mut server = RedisServer::start();
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let u = unit("s", "m");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn({
        let s = s.clone();
        let u = u.clone();
        async move {
            for k in 0..150u32 {
                let id = format!("l{k}");
                let got = s.grant(&u, u32::MAX, 16, &id, "w", FAR).await.unwrap();
                let batch: Vec<_> = got.iter().map(|&i| rec(i, "v")).collect();
                // A call that fails (Redis down too long) is simply not acknowledged.
                if s.record(&u, Some(&id), &batch).await.is_ok() {
                    tx.send(got).unwrap();
                }
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 40 {
        acked.push(rx.recv().await.unwrap());
    }
    server.kill9();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    restart(&mut server);
    writer.await.unwrap();
    while let Ok(got) = rx.try_recv() {
        acked.push(got);
    }
    let recorded: BTreeSet<u32> = all_results(&s, &u)
        .await
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    for slot in acked.iter().flatten() {
        assert!(recorded.contains(slot), "acknowledged slot {slot} lost");
    }
    assert_eq!(s.done_count(&u).await.unwrap(), recorded.len() as u64);
    // Every batch was acknowledged, so every lease is gone.
    assert!(s.leases().await.unwrap().is_empty());
}

#[tokio::test]
async fn open_store_picks_the_backend_from_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("store.redb");
    let s = open_store(path.to_str().unwrap()).await.unwrap();
    assert!(s.create_sweep("x", b"1").await.unwrap());
    drop(s);
    assert!(path.exists());
    let server = RedisServer::start_with(Persistence::None);
    let r = open_store(&server.url()).await.unwrap();
    assert!(r.create_sweep("x", b"1").await.unwrap());
    r.ping().await.unwrap();
    // An unreachable Redis is an error naming it, not a hang or a panic.
    let err = match open_store("redis://127.0.0.1:1/").await {
        Ok(_) => panic!("connected to port 1"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
