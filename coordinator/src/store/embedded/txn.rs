//! The embedded store's transactions: running a closure in one redb read
//! or write transaction on the blocking pool, and the steps several
//! [`Store`](crate::store::Store) methods share (granting, recording,
//! releasing a lease, changing a batch).

use std::fmt::Display;
use std::path::Path;

use moralsweep_protocol::{BatchRecord, UnitKey};
use redb::{ReadableTable, WriteTransaction};

use super::keys::*;
use super::*;
use crate::store::{Lease, StoreResult};

impl EmbeddedStore {
    /// Applies `change` to open batch `id` of `sweep` in one transaction and
    /// keeps the result if `change` says so; `false` when the batch is not
    /// open or the change is refused.
    pub(super) async fn change_batch(
        &self,
        sweep: &str,
        id: &str,
        change: impl FnOnce(&mut BatchRecord) -> bool + Send + 'static,
    ) -> StoreResult<bool> {
        let key = batch_key(sweep, id);
        self.write(move |txn, path| {
            let mut t = txn.open_table(BATCHES).map_err(|e| backend(path, e))?;
            let mut b = match t.get(key.as_slice()).map_err(|e| backend(path, e))? {
                Some(v) => decode_batch(v.value())?,
                None => return Ok(false),
            };
            if !change(&mut b) {
                return Ok(false);
            }
            t.insert(key.as_slice(), encode_batch(&b)?.as_slice())
                .map_err(|e| backend(path, e))?;
            Ok(true)
        })
        .await
    }

    /// Runs `f` in one write transaction on the blocking pool and commits it
    /// durably when `f` succeeds (dropping it, i.e. aborting, otherwise).
    pub(super) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction, &Path) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(|e| backend(&path, e))?;
            let out = f(&txn, &path)?;
            txn.commit().map_err(|e| backend(&path, e))?;
            Ok(out)
        })
        .await
        .map_err(|e| backend(&self.path, format!("store task failed: {e}")))?
    }

    /// Runs `f` in one read transaction on the blocking pool.
    pub(super) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction, &Path) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(|e| backend(&path, e))?;
            f(&txn, &path)
        })
        .await
        .map_err(|e| backend(&self.path, format!("store task failed: {e}")))?
    }
}

/// Deletes lease `id` (and its deadline entry) and puts its unrecorded
/// slots on its unit's retry queue. Returns the lease as it was.
pub(super) fn release_in(
    txn: &WriteTransaction,
    path: &Path,
    id: &str,
) -> StoreResult<Option<(Lease, u32)>> {
    let be = |e: &dyn Display| backend(path, e);
    let mut leases = txn.open_table(LEASES).map_err(|e| be(&e))?;
    let lease = match leases.remove(id).map_err(|e| be(&e))? {
        Some(bytes) => decode_lease(id, bytes.value())?,
        None => return Ok(None),
    };
    let mut deadlines = txn.open_table(DEADLINES).map_err(|e| be(&e))?;
    deadlines
        .remove((lease.deadline_ms, id))
        .map_err(|e| be(&e))?;
    let results = txn.open_table(RESULTS).map_err(|e| be(&e))?;
    let mut retry = txn.open_table(RETRY).map_err(|e| be(&e))?;
    let prefix = unit_prefix(&lease.unit);
    let mut requeued = 0;
    for &slot in &lease.slots {
        let key = slot_key(&prefix, slot);
        if results.get(key.as_slice()).map_err(|e| be(&e))?.is_none() {
            retry.insert(key.as_slice(), ()).map_err(|e| be(&e))?;
            requeued += 1;
        }
    }
    Ok(Some((lease, requeued)))
}

impl EmbeddedStore {
    /// [`Store::grant_cells`], or [`Store::grant_queued`] with `queue_only`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn grant_from(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        cell: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
        queue_only: bool,
    ) -> StoreResult<Vec<u32>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let unit = unit.clone();
        let (lease_id, worker) = (lease_id.to_string(), worker.to_string());
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            let mut leases = txn.open_table(LEASES).map_err(|e| be(&e))?;
            if leases.get(lease_id.as_str()).map_err(|e| be(&e))?.is_some() {
                return Err(StoreError::Backend(format!(
                    "lease id {lease_id} is already in use; lease ids must be unique"
                )));
            }
            let prefix = unit_prefix(&unit);
            let results = txn.open_table(RESULTS).map_err(|e| be(&e))?;
            let recorded = |slot: u32| -> StoreResult<bool> {
                Ok(results
                    .get(slot_key(&prefix, slot).as_slice())
                    .map_err(|e| be(&e))?
                    .is_some())
            };
            let mut granted = Vec::new();

            // The retry queue first, lowest slot first.
            let mut retry = txn.open_table(RETRY).map_err(|e| be(&e))?;
            let range = prefix_range(&prefix);
            let mut taken = Vec::new();
            for row in retry
                .range::<&[u8]>(as_slices(&range))
                .map_err(|e| be(&e))?
            {
                if granted.len() >= max as usize {
                    break;
                }
                let (k, _) = row.map_err(|e| be(&e))?;
                let slot = slot_of(k.value());
                taken.push(k.value().to_vec());
                if slot < total && !recorded(slot)? {
                    granted.push(slot);
                }
            }
            for k in taken {
                retry.remove(k.as_slice()).map_err(|e| be(&e))?;
            }

            // Then fresh slots from the cursor.
            let mut units = txn.open_table(UNITS).map_err(|e| be(&e))?;
            let (mut cursor, done) = units
                .get(prefix.as_slice())
                .map_err(|e| be(&e))?
                .map(|v| v.value())
                .unwrap_or((0, 0));
            let cell = cell.max(1);
            while !queue_only && cursor < total {
                let stop = (cursor - cursor % cell).saturating_add(cell).min(total);
                if granted.len() + (stop - cursor) as usize > max as usize {
                    break;
                }
                while cursor < stop {
                    if !recorded(cursor)? {
                        granted.push(cursor);
                    }
                    cursor += 1;
                }
            }
            units
                .insert(prefix.as_slice(), (cursor, done))
                .map_err(|e| be(&e))?;

            if !granted.is_empty() {
                let lease = Lease {
                    id: lease_id.clone(),
                    unit: unit.clone(),
                    worker,
                    slots: granted.clone(),
                    deadline_ms,
                };
                leases
                    .insert(lease_id.as_str(), encode_lease(&lease)?.as_slice())
                    .map_err(|e| be(&e))?;
                txn.open_table(DEADLINES)
                    .map_err(|e| be(&e))?
                    .insert((deadline_ms, lease_id.as_str()), ())
                    .map_err(|e| be(&e))?;
            }
            Ok(granted)
        })
        .await
    }

    /// [`Store::record`], or [`Store::record_spawning`] with `spawn`.
    pub(super) async fn record_in(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
        spawn: Option<(UnitKey, u32)>,
    ) -> StoreResult<Vec<bool>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let unit = unit.clone();
        let lease_id = lease_id.map(str::to_string);
        let results = results.to_vec();
        self.write(move |txn, path| {
            let be = |e: &dyn Display| backend(path, e);
            let prefix = unit_prefix(&unit);
            let mut table = txn.open_table(RESULTS).map_err(|e| be(&e))?;
            let mut newly = Vec::with_capacity(results.len());
            let mut added = 0u64;
            for (slot, bytes) in &results {
                let key = slot_key(&prefix, *slot);
                let exists = table.get(key.as_slice()).map_err(|e| be(&e))?.is_some();
                if !exists {
                    table
                        .insert(key.as_slice(), bytes.as_slice())
                        .map_err(|e| be(&e))?;
                    added += 1;
                }
                newly.push(!exists);
            }
            if let Some((spawn, fanout)) = &spawn {
                let sp = unit_prefix(spawn);
                let mut retry = txn.open_table(RETRY).map_err(|e| be(&e))?;
                for ((slot, _), new) in results.iter().zip(&newly) {
                    if *new {
                        for k in 0..*fanout {
                            let key = slot_key(&sp, slot * fanout + k);
                            retry.insert(key.as_slice(), ()).map_err(|e| be(&e))?;
                        }
                    }
                }
            }
            if added > 0 {
                let mut units = txn.open_table(UNITS).map_err(|e| be(&e))?;
                let (cursor, done) = units
                    .get(prefix.as_slice())
                    .map_err(|e| be(&e))?
                    .map(|v| v.value())
                    .unwrap_or((0, 0));
                units
                    .insert(prefix.as_slice(), (cursor, done + added))
                    .map_err(|e| be(&e))?;
            }
            if let Some(id) = lease_id {
                let mut leases = txn.open_table(LEASES).map_err(|e| be(&e))?;
                let lease = match leases.get(id.as_str()).map_err(|e| be(&e))? {
                    Some(v) => Some(decode_lease(&id, v.value())?),
                    None => None,
                };
                if let Some(mut lease) = lease.filter(|l| l.unit == unit) {
                    let reported: HashSet<u32> = results.iter().map(|(s, _)| *s).collect();
                    lease.slots.retain(|s| !reported.contains(s));
                    if lease.slots.is_empty() {
                        leases.remove(id.as_str()).map_err(|e| be(&e))?;
                        txn.open_table(DEADLINES)
                            .map_err(|e| be(&e))?
                            .remove((lease.deadline_ms, id.as_str()))
                            .map_err(|e| be(&e))?;
                    } else {
                        leases
                            .insert(id.as_str(), encode_lease(&lease)?.as_slice())
                            .map_err(|e| be(&e))?;
                    }
                }
            }
            Ok(newly)
        })
        .await
    }
}
