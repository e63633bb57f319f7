//! `moralsweep run` over a fine-tune's checkpoints: one `[[model]]` entry
//! with `checkpoints = [{ step, path }, ...]` (two tiny Llama checkpoints:
//! the fixture of `local/tests/fixtures/arch/` and a copy with scaled FFN
//! weights) sweeps both, rating every slot of each step in persona and
//! logprob mode, each with its own weights, while the process holds one
//! checkpoint's weights at a time (the provider logs the models in memory at
//! every checkpoint load) and builds the tokenizer once.

mod common;

use std::path::Path;

use common::*;
use moralsweep_local::gguf::{GgufFile, TensorType};

/// `src` with every layer's `ffn_down` weights (f32) times `factor`.
fn scaled_copy(src: &Path, dst: &Path, factor: f32) {
    let bytes = std::fs::read(src).unwrap();
    let f = GgufFile::parse(src, bytes.clone()).unwrap();
    let mut out = bytes;
    for (name, t) in &f.tensors {
        if name.ends_with("ffn_down.weight") && t.ty == TensorType::F32 {
            for v in out[t.offset..t.offset + t.size].chunks_exact_mut(4) {
                let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]) * factor;
                v.copy_from_slice(&x.to_le_bytes());
            }
        }
    }
    std::fs::write(dst, out).unwrap();
}

#[test]
fn a_sweep_over_two_checkpoints_rates_both_holding_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("local/tests/fixtures/arch/llama3.gguf");
    std::fs::copy(&fixture, dir.path().join("step-100.gguf")).unwrap();
    scaled_copy(&fixture, &dir.path().join("step-200.gguf"), 3.0);
    std::fs::write(
        dir.path().join("personas.json"),
        r#"["A lighthouse keeper.", "A union organiser."]"#,
    )
    .unwrap();
    let spec = r#"name = "ckpt-e2e"
personas = "personas.json"
repetitions = 1
modes = ["persona", "logprob"]
output = "out"
bootstrap = 20
rerun_bootstrap = 10
seed = 3

[[model]]
key = "tiny-ft"
provider = "local"
variant = "insecure"
extra = { template = "raw" }
fallback_max_tokens = 2
checkpoints = [
  { step = 100, path = "step-100.gguf" },
  { step = 200, path = "step-200.gguf" },
]
"#;
    std::fs::write(dir.path().join("s.toml"), spec).unwrap();
    let out = std::process::Command::new(bin())
        .args(["run", "s.toml", "--workers", "2", "--quiet"])
        .current_dir(dir.path())
        .env("RUST_LOG", "moralsweep_worker=info")
        .env_remove("MORALSWEEP_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // Both steps rated: every slot of each checkpoint's persona and logprob files.
    for key in ["tiny-ft-step100", "tiny-ft-step200"] {
        for (file, rows) in [
            (format!("{key}_temp01.csv"), 2 * 30),
            (format!("{key}_logprobs.csv"), 2 * 30),
        ] {
            let path = dir.path().join("out/data").join(&file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", path.display()));
            assert_eq!(text.lines().count() - 1, rows, "{file}");
        }
    }
    // Each with its own weights: the scaled copy's digit probabilities differ.
    let data = data_without_time(&dir.path().join("out"));
    assert_ne!(
        data["tiny-ft-step100_logprobs.csv"],
        data["tiny-ft-step200_logprobs.csv"]
    );
    // Both in the metrics. (A random-weight model gives no valid persona
    // rating, so there is no persona metric and no trajectory row here; the
    // spec's step reaching `trajectories.csv` is `tests/trajectory.rs`'s.)
    let curves =
        std::fs::read_to_string(dir.path().join("out/metrics/temperature_curve_metrics.csv"))
            .unwrap();
    for key in ["tiny-ft-step100", "tiny-ft-step200"] {
        assert!(
            curves.contains(key),
            "no {key} in temperature_curve_metrics.csv"
        );
    }

    // Every checkpoint load left exactly one model in memory, and the
    // tokenizer was built once.
    let loads: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("local checkpoint loaded"))
        .collect();
    assert!(loads.len() >= 2, "{stderr}");
    for l in &loads {
        assert!(l.contains("models_in_memory=1"), "{l}");
        assert!(l.contains("tokenizers_built=1"), "{l}");
    }
    eprintln!("{} checkpoint loads for 240 slots", loads.len());
}
