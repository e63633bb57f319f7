//! Speed of the local model on this machine: prompt tokens per second of a
//! cold prefill, of the persona-sweep pattern (30 items after one persona,
//! the prefix reused), the output head, and one-token decoding.
//!
//!     scripts/fetch-model
//!     MORALSWEEP_MODEL_PATH=$(scripts/fetch-model) cargo bench -p moralsweep-local --bench prefill
//!
//! Without the model it says so and exits. The machine's other load skews
//! wall-clock rates; the CPU-second figures are steadier (on an idle machine
//! with two cores, prompt tokens/s is up to twice the tokens per CPU-second).

use std::path::PathBuf;
use std::time::Instant;

use moralsweep_local::{Engine, EngineOptions};

const ITEM_HEAD: &str = "When deciding whether something is right or wrong, how relevant is the following consideration to your thinking: '";
const ITEM_TAIL: &str = "'. Please rate the consideration using this scale: 0 = not at all relevant, \n 1 = not very relevant, \n 2 = slightly relevant, \n 3 = somewhat relevant, \n 4 = very relevant, \n 5 = extremely relevant. \n\n Your response should start with an integer from 0 to 5, followed by your reasoning.";

fn prompt(persona: &str, item: usize) -> String {
    format!(
        "You are roleplaying as the following persona: {persona}\n\nPlease answer the following question from the perspective of this persona.\n\n{ITEM_HEAD}Consideration number {item} of the questionnaire about fairness and care{ITEM_TAIL}"
    )
}

/// CPU seconds this process has used (user + system, all threads), from
/// /proc/self/stat: with other work on the machine, prompt tokens per CPU
/// second times the core count estimates the unloaded rate.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo test --all-targets` runs bench binaries too (without --bench):
    // only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("prefill bench: run it with `cargo bench -p moralsweep-local --bench prefill`");
        return Ok(());
    }
    let Some(path) = std::env::var_os("MORALSWEEP_MODEL_PATH").map(PathBuf::from) else {
        eprintln!("prefill bench: MORALSWEEP_MODEL_PATH is not set (run scripts/fetch-model); nothing measured");
        return Ok(());
    };
    // The matrix product alone: the FFN's gate/up shape for 128 positions.
    let (m, k, n) = (128usize, 640usize, 4096usize);
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; n * k];
    let mut c = vec![0f32; m * n];
    let t = Instant::now();
    for _ in 0..10 {
        moralsweep_local::kernels::sgemm(
            m,
            k,
            n,
            &a,
            (k as isize, 1),
            &b,
            (1, k as isize),
            &mut c,
            (n as isize, 1),
        );
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "sgemm {m}x{k}x{n}: {:.1} GFLOP/s",
        10.0 * 2.0 * (m * k * n) as f64 / s / 1e9
    );
    // The same product with the weights packed once (what the model uses).
    let packed = moralsweep_local::kernels::Packed::from_rows(&b, n, k);
    for (m, label) in [(128usize, "128"), (96, "96 (a persona item's suffix)")] {
        let t = Instant::now();
        for _ in 0..10 {
            moralsweep_local::kernels::gemm_packed(m, &a, &packed, &mut c);
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "packed gemm {label}x{k}x{n}: {:.1} GFLOP/s",
            10.0 * 2.0 * (m * k * n) as f64 / s / 1e9
        );
    }
    let t = Instant::now();
    let engine = Engine::load(&path, EngineOptions::default())?;
    println!("load: {:.2?}", t.elapsed());

    // Cold prefill of whole prompts (no reuse: a fresh persona each time).
    let mut toks = 0usize;
    let cpu = cpu_seconds();
    let t = Instant::now();
    for i in 0..4 {
        let p = prompt(
            &format!("Cold persona {i}, a {i}-year-old lighthouse keeper from a windy island."),
            1,
        );
        let ids = engine.prompt_tokens(&p)?;
        toks += ids.len();
        engine.distribution(&ids)?;
    }
    let s = t.elapsed().as_secs_f64();
    let c = cpu_seconds() - cpu;
    println!(
        "cold prefill incl. output head: {toks} tokens in {s:.2}s = {:.0} prompt tokens/s, {:.2} prompts/s; {c:.2} CPU-s = {:.0} tokens per CPU-s",
        toks as f64 / s,
        4.0 / s,
        toks as f64 / c
    );

    // Output head alone.
    let ids = engine.prompt_tokens("Hello")?;
    let d = engine.distribution(&ids)?;
    let hidden = vec![0.01f32; engine.model.cfg.n_embd];
    let t = Instant::now();
    for _ in 0..5 {
        std::hint::black_box(engine.model.logits(&hidden));
    }
    println!(
        "output head (262k x 640): {:.1} ms",
        t.elapsed().as_secs_f64() * 200.0
    );
    drop(d);

    // The sweep pattern: one persona, 30 items.
    let persona = "A retired schoolteacher who volunteers at the local food bank and sings in a church choir.";
    let (asked0, computed0) = engine.token_counts();
    let cpu = cpu_seconds();
    let t = Instant::now();
    for item in 0..30 {
        let ids = engine.prompt_tokens(&prompt(persona, item))?;
        engine.distribution(&ids)?;
    }
    let s = t.elapsed().as_secs_f64();
    let c = cpu_seconds() - cpu;
    let (asked, computed) = engine.token_counts();
    let (asked, computed) = (asked - asked0, computed - computed0);
    println!(
        "persona x 30 items: {s:.2}s = {:.2} prompts/s, {:.0} prompt tokens/s ({asked} prompt tokens, {computed} computed after prefix reuse, {:.0} computed tokens/s); {c:.2} CPU-s = {:.2} prompts per CPU-s",
        30.0 / s,
        asked as f64 / s,
        computed as f64 / s,
        30.0 / c
    );

    // Decoding one token at a time.
    let t = Instant::now();
    let g = engine.generate(&prompt(persona, 3), 16, 0.0, 1, |_| false)?;
    println!(
        "decode: {} tokens in {:.2?} ({:?})",
        g.tokens.len(),
        t.elapsed(),
        g.text
    );
    Ok(())
}
