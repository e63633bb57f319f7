//! The cluster subcommands: `coordinator`, `worker`, `submit`, `status`,
//! `results`, `cancel` and `delete`. All of them authenticate with the
//! shared token (`MORALSWEEP_TOKEN` or `--token-file`) and speak TLS when
//! given certificates. The commands a person types (`submit` ... `delete`)
//! wait at most `--timeout` seconds for the coordinator to answer, saying
//! so after a couple of seconds.

use super::shutdown_signal;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use moralsweep_common::spec::KeyCheck;
use moralsweep_common::Sweep;
use moralsweep_coordinator::engine::{Engine, EngineConfig};
use moralsweep_coordinator::pacing::RateGroups;
use moralsweep_coordinator::store::redis::RedisStore;
use moralsweep_coordinator::store::Store;
use moralsweep_proto::v1 as pb;
use moralsweep_protocol::auth::{load_token, Auth};
use moralsweep_protocol::{convert, ProgressState, SweepProgress};
use moralsweep_worker::client::{self, ConnectOptions, GrpcLink, GrpcPermits};
use moralsweep_worker::runtime::{self, WorkerConfig, WorkerStats};

mod results;
pub use results::{results, ResultsArgs};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// How a client reaches the coordinator.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// The coordinator, e.g. http://127.0.0.1:7070 (https://... with TLS).
    #[arg(long, env = "MORALSWEEP_COORDINATOR")]
    pub coordinator: String,
    /// A file holding the shared token (default: the MORALSWEEP_TOKEN variable).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the coordinator's certificate;
    /// turns TLS on (the system's roots are used for https:// without it).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The name the coordinator's certificate carries (default: the host of --coordinator).
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// A client certificate (PEM) for mutual TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for the coordinator to connect and answer a call
    /// (a transfer of result files in progress is not cut).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

/// After this long without an answer, a client command says it is waiting.
const WAIT_FEEDBACK: Duration = Duration::from_secs(2);

impl ClientArgs {
    fn timeout(&self) -> anyhow::Result<Duration> {
        positive_secs("--timeout", self.timeout)
    }

    /// Runs one call to the coordinator: says on stderr that it is waiting
    /// after [`WAIT_FEEDBACK`], and gives up after `--timeout` with an error
    /// naming the coordinator's URL.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> anyhow::Result<T> {
        let limit = self.timeout()?;
        let url = &self.coordinator;
        tokio::pin!(fut);
        let feedback = tokio::time::sleep(WAIT_FEEDBACK.min(limit / 2));
        tokio::pin!(feedback);
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut said = false;
        loop {
            tokio::select! {
                r = &mut fut => return r.map_err(|s| rpc_error(what, url, s)),
                _ = &mut feedback, if !said => {
                    said = true;
                    eprintln!(
                        "waiting for the coordinator at {url} (giving up after {} s; --timeout)...",
                        limit.as_secs_f64()
                    );
                }
                _ = &mut deadline => anyhow::bail!(
                    "{what}: no answer from the coordinator at {url} within {} s (--timeout); \
                     check that it runs and that this is its gRPC address",
                    limit.as_secs_f64()
                ),
            }
        }
    }

    fn options(&self) -> anyhow::Result<ConnectOptions> {
        let token = load_token(self.token_file.as_deref())?;
        let wants_tls = self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.coordinator.starts_with("https://");
        let tls = if wants_tls {
            let identity = match (&self.tls_cert, &self.tls_key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                _ => None,
            };
            Some(moralsweep_coordinator::tls::client_config(
                self.tls_ca.as_deref(),
                self.tls_domain.as_deref(),
                identity,
            )?)
        } else {
            None
        };
        let mut url = self.coordinator.clone();
        if tls.is_some() && url.starts_with("http://") {
            url = url.replacen("http://", "https://", 1);
        }
        Ok(ConnectOptions {
            url,
            token: Some(token),
            tls,
            timeout: None,
        })
    }
}

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

fn positive_secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    if v > 0.0 && v.is_finite() {
        Ok(Duration::from_secs_f64(v))
    } else {
        anyhow::bail!("{name} must be a positive number of seconds, not {v}")
    }
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

fn warn_short_token(token: &str) {
    if let Some(w) = moralsweep_protocol::auth::short_token_warning(token) {
        tracing::warn!("{w}");
    }
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

fn rpc_error(what: &str, url: &str, s: tonic::Status) -> anyhow::Error {
    let hint = match s.code() {
        tonic::Code::Unavailable => {
            format!(" (is the coordinator at {url} running and reachable?)")
        }
        _ => String::new(),
    };
    anyhow::anyhow!("{what}: {}{hint}", s.message())
}

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

/// A command about one sweep on a coordinator (`cancel`, `delete`).
#[derive(clap::Args)]
pub struct SweepArgs {
    pub sweep: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub type CancelArgs = SweepArgs;
pub type DeleteArgs = SweepArgs;

impl SweepArgs {
    /// Makes one call of the Sweeps service about the sweep (`what` names
    /// it in the error) and returns its answer.
    fn call_sweeps<R, Fut>(
        &self,
        what: &str,
        call: impl FnOnce(pb::sweeps_client::SweepsClient<client::Authed>, String) -> Fut,
    ) -> anyhow::Result<R>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let opts = self.client.options()?;
        runtime()?.block_on(async move {
            let c = client::sweeps_client(&opts)?;
            let r = self.client.call(what, call(c, self.sweep.clone())).await?;
            Ok(r.into_inner())
        })
    }
}

/// `moralsweep cancel SWEEP`: stops handing out the sweep's slots; what it
/// recorded stays, and `results` fetches it.
pub fn cancel(a: CancelArgs) -> anyhow::Result<()> {
    let r = a.call_sweeps("cancelling the sweep failed", |mut c, sweep| async move {
        c.cancel_sweep(pb::CancelSweepRequest { sweep }).await
    })?;
    let st = r.status.unwrap_or_default();
    let again = st
        .messages
        .iter()
        .any(|m| m.contains(moralsweep_protocol::ALREADY_CANCELLED));
    match st.state.as_str() {
        "cancelled" if again => println!(
            "sweep {} was already cancelled ({} of {} slots recorded); nothing changed. `moralsweep results {} --out DIR` fetches them, \
             `moralsweep delete {}` removes the sweep",
            a.sweep, st.done, st.total, a.sweep, a.sweep
        ),
        "cancelled" => println!(
            "sweep {} cancelled with {} of {} slots recorded; `moralsweep results {} --out DIR` fetches them, \
             `moralsweep delete {}` removes the sweep",
            a.sweep, st.done, st.total, a.sweep, a.sweep
        ),
        other => println!(
            "sweep {} is already {other} ({} of {} slots); nothing changed",
            a.sweep, st.done, st.total
        ),
    }
    Ok(())
}

/// `moralsweep delete SWEEP`: removes a done or cancelled sweep from the
/// coordinator (its store entries and the files it wrote).
pub fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let r = a.call_sweeps("deleting the sweep failed", |mut c, sweep| async move {
        c.delete_sweep(pb::DeleteSweepRequest { sweep }).await
    })?;
    println!(
        "sweep {} deleted ({} files removed from the coordinator's data directory)",
        a.sweep, r.files_removed
    );
    Ok(())
}
