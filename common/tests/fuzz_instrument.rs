//! Fuzzing of the instrument file parser (`Instrument::parse`), the one
//! parser a user's instrument file reaches.
//!
//! Two generators: the built-in instruments (renamed, as a user's copy)
//! with their JSON changed key by key (a key removed, a value replaced by a
//! hostile one: empty, huge, negative, a path, a line break, a built-in's
//! name, the wrong type; an array entry dropped or repeated), and the same
//! files damaged byte by byte or arbitrary bytes. The properties: no input
//! panics; every refusal names the file, and a refusal of a key-level
//! change names a key on the changed path (`items`, `group_label`,
//! `scale`, ...); no input hangs (a time guard).
//!
//! Each target runs 512 cases (set `PROPTEST_CASES` for more) and prints
//! its case count.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use moralsweep_common::Instrument;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

const GUARD: Duration = Duration::from_secs(240);
const FILE: &str = "fuzzed-instrument.json";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// The built-in files as a user's copies (a built-in name is refused).
fn bases() -> Vec<Value> {
    [
        include_str!("../instruments/mfq-30.json"),
        include_str!("../instruments/bfi-44.json"),
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| {
        let mut v: Value = serde_json::from_str(t).unwrap();
        v["name"] = format!("mine-{i}").into();
        v
    })
    .collect()
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    At(usize),
}

/// Every path to a value of `v` (the root excluded).
fn paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                here.push(Step::Key(k.clone()));
                out.push(here.clone());
                paths(x, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                here.push(Step::At(i));
                out.push(here.clone());
                paths(x, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

/// Hostile values a key may be given.
fn hostile() -> Vec<Value> {
    let long = "x".repeat(10_000);
    vec![
        Value::Null,
        "".into(),
        " ".into(),
        "a/b".into(),
        "../../etc".into(),
        "a,b".into(),
        "line\nbreak".into(),
        "mfq-30".into(),
        "bfi-44".into(),
        "foundation".into(),
        "model".into(),
        "Openness".into(),
        "{persona}".into(),
        "{item}".into(),
        long.into(),
        0.into(),
        1.into(),
        (-1).into(),
        9.into(),
        10.into(),
        255.into(),
        256.into(),
        100_000.into(),
        u64::MAX.into(),
        i64::MIN.into(),
        1.5.into(),
        1e308.into(),
        true.into(),
        Value::Array(vec![]),
        Value::Array(vec!["x".into(), "x".into()]),
        serde_json::json!({}),
        serde_json::json!({"min": 9, "max": 0}),
    ]
}

/// A key-level change of a document.
#[derive(Debug, Clone)]
enum Change {
    Remove(Index),
    Replace(Index, Index),
    /// Repeat (`true`) or drop an array entry.
    Entry(Index, bool),
    AddKey(Index),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        any::<Index>().prop_map(Change::Remove),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Change::Replace(a, b)),
        (any::<Index>(), any::<bool>()).prop_map(|(a, b)| Change::Entry(a, b)),
        any::<Index>().prop_map(Change::AddKey),
    ]
}

fn parent_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in &path[..path.len() - 1] {
        cur = match s {
            Step::Key(k) => cur.get_mut(k.as_str())?,
            Step::At(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

/// Applies `c` to `v`; returns the key names on the changed path.
fn apply(v: &mut Value, c: &Change) -> Vec<String> {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let pick = |i: &Index| all[i.index(all.len())].clone();
    let path = match c {
        Change::Remove(i) | Change::Replace(i, _) | Change::AddKey(i) => pick(i),
        Change::Entry(i, _) => {
            let arrays: Vec<Vec<Step>> = all
                .iter()
                .filter(|p| matches!(p.last(), Some(Step::At(_))))
                .cloned()
                .collect();
            arrays[i.index(arrays.len())].clone()
        }
    };
    let keys = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.clone()),
            Step::At(_) => None,
        })
        .collect();
    let Some(parent) = parent_mut(v, &path) else {
        return keys;
    };
    let last = path.last().unwrap().clone();
    match (c, last, parent) {
        (Change::Remove(_), Step::Key(k), Value::Object(m)) => {
            m.remove(&k);
        }
        (Change::Remove(_), Step::At(i), Value::Array(a)) => {
            a.remove(i);
        }
        (Change::Replace(_, h), Step::Key(k), Value::Object(m)) => {
            let hs = hostile();
            m.insert(k, hs[h.index(hs.len())].clone());
        }
        (Change::Replace(_, h), Step::At(i), Value::Array(a)) => {
            let hs = hostile();
            a[i] = hs[h.index(hs.len())].clone();
        }
        (Change::Entry(_, true), Step::At(i), Value::Array(a)) => {
            let x = a[i].clone();
            a.insert(i, x);
        }
        (Change::Entry(_, false), Step::At(i), Value::Array(a)) => {
            a.remove(i);
        }
        (Change::AddKey(_), _, Value::Object(m)) => {
            m.insert("unexpected_key".into(), 1.into());
        }
        _ => {}
    }
    keys
}

/// Runs `cases()` cases of `check` on `strategy` in a thread under [`GUARD`].
fn fuzz<S>(
    name: &'static str,
    strategy: S,
    check: impl Fn(&S::Value) -> Result<bool, String> + Send + 'static,
) where
    S: Strategy + Send + 'static,
    S::Value: std::fmt::Debug,
{
    let (tx, rx) = mpsc::channel();
    let n = cases();
    std::thread::spawn(move || {
        let mut runner = TestRunner::new(Config {
            cases: n,
            failure_persistence: None,
            ..Config::default()
        });
        let accepted = std::cell::Cell::new(0u32);
        let slowest = std::cell::Cell::new(Duration::ZERO);
        let result = runner.run(&strategy, |input| {
            let t0 = Instant::now();
            let r = check(&input);
            slowest.set(slowest.get().max(t0.elapsed()));
            match r {
                Ok(ok) => {
                    accepted.set(accepted.get() + ok as u32);
                    Ok(())
                }
                Err(e) => Err(TestCaseError::fail(e)),
            }
        });
        let _ = tx.send((
            result.map_err(|e| e.to_string()),
            accepted.get(),
            slowest.get(),
        ));
    });
    match rx.recv_timeout(GUARD) {
        Ok((Ok(()), accepted, slowest)) => println!(
            "fuzz target {name}: {n} cases, no panic or hang; {accepted} accepted, {} refused with an error naming the file; slowest case {:.1} ms",
            n - accepted,
            slowest.as_secs_f64() * 1e3
        ),
        Ok((Err(e), _, _)) => panic!("fuzz target {name}: {e}"),
        Err(_) => panic!("fuzz target {name} did not finish {n} cases in {} s", GUARD.as_secs()),
    }
}

#[test]
fn key_level_changes_are_refused_naming_the_file_and_key() {
    let strategy = (
        prop::sample::select(bases()),
        prop::collection::vec(change(), 1..2),
    );
    fuzz("instrument keys", strategy, |(base, changes)| {
        let mut v = base.clone();
        let mut keys = Vec::new();
        for c in changes {
            keys.extend(apply(&mut v, c));
        }
        let text = serde_json::to_string_pretty(&v).unwrap();
        match std::panic::catch_unwind(|| Instrument::parse(&text, FILE)) {
            Err(_) => Err(format!("panicked on {changes:?}")),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => {
                let m = e.to_string();
                if !m.contains(FILE) {
                    return Err(format!("the error does not name the file: {m}"));
                }
                // A key on the changed path, or for an item's or group's
                // value the item or group it belongs to.
                let named = keys.iter().any(|k| m.contains(k.as_str()))
                    || m.contains("unexpected_key")
                    || m.contains("item ")
                    || m.contains("group ");
                if !named {
                    return Err(format!("the error names none of {keys:?}: {m}"));
                }
                Ok(false)
            }
        }
    });
}

/// How a file's bytes are damaged.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    Insert(Index, &'static str),
    Delete(Index, u8),
}

#[test]
fn damaged_bytes_are_refused_naming_the_file() {
    const JUNK: &[&str] = &[
        "\"", "{", "}", "]", ",", "\u{0}", "\u{feff}", "é", "\\u", "1e999", "-", "null",
    ];
    let texts: Vec<String> = bases()
        .iter()
        .map(|v| serde_json::to_string_pretty(v).unwrap())
        .collect();
    let damage = prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), prop::sample::select(JUNK)).prop_map(|(i, j)| Damage::Insert(i, j)),
        (any::<Index>(), 1..40u8).prop_map(|(i, n)| Damage::Delete(i, n)),
    ];
    let damaged = (
        prop::sample::select(texts),
        prop::collection::vec(damage, 1..4),
    )
        .prop_map(|(t, ds)| {
            let mut b = t.into_bytes();
            for d in ds {
                match d {
                    Damage::Truncate(i) => b.truncate(i.index(b.len() + 1)),
                    Damage::Insert(i, j) => {
                        let at = i.index(b.len() + 1);
                        b.splice(at..at, j.bytes());
                    }
                    Damage::Delete(i, n) => {
                        let at = i.index(b.len() + 1);
                        let end = (at + n as usize).min(b.len());
                        b.drain(at..end);
                    }
                }
            }
            b
        });
    let strategy = prop_oneof![4 => damaged, 1 => prop::collection::vec(any::<u8>(), 0..1500)];
    fuzz("instrument bytes", strategy, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        match std::panic::catch_unwind(|| Instrument::parse(&text, FILE)) {
            Err(_) => Err("panicked".into()),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => {
                let m = e.to_string();
                if m.contains(FILE) {
                    Ok(false)
                } else {
                    Err(format!("the error does not name the file: {m}"))
                }
            }
        }
    });
}
