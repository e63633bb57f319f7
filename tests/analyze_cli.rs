//! `moralsweep analyze` through the binary: on the papers' reference data it
//! writes the metric files with the papers' headers and prints the summary
//! table; bad input is an error naming the file and the line.

use std::path::Path;
use std::process::Command;

use moralsweep_testsupport::reference::reference_dir;

fn analyze(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_moralsweep"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("run moralsweep analyze")
}

fn header(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().next().unwrap_or_default().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn analyze_writes_the_papers_files() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let o = analyze(&[
        s(&reference.join("sampling")),
        "--out",
        s(out.path()),
        "--models",
        s(&reference.join("models.toml")),
        "--bootstrap",
        "200",
        "--rerun-bootstrap",
        "50",
        "--seed",
        "7",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for model in ["gpt-4o-misaligned", "qwen3-235b", "deepseek-v3.1-secure"] {
        assert!(
            stdout.contains(model),
            "summary table lacks {model}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("S ± se") && stdout.contains("personas"),
        "{stdout}"
    );

    let papers = "model,temperature,uncertainty,uncertainty_uncertainty,robustness,robustness_uncertainty,susceptibility,susceptibility_uncertainty,uncertainty_persona_uncertainty,uncertainty_response_uncertainty,susceptibility_persona_uncertainty,susceptibility_response_uncertainty,personas,questions,min_runs_per_cell,median_runs_per_cell,max_runs_per_cell";
    let h = header(&out.path().join("persona_moral_metrics.csv"));
    assert!(h.starts_with(papers), "{h}");
    let h = header(&out.path().join("persona_moral_metrics_per_foundation.csv"));
    assert!(
        h.starts_with(&papers.replace("temperature,", "temperature,foundation,")),
        "{h}"
    );
    let h = header(&out.path().join("self_profiles.csv"));
    assert!(
        h.starts_with(&header(&reference.join("expected/self_profiles.csv"))),
        "{h}"
    );
    let h = header(&out.path().join("variant_deltas.csv"));
    assert!(
        h.starts_with(&header(&reference.join("expected/variant_deltas.csv"))),
        "{h}"
    );
    let rows = std::fs::read_to_string(out.path().join("persona_moral_metrics.csv")).unwrap();
    assert_eq!(rows.lines().count(), 13, "12 models and a header");
    assert!(!out.path().join("temperature_curve_metrics.csv").exists());

    // Logprob files give the temperature curves at the requested temperatures.
    let o = analyze(&[
        s(&reference.join("logprob")),
        "--out",
        s(out.path()),
        "--temperatures",
        "0.5,1.0",
        "--bootstrap",
        "100",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let curve = std::fs::read_to_string(out.path().join("temperature_curve_metrics.csv")).unwrap();
    let mut lines = curve.lines();
    assert!(lines.next().unwrap().starts_with(&header(
        &reference.join("logprob/expected_temperature_metrics.csv")
    )));
    let temps: Vec<&str> = lines.map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(temps, ["0.5", "1.0"]);
}

#[test]
fn analyze_reports_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A malformed row: the error names the file and the line.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let mut text =
        String::from("persona_id,question_id,run_index,rating,failures,response,collected_at\n");
    for p in 0..3 {
        for q in 1..=30 {
            text.push_str(&format!("{p},{q},1,3,0,3,t\n{p},{q},2,4,0,\"4\nmore\",t\n"));
        }
    }
    text.push_str("2,7,3,9,0,9,t\n");
    let bad = data.join("sub").join("m_temp01.csv");
    std::fs::write(&bad, &text).unwrap();
    let o = analyze(&[s(&data), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    let lines = text.lines().count();
    assert!(
        err.contains("m_temp01.csv")
            && err.contains(&format!("line {lines}"))
            && err.contains("rating"),
        "{err}"
    );

    // Fixed, it analyses.
    std::fs::write(&bad, text.replace("2,7,3,9,0,9,t\n", "2,7,3,-1,10,x,t\n")).unwrap();
    let o = analyze(&[
        s(&data),
        "--out",
        s(&out),
        "--bootstrap",
        "20",
        "--rerun-bootstrap",
        "10",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("persona_moral_metrics.csv").is_file());

    // A broken --models file, an empty directory, a bad temperature.
    let models = dir.path().join("models.toml");
    std::fs::write(
        &models,
        "[models.\"m\"]\nfamily = \"F\"\nvariante = \"base\"\n",
    )
    .unwrap();
    let o = analyze(&[s(&data), "--out", s(&out), "--models", s(&models)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("models.toml") && err.contains("variante"),
        "{err}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = analyze(&[s(&empty), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no rating files"),
        "{err}"
    );
    let o = analyze(&[s(&data), "--out", s(&out), "--temperatures", "0.5,-1"]);
    assert!(!o.status.success());
}
