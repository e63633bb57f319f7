//! Who may read the ops server's endpoints, and from where.
//!
//! - With a token, `/metrics` (and the live view's data) answer only to
//!   `Authorization: Bearer <token>`; the scheme is matched without regard
//!   to case, as RFC 7235 has it (`bearer`, `BEARER`). `/healthz` and
//!   `/readyz` stay open: probes carry no token and say nothing of sweeps.
//! - Without a token, a request must name this server as its `Host`:
//!   `localhost`, an IP literal or the listen address. A web page of another
//!   site that rebinds its own name to 127.0.0.1 (DNS rebinding) sends that
//!   name as `Host`, and is refused instead of reading the sweeps.
//! - Binding a public (not loopback) address without a token deserves a
//!   warning: anyone who reaches the port reads every sweep and model name.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The bearer credentials of an `Authorization` value, if it uses that
/// scheme (in any case).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for (i, x) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ x;
    }
    diff == 0
}

/// Whether `headers` carry `token` as bearer credentials.
pub fn has_token(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The 401 answer: what is missing and where it comes from. `whose` names
/// the token (`the coordinator's token`, `the token of --ui-token-file`).
pub fn refused(whose: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("a token is required: send Authorization: Bearer <{whose}>\n"),
    )
        .into_response()
}

/// The host part of a `Host` value (`[::1]:80` -> `::1`, `a:80` -> `a`).
fn host_part(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether a request for `host` is one this server answers without a
/// token: `localhost`, an IP literal, or the host it was told to listen on.
pub fn host_allowed(host: &str, listen_host: &str) -> bool {
    let h = host_part(host);
    let h = h.strip_suffix('.').unwrap_or(h);
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>().is_ok()
        || (!listen_host.is_empty() && h.eq_ignore_ascii_case(host_part(listen_host)))
}

/// The warning an ops server bound to `addr` without a token deserves, if
/// any (a loopback address needs none).
pub fn exposure_warning(addr: SocketAddr, flag: &str) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "{addr} is not a loopback address and no token is set: anyone who can reach the port reads every sweep and model name there; bind 127.0.0.1, or set a token ({flag})"
        )
    })
}

/// The access rules of one ops server.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The token `/metrics` and the live data require, if any.
    pub token: Option<Arc<str>>,
    /// What the token is called in a refusal.
    pub whose: Arc<str>,
    /// The address given to listen on, whose host is accepted as `Host`.
    pub listen: Arc<str>,
}

/// Where the metrics are served.
pub const METRICS_PATH: &str = "/metrics";
/// Liveness.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness.
pub const READYZ_PATH: &str = "/readyz";

/// The paths anyone may read (probes).
fn open_path(path: &str) -> bool {
    matches!(path, HEALTHZ_PATH | READYZ_PATH)
}

/// The middleware applying [`Access`] to every route of the ops server.
pub async fn guard(State(a): State<Access>, req: Request, next: Next) -> Response {
    match &a.token {
        Some(token) => {
            if req.uri().path() == METRICS_PATH && !has_token(req.headers(), token) {
                return refused(&a.whose);
            }
        }
        None => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| req.uri().host())
                .unwrap_or("");
            if !open_path(req.uri().path()) && !host_allowed(host, &a.listen) {
                return (
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "this server answers requests for localhost, an IP address or {} only, not for {:?} (a page of another site may be trying to read it); open it by address, or set a token to serve other names\n",
                        a.listen,
                        host.chars().take(80).collect::<String>()
                    ),
                )
                    .into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn hosts_without_a_token() {
        for ok in [
            "localhost",
            "localhost:9464",
            "127.0.0.1:9464",
            "[::1]:80",
            "10.1.2.3",
            "LOCALHOST.",
        ] {
            assert!(host_allowed(ok, "127.0.0.1:9464"), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9464",
            "",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(bad, "127.0.0.1:9464"), "{bad}");
        }
        assert!(host_allowed("ops.internal:9464", "ops.internal:9464"));
    }

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
