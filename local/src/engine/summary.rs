//! What is kept of a next-token distribution once the whole of it is let go.

use rand::Rng;

use super::distribution::{sample_entries, sample_floor, Distribution};

/// What is kept of a next-token distribution once the whole of it is let go:
/// every token whose logit is within [`Summary::SPAN`] nats of the largest
/// (at least the [`Summary::MIN_TOKENS`] most likely, at most about
/// [`Summary::MAX_TOKENS`]), the normaliser, and the exact log-probability
/// of each digit. A few kilobytes instead of a megabyte, so the engine keeps
/// one for every prompt of a sweep: a logprob request for a prompt already
/// sampled in persona mode (or the other way round), or a prompt whose full
/// distribution was evicted, costs no forward pass. Sampling from it is exact
/// (the same token for the same seed) at temperatures up to `SPAN / 40`
/// (0.3), and its top tokens are the distribution's.
pub struct Summary {
    max: f32,
    log_z: f64,
    /// Every token with a logit at or above this is held.
    floor: f32,
    /// Ascending ids and their logits.
    ids: Vec<u32>,
    logits: Vec<f32>,
    /// log p of each digit 0-5, all tokenisations summed.
    pub digits: [f64; 6],
}

impl Summary {
    pub const SPAN: f32 = 12.0;
    pub const MIN_TOKENS: usize = 64;
    pub const MAX_TOKENS: usize = 4096;

    pub(super) fn of(d: &Distribution, digits: [f64; 6]) -> Summary {
        let max = d.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut floor = max - Self::SPAN;
        let above = d.logits.iter().filter(|&&l| l >= floor).count();
        let nth_largest = |n: usize| {
            let mut v = d.logits.clone();
            let n = n.min(v.len()) - 1;
            *v.select_nth_unstable_by(n, |a, b| b.total_cmp(a)).1
        };
        if above < Self::MIN_TOKENS {
            floor = nth_largest(Self::MIN_TOKENS);
        } else if above > Self::MAX_TOKENS {
            floor = nth_largest(Self::MAX_TOKENS);
        }
        let (ids, logits) = d
            .logits
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l >= floor)
            .map(|(i, &l)| (i as u32, l))
            .unzip();
        Summary {
            max,
            log_z: d.log_z,
            floor,
            ids,
            logits,
            digits,
        }
    }

    /// Whether [`Summary::sample`] at `temperature` draws what the whole
    /// distribution would.
    pub fn covers(&self, temperature: f64) -> bool {
        temperature <= 0.0
            || !temperature.is_finite()
            || sample_floor(self.max as f64, temperature) >= self.floor
    }

    /// Draws a token at `temperature` (only where [`Summary::covers`] it).
    pub fn sample(&self, temperature: f64, rng: &mut impl Rng) -> u32 {
        sample_entries(
            || self.ids.iter().copied().zip(self.logits.iter().copied()),
            self.max,
            temperature,
            rng,
        )
    }

    /// log p(token), for a token it holds.
    pub fn logprob(&self, id: u32) -> Option<f64> {
        let i = self.ids.binary_search(&id).ok()?;
        Some(self.logits[i] as f64 - self.log_z)
    }

    /// The `k` most likely tokens, most likely first (the lowest id first
    /// among ties), as [`Distribution::top`] gives them; `None` when it holds
    /// fewer than `k` tokens.
    pub fn top(&self, k: usize) -> Option<Vec<(u32, f64)>> {
        if k > self.ids.len() {
            return None;
        }
        let mut idx: Vec<usize> = (0..self.ids.len()).collect();
        idx.sort_by(|&a, &b| {
            self.logits[b]
                .total_cmp(&self.logits[a])
                .then(self.ids[a].cmp(&self.ids[b]))
        });
        Some(
            idx.into_iter()
                .take(k)
                .map(|i| (self.ids[i], self.logits[i] as f64 - self.log_z))
                .collect(),
        )
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A vocabulary-sized distribution with a few likely tokens, ties, and a
    /// long tail, from a seed.
    fn synthetic(seed: u64, vocab: usize) -> Distribution {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut logits: Vec<f32> = (0..vocab)
            .map(|_| rng.random::<f32>() * 10.0 - 20.0)
            .collect();
        for k in 0..8 {
            let i = rng.random_range(0..vocab);
            logits[i] = 5.0 - k as f32 * 0.7;
        }
        // Two tokens tied at the top, and a tie straddling the summary's edge.
        logits[vocab / 2] = 5.0;
        logits[vocab / 3] = 5.0;
        Distribution::new(logits)
    }

    #[test]
    fn a_summary_draws_and_ranks_exactly_as_the_whole_distribution() {
        for seed in 0..4 {
            let d = synthetic(seed, 50_000);
            let s = Summary::of(&d, [0.0; 6]);
            assert!(s.len() >= Summary::MIN_TOKENS && s.len() < 50_000);
            for t in [0.0, 0.05, 0.1, 0.2, 0.3] {
                assert!(s.covers(t), "covers {t}");
                for draw in 0..300u64 {
                    let mut a = ChaCha8Rng::seed_from_u64(draw);
                    let mut b = ChaCha8Rng::seed_from_u64(draw);
                    assert_eq!(
                        s.sample(t, &mut a),
                        d.sample(t, &mut b),
                        "T {t}, draw {draw}"
                    );
                }
            }
            assert!(!s.covers(1.0), "T = 1 reaches below the kept tokens");
            for k in [1, 5, 20, 40, s.len()] {
                assert_eq!(s.top(k).unwrap(), d.top(k), "top {k}");
            }
            assert!(s.top(s.len() + 1).is_none());
            for (id, lp) in d.top(30) {
                assert_eq!(s.logprob(id), Some(lp));
            }
        }
    }

    #[test]
    fn a_summary_keeps_at_least_the_minimum_and_at_most_about_the_maximum() {
        // One dominant token: the 12-nat span holds one token, so the
        // summary keeps the 64 most likely.
        let mut logits = vec![-30.0f32; 10_000];
        logits[17] = 10.0;
        for (i, l) in logits.iter_mut().enumerate().skip(100).take(200) {
            *l = -20.0 + i as f32 * 0.001;
        }
        let d = Distribution::new(logits);
        let s = Summary::of(&d, [0.0; 6]);
        assert_eq!(s.len(), Summary::MIN_TOKENS);
        assert_eq!(s.top(1).unwrap()[0].0, 17);
        // A flat distribution: capped near the maximum.
        let d = Distribution::new((0..20_000).map(|i| (i % 997) as f32 * 1e-3).collect());
        let s = Summary::of(&d, [0.0; 6]);
        assert!(
            s.len() >= Summary::MAX_TOKENS && s.len() < Summary::MAX_TOKENS + 100,
            "{}",
            s.len()
        );
        assert!(s.covers(0.0));
    }
}
