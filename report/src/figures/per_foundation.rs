//! The figure of per-foundation (per-group) S and R of every model: one
//! column per group.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    forest, grouped_rows, model_key, sr_attrs, sr_title, variant_color, variant_legend,
    variants_of, DResult, Marker, Plot,
};
use crate::data::MetricRecord;

/// Per-foundation S and R of every model: one column per foundation.
pub struct PerFoundation<'a> {
    pub rows: &'a [MetricRecord],
    pub foundations: Vec<String>,
    /// What a group is called: `foundation` (MFQ-30), `domain` (BFI-44).
    pub group: String,
}

impl PerFoundation<'_> {
    fn models(&self) -> Vec<&MetricRecord> {
        // One representative row per model, for ordering and labels.
        let mut seen: Vec<&MetricRecord> = Vec::new();
        for r in self.rows {
            if !seen.iter().any(|s| s.model == r.model) {
                seen.push(r);
            }
        }
        seen
    }
}

impl Plot for PerFoundation<'_> {
    fn id(&self) -> &'static str {
        "per-foundation"
    }
    fn title(&self) -> String {
        if self.group == "foundation" {
            "S and R per moral foundation".into()
        } else {
            format!("S and R per {}", self.group)
        }
    }
    fn caption(&self) -> String {
        format!("The same metrics restricted to each {}'s items (the kept personas stay the overall set); bars are one standard error.", self.group)
    }
    fn size(&self) -> (u32, u32) {
        let models = self.models();
        let rows = grouped_rows(&models, |r| model_key(r)).len() as u32;
        let cols = self.foundations.len().max(1) as u32;
        (200 + cols * 250, 28 + 2 * (90 + rows * 18))
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let models = self.models();
        let rows = grouped_rows(&models, |r| model_key(r));
        let labels: Vec<String> = rows
            .iter()
            .map(|r| r.map(|i| models[i].model.clone()).unwrap_or_default())
            .collect();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(models.iter().map(|r| r.variant.as_str())),
        )?;
        let (w, h) = body.dim_in_pixel();
        let cols = self.foundations.len().max(1) as u32;
        let first = 200 + (w - 200) / cols;
        let mut breaks = vec![first];
        for c in 1..cols {
            breaks.push(first + c * ((w - 200) / cols));
        }
        breaks.pop();
        let (top, bottom) = body.split_vertically(h / 2);
        let mut out = Vec::new();
        for (metric, half) in [("S", &top), ("R", &bottom)] {
            let bps: Vec<i32> = breaks.iter().map(|b| *b as i32).collect();
            let panels = half.split_by_breakpoints(bps, [] as [i32; 0]);
            for (c, (foundation, panel)) in self.foundations.iter().zip(panels.iter()).enumerate() {
                let pick = |i: usize| {
                    self.rows.iter().find(|r| {
                        r.model == models[i].model && r.foundation.as_deref() == Some(foundation)
                    })
                };
                let points: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        r.and_then(|i| {
                            pick(i).map(|row| {
                                let c = variant_color(&row.variant, i);
                                if metric == "S" {
                                    (row.s, Some(row.s_se), c)
                                } else {
                                    (row.r, Some(row.r_se), c)
                                }
                            })
                        })
                    })
                    .collect();
                let pos = forest(
                    panel,
                    &format!("{foundation}: {metric}"),
                    metric,
                    &labels,
                    &points,
                    if c == 0 { 200 } else { 8 },
                    None,
                    false,
                )?;
                let mut k = 0;
                for i in rows.iter().flatten() {
                    if let Some(row) = pick(*i) {
                        let mut attrs = sr_attrs(row);
                        attrs.push(("panel", metric.into()));
                        out.push(Marker {
                            x: pos[k].0,
                            y: pos[k].1,
                            attrs,
                            title: sr_title(row),
                        });
                        k += 1;
                    }
                }
            }
        }
        Ok(out)
    }
}
