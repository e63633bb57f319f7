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
//! | `POST /v1beta/models/{model}:generateContent` | Gemini |
//! | `GET /_sim/stats` | what the simulator received (JSON, see [`stats::Report`]) |
//! | `POST /_sim/reset` | forget the stats |
//!
//! The model a request names is the replay key: a request for
//! `gpt-4o-misaligned` answers from `gpt-4o-misaligned_temp01.csv`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moralsweep_simulator::SimError> {
//! use moralsweep_simulator::{spawn, SimConfig};
//! let running = spawn(SimConfig::default(), "127.0.0.1:0").await?;
//! println!("OpenAI base URL: http://{}/v1", running.addr);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub mod anthropic;
pub mod engine;
pub mod faults;
pub mod gemini;
pub mod limits;
pub mod openai;
pub mod replay;
pub mod stats;
pub mod wire;

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

/// The simulator's routes over a shared state.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/responses", post(openai::responses))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1beta/models/{target}", post(gemini::generate))
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset", post(reset))
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
