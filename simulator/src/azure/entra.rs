//! Microsoft Entra ID as the simulator plays it: the token route
//! `POST /{tenant}/oauth2/v2.0/token` (client credentials with a
//! `client_secret` or a federated `client_assertion`, as AKS Workload
//! Identity sends it) and the managed-identity route of the instance
//! metadata service `GET /metadata/identity/oauth2/token`. Both issue
//! bearer tokens for Azure OpenAI that end after
//! [`AzureSim::token_lifetime`]; the data-plane routes check them
//! ([`check_bearer`]).
//!
//! A token is `simaz.<payload>.<mac>`: the payload (base64url JSON with the
//! client id and the end in Unix milliseconds) and a keyed hash under a
//! secret drawn when the process starts, so a token is checked without
//! being stored, and no other process's token passes.
//!
//! The federated assertion is a JWT whose payload must name the audience
//! `api://AzureADTokenExchange`, a subject, and an `exp` still ahead (the
//! signature is not checked: the simulator knows no cluster's keys).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::AzureSim;
use crate::engine::Sim;
use crate::wire::json_response;
use moralsweep_common::hash::fnv1a_parts;

/// The scope an Azure OpenAI token is asked for.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// The audience of a federated (workload identity) assertion.
pub const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The client id of tokens the metadata service issues to a system-assigned identity.
pub const SYSTEM_ASSIGNED: &str = "system-assigned-identity";

/// The secret tokens are keyed with, drawn once per process.
fn process_secret() -> u64 {
    static S: OnceLock<u64> = OnceLock::new();
    *S.get_or_init(rand::random::<u64>)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn mac(payload: &str) -> String {
    format!(
        "{:016x}",
        fnv1a_parts(&[&process_secret().to_le_bytes(), payload.as_bytes()])
    )
}

/// A new token for `client` that ends after `lifetime`.
pub fn issue(client: &str, lifetime: Duration) -> String {
    let payload = URL_SAFE_NO_PAD
        .encode(json!({"cid": client, "exp": now_ms() + lifetime.as_millis() as i64}).to_string());
    let m = mac(&payload);
    format!("simaz.{payload}.{m}")
}

/// What a bearer token presented to a data-plane route is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    /// Issued here, still valid, to this client.
    Valid(String),
    /// Issued here, but ended.
    Expired,
    /// Not a token of this process.
    Unknown,
}

/// Checks a bearer token.
pub fn check_bearer(token: &str) -> Bearer {
    let Some(rest) = token.strip_prefix("simaz.") else {
        return Bearer::Unknown;
    };
    let Some((payload, m)) = rest.rsplit_once('.') else {
        return Bearer::Unknown;
    };
    if mac(payload) != m {
        return Bearer::Unknown;
    }
    let Some(v) = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return Bearer::Unknown;
    };
    let exp = v.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= now_ms() {
        return Bearer::Expired;
    }
    Bearer::Valid(
        v.get("cid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

/// An Entra ID error answer (`error`, `error_description` with its AADSTS
/// code, `error_codes`).
fn entra_error(sim: &Sim, status: u16, error: &str, code: u32, description: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: sim{:016x}", sim.next_id()),
        "error_codes": [code],
        "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": format!("{:032x}", sim.next_id()),
        "correlation_id": format!("{:032x}", sim.next_id()),
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        HeaderMap::new(),
        &body,
    )
}

/// Tokens issued since the process started (`GET /_sim/azure`).
static ISSUED: AtomicU64 = AtomicU64::new(0);

/// How many tokens the token routes issued.
pub fn issued() -> u64 {
    ISSUED.load(Ordering::Relaxed)
}

fn token_answer(client: &str, az: &AzureSim) -> Response {
    let secs = az.token_lifetime.as_secs_f64().ceil() as u64;
    ISSUED.fetch_add(1, Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        HeaderMap::new(),
        &json!({
            "token_type": "Bearer",
            "expires_in": secs,
            "ext_expires_in": secs,
            "access_token": issue(client, az.token_lifetime),
        }),
    )
}

/// The payload of a JWT, if it is one.
fn jwt_payload(jwt: &str) -> Option<Value> {
    let mut parts = jwt.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks a federated assertion; the AADSTS error if it fails.
fn check_assertion(jwt: &str) -> Result<(), (u32, String)> {
    let Some(p) = jwt_payload(jwt) else {
        return Err((50027, "JWT token is invalid or malformed.".into()));
    };
    let aud_ok = match p.get("aud") {
        Some(Value::String(a)) => a == EXCHANGE_AUDIENCE,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(EXCHANGE_AUDIENCE)),
        _ => false,
    };
    if !aud_ok {
        return Err((
            700212,
            format!("No matching federated identity record found for presented assertion audience; the audience must be '{EXCHANGE_AUDIENCE}'."),
        ));
    }
    if p.get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err((
            70021,
            "No matching federated identity record found for presented assertion: it names no subject.".into(),
        ));
    }
    let exp = p.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp * 1000 <= now_ms() {
        return Err((
            700024,
            format!("Client assertion is not within its valid time range. Current time: {}, assertion valid to: {}.",
                chrono::Utc::now().to_rfc3339(),
                chrono::DateTime::from_timestamp(exp, 0).map(|t| t.to_rfc3339()).unwrap_or_default()),
        ));
    }
    Ok(())
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(sim): State<Arc<Sim>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let az = &sim.config.azure;
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form: HashMap<String, String> = match (is_form, serde_urlencoded_pairs(&body)) {
        (true, Some(f)) => f,
        _ => {
            return entra_error(
                &sim,
                400,
                "invalid_request",
                900144,
                "The request body must be application/x-www-form-urlencoded.",
            )
        }
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if let Some(t) = &az.tenant {
        if &tenant != t {
            return entra_error(
                &sim,
                400,
                "invalid_request",
                90002,
                &format!("Tenant '{tenant}' not found."),
            );
        }
    }
    if get("grant_type") != "client_credentials" {
        return entra_error(
            &sim,
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type; this route serves client_credentials.",
        );
    }
    if get("scope") != SCOPE {
        return entra_error(
            &sim,
            400,
            "invalid_scope",
            70011,
            &format!("The provided value for the input parameter 'scope' is not valid; Azure OpenAI takes '{SCOPE}'."),
        );
    }
    let client = get("client_id");
    if client.is_empty() || az.client_id.as_deref().is_some_and(|c| c != client) {
        return entra_error(
            &sim,
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client}' was not found in the directory '{tenant}'."
            ),
        );
    }
    if let Some(secret) = form.get("client_secret") {
        if az.client_secret.as_deref().is_some_and(|s| s != secret) {
            return entra_error(
                &sim,
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            );
        }
        return token_answer(client, az);
    }
    if get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return match check_assertion(get("client_assertion")) {
            Ok(()) => token_answer(client, az),
            Err((code, msg)) => entra_error(&sim, 400, "invalid_client", code, &msg),
        };
    }
    entra_error(
        &sim,
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

/// Form fields of a body (`None` if it is not a form).
fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_bytes(body).ok()
}

/// `GET /metadata/identity/oauth2/token` (the instance metadata service).
pub async fn imds(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    UrlQuery(q): UrlQuery<HashMap<String, String>>,
) -> Response {
    let az = &sim.config.azure;
    let bad = |msg: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            &json!({"error": "invalid_request", "error_description": msg}),
        )
    };
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return bad("Required metadata header not specified");
    }
    if q.get("resource").map(|r| r.trim_end_matches('/'))
        != Some("https://cognitiveservices.azure.com")
    {
        return bad("Azure OpenAI tokens are for resource https://cognitiveservices.azure.com");
    }
    let client = q
        .get("client_id")
        .cloned()
        .unwrap_or_else(|| SYSTEM_ASSIGNED.to_string());
    if az.client_id.as_deref().is_some_and(|c| c != client) {
        return bad("Identity not found");
    }
    let secs = az.token_lifetime.as_secs_f64().ceil() as u64;
    ISSUED.fetch_add(1, Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        HeaderMap::new(),
        &json!({
            "access_token": issue(&client, az.token_lifetime),
            "client_id": client,
            "expires_in": secs.to_string(),
            "expires_on": (chrono::Utc::now().timestamp() as u64 + secs).to_string(),
            "ext_expires_in": secs.to_string(),
            "not_before": chrono::Utc::now().timestamp().to_string(),
            "resource": "https://cognitiveservices.azure.com",
            "token_type": "Bearer",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_check_and_end() {
        let t = issue("c1", Duration::from_secs(60));
        assert_eq!(check_bearer(&t), Bearer::Valid("c1".into()));
        let mut forged = t.clone();
        forged.push('0');
        assert_eq!(check_bearer(&forged), Bearer::Unknown);
        assert_eq!(check_bearer("sk-other"), Bearer::Unknown);
        let old = issue("c1", Duration::ZERO);
        assert_eq!(check_bearer(&old), Bearer::Expired);
    }

    #[test]
    fn assertions() {
        let jwt = |p: Value| {
            format!(
                "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
                URL_SAFE_NO_PAD.encode(p.to_string())
            )
        };
        let later = chrono::Utc::now().timestamp() + 600;
        assert!(check_assertion(&jwt(json!({"aud": [EXCHANGE_AUDIENCE], "sub": "system:serviceaccount:ms:worker", "exp": later}))).is_ok());
        assert_eq!(
            check_assertion(&jwt(
                json!({"aud": EXCHANGE_AUDIENCE, "sub": "s", "exp": 1000})
            ))
            .unwrap_err()
            .0,
            700024
        );
        assert_eq!(
            check_assertion(&jwt(json!({"aud": "other", "sub": "s", "exp": later})))
                .unwrap_err()
                .0,
            700212
        );
        assert_eq!(check_assertion("not a jwt").unwrap_err().0, 50027);
    }
}
