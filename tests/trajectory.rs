//! Checkpoint trajectories: three checkpoint variants of one family, each
//! with a `step` in the models file, are written to `trajectories.csv` in
//! step order with their S, R and sigma-bar and standard errors (overall and
//! per foundation), and drawn
//! in the report; the spec's `step` reaches the same table.

use std::path::Path;

use moralsweep_analysis::analyze::{analyze_dir, AnalyzeOptions, ModelsMap};
use moralsweep_common::SweepSpec;
use moralsweep_testsupport::csvrows::{header, read_csv};

/// A small MFQ-30 file: 4 personas x 30 items x 3 runs; `spread` sets how
/// far personas differ, `noise` how much runs of one cell differ.
fn write_file(path: &Path, spread: u32, noise: u32) {
    let mut s =
        String::from("persona_id,question_id,run_index,rating,failures,response,collected_at\n");
    for p in 0..4u32 {
        for q in 1..=30u32 {
            for run in 1..=3u32 {
                let r = (1 + (p * spread + q) % 3 + (run * noise) % 2).min(5);
                s.push_str(&format!("{p},{q},{run},{r},0,{r},2026-01-01T00:00:00\n"));
            }
        }
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn three_checkpoints_are_written_in_step_order_and_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Listed out of step order on purpose.
    write_file(&data.join("ckpt-c_temp01.csv"), 2, 1);
    write_file(&data.join("ckpt-a_temp01.csv"), 1, 0);
    write_file(&data.join("ckpt-b_temp01.csv"), 1, 1);
    write_file(&data.join("base_temp01.csv"), 0, 0);
    let models = ModelsMap::parse(
        r#"
[models.base]
family = "f"
variant = "base"
[models.ckpt-c]
family = "f"
variant = "insecure"
step = 3000
[models.ckpt-a]
family = "f"
variant = "insecure"
step = 1000
[models.ckpt-b]
family = "f"
variant = "insecure"
step = 2000
"#,
        Path::new("models.toml"),
    )
    .unwrap();
    let opts = AnalyzeOptions {
        models,
        bootstrap: 40,
        rerun_bootstrap: 20,
        ..AnalyzeOptions::default()
    };
    let report = analyze_dir(&data, &opts).unwrap();
    assert_eq!(report.trajectories.len(), 3);
    let metrics = dir.path().join("metrics");
    report.write(&metrics).unwrap();

    let rows = read_csv(&metrics.join("trajectories.csv"));
    let steps: Vec<&str> = rows.iter().map(|r| r["step"].as_str()).collect();
    assert_eq!(steps, ["1000", "2000", "3000"]);
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str()).collect();
    assert_eq!(models, ["ckpt-a", "ckpt-b", "ckpt-c"]);
    // Each row carries the model's own overall metrics and their errors.
    let overall = |key: &str| report.overall.iter().find(|m| m.model == key).unwrap();
    for row in &rows {
        let m = overall(&row["model"]).metrics;
        let num = |c: &str| row[c].parse::<f64>().unwrap();
        assert_eq!(row["family"], "f");
        assert!((num("susceptibility") - m.s).abs() <= 1e-12 * m.s.abs().max(1.0));
        assert!((num("susceptibility_uncertainty") - m.s_se()).abs() <= 1e-12);
        assert!((num("uncertainty") - m.sigma_bar).abs() <= 1e-12);
        assert!((num("uncertainty_uncertainty") - m.sigma_bar_se()).abs() <= 1e-12);
        if m.sigma_bar > 0.0 {
            assert!((num("robustness") - m.r()).abs() <= 1e-9 * m.r());
        }
    }
    // The checkpoints differ, so the trajectory is not flat.
    assert_ne!(rows[0]["susceptibility"], rows[2]["susceptibility"]);

    // Per foundation: each foundation's checkpoints in step order, each row
    // the model's own metrics in that foundation.
    let path = metrics.join("trajectories_per_foundation.csv");
    assert_eq!(header(&path)[2], "foundation");
    let rows = read_csv(&path);
    let foundations: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["foundation"].as_str()).collect();
    assert_eq!(foundations.len(), 5, "{foundations:?}");
    assert_eq!(rows.len(), 3 * 5);
    for chunk in rows.chunks(3) {
        let steps: Vec<&str> = chunk.iter().map(|r| r["step"].as_str()).collect();
        assert_eq!(steps, ["1000", "2000", "3000"]);
        assert!(chunk
            .iter()
            .all(|r| r["foundation"] == chunk[0]["foundation"]));
    }
    for row in &rows {
        let m = report
            .per_foundation
            .iter()
            .find(|m| {
                m.model == row["model"]
                    && m.foundation.as_ref().map(|g| g.name()) == Some(row["foundation"].as_str())
            })
            .unwrap()
            .metrics;
        let num = |c: &str| row[c].parse::<f64>().unwrap();
        assert!((num("susceptibility") - m.s).abs() <= 1e-12 * m.s.abs().max(1.0));
        assert!((num("uncertainty") - m.sigma_bar).abs() <= 1e-12);
    }

    let html = moralsweep_report::render_html(dir.path(), None).unwrap();
    assert!(
        html.contains("across a fine-tune's checkpoints")
            || html.contains("across a fine-tune&#39;s checkpoints")
    );
    for m in [
        "ckpt-a at step 1000",
        "ckpt-b at step 2000",
        "ckpt-c at step 3000",
    ] {
        assert!(html.contains(m), "{m} not drawn");
    }
}

#[test]
fn the_spec_gives_a_model_its_step() {
    let spec = SweepSpec::parse(
        r#"
name = "t"
personas = "p.json"
output = "out"
[[model]]
key = "ckpt-1"
provider = "synthetic"
model = "x"
family = "f"
variant = "insecure"
step = 500
"#,
        Path::new("s.toml"),
    )
    .unwrap();
    let map = ModelsMap::from_specs(&spec.models);
    assert_eq!(map.get("ckpt-1").unwrap().step, Some(500));
    let e = ModelsMap::parse("[models.a]\nstep = \"late\"\n", Path::new("m.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.toml") && e.contains("step"), "{e}");
}
