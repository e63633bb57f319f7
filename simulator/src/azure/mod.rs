//! Azure OpenAI as the simulator plays it, on the same port as the others:
//!
//! | route | API |
//! | --- | --- |
//! | `POST /openai/v1/chat/completions` | the v1 API (`model` names the deployment; `api-version` absent or `preview`) |
//! | `POST /openai/deployments/{deployment}/chat/completions?api-version=...` | the deployments route (`api-version` required, one of [`API_VERSIONS`]) |
//! | `/openai/files...`, `/openai/batches...` (with `api-version`), `/openai/v1/files...`, `/openai/v1/batches...` | Azure's batch (files and batches, as OpenAI's; lines name `/chat/completions`) |
//! | `POST /{tenant}/oauth2/v2.0/token` | Entra ID's token route ([`entra`]) |
//! | `GET /metadata/identity/oauth2/token` | the instance metadata service's managed identity ([`entra`]) |
//! | `GET /_sim/azure` | tokens issued and chat requests received (refused ones too) so far |
//!
//! Authentication: an `api-key` header (the key of `--api-key-env`; any key
//! when none is set), or `Authorization: Bearer` with a token the token
//! routes issued (401 once it has ended) or, on the v1 API as on Azure, the
//! key itself. A token of a client listed in [`AzureSim::no_role`] gets 403
//! `PermissionDenied` (the identity lacks the role). A deployment without
//! recorded data is 404 `DeploymentNotFound`. Answers, faults and deal
//! replay are the OpenAI engine's; a 429 carries Azure's body
//! (`{"error": {"code": "429", ...}}`) with `retry-after` and
//! `retry-after-ms`.

// An axum `Response` is the refusal these checks return, as handlers do.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::engine::Sim;
use crate::openai::{bearer, chat_body, chat_query, refuses_n, Bad};
use crate::wire::{error, json_response, parse_body, respond, Api, ErrKind};

pub mod entra;

/// The `api-version`s the deployments route serves (GA and preview).
pub const API_VERSIONS: &[&str] = &[
    "2024-02-01",
    "2024-06-01",
    "2024-10-21",
    "2024-08-01-preview",
    "2024-12-01-preview",
    "2025-01-01-preview",
    "2025-03-01-preview",
    "2025-04-01-preview",
];

/// What the v1 API accepts as `api-version` (or none).
const V1_VERSIONS: &[&str] = &["preview", "latest", "v1"];

/// How Azure is played (the `--azure-*` flags of `moralsweep sim`).
#[derive(Debug, Clone)]
pub struct AzureSim {
    /// The tenant the token route serves (any when `None`).
    pub tenant: Option<String>,
    /// The app registration (client id) tokens are issued to (any when `None`).
    pub client_id: Option<String>,
    /// The client secret the token route accepts (any when `None`).
    pub client_secret: Option<String>,
    /// How long an issued token lasts.
    pub token_lifetime: Duration,
    /// Client ids whose tokens lack the role to call deployments (403).
    pub no_role: Vec<String>,
}

impl Default for AzureSim {
    fn default() -> Self {
        AzureSim {
            tenant: None,
            client_id: None,
            client_secret: None,
            token_lifetime: Duration::from_secs(3600),
            no_role: Vec::new(),
        }
    }
}

/// An Azure error body (`{"error": {"code", "message"}}`).
fn azure_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        HeaderMap::new(),
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// Who sent a request.
enum Caller {
    Key,
    Token(String),
    Anyone,
}

/// Checks the request's `api-key` or bearer token.
fn authenticate(sim: &Sim, headers: &HeaderMap, v1: bool) -> Result<Caller, Response> {
    let refused = |msg: &str| -> Result<Caller, Response> {
        Err(azure_error(StatusCode::UNAUTHORIZED, "401", msg))
    };
    if let Some(k) = headers.get("api-key") {
        let k = k.to_str().unwrap_or("");
        return if sim.key_ok(Some(k)) {
            Ok(Caller::Key)
        } else {
            refused("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
        };
    }
    if let Some(t) = bearer(headers) {
        return match entra::check_bearer(t) {
            entra::Bearer::Valid(client) => Ok(Caller::Token(client)),
            entra::Bearer::Expired => refused("Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."),
            entra::Bearer::Unknown if v1 && sim.config.api_key.as_deref() == Some(t) => Ok(Caller::Key),
            entra::Bearer::Unknown if v1 && sim.config.api_key.is_none() && !t.starts_with("simaz.") => Ok(Caller::Key),
            entra::Bearer::Unknown => refused("Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."),
        };
    }
    if sim.config.api_key.is_some() || sim.config.azure.client_id.is_some() {
        return refused("Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.");
    }
    Ok(Caller::Anyone)
}

/// Checks the `api-version` of a route.
fn check_version(q: &HashMap<String, String>, v1: bool, path: &str) -> Result<(), Response> {
    match (q.get("api-version").map(String::as_str), v1) {
        (None, true) => Ok(()),
        (Some(v), true) if V1_VERSIONS.contains(&v) => Ok(()),
        (None, false) => Err(azure_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        (Some(v), false) if API_VERSIONS.contains(&v) => Ok(()),
        (Some(v), _) => Err(azure_error(
            StatusCode::BAD_REQUEST,
            "UnsupportedApiVersion",
            &format!("The HTTP resource that matches the request URI '{path}' does not support the API version '{v}'."),
        )),
    }
}

fn deployment_not_found() -> Response {
    azure_error(
        StatusCode::NOT_FOUND,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
    )
}

fn permission_denied(client: &str, path: &str) -> Response {
    azure_error(
        StatusCode::FORBIDDEN,
        "PermissionDenied",
        &format!("The principal `{client}` lacks the required data action `Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action` to perform `POST {path}` operation."),
    )
}

/// Azure's shape for a 429 of the OpenAI engine (the headers stay).
async fn azure_shape(r: Response) -> Response {
    if r.status() != StatusCode::TOO_MANY_REQUESTS {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "Rate limit reached.".into());
    let body = json!({"error": {"code": "429", "message": format!(
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded the rate limit of your current pricing tier. {message}")}})
    .to_string();
    parts.headers.remove("content-length");
    parts
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Chat requests received, refused ones included.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// One chat request on either route (`deployment` on the deployments route).
async fn chat(
    sim: Arc<Sim>,
    deployment: Option<String>,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
    path: String,
) -> Response {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let v1 = deployment.is_none();
    if let Err(r) = check_version(&q, v1, &path) {
        return r;
    }
    let caller = match authenticate(&sim, &headers, v1) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(d) = &deployment {
        if !sim.knows(d) {
            return deployment_not_found();
        }
    }
    let mut m = match parse_body(&headers, &body) {
        Ok(m) => m,
        Err(msg) => return error(&sim, Api::OpenAi, ErrKind::BadRequest, &msg, None),
    };
    if let Some(d) = &deployment {
        // The route names the deployment; a body's `model` is ignored.
        m.insert("model".into(), json!(d));
    }
    let (mut q, logprobs) = match chat_query(&m) {
        Ok(x) => x,
        Err(Bad(msg, param)) => return error(&sim, Api::OpenAi, ErrKind::BadRequest, &msg, param),
    };
    if !sim.knows(&q.key) {
        return deployment_not_found();
    }
    if let Caller::Token(client) = &caller {
        if sim.config.azure.no_role.contains(client) {
            return permission_denied(client, &path);
        }
    }
    if let Some(msg) = refuses_n(&sim, &q) {
        return error(&sim, Api::OpenAi, ErrKind::BadRequest, msg, Some("n"));
    }
    q.forced_fault = crate::wire::forced_fault(&headers);
    q.traceparent = crate::wire::traceparent(&headers);
    let outcome = sim.decide(&q);
    let s = sim.clone();
    let r = respond(sim, Api::OpenAi, &q.key, outcome, |a| {
        chat_body(&s, &q.key, a, logprobs)
    })
    .await;
    azure_shape(r).await
}

/// `POST /openai/v1/chat/completions`.
pub async fn chat_v1(
    State(sim): State<Arc<Sim>>,
    UrlQuery(q): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat(
        sim,
        None,
        q,
        headers,
        body,
        "/openai/v1/chat/completions".into(),
    )
    .await
}

/// `POST /openai/deployments/{deployment}/chat/completions`.
pub async fn chat_deployment(
    State(sim): State<Arc<Sim>>,
    Path(deployment): Path<String>,
    UrlQuery(q): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/openai/deployments/{deployment}/chat/completions");
    chat(sim, Some(deployment), q, headers, body, path).await
}

/// `GET /_sim/azure`: tokens issued and chat requests received so far.
pub async fn stats() -> Response {
    json_response(
        StatusCode::OK,
        HeaderMap::new(),
        &json!({"tokens_issued": entra::issued(), "requests": REQUESTS.load(Ordering::Relaxed)}),
    )
}

pub mod batch;
