//! Where the tests find the papers' reference data (`../shared/reference`).
//!
//! The location can be overridden with `MORALSWEEP_REFERENCE`. When the data
//! is absent a test skips with a visible message, except under `CI=true`,
//! where it fails: CI must never pass by skipping the conformance checks.

use std::path::PathBuf;

/// The environment variable that overrides the reference directory.
pub const REFERENCE_ENV: &str = "MORALSWEEP_REFERENCE";

/// The reference directory if it exists. Outside CI, `None` after printing a
/// skip message; under `CI=true` a missing directory panics.
pub fn reference_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os(REFERENCE_ENV) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference"),
    };
    if dir.join("README.md").is_file() {
        return Some(dir.canonicalize().unwrap_or(dir));
    }
    let msg = format!(
        "reference data not found at {} (set {REFERENCE_ENV} to the shared/reference directory)",
        dir.display()
    );
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED: {msg}");
    None
}
