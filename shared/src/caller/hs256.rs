//! Session JWTs signed HS256 by the app's own backend.

use super::{bearer_token, jwt_error_reason, BoxFuture, CallerError, CallerVerifier, Claims, Verdict};
use crate::secret::SecretString;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::Request;

/// HS256 secrets shorter than this are refused at start-up (RFC 7518 §3.2: key ≥ hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp`/`nbf`.
pub const LEEWAY_SECONDS: u64 = 30;

pub struct Hs256Verifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Hs256ConfigError {
    #[error("CALLER_HS256_SECRET is {0} bytes; use at least 32 random bytes (e.g. `openssl rand -base64 48`)")]
    TooShort(usize),
}

impl Hs256Verifier {
    /// `issuer`/`audiences`: when given, the token must carry a matching `iss` / `aud`.
    pub fn new(secret: &SecretString, issuer: Option<&str>, audiences: &[String]) -> Result<Self, Hs256ConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Hs256ConfigError::TooShort(secret.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        })
    }

    /// Verify one token.
    pub fn verify_token(&self, token: &str) -> Verdict {
        match jsonwebtoken::decode_header(token) {
            Ok(header) if header.alg == Algorithm::HS256 => {}
            // HS384/HS512/none or an asymmetric alg: not ours to accept. An asymmetric token
            // may be another verifier's; a symmetric one with the wrong alg never is.
            Ok(header) if matches!(header.alg, Algorithm::HS384 | Algorithm::HS512) => {
                return Verdict::Rejected(CallerError::Invalid(
                    "the session token's algorithm is not accepted (HS256 only)".into(),
                ))
            }
            Ok(_) => return Verdict::NotMine,
            Err(e) => return Verdict::Rejected(CallerError::Invalid(jwt_error_reason(&e))),
        }
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Verdict::Verified(data.claims),
            Err(e) => Verdict::Rejected(CallerError::Invalid(jwt_error_reason(&e))),
        }
    }
}

impl CallerVerifier for Hs256Verifier {
    fn name(&self) -> &'static str {
        "hs256"
    }

    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict> {
        let verdict = match bearer_token(request) {
            None => Verdict::Absent,
            Some(Err(e)) => Verdict::Rejected(e),
            Some(Ok(token)) => self.verify_token(token),
        };
        Box::pin(std::future::ready(verdict))
    }
}
