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
    if grant.capability.is_empty() {
        return Err(IssueError::forbidden(
            "the policy grants your identity no capability; ask the operator for access",
        ));
    }
    let grant = grant.narrow(&hints)?;
    let key = deps.keys.current().await?;
    deps.clock.calibrate().await?;
    mint(deps, kind, &grant, &key)
        .await
        .map_err(|e| blame_capability_hint(deps, e, &caller, &hints, &key))
}

/// A JWT too large only because of the client's `capability` hint is the client's error
/// (400 naming it), not the operator's (500): the policy's own grant for this caller fits.
fn blame_capability_hint(deps: &Deps, e: IssueError, caller: &Caller, hints: &TokenHints, key: &ApiKey) -> IssueError {
    let IssueError::TokenTooLarge { size, limit } = e else {
        return e;
    };
    if hints.capability.is_none() {
        return e;
    }
    let Ok(whole) = deps.policy.grant(caller) else {
        return e;
    };
    let capability = whole.capability.to_canonical_string();
    if jwt::encoded_len(key, &JwtClaims::for_grant(&whole, &capability, deps.clock.now_ms())) > limit {
        return e;
    }
    IssueError::bad_request(
        "capability",
        format!("narrowed to your grant it makes the token {size} bytes, over the {limit}-byte limit for JWTs; request fewer or shorter resource names, or omit `capability` to receive your whole grant"),
    )
}

async fn mint(deps: &Deps, kind: TokenKind, grant: &Grant, key: &ApiKey) -> Result<Answer, IssueError> {
    let now_ms = deps.clock.now_ms();
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
