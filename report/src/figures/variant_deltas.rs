//! The figure of each family's variant deltas against its base.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kit::{
    forest, grouped_rows, num, variant_color, variant_legend, variants_of, DResult, Marker, Plot,
};
use crate::data::DeltaRecord;

/// The variant deltas of each family against its base.
pub struct VariantDeltas<'a>(pub &'a [DeltaRecord]);

impl VariantDeltas<'_> {
    fn shown(&self) -> Vec<&DeltaRecord> {
        self.0.iter().filter(|d| d.variant != "base").collect()
    }
}

impl Plot for VariantDeltas<'_> {
    fn id(&self) -> &'static str {
        "variant-deltas"
    }
    fn title(&self) -> String {
        "Change against the base model: dS, dR and dσ̄ (%)".into()
    }
    fn caption(&self) -> String {
        "Relative change of each fine-tuned variant against its family's base, in percent, with the propagated standard error where the metric files carry it.".into()
    }
    fn size(&self) -> (u32, u32) {
        let shown = self.shown();
        let rows = grouped_rows(&shown, |d| (&d.family, &d.variant, &d.family)).len() as u32;
        (1200, 110 + rows * 30)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let shown = self.shown();
        let rows = grouped_rows(&shown, |d| (&d.family, &d.variant, &d.family));
        let labels: Vec<String> = rows
            .iter()
            .map(|r| {
                r.map(|i| format!("{} {}", shown[i].family, shown[i].variant))
                    .unwrap_or_default()
            })
            .collect();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(shown.iter().map(|d| d.variant.as_str())),
        )?;
        let (w, _) = body.dim_in_pixel();
        let first = 200 + (w - 200) / 3;
        let panels = body.split_by_breakpoints(
            [first as i32, (first + (w - 200) / 3) as i32],
            [] as [i32; 0],
        );
        type Pick = fn(&DeltaRecord) -> (f64, Option<f64>);
        let metrics: [(&str, &str, Pick); 3] = [
            ("dS (%)", "dS %", |d| (d.ds, d.ds_se)),
            ("dR (%)", "dR %", |d| (d.dr, d.dr_se)),
            ("dσ̄ (%)", "dσ̄ %", |d| (d.dsigma, d.dsigma_se)),
        ];
        let mut positions = Vec::new();
        for (c, ((caption, desc, pick), panel)) in metrics.iter().zip(panels.iter()).enumerate() {
            let points: Vec<_> = rows
                .iter()
                .map(|r| {
                    r.map(|i| {
                        let (v, se) = pick(shown[i]);
                        (v, se, variant_color(&shown[i].variant, i))
                    })
                })
                .collect();
            positions.push(forest(
                panel,
                caption,
                desc,
                &labels,
                &points,
                if c == 0 { 200 } else { 8 },
                None,
                true,
            )?);
        }
        let mut out = Vec::new();
        for (k, &i) in rows.iter().flatten().enumerate() {
            let d = shown[i];
            let opt = |v: Option<f64>| v.map(num).unwrap_or_default();
            for (p, panel) in ["dS", "dR", "dsigma"].iter().enumerate() {
                out.push(Marker {
                    x: positions[p][k].0,
                    y: positions[p][k].1,
                    attrs: vec![
                        ("family", d.family.clone()),
                        ("variant", d.variant.clone()),
                        ("model", d.model.clone().unwrap_or_default()),
                        ("panel", panel.to_string()),
                        ("ds", num(d.ds)),
                        ("ds-se", opt(d.ds_se)),
                        ("dr", num(d.dr)),
                        ("dr-se", opt(d.dr_se)),
                        ("dsigma", num(d.dsigma)),
                        ("dsigma-se", opt(d.dsigma_se)),
                    ],
                    title: format!(
                        "{} {}: dS = {:+.1}%, dR = {:+.1}%, dσ̄ = {:+.1}%",
                        d.family, d.variant, d.ds, d.dr, d.dsigma
                    ),
                });
            }
        }
        Ok(out)
    }
}
