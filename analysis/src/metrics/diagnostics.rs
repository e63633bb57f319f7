//! Distribution diagnostics: the rating histogram of a model (overall or
//! per group of items), its entropy in bits, the share of its modal rating,
//! and the Kullback-Leibler divergence in bits of a variant's distribution
//! from its family's base, Laplace-smoothed (one pseudo-count per rating
//! of the scale, so a rating the base never gave does not make it
//! infinite).
//!
//! A distribution whose modal rating takes at least
//! [`COLLAPSE_MODAL_SHARE`] of the ratings has collapsed onto one rating:
//! S can then fall although persona differentiation is lost, so such a
//! row is flagged.

use moralsweep_common::instrument::Scale;

/// The modal share from which a distribution counts as collapsed.
pub const COLLAPSE_MODAL_SHARE: f64 = 0.95;

/// Counts of each rating of a scale (index 0 is the scale's minimum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub scale: Scale,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram over `scale`.
    pub fn new(scale: Scale) -> Histogram {
        Histogram {
            scale,
            counts: vec![0; scale.len()],
        }
    }

    /// Counts one rating; a rating outside the scale (-1) is not counted.
    pub fn add(&mut self, rating: i8) {
        if self.scale.contains(rating as i64) {
            self.counts[(rating as u8 - self.scale.min) as usize] += 1;
        }
    }

    /// Number of ratings counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Shannon entropy of the empirical distribution, in bits (0 when empty).
    pub fn entropy_bits(&self) -> f64 {
        let n = self.total() as f64;
        if n == 0.0 {
            return 0.0;
        }
        self.counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n;
                -p * p.log2()
            })
            .sum()
    }

    /// The most common rating (the smallest on a tie) and its share of all
    /// ratings; `None` when empty.
    pub fn modal(&self) -> Option<(u8, f64)> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let (i, &c) = self
            .counts
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
        Some((self.scale.min + i as u8, c as f64 / n as f64))
    }

    /// Whether the modal rating holds at least [`COLLAPSE_MODAL_SHARE`].
    pub fn collapsed(&self) -> bool {
        self.modal()
            .is_some_and(|(_, share)| share >= COLLAPSE_MODAL_SHARE)
    }

    /// Laplace-smoothed probabilities: `(count + 1) / (n + K)`.
    pub fn smoothed(&self) -> Vec<f64> {
        let k = self.counts.len() as f64;
        let n = self.total() as f64;
        self.counts
            .iter()
            .map(|&c| (c as f64 + 1.0) / (n + k))
            .collect()
    }

    /// `KL(self || base)` in bits over the Laplace-smoothed distributions;
    /// `None` when the scales differ.
    pub fn kl_bits_from(&self, base: &Histogram) -> Option<f64> {
        if self.scale != base.scale {
            return None;
        }
        let p = self.smoothed();
        let q = base.smoothed();
        Some(p.iter().zip(&q).map(|(p, q)| p * (p / q).log2()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(scale: Scale, counts: &[u64]) -> Histogram {
        Histogram {
            scale,
            counts: counts.to_vec(),
        }
    }

    const MFQ: Scale = Scale { min: 0, max: 5 };
    const BFI: Scale = Scale { min: 1, max: 5 };

    #[test]
    fn entropy_and_modal_share_by_hand() {
        // Uniform over four of six ratings: 2 bits; modal share 1/4.
        let h = hist(MFQ, &[0, 5, 5, 5, 5, 0]);
        assert!((h.entropy_bits() - 2.0).abs() < 1e-12);
        assert_eq!(h.modal(), Some((1, 0.25)));
        assert!(!h.collapsed());
        // 3/4, 1/4: H = 0.75 log2(4/3) + 0.25 log2(4) = 0.811278...
        let h = hist(BFI, &[0, 0, 1, 3, 0]);
        assert!((h.entropy_bits() - 0.811_278_124_459_132_8).abs() < 1e-12);
        assert_eq!(h.modal(), Some((4, 0.75)));
        // Everything on one rating: 0 bits, collapsed.
        let h = hist(BFI, &[0, 0, 0, 0, 20]);
        assert_eq!(h.entropy_bits(), 0.0);
        assert_eq!(h.modal(), Some((5, 1.0)));
        assert!(h.collapsed());
        // 19 of 20 is exactly the threshold.
        assert!(hist(BFI, &[1, 0, 0, 0, 19]).collapsed());
        assert!(!hist(BFI, &[2, 0, 0, 0, 18]).collapsed());
        assert_eq!(Histogram::new(BFI).modal(), None);
        assert_eq!(Histogram::new(BFI).entropy_bits(), 0.0);
    }

    #[test]
    fn add_counts_only_ratings_of_the_scale() {
        let mut h = Histogram::new(BFI);
        for r in [1, 5, 5, -1, 0, 3] {
            h.add(r);
        }
        assert_eq!(h.counts, vec![1, 0, 1, 0, 2]);
    }

    #[test]
    fn laplace_smoothed_kl_by_hand() {
        // Two ratings (scale 1-2): variant 3/0, base 1/1.
        // Smoothed p = (4/5, 1/5), q = (2/4, 2/4) = (1/2, 1/2).
        // KL = 0.8 log2(1.6) + 0.2 log2(0.4) = 0.278071905...
        let s = Scale { min: 1, max: 2 };
        let v = hist(s, &[3, 0]);
        let b = hist(s, &[1, 1]);
        let want = 0.8 * 1.6f64.log2() + 0.2 * 0.4f64.log2();
        assert!((v.kl_bits_from(&b).unwrap() - want).abs() < 1e-15);
        assert!((want - 0.278_071_905_112_638_3).abs() < 1e-12);
        // A distribution against itself: 0.
        assert_eq!(b.kl_bits_from(&b), Some(0.0));
        // Different scales do not compare.
        assert_eq!(hist(BFI, &[1; 5]).kl_bits_from(&hist(MFQ, &[1; 6])), None);
    }
}
