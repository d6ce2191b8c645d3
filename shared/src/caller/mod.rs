//! Who is calling: credential verification, behind one narrow trait.
//!
//! Each [`CallerVerifier`] looks at the one place its credential travels (the bearer
//! header, a cookie, the API Gateway authorizer context) and answers a [`Verdict`]. A
//! [`VerifierChain`] asks them in order; the first verified identity wins.
//!
//! The chain built from the environment ([`crate::config::CallerConfig::verifiers`]), in order:
//!
//! 1. bearer JWT (`Authorization: Bearer …`), routed by the token's `alg`:
//!    HS256 → [`Hs256Verifier`] (`CALLER_HS256_SECRET`); RS256/RS384/RS512/ES256/ES384/EdDSA
//!    → [`JwksVerifier`] (`CALLER_JWKS_URL`, or discovery from `CALLER_ISSUER`);
//! 2. API Gateway authorizer context → [`AuthorizerVerifier`] (`CALLER_TRUST_AUTHORIZER=true`);
//! 3. a JWT in a cookie → [`CookieVerifier`] (`CALLER_COOKIE=<name>`), verified by the same
//!    token verifiers as the bearer token.

mod authorizer;
mod claims;
mod cookie;
pub mod discovery;
pub mod fetch;
mod hs256;
mod jwks;

pub use authorizer::{authorizer_claims, AuthorizerVerifier};
pub use claims::Claims;
pub use cookie::{cookie_value, CookieConfigError, CookieVerifier};
pub use hs256::Hs256Verifier;
pub use jwks::{
    JwksConfigError, JwksSettings, JwksSource, JwksVerifier, KeySet, ACCEPTED_ALGORITHMS, COLD_RETRY_INTERVAL,
    DEFAULT_MAX_AGE, FETCH_DEADLINE, MAX_MAX_AGE, MAX_STALENESS, MIN_MAX_AGE, MIN_REFETCH_INTERVAL, REDISCOVER_AFTER,
};

use crate::error::IssueError;
use lambda_http::http::header::AUTHORIZATION;
use lambda_http::Request;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Verified by `via` (a verifier's name); the claims are trusted.
    Verified { claims: Claims, via: &'static str },
    /// No credential at all; only the policy's `anonymous` grant applies.
    Anonymous,
}

/// What a verifier concluded about one request.
#[derive(Debug)]
pub enum Verdict {
    /// Its credential is not in the request.
    Absent,
    /// A credential is present but is another verifier's kind (e.g. an RS256 bearer token
    /// for the HS256 verifier).
    NotMine,
    Verified(Claims),
    Rejected(CallerError),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallerError {
    /// The credential is invalid: 401.
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    /// The verifier cannot decide now (e.g. JWKS unreachable at cold start): 503.
    #[error("{0} is unreachable")]
    Unavailable(Cow<'static, str>),
    /// The verifier's own configuration is unusable (e.g. its secret is missing): 500.
    #[error("{0}")]
    Misconfigured(Cow<'static, str>),
}

impl From<CallerError> for IssueError {
    fn from(e: CallerError) -> Self {
        match e {
            CallerError::Invalid(reason) => IssueError::InvalidCredential(reason),
            CallerError::Unavailable(what) => IssueError::Unavailable {
                what,
                retry_after_seconds: 15,
            },
            CallerError::Misconfigured(why) => IssueError::Misconfigured(why),
        }
    }
}

/// One way of establishing who is calling.
pub trait CallerVerifier: Send + Sync {
    /// Short name for logs (`hs256`, `jwks`, `authorizer`, `cookie`).
    fn name(&self) -> &'static str;
    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict>;
}

impl<T: CallerVerifier + ?Sized> CallerVerifier for std::sync::Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict> {
        (**self).verify(request)
    }
}

/// Verifies one JWT, wherever it travelled (bearer header, cookie): `NotMine` when its
/// `alg` belongs to another verifier.
pub trait TokenVerifier: Send + Sync {
    fn verify_jwt<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict>;
}

/// Verifiers asked in order: the first verified identity wins; otherwise the first
/// rejection; otherwise, if no verifier recognised a presented credential, a 401; otherwise
/// the caller is anonymous.
#[derive(Default)]
pub struct VerifierChain {
    verifiers: Vec<Box<dyn CallerVerifier>>,
}

impl VerifierChain {
    pub fn new(verifiers: Vec<Box<dyn CallerVerifier>>) -> Self {
        Self { verifiers }
    }

    pub fn is_empty(&self) -> bool {
        self.verifiers.is_empty()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.verifiers.iter().map(|v| v.name()).collect()
    }

    pub async fn identify(&self, request: &Request) -> Result<Caller, IssueError> {
        let mut rejection: Option<CallerError> = None;
        let mut unrecognised = false;
        for verifier in &self.verifiers {
            match verifier.verify(request).await {
                Verdict::Verified(claims) => {
                    return Ok(Caller::Verified {
                        claims,
                        via: verifier.name(),
                    })
                }
                Verdict::Rejected(e) => {
                    rejection.get_or_insert(e);
                }
                Verdict::NotMine => unrecognised = true,
                Verdict::Absent => {}
            }
        }
        if let Some(e) = rejection {
            return Err(e.into());
        }
        if unrecognised || (has_authorization(request) && !self.verifiers.is_empty()) {
            return Err(IssueError::InvalidCredential(
                "the presented credential is of a kind this service does not accept".into(),
            ));
        }
        Ok(Caller::Anonymous)
    }
}

fn has_authorization(request: &Request) -> bool {
    request.headers().contains_key(AUTHORIZATION)
}

/// The token of an `Authorization: Bearer <token>` header.
///
/// `None`: no Authorization header. `Some(Err)`: a header that is not a usable bearer token.
pub fn bearer_token(request: &Request) -> Option<Result<&str, CallerError>> {
    let value = request.headers().get(AUTHORIZATION)?;
    let Ok(value) = value.to_str() else {
        return Some(Err(CallerError::Invalid(
            "the Authorization header is not ASCII".into(),
        )));
    };
    let value = value.trim();
    let Some((scheme, token)) = value.split_once(' ') else {
        return Some(Err(CallerError::Invalid(
            "the Authorization header must be `Bearer <token>`".into(),
        )));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some(Err(CallerError::Invalid(
            "the Authorization header must use the Bearer scheme".into(),
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Some(Err(CallerError::Invalid("the bearer token is empty".into())));
    }
    Some(Ok(token))
}

/// Map a `jsonwebtoken` validation error to a reason fit for the caller (no secrets, no token).
pub fn jwt_error_reason(e: &jsonwebtoken::errors::Error) -> Cow<'static, str> {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the session token has expired".into(),
        K::ImmatureSignature => "the session token is not valid yet (nbf)".into(),
        K::InvalidSignature => "the session token signature does not verify".into(),
        K::InvalidIssuer => "the session token was issued by an issuer this service does not trust (iss)".into(),
        K::InvalidAudience => "the session token is meant for another audience (aud)".into(),
        K::InvalidAlgorithm | K::MissingAlgorithm => "the session token's algorithm is not accepted".into(),
        K::MissingRequiredClaim(c) => format!("the session token lacks the required claim `{c}`").into(),
        K::InvalidClaimFormat(c) => format!("the session token's claim `{c}` has the wrong type").into(),
        _ => "the session token is malformed".into(),
    }
}
