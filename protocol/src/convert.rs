//! Conversions between the gRPC messages (`moralsweep_proto::v1`) and the
//! engine's types, shared by the coordinator's services and the clients.

use moralsweep_common::slot::{AnswerRecord, JudgeRecord, LogprobRecord, SampleRecord, SlotRecord};
use moralsweep_common::Mode;
use moralsweep_proto::v1 as pb;

use crate::batch::BatchRecord;
use crate::lease::{Grant, Lease};
use crate::progress::{ProgressState, SweepProgress, UnitProgress};
use crate::report::{Outcome, SlotReport};
use crate::unit::UnitKey;

/// A message that does not convert: what is wrong with it, naming the
/// slot where it is a slot's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A mode name that names no mode (the text says which are).
    #[error("{0}")]
    Mode(String),
    /// A slot result with none of its outcomes.
    #[error("{at} has no outcome (sample, logprob, answer, judge or fatal)")]
    NoOutcome { at: String },
    /// A rating outside the scale.
    #[error("{at}: rating {rating} is not -1 or 0-5")]
    Rating { at: String, rating: i32 },
    /// Logprobs without one entry per digit.
    #[error("{at}: digit_logprobs and present need six entries (digits 0-5)")]
    Digits { at: String },
    /// A judge's score outside its scale.
    #[error("{at}: judge score {score} is not -1 or 0-100")]
    JudgeScore { at: String, score: i32 },
    /// A slot result whose mode names no mode.
    #[error("{at}: {problem}")]
    ResultMode { at: String, problem: String },
}

/// Parses a mode name sent over the wire.
pub fn mode(s: &str) -> Result<Mode, ConvertError> {
    s.parse().map_err(ConvertError::Mode)
}

pub fn grant_to_pb(g: &Grant) -> pb::Lease {
    let l = &g.lease;
    pb::Lease {
        lease_id: l.id.clone(),
        sweep: l.unit.sweep.clone(),
        model: l.unit.model.clone(),
        mode: l.unit.mode.name().to_string(),
        slots: l.slots.clone(),
        deadline_ms: l.deadline_ms,
        worker: l.worker.clone(),
        rate_group: g.rate_group.clone(),
        permits: g.permits,
        payloads: g.payloads.clone(),
    }
}

pub fn grant_from_pb(l: pb::Lease) -> Result<Grant, ConvertError> {
    Ok(Grant {
        lease: Lease {
            id: l.lease_id,
            unit: UnitKey {
                sweep: l.sweep,
                model: l.model,
                mode: mode(&l.mode)?,
            },
            worker: l.worker,
            slots: l.slots,
            deadline_ms: l.deadline_ms,
        },
        rate_group: l.rate_group,
        permits: l.permits,
        payloads: l.payloads,
    })
}

pub fn report_to_pb(r: &SlotReport) -> pb::SlotResult {
    use pb::slot_result::Outcome as O;
    let outcome = match &r.outcome {
        Outcome::Record(SlotRecord::Sample(s)) => O::Sample(pb::SampleResult {
            rating: s.rating as i32,
            failures: s.failures,
            response: s.response.clone(),
            collected_at: s.collected_at.clone(),
        }),
        Outcome::Record(SlotRecord::Logprob(l)) => O::Logprob(pb::LogprobResult {
            first_token: l.first_token.clone(),
            first_token_logprob: l.first_token_logprob,
            digit_logprobs: l.digit_logprobs.iter().map(|d| d.unwrap_or(0.0)).collect(),
            present: l.digit_logprobs.iter().map(|d| d.is_some()).collect(),
            raw_top_logprobs_json: l.raw_top_logprobs_json.clone(),
            top_logprobs_requested: l.top_logprobs_requested,
            collected_at: l.collected_at.clone(),
        }),
        Outcome::Record(SlotRecord::Answer(a)) => O::Answer(pb::AnswerResult {
            text: a.text.clone(),
            failures: a.failures,
            collected_at: a.collected_at.clone(),
        }),
        Outcome::Record(SlotRecord::Judge(j)) => O::Judge(pb::JudgeResult {
            reply: j.reply.clone(),
            score: j.score.map_or(-1, i32::from),
            collected_at: j.collected_at.clone(),
        }),
        Outcome::Fatal(m) => O::Fatal(m.clone()),
    };
    pb::SlotResult {
        lease_id: r.lease_id.clone().unwrap_or_default(),
        sweep: r.unit.sweep.clone(),
        model: r.unit.model.clone(),
        mode: r.unit.mode.name().to_string(),
        slot: r.slot,
        outcome: Some(outcome),
    }
}

/// Checks and converts a reported result; the error says what is wrong.
pub fn report_from_pb(r: pb::SlotResult) -> Result<SlotReport, ConvertError> {
    use pb::slot_result::Outcome as O;
    let at = format!("result for slot {} of {}/{}", r.slot, r.model, r.mode);
    let outcome = match r.outcome {
        None => return Err(ConvertError::NoOutcome { at }),
        Some(O::Sample(s)) => {
            if !(-1..=5).contains(&s.rating) {
                return Err(ConvertError::Rating {
                    at,
                    rating: s.rating,
                });
            }
            Outcome::Record(SlotRecord::Sample(SampleRecord {
                rating: s.rating as i8,
                failures: s.failures,
                response: s.response,
                collected_at: s.collected_at,
            }))
        }
        Some(O::Logprob(l)) => {
            if l.digit_logprobs.len() != 6 || l.present.len() != 6 {
                return Err(ConvertError::Digits { at });
            }
            let mut d = [None; 6];
            for (i, slot) in d.iter_mut().enumerate() {
                if l.present[i] {
                    *slot = Some(l.digit_logprobs[i]);
                }
            }
            Outcome::Record(SlotRecord::Logprob(LogprobRecord {
                first_token: l.first_token,
                first_token_logprob: l.first_token_logprob,
                digit_logprobs: d,
                raw_top_logprobs_json: l.raw_top_logprobs_json,
                top_logprobs_requested: l.top_logprobs_requested,
                collected_at: l.collected_at,
            }))
        }
        Some(O::Answer(a)) => Outcome::Record(SlotRecord::Answer(AnswerRecord {
            text: a.text,
            failures: a.failures,
            collected_at: a.collected_at,
        })),
        Some(O::Judge(j)) => {
            if !(-1..=100).contains(&j.score) {
                return Err(ConvertError::JudgeScore { at, score: j.score });
            }
            Outcome::Record(SlotRecord::Judge(JudgeRecord {
                reply: j.reply,
                score: u8::try_from(j.score).ok(),
                collected_at: j.collected_at,
            }))
        }
        Some(O::Fatal(m)) => Outcome::Fatal(m),
    };
    Ok(SlotReport {
        lease_id: (!r.lease_id.is_empty()).then_some(r.lease_id),
        unit: UnitKey {
            sweep: r.sweep,
            model: r.model,
            mode: mode(&r.mode).map_err(|e| ConvertError::ResultMode {
                at,
                problem: e.to_string(),
            })?,
        },
        slot: r.slot,
        outcome,
    })
}

pub fn progress_to_pb(p: &SweepProgress) -> pb::SweepStatus {
    pb::SweepStatus {
        sweep: p.sweep.clone(),
        state: p.state.name().to_string(),
        units: p
            .units
            .iter()
            .map(|u| pb::UnitStatus {
                model: u.model.clone(),
                mode: u.mode.name().to_string(),
                total: u.total,
                done: u.done,
                state: u.state.name().to_string(),
                message: u.message.clone(),
            })
            .collect(),
        total: p.total,
        done: p.done,
        leased: p.leased,
        output: p.output.display().to_string(),
        messages: p.messages.clone(),
        batches: p.batches.clone(),
    }
}

pub fn progress_from_pb(s: pb::SweepStatus) -> SweepProgress {
    SweepProgress {
        sweep: s.sweep,
        state: ProgressState::from_name(&s.state),
        units: s
            .units
            .into_iter()
            .map(|u| UnitProgress {
                model: u.model,
                mode: u.mode.parse().unwrap_or(Mode::Persona),
                total: u.total,
                done: u.done,
                state: ProgressState::from_name(&u.state),
                message: u.message,
            })
            .collect(),
        total: s.total,
        done: s.done,
        leased: s.leased,
        output: s.output.into(),
        messages: s.messages,
        batches: s.batches,
    }
}

pub fn batch_to_pb(b: &BatchRecord) -> pb::ProviderBatch {
    pb::ProviderBatch {
        id: b.id.clone(),
        sweep: b.unit.sweep.clone(),
        model: b.unit.model.clone(),
        mode: b.unit.mode.name().to_string(),
        slots: b.slots.clone(),
        provider_id: b.provider_id.clone().unwrap_or_default(),
        worker: b.worker.clone(),
        deadline_ms: b.deadline_ms,
        created_ms: b.created_ms,
    }
}

pub fn batch_from_pb(b: pb::ProviderBatch) -> Result<BatchRecord, ConvertError> {
    Ok(BatchRecord {
        unit: UnitKey {
            sweep: b.sweep,
            model: b.model,
            mode: mode(&b.mode)?,
        },
        id: b.id,
        slots: b.slots,
        provider_id: Some(b.provider_id).filter(|p| !p.is_empty()),
        worker: b.worker,
        deadline_ms: b.deadline_ms,
        created_ms: b.created_ms,
    })
}
