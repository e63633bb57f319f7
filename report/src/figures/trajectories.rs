//! The figure of S, R and sigma-bar of a family's checkpoints against
//! training step.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    error_line, model_color, num, series_legend, span, text, DResult, Marker, Plot, AXIS_LIMIT,
};
use crate::data::TrajectoryRecord;

/// S, R and sigma-bar of a family's checkpoints against training step, one
/// line per family (and temperature), with one-standard-error bars.
pub struct Trajectories<'a>(pub &'a [TrajectoryRecord]);

impl Plot for Trajectories<'_> {
    fn id(&self) -> &'static str {
        "trajectories"
    }
    fn title(&self) -> String {
        "S, R and σ̄ across a fine-tune's checkpoints".into()
    }
    fn caption(&self) -> String {
        "Each line is one family's checkpoints (models with a `step`) in step order; bars are one standard error.".into()
    }
    fn size(&self) -> (u32, u32) {
        (1500, 460)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let line_of = |t: &TrajectoryRecord| match t.temperature {
            Some(temp) => format!(
                "{} (T={})",
                t.family,
                moralsweep_analysis::formats::fmt_temperature(temp)
            ),
            None => t.family.clone(),
        };
        let mut lines: Vec<String> = Vec::new();
        for t in self.0 {
            let l = line_of(t);
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        let (x0, x1) = self.0.iter().fold((f64::MAX, f64::MIN), |(a, b), t| {
            (a.min(t.step), b.max(t.step))
        });
        let (x0, x1) = (x0.max(-AXIS_LIMIT), x1.min(AXIS_LIMIT));
        let pad = ((x1 - x0) * 0.05).max(0.5);
        let panels = root.split_evenly((1, 3));
        let mut out = Vec::new();
        type Pick = fn(&TrajectoryRecord) -> (f64, f64);
        let metrics: [(&str, Pick); 3] = [
            ("S", |t| (t.s, t.s_se)),
            ("R", |t| (t.r, t.r_se)),
            ("σ̄", |t| (t.sigma_bar, t.sigma_bar_se)),
        ];
        for ((desc, pick), panel) in metrics.iter().zip(panels.iter()) {
            let (y0, y1) = span(self.0.iter().map(pick), &[]);
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{desc} against step"), text(16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0 - pad..x1 + pad, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("training step")
                .y_desc(*desc)
                .label_style(text(12))
                .axis_desc_style(text(13))
                .draw()?;
            for (li, line) in lines.iter().enumerate() {
                let color = model_color(li);
                let pts: Vec<&TrajectoryRecord> =
                    self.0.iter().filter(|t| &line_of(t) == line).collect();
                error_line(
                    &mut chart,
                    pts.iter()
                        .map(|t| {
                            let (v, se) = pick(t);
                            (t.step, v, se)
                        })
                        .collect(),
                    color,
                    line.clone(),
                    |i, (x, y)| {
                        let t = pts[i];
                        Marker {
                            x,
                            y,
                            attrs: vec![
                                ("model", t.model.clone()),
                                ("panel", desc.to_string()),
                                ("step", num(t.step)),
                                ("s", num(t.s)),
                                ("r", num(t.r)),
                            ],
                            title: format!(
                                "{} at step {}: S = {:.4} ± {:.4}, R = {:.3} ± {:.3}, σ̄ = {:.4} ± {:.4}",
                                t.model, t.step, t.s, t.s_se, t.r, t.r_se, t.sigma_bar, t.sigma_bar_se
                            ),
                        }
                    },
                    &mut out,
                )?;
            }
            series_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(out)
    }
}
