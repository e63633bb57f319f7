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

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::gguf::GgufFile;
use crate::model::{KvCache, Model};
use crate::tokenizer::Tokenizer;
use crate::LocalError;

/// How prompts are framed for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// The prompt text as it is, after BOS.
    Raw,
    /// Gemma's chat turns: `<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n`.
    GemmaChat,
}

/// Tuning of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Prompt KV caches kept for prefix reuse.
    pub prefix_caches: usize,
    /// Next-token distributions kept (1 MB each for a 262k vocabulary):
    /// the prompts in flight and the steps of their fallback generations.
    pub distributions: usize,
    pub template: Template,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            prefix_caches: 8,
            distributions: 128,
            template: Template::GemmaChat,
        }
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

/// A next-token distribution as log-probabilities over the whole vocabulary.
pub struct Distribution {
    pub logits: Vec<f32>,
    /// log sum exp of the logits (temperature 1).
    pub log_z: f64,
}

impl Distribution {
    fn new(logits: Vec<f32>) -> Distribution {
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let s: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum();
        Distribution {
            log_z: m + s.ln(),
            logits,
        }
    }

    /// log p(token) at temperature 1.
    pub fn logprob(&self, id: u32) -> f64 {
        self.logits[id as usize] as f64 - self.log_z
    }

    /// The `k` most likely tokens, most likely first.
    pub fn top(&self, k: usize) -> Vec<(u32, f64)> {
        let mut idx: Vec<u32> = (0..self.logits.len() as u32).collect();
        let k = k.min(idx.len());
        if k == 0 {
            return vec![];
        }
        idx.select_nth_unstable_by(k - 1, |&a, &b| {
            self.logits[b as usize].total_cmp(&self.logits[a as usize])
        });
        idx.truncate(k);
        idx.sort_by(|&a, &b| {
            self.logits[b as usize]
                .total_cmp(&self.logits[a as usize])
                .then(a.cmp(&b))
        });
        idx.into_iter().map(|i| (i, self.logprob(i))).collect()
    }

    /// Draws a token at `temperature` (<= 0: the most likely token).
    pub fn sample(&self, temperature: f64, rng: &mut impl Rng) -> u32 {
        let argmax = || {
            self.logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map_or(0, |(i, _)| i as u32)
        };
        if temperature <= 0.0 || !temperature.is_finite() {
            return argmax();
        }
        // Tokens more than 40 nats (at this temperature) below the most
        // likely one carry a total weight below 262144 * e^-40 = 1e-12 of
        // it; they are skipped, which saves an exp per vocabulary entry.
        let m = self
            .logits
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let floor = (m - 40.0 * temperature) as f32;
        let weight = |l: f32| ((l as f64 - m) / temperature).exp();
        let total: f64 = self
            .logits
            .iter()
            .filter(|&&l| l >= floor)
            .map(|&l| weight(l))
            .sum();
        let mut u = rng.random::<f64>() * total;
        for (i, &l) in self.logits.iter().enumerate() {
            if l < floor {
                continue;
            }
            let wi = weight(l);
            if u < wi {
                return i as u32;
            }
            u -= wi;
        }
        argmax()
    }
}

struct State {
    /// Most recently used last.
    caches: VecDeque<KvCache>,
    dists: VecDeque<(Vec<u32>, Arc<Distribution>)>,
    prompt_tokens: u64,
    computed_tokens: u64,
}

/// A loaded model with its tokenizer and caches; safe to share between
/// threads (computation is serialised: the matrix products use every core).
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    opts: EngineOptions,
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
    pub fn load(path: &Path, opts: EngineOptions) -> Result<Engine, LocalError> {
        let f = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf(&f)?;
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
        Ok(Self::new(model, tokenizer, opts))
    }

    pub fn new(model: Model, tokenizer: Tokenizer, opts: EngineOptions) -> Engine {
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
        stop_tokens.extend(tokenizer.token_id("<end_of_turn>"));
        Engine {
            model,
            tokenizer,
            opts,
            digit_tokens,
            stop_tokens,
            state: Mutex::new(State {
                caches: VecDeque::new(),
                dists: VecDeque::new(),
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

    /// The token sequence of a prompt: BOS, the prompt framed by the template.
    pub fn prompt_tokens(&self, prompt: &str) -> Vec<u32> {
        let t = &self.tokenizer;
        match self.opts.template {
            Template::Raw => t.encode(prompt, true),
            Template::GemmaChat => {
                let (Some(start), Some(end)) =
                    (t.token_id("<start_of_turn>"), t.token_id("<end_of_turn>"))
                else {
                    return t.encode(prompt, true);
                };
                let mut v = t.encode("", true);
                v.push(start);
                v.extend(t.encode(&format!("user\n{prompt}"), false));
                v.push(end);
                v.extend(t.encode("\n", false));
                v.push(start);
                v.extend(t.encode("model\n", false));
                v
            }
        }
    }

    /// (prompt tokens asked for, prompt tokens actually computed) so far.
    pub fn token_counts(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.prompt_tokens, s.computed_tokens)
    }

    /// The next-token distribution after `tokens`.
    pub fn distribution(&self, tokens: &[u32]) -> Result<Arc<Distribution>, LocalError> {
        if tokens.is_empty() {
            return Err(LocalError::Input("empty prompt".into()));
        }
        if tokens.len() > self.model.cfg.context_length {
            return Err(LocalError::Input(format!(
                "the prompt has {} tokens; the model's context is {}",
                tokens.len(),
                self.model.cfg.context_length
            )));
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.prompt_tokens += tokens.len() as u64;
        if let Some(pos) = st.dists.iter().position(|(k, _)| k == tokens) {
            let e = st.dists.remove(pos).expect("position is in range");
            let d = e.1.clone();
            st.dists.push_back(e);
            return Ok(d);
        }
        let (cache, hidden) = self.run_prefix(&mut st, tokens)?;
        let d = Arc::new(Distribution::new(self.model.logits(&hidden)));
        push_lru(&mut st.caches, cache, self.opts.prefix_caches);
        push_lru(
            &mut st.dists,
            (tokens.to_vec(), d.clone()),
            self.opts.distributions,
        );
        Ok(d)
    }

    /// Computes `tokens` starting from the cached prefix that shares most of
    /// them; returns the new cache and the last hidden state.
    fn run_prefix(
        &self,
        st: &mut State,
        tokens: &[u32],
    ) -> Result<(KvCache, Vec<f32>), LocalError> {
        let mut cache = self.best_prefix(st, tokens);
        let start = cache.len();
        st.computed_tokens += (tokens.len() - start) as u64;
        let hidden = self.model.forward(&tokens[start..], &mut cache)?;
        Ok((cache, hidden))
    }

    /// A copy of the cached prefix sharing most tokens with `tokens`, cut to
    /// leave at least the last token to compute.
    fn best_prefix(&self, st: &State, tokens: &[u32]) -> KvCache {
        let best = st
            .caches
            .iter()
            .enumerate()
            .map(|(i, c)| (i, common_prefix(&c.tokens, tokens)))
            .max_by_key(|&(i, n)| (n, i));
        match best {
            Some((i, n)) if n > 0 => {
                let keep = n.min(tokens.len().saturating_sub(1));
                st.caches[i].prefix(keep, self.model.kv_dim())
            }
            _ => self.model.new_cache(),
        }
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

    /// Draws the next token from a distribution at `temperature`, seeded.
    pub fn sample_next(&self, d: &Distribution, temperature: f64, seed: u64) -> NextToken {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let id = d.sample(temperature, &mut rng);
        NextToken {
            id,
            text: self.tokenizer.token_text(id),
            logprob: d.logprob(id),
        }
    }

    /// One next token of `prompt` at `temperature`, seeded.
    pub fn next_token(
        &self,
        prompt: &str,
        temperature: f64,
        seed: u64,
    ) -> Result<NextToken, LocalError> {
        let tokens = self.prompt_tokens(prompt);
        let d = self.distribution(&tokens)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let id = d.sample(temperature, &mut rng);
        Ok(NextToken {
            id,
            text: self.tokenizer.token_text(id),
            logprob: d.logprob(id),
        })
    }

    /// Generates up to `max_tokens` tokens after `prompt` (stopping at the end
    /// of turn, or when `done` says the text so far is enough).
    pub fn generate(
        &self,
        prompt: &str,
        max_tokens: usize,
        temperature: f64,
        seed: u64,
        done: impl FnMut(&str) -> bool,
    ) -> Result<Generation, LocalError> {
        let tokens = self.prompt_tokens(prompt);
        self.generate_from(&tokens, max_tokens, temperature, seed, done)
    }

    /// [`Engine::generate`] after a prompt given as tokens.
    pub fn generate_from(
        &self,
        tokens: &[u32],
        max_tokens: usize,
        temperature: f64,
        seed: u64,
        mut done: impl FnMut(&str) -> bool,
    ) -> Result<Generation, LocalError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Generation {
            tokens: vec![],
            text: String::new(),
        };
        if max_tokens == 0 {
            return Ok(out);
        }
        // Each step's distribution goes through the distribution cache, so
        // generations that follow the same path (the repetitions of a slot at
        // a low temperature) compute it once; this generation's own KV cache
        // catches up only when a step is not cached.
        let mut seq = tokens.to_vec();
        let mut cache: Option<KvCache> = None;
        loop {
            let d = if seq.len() == tokens.len() {
                self.distribution(&seq)?
            } else if let Some(d) = self.cached_distribution(&seq) {
                d
            } else {
                let _step = self.step.lock().unwrap_or_else(|e| e.into_inner());
                match self.cached_distribution(&seq) {
                    Some(d) => d,
                    None => {
                        let c = match cache.as_mut() {
                            Some(c) => c,
                            None => {
                                let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                                cache.insert(self.best_prefix(&st, &seq))
                            }
                        };
                        let hidden = self.model.forward(&seq[c.len()..], c)?;
                        let d = Arc::new(Distribution::new(self.model.logits(&hidden)));
                        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        push_lru(
                            &mut st.dists,
                            (seq.clone(), d.clone()),
                            self.opts.distributions,
                        );
                        d
                    }
                }
            };
            let id = d.sample(temperature, &mut rng);
            if self.stop_tokens.contains(&id) {
                break;
            }
            out.tokens.push(id);
            seq.push(id);
            out.text = self.tokenizer.decode(&out.tokens);
            if out.tokens.len() >= max_tokens || done(&out.text) {
                break;
            }
        }
        Ok(out)
    }

    /// A cached distribution, marked as recently used.
    fn cached_distribution(&self, tokens: &[u32]) -> Option<Arc<Distribution>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pos = st.dists.iter().position(|(k, _)| k == tokens)?;
        let e = st.dists.remove(pos).expect("position is in range");
        let d = e.1.clone();
        st.dists.push_back(e);
        Some(d)
    }
}

fn push_lru<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if cap == 0 {
        return;
    }
    while q.len() >= cap {
        q.pop_front();
    }
    q.push_back(v);
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// log(exp(a) + exp(b)).
pub fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_seeded_and_follows_the_temperature() {
        let d = Distribution::new(vec![2.0, 1.0, 0.0, -100.0]);
        let draw = |t: f64, seed: u64| d.sample(t, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(0.0, 1), 0);
        assert!((0..50).all(|s| draw(0.7, s) == draw(0.7, s)));
        let n = 4000;
        let ones = (0..n).filter(|&s| draw(1.0, s) == 1).count() as f64 / n as f64;
        let want = (1f64.exp()) / (2f64.exp() + 1f64.exp() + 1.0);
        assert!((ones - want).abs() < 0.03, "{ones} vs {want}");
        assert!((0..n).all(|s| draw(1.0, s) != 3));
        let total: f64 = (0..4).map(|i| d.logprob(i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
}
