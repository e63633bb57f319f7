//! The folder `moralsweep results SWEEP --out DIR` writes into, guarded so
//! that nothing a user had there is lost and two sweeps never mix.
//!
//! A fetch leaves a manifest, `DIR/.moralsweep-results.json`, naming the
//! sweep and every file it wrote. The rules:
//!
//! - a new or empty folder, or one whose manifest names the same sweep, is
//!   written (files of an earlier fetch that the new one no longer has, such
//!   as the partial files of a cancelled sweep, are removed at the end);
//! - a folder with any other file (a user's own rating files, anything not
//!   listed in the manifest) is refused unless `--force`; with `--force`
//!   each such file that a fetched file would replace is named on stderr
//!   before it is replaced, and the others stay;
//! - a folder holding another sweep's results is refused; with `--force`
//!   that sweep's files (those its manifest lists) are removed first, after
//!   saying so, so the folder never holds two sweeps.
//!
//! Each file is written to a temporary name and renamed into place once
//! complete; the manifest is updated (atomically too) before each rename,
//! so that an interrupted fetch leaves a folder the next fetch recognises.
//! A fetch of a cancelled sweep also writes [`PARTIAL_MARKER`].

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use moralsweep_proto::v1 as pb;

/// The manifest of a results folder.
pub const MANIFEST: &str = ".moralsweep-results.json";
/// The marker of a fetch of a cancelled (incomplete) sweep.
pub const PARTIAL_MARKER: &str = "PARTIAL.txt";
/// The suffix of files being written.
const TEMP_SUFFIX: &str = ".moralsweep-part";

/// What a manifest says.
#[derive(Debug, Clone, PartialEq)]
struct Manifest {
    sweep: String,
    files: BTreeSet<String>,
    partial: bool,
}

impl Manifest {
    fn to_json(&self) -> String {
        let v = serde_json::json!({
            "sweep": self.sweep,
            "partial": self.partial,
            "files": self.files,
        });
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }

    fn parse(text: &str) -> Option<Manifest> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let sweep = v.get("sweep")?.as_str()?.to_string();
        let files = v
            .get("files")?
            .as_array()?
            .iter()
            .map(|f| f.as_str().map(str::to_string))
            .collect::<Option<BTreeSet<String>>>()?;
        Some(Manifest {
            sweep,
            files,
            partial: v.get("partial").and_then(|p| p.as_bool()).unwrap_or(false),
        })
    }
}

/// A checked results folder, ready to receive one sweep's files.
#[derive(Debug)]
pub struct ResultsDir {
    root: PathBuf,
    sweep: String,
    /// Files of an earlier fetch of the same sweep.
    ours: BTreeSet<String>,
    /// Another sweep's results to remove first (`--force` only).
    other: Option<(String, BTreeSet<String>)>,
    /// Whether the last fetch was of a cancelled (incomplete) sweep, kept
    /// for the manifest that [`ResultsDir::adopt`] rewrites.
    partial: bool,
    /// Files from no fetch at all (`--force` only).
    foreign: BTreeSet<String>,
}

/// Every file under `root` (symbolic links included, never followed), as
/// relative paths with `/` separators.
fn list_files(root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("listing {}", dir.display()))?;
            let child = rel.join(e.file_name());
            let ft = e
                .file_type()
                .with_context(|| format!("examining {}", e.path().display()))?;
            if ft.is_dir() {
                stack.push(child);
            } else {
                out.insert(rel_string(&child));
            }
        }
    }
    Ok(out)
}

fn rel_string(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn some_of(files: &BTreeSet<String>) -> String {
    let mut v: Vec<&str> = files.iter().map(String::as_str).take(5).collect();
    if files.len() > 5 {
        v.push("...");
    }
    v.join(", ")
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temp_of(path);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn temp_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TEMP_SUFFIX);
    PathBuf::from(s)
}

fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

impl ResultsDir {
    /// Checks `root` for a fetch of `sweep`; refuses (changing nothing) a
    /// folder that holds other files or another sweep unless `force`.
    pub fn open(root: &Path, sweep: &str, force: bool) -> anyhow::Result<ResultsDir> {
        let shown = root.display();
        let mut dir = ResultsDir {
            root: root.to_path_buf(),
            sweep: sweep.to_string(),
            ours: BTreeSet::new(),
            other: None,
            foreign: BTreeSet::new(),
            partial: false,
        };
        match std::fs::symlink_metadata(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dir),
            Err(e) => return Err(e).with_context(|| format!("--out {shown} cannot be examined")),
            Ok(m) if !m.is_dir() => {
                anyhow::bail!("--out {shown} is not a folder; give a new or empty folder")
            }
            Ok(_) => {}
        }
        let mut files = list_files(root)?;
        let manifest = if files.remove(MANIFEST) {
            let text = std::fs::read_to_string(root.join(MANIFEST)).unwrap_or_default();
            let m = Manifest::parse(&text);
            if m.is_none() {
                // Not ours to trust: a foreign file like any other.
                files.insert(MANIFEST.to_string());
            }
            m
        } else {
            None
        };
        let leftovers: BTreeSet<String> = files
            .iter()
            .filter(|f| f.ends_with(TEMP_SUFFIX))
            .cloned()
            .collect();
        match manifest {
            Some(m) if m.sweep == sweep => {
                dir.ours = files
                    .iter()
                    .filter(|f| m.files.contains(*f) || leftovers.contains(*f))
                    .cloned()
                    .collect();
            }
            Some(m) => {
                let theirs: BTreeSet<String> = files
                    .iter()
                    .filter(|f| m.files.contains(*f) || leftovers.contains(*f))
                    .cloned()
                    .collect();
                if !force {
                    anyhow::bail!(
                        "--out {shown} holds the results of sweep {:?} ({} files, listed in {}); fetch sweep {sweep:?} \
                         into another folder, or pass --force to remove {:?}'s files there first",
                        m.sweep,
                        theirs.len(),
                        root.join(MANIFEST).display(),
                        m.sweep
                    );
                }
                dir.other = Some((m.sweep, theirs));
            }
            None => {}
        }
        let claimed: BTreeSet<&String> = dir
            .ours
            .iter()
            .chain(dir.other.iter().flat_map(|(_, f)| f.iter()))
            .collect();
        dir.foreign = files
            .iter()
            .filter(|f| !claimed.contains(f))
            .cloned()
            .collect();
        if !dir.foreign.is_empty() {
            if !force {
                anyhow::bail!(
                    "--out {shown} already holds {} files that are not from a fetch of sweep {sweep:?} ({}); \
                     use a new or empty folder, or pass --force to write anyway (a file with the name of one of \
                     the sweep's files is replaced, the others stay)",
                    dir.foreign.len(),
                    some_of(&dir.foreign)
                );
            }
            eprintln!(
                "warning: --force: {shown} holds {} files from no fetch of sweep {sweep:?} ({}); any of them with the \
                 name of one of the sweep's files is named below before it is replaced",
                dir.foreign.len(),
                some_of(&dir.foreign)
            );
        }
        Ok(dir)
    }

    fn write_manifest(&self, files: &BTreeSet<String>, partial: bool) -> anyhow::Result<()> {
        let m = Manifest {
            sweep: self.sweep.clone(),
            files: files.clone(),
            partial,
        };
        write_atomic(&self.root.join(MANIFEST), m.to_json().as_bytes())
    }

    /// Receives the sweep's files into the folder; `partial` is the text of
    /// the [`PARTIAL_MARKER`] of a cancelled sweep. Returns the number of
    /// files received.
    pub async fn save(
        &mut self,
        mut stream: tonic::Streaming<pb::FileChunk>,
        partial: Option<&str>,
    ) -> anyhow::Result<usize> {
        let root = self.root.clone();
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        if let Some((other, files)) = self.other.take() {
            eprintln!(
                "warning: --force: removing the {} files of sweep {other:?} from {} first",
                files.len(),
                root.display()
            );
            for f in &files {
                remove_if_there(&root.join(f))?;
            }
        }
        // The manifest covers every file of this sweep in the folder at all
        // times: the earlier fetch's now, each new one before its rename.
        let mut listed = self.ours.clone();
        self.write_manifest(&listed, partial.is_some())?;
        let mut received = BTreeSet::new();
        let mut current: Option<(String, PathBuf, PathBuf, std::io::BufWriter<std::fs::File>)> =
            None;
        let result: anyhow::Result<()> = async {
            while let Some(chunk) = stream.message().await.map_err(|s| {
                anyhow::anyhow!("fetching results failed: {:?}: {}", s.code(), s.message())
            })? {
                if !chunk.path.is_empty() {
                    let rel = Path::new(&chunk.path);
                    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)))
                        && chunk.path != MANIFEST
                        && chunk.path != PARTIAL_MARKER
                        && !chunk.path.ends_with(TEMP_SUFFIX);
                    if !safe {
                        anyhow::bail!("the coordinator sent an unsafe path {:?}", chunk.path);
                    }
                    let path = root.join(rel);
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                    }
                    let tmp = temp_of(&path);
                    let f = std::fs::File::create(&tmp)
                        .with_context(|| format!("creating {}", tmp.display()))?;
                    current = Some((rel_string(rel), path, tmp, std::io::BufWriter::new(f)));
                }
                let Some((rel, path, tmp, w)) = current.as_mut() else {
                    anyhow::bail!("the coordinator sent data before naming its file");
                };
                w.write_all(&chunk.data)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                if chunk.last {
                    w.flush()
                        .and_then(|()| w.get_ref().sync_all())
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    if self.foreign.contains(rel.as_str()) {
                        eprintln!(
                            "replacing {} (a file from no fetch of sweep {:?}; --force)",
                            path.display(),
                            self.sweep
                        );
                    }
                    if listed.insert(rel.clone()) {
                        self.write_manifest(&listed, partial.is_some())?;
                    }
                    std::fs::rename(&*tmp, &*path).with_context(|| {
                        format!("renaming {} to {}", tmp.display(), path.display())
                    })?;
                    received.insert(rel.clone());
                    current = None;
                }
            }
            if let Some((_, path, _, _)) = &current {
                anyhow::bail!("the stream ended in the middle of {}", path.display());
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some((_, _, tmp, _)) = current {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        // Files of the earlier fetch that this one does not have (a partial
        // file of a unit with no rows now, the marker of a partial fetch).
        let mut keep = received.clone();
        if let Some(text) = partial {
            write_atomic(&root.join(PARTIAL_MARKER), text.as_bytes())?;
            keep.insert(PARTIAL_MARKER.to_string());
        }
        for stale in listed.difference(&keep) {
            remove_if_there(&root.join(stale))?;
        }
        self.write_manifest(&keep, partial.is_some())?;
        self.partial = partial.is_some();
        self.ours = keep;
        Ok(received.len())
    }

    /// Lists files written here beside the fetched ones (the report, its
    /// figures, the provenance) in the manifest, so that the next fetch of
    /// the same sweep takes them for its own instead of refusing the folder.
    /// Names of files that do not exist are ignored.
    pub fn adopt(&mut self, rels: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
        let mut files = self.ours.clone();
        for rel in rels {
            if self.root.join(&rel).is_file() {
                files.insert(rel);
            }
        }
        if files != self.ours {
            self.write_manifest(&files, self.partial)?;
            self.ours = files;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn manifest(root: &Path, sweep: &str, files: &[&str]) {
        let m = Manifest {
            sweep: sweep.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            partial: false,
        };
        put(root, MANIFEST, &m.to_json());
    }

    #[test]
    fn new_and_empty_folders_are_taken() {
        let t = tempfile::tempdir().unwrap();
        assert!(ResultsDir::open(&t.path().join("new"), "s", false).is_ok());
        std::fs::create_dir_all(t.path().join("empty/data")).unwrap();
        assert!(ResultsDir::open(&t.path().join("empty"), "s", false).is_ok());
    }

    #[test]
    fn other_files_are_refused_unless_forced_and_named() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "data/mine_temp01.csv", "precious");
        let e = ResultsDir::open(t.path(), "s", false).unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("data/mine_temp01.csv") && m.contains("--force") && m.contains("1 files"),
            "{m}"
        );
        let d = ResultsDir::open(t.path(), "s", true).unwrap();
        assert_eq!(d.foreign.len(), 1);
        assert_eq!(
            std::fs::read_to_string(t.path().join("data/mine_temp01.csv")).unwrap(),
            "precious"
        );
    }

    #[test]
    fn the_same_sweep_is_refetched_and_another_refused() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "data/a_temp01.csv", "x");
        put(t.path(), "data/a_temp01.csv.moralsweep-part", "half");
        manifest(t.path(), "s", &["data/a_temp01.csv"]);
        let d = ResultsDir::open(t.path(), "s", false).unwrap();
        assert_eq!(d.ours.len(), 2);
        assert!(d.foreign.is_empty());
        let e = format!("{:#}", ResultsDir::open(t.path(), "t", false).unwrap_err());
        assert!(e.contains("sweep \"s\"") && e.contains("--force"), "{e}");
        let d = ResultsDir::open(t.path(), "t", true).unwrap();
        assert_eq!(d.other.as_ref().unwrap().1.len(), 2);
        // A file the manifest does not list is no one's.
        put(t.path(), "notes.txt", "mine");
        let e = format!("{:#}", ResultsDir::open(t.path(), "s", false).unwrap_err());
        assert!(e.contains("notes.txt"), "{e}");
    }

    #[test]
    fn a_file_in_place_of_the_folder_is_refused() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "f", "x");
        let e = format!(
            "{:#}",
            ResultsDir::open(&t.path().join("f"), "s", true).unwrap_err()
        );
        assert!(e.contains("not a folder"), "{e}");
    }

    #[test]
    fn manifests_round_trip() {
        let m = Manifest {
            sweep: "s".into(),
            files: ["data/a.csv".to_string()].into(),
            partial: true,
        };
        assert_eq!(Manifest::parse(&m.to_json()), Some(m));
        assert_eq!(Manifest::parse("{"), None);
    }
}
