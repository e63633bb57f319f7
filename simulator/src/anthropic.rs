//! Anthropic's wire format: `POST /v1/messages` with `x-api-key` and
//! `anthropic-version` headers, a required `max_tokens`, `temperature` in
//! [0, 1] and optional extended `thinking`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::engine::{Answer, Query, Sim};
use crate::wire::{error, parse_body, respond, Api, ErrKind};

fn query(m: &Map<String, Value>) -> Result<Query, String> {
    let key = match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("model: Field required".into()),
    };
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
    let temperature = match m.get("temperature") {
        None | Some(Value::Null) => 1.0,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => t,
            _ => return Err(format!("temperature: range: 0..1, got {v}")),
        },
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
    let Some(Value::Array(messages)) = m.get("messages") else {
        return Err("messages: Field required".into());
    };
    let mut prompt = Vec::new();
    for msg in messages {
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
    Ok(Query {
        key,
        prompt: prompt.join("\n"),
        max_tokens: max_tokens.min(u32::MAX as u64) as u32,
        temperature,
        seed: None,
        top_logprobs: None,
        forced_fault: None,
    })
}

fn body(sim: &Sim, key: &str, a: &Answer) -> Value {
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

/// `POST /v1/messages`.
pub async fn messages(State(sim): State<Arc<Sim>>, headers: HeaderMap, raw: Bytes) -> Response {
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
        return error(
            &sim,
            Api::Anthropic,
            ErrKind::Auth,
            "invalid x-api-key",
            None,
        );
    }
    if headers.get("anthropic-version").is_none() {
        return error(
            &sim,
            Api::Anthropic,
            ErrKind::BadRequest,
            "anthropic-version: header is required",
            None,
        );
    }
    let m = match parse_body(&headers, &raw) {
        Ok(m) => m,
        Err(msg) => return error(&sim, Api::Anthropic, ErrKind::BadRequest, &msg, None),
    };
    let q = match query(&m) {
        Ok(q) => q,
        Err(msg) => return error(&sim, Api::Anthropic, ErrKind::BadRequest, &msg, None),
    };
    let mut q = q;
    q.forced_fault = crate::wire::forced_fault(&headers);
    let outcome = sim.decide(&q);
    let s = sim.clone();
    respond(sim, Api::Anthropic, &q.key, outcome, |a| {
        body(&s, &q.key, a)
    })
    .await
}
