//! What the workers' calls used and cost, reported to the coordinator so
//! that `results` can write the same Cost section as `run`.
//!
//! A worker process reports its *totals* per (sweep, model), each with a
//! version that grows with every change; the coordinator keeps the newest
//! total per worker process and sums them per model. A report repeated or
//! arriving late therefore changes nothing, and a restarted worker (a new
//! process) adds its own totals beside the old one's.

use moralsweep_proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// One model's usage in one sweep: a worker process's totals, or their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageEntry {
    pub sweep: String,
    pub model: String,
    /// Calls that returned an answer.
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// 429s received.
    pub rate_limited: u64,
    /// Retried failures (5xx, timeouts, dropped connections, bad bodies).
    pub retries: u64,
    /// USD at the spec's prices; `None` without prices.
    pub usd: Option<f64>,
    /// Grows with every change of the entry in its worker process.
    #[serde(default)]
    pub version: u64,
}

impl UsageEntry {
    /// Adds `o`'s counts and cost (a sum's version means nothing: 0). A
    /// cost that would overflow is left out rather than shown as `inf`.
    pub fn add(&mut self, o: &UsageEntry) {
        self.requests = self.requests.saturating_add(o.requests);
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.rate_limited = self.rate_limited.saturating_add(o.rate_limited);
        self.retries = self.retries.saturating_add(o.retries);
        self.usd = match (self.usd, o.usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)).filter(|x| x.is_finite()),
        };
        self.version = 0;
    }

    /// Why the coordinator should not keep this entry, if it should not: a
    /// cost that is not a finite number of dollars, a model it does not know.
    pub fn problem(&self) -> Option<String> {
        if self.usd.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Some(format!(
                "model {:?}: cost {:?} is not a finite amount of USD",
                self.model, self.usd
            ));
        }
        None
    }
}

/// Sums entries per model, in model order.
pub fn totals<'a>(entries: impl IntoIterator<Item = &'a UsageEntry>) -> Vec<UsageEntry> {
    let mut by: std::collections::BTreeMap<&str, UsageEntry> = Default::default();
    for e in entries {
        by.entry(e.model.as_str())
            .or_insert_with(|| UsageEntry {
                sweep: e.sweep.clone(),
                model: e.model.clone(),
                ..UsageEntry::default()
            })
            .add(e);
    }
    by.into_values().collect()
}

pub fn to_pb(e: &UsageEntry) -> pb::ModelUsage {
    pb::ModelUsage {
        sweep: e.sweep.clone(),
        model: e.model.clone(),
        requests: e.requests,
        input_tokens: e.input_tokens,
        output_tokens: e.output_tokens,
        rate_limited: e.rate_limited,
        retries: e.retries,
        usd: e.usd.unwrap_or(0.0),
        priced: e.usd.is_some(),
        version: e.version,
    }
}

pub fn from_pb(m: pb::ModelUsage) -> UsageEntry {
    UsageEntry {
        usd: m.priced.then_some(m.usd),
        sweep: m.sweep,
        model: m.model,
        requests: m.requests,
        input_tokens: m.input_tokens,
        output_tokens: m.output_tokens,
        rate_limited: m.rate_limited,
        retries: m.retries,
        version: m.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(model: &str, requests: u64, usd: Option<f64>) -> UsageEntry {
        UsageEntry {
            sweep: "s".into(),
            model: model.into(),
            requests,
            input_tokens: requests * 10,
            usd,
            version: 3,
            ..UsageEntry::default()
        }
    }

    #[test]
    fn totals_sum_per_model_and_keep_unpriced_apart() {
        let t = totals(&[
            e("b", 2, None),
            e("a", 1, Some(0.5)),
            e("a", 4, Some(0.25)),
            e("b", 3, None),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].model.as_str(), t[0].requests), ("a", 5));
        assert_eq!(t[0].input_tokens, 50);
        assert_eq!(t[0].usd, Some(0.75));
        assert_eq!(
            (t[1].model.as_str(), t[1].requests, t[1].usd),
            ("b", 5, None)
        );
    }

    #[test]
    fn a_sum_that_would_overflow_leaves_the_cost_out() {
        let t = totals(&[e("a", 1, Some(f64::MAX)), e("a", 1, Some(f64::MAX))]);
        assert_eq!(t[0].usd, None);
        assert!(e("a", 1, Some(f64::INFINITY)).problem().is_some());
        assert!(e("a", 1, Some(-1.0)).problem().is_some());
        assert!(e("a", 1, Some(1.0)).problem().is_none());
    }

    #[test]
    fn the_wire_keeps_every_field() {
        for u in [e("m", 7, Some(1.5)), e("m", 0, None)] {
            assert_eq!(from_pb(to_pb(&u)), u);
        }
    }
}
