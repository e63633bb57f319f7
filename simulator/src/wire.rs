//! What the three APIs share on the wire: turning an [`Outcome`] into an HTTP
//! response with the API's own error bodies and rate-limit headers, and the
//! faults that live below JSON (malformed bodies, dropped connections,
//! answers that never come).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::engine::{Answer, Outcome, Sim};
use crate::faults::Fault;
use crate::limits::{RateInfo, Which};

/// The API a request came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Classes of error every API has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrKind {
    BadRequest,
    Auth,
    NotFound,
    RateLimited,
    Internal,
    Overloaded,
}

impl Api {
    pub fn status(self, kind: ErrKind) -> StatusCode {
        match kind {
            ErrKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrKind::Auth => StatusCode::UNAUTHORIZED,
            ErrKind::NotFound => StatusCode::NOT_FOUND,
            ErrKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrKind::Overloaded => match self {
                // Anthropic signals overload with its own 529.
                Api::Anthropic => {
                    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
                }
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The API's error body.
    pub fn error_body(self, kind: ErrKind, message: &str, param: Option<&str>, sim: &Sim) -> Value {
        match self {
            Api::OpenAi => {
                let (ty, code) = match kind {
                    ErrKind::BadRequest => ("invalid_request_error", Value::Null),
                    ErrKind::Auth => ("invalid_request_error", json!("invalid_api_key")),
                    ErrKind::NotFound => ("invalid_request_error", json!("model_not_found")),
                    ErrKind::RateLimited => ("requests", json!("rate_limit_exceeded")),
                    ErrKind::Internal => ("server_error", Value::Null),
                    ErrKind::Overloaded => ("server_error", json!("overloaded")),
                };
                json!({"error": {"message": message, "type": ty, "param": param, "code": code}})
            }
            Api::Anthropic => {
                let ty = match kind {
                    ErrKind::BadRequest => "invalid_request_error",
                    ErrKind::Auth => "authentication_error",
                    ErrKind::NotFound => "not_found_error",
                    ErrKind::RateLimited => "rate_limit_error",
                    ErrKind::Internal => "api_error",
                    ErrKind::Overloaded => "overloaded_error",
                };
                json!({"type": "error", "error": {"type": ty, "message": message},
                       "request_id": format!("req_sim{:016x}", sim.next_id())})
            }
            Api::Gemini => {
                let status = match kind {
                    ErrKind::BadRequest => "INVALID_ARGUMENT",
                    ErrKind::Auth => "UNAUTHENTICATED",
                    ErrKind::NotFound => "NOT_FOUND",
                    ErrKind::RateLimited => "RESOURCE_EXHAUSTED",
                    ErrKind::Internal => "INTERNAL",
                    ErrKind::Overloaded => "UNAVAILABLE",
                };
                json!({"error": {"code": self.status(kind).as_u16(), "message": message, "status": status}})
            }
        }
    }

    /// The API's rate-limit headers for a key's state.
    pub fn rate_headers(self, info: &RateInfo, h: &mut HeaderMap) {
        match self {
            Api::OpenAi => {
                if let Some(l) = info.rpm {
                    put(h, "x-ratelimit-limit-requests", l.to_string());
                    put(
                        h,
                        "x-ratelimit-remaining-requests",
                        info.requests_remaining.to_string(),
                    );
                    put(
                        h,
                        "x-ratelimit-reset-requests",
                        go_duration(info.requests_reset),
                    );
                }
                if let Some(l) = info.tpm {
                    put(h, "x-ratelimit-limit-tokens", l.to_string());
                    put(
                        h,
                        "x-ratelimit-remaining-tokens",
                        info.tokens_remaining.to_string(),
                    );
                    put(
                        h,
                        "x-ratelimit-reset-tokens",
                        go_duration(info.tokens_reset),
                    );
                }
            }
            Api::Anthropic => {
                let at = |d: Duration| {
                    let t =
                        chrono::Utc::now() + chrono::Duration::milliseconds(d.as_millis() as i64);
                    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                };
                if let Some(l) = info.rpm {
                    put(h, "anthropic-ratelimit-requests-limit", l.to_string());
                    put(
                        h,
                        "anthropic-ratelimit-requests-remaining",
                        info.requests_remaining.to_string(),
                    );
                    put(
                        h,
                        "anthropic-ratelimit-requests-reset",
                        at(info.requests_reset),
                    );
                }
                if let Some(l) = info.tpm {
                    for kind in ["tokens", "input-tokens"] {
                        put(
                            h,
                            &format!("anthropic-ratelimit-{kind}-limit"),
                            l.to_string(),
                        );
                        put(
                            h,
                            &format!("anthropic-ratelimit-{kind}-remaining"),
                            info.tokens_remaining.to_string(),
                        );
                        put(
                            h,
                            &format!("anthropic-ratelimit-{kind}-reset"),
                            at(info.tokens_reset),
                        );
                    }
                }
            }
            // Gemini reports quota only in its 429 bodies.
            Api::Gemini => {}
        }
    }
}

fn put(h: &mut HeaderMap, name: &str, value: String) {
    if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        h.insert(n, v);
    }
}

/// A duration as OpenAI writes its reset headers: `120ms`, `1.5s`, `6m0s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, headers: HeaderMap, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r.headers_mut().extend(headers);
    r
}

/// An API error response.
pub fn error(sim: &Sim, api: Api, kind: ErrKind, message: &str, param: Option<&str>) -> Response {
    let mut h = HeaderMap::new();
    if matches!(kind, ErrKind::Overloaded) {
        put(&mut h, "retry-after", "1".into());
    }
    json_response(
        api.status(kind),
        h,
        &api.error_body(kind, message, param, sim),
    )
}

/// A response whose body breaks off: the connection drops mid-response.
pub fn dropped() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated dropped connection",
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// Renders an outcome with `render` making the API's success body.
pub async fn respond(
    sim: Arc<Sim>,
    api: Api,
    key: &str,
    outcome: Outcome,
    render: impl FnOnce(&Answer) -> Value,
) -> Response {
    match outcome {
        Outcome::Answer {
            answer,
            delay,
            info,
        } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut h = HeaderMap::new();
            api.rate_headers(&info, &mut h);
            put(
                &mut h,
                "x-request-id",
                format!("req_sim{:016x}", sim.next_id()),
            );
            json_response(StatusCode::OK, h, &render(&answer))
        }
        Outcome::Refused(refusal) => {
            let mut h = HeaderMap::new();
            api.rate_headers(&refusal.info, &mut h);
            let ms = refusal.retry_after.as_millis().max(1) as u64;
            put(&mut h, "retry-after", ms.div_ceil(1000).to_string());
            if api == Api::OpenAi {
                put(&mut h, "retry-after-ms", ms.to_string());
            }
            let (what, limit, used) = match refusal.which {
                Which::Requests => (
                    "requests per min (RPM)",
                    refusal.info.rpm.unwrap_or(0),
                    refusal.info.rpm.unwrap_or(0)
                        - refusal
                            .info
                            .requests_remaining
                            .min(refusal.info.rpm.unwrap_or(0)),
                ),
                Which::Tokens => (
                    "tokens per min (TPM)",
                    refusal.info.tpm.unwrap_or(0),
                    refusal.info.tpm.unwrap_or(0)
                        - refusal
                            .info
                            .tokens_remaining
                            .min(refusal.info.tpm.unwrap_or(0)),
                ),
            };
            let msg = format!(
                "Rate limit reached for {key} on {what}: Limit {limit}, Used {used}. Please try again in {}.",
                go_duration(refusal.retry_after)
            );
            let mut body = api.error_body(ErrKind::RateLimited, &msg, None, &sim);
            if api == Api::Gemini {
                body["error"]["details"] = json!([{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": format!("{}s", ms.div_ceil(1000)),
                }]);
            }
            json_response(StatusCode::TOO_MANY_REQUESTS, h, &body)
        }
        Outcome::UnknownModel => error(
            &sim,
            api,
            ErrKind::NotFound,
            &format!("The model `{key}` does not exist or you do not have access to it."),
            Some("model"),
        ),
        Outcome::Fault { fault, info } => {
            let mut h = HeaderMap::new();
            api.rate_headers(&info, &mut h);
            match fault {
                Fault::Internal => error(
                    &sim,
                    api,
                    ErrKind::Internal,
                    "The server had an error while processing your request. Sorry about that!",
                    None,
                ),
                Fault::Unavailable => error(
                    &sim,
                    api,
                    ErrKind::Overloaded,
                    "The server is overloaded or not ready yet.",
                    None,
                ),
                Fault::RateLimit => {
                    put(&mut h, "retry-after", "1".into());
                    if api == Api::OpenAi {
                        put(&mut h, "retry-after-ms", "200".into());
                    }
                    let body = api.error_body(
                        ErrKind::RateLimited,
                        "Rate limit reached (injected). Please try again in 200ms.",
                        None,
                        &sim,
                    );
                    json_response(StatusCode::TOO_MANY_REQUESTS, h, &body)
                }
                Fault::Timeout => {
                    tokio::time::sleep(sim.config.hang).await;
                    dropped()
                }
                Fault::Drop => dropped(),
                Fault::Malformed => {
                    let mut r = (
                        StatusCode::OK,
                        "{\"id\": \"sim\", \"choices\": [{\"index\": 0, \"mess",
                    )
                        .into_response();
                    r.headers_mut()
                        .insert("content-type", HeaderValue::from_static("application/json"));
                    r.headers_mut().extend(h);
                    r
                }
                // Delivered as answers by the engine.
                Fault::Slow | Fault::NonDigit | Fault::Empty => error(
                    &sim,
                    api,
                    ErrKind::Internal,
                    "unexpected fault routing",
                    None,
                ),
            }
        }
    }
}

/// The W3C trace context a request carried (`traceparent`), recorded in the
/// stats so tests can follow a trace into the provider call.
pub fn traceparent(h: &HeaderMap) -> Option<String> {
    h.get("traceparent")?.to_str().ok().map(str::to_string)
}

/// The fault a request asks for with the `x-sim-fault` header.
pub fn forced_fault(h: &HeaderMap) -> Option<Fault> {
    h.get("x-sim-fault")?.to_str().ok()?.trim().parse().ok()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The UTF-8 bytes of a token, as OpenAI lists them.
pub fn token_bytes(t: &str) -> Vec<u8> {
    t.as_bytes().to_vec()
}

/// Reads a JSON object body sent as `application/json`, or says why it is
/// not one.
pub fn parse_body(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Map<String, Value>, String> {
    let content_type = headers
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
    let is_json = content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(format!(
            "Invalid Content-Type header ({}); the request body must be JSON sent with Content-Type: application/json.",
            content_type.as_deref().unwrap_or("none given")
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("The request body must be a JSON object.".into()),
        Err(e) => Err(format!(
            "We could not parse the JSON body of your request ({e}). The request body must be valid JSON."
        )),
    }
}

/// Whether the `anthropic_version` of a Claude body on a cloud (Bedrock's
/// InvokeModel, Vertex AI's rawPredict) is one the cloud takes: its own tag
/// (`bedrock-2023-05-31`, `vertex-2023-10-16`), or an Anthropic API version
/// date (`2026-10-21`), which the `anthropic` SDK's cloud clients send.
pub fn anthropic_version_ok(v: &str, tag: &str) -> bool {
    if v == tag {
        return true;
    }
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}
