//! The shape of the code stays as `ARCHITECTURE.md` describes it:
//!
//! - no source file (tests aside) over [`MAX_LINES`] lines, but for the
//!   files in [`WAITING_FOR_SPLIT`], each with the reason; that list can
//!   only shrink (a listed file that got short, or is gone, fails the test
//!   until it leaves the list);
//! - no import circle between the modules of one crate: where module `a`
//!   uses `b` and `b` uses `a`, directly or around a longer loop, among the
//!   submodules of one module (a module using its own submodules, or its
//!   submodules using it, is no circle). [`KNOWN_CIRCLES`] names the ones
//!   still waiting, and can only shrink too;
//! - no `anyhow` and no `Result<_, String>` in the `pub` signatures of a
//!   library crate (the binary may use anyhow), but for
//!   [`KNOWN_LOOSE_ERRORS`].
//!
//! The checks read the sources as text: `use` trees and `crate::`,
//! `super::`, `self::` and submodule paths, with comments, strings and the
//! `#[cfg(test)]` module at a file's end left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Files still over [`MAX_LINES`], with why they wait.
const WAITING_FOR_SPLIT: &[(&str, &str)] = &[
    (
        "common/src/spec.rs",
        "SweepSpec::validate is being changed (the typed provider kind); split it into steps after",
    ),
    (
        "worker/src/runtime/batch.rs",
        "provider batches are being changed (new clouds); split its four phases after",
    ),
    (
        "simulator/src/replay.rs",
        "the simulator is being extended (Bedrock, Vertex, Azure); split after",
    ),
];

/// Import circles still waiting: (crate folder, the modules of the circle,
/// sorted, as `a::b`). Each is a set of sibling modules that use each other.
/// The simulator's: the provider modules, the batch APIs and the decision
/// engine share `Answer`, `Query`, the error bodies and the batch store;
/// the clouds (Bedrock, Vertex, Azure) joined it when they landed: the
/// engine's `Sim` holds their settings and their routes take the `Sim`.
/// Breaking it means moving `Sim`, `Answer` and the settings below the
/// route modules.
const KNOWN_CIRCLES: &[(&str, &[&str])] = &[(
    "simulator",
    &[
        "anthropic",
        "azure",
        "batch",
        "bedrock",
        "config",
        "engine",
        "gemini",
        "openai",
        "stats",
        "vertex",
        "wire",
    ],
)];

/// `pub` functions of library crates whose signature still carries `anyhow`
/// or `Result<_, String>`: (file, function name). `catalog.rs` is being
/// changed (the typed provider kind); `ProviderState::parse`'s text goes
/// into the batch runner's `JobStop` (`worker/src/runtime/batch.rs`, being
/// changed); the simulator is being extended (Bedrock, Vertex, Azure).
const KNOWN_LOOSE_ERRORS: &[(&str, &str)] = &[
    ("common/src/catalog.rs", "entry_for"),
    ("protocol/src/batch.rs", "parse"),
    ("simulator/src/batch/mod.rs", "cancel"),
    ("simulator/src/batch/multipart.rs", "parse"),
    ("simulator/src/faults.rs", "parse_fault_list"),
    ("simulator/src/wire.rs", "parse_body"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's crates: (folder, whether it is a library), from the
/// workspace manifest's members and the root package (the binary).
fn crates() -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let list = text
        .split_once("members = [")
        .and_then(|(_, r)| r.split_once(']'))
        .expect("Cargo.toml has workspace members")
        .0;
    let mut out: Vec<(String, bool)> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .map(|dir| {
            let lib = repo().join(&dir).join("src/lib.rs").is_file();
            (dir, lib)
        })
        .collect();
    out.push((String::new(), false));
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.map(|e| e.expect("dir entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source files of a crate (under `src/`, without `src/bin/`), each
/// with its path from the repository root.
fn sources(krate: &str) -> Vec<(String, PathBuf)> {
    let src = repo().join(krate).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    files
        .into_iter()
        .filter(|p| !p.starts_with(src.join("bin")))
        .map(|p| {
            let rel = p
                .strip_prefix(repo())
                .expect("under the repository")
                .to_string_lossy()
                .replace('\\', "/");
            (rel, p)
        })
        .collect()
}

/// A file holding only tests: `tests.rs` or anything under a `tests/`
/// folder of `src/` (declared behind `#[cfg(test)]`).
fn is_test_file(rel: &str) -> bool {
    rel.ends_with("/tests.rs") || rel.contains("/tests/")
}

#[test]
fn no_source_file_is_over_the_limit_but_those_waiting() {
    let mut over = BTreeMap::new();
    for (krate, _) in crates() {
        for (rel, path) in sources(&krate) {
            if is_test_file(&rel) {
                continue;
            }
            let lines = std::fs::read_to_string(&path)
                .expect("source")
                .lines()
                .count();
            if lines > MAX_LINES {
                over.insert(rel, lines);
            }
        }
    }
    let mut wrong = Vec::new();
    for (rel, lines) in &over {
        if !WAITING_FOR_SPLIT.iter().any(|(f, _)| f == rel) {
            wrong.push(format!(
                "{rel} has {lines} lines (limit {MAX_LINES}): split it along its concepts into modules"
            ));
        }
    }
    for (f, _) in WAITING_FOR_SPLIT {
        if !over.contains_key(*f) {
            wrong.push(format!(
                "{f} is in WAITING_FOR_SPLIT but is no longer over {MAX_LINES} lines (or is gone): remove it from the list"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The text of a source file as code: comments, string and char literals
/// blanked (newlines kept), and the `#[cfg(test)]` module at its end cut.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push(b'\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                if b[j] == b'\n' {
                    out.push(b'\n');
                }
                j += 1;
            }
            out.extend_from_slice(b"\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    out.push(b'\n');
                }
                i += 1;
            }
            i += 1;
            out.extend_from_slice(b"\"\"");
        } else if c == b'\'' {
            // A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            let close = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                // A multi-byte char: find the quote within 5 bytes.
                b[i + 1..(i + 6).min(b.len())]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 1 + p)
                    .filter(|&q| !b[i + 1..q].is_ascii())
            };
            match close {
                Some(q) => {
                    out.extend_from_slice(b"' '");
                    i = q + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    let code = String::from_utf8(out).expect("UTF-8 stays UTF-8");
    // The test module at the end: `#[cfg(test)]` then `mod name {`.
    let lines: Vec<&str> = code.lines().collect();
    for (k, l) in lines.iter().enumerate() {
        if l.trim() == "#[cfg(test)]" {
            let next = lines[k + 1..].iter().find(|l| !l.trim().is_empty());
            if next
                .is_some_and(|n| n.trim_start().starts_with("mod ") && n.trim_end().ends_with('{'))
            {
                return lines[..k].join("\n");
            }
        }
    }
    code
}

/// The module path of a source file: `src/a/b.rs` and `src/a/b/mod.rs` are
/// `a::b`; `lib.rs` and `main.rs` the crate root.
fn module_of(krate: &str, rel: &str) -> Vec<String> {
    let prefix = if krate.is_empty() {
        "src/".to_string()
    } else {
        format!("{krate}/src/")
    };
    let inner = rel.strip_prefix(&prefix).expect("under src/");
    let inner = inner.strip_suffix(".rs").expect(".rs");
    let mut segs: Vec<String> = inner.split('/').map(str::to_string).collect();
    if matches!(segs.last().map(String::as_str), Some("mod")) {
        segs.pop();
    }
    if segs.len() == 1 && (segs[0] == "lib" || segs[0] == "main") {
        segs.clear();
    }
    segs
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d}}`) into its paths.
fn expand_use(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let mut base = prefix.to_vec();
        base.extend(
            head.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (k, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..k], &base, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &base, out);
    } else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let mut p = prefix.to_vec();
        p.extend(
            path.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        out.push(p);
    }
}

/// Every module path a file's code names: its `use` trees, and the paths in
/// its code that start with `crate`, `super`, `self` or one of the
/// file's own submodules.
fn paths_in(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = String::with_capacity(code.len());
    // `use` declarations.
    let mut i = 0;
    let b = code.as_bytes();
    while i < code.len() {
        let at_word = i == 0 || !is_ident(b[i - 1] as char);
        if at_word && code[i..].starts_with("use ") {
            let end = code[i..].find(';').map_or(code.len(), |e| i + e);
            expand_use(&code[i + 4..end], &[], &mut out);
            i = end + 1;
            continue;
        }
        rest.push(b[i] as char);
        i += 1;
    }
    // Paths elsewhere: `a::b::c` sequences.
    let chars: Vec<char> = rest.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        if is_ident(chars[k]) && (k == 0 || !(is_ident(chars[k - 1]) || chars[k - 1] == ':')) {
            let mut segs = Vec::new();
            let mut j = k;
            loop {
                let s = j;
                while j < chars.len() && is_ident(chars[j]) {
                    j += 1;
                }
                segs.push(chars[s..j].iter().collect::<String>());
                if j + 2 < chars.len()
                    && chars[j] == ':'
                    && chars[j + 1] == ':'
                    && is_ident(chars[j + 2])
                {
                    j += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1
                && (matches!(segs[0].as_str(), "crate" | "super" | "self")
                    || children.contains(&segs[0]))
            {
                out.push(segs);
            }
            k = j.max(k + 1);
        } else {
            k += 1;
        }
    }
    out
}

/// The submodules a file declares (`mod a;`, `pub(crate) mod b;`).
fn declared_children(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = match l.strip_prefix("pub(") {
                Some(r) => r.split_once(')').map_or(l, |(_, r)| r.trim_start()),
                None => l,
            };
            let name = l.strip_prefix("mod ")?;
            let name = name.trim_end_matches(';').trim_end_matches('{').trim();
            name.chars().all(is_ident).then(|| name.to_string())
        })
        .collect()
}

/// A circle: its modules (as `a::b`, sorted) and, for each use that
/// closes it, the file and the path it names.
struct Circle {
    modules: Vec<String>,
    uses: Vec<String>,
}

/// The circles among sibling modules of a crate.
fn circles_of(krate: &str) -> Vec<Circle> {
    let files: Vec<(Vec<String>, String, String)> = sources(krate)
        .into_iter()
        .filter(|(rel, _)| !is_test_file(rel))
        .map(|(rel, path)| {
            let text = std::fs::read_to_string(&path).expect("source");
            (module_of(krate, &rel), code_of(&text), rel)
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _, _)| m.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut evidence: BTreeMap<(Vec<String>, Vec<String>), String> = BTreeMap::new();
    for (module, code, rel) in &files {
        let children = declared_children(code);
        for path in paths_in(code, &children) {
            let mut abs: Vec<String> = match path[0].as_str() {
                "crate" => Vec::new(),
                "self" => module.clone(),
                "super" => {
                    let ups = path.iter().take_while(|s| *s == "super").count();
                    module[..module.len().saturating_sub(ups)].to_vec()
                }
                _ if children.contains(&path[0]) => module.clone(),
                _ => continue,
            };
            let skip = path
                .iter()
                .take_while(|s| matches!(s.as_str(), "crate" | "self" | "super"))
                .count();
            abs.extend(path[skip..].iter().cloned());
            // The longest prefix that is a module with a file.
            let Some(target) = (0..=abs.len())
                .rev()
                .map(|n| abs[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            // Lift both ends to the children of their common ancestor.
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // one contains the other
            }
            let from = module[..=common].to_vec();
            let to = target[..=common].to_vec();
            evidence
                .entry((from.clone(), to.clone()))
                .or_insert_with(|| format!("{rel}: {}", path.join("::")));
            edges.entry(from).or_default().insert(to);
        }
    }
    strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| Circle {
            modules: c.iter().map(|m| m.join("::")).collect(),
            uses: evidence
                .iter()
                .filter(|((a, b), _)| c.contains(a) && c.contains(b))
                .map(|(_, e)| e.clone())
                .collect(),
        })
        .collect()
}

/// Tarjan's strongly connected components.
fn strongly_connected(
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> Vec<BTreeSet<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<BTreeSet<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(ws) = s.edges.get(v) {
            for w in ws {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut c = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                c.insert(w.clone());
                if w == v {
                    break;
                }
            }
            s.out.push(c);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<&Vec<String>> = edges
        .iter()
        .flat_map(|(k, vs)| std::iter::once(k).chain(vs.iter()))
        .collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_import_circle_between_the_modules_of_a_crate_but_those_known() {
    let mut wrong = Vec::new();
    let mut found = Vec::new();
    for (krate, _) in crates() {
        let name = if krate.is_empty() { "." } else { &krate };
        for c in circles_of(&krate) {
            let known = KNOWN_CIRCLES.iter().any(|(k, ms)| {
                *k == name && ms.iter().copied().eq(c.modules.iter().map(String::as_str))
            });
            if !known {
                wrong.push(format!(
                    "{name}: the modules {} use each other ({}): move what they share to where both can depend on it",
                    c.modules.join(" <-> "),
                    c.uses.join("; ")
                ));
            }
            found.push((name.to_string(), c.modules));
        }
    }
    for (k, ms) in KNOWN_CIRCLES {
        if !found
            .iter()
            .any(|(n, c)| n == k && ms.iter().copied().eq(c.iter().map(String::as_str)))
        {
            wrong.push(format!(
                "{k}: the circle {} is in KNOWN_CIRCLES but no longer exists: remove it from the list",
                ms.join(" <-> ")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The `pub fn`s of a file's code: (name, return type). `pub(crate)` and
/// narrower are not public.
fn pub_signatures(code: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("pub ") {
        let at = from + p;
        from = at + 4;
        if at > 0 && is_ident(code.as_bytes()[at - 1] as char) {
            continue;
        }
        let mut rest = code[at + 4..].trim_start();
        for q in ["const ", "async ", "unsafe ", "extern \"\" "] {
            rest = rest.strip_prefix(q).unwrap_or(rest).trim_start();
        }
        let Some(after) = rest.strip_prefix("fn ") else {
            continue;
        };
        let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
        // The return type: after the parameter list, up to the body.
        let Some(open) = after.find('(') else {
            continue;
        };
        let mut depth = 0;
        let mut close = None;
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + k);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            continue;
        };
        let tail = &after[close + 1..];
        let end = tail.find(['{', ';']).unwrap_or(tail.len());
        let ret = tail[..end].trim().strip_prefix("->").unwrap_or("");
        let ret = ret.split(" where ").next().unwrap_or(ret);
        out.push((name, ret.trim().to_string()));
    }
    out
}

/// Whether a return type's error is loose: anyhow, or a bare `String` as
/// the error of a `Result`.
fn loose_error(sig: &str) -> bool {
    let flat: String = sig.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.contains("anyhow") || flat.contains(", String>") || flat.contains(",String>")
}

#[test]
fn library_signatures_name_their_errors() {
    let mut found = BTreeSet::new();
    for (krate, lib) in crates() {
        if !lib {
            continue;
        }
        for (rel, path) in sources(&krate) {
            if is_test_file(&rel) {
                continue;
            }
            let code = code_of(&std::fs::read_to_string(&path).expect("source"));
            for (name, sig) in pub_signatures(&code) {
                if loose_error(&sig) {
                    found.insert((rel.clone(), name));
                }
            }
        }
    }
    let mut wrong = Vec::new();
    for (rel, name) in &found {
        if !KNOWN_LOOSE_ERRORS
            .iter()
            .any(|(f, n)| f == rel && n == name)
        {
            wrong.push(format!(
                "{rel}: pub fn {name} returns anyhow or Result<_, String>: give it an error enum (thiserror) that says what went wrong"
            ));
        }
    }
    for (f, n) in KNOWN_LOOSE_ERRORS {
        if !found.iter().any(|(rel, name)| rel == f && name == n) {
            wrong.push(format!(
                "{f}: pub fn {n} is in KNOWN_LOOSE_ERRORS but no longer returns a loose error: remove it from the list"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checks_see_what_they_look_for() {
    // A circle between siblings is found; a parent using its child is not.
    let code = code_of(
        "use crate::a::{b::X, c};\nfn f() { super::d::g(); kid::h(); } // crate::z::w\nmod kid;\nconst S: &str = \"crate::q::r\";\n#[cfg(test)]\nmod tests {\n    use crate::t::u;\n}\n",
    );
    let children = declared_children(&code);
    assert_eq!(children, BTreeSet::from(["kid".to_string()]));
    let paths: BTreeSet<String> = paths_in(&code, &children)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let want: BTreeSet<String> = ["crate::a::b::X", "crate::a::c", "super::d::g", "kid::h"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(paths, want);
    let mut edges = BTreeMap::new();
    let m = |s: &str| vec![s.to_string()];
    edges.insert(m("a"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("c")]));
    edges.insert(m("c"), BTreeSet::from([m("a")]));
    edges.insert(m("d"), BTreeSet::from([m("a")]));
    let circles: Vec<_> = strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    assert_eq!(circles, vec![BTreeSet::from([m("a"), m("b"), m("c")])]);
    // Signatures.
    let sigs = pub_signatures(&code_of(
        "pub fn a() -> anyhow::Result<()> {}\npub(crate) fn b() -> Result<(), String> {}\npub async fn c(\n    x: u8,\n) -> Result<u8,\n    String> {}\npub fn d(m: HashMap<String, String>) -> Result<(), E> {}\npub fn e(m: &str) {}\n",
    ));
    let loose: Vec<&str> = sigs
        .iter()
        .filter(|(_, s)| loose_error(s))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(loose, ["a", "c"]);
}
