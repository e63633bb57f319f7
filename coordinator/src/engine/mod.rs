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
use std::time::{Duration, Instant};

use moralsweep_common::slot::{SlotRecord, UnitShape};
use moralsweep_common::{Mode, SweepSpec};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::pacing::{Limits, RateGroups};
use crate::store::{Store, StoreError};
use crate::sweep::{tokens_estimate, unit_label, SweepRecord, SweepState};
use moralsweep_protocol::{
    Grant, Lease, LeaseOutcome, Outcome, ReportOutcome, SlotReport, SweepProgress, UnitKey,
    UnitProgress,
};

mod batch;
mod finish;
mod lease;
mod metrics;
mod progress;
mod report;
pub(crate) mod seen;
mod submit;
#[cfg(test)]
mod tests;
mod usage;

pub use finish::WRITE_RETRY_CAP;
pub use submit::operational_only;

use finish::{stuck_message, write_failed_message};
use metrics::SweepMetrics;

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
    /// Where the engine counts leases, reclaims and recorded slots (the
    /// process's registry, served at `/metrics`).
    pub metrics: moralsweep_telemetry::metrics::Metrics,
    /// The engine of `moralsweep run`: a sweep whose files cannot be
    /// written ends the run, which names the cause itself, so the
    /// finisher's retry warnings (a coordinator's) go to the debug log.
    pub one_process: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease_ttl: Duration::from_secs(60),
            reclaim_every: Duration::from_secs(5),
            max_lease_slots: 1024,
            data_root: PathBuf::from("moralsweep-results"),
            write_metrics: true,
            metrics: moralsweep_telemetry::metrics::Metrics::new("coordinator"),
            one_process: false,
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

/// Why a sweep's files or metrics were not written: the engine's own
/// failure (the sweep is unknown, the store failed) or the files'.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
}

impl From<EngineError> for moralsweep_protocol::CallError {
    fn from(e: EngineError) -> Self {
        use moralsweep_protocol::{CallError, ErrorKind};
        match e {
            EngineError::InvalidArgument(m) => CallError::new(ErrorKind::InvalidArgument, m),
            EngineError::NotFound(m) => CallError::new(ErrorKind::NotFound, m),
            EngineError::AlreadyExists(m) => CallError::new(ErrorKind::AlreadyExists, m),
            EngineError::FailedPrecondition(m) => CallError::new(ErrorKind::FailedPrecondition, m),
            EngineError::Store(s) => CallError::new(
                ErrorKind::Unavailable,
                format!("the coordinator's store is unavailable: {s}; retry shortly"),
            ),
        }
    }
}

/// The engine's working state of one unit (memory only, rebuilt from the
/// store on restart): its key and shape, its counters and pacing; the
/// progress it reports is a `UnitProgress` built from it.
#[derive(Debug)]
struct UnitRt {
    key: UnitKey,
    shape: UnitShape,
    total: u32,
    done: u64,
    group: String,
    /// Estimated tokens of one single-slot request.
    tokens_each: u64,
    /// Slots per cell ([`cell_size`]): leases take whole cells and one
    /// request permit per cell when more than 1.
    cell: u32,
    /// Estimated tokens of a cell's request (input once, output per sample).
    tokens_cell: u64,
    /// Its slots go through the provider's batch API: leased without
    /// request permits (the batch API has its own queue, not the
    /// interactive rate limits).
    batched: bool,
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
    /// Why the sweep's files can never be written, when retrying cannot fix
    /// it (its stored spec no longer passes the checks, a file name the
    /// system refuses): the finisher stops retrying, no more slots are
    /// handed out (their answers could not be kept in files), and `status`
    /// says to cancel it.
    stuck: Option<String>,
    /// The units' rows and metrics on their way to the sweep's report.
    metrics: SweepMetrics,
}

impl SweepRt {
    fn unit_runnable(&self, u: &UnitRt) -> bool {
        self.stuck.is_none()
            && self.record.state == SweepState::Running
            && u.done < u.total as u64
            && self.record.unit_failed(&u.key).is_none()
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
    /// The open provider batches this process opened or handed out (sweep,
    /// id): their unit and what their worker last saw of them, as its
    /// extensions say; memory only (`status` and the progress display show
    /// it).
    batch_seen: Mutex<HashMap<BatchKey, (UnitKey, Option<String>)>>,
}

/// A provider batch: its sweep and id.
type BatchKey = (String, String);

pub use moralsweep_protocol::now_ms;

fn build_units(record: &SweepRecord) -> Vec<UnitRt> {
    record
        .units()
        .into_iter()
        .map(|(key, shape)| {
            // The judge's unit paces under the judge's rate group.
            let model = record.requester(&key).expect("unit of a known model");
            let cell = record.spec.cell_size(model, key.mode);
            UnitRt {
                group: model.rate_group().to_string(),
                tokens_each: tokens_estimate(record, model, key.mode, 1),
                cell,
                tokens_cell: tokens_estimate(record, model, key.mode, cell),
                batched: model.sends_batches(key.mode),
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
            batch_seen: Mutex::new(HashMap::new()),
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
        for m in record.spec.models.iter().chain(record.spec.judge.as_ref()) {
            self.rates.configure(
                m.rate_group(),
                Limits {
                    rpm: m.rpm,
                    tpm: m.tpm,
                },
            );
        }
    }
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
