//! What `analyze` computes and how: bootstrap sizes, seed, logprob temperatures, threads.

use super::*;

use moralsweep_common::instrument::Instrument;
use std::sync::Arc;

/// What `analyze` computes and how.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Persona bootstrap draws (default 2000).
    pub bootstrap: u32,
    /// Rerun bootstrap draws (default 400).
    pub rerun_bootstrap: u32,
    /// Seed of all bootstraps (default 1337).
    pub seed: u64,
    /// Temperatures of the logprob curves (default 0.35, 0.5, 0.7, 1.0, 1.25).
    pub temperatures: Vec<f64>,
    pub models: ModelsMap,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// What a slot recorded on more than one row means (default: an error).
    pub repeated_slots: RepeatedSlots,
    /// The instrument of the rating files; `None` recognises it from each
    /// file (the first built-in instrument whose item ids and scale hold
    /// every row: MFQ-30, then BFI-44).
    pub instrument: Option<Arc<Instrument>>,
    /// Bootstrap draws and permutations of each paired comparison of a
    /// variant with its base (`comparisons.csv`; default 2000, 0: none).
    pub comparison_resamples: u32,
}

/// What `analyze` does with a (persona, question, run_index) slot that
/// appears on several rows of a sampling or self file, or a
/// (persona, question) pair on several rows of a logprob file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepeatedSlots {
    /// An error naming the file and both lines: a slot is recorded once, so
    /// a repeat means a merged, concatenated or corrupted file.
    #[default]
    Reject,
    /// Every row counts as one rating of its cell, as the papers' pipeline
    /// treats retried slots (in a logprob file the last row of a pair
    /// counts); each such file gets a warning.
    Count,
}

/// The logprob temperatures used when none are given.
pub const DEFAULT_LOGPROB_TEMPERATURES: [f64; 5] = [0.35, 0.5, 0.7, 1.0, 1.25];

/// Files keeping fewer personas than this do not constrain the
/// multi-temperature alignment (METHOD.md).
pub const ALIGNMENT_MIN_PERSONAS: usize = 50;

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            bootstrap: 2000,
            rerun_bootstrap: 400,
            seed: 1337,
            temperatures: DEFAULT_LOGPROB_TEMPERATURES.to_vec(),
            models: ModelsMap::default(),
            threads: 0,
            repeated_slots: RepeatedSlots::Reject,
            instrument: None,
            comparison_resamples: 2000,
        }
    }
}
