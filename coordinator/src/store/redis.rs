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
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{
    AsyncCommands, Client, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value,
};
use async_trait::async_trait;
use moralsweep_common::Mode;

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

/// Lua: shared helper that releases one lease (requeues its unrecorded
/// slots, deletes it) and returns `{id, model, mode, worker, deadline,
/// slots, requeued}` or nil.
const RELEASE_FN: &str = include_str!("lua/release_fn.lua");

/// KEYS: meta, retry, keyset, lease hash, lease slots, deadlines, op key.
/// ARGV: total, max, lease id, worker, deadline, model, mode, unit part,
/// bucket prefix, B, cell size (fresh slots in whole cells), queue-only
/// ('1': never advance the cursor).
const GRANT: &str = include_str!("lua/grant.lua");

/// KEYS: meta, keyset, lease hash, lease slots, deadlines, bucket index,
/// op key, the spawned unit's retry queue. ARGV: bucket prefix, B, lease id
/// ('' for none), unit part, fanout (0: nothing spawned), then (slot,
/// record) pairs. Returns `{newly-recorded flags, lease-deleted}`.
const RECORD: &str = include_str!("lua/record.lua");

/// KEYS: lease hash, deadlines. ARGV: lease id, deadline.
const EXTEND: &str = include_str!("lua/extend.lua");

/// KEYS: lease hash, lease slots, deadlines. ARGV: sweep prefix, B, id.
const RELEASE: &str = include_str!("lua/release.lua");

/// KEYS: deadlines. ARGV: sweep prefix, B, now.
const RECLAIM: &str = include_str!("lua/reclaim.lua");

/// KEYS: deadlines. ARGV: sweep prefix.
const LEASES: &str = include_str!("lua/leases.lua");

/// KEYS: bucket index. ARGV: bucket prefix, B, from, limit.
const SCAN: &str = include_str!("lua/scan.lua");

/// KEYS: keyset, deadlines. ARGV: sweep prefix. Returns the lease ids.
const DELETE: &str = include_str!("lua/delete.lua");

/// KEYS: the sweeps hash. ARGV: sweep id, record.
const UPDATE_SWEEP: &str = include_str!("lua/update_sweep.lua");

/// Provider batches (each script documents its keys and arguments).
const OPEN_BATCH: &str = include_str!("lua/open_batch.lua");
const BATCH_SUBMITTED: &str = include_str!("lua/batch_submitted.lua");
const EXTEND_BATCH: &str = include_str!("lua/extend_batch.lua");
const CLAIM_BATCHES: &str = include_str!("lua/claim_batches.lua");
const CLOSE_BATCH: &str = include_str!("lua/close_batch.lua");

struct Scripts {
    grant: Script,
    record: Script,
    extend: Script,
    release: Script,
    reclaim: Script,
    leases: Script,
    scan: Script,
    delete: Script,
    update_sweep: Script,
    open_batch: Script,
    batch_submitted: Script,
    extend_batch: Script,
    claim_batches: Script,
    close_batch: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            grant: Script::new(&GRANT.replace("OP_TTL", &OP_TTL_SECS.to_string())),
            record: Script::new(&RECORD.replace("OP_TTL", &OP_TTL_SECS.to_string())),
            extend: Script::new(EXTEND),
            release: Script::new(&format!("{RELEASE_FN}{RELEASE}")),
            reclaim: Script::new(&format!("{RELEASE_FN}{RECLAIM}")),
            leases: Script::new(LEASES),
            scan: Script::new(SCAN),
            delete: Script::new(DELETE),
            update_sweep: Script::new(UPDATE_SWEEP),
            open_batch: Script::new(OPEN_BATCH),
            batch_submitted: Script::new(BATCH_SUBMITTED),
            extend_batch: Script::new(EXTEND_BATCH),
            claim_batches: Script::new(CLAIM_BATCHES),
            close_batch: Script::new(CLOSE_BATCH),
        }
    }
}

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

/// Percent-escapes the characters that would break a key's hash tag or its
/// `:`-separated structure.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    out
}

fn sweep_prefix(sweep: &str) -> String {
    format!("ms:{{{}}}:", esc(sweep))
}

fn unit_part(unit: &UnitKey) -> String {
    format!("{}:{}", esc(&unit.model), unit.mode.name())
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
/// retrying transient failures for up to [`RETRY_FOR`].
macro_rules! retrying {
    ($self:ident, $what:expr, |$con:ident| $body:expr) => {{
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            let mut $con = $self.con.clone();
            let r: RedisResult<_> = async { $body }.await;
            match r {
                Ok(v) => break Ok(v),
                Err(e) if transient(&e) && started.elapsed() < RETRY_FOR => {
                    tracing::warn!(target: "moralsweep::store", error = %e, op = $what,
                        "redis call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    break Err(StoreError::Backend(format!(
                        "redis {} ({}): {e}",
                        $what, $self.target
                    )))
                }
            }
        }
    }};
}

fn parse_lease(sweep: &str, v: Value) -> StoreResult<(Lease, u32)> {
    let (id, model, mode, worker, deadline, slots, requeued): (
        String,
        String,
        String,
        String,
        String,
        Vec<u32>,
        u32,
    ) = ::redis::from_redis_value(v)
        .map_err(|e| StoreError::Corrupt(format!("lease of sweep {sweep}: {e}")))?;
    let mode: Mode = mode
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("lease {id} of sweep {sweep}: mode: {e}")))?;
    let deadline_ms = deadline.parse().map_err(|e| {
        StoreError::Corrupt(format!(
            "lease {id} of sweep {sweep}: deadline {deadline:?}: {e}"
        ))
    })?;
    let mut slots = slots;
    slots.sort_unstable();
    Ok((
        Lease {
            id,
            unit: UnitKey {
                sweep: sweep.to_string(),
                model,
                mode,
            },
            worker,
            slots,
            deadline_ms,
        },
        requeued,
    ))
}

/// The fields of a batch hash as the scripts return them: `rec`, `slots`,
/// `worker`, `deadline`, `provider`.
type BatchFields = (String, String, String, String, Option<String>);

fn parse_batch(
    sweep: &str,
    (rec, slots, worker, deadline, provider): BatchFields,
) -> StoreResult<BatchRecord> {
    let corrupt = |what: String| StoreError::Corrupt(format!("batch of sweep {sweep}: {what}"));
    let mut b: BatchRecord =
        serde_json::from_str(&rec).map_err(|e| corrupt(format!("record: {e}")))?;
    b.slots = slots
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| corrupt(format!("slot {s:?}: {e}"))))
        .collect::<StoreResult<_>>()?;
    b.worker = worker;
    b.deadline_ms = deadline
        .parse()
        .map_err(|e| corrupt(format!("deadline {deadline:?}: {e}")))?;
    b.provider_id = provider.filter(|p| !p.is_empty());
    Ok(b)
}

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

    /// [`Store::grant`] as operation `op`: a second call with the same
    /// `op` (within [`OP_TTL_SECS`]) returns the first call's outcome.
    /// With `queue_only`, [`Store::grant_queued`].
    #[allow(clippy::too_many_arguments)]
    async fn grant_op(
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
    async fn record_op(
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
    async fn index_lease(&self, id: &str, sweep: &str) -> StoreResult<()> {
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
    async fn lease_sweep_ids(&self) -> StoreResult<Vec<String>> {
        retrying!(self, "SMEMBERS lease-sweeps", |con| con
            .smembers::<_, Vec<String>>(LEASE_SWEEPS)
            .await)
    }

    async fn forget_leases(&self, ids: &[String]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        retrying!(self, "HDEL lease-sweep", |con| con
            .hdel::<_, _, ()>(LEASE_SWEEP, ids)
            .await)
    }

    /// Sweeps that may hold open batches.
    async fn batch_sweep_ids(&self) -> StoreResult<Vec<String>> {
        let mut ids: Vec<String> = retrying!(self, "SMEMBERS batch-sweeps", |con| con
            .smembers::<_, Vec<String>>(BATCH_SWEEPS)
            .await)?;
        ids.sort();
        Ok(ids)
    }

    async fn lease_sweep(&self, lease_id: &str) -> StoreResult<Option<String>> {
        retrying!(self, "HGET lease-sweep", |con| con
            .hget::<_, _, Option<String>>(LEASE_SWEEP, lease_id)
            .await)
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
mod tests {
    use super::*;
    use moralsweep_testsupport::{Persistence, RedisServer};

    /// A call repeated with the same operation id (what a retry after a
    /// lost reply does) returns the first outcome and changes nothing.
    #[tokio::test]
    async fn repeated_operation_returns_the_first_outcome() {
        let server = RedisServer::start_with(Persistence::None);
        let s = RedisStore::connect(&server.url()).await.unwrap();
        let u = UnitKey {
            sweep: "s".into(),
            model: "m".into(),
            mode: Mode::Persona,
        };
        let g1 = s
            .grant_op(&u, 10, 3, 1, "l1", "w", 99, "op-g", false)
            .await
            .unwrap();
        assert_eq!(g1, vec![0, 1, 2]);
        assert_eq!(
            s.grant_op(&u, 10, 3, 1, "l1", "w", 99, "op-g", false)
                .await
                .unwrap(),
            g1
        );
        assert_eq!(s.leases().await.unwrap().len(), 1);
        let batch = vec![(0, b"a".to_vec()), (1, b"b".to_vec())];
        let r1 = s
            .record_op(&u, Some("l1"), &batch, "op-r", None)
            .await
            .unwrap();
        assert_eq!(r1, vec![true, true]);
        assert_eq!(
            s.record_op(&u, Some("l1"), &batch, "op-r", None)
                .await
                .unwrap(),
            r1
        );
        assert_eq!(s.done_count(&u).await.unwrap(), 2);
        // A new operation is a genuine duplicate report.
        assert_eq!(
            s.record(&u, Some("l1"), &batch).await.unwrap(),
            vec![false, false]
        );
        // The empty-grant outcome replays too.
        let e = s
            .grant_op(&u, 0, 3, 1, "l2", "w", 99, "op-e", false)
            .await
            .unwrap();
        assert!(e.is_empty());
        assert!(s
            .grant_op(&u, 0, 3, 1, "l2", "w", 99, "op-e", false)
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn keys_escape_tag_and_separator_characters() {
        assert_eq!(sweep_prefix("a{b}:c%"), "ms:{a%7Bb%7D%3Ac%25}:");
        let u = UnitKey {
            sweep: "s".into(),
            model: "org/m:1".into(),
            mode: Mode::SelfMode,
        };
        assert_eq!(unit_part(&u), "org/m%3A1:self");
    }
}
