//! The provider simulator: an HTTP server speaking the OpenAI (Chat
//! Completions and Responses), Anthropic (Messages) and Gemini
//! (`generateContent`) APIs, answering from recorded rating files or a
//! seeded generator, enforcing per-key rate limits and injecting faults.
//! It is how the whole system is tested here with no keys and no network,
//! and how users rehearse a sweep for free.
//!
//! Routes:
//!
//! | route | API |
//! | --- | --- |
//! | `POST /v1/chat/completions` | OpenAI Chat Completions |
//! | `POST /v1/responses` | OpenAI Responses |
//! | `GET /v1/models` | the keys with recorded data |
//! | `POST /v1/messages` | Anthropic Messages |
//! | `POST /v1/messages/count_tokens` | Anthropic token counting |
//! | `POST /v1beta/models/{model}:generateContent` | Gemini |
//! | `POST /v1beta/models/{model}:countTokens` | Gemini token counting |
//! | `POST /v1/files`, `GET /v1/files/{id}`, `GET /v1/files/{id}/content` | OpenAI Files (batch input and output) |
//! | `POST`/`GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel` | OpenAI Batch |
//! | `POST`/`GET /v1/messages/batches`, `GET`/`DELETE /v1/messages/batches/{id}`, `GET .../{id}/results`, `POST .../{id}/cancel` | Anthropic Message Batches |
//! | `POST /v1beta/models/{model}:batchGenerateContent`, `GET /v1beta/batches`, `GET`/`DELETE /v1beta/batches/{id}`, `POST /v1beta/batches/{id}:cancel` | Gemini batch mode |
//! | `POST /upload/v1beta/files`, `GET /v1beta/files/{id}`, `GET /v1beta/files/{id}:download` | Gemini Files (batch input and output) |
//! | `POST /model/{modelId}/converse`, `POST /model/{modelId}/count-tokens` | Amazon Bedrock Converse and token counting (SigV4, see [`bedrock`]) |
//! | `POST /` | AWS STS `AssumeRoleWithWebIdentity` (the credentials Bedrock then accepts) |
//! | `GET /_aws/container-credentials` | the container credentials endpoint (EKS Pod Identity) |
//! | `GET /_sim/aws` | AWS credentials issued and refused |
//! | `POST /v1/projects/{p}/locations/{l}/publishers/{google,anthropic}/models/{m}:...`, `POST /token`, `GET /computeMetadata/...` | Vertex AI and Google's token side (see [`vertex`]) |
//! | `POST /openai/v1/chat/completions`, `POST /openai/deployments/{d}/chat/completions`, `/openai[/v1]/files`, `/openai[/v1]/batches` | Azure OpenAI (see [`azure`]) |
//! | `POST /{tenant}/oauth2/v2.0/token`, `GET /metadata/identity/oauth2/token` | Entra ID and the managed-identity endpoint, issuing Azure bearer tokens |
//! | `GET /_sim/stats` | what the simulator received (JSON, see [`stats::Report`]) |
//! | `POST /_sim/reset` | forget the stats |
//!
//! Batch lines are answered by the same engine as interactive requests
//! (see [`batch`]), outside the interactive rate limits.
//!
//! The model a request names is the replay key: a request for
//! `gpt-4o-misaligned` answers from `gpt-4o-misaligned_temp01.csv`.
//!
//! Every API refuses, with its own 400, a request field it does not define,
//! as the real APIs do, so an adapter that drifts from the providers' current
//! request types fails here too. Input tokens are counted with OpenAI's BPE
//! on the OpenAI routes for models tiktoken knows, and with the documented
//! estimate otherwise (`moralsweep_common::tokens`). The stats record, per
//! key, whether requests sent a `temperature` and the `traceparent` headers
//! they carried.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moralsweep_simulator::SimError> {
//! use moralsweep_simulator::{spawn, SimConfig};
//! let running = spawn(SimConfig::default(), "127.0.0.1:0").await?;
//! println!("OpenAI base URL: http://{}/v1", running.addr);
//! # Ok(()) }
//! ```
//!
//! Layer: above `moralsweep-common` (its only workspace dependency); the
//! binary serves it and tests use it, no library depends on it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub mod anthropic;
pub mod azure;
pub mod batch;
pub mod bedrock;
pub mod config;
pub mod em;
pub mod engine;
pub mod faults;
pub mod gemini;
pub mod limits;
pub mod openai;
pub mod replay;
pub mod stats;
pub mod vertex;
pub mod wire;

pub use batch::BatchSettings;
pub use engine::{Outcome, Query, Sim, SimConfig, SimError};
pub use faults::{parse_fault_list, Fault, FaultPlan};
pub use replay::ReplayMode;

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    let report = serde_json::to_value(sim.report()).unwrap_or_default();
    wire::json_response(StatusCode::OK, HeaderMap::new(), &report)
}

async fn reset(State(sim): State<Arc<Sim>>) -> Response {
    sim.reset_stats();
    wire::json_response(
        StatusCode::OK,
        HeaderMap::new(),
        &serde_json::json!({"reset": true}),
    )
}

/// The API whose error shape a path gets.
fn api_of_path(path: &str) -> wire::Api {
    if path.starts_with("/v1beta")
        || path.starts_with("/upload/v1beta")
        || path.contains("/projects/")
    {
        wire::Api::Gemini
    } else if path.starts_with("/v1/messages") {
        wire::Api::Anthropic
    } else {
        wire::Api::OpenAi
    }
}

/// Errors the HTTP layer answers by itself (unknown route, wrong method,
/// body over the size limit, undecodable path or query) come out as plain
/// text; a client of the API expects the provider's own JSON error, so they
/// are rewritten into it with the same status.
async fn provider_errors(
    State(sim): State<Arc<Sim>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let api = api_of_path(&path);
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let kind = match status {
        StatusCode::UNAUTHORIZED => wire::ErrKind::Auth,
        StatusCode::NOT_FOUND => wire::ErrKind::NotFound,
        StatusCode::TOO_MANY_REQUESTS => wire::ErrKind::RateLimited,
        s if s.is_server_error() => wire::ErrKind::Internal,
        _ => wire::ErrKind::BadRequest,
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::NOT_FOUND, _) => format!("Unknown request URL: {path}."),
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            "Method not allowed on this URL; the API's endpoints take POST (GET for the model list and the stats).".to_string()
        }
        (_, true) => status
            .canonical_reason()
            .unwrap_or("Invalid request")
            .to_string(),
        (_, false) => text,
    };
    let mut headers = parts.headers;
    headers.remove("content-length");
    headers.remove("content-type");
    let mut body = api.error_body(kind, &message, None, &sim);
    if api == wire::Api::Gemini {
        body["error"]["code"] = serde_json::json!(status.as_u16());
    }
    wire::json_response(status, headers, &body)
}

/// Any other URL: the provider's own "not found" error.
async fn unknown_route(State(sim): State<Arc<Sim>>, uri: axum::http::Uri) -> Response {
    let api = api_of_path(uri.path());
    wire::error(
        &sim,
        api,
        wire::ErrKind::NotFound,
        &format!("Unknown request URL: {}.", uri.path()),
        None,
    )
}

/// Room above a route's own size limit, so that a body just over it gets
/// the provider's error rather than the HTTP layer's.
const BODY_SLACK: usize = 1 << 20;

/// The simulator's routes over a shared state.
pub fn router(sim: Arc<Sim>) -> Router {
    let router = Router::new();
    // Vertex AI and Google's token side (`vertex`).
    let router = vertex::routes(router, &sim);
    router
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/responses", post(openai::responses))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route(
            "/v1beta/models/{target}",
            post(gemini::generate).layer(DefaultBodyLimit::max(
                batch::gemini::MAX_INLINE_BYTES + BODY_SLACK,
            )),
        )
        .route(
            "/v1/files",
            post(batch::openai::upload_file).layer(DefaultBodyLimit::max(
                batch::openai::MAX_UPLOAD_BYTES + BODY_SLACK,
            )),
        )
        .route("/v1/files/{id}", get(batch::openai::get_file))
        .route("/v1/files/{id}/content", get(batch::openai::file_content))
        .route(
            "/v1/batches",
            post(batch::openai::create_batch).get(batch::openai::list_batches),
        )
        .route("/v1/batches/{id}", get(batch::openai::get_batch))
        .route("/v1/batches/{id}/cancel", post(batch::openai::cancel_batch))
        .route(
            "/v1/messages/batches",
            post(batch::anthropic::create)
                .get(batch::anthropic::list)
                .layer(DefaultBodyLimit::max(
                    batch::anthropic::MAX_BODY_BYTES + BODY_SLACK,
                )),
        )
        .route(
            "/v1/messages/batches/{id}",
            get(batch::anthropic::retrieve).delete(batch::anthropic::delete),
        )
        .route(
            "/v1/messages/batches/{id}/results",
            get(batch::anthropic::results),
        )
        .route(
            "/v1/messages/batches/{id}/cancel",
            post(batch::anthropic::cancel),
        )
        .route("/v1beta/batches", get(batch::gemini::list))
        .route(
            "/upload/v1beta/files",
            post(batch::gemini_files::upload).layer(DefaultBodyLimit::max(
                batch::gemini_files::MAX_CHUNK_BYTES + BODY_SLACK,
            )),
        )
        .route("/v1beta/files/{target}", get(batch::gemini_files::get))
        .route(
            "/v1beta/batches/{target}",
            get(batch::gemini::get)
                .post(batch::gemini::post)
                .delete(batch::gemini::delete),
        )
        .route("/model/{model}/{op}", post(bedrock::model_op))
        .route("/", post(bedrock::creds::sts))
        .route(
            "/_aws/container-credentials",
            get(bedrock::creds::container),
        )
        .route("/_sim/aws", get(bedrock::creds::report))
        .route("/openai/v1/chat/completions", post(azure::chat_v1))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure::chat_deployment),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(azure::entra::token))
        .route("/metadata/identity/oauth2/token", get(azure::entra::imds))
        .route("/_sim/azure", get(azure::stats))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset", post(reset))
        .merge(azure::batch::routes(Router::new()))
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            provider_errors,
        ))
        .with_state(sim)
}

/// A simulator serving in the background.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (stats, config).
    pub sim: Arc<Sim>,
    /// The server task; abort it to stop the simulator.
    pub task: tokio::task::JoinHandle<()>,
}

/// Builds a simulator and serves it on `addr` (port 0 picks a free port)
/// in a background task.
pub async fn spawn(config: SimConfig, addr: &str) -> Result<Running, SimError> {
    let sim = Arc::new(Sim::new(config)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| SimError::Listen {
            addr: addr.to_string(),
            error,
        })?;
    let local = listener.local_addr().map_err(|error| SimError::Listen {
        addr: addr.to_string(),
        error,
    })?;
    let app = router(sim.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(Running {
        addr: local,
        sim,
        task,
    })
}
