//! OpenAI's Batch API: the items become a JSONL file of
//! `{custom_id, method, url, body}` lines (the bodies of the `openai`
//! adapter, `n` included), uploaded to `/files` with `purpose=batch`; then
//! `/batches` names the file, the endpoint and the 24h window. Results come
//! from the output file (status 200 lines) and the error file (errored
//! lines with the provider's status and error body; expired and cancelled
//! lines with `error.code`).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{
    by_id, check_bytes, check_items, unanswered_cancelled, window_start_secs, BatchClient,
    BatchItem, Found, ItemResult, Limits, Progress, Submitted,
};
use crate::providers::openai::OpenAi;
use crate::providers::ProviderError;

/// At most 50,000 requests and 200 MB per input file.
pub const LIMITS: Limits = Limits {
    max_items: 50_000,
    max_bytes: 200 * 1000 * 1000,
};

/// Batch states after which nothing more happens.
const ENDED: &[&str] = &["completed", "failed", "expired", "cancelled"];

/// Where an OpenAI-style Batch API lives and how it is called: OpenAI's
/// own routes with the model's key ([`OpenAi`]), or a cloud's routes and
/// credentials (Azure OpenAI).
#[async_trait]
pub trait Host: Send + Sync {
    /// The model whose bodies the lines carry and whose answers they hold.
    fn model(&self) -> &OpenAi;
    /// The URL of an operation (`/files`, `/batches/{id}`) with `query`.
    fn url(&self, op: &str, query: &[(&str, &str)]) -> String;
    /// The endpoint every line and the batch name (`/v1/chat/completions`).
    fn endpoint(&self) -> String;
    /// The API's name in the stored record.
    fn api(&self) -> &'static str;
    /// GETs `url`; the bytes of a 2xx answer, or the failure classified.
    async fn get(&self, url: &str) -> Result<Vec<u8>, ProviderError>;
    /// POSTs `body`; the bytes of a 2xx answer, or the failure classified.
    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ProviderError>;
}

#[async_trait]
impl Host for OpenAi {
    fn model(&self) -> &OpenAi {
        self
    }

    fn url(&self, op: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{op}", self.core().base_url);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push_str(&format!("{}{k}={v}", if i == 0 { '?' } else { '&' }));
        }
        url
    }

    fn endpoint(&self) -> String {
        format!("/v1{}", OpenAi::endpoint(self))
    }

    fn api(&self) -> &'static str {
        "openai"
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        self.core().get_bytes(url, self.auth()).await
    }

    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ProviderError> {
        self.core()
            .post_bytes(url, self.auth(), content_type, body)
            .await
    }
}

/// The Batch API of an OpenAI-style model.
pub struct OpenAiBatch<H: Host = OpenAi> {
    host: H,
}

impl OpenAiBatch<OpenAi> {
    pub fn new(model: OpenAi) -> OpenAiBatch<OpenAi> {
        OpenAiBatch { host: model }
    }
}

impl<H: Host> OpenAiBatch<H> {
    /// The Batch API at `host`.
    pub fn on(host: H) -> OpenAiBatch<H> {
        OpenAiBatch { host }
    }

    fn url(&self, op: &str) -> String {
        self.host.url(op, &[])
    }

    fn key(&self) -> &str {
        &self.host.model().core().model_key
    }

    /// The endpoint every line names (`/v1/chat/completions`).
    fn endpoint(&self) -> String {
        self.host.endpoint()
    }

    async fn get_json(&self, url: &str) -> Result<Value, ProviderError> {
        let bytes = self.host.get(url).await?;
        self.host.model().core().json_of(&bytes)
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<Value, ProviderError> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Fatal(format!("cannot encode the request: {e}")))?;
        let bytes = self.host.post(url, "application/json", payload).await?;
        self.host.model().core().json_of(&bytes)
    }

    /// The input file: one line per item.
    pub fn input_file(&self, items: &[BatchItem]) -> Result<String, ProviderError> {
        let endpoint = self.endpoint();
        let mut out = String::new();
        for i in items {
            let line = json!({
                "custom_id": i.custom_id,
                "method": "POST",
                "url": endpoint,
                "body": self.host.model().body_n(&i.req, i.n)?,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        Ok(out)
    }

    fn bad_shape(&self, what: &str) -> ProviderError {
        ProviderError::Retryable(format!(
            "model {:?}: the batch API's answer lacks {what}",
            self.key()
        ))
    }

    /// The lines of a file (none for no file).
    async fn file_lines(&self, id: Option<&str>) -> Result<Vec<Value>, ProviderError> {
        let Some(id) = id else {
            return Ok(vec![]);
        };
        let url = self.url(&format!("/files/{id}/content"));
        let bytes = self.host.get(&url).await?;
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    ProviderError::Retryable(format!(
                        "model {:?}: a line of batch file {id} is not JSON ({e})",
                        self.key()
                    ))
                })
            })
            .collect()
    }

    /// What one output or error line says about its item.
    fn result_of(&self, line: &Value, item: &BatchItem) -> ItemResult {
        if let Some(code) = line.pointer("/error/code").and_then(Value::as_str) {
            let message = line
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("");
            return match code {
                "batch_expired" => ItemResult::Expired,
                "batch_cancelled" => ItemResult::Canceled,
                other => ItemResult::Failed(ProviderError::Retryable(format!(
                    "model {:?}: batch request {} failed ({other}): {message}",
                    self.key(),
                    item.custom_id
                ))),
            };
        }
        let status = line
            .pointer("/response/status_code")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u16;
        let body = line
            .pointer("/response/body")
            .cloned()
            .unwrap_or(Value::Null);
        if status == 200 {
            return match self.host.model().answer_of(&body, &item.req, item.n) {
                Ok(samples) => ItemResult::Answered(samples),
                Err(e) => ItemResult::Failed(e),
            };
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        ItemResult::Failed(self.host.model().core().classify(
            status,
            &reqwest::header::HeaderMap::new(),
            &bytes,
            &self.endpoint(),
        ))
    }
}

/// A `multipart/form-data` body with the fields `purpose` and `file`.
fn multipart(boundary: &str, filename: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/jsonl\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[async_trait]
impl<H: Host> BatchClient for OpenAiBatch<H> {
    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn submit(&self, tag: &str, items: &[BatchItem]) -> Result<Submitted, ProviderError> {
        check_items(self.key(), items, LIMITS)?;
        let file = self.input_file(items)?;
        check_bytes(self.key(), file.len(), LIMITS)?;
        let boundary = format!("moralsweep-{:032x}", rand::random::<u128>());
        let uploaded = self
            .host
            .post(
                &self.url("/files"),
                &format!("multipart/form-data; boundary={boundary}"),
                multipart(&boundary, "moralsweep-batch.jsonl", file.as_bytes()),
            )
            .await?;
        let uploaded = self.host.model().core().json_of(&uploaded)?;
        let file_id = uploaded
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad_shape("the uploaded file's id"))?
            .to_string();
        let batch = self
            .post_json(
                &self.url("/batches"),
                &json!({"input_file_id": file_id, "endpoint": self.endpoint(),
                        "completion_window": "24h",
                        "metadata": {"client": "moralsweep", "model_key": self.key(),
                                     "moralsweep_batch": tag}}),
            )
            .await?;
        let id = batch
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad_shape("the batch's id"))?;
        Ok(Submitted {
            api: self.host.api().into(),
            id: id.to_string(),
            input_file_id: Some(file_id),
            items: items.len(),
        })
    }

    async fn poll(&self, batch: &Submitted) -> Result<Progress, ProviderError> {
        let v = self
            .get_json(&self.url(&format!("/batches/{}", batch.id)))
            .await?;
        let status = v
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad_shape("status"))?
            .to_string();
        let count = |k: &str| {
            v.pointer(&format!("/request_counts/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let (total, succeeded, failed) = (count("total"), count("completed"), count("failed"));
        Ok(Progress {
            ended: ENDED.contains(&status.as_str()),
            status,
            succeeded,
            failed,
            pending: total.saturating_sub(succeeded + failed),
            expires_at: v.get("expires_at").and_then(Value::as_i64),
        })
    }

    async fn results(
        &self,
        batch: &Submitted,
        items: &[BatchItem],
    ) -> Result<HashMap<String, ItemResult>, ProviderError> {
        let v = self
            .get_json(&self.url(&format!("/batches/{}", batch.id)))
            .await?;
        let status = v.get("status").and_then(Value::as_str).unwrap_or("");
        if !ENDED.contains(&status) {
            return Err(ProviderError::Retryable(format!(
                "model {:?}: batch {} has not ended (status {status}); poll it until it has",
                self.key(),
                batch.id
            )));
        }
        if status == "failed" {
            let errors: Vec<String> = v
                .pointer("/errors/data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    format!(
                        "{}{}: {}",
                        e.get("code").and_then(Value::as_str).unwrap_or("error"),
                        e.get("line")
                            .and_then(Value::as_u64)
                            .map(|l| format!(" (line {l})"))
                            .unwrap_or_default(),
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    )
                })
                .collect();
            let summary = format!(
                "model {:?}: the provider failed batch {}: {}",
                self.key(),
                batch.id,
                errors.join("; ")
            );
            // Over the queue's token limit: the same batch can go later.
            return Err(
                if errors.iter().any(|e| e.starts_with("token_limit_exceeded")) {
                    ProviderError::RateLimited { retry_after: None }
                } else {
                    ProviderError::Fatal(summary)
                },
            );
        }
        let wanted = by_id(items);
        let mut out = HashMap::new();
        for key in ["output_file_id", "error_file_id"] {
            for line in self.file_lines(v.get(key).and_then(Value::as_str)).await? {
                let Some(item) = line
                    .get("custom_id")
                    .and_then(Value::as_str)
                    .and_then(|c| wanted.get(c))
                else {
                    continue;
                };
                out.insert(item.custom_id.clone(), self.result_of(&line, item));
            }
        }
        unanswered_cancelled(&mut out, items);
        Ok(out)
    }

    async fn find(
        &self,
        tag: &str,
        items: &[BatchItem],
        after_ms: u64,
    ) -> Result<Found, ProviderError> {
        // Newest first: stop at the first batch older than the window.
        let oldest = window_start_secs(after_ms);
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", "100")];
            if let Some(a) = &after {
                query.push(("after", a.as_str()));
            }
            let url = self.host.url("/batches", &query);
            let v = self.get_json(&url).await?;
            let data = v
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| self.bad_shape("the list's data"))?;
            for b in data {
                if b.pointer("/metadata/moralsweep_batch")
                    .and_then(Value::as_str)
                    == Some(tag)
                {
                    let id = b
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| self.bad_shape("a listed batch's id"))?;
                    return Ok(Found::Batch(Submitted {
                        api: self.host.api().into(),
                        id: id.to_string(),
                        input_file_id: b
                            .get("input_file_id")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        items: items.len(),
                    }));
                }
            }
            let too_old = data
                .last()
                .and_then(|b| b.get("created_at"))
                .and_then(Value::as_i64)
                .is_some_and(|t| t < oldest);
            let more = v.get("has_more").and_then(Value::as_bool).unwrap_or(false);
            match data
                .last()
                .and_then(|b| b.get("id"))
                .and_then(Value::as_str)
            {
                Some(last) if more && !too_old => after = Some(last.to_string()),
                _ => return Ok(Found::Absent),
            }
        }
    }

    async fn cancel(&self, batch: &Submitted) -> Result<(), ProviderError> {
        self.post_json(
            &self.url(&format!("/batches/{}/cancel", batch.id)),
            &json!({}),
        )
        .await
        .map(|_| ())
    }
}
