//! The engine's caches: the KV caches of recent prompts (for prefix reuse),
//! their next-token distributions, and the summary of every distribution
//! computed; and computing a distribution through them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{Distribution, Engine, Summary};
use crate::model::KvCache;
use crate::LocalError;

pub(super) struct State {
    /// Most recently used last.
    pub(super) caches: VecDeque<KvCache>,
    pub(super) dists: VecDeque<(Vec<u32>, Arc<Distribution>)>,
    /// The summary of every distribution computed, by prompt, with the
    /// use counter of its last use (the least recently used goes first).
    pub(super) summaries: HashMap<Vec<u32>, (Arc<Summary>, u64)>,
    /// The same for the steps of generations (a prompt and what was
    /// generated after it), kept apart and fewer: a step's summary serves
    /// the generations in flight that go the same way, not a later mode of
    /// the sweep, and each is up to 32 KB (a fallback generation of a base
    /// model meets flat distributions), so 8192 of them held 250 MB.
    pub(super) step_summaries: HashMap<Vec<u32>, (Arc<Summary>, u64)>,
    pub(super) uses: u64,
    pub(super) prompt_tokens: u64,
    pub(super) computed_tokens: u64,
}

impl Engine {
    /// The next-token distribution after `tokens`.
    pub fn distribution(&self, tokens: &[u32]) -> Result<Arc<Distribution>, LocalError> {
        self.distribution_counted(tokens, true)
    }

    /// [`Engine::distribution`]; `count`: add the prompt to the tokens asked
    /// for (not when the same request already counted it).
    pub(super) fn distribution_counted(
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
        self.remember(&mut st, tokens, &d, false);
        Ok(d)
    }

    /// Keeps a prompt's KV cache for prefix reuse, within the count and byte
    /// limits (the least recently used go first).
    pub(super) fn keep_cache(&self, st: &mut State, cache: KvCache) {
        push_lru(&mut st.caches, cache, self.opts.prefix_caches);
        let mut held: usize = st.caches.iter().map(KvCache::bytes).sum();
        while held > self.opts.cache_bytes && st.caches.len() > 1 {
            held -= st.caches.pop_front().map_or(0, |c| c.bytes());
        }
    }

    /// Keeps a computed distribution (and its summary) for `tokens`, a
    /// prompt or (`step`) a generation's step.
    pub(super) fn remember(
        &self,
        st: &mut State,
        tokens: &[u32],
        d: &Arc<Distribution>,
        step: bool,
    ) {
        push_lru(
            &mut st.dists,
            (tokens.to_vec(), d.clone()),
            self.opts.distributions,
        );
        let cap = if step {
            self.opts.summaries.div_ceil(16)
        } else {
            self.opts.summaries
        };
        st.uses += 1;
        let stamp = st.uses;
        let map = if step {
            &mut st.step_summaries
        } else {
            &mut st.summaries
        };
        if cap == 0 || map.contains_key(tokens) {
            return;
        }
        if map.len() >= cap {
            // Evict the least recently used eighth at once, so that a full
            // map costs one scan per many insertions.
            let mut stamps: Vec<u64> = map.values().map(|v| v.1).collect();
            let cut = (stamps.len() / 8).max(1);
            let line = *stamps.select_nth_unstable(cut - 1).1;
            map.retain(|_, v| v.1 > line);
        }
        let summary = Arc::new(Summary::of(d, self.digit_logprobs(d)));
        map.insert(tokens.to_vec(), (summary, stamp));
    }

    /// The summary of the distribution after `tokens`, if one is kept.
    pub(super) fn cached_summary(&self, tokens: &[u32]) -> Option<Arc<Summary>> {
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

    /// Computes `tokens` starting from the cached prefix that shares most of
    /// them; returns the new cache and the last hidden state.
    pub(super) fn run_prefix(
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
    pub(super) fn best_prefix(&self, st: &State, tokens: &[u32]) -> KvCache {
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

    /// A cached distribution, marked as recently used.
    pub(super) fn cached_distribution(&self, tokens: &[u32]) -> Option<Arc<Distribution>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .kept_distribution(tokens)
    }
}

impl State {
    /// The kept distribution after `tokens`, marked as recently used.
    pub(super) fn kept_distribution(&mut self, tokens: &[u32]) -> Option<Arc<Distribution>> {
        let pos = self.dists.iter().position(|(k, _)| k == tokens)?;
        let e = self.dists.remove(pos).expect("position is in range");
        let d = e.1.clone();
        self.dists.push_back(e);
        Some(d)
    }

    /// The kept summary after `tokens`, marked as recently used.
    pub(super) fn kept_summary(&mut self, tokens: &[u32]) -> Option<Arc<Summary>> {
        self.uses += 1;
        let stamp = self.uses;
        let e = match self.summaries.get_mut(tokens) {
            Some(e) => e,
            None => self.step_summaries.get_mut(tokens)?,
        };
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
