//! Fetching public documents (OpenID discovery, JWKS) behind one narrow trait, so the key
//! cache can be unit-tested with an in-memory fake and run against the real client.

use super::BoxFuture;
use std::time::Duration;

/// The largest discovery or JWKS document accepted (real ones are a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A fetched document and how long its server lets us cache it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub body: Vec<u8>,
    /// From `Cache-Control: max-age=N`; `Some(0)` for `no-cache`/`no-store`; `None` when absent.
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}; check the URL and that the identity provider is up")]
    Status { url: String, status: u16 },
    #[error("{url} answered more than {MAX_DOCUMENT_BYTES} bytes; this is not a JWKS or discovery document")]
    TooLarge { url: String },
    #[error("{url} answered an unusable document: {reason}")]
    Malformed { url: String, reason: String },
    #[error("{url} is not allowed: {reason}")]
    Insecure { url: String, reason: &'static str },
    /// The attempt's overall deadline (discovery and JWKS together) passed.
    #[error("{url} did not answer within the {budget_ms} ms one key fetch may take (discovery and JWKS together); check that the identity provider is up and reachable from the function")]
    Timeout { url: String, budget_ms: u64 },
}

impl FetchError {
    /// The kind of failure, for the `UpstreamFailures` metric.
    pub fn failure(&self) -> crate::metrics::Failure {
        use crate::metrics::Failure;
        match self {
            FetchError::Timeout { .. } => Failure::Timeout,
            FetchError::Unreachable { reason, .. } if reason.starts_with("timed out") => Failure::Timeout,
            FetchError::Unreachable { .. } => Failure::Unreachable,
            FetchError::Status { status, .. } => Failure::of_status(*status),
            FetchError::TooLarge { .. } | FetchError::Malformed { .. } | FetchError::Insecure { .. } => {
                Failure::Rejected
            }
        }
    }
}

/// `GET url`, answering the body of a 2xx response.
pub trait HttpGet: Send + Sync {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Document, FetchError>>;
}

/// The real fetcher over the project's one outbound client ([`crate::http_client`]).
#[derive(Debug, Clone)]
pub struct ReqwestGet {
    client: reqwest::Client,
}

impl ReqwestGet {
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

impl HttpGet for ReqwestGet {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Document, FetchError>> {
        Box::pin(async move {
            let unreachable = |e: reqwest::Error| FetchError::Unreachable {
                url: url.to_owned(),
                reason: describe(&e),
            };
            let mut response = crate::http_client::send_idempotent(|| {
                self.client.get(url).header(reqwest::header::ACCEPT, "application/json")
            })
            .await
            .map_err(unreachable)?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status,
                });
            }
            let max_age = response
                .headers()
                .get_all(reqwest::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(cache_control_max_age);
            if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
                return Err(FetchError::TooLarge { url: url.to_owned() });
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(FetchError::TooLarge { url: url.to_owned() });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Document { body, max_age })
        })
    }
}

/// A reqwest error with its causes (reqwest's own Display hides the interesting part).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The lifetime a `Cache-Control` header value allows: `max-age=N`, or zero for
/// `no-cache`/`no-store`. `None` when it says neither.
pub fn cache_control_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            if let Ok(seconds) = arg.trim().trim_matches('"').parse::<u64>() {
                max_age = Some(Duration::from_secs(seconds));
            }
        }
    }
    max_age
}

/// Key material must come over TLS; plain `http://` only to a loopback host (local tests).
pub fn check_secure_url(url: &str) -> Result<(), &'static str> {
    if let Some(rest) = url.strip_prefix("https://") {
        return if authority(rest).is_empty() {
            Err("the URL has no host")
        } else {
            Ok(())
        };
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let authority = authority(rest);
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.split(':').next().unwrap_or(""),
        };
        return if matches!(host, "127.0.0.1" | "localhost" | "::1") {
            Ok(())
        } else {
            Err("signing keys must be fetched over https:// (plain http:// is allowed only for 127.0.0.1/localhost)")
        };
    }
    Err("expected an https:// URL")
}

fn authority(after_scheme: &str) -> &str {
    // Userinfo (`user@host`) stays part of the host, so it never passes the loopback check.
    let end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    &after_scheme[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_from_cache_control() {
        assert_eq!(
            cache_control_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            cache_control_max_age("max-age=15, stale-while-revalidate=15"),
            Some(Duration::from_secs(15))
        );
        assert_eq!(cache_control_max_age("MAX-AGE = 20"), Some(Duration::from_secs(20)));
        assert_eq!(cache_control_max_age("no-cache"), Some(Duration::ZERO));
        assert_eq!(
            cache_control_max_age("private, no-store, max-age=60"),
            Some(Duration::ZERO)
        );
        assert_eq!(cache_control_max_age("public"), None);
        assert_eq!(cache_control_max_age("max-age=soon"), None);
    }

    #[test]
    fn key_urls_must_be_https_or_loopback() {
        assert!(check_secure_url("https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json").is_ok());
        assert!(check_secure_url("http://127.0.0.1:8080/jwks.json").is_ok());
        assert!(check_secure_url("http://localhost/jwks.json").is_ok());
        assert!(check_secure_url("http://[::1]:9/jwks.json").is_ok());
        assert!(check_secure_url("http://example.com/jwks.json").is_err());
        assert!(check_secure_url("http://127.0.0.1.evil.example/jwks.json").is_err());
        assert!(check_secure_url("http://localhost@evil.example/jwks.json").is_err());
        assert!(check_secure_url("ftp://example.com/jwks.json").is_err());
        assert!(check_secure_url("https:///jwks.json").is_err());
    }
}
