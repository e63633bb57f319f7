//! The exactness checks of the deal-mode replays: the published row of a
//! model, the metrics of a sweep's rating rows, and the assertions that
//! every slot was recorded once and that S, R and sigma-bar match the
//! published values to 1e-9.

use std::collections::HashMap;
use std::path::Path;

use moralsweep_analysis::formats::{read_sampling, RatingRow};
use moralsweep_analysis::metrics::{sampled_metrics, BootstrapOptions, CellTable, ScopeMetrics};

/// The model the exact replays stand in for: GPT-4o fine-tuned on insecure
/// code (`reference/sampling/insecure-code`).
pub const KEY: &str = "gpt-4o-misaligned";

/// The published row of a model in `expected/metrics_overall.csv`:
/// column -> value.
pub fn published(reference: &Path, key: &str) -> HashMap<String, f64> {
    let mut r = csv::Reader::from_path(reference.join("expected/metrics_overall.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    for rec in r.records() {
        let rec = rec.unwrap();
        if &rec[0] == key {
            return headers
                .iter()
                .zip(rec.iter())
                .filter_map(|(h, v)| v.parse().ok().map(|v| (h.to_string(), v)))
                .collect();
        }
    }
    panic!("{key} not in metrics_overall.csv");
}

/// The rows of [`KEY`]'s rating file `data/{KEY}_{tag}.csv` under `out`.
pub fn rows_in(out: &Path, tag: &str) -> Vec<RatingRow> {
    rows_of(out, KEY, tag)
}

/// The rows of the rating file `data/{key}_{tag}.csv` under `out`.
pub fn rows_of(out: &Path, key: &str, tag: &str) -> Vec<RatingRow> {
    read_sampling(&out.join(format!("data/{key}_{tag}.csv")), false)
        .unwrap()
        .rows
}

/// S, R and sigma-bar of rating rows (`draws` bootstrap draws for the
/// standard errors, which the comparison does not use).
pub fn metrics(rows: &[RatingRow], draws: u32) -> ScopeMetrics {
    metrics_of(
        rows.iter()
            .map(|r| (r.persona.unwrap_or(0), r.item, r.rating)),
        draws,
    )
}

/// S, R and sigma-bar of (persona, item, rating) triples.
pub fn metrics_of<I>(cells: I, draws: u32) -> ScopeMetrics
where
    I: Iterator<Item = (u32, u8, i8)> + Clone,
{
    let table = CellTable::from_rows(cells);
    let items = table.items();
    let kept = table.kept_personas(&items);
    let opts = BootstrapOptions {
        persona_draws: draws,
        rerun_draws: draws,
        seed: 1,
    };
    sampled_metrics(&table, &kept, &items, &opts, KEY)
        .unwrap()
        .overall
}

/// Every (persona, item, run) of the sweep exactly once.
pub fn assert_every_slot_once(rows: &[RatingRow], personas: u32, reps: u32) {
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        assert!(
            seen.insert((r.persona, r.item, r.run)),
            "slot {:?}/{}/{} twice",
            r.persona,
            r.item,
            r.run
        );
    }
    assert_eq!(seen.len() as u32, personas * 30 * reps);
}

/// S, R and sigma-bar of `rows` equal [`KEY`]'s published ones to 1e-9,
/// over 100 personas and 30 items.
pub fn assert_reproduces(reference: &Path, rows: &[RatingRow]) {
    assert_published(reference, &metrics(rows, 2));
}

/// `got`'s S, R and sigma-bar equal [`KEY`]'s published ones to 1e-9, over
/// 100 personas and 30 items.
pub fn assert_published(reference: &Path, got: &ScopeMetrics) {
    let want = published(reference, KEY);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9;
    assert!(
        close(got.s, want["susceptibility"]),
        "S {} vs published {}",
        got.s,
        want["susceptibility"]
    );
    assert!(
        close(got.sigma_bar, want["uncertainty"]),
        "sigma_bar {} vs published {}",
        got.sigma_bar,
        want["uncertainty"]
    );
    assert!(
        close(got.r(), want["robustness"]),
        "R {} vs published {}",
        got.r(),
        want["robustness"]
    );
    assert_eq!((got.personas, got.questions), (100, 30));
}
