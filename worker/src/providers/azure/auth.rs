//! Azure OpenAI's credentials: an API key (header `api-key`) when the spec
//! names one (`api_key_env` or `api_key_file`), else a Microsoft Entra ID
//! bearer token for the scope `https://cognitiveservices.azure.com/.default`,
//! from the first of these the environment sets up (the order of the Azure
//! SDKs' `EnvironmentCredential`, `WorkloadIdentityCredential` and
//! `ManagedIdentityCredential`):
//!
//! 1. a client secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_CLIENT_SECRET`;
//! 2. AKS Workload Identity: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_FEDERATED_TOKEN_FILE` (the projected service-account token,
//!    re-read at every refresh since the kubelet rotates it), exchanged as a
//!    `client_assertion`;
//! 3. a managed identity through the instance metadata service (IMDS,
//!    `AZURE_POD_IDENTITY_AUTHORITY_HOST` overrides its address, as in the
//!    Azure SDKs), with `AZURE_CLIENT_ID` choosing a user-assigned identity.
//!
//! Both token routes are Entra's documented OAuth 2.0 exchanges,
//! `POST {AZURE_AUTHORITY_HOST}/{tenant}/oauth2/v2.0/token` and the IMDS
//! `GET /metadata/identity/oauth2/token`, made with the worker's own HTTP
//! client (see the provider's module note for why not `azure_identity`).
//!
//! A token is refreshed in the background once half its life (at most
//! five minutes before its end) has passed, while requests go on with the
//! old one; only a token at its very end is waited for. Every token,
//! secret and assertion is registered for redaction before it is used.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moralsweep_common::ModelSpec;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::providers::http::{auth_header, ApiKey, Secret};
use crate::providers::ProviderError;

/// The scope of an Azure OpenAI (Cognitive Services) token.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// The resource an IMDS token is asked for.
const RESOURCE: &str = "https://cognitiveservices.azure.com";
/// Entra ID's public cloud (`AZURE_AUTHORITY_HOST` overrides it).
const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The instance metadata service.
const IMDS: &str = "http://169.254.169.254";
/// The longest a token answer may be.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// How a model authenticates.
pub enum Credential {
    /// The resource's key, sent as `api-key`.
    Key(ApiKey),
    /// Entra ID bearer tokens.
    Entra(Arc<Entra>),
}

/// Where Entra ID tokens come from.
#[derive(Debug, Clone)]
enum Method {
    Secret(Secret),
    Federated(PathBuf),
    ManagedIdentity { endpoint: String },
}

impl Method {
    /// What tells this method's identity apart (never a secret's value: a
    /// digest of it).
    fn identity(&self) -> String {
        match self {
            Method::Secret(secret) => {
                let d = ring::digest::digest(&ring::digest::SHA256, secret.expose().as_bytes());
                let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("secret {hex}")
            }
            Method::Federated(path) => format!("federated {}", path.display()),
            Method::ManagedIdentity { endpoint } => format!("managed {endpoint}"),
        }
    }
}

/// The Entra ID identities in use in this process, by model and identity.
static SHARED: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Weak<Entra>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A token in hand.
struct Token {
    secret: Secret,
    /// From then on a refresh runs in the background.
    refresh_at: Instant,
    /// From then on the token is not sent any more.
    usable_until: Instant,
}

/// An Entra ID identity and its cached token.
pub struct Entra {
    model_key: String,
    method: Method,
    tenant: String,
    client_id: Option<String>,
    authority: String,
    client: reqwest::Client,
    cached: RwLock<Option<Token>>,
    /// A refusal no retry can fix, given to every later caller at once.
    refused: RwLock<Option<ProviderError>>,
    /// One token request at a time.
    fetching: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Credential {
    /// The credential of a model: its key if the spec names one, else the
    /// Entra ID identity the environment describes.
    pub fn resolve(
        spec: &ModelSpec,
        key: Option<ApiKey>,
        client: &reqwest::Client,
    ) -> Result<Credential, ProviderError> {
        if let Some(k) = key {
            return Ok(Credential::Key(k));
        }
        let model = &spec.key;
        let tenant = env("AZURE_TENANT_ID");
        let client_id = env("AZURE_CLIENT_ID");
        let secret = env("AZURE_CLIENT_SECRET");
        let file = env("AZURE_FEDERATED_TOKEN_FILE");
        let method = match (&secret, &file) {
            (Some(s), _) => Method::Secret(Secret::new(s.clone())),
            (None, Some(f)) => Method::Federated(PathBuf::from(f)),
            (None, None) => Method::ManagedIdentity {
                endpoint: env("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| IMDS.to_string())
                    .trim_end_matches('/')
                    .to_string(),
            },
        };
        if !matches!(method, Method::ManagedIdentity { .. }) {
            let what = if secret.is_some() {
                "AZURE_CLIENT_SECRET"
            } else {
                "AZURE_FEDERATED_TOKEN_FILE"
            };
            for (var, value) in [
                ("AZURE_TENANT_ID", &tenant),
                ("AZURE_CLIENT_ID", &client_id),
            ] {
                if value.is_none() {
                    return Err(ProviderError::Fatal(format!(
                        "model {model:?} (Azure OpenAI): {what} is set but {var} is not; an Entra ID identity needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE (or give the model api_key_env)"
                    )));
                }
            }
        }
        let authority = env("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| PUBLIC_AUTHORITY.to_string())
            .trim_end_matches('/')
            .to_string();
        if !(authority.starts_with("https://") || authority.starts_with("http://")) {
            return Err(ProviderError::Fatal(format!(
                "model {model:?} (Azure OpenAI): AZURE_AUTHORITY_HOST {authority:?} must be a URL such as {PUBLIC_AUTHORITY}"
            )));
        }
        // One identity, one token cache per process: the workers of `run`
        // (each building its own providers) share the model's tokens, so a
        // process asks Entra ID once per token lifetime, not once per worker.
        let identity = format!(
            "{model}\n{}\n{}\n{}\n{authority}",
            method.identity(),
            tenant.as_deref().unwrap_or(""),
            client_id.as_deref().unwrap_or("")
        );
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        shared.retain(|_, e| e.strong_count() > 0);
        if let Some(e) = shared.get(&identity).and_then(std::sync::Weak::upgrade) {
            return Ok(Credential::Entra(e));
        }
        let entra = Arc::new(Entra {
            model_key: model.clone(),
            method,
            tenant: tenant.unwrap_or_default(),
            client_id,
            authority,
            client: client.clone(),
            cached: RwLock::new(None),
            refused: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        });
        shared.insert(identity, Arc::downgrade(&entra));
        Ok(Credential::Entra(entra))
    }

    /// The headers that authenticate one request.
    pub async fn headers(&self) -> Result<(HeaderMap, Option<Secret>), ProviderError> {
        match self {
            Credential::Key(k) => Ok((auth_header("api-key", k.secret.expose()), None)),
            Credential::Entra(e) => {
                let token = e.bearer().await?;
                Ok((
                    auth_header("authorization", &format!("Bearer {}", token.expose())),
                    Some(token),
                ))
            }
        }
    }

    /// Forgets `used` (a token the service refused), so the next request
    /// gets a new one.
    pub fn refused(&self, used: &Secret) {
        if let Credential::Entra(e) = self {
            let mut c = e.cached.write().unwrap_or_else(|p| p.into_inner());
            if c.as_ref()
                .is_some_and(|t| t.secret.expose() == used.expose())
            {
                *c = None;
            }
        }
    }

    /// What authenticates the model, for messages (never a value).
    pub fn describe(&self) -> String {
        match self {
            Credential::Key(k) => format!("the API key from {}", k.source),
            Credential::Entra(e) => e.describe(),
        }
    }

    /// The secret to scrub from a message, if a key.
    pub fn key(&self) -> Option<&Secret> {
        match self {
            Credential::Key(k) => Some(&k.secret),
            Credential::Entra(_) => None,
        }
    }

    /// Whether a refused token may be worth one more try with a new one.
    pub fn is_entra(&self) -> bool {
        matches!(self, Credential::Entra(_))
    }
}

/// When a token of `lifetime` fetched at `now` is refreshed and last used.
fn schedule(now: Instant, lifetime: Duration) -> (Instant, Instant) {
    let refresh = lifetime
        .saturating_sub(Duration::from_secs(300))
        .max(lifetime / 2);
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    (now + refresh, now + lifetime.saturating_sub(margin))
}

impl Entra {
    fn describe(&self) -> String {
        let client = self.client_id.as_deref().unwrap_or("(system-assigned)");
        match &self.method {
            Method::Secret(_) => format!(
                "the Entra ID client {client} of tenant {} with its client secret (AZURE_CLIENT_SECRET)",
                self.tenant
            ),
            Method::Federated(f) => format!(
                "the Entra ID client {client} of tenant {} through workload identity (AZURE_FEDERATED_TOKEN_FILE {})",
                self.tenant,
                f.display()
            ),
            Method::ManagedIdentity { endpoint } => format!(
                "the managed identity {client} (instance metadata service {endpoint})"
            ),
        }
    }

    /// A token fit to send now.
    async fn bearer(self: &Arc<Self>) -> Result<Secret, ProviderError> {
        let now = Instant::now();
        if let Some(t) = self.current(now) {
            return Ok(t);
        }
        let _one = self.fetching.lock().await;
        if let Some(t) = self.current(Instant::now()) {
            return Ok(t);
        }
        if let Some(e) = self
            .refused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(e);
        }
        let got = self.fetch_and_keep().await;
        if let Err(e @ ProviderError::Fatal(_)) = &got {
            *self.refused.write().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        }
        got
    }

    /// The cached token if it may still be sent; starts a background
    /// refresh when it is due.
    fn current(self: &Arc<Self>, now: Instant) -> Option<Secret> {
        let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
        let t = c.as_ref()?;
        if now >= t.usable_until {
            return None;
        }
        if now >= t.refresh_at && !self.refreshing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::spawn(async move {
                let _one = me.fetching.lock().await;
                let due = me
                    .cached
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .is_none_or(|t| Instant::now() >= t.refresh_at);
                if due {
                    if let Err(e) = me.fetch_and_keep().await {
                        tracing::warn!(model = %me.model_key, error = %e,
                            "refreshing the Azure OpenAI token failed; the current one is used until it ends");
                    }
                }
                me.refreshing.store(false, Ordering::Release);
            });
        }
        Some(t.secret.clone())
    }

    async fn fetch_and_keep(&self) -> Result<Secret, ProviderError> {
        let (secret, lifetime) = self.fetch().await?;
        let (refresh_at, usable_until) = schedule(Instant::now(), lifetime);
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(Token {
            secret: secret.clone(),
            refresh_at,
            usable_until,
        });
        Ok(secret)
    }

    fn fatal(&self, what: &str) -> ProviderError {
        ProviderError::Fatal(format!("model {:?} (Azure OpenAI): {what}", self.model_key))
    }

    /// Asks Entra ID (or IMDS) for a new token.
    async fn fetch(&self) -> Result<(Secret, Duration), ProviderError> {
        let request = match &self.method {
            Method::ManagedIdentity { endpoint } => {
                let mut query = vec![("api-version", "2018-02-01"), ("resource", RESOURCE)];
                if let Some(c) = &self.client_id {
                    query.push(("client_id", c.as_str()));
                }
                self.client
                    .get(format!("{endpoint}/metadata/identity/oauth2/token"))
                    .query(&query)
                    .header("Metadata", "true")
                    .timeout(Duration::from_secs(5))
            }
            Method::Secret(s) => self.token_request(&[("client_secret", s.expose())]),
            Method::Federated(path) => {
                let assertion = self.assertion(path)?;
                self.token_request(&[
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.expose()),
                ])
            }
        };
        let resp = request.send().await.map_err(|e| self.transport(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            ProviderError::Retryable(format!(
                "model {:?} (Azure OpenAI): the token answer broke off: {e}",
                self.model_key
            ))
        })?;
        if bytes.len() > MAX_TOKEN_ANSWER {
            return Err(ProviderError::Retryable(format!(
                "model {:?} (Azure OpenAI): the token answer is over {MAX_TOKEN_ANSWER} bytes",
                self.model_key
            )));
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(self.token_error(status, &v));
        }
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ProviderError::Retryable(format!(
                    "model {:?} (Azure OpenAI): the token answer holds no access_token",
                    self.model_key
                ))
            })?;
        let secret = Secret::new(token.to_string());
        // `expires_in` is a number from Entra ID and a string from IMDS.
        let secs = match v.get("expires_in") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(300.0);
        Ok((secret, Duration::from_secs_f64(secs)))
    }

    fn token_request(&self, proof: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_deref().unwrap_or("")),
            ("scope", SCOPE),
        ];
        form.extend_from_slice(proof);
        self.client
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.authority, self.tenant
            ))
            .form(&form)
    }

    /// The federated token, read afresh (it rotates).
    fn assertion(&self, path: &std::path::Path) -> Result<Secret, ProviderError> {
        let text = moralsweep_userfs::read_to_string_bounded(path, 64 * 1024).map_err(|e| {
            self.fatal(&format!(
                "cannot read AZURE_FEDERATED_TOKEN_FILE {}: {e}; on AKS, label the pod azure.workload.identity/use: \"true\" and give it a service account annotated azure.workload.identity/client-id",
                path.display()
            ))
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(self.fatal(&format!(
                "AZURE_FEDERATED_TOKEN_FILE {} is empty; it must hold the projected service-account token",
                path.display()
            )));
        }
        Ok(Secret::new(t.to_string()))
    }

    fn transport(&self, e: &reqwest::Error) -> ProviderError {
        let whom = match &self.method {
            Method::ManagedIdentity { endpoint } => {
                format!("the instance metadata service {endpoint}")
            }
            _ => format!("Entra ID at {}", self.authority),
        };
        if e.is_connect()
            || (e.is_timeout() && matches!(self.method, Method::ManagedIdentity { .. }))
        {
            if matches!(self.method, Method::ManagedIdentity { .. }) {
                return self.fatal(&format!(
                    "no credential: the spec gives no api_key_env, the environment no AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, and {whom} does not answer ({e}); give the model api_key_env, or AZURE_TENANT_ID and AZURE_CLIENT_ID with a client secret or a federated token file"
                ));
            }
            return ProviderError::Unreachable(format!(
                "model {:?} (Azure OpenAI): cannot reach {whom}: {e}",
                self.model_key
            ));
        }
        ProviderError::Retryable(format!(
            "model {:?} (Azure OpenAI): the token request to {whom} failed: {e}",
            self.model_key
        ))
    }

    /// A refused token request, with what to fix.
    fn token_error(&self, status: u16, v: &Value) -> ProviderError {
        let error = v.get("error").and_then(Value::as_str).unwrap_or("");
        let desc = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or(error);
        let desc: String = desc
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        let code = |c: &str| desc.contains(c);
        let who = self.describe();
        match status {
            429 => ProviderError::RateLimited { retry_after: None },
            500..=599 => ProviderError::Retryable(format!(
                "model {:?} (Azure OpenAI): the token service answered {status}: {desc}",
                self.model_key
            )),
            _ if code("AADSTS700024") || code("AADSTS700027") => self.fatal(&format!(
                "Entra ID refused the federated token of {who} as expired or not yet valid ({status}): {desc}; the file must hold a current token: check that the pod's projected service-account token is mounted and rotated (the AKS workload identity webhook does this)"
            )),
            _ if code("AADSTS7000215") || code("AADSTS7000222") => self.fatal(&format!(
                "Entra ID refused the client secret of {who} ({status}): {desc}; put a current secret of the app registration in AZURE_CLIENT_SECRET"
            )),
            _ if code("AADSTS700016") || code("AADSTS90002") => self.fatal(&format!(
                "Entra ID does not know {who} ({status}): {desc}; check AZURE_CLIENT_ID and AZURE_TENANT_ID"
            )),
            _ if code("AADSTS70021") || code("AADSTS700212") || code("AADSTS700213") => self.fatal(&format!(
                "Entra ID has no federated credential matching the service account token of {who} ({status}): {desc}; add one to the identity for the cluster's OIDC issuer and subject system:serviceaccount:<namespace>:<service account>"
            )),
            _ => self.fatal(&format!(
                "Entra ID refused a token for {who} ({status} {error}): {desc}; check the identity's settings"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_before_the_end_and_stop_using_at_the_end() {
        let t0 = Instant::now();
        let (r, u) = schedule(t0, Duration::from_secs(3600));
        assert_eq!(r - t0, Duration::from_secs(3300));
        assert_eq!(u - t0, Duration::from_secs(3570));
        let (r, u) = schedule(t0, Duration::from_secs(20));
        assert_eq!(r - t0, Duration::from_secs(10));
        assert_eq!(u - t0, Duration::from_secs(18));
    }
}
