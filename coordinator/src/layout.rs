//! Where a sweep's files go under its output folder: the rating files in
//! `data/`, the metric files in `metrics/` (DESIGN.md). Both the rating
//! files (`output.rs`) and the misalignment check's files (`em_output.rs`)
//! are placed here.

use std::path::{Path, PathBuf};

/// The folder of a sweep's rating files (and the check's answer files).
pub fn data_dir(output: &Path) -> PathBuf {
    output.join("data")
}

/// The folder of a sweep's metric files.
pub fn metrics_dir(output: &Path) -> PathBuf {
    output.join("metrics")
}
