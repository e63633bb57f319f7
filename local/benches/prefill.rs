//! Speed of the local model on this machine: prompt tokens per second of a
//! cold prefill, of the persona-sweep pattern (30 items after one persona,
//! the prefix reused), the output head, and one-token decoding; then the
//! same measurements by llama.cpp (through llama-cpp-python, run by
//! `llamacpp_side.py` next to this file) on the same GGUF file and the same
//! token sequences, side by side in one table.
//!
//!     scripts/fetch-model
//!     pip install llama-cpp-python    # optional: the llama.cpp column
//!     MORALSWEEP_MODEL_PATH=$(scripts/fetch-model) cargo bench -p moralsweep-local --bench prefill
//!
//! Without the model it says so and exits; without llama-cpp-python the
//! table has the engine's column only (`MORALSWEEP_PYTHON` picks the
//! interpreter, default `python3`). The machine's other load skews
//! wall-clock rates; the CPU-second figures are steadier (on an idle machine
//! with two cores, prompt tokens/s is up to twice the tokens per CPU-second).

use std::path::{Path, PathBuf};
use std::time::Instant;

use moralsweep_local::{Engine, EngineOptions};
use serde_json::{json, Value};

/// Greedy decoding steps measured.
const DECODE_STEPS: usize = 16;

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
    let mut sequences = json!({"decode_steps": DECODE_STEPS});
    let mut ours = json!({});

    // Cold prefill of whole prompts (no reuse: a fresh persona each time).
    let cold: Vec<Vec<u32>> = (0..4)
        .map(|i| {
            engine.prompt_tokens(&prompt(
                &format!("Cold persona {i}, a {i}-year-old lighthouse keeper from a windy island."),
                1,
            ))
        })
        .collect::<Result<_, _>>()?;
    let toks: usize = cold.iter().map(Vec::len).sum();
    let cpu = cpu_seconds();
    let t = Instant::now();
    for ids in &cold {
        engine.distribution(ids)?;
    }
    let s = t.elapsed().as_secs_f64();
    let c = cpu_seconds() - cpu;
    println!(
        "cold prefill incl. output head: {toks} tokens in {s:.2}s = {:.0} prompt tokens/s, {:.2} prompts/s; {c:.2} CPU-s = {:.0} tokens per CPU-s",
        toks as f64 / s,
        4.0 / s,
        toks as f64 / c
    );
    sequences["cold"] = json!(cold);
    ours["cold"] = json!({"tokens": toks, "s": s, "cpu_s": c});

    // Output head alone.
    let ids = engine.prompt_tokens("Hello")?;
    let d = engine.distribution(&ids)?;
    let hidden = vec![0.01f32; engine.model.cfg.n_embd];
    let t = Instant::now();
    for _ in 0..5 {
        std::hint::black_box(engine.model.logits(&hidden));
    }
    let head = t.elapsed().as_secs_f64() / 5.0;
    println!("output head (262k x 640): {:.1} ms", head * 1e3);
    ours["head"] = json!({"head_s": head});
    drop(d);

    // The sweep pattern: one persona, 30 items.
    let persona = "A retired schoolteacher who volunteers at the local food bank and sings in a church choir.";
    let items: Vec<Vec<u32>> = (0..30)
        .map(|item| engine.prompt_tokens(&prompt(persona, item)))
        .collect::<Result<_, _>>()?;
    let (asked0, computed0) = engine.token_counts();
    let cpu = cpu_seconds();
    let t = Instant::now();
    for ids in &items {
        engine.distribution(ids)?;
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
    sequences["persona"] = json!(items);
    ours["persona"] =
        json!({"prompts": 30, "asked": asked, "computed": computed, "s": s, "cpu_s": c});

    // Decoding one token at a time, as llama.cpp's side does it: the model's
    // step and output head, the most likely token next.
    let ids = engine.prompt_tokens(&prompt(persona, 3))?;
    let mut cache = engine.model.new_cache();
    let hidden = engine.model.forward(&ids, &mut cache)?;
    let mut tok = argmax(&engine.model.logits(&hidden));
    let cpu = cpu_seconds();
    let t = Instant::now();
    for _ in 0..DECODE_STEPS {
        let hidden = engine.model.forward(&[tok], &mut cache)?;
        tok = argmax(&engine.model.logits(&hidden));
    }
    let s = t.elapsed().as_secs_f64();
    let c = cpu_seconds() - cpu;
    println!(
        "decode (model step + output head): {DECODE_STEPS} tokens in {s:.2}s = {:.1} tokens/s",
        DECODE_STEPS as f64 / s
    );
    sequences["decode"] = json!(ids);
    ours["decode"] = json!({"tokens": DECODE_STEPS, "s": s, "cpu_s": c});

    // The engine's generation (its distributions, summaries and caches).
    let t = Instant::now();
    let g = engine.generate(&prompt(persona, 3), DECODE_STEPS, 0.0, 1, |_| false)?;
    println!(
        "engine.generate: {} tokens in {:.2?} ({:?})",
        g.tokens.len(),
        t.elapsed(),
        g.text
    );

    let theirs = llama_cpp(&path, &sequences);
    print_table(&ours, &theirs);
    Ok(())
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// llama.cpp's figures for the same sequences (`llamacpp_side.py`), or an
/// object whose `error` says why there are none.
fn llama_cpp(model: &Path, sequences: &Value) -> Value {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return json!({"error": format!("no temporary folder: {e}")}),
    };
    let file = dir.path().join("tokens.json");
    if let Err(e) = std::fs::write(&file, sequences.to_string()) {
        return json!({"error": format!("{}: {e}", file.display())});
    }
    let threads = std::env::var("MORALSWEEP_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let python = std::env::var("MORALSWEEP_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/llamacpp_side.py");
    println!(
        "llama.cpp: {python} {} ({threads} threads)",
        script.display()
    );
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(model)
        .arg(&file)
        .arg(threads.to_string())
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Err(e) => json!({"error": format!("{python}: {e}")}),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            serde_json::from_str(text.trim()).unwrap_or_else(|e| {
                json!({"error": format!("{} ({}): {e}: {}", script.display(), o.status, text.trim())})
            })
        }
    }
}

/// A figure read from one side's results.
type Getter<'a> = Box<dyn Fn(&Value) -> Option<f64> + 'a>;

/// Rows of (label, our value, their value).
fn print_table(ours: &Value, theirs: &Value) {
    let f = |v: &Value, a: &str, b: &str| v[a][b].as_f64();
    let rate = |v: &Value, what: &str, n: &str, t: &str| Some(f(v, what, n)? / f(v, what, t)?);
    let rows: Vec<(&str, Getter<'_>, &str)> = vec![
        (
            "cold prefill, prompt tokens/s",
            Box::new(|v| rate(v, "cold", "tokens", "s")),
            "{:.0}",
        ),
        (
            "  per CPU-second",
            Box::new(|v| rate(v, "cold", "tokens", "cpu_s")),
            "{:.0}",
        ),
        (
            "persona prefix reused, computed tokens/s",
            Box::new(|v| rate(v, "persona", "computed", "s")),
            "{:.0}",
        ),
        (
            "  prompts/s (30 items)",
            Box::new(|v| Some(f(v, "persona", "prompts")? / f(v, "persona", "s")?)),
            "{:.1}",
        ),
        (
            "one-token decode, tokens/s",
            Box::new(|v| rate(v, "decode", "tokens", "s")),
            "{:.1}",
        ),
        (
            "output head, ms",
            Box::new(|v| Some(f(v, "head", "head_s")? * 1e3)),
            "{:.1}",
        ),
    ];
    let version = theirs["version"].as_str().unwrap_or("?");
    println!();
    println!("| | this engine | llama.cpp ({version}) |");
    println!("|---|---|---|");
    for (label, get, fmt) in rows {
        let show = |v: Option<f64>| match v {
            Some(x) if fmt == "{:.0}" => format!("{x:.0}"),
            Some(x) => format!("{x:.1}"),
            None => "-".into(),
        };
        println!("| {label} | {} | {} |", show(get(ours)), show(get(theirs)));
    }
    if let Some(e) = theirs["error"].as_str() {
        println!("llama.cpp column empty: {e}");
    }
    println!(
        "(load average {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
