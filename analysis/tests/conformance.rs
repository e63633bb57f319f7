//! Conformance with the papers: `analyze` on `reference/sampling` and
//! `reference/logprob` reproduces `reference/expected/` (METHOD.md; the
//! tolerances of issue 2: point estimates 1e-9 relative, combined standard
//! errors 10 %, persona/response components 25 %, self profiles and
//! variant deltas 1e-9, logprob curves 1e-9 / 10 %).

use std::collections::HashMap;
use std::path::Path;

use moralsweep_analysis::analyze::{analyze_dir, AnalyzeOptions, ModelsMap, Report};
use moralsweep_testsupport::reference::reference_dir;

use moralsweep_testsupport::csvrows::{header, num, read_csv, Row};

/// Checks `got` against `want` within `tol` relative (absolute when `want` is 0).
fn close(what: &str, got: f64, want: f64, tol: f64, failures: &mut Vec<String>) {
    let ok = if want == 0.0 {
        got.abs() <= 1e-12
    } else {
        ((got - want) / want).abs() <= tol
    };
    if !ok {
        failures.push(format!(
            "{what}: got {got}, expected {want} (relative error {:.3e}, tolerance {tol:e})",
            ((got - want) / want).abs()
        ));
    }
}

fn finish(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const POINT: f64 = 1e-9;
const COMBINED_SE: f64 = 0.10;
const COMPONENT_SE: f64 = 0.25;

/// Compares the papers' metric columns of one expected row with ours.
fn compare_metric_rows(what: &str, got: &Row, want: &Row, failures: &mut Vec<String>) {
    for col in ["uncertainty", "robustness", "susceptibility"] {
        close(
            &format!("{what} {col}"),
            num(got, col),
            num(want, col),
            POINT,
            failures,
        );
    }
    for col in [
        "uncertainty_uncertainty",
        "robustness_uncertainty",
        "susceptibility_uncertainty",
    ] {
        close(
            &format!("{what} {col}"),
            num(got, col),
            num(want, col),
            COMBINED_SE,
            failures,
        );
    }
    for col in [
        "uncertainty_persona_uncertainty",
        "uncertainty_response_uncertainty",
        "susceptibility_persona_uncertainty",
        "susceptibility_response_uncertainty",
    ] {
        close(
            &format!("{what} {col}"),
            num(got, col),
            num(want, col),
            COMPONENT_SE,
            failures,
        );
    }
    for col in [
        "temperature",
        "personas",
        "questions",
        "min_runs_per_cell",
        "median_runs_per_cell",
        "max_runs_per_cell",
        "family",
        "variant",
    ] {
        if got.get(col) != want.get(col) {
            failures.push(format!(
                "{what} {col}: got {:?}, expected {:?}",
                got.get(col),
                want.get(col)
            ));
        }
    }
}

fn sampling_report(reference: &Path, bootstrap: u32, rerun: u32) -> Report {
    let opts = AnalyzeOptions {
        bootstrap,
        rerun_bootstrap: rerun,
        models: ModelsMap::load(&reference.join("models.toml")).unwrap(),
        ..AnalyzeOptions::default()
    };
    analyze_dir(&reference.join("sampling"), &opts).unwrap()
}

/// Everything of `reference/expected/` from one analysis with the default
/// 2000/400 draws, written to files and read back as the papers' scripts
/// would read them.
#[test]
fn reproduces_the_papers_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let report = sampling_report(&reference, 2000, 400);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let out = tempfile::tempdir().unwrap();
    report.write(out.path()).unwrap();
    let expected = reference.join("expected");
    let mut failures = Vec::new();

    // Overall metrics: the papers' columns in the papers' order first.
    let want_header = header(&expected.join("metrics_overall.csv"));
    let got_path = out.path().join("persona_moral_metrics.csv");
    let got_header = header(&got_path);
    let papers_columns: Vec<&String> = want_header
        .iter()
        .filter(|c| *c != "family" && *c != "variant")
        .collect();
    assert_eq!(
        got_header[..papers_columns.len()]
            .iter()
            .collect::<Vec<_>>(),
        papers_columns,
        "persona_moral_metrics.csv must start with the papers' columns"
    );
    let got: HashMap<String, Row> = read_csv(&got_path)
        .into_iter()
        .map(|r| (r["model"].clone(), r))
        .collect();
    let want = read_csv(&expected.join("metrics_overall.csv"));
    assert_eq!(got.len(), want.len(), "one row per model");
    for w in &want {
        let model = &w["model"];
        let g = got
            .get(model)
            .unwrap_or_else(|| panic!("no row for {model}"));
        compare_metric_rows(model, g, w, &mut failures);
    }

    // Per foundation.
    let got_path = out.path().join("persona_moral_metrics_per_foundation.csv");
    assert_eq!(
        &header(&got_path)[..3],
        ["model", "temperature", "foundation"]
    );
    let got: HashMap<(String, String), Row> = read_csv(&got_path)
        .into_iter()
        .map(|r| ((r["model"].clone(), r["foundation"].clone()), r))
        .collect();
    let want = read_csv(&expected.join("metrics_per_foundation.csv"));
    assert_eq!(got.len(), want.len(), "one row per model and foundation");
    for w in &want {
        let key = (w["model"].clone(), w["foundation"].clone());
        let g = got
            .get(&key)
            .unwrap_or_else(|| panic!("no row for {key:?}"));
        compare_metric_rows(&format!("{} {}", key.0, key.1), g, w, &mut failures);
    }

    // Self profiles.
    let got_path = out.path().join("self_profiles.csv");
    let want_header = header(&expected.join("self_profiles.csv"));
    assert_eq!(header(&got_path)[..want_header.len()], want_header[..]);
    let got: HashMap<(String, String), Row> = read_csv(&got_path)
        .into_iter()
        .map(|r| ((r["self_file"].clone(), r["foundation"].clone()), r))
        .collect();
    let want = read_csv(&expected.join("self_profiles.csv"));
    assert_eq!(
        got.len(),
        want.len(),
        "one row per self file and foundation"
    );
    for w in &want {
        let key = (w["self_file"].clone(), w["foundation"].clone());
        let g = got
            .get(&key)
            .unwrap_or_else(|| panic!("no self profile row {key:?}"));
        for col in ["mean", "within_question_sd"] {
            close(
                &format!("self {key:?} {col}"),
                num(g, col),
                num(w, col),
                POINT,
                &mut failures,
            );
        }
        for col in ["model", "family", "variant", "questions"] {
            if g[col] != w[col] {
                failures.push(format!(
                    "self {key:?} {col}: got {}, expected {}",
                    g[col], w[col]
                ));
            }
        }
    }

    // Variant deltas.
    let got_path = out.path().join("variant_deltas.csv");
    let want_header = header(&expected.join("variant_deltas.csv"));
    assert_eq!(header(&got_path)[..want_header.len()], want_header[..]);
    let got = read_csv(&got_path);
    let want = read_csv(&expected.join("variant_deltas.csv"));
    assert_eq!(
        got.len(),
        want.len(),
        "one delta row per family and variant"
    );
    for (g, w) in got.iter().zip(&want) {
        let what = format!("delta {} {}", w["family"], w["variant"]);
        assert_eq!(
            (&g["family"], &g["variant"]),
            (&w["family"], &w["variant"]),
            "row order"
        );
        for col in ["S", "R", "sigma_bar", "dS_pct", "dR_pct", "dsigma_pct"] {
            close(
                &format!("{what} {col}"),
                num(g, col),
                num(w, col),
                POINT,
                &mut failures,
            );
        }
        for col in ["S_se", "R_se"] {
            close(
                &format!("{what} {col}"),
                num(g, col),
                num(w, col),
                COMBINED_SE,
                &mut failures,
            );
        }
    }
    // The excess is the difference of the deltas.
    let excess = read_csv(&out.path().join("variant_excess.csv"));
    assert_eq!(excess.len(), 4);
    for e in &excess {
        let d = |v: &str, col: &str| {
            got.iter()
                .find(|r| r["family"] == e["family"] && r["variant"] == v)
                .map(|r| num(r, col))
                .unwrap()
        };
        close(
            &format!("excess {}", e["family"]),
            num(e, "excess_dS_pp"),
            d("insecure", "dS_pct") - d("secure", "dS_pct"),
            1e-12,
            &mut failures,
        );
    }
    finish(failures);
}

/// The synthetic logprob collection gives the published R(T) and S(T).
#[test]
fn reproduces_the_logprob_temperature_curve() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let want_path = reference.join("logprob/expected_temperature_metrics.csv");
    let want = read_csv(&want_path);
    let temperatures: Vec<f64> = want.iter().map(|r| num(r, "temperature")).collect();
    let opts = AnalyzeOptions {
        temperatures,
        ..AnalyzeOptions::default()
    };
    let report = analyze_dir(&reference.join("logprob"), &opts).unwrap();
    let out = tempfile::tempdir().unwrap();
    report.write(out.path()).unwrap();
    let got_path = out.path().join("temperature_curve_metrics.csv");
    let want_header = header(&want_path);
    assert_eq!(header(&got_path)[..want_header.len()], want_header[..]);
    let got = read_csv(&got_path);
    assert_eq!(got.len(), want.len());
    let mut failures = Vec::new();
    for (g, w) in got.iter().zip(&want) {
        let what = format!("T={}", w["temperature"]);
        for col in ["model", "temperature", "personas", "questions"] {
            if g[col] != w[col] {
                failures.push(format!("{what} {col}: got {}, expected {}", g[col], w[col]));
            }
        }
        for col in ["uncertainty", "robustness", "susceptibility"] {
            close(
                &format!("{what} {col}"),
                num(g, col),
                num(w, col),
                POINT,
                &mut failures,
            );
        }
        for col in [
            "uncertainty_uncertainty",
            "robustness_uncertainty",
            "susceptibility_uncertainty",
        ] {
            close(
                &format!("{what} {col}"),
                num(g, col),
                num(w, col),
                COMBINED_SE,
                &mut failures,
            );
        }
    }
    finish(failures);
}
