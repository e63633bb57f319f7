//! The coordinator's core, independent of gRPC: it expands sweeps into units
//! of densely numbered slots, grants leases in batches paced by the rate
//! groups, records each result exactly once through the store, takes back
//! expired leases, keeps progress counters and, when a unit is complete,
//! writes its rating file (and the metrics) through [`crate::output`].
//!
//! Memory holds only per-unit counters (never one object per slot): the
//! store owns which slots are leased, queued or recorded, so a coordinator
//! restarted from the store alone ([`Engine::resume`]) carries on where the
//! previous one stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moralsweep_common::slot::{SlotRecord, UnitShape};
use moralsweep_common::{Mode, SweepSpec};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::pacing::{Limits, RateGroups};
use crate::store::{Store, StoreError, UnitKey};
use crate::sweep::{tokens_estimate, unit_label, SweepRecord, SweepState};

/// Tunables of the engine (tests make them short).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a lease lasts unless extended.
    pub lease_ttl: Duration,
    /// How often expired leases are taken back.
    pub reclaim_every: Duration,
    /// Most slots granted in one lease call.
    pub max_lease_slots: u32,
    /// Where the files of sweeps submitted over the network go
    /// (`<data_root>/<sweep>`).
    pub data_root: PathBuf,
    /// Skip writing metric files (benchmarks).
    pub write_metrics: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease_ttl: Duration::from_secs(60),
            reclaim_every: Duration::from_secs(5),
            max_lease_slots: 1024,
            data_root: PathBuf::from("moralsweep-results"),
            write_metrics: true,
        }
    }
}

/// Why an engine call failed; the gRPC layer maps each kind to a status code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Slots of one unit granted to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub lease_id: String,
    pub unit: UnitKey,
    pub slots: Vec<u32>,
    pub deadline_ms: u64,
    pub rate_group: String,
}

/// The answer to a lease call.
#[derive(Debug, Clone, Default)]
pub struct LeaseOutcome {
    pub grants: Vec<Grant>,
    /// When nothing was granted: how long to wait before asking again.
    pub retry_after: Duration,
    /// The W3C trace context of the coordinator's span that granted the
    /// slots (the Lease reply's `traceparent` metadata): the worker's spans
    /// of the lease continue its trace. `None` in process or without export.
    pub traceparent: Option<String>,
}

/// What a worker found for one slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Record(SlotRecord),
    /// The provider refused for good: the model stops with this message.
    Fatal(String),
}

/// One reported slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotReport {
    pub lease_id: Option<String>,
    pub unit: UnitKey,
    pub slot: u32,
    pub outcome: Outcome,
}

/// What a report changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportOutcome {
    pub recorded: u32,
    pub duplicates: u32,
}

/// Progress of one unit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UnitProgress {
    pub model: String,
    pub mode: Mode,
    pub total: u64,
    pub done: u64,
    /// running, done, failed or cancelled.
    pub state: &'static str,
    pub message: String,
}

/// Progress of one sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SweepProgress {
    pub sweep: String,
    pub state: &'static str,
    pub units: Vec<UnitProgress>,
    pub total: u64,
    pub done: u64,
    pub leased: u64,
    pub output: PathBuf,
    pub messages: Vec<String>,
}

impl SweepProgress {
    /// Every unit is final (done or failed) or the sweep was cancelled.
    pub fn finished(&self) -> bool {
        self.state != "running"
    }
}

#[derive(Debug)]
struct UnitRt {
    key: UnitKey,
    shape: UnitShape,
    total: u32,
    done: u64,
    group: String,
    tokens_each: u64,
    /// The store had nothing to grant recently: skip the unit until then
    /// (cleared when slots come back).
    idle_until: Option<Instant>,
}

#[derive(Debug)]
struct SweepRt {
    record: SweepRecord,
    units: Vec<UnitRt>,
    /// Why the last attempt to write the sweep's files failed (a full or
    /// read-only disk, a file where a folder should be); shown by `status`
    /// as a failed sweep until a retry of the finisher succeeds. Memory
    /// only: a restarted coordinator simply tries again.
    write_error: Option<String>,
}

impl SweepRt {
    fn unit_runnable(&self, u: &UnitRt) -> bool {
        self.record.state == SweepState::Running
            && u.done < u.total as u64
            && !self.record.failed_models.contains_key(&u.key.model)
    }
}

#[derive(Debug, Default)]
struct State {
    sweeps: BTreeMap<String, SweepRt>,
    /// Round-robin position over all units, so that every model gets leases.
    cursor: usize,
}

/// The coordinator's core. Cheap to share (`Arc<Engine>`).
pub struct Engine {
    store: Arc<dyn Store>,
    rates: Arc<RateGroups>,
    cfg: EngineConfig,
    state: Mutex<State>,
    /// Serialises sweep record writes so that a later state never loses to an
    /// earlier one.
    record_writes: tokio::sync::Mutex<()>,
    /// Serialises the writing of a cancelled sweep's partial files (two
    /// fetches at once) with each other and with deletion.
    partial_writes: tokio::sync::Mutex<()>,
    /// Sweeps with a unit to finalise; drained by the finisher task.
    finish_tx: mpsc::UnboundedSender<String>,
    finish_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Bumped on every change of progress (watchers wake on it).
    changes: watch::Sender<u64>,
    lease_seq: AtomicU64,
    boot: u64,
    /// The trace context of each sweep's submission span (this process's
    /// submissions only), so the leases of a sweep link to it.
    sweep_traces: Mutex<HashMap<String, String>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn build_units(record: &SweepRecord) -> Vec<UnitRt> {
    record
        .units()
        .into_iter()
        .map(|(key, shape)| {
            let model = record.model(&key.model).expect("unit of a known model");
            UnitRt {
                group: model.rate_group().to_string(),
                tokens_each: tokens_estimate(record, model, key.mode),
                total: u32::try_from(shape.len()).unwrap_or(u32::MAX),
                done: 0,
                key,
                shape,
                idle_until: None,
            }
        })
        .collect()
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, rates: Arc<RateGroups>, cfg: EngineConfig) -> Arc<Self> {
        let (finish_tx, finish_rx) = mpsc::unbounded_channel();
        let (changes, _) = watch::channel(0);
        let boot = now_ms() ^ ((std::process::id() as u64) << 40);
        Arc::new(Engine {
            store,
            rates,
            cfg,
            state: Mutex::new(State::default()),
            record_writes: tokio::sync::Mutex::new(()),
            partial_writes: tokio::sync::Mutex::new(()),
            finish_tx,
            finish_rx: Mutex::new(Some(finish_rx)),
            changes,
            sweep_traces: Mutex::new(HashMap::new()),
            lease_seq: AtomicU64::new(0),
            boot,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn rates(&self) -> &Arc<RateGroups> {
        &self.rates
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever progress does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn configure_rates(&self, record: &SweepRecord) {
        for m in &record.spec.models {
            self.rates.configure(
                m.rate_group(),
                Limits {
                    rpm: m.rpm,
                    tpm: m.tpm,
                },
            );
        }
    }

    /// Loads every sweep from the store (after a start or restart) and
    /// queues the finished-but-unwritten units for their files.
    pub async fn resume(&self) -> EngineResult<usize> {
        let ids = self.store.sweep_ids().await?;
        let mut n = 0;
        for id in ids {
            let Some(bytes) = self.store.load_sweep(&id).await? else {
                continue;
            };
            let record = SweepRecord::from_bytes(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("sweep record {id:?} cannot be decoded: {e}"))
            })?;
            self.install(record).await?;
            n += 1;
        }
        Ok(n)
    }

    async fn install(&self, record: SweepRecord) -> EngineResult<()> {
        let mut units = build_units(&record);
        for u in &mut units {
            u.done = self.store.done_count(&u.key).await?;
        }
        self.configure_rates(&record);
        let name = record.name().to_string();
        let running = record.state == SweepState::Running;
        if running {
            tracing::info!(sweep = %name, "sweep loaded");
        }
        self.lock().sweeps.insert(
            name.clone(),
            SweepRt {
                record,
                units,
                write_error: None,
            },
        );
        if running {
            let _ = self.finish_tx.send(name);
        }
        self.bump();
        Ok(())
    }

    /// Checks a spec received over the network: the rules of
    /// [`SweepSpec::validate`] (keys are checked by the workers, which hold
    /// them) and the personas' consistency with the spec.
    pub fn check_submission(
        spec: &SweepSpec,
        spec_name: &str,
        personas: &[String],
    ) -> EngineResult<()> {
        spec.validate(
            std::path::Path::new(spec_name),
            moralsweep_common::spec::KeyCheck::Skip,
        )
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        if personas.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "sweep spec {spec_name}: no personas were sent; the client reads the spec's `personas` file and sends its entries"
            )));
        }
        if let Some(n) = spec.persona_count {
            if personas.len() != n {
                return Err(EngineError::InvalidArgument(format!(
                    "sweep spec {spec_name}: `persona_count` is {n} but {} personas were sent",
                    personas.len()
                )));
            }
        }
        if let Some(i) = personas.iter().position(|p| p.trim().is_empty()) {
            return Err(EngineError::InvalidArgument(format!(
                "sweep spec {spec_name}: persona {i} is empty; every persona needs a description"
            )));
        }
        // One limit on a sweep's size, the same as `run` and `submit` check.
        spec.check_size(std::path::Path::new(spec_name), personas.len())
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        Ok(())
    }

    /// Adds a sweep. Submitting the same sweep again is a no-op (`Ok(false)`);
    /// a different sweep under a known name is refused.
    #[tracing::instrument(name = "sweep", skip_all, fields(sweep = %spec.name, models = spec.models.len()))]
    pub async fn submit(
        &self,
        spec: SweepSpec,
        personas: Vec<String>,
        output: PathBuf,
    ) -> EngineResult<bool> {
        let name = spec.name.clone();
        if let Some(tp) = moralsweep_telemetry::propagation::current_traceparent() {
            self.sweep_traces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), tp);
        }
        let record = SweepRecord::new(spec, personas, output);
        let _w = self.record_writes.lock().await;
        if self.store.create_sweep(&name, &record.to_bytes()).await? {
            drop(_w);
            tracing::info!(sweep = %name, slots = record.total_slots(), "sweep submitted");
            self.install(record).await?;
            return Ok(true);
        }
        drop(_w);
        let existing = match self.store.load_sweep(&name).await? {
            Some(b) => SweepRecord::from_bytes(&b).map_err(|e| {
                StoreError::Corrupt(format!("sweep record {name:?} cannot be decoded: {e}"))
            })?,
            None => {
                return Err(EngineError::FailedPrecondition(format!(
                    "sweep {name:?} vanished while being submitted; submit it again"
                )))
            }
        };
        if existing.spec == record.spec && existing.personas == record.personas {
            if !self.lock().sweeps.contains_key(&name) {
                self.install(existing).await?;
            }
            Ok(false)
        } else if existing.personas == record.personas
            && operational_only(&existing.spec, &record.spec)
        {
            // Only limits or connection details changed: adopt them.
            if !self.lock().sweeps.contains_key(&name) {
                self.install(existing).await?;
            }
            {
                let mut st = self.lock();
                if let Some(s) = st.sweeps.get_mut(&name) {
                    s.record.spec = record.spec.clone();
                    for u in &mut s.units {
                        if let Some(m) = record.spec.models.iter().find(|m| m.key == u.key.model) {
                            u.group = m.rate_group().to_string();
                        }
                    }
                }
            }
            self.configure_rates(&record);
            self.persist(&name).await?;
            tracing::info!(sweep = %name, "sweep limits updated");
            Ok(false)
        } else {
            Err(EngineError::AlreadyExists(format!(
                "a different sweep named {name:?} exists; give the new sweep another `name`, or remove the old one: \
                 `moralsweep results {name} --coordinator URL --out DIR` keeps its ratings, then \
                 `moralsweep cancel {name} --coordinator URL` and `moralsweep delete {name} --coordinator URL`"
            )))
        }
    }

    /// The record of a sweep as held in memory.
    pub fn record(&self, sweep: &str) -> EngineResult<SweepRecord> {
        self.lock()
            .sweeps
            .get(sweep)
            .map(|s| s.record.clone())
            .ok_or_else(|| not_found(sweep))
    }

    async fn persist(&self, sweep: &str) -> EngineResult<()> {
        let _w = self.record_writes.lock().await;
        let bytes = self.record(sweep)?.to_bytes();
        self.store.update_sweep(sweep, &bytes).await?;
        Ok(())
    }

    fn next_lease_id(&self) -> String {
        let n = self.lease_seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{:x}", self.boot, n)
    }

    /// The trace context of a sweep's submission span, when this process
    /// took the submission and spans are exported.
    pub fn sweep_trace(&self, sweep: &str) -> Option<String> {
        self.sweep_traces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sweep)
            .cloned()
    }

    /// Grants up to `max` slots (of one or more units) to `worker`, each
    /// with one permit of its rate group.
    pub async fn lease(&self, worker: &str, max: u32) -> EngineResult<LeaseOutcome> {
        crate::observe::worker_seen(worker);
        let mut left = max.min(self.cfg.max_lease_slots);
        let mut out = LeaseOutcome::default();
        let mut tried = 0usize;
        let mut wait: Option<Duration> = None;
        while left > 0 {
            // Pick the next runnable unit (round robin) and take its permits.
            let pick = {
                let mut st = self.lock();
                let flat: Vec<(String, usize)> = st
                    .sweeps
                    .iter()
                    .flat_map(|(name, s)| (0..s.units.len()).map(move |i| (name.clone(), i)))
                    .collect();
                if flat.is_empty() || tried >= flat.len() {
                    None
                } else {
                    let mut found = None;
                    let now = Instant::now();
                    while tried < flat.len() {
                        let (name, i) = &flat[st.cursor % flat.len()];
                        st.cursor = st.cursor.wrapping_add(1);
                        tried += 1;
                        let s = &st.sweeps[name];
                        let u = &s.units[*i];
                        if !s.unit_runnable(u) || u.idle_until.is_some_and(|t| now < t) {
                            continue;
                        }
                        let permits = self.rates.take(&u.group, left, u.tokens_each);
                        if permits == 0 {
                            let w = self.rates.next_ready(&u.group);
                            wait = Some(wait.map_or(w, |x| x.min(w)));
                            continue;
                        }
                        found = Some((u.key.clone(), u.total, permits, u.group.clone()));
                        break;
                    }
                    found
                }
            };
            let Some((key, total, permits, group)) = pick else {
                break;
            };
            let lease_id = self.next_lease_id();
            let deadline_ms = now_ms() + self.cfg.lease_ttl.as_millis() as u64;
            let slots = self
                .store
                .grant(&key, total, permits, &lease_id, worker, deadline_ms)
                .await?;
            if (slots.len() as u32) < permits {
                // Nothing more to hand out until leases come back.
                let mut st = self.lock();
                if let Some(u) = find_unit_mut(&mut st, &key) {
                    u.idle_until = Some(Instant::now() + Duration::from_millis(500));
                }
            }
            if slots.is_empty() {
                continue;
            }
            left -= slots.len() as u32;
            moralsweep_telemetry::metrics::global().lease_granted(1);
            out.grants.push(Grant {
                lease_id,
                unit: key,
                slots,
                deadline_ms,
                rate_group: group,
            });
        }
        if out.grants.is_empty() {
            out.retry_after = wait
                .unwrap_or(Duration::from_millis(250))
                .clamp(Duration::from_millis(20), Duration::from_secs(2));
        }
        Ok(out)
    }

    /// Records reported results (each slot at most once, whoever reports it
    /// and however late) and releases the leases the worker is done with.
    pub async fn report(
        &self,
        reports: Vec<SlotReport>,
        release: &[String],
    ) -> EngineResult<ReportOutcome> {
        type Batch = Vec<(u32, Vec<u8>)>;
        let mut groups: HashMap<(UnitKey, Option<String>), Batch> = HashMap::new();
        let mut fatal: Vec<(UnitKey, String)> = Vec::new();
        let mut out = ReportOutcome::default();
        {
            let st = self.lock();
            for r in reports {
                let Some(s) = st.sweeps.get(&r.unit.sweep) else {
                    return Err(not_found(&r.unit.sweep));
                };
                let Some(u) = s.units.iter().find(|u| u.key == r.unit) else {
                    return Err(EngineError::InvalidArgument(format!(
                        "sweep {:?} has no unit {}",
                        r.unit.sweep,
                        unit_label(&r.unit.model, r.unit.mode)
                    )));
                };
                if r.slot >= u.total {
                    return Err(EngineError::InvalidArgument(format!(
                        "slot {} is out of range for {} of sweep {:?} ({} slots)",
                        r.slot,
                        unit_label(&r.unit.model, r.unit.mode),
                        r.unit.sweep,
                        u.total
                    )));
                }
                match r.outcome {
                    Outcome::Record(rec) => {
                        let kind_ok = matches!(
                            (&rec, r.unit.mode),
                            (SlotRecord::Logprob(_), Mode::Logprob)
                                | (SlotRecord::Sample(_), Mode::Persona | Mode::SelfMode)
                        );
                        if !kind_ok {
                            return Err(EngineError::InvalidArgument(format!(
                                "slot {} of {}: a {} unit takes {} results",
                                r.slot,
                                unit_label(&r.unit.model, r.unit.mode),
                                r.unit.mode,
                                if r.unit.mode == Mode::Logprob {
                                    "logprob"
                                } else {
                                    "sample"
                                }
                            )));
                        }
                        let bytes = serde_json::to_vec(&rec).expect("records serialise");
                        groups
                            .entry((r.unit, r.lease_id))
                            .or_default()
                            .push((r.slot, bytes));
                    }
                    Outcome::Fatal(msg) => fatal.push((r.unit, msg)),
                }
            }
        }
        let mut finished = Vec::new();
        for ((key, lease), results) in groups {
            let flags = self.store.record(&key, lease.as_deref(), &results).await?;
            let newly = flags.iter().filter(|f| **f).count() as u64;
            out.recorded += newly as u32;
            out.duplicates += (flags.len() as u64 - newly) as u32;
            if newly > 0 {
                moralsweep_telemetry::metrics::global().slots_done(&key.sweep, &key.model, newly);
                let mut st = self.lock();
                if let Some(u) = find_unit_mut(&mut st, &key) {
                    u.done += newly;
                    if u.done >= u.total as u64 {
                        finished.push(key.sweep.clone());
                    }
                }
            }
        }
        for (key, msg) in fatal {
            moralsweep_telemetry::metrics::global().slot_failed(&key.sweep, &key.model);
            self.fail_model(&key.sweep, &key.model, &msg).await?;
            finished.push(key.sweep.clone());
        }
        let mut requeued = 0;
        for id in release {
            requeued += self.store.release(id).await?;
        }
        if requeued > 0 {
            self.wake_units();
        }
        finished.dedup();
        for s in finished {
            let _ = self.finish_tx.send(s);
        }
        if out.recorded > 0 {
            self.bump();
        }
        Ok(out)
    }

    /// Stops a model after a fatal provider error; the rest of the sweep goes on.
    pub async fn fail_model(&self, sweep: &str, model: &str, message: &str) -> EngineResult<()> {
        let changed = {
            let mut st = self.lock();
            match st.sweeps.get_mut(sweep) {
                // A fatal report for a finished model or a stopped sweep
                // changes nothing (it may be late, repeated or garbage).
                Some(s)
                    if s.record.state == SweepState::Running
                        && !s.record.failed_models.contains_key(model)
                        && s.units
                            .iter()
                            .any(|u| u.key.model == model && u.done < u.total as u64) =>
                {
                    s.record
                        .failed_models
                        .insert(model.to_string(), message.to_string());
                    true
                }
                _ => false,
            }
        };
        if changed {
            tracing::error!(sweep, model, "model stopped: {message}");
            self.persist(sweep).await?;
            self.bump();
        }
        Ok(())
    }

    fn wake_units(&self) {
        let mut st = self.lock();
        for s in st.sweeps.values_mut() {
            for u in &mut s.units {
                u.idle_until = None;
            }
        }
    }

    /// Moves the deadlines of the given leases; returns the ids that no
    /// longer exist and the new deadline.
    pub async fn extend(&self, lease_ids: &[String]) -> EngineResult<(Vec<String>, u64)> {
        let deadline = now_ms() + self.cfg.lease_ttl.as_millis() as u64;
        let mut lost = Vec::new();
        for id in lease_ids {
            if !self.store.extend(id, deadline).await? {
                lost.push(id.clone());
            }
        }
        Ok((lost, deadline))
    }

    /// Takes back expired leases (their slots go to the retry queue).
    pub async fn reclaim(&self) -> EngineResult<usize> {
        let leases = self.store.reclaim_expired(now_ms()).await?;
        if !leases.is_empty() {
            let span = moralsweep_telemetry::spans::reclaim_span();
            let _entered = span.enter();
            moralsweep_telemetry::spans::record_reclaims(&span, leases.len() as u64);
            let slots: usize = leases.iter().map(|l| l.slots.len()).sum();
            tracing::info!(leases = leases.len(), slots, "took back expired leases");
            self.wake_units();
        }
        Ok(leases.len())
    }

    /// Stops handing out a sweep's slots; recorded results stay.
    pub async fn cancel(&self, sweep: &str) -> EngineResult<SweepProgress> {
        {
            let mut st = self.lock();
            let s = st.sweeps.get_mut(sweep).ok_or_else(|| not_found(sweep))?;
            if s.record.state == SweepState::Running {
                s.record.state = SweepState::Cancelled;
                s.record.finished_at = Some(moralsweep_common::slot::now_timestamp());
            }
        }
        self.persist(sweep).await?;
        self.bump();
        self.progress(sweep).await
    }

    /// Removes a stopped (done or cancelled) sweep: its record, units,
    /// results and leases leave the store, and the files the coordinator
    /// wrote for it (`<output>/data`, `<output>/metrics`) are removed, so a
    /// new sweep of the same name starts clean. A running sweep must be
    /// cancelled first. Returns the number of files removed.
    pub async fn delete(&self, sweep: &str) -> EngineResult<usize> {
        let output = {
            let st = self.lock();
            let s = st.sweeps.get(sweep).ok_or_else(|| not_found(sweep))?;
            if s.record.state == SweepState::Running {
                return Err(EngineError::FailedPrecondition(format!(
                    "sweep {sweep:?} is running; stop it first with `moralsweep cancel {sweep} --coordinator URL` \
                     (and fetch what it recorded with `moralsweep results`), then delete it"
                )));
            }
            s.record.output.clone()
        };
        let _w = self.record_writes.lock().await;
        let _p = self.partial_writes.lock().await;
        self.store.delete_sweep(sweep).await?;
        self.lock().sweeps.remove(sweep);
        drop(_w);
        let removed = crate::output::remove_files(&output).map_err(|e| {
            EngineError::FailedPrecondition(format!(
                "sweep {sweep:?} was removed from the store, but its files in {} could not all be removed: {e}",
                output.display()
            ))
        })?;
        tracing::info!(sweep, files = removed, "sweep deleted");
        self.bump();
        Ok(removed)
    }

    /// For a cancelled sweep: writes the rating file of every unit that has
    /// recorded results but no complete file (rows of the recorded slots
    /// only, in slot order) and recomputes the metrics where the files
    /// allow. Returns notes for the user (what is partial, why metrics are
    /// missing). Called before the files of a cancelled sweep are sent, so
    /// they hold everything recorded so far, late reports included.
    pub async fn write_partial(&self, sweep: &str) -> EngineResult<Vec<String>> {
        let _p = self.partial_writes.lock().await;
        let (record, units) = {
            let st = self.lock();
            let s = st.sweeps.get(sweep).ok_or_else(|| not_found(sweep))?;
            if s.record.state != SweepState::Cancelled {
                return Ok(Vec::new());
            }
            let units: Vec<(UnitKey, UnitShape)> = s
                .units
                .iter()
                .filter(|u| {
                    !s.record
                        .written
                        .contains(&unit_label(&u.key.model, u.key.mode))
                })
                .map(|u| (u.key.clone(), u.shape))
                .collect();
            (s.record.clone(), units)
        };
        let mut notes = Vec::new();
        let mut any = false;
        for (key, shape) in &units {
            let label = unit_label(&key.model, key.mode);
            match crate::output::write_unit_partial(self.store.as_ref(), &record, key, *shape).await
            {
                Ok(0) => notes.push(format!("{label}: nothing was recorded; no file")),
                Ok(n) => {
                    any = true;
                    notes.push(format!("{label}: {n} of {} slots recorded", shape.len()));
                }
                Err(e) => {
                    return Err(EngineError::FailedPrecondition(format!(
                        "writing the recorded ratings of {label} of the cancelled sweep {sweep:?} failed: {e:#}"
                    )))
                }
            }
        }
        if any && self.cfg.write_metrics {
            if let Err(e) = crate::output::write_metrics(&record).await {
                notes.push(format!(
                    "metrics not computed from the partial files: {e:#}"
                ));
            }
        }
        Ok(notes)
    }

    /// Progress of one sweep (with the number of slots currently leased).
    pub async fn progress(&self, sweep: &str) -> EngineResult<SweepProgress> {
        let mut p = self.snapshot_one(sweep)?;
        p.leased = self
            .store
            .leases()
            .await?
            .iter()
            .filter(|l| l.unit.sweep == sweep)
            .map(|l| l.slots.len() as u64)
            .sum();
        Ok(p)
    }

    /// Progress of every sweep, from memory only (cheap; `leased` is 0).
    pub fn snapshot(&self) -> Vec<SweepProgress> {
        let st = self.lock();
        st.sweeps.values().map(progress_of).collect()
    }

    pub fn snapshot_one(&self, sweep: &str) -> EngineResult<SweepProgress> {
        let st = self.lock();
        st.sweeps
            .get(sweep)
            .map(progress_of)
            .ok_or_else(|| not_found(sweep))
    }

    /// Starts the background tasks: the reclaimer and the finisher.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        let me = self.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.cfg.reclaim_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.reclaim().await {
                    tracing::warn!("reclaiming expired leases failed: {e}");
                }
            }
        }));
        let rx = self
            .finish_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut rx) = rx {
            let me = self.clone();
            handles.push(tokio::spawn(async move {
                // Per sweep: the wait before its next retry after a failure
                // (a sweep whose files cannot be written is retried later,
                // never holding up the others), and whether one is queued.
                let mut delays: HashMap<String, Duration> = HashMap::new();
                let queued: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
                while let Some(sweep) = rx.recv().await {
                    // Coalesce bursts of the same sweep.
                    let mut batch = vec![sweep];
                    while let Ok(s) = rx.try_recv() {
                        if !batch.contains(&s) {
                            batch.push(s);
                        }
                    }
                    for s in batch {
                        match me.finish(&s).await {
                            Ok(()) => {
                                delays.remove(&s);
                                me.set_write_error(&s, None);
                            }
                            Err(e) => {
                                tracing::warn!(sweep = %s, "writing the sweep's files failed (will retry): {e:#}");
                                me.set_write_error(&s, Some(format!("{e:#}")));
                                let d = delays
                                    .entry(s.clone())
                                    .or_insert(Duration::from_millis(100));
                                *d = (*d * 2).min(WRITE_RETRY_CAP);
                                let fresh = queued
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(s.clone());
                                if fresh {
                                    let (tx, wait, queued) =
                                        (me.finish_tx.clone(), *d, queued.clone());
                                    tokio::spawn(async move {
                                        tokio::time::sleep(wait).await;
                                        queued.lock().unwrap_or_else(|e| e.into_inner()).remove(&s);
                                        let _ = tx.send(s);
                                    });
                                }
                            }
                        }
                    }
                }
            }));
        }
        handles
    }

    /// Records (or clears) why writing a sweep's files failed, for `status`.
    fn set_write_error(&self, sweep: &str, error: Option<String>) {
        let changed = {
            let mut st = self.lock();
            match st.sweeps.get_mut(sweep) {
                Some(s) if s.write_error != error => {
                    if error.is_none() {
                        tracing::info!(
                            sweep,
                            "the sweep's files were written after earlier failures"
                        );
                    }
                    s.write_error = error;
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.bump();
        }
    }

    /// Writes the files of every complete unit of `sweep` that has none
    /// yet, the metrics when a model is complete, and the comparison tables
    /// when the sweep is.
    #[tracing::instrument(name = "finish", skip_all, fields(sweep = %sweep))]
    pub async fn finish(&self, sweep: &str) -> anyhow::Result<()> {
        let (to_write, record) = {
            let st = self.lock();
            let Some(s) = st.sweeps.get(sweep) else {
                return Ok(());
            };
            if s.record.state != SweepState::Running {
                return Ok(());
            }
            let v: Vec<(UnitKey, UnitShape)> = s
                .units
                .iter()
                .filter(|u| {
                    u.done >= u.total as u64
                        && !s.record.failed_models.contains_key(&u.key.model)
                        && !s
                            .record
                            .written
                            .contains(&unit_label(&u.key.model, u.key.mode))
                })
                .map(|u| (u.key.clone(), u.shape))
                .collect();
            (v, s.record.clone())
        };
        for (key, shape) in &to_write {
            crate::output::write_unit(self.store.as_ref(), &record, key, *shape).await?;
            tracing::info!(sweep, model = %key.model, mode = %key.mode, "rating file written");
            let mut st = self.lock();
            if let Some(s) = st.sweeps.get_mut(sweep) {
                s.record.written.insert(unit_label(&key.model, key.mode));
            }
        }
        let (all_final, model_complete) = {
            let st = self.lock();
            let Some(s) = st.sweeps.get(sweep) else {
                return Ok(());
            };
            // Final means written (or stopped): a unit that completed after
            // `to_write` was taken gets its own turn of the finisher.
            let all_final = s.units.iter().all(|u| {
                s.record.failed_models.contains_key(&u.key.model)
                    || s.record
                        .written
                        .contains(&unit_label(&u.key.model, u.key.mode))
            });
            // A model whose units are all written just now needs its metrics.
            let complete = to_write.iter().any(|(k, _)| {
                s.units.iter().filter(|u| u.key.model == k.model).all(|u| {
                    s.record
                        .written
                        .contains(&unit_label(&u.key.model, u.key.mode))
                })
            });
            (all_final, complete)
        };
        if !to_write.is_empty() {
            self.persist(sweep).await?;
        }
        if self.cfg.write_metrics && (model_complete || (all_final && !to_write.is_empty())) {
            let record = self.record(sweep)?;
            crate::output::write_metrics(&record).await?;
        }
        if all_final {
            if self.cfg.write_metrics && to_write.is_empty() {
                // Restarted after the last file but before the end: make sure
                // the tables reflect every file.
                let record = self.record(sweep)?;
                crate::output::write_metrics(&record).await?;
            }
            {
                let mut st = self.lock();
                if let Some(s) = st.sweeps.get_mut(sweep) {
                    s.record.state = SweepState::Done;
                    s.record.finished_at = Some(moralsweep_common::slot::now_timestamp());
                }
            }
            self.persist(sweep).await?;
            tracing::info!(sweep, "sweep done");
        }
        self.bump();
        Ok(())
    }
}

/// The longest wait between two attempts to write a sweep's files after a
/// failure (the first retry comes after 200 ms, then doubling).
pub const WRITE_RETRY_CAP: Duration = Duration::from_secs(10);

/// Whether two specs differ at most in how requests are sent (limits,
/// endpoints, key locations, timeouts), not in what is asked or recorded.
pub fn operational_only(a: &SweepSpec, b: &SweepSpec) -> bool {
    fn strip(s: &SweepSpec) -> SweepSpec {
        let mut s = s.clone();
        for m in &mut s.models {
            m.rpm = None;
            m.tpm = None;
            m.rate_group = None;
            m.concurrency = None;
            m.timeout_secs = None;
            m.unreachable_timeout_secs = None;
            m.base_url = None;
            m.api_key_env = None;
            m.api_key_file = None;
            m.headers.clear();
        }
        s.output = PathBuf::new();
        s.personas = PathBuf::new();
        s
    }
    strip(a) == strip(b)
}

fn write_failed_message(e: &str) -> String {
    format!(
        "writing the files failed: {e}; fix the cause (the coordinator retries at least every {} s) or restart the coordinator",
        WRITE_RETRY_CAP.as_secs()
    )
}

fn not_found(sweep: &str) -> EngineError {
    EngineError::NotFound(format!(
        "no sweep named {sweep:?}; `moralsweep status` lists the known sweeps"
    ))
}

fn find_unit_mut<'a>(st: &'a mut State, key: &UnitKey) -> Option<&'a mut UnitRt> {
    st.sweeps
        .get_mut(&key.sweep)?
        .units
        .iter_mut()
        .find(|u| u.key == *key)
}

fn progress_of(s: &SweepRt) -> SweepProgress {
    let units: Vec<UnitProgress> = s
        .units
        .iter()
        .map(|u| {
            let failed = s.record.failed_models.get(&u.key.model);
            let unwritten = !s
                .record
                .written
                .contains(&unit_label(&u.key.model, u.key.mode));
            let write_failed = s
                .write_error
                .as_ref()
                .filter(|_| u.done >= u.total as u64 && unwritten && failed.is_none());
            let state = if write_failed.is_some() {
                "failed"
            } else if u.done >= u.total as u64 {
                "done"
            } else if failed.is_some() {
                "failed"
            } else if s.record.state == SweepState::Cancelled {
                "cancelled"
            } else {
                "running"
            };
            UnitProgress {
                model: u.key.model.clone(),
                mode: u.key.mode,
                total: u.total as u64,
                done: u.done.min(u.total as u64),
                state,
                message: match write_failed {
                    Some(e) => write_failed_message(e),
                    None => failed.cloned().unwrap_or_default(),
                },
            }
        })
        .collect();
    let mut messages: Vec<String> = s
        .record
        .failed_models
        .iter()
        .map(|(m, msg)| format!("model {m} stopped: {msg}"))
        .collect();
    // A sweep whose files cannot be written is not running any more in any
    // sense a user can wait for: say so (the finisher keeps retrying, and the
    // state returns to running or done once a write succeeds).
    let write_failed = s.write_error.is_some() && s.record.state == SweepState::Running;
    if let Some(e) = s.write_error.as_ref().filter(|_| write_failed) {
        messages.push(format!(
            "sweep {}: {}",
            s.record.spec.name,
            write_failed_message(e)
        ));
    }
    SweepProgress {
        sweep: s.record.spec.name.clone(),
        state: if write_failed {
            "failed"
        } else {
            s.record.state.name()
        },
        total: units.iter().map(|u| u.total).sum(),
        done: units.iter().map(|u| u.done).sum(),
        units,
        leased: 0,
        output: s.record.output.clone(),
        messages,
    }
}
