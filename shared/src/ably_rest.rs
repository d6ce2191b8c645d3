//! Ably's REST API, behind one narrow trait: exchange a signed TokenRequest for an Ably
//! Token, revoke tokens, read Ably's clock. [`HttpAbly`] is the real client (the one
//! per-container [`crate::http_client`]); tests put a fake Ably server on loopback behind it,
//! or implement the trait in memory.
//!
//! Ably's answers map onto the caller's contract (see [`AblyError`] and its conversion into
//! [`IssueError`]): Ably 5xx → 502, no answer in time → 504, no connection after one retry →
//! 503 with `Retry-After`, Ably's rate limit (429 or 40115) → 503 with `Retry-After`, and any
//! other Ably 4xx → 500 — our request or key is wrong, which is a server-side fault and must
//! never reach the SDK as a 403 (that would stop the client for good). Ably's own code and
//! message go to the log only.

use crate::caller::BoxFuture;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Env};
use crate::error::{IssueError, UpstreamFault};
use crate::key::ApiKey;
use crate::service::Route;
use crate::token_request::TokenRequest;
use lambda_http::http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// `ABLY_REST_URL` default: Ably's primary REST endpoint.
pub const DEFAULT_REST_URL: &str = "https://main.realtime.ably.net";
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AblyError {
    /// No connection (refused, reset, closed before an answer), after the one retry.
    Unreachable(String),
    /// No answer within the client's timeout.
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
}

impl AblyError {
    /// Ably's error code, when it gave one.
    pub fn ably_code(&self) -> Option<u32> {
        match self {
            AblyError::BadGateway { code, .. }
            | AblyError::RateLimited { code, .. }
            | AblyError::Rejected { code, .. } => *code,
            AblyError::Unreachable(_) | AblyError::Timeout(_) => None,
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
            AblyError::Unreachable(e) => write!(f, "Ably could not be reached (after one retry): {e}"),
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
        }
    }
}

/// Ably's REST API, as much of it as this project uses.
pub trait AblyRest: Send + Sync {
    /// `POST /keys/{keyName}/requestToken` with a signed TokenRequest (no auth header).
    fn request_token<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<TokenDetails, AblyError>>;
    /// `POST /keys/{keyName}/revokeTokens`, Basic auth with `key` (≤ 100 targets).
    fn revoke_tokens<'a>(
        &'a self,
        key: &'a ApiKey,
        request: &'a RevokeRequest,
    ) -> BoxFuture<'a, Result<BatchResult, AblyError>>;
    /// `GET /time`: Ably's clock in milliseconds.
    fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>>;
}

/// The real client: HTTPS to `ABLY_REST_URL` over the per-container [`reqwest::Client`].
#[derive(Debug, Clone)]
pub struct HttpAbly {
    client: reqwest::Client,
    base: String,
}

impl HttpAbly {
    /// `base_url` such as `https://main.realtime.ably.net` (a trailing `/` is ignored).
    pub fn new(client: reqwest::Client, base_url: &str) -> Self {
        HttpAbly {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn key_url(&self, key_name: &str, action: &str) -> String {
        let mut url = String::with_capacity(self.base.len() + key_name.len() + 32);
        url.push_str(&self.base);
        url.push_str("/keys/");
        push_path_segment(&mut url, key_name);
        url.push('/');
        url.push_str(action);
        url
    }

    fn post(&self, url: &str, body: &[u8]) -> reqwest::RequestBuilder {
        self.client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .header("x-ably-version", ABLY_PROTOCOL_VERSION)
            .body(body.to_vec())
    }
}

impl AblyRest for HttpAbly {
    fn request_token<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(request).map_err(|e| AblyError::BadGateway {
                status: None,
                code: None,
                message: format!("cannot encode the TokenRequest: {e}"),
            })?;
            let url = self.key_url(&request.key_name, "requestToken");
            let details: TokenDetails =
                read(crate::http_client::send_idempotent(|| self.post(&url, &body)).await).await?;
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
            let body = serde_json::to_vec(request).map_err(|e| AblyError::BadGateway {
                status: None,
                code: None,
                message: format!("cannot encode the revocation request: {e}"),
            })?;
            let url = self.key_url(key.name(), "revokeTokens");
            read(
                crate::http_client::send_idempotent(|| {
                    self.post(&url, &body)
                        .basic_auth(key.name(), Some(key.secret().expose()))
                })
                .await,
            )
            .await
        })
    }

    fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>> {
        Box::pin(async move {
            let url = format!("{}/time", self.base);
            let answer: Vec<u64> = read(
                crate::http_client::send_idempotent(|| {
                    self.client
                        .get(&url)
                        .header(ACCEPT, "application/json")
                        .header("x-ably-version", ABLY_PROTOCOL_VERSION)
                })
                .await,
            )
            .await?;
            answer.first().copied().ok_or_else(|| AblyError::BadGateway {
                status: None,
                code: None,
                message: "Ably's /time answer is an empty list".into(),
            })
        })
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
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Read an answer: a 2xx JSON body as `T`, anything else as the matching [`AblyError`].
async fn read<T: DeserializeOwned>(sent: Result<reqwest::Response, reqwest::Error>) -> Result<T, AblyError> {
    let response = sent.map_err(|e| transport_error(&e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_body(response).await?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|e| AblyError::BadGateway {
            status: None,
            code: None,
            message: format!("HTTP {status} with a body that is not the expected JSON: {e}"),
        });
    }
    Err(classify(status, &headers, &body))
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

/// A route's Ably client (if it calls Ably) and its clock.
pub type RouteAbly = (Option<Arc<dyn AblyRest>>, Arc<dyn Clock>);

/// The Ably client and the clock for one route, from the configuration: the client only
/// when the route calls Ably (`issue-ably-token`; `revoke-tokens` with a revocable key; any
/// route with `ABLY_QUERY_TIME=true`, whose clock then follows Ably's).
pub fn for_route(route: Route, config: &Config) -> Result<RouteAbly, ConfigError> {
    let system: Arc<dyn Clock> = Arc::new(SystemClock);
    let needed = config.ably_query_time
        || match route {
            Route::AblyToken => true,
            Route::Revoke => config.key_revocable,
            Route::Jwt | Route::TokenRequest => false,
        };
    if !needed {
        return Ok((None, system));
    }
    let client = crate::http_client::build().map_err(|e| ConfigError::Invalid {
        var: "ABLY_REST_URL",
        message: e.to_string(),
    })?;
    let ably: Arc<dyn AblyRest> = Arc::new(HttpAbly::new(client, &config.ably_rest_url));
    let clock: Arc<dyn Clock> = if config.ably_query_time {
        Arc::new(AblyClock::new(system, ably.clone()))
    } else {
        system
    };
    Ok((Some(ably), clock))
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
            self.offset_ms
                .get_or_try_init(|| async {
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
                })
                .await
                .map(|_| ())
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

    struct TimeOnly {
        ms: u64,
        calls: AtomicUsize,
        fail: bool,
    }

    impl AblyRest for TimeOnly {
        fn request_token<'a>(&'a self, _: &'a TokenRequest) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
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
            Box::pin(std::future::ready(answer))
        }
    }

    #[tokio::test]
    async fn ably_clock_reads_time_once_and_applies_the_offset() {
        let ably = Arc::new(TimeOnly {
            ms: 1_700_000_600_000,
            calls: AtomicUsize::new(0),
            fail: false,
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
}
