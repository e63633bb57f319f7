//! The one way moralsweep reads a user's file and writes a user's folder.
//!
//! - [`read`]: a file a user named (spec, personas, instrument, models
//!   file, manifest, metric and rating CSVs) is read only if it is a regular
//!   file, never past a size bound (a FIFO or `/dev/zero` is refused at
//!   once, a file that grows while read is cut at the bound).
//! - [`write`]: a folder a user named (`run`'s, `analyze`'s, `report`'s and
//!   `results`' output) is written through a `cap_std` directory handle,
//!   never through a link inside it, by exclusive temporary files renamed
//!   into place; a file that is not a regular one is never replaced, and
//!   every regular one replaced is announced.
//!
//! Layer 0: no workspace dependency.

pub mod read;
pub mod write;

pub use read::{
    open_bounded, read_bounded, read_to_string_bounded, ReadError, INSTRUMENT_LIMIT,
    MANIFEST_LIMIT, METRICS_LIMIT, MODEL_LIMIT, PERSONAS_LIMIT, RATINGS_LIMIT, SPEC_LIMIT,
};
pub use write::{
    create_file_at, refuse_link, Kind, NewFile, OnReplace, OutDir, Prior, WriteError, TEMP_SUFFIX,
};

#[cfg(test)]
mod tests;
