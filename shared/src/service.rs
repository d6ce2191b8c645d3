//! One request, top to bottom: the whole story of the product.

use crate::ably_rest::{AblyError, AblyRest};
use crate::caller::{Caller, VerifierChain};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Env, ProcessEnv};
use crate::error::IssueError;
use crate::grant::Grant;
use crate::http::{respond, Answer, Cors};
use crate::jwt::{self, JwtClaims};
use crate::key::ApiKey;
use crate::key_source::KeySource;
use crate::params;
use crate::policy::Policy;
use crate::revoke;
use crate::secrets::{AwsSecretReader, AwsSettings, SecretReader, SecretStore};
use crate::token_request::{self, TokenRequest, Unsigned};
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
    /// `/auth/token`: an Ably Token requested from Ably, as TokenDetails (`application/json`).
    AblyToken,
    /// `/auth/revoke`: revokes tokens at Ably for callers whose grant has `mayRevoke`.
    Revoke,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Jwt => "issue-jwt",
            Route::TokenRequest => "issue-token-request",
            Route::AblyToken => "issue-ably-token",
            Route::Revoke => "revoke-tokens",
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
    /// Ably's REST API: built only for routes that call Ably (`issue-ably-token`;
    /// `revoke-tokens` when `ABLY_KEY_REVOCABLE=true`; any route with `ABLY_QUERY_TIME=true`).
    /// `revoke-tokens` without it refuses every request (the key is not revocable).
    pub ably: Option<Arc<dyn AblyRest>>,
}

impl Deps {
    /// From a parsed [`Config`] whose secrets are all in the environment (`ABLY_API_KEY`,
    /// `CALLER_HS256_SECRET`), with the system clock.
    pub fn from_config(config: Config, route: Route) -> Result<Deps, ConfigError> {
        Self::from_config_with_secrets(config, route, None)
    }

    /// From a parsed [`Config`]; `secrets` serves what it names in AWS Secrets Manager
    /// (`ABLY_API_KEY_SECRET_ID`, `CALLER_HS256_SECRET_ID`) and is required when it does.
    pub fn from_config_with_secrets(
        config: Config,
        route: Route,
        secrets: Option<&SecretStore>,
    ) -> Result<Deps, ConfigError> {
        if matches!(route, Route::TokenRequest | Route::AblyToken) {
            config.policy.check_token_route()?;
        }
        let (ably, clock) = crate::ably_rest::for_route(route, &config)?;
        Ok(Deps {
            callers: config
                .caller
                .verifiers_with_secrets(None, Arc::new(SystemClock), secrets)?,
            policy: config.policy,
            keys: config.key.source(secrets)?,
            clock,
            cors: config.cors,
            ably,
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

const NOT_REVOCABLE: &str = "token revocation is not enabled: enable revocable tokens on the Ably key (Ably dashboard, API Keys, \"Revocable tokens\"), then set ABLY_KEY_REVOCABLE=true (token TTLs are then at most 1 hour)";
const NO_ABLY_CLIENT: &str =
    "this route calls Ably's REST API but no Ably client was configured; build the service with Deps::from_config";
const NOT_A_REVOKER: &str = "your identity may not revoke tokens: only callers holding a role whose policy grant has \"mayRevoke\": true can; ask the operator for that role";
const JWT_ONLY_POLICY: &str = "the policy can grant channel claims, rate limits or a revocation key, which only Ably JWTs can carry (dropping a rate limit would widen the client's rights, dropping a revocation key would let revocations miss the token); use /auth/jwt, or remove channelClaims, rateLimits and revocationKey from the policy used by this route";

const NO_VERIFIER: &str = "no caller verification is configured and the policy has no `anonymous` grant; set CALLER_HS256_SECRET (or another caller provider), or add an `anonymous` grant to the policy";

impl Service {
    pub fn new(route: Route, deps: Deps) -> Service {
        let refusal = (deps.callers.is_empty() && !deps.policy.allows_anonymous())
            .then_some(NO_VERIFIER)
            .or_else(|| match route {
                Route::Revoke if deps.ably.is_none() => Some(NOT_REVOCABLE),
                Route::AblyToken if deps.ably.is_none() => Some(NO_ABLY_CLIENT),
                // Deps::from_config refuses such a policy at start-up; this covers Deps built
                // by hand, so that no grant of these routes silently drops those fields.
                Route::TokenRequest | Route::AblyToken if !deps.policy.jwt_only_fields().is_empty() => {
                    Some(JWT_ONLY_POLICY)
                }
                _ => None,
            });
        if let Some(reason) = refusal {
            tracing::error!(route = route.name(), "refusing to issue: {reason}");
        }
        Service { route, deps, refusal }
    }

    /// Build from the process environment (what each function's `main` calls).
    ///
    /// When a secret is in AWS Secrets Manager, this builds the SDK client (once per
    /// container) and reads the secrets before the first request (failures are logged and
    /// answered to the requests: 503 while the store is unreachable, 500 when misconfigured).
    pub async fn from_env(route: Route) -> Result<Service, ConfigError> {
        Self::init(route, &ProcessEnv, None).await
    }

    /// [`Self::from_env`] with the variables from `env`, and optionally the Secrets Manager
    /// reader given (tests wrap the real client to count its calls); `None` builds the real
    /// client from `env` (`AWS_REGION`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, credentials).
    pub async fn init(
        route: Route,
        env: &dyn Env,
        secrets: Option<Arc<dyn SecretReader>>,
    ) -> Result<Service, ConfigError> {
        let config = Config::from_env(env)?;
        if !config.uses_secrets_manager() {
            return Ok(Service::new(route, Deps::from_config(config, route)?));
        }
        let reader = match secrets {
            Some(reader) => reader,
            None => Arc::new(AwsSecretReader::new(AwsSettings::from_env(env)?)?),
        };
        let store = SecretStore::new(reader, config.secret_cache);
        let deps = Deps::from_config_with_secrets(config, route, Some(&store))?;
        store.prefetch().await;
        Ok(Service::new(route, deps))
    }

    /// Build synchronously from `env` (tests, benchmarks). Secrets must be in `env` itself:
    /// a Secrets Manager secret id is refused here (use [`Self::init`]).
    pub fn from_env_with(route: Route, env: &dyn Env) -> Result<Service, ConfigError> {
        Ok(Service::new(route, Deps::from_config(Config::from_env(env)?, route)?))
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

    /// Answer a request whose event the [`crate::boundary`] refused: its problem, with the
    /// usual headers (CORS, `no-store`), logged like any request with the reason.
    pub fn refuse(&self, request: &Request, problem: IssueError) -> Response<Body> {
        let started = Instant::now();
        self.log_line(
            request,
            problem.outcome(),
            problem.status(),
            problem.code(),
            None,
            None,
            Some(&problem.to_string()),
            started,
        );
        respond(Err(problem), request, &self.deps.cors)
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
        self.log_line(request, outcome, status, code, client_id, via, None, started)
    }

    #[allow(clippy::too_many_arguments)]
    fn log_line(
        &self,
        request: &Request,
        outcome: &str,
        status: u16,
        code: u32,
        client_id: Option<&str>,
        via: Option<&str>,
        error: Option<&str>,
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
            error,
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
        if self.route == Route::Revoke {
            return self.revoke(request, client_id, via).await;
        }
        if request.method() != Method::GET && request.method() != Method::POST {
            return Err(IssueError::method_not_allowed(request.method().as_str(), "GET or POST"));
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
        self.deps.clock.calibrate().await?;
        self.mint(&grant, &key)
            .await
            .map_err(|e| self.blame_capability_hint(e, &caller, &hints, &key))
    }

    /// A JWT too large only because of the client's `capability` hint is the client's error
    /// (400 naming it), not the operator's (500): the policy's own grant for this caller fits.
    fn blame_capability_hint(
        &self,
        e: IssueError,
        caller: &Caller,
        hints: &params::TokenHints,
        key: &ApiKey,
    ) -> IssueError {
        let IssueError::TokenTooLarge { size, limit } = e else {
            return e;
        };
        if hints.capability.is_none() {
            return e;
        }
        let Ok(whole) = self.deps.policy.grant(caller) else {
            return e;
        };
        let capability = whole.capability.to_canonical_string();
        if jwt::encoded_len(
            key,
            &JwtClaims::for_grant(&whole, &capability, self.deps.clock.now_ms()),
        ) > limit
        {
            return e;
        }
        IssueError::bad_request(
            "capability",
            format!("narrowed to your grant it makes the token {size} bytes, over the {limit}-byte limit for JWTs; request fewer or shorter resource names, or omit `capability` to receive your whole grant"),
        )
    }

    async fn mint(&self, grant: &Grant, key: &ApiKey) -> Result<Answer, IssueError> {
        let now_ms = self.deps.clock.now_ms();
        let capability = grant.capability.to_canonical_string();
        match self.route {
            Route::Jwt => {
                let claims = JwtClaims::for_grant(grant, &capability, now_ms);
                jwt::mint(key, &claims)
                    .map(Answer::Jwt)
                    .map_err(|jwt::JwtError::TooLarge { size, limit }| IssueError::TokenTooLarge { size, limit })
            }
            Route::TokenRequest => serde_json::to_string(&self.sign_token_request(grant, key, &capability, now_ms)?)
                .map(Answer::Json)
                .map_err(|e| IssueError::Internal(e.to_string().into())),
            Route::AblyToken => {
                let ably = self
                    .deps
                    .ably
                    .as_deref()
                    .ok_or(IssueError::Misconfigured(NO_ABLY_CLIENT.into()))?;
                // Signed afresh for each attempt (a retry, a fallback host): a resent nonce is 40105.
                let sign = || self.sign_token_request(grant, key, &capability, self.deps.clock.now_ms());
                let details = ably.request_token(&sign).await.map_err(|e| self.ably_failure(e))?;
                serde_json::to_string(&details)
                    .map(Answer::Json)
                    .map_err(|e| IssueError::Internal(e.to_string().into()))
            }
            Route::Revoke => Err(IssueError::Internal("the revoke route issues no token".into())),
        }
    }

    /// A TokenRequest for the grant (the `issue-token-request` answer, or what
    /// `issue-ably-token` exchanges at Ably). TokenRequests and Ably Tokens cannot carry
    /// channel claims, rate limits or a revocation key: a policy that can grant them never
    /// reaches here (refused at start-up, or by [`Service::new`]).
    fn sign_token_request(
        &self,
        grant: &Grant,
        key: &ApiKey,
        capability: &str,
        now_ms: u64,
    ) -> Result<TokenRequest, IssueError> {
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
    fn ably_failure(&self, e: AblyError) -> IssueError {
        tracing::error!(route = self.route.name(), ably_code = e.ably_code(), ably_error = %e, "Ably request failed");
        IssueError::from(e)
    }

    /// `POST /auth/revoke`: a verified caller whose grant has `mayRevoke` revokes tokens.
    async fn revoke(
        &self,
        request: &Request,
        client_id: &mut Option<String>,
        via: &mut Option<&'static str>,
    ) -> Result<Answer, IssueError> {
        if request.method() != Method::POST {
            return Err(IssueError::method_not_allowed(request.method().as_str(), "POST"));
        }
        let caller = self.deps.callers.identify(request).await?;
        let Caller::Verified { via: verifier, .. } = &caller else {
            return Err(IssueError::MissingCredential);
        };
        *via = Some(verifier);
        let grant = self.deps.policy.grant(&caller)?;
        *client_id = grant.client_id.clone();
        if !grant.may_revoke {
            return Err(IssueError::forbidden(NOT_A_REVOKER));
        }
        self.deps.clock.calibrate().await?;
        let revocation = revoke::parse(request, self.deps.clock.now_ms())?;
        let ably = self
            .deps
            .ably
            .as_deref()
            .ok_or(IssueError::Misconfigured(NOT_REVOCABLE.into()))?;
        let key = self.deps.keys.current().await?;
        let result = revoke::execute(ably, &key, &revocation).await.map_err(|f| {
            tracing::error!(
                route = self.route.name(),
                revoked_before_failure = f.done,
                targets = f.total,
                ably_code = f.error.ably_code(),
                ably_error = %f.error,
                "Ably revocation failed"
            );
            IssueError::from(f)
        })?;
        tracing::info!(
            route = self.route.name(),
            revoker = client_id.as_deref(),
            targets = ?revocation.targets,
            issued_before = revocation.issued_before,
            success_count = result.success_count,
            failure_count = result.failure_count,
            "tokens revoked"
        );
        serde_json::to_string(&result)
            .map(Answer::Json)
            .map_err(|e| IssueError::Internal(e.to_string().into()))
    }
}
