//! `anthropic`: the Messages API (`POST /v1/messages`) with `x-api-key`,
//! `anthropic-version`, `max_tokens` and `temperature`. A `thinking_budget`
//! turns on extended thinking (`thinking.budget_tokens`, added to the output
//! allowance; Anthropic then accepts only the default temperature, so none is
//! sent, and only the first token of the answer is kept for one-token
//! requests). Anthropic offers no logprobs: logprob mode stops the model
//! with a message saying so.

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
        match self.thinking {
            Some(budget) => {
                b["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
            }
            None => b["temperature"] = json!(req.temperature),
        }
        merge_extra(&mut b, &self.core.extra);
        b
    }
}

#[async_trait]
impl Provider for Anthropic {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        if req.top_logprobs.is_some() {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: Anthropic's API returns no logprobs; remove \"logprob\" from the sweep's modes for this model",
                self.core.model_key
            )));
        }
        let auth = match &self.core.key {
            Some(k) => auth_header("x-api-key", k.secret.expose()),
            None => Default::default(),
        };
        let url = format!("{}/v1/messages", self.core.base_url);
        let v = self.core.post(&url, auth, &self.body(req)).await?;
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
                    .unwrap_or_else(|| crate::cost::estimate_prompt_tokens(&req.prompt)),
                output_tokens: get("output_tokens").unwrap_or(req.max_tokens as u64),
            },
        })
    }
}
