//! Paired comparison of two models on the same personas (METHOD-comparisons.md):
//! the change of S, R and sigma-bar from a base model A to a model B,
//! overall and per group of items, with a bootstrap interval that keeps the
//! pairing and a permutation p-value.
//!
//! - **Interval.** A draw resamples the paired persona ids with replacement,
//!   once for both models; a drawn persona brings both models' rows (every
//!   item's cell, with the repetitions it holds). The 95% interval is the
//!   2.5 and 97.5 percentiles of the draws' differences (and of their
//!   relative changes).
//! - **p-value.** The null is that the two models answer each persona
//!   alike: within a persona, A's and B's answers are exchangeable. A
//!   permutation swaps the two models' rows of each persona with
//!   probability 1/2 (all of a persona's items together). The p-value is
//!   the share of permutations whose difference is at least as far from 0
//!   as the observed one, (1 + b) / (1 + N); when fewer than
//!   [`TAIL_EXCEEDANCES`] permutations reach it, the observed difference is
//!   beyond what N permutations resolve and the p-value is the normal tail
//!   of the difference over the permutations' standard deviation.
//!
//! Every draw only reweights (bootstrap) or swaps (permutation) per-persona
//! rows of cell summaries, so a comparison costs a few multiply-adds per
//! persona, item and draw.

use moralsweep_common::instrument::Instrument;

use super::adjust::{normal_two_sided, quantile_sorted};
use super::cells::CellTable;
use super::rng::FastRng;
use super::sampled::cell_summary;
use super::MetricsError;

/// Draws of the paired bootstrap and of the permutation test, and their seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedOptions {
    /// Bootstrap draws, and as many permutations (default 2000).
    pub resamples: u32,
    pub seed: u64,
}

impl Default for PairedOptions {
    fn default() -> Self {
        PairedOptions {
            resamples: 2000,
            seed: 1337,
        }
    }
}

/// Below this many permutations at least as extreme as the observed
/// difference, the p-value is the normal tail (see the module docs).
pub const TAIL_EXCEEDANCES: u64 = 10;

/// The metrics a paired comparison reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PairedMetric {
    S,
    R,
    SigmaBar,
}

impl PairedMetric {
    pub const ALL: [PairedMetric; 3] = [PairedMetric::S, PairedMetric::R, PairedMetric::SigmaBar];

    /// The name in `comparisons.csv`: `S`, `R` or `sigma_bar`.
    pub fn name(self) -> &'static str {
        match self {
            PairedMetric::S => "S",
            PairedMetric::R => "R",
            PairedMetric::SigmaBar => "sigma_bar",
        }
    }

    fn of(self, s: f64, sigma_bar: f64) -> f64 {
        match self {
            PairedMetric::S => s,
            PairedMetric::R => 1.0 / sigma_bar,
            PairedMetric::SigmaBar => sigma_bar,
        }
    }
}

/// One metric of one scope: B against A.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedEstimate {
    /// The group (foundation, domain); `None` for all items.
    pub group: Option<String>,
    pub metric: PairedMetric,
    /// The metric of A and of B on the paired personas.
    pub base: f64,
    pub variant: f64,
    /// B - A.
    pub estimate: f64,
    /// (B - A) / A.
    pub relative_change: f64,
    /// The percentile interval of B - A (95%).
    pub ci: (f64, f64),
    /// The percentile interval of (B - A) / A (95%).
    pub relative_ci: (f64, f64),
    /// Two-sided, unadjusted.
    pub p_value: f64,
}

/// Everything one paired comparison gives.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedResult {
    /// By metric (S, R, sigma_bar), then scope (all items first, then the
    /// instrument's groups in its order).
    pub rows: Vec<PairedEstimate>,
    /// Personas both models answered on every compared item.
    pub personas: usize,
    pub items: usize,
}

/// The items both tables hold and the personas with a valid rating in
/// every one of them in both tables (the persona filter on the shared items).
pub fn paired_sets(a: &CellTable, b: &CellTable) -> (Vec<u8>, Vec<u32>) {
    let bi = b.items();
    let items: Vec<u8> = a.items().into_iter().filter(|q| bi.contains(q)).collect();
    let kb = b.kept_personas(&items);
    let personas = a
        .kept_personas(&items)
        .into_iter()
        .filter(|p| kb.binary_search(p).is_ok())
        .collect();
    (items, personas)
}

/// Compares `variant` (B) against `base` (A) on `personas` x `items`, every
/// cell of which must hold a valid rating in both tables. `label` names the
/// random streams (with `opts.seed`), so a comparison is repeatable.
pub fn paired_compare(
    instrument: &Instrument,
    base: &CellTable,
    variant: &CellTable,
    personas: &[u32],
    items: &[u8],
    opts: &PairedOptions,
    label: &str,
) -> Result<PairedResult, MetricsError> {
    let n = personas.len();
    let nq = items.len();
    if nq == 0 {
        return Err(MetricsError::Empty("no item both models answered".into()));
    }
    if n < 2 {
        return Err(MetricsError::Empty(format!(
            "{n} persona(s) answered every item by both models; a comparison needs at least 2"
        )));
    }
    let (scopes, names) = scopes_of(instrument, items);
    let ns = scopes.len();
    let summaries = |t: &CellTable| -> Result<(Vec<f64>, Vec<f64>), MetricsError> {
        let mut mu = vec![0.0; n * nq];
        let mut sg = vec![0.0; n * nq];
        for (r, &p) in personas.iter().enumerate() {
            let pi = t.persona_index(p).ok_or(MetricsError::MissingCell {
                persona: p,
                item: items[0],
            })?;
            for (qi, &q) in items.iter().enumerate() {
                let vals = t.ratings(pi, q);
                if vals.is_empty() {
                    return Err(MetricsError::MissingCell {
                        persona: p,
                        item: q,
                    });
                }
                (mu[r * nq + qi], sg[r * nq + qi]) = cell_summary(vals);
            }
        }
        Ok((mu, sg))
    };
    let (mu_a, sg_a) = summaries(base)?;
    let (mu_b, sg_b) = summaries(variant)?;
    let rows = PairRows::new(&mu_a, &sg_a, &mu_b, &sg_b, n, nq, &scopes);

    // Observed values per scope: (S_A, sb_A, S_B, sb_B).
    let mut work = Work::new(nq, ns);
    let total = rows.totals();
    let observed = work.values(&total, n, &scopes).to_vec();
    let nm = PairedMetric::ALL.len();
    let d_obs: Vec<f64> = (0..ns * nm)
        .map(|k| {
            let (s, m) = (k % ns, PairedMetric::ALL[k / ns]);
            let o = observed[s];
            m.of(o.2, o.3) - m.of(o.0, o.1)
        })
        .collect();

    // Paired bootstrap.
    let draws = opts.resamples.max(1) as usize;
    let mut boot = vec![0.0f64; ns * nm * draws];
    let mut boot_rel = vec![0.0f64; ns * nm * draws];
    let mut rng = FastRng::for_label(opts.seed, &format!("{label}|paired-bootstrap"));
    let mut counts = vec![0u32; n];
    let mut acc = vec![0.0f64; rows.width];
    for b in 0..draws {
        counts.fill(0);
        let mut j = 0;
        while j < n {
            let (i1, i2) = rng.two_below(n as u32);
            counts[i1 as usize] += 1;
            if j + 1 < n {
                counts[i2 as usize] += 1;
            }
            j += 2;
        }
        acc.fill(0.0);
        for (r, &c) in counts.iter().enumerate() {
            if c > 0 {
                let cf = c as f64;
                for (a, x) in acc.iter_mut().zip(rows.row(r)) {
                    *a += cf * x;
                }
            }
        }
        let v = work.values(&acc, n, &scopes);
        for (k, m) in PairedMetric::ALL.iter().enumerate() {
            for (s, o) in v.iter().enumerate() {
                let (a, bv) = (m.of(o.0, o.1), m.of(o.2, o.3));
                let at = (k * ns + s) * draws + b;
                boot[at] = bv - a;
                boot_rel[at] = (bv - a) / a;
            }
        }
    }

    // Permutation test: swap a persona's two rows with probability 1/2.
    let mut rng = FastRng::for_label(opts.seed, &format!("{label}|paired-permutation"));
    let mut exceed = vec![0u64; ns * nm];
    let mut sq = vec![0.0f64; ns * nm];
    let mut swap = vec![0.0f64; rows.diff_width];
    let mut perm = vec![0.0f64; rows.width];
    for _ in 0..draws {
        swap.fill(0.0);
        let mut bits = 0u64;
        for r in 0..n {
            if r.is_multiple_of(64) {
                bits = rng.next_u64();
            }
            if bits & 1 == 1 {
                for (a, x) in swap.iter_mut().zip(rows.diff(r)) {
                    *a += x;
                }
            }
            bits >>= 1;
        }
        rows.swapped(&total, &swap, &mut perm);
        let v = work.values(&perm, n, &scopes);
        for (k, m) in PairedMetric::ALL.iter().enumerate() {
            for (s, o) in v.iter().enumerate() {
                let d = m.of(o.2, o.3) - m.of(o.0, o.1);
                let at = k * ns + s;
                let obs = d_obs[at];
                if d.abs() >= obs.abs() * (1.0 - 1e-12) {
                    exceed[at] += 1;
                }
                sq[at] += d * d;
            }
        }
    }

    let mut out = Vec::with_capacity(ns * nm);
    for (k, m) in PairedMetric::ALL.iter().enumerate() {
        for s in 0..ns {
            let at = k * ns + s;
            let o = observed[s];
            let (a, b) = (m.of(o.0, o.1), m.of(o.2, o.3));
            let slice = |v: &[f64]| {
                let mut xs: Vec<f64> = v[at * draws..(at + 1) * draws]
                    .iter()
                    .copied()
                    .filter(|x| !x.is_nan())
                    .collect();
                xs.sort_by(f64::total_cmp);
                (quantile_sorted(&xs, 0.025), quantile_sorted(&xs, 0.975))
            };
            let d = d_obs[at];
            let p_value = if !d.is_finite() {
                f64::NAN
            } else if exceed[at] >= TAIL_EXCEEDANCES {
                (1 + exceed[at]) as f64 / (1 + draws) as f64
            } else {
                let rms = (sq[at] / draws as f64).sqrt();
                if rms > 0.0 {
                    normal_two_sided(d / rms)
                } else {
                    // No permutation moves the statistic: nothing to detect.
                    1.0
                }
            };
            out.push(PairedEstimate {
                group: names[s].clone(),
                metric: *m,
                base: a,
                variant: b,
                estimate: d,
                relative_change: d / a,
                ci: slice(&boot),
                relative_ci: slice(&boot_rel),
                p_value,
            });
        }
    }
    Ok(PairedResult {
        rows: out,
        personas: n,
        items: nq,
    })
}

/// Scope 0: every item (by column); then each group of the instrument with
/// items among `items`, with its name.
pub(crate) fn scopes_of(
    instrument: &Instrument,
    items: &[u8],
) -> (Vec<Vec<usize>>, Vec<Option<String>>) {
    let mut scopes = vec![(0..items.len()).collect::<Vec<usize>>()];
    let mut names = vec![None];
    for g in &instrument.groups {
        let qs: Vec<usize> = (0..items.len())
            .filter(|&qi| instrument.item(items[qi]).is_some_and(|it| &it.group == g))
            .collect();
        if !qs.is_empty() {
            scopes.push(qs);
            names.push(Some(g.clone()));
        }
    }
    (scopes, names)
}

/// Per persona, both models' centred cell means, their squares and the
/// per-scope sums of cell standard deviations, in one row:
/// `[dA (nq) | dA^2 (nq) | sigA (ns) | dB (nq) | dB^2 (nq) | sigB (ns)]`;
/// and B's part minus A's part, for the permutations.
struct PairRows {
    half: usize,
    width: usize,
    diff_width: usize,
    data: Vec<f64>,
    diffs: Vec<f64>,
}

impl PairRows {
    fn new(
        mu_a: &[f64],
        sg_a: &[f64],
        mu_b: &[f64],
        sg_b: &[f64],
        n: usize,
        nq: usize,
        scopes: &[Vec<usize>],
    ) -> PairRows {
        let ns = scopes.len();
        let half = 2 * nq + ns;
        let width = 2 * half;
        // One centre for both models, so that swapping rows keeps it.
        let centre: Vec<f64> = (0..nq)
            .map(|qi| {
                (0..n)
                    .map(|r| mu_a[r * nq + qi] + mu_b[r * nq + qi])
                    .sum::<f64>()
                    / (2 * n) as f64
            })
            .collect();
        let mut data = vec![0.0f64; n * width];
        let mut diffs = vec![0.0f64; n * half];
        for r in 0..n {
            for (m, (mu, sg)) in [(mu_a, sg_a), (mu_b, sg_b)].into_iter().enumerate() {
                let row = &mut data[r * width + m * half..r * width + (m + 1) * half];
                for qi in 0..nq {
                    let d = mu[r * nq + qi] - centre[qi];
                    row[qi] = d;
                    row[nq + qi] = d * d;
                }
                for (s, qs) in scopes.iter().enumerate() {
                    row[2 * nq + s] = qs.iter().map(|&qi| sg[r * nq + qi]).sum();
                }
            }
            for j in 0..half {
                diffs[r * half + j] = data[r * width + half + j] - data[r * width + j];
            }
        }
        PairRows {
            half,
            width,
            diff_width: half,
            data,
            diffs,
        }
    }

    fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.width..(r + 1) * self.width]
    }

    fn diff(&self, r: usize) -> &[f64] {
        &self.diffs[r * self.half..(r + 1) * self.half]
    }

    /// The sums over all personas with weight 1.
    fn totals(&self) -> Vec<f64> {
        let mut t = vec![0.0f64; self.width];
        for r in 0..self.data.len() / self.width {
            for (a, x) in t.iter_mut().zip(self.row(r)) {
                *a += x;
            }
        }
        t
    }

    /// The sums after swapping: A gains the swapped personas' B - A, B
    /// loses it.
    fn swapped(&self, total: &[f64], swap: &[f64], out: &mut [f64]) {
        let h = self.half;
        for j in 0..h {
            out[j] = total[j] + swap[j];
            out[h + j] = total[h + j] - swap[j];
        }
    }
}

/// Scratch space of [`Work::values`].
struct Work {
    nq: usize,
    tau: Vec<f64>,
    out: Vec<(f64, f64, f64, f64)>,
}

impl Work {
    fn new(nq: usize, ns: usize) -> Work {
        Work {
            nq,
            tau: vec![0.0; 2 * nq],
            out: vec![(0.0, 0.0, 0.0, 0.0); ns],
        }
    }

    /// Per scope (S_A, sigma_bar_A, S_B, sigma_bar_B) from weighted sums
    /// whose weights add up to `n`.
    fn values(&mut self, sums: &[f64], n: usize, scopes: &[Vec<usize>]) -> &[(f64, f64, f64, f64)] {
        let nq = self.nq;
        let ns = scopes.len();
        let half = 2 * nq + ns;
        let nf = n as f64;
        let d = (n - 1) as f64;
        for m in 0..2 {
            let part = &sums[m * half..(m + 1) * half];
            for qi in 0..nq {
                let (s, q) = (part[qi], part[nq + qi]);
                self.tau[m * nq + qi] = ((q - s * s / nf).max(0.0) / d).sqrt();
            }
        }
        for (s, qs) in scopes.iter().enumerate() {
            let k = qs.len() as f64;
            let s_of = |m: usize| qs.iter().map(|&qi| self.tau[m * nq + qi]).sum::<f64>() / k;
            let sb_of = |m: usize| sums[m * half + 2 * nq + s] / (nf * k);
            self.out[s] = (s_of(0), sb_of(0), s_of(1), sb_of(1));
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(u32, u8, &[i8])]) -> CellTable {
        let flat: Vec<(u32, u8, i8)> = rows
            .iter()
            .flat_map(|(p, q, rs)| rs.iter().map(move |&r| (*p, *q, r)))
            .collect();
        CellTable::from_rows(flat.into_iter())
    }

    #[test]
    fn identical_models_differ_by_nothing() {
        let rows: Vec<(u32, u8, &[i8])> = (0..20u32)
            .flat_map(|p| {
                (1..=30u8).map(move |q| {
                    let r: &[i8] = if (p + q as u32).is_multiple_of(3) {
                        &[1, 2, 2]
                    } else {
                        &[4, 4, 5]
                    };
                    (p, q, r)
                })
            })
            .collect();
        let t = table(&rows);
        let (items, personas) = paired_sets(&t, &t);
        assert_eq!((items.len(), personas.len()), (30, 20));
        let opts = PairedOptions {
            resamples: 200,
            seed: 3,
        };
        let r =
            paired_compare(&Instrument::mfq30(), &t, &t, &personas, &items, &opts, "x").unwrap();
        assert_eq!(r.rows.len(), 3 * 6);
        for e in &r.rows {
            assert_eq!(e.estimate, 0.0, "{e:?}");
            assert_eq!(e.ci, (0.0, 0.0));
            assert_eq!(e.p_value, 1.0);
        }
        assert_eq!(r.rows[0].group, None);
        assert_eq!(r.rows[1].group.as_deref(), Some("Harm/Care"));
    }

    #[test]
    fn a_clear_shift_is_found_and_the_result_is_repeatable() {
        // B spreads its personas twice as far apart as A, with the same noise.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for p in 0..40u32 {
            let level = (p % 5) as i8; // 0..4
            for q in 1..=30u8 {
                a.push((p, q, vec![1 + level / 2, 1 + level / 2, 2 + level / 2]));
                b.push((p, q, vec![level, level, (level + 1).min(5)]));
            }
        }
        let conv = |v: &Vec<(u32, u8, Vec<i8>)>| {
            table(
                &v.iter()
                    .map(|(p, q, r)| (*p, *q, r.as_slice()))
                    .collect::<Vec<_>>(),
            )
        };
        let (ta, tb) = (conv(&a), conv(&b));
        let (items, personas) = paired_sets(&ta, &tb);
        let opts = PairedOptions {
            resamples: 500,
            seed: 11,
        };
        let inst = Instrument::mfq30();
        let r = paired_compare(&inst, &ta, &tb, &personas, &items, &opts, "a|b").unwrap();
        let s = &r.rows[0];
        assert_eq!(s.metric, PairedMetric::S);
        assert!(
            s.estimate > 0.5 && s.ci.0 > 0.0 && s.p_value < 1e-3,
            "{s:?}"
        );
        assert!((s.relative_change - s.estimate / s.base).abs() < 1e-12);
        assert!(s.relative_ci.0 < s.relative_change && s.relative_change < s.relative_ci.1);
        let again = paired_compare(&inst, &ta, &tb, &personas, &items, &opts, "a|b").unwrap();
        assert_eq!(r, again);
    }

    #[test]
    fn too_few_personas_is_an_error() {
        let t = table(&[(1, 1, &[1, 2])]);
        let e = paired_compare(
            &Instrument::mfq30(),
            &t,
            &t,
            &[1],
            &[1],
            &PairedOptions::default(),
            "x",
        );
        assert!(matches!(e, Err(MetricsError::Empty(_))));
    }
}
