//! Drawing from the engine: one seeded next token (from a prompt's summary
//! where that is exact), and generations that share their steps' cached
//! distributions.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Distribution, Engine, Generation, NextToken, Summary};
use crate::LocalError;

impl Engine {
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
        let tokens = self.prompt_tokens(prompt)?;
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
        // a low temperature) compute it once; a step that is not cached
        // extends the KV cache the previous step left in the engine's caches.
        let mut seq = tokens.to_vec();
        loop {
            // A kept summary serves the step where it is exact.
            let id = match self.cached_summary(&seq).filter(|s| s.covers(temperature)) {
                Some(s) => s.sample(temperature, &mut rng),
                None => self
                    .step_distribution(&seq, tokens.len())?
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
    /// from a kept KV cache. The cache that ends one token short (the last
    /// step's, of this generation or of one that went the same way) is taken
    /// out of the engine's caches, extended by one position and put back, so
    /// a generation holds no cache of its own between its steps (with many
    /// fallback generations in flight, their private copies of the prompt's
    /// cache were hundreds of megabytes) and no step copies a cache.
    pub(super) fn step_distribution(
        &self,
        seq: &[u32],
        prompt_len: usize,
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
        let mut cache = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let last = &seq[..seq.len() - 1];
            match st.caches.iter().position(|c| c.tokens == last) {
                Some(i) => st.caches.remove(i).expect("position is in range"),
                None => {
                    let c = self.best_prefix(&st, seq);
                    // The prompt's own positions count as computed prompt
                    // tokens (the generated ones do not).
                    st.computed_tokens += prompt_len.saturating_sub(c.len()) as u64;
                    c
                }
            }
        };
        let hidden = self.model.forward(&seq[cache.len()..], &mut cache)?;
        let d = Arc::new(Distribution::new(self.model.logits(&hidden)));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.keep_cache(&mut st, cache);
        self.remember(&mut st, seq, &d, true);
        Ok(d)
    }
}
