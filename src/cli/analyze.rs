//! `moralsweep analyze DIR --out OUT`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// Directory scanned recursively for rating files.
    pub dir: PathBuf,
    /// Where the metric files are written.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn analyze(_args: AnalyzeArgs) -> anyhow::Result<()> {
    anyhow::bail!("analyze is not implemented yet")
}
