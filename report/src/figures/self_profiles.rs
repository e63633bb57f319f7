//! The figure of the self profiles (no persona): per group, the mean
//! rating with the mean within-question standard deviation, one panel per
//! family.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    num, short_foundation, text, variant_color, variant_legend, variants_of, DResult, Marker, Plot,
    BASE,
};
use crate::data::{display_order, SelfRecord};

/// Self profiles (no persona): per foundation, the mean rating with the
/// mean within-question standard deviation, one panel per family.
pub struct SelfProfiles<'a> {
    pub rows: &'a [SelfRecord],
    pub foundations: Vec<String>,
    /// What a group is called: `foundation` (MFQ-30), `domain` (BFI-44).
    pub group: String,
}

impl SelfProfiles<'_> {
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        // (family, models in display order)
        let order = display_order(self.rows, |r| (&r.family, &r.variant, &r.model));
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for i in order {
            let r = &self.rows[i];
            let f = if r.family.is_empty() {
                r.model.clone()
            } else {
                r.family.clone()
            };
            match groups.iter_mut().find(|g| g.0 == f) {
                Some(g) => {
                    if !g.1.contains(&r.model) {
                        g.1.push(r.model.clone())
                    }
                }
                None => groups.push((f, vec![r.model.clone()])),
            }
        }
        groups
    }
}

impl SelfProfiles<'_> {
    /// The legend strip below each panel: room for the most models of a
    /// family, two per row.
    fn legend_height(&self) -> u32 {
        let most = self.groups().iter().map(|g| g.1.len()).max().unwrap_or(1);
        super::labels::legend_height(most, 2)
    }
}

impl Plot for SelfProfiles<'_> {
    fn id(&self) -> &'static str {
        "self-profiles"
    }
    fn title(&self) -> String {
        if self.group == "foundation" {
            "Moral foundations profile without a persona (self mode)".into()
        } else {
            format!("Profile per {} without a persona (self mode)", self.group)
        }
    }
    fn caption(&self) -> String {
        format!("Per {}: the mean over its items of the item's mean rating (reverse-keyed items reversed); bars are the mean within-item standard deviation.", self.group)
    }
    fn size(&self) -> (u32, u32) {
        let g = self.groups().len().max(1) as u32;
        let cols = g.min(2);
        (
            cols * 600,
            28 + g.div_ceil(cols) * (340 + self.legend_height()),
        )
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let groups = self.groups();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(self.rows.iter().map(|r| r.variant.as_str())),
        )?;
        let cols = groups.len().clamp(1, 2);
        let panels = body.split_evenly((groups.len().div_ceil(cols).max(1), cols));
        let nf = self.foundations.len().max(1);
        let labels = self.foundations.clone();
        let mut out = Vec::new();
        let legend_h = self.legend_height();
        for ((family, models), panel) in groups.iter().zip(panels.iter()) {
            // The legend gets a strip below the chart: inside it, it
            // covered the points of low means.
            let h = panel.dim_in_pixel().1;
            let (panel, legend_area) = panel.split_vertically(h.saturating_sub(legend_h));
            let entries: Vec<(String, RGBColor)> = models
                .iter()
                .enumerate()
                .map(|(j, model)| {
                    let c = self
                        .rows
                        .iter()
                        .find(|r| &r.model == model)
                        .map(|r| variant_color(&r.variant, j))
                        .unwrap_or(BASE);
                    (model.clone(), c)
                })
                .collect();
            super::labels::legend_strip(&legend_area, &entries, 2)?;
            let mut chart = ChartBuilder::on(&panel)
                .caption(family, text(16))
                .margin(10)
                .x_label_area_size(32)
                .y_label_area_size(40)
                .build_cartesian_2d(-0.5f64..nf as f64 - 0.5, 0f64..5.4f64)?;
            let fmt = |x: &f64| {
                let k = x.round();
                if (x - k).abs() < 1e-6 && k >= 0.0 && (k as usize) < labels.len() {
                    short_foundation(&labels[k as usize])
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .x_labels(nf)
                .x_label_formatter(&fmt)
                .disable_x_mesh()
                .y_desc("mean rating")
                .label_style(text(12))
                .axis_desc_style(text(13))
                .draw()?;
            let m = models.len() as f64;
            for (j, model) in models.iter().enumerate() {
                let offset = if m > 1.0 {
                    (j as f64 - (m - 1.0) / 2.0) * (0.6 / m)
                } else {
                    0.0
                };
                let mut line = Vec::new();
                for (fi, f) in self.foundations.iter().enumerate() {
                    let Some(r) = self
                        .rows
                        .iter()
                        .find(|r| &r.model == model && &r.foundation == f)
                    else {
                        continue;
                    };
                    let c = variant_color(&r.variant, j);
                    let x = fi as f64 + offset;
                    chart.draw_series([ErrorBar::new_vertical(
                        x,
                        r.mean - r.sd,
                        r.mean,
                        r.mean + r.sd,
                        c.stroke_width(2),
                        6,
                    )])?;
                    chart.draw_series([Circle::new((x, r.mean), 5, c.filled())])?;
                    line.push((x, r.mean));
                    let pos = chart.backend_coord(&(x, r.mean));
                    out.push(Marker {
                        x: pos.0,
                        y: pos.1,
                        attrs: vec![
                            ("model", r.model.clone()),
                            ("family", r.family.clone()),
                            ("variant", r.variant.clone()),
                            ("foundation", r.foundation.clone()),
                            ("mean", num(r.mean)),
                            ("sd", num(r.sd)),
                        ],
                        title: format!(
                            "{} ({}): mean {:.3}, within-item sd {:.3}",
                            r.model, r.foundation, r.mean, r.sd
                        ),
                    });
                }
                let c = self
                    .rows
                    .iter()
                    .find(|r| &r.model == model)
                    .map(|r| variant_color(&r.variant, j))
                    .unwrap_or(BASE);
                chart.draw_series(LineSeries::new(line, c.mix(0.5).stroke_width(1)))?;
            }
        }
        Ok(out)
    }
}
