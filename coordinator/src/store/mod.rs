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
use moralsweep_protocol::UnitKey;
use serde::{Deserialize, Serialize};

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

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Unique id chosen by the coordinator.
    pub id: String,
    pub unit: UnitKey,
    /// The worker that holds it (for status and logs).
    pub worker: String,
    /// Slot indices still owned by the lease (recorded slots leave it).
    pub slots: Vec<u32>,
    /// Milliseconds since the Unix epoch after which the lease may be reclaimed.
    pub deadline_ms: u64,
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

    /// Whether the store answers (readiness).
    async fn ping(&self) -> StoreResult<()>;
}
