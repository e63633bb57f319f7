//! `moralsweep sim`: the provider simulator.

#[derive(clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
}

pub fn sim(_args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("sim is not implemented yet")
}
