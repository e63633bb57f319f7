//! `moralsweep run` with the in-process local model (Gemma 3 270M).
//! In logprob mode the sweep completes, every row's digit probabilities sum
//! to at most 1, and the metrics the run wrote equal those `moralsweep
//! analyze` computes from the logprob file it wrote. In persona and self
//! modes the base model, framed as a completion (what `template = "auto"`
//! picks for a file without a chat template), gives valid ratings for nearly
//! every slot, and the run prints the S and R table. Needs the default
//! weights (MORALSWEEP_MODEL_PATH, set by scripts/test after
//! scripts/fetch-model).

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

/// A temporary directory holding a `personas.json` of two personas.
fn two_personas() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("personas.json"),
        r#"["A lighthouse keeper who has lived alone for thirty years.", "A union organiser at a car factory."]"#,
    )
    .unwrap();
    dir
}

#[test]
fn logprob_sweep_with_the_local_model_matches_analyze() {
    let Some(model) = model_path() else { return };
    let dir = two_personas();
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

#[test]
fn persona_and_self_sweeps_with_the_local_model_give_ratings_and_metrics() {
    let Some(model) = model_path() else { return };
    let dir = two_personas();
    let spec = format!(
        r#"name = "local-persona"
personas = "personas.json"
modes = ["persona", "self"]
repetitions = 3
temperature = 0.1
output = "out"
bootstrap = 50
rerun_bootstrap = 20
seed = 3

[[model]]
key = "gemma-local"
provider = "local"
model = {model:?}
fallback_max_tokens = 8
"#
    );
    std::fs::write(dir.path().join("s.toml"), spec).unwrap();
    let out = run(&["run", "s.toml", "--workers", "2", "--quiet"], dir.path());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");

    let ratings = |name: &str| -> Vec<i64> {
        let mut rd = csv::Reader::from_path(dir.path().join("out/data").join(name)).unwrap();
        let col = rd
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "rating")
            .unwrap();
        rd.records()
            .map(|r| r.unwrap()[col].parse().unwrap())
            .collect()
    };
    for (file, rows) in [
        ("gemma-local_temp01.csv", 2 * 30 * 3),
        ("gemma-local_temp01_self.csv", 30 * 3),
    ] {
        let r = ratings(file);
        assert_eq!(r.len(), rows, "{file}");
        assert!(r.iter().all(|v| (-1..=5).contains(v)), "{file}: {r:?}");
        let valid = r.iter().filter(|&&v| v >= 0).count();
        assert!(
            valid * 10 >= rows * 8,
            "{file}: only {valid} of {rows} slots have a rating"
        );
        // The answers are not all one digit: the model is computed, not
        // stubbed (at 0.1 the cells differ from item to item).
        let distinct: std::collections::BTreeSet<_> = r.iter().filter(|&&v| v >= 0).collect();
        assert!(distinct.len() >= 2, "{file}: {distinct:?}");
    }
    let metrics =
        std::fs::read_to_string(dir.path().join("out/metrics/persona_moral_metrics.csv")).unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("gemma-local,")),
        "{metrics}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("gemma-local ")),
        "the run printed no S/R row: {stdout}"
    );
}
