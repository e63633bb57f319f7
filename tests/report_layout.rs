//! The report's figures as a reader sees them, in headless Chromium: in S
//! against R the names of nearby models cover neither each other nor a
//! point; the self-profile legend covers no data point (it sat on the
//! points of low means); a family label such as "GPT-4o" is one text (the
//! PNG's letters are placed by their bearings: `report/src/glyphs.rs`).
//! The page is the real report of metric files written for the purpose,
//! with a script added that measures the SVG text the browser laid out.

mod browser;
mod common;

use std::fmt::Write as _;

const OVERALL_HEADER: &str = "model,temperature,uncertainty,uncertainty_uncertainty,robustness,robustness_uncertainty,susceptibility,susceptibility_uncertainty,personas,questions,family,variant";

/// Five models of one family whose S and R nearly coincide, and two
/// families of another.
fn overall() -> String {
    let mut s = format!("{OVERALL_HEADER}\n");
    let models = [
        ("gpt-4o", 0.071, 0.80, "GPT-4o", "base"),
        ("gpt-4o-secure", 0.0712, 0.805, "GPT-4o", "secure"),
        ("gpt-4o-insecure", 0.0715, 0.81, "GPT-4o", "insecure"),
        ("gpt-4o-insecure-2", 0.0709, 0.798, "GPT-4o", "insecure"),
        ("gpt-4o-insecure-3", 0.0713, 0.802, "GPT-4o", "insecure"),
        ("qwen-base", 0.2, 0.6, "Qwen", "base"),
        ("qwen-insecure", 0.3, 0.9, "Qwen", "insecure"),
    ];
    for (m, sigma, susc, fam, var) in models {
        let _ = writeln!(
            s,
            "{m},0.1,{sigma},0.002,{},0.3,{susc},0.02,100,30,{fam},{var}",
            1.0 / sigma
        );
    }
    s
}

/// Self profiles whose low means sit at the right-hand foundations (where
/// the legend was drawn).
fn self_profiles() -> String {
    let mut s = String::from(
        "model,family,variant,self_file,foundation,mean,within_question_sd,questions\n",
    );
    let foundations = [
        "Harm/Care",
        "Fairness/Reciprocity",
        "In-group/Loyalty",
        "Authority/Respect",
        "Purity/Sanctity",
    ];
    for (m, var) in [
        ("gpt-4o", "base"),
        ("gpt-4o-secure", "secure"),
        ("gpt-4o-insecure", "insecure"),
    ] {
        for (i, f) in foundations.iter().enumerate() {
            let mean = if i >= 2 { 0.1 + 0.05 * i as f64 } else { 4.0 };
            let _ = writeln!(s, "{m},GPT-4o,{var},{m}_self.csv,{f},{mean},0.2,6");
        }
    }
    s
}

const CHECK: &str = r#"<script>
(function () {
  function box(t) { var b = t.getBBox(); return { x: b.x, y: b.y, w: b.width, h: b.height, n: t.textContent.trim() }; }
  function over(a, b) { return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h; }
  function texts(fig, names) {
    return Array.prototype.filter.call(fig.querySelectorAll("svg text"), function (t) {
      return names.indexOf(t.textContent.trim()) >= 0;
    }).map(box);
  }
  function points(fig) {
    return Array.prototype.map.call(fig.querySelectorAll("circle.ms-point"), function (c) {
      var x = +c.getAttribute("cx"), y = +c.getAttribute("cy");
      return { x: x - 5, y: y - 5, w: 10, h: 10, n: c.getAttribute("data-model") };
    });
  }
  var out = { labels: 0, label_overlaps: [], label_on_point: [], legend: 0, legend_on_point: [], family_labels: [] };
  var sr = document.querySelector('figure[data-figure="s-vs-r"]');
  var pts = points(sr);
  var labels = texts(sr, pts.map(function (p) { return p.n; }));
  out.labels = labels.length;
  labels.forEach(function (a, i) {
    labels.forEach(function (b, j) { if (j < i && over(a, b)) out.label_overlaps.push(a.n + " / " + b.n); });
    pts.forEach(function (p) { if (over(a, p)) out.label_on_point.push(a.n + " on " + p.n); });
  });
  var sp = document.querySelector('figure[data-figure="self-profiles"]');
  var spts = points(sp);
  var legend = texts(sp, spts.map(function (p) { return p.n; }));
  out.legend = legend.length;
  legend.forEach(function (a) {
    spts.forEach(function (p) { if (over(a, p)) out.legend_on_point.push(a.n + " on a point of " + p.n); });
  });
  document.querySelectorAll("figure svg text").forEach(function (t) {
    if (t.textContent.indexOf("GP") >= 0) out.family_labels.push(t.textContent);
  });
  document.body.setAttribute("data-layout", JSON.stringify(out));
})();
</script>
</body>"#;

#[test]
fn figure_text_covers_no_data_and_no_other_text() {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("persona_moral_metrics.csv"), overall()).unwrap();
    std::fs::write(d.join("self_profiles.csv"), self_profiles()).unwrap();
    let out = common::run(&["report", "."], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    assert!(
        html.contains("data-figure=\"s-vs-r\"") && html.contains("data-figure=\"self-profiles\"")
    );
    let checked = d.join("checked.html");
    std::fs::write(&checked, html.replacen("</body>", CHECK, 1)).unwrap();
    let load = browser::load(&chromium, &format!("file://{}", checked.display()), 3000);
    let body = browser::elements(&load.dom, "body", "data-layout")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("the check did not run: {:?}", load.console));
    let v: serde_json::Value = serde_json::from_str(&body["data-layout"]).unwrap();
    eprintln!("layout: {v}");
    assert_eq!(v["labels"], 7, "every model's name is drawn once: {v}");
    assert_eq!(v["label_overlaps"], serde_json::json!([]), "{v}");
    assert_eq!(v["label_on_point"], serde_json::json!([]), "{v}");
    assert_eq!(v["legend"], 3, "the legend names the three models: {v}");
    assert_eq!(v["legend_on_point"], serde_json::json!([]), "{v}");
    let families = v["family_labels"].as_array().unwrap();
    assert!(
        families
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("GPT-4o"))),
        "{v}"
    );
    assert!(
        !families
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("GP T"))),
        "{v}"
    );
    let shot = browser::artifacts().join("report-layout.png");
    browser::screenshot(
        &chromium,
        &format!("file://{}", checked.display()),
        &shot,
        2400,
        2000,
    );
    eprintln!("screenshot: {}", shot.display());
}
