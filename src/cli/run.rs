//! `moralsweep run SPEC.toml`: the whole sweep in one process.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The sweep spec.
    pub spec: PathBuf,
}

pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("run is not implemented yet")
}
