//! Session JWTs signed HS256 by the app's own backend.
//!
//! The secret comes from `CALLER_HS256_SECRET`, or from AWS Secrets Manager
//! (`CALLER_HS256_SECRET_ID`, through the same cache as the Ably key). A rotated secret
//! is picked up within the cache TTL, or sooner: a token whose signature does not verify
//! makes the verifier re-read the secret when its cached copy is older than
//! [`FORCED_REFRESH_MIN_AGE`], so sessions signed with a new secret work at once. Tokens
//! signed with the previous secret (`AWSPREVIOUS`) are not accepted: a rotation made
//! because the secret leaked must end the old one.

use super::{
    bearer_token, jwt_error_reason, BoxFuture, CallerError, CallerVerifier, Claims, Source, Verdict, CRIT_REFUSED,
};
use crate::secret::SecretString;
use crate::secrets::{SecretCache, SecretError, SecretRef, SecretStore};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::Request;
use std::sync::Arc;
use std::time::Duration;

/// HS256 secrets shorter than this are refused at start-up (RFC 7518 §3.2: key ≥ hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp`/`nbf`.
pub const LEEWAY_SECONDS: u64 = 30;
/// A bad signature re-reads a managed secret only when the cached copy is at least this
/// old: at most one extra `GetSecretValue` per 30 s, whatever an attacker sends.
pub const FORCED_REFRESH_MIN_AGE: Duration = Duration::from_secs(30);

pub struct Hs256Verifier {
    secret: Secret,
    validation: Validation,
}

enum Secret {
    /// `CALLER_HS256_SECRET`.
    Fixed(DecodingKey),
    /// `CALLER_HS256_SECRET_ID`.
    Managed(Arc<SecretCache<DecodingKey>>),
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
        Ok(Self {
            secret: Secret::Fixed(DecodingKey::from_secret(secret.expose().as_bytes())),
            validation: validation(issuer, audiences),
        })
    }

    /// The secret read from AWS Secrets Manager (raw, or the field `secret.field` of a JSON
    /// secret), cached by `store`; checked for length when read.
    pub fn managed(store: &SecretStore, secret: SecretRef, issuer: Option<&str>, audiences: &[String]) -> Self {
        let cache = store.cache(secret, |value: &SecretString| {
            if value.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "the HS256 caller secret is {} bytes; store at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -base64 48`)",
                    value.len()
                ));
            }
            Ok(DecodingKey::from_secret(value.expose().as_bytes()))
        });
        Self {
            secret: Secret::Managed(cache),
            validation: validation(issuer, audiences),
        }
    }

    /// Verify one token.
    pub async fn verify_token(&self, token: &str) -> Verdict {
        match jsonwebtoken::decode_header(token) {
            // No extension is implemented, so none may be critical (as for OIDC tokens).
            Ok(header) if header.alg == Algorithm::HS256 && header.crit.is_some() => {
                return Verdict::Rejected(CallerError::Invalid(CRIT_REFUSED.into()))
            }
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
        let cache = match &self.secret {
            Secret::Fixed(key) => return self.decode(token, key),
            Secret::Managed(cache) => cache,
        };
        let key = match cache.get().await {
            Ok(key) => key,
            Err(e) => return Verdict::Rejected(unavailable(e)),
        };
        match jsonwebtoken::decode::<Claims>(token, &key, &self.validation) {
            Ok(data) => Verdict::Verified(data.claims),
            // Maybe signed with a secret rotated in since we read ours: read again (rarely).
            Err(e) if *e.kind() == ErrorKind::InvalidSignature => {
                match cache.refresh_if_older_than(FORCED_REFRESH_MIN_AGE).await {
                    Ok(fresh) if !Arc::ptr_eq(&fresh, &key) => self.decode(token, &fresh),
                    _ => Verdict::Rejected(CallerError::Invalid(jwt_error_reason(&e))),
                }
            }
            Err(e) => Verdict::Rejected(CallerError::Invalid(jwt_error_reason(&e))),
        }
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Verdict {
        match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) => Verdict::Verified(data.claims),
            Err(e) => Verdict::Rejected(CallerError::Invalid(jwt_error_reason(&e))),
        }
    }
}

fn validation(issuer: Option<&str>, audiences: &[String]) -> Validation {
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
    validation
}

/// The secret cannot be read now (503), or is misconfigured: missing, denied or
/// unparseable (500, naming the secret id and what is wrong, never its content).
fn unavailable(e: SecretError) -> CallerError {
    match e {
        SecretError::Misconfigured(why) => {
            tracing::error!(error = %why, "the HS256 caller secret cannot be used");
            CallerError::Misconfigured(why.into())
        }
        SecretError::Unavailable(_) => {
            CallerError::Unavailable("the caller-verification secret (AWS Secrets Manager)".into())
        }
    }
}

impl CallerVerifier for Hs256Verifier {
    fn name(&self) -> &'static str {
        "hs256"
    }

    fn source(&self) -> Source {
        Source::Bearer
    }

    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            match bearer_token(request) {
                None => Verdict::Absent,
                Some(Err(e)) => Verdict::Rejected(e),
                Some(Ok(token)) => self.verify_token(token).await,
            }
        })
    }
}

// Lets the cookie provider verify a cookie's JWT with this verifier.
impl super::TokenVerifier for Hs256Verifier {
    fn verify_jwt<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict> {
        Box::pin(self.verify_token(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::testing::{FakeReader, ManualClock};
    use crate::secrets::{CacheSettings, ReadError, SecretStore};
    use jsonwebtoken::{encode, EncodingKey, Header};

    const OLD: &str = "old-caller-secret-0123456789abcdef0123456789";
    const NEW: &str = "new-caller-secret-0123456789abcdef0123456789";

    fn token(secret: &str) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice", "exp": exp}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn managed(reader: Arc<FakeReader>) -> (Hs256Verifier, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let store = SecretStore::with_clock(reader, CacheSettings::default(), clock.clone());
        let secret = SecretRef {
            id: "prod/caller".into(),
            field: "CALLER_HS256_SECRET".into(),
            id_var: "CALLER_HS256_SECRET_ID",
            field_var: "CALLER_HS256_SECRET_FIELD",
        };
        (Hs256Verifier::managed(&store, secret, None, &[]), clock)
    }

    fn verified(v: Verdict) -> bool {
        matches!(v, Verdict::Verified(_))
    }

    #[tokio::test]
    async fn managed_secret_verifies_session_tokens_with_one_read() {
        let reader = FakeReader::with(&format!(r#"{{"CALLER_HS256_SECRET":"{OLD}"}}"#));
        let (v, _) = managed(reader.clone());
        for _ in 0..20 {
            assert!(verified(v.verify_token(&token(OLD)).await));
        }
        assert_eq!(reader.calls(), 1);
    }

    #[tokio::test]
    async fn token_signed_with_a_rotated_in_secret_is_accepted_once_the_cached_copy_is_30s_old() {
        let reader = FakeReader::with(OLD);
        let (v, clock) = managed(reader.clone());
        assert!(verified(v.verify_token(&token(OLD)).await));
        reader.put(NEW);
        // A bad signature within 30 s of the last read does not read again.
        for _ in 0..10 {
            assert!(matches!(
                v.verify_token(&token(NEW)).await,
                Verdict::Rejected(CallerError::Invalid(_))
            ));
        }
        assert_eq!(reader.calls(), 1);
        clock.advance(FORCED_REFRESH_MIN_AGE);
        assert!(verified(v.verify_token(&token(NEW)).await));
        assert_eq!(reader.calls(), 2);
    }

    #[tokio::test]
    async fn previous_secret_is_refused_once_the_rotation_is_picked_up() {
        let reader = FakeReader::with(OLD);
        let (v, clock) = managed(reader.clone());
        assert!(verified(v.verify_token(&token(OLD)).await));
        reader.put(NEW);
        clock.advance(CacheSettings::default().ttl);
        assert!(verified(v.verify_token(&token(NEW)).await));
        let refused = v.verify_token(&token(OLD)).await;
        assert!(
            matches!(refused, Verdict::Rejected(CallerError::Invalid(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn unreachable_secret_store_is_503_not_401() {
        let reader = FakeReader::with(OLD);
        reader.fail(ReadError::Unavailable("connection refused".into()));
        let (v, _) = managed(reader);
        let Verdict::Rejected(e) = v.verify_token(&token(OLD)).await else {
            panic!()
        };
        let e = crate::error::IssueError::from(e);
        assert_eq!((e.status(), e.retry_after_seconds()), (503, Some(15)));
    }

    #[tokio::test]
    async fn too_short_managed_secret_is_500_without_verifying_anything() {
        let reader = FakeReader::with("short");
        let (v, _) = managed(reader);
        let verdict = v.verify_token(&token("short")).await;
        let Verdict::Rejected(e) = verdict else {
            panic!("{verdict:?}")
        };
        assert!(matches!(e, CallerError::Misconfigured(_)), "{e:?}");
        let e = crate::error::IssueError::from(e);
        assert_eq!((e.status(), e.code()), (500, 50000));
        assert!(!e.to_string().contains("short"), "never the secret's content: {e}");
    }

    #[tokio::test]
    async fn tokens_of_other_algorithms_do_not_read_the_secret() {
        let reader = FakeReader::with(OLD);
        let (v, _) = managed(reader.clone());
        // header {"alg":"RS256","typ":"JWT"}: another verifier's token.
        let rs256 = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln";
        assert!(matches!(v.verify_token(rs256).await, Verdict::NotMine));
        assert!(matches!(v.verify_token("garbage").await, Verdict::Rejected(_)));
        assert_eq!(reader.calls(), 0);
    }

    #[tokio::test]
    async fn hs256_token_with_a_crit_header_is_refused_like_an_oidc_one() {
        let v = Hs256Verifier::new(&SecretString::new(OLD), None, &[]).unwrap();
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        for crit in [vec!["exp".to_owned()], vec!["b64".to_owned()], vec![]] {
            let mut header = Header::new(Algorithm::HS256);
            header.crit = Some(crit.clone());
            let token = encode(
                &header,
                &serde_json::json!({"sub": "alice", "exp": exp}),
                &EncodingKey::from_secret(OLD.as_bytes()),
            )
            .unwrap();
            let verdict = v.verify_token(&token).await;
            let Verdict::Rejected(CallerError::Invalid(reason)) = verdict else {
                panic!("{crit:?}: {verdict:?}")
            };
            assert_eq!(reason, CRIT_REFUSED);
            let e = crate::error::IssueError::from(CallerError::Invalid(reason));
            assert_eq!((e.status(), e.code()), (401, 40101));
        }
    }

    #[tokio::test]
    async fn fixed_secret_still_verifies() {
        let v = Hs256Verifier::new(&SecretString::new(OLD), None, &[]).unwrap();
        assert!(verified(v.verify_token(&token(OLD)).await));
        assert!(!verified(v.verify_token(&token(NEW)).await));
        assert_eq!(
            Hs256Verifier::new(&SecretString::new("short"), None, &[]).err(),
            Some(Hs256ConfigError::TooShort(5))
        );
    }
}
