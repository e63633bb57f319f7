//! `anthropic`: the Messages API (`POST /v1/messages`) with `x-api-key`,
//! `anthropic-version`, `model`, `max_tokens` and the one user message.
//! The current API (and its official SDK's `MessageCreateParams`) takes no
//! `temperature`, `top_p` or `top_k`: the model samples at its default, so
//! the spec must say `temperature = "provider-default"` for it (checked at
//! validation), and a request that asks for a temperature anyway is refused
//! here (fatal, naming the setting) rather than sampled silently at the
//! default. A `thinking_budget` turns on
//! extended thinking (`thinking.budget_tokens`, added to the output
//! allowance; only the first token of the answer is kept for one-token
//! requests). Anthropic offers no logprobs: logprob mode stops the model
//! with a message saying so.
//!
//! Token counts: `POST /v1/messages/count_tokens` (see
//! [`Anthropic::count_tokens`]) where the spec allows the call.

use async_trait::async_trait;
use moralsweep_common::ModelSpec;
use serde_json::{json, Value};

use super::http::{auth_header, first_token, merge_extra, HttpCore, KeyPolicy};
use super::{Completion, CompletionRequest, Provider, ProviderError, Usage};

/// Anthropic's public endpoint.
pub const ANTHROPIC_BASE: &str = "https://api.anthropic.com";

/// The API version sent unless the spec's headers name another.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct Anthropic {
    core: HttpCore,
    thinking: Option<u32>,
}

impl Anthropic {
    pub fn new(spec: &ModelSpec) -> Result<Anthropic, ProviderError> {
        let core = HttpCore::new(
            spec,
            Some(ANTHROPIC_BASE),
            &KeyPolicy {
                default_env: Some("ANTHROPIC_API_KEY"),
                required: true,
            },
            &[("anthropic-version", ANTHROPIC_VERSION)],
        )?;
        Anthropic::with_core(core, spec)
    }

    /// The Messages request and answer code over other plumbing (Vertex
    /// AI's), with `spec`'s thinking budget.
    pub(crate) fn with_core(core: HttpCore, spec: &ModelSpec) -> Result<Anthropic, ProviderError> {
        let thinking = match spec.thinking_budget {
            Some(b) if b >= 1024 => Some(b.min(u32::MAX as i64) as u32),
            Some(b) if b > 0 => {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: thinking_budget = {b}; Anthropic's extended thinking needs at least 1024 tokens (or leave it out)",
                    spec.key
                )))
            }
            _ => None,
        };
        Ok(Anthropic { core, thinking })
    }

    /// The Messages body of a request.
    pub fn body(&self, req: &CompletionRequest) -> Value {
        let mut b = json!({
            "model": self.core.model,
            "max_tokens": req.max_tokens.saturating_add(self.thinking.unwrap_or(0)),
            "messages": [{"role": "user", "content": req.prompt}],
        });
        if let Some(budget) = self.thinking {
            b["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        }
        merge_extra(&mut b, &self.core.extra);
        b
    }
}

impl Anthropic {
    /// The `count_tokens` body of a prompt (`MessageCountTokensParams`).
    pub fn count_body(&self, prompt: &str) -> Value {
        let mut b = json!({
            "model": self.core.model,
            "messages": [{"role": "user", "content": prompt}],
        });
        if let Some(budget) = self.thinking {
            b["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        }
        b
    }

    /// The headers that carry the key.
    pub fn auth(&self) -> reqwest::header::HeaderMap {
        match &self.core.key {
            Some(k) => auth_header("x-api-key", k.secret.expose()),
            None => Default::default(),
        }
    }

    /// The model's HTTP plumbing (base URL, key, client).
    pub fn core(&self) -> &HttpCore {
        &self.core
    }

    /// Refuses a request this API cannot serve (logprobs, a temperature),
    /// with what to change in the spec.
    pub fn check(&self, req: &CompletionRequest) -> Result<(), ProviderError> {
        if req.top_logprobs.is_some() {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: Anthropic's API returns no logprobs; remove \"logprob\" from the sweep's modes for this model",
                self.core.model_key
            )));
        }
        if let Some(t) = req.temperature {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: the request asks for temperature {t}, but Anthropic's current Messages API takes no temperature; \
                 add temperature = \"provider-default\" to the model's entry to sample at Anthropic's default",
                self.core.model_key
            )));
        }
        Ok(())
    }

    /// The completion of a Messages answer body.
    pub fn answer_of(
        &self,
        v: &Value,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let blocks = v.get("content").and_then(Value::as_array).ok_or_else(|| {
            ProviderError::Retryable(format!(
                "model {:?}: the answer lacks content",
                self.core.model_key
            ))
        })?;
        let mut text: String = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        if self.thinking.is_some() && req.max_tokens <= 1 {
            text = first_token(&text);
        }
        let get = |k: &str| v.pointer(&format!("/usage/{k}")).and_then(Value::as_u64);
        Ok(Completion {
            text,
            top_logprobs: None,
            usage: Usage {
                input_tokens: get("input_tokens")
                    .unwrap_or_else(|| self.core.tokenizer.prompt_tokens(&req.prompt)),
                output_tokens: get("output_tokens").unwrap_or(req.max_tokens as u64),
            },
        })
    }
}

#[async_trait]
impl Provider for Anthropic {
    /// `POST /v1/messages/count_tokens`.
    async fn count_tokens(&self, prompt: &str) -> Result<Option<u64>, ProviderError> {
        let url = format!("{}/v1/messages/count_tokens", self.core.base_url);
        let v = self
            .core
            .post(&url, self.auth(), &self.count_body(prompt))
            .await?;
        v.get("input_tokens")
            .and_then(Value::as_u64)
            .map(Some)
            .ok_or_else(|| {
                ProviderError::Retryable(format!(
                    "model {:?}: the count_tokens answer lacks input_tokens",
                    self.core.model_key
                ))
            })
    }

    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.check(req)?;
        let url = format!("{}/v1/messages", self.core.base_url);
        let v = self.core.post(&url, self.auth(), &self.body(req)).await?;
        self.answer_of(&v, req)
    }
}
