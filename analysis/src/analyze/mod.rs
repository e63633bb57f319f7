//! `moralsweep analyze`: from a directory of rating files to the metric files.
//!
//! ```no_run
//! use moralsweep_analysis::analyze::{analyze_dir, AnalyzeOptions, ModelsMap};
//! # fn main() -> Result<(), moralsweep_analysis::analyze::AnalyzeError> {
//! let opts = AnalyzeOptions {
//!     models: ModelsMap::load(std::path::Path::new("models.toml"))?,
//!     ..AnalyzeOptions::default()
//! };
//! let report = analyze_dir(std::path::Path::new("results/sweep/data"), &opts)?;
//! report.write(std::path::Path::new("results/sweep/metrics"))?;
//! print!("{}", report.summary_table());
//! # Ok(()) }
//! ```
//!
//! A sweep supplies its families and variants with
//! [`ModelsMap::from_specs`]`(&sweep.spec.models)` instead of a TOML file.
//!
//! Reading files is how `analyze` takes existing data. A sweep's rows are
//! already in memory when its coordinator writes them: it hands each unit's
//! rows to [`unit_metrics`] ([`RatedFile`]) and [`assemble`]s the units'
//! metrics into the [`Report`] that writes the metric files and prints the
//! tables, with the same tasks and so the same numbers as reading the files.
//!
//! [`analyze_dir`] scans the directory recursively (hidden entries are
//! skipped; links to directories are never followed; a dangling link or a
//! file that is not a rating file is skipped with a note in
//! [`Report::notes`]) and groups the rating files by model key (see
//! [`crate::formats::parse_file_name`]): a key's sampling files at several
//! temperatures are aligned on one persona set; each self file gives a self
//! profile under its own key; each logprob file gives R(T) and S(T) at
//! [`AnalyzeOptions::temperatures`]. Models are analysed in parallel on
//! [`AnalyzeOptions::threads`] threads; every bootstrap stream is seeded from
//! the seed, the model key and the temperature, so the numbers do not depend
//! on the thread count.
//!
//! [`Report::write`] writes, each file atomically:
//!
//! | file | rows |
//! | --- | --- |
//! | `persona_moral_metrics.csv` | one per model and temperature |
//! | `persona_moral_metrics_per_foundation.csv` | one per model, temperature and foundation (`_per_domain` for the BFI-44: the file follows the instrument's groups) |
//! | `self_profiles.csv` | one per self file and foundation |
//! | `variant_deltas.csv` | one per model with a family and a variant, against its family's base |
//! | `variant_excess.csv` | per family: insecure-minus-secure excess (when both exist) |
//! | `temperature_curve_metrics.csv` | one per logprob file and temperature (when any) |
//! | `rating_distributions.csv` | one per model, temperature and group (`all` overall): histogram, entropy in bits, modal share, collapsed flag, KL divergence in bits from the family's base |
//! | `trajectories.csv` | one per model with a `step` (a checkpoint), by family, temperature and step: S, R, sigma-bar and their standard errors (when any model has a step) |
//! | `trajectories_per_foundation.csv` (`_per_domain` for the BFI-44) | the same per group: by family, temperature, group and step |
//! | `comparisons.csv` | one per variant with a base, metric (S, R, sigma_bar) and group (`overall` or the group): the paired change, its bootstrap interval, permutation p-value, Holm and BH adjustments (see `docs/METHOD-comparisons.md`) |
//! | `dropped.csv` | one per file, item or persona left out of a file's metrics, and why |
//!
//! The first columns of each are the papers' columns in the papers' order;
//! columns after them are additions. [`read`] reads them back (and the
//! published reference files) by column name.
//!
//! Bad data is an error naming the file and the line: a malformed row, a
//! file with a header and no rows, a (persona, question, run_index) slot on
//! two rows (unless [`AnalyzeOptions::repeated_slots`] counts repeats).

mod compare;
mod comparisons;
mod error;
mod models;
mod options;
mod pairfiles;
pub mod read;
mod rows;
mod scan;
mod schedule;
mod sources;
mod table;
mod task;
mod units;
mod write;

pub use comparisons::{
    adjust as adjust_comparisons, comparisons_table, run_jobs as run_comparisons,
    write_comparisons, ComparedTable, ComparisonRow, PairJob, COMPARISONS_FILE, COMPARISON_COLUMNS,
    HOLDS_ALPHA,
};
pub use error::AnalyzeError;
pub use models::{ModelInfo, ModelsMap};
pub use options::{
    AnalyzeOptions, RepeatedSlots, ALIGNMENT_MIN_PERSONAS, DEFAULT_LOGPROB_TEMPERATURES,
};
pub use pairfiles::{compare_files, read_pilot, FileComparison, PilotFile};
pub use rows::{
    CurveRow, DeltaRow, DistributionRow, Dropped, DroppedRow, ExcessRow, MetricRow, Report,
    SelfProfileRow, TrajectoryRow,
};
pub use scan::{scan, scan_dir, FoundFile, Scan, MAX_SCAN_DEPTH};
pub use schedule::{analyze_dir, analyze_files};
pub use sources::{AnalysisRecord, RatingSource, ANALYSIS_FILE, MAX_ANALYSIS_BYTES};
pub use table::NAMES_NOTE;
pub use units::{assemble, unit_metrics, RatedFile, RatedRows, UnitMetrics};
pub use write::{
    CURVE_COLUMNS, DELTA_COLUMNS, DROPPED_COLUMNS, EXCESS_COLUMNS, OVERALL_COLUMNS,
    SELF_PROFILE_COLUMNS, TRAJECTORY_COLUMNS,
};

use compare::compare_variants;
use schedule::{assemble_partials, check_temperatures, Partial, Source, Task};
use task::run_task;
