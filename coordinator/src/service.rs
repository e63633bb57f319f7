//! The gRPC face of the engine: the `Sweeps` service for people and scripts
//! and the `Workers` service for the pool (`moralsweep.v1`), behind the
//! token check of [`moralsweep_protocol::auth`] and optional TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use moralsweep_common::SweepSpec;
use moralsweep_proto::v1 as pb;
use moralsweep_protocol::CallError;
use pb::sweeps_server::{Sweeps, SweepsServer};
use pb::workers_server::{Workers, WorkersServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, EngineError};
use moralsweep_protocol::auth::Auth;
use moralsweep_protocol::{convert, usage, HeldBatch, ProgressState, SweepProgress, MAX_MESSAGE};

/// The longest pause one `Throttled` call may impose on a rate group.
pub const MAX_THROTTLE_PAUSE: Duration = Duration::from_secs(600);

/// An engine error as a gRPC status ([`CallError`] is the one mapping).
pub fn status(e: EngineError) -> Status {
    CallError::from(e).into()
}

/// Both services over one engine.
#[derive(Clone)]
pub struct Service {
    engine: Arc<Engine>,
}

impl Service {
    pub fn new(engine: Arc<Engine>) -> Self {
        Service { engine }
    }
}

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Sweeps for Service {
    async fn submit_sweep(
        &self,
        req: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::SubmitSweepReply>, Status> {
        let r = req.into_inner();
        let spec_name = if r.spec_name.is_empty() {
            "the submitted spec".to_string()
        } else {
            r.spec_name
        };
        let mut spec = SweepSpec::parse(&r.spec_toml, Path::new(&spec_name))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !r.instrument_json.is_empty() {
            spec.instrument_definition = Some(r.instrument_json);
        }
        Engine::check_submission(&spec, &spec_name, &r.personas).map_err(status)?;
        let name = spec.name.clone();
        let output = self.engine.config().data_root.join(&name);
        let source = crate::sweep::SpecSource::new(&spec_name, &r.spec_toml);
        let created = self
            .engine
            .submit_source(spec, r.personas, output, Some(source))
            .await
            .map_err(status)?;
        let total = self.engine.snapshot_one(&name).map_err(status)?.total;
        Ok(Response::new(pb::SubmitSweepReply {
            sweep: name,
            created,
            total_slots: total,
        }))
    }

    async fn list_sweeps(
        &self,
        _req: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsReply>, Status> {
        let mut sweeps = self.engine.snapshot();
        let leases = self
            .engine
            .store()
            .leases()
            .await
            .map_err(|e| status(e.into()))?;
        for p in &mut sweeps {
            p.leased = leases
                .iter()
                .filter(|l| l.unit.sweep == p.sweep)
                .map(|l| l.slots.len() as u64)
                .sum();
        }
        Ok(Response::new(pb::ListSweepsReply {
            sweeps: sweeps.iter().map(convert::progress_to_pb).collect(),
        }))
    }

    async fn get_sweep(
        &self,
        req: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::SweepStatus>, Status> {
        let p = self
            .engine
            .progress(&req.into_inner().sweep)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::progress_to_pb(&p)))
    }

    type WatchProgressStream = Stream<pb::ProgressEvent>;

    async fn watch_progress(
        &self,
        req: Request<pb::WatchProgressRequest>,
    ) -> Result<Response<Self::WatchProgressStream>, Status> {
        let sweep = req.into_inner().sweep;
        let engine = self.engine.clone();
        let pick = move |e: &Engine| -> Result<Vec<SweepProgress>, Status> {
            if sweep.is_empty() {
                Ok(e.snapshot())
            } else {
                Ok(vec![e.snapshot_one(&sweep).map_err(status)?])
            }
        };
        // Fails at once for an unknown sweep.
        let first = pick(&engine)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut changes = engine.subscribe();
            let mut last: Option<Vec<SweepProgress>> = None;
            let mut current = Ok(first);
            loop {
                match current {
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                    Ok(now) => {
                        let finished = !now.is_empty() && now.iter().all(|p| p.finished());
                        if last.as_ref() != Some(&now) {
                            let ev = pb::ProgressEvent {
                                sweeps: now.iter().map(convert::progress_to_pb).collect(),
                            };
                            if tx.send(Ok(ev)).await.is_err() {
                                return;
                            }
                            last = Some(now);
                        }
                        if finished {
                            return;
                        }
                    }
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = tx.closed() => return,
                }
                // At most a few events a second.
                tokio::time::sleep(Duration::from_millis(250)).await;
                current = pick(&engine);
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_sweep(
        &self,
        req: Request<pb::CancelSweepRequest>,
    ) -> Result<Response<pb::CancelSweepReply>, Status> {
        let p = self
            .engine
            .cancel(&req.into_inner().sweep)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CancelSweepReply {
            status: Some(convert::progress_to_pb(&p)),
        }))
    }

    async fn delete_sweep(
        &self,
        req: Request<pb::DeleteSweepRequest>,
    ) -> Result<Response<pb::DeleteSweepReply>, Status> {
        let n = self
            .engine
            .delete(&req.into_inner().sweep)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteSweepReply {
            files_removed: n as u64,
        }))
    }

    async fn get_sweep_spec(
        &self,
        req: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::SweepSpecReply>, Status> {
        let sweep = req.into_inner().sweep;
        let r = self.engine.record(&sweep).map_err(status)?;
        let src = r.source.clone();
        let used = self.engine.usage(&sweep).await.map_err(status)?;
        Ok(Response::new(pb::SweepSpecReply {
            usage: used.iter().map(usage::to_pb).collect(),
            sweep,
            spec_toml: src.as_ref().map(|s| s.toml.clone()).unwrap_or_default(),
            spec_sha256: src.as_ref().map(|s| s.sha256.clone()).unwrap_or_default(),
            spec_name: src.map(|s| s.name).unwrap_or_default(),
            created_at: r.created_at.clone(),
            finished_at: r.finished_at.clone().unwrap_or_default(),
        }))
    }

    type FetchResultsStream = Stream<pb::FileChunk>;

    async fn fetch_results(
        &self,
        req: Request<pb::FetchResultsRequest>,
    ) -> Result<Response<Self::FetchResultsStream>, Status> {
        let sweep = req.into_inner().sweep;
        let p = self.engine.snapshot_one(&sweep).map_err(status)?;
        match p.state {
            ProgressState::Running => {
                return Err(Status::failed_precondition(format!(
                    "sweep {sweep:?} is still running ({} of {} slots); fetch its results when `moralsweep status` says done \
                     (or stop it with `moralsweep cancel {sweep}` and fetch what it recorded)",
                    p.done, p.total
                )))
            }
            ProgressState::Failed => {
                return Err(Status::failed_precondition(format!(
                    "the files of sweep {sweep:?} could not be written: {}",
                    p.messages.join("; ")
                )))
            }
            ProgressState::Cancelled => {
                let notes = self.engine.write_partial(&sweep).await.map_err(status)?;
                for n in notes {
                    tracing::info!(sweep = %sweep, "cancelled sweep: {n}");
                }
            }
            ProgressState::Done => {}
        }
        let files = result_files(&p.output).map_err(|e| {
            Status::internal(format!(
                "cannot list the files of sweep {sweep:?} in {}: {e}",
                p.output.display()
            ))
        })?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            for (rel, path) in files {
                if let Err(e) = send_file(&tx, &rel, &path).await {
                    let _ = tx
                        .send(Err(Status::internal(format!(
                            "reading {}: {e}",
                            path.display()
                        ))))
                        .await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The data and metric files of a sweep, relative path first, sorted.
fn result_files(output: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for sub in ["data", "metrics"] {
        let dir = output.join(sub);
        if !dir.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type()?.is_file() && !name.starts_with('.') && !name.ends_with(".tmp") {
                v.push((format!("{sub}/{name}"), e.path()));
            }
        }
    }
    v.sort();
    Ok(v)
}

async fn send_file(
    tx: &mpsc::Sender<Result<pb::FileChunk, Status>>,
    rel: &str,
    path: &Path,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut first = true;
    loop {
        let mut buf = vec![0u8; 256 << 10];
        let n = f.read(&mut buf).await?;
        buf.truncate(n);
        let chunk = pb::FileChunk {
            path: if first {
                rel.to_string()
            } else {
                String::new()
            },
            data: buf,
            last: n == 0,
        };
        first = false;
        if tx.send(Ok(chunk)).await.is_err() || n == 0 {
            return Ok(());
        }
    }
}

#[tonic::async_trait]
impl Workers for Service {
    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseReply>, Status> {
        let r = req.into_inner();
        if r.max_slots == 0 {
            return Err(Status::invalid_argument(
                "max_slots is 0; ask for at least one slot",
            ));
        }
        let worker = if r.worker.is_empty() {
            "unnamed"
        } else {
            &r.worker
        };
        let out = self
            .engine
            .lease(worker, r.max_slots)
            .await
            .map_err(status)?;
        let mut reply = Response::new(pb::LeaseReply {
            leases: out.grants.iter().map(convert::grant_to_pb).collect(),
            retry_after_ms: out.retry_after.as_millis() as u32,
        });
        // A lease is one trace: its root span goes back with the reply
        // (`traceparent` metadata) and the worker's spans continue it.
        // Empty answers to idle polls make no trace.
        if let Some(first) = out.grants.first() {
            let span = moralsweep_telemetry::spans::lease_span(worker);
            if let Some(submitted) = self.engine.sweep_trace(&first.lease.unit.sweep) {
                moralsweep_telemetry::propagation::add_link(&span, &submitted);
            }
            span.record("sweep", first.lease.unit.sweep.as_str());
            moralsweep_telemetry::spans::record_lease(
                &span,
                out.grants.iter().map(|g| g.lease.slots.len() as u64).sum(),
            );
            moralsweep_telemetry::propagation::inject_metadata(&span, reply.metadata_mut());
        }
        Ok(reply)
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportReply>, Status> {
        // The worker's span of the reported slots is the parent.
        let parent = moralsweep_telemetry::propagation::from_metadata(req.metadata());
        let r = req.into_inner();
        let span = tracing::info_span!(
            "report",
            worker = %r.worker,
            results = r.results.len() as u64,
            released = r.release.len() as u64,
        );
        if let Some(tp) = &parent {
            moralsweep_telemetry::propagation::set_parent(&span, tp);
        }
        let mut reports = Vec::with_capacity(r.results.len());
        for res in r.results {
            reports.push(
                convert::report_from_pb(res)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            );
        }
        // The usage first: once the last result is recorded, `results` may
        // fetch the sweep, and its provenance should hold every call.
        if !r.usage.is_empty() {
            let source = if r.usage_source.is_empty() {
                &r.worker
            } else {
                &r.usage_source
            };
            let entries = r.usage.into_iter().map(usage::from_pb).collect();
            self.engine
                .record_usage(source, entries)
                .await
                .map_err(status)?;
        }
        let out = tracing::Instrument::instrument(self.engine.report(reports, &r.release), span)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReportReply {
            recorded: out.recorded,
            duplicates: out.duplicates,
        }))
    }

    async fn extend_leases(
        &self,
        req: Request<pb::ExtendLeasesRequest>,
    ) -> Result<Response<pb::ExtendLeasesReply>, Status> {
        let (lost, deadline_ms) = self
            .engine
            .extend(&req.into_inner().lease_ids)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ExtendLeasesReply { lost, deadline_ms }))
    }

    async fn get_sweep_definition(
        &self,
        req: Request<pb::GetSweepDefinitionRequest>,
    ) -> Result<Response<pb::SweepDefinition>, Status> {
        let sweep = req.into_inner().sweep;
        let r = self.engine.record(&sweep).map_err(status)?;
        Ok(Response::new(pb::SweepDefinition {
            sweep,
            spec_json: serde_json::to_string(&r.spec).expect("specs serialise"),
            personas: r.def.personas,
        }))
    }

    async fn acquire_permits(
        &self,
        req: Request<pb::PermitsRequest>,
    ) -> Result<Response<pb::PermitsReply>, Status> {
        let r = req.into_inner();
        let rates = self.engine.rates();
        let granted = rates.take(&r.rate_group, r.count, r.tokens_each);
        let retry_after_ms = if granted < r.count {
            rates.next_ready(&r.rate_group).as_millis().max(1) as u32
        } else {
            0
        };
        Ok(Response::new(pb::PermitsReply {
            granted,
            retry_after_ms,
        }))
    }

    async fn throttled(
        &self,
        req: Request<pb::ThrottledRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        // A Retry-After longer than this is a garbled report, not a plan.
        let after = (r.retry_after_ms > 0)
            .then(|| Duration::from_millis(r.retry_after_ms as u64).min(MAX_THROTTLE_PAUSE));
        self.engine.rates().throttled(&r.rate_group, after);
        Ok(Response::new(pb::Empty {}))
    }

    async fn open_batch(
        &self,
        req: Request<pb::OpenBatchRequest>,
    ) -> Result<Response<pb::ProviderBatch>, Status> {
        let r = req.into_inner();
        let unit = moralsweep_protocol::UnitKey {
            sweep: r.sweep,
            model: r.model,
            mode: convert::mode(&r.mode).map_err(|e| Status::invalid_argument(e.to_string()))?,
        };
        let b = self
            .engine
            .open_batch(&r.worker, &r.lease_ids, unit, r.slots)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::batch_to_pb(&b)))
    }

    async fn batch_submitted(
        &self,
        req: Request<pb::BatchSubmittedRequest>,
    ) -> Result<Response<pb::BatchSubmittedReply>, Status> {
        let r = req.into_inner();
        let open = self
            .engine
            .batch_submitted(&r.sweep, &r.id, &r.provider_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::BatchSubmittedReply { open }))
    }

    async fn extend_batches(
        &self,
        req: Request<pb::ExtendBatchesRequest>,
    ) -> Result<Response<pb::ExtendBatchesReply>, Status> {
        let r = req.into_inner();
        let held: Vec<HeldBatch> = r
            .batches
            .into_iter()
            .map(|b| HeldBatch {
                sweep: b.sweep,
                id: b.id,
                seen: Some(b.progress).filter(|p| !p.is_empty()),
            })
            .collect();
        let (lost, deadline_ms) = self
            .engine
            .extend_batches(&r.worker, &held)
            .await
            .map_err(status)?;
        let refs = |stopped: bool| {
            lost.iter()
                .filter(|b| b.stopped == stopped)
                .map(|b| pb::BatchRef {
                    sweep: b.sweep.clone(),
                    id: b.id.clone(),
                    progress: String::new(),
                })
                .collect()
        };
        Ok(Response::new(pb::ExtendBatchesReply {
            lost: refs(false),
            stopped: refs(true),
            deadline_ms,
        }))
    }

    async fn claim_batches(
        &self,
        req: Request<pb::ClaimBatchesRequest>,
    ) -> Result<Response<pb::ClaimBatchesReply>, Status> {
        let r = req.into_inner();
        let batches = self
            .engine
            .claim_batches(&r.worker, r.max)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ClaimBatchesReply {
            batches: batches.iter().map(convert::batch_to_pb).collect(),
        }))
    }

    async fn close_batch(
        &self,
        req: Request<pb::CloseBatchRequest>,
    ) -> Result<Response<pb::CloseBatchReply>, Status> {
        let r = req.into_inner();
        let requeued = self
            .engine
            .close_batch(&r.sweep, &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CloseBatchReply { requeued }))
    }

    async fn usage(&self, req: Request<pb::UsageRequest>) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.engine
            .rates()
            .record_usage(&r.rate_group, r.estimated_tokens, r.actual_tokens);
        Ok(Response::new(pb::Empty {}))
    }
}

/// Why the gRPC server stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// The TLS settings or the server failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Serves both services on `addr` until `shutdown` resolves.
pub async fn serve(
    engine: Arc<Engine>,
    addr: SocketAddr,
    auth: Auth,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Listen { addr, error })?;
    serve_on(engine, listener, auth, tls, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    auth: Auth,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let svc = Service::new(engine);
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = tls {
        builder = builder.tls_config(t)?;
    }
    builder
        .tcp_nodelay(true)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            SweepsServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            auth.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            WorkersServer::new(svc)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            auth,
        ))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}
