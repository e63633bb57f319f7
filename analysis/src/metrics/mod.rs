//! The metrics engine (METHOD.md): cell summaries, the persona filter,
//! sigma_bar, R and S overall and per foundation, the persona and rerun
//! bootstraps, the multi-temperature alignment, logprob mode, self profiles,
//! deltas against the base model, the insecure-minus-secure excess and the
//! band check.
//!
//! The pieces, from raw rows to numbers:
//!
//! - [`CellTable`]: the valid ratings of each (persona, item) cell of a file;
//!   every row counts (repeated slots too), `-1` rows add nothing.
//! - [`CellTable::kept_personas`]: the persona filter; [`align_runs`]: the
//!   persona set shared by a model's files at several temperatures.
//! - [`sampled_metrics`]: [`ScopeMetrics`] overall and per foundation with
//!   both bootstraps ([`BootstrapOptions`], seeded).
//! - [`logprob_metrics`]: R(T) and S(T) from one logprob collection.
//! - [`self_profile`]: the moral foundations profile of a self file.
//! - [`pct_change`], [`excess`], [`Band`]: the comparisons.
//! - [`paired_compare`]: a paired bootstrap interval and permutation
//!   p-value for the change from one model to another; [`adjust`]: Holm
//!   and Benjamini-Hochberg adjustment, quantiles, the normal distribution.
//!
//! [`crate::analyze`] wires them to files.

pub mod adjust;
mod cells;
mod compare;
mod diagnostics;
mod logprob;
mod paired;
pub mod plan;
mod profile;
mod rng;
mod sampled;

pub use cells::CellTable;
pub use compare::{excess, pct_change, Band, BAND_HIGH, BAND_LOW};
pub use diagnostics::{Histogram, COLLAPSE_MODAL_SHARE};
pub use logprob::{logprob_metrics, CurvePoint, LogprobResult};
pub use paired::{
    paired_compare, paired_sets, PairedEstimate, PairedMetric, PairedOptions, PairedResult,
    TAIL_EXCEEDANCES,
};
pub use profile::{self_profile, self_profile_in, FoundationProfile};
pub use rng::FastRng;
pub use sampled::{
    cell_summary, sampled_metrics, sampled_metrics_in, BootstrapOptions, SampledResult,
    ScopeMetrics,
};

/// Why metrics could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("persona {persona} has no valid rating for item {item}")]
    MissingCell { persona: u32, item: u8 },
    #[error("{0}")]
    Empty(String),
    #[error("temperature {0} is not positive; logprob temperatures must be > 0")]
    BadTemperature(f64),
}

/// Sample standard deviation (divisor len-1); 0 for fewer than two values.
pub fn sample_sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    // Shifted by the first value: exact 0 for identical values, and no
    // loss of precision when the spread is small against the level.
    let shift = xs[0];
    let mean = xs.iter().map(|x| x - shift).sum::<f64>() / xs.len() as f64;
    let ss: f64 = xs
        .iter()
        .map(|x| {
            let d = x - shift - mean;
            d * d
        })
        .sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

/// One file's contribution to the multi-temperature alignment.
#[derive(Debug, Clone)]
pub struct RunSets {
    /// Items present in the file.
    pub items: Vec<u8>,
    /// Personas kept by the file's own filter.
    pub kept: Vec<u32>,
}

/// The multi-temperature alignment of METHOD.md: P and Q are the
/// intersections over the files that keep at least `min_personas` personas
/// (over all files when none does). Files keeping no persona are ignored.
pub fn align_runs(runs: &[RunSets], min_personas: usize) -> (Vec<u8>, Vec<u32>) {
    let usable: Vec<&RunSets> = runs.iter().filter(|r| !r.kept.is_empty()).collect();
    let eligible: Vec<&RunSets> = {
        let e: Vec<&RunSets> = usable
            .iter()
            .copied()
            .filter(|r| r.kept.len() >= min_personas)
            .collect();
        if e.is_empty() {
            usable
        } else {
            e
        }
    };
    let Some(first) = eligible.first() else {
        return (Vec::new(), Vec::new());
    };
    let mut items = first.items.clone();
    let mut kept = first.kept.clone();
    for r in &eligible[1..] {
        items.retain(|q| r.items.contains(q));
        kept.retain(|p| r.kept.binary_search(p).is_ok());
    }
    (items, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        let r = |items: Vec<u8>, kept: Vec<u32>| RunSets { items, kept };
        let runs = vec![
            r(vec![1, 2, 3], (0..60).collect()),
            r(vec![1, 2], (10..100).collect()),
            r(vec![1], (0..5).collect()),
            r(vec![1, 2, 3], vec![]),
        ];
        let (q, p) = align_runs(&runs, 50);
        assert_eq!(q, vec![1, 2]);
        assert_eq!(p, (10..60).collect::<Vec<_>>());
        let (q, p) = align_runs(&runs[2..], 50);
        assert_eq!((q, p), (vec![1], (0..5).collect()));
        assert_eq!(align_runs(&runs[3..], 50), (vec![], vec![]));
    }

    #[test]
    fn sd() {
        assert_eq!(sample_sd(&[1.0]), 0.0);
        assert!((sample_sd(&[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-15);
    }
}
