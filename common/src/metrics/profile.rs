//! The moral foundations profile of a self file (no persona): per
//! foundation, the mean over its items of the item's mean rating, and the
//! mean over those items of the within-item sample standard deviation
//! (0 for an item with a single rating). Items without a valid rating are
//! left out of their foundation.

use crate::formats::RatingRow;
use crate::instrument::{Foundation, ITEMS, ITEM_COUNT};

use super::sampled::cell_summary;

/// One foundation of a self profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoundationProfile {
    pub foundation: Foundation,
    pub mean: f64,
    pub within_question_sd: f64,
    /// Items of the foundation with at least one valid rating.
    pub questions: usize,
}

/// The profile of a self file's rows (persona ids, if any, are ignored);
/// foundations without any rated item are omitted.
pub fn self_profile(rows: &[RatingRow]) -> Vec<FoundationProfile> {
    let mut per_item: Vec<Vec<u8>> = vec![Vec::new(); ITEM_COUNT];
    for r in rows {
        if (0..=5).contains(&r.rating) && (1..=ITEM_COUNT as u8).contains(&r.item) {
            per_item[r.item as usize - 1].push(r.rating as u8);
        }
    }
    Foundation::ALL
        .iter()
        .filter_map(|&f| {
            let stats: Vec<(f64, f64)> = ITEMS
                .iter()
                .filter(|it| it.foundation == f && !per_item[it.id as usize - 1].is_empty())
                .map(|it| cell_summary(&per_item[it.id as usize - 1]))
                .collect();
            if stats.is_empty() {
                return None;
            }
            let k = stats.len() as f64;
            Some(FoundationProfile {
                foundation: f,
                mean: stats.iter().map(|s| s.0).sum::<f64>() / k,
                within_question_sd: stats.iter().map(|s| s.1).sum::<f64>() / k,
                questions: stats.len(),
            })
        })
        .collect()
}
