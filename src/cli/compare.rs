//! `moralsweep compare A.csv B.csv [--out DIR]`: the paired comparison of
//! two sampling files, B against A (see
//! `moralsweep_analysis::analyze::compare_files` and
//! `docs/METHOD-comparisons.md`).

use std::path::PathBuf;

use anyhow::Context;
use moralsweep_analysis::analyze::{
    compare_files, comparisons_table, write_comparisons, AnalyzeOptions, RepeatedSlots,
    COMPARISONS_FILE,
};
use moralsweep_analysis::metrics::PairedOptions;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The base: a persona sampling file (persona_id,question_id,run_index,rating,...).
    pub a: PathBuf,
    /// The model compared with it, in the same format.
    pub b: PathBuf,
    /// Where comparisons.csv is written (created if needed); without it
    /// only the summary is printed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap draws, and as many permutations.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub resamples: u32,
    /// Seed of the draws (same seed, same numbers).
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// The instrument of the files: a built-in name (mfq-30, bfi-44) or an
    /// instrument file (default: recognised from the files).
    #[arg(long)]
    pub instrument: Option<String>,
    /// Count every row of a slot recorded more than once (default: an error).
    #[arg(long)]
    pub allow_repeated_slots: bool,
}

pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let instrument = match &args.instrument {
        Some(name) => Some(moralsweep_common::Instrument::resolve(name).context("--instrument")?),
        None => None,
    };
    let opts = AnalyzeOptions {
        instrument,
        repeated_slots: if args.allow_repeated_slots {
            RepeatedSlots::Count
        } else {
            RepeatedSlots::Reject
        },
        ..AnalyzeOptions::default()
    };
    let paired = PairedOptions {
        resamples: args.resamples,
        seed: args.seed,
    };
    let cmp = compare_files(&args.a, &args.b, &opts, &paired).with_context(|| {
        format!(
            "comparing {} against {}",
            args.b.display(),
            args.a.display()
        )
    })?;
    let first = &cmp.rows[0];
    println!(
        "{} against {}: {} personas paired on {} items{}",
        first.variant,
        first.base,
        first.personas_paired,
        first.items_paired,
        if cmp.unpaired > 0 {
            format!(" ({} kept by one file only are left out)", cmp.unpaired)
        } else {
            String::new()
        }
    );
    print!("{}", comparisons_table(&cmp.rows));
    if let Some(out) = &args.out {
        let dir = moralsweep_userfs::OutDir::create(out)
            .with_context(|| format!("writing into {}", out.display()))?;
        write_comparisons(&dir, &cmp.rows)?;
        let path = out.join(COMPARISONS_FILE);
        println!("wrote {}", path.display());
    }
    Ok(())
}
