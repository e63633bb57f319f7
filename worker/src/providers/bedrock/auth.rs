//! Bedrock's credentials and SigV4 signing.
//!
//! Credentials come from the AWS SDK's own default chain (`aws-config`), in
//! its order: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`;
//! `AWS_PROFILE` with the shared credentials and config files; web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, EKS IRSA) through STS
//! `AssumeRoleWithWebIdentity`, whose endpoint `AWS_ENDPOINT_URL_STS`
//! overrides; container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI` +
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, EKS Pod Identity); instance
//! metadata (IMDSv2, `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
//!
//! The chain itself caches nothing, so [`AwsAuth`] keeps the current
//! credentials and fetches new ones ahead of their expiry: once a third of
//! their lifetime (at most five minutes) is left, one task refreshes them in
//! the background while requests go on signing with the current ones; only
//! expired (or never fetched) credentials make a request wait. Every secret
//! (secret key, session token) is registered with the log redaction as soon
//! as it is seen; `Debug` of this type shows none.
//!
//! Requests are signed with `aws-sigv4` (service `bedrock`, the model's
//! region): `host`, `content-type`, `x-amz-date` and, for temporary
//! credentials, `x-amz-security-token`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_config::Region;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Mutex, OnceCell, RwLock};

use crate::providers::http::Secret;
use crate::providers::ProviderError;

/// The SigV4 signing name of Bedrock Runtime (its service model's `signingName`).
pub(super) const SIGNING_NAME: &str = "bedrock";

/// The longest credentials are refreshed ahead of their expiry.
const MAX_REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// Where the chain looks, for messages.
pub(super) const CHAIN: &str = "the AWS credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, \
     AWS_PROFILE with ~/.aws/credentials and ~/.aws/config, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, \
     AWS_CONTAINER_CREDENTIALS_FULL_URI, instance metadata)";

/// Credentials as fetched, with when they were.
#[derive(Clone)]
struct Held {
    creds: Credentials,
    fetched: SystemTime,
}

impl Held {
    /// Whether they can be used for a request signed now.
    fn valid(&self, now: SystemTime) -> bool {
        self.creds.expiry().is_none_or(|e| e > now)
    }

    /// Whether it is time to fetch the next ones (still valid, but within
    /// the last third of their lifetime, at most [`MAX_REFRESH_AHEAD`]).
    fn due(&self, now: SystemTime) -> bool {
        let Some(expiry) = self.creds.expiry() else {
            return false;
        };
        let lifetime = expiry
            .duration_since(self.fetched)
            .unwrap_or(Duration::ZERO);
        let ahead = (lifetime / 3).min(MAX_REFRESH_AHEAD);
        expiry.duration_since(now).unwrap_or(Duration::ZERO) <= ahead
    }
}

/// One model's credentials (from the AWS chain) and signer.
pub(super) struct AwsAuth {
    region: String,
    model_key: String,
    chain: OnceCell<SharedCredentialsProvider>,
    current: RwLock<Option<Held>>,
    /// Held by whoever is fetching, so one fetch runs at a time.
    fetching: Mutex<()>,
}

impl std::fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsAuth")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What a signed request carries.
pub(super) struct Signed {
    pub headers: HeaderMap,
    /// Whether the credentials used can be replaced by fetching again
    /// (temporary ones with an expiry); static keys cannot.
    pub refreshable: bool,
}

impl AwsAuth {
    pub(super) fn new(model_key: &str, region: &str) -> Arc<AwsAuth> {
        Arc::new(AwsAuth {
            region: region.to_string(),
            model_key: model_key.to_string(),
            chain: OnceCell::new(),
            current: RwLock::new(None),
            fetching: Mutex::new(()),
        })
    }

    async fn chain(&self) -> &SharedCredentialsProvider {
        self.chain
            .get_or_init(|| async {
                // rustls on ring: the chain's own HTTP calls (STS, the
                // container endpoint, IMDS) need no C toolchain.
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let conf = ProviderConfig::without_region()
                    .with_region(Some(Region::new(self.region.clone())))
                    .with_http_client(http);
                let chain = DefaultCredentialsChain::builder()
                    .region(Region::new(self.region.clone()))
                    .configure(conf)
                    .build()
                    .await;
                SharedCredentialsProvider::new(chain)
            })
            .await
    }

    /// Fetches credentials from the chain (one fetch at a time) unless
    /// another task just did.
    async fn fetch(self: &Arc<Self>, seen: Option<SystemTime>) -> Result<Held, ProviderError> {
        let _one = self.fetching.lock().await;
        if let Some(h) = self.current.read().await.as_ref() {
            // Someone fetched while we waited for the lock.
            if Some(h.fetched) != seen && h.valid(SystemTime::now()) {
                return Ok(h.clone());
            }
        }
        let creds = self
            .chain()
            .await
            .provide_credentials()
            .await
            .map_err(|e| {
                ProviderError::Fatal(format!(
                    "model {:?}: no AWS credentials for Amazon Bedrock from {CHAIN}: {}; \
                     set one of them (on EKS: annotate the worker's ServiceAccount with eks.amazonaws.com/role-arn)",
                    self.model_key,
                    error_chain(&e)
                ))
            })?;
        // Kept out of every log line and exported span from now on.
        let _ = Secret::new(creds.secret_access_key().to_string());
        if let Some(t) = creds.session_token() {
            let _ = Secret::new(t.to_string());
        }
        let held = Held {
            creds,
            fetched: SystemTime::now(),
        };
        *self.current.write().await = Some(held.clone());
        Ok(held)
    }

    /// The credentials to sign with now: the current ones while valid
    /// (refreshing them in the background once due), else fresh ones.
    async fn credentials(self: &Arc<Self>) -> Result<Held, ProviderError> {
        let now = SystemTime::now();
        let current = self.current.read().await.clone();
        match current {
            Some(h) if h.valid(now) => {
                if h.due(now) {
                    // No fetch under way (the guard is dropped at once).
                    if self.fetching.try_lock().is_ok() {
                        let me = self.clone();
                        let seen = Some(h.fetched);
                        tokio::spawn(async move {
                            if let Err(e) = me.fetch(seen).await {
                                tracing::warn!(error = %e, "refreshing AWS credentials failed; retried at the next request");
                            }
                        });
                    }
                }
                Ok(h)
            }
            other => self.fetch(other.map(|h| h.fetched)).await,
        }
    }

    /// Forgets the current credentials, so the next request fetches new
    /// ones (after the service called them expired).
    pub(super) async fn forget(&self) {
        *self.current.write().await = None;
    }

    /// The SigV4 headers of a POST of `body` to `url` with `content_type`.
    pub(super) async fn sign(
        self: &Arc<Self>,
        url: &reqwest::Url,
        content_type: &str,
        body: &[u8],
    ) -> Result<Signed, ProviderError> {
        let held = self.credentials().await?;
        let refreshable = held.creds.expiry().is_some();
        let identity = held.creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| self.sign_error(&e))?
            .into();
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let headers = [("host", host.as_str()), ("content-type", content_type)];
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| self.sign_error(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| self.sign_error(&e))?
            .into_parts();
        let mut out = HeaderMap::new();
        for (name, value) in instructions.headers() {
            let (Ok(n), Ok(mut v)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
            else {
                return Err(ProviderError::Fatal(format!(
                    "model {:?}: the SigV4 header {name} is not a valid HTTP header",
                    self.model_key
                )));
            };
            if n == "authorization" || n == "x-amz-security-token" {
                v.set_sensitive(true);
            }
            out.insert(n, v);
        }
        Ok(Signed {
            headers: out,
            refreshable,
        })
    }

    fn sign_error(&self, e: &dyn std::error::Error) -> ProviderError {
        ProviderError::Fatal(format!(
            "model {:?}: cannot sign the request for Amazon Bedrock: {}",
            self.model_key,
            error_chain(e)
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    moralsweep_telemetry::redact::redact(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(lifetime: Duration, age: Duration) -> (Held, SystemTime) {
        let fetched = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let creds = Credentials::new(
            "AKID",
            "secret",
            Some("tok".into()),
            Some(fetched + lifetime),
            "test",
        );
        (Held { creds, fetched }, fetched + age)
    }

    #[test]
    fn refreshes_in_the_last_third_of_the_lifetime_at_most_five_minutes_ahead() {
        let (h, now) = held(Duration::from_secs(20), Duration::from_secs(10));
        assert!(h.valid(now) && !h.due(now));
        let (h, now) = held(Duration::from_secs(20), Duration::from_secs(14));
        assert!(h.valid(now) && h.due(now));
        let (h, now) = held(Duration::from_secs(20), Duration::from_secs(20));
        assert!(!h.valid(now));
        // An hour's credentials: five minutes ahead, not twenty.
        let (h, now) = held(Duration::from_secs(3600), Duration::from_secs(3000));
        assert!(!h.due(now));
        let (h, now) = held(Duration::from_secs(3600), Duration::from_secs(3301));
        assert!(h.due(now));
        // Static keys never expire and are never due.
        let creds = Credentials::new("AKID", "secret", None, None, "test");
        let h = Held {
            creds,
            fetched: SystemTime::now(),
        };
        assert!(h.valid(SystemTime::now()) && !h.due(SystemTime::now()));
    }
}
