//! Why `analyze` failed.

use crate::formats::FormatError;
use std::path::PathBuf;

/// Why `analyze` failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The io error's text is in the message (not a `source()`), so a
    /// printed chain shows it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Writing the output folder (a link, FIFO or device in the way).
    #[error(transparent)]
    Write(#[from] moralsweep_userfs::WriteError),
    #[error("models file {path}: {message}")]
    Models { path: PathBuf, message: String },
    #[error("{dir}: no rating files found (expected <key>_temp<TT>.csv, <key>_self.csv, <key>_temp<TT>_self.csv or <key>_logprobs.csv){skipped}")]
    NoFiles {
        dir: PathBuf,
        /// The scan's notes on what it skipped, as a sentence ("" when none).
        skipped: String,
    },
    #[error("{path}: the file holds a header but no rating rows; a rating file needs at least one row (was it cut short? collect it again or remove it)")]
    NoRows { path: PathBuf },
    #[error("{path}, line {line}: {slot} repeats the slot of line {first_line} ({repeats} row(s) of the file repeat an earlier one); each slot is recorded once, so a repeat means a merged or corrupted file: remove the repeats, or count every row as the papers' pipeline does with `analyze --allow-repeated-slots`")]
    RepeatedSlot {
        path: PathBuf,
        /// The slot, e.g. "persona 3, question 5, run_index 2".
        slot: String,
        first_line: u64,
        line: u64,
        repeats: usize,
    },
    #[error("{first} and {second} both hold {what} of model `{key}`; keep one of them (or give them different keys)")]
    Duplicate {
        key: String,
        what: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{first} holds {first_instrument} ratings but {second} holds {second_instrument} ratings; analyze each instrument's files in a directory of their own")]
    MixedInstruments {
        first: PathBuf,
        first_instrument: String,
        second: PathBuf,
        second_instrument: String,
    },
    #[error("{path}: no built-in instrument holds its rows (item ids up to {max_item}, ratings {ratings}); the built-in instruments are {builtins}; give the instrument with `--instrument NAME|FILE`")]
    UnknownInstrument {
        path: PathBuf,
        max_item: u8,
        ratings: String,
        builtins: String,
    },
    #[error("logprob temperature {0} is not positive; give temperatures > 0")]
    BadTemperature(f64),
}
