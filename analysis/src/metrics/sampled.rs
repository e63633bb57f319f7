//! S, sigma_bar and R of one sampling file, with the persona and rerun
//! bootstraps (METHOD.md, "From ratings to S and R").
//!
//! The overall scope and the five foundations are computed in one pass: a
//! bootstrap draw yields every item's statistics, and each scope averages
//! over its own items. The persona bootstrap resamples rows of per-persona
//! cell summaries; the rerun bootstrap resamples each non-constant cell's
//! ratings (a constant cell, including a single rating, stays fixed, so it
//! costs nothing).

use moralsweep_common::instrument::{Foundation, Instrument};

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

/// Overall metrics and the per-group split of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledResult {
    pub overall: ScopeMetrics,
    /// Groups (foundations, domains) with at least one item in Q, in the
    /// instrument's order.
    pub per_group: Vec<(String, ScopeMetrics)>,
    /// The same for an MFQ-30 file, by foundation (empty for another
    /// instrument).
    pub per_foundation: Vec<(Foundation, ScopeMetrics)>,
}

/// Computes the metrics of an MFQ-30 `table` over the personas `personas`
/// (ids) and the items `items`. Every cell of `personas` x `items` must hold
/// a valid rating. `label` names the bootstrap streams (e.g. `model|0.1`).
pub fn sampled_metrics(
    table: &CellTable,
    personas: &[u32],
    items: &[u8],
    opts: &BootstrapOptions,
    label: &str,
) -> Result<SampledResult, MetricsError> {
    sampled_metrics_in(&Instrument::mfq30(), table, personas, items, opts, label)
}

/// [`sampled_metrics`] of a file of `instrument`: per group of its items.
pub fn sampled_metrics_in(
    instrument: &Instrument,
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
    // Scopes: 0 = all items, then one per group with items in Q.
    let mut scope_items: Vec<Vec<usize>> = vec![(0..nq).collect()];
    let mut scope_group: Vec<Option<&str>> = vec![None];
    for g in &instrument.groups {
        let qs: Vec<usize> = (0..nq)
            .filter(|&qi| instrument.item(items[qi]).is_some_and(|it| &it.group == g))
            .collect();
        if !qs.is_empty() {
            scope_items.push(qs);
            scope_group.push(Some(g));
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
            sg[r * nq + qi] = sd;
            runs[r * nq + qi] = vals.len() as u32;
        }
    }

    let summaries = Summaries { n, nq, mu, sg };
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
        let centre = summaries.item_means();
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
                    let m = first as f64 - centre[qi];
                    base_m[qi] += m;
                    base_m2[qi] += m * m;
                    continue;
                }
                match OutcomeTable::new(vals, 2 * rd) {
                    Some(table) => {
                        for b in 0..rd {
                            let (m, sd) = table.sample(&mut rng);
                            let m = m - centre[qi];
                            let at = b * nq + qi;
                            acc_m[at] += m;
                            acc_m2[at] += m * m;
                            acc_s[at] += sd;
                        }
                    }
                    None => {
                        for b in 0..rd {
                            let (m, sd) = resample_direct(vals, &mut rng);
                            let m = m - centre[qi];
                            let at = b * nq + qi;
                            acc_m[at] += m;
                            acc_m2[at] += m * m;
                            acc_s[at] += sd;
                        }
                    }
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
    let per_group: Vec<(String, ScopeMetrics)> = (1..nscopes)
        .map(|s| (scope_group[s].expect("group scope").to_string(), scope(s)))
        .collect();
    let per_foundation = if instrument.name == moralsweep_common::instrument::DEFAULT_INSTRUMENT {
        per_group
            .iter()
            .filter_map(|(g, m)| g.parse::<Foundation>().ok().map(|f| (f, *m)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(SampledResult {
        overall: scope(0),
        per_group,
        per_foundation,
    })
}

/// Cell means and standard deviations of the kept personas, row-major
/// `[persona][item]`, with what the point estimates and the persona
/// bootstrap need. Shared by sampling and logprob mode.
pub(crate) struct Summaries {
    pub n: usize,
    pub nq: usize,
    pub mu: Vec<f64>,
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

    /// Per item: the mean of the cell means over the personas.
    pub fn item_means(&self) -> Vec<f64> {
        (0..self.nq)
            .map(|qi| (0..self.n).map(|r| self.mu[r * self.nq + qi]).sum::<f64>() / self.n as f64)
            .collect()
    }

    /// `draws` persona-bootstrap values of sigma_bar and S per scope,
    /// laid out `[scope][draw]`. A draw is a vector of counts (how often
    /// each persona was drawn); only drawn personas are summed, weighted by
    /// their count, and sigma_bar needs just each persona's per-scope sum.
    pub fn persona_bootstrap(
        &self,
        scopes: &[Vec<usize>],
        draws: usize,
        rng: &mut FastRng,
    ) -> (Vec<f64>, Vec<f64>) {
        let (n, nq) = (self.n, self.nq);
        let ns = scopes.len();
        let w = 2 * nq;
        let mut rows = vec![0.0f64; n * w];
        let mut sig_rows = vec![0.0f64; n * ns];
        // Centred on the item means: the variances are unchanged and the
        // sums of squares keep their precision when S is near 0.
        let centre = self.item_means();
        for r in 0..n {
            for qi in 0..nq {
                let d = self.mu[r * nq + qi] - centre[qi];
                rows[r * w + qi] = d;
                rows[r * w + nq + qi] = d * d;
            }
            for (s, qs) in scopes.iter().enumerate() {
                sig_rows[r * ns + s] = qs.iter().map(|&qi| self.sg[r * nq + qi]).sum();
            }
        }
        let mut out_sigma = vec![0.0f64; ns * draws];
        let mut out_s = vec![0.0f64; ns * draws];
        let mut counts = vec![0u32; n];
        let mut acc = vec![0.0f64; w];
        let mut sig = vec![0.0f64; ns];
        let mut taub = vec![0.0f64; nq];
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
            sig.fill(0.0);
            for (r, &c) in counts.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let cf = c as f64;
                for (a, x) in acc.iter_mut().zip(&rows[r * w..(r + 1) * w]) {
                    *a += cf * x;
                }
                for (a, x) in sig.iter_mut().zip(&sig_rows[r * ns..(r + 1) * ns]) {
                    *a += cf * x;
                }
            }
            taus_from_sums(&acc[..nq], &acc[nq..], n, &mut taub);
            for (s, qs) in scopes.iter().enumerate() {
                out_sigma[s * draws + b] = sig[s] / (n * qs.len()) as f64;
                out_s[s * draws + b] = qs.iter().map(|&qi| taub[qi]).sum::<f64>() / qs.len() as f64;
            }
        }
        (out_sigma, out_s)
    }
}

/// Mean and standard deviation of a resample of `k` ratings with sum `s`
/// and sum of squares `ss`.
#[inline(always)]
fn moments(k: u64, s: u64, ss: u64) -> (f64, f64) {
    let kf = k as f64;
    let num = (k * ss - s * s) as f64;
    (s as f64 / kf, (num / (kf * (kf - 1.0))).sqrt())
}

/// One rerun-bootstrap resample of a cell, drawing each rating's index.
fn resample_direct(vals: &[u8], rng: &mut FastRng) -> (f64, f64) {
    let k = vals.len() as u32;
    let (mut s, mut ss) = (0u64, 0u64);
    let mut j = 0;
    while j + 1 < k {
        let (i1, i2) = rng.two_below(k);
        let a = vals[i1 as usize] as u64;
        let c = vals[i2 as usize] as u64;
        s += a + c;
        ss += a * a + c * c;
        j += 2;
    }
    if j < k {
        let a = vals[rng.below(k) as usize] as u64;
        s += a;
        ss += a * a;
    }
    moments(k as u64, s, ss)
}

/// The exact distribution of a cell's resampled (mean, sd): a resample of
/// k ratings with replacement is multinomial over the cell's distinct
/// values, so every composition of k over them is enumerated once with its
/// probability, and a draw costs one random number and an alias-table
/// lookup (Walker/Vose; probabilities kept to 2^-32) instead of k index
/// draws. Used when the compositions are few.
struct OutcomeTable {
    /// Per slot: keep the slot when the low 32 random bits are below this.
    threshold: Vec<u64>,
    alias: Vec<u32>,
    moments: Vec<(f64, f64)>,
}

impl OutcomeTable {
    /// `None` when the cell has more than `max_outcomes` compositions.
    fn new(vals: &[u8], max_outcomes: usize) -> Option<OutcomeTable> {
        let k = vals.len();
        let mut counts = [0usize; 256];
        for &v in vals {
            counts[v as usize] += 1;
        }
        let distinct: Vec<(u64, f64)> = (0..256)
            .filter(|&v| counts[v] > 0)
            .map(|v| (v as u64, counts[v] as f64 / k as f64))
            .collect();
        let m = distinct.len();
        // Compositions of k into m parts: C(k + m - 1, m - 1).
        let mut outcomes: u128 = 1;
        for i in 1..m as u128 {
            outcomes = outcomes * (k as u128 + i) / i;
            if outcomes > max_outcomes as u128 {
                return None;
            }
        }
        let ln_fact: Vec<f64> = std::iter::once(0.0)
            .chain((1..=k).scan(0.0f64, |acc, i| {
                *acc += (i as f64).ln();
                Some(*acc)
            }))
            .collect();
        let ln_p: Vec<f64> = distinct.iter().map(|d| d.1.ln()).collect();
        let mut entries: Vec<(f64, (f64, f64))> = Vec::with_capacity(outcomes as usize);
        let mut x = vec![0usize; m];
        // Enumerate x with sum k, last part implied.
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
                let v = distinct[i].0;
                s += xi as u64 * v;
                ss += xi as u64 * v * v;
            }
            entries.push((lp.exp(), moments(k as u64, s, ss)));
        });
        let n = entries.len();
        let total: f64 = entries.iter().map(|e| e.0).sum();
        let mut scaled: Vec<f64> = entries.iter().map(|e| e.0 / total * n as f64).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let mut threshold = vec![1u64 << 32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            threshold[s] = (scaled[s] * 4_294_967_296.0).round() as u64;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left is 1 up to rounding: always kept.
        Some(OutcomeTable {
            threshold,
            alias,
            moments: entries.into_iter().map(|e| e.1).collect(),
        })
    }

    #[inline(always)]
    fn sample(&self, rng: &mut FastRng) -> (f64, f64) {
        let x = rng.next_u64();
        let i = (((x >> 32) * self.moments.len() as u64) >> 32) as usize;
        if (x & 0xffff_ffff) < self.threshold[i] {
            self.moments[i]
        } else {
            self.moments[self.alias[i] as usize]
        }
    }

    /// The probability each outcome is drawn with (for tests).
    #[cfg(test)]
    fn probabilities(&self) -> Vec<f64> {
        let n = self.moments.len();
        let mut p = vec![0.0; n];
        for i in 0..n {
            let keep = self.threshold[i] as f64 / 4_294_967_296.0;
            p[i] += keep / n as f64;
            p[self.alias[i] as usize] += (1.0 - keep) / n as f64;
        }
        p
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_table_is_the_exact_resampling_distribution() {
        let t = OutcomeTable::new(&[0, 5], 100).unwrap();
        let mut got: Vec<((f64, f64), f64)> =
            t.moments.iter().copied().zip(t.probabilities()).collect();
        got.sort_by(|a, b| a.0 .0.total_cmp(&b.0 .0));
        let sd = (12.5f64).sqrt();
        assert_eq!(got[0].0, (0.0, 0.0));
        assert_eq!(got[1].0, (2.5, sd));
        assert_eq!(got[2].0, (5.0, 0.0));
        assert!((got[0].1 - 0.25).abs() < 1e-9 && (got[1].1 - 0.5).abs() < 1e-9);
        // Binomial(10, 0.3) over the count of 4s among [1,1,1,1,1,1,1,4,4,4].
        let t = OutcomeTable::new(&[1, 1, 1, 1, 1, 1, 1, 4, 4, 4], 100).unwrap();
        for (m, p) in t.moments.iter().zip(t.probabilities()) {
            let x = ((m.0 * 10.0 - 10.0) / 3.0).round() as i32;
            let choose = (0..x).fold(1.0, |c, i| c * (10 - i) as f64 / (i + 1) as f64);
            let want = choose * 0.3f64.powi(x) * 0.7f64.powi(10 - x);
            assert!((p - want).abs() < 1e-9, "x={x}: {p} vs {want}");
        }
        // 10 ratings over 4 values: 286 compositions; over 6 values: too many.
        assert_eq!(
            OutcomeTable::new(&[0, 1, 2, 3, 0, 1, 2, 3, 0, 1], 800)
                .unwrap()
                .moments
                .len(),
            286
        );
        assert!(OutcomeTable::new(&[0, 1, 2, 3, 4, 5, 0, 1, 2, 3], 800).is_none());
    }

    #[test]
    fn table_and_direct_draws_agree_in_distribution() {
        let vals = [3u8, 3, 3, 4, 4, 5, 3, 3, 2, 3];
        let t = OutcomeTable::new(&vals, 800).unwrap();
        let mut rng = FastRng::new(9);
        let n = 200_000;
        let (mut a_m, mut a_sd, mut b_m, mut b_sd) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..n {
            let (m, sd) = t.sample(&mut rng);
            a_m += m;
            a_sd += sd;
            let (m, sd) = resample_direct(&vals, &mut rng);
            b_m += m;
            b_sd += sd;
        }
        let n = n as f64;
        assert!((a_m / n - 3.3).abs() < 0.005 && (b_m / n - 3.3).abs() < 0.005);
        assert!(
            (a_sd / n - b_sd / n).abs() < 0.005,
            "{} vs {}",
            a_sd / n,
            b_sd / n
        );
    }
}
