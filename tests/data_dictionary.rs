//! The data dictionary and the provider-default temperature through
//! `analyze` and `report`, with the real binary: every metric file
//! `analyze` writes (overall, per foundation, self profiles, deltas,
//! excess, distributions, trajectories, logprob curves, dropped, the
//! analysis record) has every column described in `docs/DATA.md`; each
//! `temperature` column reads as numbers (empty where the provider chose)
//! beside `temperature_setting`; a provider-default variant of a family
//! whose base is at 0.1 gets a message saying what to align (not T=-1.0);
//! and `report` on the metrics alone finds the rating files through
//! `analysis.json` (failure counts without `--data`) and shows their
//! hashes, the seed and the bootstrap sizes.

mod common;

use std::fmt::Write as _;
use std::path::Path;

use common::dictionary;
use moralsweep_testsupport::csvrows::{header, read_csv};

/// 4 personas x 30 items x 3 runs; `spread` sets how far personas differ,
/// `noise` how much runs differ, `failures` the failed attempts on each
/// row of persona 0. Persona 3 skips item 7 when `gap` (dropped).
fn sampling(path: &Path, spread: u32, noise: u32, failures: u32, gap: bool) {
    let mut s =
        String::from("persona_id,question_id,run_index,rating,failures,response,collected_at\n");
    for p in 0..4u32 {
        for q in 1..=30u32 {
            if gap && p == 3 && q == 7 {
                continue;
            }
            for run in 1..=3u32 {
                let r = (1 + (p * spread + q) % 3 + (run * noise + q) % 2).min(5);
                let f = if p == 0 { failures } else { 0 };
                let _ = writeln!(s, "{p},{q},{run},{r},{f},{r},2026-01-01T00:00:00");
            }
        }
    }
    std::fs::write(path, s).unwrap();
}

fn self_file(path: &Path) {
    let mut s = String::from("question_id,run_index,rating,failures,response,collected_at\n");
    for q in 1..=30u32 {
        for run in 1..=3u32 {
            let r = 1 + (q + run) % 5;
            let _ = writeln!(s, "{q},{run},{r},0,{r},2026-01-01T00:00:00");
        }
    }
    std::fs::write(path, s).unwrap();
}

fn logprobs(path: &Path) {
    let mut s = String::from("persona_id,question_id,digit_0_logprob,digit_1_logprob,digit_2_logprob,digit_3_logprob,digit_4_logprob,digit_5_logprob,raw_top_logprobs_json\n");
    for p in 0..3 {
        for q in 1..=30 {
            let _ = writeln!(s, "{p},{q},-3,-2,-1,-0.{q},-{p}.5,-4,[]");
        }
    }
    std::fs::write(path, s).unwrap();
}

const MODELS: &str = r#"
[models.fam-base]
family = "Fam"
variant = "base"
[models.fam-secure]
family = "Fam"
variant = "secure"
[models.fam-insecure]
family = "Fam"
variant = "insecure"
[models.ckpt-a]
family = "Fam"
variant = "insecure-ckpt"
step = 1000
[models.ckpt-b]
family = "Fam"
variant = "insecure-ckpt"
step = 2000
[models.reh-base]
family = "Rehearsal"
variant = "base"
[models.reh-pd]
family = "Rehearsal"
variant = "insecure"
"#;

#[test]
fn every_metric_column_is_described_and_provider_default_reads_as_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("ratings");
    std::fs::create_dir(&data).unwrap();
    sampling(&data.join("fam-base_temp01.csv"), 0, 1, 0, false);
    sampling(&data.join("fam-secure_temp01.csv"), 1, 1, 0, false);
    sampling(&data.join("fam-insecure_temp01.csv"), 2, 0, 7, true);
    sampling(&data.join("ckpt-a_temp01.csv"), 1, 0, 0, false);
    sampling(&data.join("ckpt-b_temp01.csv"), 2, 1, 0, false);
    sampling(&data.join("reh-base_temp01.csv"), 0, 0, 0, false);
    sampling(&data.join("reh-pd_tempdefault.csv"), 1, 1, 0, false);
    self_file(&data.join("fam-base_temp01_self.csv"));
    self_file(&data.join("reh-pd_tempdefault_self.csv"));
    logprobs(&data.join("lp_logprobs.csv"));
    std::fs::write(d.join("models.toml"), MODELS).unwrap();

    let out = common::run(
        &[
            "analyze",
            "ratings",
            "--out",
            "m",
            "--models",
            "models.toml",
            "--bootstrap",
            "20",
            "--rerun-bootstrap",
            "10",
            "--seed",
            "5",
        ],
        d,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // The missing base names the base at 0.1 and what to align.
    let warning = stderr
        .lines()
        .find(|l| l.contains("family Rehearsal"))
        .unwrap_or_else(|| panic!("no Rehearsal warning in {stderr}"));
    for want in [
        "provider's default temperature",
        "reh-base at T=0.1",
        "same `temperature`",
        "temperature = \"provider-default\"",
    ] {
        assert!(warning.contains(want), "{want} missing in {warning}");
    }
    assert!(!stderr.contains("T=-1"), "{stderr}");

    // Every file the analysis wrote, every column described.
    let metrics = d.join("m");
    let checked = dictionary::check_dir(&metrics);
    for f in [
        "persona_moral_metrics.csv",
        "persona_moral_metrics_per_foundation.csv",
        "self_profiles.csv",
        "variant_deltas.csv",
        "variant_excess.csv",
        "rating_distributions.csv",
        "trajectories.csv",
        "trajectories_per_foundation.csv",
        "temperature_curve_metrics.csv",
        "dropped.csv",
        "analysis.json",
    ] {
        assert!(
            checked.iter().any(|c| c == f),
            "{f} not written: {checked:?}"
        );
    }

    // Each temperature column is numeric or empty, with its setting beside it.
    for f in &checked {
        if !f.ends_with(".csv") {
            continue;
        }
        let h = header(&metrics.join(f));
        if !h.iter().any(|c| c == "temperature") {
            continue;
        }
        assert!(
            h.iter().any(|c| c == "temperature_setting"),
            "{f}: no temperature_setting in {h:?}"
        );
        for row in read_csv(&metrics.join(f)) {
            let (t, setting) = (&row["temperature"], &row["temperature_setting"]);
            if t.is_empty() {
                assert!(
                    setting == "provider-default" || setting.is_empty(),
                    "{f}: {row:?}"
                );
            } else {
                let v: f64 = t
                    .parse()
                    .unwrap_or_else(|_| panic!("{f}: {t:?} is not a number"));
                assert_eq!(setting.parse::<f64>().ok(), Some(v), "{f}: {row:?}");
            }
        }
    }
    let overall = read_csv(&metrics.join("persona_moral_metrics.csv"));
    let pd = overall.iter().find(|r| r["model"] == "reh-pd").unwrap();
    assert_eq!(
        (
            pd["temperature"].as_str(),
            pd["temperature_setting"].as_str()
        ),
        ("", "provider-default")
    );
    let profiles = read_csv(&metrics.join("self_profiles.csv"));
    assert!(profiles
        .iter()
        .any(|r| r["model"] == "reh-pd" && r["temperature_setting"] == "provider-default"));

    // `analyze` reads its own files back (the provider-default rows too):
    // the report of the metrics alone, rating files found through
    // analysis.json.
    let out = common::run(&["report", "m"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(metrics.join("report.html")).unwrap();
    let row = html
        .lines()
        .find(|l| l.starts_with("<tr data-model=\"fam-insecure\""))
        .expect("fam-insecure's row");
    // 4 personas x 30 items x 3 runs, persona 0's 90 rows with 7 failures each.
    assert!(row.contains("data-v=\"630\""), "{row}");
    let pd_row = html
        .lines()
        .find(|l| l.starts_with("<tr data-model=\"reh-pd\""))
        .expect("reh-pd's row");
    assert!(pd_row.contains("provider-default"), "{pd_row}");
    assert!(!html.contains("not found beside the metrics"));
    let ratings = std::fs::canonicalize(&data).unwrap();
    assert!(html.contains(&ratings.display().to_string()));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(metrics.join("analysis.json")).unwrap())
            .unwrap();
    assert_eq!(record["seed"], 5);
    assert_eq!(record["bootstrap"], 20);
    assert_eq!(record["rerun_bootstrap"], 10);
    let files = record["rating_files"].as_array().unwrap();
    assert_eq!(files.len(), 10);
    use sha2::Digest;
    let base = std::fs::read(data.join("fam-base_temp01.csv")).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&base));
    assert!(files
        .iter()
        .any(|f| f["file"] == "fam-base_temp01.csv" && f["sha256"] == sha.as_str()));
    for want in [
        "<dt>seed</dt><dd>5</dd>",
        "<dt>persona bootstrap draws</dt><dd>20</dd>",
        "<dt>rerun bootstrap draws</dt><dd>10</dd>",
        sha.as_str(),
    ] {
        assert!(html.contains(want), "{want} missing in the report");
    }
}
