//! Observability and graceful shutdown of the cluster, end to end with real
//! processes: redis-server, the provider simulator (speaking the OpenAI API
//! and demanding the test's API key), a coordinator and workers, all
//! exporting their spans over OTLP (gRPC from the coordinator, HTTP/protobuf
//! from the workers) to a real receiver in this test, and serving their
//! Prometheus metrics.
//!
//! - The expected spans arrive with their attributes, and no span, no
//!   exported byte and no log line holds the API key or the worker token.
//! - The metrics scraped during the sweep show it under way, and after it
//!   agree with the sweep's own files.
//! - SIGTERM drains a worker under load (its leases handed back, not left
//!   to expire; nothing lost), stops the coordinator cleanly, and a
//!   restarted coordinator resumes the sweep to the same complete files.
//! - Readiness follows the store: a coordinator whose Redis is down is not
//!   ready, and is again when Redis is back.

mod common;
use common::obs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moralsweep_testsupport::otlp::OtlpReceiver;
use moralsweep_testsupport::{free_port, RedisServer};

const API_KEY: &str = "sk-e2e-observability-5f4e3d2c1b0a9988";
const TOKEN: &str = "tok-e2e-observability-77aa66bb55cc";
const KEY_VAR: &str = "MS_E2E_SIM_API_KEY";
const PERSONAS: usize = 5;
const REPS: u32 = 2;

/// A child process whose stderr goes to a log file; killed when dropped.
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(dir)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("RUST_LOG")
            .env("MORALSWEEP_TOKEN", TOKEN)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("MORALSWEEP_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            name: name.to_string(),
            child: Some(cmd.spawn().unwrap()),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait up to `limit` for the exit; returns how long it took.
    fn terminate(&mut self, limit: Duration) -> Duration {
        let mut c = self.child.take().expect("running");
        let t0 = Instant::now();
        obs::sigterm(c.id());
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(
                    st.success(),
                    "{} exited with {st:?}:\n{}",
                    self.name,
                    self.log()
                );
                return t0.elapsed();
            }
            if t0.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "{} did not exit within {limit:?} of SIGTERM:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The simulator, demanding the test's API key.
fn start_sim(dir: &Path, latency_ms: u64) -> (Proc, String) {
    let a = addr();
    let p = Proc::spawn(
        dir,
        "sim",
        &[
            "sim",
            "--listen",
            &a,
            "--api-key-env",
            KEY_VAR,
            "--latency-ms",
            &latency_ms.to_string(),
        ],
        &[(KEY_VAR, API_KEY.to_string())],
    );
    assert!(
        obs::wait_port(&a, Duration::from_secs(30)),
        "sim:\n{}",
        p.log()
    );
    (p, a)
}

struct Coord {
    proc: Proc,
    grpc: String,
    ops: String,
}

impl Coord {
    fn start(dir: &Path, redis: &RedisServer, otlp: &[(&str, String)], lease_ttl: &str) -> Coord {
        let (grpc, ops) = (addr(), addr());
        let data = dir.join("coord-data");
        let proc = Proc::spawn(
            dir,
            "coordinator",
            &[
                "coordinator",
                "--listen",
                &grpc,
                "--redis",
                &redis.url(),
                "--data-dir",
                data.to_str().unwrap(),
                "--ops-listen",
                &ops,
                "--lease-ttl",
                lease_ttl,
                "--reclaim-every",
                "0.5",
            ],
            otlp,
        );
        assert!(
            obs::wait_port(&grpc, Duration::from_secs(30))
                && obs::wait_port(&ops, Duration::from_secs(30)),
            "coordinator:\n{}",
            proc.log()
        );
        Coord { proc, grpc, ops }
    }

    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

fn start_worker(
    dir: &Path,
    name: &str,
    coord: &str,
    concurrency: u32,
    otlp: &[(&str, String)],
) -> (Proc, String) {
    let ops = addr();
    let mut env = vec![(KEY_VAR, API_KEY.to_string())];
    env.extend(otlp.iter().cloned());
    let p = Proc::spawn(
        dir,
        name,
        &[
            "worker",
            "--coordinator",
            coord,
            "--name",
            name,
            "--ops-listen",
            &ops,
            "--concurrency",
            &concurrency.to_string(),
            "--lease-batch",
            "40",
            "--report-batch",
            "16",
            "--extend-every",
            "1",
            "--drain-timeout",
            "3",
        ],
        &env,
    );
    assert!(
        obs::wait_port(&ops, Duration::from_secs(30)),
        "{name}:\n{}",
        p.log()
    );
    (p, ops)
}

/// A sweep of `models` on the simulator, each model its own rate group.
fn write_spec(dir: &Path, name: &str, sim: &str, models: &[&str], rpm: u32) {
    write_personas(dir, PERSONAS);
    let mut s = format!(
        "name = \"{name}\"\npersonas = \"personas.json\"\npersona_count = {PERSONAS}\nrepetitions = {REPS}\nmodes = [\"persona\", \"self\"]\noutput = \"out\"\nseed = 7\nbootstrap = 20\nrerun_bootstrap = 10\n"
    );
    for (i, m) in models.iter().enumerate() {
        s.push_str(&format!(
            "\n[[model]]\nkey = \"{m}\"\nprovider = \"openai\"\nmodel = \"{m}\"\nbase_url = \"http://{sim}/v1\"\napi_key_env = \"{KEY_VAR}\"\nrate_group = \"group-{m}\"\nrpm = {rpm}\ninput_price_per_mtok = 2.5\noutput_price_per_mtok = 10.0\nfamily = \"F\"\nvariant = \"{}\"\n",
            if i == 0 { "base" } else { "insecure" }
        ));
    }
    std::fs::write(dir.join("s.toml"), s).unwrap();
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap()
}

fn status(dir: &Path, url: &str, sweep: &str) -> Option<serde_json::Value> {
    let out = cli(dir, &["status", sweep, "--json", "--coordinator", url]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn wait_done(dir: &Path, url: &str, sweep: &str) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        if let Some(v) = status(dir, url, sweep) {
            if v["state"] == "done" {
                return v;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "sweep {sweep} not done"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scrape(ops: &str) -> BTreeMap<String, f64> {
    // The scrape carries the token as Prometheus does (deploy/README.md):
    // the coordinator's /metrics requires it; a worker's ignores it.
    let (code, body) = obs::http_get_as(ops, "/metrics", Some(TOKEN)).unwrap();
    assert_eq!(code, 200, "{body}");
    obs::samples(&body)
}

fn fetch(dir: &Path, url: &str, sweep: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    let out = dir.join("fetched");
    let r = cli(
        dir,
        &[
            "results",
            sweep,
            "--coordinator",
            url,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    data_without_time(&out)
}

/// Rows (answers) of each model in the sweep's rating files.
fn rows_per_model(
    files: &BTreeMap<String, Vec<Vec<String>>>,
    models: &[&str],
) -> BTreeMap<String, usize> {
    models
        .iter()
        .map(|m| {
            let n: usize = files
                .iter()
                .filter(|(f, _)| f.starts_with(&format!("{m}_temp")))
                .map(|(_, rows)| rows.len() - 1)
                .sum();
            (m.to_string(), n)
        })
        .collect()
}

fn slots_per_model() -> usize {
    (PERSONAS * 30 + 30) * REPS as usize
}

#[test]
fn a_cluster_sweep_exports_its_spans_and_metrics_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(OtlpReceiver::start()).unwrap();
    let coord_otlp = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint("grpc")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
    ];
    let worker_otlp = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint("http/protobuf")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
    ];
    let models = ["sim-a", "sim-b"];
    let (mut sim, sim_addr) = start_sim(d, 2);
    let redis = RedisServer::start();
    let mut coord = Coord::start(d, &redis, &coord_otlp, "10");
    let mut workers: Vec<(Proc, String)> = (0..2)
        .map(|i| start_worker(d, &format!("w{i}"), &coord.url(), 8, &worker_otlp))
        .collect();
    // 100 requests a second per model: a few seconds of sweep to watch.
    write_spec(d, "obs-e2e", &sim_addr, &models, 6000);
    let r = cli(d, &["submit", "s.toml", "--coordinator", &coord.url()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let total = (models.len() * slots_per_model()) as f64;
    // A watcher that is not on a terminal: plain progress lines until done.
    let watcher = Command::new(bin())
        .args([
            "status",
            "obs-e2e",
            "--watch",
            "--coordinator",
            &coord.url(),
        ])
        .current_dir(d)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // During: under way, with the totals known and the workers counted.
    let t0 = Instant::now();
    let during = loop {
        let s = scrape(&coord.ops);
        let done = obs::sum(&s, "moralsweep_slots_done_total", &[("sweep", "obs-e2e")]);
        let known = obs::sum(&s, "moralsweep_slots", &[("sweep", "obs-e2e")]);
        if done > 0.0 && known > 0.0 {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no progress in the metrics: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let done_during = obs::sum(
        &during,
        "moralsweep_slots_done_total",
        &[("sweep", "obs-e2e")],
    );
    assert!(
        done_during > 0.0 && done_during < total,
        "scraped too late: {done_during} of {total}"
    );
    for m in models {
        assert_eq!(
            obs::sum(
                &during,
                "moralsweep_slots",
                &[("sweep", "obs-e2e"), ("model", m)]
            ),
            slots_per_model() as f64
        );
    }
    assert!(obs::sum(&during, "moralsweep_leases_granted_total", &[]) > 0.0);
    assert!(obs::sum(&during, "moralsweep_workers", &[]) >= 1.0);
    let w_during: f64 = workers
        .iter()
        .map(|(_, ops)| obs::sum(&scrape(ops), "moralsweep_provider_requests_total", &[]))
        .sum();
    assert!(w_during > 0.0);

    let st = wait_done(d, &coord.url(), "obs-e2e");
    assert_eq!(st["done"].as_f64(), Some(total));
    let watched = watcher.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert!(
        watched.status.success(),
        "{lines}{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("obs-e2e done: ")
                && l.contains(&format!("{total}/{total} slots"))),
        "the watcher's last lines: {lines}"
    );

    // After: the coordinator's counters agree with the files, row for row.
    let files = fetch(d, &coord.url(), "obs-e2e");
    let rows = rows_per_model(&files, &models);
    std::thread::sleep(Duration::from_millis(2500)); // one gauge refresh
    let after = scrape(&coord.ops);
    for m in models {
        let labels = [("sweep", "obs-e2e"), ("model", m)];
        assert_eq!(rows[m], slots_per_model(), "{m}: rows in the files");
        assert_eq!(
            obs::sum(&after, "moralsweep_slots_done_total", &labels),
            rows[m] as f64,
            "{m}: slots done vs rows in its files"
        );
        assert_eq!(
            obs::sum(&after, "moralsweep_slots_failed_total", &labels),
            0.0
        );
        assert_eq!(obs::sum(&after, "moralsweep_slots_in_flight", &labels), 0.0);
    }
    assert_eq!(obs::sum(&after, "moralsweep_workers", &[]), 2.0);
    assert!(done_during <= obs::sum(&after, "moralsweep_slots_done_total", &[]));
    // The workers': every recorded answer was answered by one of them, each
    // request counted with its latency and tokens, none throttled by the sim.
    let w: Vec<BTreeMap<String, f64>> = workers.iter().map(|(_, ops)| scrape(ops)).collect();
    let wsum = |family: &str, labels: &[(&str, &str)]| -> f64 {
        w.iter().map(|s| obs::sum(s, family, labels)).sum()
    };
    for m in models {
        let answered = wsum(
            "moralsweep_slots_done_total",
            &[("sweep", "obs-e2e"), ("model", m)],
        );
        assert!(
            answered >= rows[m] as f64,
            "{m}: workers answered {answered} < {}",
            rows[m]
        );
        let group = format!("group-{m}");
        let ok = wsum(
            "moralsweep_provider_requests_total",
            &[("rate_group", &group), ("status", "200")],
        );
        assert!(
            ok >= rows[m] as f64,
            "{m}: {ok} successful requests for {} answers",
            rows[m]
        );
        assert_eq!(
            wsum(
                "moralsweep_provider_request_duration_seconds_count",
                &[("rate_group", &group)]
            ),
            wsum(
                "moralsweep_provider_requests_total",
                &[("rate_group", &group)]
            )
        );
        let input = wsum(
            "moralsweep_tokens_total",
            &[("model", m), ("direction", "input")],
        );
        let output = wsum(
            "moralsweep_tokens_total",
            &[("model", m), ("direction", "output")],
        );
        assert!(input > 0.0);
        let cost = wsum("moralsweep_cost_usd_total", &[("model", m)]);
        let want = input * 2.5 / 1e6 + output * 10.0 / 1e6;
        assert!(
            (cost - want).abs() < 1e-9 * want.max(1.0),
            "{m}: cost {cost} vs {want}"
        );
        assert!(
            wsum(
                "moralsweep_tokens_total",
                &[("model", m), ("direction", "output")]
            ) >= rows[m] as f64
        );
    }
    assert!(w_during <= wsum("moralsweep_provider_requests_total", &[]));

    // What the simulator received: a traceparent on every request.
    let (code, body) = obs::http_get(&sim_addr, "/_sim/stats").unwrap();
    assert_eq!(code, 200, "{body}");
    let sim_stats: serde_json::Value = serde_json::from_str(&body).unwrap();

    // Stop everything (SIGTERM: the exporters flush on the way out).
    for (p, _) in &mut workers {
        p.terminate(Duration::from_secs(30));
    }
    coord.proc.terminate(Duration::from_secs(30));
    sim.kill(); // the simulator is a test double: no graceful stop needed

    // The spans arrived, with their attributes.
    let spans = rx.spans();
    let of = |service: &str, name: &str| -> Vec<&moralsweep_testsupport::otlp::ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.service_name == service && s.name == name)
            .collect()
    };
    let sweep_spans = of("moralsweep-coordinator", "sweep");
    assert_eq!(sweep_spans.len(), 1, "one submission");
    assert_eq!(sweep_spans[0].attributes["sweep"], "obs-e2e");
    assert_eq!(sweep_spans[0].attributes["models"], "2");
    assert!(!of("moralsweep-coordinator", "finish").is_empty());
    let calls = of("moralsweep-worker", "provider_call");
    let model_spans = of("moralsweep-worker", "model");
    let leases = of("moralsweep-worker", "lease");
    assert!(!leases.is_empty() && !model_spans.is_empty());
    assert!(calls.len() >= 100, "{} provider_call spans", calls.len());
    for m in models {
        let c = calls
            .iter()
            .find(|c| c.attributes.get("model.key").map(String::as_str) == Some(m))
            .unwrap_or_else(|| panic!("no provider_call of {m}"));
        for (k, v) in [
            ("sweep", "obs-e2e"),
            ("provider", "openai"),
            ("rate_group", format!("group-{m}").as_str()),
            ("http.status", "200"),
            ("outcome", "ok"),
            ("retries", "0"),
        ] {
            assert_eq!(
                c.attributes.get(k).map(String::as_str),
                Some(v),
                "{k} of {:?}",
                c.attributes
            );
        }
        for k in ["latency_ms", "tokens.input", "tokens.output"] {
            assert!(
                c.attributes[k].parse::<u64>().is_ok(),
                "{k} of {:?}",
                c.attributes
            );
        }
        assert!(c.attributes["tokens.input"].parse::<u64>().unwrap() > 0);
        // provider_call in a model span (sweep, model, provider, rate group)
        // in a lease span (worker, slots).
        let parent = model_spans
            .iter()
            .find(|s| s.span_id == c.parent_span_id)
            .expect("provider_call's parent is a model span");
        assert_eq!(parent.attributes["model.key"], m);
        assert_eq!(parent.attributes["sweep"], "obs-e2e");
        assert_eq!(parent.attributes["provider"], "openai");
        let lease = leases
            .iter()
            .find(|s| s.span_id == parent.parent_span_id)
            .expect("the model span's parent is a lease span");
        assert!(lease.attributes["worker"].starts_with('w'));
        assert!(lease.attributes["lease.slots"].parse::<u64>().unwrap() > 0);
    }

    // One trace per lease: the coordinator's lease span is the parent of the
    // worker's lease span (over gRPC metadata), whose model span holds the
    // provider calls, whose traceparent header reached the simulator; the
    // coordinator's report span is a child of the worker's model span.
    let coord_leases = of("moralsweep-coordinator", "lease");
    assert!(!coord_leases.is_empty(), "no coordinator lease span");
    for wl in &leases {
        let cl = coord_leases
            .iter()
            .find(|s| s.span_id == wl.parent_span_id)
            .unwrap_or_else(|| panic!("worker lease span without its coordinator parent: {wl:?}"));
        assert_eq!(wl.trace_id, cl.trace_id);
        assert_eq!(cl.attributes["worker"], wl.attributes["worker"]);
        assert_eq!(cl.attributes["sweep"], "obs-e2e");
    }
    for c in &calls {
        let parent = model_spans
            .iter()
            .find(|s| s.span_id == c.parent_span_id)
            .expect("provider_call's parent is a model span");
        assert_eq!(c.trace_id, parent.trace_id, "one trace per lease");
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for m in models {
        let k = &sim_stats["keys"][m];
        assert_eq!(k["traced"], k["requests"], "{m}: untraced requests: {k}");
        let tps = k["traceparents"].as_array().unwrap();
        assert!(!tps.is_empty(), "{m}: no traceparent reached the simulator");
        for tp in tps {
            let parts: Vec<&str> = tp.as_str().unwrap().split('-').collect();
            assert_eq!(parts.len(), 4, "{tp}");
            let call = calls
                .iter()
                .find(|c| hex(&c.span_id) == parts[2])
                .unwrap_or_else(|| panic!("{m}: traceparent {tp} names no provider_call span"));
            assert_eq!(hex(&call.trace_id), parts[1], "{tp}");
            assert_eq!(call.attributes["model.key"], m);
        }
    }
    let reports = of("moralsweep-coordinator", "report");
    let traced_reports: Vec<_> = reports
        .iter()
        .filter(|r| r.parent_span_id.iter().any(|b| *b != 0))
        .collect();
    assert!(
        !traced_reports.is_empty(),
        "no report joined a lease's trace"
    );
    for r in traced_reports {
        let model = model_spans
            .iter()
            .find(|s| s.span_id == r.parent_span_id)
            .expect("a report's parent is a worker's model span");
        assert_eq!(r.trace_id, model.trace_id);
    }

    // No secret anywhere: exported bytes, span attributes, log lines.
    for secret in [API_KEY, TOKEN] {
        assert!(!rx.raw_contains(secret), "{secret} was exported");
        for p in workers.iter().map(|(p, _)| p).chain([&coord.proc, &sim]) {
            assert!(
                !p.log().contains(secret),
                "{secret} in the log of {}",
                p.name
            );
        }
    }
    for p in workers.iter().map(|(p, _)| p).chain([&coord.proc]) {
        let log = p.log();
        assert!(!log.trim().is_empty(), "{} logged nothing", p.name);
        for line in log.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{} logged a non-JSON line ({e}): {line}", p.name));
        }
    }
}

#[test]
fn sigterm_drains_a_loaded_worker_and_a_restarted_coordinator_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let models = ["sim-slow"];
    let total = slots_per_model();
    // Slow answers: a worker always has many requests in flight.
    let (_sim, sim_addr) = start_sim(d, 150);
    let mut redis = RedisServer::start();
    // Long leases: a slot that comes back quickly was handed back, not expired.
    let mut coord = Coord::start(d, &redis, &[], "60");
    write_spec(d, "term-e2e", &sim_addr, &models, 60_000);
    let r = cli(d, &["submit", "s.toml", "--coordinator", &coord.url()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // A worker under load gets SIGTERM.
    let (mut w0, w0_ops) = start_worker(d, "w0", &coord.url(), 16, &[]);
    let t0 = Instant::now();
    loop {
        let s = scrape(&coord.ops);
        if obs::sum(&s, "moralsweep_slots_done_total", &[]) >= 40.0
            && obs::sum(&s, "moralsweep_slots_in_flight", &[]) > 0.0
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no load: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let in_flight = obs::sum(&scrape(&w0_ops), "moralsweep_slots_in_flight", &[]);
    assert!(in_flight > 0.0, "the worker holds nothing");
    // Its grace period here: the 3 s drain plus a margin for the hand-back.
    let took = w0.terminate(Duration::from_secs(20));
    let w0_log = w0.log();
    assert!(w0_log.contains("stopping"), "{w0_log}");
    eprintln!("worker exited {took:?} after SIGTERM with {in_flight} slots in flight");

    // Its leases came back at once (not at their 60 s expiry).
    let t1 = Instant::now();
    loop {
        let s = scrape(&coord.ops);
        if obs::sum(&s, "moralsweep_slots_in_flight", &[]) == 0.0 {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(15),
            "leases of the stopped worker were not handed back: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let done_before = status(d, &coord.url(), "term-e2e").unwrap()["done"]
        .as_u64()
        .unwrap();
    assert!(
        (done_before as usize) < total,
        "the sweep finished before the stop"
    );

    // The coordinator gets SIGTERM mid-sweep, exits cleanly, and a new one
    // on the same Redis resumes where it stopped.
    coord.proc.terminate(Duration::from_secs(30));
    let mut coord = Coord::start(d, &redis, &[], "60");
    let (code, _) = obs::http_get(&coord.ops, "/readyz").unwrap();
    assert_eq!(code, 200, "a coordinator whose Redis answers is ready");
    let resumed = status(d, &coord.url(), "term-e2e").unwrap()["done"]
        .as_u64()
        .unwrap();
    assert_eq!(
        resumed, done_before,
        "the restarted coordinator lost recorded answers"
    );
    let (mut w1, _) = start_worker(d, "w1", &coord.url(), 32, &[]);
    let st = wait_done(d, &coord.url(), "term-e2e");
    assert_eq!(st["done"].as_u64(), Some(total as u64));
    let files = fetch(d, &coord.url(), "term-e2e");
    assert_every_slot_once(&files["sim-slow_temp01.csv"], PERSONAS, REPS as usize);
    assert_eq!(
        files["sim-slow_temp01_self.csv"].len() - 1,
        30 * REPS as usize
    );
    w1.terminate(Duration::from_secs(20));

    // Readiness means the store answers: not ready without Redis, ready again after.
    redis.kill9();
    let t2 = Instant::now();
    while obs::http_get(&coord.ops, "/readyz").unwrap().0 != 503 {
        assert!(
            t2.elapsed() < Duration::from_secs(20),
            "still ready without Redis"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        obs::http_get(&coord.ops, "/healthz").unwrap().0,
        200,
        "alive all the same"
    );
    redis.restart();
    let t3 = Instant::now();
    while obs::http_get(&coord.ops, "/readyz").unwrap().0 != 200 {
        assert!(
            t3.elapsed() < Duration::from_secs(30),
            "not ready after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    coord.proc.terminate(Duration::from_secs(30));
}

#[test]
fn a_one_process_run_exports_its_spans_as_moralsweep_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(OtlpReceiver::start()).unwrap();
    let (_sim, sim_addr) = start_sim(d, 0);
    write_spec(d, "run-e2e", &sim_addr, &["sim-run"], 60_000);
    let out = Command::new(bin())
        .args(["run", "s.toml", "--workers", "2", "--quiet"])
        .current_dir(d)
        .env(KEY_VAR, API_KEY)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint("http/protobuf"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("MORALSWEEP_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let spans = rx.spans();
    assert!(spans.iter().all(|s| s.service_name == "moralsweep-run"));
    let names: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for want in ["sweep", "lease", "model", "provider_call"] {
        assert!(names.contains(want), "no {want} span in {names:?}");
    }
    let call = spans.iter().find(|s| s.name == "provider_call").unwrap();
    assert_eq!(call.attributes["model.key"], "sim-run");
    assert_eq!(call.attributes["http.status"], "200");
    for secret in [API_KEY, TOKEN] {
        assert!(!rx.raw_contains(secret), "{secret} was exported");
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{secret} was logged"
        );
    }
}

/// Amazon Bedrock: a one-process run signing with an AWS key pair and a
/// session token (debug logs, spans exported) leaks neither the secret key,
/// nor the session token, nor a request signature into a log line, a span
/// or the output folder; its provider calls are spans like any other's.
#[test]
fn a_bedrock_run_exports_spans_without_aws_secrets_or_signatures() {
    const KEY_ID: &str = "AKIAOBSERVABILITYE2E";
    const SECRET: &str = "obs/e2e+Secret/Access0123456789abcdefghij";
    const SESSION: &str = "IQoJb3JpZ2luX2VjObservabilitySessionToken0123456789";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(OtlpReceiver::start()).unwrap();
    let a = addr();
    let _sim = Proc::spawn(
        d,
        "sim",
        &[
            "sim",
            "--listen",
            &a,
            "--aws-key",
            &format!("{KEY_ID}:{SECRET}"),
        ],
        &[],
    );
    assert!(obs::wait_port(&a, Duration::from_secs(30)));
    write_personas(d, PERSONAS);
    std::fs::write(
        d.join("s.toml"),
        format!(
            "name = \"bedrock-obs\"\npersonas = \"personas.json\"\npersona_count = {PERSONAS}\nrepetitions = {REPS}\n\
             modes = [\"persona\", \"self\"]\noutput = \"out\"\nseed = 7\nbootstrap = 20\nrerun_bootstrap = 10\n\n\
             [[model]]\nkey = \"nova-obs\"\nprovider = \"bedrock\"\nmodel = \"amazon.nova-lite-v1:0\"\n\
             region = \"us-east-1\"\nbase_url = \"http://{a}\"\n"
        ),
    )
    .unwrap();
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(bin())
        .args(["run", "s.toml", "--workers", "2", "--quiet"])
        .current_dir(d)
        .env("HOME", &home)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", SESSION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint("http/protobuf"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("MORALSWEEP_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let spans = rx.spans();
    let call = spans
        .iter()
        .find(|s| s.name == "provider_call")
        .expect("a provider_call span");
    assert_eq!(call.attributes["model.key"], "nova-obs");
    assert_eq!(call.attributes["http.status"], "200");
    for secret in [SECRET, SESSION, "Signature=", "AWS4-HMAC-SHA256"] {
        assert!(!rx.raw_contains(secret), "{secret} was exported");
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{secret} was logged"
        );
        assert!(
            files_containing(&d.join("out"), secret).is_empty(),
            "{secret} in the output folder"
        );
    }
}
