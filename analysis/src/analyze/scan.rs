//! The directory scan: which files under a directory are rating files, and their keys.

use super::*;
use crate::formats::{parse_file_name, FileKind};
use std::path::{Path, PathBuf};

/// One rating file found by the scan.
#[derive(Debug, Clone)]
pub struct FoundFile {
    pub path: PathBuf,
    /// Relative to the scanned directory, with `/` separators.
    pub relative: String,
    pub key: String,
    pub kind: FileKind,
    pub size: u64,
}

/// What a scan of a directory found: the rating files, and a note for each
/// entry it skipped.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The rating files, sorted by path.
    pub files: Vec<FoundFile>,
    /// One line per skipped entry, sorted: a link to a directory (never
    /// followed, so `up -> ..` cannot loop), a link whose target is gone, a
    /// file that is not a rating file, an unreadable subdirectory. Hidden
    /// entries (`.name`) are skipped without a note.
    pub notes: Vec<String>,
}

/// Directories nested deeper than this are not scanned (with a note).
pub const MAX_SCAN_DEPTH: usize = 32;

/// Lists the rating files under `dir`, recursively, sorted by path (the
/// notes of [`scan`] go to the log).
pub fn scan_dir(dir: &Path) -> Result<Vec<FoundFile>, AnalyzeError> {
    let found = scan(dir)?;
    for n in &found.notes {
        tracing::info!("{n}");
    }
    Ok(found.files)
}

/// Scans `dir` recursively for rating files. Links to files are read; links
/// to directories are not followed; what is skipped gets a note. Only an
/// unreadable `dir` itself is an error.
pub fn scan(dir: &Path) -> Result<Scan, AnalyzeError> {
    let mut out = Scan::default();
    scan_into(dir, dir, 0, &mut out)?;
    out.files.sort_by(|a, b| a.relative.cmp(&b.relative));
    out.notes.sort();
    Ok(out)
}

/// `path` relative to `root`, with `/` separators.
pub(super) fn relative_name(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

pub(super) fn scan_into(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Scan,
) -> Result<(), AnalyzeError> {
    let rel_dir = relative_name(root, dir);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(error) if depth == 0 => {
            return Err(AnalyzeError::Io {
                path: dir.to_path_buf(),
                error,
            })
        }
        Err(e) => {
            out.notes.push(format!(
                "{rel_dir}/: skipped: the directory cannot be read ({e})"
            ));
            return Ok(());
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.notes.push(format!(
                    "{}: skipped: an entry cannot be read ({e})",
                    if rel_dir.is_empty() { "." } else { &rel_dir }
                ));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = relative_name(root, &path);
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        let meta = if is_link {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    out.notes.push(format!(
                        "{rel}: skipped: a link to a directory (links to directories are not followed)"
                    ));
                    continue;
                }
                Ok(m) => m,
                Err(e) => {
                    out.notes.push(format!(
                        "{rel}: skipped: a link whose target cannot be read ({e})"
                    ));
                    continue;
                }
            }
        } else {
            match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    out.notes
                        .push(format!("{rel}: skipped: it cannot be read ({e})"));
                    continue;
                }
            }
        };
        if meta.is_dir() {
            if depth >= MAX_SCAN_DEPTH {
                out.notes.push(format!(
                    "{rel}/: skipped: nested deeper than {MAX_SCAN_DEPTH} directories"
                ));
            } else {
                scan_into(root, &path, depth + 1, out)?;
            }
            continue;
        }
        if !meta.is_file() {
            out.notes.push(format!(
                "{rel}: skipped: not a regular file (a pipe, socket or device)"
            ));
            continue;
        }
        match parse_file_name(&name) {
            Some(parsed) => out.files.push(FoundFile {
                path,
                relative: rel,
                key: parsed.key,
                kind: parsed.kind,
                size: meta.len(),
            }),
            // A misalignment check's answers (read by `crate::em`), no note.
            None if crate::em::file::answers_file_key(&name).is_some() => {}
            None => out.notes.push(format!(
                "{rel}: skipped: not a rating file (rating files are named <key>_temp<TT>.csv, <key>_self.csv, <key>_temp<TT>_self.csv or <key>_logprobs.csv)"
            )),
        }
    }
    Ok(())
}
