//! `local`: a GGUF language model computed in-process on the CPU
//! (`moralsweep-local`), with no network and no key. `model = "default"`
//! runs Gemma 3 270M (fetched by `scripts/fetch-model`, which the provider
//! runs itself on first use when the weights are missing); any other value is a
//! path to a GGUF file of a supported architecture (Gemma 3, Gemma 2, Llama
//! 3.x and Mistral, Qwen 2.5, Qwen 3: `moralsweep_local::arch`).
//!
//! - One-token requests sample the first token at the request's temperature
//!   with the request's seed (a pure function of prompt, temperature and
//!   seed). A request without a temperature (`temperature =
//!   "provider-default"`) samples the model's own distribution
//!   ([`DEFAULT_TEMPERATURE`]).
//! - Longer requests (the protocol's fallback) generate up to `max_tokens`
//!   tokens, stopping at the end of the model's turn, or as soon as the text
//!   holds a standalone rating that no further token can change (the rating
//!   the protocol extracts is then the same; the recorded response is
//!   shorter).
//! - Logprob requests return the exact probability of each digit 0-5 over
//!   the full next-token distribution, every tokenisation of a digit summed
//!   into one entry per digit, followed by the most likely other tokens
//!   (`top_logprobs` of them).
//!
//! The engine (weights, caches) is loaded once per file and shared by every
//! model and worker of the process; its computation runs on the blocking
//! thread pool, one request at a time (each uses all cores).
//!
//! Options in the model's `extra` table:
//! - `template`: how the prompt is framed. `"auto"` (default) picks `"chat"`
//!   when the GGUF file carries a chat template (instruction-tuned models do)
//!   and `"completion"` otherwise. `"chat"`: one user turn around the prompt
//!   in the model's own chat format (Gemma's user/model turns, Llama
//!   3's headers, ChatML, `[INST]`; recognised from the file's chat template,
//!   else an error naming the template). `"completion"`: the prompt followed by `answer_cue` (default
//!   `"\n\nRating: "`), for a base model, which continues documents rather
//!   than answering turns: after chat turns Gemma 3 270M (a base model) echoes
//!   the prompt and almost never starts with a digit; after the cue about two
//!   thirds of its first-token probability is on the digits 0-5. `"raw"`: the
//!   prompt text alone.
//! - `answer_cue`: the cue of the completion framing.
//! - `prefix_caches` and `cache_mib` (KV caches of recent prompts, by count
//!   and by memory), `distributions` (whole next-token distributions of
//!   recent prompts) and `summaries` (the few-kilobyte summaries kept of
//!   every prompt's distribution, which serve repeated prompts exactly).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use moralsweep_common::extract::first_standalone_rating;
use moralsweep_common::ModelSpec;
use moralsweep_local::engine::Template;
use moralsweep_local::{weights, Engine, EngineOptions};

use super::{Completion, CompletionRequest, Provider, ProviderError, TokenLogprob, Usage};

/// A local model.
pub struct Local {
    key: String,
    path: PathBuf,
    is_default: bool,
    opts: EngineOptions,
    /// The framing of prompts; `None`: chosen from the file once loaded
    /// (chat turns if it carries a chat template, else a completion cue).
    template: Option<Template>,
    /// `extra.answer_cue`, for the completion framing `auto` may choose.
    cue: Option<String>,
    /// Shared by every `Local` of the process naming the same file, so that the weights are loaded (and cached prefixes kept)
    /// once however many workers and models use them.
    engine: Arc<tokio::sync::OnceCell<Arc<Engine>>>,
}

type EngineKey = PathBuf;
type EngineCell = Arc<tokio::sync::OnceCell<Arc<Engine>>>;

/// The engine cell of a file in this process.
fn engine_cell(key: EngineKey) -> EngineCell {
    static L: std::sync::OnceLock<Mutex<HashMap<EngineKey, EngineCell>>> =
        std::sync::OnceLock::new();
    L.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

fn extra_usize(spec: &ModelSpec, key: &str, default: usize) -> Result<usize, ProviderError> {
    match spec.extra.get(key) {
        None => Ok(default),
        Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
            ProviderError::Fatal(format!(
                "model {:?}: extra.{key} should be a non-negative integer, found {v}",
                spec.key
            ))
        }),
    }
}

impl Local {
    /// Checks the spec and that the weights are there; loading waits for the
    /// first request.
    pub fn new(spec: &ModelSpec) -> Result<Local, ProviderError> {
        let cue = match spec.extra.get("answer_cue") {
            None => None,
            Some(v) => Some(v.as_str().map(str::to_string).ok_or_else(|| {
                ProviderError::Fatal(format!(
                    "model {:?}: extra.answer_cue should be a string (the text after the prompt that starts a base model's answer), found {v}",
                    spec.key
                ))
            })?),
        };
        let template = match spec.extra.get("template").map(|v| v.as_str()) {
            None | Some(Some("auto")) => None,
            Some(Some("chat")) => Some(Template::Chat),
            Some(Some("raw")) => Some(Template::Raw),
            Some(Some("completion")) => Some(Template::Completion {
                cue: cue.clone().unwrap_or_else(|| Template::DEFAULT_CUE.to_string()),
            }),
            Some(other) => {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: extra.template should be \"auto\", \"chat\", \"completion\" or \"raw\", found {other:?}",
                    spec.key
                )))
            }
        };
        if cue.is_some() && !matches!(template, None | Some(Template::Completion { .. })) {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: extra.answer_cue applies to template \"completion\" (or \"auto\" on a base model), not {:?}",
                spec.key,
                spec.extra.get("template")
            )));
        }
        let defaults = EngineOptions::default();
        let opts = EngineOptions {
            template: Template::Raw,
            prefix_caches: extra_usize(spec, "prefix_caches", defaults.prefix_caches)?,
            cache_bytes: extra_usize(spec, "cache_mib", defaults.cache_bytes >> 20)? << 20,
            distributions: extra_usize(spec, "distributions", defaults.distributions)?,
            summaries: extra_usize(spec, "summaries", defaults.summaries)?,
        };
        let path = weights::resolve(&spec.model);
        // The published hash is checked for the default file only (a file
        // named by MORALSWEEP_MODEL_PATH or a path may be any GGUF model).
        let is_default = path == weights::default_path()
            && path.file_name().is_some_and(|n| n == weights::DEFAULT_FILE);
        // Missing default weights are fetched on first use (scripts/fetch-model).
        let fetchable =
            path == weights::default_path() && std::env::var_os("MORALSWEEP_MODEL_PATH").is_none();
        if !path.is_file() && !fetchable {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: no GGUF file at {} (the local provider's `model` is a GGUF path or \"default\"; {})",
                spec.key,
                path.display(),
                weights::HOW_TO_GET
            )));
        }
        let path_key = path.clone();
        Ok(Local {
            key: spec.key.clone(),
            path,
            is_default,
            opts,
            template,
            cue,
            engine: engine_cell(path_key),
        })
    }

    async fn engine(&self) -> Result<Arc<Engine>, ProviderError> {
        self.engine
            .get_or_try_init(|| async {
                let (path, opts, is_default, model) = (self.path.clone(), self.opts.clone(), self.is_default, self.key.clone());
                let engine = tokio::task::spawn_blocking(move || {
                    let path = if path.is_file() { path } else { weights::fetch_default()? };
                    if is_default {
                        weights::verify_default(&path)?;
                    }
                    let t = std::time::Instant::now();
                    let e = Engine::load(&path, opts)?;
                    tracing::info!(model = %model, path = %path.display(), secs = t.elapsed().as_secs_f64(), "local model loaded");
                    Ok::<_, moralsweep_local::LocalError>(e)
                })
                .await
                .map_err(|e| ProviderError::Fatal(format!("loading the local model failed: {e}")))?
                .map_err(|e| ProviderError::Fatal(format!("model {:?}: {e}", self.key)))?;
                let engine = Arc::new(engine);
                Ok(engine)
            })
            .await
            .cloned()
    }
}

/// True once `text` holds a standalone rating that more text cannot change.
fn rating_settled(text: &str) -> bool {
    let r = first_standalone_rating(text);
    r.is_some() && r == first_standalone_rating(&format!("{text}x"))
}

/// The temperature of requests that send none: the model's own next-token
/// distribution, unscaled.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;

fn answer(
    engine: &Engine,
    template: &Template,
    req: &CompletionRequest,
) -> Result<Completion, moralsweep_local::LocalError> {
    let tokens = engine.frame(&req.prompt, template)?;
    let seed = req.seed.unwrap_or_else(rand::random);
    let temperature = req.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    // The prompt's summary (kept across requests: a persona prompt's
    // attempts, repetitions and logprob request share one forward pass).
    let summary = engine.summary(&tokens)?;
    let top_logprobs = match req.top_logprobs {
        None => None,
        Some(k) => {
            let mut v: Vec<TokenLogprob> = summary
                .digits
                .iter()
                .enumerate()
                .filter(|(_, lp)| lp.is_finite())
                .map(|(d, &lp)| TokenLogprob {
                    token: d.to_string(),
                    logprob: lp,
                })
                .collect();
            let digit_ids: Vec<u32> = (0..6)
                .flat_map(|d| engine.digit_tokens(d).iter().copied())
                .collect();
            let want = k as usize + digit_ids.len();
            let top = match summary.top(want) {
                Some(t) => t,
                None => engine.distribution(&tokens)?.top(want),
            };
            v.extend(
                top.into_iter()
                    .filter(|(id, _)| !digit_ids.contains(id))
                    .take(k as usize)
                    .map(|(id, lp)| TokenLogprob {
                        token: engine.tokenizer.token_text(id),
                        logprob: lp,
                    }),
            );
            v.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            Some(v)
        }
    };
    let (text, output_tokens) = if req.max_tokens <= 1 {
        let t = engine.draw(&tokens, &summary, temperature, seed)?;
        (t.text, 1)
    } else {
        let g = engine.generate_from(
            &tokens,
            req.max_tokens as usize,
            temperature,
            seed,
            rating_settled,
        )?;
        let n = g.tokens.len() as u64;
        (g.text, n)
    };
    Ok(Completion {
        text,
        top_logprobs,
        usage: Usage {
            input_tokens: tokens.len() as u64,
            output_tokens,
        },
    })
}

#[async_trait]
impl Provider for Local {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let engine = self.engine().await?;
        let template = match &self.template {
            Some(t) => t.clone(),
            None if engine.has_chat_template => Template::Chat,
            None => Template::Completion {
                cue: self
                    .cue
                    .clone()
                    .unwrap_or_else(|| Template::DEFAULT_CUE.to_string()),
            },
        };
        let req = req.clone();
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || answer(&engine, &template, &req))
            .await
            .map_err(|e| {
                ProviderError::Fatal(format!("model {key:?}: the local model failed: {e}"))
            })?
            .map_err(|e| ProviderError::Fatal(format!("model {:?}: {e}", self.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> ModelSpec {
        serde_json::from_value(serde_json::json!({
            "key": "tiny", "provider": "local",
            "model": "/nonexistent/model.gguf", "extra": extra,
        }))
        .unwrap()
    }

    fn refusal(extra: serde_json::Value) -> String {
        match Local::new(&spec(extra)) {
            Err(ProviderError::Fatal(m)) => m,
            Err(e) => panic!("not a fatal refusal: {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn framing_options_are_checked_and_named() {
        let m = refusal(serde_json::json!({"template": "chatty"}));
        assert!(
            m.contains("extra.template") && m.contains("\"completion\""),
            "{m}"
        );
        let m = refusal(serde_json::json!({"template": "chat", "answer_cue": "A:"}));
        assert!(
            m.contains("extra.answer_cue") && m.contains("completion"),
            "{m}"
        );
        let m = refusal(serde_json::json!({"answer_cue": 5}));
        assert!(m.contains("extra.answer_cue should be a string"), "{m}");
        let m = refusal(serde_json::json!({"cache_mib": "lots"}));
        assert!(m.contains("extra.cache_mib"), "{m}");
        // Valid framings get as far as the missing file, which is named.
        for extra in [
            serde_json::json!({}),
            serde_json::json!({"template": "auto", "answer_cue": "\nAnswer: "}),
            serde_json::json!({"template": "completion"}),
            serde_json::json!({"template": "raw"}),
        ] {
            let m = refusal(extra);
            assert!(m.contains("/nonexistent/model.gguf"), "{m}");
        }
    }

    #[test]
    fn settled_ratings() {
        assert!(!rating_settled("You are"));
        assert!(!rating_settled("I'd say 4"));
        assert!(rating_settled("I'd say 4."));
        assert!(!rating_settled("4"));
        assert!(rating_settled("4 because"));
    }
}
