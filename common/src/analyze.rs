//! `moralsweep analyze`: from a directory of rating files to the metric files.
//!
//! ```no_run
//! use moralsweep_common::analyze::{analyze_dir, AnalyzeOptions, ModelsMap};
//! # fn main() -> Result<(), moralsweep_common::analyze::AnalyzeError> {
//! let opts = AnalyzeOptions {
//!     models: ModelsMap::load(std::path::Path::new("models.toml"))?,
//!     ..AnalyzeOptions::default()
//! };
//! let report = analyze_dir(std::path::Path::new("results/sweep/data"), &opts)?;
//! report.write(std::path::Path::new("results/sweep/metrics"))?;
//! print!("{}", report.summary_table());
//! # Ok(()) }
//! ```
//!
//! A sweep supplies its families and variants with
//! [`ModelsMap::from_specs`]`(&sweep.spec.models)` instead of a TOML file.
//!
//! [`analyze_dir`] scans the directory recursively (hidden entries are
//! skipped; links to directories are never followed; a dangling link or a
//! file that is not a rating file is skipped with a note in
//! [`Report::notes`]) and groups the rating files by model key (see
//! [`crate::formats::parse_file_name`]): a key's sampling files at several
//! temperatures are aligned on one persona set; each self file gives a self
//! profile under its own key; each logprob file gives R(T) and S(T) at
//! [`AnalyzeOptions::temperatures`]. Models are analysed in parallel on
//! [`AnalyzeOptions::threads`] threads; every bootstrap stream is seeded from
//! the seed, the model key and the temperature, so the numbers do not depend
//! on the thread count.
//!
//! [`Report::write`] writes, each file atomically:
//!
//! | file | rows |
//! | --- | --- |
//! | `persona_moral_metrics.csv` | one per model and temperature |
//! | `persona_moral_metrics_per_foundation.csv` | one per model, temperature and foundation |
//! | `self_profiles.csv` | one per self file and foundation |
//! | `variant_deltas.csv` | one per model with a family and a variant, against its family's base |
//! | `variant_excess.csv` | per family: insecure-minus-secure excess (when both exist) |
//! | `temperature_curve_metrics.csv` | one per logprob file and temperature (when any) |
//! | `dropped.csv` | one per file, item or persona left out of a file's metrics, and why |
//!
//! The first columns of each are the papers' columns in the papers' order;
//! columns after them are additions.
//!
//! Bad data is an error naming the file and the line: a malformed row, a
//! file with a header and no rows, a (persona, question, run_index) slot on
//! two rows (unless [`AnalyzeOptions::repeated_slots`] counts repeats).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use crate::formats::{
    commit_file, first_repeated_slot, fmt_float, fmt_temperature, is_provider_default,
    parse_file_name, read_logprobs, read_sampling, temp_path, FileKind, FormatError, RatingRow,
};
use crate::instrument::Foundation;
use crate::metrics::{
    align_runs, excess, logprob_metrics, pct_change, sampled_metrics, self_profile, Band,
    BootstrapOptions, CellTable, CurvePoint, FoundationProfile, MetricsError, RunSets,
    ScopeMetrics,
};
use crate::spec::ModelSpec;

/// Family and variant of one model key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub family: Option<String>,
    /// `base` marks the reference of its family's deltas.
    pub variant: Option<String>,
}

/// Model key -> family and variant, for the deltas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelsMap {
    pub models: BTreeMap<String, ModelInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    #[serde(default)]
    models: BTreeMap<String, ModelInfo>,
}

impl ModelsMap {
    /// Reads a `--models` TOML file: `[models."<key>"]` tables with
    /// `family` and `variant`.
    pub fn load(path: &Path) -> Result<ModelsMap, AnalyzeError> {
        let text = std::fs::read_to_string(path).map_err(|error| AnalyzeError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        ModelsMap::parse(&text, path)
    }

    /// Parses `--models` TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ModelsMap, AnalyzeError> {
        let file: ModelsFile = toml::from_str(text).map_err(|e| {
            let mut message = e.message().to_string();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("line {line}: {message}");
            }
            AnalyzeError::Models {
                path: path.to_path_buf(),
                message: format!(
                    "{message} (expected [models.\"<key>\"] tables with `family` and `variant`)"
                ),
            }
        })?;
        Ok(ModelsMap {
            models: file.models,
        })
    }

    /// The families and variants a sweep spec gives its models.
    pub fn from_specs(specs: &[ModelSpec]) -> ModelsMap {
        ModelsMap {
            models: specs
                .iter()
                .map(|m| {
                    (
                        m.key.clone(),
                        ModelInfo {
                            family: m.family.clone(),
                            variant: m.variant.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&ModelInfo> {
        self.models.get(key)
    }

    fn family(&self, key: &str) -> String {
        self.get(key)
            .and_then(|m| m.family.clone())
            .unwrap_or_default()
    }

    fn variant(&self, key: &str) -> String {
        self.get(key)
            .and_then(|m| m.variant.clone())
            .unwrap_or_default()
    }
}

/// What `analyze` computes and how.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Persona bootstrap draws (default 2000).
    pub bootstrap: u32,
    /// Rerun bootstrap draws (default 400).
    pub rerun_bootstrap: u32,
    /// Seed of all bootstraps (default 1337).
    pub seed: u64,
    /// Temperatures of the logprob curves (default 0.35, 0.5, 0.7, 1.0, 1.25).
    pub temperatures: Vec<f64>,
    pub models: ModelsMap,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// What a slot recorded on more than one row means (default: an error).
    pub repeated_slots: RepeatedSlots,
}

/// What `analyze` does with a (persona, question, run_index) slot that
/// appears on several rows of a sampling or self file, or a
/// (persona, question) pair on several rows of a logprob file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepeatedSlots {
    /// An error naming the file and both lines: a slot is recorded once, so
    /// a repeat means a merged, concatenated or corrupted file.
    #[default]
    Reject,
    /// Every row counts as one rating of its cell, as the papers' pipeline
    /// treats retried slots (in a logprob file the last row of a pair
    /// counts); each such file gets a warning.
    Count,
}

/// The logprob temperatures used when none are given.
pub const DEFAULT_LOGPROB_TEMPERATURES: [f64; 5] = [0.35, 0.5, 0.7, 1.0, 1.25];

/// Files keeping fewer personas than this do not constrain the
/// multi-temperature alignment (METHOD.md).
pub const ALIGNMENT_MIN_PERSONAS: usize = 50;

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            bootstrap: 2000,
            rerun_bootstrap: 400,
            seed: 1337,
            temperatures: DEFAULT_LOGPROB_TEMPERATURES.to_vec(),
            models: ModelsMap::default(),
            threads: 0,
            repeated_slots: RepeatedSlots::Reject,
        }
    }
}

/// Why `analyze` failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The io error's text is in the message (not a `source()`), so a
    /// printed chain shows it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("models file {path}: {message}")]
    Models { path: PathBuf, message: String },
    #[error("{dir}: no rating files found (expected <key>_temp<TT>.csv, <key>_self.csv, <key>_temp<TT>_self.csv or <key>_logprobs.csv){skipped}")]
    NoFiles {
        dir: PathBuf,
        /// The scan's notes on what it skipped, as a sentence ("" when none).
        skipped: String,
    },
    #[error("{path}: the file holds a header but no rating rows; a rating file needs at least one row (was it cut short? collect it again or remove it)")]
    NoRows { path: PathBuf },
    #[error("{path}, line {line}: {slot} repeats the slot of line {first_line} ({repeats} row(s) of the file repeat an earlier one); each slot is recorded once, so a repeat means a merged or corrupted file: remove the repeats, or count every row as the papers' pipeline does with `analyze --allow-repeated-slots`")]
    RepeatedSlot {
        path: PathBuf,
        /// The slot, e.g. "persona 3, question 5, run_index 2".
        slot: String,
        first_line: u64,
        line: u64,
        repeats: usize,
    },
    #[error("{first} and {second} both hold {what} of model `{key}`; keep one of them (or give them different keys)")]
    Duplicate {
        key: String,
        what: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("logprob temperature {0} is not positive; give temperatures > 0")]
    BadTemperature(f64),
}

/// One rating file found by the scan.
#[derive(Debug, Clone)]
pub struct FoundFile {
    pub path: PathBuf,
    /// Relative to the scanned directory, with `/` separators.
    pub relative: String,
    pub key: String,
    pub kind: FileKind,
    pub size: u64,
}

/// What a scan of a directory found: the rating files, and a note for each
/// entry it skipped.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The rating files, sorted by path.
    pub files: Vec<FoundFile>,
    /// One line per skipped entry, sorted: a link to a directory (never
    /// followed, so `up -> ..` cannot loop), a link whose target is gone, a
    /// file that is not a rating file, an unreadable subdirectory. Hidden
    /// entries (`.name`) are skipped without a note.
    pub notes: Vec<String>,
}

/// Directories nested deeper than this are not scanned (with a note).
pub const MAX_SCAN_DEPTH: usize = 32;

/// Lists the rating files under `dir`, recursively, sorted by path (the
/// notes of [`scan`] go to the log).
pub fn scan_dir(dir: &Path) -> Result<Vec<FoundFile>, AnalyzeError> {
    let found = scan(dir)?;
    for n in &found.notes {
        tracing::info!("{n}");
    }
    Ok(found.files)
}

/// Scans `dir` recursively for rating files. Links to files are read; links
/// to directories are not followed; what is skipped gets a note. Only an
/// unreadable `dir` itself is an error.
pub fn scan(dir: &Path) -> Result<Scan, AnalyzeError> {
    let mut out = Scan::default();
    scan_into(dir, dir, 0, &mut out)?;
    out.files.sort_by(|a, b| a.relative.cmp(&b.relative));
    out.notes.sort();
    Ok(out)
}

/// `path` relative to `root`, with `/` separators.
fn relative_name(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn scan_into(root: &Path, dir: &Path, depth: usize, out: &mut Scan) -> Result<(), AnalyzeError> {
    let rel_dir = relative_name(root, dir);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(error) if depth == 0 => {
            return Err(AnalyzeError::Io {
                path: dir.to_path_buf(),
                error,
            })
        }
        Err(e) => {
            out.notes.push(format!(
                "{rel_dir}/: skipped: the directory cannot be read ({e})"
            ));
            return Ok(());
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.notes.push(format!(
                    "{}: skipped: an entry cannot be read ({e})",
                    if rel_dir.is_empty() { "." } else { &rel_dir }
                ));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = relative_name(root, &path);
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        let meta = if is_link {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    out.notes.push(format!(
                        "{rel}: skipped: a link to a directory (links to directories are not followed)"
                    ));
                    continue;
                }
                Ok(m) => m,
                Err(e) => {
                    out.notes.push(format!(
                        "{rel}: skipped: a link whose target cannot be read ({e})"
                    ));
                    continue;
                }
            }
        } else {
            match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    out.notes
                        .push(format!("{rel}: skipped: it cannot be read ({e})"));
                    continue;
                }
            }
        };
        if meta.is_dir() {
            if depth >= MAX_SCAN_DEPTH {
                out.notes.push(format!(
                    "{rel}/: skipped: nested deeper than {MAX_SCAN_DEPTH} directories"
                ));
            } else {
                scan_into(root, &path, depth + 1, out)?;
            }
            continue;
        }
        if !meta.is_file() {
            out.notes.push(format!(
                "{rel}: skipped: not a regular file (a pipe, socket or device)"
            ));
            continue;
        }
        match parse_file_name(&name) {
            Some(parsed) => out.files.push(FoundFile {
                path,
                relative: rel,
                key: parsed.key,
                kind: parsed.kind,
                size: meta.len(),
            }),
            None => out.notes.push(format!(
                "{rel}: skipped: not a rating file (rating files are named <key>_temp<TT>.csv, <key>_self.csv, <key>_temp<TT>_self.csv or <key>_logprobs.csv)"
            )),
        }
    }
    Ok(())
}

/// One row of `persona_moral_metrics.csv` (foundation `None`) or of
/// `persona_moral_metrics_per_foundation.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub model: String,
    pub temperature: f64,
    pub foundation: Option<Foundation>,
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
    pub band: Band,
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

/// Everything `analyze` computed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub overall: Vec<MetricRow>,
    pub per_foundation: Vec<MetricRow>,
    pub self_profiles: Vec<SelfProfileRow>,
    pub deltas: Vec<DeltaRow>,
    pub excess: Vec<ExcessRow>,
    pub curves: Vec<CurveRow>,
    /// Problems that did not stop the analysis (also logged).
    pub warnings: Vec<String>,
    /// The files, items and personas left out of the metrics, and why
    /// (`dropped.csv`).
    pub dropped: Vec<DroppedRow>,
    /// What the directory scan skipped (links to directories, dangling
    /// links, files that are not rating files).
    pub notes: Vec<String>,
}

enum Task<'a> {
    Sampling {
        key: &'a str,
        files: Vec<&'a FoundFile>,
    },
    SelfFile(&'a FoundFile),
    Logprob(&'a FoundFile),
}

impl Task<'_> {
    fn weight(&self) -> u64 {
        match self {
            Task::Sampling { files, .. } => files.iter().map(|f| f.size).sum(),
            Task::SelfFile(f) => f.size,
            Task::Logprob(f) => f.size * 4,
        }
    }
}

#[derive(Default)]
struct Partial {
    overall: Vec<MetricRow>,
    per_foundation: Vec<MetricRow>,
    self_profiles: Vec<SelfProfileRow>,
    curves: Vec<CurveRow>,
    warnings: Vec<String>,
    dropped: Vec<DroppedRow>,
}

/// Analyses every rating file under `dir`.
pub fn analyze_dir(dir: &Path, opts: &AnalyzeOptions) -> Result<Report, AnalyzeError> {
    if let Some(&t) = opts
        .temperatures
        .iter()
        .find(|t| !t.is_finite() || **t <= 0.0)
    {
        return Err(AnalyzeError::BadTemperature(t));
    }
    let found = scan(dir)?;
    for n in &found.notes {
        tracing::info!("{n}");
    }
    if found.files.is_empty() {
        let skipped = match found.notes.len() {
            0 => String::new(),
            n => format!(
                "; skipped {n} entr{}: {}",
                if n == 1 { "y" } else { "ies" },
                found.notes.join("; ")
            ),
        };
        return Err(AnalyzeError::NoFiles {
            dir: dir.to_path_buf(),
            skipped,
        });
    }
    let mut report = analyze_files(&found.files, opts)?;
    report.notes = found.notes;
    Ok(report)
}

/// Analyses a list of rating files (as [`scan_dir`] returns them).
pub fn analyze_files(files: &[FoundFile], opts: &AnalyzeOptions) -> Result<Report, AnalyzeError> {
    // Group and check for two files holding the same thing.
    let mut sampling: BTreeMap<&str, Vec<&FoundFile>> = BTreeMap::new();
    let mut seen: BTreeMap<(String, String), &FoundFile> = BTreeMap::new();
    let mut tasks = Vec::new();
    for f in files {
        let what = match &f.kind {
            FileKind::Sampling { temperature } => {
                format!(
                    "the ratings at temperature {}",
                    fmt_temperature(*temperature)
                )
            }
            FileKind::SelfRatings {
                temperature: Some(t),
            } => format!("the self ratings at temperature {}", fmt_temperature(*t)),
            FileKind::SelfRatings { temperature: None } => "the self ratings".to_string(),
            FileKind::Logprobs => "the logprobs".to_string(),
        };
        if let Some(first) = seen.insert((f.key.clone(), what.clone()), f) {
            return Err(AnalyzeError::Duplicate {
                key: f.key.clone(),
                what,
                first: first.path.clone(),
                second: f.path.clone(),
            });
        }
        match f.kind {
            FileKind::Sampling { .. } => sampling.entry(&f.key).or_default().push(f),
            FileKind::SelfRatings { .. } => tasks.push(Task::SelfFile(f)),
            FileKind::Logprobs => tasks.push(Task::Logprob(f)),
        }
    }
    for (key, files) in sampling {
        tasks.push(Task::Sampling { key, files });
    }
    // Largest first, for an even split over the threads.
    tasks.sort_by_key(|t| std::cmp::Reverse(t.weight()));

    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.threads
    }
    .clamp(1, tasks.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Partial>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<AnalyzeError>> = Mutex::new(None);
    let work = || {
        let mut part = Partial::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(task) = tasks.get(i) else { break };
            if let Err(e) = run_task(task, opts, &mut part) {
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(e);
                }
                next.store(tasks.len(), Ordering::Relaxed);
                break;
            }
        }
        results.lock().unwrap_or_else(|p| p.into_inner()).push(part);
    };
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut report = Report::default();
    for p in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        report.overall.extend(p.overall);
        report.per_foundation.extend(p.per_foundation);
        report.self_profiles.extend(p.self_profiles);
        report.curves.extend(p.curves);
        report.warnings.extend(p.warnings);
        report.dropped.extend(p.dropped);
    }
    report.dropped.sort_by(|a, b| {
        a.source_file
            .cmp(&b.source_file)
            .then(a.what.cmp(&b.what))
            .then(a.id.cmp(&b.id))
    });
    report.overall.sort_by(|a, b| {
        a.model
            .cmp(&b.model)
            .then(a.temperature.total_cmp(&b.temperature))
    });
    report.per_foundation.sort_by(|a, b| {
        a.model
            .cmp(&b.model)
            .then(a.temperature.total_cmp(&b.temperature))
            .then(
                a.foundation
                    .map(|f| f.name())
                    .cmp(&b.foundation.map(|f| f.name())),
            )
    });
    report.self_profiles.sort_by(|a, b| {
        a.model
            .cmp(&b.model)
            .then(a.self_file.cmp(&b.self_file))
            .then(a.profile.foundation.name().cmp(b.profile.foundation.name()))
    });
    report.curves.sort_by(|a, b| {
        a.model
            .cmp(&b.model)
            .then(a.point.temperature.total_cmp(&b.point.temperature))
    });
    report.warnings.sort();
    compare_variants(&mut report);
    Ok(report)
}

fn warn(part: &mut Partial, message: String) {
    tracing::warn!("{message}");
    part.warnings.push(message);
}

/// Ids as short ranges: `[1, 2, 3, 7]` -> "1-3, 7".
fn id_ranges<T: Copy + Into<u64>>(ids: &[T]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start: u64 = ids[i].into();
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1].into() == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if end == start {
            start.to_string()
        } else if end == start + 1 {
            format!("{start}, {end}")
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// "item 5" or "items 5, 9-12".
fn items_phrase(items: &[u8]) -> String {
    if items.len() == 1 {
        format!("item {}", items[0])
    } else {
        format!("items {}", id_ranges(items))
    }
}

/// Why persona index `pi` of `table` fails the persona filter over `items`.
fn persona_gap(table: &CellTable, pi: usize, items: &[u8]) -> String {
    let (mut no_row, mut only_invalid) = (Vec::new(), Vec::new());
    for &q in items {
        if table.ratings(pi, q).is_empty() {
            if table.is_present(pi, q) {
                only_invalid.push(q);
            } else {
                no_row.push(q);
            }
        }
    }
    let mut why = Vec::new();
    if !no_row.is_empty() {
        why.push(format!("no row for {}", items_phrase(&no_row)));
    }
    if !only_invalid.is_empty() {
        why.push(format!(
            "only -1 ratings (no valid answer) for {}",
            items_phrase(&only_invalid)
        ));
    }
    why.join("; ")
}

/// A file's sort key of a rating row's slot.
fn slot_key(r: &RatingRow) -> u128 {
    ((r.persona.unwrap_or(0) as u128) << 64) | ((r.item as u128) << 32) | r.run as u128
}

/// How many rows repeat an earlier row's slot.
fn repeated_rows(rows: &[RatingRow]) -> usize {
    // Files come in slot order (ours and the papers'): one pass suffices.
    if rows.windows(2).all(|w| slot_key(&w[0]) < slot_key(&w[1])) {
        return 0;
    }
    let mut keys: Vec<u128> = rows.iter().map(slot_key).collect();
    keys.sort_unstable();
    keys.windows(2).filter(|w| w[0] == w[1]).count()
}

fn slot_name(c: &crate::slot::SlotCoord) -> String {
    match c.persona {
        Some(p) => format!("persona {p}, question {}, run_index {}", c.item, c.run),
        None => format!("question {}, run_index {}", c.item, c.run),
    }
}

/// Refuses a file without rows, and one that records a slot twice unless
/// `opts` counts repeats (then it warns).
fn check_rating_rows(
    f: &FoundFile,
    rows: &[RatingRow],
    self_mode: bool,
    opts: &AnalyzeOptions,
    part: &mut Partial,
) -> Result<(), AnalyzeError> {
    if rows.is_empty() {
        return Err(AnalyzeError::NoRows {
            path: f.path.clone(),
        });
    }
    let repeats = repeated_rows(rows);
    if repeats == 0 {
        return Ok(());
    }
    match opts.repeated_slots {
        RepeatedSlots::Count => {
            warn(
                part,
                format!(
                    "{}: {repeats} row(s) repeat an earlier row's (persona, question, run_index) slot; every row counts as a rating of its cell",
                    f.path.display()
                ),
            );
            Ok(())
        }
        RepeatedSlots::Reject => match first_repeated_slot(&f.path, self_mode)? {
            Some((coord, first_line, line)) => Err(AnalyzeError::RepeatedSlot {
                path: f.path.clone(),
                slot: slot_name(&coord),
                first_line,
                line,
                repeats,
            }),
            // The file changed between the two reads.
            None => Err(AnalyzeError::Format(FormatError::Invalid {
                path: f.path.clone(),
                message: "the file changed while it was analysed; run again".into(),
            })),
        },
    }
}

fn run_task(task: &Task, opts: &AnalyzeOptions, part: &mut Partial) -> Result<(), AnalyzeError> {
    let boot = BootstrapOptions {
        persona_draws: opts.bootstrap,
        rerun_draws: opts.rerun_bootstrap,
        seed: opts.seed,
    };
    let dropped = |f: &FoundFile, temperature: Option<f64>, what, id, reason: String| DroppedRow {
        model: f.key.clone(),
        temperature,
        source_file: f.relative.clone(),
        what,
        id,
        reason,
    };
    match task {
        Task::SelfFile(f) => {
            let file = read_sampling(&f.path, true)?;
            check_rating_rows(f, &file.rows, true, opts, part)?;
            let profile = self_profile(&file.rows);
            let temperature = match f.kind {
                FileKind::SelfRatings { temperature } => temperature,
                _ => None,
            };
            if profile.is_empty() {
                warn(
                    part,
                    format!(
                        "{}: no valid self rating; no self profile",
                        f.path.display()
                    ),
                );
                part.dropped.push(dropped(
                    f,
                    temperature,
                    Dropped::File,
                    None,
                    "no valid self rating (every row is -1)".into(),
                ));
            } else {
                let mut present = [false; crate::instrument::ITEM_COUNT];
                let mut valid = [false; crate::instrument::ITEM_COUNT];
                for r in &file.rows {
                    present[r.item as usize - 1] = true;
                    valid[r.item as usize - 1] |= (0..=5).contains(&r.rating);
                }
                for (q, (&present, &valid)) in present.iter().zip(&valid).enumerate() {
                    if !valid {
                        let reason = if present {
                            "only -1 ratings (no valid answer)"
                        } else {
                            "no row in the file"
                        };
                        part.dropped.push(dropped(
                            f,
                            temperature,
                            Dropped::Item,
                            Some(q as u32 + 1),
                            reason.into(),
                        ));
                    }
                }
            }
            for p in profile {
                part.self_profiles.push(SelfProfileRow {
                    model: f.key.clone(),
                    family: opts.models.family(&f.key),
                    variant: opts.models.variant(&f.key),
                    self_file: f.relative.clone(),
                    temperature,
                    profile: p,
                });
            }
        }
        Task::Logprob(f) => {
            let file = read_logprobs(&f.path)?;
            if file.rows.is_empty() {
                return Err(AnalyzeError::NoRows {
                    path: f.path.clone(),
                });
            }
            let mut first_line: BTreeMap<(u32, u8), u64> = BTreeMap::new();
            let mut repeat: Option<(u32, u8, u64, u64)> = None;
            let mut repeats = 0;
            for r in &file.rows {
                if let Some(&first) = first_line.get(&(r.persona, r.item)) {
                    repeats += 1;
                    repeat.get_or_insert((r.persona, r.item, first, r.line));
                } else {
                    first_line.insert((r.persona, r.item), r.line);
                }
            }
            if let Some((p, q, first, line)) = repeat {
                if opts.repeated_slots == RepeatedSlots::Reject {
                    return Err(AnalyzeError::RepeatedSlot {
                        path: f.path.clone(),
                        slot: format!("persona {p}, question {q}"),
                        first_line: first,
                        line,
                        repeats,
                    });
                }
            }
            let mut items_of: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            for &(p, q) in first_line.keys() {
                items_of.entry(p).or_default().push(q);
            }
            drop(first_line);
            let mut items: Vec<u8> = items_of.values().flatten().copied().collect();
            items.sort_unstable();
            items.dedup();
            let result = match logprob_metrics(&file, &opts.temperatures, &boot, &f.key) {
                Ok(r) => r,
                Err(MetricsError::BadTemperature(t)) => {
                    return Err(AnalyzeError::BadTemperature(t))
                }
                Err(e) => {
                    warn(
                        part,
                        format!("{}: no logprob metrics: {e}", f.path.display()),
                    );
                    part.dropped
                        .push(dropped(f, None, Dropped::File, None, e.to_string()));
                    return Ok(());
                }
            };
            drop(file);
            for q in 1..=crate::instrument::ITEM_COUNT as u8 {
                if items.binary_search(&q).is_err() {
                    part.dropped.push(dropped(
                        f,
                        None,
                        Dropped::Item,
                        Some(q as u32),
                        "no row in the file".into(),
                    ));
                }
            }
            for &p in &result.dropped_personas {
                let have = items_of.get(&p).map(Vec::as_slice).unwrap_or(&[]);
                let missing: Vec<u8> = items
                    .iter()
                    .copied()
                    .filter(|q| have.binary_search(q).is_err())
                    .collect();
                part.dropped.push(dropped(
                    f,
                    None,
                    Dropped::Persona,
                    Some(p),
                    format!("no row for {}", items_phrase(&missing)),
                ));
            }
            if !result.dropped_personas.is_empty() {
                warn(
                    part,
                    format!(
                        "{}: personas {:?} lack a row for some item and are left out",
                        f.path.display(),
                        result.dropped_personas
                    ),
                );
            }
            if result.repeated_rows > 0 {
                warn(
                    part,
                    format!(
                        "{}: {} (persona, item) pairs have more than one row; the last row of each counts",
                        f.path.display(),
                        result.repeated_rows
                    ),
                );
            }
            for point in result.points {
                if point.sigma_bar == 0.0 {
                    warn(
                        part,
                        format!(
                            "{} at T={}: sigma_bar is 0, so R is infinite",
                            f.key,
                            fmt_float(point.temperature)
                        ),
                    );
                }
                part.curves.push(CurveRow {
                    model: f.key.clone(),
                    family: opts.models.family(&f.key),
                    variant: opts.models.variant(&f.key),
                    point,
                    source_file: f.relative.clone(),
                });
            }
        }
        Task::Sampling { key, files } => {
            let mut runs = Vec::new();
            for f in files {
                let temperature = match f.kind {
                    FileKind::Sampling { temperature } => temperature,
                    _ => continue,
                };
                let t = Some(temperature);
                let data = read_sampling(&f.path, false)?;
                check_rating_rows(f, &data.rows, false, opts, part)?;
                let table = CellTable::from_rows(
                    data.rows
                        .iter()
                        .map(|r| (r.persona.unwrap_or(0), r.item, r.rating)),
                );
                drop(data);
                let items = table.items();
                for q in 1..=crate::instrument::ITEM_COUNT as u8 {
                    if items.binary_search(&q).is_err() {
                        part.dropped.push(dropped(
                            f,
                            t,
                            Dropped::Item,
                            Some(q as u32),
                            "no row in the file".into(),
                        ));
                    }
                }
                let kept = table.kept_personas(&items);
                for (pi, &p) in table.personas.iter().enumerate() {
                    if kept.binary_search(&p).is_err() {
                        part.dropped.push(dropped(
                            f,
                            t,
                            Dropped::Persona,
                            Some(p),
                            persona_gap(&table, pi, &items),
                        ));
                    }
                }
                if kept.is_empty() {
                    warn(
                        part,
                        format!(
                            "{}: no persona has a valid rating for every item; file left out",
                            f.path.display()
                        ),
                    );
                    part.dropped.push(dropped(
                        f,
                        t,
                        Dropped::File,
                        None,
                        "no persona has a valid rating for every item".into(),
                    ));
                }
                runs.push((*f, temperature, table, RunSets { items, kept }));
            }
            runs.sort_by(|a, b| a.1.total_cmp(&b.1));
            // Files sampled at the provider's default temperature are kept
            // apart: aligned on their own persona set, never with the
            // temperature-controlled files of the same key.
            let (default_runs, runs): (Vec<_>, Vec<_>) =
                runs.into_iter().partition(|r| is_provider_default(r.1));
            let family = opts.models.family(key);
            let variant = opts.models.variant(key);
            for runs in [default_runs, runs] {
                if runs.is_empty() {
                    continue;
                }
                let sets: Vec<RunSets> = runs.iter().map(|r| r.3.clone()).collect();
                let (items, personas) = align_runs(&sets, ALIGNMENT_MIN_PERSONAS);
                if items.is_empty() || personas.is_empty() {
                    warn(
                        part,
                        format!("model {key}: no persona is kept in all its files; no metrics"),
                    );
                    for (f, temperature, _, sets) in &runs {
                        if !sets.kept.is_empty() {
                            part.dropped.push(dropped(
                                f,
                                Some(*temperature),
                                Dropped::File,
                                None,
                                format!("no persona is kept in all the files of model {key}"),
                            ));
                        }
                    }
                    continue;
                }
                for (i, (f, temperature, table, sets)) in runs.iter().enumerate() {
                    if sets.kept.is_empty() {
                        continue;
                    }
                    let t = Some(*temperature);
                    let label = format!("{key}|{}", fmt_float(*temperature));
                    let result = match sampled_metrics(table, &personas, &items, &boot, &label) {
                        Ok(r) => r,
                        Err(e) => {
                            warn(
                                part,
                                format!(
                                    "{}: left out: {e} (the persona set shared with the model's other temperatures is not complete in this file)",
                                    f.path.display()
                                ),
                            );
                            part.dropped.push(dropped(
                                f,
                                t,
                                Dropped::File,
                                None,
                                format!("{e}: the persona set shared with the model's other temperatures is not complete in this file"),
                            ));
                            continue;
                        }
                    };
                    // What the alignment with the model's other files left out.
                    let others = |has: &dyn Fn(&RunSets) -> bool| -> String {
                        runs.iter()
                            .enumerate()
                            .filter(|(j, r)| *j != i && !r.3.kept.is_empty() && !has(&r.3))
                            .map(|(_, r)| r.0.relative.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    for &q in &sets.items {
                        if items.binary_search(&q).is_err() {
                            part.dropped.push(dropped(
                                f,
                                t,
                                Dropped::Item,
                                Some(q as u32),
                                format!(
                                    "not in {} (the model's files at several temperatures share one item set)",
                                    others(&|r: &RunSets| r.items.contains(&q))
                                ),
                            ));
                        }
                    }
                    for &p in &sets.kept {
                        if personas.binary_search(&p).is_err() {
                            part.dropped.push(dropped(
                                f,
                                t,
                                Dropped::Persona,
                                Some(p),
                                format!(
                                    "kept here but not in {} (the model's files at several temperatures share one persona set)",
                                    others(&|r: &RunSets| r.kept.binary_search(&p).is_ok())
                                ),
                            ));
                        }
                    }
                    if result.overall.sigma_bar == 0.0 {
                        warn(
                            part,
                            format!(
                                "{key} at T={}: sigma_bar is 0 (every cell is constant), so R is infinite",
                                fmt_temperature(*temperature)
                            ),
                        );
                    }
                    let row = |foundation: Option<Foundation>, m: ScopeMetrics, items: Vec<u8>| {
                        MetricRow {
                            model: key.to_string(),
                            temperature: *temperature,
                            foundation,
                            metrics: m,
                            family: family.clone(),
                            variant: variant.clone(),
                            retained_personas: personas.clone(),
                            retained_items: items,
                            source_file: f.relative.clone(),
                        }
                    };
                    part.overall.push(row(None, result.overall, items.clone()));
                    for (fd, m) in result.per_foundation {
                        let fitems: Vec<u8> = items
                            .iter()
                            .copied()
                            .filter(|q| crate::ITEMS[*q as usize - 1].foundation == fd)
                            .collect();
                        part.per_foundation.push(row(Some(fd), m, fitems));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Deltas against each family's base and the insecure-minus-secure excess.
fn compare_variants(report: &mut Report) {
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
            warnings.push(format!(
                "family {family} at T={}: no model with variant `base`; no deltas",
                fmt_float(rows[0].temperature)
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
                band: Band::of(m.s),
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

/// Column names of `persona_moral_metrics.csv`: the papers' columns, then ours.
pub const OVERALL_COLUMNS: [&str; 23] = [
    "model",
    "temperature",
    "uncertainty",
    "uncertainty_uncertainty",
    "robustness",
    "robustness_uncertainty",
    "susceptibility",
    "susceptibility_uncertainty",
    "uncertainty_persona_uncertainty",
    "uncertainty_response_uncertainty",
    "susceptibility_persona_uncertainty",
    "susceptibility_response_uncertainty",
    "personas",
    "questions",
    "min_runs_per_cell",
    "median_runs_per_cell",
    "max_runs_per_cell",
    "family",
    "variant",
    "s_band",
    "retained_persona_ids_json",
    "retained_question_ids_json",
    "source_file",
];

/// Column names of `dropped.csv`: one row per file, item or persona left
/// out of a file's metrics.
pub const DROPPED_COLUMNS: [&str; 6] = [
    "model",
    "temperature",
    "source_file",
    "dropped",
    "id",
    "reason",
];

/// Column names of `self_profiles.csv`.
pub const SELF_PROFILE_COLUMNS: [&str; 9] = [
    "model",
    "family",
    "variant",
    "self_file",
    "foundation",
    "mean",
    "within_question_sd",
    "questions",
    "temperature",
];

/// Column names of `variant_deltas.csv`.
pub const DELTA_COLUMNS: [&str; 18] = [
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
];

/// Column names of `variant_excess.csv`.
pub const EXCESS_COLUMNS: [&str; 10] = [
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
];

/// Column names of `temperature_curve_metrics.csv`.
pub const CURVE_COLUMNS: [&str; 13] = [
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
];

fn ids_json<T: std::fmt::Display>(ids: &[T]) -> String {
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

fn metric_fields(row: &MetricRow) -> Vec<String> {
    let m = &row.metrics;
    let mut v = vec![row.model.clone(), fmt_temperature(row.temperature)];
    if let Some(f) = row.foundation {
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
    ]);
    v
}

fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<(), AnalyzeError> {
    let tmp = temp_path(path);
    let io = |p: &Path, error: std::io::Error| AnalyzeError::Io {
        path: p.to_path_buf(),
        error,
    };
    let file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(std::io::BufWriter::new(file));
    let csv_err = |e: csv::Error| io(&tmp, std::io::Error::other(e.to_string()));
    w.write_record(header).map_err(csv_err)?;
    for r in rows {
        w.write_record(r).map_err(csv_err)?;
    }
    let buf = w
        .into_inner()
        .map_err(|e| io(&tmp, std::io::Error::other(e.to_string())))?;
    let file = buf.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
    commit_file(file, &tmp, path)?;
    Ok(())
}

impl Report {
    /// Writes the metric files into `out` (created if needed); returns their paths.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, AnalyzeError> {
        std::fs::create_dir_all(out).map_err(|error| AnalyzeError::Io {
            path: out.to_path_buf(),
            error,
        })?;
        let mut written = Vec::new();
        let mut put = |name: &str, header: &[&str], rows: Vec<Vec<String>>| {
            let path = out.join(name);
            write_csv(&path, header, &rows)?;
            written.push(path);
            Ok::<(), AnalyzeError>(())
        };
        put(
            "persona_moral_metrics.csv",
            &OVERALL_COLUMNS,
            self.overall.iter().map(metric_fields).collect(),
        )?;
        let mut per_foundation_header = OVERALL_COLUMNS.to_vec();
        per_foundation_header.insert(2, "foundation");
        put(
            "persona_moral_metrics_per_foundation.csv",
            &per_foundation_header,
            self.per_foundation.iter().map(metric_fields).collect(),
        )?;
        put(
            "self_profiles.csv",
            &SELF_PROFILE_COLUMNS,
            self.self_profiles
                .iter()
                .map(|r| {
                    vec![
                        r.model.clone(),
                        r.family.clone(),
                        r.variant.clone(),
                        r.self_file.clone(),
                        r.profile.foundation.name().to_string(),
                        fmt_float(r.profile.mean),
                        fmt_float(r.profile.within_question_sd),
                        r.profile.questions.to_string(),
                        r.temperature.map(fmt_temperature).unwrap_or_default(),
                    ]
                })
                .collect(),
        )?;
        put(
            "variant_deltas.csv",
            &DELTA_COLUMNS,
            self.deltas
                .iter()
                .map(|d| {
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
                        fmt_temperature(d.temperature),
                        fmt_float(d.sigma_bar_se),
                        fmt_float(d.ds_pct.1),
                        fmt_float(d.dr_pct.1),
                        fmt_float(d.dsigma_pct.1),
                        d.band.name().to_string(),
                    ]
                })
                .collect(),
        )?;
        put(
            "dropped.csv",
            &DROPPED_COLUMNS,
            self.dropped
                .iter()
                .map(|d| {
                    vec![
                        d.model.clone(),
                        d.temperature.map(fmt_float).unwrap_or_default(),
                        d.source_file.clone(),
                        d.what.name().to_string(),
                        d.id.map(|i| i.to_string()).unwrap_or_default(),
                        d.reason.clone(),
                    ]
                })
                .collect(),
        )?;
        if !self.excess.is_empty() {
            put(
                "variant_excess.csv",
                &EXCESS_COLUMNS,
                self.excess
                    .iter()
                    .map(|e| {
                        vec![
                            e.family.clone(),
                            fmt_temperature(e.temperature),
                            e.insecure_model.clone(),
                            e.secure_model.clone(),
                            fmt_float(e.ds_pp.0),
                            fmt_float(e.ds_pp.1),
                            fmt_float(e.dr_pp.0),
                            fmt_float(e.dr_pp.1),
                            fmt_float(e.dsigma_pp.0),
                            fmt_float(e.dsigma_pp.1),
                        ]
                    })
                    .collect(),
            )?;
        }
        if !self.curves.is_empty() {
            put(
                "temperature_curve_metrics.csv",
                &CURVE_COLUMNS,
                self.curves
                    .iter()
                    .map(|c| {
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
                        ]
                    })
                    .collect(),
            )?;
        }
        Ok(written)
    }

    /// Whether any metric was computed (persona metrics, a temperature
    /// curve or a self profile).
    pub fn has_metrics(&self) -> bool {
        !(self.overall.is_empty() && self.curves.is_empty() && self.self_profiles.is_empty())
    }

    /// What the metrics left out, one line per file: the whole file, or its
    /// items and personas with the reason of the first few (all of them are
    /// in `dropped.csv`). Empty when nothing was left out.
    pub fn dropped_summary(&self) -> String {
        let mut out = String::new();
        if self.dropped.is_empty() {
            return out;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "left out of the metrics (every one in dropped.csv):");
        let mut by_file: BTreeMap<&str, Vec<&DroppedRow>> = BTreeMap::new();
        for d in &self.dropped {
            by_file.entry(d.source_file.as_str()).or_default().push(d);
        }
        const SHOWN: usize = 5;
        for (file, rows) in by_file {
            if let Some(d) = rows.iter().find(|d| d.what == Dropped::File) {
                let _ = writeln!(out, "  {file}: the whole file: {}", d.reason);
                continue;
            }
            for what in [Dropped::Item, Dropped::Persona] {
                let of: Vec<&&DroppedRow> = rows.iter().filter(|d| d.what == what).collect();
                if of.is_empty() {
                    continue;
                }
                let shown: Vec<String> = of
                    .iter()
                    .take(SHOWN)
                    .map(|d| format!("{} ({})", d.id.unwrap_or(0), d.reason))
                    .collect();
                let more = if of.len() > SHOWN {
                    format!("; and {} more", of.len() - SHOWN)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "  {file}: {} {}{}: {}{more}",
                    of.len(),
                    what.name(),
                    if of.len() == 1 { "" } else { "s" },
                    shown.join("; ")
                );
            }
        }
        out
    }

    /// A readable table of the headline numbers: model, temperature,
    /// S +- se, R +- se, personas kept and the band of S; then the deltas
    /// and excesses when there are any.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let width = self
            .overall
            .iter()
            .map(|r| r.model.len())
            .chain(self.curves.iter().map(|c| c.model.len() + 10))
            .max()
            .unwrap_or(5)
            .max(5);
        if !self.overall.is_empty() {
            let _ = writeln!(
                out,
                "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}  S band",
                "model", "T", "S ± se", "R ± se", "personas"
            );
            for r in &self.overall {
                let m = &r.metrics;
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}  {}",
                    r.model,
                    fmt_temperature(r.temperature),
                    format!("{:.3} ± {:.3}", m.s, m.s_se()),
                    format!("{:.2} ± {:.2}", m.r(), m.r_se()),
                    m.personas,
                    Band::of(m.s).name()
                );
            }
        }
        if !self.curves.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}",
                "logprob model", "T", "S ± se", "R ± se", "personas"
            );
            for c in &self.curves {
                let p = &c.point;
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}",
                    c.model,
                    fmt_float(p.temperature),
                    format!("{:.3} ± {:.3}", p.s, p.s_se),
                    format!("{:.2} ± {:.2}", p.r(), p.r_se()),
                    p.personas
                );
            }
        }
        let changed: Vec<&DeltaRow> = self
            .deltas
            .iter()
            .filter(|d| d.model != d.base_model)
            .collect();
        if !changed.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<16} {:<10} {:>16} {:>16} {:>18}",
                "family", "variant", "dS % ± se", "dR % ± se", "dsigma % ± se"
            );
            for d in changed {
                let _ = writeln!(
                    out,
                    "{:<16} {:<10} {:>16} {:>16} {:>18}",
                    d.family,
                    d.variant,
                    format!("{:+.1} ± {:.1}", d.ds_pct.0, d.ds_pct.1),
                    format!("{:+.1} ± {:.1}", d.dr_pct.0, d.dr_pct.1),
                    format!("{:+.1} ± {:.1}", d.dsigma_pct.0, d.dsigma_pct.1),
                );
            }
        }
        out.push_str(&self.dropped_summary());
        if !self.excess.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<16} {:>18} {:>18} {:>20}",
                "family", "excess dS pp", "excess dR pp", "excess dsigma pp"
            );
            for e in &self.excess {
                let _ = writeln!(
                    out,
                    "{:<16} {:>18} {:>18} {:>20}",
                    e.family,
                    format!("{:+.1} ± {:.1}", e.ds_pp.0, e.ds_pp.1),
                    format!("{:+.1} ± {:.1}", e.dr_pp.0, e.dr_pp.1),
                    format!("{:+.1} ± {:.1}", e.dsigma_pp.0, e.dsigma_pp.1),
                );
            }
        }
        out
    }
}
