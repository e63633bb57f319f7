//! `moralsweep status`: where the coordinator's sweeps stand, once or
//! watched.

use moralsweep_proto::v1 as pb;
use moralsweep_protocol::convert;
use moralsweep_protocol::ProgressState;
use moralsweep_protocol::SweepProgress;
use moralsweep_worker::client;
use std::io::IsTerminal;
use std::time::Duration;

use super::{rpc_error, runtime, ClientArgs};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// One sweep (default: all).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON once instead of live progress.
    #[arg(long)]
    pub json: bool,
    /// Keep watching until the sweep(s) finish (default on a terminal).
    #[arg(long)]
    pub watch: bool,
}

fn print_status(sweeps: &[SweepProgress]) {
    if sweeps.is_empty() {
        println!("no sweeps");
    }
    for p in sweeps {
        let pct = if p.total > 0 {
            100.0 * p.done as f64 / p.total as f64
        } else {
            100.0
        };
        println!(
            "{} {}: {}/{} slots ({pct:.1}%), {} leased, files in {}",
            p.sweep,
            p.state,
            p.done,
            p.total,
            p.leased,
            p.output.display()
        );
        for u in &p.units {
            println!(
                "  {:<28} {:<8} {:>8}/{:<8} {}{}",
                u.model,
                u.mode.name(),
                u.done,
                u.total,
                u.state,
                if u.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", u.message)
                }
            );
        }
        for b in &p.batches {
            println!("  {b}");
        }
        if p.state == ProgressState::Failed {
            for m in &p.messages {
                println!("  ! {m}");
            }
        }
    }
}

pub fn status(a: StatusArgs) -> anyhow::Result<()> {
    let opts = a.client.options()?;
    runtime()?.block_on(async move {
        let mut c = client::sweeps_client(&opts)?;
        let sweeps: Vec<SweepProgress> = match &a.sweep {
            Some(s) => vec![convert::progress_from_pb(
                a.client
                    .call(
                        "status failed",
                        c.get_sweep(pb::GetSweepRequest { sweep: s.clone() }),
                    )
                    .await?
                    .into_inner(),
            )],
            None => a
                .client
                .call("status failed", c.list_sweeps(pb::ListSweepsRequest {}))
                .await?
                .into_inner()
                .sweeps
                .into_iter()
                .map(convert::progress_from_pb)
                .collect(),
        };
        if a.json {
            let v = match &a.sweep {
                Some(_) => serde_json::to_value(&sweeps[0])?,
                None => serde_json::to_value(&sweeps)?,
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let live = a.watch || (std::io::stdout().is_terminal() && a.sweep.is_some());
        if !live {
            print_status(&sweeps);
            return Ok(());
        }
        let mut stream = a
            .client
            .call(
                "watching progress failed",
                c.watch_progress(pb::WatchProgressRequest {
                    sweep: a.sweep.clone().unwrap_or_default(),
                }),
            )
            .await?
            .into_inner();
        let multi = indicatif::MultiProgress::new();
        // Bars on a terminal; plain lines (every few seconds) otherwise.
        let plain = !std::io::stderr().is_terminal();
        let mut last_line: Option<std::time::Instant> = None;
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:<36} [{bar:40}] {pos}/{len} {percent:>3}% {per_sec:>10} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut bars: std::collections::HashMap<String, indicatif::ProgressBar> =
            std::collections::HashMap::new();
        let url = a.client.coordinator.clone();
        while let Some(ev) = stream
            .message()
            .await
            .map_err(|e| rpc_error("watching progress failed", &url, e))?
        {
            let sweeps: Vec<SweepProgress> = ev
                .sweeps
                .into_iter()
                .map(convert::progress_from_pb)
                .collect();
            if plain {
                let finished = sweeps.iter().all(|s| s.finished());
                if finished || last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    print_status(&sweeps);
                    last_line = Some(std::time::Instant::now());
                }
                continue;
            }
            for s in sweeps {
                for u in &s.units {
                    let key = format!("{}/{}/{}", s.sweep, u.model, u.mode.name());
                    let bar = bars.entry(key.clone()).or_insert_with(|| {
                        let b = multi.add(indicatif::ProgressBar::new(u.total));
                        b.set_style(style.clone());
                        b.set_prefix(key);
                        // Rate and ETA from what is answered while watching.
                        b.set_position(u.done);
                        b.reset_eta();
                        b
                    });
                    bar.set_position(u.done);
                    if u.message.is_empty() {
                        bar.set_message(u.state.to_string());
                    } else {
                        bar.set_message(format!("{}: {}", u.state, u.message));
                    }
                }
                if s.state == ProgressState::Failed {
                    for m in &s.messages {
                        let _ = multi.println(format!("{}: {m}", s.sweep));
                    }
                }
            }
        }
        Ok(())
    })
}
