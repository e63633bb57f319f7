//! Google's token side, played for Vertex AI clients: the OAuth token
//! endpoint (`POST /token`) that exchanges a service account's signed JWT
//! assertion (RFC 7523, `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`)
//! or an `authorized_user`'s refresh token for a bearer, and the GKE/GCE
//! metadata server's token route
//! (`GET /computeMetadata/v1/instance/service-accounts/default/token` with
//! `Metadata-Flavor: Google`).
//!
//! An assertion is accepted only when its RS256 signature verifies with the
//! public key of a service account the simulator was given
//! (`--gcp-service-account FILE`), its `iss` is that account's
//! `client_email`, its `aud` is this token route's own URL (as Google's
//! endpoint wants its own), it asks for a scope and it has not expired. Bearers are random, live for the configured
//! lifetime, and the Vertex routes accept only bearers issued here and not
//! yet expired.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use rand::Rng;
use ring::signature::{RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};

use crate::wire::json_response;

/// The largest credentials file read.
const CREDENTIALS_LIMIT: u64 = 64 << 10;

/// The scope Vertex AI needs.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A service account whose assertions the token route accepts.
#[derive(Clone)]
pub struct ServiceAccount {
    pub email: String,
    pub key_id: Option<String>,
    /// The RSA public key (PKCS#1 `RSAPublicKey`, DER).
    public_key: Vec<u8>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("email", &self.email)
            .finish()
    }
}

/// An `authorized_user` whose refresh token the token route accepts.
#[derive(Clone)]
pub struct AuthorizedUser {
    pub client_id: String,
    client_secret: String,
    refresh_token: String,
}

impl std::fmt::Debug for AuthorizedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedUser")
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// How the simulator plays Google Cloud (the `--gcp-*` flags of `sim`).
#[derive(Debug, Clone)]
pub struct GcpSettings {
    pub service_accounts: Vec<ServiceAccount>,
    pub users: Vec<AuthorizedUser>,
    /// How long a bearer it issues lives.
    pub token_lifetime: Duration,
    /// The one project the credentials may use (`None`: any); a request
    /// for another gets Vertex AI's 403 PERMISSION_DENIED.
    pub project: Option<String>,
}

impl Default for GcpSettings {
    fn default() -> Self {
        GcpSettings {
            service_accounts: Vec::new(),
            users: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
            project: None,
        }
    }
}

/// A credentials file `--gcp-service-account` names that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--gcp-service-account {}: {problem}", file.display())]
pub struct CredentialsFileError {
    /// The file.
    pub file: std::path::PathBuf,
    /// What is wrong with it, and what would be right.
    pub problem: String,
}

impl GcpSettings {
    /// Adds the credentials of a Google credentials file: a service-account
    /// key (`"type": "service_account"`, its public key taken from the
    /// private key) or an `authorized_user`. The error names the file and
    /// the field.
    pub fn add_file(&mut self, path: &Path) -> Result<(), CredentialsFileError> {
        self.load_file(path)
            .map_err(|problem| CredentialsFileError {
                file: path.to_path_buf(),
                problem,
            })
    }

    /// [`GcpSettings::add_file`]; what is wrong with the file.
    fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let text = moralsweep_userfs::read_to_string_bounded(path, CREDENTIALS_LIMIT)
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON ({e})"))?;
        let field = |k: &str| -> Result<String, String> {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("the field {k:?} is missing or empty"))
        };
        match v.get("type").and_then(Value::as_str) {
            Some("service_account") => {
                let pem = field("private_key")?;
                let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
                    .map_err(|e| format!("private_key is not a PEM PKCS#8 key ({e})"))?;
                let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
                    .map_err(|e| format!("private_key is not an RSA key ring accepts ({e})"))?;
                use ring::signature::KeyPair;
                self.service_accounts.push(ServiceAccount {
                    email: field("client_email")?,
                    key_id: field("private_key_id").ok(),
                    public_key: pair.public_key().as_ref().to_vec(),
                });
                Ok(())
            }
            Some("authorized_user") => {
                self.users.push(AuthorizedUser {
                    client_id: field("client_id")?,
                    client_secret: field("client_secret")?,
                    refresh_token: field("refresh_token")?,
                });
                Ok(())
            }
            other => Err(format!(
                "\"type\" is {other:?}; expected \"service_account\" or \"authorized_user\""
            )),
        }
    }
}

/// Why a bearer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerRefusal {
    Missing,
    Unknown,
    Expired,
}

impl BearerRefusal {
    fn name(self) -> &'static str {
        match self {
            BearerRefusal::Missing => "missing",
            BearerRefusal::Unknown => "unknown",
            BearerRefusal::Expired => "expired",
        }
    }
}

/// The token side's state: its settings, the bearers it issued, its counts.
pub struct OAuth {
    pub settings: GcpSettings,
    bearers: Mutex<HashMap<String, Instant>>,
    issued: Mutex<HashMap<&'static str, u64>>,
    refused_assertions: AtomicU64,
    refused_bearers: Mutex<HashMap<&'static str, u64>>,
    denied: AtomicU64,
}

impl OAuth {
    pub fn new(settings: GcpSettings) -> OAuth {
        OAuth {
            settings,
            bearers: Mutex::new(HashMap::new()),
            issued: Mutex::new(HashMap::new()),
            refused_assertions: AtomicU64::new(0),
            refused_bearers: Mutex::new(HashMap::new()),
            denied: AtomicU64::new(0),
        }
    }

    fn issue(&self, grant: &'static str) -> Value {
        let token = format!(
            "ya29.sim-{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(rand::rng().random::<[u8; 24]>())
        );
        let lifetime = self.settings.token_lifetime;
        let now = Instant::now();
        {
            let mut b = self.bearers.lock().unwrap_or_else(|e| e.into_inner());
            // Forget long-expired bearers so the table stays small.
            if b.len() > 4096 {
                b.retain(|_, exp| *exp + Duration::from_secs(3600) > now);
            }
            b.insert(token.clone(), now + lifetime);
        }
        *self
            .issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(grant)
            .or_default() += 1;
        json!({
            "access_token": token,
            "expires_in": lifetime.as_secs(),
            "token_type": "Bearer",
        })
    }

    /// Whether a request's `Authorization` carries a live bearer of ours.
    pub fn check_bearer(&self, headers: &HeaderMap) -> Result<(), BearerRefusal> {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let outcome = match given {
            None => Err(BearerRefusal::Missing),
            Some(t) => match self
                .bearers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(t)
            {
                None => Err(BearerRefusal::Unknown),
                Some(exp) if *exp <= Instant::now() => Err(BearerRefusal::Expired),
                Some(_) => Ok(()),
            },
        };
        if let Err(r) = outcome {
            *self
                .refused_bearers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(r.name())
                .or_default() += 1;
        }
        outcome
    }

    /// Counts a request refused for its project.
    pub fn count_denied(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// What the token side did, for `/_sim/gcp`.
    pub fn report(&self) -> Value {
        let map = |m: &Mutex<HashMap<&'static str, u64>>| -> Value {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "tokens_issued": map(&self.issued),
            "assertions_refused": self.refused_assertions.load(Ordering::Relaxed),
            "bearers_refused": map(&self.refused_bearers),
            "permission_denied": self.denied.load(Ordering::Relaxed),
        })
    }

    /// `POST /token` at `host`: a form with `grant_type` and the assertion
    /// or the refresh token.
    pub fn token(&self, host: &str, form: &HashMap<String, String>) -> Response {
        let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
        match grant {
            "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                let assertion = form.get("assertion").map(String::as_str).unwrap_or("");
                match self.verify_assertion(assertion, host) {
                    Ok(()) => ok(self.issue("jwt-bearer")),
                    Err(why) => {
                        self.refused_assertions.fetch_add(1, Ordering::Relaxed);
                        oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &why)
                    }
                }
            }
            "refresh_token" => {
                let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
                let known = self.settings.users.iter().any(|u| {
                    u.client_id == get("client_id")
                        && u.client_secret == get("client_secret")
                        && u.refresh_token == get("refresh_token")
                });
                if known {
                    ok(self.issue("refresh_token"))
                } else {
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request")
                }
            }
            other => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            ),
        }
    }

    /// The metadata server's token route: any caller in the pod that says
    /// `Metadata-Flavor: Google` gets the pod's service account's token.
    pub fn metadata_token(&self, headers: &HeaderMap) -> Response {
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            let mut r = json_response(
                StatusCode::FORBIDDEN,
                HeaderMap::new(),
                &json!({"error": "Missing required header: Metadata-Flavor: Google"}),
            );
            r.headers_mut().insert(
                "metadata-flavor",
                axum::http::HeaderValue::from_static("Google"),
            );
            return r;
        }
        let mut r = ok(self.issue("metadata"));
        r.headers_mut().insert(
            "metadata-flavor",
            axum::http::HeaderValue::from_static("Google"),
        );
        r
    }

    /// Checks an RS256 JWT assertion as Google's token endpoint does.
    fn verify_assertion(&self, jwt: &str, host: &str) -> Result<(), String> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("Invalid JWT: the assertion is not three dot-separated parts.".into());
        };
        let decode_json = |p: &str| -> Result<Value, String> {
            let bytes = b64
                .decode(p)
                .map_err(|_| "Invalid JWT: a part is not base64url.".to_string())?;
            serde_json::from_slice(&bytes).map_err(|_| "Invalid JWT: a part is not JSON.".into())
        };
        let header = decode_json(h)?;
        let claims = decode_json(c)?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err("Invalid JWT: the algorithm must be RS256.".into());
        }
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let Some(account) = self
            .settings
            .service_accounts
            .iter()
            .find(|a| a.email == iss)
        else {
            return Err(format!("Invalid JWT: no service account {iss:?}."));
        };
        if let (Some(kid), Some(ours)) =
            (header.get("kid").and_then(Value::as_str), &account.key_id)
        {
            if kid != ours {
                return Err("Invalid JWT Signature.".into());
            }
        }
        let signature = b64
            .decode(s)
            .map_err(|_| "Invalid JWT Signature.".to_string())?;
        let signed = &jwt[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| "Invalid JWT Signature.".to_string())?;
        // The token route's own URL, or Google's: `google-auth` always names
        // Google's token endpoint as the audience, whatever `token_uri` says.
        let ours = [
            format!("http://{host}/token"),
            format!("https://{host}/token"),
            "https://oauth2.googleapis.com/token".to_string(),
        ];
        let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
        if !ours.iter().any(|o| o == aud) {
            return Err(format!("Invalid JWT: the audience must be {}.", ours[0]));
        }
        let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
        if scope.is_empty() {
            return Err("Invalid JWT: no scope.".into());
        }
        let now = crate::wire::unix_now() as i64;
        let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp <= now || iat > now + 300 || exp - iat > 3600 {
            return Err(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
                    .into(),
            );
        }
        Ok(())
    }
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, HeaderMap::new(), &body)
}

/// Google's token endpoint error: `{"error": ..., "error_description": ...}`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        HeaderMap::new(),
        &json!({"error": error, "error_description": description}),
    )
}
