//! Paired comparisons and the planner through the binary, on the papers'
//! reference ratings: `compare` writes comparisons.csv with the issue's
//! columns, the same for the same seed; `analyze` writes one for every
//! variant with a base and marks what holds; `report` draws it; `plan`
//! prints its grid as JSON and recommends a design; bad input is an error
//! saying what would be right.

use std::path::Path;
use std::process::{Command, Output};

use moralsweep_testsupport::csvrows::{header, read_csv};
use moralsweep_testsupport::reference::reference_dir;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moralsweep"))
        .args(args)
        .output()
        .expect("run moralsweep")
}

fn ok(o: &Output) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const COLUMNS: [&str; 14] = [
    "variant",
    "base",
    "metric",
    "group",
    "estimate",
    "relative_change",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "p_bh",
    "personas_paired",
    "resamples",
    "seed",
];

#[test]
fn compare_two_files_is_repeatable() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let a = reference.join("sampling/base/gpt-4o_temp01.csv");
    let b = reference.join("sampling/secure-code/gpt-4o-secure_temp01.csv");
    let out1 = tempfile::tempdir().unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        vec![
            "compare".to_string(),
            s(&a).to_string(),
            s(&b).to_string(),
            "--out".into(),
            s(out).to_string(),
            "--resamples".into(),
            "400".into(),
            "--seed".into(),
            "5".into(),
        ]
    };
    let a1: Vec<String> = args(out1.path());
    let stdout = ok(&run(&a1.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(
        stdout.contains("100 personas paired on 30 items"),
        "{stdout}"
    );
    assert!(
        stdout.contains("p (Holm)") && stdout.contains("holds"),
        "{stdout}"
    );
    let a2: Vec<String> = args(out2.path());
    ok(&run(&a2.iter().map(String::as_str).collect::<Vec<_>>()));
    let f1 = out1.path().join("comparisons.csv");
    let f2 = out2.path().join("comparisons.csv");
    assert_eq!(header(&f1)[..14], COLUMNS.map(String::from));
    assert_eq!(
        std::fs::read(&f1).unwrap(),
        std::fs::read(&f2).unwrap(),
        "same seed, same file"
    );
    let rows = read_csv(&f1);
    // 3 metrics x (overall + 5 foundations).
    assert_eq!(rows.len(), 18);
    for r in &rows {
        assert_eq!(r["variant"], "gpt-4o-secure");
        assert_eq!(r["base"], "gpt-4o");
        assert_eq!(r["personas_paired"], "100");
        assert_eq!((r["resamples"].as_str(), r["seed"].as_str()), ("400", "5"));
        let p: f64 = r["p_value"].parse().unwrap();
        let holm: f64 = r["p_holm"].parse().unwrap();
        let bh: f64 = r["p_bh"].parse().unwrap();
        assert!((0.0..=1.0).contains(&p) && p <= bh && bh <= holm, "{r:?}");
        let (lo, hi): (f64, f64) = (r["ci_low"].parse().unwrap(), r["ci_high"].parse().unwrap());
        let est: f64 = r["estimate"].parse().unwrap();
        assert!(lo <= est && est <= hi, "{r:?}");
    }
    let groups: Vec<&str> = rows.iter().map(|r| r["group"].as_str()).collect();
    assert!(groups.contains(&"overall") && groups.contains(&"Purity/Sanctity"));
}

#[test]
fn analyze_compares_every_variant_and_the_report_draws_it() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let stdout = ok(&run(&[
        "analyze",
        s(&reference.join("sampling")),
        "--out",
        s(out.path()),
        "--models",
        s(&reference.join("models.toml")),
        "--bootstrap",
        "100",
        "--rerun-bootstrap",
        "20",
        "--comparison-resamples",
        "500",
    ]));
    let path = out.path().join("comparisons.csv");
    let rows = read_csv(&path);
    // 8 variants (secure and insecure of 4 families) x 18.
    assert_eq!(rows.len(), 8 * 18, "{stdout}");
    let insecure_s = rows
        .iter()
        .find(|r| {
            r["variant"] == "gpt-4o-misaligned" && r["metric"] == "S" && r["group"] == "overall"
        })
        .expect("gpt-4o-misaligned S overall");
    assert_eq!(insecure_s["base"], "gpt-4o");
    assert!(insecure_s["p_holm"].parse::<f64>().unwrap() < 0.05);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("gpt-4o-misaligned") && l.contains(" S "))
        .unwrap_or_else(|| panic!("no comparison line:\n{stdout}"));
    assert!(line.trim_end().ends_with('*'), "{line}");
    assert!(stdout.contains("holds after Holm's adjustment"), "{stdout}");

    let html = out.path().join("report.html");
    ok(&run(&["report", s(out.path()), "--out", s(&html)]));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("paired-changes"),
        "the report lacks the comparison figure"
    );
    assert!(page.contains("data-holds=\"true\""));
}

#[test]
fn plan_recommends_a_design_and_prints_json() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let pilot = reference.join("sampling/base");
    let o = run(&[
        "plan",
        "--pilot",
        s(&pilot),
        "--model",
        "gpt-4o",
        "--detect",
        "S=+20%",
        "--detect",
        "R=-30%",
        "--catalog",
        "openai/gpt-4o",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).expect("JSON");
    let grid = v.as_array().expect("a JSON list");
    assert_eq!(grid.len(), 7 * 6);
    for row in grid {
        for key in [
            "personas",
            "repetitions",
            "se_S",
            "se_R",
            "power",
            "requests",
            "cost_usd",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
    let at = |n: u64, k: u64| {
        grid.iter()
            .find(|r| r["personas"] == n && r["repetitions"] == k)
            .unwrap()
    };
    // More personas, smaller standard error and more power.
    assert!(at(200, 5)["se_S"].as_f64() < at(50, 5)["se_S"].as_f64());
    assert!(at(200, 5)["power"].as_f64() >= at(50, 5)["power"].as_f64());
    let rec: Vec<&serde_json::Value> = grid.iter().filter(|r| r["recommended"] == true).collect();
    assert_eq!(rec.len(), 1);
    assert!(rec[0]["power"].as_f64().unwrap() >= 0.8);
    // The cheapest design reaching the power: nothing cheaper reaches it.
    let cost = rec[0]["cost_usd"].as_f64().unwrap();
    assert!(grid
        .iter()
        .filter(|r| r["power"].as_f64().unwrap() >= 0.8)
        .all(|r| r["cost_usd"].as_f64().unwrap() >= cost));

    let text = ok(&run(&["plan", "--pilot", s(&pilot), "--detect", "S=+20%"]));
    assert!(text.contains("recommended:"), "{text}");

    let bad = run(&["plan", "--pilot", s(&pilot), "--detect", "S=twenty"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--detect") && err.contains("+20%"), "{err}");
    let bad = run(&[
        "plan",
        "--pilot",
        s(&pilot),
        "--model",
        "nope",
        "--detect",
        "S=+20%",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("gpt-4o"), "{err}");
}

#[test]
fn compare_refuses_a_self_file() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let o = run(&[
        "compare",
        s(&reference.join("sampling/base/gpt-4o_temp01.csv")),
        s(&reference.join("sampling/base/gpt-4o_temp01_self.csv")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gpt-4o_temp01_self.csv") && err.contains("not a persona sampling file"),
        "{err}"
    );
}
