//! The papers' figures, drawn with plotters: once into an SVG string (for
//! the page and `figures/*.svg`) and once into a PNG (`figures/*.png`).
//!
//! Each figure is a [`Plot`]: it draws on any plotters backend and returns
//! the pixel position of every value it plotted, with that value's numbers.
//! The SVG gets one invisible marker per plotted value at that position,
//! carrying the numbers as `data-*` attributes (exactly as read from the
//! CSV) and a `<title>` tooltip, so a reader hovering a point sees its value
//! and a test can check every plotted value against the metric files.
//!
//! The drawing kit is `kit.rs`; each figure is a module of its own, and
//! [`all`] draws those the data allows.

mod coherence;
pub(crate) mod kit;
mod labels;
mod paired;
mod per_foundation;
mod s_versus_r;
mod self_profiles;
mod sr_by_model;
mod temperature_curves;
mod trajectories;
mod variant_deltas;

pub use coherence::RobustnessVsCoherence;
pub use kit::{esc, num, render, Figure, Marker, Plot, AXIS_LIMIT};
pub use paired::PairedChanges;
pub use per_foundation::PerFoundation;
pub use s_versus_r::SVersusR;
pub use self_profiles::SelfProfiles;
pub use sr_by_model::SrByModel;
pub use temperature_curves::TemperatureCurves;
pub use trajectories::Trajectories;
pub use variant_deltas::VariantDeltas;

use crate::data::ReportData;
use crate::ReportError;

/// The foundations present in `names`, in questionnaire order first.
pub fn foundation_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let found: Vec<&str> = names.collect();
    for f in moralsweep_common::Foundation::ALL {
        if found.contains(&f.name()) {
            out.push(f.name().to_string());
        }
    }
    for f in found {
        if !out.iter().any(|x| x == f) {
            out.push(f.to_string());
        }
    }
    out
}

/// Every figure the data allows, drawn (with PNGs into `png_dir` when given).
pub fn all(d: &ReportData, png: bool) -> Result<Vec<Figure>, ReportError> {
    if crate::bounds::too_many_models(d).is_some() {
        // Tables only; the page says why.
        return Ok(Vec::new());
    }
    let d = &*crate::bounds::for_figures(d);
    let mut figs = Vec::new();
    if !d.overall.is_empty() {
        let p = SrByModel(&d.overall, d.s_band_applies());
        figs.push(render(&p, png)?);
        let p = SVersusR(&d.overall, d.s_band_applies());
        figs.push(render(&p, png)?);
    }
    if !d.per_foundation.is_empty() {
        let p = PerFoundation {
            rows: &d.per_foundation,
            foundations: foundation_order(
                d.per_foundation
                    .iter()
                    .filter_map(|r| r.foundation.as_deref()),
            ),
            group: d.group_label().to_string(),
        };
        figs.push(render(&p, png)?);
    }
    if d.deltas.iter().any(|r| r.variant != "base") {
        let p = VariantDeltas(&d.deltas);
        figs.push(render(&p, png)?);
    }
    if !d.self_profiles.is_empty() {
        let p = SelfProfiles {
            rows: &d.self_profiles,
            foundations: foundation_order(d.self_profiles.iter().map(|r| r.foundation.as_str())),
            group: d.group_label().to_string(),
        };
        figs.push(render(&p, png)?);
    }
    if !d.curves.is_empty() {
        let p = TemperatureCurves(&d.curves);
        figs.push(render(&p, png)?);
    }
    if !d.trajectories.is_empty() {
        let p = Trajectories(&d.trajectories);
        figs.push(render(&p, png)?);
    }
    if d.comparisons.iter().any(|r| r.group == "overall") {
        let p = PairedChanges(&d.comparisons);
        figs.push(render(&p, png)?);
    }
    let verified = d.verified();
    if !verified.is_empty() {
        let p = RobustnessVsCoherence(verified);
        figs.push(render(&p, png)?);
    }
    Ok(figs)
}
