//! The figure of S and R per model, with their standard errors, grouped
//! by family (two forest panels).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    forest, grouped_rows, model_key, sr_attrs, sr_title, variant_color, variant_legend,
    variants_of, DResult, Marker, Plot,
};
use crate::data::MetricRecord;

/// S and R per model with their standard errors, grouped by family.
/// The second field: whether to shade the MFQ-30's S band.
pub struct SrByModel<'a>(pub &'a [MetricRecord], pub bool);

impl Plot for SrByModel<'_> {
    fn id(&self) -> &'static str {
        "sr-by-model"
    }
    fn title(&self) -> String {
        "Moral susceptibility S and robustness R per model".into()
    }
    fn caption(&self) -> String {
        let band = if self.1 {
            " The shaded band is 0.66 ≤ S ≤ 0.83, where prior work found 13 frontier base models."
        } else {
            ""
        };
        format!(
            "Points are the estimates, bars one standard error (persona and rerun bootstraps combined). \
             Models are grouped by family, base first.{band}"
        )
    }
    fn size(&self) -> (u32, u32) {
        let rows = grouped_rows(self.0, model_key).len() as u32;
        (1100, 110 + rows * 26)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let rows = grouped_rows(self.0, model_key);
        let labels: Vec<String> = rows
            .iter()
            .map(|r| r.map(|i| self.0[i].model.clone()).unwrap_or_default())
            .collect();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(self.0.iter().map(|r| r.variant.as_str())),
        )?;
        let (w, _) = body.dim_in_pixel();
        let (left, right) = body.split_horizontally(w * 56 / 100);
        let color = |i: usize| variant_color(&self.0[i].variant, i);
        let s_points: Vec<_> = rows
            .iter()
            .map(|r| r.map(|i| (self.0[i].s, Some(self.0[i].s_se), color(i))))
            .collect();
        let r_points: Vec<_> = rows
            .iter()
            .map(|r| r.map(|i| (self.0[i].r, Some(self.0[i].r_se), color(i))))
            .collect();
        let ps = forest(
            &left,
            "Susceptibility S",
            "S",
            &labels,
            &s_points,
            220,
            self.1.then_some((
                moralsweep_analysis::metrics::BAND_LOW,
                moralsweep_analysis::metrics::BAND_HIGH,
            )),
            false,
        )?;
        let pr = forest(
            &right,
            "Robustness R",
            "R",
            &labels,
            &r_points,
            8,
            None,
            false,
        )?;
        let mut out = Vec::new();
        let idx: Vec<usize> = rows.iter().flatten().copied().collect();
        for (k, &i) in idx.iter().enumerate() {
            for (panel, pos) in [("S", ps[k]), ("R", pr[k])] {
                let mut attrs = sr_attrs(&self.0[i]);
                attrs.push(("panel", panel.into()));
                out.push(Marker {
                    x: pos.0,
                    y: pos.1,
                    attrs,
                    title: sr_title(&self.0[i]),
                });
            }
        }
        Ok(out)
    }
}
