//! The Redis store's steps that several [`Store`] methods share: granting
//! and recording as idempotent operations, and the global indexes of the
//! sweeps that hold leases and batches.

use ::redis::AsyncCommands;

use super::keys::{sweep_prefix, unit_part};
use super::{RedisStore, BATCH_SWEEPS, BUCKET, LEASE_SWEEP, LEASE_SWEEPS};
use crate::store::{StoreError, StoreResult};
use moralsweep_protocol::UnitKey;

impl RedisStore {
    /// [`Store::grant`] as operation `op`: a second call with the same
    /// `op` (within [`OP_TTL_SECS`]) returns the first call's outcome.
    /// With `queue_only`, [`Store::grant_queued`].
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn grant_op(
        &self,
        unit: &UnitKey,
        total: u32,
        max: u32,
        cell: u32,
        lease_id: &str,
        worker: &str,
        deadline_ms: u64,
        op: &str,
        queue_only: bool,
    ) -> StoreResult<Vec<u32>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.index_lease(lease_id, &unit.sweep).await?;
        let p = sweep_prefix(&unit.sweep);
        let up = unit_part(unit);
        let mut inv = self.scripts.grant.key(format!("{p}u:{up}"));
        inv.key(format!("{p}q:{up}"))
            .key(format!("{p}keys"))
            .key(format!("{p}l:{lease_id}"))
            .key(format!("{p}ls:{lease_id}"))
            .key(format!("{p}dl"))
            .key(format!("{p}op:{op}"))
            .arg(total)
            .arg(max)
            .arg(lease_id)
            .arg(worker)
            .arg(deadline_ms)
            .arg(&unit.model)
            .arg(unit.mode.name())
            .arg(&up)
            .arg(format!("{p}r:{up}:"))
            .arg(BUCKET)
            .arg(cell.max(1))
            .arg(if queue_only { "1" } else { "0" });
        let got: Vec<u32> = retrying!(self, "grant", |con| inv
            .invoke_async::<Vec<u32>>(&mut con)
            .await)?;
        if got.is_empty() {
            self.forget_leases(&[lease_id.to_string()]).await?;
        }
        Ok(got)
    }

    /// [`Store::record`] as operation `op` (see [`RedisStore::grant_op`]).
    /// With `spawn`, [`Store::record_spawning`].
    pub(super) async fn record_op(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
        op: &str,
        spawn: Option<(&UnitKey, u32)>,
    ) -> StoreResult<Vec<bool>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let p = sweep_prefix(&unit.sweep);
        let up = unit_part(unit);
        let lid = lease_id.unwrap_or("");
        let mut inv = self.scripts.record.key(format!("{p}u:{up}"));
        inv.key(format!("{p}keys"))
            .key(format!("{p}l:{lid}"))
            .key(format!("{p}ls:{lid}"))
            .key(format!("{p}dl"))
            .key(format!("{p}b:{up}"))
            .key(format!("{p}op:{op}"))
            .key(match spawn {
                Some((s, _)) => format!("{p}q:{}", unit_part(s)),
                None => format!("{p}q:{up}"),
            })
            .arg(format!("{p}r:{up}:"))
            .arg(BUCKET)
            .arg(lid)
            .arg(&up)
            .arg(spawn.map_or(0, |(_, f)| f));
        for (slot, bytes) in results {
            inv.arg(*slot).arg(bytes.as_slice());
        }
        let (flags, gone): (Vec<i64>, i64) = retrying!(self, "record", |con| inv
            .invoke_async::<(Vec<i64>, i64)>(&mut con)
            .await)?;
        if gone == 1 {
            self.forget_leases(&[lid.to_string()]).await?;
        }
        if flags.len() != results.len() {
            return Err(StoreError::Corrupt(format!(
                "redis record returned {} flags for {} results",
                flags.len(),
                results.len()
            )));
        }
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }

    /// Notes, before the lease exists, which sweep lease `id` belongs to
    /// (so `extend` and `release` find it from the id) and that the sweep
    /// may hold leases (so `reclaim_expired` looks at it). Refuses an id
    /// that names a live lease of another sweep.
    pub(super) async fn index_lease(&self, id: &str, sweep: &str) -> StoreResult<()> {
        let (_, fresh, owner): ((), bool, Option<String>) =
            retrying!(self, "index lease", |con| ::redis::pipe()
                .sadd(LEASE_SWEEPS, sweep)
                .hset_nx(LEASE_SWEEP, id, sweep)
                .hget(LEASE_SWEEP, id)
                .query_async::<((), bool, Option<String>)>(&mut con)
                .await)?;
        match owner {
            Some(owner) if !fresh && owner != sweep => {
                let live: bool = retrying!(self, "EXISTS lease", |con| con
                    .exists::<_, bool>(format!("{}l:{id}", sweep_prefix(&owner)))
                    .await)?;
                if live {
                    return Err(StoreError::Backend(format!(
                        "lease id {id} is already in use (sweep {owner}); lease ids must be unique"
                    )));
                }
                retrying!(self, "HSET lease-sweep", |con| con
                    .hset::<_, _, _, ()>(LEASE_SWEEP, id, sweep)
                    .await)
            }
            _ => Ok(()),
        }
    }

    /// Sweeps that may hold leases.
    pub(super) async fn lease_sweep_ids(&self) -> StoreResult<Vec<String>> {
        retrying!(self, "SMEMBERS lease-sweeps", |con| con
            .smembers::<_, Vec<String>>(LEASE_SWEEPS)
            .await)
    }

    pub(super) async fn forget_leases(&self, ids: &[String]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        retrying!(self, "HDEL lease-sweep", |con| con
            .hdel::<_, _, ()>(LEASE_SWEEP, ids)
            .await)
    }

    /// Sweeps that may hold open batches.
    pub(super) async fn batch_sweep_ids(&self) -> StoreResult<Vec<String>> {
        let mut ids: Vec<String> = retrying!(self, "SMEMBERS batch-sweeps", |con| con
            .smembers::<_, Vec<String>>(BATCH_SWEEPS)
            .await)?;
        ids.sort();
        Ok(ids)
    }

    pub(super) async fn lease_sweep(&self, lease_id: &str) -> StoreResult<Option<String>> {
        retrying!(self, "HGET lease-sweep", |con| con
            .hget::<_, _, Option<String>>(LEASE_SWEEP, lease_id)
            .await)
    }
}
