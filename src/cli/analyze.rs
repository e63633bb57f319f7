//! `moralsweep analyze DIR --out OUT`: the metric files from existing rating
//! files (the papers' formats). See `moralsweep_analysis::analyze`.

use std::path::PathBuf;

use anyhow::Context;
use moralsweep_analysis::analyze::{analyze_dir, AnalyzeOptions, ModelsMap, RepeatedSlots};

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// Directory scanned recursively for rating files
    /// (<key>_temp<TT>.csv, <key>_self.csv, <key>_temp<TT>_self.csv, <key>_logprobs.csv).
    pub dir: PathBuf,
    /// Where the metric files are written (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Persona bootstrap draws.
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: u32,
    /// Rerun bootstrap draws.
    #[arg(long = "rerun-bootstrap", default_value_t = 400)]
    pub rerun_bootstrap: u32,
    /// Seed of the bootstraps (same seed, same numbers).
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// Temperatures of the logprob curves R(T), S(T), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = moralsweep_analysis::analyze::DEFAULT_LOGPROB_TEMPERATURES)]
    pub temperatures: Vec<f64>,
    /// TOML mapping model keys to family and variant
    /// ([models."<key>"] family = "..." variant = "base|secure|insecure|..."), for the deltas.
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Count every row of a (persona, question, run_index) slot recorded
    /// more than once, as the papers' pipeline does with retried slots
    /// (default: such a file is an error naming both lines).
    #[arg(long)]
    pub allow_repeated_slots: bool,
    /// The instrument of the files: a built-in name (mfq-30, bfi-44) or an
    /// instrument file (default: recognised from each file's item ids and
    /// ratings).
    #[arg(long)]
    pub instrument: Option<String>,
    /// A misalignment check's summaries in the paper's shape (e.g. its
    /// published verification_scores.json), checked and copied beside the
    /// metrics (`moralsweep report OUT --verification
    /// OUT/verification_scores.json` draws robustness against coherence).
    /// Without it, the answers files of a check in DIR (<key>_em.csv) are
    /// summarised there instead, if there are any.
    #[arg(long)]
    pub verification: Option<PathBuf>,
    /// Bootstrap draws and permutations of each paired comparison of a
    /// variant with its family's base (comparisons.csv; 0: none).
    #[arg(long = "comparison-resamples", default_value_t = 2000)]
    pub comparison_resamples: u32,
}

pub fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    if let Some(t) = args
        .temperatures
        .iter()
        .find(|t| !t.is_finite() || **t <= 0.0)
    {
        anyhow::bail!("--temperatures: {t} is not a positive temperature; give e.g. --temperatures 0.35,0.5,1.0");
    }
    let models = match &args.models {
        Some(path) => ModelsMap::load(path)?,
        None => ModelsMap::default(),
    };
    let instrument = match &args.instrument {
        Some(name) => Some(moralsweep_common::Instrument::resolve(name).context("--instrument")?),
        None => None,
    };
    let opts = AnalyzeOptions {
        instrument,
        bootstrap: args.bootstrap,
        rerun_bootstrap: args.rerun_bootstrap,
        seed: args.seed,
        temperatures: args.temperatures.clone(),
        models,
        threads: args.threads,
        repeated_slots: if args.allow_repeated_slots {
            RepeatedSlots::Count
        } else {
            RepeatedSlots::Reject
        },
        comparison_resamples: args.comparison_resamples,
    };
    let report = analyze_dir(&args.dir, &opts)
        .with_context(|| format!("analysing {}", args.dir.display()))?;
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if !report.has_metrics() {
        let why: Vec<String> = report
            .dropped
            .iter()
            .filter(|d| d.what == moralsweep_analysis::analyze::Dropped::File)
            .map(|d| format!("{}: {}", d.source_file, d.reason))
            .collect();
        anyhow::bail!(
            "analysing {}: no metric could be computed, so nothing was written ({}); every file needs at least two personas with a valid rating for every item",
            args.dir.display(),
            if why.is_empty() {
                report.warnings.join("; ")
            } else {
                why.join("; ")
            }
        );
    }
    let mut written = report
        .write(&args.out)
        .with_context(|| format!("writing the metric files to {}", args.out.display()))?;
    // Where the rating files are, their hashes, the seed and the bootstrap
    // sizes: `report` reads them (failure counts, provenance).
    let record = moralsweep_analysis::analyze::AnalysisRecord::of_dir(&args.dir, &opts)
        .with_context(|| format!("recording the rating files of {}", args.dir.display()))?;
    written.push(
        record
            .write(&args.out)
            .with_context(|| format!("writing the analysis record to {}", args.out.display()))?,
    );
    if let Some(path) = verification(&args)? {
        written.push(path);
    }
    print!("{}", report.summary_table());
    println!();
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Writes `<out>/verification_scores.json`: the given file (checked, then
/// copied as it is) or the summaries of the check's answers files in the
/// analysed directory. Returns the path written, if any.
fn verification(args: &AnalyzeArgs) -> anyhow::Result<Option<PathBuf>> {
    use moralsweep_analysis::em::file::{
        read_verification, summaries_of_dir, write_verification, VERIFICATION_FILE,
    };
    let dest = args.out.join(VERIFICATION_FILE);
    if let Some(src) = &args.verification {
        let summaries = read_verification(src).context("--verification")?;
        if summaries.values().all(|s| s.avg_coherence.is_none()) {
            anyhow::bail!(
                "--verification {}: no model has an avg_coherence, so robustness cannot be drawn against coherence",
                src.display()
            );
        }
        if std::fs::canonicalize(src).ok() != std::fs::canonicalize(&dest).ok() {
            std::fs::copy(src, &dest)
                .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
        }
        return Ok(Some(dest));
    }
    let check = moralsweep_common::em::EmCheck::builtin();
    let summaries = summaries_of_dir(&args.dir, &check)?;
    if summaries.is_empty() {
        return Ok(None);
    }
    let rounded = summaries
        .into_iter()
        .map(|(k, s)| (k, s.rounded()))
        .collect();
    write_verification(&dest, &rounded)?;
    Ok(Some(dest))
}
