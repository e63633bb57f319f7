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
//!
//! Batch mode's exact runs are in `batch_run.rs`.

mod common;
use common::simproc;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::exact::{assert_every_slot_once, assert_reproduces, metrics, published, rows_in, KEY};
use moralsweep_analysis::formats::RatingRow;
use moralsweep_testsupport::reference::reference_dir;
use simproc::{run_sweep, SimProc};

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
    rows_in(&dir.join("out"), "temp01")
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
    let sim = simproc::deal_replay_with(
        &replay,
        &reference.join("personas.json"),
        &[
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
        ],
    );
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
    let sim = simproc::deal_replay_with(&replay, &reference.join("personas.json"), sim_args);
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
