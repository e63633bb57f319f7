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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use moralsweep_common::slot::{SlotRecord, UnitShape};
use moralsweep_common::{Mode, SweepSpec};
use moralsweep_protocol::{
    slot_seed, Grant, LeaseOutcome, Outcome, ReportOutcome, SlotReport, LOGPROB_REQUEST_TEMPERATURE,
};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::credit::CreditPermits;
use crate::paced::{Paced, RetryPolicy, DEFAULT_UNREACHABLE_TIMEOUT};
use crate::permits::Permits;
use crate::protocol::{
    rate_logprob, rate_sample_in, rate_samples, CellRequest, SlotRequest,
    DEFAULT_FALLBACK_MAX_TOKENS,
};
use crate::providers::{self, ProviderError};

/// What a worker needs to know about a sweep to ask its slots.
#[derive(Debug, Clone)]
pub struct SweepDef {
    pub spec: SweepSpec,
    pub personas: Vec<String>,
}

/// Why a call to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Worth retrying (coordinator restarting, network, store down).
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// The sweep is gone (deleted): drop its slots.
    #[error("{0}")]
    NotFound(String),
    /// Retrying cannot help (bad token, bad request): stop the worker.
    #[error("{0}")]
    Fatal(String),
}

/// How a worker talks to its coordinator.
#[async_trait]
pub trait Link: Send + Sync + 'static {
    async fn lease(&self, worker: &str, max: u32) -> Result<LeaseOutcome, LinkError>;
    /// Reports results and releases leases; `traceparent` is the trace
    /// context of the slots' span, so the coordinator's handling of the
    /// report joins the lease's trace.
    async fn report(
        &self,
        worker: &str,
        results: Vec<SlotReport>,
        release: Vec<String>,
        traceparent: Option<String>,
    ) -> Result<ReportOutcome, LinkError>;
    /// Extends leases; returns the ids the coordinator no longer knows.
    async fn extend(&self, lease_ids: Vec<String>) -> Result<Vec<String>, LinkError>;
    async fn definition(&self, sweep: &str) -> Result<SweepDef, LinkError>;
}

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

/// A sweep's definition with the providers built for its models.
struct SweepCtx {
    def: SweepDef,
    /// The spec's instrument, loaded once.
    instrument: Arc<moralsweep_common::Instrument>,
    providers: Mutex<HashMap<String, Arc<ProviderSlot>>>,
}

enum ProviderSlot {
    /// Behind permits, retries and a circuit breaker.
    Ready(Box<Paced>),
    /// The provider could not be built here (unknown provider, missing key).
    Broken(String),
}

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
    dead_models: Mutex<HashMap<(String, String), ()>>,
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
}

/// Runs a worker until `shutdown` turns true (or, with `exit_when_idle`, until
/// there is no more work). Returns after handing back every lease it holds.
pub async fn run<L: Link>(
    link: Arc<L>,
    permits: Arc<dyn Permits>,
    cfg: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<WorkerStats>,
) -> Result<(), LinkError> {
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
                    if pending == 0 && since.elapsed() >= limit {
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
                    out.grants.iter().map(|g| g.slots.len() as u64).sum(),
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

async fn sweep_ctx<L: Link>(shared: &Shared<L>, sweep: &str) -> Result<Arc<SweepCtx>, LinkError> {
    let mut map = shared.sweeps.lock().await;
    if let Some(c) = map.get(sweep) {
        return Ok(c.clone());
    }
    let mut backoff = Duration::from_millis(100);
    let def = loop {
        match shared.link.definition(sweep).await {
            Ok(d) => break d,
            Err(LinkError::Unavailable(m)) if !shared.stopping.load(Ordering::Acquire) => {
                tracing::warn!("fetching sweep {sweep:?} failed (will retry): {m}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    };
    let instrument = def
        .spec
        .instrument()
        .unwrap_or_else(|_| moralsweep_common::Instrument::mfq30());
    let ctx = Arc::new(SweepCtx {
        instrument,
        def,
        providers: Mutex::new(HashMap::new()),
    });
    map.insert(sweep.to_string(), ctx.clone());
    Ok(ctx)
}

fn provider_for(
    ctx: &SweepCtx,
    model: &str,
    permits: &Arc<CreditPermits>,
    halt: &watch::Sender<bool>,
) -> Arc<ProviderSlot> {
    let mut map = ctx.providers.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(model.to_string())
        .or_insert_with(|| {
            let Some(spec) = ctx.def.spec.model_or_judge(model) else {
                return Arc::new(ProviderSlot::Broken(format!(
                    "the sweep has no model {model:?}"
                )));
            };
            let policy = RetryPolicy {
                unreachable_timeout: spec
                    .unreachable_timeout_secs
                    .map(Duration::from_secs_f64)
                    .unwrap_or(DEFAULT_UNREACHABLE_TIMEOUT),
                ..RetryPolicy::default()
            };
            Arc::new(match providers::build(spec) {
                Ok(p) => ProviderSlot::Ready(Box::new(
                    Paced::new(
                        Arc::from(p),
                        permits.clone() as Arc<dyn Permits>,
                        spec.rate_group(),
                        spec.key.clone(),
                    )
                    .with_tokenizer(moralsweep_common::tokens::Tokenizer::for_model(
                        &spec.provider,
                        &spec.model,
                    ))
                    .with_policy(policy)
                    .with_stop(halt.subscribe()),
                )),
                Err(e) => ProviderSlot::Broken(e.to_string()),
            })
        })
        .clone()
}

async fn start_grant<L: Link>(
    shared: &Arc<Shared<L>>,
    g: Grant,
    sem: &Arc<Semaphore>,
    done_tx: &mpsc::UnboundedSender<Done>,
    held: &Arc<Mutex<HashMap<String, usize>>>,
    outstanding: &Arc<AtomicU64>,
) {
    let n = g.slots.len();
    let prepaid = if g.permits > 0 {
        g.permits as u64
    } else {
        n as u64
    };
    shared.permits.add(&g.rate_group, prepaid);
    held.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(g.lease_id.clone(), n);
    outstanding.fetch_add(n as u64, Ordering::AcqRel);
    let ctx = match sweep_ctx(shared, &g.unit.sweep).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(sweep = %g.unit.sweep, "cannot work on the sweep: {e}");
            None
        }
    };
    let model_spec = ctx.as_ref().and_then(|c| {
        c.def
            .spec
            .models
            .iter()
            .find(|m| m.key == g.unit.model)
            .cloned()
    });
    let span = crate::observe::grant_span(&g, model_spec.as_ref());
    crate::observe::grant_started(&g);
    let lease_id = Arc::new(g.lease_id.clone());
    // Slots of one cell share requests when the model draws several
    // samples per request; otherwise each slot is its own group.
    let max_samples = match (&ctx, &model_spec, g.unit.mode) {
        (Some(_), Some(m), Mode::Persona | Mode::SelfMode)
            if !shared
                .single_sample
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&(g.unit.sweep.clone(), g.unit.model.clone())) =>
        {
            m.profile().samples_for(u32::MAX)
        }
        _ => 1,
    };
    let reps = ctx
        .as_ref()
        .map(|c| c.def.spec.repetitions.max(1))
        .unwrap_or(1);
    // What a slot needs beyond the definition (a judge slot's answer).
    let payloads: Arc<HashMap<u32, String>> =
        Arc::new(g.slots.iter().copied().zip(g.payloads).collect());
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for slot in g.slots {
        match groups.last_mut() {
            Some(last) if max_samples > 1 && last[0] / reps == slot / reps => last.push(slot),
            _ => groups.push(vec![slot]),
        }
    }
    for slots in groups {
        let shared = shared.clone();
        let sem = sem.clone();
        let done_tx = done_tx.clone();
        let ctx = ctx.clone();
        let lease_id = lease_id.clone();
        let unit = g.unit.clone();
        let payload = payloads.get(&slots[0]).cloned();
        // One task per group: a cell's slots from shared requests, or one slot.
        let task = async move {
            let (obs_sweep, obs_model) = (unit.sweep.clone(), unit.model.clone());
            let abandoned = || slots.iter().map(|_| Finished::Abandoned).collect();
            let finished: Vec<Finished> = match ctx {
                None => abandoned(),
                Some(ctx) => {
                    let mut abort = shared.abort.subscribe();
                    let aborted = async move {
                        if abort.wait_for(|a| *a).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        f = async {
                            let _permit = sem.acquire().await.ok();
                            if slots.len() > 1 {
                                run_cell(&shared, &ctx, &lease_id, unit, &slots).await
                            } else {
                                vec![run_slot(&shared, &ctx, &lease_id, unit, slots[0], payload).await]
                            }
                        } => f,
                        _ = aborted => abandoned(),
                    }
                }
            };
            for f in finished {
                crate::observe::slot_finished(
                    &obs_sweep,
                    &obs_model,
                    match &f {
                        Finished::Report(r) => Some(matches!(r.outcome, Outcome::Record(_))),
                        Finished::Abandoned => None,
                    },
                );
                let _ = done_tx.send(Done {
                    lease_id: lease_id.to_string(),
                    finished: f,
                    traceparent: moralsweep_telemetry::propagation::current_traceparent(),
                });
            }
        };
        tokio::spawn(tracing::Instrument::instrument(task, span.clone()));
    }
}

async fn run_slot<L: Link>(
    shared: &Shared<L>,
    ctx: &SweepCtx,
    lease_id: &str,
    unit: moralsweep_protocol::UnitKey,
    slot: u32,
    payload: Option<String>,
) -> Finished {
    if shared.stopping.load(Ordering::Acquire) {
        return Finished::Abandoned;
    }
    let dead_key = (unit.sweep.clone(), unit.model.clone());
    if shared
        .dead_models
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&dead_key)
    {
        return Finished::Abandoned;
    }
    let spec = &ctx.def.spec;
    let Some(model) = spec.models.iter().find(|m| m.key == unit.model) else {
        return Finished::Abandoned;
    };
    let shape = match unit.mode {
        Mode::EmCheck | Mode::EmJudge => crate::em::unit_shape(unit.mode),
        _ => UnitShape {
            mode: unit.mode,
            personas: ctx.def.personas.len() as u32,
            repetitions: spec.repetitions,
            items: ctx.instrument.item_count() as u32,
        },
    };
    if slot as u64 >= shape.len() {
        return Finished::Abandoned;
    }
    // The judge's unit sends the judge's requests.
    let requester = match unit.mode {
        Mode::EmJudge => match spec.judge.as_ref() {
            Some(j) => j,
            None => return Finished::Abandoned,
        },
        _ => model,
    };
    let instrument = &ctx.instrument;
    let prompt = || {
        let coord = shape.coord(slot as u64);
        let item = &instrument.items[coord.item as usize - 1];
        match coord.persona {
            Some(p) => instrument.persona_prompt(&ctx.def.personas[p as usize], item),
            None => instrument.self_prompt(item),
        }
    };
    let seed = slot_seed(spec.seed.unwrap_or(0), &unit.model, unit.mode, slot);
    let provider = provider_for(ctx, &requester.key, &shared.permits, &shared.halt);
    let result = match provider.as_ref() {
        ProviderSlot::Broken(msg) => Err(ProviderError::Fatal(msg.clone())),
        ProviderSlot::Ready(p) => match unit.mode {
            Mode::EmCheck | Mode::EmJudge => {
                crate::em::run_em_slot(
                    &crate::observe::Traced::new(p.as_ref(), &spec.name, requester),
                    requester,
                    unit.mode,
                    slot,
                    payload.as_deref(),
                    seed,
                )
                .await
            }
            Mode::Logprob => rate_logprob(
                &crate::observe::Traced::new(p.as_ref(), &spec.name, model),
                &prompt(),
                Some(LOGPROB_REQUEST_TEMPERATURE),
                spec.top_logprobs,
                Some(seed),
            )
            .await
            .map(SlotRecord::Logprob),
            Mode::Persona | Mode::SelfMode => rate_sample_in(
                instrument,
                &crate::observe::Traced::new(p.as_ref(), &spec.name, model),
                &SlotRequest {
                    prompt: prompt(),
                    temperature: model.sampling_temperature(spec.temperature),
                    max_attempts: spec.max_attempts,
                    fallback_max_tokens: model
                        .fallback_max_tokens
                        .unwrap_or(DEFAULT_FALLBACK_MAX_TOKENS),
                    seed: Some(seed),
                },
            )
            .await
            .map(SlotRecord::Sample),
        },
    };
    let outcome = match result {
        Ok(rec) => {
            shared.stats.answered.fetch_add(1, Ordering::Relaxed);
            Outcome::Record(rec)
        }
        Err(ProviderError::Fatal(msg)) => {
            let first = shared
                .dead_models
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(dead_key, ())
                .is_none();
            if first {
                tracing::error!(model = %unit.model, "the provider refused for good: {msg}");
            }
            Outcome::Fatal(format!("worker {}: {msg}", shared.cfg.name))
        }
        Err(ProviderError::RateLimited { retry_after }) => {
            shared
                .permits
                .throttled(requester.rate_group(), retry_after)
                .await;
            return Finished::Abandoned;
        }
        Err(ProviderError::Retryable(msg) | ProviderError::Unreachable(msg)) => {
            if !shared.stopping.load(Ordering::Acquire) {
                tracing::warn!(model = %unit.model, slot, "request failed; the slot goes back to the queue: {msg}");
            }
            return Finished::Abandoned;
        }
    };
    Finished::Report(Box::new(SlotReport {
        lease_id: Some(lease_id.to_string()),
        unit,
        slot,
        outcome,
    }))
}

/// Runs the slots of one cell (persona, item) from shared multi-sample
/// requests ([`rate_samples`]); one result per slot, in slot order.
async fn run_cell<L: Link>(
    shared: &Shared<L>,
    ctx: &SweepCtx,
    lease_id: &str,
    unit: moralsweep_protocol::UnitKey,
    slots: &[u32],
) -> Vec<Finished> {
    let abandoned = || slots.iter().map(|_| Finished::Abandoned).collect();
    if shared.stopping.load(Ordering::Acquire) {
        return abandoned();
    }
    let dead_key = (unit.sweep.clone(), unit.model.clone());
    if shared
        .dead_models
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&dead_key)
    {
        return abandoned();
    }
    let spec = &ctx.def.spec;
    let Some(model) = spec.models.iter().find(|m| m.key == unit.model) else {
        return abandoned();
    };
    let shape = UnitShape {
        mode: unit.mode,
        personas: ctx.def.personas.len() as u32,
        repetitions: spec.repetitions,
        items: ctx.instrument.item_count() as u32,
    };
    if slots.iter().any(|s| *s as u64 >= shape.len()) {
        return abandoned();
    }
    let coord = shape.coord(slots[0] as u64);
    let instrument = &ctx.instrument;
    let item = &instrument.items[coord.item as usize - 1];
    let prompt = match coord.persona {
        Some(p) => instrument.persona_prompt(&ctx.def.personas[p as usize], item),
        None => instrument.self_prompt(item),
    };
    let seeds: Vec<u64> = slots
        .iter()
        .map(|s| slot_seed(spec.seed.unwrap_or(0), &unit.model, unit.mode, *s))
        .collect();
    let single = shared
        .single_sample
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&dead_key);
    let provider = provider_for(ctx, &unit.model, &shared.permits, &shared.halt);
    let result = match provider.as_ref() {
        ProviderSlot::Broken(msg) => Err(ProviderError::Fatal(msg.clone())),
        ProviderSlot::Ready(p) => {
            rate_samples(
                instrument,
                &crate::observe::Traced::new(p.as_ref(), &spec.name, model),
                &CellRequest {
                    slot: SlotRequest {
                        prompt,
                        temperature: model.sampling_temperature(spec.temperature),
                        max_attempts: spec.max_attempts,
                        fallback_max_tokens: model
                            .fallback_max_tokens
                            .unwrap_or(DEFAULT_FALLBACK_MAX_TOKENS),
                        seed: None,
                    },
                    seeds,
                    max_samples: if single {
                        1
                    } else {
                        model.profile().samples_for(u32::MAX)
                    },
                },
            )
            .await
        }
    };
    let report = |slot: u32, outcome: Outcome| {
        Finished::Report(Box::new(SlotReport {
            lease_id: Some(lease_id.to_string()),
            unit: unit.clone(),
            slot,
            outcome,
        }))
    };
    match result {
        Ok(out) => {
            if out.refused_multi_sample
                && shared
                    .single_sample
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(dead_key.clone())
            {
                tracing::warn!(
                    model = %unit.model,
                    "the provider refused several samples per request (`n`); this model is asked one sample per request for the rest of the sweep"
                );
            }
            shared
                .stats
                .answered
                .fetch_add(out.records.len() as u64, Ordering::Relaxed);
            slots
                .iter()
                .zip(out.records)
                .map(|(s, r)| report(*s, Outcome::Record(SlotRecord::Sample(r))))
                .collect()
        }
        Err(ProviderError::Fatal(msg)) => {
            let first = shared
                .dead_models
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(dead_key, ())
                .is_none();
            if first {
                tracing::error!(model = %unit.model, "the provider refused for good: {msg}");
            }
            let why = format!("worker {}: {msg}", shared.cfg.name);
            slots
                .iter()
                .map(|s| report(*s, Outcome::Fatal(why.clone())))
                .collect()
        }
        Err(ProviderError::RateLimited { retry_after }) => {
            shared
                .permits
                .throttled(model.rate_group(), retry_after)
                .await;
            abandoned()
        }
        Err(ProviderError::Retryable(msg) | ProviderError::Unreachable(msg)) => {
            if !shared.stopping.load(Ordering::Acquire) {
                tracing::warn!(model = %unit.model, slots = slots.len(), "request failed; the cell's slots go back to the queue: {msg}");
            }
            abandoned()
        }
    }
}

/// Collects finished slots and reports them in batches; a lease whose slots
/// are all accounted for is released in the same call.
async fn reporter<L: Link>(
    shared: Arc<Shared<L>>,
    mut rx: mpsc::UnboundedReceiver<Done>,
    held: Arc<Mutex<HashMap<String, usize>>>,
    outstanding: Arc<AtomicU64>,
    progress: Arc<tokio::sync::Notify>,
) {
    let cfg = &shared.cfg;
    let mut batch: Vec<SlotReport> = Vec::new();
    let mut release: Vec<String> = Vec::new();
    // The trace the batch's report joins: its first traced slot's.
    let mut trace: Option<String> = None;
    let mut closed = false;
    while !closed || !batch.is_empty() || !release.is_empty() {
        if !closed {
            let deadline = tokio::time::sleep(cfg.report_every);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    d = rx.recv() => match d {
                        Some(d) => {
                            account(&held, &mut release, &d.lease_id);
                            outstanding.fetch_sub(1, Ordering::AcqRel);
                            if trace.is_none() {
                                trace = d.traceparent;
                            }
                            match d.finished {
                                Finished::Report(r) => batch.push(*r),
                                Finished::Abandoned => {
                                    shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            progress.notify_waiters();
                            if batch.len() >= cfg.report_batch {
                                break;
                            }
                        }
                        None => {
                            closed = true;
                            break;
                        }
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        if batch.is_empty() && release.is_empty() {
            continue;
        }
        // Send; on failure keep everything and try again (never drop a result).
        let mut backoff = Duration::from_millis(100);
        loop {
            match shared
                .link
                .report(&cfg.name, batch.clone(), release.clone(), trace.clone())
                .await
            {
                Ok(_) => {
                    shared
                        .stats
                        .reported
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                    release.clear();
                    trace = None;
                    break;
                }
                Err(LinkError::Unavailable(m)) => {
                    tracing::warn!(worker = %cfg.name, "reporting failed (will retry): {m}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(worker = %cfg.name, "the coordinator refused a report; dropping it: {e}");
                    batch.clear();
                    release.clear();
                    trace = None;
                    break;
                }
            }
        }
    }
}

fn account(held: &Mutex<HashMap<String, usize>>, release: &mut Vec<String>, lease_id: &str) {
    let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = h.get_mut(lease_id) {
        *n -= 1;
        if *n == 0 {
            h.remove(lease_id);
            release.push(lease_id.to_string());
        }
    }
}

/// Keeps the held leases alive.
async fn extender<L: Link>(shared: Arc<Shared<L>>, held: Arc<Mutex<HashMap<String, usize>>>) {
    let mut tick = tokio::time::interval(shared.cfg.extend_every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ids: Vec<String> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            continue;
        }
        match shared.link.extend(ids).await {
            Ok(lost) if !lost.is_empty() => {
                tracing::info!(
                    worker = %shared.cfg.name,
                    leases = lost.len(),
                    "leases expired before they were extended; their results are still reported"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(worker = %shared.cfg.name, "extending leases failed: {e}"),
        }
    }
}
