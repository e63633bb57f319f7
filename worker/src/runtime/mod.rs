//! The worker's loop: lease batches of slots from the coordinator, run many
//! of them at once on tokio (the rating protocol of METHOD.md against the
//! model's provider), report the results in batches, keep the leases alive
//! while working, and on shutdown stop leasing, finish what is running, hand
//! back the rest and return.
//!
//! The coordinator is reached through a [`Link`]: gRPC in the cluster
//! ([`crate::client`]), a direct call in one process (`inprocess` in the binary).
//! Results are never dropped: a report that fails is retried until the
//! coordinator takes it (recording is idempotent, so a retry is harmless).

mod batch;
pub mod batch_link;
mod config;
mod extender;
mod grant;
mod link;
mod reporter;
mod slot;
mod sweeps;

pub use config::{default_worker_name, SingleSampleModels, WorkerConfig, WorkerStats};
pub use link::{Link, LinkError, SweepDef};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moralsweep_common::spec::ModelSpec;
use moralsweep_protocol::SlotReport;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::credit::CreditPermits;
use crate::permits::Permits;
use batch_link::BatchLink;
use extender::extender;
use grant::start_grant;
use reporter::reporter;
use sweeps::SweepCtx;

/// The result of one slot, or why it was not done.
enum Finished {
    Report(Box<SlotReport>),
    /// Not asked or not answered here; the lease's release hands it back.
    Abandoned,
}

struct Done {
    lease_id: String,
    finished: Finished,
    /// The trace context of the slot's span (its grant's `model` span).
    traceparent: Option<String>,
}

/// Shared state of one worker run.
struct Shared<L: Link> {
    link: Arc<L>,
    /// Prepaid permits (one per leased slot) in front of the coordinator's.
    permits: Arc<CreditPermits>,
    cfg: WorkerConfig,
    sweeps: tokio::sync::Mutex<HashMap<String, Arc<SweepCtx>>>,
    /// Models that answered with a fatal error: their remaining slots are not asked.
    dead_models: Mutex<HashMap<ModelKey, ()>>,
    /// [`WorkerConfig::single_sample`].
    single_sample: SingleSampleModels,
    stopping: AtomicBool,
    /// Turns true with `stopping`: ends the providers' waits (backoff,
    /// Retry-After, an open breaker) at once, so a stop is never held up by
    /// a provider that keeps failing.
    halt: watch::Sender<bool>,
    /// Turns true when the drain timeout is over: requests still running are
    /// dropped (their slots go back with the lease), so a stop is bounded.
    abort: watch::Sender<bool>,
    stats: Arc<WorkerStats>,
    /// Batch mode: where grants of `batch = true` models are parked until
    /// their provider batch opens, how many are parked, and the jobs
    /// running the open batches.
    batch_tx: mpsc::UnboundedSender<batch::Parked>,
    batch_parked: AtomicU64,
    batch_jobs: batch::Jobs,
}

/// A (sweep, model key) pair: whose refusals a worker remembers.
type ModelKey = (String, String);

impl<L: Link> Shared<L> {
    /// Whether `key`'s provider refused for good (its slots are not asked).
    fn is_dead(&self, key: &ModelKey) -> bool {
        self.dead_models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    /// `key`'s provider refused for good: its remaining slots are not
    /// asked here; said once.
    fn refused_for_good(&self, key: &ModelKey, msg: &str) {
        let first = self
            .dead_models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), ())
            .is_none();
        if first {
            tracing::error!(model = %key.1, "the provider refused for good: {msg}");
        }
    }

    /// Samples one request of `model` may carry in `sweep`: its profile's
    /// cap, or 1 once its provider refused several.
    fn samples_per_request(&self, sweep: &str, model: &ModelSpec) -> u32 {
        let refused = self
            .single_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(sweep.to_string(), model.key.clone()));
        if refused {
            1
        } else {
            model.profile().samples_for(u32::MAX).max(1)
        }
    }

    /// `key`'s provider refused several samples per request: one per
    /// request for the rest of the sweep; said once.
    fn refused_multi_sample(&self, key: &ModelKey) {
        let first = self
            .single_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        if first {
            tracing::warn!(
                model = %key.1,
                "the provider refused several samples per request (`n`); this model is asked one sample per request for the rest of the sweep"
            );
        }
    }
}

/// Runs a worker until `shutdown` turns true (or, with `exit_when_idle`, until
/// there is no more work). Returns after handing back every lease it holds.
pub async fn run<L: BatchLink>(
    link: Arc<L>,
    permits: Arc<dyn Permits>,
    cfg: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<WorkerStats>,
) -> Result<(), LinkError> {
    let (batch_tx, batch_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        link: link.clone(),
        permits: Arc::new(CreditPermits::new(permits)),
        cfg: cfg.clone(),
        sweeps: tokio::sync::Mutex::new(HashMap::new()),
        dead_models: Mutex::new(HashMap::new()),
        single_sample: cfg.single_sample.clone(),
        stopping: AtomicBool::new(false),
        halt: watch::channel(false).0,
        abort: watch::channel(false).0,
        stats,
        batch_tx,
        batch_parked: AtomicU64::new(0),
        batch_jobs: batch::Jobs::default(),
    });
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    // lease id -> slots not yet accounted for (reported or abandoned).
    let held: Arc<Mutex<HashMap<String, usize>>> = Arc::new(Mutex::new(HashMap::new()));
    let outstanding = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());

    let reporter = tokio::spawn(reporter(
        shared.clone(),
        done_rx,
        held.clone(),
        outstanding.clone(),
        progress.clone(),
    ));
    let extender = tokio::spawn(extender(shared.clone(), held.clone()));
    let collector = tokio::spawn(batch::collector(shared.clone(), batch_rx, held.clone()));
    let keeper = tokio::spawn(batch::keeper(shared.clone()));

    let high_water = (cfg.concurrency as u64 * 2).max(cfg.lease_batch as u64);
    let mut idle_since: Option<tokio::time::Instant> = None;
    let mut failure: Option<LinkError> = None;
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        let pending = outstanding.load(Ordering::Acquire);
        if pending >= high_water {
            tokio::select! {
                _ = progress.notified() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let want = (high_water - pending).min(cfg.lease_batch as u64) as u32;
        let wait = match link.lease(&cfg.name, want).await {
            Ok(out) if out.grants.is_empty() => {
                backoff = Duration::from_millis(100);
                if let Some(limit) = cfg.exit_when_idle {
                    let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                    let batches = shared.batch_parked.load(Ordering::Acquire) > 0
                        || shared.batch_jobs.len() > 0;
                    if pending == 0 && !batches && since.elapsed() >= limit {
                        break;
                    }
                }
                out.retry_after.max(Duration::from_millis(5))
            }
            Ok(out) => {
                backoff = Duration::from_millis(100);
                idle_since = None;
                let lease_span = moralsweep_telemetry::spans::lease_span(&cfg.name);
                // The coordinator's grant is the parent: one trace per lease.
                if let Some(tp) = &out.traceparent {
                    moralsweep_telemetry::propagation::set_parent(&lease_span, tp);
                }
                moralsweep_telemetry::spans::record_lease(
                    &lease_span,
                    out.grants.iter().map(|g| g.lease.slots.len() as u64).sum(),
                );
                for g in out.grants {
                    tracing::Instrument::instrument(
                        start_grant(&shared, g, &sem, &done_tx, &held, &outstanding),
                        lease_span.clone(),
                    )
                    .await;
                }
                Duration::ZERO
            }
            Err(LinkError::Fatal(m)) => {
                failure = Some(LinkError::Fatal(m));
                break;
            }
            Err(e) => {
                tracing::warn!(worker = %cfg.name, "leasing failed (will retry): {e}");
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                w
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
    // Stop taking work; slots not started yet are abandoned by their tasks,
    // running ones may finish within the drain timeout.
    shared.stopping.store(true, Ordering::Release);
    shared.halt.send_replace(true);
    tracing::info!(worker = %cfg.name, "stopping: finishing running requests, handing back the rest");
    let drained = tokio::time::timeout(cfg.drain_timeout, async {
        while outstanding.load(Ordering::Acquire) > 0 {
            tokio::select! {
                _ = progress.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(worker = %cfg.name, "requests still running after the drain timeout; dropping them, their leases are handed back");
        shared.abort.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while outstanding.load(Ordering::Acquire) > 0 {
                tokio::select! {
                    _ = progress.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        })
        .await;
    }
    drop(done_tx);
    keeper.abort();
    // The collector hands back what is parked once it sees the halt.
    let _ = tokio::time::timeout(Duration::from_secs(5), collector).await;
    extender.abort();
    // The reporter flushes what it has; requests still running past the drain
    // timeout keep their channel open, so do not wait for them for ever.
    let mut reporter = reporter;
    if tokio::time::timeout(Duration::from_secs(5), &mut reporter)
        .await
        .is_err()
    {
        reporter.abort();
    }
    let leftover: Vec<String> = held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    if !leftover.is_empty() {
        let _ = link.report(&cfg.name, Vec::new(), leftover, None).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
