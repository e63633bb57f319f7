//! What every HTTP provider shares: the API key (from the environment or a
//! mounted file, never from the spec, never in a message), one pooled client
//! with a per-call timeout, and the classification of failures into what the
//! caller should do:
//!
//! - 429 -> [`ProviderError::RateLimited`], with the wait the provider asked
//!   for (`retry-after-ms`, `Retry-After`, OpenAI's `x-ratelimit-reset-*`,
//!   Anthropic's `anthropic-ratelimit-*-reset`, Gemini's `RetryInfo`);
//! - 5xx, 408, 529, timeouts, dropped connections, bodies that are not JSON
//!   -> [`ProviderError::Retryable`];
//! - no connection at all (refused, DNS failure, connect timeout) ->
//!   [`ProviderError::Unreachable`], naming the base_url;
//! - 400/401/403/404 and other 4xx -> [`ProviderError::Fatal`] with a message
//!   naming the model key, the key's source (the variable or file, not the
//!   value), the model id or the field that is wrong.
//!
//! Every request carries the W3C `traceparent` of the span it is made in
//! (the `provider_call` span) when spans are exported, so a collector shows
//! the provider call inside the lease's trace.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use moralsweep_common::tokens::Tokenizer;
use moralsweep_common::ModelSpec;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::ProviderError;

/// Default per-call timeout when the spec gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// An API key. Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        // Kept out of every log line and exported span from now on.
        moralsweep_telemetry::redact::register_secret(&s);
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(moralsweep_telemetry::redact::REDACTED)
    }
}

/// Where a model's API key comes from.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// Environment variable used when the spec names neither
    /// `api_key_env` nor `api_key_file`.
    pub default_env: Option<&'static str>,
    /// Whether a call without a key makes sense (local servers, the simulator).
    pub required: bool,
}

/// The key and a description of its source, for messages.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub secret: Secret,
    /// `environment variable OPENAI_API_KEY` or `api_key_file /path`.
    pub source: String,
}

/// Reads the API key a spec points to.
pub fn resolve_key(spec: &ModelSpec, policy: &KeyPolicy) -> Result<Option<ApiKey>, ProviderError> {
    let key = &spec.key;
    if let Some(path) = &spec.api_key_file {
        let text = moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::SPEC_LIMIT).map_err(|e| {
            ProviderError::Fatal(format!(
                "model {key:?}: cannot read api_key_file {}: {e}; point it at a file holding only the key",
                path.display()
            ))
        })?;
        let value = text.trim();
        if value.is_empty() {
            return Err(ProviderError::Fatal(format!(
                "model {key:?}: api_key_file {} is empty; it must hold the API key",
                path.display()
            )));
        }
        return Ok(Some(ApiKey {
            secret: Secret::new(value.to_string()),
            source: format!("api_key_file {}", path.display()),
        }));
    }
    let (var, explicit) = match (&spec.api_key_env, policy.default_env) {
        (Some(v), _) => (Some(v.as_str()), true),
        (None, Some(d)) => (Some(d), false),
        (None, None) => (None, false),
    };
    if let Some(var) = var {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                return Ok(Some(ApiKey {
                    secret: Secret::new(v.trim().to_string()),
                    source: format!("environment variable {var}"),
                }))
            }
            _ if explicit || policy.required => {
                return Err(ProviderError::Fatal(format!(
                    "model {key:?}: no API key: the environment variable {var} is not set; export {var}=<your key>{}",
                    if explicit { "" } else { " or name another variable with api_key_env (or a file with api_key_file)" }
                )))
            }
            _ => {}
        }
    }
    if policy.required {
        return Err(ProviderError::Fatal(format!(
            "model {key:?}: no API key; give api_key_env (an environment variable) or api_key_file"
        )));
    }
    Ok(None)
}

/// A provider's HTTP plumbing for one model.
#[derive(Debug, Clone)]
pub struct HttpCore {
    pub client: reqwest::Client,
    /// The spec's model key, for messages.
    pub model_key: String,
    /// The provider's model id.
    pub model: String,
    pub key: Option<ApiKey>,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Headers sent with every request (the spec's `headers`).
    pub headers: HeaderMap,
    /// Extra request fields from the spec, merged into every body.
    pub extra: Map<String, Value>,
    pub timeout: Duration,
    /// How the model's prompts are counted when the provider reports no
    /// usage (`moralsweep_common::tokens`).
    pub tokenizer: Tokenizer,
}

fn header_map(
    spec: &ModelSpec,
    pairs: &BTreeMap<String, String>,
) -> Result<HeaderMap, ProviderError> {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::try_from(k.as_str()).map_err(|_| {
            ProviderError::Fatal(format!(
                "model {:?}: headers.{k:?} is not a valid HTTP header name",
                spec.key
            ))
        })?;
        let value = HeaderValue::try_from(v.as_str()).map_err(|_| {
            ProviderError::Fatal(format!(
                "model {:?}: the value of headers.{k:?} is not a valid HTTP header value",
                spec.key
            ))
        })?;
        h.insert(name, value);
    }
    Ok(h)
}

impl HttpCore {
    /// Plumbing for `spec`, with `default_base` when the spec gives no
    /// `base_url`, and `preset_headers` under the spec's own headers.
    pub fn new(
        spec: &ModelSpec,
        default_base: Option<&str>,
        policy: &KeyPolicy,
        preset_headers: &[(&str, &str)],
    ) -> Result<HttpCore, ProviderError> {
        let base = spec
            .base_url
            .as_deref()
            .or(default_base)
            .ok_or_else(|| {
                ProviderError::Fatal(format!(
                    "model {:?}: provider \"{}\" needs base_url (where its API lives, e.g. http://localhost:8000/v1) or a preset",
                    spec.key, spec.provider
                ))
            })?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: base_url {base:?} must start with http:// or https://",
                spec.key
            )));
        }
        let mut all = BTreeMap::new();
        for (k, v) in preset_headers {
            all.insert(k.to_string(), v.to_string());
        }
        for (k, v) in &spec.headers {
            // The spec's headers win over a preset's (case-insensitively).
            all.retain(|old: &String, _| !old.eq_ignore_ascii_case(k));
            all.insert(k.clone(), v.clone());
        }
        let timeout = spec
            .timeout_secs
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_TIMEOUT);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .user_agent(concat!("moralsweep/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Fatal(format!("cannot build an HTTP client: {e}")))?;
        Ok(HttpCore {
            client,
            model_key: spec.key.clone(),
            model: spec.model.clone(),
            key: resolve_key(spec, policy)?,
            base_url: base.trim_end_matches('/').to_string(),
            headers: header_map(spec, &all)?,
            extra: spec.extra.clone().into_iter().collect(),
            timeout,
            tokenizer: Tokenizer::for_model(spec.provider, &spec.model),
        })
    }

    /// Replaces the key's value wherever it appears in a text.
    pub fn redact(&self, text: &str) -> String {
        let key = self.key.as_ref().map(|k| k.secret.expose()).unwrap_or("");
        moralsweep_telemetry::redact::redact_with(text, key).into_owned()
    }

    fn key_source(&self) -> String {
        self.key
            .as_ref()
            .map(|k| k.source.clone())
            .unwrap_or_else(|| "(no key configured)".into())
    }

    /// POSTs a JSON body with `auth` headers; returns the parsed JSON of a
    /// 2xx answer, or the classified failure.
    pub async fn post(
        &self,
        url: &str,
        auth: HeaderMap,
        body: &Value,
    ) -> Result<Value, ProviderError> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Fatal(format!("cannot encode the request: {e}")))?;
        let bytes = self
            .post_bytes(url, auth, "application/json", payload)
            .await?;
        self.json_of(&bytes)
    }

    /// POSTs a body of any type (a multipart upload, say); the bytes of a
    /// 2xx answer, or the classified failure.
    pub async fn post_bytes(
        &self,
        url: &str,
        auth: HeaderMap,
        content_type: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, ProviderError> {
        let request = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .headers(auth)
            .header("content-type", content_type)
            .body(payload);
        self.send(request, url).await
    }

    /// GETs `url`; the bytes of a 2xx answer, or the classified failure.
    pub async fn get_bytes(&self, url: &str, auth: HeaderMap) -> Result<Vec<u8>, ProviderError> {
        let request = self
            .client
            .get(url)
            .headers(self.headers.clone())
            .headers(auth);
        self.send(request, url).await
    }

    /// GETs `url`; the parsed JSON of a 2xx answer.
    pub async fn get(&self, url: &str, auth: HeaderMap) -> Result<Value, ProviderError> {
        let bytes = self.get_bytes(url, auth).await?;
        self.json_of(&bytes)
    }

    /// A 2xx answer's JSON.
    pub fn json_of(&self, bytes: &[u8]) -> Result<Value, ProviderError> {
        serde_json::from_slice(bytes).map_err(|e| {
            ProviderError::Retryable(format!(
                "model {:?}: the answer is not valid JSON ({e}): {}",
                self.model_key,
                self.redact(&snippet(bytes))
            ))
        })
    }

    /// Sends a request with the trace context; the body of a 2xx answer.
    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        // The trace of the call (its `provider_call` span) goes out with it.
        if let Some(tp) = moralsweep_telemetry::propagation::current_traceparent() {
            request = request.header("traceparent", tp);
        }
        let resp = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        moralsweep_telemetry::spans::record_http_status(status.as_u16());
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| {
            ProviderError::Retryable(format!(
                "model {:?}: the connection broke while reading the answer: {}",
                self.model_key,
                self.redact(&error_chain(&e))
            ))
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(self.classify(status.as_u16(), &headers, &bytes, url))
    }

    fn transport_error(&self, e: &reqwest::Error) -> ProviderError {
        if e.is_connect() {
            return ProviderError::Unreachable(format!(
                "model {:?}: cannot connect to {}: {}",
                self.model_key,
                self.base_url,
                self.redact(&error_chain(e))
            ));
        }
        let what = if e.is_timeout() {
            format!(
                "no answer within {:.1}s (timeout_secs)",
                self.timeout.as_secs_f64()
            )
        } else {
            "the request failed".to_string()
        };
        ProviderError::Retryable(format!(
            "model {:?}: {what}: {}",
            self.model_key,
            self.redact(&error_chain(e))
        ))
    }

    /// Classifies a non-2xx answer.
    pub fn classify(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        url: &str,
    ) -> ProviderError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let message = json
            .as_ref()
            .and_then(provider_message)
            .unwrap_or_else(|| snippet(body));
        let message = self.redact(&message);
        let code = json
            .as_ref()
            .and_then(|j| {
                j.pointer("/error/code")
                    .or_else(|| j.pointer("/error/type"))
            })
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = &self.model_key;
        let model = &self.model;
        match status {
            429 if code == "insufficient_quota" => ProviderError::Fatal(format!(
                "model {key:?}: the account of the key from {} has no quota left (429 insufficient_quota): {message}",
                self.key_source()
            )),
            429 => ProviderError::RateLimited {
                retry_after: retry_after(headers, json.as_ref()),
            },
            408 | 409 | 425 | 500..=599 => ProviderError::Retryable(format!(
                "model {key:?}: the provider answered {status}: {message}"
            )),
            400 => {
                let param = json
                    .as_ref()
                    .and_then(|j| j.pointer("/error/param"))
                    .and_then(Value::as_str)
                    .map(|p| format!(" (field `{p}`)"))
                    .unwrap_or_default();
                let hint = if message.to_ascii_lowercase().contains("api key") {
                    format!("check the key from {}", self.key_source())
                } else {
                    format!("check the model id {model:?} and the fields the spec adds (extra, reasoning, api, thinking_budget)")
                };
                ProviderError::Fatal(format!(
                    "model {key:?}: the provider refused the request{param} (400): {message}; {hint}"
                ))
            }
            401 => ProviderError::Fatal(format!(
                "model {key:?}: the API key from {} was refused (401): {message}; check that it holds a valid key for {}",
                self.key_source(),
                self.base_url
            )),
            403 => ProviderError::Fatal(format!(
                "model {key:?}: the key from {} may not use model {model:?} (403): {message}",
                self.key_source()
            )),
            404 => ProviderError::Fatal(format!(
                "model {key:?}: model {model:?} or the endpoint {url} was not found (404): {message}; check `model` and `base_url`"
            )),
            _ => ProviderError::Fatal(format!(
                "model {key:?}: the provider refused the request ({status}): {message}"
            )),
        }
    }
}

/// The message of a provider's error body (OpenAI, Anthropic and Gemini all
/// use `error.message`).
fn provider_message(j: &Value) -> Option<String> {
    j.pointer("/error/message")
        .or_else(|| j.get("message"))
        .or_else(|| j.get("detail"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| j.get("error").and_then(Value::as_str).map(str::to_string))
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s: String = s.chars().take(300).collect();
    if s.trim().is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A Go-style duration as OpenAI writes it: `1s`, `6m0s`, `120ms`, `1h2m3.5s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += v * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then(|| Duration::from_secs_f64(total))
}

/// The wait a 429 asks for, from the headers and body of every provider.
pub fn retry_after(h: &HeaderMap, body: Option<&Value>) -> Option<Duration> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_secs_f64(secs.max(0.0)));
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc2822(v) {
            let d = t.with_timezone(&chrono::Utc) - chrono::Utc::now();
            return Some(d.to_std().unwrap_or(Duration::ZERO));
        }
    }
    // OpenAI: the reset of whichever limit is exhausted.
    let mut waits = Vec::new();
    for (remaining, reset) in [
        (
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ] {
        if get(remaining) == Some("0") {
            if let Some(d) = get(reset).and_then(parse_go_duration) {
                waits.push(d);
            }
        }
    }
    // Anthropic: RFC 3339 reset times.
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        if get(&format!("anthropic-ratelimit-{kind}-remaining")) == Some("0") {
            if let Some(t) = get(&format!("anthropic-ratelimit-{kind}-reset"))
                .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
            {
                let d = t.with_timezone(&chrono::Utc) - chrono::Utc::now();
                waits.push(d.to_std().unwrap_or(Duration::ZERO));
            }
        }
    }
    if let Some(w) = waits.into_iter().max() {
        return Some(w);
    }
    // Gemini: google.rpc.RetryInfo in the body.
    body.and_then(|b| b.pointer("/error/details"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(|s| s.strip_suffix('s')?.parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// Merges `extra` under `body`: the spec's extra fields go through, but the
/// fields the protocol sets (already in `body`) win, recursively for objects.
pub fn merge_extra(body: &mut Value, extra: &Map<String, Value>) {
    let Value::Object(b) = body else { return };
    for (k, v) in extra {
        match (b.get_mut(k), v) {
            (Some(Value::Object(_)), Value::Object(inner)) => {
                if let Some(target) = b.get_mut(k) {
                    let mut merged = Value::Object(inner.clone());
                    let ours = std::mem::take(target);
                    if let (Value::Object(m), Value::Object(o)) = (&mut merged, ours) {
                        for (ok, ov) in o {
                            m.insert(ok, ov);
                        }
                    }
                    *target = merged;
                }
            }
            (Some(_), _) => {}
            (None, _) => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The first token of a longer text, for calls whose API cannot be held to
/// one output token (the Responses API's minimum, reasoning allowances): a
/// leading run of digits, else a leading word, else the first character.
pub fn first_token(text: &str) -> String {
    let t = text.trim_start();
    let Some(c) = t.chars().next() else {
        return String::new();
    };
    let lead = &text[..text.len() - t.len()];
    let run: String = if c.is_ascii_digit() {
        t.chars().take_while(|c| c.is_ascii_digit()).collect()
    } else if c.is_alphanumeric() {
        t.chars().take_while(|c| c.is_alphanumeric()).collect()
    } else {
        c.to_string()
    };
    format!("{lead}{run}")
}

/// A header map of one header.
pub fn auth_header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::try_from(value) {
        let mut v = v;
        v.set_sensitive(true);
        h.insert(name, v);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("120ms"), Some(Duration::from_millis(120)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration("12"), None);
    }

    #[test]
    fn retry_after_from_every_provider() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h, None), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h, None), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("2s"));
        h.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("10"),
        );
        h.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("9s"));
        assert_eq!(retry_after(&h, None), Some(Duration::from_secs(2)));
        let body = json!({"error": {"code": 429, "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}});
        assert_eq!(
            retry_after(&HeaderMap::new(), Some(&body)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(&HeaderMap::new(), None), None);
    }

    #[test]
    fn extra_fields_pass_but_do_not_override() {
        let mut body = json!({"model": "m", "generationConfig": {"temperature": 0.1}});
        let extra: Map<String, Value> = serde_json::from_value(json!({
            "model": "other", "top_p": 0.5,
            "generationConfig": {"temperature": 0.9, "topK": 1}
        }))
        .unwrap();
        merge_extra(&mut body, &extra);
        assert_eq!(
            body,
            json!({"model": "m", "top_p": 0.5, "generationConfig": {"temperature": 0.1, "topK": 1}})
        );
    }

    #[test]
    fn first_tokens() {
        assert_eq!(first_token("3 - because"), "3");
        assert_eq!(first_token(" 45x"), " 45");
        assert_eq!(first_token("As a nurse"), "As");
        assert_eq!(first_token("**3**"), "*");
        assert_eq!(first_token(""), "");
    }
}
