//! The engine against its own earlier results: the digit log-probabilities
//! and most likely next tokens of quickstart-like prompts (completion
//! framing, three personas and the no-persona prompt, three items each, each
//! prompt also one and two tokens longer so the decoding steps and the
//! prefix reuse are covered), recorded by `examples/record_engine_fixture.rs`
//! with the engine that held every weight in `f32` (before the weights were
//! packed in half precision). A change of kernels or weight storage must keep
//! them within the tolerance the llama.cpp fixtures allow against f32
//! weights (`tests/llamacpp_fixtures.rs`).

mod common;

use moralsweep_local::engine::Template;
use moralsweep_local::{Engine, EngineOptions};
use serde_json::Value;

/// The same bound as `F32_TOLERANCE` in `llamacpp_fixtures.rs`.
const TOLERANCE: f64 = 0.02;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn distributions_match_the_f32_engine() {
    let Some(path) = common::model_path("engine_conformance") else {
        return;
    };
    let engine = Engine::load(
        &path,
        EngineOptions {
            template: Template::Completion {
                cue: Template::DEFAULT_CUE.to_string(),
            },
            ..Default::default()
        },
    )
    .expect("the model loads");
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/engine_baseline.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut worst = 0f64;
    for (i, case) in cases.iter().enumerate() {
        let tokens = ids(&case["ids"]);
        let d = engine.distribution(&tokens).unwrap();
        let digits = engine.digit_logprobs(&d);
        for (k, want) in case["digit_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let (got, want) = (digits[k], want.as_f64().unwrap());
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= TOLERANCE,
                "case {i}: log p(digit {k}) = {got:.5}, the f32 engine {want:.5}"
            );
        }
        for pair in case["top"].as_array().unwrap() {
            let (id, want) = (pair[0].as_u64().unwrap() as u32, pair[1].as_f64().unwrap());
            let got = d.logprob(id);
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= TOLERANCE,
                "case {i}: log p({:?}) = {got:.5}, the f32 engine {want:.5}",
                engine.tokenizer.token_text(id)
            );
        }
    }
    eprintln!(
        "{} prompts: worst |delta log p| against the f32 engine = {worst:.5} (tolerance {TOLERANCE})",
        cases.len()
    );
}
