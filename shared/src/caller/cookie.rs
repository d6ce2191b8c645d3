//! The caller's JWT carried in a cookie (`CALLER_COOKIE=<name>`), for same-site web apps:
//! ably-js sends cookies to a same-origin `authUrl` by default.
//!
//! The cookie's token is verified exactly like a bearer token, by the same token verifiers
//! (HS256 and/or JWKS, chosen by the token's `alg`). It is read only when the request has
//! no `Authorization` header (and no trusted authorizer context); when it is read, its
//! verdict is final: an expired or forged cookie is a 401, not the anonymous grant.

use super::{BoxFuture, CallerError, CallerVerifier, Source, TokenVerifier, Verdict};
use lambda_http::http::header::COOKIE;
use lambda_http::Request;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieConfigError {
    #[error("CALLER_COOKIE {0:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    BadName(String),
    #[error("CALLER_COOKIE needs a way to verify the cookie's token: set CALLER_HS256_SECRET, or CALLER_JWKS_URL / CALLER_ISSUER for an OIDC provider")]
    NoVerifier,
}

/// Reads a JWT from one cookie and verifies it.
pub struct CookieVerifier {
    name: String,
    verifiers: Vec<Arc<dyn TokenVerifier>>,
}

impl std::fmt::Debug for CookieVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieVerifier")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// RFC 6265 `cookie-name` = RFC 7230 `token`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl CookieVerifier {
    pub fn new(name: &str, verifiers: Vec<Arc<dyn TokenVerifier>>) -> Result<Self, CookieConfigError> {
        let name = name.trim();
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(CookieConfigError::BadName(name.to_owned()));
        }
        if verifiers.is_empty() {
            return Err(CookieConfigError::NoVerifier);
        }
        Ok(Self {
            name: name.to_owned(),
            verifiers,
        })
    }

    pub fn cookie_name(&self) -> &str {
        &self.name
    }
}

/// The value of the first cookie called `name` in the request's `Cookie` header(s).
///
/// `Cookie: a=1; b="2"` — pairs separated by `;`, names matched exactly (case-sensitive),
/// a value in double quotes unquoted. Several `Cookie` headers (HTTP/2) are all read.
pub fn cookie_value<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|header| header.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            if n.trim() != name {
                return None;
            }
            let v = v.trim();
            Some(
                v.strip_prefix('"')
                    .and_then(|inner| inner.strip_suffix('"'))
                    .unwrap_or(v),
            )
        })
}

impl CookieVerifier {
    async fn verify_cookie(&self, request: &Request) -> Verdict {
        let Some(token) = cookie_value(request, &self.name).filter(|t| !t.is_empty()) else {
            return Verdict::Absent;
        };
        // The verifier whose kind the token is (by its `alg`) decides, whatever it concludes.
        for verifier in &self.verifiers {
            match verifier.verify_jwt(token).await {
                Verdict::NotMine | Verdict::Absent => {}
                verdict => return verdict,
            }
        }
        Verdict::Rejected(CallerError::Invalid(
            "the session cookie holds a token of a kind this service does not accept (check its alg)".into(),
        ))
    }
}

impl CallerVerifier for CookieVerifier {
    fn name(&self) -> &'static str {
        "cookie"
    }

    fn source(&self) -> Source {
        Source::Cookie
    }

    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict> {
        Box::pin(self.verify_cookie(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;

    fn with_cookies(headers: &[&str]) -> Request {
        let mut builder = lambda_http::http::Request::builder().uri("/auth/jwt");
        for h in headers {
            builder = builder.header(COOKIE, *h);
        }
        builder.body(Body::Empty).unwrap()
    }

    #[test]
    fn finds_the_named_cookie_among_several() {
        let r = with_cookies(&["theme=dark; session=abc.def.ghi; other=1"]);
        assert_eq!(cookie_value(&r, "session"), Some("abc.def.ghi"));
        assert_eq!(cookie_value(&r, "theme"), Some("dark"));
        assert_eq!(cookie_value(&r, "missing"), None);
    }

    #[test]
    fn unquotes_trims_and_matches_names_exactly() {
        let r = with_cookies(&[r#" session = "abc.def" ;Session=upper; my_session=no"#]);
        assert_eq!(cookie_value(&r, "session"), Some("abc.def"));
        assert_eq!(cookie_value(&r, "Session"), Some("upper"));
        assert_eq!(cookie_value(&r, "sess"), None);
    }

    #[test]
    fn reads_every_cookie_header_and_takes_the_first_match() {
        let r = with_cookies(&["a=1", "session=first", "session=second"]);
        assert_eq!(cookie_value(&r, "session"), Some("first"));
        let r = with_cookies(&["flag; session=x=y"]);
        assert_eq!(cookie_value(&r, "session"), Some("x=y"));
    }

    #[test]
    fn cookie_names_are_validated() {
        struct Never;
        impl TokenVerifier for Never {
            fn verify_jwt<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Verdict> {
                Box::pin(std::future::ready(Verdict::NotMine))
            }
        }
        assert!(CookieVerifier::new("__Host-session", vec![Arc::new(Never)]).is_ok());
        assert_eq!(
            CookieVerifier::new("bad name", vec![Arc::new(Never)]).unwrap_err(),
            CookieConfigError::BadName("bad name".into())
        );
        assert_eq!(
            CookieVerifier::new("session", vec![]).unwrap_err(),
            CookieConfigError::NoVerifier
        );
    }
}
