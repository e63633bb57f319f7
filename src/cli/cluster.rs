//! The cluster subcommands: coordinator, worker, submit, status, results.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CoordinatorArgs {
    #[arg(long, default_value = "0.0.0.0:7070")]
    pub listen: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub coordinator: String,
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    pub spec: PathBuf,
    #[arg(long)]
    pub coordinator: String,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    pub sweep: Option<String>,
    #[arg(long)]
    pub coordinator: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ResultsArgs {
    pub sweep: String,
    #[arg(long)]
    pub coordinator: String,
    #[arg(long)]
    pub out: PathBuf,
}

fn todo(what: &str) -> anyhow::Result<()> {
    anyhow::bail!("{what} is not implemented yet")
}

pub fn coordinator(_a: CoordinatorArgs) -> anyhow::Result<()> {
    todo("coordinator")
}
pub fn worker(_a: WorkerArgs) -> anyhow::Result<()> {
    todo("worker")
}
pub fn submit(_a: SubmitArgs) -> anyhow::Result<()> {
    todo("submit")
}
pub fn status(_a: StatusArgs) -> anyhow::Result<()> {
    todo("status")
}
pub fn results(_a: ResultsArgs) -> anyhow::Result<()> {
    todo("results")
}
