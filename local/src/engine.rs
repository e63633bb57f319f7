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

use moralsweep_common::logspace::log_add;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::gguf::GgufFile;
use crate::model::{KvCache, Model};
use crate::tokenizer::Tokenizer;
use crate::LocalError;

/// How prompts are framed for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// The prompt text as it is, after BOS.
    Raw,
    /// Gemma's chat turns: `<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n`,
    /// for instruction-tuned models.
    GemmaChat,
    /// For a base (pretrained) model, which continues text rather than
    /// answering turns: the prompt followed by a cue that starts the answer,
    /// as a document would (`{prompt}{cue}`, after BOS).
    Completion { cue: String },
}

impl Template {
    /// The cue of [`Template::Completion`] when none is given: the rating
    /// protocol asks for a rating first, and a base model continues this line
    /// with a digit about two times in three (Gemma 3 270M; after the chat
    /// turns it echoes the prompt instead and almost never starts with one).
    pub const DEFAULT_CUE: &'static str = "\n\nRating: ";

    /// The framing a model file implies: chat turns when the file carries a
    /// chat template (`tokenizer.chat_template`, which instruction-tuned
    /// models ship), else a completion with the default cue.
    pub fn for_model(has_chat_template: bool) -> Template {
        if has_chat_template {
            Template::GemmaChat
        } else {
            Template::Completion {
                cue: Self::DEFAULT_CUE.to_string(),
            }
        }
    }
}

/// Tuning of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Prompt KV caches kept for prefix reuse, at most.
    pub prefix_caches: usize,
    /// Bytes those caches may hold together (the least recently used go
    /// first). A fallback generation continues its prompt's cache, so the
    /// caches should outlive the requests in flight: about 7 MB per
    /// 200-token prompt of Gemma 3 270M, 64 prompts in 512 MiB.
    pub cache_bytes: usize,
    /// Next-token distributions kept (1 MB each for a 262k vocabulary):
    /// the prompts in flight and the steps of their fallback generations.
    pub distributions: usize,
    /// Prompts whose [`Summary`] is kept (a few kilobytes each): enough for
    /// every prompt of a 100-persona sweep.
    pub summaries: usize,
    pub template: Template,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            prefix_caches: 64,
            cache_bytes: 512 << 20,
            distributions: 128,
            summaries: 8192,
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

    /// The `k` most likely tokens, most likely first (the lowest id first
    /// among ties).
    pub fn top(&self, k: usize) -> Vec<(u32, f64)> {
        let mut idx: Vec<u32> = (0..self.logits.len() as u32).collect();
        let k = k.min(idx.len());
        if k == 0 {
            return vec![];
        }
        let order = |a: &u32, b: &u32| {
            self.logits[*b as usize]
                .total_cmp(&self.logits[*a as usize])
                .then(a.cmp(b))
        };
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
        idx.sort_by(order);
        idx.into_iter().map(|i| (i, self.logprob(i))).collect()
    }

    /// Draws a token at `temperature` (<= 0: the most likely token).
    pub fn sample(&self, temperature: f64, rng: &mut impl Rng) -> u32 {
        let m = self
            .logits
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        sample_entries(
            || self.logits.iter().enumerate().map(|(i, &l)| (i as u32, l)),
            m,
            temperature,
            rng,
        )
    }
}

/// Draws a token from `(id, logit)` entries given in ascending id order, with
/// `m` their largest logit, at `temperature` (<= 0: the most likely token,
/// the lowest id among ties). Tokens more than 40 nats (at this temperature)
/// below the most likely one carry a total weight below 262144 * e^-40 =
/// 1e-12 of it; they are skipped, which saves an exp per vocabulary entry and
/// lets a [`Summary`] holding every token above that line draw exactly the
/// token the whole distribution would.
fn sample_entries<I: Iterator<Item = (u32, f32)>>(
    entries: impl Fn() -> I,
    m: f32,
    temperature: f64,
    rng: &mut impl Rng,
) -> u32 {
    let argmax = || {
        let mut best: Option<(u32, f32)> = None;
        for (i, l) in entries() {
            if best.is_none_or(|(_, b)| l > b) {
                best = Some((i, l));
            }
        }
        best.map_or(0, |(i, _)| i)
    };
    if temperature <= 0.0 || !temperature.is_finite() {
        return argmax();
    }
    let m = m as f64;
    let floor = sample_floor(m, temperature);
    let weight = |l: f32| ((l as f64 - m) / temperature).exp();
    let total: f64 = entries()
        .filter(|&(_, l)| l >= floor)
        .map(|(_, l)| weight(l))
        .sum();
    let mut u = rng.random::<f64>() * total;
    for (i, l) in entries() {
        if l < floor {
            continue;
        }
        let wi = weight(l);
        if u < wi {
            return i;
        }
        u -= wi;
    }
    argmax()
}

/// The lowest logit [`sample_entries`] considers at `temperature`.
fn sample_floor(max: f64, temperature: f64) -> f32 {
    (max - 40.0 * temperature) as f32
}

/// What is kept of a next-token distribution once the whole of it is let go:
/// every token whose logit is within [`Summary::SPAN`] nats of the largest
/// (at least the [`Summary::MIN_TOKENS`] most likely, at most about
/// [`Summary::MAX_TOKENS`]), the normaliser, and the exact log-probability
/// of each digit. A few kilobytes instead of a megabyte, so the engine keeps
/// one for every prompt of a sweep: a logprob request for a prompt already
/// sampled in persona mode (or the other way round), or a prompt whose full
/// distribution was evicted, costs no forward pass. Sampling from it is exact
/// (the same token for the same seed) at temperatures up to `SPAN / 40`
/// (0.3), and its top tokens are the distribution's.
pub struct Summary {
    max: f32,
    log_z: f64,
    /// Every token with a logit at or above this is held.
    floor: f32,
    /// Ascending ids and their logits.
    ids: Vec<u32>,
    logits: Vec<f32>,
    /// log p of each digit 0-5, all tokenisations summed.
    pub digits: [f64; 6],
}

impl Summary {
    pub const SPAN: f32 = 12.0;
    pub const MIN_TOKENS: usize = 64;
    pub const MAX_TOKENS: usize = 4096;

    fn of(d: &Distribution, digits: [f64; 6]) -> Summary {
        let max = d.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut floor = max - Self::SPAN;
        let above = d.logits.iter().filter(|&&l| l >= floor).count();
        let nth_largest = |n: usize| {
            let mut v = d.logits.clone();
            let n = n.min(v.len()) - 1;
            *v.select_nth_unstable_by(n, |a, b| b.total_cmp(a)).1
        };
        if above < Self::MIN_TOKENS {
            floor = nth_largest(Self::MIN_TOKENS);
        } else if above > Self::MAX_TOKENS {
            floor = nth_largest(Self::MAX_TOKENS);
        }
        let (ids, logits) = d
            .logits
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l >= floor)
            .map(|(i, &l)| (i as u32, l))
            .unzip();
        Summary {
            max,
            log_z: d.log_z,
            floor,
            ids,
            logits,
            digits,
        }
    }

    /// Whether [`Summary::sample`] at `temperature` draws what the whole
    /// distribution would.
    pub fn covers(&self, temperature: f64) -> bool {
        temperature <= 0.0
            || !temperature.is_finite()
            || sample_floor(self.max as f64, temperature) >= self.floor
    }

    /// Draws a token at `temperature` (only where [`Summary::covers`] it).
    pub fn sample(&self, temperature: f64, rng: &mut impl Rng) -> u32 {
        sample_entries(
            || self.ids.iter().copied().zip(self.logits.iter().copied()),
            self.max,
            temperature,
            rng,
        )
    }

    /// log p(token), for a token it holds.
    pub fn logprob(&self, id: u32) -> Option<f64> {
        let i = self.ids.binary_search(&id).ok()?;
        Some(self.logits[i] as f64 - self.log_z)
    }

    /// The `k` most likely tokens, most likely first (the lowest id first
    /// among ties), as [`Distribution::top`] gives them; `None` when it holds
    /// fewer than `k` tokens.
    pub fn top(&self, k: usize) -> Option<Vec<(u32, f64)>> {
        if k > self.ids.len() {
            return None;
        }
        let mut idx: Vec<usize> = (0..self.ids.len()).collect();
        idx.sort_by(|&a, &b| {
            self.logits[b]
                .total_cmp(&self.logits[a])
                .then(self.ids[a].cmp(&self.ids[b]))
        });
        Some(
            idx.into_iter()
                .take(k)
                .map(|i| (self.ids[i], self.logits[i] as f64 - self.log_z))
                .collect(),
        )
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

struct State {
    /// Most recently used last.
    caches: VecDeque<KvCache>,
    dists: VecDeque<(Vec<u32>, Arc<Distribution>)>,
    /// The summary of every distribution computed, by prompt, with the
    /// use counter of its last use (the least recently used goes first).
    summaries: HashMap<Vec<u32>, (Arc<Summary>, u64)>,
    uses: u64,
    prompt_tokens: u64,
    computed_tokens: u64,
}

/// A loaded model with its tokenizer and caches; safe to share between
/// threads (computation is serialised: the matrix products use every core).
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    opts: EngineOptions,
    /// Whether the file carries a chat template (`tokenizer.chat_template`).
    pub has_chat_template: bool,
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
        let mut e = Self::new(model, tokenizer, opts);
        e.has_chat_template = f.metadata.contains_key("tokenizer.chat_template");
        Ok(e)
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
            has_chat_template: false,
            digit_tokens,
            stop_tokens,
            state: Mutex::new(State {
                caches: VecDeque::new(),
                dists: VecDeque::new(),
                summaries: HashMap::new(),
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
    pub fn prompt_tokens(&self, prompt: &str) -> Vec<u32> {
        self.frame(prompt, &self.opts.template)
    }

    /// The token sequence of a prompt framed by `template`.
    pub fn frame(&self, prompt: &str, template: &Template) -> Vec<u32> {
        let t = &self.tokenizer;
        match template {
            Template::Raw => t.encode(prompt, true),
            Template::Completion { cue } => t.encode(&format!("{prompt}{cue}"), true),
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
        self.distribution_counted(tokens, true)
    }

    /// [`Engine::distribution`]; `count`: add the prompt to the tokens asked
    /// for (not when the same request already counted it).
    fn distribution_counted(
        &self,
        tokens: &[u32],
        count: bool,
    ) -> Result<Arc<Distribution>, LocalError> {
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
        if count {
            st.prompt_tokens += tokens.len() as u64;
        }
        if let Some(d) = st.kept_distribution(tokens) {
            return Ok(d);
        }
        let (cache, hidden) = self.run_prefix(&mut st, tokens)?;
        let d = Arc::new(Distribution::new(self.model.logits(&hidden)));
        self.keep_cache(&mut st, cache);
        self.remember(&mut st, tokens, &d);
        Ok(d)
    }

    /// Keeps a prompt's KV cache for prefix reuse, within the count and byte
    /// limits (the least recently used go first).
    fn keep_cache(&self, st: &mut State, cache: KvCache) {
        push_lru(&mut st.caches, cache, self.opts.prefix_caches);
        let mut held: usize = st.caches.iter().map(KvCache::bytes).sum();
        while held > self.opts.cache_bytes && st.caches.len() > 1 {
            held -= st.caches.pop_front().map_or(0, |c| c.bytes());
        }
    }

    /// The keys and values of every position of `tokens`: a copy of a kept
    /// cache, or computed from the best kept prefix and then kept, so that
    /// the generations continuing one prompt (a cell's repetitions whose
    /// one-token attempts all failed) compute it once between them.
    fn prompt_cache(&self, tokens: &[u32]) -> Result<KvCache, LocalError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = st.caches.iter().find(|c| c.tokens == tokens) {
            return Ok(c.clone());
        }
        let (cache, _) = self.run_prefix(&mut st, tokens)?;
        self.keep_cache(&mut st, cache.clone());
        Ok(cache)
    }

    /// Keeps a computed distribution (and its summary) for `tokens`.
    fn remember(&self, st: &mut State, tokens: &[u32], d: &Arc<Distribution>) {
        push_lru(
            &mut st.dists,
            (tokens.to_vec(), d.clone()),
            self.opts.distributions,
        );
        if self.opts.summaries == 0 || st.summaries.contains_key(tokens) {
            return;
        }
        if st.summaries.len() >= self.opts.summaries {
            // Evict the least recently used eighth at once, so that a full
            // map costs one scan per many insertions.
            let mut stamps: Vec<u64> = st.summaries.values().map(|v| v.1).collect();
            let cut = (stamps.len() / 8).max(1);
            let line = *stamps.select_nth_unstable(cut - 1).1;
            st.summaries.retain(|_, v| v.1 > line);
        }
        st.uses += 1;
        let summary = Arc::new(Summary::of(d, self.digit_logprobs(d)));
        let stamp = st.uses;
        st.summaries.insert(tokens.to_vec(), (summary, stamp));
    }

    /// The summary of the distribution after `tokens`, if one is kept.
    fn cached_summary(&self, tokens: &[u32]) -> Option<Arc<Summary>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .kept_summary(tokens)
    }

    /// The summary of the distribution after `tokens`: kept from an earlier
    /// request for the same prompt, else computed.
    pub fn summary(&self, tokens: &[u32]) -> Result<Arc<Summary>, LocalError> {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = st.kept_summary(tokens) {
                st.prompt_tokens += tokens.len() as u64;
                return Ok(s);
            }
        }
        let d = self.distribution(tokens)?;
        Ok(match self.cached_summary(tokens) {
            Some(s) => s,
            // Not kept (summaries switched off, or the distribution came
            // from its own cache after the summary was evicted).
            None => Arc::new(Summary::of(&d, self.digit_logprobs(&d))),
        })
    }

    /// The next token after the prompt `tokens` at `temperature`, seeded,
    /// given the prompt's `summary`: drawn from it where that is exact, else
    /// from the whole distribution.
    pub fn draw(
        &self,
        tokens: &[u32],
        summary: &Summary,
        temperature: f64,
        seed: u64,
    ) -> Result<NextToken, LocalError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (id, logprob) = if summary.covers(temperature) {
            let id = summary.sample(temperature, &mut rng);
            (id, summary.logprob(id).unwrap_or(f64::NEG_INFINITY))
        } else {
            let d = self.distribution_counted(tokens, false)?;
            let id = d.sample(temperature, &mut rng);
            (id, d.logprob(id))
        };
        Ok(NextToken {
            id,
            text: self.tokenizer.token_text(id),
            logprob,
        })
    }

    /// One next token after the prompt `tokens` at `temperature`, seeded.
    pub fn sample_tokens(
        &self,
        tokens: &[u32],
        temperature: f64,
        seed: u64,
    ) -> Result<NextToken, LocalError> {
        let summary = self.summary(tokens)?;
        self.draw(tokens, &summary, temperature, seed)
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

    /// One next token of `prompt` at `temperature`, seeded.
    pub fn next_token(
        &self,
        prompt: &str,
        temperature: f64,
        seed: u64,
    ) -> Result<NextToken, LocalError> {
        self.sample_tokens(&self.prompt_tokens(prompt), temperature, seed)
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
            // A kept summary serves the step where it is exact.
            let id = match self.cached_summary(&seq).filter(|s| s.covers(temperature)) {
                Some(s) => s.sample(temperature, &mut rng),
                None => self
                    .step_distribution(&seq, tokens.len(), &mut cache)?
                    .sample(temperature, &mut rng),
            };
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

    /// The distribution after `seq`, a generation's prompt (its first
    /// `prompt_len` tokens) and what it generated so far: cached, or computed
    /// from the generation's own KV cache (which starts from the best cached
    /// prefix and then follows the generation).
    fn step_distribution(
        &self,
        seq: &[u32],
        prompt_len: usize,
        cache: &mut Option<KvCache>,
    ) -> Result<Arc<Distribution>, LocalError> {
        if seq.len() == prompt_len {
            return self.distribution(seq);
        }
        if let Some(d) = self.cached_distribution(seq) {
            return Ok(d);
        }
        let _step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = self.cached_distribution(seq) {
            return Ok(d);
        }
        let c = match cache.as_mut() {
            Some(c) => c,
            None => cache.insert(self.prompt_cache(&seq[..prompt_len])?),
        };
        let hidden = self.model.forward(&seq[c.len()..], c)?;
        let d = Arc::new(Distribution::new(self.model.logits(&hidden)));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.remember(&mut st, seq, &d);
        Ok(d)
    }

    /// A cached distribution, marked as recently used.
    fn cached_distribution(&self, tokens: &[u32]) -> Option<Arc<Distribution>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .kept_distribution(tokens)
    }
}

impl State {
    /// The kept distribution after `tokens`, marked as recently used.
    fn kept_distribution(&mut self, tokens: &[u32]) -> Option<Arc<Distribution>> {
        let pos = self.dists.iter().position(|(k, _)| k == tokens)?;
        let e = self.dists.remove(pos).expect("position is in range");
        let d = e.1.clone();
        self.dists.push_back(e);
        Some(d)
    }

    /// The kept summary after `tokens`, marked as recently used.
    fn kept_summary(&mut self, tokens: &[u32]) -> Option<Arc<Summary>> {
        self.uses += 1;
        let stamp = self.uses;
        let e = self.summaries.get_mut(tokens)?;
        e.1 = stamp;
        Some(e.0.clone())
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

    /// A vocabulary-sized distribution with a few likely tokens, ties, and a
    /// long tail, from a seed.
    fn synthetic(seed: u64, vocab: usize) -> Distribution {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut logits: Vec<f32> = (0..vocab)
            .map(|_| rng.random::<f32>() * 10.0 - 20.0)
            .collect();
        for k in 0..8 {
            let i = rng.random_range(0..vocab);
            logits[i] = 5.0 - k as f32 * 0.7;
        }
        // Two tokens tied at the top, and a tie straddling the summary's edge.
        logits[vocab / 2] = 5.0;
        logits[vocab / 3] = 5.0;
        Distribution::new(logits)
    }

    #[test]
    fn a_summary_draws_and_ranks_exactly_as_the_whole_distribution() {
        for seed in 0..4 {
            let d = synthetic(seed, 50_000);
            let s = Summary::of(&d, [0.0; 6]);
            assert!(s.len() >= Summary::MIN_TOKENS && s.len() < 50_000);
            for t in [0.0, 0.05, 0.1, 0.2, 0.3] {
                assert!(s.covers(t), "covers {t}");
                for draw in 0..300u64 {
                    let mut a = ChaCha8Rng::seed_from_u64(draw);
                    let mut b = ChaCha8Rng::seed_from_u64(draw);
                    assert_eq!(
                        s.sample(t, &mut a),
                        d.sample(t, &mut b),
                        "T {t}, draw {draw}"
                    );
                }
            }
            assert!(!s.covers(1.0), "T = 1 reaches below the kept tokens");
            for k in [1, 5, 20, 40, s.len()] {
                assert_eq!(s.top(k).unwrap(), d.top(k), "top {k}");
            }
            assert!(s.top(s.len() + 1).is_none());
            for (id, lp) in d.top(30) {
                assert_eq!(s.logprob(id), Some(lp));
            }
        }
    }

    #[test]
    fn a_summary_keeps_at_least_the_minimum_and_at_most_about_the_maximum() {
        // One dominant token: the 12-nat span holds one token, so the
        // summary keeps the 64 most likely.
        let mut logits = vec![-30.0f32; 10_000];
        logits[17] = 10.0;
        for (i, l) in logits.iter_mut().enumerate().skip(100).take(200) {
            *l = -20.0 + i as f32 * 0.001;
        }
        let d = Distribution::new(logits);
        let s = Summary::of(&d, [0.0; 6]);
        assert_eq!(s.len(), Summary::MIN_TOKENS);
        assert_eq!(s.top(1).unwrap()[0].0, 17);
        // A flat distribution: capped near the maximum.
        let d = Distribution::new((0..20_000).map(|i| (i % 997) as f32 * 1e-3).collect());
        let s = Summary::of(&d, [0.0; 6]);
        assert!(
            s.len() >= Summary::MAX_TOKENS && s.len() < Summary::MAX_TOKENS + 100,
            "{}",
            s.len()
        );
        assert!(s.covers(0.0));
    }
}
