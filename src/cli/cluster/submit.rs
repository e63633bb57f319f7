//! `moralsweep submit SPEC`: hands a sweep to the coordinator.

use anyhow::Context;
use moralsweep_common::spec::KeyCheck;
use moralsweep_common::Sweep;
use moralsweep_proto::v1 as pb;
use moralsweep_worker::client;
use std::path::PathBuf;

use super::{runtime, ClientArgs};

#[derive(clap::Args)]
pub struct SubmitArgs {
    pub spec: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the requests, tokens, cost and time at the configured limits,
    /// and submit nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    // Validate locally first (keys are checked by the workers, which hold them).
    let sweep = Sweep::load(&a.spec, KeyCheck::Skip)?;
    if a.dry_run {
        println!("{}", moralsweep_worker::cost::dry_run_for(&sweep)?);
        return Ok(());
    }
    let text = moralsweep_userfs::read_to_string_bounded(&a.spec, moralsweep_userfs::SPEC_LIMIT)
        .with_context(|| format!("reading {}", a.spec.display()))?;
    let opts = a.client.options()?;
    runtime()?.block_on(async move {
        let mut c = client::sweeps_client(&opts)?;
        let r = a
            .client
            .call(
                "submitting the sweep failed",
                c.submit_sweep(pb::SubmitSweepRequest {
                    spec_toml: text,
                    spec_name: a.spec.display().to_string(),
                    personas: sweep.def.personas,
                    instrument_json: sweep.def.spec.instrument_definition.unwrap_or_default(),
                }),
            )
            .await?
            .into_inner();
        if r.created {
            println!("submitted sweep {} ({} slots)", r.sweep, r.total_slots);
        } else {
            println!(
                "sweep {} was already submitted ({} slots); nothing changed",
                r.sweep, r.total_slots
            );
        }
        Ok(())
    })
}
