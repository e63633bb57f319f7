//! The data dictionary (`docs/DATA.md`) read as a test reads it: each
//! `### \`file\`` section and the backticked names in the first cell of its
//! tables' rows, so a test can check that every column of every file a sweep
//! writes is described there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where the dictionary is.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DATA.md")
}

/// The backticked names in `text`.
fn ticked(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Per file name (as the headings spell it, `<group>` and all), the
/// columns or keys its section describes.
pub fn sections() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(path()).expect("docs/DATA.md is readable");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    let mut inherits: Vec<(Vec<String>, String)> = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            let title = h.split(':').next().unwrap_or(h);
            current = ticked(title);
            for f in &current {
                out.entry(f.clone()).or_default();
            }
            continue;
        }
        if line.starts_with("## ") {
            current.clear();
            continue;
        }
        if current.is_empty() {
            continue;
        }
        if let Some(row) = line.strip_prefix('|') {
            let first = row.split('|').next().unwrap_or("");
            for name in ticked(first) {
                for f in &current {
                    out.get_mut(f).unwrap().insert(name.clone());
                }
            }
        } else if let Some(at) = line.find("columns of `") {
            // "The columns of `x.csv`, with ..." / "All other columns as in `x.csv`".
            if let Some(from) = ticked(&line[at + "columns of ".len()..]).first() {
                inherits.push((current.clone(), from.clone()));
            }
        } else if let Some(at) = line.find("columns as in `") {
            if let Some(from) = ticked(&line[at + "columns as in ".len()..]).first() {
                inherits.push((current.clone(), from.clone()));
            }
        }
    }
    for (files, from) in inherits {
        let cols = out.get(&from).cloned().unwrap_or_default();
        for f in files {
            out.entry(f).or_default().extend(cols.iter().cloned());
        }
    }
    out
}

/// The dictionary's name of a written file: the per-group files under
/// `_per_<group>`.
pub fn file_entry(name: &str) -> String {
    for g in ["foundation", "domain"] {
        if let Some(stem) = name.strip_suffix(&format!("_per_{g}.csv")) {
            return format!("{stem}_per_<group>.csv");
        }
    }
    name.to_string()
}

/// Whether `column` of a file is described by `described`.
fn is_described(column: &str, described: &BTreeSet<String>) -> bool {
    if described.contains(column) {
        return true;
    }
    if matches!(column, "foundation" | "domain") && described.contains("<group>") {
        return true;
    }
    column
        .strip_prefix("rating_")
        .is_some_and(|v| v.parse::<u32>().is_ok() && described.contains("rating_<v>"))
}

/// Checks every file in `dir` (a metrics folder) against the dictionary:
/// each has a section, each CSV column and each top-level key of
/// `analysis.json` is described. Returns the files checked.
pub fn check_dir(dir: &Path) -> Vec<String> {
    let sections = sections();
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if !path.is_file() {
            continue;
        }
        let entry = file_entry(&name);
        let Some(described) = sections.get(&entry) else {
            problems.push(format!("{name}: no section `{entry}` in docs/DATA.md"));
            continue;
        };
        let columns: Vec<String> = if name.ends_with(".csv") {
            let text = std::fs::read_to_string(&path).unwrap();
            text.lines()
                .next()
                .unwrap_or("")
                .split(',')
                .map(|c| c.trim().to_string())
                .collect()
        } else if name == "analysis.json" {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            v.as_object().unwrap().keys().cloned().collect()
        } else {
            Vec::new()
        };
        for c in &columns {
            if !is_described(c, described) {
                problems.push(format!(
                    "{name}: column {c:?} is not described in docs/DATA.md"
                ));
            }
        }
        checked.push(name);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    checked
}
