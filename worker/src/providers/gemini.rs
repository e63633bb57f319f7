//! `gemini`: Google's `generateContent`
//! (`POST /v1beta/models/{model}:generateContent`, key in `x-goog-api-key`)
//! with a `generationConfig` of `temperature`, `maxOutputTokens`, `seed`,
//! `responseLogprobs` + `logprobs` (top logprobs, up to 20, where the model
//! offers them) and `thinkingConfig.thinkingBudget` from the spec's
//! `thinking_budget` (0 turns thinking off where the model allows; the
//! budget is added to the output allowance, and only the first token of the
//! answer is kept for one-token requests). Several samples of one prompt are
//! one request with `candidateCount` (see [`Provider::complete_n`]).

use async_trait::async_trait;
use moralsweep_common::ModelSpec;
use serde_json::{json, Value};

use super::http::{auth_header, first_token, merge_extra, HttpCore, KeyPolicy};
use super::{Completion, CompletionRequest, Provider, ProviderError, TokenLogprob, Usage};

/// Google's public endpoint.
pub const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com";

#[derive(Debug)]
pub struct Gemini {
    core: HttpCore,
    thinking_budget: Option<i64>,
}

impl Gemini {
    pub fn new(spec: &ModelSpec) -> Result<Gemini, ProviderError> {
        let core = HttpCore::new(
            spec,
            Some(GEMINI_BASE),
            &KeyPolicy {
                default_env: Some("GEMINI_API_KEY"),
                required: true,
            },
            &[],
        )?;
        if spec.model.contains('/') && !spec.model.starts_with("models/") {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: model {:?} is not a Gemini model id (e.g. gemini-2.5-flash)",
                spec.key, spec.model
            )));
        }
        Ok(Gemini::with_core(core, spec.thinking_budget))
    }

    /// The Gemini request and answer code over other plumbing (Vertex AI's).
    pub(crate) fn with_core(core: HttpCore, thinking_budget: Option<i64>) -> Gemini {
        Gemini {
            core,
            thinking_budget,
        }
    }

    /// The `generateContent` body of a request.
    pub fn body(&self, req: &CompletionRequest) -> Value {
        let extra_allowance = self.thinking_budget.unwrap_or(0).max(0) as u32;
        let mut config = json!({
            "maxOutputTokens": req.max_tokens.saturating_add(extra_allowance),
        });
        if let Some(t) = req.temperature {
            config["temperature"] = json!(t);
        }
        if let Some(seed) = req.seed {
            // An int32 on Google's side.
            config["seed"] = json!((seed & 0x7fff_ffff) as i64);
        }
        if let Some(k) = req.top_logprobs {
            config["responseLogprobs"] = json!(true);
            config["logprobs"] = json!(k.min(20));
        }
        if let Some(b) = self.thinking_budget {
            config["thinkingConfig"] = json!({"thinkingBudget": b});
        }
        let mut b = json!({
            "contents": [{"role": "user", "parts": [{"text": req.prompt}]}],
            "generationConfig": config,
        });
        merge_extra(&mut b, &self.core.extra);
        b
    }
}

impl Gemini {
    /// The `countTokens` body of a prompt.
    pub fn count_body(&self, prompt: &str) -> Value {
        json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}]})
    }

    /// The headers that carry the key.
    pub fn auth(&self) -> reqwest::header::HeaderMap {
        match &self.core.key {
            Some(k) => auth_header("x-goog-api-key", k.secret.expose()),
            None => Default::default(),
        }
    }

    /// The model's HTTP plumbing (base URL, key, client).
    pub fn core(&self) -> &HttpCore {
        &self.core
    }

    /// The body of a request for `n` samples (`candidateCount` when more
    /// than one).
    pub fn body_n(&self, req: &CompletionRequest, n: u32) -> Value {
        let mut body = self.body(req);
        if n > 1 {
            body["generationConfig"]["candidateCount"] = json!(n);
        }
        body
    }

    /// The samples of a `GenerateContentResponse` to a request for `n`, in
    /// index order; the first carries the usage of the whole request. A
    /// blocked prompt comes back without candidates: no text, a failed
    /// attempt.
    pub fn answer_of(
        &self,
        v: &Value,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        let n = n.max(1);
        let listed: Vec<&Value> = v
            .get("candidates")
            .and_then(Value::as_array)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        if listed.len() > n as usize {
            return Err(ProviderError::Retryable(format!(
                "model {:?}: asked for {n} candidates, the answer has {}",
                self.core.model_key,
                listed.len()
            )));
        }
        let mut slots: Vec<Option<&Value>> = vec![None; n as usize];
        for (pos, c) in listed.into_iter().enumerate() {
            let i = c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos, |i| i as usize);
            match slots.get_mut(i) {
                Some(slot @ None) => *slot = Some(c),
                _ => {
                    return Err(ProviderError::Retryable(format!(
                    "model {:?}: candidate index {i} is repeated or not below candidateCount {n}",
                    self.core.model_key
                )))
                }
            }
        }
        let mut out: Vec<Completion> = slots.into_iter().map(|c| self.candidate(c, req)).collect();
        out[0].usage = self.usage(v, req);
        Ok(out)
    }

    fn url(&self, method: &str) -> String {
        let model = self.core.model.trim_start_matches("models/");
        format!("{}/v1beta/models/{model}:{method}", self.core.base_url)
    }
}

#[async_trait]
impl Provider for Gemini {
    /// `POST /v1beta/models/{model}:countTokens`.
    async fn count_tokens(&self, prompt: &str) -> Result<Option<u64>, ProviderError> {
        let v = self
            .core
            .post(
                &self.url("countTokens"),
                self.auth(),
                &self.count_body(prompt),
            )
            .await?;
        v.get("totalTokens")
            .and_then(Value::as_u64)
            .map(Some)
            .ok_or_else(|| {
                ProviderError::Retryable(format!(
                    "model {:?}: the countTokens answer lacks totalTokens",
                    self.core.model_key
                ))
            })
    }

    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let mut all = self.complete_n(req, 1).await?;
        Ok(all.remove(0))
    }

    async fn complete_n(
        &self,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        let v = self
            .core
            .post(
                &self.url("generateContent"),
                self.auth(),
                &self.body_n(req, n),
            )
            .await?;
        self.answer_of(&v, req, n)
    }
}

impl Gemini {
    /// The text and top logprobs of one candidate (`None`: none came back);
    /// its usage is left empty.
    fn candidate(&self, candidate: Option<&Value>, req: &CompletionRequest) -> Completion {
        let mut text: String = candidate
            .and_then(|c| c.pointer("/content/parts"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        if self.thinking_budget.unwrap_or(0) > 0 && req.max_tokens <= 1 {
            text = first_token(&text);
        }
        let top_logprobs = req.top_logprobs.and_then(|_| {
            let list = candidate?
                .pointer("/logprobsResult/topCandidates")?
                .as_array()?
                .first()?
                .get("candidates")?
                .as_array()?;
            Some(
                list.iter()
                    .filter_map(|c| {
                        Some(TokenLogprob {
                            token: c.get("token")?.as_str()?.to_string(),
                            logprob: c.get("logProbability")?.as_f64()?,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
        });
        Completion {
            text,
            top_logprobs,
            usage: Usage::default(),
        }
    }

    /// What one `generateContent` answer billed: the prompt once, the output
    /// (and thoughts) of every candidate.
    fn usage(&self, v: &Value, req: &CompletionRequest) -> Usage {
        let get = |k: &str| {
            v.pointer(&format!("/usageMetadata/{k}"))
                .and_then(Value::as_u64)
        };
        Usage {
            input_tokens: get("promptTokenCount")
                .unwrap_or_else(|| self.core.tokenizer.prompt_tokens(&req.prompt)),
            output_tokens: get("candidatesTokenCount").unwrap_or(0)
                + get("thoughtsTokenCount").unwrap_or(0),
        }
    }
}
