//! Gemini's batch mode: `POST /v1beta/models/{model}:batchGenerateContent`
//! with `batch: {displayName, inputConfig: {requests: {requests: [{request,
//! metadata}]}}}` (inline requests, at most [`MAX_INLINE_BYTES`] in all),
//! answered with a long-running operation named `batches/{id}`;
//! `GET /v1beta/batches/{id}` (the operation, its `metadata` the
//! `GenerateContentBatch` with `state` and `batchStats`, and once done the
//! `inlinedResponses` in request order, each with its request's
//! `metadata`), `POST /v1beta/batches/{id}:cancel`,
//! `DELETE /v1beta/batches/{id}` and `GET /v1beta/batches` (`pageSize`,
//! `pageToken`).
//!
//! A request with a field Google's parser does not know refuses the whole
//! batch (400, naming the request); a request the endpoint would refuse
//! otherwise ends with its own error status. A batch may instead read a
//! JSONL file uploaded to the Files API (`inputConfig.fileName`, lines
//! `{"key", "request"}`, see [`super::gemini_files`]); its results are then
//! a `responsesFile` of `{"key", "response" | "error"}` lines, and a line
//! that is not a request fails the batch (the operation's `error` names
//! it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::store::{File, Inner};
use super::{rfc3339, settle, Batch, Done, InputError, Job, Jobs, Phase, Refused};
use crate::engine::{Query, Sim};
use crate::gemini::{
    body as content_body, check_fields, field, key_refusal, query, refuse, refuses_candidates,
    Refusal,
};
use crate::wire::{error, json_response, Api, ErrKind};
use moralsweep_common::hash::fnv1a_parts;

/// The largest batch creation body with inline requests (20 MB).
pub const MAX_INLINE_BYTES: usize = 20 * 1024 * 1024;
const BATCH_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch";
const OUTPUT_TYPE: &str =
    "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput";
/// Fields of `GenerateContentBatch` a request may set.
const BATCH_FIELDS: &[&str] = &["displayName", "inputConfig", "model", "name", "priority"];
const INPUT_FIELDS: &[&str] = &["fileName", "requests"];
const INLINED_FIELDS: &[&str] = &["metadata", "request"];

/// One inline request.
struct ContentLine {
    q: Query,
    thinking: u64,
}

impl Job for ContentLine {
    fn run(&self, sim: &Sim) -> Done {
        if let Some(r) = refuses_candidates(sim, &self.q) {
            return Done::Errored {
                status: 400,
                body: Api::Gemini.error_body(ErrKind::BadRequest, &r.message, None, sim),
            };
        }
        let outcome = sim.decide_batch_line(&self.q);
        let logprobs = self.q.top_logprobs.is_some();
        settle(sim, Api::Gemini, &self.q.key, outcome, |a| {
            content_body(sim, &self.q.key, a, logprobs, self.thinking)
        })
    }
}

/// The job of one request; a field Google's parser does not know refuses
/// it (the caller refuses the batch), other refusals make it a line that
/// ends with its own error.
fn job_of(sim: &Sim, model: &str, request: &Map<String, Value>) -> Result<Box<dyn Job>, Refusal> {
    let mut request = request.clone();
    // A request may name its model; it is the batch's.
    request.remove("model");
    match query(model.to_string(), &request) {
        Ok((q, thinking)) => Ok(Box::new(ContentLine { q, thinking })),
        Err(r) if r.message.starts_with("Invalid JSON payload") => Err(r),
        Err(r) => Ok(Box::new(Refused {
            status: 400,
            body: Api::Gemini.error_body(ErrKind::BadRequest, &r.message, None, sim),
        })),
    }
}

/// The lines of an uploaded JSONL input file (`{"key", "request"}` each),
/// and the problems that fail the batch, naming their lines.
fn read_file(sim: &Sim, model: &str, bytes: &[u8]) -> (Jobs, Vec<InputError>) {
    let mut lines: Jobs = Vec::new();
    let mut errors = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    for (i, raw) in text
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let n = i + 1;
        let mut fail = |message: String| {
            errors.push(InputError {
                code: "invalid_argument",
                message,
                param: None,
                line: Some(n),
            })
        };
        let v: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                fail(format!("line {n} of the input file is not JSON: {e}"));
                continue;
            }
        };
        let Some(request) = v.get("request").and_then(Value::as_object) else {
            fail(format!(
                "line {n} of the input file has no \"request\" object"
            ));
            continue;
        };
        let key = match v.get("key") {
            Some(Value::String(k)) => k.clone(),
            _ => format!("{}", lines.len()),
        };
        match job_of(sim, model, request) {
            Ok(job) => lines.push((key, job)),
            Err(r) => fail(format!("line {n}: {}", r.message)),
        }
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(InputError {
            code: "invalid_argument",
            message: "the input file has no requests".into(),
            param: None,
            line: None,
        });
    }
    (lines, errors)
}

fn bad(sim: &Sim, message: String, field: Option<String>) -> Response {
    refuse(sim, Refusal { message, field })
}

/// `POST /v1beta/models/{model}:batchGenerateContent` (the body parsed,
/// `bytes` long).
pub fn create(sim: &Sim, model: &str, m: &Map<String, Value>, bytes: usize) -> Response {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if bytes > MAX_INLINE_BYTES {
        return bad(
            sim,
            format!("Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes. Inline batch requests may total at most 20 MB; split them over several batches."),
            None,
        );
    }
    if let Err(r) = check_fields(m, &["batch"], "") {
        return refuse(sim, r);
    }
    let Some(b) = field(m, "batch").and_then(Value::as_object) else {
        return bad(
            sim,
            "* BatchGenerateContentRequest.batch: batch is not specified".into(),
            Some("batch".into()),
        );
    };
    if let Err(r) = check_fields(b, BATCH_FIELDS, "batch") {
        return refuse(sim, r);
    }
    let display_name = field(b, "displayName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if display_name.is_empty() {
        return bad(
            sim,
            "* GenerateContentBatch.display_name: display_name is required".into(),
            Some("batch.display_name".into()),
        );
    }
    let empty = Map::new();
    let input = field(b, "inputConfig")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Err(r) = check_fields(input, INPUT_FIELDS, "batch.input_config") {
        return refuse(sim, r);
    }
    if let Some(name) = field(input, "fileName") {
        let Some(file) = name
            .as_str()
            .and_then(|n| sim.batches.with(|i| i.files.get(n).cloned()))
        else {
            return bad(
                sim,
                format!("File {name} not found; upload the JSONL input to the Files API first (POST /upload/v1beta/files)."),
                Some("batch.input_config.file_name".into()),
            );
        };
        let (lines, errors) = read_file(sim, model, &file.bytes);
        let id = format!("batches/sim{:016x}", sim.next_id());
        let mut batch = Batch::new(
            sim,
            Api::Gemini,
            id,
            model.to_string(),
            lines,
            Phase::Validating,
        );
        batch.errors = errors;
        batch
            .attrs
            .insert("displayName".into(), json!(display_name));
        batch.attrs.insert("inputFile".into(), json!(file.id));
        let v = operation(&batch);
        sim.batches.with(|i| i.insert(batch));
        return json_response(StatusCode::OK, HeaderMap::new(), &v);
    }
    let Some(requests) = field(input, "requests")
        .and_then(|r| r.as_object())
        .and_then(|r| r.get("requests"))
        .and_then(Value::as_array)
    else {
        return bad(sim, "* GenerateContentBatch.input_config: requests is required (input_config.requests.requests)".into(), Some("batch.input_config".into()));
    };
    if requests.is_empty() {
        return bad(
            sim,
            "* GenerateContentBatch.input_config.requests: at least one request is required".into(),
            Some("batch.input_config.requests".into()),
        );
    }
    let mut lines: Jobs = Vec::with_capacity(requests.len());
    let mut metadata = Vec::with_capacity(requests.len());
    for (i, item) in requests.iter().enumerate() {
        let at = format!("batch.input_config.requests.requests[{i}]");
        let Some(item) = item.as_object() else {
            return bad(
                sim,
                format!("Invalid JSON payload received. '{at}' is not an object."),
                Some(at),
            );
        };
        if let Err(r) = check_fields(item, INLINED_FIELDS, &at) {
            return refuse(sim, r);
        }
        let request = field(item, "request")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let md = field(item, "metadata").cloned().unwrap_or(Value::Null);
        let custom_id = match &md {
            Value::Null => format!(
                "{i}:{:016x}",
                fnv1a_parts(&[Value::Object(request.clone()).to_string().as_bytes()])
            ),
            v => v.to_string(),
        };
        let job = match job_of(sim, model, &request) {
            Ok(job) => job,
            Err(r) => {
                return bad(
                    sim,
                    format!("{} (in {at}.request)", r.message),
                    Some(format!(
                        "{at}.request{}",
                        r.field.map(|f| format!(".{f}")).unwrap_or_default()
                    )),
                )
            }
        };
        lines.push((custom_id, job));
        metadata.push(md);
    }
    let id = format!("batches/sim{:016x}", sim.next_id());
    let mut batch = Batch::new(
        sim,
        Api::Gemini,
        id,
        model.to_string(),
        lines,
        Phase::Validating,
    );
    batch
        .attrs
        .insert("displayName".into(), json!(display_name));
    batch
        .attrs
        .insert("metadata".into(), Value::Array(metadata));
    let v = operation(&batch);
    sim.batches.with(|i| i.insert(batch));
    json_response(StatusCode::OK, HeaderMap::new(), &v)
}

fn state_of(p: Phase) -> &'static str {
    match p {
        Phase::Validating => "BATCH_STATE_PENDING",
        Phase::InProgress | Phase::Finalizing | Phase::Cancelling => "BATCH_STATE_RUNNING",
        Phase::Completed => "BATCH_STATE_SUCCEEDED",
        Phase::Failed => "BATCH_STATE_FAILED",
        Phase::Expired => "BATCH_STATE_EXPIRED",
        Phase::Cancelled => "BATCH_STATE_CANCELLED",
    }
}

/// The gRPC code of an HTTP status, as a `google.rpc.Status` carries it.
fn rpc_code(status: u16) -> u16 {
    match status {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        429 => 8,
        503 => 14,
        504 => 4,
        _ => 13,
    }
}

/// One entry of `inlinedResponses`.
fn inlined(done: &Done, metadata: &Value) -> Value {
    let mut v = match done {
        Done::Answered { body, .. } => json!({"response": body}),
        Done::Errored { status, body } => json!({"error": {
            "code": rpc_code(*status),
            "message": body.pointer("/error/message").cloned().unwrap_or(Value::Null),
        }}),
        Done::Expired => {
            json!({"error": {"code": 4, "message": "The request was not processed before the batch expired."}})
        }
        Done::Canceled => {
            json!({"error": {"code": 1, "message": "The request was not processed because the batch was cancelled."}})
        }
    };
    if !metadata.is_null() {
        v["metadata"] = metadata.clone();
    }
    v
}

/// Once a batch read from a file has ended, writes its responses file:
/// one `{"key", "response"}` or `{"key", "error"}` line per request, in
/// order.
fn write_responses(sim: &Sim, inner: &mut Inner, name: &str) {
    let Some(b) = inner.batches.get_mut(name) else {
        return;
    };
    if !b.phase.ended()
        || b.phase == Phase::Failed
        || b.results_written
        || !b.attrs.contains_key("inputFile")
    {
        return;
    }
    let mut text = String::new();
    for l in &b.lines {
        let mut line = inlined(l.done.as_ref().unwrap_or(&Done::Canceled), &Value::Null);
        line["key"] = json!(l.custom_id);
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let file = File {
        id: format!("files/simout{:016x}", sim.next_id()),
        filename: format!("{name} responses"),
        purpose: "gemini-batch-output".into(),
        created_at: chrono::Utc::now(),
        bytes: text.into_bytes(),
    };
    b.attrs.insert("responsesFile".into(), json!(file.id));
    b.results_written = true;
    inner.files.insert(file.id.clone(), file);
}

/// The batch as a long-running operation.
fn operation(b: &Batch) -> Value {
    let c = b.counts();
    let now = chrono::Utc::now();
    let done = b.phase.ended();
    let mut md = json!({
        "@type": BATCH_TYPE,
        "model": format!("models/{}", b.model),
        "displayName": b.attrs.get("displayName").cloned().unwrap_or(Value::Null),
        "name": b.id,
        "createTime": rfc3339(b.created_at),
        "updateTime": rfc3339(now),
        "state": state_of(b.phase),
        "batchStats": {
            "requestCount": c.total.to_string(),
            "successfulRequestCount": c.succeeded.to_string(),
            "failedRequestCount": (c.errored + c.expired + c.canceled).to_string(),
            "pendingRequestCount": c.pending.to_string(),
        },
    });
    let mut op = json!({"name": b.id, "done": done});
    if let Some(t) = b.stamps.ended.filter(|_| done) {
        md["endTime"] = json!(rfc3339(t));
    }
    if b.phase == Phase::Failed {
        let reasons: Vec<&str> = b.errors.iter().map(|e| e.message.as_str()).collect();
        op["error"] = json!({"code": 3, "message": reasons.join("; ")});
    } else if let Some(name) = b.attrs.get("responsesFile").filter(|_| done) {
        let output = json!({"responsesFile": name});
        md["output"] = output.clone();
        let mut response = output;
        response["@type"] = json!(OUTPUT_TYPE);
        op["response"] = response;
    } else if done {
        let empty = Vec::new();
        let metadata = b
            .attrs
            .get("metadata")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let responses: Vec<Value> = b
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                inlined(
                    l.done.as_ref().unwrap_or(&Done::Canceled),
                    metadata.get(i).unwrap_or(&Value::Null),
                )
            })
            .collect();
        let output = json!({"inlinedResponses": {"inlinedResponses": responses}});
        md["output"] = output.clone();
        let mut response = output;
        response["@type"] = json!(OUTPUT_TYPE);
        op["response"] = response;
    }
    op["metadata"] = md;
    op
}

fn not_found(sim: &Sim, name: &str) -> Response {
    error(
        sim,
        Api::Gemini,
        ErrKind::NotFound,
        &format!("Batch {name} not found."),
        None,
    )
}

/// `GET`, `POST ...:cancel` and `DELETE` on `/v1beta/batches/{id}`.
async fn on_batch(
    sim: Arc<Sim>,
    target: String,
    params: HashMap<String, String>,
    headers: HeaderMap,
    method: &str,
) -> Response {
    if let Some(r) = key_refusal(&sim, &headers, &params) {
        return r;
    }
    let (id, verb) = match target.split_once(':') {
        Some((id, verb)) => (id.to_string(), Some(verb.to_string())),
        None => (target.clone(), None),
    };
    let name = format!("batches/{id}");
    let r = sim.batches.with(|i| {
        let b = i.batches.get_mut(&name).filter(|b| b.api == Api::Gemini)?;
        Some(match (method, verb.as_deref()) {
            ("GET", None) => {
                b.advance(&sim);
                write_responses(&sim, i, &name);
                Ok(i.batches.get(&name).map(operation).unwrap_or_default())
            }
            ("POST", Some("cancel")) => match b.cancel() {
                Ok(()) => {
                    i.cancelled(Api::Gemini);
                    Ok(json!({}))
                }
                Err(msg) => Err((400, msg)),
            },
            ("DELETE", None) => {
                i.batches.remove(&name);
                i.order.retain(|x| x != &name);
                Ok(json!({}))
            }
            _ => Err((404, format!("Method not found: {method} batches/{target} (expected GET batches/<id>, POST batches/<id>:cancel or DELETE batches/<id>)"))),
        })
    });
    match r {
        Some(Ok(v)) => json_response(StatusCode::OK, HeaderMap::new(), &v),
        Some(Err((400, msg))) => bad(&sim, msg, None),
        Some(Err((_, msg))) => error(&sim, Api::Gemini, ErrKind::NotFound, &msg, None),
        None => not_found(&sim, &name),
    }
}

/// `GET /v1beta/batches/{id}`.
pub async fn get(
    State(sim): State<Arc<Sim>>,
    Path(target): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    on_batch(sim, target, params, headers, "GET").await
}

/// `POST /v1beta/batches/{id}:cancel`.
pub async fn post(
    State(sim): State<Arc<Sim>>,
    Path(target): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    on_batch(sim, target, params, headers, "POST").await
}

/// `DELETE /v1beta/batches/{id}`.
pub async fn delete(
    State(sim): State<Arc<Sim>>,
    Path(target): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    on_batch(sim, target, params, headers, "DELETE").await
}

/// `GET /v1beta/batches?pageSize=&pageToken=`: newest first; the page
/// token is the last id of the previous page.
pub async fn list(
    State(sim): State<Arc<Sim>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = key_refusal(&sim, &headers, &params) {
        return r;
    }
    let size = match params.get("pageSize").map(|s| s.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if n >= 1 => n.min(1000),
        Some(_) => {
            return bad(
                &sim,
                "pageSize: expected a positive integer".into(),
                Some("page_size".into()),
            )
        }
    };
    let v = sim.batches.with(|i| {
        let ids = i.newest_first(Api::Gemini);
        let start = match params.get("pageToken") {
            Some(t) => ids
                .iter()
                .position(|x| x == t)
                .map(|p| p + 1)
                .unwrap_or(ids.len()),
            None => 0,
        };
        let page: Vec<String> = ids.iter().skip(start).take(size).cloned().collect();
        let ops: Vec<Value> = page
            .iter()
            .filter_map(|id| {
                let b = i.batches.get_mut(id)?;
                b.advance(&sim);
                Some(operation(b))
            })
            .collect();
        let mut v = json!({"operations": ops});
        if start + page.len() < ids.len() {
            if let Some(last) = page.last() {
                v["nextPageToken"] = json!(last);
            }
        }
        v
    });
    json_response(StatusCode::OK, HeaderMap::new(), &v)
}
