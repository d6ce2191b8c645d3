//! Ably's REST API, behind one narrow trait: exchange a signed TokenRequest for an Ably
//! Token, revoke tokens, read Ably's clock. [`HttpAbly`] is the real client (the one
//! per-container [`crate::http_client`]); tests put a fake Ably server on loopback behind it,
//! or implement the trait in memory.
//!
//! Like Ably's SDKs (REC2, RSC15), [`HttpAbly`] retries a call on Ably's fallback hosts when
//! the endpoint is the default one ([`AblyHosts::for_url`]): after a connection failure, a
//! timeout, HTTP 500–504, or a 4xx that carries no Ably error (a CDN's answer, not Ably's);
//! never after an ordinary Ably 4xx. Every call, all attempts included, ends within
//! [`REQUEST_DEADLINE`]. Each `requestToken` attempt sends a freshly signed TokenRequest (a
//! resent nonce is refused with 40105).
//!
//! Ably's answers map onto the caller's contract (see [`AblyError`] and its conversion into
//! [`IssueError`]): Ably 5xx → 502, no answer in time → 504, no connection on any host →
//! 503 with `Retry-After`, Ably's rate limit (429 or 40115) → 503 with `Retry-After`, and any
//! other Ably 4xx → 500 — our request or key is wrong, which is a server-side fault and must
//! never reach the SDK as a 403 (that would stop the client for good). Ably's own code and
//! message go to the log only. (The revoke route answers an Ably 4xx about the admin's own
//! request with 400: see [`crate::revoke`].)

use crate::clock::Clock;
use crate::env::{ConfigError, Env};
use crate::error::{IssueError, UpstreamFault};
use crate::future::BoxFuture;
use crate::key::ApiKey;
use crate::metrics::{self, Dependency};
use crate::token_request::TokenRequest;
use lambda_http::http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER, SERVER};
use lambda_http::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// `ABLY_REST_URL` default: Ably's primary REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://main.realtime.ably.net";
/// Ably's fallback hosts for [`DEFAULT_REST_URL`] (REC2c, RSC15a), tried in random order
/// when it fails. A custom `ABLY_REST_URL` gets none.
pub const DEFAULT_FALLBACK_URLS: [&str; 5] = [
    "https://main.a.fallback.ably-realtime.com",
    "https://main.b.fallback.ably-realtime.com",
    "https://main.c.fallback.ably-realtime.com",
    "https://main.d.fallback.ably-realtime.com",
    "https://main.e.fallback.ably-realtime.com",
];
/// One Ably call, all its attempts (primary, the one stale-connection retry, fallback hosts)
/// included, ends within this: 3 s of the 10 s function timeout stay for verifying the
/// caller, reading the key and answering (the SDK calling us gives up after 10 s too).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(7);
/// One attempt's timeout (connecting: [`crate::http_client::CONNECT_TIMEOUT`], 2 s): Ably
/// answers in well under a second, so a hung host leaves time for two more.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// A fallback host that answered is tried first for this long (RSC15f, Ably's
/// `fallbackRetryTimeout`), so a down primary does not cost every request a timeout.
pub const FALLBACK_RETRY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Ably REST protocol version sent as `X-Ably-Version`.
pub const ABLY_PROTOCOL_VERSION: &str = "6";
/// Ably accepts at most this many targets in one `revokeTokens` call.
pub const MAX_TARGETS_PER_CALL: usize = 100;
/// `Retry-After` when Ably is unreachable or rate limits without saying for how long.
pub const DEFAULT_RETRY_AFTER_SECONDS: u32 = 5;
/// Longest `Retry-After` passed on (Ably's own hint is clamped to this).
pub const MAX_RETRY_AFTER_SECONDS: u32 = 60;
/// Ably's answers are a few hundred bytes; anything far larger is not Ably.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Ably's error code for "rate limit exceeded".
pub const RATE_LIMIT_CODE: u32 = 40115;

/// Ably's answer to `requestToken`: exactly the fields an `authUrl` answers with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDetails {
    pub token: String,
    pub key_name: String,
    pub issued: u64,
    pub expires: u64,
    pub capability: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl fmt::Debug for TokenDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenDetails")
            .field("token", &"[redacted]")
            .field("key_name", &self.key_name)
            .field("issued", &self.issued)
            .field("expires", &self.expires)
            .field("capability", &self.capability)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// The body of one `POST /keys/{keyName}/revokeTokens` (at most [`MAX_TARGETS_PER_CALL`] targets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeRequest {
    /// `clientId:…`, `revocationKey:…`, `channel:…`.
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_reauth_margin: Option<bool>,
}

/// Ably's answer to `revokeTokens`, and (merged over batches) ours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    pub success_count: u64,
    pub failure_count: u64,
    #[serde(default)]
    pub results: Vec<TargetResult>,
}

/// One target's outcome: `{target, issuedBefore, appliesAt}` or `{target, error}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetResult {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applies_at: Option<u64>,
    /// Ably's ErrorInfo for this target, passed through as Ably wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// What went wrong talking to Ably. `Display` is for the log: it carries Ably's code and
/// message, which are never sent to the client as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum AblyError {
    /// No connection (refused, reset, closed before an answer) on any host tried.
    Unreachable(String),
    /// No answer within the attempt's timeout or the call's [`REQUEST_DEADLINE`].
    Timeout(String),
    /// Ably answered 5xx, or something that is not a readable answer.
    BadGateway {
        status: Option<u16>,
        code: Option<u32>,
        message: String,
    },
    /// Ably is rate limiting (HTTP 429 or code 40115).
    RateLimited {
        status: u16,
        code: Option<u32>,
        message: String,
        retry_after_seconds: u32,
    },
    /// Ably refused the request (4xx): our request, key or Ably-side configuration is wrong.
    Rejected {
        status: u16,
        code: Option<u32>,
        message: String,
    },
    /// Nothing was sent: the request could not be prepared (the TokenRequest could not be
    /// signed). Answered to the caller as this error is.
    NotSent(IssueError),
}

impl AblyError {
    /// The kind of failure, for the `UpstreamFailures` metric (`None`: nothing was sent).
    pub fn failure(&self) -> Option<metrics::Failure> {
        Some(match self {
            AblyError::Unreachable(_) => metrics::Failure::Unreachable,
            AblyError::Timeout(_) => metrics::Failure::Timeout,
            AblyError::BadGateway { .. } => metrics::Failure::ServerError,
            AblyError::RateLimited { .. } => metrics::Failure::Throttled,
            AblyError::Rejected { .. } => metrics::Failure::Rejected,
            AblyError::NotSent(_) => return None,
        })
    }

    /// Ably's error code, when it gave one.
    pub fn ably_code(&self) -> Option<u32> {
        match self {
            AblyError::BadGateway { code, .. }
            | AblyError::RateLimited { code, .. }
            | AblyError::Rejected { code, .. } => *code,
            AblyError::Unreachable(_) | AblyError::Timeout(_) | AblyError::NotSent(_) => None,
        }
    }

    /// What the operator should do about a rejection, by Ably's code.
    fn hint(&self) -> &'static str {
        let AblyError::Rejected { code, .. } = self else {
            return "";
        };
        match code {
            Some(40100..=40102) => {
                "; check that the Ably key in ABLY_API_KEY (or its secret) is current and not revoked"
            }
            Some(40104) => "; the function's clock differs from Ably's by minutes: set ABLY_QUERY_TIME=true",
            Some(40105) => "; a nonce was reused (a retried request Ably had already seen): the client may retry",
            Some(40003) => "; the TTL exceeds what the key allows: lower ttlSeconds in the policy",
            Some(40160..=40169) => {
                "; the key lacks the capability or permission for this operation: widen the key in the Ably dashboard or narrow the policy"
            }
            Some(40400) => "; Ably does not know this key or app: check ABLY_API_KEY and ABLY_REST_URL",
            _ => "",
        }
    }
}

impl fmt::Display for AblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |c: &Option<u32>| c.map_or_else(|| "none".to_owned(), |c| c.to_string());
        match self {
            AblyError::Unreachable(e) => write!(f, "Ably could not be reached: {e}"),
            AblyError::NotSent(e) => write!(f, "no request was sent to Ably: {e}"),
            AblyError::Timeout(e) => write!(f, "Ably did not answer in time: {e}"),
            AblyError::BadGateway {
                status,
                code: c,
                message,
            } => match status {
                Some(s) => write!(f, "Ably answered HTTP {s}, code {}: {message}", code(c)),
                None => write!(f, "Ably's answer was unreadable: {message}"),
            },
            AblyError::RateLimited {
                status,
                code: c,
                message,
                retry_after_seconds,
            } => write!(
                f,
                "Ably is rate limiting (HTTP {status}, code {}: {message}); retry after {retry_after_seconds} s",
                code(c)
            ),
            AblyError::Rejected {
                status,
                code: c,
                message,
            } => {
                write!(
                    f,
                    "Ably refused the request: HTTP {status}, code {}: {message}{}",
                    code(c),
                    self.hint()
                )
            }
        }
    }
}

impl std::error::Error for AblyError {}

/// The caller's side of an Ably failure: generic text, the right status and code.
impl From<AblyError> for IssueError {
    fn from(e: AblyError) -> Self {
        match e {
            AblyError::Unreachable(_) => IssueError::Unavailable {
                what: "Ably's REST API (no connection)".into(),
                retry_after_seconds: DEFAULT_RETRY_AFTER_SECONDS,
            },
            AblyError::RateLimited {
                retry_after_seconds, ..
            } => IssueError::Unavailable {
                what: "Ably's token service (rate limited)".into(),
                retry_after_seconds,
            },
            AblyError::Timeout(_) => IssueError::Upstream(UpstreamFault::Timeout(
                "Ably did not answer in time; retry shortly".into(),
            )),
            AblyError::BadGateway { .. } => IssueError::Upstream(UpstreamFault::BadGateway(
                "Ably answered with a server error; retry shortly".into(),
            )),
            AblyError::Rejected { .. } => IssueError::Internal(
                "Ably refused the request this service made on your behalf. This is a server-side fault, not a problem with your credentials; the operator finds Ably's error code in the function's log"
                    .into(),
            ),
            AblyError::NotSent(e) => e,
        }
    }
}

/// Signs a fresh TokenRequest (a new nonce, the current timestamp). [`AblyRest::request_token`]
/// calls it once per attempt: Ably refuses a nonce it has seen (40105), even when its answer
/// to the first attempt was lost.
pub type SignTokenRequest<'a> = dyn Fn() -> Result<TokenRequest, IssueError> + Send + Sync + 'a;

/// Ably's REST API, as much of it as this project uses.
pub trait AblyRest: Send + Sync {
    /// `POST /keys/{keyName}/requestToken` with a TokenRequest from `sign` (no auth header),
    /// signed afresh for every attempt.
    fn request_token<'a>(&'a self, sign: &'a SignTokenRequest<'a>) -> BoxFuture<'a, Result<TokenDetails, AblyError>>;
    /// `POST /keys/{keyName}/revokeTokens`, Basic auth with `key` (≤ 100 targets).
    fn revoke_tokens<'a>(
        &'a self,
        key: &'a ApiKey,
        request: &'a RevokeRequest,
    ) -> BoxFuture<'a, Result<BatchResult, AblyError>>;
    /// `GET /time`: Ably's clock in milliseconds.
    fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>>;
}

/// Where Ably's REST API is: a primary base URL, and the fallback base URLs tried (in random
/// order) when the primary fails. Tests point both at loopback fakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AblyHosts {
    primary: String,
    fallbacks: Vec<String>,
}

impl AblyHosts {
    /// Base URLs such as `https://main.realtime.ably.net` (a trailing `/` is ignored).
    pub fn new<I, S>(primary: &str, fallbacks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        AblyHosts {
            primary: primary.trim_end_matches('/').to_owned(),
            fallbacks: fallbacks
                .into_iter()
                .map(|f| f.as_ref().trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    /// The hosts for an `ABLY_REST_URL`: [`DEFAULT_REST_URL`] with Ably's
    /// [`DEFAULT_FALLBACK_URLS`]; any other URL alone (RSC15g: a custom endpoint gets no
    /// fallbacks).
    pub fn for_url(url: &str) -> Self {
        let url = url.trim_end_matches('/');
        if url.eq_ignore_ascii_case(DEFAULT_REST_URL) {
            AblyHosts::new(DEFAULT_REST_URL, DEFAULT_FALLBACK_URLS)
        } else {
            AblyHosts::new(url, std::iter::empty::<&str>())
        }
    }

    pub fn primary(&self) -> &str {
        &self.primary
    }

    pub fn fallbacks(&self) -> &[String] {
        &self.fallbacks
    }
}

/// The real client: HTTPS to `ABLY_REST_URL` over the per-container [`reqwest::Client`],
/// with Ably's fallback hosts (see the module docs).
///
/// Attempts of one call: the first host (the primary, or the fallback that answered last,
/// RSC15f); once more on the same host if the connection failed before any answer (a
/// keep-alive socket gone stale while the container was frozen); then each remaining host
/// once, fallbacks in random order; all within the deadline. Each attempt is bounded by the
/// client's own timeout ([`ATTEMPT_TIMEOUT`] for the client [`crate::deps::ably_for_route`] builds).
#[derive(Debug, Clone)]
pub struct HttpAbly {
    client: reqwest::Client,
    hosts: AblyHosts,
    deadline: Duration,
    fallback_retry_timeout: Duration,
    /// The fallback (index into `hosts.fallbacks`) that answered last, and when.
    preferred: Arc<Mutex<Option<(usize, Instant)>>>,
}

/// One host of a call's plan: `None` is the primary, `Some(i)` the i-th fallback.
type Host<'a> = (Option<usize>, &'a str);

impl HttpAbly {
    /// `base_url` such as `https://main.realtime.ably.net` (a trailing `/` is ignored), with
    /// the fallbacks [`AblyHosts::for_url`] gives it.
    pub fn new(client: reqwest::Client, base_url: &str) -> Self {
        Self::with_hosts(client, AblyHosts::for_url(base_url))
    }

    /// Exactly these hosts.
    pub fn with_hosts(client: reqwest::Client, hosts: AblyHosts) -> Self {
        HttpAbly {
            client,
            hosts,
            deadline: REQUEST_DEADLINE,
            fallback_retry_timeout: FALLBACK_RETRY_TIMEOUT,
            preferred: Arc::new(Mutex::new(None)),
        }
    }

    /// Every call ends within `deadline` (default [`REQUEST_DEADLINE`]).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// A fallback that answered is tried first for `timeout` (default
    /// [`FALLBACK_RETRY_TIMEOUT`]; zero: always the primary first).
    pub fn with_fallback_retry_timeout(mut self, timeout: Duration) -> Self {
        self.fallback_retry_timeout = timeout;
        self
    }

    /// The primary base URL.
    pub fn base_url(&self) -> &str {
        &self.hosts.primary
    }

    pub fn hosts(&self) -> &AblyHosts {
        &self.hosts
    }

    fn post(&self, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .header("x-ably-version", ABLY_PROTOCOL_VERSION)
            .body(body)
    }

    fn preferred(&self) -> Option<usize> {
        let mut preferred = self.preferred.lock().unwrap_or_else(PoisonError::into_inner);
        match *preferred {
            Some((i, since)) if since.elapsed() < self.fallback_retry_timeout && i < self.hosts.fallbacks.len() => {
                Some(i)
            }
            Some(_) => {
                *preferred = None;
                None
            }
            None => None,
        }
    }

    /// The hosts of one call, in order: the preferred fallback (if any), the primary, the
    /// other fallbacks shuffled.
    fn plan(&self) -> Vec<Host<'_>> {
        let preferred = self.preferred();
        let mut others: Vec<Host<'_>> = self
            .hosts
            .fallbacks
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != preferred)
            .map(|(i, url)| (Some(i), url.as_str()))
            .collect();
        shuffle(&mut others);
        let mut plan = Vec::with_capacity(1 + self.hosts.fallbacks.len());
        if let Some(i) = preferred {
            plan.push((Some(i), self.hosts.fallbacks[i].as_str()));
        }
        plan.push((None, self.hosts.primary.as_str()));
        plan.extend(others);
        plan
    }

    /// Remember (or forget) the fallback that last answered.
    fn answered(&self, host: Option<usize>) {
        let mut preferred = self.preferred.lock().unwrap_or_else(PoisonError::into_inner);
        *preferred = host.map(|i| (i, Instant::now()));
    }

    fn failed(&self, host: Option<usize>) {
        let mut preferred = self.preferred.lock().unwrap_or_else(PoisonError::into_inner);
        if host.is_some() && preferred.map(|(i, _)| i) == host {
            *preferred = None;
        }
    }

    /// One call: `make` builds the request for a base URL (once per attempt), the answer is
    /// read as `T`; see the type's docs for the attempts.
    async fn call<T, F>(&self, operation: &'static str, make: F) -> Result<T, AblyError>
    where
        T: DeserializeOwned,
        F: Fn(&str) -> Result<reqwest::RequestBuilder, AblyError>,
    {
        let started = Instant::now();
        let plan = self.plan();
        let mut last = None;
        let mut retried_stale = false;
        let mut next = 0;
        while let Some(&(index, base)) = plan.get(next) {
            let own = self.deadline.saturating_sub(started.elapsed());
            let remaining = crate::deadline::bounded(own);
            if remaining.is_zero() {
                break;
            }
            let request = make(base)?;
            let failure = match tokio::time::timeout(remaining, attempt::<T>(request)).await {
                Ok(Ok(answer)) => {
                    self.answered(index);
                    return Ok(answer);
                }
                Ok(Err(failure)) => {
                    if let Some(kind) = failure.error.failure() {
                        metrics::upstream_failure(Dependency::Ably, kind);
                    }
                    failure
                }
                Err(_) => {
                    // Cut off by the request's deadline rather than the call's own: this
                    // request's lack of time, not the host's failure.
                    if remaining == own {
                        metrics::upstream_failure(Dependency::Ably, metrics::Failure::Timeout);
                        self.failed(index);
                    }
                    last = None;
                    break;
                }
            };
            self.failed(index);
            if !failure.try_next_host {
                return Err(failure.error);
            }
            if failure.stale_connection && next == 0 && !retried_stale {
                retried_stale = true;
            } else {
                next += 1;
            }
            if next < plan.len() {
                tracing::warn!(
                    operation,
                    host = base,
                    ably_error = %failure.error,
                    "Ably request failed; trying again"
                );
            }
            last = Some(failure.error);
        }
        Err(last.unwrap_or_else(|| {
            AblyError::Timeout(format!(
                "{operation}: no answer in time ({} ms at most for all attempts, and no longer than the function timeout leaves)",
                self.deadline.as_millis()
            ))
        }))
    }
}

impl AblyRest for HttpAbly {
    fn request_token<'a>(&'a self, sign: &'a SignTokenRequest<'a>) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
        Box::pin(async move {
            let make = |base: &str| {
                let request = sign().map_err(AblyError::NotSent)?;
                let body = serde_json::to_vec(&request).map_err(|e| {
                    AblyError::NotSent(IssueError::Internal(
                        format!("cannot encode the TokenRequest: {e}").into(),
                    ))
                })?;
                Ok(self.post(&key_url(base, &request.key_name, "requestToken"), body))
            };
            let details: TokenDetails = self.call("requestToken", make).await?;
            if details.token.is_empty() {
                return Err(AblyError::BadGateway {
                    status: None,
                    code: None,
                    message: "Ably's TokenDetails has an empty token".into(),
                });
            }
            Ok(details)
        })
    }

    fn revoke_tokens<'a>(
        &'a self,
        key: &'a ApiKey,
        request: &'a RevokeRequest,
    ) -> BoxFuture<'a, Result<BatchResult, AblyError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(request).map_err(|e| {
                AblyError::NotSent(IssueError::Internal(
                    format!("cannot encode the revocation request: {e}").into(),
                ))
            })?;
            self.call("revokeTokens", |base| {
                Ok(self
                    .post(&key_url(base, key.name(), "revokeTokens"), body.clone())
                    .basic_auth(key.name(), Some(key.secret().expose())))
            })
            .await
        })
    }

    fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>> {
        Box::pin(async move {
            let answer: Vec<u64> = self
                .call("time", |base| {
                    Ok(self
                        .client
                        .get(format!("{base}/time"))
                        .header(ACCEPT, "application/json")
                        .header("x-ably-version", ABLY_PROTOCOL_VERSION))
                })
                .await?;
            answer.first().copied().ok_or_else(|| AblyError::BadGateway {
                status: None,
                code: None,
                message: "Ably's /time answer is an empty list".into(),
            })
        })
    }
}

/// `{base}/keys/{keyName}/{action}`.
fn key_url(base: &str, key_name: &str, action: &str) -> String {
    let mut url = String::with_capacity(base.len() + key_name.len() + 32);
    url.push_str(base);
    url.push_str("/keys/");
    push_path_segment(&mut url, key_name);
    url.push('/');
    url.push_str(action);
    url
}

/// Shuffle in place with the operating system's CSPRNG (the order of fallback hosts, RSC15a);
/// if it fails, the order stays as it is, which is still correct.
fn shuffle<T>(items: &mut [T]) {
    let mut random = [0u8; 32];
    if items.len() < 2 || items.len() > random.len() || aws_lc_rs::rand::fill(&mut random).is_err() {
        return;
    }
    for i in (1..items.len()).rev() {
        let j = usize::from(random[i]) % (i + 1);
        items.swap(i, j);
    }
}

/// Percent-encode one URL path segment (key names are `appId.keyId`; be safe anyway).
fn push_path_segment(url: &mut String, segment: &str) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
}

fn transport_error(e: &reqwest::Error) -> AblyError {
    if e.is_timeout() {
        AblyError::Timeout(describe(e))
    } else if e.is_connect() || e.is_request() {
        AblyError::Unreachable(describe(e))
    } else {
        AblyError::BadGateway {
            status: None,
            code: None,
            message: describe(e),
        }
    }
}

/// A reqwest error with its causes ("connection refused" sits in the source chain).
fn describe(e: &reqwest::Error) -> String {
    crate::http_client::error_chain(e)
}

/// Why one attempt failed, and what may follow it.
struct Failure {
    error: AblyError,
    /// RSC15l: no connection, a timeout, HTTP 500–504, or a 4xx that is not Ably's.
    try_next_host: bool,
    /// The connection failed before any answer (refused, reset, closed): worth one retry on
    /// the same host when it may be a stale keep-alive socket.
    stale_connection: bool,
}

/// Send one request and read its answer: a 2xx JSON body as `T`, anything else as the
/// matching [`AblyError`], with whether another host may answer better.
async fn attempt<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, Failure> {
    let response = request.send().await.map_err(|e| Failure {
        error: transport_error(&e),
        try_next_host: true,
        stale_connection: !e.is_timeout() && (e.is_connect() || e.is_request()),
    })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    // A body cut off, too slow or far too large is a broken answer: another host may do better.
    let body = read_body(response).await.map_err(|error| Failure {
        error,
        try_next_host: true,
        stale_connection: false,
    })?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|e| Failure {
            error: AblyError::BadGateway {
                status: None,
                code: None,
                message: format!("HTTP {status} with a body that is not the expected JSON: {e}"),
            },
            try_next_host: false,
            stale_connection: false,
        });
    }
    let error = classify(status, &headers, &body);
    Err(Failure {
        try_next_host: should_fall_back(status, &headers, &error),
        error,
        stale_connection: false,
    })
}

/// RSC15l: HTTP 500–504, or an answer of 400 or more that is not Ably's (no Ably error code
/// in the body or `X-Ably-ErrorCode`, or a `Server: CloudFront` header). An Ably 4xx is final.
fn should_fall_back(status: u16, headers: &HeaderMap, error: &AblyError) -> bool {
    let cloudfront = headers
        .get(SERVER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("cloudfront"));
    (500..=504).contains(&status) || (status >= 400 && (cloudfront || error.ably_code().is_none()))
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, AblyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(AblyError::BadGateway {
                status: None,
                code: None,
                message: format!("the answer exceeds {MAX_ANSWER_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorInfo,
}

#[derive(Deserialize)]
struct ErrorInfo {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<u32>,
}

/// A non-2xx answer: Ably's ErrorInfo from the body, else from the `X-Ably-Error*` headers.
fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> AblyError {
    let from_body = serde_json::from_slice::<ErrorEnvelope>(body).ok().map(|e| e.error);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let code = from_body
        .as_ref()
        .and_then(|e| e.code)
        .or_else(|| header("x-ably-errorcode").and_then(|c| c.trim().parse().ok()));
    let message = from_body
        .and_then(|e| e.message)
        .or_else(|| header("x-ably-errormessage").map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let message: String = message.chars().take(500).collect();
    if status == 429 || code == Some(RATE_LIMIT_CODE) {
        let retry_after_seconds = header(RETRY_AFTER.as_str())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(DEFAULT_RETRY_AFTER_SECONDS)
            .clamp(1, MAX_RETRY_AFTER_SECONDS);
        return AblyError::RateLimited {
            status,
            code,
            message,
            retry_after_seconds,
        };
    }
    if (400..500).contains(&status) {
        return AblyError::Rejected { status, code, message };
    }
    AblyError::BadGateway {
        status: Some(status),
        code,
        message,
    }
}

/// `ABLY_REST_URL` (default [`DEFAULT_REST_URL`]): `https://…`, or `http://`
/// to a loopback host only (the revoke route sends the key in a Basic auth header).
pub fn rest_url_from_env(env: &dyn Env) -> Result<String, ConfigError> {
    let Some(raw) = env.var("ABLY_REST_URL") else {
        return Ok(DEFAULT_REST_URL.to_owned());
    };
    let url = raw.trim().trim_end_matches('/');
    let bad = |m: &str| ConfigError::Invalid {
        var: "ABLY_REST_URL",
        message: format!("{m}; expected e.g. {DEFAULT_REST_URL}"),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let host_port = rest.split('/').next().unwrap_or("");
    if host_port.is_empty() || rest.contains(['?', '#', '@']) || rest.chars().any(|c| c.is_whitespace()) {
        return Err(bad(
            "expected scheme://host[:port][/path] without credentials, query or fragment",
        ));
    }
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(url.to_owned()),
        "http" if matches!(host, "127.0.0.1" | "localhost" | "::1") => Ok(url.to_owned()),
        "http" => Err(bad(
            "plain http is allowed only to a loopback host (127.0.0.1, localhost, ::1): the key travels in it",
        )),
        _ => Err(bad("the scheme must be https")),
    }
}

/// A [`Clock`] that follows Ably's clock (`ABLY_QUERY_TIME=true`, the SDKs' `queryTime`):
/// Ably's `/time` is read once per container, on the first request that needs a timestamp
/// (concurrent requests share that one call; a failed read is retried by the next request),
/// and the offset is applied to the local clock from then on.
pub struct AblyClock {
    base: Arc<dyn Clock>,
    ably: Arc<dyn AblyRest>,
    offset_ms: tokio::sync::OnceCell<i64>,
}

impl AblyClock {
    pub fn new(base: Arc<dyn Clock>, ably: Arc<dyn AblyRest>) -> Self {
        AblyClock {
            base,
            ably,
            offset_ms: tokio::sync::OnceCell::new(),
        }
    }

    /// Ably's clock minus ours, once known.
    pub fn offset_ms(&self) -> Option<i64> {
        self.offset_ms.get().copied()
    }
}

impl Clock for AblyClock {
    fn now_ms(&self) -> u64 {
        let local = self.base.now_ms();
        match self.offset_ms.get() {
            Some(&offset) => local.saturating_add_signed(offset),
            None => local,
        }
    }

    fn calibrate(&self) -> BoxFuture<'_, Result<(), IssueError>> {
        Box::pin(async move {
            // Waiting for another request's read (or retrying after it failed) ends by this
            // request's deadline too.
            let read = self.offset_ms.get_or_try_init(|| async {
                let before = self.base.now_ms();
                let ably = self.ably.time().await.map_err(|e| {
                    tracing::error!(ably_error = %e, "cannot read Ably's clock (ABLY_QUERY_TIME=true)");
                    IssueError::from(e)
                })?;
                let after = self.base.now_ms();
                let local = before / 2 + after / 2;
                let offset = i64::try_from(ably).unwrap_or(i64::MAX) - i64::try_from(local).unwrap_or(i64::MAX);
                tracing::info!(offset_ms = offset, "Ably clock offset (ABLY_QUERY_TIME=true)");
                Ok::<i64, IssueError>(offset)
            });
            match crate::deadline::cut_off(read).await {
                Some(read) => read.map(|_| ()),
                None => Err(IssueError::from(AblyError::Timeout(
                    "reading Ably's clock (ABLY_QUERY_TIME=true): no answer before the function timeout (the invocation's deadline)".into(),
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ably_5xx_is_bad_gateway_502() {
        let e = classify(503, &HeaderMap::new(), br#"{"error":{"message":"down","code":50300}}"#);
        assert!(matches!(
            e,
            AblyError::BadGateway {
                status: Some(503),
                code: Some(50300),
                ..
            }
        ));
        let issue = IssueError::from(e);
        assert_eq!((issue.status(), issue.code()), (502, 50200));
    }

    #[test]
    fn ably_4xx_is_internal_500_never_403_and_keeps_details_out_of_the_message() {
        let body = br#"{"error":{"message":"Invalid mac for key appId.keyId","code":40101,"statusCode":401}}"#;
        let e = classify(401, &HeaderMap::new(), body);
        assert_eq!(e.ably_code(), Some(40101));
        let logged = e.to_string();
        assert!(logged.contains("40101") && logged.contains("Invalid mac"), "{logged}");
        let issue = IssueError::from(e);
        assert_eq!((issue.status(), issue.code()), (500, 50000));
        assert!(!issue.to_string().contains("Invalid mac"));
        assert!(!issue.to_string().contains("appId.keyId"));
        let forbidden = IssueError::from(classify(403, &HeaderMap::new(), b"{}"));
        assert_eq!(forbidden.status(), 500);
    }

    #[test]
    fn ably_429_and_40115_are_unavailable_503_with_retry_after() {
        let e = classify(429, &headers(&[("retry-after", "7")]), b"");
        let issue = IssueError::from(e);
        assert_eq!(
            (issue.status(), issue.code(), issue.retry_after_seconds()),
            (503, 50300, Some(7))
        );
        let e = classify(401, &HeaderMap::new(), br#"{"error":{"message":"rate","code":40115}}"#);
        assert_eq!(
            IssueError::from(e).retry_after_seconds(),
            Some(DEFAULT_RETRY_AFTER_SECONDS)
        );
        let e = classify(429, &headers(&[("retry-after", "100000")]), b"");
        assert_eq!(IssueError::from(e).retry_after_seconds(), Some(MAX_RETRY_AFTER_SECONDS));
    }

    #[test]
    fn error_code_falls_back_to_headers() {
        let e = classify(
            400,
            &headers(&[("x-ably-errorcode", "40003"), ("x-ably-errormessage", "ttl too long")]),
            b"not json",
        );
        assert_eq!(
            e,
            AblyError::Rejected {
                status: 400,
                code: Some(40003),
                message: "ttl too long".into()
            }
        );
        assert!(e.to_string().contains("lower ttlSeconds"));
    }

    #[test]
    fn token_details_answer_has_exactly_the_six_fields() {
        let ably =
            r#"{"token":"t","keyName":"a.b","issued":1,"expires":2,"capability":"{}","clientId":"c","extra":true}"#;
        let d: TokenDetails = serde_json::from_str(ably).unwrap();
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"token":"t","keyName":"a.b","issued":1,"expires":2,"capability":"{}","clientId":"c"}"#
        );
        assert!(!format!("{d:?}").contains("\"t\""));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let mut s = String::new();
        push_path_segment(&mut s, "app.key/..?#");
        assert_eq!(s, "app.key%2F..%3F%23");
    }

    #[test]
    fn ably_rest_url_must_be_https_or_loopback_http() {
        let url = |v: &str| rest_url_from_env(&|k: &str| (k == "ABLY_REST_URL").then(|| v.to_owned()));
        assert_eq!(rest_url_from_env(&|_: &str| None).unwrap(), DEFAULT_REST_URL);
        assert_eq!(url("https://main.realtime.ably.net/").unwrap(), DEFAULT_REST_URL);
        assert_eq!(url("http://127.0.0.1:9000").unwrap(), "http://127.0.0.1:9000");
        assert!(url("http://localhost:1/prefix").is_ok());
        assert!(url("http://[::1]:1").is_ok());
        for bad in [
            "http://rest.ably.io",
            "http://127.0.0.1.example.com",
            "ftp://host",
            "main.realtime.ably.net",
            "https://user:pw@host",
            "https://host/?q=1",
            "https://",
        ] {
            let e = url(bad).expect_err(bad).to_string();
            assert!(e.contains("ABLY_REST_URL"), "{e}");
        }
    }

    #[test]
    fn rsc15g_only_the_default_endpoint_gets_fallbacks() {
        let default = AblyHosts::for_url("https://main.realtime.ably.net/");
        assert_eq!(default.primary(), DEFAULT_REST_URL);
        assert_eq!(default.fallbacks(), DEFAULT_FALLBACK_URLS);
        for custom in [
            "https://rest.ably.io",
            "http://127.0.0.1:9000",
            "https://main.realtime.ably.net/v2",
        ] {
            let hosts = AblyHosts::for_url(custom);
            assert_eq!(hosts.primary(), custom);
            assert!(hosts.fallbacks().is_empty(), "{custom}");
        }
        let client = crate::http_client::build().unwrap();
        assert!(HttpAbly::new(client, "http://127.0.0.1:1/")
            .hosts()
            .fallbacks()
            .is_empty());
    }

    #[test]
    fn rsc15l_falls_back_on_5xx_and_non_ably_4xx_never_on_an_ably_4xx() {
        let decide = |status: u16, pairs: &[(&'static str, &'static str)], body: &[u8]| {
            let headers = headers(pairs);
            should_fall_back(status, &headers, &classify(status, &headers, body))
        };
        let ably_error = br#"{"error":{"message":"m","code":40000,"statusCode":400}}"#;
        for status in [500, 501, 502, 503, 504] {
            assert!(decide(status, &[], ably_error), "{status}");
        }
        assert!(!decide(505, &[("x-ably-errorcode", "50000")], b""));
        assert!(decide(403, &[], b"<html>Request blocked</html>"), "a CDN's 4xx");
        assert!(decide(
            403,
            &[("server", "CloudFront"), ("x-ably-errorcode", "40300")],
            b""
        ));
        assert!(!decide(400, &[], ably_error));
        assert!(!decide(401, &[("x-ably-errorcode", "40101")], b""));
        assert!(!decide(429, &[("x-ably-errorcode", "42910")], b""), "Ably's rate limit");
    }

    fn http_ably(fallbacks: usize) -> HttpAbly {
        let urls: Vec<String> = (0..fallbacks)
            .map(|i| format!("http://127.0.0.1:{}", 2000 + i))
            .collect();
        HttpAbly::with_hosts(
            crate::http_client::build().unwrap(),
            AblyHosts::new("http://127.0.0.1:1000/", &urls),
        )
    }

    #[test]
    fn rsc15a_plan_is_the_primary_then_every_fallback_once_in_random_order() {
        let ably = http_ably(5);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..50 {
            let plan = ably.plan();
            assert_eq!(plan[0], (None, "http://127.0.0.1:1000"));
            let mut rest: Vec<usize> = plan[1..].iter().map(|(i, _)| i.unwrap()).collect();
            orders.insert(rest.clone());
            rest.sort_unstable();
            assert_eq!(rest, [0, 1, 2, 3, 4]);
        }
        assert!(orders.len() > 1, "fallbacks come in random order");
    }

    #[test]
    fn rsc15f_a_fallback_that_answered_comes_first_until_the_retry_timeout() {
        let ably = http_ably(3);
        ably.answered(Some(2));
        let plan = ably.plan();
        assert_eq!(plan[0], (Some(2), "http://127.0.0.1:2002"));
        assert_eq!(plan[1].0, None, "then the primary");
        assert_eq!(plan.len(), 4, "each host once");
        ably.failed(Some(2));
        assert_eq!(ably.plan()[0].0, None, "a failed preferred fallback is forgotten");
        ably.answered(Some(1));
        ably.answered(None);
        assert_eq!(ably.plan()[0].0, None, "the primary answered again");
        let expired = http_ably(3).with_fallback_retry_timeout(Duration::ZERO);
        expired.answered(Some(1));
        assert_eq!(expired.plan()[0].0, None);
    }

    #[test]
    fn a_token_request_that_cannot_be_signed_is_answered_as_its_own_error() {
        let e = AblyError::NotSent(IssueError::Misconfigured("no claims".into()));
        assert!(e.to_string().contains("no request was sent"), "{e}");
        assert_eq!(IssueError::from(e), IssueError::Misconfigured("no claims".into()));
    }

    struct TimeOnly {
        ms: u64,
        calls: AtomicUsize,
        fail: bool,
        /// Answer after this long.
        delay: Duration,
    }

    impl AblyRest for TimeOnly {
        fn request_token<'a>(&'a self, _: &'a SignTokenRequest<'a>) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
            unreachable!()
        }
        fn revoke_tokens<'a>(
            &'a self,
            _: &'a ApiKey,
            _: &'a RevokeRequest,
        ) -> BoxFuture<'a, Result<BatchResult, AblyError>> {
            unreachable!()
        }
        fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = if self.fail {
                Err(AblyError::Unreachable("refused".into()))
            } else {
                Ok(self.ms)
            };
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                answer
            })
        }
    }

    #[tokio::test]
    async fn ably_clock_reads_time_once_and_applies_the_offset() {
        let ably = Arc::new(TimeOnly {
            ms: 1_700_000_600_000,
            calls: AtomicUsize::new(0),
            fail: false,
            delay: Duration::ZERO,
        });
        let clock = AblyClock::new(Arc::new(FixedClock(1_700_000_000_000)), ably.clone());
        assert_eq!(clock.now_ms(), 1_700_000_000_000);
        for _ in 0..3 {
            clock.calibrate().await.unwrap();
        }
        assert_eq!(clock.now_ms(), 1_700_000_600_000);
        assert_eq!(clock.offset_ms(), Some(600_000));
        assert_eq!(ably.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn ably_clock_failure_is_503_and_retried_on_the_next_request() {
        let ably = Arc::new(TimeOnly {
            ms: 0,
            calls: AtomicUsize::new(0),
            fail: true,
            delay: Duration::ZERO,
        });
        let clock = AblyClock::new(Arc::new(FixedClock(1_000)), ably.clone());
        let e = clock.calibrate().await.unwrap_err();
        assert_eq!(
            (e.status(), e.retry_after_seconds()),
            (503, Some(DEFAULT_RETRY_AFTER_SECONDS))
        );
        let _ = clock.calibrate().await;
        assert_eq!(ably.calls.load(Ordering::SeqCst), 2);
        assert_eq!(clock.now_ms(), 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_another_requests_clock_read_ends_by_this_requests_deadline() {
        let ably = Arc::new(TimeOnly {
            ms: 1_700_000_600_000,
            calls: AtomicUsize::new(0),
            fail: false,
            delay: Duration::from_secs(3),
        });
        let clock = Arc::new(AblyClock::new(Arc::new(FixedClock(1_700_000_000_000)), ably.clone()));
        let first = tokio::spawn({
            let clock = clock.clone();
            async move { clock.calibrate().await }
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        let e = crate::deadline::within(started + Duration::from_millis(200), clock.calibrate())
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert_eq!(e.status(), 504, "{e:?}");
        // The first read carries on and is the environment's one read.
        first.await.unwrap().unwrap();
        assert_eq!(clock.offset_ms(), Some(600_000));
        assert_eq!(ably.calls.load(Ordering::SeqCst), 1);
    }
}
