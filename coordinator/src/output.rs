//! The files of a sweep: one rating file per complete unit, written in slot
//! order straight from the store (a chunk at a time: the records, with
//! their response texts, are never all in memory), and the unit's rows as
//! the metrics take them (16 bytes a sampled slot), which go to the metrics
//! core in memory: the metric tables come from [`metrics_report`], never
//! from reading the files back.
//!
//! Layout (DESIGN.md): `<output>/data/<key>_temp<TT>.csv`,
//! `<output>/data/<key>_temp<TT>_self.csv`, `<output>/data/<key>_logprobs.csv`
//! and `<output>/metrics/*.csv`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::output_error::Doing;
pub use crate::output_error::OutputError;
use moralsweep_analysis::analyze::{
    assemble, unit_metrics, AnalyzeOptions, ModelsMap, RatedFile, RatedRows, Report, UnitMetrics,
};
use moralsweep_analysis::formats::{
    logprob_file_name, sampling_file_name, LogprobFile, LogprobMeta, LogprobRow, LogprobWriter,
    RatingRow, SamplingFile, SamplingWriter,
};
use moralsweep_common::slot::{SlotRecord, UnitShape};
use moralsweep_common::Mode;

pub use crate::layout::{data_dir, metrics_dir};
use crate::store::Store;
use crate::sweep::SweepRecord;
use moralsweep_protocol::{UnitKey, LOGPROB_REQUEST_TEMPERATURE};

/// Slots read from the store per round trip while writing a file.
const SCAN_CHUNK: u32 = 4096;

/// The rating file of a unit.
pub fn unit_file(record: &SweepRecord, model: &str, mode: Mode) -> PathBuf {
    // A provider-default model's files say so: <key>_tempdefault.csv.
    let temperature = record
        .model(model)
        .map(|m| m.file_temperature(record.spec.temperature))
        .unwrap_or(record.spec.temperature);
    let name = match mode {
        Mode::Persona => sampling_file_name(model, temperature, false),
        Mode::SelfMode => sampling_file_name(model, temperature, true),
        Mode::Logprob => logprob_file_name(model),
        Mode::EmCheck | Mode::EmJudge => return crate::em_output::answers_file(record, model),
    };
    data_dir(&record.output).join(name)
}

enum Writer {
    Sampling(SamplingWriter),
    Logprob(LogprobWriter),
}

/// Writes the rating file of a complete unit: one row per slot, in slot
/// order. With `keep_rows`, returns the file with its rows, for the
/// metrics (without, none are held: no metrics are computed).
pub async fn write_unit(
    store: &dyn Store,
    record: &SweepRecord,
    unit: &UnitKey,
    shape: UnitShape,
    keep_rows: bool,
) -> Result<Option<RatedFile>, OutputError> {
    match unit.mode {
        // The answers and their scores go in one file, once the judge's
        // unit is complete (which needs every answer); no rating rows.
        Mode::EmCheck => return Ok(None),
        Mode::EmJudge => {
            crate::em_output::write_answers_file(store, record, &unit.model, true).await?;
            return Ok(None);
        }
        _ => {}
    }
    let (file, _) = unit_rows(store, record, unit, shape, Rows::Complete, true, keep_rows).await?;
    Ok(keep_rows.then_some(file))
}

/// Writes the rating file of an incomplete unit (a cancelled sweep): the
/// rows of the slots recorded so far, in slot order. Returns the file with
/// its rows and their number; `None` when nothing is recorded: no file is
/// written (and an older one is removed).
pub async fn write_unit_partial(
    store: &dyn Store,
    record: &SweepRecord,
    unit: &UnitKey,
    shape: UnitShape,
) -> Result<Option<(RatedFile, u64)>, OutputError> {
    if store.scan_results(unit, 0, 1).await?.is_empty() {
        let path = unit_file(record, &unit.model, unit.mode);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).doing(|| format!("removing {}", path.display())),
        }
        return Ok(None);
    }
    unit_rows(store, record, unit, shape, Rows::Recorded, true, true)
        .await
        .map(Some)
}

/// The rows of a unit whose file was written earlier (by a coordinator
/// before it restarted), read from the store the way the file was written
/// from it; no file is touched.
pub async fn written_rows(
    store: &dyn Store,
    record: &SweepRecord,
    unit: &UnitKey,
    shape: UnitShape,
    complete: bool,
) -> Result<RatedFile, OutputError> {
    let rows = if complete {
        Rows::Complete
    } else {
        Rows::Recorded
    };
    unit_rows(store, record, unit, shape, rows, false, true)
        .await
        .map(|(file, _)| file)
}

/// Which slots a unit's rows hold.
#[derive(Clone, Copy, PartialEq)]
enum Rows {
    /// Every slot (an error names the first one missing).
    Complete,
    /// The slots recorded so far.
    Recorded,
}

fn logprob_meta(unit: &UnitKey) -> LogprobMeta {
    LogprobMeta {
        model_name: unit.model.clone(),
        temperature: LOGPROB_REQUEST_TEMPERATURE,
        prompt_mode: "mfq_persona".into(),
    }
}

/// Reads a unit's results from the store in slot order and, with `write`,
/// writes its rating file; returns the rows the metrics take (with `keep`;
/// else none) and their number.
async fn unit_rows(
    store: &dyn Store,
    record: &SweepRecord,
    unit: &UnitKey,
    shape: UnitShape,
    which: Rows,
    write: bool,
    keep: bool,
) -> Result<(RatedFile, u64), OutputError> {
    let path = unit_file(record, &unit.model, unit.mode);
    let dir = data_dir(&record.output);
    let meta = logprob_meta(unit);
    let mut w = if write {
        std::fs::create_dir_all(&dir).doing(|| format!("creating {}", dir.display()))?;
        Some(match unit.mode {
            Mode::Logprob => Writer::Logprob(LogprobWriter::create(&path, meta.clone())?),
            mode => Writer::Sampling(SamplingWriter::create(&path, mode)?),
        })
    } else {
        None
    };
    let self_mode = unit.mode == Mode::SelfMode;
    let mut sampled: Vec<RatingRow> = Vec::new();
    let mut logprobs: Vec<LogprobRow> = Vec::new();
    // A logprob row the file reader would refuse: the metrics read the
    // file, which names its line.
    let mut refused = false;
    let mut line = 2u64;
    let total = shape.len() as u32;
    let mut next = 0u32;
    let mut count = 0u64;
    while next < total {
        let chunk = store.scan_results(unit, next, SCAN_CHUNK).await?;
        if chunk.is_empty() {
            break;
        }
        for (index, bytes) in &chunk {
            if *index >= total {
                return Err(OutputError::Inconsistent(format!(
                    "the store holds a result for slot {index} of {}/{} in sweep {:?}, which has {total} slots",
                    unit.model,
                    unit.mode,
                    unit.sweep
                )));
            }
            if which == Rows::Recorded {
                next = *index;
            }
            if *index != next {
                return Err(OutputError::Inconsistent(format!(
                    "slot {next} of {}/{} in sweep {:?} has no recorded result; the unit is not complete",
                    unit.model,
                    unit.mode,
                    unit.sweep
                )));
            }
            let rec: SlotRecord = serde_json::from_slice(bytes).doing(|| {
                format!(
                    "the store's result of slot {index} of {}/{} cannot be decoded",
                    unit.model, unit.mode
                )
            })?;
            let coord = shape.coord(*index as u64);
            match (unit.mode, rec) {
                (Mode::Logprob, SlotRecord::Logprob(r)) => {
                    if let Some(Writer::Logprob(w)) = &mut w {
                        w.write_row(coord, &r)?;
                    }
                    match LogprobRow::of_record(line, coord, &r) {
                        Some(row) if keep => logprobs.push(row),
                        Some(_) => {}
                        None => refused = true,
                    }
                    line += meta.lines_of(&r);
                }
                (Mode::Persona | Mode::SelfMode, SlotRecord::Sample(r)) => {
                    if let Some(Writer::Sampling(w)) = &mut w {
                        w.write_row(coord, &r)?;
                    }
                    if keep {
                        sampled.push(RatingRow {
                            persona: if self_mode { None } else { coord.persona },
                            item: coord.item,
                            run: coord.run,
                            rating: r.rating,
                            failures: r.failures,
                        });
                    }
                }
                _ => {
                    return Err(OutputError::Inconsistent(format!(
                        "slot {index} of {}/{} holds a result of the wrong kind",
                        unit.model, unit.mode
                    )))
                }
            }
            next += 1;
            count += 1;
        }
    }
    if which == Rows::Complete && next != total {
        return Err(OutputError::Inconsistent(format!(
            "{}/{} of sweep {:?} has {next} of {total} results; the unit is not complete",
            unit.model, unit.mode, unit.sweep
        )));
    }
    match w {
        Some(Writer::Sampling(w)) => {
            w.finish()?;
        }
        Some(Writer::Logprob(w)) => {
            w.finish()?;
        }
        None => {}
    }
    let rows = match unit.mode {
        _ if !keep => None,
        Mode::Logprob if refused => None,
        Mode::Logprob => Some(RatedRows::Logprobs(LogprobFile {
            path: path.clone(),
            rows: logprobs,
        })),
        _ => Some(RatedRows::Sampling(SamplingFile {
            path: path.clone(),
            self_mode,
            rows: sampled,
        })),
    };
    Ok((RatedFile::new(&dir, &path, rows)?, count))
}

/// Removes the data and metric files of a sweep's output folder (and the
/// folders if that leaves them empty); returns the number of files removed.
pub fn remove_files(output: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for dir in [data_dir(output), metrics_dir(output)] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            if e.file_type()?.is_file() {
                std::fs::remove_file(e.path())?;
                n += 1;
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    let _ = std::fs::remove_dir(output);
    Ok(n)
}

/// How a sweep's metrics are computed: the spec's bootstrap settings and
/// logprob temperatures, the families and variants of its models (for the
/// comparison tables) and its instrument.
pub fn metrics_options(record: &SweepRecord) -> AnalyzeOptions {
    let spec = &record.spec;
    let defaults = AnalyzeOptions::default();
    AnalyzeOptions {
        bootstrap: spec.bootstrap.unwrap_or(defaults.bootstrap),
        rerun_bootstrap: spec.rerun_bootstrap.unwrap_or(defaults.rerun_bootstrap),
        seed: spec.seed.unwrap_or(defaults.seed),
        temperatures: spec
            .logprob_temperatures
            .clone()
            .unwrap_or(defaults.temperatures),
        models: ModelsMap::from_specs(&spec.models),
        threads: 0,
        instrument: spec.instrument().ok(),
        ..defaults
    }
}

/// The metrics of one unit's rows (on a blocking thread: bootstraps are
/// CPU work).
pub async fn unit_metrics_of(
    record: &SweepRecord,
    file: Arc<RatedFile>,
) -> Result<UnitMetrics, OutputError> {
    let opts = metrics_options(record);
    let name = record.name().to_string();
    let path = file.found.path.clone();
    tokio::task::spawn_blocking(move || unit_metrics(&file, &opts))
        .await
        .doing(|| "the metrics task failed".into())?
        .doing(|| {
            format!(
                "computing the metrics of sweep {name:?} from the rows of {}",
                path.display()
            )
        })
}

/// The report of a sweep's units: their metrics assembled, with the
/// comparisons between models.
pub async fn assemble_report(
    record: &SweepRecord,
    units: Vec<Arc<UnitMetrics>>,
) -> Result<Report, OutputError> {
    let opts = metrics_options(record);
    let name = record.name().to_string();
    tokio::task::spawn_blocking(move || {
        assemble(units.iter().map(|u| u.as_ref()), &opts)
            .doing(|| format!("computing the metrics of sweep {name:?}"))
    })
    .await
    .doing(|| "the metrics task failed".into())?
}

/// Assembles the report of a sweep's units and writes the metric tables
/// (`<output>/metrics/*.csv`). `None` when no unit has rows (every model
/// stopped before a unit was complete): no metrics.
pub async fn metrics_report(
    record: &SweepRecord,
    units: Vec<Arc<UnitMetrics>>,
) -> Result<Option<Report>, OutputError> {
    let name = record.name().to_string();
    let verified = {
        let record = record.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            crate::em_output::write_verification_scores(&record)
                .doing(|| format!("writing the misalignment check's summaries of sweep {name:?}"))
        })
        .await
        .doing(|| "the metrics task failed".into())??
    };
    if units.is_empty() {
        // A sweep of the misalignment check alone has its summaries.
        if !verified {
            tracing::warn!(sweep = %name, "no rating file: no metrics");
        }
        return Ok(None);
    }
    let report = assemble_report(record, units).await?;
    for w in &report.warnings {
        tracing::warn!(sweep = %name, "{w}");
    }
    let metrics = metrics_dir(&record.output);
    let data = data_dir(&record.output);
    let opts = metrics_options(record);
    tokio::task::spawn_blocking(move || -> Result<Report, OutputError> {
        // The output folder's own `metrics/` is never a link out of it.
        moralsweep_userfs::refuse_link(&metrics)?;
        report
            .write(&metrics)
            .doing(|| format!("writing the metric files to {}", metrics.display()))?;
        // Where the rating files are, their hashes, the seed and the
        // bootstrap sizes, for the report's failure counts and provenance.
        moralsweep_analysis::analyze::AnalysisRecord::of_dir(&data, &opts)
            .and_then(|r| r.write(&metrics))
            .doing(|| format!("recording the rating files of {}", data.display()))?;
        Ok(report)
    })
    .await
    .doing(|| "the metrics task failed".into())?
    .map(Some)
}
