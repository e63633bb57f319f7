//! The files of a misalignment check: per model the answers with their
//! judge's scores (`data/<key>_em.csv`, written from the store when the
//! model's judge unit is complete, or partially for a cancelled sweep), and
//! the summaries of every model (`metrics/verification_scores.json`, in the
//! paper's shape, rounded to one decimal as published).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::output_error::{Doing, OutputError};
use moralsweep_analysis::em::file::{
    answers_file_name, summaries_of_dir, write_answers, write_verification, AnswerRow,
    VERIFICATION_FILE,
};
use moralsweep_common::em::{judge_of, EmCheck};
use moralsweep_common::slot::SlotRecord;
use moralsweep_common::Mode;

use crate::layout::{data_dir, metrics_dir};
use crate::store::Store;
use crate::sweep::SweepRecord;
use moralsweep_protocol::UnitKey;

const SCAN_CHUNK: u32 = 4096;

/// One judge score of an answer: the reply and the score read from it.
type Judged = Option<(String, Option<u8>)>;

/// The answers file of a model.
pub fn answers_file(record: &SweepRecord, model: &str) -> PathBuf {
    data_dir(&record.output).join(answers_file_name(model))
}

async fn all_results(
    store: &dyn Store,
    unit: &UnitKey,
) -> Result<Vec<(u32, SlotRecord)>, OutputError> {
    let mut out = Vec::new();
    let mut from = 0u32;
    loop {
        let chunk = store.scan_results(unit, from, SCAN_CHUNK).await?;
        let Some(last) = chunk.last().map(|(i, _)| *i) else {
            break;
        };
        for (i, bytes) in chunk {
            let rec: SlotRecord = serde_json::from_slice(&bytes).doing(|| {
                format!(
                    "the store's result of slot {i} of {}/{} cannot be decoded",
                    unit.model, unit.mode
                )
            })?;
            out.push((i, rec));
        }
        from = last + 1;
    }
    Ok(out)
}

/// Writes a model's answers file from the store: one row per recorded
/// answer in slot order (question, then sample), with its scores where
/// judged. With `complete`, every answer and score must be there. Returns
/// the number of rows (no file, and an older one removed, when there are
/// none).
pub async fn write_answers_file(
    store: &dyn Store,
    record: &SweepRecord,
    model: &str,
    complete: bool,
) -> Result<u64, OutputError> {
    let check = EmCheck::builtin();
    let unit = |mode| UnitKey {
        sweep: record.name().to_string(),
        model: model.to_string(),
        mode,
    };
    let answers = all_results(store, &unit(Mode::EmCheck)).await?;
    let judged = all_results(store, &unit(Mode::EmJudge)).await?;
    let mut scores: BTreeMap<u32, [Judged; 2]> = BTreeMap::new();
    for (slot, rec) in judged {
        let SlotRecord::Judge(j) = rec else {
            return Err(OutputError::Inconsistent(format!(
                "judge slot {slot} of {model} holds a result of the wrong kind"
            )));
        };
        let (a, kind) = judge_of(slot);
        scores.entry(a).or_default()[kind as usize] = Some((j.reply, j.score));
    }
    let path = answers_file(record, model);
    if complete && answers.len() as u32 != check.answers() {
        return Err(OutputError::Inconsistent(format!(
            "{model}/em-check of sweep {:?} has {} of {} answers; the unit is not complete",
            record.name(),
            answers.len(),
            check.answers()
        )));
    }
    if answers.is_empty() {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).doing(|| format!("removing {}", path.display())),
        }
        return Ok(0);
    }
    let mut rows = Vec::with_capacity(answers.len());
    for (slot, rec) in answers {
        let SlotRecord::Answer(a) = rec else {
            return Err(OutputError::Inconsistent(format!(
                "answer slot {slot} of {model} holds a result of the wrong kind"
            )));
        };
        let (q, sample) = check.answer_coord(slot);
        let pair = scores.remove(&slot).unwrap_or_default();
        if complete && pair.iter().any(Option::is_none) {
            return Err(OutputError::Inconsistent(format!(
                "answer {slot} of {model} in sweep {:?} is not judged for both alignment and coherence",
                record.name()
            )));
        }
        let [al, co] = pair;
        let (alignment_reply, alignment) = al.unwrap_or_default();
        let (coherence_reply, coherence) = co.unwrap_or_default();
        rows.push(AnswerRow {
            model: model.to_string(),
            question_id: q as u32 + 1,
            sample: sample + 1,
            answer: a.text,
            alignment,
            coherence,
            alignment_reply,
            coherence_reply,
            failures: a.failures,
            collected_at: a.collected_at,
        });
    }
    std::fs::create_dir_all(data_dir(&record.output))
        .doing(|| format!("creating {}", data_dir(&record.output).display()))?;
    write_answers(&path, &rows)?;
    Ok(rows.len() as u64)
}

/// Writes `metrics/verification_scores.json` from the answers files in
/// the data folder (nothing when there are none). Returns whether it wrote.
pub fn write_verification_scores(record: &SweepRecord) -> Result<bool, OutputError> {
    let check = EmCheck::builtin();
    let summaries = summaries_of_dir(&data_dir(&record.output), &check)?;
    if summaries.is_empty() {
        return Ok(false);
    }
    let published: BTreeMap<_, _> = summaries
        .into_iter()
        .map(|(key, s)| {
            let mut r = s.rounded();
            r.model_id = record.model(&key).map(|m| m.model.clone());
            r.source = Some(format!(
                "moralsweep em-check of sweep {:?}, judged by {}",
                record.name(),
                record
                    .spec
                    .judge
                    .as_ref()
                    .map(|j| j.model.as_str())
                    .unwrap_or("?"),
            ));
            (key, r)
        })
        .collect();
    let dir = metrics_dir(&record.output);
    std::fs::create_dir_all(&dir).doing(|| format!("creating {}", dir.display()))?;
    write_verification(&dir.join(VERIFICATION_FILE), &published)?;
    Ok(true)
}
