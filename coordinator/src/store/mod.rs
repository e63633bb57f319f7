//! The store: everything that matters lives here, not in coordinator memory,
//! so a coordinator restarted from the store alone resumes every sweep.
//!
//! One interface, two implementations sharing one test suite
//! (`coordinator/tests/store_suite.rs`): Redis for the cluster and an
//! embedded file-backed store for one process.
//!
//! The model of a sweep in the store:
//! - a *sweep record* (opaque bytes the coordinator serialises: the spec,
//!   resolved personas, state);
//! - per *unit* (sweep, model key, mode) a dense slot space `0..total`
//!   (see `moralsweep_common::slot::UnitShape`), a *cursor* (slots below it
//!   were granted at least once), a *retry queue* of slots handed back or
//!   whose lease expired, the *results* (slot index -> record bytes, written
//!   at most once) and a *done counter* (number of distinct recorded slots);
//! - *leases*: a lease id owns a set of slots of one unit until its deadline.
//!
//! Every method is atomic with respect to the others (Redis: one Lua script
//! or MULTI per call; embedded: one write transaction), which is what makes
//! "nothing lost, nothing twice" hold across crashes.

use std::sync::Arc;

use async_trait::async_trait;
pub use moralsweep_protocol::Lease;
use moralsweep_protocol::{BatchRecord, UnitKey};

mod cost;
pub mod embedded;
pub mod redis;

pub use self::embedded::EmbeddedStore;
pub use self::redis::RedisStore;

/// Opens the store `target` names: a `redis://` / `rediss://` /
/// `redis+unix://` URL connects to Redis, anything else is the path of an
/// embedded store file (created if missing).
pub async fn open_store(target: &str) -> StoreResult<Arc<dyn Store>> {
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("redis://")
        || lower.starts_with("rediss://")
        || lower.starts_with("redis+unix://")
        || lower.starts_with("unix://")
    {
        Ok(Arc::new(RedisStore::connect(target).await?))
    } else {
        let path = target.to_string();
        let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(path))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the embedded store: {e}")))??;
        Ok(Arc::new(store))
    }
}

/// A store failure (connection lost, corrupt data, I/O).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("store holds data it cannot decode: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The coordinator's durable state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Saves a new sweep record; `false` (and no change) if `sweep` exists.
    async fn create_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<bool>;
    /// Replaces an existing sweep record (state changes). Does nothing if
    /// `sweep` does not exist (e.g. it was deleted meanwhile).
    async fn update_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<()>;
    async fn load_sweep(&self, sweep: &str) -> StoreResult<Option<Vec<u8>>>;
    /// All sweep ids, sorted.
    async fn sweep_ids(&self) -> StoreResult<Vec<String>>;
    /// Removes a sweep and everything under it (units, results, leases).
    async fn delete_sweep(&self, sweep: &str) -> StoreResult<()>;

    /// Atomically takes up to `max` slots of `unit` (first from its retry
    /// queue, then fresh ones from the cursor up to `total`), skipping slots
    /// already recorded, and stores them as lease `lease_id` held by
    /// `worker` until `deadline_ms`. Returns the granted slots (possibly
    /// none); no lease is stored when none are granted. A `lease_id` that
    /// names a live lease is an error (ids must be unique).
    async fn grant(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<Vec<u32>> {
        self.grant_cells(unit, total, max, 1, lease_id, worker, deadline_ms)
            .await
    }

    /// [`Store::grant`] for a unit whose slots come in cells of `cell`
    /// consecutive slots (a persona's repetitions of one item, drawn from
    /// one multi-sample request): fresh slots are taken from the cursor in
    /// whole cells, a cell only if all of it fits within `max`, and a cursor
    /// left inside a cell (by an earlier grant with a smaller cell) first
    /// completes that cell. So a cell is never split between two leases
    /// unless its slots come back through the retry queue. `cell` 1 is
    /// [`Store::grant`]; the retry queue is taken as there.
    #[allow(clippy::too_many_arguments)]
    async fn grant_cells(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        cell: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<Vec<u32>>;

    /// Records results of `unit`: each slot's record is written only if the
    /// slot has none yet (later reports of the same slot change nothing),
    /// the done counter grows by the number newly written, and the slots
    /// leave whatever lease holds them (if `lease_id` names it). Returns, per
    /// input, whether it was newly recorded. Works without a lease too (late
    /// reports after a reclaim are still recorded once).
    async fn record(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
    ) -> StoreResult<Vec<bool>>;

    /// Like [`Store::grant`], but only from the unit's retry queue: the
    /// cursor never hands out a fresh slot. For units whose slots are
    /// created by another unit's records ([`Store::record_spawning`]), such
    /// as the judge's slots of a misalignment check.
    async fn grant_queued(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<Vec<u32>>;

    /// Like [`Store::record`], and in the same atomic step, for every slot
    /// `s` newly recorded, queues the slots `s * fanout .. (s + 1) * fanout`
    /// of `spawn` (its retry queue): the work a result creates exists
    /// exactly when the result does, once, whoever reports it and however
    /// often.
    async fn record_spawning(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
        spawn: &UnitKey,
        fanout: u32,
    ) -> StoreResult<Vec<bool>>;

    /// Moves a lease's deadline; `false` if the lease no longer exists.
    async fn extend(&self, lease_id: &str, deadline_ms: u64) -> StoreResult<bool>;

    /// Hands a lease back: its unrecorded slots go to the unit's retry queue
    /// and the lease is deleted. Returns the number of slots requeued.
    async fn release(&self, lease_id: &str) -> StoreResult<u32>;

    /// Releases every lease whose deadline is before `now_ms`; returns the
    /// released leases as they were.
    async fn reclaim_expired(&self, now_ms: u64) -> StoreResult<Vec<Lease>>;

    /// All leases currently stored (for status and restart).
    async fn leases(&self) -> StoreResult<Vec<Lease>>;

    /// Number of distinct slots recorded for `unit`.
    async fn done_count(&self, unit: &UnitKey) -> StoreResult<u64>;

    /// Recorded results of `unit` with index in `from..`, in index order, at
    /// most `limit` of them. Used to write the files in slot order without
    /// holding a whole unit in memory.
    async fn scan_results(
        &self,
        unit: &UnitKey,
        from: u32,
        limit: u32,
    ) -> StoreResult<Vec<(u32, Vec<u8>)>>;

    /// Opens a provider batch for slots held by the leases `lease_ids` (of
    /// `batch.unit`): atomically, each slot of `batch.slots` still held by
    /// one of those leases and not recorded leaves its lease and belongs to
    /// the batch; the others are left out of it. The record is stored with
    /// the slots it kept (possibly none: then nothing is stored) and
    /// returned. Opening an id that is open already returns the stored
    /// record unchanged (a retried call), so a worker submits exactly the
    /// slots the store gave the batch.
    async fn open_batch(
        &self,
        lease_ids: &[String],
        batch: &BatchRecord,
    ) -> StoreResult<BatchRecord>;

    /// Notes the provider's id of open batch `id` of `sweep` once the
    /// provider accepted it; `false` if no such batch is open.
    async fn batch_submitted(&self, sweep: &str, id: &str, provider_id: &str) -> StoreResult<bool>;

    /// Moves the deadline of open batch `id` of `sweep` while `worker` holds
    /// it; `false` if it is closed or another worker claimed it.
    async fn extend_batch(
        &self,
        sweep: &str,
        id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<bool>;

    /// Hands up to `max` open batches whose deadline is before `now_ms` (their
    /// worker died or stopped polling) to `worker` until `deadline_ms`, and
    /// returns them as stored then. Their slots stay with the batch: the
    /// new holder polls the provider (or looks the batch up there), it never
    /// submits a batch that may have been accepted.
    async fn claim_batches(
        &self,
        worker: &str,
        now_ms: u64,
        deadline_ms: u64,
        max: u32,
    ) -> StoreResult<Vec<BatchRecord>>;

    /// Closes batch `id` of `sweep` once its results are recorded: its
    /// unrecorded slots (errored, expired or unanswered lines) go to the
    /// unit's retry queue and the record is deleted. Returns the number of
    /// slots requeued; 0 for a batch that is not open.
    async fn close_batch(&self, sweep: &str, id: &str) -> StoreResult<u32>;

    /// Every open batch (status, restart), ordered by sweep and id.
    async fn batches(&self) -> StoreResult<Vec<BatchRecord>>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> StoreResult<()>;

    /// Keeps `bytes` as the usage under `field` (one worker process and
    /// model) of `sweep`, unless the store holds a version of it at least
    /// `version`; [`Store::delete_sweep`] removes it (`store/cost.rs`).
    async fn put_usage(
        &self,
        sweep: &str,
        field: &str,
        version: u64,
        bytes: &[u8],
    ) -> StoreResult<()>;
    /// Every usage value of `sweep` (see [`Store::put_usage`]).
    async fn usage(&self, sweep: &str) -> StoreResult<Vec<Vec<u8>>>;
}
