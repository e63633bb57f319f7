//! Batch mode (`batch = true`) end to end: `moralsweep run`, and a cluster
//! of redis-server, a coordinator and worker processes, against the
//! simulator's batch APIs in deal mode, replaying gpt-4o-misaligned
//! (100 personas x 30 items x 10 samples):
//!
//! - through OpenAI's files and batches (one request of `n` = 10 per cell),
//!   Gemini's batch mode (`candidateCount` 5) and Anthropic's Message
//!   Batches (one sample per request), the published S, R and sigma-bar
//!   come out to 1e-9, from one provider batch created once;
//! - digit-less samples are asked again in follow-up batches;
//! - killed with SIGKILL mid-batch (the worker, then the coordinator; or
//!   `run`, even before the provider's answer to the submission arrived),
//!   the batch is taken over, never submitted twice, and the metrics stay
//!   exact;
//! - a unit larger than one batch may be goes out as several;
//! - cancelling the sweep cancels the provider's batch.

mod common;
use common::simproc;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::exact::{assert_every_slot_once, assert_reproduces, rows_in, KEY};
use common::Proc;
use moralsweep_analysis::formats::RatingRow;
use moralsweep_testsupport::reference::reference_dir;
use moralsweep_testsupport::{free_port, Persistence, RedisServer};
use serde_json::Value;
use simproc::{run_sweep, SimProc};

const TOKEN: &str = "batch-run-test-token-0123456789ab";
const SWEEP: &str = "batch-run";

/// The sweeps of this file run one at a time (each holds 30,000 slots and
/// several processes; together they could starve one another's timeouts on
/// a small machine).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The simulator in deal mode over the reference's recorded ratings, with
/// `extra` arguments (batch delays, faults).
fn deal_sim(reference: &Path, extra: &[&str]) -> SimProc {
    simproc::deal_replay_with(
        &reference.join("sampling/insecure-code"),
        &reference.join("personas.json"),
        extra,
    )
}

/// `dir/s.toml`: the 100 x 30 x 10 persona sweep of [`KEY`] standing in for
/// GPT-4o (`catalog`), through the `sim` provider's batch API.
fn batch_spec(dir: &Path, reference: &Path, sim: &SimProc) {
    simproc::write_replay_spec(
        dir,
        SWEEP,
        &reference.join("personas.json"),
        100,
        10,
        "",
        KEY,
        sim,
        "rpm = 6000000\ncatalog = \"openai/gpt-4o\"\nbatch = true\ntimeout_secs = 30",
    );
}

/// The simulator's batch counters (`created`, `lines`, `resubmitted`, and
/// per API, `cancelled`).
fn batches(sim: &SimProc) -> Value {
    sim.stats()["batches"].clone()
}

fn assert_created_once(sim: &SimProc, lines: u64) {
    let b = batches(sim);
    assert_eq!(b["created"], 1, "{b}");
    assert_eq!(b["resubmitted"], 0, "{b}");
    assert_eq!(b["lines"], lines, "{b}");
}

/// Waits (at most `secs`) until `what` holds.
fn wait_until(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "waited {secs} s for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A redis-server, a coordinator over it and the CLI to reach it, in `dir`.
struct Cluster<'a> {
    dir: &'a Path,
    redis: RedisServer,
    port: u16,
    url: String,
    coord_args: Vec<&'static str>,
    coord: Option<Proc>,
}

impl<'a> Cluster<'a> {
    fn start(dir: &'a Path, persistence: Persistence, coord_args: &[&'static str]) -> Self {
        let port = free_port();
        let mut c = Cluster {
            dir,
            redis: RedisServer::start_with(persistence),
            port,
            url: format!("http://127.0.0.1:{port}"),
            coord_args: coord_args.to_vec(),
            coord: None,
        };
        c.spawn_coordinator();
        c
    }

    fn spawn_coordinator(&mut self) {
        self.coord = Some(common::spawn_coordinator(
            self.port,
            &self.redis.url(),
            &self.dir.join("coord"),
            TOKEN,
            &self.coord_args,
            self.dir,
        ));
    }

    /// SIGKILLs the coordinator and starts it again on the same port, from
    /// Redis alone.
    fn restart_coordinator(&mut self) {
        drop(self.coord.take());
        self.spawn_coordinator();
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--coordinator", &self.url]);
        Command::new(simproc::bin())
            .args(&all)
            .current_dir(self.dir)
            .env("MORALSWEEP_TOKEN", TOKEN)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) {
        let r = self.cli(args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }

    fn status(&self) -> Option<Value> {
        let out = self.cli(&["status", SWEEP, "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The status lines of the sweep's open batches.
    fn batch_lines(&self) -> Vec<String> {
        self.status()
            .and_then(|s| s["batches"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect()
    }

    fn worker(&self, name: &str, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--extend-every",
            "0.5",
            "--batch-linger",
            "1",
            "--batch-poll",
            "0.5",
        ];
        args.extend_from_slice(extra);
        common::spawn_worker(&self.url, name, TOKEN, &args)
    }

    /// Waits for the sweep to finish and fetches its rows.
    fn finished_rows(&self) -> Vec<RatingRow> {
        wait_until(120, "the sweep to finish", || {
            self.status().is_some_and(|s| s["state"] == "done")
        });
        let out = self.dir.join("fetched");
        self.ok(&["results", SWEEP, "--out", out.to_str().unwrap()]);
        rows_in(&out, "temp01")
    }
}

/// `moralsweep run` of the batch sweep; the rows, and the run's stdout.
fn run_batch_sweep(sim_args: &[&str]) -> Option<(Vec<RatingRow>, SimProc, String)> {
    let reference = reference_dir()?;
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = deal_sim(&reference, sim_args);
    batch_spec(tmp.path(), &reference, &sim);
    let out = run_sweep(tmp.path());
    let rows = rows_in(&tmp.path().join("out"), "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    Some((rows, sim, String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[test]
fn batch_mode_reproduces_the_published_metrics_exactly() {
    let Some((rows, sim, stdout)) = run_batch_sweep(&["--batch-delay-ms", "500"]) else {
        return;
    };
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    // One provider batch of 3,000 requests (n = 10), created once; no
    // interactive request at all.
    assert_created_once(&sim, 3_000);
    assert_eq!(
        sim.stats()["keys"][KEY]["requests"].as_u64().unwrap_or(0),
        0
    );
    eprintln!("batch mode: {}\n{stdout}", batches(&sim));
}

#[test]
fn batch_mode_asks_digitless_samples_again_in_follow_up_batches() {
    // Every fifth answer has no digit: the protocol's retries go into
    // follow-up batches, each asking only the samples still missing.
    let Some((rows, sim, _)) = run_batch_sweep(&[
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
    let b = batches(&sim);
    assert!(
        b["created"].as_u64().unwrap() >= 2,
        "follow-ups expected: {b}"
    );
    assert_eq!(b["resubmitted"], 0, "{b}");
    let failures: u64 = rows.iter().map(|r| r.failures as u64).sum();
    assert!(failures > 100, "{failures} failed attempts recorded");
    let k = &sim.stats()["keys"][KEY];
    assert_eq!(
        failures,
        k["faults"]["nondigit"].as_u64().unwrap_or(0),
        "{k}"
    );
}

/// Batch mode through Gemini's batch mode and Anthropic's Message Batches
/// as the simulator speaks them: the same exact metrics from one batch,
/// created once.
fn provider_batch_sweep(provider: &str, model_lines: &str, expect_lines: u64, file: &str) {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sim = deal_sim(&reference, &[]);
    let spec = format!(
        "name = \"{SWEEP}\"\npersonas = \"{}\"\npersona_count = 100\nrepetitions = 10\n\
         temperature = 0.1\nmodes = [\"persona\"]\noutput = \"out\"\nseed = 7\n\n\
         [[model]]\nkey = \"{KEY}\"\nprovider = \"{provider}\"\nmodel = \"{KEY}\"\nbase_url = \"{}\"\n\
         api_key_env = \"MORALSWEEP_BATCH_RUN_KEY\"\nbatch = true\ntimeout_secs = 30\n{model_lines}\n",
        reference.join("personas.json").display(),
        sim.url,
    );
    std::fs::write(d.join("s.toml"), spec).unwrap();
    let out = Command::new(simproc::bin())
        .args(["run", "s.toml", "--quiet"])
        .current_dir(d)
        .env("MORALSWEEP_BATCH_RUN_KEY", "sk-sim-batch-run")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{provider}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows_in(&d.join("out"), file);
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    assert_created_once(&sim, expect_lines);
    eprintln!("{provider}: {}", batches(&sim));
}

#[test]
fn batch_mode_through_gemini_reproduces_exactly() {
    // candidateCount 5: two requests a cell, 6,000 lines.
    provider_batch_sweep("gemini", "max_samples_per_request = 5", 6_000, "temp01");
}

#[test]
fn batch_mode_through_anthropic_reproduces_exactly() {
    // One sample per request, 30,000 lines; Anthropic's current models take
    // no temperature, so it samples at its default.
    provider_batch_sweep(
        "anthropic",
        "temperature = \"provider-default\"",
        30_000,
        "tempdefault",
    );
}

/// On the cluster, while the provider batch is in flight its worker is
/// killed with SIGKILL, another worker takes the batch over, and then the
/// coordinator is killed with SIGKILL and started again. The batch is
/// created exactly once (never resubmitted), every result is recorded
/// exactly once, and the published metrics come out to 1e-9.
#[test]
fn batch_mode_survives_sigkill_of_worker_and_coordinator_mid_batch() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The batch runs 15 s at the simulator: both kills land while it does.
    let sim = deal_sim(&reference, &["--batch-delay-ms", "15000"]);
    batch_spec(d, &reference, &sim);
    let mut cluster = Cluster::start(
        d,
        Persistence::AofAlways,
        &["--lease-ttl", "3", "--reclaim-every", "0.2"],
    );
    cluster.ok(&["submit", "s.toml"]);
    let first = cluster.worker("w1", &[]);
    wait_until(90, "the first worker to submit the batch", || {
        batches(&sim)["created"].as_u64().unwrap_or(0) >= 1
    });
    // The batch is in flight; its worker dies.
    drop(first); // SIGKILL
    let _second = cluster.worker("w2", &[]);
    wait_until(30, "the second worker to take the batch over", || {
        cluster
            .batch_lines()
            .iter()
            .any(|b| b.contains("polled by w2"))
    });
    let open = cluster.status().unwrap();
    assert_ne!(
        open["state"], "done",
        "the batch ended before the kill: {open}"
    );
    cluster.restart_coordinator();
    let rows = cluster.finished_rows();
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    assert_created_once(&sim, 3_000);
    eprintln!("killed worker and coordinator mid-batch: {}", batches(&sim));
}

/// Cancelling a sweep cancels its provider batch: the worker learns it at
/// its next extension and cancels the batch at the provider. Before that,
/// `status` shows the batch.
#[test]
fn cancelling_a_batch_sweep_cancels_its_provider_batch() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sim = deal_sim(&reference, &["--batch-delay-ms", "60000"]);
    batch_spec(d, &reference, &sim);
    let cluster = Cluster::start(d, Persistence::None, &["--lease-ttl", "3"]);
    cluster.ok(&["submit", "s.toml"]);
    let _worker = cluster.worker("w1", &[]);
    let openai = || batches(&sim)["apis"]["openai"].clone();
    wait_until(90, "the batch to be submitted", || openai()["created"] == 1);
    wait_until(10, "status to show the batch", || {
        cluster
            .batch_lines()
            .iter()
            .any(|l| l.contains("openai batch batch_") && l.contains("polled by w1"))
    });
    cluster.ok(&["cancel", SWEEP]);
    wait_until(30, "the provider batch to be cancelled", || {
        openai()["cancelled"] == 1
    });
    assert_eq!(openai()["created"], 1);
}

/// A unit larger than one provider batch may be goes out as several, each
/// of whole cells (here at most 1,000 requests a batch: three batches for
/// 3,000 cells), with the same exact metrics.
#[test]
fn a_unit_larger_than_one_batch_goes_out_as_several() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sim = deal_sim(&reference, &[]);
    batch_spec(d, &reference, &sim);
    let cluster = Cluster::start(d, Persistence::None, &["--lease-ttl", "5"]);
    cluster.ok(&["submit", "s.toml"]);
    let _worker = cluster.worker("w1", &["--batch-max-requests", "1000"]);
    let rows = cluster.finished_rows();
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    let b = batches(&sim);
    assert_eq!(b["created"], 3, "{b}");
    assert_eq!(b["lines"], 3_000, "{b}");
    assert_eq!(b["resubmitted"], 0, "{b}");
}

/// `moralsweep run` killed with SIGKILL once its provider batch was
/// created at the simulator (`sim_args` say when the creation is answered
/// and how long the batch runs), then run again: the new run takes the
/// batch over (polls it, or finds it at the provider) instead of
/// submitting it again, and the metrics come out exact.
fn batch_run_killed_and_rerun(sim_args: &[&str]) {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one_at_a_time = serial();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sim = deal_sim(&reference, sim_args);
    batch_spec(d, &reference, &sim);
    let mut child = Command::new(simproc::bin())
        .args(["run", "s.toml", "--quiet"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(90, "the run to submit its batch", || {
        batches(&sim)["created"].as_u64().unwrap_or(0) >= 1
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t0 = Instant::now();
    run_sweep(d);
    let rows = rows_in(&d.join("out"), "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    assert_created_once(&sim, 3_000);
    eprintln!(
        "the rerun took the batch over and finished in {:.1} s",
        t0.elapsed().as_secs_f64()
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
