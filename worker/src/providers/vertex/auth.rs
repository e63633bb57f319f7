//! Google's Application Default Credentials, as Vertex AI clients find
//! them, in this order:
//!
//! 1. `GOOGLE_APPLICATION_CREDENTIALS` naming a credentials file: a
//!    service-account key (`"type": "service_account"`: an RS256 JWT
//!    assertion signed with its private key, exchanged at the file's
//!    `token_uri`, RFC 7523) or an `authorized_user` (its refresh token
//!    exchanged at its `token_uri`);
//! 2. gcloud's well-known file
//!    (`$CLOUDSDK_CONFIG/application_default_credentials.json`, by default
//!    `~/.config/gcloud/application_default_credentials.json`) if it exists;
//! 3. the metadata server (GKE Workload Identity, a VM's service account):
//!    `GET http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/token`
//!    with `Metadata-Flavor: Google` (`metadata.google.internal` by default).
//!
//! A bearer is fetched once and shared by every call of the model. It is
//! renewed in the background once half its life (at most the last five
//! minutes) is left, while calls go on with the current one, so a sweep
//! never pauses for a token; only when no usable bearer is left do calls
//! wait, together, for one fetch. Every secret it handles (the private key,
//! a refresh token, client secrets, assertions, bearers) is registered with
//! the redaction and never appears in a message.
//!
//! The crates: `ring` signs (the RSA PKCS#1 v1.5 SHA-256 of RS256) and
//! `rustls-pki-types` reads the PEM key; both are already in the tree for
//! rustls, so Google's ADC costs no new crate. `gcp_auth` was measured
//! against it: it cannot be pointed at another metadata host
//! (`GCE_METADATA_HOST`), brings its own hyper client, and refreshes inside
//! the caller's request once a token is within 20 s of expiry.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};

use super::super::http::Secret;
use super::super::ProviderError;

/// The OAuth scope Vertex AI needs.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, when a file names none.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's host, unless `GCE_METADATA_HOST` names another.
pub const METADATA_HOST: &str = "metadata.google.internal";
/// The largest credentials file read.
const CREDENTIALS_LIMIT: u64 = 64 << 10;
/// How long an assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;

/// Where bearers come from.
enum Source {
    ServiceAccount {
        email: String,
        key_id: Option<String>,
        /// Boxed: a key pair is large beside the other sources.
        key: Box<RsaKeyPair>,
        token_uri: String,
        file: PathBuf,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
        token_uri: String,
        file: PathBuf,
    },
    Metadata {
        host: String,
    },
}

impl Source {
    /// What the credentials are, for messages (never a secret).
    fn describe(&self) -> String {
        match self {
            Source::ServiceAccount { email, file, .. } => format!(
                "the service account {email} (key file {})",
                file.display()
            ),
            Source::AuthorizedUser { file, .. } => {
                format!("the user credentials in {}", file.display())
            }
            Source::Metadata { host } => format!(
                "the service account of the metadata server at {host} (GKE Workload Identity or the VM's)"
            ),
        }
    }

    /// What to do when these credentials are refused.
    fn remedy(&self) -> String {
        match self {
            Source::ServiceAccount { email, .. } => format!(
                "the key may be deleted, disabled or not {email}'s: create a key \
                 (gcloud iam service-accounts keys create KEY.json --iam-account={email}) \
                 and point GOOGLE_APPLICATION_CREDENTIALS at it"
            ),
            Source::AuthorizedUser { .. } => {
                "the login has expired or was revoked: run `gcloud auth application-default login` again".into()
            }
            Source::Metadata { .. } => {
                "on GKE, enable Workload Identity on the node pool and annotate the worker's \
                 Kubernetes service account with iam.gke.io/gcp-service-account=<email>, \
                 and let that account impersonate the Google service account (roles/iam.workloadIdentityUser)"
                    .into()
            }
        }
    }
}

/// A bearer and its times.
#[derive(Clone)]
struct Token {
    value: Secret,
    /// From here on, renew in the background.
    renew_at: Instant,
    /// From here on, do not send it.
    stale_at: Instant,
}

struct Inner {
    source: Source,
    client: reqwest::Client,
    model_key: String,
    current: RwLock<Option<Token>>,
    /// Held by whoever fetches, so one fetch runs at a time.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

/// A model's Google credentials: bearers on demand, renewed ahead of expiry.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn fatal(model_key: &str, what: String) -> ProviderError {
    ProviderError::Fatal(format!("model {model_key:?} (Vertex AI): {what}"))
}

impl Credentials {
    /// Finds the Application Default Credentials (see the module's docs).
    pub fn discover(
        model_key: &str,
        client: reqwest::Client,
    ) -> Result<Credentials, ProviderError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let source = if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") {
            from_file(
                model_key,
                Path::new(&path),
                "GOOGLE_APPLICATION_CREDENTIALS",
            )?
        } else {
            let dir = env("CLOUDSDK_CONFIG")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config/gcloud")));
            match dir.map(|d| d.join("application_default_credentials.json")) {
                Some(well_known) if well_known.is_file() => from_file(
                    model_key,
                    &well_known,
                    "gcloud's application default credentials",
                )?,
                _ => Source::Metadata {
                    host: env("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.into()),
                },
            }
        };
        Ok(Credentials {
            inner: Arc::new(Inner {
                source,
                client,
                model_key: model_key.to_string(),
                current: RwLock::new(None),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
            }),
        })
    }

    /// What the credentials are, for messages.
    pub fn describe(&self) -> String {
        self.inner.source.describe()
    }

    /// What to do when Vertex AI refuses these credentials' bearer.
    pub fn remedy(&self) -> String {
        self.inner.source.remedy()
    }

    /// The service account's email, when the credentials name one.
    pub fn email(&self) -> Option<&str> {
        match &self.inner.source {
            Source::ServiceAccount { email, .. } => Some(email),
            _ => None,
        }
    }

    fn current(&self) -> Option<Token> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A bearer to send now.
    pub async fn bearer(&self) -> Result<Secret, ProviderError> {
        let now = Instant::now();
        if let Some(t) = self.current() {
            if now < t.renew_at {
                return Ok(t.value);
            }
            if now < t.stale_at {
                // Renew in the background; this call goes on with the
                // current bearer.
                if let Ok(guard) = self.inner.fetching.clone().try_lock_owned() {
                    let inner = self.inner.clone();
                    tokio::spawn(async move {
                        let _one_fetch = guard;
                        if let Err(e) = inner.fetch().await {
                            tracing::warn!(model = %inner.model_key, error = %e, "renewing the Vertex AI bearer failed; the current one is used while it lasts");
                        }
                    });
                }
                return Ok(t.value);
            }
        }
        let _one_fetch = self.inner.fetching.lock().await;
        if let Some(t) = self.current() {
            if Instant::now() < t.stale_at {
                return Ok(t.value);
            }
        }
        self.inner.fetch().await
    }

    /// A new bearer after Vertex AI refused `refused` (401): fetched unless
    /// another call has already replaced it.
    pub async fn renew(&self, refused: &Secret) -> Result<Secret, ProviderError> {
        let _one_fetch = self.inner.fetching.lock().await;
        if let Some(t) = self.current() {
            if t.value.expose() != refused.expose() && Instant::now() < t.stale_at {
                return Ok(t.value);
            }
        }
        self.inner.fetch().await
    }
}

impl Inner {
    /// Fetches a bearer from the source and keeps it.
    async fn fetch(&self) -> Result<Secret, ProviderError> {
        let (url, request) = match &self.source {
            Source::ServiceAccount {
                email,
                key_id,
                key,
                token_uri,
                ..
            } => {
                let assertion = sign_assertion(email, key_id.as_deref(), key, token_uri)
                    .map_err(|e| fatal(&self.model_key, e))?;
                let assertion = Secret::new(assertion);
                (
                    token_uri.clone(),
                    self.client.post(token_uri).form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", assertion.expose()),
                    ]),
                )
            }
            Source::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
                ..
            } => (
                token_uri.clone(),
                self.client.post(token_uri).form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose()),
                    ("refresh_token", refresh_token.expose()),
                ]),
            ),
            Source::Metadata { host } => {
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                );
                (
                    url.clone(),
                    self.client.get(&url).header("Metadata-Flavor", "Google"),
                )
            }
        };
        let key = &self.model_key;
        let resp = request.send().await.map_err(|e| {
            let what = format!(
                "cannot get a bearer for {} from {url}: {}",
                self.source.describe(),
                moralsweep_telemetry::redact::redact(&e.to_string())
            );
            if e.is_connect() {
                ProviderError::Unreachable(format!("model {key:?} (Vertex AI): {what}"))
            } else {
                ProviderError::Retryable(format!("model {key:?} (Vertex AI): {what}"))
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| {
            ProviderError::Retryable(format!(
                "model {key:?} (Vertex AI): the token answer from {url} broke off: {e}"
            ))
        })?;
        let v: Option<Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let said = v
                .as_ref()
                .map(|v| {
                    let e = v.get("error").map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    let d = v.get("error_description").and_then(Value::as_str);
                    match (e, d) {
                        (Some(e), Some(d)) => format!("{e}: {d}"),
                        (Some(e), None) => e,
                        _ => v.to_string(),
                    }
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            let said = moralsweep_telemetry::redact::redact(&said).into_owned();
            return Err(match status {
                429 | 500..=599 => ProviderError::Retryable(format!(
                    "model {key:?} (Vertex AI): the token endpoint {url} answered {status}: {said}"
                )),
                _ => fatal(
                    key,
                    format!(
                        "{url} refused to issue a bearer for {} ({status} {said}); {}",
                        self.source.describe(),
                        self.source.remedy()
                    ),
                ),
            });
        }
        let token = v
            .as_ref()
            .and_then(|v| v.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ProviderError::Retryable(format!(
                    "model {key:?} (Vertex AI): the token answer from {url} has no access_token"
                ))
            })?;
        let lifetime = Duration::from_secs(
            v.as_ref()
                .and_then(|v| v.get("expires_in"))
                .and_then(Value::as_u64)
                .unwrap_or(3600),
        );
        let value = Secret::new(token.to_string());
        let now = Instant::now();
        let token = Token {
            value: value.clone(),
            renew_at: now + lifetime - (lifetime / 2).min(Duration::from_secs(300)),
            stale_at: now + lifetime - (lifetime / 4).min(Duration::from_secs(30)),
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(value)
    }
}

/// Reads a credentials file (`what` says how it was found, for messages).
fn from_file(model_key: &str, path: &Path, what: &str) -> Result<Source, ProviderError> {
    let at = format!("{} ({what})", path.display());
    let text = moralsweep_userfs::read_to_string_bounded(path, CREDENTIALS_LIMIT).map_err(|e| {
        fatal(
            model_key,
            format!("cannot read the credentials file {at}: {e}; point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file"),
        )
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        fatal(
            model_key,
            format!(
                "the credentials file {at} is not JSON ({e}); it must be a Google credentials file"
            ),
        )
    })?;
    let field = |k: &str| -> Result<String, ProviderError> {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                fatal(
                    model_key,
                    format!("the credentials file {at} lacks the field {k:?}"),
                )
            })
    };
    let token_uri = v
        .get("token_uri")
        .and_then(Value::as_str)
        .unwrap_or(GOOGLE_TOKEN_URI)
        .to_string();
    match v.get("type").and_then(Value::as_str) {
        Some("service_account") => {
            let pem = field("private_key")?;
            Secret::new(pem.clone());
            let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
                fatal(
                    model_key,
                    format!("the private_key of {at} is not a PEM PKCS#8 private key (\"-----BEGIN PRIVATE KEY-----\")"),
                )
            })?;
            let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| {
                fatal(
                    model_key,
                    format!("the private_key of {at} is not a usable RSA key ({e})"),
                )
            })?;
            Ok(Source::ServiceAccount {
                email: field("client_email")?,
                key_id: field("private_key_id").ok(),
                key: Box::new(key),
                token_uri,
                file: path.to_path_buf(),
            })
        }
        Some("authorized_user") => Ok(Source::AuthorizedUser {
            client_id: field("client_id")?,
            client_secret: Secret::new(field("client_secret")?),
            refresh_token: Secret::new(field("refresh_token")?),
            token_uri,
            file: path.to_path_buf(),
        }),
        other => Err(fatal(
            model_key,
            format!(
                "the credentials file {at} has \"type\" {other:?}; supported are \"service_account\" \
                 and \"authorized_user\" files (on GKE, leave GOOGLE_APPLICATION_CREDENTIALS unset \
                 to use Workload Identity through the metadata server)"
            ),
        )),
    }
}

/// An RS256 JWT assertion (RFC 7523) of `email` for `token_uri`.
fn sign_assertion(
    email: &str,
    key_id: Option<&str>,
    key: &RsaKeyPair,
    token_uri: &str,
) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = json!(kid);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({
        "iss": email,
        "scope": CLOUD_PLATFORM,
        "aud": token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    let signed = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the token assertion with the service account's key failed".to_string())?;
    Ok(format!("{signed}.{}", b64.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_another_type_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ext.json");
        std::fs::write(&p, r#"{"type": "external_account"}"#).unwrap();
        let Err(ProviderError::Fatal(m)) = from_file("m", &p, "test") else {
            panic!("accepted")
        };
        assert!(
            m.contains("ext.json") && m.contains("external_account"),
            "{m}"
        );
        std::fs::write(
            &p,
            r#"{"type": "service_account", "private_key": "nope", "client_email": "a@b"}"#,
        )
        .unwrap();
        let Err(ProviderError::Fatal(m)) = from_file("m", &p, "test") else {
            panic!("accepted")
        };
        assert!(m.contains("private_key") && m.contains("PKCS#8"), "{m}");
        std::fs::write(&p, "not json").unwrap();
        let Err(ProviderError::Fatal(m)) = from_file("m", &p, "test") else {
            panic!("accepted")
        };
        assert!(m.contains("not JSON"), "{m}");
    }
}
