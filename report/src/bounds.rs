//! What keeps a report bounded whatever the metric files hold: a sweep of
//! more models than a figure can show gets tables only (no page of hundreds
//! of megabytes, no PNG hundreds of thousands of pixels tall), and a finite
//! value of any size is clipped at the figure's edge (plotters needs a
//! finite axis), each said on the page.

use std::collections::BTreeSet;

use crate::ReportData;

/// The largest magnitude an axis reaches: values and error bars beyond it
/// are clipped (the page says so; its tables give them whole).
pub const AXIS_LIMIT: f64 = 1e300;

/// The most models whose figures are drawn; past it the report has tables only.
pub const MAX_FIGURE_MODELS: usize = 500;

/// The number of models, when over [`MAX_FIGURE_MODELS`].
pub fn too_many_models(d: &ReportData) -> Option<usize> {
    let models: BTreeSet<&str> = d
        .overall
        .iter()
        .chain(d.per_foundation.iter())
        .map(|r| r.model.as_str())
        .chain(d.self_profiles.iter().map(|r| r.model.as_str()))
        .chain(d.curves.iter().map(|r| r.model.as_str()))
        .collect();
    (models.len() > MAX_FIGURE_MODELS).then_some(models.len())
}

/// Whether a value or error bar of the drawn metrics lies past the axes'
/// limit (it is then clipped at the figure's edge).
pub fn clipped(d: &ReportData) -> bool {
    let big = |v: f64, se: f64| {
        v.is_finite() && (v.abs() + if se.is_finite() { se.abs() } else { 0.0 }) > AXIS_LIMIT
    };
    d.overall
        .iter()
        .chain(d.per_foundation.iter())
        .any(|r| big(r.s, r.s_se) || big(r.r, r.r_se) || big(r.sigma_bar, r.sigma_bar_se))
        || d.curves
            .iter()
            .any(|c| big(c.s, c.s_se) || big(c.r, c.r_se) || big(c.temperature, 0.0))
}

/// The page's notes on what it leaves out or clips.
pub fn notes(d: &ReportData) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(n) = too_many_models(d) {
        v.push(format!(
            "This sweep has {n} models, more than the {MAX_FIGURE_MODELS} a figure can show: the figures are left \
             out (and no figure files written); the tables below give every number."
        ));
    } else if clipped(d) {
        v.push(format!(
            "Some values or error bars are larger than {AXIS_LIMIT:e} in magnitude: the figures clip them at their \
             edge; the tables below give them whole."
        ));
    }
    v
}

fn clip(x: &mut f64) {
    if x.is_finite() {
        *x = x.clamp(-AXIS_LIMIT, AXIS_LIMIT);
    }
}

fn clip_opt(x: &mut Option<f64>) {
    if let Some(v) = x {
        clip(v);
    }
}

/// The data the figures draw: every finite value and error bar clipped to
/// the axes' limit (plotters maps a value far past its axis to a pixel
/// beyond `i32`); the tables show `d` itself, whole.
pub fn for_figures(d: &ReportData) -> std::borrow::Cow<'_, ReportData> {
    if !clipped(d)
        && !d.deltas.iter().any(|r| {
            [r.s, r.s_se, r.r, r.r_se, r.ds, r.dr, r.dsigma]
                .iter()
                .any(|v| v.abs() > AXIS_LIMIT)
        })
        && !d.trajectories.iter().any(|r| {
            [r.s, r.s_se, r.r, r.r_se, r.step, r.sigma_bar]
                .iter()
                .any(|v| v.abs() > AXIS_LIMIT)
        })
        && !d
            .self_profiles
            .iter()
            .any(|r| r.mean.abs() > AXIS_LIMIT || r.sd.abs() > AXIS_LIMIT)
    {
        return std::borrow::Cow::Borrowed(d);
    }
    let mut c = d.clone();
    for r in c.overall.iter_mut().chain(c.per_foundation.iter_mut()) {
        for x in [
            &mut r.s,
            &mut r.s_se,
            &mut r.r,
            &mut r.r_se,
            &mut r.sigma_bar,
            &mut r.sigma_bar_se,
        ] {
            clip(x);
        }
    }
    for r in &mut c.curves {
        for x in [
            &mut r.temperature,
            &mut r.s,
            &mut r.s_se,
            &mut r.r,
            &mut r.r_se,
            &mut r.sigma_bar,
            &mut r.sigma_bar_se,
        ] {
            clip(x);
        }
    }
    for r in &mut c.deltas {
        for x in [
            &mut r.s,
            &mut r.s_se,
            &mut r.r,
            &mut r.r_se,
            &mut r.sigma_bar,
            &mut r.ds,
            &mut r.dr,
            &mut r.dsigma,
        ] {
            clip(x);
        }
        for x in [&mut r.ds_se, &mut r.dr_se, &mut r.dsigma_se] {
            clip_opt(x);
        }
    }
    for r in &mut c.trajectories {
        for x in [
            &mut r.step,
            &mut r.s,
            &mut r.s_se,
            &mut r.r,
            &mut r.r_se,
            &mut r.sigma_bar,
            &mut r.sigma_bar_se,
        ] {
            clip(x);
        }
    }
    for r in &mut c.self_profiles {
        clip(&mut r.mean);
        clip(&mut r.sd);
    }
    std::borrow::Cow::Owned(c)
}
