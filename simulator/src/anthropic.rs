//! Anthropic's wire format: `POST /v1/messages` with `x-api-key` and
//! `anthropic-version` headers, a required `max_tokens` and optional
//! extended `thinking`; and `POST /v1/messages/count_tokens`, which counts a
//! request's input tokens. Like the real API, a field the current API does
//! not define (its official SDK's `MessageCreateParams`: no `temperature`,
//! `top_p` or `top_k` any more) is refused with Anthropic's 400
//! (`invalid_request_error`, "<field>: Extra inputs are not permitted").

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};

use moralsweep_common::tokens::Tokenizer;

use crate::engine::{Answer, Query, Sim};
use crate::wire::{error, json_response, parse_body, respond, Api, ErrKind};

/// The fields of `MessageCreateParams` (anthropic 2.14), `stream` included.
const MESSAGE_FIELDS: &[&str] = &[
    "cache_control",
    "container",
    "diagnostics",
    "inference_geo",
    "max_tokens",
    "messages",
    "metadata",
    "model",
    "output_config",
    "service_tier",
    "speed",
    "stop_sequences",
    "stream",
    "system",
    "thinking",
    "tool_choice",
    "tools",
    "user_profile_id",
    "workspace_id",
];

/// The fields of `MessageCountTokensParams` (anthropic 2.14).
const COUNT_FIELDS: &[&str] = &[
    "cache_control",
    "messages",
    "model",
    "output_config",
    "speed",
    "system",
    "thinking",
    "tool_choice",
    "tools",
    "user_profile_id",
    "workspace_id",
];

/// The fields of a message (`MessageParam`).
const MESSAGE_PARAM_FIELDS: &[&str] = &["content", "role"];

fn check_fields(m: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), String> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("{at}{k}: Extra inputs are not permitted")),
        None => Ok(()),
    }
}

/// The model and the prompt (the user messages' text) of a request.
fn model_and_prompt(m: &Map<String, Value>) -> Result<(String, String), String> {
    let key = match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("model: Field required".into()),
    };
    let Some(Value::Array(messages)) = m.get("messages") else {
        return Err("messages: Field required".into());
    };
    let mut prompt = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        if let Some(obj) = msg.as_object() {
            check_fields(obj, MESSAGE_PARAM_FIELDS, &format!("messages.{i}."))?;
        }
        match msg.get("role").and_then(Value::as_str) {
            Some("user") => {}
            Some("assistant") => continue,
            _ => {
                return Err(
                    "messages: each message needs a role of \"user\" or \"assistant\"".into(),
                )
            }
        }
        match msg.get("content") {
            Some(Value::String(s)) => prompt.push(s.clone()),
            Some(Value::Array(parts)) => {
                for p in parts {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        prompt.push(t.to_string());
                    }
                }
            }
            _ => {
                return Err("messages: content must be a string or a list of content blocks".into())
            }
        }
    }
    Ok((key, prompt.join("\n")))
}

pub(crate) fn query(m: &Map<String, Value>) -> Result<Query, String> {
    check_fields(m, MESSAGE_FIELDS, "")?;
    let (key, prompt) = model_and_prompt(m)?;
    let max_tokens = match m.get("max_tokens") {
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "max_tokens: Input should be a valid positive integer, got {v}"
                ))
            }
        },
        None => return Err("max_tokens: Field required".into()),
    };
    if let Some(t) = m.get("thinking") {
        if t.get("type").and_then(Value::as_str) == Some("enabled") {
            let budget = t.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0);
            if budget < 1024 {
                return Err(
                    "thinking.budget_tokens: Input should be greater than or equal to 1024".into(),
                );
            }
            if budget >= max_tokens {
                return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
            }
        }
    }
    Ok(Query::new(
        key,
        prompt,
        max_tokens.min(u32::MAX as u64) as u32,
        Tokenizer::Estimate,
    ))
}

pub(crate) fn body(sim: &Sim, key: &str, a: &Answer) -> Value {
    let content: Vec<Value> = if a.text.is_empty() {
        vec![]
    } else {
        vec![json!({"type": "text", "text": a.text})]
    };
    json!({
        "id": format!("msg_sim{:016x}", sim.next_id()),
        "type": "message",
        "role": "assistant",
        "model": key,
        "content": content,
        "stop_reason": if a.truncated { "max_tokens" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {
            "input_tokens": a.input_tokens,
            "output_tokens": a.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    })
}

/// The refusal of a request without the right key or `anthropic-version`.
pub(crate) fn header_refusal(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    // `x-api-key`, or a bearer token as recent SDKs send it.
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    if !sim.key_ok(key) {
        return Some(error(
            sim,
            Api::Anthropic,
            ErrKind::Auth,
            "invalid x-api-key",
            None,
        ));
    }
    if headers.get("anthropic-version").is_none() {
        return Some(error(
            sim,
            Api::Anthropic,
            ErrKind::BadRequest,
            "anthropic-version: header is required",
            None,
        ));
    }
    None
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": n}`, counted as the
/// Messages route counts them (not rate limited, no answer drawn).
pub async fn count_tokens(State(sim): State<Arc<Sim>>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    match parse_body(&headers, &raw) {
        Ok(m) => count(&sim, &m),
        Err(msg) => error(&sim, Api::Anthropic, ErrKind::BadRequest, &msg, None),
    }
}

/// The answer to a `count_tokens` body (Anthropic's route and Vertex AI's
/// `count-tokens:rawPredict` alike).
pub(crate) fn count(sim: &Sim, m: &Map<String, Value>) -> Response {
    let counted = check_fields(m, COUNT_FIELDS, "").and_then(|_| model_and_prompt(m));
    match counted {
        Ok((key, prompt)) => {
            let q = Query::new(key, prompt, 0, Tokenizer::Estimate);
            sim.counted(&q.key);
            json_response(
                axum::http::StatusCode::OK,
                HeaderMap::new(),
                &json!({"input_tokens": q.input_tokens()}),
            )
        }
        Err(msg) => error(sim, Api::Anthropic, ErrKind::BadRequest, &msg, None),
    }
}

/// `POST /v1/messages`.
pub async fn messages(State(sim): State<Arc<Sim>>, headers: HeaderMap, raw: Bytes) -> Response {
    if let Some(r) = header_refusal(&sim, &headers) {
        return r;
    }
    let m = match parse_body(&headers, &raw) {
        Ok(m) => m,
        Err(msg) => return error(&sim, Api::Anthropic, ErrKind::BadRequest, &msg, None),
    };
    answer(sim, &headers, &m).await
}

/// The answer to a Messages body (Anthropic's route and Vertex AI's
/// `rawPredict` alike, once the caller is authenticated).
pub(crate) async fn answer(sim: Arc<Sim>, headers: &HeaderMap, m: &Map<String, Value>) -> Response {
    let q = match query(m) {
        Ok(q) => q,
        Err(msg) => return error(&sim, Api::Anthropic, ErrKind::BadRequest, &msg, None),
    };
    let mut q = q;
    q.forced_fault = crate::wire::forced_fault(headers);
    q.traceparent = crate::wire::traceparent(headers);
    let outcome = sim.decide(&q);
    let s = sim.clone();
    respond(sim, Api::Anthropic, &q.key, outcome, |a| {
        body(&s, &q.key, a)
    })
    .await
}
