//! Logprob mode (METHOD.md): one first-token logprob collection gives R(T)
//! and S(T) at any temperature T. At T the digit probabilities are
//! `softmax(logprob_d / T)` over the six digits (missing digits imputed by
//! the reader); a cell's mean and population standard deviation follow, and
//! S and sigma_bar are computed as in sampling mode with the persona
//! bootstrap only. Every persona with a row for every item of the file is
//! used.

use std::collections::BTreeMap;

use crate::formats::LogprobFile;

use super::rng::FastRng;
use super::sampled::{BootstrapOptions, Summaries};
use super::{sample_sd, MetricsError};

/// The metrics at one temperature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub temperature: f64,
    pub sigma_bar: f64,
    pub sigma_bar_se: f64,
    pub s: f64,
    pub s_se: f64,
    pub personas: usize,
    pub questions: usize,
}

impl CurvePoint {
    pub fn r(&self) -> f64 {
        1.0 / self.sigma_bar
    }

    pub fn r_se(&self) -> f64 {
        if self.sigma_bar_se > 0.0 {
            self.sigma_bar_se / (self.sigma_bar * self.sigma_bar)
        } else {
            0.0
        }
    }
}

/// R(T), S(T) and what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobResult {
    pub points: Vec<CurvePoint>,
    /// Persona ids dropped because they lack a row for some item.
    pub dropped_personas: Vec<u32>,
    /// (persona, item) pairs with more than one row (the last row counts).
    pub repeated_rows: usize,
}

/// Mean and population standard deviation of the rating distribution
/// `softmax(logprobs / t)` over the digits 0-5.
pub fn digit_moments(logprobs: &[f64; 6], t: f64) -> (f64, f64) {
    let max = logprobs
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x / t));
    let mut w = [0.0f64; 6];
    let mut total = 0.0;
    for d in 0..6 {
        w[d] = (logprobs[d] / t - max).exp();
        total += w[d];
    }
    let mean: f64 = (0..6).map(|d| d as f64 * w[d] / total).sum();
    let var: f64 = (0..6)
        .map(|d| {
            let x = d as f64 - mean;
            x * x * w[d] / total
        })
        .sum();
    (mean, var.max(0.0).sqrt())
}

/// R(T) and S(T) of a logprob file at each of `temperatures`.
pub fn logprob_metrics(
    file: &LogprobFile,
    temperatures: &[f64],
    opts: &BootstrapOptions,
    label: &str,
) -> Result<LogprobResult, MetricsError> {
    if let Some(&t) = temperatures.iter().find(|t| !t.is_finite() || **t <= 0.0) {
        return Err(MetricsError::BadTemperature(t));
    }
    let mut cells: BTreeMap<(u32, u8), [f64; 6]> = BTreeMap::new();
    let mut repeated_rows = 0;
    for row in &file.rows {
        if cells.insert((row.persona, row.item), row.imputed).is_some() {
            repeated_rows += 1;
        }
    }
    let mut items: Vec<u8> = cells.keys().map(|k| k.1).collect();
    items.sort_unstable();
    items.dedup();
    let mut all_personas: Vec<u32> = cells.keys().map(|k| k.0).collect();
    all_personas.dedup();
    let (personas, dropped_personas): (Vec<u32>, Vec<u32>) = all_personas
        .into_iter()
        .partition(|p| items.iter().all(|q| cells.contains_key(&(*p, *q))));
    let (n, nq) = (personas.len(), items.len());
    if n < 2 || nq == 0 {
        return Err(MetricsError::Empty(format!(
            "{n} persona(s) with a row for every item; S needs at least 2"
        )));
    }
    let scopes = vec![(0..nq).collect::<Vec<usize>>()];
    let mut points = Vec::with_capacity(temperatures.len());
    for &t in temperatures {
        let mut mu = vec![0.0; n * nq];
        let mut sg = vec![0.0; n * nq];
        for (r, p) in personas.iter().enumerate() {
            for (qi, q) in items.iter().enumerate() {
                let (m, sd) = digit_moments(&cells[&(*p, *q)], t);
                mu[r * nq + qi] = m;
                sg[r * nq + qi] = sd;
            }
        }
        let summaries = Summaries { n, nq, mu, sg };
        let point = summaries.point(&scopes)[0];
        let mut rng = FastRng::for_label(opts.seed, &format!("{label}|logprob|{t}"));
        let (bs, bss) = summaries.persona_bootstrap(&scopes, opts.persona_draws as usize, &mut rng);
        points.push(CurvePoint {
            temperature: t,
            sigma_bar: point.0,
            sigma_bar_se: sample_sd(&bs),
            s: point.1,
            s_se: sample_sd(&bss),
            personas: n,
            questions: nq,
        });
    }
    Ok(LogprobResult {
        points,
        dropped_personas,
        repeated_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments() {
        let (m, sd) = digit_moments(
            &[0.0, f64::NEG_INFINITY, -1e300, -1e300, -1e300, -1e300],
            1.0,
        );
        assert!((m - 0.0).abs() < 1e-12 && sd.abs() < 1e-12);
        let uniform = [-1.0; 6];
        let (m, sd) = digit_moments(&uniform, 0.5);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((sd - (35.0f64 / 12.0).sqrt()).abs() < 1e-12);
    }
}
