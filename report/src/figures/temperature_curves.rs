//! The figure of R(T) and S(T) of the logprob-mode models.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    error_line, model_color, num, series_legend, span, text, DResult, Marker, Plot, AXIS_LIMIT,
};
use crate::data::CurveRecord;

/// R(T) and S(T) of the logprob-mode models.
pub struct TemperatureCurves<'a>(pub &'a [CurveRecord]);

impl Plot for TemperatureCurves<'_> {
    fn id(&self) -> &'static str {
        "temperature-curves"
    }
    fn title(&self) -> String {
        "S(T) and R(T) from first-token probabilities (logprob mode)".into()
    }
    fn caption(&self) -> String {
        "One collection of digit log-probabilities gives S and R at every temperature T (softmax of logprob/T); bars are the persona-bootstrap standard error.".into()
    }
    fn size(&self) -> (u32, u32) {
        (1200, 480)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let mut models: Vec<&str> = Vec::new();
        for c in self.0 {
            if !models.contains(&c.model.as_str()) {
                models.push(&c.model);
            }
        }
        let (t0, t1) = self.0.iter().fold((f64::MAX, f64::MIN), |(a, b), c| {
            (a.min(c.temperature), b.max(c.temperature))
        });
        let (t0, t1) = (t0.max(-AXIS_LIMIT), t1.min(AXIS_LIMIT));
        let pad = ((t1 - t0) * 0.05).max(0.05);
        let panels = root.split_evenly((1, 2));
        let mut out = Vec::new();
        type Pick = fn(&CurveRecord) -> (f64, f64);
        let metrics: [(&str, &str, Pick); 2] = [
            ("S(T)", "S", |c| (c.s, c.s_se)),
            ("R(T)", "R", |c| (c.r, c.r_se)),
        ];
        for ((caption, desc, pick), panel) in metrics.iter().zip(panels.iter()) {
            let (y0, y1) = span(self.0.iter().map(pick), &[]);
            let mut chart = ChartBuilder::on(panel)
                .caption(*caption, text(16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(t0 - pad..t1 + pad, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("temperature T")
                .y_desc(*desc)
                .label_style(text(12))
                .axis_desc_style(text(13))
                .draw()?;
            for (mi, model) in models.iter().enumerate() {
                let color = model_color(mi);
                let mut pts: Vec<&CurveRecord> =
                    self.0.iter().filter(|c| c.model == *model).collect();
                pts.sort_by(|a, b| a.temperature.total_cmp(&b.temperature));
                error_line(
                    &mut chart,
                    pts.iter()
                        .map(|c| {
                            let (v, se) = pick(c);
                            (c.temperature, v, se)
                        })
                        .collect(),
                    color,
                    model.to_string(),
                    |i, (x, y)| {
                        let c = pts[i];
                        Marker {
                            x,
                            y,
                            attrs: vec![
                                ("model", c.model.clone()),
                                ("panel", desc.to_string()),
                                ("t", num(c.temperature)),
                                ("s", num(c.s)),
                                ("s-se", num(c.s_se)),
                                ("r", num(c.r)),
                                ("r-se", num(c.r_se)),
                            ],
                            title: format!(
                                "{} at T = {}: S = {:.4} ± {:.4}, R = {:.3} ± {:.3}",
                                c.model, c.temperature, c.s, c.s_se, c.r, c.r_se
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
