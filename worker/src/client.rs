//! The gRPC client of the coordinator: the worker's [`Link`] and
//! [`Permits`] over the `Workers` service, and the connection used by the
//! `submit`, `status` and `results` commands for the `Sweeps` service.
//! Every call carries the bearer token; TLS is used when configured.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use moralsweep_proto::v1 as pb;
use moralsweep_protocol::auth::Bearer;
use moralsweep_protocol::{
    convert, BatchRecord, HeldBatch, LeaseOutcome, LostBatch, ReportOutcome, SlotReport, UnitKey,
    MAX_MESSAGE,
};
use pb::sweeps_client::SweepsClient;
use pb::workers_client::WorkersClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::cost::Accounting;
use crate::permits::Permits;
use crate::runtime::batch_link::BatchLink;
use crate::runtime::{Link, LinkError, SweepDef};

/// How to reach the coordinator.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    pub token: Option<String>,
    pub tls: Option<ClientTlsConfig>,
    /// Per-call timeout.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the token.
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "coordinator address {url:?} is not valid: {message} (expected e.g. http://127.0.0.1:7070)"
    )]
    BadUrl { url: String, message: String },
    #[error("TLS setup for {url}: {message}")]
    Tls { url: String, message: String },
    #[error("the token cannot be sent in a header: {0}")]
    Token(String),
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// A channel to the coordinator with the token attached (connects lazily and
/// reconnects by itself, so a restarting coordinator is only a pause).
pub fn channel(opts: &ConnectOptions) -> Result<(Channel, Bearer), ConnectError> {
    let mut url = opts.url.clone();
    if !url.contains("://") {
        url = format!(
            "{}://{url}",
            if opts.tls.is_some() { "https" } else { "http" }
        );
    }
    let mut ep = Endpoint::from_shared(url.clone()).map_err(|e| ConnectError::BadUrl {
        url: opts.url.clone(),
        message: e.to_string(),
    })?;
    ep = ep
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let Some(t) = opts.timeout {
        ep = ep.timeout(t);
    }
    if let Some(tls) = &opts.tls {
        ep = ep.tls_config(tls.clone()).map_err(|e| ConnectError::Tls {
            url: url.clone(),
            message: e.to_string(),
        })?;
    }
    let bearer =
        Bearer::new(opts.token.as_deref()).map_err(|e| ConnectError::Token(e.to_string()))?;
    Ok((ep.connect_lazy(), bearer))
}

pub fn workers_client(opts: &ConnectOptions) -> Result<WorkersClient<Authed>, ConnectError> {
    let (ch, bearer) = channel(opts)?;
    Ok(WorkersClient::with_interceptor(ch, bearer)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

pub fn sweeps_client(opts: &ConnectOptions) -> Result<SweepsClient<Authed>, ConnectError> {
    let (ch, bearer) = channel(opts)?;
    Ok(SweepsClient::with_interceptor(ch, bearer)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// The worker's link over gRPC.
#[derive(Clone)]
pub struct GrpcLink {
    client: WorkersClient<Authed>,
    /// This process's usage, sent with every report (see
    /// [`GrpcLink::with_usage`]), and the start nonce that names the
    /// process.
    usage: Option<(Arc<Accounting>, Arc<str>)>,
}

impl GrpcLink {
    pub fn new(opts: &ConnectOptions) -> Result<Self, ConnectError> {
        Ok(GrpcLink {
            client: workers_client(opts)?,
            usage: None,
        })
    }

    /// Sends `accounting`'s changed totals with every report, so the
    /// coordinator knows what the sweep's calls cost (`results` writes it
    /// into the provenance). A report's usage is recorded before its slots:
    /// the report with a sweep's last result carries every call before it.
    pub fn with_usage(mut self, accounting: Arc<Accounting>) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.usage = Some((accounting, format!("{:x}.{t:x}", std::process::id()).into()));
        self
    }
}

#[async_trait]
impl BatchLink for GrpcLink {
    async fn open_batch(
        &self,
        worker: &str,
        lease_ids: Vec<String>,
        unit: UnitKey,
        slots: Vec<u32>,
    ) -> Result<BatchRecord, LinkError> {
        let b = self
            .client
            .clone()
            .open_batch(pb::OpenBatchRequest {
                worker: worker.to_string(),
                lease_ids,
                sweep: unit.sweep,
                model: unit.model,
                mode: unit.mode.name().to_string(),
                slots,
            })
            .await
            .map_err(LinkError::from)?
            .into_inner();
        convert::batch_from_pb(b).map_err(|e| {
            LinkError::Fatal(format!(
                "the coordinator sent a batch this worker cannot read: {e}"
            ))
        })
    }

    async fn batch_submitted(
        &self,
        sweep: &str,
        id: &str,
        provider_id: &str,
    ) -> Result<bool, LinkError> {
        Ok(self
            .client
            .clone()
            .batch_submitted(pb::BatchSubmittedRequest {
                sweep: sweep.to_string(),
                id: id.to_string(),
                provider_id: provider_id.to_string(),
            })
            .await
            .map_err(LinkError::from)?
            .into_inner()
            .open)
    }

    async fn extend_batches(
        &self,
        worker: &str,
        batches: Vec<HeldBatch>,
    ) -> Result<Vec<LostBatch>, LinkError> {
        let r = self
            .client
            .clone()
            .extend_batches(pb::ExtendBatchesRequest {
                worker: worker.to_string(),
                batches: batches
                    .into_iter()
                    .map(|b| pb::BatchRef {
                        sweep: b.sweep,
                        id: b.id,
                        progress: b.seen.unwrap_or_default(),
                    })
                    .collect(),
            })
            .await
            .map_err(LinkError::from)?
            .into_inner();
        let lost = |refs: Vec<pb::BatchRef>, stopped: bool| {
            refs.into_iter().map(move |b| LostBatch {
                sweep: b.sweep,
                id: b.id,
                stopped,
            })
        };
        Ok(lost(r.lost, false).chain(lost(r.stopped, true)).collect())
    }

    async fn claim_batches(&self, worker: &str, max: u32) -> Result<Vec<BatchRecord>, LinkError> {
        let r = self
            .client
            .clone()
            .claim_batches(pb::ClaimBatchesRequest {
                worker: worker.to_string(),
                max,
            })
            .await
            .map_err(LinkError::from)?
            .into_inner();
        r.batches
            .into_iter()
            .map(|b| {
                convert::batch_from_pb(b).map_err(|e| {
                    LinkError::Fatal(format!(
                        "the coordinator sent a batch this worker cannot read: {e}"
                    ))
                })
            })
            .collect()
    }

    async fn close_batch(&self, sweep: &str, id: &str) -> Result<u32, LinkError> {
        Ok(self
            .client
            .clone()
            .close_batch(pb::CloseBatchRequest {
                sweep: sweep.to_string(),
                id: id.to_string(),
            })
            .await
            .map_err(LinkError::from)?
            .into_inner()
            .requeued)
    }
}

#[async_trait]
impl Link for GrpcLink {
    async fn lease(&self, worker: &str, max: u32) -> Result<LeaseOutcome, LinkError> {
        let reply = self
            .client
            .clone()
            .lease(pb::LeaseRequest {
                worker: worker.to_string(),
                max_slots: max,
            })
            .await
            .map_err(LinkError::from)?;
        let traceparent = moralsweep_telemetry::propagation::from_metadata(reply.metadata());
        let r = reply.into_inner();
        let mut grants = Vec::with_capacity(r.leases.len());
        for l in r.leases {
            grants.push(convert::grant_from_pb(l).map_err(|e| LinkError::Fatal(e.to_string()))?);
        }
        Ok(LeaseOutcome {
            grants,
            retry_after: Duration::from_millis(r.retry_after_ms as u64),
            traceparent,
        })
    }

    async fn report(
        &self,
        worker: &str,
        results: Vec<SlotReport>,
        release: Vec<String>,
        traceparent: Option<String>,
    ) -> Result<ReportOutcome, LinkError> {
        let usage = self
            .usage
            .as_ref()
            .map(|(a, _)| a.unreported())
            .unwrap_or_default();
        let mut request = tonic::Request::new(pb::ReportRequest {
            worker: worker.to_string(),
            results: results.iter().map(convert::report_to_pb).collect(),
            release,
            usage: usage
                .iter()
                .map(moralsweep_protocol::usage::to_pb)
                .collect(),
            usage_source: self
                .usage
                .as_ref()
                .map(|(_, nonce)| format!("{worker}@{nonce}"))
                .unwrap_or_default(),
        });
        if let Some(v) = traceparent.and_then(|tp| tp.parse().ok()) {
            request
                .metadata_mut()
                .insert(moralsweep_telemetry::propagation::TRACEPARENT, v);
        }
        let r = self
            .client
            .clone()
            .report(request)
            .await
            .map_err(LinkError::from)?
            .into_inner();
        if let Some((a, _)) = &self.usage {
            a.reported(&usage);
        }
        Ok(ReportOutcome {
            recorded: r.recorded,
            duplicates: r.duplicates,
        })
    }

    async fn extend(&self, lease_ids: Vec<String>) -> Result<Vec<String>, LinkError> {
        Ok(self
            .client
            .clone()
            .extend_leases(pb::ExtendLeasesRequest { lease_ids })
            .await
            .map_err(LinkError::from)?
            .into_inner()
            .lost)
    }

    async fn definition(&self, sweep: &str) -> Result<SweepDef, LinkError> {
        let d = self
            .client
            .clone()
            .get_sweep_definition(pb::GetSweepDefinitionRequest {
                sweep: sweep.to_string(),
            })
            .await
            .map_err(LinkError::from)?
            .into_inner();
        let spec = serde_json::from_str(&d.spec_json).map_err(|e| {
            LinkError::Fatal(format!(
                "the coordinator sent a spec this worker cannot read ({e}); are both the same version?"
            ))
        })?;
        Ok(SweepDef {
            spec,
            personas: d.personas,
        })
    }
}

/// Rate-group permits from the coordinator (for requests beyond the one
/// prepaid with each leased slot). Token usage corrections are summed and
/// sent once a second rather than per request.
pub struct GrpcPermits {
    client: WorkersClient<Authed>,
    usage: Arc<Mutex<HashMap<String, (u64, u64)>>>,
}

impl GrpcPermits {
    /// Must be called inside a tokio runtime (starts the usage flusher).
    pub fn new(opts: &ConnectOptions) -> Result<Self, ConnectError> {
        let client = workers_client(opts)?;
        let usage: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
        let (c, u) = (client.clone(), Arc::downgrade(&usage));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(u) = u.upgrade() else { return };
                let pending: Vec<(String, (u64, u64))> = u
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain()
                    .collect();
                for (group, (est, act)) in pending {
                    let _ = c
                        .clone()
                        .usage(pb::UsageRequest {
                            rate_group: group,
                            estimated_tokens: est,
                            actual_tokens: act,
                        })
                        .await;
                }
            }
        });
        Ok(GrpcPermits { client, usage })
    }
}

#[async_trait]
impl Permits for GrpcPermits {
    async fn acquire(&self, group: &str, n: u32, tokens_each: u64) {
        let mut left = n;
        let mut backoff = Duration::from_millis(100);
        while left > 0 {
            match self
                .client
                .clone()
                .acquire_permits(pb::PermitsRequest {
                    rate_group: group.to_string(),
                    count: left,
                    tokens_each,
                })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    left -= r.granted.min(left);
                    if left > 0 {
                        tokio::time::sleep(Duration::from_millis(
                            (r.retry_after_ms as u64).clamp(5, 5000),
                        ))
                        .await;
                    }
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!("asking for permits failed (will retry): {}", e.message());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn throttled(&self, group: &str, retry_after: Option<Duration>) {
        let _ = self
            .client
            .clone()
            .throttled(pb::ThrottledRequest {
                rate_group: group.to_string(),
                retry_after_ms: retry_after.map_or(0, |d| d.as_millis().max(1) as u32),
            })
            .await;
    }

    async fn usage(&self, group: &str, estimated_tokens: u64, actual_tokens: u64) {
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let e = u.entry(group.to_string()).or_default();
        e.0 += estimated_tokens;
        e.1 += actual_tokens;
    }
}

/// Why fetching a sweep's files stopped.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The coordinator's stream failed.
    #[error("fetching results failed: {code:?}: {message}")]
    Fetch { code: tonic::Code, message: String },
    /// A chunk came before any file was named.
    #[error("the coordinator sent data before naming its file")]
    Unnamed,
    /// A file could not be written.
    #[error("writing {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The stream ended inside a file.
    #[error("the stream ended in the middle of {}", .0.display())]
    Truncated(PathBuf),
    /// The folder refused a file (a link, not a regular file, ...).
    #[error(transparent)]
    Folder(#[from] moralsweep_userfs::WriteError),
}

/// Writes a stream of file chunks under `out` (through
/// [`moralsweep_userfs::OutDir`]: never through a link, never over what is
/// not a regular file); returns the files written.
pub async fn save_files(
    mut stream: tonic::Streaming<pb::FileChunk>,
    out: &std::path::Path,
) -> Result<Vec<PathBuf>, SaveError> {
    use std::io::Write;
    let dir = moralsweep_userfs::OutDir::create(out)?;
    let mut written = Vec::new();
    let mut current: Option<moralsweep_userfs::NewFile> = None;
    while let Some(chunk) = stream.message().await.map_err(|s| SaveError::Fetch {
        code: s.code(),
        message: s.message().to_string(),
    })? {
        if !chunk.path.is_empty() {
            current = Some(dir.create_file(&chunk.path)?);
        }
        let Some(f) = current.as_mut() else {
            return Err(SaveError::Unnamed);
        };
        f.write_all(&chunk.data).map_err(|error| SaveError::Write {
            path: f.path().to_path_buf(),
            error,
        })?;
        if chunk.last {
            if let Some(f) = current.take() {
                let path = f.path().to_path_buf();
                f.commit()?;
                written.push(path);
            }
        }
    }
    if let Some(f) = current {
        return Err(SaveError::Truncated(f.path().to_path_buf()));
    }
    Ok(written)
}
