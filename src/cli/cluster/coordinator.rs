//! `moralsweep coordinator`: the gRPC server over a Redis store.

use crate::cli::shutdown_signal;
use anyhow::Context;
use moralsweep_coordinator::engine::Engine;
use moralsweep_coordinator::engine::EngineConfig;
use moralsweep_coordinator::pacing::RateGroups;
use moralsweep_coordinator::store::redis::RedisStore;
use moralsweep_coordinator::store::Store;
use moralsweep_protocol::auth::load_token;
use moralsweep_protocol::auth::Auth;
use std::path::PathBuf;
use std::sync::Arc;

use super::{positive_secs, runtime, warn_short_token};

#[derive(clap::Args)]
pub struct CoordinatorArgs {
    #[arg(long, default_value = "0.0.0.0:7070")]
    pub listen: String,
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        env = "MORALSWEEP_REDIS"
    )]
    pub redis: String,
    /// Where the files of each sweep are written (`<DIR>/<sweep>/data`, `.../metrics`).
    #[arg(long, default_value = "moralsweep-results")]
    pub data_dir: PathBuf,
    /// A file holding the shared token (default: the MORALSWEEP_TOKEN variable).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Accept calls without a token (only for a coordinator no one else can reach).
    #[arg(long)]
    pub no_auth: bool,
    /// The server certificate chain (PEM); with --tls-key turns TLS on.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Seconds a lease lasts unless the worker extends it.
    #[arg(long, default_value_t = 60.0)]
    pub lease_ttl: f64,
    /// Seconds between sweeps of expired leases.
    #[arg(long, default_value_t = 5.0)]
    pub reclaim_every: f64,
    /// Most slots granted in one lease call.
    #[arg(long, default_value_t = 1024)]
    pub max_lease_slots: u32,
    /// Do not compute metric files (benchmarks).
    #[arg(long, hide = true)]
    pub no_metrics: bool,
    /// Serve /metrics, /healthz and /readyz (ready when Redis answers) and
    /// the live view of the sweeps (/live, behind the token) here, e.g.
    /// 0.0.0.0:9464.
    #[arg(long, env = "MORALSWEEP_OPS_LISTEN")]
    pub ops_listen: Option<String>,
}

/// Checks at start that `--data-dir` is a writable directory (creating it
/// if missing), so that a finished sweep's files can be written.
fn check_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => anyhow::bail!(
            "--data-dir {shown} is a file, not a directory; give a directory where the sweeps' files can be written (it is created if missing)"
        ),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("--data-dir {shown} does not exist and cannot be created")
            })?;
        }
        Err(e) => {
            return Err(e).with_context(|| format!("--data-dir {shown} cannot be examined"))
        }
    }
    let probe = dir.join(format!(".moralsweep-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"moralsweep checks that it can write here\n")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "--data-dir {shown} is not writable; give a directory this process may write to"
            )
        })?;
    Ok(())
}

pub fn coordinator(a: CoordinatorArgs) -> anyhow::Result<()> {
    let token =
        if a.no_auth {
            tracing::warn!("--no-auth: every call is accepted without a token");
            None
        } else {
            Some(load_token(a.token_file.as_deref()).context(
                "the coordinator needs the shared token that workers and clients present",
            )?)
        };
    if let Some(t) = &token {
        warn_short_token(t);
    }
    check_data_dir(&a.data_dir)?;
    let addr: std::net::SocketAddr = a.listen.parse().with_context(|| {
        format!(
            "--listen {:?} is not an address like 0.0.0.0:7070",
            a.listen
        )
    })?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(moralsweep_coordinator::tls::server_config(
            c,
            k,
            a.tls_client_ca.as_deref(),
        )?),
        _ => None,
    };
    let cfg = EngineConfig {
        lease_ttl: positive_secs("--lease-ttl", a.lease_ttl)?,
        reclaim_every: positive_secs("--reclaim-every", a.reclaim_every)?,
        max_lease_slots: a.max_lease_slots.max(1),
        data_root: a.data_dir.clone(),
        write_metrics: !a.no_metrics,
        // The process's registry (named by the telemetry set-up), served at /metrics.
        metrics: moralsweep_telemetry::metrics::global().clone(),
        one_process: false,
    };
    runtime()?.block_on(async move {
        let store = RedisStore::connect(&a.redis)
            .await
            .with_context(|| format!("connecting to Redis at {}", a.redis))?;
        let store: Arc<dyn Store> = Arc::new(store);
        let engine = Engine::new(store, Arc::new(RateGroups::new()), cfg);
        let n = engine
            .resume()
            .await
            .context("loading sweeps from the store")?;
        tracing::info!(sweeps = n, "sweeps loaded from the store");
        let _tasks = engine.start();
        // The ops port also serves the live view of the sweeps, behind the
        // same token as the gRPC API.
        let live = crate::cli::live::EngineLive::view(engine.clone(), None, token.clone());
        let _ops = moralsweep_coordinator::observe::start_with_live(
            engine.clone(),
            a.ops_listen.as_deref(),
            Some(live),
            token.clone(),
        )
        .await?;
        tracing::info!(%addr, tls = tls.is_some(), "coordinator listening");
        moralsweep_coordinator::service::serve(
            engine,
            addr,
            Auth::new(token),
            tls,
            shutdown_signal(),
        )
        .await?;
        tracing::info!("coordinator stopped");
        Ok(())
    })
}
