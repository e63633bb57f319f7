//! `openai`: OpenAI's Chat Completions (the default) and Responses APIs.
//!
//! Chat Completions sends `temperature`, `max_tokens` (or
//! `max_completion_tokens` for reasoning models), `seed`, and `logprobs` with
//! `top_logprobs` in logprob mode. Fine-tuned ids (`ft:gpt-4o-...:org::id`)
//! are sent as they are. A model is a reasoning model when the spec says
//! `reasoning = true`, or by default when its base id starts with `o1`, `o3`,
//! `o4` or `gpt-5`: it then gets `max_completion_tokens`, no `temperature`
//! (those models accept only the default) and the spec's `reasoning_effort`.
//!
//! `api = "responses"` uses the Responses API instead: `input`,
//! `max_output_tokens`, `reasoning.effort`, and `top_logprobs` with
//! `include = ["message.output_text.logprobs"]`; it never stores the
//! conversation (`store = false`).
//!
//! Reasoning tokens count against the output allowance, so reasoning models
//! get `thinking_budget` (default 1024) tokens on top of the protocol's
//! allowance, and the Responses API accepts no allowance below 16 tokens.
//! Where the answer may thus be longer than the one token the protocol asked
//! for, only its first token is kept, so the one-token rule of METHOD.md
//! still decides.
//!
//! This module also serves `openai-compatible` servers and the simulator
//! (see `compat.rs`) through [`Flavor`].

use async_trait::async_trait;
use moralsweep_common::tokens::Tokenizer;
use moralsweep_common::ModelSpec;
use serde_json::{json, Map, Value};

use super::http::{auth_header, first_token, merge_extra, HttpCore, KeyPolicy};
use super::{Completion, CompletionRequest, Provider, ProviderError, TokenLogprob, Usage};

/// OpenAI's public endpoint.
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// Reasoning allowance when the spec gives no `thinking_budget`.
const DEFAULT_REASONING_ALLOWANCE: u32 = 1024;

/// The Responses API's smallest `max_output_tokens`.
const RESPONSES_MIN_OUTPUT: u32 = 16;

/// Which OpenAI API a model is called through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Responses,
}

/// What differs between OpenAI itself, the compatible servers and the simulator.
#[derive(Debug, Clone)]
pub struct Flavor {
    pub default_base: Option<&'static str>,
    pub key: KeyPolicy,
    /// Headers a preset adds (the spec's `headers` override them).
    pub headers: Vec<(&'static str, &'static str)>,
    /// The most top logprobs the server returns.
    pub max_top_logprobs: u32,
    /// Whether the server accepts `seed`.
    pub seed: bool,
    /// Whether the Responses API exists there.
    pub responses: bool,
    /// Whether reasoning models are recognised by their id.
    pub detect_reasoning: bool,
}

impl Flavor {
    /// OpenAI itself.
    pub fn openai() -> Flavor {
        Flavor {
            default_base: Some(OPENAI_BASE),
            key: KeyPolicy {
                default_env: Some("OPENAI_API_KEY"),
                required: true,
            },
            headers: vec![],
            max_top_logprobs: 20,
            seed: true,
            responses: true,
            detect_reasoning: true,
        }
    }
}

/// An OpenAI-style model.
#[derive(Debug)]
pub struct OpenAi {
    core: HttpCore,
    api: Api,
    reasoning: bool,
    effort: Option<String>,
    allowance: u32,
    flavor: Flavor,
}

/// Whether a model id names one of OpenAI's reasoning models (see
/// [`moralsweep_common::spec::is_openai_reasoning_model`], which spec
/// validation uses too).
pub fn is_reasoning_model(model: &str) -> bool {
    moralsweep_common::spec::is_openai_reasoning_model(model)
}

impl OpenAi {
    pub fn new(spec: &ModelSpec, flavor: Flavor) -> Result<OpenAi, ProviderError> {
        let api = match spec.api.as_deref() {
            None | Some("chat") | Some("chat-completions") => Api::Chat,
            Some("responses") if flavor.responses => Api::Responses,
            Some(other) => {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: api = {other:?} is not offered here; use \"chat\"{}",
                    spec.key,
                    if flavor.responses {
                        " or \"responses\""
                    } else {
                        ""
                    }
                )))
            }
        };
        if let Some(e) = &spec.reasoning_effort {
            if !["none", "minimal", "low", "medium", "high", "xhigh"].contains(&e.as_str()) {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: reasoning_effort = {e:?}; expected minimal, low, medium or high",
                    spec.key
                )));
            }
        }
        let reasoning = spec.reasoning.unwrap_or_else(|| {
            (flavor.detect_reasoning && is_reasoning_model(&spec.model))
                || spec.reasoning_effort.is_some()
        });
        let allowance = match spec.thinking_budget {
            Some(b) if b > 0 => b.min(u32::MAX as i64) as u32,
            Some(_) => 0,
            None if reasoning => DEFAULT_REASONING_ALLOWANCE,
            None => 0,
        };
        let core = HttpCore::new(spec, flavor.default_base, &flavor.key, &flavor.headers)?;
        Ok(OpenAi {
            core,
            api,
            reasoning,
            effort: spec.reasoning_effort.clone(),
            allowance,
            flavor,
        })
    }

    /// The Chat Completions body of a request.
    pub fn chat_body(&self, req: &CompletionRequest) -> Value {
        let mut b = Map::new();
        b.insert("model".into(), json!(self.core.model));
        b.insert(
            "messages".into(),
            json!([{"role": "user", "content": req.prompt}]),
        );
        if self.reasoning {
            b.insert(
                "max_completion_tokens".into(),
                json!(req.max_tokens.saturating_add(self.allowance)),
            );
            if let Some(e) = &self.effort {
                b.insert("reasoning_effort".into(), json!(e));
            }
        } else {
            b.insert("max_tokens".into(), json!(req.max_tokens));
            if let Some(t) = req.temperature {
                b.insert("temperature".into(), json!(t));
            }
        }
        if let (Some(seed), true) = (req.seed, self.flavor.seed) {
            // The API takes a signed 64-bit seed.
            b.insert("seed".into(), json!((seed & (i64::MAX as u64)) as i64));
        }
        if let Some(k) = req.top_logprobs {
            b.insert("logprobs".into(), json!(true));
            b.insert(
                "top_logprobs".into(),
                json!(k.min(self.flavor.max_top_logprobs)),
            );
        }
        let mut body = Value::Object(b);
        merge_extra(&mut body, &self.core.extra);
        body
    }

    /// The Responses API body of a request.
    pub fn responses_body(&self, req: &CompletionRequest) -> Value {
        let mut b = Map::new();
        b.insert("model".into(), json!(self.core.model));
        b.insert("input".into(), json!(req.prompt));
        b.insert(
            "max_output_tokens".into(),
            json!(req
                .max_tokens
                .max(RESPONSES_MIN_OUTPUT)
                .saturating_add(self.allowance)),
        );
        if let (false, Some(t)) = (self.reasoning, req.temperature) {
            b.insert("temperature".into(), json!(t));
        }
        if let Some(e) = &self.effort {
            b.insert("reasoning".into(), json!({"effort": e}));
        }
        if let Some(k) = req.top_logprobs {
            b.insert(
                "top_logprobs".into(),
                json!(k.min(self.flavor.max_top_logprobs)),
            );
            b.insert("include".into(), json!(["message.output_text.logprobs"]));
        }
        b.insert("store".into(), json!(false));
        let mut body = Value::Object(b);
        merge_extra(&mut body, &self.core.extra);
        body
    }

    /// The body this model sends for a request (whichever API it uses).
    pub fn body(&self, req: &CompletionRequest) -> Value {
        match self.api {
            Api::Chat => self.chat_body(req),
            Api::Responses => self.responses_body(req),
        }
    }

    /// The headers that carry the key.
    pub fn auth(&self) -> reqwest::header::HeaderMap {
        match &self.core.key {
            Some(k) => auth_header("authorization", &format!("Bearer {}", k.secret.expose())),
            None => reqwest::header::HeaderMap::new(),
        }
    }

    /// The model's HTTP plumbing (base URL, key, client).
    pub fn core(&self) -> &HttpCore {
        &self.core
    }

    /// The model's HTTP plumbing, to adjust (a cloud's tokenizer).
    pub fn core_mut(&mut self) -> &mut HttpCore {
        &mut self.core
    }

    /// The endpoint this model's requests go to, below the base URL
    /// (`/chat/completions` or `/responses`).
    pub fn endpoint(&self) -> &'static str {
        match self.api {
            Api::Chat => "/chat/completions",
            Api::Responses => "/responses",
        }
    }

    /// The body of a request for `n` samples: the body of [`OpenAi::body`],
    /// with `n` when more than one (Chat Completions only; the Responses
    /// API has no `n` and refuses it as the provider would).
    pub fn body_n(&self, req: &CompletionRequest, n: u32) -> Result<Value, ProviderError> {
        if n <= 1 {
            return Ok(self.body(req));
        }
        if self.api == Api::Responses {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: the provider refused the request (field `n`) (400): the Responses API has no `n`",
                self.core.model_key
            )));
        }
        let mut body = self.chat_body(req);
        body["n"] = json!(n);
        Ok(body)
    }

    /// The samples of an answer body to a request for `n` of them (see
    /// [`Provider::complete_n`] for how usage is carried).
    pub fn answer_of(
        &self,
        v: &Value,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        if n > 1 {
            return self.parse_choices(v, req, n);
        }
        let mut c = match self.api {
            Api::Chat => self.parse_chat(v, req)?,
            Api::Responses => self.parse_responses(v, req)?,
        };
        if self.may_overrun(req) {
            c.text = first_token(&c.text);
        }
        Ok(vec![c])
    }

    /// Whether an answer may be longer than the protocol asked for.
    fn may_overrun(&self, req: &CompletionRequest) -> bool {
        req.max_tokens <= 1 && (self.api == Api::Responses || self.allowance > 0)
    }

    fn bad_shape(&self, what: &str) -> ProviderError {
        ProviderError::Retryable(format!(
            "model {:?}: the answer lacks {what}",
            self.core.model_key
        ))
    }
}

fn logprob_list(entry: &Value) -> Option<Vec<TokenLogprob>> {
    let parse = |v: &Value| {
        Some(TokenLogprob {
            token: v.get("token")?.as_str()?.to_string(),
            logprob: v.get("logprob")?.as_f64()?,
        })
    };
    let top: Vec<TokenLogprob> = entry
        .get("top_logprobs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(parse).collect())
        .unwrap_or_default();
    if top.is_empty() {
        parse(entry).map(|t| vec![t])
    } else {
        Some(top)
    }
}

fn usage_of(
    v: &Value,
    input: &str,
    output: &str,
    req: &CompletionRequest,
    tokenizer: Tokenizer,
) -> Usage {
    let get = |k: &str| {
        v.get("usage")
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
    };
    Usage {
        input_tokens: get(input).unwrap_or_else(|| tokenizer.prompt_tokens(&req.prompt)),
        output_tokens: get(output).unwrap_or(req.max_tokens as u64),
    }
}

impl OpenAi {
    fn parse_chat(&self, v: &Value, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let choice = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .ok_or_else(|| self.bad_shape("choices"))?;
        self.parse_choice(v, choice, req)
    }

    /// Every choice of a Chat Completions answer, in `index` order; the
    /// first carries the request's usage.
    fn parse_choices(
        &self,
        v: &Value,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        let mut choices: Vec<&Value> = v
            .get("choices")
            .and_then(Value::as_array)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        if choices.len() != n as usize {
            return Err(self.bad_shape(&format!("{n} choices (it has {})", choices.len())));
        }
        choices.sort_by_key(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0));
        let mut out = Vec::with_capacity(choices.len());
        for (i, c) in choices.into_iter().enumerate() {
            let mut one = self.parse_choice(v, c, req)?;
            if i > 0 {
                one.usage = Usage::default();
            } else if v.pointer("/usage/completion_tokens").is_none() {
                one.usage.output_tokens = req.max_tokens as u64 * n as u64;
            }
            if self.may_overrun(req) {
                one.text = first_token(&one.text);
            }
            out.push(one);
        }
        Ok(out)
    }

    fn parse_choice(
        &self,
        v: &Value,
        choice: &Value,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let top_logprobs = if req.top_logprobs.is_some() {
            choice
                .pointer("/logprobs/content")
                .and_then(Value::as_array)
                .and_then(|c| c.first())
                .and_then(logprob_list)
        } else {
            None
        };
        Ok(Completion {
            text,
            top_logprobs,
            usage: usage_of(
                v,
                "prompt_tokens",
                "completion_tokens",
                req,
                self.core.tokenizer,
            ),
        })
    }

    fn parse_responses(
        &self,
        v: &Value,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let output = v
            .get("output")
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad_shape("output"))?;
        let mut text = String::new();
        let mut top_logprobs = None;
        for item in output
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("message"))
        {
            for part in item
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if part.get("type").and_then(Value::as_str) != Some("output_text") {
                    continue;
                }
                text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                if top_logprobs.is_none() && req.top_logprobs.is_some() {
                    top_logprobs = part
                        .get("logprobs")
                        .and_then(Value::as_array)
                        .and_then(|l| l.first())
                        .and_then(logprob_list);
                }
            }
        }
        Ok(Completion {
            text,
            top_logprobs,
            usage: usage_of(v, "input_tokens", "output_tokens", req, self.core.tokenizer),
        })
    }
}

#[async_trait]
impl Provider for OpenAi {
    /// OpenAI has no counting endpoint for chat; its BPE counts exactly
    /// where tiktoken knows the model.
    async fn count_tokens(&self, prompt: &str) -> Result<Option<u64>, ProviderError> {
        Ok(self
            .core
            .tokenizer
            .exact()
            .then(|| self.core.tokenizer.prompt_tokens(prompt)))
    }

    async fn complete_n(
        &self,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        if n <= 1 {
            return Ok(vec![self.complete(req).await?]);
        }
        let body = self.body_n(req, n)?;
        let url = format!("{}{}", self.core.base_url, self.endpoint());
        let v = self.core.post(&url, self.auth(), &body).await?;
        self.answer_of(&v, req, n)
    }

    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let url = format!("{}{}", self.core.base_url, self.endpoint());
        let v = self.core.post(&url, self.auth(), &self.body(req)).await?;
        let mut all = self.answer_of(&v, req, 1)?;
        Ok(all.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: Value) -> ModelSpec {
        let mut v = json!({"key": "k", "provider": "openai", "model": "gpt-4o",
                           "api_key_env": "MORALSWEEP_TEST_OPENAI_KEY"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn req(top: Option<u32>) -> CompletionRequest {
        CompletionRequest {
            prompt: "p".into(),
            max_tokens: 1,
            temperature: Some(0.1),
            seed: Some(7),
            top_logprobs: top,
        }
    }

    #[test]
    fn reasoning_models_are_recognised() {
        assert!(is_reasoning_model("o3-mini"));
        assert!(is_reasoning_model("o1"));
        assert!(is_reasoning_model("gpt-5-mini-2025-08-07"));
        assert!(is_reasoning_model("ft:o4-mini-2025-04-16:org::abc"));
        assert!(!is_reasoning_model("gpt-4o"));
        assert!(!is_reasoning_model("ft:gpt-4o-2024-08-06:org::abc"));
        assert!(!is_reasoning_model("o1x"));
    }

    #[test]
    fn bodies() {
        std::env::set_var("MORALSWEEP_TEST_OPENAI_KEY", "sk-test");
        let m = OpenAi::new(
            &spec(json!({"extra": {"top_p": 0.5, "model": "x"}})),
            Flavor::openai(),
        )
        .unwrap();
        let b = m.chat_body(&req(Some(40)));
        assert_eq!(b["max_tokens"], 1);
        assert_eq!(b["temperature"], 0.1);
        assert_eq!(b["seed"], 7);
        assert_eq!(b["top_logprobs"], 20);
        assert_eq!(b["logprobs"], true);
        assert_eq!(b["top_p"], 0.5);
        assert_eq!(b["model"], "gpt-4o");
        let r = OpenAi::new(
            &spec(json!({"reasoning_effort": "low", "api": "responses"})),
            Flavor::openai(),
        )
        .unwrap();
        let b = r.responses_body(&req(None));
        assert_eq!(b["max_output_tokens"], 16 + 1024);
        assert_eq!(b["reasoning"]["effort"], "low");
        assert!(b.get("temperature").is_none());
        let c = r.chat_body(&req(None));
        assert_eq!(c["max_completion_tokens"], 1 + 1024);
        assert!(c.get("max_tokens").is_none());
        let e = OpenAi::new(&spec(json!({"api": "completions"})), Flavor::openai()).unwrap_err();
        assert!(e.to_string().contains("api = \"completions\""), "{e}");
    }
}
