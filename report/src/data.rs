//! What a report shows, read from the files a sweep or `moralsweep analyze`
//! wrote: the metric CSVs (through `moralsweep_analysis::analyze::read`, by
//! column name, so the published reference files with the papers' columns
//! read as well as ours), the rating files beside them (failures), and the
//! sweep's `provenance.json` when there is one.
//!
//! Every number is kept exactly as parsed from its CSV field, so the values
//! the page carries equal the files to the last bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use moralsweep_analysis::analyze::read::{group_column, CsvTable, TableError};
use moralsweep_analysis::analyze::HOLDS_ALPHA;
use moralsweep_userfs::{read_bounded, read_to_string_bounded};
use sha2::{Digest, Sha256};

use crate::ReportError;

// The files and rows a report shows, as `moralsweep_common` reads them back.
pub use moralsweep_analysis::analyze::read::{
    metrics_dir_of, CurveRecord, DeltaRecord, DistributionRecord, ExcessRecord, MetricRecord,
    SelfRecord, TrajectoryRecord, CURVE_FILES, DELTA_FILES, DISTRIBUTION_FILES, EXCESS_FILES,
    OVERALL_FILES, PER_FOUNDATION_FILES, SELF_FILES, TRAJECTORY_FILES,
};

/// The sweep's provenance (spec, hash, dates, cost), written by `run` and `results`.
pub const PROVENANCE_FILE: &str = "provenance.json";

/// The misalignment check's summaries (`moralsweep_analysis::em`).
pub const VERIFICATION_FILE: &str = moralsweep_analysis::em::file::VERIFICATION_FILE;

impl ReportData {
    /// Reads a `verification_scores.json` (replacing any read before).
    pub fn read_verification(
        &mut self,
        path: &Path,
        sources: &mut Vec<SourceFile>,
    ) -> Result<(), ReportError> {
        let bytes = read_bounded(path, moralsweep_userfs::METRICS_LIMIT).map_err(|source| {
            ReportError::Io {
                path: path.to_path_buf(),
                error: source,
            }
        })?;
        self.verification =
            moralsweep_analysis::em::file::read_verification(path).map_err(|e| {
                ReportError::Data {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                }
            })?;
        sources.retain(|s| s.path.file_name() != path.file_name());
        sources.push(SourceFile {
            path: path.to_path_buf(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            rows: self.verification.len(),
        });
        Ok(())
    }

    /// The overall metric rows with a misalignment-check summary, each with
    /// the summary's key ([`moralsweep_analysis::em::join`]).
    pub fn verified(&self) -> Vec<(&MetricRecord, &str, &moralsweep_analysis::em::Summary)> {
        use moralsweep_analysis::em::join::{match_summaries, MetricModel};
        let models: Vec<MetricModel> = self
            .overall
            .iter()
            .map(|r| MetricModel {
                key: &r.model,
                family: &r.family,
                variant: &r.variant,
            })
            .collect();
        match_summaries(&models, &self.verification)
            .into_iter()
            .zip(&self.overall)
            .filter_map(|(k, r)| {
                let k = k?;
                let s = &self.verification[k];
                s.avg_coherence.is_some().then_some((r, k, s))
            })
            .collect()
    }
}

/// Failed attempts found in one model's rating files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failures {
    /// Rows (answered slots, retries included).
    pub rows: u64,
    /// Sum of the `failures` column: unparsable attempts before a rating.
    pub failed_attempts: u64,
    /// Slots whose rating stayed -1.
    pub unrated: u64,
}

/// A metric file the report read, for the provenance table.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub sha256: String,
    pub rows: usize,
}

/// Everything a report shows.
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    /// The directory the metric files were found in.
    pub metrics_dir: PathBuf,
    pub overall: Vec<MetricRecord>,
    /// Per group (foundation or domain; see `group_label`).
    pub per_foundation: Vec<MetricRecord>,
    pub self_profiles: Vec<SelfRecord>,
    /// Checkpoint trajectories (`trajectories.csv`).
    pub trajectories: Vec<TrajectoryRecord>,
    /// Rating distributions (`rating_distributions.csv`).
    pub distributions: Vec<DistributionRecord>,
    /// What the instrument's groups are called in the files (`foundation`,
    /// `domain`); empty when no per-group file was read.
    pub group_label: String,
    pub deltas: Vec<DeltaRecord>,
    pub excess: Vec<ExcessRecord>,
    pub curves: Vec<CurveRecord>,
    /// Paired comparisons (`comparisons.csv`).
    pub comparisons: Vec<ComparisonRecord>,
    /// Per rating-file model key, when rating files were found.
    pub failures: BTreeMap<String, Failures>,
    /// Where the rating files were read from, if any.
    pub data_dir: Option<PathBuf>,
    /// What the analysis read and how (`analysis.json` beside the metrics):
    /// the rating files' place and hashes, the seed, the bootstrap sizes.
    pub analysis: Option<moralsweep_analysis::analyze::AnalysisRecord>,
    /// `provenance.json` of the sweep, if present.
    pub provenance: Option<serde_json::Value>,
    /// Misalignment-check summaries (`verification_scores.json`: a sweep's
    /// own or a published one), by their key.
    pub verification: BTreeMap<String, moralsweep_analysis::em::Summary>,
    pub sources: Vec<SourceFile>,
}

/// The first of `names` present in `dir`, whatever it is: a folder or FIFO
/// under a metric file's name is then refused by name, not skipped.
fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| std::fs::symlink_metadata(p).is_ok())
}

/// The per-group metrics file: one of the known names (foundations,
/// domains), else the one `persona_moral_metrics_per_<label>.csv` an
/// instrument with its own group label gave (the first by name if there
/// are several).
fn find_per_group(dir: &Path) -> Option<PathBuf> {
    find(dir, &PER_FOUNDATION_FILES).or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name().to_str().is_some_and(|n| {
                    n.strip_prefix("persona_moral_metrics_per_")
                        .and_then(|l| l.strip_suffix(".csv"))
                        .is_some_and(|l| !l.is_empty())
                })
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.into_iter().next()
    })
}

fn load_table(
    dir: &Path,
    names: &[&str],
    sources: &mut Vec<SourceFile>,
) -> Result<Option<CsvTable>, ReportError> {
    load_found(find(dir, names), sources)
}

/// Reads the table at `found` (none: `Ok(None)`), noting it in `sources`.
fn load_found(
    found: Option<PathBuf>,
    sources: &mut Vec<SourceFile>,
) -> Result<Option<CsvTable>, ReportError> {
    let Some(path) = found else {
        return Ok(None);
    };
    let bytes = read_bounded(&path, moralsweep_userfs::METRICS_LIMIT).map_err(|source| {
        ReportError::Io {
            path: path.clone(),
            error: source,
        }
    })?;
    let table = CsvTable::read(&path, &bytes)?;
    sources.push(SourceFile {
        path: path.clone(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        rows: table.len(),
    });
    Ok(Some(table))
}

/// Counts failed attempts and unrated slots per model key in the sampling
/// rating files under `dir` (persona files only; self and logprob files
/// are not part of the S/R table).
pub fn count_failures(dir: &Path) -> Result<BTreeMap<String, Failures>, ReportError> {
    let files = moralsweep_analysis::analyze::scan_dir(dir).map_err(|e| ReportError::Data {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out: BTreeMap<String, Failures> = BTreeMap::new();
    for f in files {
        if !matches!(
            f.kind,
            moralsweep_analysis::formats::FileKind::Sampling { .. }
        ) {
            continue;
        }
        let bytes = read_bounded(&f.path, moralsweep_userfs::RATINGS_LIMIT).map_err(|source| {
            ReportError::Io {
                path: f.path.clone(),
                error: source,
            }
        })?;
        let t = CsvTable::read(&f.path, &bytes)?;
        let rating = t.need("rating")?;
        let failures = t.col("failures");
        let e = out.entry(f.key.clone()).or_default();
        for i in 0..t.len() {
            e.rows += 1;
            if t.text(i, rating) == "-1" {
                e.unrated += 1;
            }
            if let Some(n) = t.opt_count(i, failures)? {
                e.failed_attempts += n;
            }
        }
    }
    Ok(out)
}

impl ReportData {
    /// What a group of items is called (`foundation` unless the files say
    /// otherwise).
    pub fn group_label(&self) -> &str {
        if self.group_label.is_empty() {
            "foundation"
        } else {
            &self.group_label
        }
    }

    /// Whether the S band (0.66-0.83, prior work's frontier base models on
    /// the MFQ-30) applies to these metrics: only for the MFQ-30.
    pub fn s_band_applies(&self) -> bool {
        self.instrument_title() == "MFQ-30"
    }

    /// The instrument the metrics come from, as far as the files tell: the
    /// built-in instrument with their item count and group label, else a
    /// description.
    pub fn instrument_title(&self) -> String {
        let items = self.overall.iter().filter_map(|r| r.questions).max();
        let label = self.group_label();
        let found = moralsweep_common::Instrument::builtins()
            .into_iter()
            .find(|i| i.group_label == label && items.is_none_or(|n| n as usize == i.item_count()));
        match (found, items) {
            (Some(i), _) if i.name == "bfi-44" => "BFI-44".to_string(),
            (Some(_), _) => "MFQ-30".to_string(),
            (None, Some(n)) => format!("{n}-item questionnaire"),
            (None, None) => "questionnaire".to_string(),
        }
    }
}

/// Reads what a report of `dir` shows. `data` overrides where rating files
/// are looked for (default: `dir/data` when it exists).
pub fn load(dir: &Path, data: Option<&Path>) -> Result<ReportData, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NotADirectory(dir.to_path_buf()));
    }
    let metrics_dir = metrics_dir_of(dir);
    let mut d = ReportData {
        metrics_dir: metrics_dir.clone(),
        ..ReportData::default()
    };
    let mut sources = Vec::new();
    if let Some(t) = load_table(&metrics_dir, &OVERALL_FILES, &mut sources)? {
        d.overall = MetricRecord::from_table(&t, false)?;
    }
    if let Some(t) = load_found(find_per_group(&metrics_dir), &mut sources)? {
        d.per_foundation = MetricRecord::from_table(&t, true)?;
        d.group_label = t.headers[group_column(&t)?].clone();
    }
    if let Some(t) = load_table(&metrics_dir, &SELF_FILES, &mut sources)? {
        d.self_profiles = SelfRecord::from_table(&t)?;
        if d.group_label.is_empty() {
            d.group_label = t.headers[group_column(&t)?].clone();
        }
    }
    if let Some(t) = load_table(&metrics_dir, &TRAJECTORY_FILES, &mut sources)? {
        d.trajectories = TrajectoryRecord::from_table(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &DISTRIBUTION_FILES, &mut sources)? {
        d.distributions = DistributionRecord::from_table(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &DELTA_FILES, &mut sources)? {
        d.deltas = DeltaRecord::from_table(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &EXCESS_FILES, &mut sources)? {
        d.excess = ExcessRecord::from_table(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &CURVE_FILES, &mut sources)? {
        d.curves = CurveRecord::from_table(&t)?;
    }
    let comparisons = [moralsweep_analysis::analyze::COMPARISONS_FILE];
    if let Some(t) = load_table(&metrics_dir, &comparisons, &mut sources)? {
        d.comparisons = ComparisonRecord::from_table(&t)?;
    }
    if sources.is_empty() {
        return Err(ReportError::NoMetrics(dir.to_path_buf()));
    }
    d.sources = sources;
    d.analysis = moralsweep_analysis::analyze::AnalysisRecord::read(&metrics_dir).map_err(|e| {
        ReportError::Data {
            path: metrics_dir.join(moralsweep_analysis::analyze::ANALYSIS_FILE),
            message: e.to_string(),
        }
    })?;
    // The rating files: as given, else beside the metrics, else where the
    // analysis recorded reading them.
    let data_dir = match data {
        Some(p) => Some(p.to_path_buf()),
        None => Some(dir.join("data")).filter(|p| p.is_dir()).or_else(|| {
            d.analysis
                .as_ref()
                .map(|a| a.data_dir.clone())
                .filter(|p| p.is_dir())
        }),
    };
    if let Some(dd) = &data_dir {
        d.failures = count_failures(dd)?;
    }
    // A sweep that ran the misalignment check (its answers files are in
    // the data folder) has its summaries beside its metrics; a published
    // check is named with `Options::verification`.
    let ran_check = data_dir.as_deref().is_some_and(|dd| {
        std::fs::read_dir(dd).is_ok_and(|mut es| {
            es.any(|e| {
                e.is_ok_and(|e| {
                    moralsweep_analysis::em::file::answers_file_key(
                        &e.file_name().to_string_lossy(),
                    )
                    .is_some()
                })
            })
        })
    });
    let own = metrics_dir.join(VERIFICATION_FILE);
    if ran_check && own.is_file() {
        let mut sources = std::mem::take(&mut d.sources);
        d.read_verification(&own, &mut sources)?;
        d.sources = sources;
    }
    d.data_dir = data_dir;
    // A sweep's output holds it; given `<output>/metrics`, look one up.
    let parent = dir
        .parent()
        .filter(|_| dir.file_name().is_some_and(|n| n == "metrics"))
        .map(|p| p.join(PROVENANCE_FILE));
    for p in [dir.join(PROVENANCE_FILE), metrics_dir.join(PROVENANCE_FILE)]
        .iter()
        .chain(parent.iter())
    {
        if std::fs::symlink_metadata(p).is_ok() {
            let text =
                read_to_string_bounded(p, moralsweep_userfs::MANIFEST_LIMIT).map_err(|source| {
                    ReportError::Io {
                        path: p.clone(),
                        error: source,
                    }
                })?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ReportError::Data {
                    path: p.clone(),
                    message: format!(
                        "line {}: {e}; expected the JSON object `moralsweep run` writes",
                        e.line()
                    ),
                })?;
            d.provenance = Some(v);
            break;
        }
    }
    Ok(d)
}

/// The order models are shown in: by family (first appearance), base first,
/// then secure, insecure and any other variant; models without a family
/// keep their own place.
pub fn variant_rank(variant: &str) -> u8 {
    match variant {
        "base" => 0,
        "secure" => 1,
        "insecure" => 2,
        "" => 3,
        _ => 4,
    }
}

/// Indices of `rows` in display order, given each row's (family, variant, model).
pub fn display_order<T>(rows: &[T], key: impl Fn(&T) -> (&str, &str, &str)) -> Vec<usize> {
    let mut family_rank: Vec<String> = Vec::new();
    for r in rows {
        let (f, _, m) = key(r);
        let f = if f.is_empty() { m } else { f };
        if !family_rank.iter().any(|x| x == f) {
            family_rank.push(f.to_string());
        }
    }
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    idx.sort_by_key(|&i| {
        let (f, v, m) = key(&rows[i]);
        let f = if f.is_empty() { m } else { f };
        (
            family_rank
                .iter()
                .position(|x| x == f)
                .unwrap_or(usize::MAX),
            variant_rank(v),
            v.to_string(),
            m.to_string(),
        )
    });
    idx
}

/// One row of `comparisons.csv` as the report uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRecord {
    pub variant: String,
    pub base: String,
    pub metric: String,
    pub group: String,
    pub relative_change: f64,
    pub relative_ci: (f64, f64),
    pub p_value: f64,
    pub p_holm: f64,
    pub personas_paired: u64,
}

impl ComparisonRecord {
    /// The rows of a `comparisons.csv` table; an error names the file, line
    /// and column of a bad value.
    pub fn from_table(t: &CsvTable) -> Result<Vec<ComparisonRecord>, TableError> {
        let c = |n: &str| t.need(n);
        let (variant, base, metric, group) = (c("variant")?, c("base")?, c("metric")?, c("group")?);
        let (rel, p, holm, personas) = (
            c("relative_change")?,
            c("p_value")?,
            c("p_holm")?,
            c("personas_paired")?,
        );
        let (lo, hi) = (t.col("relative_ci_low"), t.col("relative_ci_high"));
        (0..t.len())
            .map(|i| {
                let rc = t.num(i, rel)?;
                Ok(ComparisonRecord {
                    variant: t.text(i, variant),
                    base: t.text(i, base),
                    metric: t.text(i, metric),
                    group: t.text(i, group),
                    relative_change: rc,
                    relative_ci: (
                        t.opt_num(i, lo)?.unwrap_or(rc),
                        t.opt_num(i, hi)?.unwrap_or(rc),
                    ),
                    p_value: t.num(i, p)?,
                    p_holm: t.num(i, holm)?,
                    personas_paired: t.opt_count(i, Some(personas))?.unwrap_or(0),
                })
            })
            .collect()
    }

    pub fn holds(&self) -> bool {
        self.p_holm < HOLDS_ALPHA
    }
}
