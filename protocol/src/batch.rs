//! A provider batch: slots of one unit answered through a provider's batch
//! API (OpenAI `/v1/batches`, Anthropic message batches, Gemini
//! `batchGenerateContent`) instead of one call each.
//!
//! A batch is billed once the provider accepts it, so it must never be sent
//! twice. Its record lives in the store from before the worker submits it
//! until its results are recorded: the slots it answers belong to the batch,
//! not to a lease, so they are never handed out again while it runs; a
//! worker that dies leaves the record to another worker, which resumes
//! polling (or, when no provider id was stored, first looks the batch up at
//! the provider by its id) instead of submitting again.

use serde::{Deserialize, Serialize};

use crate::unit::UnitKey;

/// One provider batch as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Unique within its sweep; given to the provider as the batch's
    /// metadata (OpenAI `metadata`, Gemini `displayName`) and as the prefix
    /// of every line's `custom_id`, so that a batch the provider accepted
    /// before its provider id was stored can be found again.
    pub id: String,
    pub unit: UnitKey,
    /// The slots it answers, ascending.
    pub slots: Vec<u32>,
    /// The provider's id of the batch, once the provider accepted it.
    #[serde(default)]
    pub provider_id: Option<String>,
    /// The worker that polls it, until `deadline_ms` (extended while it
    /// polls; afterwards another worker may claim it).
    pub worker: String,
    pub deadline_ms: u64,
    /// When the record was opened (milliseconds since the Unix epoch).
    pub created_ms: u64,
}

/// A batch an extension did not extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostBatch {
    pub sweep: String,
    pub id: String,
    /// Its sweep no longer runs (cancelled or deleted): the record is
    /// closed and the worker cancels the batch at the provider. Otherwise
    /// another worker claimed it (this one stopped extending in time): the
    /// worker just stops polling it.
    pub stopped: bool,
}

/// A batch accepted by the provider: what a worker needs to poll it and
/// read its results again after any crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// `openai`, `anthropic` or `gemini`.
    pub api: String,
    /// The provider's id of the batch (`batch_...`, `msgbatch_...`,
    /// `batches/...`).
    pub id: String,
    /// The uploaded input file (OpenAI).
    pub input_file_id: Option<String>,
    /// Requests in it.
    pub items: usize,
}

/// What a batch record's `provider_id` holds: which of the record's
/// provider batches is current (the first asks every slot; each follow-up
/// asks again the samples that came back without a digit, as the rating
/// protocol's retries and fallback do), its requests, and the provider's
/// batch once accepted. Written *before* a provider batch is submitted
/// (with `submitted` empty) and again once the provider accepted it, so a
/// worker that takes the record over after a crash knows whether to poll,
/// to look the batch up at the provider, or to submit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderState {
    /// 0 for the first provider batch, one more per follow-up.
    pub generation: u32,
    /// The custom ids of its requests; each names its slots and attempt.
    pub items: Vec<String>,
    /// The provider's batch, once it accepted it.
    #[serde(default)]
    pub submitted: Option<Submitted>,
    /// When this generation was about to be submitted (ms since the Unix
    /// epoch): where a lookup at the provider starts.
    pub at_ms: u64,
}

impl ProviderState {
    /// The state stored in a record's `provider_id`; `None` when it holds
    /// nothing (nothing was submitted yet) or something else (an error to
    /// the caller: a record written by something other than a worker).
    pub fn parse(provider_id: Option<&str>) -> Result<Option<ProviderState>, String> {
        match provider_id {
            None => Ok(None),
            Some(s) => serde_json::from_str(s).map(Some).map_err(|e| {
                format!("a batch record's provider state is not readable ({e}): {s:.120}")
            }),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a provider state serializes")
    }

    /// The name given to the provider for this generation (OpenAI batch
    /// `metadata`, Gemini `displayName`), by which it is found again.
    pub fn tag(batch_id: &str, generation: u32) -> String {
        format!("{batch_id}-g{generation}")
    }
}

impl BatchRecord {
    /// One line for `status`: the model, its slots, the provider batch and
    /// what its worker last saw of it (`seen`).
    pub fn describe(&self, seen: Option<&str>) -> String {
        let state = ProviderState::parse(self.provider_id.as_deref())
            .ok()
            .flatten();
        let provider = match &state {
            None => "not submitted yet".to_string(),
            Some(s) => match &s.submitted {
                None => format!(
                    "provider batch {} ({} requests) being submitted",
                    s.generation + 1,
                    s.items.len()
                ),
                Some(b) => format!(
                    "{} batch {} ({} requests{})",
                    b.api,
                    b.id,
                    b.items,
                    if s.generation > 0 {
                        format!(", follow-up {}", s.generation)
                    } else {
                        String::new()
                    }
                ),
            },
        };
        let seen = seen.map(|s| format!(": {s}")).unwrap_or_default();
        format!(
            "batch {} of {} {}: {} slots, {provider}, polled by {}{seen}",
            self.id,
            self.unit.model,
            self.unit.mode.name(),
            self.slots.len(),
            self.worker
        )
    }
}

/// A batch a worker holds, in an extension: which, and what the worker
/// last saw of it at the provider (state, counts, expected end), which
/// `status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBatch {
    pub sweep: String,
    pub id: String,
    pub seen: Option<String>,
}

impl<S: Into<String>, I: Into<String>> From<(S, I)> for HeldBatch {
    fn from((sweep, id): (S, I)) -> HeldBatch {
        HeldBatch {
            sweep: sweep.into(),
            id: id.into(),
            seen: None,
        }
    }
}
