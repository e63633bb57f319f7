//! Prometheus metrics: one registry per process behind a small typed API.
//!
//! Code that does the work calls [`Metrics`] methods (`slot_done`,
//! `request`, ...); it never touches metric names or label sets, so the
//! exposition stays consistent between the coordinator, the workers and the
//! one-process `run`. The ops server (`ops.rs`) serves [`Metrics::encode`] on
//! `/metrics` in the OpenMetrics text format.
//!
//! The families (all prefixed `moralsweep_`):
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `slots_done_total` | counter | sweep, model |
//! | `slots_failed_total` | counter | sweep, model |
//! | `slots_in_flight` | gauge | sweep, model |
//! | `slots` | gauge (slots of the model in all) | sweep, model |
//! | `slots_remaining` | gauge (slots not yet recorded) | sweep, model |
//! | `provider_requests_total` | counter | rate_group, status |
//! | `provider_throttled_total` | counter (429 answers) | rate_group |
//! | `provider_retries_total` | counter | rate_group |
//! | `provider_request_duration_seconds` | histogram | rate_group |
//! | `tokens_total` | counter | model, direction (input/output) |
//! | `cost_usd_total` | counter | model |
//! | `leases_granted_total` | counter | |
//! | `lease_reclaims_total` | counter (leases that expired and went back) | |
//! | `workers` | gauge (workers known to the coordinator) | |
//! | `store_ready` | gauge, 1 while the coordinator's store answers | |
//! | `build_info` | gauge, always 1 | version, role |

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SweepModel {
    sweep: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateGroup {
    rate_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    rate_group: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildInfo {
    version: &'static str,
    role: String,
}

/// Latency buckets: provider calls take from tens of milliseconds (a cached
/// one-token answer) to a minute (a slow model under load).
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ])
}

struct Inner {
    registry: Registry,
    slots_done: Family<SweepModel, Counter>,
    slots_failed: Family<SweepModel, Counter>,
    slots_in_flight: Family<SweepModel, Gauge>,
    slots: Family<SweepModel, Gauge>,
    slots_remaining: Family<SweepModel, Gauge>,
    requests: Family<RequestLabels, Counter>,
    throttled: Family<RateGroup, Counter>,
    retries: Family<RateGroup, Counter>,
    latency: Family<RateGroup, Histogram, fn() -> Histogram>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabel, Counter<f64, AtomicU64>>,
    leases_granted: Counter,
    lease_reclaims: Counter,
    workers: Gauge,
    store_ready: Gauge,
}

/// The process's metrics. Cheap to clone (one shared registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
    /// Whether [`Metrics::slot_done`] counts: not for workers running in
    /// the coordinator's process (`run`), whose engine counts each recorded
    /// slot itself.
    worker_counts_done: bool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry for a process of the given role (`coordinator`,
    /// `worker`, `run`), which `build_info` reports.
    pub fn new(role: &str) -> Self {
        let mut registry = Registry::with_prefix("moralsweep");
        let slots_done = Family::<SweepModel, Counter>::default();
        registry.register(
            "slots_done",
            "Slots whose answer was recorded",
            slots_done.clone(),
        );
        let slots_failed = Family::<SweepModel, Counter>::default();
        registry.register(
            "slots_failed",
            "Slot attempts that ended in an error (the slot goes back to the queue or stops its model)",
            slots_failed.clone(),
        );
        let slots_in_flight = Family::<SweepModel, Gauge>::default();
        registry.register(
            "slots_in_flight",
            "Slots leased and not yet answered",
            slots_in_flight.clone(),
        );
        let slots = Family::<SweepModel, Gauge>::default();
        registry.register(
            "slots",
            "Slots of the model in all (done when slots_done reaches it)",
            slots.clone(),
        );
        let slots_remaining = Family::<SweepModel, Gauge>::default();
        registry.register(
            "slots_remaining",
            "Slots of the model not yet recorded (0 when its files are complete)",
            slots_remaining.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "provider_requests",
            "Requests sent to model providers, by HTTP status (or error kind)",
            requests.clone(),
        );
        let throttled = Family::<RateGroup, Counter>::default();
        registry.register(
            "provider_throttled",
            "429 (rate limited) answers from model providers",
            throttled.clone(),
        );
        let retries = Family::<RateGroup, Counter>::default();
        registry.register(
            "provider_retries",
            "Provider requests retried after a transient error or a 429",
            retries.clone(),
        );
        let latency = Family::<RateGroup, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "provider_request_duration_seconds",
            "Latency of provider requests",
            latency.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens sent to (input) and received from (output) model providers",
            tokens.clone(),
        );
        let cost = Family::<ModelLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "cost_usd",
            "Estimated provider cost in US dollars",
            cost.clone(),
        );
        let leases_granted = Counter::default();
        registry.register(
            "leases_granted",
            "Leases of slots handed to workers",
            leases_granted.clone(),
        );
        let lease_reclaims = Counter::default();
        registry.register(
            "lease_reclaims",
            "Leases that expired unfinished and whose slots went back to the queue",
            lease_reclaims.clone(),
        );
        let workers = Gauge::default();
        registry.register(
            "workers",
            "Workers currently known to the coordinator",
            workers.clone(),
        );
        let store_ready = Gauge::default();
        registry.register(
            "store_ready",
            "1 while the coordinator's store (Redis) answers, 0 when it does not",
            store_ready.clone(),
        );
        let build_info = Family::<BuildInfo, Gauge>::default();
        registry.register(
            "build_info",
            "Version and role of this process (always 1)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildInfo {
                version: env!("CARGO_PKG_VERSION"),
                role: role.to_string(),
            })
            .set(1);

        Metrics {
            inner: Arc::new(Inner {
                registry,
                slots_done,
                slots_failed,
                slots_in_flight,
                slots,
                slots_remaining,
                requests,
                throttled,
                retries,
                latency,
                tokens,
                cost,
                leases_granted,
                lease_reclaims,
                workers,
                store_ready,
            }),
            worker_counts_done: true,
        }
    }

    /// The same registry for workers that run in the engine's own process
    /// (`run`): the engine counts every slot it records in
    /// `slots_done_total`, so a worker's [`Metrics::slot_done`] must not
    /// count it again.
    pub fn for_inprocess_workers(&self) -> Metrics {
        Metrics {
            inner: self.inner.clone(),
            worker_counts_done: false,
        }
    }

    fn sm(sweep: &str, model: &str) -> SweepModel {
        SweepModel {
            sweep: sweep.to_string(),
            model: model.to_string(),
        }
    }

    fn rg(rate_group: &str) -> RateGroup {
        RateGroup {
            rate_group: rate_group.to_string(),
        }
    }

    /// One slot of `model` in `sweep` got its answer (a worker's count; see
    /// [`Metrics::for_inprocess_workers`]).
    pub fn slot_done(&self, sweep: &str, model: &str) {
        if self.worker_counts_done {
            self.slots_done(sweep, model, 1);
        }
    }

    /// `n` slots got their answers recorded.
    pub fn slots_done(&self, sweep: &str, model: &str, n: u64) {
        self.inner
            .slots_done
            .get_or_create(&Self::sm(sweep, model))
            .inc_by(n);
    }

    /// One slot attempt ended in an error.
    pub fn slot_failed(&self, sweep: &str, model: &str) {
        self.inner
            .slots_failed
            .get_or_create(&Self::sm(sweep, model))
            .inc();
    }

    /// Slot attempts of `model` in `sweep` that ended in an error so far
    /// (read by the live view).
    pub fn slots_failed_count(&self, sweep: &str, model: &str) -> u64 {
        self.inner
            .slots_failed
            .get_or_create(&Self::sm(sweep, model))
            .get()
    }

    /// Slots of the model currently leased and not answered.
    pub fn set_in_flight(&self, sweep: &str, model: &str, n: i64) {
        self.inner
            .slots_in_flight
            .get_or_create(&Self::sm(sweep, model))
            .set(n);
    }

    /// Changes the in-flight count by `delta` (a worker taking or finishing slots).
    pub fn add_in_flight(&self, sweep: &str, model: &str, delta: i64) {
        self.inner
            .slots_in_flight
            .get_or_create(&Self::sm(sweep, model))
            .inc_by(delta);
    }

    /// How many slots the model has in all.
    pub fn set_slots_total(&self, sweep: &str, model: &str, n: u64) {
        self.inner
            .slots
            .get_or_create(&Self::sm(sweep, model))
            .set(n as i64);
    }

    /// How many slots of the model are not yet recorded.
    pub fn set_slots_remaining(&self, sweep: &str, model: &str, n: u64) {
        self.inner
            .slots_remaining
            .get_or_create(&Self::sm(sweep, model))
            .set(n as i64);
    }

    /// Whether the coordinator's store answered its last check.
    pub fn set_store_ready(&self, ready: bool) {
        self.inner.store_ready.set(ready as i64);
    }

    /// One provider request finished: `status` is the HTTP status (`"200"`,
    /// `"429"`, ...) or an error kind without a status (`"timeout"`,
    /// `"connect"`, `"error"`). A `"429"` also counts as throttled.
    pub fn request(&self, rate_group: &str, status: &str, latency: Duration) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                rate_group: rate_group.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&Self::rg(rate_group))
            .observe(latency.as_secs_f64());
        if status == "429" {
            self.throttled(rate_group);
        }
    }

    /// [`Metrics::request`] with a numeric HTTP status.
    pub fn request_status(&self, rate_group: &str, status: u16, latency: Duration) {
        self.request(rate_group, &status.to_string(), latency);
    }

    /// A 429 heard of by another path than [`Metrics::request`] (which already
    /// counts the 429s it records), e.g. the coordinator told of one by a worker.
    pub fn throttled(&self, rate_group: &str) {
        self.inner
            .throttled
            .get_or_create(&Self::rg(rate_group))
            .inc();
    }

    /// A provider request is being retried.
    pub fn retry(&self, rate_group: &str) {
        self.inner
            .retries
            .get_or_create(&Self::rg(rate_group))
            .inc();
    }

    /// Tokens of one answer.
    pub fn tokens(&self, model: &str, input: u64, output: u64) {
        for (direction, n) in [("input", input), ("output", output)] {
            if n > 0 {
                self.inner
                    .tokens
                    .get_or_create(&TokenLabels {
                        model: model.to_string(),
                        direction,
                    })
                    .inc_by(n);
            }
        }
    }

    /// Estimated cost of one answer.
    pub fn cost(&self, model: &str, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            self.inner
                .cost
                .get_or_create(&ModelLabel {
                    model: model.to_string(),
                })
                .inc_by(usd);
        }
    }

    /// `n` leases were handed out.
    pub fn lease_granted(&self, n: u64) {
        self.inner.leases_granted.inc_by(n);
    }

    /// `n` expired leases went back to the queue.
    pub fn lease_reclaimed(&self, n: u64) {
        self.inner.lease_reclaims.inc_by(n);
    }

    /// Workers currently known to the coordinator.
    pub fn set_workers(&self, n: i64) {
        self.inner.workers.set(n);
    }

    /// The whole registry in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics, so that deep code (a provider call) can count
/// without plumbing. The first call (normally [`crate::init`]) names the role.
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(|| Metrics::new("unknown"))
}

/// Sets the process-wide metrics' role if nothing used them yet; returns them.
pub fn init_global(role: &str) -> &'static Metrics {
    GLOBAL.get_or_init(|| Metrics::new(role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_labels() {
        let m = Metrics::new("worker");
        m.slot_done("s1", "m1");
        m.slots_done("s1", "m1", 2);
        m.slot_failed("s1", "m1");
        m.set_in_flight("s1", "m1", 4);
        m.set_slots_total("s1", "m1", 100);
        m.request("g", "200", Duration::from_millis(30));
        m.request_status("g", 429, Duration::from_millis(5));
        m.retry("g");
        m.tokens("m1", 120, 1);
        m.cost("m1", 0.25);
        m.lease_granted(3);
        m.lease_reclaimed(2);
        m.set_workers(5);
        let text = m.encode();
        for line in [
            "moralsweep_slots_done_total{sweep=\"s1\",model=\"m1\"} 3",
            "moralsweep_slots_failed_total{sweep=\"s1\",model=\"m1\"} 1",
            "moralsweep_slots_in_flight{sweep=\"s1\",model=\"m1\"} 4",
            "moralsweep_slots{sweep=\"s1\",model=\"m1\"} 100",
            "moralsweep_provider_requests_total{rate_group=\"g\",status=\"200\"} 1",
            "moralsweep_provider_requests_total{rate_group=\"g\",status=\"429\"} 1",
            "moralsweep_provider_throttled_total{rate_group=\"g\"} 1",
            "moralsweep_provider_retries_total{rate_group=\"g\"} 1",
            "moralsweep_provider_request_duration_seconds_count{rate_group=\"g\"} 2",
            "moralsweep_tokens_total{model=\"m1\",direction=\"input\"} 120",
            "moralsweep_tokens_total{model=\"m1\",direction=\"output\"} 1",
            "moralsweep_cost_usd_total{model=\"m1\"} 0.25",
            "moralsweep_leases_granted_total 3",
            "moralsweep_lease_reclaims_total 2",
            "moralsweep_workers 5",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let info = format!(
            "moralsweep_build_info{{version=\"{}\",role=\"worker\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&info), "missing {info:?} in\n{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
