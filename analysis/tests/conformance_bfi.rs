//! Conformance with the second paper's BFI-44 study: `analyze` on
//! `reference/bfi/sampling` recognises the instrument from the files (item
//! ids 31-44, ratings 1-5) and reproduces `reference/bfi/expected/` overall
//! and per domain (point estimates 1e-9 relative, combined standard errors
//! 10 %, persona/response components 25 %, as for the MFQ-30).

use std::path::Path;

use moralsweep_analysis::analyze::{analyze_dir, AnalyzeOptions};
use moralsweep_common::Instrument;
use moralsweep_testsupport::reference::reference_dir;

use moralsweep_testsupport::csvrows::{num, read_csv, Row};

fn close(what: &str, got: f64, want: f64, tol: f64, failures: &mut Vec<String>) {
    if ((got - want) / want).abs() > tol {
        failures.push(format!(
            "{what}: got {got}, expected {want} (relative error {:.3e}, tolerance {tol:e})",
            ((got - want) / want).abs()
        ));
    }
}

fn compare(what: &str, got: &Row, want: &Row, failures: &mut Vec<String>) {
    for col in ["uncertainty", "robustness", "susceptibility"] {
        close(
            &format!("{what} {col}"),
            num(got, col),
            num(want, col),
            1e-9,
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
            0.10,
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
            0.25,
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
        "retained_persona_ids_json",
        "retained_question_ids_json",
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

fn check(opts: &AnalyzeOptions, reference: &Path) {
    let report = analyze_dir(&reference.join("bfi/sampling"), opts).unwrap();
    assert_eq!(report.instrument.as_ref().unwrap().name, "bfi-44");
    // The S band (0.66-0.83) is the MFQ-30's; a BFI table shows none.
    let table = report.summary_table();
    assert!(!report.s_band_applies());
    assert!(table.contains("gpt-4o"), "{table}");
    assert!(
        !["S band", "inside", "below", "above"]
            .iter()
            .any(|w| table.contains(w)),
        "{table}"
    );
    let out = tempfile::tempdir().unwrap();
    report.write(out.path()).unwrap();
    // The per-group file follows the instrument: domains, not foundations.
    assert!(!out
        .path()
        .join("persona_moral_metrics_per_foundation.csv")
        .exists());
    let expected = reference.join("bfi/expected");
    let mut failures = Vec::new();

    let got = read_csv(&out.path().join("persona_moral_metrics.csv"));
    let want = read_csv(&expected.join("metrics_overall.csv"));
    assert_eq!(got.len(), want.len());
    for w in &want {
        let g = got
            .iter()
            .find(|g| g["model"] == w["model"])
            .unwrap_or_else(|| panic!("no row for {}", w["model"]));
        compare(&w["model"], g, w, &mut failures);
    }

    let got = read_csv(&out.path().join("persona_moral_metrics_per_domain.csv"));
    let want = read_csv(&expected.join("metrics_per_domain.csv"));
    assert_eq!(got.len(), want.len());
    assert_eq!(want.len(), 10);
    for w in &want {
        let g = got
            .iter()
            .find(|g| g["model"] == w["model"] && g["domain"] == w["domain"])
            .unwrap_or_else(|| panic!("no row for {} {}", w["model"], w["domain"]));
        compare(
            &format!("{} {}", w["model"], w["domain"]),
            g,
            w,
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn analyze_recognises_bfi_and_reproduces_the_published_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    check(&AnalyzeOptions::default(), &reference);
}

#[test]
fn analyze_with_the_instrument_named_gives_the_same_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let opts = AnalyzeOptions {
        instrument: Some(Instrument::resolve("bfi-44").unwrap()),
        ..AnalyzeOptions::default()
    };
    check(&opts, &reference);
}

#[test]
fn bfi_files_read_as_mfq_name_the_line_and_the_instrument() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let opts = AnalyzeOptions {
        instrument: Some(Instrument::mfq30()),
        ..AnalyzeOptions::default()
    };
    let e = format!(
        "{:#}",
        analyze_dir(&reference.join("bfi/sampling"), &opts).unwrap_err()
    );
    assert!(
        e.contains("gpt-4o") && e.contains("line ") && e.contains("MFQ-30 item id 1-30"),
        "{e}"
    );
}

#[test]
fn rows_no_builtin_holds_are_an_error_listing_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m_temp01.csv"),
        "persona_id,question_id,run_index,rating,failures,response,collected_at\n0,45,1,3,0,3,x\n1,45,1,2,0,2,x\n",
    )
    .unwrap();
    let e = analyze_dir(dir.path(), &AnalyzeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("m_temp01.csv")
            && e.contains("mfq-30")
            && e.contains("bfi-44")
            && e.contains("--instrument"),
        "{e}"
    );
}
