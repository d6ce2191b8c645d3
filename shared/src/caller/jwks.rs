//! OIDC bearer JWTs (Cognito, Auth0, Okta, Clerk, Firebase, Entra ID…) verified with the
//! issuer's published signing keys (a JWKS).
//!
//! - Algorithms: RS256, RS384, RS512, ES256, ES384, EdDSA — each key is bound to the
//!   algorithms its JWK allows (`kty`/`crv`/`alg`); HS* tokens are not ours
//!   ([`Verdict::NotMine`]: the HS256 verifier's, or nobody's), `alg: none` is malformed,
//!   and symmetric (`oct`) keys in a JWKS are ignored, so a public key can never be used
//!   as an HMAC secret. Key hints in the token (`jku`, `jwk`, `x5u`) are never followed.
//! - Claims: `iss` must equal the configured issuer; the audience claim (`aud`, or e.g.
//!   Cognito access tokens' `client_id`) must hold one of the allowed audiences; `exp`
//!   is required and `nbf` honoured, with [`LEEWAY_SECONDS`] of clock skew.
//! - The key cache ([`JwksVerifier`]): fetched lazily, on the first token that needs it,
//!   then once per `Cache-Control: max-age` (default [`DEFAULT_MAX_AGE`], clamped to
//!   [`MIN_MAX_AGE`]..=[`MAX_MAX_AGE`]); concurrent requests share one fetch; an unknown
//!   `kid` refetches at most once per [`MIN_REFETCH_INTERVAL`]; an outage while warm keeps
//!   serving the cached keys (for up to [`MAX_STALENESS`] past their expiry); cold and
//!   unreachable is [`CallerError::Unavailable`] (503, retriable).

use super::fetch::{check_secure_url, FetchError, HttpGet};
use super::{
    bearer_token, discovery, jwt_error_reason, BoxFuture, CallerError, CallerVerifier, Claims, TokenVerifier, Verdict,
};
use crate::clock::Clock;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::Request;
use serde::Deserialize;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Clock skew tolerated on `exp`/`nbf`.
pub const LEEWAY_SECONDS: u64 = 30;
/// How long a JWKS is used when its response has no `Cache-Control: max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// A shorter `max-age` (or `no-cache`) is raised to this: no fetch per request.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// An unknown `kid`, or a failed refresh while warm, refetches at most this often.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch with nothing cached, requests fail fast (503) for this long.
pub const COLD_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Cached keys are served through an outage for at most this long past their expiry.
pub const MAX_STALENESS: Duration = Duration::from_secs(24 * 60 * 60);

/// The asymmetric algorithms accepted.
pub const ACCEPTED_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const WHAT: &str = "the identity provider's key set (JWKS)";

/// Where the keys are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `CALLER_JWKS_URL`.
    Url(String),
    /// `jwks_uri` of `{CALLER_ISSUER}/.well-known/openid-configuration`, looked up on first need.
    Discover,
}

/// What a [`JwksVerifier`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    pub source: JwksSource,
    /// Required `iss`.
    pub issuer: String,
    /// Allowed audiences (at least one).
    pub audiences: Vec<String>,
    /// The claim that must hold one of `audiences`: `aud` (default), or e.g. `client_id` for
    /// Cognito access tokens, `azp` for Clerk session tokens.
    pub audience_claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksConfigError {
    #[error("CALLER_ISSUER is required with JWKS verification: set it to the `iss` your identity provider puts in its tokens")]
    MissingIssuer,
    #[error("CALLER_AUDIENCE is required with JWKS verification: set it to your app's client id / API identifier (comma-separated for several), so tokens the same issuer made for other apps are refused")]
    MissingAudience,
    #[error("{var} {url:?}: {reason}")]
    InsecureUrl {
        var: &'static str,
        url: String,
        reason: &'static str,
    },
    #[error("CALLER_AUDIENCE_CLAIM must be a claim name such as aud, client_id or azp")]
    BadAudienceClaim,
}

/// One usable public key.
struct VerifyKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// The parsed keys of one JWKS document.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

enum Lookup<'a> {
    Found(&'a DecodingKey),
    NotFound,
    WrongAlgorithm,
    NeedsKid,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, for diagnostics.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if k.algorithms.contains(&alg) => Lookup::Found(&k.key),
                Some(_) => Lookup::WrongAlgorithm,
                None => Lookup::NotFound,
            },
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.algorithms.contains(&alg));
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Lookup::Found(&k.key),
                    (Some(_), Some(_)) => Lookup::NeedsKid,
                    (None, _) => Lookup::NotFound,
                }
            }
        }
    }

    /// Parse a JWKS document. Keys that are not usable signature-verification keys of an
    /// accepted algorithm (encryption keys, `oct` secrets, P-521, short RSA moduli,
    /// malformed entries) are skipped; a set with no usable key is an error.
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|e| format!("not a JWKS (expected {{\"keys\":[…]}}: {e})"))?;
        let mut set = KeySet::default();
        let mut skipped = 0usize;
        for raw in document.keys {
            match serde_json::from_value::<RawJwk>(raw).ok().and_then(RawJwk::into_key) {
                Some(key) => set.keys.push(key),
                None => skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "it holds no usable signing key ({skipped} skipped); accepted are RSA (≥ 2048 bits), EC P-256/P-384 and Ed25519 keys with use \"sig\""
            ));
        }
        Ok(set)
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64_len(text: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok().map(|b| b.len())
}

impl RawJwk {
    fn into_key(self) -> Option<VerifyKey> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        if self
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
        {
            return None;
        }
        let alg = self.alg.as_deref();
        let (algorithms, key) = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => {
                let (n, e) = (self.n?, self.e?);
                let modulus = URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')).ok()?;
                let significant = modulus.iter().skip_while(|b| **b == 0).count();
                if significant < 256 {
                    return None;
                }
                let algorithms = match alg {
                    None => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                    Some("RS256") => vec![Algorithm::RS256],
                    Some("RS384") => vec![Algorithm::RS384],
                    Some("RS512") => vec![Algorithm::RS512],
                    Some(_) => return None,
                };
                (algorithms, DecodingKey::from_rsa_components(&n, &e).ok()?)
            }
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (algorithm, size) = if crv == "P-256" {
                    (Algorithm::ES256, 32)
                } else {
                    (Algorithm::ES384, 48)
                };
                if alg.is_some_and(|a| a != format!("{algorithm:?}")) {
                    return None;
                }
                let (x, y) = (self.x?, self.y?);
                if b64_len(&x)? != size || b64_len(&y)? != size {
                    return None;
                }
                (vec![algorithm], DecodingKey::from_ec_components(&x, &y).ok()?)
            }
            ("OKP", Some("Ed25519")) => {
                if alg.is_some_and(|a| a != "EdDSA" && a != "Ed25519") {
                    return None;
                }
                let x = self.x?;
                if b64_len(&x)? != 32 {
                    return None;
                }
                (vec![Algorithm::EdDSA], DecodingKey::from_ed_components(&x).ok()?)
            }
            _ => return None,
        };
        Some(VerifyKey {
            kid: self.kid,
            algorithms,
            key,
        })
    }
}

/// The cache's state; guarded by a std mutex held only for a few instructions.
#[derive(Default)]
struct Cache {
    keys: Option<Arc<KeySet>>,
    /// When the keys expire (ms, the injected clock).
    fresh_until_ms: u64,
    /// Start of the last fetch attempt, successful or not.
    last_attempt_ms: Option<u64>,
    last_failed: bool,
    /// Start of the last fetch made for an unknown `kid` (rate-limited).
    last_kid_refetch_ms: Option<u64>,
    /// Incremented when an attempt completes: a waiter that sees it move shares that attempt.
    generation: u64,
    /// The `jwks_uri` found by discovery.
    discovered_url: Option<String>,
    fetches: u64,
}

struct Snapshot {
    keys: Option<Arc<KeySet>>,
    fresh: bool,
    generation: u64,
    /// A fetch was attempted less than this many ms ago (`None`: never).
    since_attempt_ms: Option<u64>,
    since_kid_refetch_ms: Option<u64>,
    last_failed: bool,
    stale_for_ms: u64,
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Nothing cached.
    Cold,
    /// The cached keys expired, but hold the token's key.
    Expired,
    /// The token's key is not in the cached set.
    UnknownKid,
}

fn lookup(keys: Arc<KeySet>, kid: Option<&str>, alg: Algorithm) -> Result<Arc<KeySet>, CallerError> {
    match keys.find(kid, alg) {
        Lookup::Found(_) => Ok(keys),
        Lookup::NotFound => Err(CallerError::Invalid(
            "the token is signed with a key (kid) the issuer does not publish; sign in again for a fresh token".into(),
        )),
        Lookup::WrongAlgorithm => Err(CallerError::Invalid(
            "the token's algorithm does not match its signing key (kid)".into(),
        )),
        Lookup::NeedsKid => Err(CallerError::Invalid(
            "the token has no key id (kid) and the issuer publishes several keys".into(),
        )),
    }
}

/// Verifies asymmetric bearer JWTs against a cached JWKS.
pub struct JwksVerifier {
    settings: JwksSettings,
    /// By key family: RSA, EC, Ed.
    validations: [Validation; 3],
    http: Arc<dyn HttpGet>,
    clock: Arc<dyn Clock>,
    cache: Mutex<Cache>,
    /// Single flight: held for the duration of one fetch.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl JwksVerifier {
    pub fn new(settings: JwksSettings, http: Arc<dyn HttpGet>, clock: Arc<dyn Clock>) -> Result<Self, JwksConfigError> {
        if settings.issuer.trim().is_empty() {
            return Err(JwksConfigError::MissingIssuer);
        }
        if settings.audiences.iter().all(|a| a.trim().is_empty()) {
            return Err(JwksConfigError::MissingAudience);
        }
        if settings.audience_claim.is_empty() || settings.audience_claim.contains(|c: char| c.is_whitespace()) {
            return Err(JwksConfigError::BadAudienceClaim);
        }
        match &settings.source {
            JwksSource::Url(url) => check_secure_url(url).map_err(|reason| JwksConfigError::InsecureUrl {
                var: "CALLER_JWKS_URL",
                url: url.clone(),
                reason,
            })?,
            JwksSource::Discover => {
                check_secure_url(&discovery::discovery_url(&settings.issuer)).map_err(|reason| {
                    JwksConfigError::InsecureUrl {
                        var: "CALLER_ISSUER",
                        url: settings.issuer.clone(),
                        reason,
                    }
                })?
            }
        }
        // jsonwebtoken wants every algorithm of a Validation in the verifying key's family.
        let validation = |algorithms: &[Algorithm]| {
            let mut validation = Validation::new(algorithms[0]);
            validation.algorithms = algorithms.to_vec();
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_issuer(&[settings.issuer.as_str()]);
            if settings.audience_claim == "aud" {
                validation.set_audience(&settings.audiences);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            } else {
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "iss"]);
            }
            validation
        };
        let validations = [
            validation(&[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512]),
            validation(&[Algorithm::ES256, Algorithm::ES384]),
            validation(&[Algorithm::EdDSA]),
        ];
        Ok(Self {
            settings,
            validations,
            http,
            clock,
            cache: Mutex::new(Cache::default()),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// How many JWKS fetches this verifier has attempted (diagnostics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.lock().fetches
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding this lock cannot leave the cache inconsistent (every update
        // is a few plain assignments), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self, now_ms: u64) -> Snapshot {
        let cache = self.lock();
        Snapshot {
            keys: cache.keys.clone(),
            fresh: now_ms < cache.fresh_until_ms,
            generation: cache.generation,
            since_attempt_ms: cache.last_attempt_ms.map(|t| now_ms.saturating_sub(t)),
            since_kid_refetch_ms: cache.last_kid_refetch_ms.map(|t| now_ms.saturating_sub(t)),
            last_failed: cache.last_failed,
            stale_for_ms: now_ms.saturating_sub(cache.fresh_until_ms),
        }
    }

    /// Verify one token. Verdicts: `NotMine` for HS* tokens; `Rejected(Invalid)` for a bad
    /// token; `Rejected(Unavailable)` when the keys cannot be had.
    pub async fn verify(&self, token: &str) -> Verdict {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(e) => return Verdict::Rejected(CallerError::Invalid(jwt_error_reason(&e))),
        };
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Verdict::NotMine;
        }
        if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
            return Verdict::Rejected(CallerError::Invalid(
                "the token's algorithm is not accepted (RS256, RS384, RS512, ES256, ES384 or EdDSA)".into(),
            ));
        }
        if header.crit.is_some() {
            return Verdict::Rejected(CallerError::Invalid(super::CRIT_REFUSED.into()));
        }
        let keys = match self.keys_for(header.kid.as_deref(), header.alg).await {
            Ok(keys) => keys,
            Err(e) => return Verdict::Rejected(e),
        };
        let Lookup::Found(key) = keys.find(header.kid.as_deref(), header.alg) else {
            // keys_for answers a set holding the key.
            return Verdict::Rejected(CallerError::Invalid(
                "the token is signed with a key the issuer does not publish".into(),
            ));
        };
        let validation = match header.alg {
            Algorithm::ES256 | Algorithm::ES384 => &self.validations[1],
            Algorithm::EdDSA => &self.validations[2],
            _ => &self.validations[0],
        };
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
            Ok(data) => {
                if self.settings.audience_claim != "aud" && !self.audience_matches(&data.claims) {
                    return Verdict::Rejected(CallerError::Invalid(
                        format!(
                            "the token is meant for another audience ({})",
                            self.settings.audience_claim
                        )
                        .into(),
                    ));
                }
                Verdict::Verified(data.claims)
            }
            Err(e) => Verdict::Rejected(CallerError::Invalid(jwt_error_reason(&e))),
        }
    }

    fn audience_matches(&self, claims: &Claims) -> bool {
        let allowed = |v: &str| self.settings.audiences.iter().any(|a| a == v);
        match claims.get(&self.settings.audience_claim) {
            Some(Value::String(s)) => allowed(s),
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str().is_some_and(allowed)),
            _ => false,
        }
    }

    /// A key set holding a key for `(kid, alg)`, fetching or refreshing as the rules allow.
    async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<KeySet>, CallerError> {
        let now = self.clock.now_ms();
        let snap = self.snapshot(now);
        let within = |since: Option<u64>, limit: Duration| since.is_some_and(|t| t < ms(limit));

        let Some(keys) = snap.keys else {
            // Cold: fetch, unless a fetch just failed (fail fast instead of queueing).
            if snap.last_failed && within(snap.since_attempt_ms, COLD_RETRY_INTERVAL) {
                return Err(CallerError::Unavailable(WHAT.into()));
            }
            self.refresh(snap.generation, Reason::Cold).await;
            return match self.snapshot(self.clock.now_ms()).keys {
                Some(keys) => lookup(keys, kid, alg),
                None => Err(CallerError::Unavailable(WHAT.into())),
            };
        };

        let found = matches!(keys.find(kid, alg), Lookup::Found(_));
        if snap.fresh {
            if found || within(snap.since_kid_refetch_ms, MIN_REFETCH_INTERVAL) {
                return lookup(keys, kid, alg);
            }
            // An unknown kid: perhaps a rotation. Refetch, at most once a minute.
            self.refresh(snap.generation, Reason::UnknownKid).await;
            let keys = self.snapshot(self.clock.now_ms()).keys.unwrap_or(keys);
            return lookup(keys, kid, alg);
        }

        // Expired: refresh, unless that just failed (then serve the cached keys).
        if !(snap.last_failed && within(snap.since_attempt_ms, MIN_REFETCH_INTERVAL)) {
            let reason = if found { Reason::Expired } else { Reason::UnknownKid };
            self.refresh(snap.generation, reason).await;
        }
        let after = self.snapshot(self.clock.now_ms());
        if !after.fresh && after.stale_for_ms > ms(MAX_STALENESS) {
            tracing::error!(
                stale_seconds = after.stale_for_ms / 1000,
                "refusing JWKS keys that could not be refreshed for too long"
            );
            return Err(CallerError::Unavailable(WHAT.into()));
        }
        lookup(after.keys.unwrap_or(keys), kid, alg)
    }

    /// Fetch the JWKS once, shared by everyone waiting: `observed` is the generation the
    /// caller saw; if an attempt completed since, it is shared instead of repeated. With
    /// [`Reason::Expired`] the caller has a usable (stale) key and does not queue behind a
    /// fetch already running.
    async fn refresh(&self, observed: u64, reason: Reason) {
        let _guard = if reason == Reason::Expired {
            match self.refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        } else {
            self.refresh.lock().await
        };
        let started = self.clock.now_ms();
        let url = {
            let mut cache = self.lock();
            if cache.generation != observed {
                return;
            }
            cache.last_attempt_ms = Some(started);
            if reason == Reason::UnknownKid {
                cache.last_kid_refetch_ms = Some(started);
            }
            cache.fetches += 1;
            cache.discovered_url.clone()
        };
        let outcome = self.fetch(url).await;
        let mut cache = self.lock();
        cache.generation += 1;
        match outcome {
            Ok((keys, max_age, discovered)) => {
                let lifetime = max_age.unwrap_or(DEFAULT_MAX_AGE).clamp(MIN_MAX_AGE, MAX_MAX_AGE);
                tracing::info!(
                    keys = keys.len(),
                    max_age_seconds = lifetime.as_secs(),
                    "fetched the identity provider's signing keys (JWKS)"
                );
                cache.keys = Some(Arc::new(keys));
                cache.fresh_until_ms = started.saturating_add(ms(lifetime));
                cache.last_failed = false;
                if discovered.is_some() {
                    cache.discovered_url = discovered;
                }
            }
            Err(e) => {
                cache.last_failed = true;
                if cache.keys.is_some() {
                    tracing::warn!(error = %e, "cannot refresh the JWKS; serving the cached keys");
                } else {
                    tracing::error!(error = %e, "cannot fetch the JWKS; bearer tokens get 503 until it is reachable");
                }
            }
        }
    }

    /// Resolve the URL (discovery on first need) and fetch and parse the key set.
    async fn fetch(
        &self,
        discovered: Option<String>,
    ) -> Result<(KeySet, Option<Duration>, Option<String>), FetchError> {
        let (url, newly_discovered) = match (&self.settings.source, discovered) {
            (JwksSource::Url(url), _) => (url.clone(), None),
            (JwksSource::Discover, Some(url)) => (url, None),
            (JwksSource::Discover, None) => {
                let url = discovery::jwks_uri(self.http.as_ref(), &self.settings.issuer).await?;
                (url.clone(), Some(url))
            }
        };
        let document = self.http.get(&url).await?;
        let keys = KeySet::parse(&document.body).map_err(|reason| FetchError::Malformed { url, reason })?;
        Ok((keys, document.max_age, newly_discovered))
    }
}

impl TokenVerifier for JwksVerifier {
    fn verify_jwt<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Verdict> {
        Box::pin(self.verify(token))
    }
}

impl CallerVerifier for JwksVerifier {
    fn name(&self) -> &'static str {
        "jwks"
    }

    fn source(&self) -> super::Source {
        super::Source::Bearer
    }

    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            match bearer_token(request) {
                None => Verdict::Absent,
                Some(Err(e)) => Verdict::Rejected(e),
                Some(Ok(token)) => JwksVerifier::verify(self, token).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::fetch::Document;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU64, Ordering};

    const ISSUER: &str = "https://idp.example";

    struct TestClock(AtomicU64);

    impl Clock for TestClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Answers scripted results in order (the last one forever), counting calls.
    struct Scripted {
        answers: Mutex<VecDeque<Result<Document, FetchError>>>,
        calls: AtomicU64,
    }

    impl HttpGet for Scripted {
        fn get<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Document, FetchError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            let answer = if answers.len() > 1 {
                answers.pop_front().unwrap()
            } else {
                answers.front().cloned().unwrap()
            };
            Box::pin(std::future::ready(answer))
        }
    }

    fn ed25519() -> (EncodingKey, Value) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": URL_SAFE_NO_PAD.encode(public)});
        (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk)
    }

    fn token(key: &EncodingKey) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed".into());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({"iss": ISSUER, "aud": "app", "sub": "alice", "exp": now + 3600});
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn verifier(answers: Vec<Result<Document, FetchError>>) -> (JwksVerifier, Arc<Scripted>, Arc<TestClock>) {
        let http = Arc::new(Scripted {
            answers: Mutex::new(answers.into()),
            calls: AtomicU64::new(0),
        });
        let clock = Arc::new(TestClock(AtomicU64::new(1_700_000_000_000)));
        let settings = JwksSettings {
            source: JwksSource::Url("https://idp.example/jwks".into()),
            issuer: ISSUER.into(),
            audiences: vec!["app".into()],
            audience_claim: "aud".into(),
        };
        (
            JwksVerifier::new(settings, http.clone(), clock.clone()).unwrap(),
            http,
            clock,
        )
    }

    fn ok(jwk: &Value) -> Result<Document, FetchError> {
        Ok(Document {
            body: json!({ "keys": [jwk] }).to_string().into_bytes(),
            max_age: None,
        })
    }

    fn down() -> Result<Document, FetchError> {
        Err(FetchError::Unreachable {
            url: "https://idp.example/jwks".into(),
            reason: "connection refused".into(),
        })
    }

    fn advance(clock: &TestClock, by: Duration) {
        clock.0.fetch_add(ms(by), Ordering::SeqCst);
    }

    #[tokio::test]
    async fn parse_keeps_only_usable_signature_keys() {
        let (_, ed) = ed25519();
        let doc = json!({"keys": [
            ed,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "short", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 128]), "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "pss", "alg": "PS256", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 256]), "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 256]), "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "EC", "kid": "p256-short", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
            {"kty": "EC", "kid": "p256-as-384", "crv": "P-256", "alg": "ES384",
             "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])},
            {"kty": "EC", "kid": "p256", "crv": "P-256",
             "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])},
            "not an object"
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.kids(), vec!["ed", "rsa", "p256"]);
        assert!(matches!(set.find(Some("rsa"), Algorithm::RS512), Lookup::Found(_)));
        assert!(matches!(
            set.find(Some("rsa"), Algorithm::ES256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(set.find(None, Algorithm::ES256), Lookup::Found(_)));
        assert!(matches!(set.find(Some("hmac"), Algorithm::HS256), Lookup::NotFound));

        let e = KeySet::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
            .err()
            .unwrap();
        assert!(e.contains("no usable signing key (1 skipped)"), "{e}");
        assert!(KeySet::parse(b"[]").is_err());
    }

    #[tokio::test]
    async fn cached_keys_outlive_an_outage_for_at_most_max_staleness() {
        let (key, jwk) = ed25519();
        let (verifier, http, clock) = verifier(vec![ok(&jwk), down()]);
        let token = token(&key);
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));

        advance(&clock, DEFAULT_MAX_AGE + MAX_STALENESS - Duration::from_secs(120));
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(http.calls.load(Ordering::SeqCst), 2);

        advance(&clock, Duration::from_secs(180));
        match verifier.verify(&token).await {
            Verdict::Rejected(CallerError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(http.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn hmac_tokens_are_not_ours_and_need_no_fetch() {
        let (verifier, http, _) = verifier(vec![down()]);
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "x"}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(verifier.verify(&hs).await, Verdict::NotMine));
        assert_eq!(http.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn configuration_requires_issuer_audience_and_a_safe_url() {
        let http: Arc<dyn HttpGet> = Arc::new(Scripted {
            answers: Mutex::new(VecDeque::new()),
            calls: AtomicU64::new(0),
        });
        let clock: Arc<dyn Clock> = Arc::new(TestClock(AtomicU64::new(0)));
        let base = JwksSettings {
            source: JwksSource::Url("https://idp.example/jwks".into()),
            issuer: ISSUER.into(),
            audiences: vec!["app".into()],
            audience_claim: "aud".into(),
        };
        let build = |s: JwksSettings| JwksVerifier::new(s, http.clone(), clock.clone()).err();
        assert_eq!(build(base.clone()), None);
        assert_eq!(
            build(JwksSettings {
                issuer: " ".into(),
                ..base.clone()
            }),
            Some(JwksConfigError::MissingIssuer)
        );
        assert_eq!(
            build(JwksSettings {
                audiences: vec![],
                ..base.clone()
            }),
            Some(JwksConfigError::MissingAudience)
        );
        assert!(matches!(
            build(JwksSettings {
                source: JwksSource::Url("http://idp.example/jwks".into()),
                ..base.clone()
            }),
            Some(JwksConfigError::InsecureUrl { .. })
        ));
        assert_eq!(
            build(JwksSettings {
                audience_claim: "client id".into(),
                ..base
            }),
            Some(JwksConfigError::BadAudienceClaim)
        );
    }
}
