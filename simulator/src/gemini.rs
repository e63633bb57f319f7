//! Gemini's wire format: `POST /v1beta/models/{model}:generateContent` with
//! an `x-goog-api-key` header (or `?key=`), `contents`, and a
//! `generationConfig` with `temperature`, `maxOutputTokens`, `seed`,
//! `responseLogprobs`/`logprobs` and `thinkingConfig.thinkingBudget`; and
//! `POST /v1beta/models/{model}:countTokens` (`{"totalTokens": n}`).
//!
//! Like the real API, a field the request types do not define (the
//! `google-genai` SDK's `GenerationConfig`, `ThinkingConfig`, `Content`,
//! `Part`) is refused with Google's 400: `INVALID_ARGUMENT`, "Invalid JSON
//! payload received. Unknown name ..." and a `BadRequest` field violation.
//! Names are accepted in camelCase or snake_case, as Google's JSON parser
//! does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Map, Value};

use moralsweep_common::tokens::Tokenizer;

use crate::engine::{Answer, Query, Sim};
use crate::wire::{error, json_response, parse_body, respond, Api, ErrKind};

/// Fields of `GenerateContentRequest` (REST).
const REQUEST_FIELDS: &[&str] = &[
    "cachedContent",
    "contents",
    "generationConfig",
    "model",
    "safetySettings",
    "systemInstruction",
    "toolConfig",
    "tools",
];

/// Fields of `GenerationConfig` (google-genai 3.6).
const GENERATION_CONFIG_FIELDS: &[&str] = &[
    "audioTimestamp",
    "audioTranscriptionConfig",
    "candidateCount",
    "enableAffectiveDialog",
    "enableEnhancedCivicAnswers",
    "frequencyPenalty",
    "logprobs",
    "maxOutputTokens",
    "mediaResolution",
    "modelSelectionConfig",
    "presencePenalty",
    "responseFormat",
    "responseJsonSchema",
    "responseLogprobs",
    "responseMimeType",
    "responseModalities",
    "responseSchema",
    "routingConfig",
    "seed",
    "speechConfig",
    "stopSequences",
    "temperature",
    "thinkingConfig",
    "topK",
    "topP",
    "translationConfig",
];

/// Fields of `ThinkingConfig`.
const THINKING_FIELDS: &[&str] = &["includeThoughts", "thinkingBudget", "thinkingLevel"];

/// Fields of `Content`.
const CONTENT_FIELDS: &[&str] = &["parts", "role"];

/// Fields of `countTokens`' request.
const COUNT_FIELDS: &[&str] = &["contents", "generateContentRequest"];

/// A field name as Google's JSON parser reads it: snake_case becomes camelCase.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The snake_case path Google's errors name (`generation_config`).
fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A 400 of Google's shape.
pub(crate) struct Refusal {
    pub message: String,
    pub field: Option<String>,
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal {
            message,
            field: None,
        }
    }
}

pub(crate) fn check_fields(
    m: &Map<String, Value>,
    known: &[&str],
    at: &str,
) -> Result<(), Refusal> {
    match m.keys().find(|k| !known.contains(&camel(k).as_str())) {
        None => Ok(()),
        Some(k) => {
            let place = if at.is_empty() {
                String::new()
            } else {
                format!(" at '{at}'")
            };
            Err(Refusal {
                message: format!(
                    "Invalid JSON payload received. Unknown name \"{k}\"{place}: Cannot find field."
                ),
                field: Some(if at.is_empty() {
                    k.clone()
                } else {
                    at.to_string()
                }),
            })
        }
    }
}

/// The value of a field given in camelCase or snake_case.
pub(crate) fn field<'a>(m: &'a Map<String, Value>, camel_name: &str) -> Option<&'a Value> {
    m.get(camel_name).or_else(|| m.get(&snake(camel_name)))
}

/// The user text of `contents`, checked field by field.
fn prompt_of(m: &Map<String, Value>) -> Result<String, Refusal> {
    let Some(Value::Array(contents)) = field(m, "contents") else {
        return Err(
            "* GenerateContentRequest.contents: contents is not specified"
                .to_string()
                .into(),
        );
    };
    let mut prompt = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        if let Some(obj) = c.as_object() {
            check_fields(obj, CONTENT_FIELDS, &format!("contents[{i}]"))?;
        }
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
    Ok(prompt.join("\n"))
}

pub(crate) fn query(key: String, m: &Map<String, Value>) -> Result<(Query, u64), Refusal> {
    check_fields(m, REQUEST_FIELDS, "")?;
    let prompt = prompt_of(m)?;
    let empty = Map::new();
    let g = field(m, "generationConfig")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    check_fields(g, GENERATION_CONFIG_FIELDS, "generation_config")?;
    let thinking_config = field(g, "thinkingConfig").and_then(Value::as_object);
    if let Some(t) = thinking_config {
        check_fields(t, THINKING_FIELDS, "generation_config.thinking_config")?;
    }
    let temperature = match field(g, "temperature") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Some(t),
            _ => return Err(format!("* GenerateContentRequest.generation_config.temperature: must be in [0, 2], got {v}").into()),
        },
    };
    let max_tokens = field(g, "maxOutputTokens")
        .and_then(Value::as_u64)
        .unwrap_or(256);
    let logprobs = field(g, "responseLogprobs")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let top = match field(g, "logprobs") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(k) if k <= 20 => Some(k as u32),
            _ => {
                return Err(format!(
                "* GenerateContentRequest.generation_config.logprobs: must be in [0, 20], got {v}"
            )
                .into())
            }
        },
    };
    if top.is_some() && !logprobs {
        return Err("logprobs can only be set when responseLogprobs is true"
            .to_string()
            .into());
    }
    let n = match field(g, "candidateCount") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(k) if (1..=MAX_CANDIDATES).contains(&k) => k as u32,
            _ => {
                return Err(Refusal {
                    message: format!(
                        "* GenerateContentRequest.generation_config.candidate_count: must be in [1, {MAX_CANDIDATES}], got {v}"
                    ),
                    field: Some("generation_config.candidate_count".into()),
                })
            }
        },
    };
    let thinking = thinking_config
        .and_then(|t| field(t, "thinkingBudget"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0) as u64;
    Ok((
        Query {
            temperature,
            n,
            seed: field(g, "seed").and_then(Value::as_i64).map(|s| s as u64),
            top_logprobs: logprobs.then_some(top.unwrap_or(0)),
            ..Query::new(
                key,
                prompt,
                max_tokens.max(1).min(u32::MAX as u64) as u32,
                Tokenizer::Estimate,
            )
        },
        thinking,
    ))
}

/// Google's 400 for a refused request, with its `BadRequest` details.
pub(crate) fn refuse(sim: &Sim, r: Refusal) -> Response {
    let mut body = Api::Gemini.error_body(ErrKind::BadRequest, &r.message, None, sim);
    if let Some(f) = r.field {
        body["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": f, "description": r.message}],
        }]);
    }
    json_response(
        Api::Gemini.status(ErrKind::BadRequest),
        HeaderMap::new(),
        &body,
    )
}

/// The most candidates one request may ask for (`candidateCount`; Vertex
/// AI documents 1-8).
pub const MAX_CANDIDATES: u64 = 8;

fn candidate(index: usize, a: &Answer, logprobs: bool) -> Value {
    let mut candidate = json!({
        "content": if a.text.is_empty() { json!({"role": "model"}) }
                   else { json!({"parts": [{"text": a.text}], "role": "model"}) },
        "finishReason": if a.truncated { "MAX_TOKENS" } else { "STOP" },
        "index": index,
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
    candidate
}

pub(crate) fn body(sim: &Sim, key: &str, a: &Answer, logprobs: bool, thinking: u64) -> Value {
    let candidates: Vec<Value> = a
        .choices()
        .enumerate()
        .map(|(i, c)| candidate(i, c, logprobs))
        .collect();
    let thoughts = thinking.min(16);
    // The prompt is billed once, every candidate's output.
    let output = a.total_output_tokens();
    let mut usage = json!({
        "promptTokenCount": a.input_tokens,
        "candidatesTokenCount": output,
        "totalTokenCount": a.input_tokens + output + thoughts,
    });
    if thoughts > 0 {
        usage["thoughtsTokenCount"] = json!(thoughts);
    }
    json!({
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": key,
        "responseId": format!("sim{:016x}", sim.next_id()),
    })
}

/// `:countTokens`: `{"totalTokens": n}` for `contents` or a whole
/// `generateContentRequest`, counted as `generateContent` counts them.
pub(crate) fn count_tokens(sim: &Sim, model: &str, m: &Map<String, Value>) -> Response {
    let counted = check_fields(m, COUNT_FIELDS, "").and_then(|_| {
        match field(m, "generateContentRequest").and_then(Value::as_object) {
            Some(inner) => {
                check_fields(inner, REQUEST_FIELDS, "generate_content_request")?;
                prompt_of(inner)
            }
            None => prompt_of(m),
        }
    });
    match counted {
        Ok(prompt) => {
            let q = Query::new(model.to_string(), prompt, 0, Tokenizer::Estimate);
            sim.counted(&q.key);
            let n = q.input_tokens();
            json_response(
                axum::http::StatusCode::OK,
                HeaderMap::new(),
                &json!({"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}),
            )
        }
        Err(r) => refuse(sim, r),
    }
}

/// The refusal of a request without the right key (`x-goog-api-key` or
/// `?key=`), if it is one.
pub(crate) fn key_refusal(
    sim: &Sim,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Option<Response> {
    let given = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or(params.get("key").map(String::as_str));
    (!sim.key_ok(given)).then(|| {
        error(
            sim,
            Api::Gemini,
            ErrKind::BadRequest,
            "API key not valid. Please pass a valid API key.",
            None,
        )
    })
}

/// The refusal of a request asking a single-sample model for several
/// candidates, if it is one.
pub(crate) fn refuses_candidates(sim: &Sim, q: &Query) -> Option<Refusal> {
    (q.n > 1 && sim.config.single_sample.contains(&q.key)).then(|| Refusal {
        message: format!(
            "Unable to submit request because candidateCount must be 1 but the entered value was {}. Update the candidateCount value and try again.",
            q.n
        ),
        field: Some("generation_config.candidate_count".into()),
    })
}

/// `POST /v1beta/models/{model}:generateContent`, `:countTokens` and
/// `:batchGenerateContent` (see [`crate::batch::gemini`]).
pub async fn generate(
    State(sim): State<Arc<Sim>>,
    Path(target): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if let Some(r) = key_refusal(&sim, &headers, &params) {
        return r;
    }
    let m = match parse_body(&headers, &raw) {
        Ok(m) => m,
        Err(msg) => return error(&sim, Api::Gemini, ErrKind::BadRequest, &msg, None),
    };
    if let Some(model) = target.strip_suffix(":countTokens") {
        return count_tokens(&sim, model, &m);
    }
    if let Some(model) = target.strip_suffix(":batchGenerateContent") {
        let created = crate::batch::gemini::create(&sim, model, &m, raw.len());
        if created.status().is_success() {
            crate::batch::answer_delay(&sim).await;
        }
        return created;
    }
    let Some(model) = target.strip_suffix(":generateContent") else {
        return error(
            &sim,
            Api::Gemini,
            ErrKind::NotFound,
            &format!("Method not found: {target} (expected models/<model>:generateContent or :countTokens)"),
            None,
        );
    };
    answer(sim, model, &headers, &m).await
}

/// The answer to a `generateContent` body for `model` (the Gemini API's and
/// Vertex AI's route alike, once the caller is authenticated).
pub(crate) async fn answer(
    sim: Arc<Sim>,
    model: &str,
    headers: &HeaderMap,
    m: &Map<String, Value>,
) -> Response {
    let (q, thinking) = match query(model.to_string(), m) {
        Ok(x) => x,
        Err(r) => return refuse(&sim, r),
    };
    if let Some(r) = refuses_candidates(&sim, &q) {
        return refuse(&sim, r);
    }
    let mut q = q;
    q.forced_fault = crate::wire::forced_fault(headers);
    q.traceparent = crate::wire::traceparent(headers);
    let outcome = sim.decide(&q);
    let s = sim.clone();
    let logprobs = q.top_logprobs.is_some();
    respond(sim, Api::Gemini, &q.key, outcome, |a| {
        body(&s, &q.key, a, logprobs, thinking)
    })
    .await
}
