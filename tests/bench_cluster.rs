//! Benchmark (ignored by default; run it in release):
//!
//! ```text
//! cargo test --release --test bench_cluster -- --ignored --nocapture
//! ```
//!
//! A redis-server of its own (append-only file, fsync every second), a
//! coordinator process and worker processes with the instant `synthetic`
//! provider run one sweep of about a million slots over gRPC on loopback.
//! Prints slots leased + answered + recorded per second through the
//! coordinator, and the coordinator's resident memory at each quarter and
//! its peak (VmHWM), to show that memory does not grow with finished slots.
//! Knobs: MORALSWEEP_BENCH_SLOTS (approximate total, default 1_000_000),
//! MORALSWEEP_BENCH_WORKERS (default 2).

mod common;

use std::time::{Duration, Instant};

use common::*;
use moralsweep_proto::v1 as pb;
use moralsweep_testsupport::{free_port, Persistence, RedisServer};
use moralsweep_worker::client::{sweeps_client, ConnectOptions};

const TOKEN: &str = "bench-token";

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "benchmark: cargo test --release --test bench_cluster -- --ignored --nocapture"]
fn coordinator_throughput_and_memory() {
    let target: u64 = std::env::var("MORALSWEEP_BENCH_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let n_workers: usize = std::env::var("MORALSWEEP_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let personas = 1000usize;
    let models = ["bench-a", "bench-b"];
    let reps = target
        .div_ceil(models.len() as u64 * personas as u64 * 30)
        .max(1) as u32;
    write_personas(dir.path(), personas);
    let mut spec = spec_text("bench", &models, personas, reps, "");
    spec = spec.replace("modes = [\"persona\", \"self\"]", "modes = [\"persona\"]");
    std::fs::write(dir.path().join("s.toml"), &spec).unwrap();
    let total = models.len() as u64 * personas as u64 * 30 * reps as u64;

    let redis = RedisServer::start_with(Persistence::AofEverySec);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let coord = spawn_coordinator(
        port,
        &redis.url(),
        &dir.path().join("data"),
        TOKEN,
        &["--no-metrics", "--max-lease-slots", "2048"],
        dir.path(),
    );
    let pid = coord.0.id();
    let rss_idle = proc_status_kb(pid, "VmRSS:");
    submit(dir.path(), &url, TOKEN);
    let start = Instant::now();
    let _workers: Vec<Proc> = (0..n_workers)
        .map(|i| {
            spawn_worker(
                &url,
                &format!("bench{i}"),
                TOKEN,
                &[
                    "--concurrency",
                    "512",
                    "--lease-batch",
                    "2048",
                    "--report-batch",
                    "2048",
                ],
            )
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt.block_on(async {
        sweeps_client(&ConnectOptions {
            url: url.clone(),
            token: Some(TOKEN.into()),
            tls: None,
            timeout: Some(Duration::from_secs(10)),
        })
        .unwrap()
    });
    let mut quarter = 1;
    let mut samples = Vec::new();
    let done_at = loop {
        std::thread::sleep(Duration::from_millis(200));
        let st = rt
            .block_on(client.list_sweeps(pb::ListSweepsRequest {}))
            .unwrap()
            .into_inner();
        let done = st.sweeps.first().map_or(0, |s| s.done);
        while quarter <= 4 && done * 4 >= total * quarter {
            samples.push((
                quarter,
                done,
                start.elapsed(),
                proc_status_kb(pid, "VmRSS:"),
            ));
            quarter += 1;
        }
        if done >= total {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "bench did not finish"
        );
    };
    let peak = proc_status_kb(pid, "VmHWM:");
    println!("\n=== moralsweep coordinator benchmark ===");
    println!(
        "sweep: {} models x {personas} personas x 30 items x {reps} repetitions = {total} slots; {n_workers} worker processes; Redis AOF everysec",
        models.len()
    );
    println!(
        "throughput: {:.0} slots/s (leased, answered by the synthetic provider, reported, recorded) in {:.1} s",
        total as f64 / done_at.as_secs_f64(),
        done_at.as_secs_f64()
    );
    println!("coordinator RSS idle before submit: {rss_idle} kB");
    for (q, done, t, rss) in &samples {
        println!(
            "  at {}% ({done} slots, {:.1} s): coordinator RSS {rss} kB",
            q * 25,
            t.as_secs_f64()
        );
    }
    println!("coordinator peak RSS (VmHWM): {peak} kB");
}
