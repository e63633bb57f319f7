//! Writing into a user's folder: every path is resolved inside the folder
//! by a `cap_std::fs::Dir` handle (nothing reaches out of it, whatever
//! links the folder holds), and on top of that no link inside the folder is
//! followed either: a link, FIFO, device or folder where a file or folder of
//! ours would go is refused, naming it. New files are created exclusively
//! under a temporary name and renamed into place once complete, so a reader
//! never sees half a file and a planted temporary name is never written
//! through. Every regular file replaced is announced first (see
//! [`OutDir::on_replace`]).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

/// The suffix of the temporary files a write leaves should it be killed.
pub const TEMP_SUFFIX: &str = ".moralsweep-part";

/// Why a user's folder was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is {kind}, not a regular file: refusing to replace it; remove it or choose another place")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path} is {kind}, not a folder: refusing to write through it; remove it or choose another place")]
    NotAFolder { path: PathBuf, kind: &'static str },
    #[error("{0:?} is not a plain relative file name (no `..`, no absolute path)")]
    BadName(PathBuf),
}

/// Whether a write made a new file or replaced a regular one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    New,
    Replaced,
}

/// Called with a regular file's path just before it is replaced.
#[derive(Clone)]
pub struct OnReplace(Arc<dyn Fn(&Path) + Send + Sync>);

impl OnReplace {
    pub fn new(f: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        OnReplace(Arc::new(f))
    }
}

impl std::fmt::Debug for OnReplace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnReplace(..)")
    }
}

/// What a name in the folder is, as [`OutDir::files`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Link,
    /// A FIFO, device or socket.
    Other,
}

/// A user's folder open for writing.
#[derive(Debug)]
pub struct OutDir {
    root: PathBuf,
    dir: Dir,
    on_replace: Option<OnReplace>,
}

/// The kind of whatever is at `path`, for messages (not followed).
fn kind_at(path: &Path) -> &'static str {
    match std::fs::symlink_metadata(path) {
        Ok(m) => crate::read::kind_of(&m.file_type()),
        Err(_) => "not a regular file",
    }
}

fn io_at(path: PathBuf) -> impl FnOnce(io::Error) -> WriteError {
    move |source| WriteError::Io { path, source }
}

/// `rel` as its plain components, refusing `..`, roots and the empty path.
fn parts(rel: &Path) -> Result<Vec<OsString>, WriteError> {
    let mut v = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => v.push(s.to_owned()),
            Component::CurDir => {}
            _ => return Err(WriteError::BadName(rel.to_path_buf())),
        }
    }
    if v.is_empty() {
        return Err(WriteError::BadName(rel.to_path_buf()));
    }
    Ok(v)
}

impl OutDir {
    /// Opens `root`, creating it (and its parents) when missing. `root`
    /// itself may be a link to a folder: the user named it.
    pub fn create(root: &Path) -> Result<OutDir, WriteError> {
        match std::fs::metadata(root) {
            Ok(m) if !m.is_dir() => {
                return Err(WriteError::NotAFolder {
                    path: root.to_path_buf(),
                    kind: crate::read::kind_of(&m.file_type()),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(root).map_err(io_at(root.to_path_buf()))?
            }
            Err(e) => return Err(io_at(root.to_path_buf())(e)),
        }
        Self::open_dir(root)
    }

    /// Opens `root` if it exists (`None` when it does not).
    pub fn open(root: &Path) -> Result<Option<OutDir>, WriteError> {
        match std::fs::metadata(root) {
            Ok(m) if !m.is_dir() => Err(WriteError::NotAFolder {
                path: root.to_path_buf(),
                kind: crate::read::kind_of(&m.file_type()),
            }),
            Ok(_) => Self::open_dir(root).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(root.to_path_buf())(e)),
        }
    }

    fn open_dir(root: &Path) -> Result<OutDir, WriteError> {
        let dir =
            Dir::open_ambient_dir(root, ambient_authority()).map_err(io_at(root.to_path_buf()))?;
        Ok(OutDir {
            root: root.to_path_buf(),
            dir,
            on_replace: None,
        })
    }

    /// Announces each regular file just before a write replaces it.
    pub fn on_replace(&mut self, hook: Option<OnReplace>) {
        self.on_replace = hook;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` as the user sees it (the folder's path joined).
    pub fn shown(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// The folder holding `rel`'s last component, each folder on the way a
    /// real folder (never a link), created when `create`; `None` when one
    /// is missing and `create` is false.
    fn parent_of(&self, parts: &[OsString], create: bool) -> Result<Option<Dir>, WriteError> {
        let mut dir = self.dir.try_clone().map_err(io_at(self.root.clone()))?;
        let mut shown = self.root.clone();
        for p in &parts[..parts.len() - 1] {
            shown.push(p);
            match dir.symlink_metadata(p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(WriteError::NotAFolder {
                        kind: kind_at(&shown),
                        path: shown,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    match dir.create_dir(p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io_at(shown)(e)),
                    }
                }
                Err(e) => return Err(io_at(shown)(e)),
            }
            dir = dir.open_dir(p).map_err(io_at(shown.clone()))?;
        }
        Ok(Some(dir))
    }

    /// What is at `rel` now: `None` when nothing, `Some(size)` for a
    /// regular file; anything else (a link, a FIFO, a device, a folder, or
    /// a link or file on the way) is an error naming it.
    pub fn existing(&self, rel: impl AsRef<Path>) -> Result<Option<u64>, WriteError> {
        let rel = rel.as_ref();
        let parts = parts(rel)?;
        let Some(dir) = self.parent_of(&parts, false)? else {
            return Ok(None);
        };
        target_state(&dir, &parts[parts.len() - 1], &self.shown(rel))
    }

    /// Writes `bytes` to `rel` (through a temporary file and a rename).
    pub fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> Result<Prior, WriteError> {
        let mut f = self.create_file(rel)?;
        f.write_all(bytes).map_err(io_at(self.shown(&f.tmp_name)))?;
        f.commit()
    }

    /// A new file for `rel`, written under a temporary name created
    /// exclusively beside it; [`NewFile::commit`] puts it in place.
    pub fn create_file(&self, rel: impl AsRef<Path>) -> Result<NewFile, WriteError> {
        let rel = rel.as_ref();
        let parts = parts(rel)?;
        let shown = self.shown(rel);
        let dir = self
            .parent_of(&parts, true)?
            .expect("parent_of creates what is missing");
        let name = parts[parts.len() - 1].clone();
        // Refused before anything is written.
        target_state(&dir, &name, &shown)?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        for _ in 0..64 {
            let tmp = format!(
                ".{}.{}-{}{TEMP_SUFFIX}",
                name.to_string_lossy(),
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            match dir.open_with(&tmp, &opts) {
                Ok(file) => {
                    return Ok(NewFile {
                        dir,
                        name,
                        tmp_name: tmp,
                        file: Some(io::BufWriter::new(file)),
                        shown,
                        on_replace: self.on_replace.clone(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_at(shown.with_file_name(&tmp))(e)),
            }
        }
        Err(WriteError::Io {
            path: shown,
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "no free temporary name beside it",
            ),
        })
    }

    /// Removes the file or link `rel` (a link itself, never what it points
    /// to); `false` when there was nothing. A folder or device is refused.
    pub fn remove_file(&self, rel: impl AsRef<Path>) -> Result<bool, WriteError> {
        let rel = rel.as_ref();
        let parts = parts(rel)?;
        let shown = self.shown(rel);
        let Some(dir) = self.parent_of(&parts, false)? else {
            return Ok(false);
        };
        let name = &parts[parts.len() - 1];
        match dir.symlink_metadata(name) {
            Ok(m) if m.is_file() || m.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(WriteError::NotAFile {
                    kind: kind_at(&shown),
                    path: shown,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_at(shown)(e)),
        }
        match dir.remove_file(name) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(shown)(e)),
        }
    }

    /// Every name under the folder other than folders (links are listed,
    /// never followed), as relative paths with `/` separators, sorted.
    pub fn files(&self) -> Result<Vec<(String, Kind)>, WriteError> {
        let mut out = Vec::new();
        let first = self.dir.try_clone().map_err(io_at(self.root.clone()))?;
        let mut stack = vec![(String::new(), first)];
        while let Some((prefix, dir)) = stack.pop() {
            let shown = self.root.join(&prefix);
            for e in dir.entries().map_err(io_at(shown.clone()))? {
                let e = e.map_err(io_at(shown.clone()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                let ft = e.file_type().map_err(io_at(self.root.join(&rel)))?;
                if ft.is_dir() {
                    let sub = dir.open_dir(&name).map_err(io_at(self.root.join(&rel)))?;
                    stack.push((rel, sub));
                } else if ft.is_file() {
                    out.push((rel, Kind::File));
                } else if ft.is_symlink() {
                    out.push((rel, Kind::Link));
                } else {
                    out.push((rel, Kind::Other));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Refuses `path` if it is a symbolic link: for a folder inside a user's
/// output (`data/`, `metrics/`), which the user did not name themselves.
pub fn refuse_link(path: &Path) -> Result<(), WriteError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(WriteError::NotAFolder {
            path: path.to_path_buf(),
            kind: "a symbolic link",
        }),
        _ => Ok(()),
    }
}

/// A new file for `path`, in its folder (created when missing) as the
/// [`OutDir`]: for writers given a file's path inside an output folder
/// (`<output>/data/<file>`) rather than a folder and a name in it. That
/// folder must not be a link.
pub fn create_file_at(path: &Path) -> Result<NewFile, WriteError> {
    let name = path
        .file_name()
        .ok_or_else(|| WriteError::BadName(path.to_path_buf()))?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    refuse_link(parent)?;
    OutDir::create(parent)?.create_file(name)
}

/// `None` when `name` is free in `dir`, its size when a regular file;
/// an error naming `shown` otherwise.
fn target_state(dir: &Dir, name: &OsString, shown: &Path) -> Result<Option<u64>, WriteError> {
    match dir.symlink_metadata(name) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Err(WriteError::NotAFile {
            path: shown.to_path_buf(),
            kind: kind_at(shown),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(shown.to_path_buf())(e)),
    }
}

/// A file being written under a temporary name; removed unless committed.
#[derive(Debug)]
pub struct NewFile {
    dir: Dir,
    name: OsString,
    tmp_name: String,
    file: Option<io::BufWriter<cap_std::fs::File>>,
    shown: PathBuf,
    on_replace: Option<OnReplace>,
}

impl NewFile {
    /// Where the file goes, as the user sees it.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Flushes the file to disk and renames it into place, after checking
    /// again that what it replaces (if anything) is a regular file and
    /// announcing that replacement.
    pub fn commit(mut self) -> Result<Prior, WriteError> {
        let tmp_shown = self.shown.with_file_name(&self.tmp_name);
        if let Some(w) = self.file.take() {
            let f = w
                .into_inner()
                .map_err(|e| io_at(tmp_shown.clone())(e.into_error()))?;
            f.sync_all().map_err(io_at(tmp_shown.clone()))?;
        }
        let prior = match target_state(&self.dir, &self.name, &self.shown)? {
            None => Prior::New,
            Some(_) => {
                if let Some(h) = &self.on_replace {
                    (h.0)(&self.shown);
                }
                Prior::Replaced
            }
        };
        // rename(2) replaces the name itself: were a link planted there
        // since the check, the link is replaced, never its target.
        self.dir
            .rename(&self.tmp_name, &self.dir, &self.name)
            .map_err(io_at(self.shown.clone()))?;
        self.tmp_name.clear();
        Ok(prior)
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("the file is already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.tmp_name.is_empty() {
            self.file = None;
            let _ = self.dir.remove_file(&self.tmp_name);
        }
    }
}
