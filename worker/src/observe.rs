//! The worker's side of observability:
//!
//! - [`Traced`] puts every logical provider request (retries included) in a
//!   `provider_call` span carrying the sweep, model key, provider and rate
//!   group; each attempt inside it ([`attempt`], called by the paced
//!   provider) fills in the HTTP status, latency, tokens and retries and
//!   counts the request in the metrics;
//! - [`grant_span`] is the `model` span of the slots of one grant (one model
//!   of one sweep), the parent of their provider calls;
//! - [`start`] serves the ops endpoints; a worker is ready until it is told
//!   to stop (then it drains and should get no new traffic or pods' budget).
//!
//! No span field ever holds a prompt, a key or a header.

use async_trait::async_trait;
use moralsweep_common::ModelSpec;
use moralsweep_protocol::Grant;
use moralsweep_telemetry::metrics::Metrics;
use moralsweep_telemetry::ops::OpsServer;
use moralsweep_telemetry::spans::{self, CallOutcome, CallTimer};
use moralsweep_telemetry::TelemetryError;
use tracing::Instrument;

use crate::providers::{Completion, CompletionRequest, Provider, ProviderError};

/// A provider whose requests each get a `provider_call` span.
pub struct Traced<'a> {
    inner: &'a dyn Provider,
    sweep: &'a str,
    model: &'a ModelSpec,
    /// Where the calls' cost is counted.
    metrics: &'a Metrics,
}

impl<'a> Traced<'a> {
    pub fn new(
        inner: &'a dyn Provider,
        sweep: &'a str,
        model: &'a ModelSpec,
        metrics: &'a Metrics,
    ) -> Self {
        Traced {
            inner,
            sweep,
            model,
            metrics,
        }
    }
}

#[async_trait]
impl Provider for Traced<'_> {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let span = spans::provider_call_span(
            self.sweep,
            &self.model.key,
            self.model.provider.name(),
            self.model.rate_group(),
        );
        let result = self.inner.complete(req).instrument(span).await;
        if let Ok(c) = &result {
            let prices = crate::cost::Prices::of(self.model);
            if let Some(usd) = prices.cost(c.usage.input_tokens, c.usage.output_tokens) {
                self.metrics.cost(&self.model.key, usd);
            }
        }
        result
    }

    async fn complete_n(
        &self,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        let span = spans::provider_call_span(
            self.sweep,
            &self.model.key,
            self.model.provider.name(),
            self.model.rate_group(),
        );
        let result = self.inner.complete_n(req, n).instrument(span).await;
        if let Ok(c) = &result {
            let u = crate::providers::usage_of_all(c);
            let prices = crate::cost::Prices::of(self.model);
            if let Some(usd) = prices.cost(u.input_tokens, u.output_tokens) {
                self.metrics.cost(&self.model.key, usd);
            }
        }
        result
    }
}

/// Records one attempt of a provider request: on the current span (the
/// `provider_call` of [`Traced`]) and in the metrics. `retries` counts the
/// attempts before this one.
pub fn attempt(timer: CallTimer, result: &Result<Completion, ProviderError>, retries: u32) {
    let (outcome, tokens) = match result {
        Ok(c) => (
            CallOutcome::Ok,
            Some((c.usage.input_tokens, c.usage.output_tokens)),
        ),
        Err(ProviderError::RateLimited { .. }) => (CallOutcome::RateLimited, None),
        Err(ProviderError::Retryable(_) | ProviderError::Unreachable(_)) => {
            (CallOutcome::Retryable, None)
        }
        Err(ProviderError::Fatal(_)) => (CallOutcome::Fatal, None),
    };
    if retries > 0 {
        // Counted once per retried attempt, under its rate group.
        timer.metrics().retry(timer.rate_group());
    }
    timer.finish(&tracing::Span::current(), outcome, None, tokens, retries);
}

/// The `model` span of one grant: the slots of one model of one sweep
/// handed out in one lease.
pub fn grant_span(g: &Grant, model: Option<&ModelSpec>) -> tracing::Span {
    let span = spans::model_span(
        &g.lease.unit.sweep,
        &g.lease.unit.model,
        model.map(|m| m.provider.name()).unwrap_or(""),
        &g.rate_group,
    );
    span.record("mode", g.lease.unit.mode.name());
    span.record("lease.slots", g.lease.slots.len() as u64);
    span
}

/// Counts the slots of a grant as in flight.
pub fn grant_started(metrics: &Metrics, g: &Grant) {
    metrics.add_in_flight(
        &g.lease.unit.sweep,
        &g.lease.unit.model,
        g.lease.slots.len() as i64,
    );
}

/// One slot of a grant is over: answered (`Some(true)`), failed
/// (`Some(false)`) or handed back unasked (`None`).
pub fn slot_finished(m: &Metrics, sweep: &str, model: &str, answered: Option<bool>) {
    m.add_in_flight(sweep, model, -1);
    match answered {
        Some(true) => m.slot_done(sweep, model),
        Some(false) => m.slot_failed(sweep, model),
        None => {}
    }
}

/// Serves the ops endpoints at `ops_listen` (if given) until the runtime
/// stops, with `metrics` at `/metrics`; ready while `stop` is false. The
/// coordinator's rules apply (`moralsweep_telemetry::access`): with `token`
/// (the cluster's shared token), `/metrics` answers only to it, since it
/// names every sweep and model the worker serves; without one, only
/// requests for localhost, an IP address or the listen address are
/// answered, and a public address is warned about.
pub async fn start(
    ops_listen: Option<&str>,
    metrics: Metrics,
    token: Option<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<OpsServer>, TelemetryError> {
    let Some(addr) = ops_listen else {
        return Ok(None);
    };
    let server = moralsweep_telemetry::spawn_ops_guarded(
        addr,
        metrics,
        move || {
            let draining = *stop.borrow();
            async move { !draining }
        },
        Default::default(),
        token,
        (
            "the cluster's shared token",
            "MORALSWEEP_TOKEN or --token-file",
        ),
        std::future::pending::<()>(),
    )
    .await?;
    if let Some(w) = &server.warning {
        tracing::warn!("--ops-listen: {w}");
    }
    Ok(Some(server))
}
