//! What a provider needs from a local model: the next-token distribution of a
//! prompt, computed once per distinct prompt and reusing the keys and values
//! of the longest prefix seen recently; seeded sampling; short generations;
//! and the exact probability of each rating digit.
//!
//! The rating protocol sends the whole prompt every time (persona prefix +
//! item), so prefix reuse is found here: the engine keeps the KV caches of the
//! last few prompts and starts each new prompt from the one sharing the
//! longest token prefix (a persona's 30 items share the persona prefix and the
//! questionnaire's opening words). The distribution of the last few prompts is
//! kept as well, so the up-to-ten one-token attempts of a slot (and its other
//! repetitions) cost one forward pass.
//!
//! The parts: [`Template`] frames a prompt; [`Distribution`] and
//! [`Summary`] are a next-token distribution and what is kept of it;
//! `cache` holds the prefix, distribution and summary caches; `generate`
//! draws tokens and generations.

mod cache;
mod distribution;
mod generate;
mod summary;
mod template;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use moralsweep_common::logspace::log_add;

use crate::gguf::GgufFile;
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::LocalError;

use cache::State;
pub use distribution::Distribution;
pub use summary::Summary;
pub use template::{ChatFormat, Template};

/// Tuning of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Prompt KV caches kept for prefix reuse, at most.
    pub prefix_caches: usize,
    /// Bytes those caches may hold together (the least recently used go
    /// first). A fallback generation's steps extend the kept cache of its
    /// previous step (see `generate`), so the caches should outlive the
    /// requests in flight: about 7 MB per 200-token prompt of Gemma 3 270M,
    /// 36 prompts in 256 MiB.
    pub cache_bytes: usize,
    /// Next-token distributions kept (1 MB each for a 262k vocabulary):
    /// the prompts in flight and the steps of their fallback generations
    /// (repeated one-token attempts are served from the summaries).
    pub distributions: usize,
    /// Prompts whose [`Summary`] is kept (a few kilobytes each, at most
    /// 32 KB): enough for every prompt of a 100-persona sweep; and a
    /// sixteenth as many steps of generations.
    pub summaries: usize,
    pub template: Template,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            prefix_caches: 64,
            cache_bytes: 256 << 20,
            distributions: 32,
            summaries: 8192,
            template: Template::Chat,
        }
    }
}

/// Makes glibc's malloc hand blocks of 128 KiB and more back to the system
/// when they are freed. Every prompt allocates and frees megabytes (its
/// activations, KV-cache copies, a 1 MB distribution), from whichever
/// blocking-pool thread runs it; glibc raises its mmap threshold each time
/// a large mapped block is freed (the load's temporaries lift it to about
/// 10 MB), after which such blocks land in per-thread arenas that keep their
/// pages: a quickstart held 1.4 GB for about 700 MB of live data. A fixed
/// threshold (which also stops the sliding) keeps the resident size near
/// what is live, for a few page faults per prompt. Process-wide, set once.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only sets an allocator parameter; it is safe
            // to call at any time from any thread.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) };
        });
    }
}

/// One sampled (or chosen) next token.
#[derive(Debug, Clone, PartialEq)]
pub struct NextToken {
    pub id: u32,
    pub text: String,
    pub logprob: f64,
}

/// A generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub text: String,
}

/// A loaded model with its tokenizer and caches; safe to share between
/// threads (computation is serialised: the matrix products use every core).
pub struct Engine {
    pub model: Model,
    /// Shared with other engines of the same vocabulary where they were
    /// loaded through [`Engine::load_shared`].
    pub tokenizer: Arc<Tokenizer>,
    opts: EngineOptions,
    /// Whether the file carries a chat template (`tokenizer.chat_template`).
    pub has_chat_template: bool,
    /// The chat turns [`Template::Chat`] uses, or why the model has none.
    chat: Result<ChatFormat, String>,
    /// Per digit 0-5: every token whose text trims to that digit.
    digit_tokens: [Vec<u32>; 6],
    stop_tokens: Vec<u32>,
    state: Mutex<State>,
    /// Held while a generation step is computed, so that concurrent
    /// generations on the same path (a slot's repetitions, in flight
    /// together) wait for the first and then find its distribution cached
    /// instead of computing it again side by side.
    step: Mutex<()>,
}

impl Engine {
    /// Loads a GGUF file.
    ///
    /// Fails on a value of `MORALSWEEP_CPU` that names no kernel class
    /// ([`crate::kernels::CPU_ENV`]), naming the accepted ones.
    pub fn load(path: &Path, opts: EngineOptions) -> Result<Engine, LocalError> {
        Self::load_with(path, opts, None)
    }

    /// [`Engine::load`], taking the tokenizer from `tokenizers` when one of
    /// the same vocabulary was built before (a fine-tune's checkpoints
    /// share their base's), else building it there.
    pub fn load_shared(
        path: &Path,
        opts: EngineOptions,
        tokenizers: &crate::tokenizer::SharedTokenizers,
    ) -> Result<Engine, LocalError> {
        Self::load_with(path, opts, Some(tokenizers))
    }

    fn load_with(
        path: &Path,
        opts: EngineOptions,
        tokenizers: Option<&crate::tokenizer::SharedTokenizers>,
    ) -> Result<Engine, LocalError> {
        crate::kernels::from_env().map_err(|e| LocalError::Input(e.to_string()))?;
        tracing::debug!(kernels = %crate::kernels::class(), path = %path.display(), "loading a local model");
        return_large_buffers_to_the_system();
        let f = GgufFile::open(path)?;
        crate::arch::Arch::of(&f)?;
        let tokenizer = match tokenizers {
            Some(shared) => shared.get(&f)?,
            None => Arc::new(Tokenizer::from_gguf(&f)?),
        };
        let model = Model::from_gguf(&f)?;
        if tokenizer.vocab_size() != model.cfg.vocab {
            return Err(LocalError::Format {
                path: path.to_path_buf(),
                message: format!(
                    "the tokenizer has {} tokens but the embedding has {} rows",
                    tokenizer.vocab_size(),
                    model.cfg.vocab
                ),
            });
        }
        let chat_template = f
            .metadata
            .get("tokenizer.chat_template")
            .and_then(crate::gguf::Value::as_str);
        let mut e = Self::new(model, tokenizer, opts);
        e.has_chat_template = chat_template.is_some();
        e.chat = ChatFormat::detect(chat_template, e.model.cfg.arch)
            .map_err(|m| format!("{}: {m}", path.display()));
        Ok(e)
    }

    pub fn new(model: Model, tokenizer: impl Into<Arc<Tokenizer>>, opts: EngineOptions) -> Engine {
        let tokenizer = tokenizer.into();
        let mut digit_tokens: [Vec<u32>; 6] = Default::default();
        for id in 0..tokenizer.vocab_size() as u32 {
            let t = tokenizer.token_text(id);
            let tr = t.trim();
            if tr.len() == 1 {
                if let Some(d) = tr.chars().next().and_then(|c| c.to_digit(10)) {
                    if d <= 5 {
                        digit_tokens[d as usize].push(id);
                    }
                }
            }
        }
        let mut stop_tokens: Vec<u32> = tokenizer.eos.into_iter().collect();
        stop_tokens.extend(
            tokenizer
                .eot
                .iter()
                .filter(|&&id| Some(id) != tokenizer.eos),
        );
        let chat = ChatFormat::detect(None, model.cfg.arch);
        Engine {
            model,
            tokenizer,
            opts,
            has_chat_template: false,
            chat,
            digit_tokens,
            stop_tokens,
            state: Mutex::new(State {
                caches: VecDeque::new(),
                dists: VecDeque::new(),
                summaries: HashMap::new(),
                step_summaries: HashMap::new(),
                uses: 0,
                prompt_tokens: 0,
                computed_tokens: 0,
            }),
            step: Mutex::new(()),
        }
    }

    /// The tokens that stand for digit `d` (0-5).
    pub fn digit_tokens(&self, d: usize) -> &[u32] {
        &self.digit_tokens[d]
    }

    /// The token sequence of a prompt: BOS, the prompt framed by the engine's
    /// template.
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>, LocalError> {
        self.frame(prompt, &self.opts.template)
    }

    /// The chat turns of [`Template::Chat`], or an error saying why the
    /// model has none.
    pub fn chat_format(&self) -> Result<&ChatFormat, LocalError> {
        self.chat
            .as_ref()
            .map_err(|m| LocalError::Unsupported(m.clone()))
    }

    /// The token sequence of a prompt framed by `template`.
    pub fn frame(&self, prompt: &str, template: &Template) -> Result<Vec<u32>, LocalError> {
        let t = &self.tokenizer;
        Ok(match template {
            Template::Raw => t.encode(prompt, true),
            Template::Completion { cue } => t.encode(&format!("{prompt}{cue}"), true),
            Template::Chat => {
                let format = self.chat_format()?;
                let mut v = t.encode("", true);
                for part in format.parts(prompt, |s| t.token_id(s).is_some()) {
                    match part {
                        template::Part::Special(s) => v.push(t.token_id(s).ok_or_else(|| {
                            LocalError::Unsupported(format!(
                                "the vocabulary has no token {s:?}, which the {format:?} chat format needs; use template \"completion\" or \"raw\""
                            ))
                        })?),
                        template::Part::Text(text) => v.extend(t.encode(&text, false)),
                    }
                }
                v
            }
        })
    }

    /// (prompt tokens asked for, prompt tokens actually computed) so far.
    pub fn token_counts(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.prompt_tokens, s.computed_tokens)
    }

    /// log p(digit) for each digit 0-5 (all tokenisations summed).
    pub fn digit_logprobs(&self, d: &Distribution) -> [f64; 6] {
        let mut out = [f64::NEG_INFINITY; 6];
        for (k, ids) in self.digit_tokens.iter().enumerate() {
            let mut acc = f64::NEG_INFINITY;
            for &id in ids {
                acc = log_add(acc, d.logprob(id));
            }
            out[k] = acc;
        }
        out
    }

    /// One next token of `prompt` at `temperature`, seeded.
    pub fn next_token(
        &self,
        prompt: &str,
        temperature: f64,
        seed: u64,
    ) -> Result<NextToken, LocalError> {
        self.sample_tokens(&self.prompt_tokens(prompt)?, temperature, seed)
    }
}
