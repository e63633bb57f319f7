//! `vertex`: Google Vertex AI, with the spec's `project`, `location` and
//! `model`, authenticated with Application Default Credentials
//! ([`auth`]: a service-account key, an `authorized_user` file, or the
//! metadata server of GKE Workload Identity).
//!
//! - Gemini: `POST https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
//!   (`aiplatform.googleapis.com` for the `global` location), the Gemini
//!   body and answer of [`super::gemini`] (`candidateCount` for several
//!   samples, `responseLogprobs`/`logprobs`, thinking); tokens counted with
//!   `:countTokens`.
//! - Claude: `.../publishers/anthropic/models/{model}:rawPredict` with the
//!   Anthropic Messages body of [`super::anthropic`], its `model` moved into
//!   the URL and `anthropic_version: "vertex-2023-10-16"` added; tokens
//!   counted with `.../models/count-tokens:rawPredict`.
//!
//! The publisher is Anthropic for a model id starting `claude`, Google
//! otherwise; `publishers/{publisher}/models/{model}` names it outright.
//! `base_url` replaces the endpoint's scheme and host (the simulator, a
//! Private Service Connect endpoint).
//!
//! Errors: 429 `RESOURCE_EXHAUSTED` slows the rate group for Google's
//! `RetryInfo` (or `Retry-After`); 401 `UNAUTHENTICATED` fetches a new bearer
//! and asks once more, and stops the model if that is refused too; 403
//! `PERMISSION_DENIED` stops it naming the permission
//! (`aiplatform.endpoints.predict`), the model and the project; the rest as
//! for every HTTP provider ([`super::http`]).

pub mod auth;

use async_trait::async_trait;
use moralsweep_common::ModelSpec;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::anthropic::Anthropic;
use super::gemini::Gemini;
use super::http::{auth_header, HttpCore, KeyPolicy, RawAnswer as Refusal, Secret};
use super::{Completion, CompletionRequest, Provider, ProviderError};

/// The `anthropic_version` Claude on Vertex AI expects in the body.
pub const ANTHROPIC_VERTEX_VERSION: &str = "vertex-2023-10-16";

/// Whose model it is, with that publisher's request code.
#[derive(Debug)]
enum Publisher {
    Google(Gemini),
    Anthropic(Anthropic),
}

/// A model on Vertex AI.
#[derive(Debug)]
pub struct Vertex {
    core: HttpCore,
    creds: auth::Credentials,
    project: String,
    location: String,
    /// The model id in the URL.
    model: String,
    publisher: Publisher,
}

/// The endpoint of a location.
pub fn endpoint(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".into()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

impl Vertex {
    pub fn new(spec: &ModelSpec) -> Result<Vertex, ProviderError> {
        let need = |v: &Option<String>,
                    field: &str,
                    example: &str|
         -> Result<String, ProviderError> {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    ProviderError::Fatal(format!(
                        "model {:?} (Vertex AI): `{field}` is missing; give the Google Cloud {field} (e.g. {field} = \"{example}\")",
                        spec.key
                    ))
                })
        };
        let project = need(&spec.project, "project", "my-project")?;
        let location = need(&spec.location, "location", "us-central1")?;
        let (publisher, model) = match spec
            .model
            .strip_prefix("publishers/")
            .and_then(|r| r.split_once("/models/"))
        {
            Some((p, m)) => (p.to_string(), m.to_string()),
            None if spec.model.starts_with("claude") => ("anthropic".into(), spec.model.clone()),
            None => ("google".into(), spec.model.clone()),
        };
        if model.is_empty() || model.contains('/') || model.contains(':') {
            return Err(ProviderError::Fatal(format!(
                "model {:?} (Vertex AI): model {:?} is not a Vertex AI model id (e.g. gemini-2.5-flash, claude-sonnet-4@20250514, or publishers/google/models/gemini-2.5-flash)",
                spec.key, spec.model
            )));
        }
        let base = endpoint(&location);
        let mut core = HttpCore::new(
            spec,
            Some(base.as_str()),
            &KeyPolicy {
                default_env: None,
                required: false,
            },
            &[],
        )?;
        // The host only: the version and resource path are the provider's.
        core.base_url = core.base_url.trim_end_matches("/v1").to_string();
        core.model = model.clone();
        let publisher = match publisher.as_str() {
            "google" => Publisher::Google(Gemini::with_core(core.clone(), spec.thinking_budget)),
            "anthropic" => Publisher::Anthropic(Anthropic::with_core(core.clone(), spec)?),
            other => {
                return Err(ProviderError::Fatal(format!(
                    "model {:?} (Vertex AI): publisher {other:?} is not served here; Gemini (publishers/google) and Claude (publishers/anthropic) are",
                    spec.key
                )))
            }
        };
        let creds = auth::Credentials::discover(&spec.key, core.client.clone())?;
        Ok(Vertex {
            core,
            creds,
            project,
            location,
            model,
            publisher,
        })
    }

    /// The URL of a method of the model (or of another model id).
    fn url(&self, model: &str, method: &str) -> String {
        let publisher = match self.publisher {
            Publisher::Google(_) => "google",
            Publisher::Anthropic(_) => "anthropic",
        };
        format!(
            "{}/v1/projects/{}/locations/{}/publishers/{publisher}/models/{model}:{method}",
            self.core.base_url, self.project, self.location
        )
    }

    /// The body of a request for `n` samples, as this model's publisher
    /// expects it on Vertex AI.
    pub fn body_n(&self, req: &CompletionRequest, n: u32) -> Value {
        match &self.publisher {
            Publisher::Google(g) => g.body_n(req, n),
            Publisher::Anthropic(a) => claude_body(a.body(req)),
        }
    }

    /// The token-counting body of a prompt.
    pub fn count_body(&self, prompt: &str) -> Value {
        match &self.publisher {
            Publisher::Google(g) => g.count_body(prompt),
            Publisher::Anthropic(a) => {
                let mut b = a.count_body(prompt);
                b["anthropic_version"] = json!(ANTHROPIC_VERTEX_VERSION);
                b
            }
        }
    }

    /// The credentials' description (for messages and `--dry-run`).
    pub fn credentials(&self) -> String {
        self.creds.describe()
    }

    /// POSTs `body` with a bearer; on a 401 once more with a new bearer.
    async fn call(&self, url: &str, body: &Value) -> Result<Value, ProviderError> {
        let bearer = self.creds.bearer().await?;
        let refusal = match self.core.post_or_refusal(url, auth(&bearer), body).await? {
            Ok(v) => return Ok(v),
            Err(r) if r.status == 401 => r,
            Err(r) => return Err(self.classify(&r, url)),
        };
        tracing::info!(model = %self.core.model_key, "Vertex AI refused the bearer (401); fetching a new one");
        drop(refusal);
        let fresh = self.creds.renew(&bearer).await?;
        match self.core.post_or_refusal(url, auth(&fresh), body).await? {
            Ok(v) => Ok(v),
            Err(r) if r.status == 401 => Err(ProviderError::Fatal(format!(
                "model {:?} (Vertex AI): a freshly fetched bearer of {} was refused too (401 UNAUTHENTICATED): {}; {}, and check that this machine's clock is right",
                self.core.model_key,
                self.creds.describe(),
                self.message(&r),
                self.creds.remedy()
            ))),
            Err(r) => Err(self.classify(&r, url)),
        }
    }

    /// Google's message in a refusal (redacted).
    fn message(&self, r: &Refusal) -> String {
        let v: Option<Value> = serde_json::from_slice(&r.body).ok();
        let m = v
            .as_ref()
            .and_then(|v| v.pointer("/error/message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).chars().take(300).collect());
        self.core.redact(&m)
    }

    fn classify(&self, r: &Refusal, url: &str) -> ProviderError {
        let key = &self.core.model_key;
        match r.status {
            403 => {
                let who = self
                    .creds
                    .email()
                    .map(|e| format!("serviceAccount:{e}"))
                    .unwrap_or_else(|| "<the service account>".into());
                ProviderError::Fatal(format!(
                    "model {key:?} (Vertex AI): {} lacks the permission aiplatform.endpoints.predict on model {:?} in project {:?} (location {}) (403 PERMISSION_DENIED): {}; \
                     grant it roles/aiplatform.user (gcloud projects add-iam-policy-binding {} --member={who} --role=roles/aiplatform.user) \
                     and check that the Vertex AI API is enabled in the project and the model is offered in {}",
                    self.creds.describe(),
                    self.model,
                    self.project,
                    self.location,
                    self.message(r),
                    self.project,
                    self.location,
                ))
            }
            404 => ProviderError::Fatal(format!(
                "model {key:?} (Vertex AI): model {:?} was not found in project {:?}, location {} (404): {}; check `model`, `location` (not every model is offered everywhere) and that the model is enabled in the Model Garden",
                self.model, self.project, self.location, self.message(r)
            )),
            _ => {
                let e = self.core.classify(r.status, &r.headers, &r.body, url);
                match e {
                    ProviderError::Fatal(m) => ProviderError::Fatal(m.replacen(
                        &format!("model {key:?}:"),
                        &format!("model {key:?} (Vertex AI):"),
                        1,
                    )),
                    other => other,
                }
            }
        }
    }
}

/// A Messages body as Claude on Vertex AI takes it: no `model` (it is in
/// the URL), `anthropic_version` added.
fn claude_body(mut b: Value) -> Value {
    if let Value::Object(m) = &mut b {
        m.remove("model");
        m.insert("anthropic_version".into(), json!(ANTHROPIC_VERTEX_VERSION));
    }
    b
}

fn auth(bearer: &Secret) -> HeaderMap {
    auth_header("authorization", &format!("Bearer {}", bearer.expose()))
}

#[async_trait]
impl Provider for Vertex {
    /// `:countTokens` (Gemini) or `count-tokens:rawPredict` (Claude).
    async fn count_tokens(&self, prompt: &str) -> Result<Option<u64>, ProviderError> {
        let (url, field) = match self.publisher {
            Publisher::Google(_) => (self.url(&self.model, "countTokens"), "totalTokens"),
            Publisher::Anthropic(_) => (self.url("count-tokens", "rawPredict"), "input_tokens"),
        };
        let v = self.call(&url, &self.count_body(prompt)).await?;
        v.get(field)
            .and_then(Value::as_u64)
            .map(Some)
            .ok_or_else(|| {
                ProviderError::Retryable(format!(
                    "model {:?} (Vertex AI): the token count lacks {field}",
                    self.core.model_key
                ))
            })
    }

    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let mut all = self.complete_n(req, 1).await?;
        Ok(all.remove(0))
    }

    async fn complete_n(
        &self,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        match &self.publisher {
            Publisher::Google(g) => {
                let url = self.url(&self.model, "generateContent");
                let v = self.call(&url, &self.body_n(req, n)).await?;
                g.answer_of(&v, req, n)
            }
            Publisher::Anthropic(a) => {
                if n > 1 {
                    return Err(ProviderError::Fatal(format!(
                        "{}: Claude on Vertex AI returns one sample per request (field `n`)",
                        super::MULTI_SAMPLE_REFUSED
                    )));
                }
                a.check(req)?;
                let url = self.url(&self.model, "rawPredict");
                let v = self.call(&url, &self.body_n(req, 1)).await?;
                Ok(vec![a.answer_of(&v, req)?])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_claude_bodies() {
        assert_eq!(endpoint("global"), "https://aiplatform.googleapis.com");
        assert_eq!(
            endpoint("europe-west4"),
            "https://europe-west4-aiplatform.googleapis.com"
        );
        let b = claude_body(json!({"model": "claude-x", "max_tokens": 1, "messages": []}));
        assert_eq!(
            b,
            json!({"max_tokens": 1, "messages": [], "anthropic_version": "vertex-2023-10-16"})
        );
    }
}
