//! The embedded store: one file on disk, no server, for `moralsweep run`.
//!
//! Backed by [redb](https://docs.rs/redb): every [`Store`] method is one
//! redb write transaction committed with `Durability::Immediate` (the data is
//! on disk when the call returns), so a `kill -9` at any moment leaves a file
//! that opens again and holds every acknowledged write. redb is synchronous;
//! each call runs on tokio's blocking pool and redb serialises the writers.
//!
//! Tables (keys are byte strings built by [`unit_prefix`], so one unit's
//! rows are contiguous and in slot order):
//! - `sweeps`: sweep id -> sweep record;
//! - `units`: unit prefix -> (cursor, done counter);
//! - `retry`: unit prefix ++ slot (big-endian) -> () — the retry queue,
//!   taken lowest slot first;
//! - `results`: unit prefix ++ slot (big-endian) -> record bytes;
//! - `leases`: lease id -> the [`Lease`] as JSON;
//! - `deadlines`: (deadline, lease id) -> (), the expiry index;
//! - `batches`: sweep prefix ++ batch id -> the [`BatchRecord`] as JSON.

use std::collections::HashSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Lease, Store, StoreError, StoreResult};
use moralsweep_protocol::{BatchRecord, UnitKey};

const SWEEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("sweeps");
const UNITS: TableDefinition<&[u8], (u32, u64)> = TableDefinition::new("units");
const RETRY: TableDefinition<&[u8], ()> = TableDefinition::new("retry");
const RESULTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("results");
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
const DEADLINES: TableDefinition<(u64, &str), ()> = TableDefinition::new("deadlines");
const BATCHES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("batches");

mod keys;
mod txn;

use keys::*;
use txn::release_in;

/// A [`Store`] in one local file.
#[derive(Clone)]
pub struct EmbeddedStore {
    /// Shared with the blocking tasks that run each transaction.
    db: Arc<Database>,
    /// For error messages.
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path`. A file left by a process
    /// killed mid-write is repaired by redb on open.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    backend(
                        &path,
                        format!("cannot create directory {}: {e}", parent.display()),
                    )
                })?;
            }
        }
        // An empty file is a state file that lost its contents (a fresh
        // one is never empty once opened): starting it over would ask every
        // recorded slot again without a word.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Err(backend(
                &path,
                "is empty (0 bytes): the sweep's recorded answers in it are gone (truncated or never saved). \
                 Restore it from a backup, or delete it to start the sweep over (every slot is asked again)",
            ));
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => backend(
                &path,
                "is in use by another process: is another `moralsweep run` of this sweep running? Wait for it or stop it",
            ),
            other => backend(
                &path,
                format!(
                    "cannot be read as a state file ({other}): it is damaged. Restore it from a backup, \
                     or delete it to start the sweep over (every slot is asked again)"
                ),
            ),
        })?;
        // Create every table up front so read transactions find them.
        let txn = db.begin_write().map_err(|e| backend(&path, e))?;
        {
            txn.open_table(SWEEPS).map_err(|e| backend(&path, e))?;
            txn.open_table(UNITS).map_err(|e| backend(&path, e))?;
            txn.open_table(RETRY).map_err(|e| backend(&path, e))?;
            txn.open_table(RESULTS).map_err(|e| backend(&path, e))?;
            txn.open_table(LEASES).map_err(|e| backend(&path, e))?;
            txn.open_table(DEADLINES).map_err(|e| backend(&path, e))?;
            txn.open_table(BATCHES).map_err(|e| backend(&path, e))?;
        }
        txn.commit().map_err(|e| backend(&path, e))?;
        Ok(Self {
            db: Arc::new(db),
            path: Arc::new(path),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<bool> {
        let (sweep, record) = (sweep.to_string(), record.to_vec());
        self.write(move |txn, path| {
            let mut t = txn.open_table(SWEEPS).map_err(|e| backend(path, e))?;
            if t.get(sweep.as_str())
                .map_err(|e| backend(path, e))?
                .is_some()
            {
                return Ok(false);
            }
            t.insert(sweep.as_str(), record.as_slice())
                .map_err(|e| backend(path, e))?;
            Ok(true)
        })
        .await
    }

    async fn update_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<()> {
        let (sweep, record) = (sweep.to_string(), record.to_vec());
        self.write(move |txn, path| {
            let mut t = txn.open_table(SWEEPS).map_err(|e| backend(path, e))?;
            if t.get(sweep.as_str())
                .map_err(|e| backend(path, e))?
                .is_some()
            {
                t.insert(sweep.as_str(), record.as_slice())
                    .map_err(|e| backend(path, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn load_sweep(&self, sweep: &str) -> StoreResult<Option<Vec<u8>>> {
        let sweep = sweep.to_string();
        self.read(move |txn, path| {
            let t = txn.open_table(SWEEPS).map_err(|e| backend(path, e))?;
            let v = t.get(sweep.as_str()).map_err(|e| backend(path, e))?;
            Ok(v.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn sweep_ids(&self) -> StoreResult<Vec<String>> {
        self.read(move |txn, path| {
            let t = txn.open_table(SWEEPS).map_err(|e| backend(path, e))?;
            let mut ids = Vec::new();
            for row in t.iter().map_err(|e| backend(path, e))? {
                let (k, _) = row.map_err(|e| backend(path, e))?;
                ids.push(k.value().to_string());
            }
            Ok(ids)
        })
        .await
    }

    async fn delete_sweep(&self, sweep: &str) -> StoreResult<()> {
        let sweep = sweep.to_string();
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            txn.open_table(SWEEPS)
                .map_err(|e| be(&e))?
                .remove(sweep.as_str())
                .map_err(|e| be(&e))?;
            let range = prefix_range(&sweep_prefix(&sweep));
            txn.open_table(UNITS)
                .map_err(|e| be(&e))?
                .retain_in::<&[u8], _>(as_slices(&range), |_, _| false)
                .map_err(|e| be(&e))?;
            txn.open_table(RETRY)
                .map_err(|e| be(&e))?
                .retain_in::<&[u8], _>(as_slices(&range), |_, _| false)
                .map_err(|e| be(&e))?;
            txn.open_table(RESULTS)
                .map_err(|e| be(&e))?
                .retain_in::<&[u8], _>(as_slices(&range), |_, _| false)
                .map_err(|e| be(&e))?;
            txn.open_table(BATCHES)
                .map_err(|e| be(&e))?
                .retain_in::<&[u8], _>(as_slices(&range), |_, _| false)
                .map_err(|e| be(&e))?;
            super::cost::embedded_forget(txn, path, as_slices(&range))?;
            let mut leases = txn.open_table(LEASES).map_err(|e| be(&e))?;
            let mut doomed = Vec::new();
            for row in leases.iter().map_err(|e| be(&e))? {
                let (k, v) = row.map_err(|e| be(&e))?;
                let lease = decode_lease(k.value(), v.value())?;
                if lease.unit.sweep == sweep {
                    doomed.push((lease.id, lease.deadline_ms));
                }
            }
            let mut deadlines = txn.open_table(DEADLINES).map_err(|e| be(&e))?;
            for (id, deadline) in doomed {
                leases.remove(id.as_str()).map_err(|e| be(&e))?;
                deadlines
                    .remove((deadline, id.as_str()))
                    .map_err(|e| be(&e))?;
            }
            Ok(())
        })
        .await
    }

    async fn grant_cells(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        cell: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<Vec<u32>> {
        self.grant_from(unit, total, max, cell, lease_id, worker, deadline_ms, false)
            .await
    }

    async fn grant_queued(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<Vec<u32>> {
        self.grant_from(unit, total, max, 1, lease_id, worker, deadline_ms, true)
            .await
    }

    async fn record(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
    ) -> StoreResult<Vec<bool>> {
        self.record_in(unit, lease_id, results, None).await
    }

    async fn record_spawning(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
        spawn: &UnitKey,
        fanout: u32,
    ) -> StoreResult<Vec<bool>> {
        self.record_in(unit, lease_id, results, Some((spawn.clone(), fanout)))
            .await
    }

    async fn extend(&self, lease_id: &str, deadline_ms: u64) -> StoreResult<bool> {
        let id = lease_id.to_string();
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            let mut leases = txn.open_table(LEASES).map_err(|e| be(&e))?;
            let mut lease = match leases.get(id.as_str()).map_err(|e| be(&e))? {
                Some(v) => decode_lease(&id, v.value())?,
                None => return Ok(false),
            };
            let mut deadlines = txn.open_table(DEADLINES).map_err(|e| be(&e))?;
            deadlines
                .remove((lease.deadline_ms, id.as_str()))
                .map_err(|e| be(&e))?;
            deadlines
                .insert((deadline_ms, id.as_str()), ())
                .map_err(|e| be(&e))?;
            lease.deadline_ms = deadline_ms;
            leases
                .insert(id.as_str(), encode_lease(&lease)?.as_slice())
                .map_err(|e| be(&e))?;
            Ok(true)
        })
        .await
    }

    async fn release(&self, lease_id: &str) -> StoreResult<u32> {
        let id = lease_id.to_string();
        self.write(move |txn, path| Ok(release_in(txn, path, &id)?.map_or(0, |(_, n)| n)))
            .await
    }

    async fn reclaim_expired(&self, now_ms: u64) -> StoreResult<Vec<Lease>> {
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            let mut expired = Vec::new();
            {
                let deadlines = txn.open_table(DEADLINES).map_err(|e| be(&e))?;
                for row in deadlines.range(..(now_ms, "")).map_err(|e| be(&e))? {
                    let (k, _) = row.map_err(|e| be(&e))?;
                    expired.push(k.value().1.to_string());
                }
            }
            let mut out = Vec::with_capacity(expired.len());
            for id in expired {
                if let Some((lease, _)) = release_in(txn, path, &id)? {
                    out.push(lease);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn leases(&self) -> StoreResult<Vec<Lease>> {
        self.read(move |txn, path| {
            let t = txn.open_table(LEASES).map_err(|e| backend(path, e))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| backend(path, e))? {
                let (k, v) = row.map_err(|e| backend(path, e))?;
                out.push(decode_lease(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn done_count(&self, unit: &UnitKey) -> StoreResult<u64> {
        let prefix = unit_prefix(unit);
        self.read(move |txn, path| {
            let t = txn.open_table(UNITS).map_err(|e| backend(path, e))?;
            let v = t.get(prefix.as_slice()).map_err(|e| backend(path, e))?;
            Ok(v.map_or(0, |v| v.value().1))
        })
        .await
    }

    async fn scan_results(
        &self,
        unit: &UnitKey,
        from: u32,
        limit: u32,
    ) -> StoreResult<Vec<(u32, Vec<u8>)>> {
        let prefix = unit_prefix(unit);
        self.read(move |txn, path| {
            let t = txn.open_table(RESULTS).map_err(|e| backend(path, e))?;
            let start = slot_key(&prefix, from);
            let end = slot_key(&prefix, u32::MAX);
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            for row in t
                .range(start.as_slice()..=end.as_slice())
                .map_err(|e| backend(path, e))?
            {
                let (k, v) = row.map_err(|e| backend(path, e))?;
                out.push((slot_of(k.value()), v.value().to_vec()));
                if out.len() >= limit as usize {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn open_batch(
        &self,
        lease_ids: &[String],
        batch: &BatchRecord,
    ) -> StoreResult<BatchRecord> {
        let lease_ids = lease_ids.to_vec();
        let batch = batch.clone();
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            let mut batches = txn.open_table(BATCHES).map_err(|e| be(&e))?;
            if let Some(open) = load_batch(&batches, path, &batch.unit.sweep, &batch.id)? {
                return Ok(open);
            }
            let prefix = unit_prefix(&batch.unit);
            let results = txn.open_table(RESULTS).map_err(|e| be(&e))?;
            let mut leases = txn.open_table(LEASES).map_err(|e| be(&e))?;
            let mut held: Vec<Lease> = Vec::new();
            for id in &lease_ids {
                if held.iter().any(|l| &l.id == id) {
                    continue; // named twice
                }
                if let Some(v) = leases.get(id.as_str()).map_err(|e| be(&e))? {
                    let lease = decode_lease(id, v.value())?;
                    if lease.unit == batch.unit {
                        held.push(lease);
                    }
                }
            }
            let mut kept = Vec::new();
            for &slot in &batch.slots {
                let Some(lease) = held.iter_mut().find(|l| l.slots.contains(&slot)) else {
                    continue;
                };
                lease.slots.retain(|&s| s != slot);
                let key = slot_key(&prefix, slot);
                if results.get(key.as_slice()).map_err(|e| be(&e))?.is_none() {
                    kept.push(slot);
                }
            }
            kept.sort_unstable();
            kept.dedup();
            let mut deadlines = txn.open_table(DEADLINES).map_err(|e| be(&e))?;
            for lease in held {
                if lease.slots.is_empty() {
                    leases.remove(lease.id.as_str()).map_err(|e| be(&e))?;
                    deadlines
                        .remove((lease.deadline_ms, lease.id.as_str()))
                        .map_err(|e| be(&e))?;
                } else {
                    leases
                        .insert(lease.id.as_str(), encode_lease(&lease)?.as_slice())
                        .map_err(|e| be(&e))?;
                }
            }
            let stored = BatchRecord {
                slots: kept,
                ..batch
            };
            if !stored.slots.is_empty() {
                batches
                    .insert(
                        batch_key(&stored.unit.sweep, &stored.id).as_slice(),
                        encode_batch(&stored)?.as_slice(),
                    )
                    .map_err(|e| be(&e))?;
            }
            Ok(stored)
        })
        .await
    }

    async fn batch_submitted(&self, sweep: &str, id: &str, provider_id: &str) -> StoreResult<bool> {
        let provider_id = provider_id.to_string();
        self.change_batch(sweep, id, move |b| {
            b.provider_id = Some(provider_id);
            true
        })
        .await
    }

    async fn extend_batch(
        &self,
        sweep: &str,
        id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<bool> {
        let worker = worker.to_string();
        self.change_batch(sweep, id, move |b| {
            b.deadline_ms = deadline_ms;
            b.worker == worker
        })
        .await
    }

    async fn claim_batches(
        &self,
        worker: &str,
        now_ms: u64,
        deadline_ms: u64,
        max: u32,
    ) -> StoreResult<Vec<BatchRecord>> {
        let worker = worker.to_string();
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            let mut t = txn.open_table(BATCHES).map_err(|e| be(&e))?;
            let mut claimed = Vec::new();
            for row in t.iter().map_err(|e| be(&e))? {
                if claimed.len() >= max as usize {
                    break;
                }
                let (k, v) = row.map_err(|e| be(&e))?;
                let b = decode_batch(v.value())?;
                if b.deadline_ms < now_ms {
                    claimed.push((k.value().to_vec(), b));
                }
            }
            let mut out = Vec::with_capacity(claimed.len());
            for (k, mut b) in claimed {
                b.worker = worker.clone();
                b.deadline_ms = deadline_ms;
                t.insert(k.as_slice(), encode_batch(&b)?.as_slice())
                    .map_err(|e| be(&e))?;
                out.push(b);
            }
            Ok(out)
        })
        .await
    }

    async fn close_batch(&self, sweep: &str, id: &str) -> StoreResult<u32> {
        let (sweep, id) = (sweep.to_string(), id.to_string());
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            let mut t = txn.open_table(BATCHES).map_err(|e| be(&e))?;
            let b = match t
                .remove(batch_key(&sweep, &id).as_slice())
                .map_err(|e| be(&e))?
            {
                Some(v) => decode_batch(v.value())?,
                None => return Ok(0),
            };
            let results = txn.open_table(RESULTS).map_err(|e| be(&e))?;
            let mut retry = txn.open_table(RETRY).map_err(|e| be(&e))?;
            let prefix = unit_prefix(&b.unit);
            let mut requeued = 0;
            for &slot in &b.slots {
                let key = slot_key(&prefix, slot);
                if results.get(key.as_slice()).map_err(|e| be(&e))?.is_none() {
                    retry.insert(key.as_slice(), ()).map_err(|e| be(&e))?;
                    requeued += 1;
                }
            }
            Ok(requeued)
        })
        .await
    }

    async fn batches(&self) -> StoreResult<Vec<BatchRecord>> {
        self.read(move |txn, path| {
            let t = txn.open_table(BATCHES).map_err(|e| backend(path, e))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| backend(path, e))? {
                let (_, v) = row.map_err(|e| backend(path, e))?;
                out.push(decode_batch(v.value())?);
            }
            out.sort_by(|a, b| (&a.unit.sweep, &a.id).cmp(&(&b.unit.sweep, &b.id)));
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|txn, path| {
            txn.open_table(SWEEPS).map_err(|e| backend(path, e))?;
            Ok(())
        })
        .await
    }

    async fn put_usage(&self, sweep: &str, field: &str, v: u64, bytes: &[u8]) -> StoreResult<()> {
        let (p, field, bytes) = (sweep_prefix(sweep), field.to_string(), bytes.to_vec());
        self.write(move |txn, path| super::cost::embedded_put(txn, path, &p, &field, v, &bytes))
            .await
    }

    async fn usage(&self, sweep: &str) -> StoreResult<Vec<Vec<u8>>> {
        let range = prefix_range(&sweep_prefix(sweep));
        self.read(move |txn, path| super::cost::embedded_list(txn, path, as_slices(&range)))
            .await
    }
}
