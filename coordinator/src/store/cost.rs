//! The workers' usage and cost per sweep, in both stores (see
//! `moralsweep_protocol::usage`): one value per (worker process, model),
//! replaced only by a newer version, removed with the sweep. The stores'
//! trait methods (`Store::put_usage`, `Store::usage`) call these.
//!
//! A value is `<version>|<bytes>`: the version first, so the Redis script
//! compares it without decoding the rest.

use std::fmt::Display;
use std::path::Path;
use std::sync::LazyLock;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{StoreError, StoreResult};

/// Lua: keeps ARGV[3] (`<version>|<bytes>`) as field ARGV[1] of the usage
/// hash KEYS[1] unless it holds a version at least ARGV[2]; the hash is
/// listed in the sweep's key set KEYS[2], so deleting the sweep removes it.
const PUT: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local v = tonumber(string.match(old, '^(%d+)|'))
  if v and v >= tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"#;

static PUT_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(PUT));

/// The Redis key of a sweep's usage hash, under the sweep's key prefix.
pub(super) fn redis_key(prefix: &str) -> String {
    format!("{prefix}usage")
}

/// The script call that puts one value (see [`PUT`]); `prefix` is the
/// sweep's key prefix.
pub(super) fn redis_put(
    prefix: &str,
    field: &str,
    version: u64,
    bytes: &[u8],
) -> ::redis::ScriptInvocation<'static> {
    let mut inv = PUT_SCRIPT.key(redis_key(prefix));
    inv.key(format!("{prefix}keys"))
        .arg(field)
        .arg(version)
        .arg(value(version, bytes));
    inv
}

fn value(version: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = format!("{version}|").into_bytes();
    v.extend_from_slice(bytes);
    v
}

/// The bytes of stored values (their version cut off).
pub(super) fn strip(values: Vec<Vec<u8>>) -> StoreResult<Vec<Vec<u8>>> {
    values
        .into_iter()
        .map(|v| {
            let cut = v.iter().position(|&b| b == b'|').ok_or_else(|| {
                StoreError::Corrupt("a usage value without its version".to_string())
            })?;
            Ok(v[cut + 1..].to_vec())
        })
        .collect()
}

fn version_of(v: &[u8]) -> Option<u64> {
    let cut = v.iter().position(|&b| b == b'|')?;
    std::str::from_utf8(&v[..cut]).ok()?.parse().ok()
}

/// The embedded store's table: key `<sweep length><sweep><field>`.
const USAGE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("usage");

fn be(path: &Path, e: impl Display) -> StoreError {
    StoreError::Backend(format!("embedded store {}: {e}", path.display()))
}

fn embedded_key(sweep_prefix: &[u8], field: &str) -> Vec<u8> {
    let mut k = sweep_prefix.to_vec();
    k.extend_from_slice(field.as_bytes());
    k
}

/// Puts one value in the embedded store (see [`PUT`]).
pub(super) fn embedded_put(
    txn: &WriteTransaction,
    path: &Path,
    sweep_prefix: &[u8],
    field: &str,
    version: u64,
    bytes: &[u8],
) -> StoreResult<()> {
    let mut t = txn.open_table(USAGE).map_err(|e| be(path, e))?;
    let key = embedded_key(sweep_prefix, field);
    let newer = t
        .get(key.as_slice())
        .map_err(|e| be(path, e))?
        .and_then(|old| version_of(old.value()))
        .is_some_and(|old| old >= version);
    if !newer {
        t.insert(key.as_slice(), value(version, bytes).as_slice())
            .map_err(|e| be(path, e))?;
    }
    Ok(())
}

/// Every usage value of a sweep in the embedded store.
pub(super) fn embedded_list(
    txn: &redb::ReadTransaction,
    path: &Path,
    range: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>),
) -> StoreResult<Vec<Vec<u8>>> {
    let t = match txn.open_table(USAGE) {
        Ok(t) => t,
        // Nothing was ever put.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(be(path, e)),
    };
    let mut out = Vec::new();
    for row in t.range::<&[u8]>(range).map_err(|e| be(path, e))? {
        let (_, v) = row.map_err(|e| be(path, e))?;
        out.push(v.value().to_vec());
    }
    strip(out)
}

/// Removes a sweep's usage values from the embedded store.
pub(super) fn embedded_forget(
    txn: &WriteTransaction,
    path: &Path,
    range: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>),
) -> StoreResult<()> {
    txn.open_table(USAGE)
        .map_err(|e| be(path, e))?
        .retain_in::<&[u8], _>(range, |_, _| false)
        .map_err(|e| be(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_version_first() {
        let v = value(42, b"{\"a\":1}");
        assert_eq!(version_of(&v), Some(42));
        assert_eq!(strip(vec![v]).unwrap(), vec![b"{\"a\":1}".to_vec()]);
        assert!(strip(vec![b"no version".to_vec()]).is_err());
    }
}
