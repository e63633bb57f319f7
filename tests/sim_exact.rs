//! `moralsweep run` against `moralsweep sim`, end to end over real HTTP:
//!
//! - deal mode replaying gpt-4o-misaligned (exactly 10 ratings per cell)
//!   reproduces the model's published S, R and sigma_bar to 1e-9, with and
//!   without 20% injected faults of every kind: every recorded answer reached
//!   its slot exactly once, and every slot that got unusable answers carries
//!   their count in `failures`;
//! - sample mode (drawing with replacement) lands S within 3 standard errors
//!   of the published value;
//! - the rating protocol under non-digit answers: 10 one-token attempts, then
//!   the longer answer parsed, failures counted.

mod common;
use common::simproc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use moralsweep_common::formats::{read_sampling, RatingRow};
use moralsweep_common::metrics::{sampled_metrics, BootstrapOptions, CellTable, ScopeMetrics};
use moralsweep_testsupport::reference::reference_dir;
use simproc::{run_sweep, SimProc};

const KEY: &str = "gpt-4o-misaligned";

fn reference() -> Option<PathBuf> {
    reference_dir()
}

/// The recorded ratings, read in place.
fn replay_dir(reference: &Path, _tmp: &Path) -> PathBuf {
    reference.join("sampling/insecure-code")
}

/// The sweeps of this file run one at a time: each is a few thousand
/// requests a second, and on a small machine running them together could
/// delay an answer past the client's timeout (which would lose a dealt
/// rating and, rightly, fail the exactness check).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_spec(
    dir: &Path,
    reference: &Path,
    sim: &SimProc,
    personas: usize,
    reps: u32,
    extra: &str,
) {
    simproc::write_replay_spec(
        dir,
        "sim-exact",
        &reference.join("personas.json"),
        personas,
        reps,
        "",
        KEY,
        sim,
        &format!("rpm = 6000000\n{extra}"),
    );
}

fn rows(dir: &Path) -> Vec<RatingRow> {
    read_sampling(&dir.join(format!("out/data/{KEY}_temp01.csv")), false)
        .unwrap()
        .rows
}

fn metrics(rows: &[RatingRow], draws: u32) -> ScopeMetrics {
    let table = CellTable::from_rows(
        rows.iter()
            .map(|r| (r.persona.unwrap_or(0), r.item, r.rating)),
    );
    let items = table.items();
    let kept = table.kept_personas(&items);
    let opts = BootstrapOptions {
        persona_draws: draws,
        rerun_draws: draws,
        seed: 1,
    };
    sampled_metrics(&table, &kept, &items, &opts, KEY)
        .unwrap()
        .overall
}

/// The published row of a model: column -> value.
fn published(reference: &Path, key: &str) -> HashMap<String, f64> {
    let mut r = csv::Reader::from_path(reference.join("expected/metrics_overall.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    for rec in r.records() {
        let rec = rec.unwrap();
        if &rec[0] == key {
            return headers
                .iter()
                .zip(rec.iter())
                .filter_map(|(h, v)| v.parse().ok().map(|v| (h.to_string(), v)))
                .collect();
        }
    }
    panic!("{key} not in metrics_overall.csv");
}

/// Every (persona, item, run) of the sweep exactly once.
fn assert_every_slot_once(rows: &[RatingRow], personas: u32, reps: u32) {
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        assert!(
            seen.insert((r.persona, r.item, r.run)),
            "slot {:?}/{}/{} twice",
            r.persona,
            r.item,
            r.run
        );
    }
    assert_eq!(seen.len() as u32, personas * 30 * reps);
}

fn assert_reproduces(reference: &Path, rows: &[RatingRow]) {
    let want = published(reference, KEY);
    let got = metrics(rows, 2);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9;
    assert!(
        close(got.s, want["susceptibility"]),
        "S {} vs published {}",
        got.s,
        want["susceptibility"]
    );
    assert!(
        close(got.sigma_bar, want["uncertainty"]),
        "sigma_bar {} vs published {}",
        got.sigma_bar,
        want["uncertainty"]
    );
    assert!(
        close(got.r(), want["robustness"]),
        "R {} vs published {}",
        got.r(),
        want["robustness"]
    );
    assert_eq!((got.personas, got.questions), (100, 30));
}

#[test]
fn deal_mode_reproduces_the_published_metrics_exactly() {
    let Some(reference) = reference() else { return };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay_dir(&reference, tmp.path());
    let sim = simproc::deal_replay(&replay, &reference.join("personas.json"));
    write_spec(tmp.path(), &reference, &sim, 100, 10, "timeout_secs = 10");
    run_sweep(tmp.path());
    let rows = rows(tmp.path());
    assert_every_slot_once(&rows, 100, 10);
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    assert_reproduces(&reference, &rows);
    let stats = &sim.stats()["keys"][KEY];
    assert_eq!(stats["replayed"], 30_000, "{stats}");
    assert_eq!(stats["requests"], 30_000, "{stats}");
}

#[test]
fn deal_mode_with_20_percent_faults_of_every_kind_still_reproduces() {
    let Some(reference) = reference() else { return };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay_dir(&reference, tmp.path());
    let sim = SimProc::start(&[
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        reference.join("personas.json").to_str().unwrap(),
        "--replay-mode",
        "deal",
        "--fault-rate",
        "0.2",
        "--faults",
        "all",
        "--slow-ms",
        "20",
        // Longer than the spec's 3 s timeout: the client gives up first.
        "--hang-ms",
        "3500",
        "--seed",
        "11",
    ]);
    write_spec(tmp.path(), &reference, &sim, 100, 10, "timeout_secs = 3");
    run_sweep(tmp.path());
    let rows = rows(tmp.path());
    assert_every_slot_once(&rows, 100, 10);
    assert!(
        rows.iter().all(|r| r.rating >= 0),
        "a slot ended without a rating"
    );
    assert_reproduces(&reference, &rows);

    let stats = sim.stats();
    let k = &stats["keys"][KEY];
    // Every recorded rating was dealt exactly once: no fault consumed one,
    // and no answer was lost on the way to its slot.
    assert_eq!(k["replayed"], 30_000, "{k}");
    let fault = |name: &str| k["faults"][name].as_u64().unwrap_or(0);
    for kind in [
        "500",
        "503",
        "slow",
        "timeout",
        "drop",
        "malformed",
        "nondigit",
        "empty",
    ] {
        assert!(fault(kind) > 100, "too few {kind} faults: {k}");
    }
    // Each unusable answer (non-digit or empty) is a failed attempt of the
    // slot that received it.
    let failures: u64 = rows.iter().map(|r| r.failures as u64).sum();
    assert_eq!(failures, fault("nondigit") + fault("empty"), "{k}");
    assert!(rows.iter().filter(|r| r.failures > 0).count() > 1000);
    let total_faults: u64 = k["faults"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let requests = k["requests"].as_u64().unwrap();
    let rate = total_faults as f64 / requests as f64;
    assert!((0.18..0.22).contains(&rate), "fault rate {rate}");
}

#[test]
fn sample_mode_lands_s_within_three_standard_errors() {
    let Some(reference) = reference() else { return };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay_dir(&reference, tmp.path());
    let sim = SimProc::start(&[
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        reference.join("personas.json").to_str().unwrap(),
        "--replay-mode",
        "sample",
        "--seed",
        "5",
    ]);
    write_spec(tmp.path(), &reference, &sim, 100, 10, "timeout_secs = 10");
    run_sweep(tmp.path());
    let rows = rows(tmp.path());
    assert_every_slot_once(&rows, 100, 10);
    let want = published(&reference, KEY);
    let got = metrics(&rows, 2);
    let (s, se) = (want["susceptibility"], want["susceptibility_uncertainty"]);
    eprintln!(
        "sample mode: S {:.4} (published {s:.4} +- {se:.4}), R {:.3} (published {:.3})",
        got.s,
        got.r(),
        want["robustness"]
    );
    assert!(
        (got.s - s).abs() <= 3.0 * se,
        "S {} is more than 3 se ({se}) from the published {s}",
        got.s
    );
    // Drawing with replacement shrinks within-cell spreads: R comes out high
    // (about +13% on this model), which is why R is not compared here.
    assert!(
        got.r() > want["robustness"],
        "R {} vs {}",
        got.r(),
        want["robustness"]
    );
}

#[test]
fn non_digit_answers_take_ten_attempts_then_the_longer_answer() {
    let Some(reference) = reference() else { return };
    let _one_at_a_time = serial();
    // Every one-token answer is "As": 10 failures, then the fallback is parsed.
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay_dir(&reference, tmp.path());
    let personas = reference.join("personas.json");
    let base = [
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--fault-rate",
        "1",
        "--faults",
        "nondigit",
    ];
    let mut args = base.to_vec();
    args.push("--fault-one-token-only");
    let sim = SimProc::start(&args);
    write_spec(tmp.path(), &reference, &sim, 2, 1, "timeout_secs = 10");
    run_sweep(tmp.path());
    let got = rows(tmp.path());
    assert_every_slot_once(&got, 2, 1);
    for r in &got {
        assert_eq!(r.failures, 10, "{r:?}");
        assert!((0..=5).contains(&r.rating), "{r:?}");
    }
    let k = &sim.stats()["keys"][KEY];
    assert_eq!(k["requests"], 60 * 11, "{k}");
    assert_eq!(k["faults"]["nondigit"], 60 * 10, "{k}");

    // The fallback fails too: -1 with the 10 failures kept.
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimProc::start(&base);
    write_spec(tmp.path(), &reference, &sim, 2, 1, "timeout_secs = 10");
    run_sweep(tmp.path());
    let got = rows(tmp.path());
    assert_every_slot_once(&got, 2, 1);
    assert!(
        got.iter().all(|r| r.rating == -1 && r.failures == 10),
        "{got:?}"
    );
}

#[test]
fn the_simulator_stops_on_sigterm() {
    // What a container runtime sends on stop; it used to be ignored.
    let mut sim = SimProc::start(&[]);
    let status = Command::new("kill")
        .args(["-TERM", &sim.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = sim
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("the simulator exits within 10 s of SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

/// The sweep of `deal_mode_reproduces_the_published_metrics_exactly`, its
/// model standing in for GPT-4o (`catalog`), so its samples are drawn
/// several per request (`samples_per_request` = auto: a cell's ten from one
/// request; leases never split a cell). Returns the rows,
/// the simulator's stats of the key and the run's stderr.
fn multi_sample_sweep(
    sim_args: &[&str],
    extra: &str,
) -> Option<(Vec<RatingRow>, serde_json::Value, String)> {
    let reference = reference()?;
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay_dir(&reference, tmp.path());
    let personas = reference.join("personas.json");
    let mut args = vec![
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        "deal",
    ];
    args.extend_from_slice(sim_args);
    let sim = SimProc::start(&args);
    write_spec(
        tmp.path(),
        &reference,
        &sim,
        100,
        10,
        &format!("catalog = \"openai/gpt-4o\"\n{extra}"),
    );
    let out = run_sweep(tmp.path());
    let rows = rows(tmp.path());
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    let stats = sim.stats()["keys"][KEY].clone();
    Some((
        rows,
        stats,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn deal_mode_reproduces_exactly_with_several_samples_per_request() {
    let Some((rows, k, _)) = multi_sample_sweep(&[], "timeout_secs = 10") else {
        return;
    };
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    assert_eq!(k["replayed"], 30_000, "{k}");
    // 3,000 cells of ten: one request each (leases never split a cell, and
    // every answer had a digit), against 30,000 one request per sample.
    let requests = k["requests"].as_u64().unwrap();
    eprintln!("multi-sample: {requests} requests for 30,000 ratings");
    assert_eq!(requests, 3_000, "{k}");
    // The prompt is billed once per request, one output token per sample.
    assert_eq!(k["output_tokens"], 30_000, "{k}");
}

#[test]
fn deal_mode_with_faults_reproduces_with_several_samples_per_request() {
    let Some((rows, k, _)) = multi_sample_sweep(
        &[
            "--fault-rate",
            "0.2",
            "--faults",
            "all",
            "--slow-ms",
            "20",
            "--hang-ms",
            "3500",
            "--seed",
            "11",
        ],
        "timeout_secs = 3",
    ) else {
        return;
    };
    assert!(
        rows.iter().all(|r| r.rating >= 0),
        "a slot ended without a rating"
    );
    assert_eq!(k["replayed"], 30_000, "{k}");
    let fault = |name: &str| k["faults"][name].as_u64().unwrap_or(0);
    // Each sample without a digit is a failed attempt of its own slot.
    let failures: u64 = rows.iter().map(|r| r.failures as u64).sum();
    assert_eq!(failures, fault("nondigit") + fault("empty"), "{k}");
    assert!(fault("nondigit") > 100 && fault("timeout") > 10, "{k}");
}

#[test]
fn a_provider_refusing_n_makes_the_model_single_sample_with_one_warning() {
    let Some((_, k, stderr)) = multi_sample_sweep(&["--single-sample", KEY], "timeout_secs = 10")
    else {
        return;
    };
    assert_eq!(k["replayed"], 30_000, "{k}");
    let warnings = stderr
        .matches("refused several samples per request")
        .count();
    assert_eq!(warnings, 1, "{stderr}");
    // One request per sample, plus the refused multi-sample requests.
    let requests = k["requests"].as_u64().unwrap();
    assert!((30_000..31_000).contains(&requests), "{k}");
}

/// Killed with SIGKILL while multi-sample requests are in flight and run
/// again, a sweep records every slot exactly once: the cells of the dead
/// process's leases are asked again, whole, and no slot is recorded twice.
/// (In deal mode the cards dealt to the killed requests are gone, so the
/// metrics are not compared here; batch mode is what keeps them exact.)
#[test]
fn a_multi_sample_run_killed_midway_resumes_with_every_slot_once() {
    let Some(reference) = reference() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = simproc::deal_replay(
        &replay_dir(&reference, tmp.path()),
        &reference.join("personas.json"),
    );
    // 100 requests a second: the 3,000 cells take about 30 s, so the kill
    // lands midway.
    simproc::write_replay_spec(
        tmp.path(),
        "sim-exact-kill",
        &reference.join("personas.json"),
        100,
        10,
        "",
        KEY,
        &sim,
        "rpm = 6000\ncatalog = \"openai/gpt-4o\"\ntimeout_secs = 10",
    );
    let mut child = Command::new(simproc::bin())
        .args(["run", "s.toml", "--workers", "2", "--quiet"])
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let asked = sim.stats()["keys"][KEY]["requests"].as_u64().unwrap_or(0);
        if asked >= 800 {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "the run made {asked} requests in 120 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = sim.stats()["keys"][KEY]["requests"].as_u64().unwrap();
    assert!(before < 3_000, "killed after {before} requests: not midway");
    std::fs::write(
        tmp.path().join("s.toml"),
        std::fs::read_to_string(tmp.path().join("s.toml"))
            .unwrap()
            .replace("rpm = 6000\n", "rpm = 6000000\n"),
    )
    .unwrap();
    run_sweep(tmp.path());
    let rows = rows(tmp.path());
    assert_every_slot_once(&rows, 100, 10);
    let total = sim.stats()["keys"][KEY]["requests"].as_u64().unwrap();
    eprintln!("killed after {before} requests; {total} in all for 3,000 cells");
    // Cells in flight at the kill were asked again (whole); the rest once.
    assert!((3_000..3_000 + 400).contains(&total), "{total} requests");
}

/// The deal-mode sweep with `batch = true`: every cell's ten samples from
/// one request of `n` = 10 inside one provider batch (OpenAI's files and
/// batches, spoken by the simulator), run by `moralsweep run`. Returns the
/// rows, the simulator's stats and the run's output.
fn batch_sweep(sim_args: &[&str]) -> Option<(Vec<RatingRow>, serde_json::Value, String)> {
    let reference = reference()?;
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay_dir(&reference, tmp.path());
    let personas = reference.join("personas.json");
    let mut args = vec![
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        "deal",
    ];
    args.extend_from_slice(sim_args);
    let sim = SimProc::start(&args);
    write_spec(
        tmp.path(),
        &reference,
        &sim,
        100,
        10,
        "catalog = \"openai/gpt-4o\"\nbatch = true\ntimeout_secs = 30",
    );
    let out = run_sweep(tmp.path());
    let rows = rows(tmp.path());
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    Some((
        rows,
        sim.stats(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn batch_mode_reproduces_the_published_metrics_exactly() {
    let Some((rows, stats, stdout)) = batch_sweep(&["--batch-delay-ms", "500"]) else {
        return;
    };
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    let b = &stats["batches"];
    // One provider batch of 3,000 requests (n = 10), created once; no
    // interactive request at all.
    assert_eq!(b["created"], 1, "{b}");
    assert_eq!(b["resubmitted"], 0, "{b}");
    assert_eq!(b["lines"], 3_000, "{b}");
    assert_eq!(stats["keys"][KEY]["requests"].as_u64().unwrap_or(0), 0);
    eprintln!("batch mode: {b}\n{stdout}");
}

#[test]
fn batch_mode_asks_digitless_samples_again_in_follow_up_batches() {
    // Every fifth answer has no digit: the protocol's retries go into
    // follow-up batches, each asking only the samples still missing.
    let Some((rows, stats, _)) = batch_sweep(&[
        "--fault-rate",
        "0.2",
        "--faults",
        "nondigit",
        "--seed",
        "5",
        "--batch-delay-ms",
        "200",
    ]) else {
        return;
    };
    let b = &stats["batches"];
    let created = b["created"].as_u64().unwrap();
    assert!(created >= 2, "follow-ups expected: {b}");
    assert_eq!(b["resubmitted"], 0, "{b}");
    let failures: u64 = rows.iter().map(|r| r.failures as u64).sum();
    assert!(failures > 100, "{failures} failed attempts recorded");
    assert_eq!(
        failures,
        stats["keys"][KEY]["faults"]["nondigit"]
            .as_u64()
            .unwrap_or(0),
        "{}",
        stats["keys"][KEY]
    );
}

const BATCH_TOKEN: &str = "sim-exact-batch-token-0123456789";

fn cluster_cli(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(simproc::bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", BATCH_TOKEN)
        .output()
        .unwrap()
}

fn batch_status(url: &str, dir: &Path) -> Option<serde_json::Value> {
    let out = cluster_cli(
        &["status", "sim-exact", "--json", "--coordinator", url],
        dir,
    );
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn batch_worker(url: &str, name: &str) -> common::Proc {
    common::spawn_worker(
        url,
        name,
        BATCH_TOKEN,
        &[
            "--extend-every",
            "0.5",
            "--batch-linger",
            "1",
            "--batch-poll",
            "0.5",
        ],
    )
}

/// Waits (at most `secs`) until `what` holds.
fn wait_until(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(secs),
            "waited {secs} s for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Batch mode on the cluster (redis-server with an append-only file, a
/// coordinator and worker processes): while the provider batch is in
/// flight its worker is killed with SIGKILL, another worker takes the
/// batch over, and then the coordinator is killed with SIGKILL and started
/// again. The batch is created exactly once at the simulator (never
/// resubmitted), every result is recorded exactly once, and the published
/// metrics come out to 1e-9.
#[test]
fn batch_mode_survives_sigkill_of_worker_and_coordinator_mid_batch() {
    let Some(reference) = reference() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let personas = reference.join("personas.json");
    let replay = replay_dir(&reference, d);
    // The batch runs 15 s at the simulator: both kills land while it does.
    let sim = SimProc::start(&[
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        "deal",
        "--batch-delay-ms",
        "15000",
    ]);
    write_spec(
        d,
        &reference,
        &sim,
        100,
        10,
        "catalog = \"openai/gpt-4o\"\nbatch = true\ntimeout_secs = 30",
    );
    let redis = moralsweep_testsupport::RedisServer::start_with(
        moralsweep_testsupport::Persistence::AofAlways,
    );
    let port = moralsweep_testsupport::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let coord_args = ["--lease-ttl", "3", "--reclaim-every", "0.2"];
    let data = d.join("coord");
    let mut coord =
        common::spawn_coordinator(port, &redis.url(), &data, BATCH_TOKEN, &coord_args, d);
    let r = cluster_cli(&["submit", "s.toml", "--coordinator", &url], d);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let created = || sim.stats()["batches"]["created"].as_u64().unwrap_or(0);

    let mut first = batch_worker(&url, "w1");
    wait_until(90, "the first worker to submit the batch", || {
        created() >= 1
    });
    // The batch is in flight; its worker dies.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let _second = batch_worker(&url, "w2");
    let holder = || {
        batch_status(&url, d)
            .and_then(|s| s["batches"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|b| b.as_str().is_some_and(|b| b.contains("polled by w2")))
    };
    wait_until(30, "the second worker to take the batch over", holder);
    let open = batch_status(&url, d).unwrap();
    assert_ne!(
        open["state"], "done",
        "the batch ended before the kill: {open}"
    );
    // The coordinator dies and comes back from Redis alone.
    coord.0.kill().unwrap();
    coord.0.wait().unwrap();
    coord = common::spawn_coordinator(port, &redis.url(), &data, BATCH_TOKEN, &coord_args, d);
    wait_until(120, "the sweep to finish", || {
        batch_status(&url, d).is_some_and(|s| s["state"] == "done")
    });
    let out = d.join("fetched");
    let r = cluster_cli(
        &[
            "results",
            "sim-exact",
            "--coordinator",
            &url,
            "--out",
            out.to_str().unwrap(),
        ],
        d,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rows = read_sampling(&out.join(format!("data/{KEY}_temp01.csv")), false)
        .unwrap()
        .rows;
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    let b = &sim.stats()["batches"];
    assert_eq!(b["created"], 1, "{b}");
    assert_eq!(b["resubmitted"], 0, "{b}");
    eprintln!("killed worker and coordinator mid-batch: {b}");
    drop(coord);
}

/// Cancelling a sweep cancels its provider batch: the worker learns it at
/// its next extension and cancels the batch at the provider.
#[test]
fn cancelling_a_batch_sweep_cancels_its_provider_batch() {
    let Some(reference) = reference() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let personas = reference.join("personas.json");
    let replay = replay_dir(&reference, d);
    let sim = SimProc::start(&[
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        "deal",
        "--batch-delay-ms",
        "60000",
    ]);
    write_spec(
        d,
        &reference,
        &sim,
        100,
        10,
        "catalog = \"openai/gpt-4o\"\nbatch = true\ntimeout_secs = 30",
    );
    let redis = moralsweep_testsupport::RedisServer::start();
    let port = moralsweep_testsupport::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _coord = common::spawn_coordinator(
        port,
        &redis.url(),
        &d.join("coord"),
        BATCH_TOKEN,
        &["--lease-ttl", "3"],
        d,
    );
    let r = cluster_cli(&["submit", "s.toml", "--coordinator", &url], d);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let _worker = batch_worker(&url, "w1");
    let batches = || sim.stats()["batches"]["apis"]["openai"].clone();
    wait_until(90, "the batch to be submitted", || {
        batches()["created"] == 1
    });
    let shown = batch_status(&url, d).unwrap();
    let line = shown["batches"][0].as_str().unwrap_or_default().to_string();
    assert!(
        line.contains("openai batch batch_") && line.contains("polled by w1"),
        "status shows the batch: {shown}"
    );
    let r = cluster_cli(&["cancel", "sim-exact", "--coordinator", &url], d);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    wait_until(30, "the provider batch to be cancelled", || {
        batches()["cancelled"] == 1
    });
    assert_eq!(batches()["created"], 1);
}

/// `moralsweep run` killed with SIGKILL once its provider batch was
/// created at the simulator (`sim_args` say when the creation is answered
/// and how long the batch runs), then run again: the new run takes the
/// batch over (polls it, or finds it at the provider) instead of
/// submitting it again, and the metrics come out exact.
fn batch_run_killed_and_rerun(sim_args: &[&str]) {
    let Some(reference) = reference() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let personas = reference.join("personas.json");
    let replay = replay_dir(&reference, d);
    let mut args = vec![
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        "deal",
    ];
    args.extend_from_slice(sim_args);
    let sim = SimProc::start(&args);
    write_spec(
        d,
        &reference,
        &sim,
        100,
        10,
        "catalog = \"openai/gpt-4o\"\nbatch = true\ntimeout_secs = 30",
    );
    let mut child = Command::new(simproc::bin())
        .args(["run", "s.toml", "--quiet"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let created = || sim.stats()["batches"]["created"].as_u64().unwrap_or(0);
    wait_until(90, "the run to submit its batch", || created() >= 1);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t0 = std::time::Instant::now();
    let out = run_sweep(d);
    let rows = rows(d);
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    let b = &sim.stats()["batches"];
    assert_eq!(b["created"], 1, "{b}");
    assert_eq!(b["resubmitted"], 0, "{b}");
    eprintln!(
        "rerun took over the batch and finished in {:.1} s: {b}\n{}",
        t0.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_batch_run_killed_mid_batch_resumes_without_submitting_again() {
    batch_run_killed_and_rerun(&["--batch-delay-ms", "6000"]);
}

/// Killed after the provider accepted the batch but before its answer
/// arrived: the record holds the requests, not the provider's id, and the
/// rerun finds the batch at the provider by its name.
#[test]
fn a_batch_run_killed_before_the_provider_answered_finds_its_batch() {
    batch_run_killed_and_rerun(&[
        "--batch-delay-ms",
        "2000",
        "--batch-answer-delay-ms",
        "5000",
    ]);
}

/// Batch mode through Gemini's batch mode (`candidateCount`, at most the
/// catalog's cap per request) and Anthropic's Message Batches (one sample
/// per request: 30,000 lines in one batch), as the simulator speaks them:
/// the same exact metrics, one batch each, none created twice.
fn provider_batch_sweep(provider: &str, model_lines: &str, expect_lines: u64, file: &str) {
    let Some(reference) = reference() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let personas = reference.join("personas.json");
    let replay = replay_dir(&reference, d);
    let sim = simproc::deal_replay(&replay, &personas);
    let spec = format!(
        "name = \"batch-{provider}\"\npersonas = \"{}\"\npersona_count = 100\nrepetitions = 10\n\
         temperature = 0.1\nmodes = [\"persona\"]\noutput = \"out\"\nseed = 7\n\n\
         [[model]]\nkey = \"{KEY}\"\nprovider = \"{provider}\"\nmodel = \"{KEY}\"\nbase_url = \"{}\"\n\
         api_key_env = \"MORALSWEEP_SIM_EXACT_KEY\"\nbatch = true\ntimeout_secs = 30\n{model_lines}\n",
        personas.display(),
        sim.url,
    );
    std::fs::write(d.join("s.toml"), spec).unwrap();
    let out = Command::new(simproc::bin())
        .args(["run", "s.toml", "--quiet"])
        .current_dir(d)
        .env("MORALSWEEP_SIM_EXACT_KEY", "sk-sim-exact")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{provider}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_sampling(&d.join(format!("out/data/{KEY}_{file}.csv")), false)
        .unwrap()
        .rows;
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    let b = &sim.stats()["batches"];
    assert_eq!(b["created"], 1, "{provider}: {b}");
    assert_eq!(b["resubmitted"], 0, "{provider}: {b}");
    assert_eq!(b["lines"], expect_lines, "{provider}: {b}");
    eprintln!("{provider}: {b}");
}

#[test]
fn batch_mode_through_gemini_reproduces_exactly() {
    // candidateCount up to the catalog's cap for Gemini models.
    provider_batch_sweep("gemini", "max_samples_per_request = 5", 6_000, "temp01");
}

#[test]
fn batch_mode_through_anthropic_reproduces_exactly() {
    // Anthropic's current models take no temperature: sampled at its default.
    provider_batch_sweep(
        "anthropic",
        "temperature = \"provider-default\"",
        30_000,
        "tempdefault",
    );
}

/// A unit larger than one provider batch may be goes out as several, each
/// of whole cells (here at most 1,000 requests a batch: three batches for
/// 3,000 cells), with the same exact metrics.
#[test]
fn a_unit_larger_than_one_batch_goes_out_as_several() {
    let Some(reference) = reference() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sim = simproc::deal_replay(&replay_dir(&reference, d), &reference.join("personas.json"));
    write_spec(
        d,
        &reference,
        &sim,
        100,
        10,
        "catalog = \"openai/gpt-4o\"\nbatch = true\ntimeout_secs = 30",
    );
    let redis = moralsweep_testsupport::RedisServer::start();
    let port = moralsweep_testsupport::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _coord = common::spawn_coordinator(
        port,
        &redis.url(),
        &d.join("coord"),
        BATCH_TOKEN,
        &["--lease-ttl", "5"],
        d,
    );
    let r = cluster_cli(&["submit", "s.toml", "--coordinator", &url], d);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let _worker = common::spawn_worker(
        &url,
        "w1",
        BATCH_TOKEN,
        &[
            "--batch-linger",
            "1",
            "--batch-poll",
            "0.5",
            "--batch-max-requests",
            "1000",
        ],
    );
    wait_until(120, "the sweep to finish", || {
        batch_status(&url, d).is_some_and(|s| s["state"] == "done")
    });
    let out = d.join("fetched");
    let r = cluster_cli(
        &[
            "results",
            "sim-exact",
            "--coordinator",
            &url,
            "--out",
            out.to_str().unwrap(),
        ],
        d,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rows = read_sampling(&out.join(format!("data/{KEY}_temp01.csv")), false)
        .unwrap()
        .rows;
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    let b = &sim.stats()["batches"];
    assert_eq!(b["created"], 3, "{b}");
    assert_eq!(b["lines"], 3_000, "{b}");
    assert_eq!(b["resubmitted"], 0, "{b}");
}
