//! The one error type at the HTTP boundary: every failure on the request path becomes an
//! [`IssueError`], which alone knows its HTTP status and Ably error code.
//!
//! Status semantics follow Ably's client library spec (RSA4c/RSA4d): **401** when the caller
//! is not authenticated (the SDK retries, the app can log in again), **403** when the caller is
//! authenticated but must not get this token (the SDK stops), **5xx** for faults (retried).

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IssueError {
    /// No caller credential and the policy has no `anonymous` grant.
    #[error("no caller credential: send `Authorization: Bearer <session token>` (ably-js `authHeaders`)")]
    MissingCredential,
    /// A credential was presented but is not valid (bad signature, expired, wrong issuer…).
    #[error("caller credential rejected: {0}; sign in again and retry with a fresh session token")]
    InvalidCredential(Cow<'static, str>),
    /// The verified caller may not have a token at all (no rights, unusable identity claim).
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// The client asked for a clientId other than the one its identity yields.
    #[error("requested clientId {requested:?} does not match the clientId this caller is issued ({issued}); reconnect without a clientId or with the issued one")]
    ClientIdMismatch { requested: String, issued: String },
    /// The requested capability shares nothing with what the policy grants.
    #[error("the requested capability shares nothing with what this caller is allowed; request a subset of your grant, or omit `capability` to receive the whole grant")]
    CapabilityDenied,
    /// A malformed parameter or body.
    #[error("invalid parameter `{field}`: {message}")]
    BadRequest {
        field: &'static str,
        message: Cow<'static, str>,
    },
    /// The event itself cannot be read as an HTTP request (see [`crate::boundary`]).
    #[error("the request cannot be processed: {0}")]
    BadEvent(Cow<'static, str>),
    /// Ably refused a request shaped by the caller's own input (the revoke route's targets or
    /// `issuedBefore`): HTTP 400 with Ably's code (400xx) and a message carrying Ably's.
    #[error("{message}")]
    RefusedByAbly { code: u32, message: Cow<'static, str> },
    #[error("method {method} is not allowed here: use {allowed}")]
    MethodNotAllowed { method: String, allowed: &'static str },
    #[error("unsupported Content-Type {0:?}: send application/x-www-form-urlencoded or application/json")]
    UnsupportedMediaType(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The origin of a CORS request is not in `CORS_ALLOWED_ORIGINS`.
    #[error("origin {0:?} is not allowed; add it to CORS_ALLOWED_ORIGINS")]
    OriginNotAllowed(String),
    /// The function is configured in a way that cannot issue safely (fail closed).
    #[error("the token service is misconfigured and refuses to issue: {0}")]
    Misconfigured(Cow<'static, str>),
    /// A dependency (Secrets Manager, JWKS, Ably) is unreachable; retry later.
    #[error("{what} is temporarily unavailable; retry in {retry_after_seconds} s")]
    Unavailable {
        what: Cow<'static, str>,
        retry_after_seconds: u32,
    },
    /// An upstream answered badly (HTTP 502) or too late (HTTP 504).
    #[error("{0}")]
    Upstream(UpstreamFault),
    /// The minted token would be too large to send.
    #[error("the token would be {size} bytes, over the {limit}-byte limit for JWTs in URLs and headers; narrow the policy (fewer resources or claims) or use the Ably Token route (/auth/token)")]
    TokenTooLarge { size: usize, limit: usize },
    #[error("internal error: {0}")]
    Internal(Cow<'static, str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFault {
    BadGateway(Cow<'static, str>),
    Timeout(Cow<'static, str>),
}

impl std::fmt::Display for UpstreamFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamFault::BadGateway(m) | UpstreamFault::Timeout(m) => f.write_str(m),
        }
    }
}

impl IssueError {
    /// 405 for `request`'s method; `allowed` reads like "GET or POST".
    pub fn method_not_allowed(method: &str, allowed: &'static str) -> Self {
        IssueError::MethodNotAllowed {
            method: truncate_for_message(method, 16),
            allowed,
        }
    }

    pub fn bad_request(field: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        IssueError::BadRequest {
            field,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        IssueError::Forbidden(message.into())
    }

    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            IssueError::MissingCredential | IssueError::InvalidCredential(_) => 401,
            IssueError::Forbidden(_)
            | IssueError::ClientIdMismatch { .. }
            | IssueError::CapabilityDenied
            | IssueError::OriginNotAllowed(_) => 403,
            IssueError::BadRequest { .. } | IssueError::BadEvent(_) | IssueError::RefusedByAbly { .. } => 400,
            IssueError::MethodNotAllowed { .. } => 405,
            IssueError::PayloadTooLarge { .. } => 413,
            IssueError::UnsupportedMediaType(_) => 415,
            IssueError::Misconfigured(_) | IssueError::TokenTooLarge { .. } | IssueError::Internal(_) => 500,
            IssueError::Upstream(UpstreamFault::BadGateway(_)) => 502,
            IssueError::Unavailable { .. } => 503,
            IssueError::Upstream(UpstreamFault::Timeout(_)) => 504,
        }
    }

    /// Ably error code (see Ably's `errors.json`).
    pub fn code(&self) -> u32 {
        match self {
            IssueError::MissingCredential => 40100,
            IssueError::InvalidCredential(_) => 40101,
            IssueError::ClientIdMismatch { .. } => 40102,
            IssueError::CapabilityDenied => 40160,
            IssueError::Forbidden(_) | IssueError::OriginNotAllowed(_) => 40300,
            IssueError::BadRequest { .. } | IssueError::BadEvent(_) => 40000,
            IssueError::RefusedByAbly { code, .. } => *code,
            IssueError::MethodNotAllowed { .. } => 40500,
            IssueError::PayloadTooLarge { .. } => 41300,
            IssueError::UnsupportedMediaType(_) => 41500,
            IssueError::Misconfigured(_) | IssueError::TokenTooLarge { .. } | IssueError::Internal(_) => 50000,
            IssueError::Upstream(UpstreamFault::BadGateway(_)) => 50200,
            IssueError::Unavailable { .. } => 50300,
            IssueError::Upstream(UpstreamFault::Timeout(_)) => 50400,
        }
    }

    /// `Retry-After` seconds for retriable faults.
    pub fn retry_after_seconds(&self) -> Option<u32> {
        match self {
            IssueError::Unavailable {
                retry_after_seconds, ..
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }

    /// Short machine-readable outcome for the request log.
    pub fn outcome(&self) -> &'static str {
        match self {
            IssueError::MissingCredential => "missing_credential",
            IssueError::InvalidCredential(_) => "invalid_credential",
            IssueError::Forbidden(_) => "forbidden",
            IssueError::ClientIdMismatch { .. } => "client_id_mismatch",
            IssueError::CapabilityDenied => "capability_denied",
            IssueError::BadRequest { .. } => "bad_request",
            IssueError::BadEvent(_) => "bad_event",
            IssueError::RefusedByAbly { .. } => "refused_by_ably",
            IssueError::MethodNotAllowed { .. } => "method_not_allowed",
            IssueError::UnsupportedMediaType(_) => "unsupported_media_type",
            IssueError::PayloadTooLarge { .. } => "payload_too_large",
            IssueError::OriginNotAllowed(_) => "origin_not_allowed",
            IssueError::Misconfigured(_) => "misconfigured",
            IssueError::Unavailable { .. } => "unavailable",
            IssueError::Upstream(_) => "upstream_error",
            IssueError::TokenTooLarge { .. } => "token_too_large",
            IssueError::Internal(_) => "internal_error",
        }
    }
}

/// Client-supplied text echoed in a message: at most `max_chars`, marked when cut.
pub fn truncate_for_message(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_echoes_are_cut() {
        assert_eq!(truncate_for_message("abcdef", 3), "abc…");
        assert_eq!(truncate_for_message("ab", 3), "ab");
        assert_eq!(truncate_for_message("ééé", 2), "éé…");
    }

    #[test]
    fn code_prefix_matches_status_except_the_403_refusals() {
        let all = [
            IssueError::MissingCredential,
            IssueError::InvalidCredential("x".into()),
            IssueError::forbidden("x"),
            IssueError::ClientIdMismatch {
                requested: "a".into(),
                issued: "b".into(),
            },
            IssueError::CapabilityDenied,
            IssueError::bad_request("ttl", "x"),
            IssueError::BadEvent("x".into()),
            IssueError::RefusedByAbly {
                code: 40003,
                message: "x".into(),
            },
            IssueError::MethodNotAllowed {
                method: "PUT".into(),
                allowed: "GET or POST",
            },
            IssueError::UnsupportedMediaType("text/xml".into()),
            IssueError::PayloadTooLarge { limit: 1 },
            IssueError::OriginNotAllowed("o".into()),
            IssueError::Misconfigured("x".into()),
            IssueError::Unavailable {
                what: "x".into(),
                retry_after_seconds: 1,
            },
            IssueError::Upstream(UpstreamFault::BadGateway("x".into())),
            IssueError::Upstream(UpstreamFault::Timeout("x".into())),
            IssueError::TokenTooLarge { size: 2, limit: 1 },
            IssueError::Internal("x".into()),
        ];
        for e in all {
            // 40102 and 40160 are Ably's codes for these refusals; the contract answers
            // them with 403 so that the SDK stops retrying.
            if matches!(e, IssueError::ClientIdMismatch { .. } | IssueError::CapabilityDenied) {
                assert_eq!(e.status(), 403);
                continue;
            }
            assert_eq!(e.code() / 100, u32::from(e.status()), "{e:?}");
        }
    }
}
