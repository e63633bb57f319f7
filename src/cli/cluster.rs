//! The cluster subcommands: `coordinator`, `worker`, `submit`, `status`,
//! `results`, `cancel` and `delete`. All of them authenticate with the
//! shared token (`MORALSWEEP_TOKEN` or `--token-file`) and speak TLS when
//! given certificates. The commands a person types (`submit` ... `delete`)
//! wait at most `--timeout` seconds for the coordinator to answer, saying
//! so after a couple of seconds.

mod cancel;
mod coordinator;
mod delete;
mod results;
mod status;
mod submit;
mod worker;

pub use cancel::cancel;
pub use coordinator::{coordinator, CoordinatorArgs};
pub use delete::delete;
pub use results::{results, ResultsArgs};
pub use status::{status, StatusArgs};
pub use submit::{submit, SubmitArgs};
pub use worker::{worker, WorkerArgs};

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use moralsweep_proto::v1 as pb;
use moralsweep_protocol::auth::load_token;
use moralsweep_worker::client::{self, ConnectOptions};
use moralsweep_worker::runtime;

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

fn positive_secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    if v > 0.0 && v.is_finite() {
        Ok(Duration::from_secs_f64(v))
    } else {
        anyhow::bail!("{name} must be a positive number of seconds, not {v}")
    }
}

fn warn_short_token(token: &str) {
    if let Some(w) = moralsweep_protocol::auth::short_token_warning(token) {
        tracing::warn!("{w}");
    }
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
