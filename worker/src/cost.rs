//! Money: the accounting of what each model really used (requests, the
//! tokens the provider reported, cost at the spec's prices), and the dry run
//! that prices a whole sweep before anything is spent: requests, tokens,
//! cost, and the time the rate limits allow. Tokens are counted by
//! `moralsweep_common::tokens` (the model's own tokenizer where known, the
//! documented estimate otherwise); [`dry_run_counted`] asks the providers'
//! counting endpoints for the models whose spec allows it.

use std::collections::BTreeMap;
use std::sync::Mutex;

mod dry_run;

pub use dry_run::{
    dry_run, dry_run_counted, dry_run_for, ChoiceEstimate, DryRun, GroupEstimate, ModelEstimate,
    BATCH_WINDOW_MINUTES,
};
use dry_run::fmt_cost;

use moralsweep_common::ModelSpec;
use serde::Serialize;

use crate::providers::Usage;

/// A model's prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Prices {
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
}

impl Prices {
    /// A model's interactive prices: its spec's, else its catalog entry's.
    pub fn of(spec: &ModelSpec) -> Prices {
        let p = spec.profile();
        Prices {
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
        }
    }

    /// A model's batch API prices: its spec's, else its catalog entry's.
    pub fn batch_of(spec: &ModelSpec) -> Prices {
        let p = spec.profile();
        Prices {
            input_per_mtok: p.batch_input_per_mtok,
            output_per_mtok: p.batch_output_per_mtok,
        }
    }

    /// The cost of some tokens; `None` when no price is configured.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        if self.input_per_mtok.is_none() && self.output_per_mtok.is_none() {
            return None;
        }
        Some(
            input_tokens as f64 * self.input_per_mtok.unwrap_or(0.0) / 1e6
                + output_tokens as f64 * self.output_per_mtok.unwrap_or(0.0) / 1e6,
        )
    }
}

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

/// Usage and cost of every model of a process.
#[derive(Debug, Default)]
pub struct Accounting {
    models: Mutex<BTreeMap<String, Priced>>,
}

/// One model's prices and usage; the tokens of its batch requests are
/// also kept apart, since they are billed at the batch prices.
#[derive(Debug, Default)]
struct Priced {
    prices: Prices,
    batch_prices: Prices,
    usage: ModelUsage,
    batch_input_tokens: u64,
    batch_output_tokens: u64,
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

    /// Sets a model's prices (usage recorded before is kept).
    pub fn register(&self, spec: &ModelSpec) {
        let mut m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(spec.key.clone()).or_default();
        e.prices = Prices::of(spec);
        e.batch_prices = Prices::batch_of(spec);
        e.usage.cost_usd = e.cost();
    }

    fn with(&self, key: &str, f: impl FnOnce(&mut Priced)) {
        let mut m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(key.to_string()).or_default());
    }

    /// One answered call.
    pub fn record(&self, key: &str, usage: Usage) {
        self.with(key, |p| {
            p.usage.requests += 1;
            p.usage.input_tokens += usage.input_tokens;
            p.usage.output_tokens += usage.output_tokens;
            p.usage.cost_usd = p.cost();
        });
    }

    /// One answered request of a provider batch (billed at the batch prices).
    pub fn record_batch(&self, key: &str, usage: Usage) {
        self.with(key, |p| {
            p.usage.requests += 1;
            p.usage.input_tokens += usage.input_tokens;
            p.usage.output_tokens += usage.output_tokens;
            p.batch_input_tokens += usage.input_tokens;
            p.batch_output_tokens += usage.output_tokens;
            p.usage.cost_usd = p.cost();
        });
    }

    pub fn rate_limited(&self, key: &str) {
        self.with(key, |p| p.usage.rate_limited += 1);
    }

    pub fn retried(&self, key: &str) {
        self.with(key, |p| p.usage.retried_errors += 1);
    }

    /// Usage per model key.
    pub fn snapshot(&self) -> BTreeMap<String, ModelUsage> {
        let m = self.models.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .map(|(k, p)| (k.clone(), p.usage.clone()))
            .collect()
    }
}

/// A table of usage per model, for the end of a run.
pub fn usage_table(usage: &BTreeMap<String, ModelUsage>) -> String {
    let mut s = format!(
        "{:<28} {:>10} {:>6} {:>8} {:>14} {:>10} {:>10}\n",
        "model", "requests", "429s", "retried", "input tokens", "output", "cost"
    );
    for (k, u) in usage {
        s.push_str(&format!(
            "{:<28} {:>10} {:>6} {:>8} {:>14} {:>10} {:>10}\n",
            k,
            u.requests,
            u.rate_limited,
            u.retried_errors,
            u.input_tokens,
            u.output_tokens,
            fmt_cost(u.cost_usd)
        ));
    }
    s
}
