//! OpenAI's wire format: `POST /v1/chat/completions` (with `seed`,
//! `logprobs`/`top_logprobs`, `max_tokens` or `max_completion_tokens`) and
//! `POST /v1/responses` (with `reasoning`, `max_output_tokens`,
//! `top_logprobs`). Like the real API, unknown request fields and out-of-range
//! values are refused with 400, so an adapter that sends a wrong field finds
//! out here rather than in production.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};

use moralsweep_common::spec::is_openai_reasoning_model;
use moralsweep_common::tokens::Tokenizer;

use crate::engine::{Answer, Query, Sim, DEFAULT_TEMPERATURE};
use crate::wire::{error, parse_body, respond, token_bytes, unix_now, Api, ErrKind};

/// Request fields of `CreateChatCompletionRequest`.
const CHAT_FIELDS: &[&str] = &[
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "messages",
    "metadata",
    "modalities",
    "model",
    "moderation",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// Request fields of `CreateResponse`.
const RESPONSE_FIELDS: &[&str] = &[
    "background",
    "context_management",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "moderation",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// The most choices one Chat Completions request may ask for
/// (`CreateChatCompletionRequest.n`: maximum 128).
pub const MAX_N: u64 = 128;

/// A 400 with the offending parameter.
pub(crate) struct Bad(pub String, pub Option<&'static str>);

pub(crate) fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn check_fields(m: &Map<String, Value>, known: &[&str]) -> Result<(), Bad> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Bad(
            format!("Unrecognized request argument supplied: {k}"),
            None,
        )),
        None => Ok(()),
    }
}

fn model_of(m: &Map<String, Value>) -> Result<String, Bad> {
    match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Bad(
            "you must provide a model parameter".into(),
            Some("model"),
        )),
    }
}

/// The temperature a request sent (`None`: none, the default applies).
/// Reasoning models (o1, o3, o4, gpt-5 families) take only the default, as
/// on the real API.
fn temperature_of(m: &Map<String, Value>, model: &str) -> Result<Option<f64>, Bad> {
    let t = match m.get("temperature") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => t,
            _ => {
                return Err(Bad(
                    format!("Invalid 'temperature': {v}. Expected a number between 0 and 2."),
                    Some("temperature"),
                ))
            }
        },
    };
    if is_openai_reasoning_model(model) && t != DEFAULT_TEMPERATURE {
        return Err(Bad(
            format!("Unsupported value: 'temperature' does not support {t} with this model. Only the default (1) value is supported."),
            Some("temperature"),
        ));
    }
    Ok(Some(t))
}

fn uint_of(m: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, Bad> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            Bad(
                format!("Invalid '{field}': expected a non-negative integer, got {v}."),
                Some(field),
            )
        }),
    }
}

/// The text of a message's content: a string or a list of text parts.
fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn top_logprobs_of(m: &Map<String, Value>) -> Result<Option<u64>, Bad> {
    let k = uint_of(m, "top_logprobs")?;
    if let Some(k) = k {
        if k > 20 {
            return Err(Bad(
                format!("Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got {k} instead."),
                Some("top_logprobs"),
            ));
        }
    }
    Ok(k)
}

pub(crate) fn chat_query(m: &Map<String, Value>) -> Result<(Query, bool), Bad> {
    check_fields(m, CHAT_FIELDS)?;
    let key = model_of(m)?;
    let Some(Value::Array(messages)) = m.get("messages") else {
        return Err(Bad(
            "Missing required parameter: 'messages'.".into(),
            Some("messages"),
        ));
    };
    if messages.is_empty() {
        return Err(Bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.".into(),
            Some("messages"),
        ));
    }
    let prompt = messages
        .iter()
        .filter(|msg| msg.get("role").and_then(Value::as_str) == Some("user"))
        .map(|msg| content_text(msg.get("content").unwrap_or(&Value::Null)))
        .collect::<Vec<_>>()
        .join("\n");
    let max_tokens = uint_of(m, "max_tokens")?;
    let max_completion = uint_of(m, "max_completion_tokens")?;
    if max_tokens.is_some() && max_completion.is_some() {
        return Err(Bad(
            "max_tokens and max_completion_tokens cannot both be set; use max_completion_tokens."
                .into(),
            Some("max_tokens"),
        ));
    }
    let max = max_tokens.or(max_completion).unwrap_or(256);
    if max == 0 {
        return Err(Bad(
            "Invalid 'max_tokens': must be at least 1.".into(),
            Some("max_tokens"),
        ));
    }
    let logprobs = match m.get("logprobs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(Bad(
                format!("Invalid 'logprobs': expected a boolean, got {v}."),
                Some("logprobs"),
            ))
        }
    };
    let top = top_logprobs_of(m)?;
    if top.is_some() && !logprobs {
        return Err(Bad(
            "logprobs must be set to true if top_logprobs is used.".into(),
            Some("top_logprobs"),
        ));
    }
    let temperature = temperature_of(m, &key)?;
    let n = uint_of(m, "n")?.unwrap_or(1);
    if n == 0 {
        return Err(Bad(
            "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead."
                .into(),
            Some("n"),
        ));
    }
    if n > MAX_N {
        return Err(Bad(
            format!("Invalid 'n': integer above maximum value. Expected a value <= {MAX_N}, but got {n} instead."),
            Some("n"),
        ));
    }
    let tokenizer = Tokenizer::for_model(moralsweep_common::provider::ProviderKind::OpenAi, &key);
    Ok((
        Query {
            temperature,
            n: n as u32,
            seed: m.get("seed").and_then(Value::as_i64).map(|s| s as u64),
            top_logprobs: logprobs.then_some(top.unwrap_or(0) as u32),
            ..Query::new(key, prompt, max.min(u32::MAX as u64) as u32, tokenizer)
        },
        logprobs,
    ))
}

fn logprob_entry(answer: &Answer) -> Value {
    let (t, l) = &answer.first_token;
    let top: Vec<Value> = answer
        .top
        .iter()
        .flatten()
        .map(|(t, l)| json!({"token": t, "logprob": l, "bytes": token_bytes(t)}))
        .collect();
    json!({"token": t, "logprob": l, "bytes": token_bytes(t), "top_logprobs": top})
}

fn chat_choice(index: usize, answer: &Answer, logprobs: bool) -> Value {
    let logprobs = if logprobs {
        let content: Vec<Value> = if answer.text.is_empty() {
            vec![]
        } else {
            vec![logprob_entry(answer)]
        };
        json!({"content": content, "refusal": null})
    } else {
        Value::Null
    };
    json!({
        "index": index,
        "message": {"role": "assistant", "content": answer.text, "refusal": null, "annotations": []},
        "logprobs": logprobs,
        "finish_reason": if answer.truncated { "length" } else { "stop" },
    })
}

pub(crate) fn chat_body(sim: &Sim, key: &str, answer: &Answer, logprobs: bool) -> Value {
    let choices: Vec<Value> = answer
        .choices()
        .enumerate()
        .map(|(i, a)| chat_choice(i, a, logprobs))
        .collect();
    // The prompt is billed once, the output of every choice.
    let output = answer.total_output_tokens();
    json!({
        "id": format!("chatcmpl-sim{:016x}", sim.next_id()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": key,
        "choices": choices,
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": output,
            "total_tokens": answer.input_tokens + output,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_moralsweep_sim",
    })
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if !sim.key_ok(bearer(&headers)) {
        return error(
            &sim,
            Api::OpenAi,
            ErrKind::Auth,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            None,
        );
    }
    let m = match parse_body(&headers, &body) {
        Ok(m) => m,
        Err(msg) => return error(&sim, Api::OpenAi, ErrKind::BadRequest, &msg, None),
    };
    let (q, logprobs) = match chat_query(&m) {
        Ok(x) => x,
        Err(Bad(msg, param)) => return error(&sim, Api::OpenAi, ErrKind::BadRequest, &msg, param),
    };
    if let Some(msg) = refuses_n(&sim, &q) {
        return error(&sim, Api::OpenAi, ErrKind::BadRequest, msg, Some("n"));
    }
    let mut q = q;
    q.forced_fault = crate::wire::forced_fault(&headers);
    q.traceparent = crate::wire::traceparent(&headers);
    let outcome = sim.decide(&q);
    let s = sim.clone();
    respond(sim, Api::OpenAi, &q.key, outcome, |a| {
        chat_body(&s, &q.key, a, logprobs)
    })
    .await
}

/// The refusal of a request asking a single-sample model for several
/// choices (`n`), if it is one.
pub(crate) fn refuses_n(sim: &Sim, q: &Query) -> Option<&'static str> {
    (q.n > 1 && sim.config.single_sample.contains(&q.key))
        .then_some("Unsupported parameter: 'n' is not supported with this model.")
}

pub(crate) struct ResponsesReq {
    pub query: Query,
    logprobs: bool,
    effort: Option<String>,
    max_output_tokens: Option<u64>,
}

pub(crate) fn responses_query(m: &Map<String, Value>) -> Result<ResponsesReq, Bad> {
    check_fields(m, RESPONSE_FIELDS)?;
    let key = model_of(m)?;
    let prompt = match m.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|i| i.get("role").and_then(Value::as_str).unwrap_or("user") == "user")
            .map(|i| content_text(i.get("content").unwrap_or(&Value::Null)))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => {
            return Err(Bad(
                "Missing required parameter: 'input'.".into(),
                Some("input"),
            ))
        }
    };
    let max_output_tokens = uint_of(m, "max_output_tokens")?;
    if let Some(n) = max_output_tokens {
        if n < 16 {
            return Err(Bad(
                format!("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {n} instead."),
                Some("max_output_tokens"),
            ));
        }
    }
    let top = top_logprobs_of(m)?;
    let include_logprobs = m.get("include").and_then(Value::as_array).is_some_and(|a| {
        a.iter()
            .any(|v| v.as_str() == Some("message.output_text.logprobs"))
    });
    let effort = m
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(e) = &effort {
        if !["none", "minimal", "low", "medium", "high", "xhigh"].contains(&e.as_str()) {
            return Err(Bad(
                format!("Invalid value: '{e}'. Supported values are: 'minimal', 'low', 'medium', and 'high'."),
                Some("reasoning.effort"),
            ));
        }
    }
    let temperature = temperature_of(m, &key)?;
    let tokenizer = Tokenizer::for_model(moralsweep_common::provider::ProviderKind::OpenAi, &key);
    Ok(ResponsesReq {
        query: Query {
            temperature,
            top_logprobs: include_logprobs.then_some(top.unwrap_or(0) as u32),
            ..Query::new(
                key,
                prompt,
                max_output_tokens.unwrap_or(256).min(u32::MAX as u64) as u32,
                tokenizer,
            )
        },
        logprobs: include_logprobs,
        effort,
        max_output_tokens,
    })
}

pub(crate) fn responses_body(sim: &Sim, r: &ResponsesReq, answer: &Answer) -> Value {
    let now = unix_now();
    let logprobs: Vec<Value> = if r.logprobs && !answer.text.is_empty() {
        vec![logprob_entry(answer)]
    } else {
        vec![]
    };
    let reasoning_tokens = if r.effort.is_some() { 8 } else { 0 };
    let mut output = Vec::new();
    if r.effort.is_some() {
        output.push(json!({
            "type": "reasoning",
            "id": format!("rs_sim{:016x}", sim.next_id()),
            "summary": [],
        }));
    }
    output.push(json!({
        "type": "message",
        "id": format!("msg_sim{:016x}", sim.next_id()),
        "status": if answer.truncated { "incomplete" } else { "completed" },
        "role": "assistant",
        "content": [{"type": "output_text", "text": answer.text, "annotations": [], "logprobs": logprobs}],
    }));
    json!({
        "id": format!("resp_sim{:016x}", sim.next_id()),
        "object": "response",
        "created_at": now,
        "completed_at": if answer.truncated { Value::Null } else { json!(now) },
        "status": if answer.truncated { "incomplete" } else { "completed" },
        "background": false,
        "error": null,
        "incomplete_details": if answer.truncated { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": null,
        "max_output_tokens": r.max_output_tokens,
        "model": r.query.key,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": r.effort, "summary": null},
        "service_tier": "default",
        "store": false,
        "temperature": r.query.temperature.unwrap_or(DEFAULT_TEMPERATURE),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": r.query.top_logprobs.unwrap_or(0),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": answer.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": answer.output_tokens + reasoning_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": answer.input_tokens + answer.output_tokens + reasoning_tokens,
        },
        "metadata": {},
    })
}

/// `POST /v1/responses`.
pub async fn responses(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if !sim.key_ok(bearer(&headers)) {
        return error(
            &sim,
            Api::OpenAi,
            ErrKind::Auth,
            "Incorrect API key provided.",
            None,
        );
    }
    let m = match parse_body(&headers, &body) {
        Ok(m) => m,
        Err(msg) => return error(&sim, Api::OpenAi, ErrKind::BadRequest, &msg, None),
    };
    let r = match responses_query(&m) {
        Ok(x) => x,
        Err(Bad(msg, param)) => return error(&sim, Api::OpenAi, ErrKind::BadRequest, &msg, param),
    };
    let mut r = r;
    r.query.forced_fault = crate::wire::forced_fault(&headers);
    r.query.traceparent = crate::wire::traceparent(&headers);
    let outcome = sim.decide(&r.query);
    let s = sim.clone();
    let key = r.query.key.clone();
    respond(sim, Api::OpenAi, &key, outcome, |a| {
        responses_body(&s, &r, a)
    })
    .await
}

/// `GET /v1/models`: the keys with recorded data.
pub async fn models(State(sim): State<Arc<Sim>>) -> Response {
    let data: Vec<Value> = sim
        .replay_keys()
        .into_iter()
        .map(|k| json!({"id": k, "object": "model", "created": 0, "owned_by": "moralsweep-sim"}))
        .collect();
    crate::wire::json_response(
        axum::http::StatusCode::OK,
        HeaderMap::new(),
        &json!({"object": "list", "data": data}),
    )
}
