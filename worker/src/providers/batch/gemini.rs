//! Gemini's batch mode with inline requests: the items become
//! `batch.inputConfig.requests.requests[]`, each the `gemini` adapter's
//! `GenerateContentRequest` (`candidateCount` for several samples) with
//! `metadata.key` = its custom id, posted to
//! `models/{model}:batchGenerateContent` (at most 20 MB in all); the batch
//! is the long-running operation `batches/{id}`, polled until done; the
//! results are its `inlinedResponses`, matched by `metadata.key` (or by
//! order).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{
    by_id, check_bytes, check_items, unanswered_cancelled, unix_secs, window_start_secs,
    BatchClient, BatchItem, Found, ItemResult, Limits, Progress, Submitted,
};
use crate::providers::gemini::Gemini;
use crate::providers::ProviderError;

/// Inline requests may total at most 20 MB.
pub const LIMITS: Limits = Limits {
    max_items: 1_000_000,
    max_bytes: 20 * 1024 * 1024,
};

/// How long a Gemini batch may run before it expires (48 hours).
const GEMINI_WINDOW_SECS: i64 = 48 * 3600;

const ENDED: &[&str] = &[
    "BATCH_STATE_SUCCEEDED",
    "BATCH_STATE_FAILED",
    "BATCH_STATE_CANCELLED",
    "BATCH_STATE_EXPIRED",
];

/// The batch mode of a Gemini model.
pub struct GeminiBatch {
    model: Gemini,
}

/// The HTTP status of a `google.rpc.Code`.
fn http_of(code: u64) -> u16 {
    match code {
        3 | 9 | 11 => 400,
        16 => 401,
        7 => 403,
        5 => 404,
        8 => 429,
        14 => 503,
        _ => 500,
    }
}

impl GeminiBatch {
    pub fn new(model: Gemini) -> GeminiBatch {
        GeminiBatch { model }
    }

    fn key(&self) -> &str {
        &self.model.core().model_key
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1beta/{path}", self.model.core().base_url)
    }

    /// The batch's display name: how [`BatchClient::find`] knows it.
    fn display_name(&self, tag: &str) -> String {
        format!("moralsweep {} {tag}", self.key())
    }

    /// The creation body.
    pub fn create_body(&self, tag: &str, items: &[BatchItem]) -> Value {
        let requests: Vec<Value> = items
            .iter()
            .map(|i| json!({"request": self.model.body_n(&i.req, i.n), "metadata": {"key": i.custom_id}}))
            .collect();
        json!({"batch": {"displayName": self.display_name(tag),
                         "inputConfig": {"requests": {"requests": requests}}}})
    }

    async fn fetch(&self, batch: &Submitted) -> Result<Value, ProviderError> {
        self.model
            .core()
            .get(&self.url(&batch.id), self.model.auth())
            .await
    }

    fn result_of(&self, r: &Value, item: &BatchItem) -> ItemResult {
        if let Some(body) = r.get("response") {
            return match self.model.answer_of(body, &item.req, item.n) {
                Ok(samples) => ItemResult::Answered(samples),
                Err(e) => ItemResult::Failed(e),
            };
        }
        let code = r
            .pointer("/error/code")
            .and_then(Value::as_u64)
            .unwrap_or(2);
        match code {
            1 => ItemResult::Canceled,
            4 => ItemResult::Expired,
            c => {
                let status = http_of(c);
                let body = json!({"error": {"code": status,
                    "message": r.pointer("/error/message").cloned().unwrap_or(Value::Null)}});
                ItemResult::Failed(self.model.core().classify(
                    status,
                    &reqwest::header::HeaderMap::new(),
                    &serde_json::to_vec(&body).unwrap_or_default(),
                    ":batchGenerateContent",
                ))
            }
        }
    }
}

#[async_trait]
impl BatchClient for GeminiBatch {
    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn submit(&self, tag: &str, items: &[BatchItem]) -> Result<Submitted, ProviderError> {
        check_items(self.key(), items, LIMITS)?;
        let body = self.create_body(tag, items);
        check_bytes(self.key(), body.to_string().len(), LIMITS)?;
        let model = self
            .model
            .core()
            .model
            .trim_start_matches("models/")
            .to_string();
        let v = self
            .model
            .core()
            .post(
                &self.url(&format!("models/{model}:batchGenerateContent")),
                self.model.auth(),
                &body,
            )
            .await?;
        let id = v.get("name").and_then(Value::as_str).ok_or_else(|| {
            ProviderError::Retryable(format!(
                "model {:?}: the batch answer lacks the operation's name",
                self.key()
            ))
        })?;
        Ok(Submitted {
            api: "gemini".into(),
            id: id.to_string(),
            input_file_id: None,
            items: items.len(),
        })
    }

    async fn find(
        &self,
        tag: &str,
        items: &[BatchItem],
        after_ms: u64,
    ) -> Result<Found, ProviderError> {
        let name = self.display_name(tag);
        let oldest = window_start_secs(after_ms);
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url("batches?pageSize=100");
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={t}"));
            }
            let v = self.model.core().get(&url, self.model.auth()).await?;
            let ops = v
                .get("operations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for op in &ops {
                if op.pointer("/metadata/displayName").and_then(Value::as_str) == Some(&name) {
                    let id = op.get("name").and_then(Value::as_str).ok_or_else(|| {
                        ProviderError::Retryable(format!(
                            "model {:?}: a listed batch lacks its name",
                            self.key()
                        ))
                    })?;
                    return Ok(Found::Batch(Submitted {
                        api: "gemini".into(),
                        id: id.to_string(),
                        input_file_id: None,
                        items: items.len(),
                    }));
                }
            }
            // Newest first: a page ending before the window ends the search.
            let too_old = unix_secs(ops.last().and_then(|op| op.pointer("/metadata/createTime")))
                .is_some_and(|t| t < oldest);
            match v.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !too_old && !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(Found::Absent),
            }
        }
    }

    async fn poll(&self, batch: &Submitted) -> Result<Progress, ProviderError> {
        let v = self.fetch(batch).await?;
        let state = v
            .pointer("/metadata/state")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // int64 counts come as strings.
        let count = |k: &str| {
            v.pointer(&format!("/metadata/batchStats/{k}"))
                .and_then(|x| {
                    x.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| x.as_u64())
                })
                .unwrap_or(0)
        };
        Ok(Progress {
            ended: ENDED.contains(&state.as_str()) || v.get("done") == Some(&Value::Bool(true)),
            status: state,
            succeeded: count("successfulRequestCount"),
            failed: count("failedRequestCount"),
            pending: count("pendingRequestCount"),
            // Google gives no deadline; batches expire 48 hours after creation.
            expires_at: unix_secs(v.pointer("/metadata/createTime"))
                .map(|t| t + GEMINI_WINDOW_SECS),
        })
    }

    async fn results(
        &self,
        batch: &Submitted,
        items: &[BatchItem],
    ) -> Result<HashMap<String, ItemResult>, ProviderError> {
        let v = self.fetch(batch).await?;
        let state = v
            .pointer("/metadata/state")
            .and_then(Value::as_str)
            .unwrap_or("");
        if state == "BATCH_STATE_FAILED" {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: the provider failed batch {}: {}",
                self.key(),
                batch.id,
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            )));
        }
        if v.get("done") != Some(&Value::Bool(true)) {
            return Err(ProviderError::Retryable(format!(
                "model {:?}: batch {} has not ended (state {state}); poll it until it has",
                self.key(),
                batch.id
            )));
        }
        let responses = v
            .pointer("/response/inlinedResponses/inlinedResponses")
            .or_else(|| v.pointer("/metadata/output/inlinedResponses/inlinedResponses"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let wanted = by_id(items);
        let mut out = HashMap::new();
        for (pos, r) in responses.iter().enumerate() {
            let item = match r.pointer("/metadata/key").and_then(Value::as_str) {
                Some(k) => wanted.get(k).copied(),
                None => items.get(pos),
            };
            if let Some(item) = item {
                out.insert(item.custom_id.clone(), self.result_of(r, item));
            }
        }
        unanswered_cancelled(&mut out, items);
        Ok(out)
    }

    async fn cancel(&self, batch: &Submitted) -> Result<(), ProviderError> {
        self.model
            .core()
            .post(
                &self.url(&format!("{}:cancel", batch.id)),
                self.model.auth(),
                &json!({}),
            )
            .await
            .map(|_| ())
    }
}
