//! Fuzzing of the metric files `moralsweep report` reads: valid files
//! mutated the way real files go wrong (fields replaced by huge, tiny,
//! negative or non-finite numbers, quotes, non-UTF-8 bytes; lines dropped,
//! cut or repeated) and arbitrary bytes, as `metrics_overall.csv` and as the
//! per-foundation file. The properties: no input panics or hangs (the whole
//! page, figures included, is rendered under a time guard), and every input
//! gives a page or an error naming the file.
//!
//! 256 cases per target (set `PROPTEST_CASES` for more); each prints its
//! case count and its slowest case.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const GUARD: Duration = Duration::from_secs(300);

const OVERALL: &str = "model,temperature,uncertainty,uncertainty_uncertainty,robustness,robustness_uncertainty,susceptibility,susceptibility_uncertainty,uncertainty_persona_uncertainty,uncertainty_response_uncertainty,susceptibility_persona_uncertainty,susceptibility_response_uncertainty,personas,questions,min_runs_per_cell,median_runs_per_cell,max_runs_per_cell,family,variant
a,0.1,0.24,0.0096,4.08,0.16,0.79,0.033,0.0094,0.0021,0.033,0.0027,100,30,10,10,10,A,base
b,0.1,0.069,0.0039,14.48,0.83,0.82,0.036,0.0038,0.00096,0.036,0.00098,100,30,9,10,10,A,insecure
";

const PER_FOUNDATION: &str = "model,temperature,foundation,uncertainty,uncertainty_uncertainty,robustness,robustness_uncertainty,susceptibility,susceptibility_uncertainty,uncertainty_persona_uncertainty,uncertainty_response_uncertainty,susceptibility_persona_uncertainty,susceptibility_response_uncertainty,personas,questions,min_runs_per_cell,median_runs_per_cell,max_runs_per_cell,family,variant
a,0.1,Harm/Care,0.32,0.017,3.11,0.17,0.93,0.047,0.016,0.0058,0.047,0.0050,100,6,10,10,10,A,base
a,0.1,Fairness/Reciprocity,0.30,0.015,3.5,0.12,0.90,0.040,0.015,0.0050,0.040,0.0040,100,6,10,10,10,A,base
b,0.1,Harm/Care,0.12,0.011,9.0,0.5,0.8,0.04,0.01,0.002,0.03,0.002,100,6,10,10,10,A,insecure
";

/// Values real files get wrong.
const VALUES: &[&str] = &[
    "9e307",
    "-9e307",
    "1.7976931348623157e308",
    "1e-320",
    "0",
    "-1",
    "NaN",
    "inf",
    "-inf",
    "",
    "\"",
    "x",
    "1e999",
    "\u{fffd}",
    "\"a,b\"",
    "18446744073709551616",
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A valid file mutated: some fields replaced, some lines dropped or
/// repeated, maybe cut short; or arbitrary bytes.
fn input(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        proptest::collection::vec((any::<prop::sample::Index>(), 0..VALUES.len()), 0..8),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..2),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..2),
        proptest::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(move |(fields, drop, repeat, cut)| {
            let mut lines: Vec<Vec<String>> = base
                .lines()
                .map(|l| l.split(',').map(str::to_string).collect())
                .collect();
            for (at, v) in fields {
                let row = 1 + at.index(lines.len() - 1);
                let col = at.index(lines[row].len());
                lines[row][col] = VALUES[v].to_string();
            }
            for at in repeat {
                let l = lines[at.index(lines.len())].clone();
                lines.push(l);
            }
            for at in drop {
                if lines.len() > 1 {
                    lines.remove(at.index(lines.len()));
                }
            }
            let mut text: Vec<u8> = lines
                .iter()
                .map(|l| l.join(","))
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes();
            if let Some(c) = cut {
                text.truncate(c.index(text.len() + 1));
            }
            text
        });
    prop_oneof![4 => mutated, 1 => proptest::collection::vec(any::<u8>(), 0..400)]
}

/// Runs `target` on `cases()` inputs under the time guard.
fn fuzz(name: &'static str, base: &'static str, file: &'static str) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        });
        let slowest = std::cell::Cell::new(Duration::ZERO);
        let n = std::cell::Cell::new(0u32);
        let pages = std::cell::Cell::new(0u32);
        let r = runner.run(&input(base), |bytes| {
            let t0 = Instant::now();
            n.set(n.get() + 1);
            if check(dir.path(), file, &bytes)? {
                pages.set(pages.get() + 1);
            }
            slowest.set(slowest.get().max(t0.elapsed()));
            Ok(())
        });
        let _ = tx.send((
            r.map_err(|e| e.to_string()),
            n.get(),
            pages.get(),
            slowest.get(),
        ));
    });
    match rx.recv_timeout(GUARD) {
        Ok((Ok(()), n, pages, slowest)) => println!(
            "fuzz {name}: {n} cases ({pages} rendered, the others refused naming the file), slowest {:.3} s",
            slowest.as_secs_f64()
        ),
        Ok((Err(e), _, _, _)) => panic!("fuzz {name}: {e}"),
        Err(_) => panic!("fuzz {name}: no end after {} s (a hang)", GUARD.as_secs()),
    }
}

/// `Ok(true)` when a page was rendered, `Ok(false)` when refused by name.
fn check(dir: &Path, file: &str, bytes: &[u8]) -> Result<bool, TestCaseError> {
    let _ = std::fs::remove_dir_all(dir.join("m"));
    std::fs::create_dir_all(dir.join("m")).unwrap();
    if file != "metrics_overall.csv" {
        std::fs::write(dir.join("m/metrics_overall.csv"), OVERALL).unwrap();
    }
    std::fs::write(dir.join("m").join(file), bytes).unwrap();
    match moralsweep_report::render_html(&dir.join("m"), None) {
        Ok(page) => {
            prop_assert!(page.contains("</html>"));
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.contains(file) || matches!(e, moralsweep_report::ReportError::NoMetrics(_)),
                "the error names no file: {msg}"
            );
            Ok(false)
        }
    }
}

#[test]
fn fuzz_overall_metrics() {
    fuzz("metrics_overall.csv", OVERALL, "metrics_overall.csv");
}

#[test]
fn fuzz_per_foundation_metrics() {
    fuzz(
        "metrics_per_foundation.csv",
        PER_FOUNDATION,
        "metrics_per_foundation.csv",
    );
}
