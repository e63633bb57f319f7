//! `moralsweep run` with the in-process local model (Gemma 3 270M) in logprob
//! mode: the sweep completes, every row's digit probabilities sum to at most
//! 1, and the metrics the run wrote equal those `moralsweep analyze` computes
//! from the logprob file it wrote. Needs the default weights
//! (MORALSWEEP_MODEL_PATH, set by scripts/test after scripts/fetch-model).

mod common;

use std::path::PathBuf;

use common::*;

fn model_path() -> Option<PathBuf> {
    match std::env::var_os("MORALSWEEP_MODEL_PATH").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("MORALSWEEP_MODEL_PATH does not name the model; scripts/test sets it via scripts/fetch-model")
        }
        _ => {
            eprintln!("SKIPPED local_e2e: MORALSWEEP_MODEL_PATH is not set (run `MORALSWEEP_MODEL_PATH=$(scripts/fetch-model) cargo test --test local_e2e`)");
            None
        }
    }
}

#[test]
fn logprob_sweep_with_the_local_model_matches_analyze() {
    let Some(model) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("personas.json"),
        r#"["A lighthouse keeper who has lived alone for thirty years.", "A union organiser at a car factory."]"#,
    )
    .unwrap();
    let spec = format!(
        r#"name = "local-e2e"
personas = "personas.json"
modes = ["logprob"]
output = "out"
bootstrap = 50
rerun_bootstrap = 20
seed = 7
logprob_temperatures = [0.5, 1.0]

[[model]]
key = "gemma-local"
provider = "local"
model = {model:?}
"#
    );
    std::fs::write(dir.path().join("s.toml"), spec).unwrap();
    let out = run(&["run", "s.toml", "--workers", "1", "--quiet"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every (persona, item) has a row whose digit probabilities sum to <= 1.
    let file = dir.path().join("out/data/gemma-local_logprobs.csv");
    let mut rd = csv::Reader::from_path(&file).unwrap();
    let headers = rd.headers().unwrap().clone();
    let digit_cols: Vec<usize> = (0..6)
        .map(|d| {
            headers
                .iter()
                .position(|h| h == format!("digit_{d}_logprob"))
                .unwrap_or_else(|| panic!("no digit_{d}_logprob column in {headers:?}"))
        })
        .collect();
    let mut rows = 0;
    for r in rd.records() {
        let r = r.unwrap();
        let total: f64 = digit_cols
            .iter()
            .filter_map(|&c| r[c].parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .map(f64::exp)
            .sum();
        assert!(
            total > 0.0 && total <= 1.0 + 1e-9,
            "digit probabilities sum to {total} in {r:?}"
        );
        rows += 1;
    }
    assert_eq!(rows, 2 * 30);

    // The run's logprob metrics equal analyze's on the written file.
    let out = run(
        &[
            "analyze",
            "out/data",
            "--out",
            "again",
            "--bootstrap",
            "50",
            "--rerun-bootstrap",
            "20",
            "--seed",
            "7",
            "--temperatures",
            "0.5,1.0",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut compared = 0;
    for entry in std::fs::read_dir(dir.path().join("again")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        let ours = dir.path().join("out/metrics").join(&name);
        assert!(ours.exists(), "the run wrote no {name:?}");
        assert_eq!(
            std::fs::read_to_string(&ours).unwrap(),
            std::fs::read_to_string(&p).unwrap(),
            "{name:?} differs between run and analyze"
        );
        compared += 1;
    }
    assert!(compared > 0);
}
