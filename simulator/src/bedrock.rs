//! Amazon Bedrock Runtime's wire format: the Converse API
//! (`POST /model/{modelId}/converse`), token counting
//! (`POST /model/{modelId}/count-tokens`) and, for Claude, InvokeModel with
//! Anthropic's body (`POST /model/{modelId}/invoke`, `anthropic_version`
//! `bedrock-2023-05-31`, answered as Anthropic's Messages), SigV4-signed, with Bedrock's
//! error shapes (`x-amzn-ErrorType` naming the exception, `{"message"}` in
//! the body). The model id in the path (URL-encoded: a model id, inference
//! profile id or ARN) is the replay key.
//!
//! Every request must carry a valid SigV4 signature (service `bedrock`) by
//! the key pair given with `--aws-key` or by credentials the simulator
//! issued ([`creds`]): a missing one is `MissingAuthenticationTokenException`,
//! an unknown key `UnrecognizedClientException`, a wrong signature
//! `InvalidSignatureException`, expired issued credentials
//! `ExpiredTokenException`, a model named with `--aws-deny`
//! `AccessDeniedException` (all 403); a body outside the `ConverseRequest`
//! shape of Bedrock's service model is a `ValidationException` (400), a rate
//! limit or injected 429 a `ThrottlingException` (429, with `retry-after`),
//! an injected 503 a `ServiceUnavailableException`.

pub mod creds;
pub mod sigv4;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use moralsweep_common::tokens::Tokenizer;

use crate::engine::{Answer, Outcome, Query, Sim};
use crate::faults::Fault;
use crate::wire::{dropped, go_duration, json_response, parse_body};

pub use creds::{AwsKey, AwsSim};

/// The members of `ConverseRequest` in botocore's `bedrock-runtime`
/// service model, but `modelId` (the path).
const CONVERSE_FIELDS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
];

/// The members of `InferenceConfiguration`.
const INFERENCE_FIELDS: &[&str] = &["maxTokens", "temperature", "topP", "stopSequences"];

/// The `anthropic_version` Claude's InvokeModel body carries on Bedrock.
const ANTHROPIC_BEDROCK_VERSION: &str = "bedrock-2023-05-31";

/// How far a request's `x-amz-date` may be from the simulator's clock.
const MAX_SKEW_SECS: i64 = 300;

/// A Bedrock error answer.
pub fn error(sim: &Sim, status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = json_response(status, HeaderMap::new(), &json!({"message": message}));
    if let Ok(v) = HeaderValue::try_from(format!(
        "{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    if let Ok(v) = HeaderValue::try_from(format!("sim-{:016x}", sim.next_id())) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn validation(sim: &Sim, message: &str) -> Response {
    error(sim, StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn forbidden(sim: &Sim, code: &str, message: &str) -> Response {
    sim.config.aws.bad_signature();
    error(sim, StatusCode::FORBIDDEN, code, message)
}

/// The refusal of a request whose SigV4 signature is missing, by an
/// unknown or expired key, or wrong.
fn signature_refusal(sim: &Sim, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let Some(value) = header("authorization") else {
        return Some(forbidden(
            sim,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let auth = match sigv4::parse_authorization(&value) {
        Ok(a) => a,
        Err(m) => return Some(forbidden(sim, "IncompleteSignatureException", &m)),
    };
    let token = header("x-amz-security-token");
    let secret = match sim.config.aws.secret_of(&auth.access_key, token.as_deref()) {
        Ok(s) => s,
        Err(creds::Refusal::Expired) => {
            return Some(error(
                sim,
                StatusCode::FORBIDDEN,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ))
        }
        Err(creds::Refusal::Unrecognized) => {
            return Some(forbidden(
                sim,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ))
        }
    };
    let Some(amz_date) = header("x-amz-date") else {
        return Some(forbidden(
            sim,
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Some(forbidden(
            sim,
            "InvalidSignatureException",
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    if auth.service != "bedrock" {
        return Some(forbidden(
            sim,
            "InvalidSignatureException",
            &format!("Credential should be scoped to correct service: 'bedrock'. Credential={}/{}/{}/{}/aws4_request", auth.access_key, auth.date, auth.region, auth.service),
        ));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ") {
        let skew = (chrono::Utc::now().naive_utc() - t).num_seconds();
        if skew.abs() > MAX_SKEW_SECS {
            return Some(forbidden(
                sim,
                "InvalidSignatureException",
                &format!("Signature expired: {amz_date} is now earlier or later than the simulator's clock by more than 5 minutes."),
            ));
        }
    }
    let r = sigv4::Signable {
        method: "POST",
        path: uri.path(),
        query: uri.query(),
        header: &header,
        body,
        amz_date: &amz_date,
    };
    match sigv4::signature(&auth, &secret, &r) {
        Ok(sig) if sigv4::same(&sig, &auth.signature) => None,
        Ok(_) => Some(forbidden(
            sim,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )),
        Err(m) => Some(forbidden(sim, "InvalidSignatureException", &m)),
    }
}

/// The model id of a path label (percent-decoded by the router).
fn denied(sim: &Sim, model: &str) -> Option<Response> {
    sim.config.aws.denied.iter().any(|d| d == model).then(|| {
        error(
            sim,
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            &format!(
                "User: arn:aws:sts::123456789012:assumed-role/moralsweep-worker/sim is not authorized to perform: bedrock:InvokeModel \
                 on resource: arn:aws:bedrock:us-east-1::foundation-model/{model} because no identity-based policy allows the bedrock:InvokeModel action"
            ),
        )
    })
}

/// The prompt of Converse `messages` (the user messages' text blocks).
fn prompt_of(m: &Map<String, Value>) -> Result<String, String> {
    let Some(Value::Array(messages)) = m.get("messages") else {
        return Err("Malformed input request: #: required key [messages] not found, please reformat your input and try again.".into());
    };
    let mut prompt = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let Some(obj) = msg.as_object() else {
            return Err(format!(
                "Malformed input request: #/messages/{i}: expected type: JSONObject"
            ));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["role", "content"].contains(&k.as_str()))
        {
            return Err(format!("Malformed input request: #/messages/{i}: extraneous key [{k}] is not permitted, please reformat your input and try again."));
        }
        let role = obj.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(format!("1 validation error detected: Value at 'messages.{}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]", i + 1));
        }
        let Some(Value::Array(blocks)) = obj.get("content") else {
            return Err(format!(
                "Malformed input request: #/messages/{i}/content: expected type: JSONArray"
            ));
        };
        if role == Some("assistant") {
            continue;
        }
        for b in blocks {
            match b.get("text") {
                Some(Value::String(t)) => prompt.push(t.clone()),
                _ => return Err(format!("Malformed input request: #/messages/{i}/content: this simulator takes text blocks only")),
            }
        }
    }
    if prompt.is_empty() {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    }
    Ok(prompt.join("\n"))
}

/// The query of a Converse body.
fn query(model: &str, m: &Map<String, Value>) -> Result<Query, String> {
    if let Some(k) = m.keys().find(|k| !CONVERSE_FIELDS.contains(&k.as_str())) {
        return Err(format!("Malformed input request: #: extraneous key [{k}] is not permitted, please reformat your input and try again."));
    }
    let prompt = prompt_of(m)?;
    let mut max_tokens = 4096u64;
    let mut temperature = None;
    if let Some(c) = m.get("inferenceConfig") {
        let Some(c) = c.as_object() else {
            return Err(
                "Malformed input request: #/inferenceConfig: expected type: JSONObject".into(),
            );
        };
        if let Some(k) = c.keys().find(|k| !INFERENCE_FIELDS.contains(&k.as_str())) {
            return Err(format!("Malformed input request: #/inferenceConfig: extraneous key [{k}] is not permitted, please reformat your input and try again."));
        }
        if let Some(v) = c.get("maxTokens") {
            max_tokens = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                format!("1 validation error detected: Value '{v}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1")
            })?;
        }
        if let Some(v) = c.get("temperature") {
            let t = v.as_f64().filter(|t| (0.0..=1.0).contains(t)).ok_or_else(|| {
                format!("1 validation error detected: Value '{v}' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1")
            })?;
            temperature = Some(t);
        }
    }
    let mut q = Query::new(
        model.to_string(),
        prompt,
        max_tokens.min(u32::MAX as u64) as u32,
        Tokenizer::Estimate,
    );
    q.temperature = temperature;
    Ok(q)
}

fn converse_body(a: &Answer) -> Value {
    let content: Vec<Value> = if a.text.is_empty() {
        vec![]
    } else {
        vec![json!({"text": a.text})]
    };
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": if a.truncated { "max_tokens" } else { "end_turn" },
        "usage": {
            "inputTokens": a.input_tokens,
            "outputTokens": a.output_tokens,
            "totalTokens": a.input_tokens + a.output_tokens,
        },
        "metrics": {"latencyMs": 1},
    })
}

fn throttled(sim: &Sim, retry_after_ms: u64, message: &str) -> Response {
    let mut r = error(
        sim,
        StatusCode::TOO_MANY_REQUESTS,
        "ThrottlingException",
        message,
    );
    if let Ok(v) = HeaderValue::try_from(retry_after_ms.max(1).div_ceil(1000).to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// An outcome in Bedrock's shapes, an answer rendered by `render`.
async fn respond(
    sim: &Sim,
    key: &str,
    outcome: Outcome,
    render: impl FnOnce(&Answer) -> Value,
) -> Response {
    match outcome {
        Outcome::Answer { answer, delay, .. } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut r = json_response(StatusCode::OK, HeaderMap::new(), &render(&answer));
            if let Ok(v) = HeaderValue::try_from(format!("sim-{:016x}", sim.next_id())) {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            r
        }
        Outcome::Refused(refusal) => {
            let ms = refusal.retry_after.as_millis() as u64;
            throttled(
                sim,
                ms,
                &format!(
                    "Too many requests, please wait before trying again. ({key}: try again in {})",
                    go_duration(refusal.retry_after)
                ),
            )
        }
        Outcome::UnknownModel => error(
            sim,
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("The provided model identifier is invalid. (no model {key:?} here)"),
        ),
        Outcome::Fault { fault, .. } => match fault {
            Fault::RateLimit => throttled(
                sim,
                200,
                "Too many requests, please wait before trying again. (injected)",
            ),
            Fault::Unavailable => error(
                sim,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "Bedrock is unable to process your request.",
            ),
            Fault::Timeout => {
                tokio::time::sleep(sim.config.hang).await;
                dropped()
            }
            Fault::Drop => dropped(),
            Fault::Malformed => {
                let mut r = (
                    StatusCode::OK,
                    "{\"output\": {\"message\": {\"role\": \"assi",
                )
                    .into_response();
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                r
            }
            Fault::Internal | Fault::Slow | Fault::NonDigit | Fault::Empty => error(
                sim,
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                "The server encountered an error processing your request. (injected)",
            ),
        },
    }
}

/// `POST /model/{modelId}/converse` and `/model/{modelId}/count-tokens`.
pub async fn model_op(
    State(sim): State<Arc<Sim>>,
    Path((model, op)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if let Some(r) = signature_refusal(&sim, &uri, &headers, &raw) {
        return r;
    }
    if let Some(r) = denied(&sim, &model) {
        return r;
    }
    let m = match parse_body(&headers, &raw) {
        Ok(m) => m,
        Err(msg) => return validation(&sim, &msg),
    };
    match op.as_str() {
        "converse" => {
            let mut q = match query(&model, &m) {
                Ok(q) => q,
                Err(msg) => return validation(&sim, &msg),
            };
            q.forced_fault = crate::wire::forced_fault(&headers);
            q.traceparent = crate::wire::traceparent(&headers);
            let outcome = sim.decide(&q);
            respond(&sim, &q.key, outcome, converse_body).await
        }
        // InvokeModel with Anthropic's body, as Claude on Bedrock takes it
        // (the `anthropic` SDK's `AnthropicBedrock` client).
        "invoke" => {
            let mut m = m;
            match m.remove("anthropic_version") {
                Some(Value::String(v)) if crate::wire::anthropic_version_ok(&v, ANTHROPIC_BEDROCK_VERSION) => {}
                _ => {
                    return validation(
                        &sim,
                        &format!("Malformed input request: #: required key [anthropic_version] not found or not {ANTHROPIC_BEDROCK_VERSION:?}, please reformat your input and try again."),
                    )
                }
            }
            if m.contains_key("model") {
                return validation(&sim, "Malformed input request: #: extraneous key [model] is not permitted, please reformat your input and try again.");
            }
            m.insert("model".into(), Value::String(model.clone()));
            let mut q = match crate::anthropic::query(&m) {
                Ok(q) => q,
                Err(msg) => return validation(&sim, &format!("Malformed input request: {msg}")),
            };
            q.forced_fault = crate::wire::forced_fault(&headers);
            q.traceparent = crate::wire::traceparent(&headers);
            let outcome = sim.decide(&q);
            let key = q.key.clone();
            respond(&sim, &key, outcome, |a| {
                crate::anthropic::body(&sim, &key, a)
            })
            .await
        }
        "count-tokens" => {
            let input = m.get("input").and_then(Value::as_object);
            if let Some(k) = m.keys().find(|k| k.as_str() != "input") {
                return validation(
                    &sim,
                    &format!("Malformed input request: #: extraneous key [{k}] is not permitted"),
                );
            }
            let Some(conv) = input
                .and_then(|i| i.get("converse"))
                .and_then(Value::as_object)
            else {
                return validation(
                    &sim,
                    "Malformed input request: #/input: this simulator counts `converse` inputs",
                );
            };
            match query(&model, conv) {
                Ok(q) if sim.knows(&q.key) => {
                    sim.counted(&q.key);
                    json_response(
                        StatusCode::OK,
                        HeaderMap::new(),
                        &json!({"inputTokens": q.input_tokens()}),
                    )
                }
                Ok(q) => respond(&sim, &q.key, Outcome::UnknownModel, converse_body).await,
                Err(msg) => validation(&sim, &msg),
            }
        }
        other => error(
            &sim,
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("Unknown operation /model/{{modelId}}/{other}"),
        ),
    }
}
