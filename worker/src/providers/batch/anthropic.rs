//! Anthropic's Message Batches: the items become `requests: [{custom_id,
//! params}]` (the `anthropic` adapter's Messages bodies; one sample each,
//! Anthropic has no multi-sample) posted to `/v1/messages/batches`; the
//! results are read as JSONL from the batch's `results_url` once its
//! `processing_status` is `ended`: `succeeded` (the message), `errored`
//! (the error response, classified as an interactive call's would be),
//! `canceled`, `expired`.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{
    by_id, check_bytes, check_items, unanswered_cancelled, unix_secs, window_start_secs,
    BatchClient, BatchItem, Found, ItemResult, Limits, Progress, Submitted,
};
use crate::providers::anthropic::Anthropic;
use crate::providers::ProviderError;

/// At most 100,000 requests or 256 MB per batch.
pub const LIMITS: Limits = Limits {
    max_items: 100_000,
    max_bytes: 256 * 1000 * 1000,
};

/// The Message Batches API of a Claude model.
pub struct AnthropicBatch {
    model: Anthropic,
}

/// The HTTP status of an Anthropic error type.
fn status_of(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn custom_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl AnthropicBatch {
    pub fn new(model: Anthropic) -> AnthropicBatch {
        AnthropicBatch { model }
    }

    fn key(&self) -> &str {
        &self.model.core().model_key
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/messages/batches{path}", self.model.core().base_url)
    }

    /// The creation body.
    pub fn create_body(&self, items: &[BatchItem]) -> Result<Value, ProviderError> {
        let mut requests = Vec::with_capacity(items.len());
        for i in items {
            if !custom_id_ok(&i.custom_id) {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: custom id {:?} is not 1-64 letters, digits, '_' or '-', as Message Batches require",
                    self.key(),
                    i.custom_id
                )));
            }
            if i.n > 1 {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: several samples per request are not offered here (field `n`): Anthropic returns one sample per request",
                    self.key()
                )));
            }
            self.model.check(&i.req)?;
            requests.push(json!({"custom_id": i.custom_id, "params": self.model.body(&i.req)}));
        }
        Ok(json!({"requests": requests}))
    }

    async fn fetch(&self, batch: &Submitted) -> Result<Value, ProviderError> {
        self.model
            .core()
            .get(&self.url(&format!("/{}", batch.id)), self.model.auth())
            .await
    }

    fn result_of(&self, result: &Value, item: &BatchItem) -> ItemResult {
        match result.get("type").and_then(Value::as_str) {
            Some("succeeded") => {
                match self
                    .model
                    .answer_of(result.get("message").unwrap_or(&Value::Null), &item.req)
                {
                    Ok(c) => ItemResult::Answered(vec![c]),
                    Err(e) => ItemResult::Failed(e),
                }
            }
            Some("errored") => {
                let error = result.get("error").cloned().unwrap_or(Value::Null);
                let ty = error
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("api_error");
                let bytes = serde_json::to_vec(&error).unwrap_or_default();
                ItemResult::Failed(self.model.core().classify(
                    status_of(ty),
                    &reqwest::header::HeaderMap::new(),
                    &bytes,
                    "/v1/messages/batches",
                ))
            }
            Some("expired") => ItemResult::Expired,
            _ => ItemResult::Canceled,
        }
    }
}

#[async_trait]
impl BatchClient for AnthropicBatch {
    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn submit(&self, _tag: &str, items: &[BatchItem]) -> Result<Submitted, ProviderError> {
        check_items(self.key(), items, LIMITS)?;
        let body = self.create_body(items)?;
        check_bytes(self.key(), body.to_string().len(), LIMITS)?;
        let v = self
            .model
            .core()
            .post(&self.url(""), self.model.auth(), &body)
            .await?;
        let id = v.get("id").and_then(Value::as_str).ok_or_else(|| {
            ProviderError::Retryable(format!(
                "model {:?}: the message batch answer lacks its id",
                self.key()
            ))
        })?;
        Ok(Submitted {
            api: "anthropic".into(),
            id: id.to_string(),
            input_file_id: None,
            items: items.len(),
        })
    }

    /// Message batches carry no name: a candidate (created in the window,
    /// as many requests as `items`) is ours when its results name our
    /// custom ids (which carry the tag); one still running cannot be told
    /// apart until it ends.
    async fn find(
        &self,
        _tag: &str,
        items: &[BatchItem],
        after_ms: u64,
    ) -> Result<Found, ProviderError> {
        let oldest = window_start_secs(after_ms);
        let ours: std::collections::HashSet<&str> =
            items.iter().map(|i| i.custom_id.as_str()).collect();
        let mut after: Option<String> = None;
        let mut undecided = false;
        loop {
            let mut url = self.url("?limit=100");
            if let Some(a) = &after {
                url.push_str(&format!("&after_id={a}"));
            }
            let v = self.model.core().get(&url, self.model.auth()).await?;
            let data = v
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut too_old = false;
            for b in &data {
                let created = unix_secs(b.get("created_at"));
                if created.is_some_and(|t| t < oldest) {
                    too_old = true;
                    continue;
                }
                let total: u64 = ["processing", "succeeded", "errored", "canceled", "expired"]
                    .iter()
                    .filter_map(|k| {
                        b.pointer(&format!("/request_counts/{k}"))
                            .and_then(Value::as_u64)
                    })
                    .sum();
                if total != items.len() as u64 {
                    continue;
                }
                let Some(id) = b.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let Some(results) = b.get("results_url").and_then(Value::as_str) else {
                    undecided = true;
                    continue;
                };
                let bytes = self
                    .model
                    .core()
                    .get_bytes(results, self.model.auth())
                    .await?;
                let named = String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .any(|r| {
                        r.get("custom_id")
                            .and_then(Value::as_str)
                            .is_some_and(|c| ours.contains(c))
                    });
                if named {
                    return Ok(Found::Batch(Submitted {
                        api: "anthropic".into(),
                        id: id.to_string(),
                        input_file_id: None,
                        items: items.len(),
                    }));
                }
            }
            let more = v.get("has_more").and_then(Value::as_bool).unwrap_or(false);
            match v.get("last_id").and_then(Value::as_str) {
                Some(last) if more && !too_old => after = Some(last.to_string()),
                _ => break,
            }
        }
        Ok(if undecided {
            Found::NotYet
        } else {
            Found::Absent
        })
    }

    async fn poll(&self, batch: &Submitted) -> Result<Progress, ProviderError> {
        let v = self.fetch(batch).await?;
        let status = v
            .get("processing_status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let count = |k: &str| {
            v.pointer(&format!("/request_counts/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(Progress {
            ended: status == "ended",
            status,
            succeeded: count("succeeded"),
            failed: count("errored") + count("canceled") + count("expired"),
            pending: count("processing"),
            expires_at: unix_secs(v.get("expires_at")),
        })
    }

    async fn results(
        &self,
        batch: &Submitted,
        items: &[BatchItem],
    ) -> Result<HashMap<String, ItemResult>, ProviderError> {
        let v = self.fetch(batch).await?;
        let Some(url) = v.get("results_url").and_then(Value::as_str) else {
            return Err(ProviderError::Retryable(format!(
                "model {:?}: message batch {} has no results yet (processing_status {}); poll it until it has ended",
                self.key(),
                batch.id,
                v.get("processing_status").and_then(Value::as_str).unwrap_or("?")
            )));
        };
        let bytes = self.model.core().get_bytes(url, self.model.auth()).await?;
        let wanted = by_id(items);
        let mut out = HashMap::new();
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let r: Value = serde_json::from_str(line).map_err(|e| {
                ProviderError::Retryable(format!(
                    "model {:?}: a line of the results of {} is not JSON ({e})",
                    self.key(),
                    batch.id
                ))
            })?;
            let Some(item) = r
                .get("custom_id")
                .and_then(Value::as_str)
                .and_then(|c| wanted.get(c))
            else {
                continue;
            };
            let result = self.result_of(r.get("result").unwrap_or(&Value::Null), item);
            out.insert(item.custom_id.clone(), result);
        }
        unanswered_cancelled(&mut out, items);
        Ok(out)
    }

    async fn cancel(&self, batch: &Submitted) -> Result<(), ProviderError> {
        self.model
            .core()
            .post(
                &self.url(&format!("/{}/cancel", batch.id)),
                self.model.auth(),
                &json!({}),
            )
            .await
            .map(|_| ())
    }
}
