//! One-token decoding under each kernel class this CPU runs, interleaved so
//! that the machine's other load falls on every class alike: per round and
//! class, 32 greedy steps after a short prompt (the model's step and the
//! output head timed apart), with the CPU seconds and the load average.
//!
//!     MORALSWEEP_MODEL_PATH=$(scripts/fetch-model) cargo run --release -p moralsweep-local --example decode_classes

use std::time::Instant;

use moralsweep_local::kernels::{self, CpuClass};
use moralsweep_local::{Engine, EngineOptions};

const STEPS: usize = 32;
const ROUNDS: usize = 3;

/// CPU seconds of this process (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::var_os("MORALSWEEP_MODEL_PATH") else {
        eprintln!("decode_classes: set MORALSWEEP_MODEL_PATH (scripts/fetch-model)");
        return Ok(());
    };
    let e = Engine::load(path.as_ref(), EngineOptions::default())?;
    let ids = e.prompt_tokens(
        "You are roleplaying as a lighthouse keeper. Please rate the consideration using this scale: 0 = not at all relevant",
    )?;
    let classes: Vec<CpuClass> = CpuClass::ALL
        .into_iter()
        .rev()
        .filter(|&c| c <= kernels::detected())
        .collect();
    for round in 0..ROUNDS {
        for &class in &classes {
            kernels::set_class(class);
            let mut cache = e.model.new_cache();
            e.model.forward(&ids, &mut cache)?;
            let (mut tok, mut step, mut head) = (0u32, 0f64, 0f64);
            let (cpu, t0) = (cpu_seconds(), Instant::now());
            for _ in 0..STEPS {
                let t = Instant::now();
                let hidden = e.model.forward(&[tok], &mut cache)?;
                step += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let logits = e.model.logits(&hidden);
                head += t.elapsed().as_secs_f64();
                tok = (0..logits.len())
                    .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                    .unwrap_or(0) as u32;
            }
            let wall = t0.elapsed().as_secs_f64();
            println!(
                "round {round} {class}: {:.1} tokens/s, step {:.1} ms, head {:.1} ms, {:.2} CPU-s for {STEPS} tokens (load average {})",
                STEPS as f64 / wall,
                step / STEPS as f64 * 1e3,
                head / STEPS as f64 * 1e3,
                cpu_seconds() - cpu,
                std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
            );
        }
    }
    Ok(())
}
