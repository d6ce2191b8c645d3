//! One request, top to bottom: the whole story of the product.

use crate::caller::{Caller, VerifierChain};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Env, ProcessEnv};
use crate::error::IssueError;
use crate::grant::Grant;
use crate::http::{respond, Answer, Cors};
use crate::jwt::{self, JwtClaims};
use crate::key::ApiKey;
use crate::key_source::{KeySource, StaticKey};
use crate::params;
use crate::policy::Policy;
use crate::token_request::{self, Unsigned};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// Which token a function answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/auth/jwt`: an Ably JWT (`application/jwt`).
    Jwt,
    /// `/auth/token-request`: a signed TokenRequest (`application/json`).
    TokenRequest,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Jwt => "issue-jwt",
            Route::TokenRequest => "issue-token-request",
        }
    }
}

/// The narrow dependencies of a [`Service`]; tests swap the key source and the clock.
pub struct Deps {
    pub policy: Policy,
    pub callers: VerifierChain,
    pub keys: Arc<dyn KeySource>,
    pub clock: Arc<dyn Clock>,
    pub cors: Cors,
}

impl Deps {
    /// From a parsed [`Config`], with the key from the environment and the system clock.
    pub fn from_config(config: Config) -> Result<Deps, ConfigError> {
        Ok(Deps {
            callers: config.caller.verifiers()?,
            policy: config.policy,
            keys: Arc::new(StaticKey::new(config.key)),
            clock: Arc::new(SystemClock),
            cors: config.cors,
        })
    }
}

/// A token-issuing function: built once per container, then asked once per request.
pub struct Service {
    route: Route,
    deps: Deps,
    /// Set when the configuration cannot issue safely: every request is refused (500).
    refusal: Option<&'static str>,
}

const NO_VERIFIER: &str = "no caller verification is configured and the policy has no `anonymous` grant; set CALLER_HS256_SECRET (or another caller provider), or add an `anonymous` grant to the policy";

impl Service {
    pub fn new(route: Route, deps: Deps) -> Service {
        let refusal = (deps.callers.is_empty() && !deps.policy.allows_anonymous()).then_some(NO_VERIFIER);
        if let Some(reason) = refusal {
            tracing::error!(route = route.name(), "refusing to issue: {reason}");
        }
        Service { route, deps, refusal }
    }

    /// Build from the process environment (what each function's `main` calls).
    pub fn from_env(route: Route) -> Result<Service, ConfigError> {
        Self::from_env_with(route, &ProcessEnv)
    }

    pub fn from_env_with(route: Route, env: &dyn Env) -> Result<Service, ConfigError> {
        Ok(Service::new(route, Deps::from_config(Config::from_env(env)?)?))
    }

    pub fn route(&self) -> Route {
        self.route
    }

    /// Answer one request. Never fails: every outcome is an HTTP answer.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let (outcome, client_id, via) = match self.deps.cors.preflight(&request) {
            Some(Ok(response)) => {
                self.log(
                    &request,
                    "preflight",
                    response.status().as_u16(),
                    0,
                    None,
                    None,
                    started,
                );
                return response;
            }
            Some(Err(e)) => (Err(e), None, None),
            None => self.issue(&request).await,
        };
        match &outcome {
            Ok(_) => self.log(&request, "issued", 200, 0, client_id.as_deref(), via, started),
            Err(e) => {
                if e.status() >= 500 {
                    tracing::error!(route = self.route.name(), error = %e, "request failed");
                }
                self.log(
                    &request,
                    e.outcome(),
                    e.status(),
                    e.code(),
                    client_id.as_deref(),
                    via,
                    started,
                )
            }
        }
        respond(outcome, &request, &self.deps.cors)
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        request: &Request,
        outcome: &str,
        status: u16,
        code: u32,
        client_id: Option<&str>,
        via: Option<&str>,
        started: Instant,
    ) {
        tracing::info!(
            route = self.route.name(),
            method = request.method().as_str(),
            outcome,
            status,
            code,
            client_id,
            caller = via,
            duration_us = started.elapsed().as_micros() as u64,
            "request"
        );
    }

    async fn issue(&self, request: &Request) -> (Result<Answer, IssueError>, Option<String>, Option<&'static str>) {
        let mut client_id = None;
        let mut via = None;
        let outcome = self.try_issue(request, &mut client_id, &mut via).await;
        (outcome, client_id, via)
    }

    async fn try_issue(
        &self,
        request: &Request,
        client_id: &mut Option<String>,
        via: &mut Option<&'static str>,
    ) -> Result<Answer, IssueError> {
        if let Some(reason) = self.refusal {
            return Err(IssueError::Misconfigured(reason.into()));
        }
        if request.method() != Method::GET && request.method() != Method::POST {
            return Err(IssueError::MethodNotAllowed(
                request.method().as_str().chars().take(16).collect(),
            ));
        }
        let caller = self.deps.callers.identify(request).await?;
        *via = match &caller {
            Caller::Verified { via, .. } => Some(via),
            Caller::Anonymous => Some("anonymous"),
        };
        let hints = params::parse(request)?;
        let grant = self.deps.policy.grant(&caller)?;
        *client_id = grant.client_id.clone();
        if grant.capability.is_empty() {
            return Err(IssueError::forbidden(
                "the policy grants your identity no capability; ask the operator for access",
            ));
        }
        let grant = grant.narrow(&hints)?;
        let key = self.deps.keys.current().await?;
        self.mint(&grant, &key)
    }

    fn mint(&self, grant: &Grant, key: &ApiKey) -> Result<Answer, IssueError> {
        let now_ms = self.deps.clock.now_ms();
        let capability = grant.capability.to_canonical_string();
        match self.route {
            Route::Jwt => {
                let claims = JwtClaims::for_grant(grant, &capability, now_ms);
                jwt::mint(key, &claims)
                    .map(Answer::Jwt)
                    .map_err(|jwt::JwtError::TooLarge { size, limit }| IssueError::TokenTooLarge { size, limit })
            }
            Route::TokenRequest => {
                if !grant.channel_claims.is_empty() || !grant.rate_limits.is_empty() {
                    return Err(IssueError::Misconfigured(
                        "the policy gives this caller channel claims or rate limits, which only Ably JWTs can carry (dropping a rate limit would widen the client's rights); use /auth/jwt, or remove channelClaims and rateLimits from the policy used by this route".into(),
                    ));
                }
                let nonce = token_request::new_nonce().map_err(|e| IssueError::Internal(e.to_string().into()))?;
                let signed = token_request::sign(
                    key,
                    &Unsigned {
                        ttl_ms: Some(grant.ttl_ms),
                        capability: Some(&capability),
                        client_id: grant.client_id.as_deref(),
                        timestamp_ms: now_ms,
                        nonce: &nonce,
                    },
                );
                serde_json::to_string(&signed)
                    .map(Answer::Json)
                    .map_err(|e| IssueError::Internal(e.to_string().into()))
            }
        }
    }
}
