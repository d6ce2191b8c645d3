//! The one outbound HTTP client (JWKS, OpenID discovery, Ably REST): rustls over aws-lc-rs,
//! the crypto stack already linked for JWTs; short timeouts, because a Lambda has seconds
//! and the SDK calling us gives up after 10 s.
//!
//! Lambda freezes containers between invocations: a pooled keep-alive connection may be
//! dead when the container thaws. Idle connections are dropped after
//! [`POOL_IDLE_TIMEOUT`], and [`send_idempotent`] retries once on a connection error (the
//! Ably client has its own attempts, with fallback hosts: [`crate::ably_rest::HttpAbly`]).
//!
//! Server certificates are verified against the operating system's CA certificates
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them); without any, [`build`] fails with a
//! [`ClientBuildError`] saying so.

use std::time::Duration;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTPS client could not be built: almost always because no CA certificates were found
/// (TLS is verified against the operating system's trust store). The message carries the
/// cause and what to do.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTPS client: {0}. Server certificates are verified against the operating system's CA certificates: install them in the function's image (the `ca-certificates` package; Lambda's provided.al2023 runtime has them), or set SSL_CERT_FILE to a PEM bundle")]
pub struct ClientBuildError(String);

impl ClientBuildError {
    /// The cause, as reqwest and rustls describe it (e.g. "No CA certificates were loaded
    /// from the system").
    pub fn cause(&self) -> &str {
        &self.0
    }
}

/// Build the per-container client. Call once, at init.
pub fn build() -> Result<reqwest::Client, ClientBuildError> {
    build_with(CONNECT_TIMEOUT, TOTAL_TIMEOUT)
}

/// A client whose every request is bounded by `total` (connecting by `connect`).
pub fn build_with(connect: Duration, total: Duration) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(4)
        .tcp_keepalive(Duration::from_secs(15))
        .user_agent(concat!("ably-token-lambda/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientBuildError(error_chain(&e)))
}

/// An error with its causes: reqwest says only "builder error"; the reason (e.g. "No CA
/// certificates were loaded from the system") sits in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Send a request built by `make`, retrying once when the connection failed before any
/// answer (a stale keep-alive socket). Timeouts are not retried: the budget is spent.
pub async fn send_idempotent<F>(make: F) -> Result<reqwest::Response, reqwest::Error>
where
    F: Fn() -> reqwest::RequestBuilder,
{
    match make().send().await {
        Err(e) if e.is_connect() || (e.is_request() && !e.is_timeout()) => make().send().await,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_error_says_the_https_client_failed_with_the_cause_and_what_to_do() {
        let e = ClientBuildError("builder error: No CA certificates were loaded from the system".into());
        let text = e.to_string();
        assert!(
            text.starts_with("cannot build the HTTPS client: builder error: No CA certificates"),
            "{text}"
        );
        assert!(
            text.contains("ca-certificates") && text.contains("SSL_CERT_FILE"),
            "{text}"
        );
        assert_eq!(
            e.cause(),
            "builder error: No CA certificates were loaded from the system"
        );
        let config = crate::config::ConfigError::HttpClient {
            needed_for: "calling Ably's REST API",
            source: e,
        }
        .to_string();
        assert!(
            config.contains("HTTPS client") && config.contains("calling Ably's REST API"),
            "{config}"
        );
        assert!(
            !config.contains("ABLY_REST_URL") && !config.contains("is invalid"),
            "{config}"
        );
    }

    #[test]
    fn error_chain_keeps_the_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("builder error")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("No CA certificates were loaded from the system"));
        assert_eq!(
            error_chain(&e),
            "builder error: No CA certificates were loaded from the system"
        );
    }
}
