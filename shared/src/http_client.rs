//! The one outbound HTTP client (JWKS, OpenID discovery, Ably REST): rustls over aws-lc-rs,
//! the crypto stack already linked for JWTs; short timeouts, because a Lambda has seconds
//! and the SDK calling us gives up after 10 s.
//!
//! Lambda freezes containers between invocations: a pooled keep-alive connection may be
//! dead when the container thaws. Idle connections are dropped after
//! [`POOL_IDLE_TIMEOUT`], and [`send_idempotent`] retries once on a connection error.

use std::time::Duration;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(String);

/// Build the per-container client. Call once, at init.
pub fn build() -> Result<reqwest::Client, ClientBuildError> {
    build_with(CONNECT_TIMEOUT, TOTAL_TIMEOUT)
}

pub fn build_with(connect: Duration, total: Duration) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(4)
        .tcp_keepalive(Duration::from_secs(15))
        .user_agent(concat!("ably-token-lambda/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientBuildError(e.to_string()))
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
