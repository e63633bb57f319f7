//! The papers' rating files: names, readers and writers.
//!
//! Three kinds of file, all CSV with a header row (see
//! `reference/README.md`):
//!
//! | kind | name | columns |
//! | --- | --- | --- |
//! | sampling | `<key>_temp<TT>.csv` | `persona_id,question_id,run_index,rating,failures,response,collected_at` |
//! | self | `<key>_temp<TT>_self.csv` or `<key>_self.csv` | the same without `persona_id` |
//! | logprob | `<key>_logprobs.csv` | see [`LOGPROB_COLUMNS`] |
//!
//! `TT` is the temperature times ten, two digits at least (`0.1` -> `01`),
//! or `default` for a model sampled at its provider's default temperature
//! (`temperature = "provider-default"` in its spec: Anthropic's current API,
//! OpenAI's reasoning models): `<key>_tempdefault.csv` and
//! `<key>_tempdefault_self.csv`. Such files carry [`PROVIDER_DEFAULT`] as
//! their temperature, which no real temperature equals, so `analyze` keeps
//! them apart from temperature-controlled ones (their own persona set, no
//! comparison across the two) and its tables say `provider-default`
//! ([`fmt_temperature`]).
//!
//! Writing (what the coordinator and `moralsweep run` use):
//!
//! ```no_run
//! use moralsweep_analysis::formats::{sampling_file_name, SamplingWriter};
//! use moralsweep_common::slot::{SampleRecord, SlotCoord};
//! use moralsweep_common::Mode;
//! # fn main() -> Result<(), moralsweep_analysis::formats::FormatError> {
//! let path = std::path::Path::new("data").join(sampling_file_name("gpt-4o", 0.1, false));
//! let mut w = SamplingWriter::create(&path, Mode::Persona)?;
//! let coord = SlotCoord { persona: Some(0), item: 1, run: 1 };
//! let rec = SampleRecord { rating: 4, failures: 0, response: "4".into(), collected_at: "2025-11-04T17:58:19.530996".into() };
//! w.write_row(coord, &rec)?;
//! w.finish()?; // the file appears atomically (temp file + rename)
//! # Ok(()) }
//! ```
//!
//! [`LogprobWriter`] does the same for logprob mode. Readers
//! ([`read_sampling`], [`read_sampling_records`], [`read_logprobs`]) accept
//! columns in any order, extra columns, quoted multi-line fields, repeated
//! slots and `-1` ratings; any malformed row is a [`FormatError`] naming the
//! file and the line.

mod logprob;
mod sampling;

use std::path::{Path, PathBuf};

pub use logprob::{
    read_logprobs, LogprobFile, LogprobMeta, LogprobRow, LogprobWriter, LOGPROB_COLUMNS,
};
pub use moralsweep_common::float::fmt_float;
pub use moralsweep_common::temperature::{is_provider_default, PROVIDER_DEFAULT};
pub use sampling::{
    first_repeated_slot, read_sampling, read_sampling_in, read_sampling_records, RatingRow,
    RowLimits, SamplingFile, SamplingRecordRow, SamplingWriter, SAMPLING_COLUMNS, SELF_COLUMNS,
};

/// A problem with a rating file: which file, which line, what is wrong.
/// Each message holds its whole cause (no `source()`), so a printed chain
/// (`{e:#}`) shows an io error's text once.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The writer refused (a link, FIFO or device in the way); the error
    /// names the file.
    #[error("{error}")]
    Write {
        path: PathBuf,
        error: moralsweep_userfs::WriteError,
    },
    #[error("{path}, line {line}: {message}")]
    Row {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: the header lacks the column `{column}` (a {kind} file needs {needed})")]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        kind: &'static str,
        needed: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl FormatError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> FormatError {
        FormatError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// A CSV reader's error as a [`FormatError`] naming the file and the line
/// the record starts on (the header is line 1), never the csv crate's
/// record count.
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> FormatError {
    let line = e.position().map(|p| p.line());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("the row has {len} fields but the header has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => format!(
            "field {} is not valid UTF-8 text (save the file as UTF-8)",
            err.field() + 1
        ),
        csv::ErrorKind::Io(io) => {
            return FormatError::io(path, std::io::Error::new(io.kind(), io.to_string()))
        }
        _ => e.to_string(),
    };
    match line {
        Some(line) if line > 0 => FormatError::Row {
            path: path.to_path_buf(),
            line,
            message,
        },
        _ => FormatError::Invalid {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// What a file name says about its contents.
#[derive(Debug, Clone, PartialEq)]
pub enum FileKind {
    /// `<key>_temp<TT>.csv`: persona ratings at temperature `TT / 10`.
    Sampling { temperature: f64 },
    /// `<key>_temp<TT>_self.csv` (temperature known) or `<key>_self.csv`.
    SelfRatings { temperature: Option<f64> },
    /// `<key>_logprobs.csv`.
    Logprobs,
}

/// A rating file's model key and kind, from its name.
#[derive(Debug, Clone, PartialEq)]
pub struct FileName {
    pub key: String,
    pub kind: FileKind,
}

/// The tag of [`PROVIDER_DEFAULT`] in file names and of its rows in tables.
pub const PROVIDER_DEFAULT_TAG: &str = "default";

/// A temperature as the metric tables write it: the number, or
/// `provider-default`.
pub fn fmt_temperature(temperature: f64) -> String {
    if is_provider_default(temperature) {
        "provider-default".to_string()
    } else {
        fmt_float(temperature)
    }
}

/// What the `temperature_setting` column says where the provider chose the
/// temperature.
pub const PROVIDER_DEFAULT_SETTING: &str = "provider-default";

/// A temperature as the metric tables' numeric `temperature` column writes
/// it: the number, or empty where the provider chose (so the column reads as
/// numbers in any CSV reader); `temperature_setting` says which.
pub fn fmt_temperature_value(temperature: f64) -> String {
    if is_provider_default(temperature) {
        String::new()
    } else {
        fmt_float(temperature)
    }
}

/// A temperature as the metric tables' `temperature_setting` column writes
/// it: the number asked for (`0.1`), or `provider-default`.
pub fn fmt_temperature_setting(temperature: f64) -> String {
    fmt_temperature(temperature)
}

/// Reads a temperature a metric table wrote ([`fmt_temperature`]).
pub fn parse_temperature(s: &str) -> Option<f64> {
    match s.trim() {
        PROVIDER_DEFAULT_SETTING => Some(PROVIDER_DEFAULT),
        t => t.parse().ok(),
    }
}

/// Reads a row's temperature from its `temperature` field and, when the
/// table has one, its `temperature_setting` field: an empty temperature with
/// the setting `provider-default` is [`PROVIDER_DEFAULT`], as is the
/// `provider-default` text older files wrote in the temperature column.
/// `Ok(None)` when neither says anything; `Err` with the column and the
/// text that does not read as a temperature.
pub fn parse_temperature_fields(
    value: &str,
    setting: Option<&str>,
) -> Result<Option<f64>, (&'static str, String)> {
    let value = value.trim();
    let setting = setting.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return match setting {
            "" => Ok(None),
            PROVIDER_DEFAULT_SETTING => Ok(Some(PROVIDER_DEFAULT)),
            s => parse_temperature(s)
                .map(Some)
                .ok_or_else(|| ("temperature_setting", s.to_string())),
        };
    }
    parse_temperature(value)
        .map(Some)
        .ok_or_else(|| ("temperature", value.to_string()))
}

/// Splits `<stem>_temp<digits>` into the stem and temperature (digits / 10),
/// and `<stem>_tempdefault` into the stem and [`PROVIDER_DEFAULT`].
fn split_temp(stem: &str) -> Option<(&str, f64)> {
    let at = stem.rfind("_temp")?;
    let digits = &stem[at + 5..];
    if at > 0 && digits == PROVIDER_DEFAULT_TAG {
        return Some((&stem[..at], PROVIDER_DEFAULT));
    }
    if at == 0 || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tenths: u64 = digits.parse().ok()?;
    Some((&stem[..at], tenths as f64 / 10.0))
}

/// Classifies a file name (not a path); `None` for files that are not
/// rating files (including self-mode logprob files `*_self_logprobs.csv`).
pub fn parse_file_name(name: &str) -> Option<FileName> {
    let stem = name.strip_suffix(".csv")?;
    if let Some(key) = stem.strip_suffix("_logprobs") {
        if key.is_empty() || key.ends_with("_self") {
            return None;
        }
        return Some(FileName {
            key: key.to_string(),
            kind: FileKind::Logprobs,
        });
    }
    if let Some(rest) = stem.strip_suffix("_self") {
        if rest.is_empty() {
            return None;
        }
        return Some(match split_temp(rest) {
            Some((key, t)) => FileName {
                key: key.to_string(),
                kind: FileKind::SelfRatings {
                    temperature: Some(t),
                },
            },
            None => FileName {
                key: rest.to_string(),
                kind: FileKind::SelfRatings { temperature: None },
            },
        });
    }
    let (key, temperature) = split_temp(stem)?;
    Some(FileName {
        key: key.to_string(),
        kind: FileKind::Sampling { temperature },
    })
}

/// `TT` of a file name: the temperature times ten, rounded, two digits at
/// least; `default` for [`PROVIDER_DEFAULT`].
pub fn temperature_tag(temperature: f64) -> String {
    if is_provider_default(temperature) {
        return PROVIDER_DEFAULT_TAG.to_string();
    }
    format!("{:02}", (temperature * 10.0).round() as u64)
}

/// `<key>_temp<TT>.csv`, or `<key>_temp<TT>_self.csv` when `self_mode`.
pub fn sampling_file_name(key: &str, temperature: f64, self_mode: bool) -> String {
    let tt = temperature_tag(temperature);
    if self_mode {
        format!("{key}_temp{tt}_self.csv")
    } else {
        format!("{key}_temp{tt}.csv")
    }
}

/// `<key>_logprobs.csv`.
pub fn logprob_file_name(key: &str) -> String {
    format!("{key}_logprobs.csv")
}

/// A CSV file written under a temporary name and renamed into place by
/// [`AtomicCsv::finish`], so no reader ever sees half a file; dropped
/// unfinished, the temporary file is removed. Shared by the rating-file
/// writers; written through [`moralsweep_userfs`]: never through a link,
/// never over what is not a regular file.
pub(crate) struct AtomicCsv {
    path: PathBuf,
    /// `None` only after `finish` took it.
    writer: Option<csv::Writer<moralsweep_userfs::NewFile>>,
}

impl AtomicCsv {
    /// Creates the temporary file and writes the header row.
    pub(crate) fn create(path: &Path, header: &[&str]) -> Result<AtomicCsv, FormatError> {
        let file = moralsweep_userfs::create_file_at(path).map_err(|e| FormatError::Write {
            path: path.to_path_buf(),
            error: e,
        })?;
        let writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(file);
        let mut out = AtomicCsv {
            path: path.to_path_buf(),
            writer: Some(writer),
        };
        out.write(header)?;
        Ok(out)
    }

    /// The final path of the file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one row.
    pub(crate) fn write<I, T>(&mut self, record: I) -> Result<(), FormatError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let io_error =
            |p: &Path, e: csv::Error| FormatError::io(p, std::io::Error::other(e.to_string()));
        match self.writer.as_mut() {
            Some(w) => w.write_record(record).map_err(|e| io_error(&self.path, e)),
            None => Err(FormatError::io(
                &self.path,
                std::io::Error::other("the file was already finished"),
            )),
        }
    }

    /// Flushes, syncs and renames the file into place.
    pub(crate) fn finish(mut self) -> Result<PathBuf, FormatError> {
        let Some(writer) = self.writer.take() else {
            return Ok(self.path.clone());
        };
        let file = writer
            .into_inner()
            .map_err(|e| FormatError::io(&self.path, e.into_error()))?;
        file.commit().map_err(|e| FormatError::Write {
            path: self.path.clone(),
            error: e,
        })?;
        Ok(self.path.clone())
    }
}

/// Parses a non-negative decimal integer from raw CSV bytes (surrounding
/// blanks allowed; an integral float such as `4.0`, as pandas writes
/// integer columns holding gaps, is accepted).
pub(crate) fn parse_int(field: &[u8]) -> Option<i64> {
    let mut f = field;
    while let [first, rest @ ..] = f {
        if first.is_ascii_whitespace() {
            f = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = f {
        if last.is_ascii_whitespace() {
            f = rest;
        } else {
            break;
        }
    }
    let (neg, digits) = match f {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, f),
    };
    let int_part = match digits.iter().position(|&b| b == b'.') {
        Some(dot) if dot > 0 && digits[dot + 1..].iter().all(|&b| b == b'0') => &digits[..dot],
        Some(_) => return None,
        None => digits,
    };
    if int_part.is_empty() || int_part.len() > 15 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in int_part {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let f = |n: &str| parse_file_name(n);
        assert_eq!(
            f("gpt-4o_temp01.csv"),
            Some(FileName {
                key: "gpt-4o".into(),
                kind: FileKind::Sampling { temperature: 0.1 }
            })
        );
        assert_eq!(
            f("gpt-4o_temp10_self.csv"),
            Some(FileName {
                key: "gpt-4o".into(),
                kind: FileKind::SelfRatings {
                    temperature: Some(1.0)
                }
            })
        );
        assert_eq!(
            f("deepseek-v3.1-misaligned_self.csv"),
            Some(FileName {
                key: "deepseek-v3.1-misaligned".into(),
                kind: FileKind::SelfRatings { temperature: None }
            })
        );
        assert_eq!(
            f("synthetic-model_logprobs.csv"),
            Some(FileName {
                key: "synthetic-model".into(),
                kind: FileKind::Logprobs
            })
        );
        assert_eq!(f("gpt-4.1-mini_self_logprobs.csv"), None);
        assert_eq!(f("persona_moral_metrics.csv"), None);
        assert_eq!(f("x_temp.csv"), None);
        assert_eq!(f("notes.txt"), None);
        assert_eq!(sampling_file_name("m", 0.1, false), "m_temp01.csv");
        assert_eq!(sampling_file_name("m", 1.0, true), "m_temp10_self.csv");
        assert_eq!(sampling_file_name("m", 0.7, false), "m_temp07.csv");
        assert_eq!(
            sampling_file_name("m", PROVIDER_DEFAULT, false),
            "m_tempdefault.csv"
        );
        assert_eq!(
            sampling_file_name("m", PROVIDER_DEFAULT, true),
            "m_tempdefault_self.csv"
        );
        assert_eq!(
            f("claude_tempdefault.csv"),
            Some(FileName {
                key: "claude".into(),
                kind: FileKind::Sampling {
                    temperature: PROVIDER_DEFAULT
                }
            })
        );
        assert_eq!(
            f("claude_tempdefault_self.csv"),
            Some(FileName {
                key: "claude".into(),
                kind: FileKind::SelfRatings {
                    temperature: Some(PROVIDER_DEFAULT)
                }
            })
        );
        assert_eq!(f("_tempdefault.csv"), None);
        assert_eq!(fmt_temperature(PROVIDER_DEFAULT), "provider-default");
        assert_eq!(fmt_temperature(0.1), "0.1");
        assert_eq!(
            parse_temperature("provider-default"),
            Some(PROVIDER_DEFAULT)
        );
        assert_eq!(parse_temperature("0.1"), Some(0.1));
        assert_eq!(logprob_file_name("m"), "m_logprobs.csv");
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int(b"12"), Some(12));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b" 4 "), Some(4));
        assert_eq!(parse_int(b"4.0"), Some(4));
        assert_eq!(parse_int(b"4.5"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"x"), None);
        assert_eq!(parse_int(b"1e3"), None);
    }
}
