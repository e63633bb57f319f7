//! The report page: one HTML document with the figures inlined as SVG, the
//! tables of every number, and the sweep's spec, cost and provenance. Its
//! Content-Security-Policy allows no fetch of any kind (inline style and
//! script only), so the page opens offline and cannot phone home.

use std::fmt::Write;

use crate::data::{display_order, ReportData};
use crate::figures::{esc, num, Figure};

const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// A table cell holding a number: shown rounded, exact in `data-v`.
fn td(v: f64, digits: usize) -> String {
    format!("<td class=\"n\" data-v=\"{}\">{v:.digits$}</td>", num(v))
}

fn td_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => td(v, digits),
        None => "<td class=\"n na\">–</td>".into(),
    }
}

/// A temperature cell: the number, `provider-default` where the provider
/// chose, or a dash where the file gives none.
fn td_temperature(v: Option<f64>) -> String {
    match v {
        Some(t) if moralsweep_analysis::formats::is_provider_default(t) => {
            "<td class=\"na\">provider-default</td>".into()
        }
        v => td_opt(v, 2),
    }
}

fn td_text(s: &str) -> String {
    format!("<td>{}</td>", esc(s))
}

/// The band cell of S: its name and class, or a dash where the band (the
/// MFQ-30's) does not apply.
fn band(s: f64, applies: bool) -> (&'static str, &'static str) {
    if !applies {
        return ("–", "");
    }
    match moralsweep_analysis::metrics::Band::of(s) {
        moralsweep_analysis::metrics::Band::Inside => ("inside", "band-in"),
        moralsweep_analysis::metrics::Band::Above => ("above", "band-out"),
        moralsweep_analysis::metrics::Band::Below => ("below", "band-out"),
    }
}

fn table_head(id: &str, cols: &[&str]) -> String {
    let mut s = format!("<table class=\"sortable\" id=\"{id}\"><thead><tr>");
    for c in cols {
        let _ = write!(s, "<th>{c}</th>");
    }
    s.push_str("</tr></thead><tbody>\n");
    s
}

fn overall_table(d: &ReportData) -> String {
    let mut s = table_head(
        "table-overall",
        &[
            "model",
            "family",
            "variant",
            "T",
            "S",
            "se(S)",
            "R",
            "se(R)",
            "σ̄",
            "se(σ̄)",
            "personas kept",
            "items kept",
            "runs/cell min · median · max",
            "failed attempts",
            "unrated slots",
            "S band 0.66–0.83",
        ],
    );
    let order = display_order(&d.overall, |r| (&r.family, &r.variant, &r.model));
    for i in order {
        let r = &d.overall[i];
        let f = d.failures.get(&r.model);
        let (band_name, band_class) = band(r.s, d.s_band_applies());
        let runs = match (r.min_runs, r.median_runs, r.max_runs) {
            (Some(a), Some(b), Some(c)) => format!("{a} · {b} · {c}"),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "<tr data-model=\"{}\">{}{}{}{}{}{}{}{}{}{}{}{}<td>{}</td>{}{}<td class=\"{band_class}\">{band_name}</td></tr>",
            esc(&r.model),
            td_text(&r.model),
            td_text(&r.family),
            td_text(&r.variant),
            td_temperature(r.temperature),
            td(r.s, 4),
            td(r.s_se, 4),
            td(r.r, 3),
            td(r.r_se, 3),
            td(r.sigma_bar, 4),
            td(r.sigma_bar_se, 4),
            td_opt(r.personas.map(|v| v as f64), 0),
            td_opt(r.questions.map(|v| v as f64), 0),
            runs,
            td_opt(f.map(|f| f.failed_attempts as f64), 0),
            td_opt(f.map(|f| f.unrated as f64), 0),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn foundation_table(d: &ReportData) -> String {
    let mut s = table_head(
        "table-per-foundation",
        &[
            "model",
            d.group_label(),
            "S",
            "se(S)",
            "R",
            "se(R)",
            "σ̄",
            "se(σ̄)",
            "items",
        ],
    );
    let order = display_order(&d.per_foundation, |r| (&r.family, &r.variant, &r.model));
    for i in order {
        let r = &d.per_foundation[i];
        let _ = writeln!(
            s,
            "<tr>{}{}{}{}{}{}{}{}{}</tr>",
            td_text(&r.model),
            td_text(r.foundation.as_deref().unwrap_or("")),
            td(r.s, 4),
            td(r.s_se, 4),
            td(r.r, 3),
            td(r.r_se, 3),
            td(r.sigma_bar, 4),
            td(r.sigma_bar_se, 4),
            td_opt(r.questions.map(|v| v as f64), 0),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn delta_table(d: &ReportData) -> String {
    let mut s = table_head(
        "table-deltas",
        &[
            "family", "variant", "model", "S", "se(S)", "R", "se(R)", "σ̄", "dS %", "se", "dR %",
            "se", "dσ̄ %", "se", "S band",
        ],
    );
    let order = display_order(&d.deltas, |r| (&r.family, &r.variant, &r.family));
    for i in order {
        let r = &d.deltas[i];
        let (band_name, band_class) = band(r.s, d.s_band_applies());
        let _ = writeln!(
            s,
            "<tr>{}{}{}{}{}{}{}{}{}{}{}{}{}{}<td class=\"{band_class}\">{band_name}</td></tr>",
            td_text(&r.family),
            td_text(&r.variant),
            td_text(r.model.as_deref().unwrap_or("")),
            td(r.s, 4),
            td(r.s_se, 4),
            td(r.r, 3),
            td(r.r_se, 3),
            td(r.sigma_bar, 4),
            td(r.ds, 1),
            td_opt(r.ds_se, 1),
            td(r.dr, 1),
            td_opt(r.dr_se, 1),
            td(r.dsigma, 1),
            td_opt(r.dsigma_se, 1),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn excess_table(d: &ReportData) -> String {
    let mut s = table_head(
        "table-excess",
        &[
            "family",
            "insecure",
            "secure",
            "excess dS (pp)",
            "se",
            "excess dR (pp)",
            "se",
            "excess dσ̄ (pp)",
            "se",
        ],
    );
    for r in &d.excess {
        let _ = writeln!(
            s,
            "<tr>{}{}{}{}{}{}{}{}{}</tr>",
            td_text(&r.family),
            td_text(&r.insecure_model),
            td_text(&r.secure_model),
            td(r.ds, 1),
            td(r.ds_se, 1),
            td(r.dr, 1),
            td(r.dr_se, 1),
            td(r.dsigma, 1),
            td(r.dsigma_se, 1),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn self_table(d: &ReportData) -> String {
    let mut s = table_head(
        "table-self",
        &[
            "model",
            "family",
            "variant",
            d.group_label(),
            "mean",
            "within-item sd",
            "items",
        ],
    );
    let order = display_order(&d.self_profiles, |r| (&r.family, &r.variant, &r.model));
    for i in order {
        let r = &d.self_profiles[i];
        let _ = writeln!(
            s,
            "<tr>{}{}{}{}{}{}{}</tr>",
            td_text(&r.model),
            td_text(&r.family),
            td_text(&r.variant),
            td_text(&r.foundation),
            td(r.mean, 3),
            td(r.sd, 3),
            td_opt(r.questions.map(|v| v as f64), 0),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

/// The rating distributions; a collapsed one (its modal rating holds at
/// least 95% of the ratings) is flagged.
fn distribution_table(d: &ReportData) -> String {
    let mut s = table_head(
        "table-distributions",
        &[
            "model",
            d.group_label(),
            "ratings",
            "histogram",
            "entropy (bits)",
            "modal rating",
            "modal share",
            "KL from base (bits)",
            "collapsed",
        ],
    );
    for r in &d.distributions {
        let hist: Vec<String> = r
            .histogram
            .iter()
            .map(|(v, c)| format!("{v}:{c}"))
            .collect();
        let _ = writeln!(
            s,
            "<tr{}>{}{}{}{}{}{}{}{}{}</tr>",
            if r.collapsed {
                " class=\"collapsed\""
            } else {
                ""
            },
            td_text(&r.model),
            td_text(&r.group),
            td_opt(r.ratings.map(|v| v as f64), 0),
            td_text(&hist.join(" ")),
            td(r.entropy_bits, 3),
            td_text(&r.modal_rating),
            td_opt(r.modal_share, 3),
            td_opt(r.kl_from_base_bits, 3),
            td_text(if r.collapsed { "COLLAPSED" } else { "" }),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn curve_table(d: &ReportData) -> String {
    let mut s = table_head(
        "table-curves",
        &[
            "model", "T", "S", "se(S)", "R", "se(R)", "σ̄", "se(σ̄)", "personas", "items",
        ],
    );
    for r in &d.curves {
        let _ = writeln!(
            s,
            "<tr>{}{}{}{}{}{}{}{}{}{}</tr>",
            td_text(&r.model),
            td(r.temperature, 2),
            td(r.s, 4),
            td(r.s_se, 4),
            td(r.r, 3),
            td(r.r_se, 3),
            td(r.sigma_bar, 4),
            td(r.sigma_bar_se, 4),
            td_opt(r.personas.map(|v| v as f64), 0),
            td_opt(r.questions.map(|v| v as f64), 0),
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

/// The emergent-misalignment headline: mean deltas of the insecure variants.
fn headline(d: &ReportData) -> Option<String> {
    let ins: Vec<_> = d
        .deltas
        .iter()
        .filter(|r| r.variant == "insecure")
        .collect();
    if ins.is_empty() {
        return None;
    }
    let n = ins.len() as f64;
    let mean = |f: fn(&crate::data::DeltaRecord) -> f64| ins.iter().map(|r| f(r)).sum::<f64>() / n;
    Some(format!(
        "Averaged over the {} insecure fine-tune{}: S {:+.0}%, R {:+.0}%, σ̄ = 1/R {:+.0}%.",
        ins.len(),
        if ins.len() == 1 { "" } else { "s" },
        mean(|r| r.ds),
        mean(|r| r.dr),
        mean(|r| r.dsigma)
    ))
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn provenance(d: &ReportData) -> String {
    let mut s = String::from("<dl class=\"prov\">\n");
    let mut item = |k: &str, v: &str| {
        let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    item(
        "report made by",
        &format!("moralsweep {}", env!("CARGO_PKG_VERSION")),
    );
    item(
        "report made at",
        &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    item("metric files", &d.metrics_dir.display().to_string());
    let recorded = d
        .analysis
        .as_ref()
        .map(|a| a.data_dir.display().to_string());
    item(
        "rating files",
        &match (&d.data_dir, &recorded) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(r)) => format!(
                "not found: the analysis read them in {r}, which is gone (failure counts not shown; give them with --data)"
            ),
            (None, None) => "not found beside the metrics (failure counts not shown; give them with --data)".into(),
        },
    );
    if let Some(a) = &d.analysis {
        item("seed", &a.seed.to_string());
        item("persona bootstrap draws", &a.bootstrap.to_string());
        item("rerun bootstrap draws", &a.rerun_bootstrap.to_string());
        item("analysed by", &format!("{} {}", a.tool, a.tool_version));
    }
    let mut spec = None;
    let mut cost = None;
    if let Some(serde_json::Value::Object(p)) = &d.provenance {
        for (k, v) in p {
            match k.as_str() {
                "spec_toml" => spec = Some(json_text(v)),
                "cost" => cost = Some(v.clone()),
                _ => item(&k.replace('_', " "), &json_text(v)),
            }
        }
    }
    s.push_str("</dl>\n");
    if let Some(serde_json::Value::Array(rows)) = cost {
        s.push_str("<h3>Cost</h3>\n");
        s.push_str(&table_head(
            "table-cost",
            &[
                "model",
                "requests",
                "input tokens",
                "output tokens",
                "429s",
                "retries",
                "cost (USD)",
            ],
        ));
        let mut total = 0.0;
        for r in &rows {
            let g = |k: &str| r.get(k).and_then(|v| v.as_f64());
            if let Some(c) = g("usd") {
                total += c;
            }
            let _ = writeln!(
                s,
                "<tr>{}{}{}{}{}{}{}</tr>",
                td_text(&r.get("model").map(json_text).unwrap_or_default()),
                td_opt(g("requests"), 0),
                td_opt(g("input_tokens"), 0),
                td_opt(g("output_tokens"), 0),
                td_opt(g("rate_limited"), 0),
                td_opt(g("retries"), 0),
                td_opt(g("usd"), 4),
            );
        }
        let _ = writeln!(
            s,
            "<tr class=\"total\"><td>total</td><td></td><td></td><td></td><td></td><td></td>{}</tr>",
            td(total, 4)
        );
        s.push_str("</tbody></table>\n");
    }
    if let Some(spec) = spec {
        let _ = write!(
            s,
            "<h3>Spec</h3>\n<pre class=\"spec\">{}</pre>\n",
            esc(&spec)
        );
    }
    s.push_str("<h3>Files read</h3>\n");
    s.push_str(&table_head("table-sources", &["file", "rows", "sha256"]));
    for f in &d.sources {
        let _ = writeln!(
            s,
            "<tr>{}{}<td class=\"hash\">{}</td></tr>",
            td_text(&f.path.display().to_string()),
            td(f.rows as f64, 0),
            esc(&f.sha256)
        );
    }
    s.push_str("</tbody></table>\n");
    if let Some(a) = &d.analysis {
        let _ = writeln!(
            s,
            "<h3>Rating files analysed</h3>\n<p>In {}; seed {}, {} persona and {} rerun bootstrap draws.</p>",
            esc(&a.data_dir.display().to_string()),
            a.seed,
            a.bootstrap,
            a.rerun_bootstrap
        );
        s.push_str(&table_head(
            "table-rating-sources",
            &["file", "bytes", "sha256"],
        ));
        for f in &a.rating_files {
            let _ = writeln!(
                s,
                "<tr>{}{}<td class=\"hash\">{}</td></tr>",
                td_text(&f.file),
                td(f.bytes as f64, 0),
                esc(&f.sha256)
            );
        }
        s.push_str("</tbody></table>\n");
    }
    s
}

/// The whole page.
pub fn page(d: &ReportData, figs: &[Figure]) -> String {
    let title = d
        .provenance
        .as_ref()
        .and_then(|p| p.get("sweep"))
        .map(json_text)
        .map(|n| format!("moralsweep report: {n}"))
        .unwrap_or_else(|| "moralsweep report".into());
    let mut s = String::with_capacity(256 * 1024);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<header><h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let models = d.overall.len();
    let _ = writeln!(
        s,
        "<p class=\"lead\">Moral susceptibility S (how far answers move between personas) and robustness R \
         (how steady they stay for one persona) of {models} model{} under {} persona role-play.</p>",
        if models == 1 { "" } else { "s" },
        esc(&d.instrument_title())
    );
    if let Some(h) = headline(d) {
        let _ = writeln!(s, "<p class=\"headline\" id=\"headline\">{}</p>", esc(&h));
    }
    for n in crate::bounds::notes(d) {
        let _ = writeln!(s, "<p class=\"note\" id=\"size-note\">{}</p>", esc(&n));
    }
    s.push_str("<nav><ul>\n");
    for f in figs {
        let _ = writeln!(
            s,
            "<li><a href=\"#fig-{}\">{}</a></li>",
            f.id,
            esc(&f.title)
        );
    }
    s.push_str("<li><a href=\"#numbers\">Every number</a></li>\n<li><a href=\"#provenance\">Spec, cost and provenance</a></li>\n</ul></nav>\n</header>\n<main>\n");
    for f in figs {
        let _ = write!(
            s,
            "<section id=\"fig-{id}\">\n<h2>{title}</h2>\n<figure class=\"plot\" data-figure=\"{id}\" data-markers=\"{n}\">\n{svg}\n<figcaption>{cap} \
             <span class=\"files\">Files: figures/{id}.svg, figures/{id}.png</span></figcaption>\n</figure>\n</section>\n",
            id = f.id,
            title = esc(&f.title),
            n = f.markers,
            svg = strip_xml_decl(&f.svg),
            cap = esc(&f.caption),
        );
    }
    s.push_str("<section id=\"numbers\">\n<h2>Every number</h2>\n");
    s.push_str(
        "<p class=\"names\" id=\"names\">S = susceptibility, R = robustness, σ̄ = uncertainty (sigma-bar): \
         the papers' column names in persona_moral_metrics.csv; se(…) and se are standard errors, the files' \
         *_uncertainty columns (variant_deltas.csv keeps the published S, S_se, R, R_se, sigma_bar); \
         T is the temperature, provider-default where the provider chose it. docs/DATA.md describes every column.</p>\n",
    );
    if !d.overall.is_empty() {
        s.push_str("<h3>Per model</h3>\n");
        s.push_str(&overall_table(d));
    }
    if !d.deltas.is_empty() {
        s.push_str("<h3>Variants against their base</h3>\n");
        s.push_str(&delta_table(d));
    }
    if !d.excess.is_empty() {
        s.push_str("<h3>Misalignment-specific excess (insecure minus secure)</h3>\n");
        s.push_str(&excess_table(d));
    }
    if !d.per_foundation.is_empty() {
        let _ = writeln!(s, "<h3>Per {}</h3>", esc(d.group_label()));
        s.push_str(&foundation_table(d));
    }
    if !d.self_profiles.is_empty() {
        s.push_str("<h3>Self profiles</h3>\n");
        s.push_str(&self_table(d));
    }
    if !d.distributions.is_empty() {
        s.push_str("<h3>Rating distributions</h3>\n");
        let collapsed: Vec<&str> = d
            .distributions
            .iter()
            .filter(|r| r.collapsed && r.group == "all")
            .map(|r| r.model.as_str())
            .collect();
        if !collapsed.is_empty() {
            let _ = writeln!(
                s,
                "<p class=\"warning\" id=\"collapsed\">Collapsed onto one rating: {}. S can fall here although persona differentiation is lost.</p>",
                esc(&collapsed.join(", "))
            );
        }
        s.push_str(&distribution_table(d));
    }
    if !d.curves.is_empty() {
        s.push_str("<h3>Logprob curves</h3>\n");
        s.push_str(&curve_table(d));
    }
    s.push_str("</section>\n<section id=\"provenance\">\n<h2>Spec, cost and provenance</h2>\n");
    s.push_str(&provenance(d));
    let _ = write!(
        s,
        "</section>\n</main>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n"
    );
    s
}

fn strip_xml_decl(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}
