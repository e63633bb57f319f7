//! Records what this build of the engine computes for a few quickstart-like
//! prompts (persona + item framed with the completion cue, each persona's
//! items computed after one another so the prefix reuse and the one- and
//! two-token continuations are exercised too): the digit log-probabilities
//! and the most likely next tokens. `tests/engine_conformance.rs` compares a
//! later build against the file, so a change of kernels or weight storage
//! shows how far it moves the distributions.
//!
//!     cargo run --release -p moralsweep-local --example record_engine_fixture -- \
//!         "$(scripts/fetch-model)" local/tests/fixtures/engine_baseline.json

use std::path::PathBuf;

use moralsweep_local::engine::Template;
use moralsweep_local::{Engine, EngineOptions};

const PERSONAS: [&str; 3] = [
    "A retired schoolteacher in a small farming town who volunteers at the food bank every Saturday.",
    "A hedge fund manager who believes markets reward the most capable people.",
    "A devout monk who has lived in a mountain monastery for forty years.",
];

const ITEMS: [&str; 3] = [
    "Whether or not someone suffered emotionally",
    "Whether or not someone acted unfairly",
    "Whether or not someone showed a lack of loyalty",
];

fn question(item: &str) -> String {
    format!(
        "When deciding whether something is right or wrong, how relevant is the following consideration to your thinking: '{item}'. Please rate the consideration using this scale: 0 = not at all relevant, \n 1 = not very relevant, \n 2 = slightly relevant, \n 3 = somewhat relevant, \n 4 = very relevant, \n 5 = extremely relevant. \n\n Your response should start with an integer from 0 to 5, followed by your reasoning."
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: record_engine_fixture MODEL.gguf OUT.json";
    let model = PathBuf::from(args.next().ok_or(usage)?);
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let engine = Engine::load(
        &model,
        EngineOptions {
            template: Template::Completion {
                cue: Template::DEFAULT_CUE.to_string(),
            },
            ..Default::default()
        },
    )?;
    let mut texts = vec![];
    for item in ITEMS {
        texts.push(question(item));
    }
    for persona in PERSONAS {
        for item in ITEMS {
            texts.push(format!(
                "You are roleplaying as the following persona: {persona}\n\nPlease answer the following question from the perspective of this persona.\n\n{}",
                question(item)
            ));
        }
    }
    let mut cases = vec![];
    for text in &texts {
        let ids = engine.prompt_tokens(text)?;
        // The prompt, then the prompt one and two tokens longer (the
        // continuations a fallback generation computes after its cache).
        for extra in [0usize, 1, 2] {
            let mut tokens = ids.clone();
            tokens.extend(std::iter::repeat_n(236800u32, extra)); // "3"
            let d = engine.distribution(&tokens)?;
            let digits = engine.digit_logprobs(&d);
            let top: Vec<serde_json::Value> = d
                .top(20)
                .into_iter()
                .map(|(id, lp)| serde_json::json!([id, lp]))
                .collect();
            cases.push(serde_json::json!({
                "ids": tokens,
                "digit_logprobs": digits.to_vec(),
                "top": top,
            }));
        }
    }
    let doc = serde_json::json!({
        "what": "the engine's own distributions, recorded by examples/record_engine_fixture.rs",
        "engine": std::env::var("RECORDED_WITH").unwrap_or_default(),
        "cases": cases,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc)? + "\n")?;
    eprintln!("wrote {} cases to {}", cases.len(), out.display());
    Ok(())
}
