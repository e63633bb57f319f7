//! The embedded store's keys (a unit's rows contiguous and in slot order)
//! and the encoding of its records.

use std::fmt::Display;
use std::ops::Bound;
use std::path::Path;

use moralsweep_common::Mode;
use moralsweep_protocol::{BatchRecord, UnitKey};
use redb::ReadableTable;

use crate::store::{Lease, StoreError, StoreResult};

pub(super) fn backend(path: &Path, e: impl Display) -> StoreError {
    StoreError::Backend(format!("embedded store {}: {e}", path.display()))
}

pub(super) fn mode_byte(mode: Mode) -> u8 {
    match mode {
        Mode::Persona => 0,
        Mode::SelfMode => 1,
        Mode::Logprob => 2,
        Mode::EmCheck => 3,
        Mode::EmJudge => 4,
    }
}

/// The key prefix shared by every row of one sweep: length-prefixed so no
/// sweep id's prefix is another's.
pub(super) fn sweep_prefix(sweep: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + sweep.len());
    k.extend_from_slice(&(sweep.len() as u32).to_be_bytes());
    k.extend_from_slice(sweep.as_bytes());
    k
}

/// The key prefix of one unit's rows.
pub(super) fn unit_prefix(unit: &UnitKey) -> Vec<u8> {
    let mut k = sweep_prefix(&unit.sweep);
    k.extend_from_slice(&(unit.model.len() as u32).to_be_bytes());
    k.extend_from_slice(unit.model.as_bytes());
    k.push(mode_byte(unit.mode));
    k
}

pub(super) fn slot_key(prefix: &[u8], slot: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 4);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

pub(super) fn slot_of(key: &[u8]) -> u32 {
    let n = key.len();
    u32::from_be_bytes([key[n - 4], key[n - 3], key[n - 2], key[n - 1]])
}

/// The key range of every key starting with `prefix`.
pub(super) fn prefix_range(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

pub(super) fn as_slices(r: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    fn one(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(v) => Bound::Included(v.as_slice()),
            Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (one(&r.0), one(&r.1))
}

pub(super) fn encode_lease(lease: &Lease) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(lease).map_err(|e| StoreError::Backend(format!("encoding lease: {e}")))
}

pub(super) fn decode_lease(id: &str, bytes: &[u8]) -> StoreResult<Lease> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("lease {id}: {e}")))
}

pub(super) fn batch_key(sweep: &str, id: &str) -> Vec<u8> {
    let mut k = sweep_prefix(sweep);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn encode_batch(b: &BatchRecord) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(b).map_err(|e| StoreError::Backend(format!("encoding batch: {e}")))
}

pub(super) fn decode_batch(bytes: &[u8]) -> StoreResult<BatchRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("batch record: {e}")))
}

/// Batch `id` of `sweep`, if open.
pub(super) fn load_batch(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    path: &Path,
    sweep: &str,
    id: &str,
) -> StoreResult<Option<BatchRecord>> {
    match t
        .get(batch_key(sweep, id).as_slice())
        .map_err(|e| backend(path, e))?
    {
        Some(v) => Ok(Some(decode_batch(v.value())?)),
        None => Ok(None),
    }
}
