//! A provider that was never reachable (nothing listens at its base_url)
//! stops its model after the spec's `unreachable_timeout_secs` with an error
//! naming the model key and the base_url, in `run` and in the cluster; and
//! Ctrl-C / SIGTERM stop `run` and a worker within seconds while their
//! calls are backing off. Real processes throughout.

mod common;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moralsweep_testsupport::{free_port, RedisServer};

const KEY_VAR: &str = "MORALSWEEP_UNREACHABLE_TEST_KEY";
const TOKEN: &str = "unreachable-test-token-0123456789";

/// A spec whose one model calls a closed port; returns the base_url.
fn dead_spec(dir: &Path, name: &str, unreachable_secs: u32) -> String {
    write_personas(dir, 2);
    let url = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(
        dir.join("s.toml"),
        spec_text_sim(
            name,
            &["dead"],
            2,
            1,
            &url,
            KEY_VAR,
            &format!("unreachable_timeout_secs = {unreachable_secs}"),
        ),
    )
    .unwrap();
    format!("{url}/v1")
}

fn spawn_run(dir: &Path) -> Child {
    Command::new(bin())
        .args(["run", "s.toml", "--quiet"])
        .current_dir(dir)
        .env(KEY_VAR, "sk-not-used")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `c` to exit (killing it after `limit`, a guard against hangs).
fn wait(c: &mut Child, limit: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = c.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(c: Child) -> String {
    String::from_utf8_lossy(&c.wait_with_output().unwrap().stderr).into_owned()
}

fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn run_stops_a_model_whose_provider_was_never_reachable() {
    let d = tempfile::tempdir().unwrap();
    let base = dead_spec(d.path(), "dead-run", 3);
    let mut c = spawn_run(d.path());
    // It retried for ever before; now the 3 s allowance ends it.
    let st = wait(&mut c, Duration::from_secs(90));
    let err = stderr_of(c);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("\"dead\"") && err.contains(&base) && err.contains("never reachable"),
        "{err}"
    );
}

#[test]
fn ctrl_c_and_sigterm_stop_run_within_seconds_while_calls_back_off() {
    for sig in ["-INT", "-TERM"] {
        let d = tempfile::tempdir().unwrap();
        dead_spec(d.path(), "dead-stop", 600);
        let mut c = spawn_run(d.path());
        // Let the calls fail and back off.
        std::thread::sleep(Duration::from_secs(4));
        assert!(c.try_wait().unwrap().is_none(), "run ended by itself");
        let t0 = Instant::now();
        signal(c.id(), sig);
        let st = wait(&mut c, Duration::from_secs(60));
        let took = t0.elapsed();
        let err = stderr_of(c);
        assert_eq!(st.code(), Some(130), "{sig}: {err}");
        assert!(err.contains("interrupted"), "{err}");
        // It took 30-35 s before (the drain waited for the backoffs).
        assert!(took < Duration::from_secs(10), "{sig} took {took:?}");
    }
}

#[test]
fn cluster_model_stops_when_never_reachable_and_worker_stops_promptly() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let redis = RedisServer::start();
    let port = free_port();
    let _coord = spawn_coordinator(
        port,
        &redis.url(),
        &dir.join("data"),
        TOKEN,
        &["--lease-ttl", "5", "--reclaim-every", "0.5"],
        dir,
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut worker = Command::new(bin())
        .args(["worker", "--coordinator", &url, "--name", "w"])
        .env("MORALSWEEP_TOKEN", TOKEN)
        .env(KEY_VAR, "sk-not-used")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = dead_spec(dir, "dead-cluster", 3);
    submit(dir, &url, TOKEN);
    let status = || {
        let out = Command::new(bin())
            .args(["status", "dead-cluster", "--json", "--coordinator", &url])
            .env("MORALSWEEP_TOKEN", TOKEN)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    };
    let t0 = Instant::now();
    let st = loop {
        if let Some(v) = status() {
            if v["state"] != "running" {
                break v;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the model did not stop: {:?}",
            status()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let msg = st["units"][0]["message"].as_str().unwrap_or("").to_string();
    assert_eq!(st["units"][0]["state"], "failed", "{st}");
    assert!(
        msg.contains("\"dead\"") && msg.contains(&base) && msg.contains("never reachable"),
        "{st}"
    );

    // A second sweep that would retry for 10 minutes: SIGTERM ends the worker
    // within seconds (its calls are backing off), not after the 30 s drain.
    std::fs::write(
        dir.join("s.toml"),
        std::fs::read_to_string(dir.join("s.toml"))
            .unwrap()
            .replace("dead-cluster", "dead-patient")
            .replace(
                "unreachable_timeout_secs = 3",
                "unreachable_timeout_secs = 600",
            ),
    )
    .unwrap();
    submit(dir, &url, TOKEN);
    std::thread::sleep(Duration::from_secs(4));
    let t0 = Instant::now();
    signal(worker.id(), "-TERM");
    let st = wait(&mut worker, Duration::from_secs(60));
    let took = t0.elapsed();
    assert!(st.success(), "worker exit {st:?}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
}
