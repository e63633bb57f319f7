//! The Redis store's key names (see the key table in `redis.rs`) and the
//! decoding of the records its scripts return.

use ::redis::Value;
use moralsweep_common::Mode;
use moralsweep_protocol::{BatchRecord, UnitKey};

use crate::store::{Lease, StoreError, StoreResult};

/// Percent-escapes the characters that would break a key's hash tag or its
/// `:`-separated structure.
pub(super) fn esc(s: &str) -> String {
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

pub(super) fn sweep_prefix(sweep: &str) -> String {
    format!("ms:{{{}}}:", esc(sweep))
}

pub(super) fn unit_part(unit: &UnitKey) -> String {
    format!("{}:{}", esc(&unit.model), unit.mode.name())
}

pub(super) fn parse_lease(sweep: &str, v: Value) -> StoreResult<(Lease, u32)> {
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
pub(super) type BatchFields = (String, String, String, String, Option<String>);

pub(super) fn parse_batch(
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
