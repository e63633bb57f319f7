//! The misalignment check on the cluster: redis-server, a coordinator and
//! two worker processes; one worker is killed (SIGKILL) and the coordinator
//! killed and restarted while the judge is at work. Every answer is still
//! recorded once and judged exactly once for alignment and once for
//! coherence (the fetched answers file and the store's counts), the
//! simulator saw no judge request beyond the killed worker's in-flight
//! ones, and the summary equals the independent recomputation.

mod common;
use common::simproc;
mod emcheck;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, spawn_coordinator, spawn_worker, write_personas, Proc};
use emcheck::{check_outputs, em_spec, EM_SIM};
use moralsweep_testsupport::{free_port, RedisServer};
use simproc::SimProc;

const TOKEN: &str = "em-cluster-token-0123456789abcdef";
/// Slots a worker holds at most: twice its `--concurrency` (8) or its
/// `--lease-batch` (16), whichever is more. A slot asked but not recorded
/// when its worker dies (or whose lease expires while the coordinator is
/// down) is asked again; nothing else is.
const HELD: u64 = 16;

fn cli(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn status(url: &str, dir: &Path) -> Option<serde_json::Value> {
    let out = cli(
        &["status", "em-cluster", "--json", "--coordinator", url],
        dir,
    );
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn judged(url: &str, dir: &Path) -> u64 {
    status(url, dir)
        .and_then(|v| {
            v["units"]
                .as_array()?
                .iter()
                .find(|u| u["mode"] == "em-judge")
                .and_then(|u| u["done"].as_u64())
        })
        .unwrap_or(0)
}

fn worker(url: &str, name: &str) -> Proc {
    spawn_worker(
        url,
        name,
        TOKEN,
        &[
            "--concurrency",
            "8",
            "--lease-batch",
            "16",
            "--report-batch",
            "8",
            "--extend-every",
            "0.5",
        ],
    )
}

#[test]
fn every_answer_is_judged_once_through_worker_and_coordinator_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("em.json"), EM_SIM).unwrap();
    // Some latency, so that requests are in flight when the worker dies.
    let sim = SimProc::start(&[
        "--em",
        d.join("em.json").to_str().unwrap(),
        "--seed",
        "4",
        "--latency-ms",
        "20",
    ]);
    write_personas(d, 1);
    let models = ["m-bad"];
    // The judge paced at 1200 requests a minute: its 480 requests take
    // about 24 s, long enough for the crashes to land mid-check.
    let spec = em_spec("em-cluster", &sim.url, &models).replace("rpm = 60000", "rpm = 1200");
    std::fs::write(d.join("s.toml"), spec).unwrap();
    let redis = RedisServer::start();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let coord_args = ["--lease-ttl", "2", "--reclaim-every", "0.5"];
    let data = d.join("coord");
    let mut coord = spawn_coordinator(port, &redis.url(), &data, TOKEN, &coord_args, d);
    let mut victim = worker(&url, "w0");
    let _survivor = worker(&url, "w1");
    let r = cli(&["submit", "s.toml", "--coordinator", &url], d);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    let wait_judged = |n: u64| {
        let t0 = Instant::now();
        while judged(&url, d) < n {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "no progress to {n} judged"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_judged(60);
    // A worker dies holding judge leases: they expire and go to the other.
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    wait_judged(180);
    // The coordinator dies and comes back on the same port, from Redis alone.
    coord.0.kill().unwrap();
    coord.0.wait().unwrap();
    coord = spawn_coordinator(port, &redis.url(), &data, TOKEN, &coord_args, d);
    let t0 = Instant::now();
    let st = loop {
        if let Some(v) = status(&url, d).filter(|v| v["state"] == "done") {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the check did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st["done"], 240 + 480, "{st}");
    let out = d.join("fetched");
    let r = cli(
        &[
            "results",
            "em-cluster",
            "--coordinator",
            &url,
            "--out",
            out.to_str().unwrap(),
        ],
        d,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    check_outputs(&out, &models);
    // At the simulator: every answer and judge prompt asked at least once,
    // and again at most for the slots the two workers held at a crash.
    let stats = sim.stats();
    let answers = stats["keys"]["m-bad"]["em_answers"].as_u64().unwrap();
    let judge = stats["keys"]["judge-4o"]["em_judged"].as_u64().unwrap();
    assert!(
        (240..=240 + 2 * HELD).contains(&answers),
        "{answers} answer requests"
    );
    assert!(
        (480..=480 + 2 * HELD).contains(&judge),
        "{judge} judge requests"
    );
    eprintln!("answer requests {answers}, judge requests {judge} (480 judged)");
    drop(coord);
}
