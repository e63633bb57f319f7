//! Benchmark (ignored by default; run it in release):
//!
//! ```text
//! cargo test --release --test bench_rate -- --ignored --nocapture
//! ```
//!
//! One rate group at 30,000 requests per minute, served by 8 worker
//! processes through one coordinator (Redis without persistence), against
//! `moralsweep sim` enforcing the same 30,000 rpm and counting every request
//! it receives per second. Prints the achieved rate over the steady part (the
//! goal: at least 95% of the limit), the largest number of requests the
//! simulator saw in any 60-second window (the goal: at most 1% over the
//! limit), the 429s it answered, and the CPU time the workers spent per
//! 1,000 requests.
//!
//! Knobs: MORALSWEEP_BENCH_RPM (default 30000), MORALSWEEP_BENCH_PERSONAS
//! (default 300: 90,000 slots, three minutes at 30,000 rpm),
//! MORALSWEEP_BENCH_WORKERS (default 8).
//!
//! Measured on the 2-core development machine (release build, 2026-11-27):
//! 90,000 slots in 181.8 s; 90,000 requests, no 429; 29,700 requests a
//! minute over the 166-second steady part (99.0% of the limit: the pacing
//! keeps 1% headroom); largest 60-second window seen by the simulator 29,829
//! (0.57% under the limit); worker CPU 0.35 CPU-seconds per 1,000 requests
//! (all 8 workers together; the coordinator 0.14). Before the headroom, the
//! limiters ran at 100% with a 0.5% burst: two windows touched the limit,
//! the simulator answered two 429s, and the recoveries cost the run 7.6%.

mod common;
use common::simproc;

use std::time::{Duration, Instant};

use common::{cpu_secs, spawn_coordinator, spawn_worker, submit, Proc};
use moralsweep_testsupport::{free_port, Persistence, RedisServer};
use simproc::SimProc;

const TOKEN: &str = "bench-rate-token";
const KEY: &str = "bench-rate";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "benchmark: cargo test --release --test bench_rate -- --ignored --nocapture"]
fn one_rate_group_at_the_limit() {
    let rpm = knob("MORALSWEEP_BENCH_RPM", 30_000);
    let personas = knob("MORALSWEEP_BENCH_PERSONAS", 300) as usize;
    let n_workers = knob("MORALSWEEP_BENCH_WORKERS", 8) as usize;
    let total = personas as u64 * 30 * 10;
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..personas)
        .map(|i| format!("bench persona number {i}, who answers questionnaires for a living"))
        .collect();
    std::fs::write(
        dir.path().join("personas.json"),
        serde_json::to_string(&texts).unwrap(),
    )
    .unwrap();

    let sim = SimProc::start(&["--rpm", &rpm.to_string(), "--seed", "1"]);
    let spec = format!(
        r#"name = "bench-rate"
personas = "personas.json"
repetitions = 10
temperature = 0.1
modes = ["persona"]
output = "out"

[[model]]
key = "{KEY}"
provider = "sim"
model = "{KEY}"
base_url = "{}/v1"
rate_group = "account"
rpm = {rpm}
timeout_secs = 10
"#,
        sim.url
    );
    std::fs::write(dir.path().join("s.toml"), spec).unwrap();

    let redis = RedisServer::start_with(Persistence::None);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let coord = spawn_coordinator(
        port,
        &redis.url(),
        &dir.path().join("data"),
        TOKEN,
        &["--no-metrics"],
        dir.path(),
    );
    submit(dir.path(), &url, TOKEN);
    let workers: Vec<Proc> = (0..n_workers)
        .map(|i| spawn_worker(&url, &format!("rate{i}"), TOKEN, &["--concurrency", "64"]))
        .collect();
    let cpu0: f64 = workers
        .iter()
        .map(|w| cpu_secs(w.0.id()).unwrap_or(0.0))
        .sum();
    let coord_cpu0 = cpu_secs(coord.0.id()).unwrap_or(0.0);

    // Until the simulator has answered every slot.
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let stats = sim.stats();
        let rated = stats["keys"][KEY]["rated"].as_u64().unwrap_or(0);
        if rated >= total {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "the benchmark did not finish"
        );
    }
    let elapsed = start.elapsed();
    let worker_cpu: f64 = workers
        .iter()
        .map(|w| cpu_secs(w.0.id()).unwrap_or(0.0))
        .sum::<f64>()
        - cpu0;
    let coord_cpu = cpu_secs(coord.0.id()).unwrap_or(0.0) - coord_cpu0;
    let stats = sim.stats();
    let k = &stats["keys"][KEY];
    let per_second: Vec<u64> = k["per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let admitted: Vec<u64> = k["admitted_per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let first = per_second.iter().position(|&n| n > 0).unwrap_or(0);
    let last = per_second.iter().rposition(|&n| n > 0).unwrap_or(0);
    // The steady part: past the first 10 s and before the last 5 s.
    let steady =
        &admitted[(first + 10).min(last)..last.saturating_sub(5).max(first + 10).min(last)];
    let steady_rpm = steady.iter().sum::<u64>() as f64 / steady.len().max(1) as f64 * 60.0;
    let requests = k["requests"].as_u64().unwrap();
    let max_60 = k["max_60s"].as_u64().unwrap();
    let max_1 = k["max_1s"].as_u64().unwrap();

    println!("\n=== moralsweep rate-limit benchmark ===");
    println!(
        "one rate group at {rpm} rpm; {n_workers} worker processes (concurrency 64 each), one coordinator, moralsweep sim enforcing {rpm} rpm"
    );
    println!(
        "{total} slots answered in {:.1} s; the simulator received {requests} requests ({} refused with 429)",
        elapsed.as_secs_f64(),
        k["rate_limited"]
    );
    println!(
        "steady part ({} s): {steady_rpm:.0} requests/min admitted = {:.1}% of the limit",
        steady.len(),
        100.0 * steady_rpm / rpm as f64
    );
    println!(
        "largest 60-second window the simulator saw: {max_60} requests = {:+.2}% vs the limit; largest second: {max_1} (limit/60 = {})",
        100.0 * (max_60 as f64 - rpm as f64) / rpm as f64,
        rpm / 60
    );
    println!(
        "worker CPU: {worker_cpu:.2} s for {requests} requests = {:.3} CPU-s per 1,000 requests (coordinator: {:.3} CPU-s per 1,000)",
        worker_cpu / (requests as f64 / 1000.0),
        coord_cpu / (requests as f64 / 1000.0)
    );
}
