//! The Lua scripts of the Redis store (`store/lua/`), one per atomic
//! operation, with the keys and arguments each takes.

use ::redis::Script;

use super::OP_TTL_SECS;

/// Lua: shared helper that releases one lease (requeues its unrecorded
/// slots, deletes it) and returns `{id, model, mode, worker, deadline,
/// slots, requeued}` or nil.
pub(super) const RELEASE_FN: &str = include_str!("../lua/release_fn.lua");

/// KEYS: meta, retry, keyset, lease hash, lease slots, deadlines, op key.
/// ARGV: total, max, lease id, worker, deadline, model, mode, unit part,
/// bucket prefix, B, cell size (fresh slots in whole cells), queue-only
/// ('1': never advance the cursor).
pub(super) const GRANT: &str = include_str!("../lua/grant.lua");

/// KEYS: meta, keyset, lease hash, lease slots, deadlines, bucket index,
/// op key, the spawned unit's retry queue. ARGV: bucket prefix, B, lease id
/// ('' for none), unit part, fanout (0: nothing spawned), then (slot,
/// record) pairs. Returns `{newly-recorded flags, lease-deleted}`.
pub(super) const RECORD: &str = include_str!("../lua/record.lua");

/// KEYS: lease hash, deadlines. ARGV: lease id, deadline.
pub(super) const EXTEND: &str = include_str!("../lua/extend.lua");

/// KEYS: lease hash, lease slots, deadlines. ARGV: sweep prefix, B, id.
pub(super) const RELEASE: &str = include_str!("../lua/release.lua");

/// KEYS: deadlines. ARGV: sweep prefix, B, now.
pub(super) const RECLAIM: &str = include_str!("../lua/reclaim.lua");

/// KEYS: deadlines. ARGV: sweep prefix.
pub(super) const LEASES: &str = include_str!("../lua/leases.lua");

/// KEYS: bucket index. ARGV: bucket prefix, B, from, limit.
pub(super) const SCAN: &str = include_str!("../lua/scan.lua");

/// KEYS: keyset, deadlines. ARGV: sweep prefix. Returns the lease ids.
pub(super) const DELETE: &str = include_str!("../lua/delete.lua");

/// KEYS: the sweeps hash. ARGV: sweep id, record.
pub(super) const UPDATE_SWEEP: &str = include_str!("../lua/update_sweep.lua");

/// Provider batches (each script documents its keys and arguments).
pub(super) const OPEN_BATCH: &str = include_str!("../lua/open_batch.lua");
pub(super) const BATCH_SUBMITTED: &str = include_str!("../lua/batch_submitted.lua");
pub(super) const EXTEND_BATCH: &str = include_str!("../lua/extend_batch.lua");
pub(super) const CLAIM_BATCHES: &str = include_str!("../lua/claim_batches.lua");
pub(super) const CLOSE_BATCH: &str = include_str!("../lua/close_batch.lua");

pub(super) struct Scripts {
    pub(super) grant: Script,
    pub(super) record: Script,
    pub(super) extend: Script,
    pub(super) release: Script,
    pub(super) reclaim: Script,
    pub(super) leases: Script,
    pub(super) scan: Script,
    pub(super) delete: Script,
    pub(super) update_sweep: Script,
    pub(super) open_batch: Script,
    pub(super) batch_submitted: Script,
    pub(super) extend_batch: Script,
    pub(super) claim_batches: Script,
    pub(super) close_batch: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
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
