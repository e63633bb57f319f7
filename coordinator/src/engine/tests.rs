//! Unit tests of the engine against the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use moralsweep_common::slot::{SampleRecord, SlotRecord};
use moralsweep_common::{Mode, SweepSpec};

use crate::engine::{Engine, EngineConfig, EngineError};
use crate::pacing::RateGroups;
use crate::store::EmbeddedStore;
use crate::store::Store;
use moralsweep_protocol::UnitKey;
use moralsweep_protocol::{Grant, Outcome, SlotReport};

fn spec(name: &str, models: &[&str]) -> SweepSpec {
    let mut text = format!(
        "name = \"{name}\"\npersonas = \"p.json\"\noutput = \"out\"\nrepetitions = 2\nmodes = [\"persona\", \"self\"]\n"
    );
    for m in models {
        text.push_str(&format!(
            "[[model]]\nkey = \"{m}\"\nprovider = \"synthetic\"\nmodel = \"{m}\"\n"
        ));
    }
    SweepSpec::parse(&text, std::path::Path::new("s.toml")).unwrap()
}

fn personas() -> Vec<String> {
    vec!["a nurse".into(), "a farmer".into(), "a judge".into()]
}

fn engine(store: Arc<dyn Store>, dir: &std::path::Path, ttl: Duration) -> Arc<Engine> {
    Engine::new(
        store,
        Arc::new(RateGroups::new()),
        EngineConfig {
            lease_ttl: ttl,
            reclaim_every: Duration::from_millis(50),
            max_lease_slots: 64,
            data_root: dir.to_path_buf(),
            write_metrics: false,
            ..EngineConfig::default()
        },
    )
}

fn sample(slot: u32) -> Outcome {
    Outcome::Record(SlotRecord::Sample(SampleRecord {
        rating: (slot % 6) as i8,
        failures: 0,
        response: (slot % 6).to_string(),
        collected_at: "2026-01-01T00:00:00.000000".into(),
    }))
}

/// The reports of `slots` of grant `g`, each a sampled rating.
fn sampled(g: &Grant, slots: &[u32]) -> Vec<SlotReport> {
    slots
        .iter()
        .map(|&s| SlotReport {
            lease_id: Some(g.lease.id.clone()),
            unit: g.lease.unit.clone(),
            slot: s,
            outcome: sample(s),
        })
        .collect()
}

/// Leases until nothing is left, reporting everything.
async fn drain(e: &Engine) -> u32 {
    let mut n = 0;
    loop {
        let out = e.lease("w", 50).await.unwrap();
        if out.grants.is_empty() {
            return n;
        }
        for g in out.grants {
            let reports = sampled(&g, &g.lease.slots);
            let r = e
                .report(reports, std::slice::from_ref(&g.lease.id))
                .await
                .unwrap();
            n += r.recorded;
        }
    }
}

async fn wait_done(e: &Engine, sweep: &str) {
    for _ in 0..200 {
        if e.snapshot_one(sweep).unwrap().state == "done" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sweep not done: {:?}", e.snapshot_one(sweep));
}

#[tokio::test]
async fn sweep_runs_to_files_with_every_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let e = engine(store.clone(), dir.path(), Duration::from_secs(30));
    e.start();
    let out = dir.path().join("s1");
    assert!(e
        .submit(spec("s1", &["m1", "m2"]), personas(), out.clone())
        .await
        .unwrap());
    // Submitting the same sweep again is harmless.
    assert!(!e
        .submit(spec("s1", &["m1", "m2"]), personas(), out.clone())
        .await
        .unwrap());
    // A different sweep under the same name is refused.
    let err = e
        .submit(spec("s1", &["m1"]), personas(), out.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::AlreadyExists(_)), "{err}");
    let total = 2 * (3 * 30 * 2 + 30 * 2);
    assert_eq!(drain(&e).await, total);
    wait_done(&e, "s1").await;
    let p = e.snapshot_one("s1").unwrap();
    assert_eq!((p.done, p.total), (total as u64, total as u64));
    let text = std::fs::read_to_string(out.join("data/m1_temp01.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "persona_id,question_id,run_index,rating,failures,response,collected_at"
    );
    assert_eq!(lines.len(), 1 + 3 * 30 * 2);
    assert!(lines[1].starts_with("0,1,1,0,0,0,"), "{}", lines[1]);
    assert!(lines[2].starts_with("0,1,2,1,0,1,"), "{}", lines[2]);
    assert!(out.join("data/m2_temp01_self.csv").exists());
}

#[tokio::test]
async fn duplicate_and_late_reports_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let e = engine(store.clone(), dir.path(), Duration::from_millis(1));
    let out = dir.path().join("s2");
    let mut sp = spec("s2", &["m"]);
    sp.modes = vec![Mode::Persona];
    e.submit(sp, personas(), out).await.unwrap();
    let g = e.lease("w1", 10).await.unwrap().grants.remove(0);
    let unit = g.lease.unit.clone();
    let rep = |slot: u32, rating: i8| SlotReport {
        lease_id: Some(g.lease.id.clone()),
        unit: unit.clone(),
        slot,
        outcome: Outcome::Record(SlotRecord::Sample(SampleRecord {
            rating,
            failures: 0,
            response: rating.to_string(),
            collected_at: "t".into(),
        })),
    };
    let r = e.report(vec![rep(g.lease.slots[0], 3)], &[]).await.unwrap();
    assert_eq!((r.recorded, r.duplicates), (1, 0));
    // The same report again, and a different answer for the same slot.
    let r = e
        .report(
            vec![rep(g.lease.slots[0], 3), rep(g.lease.slots[0], 5)],
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.recorded, r.duplicates), (0, 2));
    // The lease expires and is taken back; another worker gets its slots.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(e.reclaim().await.unwrap(), 1);
    let g2 = e.lease("w2", 10).await.unwrap().grants.remove(0);
    assert!(
        !g2.lease.slots.contains(&g.lease.slots[0]),
        "a recorded slot is never handed out again: {:?} {:?}",
        g.lease.slots,
        g2.lease.slots
    );
    assert!(g2.lease.slots.contains(&g.lease.slots[1]));
    // The first worker reports late: recorded once; the second's report is a duplicate.
    let r = e.report(vec![rep(g.lease.slots[1], 2)], &[]).await.unwrap();
    assert_eq!(r.recorded, 1);
    let mut late = rep(g.lease.slots[1], 4);
    late.lease_id = Some(g2.lease.id.clone());
    let r = e.report(vec![late], &[]).await.unwrap();
    assert_eq!((r.recorded, r.duplicates), (0, 1));
    assert_eq!(e.snapshot_one("s2").unwrap().done, 2);
    let got = store.scan_results(&unit, 0, 100).await.unwrap();
    let rec: SlotRecord = serde_json::from_slice(&got[0].1).unwrap();
    assert!(matches!(
        rec,
        SlotRecord::Sample(SampleRecord { rating: 3, .. })
    ));
}

#[tokio::test]
async fn bad_reports_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let e = engine(store, dir.path(), Duration::from_secs(30));
    e.submit(spec("s3", &["m"]), personas(), dir.path().join("o"))
        .await
        .unwrap();
    let unit = UnitKey {
        sweep: "s3".into(),
        model: "m".into(),
        mode: Mode::Persona,
    };
    let bad = |unit: UnitKey, slot| SlotReport {
        lease_id: None,
        unit,
        slot,
        outcome: sample(0),
    };
    let err = e
        .report(vec![bad(unit.clone(), 100_000)], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidArgument(ref m) if m.contains("out of range")),
        "{err}"
    );
    let mut u = unit.clone();
    u.sweep = "nope".into();
    let err = e.report(vec![bad(u, 0)], &[]).await.unwrap_err();
    assert!(
        matches!(err, EngineError::NotFound(ref m) if m.contains("nope")),
        "{err}"
    );
    let mut u = unit.clone();
    u.model = "other".into();
    let err = e.report(vec![bad(u, 0)], &[]).await.unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidArgument(ref m) if m.contains("other")),
        "{err}"
    );
}

#[tokio::test]
async fn fatal_error_stops_one_model_only() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let e = engine(store, dir.path(), Duration::from_secs(30));
    e.start();
    e.submit(
        spec("s4", &["bad", "good"]),
        personas(),
        dir.path().join("o"),
    )
    .await
    .unwrap();
    let unit = UnitKey {
        sweep: "s4".into(),
        model: "bad".into(),
        mode: Mode::Persona,
    };
    e.report(
        vec![SlotReport {
            lease_id: None,
            unit,
            slot: 0,
            outcome: Outcome::Fatal("401 Unauthorized: invalid API key".into()),
        }],
        &[],
    )
    .await
    .unwrap();
    drain(&e).await;
    wait_done(&e, "s4").await;
    let p = e.snapshot_one("s4").unwrap();
    assert!(p.messages[0].contains("bad") && p.messages[0].contains("invalid API key"));
    assert!(p
        .units
        .iter()
        .filter(|u| u.model == "bad")
        .all(|u| u.state == "failed"));
    assert!(p
        .units
        .iter()
        .filter(|u| u.model == "good")
        .all(|u| u.state == "done"));
    assert!(dir.path().join("o/data/good_temp01.csv").exists());
    assert!(!dir.path().join("o/data/bad_temp01.csv").exists());
}

#[tokio::test]
async fn a_new_engine_resumes_from_the_store_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let out = dir.path().join("o");
    {
        let e = engine(store.clone(), dir.path(), Duration::from_millis(1));
        e.submit(spec("s5", &["m"]), personas(), out.clone())
            .await
            .unwrap();
        // Half done, one lease left hanging.
        let g = e.lease("w", 64).await.unwrap().grants.remove(0);
        let reports = sampled(&g, &g.lease.slots[..32]);
        e.report(reports, &[]).await.unwrap();
    }
    let e = engine(store.clone(), dir.path(), Duration::from_secs(30));
    assert_eq!(e.resume().await.unwrap(), 1);
    e.start();
    assert_eq!(e.snapshot_one("s5").unwrap().done, 32);
    tokio::time::sleep(Duration::from_millis(5)).await;
    e.reclaim().await.unwrap();
    let total = 3 * 30 * 2 + 30 * 2;
    assert_eq!(drain(&e).await, total - 32);
    wait_done(&e, "s5").await;
    let text = std::fs::read_to_string(out.join("data/m_temp01.csv")).unwrap();
    assert_eq!(text.lines().count(), 1 + 3 * 30 * 2);
}

#[tokio::test]
async fn rate_limits_pace_grants() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let e = engine(store, dir.path(), Duration::from_secs(30));
    let mut s = spec("s6", &["m"]);
    s.models[0].rpm = Some(60);
    e.submit(s, personas(), dir.path().join("o")).await.unwrap();
    let mut granted = 0;
    for _ in 0..10 {
        let out = e.lease("w", 50).await.unwrap();
        granted += out
            .grants
            .iter()
            .map(|g| g.lease.slots.len())
            .sum::<usize>();
    }
    // 60 rpm: a burst of at most about one second's worth.
    assert!(granted <= 2, "granted {granted}");
}

#[tokio::test]
async fn many_sweeps_with_dozens_of_models_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let e = engine(store, dir.path(), Duration::from_secs(30));
    e.start();
    let models: Vec<String> = (0..24).map(|i| format!("model-{i:02}")).collect();
    let refs: Vec<&str> = models.iter().map(String::as_str).collect();
    for name in ["sa", "sb", "sc"] {
        let mut s = spec(name, &refs);
        s.repetitions = 1;
        s.modes = vec![Mode::SelfMode];
        e.submit(s, personas(), dir.path().join(name))
            .await
            .unwrap();
    }
    // Lease calls go round robin over the units: 24 calls of 10 slots reach
    // 24 different units before any unit is visited twice.
    let mut n = 0;
    let mut units = Vec::new();
    for _ in 0..24 {
        for g in e.lease("w", 10).await.unwrap().grants {
            units.push(g.lease.unit.clone());
            let reports = sampled(&g, &g.lease.slots);
            n += e
                .report(reports, std::slice::from_ref(&g.lease.id))
                .await
                .unwrap()
                .recorded;
        }
    }
    let mut distinct = units.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        units.len(),
        "a unit was visited twice: {units:?}"
    );
    n += drain(&e).await;
    assert_eq!(n, 3 * 24 * 30);
    for name in ["sa", "sb", "sc"] {
        wait_done(&e, name).await;
        assert!(dir
            .path()
            .join(name)
            .join("data/model-23_temp01_self.csv")
            .exists());
    }
}

/// An engine running one sweep of gpt-4o persona units with 4 repetitions,
/// `extra` added to the model's settings.
async fn cells_engine(dir: &std::path::Path, extra: &str) -> Arc<Engine> {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.join("store.redb")).unwrap());
    let e = engine(store, dir, Duration::from_secs(30));
    let text = format!(
        "name = \"cells\"\npersonas = \"p.json\"\noutput = \"out\"\nrepetitions = 4\nmodes = [\"persona\"]\n\
         [[model]]\nkey = \"m\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\n{extra}"
    );
    let sp = SweepSpec::parse(&text, std::path::Path::new("s.toml")).unwrap();
    e.submit(sp, personas(), dir.join("cells")).await.unwrap();
    e
}

/// The slots and prepaid permits of the one grant a lease call returns.
async fn one_grant(e: &Engine, max: u32) -> (Vec<u32>, u32) {
    let g = e.lease("w", max).await.unwrap().grants;
    assert_eq!(g.len(), 1, "{g:?}");
    (g[0].lease.slots.clone(), g[0].permits)
}

#[tokio::test]
async fn multi_sample_units_are_leased_in_whole_cells_one_permit_each() {
    // gpt-4o draws several samples per request (the catalog's `n`).
    let dir = tempfile::tempdir().unwrap();
    let e = cells_engine(dir.path(), "").await;
    // Room for 10: two whole cells of 4, one request permit each.
    assert_eq!(one_grant(&e, 10).await, ((0..8).collect(), 2));
    // Less room than a cell: still one whole cell (a cell is never split).
    assert_eq!(one_grant(&e, 3).await, ((8..12).collect(), 1));
    assert_eq!(one_grant(&e, 12).await, ((12..24).collect(), 3));

    // Told to draw one sample per request: a slot and a permit each.
    let dir = tempfile::tempdir().unwrap();
    let e = cells_engine(dir.path(), "samples_per_request = 1\n").await;
    assert_eq!(one_grant(&e, 10).await, ((0..10).collect(), 10));
}

#[tokio::test]
async fn a_judges_refusal_stops_the_judging_not_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).unwrap());
    let e = engine(store, dir.path(), Duration::from_secs(30));
    let text = "name = \"j1\"\npersonas = \"p.json\"\noutput = \"out\"\nrepetitions = 2\nmodes = [\"persona\", \"em-check\"]\n\
        [[model]]\nkey = \"m1\"\nprovider = \"synthetic\"\nmodel = \"x\"\n\
        [[model]]\nkey = \"m2\"\nprovider = \"synthetic\"\nmodel = \"x\"\n\
        [judge]\nkey = \"j\"\nprovider = \"synthetic\"\nmodel = \"y\"\n";
    let sp = SweepSpec::parse(text, std::path::Path::new("s.toml")).unwrap();
    e.submit(sp, personas(), dir.path().join("o"))
        .await
        .unwrap();
    // The judge refuses for good while judging m1.
    e.report(
        vec![SlotReport {
            lease_id: None,
            unit: UnitKey {
                sweep: "j1".into(),
                model: "m1".into(),
                mode: Mode::EmJudge,
            },
            slot: 0,
            outcome: Outcome::Fatal("401 Unauthorized: the judge's key".into()),
        }],
        &[],
    )
    .await
    .unwrap();
    let p = e.snapshot_one("j1").unwrap();
    assert!(
        p.messages.iter().any(|m| m.contains("model j stopped")),
        "{:?}",
        p.messages
    );
    for u in &p.units {
        let judging = u.mode == Mode::EmJudge;
        assert_eq!(u.state == "failed", judging, "{u:?}");
    }
    // Both models' questionnaires and answers are still handed out.
    let mut modes = std::collections::BTreeSet::new();
    for _ in 0..8 {
        for g in e.lease("w", 64).await.unwrap().grants {
            modes.insert((g.lease.unit.model.clone(), g.lease.unit.mode));
        }
    }
    for m in ["m1", "m2"] {
        assert!(modes.contains(&(m.to_string(), Mode::Persona)), "{modes:?}");
        assert!(modes.contains(&(m.to_string(), Mode::EmCheck)), "{modes:?}");
    }
}
