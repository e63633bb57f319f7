//! What the instrumentation of one provider call costs: a `provider_call`
//! span plus a `CallTimer` (metrics: request, latency, tokens), in three
//! set-ups: no subscriber at all, the log subscriber at `warn` (the `run`
//! default: spans disabled), and the log subscriber at `info` (the cluster
//! default: spans tracked, not printed). With an OTLP endpoint set, export
//! happens off the calling thread in batches; its cost is not measured here.
//!
//! `cargo bench -p moralsweep-telemetry --bench overhead` measures;
//! under `cargo test` it only runs a few iterations (a smoke test).

use std::time::Instant;

use moralsweep_telemetry::metrics::Metrics;
use moralsweep_telemetry::spans::{provider_call_span, CallOutcome, CallTimer};

fn one_call(metrics: &Metrics) {
    let span = provider_call_span("bench-sweep", "bench-model", "openai", "bench-group");
    let t = CallTimer::start(metrics, "bench-model", "bench-group");
    t.finish(&span, CallOutcome::Ok, Some(200), Some((120, 1)), 0);
}

fn measure(label: &str, iters: u32) {
    let metrics = Metrics::new("bench");
    let t0 = Instant::now();
    for _ in 0..iters {
        one_call(&metrics);
    }
    let per = t0.elapsed() / iters.max(1);
    println!(
        "{label:<48} {:>8.0} ns per provider call",
        per.as_nanos() as f64
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let iters = if bench { 200_000 } else { 200 };
    measure("no subscriber", iters);
    for level in ["warn", "info"] {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            measure(&format!("log subscriber at {level}"), iters);
        });
    }
}
