//! The shared token that workers and clients present to the coordinator
//! (`authorization: Bearer <token>`). It comes from the environment
//! (`MORALSWEEP_TOKEN`) or a file (a mounted secret), never from a spec, and
//! is never logged.

use std::path::Path;

use tonic::{Request, Status};

/// The environment variable holding the token.
pub const TOKEN_ENV: &str = "MORALSWEEP_TOKEN";

/// Why no token could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the token file {0} is empty; put the shared token in it")]
    EmptyFile(String),
    #[error("no token: set {TOKEN_ENV} or pass --token-file (workers and clients must present the coordinator's token)")]
    Missing,
}

/// Loads the token from `file` if given, else from `MORALSWEEP_TOKEN`.
pub fn load_token(file: Option<&Path>) -> Result<String, TokenError> {
    if let Some(path) = file {
        // A token file is a small regular file: a FIFO, a device (/dev/zero)
        // or a huge file is refused before anything blocks or streams.
        let text = moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::SPEC_LIMIT)
            .map_err(|error| TokenError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let t = text.trim().to_string();
        if t.is_empty() {
            return Err(TokenError::EmptyFile(path.display().to_string()));
        }
        return Ok(t);
    }
    match std::env::var(TOKEN_ENV) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(TokenError::Missing),
    }
}

/// Tokens shorter than this are accepted with a warning: a shared secret of a
/// few characters can be guessed by anyone who reaches the port.
pub const MIN_TOKEN_LEN: usize = 16;

/// The warning a short token deserves (never showing the token), if any.
pub fn short_token_warning(token: &str) -> Option<String> {
    let n = token.chars().count();
    (n < MIN_TOKEN_LEN).then(|| {
        format!(
            "the shared token is only {n} characters long; anyone who can reach the coordinator could guess it. \
             Use at least {MIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 32`)"
        )
    })
}

/// Equality that takes the same time wherever the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses every call without the right bearer token.
#[derive(Clone)]
pub struct Auth {
    expected: Option<std::sync::Arc<str>>,
}

impl Auth {
    /// Checks calls against `token`; `None` accepts every call (only with
    /// an explicit `--no-auth`).
    pub fn new(token: Option<String>) -> Self {
        Auth {
            expected: token.map(|t| t.into()),
        }
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(req);
        };
        let Some(value) = req.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing token: send `authorization: Bearer <token>` (set MORALSWEEP_TOKEN or --token-file)",
            ));
        };
        // The scheme in any case (RFC 7235: `bearer` is `Bearer`).
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes())
            .unwrap_or(b"");
        if same(given, expected.as_bytes()) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "wrong token: the token does not match the coordinator's",
            ))
        }
    }
}

/// Adds the bearer token to every outgoing call.
#[derive(Clone)]
pub struct Bearer {
    value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Self, TokenError> {
        let value = match token {
            None => None,
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| TokenError::Missing)?,
            ),
        };
        Ok(Bearer { value })
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn short_tokens_are_flagged_without_being_shown() {
        let w = short_token_warning("x").unwrap();
        assert!(w.contains("1 characters") && w.contains("16"), "{w}");
        assert!(short_token_warning("abcdefghijklmnop").is_none());
        assert!(short_token_warning("abcdefghijklmno").is_some());
    }

    #[test]
    fn only_the_right_token_passes() {
        let mut auth = Auth::new(Some("s3cret".into()));
        assert_eq!(
            auth.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut with = |t: &str| {
            let r = Bearer::new(Some(t))
                .unwrap()
                .call(Request::new(()))
                .unwrap();
            auth.call(r)
        };
        assert!(with("s3cret").is_ok());
        let e = with("wrong").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(!e.message().contains("s3cret"));
    }
}
