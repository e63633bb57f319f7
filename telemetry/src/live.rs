//! The live view of the sweeps a process runs: a read-only page (served at
//! [`LIVE_PATH`] by the ops server of the coordinator, or by `run --ui`)
//! that polls [`LIVE_STATUS_PATH`] every second and shows per-model
//! progress, rate against its limit, 429s, failures, cost so far and ETA,
//! with a link to the report of each finished sweep ([`LIVE_REPORT_PATH`]).
//!
//! This crate knows nothing of sweeps: the process passes a [`LiveSource`]
//! that produces the status as JSON and the report pages. On a process with
//! a token, the status and report endpoints answer only to
//! `Authorization: Bearer <token>` (as the gRPC API does); the page itself
//! holds no data and asks for the token (kept in the tab's sessionStorage;
//! `?token=` in the address is taken once and removed from it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The page.
pub const LIVE_PATH: &str = "/live";
/// The status of every sweep, JSON.
pub const LIVE_STATUS_PATH: &str = "/live/status.json";
/// The report page of a finished sweep: `/live/report/<sweep>`.
pub const LIVE_REPORT_PATH: &str = "/live/report/{sweep}";

const PAGE: &str = include_str!("live.html");

/// A boxed future, as the source's methods return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the live view shows, provided by the process that runs the sweeps.
pub trait LiveSource: Send + Sync + 'static {
    /// The status of every sweep (see `live.html` for the fields it reads).
    fn status(&self) -> BoxFuture<serde_json::Value>;
    /// The report page of `sweep`: `None` when there is no such sweep or it
    /// has no report yet, `Some(Err)` when making it failed.
    fn report(&self, sweep: String) -> BoxFuture<Option<Result<String, String>>>;
}

/// The live view's routes and who may read them.
#[derive(Clone)]
pub struct LiveView {
    source: Arc<dyn LiveSource>,
    token: Option<Arc<str>>,
    /// What the token is called in a refusal.
    whose: Arc<str>,
}

impl LiveView {
    /// With `token`, the data endpoints require `Authorization: Bearer <token>`
    /// (the coordinator's token; see [`LiveView::token_called`]).
    pub fn new(source: Arc<dyn LiveSource>, token: Option<String>) -> Self {
        LiveView {
            source,
            token: token.map(Arc::from),
            whose: "the coordinator's token".into(),
        }
    }

    /// Names the token in refusals (e.g. `the token in --ui-token-file`).
    pub fn token_called(mut self, whose: &str) -> Self {
        self.whose = whose.into();
        self
    }

    /// The routes, to merge into the ops router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::temporary(LIVE_PATH) }))
            .route(LIVE_PATH, get(page))
            .route(LIVE_STATUS_PATH, get(status))
            .route(LIVE_REPORT_PATH, get(report))
            .with_state(self)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        match &self.token {
            None => true,
            Some(token) => crate::access::has_token(headers, token),
        }
    }

    fn refused(&self) -> Response {
        crate::access::refused(&self.whose)
    }
}

/// Headers every live response carries: no caching of sweep data, no
/// framing by another site, no fetch from elsewhere.
fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("static header"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        "nosniff".parse().expect("static header"),
    );
    h.insert(
        header::REFERRER_POLICY,
        "no-referrer".parse().expect("static header"),
    );
    r
}

async fn page(State(v): State<LiveView>) -> Response {
    let needs_token = if v.token.is_some() { "1" } else { "0" };
    let html = PAGE.replace("{{NEEDS_TOKEN}}", needs_token);
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'"
            .parse()
            .expect("static header"),
    );
    secure(r)
}

async fn status(State(v): State<LiveView>, headers: HeaderMap) -> Response {
    if !v.authorized(&headers) {
        return secure(v.refused());
    }
    let body = v.source.status().await;
    secure(axum::Json(body).into_response())
}

async fn report(
    State(v): State<LiveView>,
    Path(sweep): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !v.authorized(&headers) {
        return secure(v.refused());
    }
    secure(match v.source.report(sweep.clone()).await {
        Some(Ok(html)) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        Some(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the report of sweep {sweep:?} could not be made: {e}\n"),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no report for sweep {sweep:?}: it is unknown or not finished\n"),
        )
            .into_response(),
    })
}
