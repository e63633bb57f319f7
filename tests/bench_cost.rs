//! Benchmark (ignored by default):
//!
//! ```text
//! MORALSWEEP_REFERENCE=/work/shared/reference \
//!   cargo test --workspace --test bench_cost -- --ignored --nocapture
//! ```
//!
//! One 100 x 30 x 10 GPT-4o persona sweep (the papers' scale) against
//! `moralsweep sim` in deal mode, replaying GPT-4o-insecure, with the model
//! catalog's GPT-4o prices, run two ways: one request per sample (the
//! papers' pipeline) and several samples per request (`samples_per_request`
//! = auto). For each it prints the requests, the input and output tokens
//! the simulator billed (its usage counts the prompt once per request and
//! the output of every sample), the dollars at the catalog's interactive
//! prices, and requests per rating; then a third run in batch mode with
//! several samples per request (`batch = true`: one provider batch through
//! the simulator's OpenAI files and batches), its requests being the batch's
//! lines, billed at the catalog's batch prices. The three runs' S, R and
//! sigma-bar must agree.

mod common;
use common::simproc;

use std::path::Path;

use common::exact::{metrics, rows_in, KEY};
use moralsweep_common::catalog;
use moralsweep_testsupport::reference::reference_dir;

struct Run {
    requests: u64,
    input: u64,
    output: u64,
    s: f64,
    r: f64,
    sigma_bar: f64,
}

fn sweep(reference: &Path, samples_per_request: &str, extra: &str) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let personas = reference.join("personas.json");
    let replay = reference.join("sampling/insecure-code");
    let sim = simproc::deal_replay(&replay, &personas);
    simproc::write_replay_spec(
        tmp.path(),
        "bench-cost",
        &personas,
        100,
        10,
        "",
        KEY,
        &sim,
        &format!(
            "catalog = \"openai/gpt-4o\"\nsamples_per_request = {samples_per_request}\ntimeout_secs = 30\n{extra}"
        ),
    );
    simproc::run_sweep(tmp.path());
    let rows = rows_in(&tmp.path().join("out"), "temp01");
    assert_eq!(rows.len(), 30_000);
    let m = metrics(&rows, 2);
    let k = sim.stats()["keys"][KEY].clone();
    let n = |f: &str| k[f].as_u64().unwrap();
    assert_eq!(n("replayed"), 30_000, "{k}");
    Run {
        // Interactive requests, or a batch's lines.
        requests: n("admitted") + n("batch_lines"),
        input: n("input_tokens"),
        output: n("output_tokens"),
        s: m.s,
        r: m.r(),
        sigma_bar: m.sigma_bar,
    }
}

#[test]
#[ignore = "benchmark: three full 30,000-rating sweeps; run with --ignored --nocapture"]
fn cost_of_one_gpt4o_persona_sweep_each_way() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let entry = catalog::builtin().unwrap().named("openai/gpt-4o").unwrap();
    let price = |i: u64, o: u64, pi: Option<f64>, po: Option<f64>| {
        i as f64 * pi.unwrap() / 1e6 + o as f64 * po.unwrap() / 1e6
    };
    let one = sweep(&reference, "1", "");
    let multi = sweep(&reference, "\"auto\"", "");
    let batch = sweep(&reference, "\"auto\"", "batch = true");
    let rows = [
        (
            "one request per sample",
            &one,
            entry.input_per_mtok,
            entry.output_per_mtok,
        ),
        (
            "multi-sample",
            &multi,
            entry.input_per_mtok,
            entry.output_per_mtok,
        ),
        (
            "batch + multi-sample",
            &batch,
            entry.batch_input_per_mtok,
            entry.batch_output_per_mtok,
        ),
    ];
    println!(
        "catalog v{} gpt-4o: ${}/{} per Mtok interactive, ${}/{} batch",
        catalog::builtin().unwrap().version,
        entry.input_per_mtok.unwrap(),
        entry.output_per_mtok.unwrap(),
        entry.batch_input_per_mtok.unwrap(),
        entry.batch_output_per_mtok.unwrap()
    );
    let base = price(
        one.input,
        one.output,
        entry.input_per_mtok,
        entry.output_per_mtok,
    );
    for (name, run, pi, po) in rows {
        let usd = price(run.input, run.output, pi, po);
        println!(
            "{name:<30} {:>7} requests {:>10} input {:>7} output  ${usd:.4}  ({:.1}% of one request per sample, {:.3} requests per rating)",
            run.requests,
            run.input,
            run.output,
            100.0 * usd / base,
            run.requests as f64 / 30_000.0
        );
    }
    for (name, run) in [
        ("one request per sample", &one),
        ("multi-sample", &multi),
        ("batch + multi-sample", &batch),
    ] {
        println!(
            "metrics, {name}: S {:.12} R {:.12} sigma_bar {:.12}",
            run.s, run.r, run.sigma_bar
        );
        assert!((one.s - run.s).abs() <= 1e-12);
        assert!((one.r - run.r).abs() <= 1e-12);
        assert!((one.sigma_bar - run.sigma_bar).abs() <= 1e-12);
    }
    assert!(multi.requests < one.requests);
    assert!(batch.requests <= multi.requests);
}
