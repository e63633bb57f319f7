//! Benchmark (ignored by default; run it in release, with the model):
//!
//! ```text
//! MORALSWEEP_MODEL_PATH=$(scripts/fetch-model) \
//!   cargo test --release --test bench_local -- --ignored --nocapture
//! ```
//!
//! A whole `moralsweep run` with the in-process local model (Gemma 3 270M):
//! by default the logprob sweep of the papers' 100 personas x 30 items (3,000
//! prompts; the goal is under 20 minutes on the 2-core machine). Prints the
//! wall-clock time, the CPU time and peak resident memory of the run, prompts per second and prompt
//! tokens per second (as the run's usage table counts them: every prompt
//! token asked, before prefix reuse).
//!
//! Measured on the 2-core development machine (release build, quiet machine,
//! 2026-11-27): the 100 x 30 logprob sweep of the reference personas in
//! 267.1 s wall-clock (421.6 CPU-s), 11.2 prompts/s, 448,650 prompt tokens
//! asked = 1,680 prompt tokens/s (about 150 per prompt, the persona prefix
//! computed once per persona and reused for its 30 items). With the general
//! SGEMM instead of the packed kernel: 350.8 s.
//!
//! Knobs: MORALSWEEP_BENCH_PERSONAS (default 100), MORALSWEEP_BENCH_MODES
//! (default "logprob"; e.g. "persona,self,logprob"), MORALSWEEP_BENCH_REPS
//! (default 10, for persona and self modes).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn knob(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[test]
#[ignore = "benchmark: MORALSWEEP_MODEL_PATH=$(scripts/fetch-model) cargo test --release --test bench_local -- --ignored --nocapture"]
fn a_local_sweep_end_to_end() {
    let Some(model) = std::env::var_os("MORALSWEEP_MODEL_PATH").map(PathBuf::from) else {
        eprintln!("bench_local: MORALSWEEP_MODEL_PATH is not set (run scripts/fetch-model); nothing measured");
        return;
    };
    let personas: usize = knob("MORALSWEEP_BENCH_PERSONAS", "100").parse().unwrap();
    let reps: u32 = knob("MORALSWEEP_BENCH_REPS", "10").parse().unwrap();
    let modes: Vec<String> = knob("MORALSWEEP_BENCH_MODES", "logprob")
        .split(',')
        .map(|m| format!("{:?}", m.trim()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_personas(dir.path(), personas);
    let spec = format!(
        r#"name = "bench-local"
personas = "personas.json"
persona_count = {personas}
repetitions = {reps}
temperature = 0.1
modes = [{}]
output = "out"
seed = 1

[[model]]
key = "gemma-local"
provider = "local"
model = {model:?}
fallback_max_tokens = 8
"#,
        modes.join(", ")
    );
    std::fs::write(dir.path().join("s.toml"), &spec).unwrap();
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(["run", "s.toml", "--quiet"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The CPU time and peak resident memory of the run, read until it exits
    // (to within the poll).
    let mut cpu = 0.0;
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        cpu = cpu_secs(pid).unwrap_or(cpu);
        peak_kib = peak_kib.max(peak_rss_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = started.elapsed().as_secs_f64();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "the run failed: {stdout}");
    println!("{stdout}");
    // The usage table: model, requests, 429s, retried, input tokens, ...
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("gemma-local ") && l.contains("no price"))
        .expect("a usage row")
        .split_whitespace()
        .collect();
    let (requests, input_tokens): (f64, f64) = (row[1].parse().unwrap(), row[4].parse().unwrap());
    let prompts = personas * 30
        + if modes.iter().any(|m| m == "\"self\"") {
            30
        } else {
            0
        };
    println!(
        "bench_local: {personas} personas, modes {}: {wall:.1} s wall, {cpu:.1} CPU-s, peak {:.0} MB resident; {prompts} distinct prompts = {:.2} prompts/s; {requests} requests; {input_tokens} prompt tokens asked = {:.0} prompt tokens/s",
        modes.join(","),
        peak_kib as f64 * 1024.0 / 1e6,
        prompts as f64 / wall,
        input_tokens / wall,
    );
}

/// The peak resident set of a running process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
