//! A next-token distribution over the whole vocabulary, and seeded drawing
//! from `(id, logit)` entries, shared with [`super::Summary`].

use rand::Rng;

/// A next-token distribution as log-probabilities over the whole vocabulary.
pub struct Distribution {
    pub logits: Vec<f32>,
    /// log sum exp of the logits (temperature 1).
    pub log_z: f64,
}

impl Distribution {
    pub(crate) fn new(logits: Vec<f32>) -> Distribution {
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let s: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum();
        Distribution {
            log_z: m + s.ln(),
            logits,
        }
    }

    /// log p(token) at temperature 1.
    pub fn logprob(&self, id: u32) -> f64 {
        self.logits[id as usize] as f64 - self.log_z
    }

    /// The `k` most likely tokens, most likely first (the lowest id first
    /// among ties).
    pub fn top(&self, k: usize) -> Vec<(u32, f64)> {
        let mut idx: Vec<u32> = (0..self.logits.len() as u32).collect();
        let k = k.min(idx.len());
        if k == 0 {
            return vec![];
        }
        let order = |a: &u32, b: &u32| {
            self.logits[*b as usize]
                .total_cmp(&self.logits[*a as usize])
                .then(a.cmp(b))
        };
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
        idx.sort_by(order);
        idx.into_iter().map(|i| (i, self.logprob(i))).collect()
    }

    /// Draws a token at `temperature` (<= 0: the most likely token).
    pub fn sample(&self, temperature: f64, rng: &mut impl Rng) -> u32 {
        let m = self
            .logits
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        sample_entries(
            || self.logits.iter().enumerate().map(|(i, &l)| (i as u32, l)),
            m,
            temperature,
            rng,
        )
    }
}

/// Draws a token from `(id, logit)` entries given in ascending id order, with
/// `m` their largest logit, at `temperature` (<= 0: the most likely token,
/// the lowest id among ties). Tokens more than 40 nats (at this temperature)
/// below the most likely one carry a total weight below 262144 * e^-40 =
/// 1e-12 of it; they are skipped, which saves an exp per vocabulary entry and
/// lets a [`Summary`] holding every token above that line draw exactly the
/// token the whole distribution would.
pub(super) fn sample_entries<I: Iterator<Item = (u32, f32)>>(
    entries: impl Fn() -> I,
    m: f32,
    temperature: f64,
    rng: &mut impl Rng,
) -> u32 {
    let argmax = || {
        let mut best: Option<(u32, f32)> = None;
        for (i, l) in entries() {
            if best.is_none_or(|(_, b)| l > b) {
                best = Some((i, l));
            }
        }
        best.map_or(0, |(i, _)| i)
    };
    if temperature <= 0.0 || !temperature.is_finite() {
        return argmax();
    }
    let m = m as f64;
    let floor = sample_floor(m, temperature);
    let weight = |l: f32| ((l as f64 - m) / temperature).exp();
    let total: f64 = entries()
        .filter(|&(_, l)| l >= floor)
        .map(|(_, l)| weight(l))
        .sum();
    let mut u = rng.random::<f64>() * total;
    for (i, l) in entries() {
        if l < floor {
            continue;
        }
        let wi = weight(l);
        if u < wi {
            return i;
        }
        u -= wi;
    }
    argmax()
}

/// The lowest logit [`sample_entries`] considers at `temperature`.
pub(super) fn sample_floor(max: f64, temperature: f64) -> f32 {
    (max - 40.0 * temperature) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn sampling_is_seeded_and_follows_the_temperature() {
        let d = Distribution::new(vec![2.0, 1.0, 0.0, -100.0]);
        let draw = |t: f64, seed: u64| d.sample(t, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(0.0, 1), 0);
        assert!((0..50).all(|s| draw(0.7, s) == draw(0.7, s)));
        let n = 4000;
        let ones = (0..n).filter(|&s| draw(1.0, s) == 1).count() as f64 / n as f64;
        let want = (1f64.exp()) / (2f64.exp() + 1f64.exp() + 1.0);
        assert!((ones - want).abs() < 0.03, "{ones} vs {want}");
        assert!((0..n).all(|s| draw(1.0, s) != 3));
        let total: f64 = (0..4).map(|i| d.logprob(i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
}
