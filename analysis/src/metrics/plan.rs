//! The sample-size planner's statistics (METHOD-comparisons.md, "Planning
//! a sweep"): from a pilot's cells, the standard errors of S, sigma-bar and
//! R that a sweep of `n` personas and `k` repetitions would have, and the
//! power of a paired comparison to detect a named relative change.
//!
//! The pilot stands in for the population: a new persona is one of the
//! pilot's personas (its cell means are the persona's expected answers),
//! and a new repetition of a cell is one of the cell's recorded ratings.
//! The two variance components are the spread of the cell means between
//! personas and the spread of the ratings within a cell. The standard
//! errors are first-order (delta method) in `1/n`; the within-cell
//! moments at `k` repetitions are exact: the expected standard deviation of
//! `k` draws from a cell is computed over every way the draws can fall
//! (by Monte Carlo with a fixed seed when there are too many).

use std::collections::HashMap;

use super::adjust::{normal_cdf, normal_quantile};
use super::cells::CellTable;
use super::rng::FastRng;
use super::MetricsError;

/// Cells whose `k`-draw outcomes number more than this are summarised by
/// Monte Carlo.
const MAX_OUTCOMES: usize = 20_000;
/// Monte Carlo draws for such a cell.
const MC_DRAWS: usize = 4_000;

/// A pilot's cells, ready for predictions.
#[derive(Debug, Clone)]
pub struct Pilot {
    /// Personas and items of the pilot.
    pub personas: usize,
    pub items: usize,
    /// Valid ratings per cell in the pilot: the median.
    pub median_runs: usize,
    /// Row-major [persona][item]: cell mean, plug-in variance, third and
    /// fourth central moments, and the cell's distribution key.
    mean: Vec<f64>,
    var: Vec<f64>,
    m3: Vec<f64>,
    m4: Vec<f64>,
    dist: Vec<u32>,
    /// Distinct cell distributions: counts per rating value.
    dists: Vec<Vec<(u8, u32)>>,
}

/// What a design of `personas` x `repetitions` is predicted to give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub personas: usize,
    pub repetitions: usize,
    /// The expected S, sigma-bar and R at this design.
    pub s: f64,
    pub sigma_bar: f64,
    pub r: f64,
    /// Their predicted standard errors.
    pub se_s: f64,
    pub se_sigma_bar: f64,
    pub se_r: f64,
}

impl Pilot {
    /// The pilot's cells over `personas` x `items` (each cell must hold a
    /// valid rating; at least two personas).
    pub fn new(table: &CellTable, personas: &[u32], items: &[u8]) -> Result<Pilot, MetricsError> {
        let (n, nq) = (personas.len(), items.len());
        if n < 2 || nq == 0 {
            return Err(MetricsError::Empty(format!(
                "a pilot needs at least 2 personas with every item answered; this one has {n} persona(s) and {nq} item(s)"
            )));
        }
        let mut pilot = Pilot {
            personas: n,
            items: nq,
            median_runs: 0,
            mean: vec![0.0; n * nq],
            var: vec![0.0; n * nq],
            m3: vec![0.0; n * nq],
            m4: vec![0.0; n * nq],
            dist: vec![0; n * nq],
            dists: Vec::new(),
        };
        let mut index: HashMap<Vec<(u8, u32)>, u32> = HashMap::new();
        let mut runs = Vec::with_capacity(n * nq);
        for (r, &p) in personas.iter().enumerate() {
            let pi = table.persona_index(p).ok_or(MetricsError::MissingCell {
                persona: p,
                item: items[0],
            })?;
            for (qi, &q) in items.iter().enumerate() {
                let vals = table.ratings(pi, q);
                if vals.is_empty() {
                    return Err(MetricsError::MissingCell {
                        persona: p,
                        item: q,
                    });
                }
                runs.push(vals.len());
                let k = vals.len() as f64;
                let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / k;
                let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
                for &v in vals {
                    let d = v as f64 - mean;
                    m2 += d * d;
                    m3 += d * d * d;
                    m4 += d * d * d * d;
                }
                let c = r * nq + qi;
                pilot.mean[c] = mean;
                pilot.var[c] = m2 / k;
                pilot.m3[c] = m3 / k;
                pilot.m4[c] = m4 / k;
                let mut counts = [0u32; 256];
                for &v in vals {
                    counts[v as usize] += 1;
                }
                let key: Vec<(u8, u32)> = (0..256)
                    .filter(|&v| counts[v] > 0)
                    .map(|v| (v as u8, counts[v]))
                    .collect();
                let next = index.len() as u32;
                let id = *index.entry(key.clone()).or_insert_with(|| {
                    pilot.dists.push(key);
                    next
                });
                pilot.dist[c] = id;
            }
        }
        runs.sort_unstable();
        pilot.median_runs = runs[runs.len() / 2];
        Ok(pilot)
    }

    /// The predicted S, sigma-bar, R and their standard errors over all
    /// items at `personas` x `repetitions` (repetitions >= 2).
    pub fn predict(&self, personas: usize, repetitions: usize) -> Prediction {
        let (n, nq) = (self.personas, self.items);
        let k = repetitions.max(2) as f64;
        // S: V_q = mean_p (a^2 + v/k); persona influence h_p.
        let mut centre = vec![0.0f64; nq];
        for r in 0..n {
            for (qi, c) in centre.iter_mut().enumerate() {
                *c += self.mean[r * nq + qi];
            }
        }
        centre.iter_mut().for_each(|c| *c /= n as f64);
        let a = |r: usize, qi: usize| self.mean[r * nq + qi] - centre[qi];
        let mut big_v = vec![0.0f64; nq];
        for r in 0..n {
            for (qi, v) in big_v.iter_mut().enumerate() {
                *v += a(r, qi).powi(2) + self.var[r * nq + qi] / k;
            }
        }
        big_v.iter_mut().for_each(|v| *v /= n as f64);
        let coef: Vec<f64> = big_v
            .iter()
            .map(|&v| if v > 0.0 { 0.5 / v.sqrt() } else { 0.0 })
            .collect();
        let qf = nq as f64;
        let (mut between, mut within) = (0.0f64, 0.0f64);
        for r in 0..n {
            let mut g = 0.0;
            let mut w = 0.0;
            for qi in 0..nq {
                let c = r * nq + qi;
                let (ar, v) = (a(r, qi), self.var[c]);
                g += coef[qi] * (ar * ar + v / k - big_v[qi]);
                let e2 = v / k;
                let e3 = self.m3[c] / (k * k);
                let e4 = self.m4[c] / (k * k * k) + 3.0 * (k - 1.0) * v * v / (k * k * k);
                let var_d2 = 4.0 * ar * ar * e2 + 4.0 * ar * e3 + (e4 - e2 * e2);
                w += coef[qi] * coef[qi] * var_d2;
            }
            between += (g / qf).powi(2);
            within += w / (qf * qf);
        }
        let var_h = (between + within) / n as f64;
        let s = big_v.iter().map(|v| v.sqrt()).sum::<f64>() / qf;
        let se_s = (var_h / personas as f64).sqrt();

        // sigma-bar: per persona y_p = mean_q s_pq(k).
        let moments: Vec<(f64, f64)> = self
            .dists
            .iter()
            .enumerate()
            .map(|(i, d)| sd_moments(d, repetitions.max(2), i as u64))
            .collect();
        let mut ys = Vec::with_capacity(n);
        let mut within_sb = 0.0f64;
        for r in 0..n {
            let mut y = 0.0;
            let mut w = 0.0;
            for qi in 0..nq {
                let (es, es2) = moments[self.dist[r * nq + qi] as usize];
                y += es;
                w += (es2 - es * es).max(0.0);
            }
            ys.push(y / qf);
            within_sb += w / (qf * qf);
        }
        let sigma_bar = ys.iter().sum::<f64>() / n as f64;
        let between_sb = ys.iter().map(|y| (y - sigma_bar).powi(2)).sum::<f64>() / n as f64;
        let var_sb = (between_sb + within_sb / n as f64) / personas as f64;
        let se_sigma_bar = var_sb.sqrt();
        let (r, se_r) = if sigma_bar > 0.0 {
            (1.0 / sigma_bar, se_sigma_bar / (sigma_bar * sigma_bar))
        } else {
            (f64::INFINITY, f64::NAN)
        };
        Prediction {
            personas,
            repetitions,
            s,
            sigma_bar,
            r,
            se_s,
            se_sigma_bar,
            se_r,
        }
    }
}

/// E[s] and E[s^2] of the sample standard deviation (divisor k-1) of `k`
/// draws with replacement from a cell with these rating counts: exact over
/// the multinomial outcomes when they are few, else by Monte Carlo seeded
/// with `seed`.
fn sd_moments(counts: &[(u8, u32)], k: usize, seed: u64) -> (f64, f64) {
    let m = counts.len();
    if m <= 1 {
        return (0.0, 0.0);
    }
    let total: u32 = counts.iter().map(|c| c.1).sum();
    let p: Vec<f64> = counts.iter().map(|c| c.1 as f64 / total as f64).collect();
    let vals: Vec<u64> = counts.iter().map(|c| c.0 as u64).collect();
    let kf = k as f64;
    let sd = |s: u64, ss: u64| -> f64 {
        let num = (k as u64 * ss).saturating_sub(s * s) as f64;
        (num / (kf * (kf - 1.0))).sqrt()
    };
    // Outcomes: compositions of k into m parts, C(k + m - 1, m - 1).
    let mut outcomes: u128 = 1;
    for i in 1..m as u128 {
        outcomes = outcomes * (k as u128 + i) / i;
    }
    if outcomes <= MAX_OUTCOMES as u128 {
        let ln_fact: Vec<f64> = std::iter::once(0.0)
            .chain((1..=k).scan(0.0f64, |acc, i| {
                *acc += (i as f64).ln();
                Some(*acc)
            }))
            .collect();
        let ln_p: Vec<f64> = p.iter().map(|x| x.ln()).collect();
        let mut x = vec![0usize; m];
        let (mut e1, mut e2) = (0.0f64, 0.0f64);
        fn walk(j: usize, left: usize, x: &mut [usize], emit: &mut dyn FnMut(&[usize])) {
            if j + 1 == x.len() {
                x[j] = left;
                emit(x);
                return;
            }
            for v in 0..=left {
                x[j] = v;
                walk(j + 1, left - v, x, emit);
            }
        }
        walk(0, k, &mut x, &mut |x: &[usize]| {
            let mut lp = ln_fact[k];
            let (mut s, mut ss) = (0u64, 0u64);
            for (i, &xi) in x.iter().enumerate() {
                lp += xi as f64 * ln_p[i] - ln_fact[xi];
                s += xi as u64 * vals[i];
                ss += xi as u64 * vals[i] * vals[i];
            }
            let w = lp.exp();
            let d = sd(s, ss);
            e1 += w * d;
            e2 += w * d * d;
        });
        return (e1, e2);
    }
    let mut rng = FastRng::for_label(seed, "plan|cell");
    let cum: Vec<f64> = p
        .iter()
        .scan(0.0, |acc, x| {
            *acc += x;
            Some(*acc)
        })
        .collect();
    let (mut e1, mut e2) = (0.0f64, 0.0f64);
    for _ in 0..MC_DRAWS {
        let (mut s, mut ss) = (0u64, 0u64);
        for _ in 0..k {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let i = cum.iter().position(|&c| u < c).unwrap_or(m - 1);
            s += vals[i];
            ss += vals[i] * vals[i];
        }
        let d = sd(s, ss);
        e1 += d;
        e2 += d * d;
    }
    (e1 / MC_DRAWS as f64, e2 / MC_DRAWS as f64)
}

/// The power of a two-sided test at level `alpha` to detect a relative
/// change `delta` (0.2 = +20%) of a metric at `level` whose standard error
/// at this design is `se`, when the changed model's standard error scales
/// with its level and the two models' persona effects are uncorrelated
/// (what pairing gains is not counted).
pub fn power(level: f64, se: f64, delta: f64, alpha: f64) -> f64 {
    let effect = (delta * level).abs();
    let se_diff = se * (1.0 + (1.0 + delta).powi(2)).sqrt();
    if se_diff.is_nan() || se_diff <= 0.0 || !effect.is_finite() {
        return if effect > 0.0 { 1.0 } else { alpha };
    }
    let z = normal_quantile(1.0 - alpha / 2.0);
    let t = effect / se_diff;
    normal_cdf(t - z) + normal_cdf(-t - z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_moments_are_exact_for_two_values() {
        // Two draws from {0, 2} with equal weight: s = 0 or sqrt(2), each half.
        let (e1, e2) = sd_moments(&[(0, 1), (2, 1)], 2, 0);
        assert!((e1 - 0.5 * 2f64.sqrt()).abs() < 1e-12);
        // E[s^2] is the plug-in variance (1) for any k.
        assert!((e2 - 1.0).abs() < 1e-12);
        let (_, e2) = sd_moments(&[(1, 3), (4, 5), (5, 2)], 7, 0);
        let mean = (3.0 + 20.0 + 10.0) / 10.0;
        let var = (3.0 * (1.0f64 - mean).powi(2)
            + 5.0 * (4.0f64 - mean).powi(2)
            + 2.0 * (5.0f64 - mean).powi(2))
            / 10.0;
        assert!((e2 - var).abs() < 1e-9);
        // Monte Carlo agrees with the exact sum where both apply.
        let cell = [(0u8, 2u32), (1, 2), (2, 2), (3, 2), (4, 1), (5, 1)];
        let exact = sd_moments(&cell, 12, 0);
        let mut e = (0.0, 0.0);
        let mut rng = FastRng::new(5);
        let vals: Vec<u64> = cell
            .iter()
            .flat_map(|&(v, c)| std::iter::repeat_n(v as u64, c as usize))
            .collect();
        for _ in 0..40_000 {
            let (mut s, mut ss) = (0u64, 0u64);
            for _ in 0..12 {
                let v = vals[rng.below(vals.len() as u32) as usize];
                s += v;
                ss += v * v;
            }
            let d = (((12 * ss - s * s) as f64) / (12.0 * 11.0)).sqrt();
            e.0 += d / 40_000.0;
            e.1 += d * d / 40_000.0;
        }
        assert!((exact.0 - e.0).abs() < 0.01, "{exact:?} {e:?}");
    }

    #[test]
    fn power_grows_with_the_effect_and_is_alpha_at_none() {
        assert!((power(1.0, 0.1, 0.0, 0.05) - 0.05).abs() < 1e-6);
        let p1 = power(1.0, 0.1, 0.2, 0.05);
        let p2 = power(1.0, 0.1, 0.4, 0.05);
        assert!(0.05 < p1 && p1 < p2 && p2 < 1.0, "{p1} {p2}");
        // Effect 0.2, se_diff = 0.1 * sqrt(1 + 1.44): z = 1.2804.
        let want = normal_cdf(0.2 / (0.1 * 2.44f64.sqrt()) - 1.959_964);
        assert!((p1 - want).abs() < 1e-3);
    }
}
