//! `moralsweep worker`: asks the coordinator for work and answers it.

use crate::cli::shutdown_signal;
use moralsweep_worker::client::GrpcLink;
use moralsweep_worker::client::GrpcPermits;
use moralsweep_worker::runtime::WorkerConfig;
use moralsweep_worker::runtime::WorkerStats;
use std::sync::Arc;

use super::{positive_secs, runtime, warn_short_token, ClientArgs};

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A name for logs and status (default: host and process id).
    #[arg(long)]
    pub name: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Most slots asked for per lease call.
    #[arg(long, default_value_t = 256)]
    pub lease_batch: u32,
    /// Results per report call.
    #[arg(long, default_value_t = 256)]
    pub report_batch: usize,
    /// Seconds between lease extensions (keep it well under the coordinator's --lease-ttl).
    #[arg(long, default_value_t = 15.0)]
    pub extend_every: f64,
    /// Seconds running requests may take to finish after SIGTERM.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// Batch mode: seconds a unit's leased cells wait for more before their
    /// provider batch is submitted.
    #[arg(long, default_value_t = 2.0)]
    pub batch_linger: f64,
    /// Batch mode: the most seconds between two polls of a provider batch.
    #[arg(long, default_value_t = 30.0)]
    pub batch_poll: f64,
    /// Batch mode: the most requests in one provider batch (default: the
    /// provider's limit).
    #[arg(long)]
    pub batch_max_requests: Option<usize>,
    /// Serve /metrics, /healthz and /readyz (not ready once draining) here,
    /// e.g. 0.0.0.0:9464.
    #[arg(long, env = "MORALSWEEP_OPS_LISTEN")]
    pub ops_listen: Option<String>,
}

pub fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    let opts = a.client.options()?;
    if let Some(t) = &opts.token {
        warn_short_token(t);
    }
    let cfg = WorkerConfig {
        name: a.name.clone().unwrap_or_else(runtime::default_worker_name),
        concurrency: a.concurrency.max(1),
        lease_batch: a.lease_batch.max(1),
        report_batch: a.report_batch.max(1),
        extend_every: positive_secs("--extend-every", a.extend_every)?,
        drain_timeout: positive_secs("--drain-timeout", a.drain_timeout)?,
        batch_linger: positive_secs("--batch-linger", a.batch_linger)?,
        batch_poll: positive_secs("--batch-poll", a.batch_poll)?,
        batch_max_requests: a.batch_max_requests,
        metrics: moralsweep_telemetry::metrics::global().clone(),
        ..WorkerConfig::default()
    };
    let ops_listen = a.ops_listen.clone();
    runtime()?.block_on(async move {
        let link = Arc::new(GrpcLink::new(&opts)?.with_usage(cfg.accounting.clone()));
        let permits = Arc::new(GrpcPermits::new(&opts)?);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let _ops = moralsweep_worker::observe::start(
            ops_listen.as_deref(),
            cfg.metrics.clone(),
            opts.token.clone(),
            stop_rx.clone(),
        )
        .await?;
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested");
            let _ = stop_tx.send(true);
        });
        tracing::info!(worker = %cfg.name, coordinator = %opts.url, "worker started");
        let stats = Arc::new(WorkerStats::default());
        let name = cfg.name.clone();
        runtime::run(link, permits, cfg, stop_rx, stats.clone())
            .await
            .map_err(|e| anyhow::anyhow!("worker {name}: {e}"))?;
        tracing::info!(
            worker = %name,
            answered = stats.answered.load(std::sync::atomic::Ordering::Relaxed),
            "worker stopped"
        );
        Ok(())
    })
}
