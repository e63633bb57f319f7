//! Prints the most likely next tokens and a greedy continuation of a prompt:
//!
//!     cargo run --release -p moralsweep-local --example generate -- MODEL.gguf "The capital of France is" [raw|chat|completion]

use std::path::PathBuf;
use std::time::Instant;

use moralsweep_local::engine::Template;
use moralsweep_local::{Engine, EngineOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or("usage: generate MODEL.gguf PROMPT [raw|chat|completion]")?,
    );
    let prompt = args
        .next()
        .unwrap_or_else(|| "The capital of France is".into());
    let template = match args.next().as_deref() {
        Some("chat") => Template::Chat,
        Some("completion") => Template::Completion {
            cue: Template::DEFAULT_CUE.to_string(),
        },
        _ => Template::Raw,
    };
    let t0 = Instant::now();
    let engine = Engine::load(
        &path,
        EngineOptions {
            template,
            ..Default::default()
        },
    )?;
    eprintln!("loaded in {:.2?}", t0.elapsed());
    let tokens = engine.prompt_tokens(&prompt)?;
    println!("{} tokens: {:?}", tokens.len(), tokens);
    let t1 = Instant::now();
    let d = engine.distribution(&tokens)?;
    eprintln!("prefill in {:.2?}", t1.elapsed());
    for (id, lp) in d.top(10) {
        println!("{id:>7} {lp:>9.4} {:?}", engine.tokenizer.token_text(id));
    }
    let digits = engine.digit_logprobs(&d);
    println!(
        "digits: {:?}",
        digits.map(|l| (l.exp() * 1e4).round() / 1e4)
    );
    let t2 = Instant::now();
    let g = engine.generate(&prompt, 24, 0.0, 0, |_| false)?;
    eprintln!(
        "generated {} tokens in {:.2?}",
        g.tokens.len(),
        t2.elapsed()
    );
    println!("greedy: {:?} {:?}", g.tokens, g.text);
    Ok(())
}
