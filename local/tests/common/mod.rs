//! Finding the model the tests need.

use std::path::PathBuf;

/// The GGUF file named by MORALSWEEP_MODEL_PATH (scripts/test sets it, after
/// scripts/fetch-model). Outside CI a missing model skips the test visibly;
/// under CI=true it fails.
pub fn model_path(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("MORALSWEEP_MODEL_PATH").map(PathBuf::from);
    match p {
        Some(p) if p.is_file() => Some(p),
        other => {
            let why = match other {
                Some(p) => format!("MORALSWEEP_MODEL_PATH={} is not a file", p.display()),
                None => "MORALSWEEP_MODEL_PATH is not set".to_string(),
            };
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {why}; run scripts/fetch-model (scripts/test does) and export its path");
            }
            eprintln!("SKIPPED {test}: {why}; run `MORALSWEEP_MODEL_PATH=$(scripts/fetch-model) cargo test -p moralsweep-local`");
            None
        }
    }
}
