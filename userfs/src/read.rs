//! Reading a user's file: only a regular file (a FIFO, a device or a folder
//! is refused before anything blocks or streams), never more than a bound.
//!
//! The errors are `std::io::Error`s whose message says what is wrong
//! without the path, because every caller already writes "cannot read
//! PATH: ..." around them; [`ReadError`] is the typed cause inside.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A spec (`sweep.toml`), a `models.toml`, a token or key file.
pub const SPEC_LIMIT: u64 = 4 << 20;
/// A personas file (JSON list of descriptions).
pub const PERSONAS_LIMIT: u64 = 64 << 20;
/// A user instrument (JSON).
pub const INSTRUMENT_LIMIT: u64 = 16 << 20;
/// A results folder's manifest, a provenance or verification JSON.
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// A metric CSV (`analyze`'s output) read by `report`.
pub const METRICS_LIMIT: u64 = 256 << 20;
/// A rating CSV (one model's answers, one row per rating).
pub const RATINGS_LIMIT: u64 = 1 << 30;
/// A local model's GGUF weights.
pub const MODEL_LIMIT: u64 = 64 << 30;

/// Why a user's file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("is {kind}, not a regular file; give a file")]
    NotAFile { kind: &'static str },
    #[error("is {} ({size} bytes), over the limit of {} for this file", human(*size), human(*limit))]
    TooLarge { size: u64, limit: u64 },
    #[error("grew past the limit of {} while being read", human(*limit))]
    Grew { limit: u64 },
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        let kind = match e {
            ReadError::NotAFile { .. } => io::ErrorKind::InvalidInput,
            ReadError::TooLarge { .. } | ReadError::Grew { .. } => io::ErrorKind::FileTooLarge,
        };
        io::Error::new(kind, e)
    }
}

/// A byte count for people: `4 MiB`, `2.1 GiB`, `312 bytes`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What a file type is, in words, for messages.
pub fn kind_of(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` (a link to a file is followed: the user named it) for
/// reading if it is a regular file of at most `limit` bytes, without
/// blocking on a FIFO. The returned reader fails if the file grows past
/// `limit` while it is read.
pub fn open_bounded(path: &Path, limit: u64) -> io::Result<Bounded<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path)?;
    check(&meta, limit)?;
    // O_NONBLOCK: should a FIFO be swapped in after the check, opening it
    // does not wait for a writer (the check below then refuses it).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    check(&file.metadata()?, limit)?;
    Ok(Bounded {
        inner: file.take(limit + 1),
        limit,
        read: 0,
    })
}

fn check(meta: &std::fs::Metadata, limit: u64) -> Result<(), ReadError> {
    if !meta.is_file() {
        return Err(ReadError::NotAFile {
            kind: kind_of(&meta.file_type()),
        });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    Ok(())
}

/// A reader that stops with an error past its bound instead of reading on.
#[derive(Debug)]
pub struct Bounded<R> {
    inner: io::Take<R>,
    limit: u64,
    read: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(ReadError::Grew { limit: self.limit }.into());
        }
        Ok(n)
    }
}

/// The bytes of a regular file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut r = open_bounded(path, limit)?;
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

/// The text of a regular UTF-8 file of at most `limit` bytes.
pub fn read_to_string_bounded(path: &Path, limit: u64) -> io::Result<String> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_within_the_bound_is_read_and_one_over_it_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap(), b"12345");
        let e = read_bounded(&p, 4).unwrap_err().to_string();
        assert!(
            e.contains("5 bytes") && e.contains("limit of 4 bytes"),
            "{e}"
        );
    }

    #[test]
    fn folders_devices_and_fifos_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let e = read_bounded(t.path(), 10).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("character device"), "{e}");
        let fifo = t.path().join("p");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let e = read_bounded(&fifo, 10).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
    }

    #[test]
    fn a_file_that_grows_is_cut_at_the_bound() {
        let mut r = Bounded {
            inner: io::repeat(b'x').take(11),
            limit: 10,
            read: 0,
        };
        let mut v = Vec::new();
        let e = r.read_to_end(&mut v).unwrap_err().to_string();
        assert!(e.contains("grew past"), "{e}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(312), "312 bytes");
        assert_eq!(human(4 << 20), "4 MiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
