//! `bedrock`: Amazon Bedrock's Converse API
//! (`POST /model/{modelId}/converse` on
//! `https://bedrock-runtime.{region}.amazonaws.com`, or the spec's
//! `base_url`), for every model that supports it (Claude, Llama, Mistral,
//! Nova, ...). The spec's `model` is a model id, an inference profile id or
//! an ARN; it goes URL-encoded into the path. The body is the one user
//! message and `inferenceConfig` (`maxTokens`, `temperature`); Converse has
//! no seed, no logprobs and one sample per request, so logprob mode and
//! multi-sample stop the model with a message saying so (the catalog says
//! the same). Usage comes from the answer's `usage`.
//!
//! Every request is signed with SigV4 (service `bedrock`, the model's
//! region) with credentials from the AWS chain ([`auth`]), refreshed ahead
//! of their expiry. Errors follow Bedrock's shapes (`x-amzn-ErrorType` or
//! `__type`, and `message`):
//!
//! - `ThrottlingException` (429) and `ServiceUnavailableException` (503):
//!   the same backoff as a 429, with the answer's retry hint;
//! - `ModelNotReadyException`, `ModelTimeoutException`,
//!   `InternalServerException`, `ModelErrorException` and other 5xx: retried;
//! - `ExpiredTokenException`: temporary credentials are fetched again (a
//!   few times in a row at most); static ones stop the model;
//! - `ValidationException`, `AccessDeniedException`,
//!   `UnrecognizedClientException`, `InvalidSignatureException`,
//!   `ResourceNotFoundException` and other 4xx: the model stops with a
//!   message naming the model, Amazon Bedrock and what to fix.
//!
//! Token counts: `POST /model/{modelId}/count-tokens` with the same
//! Converse input (where Bedrock offers it for the model).

mod auth;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use moralsweep_common::ModelSpec;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::http::{merge_extra, retry_after, snippet, HttpCore, KeyPolicy};
use super::{Completion, CompletionRequest, Provider, ProviderError, Usage};
use auth::{AwsAuth, CHAIN};

/// Characters left as they are in a path label (RFC 3986 unreserved).
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `ExpiredTokenException`s in a row after which fetching credentials again
/// is given up and the model stops.
const MAX_EXPIRED_IN_ROW: u32 = 3;

/// The public endpoint of Bedrock Runtime in `region`.
pub fn endpoint(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// The region of a model: its spec's `region`, else `AWS_REGION` or
/// `AWS_DEFAULT_REGION`.
fn region_of(spec: &ModelSpec) -> Result<String, ProviderError> {
    let from_env = || {
        ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|r| !r.trim().is_empty()))
    };
    spec.region
        .clone()
        .or_else(from_env)
        .map(|r| r.trim().to_string())
        .ok_or_else(|| {
            ProviderError::Fatal(format!(
                "model {:?}: Amazon Bedrock needs the model's AWS region: add region = \"us-east-1\" (say) to its entry",
                spec.key
            ))
        })
}

#[derive(Debug)]
pub struct Bedrock {
    core: HttpCore,
    region: String,
    auth: Arc<AwsAuth>,
    expired_in_row: AtomicU32,
}

impl Bedrock {
    pub fn new(spec: &ModelSpec) -> Result<Bedrock, ProviderError> {
        let region = region_of(spec)?;
        let core = HttpCore::new(
            spec,
            Some(&endpoint(&region)),
            &KeyPolicy {
                default_env: None,
                required: false,
            },
            &[],
        )?;
        if spec.thinking_budget.is_some_and(|b| b > 0) {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: thinking_budget is not a Converse setting; for Claude on Bedrock put the model's own \
                 fields under extra.additionalModelRequestFields (e.g. thinking = {{ type = \"enabled\", budget_tokens = 1024 }})",
                spec.key
            )));
        }
        let auth = AwsAuth::new(&spec.key, &region);
        Ok(Bedrock {
            core,
            region,
            auth,
            expired_in_row: AtomicU32::new(0),
        })
    }

    /// The URL of operation `op` (`converse`, `count-tokens`) of the model.
    pub fn url(&self, op: &str) -> String {
        format!(
            "{}/model/{}/{op}",
            self.core.base_url,
            utf8_percent_encode(&self.core.model, LABEL)
        )
    }

    fn messages(prompt: &str) -> Value {
        json!([{"role": "user", "content": [{"text": prompt}]}])
    }

    /// The Converse body of a request (`ConverseRequest` without the
    /// `modelId`, which is in the path).
    pub fn body(&self, req: &CompletionRequest) -> Value {
        let mut config = json!({"maxTokens": req.max_tokens});
        if let Some(t) = req.temperature {
            config["temperature"] = json!(t);
        }
        let mut b = json!({
            "messages": Self::messages(&req.prompt),
            "inferenceConfig": config,
        });
        merge_extra(&mut b, &self.core.extra);
        b
    }

    /// The CountTokens body of a prompt (`CountTokensRequest`).
    pub fn count_body(&self, prompt: &str) -> Value {
        json!({"input": {"converse": {"messages": Self::messages(prompt)}}})
    }

    /// Refuses what Converse cannot do, saying what to change.
    pub fn check(&self, req: &CompletionRequest) -> Result<(), ProviderError> {
        if req.top_logprobs.is_some() {
            return Err(ProviderError::Fatal(format!(
                "model {:?}: Amazon Bedrock's Converse API returns no logprobs; remove \"logprob\" from the sweep's modes for this model",
                self.core.model_key
            )));
        }
        Ok(())
    }

    /// The completion of a Converse answer.
    pub fn answer_of(
        &self,
        v: &Value,
        req: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let blocks = v
            .pointer("/output/message/content")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ProviderError::Retryable(format!(
                    "model {:?}: the Converse answer lacks output.message.content",
                    self.core.model_key
                ))
            })?;
        let text: String = blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        let get = |k: &str| v.pointer(&format!("/usage/{k}")).and_then(Value::as_u64);
        Ok(Completion {
            text,
            top_logprobs: None,
            usage: Usage {
                input_tokens: get("inputTokens")
                    .unwrap_or_else(|| self.core.tokenizer.prompt_tokens(&req.prompt)),
                output_tokens: get("outputTokens").unwrap_or(req.max_tokens as u64),
            },
        })
    }

    /// POSTs a signed JSON body; the parsed answer or the classified error.
    async fn call(&self, url: &str, body: &Value) -> Result<Value, ProviderError> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Fatal(format!("cannot encode the request: {e}")))?;
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            ProviderError::Fatal(format!(
                "model {:?}: the URL {url} is not valid ({e}); check base_url",
                self.core.model_key
            ))
        })?;
        let signed = self
            .auth
            .sign(&parsed, "application/json", &payload)
            .await?;
        let request = self
            .core
            .client
            .post(parsed)
            .headers(self.core.headers.clone())
            .headers(signed.headers)
            .header("content-type", "application/json")
            .body(payload);
        let super::http::RawAnswer {
            status,
            headers,
            body: bytes,
        } = self.core.send_raw(request).await?;
        if (200..300).contains(&status) {
            self.expired_in_row.store(0, Ordering::Relaxed);
            return self.core.json_of(&bytes);
        }
        let error = self.classify(status, &headers, &bytes, signed.refreshable);
        if matches!(error, Classified::Expired) {
            self.auth.forget().await;
            let n = self.expired_in_row.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= MAX_EXPIRED_IN_ROW {
                return Err(ProviderError::Retryable(format!(
                    "model {:?}: Amazon Bedrock called the AWS credentials expired; fetching new ones",
                    self.core.model_key
                )));
            }
            return Err(self.expired_error(&headers, &bytes, n));
        }
        Err(error.into_error())
    }

    fn expired_error(&self, headers: &HeaderMap, bytes: &[u8], n: u32) -> ProviderError {
        let (_, message) = self.error_of(headers, bytes);
        ProviderError::Fatal(format!(
            "model {:?}: Amazon Bedrock refused the AWS credentials as expired {n} times in a row, fresh ones included \
             (403 ExpiredTokenException: {message}); check the machine's clock and what {CHAIN} provides",
            self.core.model_key
        ))
    }

    /// The error code and message of a Bedrock error answer.
    fn error_of(&self, headers: &HeaderMap, body: &[u8]) -> (String, String) {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let from_header = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_string());
        let from_body = || {
            let j = json.as_ref()?;
            let t = j
                .get("__type")
                .or_else(|| j.get("code"))
                .and_then(Value::as_str)?;
            Some(t.rsplit('#').next().unwrap_or(t).to_string())
        };
        let code = from_header
            .filter(|c| !c.is_empty())
            .or_else(from_body)
            .unwrap_or_default();
        let message = json
            .as_ref()
            .and_then(|j| j.get("message").or_else(|| j.get("Message")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| snippet(body));
        (code, self.core.redact(&message))
    }

    fn classify(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        refreshable: bool,
    ) -> Classified {
        let (code, message) = self.error_of(headers, body);
        let key = &self.core.model_key;
        let model = &self.core.model;
        let region = &self.region;
        let what = if code.is_empty() {
            format!("{status}")
        } else {
            format!("{status} {code}")
        };
        let fatal = |s: String| Classified::Other(ProviderError::Fatal(s));
        match (status, code.as_str()) {
            (_, "ThrottlingException") | (429, "") | (_, "ServiceUnavailableException") => {
                Classified::Other(ProviderError::RateLimited {
                    retry_after: retry_after(headers, None),
                })
            }
            (_, "ExpiredTokenException") if refreshable => Classified::Expired,
            (_, "ExpiredTokenException") => fatal(format!(
                "model {key:?}: Amazon Bedrock refused the AWS credentials as expired ({what}: {message}); \
                 the session token (AWS_SESSION_TOKEN or the profile's) cannot be refreshed here: get new credentials, \
                 or use a source that refreshes itself (a profile with SSO or a role, web identity, container credentials, instance metadata)"
            )),
            (_, "UnrecognizedClientException") => fatal(format!(
                "model {key:?}: Amazon Bedrock does not know the AWS access key id ({what}: {message}); \
                 check the key from {CHAIN} (and that a session token goes with temporary keys)"
            )),
            (_, "InvalidSignatureException") | (_, "SignatureDoesNotMatch") => fatal(format!(
                "model {key:?}: Amazon Bedrock refused the request signature ({what}: {message}); \
                 check the AWS secret access key from {CHAIN}, and the machine's clock"
            )),
            (_, "AccessDeniedException") | (403, _) => fatal(format!(
                "model {key:?}: the AWS identity may not invoke model {model:?} on Amazon Bedrock in region {region} ({what}: {message}); \
                 grant it bedrock:InvokeModel on the model (or inference profile), and request access to the model in the Bedrock console of {region}"
            )),
            (_, "ResourceNotFoundException") | (404, _) => fatal(format!(
                "model {key:?}: Amazon Bedrock has no model {model:?} in region {region} ({what}: {message}); \
                 check `model` (a model id, inference profile id or ARN), `region` and `base_url`"
            )),
            (_, "ValidationException") | (400, _) => fatal(format!(
                "model {key:?}: Amazon Bedrock refused the request ({what}: {message}); check that model {model:?} \
                 supports the Converse API in region {region}, and the fields the spec adds (extra)"
            )),
            (401, _) => fatal(format!(
                "model {key:?}: Amazon Bedrock refused the AWS credentials ({what}: {message}); check {CHAIN}"
            )),
            (_, "ModelNotReadyException")
            | (_, "ModelTimeoutException")
            | (_, "InternalServerException")
            | (_, "ModelErrorException")
            | (408 | 409 | 424 | 425 | 429, _)
            | (500..=599, _) => Classified::Other(ProviderError::Retryable(format!(
                "model {key:?}: Amazon Bedrock answered {what}: {message}"
            ))),
            _ => fatal(format!(
                "model {key:?}: Amazon Bedrock refused the request ({what}: {message})"
            )),
        }
    }
}

/// A Bedrock error, with expired temporary credentials apart (they are
/// fetched again rather than failing the call for good).
enum Classified {
    Expired,
    Other(ProviderError),
}

impl Classified {
    fn into_error(self) -> ProviderError {
        match self {
            Classified::Expired => ProviderError::Retryable("expired credentials".into()),
            Classified::Other(e) => e,
        }
    }
}

#[async_trait]
impl Provider for Bedrock {
    /// `POST /model/{modelId}/count-tokens`.
    async fn count_tokens(&self, prompt: &str) -> Result<Option<u64>, ProviderError> {
        let v = self
            .call(&self.url("count-tokens"), &self.count_body(prompt))
            .await?;
        v.get("inputTokens")
            .and_then(Value::as_u64)
            .map(Some)
            .ok_or_else(|| {
                ProviderError::Retryable(format!(
                    "model {:?}: the CountTokens answer lacks inputTokens",
                    self.core.model_key
                ))
            })
    }

    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.check(req)?;
        let v = self.call(&self.url("converse"), &self.body(req)).await?;
        self.answer_of(&v, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(model: &str) -> ModelSpec {
        serde_json::from_value(json!({
            "key": "k", "provider": "bedrock", "model": model, "region": "eu-west-3"
        }))
        .unwrap()
    }

    #[test]
    fn the_model_id_is_one_encoded_path_label_on_the_regional_endpoint() {
        let b = Bedrock::new(&spec("anthropic.claude-3-5-haiku-20241022-v1:0")).unwrap();
        assert_eq!(
            b.url("converse"),
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
        );
        let arn = "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.meta.llama3-2-3b-instruct-v1:0";
        let b = Bedrock::new(&spec(arn)).unwrap();
        assert!(b.url("count-tokens").ends_with(
            "/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A123456789012%3Ainference-profile%2Feu.meta.llama3-2-3b-instruct-v1%3A0/count-tokens"
        ));
    }

    #[test]
    fn bodies_and_answers() {
        let b = Bedrock::new(&spec("amazon.nova-lite-v1:0")).unwrap();
        let req = CompletionRequest {
            prompt: "Rate 0-5".into(),
            max_tokens: 1,
            temperature: Some(0.1),
            seed: Some(7),
            top_logprobs: None,
        };
        assert_eq!(
            b.body(&req),
            json!({"messages": [{"role": "user", "content": [{"text": "Rate 0-5"}]}],
                   "inferenceConfig": {"maxTokens": 1, "temperature": 0.1}})
        );
        let answer = json!({"output": {"message": {"role": "assistant", "content": [{"text": "3"}]}},
            "stopReason": "max_tokens", "usage": {"inputTokens": 12, "outputTokens": 1, "totalTokens": 13},
            "metrics": {"latencyMs": 5}});
        let c = b.answer_of(&answer, &req).unwrap();
        assert_eq!(c.text, "3");
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 1
            }
        );
        let logprobs = CompletionRequest {
            top_logprobs: Some(5),
            ..req
        };
        assert!(
            matches!(b.check(&logprobs), Err(ProviderError::Fatal(m)) if m.contains("no logprobs"))
        );
    }

    #[test]
    fn errors_are_classified_by_their_bedrock_type() {
        let b = Bedrock::new(&spec("amazon.nova-lite-v1:0")).unwrap();
        let typed = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-amzn-errortype",
                format!("{t}:http://internal.amazon.com/coral/com.amazon.bedrock/")
                    .parse()
                    .unwrap(),
            );
            h
        };
        let body = br#"{"message":"nope"}"#;
        let mut throttled = typed("ThrottlingException");
        throttled.insert("retry-after", "2".parse().unwrap());
        assert!(matches!(
            b.classify(429, &throttled, body, true).into_error(),
            ProviderError::RateLimited { retry_after: Some(d) } if d.as_secs() == 2
        ));
        assert!(matches!(
            b.classify(503, &typed("ServiceUnavailableException"), body, true)
                .into_error(),
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            b.classify(403, &typed("ExpiredTokenException"), body, true),
            Classified::Expired
        ));
        for (status, t, says) in [
            (403, "ExpiredTokenException", "cannot be refreshed"),
            (403, "AccessDeniedException", "bedrock:InvokeModel"),
            (403, "UnrecognizedClientException", "access key id"),
            (403, "InvalidSignatureException", "secret access key"),
            (400, "ValidationException", "supports the Converse API"),
            (404, "ResourceNotFoundException", "check `model`"),
        ] {
            match b.classify(status, &typed(t), body, false).into_error() {
                ProviderError::Fatal(m) => {
                    assert!(
                        m.contains("model \"k\"")
                            && m.contains("Amazon Bedrock")
                            && m.contains(says)
                            && m.contains(t),
                        "{m}"
                    )
                }
                other => panic!("{t}: {other:?}"),
            }
        }
        // The type may come in the body instead (`__type`, with a namespace).
        let body = br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"The security token included in the request is invalid."}"#;
        assert!(
            matches!(b.classify(403, &HeaderMap::new(), body, true).into_error(), ProviderError::Fatal(m) if m.contains("access key id"))
        );
        assert!(matches!(
            b.classify(500, &typed("InternalServerException"), body, true)
                .into_error(),
            ProviderError::Retryable(_)
        ));
    }
}
