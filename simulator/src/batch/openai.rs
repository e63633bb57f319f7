//! OpenAI's Batch API: JSONL input uploaded to `POST /v1/files`
//! (`purpose=batch`, multipart), `POST /v1/batches` naming the file, the
//! endpoint (`/v1/chat/completions`, or `/v1/responses`) and the 24h
//! window; `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`,
//! `GET /v1/batches` (`after`, `limit`); results in an output file and an
//! error file (`GET /v1/files/{id}/content`).
//!
//! Each input line is `{custom_id, method, url, body}`. The batch's
//! validation reads them all: a line that is not JSON, lacks a field, names
//! another method or URL, repeats a custom id, names another model than the
//! first line, or carries a body the endpoint would refuse fails the whole
//! batch, with one entry per problem in `errors` naming the line. A file
//! holds at most [`MAX_REQUESTS`] requests and [`MAX_FILE_BYTES`] bytes.
//! Output lines are `{id, custom_id, response: {status_code, request_id,
//! body}, error}`; errored lines (status 4xx/5xx) and expired or cancelled
//! ones (`error.code` `batch_expired`, `batch_cancelled`) go to the error
//! file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::store::{File, Inner};
use super::{settle, Batch, Done, InputError, Job, Jobs, Phase};
use crate::engine::{Query, Sim};
use crate::openai::{
    bearer, chat_body, chat_query, refuses_n, responses_body, responses_query, Bad, ResponsesReq,
};
use crate::wire::{error, json_response, Api, ErrKind};

/// The most requests one batch input file may hold.
pub const MAX_REQUESTS: usize = 50_000;
/// The largest batch input file, in bytes (200 MB).
pub const MAX_FILE_BYTES: usize = 200 * 1000 * 1000;
/// The largest file of any purpose (512 MB): the upload route's body limit.
pub const MAX_UPLOAD_BYTES: usize = 512 * 1000 * 1000;
/// The endpoints a batch may name here.
/// (`/chat/completions` is Azure OpenAI's name for Chat Completions.)
pub const ENDPOINTS: &[&str] = &["/v1/chat/completions", "/v1/responses", "/chat/completions"];
/// Purposes `POST /v1/files` accepts.
const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];
/// Fields of `CreateBatchRequest`.
const CREATE_FIELDS: &[&str] = &[
    "completion_window",
    "endpoint",
    "input_file_id",
    "metadata",
    "output_expires_after",
];
/// Fields of an input line.
const LINE_FIELDS: &[&str] = &["body", "custom_id", "method", "url"];
/// A day, the completion window.
const WINDOW_SECS: i64 = 24 * 3600;
/// How long batch files are kept (30 days).
const FILE_TTL_SECS: i64 = 30 * 24 * 3600;

fn unauthorized(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    (!sim.key_ok(bearer(headers))).then(|| {
        error(
            sim,
            Api::OpenAi,
            ErrKind::Auth,
            "Incorrect API key provided.",
            None,
        )
    })
}

fn bad(sim: &Sim, msg: &str, param: Option<&str>) -> Response {
    error(sim, Api::OpenAi, ErrKind::BadRequest, msg, param)
}

/// OpenAI's 404 for an object that does not exist.
fn no_such(what: &str, id: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        HeaderMap::new(),
        &json!({"error": {"message": format!("No such {what}: {id}"),
                          "type": "invalid_request_error", "param": "id", "code": null}}),
    )
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// The `File` object.
fn file_json(f: &File) -> Value {
    let mut v = json!({
        "id": f.id,
        "object": "file",
        "bytes": f.bytes.len(),
        "created_at": ts(f.created_at),
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
    });
    if f.purpose.starts_with("batch") {
        v["expires_at"] = json!(ts(f.created_at) + FILE_TTL_SECS);
    }
    v
}

/// `POST /v1/files` (multipart: `file`, `purpose`).
pub async fn upload_file(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthorized(&sim, &headers) {
        return r;
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = super::multipart::boundary(ct) else {
        return bad(
            &sim,
            &format!("Invalid Content-Type header ({ct}); a file is uploaded as multipart/form-data with the fields 'file' and 'purpose'."),
            None,
        );
    };
    let parts = match super::multipart::parse(&body, &boundary) {
        Ok(p) => p,
        Err(e) => {
            return bad(
                &sim,
                &format!("Could not parse the multipart form: {e}."),
                None,
            )
        }
    };
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let Some(purpose) = field("purpose").map(|p| String::from_utf8_lossy(&p.data).to_string())
    else {
        return bad(
            &sim,
            "Missing required parameter: 'purpose'.",
            Some("purpose"),
        );
    };
    if !PURPOSES.contains(&purpose.as_str()) {
        return bad(
            &sim,
            &format!(
                "Invalid value for 'purpose': '{purpose}'. Expected one of {}.",
                PURPOSES.join(", ")
            ),
            Some("purpose"),
        );
    }
    let Some(file) = field("file") else {
        return bad(&sim, "Missing required parameter: 'file'.", Some("file"));
    };
    if let Some(p) = parts.iter().find(|p| {
        ![
            "file",
            "purpose",
            "expires_after[anchor]",
            "expires_after[seconds]",
        ]
        .contains(&p.name.as_str())
    }) {
        return bad(
            &sim,
            &format!("Unrecognized request argument supplied: {}", p.name),
            None,
        );
    }
    let filename = file.filename.clone().unwrap_or_else(|| "upload".into());
    if purpose == "batch" {
        if !filename.ends_with(".jsonl") {
            return bad(
                &sim,
                "Invalid file format for Batch API. Must be .jsonl",
                Some("file"),
            );
        }
        if file.data.len() > MAX_FILE_BYTES {
            return bad(
                &sim,
                &format!("File is too large: {} bytes; a batch input file may be at most 200 MB. Split the requests over several files.", file.data.len()),
                Some("file"),
            );
        }
    }
    let f = File {
        id: format!("file-sim{:016x}", sim.next_id()),
        filename,
        purpose,
        created_at: Utc::now(),
        bytes: file.data.clone(),
    };
    let v = file_json(&f);
    sim.batches.with(|i| i.files.insert(f.id.clone(), f));
    json_response(StatusCode::OK, HeaderMap::new(), &v)
}

/// `GET /v1/files/{id}`.
pub async fn get_file(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&sim, &headers) {
        return r;
    }
    match sim.batches.with(|i| i.files.get(&id).map(file_json)) {
        Some(v) => json_response(StatusCode::OK, HeaderMap::new(), &v),
        None => no_such("File object", &id),
    }
}

/// `GET /v1/files/{id}/content`: the file's bytes.
pub async fn file_content(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&sim, &headers) {
        return r;
    }
    match sim
        .batches
        .with(|i| i.files.get(&id).map(|f| f.bytes.clone()))
    {
        Some(bytes) => {
            let mut r = (StatusCode::OK, bytes).into_response();
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        None => no_such("File object", &id),
    }
}

/// A Chat Completions line.
struct ChatLine {
    q: Query,
    logprobs: bool,
}

impl Job for ChatLine {
    fn run(&self, sim: &Sim) -> Done {
        if let Some(msg) = refuses_n(sim, &self.q) {
            return Done::Errored {
                status: 400,
                body: Api::OpenAi.error_body(ErrKind::BadRequest, msg, Some("n"), sim),
            };
        }
        let outcome = sim.decide_batch_line(&self.q);
        settle(sim, Api::OpenAi, &self.q.key, outcome, |a| {
            chat_body(sim, &self.q.key, a, self.logprobs)
        })
    }
}

/// A Responses line.
struct ResponsesLine(ResponsesReq);

impl Job for ResponsesLine {
    fn run(&self, sim: &Sim) -> Done {
        let outcome = sim.decide_batch_line(&self.0.query);
        settle(sim, Api::OpenAi, &self.0.query.key, outcome, |a| {
            responses_body(sim, &self.0, a)
        })
    }
}

/// The input file's lines as jobs, the model they name, and every problem
/// that fails the batch.
type Read = (String, Jobs, Vec<InputError>);

fn read_input(sim: &Sim, bytes: &[u8], endpoint: &str) -> Read {
    let mut errors = Vec::new();
    let mut jobs: Jobs = Vec::new();
    let mut model = String::new();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            errors.push(InputError {
                code: "invalid_file_encoding",
                message: format!("The input file is not UTF-8 ({e}); write the JSONL as UTF-8."),
                param: None,
                line: None,
            });
            return (model, jobs, errors);
        }
    };
    let lines: Vec<(usize, &str)> = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    if lines.is_empty() {
        errors.push(InputError {
            code: "empty_file",
            message: "The input file has no requests.".into(),
            param: None,
            line: None,
        });
        return (model, jobs, errors);
    }
    if lines.len() > MAX_REQUESTS {
        errors.push(InputError {
            code: "too_many_requests",
            message: format!(
                "The input file has {} requests; a batch holds at most {MAX_REQUESTS}. Split the requests over several batches.",
                lines.len()
            ),
            param: None,
            line: None,
        });
        return (model, jobs, errors);
    }
    let mut seen = HashSet::new();
    for (n, raw) in lines {
        let mut fail = |code: &'static str, message: String, param: Option<String>| {
            errors.push(InputError {
                code,
                message,
                param,
                line: Some(n),
            })
        };
        let line: Map<String, Value> = match serde_json::from_str(raw) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                fail(
                    "invalid_json_line",
                    format!("Line {n} is not a JSON object."),
                    None,
                );
                continue;
            }
            Err(e) => {
                fail(
                    "invalid_json_line",
                    format!("Line {n} is not valid JSON: {e}."),
                    None,
                );
                continue;
            }
        };
        if let Some(k) = line.keys().find(|k| !LINE_FIELDS.contains(&k.as_str())) {
            fail("invalid_request", format!("Line {n}: unrecognized field '{k}'; a line has custom_id, method, url and body."), Some(k.clone()));
            continue;
        }
        let custom_id = match line.get("custom_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                fail(
                    "missing_required_parameter",
                    format!("Line {n}: 'custom_id' is missing or not a non-empty string."),
                    Some("custom_id".into()),
                );
                continue;
            }
        };
        if line.get("method").and_then(Value::as_str) != Some("POST") {
            fail(
                "invalid_method",
                format!("Line {n}: 'method' must be \"POST\"."),
                Some("method".into()),
            );
            continue;
        }
        match line.get("url").and_then(Value::as_str) {
            Some(u) if u == endpoint => {}
            other => {
                fail("invalid_url", format!("Line {n}: 'url' is {other:?}; every line of this batch must use the batch's endpoint {endpoint}."), Some("url".into()));
                continue;
            }
        }
        let Some(Value::Object(body)) = line.get("body") else {
            fail(
                "missing_required_parameter",
                format!("Line {n}: 'body' is missing or not an object."),
                Some("body".into()),
            );
            continue;
        };
        if !seen.insert(custom_id.clone()) {
            fail("duplicate_custom_id", format!("Line {n}: the custom_id '{custom_id}' is used by an earlier line; custom ids must be unique within a batch."), Some("custom_id".into()));
            continue;
        }
        let job: Result<(String, Box<dyn Job>), Bad> = if endpoint == "/v1/responses" {
            responses_query(body).map(|r| {
                (
                    r.query.key.clone(),
                    Box::new(ResponsesLine(r)) as Box<dyn Job>,
                )
            })
        } else {
            chat_query(body).map(|(q, logprobs)| {
                (
                    q.key.clone(),
                    Box::new(ChatLine { q, logprobs }) as Box<dyn Job>,
                )
            })
        };
        let (key, job) = match job {
            Ok(x) => x,
            Err(Bad(msg, param)) => {
                fail(
                    "invalid_request",
                    format!("Line {n}: {msg}"),
                    Some(format!("body.{}", param.unwrap_or("")))
                        .map(|p| p.trim_end_matches('.').to_string()),
                );
                continue;
            }
        };
        if model.is_empty() {
            model = key.clone();
            if !sim.knows(&key) {
                fail("model_not_found", format!("Line {n}: the model `{key}` does not exist or you do not have access to it."), Some("body.model".into()));
                continue;
            }
        } else if key != model {
            fail("mismatched_model", format!("Line {n}: the model '{key}' differs from the first line's '{model}'; a batch uses one model."), Some("body.model".into()));
            continue;
        }
        jobs.push((custom_id, job));
    }
    (model, jobs, errors)
}

fn status_of(p: Phase) -> &'static str {
    match p {
        Phase::Validating => "validating",
        Phase::InProgress => "in_progress",
        Phase::Finalizing => "finalizing",
        Phase::Cancelling => "cancelling",
        Phase::Failed => "failed",
        Phase::Completed => "completed",
        Phase::Expired => "expired",
        Phase::Cancelled => "cancelled",
    }
}

/// The `Batch` object. Times not reached yet are left out (the schema
/// types them as integers).
fn batch_json(b: &Batch) -> Value {
    let c = b.counts();
    let (input, output) = b.usage();
    let created = ts(b.created_at);
    let mut v = json!({
        "id": b.id,
        "object": "batch",
        "endpoint": b.attrs.get("endpoint").cloned().unwrap_or(Value::Null),
        "model": b.model,
        "input_file_id": b.attrs.get("input_file_id").cloned().unwrap_or(Value::Null),
        "completion_window": "24h",
        "status": status_of(b.phase),
        "created_at": created,
        "expires_at": created + WINDOW_SECS,
        "request_counts": {
            "total": c.total,
            "completed": c.succeeded,
            "failed": c.errored + c.expired + c.canceled,
        },
        "usage": {
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output,
        },
        "metadata": b.attrs.get("metadata").cloned().unwrap_or(Value::Null),
    });
    let mut put = |k: &str, t: Option<DateTime<Utc>>| {
        if let Some(t) = t {
            v[k] = json!(ts(t));
        }
    };
    put("in_progress_at", b.stamps.in_progress);
    put("finalizing_at", b.stamps.finalizing);
    put("cancelling_at", b.stamps.cancelling);
    let end = match b.phase {
        Phase::Completed => Some("completed_at"),
        Phase::Failed => Some("failed_at"),
        Phase::Expired => Some("expired_at"),
        Phase::Cancelled => Some("cancelled_at"),
        _ => None,
    };
    if let Some(k) = end {
        put(k, b.stamps.ended);
    }
    if let Some(id) = &b.output_file_id {
        v["output_file_id"] = json!(id);
    }
    if let Some(id) = &b.error_file_id {
        v["error_file_id"] = json!(id);
    }
    if !b.errors.is_empty() {
        let data: Vec<Value> = b
            .errors
            .iter()
            .map(
                |e| json!({"code": e.code, "message": e.message, "param": e.param, "line": e.line}),
            )
            .collect();
        v["errors"] = json!({"object": "list", "data": data});
    }
    v
}

/// Brings batch `id` up to date and, once it has ended, writes its output
/// and error files; its `Batch` object.
fn refresh(sim: &Sim, inner: &mut Inner, id: &str) -> Option<Value> {
    let b = inner.batches.get_mut(id).filter(|b| b.api == Api::OpenAi)?;
    b.advance(sim);
    let write = matches!(
        b.phase,
        Phase::Completed | Phase::Expired | Phase::Cancelled
    ) && !b.results_written;
    if write {
        let (mut out, mut err) = (String::new(), String::new());
        for l in &b.lines {
            let id = format!("batch_req_sim{:016x}", sim.next_id());
            let request_id = format!("req_sim{:016x}", sim.next_id());
            let (line, ok) = match &l.done {
                Some(Done::Answered { body, .. }) => (
                    json!({"id": id, "custom_id": l.custom_id,
                    "response": {"status_code": 200, "request_id": request_id, "body": body}, "error": null}),
                    true,
                ),
                Some(Done::Errored { status, body }) => (
                    json!({"id": id, "custom_id": l.custom_id,
                    "response": {"status_code": status, "request_id": request_id, "body": body}, "error": null}),
                    false,
                ),
                Some(Done::Expired) => (
                    json!({"id": id, "custom_id": l.custom_id, "response": null,
                    "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}),
                    false,
                ),
                Some(Done::Canceled) | None => (
                    json!({"id": id, "custom_id": l.custom_id, "response": null,
                    "error": {"code": "batch_cancelled", "message": "This request was not executed because the batch was cancelled."}}),
                    false,
                ),
            };
            let to = if ok { &mut out } else { &mut err };
            to.push_str(&line.to_string());
            to.push('\n');
        }
        b.results_written = true;
        let mut files = Vec::new();
        for (text, kind, slot) in [
            (out, "output", &mut b.output_file_id),
            (err, "error", &mut b.error_file_id),
        ] {
            if text.is_empty() {
                continue;
            }
            let f = File {
                id: format!("file-sim{:016x}", sim.next_id()),
                filename: format!("{}_{kind}.jsonl", b.id),
                purpose: "batch_output".into(),
                created_at: Utc::now(),
                bytes: text.into_bytes(),
            };
            *slot = Some(f.id.clone());
            files.push(f);
        }
        for f in files {
            inner.files.insert(f.id.clone(), f);
        }
    }
    Some(batch_json(b))
}

/// `POST /v1/batches`.
pub async fn create_batch(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorized(&sim, &headers) {
        return r;
    }
    let m = match crate::wire::parse_body(&headers, &body) {
        Ok(m) => m,
        Err(msg) => return bad(&sim, &msg, None),
    };
    if let Some(k) = m.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return bad(
            &sim,
            &format!("Unrecognized request argument supplied: {k}"),
            None,
        );
    }
    let Some(file_id) = m.get("input_file_id").and_then(Value::as_str) else {
        return bad(
            &sim,
            "Missing required parameter: 'input_file_id'.",
            Some("input_file_id"),
        );
    };
    let endpoint = match m.get("endpoint").and_then(Value::as_str) {
        Some(e) if ENDPOINTS.contains(&e) => e.to_string(),
        Some(e) => {
            return bad(
                &sim,
                &format!(
                    "Invalid value for 'endpoint': '{e}'. This simulator batches {}.",
                    ENDPOINTS.join(" and ")
                ),
                Some("endpoint"),
            )
        }
        None => {
            return bad(
                &sim,
                "Missing required parameter: 'endpoint'.",
                Some("endpoint"),
            )
        }
    };
    match m.get("completion_window").and_then(Value::as_str) {
        Some("24h") => {}
        Some(w) => {
            return bad(
                &sim,
                &format!(
                    "Invalid value for 'completion_window': '{w}'. Supported values are: '24h'."
                ),
                Some("completion_window"),
            )
        }
        None => {
            return bad(
                &sim,
                "Missing required parameter: 'completion_window'.",
                Some("completion_window"),
            )
        }
    }
    let metadata = m.get("metadata").cloned().unwrap_or(Value::Null);
    if let Some(md) = metadata.as_object() {
        if md.len() > 16
            || md
                .iter()
                .any(|(k, v)| k.len() > 64 || v.as_str().is_none_or(|s| s.len() > 512))
        {
            return bad(
                &sim,
                "Invalid 'metadata': at most 16 pairs of string keys (64 characters) and string values (512 characters).",
                Some("metadata"),
            );
        }
    }
    let file = sim.batches.with(|i| i.files.get(file_id).cloned());
    let Some(file) = file else {
        return bad(
            &sim,
            &format!(
                "Cannot find file {file_id}; upload it to /v1/files with purpose=batch first."
            ),
            Some("input_file_id"),
        );
    };
    if file.purpose != "batch" {
        return bad(&sim, &format!("File {file_id} has purpose '{}'; a batch's input file must be uploaded with purpose 'batch'.", file.purpose), Some("input_file_id"));
    }
    let (model, jobs, errors) = read_input(&sim, &file.bytes, &endpoint);
    let id = format!("batch_sim{:016x}", sim.next_id());
    let mut batch = Batch::new(
        &sim,
        Api::OpenAi,
        id.clone(),
        model,
        jobs,
        Phase::Validating,
    );
    batch.errors = errors;
    batch.attrs.insert("endpoint".into(), json!(endpoint));
    batch.attrs.insert("input_file_id".into(), json!(file_id));
    batch.attrs.insert("metadata".into(), metadata);
    let v = batch_json(&batch);
    sim.batches.with(|i| i.insert(batch));
    super::answer_delay(&sim).await;
    json_response(StatusCode::OK, HeaderMap::new(), &v)
}

/// `GET /v1/batches/{id}`.
pub async fn get_batch(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&sim, &headers) {
        return r;
    }
    match sim.batches.with(|i| refresh(&sim, i, &id)) {
        Some(v) => json_response(StatusCode::OK, HeaderMap::new(), &v),
        None => no_such("batch", &id),
    }
}

/// `POST /v1/batches/{id}/cancel`.
pub async fn cancel_batch(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&sim, &headers) {
        return r;
    }
    let r = sim.batches.with(|i| {
        let b = i.batches.get_mut(&id).filter(|b| b.api == Api::OpenAi)?;
        let cancelled = b.cancel();
        if cancelled.is_ok() {
            i.cancelled(Api::OpenAi);
        }
        Some(cancelled.map(|_| i.batches.get(&id).map(batch_json).unwrap_or_default()))
    });
    match r {
        Some(Ok(v)) => json_response(StatusCode::OK, HeaderMap::new(), &v),
        Some(Err(msg)) => bad(&sim, &msg, None),
        None => no_such("batch", &id),
    }
}

/// `GET /v1/batches?after=&limit=`: newest first.
pub async fn list_batches(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    if let Some(r) = unauthorized(&sim, &headers) {
        return r;
    }
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => {
            return bad(
                &sim,
                "Invalid 'limit': expected an integer between 1 and 100.",
                Some("limit"),
            )
        }
    };
    let v = sim.batches.with(|i| {
        let ids = i.newest_first(Api::OpenAi);
        let start = match params.get("after") {
            Some(a) => ids
                .iter()
                .position(|x| x == a)
                .map(|p| p + 1)
                .unwrap_or(ids.len()),
            None => 0,
        };
        let page: Vec<String> = ids.iter().skip(start).take(limit).cloned().collect();
        let data: Vec<Value> = page.iter().filter_map(|id| refresh(&sim, i, id)).collect();
        json!({
            "object": "list",
            "data": data,
            "first_id": page.first(),
            "last_id": page.last(),
            "has_more": start + page.len() < ids.len(),
        })
    });
    let mut v = v;
    for k in ["first_id", "last_id"] {
        if v[k].is_null() {
            v.as_object_mut().map(|m| m.remove(k));
        }
    }
    json_response(StatusCode::OK, HeaderMap::new(), &v)
}
