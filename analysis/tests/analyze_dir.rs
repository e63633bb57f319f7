//! `analyze_dir` on small hand-made directories: the persona filter with
//! `-1` ratings, repeated slots, the multi-temperature alignment, infinite R,
//! self profiles, deltas, duplicates, and independence from the thread count.

use std::fmt::Write as _;
use std::path::Path;

use moralsweep_analysis::analyze::{
    analyze_dir, AnalyzeError, AnalyzeOptions, ModelsMap, RepeatedSlots,
};

const HEADER: &str = "persona_id,question_id,run_index,rating,failures,response,collected_at\n";

/// A sampling file where `rating(p, q, run)` gives each rating (`None`: no row).
fn write_sampling(
    path: &Path,
    personas: u32,
    runs: u32,
    rating: impl Fn(u32, u8, u32) -> Option<i8>,
) {
    let mut text = String::from(HEADER);
    for p in 0..personas {
        for q in 1..=30u8 {
            for r in 1..=runs {
                if let Some(v) = rating(p, q, r) {
                    let _ = writeln!(text, "{p},{q},{r},{v},0,\"{v}\nwhy, \"\"because\"\"\",2025-01-01T00:00:00.000000");
                }
            }
        }
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn opts() -> AnalyzeOptions {
    AnalyzeOptions {
        bootstrap: 100,
        rerun_bootstrap: 30,
        ..AnalyzeOptions::default()
    }
}

fn varied(p: u32, q: u8, r: u32) -> i8 {
    ((p * 7 + q as u32 * 3 + r * (p % 3)) % 6) as i8
}

#[test]
fn filter_repeats_alignment_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // T=0.1: persona 3 has only -1 for item 5 (dropped); persona 4 has item 9 missing.
    write_sampling(&d.join("a/m_temp01.csv"), 60, 4, |p, q, r| match (p, q) {
        (3, 5) => Some(-1),
        (4, 9) => None,
        _ => Some(varied(p, q, r)),
    });
    // T=1.0: persona 10 dropped; persona 0 answers item 1 twelve times (repeats).
    write_sampling(&d.join("b/m_temp10.csv"), 60, 4, |p, q, r| match (p, q) {
        (10, _) if q == 2 => Some(-1),
        _ => Some(varied(p, q, r)),
    });
    {
        let path = d.join("b/m_temp10.csv");
        let mut text = std::fs::read_to_string(&path).unwrap();
        for _ in 0..8 {
            text.push_str("0,1,1,5,1,5,t\n");
        }
        std::fs::write(&path, text).unwrap();
    }
    // T=0.7: only 20 personas, so it does not constrain the alignment; persona 15 dropped there.
    write_sampling(&d.join("m_temp07.csv"), 20, 3, |p, q, r| {
        if p == 15 && q == 30 {
            Some(-1)
        } else {
            Some(varied(p, q, r))
        }
    });
    // The repeats of persona 0 count as the papers' pipeline counts retried
    // slots (by default they are an error, see `repeated_slots_are_refused`).
    let opts = || AnalyzeOptions {
        repeated_slots: RepeatedSlots::Count,
        ..opts()
    };
    let report = analyze_dir(d, &opts()).unwrap();
    let temps: Vec<f64> = report.overall.iter().map(|r| r.temperature).collect();
    // T=0.7 keeps 19 personas, but the shared set (57 personas) is not complete there.
    assert_eq!(temps, [0.1, 1.0], "{:?}", report.warnings);
    assert!(
        report.warnings.iter().any(|w| w.contains("m_temp07.csv")),
        "{:?}",
        report.warnings
    );
    for row in &report.overall {
        assert_eq!(row.metrics.personas, 57);
        assert!(!row.retained_personas.contains(&3));
        assert!(!row.retained_personas.contains(&4));
        assert!(!row.retained_personas.contains(&10));
    }
    let t10 = &report.overall[1];
    assert_eq!(
        (
            t10.metrics.min_runs,
            t10.metrics.median_runs,
            t10.metrics.max_runs
        ),
        (4, 4, 12)
    );
    assert_eq!(report.per_foundation.len(), 10);

    // The thread count changes nothing.
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    analyze_dir(
        d,
        &AnalyzeOptions {
            threads: 1,
            ..opts()
        },
    )
    .unwrap()
    .write(one.path())
    .unwrap();
    analyze_dir(
        d,
        &AnalyzeOptions {
            threads: 2,
            ..opts()
        },
    )
    .unwrap()
    .write(two.path())
    .unwrap();
    for f in [
        "persona_moral_metrics.csv",
        "persona_moral_metrics_per_foundation.csv",
    ] {
        assert_eq!(
            std::fs::read(one.path().join(f)).unwrap(),
            std::fs::read(two.path().join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn constant_answers_give_infinite_r_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    write_sampling(&dir.path().join("flat_temp01.csv"), 5, 3, |p, q, _| {
        Some(((p + q as u32) % 6) as i8)
    });
    let report = analyze_dir(dir.path(), &opts()).unwrap();
    let m = &report.overall[0].metrics;
    assert_eq!(m.sigma_bar, 0.0);
    assert!(m.r().is_infinite());
    assert!(
        report.warnings.iter().any(|w| w.contains("infinite")),
        "{:?}",
        report.warnings
    );
    let out = tempfile::tempdir().unwrap();
    report.write(out.path()).unwrap();
    let text = std::fs::read_to_string(out.path().join("persona_moral_metrics.csv")).unwrap();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    assert_eq!((row[2], row[4], row[5]), ("0.0", "inf", "0.0"));
}

#[test]
fn self_profiles_and_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (key, shift) in [("fam-base", 0u32), ("fam-ins", 2), ("fam-sec", 1)] {
        write_sampling(
            &d.join(format!("{key}_temp01.csv")),
            8,
            3,
            move |p, q, r| Some(((p * 5 + q as u32 + r * shift) % 6) as i8),
        );
    }
    // A self file: item 1 only -1 (left out of Harm/Care), item 2 two ratings.
    let mut text = String::from("question_id,run_index,rating,failures,response,collected_at\n");
    text.push_str("1,1,-1,10,none,t\n2,1,4,0,4,t\n2,2,5,0,5,t\n7,1,3,0,3,t\n");
    std::fs::write(d.join("fam-ins-self_self.csv"), text).unwrap();
    let models = ModelsMap::parse(
        r#"
[models."fam-base"]
family = "Fam"
variant = "base"
[models."fam-ins"]
family = "Fam"
variant = "insecure"
[models."fam-sec"]
family = "Fam"
variant = "secure"
[models."fam-ins-self"]
family = "Fam"
variant = "insecure"
"#,
        Path::new("models.toml"),
    )
    .unwrap();
    let report = analyze_dir(d, &AnalyzeOptions { models, ..opts() }).unwrap();
    let profile: Vec<(&str, f64, f64, usize)> = report
        .self_profiles
        .iter()
        .map(|r| {
            (
                r.profile.foundation.name(),
                r.profile.mean,
                r.profile.within_question_sd,
                r.profile.questions,
            )
        })
        .collect();
    let sd = (0.5f64).sqrt();
    assert_eq!(
        profile,
        [("Fairness/Reciprocity", (4.5 + 3.0) / 2.0, sd / 2.0, 2)]
    );
    assert_eq!(report.self_profiles[0].variant, "insecure");
    assert_eq!(report.deltas.len(), 3);
    let base = &report.deltas[0];
    assert_eq!((base.variant.as_str(), base.ds_pct), ("base", (0.0, 0.0)));
    let ins = &report.deltas[1];
    assert_eq!(ins.variant, "insecure");
    assert!((ins.ds_pct.0 - 100.0 * (ins.s - base.s) / base.s).abs() < 1e-9);
    assert!(ins.ds_pct.1 > 0.0);
    assert_eq!(report.excess.len(), 1);
    let sec = &report.deltas[2];
    assert!((report.excess[0].ds_pp.0 - (ins.ds_pct.0 - sec.ds_pct.0)).abs() < 1e-9);
}

#[test]
fn two_files_with_one_identity_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_sampling(&dir.path().join("x/m_temp01.csv"), 3, 2, |p, q, r| {
        Some(varied(p, q, r))
    });
    write_sampling(&dir.path().join("y/m_temp01.csv"), 3, 2, |p, q, r| {
        Some(varied(p, q, r))
    });
    match analyze_dir(dir.path(), &opts()) {
        Err(AnalyzeError::Duplicate { key, .. }) => assert_eq!(key, "m"),
        other => panic!("{other:?}"),
    }
    let e = analyze_dir(&dir.path().join("nowhere"), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere"), "{e}");
}
