//! The AWS identities the simulator plays: the long-term key pair it is
//! given (`moralsweep sim --aws-key ID:SECRET`), and temporary credentials
//! it issues itself with a configurable lifetime, through
//!
//! - STS `AssumeRoleWithWebIdentity` (`POST /` with the form body the STS
//!   API takes, answered in STS's XML), the call EKS IRSA makes with the
//!   pod's projected token (point `AWS_ENDPOINT_URL_STS` at the simulator);
//! - the container credentials route (`GET /_aws/container-credentials`
//!   with the token of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` in
//!   `Authorization`), as EKS Pod Identity's agent answers
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
//!
//! Issued credentials are accepted until they expire; then a request
//! signed with them gets Bedrock's `ExpiredTokenException`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

use crate::engine::Sim;

/// The default lifetime of issued credentials (STS's own default).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A long-term key pair.
#[derive(Clone)]
pub struct AwsKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for AwsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsKey({}, <secret>)", self.id)
    }
}

impl std::str::FromStr for AwsKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(AwsKey {
                id: id.to_string(),
                secret: secret.to_string(),
            }),
            _ => Err(
                "expected ACCESS_KEY_ID:SECRET_ACCESS_KEY, e.g. AKIASIMULATOR:sim-secret".into(),
            ),
        }
    }
}

/// Credentials the simulator issued.
#[derive(Debug, Clone)]
struct Issued {
    secret: String,
    token: String,
    expires: SystemTime,
}

/// How the simulator plays AWS (the `--aws-*` flags), and the credentials
/// it issued.
#[derive(Debug, Clone)]
pub struct AwsSim {
    /// The long-term key pair whose signatures are accepted; without one
    /// (and for keys it did not issue) Bedrock requests are refused.
    pub key: Option<AwsKey>,
    /// The lifetime of the credentials STS and the container route issue.
    pub lifetime: Duration,
    /// Model ids the identity may not invoke (`AccessDeniedException`).
    pub denied: Vec<String>,
    issued: Arc<Mutex<HashMap<String, Issued>>>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    issued: AtomicU64,
    expired: AtomicU64,
    bad_signatures: AtomicU64,
}

impl Default for AwsSim {
    fn default() -> Self {
        AwsSim {
            key: None,
            lifetime: DEFAULT_LIFETIME,
            denied: Vec::new(),
            issued: Arc::default(),
            counts: Arc::default(),
        }
    }
}

impl AwsSim {
    /// Plays AWS with `key` accepted, issued credentials living `lifetime`,
    /// and the `denied` model ids refused.
    pub fn new(key: Option<AwsKey>, lifetime: Duration, denied: Vec<String>) -> AwsSim {
        AwsSim {
            key,
            lifetime,
            denied,
            ..Default::default()
        }
    }
}

/// Why a request's credentials are refused, in Bedrock's error codes.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Unrecognized,
    Expired,
}

impl AwsSim {
    /// The secret of an access key the simulator accepts, checking the
    /// session token that must come with issued keys.
    pub fn secret_of(&self, access_key: &str, token: Option<&str>) -> Result<String, Refusal> {
        if let Some(k) = &self.key {
            if k.id == access_key {
                return Ok(k.secret.clone());
            }
        }
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = issued.get(access_key) else {
            return Err(Refusal::Unrecognized);
        };
        if token != Some(i.token.as_str()) {
            return Err(Refusal::Unrecognized);
        }
        if SystemTime::now() >= i.expires {
            self.counts.expired.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Expired);
        }
        Ok(i.secret.clone())
    }

    /// Notes a request whose signature did not match.
    pub fn bad_signature(&self) {
        self.counts.bad_signatures.fetch_add(1, Ordering::Relaxed);
    }

    /// New temporary credentials: (id, secret, token, expiry).
    fn issue(&self) -> (String, Issued) {
        let mut rng = rand::rng();
        let hex = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String {
            (0..n)
                .map(|_| format!("{:x}", rng.random_range(0..16u8)))
                .collect()
        };
        let id = format!("ASIASIM{}", hex(13, &mut rng).to_uppercase());
        let issued = Issued {
            secret: hex(40, &mut rng),
            token: format!("IQoJsim{}", hex(96, &mut rng)),
            expires: SystemTime::now() + self.lifetime,
        };
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), issued.clone());
        self.counts.issued.fetch_add(1, Ordering::Relaxed);
        (id, issued)
    }

    /// `GET /_sim/aws`: credentials issued, refusals of expired ones and
    /// of wrong signatures.
    pub fn report(&self) -> serde_json::Value {
        json!({
            "issued": self.counts.issued.load(Ordering::Relaxed),
            "expired_refusals": self.counts.expired.load(Ordering::Relaxed),
            "bad_signatures": self.counts.bad_signatures.load(Ordering::Relaxed),
        })
    }
}

fn iso8601(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    r
}

/// STS's error document.
fn sts_error(sim: &Sim, status: StatusCode, code: &str, message: &str) -> Response {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>{}</Message></Error><RequestId>sim-{:016x}</RequestId></ErrorResponse>",
            xml_escape(message),
            sim.next_id()
        ),
    )
}

/// `POST /`: STS `AssumeRoleWithWebIdentity` (form-encoded, unsigned).
pub async fn sts(State(sim): State<Arc<Sim>>, raw: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&raw).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("Action") != "AssumeRoleWithWebIdentity" {
        return sts_error(
            &sim,
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!(
                "Could not find operation {:?}; this simulator plays AssumeRoleWithWebIdentity only",
                get("Action")
            ),
        );
    }
    for field in ["RoleArn", "RoleSessionName", "WebIdentityToken"] {
        if get(field).is_empty() {
            return sts_error(
                &sim,
                StatusCode::BAD_REQUEST,
                "ValidationError",
                &format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"),
            );
        }
    }
    let role = get("RoleArn").to_string();
    let session = get("RoleSessionName").to_string();
    let (id, c) = sim.config.aws.issue();
    let body = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult>\
         <SubjectFromWebIdentityToken>system:serviceaccount:moralsweep:worker</SubjectFromWebIdentityToken>\
         <Audience>sts.amazonaws.com</Audience>\
         <AssumedRoleUser><Arn>{}/{}</Arn><AssumedRoleId>AROASIM:{}</AssumedRoleId></AssumedRoleUser>\
         <Credentials><SessionToken>{}</SessionToken><SecretAccessKey>{}</SecretAccessKey>\
         <Expiration>{}</Expiration><AccessKeyId>{id}</AccessKeyId></Credentials>\
         <Provider>oidc.eks.sim.amazonaws.com</Provider>\
         </AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>sim-{:016x}</RequestId></ResponseMetadata>\
         </AssumeRoleWithWebIdentityResponse>",
        xml_escape(&role.replace(":role/", ":assumed-role/")),
        xml_escape(&session),
        xml_escape(&session),
        c.token,
        c.secret,
        iso8601(c.expires),
        sim.next_id()
    );
    xml(StatusCode::OK, body)
}

/// `GET /_aws/container-credentials`: the container credentials endpoint
/// (a non-empty `Authorization` token required, as the agent does).
pub async fn container(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if token.trim().is_empty() {
        return crate::wire::json_response(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            &json!({"Code": "AccessDenied", "Message": "the Authorization header with the pod's token is required"}),
        );
    }
    let (id, c) = sim.config.aws.issue();
    crate::wire::json_response(
        StatusCode::OK,
        HeaderMap::new(),
        &json!({
            "AccessKeyId": id,
            "SecretAccessKey": c.secret,
            "Token": c.token,
            "AccountId": "123456789012",
            "Expiration": iso8601(c.expires),
        }),
    )
}

/// `GET /_sim/aws`.
pub async fn report(State(sim): State<Arc<Sim>>) -> Response {
    crate::wire::json_response(StatusCode::OK, HeaderMap::new(), &sim.config.aws.report())
}
