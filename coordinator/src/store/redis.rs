//! The Redis store: the cluster coordinator's durable state in Redis.
//!
//! Every [`Store`] method that changes more than one key is one Lua script
//! (atomic on the server), sent through a [`ConnectionManager`] that
//! reconnects after a `redis-server` restart; calls that fail on a dropped
//! connection or while Redis is still loading its append-only file are
//! retried for a while (see [`RETRY_FOR`]). `grant` and `record` carry an
//! operation id: their script stores its outcome under it for a while, so
//! a retry whose first attempt did run (and only the reply was lost)
//! returns that outcome instead of running again — the newly-recorded
//! flags stay truthful across a Redis crash. (`release` and
//! `reclaim_expired` retried that way report 0 / nothing the second time;
//! the store's state is right either way.)
//!
//! # Keys
//!
//! Everything of sweep `S` lives under the prefix `ms:{S}:` (`S` with `%`,
//! `{`, `}` and `:` percent-escaped), so the hash tag `{S}` puts one sweep's
//! keys in one Redis Cluster slot and each script touches one slot only.
//! For a unit `U` = `<model>:<mode>` (model escaped the same way):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `ms:{S}:u:U` | hash | `cursor`, `done`, `hwm` (one past the highest recorded slot) |
//! | `ms:{S}:q:U` | sorted set | retry queue, slot number as score (lowest first) |
//! | `ms:{S}:r:U:<b>` | hash | results of slots `b*B .. (b+1)*B`, field = slot number |
//! | `ms:{S}:b:U` | sorted set | the non-empty buckets `b` (score `b`), for scans |
//! | `ms:{S}:l:<id>` | hash | lease: `model`, `mode`, `unit`, `worker`, `deadline` |
//! | `ms:{S}:ls:<id>` | set | the slots lease `id` still owns |
//! | `ms:{S}:dl` | sorted set | lease ids by deadline (expiry index) |
//! | `ms:{S}:keys` | set | every unit / queue / bucket key, for `delete_sweep` |
//! | `ms:{S}:op:<op id>` | string | outcome of one `grant` / `record` call (expires) |
//! | `ms:{S}:bt:<id>` | hash | open provider batch: `rec` (the record as JSON, without the mutable fields), `slots` (comma-separated), `worker`, `deadline`, `provider`, `unit` |
//! | `ms:{S}:bd` | sorted set | open batch ids by deadline |
//!
//! Results are bucketed by slot range (`B` = [`BUCKET`] slots per hash):
//! recording is one `HSETNX` per slot (set-if-absent, so a slot is written
//! once and the done counter grows only for new slots, in the same script),
//! and `scan_results` walks the non-empty buckets in slot order without
//! touching the rest of the unit (sparse units cost nothing extra). The grant cursor is one integer and the
//! retry queue holds only handed-back slots: no per-slot state exists for
//! slots not yet granted.
//!
//! `ms:batch-sweeps` (set) names the sweeps that ever opened a batch, the
//! sweeps `claim_batches` and `batches` look at.
//!
//! Three keys are global (outside any sweep's slot): `ms:sweeps` (hash:
//! sweep id -> record), `ms:lease-sweep` (hash: lease id -> sweep id, to
//! find a lease's sweep from its id alone) and `ms:lease-sweeps` (set of
//! sweeps that ever held a lease, the sweeps `reclaim_expired` and `leases`
//! look at). The index entries are written before the lease itself (and
//! removed again when nothing was granted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, ErrorKind, RedisError, ServerErrorKind, Value};
use async_trait::async_trait;

use super::{Lease, Store, StoreError, StoreResult};
use moralsweep_protocol::{BatchRecord, UnitKey};

/// Slots per result bucket (one Redis hash each).
pub const BUCKET: u32 = 256;

/// How long a call keeps retrying while Redis is unreachable or loading.
pub const RETRY_FOR: Duration = Duration::from_secs(15);

/// How long the outcome of a `grant` or `record` call is kept under its
/// operation id, so that a retry whose first attempt did run (the reply was
/// lost with the connection) returns the first attempt's outcome instead of
/// running twice. Longer than [`RETRY_FOR`].
const OP_TTL_SECS: u64 = 120;

const SWEEPS: &str = "ms:sweeps";
const LEASE_SWEEP: &str = "ms:lease-sweep";
const LEASE_SWEEPS: &str = "ms:lease-sweeps";
const BATCH_SWEEPS: &str = "ms:batch-sweeps";

/// A [`Store`] in one Redis server (standalone or a primary behind a
/// failover address). The key layout is ready for Redis Cluster (each
/// script touches one hash slot), but this type speaks to a single node.
#[derive(Clone)]
pub struct RedisStore {
    /// Multiplexed, reconnecting connection; cloned per call.
    con: ConnectionManager,
    scripts: Arc<Scripts>,
    /// Makes operation ids unique across processes and store instances.
    nonce: Arc<String>,
    /// For error messages (without credentials).
    target: Arc<String>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .finish()
    }
}

/// Errors worth retrying: the connection, a timeout, Redis loading its data.
fn transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        )
}

/// Numbers the operations of this process (see [`RedisStore::op_id`]).
static OP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Process id and start time: different in every process.
fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}.{:x}", std::process::id(), t)
}

/// Runs `$body` (an expression using `$con: &mut ConnectionManager`),
/// retrying transient failures for up to [`RETRY_FOR`]. Its paths are
/// absolute: `ops` (a child module) expands it too.
macro_rules! retrying {
    ($self:ident, $what:expr, |$con:ident| $body:expr) => {{
        let started = ::std::time::Instant::now();
        let mut delay = ::std::time::Duration::from_millis(20);
        loop {
            let mut $con = $self.con.clone();
            let r: ::redis::RedisResult<_> = async { $body }.await;
            match r {
                Ok(v) => break Ok(v),
                Err(e)
                    if $crate::store::redis::transient(&e)
                        && started.elapsed() < $crate::store::redis::RETRY_FOR => {
                    tracing::warn!(target: "moralsweep::store", error = %e, op = $what,
                        "redis call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(::std::time::Duration::from_millis(500));
                }
                Err(e) => {
                    break Err($crate::store::StoreError::Backend(format!(
                        "redis {} ({}): {e}",
                        $what, $self.target
                    )))
                }
            }
        }
    }};
}

// After the macro: `ops` uses it.
mod keys;
mod ops;
mod scripts;

use keys::{parse_batch, parse_lease, sweep_prefix, unit_part, BatchFields};
use scripts::Scripts;

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:pass@]host:port[/db]`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let target = moralsweep_telemetry::redact::redact_url_credentials(url);
        let client = Client::open(url)
            .map_err(|e| StoreError::Backend(format!("redis URL {target}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(60)))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(3);
        let con = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to redis {target}: {e}")))?;
        Ok(RedisStore {
            con,
            scripts: Arc::new(Scripts::new()),
            nonce: Arc::new(nonce()),
            target: Arc::new(target),
        })
    }

    /// A new operation id, unique across processes.
    fn op_id(&self) -> String {
        let n = OP_SEQ.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.nonce)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn create_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<bool> {
        retrying!(self, "create_sweep", |con| con
            .hset_nx::<_, _, _, bool>(SWEEPS, sweep, record)
            .await)
    }

    async fn update_sweep(&self, sweep: &str, record: &[u8]) -> StoreResult<()> {
        let mut inv = self.scripts.update_sweep.key(SWEEPS);
        inv.arg(sweep).arg(record);
        retrying!(self, "update_sweep", |con| inv
            .invoke_async::<()>(&mut con)
            .await)
    }

    async fn load_sweep(&self, sweep: &str) -> StoreResult<Option<Vec<u8>>> {
        retrying!(self, "load_sweep", |con| con
            .hget::<_, _, Option<Vec<u8>>>(SWEEPS, sweep)
            .await)
    }

    async fn sweep_ids(&self) -> StoreResult<Vec<String>> {
        let mut ids: Vec<String> = retrying!(self, "sweep_ids", |con| con
            .hkeys::<_, Vec<String>>(SWEEPS)
            .await)?;
        ids.sort();
        Ok(ids)
    }

    async fn delete_sweep(&self, sweep: &str) -> StoreResult<()> {
        let p = sweep_prefix(sweep);
        let mut inv = self.scripts.delete.key(format!("{p}keys"));
        inv.key(format!("{p}dl")).arg(&p);
        let ids: Vec<String> = retrying!(self, "delete_sweep", |con| inv
            .invoke_async::<Vec<String>>(&mut con)
            .await)?;
        self.forget_leases(&ids).await?;
        retrying!(self, "delete_sweep", |con| ::redis::pipe()
            .hdel(SWEEPS, sweep)
            .ignore()
            .srem(LEASE_SWEEPS, sweep)
            .ignore()
            .srem(BATCH_SWEEPS, sweep)
            .ignore()
            .query_async::<()>(&mut con)
            .await)?;
        Ok(())
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
        let op = self.op_id();
        self.grant_op(
            unit,
            total,
            max,
            cell,
            lease_id,
            worker,
            deadline_ms,
            &op,
            false,
        )
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
        let op = self.op_id();
        self.grant_op(
            unit,
            total,
            max,
            1,
            lease_id,
            worker,
            deadline_ms,
            &op,
            true,
        )
        .await
    }

    async fn record_spawning(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
        spawn: &UnitKey,
        fanout: u32,
    ) -> StoreResult<Vec<bool>> {
        if spawn.sweep != unit.sweep {
            return Err(StoreError::Backend(format!(
                "record_spawning: the spawned unit belongs to sweep {:?}, not {:?}; work spawns only within its sweep",
                spawn.sweep, unit.sweep
            )));
        }
        let op = self.op_id();
        self.record_op(unit, lease_id, results, &op, Some((spawn, fanout)))
            .await
    }

    async fn record(
        &self,
        unit: &UnitKey,
        lease_id: Option<&str>,
        results: &[(u32, Vec<u8>)],
    ) -> StoreResult<Vec<bool>> {
        let op = self.op_id();
        self.record_op(unit, lease_id, results, &op, None).await
    }

    async fn extend(&self, lease_id: &str, deadline_ms: u64) -> StoreResult<bool> {
        let Some(sweep) = self.lease_sweep(lease_id).await? else {
            return Ok(false);
        };
        let p = sweep_prefix(&sweep);
        let mut inv = self.scripts.extend.key(format!("{p}l:{lease_id}"));
        inv.key(format!("{p}dl")).arg(lease_id).arg(deadline_ms);
        let ok: i64 = retrying!(self, "extend", |con| inv
            .invoke_async::<i64>(&mut con)
            .await)?;
        if ok == 0 {
            self.forget_leases(&[lease_id.to_string()]).await?;
        }
        Ok(ok == 1)
    }

    async fn release(&self, lease_id: &str) -> StoreResult<u32> {
        let Some(sweep) = self.lease_sweep(lease_id).await? else {
            return Ok(0);
        };
        let p = sweep_prefix(&sweep);
        let mut inv = self.scripts.release.key(format!("{p}l:{lease_id}"));
        inv.key(format!("{p}ls:{lease_id}"))
            .key(format!("{p}dl"))
            .arg(&p)
            .arg(BUCKET)
            .arg(lease_id);
        let n: i64 = retrying!(self, "release", |con| inv
            .invoke_async::<i64>(&mut con)
            .await)?;
        self.forget_leases(&[lease_id.to_string()]).await?;
        Ok(n.max(0) as u32)
    }

    async fn reclaim_expired(&self, now_ms: u64) -> StoreResult<Vec<Lease>> {
        // One script per sweep, all in flight at once on the multiplexed
        // connection.
        let sweeps = self.lease_sweep_ids().await?;
        let per_sweep = sweeps.iter().map(|sweep| async move {
            let p = sweep_prefix(sweep);
            let mut inv = self.scripts.reclaim.key(format!("{p}dl"));
            inv.arg(&p).arg(BUCKET).arg(now_ms);
            let released: Vec<Value> = retrying!(self, "reclaim_expired", |con| inv
                .invoke_async::<Vec<Value>>(&mut con)
                .await)?;
            let leases = released
                .into_iter()
                .map(|v| parse_lease(sweep, v).map(|(l, _)| l))
                .collect::<StoreResult<Vec<Lease>>>()?;
            let ids: Vec<String> = leases.iter().map(|l| l.id.clone()).collect();
            self.forget_leases(&ids).await?;
            Ok::<_, StoreError>(leases)
        });
        let all = futures::future::try_join_all(per_sweep).await?;
        Ok(all.into_iter().flatten().collect())
    }

    async fn leases(&self) -> StoreResult<Vec<Lease>> {
        let sweeps = self.lease_sweep_ids().await?;
        let per_sweep = sweeps.iter().map(|sweep| async move {
            let p = sweep_prefix(sweep);
            let mut inv = self.scripts.leases.key(format!("{p}dl"));
            inv.arg(&p);
            let all: Vec<Value> = retrying!(self, "leases", |con| inv
                .invoke_async::<Vec<Value>>(&mut con)
                .await)?;
            all.into_iter()
                .map(|v| parse_lease(sweep, v).map(|(l, _)| l))
                .collect::<StoreResult<Vec<Lease>>>()
        });
        let all = futures::future::try_join_all(per_sweep).await?;
        Ok(all.into_iter().flatten().collect())
    }

    async fn done_count(&self, unit: &UnitKey) -> StoreResult<u64> {
        let key = format!("{}u:{}", sweep_prefix(&unit.sweep), unit_part(unit));
        let n: Option<u64> = retrying!(self, "done_count", |con| con
            .hget::<_, _, Option<u64>>(&key, "done")
            .await)?;
        Ok(n.unwrap_or(0))
    }

    async fn scan_results(
        &self,
        unit: &UnitKey,
        from: u32,
        limit: u32,
    ) -> StoreResult<Vec<(u32, Vec<u8>)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let p = sweep_prefix(&unit.sweep);
        let up = unit_part(unit);
        let mut inv = self.scripts.scan.key(format!("{p}b:{up}"));
        inv.arg(format!("{p}r:{up}:"))
            .arg(BUCKET)
            .arg(from)
            .arg(limit);
        let flat: Vec<Value> = retrying!(self, "scan_results", |con| inv
            .invoke_async::<Vec<Value>>(&mut con)
            .await)?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(slot), Some(bytes)) = (it.next(), it.next()) {
            let slot: u32 = ::redis::from_redis_value(slot)
                .map_err(|e| StoreError::Corrupt(format!("scan_results slot: {e}")))?;
            let bytes: Vec<u8> = ::redis::from_redis_value(bytes)
                .map_err(|e| StoreError::Corrupt(format!("scan_results record: {e}")))?;
            out.push((slot, bytes));
        }
        Ok(out)
    }

    async fn open_batch(
        &self,
        lease_ids: &[String],
        batch: &BatchRecord,
    ) -> StoreResult<BatchRecord> {
        let sweep = &batch.unit.sweep;
        let p = sweep_prefix(sweep);
        let up = unit_part(&batch.unit);
        let rec = serde_json::to_string(&BatchRecord {
            slots: Vec::new(),
            ..batch.clone()
        })
        .map_err(|e| StoreError::Backend(format!("encoding batch: {e}")))?;
        let slots = batch
            .slots
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        retrying!(self, "SADD batch-sweeps", |con| con
            .sadd::<_, _, ()>(BATCH_SWEEPS, sweep)
            .await)?;
        let mut inv = self.scripts.open_batch.key(format!("{p}bt:{}", batch.id));
        inv.key(format!("{p}bd"))
            .key(format!("{p}keys"))
            .key(format!("{p}dl"))
            .arg(&rec)
            .arg(&batch.worker)
            .arg(batch.deadline_ms)
            .arg(&up)
            .arg(format!("{p}r:{up}:"))
            .arg(BUCKET)
            .arg(&p)
            .arg(&batch.id)
            .arg(&slots);
        for id in lease_ids {
            inv.arg(id);
        }
        type Opened = (String, String, String, String, Option<String>, Vec<String>);
        let (rec, slots, worker, deadline, provider, gone): Opened =
            retrying!(self, "open_batch", |con| inv
                .invoke_async::<Opened>(&mut con)
                .await)?;
        // Leases emptied by the move are gone: forget their index entries.
        self.forget_leases(&gone).await?;
        parse_batch(sweep, (rec, slots, worker, deadline, provider))
    }

    async fn batch_submitted(&self, sweep: &str, id: &str, provider_id: &str) -> StoreResult<bool> {
        let p = sweep_prefix(sweep);
        let mut inv = self.scripts.batch_submitted.key(format!("{p}bt:{id}"));
        inv.arg(provider_id);
        let n: i64 = retrying!(self, "batch_submitted", |con| inv
            .invoke_async::<i64>(&mut con)
            .await)?;
        Ok(n == 1)
    }

    async fn extend_batch(
        &self,
        sweep: &str,
        id: &str,
        worker: &str,
        deadline_ms: u64,
    ) -> StoreResult<bool> {
        let p = sweep_prefix(sweep);
        let mut inv = self.scripts.extend_batch.key(format!("{p}bt:{id}"));
        inv.key(format!("{p}bd"))
            .arg(worker)
            .arg(deadline_ms)
            .arg(id);
        let n: i64 = retrying!(self, "extend_batch", |con| inv
            .invoke_async::<i64>(&mut con)
            .await)?;
        Ok(n == 1)
    }

    async fn claim_batches(
        &self,
        worker: &str,
        now_ms: u64,
        deadline_ms: u64,
        max: u32,
    ) -> StoreResult<Vec<BatchRecord>> {
        let mut out = Vec::new();
        for sweep in self.batch_sweep_ids().await? {
            let left = max.saturating_sub(out.len() as u32);
            if left == 0 {
                break;
            }
            let p = sweep_prefix(&sweep);
            let mut inv = self.scripts.claim_batches.key(format!("{p}bd"));
            inv.arg(&p)
                .arg(now_ms)
                .arg(worker)
                .arg(deadline_ms)
                .arg(left);
            let got: Vec<BatchFields> = retrying!(self, "claim_batches", |con| inv
                .invoke_async::<Vec<BatchFields>>(&mut con)
                .await)?;
            for f in got {
                out.push(parse_batch(&sweep, f)?);
            }
        }
        Ok(out)
    }

    async fn close_batch(&self, sweep: &str, id: &str) -> StoreResult<u32> {
        let p = sweep_prefix(sweep);
        let mut inv = self.scripts.close_batch.key(format!("{p}bt:{id}"));
        inv.key(format!("{p}bd"))
            .key(format!("{p}keys"))
            .arg(&p)
            .arg(BUCKET)
            .arg(id);
        retrying!(self, "close_batch", |con| inv
            .invoke_async::<u32>(&mut con)
            .await)
    }

    async fn batches(&self) -> StoreResult<Vec<BatchRecord>> {
        let mut out = Vec::new();
        for sweep in self.batch_sweep_ids().await? {
            let p = sweep_prefix(&sweep);
            let mut ids: Vec<String> = retrying!(self, "ZRANGE batches", |con| con
                .zrange::<_, Vec<String>>(format!("{p}bd"), 0, -1)
                .await)?;
            ids.sort();
            for id in ids {
                let f: BatchFields = retrying!(self, "HMGET batch", |con| ::redis::cmd("HMGET")
                    .arg(format!("{p}bt:{id}"))
                    .arg(&["rec", "slots", "worker", "deadline", "provider"])
                    .query_async::<(
                        Option<String>,
                        Option<String>,
                        Option<String>,
                        Option<String>,
                        Option<String>
                    )>(&mut con)
                    .await)
                .map(|(r, s, w, d, pr)| {
                    (
                        r.unwrap_or_default(),
                        s.unwrap_or_default(),
                        w.unwrap_or_default(),
                        d.unwrap_or_default(),
                        pr,
                    )
                })?;
                if f.0.is_empty() {
                    continue; // closed meanwhile
                }
                out.push(parse_batch(&sweep, f)?);
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> StoreResult<()> {
        retrying!(self, "ping", |con| ::redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await)?;
        Ok(())
    }

    async fn put_usage(&self, sweep: &str, field: &str, v: u64, bytes: &[u8]) -> StoreResult<()> {
        let inv = super::cost::redis_put(&sweep_prefix(sweep), field, v, bytes);
        retrying!(self, "put_usage", |con| inv
            .invoke_async::<i64>(&mut con)
            .await)?;
        Ok(())
    }

    async fn usage(&self, sweep: &str) -> StoreResult<Vec<Vec<u8>>> {
        let key = super::cost::redis_key(&sweep_prefix(sweep));
        super::cost::strip(retrying!(self, "usage", |con| con
            .hvals::<_, Vec<Vec<u8>>>(key.as_str())
            .await)?)
    }
}

#[cfg(test)]
mod tests;
