//! `local`: a GGUF language model computed in-process on the CPU
//! (`moralsweep-local`), with no network and no key. `model = "default"`
//! runs Gemma 3 270M (fetched by `scripts/fetch-model`, which the provider
//! runs itself on first use when the weights are missing); any other value is a
//! path to a GGUF file of a supported architecture.
//!
//! - One-token requests sample the first token at the request's temperature
//!   with the request's seed (a pure function of prompt, temperature and
//!   seed).
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
//! Options in the model's `extra` table: `template` = `"chat"` (default:
//! Gemma's user/model turns around the prompt) or `"raw"` (the prompt text
//! alone), `prefix_caches` and `distributions` (cache sizes).

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
    /// Shared by every `Local` of the process naming the same file and
    /// template, so that the weights are loaded (and cached prefixes kept)
    /// once however many workers and models use them.
    engine: Arc<tokio::sync::OnceCell<Arc<Engine>>>,
}

type EngineKey = (PathBuf, bool);
type EngineCell = Arc<tokio::sync::OnceCell<Arc<Engine>>>;

/// The engine cell of a file and template in this process.
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
        let template = match spec.extra.get("template").map(|v| v.as_str()) {
            None | Some(Some("chat")) => Template::GemmaChat,
            Some(Some("raw")) => Template::Raw,
            Some(other) => {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: extra.template should be \"chat\" or \"raw\", found {other:?}",
                    spec.key
                )))
            }
        };
        let defaults = EngineOptions::default();
        let opts = EngineOptions {
            template,
            prefix_caches: extra_usize(spec, "prefix_caches", defaults.prefix_caches)?,
            distributions: extra_usize(spec, "distributions", defaults.distributions)?,
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
        let (path_key, opts_raw) = (path.clone(), opts.template == Template::Raw);
        Ok(Local {
            key: spec.key.clone(),
            path,
            is_default,
            opts,
            engine: engine_cell((path_key, opts_raw)),
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

fn answer(
    engine: &Engine,
    req: &CompletionRequest,
) -> Result<Completion, moralsweep_local::LocalError> {
    let tokens = engine.prompt_tokens(&req.prompt);
    let seed = req.seed.unwrap_or_else(rand::random);
    let dist = engine.distribution(&tokens)?;
    let top_logprobs = req.top_logprobs.map(|k| {
        let digits = engine.digit_logprobs(&dist);
        let mut v: Vec<TokenLogprob> = digits
            .iter()
            .enumerate()
            .filter(|(_, lp)| lp.is_finite())
            .map(|(d, &lp)| TokenLogprob {
                token: d.to_string(),
                logprob: lp,
            })
            .collect();
        let is_digit = |id: u32| (0..6).any(|d| engine.digit_tokens(d).contains(&id));
        v.extend(
            dist.top(k as usize + 6)
                .into_iter()
                .filter(|&(id, _)| !is_digit(id))
                .take(k as usize)
                .map(|(id, lp)| TokenLogprob {
                    token: engine.tokenizer.token_text(id),
                    logprob: lp,
                }),
        );
        v.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
        v
    });
    let (text, output_tokens) = if req.max_tokens <= 1 {
        let t = engine.sample_next(&dist, req.temperature, seed);
        (t.text, 1)
    } else {
        let g = engine.generate_from(
            &tokens,
            req.max_tokens as usize,
            req.temperature,
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
        let req = req.clone();
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || answer(&engine, &req))
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

    #[test]
    fn settled_ratings() {
        assert!(!rating_settled("You are"));
        assert!(!rating_settled("I'd say 4"));
        assert!(rating_settled("I'd say 4."));
        assert!(!rating_settled("4"));
        assert!(rating_settled("4 because"));
    }
}
