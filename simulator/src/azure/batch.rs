//! Azure OpenAI's batch: the Files and Batches APIs of OpenAI under the
//! resource's routes (`/openai/files?api-version=...`,
//! `/openai/batches?api-version=...`, or the v1 API's `/openai/v1/files`,
//! `/openai/v1/batches`), with Azure's authentication. The lines name
//! `/chat/completions` and a Global-Batch deployment as their `model`; they
//! are answered by OpenAI's batch engine (`crate::batch::openai`).

// An axum `Response` is the refusal these checks return, as handlers do.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use super::{authenticate, check_version, permission_denied, Caller};
use crate::batch::openai as oai;
use crate::engine::Sim;

/// Checks version and caller; the headers OpenAI's batch handlers accept.
fn admit(
    sim: &Sim,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    v1: bool,
    path: &str,
) -> Result<HeaderMap, Response> {
    check_version(q, v1, path)?;
    if let Caller::Token(client) = authenticate(sim, headers, v1)? {
        if sim.config.azure.no_role.contains(&client) {
            return Err(permission_denied(&client, path));
        }
    }
    let mut h = headers.clone();
    h.remove("api-key");
    h.remove("authorization");
    if let Some(k) = &sim.config.api_key {
        if let Ok(v) = HeaderValue::try_from(format!("Bearer {k}")) {
            h.insert("authorization", v);
        }
    }
    Ok(h)
}

macro_rules! routes {
    ($v1:expr, $upload:ident, $create:ident, $list:ident, $get_file:ident, $content:ident, $get:ident, $cancel:ident) => {
        /// `POST .../files`.
        pub async fn $upload(
            State(sim): State<Arc<Sim>>,
            UrlQuery(q): UrlQuery<HashMap<String, String>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            match admit(&sim, &headers, &q, $v1, "/openai/files") {
                Ok(h) => oai::upload_file(State(sim), h, body).await,
                Err(r) => r,
            }
        }

        /// `POST .../batches`.
        pub async fn $create(
            State(sim): State<Arc<Sim>>,
            UrlQuery(q): UrlQuery<HashMap<String, String>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            match admit(&sim, &headers, &q, $v1, "/openai/batches") {
                Ok(h) => oai::create_batch(State(sim), h, body).await,
                Err(r) => r,
            }
        }

        /// `GET .../batches`.
        pub async fn $list(
            State(sim): State<Arc<Sim>>,
            UrlQuery(q): UrlQuery<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            match admit(&sim, &headers, &q, $v1, "/openai/batches") {
                Ok(h) => oai::list_batches(State(sim), h, UrlQuery(q)).await,
                Err(r) => r,
            }
        }

        /// `GET .../files/{id}`.
        pub async fn $get_file(
            State(sim): State<Arc<Sim>>,
            Path(id): Path<String>,
            UrlQuery(q): UrlQuery<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            match admit(&sim, &headers, &q, $v1, "/openai/files") {
                Ok(h) => oai::get_file(State(sim), h, Path(id)).await,
                Err(r) => r,
            }
        }

        /// `GET .../files/{id}/content`.
        pub async fn $content(
            State(sim): State<Arc<Sim>>,
            Path(id): Path<String>,
            UrlQuery(q): UrlQuery<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            match admit(&sim, &headers, &q, $v1, "/openai/files") {
                Ok(h) => oai::file_content(State(sim), h, Path(id)).await,
                Err(r) => r,
            }
        }

        /// `GET .../batches/{id}`.
        pub async fn $get(
            State(sim): State<Arc<Sim>>,
            Path(id): Path<String>,
            UrlQuery(q): UrlQuery<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            match admit(&sim, &headers, &q, $v1, "/openai/batches") {
                Ok(h) => oai::get_batch(State(sim), h, Path(id)).await,
                Err(r) => r,
            }
        }

        /// `POST .../batches/{id}/cancel`.
        pub async fn $cancel(
            State(sim): State<Arc<Sim>>,
            Path(id): Path<String>,
            UrlQuery(q): UrlQuery<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            match admit(&sim, &headers, &q, $v1, "/openai/batches") {
                Ok(h) => oai::cancel_batch(State(sim), h, Path(id)).await,
                Err(r) => r,
            }
        }
    };
}

routes!(false, upload, create, list, get_file, content, retrieve, cancel);
routes!(
    true,
    v1_upload,
    v1_create,
    v1_list,
    v1_get_file,
    v1_content,
    v1_retrieve,
    v1_cancel
);

/// The batch routes, on `router`.
pub fn routes(router: axum::Router<Arc<Sim>>) -> axum::Router<Arc<Sim>> {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    let limit = DefaultBodyLimit::max(oai::MAX_UPLOAD_BYTES + (1 << 20));
    router
        .route("/openai/files", post(upload).layer(limit))
        .route("/openai/files/{id}", get(get_file))
        .route("/openai/files/{id}/content", get(content))
        .route("/openai/batches", post(create).get(list))
        .route("/openai/batches/{id}", get(retrieve))
        .route("/openai/batches/{id}/cancel", post(cancel))
        .route("/openai/v1/files", post(v1_upload).layer(limit))
        .route("/openai/v1/files/{id}", get(v1_get_file))
        .route("/openai/v1/files/{id}/content", get(v1_content))
        .route("/openai/v1/batches", post(v1_create).get(v1_list))
        .route("/openai/v1/batches/{id}", get(v1_retrieve))
        .route("/openai/v1/batches/{id}/cancel", post(v1_cancel))
}
