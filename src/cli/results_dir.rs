//! The folder `moralsweep results SWEEP --out DIR` writes into, guarded so
//! that nothing a user had there is lost, two sweeps (or two experiments
//! under one name) never mix, and nothing is written outside it.
//!
//! A fetch leaves a manifest, `DIR/.moralsweep-results.json`, naming the
//! sweep, its identity (the SHA-256 of the spec the coordinator was given),
//! every file the fetch received (`files`) and every file `results` itself
//! wrote beside them (`generated`: the provenance, the report and its
//! figures). The rules:
//!
//! - a new or empty folder, or one whose manifest names the same sweep with
//!   the same spec hash, is written (files of an earlier fetch that the new
//!   one no longer has, such as the partial files of a cancelled sweep, are
//!   removed at the end; the earlier report is kept when this fetch writes
//!   none, and said so);
//! - a folder with any other file (a user's own rating files or report,
//!   anything not listed in the manifest, any link, FIFO or device) is
//!   refused unless `--force`; with `--force` each regular file that is
//!   replaced is named on stderr just before, the others stay, and a link,
//!   FIFO or device in the way is refused, never written through;
//! - a folder holding another sweep's results, or another experiment's of
//!   the same name (a different spec hash), is refused; with `--force` its
//!   files (the regular files its manifest lists) are removed first, after
//!   saying so, so the folder never holds two sweeps.
//!
//! Every write goes through [`moralsweep_userfs::OutDir`]: relative to the
//! folder, never following a link inside it, by exclusive temporary files
//! renamed into place. The manifest is updated (atomically too) before each
//! rename, so that an interrupted fetch leaves a folder the next fetch
//! recognises. A fetch of a cancelled sweep also writes [`PARTIAL_MARKER`].

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use moralsweep_proto::v1 as pb;
use moralsweep_userfs::{Kind, OnReplace, OutDir, TEMP_SUFFIX};

/// The manifest of a results folder.
pub const MANIFEST: &str = ".moralsweep-results.json";
/// The marker of a fetch of a cancelled (incomplete) sweep.
pub const PARTIAL_MARKER: &str = "PARTIAL.txt";

/// What a manifest says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub sweep: String,
    /// Hex SHA-256 of the sweep's spec ("" when unknown: a manifest of an
    /// earlier moralsweep, or a sweep the coordinator kept no spec of).
    pub spec_sha256: String,
    /// The files the fetch received (and the partial marker).
    pub files: BTreeSet<String>,
    /// The files `results` wrote beside them (provenance, report, figures).
    pub generated: BTreeSet<String>,
    pub partial: bool,
}

/// Why a manifest is not one.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: {message}")]
    Json { line: usize, message: String },
    #[error("no {0} (expected {{\"sweep\": ..., \"spec_sha256\": ..., \"files\": [...], \"generated\": [...]}})")]
    Missing(&'static str),
    #[error("{0} is not a plain relative path inside the folder")]
    UnsafePath(String),
}

impl Manifest {
    pub fn to_json(&self) -> String {
        let v = serde_json::json!({
            "sweep": self.sweep,
            "spec_sha256": self.spec_sha256,
            "partial": self.partial,
            "files": self.files,
            "generated": self.generated,
        });
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }

    /// Parses a manifest; a path in it that could leave the folder is an error.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ManifestError::Json {
            line: e.line(),
            message: e.to_string(),
        })?;
        let sweep = v
            .get("sweep")
            .and_then(|s| s.as_str())
            .ok_or(ManifestError::Missing("\"sweep\" string"))?
            .to_string();
        let list = |key: &'static str, need: bool| -> Result<BTreeSet<String>, ManifestError> {
            let Some(a) = v.get(key) else {
                return if need {
                    Err(ManifestError::Missing(key))
                } else {
                    Ok(BTreeSet::new())
                };
            };
            let a = a.as_array().ok_or(ManifestError::Missing(key))?;
            let mut out = BTreeSet::new();
            for f in a {
                let f = f.as_str().ok_or(ManifestError::Missing(key))?;
                if !is_plain(f) {
                    return Err(ManifestError::UnsafePath(f.to_string()));
                }
                out.insert(f.to_string());
            }
            Ok(out)
        };
        Ok(Manifest {
            sweep,
            spec_sha256: v
                .get("spec_sha256")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string(),
            files: list("files", true)?,
            generated: list("generated", false)?,
            partial: v.get("partial").and_then(|p| p.as_bool()).unwrap_or(false),
        })
    }
}

/// A relative path of plain names (no `..`, no root, not empty).
fn is_plain(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// A checked results folder, ready to receive one sweep's files.
#[derive(Debug)]
pub struct ResultsDir {
    root: PathBuf,
    sweep: String,
    spec_sha256: String,
    /// Regular files of an earlier fetch of the same sweep (and leftover
    /// temporary files of an interrupted one).
    ours: BTreeSet<String>,
    /// Files the earlier fetch generated (report, provenance, figures).
    generated: BTreeSet<String>,
    /// Another sweep's results to remove first (`--force` only).
    other: Option<(String, BTreeSet<String>)>,
    /// Whether the last fetch was of a cancelled (incomplete) sweep.
    partial: bool,
    /// Names from no fetch at all (`--force` only), links and the like included.
    foreign: Arc<BTreeSet<String>>,
}

fn some_of<'a>(files: impl IntoIterator<Item = &'a String>, n: usize) -> String {
    let all: Vec<&String> = files.into_iter().collect();
    let mut v: Vec<&str> = all.iter().map(|s| s.as_str()).take(n).collect();
    if all.len() > n {
        v.push("...");
    }
    v.join(", ")
}

fn short(sha: &str) -> &str {
    if sha.is_empty() {
        "none recorded"
    } else {
        &sha[..sha.len().min(12)]
    }
}

impl ResultsDir {
    /// Checks `root` for a fetch of `sweep` whose spec hashes to
    /// `spec_sha256`; refuses (changing nothing) a folder that holds other
    /// files, another sweep or another experiment of the name, unless `force`.
    pub fn open(
        root: &Path,
        sweep: &str,
        spec_sha256: &str,
        force: bool,
    ) -> anyhow::Result<ResultsDir> {
        let shown = root.display();
        let mut dir = ResultsDir {
            root: root.to_path_buf(),
            sweep: sweep.to_string(),
            spec_sha256: spec_sha256.to_string(),
            ours: BTreeSet::new(),
            generated: BTreeSet::new(),
            other: None,
            foreign: Arc::new(BTreeSet::new()),
            partial: false,
        };
        let out = match OutDir::open(root) {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(dir),
            Err(e) => {
                return Err(e).with_context(|| format!("--out {shown}: give a new or empty folder"))
            }
        };
        let listed = out.files()?;
        let mut files = BTreeSet::new();
        let mut odd = BTreeSet::new();
        let mut odd_named = Vec::new();
        for (rel, kind) in listed {
            match kind {
                Kind::File => {
                    files.insert(rel);
                }
                Kind::Link => {
                    odd_named.push(format!("{rel} (a symbolic link)"));
                    odd.insert(rel);
                }
                Kind::Other => {
                    odd_named.push(format!("{rel} (not a regular file)"));
                    odd.insert(rel);
                }
            }
        }
        let manifest = if files.remove(MANIFEST) {
            let path = root.join(MANIFEST);
            let read =
                moralsweep_userfs::read_to_string_bounded(&path, moralsweep_userfs::MANIFEST_LIMIT)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .and_then(|t| Manifest::parse(&t).map_err(|e| anyhow::anyhow!("{e}")));
            match read {
                Ok(m) => Some(m),
                Err(e) => {
                    // Not ours to trust: a foreign file like any other.
                    eprintln!("warning: {}: not a results manifest: {e:#}", path.display());
                    files.insert(MANIFEST.to_string());
                    None
                }
            }
        } else {
            None
        };
        let leftovers: BTreeSet<String> = files
            .iter()
            .filter(|f| f.ends_with(TEMP_SUFFIX))
            .cloned()
            .collect();
        let claim = |m: &Manifest| -> BTreeSet<String> {
            files
                .iter()
                .filter(|f| {
                    m.files.contains(*f) || m.generated.contains(*f) || leftovers.contains(*f)
                })
                .cloned()
                .collect()
        };
        match manifest {
            Some(m) if m.sweep == sweep && m.spec_sha256 == spec_sha256 => {
                dir.ours = claim(&m)
                    .into_iter()
                    .filter(|f| !m.generated.contains(f))
                    .collect();
                dir.generated = files
                    .iter()
                    .filter(|f| m.generated.contains(*f))
                    .cloned()
                    .collect();
                dir.partial = m.partial;
            }
            Some(m) => {
                let theirs = claim(&m);
                let what = if m.sweep == sweep && m.spec_sha256.is_empty() {
                    format!(
                        "sweep {sweep:?} fetched by an earlier moralsweep, which recorded no spec hash, so it \
                         cannot be told apart from another experiment of that name"
                    )
                } else if m.sweep == sweep {
                    format!(
                        "another experiment named {sweep:?} (its spec's SHA-256 is {}, this sweep's is {}: the sweep \
                         was deleted and submitted again with a different spec)",
                        short(&m.spec_sha256),
                        short(spec_sha256)
                    )
                } else {
                    format!("sweep {:?}", m.sweep)
                };
                if !force {
                    anyhow::bail!(
                        "--out {shown} holds the results of {what} ({} files, listed in {}); fetch sweep {sweep:?} \
                         into another folder, or pass --force to remove those files there first",
                        theirs.len(),
                        root.join(MANIFEST).display(),
                    );
                }
                dir.other = Some((what, theirs));
            }
            None => {}
        }
        let claimed: BTreeSet<&String> = dir
            .ours
            .iter()
            .chain(dir.generated.iter())
            .chain(dir.other.iter().flat_map(|(_, f)| f.iter()))
            .collect();
        let foreign: BTreeSet<String> = files
            .iter()
            .filter(|f| !claimed.contains(f))
            .cloned()
            .chain(odd.iter().cloned())
            .collect();
        if !foreign.is_empty() {
            let named: Vec<String> = files
                .iter()
                .filter(|f| !claimed.contains(f))
                .cloned()
                .chain(odd_named)
                .collect();
            if !force {
                anyhow::bail!(
                    "--out {shown} already holds {} files that are not from a fetch of sweep {sweep:?} ({}); \
                     use a new or empty folder, or pass --force to write anyway (a regular file with the name of \
                     one of the sweep's files is replaced, naming it; links and other files stay)",
                    foreign.len(),
                    some_of(&named, 5)
                );
            }
            eprintln!(
                "warning: --force: {shown} holds {} files from no fetch of sweep {sweep:?} ({}); each one a \
                 fetched or generated file replaces is named below just before it is replaced; a link, FIFO \
                 or device in the way is refused",
                foreign.len(),
                some_of(&named, 5)
            );
        }
        dir.foreign = Arc::new(foreign);
        Ok(dir)
    }

    /// The announcement of every replaced file that is not ours (`--force`).
    pub fn on_replace(&self) -> OnReplace {
        let root = self.root.clone();
        let foreign = self.foreign.clone();
        let sweep = self.sweep.clone();
        OnReplace::new(move |p: &Path| {
            let rel = p.strip_prefix(&root).map(rel_string).unwrap_or_default();
            if foreign.contains(&rel) {
                eprintln!(
                    "replacing {} (a file from no fetch of sweep {sweep:?}; --force)",
                    p.display()
                );
            }
        })
    }

    fn out(&self) -> anyhow::Result<OutDir> {
        let mut out = OutDir::create(&self.root).with_context(|| {
            format!("--out {}: give a new or empty folder", self.root.display())
        })?;
        out.on_replace(Some(self.on_replace()));
        Ok(out)
    }

    fn manifest(
        &self,
        files: &BTreeSet<String>,
        generated: &BTreeSet<String>,
        partial: bool,
    ) -> Manifest {
        Manifest {
            sweep: self.sweep.clone(),
            spec_sha256: self.spec_sha256.clone(),
            files: files.clone(),
            generated: generated.clone(),
            partial,
        }
    }

    fn write_manifest(
        &self,
        out: &OutDir,
        files: &BTreeSet<String>,
        partial: bool,
    ) -> anyhow::Result<()> {
        let m = self.manifest(files, &self.generated, partial);
        out.write(MANIFEST, m.to_json().as_bytes())?;
        Ok(())
    }

    /// Receives the sweep's files into the folder; `partial` is the text of
    /// the [`PARTIAL_MARKER`] of a cancelled sweep. Returns the number of
    /// files received.
    pub async fn save(
        &mut self,
        mut stream: tonic::Streaming<pb::FileChunk>,
        partial: Option<&str>,
    ) -> anyhow::Result<usize> {
        let out = self.out()?;
        if let Some((other, files)) = self.other.take() {
            eprintln!(
                "warning: --force: removing the {} files of {other} from {} first",
                files.len(),
                self.root.display()
            );
            for f in &files {
                out.remove_file(f)?;
            }
            self.generated.clear();
        }
        // The manifest covers every file of this sweep in the folder at all
        // times: the earlier fetch's now, each new one before its rename.
        let mut listed = self.ours.clone();
        self.write_manifest(&out, &listed, partial.is_some())?;
        let mut received = BTreeSet::new();
        let mut current: Option<(String, moralsweep_userfs::NewFile)> = None;
        while let Some(chunk) = stream.message().await.map_err(|s| {
            anyhow::anyhow!("fetching results failed: {:?}: {}", s.code(), s.message())
        })? {
            if !chunk.path.is_empty() {
                let safe = is_plain(&chunk.path)
                    && chunk.path != MANIFEST
                    && chunk.path != PARTIAL_MARKER
                    && !chunk.path.ends_with(TEMP_SUFFIX)
                    && !self.generated.contains(&chunk.path);
                if !safe {
                    anyhow::bail!("the coordinator sent an unsafe path {:?}", chunk.path);
                }
                let rel = rel_string(Path::new(&chunk.path));
                let f = out.create_file(&rel)?;
                current = Some((rel, f));
            }
            let Some((_, f)) = current.as_mut() else {
                anyhow::bail!("the coordinator sent data before naming its file");
            };
            f.write_all(&chunk.data)
                .with_context(|| format!("writing {}", f.path().display()))?;
            if chunk.last {
                if let Some((rel, f)) = current.take() {
                    if listed.insert(rel.clone()) {
                        self.write_manifest(&out, &listed, partial.is_some())?;
                    }
                    f.commit()?;
                    received.insert(rel);
                }
            }
        }
        if let Some((_, f)) = &current {
            anyhow::bail!("the stream ended in the middle of {}", f.path().display());
        }
        // Files of the earlier fetch that this one does not have (a partial
        // file of a unit with no rows now, the marker of a partial fetch).
        let mut keep = received.clone();
        if let Some(text) = partial {
            out.write(PARTIAL_MARKER, text.as_bytes())?;
            keep.insert(PARTIAL_MARKER.to_string());
        }
        for stale in listed.difference(&keep) {
            out.remove_file(stale)?;
        }
        self.write_manifest(&out, &keep, partial.is_some())?;
        self.partial = partial.is_some();
        self.ours = keep;
        Ok(received.len())
    }

    /// Records the files `results` wrote beside the fetched ones (the
    /// provenance, the report, its figures): only those, never a file it
    /// did not write. Files the earlier fetch generated that this one did
    /// not write again (a figure no longer drawn) are removed.
    pub fn record_generated(&mut self, written: &[PathBuf]) -> anyhow::Result<()> {
        let out = self.out()?;
        let now: BTreeSet<String> = written
            .iter()
            .filter_map(|p| p.strip_prefix(&self.root).ok())
            .map(rel_string)
            .filter(|r| is_plain(r))
            .collect();
        for stale in self.generated.difference(&now) {
            out.remove_file(stale)?;
        }
        self.generated = now;
        self.write_manifest(&out, &self.ours, self.partial)
    }

    /// The files of the earlier fetch's report still in the folder (kept by
    /// a fetch that writes no report).
    pub fn earlier_report(&self) -> &BTreeSet<String> {
        &self.generated
    }
}

fn rel_string(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn manifest(root: &Path, sweep: &str, sha: &str, files: &[&str]) {
        let m = Manifest {
            sweep: sweep.into(),
            spec_sha256: sha.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            ..Manifest::default()
        };
        put(root, MANIFEST, &m.to_json());
    }

    #[test]
    fn new_and_empty_folders_are_taken() {
        let t = tempfile::tempdir().unwrap();
        assert!(ResultsDir::open(&t.path().join("new"), "s", "h", false).is_ok());
        std::fs::create_dir_all(t.path().join("empty/data")).unwrap();
        assert!(ResultsDir::open(&t.path().join("empty"), "s", "h", false).is_ok());
        // A link to an empty folder is that folder.
        std::os::unix::fs::symlink(t.path().join("empty"), t.path().join("link")).unwrap();
        assert!(ResultsDir::open(&t.path().join("link"), "s", "h", false).is_ok());
    }

    #[test]
    fn other_files_are_refused_unless_forced_and_named() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "data/mine_temp01.csv", "precious");
        let e = ResultsDir::open(t.path(), "s", "h", false).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("data/mine_temp01.csv") && m.contains("--force") && m.contains("1 files"),
            "{m}"
        );
        let d = ResultsDir::open(t.path(), "s", "h", true).unwrap();
        assert_eq!(d.foreign.len(), 1);
        assert_eq!(
            std::fs::read_to_string(t.path().join("data/mine_temp01.csv")).unwrap(),
            "precious"
        );
    }

    #[test]
    fn the_same_sweep_is_refetched_and_another_or_another_experiment_refused() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "data/a_temp01.csv", "x");
        put(t.path(), "data/a_temp01.csv.moralsweep-part", "half");
        manifest(t.path(), "s", "h1", &["data/a_temp01.csv"]);
        let d = ResultsDir::open(t.path(), "s", "h1", false).unwrap();
        assert_eq!(d.ours.len(), 2);
        assert!(d.foreign.is_empty());
        let e = format!(
            "{:#}",
            ResultsDir::open(t.path(), "t", "h1", false).unwrap_err()
        );
        assert!(e.contains("sweep \"s\"") && e.contains("--force"), "{e}");
        let e = format!(
            "{:#}",
            ResultsDir::open(t.path(), "s", "h2", false).unwrap_err()
        );
        assert!(
            e.contains("another experiment named \"s\"") && e.contains("--force"),
            "{e}"
        );
        let d = ResultsDir::open(t.path(), "t", "h1", true).unwrap();
        assert_eq!(d.other.as_ref().unwrap().1.len(), 2);
        // A file the manifest does not list is no one's.
        put(t.path(), "notes.txt", "mine");
        let e = format!(
            "{:#}",
            ResultsDir::open(t.path(), "s", "h1", false).unwrap_err()
        );
        assert!(e.contains("notes.txt"), "{e}");
    }

    #[test]
    fn a_listed_link_is_never_ours() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink("../elsewhere", out.join("data")).unwrap();
        manifest(&out, "s", "h", &["data"]);
        let e = format!("{:#}", ResultsDir::open(&out, "s", "h", false).unwrap_err());
        assert!(e.contains("data (a symbolic link)"), "{e}");
    }

    #[test]
    fn a_file_in_place_of_the_folder_is_refused() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "f", "x");
        let e = format!(
            "{:#}",
            ResultsDir::open(&t.path().join("f"), "s", "h", true).unwrap_err()
        );
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn manifests_round_trip_and_refuse_paths_out() {
        let m = Manifest {
            sweep: "s".into(),
            spec_sha256: "ab".into(),
            files: ["data/a.csv".to_string()].into(),
            generated: ["report.html".to_string()].into(),
            partial: true,
        };
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
        assert!(Manifest::parse("{").is_err());
        let e = Manifest::parse(r#"{"sweep":"s","files":["../x"]}"#).unwrap_err();
        assert!(e.to_string().contains("../x"), "{e}");
    }

    /// Fuzz target: any bytes as a folder's manifest never panic `open`;
    /// bytes that are no manifest are named (the file, why) and the folder
    /// is then refused without `--force` like any foreign file. Valid
    /// manifests mutated (keys dropped, values of other types, paths out of
    /// the folder) and arbitrary bytes; 512 cases, count printed.
    #[test]
    fn fuzz_manifest() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let valid = Manifest {
            sweep: "s".into(),
            spec_sha256: "ab".repeat(32),
            files: ["data/a_temp01.csv".to_string()].into(),
            generated: ["report.html".to_string()].into(),
            partial: false,
        }
        .to_json();
        let swaps: &[(&str, &str)] = &[
            ("\"sweep\"", "\"swept\""),
            ("\"files\"", "\"file\""),
            ("\"s\"", "7"),
            ("\"data/a_temp01.csv\"", "\"../../victim\""),
            ("\"data/a_temp01.csv\"", "\"/etc/passwd\""),
            ("\"report.html\"", "null"),
            ("[", "{"),
            ("false", "\"no\""),
        ];
        let mutated = (
            proptest::collection::vec(0..swaps.len(), 0..3),
            proptest::option::of(any::<proptest::sample::Index>()),
        )
            .prop_map(move |(picks, cut)| {
                let mut t = valid.clone();
                for p in picks {
                    t = t.replacen(swaps[p].0, swaps[p].1, 1);
                }
                let mut b = t.into_bytes();
                if let Some(c) = cut {
                    b.truncate(c.index(b.len() + 1));
                }
                b
            });
        let input = prop_oneof![mutated, proptest::collection::vec(any::<u8>(), 0..300)];
        let t = tempfile::tempdir().unwrap();
        let mut runner = TestRunner::new(Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        });
        let n = std::cell::Cell::new(0);
        runner
            .run(&input, |bytes| {
                n.set(n.get() + 1);
                std::fs::write(t.path().join(MANIFEST), &bytes).unwrap();
                let parsed = Manifest::parse(&String::from_utf8_lossy(&bytes));
                match ResultsDir::open(t.path(), "s", &"ab".repeat(32), false) {
                    Ok(d) => prop_assert!(parsed.is_ok() && d.foreign.is_empty()),
                    Err(e) => {
                        let m = format!("{e:#}");
                        prop_assert!(m.contains(MANIFEST), "{m}");
                        if let Ok(p) = &parsed {
                            // A valid manifest of another sweep or spec.
                            prop_assert!(p.sweep != "s" || p.spec_sha256 != "ab".repeat(32), "{m}");
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
        println!("fuzz results manifest: {} cases", n.get());
    }
}
