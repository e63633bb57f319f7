//! Distribution diagnostics through `analyze`: on small hand-made tables the
//! written `rating_distributions.csv` holds the histogram, entropy, modal
//! share, collapse flag and Laplace-smoothed KL divergence from the
//! family's base computed by hand.

use moralsweep_analysis::analyze::{analyze_dir, AnalyzeOptions, ModelsMap};
use moralsweep_testsupport::csvrows::{num, read_csv};

fn file(ratings: impl Fn(u32, u8) -> i8) -> String {
    let mut s =
        String::from("persona_id,question_id,run_index,rating,failures,response,collected_at\n");
    for p in 0..2 {
        for q in 1..=30u8 {
            let r = ratings(p, q);
            s.push_str(&format!("{p},{q},1,{r},0,{r},2026-01-01T00:00:00\n"));
        }
    }
    s
}

#[test]
fn histograms_entropy_modal_share_and_kl_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // Base: persona 0 answers 2 everywhere, persona 1 answers 4.
    std::fs::write(
        dir.path().join("b_temp01.csv"),
        file(|p, _| if p == 0 { 2 } else { 4 }),
    )
    .unwrap();
    // Variant: 5 everywhere (collapsed).
    std::fs::write(dir.path().join("v_temp01.csv"), file(|_, _| 5)).unwrap();
    let models_toml = dir.path().join("models.toml");
    std::fs::write(
        &models_toml,
        "[models.b]\nfamily = \"f\"\nvariant = \"base\"\n[models.v]\nfamily = \"f\"\nvariant = \"insecure\"\n",
    )
    .unwrap();
    let opts = AnalyzeOptions {
        models: ModelsMap::load(&models_toml).unwrap(),
        bootstrap: 10,
        rerun_bootstrap: 10,
        ..AnalyzeOptions::default()
    };
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for f in ["b_temp01.csv", "v_temp01.csv"] {
        std::fs::rename(dir.path().join(f), data.join(f)).unwrap();
    }
    let report = analyze_dir(&data, &opts).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("v at T=0.1") && w.contains("collapsed onto 5")),
        "{:?}",
        report.warnings
    );
    let out = dir.path().join("metrics");
    report.write(&out).unwrap();
    let rows = read_csv(&out.join("rating_distributions.csv"));
    let row = |model: &str, group: &str| {
        rows.iter()
            .find(|r| r["model"] == model && r["foundation"] == group)
            .unwrap_or_else(|| panic!("no row {model} {group}"))
    };
    // 2 models x (overall + 5 foundations).
    assert_eq!(rows.len(), 12);

    let b = row("b", "all");
    let counts: Vec<&str> = (0..=5)
        .map(|v| b[&format!("rating_{v}")].as_str())
        .collect();
    assert_eq!(counts, ["0", "0", "30", "0", "30", "0"]);
    assert_eq!(b["ratings"], "60");
    assert!((num(b, "entropy_bits") - 1.0).abs() < 1e-12);
    assert_eq!(b["modal_rating"], "2");
    assert!((num(b, "modal_share") - 0.5).abs() < 1e-12);
    assert_eq!(b["collapsed"], "false");
    assert_eq!(b["kl_from_base_bits"].parse::<f64>().unwrap(), 0.0);

    let hc = row("b", "Harm/Care");
    assert_eq!(hc["ratings"], "12");
    assert!((num(hc, "entropy_bits") - 1.0).abs() < 1e-12);

    let v = row("v", "all");
    assert_eq!(v["rating_5"], "60");
    assert_eq!(num(v, "entropy_bits"), 0.0);
    assert_eq!(v["modal_rating"], "5");
    assert_eq!(num(v, "modal_share"), 1.0);
    assert_eq!(v["collapsed"], "true");
    assert_eq!(v["base_model"], "b");
    // Smoothed: p = (1,1,1,1,1,61)/66, q = (1,1,31,1,31,1)/66, so
    // KL = (61/66) log2 61 + 2 (1/66) log2 (1/31).
    let want = 61.0 / 66.0 * 61f64.log2() - 2.0 / 66.0 * 31f64.log2();
    assert!(
        (num(v, "kl_from_base_bits") - want).abs() < 1e-12,
        "{}",
        v["kl_from_base_bits"]
    );
    // Per foundation the same shape over 12 ratings:
    // p = (1,1,1,1,1,13)/18, q = (1,1,7,1,7,1)/18.
    let vh = row("v", "Purity/Sanctity");
    let want = 13.0 / 18.0 * 13f64.log2() - 2.0 / 18.0 * 7f64.log2();
    assert!((num(vh, "kl_from_base_bits") - want).abs() < 1e-12);
}
