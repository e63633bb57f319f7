//! Variant comparison: deltas against each family's base and the insecure-minus-secure excess.

use super::*;
use crate::formats::{fmt_float, fmt_temperature, is_provider_default};
use crate::metrics::{excess, pct_change, Band, Histogram};
use moralsweep_common::instrument::Group;
use std::collections::BTreeMap;

/// Why a family at one temperature has no deltas: no base at that
/// temperature. Names the family's bases at other temperatures (a base at
/// 0.1 and a variant at the provider's default are not compared) and what to
/// align.
fn no_base_warning(family: &str, temperature: f64, overall: &[MetricRow]) -> String {
    let at = |t: f64| {
        if is_provider_default(t) {
            "the provider's default temperature".to_string()
        } else {
            format!("T={}", fmt_float(t))
        }
    };
    let elsewhere: Vec<String> = overall
        .iter()
        .filter(|r| {
            r.family == family
                && r.variant.eq_ignore_ascii_case("base")
                && r.temperature.to_bits() != temperature.to_bits()
        })
        .map(|r| format!("{} at {}", r.model, at(r.temperature)))
        .collect();
    if elsewhere.is_empty() {
        format!(
            "family {family} at {}: no model with variant `base`; no deltas (give one model of the family `variant = \"base\"`)",
            at(temperature)
        )
    } else {
        format!(
            "family {family} at {}: no model with variant `base` at this temperature (the family's base is {}); deltas compare a variant with its base at one temperature: sample the base and its variants with the same `temperature` (all at one number, or all `temperature = \"provider-default\"`)",
            at(temperature),
            elsewhere.join(", ")
        )
    }
}

/// Deltas against each family's base and the insecure-minus-secure excess.
pub(super) fn compare_variants(report: &mut Report) {
    let band_applies = report.s_band_applies();
    let mut groups: BTreeMap<(String, u64), Vec<&MetricRow>> = BTreeMap::new();
    for row in &report.overall {
        if row.family.is_empty() || row.variant.is_empty() {
            continue;
        }
        groups
            .entry((row.family.clone(), row.temperature.to_bits()))
            .or_default()
            .push(row);
    }
    let mut deltas = Vec::new();
    let mut excess_rows = Vec::new();
    let mut warnings = Vec::new();
    for ((family, _), rows) in groups {
        let bases: Vec<&&MetricRow> = rows
            .iter()
            .filter(|r| r.variant.eq_ignore_ascii_case("base"))
            .collect();
        let Some(base) = bases.first() else {
            warnings.push(no_base_warning(
                &family,
                rows[0].temperature,
                &report.overall,
            ));
            continue;
        };
        if bases.len() > 1 {
            warnings.push(format!(
                "family {family}: several base models ({}); deltas use {}",
                bases
                    .iter()
                    .map(|b| b.model.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                base.model
            ));
        }
        let b = &base.metrics;
        let mut family_rows = Vec::new();
        for row in &rows {
            let m = &row.metrics;
            let is_base = row.model == base.model;
            let change = |x: f64, se: f64, bx: f64, bse: f64| {
                if is_base {
                    (0.0, 0.0)
                } else {
                    pct_change(x, se, bx, bse)
                }
            };
            family_rows.push(DeltaRow {
                family: family.clone(),
                variant: row.variant.clone(),
                model: row.model.clone(),
                base_model: base.model.clone(),
                temperature: row.temperature,
                s: m.s,
                s_se: m.s_se(),
                r: m.r(),
                r_se: m.r_se(),
                sigma_bar: m.sigma_bar,
                sigma_bar_se: m.sigma_bar_se(),
                ds_pct: change(m.s, m.s_se(), b.s, b.s_se()),
                dr_pct: change(m.r(), m.r_se(), b.r(), b.r_se()),
                dsigma_pct: change(m.sigma_bar, m.sigma_bar_se(), b.sigma_bar, b.sigma_bar_se()),
                band: band_applies.then(|| Band::of(m.s)),
            });
        }
        let of = |v: &str| -> Vec<&DeltaRow> {
            family_rows
                .iter()
                .filter(|d| d.variant.eq_ignore_ascii_case(v))
                .collect()
        };
        for ins in of("insecure") {
            for sec in of("secure") {
                let bm = &base.metrics;
                excess_rows.push(ExcessRow {
                    family: family.clone(),
                    temperature: ins.temperature,
                    insecure_model: ins.model.clone(),
                    secure_model: sec.model.clone(),
                    ds_pp: excess(ins.s, ins.s_se, sec.s, sec.s_se, bm.s, bm.s_se()),
                    dr_pp: excess(ins.r, ins.r_se, sec.r, sec.r_se, bm.r(), bm.r_se()),
                    dsigma_pp: excess(
                        ins.sigma_bar,
                        ins.sigma_bar_se,
                        sec.sigma_bar,
                        sec.sigma_bar_se,
                        bm.sigma_bar,
                        bm.sigma_bar_se(),
                    ),
                });
            }
        }
        deltas.extend(family_rows);
    }
    deltas.sort_by(|a, b| {
        a.family
            .cmp(&b.family)
            .then(a.variant.cmp(&b.variant))
            .then(a.temperature.total_cmp(&b.temperature))
            .then(a.model.cmp(&b.model))
    });
    for w in &warnings {
        tracing::warn!("{w}");
    }
    report.warnings.extend(warnings);
    report.deltas = deltas;
    report.excess = excess_rows;
}

/// Each variant's divergence from its family's base at the same temperature
/// and for the same group (the first base model by key when there are
/// several, as for the deltas).
pub(super) fn distribution_divergence(report: &mut Report) {
    let mut bases: BTreeMap<(String, u64, Option<Group>), (String, Histogram)> = BTreeMap::new();
    for d in &report.distributions {
        if !d.family.is_empty() && d.variant.eq_ignore_ascii_case("base") {
            bases
                .entry((d.family.clone(), d.temperature.to_bits(), d.group.clone()))
                .or_insert_with(|| (d.model.clone(), d.histogram.clone()));
        }
    }
    for d in &report.distributions {
        if d.group.is_none() && d.histogram.collapsed() {
            if let Some((rating, share)) = d.histogram.modal() {
                report.warnings.push(format!(
                    "{} at T={}: the ratings collapsed onto {rating} ({:.1}% of {}); S can fall while persona differentiation is lost (rating_distributions.csv)",
                    d.model,
                    fmt_temperature(d.temperature),
                    100.0 * share,
                    d.histogram.total()
                ));
            }
        }
    }
    for d in &mut report.distributions {
        if d.family.is_empty() || d.variant.is_empty() {
            continue;
        }
        if let Some((model, h)) =
            bases.get(&(d.family.clone(), d.temperature.to_bits(), d.group.clone()))
        {
            d.base_model = Some(model.clone());
            d.kl_from_base_bits = d.histogram.kl_bits_from(h);
        }
    }
}

/// The checkpoints of each family (models with a `step`), in step order per
/// family and temperature, overall and per group.
pub(super) fn trajectories(report: &mut Report, models: &ModelsMap) {
    let (overall, warnings) = checkpoints(&report.overall, models);
    report.warnings.extend(warnings);
    report.trajectories = overall;
    // The same checkpoints per group; a repeated step was said once above.
    report.group_trajectories = checkpoints(&report.per_foundation, models).0;
}

/// The rows of `metrics` whose model has a step, ordered by family,
/// temperature, group and step, with a warning for each repeated step.
fn checkpoints(metrics: &[MetricRow], models: &ModelsMap) -> (Vec<TrajectoryRow>, Vec<String>) {
    let mut rows: Vec<TrajectoryRow> = metrics
        .iter()
        .filter_map(|r| {
            Some(TrajectoryRow {
                family: r.family.clone(),
                temperature: r.temperature,
                group: r.foundation.clone(),
                step: models.step(&r.model)?,
                model: r.model.clone(),
                variant: r.variant.clone(),
                metrics: r.metrics,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        a.family
            .cmp(&b.family)
            .then(a.temperature.total_cmp(&b.temperature))
            .then(a.group.cmp(&b.group))
            .then(a.step.cmp(&b.step))
            .then(a.model.cmp(&b.model))
    });
    let mut warnings = Vec::new();
    for w in rows.windows(2) {
        if w[0].family == w[1].family
            && w[0].temperature == w[1].temperature
            && w[0].group == w[1].group
            && w[0].step == w[1].step
        {
            warnings.push(format!(
                "family {:?}: {} and {} both have step {}; the trajectory shows both",
                w[0].family, w[0].model, w[1].model, w[0].step
            ));
        }
    }
    (rows, warnings)
}
