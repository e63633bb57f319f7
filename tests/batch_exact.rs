//! The worker's OpenAI batch client, with several samples per request,
//! against `moralsweep sim` in deal mode: the whole 100 x 30 x 10 sweep of
//! gpt-4o-misaligned as one batch of 3,000 requests of `n` = 10 reproduces
//! the published S, R and sigma_bar to 1e-9 (every recorded answer reached
//! its cell exactly once), and the simulator saw one batch, created once.
//! Prints what the sweep is billed at the catalog's gpt-4o prices, next to
//! one interactive request per sample. The same through Gemini's batch mode
//! with `candidateCount` 5, two requests a cell, and through Anthropic's
//! Message Batches, one request a sample. (The run loop does not use batches
//! yet; this checks the client and the simulator end to end.)

mod common;
use common::simproc;

use std::collections::HashMap;
use std::time::Duration;

use common::exact::{assert_published, metrics_of, KEY};
use moralsweep_common::prompt::persona_prompt;
use moralsweep_common::{ModelSpec, ITEMS};
use moralsweep_testsupport::reference::reference_dir;
use moralsweep_worker::providers::batch::{self, BatchItem, ItemResult};
use moralsweep_worker::providers::CompletionRequest;
use serde_json::json;

/// The 100 x 30 sweep as batch items of `n` samples, `per_cell` items a
/// cell; the metrics of the results, the tokens billed, and the simulator.
async fn sweep(
    provider: &str,
    base: &str,
    n: u32,
    per_cell: usize,
    temperature: Option<f64>,
) -> (
    moralsweep_analysis::metrics::ScopeMetrics,
    u64,
    u64,
    simproc::SimProc,
) {
    let reference = reference_dir().unwrap();
    let personas_file = reference.join("personas.json");
    let personas = moralsweep_common::personas::load_personas(&personas_file).unwrap();
    let sim = simproc::deal_replay(&reference.join("sampling/insecure-code"), &personas_file);
    let spec: ModelSpec = serde_json::from_value(json!({
        "key": KEY, "provider": provider, "model": KEY,
        "base_url": format!("{}{base}", sim.url), "api_key_env": "MORALSWEEP_BATCH_EXACT_KEY",
        "timeout_secs": 120.0,
    }))
    .unwrap();
    std::env::set_var("MORALSWEEP_BATCH_EXACT_KEY", "sk-sim");
    let client = batch::build(&spec).unwrap();
    let mut items = Vec::new();
    let mut cell_of = HashMap::new();
    for (p, persona) in personas.iter().enumerate().take(100) {
        for (i, item) in ITEMS.iter().enumerate() {
            for part in 0..per_cell {
                let custom_id = format!("p{p}-i{i}-{part}");
                cell_of.insert(custom_id.clone(), (p as u32, item.id));
                let slot = (p * 30 + i) * per_cell + part + 1;
                items.push(BatchItem {
                    custom_id,
                    req: CompletionRequest {
                        prompt: persona_prompt(persona, item),
                        max_tokens: 1,
                        temperature,
                        // Far apart: each item is its own slot in deal mode.
                        seed: Some((slot as u64) << 24),
                        top_logprobs: None,
                    },
                    n,
                });
            }
        }
    }
    let (record, results) = batch::run_to_end(client.as_ref(), &items, Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(record.items, 3000 * per_cell);
    let mut rows = Vec::new();
    let (mut input, mut output) = (0u64, 0u64);
    for (id, r) in &results {
        let ItemResult::Answered(samples) = r else {
            panic!("{id}: {r:?}")
        };
        assert_eq!(samples.len(), n as usize, "{id}");
        let (p, i) = cell_of[id];
        for s in samples {
            rows.push((p, i, s.text.trim().parse::<i8>().unwrap()));
            input += s.usage.input_tokens;
            output += s.usage.output_tokens;
        }
    }
    assert_eq!(rows.len(), 30_000);
    let got = metrics_of(rows.into_iter(), 2);
    assert_published(&reference, &got);
    let stats = sim.stats();
    assert_eq!(stats["batches"]["created"], 1);
    assert_eq!(stats["batches"]["resubmitted"], 0);
    assert_eq!(stats["keys"][KEY]["batch_lines"], 3000 * per_cell);
    assert_eq!(stats["keys"][KEY]["replayed"], 30_000);
    assert_eq!(stats["keys"][KEY]["repeated"], 0);
    assert_eq!(stats["totals"]["requests"], 0, "no interactive request");
    (got, input, output, sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_of_multi_sample_requests_reproduces_the_published_metrics() {
    if reference_dir().is_none() {
        return;
    }
    let (_, input, output, _sim) = sweep("openai", "/v1", 10, 1, Some(0.1)).await;

    // What it is billed, at the catalog's gpt-4o prices.
    let catalog = moralsweep_common::catalog::builtin().unwrap();
    let price = catalog
        .find(moralsweep_common::provider::ProviderKind::OpenAi, "gpt-4o")
        .unwrap();
    let dollars = |i: u64, o: u64, pi: f64, po: f64| (i as f64 * pi + o as f64 * po) / 1e6;
    let batch_cost = dollars(
        input,
        output,
        price.batch_input_per_mtok.unwrap(),
        price.batch_output_per_mtok.unwrap(),
    );
    // One interactive request per sample sends the prompt ten times and
    // gets one token each.
    let per_sample_cost = dollars(
        input * 10,
        output,
        price.input_per_mtok.unwrap(),
        price.output_per_mtok.unwrap(),
    );
    println!(
        "batch x n=10: 3000 batch lines for 30000 ratings ({:.2} lines per rating), {input} input + {output} output tokens, ${batch_cost:.4}; \
         one request per sample: 30000 requests, {} input + {output} output tokens, ${per_sample_cost:.4}; ratio {:.3}",
        3000.0 / 30000.0,
        input * 10,
        batch_cost / per_sample_cost
    );
    assert!(
        batch_cost <= 0.10 * per_sample_cost,
        "{batch_cost} vs {per_sample_cost}"
    );
}

/// Gemini's batch mode, two requests of candidateCount 5 a cell (its cap
/// is 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_batch_of_candidate_count_requests_reproduces_the_published_metrics() {
    if reference_dir().is_none() {
        return;
    }
    sweep("gemini", "", 5, 2, Some(0.1)).await;
}

/// Anthropic's Message Batches, one sample a request (30,000 requests, no
/// temperature: Anthropic's current API takes none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_message_batch_reproduces_the_published_metrics() {
    if reference_dir().is_none() {
        return;
    }
    sweep("anthropic", "", 1, 10, None).await;
}
