//! Gemini's Files API, as far as batch mode uses it: the resumable upload
//! (`POST /upload/v1beta/files` with `X-Goog-Upload-Command: start`, which
//! answers an `x-goog-upload-url`; then chunks posted there with `upload`
//! and, last, `upload, finalize`), `GET /v1beta/files/{id}` (the `File`),
//! and `GET /v1beta/files/{id}:download?alt=media` (the bytes of a file a
//! batch wrote).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::rfc3339;
use super::store::File;
use crate::engine::Sim;
use crate::gemini::key_refusal;
use crate::wire::{error, json_response, Api, ErrKind};

/// The largest file (2 GB).
pub const MAX_FILE_BYTES: usize = 2 * 1000 * 1000 * 1000;
/// The largest chunk one upload request may carry.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024 * 1024;

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn bad(sim: &Sim, msg: &str) -> Response {
    error(sim, Api::Gemini, ErrKind::BadRequest, msg, None)
}

/// The `File` resource.
fn file_json(f: &File, host: &str) -> Value {
    let generated = f.purpose == "gemini-batch-output";
    let mut v = json!({
        "name": f.id,
        "displayName": f.filename,
        "mimeType": if generated { "application/jsonl" } else { f.purpose.trim_start_matches("gemini:") },
        "sizeBytes": f.bytes.len().to_string(),
        "createTime": rfc3339(f.created_at),
        "updateTime": rfc3339(f.created_at),
        "expirationTime": rfc3339(f.created_at + chrono::Duration::hours(48)),
        "uri": format!("http://{host}/v1beta/{}", f.id),
        "state": "ACTIVE",
        "source": if generated { "GENERATED" } else { "UPLOADED" },
    });
    if generated {
        v["downloadUri"] = json!(format!("http://{host}/v1beta/{}:download?alt=media", f.id));
    }
    v
}

fn host(h: &HeaderMap) -> String {
    let h = header(h, "host");
    if h.is_empty() {
        "127.0.0.1".into()
    } else {
        h.to_string()
    }
}

/// `POST /upload/v1beta/files`: starts an upload, or takes a chunk of one
/// (`?upload_id=`; as on Google's side the upload id, handed out to a
/// request with the key, is the chunks' credential).
pub async fn upload(
    State(sim): State<Arc<Sim>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let command = header(&headers, "x-goog-upload-command").to_ascii_lowercase();
    let Some(upload_id) = params.get("upload_id") else {
        if let Some(r) = key_refusal(&sim, &headers, &params) {
            return r;
        }
        if command != "start"
            || !header(&headers, "x-goog-upload-protocol").eq_ignore_ascii_case("resumable")
        {
            return bad(&sim, "A file upload starts with X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start.");
        }
        let meta: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let file = meta.get("file").cloned().unwrap_or(Value::Null);
        let size: usize = header(&headers, "x-goog-upload-header-content-length")
            .parse()
            .unwrap_or(0);
        if size > MAX_FILE_BYTES {
            return bad(
                &sim,
                &format!("The file is {size} bytes; files may be at most 2 GB."),
            );
        }
        let id = format!("sim{:016x}", sim.next_id());
        let name = file
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("files/{id}"));
        let display = file
            .get("displayName")
            .or_else(|| file.get("display_name"))
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_string();
        let mime = file
            .get("mimeType")
            .or_else(|| file.get("mime_type"))
            .and_then(Value::as_str)
            .unwrap_or(header(&headers, "x-goog-upload-header-content-type"))
            .to_string();
        sim.batches.with(|i| {
            i.uploads.insert(
                id.clone(),
                File {
                    id: name,
                    filename: display,
                    purpose: format!("gemini:{mime}"),
                    created_at: chrono::Utc::now(),
                    bytes: Vec::new(),
                },
            )
        });
        let mut h = HeaderMap::new();
        let url = format!(
            "http://{}/upload/v1beta/files?upload_id={id}&upload_protocol=resumable",
            host(&headers)
        );
        if let Ok(v) = HeaderValue::try_from(url) {
            h.insert("x-goog-upload-url", v);
        }
        h.insert("x-goog-upload-status", HeaderValue::from_static("active"));
        return json_response(StatusCode::OK, h, &json!({}));
    };
    if !command.starts_with("upload") {
        return bad(
            &sim,
            "A chunk of an upload carries X-Goog-Upload-Command: upload (and, last, finalize).",
        );
    }
    let offset: usize = header(&headers, "x-goog-upload-offset")
        .parse()
        .unwrap_or(0);
    let finalize = command.contains("finalize");
    let done = sim.batches.with(|i| {
        let up = i
            .uploads
            .get_mut(upload_id)
            .ok_or_else(|| format!("No upload {upload_id} in progress."))?;
        if offset != up.bytes.len() {
            return Err(format!(
                "X-Goog-Upload-Offset {offset} does not follow the {} bytes received.",
                up.bytes.len()
            ));
        }
        if up.bytes.len() + body.len() > MAX_FILE_BYTES {
            return Err("The file is over 2 GB.".to_string());
        }
        up.bytes.extend_from_slice(&body);
        if !finalize {
            return Ok(None);
        }
        let f = i
            .uploads
            .remove(upload_id)
            .ok_or_else(|| "lost upload".to_string())?;
        i.files.insert(f.id.clone(), f.clone());
        Ok(Some(f))
    });
    let mut h = HeaderMap::new();
    match done {
        Ok(None) => {
            h.insert("x-goog-upload-status", HeaderValue::from_static("active"));
            json_response(StatusCode::OK, h, &json!({}))
        }
        Ok(Some(f)) => {
            h.insert("x-goog-upload-status", HeaderValue::from_static("final"));
            json_response(
                StatusCode::OK,
                h,
                &json!({"file": file_json(&f, &host(&headers))}),
            )
        }
        Err(msg) => bad(&sim, &msg),
    }
}

/// `GET /v1beta/files/{id}` and `GET /v1beta/files/{id}:download?alt=media`.
pub async fn get(
    State(sim): State<Arc<Sim>>,
    Path(target): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = key_refusal(&sim, &headers, &params) {
        return r;
    }
    let (id, download) = match target.strip_suffix(":download") {
        Some(id) => (id, true),
        None => (target.as_str(), false),
    };
    let name = format!("files/{id}");
    let Some(f) = sim.batches.with(|i| i.files.get(&name).cloned()) else {
        return error(
            &sim,
            Api::Gemini,
            ErrKind::NotFound,
            &format!("File {name} not found."),
            None,
        );
    };
    if !download {
        return json_response(
            StatusCode::OK,
            HeaderMap::new(),
            &file_json(&f, &host(&headers)),
        );
    }
    if f.purpose != "gemini-batch-output" {
        return bad(
            &sim,
            &format!("File {name} was uploaded; only files the API generated can be downloaded."),
        );
    }
    let mut r = (StatusCode::OK, f.bytes).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}
