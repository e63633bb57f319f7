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
