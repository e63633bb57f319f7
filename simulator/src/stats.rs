//! What the simulator received, per model key, so that tests and benchmarks
//! can assert on it: requests per 1-second bucket (since the simulator
//! started), the largest 1-second and 60-second windows, answers, refusals
//! and injected faults, whether requests sent a `temperature`, and the W3C
//! `traceparent` headers they carried (the first [`TRACEPARENTS_KEPT`]);
//! the lines of provider batches each key answered and their tokens; and
//! the batches created per API (`batches`, see [`crate::batch::store`]:
//! `created`, `lines`, `cancelled`, `resubmitted`, and the list).
//! Served as JSON on `GET /_sim/stats`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::faults::Fault;

/// How many `traceparent` headers a key keeps (the count goes on).
pub const TRACEPARENTS_KEPT: usize = 1000;

/// Counters of one model key.
#[derive(Debug, Default, Clone, Serialize)]
pub struct KeyStats {
    /// Every request that reached the key (including refused ones).
    pub requests: u64,
    /// Requests admitted by the rate limits.
    pub admitted: u64,
    /// Requests refused with 429 by the rate limits.
    pub rate_limited: u64,
    /// Answers that carried a rating from the recorded data or the generator.
    pub rated: u64,
    /// Recorded ratings handed out (deal or sample).
    pub replayed: u64,
    /// Of those, deal-mode answers to a slot that had been dealt its card
    /// before (the same seed asking again): no new card left the deck.
    pub repeated: u64,
    /// Prompts whose cell had no recorded rating (answered by the generator).
    pub unmatched: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests received in each second since the simulator started.
    pub per_second: Vec<u64>,
    /// Requests admitted in each second since the simulator started.
    pub admitted_per_second: Vec<u64>,
    /// Free-form answers to the misalignment check's questions.
    pub em_answers: u64,
    /// Judge replies to the check's alignment and coherence prompts.
    pub em_judged: u64,
    /// Token-counting requests (`count_tokens`, `countTokens`).
    pub token_counts: u64,
    /// Requests that sent a `temperature` field.
    pub with_temperature: u64,
    /// Requests that sent none (sampled at the provider's default).
    pub without_temperature: u64,
    /// Requests that carried a `traceparent` header.
    pub traced: u64,
    /// The first [`TRACEPARENTS_KEPT`] `traceparent` headers received.
    pub traceparents: Vec<String>,
    /// Lines of provider batches answered (not counted in `requests`).
    pub batch_lines: u64,
    /// Input and output tokens of those lines (also in the totals above),
    /// billed at the providers' batch prices.
    pub batch_input_tokens: u64,
    pub batch_output_tokens: u64,
}

fn bump(v: &mut Vec<u64>, second: usize) {
    if v.len() <= second {
        v.resize(second + 1, 0);
    }
    v[second] += 1;
}

/// The largest sum of `width` consecutive buckets (all buckets if fewer).
pub fn max_window(per_second: &[u64], width: usize) -> u64 {
    if per_second.len() <= width {
        return per_second.iter().sum();
    }
    let mut sum: u64 = per_second[..width].iter().sum();
    let mut best = sum;
    for i in width..per_second.len() {
        sum = sum + per_second[i] - per_second[i - width];
        best = best.max(sum);
    }
    best
}

impl KeyStats {
    pub fn received(&mut self, at: Duration) {
        self.requests += 1;
        bump(&mut self.per_second, at.as_secs() as usize);
    }

    /// Notes whether a request sent a temperature, and its trace context.
    pub fn request_shape(&mut self, temperature: bool, traceparent: Option<&str>) {
        if temperature {
            self.with_temperature += 1;
        } else {
            self.without_temperature += 1;
        }
        if let Some(t) = traceparent {
            self.traced += 1;
            if self.traceparents.len() < TRACEPARENTS_KEPT {
                self.traceparents.push(t.to_string());
            }
        }
    }

    pub fn admitted(&mut self, at: Duration, input_tokens: u64) {
        self.admitted += 1;
        self.input_tokens += input_tokens;
        bump(&mut self.admitted_per_second, at.as_secs() as usize);
    }

    /// One line of a provider batch reached the engine.
    pub fn batch_line(&mut self, input_tokens: u64) {
        self.batch_lines += 1;
        self.batch_input_tokens += input_tokens;
        self.input_tokens += input_tokens;
    }

    pub fn fault(&mut self, f: Fault) {
        *self.faults.entry(f.name().to_string()).or_default() += 1;
    }
}

/// The stats document served on `GET /_sim/stats`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Seconds since the simulator started (the index of the current bucket).
    pub uptime_secs: f64,
    pub totals: Totals,
    pub keys: BTreeMap<String, KeyReport>,
    /// The provider batches created, per API (see [`crate::batch`]).
    pub batches: crate::batch::store::BatchReport,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub admitted: u64,
    pub rate_limited: u64,
    pub rated: u64,
    pub replayed: u64,
    pub repeated: u64,
    pub faults: u64,
    pub batch_lines: u64,
}

#[derive(Debug, Serialize)]
pub struct KeyReport {
    #[serde(flatten)]
    pub stats: KeyStats,
    /// Largest number of requests received in one second.
    pub max_1s: u64,
    /// Largest number of requests received in 60 consecutive seconds.
    pub max_60s: u64,
    /// The same over admitted requests.
    pub max_admitted_1s: u64,
    pub max_admitted_60s: u64,
}

impl Report {
    pub fn new(
        uptime: Duration,
        keys: &BTreeMap<String, KeyStats>,
        batches: crate::batch::store::BatchReport,
    ) -> Report {
        let mut totals = Totals::default();
        let mut out = BTreeMap::new();
        for (k, s) in keys {
            totals.requests += s.requests;
            totals.admitted += s.admitted;
            totals.rate_limited += s.rate_limited;
            totals.rated += s.rated;
            totals.replayed += s.replayed;
            totals.repeated += s.repeated;
            totals.faults += s.faults.values().sum::<u64>();
            totals.batch_lines += s.batch_lines;
            out.insert(
                k.clone(),
                KeyReport {
                    max_1s: max_window(&s.per_second, 1),
                    max_60s: max_window(&s.per_second, 60),
                    max_admitted_1s: max_window(&s.admitted_per_second, 1),
                    max_admitted_60s: max_window(&s.admitted_per_second, 60),
                    stats: s.clone(),
                },
            );
        }
        Report {
            uptime_secs: uptime.as_secs_f64(),
            totals,
            keys: out,
            batches,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let v = [1, 5, 2, 0, 7];
        assert_eq!(max_window(&v, 1), 7);
        assert_eq!(max_window(&v, 2), 7);
        assert_eq!(max_window(&v, 3), 9);
        assert_eq!(max_window(&v, 60), 15);
    }
}
