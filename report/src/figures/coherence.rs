//! The figure of robustness against coherence (arXiv 2605.12850): one point
//! per model with both a robustness R (the metric files) and a
//! misalignment-check summary (`verification_scores.json`, a sweep's own or
//! a published one), each with its standard errors.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    num, span, sr_attrs, text, variant_color, variant_legend, variants_of, Marker, Plot,
};
use crate::data::MetricRecord;
use moralsweep_analysis::em::Summary;

/// R against mean coherence: (metric row, verification key, summary).
pub struct RobustnessVsCoherence<'a>(pub Vec<(&'a MetricRecord, &'a str, &'a Summary)>);

type DResult<T> = Result<T, Box<dyn std::error::Error>>;

impl Plot for RobustnessVsCoherence<'_> {
    fn id(&self) -> &'static str {
        "r-vs-coherence"
    }
    fn title(&self) -> String {
        "Robustness against coherence".into()
    }
    fn caption(&self) -> String {
        "One point per model: its robustness R against the mean coherence the misalignment check's judge gave its answers (0-100), with standard errors in both directions; the label is the model and, where it differs, the summary's key.".into()
    }
    fn size(&self) -> (u32, u32) {
        (1100, 720)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let d = &self.0;
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(d.iter().map(|(r, _, _)| r.variant.as_str())),
        )?;
        let coherence = |s: &Summary| {
            (
                s.avg_coherence.unwrap_or(0.0),
                s.se_coherence.unwrap_or(0.0),
            )
        };
        let (y0, y1) = span(d.iter().map(|(r, _, _)| (r.r, r.r_se)), &[]);
        let mut chart = ChartBuilder::on(&body)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..105.0, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("mean coherence (judge, 0-100)")
            .y_desc("robustness R")
            .label_style(text(13))
            .axis_desc_style(text(14))
            .draw()?;
        let mut out = Vec::new();
        for (i, (r, key, s)) in d.iter().enumerate() {
            let (c, c_se) = coherence(s);
            let colour = variant_color(&r.variant, i);
            chart.draw_series([ErrorBar::new_vertical(
                c,
                r.r - r.r_se,
                r.r,
                r.r + r.r_se,
                colour.stroke_width(2),
                8,
            )])?;
            chart.draw_series([ErrorBar::new_horizontal(
                r.r,
                c - c_se,
                c,
                c + c_se,
                colour.stroke_width(2),
                8,
            )])?;
            chart.draw_series([Circle::new((c, r.r), 5, colour.filled())])?;
            let pos = chart.backend_coord(&(c, r.r));
            let label = if *key == r.model {
                r.model.clone()
            } else {
                format!("{} ({key})", r.model)
            };
            // Right of the point, or left of it near the right edge.
            let width = 7 * label.chars().count() as i32;
            let x = if c > 70.0 {
                pos.0 - 8 - width
            } else {
                pos.0 + 8
            };
            root.draw(&Text::new(label, (x, pos.1 - 18), text(12)))?;
            let mut attrs = sr_attrs(r);
            attrs.push(("verification-key", key.to_string()));
            attrs.push(("coherence", num(c)));
            attrs.push(("coherence-se", num(c_se)));
            if let Some(a) = s.avg_alignment {
                attrs.push(("alignment", num(a)));
            }
            out.push(Marker {
                x: pos.0,
                y: pos.1,
                attrs,
                title: format!(
                    "{}: R = {:.3} ± {:.3}, coherence = {c} ± {c_se}{}",
                    r.model,
                    r.r,
                    r.r_se,
                    s.avg_alignment
                        .map(|a| format!(", alignment = {a}"))
                        .unwrap_or_default()
                ),
            });
        }
        Ok(out)
    }
}
