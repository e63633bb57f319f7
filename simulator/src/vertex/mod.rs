//! Google Vertex AI on the simulator's one port:
//!
//! | route | API |
//! | --- | --- |
//! | `POST /{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent` | Gemini on Vertex AI |
//! | `POST .../publishers/google/models/{m}:countTokens` | its token counting |
//! | `POST .../publishers/anthropic/models/{m}:rawPredict` | Claude on Vertex AI: the Messages body with `anthropic_version: "vertex-2023-10-16"` and no `model` |
//! | `POST .../publishers/anthropic/models/count-tokens:rawPredict` | Claude's token counting |
//! | `POST /token` | Google's OAuth token endpoint ([`oauth`]) |
//! | `GET /computeMetadata/v1/instance/service-accounts/default/token` | the metadata server's token |
//! | `GET /_sim/gcp` | tokens issued, assertions and bearers refused |
//!
//! Every Vertex route wants `Authorization: Bearer` with a live bearer the
//! token side issued (else Google's 401 `UNAUTHENTICATED`); with
//! `--gcp-project` set, a request for another project gets Google's 403
//! `PERMISSION_DENIED` naming `aiplatform.endpoints.predict`. The bodies are
//! checked and answered by the Gemini and Anthropic code (deal replay,
//! faults, limits and stats by model key, as for every provider), so Vertex
//! refuses exactly the fields those APIs refuse.

pub mod oauth;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use crate::engine::Sim;
use crate::wire::{error, json_response, parse_body, Api, ErrKind};

pub use oauth::{GcpSettings, OAuth};

/// The `anthropic_version` a rawPredict body must carry.
pub const ANTHROPIC_VERTEX_VERSION: &str = "vertex-2023-10-16";

/// The Vertex AI path parameters.
#[derive(serde::Deserialize)]
pub struct Target {
    project: String,
    location: String,
    publisher: String,
    target: String,
}

/// Google's error body with an `ErrorInfo` detail.
fn google_error(
    status: StatusCode,
    code: &str,
    message: &str,
    reason: &str,
    meta: Value,
) -> Response {
    json_response(
        status,
        HeaderMap::new(),
        &json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "status": code,
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": meta,
            }],
        }}),
    )
}

/// `POST /{version}/projects/{p}/locations/{l}/publishers/{pub}/models/{m}:{method}`.
pub async fn predict(
    State(sim): State<Arc<Sim>>,
    Extension(oauth): Extension<Arc<OAuth>>,
    Path(t): Path<Target>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if let Err(why) = oauth.check_bearer(&headers) {
        let reason = match why {
            oauth::BearerRefusal::Expired => "ACCESS_TOKEN_EXPIRED",
            oauth::BearerRefusal::Unknown => "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            oauth::BearerRefusal::Missing => "CREDENTIALS_MISSING",
        };
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            reason,
            json!({"service": "aiplatform.googleapis.com", "method": "google.cloud.aiplatform.v1.PredictionService.GenerateContent"}),
        );
    }
    let (model, method) = t.target.rsplit_once(':').unwrap_or((t.target.as_str(), ""));
    let resource = format!(
        "projects/{}/locations/{}/publishers/{}/models/{model}",
        t.project, t.location, t.publisher
    );
    if oauth
        .settings
        .project
        .as_ref()
        .is_some_and(|p| *p != t.project)
    {
        oauth.count_denied();
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/{resource}' (or it may not exist)."),
            "IAM_PERMISSION_DENIED",
            json!({"permission": "aiplatform.endpoints.predict", "resource": resource}),
        );
    }
    let api = if t.publisher == "anthropic" {
        Api::Anthropic
    } else {
        Api::Gemini
    };
    let mut m = match parse_body(&headers, &raw) {
        Ok(m) => m,
        Err(msg) => return error(&sim, api, ErrKind::BadRequest, &msg, None),
    };
    match (t.publisher.as_str(), method) {
        ("google", "generateContent") => crate::gemini::answer(sim, model, &headers, &m).await,
        ("google", "countTokens") => crate::gemini::count_tokens(&sim, model, &m),
        ("anthropic", "rawPredict") => {
            match m.remove("anthropic_version") {
                Some(Value::String(v))
                    if crate::wire::anthropic_version_ok(&v, ANTHROPIC_VERTEX_VERSION) => {}
                other => {
                    return error(
                        &sim,
                        Api::Anthropic,
                        ErrKind::BadRequest,
                        &format!(
                            "anthropic_version: Input should be '{ANTHROPIC_VERTEX_VERSION}', got {}",
                            other.map(|v| v.to_string()).unwrap_or_else(|| "nothing (Field required)".into())
                        ),
                        None,
                    )
                }
            }
            if model == "count-tokens" {
                return crate::anthropic::count(&sim, &m);
            }
            if m.contains_key("model") {
                return error(
                    &sim,
                    Api::Anthropic,
                    ErrKind::BadRequest,
                    "model: Extra inputs are not permitted (on Vertex AI the model is in the URL)",
                    None,
                );
            }
            m.insert("model".into(), json!(model));
            crate::anthropic::answer(sim, &headers, &m).await
        }
        _ => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Publisher Model `{resource}` was not found or your project does not have access to it (method {method:?})."),
            "NOT_FOUND",
            json!({}),
        ),
    }
}

/// `POST /token`.
pub async fn token(
    Extension(oauth): Extension<Arc<OAuth>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    oauth.token(host, &form)
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/token`.
pub async fn metadata_token(
    Extension(oauth): Extension<Arc<OAuth>>,
    headers: HeaderMap,
) -> Response {
    oauth.metadata_token(&headers)
}

/// `GET /_sim/gcp`.
pub async fn report(Extension(oauth): Extension<Arc<OAuth>>) -> Response {
    json_response(StatusCode::OK, HeaderMap::new(), &oauth.report())
}

/// The Vertex and token routes, added to the simulator's router.
pub fn routes(router: axum::Router<Arc<Sim>>, sim: &Sim) -> axum::Router<Arc<Sim>> {
    use axum::routing::{get, post};
    let oauth = Arc::new(OAuth::new(sim.config.gcp.clone()));
    let vertex = "/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}";
    router
        .route(&format!("/v1{vertex}"), post(predict))
        .route(&format!("/v1beta1{vertex}"), post(predict))
        .route("/token", post(token))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(metadata_token),
        )
        .route("/_sim/gcp", get(report))
        .layer(Extension(oauth))
}
