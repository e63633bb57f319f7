//! The report follows the instrument: from the metric files `analyze`
//! writes for the BFI-44 reference ratings, the report names the BFI-44,
//! titles its per-group table and figure by domain and lists the five
//! domains.

use moralsweep_analysis::analyze::{analyze_dir, AnalyzeOptions};
use moralsweep_testsupport::reference::reference_dir;

#[test]
fn a_bfi_report_names_the_instrument_and_its_domains() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let opts = AnalyzeOptions {
        bootstrap: 50,
        rerun_bootstrap: 20,
        ..AnalyzeOptions::default()
    };
    let report = analyze_dir(&reference.join("bfi/sampling"), &opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    report.write(tmp.path()).unwrap();
    let html = moralsweep_report::render_html(tmp.path(), None).unwrap();
    assert!(
        html.contains("under BFI-44 persona role-play"),
        "lead sentence"
    );
    assert!(!html.contains("MFQ-30"));
    // The S band is the MFQ-30's: no BFI row is placed in it or outside it,
    // and no figure shades it.
    assert!(!html.contains("class=\"band-in\"") && !html.contains("class=\"band-out\""));
    assert!(!html.contains("shaded band"));
    assert!(html.contains("<h3>Per domain</h3>"));
    assert!(html.contains("S and R per domain"));
    for d in [
        "Extraversion",
        "Agreeableness",
        "Conscientiousness",
        "Neuroticism",
        "Openness",
    ] {
        assert!(html.contains(d), "{d} missing from the report");
    }
}

/// A model whose every rating is the same is flagged in the report's
/// distribution table and in a warning above it.
#[test]
fn the_report_flags_a_collapsed_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for (key, rating) in [("steady", None), ("stuck", Some(5))] {
        let mut s = String::from(
            "persona_id,question_id,run_index,rating,failures,response,collected_at\n",
        );
        for p in 0..3u32 {
            for q in 1..=30u32 {
                for run in 1..=2u32 {
                    let r = rating.unwrap_or((p + q + run) % 6);
                    s.push_str(&format!("{p},{q},{run},{r},0,{r},2026-01-01T00:00:00\n"));
                }
            }
        }
        std::fs::write(data.join(format!("{key}_temp01.csv")), s).unwrap();
    }
    let opts = AnalyzeOptions {
        bootstrap: 20,
        rerun_bootstrap: 20,
        ..AnalyzeOptions::default()
    };
    let report = analyze_dir(&data, &opts).unwrap();
    report.write(&dir.path().join("metrics")).unwrap();
    let html = moralsweep_report::render_html(dir.path(), None).unwrap();
    assert!(html.contains("<h3>Rating distributions</h3>"));
    assert!(
        html.contains("Collapsed onto one rating: stuck."),
        "warning"
    );
    assert!(html.contains("COLLAPSED"));
    assert!(html.contains("under MFQ-30 persona role-play"));
}
