//! The metric CSV files read back: their accepted names (ours, then the
//! published reference names), a CSV table whose columns are found by name,
//! and one record type per file holding its fields as written.
//!
//! A record is what a file says, not what `analyze` computed: it reads the
//! published reference files as well as ours (their columns by name, the
//! papers' optional ones absent), and every number is kept exactly as
//! parsed from its field, so that what is shown of a file equals the file to
//! the last bit (R is the file's `robustness`, not `1 / uncertainty`).
//! [`super::Report::write`] writes the files under the first accepted names.

use std::path::{Path, PathBuf};

pub use moralsweep_common::columns::{is_metric_column, GROUP_COLUMNS};

/// What is wrong with a CSV file read by name; each names the file, and the
/// line and column where there is one.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}, line {line}: not a readable CSV file: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: no column {column:?} (the header has {found}); the file should have the columns `moralsweep analyze` writes")]
    MissingColumn {
        path: PathBuf,
        column: String,
        found: String,
    },
    #[error("{path}, line {line}, column {column}: {value:?} is not {expected}")]
    BadValue {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
        expected: &'static str,
    },
}

/// The overall metrics file under each of its accepted names (ours first,
/// then the published reference name); `analyze` writes the first.
pub const OVERALL_FILES: [&str; 2] = ["persona_moral_metrics.csv", "metrics_overall.csv"];
/// Per group: foundations (MFQ-30) or domains (BFI-44), ours and the
/// published names.
pub const PER_FOUNDATION_FILES: [&str; 4] = [
    "persona_moral_metrics_per_foundation.csv",
    "metrics_per_foundation.csv",
    "persona_moral_metrics_per_domain.csv",
    "metrics_per_domain.csv",
];
pub const SELF_FILES: [&str; 1] = ["self_profiles.csv"];
pub const DISTRIBUTION_FILES: [&str; 1] = ["rating_distributions.csv"];
pub const TRAJECTORY_FILES: [&str; 1] = ["trajectories.csv"];
pub const DELTA_FILES: [&str; 1] = ["variant_deltas.csv"];
pub const EXCESS_FILES: [&str; 1] = ["variant_excess.csv"];
/// The logprob curves: ours, then the published name.
pub const CURVE_FILES: [&str; 2] = [
    "temperature_curve_metrics.csv",
    "expected_temperature_metrics.csv",
];

/// One row of the overall or per-foundation metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecord {
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
pub struct SelfRecord {
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
pub struct DeltaRecord {
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
pub struct ExcessRecord {
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
pub struct CurveRecord {
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

/// One row of `trajectories.csv`: a checkpoint of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryRecord {
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
pub struct DistributionRecord {
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

/// A CSV file read into rows, with its columns found by name.
pub struct CsvTable {
    pub path: PathBuf,
    /// The header's column names, trimmed.
    pub headers: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

impl CsvTable {
    /// Reads the CSV text `bytes` of the file at `path` (named in errors).
    pub fn read(path: &Path, bytes: &[u8]) -> Result<CsvTable, TableError> {
        let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
        let bad = |e: csv::Error| TableError::Csv {
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
        Ok(CsvTable {
            path: path.to_path_buf(),
            headers,
            rows,
        })
    }

    /// Rows below the header.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the file has no rows below its header.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The index of column `name`, if the header has it.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// The index of column `name`; an error naming the file when absent.
    pub fn need(&self, name: &str) -> Result<usize, TableError> {
        self.col(name).ok_or_else(|| TableError::MissingColumn {
            path: self.path.clone(),
            column: name.to_string(),
            found: self.headers.join(","),
        })
    }

    /// Row `i`'s line in the file (the header is line 1).
    pub fn line(&self, i: usize) -> u64 {
        self.rows[i]
            .position()
            .map(|p| p.line())
            .unwrap_or(i as u64 + 2)
    }

    /// Row `i`'s field `c`, trimmed.
    pub fn text(&self, i: usize, c: usize) -> String {
        self.rows[i].get(c).unwrap_or("").trim().to_string()
    }

    /// Field `c` of row `i` when the column exists, else empty.
    pub fn opt_text(&self, i: usize, c: Option<usize>) -> String {
        c.map(|c| self.text(i, c)).unwrap_or_default()
    }

    /// Field `c` of row `i` as a number.
    pub fn num(&self, i: usize, c: usize) -> Result<f64, TableError> {
        let v = self.text(i, c);
        v.parse::<f64>().map_err(|_| TableError::BadValue {
            path: self.path.clone(),
            line: self.line(i),
            column: self.headers[c].clone(),
            value: v,
            expected: "a number",
        })
    }

    /// Field `c` of row `i` as a number; `None` for an empty field or an absent column.
    pub fn opt_num(&self, i: usize, c: Option<usize>) -> Result<Option<f64>, TableError> {
        match c {
            Some(c) if !self.text(i, c).is_empty() => self.num(i, c).map(Some),
            _ => Ok(None),
        }
    }

    /// Row `i`'s temperature: the `temperature` column read with the
    /// `temperature_setting` column where the file has one
    /// ([`crate::formats::parse_temperature_fields`]); `None` when the file
    /// has no temperature or the row leaves it empty without a setting.
    pub fn temperature(&self, i: usize) -> Result<Option<f64>, TableError> {
        let (value, setting) = (self.col("temperature"), self.col("temperature_setting"));
        let setting_text = setting.map(|c| self.text(i, c));
        crate::formats::parse_temperature_fields(
            &self.opt_text(i, value),
            setting_text.as_deref(),
        )
        .map_err(|(column, value)| TableError::BadValue {
            path: self.path.clone(),
            line: self.line(i),
            column: column.to_string(),
            value,
            expected: "a temperature (a number, or empty with temperature_setting = provider-default)",
        })
    }

    /// Field `c` of row `i` as a whole number; `None` for an empty field or an absent column.
    pub fn opt_count(&self, i: usize, c: Option<usize>) -> Result<Option<u64>, TableError> {
        match c {
            Some(c) if !self.text(i, c).is_empty() => {
                let v = self.text(i, c);
                v.parse::<u64>()
                    .map(Some)
                    .map_err(|_| TableError::BadValue {
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
        .any(|f| std::fs::symlink_metadata(sub.join(f)).is_ok())
    {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// The column naming the item group: `foundation` or `domain`, else (an
/// instrument's own `group_label`) the one column that is not a metric
/// column.
pub fn group_column(t: &CsvTable) -> Result<usize, TableError> {
    if let Some(c) = GROUP_COLUMNS.iter().find_map(|c| t.col(c)) {
        return Ok(c);
    }
    let mut own = t
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty() && !is_metric_column(h));
    match (own.next(), own.next()) {
        (Some((c, _)), None) => Ok(c),
        _ => t.need("foundation"),
    }
}

impl MetricRecord {
    /// The rows of an overall metrics file, or with `with_foundation` of a
    /// per-group one.
    pub fn from_table(
        t: &CsvTable,
        with_foundation: bool,
    ) -> Result<Vec<MetricRecord>, TableError> {
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
        let personas = t.col("personas");
        let questions = t.col("questions");
        let (minr, medr, maxr) = (
            t.col("min_runs_per_cell"),
            t.col("median_runs_per_cell"),
            t.col("max_runs_per_cell"),
        );
        let (family, variant) = (t.col("family"), t.col("variant"));
        let mut out = Vec::with_capacity(t.len());
        for i in 0..t.len() {
            out.push(MetricRecord {
                model: t.text(i, model),
                temperature: t.temperature(i)?,
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
}

impl TrajectoryRecord {
    /// The rows of `trajectories.csv`.
    pub fn from_table(t: &CsvTable) -> Result<Vec<TrajectoryRecord>, TableError> {
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
        (0..t.len())
            .map(|i| {
                Ok(TrajectoryRecord {
                    family: t.text(i, c[0]),
                    temperature: t.temperature(i)?,
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
}

impl DistributionRecord {
    /// The rows of `rating_distributions.csv`.
    pub fn from_table(t: &CsvTable) -> Result<Vec<DistributionRecord>, TableError> {
        let model = t.need("model")?;
        let group = group_column(t)?;
        let entropy = t.need("entropy_bits")?;
        let hist: Vec<(String, usize)> = t
            .headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.strip_prefix("rating_").map(|v| (v.to_string(), i)))
            .collect();
        let (ratings, modal, share, collapsed) = (
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
        (0..t.len())
            .map(|i| {
                Ok(DistributionRecord {
                    model: t.text(i, model),
                    temperature: t.temperature(i)?,
                    group: t.text(i, group),
                    ratings: t.opt_count(i, ratings)?,
                    histogram: hist
                        .iter()
                        .map(|(v, c)| Ok((v.clone(), t.opt_count(i, Some(*c))?.unwrap_or(0))))
                        .collect::<Result<_, TableError>>()?,
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
}

impl SelfRecord {
    /// The rows of `self_profiles.csv`.
    pub fn from_table(t: &CsvTable) -> Result<Vec<SelfRecord>, TableError> {
        let (model, foundation, mean, sd) = (
            t.need("model")?,
            group_column(t)?,
            t.need("mean")?,
            t.need("within_question_sd")?,
        );
        let (family, variant, questions) = (t.col("family"), t.col("variant"), t.col("questions"));
        (0..t.len())
            .map(|i| {
                Ok(SelfRecord {
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
}

impl DeltaRecord {
    /// The rows of `variant_deltas.csv`.
    pub fn from_table(t: &CsvTable) -> Result<Vec<DeltaRecord>, TableError> {
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
        (0..t.len())
            .map(|i| {
                Ok(DeltaRecord {
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
}

impl ExcessRecord {
    /// The rows of `variant_excess.csv`.
    pub fn from_table(t: &CsvTable) -> Result<Vec<ExcessRecord>, TableError> {
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
        (0..t.len())
            .map(|i| {
                Ok(ExcessRecord {
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
}

impl CurveRecord {
    /// The rows of a logprob curves file.
    pub fn from_table(t: &CsvTable) -> Result<Vec<CurveRecord>, TableError> {
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
        (0..t.len())
            .map(|i| {
                Ok(CurveRecord {
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
}
