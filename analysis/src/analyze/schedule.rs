//! The scheduler: groups the found files into tasks per model key and runs them on worker threads, heaviest first.

use super::*;
use crate::formats::{fmt_temperature, FileKind};
use moralsweep_common::instrument::Instrument;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

/// A rating file as a task reads it: its place and name, and its rows when
/// they are already in memory ([`RatedFile`]); otherwise the file is read.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub(super) found: &'a FoundFile,
    pub(super) rows: Option<&'a RatedRows>,
}

impl std::ops::Deref for Source<'_> {
    type Target = FoundFile;
    fn deref(&self) -> &FoundFile {
        self.found
    }
}

pub(super) enum Task<'a> {
    Sampling {
        key: &'a str,
        files: Vec<Source<'a>>,
    },
    SelfFile(Source<'a>),
    Logprob(Source<'a>),
}

impl Task<'_> {
    pub(super) fn weight(&self) -> u64 {
        match self {
            Task::Sampling { files, .. } => files.iter().map(|f| f.size).sum(),
            Task::SelfFile(f) => f.size,
            Task::Logprob(f) => f.size * 4,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Partial {
    pub(super) overall: Vec<MetricRow>,
    pub(super) per_foundation: Vec<MetricRow>,
    pub(super) self_profiles: Vec<SelfProfileRow>,
    pub(super) curves: Vec<CurveRow>,
    pub(super) warnings: Vec<String>,
    pub(super) dropped: Vec<DroppedRow>,
    pub(super) distributions: Vec<DistributionRow>,
    /// The instrument each rating file was read as.
    pub(super) instruments: Vec<(PathBuf, Arc<Instrument>)>,
    /// The cell tables of the sampling files that gave metrics, for the
    /// paired comparisons.
    pub(super) tables: Vec<ComparedTable>,
}

/// Refuses a logprob temperature that is not a positive number.
pub(super) fn check_temperatures(opts: &AnalyzeOptions) -> Result<(), AnalyzeError> {
    match opts
        .temperatures
        .iter()
        .find(|t| !t.is_finite() || **t <= 0.0)
    {
        Some(&t) => Err(AnalyzeError::BadTemperature(t)),
        None => Ok(()),
    }
}

/// Analyses every rating file under `dir`.
pub fn analyze_dir(dir: &Path, opts: &AnalyzeOptions) -> Result<Report, AnalyzeError> {
    check_temperatures(opts)?;
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
    let sources: Vec<Source> = files
        .iter()
        .map(|found| Source { found, rows: None })
        .collect();
    let tasks = group_tasks(&sources)?;
    let partials = run_tasks(&tasks, opts)?;
    assemble_partials(partials, opts)
}

/// Groups the files into tasks (a model key's sampling files together, each
/// self or logprob file alone), refusing two files that hold the same thing.
pub(super) fn group_tasks<'a>(files: &[Source<'a>]) -> Result<Vec<Task<'a>>, AnalyzeError> {
    let mut sampling: BTreeMap<&'a str, Vec<Source<'a>>> = BTreeMap::new();
    let mut seen: BTreeMap<(String, String), Source<'a>> = BTreeMap::new();
    let mut tasks = Vec::new();
    for &f in files {
        let what = match &f.found.kind {
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
        match f.found.kind {
            FileKind::Sampling { .. } => sampling.entry(&f.found.key).or_default().push(f),
            FileKind::SelfRatings { .. } => tasks.push(Task::SelfFile(f)),
            FileKind::Logprobs => tasks.push(Task::Logprob(f)),
        }
    }
    for (key, files) in sampling {
        tasks.push(Task::Sampling { key, files });
    }
    Ok(tasks)
}

/// Runs the tasks on [`AnalyzeOptions::threads`] threads, largest first
/// (for an even split); the first error stops the rest.
pub(super) fn run_tasks(
    tasks: &[Task],
    opts: &AnalyzeOptions,
) -> Result<Vec<Partial>, AnalyzeError> {
    let mut order: Vec<&Task> = tasks.iter().collect();
    order.sort_by_key(|t| std::cmp::Reverse(t.weight()));
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.threads
    }
    .clamp(1, order.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Partial>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<AnalyzeError>> = Mutex::new(None);
    let work = || {
        let mut part = Partial::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(task) = order.get(i) else { break };
            if let Err(e) = run_task(task, opts, &mut part) {
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(e);
                }
                next.store(order.len(), Ordering::Relaxed);
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
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Merges the tasks' rows into one [`Report`] in a fixed order (whatever
/// order the tasks ran in) and adds what compares models: variant deltas
/// and excesses, the divergence of rating distributions from the family's
/// base, and trajectories.
pub(super) fn assemble_partials(
    partials: Vec<Partial>,
    opts: &AnalyzeOptions,
) -> Result<Report, AnalyzeError> {
    let mut report = Report::default();
    let mut seen: Option<(&PathBuf, &Arc<Instrument>)> = None;
    for (path, inst) in partials.iter().flat_map(|p| &p.instruments) {
        match seen {
            None => seen = Some((path, inst)),
            Some((first, i)) if i.name != inst.name => {
                return Err(AnalyzeError::MixedInstruments {
                    first: first.clone(),
                    first_instrument: i.name.clone(),
                    second: path.clone(),
                    second_instrument: inst.name.clone(),
                })
            }
            Some(_) => {}
        }
    }
    report.instrument = seen.map(|s| s.1.clone());
    let mut tables = Vec::new();
    for p in partials {
        tables.extend(p.tables);
        report.overall.extend(p.overall);
        report.per_foundation.extend(p.per_foundation);
        report.self_profiles.extend(p.self_profiles);
        report.curves.extend(p.curves);
        report.distributions.extend(p.distributions);
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
            .then(a.foundation.cmp(&b.foundation))
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
    report.distributions.sort_by(|a, b| {
        a.model
            .cmp(&b.model)
            .then(a.temperature.total_cmp(&b.temperature))
            .then(a.group.is_some().cmp(&b.group.is_some()))
            .then(a.group.cmp(&b.group))
    });
    report.warnings.sort();
    compare_variants(&mut report);
    comparisons::paired_variants(&mut report, &tables, opts);
    super::compare::distribution_divergence(&mut report);
    super::compare::trajectories(&mut report, &opts.models);
    Ok(report)
}
