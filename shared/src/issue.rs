//! The issuing path (`/auth/jwt`, `/auth/token-request`, `/auth/token`): who is calling,
//! what the policy grants, narrowed by the client's hints, minted as the route's token.

use crate::ably_rest::AblyError;
use crate::caller::Caller;
use crate::deps::Deps;
use crate::error::IssueError;
use crate::grant::Grant;
use crate::http::Answer;
use crate::jwt::{self, JwtClaims};
use crate::key::ApiKey;
use crate::log::Who;
use crate::params::{self, TokenHints};
use crate::policy::{Dropped, Policy};
use crate::route::TokenKind;
use crate::token_request::{self, TokenRequest, Unsigned};
use lambda_http::http::Method;
use lambda_http::Request;

pub(crate) const NO_ABLY_CLIENT: &str =
    "this route calls Ably's REST API but no Ably client was configured; build the service with Deps::from_config";

/// Issue `kind` for one request; `who` learns the caller and clientId as they are known
/// (for the request log, whatever the outcome).
pub(crate) async fn issue(
    deps: &Deps,
    kind: TokenKind,
    request: &Request,
    who: &mut Who,
) -> Result<Answer, IssueError> {
    if request.method() != Method::GET && request.method() != Method::POST {
        return Err(IssueError::method_not_allowed(request.method().as_str(), "GET or POST"));
    }
    let caller = deps.callers.identify(request).await?;
    who.caller = Some(match &caller {
        Caller::Verified { via, .. } => via,
        Caller::Anonymous => "anonymous",
    });
    let hints = params::parse(request)?;
    let grant = deps.policy.grant(&caller)?;
    who.client_id = grant.client_id.clone();
    let grant = narrow(grant, &hints)?;
    let key = deps.keys.current().await?;
    deps.clock.calibrate().await?;
    let now_ms = deps.clock.now_ms();
    let grant = finish(
        &deps.policy,
        kind,
        grant,
        &caller,
        &hints,
        now_ms,
        key.name(),
        random_unit(),
    )?;
    mint(deps, kind, &grant, &key, now_ms)
        .await
        .map_err(|e| blame_capability_hint(&deps.policy, e, &caller, &hints, key.name(), now_ms))
}

/// The least a caller's session must have left for a token to be issued
/// (`boundToSession`): the SDK renews about 30 s before expiry.
pub const MIN_SESSION_LEFT_SECONDS: u64 = 60;

/// The whole issuing decision for one caller and the client's hints, at `now_ms`, for a
/// key named `key_name` (nothing secret is needed to decide): the policy's grant (its
/// dropped entries listed in `dropped`), narrowed by the hints, bounded by the caller's
/// session, jittered by `jitter` ∈ [0, 1) of `ttlJitterPercent`, and (JWTs) checked against
/// the size limit. [`issue`] runs exactly these steps, in this order, with the key fetch and
/// the clock calibration between [`narrow`] and [`finish`]; `ably-auth policy explain`
/// runs this function.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    policy: &Policy,
    kind: TokenKind,
    caller: &Caller,
    hints: &TokenHints,
    now_ms: u64,
    key_name: &str,
    jitter: f64,
    dropped: &mut Vec<Dropped>,
) -> Result<Grant, IssueError> {
    let grant = policy.grant_traced(caller, dropped)?;
    let grant = narrow(grant, hints)?;
    finish(policy, kind, grant, caller, hints, now_ms, key_name, jitter)
}

/// A grant with no capability is refused (403); otherwise the client's hints narrow it.
pub fn narrow(grant: Grant, hints: &TokenHints) -> Result<Grant, IssueError> {
    if grant.capability.is_empty() {
        return Err(IssueError::forbidden(
            "the policy grants your identity no capability; ask the operator for access",
        ));
    }
    grant.narrow(hints)
}

/// The steps that need the time and the key's name: the caller's session bounds the TTL
/// (`boundToSession`), the jitter shortens it, and a JWT must fit Ably's size limit.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    policy: &Policy,
    kind: TokenKind,
    grant: Grant,
    caller: &Caller,
    hints: &TokenHints,
    now_ms: u64,
    key_name: &str,
    jitter: f64,
) -> Result<Grant, IssueError> {
    let mut grant = bound_to_session(policy, grant, caller, now_ms)?;
    grant.ttl_ms = jittered_ttl_ms(grant.ttl_ms, policy.ttl_jitter_percent(), jitter);
    if kind == TokenKind::Jwt {
        let capability = grant.capability.to_canonical_string();
        let size = jwt::encoded_len_for(key_name, &JwtClaims::for_grant(&grant, &capability, now_ms));
        if size > jwt::MAX_JWT_BYTES {
            let e = IssueError::TokenTooLarge {
                size,
                limit: jwt::MAX_JWT_BYTES,
            };
            return Err(blame_capability_hint(policy, e, caller, hints, key_name, now_ms));
        }
    }
    Ok(grant)
}

/// `boundToSession`: the token expires no later than the caller credential's `exp` (when
/// its claims carry one); with less than [`MIN_SESSION_LEFT_SECONDS`] left, 401.
pub fn bound_to_session(policy: &Policy, mut grant: Grant, caller: &Caller, now_ms: u64) -> Result<Grant, IssueError> {
    if !policy.bound_to_session() {
        return Ok(grant);
    }
    let Caller::Verified { claims, .. } = caller else {
        return Ok(grant);
    };
    let Some(exp) = claims.expires_at_seconds() else {
        return Ok(grant);
    };
    let left_ms = exp.saturating_mul(1000).saturating_sub(now_ms);
    if left_ms < MIN_SESSION_LEFT_SECONDS * 1000 {
        let left = if left_ms == 0 {
            "has expired".to_owned()
        } else {
            format!("expires in {} s", left_ms.div_ceil(1000))
        };
        return Err(IssueError::InvalidCredential(
            format!("the session token {left}, and an Ably token bound to the session needs at least {MIN_SESSION_LEFT_SECONDS} s of it (refresh the session before it ends)").into(),
        ));
    }
    grant.ttl_ms = grant.ttl_ms.min(left_ms);
    Ok(grant)
}

/// `ttlJitterPercent`: take up to `percent` % of the TTL off, `unit` ∈ [0, 1) of it, but
/// never below 60 s (or the TTL itself when shorter). Only ever shortens.
pub fn jittered_ttl_ms(ttl_ms: u64, percent: u64, unit: f64) -> u64 {
    if percent == 0 || unit.is_nan() || unit <= 0.0 {
        return ttl_ms;
    }
    let cut = (ttl_ms as f64 * percent as f64 / 100.0 * unit.min(1.0)) as u64;
    let floor = (crate::limits::MIN_TTL_SECONDS * 1000).min(ttl_ms);
    ttl_ms.saturating_sub(cut).max(floor)
}

/// A uniformly random number in [0, 1) for the TTL jitter (0 if the system has no random
/// source: no jitter, never a longer TTL).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.0,
    }
}

/// A JWT too large only because of the client's `capability` hint is the client's error
/// (400 naming it), not the operator's (500): the policy's own grant for this caller fits.
fn blame_capability_hint(
    policy: &Policy,
    e: IssueError,
    caller: &Caller,
    hints: &TokenHints,
    key_name: &str,
    now_ms: u64,
) -> IssueError {
    let IssueError::TokenTooLarge { size, limit } = e else {
        return e;
    };
    if hints.capability.is_none() {
        return e;
    }
    let Ok(whole) = policy.grant(caller) else {
        return e;
    };
    let capability = whole.capability.to_canonical_string();
    if jwt::encoded_len_for(key_name, &JwtClaims::for_grant(&whole, &capability, now_ms)) > limit {
        return e;
    }
    IssueError::bad_request(
        "capability",
        format!("narrowed to your grant it makes the token {size} bytes, over the {limit}-byte limit for JWTs; request fewer or shorter resource names, or omit `capability` to receive your whole grant"),
    )
}

async fn mint(deps: &Deps, kind: TokenKind, grant: &Grant, key: &ApiKey, now_ms: u64) -> Result<Answer, IssueError> {
    let capability = grant.capability.to_canonical_string();
    match kind {
        TokenKind::Jwt => {
            let claims = JwtClaims::for_grant(grant, &capability, now_ms);
            jwt::mint(key, &claims)
                .map(Answer::Jwt)
                .map_err(|jwt::JwtError::TooLarge { size, limit }| IssueError::TokenTooLarge { size, limit })
        }
        TokenKind::TokenRequest => Answer::json(&sign_token_request(grant, key, &capability, now_ms)?),
        TokenKind::AblyToken => {
            let ably = deps
                .ably
                .as_deref()
                .ok_or(IssueError::Misconfigured(NO_ABLY_CLIENT.into()))?;
            // Signed afresh for each attempt (a retry, a fallback host): a resent nonce is 40105.
            let sign = || sign_token_request(grant, key, &capability, deps.clock.now_ms());
            let details = ably.request_token(&sign).await.map_err(|e| ably_failure(kind, e))?;
            Answer::json(&details)
        }
    }
}

/// A TokenRequest for the grant (the `issue-token-request` answer, or what
/// `issue-ably-token` exchanges at Ably). TokenRequests and Ably Tokens cannot carry
/// channel claims, rate limits or a revocation key: a policy that can grant them never
/// reaches here (refused at start-up, or by [`crate::Service::new`]).
fn sign_token_request(grant: &Grant, key: &ApiKey, capability: &str, now_ms: u64) -> Result<TokenRequest, IssueError> {
    let nonce = token_request::new_nonce().map_err(|e| IssueError::Internal(e.to_string().into()))?;
    Ok(token_request::sign(
        key,
        &Unsigned {
            ttl_ms: Some(grant.ttl_ms),
            capability: Some(capability),
            client_id: grant.client_id.as_deref(),
            timestamp_ms: now_ms,
            nonce: &nonce,
        },
    ))
}

/// Log Ably's own code and message (for the operator); answer the caller generically.
fn ably_failure(kind: TokenKind, e: AblyError) -> IssueError {
    tracing::error!(route = kind.route().name(), ably_code = e.ably_code(), ably_error = %e, "Ably request failed");
    IssueError::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::Claims;
    use serde_json::json;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn caller(claims: serde_json::Value) -> Caller {
        Caller::Verified {
            claims: serde_json::from_value::<Claims>(claims).unwrap(),
            via: "test",
        }
    }

    fn decide_ttl(policy: &str, claims: serde_json::Value, jitter: f64) -> Result<u64, IssueError> {
        let p = Policy::from_json(policy, false).unwrap();
        decide(
            &p,
            TokenKind::Jwt,
            &caller(claims),
            &TokenHints::default(),
            NOW_MS,
            "a.b",
            jitter,
            &mut Vec::new(),
        )
        .map(|g| g.ttl_ms)
    }

    const POLICY: &str = r#"{"clientId":"{sub}","capability":{"a":["subscribe"]},"ttlSeconds":3600}"#;

    #[test]
    fn a_token_never_outlives_the_callers_session() {
        let exp = NOW_MS / 1000 + 120;
        assert_eq!(decide_ttl(POLICY, json!({"sub": "a", "exp": exp}), 0.0), Ok(120_000));
        assert_eq!(
            decide_ttl(POLICY, json!({"sub": "a", "exp": exp.to_string()}), 0.0),
            Ok(120_000),
            "authorizer text"
        );
        assert_eq!(
            decide_ttl(POLICY, json!({"sub": "a", "exp": exp + 7200}), 0.0),
            Ok(3_600_000)
        );
        assert_eq!(
            decide_ttl(POLICY, json!({"sub": "a"}), 0.0),
            Ok(3_600_000),
            "no exp: no bound"
        );
        let unbound = r#"{"clientId":"{sub}","capability":{"a":["subscribe"]},"boundToSession":false}"#;
        assert_eq!(decide_ttl(unbound, json!({"sub": "a", "exp": exp}), 0.0), Ok(3_600_000));
    }

    #[test]
    fn a_session_with_less_than_60_s_left_gets_401_saying_to_refresh_it() {
        for left in [59i64, 1, 0, -30] {
            let e = decide_ttl(POLICY, json!({"sub": "a", "exp": NOW_MS as i64 / 1000 + left}), 0.0).unwrap_err();
            assert_eq!((e.status(), e.code()), (401, 40101), "{left}");
            assert!(e.to_string().contains("refresh the session"), "{e}");
        }
        assert!(decide_ttl(POLICY, json!({"sub": "a", "exp": NOW_MS / 1000 + 60}), 0.0).is_ok());
    }

    #[test]
    fn ttl_jitter_only_shortens_within_its_percentage_and_keeps_60_s() {
        let jittery = r#"{"capability":{"a":["subscribe"]},"ttlSeconds":3600,"ttlJitterPercent":10}"#;
        assert_eq!(decide_ttl(jittery, json!({}), 0.0), Ok(3_600_000));
        assert_eq!(decide_ttl(jittery, json!({}), 0.5), Ok(3_420_000));
        assert_eq!(decide_ttl(jittery, json!({}), 0.999_999), Ok(3_240_001));
        assert_eq!(jittered_ttl_ms(62_000, 20, 0.99), 60_000, "never below 60 s");
        assert_eq!(jittered_ttl_ms(30_000, 20, 0.99), 30_000, "a shorter TTL is kept");
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[test]
    fn decide_refuses_a_jwt_over_8_kib_with_500_but_not_a_token_request() {
        let p = Policy::from_json(
            r#"{"capability":{"a:{sub}":["subscribe"],"b:{sub}":["subscribe"],"c:{sub}":["subscribe"],"d:{sub}":["subscribe"]}}"#,
            false,
        )
        .unwrap();
        let who = caller(json!({"sub": "s".repeat(1500)}));
        let run = |kind| {
            decide(
                &p,
                kind,
                &who,
                &TokenHints::default(),
                NOW_MS,
                "a.b",
                0.0,
                &mut Vec::new(),
            )
        };
        let e = run(TokenKind::Jwt).unwrap_err();
        assert_eq!((e.status(), e.code()), (500, 50000));
        assert!(matches!(e, IssueError::TokenTooLarge { .. }), "{e}");
        assert!(run(TokenKind::TokenRequest).is_ok());
    }
}
