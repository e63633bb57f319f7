//! `moralsweep analyze DIR --out OUT`: the metric files from existing rating
//! files (the papers' formats). See `moralsweep_common::analyze`.

use std::path::PathBuf;

use anyhow::Context;
use moralsweep_common::analyze::{analyze_dir, AnalyzeOptions, ModelsMap, RepeatedSlots};

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
    #[arg(long, value_delimiter = ',', default_values_t = moralsweep_common::analyze::DEFAULT_LOGPROB_TEMPERATURES)]
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
        temperatures: args.temperatures,
        models,
        threads: args.threads,
        repeated_slots: if args.allow_repeated_slots {
            RepeatedSlots::Count
        } else {
            RepeatedSlots::Reject
        },
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
            .filter(|d| d.what == moralsweep_common::analyze::Dropped::File)
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
    let written = report
        .write(&args.out)
        .with_context(|| format!("writing the metric files to {}", args.out.display()))?;
    print!("{}", report.summary_table());
    println!();
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
