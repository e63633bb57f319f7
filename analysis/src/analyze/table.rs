//! The printed summaries: the headline table and what was left out.

use super::*;
use crate::formats::{fmt_float, fmt_temperature};
use crate::metrics::Band;
use std::collections::BTreeMap;
use std::fmt::Write as _;

impl Report {
    /// Whether any metric was computed (persona metrics, a temperature
    /// curve or a self profile).
    pub fn has_metrics(&self) -> bool {
        !(self.overall.is_empty() && self.curves.is_empty() && self.self_profiles.is_empty())
    }

    /// What the metrics left out, one line per file: the whole file, or its
    /// items and personas with the reason of the first few (all of them are
    /// in `dropped.csv`). Empty when nothing was left out.
    pub fn dropped_summary(&self) -> String {
        let mut out = String::new();
        if self.dropped.is_empty() {
            return out;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "left out of the metrics (every one in dropped.csv):");
        let mut by_file: BTreeMap<&str, Vec<&DroppedRow>> = BTreeMap::new();
        for d in &self.dropped {
            by_file.entry(d.source_file.as_str()).or_default().push(d);
        }
        const SHOWN: usize = 5;
        for (file, rows) in by_file {
            if let Some(d) = rows.iter().find(|d| d.what == Dropped::File) {
                let _ = writeln!(out, "  {file}: the whole file: {}", d.reason);
                continue;
            }
            for what in [Dropped::Item, Dropped::Persona] {
                let of: Vec<&&DroppedRow> = rows.iter().filter(|d| d.what == what).collect();
                if of.is_empty() {
                    continue;
                }
                let shown: Vec<String> = of
                    .iter()
                    .take(SHOWN)
                    .map(|d| format!("{} ({})", d.id.unwrap_or(0), d.reason))
                    .collect();
                let more = if of.len() > SHOWN {
                    format!("; and {} more", of.len() - SHOWN)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "  {file}: {} {}{}: {}{more}",
                    of.len(),
                    what.name(),
                    if of.len() == 1 { "" } else { "s" },
                    shown.join("; ")
                );
            }
        }
        out
    }

    /// A readable table of the headline numbers: model, temperature,
    /// S +- se, R +- se, personas kept and the band of S; then the deltas
    /// and excesses when there are any.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let width = self
            .overall
            .iter()
            .map(|r| r.model.len())
            .chain(self.curves.iter().map(|c| c.model.len() + 10))
            .max()
            .unwrap_or(5)
            .max(5);
        if !self.overall.is_empty() {
            let band_applies = self.s_band_applies();
            let _ = writeln!(
                out,
                "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}{}",
                "model",
                "T",
                "S ± se",
                "R ± se",
                "personas",
                if band_applies { "  S band" } else { "" }
            );
            for r in &self.overall {
                let m = &r.metrics;
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}{}",
                    r.model,
                    fmt_temperature(r.temperature),
                    format!("{:.3} ± {:.3}", m.s, m.s_se()),
                    format!("{:.2} ± {:.2}", m.r(), m.r_se()),
                    m.personas,
                    if band_applies {
                        format!("  {}", Band::of(m.s).name())
                    } else {
                        String::new()
                    }
                );
            }
        }
        if !self.curves.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}",
                "logprob model", "T", "S ± se", "R ± se", "personas"
            );
            for c in &self.curves {
                let p = &c.point;
                let _ = writeln!(
                    out,
                    "{:<width$}  {:>5}  {:>17}  {:>17}  {:>8}",
                    c.model,
                    fmt_float(p.temperature),
                    format!("{:.3} ± {:.3}", p.s, p.s_se),
                    format!("{:.2} ± {:.2}", p.r(), p.r_se()),
                    p.personas
                );
            }
        }
        let changed: Vec<&DeltaRow> = self
            .deltas
            .iter()
            .filter(|d| d.model != d.base_model)
            .collect();
        if !changed.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<16} {:<10} {:>16} {:>16} {:>18}",
                "family", "variant", "dS % ± se", "dR % ± se", "dsigma % ± se"
            );
            for d in changed {
                let _ = writeln!(
                    out,
                    "{:<16} {:<10} {:>16} {:>16} {:>18}",
                    d.family,
                    d.variant,
                    format!("{:+.1} ± {:.1}", d.ds_pct.0, d.ds_pct.1),
                    format!("{:+.1} ± {:.1}", d.dr_pct.0, d.dr_pct.1),
                    format!("{:+.1} ± {:.1}", d.dsigma_pct.0, d.dsigma_pct.1),
                );
            }
        }
        if !self.comparisons.is_empty() {
            let _ = writeln!(out);
            out.push_str(&comparisons_table(&self.comparisons));
        }
        out.push_str(&self.dropped_summary());
        if !self.excess.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<16} {:>18} {:>18} {:>20}",
                "family", "excess dS pp", "excess dR pp", "excess dsigma pp"
            );
            for e in &self.excess {
                let _ = writeln!(
                    out,
                    "{:<16} {:>18} {:>18} {:>20}",
                    e.family,
                    format!("{:+.1} ± {:.1}", e.ds_pp.0, e.ds_pp.1),
                    format!("{:+.1} ± {:.1}", e.dr_pp.0, e.dr_pp.1),
                    format!("{:+.1} ± {:.1}", e.dsigma_pp.0, e.dsigma_pp.1),
                );
            }
        }
        if !self.overall.is_empty() || !self.curves.is_empty() {
            let _ = writeln!(out);
            out.push_str(NAMES_NOTE);
            out.push('\n');
        }
        out
    }
}

/// How the console's short names map to the files' columns (the papers'
/// names; docs/DATA.md has every column).
pub const NAMES_NOTE: &str = "S = susceptibility, R = robustness, sigma = uncertainty (sigma-bar), se = standard error (the files' *_uncertainty columns; variant_deltas.csv says S, S_se, R, R_se, sigma_bar as published); every column is described in docs/DATA.md";
