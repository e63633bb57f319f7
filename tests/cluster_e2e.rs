//! The cluster end to end with real processes: a redis-server of the test's
//! own (append-only file on), a coordinator process and three worker
//! processes over gRPC on loopback. A sweep completes with every slot
//! exactly once; the same sweep with a worker killed (SIGKILL), the
//! coordinator killed and restarted, and redis-server restarted gives files
//! identical to the undisturbed run (all but `collected_at`).

mod common;
use common::simproc;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{worker_command, Coordinator};
use common::*;
use moralsweep_testsupport::RedisServer;

const TOKEN: &str = "e2e-token-not-a-secret";
const KEY_VAR: &str = "MORALSWEEP_E2E_SIM_KEY";
const API_KEY: &str = "sk-e2e-cluster-9f8e7d6c5b4a";
const MODELS: [&str; 2] = ["syn-base", "syn-insecure"];
const PERSONAS: usize = 20;
const REPS: u32 = 2;

/// The test's coordinator: its log in its data folder, info-level.
fn start_coordinator(redis: &RedisServer, data: &Path) -> Coordinator {
    Coordinator::start(
        &redis.url(),
        data,
        &data.join("coordinator.log"),
        TOKEN,
        None,
    )
}

struct Workers(Vec<Child>);

impl Workers {
    fn start(url: &str, n: usize, dir: &Path) -> Self {
        Workers(
            (0..n)
                .map(|i| {
                    let log = std::fs::File::create(dir.join(format!("worker{i}.log"))).unwrap();
                    worker_command(url, &format!("w{i}"), TOKEN)
                        .env(KEY_VAR, API_KEY)
                        .stdout(Stdio::null())
                        .stderr(log)
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }

    /// SIGTERM to all, then wait: they hand back what they hold and exit 0.
    fn stop(&mut self) {
        for c in &self.0 {
            unsafe_sigterm(c.id());
        }
        for c in &mut self.0 {
            let t0 = Instant::now();
            loop {
                if let Some(st) = c.try_wait().unwrap() {
                    assert!(st.success() || st.code().is_none(), "worker exit {st:?}");
                    break;
                }
                if t0.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                    panic!("a worker did not exit after SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.0.clear();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

fn cli(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn status_json(url: &str, sweep: &str, dir: &Path) -> Option<serde_json::Value> {
    let out = cli(&["status", sweep, "--json", "--coordinator", url], dir);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn wait_done(url: &str, sweep: &str, dir: &Path, limit: Duration) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        if let Some(v) = status_json(url, sweep, dir) {
            if v["state"] == "done" {
                return v;
            }
        }
        assert!(t0.elapsed() < limit, "sweep {sweep} not done in {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn done_count(url: &str, sweep: &str, dir: &Path) -> u64 {
    status_json(url, sweep, dir)
        .and_then(|v| v["done"].as_u64())
        .unwrap_or(0)
}

/// The provider simulator (seeded answers, demanding the test's key) and
/// the sweep spec whose models call it.
fn setup(dir: &Path, extra: &str) -> simproc::SimProc {
    let sim = simproc::SimProc::start_with_env(&["--api-key-env", KEY_VAR], &[(KEY_VAR, API_KEY)]);
    write_personas(dir, PERSONAS);
    std::fs::write(
        dir.join("s.toml"),
        spec_text_sim(
            "e2e-cluster",
            &MODELS,
            PERSONAS,
            REPS,
            &sim.url,
            KEY_VAR,
            extra,
        ),
    )
    .unwrap();
    sim
}

fn fetch(url: &str, dir: &Path) -> PathBuf {
    let out = dir.join("fetched");
    let r = cli(
        &[
            "results",
            "e2e-cluster",
            "--coordinator",
            url,
            "--out",
            out.to_str().unwrap(),
        ],
        dir,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    out
}

#[test]
fn cluster_sweep_survives_worker_coordinator_and_redis_crashes() {
    // --- Undisturbed.
    let a = tempfile::tempdir().unwrap();
    let _sim = setup(a.path(), "");
    let redis = RedisServer::start();
    let coord = start_coordinator(&redis, &a.path().join("coord"));
    let mut workers = Workers::start(&coord.url(), 3, a.path());
    let r = cli(
        &["submit", "s.toml", "--coordinator", &coord.url()],
        a.path(),
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let st = wait_done(
        &coord.url(),
        "e2e-cluster",
        a.path(),
        Duration::from_secs(120),
    );
    let total = (MODELS.len() * (PERSONAS * 30 + 30) * REPS as usize) as u64;
    assert_eq!(st["done"].as_u64(), Some(total));
    workers.stop();
    let want = data_without_time(&fetch(&coord.url(), a.path()));
    assert_eq!(want.len(), 4, "{:?}", want.keys());
    for m in MODELS {
        assert_every_slot_once(&want[&format!("{m}_temp01.csv")], PERSONAS, REPS as usize);
        assert_eq!(
            want[&format!("{m}_temp01_self.csv")].len() - 1,
            30 * REPS as usize
        );
    }
    drop(coord);
    drop(redis);

    // --- The same sweep with faults, slowed by a rate limit so they land mid-sweep.
    let b = tempfile::tempdir().unwrap();
    let _sim = setup(b.path(), "rpm = 4800");
    let mut redis = RedisServer::start();
    let mut coord = start_coordinator(&redis, &b.path().join("coord"));
    let mut workers = Workers::start(&coord.url(), 3, b.path());
    let r = cli(
        &["submit", "s.toml", "--coordinator", &coord.url()],
        b.path(),
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let url = coord.url();
    let wait_for = |n: u64| {
        let t0 = Instant::now();
        while done_count(&url, "e2e-cluster", b.path()) < n {
            assert!(t0.elapsed() < Duration::from_secs(60), "no progress to {n}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(total / 8);
    // A worker dies holding leases: they expire and go to the others.
    let mut victim = workers.0.remove(0);
    victim.kill().unwrap();
    victim.wait().unwrap();
    wait_for(total / 4);
    // The coordinator dies and comes back on the same port, from Redis alone.
    coord.kill9();
    std::thread::sleep(Duration::from_millis(500));
    coord.spawn();
    wait_for(total / 2);
    // A worker told to stop (SIGTERM) mid-sweep hands back what it holds and exits 0.
    let mut leaving = workers.0.remove(0);
    let t0 = Instant::now();
    unsafe_sigterm(leaving.id());
    let st = leaving.wait().unwrap();
    assert!(st.success(), "worker exit after SIGTERM: {st:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "SIGTERM took {:?}",
        t0.elapsed()
    );
    // Redis dies and comes back from its append-only file.
    redis.restart();
    let st = wait_done(
        &coord.url(),
        "e2e-cluster",
        b.path(),
        Duration::from_secs(120),
    );
    assert_eq!(st["done"].as_u64(), Some(total));
    workers.stop();
    let got = data_without_time(&fetch(&coord.url(), b.path()));
    assert_eq!(
        got, want,
        "files after the crashes differ from the undisturbed run"
    );
    let log = std::fs::read_to_string(b.path().join("coord/coordinator.log")).unwrap();
    // Whether the killed worker held a lease at the instant it died depends on
    // timing (paced grants can leave a worker with none for a moment); when it
    // did, the leases must have come back through expiry.
    if !log.contains("took back expired leases") {
        eprintln!("note: the killed worker held no lease when it died; no reclaim was needed");
    }
    assert!(!log.contains(TOKEN), "the token leaked into the log");
    // The API key is in no log, no output file and not in Redis' append-only file.
    for d in [a.path(), b.path(), redis.dir()] {
        let leaks = files_containing(d, API_KEY);
        assert!(leaks.is_empty(), "the API key was written to {leaks:?}");
    }
}
