//! `moralsweep report` end to end: the real binary makes the report of the
//! papers' reference metrics (all 12 models, via `analyze`, and the
//! published files directly) and of a logprob collection; headless Chromium
//! loads each page from its file and the test checks that the script ran,
//! nothing was logged to the console, no request left the file, every
//! figure is there and every plotted value equals the metric CSV to 1e-9.
//! A screenshot of each page is kept under target/test-artifacts/.
//!
//! `report_is_fast_on_the_reference_metrics` (ignored) is the benchmark:
//! `cargo test --release --test report_e2e -- --ignored --nocapture`.

mod browser;
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use moralsweep_testsupport::reference::reference_dir;

type Attrs = BTreeMap<String, String>;

fn bin() -> &'static str {
    common::bin()
}

fn run(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("the moralsweep binary runs");
    assert!(
        out.status.success(),
        "moralsweep {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Rows of a CSV as maps from column name to field.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            h.iter()
                .zip(rec.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn close(got: &str, want: &str, what: &str) {
    let g: f64 = got
        .parse()
        .unwrap_or_else(|_| panic!("{what}: plotted value {got:?} is not a number"));
    let w: f64 = want
        .parse()
        .unwrap_or_else(|_| panic!("{what}: CSV value {want:?} is not a number"));
    assert!(
        (g - w).abs() <= 1e-9,
        "{what}: plotted {g}, the metric file says {w}"
    );
}

/// The markers of figure `id`.
fn markers<'a>(all: &'a [Attrs], id: &str) -> Vec<&'a Attrs> {
    all.iter().filter(|m| m["figure"] == id).collect()
}

/// Every `ms-point` of the DOM, tagged with the figure it belongs to.
fn plotted(dom: &str) -> (Vec<String>, Vec<Attrs>) {
    let mut figures = Vec::new();
    let mut out = Vec::new();
    for part in dom.split("<figure ").skip(1) {
        let head = &part[..part.find('>').unwrap()];
        let fig = browser::attributes(head);
        let Some(id) = fig.get("data-figure").cloned() else {
            continue;
        };
        let body = &part[..part.find("</figure>").unwrap_or(part.len())];
        let mut n = 0;
        for mut m in browser::elements(body, "circle", "ms-point") {
            m.insert("figure".into(), id.clone());
            out.push(m);
            n += 1;
        }
        assert_eq!(
            fig.get("data-markers").map(String::as_str),
            Some(n.to_string().as_str()),
            "figure {id}: the page says it plotted a different number of values"
        );
        assert!(body.contains("<svg"), "figure {id} has no inline SVG");
        figures.push(id);
    }
    (figures, out)
}

/// Checks one metric row against the markers of a figure that plots S and R.
fn check_sr(ms: &[&Attrs], row: &BTreeMap<String, String>, what: &str) {
    assert!(!ms.is_empty(), "{what}: not plotted");
    for m in ms {
        close(&m["data-s"], &row["susceptibility"], &format!("{what} S"));
        close(
            &m["data-s-se"],
            &row["susceptibility_uncertainty"],
            &format!("{what} se(S)"),
        );
        close(&m["data-r"], &row["robustness"], &format!("{what} R"));
        close(
            &m["data-r-se"],
            &row["robustness_uncertainty"],
            &format!("{what} se(R)"),
        );
    }
}

/// Loads the report in Chromium and checks it against the metric files in
/// `metrics`; returns the figure ids found.
fn check_page(browser: &Path, html: &Path, metrics: &Path, shot: &str) -> Vec<String> {
    let url = format!("file://{}", s(html));
    let load = browser::load(browser, &url, 3000);
    assert!(
        load.dom.contains("data-ready=\"1\""),
        "the page's script did not run to its end:\n{}",
        &load.dom[..load.dom.len().min(2000)]
    );
    assert!(
        load.console.is_empty(),
        "the page logged to the console:\n{}",
        load.console.join("\n")
    );
    let outside: Vec<&String> = load
        .requests
        .iter()
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:") && !u.starts_with("about:"))
        .collect();
    assert!(
        outside.is_empty(),
        "the page requested {outside:?}; a report must open offline"
    );
    let (figures, points) = plotted(&load.dom);

    let file = |names: &[&str]| names.iter().map(|n| metrics.join(n)).find(|p| p.is_file());
    let mut expected_markers = 0;
    if let Some(p) = file(&["persona_moral_metrics.csv", "metrics_overall.csv"]) {
        let rows = csv_rows(&p);
        // A logprob-only sweep writes the file with its header alone.
        assert!(rows.is_empty() != figures.iter().any(|f| f == "sr-by-model"));
        for (fig, per_model) in [("sr-by-model", 2), ("s-vs-r", 1)] {
            let ms = markers(&points, fig);
            for row in &rows {
                let mine: Vec<&Attrs> = ms
                    .iter()
                    .copied()
                    .filter(|m| m["data-model"] == row["model"])
                    .collect();
                assert_eq!(mine.len(), per_model, "{fig}: points of {}", row["model"]);
                check_sr(&mine, row, &format!("{fig} {}", row["model"]));
            }
            expected_markers += rows.len() * per_model;
        }
    }
    if let Some(p) = file(&[
        "persona_moral_metrics_per_foundation.csv",
        "metrics_per_foundation.csv",
    ]) {
        let rows = csv_rows(&p);
        let ms = markers(&points, "per-foundation");
        for row in &rows {
            let mine: Vec<&Attrs> = ms
                .iter()
                .copied()
                .filter(|m| {
                    m["data-model"] == row["model"] && m["data-foundation"] == row["foundation"]
                })
                .collect();
            assert_eq!(
                mine.len(),
                2,
                "per-foundation: {} {}",
                row["model"],
                row["foundation"]
            );
            check_sr(
                &mine,
                row,
                &format!("per-foundation {} {}", row["model"], row["foundation"]),
            );
        }
        expected_markers += rows.len() * 2;
    }
    if let Some(p) = file(&["variant_deltas.csv"]) {
        let rows: Vec<_> = csv_rows(&p)
            .into_iter()
            .filter(|r| r["variant"] != "base")
            .collect();
        let ms = markers(&points, "variant-deltas");
        for row in &rows {
            let mine: Vec<&Attrs> = ms
                .iter()
                .copied()
                .filter(|m| {
                    m["data-family"] == row["family"] && m["data-variant"] == row["variant"]
                })
                .collect();
            assert_eq!(
                mine.len(),
                3,
                "variant-deltas: {} {}",
                row["family"],
                row["variant"]
            );
            for m in mine {
                let what = format!("variant-deltas {} {}", row["family"], row["variant"]);
                close(&m["data-ds"], &row["dS_pct"], &format!("{what} dS"));
                close(&m["data-dr"], &row["dR_pct"], &format!("{what} dR"));
                close(
                    &m["data-dsigma"],
                    &row["dsigma_pct"],
                    &format!("{what} dsigma"),
                );
                for (attr, col) in [
                    ("data-ds-se", "dS_pct_se"),
                    ("data-dr-se", "dR_pct_se"),
                    ("data-dsigma-se", "dsigma_pct_se"),
                ] {
                    match row.get(col) {
                        Some(v) => close(&m[attr], v, &format!("{what} {col}")),
                        None => assert_eq!(m[attr], "", "{what}: {attr} without a column"),
                    }
                }
            }
        }
        expected_markers += rows.len() * 3;
    }
    if let Some(p) = file(&["self_profiles.csv"]) {
        let rows = csv_rows(&p);
        let ms = markers(&points, "self-profiles");
        for row in &rows {
            let mine: Vec<&Attrs> = ms
                .iter()
                .copied()
                .filter(|m| {
                    m["data-model"] == row["model"] && m["data-foundation"] == row["foundation"]
                })
                .collect();
            assert_eq!(
                mine.len(),
                1,
                "self-profiles: {} {}",
                row["model"],
                row["foundation"]
            );
            let what = format!("self-profiles {} {}", row["model"], row["foundation"]);
            close(&mine[0]["data-mean"], &row["mean"], &format!("{what} mean"));
            close(
                &mine[0]["data-sd"],
                &row["within_question_sd"],
                &format!("{what} sd"),
            );
        }
        expected_markers += rows.len();
    }
    if let Some(p) = file(&[
        "temperature_curve_metrics.csv",
        "expected_temperature_metrics.csv",
    ]) {
        let rows = csv_rows(&p);
        let ms = markers(&points, "temperature-curves");
        for row in &rows {
            let t: f64 = row["temperature"].parse().unwrap();
            let mine: Vec<&Attrs> = ms
                .iter()
                .copied()
                .filter(|m| {
                    m["data-model"] == row["model"]
                        && (m["data-t"].parse::<f64>().unwrap() - t).abs() < 1e-12
                })
                .collect();
            assert_eq!(mine.len(), 2, "temperature-curves: {} at {t}", row["model"]);
            check_sr(
                &mine,
                row,
                &format!("temperature-curves {} T={t}", row["model"]),
            );
        }
        expected_markers += rows.len() * 2;
    }
    if let Some(p) = file(&["comparisons.csv"]) {
        // The paired changes over all items: one marker per pair and metric.
        let rows: Vec<_> = csv_rows(&p)
            .into_iter()
            .filter(|r| r["group"] == "overall")
            .collect();
        let ms = markers(&points, "paired-changes");
        for row in &rows {
            let what = format!(
                "paired-changes {} {} {}",
                row["variant"], row["base"], row["metric"]
            );
            let mine: Vec<&Attrs> = ms
                .iter()
                .copied()
                .filter(|m| {
                    m["data-variant"] == row["variant"]
                        && m["data-base"] == row["base"]
                        && m["data-metric"] == row["metric"]
                })
                .collect();
            assert_eq!(mine.len(), 1, "{what}");
            close(
                &mine[0]["data-relative-change"],
                &row["relative_change"],
                &what,
            );
            close(&mine[0]["data-ci-low"], &row["relative_ci_low"], &what);
            close(&mine[0]["data-ci-high"], &row["relative_ci_high"], &what);
            close(&mine[0]["data-p-holm"], &row["p_holm"], &what);
        }
        expected_markers += rows.len();
    }
    assert_eq!(
        points.len(),
        expected_markers,
        "the page plots values that are not in the metric files"
    );
    // The table of every number is there, with the S-band check.
    if file(&["persona_moral_metrics.csv", "metrics_overall.csv"])
        .is_some_and(|p| !csv_rows(&p).is_empty())
    {
        assert!(load.dom.contains("id=\"table-overall\""));
        assert!(load.dom.contains("band-in") || load.dom.contains("band-out"));
    }
    let png = browser::artifacts().join(format!("{shot}.png"));
    browser::screenshot(browser, &url, &png, 2600, 2000);
    eprintln!("screenshot: {}", png.display());
    figures
}

fn assert_figure_files(dir: &Path, ids: &[String]) {
    for id in ids {
        for ext in ["svg", "png"] {
            let p = dir.join("figures").join(format!("{id}.{ext}"));
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            match ext {
                "png" => assert!(
                    bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                    "{} is no PNG",
                    p.display()
                ),
                _ => assert!(
                    String::from_utf8_lossy(&bytes).contains("<svg"),
                    "{} is no SVG",
                    p.display()
                ),
            }
        }
    }
}

fn analyze(reference: &Path, what: &str, out: &Path) {
    let mut args = vec![
        "analyze".to_string(),
        s(&reference.join(what)).to_string(),
        "--out".into(),
        s(out).to_string(),
        "--bootstrap".into(),
        "200".into(),
        "--rerun-bootstrap".into(),
        "50".into(),
    ];
    if what == "sampling" {
        args.extend([
            "--models".into(),
            s(&reference.join("models.toml")).to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args);
}

#[test]
fn report_of_the_reference_metrics_in_a_browser() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let Some(browser) = browser::chromium() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("reference");
    analyze(&reference, "sampling", &metrics);
    let html = tmp.path().join("page/reference.html");
    let out = run(&[
        "report",
        s(&metrics),
        "--out",
        s(&html),
        "--data",
        s(&reference.join("sampling")),
    ]);
    assert!(out.contains("wrote"), "{out}");
    let figures = check_page(&browser, &html, &metrics, "report-reference");
    for id in [
        "sr-by-model",
        "s-vs-r",
        "per-foundation",
        "variant-deltas",
        "self-profiles",
    ] {
        assert!(
            figures.iter().any(|f| f == id),
            "figure {id} missing: {figures:?}"
        );
    }
    assert_figure_files(&tmp.path().join("page"), &figures);
    // All 12 models, with the failure counts of their rating files.
    let page = std::fs::read_to_string(&html).unwrap();
    let rows = browser::elements(&page, "tr", "data-model=");
    assert_eq!(
        rows.len(),
        12,
        "the per-model table has {} rows",
        rows.len()
    );
    assert!(page.contains("failed attempts"));
    assert!(
        page.contains("insecure fine-tunes"),
        "the headline is missing"
    );

    // The published files themselves (the papers' column names).
    let expected = reference.join("expected");
    let html = tmp.path().join("published/report.html");
    run(&["report", s(&expected), "--out", s(&html)]);
    let figures = check_page(&browser, &html, &expected, "report-published");
    assert!(figures.len() >= 4, "{figures:?}");
}

#[test]
fn report_of_a_logprob_collection_in_a_browser() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let Some(browser) = browser::chromium() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("logprob");
    analyze(&reference, "logprob", &metrics);
    run(&["report", s(&metrics)]);
    let html = metrics.join("report.html");
    let figures = check_page(&browser, &html, &metrics, "report-logprob");
    assert!(
        figures.iter().any(|f| f == "temperature-curves"),
        "{figures:?}"
    );
    assert_figure_files(&metrics, &figures);
}

#[test]
fn report_names_the_file_and_column_of_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["report", s(tmp.path())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no metric files"), "{err}");

    std::fs::write(
        tmp.path().join("persona_moral_metrics.csv"),
        "model,uncertainty,uncertainty_uncertainty,robustness,robustness_uncertainty,susceptibility,susceptibility_uncertainty\n\
         m1,0.1,0.01,10,1,0.8,0.03\nm2,0.1,0.01,ten,1,0.8,0.03\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["report", s(tmp.path())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("persona_moral_metrics.csv")
            && err.contains("line 3")
            && err.contains("robustness")
            && err.contains("\"ten\""),
        "{err}"
    );
    assert!(!tmp.path().join("report.html").exists());
}

/// The benchmark: `report` of the 12 reference models (figures, PNGs and
/// page) should take under 2 seconds.
#[test]
#[ignore]
fn report_is_fast_on_the_reference_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("reference");
    analyze(&reference, "sampling", &metrics);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        run(&[
            "report",
            s(&metrics),
            "--data",
            s(&reference.join("sampling")),
        ]);
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "report of 12 reference models: median {:.3} s, min {:.3} s, max {:.3} s (goal < 2 s)",
        times[2], times[0], times[4]
    );
}

/// `run` writes the report and the sweep's provenance next to its metrics
/// (spec hash, dates, cost), and `--no-report` writes neither.
#[test]
fn run_writes_the_report_with_its_provenance() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_personas(tmp.path(), 6);
    std::fs::write(
        tmp.path().join("s.toml"),
        common::spec_text("report-run", &["rr-base", "rr-insecure"], 6, 2, ""),
    )
    .unwrap();
    let out = common::run(&["run", "s.toml", "--quiet"], tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join("out");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("run wrote report.html");
    assert!(dir.join("figures/sr-by-model.png").is_file());
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("provenance.json")).unwrap())
            .unwrap();
    use sha2::Digest;
    let spec = std::fs::read(tmp.path().join("s.toml")).unwrap();
    let hash = hex::encode(sha2::Sha256::digest(&spec));
    assert_eq!(prov["spec_sha256"], hash.as_str());
    assert_eq!(prov["sweep"], "report-run");
    assert!(prov["created_at"].is_string() && prov["finished_at"].is_string());
    assert!(
        html.contains(&hash),
        "the report does not show the spec's hash"
    );
    assert!(html.contains("rr-insecure"));

    let again = tempfile::tempdir().unwrap();
    common::write_personas(again.path(), 6);
    std::fs::write(
        again.path().join("s.toml"),
        common::spec_text("report-run", &["rr-base"], 6, 2, ""),
    )
    .unwrap();
    let out = common::run(&["run", "s.toml", "--quiet", "--no-report"], again.path());
    assert!(out.status.success());
    assert!(!again.path().join("out/report.html").exists());
    assert!(!again.path().join("out/provenance.json").exists());
}
