//! The self profile of a self file (no persona): per group (moral
//! foundation, Big Five domain), the mean over its items of the item's mean
//! rating, and the mean over those items of the within-item sample standard
//! deviation (0 for an item with a single rating). A reverse-keyed item
//! enters its group's mean reversed (`min + max - mean`, the instrument's
//! scoring); its standard deviation is the same either way. Items without a
//! valid rating are left out of their group.

use crate::formats::RatingRow;
use moralsweep_common::instrument::{Group, Instrument};

use super::sampled::cell_summary;

/// One group of a self profile.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundationProfile {
    /// The group (for the MFQ-30 a foundation).
    pub foundation: Group,
    pub mean: f64,
    pub within_question_sd: f64,
    /// Items of the group with at least one valid rating.
    pub questions: usize,
}

/// The MFQ-30 profile of a self file's rows (persona ids, if any, are
/// ignored); foundations without any rated item are omitted.
pub fn self_profile(rows: &[RatingRow]) -> Vec<FoundationProfile> {
    self_profile_in(&Instrument::mfq30(), rows)
}

/// The profile of a self file of `instrument`, group by group in the
/// instrument's order; groups without any rated item are omitted.
pub fn self_profile_in(instrument: &Instrument, rows: &[RatingRow]) -> Vec<FoundationProfile> {
    let n = instrument.item_count();
    let mut per_item: Vec<Vec<u8>> = vec![Vec::new(); n];
    for r in rows {
        if instrument.scale.contains(r.rating as i64) && (1..=n).contains(&(r.item as usize)) {
            per_item[r.item as usize - 1].push(r.rating as u8);
        }
    }
    let (lo, hi) = (instrument.scale.min as f64, instrument.scale.max as f64);
    instrument
        .groups
        .iter()
        .filter_map(|g| {
            let stats: Vec<(f64, f64)> = instrument
                .items
                .iter()
                .filter(|it| &it.group == g && !per_item[it.id as usize - 1].is_empty())
                .map(|it| {
                    let (mean, sd) = cell_summary(&per_item[it.id as usize - 1]);
                    (if it.reverse { lo + hi - mean } else { mean }, sd)
                })
                .collect();
            if stats.is_empty() {
                return None;
            }
            let k = stats.len() as f64;
            Some(FoundationProfile {
                foundation: Group(g.clone()),
                mean: stats.iter().map(|s| s.0).sum::<f64>() / k,
                within_question_sd: stats.iter().map(|s| s.1).sum::<f64>() / k,
                questions: stats.len(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(item: u8, rating: i8) -> RatingRow {
        RatingRow {
            persona: None,
            item,
            run: 1,
            rating,
            failures: 0,
        }
    }

    #[test]
    fn reverse_keyed_items_enter_reversed() {
        let bfi = Instrument::builtin("bfi-44").unwrap();
        // Extraversion: item 1 (forward) rated 4 and 5, item 6 (reverse) rated 2.
        let rows = [row(1, 4), row(1, 5), row(6, 2), row(6, -1)];
        let p = self_profile_in(&bfi, &rows);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].foundation.name(), "Extraversion");
        // (4.5 + (1 + 5 - 2)) / 2 = 4.25; sds: 0.7071..., 0.
        assert!((p[0].mean - 4.25).abs() < 1e-12);
        assert!((p[0].within_question_sd - 0.5f64.sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(p[0].questions, 2);
    }
}
