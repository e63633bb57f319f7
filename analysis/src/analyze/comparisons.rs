//! Paired comparisons (`comparisons.csv`): every variant against its
//! family's base at the same temperature, and any two rating files
//! (`moralsweep compare`), with the p-values adjusted over the analysis.

use super::*;
use crate::formats::{fmt_float, fmt_temperature, fmt_temperature_setting, fmt_temperature_value};
use crate::metrics::adjust::{benjamini_hochberg, holm};
use crate::metrics::{paired_compare, CellTable, PairedEstimate, PairedOptions};
use moralsweep_common::instrument::Instrument;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::sync::Arc;

/// The file the comparisons are written to.
pub const COMPARISONS_FILE: &str = "comparisons.csv";

/// The adjusted p-value below which a change is said to hold.
pub const HOLDS_ALPHA: f64 = 0.05;

/// Column names of `comparisons.csv`: the columns, then ours.
pub const COMPARISON_COLUMNS: [&str; 22] = [
    "variant",
    "base",
    "metric",
    "group",
    "estimate",
    "relative_change",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "p_bh",
    "personas_paired",
    "resamples",
    "seed",
    "relative_ci_low",
    "relative_ci_high",
    "base_value",
    "variant_value",
    "items_paired",
    "family",
    "temperature",
    "temperature_setting",
];

/// One row of `comparisons.csv`: one metric of one scope, `variant`
/// (B) against `base` (A).
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRow {
    /// Model keys (or file names for `compare`).
    pub variant: String,
    pub base: String,
    pub family: String,
    pub temperature: Option<f64>,
    pub paired: PairedEstimate,
    /// Adjusted over every row of the analysis.
    pub p_holm: f64,
    pub p_bh: f64,
    pub personas_paired: usize,
    pub items_paired: usize,
    pub resamples: u32,
    pub seed: u64,
}

impl ComparisonRow {
    /// Whether the change holds after Holm's adjustment at [`HOLDS_ALPHA`].
    pub fn holds(&self) -> bool {
        self.p_holm < HOLDS_ALPHA
    }

    /// `overall` or the group's name.
    pub fn group_name(&self) -> &str {
        self.paired.group.as_deref().unwrap_or("overall")
    }

    fn fields(&self) -> Vec<String> {
        let p = &self.paired;
        vec![
            self.variant.clone(),
            self.base.clone(),
            p.metric.name().to_string(),
            self.group_name().to_string(),
            fmt_float(p.estimate),
            fmt_float(p.relative_change),
            fmt_float(p.ci.0),
            fmt_float(p.ci.1),
            fmt_float(p.p_value),
            fmt_float(self.p_holm),
            fmt_float(self.p_bh),
            self.personas_paired.to_string(),
            self.resamples.to_string(),
            self.seed.to_string(),
            fmt_float(p.relative_ci.0),
            fmt_float(p.relative_ci.1),
            fmt_float(p.base),
            fmt_float(p.variant),
            self.items_paired.to_string(),
            self.family.clone(),
            self.temperature
                .map(fmt_temperature_value)
                .unwrap_or_default(),
            self.temperature
                .map(fmt_temperature_setting)
                .unwrap_or_default(),
        ]
    }
}

/// One model's ratings as a comparison needs them.
#[derive(Debug, Clone)]
pub struct ComparedTable {
    pub model: String,
    pub temperature: f64,
    pub table: Arc<CellTable>,
}

/// Sets `p_holm` and `p_bh` of `rows` over all of them.
pub fn adjust(rows: &mut [ComparisonRow]) {
    let p: Vec<f64> = rows.iter().map(|r| r.paired.p_value).collect();
    for (r, (h, b)) in rows
        .iter_mut()
        .zip(holm(&p).into_iter().zip(benjamini_hochberg(&p)))
    {
        r.p_holm = h;
        r.p_bh = b;
    }
}

/// What one comparison needs: A, B, and their shared personas and items.
pub struct PairJob<'a> {
    pub base: &'a MetricRow,
    pub variant: &'a MetricRow,
    pub base_table: &'a CellTable,
    pub variant_table: &'a CellTable,
}

/// The comparisons of every variant with its family's base at the same
/// temperature (the base the deltas use), adjusted together.
pub(super) fn paired_variants(
    report: &mut Report,
    tables: &[ComparedTable],
    opts: &AnalyzeOptions,
) {
    if opts.comparison_resamples == 0 || tables.is_empty() {
        return;
    }
    let table_of = |model: &str, t: f64| {
        tables
            .iter()
            .find(|x| x.model == model && x.temperature.to_bits() == t.to_bits())
            .map(|x| x.table.as_ref())
    };
    let row_of = |model: &str, t: f64| {
        report
            .overall
            .iter()
            .find(|r| r.model == model && r.temperature.to_bits() == t.to_bits())
    };
    let mut jobs = Vec::new();
    for d in &report.deltas {
        if d.model == d.base_model {
            continue;
        }
        let (Some(bt), Some(vt), Some(br), Some(vr)) = (
            table_of(&d.base_model, d.temperature),
            table_of(&d.model, d.temperature),
            row_of(&d.base_model, d.temperature),
            row_of(&d.model, d.temperature),
        ) else {
            continue;
        };
        jobs.push(PairJob {
            base: br,
            variant: vr,
            base_table: bt,
            variant_table: vt,
        });
    }
    let instrument = report.instrument.clone().unwrap_or_else(Instrument::mfq30);
    let paired = PairedOptions {
        resamples: opts.comparison_resamples,
        seed: opts.seed,
    };
    let (mut rows, warnings) = run_jobs(&jobs, &instrument, &paired, opts.threads);
    adjust(&mut rows);
    report.warnings.extend(warnings);
    report.comparisons = rows;
}

/// Runs the comparisons on up to `threads` threads (0: one per core); the
/// rows come back in the jobs' order. A pair without two shared personas
/// gives a warning instead of rows.
pub fn run_jobs(
    jobs: &[PairJob],
    instrument: &Instrument,
    opts: &PairedOptions,
    threads: usize,
) -> (Vec<ComparisonRow>, Vec<String>) {
    let one = |job: &PairJob| -> Result<Vec<ComparisonRow>, String> {
        let items: Vec<u8> = job
            .base
            .retained_items
            .iter()
            .copied()
            .filter(|q| job.variant.retained_items.contains(q))
            .collect();
        let personas: Vec<u32> = job
            .base
            .retained_personas
            .iter()
            .copied()
            .filter(|p| job.variant.retained_personas.binary_search(p).is_ok())
            .collect();
        let label = format!(
            "{}|{}|{}",
            job.base.model,
            job.variant.model,
            fmt_float(job.base.temperature)
        );
        let result = paired_compare(
            instrument,
            job.base_table,
            job.variant_table,
            &personas,
            &items,
            opts,
            &label,
        )
        .map_err(|e| {
            format!(
                "{} against {} at T={}: no paired comparison: {e}",
                job.variant.model,
                job.base.model,
                fmt_temperature(job.base.temperature)
            )
        })?;
        Ok(result
            .rows
            .into_iter()
            .map(|paired| ComparisonRow {
                variant: job.variant.model.clone(),
                base: job.base.model.clone(),
                family: job.variant.family.clone(),
                temperature: Some(job.base.temperature),
                paired,
                p_holm: f64::NAN,
                p_bh: f64::NAN,
                personas_paired: result.personas,
                items_paired: result.items,
                resamples: opts.resamples,
                seed: opts.seed,
            })
            .collect())
    };
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    }
    .clamp(1, jobs.len().max(1));
    let mut results: Vec<Option<Result<Vec<ComparisonRow>, String>>> =
        (0..jobs.len()).map(|_| None).collect();
    if threads == 1 {
        for (slot, job) in results.iter_mut().zip(jobs) {
            *slot = Some(one(job));
        }
    } else {
        let chunk = jobs.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (slots, js) in results.chunks_mut(chunk).zip(jobs.chunks(chunk)) {
                s.spawn(move || {
                    for (slot, job) in slots.iter_mut().zip(js) {
                        *slot = Some(one(job));
                    }
                });
            }
        });
    }
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    for r in results.into_iter().flatten() {
        match r {
            Ok(v) => rows.extend(v),
            Err(w) => {
                tracing::warn!("{w}");
                warnings.push(w);
            }
        }
    }
    (rows, warnings)
}

/// Writes `comparisons.csv` (atomically).
pub fn write_comparisons(
    out: &moralsweep_userfs::OutDir,
    rows: &[ComparisonRow],
) -> Result<(), AnalyzeError> {
    let rows: Vec<Vec<String>> = rows.iter().map(ComparisonRow::fields).collect();
    write::write_csv(out, COMPARISONS_FILE, &COMPARISON_COLUMNS, &rows)
}

/// The comparisons as a readable table: one line per pair and metric
/// (all items), with the change, its interval, the Holm-adjusted p-value and
/// a mark where the change holds after adjustment; then how many group
/// changes hold.
pub fn comparisons_table(rows: &[ComparisonRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let width = rows
        .iter()
        .map(|r| r.variant.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let bwidth = rows.iter().map(|r| r.base.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:<bwidth$}  {:<9}  {:>9}  {:>27}  {:>9}  holds",
        "variant", "base", "metric", "change", "95% interval (relative)", "p (Holm)"
    );
    let mut groups: BTreeMap<(&str, &str, &str), (usize, usize)> = BTreeMap::new();
    for r in rows {
        let p = &r.paired;
        if p.group.is_some() {
            let e = groups
                .entry((r.variant.as_str(), r.base.as_str(), p.metric.name()))
                .or_default();
            e.0 += 1;
            e.1 += r.holds() as usize;
            continue;
        }
        let _ = writeln!(
            out,
            "{:<width$}  {:<bwidth$}  {:<9}  {:>9}  {:>27}  {:>9}  {}",
            r.variant,
            r.base,
            p.metric.name(),
            format!("{:+.1}%", 100.0 * p.relative_change),
            format!(
                "[{:+.1}%, {:+.1}%]",
                100.0 * p.relative_ci.0,
                100.0 * p.relative_ci.1
            ),
            fmt_p(r.p_holm),
            if r.holds() { "*" } else { "" }
        );
    }
    if !groups.is_empty() {
        let parts: Vec<String> = groups
            .iter()
            .map(|((v, b, m), (n, h))| format!("{v} vs {b} {m}: {h}/{n}"))
            .collect();
        let _ = writeln!(out, "per group, changes that hold: {}", parts.join("; "));
    }
    let _ = writeln!(
        out,
        "* holds after Holm's adjustment over all {} comparisons (p_holm < {HOLDS_ALPHA}); every row in {COMPARISONS_FILE}",
        rows.len()
    );
    out
}

fn fmt_p(p: f64) -> String {
    if p.is_nan() {
        "-".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}
