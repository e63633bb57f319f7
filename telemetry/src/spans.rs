//! The spans of a sweep, with one set of field names for every role, so
//! that a trace reads the same whether it came from `run`, the coordinator
//! or a worker:
//!
//! | span | fields |
//! | --- | --- |
//! | `sweep` | `sweep`, `models`, `slots` |
//! | `model` | `sweep`, `model.key`, `provider`, `rate_group`, `mode`, `lease.slots` |
//! | `lease` | `worker`, `lease.slots`, `lease.reclaims`, `sweep` |
//! | `report` (coordinator) | `worker`, `results`, `released` |
//! | `reclaim` | `lease.reclaims` |
//! | `provider_call` | `sweep`, `model.key`, `provider`, `rate_group`, `http.status`, `latency_ms`, `tokens.input`, `tokens.output`, `retries`, `outcome` |
//!
//! A lease is one trace (see [`crate::propagation`]): the coordinator's
//! `lease` span is the parent of the worker's, which holds the `model` spans
//! and their `provider_call`s; the coordinator's `report` span is a child of
//! the reported slots' `model` span.
//!
//! Fields that are only known later are declared empty here and filled with
//! the `record_*` helpers. None of them may hold a secret (and [`crate::redact`]
//! catches one that slips in anyway).
//!
//! [`CallTimer`] ties a provider call's span to its metrics: one call to
//! [`CallTimer::finish`] records the status, latency, tokens and retries on
//! the span and counts them in the [`Metrics`] it was started with.

use std::time::{Duration, Instant};

use crate::metrics::Metrics;

use tracing::field::Empty;
use tracing::Span;

/// The span of a whole sweep (in the process that drives it).
pub fn sweep_span(sweep: &str) -> Span {
    tracing::info_span!("sweep", sweep = %sweep, models = Empty, slots = Empty)
}

/// The span of one model of a sweep.
pub fn model_span(sweep: &str, model_key: &str, provider: &str, rate_group: &str) -> Span {
    tracing::info_span!(
        "model",
        sweep = %sweep,
        model.key = %model_key,
        provider = %provider,
        rate_group = %rate_group,
        mode = Empty,
        lease.slots = Empty,
    )
}

/// The span of one lease call (worker side: asking; coordinator side:
/// granting). `lease.slots` and `lease.reclaims` are filled when known.
pub fn lease_span(worker: &str) -> Span {
    tracing::info_span!(
        "lease",
        worker = %worker,
        lease.slots = Empty,
        lease.reclaims = Empty,
        sweep = Empty,
    )
}

/// Records how many slots a lease call handed out.
pub fn record_lease(span: &Span, slots: u64) {
    span.record("lease.slots", slots);
}

/// The span of a reclaim pass (expired leases going back to the queue).
pub fn reclaim_span() -> Span {
    tracing::info_span!("reclaim", lease.reclaims = Empty)
}

/// Records a reclaim pass's count on its span and in `metrics`.
pub fn record_reclaims(span: &Span, n: u64, metrics: &Metrics) {
    span.record("lease.reclaims", n);
    if n > 0 {
        metrics.lease_reclaimed(n);
    }
}

/// The span of one logical provider request (its retries included).
pub fn provider_call_span(sweep: &str, model_key: &str, provider: &str, rate_group: &str) -> Span {
    tracing::info_span!(
        "provider_call",
        sweep = %sweep,
        model.key = %model_key,
        provider = %provider,
        rate_group = %rate_group,
        http.status = Empty,
        latency_ms = Empty,
        tokens.input = Empty,
        tokens.output = Empty,
        retries = Empty,
        outcome = Empty,
    )
}

/// Records the HTTP status of the current provider call (call from the
/// place that sees the response; a no-op outside a `provider_call` span).
pub fn record_http_status(status: u16) {
    Span::current().record("http.status", status);
}

/// How a provider call ended, for the span and the metrics' `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// An answer (HTTP 200).
    Ok,
    /// 429.
    RateLimited,
    /// 5xx, timeout, dropped connection, unparsable body.
    Retryable,
    /// An error a retry cannot fix (4xx other than 429).
    Fatal,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::RateLimited => "rate_limited",
            CallOutcome::Retryable => "retryable",
            CallOutcome::Fatal => "fatal",
        }
    }

    /// The metrics' `status` label when no HTTP status is known.
    fn status_label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "200",
            CallOutcome::RateLimited => "429",
            CallOutcome::Retryable => "retryable",
            CallOutcome::Fatal => "fatal",
        }
    }
}

/// Times one provider request attempt and records it on finish.
#[derive(Debug)]
pub struct CallTimer {
    started: Instant,
    model_key: String,
    rate_group: String,
    metrics: Metrics,
}

impl CallTimer {
    /// Starts timing an attempt, to be counted in `metrics`.
    pub fn start(metrics: &Metrics, model_key: &str, rate_group: &str) -> Self {
        CallTimer {
            started: Instant::now(),
            model_key: model_key.to_string(),
            rate_group: rate_group.to_string(),
            metrics: metrics.clone(),
        }
    }

    /// The metrics the attempt is counted in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The rate group the attempt counts under.
    pub fn rate_group(&self) -> &str {
        &self.rate_group
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records one finished attempt: counts it in the metrics (request by
    /// status, latency, tokens) and writes the fields of `span` (normally
    /// the `provider_call` span; the last attempt's values win).
    pub fn finish(
        self,
        span: &Span,
        outcome: CallOutcome,
        http_status: Option<u16>,
        tokens: Option<(u64, u64)>,
        retries: u32,
    ) {
        let latency = self.started.elapsed();
        let m = &self.metrics;
        match http_status {
            Some(s) => m.request_status(&self.rate_group, s, latency),
            None => m.request(&self.rate_group, outcome.status_label(), latency),
        }
        if let Some((input, output)) = tokens {
            m.tokens(&self.model_key, input, output);
            span.record("tokens.input", input);
            span.record("tokens.output", output);
        }
        if let Some(s) = http_status.or(match outcome {
            CallOutcome::Ok => Some(200),
            CallOutcome::RateLimited => Some(429),
            _ => None,
        }) {
            span.record("http.status", s);
        }
        span.record("latency_ms", latency.as_millis() as u64);
        span.record("retries", retries);
        span.record("outcome", outcome.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn call_timer_fills_the_span_and_counts_the_request() {
        let sink = Sink::default();
        let s2 = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(move || s2.clone())
            .finish();
        let metrics = Metrics::new("worker");
        tracing::subscriber::with_default(subscriber, || {
            let span = provider_call_span("sw-span", "m-span", "sim", "g-span");
            let t = CallTimer::start(&metrics, "m-span", "g-span");
            t.finish(&span, CallOutcome::Ok, None, Some((40, 1)), 2);
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for want in [
            "\"http.status\":200",
            "\"tokens.input\":40",
            "\"tokens.output\":1",
            "\"retries\":2",
            "\"outcome\":\"ok\"",
            "\"model.key\":\"m-span\"",
        ] {
            assert!(out.contains(want), "{want} missing in {out}");
        }
        let text = metrics.encode();
        assert!(text.contains(
            "moralsweep_provider_requests_total{rate_group=\"g-span\",status=\"200\"} 1"
        ));
        assert!(text.contains("moralsweep_tokens_total{model=\"m-span\",direction=\"input\"} 40"));
    }
}
