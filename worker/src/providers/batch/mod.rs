//! Clients of the providers' batch APIs: a list of rating requests (the
//! bodies the interactive adapters send, `n` included) becomes one batch;
//! the client submits it, polls it and returns, per custom id, the samples
//! or why there are none. One module per API: [`openai`] (a JSONL file
//! uploaded to the Files API, then `/v1/batches`), [`anthropic`] (Message
//! Batches) and [`gemini`] (batch mode with inline requests).
//!
//! Nothing here is durable: [`Submitted`] is what a caller must store
//! before it waits (the provider's batch id, and the input file's), so that
//! after a crash it polls the same batch instead of submitting (and paying
//! for) it again; [`BatchClient::poll`] and [`BatchClient::results`] take
//! only that record and the items.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use moralsweep_common::provider::ProviderKind;
use moralsweep_common::ModelSpec;

use super::{Completion, CompletionRequest, ProviderError};

pub mod anthropic;
pub mod azure;
pub mod gemini;
pub mod openai;

/// One request of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// Unique within the batch; how its result is found (Anthropic allows
    /// `[a-zA-Z0-9_-]{1,64}`).
    pub custom_id: String,
    pub req: CompletionRequest,
    /// Samples asked of this one request (`n`, `candidateCount`).
    pub n: u32,
}

/// A batch the provider accepted: what a caller stores before waiting.
pub use moralsweep_protocol::Submitted;

/// Where a batch is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The provider's own word for its state (`in_progress`, `ended`,
    /// `BATCH_STATE_RUNNING`, ...).
    pub status: String,
    /// Whether it is over: its results can be read.
    pub ended: bool,
    /// Requests answered, failed, and not yet done, as far as the provider
    /// tells (Anthropic counts only at the end).
    pub succeeded: u64,
    pub failed: u64,
    pub pending: u64,
    /// When the provider's window closes (Unix seconds), if it says: the
    /// latest the batch can end.
    pub expires_at: Option<i64>,
}

/// What became of one request.
#[derive(Debug, Clone)]
pub enum ItemResult {
    /// Its samples, in order; the first carries the request's usage.
    Answered(Vec<Completion>),
    /// The provider answered it with an error, classified as for an
    /// interactive call (retryable, rate limited, fatal).
    Failed(ProviderError),
    /// It was not run before the batch's window closed.
    Expired,
    /// It was not run because the batch was cancelled (or the provider
    /// gave no result for it).
    Canceled,
}

/// What a lookup at the provider found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The provider holds the batch.
    Batch(Submitted),
    /// It holds none: submitting now cannot bill twice.
    Absent,
    /// It cannot tell yet (Anthropic names no batch: a candidate's custom
    /// ids show only once it has ended); ask again later.
    NotYet,
}

/// How far before a batch's recorded time a lookup starts (clocks of the
/// worker and the provider differ).
pub const FIND_SLACK_MS: u64 = 10 * 60 * 1000;

/// The most a batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_items: usize,
    /// Of the uploaded file or the creation request.
    pub max_bytes: usize,
}

/// A provider's batch API for one model.
#[async_trait]
pub trait BatchClient: Send + Sync {
    /// The API's limits on one batch (a caller splits larger work).
    fn limits(&self) -> Limits;

    /// Builds the batch of `items` and submits it under `tag` (OpenAI
    /// `metadata`, Gemini `displayName`; Anthropic batches carry no name,
    /// so there the custom ids must carry it). Refuses, before sending
    /// anything, items over the limits, repeated custom ids and requests
    /// the API cannot serve.
    async fn submit(&self, tag: &str, items: &[BatchItem]) -> Result<Submitted, ProviderError>;

    /// Looks for a batch submitted under `tag` no earlier than `after_ms`
    /// (milliseconds since the Unix epoch): the provider may have accepted
    /// a batch whose submitter died before it could store the answer.
    /// `items` are the requests it was submitted with.
    async fn find(
        &self,
        tag: &str,
        items: &[BatchItem],
        after_ms: u64,
    ) -> Result<Found, ProviderError>;

    /// Where the batch is now.
    async fn poll(&self, batch: &Submitted) -> Result<Progress, ProviderError>;

    /// The result of every item of an ended batch, by custom id (an item
    /// the provider says nothing about is [`ItemResult::Canceled`]).
    async fn results(
        &self,
        batch: &Submitted,
        items: &[BatchItem],
    ) -> Result<HashMap<String, ItemResult>, ProviderError>;

    /// Asks the provider to stop the batch (its unanswered requests are
    /// then cancelled; answered ones keep their results).
    async fn cancel(&self, batch: &Submitted) -> Result<(), ProviderError>;
}

/// The batch client of a model spec's provider (`openai`, `anthropic`,
/// `gemini`, `azure-openai`, and `sim`, which speaks OpenAI's).
pub fn build(model: &ModelSpec) -> Result<Box<dyn BatchClient>, ProviderError> {
    match model.provider {
        ProviderKind::OpenAi => Ok(Box::new(openai::OpenAiBatch::new(
            super::openai::OpenAi::new(model, super::openai::Flavor::openai())?,
        ))),
        ProviderKind::Sim => Ok(Box::new(openai::OpenAiBatch::new(
            super::compat::build_sim(model)?,
        ))),
        ProviderKind::Anthropic => Ok(Box::new(anthropic::AnthropicBatch::new(
            super::anthropic::Anthropic::new(model)?,
        ))),
        ProviderKind::Gemini => Ok(Box::new(gemini::GeminiBatch::new(
            super::gemini::Gemini::new(model)?,
        ))),
        ProviderKind::AzureOpenAi => Ok(Box::new(azure::client(
            super::azure::AzureOpenAi::new(model, model.api_version.as_deref())?,
        ))),
        other => Err(ProviderError::Fatal(format!(
            "model {:?}: batch = true, but provider \"{other}\" has no batch API here (openai, anthropic, gemini and azure-openai do); remove batch or use another provider",
            model.key
        ))),
    }
}

/// Checks what every API requires of a batch's items: at least one, at
/// most `limits.max_items`, custom ids unique.
pub fn check_items(
    model_key: &str,
    items: &[BatchItem],
    limits: Limits,
) -> Result<(), ProviderError> {
    if items.is_empty() {
        return Err(ProviderError::Fatal(format!(
            "model {model_key:?}: a batch needs at least one request"
        )));
    }
    if items.len() > limits.max_items {
        return Err(ProviderError::Fatal(format!(
            "model {model_key:?}: {} requests in one batch; the provider takes at most {}: split them over several batches",
            items.len(),
            limits.max_items
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = items.iter().find(|i| !seen.insert(i.custom_id.as_str())) {
        return Err(ProviderError::Fatal(format!(
            "model {model_key:?}: custom id {:?} appears twice in one batch; each request needs its own",
            dup.custom_id
        )));
    }
    Ok(())
}

/// Checks the size of what will be sent.
pub fn check_bytes(model_key: &str, bytes: usize, limits: Limits) -> Result<(), ProviderError> {
    if bytes > limits.max_bytes {
        return Err(ProviderError::Fatal(format!(
            "model {model_key:?}: the batch is {bytes} bytes; the provider takes at most {}: split it over several batches",
            limits.max_bytes
        )));
    }
    Ok(())
}

/// Submits `items`, polls every `every` until the batch has ended, and
/// returns the record and the results. A caller that must survive a crash
/// stores the record between [`BatchClient::submit`] and the polling
/// instead of using this.
pub async fn run_to_end(
    client: &dyn BatchClient,
    items: &[BatchItem],
    every: Duration,
) -> Result<(Submitted, HashMap<String, ItemResult>), ProviderError> {
    let batch = client.submit("moralsweep", items).await?;
    loop {
        if client.poll(&batch).await?.ended {
            break;
        }
        tokio::time::sleep(every).await;
    }
    let results = client.results(&batch, items).await?;
    Ok((batch, results))
}

/// The Unix second from which a lookup of a batch recorded at `after_ms`
/// searches (the slack before it allows for clocks that differ).
pub(crate) fn window_start_secs(after_ms: u64) -> i64 {
    (after_ms.saturating_sub(FIND_SLACK_MS) / 1000) as i64
}

/// The Unix second of an RFC 3339 time in a provider's answer.
pub(crate) fn unix_secs(v: Option<&serde_json::Value>) -> Option<i64> {
    v.and_then(serde_json::Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
}

/// Marks every item the provider said nothing about as cancelled.
pub(crate) fn unanswered_cancelled(out: &mut HashMap<String, ItemResult>, items: &[BatchItem]) {
    for i in items {
        out.entry(i.custom_id.clone())
            .or_insert(ItemResult::Canceled);
    }
}

/// An item's request, for parsing its answer.
pub(crate) fn by_id(items: &[BatchItem]) -> HashMap<&str, &BatchItem> {
    items.iter().map(|i| (i.custom_id.as_str(), i)).collect()
}
