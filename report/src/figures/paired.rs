//! The figure of the paired comparisons (`comparisons.csv`): per metric, the
//! relative change of each variant against its base over all items, with
//! its 95% bootstrap interval; a filled point holds after Holm's
//! adjustment, a hollow one does not.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{num, span, text, variant_color, Marker, Plot};
use crate::data::ComparisonRecord;
use moralsweep_analysis::analyze::HOLDS_ALPHA;

/// The changes over all items, one panel per metric (S, R, sigma-bar).
pub struct PairedChanges<'a>(pub &'a [ComparisonRecord]);

type DResult<T> = Result<T, Box<dyn std::error::Error>>;

const METRICS: [(&str, &str); 3] = [("S", "ΔS (%)"), ("R", "ΔR (%)"), ("sigma_bar", "Δσ̄ (%)")];

impl PairedChanges<'_> {
    /// The (variant, base) pairs in file order.
    fn pairs(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for r in self.0 {
            if !out.contains(&(r.variant.as_str(), r.base.as_str())) {
                out.push((&r.variant, &r.base));
            }
        }
        out
    }

    fn row(&self, pair: (&str, &str), metric: &str) -> Option<&ComparisonRecord> {
        self.0.iter().find(|r| {
            r.variant == pair.0 && r.base == pair.1 && r.metric == metric && r.group == "overall"
        })
    }
}

impl Plot for PairedChanges<'_> {
    fn id(&self) -> &'static str {
        "paired-changes"
    }
    fn title(&self) -> String {
        "Paired changes against the base, with 95% intervals".into()
    }
    fn caption(&self) -> String {
        format!(
            "Relative change of each model against its base on the personas both answered (all items), with the paired bootstrap's 95% interval. A filled point holds after Holm's adjustment over every comparison of comparisons.csv (p_holm < {HOLDS_ALPHA}); a hollow point does not."
        )
    }
    fn size(&self) -> (u32, u32) {
        (1200, 110 + 30 * self.pairs().len() as u32)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let pairs = self.pairs();
        let n = pairs.len() as i32;
        let labels: Vec<String> = pairs.iter().map(|(v, b)| format!("{v} vs {b}")).collect();
        let (w, _) = root.dim_in_pixel();
        let label_width = 260u32;
        let third = (w - label_width) / 3;
        let panels = root.split_by_breakpoints(
            [
                (label_width + third) as i32,
                (label_width + 2 * third) as i32,
            ],
            [] as [i32; 0],
        );
        let mut out = Vec::new();
        for (c, ((metric, desc), panel)) in METRICS.iter().zip(panels.iter()).enumerate() {
            let rows: Vec<Option<&ComparisonRecord>> =
                pairs.iter().map(|&p| self.row(p, metric)).collect();
            let pct = |x: f64| 100.0 * x;
            let (x0, x1) = span(
                rows.iter().flatten().flat_map(|r| {
                    [
                        (pct(r.relative_ci.0), 0.0),
                        (pct(r.relative_ci.1), 0.0),
                        (pct(r.relative_change), 0.0),
                    ]
                }),
                &[0.0],
            );
            let mut chart = ChartBuilder::on(panel)
                .caption(*desc, text(16))
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(if c == 0 { label_width } else { 8 })
                .build_cartesian_2d(x0..x1, (0..n).into_segmented())?;
            let fmt = |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(y) => labels
                    .get((n - 1 - *y) as usize)
                    .cloned()
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let blank = |_: &SegmentValue<i32>| String::new();
            let mut mesh = chart.configure_mesh();
            mesh.disable_y_mesh()
                .y_labels(n.max(1) as usize)
                .x_labels(6)
                .x_desc(*desc)
                .label_style(text(12))
                .axis_desc_style(text(13));
            if c == 0 {
                mesh.y_label_formatter(&fmt);
            } else {
                mesh.y_label_formatter(&blank);
            }
            mesh.draw()?;
            if x0 < 0.0 && x1 > 0.0 {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
                    RGBColor(110, 110, 110).stroke_width(1),
                )))?;
            }
            for (i, r) in rows.iter().enumerate() {
                let Some(r) = r else { continue };
                let y = SegmentValue::CenterOf(n - 1 - i as i32);
                let colour = variant_color(variant_name(r), i);
                let (lo, v, hi) = (
                    pct(r.relative_ci.0),
                    pct(r.relative_change),
                    pct(r.relative_ci.1),
                );
                if lo.is_finite() && hi.is_finite() {
                    chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                        y.clone(),
                        lo,
                        v,
                        hi,
                        colour.stroke_width(2),
                        8,
                    )))?;
                }
                let style = if r.holds() {
                    colour.filled()
                } else {
                    colour.stroke_width(2)
                };
                chart.draw_series(std::iter::once(Circle::new((v, y.clone()), 5, style)))?;
                let pos = chart.backend_coord(&(v, y));
                out.push(Marker {
                    x: pos.0,
                    y: pos.1,
                    attrs: vec![
                        ("variant", r.variant.clone()),
                        ("base", r.base.clone()),
                        ("metric", r.metric.clone()),
                        ("relative-change", num(r.relative_change)),
                        ("ci-low", num(r.relative_ci.0)),
                        ("ci-high", num(r.relative_ci.1)),
                        ("p-value", num(r.p_value)),
                        ("p-holm", num(r.p_holm)),
                        ("holds", r.holds().to_string()),
                        ("personas-paired", r.personas_paired.to_string()),
                    ],
                    title: format!(
                        "{} vs {}: {} {v:+.1}% [{lo:+.1}%, {hi:+.1}%], p = {:.2e}, Holm {:.2e}{}",
                        r.variant,
                        r.base,
                        r.metric,
                        r.p_value,
                        r.p_holm,
                        if r.holds() { " (holds)" } else { "" }
                    ),
                });
            }
        }
        Ok(out)
    }
}

/// The colour key of a row: the variant's kind when its key names one.
fn variant_name(r: &ComparisonRecord) -> &'static str {
    let v = r.variant.to_ascii_lowercase();
    if v.contains("insecure") || v.contains("misaligned") {
        "insecure"
    } else if v.contains("secure") {
        "secure"
    } else {
        "other"
    }
}
