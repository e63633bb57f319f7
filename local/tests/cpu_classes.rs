//! The three kernel classes (`MORALSWEEP_CPU=avx512|avx2|portable`, see
//! `kernels::CpuClass`) give the same next-token distributions: every class
//! this CPU runs, on the tiny models of every architecture
//! (`fixtures/arch/`, against llama.cpp's recorded log-probabilities as in
//! `llamacpp_fixtures.rs`) and on Gemma 3 270M when MORALSWEEP_MODEL_PATH
//! names it (against the f32 engine's recorded digits, as in
//! `engine_conformance.rs`), and against each other: every class within the
//! fixtures' tolerance of the best class, on the prompts and on one- and
//! two-token extensions of them (the decoding steps' paths).
//!
//! And the variable itself: a child process of this test binary run with
//! `MORALSWEEP_CPU` set reports the class it forced, and an unknown value
//! fails the model's load naming the variable and the accepted values.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use moralsweep_local::engine::{Distribution, Template};
use moralsweep_local::kernels::{self, CpuClass};
use moralsweep_local::{Engine, EngineOptions};
use serde_json::Value;

/// `F32_TOLERANCE` of `llamacpp_fixtures.rs` and `engine_conformance.rs`.
const TOLERANCE: f64 = 0.02;

/// The tests that switch the process's class take turns.
static CLASS_LOCK: Mutex<()> = Mutex::new(());

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The classes this CPU runs, best first.
fn classes() -> Vec<CpuClass> {
    CpuClass::ALL
        .into_iter()
        .rev()
        .filter(|&c| c <= kernels::detected())
        .collect()
}

fn arch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch")
}

/// A model's distributions of `seqs` under one class, from a fresh engine
/// (no cache carried over from another class), in order: each sequence's
/// distribution follows the previous one's, so an extension by a token or
/// two reuses the prefix and runs the decoding paths.
fn distributions(
    path: &Path,
    template: Template,
    seqs: &[Vec<u32>],
) -> (Engine, Vec<Arc<Distribution>>) {
    let e = Engine::load(
        path,
        EngineOptions {
            template,
            ..Default::default()
        },
    )
    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let d = seqs.iter().map(|s| e.distribution(s).unwrap()).collect();
    (e, d)
}

/// Every class's distributions within [`TOLERANCE`] of the best class's:
/// its 20 most likely tokens and the six digits.
fn same_across_classes(what: &str, runs: &[(CpuClass, Engine, Vec<Arc<Distribution>>)]) {
    let (best, e0, base) = &runs[0];
    for (class, e, dists) in &runs[1..] {
        let mut worst = 0f64;
        for (i, (want, got)) in base.iter().zip(dists).enumerate() {
            for (id, lp) in want.top(20) {
                let delta = (got.logprob(id) - lp).abs();
                worst = worst.max(delta);
                assert!(
                    delta <= TOLERANCE,
                    "{what} sequence {i}: log p({:?}) = {:.5} with {class}, {lp:.5} with {best}",
                    e0.tokenizer.token_text(id),
                    got.logprob(id)
                );
            }
            let (dw, dg) = (e0.digit_logprobs(want), e.digit_logprobs(got));
            for k in 0..6 {
                if dw[k].is_finite() || dg[k].is_finite() {
                    let delta = (dw[k] - dg[k]).abs();
                    worst = worst.max(delta);
                    assert!(
                        delta <= TOLERANCE,
                        "{what} sequence {i}: digit {k}: {:.5} with {class}, {:.5} with {best}",
                        dg[k],
                        dw[k]
                    );
                }
            }
        }
        eprintln!("{what}: {class} against {best}: worst |delta log p| = {worst:.5}");
    }
}

/// The recorded log-probabilities of `top` and the digits, within the tolerance.
fn matches_record(what: &str, e: &Engine, d: &Distribution, rec: &Value, digits: &[(usize, f64)]) {
    for pair in rec["top"].as_array().unwrap() {
        let (id, want) = (pair[0].as_u64().unwrap() as u32, pair[1].as_f64().unwrap());
        let got = d.logprob(id);
        assert!(
            (got - want).abs() <= TOLERANCE,
            "{what}: log p({:?}) = {got:.5}, recorded {want:.5}",
            e.tokenizer.token_text(id)
        );
    }
    let got = e.digit_logprobs(d);
    for &(k, want) in digits {
        assert!(
            (got[k] - want).abs() <= TOLERANCE,
            "{what}: digit {k}: {:.5}, recorded {want:.5}",
            got[k]
        );
    }
}

#[test]
fn every_class_gives_the_same_distributions_on_every_architecture() {
    let _turn = CLASS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = kernels::class();
    for name in ["llama3", "mistral", "qwen2", "qwen3", "gemma2"] {
        let path = arch_dir().join(format!("{name}.gguf"));
        let f: Value = serde_json::from_str(
            &std::fs::read_to_string(arch_dir().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let prompts = f["prompts"].as_array().unwrap();
        // Each prompt, then it extended by one and two of its greedy tokens.
        let mut seqs = vec![];
        for p in prompts {
            let base = ids(&p["ids"]);
            let greedy = ids(&p["greedy"]);
            seqs.push(base.clone());
            for n in 1..=2.min(greedy.len()) {
                seqs.push([&base[..], &greedy[..n]].concat());
            }
        }
        let mut runs = vec![];
        for class in classes() {
            assert_eq!(kernels::set_class(class), class);
            let (e, dists) = distributions(&path, Template::Raw, &seqs);
            for p in prompts {
                let at = seqs.iter().position(|s| *s == ids(&p["ids"])).unwrap();
                let digits: Vec<(usize, f64)> = p["digit_logprobs"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.as_f64().unwrap()))
                    .collect();
                let what = format!("{name}/{} with {class}", p["name"].as_str().unwrap());
                matches_record(&what, &e, &dists[at], p, &digits);
            }
            runs.push((class, e, dists));
        }
        same_across_classes(name, &runs);
    }
    kernels::set_class(before);
}

/// Gemma 3 270M as shipped (Q8_0 output head, the file's codes in the
/// layers): one persona's three items, each also one and two tokens longer.
#[test]
fn every_class_gives_the_same_distributions_on_gemma3_270m() {
    let Some(path) = common::model_path("cpu_classes") else {
        return;
    };
    let _turn = CLASS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = kernels::class();
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/engine_baseline.json")).unwrap();
    let cases = &fixture["cases"].as_array().unwrap()[..9];
    let seqs: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c["ids"])).collect();
    let template = Template::Completion {
        cue: Template::DEFAULT_CUE.to_string(),
    };
    let mut runs = vec![];
    for class in classes() {
        assert_eq!(kernels::set_class(class), class);
        let (e, dists) = distributions(&path, template.clone(), &seqs);
        for (i, (c, d)) in cases.iter().zip(&dists).enumerate() {
            let digits: Vec<(usize, f64)> = c["digit_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .enumerate()
                .collect();
            matches_record(&format!("gemma3 case {i} with {class}"), &e, d, c, &digits);
        }
        runs.push((class, e, dists));
    }
    same_across_classes("gemma3 270M", &runs);
    kernels::set_class(before);
}

/// Run by [`the_variable_forces_the_class`] in a child process: prints the
/// class in effect and what loading a fixture model gives.
#[test]
#[ignore = "a helper the other tests run in a child process"]
fn report_class_to_the_parent() {
    println!("CLASS={}", kernels::class());
    match Engine::load(&arch_dir().join("qwen3.gguf"), EngineOptions::default()) {
        Ok(_) => println!("LOAD=ok"),
        Err(e) => println!("LOAD=error: {e}"),
    }
}

fn child(value: &str) -> (String, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "report_class_to_the_parent",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(kernels::CPU_ENV, value)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.find(key).map(|at| &l[at + key.len()..]))
            .unwrap_or_else(|| panic!("{}={value}: no {key} in {text}", kernels::CPU_ENV))
            .to_string()
    };
    (line("CLASS="), line("LOAD="))
}

#[test]
fn the_variable_forces_the_class() {
    let cpu = kernels::detected();
    for class in CpuClass::ALL {
        let (got, load) = child(class.name());
        assert_eq!(got, class.min(cpu).name(), "MORALSWEEP_CPU={class}");
        assert_eq!(load, "ok");
    }
    let (got, load) = child("AVX2");
    assert_eq!(got, CpuClass::Avx2.min(cpu).name());
    assert_eq!(load, "ok");
    let (got, load) = child("sse9");
    assert_eq!(got, cpu.name(), "an unknown value keeps the CPU's class");
    assert!(
        load.starts_with("error")
            && load.contains("MORALSWEEP_CPU=\"sse9\"")
            && load.contains("avx512, avx2, portable"),
        "{load}"
    );
}
