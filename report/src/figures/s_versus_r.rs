//! The figure of S against R: one labelled point per model with both
//! error bars.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    span, sr_attrs, sr_title, text, variant_color, variant_legend, variants_of, DResult, Marker,
    Plot, BAND_FILL,
};
use crate::data::MetricRecord;

/// S against R, one labelled point per model with both error bars.
/// The second field: whether to shade the MFQ-30's S band.
pub struct SVersusR<'a>(pub &'a [MetricRecord], pub bool);

impl Plot for SVersusR<'_> {
    fn id(&self) -> &'static str {
        "s-vs-r"
    }
    fn title(&self) -> String {
        "S against R".into()
    }
    fn caption(&self) -> String {
        format!(
            "One point per model with its standard errors in both directions{}.",
            if self.1 {
                "; the shaded band is 0.66 ≤ S ≤ 0.83"
            } else {
                ""
            }
        )
    }
    fn size(&self) -> (u32, u32) {
        (1100, 720)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let d = self.0;
        let (legend, body) = root.split_vertically(28);
        variant_legend(&legend, &variants_of(d.iter().map(|r| r.variant.as_str())))?;
        let (x0, x1) = span(d.iter().map(|r| (r.r, r.r_se)), &[]);
        let band_top = [moralsweep_analysis::metrics::BAND_HIGH];
        let band_extent: &[f64] = if self.1 { &band_top } else { &[] };
        let (y0, y1) = span(d.iter().map(|r| (r.s, r.s_se)), band_extent);
        let mut chart = ChartBuilder::on(&body)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1 * 1.08, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("robustness R")
            .y_desc("susceptibility S")
            .label_style(text(13))
            .axis_desc_style(text(14))
            .draw()?;
        if self.1 {
            chart.draw_series(std::iter::once(Rectangle::new(
                [
                    (x0, moralsweep_analysis::metrics::BAND_LOW),
                    (x1 * 1.08, moralsweep_analysis::metrics::BAND_HIGH),
                ],
                BAND_FILL.filled(),
            )))?;
        }
        let mut out = Vec::new();
        for (i, r) in d.iter().enumerate() {
            let c = variant_color(&r.variant, i);
            chart.draw_series([ErrorBar::new_vertical(
                r.r,
                r.s - r.s_se,
                r.s,
                r.s + r.s_se,
                c.stroke_width(2),
                8,
            )])?;
            chart.draw_series([ErrorBar::new_horizontal(
                r.s,
                r.r - r.r_se,
                r.r,
                r.r + r.r_se,
                c.stroke_width(2),
                8,
            )])?;
            chart.draw_series([Circle::new((r.r, r.s), 5, c.filled())])?;
            let pos = chart.backend_coord(&(r.r, r.s));
            out.push(Marker {
                x: pos.0,
                y: pos.1,
                attrs: sr_attrs(r),
                title: sr_title(r),
            });
        }
        // Each model's name beside its point, placed so that no name covers
        // another or a point (nearby models had their names drawn over each
        // other).
        let points: Vec<(i32, i32)> = out.iter().map(|m| (m.x, m.y)).collect();
        // The boxes as a browser draws the text (its font may run a little
        // wider than the estimate, and a line is taller than the glyphs).
        let sizes = d
            .iter()
            .map(|r| {
                root.estimate_text_size(&r.model, &text(12))
                    .map(|(w, _)| (w + w / 8 + 6, 18))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let at = super::labels::place(&points, &sizes, (xs.start, ys.start, xs.end, ys.end), 6);
        for (r, (x, y)) in d.iter().zip(at) {
            root.draw(&Text::new(r.model.clone(), (x + 3, y + 3), text(12)))?;
        }
        Ok(out)
    }
}
