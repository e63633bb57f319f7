//! `synthetic`: an in-process model whose answer is a pure function of the
//! model id, the prompt and the seed. No network, no key; used to rehearse a
//! sweep, in tests that need runs to be comparable, and in benchmarks that
//! need an instant provider.

use async_trait::async_trait;
use moralsweep_common::ModelSpec;

use super::{Completion, CompletionRequest, Provider, ProviderError, TokenLogprob, Usage};
use moralsweep_common::hash::fnv1a_parts;

/// A deterministic pseudo-model.
pub struct Synthetic {
    model: String,
}

impl Synthetic {
    pub fn new(spec: &ModelSpec) -> Self {
        Synthetic {
            model: spec.model.clone(),
        }
    }
}

#[async_trait]
impl Provider for Synthetic {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        // The cell (prompt) fixes a preferred rating; the seed moves it by at most one.
        let cell = fnv1a_parts(&[self.model.as_bytes(), req.prompt.as_bytes()]);
        let centre = (cell % 6) as i64;
        let noise = fnv1a_parts(&[&cell.to_le_bytes(), &req.seed.unwrap_or(0).to_le_bytes()]);
        let jitter = match noise % 10 {
            0 => -1,
            1 => 1,
            _ => 0,
        };
        let rating = (centre + jitter).clamp(0, 5);
        let text = if req.max_tokens <= 1 {
            rating.to_string()
        } else {
            format!("{rating} - as this persona, that is my rating.")
        };
        let top_logprobs = req.top_logprobs.map(|k| {
            let mut v: Vec<TokenLogprob> = (0..6)
                .map(|d: i64| TokenLogprob {
                    token: d.to_string(),
                    logprob: -((d - centre).abs() as f64) * 1.5 - 0.2,
                })
                .collect();
            v.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            v.truncate(k as usize);
            v
        });
        Ok(Completion {
            text,
            top_logprobs,
            usage: Usage {
                input_tokens: moralsweep_common::tokens::estimate_tokens(&req.prompt),
                output_tokens: 1,
            },
        })
    }
}
