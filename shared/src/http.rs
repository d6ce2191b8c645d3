//! The authUrl HTTP contract: the only place an outcome becomes a response.
//!
//! - success: 200 with `application/jwt` (the raw token) or `application/json`;
//! - failure: Ably ErrorInfo JSON, `X-Ably-ErrorCode` / `X-Ably-ErrorMessage` headers;
//! - always `Cache-Control: no-store`, and CORS headers for listed origins (errors too).

use crate::error::IssueError;
use lambda_http::http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ORIGIN, VARY};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use std::fmt::Write as _;

pub const X_ABLY_ERROR_CODE: HeaderName = HeaderName::from_static("x-ably-errorcode");
pub const X_ABLY_ERROR_MESSAGE: HeaderName = HeaderName::from_static("x-ably-errormessage");
const EXPOSED_HEADERS: &str = "X-Ably-ErrorCode, X-Ably-ErrorMessage";
const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";
const DEFAULT_ALLOWED_HEADERS: &str = "authorization, content-type";
const PREFLIGHT_MAX_AGE_SECONDS: &str = "600";

/// A successful answer's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `application/jwt`: the token string, exactly (no quotes, no newline).
    Jwt(String),
    /// `application/json`: a TokenRequest, TokenDetails or BatchResult.
    Json(String),
}

impl Answer {
    /// A JSON answer (TokenRequest, TokenDetails, BatchResult).
    pub fn json(value: &impl serde::Serialize) -> Result<Answer, IssueError> {
        serde_json::to_string(value)
            .map(Answer::Json)
            .map_err(|e| IssueError::Internal(e.to_string().into()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CORS_ALLOWED_ORIGINS entry {entry:?}: {message}")]
pub struct CorsError {
    pub entry: String,
    pub message: &'static str,
}

/// Exact-origin CORS with credentials (never `*`).
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// Parse a comma-separated list of exact origins such as `https://app.example.com`.
    pub fn parse(list: &str) -> Result<Cors, CorsError> {
        let mut origins = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |message| CorsError {
                entry: entry.to_owned(),
                message,
            };
            if entry == "*" || entry.contains('*') {
                return Err(bad(
                    "wildcards are not allowed with credentials; list each exact origin",
                ));
            }
            let Some((scheme, host)) = entry.split_once("://") else {
                return Err(bad("expected scheme://host[:port], e.g. https://app.example.com"));
            };
            if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
                return Err(bad(
                    "expected scheme://host[:port] with no path or trailing slash, e.g. https://app.example.com",
                ));
            }
            origins.push(entry.to_ascii_lowercase());
        }
        Ok(Cors { origins })
    }

    pub fn is_enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    fn allowed<'r>(&self, request: &'r Request) -> Option<&'r HeaderValue> {
        let origin = request.headers().get(ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(text))
            .then_some(origin)
    }

    /// Add CORS headers for an allowed origin (on every answer, errors included).
    pub fn apply(&self, request: &Request, headers: &mut HeaderMap) {
        if !self.is_enabled() {
            return;
        }
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = self.allowed(request) {
            headers.insert("access-control-allow-origin", origin.clone());
            headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
            headers.insert(
                "access-control-expose-headers",
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
    }

    /// Answer a preflight `OPTIONS`. `None` when the request is not a preflight.
    pub fn preflight(&self, request: &Request) -> Option<Result<Response<Body>, IssueError>> {
        if request.method() != Method::OPTIONS {
            return None;
        }
        let origin = request.headers().get(ORIGIN);
        if origin.is_some() && self.allowed(request).is_none() {
            let shown = origin.and_then(|o| o.to_str().ok()).unwrap_or("?");
            return Some(Err(IssueError::OriginNotAllowed(crate::error::truncate_for_message(
                shown, 100,
            ))));
        }
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("allow", HeaderValue::from_static(ALLOWED_METHODS));
        if origin.is_some() {
            self.apply(request, headers);
            headers.insert(
                "access-control-allow-methods",
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            let requested = request
                .headers()
                .get("access-control-request-headers")
                .filter(|v| {
                    v.to_str().is_ok_and(|s| {
                        s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ',' | ' '))
                    })
                })
                .cloned()
                .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOWED_HEADERS));
            headers.insert("access-control-allow-headers", requested);
            headers.insert(
                "access-control-max-age",
                HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECONDS),
            );
        }
        Some(Ok(response))
    }
}

/// Turn an outcome into the HTTP answer.
pub fn respond(outcome: Result<Answer, IssueError>, request: &Request, cors: &Cors) -> Response<Body> {
    let mut response = match outcome {
        Ok(Answer::Jwt(token)) => with_type(StatusCode::OK, "application/jwt", token),
        Ok(Answer::Json(json)) => with_type(StatusCode::OK, "application/json", json),
        Err(e) => error_response(&e),
    };
    cors.apply(request, response.headers_mut());
    response
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Ably ErrorInfo: `{"error":{"message","code","statusCode","href"}}`.
pub fn error_body(e: &IssueError) -> String {
    let message = e.to_string();
    let mut body = String::with_capacity(96 + message.len());
    body.push_str(r#"{"error":{"message":"#);
    crate::json::push_string(&mut body, &message);
    let _ = write!(
        body,
        r#","code":{code},"statusCode":{status},"href":"https://help.ably.io/error/{code}"}}}}"#,
        code = e.code(),
        status = e.status()
    );
    body
}

pub fn error_response(e: &IssueError) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = with_type(status, "application/json", error_body(e));
    let headers = response.headers_mut();
    headers.insert(X_ABLY_ERROR_CODE, HeaderValue::from(e.code()));
    if let Ok(v) = HeaderValue::from_str(&header_safe(&e.to_string())) {
        headers.insert(X_ABLY_ERROR_MESSAGE, v);
    }
    if let Some(seconds) = e.retry_after_seconds() {
        headers.insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

/// Visible ASCII only, at most 512 bytes: header values cannot carry arbitrary text.
fn header_safe(message: &str) -> String {
    message
        .chars()
        .take(512)
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' })
        .collect()
}
