//! A worker's tunables, its name and its counters.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moralsweep_telemetry::metrics::Metrics;

use crate::cost::Accounting;

/// Tunables of a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// A name for logs and the coordinator's status.
    pub name: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Most slots asked for in one lease call.
    pub lease_batch: u32,
    /// Results sent in one report (sent earlier when `report_every` passes).
    pub report_batch: usize,
    pub report_every: Duration,
    /// How often held leases are extended.
    pub extend_every: Duration,
    /// How long running requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// Return once the coordinator has had nothing to hand out for this long
    /// (one-process mode); `None`: run until shut down.
    pub exit_when_idle: Option<Duration>,
    /// The (sweep, model) pairs whose provider refused several samples per
    /// request (a 400 naming `n`): asked one sample per request for the rest
    /// of the sweep. Workers of one process share it (clone the handle), so
    /// the warning is said once.
    pub single_sample: SingleSampleModels,
    /// Where the usage and cost of every answered call is recorded (each
    /// model's prices registered when its provider is built). Workers of
    /// one process share it (clone the handle), so `run` prints their sum.
    pub accounting: Arc<Accounting>,
    /// Where requests, retries, tokens, cost and slots in flight are
    /// counted (the process's registry, served at `/metrics`).
    pub metrics: Metrics,
    /// Batch mode: a unit's leased cells wait this long for more before
    /// their provider batch opens (at most ten times as long in all).
    pub batch_linger: Duration,
    /// Batch mode: the longest wait between two polls of a provider batch
    /// (polls start 200 ms apart and double up to this).
    pub batch_poll: Duration,
    /// Batch mode: the most requests in one provider batch (`None`: the
    /// provider's limit).
    pub batch_max_requests: Option<usize>,
}

/// See [`WorkerConfig::single_sample`].
pub type SingleSampleModels = Arc<Mutex<std::collections::HashSet<(String, String)>>>;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            name: default_worker_name(),
            concurrency: 64,
            lease_batch: 256,
            report_batch: 256,
            report_every: Duration::from_millis(100),
            extend_every: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(30),
            exit_when_idle: None,
            single_sample: SingleSampleModels::default(),
            accounting: Arc::new(Accounting::new()),
            metrics: Metrics::new("worker"),
            batch_linger: Duration::from_secs(2),
            batch_poll: Duration::from_secs(30),
            batch_max_requests: None,
        }
    }
}

/// Host name and process id.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Counters of one worker run.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub answered: AtomicU64,
    pub reported: AtomicU64,
    pub abandoned: AtomicU64,
}
