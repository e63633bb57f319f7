//! Store throughput: slots granted and recorded per second, in batches,
//! through each store.
//!
//! `cargo bench -p moralsweep-coordinator --bench store` measures:
//! - Redis without persistence, with AOF `everysec` and with AOF `always`
//!   (each a `redis-server` of its own on a free port);
//! - the embedded store (a redb file in a temporary directory).
//!
//! Several tasks play workers: each grants a lease of `BATCH` slots, records
//! them all with the lease, and repeats until the unit is exhausted; then
//! the unit is read back with `scan_results` in pages. Without `--bench`
//! (as `cargo test --all-targets` runs it) it does a tiny smoke run.
//! Options: `--slots N`, `--batch N`, `--tasks N`, `--only redis|embedded`.

use std::sync::Arc;
use std::time::Instant;

use moralsweep_common::Mode;
use moralsweep_coordinator::store::{EmbeddedStore, RedisStore, Store};
use moralsweep_protocol::UnitKey;
use moralsweep_testsupport::{Persistence, RedisServer};

struct Opts {
    slots: u32,
    batch: u32,
    tasks: u32,
    only: Option<String>,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let mut o = Opts {
        slots: if bench { 300_000 } else { 3_000 },
        batch: 256,
        tasks: 8,
        only: None,
    };
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> u32 {
            let v = it.next().unwrap_or_else(|| panic!("{name} needs a value"));
            v.parse()
                .unwrap_or_else(|_| panic!("{name} {v}: expected a whole number"))
        };
        match a.as_str() {
            "--slots" => o.slots = num("--slots"),
            "--batch" => o.batch = num("--batch"),
            "--tasks" => o.tasks = num("--tasks"),
            "--only" => o.only = it.next().cloned(),
            _ => {}
        }
    }
    o
}

/// A record about the size the coordinator stores per slot (JSON).
fn record(slot: u32) -> Vec<u8> {
    format!(
        r#"{{"Sample":{{"rating":{},"attempts":1,"failures":0,"latency_ms":812,"tokens":57}}}}"#,
        slot % 6
    )
    .into_bytes()
}

async fn run(name: &str, store: Arc<dyn Store>, o: &Opts) {
    let unit = UnitKey {
        sweep: "bench".into(),
        model: "model-a".into(),
        mode: Mode::Persona,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..o.tasks {
        let store = store.clone();
        let unit = unit.clone();
        let (total, batch) = (o.slots, o.batch);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            for k in 0.. {
                let id = format!("t{t}-{k}");
                let got = store
                    .grant(&unit, total, batch, &id, "bench", u64::MAX / 4)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                let results: Vec<(u32, Vec<u8>)> = got.iter().map(|&s| (s, record(s))).collect();
                n += store
                    .record(&unit, Some(&id), &results)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|&b| b)
                    .count() as u64;
            }
            n
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        recorded += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(recorded, o.slots as u64);
    assert_eq!(store.done_count(&unit).await.unwrap(), o.slots as u64);

    let started = Instant::now();
    let mut from = 0;
    let mut scanned = 0u64;
    loop {
        let page = store.scan_results(&unit, from, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.0 + 1;
        scanned += page.len() as u64;
    }
    let scan_secs = started.elapsed().as_secs_f64();
    assert_eq!(scanned, o.slots as u64);
    println!(
        "{name:<28} grant+record {:>9.0} slots/s ({} slots, batch {}, {} tasks, {:.2} s); scan {:>9.0} slots/s",
        recorded as f64 / secs,
        o.slots,
        o.batch,
        o.tasks,
        secs,
        scanned as f64 / scan_secs,
    );
}

/// `used_memory` from `INFO memory`.
async fn used_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if o.only.as_deref() != Some("embedded") {
            for (name, p) in [
                ("redis (no persistence)", Persistence::None),
                ("redis (AOF everysec)", Persistence::AofEverySec),
                ("redis (AOF always)", Persistence::AofAlways),
            ] {
                let server = RedisServer::start_with(p);
                let store = RedisStore::connect(&server.url()).await.unwrap();
                let before = used_memory(&server.url()).await;
                run(name, Arc::new(store), &o).await;
                let after = used_memory(&server.url()).await;
                println!(
                    "{:<28} redis used_memory {:.1} MiB after, {:.0} bytes per recorded slot",
                    "",
                    after as f64 / 1048576.0,
                    (after.saturating_sub(before)) as f64 / o.slots as f64
                );
            }
        }
        if o.only.as_deref() != Some("redis") {
            let dir = tempfile::tempdir().unwrap();
            let store = EmbeddedStore::open(dir.path().join("bench.redb")).unwrap();
            run("embedded (redb, fsync)", Arc::new(store), &o).await;
        }
    });
}
