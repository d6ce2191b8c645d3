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
//! - A degraded identity provider stays cheap: one attempt (discovery and JWKS together)
//!   gets at most [`FETCH_DEADLINE`]; the fail-fast windows ([`COLD_RETRY_INTERVAL`] cold,
//!   [`MIN_REFETCH_INTERVAL`] warm) count from the *end* of a failed attempt, so a request
//!   arriving inside one answers at once (503, or the cached keys) without touching the
//!   network; and while the provider is known to be down, only the one request that
//!   retries waits for it — the others answer at once instead of queueing behind it.
//! - Discovery ([`JwksSource::Discover`]) runs once: the `jwks_uri` it finds is kept, also
//!   across JWKS failures, and looked up again only after fetches from it have been failing
//!   for [`REDISCOVER_AFTER`] (then at most once per that interval), in case the provider
//!   moved its keys.

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
/// After a failed fetch with nothing cached, requests fail fast (503) for this long,
/// counted from the end of the failed attempt.
pub const COLD_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// The most one fetch attempt (discovery and JWKS together) may take, whatever the HTTP
/// client's own timeouts. With the Ably call of the token routes (5 s at most) a request
/// stays under the 10 s the SDKs (and the function timeout) allow.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(3);
/// A discovered `jwks_uri` that has been failing this long is looked up again.
pub const REDISCOVER_AFTER: Duration = Duration::from_secs(10 * 60);
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
    /// End of the last attempt if it failed (timed out or errored); `None` after a success.
    /// The fail-fast windows count from here, so a slow failure does not use up its own
    /// window.
    failed_at_ms: Option<u64>,
    /// Start of the first attempt of the current run of failures (or of the last
    /// re-discovery during it): when to look the `jwks_uri` up again.
    failing_since_ms: Option<u64>,
    /// End of the last fetch made for an unknown `kid` (rate-limited).
    last_kid_refetch_ms: Option<u64>,
    /// Incremented when an attempt completes: a waiter that sees it move shares that attempt.
    generation: u64,
    /// The `jwks_uri` found by discovery; kept across failures.
    discovered_url: Option<String>,
    fetches: u64,
    discoveries: u64,
}

struct Snapshot {
    keys: Option<Arc<KeySet>>,
    fresh: bool,
    generation: u64,
    /// The last attempt failed, and ended this many ms ago (`None`: it succeeded, or none yet).
    since_failure_ms: Option<u64>,
    since_kid_refetch_ms: Option<u64>,
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
    /// [`FETCH_DEADLINE`] unless set with [`JwksVerifier::with_fetch_deadline`].
    fetch_deadline: Duration,
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
            fetch_deadline: FETCH_DEADLINE,
        })
    }

    /// Give one fetch attempt (discovery and JWKS together) `deadline` instead of
    /// [`FETCH_DEADLINE`] (tests use a fraction of a second).
    pub fn with_fetch_deadline(mut self, deadline: Duration) -> Self {
        self.fetch_deadline = deadline;
        self
    }

    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// How many JWKS fetches this verifier has attempted (diagnostics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.lock().fetches
    }

    /// How many OpenID discovery lookups this verifier has attempted (diagnostics and tests).
    pub fn discovery_count(&self) -> u64 {
        self.lock().discoveries
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
            since_failure_ms: cache.failed_at_ms.map(|t| now_ms.saturating_sub(t)),
            since_kid_refetch_ms: cache.last_kid_refetch_ms.map(|t| now_ms.saturating_sub(t)),
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

        // The provider is known to be down: the last attempt failed.
        let known_down = snap.since_failure_ms.is_some();

        let Some(keys) = snap.keys else {
            // Cold: fetch, unless a fetch just failed (fail fast instead of queueing).
            if within(snap.since_failure_ms, COLD_RETRY_INTERVAL) {
                return Err(CallerError::Unavailable(WHAT.into()));
            }
            self.refresh(snap.generation, Reason::Cold, known_down).await;
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
            self.refresh(snap.generation, Reason::UnknownKid, known_down).await;
            let keys = self.snapshot(self.clock.now_ms()).keys.unwrap_or(keys);
            return lookup(keys, kid, alg);
        }

        // Expired: refresh, unless that just failed (then serve the cached keys).
        if !within(snap.since_failure_ms, MIN_REFETCH_INTERVAL) {
            let reason = if found { Reason::Expired } else { Reason::UnknownKid };
            self.refresh(snap.generation, reason, known_down).await;
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
    /// caller saw; if an attempt completed since, it is shared instead of repeated. A caller
    /// that can answer without it (a usable stale key, [`Reason::Expired`]) or that would
    /// only wait on a provider `known_down` does not queue behind an attempt already
    /// running: it answers from the cache at once.
    async fn refresh(&self, observed: u64, reason: Reason, known_down: bool) {
        let _guard = if reason == Reason::Expired || known_down {
            match self.refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        } else {
            // Waiting for another request's fetch ends by this request's deadline too.
            match crate::deadline::cut_off(self.refresh.lock()).await {
                Some(guard) => guard,
                None => return,
            }
        };
        let started = self.clock.now_ms();
        let (known_url, rediscover) = {
            let mut cache = self.lock();
            if cache.generation != observed {
                return;
            }
            cache.fetches += 1;
            let rediscover = cache.discovered_url.is_some()
                && cache
                    .failing_since_ms
                    .is_some_and(|t| started.saturating_sub(t) >= ms(REDISCOVER_AFTER));
            if rediscover {
                // At most one re-discovery per REDISCOVER_AFTER while the failures go on.
                cache.failing_since_ms = Some(started);
            }
            (cache.discovered_url.clone(), rediscover)
        };
        // One attempt takes its own bound at most, and no longer than the request has left.
        let budget = crate::deadline::bounded(self.fetch_deadline);
        let deadline = tokio::time::Instant::now() + budget;
        let outcome = self.fetch(known_url, rediscover, deadline).await;
        // Cut off by the request's deadline, not by its own bound: this request's lack of
        // time, not the provider's failure. Nothing is recorded; the next request fetches.
        let cut_off = budget < self.fetch_deadline && matches!(outcome, Err(FetchError::Timeout { .. }));
        let ended = self.clock.now_ms();
        let mut cache = self.lock();
        // A cut-off fetch completes nothing: requests waiting for it fetch with their own
        // time, and an unknown kid may be looked up again.
        if !cut_off {
            cache.generation += 1;
            if reason == Reason::UnknownKid {
                cache.last_kid_refetch_ms = Some(ended);
            }
        }
        match outcome {
            Err(e) if cut_off => tracing::warn!(
                error = %e,
                budget_ms = budget.as_millis() as u64,
                "JWKS fetch cut off at the request's deadline; the next request fetches again"
            ),
            Ok((keys, max_age)) => {
                let lifetime = max_age.unwrap_or(DEFAULT_MAX_AGE).clamp(MIN_MAX_AGE, MAX_MAX_AGE);
                tracing::info!(
                    keys = keys.len(),
                    max_age_seconds = lifetime.as_secs(),
                    "fetched the identity provider's signing keys (JWKS)"
                );
                cache.keys = Some(Arc::new(keys));
                cache.fresh_until_ms = started.saturating_add(ms(lifetime));
                cache.failed_at_ms = None;
                cache.failing_since_ms = None;
            }
            Err(e) => {
                crate::metrics::upstream_failure(crate::metrics::Dependency::Jwks, e.failure());
                cache.failed_at_ms = Some(ended);
                cache.failing_since_ms.get_or_insert(started);
                if cache.keys.is_some() {
                    tracing::warn!(
                        error = %e,
                        attempt_ms = ended.saturating_sub(started),
                        "cannot refresh the JWKS; serving the cached keys"
                    );
                } else {
                    tracing::error!(
                        error = %e,
                        attempt_ms = ended.saturating_sub(started),
                        "cannot fetch the JWKS; bearer tokens get 503 until it is reachable"
                    );
                }
            }
        }
    }

    /// Resolve the URL (discovery when none is known yet, or when `rediscover`) and fetch
    /// and parse the key set, all before `deadline`. A URL found by discovery is kept at
    /// once, so a JWKS failure after it does not repeat the discovery.
    async fn fetch(
        &self,
        known_url: Option<String>,
        rediscover: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(KeySet, Option<Duration>), FetchError> {
        let url = match (&self.settings.source, known_url) {
            (JwksSource::Url(url), _) => url.clone(),
            (JwksSource::Discover, Some(url)) if !rediscover => url,
            (JwksSource::Discover, _) => {
                if rediscover {
                    tracing::warn!(
                        failing_for_at_least_seconds = REDISCOVER_AFTER.as_secs(),
                        "the JWKS URL found by discovery keeps failing; looking it up again"
                    );
                }
                self.lock().discoveries += 1;
                let lookup = discovery::jwks_uri(self.http.as_ref(), &self.settings.issuer);
                let url = within_deadline(
                    deadline,
                    self.fetch_deadline,
                    discovery::discovery_url(&self.settings.issuer),
                    lookup,
                )
                .await?;
                self.lock().discovered_url = Some(url.clone());
                url
            }
        };
        let document = within_deadline(deadline, self.fetch_deadline, url.clone(), self.http.get(&url)).await?;
        let keys = KeySet::parse(&document.body).map_err(|reason| FetchError::Malformed { url, reason })?;
        Ok((keys, document.max_age))
    }
}

/// `work`, or [`FetchError::Timeout`] for `url` once `deadline` (`budget` after the
/// attempt's start) has passed.
async fn within_deadline<T>(
    deadline: tokio::time::Instant,
    budget: Duration,
    url: String,
    work: impl std::future::Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout {
            url,
            budget_ms: ms(budget),
        }),
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
    use crate::error::IssueError;
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

    const KEYS_URL: &str = "https://idp.example/keys";
    const MOVED_KEYS_URL: &str = "https://keys.idp.example/jwks";
    const DISCOVERY_URL: &str = "https://idp.example/.well-known/openid-configuration";

    /// How a fake endpoint answers one request.
    #[derive(Clone)]
    enum Answer {
        Now(Result<Document, FetchError>),
        /// After this much real time.
        After(Duration, Result<Document, FetchError>),
        /// Fails once this much test-clock time has passed (a slow timeout).
        SlowFailure(Duration),
        /// Never.
        Hang,
    }

    /// A fake identity provider: scripted answers per URL (the last one forever), counting
    /// the calls to each.
    struct Idp {
        clock: Arc<TestClock>,
        routes: Mutex<std::collections::HashMap<String, VecDeque<Answer>>>,
        calls: Mutex<std::collections::HashMap<String, u64>>,
    }

    impl Idp {
        fn set(&self, url: &str, answers: Vec<Answer>) {
            self.routes.lock().unwrap().insert(url.to_owned(), answers.into());
        }

        fn calls(&self, url: &str) -> u64 {
            self.calls.lock().unwrap().get(url).copied().unwrap_or(0)
        }
    }

    impl HttpGet for Idp {
        fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Document, FetchError>> {
            *self.calls.lock().unwrap().entry(url.to_owned()).or_default() += 1;
            let answer = {
                let mut routes = self.routes.lock().unwrap();
                let answers = routes.get_mut(url).unwrap_or_else(|| panic!("unexpected GET {url}"));
                if answers.len() > 1 {
                    answers.pop_front().unwrap()
                } else {
                    answers.front().cloned().unwrap()
                }
            };
            match answer {
                Answer::Now(result) => Box::pin(std::future::ready(result)),
                Answer::After(delay, result) => Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    result
                }),
                Answer::SlowFailure(takes) => {
                    advance(&self.clock, takes);
                    Box::pin(std::future::ready(Err(FetchError::Unreachable {
                        url: url.to_owned(),
                        reason: "timed out".into(),
                    })))
                }
                Answer::Hang => Box::pin(std::future::pending()),
            }
        }
    }

    fn idp_verifier(source: JwksSource, deadline: Duration) -> (JwksVerifier, Arc<Idp>, Arc<TestClock>) {
        let clock = Arc::new(TestClock(AtomicU64::new(1_700_000_000_000)));
        let idp = Arc::new(Idp {
            clock: clock.clone(),
            routes: Mutex::default(),
            calls: Mutex::default(),
        });
        let settings = JwksSettings {
            source,
            issuer: ISSUER.into(),
            audiences: vec!["app".into()],
            audience_claim: "aud".into(),
        };
        let verifier = JwksVerifier::new(settings, idp.clone(), clock.clone())
            .unwrap()
            .with_fetch_deadline(deadline);
        (verifier, idp, clock)
    }

    fn configuration(jwks_uri: &str) -> Answer {
        Answer::Now(Ok(Document {
            body: json!({"issuer": ISSUER, "jwks_uri": jwks_uri}).to_string().into_bytes(),
            max_age: None,
        }))
    }

    fn assert_unavailable(verdict: Verdict) {
        match verdict {
            Verdict::Rejected(e @ CallerError::Unavailable(_)) => {
                let issue = IssueError::from(e);
                assert_eq!((issue.status(), issue.code()), (503, 50300));
                assert!(issue.retry_after_seconds().is_some_and(|s| s > 0));
            }
            other => panic!("expected Unavailable (503 50300), got {other:?}"),
        }
    }

    /// `verify`, and how long it took.
    async fn timed(verifier: &JwksVerifier, token: &str) -> (Verdict, Duration) {
        let started = std::time::Instant::now();
        let verdict = verifier.verify(token).await;
        (verdict, started.elapsed())
    }

    #[tokio::test]
    async fn cold_fail_fast_window_counts_from_the_end_of_a_slow_failed_attempt() {
        let (key, jwk) = ed25519();
        let (verifier, idp, clock) = idp_verifier(JwksSource::Url(KEYS_URL.into()), FETCH_DEADLINE);
        idp.set(KEYS_URL, vec![Answer::SlowFailure(Duration::from_secs(5))]);
        let token = token(&key);
        assert_unavailable(verifier.verify(&token).await);
        assert_eq!(idp.calls(KEYS_URL), 1);

        // 5 s after the attempt started, 0 s after it ended: still inside the window.
        let (verdict, took) = timed(&verifier, &token).await;
        assert_unavailable(verdict);
        eprintln!("fail-fast answer right after a 5 s failed attempt: {took:?}");
        assert!(took < Duration::from_millis(100), "{took:?}");
        assert_eq!(idp.calls(KEYS_URL), 1, "no new attempt inside the window");

        advance(&clock, COLD_RETRY_INTERVAL - Duration::from_millis(100));
        assert_unavailable(verifier.verify(&token).await);
        assert_eq!(idp.calls(KEYS_URL), 1);

        // The window is over: one new attempt, which succeeds.
        advance(&clock, Duration::from_millis(200));
        idp.set(KEYS_URL, vec![Answer::Now(ok(&jwk))]);
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(KEYS_URL), 2);
    }

    #[tokio::test]
    async fn warm_refetch_window_counts_from_the_end_of_a_slow_failed_refresh() {
        let (key, jwk) = ed25519();
        let (verifier, idp, clock) = idp_verifier(JwksSource::Url(KEYS_URL.into()), FETCH_DEADLINE);
        idp.set(
            KEYS_URL,
            vec![Answer::Now(ok(&jwk)), Answer::SlowFailure(Duration::from_secs(5))],
        );
        let token = token(&key);
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));

        // Expired; the refresh fails after 5 s and the cached keys are served.
        advance(&clock, DEFAULT_MAX_AGE + Duration::from_secs(1));
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(KEYS_URL), 2);

        // 63 s after that attempt started, 58 s after it ended: no new attempt yet.
        advance(&clock, MIN_REFETCH_INTERVAL - Duration::from_secs(2));
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(KEYS_URL), 2);

        advance(&clock, Duration::from_secs(3));
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(KEYS_URL), 3);
    }

    #[tokio::test]
    async fn a_hanging_jwks_is_cut_off_at_the_fetch_deadline_then_requests_fail_fast() {
        let (key, _) = ed25519();
        let deadline = Duration::from_millis(200);
        let (verifier, idp, _) = idp_verifier(JwksSource::Url(KEYS_URL.into()), deadline);
        idp.set(KEYS_URL, vec![Answer::Hang]);
        let token = token(&key);

        let (verdict, took) = timed(&verifier, &token).await;
        assert_unavailable(verdict);
        eprintln!("cold request against a hanging JWKS (deadline {deadline:?}): {took:?}");
        assert!(took >= deadline && took < Duration::from_secs(2), "{took:?}");

        for _ in 0..10 {
            let (verdict, took) = timed(&verifier, &token).await;
            assert_unavailable(verdict);
            assert!(took < Duration::from_millis(100), "{took:?}");
        }
        assert_eq!(idp.calls(KEYS_URL), 1);
        assert_eq!(verifier.fetch_count(), 1);
    }

    #[tokio::test]
    async fn a_fetch_cut_off_by_the_request_deadline_is_not_the_providers_failure() {
        let (key, _) = ed25519();
        let (verifier, idp, _) = idp_verifier(JwksSource::Url(KEYS_URL.into()), Duration::from_millis(500));
        idp.set(KEYS_URL, vec![Answer::Hang]);
        let token = token(&key);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let (verdict, took) = crate::deadline::within(deadline, timed(&verifier, &token)).await;
        assert_unavailable(verdict);
        assert!(
            took < Duration::from_millis(400),
            "cut at the request's 50 ms: {took:?}"
        );
        // The next request, with its own time, asks the provider again instead of failing fast.
        let _ = timed(&verifier, &token).await;
        assert_eq!(idp.calls(KEYS_URL), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_another_requests_fetch_ends_by_this_requests_deadline() {
        // Concurrent mode: a slow fetch started by one request; another, with 50 ms left,
        // stops waiting then (503) instead of at the fetch's end, and the fetch is still the
        // environment's only one.
        let (key, jwk) = ed25519();
        let (verifier, idp, _) = idp_verifier(JwksSource::Url(KEYS_URL.into()), Duration::from_secs(2));
        idp.set(KEYS_URL, vec![Answer::After(Duration::from_millis(600), ok(&jwk))]);
        let verifier = Arc::new(verifier);
        let token = Arc::new(token(&key));
        let first = tokio::spawn({
            let (verifier, token) = (verifier.clone(), token.clone());
            async move { timed(&verifier, &token).await.0 }
        });
        // Until the first request's fetch is under way.
        while idp.calls(KEYS_URL) == 0 {
            tokio::task::yield_now().await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let (verdict, took) = crate::deadline::within(deadline, timed(&verifier, &token)).await;
        assert_unavailable(verdict);
        assert!(took < Duration::from_millis(400), "cut at its own 50 ms: {took:?}");
        assert!(matches!(first.await.unwrap(), Verdict::Verified(_)));
        assert_eq!(idp.calls(KEYS_URL), 1);
    }

    #[tokio::test]
    async fn slow_discovery_and_a_hanging_jwks_share_one_deadline() {
        let (key, _) = ed25519();
        let deadline = Duration::from_millis(300);
        let (verifier, idp, _) = idp_verifier(JwksSource::Discover, deadline);
        let Answer::Now(document) = configuration(KEYS_URL) else {
            unreachable!()
        };
        idp.set(DISCOVERY_URL, vec![Answer::After(Duration::from_millis(200), document)]);
        idp.set(KEYS_URL, vec![Answer::Hang]);

        let (verdict, took) = timed(&verifier, &token(&key)).await;
        assert_unavailable(verdict);
        eprintln!("200 ms discovery + hanging JWKS (deadline {deadline:?}): {took:?}");
        // One budget for both: not 200 ms + another 300 ms.
        assert!(
            took >= deadline && took < deadline + Duration::from_millis(150),
            "{took:?}"
        );
        assert_eq!((idp.calls(DISCOVERY_URL), idp.calls(KEYS_URL)), (1, 1));
    }

    #[tokio::test]
    async fn a_discovered_jwks_uri_is_kept_across_a_jwks_failure() {
        let (key, jwk) = ed25519();
        let (verifier, idp, clock) = idp_verifier(JwksSource::Discover, FETCH_DEADLINE);
        idp.set(DISCOVERY_URL, vec![configuration(KEYS_URL)]);
        idp.set(KEYS_URL, vec![Answer::Now(down()), Answer::Now(ok(&jwk))]);
        let token = token(&key);

        assert_unavailable(verifier.verify(&token).await);
        advance(&clock, COLD_RETRY_INTERVAL + Duration::from_secs(1));
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(KEYS_URL), 2);
        assert_eq!(
            idp.calls(DISCOVERY_URL),
            1,
            "the failed JWKS fetch must not redo discovery"
        );
        assert_eq!(verifier.discovery_count(), 1);
    }

    #[tokio::test]
    async fn a_discovered_jwks_uri_failing_for_ten_minutes_is_looked_up_again_once() {
        let (key, jwk) = ed25519();
        let (verifier, idp, clock) = idp_verifier(JwksSource::Discover, FETCH_DEADLINE);
        idp.set(
            DISCOVERY_URL,
            vec![configuration(KEYS_URL), configuration(MOVED_KEYS_URL)],
        );
        idp.set(KEYS_URL, vec![Answer::Now(ok(&jwk)), Answer::Now(down())]);
        idp.set(MOVED_KEYS_URL, vec![Answer::Now(down()), Answer::Now(ok(&jwk))]);
        let token = token(&key);
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));

        // The old URL fails from now on; the cached keys are served, one attempt a minute.
        advance(&clock, DEFAULT_MAX_AGE + Duration::from_secs(1));
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        let step = MIN_REFETCH_INTERVAL + Duration::from_secs(1);
        let mut failing_for = Duration::ZERO;
        while failing_for + step < REDISCOVER_AFTER {
            advance(&clock, step);
            failing_for += step;
            assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        }
        assert_eq!(
            idp.calls(DISCOVERY_URL),
            1,
            "no re-discovery within {REDISCOVER_AFTER:?}"
        );
        let old_url_attempts = idp.calls(KEYS_URL);
        assert_eq!(old_url_attempts, 11);

        // Past REDISCOVER_AFTER: the next attempt looks the URL up again (the provider moved
        // its keys; the new URL happens to fail at first).
        advance(&clock, step);
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(DISCOVERY_URL), 2);
        assert_eq!(idp.calls(MOVED_KEYS_URL), 1);
        // The next attempt uses the newly discovered URL, without another discovery.
        advance(&clock, step);
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(DISCOVERY_URL), 2);
        assert_eq!(idp.calls(MOVED_KEYS_URL), 2);
        assert_eq!(idp.calls(KEYS_URL), old_url_attempts);
        // …and it refreshed: fresh keys, no attempt for the next minutes.
        advance(&clock, step);
        assert!(matches!(verifier.verify(&token).await, Verdict::Verified(_)));
        assert_eq!(idp.calls(MOVED_KEYS_URL), 2);
    }

    #[tokio::test]
    async fn while_the_provider_is_known_down_only_the_retrying_request_waits() {
        let (key, _) = ed25519();
        let deadline = Duration::from_millis(300);
        let (verifier, idp, clock) = idp_verifier(JwksSource::Url(KEYS_URL.into()), deadline);
        idp.set(KEYS_URL, vec![Answer::Hang]);
        let token = token(&key);
        assert_unavailable(verifier.verify(&token).await);

        // The window is over: one request retries (and hangs until the deadline)…
        advance(&clock, COLD_RETRY_INTERVAL + Duration::from_secs(1));
        let retry = timed(&verifier, &token);
        // …while the others, arriving during that retry, answer at once.
        let others = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut slowest = Duration::ZERO;
            for _ in 0..5 {
                let (verdict, took) = timed(&verifier, &token).await;
                assert_unavailable(verdict);
                slowest = slowest.max(took);
            }
            slowest
        };
        let ((verdict, retry_took), slowest) = tokio::join!(retry, others);
        assert_unavailable(verdict);
        eprintln!("retrying request: {retry_took:?}; slowest concurrent request: {slowest:?}");
        assert!(retry_took >= deadline, "{retry_took:?}");
        assert!(slowest < Duration::from_millis(100), "{slowest:?}");
        assert_eq!(idp.calls(KEYS_URL), 2);
        assert_eq!(verifier.fetch_count(), 2);
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
