//! A provider wrapped for real traffic: every request first takes a permit
//! of its rate group (so the group's rpm/tpm hold across all workers),
//! transient failures are retried, and a model whose provider keeps failing
//! is held back by a circuit breaker instead of hammering it.
//!
//! - 429 ([`ProviderError::RateLimited`]): the group is told
//!   ([`Permits::throttled`], which pauses it for everyone), then the request
//!   waits the provider's `Retry-After` (plus a little jitter) and tries again.
//! - Other retryable errors (5xx, timeouts, dropped connections, bad bodies):
//!   exponential backoff with jitter, up to [`RetryPolicy::max_retries`].
//! - [`ProviderError::Fatal`] passes straight through, so that the
//!   coordinator stops the model with the provider's message.
//! - [`ProviderError::Unreachable`] (no connection at all) from a provider
//!   that has never answered since this worker started is retried only for
//!   [`RetryPolicy::unreachable_timeout`] (the spec's
//!   `unreachable_timeout_secs`, default 2 minutes), then becomes fatal: a
//!   wrong base_url or a server that is not running stops the model with an
//!   error naming it, as a bad key does. A provider that answered once and
//!   then goes away is retried like any transient failure.
//! - Every wait (backoff, Retry-After, an open breaker, permits) ends at once
//!   when the worker stops ([`Paced::with_stop`]): the request gives up
//!   with a retryable error and its slot goes back to the queue.
//! - After [`RetryPolicy::breaker_threshold`] failures in a row the model's
//!   breaker opens: its calls wait out a cool-down (doubling on each trip),
//!   then probe again; a success closes it. After
//!   [`RetryPolicy::breaker_max_trips`] trips without a success in between
//!   the model is stopped with a fatal error naming the last failure.
//!
//! The real token usage of each answer corrects the group's token account
//! ([`Permits::usage`]) and goes into the model's [`Accounting`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;

use crate::cost::Accounting;
use crate::permits::Permits;
use crate::providers::{Completion, CompletionRequest, Provider, ProviderError};
use moralsweep_common::tokens::Tokenizer;
use moralsweep_telemetry::metrics::Metrics;

/// How hard a paced provider tries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries of retryable errors per request before giving up.
    pub max_retries: u32,
    /// Retries after 429 per request before giving up.
    pub max_rate_limited: u32,
    /// First backoff; doubles with each retry.
    pub base: Duration,
    /// Largest backoff.
    pub cap: Duration,
    /// Wait after a 429 that named no delay.
    pub default_retry_after: Duration,
    /// Failures in a row that open the breaker.
    pub breaker_threshold: u32,
    /// First cool-down of an open breaker; doubles on each trip.
    pub breaker_cooldown: Duration,
    pub breaker_max_cooldown: Duration,
    /// Trips without a success in between before the model is stopped.
    pub breaker_max_trips: u32,
    /// How long a provider that has never answered may stay unreachable
    /// before the model is stopped.
    pub unreachable_timeout: Duration,
}

/// The default of [`RetryPolicy::unreachable_timeout`] (a spec's model may
/// set `unreachable_timeout_secs`).
pub const DEFAULT_UNREACHABLE_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 12,
            max_rate_limited: 100,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
            default_retry_after: Duration::from_secs(1),
            breaker_threshold: 20,
            breaker_cooldown: Duration::from_secs(5),
            breaker_max_cooldown: Duration::from_secs(120),
            breaker_max_trips: 8,
            unreachable_timeout: DEFAULT_UNREACHABLE_TIMEOUT,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `attempt` (0-based): half the exponential
    /// step plus a random share of the other half.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        let half = step / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
    trips: u32,
    cooldown: Duration,
    last_error: String,
}

/// The per-model circuit breaker.
#[derive(Debug, Default)]
struct Breaker {
    state: Mutex<BreakerState>,
}

impl Breaker {
    /// Waits while the breaker is open, but not past `limit`.
    async fn wait_closed(&self, limit: Option<Instant>) {
        loop {
            let until = {
                let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.open_until
            };
            let until = match (until, limit) {
                (Some(t), Some(l)) => Some(t.min(l)),
                (t, _) => t,
            };
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => return,
            }
        }
    }

    fn success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.failures_in_a_row = 0;
        s.trips = 0;
        s.open_until = None;
        s.cooldown = Duration::ZERO;
    }

    /// Counts a failure; `Err` with a message when the model should stop.
    fn failure(&self, model: &str, error: &str, p: &RetryPolicy) -> Result<(), String> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.failures_in_a_row += 1;
        s.last_error = error.to_string();
        let open = s.open_until.is_some_and(|t| t > Instant::now());
        if s.failures_in_a_row >= p.breaker_threshold && !open {
            s.trips += 1;
            if s.trips > p.breaker_max_trips {
                return Err(format!(
                    "model {model:?}: the provider failed {} times in a row ({} cool-downs without a success); last error: {}",
                    s.failures_in_a_row, p.breaker_max_trips, s.last_error
                ));
            }
            s.cooldown = if s.cooldown.is_zero() {
                p.breaker_cooldown
            } else {
                (s.cooldown * 2).min(p.breaker_max_cooldown)
            };
            s.open_until = Some(Instant::now() + s.cooldown);
            s.failures_in_a_row = 0;
            tracing::warn!(
                model,
                cooldown_ms = s.cooldown.as_millis() as u64,
                error,
                "circuit breaker open: the provider keeps failing"
            );
        }
        Ok(())
    }
}

/// Whether the provider has ever answered, and since when it has not.
#[derive(Debug, Default)]
struct Reach {
    /// Any answer at all (even an error status) since this worker started.
    answered: bool,
    /// When the first connection failure happened (while never answered).
    first_failure: Option<Instant>,
    /// Connection attempts that failed (while never answered).
    failures: u64,
}

/// A provider behind permits, retries and a breaker.
pub struct Paced {
    inner: Arc<dyn Provider>,
    permits: Arc<dyn Permits>,
    group: String,
    model_key: String,
    policy: RetryPolicy,
    breaker: Breaker,
    /// Where usage is recorded, and under which sweep.
    accounting: Option<(Arc<Accounting>, String)>,
    /// Where each attempt is counted (default: a registry of its own).
    metrics: Metrics,
    /// Counts a request's tokens before the call, for the tokens-per-minute
    /// permits (the provider's reported usage corrects it afterwards).
    tokenizer: Tokenizer,
    reach: Mutex<Reach>,
    /// Turns true when the worker stops: every wait ends at once.
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Why a request stopped waiting: the worker is shutting down.
fn stopping() -> ProviderError {
    ProviderError::Retryable("the worker is stopping; the slot goes back to the queue".into())
}

impl Paced {
    /// Wraps `inner`, the provider of model `model_key` in rate group `group`.
    pub fn new(
        inner: Arc<dyn Provider>,
        permits: Arc<dyn Permits>,
        group: impl Into<String>,
        model_key: impl Into<String>,
    ) -> Paced {
        Paced {
            inner,
            permits,
            group: group.into(),
            model_key: model_key.into(),
            policy: RetryPolicy::default(),
            breaker: Breaker::default(),
            accounting: None,
            metrics: Metrics::new("worker"),
            tokenizer: Tokenizer::Estimate,
            reach: Mutex::new(Reach::default()),
            stop: None,
        }
    }

    /// Counts requests with the model's tokenizer (default: the estimate).
    pub fn with_tokenizer(mut self, tokenizer: Tokenizer) -> Paced {
        self.tokenizer = tokenizer;
        self
    }

    /// Ends every wait (and the request) as soon as `stop` turns true.
    pub fn with_stop(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Paced {
        self.stop = Some(stop);
        self
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Runs `f` unless the worker stops first.
    async fn unless_stopped<T>(
        &self,
        f: impl std::future::Future<Output = T>,
    ) -> Result<T, ProviderError> {
        let Some(stop) = &self.stop else {
            return Ok(f.await);
        };
        let mut stop = stop.clone();
        if *stop.borrow_and_update() {
            return Err(stopping());
        }
        let stopped = async move {
            // A dropped sender is no stop signal: wait for ever then.
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            v = f => Ok(v),
            _ = stopped => Err(stopping()),
        }
    }

    fn sleep(
        &self,
        d: Duration,
    ) -> impl std::future::Future<Output = Result<(), ProviderError>> + '_ {
        self.unless_stopped(tokio::time::sleep(d))
    }

    /// The instant a never-answering provider is given up, once it failed.
    fn unreachable_deadline(&self) -> Option<Instant> {
        let r = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        match (r.answered, r.first_failure) {
            (false, Some(t)) => Some(t + self.policy.unreachable_timeout),
            _ => None,
        }
    }

    fn answered(&self) {
        let mut r = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        r.answered = true;
    }

    /// Counts a connection failure; `Some(message)` when the provider has
    /// never answered and the time allowed for reaching it is over.
    fn unreachable(&self, msg: &str) -> Option<String> {
        let mut r = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        if r.answered {
            return None;
        }
        let first = *r.first_failure.get_or_insert_with(Instant::now);
        r.failures += 1;
        let waited = first.elapsed();
        (waited >= self.policy.unreachable_timeout).then(|| {
            format!(
                "model {:?}: the provider was never reachable: {} connection attempts over {:.0} s failed \
                 (unreachable_timeout_secs = {}); last error: {msg}; check the model's base_url and that the server is running",
                self.model_key,
                r.failures,
                waited.as_secs_f64(),
                self.policy.unreachable_timeout.as_secs_f64()
            )
        })
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Paced {
        self.policy = policy;
        self
    }

    /// Records usage and cost in `accounting` under `sweep` (default: nowhere).
    pub fn with_accounting(mut self, accounting: Arc<Accounting>, sweep: &str) -> Paced {
        self.accounting = Some((accounting, sweep.to_string()));
        self
    }

    /// Counts attempts in `metrics` (the process's registry).
    pub fn with_metrics(mut self, metrics: Metrics) -> Paced {
        self.metrics = metrics;
        self
    }

    fn account(&self, f: impl FnOnce(&Accounting, &str)) {
        if let Some((a, sweep)) = &self.accounting {
            f(a, sweep);
        }
    }
}

#[async_trait]
impl Provider for Paced {
    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let mut v = self.complete_n(req, 1).await?;
        v.pop()
            .ok_or_else(|| ProviderError::Retryable("the answer held no sample".into()))
    }

    /// One request for `n` samples, paced as one request whose input
    /// tokens count once and whose output allowance counts `n` times.
    async fn complete_n(
        &self,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        let n = n.max(1);
        let estimate = self
            .tokenizer
            .prompt_tokens(&req.prompt)
            .saturating_add(req.max_tokens as u64 * n as u64);
        let mut retries = 0u32;
        let mut rate_limited = 0u32;
        loop {
            if self.stopped() {
                return Err(stopping());
            }
            self.unless_stopped(self.breaker.wait_closed(self.unreachable_deadline()))
                .await?;
            self.unless_stopped(self.permits.acquire(&self.group, 1, estimate))
                .await?;
            let timer = moralsweep_telemetry::spans::CallTimer::start(
                &self.metrics,
                &self.model_key,
                &self.group,
            );
            let result = self.inner.complete_n(req, n).await;
            let seen = result.as_ref().map_err(Clone::clone).map(|v| Completion {
                text: String::new(),
                top_logprobs: None,
                usage: crate::providers::usage_of_all(v),
            });
            crate::observe::attempt(timer, &seen, retries + rate_limited);
            if !matches!(result, Err(ProviderError::Unreachable(_))) {
                self.answered();
            }
            match result {
                Ok(c) => {
                    self.breaker.success();
                    let usage = crate::providers::usage_of_all(&c);
                    let actual = usage.input_tokens + usage.output_tokens;
                    self.permits.usage(&self.group, estimate, actual).await;
                    self.account(|a, s| a.record(s, &self.model_key, usage));
                    return Ok(c);
                }
                Err(ProviderError::RateLimited { retry_after }) => {
                    self.account(|a, s| a.rate_limited(s, &self.model_key));
                    self.permits.throttled(&self.group, retry_after).await;
                    rate_limited += 1;
                    if rate_limited > self.policy.max_rate_limited {
                        return Err(ProviderError::RateLimited { retry_after });
                    }
                    let wait = retry_after.unwrap_or(self.policy.default_retry_after);
                    let jitter = wait.mul_f64(0.1 * rand::rng().random::<f64>())
                        + Duration::from_millis(rand::rng().random_range(0..20));
                    tracing::debug!(
                        model = %self.model_key,
                        wait_ms = (wait + jitter).as_millis() as u64,
                        "rate limited by the provider"
                    );
                    self.sleep(wait + jitter).await?;
                }
                Err(ProviderError::Unreachable(msg)) => {
                    self.account(|a, s| a.retried(s, &self.model_key));
                    if let Some(stop) = self.unreachable(&msg) {
                        return Err(ProviderError::Fatal(stop));
                    }
                    // Never answered: no breaker (the deadline bounds it), and
                    // no wait beyond the deadline.
                    if let Some(deadline) = self.unreachable_deadline() {
                        let wait = self
                            .policy
                            .backoff(retries)
                            .min(deadline.saturating_duration_since(Instant::now()))
                            .max(Duration::from_millis(1));
                        retries = retries.saturating_add(1);
                        self.sleep(wait).await?;
                        continue;
                    }
                    // It answered before: patient, like any transient failure.
                    if let Err(stop) = self.breaker.failure(&self.model_key, &msg, &self.policy) {
                        return Err(ProviderError::Fatal(stop));
                    }
                    if retries >= self.policy.max_retries {
                        return Err(ProviderError::Unreachable(format!(
                            "{msg} (gave up after {} attempts)",
                            retries + 1
                        )));
                    }
                    let wait = self.policy.backoff(retries);
                    retries += 1;
                    self.sleep(wait).await?;
                }
                Err(ProviderError::Retryable(msg)) => {
                    self.account(|a, s| a.retried(s, &self.model_key));
                    if let Err(stop) = self.breaker.failure(&self.model_key, &msg, &self.policy) {
                        return Err(ProviderError::Fatal(stop));
                    }
                    if retries >= self.policy.max_retries {
                        return Err(ProviderError::Retryable(format!(
                            "{msg} (gave up after {} attempts)",
                            retries + 1
                        )));
                    }
                    let wait = self.policy.backoff(retries);
                    retries += 1;
                    tracing::debug!(
                        model = %self.model_key,
                        retry = retries,
                        wait_ms = wait.as_millis() as u64,
                        error = %msg,
                        "retrying after a transient error"
                    );
                    self.sleep(wait).await?;
                }
                Err(fatal @ ProviderError::Fatal(_)) => return Err(fatal),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Usage;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails with the scripted errors, then answers "3".
    struct Flaky {
        errors: Mutex<Vec<ProviderError>>,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Provider for Flaky {
        async fn complete(&self, _req: &CompletionRequest) -> Result<Completion, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut e = self.errors.lock().unwrap();
            if e.is_empty() {
                Ok(Completion {
                    text: "3".into(),
                    top_logprobs: None,
                    usage: Usage {
                        input_tokens: 50,
                        output_tokens: 1,
                    },
                })
            } else {
                Err(e.remove(0))
            }
        }
    }

    #[derive(Default)]
    struct Recorder {
        acquired: AtomicU32,
        throttled: Mutex<Vec<Option<Duration>>>,
        usage: Mutex<Vec<(u64, u64)>>,
    }

    #[async_trait]
    impl Permits for Recorder {
        async fn acquire(&self, group: &str, n: u32, _tokens_each: u64) {
            assert_eq!(group, "g");
            self.acquired.fetch_add(n, Ordering::SeqCst);
        }
        async fn throttled(&self, _group: &str, retry_after: Option<Duration>) {
            self.throttled.lock().unwrap().push(retry_after);
        }
        async fn usage(&self, _group: &str, estimated: u64, actual: u64) {
            self.usage.lock().unwrap().push((estimated, actual));
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(4),
            default_retry_after: Duration::from_millis(1),
            breaker_cooldown: Duration::from_millis(5),
            breaker_max_cooldown: Duration::from_millis(10),
            ..RetryPolicy::default()
        }
    }

    fn req() -> CompletionRequest {
        CompletionRequest {
            prompt: "x".repeat(400),
            max_tokens: 1,
            temperature: Some(0.1),
            seed: None,
            top_logprobs: None,
        }
    }

    fn setup(
        errors: Vec<ProviderError>,
        policy: RetryPolicy,
    ) -> (Paced, Arc<Flaky>, Arc<Recorder>, Arc<Accounting>) {
        let flaky = Arc::new(Flaky {
            errors: Mutex::new(errors),
            calls: AtomicU32::new(0),
        });
        let rec = Arc::new(Recorder::default());
        let acc = Arc::new(Accounting::new());
        let p = Paced::new(flaky.clone(), rec.clone(), "g", "m")
            .with_policy(policy)
            .with_accounting(acc.clone(), "s");
        (p, flaky, rec, acc)
    }

    #[tokio::test]
    async fn retries_transient_errors_and_429s_with_a_permit_each() {
        let (p, flaky, rec, acc) = setup(
            vec![
                ProviderError::Retryable("500".into()),
                ProviderError::RateLimited {
                    retry_after: Some(Duration::from_millis(3)),
                },
                ProviderError::Retryable("timeout".into()),
            ],
            fast(),
        );
        let c = p.complete(&req()).await.unwrap();
        assert_eq!(c.text, "3");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        assert_eq!(rec.acquired.load(Ordering::SeqCst), 4);
        assert_eq!(
            *rec.throttled.lock().unwrap(),
            vec![Some(Duration::from_millis(3))]
        );
        assert_eq!(*rec.usage.lock().unwrap(), vec![(101, 51)]);
        let u = &acc.snapshot()["m"];
        assert_eq!((u.requests, u.rate_limited, u.retried_errors), (1, 1, 2));
        assert_eq!((u.input_tokens, u.output_tokens), (50, 1));
    }

    #[tokio::test]
    async fn fatal_passes_through_at_once() {
        let (p, flaky, _, _) = setup(
            vec![ProviderError::Fatal("model \"m\": bad key".into())],
            fast(),
        );
        let e = p.complete(&req()).await.unwrap_err();
        assert!(
            matches!(e, ProviderError::Fatal(ref m) if m.contains("bad key")),
            "{e}"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries() {
        let policy = RetryPolicy {
            max_retries: 3,
            ..fast()
        };
        let errors = (0..10)
            .map(|i| ProviderError::Retryable(format!("e{i}")))
            .collect();
        let (p, flaky, _, _) = setup(errors, policy);
        let e = p.complete(&req()).await.unwrap_err();
        assert!(
            matches!(e, ProviderError::Retryable(ref m) if m.contains("gave up after 4")),
            "{e}"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn breaker_opens_then_stops_a_dead_model() {
        let policy = RetryPolicy {
            max_retries: 1000,
            breaker_threshold: 3,
            breaker_max_trips: 2,
            ..fast()
        };
        let errors = (0..100)
            .map(|_| ProviderError::Retryable("503".into()))
            .collect();
        let (p, flaky, _, _) = setup(errors, policy);
        let started = Instant::now();
        let e = p.complete(&req()).await.unwrap_err();
        assert!(
            matches!(e, ProviderError::Fatal(ref m) if m.contains("in a row") && m.contains("503")),
            "{e}"
        );
        // Two cool-downs (5 ms, 10 ms) were waited out before the third trip stopped it.
        assert!(started.elapsed() >= Duration::from_millis(15));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 9);
    }

    fn unreachable(i: usize) -> ProviderError {
        ProviderError::Unreachable(format!(
            "model \"m\": cannot connect to http://127.0.0.1:9/v1: refused {i}"
        ))
    }

    #[tokio::test]
    async fn a_provider_never_reached_stops_after_the_unreachable_timeout() {
        let policy = RetryPolicy {
            max_retries: 2,
            unreachable_timeout: Duration::from_millis(60),
            ..fast()
        };
        let (p, flaky, _, _) = setup((0..100_000).map(unreachable).collect(), policy);
        let e = tokio::time::timeout(Duration::from_secs(20), p.complete(&req()))
            .await
            .expect("bounded")
            .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Fatal(m)
                if m.contains("never reachable") && m.contains("\"m\"") && m.contains("http://127.0.0.1:9/v1")),
            "{e}"
        );
        // More attempts than max_retries: the deadline, not the retry count, decides.
        assert!(flaky.calls.load(Ordering::SeqCst) > 3);
    }

    #[tokio::test]
    async fn a_provider_that_answered_once_is_retried_patiently_when_it_goes_away() {
        let policy = RetryPolicy {
            max_retries: 3,
            unreachable_timeout: Duration::from_millis(1),
            ..fast()
        };
        let (p, flaky, _, _) = setup(Vec::new(), policy);
        p.complete(&req()).await.unwrap();
        *flaky.errors.lock().unwrap() = (0..10).map(unreachable).collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let e = p.complete(&req()).await.unwrap_err();
        assert!(
            matches!(&e, ProviderError::Unreachable(m) if m.contains("gave up after 4")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn stopping_ends_a_backoff_at_once() {
        let policy = RetryPolicy {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (p, flaky, _, _) = setup(vec![ProviderError::Retryable("503".into())], policy);
        let p = p.with_stop(rx);
        let call = tokio::spawn(async move { p.complete(&req()).await });
        while flaky.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(true).unwrap();
        // Bounded only against a hang; the backoff alone would be 30-60 s.
        let e = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the backoff ended when the worker stopped")
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Retryable(m) if m.contains("stopping")),
            "{e}"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for a in 0..30 {
            let d = p.backoff(a);
            let step = (p.base * 2u32.pow(a.min(20))).min(p.cap);
            assert!(d >= step / 2 && d <= step, "{a}: {d:?}");
        }
    }
}
