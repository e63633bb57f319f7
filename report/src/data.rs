//! What a report shows, read from the files a sweep or `moralsweep analyze`
//! wrote: the metric CSVs (by column name, so the published reference files
//! with the papers' columns read as well as ours), the rating files beside
//! them (failures), and the sweep's `provenance.json` when there is one.
//!
//! Every number is kept exactly as parsed from its CSV field, so the values
//! the page carries equal the files to the last bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ReportError;

/// The metric files a report reads, each under any of its accepted names
/// (ours first, then the published reference names).
pub const OVERALL_FILES: [&str; 2] = ["persona_moral_metrics.csv", "metrics_overall.csv"];
/// Per group: foundations (MFQ-30) or domains (BFI-44).
pub const PER_FOUNDATION_FILES: [&str; 4] = [
    "persona_moral_metrics_per_foundation.csv",
    "metrics_per_foundation.csv",
    "persona_moral_metrics_per_domain.csv",
    "metrics_per_domain.csv",
];

/// The columns that name an item group, by instrument.
const GROUP_COLUMNS: [&str; 2] = ["foundation", "domain"];
pub const SELF_FILES: [&str; 1] = ["self_profiles.csv"];
pub const DISTRIBUTION_FILES: [&str; 1] = ["rating_distributions.csv"];
pub const TRAJECTORY_FILES: [&str; 1] = ["trajectories.csv"];

/// One row of `trajectories.csv`: a checkpoint of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryRow {
    pub family: String,
    pub temperature: Option<f64>,
    pub step: f64,
    pub model: String,
    pub s: f64,
    pub s_se: f64,
    pub r: f64,
    pub r_se: f64,
    pub sigma_bar: f64,
    pub sigma_bar_se: f64,
}

/// One row of `rating_distributions.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct DistributionRow {
    pub model: String,
    pub temperature: Option<f64>,
    /// A group name, or `all`.
    pub group: String,
    pub ratings: Option<u64>,
    /// `(rating, count)` in scale order.
    pub histogram: Vec<(String, u64)>,
    pub entropy_bits: f64,
    pub modal_rating: String,
    pub modal_share: Option<f64>,
    pub collapsed: bool,
    pub family: String,
    pub variant: String,
    pub base_model: String,
    pub kl_from_base_bits: Option<f64>,
}
pub const DELTA_FILES: [&str; 1] = ["variant_deltas.csv"];
pub const EXCESS_FILES: [&str; 1] = ["variant_excess.csv"];
pub const CURVE_FILES: [&str; 2] = [
    "temperature_curve_metrics.csv",
    "expected_temperature_metrics.csv",
];
/// The sweep's provenance (spec, hash, dates, cost), written by `run` and `results`.
pub const PROVENANCE_FILE: &str = "provenance.json";

/// The misalignment check's summaries (`moralsweep_common::em`).
pub const VERIFICATION_FILE: &str = moralsweep_common::em::file::VERIFICATION_FILE;

impl ReportData {
    /// Reads a `verification_scores.json` (replacing any read before).
    pub fn read_verification(
        &mut self,
        path: &Path,
        sources: &mut Vec<SourceFile>,
    ) -> Result<(), ReportError> {
        let bytes = std::fs::read(path).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.verification = moralsweep_common::em::file::read_verification(path).map_err(|e| {
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
    /// the summary's key ([`moralsweep_common::em::join`]).
    pub fn verified(&self) -> Vec<(&MetricRow, &str, &moralsweep_common::em::Summary)> {
        use moralsweep_common::em::join::{match_summaries, MetricModel};
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

/// One row of the overall or per-foundation metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub model: String,
    pub temperature: Option<f64>,
    pub foundation: Option<String>,
    pub sigma_bar: f64,
    pub sigma_bar_se: f64,
    pub r: f64,
    pub r_se: f64,
    pub s: f64,
    pub s_se: f64,
    pub personas: Option<u64>,
    pub questions: Option<u64>,
    pub min_runs: Option<f64>,
    pub median_runs: Option<f64>,
    pub max_runs: Option<f64>,
    pub family: String,
    pub variant: String,
}

/// One row of `self_profiles.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfRow {
    pub model: String,
    pub family: String,
    pub variant: String,
    pub foundation: String,
    pub mean: f64,
    pub sd: f64,
    pub questions: Option<u64>,
}

/// One row of `variant_deltas.csv` (standard errors absent in the published file).
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaRow {
    pub family: String,
    pub variant: String,
    pub model: Option<String>,
    pub s: f64,
    pub s_se: f64,
    pub r: f64,
    pub r_se: f64,
    pub sigma_bar: f64,
    pub ds: f64,
    pub ds_se: Option<f64>,
    pub dr: f64,
    pub dr_se: Option<f64>,
    pub dsigma: f64,
    pub dsigma_se: Option<f64>,
}

/// One row of `variant_excess.csv`: insecure minus secure, in percentage points.
#[derive(Debug, Clone, PartialEq)]
pub struct ExcessRow {
    pub family: String,
    pub insecure_model: String,
    pub secure_model: String,
    pub ds: f64,
    pub ds_se: f64,
    pub dr: f64,
    pub dr_se: f64,
    pub dsigma: f64,
    pub dsigma_se: f64,
}

/// One point of the logprob curves R(T), S(T).
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRow {
    pub model: String,
    pub temperature: f64,
    pub sigma_bar: f64,
    pub sigma_bar_se: f64,
    pub r: f64,
    pub r_se: f64,
    pub s: f64,
    pub s_se: f64,
    pub personas: Option<u64>,
    pub questions: Option<u64>,
    pub family: String,
    pub variant: String,
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
    pub overall: Vec<MetricRow>,
    /// Per group (foundation or domain; see `group_label`).
    pub per_foundation: Vec<MetricRow>,
    pub self_profiles: Vec<SelfRow>,
    /// Checkpoint trajectories (`trajectories.csv`).
    pub trajectories: Vec<TrajectoryRow>,
    /// Rating distributions (`rating_distributions.csv`).
    pub distributions: Vec<DistributionRow>,
    /// What the instrument's groups are called in the files (`foundation`,
    /// `domain`); empty when no per-group file was read.
    pub group_label: String,
    pub deltas: Vec<DeltaRow>,
    pub excess: Vec<ExcessRow>,
    pub curves: Vec<CurveRow>,
    /// Per rating-file model key, when rating files were found.
    pub failures: BTreeMap<String, Failures>,
    /// Where the rating files were read from, if any.
    pub data_dir: Option<PathBuf>,
    /// `provenance.json` of the sweep, if present.
    pub provenance: Option<serde_json::Value>,
    /// Misalignment-check summaries (`verification_scores.json`: a sweep's
    /// own or a published one), by their key.
    pub verification: BTreeMap<String, moralsweep_common::em::Summary>,
    pub sources: Vec<SourceFile>,
}

/// A CSV file read into rows, with its columns found by name.
struct Table {
    path: PathBuf,
    headers: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

impl Table {
    fn read(path: &Path, bytes: &[u8]) -> Result<Table, ReportError> {
        let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
        let bad = |e: csv::Error| ReportError::Csv {
            path: path.to_path_buf(),
            line: e.position().map(|p| p.line()).unwrap_or(0),
            message: e.to_string(),
        };
        let headers = r
            .headers()
            .map_err(bad)?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for rec in r.records() {
            rows.push(rec.map_err(bad)?);
        }
        Ok(Table {
            path: path.to_path_buf(),
            headers,
            rows,
        })
    }

    fn col(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    fn need(&self, name: &str) -> Result<usize, ReportError> {
        self.col(name).ok_or_else(|| ReportError::MissingColumn {
            path: self.path.clone(),
            column: name.to_string(),
            found: self.headers.join(","),
        })
    }

    /// Row `i`'s line in the file (the header is line 1).
    fn line(&self, i: usize) -> u64 {
        self.rows[i]
            .position()
            .map(|p| p.line())
            .unwrap_or(i as u64 + 2)
    }

    fn text(&self, i: usize, c: usize) -> String {
        self.rows[i].get(c).unwrap_or("").trim().to_string()
    }

    fn opt_text(&self, i: usize, c: Option<usize>) -> String {
        c.map(|c| self.text(i, c)).unwrap_or_default()
    }

    fn num(&self, i: usize, c: usize) -> Result<f64, ReportError> {
        let v = self.text(i, c);
        v.parse::<f64>().map_err(|_| ReportError::BadValue {
            path: self.path.clone(),
            line: self.line(i),
            column: self.headers[c].clone(),
            value: v,
            expected: "a number",
        })
    }

    fn opt_num(&self, i: usize, c: Option<usize>) -> Result<Option<f64>, ReportError> {
        match c {
            Some(c) if !self.text(i, c).is_empty() => self.num(i, c).map(Some),
            _ => Ok(None),
        }
    }

    fn opt_count(&self, i: usize, c: Option<usize>) -> Result<Option<u64>, ReportError> {
        match c {
            Some(c) if !self.text(i, c).is_empty() => {
                let v = self.text(i, c);
                v.parse::<u64>()
                    .map(Some)
                    .map_err(|_| ReportError::BadValue {
                        path: self.path.clone(),
                        line: self.line(i),
                        column: self.headers[c].clone(),
                        value: v,
                        expected: "a whole number",
                    })
            }
            _ => Ok(None),
        }
    }
}

/// The directory holding the metric files: `dir/metrics` for a sweep's
/// output, else `dir` itself.
pub fn metrics_dir_of(dir: &Path) -> PathBuf {
    let sub = dir.join("metrics");
    if OVERALL_FILES
        .iter()
        .chain(CURVE_FILES.iter())
        .any(|f| sub.join(f).is_file())
    {
        sub
    } else {
        dir.to_path_buf()
    }
}

fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn load_table(
    dir: &Path,
    names: &[&str],
    sources: &mut Vec<SourceFile>,
) -> Result<Option<Table>, ReportError> {
    let Some(path) = find(dir, names) else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    let table = Table::read(&path, &bytes)?;
    sources.push(SourceFile {
        path: path.clone(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        rows: table.rows.len(),
    });
    Ok(Some(table))
}

/// The column naming the item group (`foundation` or `domain`).
fn group_column(t: &Table) -> Result<usize, ReportError> {
    GROUP_COLUMNS
        .iter()
        .find_map(|c| t.col(c))
        .map_or_else(|| t.need("foundation"), Ok)
}

fn metric_rows(t: &Table, with_foundation: bool) -> Result<Vec<MetricRow>, ReportError> {
    let model = t.need("model")?;
    let foundation = if with_foundation {
        Some(group_column(t)?)
    } else {
        None
    };
    let (sb, sbs, r, rs, s, ss) = (
        t.need("uncertainty")?,
        t.need("uncertainty_uncertainty")?,
        t.need("robustness")?,
        t.need("robustness_uncertainty")?,
        t.need("susceptibility")?,
        t.need("susceptibility_uncertainty")?,
    );
    let temperature = t.col("temperature");
    let personas = t.col("personas");
    let questions = t.col("questions");
    let (minr, medr, maxr) = (
        t.col("min_runs_per_cell"),
        t.col("median_runs_per_cell"),
        t.col("max_runs_per_cell"),
    );
    let (family, variant) = (t.col("family"), t.col("variant"));
    let mut out = Vec::with_capacity(t.rows.len());
    for i in 0..t.rows.len() {
        out.push(MetricRow {
            model: t.text(i, model),
            temperature: t.opt_num(i, temperature)?,
            foundation: foundation.map(|c| t.text(i, c)),
            sigma_bar: t.num(i, sb)?,
            sigma_bar_se: t.num(i, sbs)?,
            r: t.num(i, r)?,
            r_se: t.num(i, rs)?,
            s: t.num(i, s)?,
            s_se: t.num(i, ss)?,
            personas: t.opt_count(i, personas)?,
            questions: t.opt_count(i, questions)?,
            min_runs: t.opt_num(i, minr)?,
            median_runs: t.opt_num(i, medr)?,
            max_runs: t.opt_num(i, maxr)?,
            family: t.opt_text(i, family),
            variant: t.opt_text(i, variant),
        });
    }
    Ok(out)
}

fn trajectory_rows(t: &Table) -> Result<Vec<TrajectoryRow>, ReportError> {
    let c = [
        t.need("family")?,
        t.need("step")?,
        t.need("model")?,
        t.need("susceptibility")?,
        t.need("susceptibility_uncertainty")?,
        t.need("robustness")?,
        t.need("robustness_uncertainty")?,
        t.need("uncertainty")?,
        t.need("uncertainty_uncertainty")?,
    ];
    let temperature = t.col("temperature");
    (0..t.rows.len())
        .map(|i| {
            Ok(TrajectoryRow {
                family: t.text(i, c[0]),
                temperature: t.opt_num(i, temperature)?,
                step: t.num(i, c[1])?,
                model: t.text(i, c[2]),
                s: t.num(i, c[3])?,
                s_se: t.num(i, c[4])?,
                r: t.num(i, c[5])?,
                r_se: t.num(i, c[6])?,
                sigma_bar: t.num(i, c[7])?,
                sigma_bar_se: t.num(i, c[8])?,
            })
        })
        .collect()
}

fn distribution_rows(t: &Table) -> Result<Vec<DistributionRow>, ReportError> {
    let model = t.need("model")?;
    let group = group_column(t)?;
    let entropy = t.need("entropy_bits")?;
    let hist: Vec<(String, usize)> = t
        .headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("rating_").map(|v| (v.to_string(), i)))
        .collect();
    let (temperature, ratings, modal, share, collapsed) = (
        t.col("temperature"),
        t.col("ratings"),
        t.col("modal_rating"),
        t.col("modal_share"),
        t.col("collapsed"),
    );
    let (family, variant, base, kl) = (
        t.col("family"),
        t.col("variant"),
        t.col("base_model"),
        t.col("kl_from_base_bits"),
    );
    (0..t.rows.len())
        .map(|i| {
            Ok(DistributionRow {
                model: t.text(i, model),
                temperature: t.opt_num(i, temperature)?,
                group: t.text(i, group),
                ratings: t.opt_count(i, ratings)?,
                histogram: hist
                    .iter()
                    .map(|(v, c)| Ok((v.clone(), t.opt_count(i, Some(*c))?.unwrap_or(0))))
                    .collect::<Result<_, ReportError>>()?,
                entropy_bits: t.num(i, entropy)?,
                modal_rating: t.opt_text(i, modal),
                modal_share: t.opt_num(i, share)?,
                collapsed: t.opt_text(i, collapsed) == "true",
                family: t.opt_text(i, family),
                variant: t.opt_text(i, variant),
                base_model: t.opt_text(i, base),
                kl_from_base_bits: t.opt_num(i, kl)?,
            })
        })
        .collect()
}

fn self_rows(t: &Table) -> Result<Vec<SelfRow>, ReportError> {
    let (model, foundation, mean, sd) = (
        t.need("model")?,
        group_column(t)?,
        t.need("mean")?,
        t.need("within_question_sd")?,
    );
    let (family, variant, questions) = (t.col("family"), t.col("variant"), t.col("questions"));
    (0..t.rows.len())
        .map(|i| {
            Ok(SelfRow {
                model: t.text(i, model),
                family: t.opt_text(i, family),
                variant: t.opt_text(i, variant),
                foundation: t.text(i, foundation),
                mean: t.num(i, mean)?,
                sd: t.num(i, sd)?,
                questions: t.opt_count(i, questions)?,
            })
        })
        .collect()
}

fn delta_rows(t: &Table) -> Result<Vec<DeltaRow>, ReportError> {
    let c = |n| t.need(n);
    let (family, variant, s, s_se, r, r_se, sb, ds, dr, dsig) = (
        c("family")?,
        c("variant")?,
        c("S")?,
        c("S_se")?,
        c("R")?,
        c("R_se")?,
        c("sigma_bar")?,
        c("dS_pct")?,
        c("dR_pct")?,
        c("dsigma_pct")?,
    );
    let (model, ds_se, dr_se, dsig_se) = (
        t.col("model"),
        t.col("dS_pct_se"),
        t.col("dR_pct_se"),
        t.col("dsigma_pct_se"),
    );
    (0..t.rows.len())
        .map(|i| {
            Ok(DeltaRow {
                family: t.text(i, family),
                variant: t.text(i, variant),
                model: model.map(|m| t.text(i, m)).filter(|m| !m.is_empty()),
                s: t.num(i, s)?,
                s_se: t.num(i, s_se)?,
                r: t.num(i, r)?,
                r_se: t.num(i, r_se)?,
                sigma_bar: t.num(i, sb)?,
                ds: t.num(i, ds)?,
                ds_se: t.opt_num(i, ds_se)?,
                dr: t.num(i, dr)?,
                dr_se: t.opt_num(i, dr_se)?,
                dsigma: t.num(i, dsig)?,
                dsigma_se: t.opt_num(i, dsig_se)?,
            })
        })
        .collect()
}

fn excess_rows(t: &Table) -> Result<Vec<ExcessRow>, ReportError> {
    let c = |n| t.need(n);
    let cols = [
        c("excess_dS_pp")?,
        c("excess_dS_pp_se")?,
        c("excess_dR_pp")?,
        c("excess_dR_pp_se")?,
        c("excess_dsigma_pp")?,
        c("excess_dsigma_pp_se")?,
    ];
    let (family, ins, sec) = (c("family")?, c("insecure_model")?, c("secure_model")?);
    (0..t.rows.len())
        .map(|i| {
            Ok(ExcessRow {
                family: t.text(i, family),
                insecure_model: t.text(i, ins),
                secure_model: t.text(i, sec),
                ds: t.num(i, cols[0])?,
                ds_se: t.num(i, cols[1])?,
                dr: t.num(i, cols[2])?,
                dr_se: t.num(i, cols[3])?,
                dsigma: t.num(i, cols[4])?,
                dsigma_se: t.num(i, cols[5])?,
            })
        })
        .collect()
}

fn curve_rows(t: &Table) -> Result<Vec<CurveRow>, ReportError> {
    let c = |n| t.need(n);
    let (model, temp, sb, sbs, r, rs, s, ss) = (
        c("model")?,
        c("temperature")?,
        c("uncertainty")?,
        c("uncertainty_uncertainty")?,
        c("robustness")?,
        c("robustness_uncertainty")?,
        c("susceptibility")?,
        c("susceptibility_uncertainty")?,
    );
    let (personas, questions, family, variant) = (
        t.col("personas"),
        t.col("questions"),
        t.col("family"),
        t.col("variant"),
    );
    (0..t.rows.len())
        .map(|i| {
            Ok(CurveRow {
                model: t.text(i, model),
                temperature: t.num(i, temp)?,
                sigma_bar: t.num(i, sb)?,
                sigma_bar_se: t.num(i, sbs)?,
                r: t.num(i, r)?,
                r_se: t.num(i, rs)?,
                s: t.num(i, s)?,
                s_se: t.num(i, ss)?,
                personas: t.opt_count(i, personas)?,
                questions: t.opt_count(i, questions)?,
                family: t.opt_text(i, family),
                variant: t.opt_text(i, variant),
            })
        })
        .collect()
}

/// Counts failed attempts and unrated slots per model key in the sampling
/// rating files under `dir` (persona files only; self and logprob files
/// are not part of the S/R table).
pub fn count_failures(dir: &Path) -> Result<BTreeMap<String, Failures>, ReportError> {
    let files = moralsweep_common::analyze::scan_dir(dir).map_err(|e| ReportError::Data {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out: BTreeMap<String, Failures> = BTreeMap::new();
    for f in files {
        if !matches!(
            f.kind,
            moralsweep_common::formats::FileKind::Sampling { .. }
        ) {
            continue;
        }
        let bytes = std::fs::read(&f.path).map_err(|source| ReportError::Io {
            path: f.path.clone(),
            source,
        })?;
        let t = Table::read(&f.path, &bytes)?;
        let rating = t.need("rating")?;
        let failures = t.col("failures");
        let e = out.entry(f.key.clone()).or_default();
        for i in 0..t.rows.len() {
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
        d.overall = metric_rows(&t, false)?;
    }
    if let Some(t) = load_table(&metrics_dir, &PER_FOUNDATION_FILES, &mut sources)? {
        d.per_foundation = metric_rows(&t, true)?;
        d.group_label = t.headers[group_column(&t)?].clone();
    }
    if let Some(t) = load_table(&metrics_dir, &SELF_FILES, &mut sources)? {
        d.self_profiles = self_rows(&t)?;
        if d.group_label.is_empty() {
            d.group_label = t.headers[group_column(&t)?].clone();
        }
    }
    if let Some(t) = load_table(&metrics_dir, &TRAJECTORY_FILES, &mut sources)? {
        d.trajectories = trajectory_rows(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &DISTRIBUTION_FILES, &mut sources)? {
        d.distributions = distribution_rows(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &DELTA_FILES, &mut sources)? {
        d.deltas = delta_rows(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &EXCESS_FILES, &mut sources)? {
        d.excess = excess_rows(&t)?;
    }
    if let Some(t) = load_table(&metrics_dir, &CURVE_FILES, &mut sources)? {
        d.curves = curve_rows(&t)?;
    }
    if sources.is_empty() {
        return Err(ReportError::NoMetrics(dir.to_path_buf()));
    }
    d.sources = sources;
    let data_dir = match data {
        Some(p) => Some(p.to_path_buf()),
        None => Some(dir.join("data")).filter(|p| p.is_dir()),
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
                    moralsweep_common::em::file::answers_file_key(&e.file_name().to_string_lossy())
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
        if p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|source| ReportError::Io {
                path: p.clone(),
                source,
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
