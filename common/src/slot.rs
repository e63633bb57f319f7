//! Slot identities and what is recorded for each slot.
//!
//! A slot is one unit of work: (model, mode, persona, item, run_index). Within
//! one (sweep, model, mode) the slots are numbered densely in the order the
//! rating files list them (persona, then item, then run), so a slot's index is
//! its deterministic identity and the files come out in slot order.

use serde::{Deserialize, Serialize};

use crate::instrument::ITEM_COUNT;
use crate::spec::Mode;

/// The position of one slot inside its (model, mode) unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SlotCoord {
    /// Persona id; `None` in self mode.
    pub persona: Option<u32>,
    /// Item id, 1-30.
    pub item: u8,
    /// Run index, 1..=n; always 1 in logprob mode.
    pub run: u32,
}

/// The shape of one (model, mode) unit: how many personas and repetitions.
/// The geometry of a unit only (slot index <-> persona, item, run); which
/// unit it is, is its key (`moralsweep_protocol::UnitKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitShape {
    pub mode: Mode,
    pub personas: u32,
    pub repetitions: u32,
    /// Items of the instrument (30 for the MFQ-30, 44 for the BFI-44); a
    /// shape recorded before instruments existed is an MFQ-30 shape.
    #[serde(default = "mfq_items")]
    pub items: u32,
}

fn mfq_items() -> u32 {
    ITEM_COUNT as u32
}

impl UnitShape {
    /// Number of slots in the unit.
    pub fn len(&self) -> u64 {
        let q = self.items as u64;
        match self.mode {
            Mode::Persona => self.personas as u64 * q * self.repetitions as u64,
            Mode::SelfMode => q * self.repetitions as u64,
            Mode::Logprob => self.personas as u64 * q,
            // Questions x samples; the judge two slots per answer.
            Mode::EmCheck => q * self.repetitions as u64,
            Mode::EmJudge => q * self.repetitions as u64 * crate::em::JUDGE_FANOUT as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The coordinates of slot `index` (0-based, `index < len()`).
    pub fn coord(&self, index: u64) -> SlotCoord {
        let q = self.items as u64;
        match self.mode {
            Mode::Persona => {
                let n = self.repetitions as u64;
                SlotCoord {
                    persona: Some((index / (q * n)) as u32),
                    item: ((index / n) % q) as u8 + 1,
                    run: (index % n) as u32 + 1,
                }
            }
            Mode::SelfMode | Mode::EmCheck => {
                let n = self.repetitions as u64;
                SlotCoord {
                    persona: None,
                    item: (index / n) as u8 + 1,
                    run: (index % n) as u32 + 1,
                }
            }
            // The coordinates of the judged answer (its question and sample).
            Mode::EmJudge => UnitShape {
                mode: Mode::EmCheck,
                ..*self
            }
            .coord(index / crate::em::JUDGE_FANOUT as u64),
            Mode::Logprob => SlotCoord {
                persona: Some((index / q) as u32),
                item: (index % q) as u8 + 1,
                run: 1,
            },
        }
    }

    /// The index of a slot; inverse of [`UnitShape::coord`].
    pub fn index(&self, c: SlotCoord) -> u64 {
        let q = self.items as u64;
        let item = c.item as u64 - 1;
        match self.mode {
            Mode::Persona => {
                let n = self.repetitions as u64;
                (c.persona.unwrap_or(0) as u64 * q + item) * n + (c.run as u64 - 1)
            }
            Mode::SelfMode | Mode::EmCheck => item * self.repetitions as u64 + (c.run as u64 - 1),
            Mode::Logprob => c.persona.unwrap_or(0) as u64 * q + item,
            // The alignment slot of the judged answer.
            Mode::EmJudge => {
                (item * self.repetitions as u64 + (c.run as u64 - 1))
                    * crate::em::JUDGE_FANOUT as u64
            }
        }
    }
}

/// What a persona or self slot records: one row of a sampling file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// 0-5, or -1 when no rating could be extracted.
    pub rating: i8,
    /// Failed attempts before this answer.
    pub failures: u32,
    /// The start of the raw response.
    pub response: String,
    /// When it was collected (ISO 8601, UTC, microseconds, no offset: the papers' format).
    pub collected_at: String,
}

/// What a logprob slot records: one row of a logprob file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogprobRecord {
    /// The first returned token.
    pub first_token: String,
    pub first_token_logprob: f64,
    /// Logprob of each digit 0-5, `None` where it was not among the returned top tokens.
    pub digit_logprobs: [Option<f64>; 6],
    /// The returned top tokens with their logprobs, as a JSON list of {token, logprob}.
    pub raw_top_logprobs_json: String,
    /// How many top logprobs were requested.
    pub top_logprobs_requested: u32,
    pub collected_at: String,
}

/// What an answer slot of the misalignment check records: the model's
/// free-form answer, whole (the judge reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub text: String,
    /// Failed attempts before this answer.
    pub failures: u32,
    pub collected_at: String,
}

/// What a judge slot records: the judge's reply and the score read from it
/// (`crate::em::parse_judge_reply`; `None`: no score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRecord {
    pub reply: String,
    pub score: Option<u8>,
    pub collected_at: String,
}

/// A recorded slot outcome of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SlotRecord {
    Sample(SampleRecord),
    Logprob(LogprobRecord),
    Answer(AnswerRecord),
    Judge(JudgeRecord),
}

impl SlotRecord {
    /// Whether this kind of record belongs in a unit of `mode`.
    pub fn fits(&self, mode: Mode) -> bool {
        matches!(
            (self, mode),
            (SlotRecord::Logprob(_), Mode::Logprob)
                | (SlotRecord::Sample(_), Mode::Persona | Mode::SelfMode)
                | (SlotRecord::Answer(_), Mode::EmCheck)
                | (SlotRecord::Judge(_), Mode::EmJudge)
        )
    }
}

/// The current time in the papers' `collected_at` format.
pub fn now_timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_coord_are_inverse_and_in_file_order() {
        for (mode, items) in Mode::ALL.into_iter().flat_map(|m| [(m, 30), (m, 44)]) {
            let shape = UnitShape {
                mode,
                personas: 3,
                repetitions: 4,
                items,
            };
            let mut prev = None;
            for i in 0..shape.len() {
                let c = shape.coord(i);
                assert_eq!(shape.index(c), i);
                if let Some(p) = prev {
                    assert!(c > p, "slot order must match file order");
                }
                prev = Some(c);
            }
        }
    }
}
