//! The rows `analyze` computes, one type per output file, and the [`Report`] holding them.

use crate::metrics::{Band, CurvePoint, FoundationProfile, Histogram, ScopeMetrics};
use moralsweep_common::instrument::{Group, Instrument};
use std::sync::Arc;

/// One row of `persona_moral_metrics.csv` (foundation `None`) or of
/// `persona_moral_metrics_per_foundation.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub model: String,
    pub temperature: f64,
    /// The group (foundation, domain) of a per-group row.
    pub foundation: Option<Group>,
    pub metrics: ScopeMetrics,
    pub family: String,
    pub variant: String,
    pub retained_personas: Vec<u32>,
    pub retained_items: Vec<u8>,
    pub source_file: String,
}

/// One row of `self_profiles.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfProfileRow {
    pub model: String,
    pub family: String,
    pub variant: String,
    pub self_file: String,
    pub temperature: Option<f64>,
    pub profile: FoundationProfile,
}

/// One row of `variant_deltas.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaRow {
    pub family: String,
    pub variant: String,
    pub model: String,
    pub base_model: String,
    pub temperature: f64,
    pub s: f64,
    pub s_se: f64,
    pub r: f64,
    pub r_se: f64,
    pub sigma_bar: f64,
    pub sigma_bar_se: f64,
    /// Percent changes against the base and their propagated standard errors.
    pub ds_pct: (f64, f64),
    pub dr_pct: (f64, f64),
    pub dsigma_pct: (f64, f64),
    /// Where S falls against the MFQ-30 band of frontier base models;
    /// `None` for another instrument (the band is the MFQ's).
    pub band: Option<Band>,
}

/// One row of `variant_excess.csv`: `dX_insecure - dX_secure` in percentage points.
#[derive(Debug, Clone, PartialEq)]
pub struct ExcessRow {
    pub family: String,
    pub temperature: f64,
    pub insecure_model: String,
    pub secure_model: String,
    pub ds_pp: (f64, f64),
    pub dr_pp: (f64, f64),
    pub dsigma_pp: (f64, f64),
}

/// One row of `temperature_curve_metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRow {
    pub model: String,
    pub family: String,
    pub variant: String,
    pub point: CurvePoint,
    pub source_file: String,
}

/// What a [`DroppedRow`] left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dropped {
    /// A whole rating file gave no metrics.
    File,
    /// An MFQ-30 item (by id) is not in the metrics of a file.
    Item,
    /// A persona (by id) is not in the metrics of a file.
    Persona,
}

impl Dropped {
    pub fn name(self) -> &'static str {
        match self {
            Dropped::File => "file",
            Dropped::Item => "item",
            Dropped::Persona => "persona",
        }
    }
}

/// One row of `dropped.csv`: a file, item or persona a file's metrics leave
/// out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedRow {
    pub model: String,
    /// The file's temperature, when its name gives one.
    pub temperature: Option<f64>,
    pub source_file: String,
    pub what: Dropped,
    /// The persona or item id (`None` for a file).
    pub id: Option<u32>,
    pub reason: String,
}

/// One row of `rating_distributions.csv`: the rating histogram of one
/// sampling file, overall (`group` `None`) or for one group of items, with
/// its entropy, modal share and divergence from the family's base.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributionRow {
    pub model: String,
    pub temperature: f64,
    pub group: Option<Group>,
    pub family: String,
    pub variant: String,
    /// Every valid rating of the file (all its personas), by rating.
    pub histogram: Histogram,
    /// The family's base model, for a variant that has one at the same
    /// temperature.
    pub base_model: Option<String>,
    /// `KL(variant || base)` in bits, Laplace-smoothed.
    pub kl_from_base_bits: Option<f64>,
    pub source_file: String,
}

/// One row of `trajectories.csv`: a checkpoint (a model with a `step`) of
/// a family, with its S, R and sigma-bar and their standard errors.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryRow {
    pub family: String,
    pub temperature: f64,
    /// The group (foundation, domain) of a per-group row; `None` overall.
    pub group: Option<Group>,
    pub step: u64,
    pub model: String,
    pub variant: String,
    pub metrics: ScopeMetrics,
}

/// Everything `analyze` computed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The instrument of the rating files (`None` when no sampling or self
    /// file was analysed).
    pub instrument: Option<Arc<Instrument>>,
    pub overall: Vec<MetricRow>,
    pub per_foundation: Vec<MetricRow>,
    pub self_profiles: Vec<SelfProfileRow>,
    pub deltas: Vec<DeltaRow>,
    pub excess: Vec<ExcessRow>,
    pub curves: Vec<CurveRow>,
    /// Per family and temperature, its checkpoints in step order.
    pub trajectories: Vec<TrajectoryRow>,
    /// The same per group (foundation, domain): per family, temperature and
    /// group, in step order.
    pub group_trajectories: Vec<TrajectoryRow>,
    /// Rating distributions per model, temperature and group.
    pub distributions: Vec<DistributionRow>,
    /// Paired comparisons of each variant with its base (`comparisons.csv`).
    pub comparisons: Vec<super::ComparisonRow>,
    /// Problems that did not stop the analysis (also logged).
    pub warnings: Vec<String>,
    /// The files, items and personas left out of the metrics, and why
    /// (`dropped.csv`).
    pub dropped: Vec<DroppedRow>,
    /// What the directory scan skipped (links to directories, dangling
    /// links, files that are not rating files).
    pub notes: Vec<String>,
}

impl Report {
    /// Whether the S band (0.66 <= S <= 0.83, where prior work found 13
    /// frontier base models on the MFQ-30) applies: the MFQ-30, or
    /// logprob-only data (always MFQ-30). Another instrument's S has no
    /// such reference.
    pub fn s_band_applies(&self) -> bool {
        self.instrument
            .as_ref()
            .is_none_or(|i| i.name == moralsweep_common::instrument::DEFAULT_INSTRUMENT)
    }
}
