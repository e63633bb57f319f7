//! Money: the accounting of what each model really used (requests, the
//! tokens the provider reported, cost at the spec's prices), and the dry run
//! that prices a whole sweep before anything is spent: requests, tokens,
//! cost, and the time the rate limits allow. Tokens are counted by
//! `moralsweep_common::tokens` (the model's own tokenizer where known, the
//! documented estimate otherwise); [`dry_run_counted`] asks the providers'
//! counting endpoints for the models whose spec allows it.

use std::collections::BTreeMap;

mod accounting;
mod dry_run;

pub use accounting::{Accounting, ModelUsage};

use dry_run::fmt_cost;
pub use dry_run::{
    dry_run, dry_run_counted, dry_run_for, ChoiceEstimate, DryRun, GroupEstimate, ModelEstimate,
    BATCH_WINDOW_MINUTES,
};

use moralsweep_common::ModelSpec;
use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Usage;

    #[test]
    fn accounting() {
        let acc = Accounting::new();
        let spec: ModelSpec = serde_json::from_value(serde_json::json!({
            "key": "m", "provider": "sim", "model": "m",
            "input_price_per_mtok": 1.0, "output_price_per_mtok": 4.0
        }))
        .unwrap();
        acc.register("s", &spec);
        acc.record(
            "s",
            "m",
            Usage {
                input_tokens: 1_000_000,
                output_tokens: 500_000,
            },
        );
        acc.rate_limited("s", "m");
        let s = acc.snapshot();
        assert_eq!(s["m"].requests, 1);
        assert_eq!(s["m"].rate_limited, 1);
        assert!((s["m"].cost_usd.unwrap() - 3.0).abs() < 1e-12);
        let t = usage_table(&s);
        assert!(t.contains("$3.00") && t.contains("1000000"), "{t}");
    }
}
