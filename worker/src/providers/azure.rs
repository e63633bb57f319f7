//! `azure-openai`: models deployed in an Azure OpenAI resource, through
//! either of its two routes:
//!
//! - the v1 API: `base_url = "https://{resource}.openai.azure.com/openai/v1"`,
//!   requests to `{base_url}/chat/completions` with the body's `model` the
//!   deployment's name (the spec's `model`);
//! - the deployments route: `base_url = "https://{resource}.openai.azure.com"`
//!   with `api_version` (e.g. `"2024-10-21"`), requests to
//!   `/openai/deployments/{model}/chat/completions?api-version=...`.
//!
//! The body and the answer are OpenAI's Chat Completions (the `openai`
//! adapter builds and reads them: `n`, logprobs, reasoning models), so the
//! catalog entry is OpenAI's: `catalog = "openai/gpt-4o"` gives a
//! deployment its prices, capabilities and tokenizer.
//!
//! Credentials (`azure/auth.rs`): the resource's key (`api_key_env` or
//! `api_key_file`, header `api-key`), else Entra ID bearer tokens from a
//! client secret, AKS Workload Identity or a managed identity. The token
//! exchange is Entra's documented OAuth 2.0 form post over the worker's own
//! HTTP client rather than the `azure_identity` crate: that crate (1.0)
//! brings about 200 crates with a second `reqwest` (0.13) and `aws-lc-sys`
//! (a C build with cmake) by default, needs a hand-written HTTP adapter
//! without them, and refuses an authority host that is not HTTPS, which
//! rules out the simulator playing Entra ID.
//!
//! Errors, with what to fix: 429 waits as the service asks (`retry-after-ms`,
//! `retry-after`); 401 (the key or token refused; an Entra token is
//! replaced once first, in case it was revoked or the clocks differ), 403
//! (the identity lacks the role "Cognitive Services OpenAI User", or the
//! resource's network rules), 404 `DeploymentNotFound` (naming the
//! deployment) and a refused `api-version` stop the model. A prompt
//! refused by the content filter (400 `content_filter`) is an answer
//! without text: the rating protocol treats it as a model that gave no
//! rating.

use async_trait::async_trait;
use moralsweep_common::provider::ProviderKind;
use moralsweep_common::tokens::Tokenizer;
use moralsweep_common::ModelSpec;
use serde_json::Value;

use super::http::{provider_message, snippet, KeyPolicy, RawAnswer};
use super::openai::{Flavor, OpenAi};
use super::{Completion, CompletionRequest, Provider, ProviderError, Usage};

pub mod auth;

use auth::Credential;

/// Where a model's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The v1 API: the base URL ends in `/openai/v1`.
    V1 { base: String },
    /// The deployments route of the resource at `resource`.
    Deployments {
        resource: String,
        deployment: String,
        api_version: String,
    },
}

impl Route {
    /// The route of a base URL, deployment and `api_version`.
    pub fn of(
        model_key: &str,
        base_url: Option<&str>,
        deployment: &str,
        api_version: Option<&str>,
    ) -> Result<Route, ProviderError> {
        let fatal =
            |m: String| ProviderError::Fatal(format!("model {model_key:?} (Azure OpenAI): {m}"));
        let base = base_url.ok_or_else(|| {
            fatal("base_url is required: the resource's v1 API (https://{resource}.openai.azure.com/openai/v1) or its endpoint (https://{resource}.openai.azure.com) with api_version".into())
        })?;
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(fatal(format!("base_url {base:?} must start with https://")));
        }
        let base = base.trim_end_matches('/');
        if base.ends_with("/openai/v1") {
            if let Some(v) = api_version {
                return Err(fatal(format!(
                    "api_version = {v:?} belongs to the deployments route; the v1 API ({base}) takes none: remove api_version, or set base_url to the resource's endpoint"
                )));
            }
            return Ok(Route::V1 {
                base: base.to_string(),
            });
        }
        let Some(v) = api_version else {
            return Err(fatal(format!(
                "base_url {base:?} is not the v1 API (ending in /openai/v1), so it needs api_version (e.g. \"2024-10-21\") for the deployments route"
            )));
        };
        let resource = base
            .strip_suffix("/openai/deployments")
            .or_else(|| base.strip_suffix("/openai"))
            .unwrap_or(base)
            .to_string();
        if deployment.is_empty() || deployment.contains(['/', '?', '#', ' ']) {
            return Err(fatal(format!(
                "model {deployment:?} is not a deployment name (letters, digits, '-', '_' and '.')"
            )));
        }
        Ok(Route::Deployments {
            resource,
            deployment: deployment.to_string(),
            api_version: v.to_string(),
        })
    }

    /// The URL of an operation below the route (`/chat/completions`,
    /// `/files`, `/batches/{id}`), with `query` pairs.
    pub fn url(&self, op: &str, query: &[(&str, &str)]) -> String {
        let (mut url, mut pairs): (String, Vec<(&str, &str)>) = match self {
            Route::V1 { base } => (format!("{base}{op}"), vec![]),
            Route::Deployments {
                resource,
                deployment,
                api_version,
            } => {
                let path = if op == "/chat/completions" {
                    format!("{resource}/openai/deployments/{deployment}{op}")
                } else {
                    format!("{resource}/openai{op}")
                };
                (path, vec![("api-version", api_version.as_str())])
            }
        };
        pairs.extend_from_slice(query);
        for (i, (k, v)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }

    /// The resource's host, for messages.
    pub fn host(&self) -> &str {
        let url = match self {
            Route::V1 { base } => base,
            Route::Deployments { resource, .. } => resource,
        };
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        rest.split('/').next().unwrap_or(rest)
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A deployment of an Azure OpenAI resource.
pub struct AzureOpenAi {
    model: OpenAi,
    route: Route,
    cred: Credential,
}

/// The `openai` adapter's settings for Azure: no default base URL, a key
/// only when the spec names one, 20 top logprobs, `seed`.
fn flavor() -> Flavor {
    Flavor {
        default_base: None,
        key: KeyPolicy {
            default_env: None,
            required: false,
        },
        headers: vec![],
        max_top_logprobs: 20,
        seed: true,
        responses: false,
        detect_reasoning: true,
    }
}

impl AzureOpenAi {
    /// The model of a spec: its deployment `model` on the route its
    /// `base_url` and `api_version` name.
    pub fn new(spec: &ModelSpec, api_version: Option<&str>) -> Result<AzureOpenAi, ProviderError> {
        let route = Route::of(
            &spec.key,
            spec.base_url.as_deref(),
            &spec.model,
            api_version,
        )?;
        Self::with_route(spec, route)
    }

    /// The model of a spec, on `route`.
    pub fn with_route(spec: &ModelSpec, route: Route) -> Result<AzureOpenAi, ProviderError> {
        let mut model = OpenAi::new(spec, flavor())?;
        // A deployment inherits the tokenizer of the OpenAI model it serves.
        if let Some(id) = spec
            .catalog
            .as_deref()
            .and_then(|c| c.strip_prefix("openai/"))
        {
            model.core_mut().tokenizer = Tokenizer::for_model(ProviderKind::OpenAi, id);
        }
        let key = model.core().key.clone();
        let cred = Credential::resolve(spec, key, &model.core().client)?;
        Ok(AzureOpenAi { model, route, cred })
    }

    /// The OpenAI-shaped adapter inside (bodies and answers).
    pub fn openai(&self) -> &OpenAi {
        &self.model
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    fn key(&self) -> &str {
        &self.model.core().model_key
    }

    fn deployment(&self) -> &str {
        &self.model.core().model
    }

    /// Sends `body` to `url` (a POST with a body, or a GET) with the
    /// model's credential; the answer of any status. An Entra token the
    /// service refuses (401) is replaced once.
    async fn send_any(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<RawAnswer, ProviderError> {
        let core = self.model.core();
        let mut retried = false;
        loop {
            let (auth, token) = self.cred.headers().await?;
            let raw = match &body {
                Some((ct, bytes)) if method != reqwest::Method::GET => {
                    core.post_raw_bytes(url, auth, ct, bytes.clone()).await?
                }
                _ => core.get_raw(url, auth).await?,
            };
            if raw.status == 401 && !retried && self.cred.is_entra() {
                if let Some(t) = &token {
                    self.cred.refused(t);
                }
                retried = true;
                continue;
            }
            return Ok(raw);
        }
    }

    /// [`AzureOpenAi::send_any`], a failure classified.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Vec<u8>, ProviderError> {
        let raw = self.send_any(method, url, body).await?;
        if (200..300).contains(&raw.status) {
            return Ok(raw.body);
        }
        Err(self.classify(&raw, url))
    }

    fn redact(&self, text: &str) -> String {
        let key = self.cred.key().map(|k| k.expose()).unwrap_or("");
        moralsweep_telemetry::redact::redact_with(text, key).into_owned()
    }

    /// A refused request, classified with what to fix.
    pub fn classify(&self, raw: &RawAnswer, url: &str) -> ProviderError {
        let json: Option<Value> = serde_json::from_slice(&raw.body).ok();
        let message = self.redact(
            &json
                .as_ref()
                .and_then(provider_message)
                .unwrap_or_else(|| snippet(&raw.body)),
        );
        let code = json
            .as_ref()
            .and_then(|j| j.pointer("/error/code"))
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        let (key, dep, host) = (self.key(), self.deployment(), self.route.host());
        let who = self.cred.describe();
        let status = raw.status;
        match (status, code.as_str()) {
            (404, "DeploymentNotFound") => ProviderError::Fatal(format!(
                "model {key:?}: the Azure OpenAI resource {host} has no deployment {dep:?} (404 DeploymentNotFound): {message}; set the model's `model` to the name of a deployment of that resource (Azure AI Foundry, Deployments), not the OpenAI model id"
            )),
            (_, "UnsupportedApiVersion" | "MissingApiVersionParameter") => ProviderError::Fatal(format!(
                "model {key:?}: Azure OpenAI refused the api-version of {url} ({status} {code}): {message}; set api_version to a version the resource serves (e.g. \"2024-10-21\"), or use the v1 API (base_url ending in /openai/v1) without one"
            )),
            (401, _) => ProviderError::Fatal(format!(
                "model {key:?}: Azure OpenAI resource {host} refused {who} (401): {message}; {}",
                if self.cred.is_entra() {
                    "check that the identity's tenant is the resource's and that the token is for https://cognitiveservices.azure.com"
                } else {
                    "use a current key of this resource (Keys and Endpoint in the Azure portal)"
                }
            )),
            (403, _) => ProviderError::Fatal(format!(
                "model {key:?}: Azure OpenAI resource {host} does not let {who} call deployment {dep:?} (403 {code}): {message}; {}",
                if self.cred.is_entra() {
                    "assign the identity the role \"Cognitive Services OpenAI User\" on the resource"
                } else {
                    "check the resource's network rules (Networking in the Azure portal)"
                }
            )),
            (404, _) => ProviderError::Fatal(format!(
                "model {key:?}: {url} was not found on Azure OpenAI resource {host} (404): {message}; check base_url (https://{{resource}}.openai.azure.com/openai/v1, or the resource's endpoint with api_version) and the deployment name {dep:?}"
            )),
            _ => self
                .model
                .core()
                .classify(status, &raw.headers, &raw.body, url),
        }
    }

    /// Whether a refusal is the content filter's (prompt side).
    fn filtered(raw: &RawAnswer) -> bool {
        raw.status == 400
            && serde_json::from_slice::<Value>(&raw.body)
                .ok()
                .and_then(|j| {
                    j.pointer("/error/code")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .is_some_and(|c| c == "content_filter")
    }

    async fn ask(&self, req: &CompletionRequest, n: u32) -> Result<Vec<Completion>, ProviderError> {
        let body = self.model.body_n(req, n)?;
        let url = self.route.url("/chat/completions", &[]);
        let payload = serde_json::to_vec(&body)
            .map_err(|e| ProviderError::Fatal(format!("cannot encode the request: {e}")))?;
        let raw = self
            .send_any(
                reqwest::Method::POST,
                &url,
                Some(("application/json", payload)),
            )
            .await?;
        if (200..300).contains(&raw.status) {
            let v = self.model.core().json_of(&raw.body)?;
            return self.model.answer_of(&v, req, n);
        }
        if Self::filtered(&raw) {
            return Ok(self.filtered_answer(req, n));
        }
        Err(self.classify(&raw, &url))
    }

    /// The samples of a prompt the content filter refused: no text.
    fn filtered_answer(&self, req: &CompletionRequest, n: u32) -> Vec<Completion> {
        (0..n.max(1))
            .map(|i| Completion {
                text: String::new(),
                top_logprobs: None,
                usage: if i == 0 {
                    Usage {
                        input_tokens: self.model.core().tokenizer.prompt_tokens(&req.prompt),
                        output_tokens: 0,
                    }
                } else {
                    Usage::default()
                },
            })
            .collect()
    }
}

#[async_trait]
impl Provider for AzureOpenAi {
    async fn count_tokens(&self, prompt: &str) -> Result<Option<u64>, ProviderError> {
        self.model.count_tokens(prompt).await
    }

    async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let mut all = self.ask(req, 1).await?;
        Ok(all.remove(0))
    }

    async fn complete_n(
        &self,
        req: &CompletionRequest,
        n: u32,
    ) -> Result<Vec<Completion>, ProviderError> {
        self.ask(req, n.max(1)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let v1 = Route::of(
            "k",
            Some("https://r.openai.azure.com/openai/v1/"),
            "gpt4o",
            None,
        )
        .unwrap();
        assert_eq!(
            v1.url("/chat/completions", &[]),
            "https://r.openai.azure.com/openai/v1/chat/completions"
        );
        assert_eq!(
            v1.url("/batches", &[("limit", "100")]),
            "https://r.openai.azure.com/openai/v1/batches?limit=100"
        );
        assert_eq!(v1.host(), "r.openai.azure.com");
        let d = Route::of(
            "k",
            Some("https://r.openai.azure.com/"),
            "my-gpt4o",
            Some("2024-10-21"),
        )
        .unwrap();
        assert_eq!(
            d.url("/chat/completions", &[]),
            "https://r.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            d.url("/batches", &[("after", "batch a")]),
            "https://r.openai.azure.com/openai/batches?api-version=2024-10-21&after=batch%20a"
        );
        let same = Route::of(
            "k",
            Some("https://r.openai.azure.com/openai"),
            "my-gpt4o",
            Some("2024-10-21"),
        )
        .unwrap();
        assert_eq!(same, d);
        let e = Route::of("k", Some("https://r.openai.azure.com"), "d", None).unwrap_err();
        assert!(e.to_string().contains("needs api_version"), "{e}");
        let e = Route::of(
            "k",
            Some("https://r.openai.azure.com/openai/v1"),
            "d",
            Some("2024-10-21"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("takes none"), "{e}");
        let e = Route::of("k", None, "d", None).unwrap_err();
        assert!(e.to_string().contains("base_url is required"), "{e}");
        let e = Route::of("k", Some("https://r"), "a/b", Some("1")).unwrap_err();
        assert!(e.to_string().contains("not a deployment name"), "{e}");
    }
}
