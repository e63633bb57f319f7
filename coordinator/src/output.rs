//! The files of a sweep: one rating file per complete unit, written in slot
//! order straight from the store (a chunk at a time, never a whole unit in
//! memory), and the metric tables computed from those files.
//!
//! Layout (DESIGN.md): `<output>/data/<key>_temp<TT>.csv`,
//! `<output>/data/<key>_temp<TT>_self.csv`, `<output>/data/<key>_logprobs.csv`
//! and `<output>/metrics/*.csv`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use moralsweep_common::analyze::{analyze_dir, AnalyzeOptions, ModelsMap};
use moralsweep_common::formats::{
    logprob_file_name, sampling_file_name, LogprobMeta, LogprobWriter, SamplingWriter,
};
use moralsweep_common::slot::{SlotRecord, UnitShape};
use moralsweep_common::Mode;

use crate::store::Store;
use crate::sweep::SweepRecord;
use moralsweep_protocol::{UnitKey, LOGPROB_REQUEST_TEMPERATURE};

/// Slots read from the store per round trip while writing a file.
const SCAN_CHUNK: u32 = 4096;

pub fn data_dir(output: &Path) -> PathBuf {
    output.join("data")
}

pub fn metrics_dir(output: &Path) -> PathBuf {
    output.join("metrics")
}

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

/// Writes the rating file of a complete unit: one row per slot, in slot order.
pub async fn write_unit(
    store: &dyn Store,
    record: &SweepRecord,
    unit: &UnitKey,
    shape: UnitShape,
) -> anyhow::Result<PathBuf> {
    match unit.mode {
        // The answers and their scores go in one file, once the judge's
        // unit is complete (which needs every answer).
        Mode::EmCheck => return Ok(unit_file(record, &unit.model, unit.mode)),
        Mode::EmJudge => {
            crate::em_output::write_answers_file(store, record, &unit.model, true).await?;
            return Ok(unit_file(record, &unit.model, unit.mode));
        }
        _ => {}
    }
    write_rows(store, record, unit, shape, false)
        .await
        .map(|(path, _)| path)
}

/// Writes the rating file of an incomplete unit (a cancelled sweep): the
/// rows of the slots recorded so far, in slot order. Returns the number of
/// rows; with none, no file is written (and an older one is removed).
pub async fn write_unit_partial(
    store: &dyn Store,
    record: &SweepRecord,
    unit: &UnitKey,
    shape: UnitShape,
) -> anyhow::Result<u64> {
    if unit.mode.is_em() {
        return crate::em_output::write_answers_file(store, record, &unit.model, false).await;
    }
    if store.scan_results(unit, 0, 1).await?.is_empty() {
        let path = unit_file(record, &unit.model, unit.mode);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        return Ok(0);
    }
    write_rows(store, record, unit, shape, true)
        .await
        .map(|(_, n)| n)
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

async fn write_rows(
    store: &dyn Store,
    record: &SweepRecord,
    unit: &UnitKey,
    shape: UnitShape,
    partial: bool,
) -> anyhow::Result<(PathBuf, u64)> {
    let path = unit_file(record, &unit.model, unit.mode);
    let dir = data_dir(&record.output);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut w = match unit.mode {
        Mode::Logprob => Writer::Logprob(LogprobWriter::create(
            &path,
            LogprobMeta {
                model_name: unit.model.clone(),
                temperature: LOGPROB_REQUEST_TEMPERATURE,
                prompt_mode: "mfq_persona".into(),
            },
        )?),
        mode => Writer::Sampling(SamplingWriter::create(&path, mode)?),
    };
    let total = shape.len() as u32;
    let mut next = 0u32;
    let mut rows = 0u64;
    while next < total {
        let chunk = store.scan_results(unit, next, SCAN_CHUNK).await?;
        if chunk.is_empty() {
            break;
        }
        for (index, bytes) in &chunk {
            if *index >= total {
                anyhow::bail!(
                    "the store holds a result for slot {index} of {}/{} in sweep {:?}, which has {total} slots",
                    unit.model,
                    unit.mode,
                    unit.sweep
                );
            }
            if partial {
                next = *index;
            }
            if *index != next {
                anyhow::bail!(
                    "slot {next} of {}/{} in sweep {:?} has no recorded result; the unit is not complete",
                    unit.model,
                    unit.mode,
                    unit.sweep
                );
            }
            let rec: SlotRecord = serde_json::from_slice(bytes).with_context(|| {
                format!(
                    "the store's result of slot {index} of {}/{} cannot be decoded",
                    unit.model, unit.mode
                )
            })?;
            let coord = shape.coord(*index as u64);
            match (&mut w, rec) {
                (Writer::Sampling(w), SlotRecord::Sample(r)) => w.write_row(coord, &r)?,
                (Writer::Logprob(w), SlotRecord::Logprob(r)) => w.write_row(coord, &r)?,
                _ => anyhow::bail!(
                    "slot {index} of {}/{} holds a result of the wrong kind",
                    unit.model,
                    unit.mode
                ),
            }
            next += 1;
            rows += 1;
        }
    }
    if !partial && next != total {
        anyhow::bail!(
            "{}/{} of sweep {:?} has {next} of {total} results; the unit is not complete",
            unit.model,
            unit.mode,
            unit.sweep
        );
    }
    match w {
        Writer::Sampling(w) => w.finish()?,
        Writer::Logprob(w) => w.finish()?,
    };
    Ok((path, rows))
}

/// Computes the metric tables (`<output>/metrics/*.csv`) of every rating
/// file written so far, with the spec's bootstrap settings and the families
/// and variants of its models (for the comparison tables).
pub async fn write_metrics(record: &SweepRecord) -> anyhow::Result<()> {
    let spec = &record.spec;
    let defaults = AnalyzeOptions::default();
    let opts = AnalyzeOptions {
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
    };
    let data = data_dir(&record.output);
    let metrics = metrics_dir(&record.output);
    let name = record.name().to_string();
    let record = record.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let verified = crate::em_output::write_verification_scores(&record).with_context(|| {
            format!("writing the misalignment check's summaries of sweep {name:?}")
        })?;
        // A sweep whose every model stopped before a unit was complete has
        // no rating file (nor data directory): no metrics, and nothing to
        // retry.
        use moralsweep_common::analyze::AnalyzeError;
        let result = analyze_dir(&data, &opts);
        let no_files = match &result {
            Err(AnalyzeError::NoFiles { .. }) => true,
            Err(AnalyzeError::Io {
                path,
                error: source,
            }) => path == &data && source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        };
        if no_files {
            // A sweep of the misalignment check alone has its summaries.
            if !verified {
                tracing::warn!(sweep = %name, "no rating file in {}: no metrics", data.display());
            }
            return Ok(());
        }
        let report = result.with_context(|| {
            format!(
                "computing the metrics of sweep {name:?} from {}",
                data.display()
            )
        })?;
        for w in &report.warnings {
            tracing::warn!(sweep = %name, "{w}");
        }
        report
            .write(&metrics)
            .with_context(|| format!("writing the metric files to {}", metrics.display()))?;
        Ok(())
    })
    .await
    .context("the metrics task failed")??;
    Ok(())
}
