//! A fine-tune's checkpoints through the local provider: a spec's
//! `checkpoints` list becomes one model per step; requests for both
//! checkpoints, interleaved and concurrent, are all answered, each by its own
//! weights, while the process never holds more than one checkpoint's weights
//! (`moralsweep_local::model::live_models`, sampled throughout) and builds
//! their shared tokenizer once.
//!
//! The checkpoints are the tiny Llama fixture (`local/tests/fixtures/arch/`)
//! and a copy whose FFN output weights are scaled: two models of one
//! architecture and vocabulary with different next-token distributions.
#![cfg(feature = "local")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use moralsweep_common::SweepSpec;
use moralsweep_local::gguf::{GgufFile, TensorType};
use moralsweep_worker::providers::local::checkpoint_report;
use moralsweep_worker::providers::{build, CompletionRequest, Provider};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../local/tests/fixtures/arch/llama3.gguf")
}

/// `src` with every layer's `ffn_down` weights (f32) times `factor`.
fn scaled_copy(src: &Path, dst: &Path, factor: f32) {
    let bytes = std::fs::read(src).unwrap();
    let f = GgufFile::parse(src, bytes.clone()).unwrap();
    let mut out = bytes;
    let mut scaled = 0;
    for (name, t) in &f.tensors {
        if name.ends_with("ffn_down.weight") && t.ty == TensorType::F32 {
            for v in out[t.offset..t.offset + t.size].chunks_exact_mut(4) {
                let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]) * factor;
                v.copy_from_slice(&x.to_le_bytes());
            }
            scaled += 1;
        }
    }
    assert!(scaled > 0, "no f32 ffn_down tensor in {}", src.display());
    std::fs::write(dst, out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_take_turns_in_one_slot_and_share_the_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("step-100.gguf"),
        dir.path().join("step-200.gguf"),
    );
    std::fs::copy(fixture(), &a).unwrap();
    scaled_copy(&fixture(), &b, 3.0);
    let text = format!(
        r#"name = "ckpt"
personas = "p.json"
output = "out"
[[model]]
key = "tiny-ft"
provider = "local"
family = "tiny-ft-family"
extra = {{ template = "raw" }}
checkpoints = [{{ step = 100, path = {a:?} }}, {{ step = 200, path = {b:?} }}]
"#
    );
    let spec = SweepSpec::parse(&text, Path::new("s.toml")).unwrap();
    let keys: Vec<&str> = spec.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["tiny-ft-step100", "tiny-ft-step200"]);
    let providers: Vec<Arc<dyn Provider>> = spec
        .models
        .iter()
        .map(|m| Arc::from(build(m).unwrap()))
        .collect();

    // Sample the models in memory while the requests run.
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(moralsweep_local::model::live_models(), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let request = |i: usize| CompletionRequest {
        prompt: format!("The answer to question {i} is"),
        max_tokens: if i.is_multiple_of(5) { 3 } else { 1 },
        temperature: Some(0.5),
        seed: Some(i as u64),
        top_logprobs: Some(5),
    };
    // Three rounds of 24 concurrent requests alternating between the two.
    let mut answers: Vec<(usize, usize, f64)> = vec![];
    for round in 0..3 {
        let mut tasks = vec![];
        for i in 0..24 {
            let (p, which) = (providers[i % 2].clone(), i % 2);
            let req = request(round * 100 + i / 2);
            tasks.push(tokio::spawn(async move {
                let c = p.complete(&req).await.unwrap();
                let top = c.top_logprobs.unwrap();
                assert!(!top.is_empty() && !c.text.is_empty());
                (which, i / 2, top[0].logprob)
            }));
        }
        for t in tasks {
            answers.push(t.await.unwrap());
        }
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    assert_eq!(answers.len(), 72);
    let peak = peak.load(Ordering::Relaxed);
    assert_eq!(
        peak, 1,
        "checkpoint weights in memory at once: at most {peak}"
    );
    let report = checkpoint_report("tiny-ft-family").unwrap();
    assert_eq!(report.tokenizers, 1, "{report:?}");
    assert!(report.loads >= 2, "{report:?}");
    eprintln!(
        "72 requests over 2 checkpoints: {} loads, {} tokenizer built, at most {peak} model in memory",
        report.loads, report.tokenizers
    );
    // Each checkpoint answered with its own weights: the same prompt's best
    // log-probability differs between them.
    let best = |which: usize, n: usize| {
        answers
            .iter()
            .find(|(w, k, _)| *w == which && *k == n)
            .map(|a| a.2)
            .unwrap()
    };
    assert!((0..12).any(|n| (best(0, n) - best(1, n)).abs() > 1e-3));
}
