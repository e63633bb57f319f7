//! The ops HTTP endpoints every long-running role serves (`--ops-listen`):
//!
//! - [`METRICS_PATH`]: the Prometheus metrics ([`Metrics::encode`]);
//! - [`HEALTHZ_PATH`]: liveness, 200 while the process and its async runtime
//!   answer at all (a wedged runtime stops answering and gets restarted);
//! - [`READYZ_PATH`]: readiness, 200 only while the role's own check passes
//!   (the coordinator: its store answers; a worker: it is not draining), 503
//!   otherwise. A check that takes longer than [`READY_TIMEOUT`] counts as
//!   not ready.
//!
//! The Kubernetes manifests under `deploy/` point their probes and scrape
//! annotations at these paths; a test checks they agree. A process may add
//! routes of its own beside them ([`spawn_ops_with`]): the coordinator adds
//! the live view of its sweeps ([`crate::live`]). Who may read them is
//! [`crate::access`]'s ([`spawn_ops_guarded`]); every connection must send
//! its request headers within [`HEADER_READ_TIMEOUT`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::{Metrics, CONTENT_TYPE};

pub use crate::access::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
/// The ops port the container images and manifests use.
pub const DEFAULT_OPS_PORT: u16 = 9464;
/// How long a readiness check may take before it counts as failed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

type ReadyFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
type ReadyFn = Arc<dyn Fn() -> ReadyFuture + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    metrics: Metrics,
    ready: ReadyFn,
}

/// The ops routes as an axum router (for embedding in another server).
pub fn router<R, Fut>(metrics: Metrics, ready: R) -> Router
where
    R: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let ready: ReadyFn = Arc::new(move || Box::pin(ready()) as ReadyFuture);
    Router::new()
        .route(METRICS_PATH, get(metrics_handler))
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .with_state(OpsState { metrics, ready })
}

async fn metrics_handler(State(s): State<OpsState>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.metrics.encode()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<OpsState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, (s.ready)()).await {
        Ok(true) => (StatusCode::OK, "ready\n").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the readiness check timed out\n",
        )
            .into_response(),
    }
}

/// Serves the ops endpoints on `listener` until `shutdown` resolves.
pub async fn serve_ops<R, Fut, S>(
    listener: TcpListener,
    metrics: Metrics,
    ready: R,
    shutdown: S,
) -> std::io::Result<()>
where
    R: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    serve_router(listener, router(metrics, ready), shutdown).await
}

/// How long a client may take to send a request's headers before its
/// connection is closed (a client that sends half of them and waits holds
/// nothing open for long).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves: HTTP/1.1 through
/// hyper with [`HEADER_READ_TIMEOUT`] (axum's own `serve` sets no timer, so
/// a slow client could hold a connection for ever). At shutdown it stops
/// accepting and lets each connection finish its request.
async fn serve_router<S>(listener: TcpListener, app: Router, shutdown: S) -> std::io::Result<()>
where
    S: Future<Output = ()> + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A connection that failed before it was accepted (reset,
                // out of descriptors): keep serving the others.
                Err(e) => {
                    tracing::debug!("ops server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// A running ops server (see [`spawn_ops`]).
#[derive(Debug)]
pub struct OpsServer {
    /// The address it listens on (useful with port 0).
    pub local_addr: SocketAddr,
    /// The server task; it ends when the shutdown future resolves.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// What the caller should warn about: a public address without a token
    /// ([`spawn_ops_guarded`]).
    pub warning: Option<String>,
}

/// Binds `addr` (e.g. `0.0.0.0:9464`) and serves the ops endpoints in a
/// background task until `shutdown` resolves. Must be called inside a tokio
/// runtime. The error names the address when it cannot be bound.
pub async fn spawn_ops<R, Fut, S>(
    addr: &str,
    metrics: Metrics,
    ready: R,
    shutdown: S,
) -> Result<OpsServer, crate::TelemetryError>
where
    R: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    spawn_ops_with(addr, metrics, ready, Router::new(), shutdown).await
}

/// [`spawn_ops_with`] under `token`: with one, `/metrics` answers only to
/// `Authorization: Bearer <token>`; without one, only requests for
/// localhost, an IP address or `addr` itself are answered, and a public
/// address gets a [`OpsServer::warning`] (see [`crate::access`]). `whose` names the token
/// in a refusal and `flag` where to set one in the warning.
pub async fn spawn_ops_guarded<R, Fut, S>(
    addr: &str,
    metrics: Metrics,
    ready: R,
    extra: Router,
    token: Option<String>,
    (whose, flag): (&str, &str),
    shutdown: S,
) -> Result<OpsServer, crate::TelemetryError>
where
    R: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let access = crate::access::Access {
        token: token.map(Arc::from),
        whose: whose.into(),
        listen: addr.into(),
    };
    let (listener, local_addr) = bind(addr).await?;
    let warning = access
        .token
        .is_none()
        .then(|| crate::access::exposure_warning(local_addr, flag))
        .flatten();
    let app = router(metrics, ready)
        .merge(extra)
        .layer(axum::middleware::from_fn_with_state(
            access,
            crate::access::guard,
        ));
    let task = tokio::spawn(serve_router(listener, app, shutdown));
    Ok(OpsServer {
        local_addr,
        task,
        warning,
    })
}

async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), crate::TelemetryError> {
    let listener =
        TcpListener::bind(addr)
            .await
            .map_err(|error| crate::TelemetryError::OpsBind {
                addr: addr.to_string(),
                error,
            })?;
    let local_addr = listener
        .local_addr()
        .map_err(|error| crate::TelemetryError::OpsBind {
            addr: addr.to_string(),
            error,
        })?;
    tracing::info!(%local_addr, "ops endpoints: {METRICS_PATH} {HEALTHZ_PATH} {READYZ_PATH}");
    Ok((listener, local_addr))
}

/// [`spawn_ops`] with `extra` routes served beside the ops endpoints (e.g.
/// [`crate::live::LiveView::router`]).
pub async fn spawn_ops_with<R, Fut, S>(
    addr: &str,
    metrics: Metrics,
    ready: R,
    extra: Router,
    shutdown: S,
) -> Result<OpsServer, crate::TelemetryError>
where
    R: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let (listener, local_addr) = bind(addr).await?;
    let app = router(metrics, ready).merge(extra);
    let task = tokio::spawn(serve_router(listener, app, shutdown));
    Ok(OpsServer {
        local_addr,
        task,
        warning: None,
    })
}
