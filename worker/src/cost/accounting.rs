//! What each model really used, per sweep: requests, the tokens the
//! provider reported, 429s, retries and the cost at the spec's prices.
//! `run` prints and records it; a cluster worker reports it to the
//! coordinator with its slot reports ([`Accounting::unreported`]), so that
//! `results` writes the same Cost section as `run`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use moralsweep_common::ModelSpec;
use moralsweep_protocol::UsageEntry;
use serde::Serialize;

use super::Prices;
use crate::providers::Usage;

/// What one model used so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelUsage {
    /// Calls that returned an answer.
    pub requests: u64,
    /// 429s received.
    pub rate_limited: u64,
    /// Retryable failures (5xx, timeouts, dropped connections, bad bodies).
    pub retried_errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the spec's prices; `None` without prices.
    pub cost_usd: Option<f64>,
}

/// Usage and cost of every model of a process, per sweep.
#[derive(Debug, Default)]
pub struct Accounting {
    models: Mutex<BTreeMap<(String, String), Priced>>,
}

/// One model's prices and usage in one sweep; the tokens of its batch
/// requests are also kept apart, since they are billed at the batch prices.
#[derive(Debug, Default)]
struct Priced {
    prices: Prices,
    batch_prices: Prices,
    usage: ModelUsage,
    batch_input_tokens: u64,
    batch_output_tokens: u64,
    /// Grows with every change (see `moralsweep_protocol::usage`).
    version: u64,
    /// The version the coordinator acknowledged last.
    reported: u64,
}

impl Priced {
    fn cost(&self) -> Option<f64> {
        let u = &self.usage;
        let interactive = self.prices.cost(
            u.input_tokens - self.batch_input_tokens,
            u.output_tokens - self.batch_output_tokens,
        );
        let batch = self
            .batch_prices
            .cost(self.batch_input_tokens, self.batch_output_tokens);
        match (interactive, batch) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        }
    }
}

impl Accounting {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a model's prices in `sweep` (usage recorded before is kept).
    pub fn register(&self, sweep: &str, spec: &ModelSpec) {
        self.with(sweep, &spec.key, |e| {
            e.prices = Prices::of(spec);
            e.batch_prices = Prices::batch_of(spec);
        });
    }

    fn with(&self, sweep: &str, key: &str, f: impl FnOnce(&mut Priced)) {
        let mut m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry((sweep.to_string(), key.to_string())).or_default();
        f(&mut *e);
        e.usage.cost_usd = e.cost();
        e.version += 1;
    }

    /// One answered call.
    pub fn record(&self, sweep: &str, key: &str, usage: Usage) {
        self.with(sweep, key, |p| {
            p.usage.requests += 1;
            p.usage.input_tokens += usage.input_tokens;
            p.usage.output_tokens += usage.output_tokens;
        });
    }

    /// One answered request of a provider batch (billed at the batch prices).
    pub fn record_batch(&self, sweep: &str, key: &str, usage: Usage) {
        self.with(sweep, key, |p| {
            p.usage.requests += 1;
            p.usage.input_tokens += usage.input_tokens;
            p.usage.output_tokens += usage.output_tokens;
            p.batch_input_tokens += usage.input_tokens;
            p.batch_output_tokens += usage.output_tokens;
        });
    }

    pub fn rate_limited(&self, sweep: &str, key: &str) {
        self.with(sweep, key, |p| p.usage.rate_limited += 1);
    }

    pub fn retried(&self, sweep: &str, key: &str) {
        self.with(sweep, key, |p| p.usage.retried_errors += 1);
    }

    /// Usage per model key, summed over the sweeps.
    pub fn snapshot(&self) -> BTreeMap<String, ModelUsage> {
        let m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, ModelUsage> = BTreeMap::new();
        for ((_, key), p) in m.iter() {
            let u = out.entry(key.clone()).or_default();
            let c = &p.usage;
            u.requests += c.requests;
            u.rate_limited += c.rate_limited;
            u.retried_errors += c.retried_errors;
            u.input_tokens += c.input_tokens;
            u.output_tokens += c.output_tokens;
            u.cost_usd = match (u.cost_usd, c.cost_usd) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            };
        }
        out
    }

    /// The totals of every (sweep, model) that changed since the
    /// coordinator last acknowledged it ([`Accounting::reported`]).
    pub fn unreported(&self) -> Vec<UsageEntry> {
        let m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|(_, p)| p.version > p.reported)
            .map(|((sweep, model), p)| UsageEntry {
                sweep: sweep.clone(),
                model: model.clone(),
                requests: p.usage.requests,
                input_tokens: p.usage.input_tokens,
                output_tokens: p.usage.output_tokens,
                rate_limited: p.usage.rate_limited,
                retries: p.usage.retried_errors,
                usd: p.usage.cost_usd,
                version: p.version,
            })
            .collect()
    }

    /// The coordinator acknowledged these entries (as [`Accounting::unreported`] gave them).
    pub fn reported(&self, sent: &[UsageEntry]) {
        let mut m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        for e in sent {
            if let Some(p) = m.get_mut(&(e.sweep.clone(), e.model.clone())) {
                p.reported = p.reported.max(e.version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreported_entries_are_the_changed_ones_as_totals() {
        let acc = Accounting::new();
        let u = Usage {
            input_tokens: 10,
            output_tokens: 1,
        };
        acc.record("s", "a", u);
        acc.record("t", "a", u);
        let first = acc.unreported();
        assert_eq!(first.len(), 2);
        acc.reported(&first);
        assert!(acc.unreported().is_empty());
        acc.record("s", "a", u);
        acc.retried("s", "a");
        let second = acc.unreported();
        assert_eq!(second.len(), 1);
        let e = &second[0];
        assert_eq!(
            (e.sweep.as_str(), e.requests, e.input_tokens, e.retries),
            ("s", 2, 20, 1)
        );
        assert!(e.version > first[0].version.min(first[1].version));
        // A late acknowledgement of an older version keeps the newer one unreported.
        acc.reported(&first);
        assert_eq!(acc.unreported().len(), 1);
        // The snapshot sums the sweeps per model.
        assert_eq!(acc.snapshot()["a"].requests, 3);
    }
}
