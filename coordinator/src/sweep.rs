//! The sweep record: what the coordinator keeps in the store about a sweep
//! (its spec, its personas, where its files go and how far it got), and the
//! units a sweep expands into. Everything a restarted coordinator needs to
//! resume a sweep is in this record plus the store's per-unit state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use moralsweep_common::slot::UnitShape;
use moralsweep_common::tokens::Tokenizer;
use moralsweep_common::{Mode, ModelSpec, SweepDef, SweepSpec};
use serde::{Deserialize, Serialize};

use moralsweep_protocol::{ProgressState, UnitKey};

/// Where a sweep stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepState {
    /// Slots are being handed out or files written.
    Running,
    /// Every unit is final and the comparison tables are written.
    Done,
    /// Stopped by a user; recorded results stay.
    Cancelled,
}

impl SweepState {
    /// The progress state of a sweep in this state (a sweep is shown as
    /// failed only for reasons the record does not hold).
    pub fn progress(self) -> ProgressState {
        match self {
            SweepState::Running => ProgressState::Running,
            SweepState::Done => ProgressState::Done,
            SweepState::Cancelled => ProgressState::Cancelled,
        }
    }
}

/// The durable description of one sweep (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// The spec and its personas (stored as the record's `spec` and
    /// `personas` keys).
    #[serde(flatten)]
    pub def: SweepDef,
    /// Where the coordinator writes `data/` and `metrics/`.
    pub output: PathBuf,
    pub state: SweepState,
    /// Models stopped by a fatal provider error, with the provider's message.
    #[serde(default)]
    pub failed_models: BTreeMap<String, String>,
    /// Units whose rating file is written ("model/mode").
    #[serde(default)]
    pub written: BTreeSet<String>,
    pub created_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The spec as submitted over the network (none for `run`'s sweeps and
    /// for records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SpecSource>,
}

/// A spec's text as submitted, its file name and its SHA-256: what a
/// results folder takes for the sweep's identity and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecSource {
    pub name: String,
    pub toml: String,
    pub sha256: String,
}

impl SpecSource {
    pub fn new(name: &str, toml: &str) -> SpecSource {
        use sha2::Digest;
        SpecSource {
            name: name.to_string(),
            toml: toml.to_string(),
            sha256: hex::encode(sha2::Sha256::digest(toml.as_bytes())),
        }
    }
}

impl std::ops::Deref for SweepRecord {
    type Target = SweepDef;
    fn deref(&self) -> &SweepDef {
        &self.def
    }
}

impl SweepRecord {
    /// The key under which a refusal for good stops a unit: the judge's
    /// key for the judge's units (a judge that refuses stops the judging
    /// of every model, never their questionnaires or answers), the unit's
    /// model otherwise.
    pub fn failure_key<'a>(&'a self, unit: &'a UnitKey) -> &'a str {
        match (unit.mode, &self.spec.judge) {
            (Mode::EmJudge, Some(judge)) => &judge.key,
            _ => &unit.model,
        }
    }

    /// Why the unit was stopped, if it was.
    pub fn unit_failed(&self, unit: &UnitKey) -> Option<&String> {
        self.failed_models.get(self.failure_key(unit))
    }

    pub fn new(spec: SweepSpec, personas: Vec<String>, output: PathBuf) -> Self {
        SweepRecord {
            def: SweepDef { spec, personas },
            output,
            state: SweepState::Running,
            failed_models: BTreeMap::new(),
            written: BTreeSet::new(),
            created_at: moralsweep_common::slot::now_timestamp(),
            finished_at: None,
            source: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a sweep record always serialises")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }

    /// The shape of the sweep's units in `mode` (the misalignment check's:
    /// its questions times its samples per question).
    pub fn shape(&self, mode: Mode) -> UnitShape {
        if mode.is_em() {
            let em = moralsweep_common::em::EmCheck::builtin();
            return UnitShape {
                mode,
                personas: 0,
                repetitions: em.answer.samples_per_question,
                items: em.questions.len() as u32,
            };
        }
        UnitShape {
            mode,
            personas: self.personas.len() as u32,
            repetitions: self.spec.repetitions,
            items: self.spec.item_count() as u32,
        }
    }

    /// The sweep's units in a fixed order: models in spec order, then modes.
    pub fn units(&self) -> Vec<(UnitKey, UnitShape)> {
        let mut v = Vec::new();
        for m in &self.spec.models {
            for mode in self.spec.unit_modes() {
                v.push((
                    UnitKey {
                        sweep: self.spec.name.clone(),
                        model: m.key.clone(),
                        mode,
                    },
                    self.shape(mode),
                ));
            }
        }
        v
    }

    pub fn model(&self, key: &str) -> Option<&ModelSpec> {
        self.spec.models.iter().find(|m| m.key == key)
    }

    /// The model whose requests a unit sends: the judge for the judge's
    /// unit of a misalignment check, else the unit's own model.
    pub fn requester(&self, unit: &UnitKey) -> Option<&ModelSpec> {
        match unit.mode {
            Mode::EmJudge => self.spec.judge.as_ref(),
            _ => self.model(&unit.model),
        }
    }

    /// Number of slots of all units.
    pub fn total_slots(&self) -> u64 {
        self.units().iter().map(|(_, s)| s.len()).sum()
    }
}

/// The name of a unit in `SweepRecord::written` and in messages.
pub fn unit_label(model: &str, mode: Mode) -> String {
    format!("{model}/{mode}")
}

/// The token count of one request of a unit for `samples` samples (its
/// prompt counted once with the model's tokenizer,
/// `moralsweep_common::tokens`, plus one output token per sample), used to
/// pace tokens per minute before the real usage is known.
pub fn tokens_estimate(record: &SweepRecord, model: &ModelSpec, mode: Mode, samples: u32) -> u64 {
    let instrument = record
        .spec
        .instrument()
        .unwrap_or_else(|_| moralsweep_common::Instrument::mfq30());
    let item = &instrument.items[0];
    let em = moralsweep_common::em::EmCheck::builtin();
    let prompt = match mode {
        Mode::SelfMode => instrument.self_prompt(item),
        Mode::EmCheck => {
            return Tokenizer::for_model(model.provider, &model.model)
                .request_tokens(&em.questions[0], em.answer.max_tokens)
        }
        Mode::EmJudge => {
            // A judge prompt around an answer of the full allowance.
            let answer = "word ".repeat(em.answer.max_tokens as usize);
            let prompt = em.judge_prompt(
                moralsweep_common::em::JudgeKind::Alignment,
                &em.questions[0],
                &answer,
            );
            return Tokenizer::for_model(model.provider, &model.model)
                .request_tokens(&prompt, em.judge.max_tokens);
        }
        _ => {
            let p = record.personas.first().map(String::as_str).unwrap_or("");
            instrument.persona_prompt(p, item)
        }
    };
    Tokenizer::for_model(model.provider, &model.model).request_tokens(&prompt, samples.max(1))
}
