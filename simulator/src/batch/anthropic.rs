//! Anthropic's Message Batches: `POST /v1/messages/batches` with
//! `requests: [{custom_id, params}]` (at most [`MAX_REQUESTS`] requests and
//! [`MAX_BODY_BYTES`] bytes; custom ids unique, `^[a-zA-Z0-9_-]{1,64}$`),
//! `GET /v1/messages/batches/{id}`, `POST .../{id}/cancel`,
//! `DELETE .../{id}`, `GET /v1/messages/batches` (`after_id`, `before_id`,
//! `limit`), and the results as JSONL at `results_url`
//! (`GET .../{id}/results`) once the batch has ended: one line per request,
//! `result.type` `succeeded` (with the message), `errored` (with the error
//! response), `canceled` or `expired`.
//!
//! As on the real API, each request's `params` are validated when the batch
//! answers it: a request the Messages endpoint would refuse ends `errored`
//! with that 400, the others are answered. `processing_status` is
//! `in_progress`, `canceling` or `ended`; `request_counts` keeps every
//! request under `processing` until the batch has ended.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{rfc3339, settle, Batch, Done, Job, Jobs, Phase, Refused};
use crate::anthropic::{body as message_body, header_refusal, query};
use crate::engine::{Query, Sim};
use crate::wire::{error, json_response, parse_body, Api, ErrKind};

/// The most requests one batch may hold.
pub const MAX_REQUESTS: usize = 100_000;
/// The largest batch creation body (256 MB).
pub const MAX_BODY_BYTES: usize = 256 * 1000 * 1000;

fn bad(sim: &Sim, msg: &str) -> Response {
    error(sim, Api::Anthropic, ErrKind::BadRequest, msg, None)
}

fn not_found(sim: &Sim, id: &str) -> Response {
    error(
        sim,
        Api::Anthropic,
        ErrKind::NotFound,
        &format!("No message batch with id {id}."),
        None,
    )
}

/// One request of a batch.
struct MessageLine(Query);

impl Job for MessageLine {
    fn run(&self, sim: &Sim) -> Done {
        let outcome = sim.decide_batch_line(&self.0);
        settle(sim, Api::Anthropic, &self.0.key, outcome, |a| {
            message_body(sim, &self.0.key, a)
        })
    }
}

fn custom_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn status_of(p: Phase) -> &'static str {
    match p {
        Phase::Cancelling => "canceling",
        p if p.ended() => "ended",
        _ => "in_progress",
    }
}

/// The `MessageBatch` object; `host` is where the results are served.
fn batch_json(b: &Batch, host: &str) -> Value {
    let c = b.counts();
    let ended = b.phase.ended();
    let counts = if ended {
        json!({"processing": 0, "succeeded": c.succeeded, "errored": c.errored,
               "canceled": c.canceled, "expired": c.expired})
    } else {
        json!({"processing": c.total, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    };
    json!({
        "id": b.id,
        "type": "message_batch",
        "processing_status": status_of(b.phase),
        "request_counts": counts,
        "ended_at": b.stamps.ended.filter(|_| ended).map(rfc3339),
        "created_at": rfc3339(b.created_at),
        "expires_at": rfc3339(b.created_at + chrono::Duration::hours(24)),
        "archived_at": null,
        "cancel_initiated_at": b.stamps.cancelling.map(rfc3339),
        "results_url": ended.then(|| format!("http://{host}/v1/messages/batches/{}/results", b.id)),
    })
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}

/// `POST /v1/messages/batches`.
pub async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    if raw.len() > MAX_BODY_BYTES {
        return json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            HeaderMap::new(),
            &json!({"type": "error", "error": {"type": "request_too_large",
                "message": format!("Request exceeds the maximum allowed number of bytes: {} bytes; a message batch may be at most 256 MB. Split the requests over several batches.", raw.len())}}),
        );
    }
    let m = match parse_body(&headers, &raw) {
        Ok(m) => m,
        Err(msg) => return bad(&sim, &msg),
    };
    if let Some(k) = m.keys().find(|k| k.as_str() != "requests") {
        return bad(&sim, &format!("{k}: Extra inputs are not permitted"));
    }
    let Some(Value::Array(requests)) = m.get("requests") else {
        return bad(&sim, "requests: Field required");
    };
    if requests.is_empty() {
        return bad(
            &sim,
            "requests: List should have at least 1 item after validation, not 0",
        );
    }
    if requests.len() > MAX_REQUESTS {
        return bad(
            &sim,
            &format!(
                "requests: List should have at most {MAX_REQUESTS} items after validation, not {}",
                requests.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    let mut lines: Jobs = Vec::with_capacity(requests.len());
    let mut model = String::new();
    for (i, r) in requests.iter().enumerate() {
        let Some(r) = r.as_object() else {
            return bad(
                &sim,
                &format!("requests.{i}: Input should be a valid dictionary"),
            );
        };
        if let Some(k) = r
            .keys()
            .find(|k| !["custom_id", "params"].contains(&k.as_str()))
        {
            return bad(
                &sim,
                &format!("requests.{i}.{k}: Extra inputs are not permitted"),
            );
        }
        let custom_id = match r.get("custom_id").and_then(Value::as_str) {
            Some(c) if custom_id_ok(c) => c.to_string(),
            Some(c) => {
                return bad(&sim, &format!("requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$' (got {c:?})"))
            }
            None => return bad(&sim, &format!("requests.{i}.custom_id: Field required")),
        };
        if !seen.insert(custom_id.clone()) {
            return bad(&sim, &format!("requests.{i}.custom_id: Duplicate custom_id {custom_id:?}; each request of a batch needs its own custom_id."));
        }
        let Some(params) = r.get("params").and_then(Value::as_object) else {
            return bad(&sim, &format!("requests.{i}.params: Field required"));
        };
        let checked = if params.get("stream").and_then(Value::as_bool) == Some(true) {
            Err("stream: Streaming is not supported in the Message Batches API.".to_string())
        } else {
            query(params)
        };
        let job: Box<dyn Job> = match checked {
            Ok(q) => {
                if model.is_empty() {
                    model = q.key.clone();
                }
                Box::new(MessageLine(q))
            }
            Err(msg) => Box::new(Refused {
                status: 400,
                body: Api::Anthropic.error_body(ErrKind::BadRequest, &msg, None, &sim),
            }),
        };
        lines.push((custom_id, job));
    }
    let id = format!("msgbatch_sim{:016x}", sim.next_id());
    let batch = Batch::new(&sim, Api::Anthropic, id, model, lines, Phase::InProgress);
    let v = batch_json(&batch, &host(&headers));
    sim.batches.with(|i| i.insert(batch));
    super::answer_delay(&sim).await;
    json_response(StatusCode::OK, HeaderMap::new(), &v)
}

/// The batch `id` of this API, brought up to date, through `f`.
fn with_batch<T>(sim: &Sim, id: &str, f: impl FnOnce(&mut Batch) -> T) -> Option<T> {
    sim.batches.with(|i| {
        let b = i.batches.get_mut(id).filter(|b| b.api == Api::Anthropic)?;
        b.advance(sim);
        Some(f(b))
    })
}

/// `GET /v1/messages/batches/{id}`.
pub async fn retrieve(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    let h = host(&headers);
    match with_batch(&sim, &id, |b| batch_json(b, &h)) {
        Some(v) => json_response(StatusCode::OK, HeaderMap::new(), &v),
        None => not_found(&sim, &id),
    }
}

/// `POST /v1/messages/batches/{id}/cancel`.
pub async fn cancel(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    let h = host(&headers);
    let r = sim.batches.with(|i| {
        let b = i.batches.get_mut(&id).filter(|b| b.api == Api::Anthropic)?;
        let r = b.cancel().map(|_| batch_json(b, &h));
        if r.is_ok() {
            i.cancelled(Api::Anthropic);
        }
        Some(r)
    });
    match r {
        Some(Ok(v)) => json_response(StatusCode::OK, HeaderMap::new(), &v),
        Some(Err(msg)) => bad(&sim, &msg),
        None => not_found(&sim, &id),
    }
}

/// `DELETE /v1/messages/batches/{id}`: only an ended batch.
pub async fn delete(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    let r = sim.batches.with(|i| {
        let b = i.batches.get_mut(&id).filter(|b| b.api == Api::Anthropic)?;
        b.advance(&sim);
        if !b.phase.ended() {
            return Some(Err(format!("Message batch {id} is still processing; cancel it and wait until it has ended before deleting it.")));
        }
        i.batches.remove(&id);
        i.order.retain(|x| x != &id);
        Some(Ok(json!({"id": id, "type": "message_batch_deleted"})))
    });
    match r {
        Some(Ok(v)) => json_response(StatusCode::OK, HeaderMap::new(), &v),
        Some(Err(msg)) => bad(&sim, &msg),
        None => not_found(&sim, &id),
    }
}

/// One line of the results file.
fn result_line(custom_id: &str, done: &Done) -> Value {
    let result = match done {
        Done::Answered { body, .. } => json!({"type": "succeeded", "message": body}),
        Done::Errored { body, .. } => json!({"type": "errored", "error": body}),
        Done::Expired => json!({"type": "expired"}),
        Done::Canceled => json!({"type": "canceled"}),
    };
    json!({"custom_id": custom_id, "result": result})
}

/// `GET /v1/messages/batches/{id}/results`: JSONL, once the batch has ended.
pub async fn results(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    let r = with_batch(&sim, &id, |b| {
        if !b.phase.ended() {
            return Err(format!(
                "Message batch {id} has not ended yet (processing_status {}); its results are available once it has ended.",
                status_of(b.phase)
            ));
        }
        let mut out = String::new();
        for l in &b.lines {
            let done = l.done.clone().unwrap_or(Done::Canceled);
            out.push_str(&result_line(&l.custom_id, &done).to_string());
            out.push('\n');
        }
        Ok(out)
    });
    match r {
        Some(Ok(text)) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/x-jsonl"),
            );
            r
        }
        Some(Err(msg)) => bad(&sim, &msg),
        None => not_found(&sim, &id),
    }
}

/// `GET /v1/messages/batches?after_id=&before_id=&limit=`: newest first.
pub async fn list(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => return bad(&sim, "limit: Input should be an integer from 1 to 1000"),
    };
    let h = host(&headers);
    let v = sim.batches.with(|i| {
        let ids = i.newest_first(Api::Anthropic);
        let (start, end) = match (params.get("after_id"), params.get("before_id")) {
            (Some(a), _) => {
                let s = ids.iter().position(|x| x == a).map(|p| p + 1).unwrap_or(ids.len());
                (s, (s + limit).min(ids.len()))
            }
            (None, Some(b)) => {
                let e = ids.iter().position(|x| x == b).unwrap_or(0);
                (e.saturating_sub(limit), e)
            }
            (None, None) => (0, limit.min(ids.len())),
        };
        let page = &ids[start..end];
        let data: Vec<Value> = page
            .iter()
            .filter_map(|id| {
                let b = i.batches.get_mut(id)?;
                b.advance(&sim);
                Some(batch_json(b, &h))
            })
            .collect();
        let has_more = if params.contains_key("before_id") && !params.contains_key("after_id") {
            start > 0
        } else {
            end < ids.len()
        };
        json!({"data": data, "has_more": has_more, "first_id": page.first(), "last_id": page.last()})
    });
    json_response(StatusCode::OK, HeaderMap::new(), &v)
}
