//! Who is calling: credential verification, behind one narrow trait.
//!
//! Each [`CallerVerifier`] looks at the one place its credential travels, its [`Source`]
//! (the API Gateway authorizer context, the `Authorization` header, a cookie), and answers a
//! [`Verdict`]. A [`VerifierChain`] decides **by source, not by "first verified wins"**:
//!
//! 1. **API Gateway authorizer context** → [`AuthorizerVerifier`]
//!    (`CALLER_TRUST_AUTHORIZER=true`). When the context is present it is the identity, and
//!    neither the `Authorization` header nor the cookie is read. When it is absent (or the
//!    flag is off), the next steps apply.
//! 2. **The `Authorization` header** → the bearer JWT, routed by its `alg`: HS256 →
//!    [`Hs256Verifier`] (`CALLER_HS256_SECRET`); RS256/RS384/RS512/ES256/ES384/EdDSA →
//!    [`JwksVerifier`] (`CALLER_JWKS_URL`, or discovery from `CALLER_ISSUER`). If the header
//!    is present, its verdict is final: verified → that identity; expired, forged,
//!    malformed, not `Bearer`, or of a kind no verifier accepts → 401; keys unreachable → 503.
//!    The cookie is then not read.
//! 3. **A JWT in a cookie** → [`CookieVerifier`] (`CALLER_COOKIE=<name>`), verified by the
//!    same token verifiers as the bearer token. If the cookie is present (and not empty), its
//!    verdict is final in the same way.
//! 4. Nothing presented: the caller is [`Caller::Anonymous`] (only the policy's `anonymous`
//!    grant applies).
//!
//! One request yields one identity: the claims come from exactly one credential, never merged
//! from two. Within a step the verifier whose kind the credential is decides (the token's
//! `alg` picks HS256 or JWKS); the order in which verifiers are handed to
//! [`VerifierChain::new`] does not change the precedence.
//!
//! **Why a rejected credential is final.** The credential the client presents explicitly
//! is the one it means. Falling through to another source on a rejection would answer an
//! expired bearer token for alice with bob's cookie session (the wrong user, and an expiry
//! the app never hears of), and a cookie planted by someone else (cookie tossing from a
//! sibling subdomain) would take over whenever the user's own token lapses.
//!
//! **Why the authorizer context comes first.** It is not a credential the client presents
//! but the gateway's verdict on the whole request, made before the function runs: an HTTP
//! API JWT authorizer verified the very bearer token in the `Authorization` header, often a
//! token the function cannot verify itself (a Cognito token with no JWKS configured here, an
//! opaque token checked by a Lambda authorizer). Putting the header first would either
//! answer 401 to requests the gateway accepted, or need a fall-through from a rejected
//! bearer token to the context, which is exactly what rule 2 forbids. The client cannot
//! write the context (given the deployment rule of `CALLER_TRUST_AUTHORIZER`), while it
//! can write the header and the cookie, so the context is also the safest first source: a
//! bearer token or cookie never overrides, or adds claims to, what the gateway established.
//!
//! The chain built from the environment: [`crate::config::CallerConfig::verifiers`].

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

pub use crate::future::BoxFuture;

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

/// Where a credential travels. [`VerifierChain`] asks the sources in this order
/// ([`Source::ORDER`]); see the module documentation for why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// API Gateway authorizer context: the gateway's verdict on the request.
    Authorizer,
    /// The `Authorization` header (`Bearer <JWT>`).
    Bearer,
    /// A cookie holding a JWT.
    Cookie,
}

impl Source {
    /// The precedence of the sources: the first one present decides.
    pub const ORDER: [Source; 3] = [Source::Authorizer, Source::Bearer, Source::Cookie];
}

/// One way of establishing who is calling.
pub trait CallerVerifier: Send + Sync {
    /// Short name for logs (`hs256`, `jwks`, `authorizer`, `cookie`).
    fn name(&self) -> &'static str;
    /// Where this verifier's credential travels.
    fn source(&self) -> Source;
    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict>;
}

impl<T: CallerVerifier + ?Sized> CallerVerifier for std::sync::Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn source(&self) -> Source {
        (**self).source()
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

/// The verifiers of a deployment, asked by [`Source`]: the first source whose credential is
/// in the request decides, whatever its verdict (see the module documentation).
#[derive(Default)]
pub struct VerifierChain {
    /// Sorted by source (stable: the given order within one source).
    verifiers: Vec<Box<dyn CallerVerifier>>,
}

impl VerifierChain {
    /// The chain of `verifiers`; their order only matters within one [`Source`].
    pub fn new(mut verifiers: Vec<Box<dyn CallerVerifier>>) -> Self {
        verifiers.sort_by_key(|v| v.source());
        Self { verifiers }
    }

    pub fn is_empty(&self) -> bool {
        self.verifiers.is_empty()
    }

    /// The verifiers' names, in the order they are asked.
    pub fn names(&self) -> Vec<&'static str> {
        self.verifiers.iter().map(|v| v.name()).collect()
    }

    /// The caller of `request`: the identity of the first source present, a 401/503/500 if
    /// that source's credential is refused, or anonymous when no credential is presented.
    ///
    /// With no verifier at all, every request is anonymous (the service then refuses to
    /// start issuing unless the policy has an `anonymous` grant).
    pub async fn identify(&self, request: &Request) -> Result<Caller, IssueError> {
        if self.verifiers.is_empty() {
            return Ok(Caller::Anonymous);
        }
        for source in Source::ORDER {
            if let Some(caller) = self.decide(source, request).await? {
                return Ok(caller);
            }
        }
        Ok(Caller::Anonymous)
    }

    /// The verdict on `source`'s credential: `None` when it is not in the request.
    async fn decide(&self, source: Source, request: &Request) -> Result<Option<Caller>, IssueError> {
        // The chain, not the verifiers, knows an Authorization header is there: a header no
        // verifier recognises (or with no bearer verifier configured) is still a credential.
        let mut present = source == Source::Bearer && has_authorization(request);
        for verifier in self.verifiers.iter().filter(|v| v.source() == source) {
            match verifier.verify(request).await {
                // The verifier whose kind the credential is decides, whatever it concludes.
                Verdict::Verified(claims) => {
                    return Ok(Some(Caller::Verified {
                        claims,
                        via: verifier.name(),
                    }))
                }
                Verdict::Rejected(e) => return Err(e.into()),
                Verdict::NotMine => present = true,
                Verdict::Absent => {}
            }
        }
        if !present {
            return Ok(None);
        }
        Err(IssueError::InvalidCredential(match source {
            Source::Bearer => "the Authorization header holds a credential of a kind this service does not accept (check the token's alg against the configured caller providers)".into(),
            Source::Cookie => "the session cookie holds a token of a kind this service does not accept (check its alg)".into(),
            Source::Authorizer => "the API Gateway authorizer context is not usable as an identity".into(),
        }))
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

/// Why a token with a `crit` header is refused (RFC 7515 §4.1.11: a recipient that does not
/// implement the listed extensions must reject the token; this service implements none).
pub(crate) const CRIT_REFUSED: &str =
    "the token declares critical header extensions (crit) this service does not implement";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use lambda_http::Body;
    use serde_json::json;
    use std::sync::Arc;

    const SECRET: &str = "chain-test-secret-0123456789abcdef0123456789";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// An HS256 session token for `sub`, expiring `exp_in` seconds from now.
    fn session(sub: &str, exp_in: i64) -> String {
        let claims = json!({"sub": sub, "exp": now() + exp_in, "roles": [format!("{sub}-role")]});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn request(authorization: Option<&str>, cookie: Option<&str>) -> Request {
        let mut builder = lambda_http::http::Request::builder().uri("/auth/jwt");
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(value) = cookie {
            builder = builder.header(lambda_http::http::header::COOKIE, value);
        }
        builder.body(Body::Empty).unwrap()
    }

    fn bearer_and_cookie(bearer: &str, cookie: &str) -> Request {
        request(Some(&format!("Bearer {bearer}")), Some(&format!("session={cookie}")))
    }

    /// A verifier answering the same verdict for every request.
    struct Fixed {
        name: &'static str,
        source: Source,
        verdict: fn() -> Verdict,
    }

    impl CallerVerifier for Fixed {
        fn name(&self) -> &'static str {
            self.name
        }

        fn source(&self) -> Source {
            self.source
        }

        fn verify<'a>(&'a self, _: &'a Request) -> BoxFuture<'a, Verdict> {
            Box::pin(std::future::ready((self.verdict)()))
        }
    }

    fn gateway_verdict() -> Verdict {
        let mut claims = Claims::default();
        claims.insert("sub", json!("gateway-user"));
        Verdict::Verified(claims)
    }

    fn authorizer(verdict: fn() -> Verdict) -> Box<dyn CallerVerifier> {
        Box::new(Fixed {
            name: "authorizer",
            source: Source::Authorizer,
            verdict,
        })
    }

    /// The environment's usual chain: HS256 bearer, then the cookie verified by it too.
    fn hs256_and_cookie(mut extra: Vec<Box<dyn CallerVerifier>>) -> VerifierChain {
        let hs256 = Arc::new(Hs256Verifier::new(&SecretString::new(SECRET), None, &[]).unwrap());
        let tokens: Vec<Arc<dyn TokenVerifier>> = vec![hs256.clone()];
        let mut verifiers: Vec<Box<dyn CallerVerifier>> = vec![
            Box::new(hs256),
            Box::new(CookieVerifier::new("session", tokens).unwrap()),
        ];
        verifiers.append(&mut extra);
        VerifierChain::new(verifiers)
    }

    fn verified(result: Result<Caller, IssueError>) -> (Claims, &'static str) {
        match result {
            Ok(Caller::Verified { claims, via }) => (claims, via),
            other => panic!("expected a verified caller, got {other:?}"),
        }
    }

    fn refused(result: Result<Caller, IssueError>) -> IssueError {
        match result {
            Err(e) => e,
            Ok(caller) => panic!("expected a refusal, got {caller:?}"),
        }
    }

    #[tokio::test]
    async fn expired_bearer_for_alice_with_a_valid_cookie_for_bob_is_401_not_bob() {
        let chain = hs256_and_cookie(vec![]);
        let e = refused(
            chain
                .identify(&bearer_and_cookie(&session("alice", -300), &session("bob", 600)))
                .await,
        );
        assert_eq!((e.status(), e.code()), (401, 40101));
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[tokio::test]
    async fn forged_or_malformed_bearer_with_a_valid_cookie_is_401() {
        let chain = hs256_and_cookie(vec![]);
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "alice", "exp": now() + 600}),
            &EncodingKey::from_secret(b"not-the-secret-0123456789abcdef0123456789"),
        )
        .unwrap();
        for (bearer, reason) in [(forged.as_str(), "signature"), ("garbage", "malformed")] {
            let e = refused(chain.identify(&bearer_and_cookie(bearer, &session("bob", 600))).await);
            assert_eq!((e.status(), e.code()), (401, 40101), "{bearer}");
            assert!(e.to_string().contains(reason), "{e}");
        }
    }

    #[tokio::test]
    async fn bearer_of_a_kind_no_verifier_accepts_with_a_valid_cookie_is_401() {
        let chain = hs256_and_cookie(vec![]);
        // header {"alg":"RS256","typ":"JWT"}: no JWKS verifier is configured.
        let rs256 = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln";
        let e = refused(chain.identify(&bearer_and_cookie(rs256, &session("bob", 600))).await);
        assert_eq!((e.status(), e.code()), (401, 40101));
        assert!(e.to_string().contains("does not accept"), "{e}");
    }

    #[tokio::test]
    async fn authorization_header_of_another_scheme_with_a_valid_cookie_is_401() {
        let chain = hs256_and_cookie(vec![]);
        let cookie = format!("session={}", session("bob", 600));
        for header in ["Basic Ym9iOnNlY3JldA==", "Bearer", "token-without-scheme"] {
            let e = refused(chain.identify(&request(Some(header), Some(&cookie))).await);
            assert_eq!((e.status(), e.code()), (401, 40101), "{header}");
        }
    }

    #[tokio::test]
    async fn valid_bearer_and_a_cookie_for_another_user_yield_only_the_bearer_identity() {
        let chain = hs256_and_cookie(vec![]);
        let (claims, via) = verified(
            chain
                .identify(&bearer_and_cookie(&session("alice", 600), &session("bob", 600)))
                .await,
        );
        assert_eq!(via, "hs256");
        assert_eq!(claims.text("sub").as_deref(), Some("alice"));
        assert_eq!(claims.list("roles"), vec!["alice-role"], "nothing of bob's session");
    }

    #[tokio::test]
    async fn the_cookie_decides_when_there_is_no_authorization_header() {
        let chain = hs256_and_cookie(vec![]);
        let (claims, via) = verified(
            chain
                .identify(&request(None, Some(&format!("session={}", session("bob", 600)))))
                .await,
        );
        assert_eq!((claims.text("sub").as_deref(), via), (Some("bob"), "cookie"));
        let e = refused(
            chain
                .identify(&request(None, Some(&format!("session={}", session("bob", -300)))))
                .await,
        );
        assert_eq!((e.status(), e.code()), (401, 40101));
        assert!(matches!(
            chain.identify(&request(None, Some("session=; theme=dark"))).await,
            Ok(Caller::Anonymous)
        ));
    }

    #[tokio::test]
    async fn trusted_authorizer_context_decides_before_the_bearer_and_the_cookie() {
        let chain = hs256_and_cookie(vec![authorizer(gateway_verdict)]);
        for bearer in [session("alice", 600), session("alice", -300), "opaque".into()] {
            let (claims, via) = verified(chain.identify(&bearer_and_cookie(&bearer, &session("bob", 600))).await);
            assert_eq!(via, "authorizer");
            assert_eq!(
                claims.as_map().keys().collect::<Vec<_>>(),
                ["sub"],
                "only the gateway's claims"
            );
            assert_eq!(claims.text("sub").as_deref(), Some("gateway-user"));
        }
    }

    #[tokio::test]
    async fn absent_authorizer_context_leaves_the_decision_to_the_bearer_header() {
        let chain = hs256_and_cookie(vec![authorizer(|| Verdict::Absent)]);
        let e = refused(
            chain
                .identify(&bearer_and_cookie(&session("alice", -300), &session("bob", 600)))
                .await,
        );
        assert_eq!((e.status(), e.code()), (401, 40101));
        let (claims, via) = verified(
            chain
                .identify(&request(None, Some(&format!("session={}", session("bob", 600)))))
                .await,
        );
        assert_eq!((claims.text("sub").as_deref(), via), (Some("bob"), "cookie"));
    }

    #[tokio::test]
    async fn unreachable_bearer_keys_are_503_not_the_cookie() {
        let hs256 = Arc::new(Hs256Verifier::new(&SecretString::new(SECRET), None, &[]).unwrap());
        let tokens: Vec<Arc<dyn TokenVerifier>> = vec![hs256];
        let chain = VerifierChain::new(vec![
            Box::new(CookieVerifier::new("session", tokens).unwrap()),
            Box::new(Fixed {
                name: "jwks",
                source: Source::Bearer,
                verdict: || Verdict::Rejected(CallerError::Unavailable("the identity provider's keys".into())),
            }),
        ]);
        let e = refused(chain.identify(&bearer_and_cookie("any", &session("bob", 600))).await);
        assert_eq!((e.status(), e.code(), e.retry_after_seconds()), (503, 50300, Some(15)));
    }

    #[tokio::test]
    async fn the_order_verifiers_are_given_in_does_not_change_precedence() {
        let hs256 = Arc::new(Hs256Verifier::new(&SecretString::new(SECRET), None, &[]).unwrap());
        let tokens: Vec<Arc<dyn TokenVerifier>> = vec![hs256.clone()];
        let chain = VerifierChain::new(vec![
            Box::new(CookieVerifier::new("session", tokens).unwrap()),
            Box::new(hs256),
            authorizer(|| Verdict::Absent),
        ]);
        assert_eq!(chain.names(), ["authorizer", "hs256", "cookie"]);
        let e = refused(
            chain
                .identify(&bearer_and_cookie(&session("alice", -300), &session("bob", 600)))
                .await,
        );
        assert_eq!((e.status(), e.code()), (401, 40101));
    }

    #[tokio::test]
    async fn authorization_header_with_no_bearer_verifier_is_401_unless_nothing_is_configured() {
        let chain = VerifierChain::new(vec![authorizer(|| Verdict::Absent)]);
        let e = refused(chain.identify(&request(Some("Bearer abc.def.ghi"), None)).await);
        assert_eq!((e.status(), e.code()), (401, 40101));
        assert!(matches!(
            chain.identify(&request(None, None)).await,
            Ok(Caller::Anonymous)
        ));
        // No verification configured at all: credentials are not looked at (anonymous only).
        let none = VerifierChain::default();
        assert!(matches!(
            none.identify(&request(Some("Bearer abc.def.ghi"), None)).await,
            Ok(Caller::Anonymous)
        ));
    }
}
