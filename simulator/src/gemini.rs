//! Gemini's wire format: `POST /v1beta/models/{model}:generateContent` with
//! an `x-goog-api-key` header (or `?key=`), `contents`, and a
//! `generationConfig` with `temperature`, `maxOutputTokens`, `seed`,
//! `responseLogprobs`/`logprobs` and `thinkingConfig.thinkingBudget`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::engine::{Answer, Query, Sim};
use crate::wire::{error, parse_body, respond, Api, ErrKind};

fn query(key: String, m: &Map<String, Value>) -> Result<(Query, u64), String> {
    let Some(Value::Array(contents)) = m.get("contents") else {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    };
    let mut prompt = Vec::new();
    for c in contents {
        if c.get("role").and_then(Value::as_str).unwrap_or("user") != "user" {
            continue;
        }
        for p in c
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                prompt.push(t.to_string());
            }
        }
    }
    let empty = Map::new();
    let g = m
        .get("generationConfig")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let temperature = match g.get("temperature") {
        None => 1.0,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => t,
            _ => return Err(format!("* GenerateContentRequest.generation_config.temperature: must be in [0, 2], got {v}")),
        },
    };
    let max_tokens = g
        .get("maxOutputTokens")
        .and_then(Value::as_u64)
        .unwrap_or(256);
    let logprobs = g
        .get("responseLogprobs")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let top = match g.get("logprobs") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(k) if k <= 20 => Some(k as u32),
            _ => {
                return Err(format!(
                "* GenerateContentRequest.generation_config.logprobs: must be in [0, 20], got {v}"
            ))
            }
        },
    };
    if top.is_some() && !logprobs {
        return Err("logprobs can only be set when responseLogprobs is true".into());
    }
    let thinking = g
        .get("thinkingConfig")
        .and_then(|t| t.get("thinkingBudget"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0) as u64;
    Ok((
        Query {
            key,
            prompt: prompt.join("\n"),
            max_tokens: max_tokens.max(1).min(u32::MAX as u64) as u32,
            temperature,
            seed: g.get("seed").and_then(Value::as_i64).map(|s| s as u64),
            top_logprobs: logprobs.then_some(top.unwrap_or(0)),
            forced_fault: None,
        },
        thinking,
    ))
}

fn body(sim: &Sim, key: &str, a: &Answer, logprobs: bool, thinking: u64) -> Value {
    let mut candidate = json!({
        "content": if a.text.is_empty() { json!({"role": "model"}) }
                   else { json!({"parts": [{"text": a.text}], "role": "model"}) },
        "finishReason": if a.truncated { "MAX_TOKENS" } else { "STOP" },
        "index": 0,
    });
    if logprobs && !a.text.is_empty() {
        let top: Vec<Value> = a
            .top
            .iter()
            .flatten()
            .map(|(t, l)| json!({"token": t, "logProbability": l}))
            .collect();
        candidate["logprobsResult"] = json!({
            "topCandidates": [{"candidates": top}],
            "chosenCandidates": [{"token": a.first_token.0, "logProbability": a.first_token.1}],
        });
        candidate["avgLogprobs"] = json!(a.first_token.1);
    }
    let thoughts = thinking.min(16);
    let mut usage = json!({
        "promptTokenCount": a.input_tokens,
        "candidatesTokenCount": a.output_tokens,
        "totalTokenCount": a.input_tokens + a.output_tokens + thoughts,
    });
    if thoughts > 0 {
        usage["thoughtsTokenCount"] = json!(thoughts);
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": key,
        "responseId": format!("sim{:016x}", sim.next_id()),
    })
}

/// `POST /v1beta/models/{model}:generateContent`.
pub async fn generate(
    State(sim): State<Arc<Sim>>,
    Path(target): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let given = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or(params.get("key").map(String::as_str));
    if !sim.key_ok(given) {
        return error(
            &sim,
            Api::Gemini,
            ErrKind::BadRequest,
            "API key not valid. Please pass a valid API key.",
            None,
        );
    }
    let Some(model) = target.strip_suffix(":generateContent") else {
        return error(
            &sim,
            Api::Gemini,
            ErrKind::NotFound,
            &format!("Method not found: {target} (expected models/<model>:generateContent)"),
            None,
        );
    };
    let m = match parse_body(&headers, &raw) {
        Ok(m) => m,
        Err(msg) => return error(&sim, Api::Gemini, ErrKind::BadRequest, &msg, None),
    };
    let (q, thinking) = match query(model.to_string(), &m) {
        Ok(x) => x,
        Err(msg) => return error(&sim, Api::Gemini, ErrKind::BadRequest, &msg, None),
    };
    let mut q = q;
    q.forced_fault = crate::wire::forced_fault(&headers);
    let outcome = sim.decide(&q);
    let s = sim.clone();
    let logprobs = q.top_logprobs.is_some();
    respond(sim, Api::Gemini, &q.key, outcome, |a| {
        body(&s, &q.key, a, logprobs, thinking)
    })
    .await
}
