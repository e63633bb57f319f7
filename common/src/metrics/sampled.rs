//! S, sigma_bar and R of one sampling file, with the persona and rerun
//! bootstraps (METHOD.md, "From ratings to S and R").
//!
//! The overall scope and the five foundations are computed in one pass: a
//! bootstrap draw yields every item's statistics, and each scope averages
//! over its own items. The persona bootstrap resamples rows of per-persona
//! cell summaries; the rerun bootstrap resamples each non-constant cell's
//! ratings (a constant cell, including a single rating, stays fixed, so it
//! costs nothing).

use crate::instrument::{Foundation, ITEMS};

use super::cells::CellTable;
use super::rng::FastRng;
use super::{sample_sd, MetricsError};

/// Draw counts and seed of the bootstraps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapOptions {
    /// Persona bootstrap draws (METHOD.md default 2000).
    pub persona_draws: u32,
    /// Rerun bootstrap draws (METHOD.md default 400).
    pub rerun_draws: u32,
    pub seed: u64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            persona_draws: 2000,
            rerun_draws: 400,
            seed: 1337,
        }
    }
}

/// The metrics of one scope (all items, or one foundation's items).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScopeMetrics {
    /// Mean cell standard deviation over P x Q (`uncertainty` in the files).
    pub sigma_bar: f64,
    /// Moral susceptibility S.
    pub s: f64,
    pub sigma_bar_se_persona: f64,
    pub sigma_bar_se_response: f64,
    pub s_se_persona: f64,
    pub s_se_response: f64,
    /// |P| and |Q|.
    pub personas: usize,
    pub questions: usize,
    /// Valid ratings per cell over P x Q: min, median (truncated to an
    /// integer, as the papers write it) and max.
    pub min_runs: usize,
    pub median_runs: usize,
    pub max_runs: usize,
}

impl ScopeMetrics {
    /// Combined standard error of sigma_bar (the two parts in quadrature).
    pub fn sigma_bar_se(&self) -> f64 {
        self.sigma_bar_se_persona.hypot(self.sigma_bar_se_response)
    }

    /// Combined standard error of S.
    pub fn s_se(&self) -> f64 {
        self.s_se_persona.hypot(self.s_se_response)
    }

    /// Moral robustness R = 1 / sigma_bar (infinite when sigma_bar is 0).
    pub fn r(&self) -> f64 {
        1.0 / self.sigma_bar
    }

    /// se(R) = se(sigma_bar) / sigma_bar^2; 0 when se(sigma_bar) is 0.
    pub fn r_se(&self) -> f64 {
        let se = self.sigma_bar_se();
        if se > 0.0 {
            se / (self.sigma_bar * self.sigma_bar)
        } else {
            0.0
        }
    }
}

/// Overall metrics and the per-foundation split of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledResult {
    pub overall: ScopeMetrics,
    /// Foundations with at least one item in Q, in questionnaire order.
    pub per_foundation: Vec<(Foundation, ScopeMetrics)>,
}

/// Computes the metrics of `table` over the personas `personas` (ids) and
/// the items `items`. Every cell of `personas` x `items` must hold a valid
/// rating. `label` names the bootstrap streams (e.g. `model|0.1`).
pub fn sampled_metrics(
    table: &CellTable,
    personas: &[u32],
    items: &[u8],
    opts: &BootstrapOptions,
    label: &str,
) -> Result<SampledResult, MetricsError> {
    let n = personas.len();
    let nq = items.len();
    if nq == 0 {
        return Err(MetricsError::Empty("no items to analyse".into()));
    }
    if n < 2 {
        return Err(MetricsError::Empty(format!(
            "{n} persona(s) kept; S needs at least 2"
        )));
    }
    // Scopes: 0 = all items, 1 + f = foundation f.
    let mut scope_items: Vec<Vec<usize>> = vec![(0..nq).collect()];
    let mut scope_foundation = vec![None];
    for f in Foundation::ALL {
        let qs: Vec<usize> = (0..nq)
            .filter(|&qi| ITEMS[items[qi] as usize - 1].foundation == f)
            .collect();
        if !qs.is_empty() {
            scope_items.push(qs);
            scope_foundation.push(Some(f));
        }
    }
    let nscopes = scope_items.len();

    // Cell summaries, row-major [persona][item].
    let mut pidx = Vec::with_capacity(n);
    for &p in personas {
        pidx.push(table.persona_index(p).ok_or(MetricsError::MissingCell {
            persona: p,
            item: items[0],
        })?);
    }
    let mut mu = vec![0.0f64; n * nq];
    let mut mu2 = vec![0.0f64; n * nq];
    let mut sg = vec![0.0f64; n * nq];
    let mut runs = vec![0u32; n * nq];
    for (r, &pi) in pidx.iter().enumerate() {
        for (qi, &q) in items.iter().enumerate() {
            let vals = table.ratings(pi, q);
            if vals.is_empty() {
                return Err(MetricsError::MissingCell {
                    persona: personas[r],
                    item: q,
                });
            }
            let (m, sd) = cell_summary(vals);
            mu[r * nq + qi] = m;
            mu2[r * nq + qi] = m * m;
            sg[r * nq + qi] = sd;
            runs[r * nq + qi] = vals.len() as u32;
        }
    }

    let summaries = Summaries { n, nq, mu, mu2, sg };
    let point = summaries.point(&scope_items);
    let pd = opts.persona_draws as usize;
    let mut rng = FastRng::for_label(opts.seed, &format!("{label}|persona"));
    let (p_sigma, p_s) = summaries.persona_bootstrap(&scope_items, pd, &mut rng);

    // Rerun bootstrap.
    let rd = opts.rerun_draws as usize;
    let mut r_sigma = vec![0.0f64; nscopes * rd];
    let mut r_s = vec![0.0f64; nscopes * rd];
    if rd > 0 {
        let mut rng = FastRng::for_label(opts.seed, &format!("{label}|rerun"));
        let mut base_m = vec![0.0f64; nq];
        let mut base_m2 = vec![0.0f64; nq];
        // [draw][item]
        let mut acc_m = vec![0.0f64; rd * nq];
        let mut acc_m2 = vec![0.0f64; rd * nq];
        let mut acc_s = vec![0.0f64; rd * nq];
        for &pi in &pidx {
            for (qi, &q) in items.iter().enumerate() {
                let vals = table.ratings(pi, q);
                let first = vals[0];
                if vals.iter().all(|&v| v == first) {
                    let m = first as f64;
                    base_m[qi] += m;
                    base_m2[qi] += m * m;
                    continue;
                }
                let k = vals.len() as u32;
                let kf = k as f64;
                let denom = kf * (kf - 1.0);
                for b in 0..rd {
                    let mut s: u32 = 0;
                    let mut ss: u32 = 0;
                    let mut j = 0;
                    while j + 1 < k {
                        let (i1, i2) = rng.two_below(k);
                        let a = vals[i1 as usize] as u32;
                        let c = vals[i2 as usize] as u32;
                        s += a + c;
                        ss += a * a + c * c;
                        j += 2;
                    }
                    if j < k {
                        let a = vals[rng.below(k) as usize] as u32;
                        s += a;
                        ss += a * a;
                    }
                    let m = s as f64 / kf;
                    let num = (k as u64 * ss as u64) as f64 - (s as u64 * s as u64) as f64;
                    let sd = (num.max(0.0) / denom).sqrt();
                    let at = b * nq + qi;
                    acc_m[at] += m;
                    acc_m2[at] += m * m;
                    acc_s[at] += sd;
                }
            }
        }
        let mut sum = vec![0.0f64; nq];
        let mut sq = vec![0.0f64; nq];
        let mut sig = vec![0.0f64; nq];
        let mut taub = vec![0.0f64; nq];
        for b in 0..rd {
            for qi in 0..nq {
                sum[qi] = base_m[qi] + acc_m[b * nq + qi];
                sq[qi] = base_m2[qi] + acc_m2[b * nq + qi];
                sig[qi] = acc_s[b * nq + qi];
            }
            taus_from_sums(&sum, &sq, n, &mut taub);
            for (s, qs) in scope_items.iter().enumerate() {
                r_sigma[s * rd + b] =
                    qs.iter().map(|&qi| sig[qi]).sum::<f64>() / (n * qs.len()) as f64;
                r_s[s * rd + b] = qs.iter().map(|&qi| taub[qi]).sum::<f64>() / qs.len() as f64;
            }
        }
    }

    let scope = |s: usize| {
        let qs = &scope_items[s];
        let mut counts: Vec<u32> = (0..n)
            .flat_map(|r| qs.iter().map(move |&qi| (r, qi)))
            .map(|(r, qi)| runs[r * nq + qi])
            .collect();
        counts.sort_unstable();
        let len = counts.len();
        let median = if len % 2 == 1 {
            counts[len / 2] as usize
        } else {
            ((counts[len / 2 - 1] + counts[len / 2]) / 2) as usize
        };
        ScopeMetrics {
            sigma_bar: point[s].0,
            s: point[s].1,
            sigma_bar_se_persona: sample_sd(&p_sigma[s * pd..(s + 1) * pd]),
            sigma_bar_se_response: sample_sd(&r_sigma[s * rd..(s + 1) * rd]),
            s_se_persona: sample_sd(&p_s[s * pd..(s + 1) * pd]),
            s_se_response: sample_sd(&r_s[s * rd..(s + 1) * rd]),
            personas: n,
            questions: qs.len(),
            min_runs: counts[0] as usize,
            median_runs: median,
            max_runs: counts[len - 1] as usize,
        }
    };
    Ok(SampledResult {
        overall: scope(0),
        per_foundation: (1..nscopes)
            .map(|s| (scope_foundation[s].expect("foundation scope"), scope(s)))
            .collect(),
    })
}

/// Cell means and standard deviations of the kept personas, row-major
/// `[persona][item]`, with what the point estimates and the persona
/// bootstrap need. Shared by sampling and logprob mode.
pub(crate) struct Summaries {
    pub n: usize,
    pub nq: usize,
    pub mu: Vec<f64>,
    pub mu2: Vec<f64>,
    pub sg: Vec<f64>,
}

impl Summaries {
    /// (sigma_bar, S) of each scope (a list of item columns), two-pass.
    pub fn point(&self, scopes: &[Vec<usize>]) -> Vec<(f64, f64)> {
        let (n, nq) = (self.n, self.nq);
        let mut tau = vec![0.0f64; nq];
        for (qi, t) in tau.iter_mut().enumerate() {
            let mean = (0..n).map(|r| self.mu[r * nq + qi]).sum::<f64>() / n as f64;
            let ss: f64 = (0..n)
                .map(|r| {
                    let d = self.mu[r * nq + qi] - mean;
                    d * d
                })
                .sum();
            *t = (ss / (n - 1) as f64).sqrt();
        }
        let mut sig_item = vec![0.0f64; nq];
        for r in 0..n {
            for (qi, acc) in sig_item.iter_mut().enumerate() {
                *acc += self.sg[r * nq + qi];
            }
        }
        scopes
            .iter()
            .map(|qs| {
                let sb = qs.iter().map(|&qi| sig_item[qi]).sum::<f64>() / (n * qs.len()) as f64;
                let s = qs.iter().map(|&qi| tau[qi]).sum::<f64>() / qs.len() as f64;
                (sb, s)
            })
            .collect()
    }

    /// `draws` persona-bootstrap values of sigma_bar and S per scope,
    /// laid out `[scope][draw]`.
    pub fn persona_bootstrap(
        &self,
        scopes: &[Vec<usize>],
        draws: usize,
        rng: &mut FastRng,
    ) -> (Vec<f64>, Vec<f64>) {
        let (n, nq) = (self.n, self.nq);
        let mut out_sigma = vec![0.0f64; scopes.len() * draws];
        let mut out_s = vec![0.0f64; scopes.len() * draws];
        let mut sum = vec![0.0f64; nq];
        let mut sq = vec![0.0f64; nq];
        let mut sig = vec![0.0f64; nq];
        let mut taub = vec![0.0f64; nq];
        let add = |r: usize, sum: &mut [f64], sq: &mut [f64], sig: &mut [f64]| {
            let row = r * nq..(r + 1) * nq;
            for (a, b) in sum.iter_mut().zip(&self.mu[row.clone()]) {
                *a += b;
            }
            for (a, b) in sq.iter_mut().zip(&self.mu2[row.clone()]) {
                *a += b;
            }
            for (a, b) in sig.iter_mut().zip(&self.sg[row]) {
                *a += b;
            }
        };
        for b in 0..draws {
            sum.fill(0.0);
            sq.fill(0.0);
            sig.fill(0.0);
            let mut j = 0;
            while j < n {
                let (i1, i2) = rng.two_below(n as u32);
                add(i1 as usize, &mut sum, &mut sq, &mut sig);
                if j + 1 < n {
                    add(i2 as usize, &mut sum, &mut sq, &mut sig);
                }
                j += 2;
            }
            taus_from_sums(&sum, &sq, n, &mut taub);
            for (s, qs) in scopes.iter().enumerate() {
                out_sigma[s * draws + b] =
                    qs.iter().map(|&qi| sig[qi]).sum::<f64>() / (n * qs.len()) as f64;
                out_s[s * draws + b] = qs.iter().map(|&qi| taub[qi]).sum::<f64>() / qs.len() as f64;
            }
        }
        (out_sigma, out_s)
    }
}

/// Mean and sample standard deviation (divisor k-1; 0 for one rating) of a
/// cell's ratings, from exact integer sums.
pub fn cell_summary(vals: &[u8]) -> (f64, f64) {
    let k = vals.len() as u64;
    let (s, ss) = vals.iter().fold((0u64, 0u64), |(s, ss), &v| {
        (s + v as u64, ss + (v as u64) * (v as u64))
    });
    let mean = s as f64 / k as f64;
    if k < 2 {
        return (mean, 0.0);
    }
    let num = (k * ss - s * s) as f64;
    (mean, (num / (k * (k - 1)) as f64).sqrt())
}

/// Per item: the sample standard deviation over `n` personas from their sum
/// and sum of squares.
fn taus_from_sums(sum: &[f64], sq: &[f64], n: usize, out: &mut [f64]) {
    let nf = n as f64;
    let d = (n - 1) as f64;
    for ((o, &s), &q) in out.iter_mut().zip(sum).zip(sq) {
        *o = ((q - s * s / nf).max(0.0) / d).sqrt();
    }
}
