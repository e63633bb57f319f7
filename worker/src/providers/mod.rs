//! Model providers: one module per provider behind the [`Provider`] trait,
//! chosen by the spec's `provider`. Adding a provider touches one module and
//! one line of [`build`].

use std::time::Duration;

use async_trait::async_trait;
use moralsweep_common::provider::ProviderKind;
use moralsweep_common::ModelSpec;

pub mod anthropic;
pub mod batch;
pub mod compat;
pub mod gemini;
pub mod http;
#[cfg(feature = "local")]
pub mod local;
pub mod openai;
pub mod synthetic;

/// One request to a model: a single user message.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// The whole prompt (one user message).
    pub prompt: String,
    /// Output allowance: 1 for the one-token protocol, more for the fallback.
    pub max_tokens: u32,
    /// The sampling temperature; `None` sends none (the provider's default,
    /// for models whose spec says `temperature = "provider-default"`).
    pub temperature: Option<f64>,
    /// Sent where the provider supports it, so a request can be repeatable.
    pub seed: Option<u64>,
    /// Ask for the first token's top logprobs (logprob mode).
    pub top_logprobs: Option<u32>,
}

/// One token with its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
}

/// Token counts as reported by the provider (or estimated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text (may be empty).
    pub text: String,
    /// The first token's top logprobs, when asked for and offered.
    pub top_logprobs: Option<Vec<TokenLogprob>>,
    pub usage: Usage,
}

/// Why a call failed, classified by what the caller should do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// 429: slow the whole rate group down; retry after the given delay.
    #[error("rate limited by the provider (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts, dropped connections, unparsable bodies: retry with backoff.
    #[error("transient provider error: {0}")]
    Retryable(String),
    /// No connection could be made (refused, DNS failure, connect timeout):
    /// retried like [`ProviderError::Retryable`] by a provider that answered
    /// before, but a provider never reached gives up after its
    /// `unreachable_timeout_secs` (see [`crate::paced`]).
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    /// 400/401/403/404 and other errors a retry cannot fix: stop this model.
    #[error("{0}")]
    Fatal(String),
}

/// A model behind an API (or in-process).
#[async_trait]
pub trait Provider: Send + Sync {
    /// Sends one request and returns the answer.
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError>;

    /// The input tokens of a one-message request as the provider counts
    /// them: its token-counting endpoint (Anthropic, Gemini) or its known
    /// tokenizer (OpenAI). `None` where there is no exact count.
    async fn count_tokens(&self, _prompt: &str) -> Result<Option<u64>, ProviderError> {
        Ok(None)
    }

    /// Sends one request asking for `n` independent samples (OpenAI `n`,
    /// Gemini `candidateCount`) and returns them in order; the first
    /// carries the usage of the whole request (the prompt billed once, the
    /// output of every sample), the others none. A provider without the
    /// feature answers `n` = 1 and refuses more with the error
    /// [`refuses_multi_sample`] recognises.
    async fn complete_n(
        &self,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        if n <= 1 {
            return Ok(vec![self.complete(req).await?]);
        }
        Err(ProviderError::Fatal(format!(
            "{MULTI_SAMPLE_REFUSED}: this provider returns one sample per request (field `n`)"
        )))
    }
}

/// The start of the error a provider without multi-sample gives.
const MULTI_SAMPLE_REFUSED: &str = "several samples per request are not offered here";

/// Whether an error is a provider refusing several samples per request: a
/// 400 naming `n` (OpenAI and compatible servers) or `candidateCount`
/// (Gemini), or a provider of ours without the feature. The worker then
/// runs the model one sample per request for the rest of the sweep.
pub fn refuses_multi_sample(e: &ProviderError) -> bool {
    match e {
        ProviderError::Fatal(m) => {
            m.contains(MULTI_SAMPLE_REFUSED)
                || (m.contains("(400)")
                    && (m.contains("(field `n`)")
                        || m.contains("candidateCount")
                        || m.contains("candidate_count")))
        }
        _ => false,
    }
}

/// Splits one multi-sample answer's usage over its samples for callers
/// that want one usage each: the first sample keeps the whole request's.
pub fn usage_of_all(samples: &[Completion]) -> Usage {
    samples.iter().fold(Usage::default(), |a, c| Usage {
        input_tokens: a.input_tokens + c.usage.input_tokens,
        output_tokens: a.output_tokens + c.usage.output_tokens,
    })
}

/// Builds the provider a model spec names.
pub fn build(model: &ModelSpec) -> Result<Box<dyn Provider>, ProviderError> {
    match model.provider {
        ProviderKind::Synthetic => Ok(Box::new(synthetic::Synthetic::new(model))),
        #[cfg(feature = "local")]
        ProviderKind::Local => Ok(Box::new(local::Local::new(model)?)),
        #[cfg(not(feature = "local"))]
        ProviderKind::Local => Err(ProviderError::Fatal(format!(
            "model {:?} uses the local model, which this worker was built without \
             (build it with the default feature `local`)",
            model.key
        ))),
        ProviderKind::OpenAi => Ok(Box::new(openai::OpenAi::new(
            model,
            openai::Flavor::openai(),
        )?)),
        ProviderKind::Anthropic => Ok(Box::new(anthropic::Anthropic::new(model)?)),
        ProviderKind::Gemini => Ok(Box::new(gemini::Gemini::new(model)?)),
        ProviderKind::OpenAiCompatible => Ok(Box::new(compat::build(model)?)),
        ProviderKind::Sim => Ok(Box::new(compat::build_sim(model)?)),
        // The clouds' adapters are being built (issue 25).
        ProviderKind::Bedrock | ProviderKind::Vertex | ProviderKind::AzureOpenAi => {
            Err(ProviderError::Fatal(format!(
                "model {:?}: provider \"{}\" is not available in this build",
                model.key, model.provider
            )))
        }
    }
}
