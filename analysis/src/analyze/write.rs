//! The metric CSV files: their columns and atomic writing.

use super::read::{
    CURVE_FILES, DELTA_FILES, DISTRIBUTION_FILES, EXCESS_FILES, OVERALL_FILES, SELF_FILES,
    TRAJECTORY_FILES,
};
use super::*;
use crate::formats::{
    fmt_float, fmt_temperature_setting as setting, fmt_temperature_value as tvalue,
};
use crate::metrics::Band;
pub use moralsweep_common::columns::{OVERALL_COLUMNS, SELF_PROFILE_COLUMNS, TRAJECTORY_COLUMNS};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Column names of `dropped.csv`: one row per file, item or persona left
/// out of a file's metrics.
pub const DROPPED_COLUMNS: [&str; 7] = [
    "model",
    "temperature",
    "source_file",
    "dropped",
    "id",
    "reason",
    "temperature_setting",
];

/// Column names of `variant_deltas.csv`.
pub const DELTA_COLUMNS: [&str; 19] = [
    "family",
    "variant",
    "S",
    "S_se",
    "R",
    "R_se",
    "sigma_bar",
    "dS_pct",
    "dR_pct",
    "dsigma_pct",
    "model",
    "base_model",
    "temperature",
    "sigma_bar_se",
    "dS_pct_se",
    "dR_pct_se",
    "dsigma_pct_se",
    "S_band",
    "temperature_setting",
];

/// Column names of `variant_excess.csv`.
pub const EXCESS_COLUMNS: [&str; 11] = [
    "family",
    "temperature",
    "insecure_model",
    "secure_model",
    "excess_dS_pp",
    "excess_dS_pp_se",
    "excess_dR_pp",
    "excess_dR_pp_se",
    "excess_dsigma_pp",
    "excess_dsigma_pp_se",
    "temperature_setting",
];

/// Column names of `temperature_curve_metrics.csv`.
pub const CURVE_COLUMNS: [&str; 14] = [
    "model",
    "temperature",
    "uncertainty",
    "uncertainty_uncertainty",
    "robustness",
    "robustness_uncertainty",
    "susceptibility",
    "susceptibility_uncertainty",
    "personas",
    "questions",
    "family",
    "variant",
    "source_file",
    "temperature_setting",
];

pub(super) fn ids_json<T: std::fmt::Display>(ids: &[T]) -> String {
    let mut s = String::from("[");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{id}");
    }
    s.push(']');
    s
}

/// A row of `trajectories.csv` (with its group after the temperature in the
/// per-group file).
fn trajectory_fields(t: &TrajectoryRow) -> Vec<String> {
    let m = &t.metrics;
    let mut v = vec![t.family.clone(), tvalue(t.temperature)];
    if let Some(g) = &t.group {
        v.push(g.name().to_string());
    }
    v.extend([
        t.step.to_string(),
        t.model.clone(),
        t.variant.clone(),
        fmt_float(m.s),
        fmt_float(m.s_se()),
        fmt_float(m.r()),
        fmt_float(m.r_se()),
        fmt_float(m.sigma_bar),
        fmt_float(m.sigma_bar_se()),
        m.personas.to_string(),
        setting(t.temperature),
    ]);
    v
}

pub(super) fn metric_fields(row: &MetricRow) -> Vec<String> {
    let m = &row.metrics;
    let mut v = vec![row.model.clone(), tvalue(row.temperature)];
    if let Some(f) = &row.foundation {
        v.push(f.name().to_string());
    }
    v.extend([
        fmt_float(m.sigma_bar),
        fmt_float(m.sigma_bar_se()),
        fmt_float(m.r()),
        fmt_float(m.r_se()),
        fmt_float(m.s),
        fmt_float(m.s_se()),
        fmt_float(m.sigma_bar_se_persona),
        fmt_float(m.sigma_bar_se_response),
        fmt_float(m.s_se_persona),
        fmt_float(m.s_se_response),
        m.personas.to_string(),
        m.questions.to_string(),
        m.min_runs.to_string(),
        m.median_runs.to_string(),
        m.max_runs.to_string(),
        row.family.clone(),
        row.variant.clone(),
        Band::of(m.s).name().to_string(),
        ids_json(&row.retained_personas),
        ids_json(&row.retained_items),
        row.source_file.clone(),
        setting(row.temperature),
    ]);
    v
}

/// The columns of `rating_distributions.csv`: one count column per rating
/// of the scale.
fn distribution_header(label: &str, scale: moralsweep_common::instrument::Scale) -> Vec<String> {
    let mut header: Vec<String> = ["model", "temperature", label, "ratings"]
        .map(String::from)
        .to_vec();
    header.extend((scale.min..=scale.max).map(|v| format!("rating_{v}")));
    header.extend(
        [
            "entropy_bits",
            "modal_rating",
            "modal_share",
            "collapsed",
            "family",
            "variant",
            "base_model",
            "kl_from_base_bits",
            "source_file",
            "temperature_setting",
        ]
        .map(String::from),
    );
    header
}

/// A row of `rating_distributions.csv`.
fn distribution_fields(d: &DistributionRow) -> Vec<String> {
    let h = &d.histogram;
    let modal = h.modal();
    let mut v = vec![
        d.model.clone(),
        tvalue(d.temperature),
        d.group
            .as_ref()
            .map(|g| g.name().to_string())
            .unwrap_or_else(|| "all".into()),
        h.total().to_string(),
    ];
    v.extend(h.counts.iter().map(u64::to_string));
    v.extend([
        fmt_float(h.entropy_bits()),
        modal.map(|m| m.0.to_string()).unwrap_or_default(),
        modal.map(|m| fmt_float(m.1)).unwrap_or_default(),
        h.collapsed().to_string(),
        d.family.clone(),
        d.variant.clone(),
        d.base_model.clone().unwrap_or_default(),
        d.kl_from_base_bits.map(fmt_float).unwrap_or_default(),
        d.source_file.clone(),
        setting(d.temperature),
    ]);
    v
}

/// A row of `self_profiles.csv`.
fn self_profile_fields(r: &SelfProfileRow) -> Vec<String> {
    vec![
        r.model.clone(),
        r.family.clone(),
        r.variant.clone(),
        r.self_file.clone(),
        r.profile.foundation.name().to_string(),
        fmt_float(r.profile.mean),
        fmt_float(r.profile.within_question_sd),
        r.profile.questions.to_string(),
        r.temperature.map(tvalue).unwrap_or_default(),
        r.temperature.map(setting).unwrap_or_default(),
    ]
}

/// A row of `variant_deltas.csv`.
fn delta_fields(d: &DeltaRow) -> Vec<String> {
    vec![
        d.family.clone(),
        d.variant.clone(),
        fmt_float(d.s),
        fmt_float(d.s_se),
        fmt_float(d.r),
        fmt_float(d.r_se),
        fmt_float(d.sigma_bar),
        fmt_float(d.ds_pct.0),
        fmt_float(d.dr_pct.0),
        fmt_float(d.dsigma_pct.0),
        d.model.clone(),
        d.base_model.clone(),
        tvalue(d.temperature),
        fmt_float(d.sigma_bar_se),
        fmt_float(d.ds_pct.1),
        fmt_float(d.dr_pct.1),
        fmt_float(d.dsigma_pct.1),
        d.band.map_or("", |b| b.name()).to_string(),
        setting(d.temperature),
    ]
}

/// A row of `dropped.csv`.
fn dropped_fields(d: &DroppedRow) -> Vec<String> {
    vec![
        d.model.clone(),
        d.temperature.map(tvalue).unwrap_or_default(),
        d.source_file.clone(),
        d.what.name().to_string(),
        d.id.map(|i| i.to_string()).unwrap_or_default(),
        d.reason.clone(),
        d.temperature.map(setting).unwrap_or_default(),
    ]
}

/// A row of `variant_excess.csv`.
fn excess_fields(e: &ExcessRow) -> Vec<String> {
    vec![
        e.family.clone(),
        tvalue(e.temperature),
        e.insecure_model.clone(),
        e.secure_model.clone(),
        fmt_float(e.ds_pp.0),
        fmt_float(e.ds_pp.1),
        fmt_float(e.dr_pp.0),
        fmt_float(e.dr_pp.1),
        fmt_float(e.dsigma_pp.0),
        fmt_float(e.dsigma_pp.1),
        setting(e.temperature),
    ]
}

/// A row of the logprob curves file.
fn curve_fields(c: &CurveRow) -> Vec<String> {
    let p = &c.point;
    vec![
        c.model.clone(),
        fmt_float(p.temperature),
        fmt_float(p.sigma_bar),
        fmt_float(p.sigma_bar_se),
        fmt_float(p.r()),
        fmt_float(p.r_se()),
        fmt_float(p.s),
        fmt_float(p.s_se),
        p.personas.to_string(),
        p.questions.to_string(),
        c.family.clone(),
        c.variant.clone(),
        c.source_file.clone(),
        setting(p.temperature),
    ]
}

/// Writes one metric file `name` into `out` (see [`moralsweep_userfs::OutDir`]:
/// never through a link, never over what is not a regular file).
pub(super) fn write_csv(
    out: &moralsweep_userfs::OutDir,
    name: &str,
    header: &[&str],
    rows: &[Vec<String>],
) -> Result<(), AnalyzeError> {
    let path = out.shown(name);
    let io = |error: std::io::Error| AnalyzeError::Io {
        path: path.clone(),
        error,
    };
    let file = out.create_file(name)?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(file);
    let csv_err = |e: csv::Error| io(std::io::Error::other(e.to_string()));
    w.write_record(header).map_err(csv_err)?;
    for r in rows {
        w.write_record(r).map_err(csv_err)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    file.commit()?;
    Ok(())
}

impl Report {
    /// What the instrument's groups are called (`foundation` when no
    /// instrument was recognised).
    pub fn group_label(&self) -> &str {
        self.instrument
            .as_ref()
            .map(|i| i.group_label.as_str())
            .unwrap_or("foundation")
    }

    /// The name of the per-group metrics file:
    /// `persona_moral_metrics_per_foundation.csv` for the MFQ-30,
    /// `persona_moral_metrics_per_domain.csv` for the BFI-44.
    pub fn per_group_file(&self) -> String {
        format!("persona_moral_metrics_per_{}.csv", self.group_label())
    }

    /// Writes the metric files into `out` (created if needed); returns their paths.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, AnalyzeError> {
        let dir = moralsweep_userfs::OutDir::create(out)?;
        let mut written = Vec::new();
        let mut put = |name: &str, header: &[&str], rows: Vec<Vec<String>>| {
            write_csv(&dir, name, header, &rows)?;
            written.push(out.join(name));
            Ok::<(), AnalyzeError>(())
        };
        put(
            OVERALL_FILES[0],
            &OVERALL_COLUMNS,
            self.overall.iter().map(metric_fields).collect(),
        )?;
        // The per-group file and column follow the instrument: foundations
        // for the MFQ-30, domains for the BFI-44.
        let label = self.group_label();
        let mut per_group_header = OVERALL_COLUMNS.to_vec();
        per_group_header.insert(2, label);
        put(
            &self.per_group_file(),
            &per_group_header,
            self.per_foundation.iter().map(metric_fields).collect(),
        )?;
        let scale = self
            .instrument
            .as_ref()
            .map(|i| i.scale)
            .unwrap_or(moralsweep_common::instrument::Scale { min: 0, max: 5 });
        let dist_header = distribution_header(label, scale);
        let dist_header: Vec<&str> = dist_header.iter().map(String::as_str).collect();
        put(
            DISTRIBUTION_FILES[0],
            &dist_header,
            self.distributions
                .iter()
                .filter(|d| d.histogram.scale == scale)
                .map(distribution_fields)
                .collect(),
        )?;
        if !self.trajectories.is_empty() {
            put(
                TRAJECTORY_FILES[0],
                &TRAJECTORY_COLUMNS,
                self.trajectories.iter().map(trajectory_fields).collect(),
            )?;
            // Per group too: `trajectories_per_foundation.csv` (MFQ-30),
            // `trajectories_per_domain.csv` (BFI-44).
            let mut header = TRAJECTORY_COLUMNS.to_vec();
            header.insert(2, label);
            put(
                &format!("trajectories_per_{label}.csv"),
                &header,
                self.group_trajectories
                    .iter()
                    .map(trajectory_fields)
                    .collect(),
            )?;
        }
        let mut self_header = SELF_PROFILE_COLUMNS.to_vec();
        self_header[4] = label;
        put(
            SELF_FILES[0],
            &self_header,
            self.self_profiles.iter().map(self_profile_fields).collect(),
        )?;
        put(
            DELTA_FILES[0],
            &DELTA_COLUMNS,
            self.deltas.iter().map(delta_fields).collect(),
        )?;
        put(
            "dropped.csv",
            &DROPPED_COLUMNS,
            self.dropped.iter().map(dropped_fields).collect(),
        )?;
        if !self.excess.is_empty() {
            put(
                EXCESS_FILES[0],
                &EXCESS_COLUMNS,
                self.excess.iter().map(excess_fields).collect(),
            )?;
        }
        if !self.curves.is_empty() {
            put(
                CURVE_FILES[0],
                &CURVE_COLUMNS,
                self.curves.iter().map(curve_fields).collect(),
            )?;
        }
        if !self.comparisons.is_empty() {
            write_comparisons(&dir, &self.comparisons)?;
            written.push(out.join(COMPARISONS_FILE));
        }
        Ok(written)
    }
}
