//! A function: built once per container from its configuration, then asked once per request
//! (CORS preflight, then the issuing path in [`crate::issue`] or the revocation path in
//! [`crate::revoke`], then one log line and the HTTP answer).

use crate::config::{Config, ConfigError, Env, ProcessEnv};
use crate::error::IssueError;
use crate::http::{respond, Answer};
use crate::issue;
use crate::log::Who;
use crate::revoke;
use crate::secrets::{AwsSecretReader, AwsSettings, SecretReader, SecretStore};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use std::time::Instant;

pub use crate::deps::Deps;
pub use crate::route::{Route, TokenKind};

/// A token-issuing function: built once per container, then asked once per request.
pub struct Service {
    route: Route,
    deps: Deps,
    /// Set when the configuration cannot issue safely: every request is refused (500).
    refusal: Option<&'static str>,
}

const JWT_ONLY_POLICY: &str = "the policy can grant channel claims, rate limits or a revocation key, which only Ably JWTs can carry (dropping a rate limit would widen the client's rights, dropping a revocation key would let revocations miss the token); use /auth/jwt, or remove channelClaims, rateLimits and revocationKey from the policy used by this route";

const NO_VERIFIER: &str = "no caller verification is configured and the policy has no `anonymous` grant; set CALLER_HS256_SECRET (or another caller provider), or add an `anonymous` grant to the policy";

impl Service {
    pub fn new(route: Route, deps: Deps) -> Service {
        let refusal = (deps.callers.is_empty() && !deps.policy.allows_anonymous())
            .then_some(NO_VERIFIER)
            .or_else(|| match route {
                Route::Revoke if deps.ably.is_none() => Some(revoke::NOT_REVOCABLE),
                Route::AblyToken if deps.ably.is_none() => Some(issue::NO_ABLY_CLIENT),
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
        let config = Config::for_route(env, route)?;
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
        Ok(Service::new(
            route,
            Deps::from_config(Config::for_route(env, route)?, route)?,
        ))
    }

    pub fn route(&self) -> Route {
        self.route
    }

    /// Answer one request. Never fails: every outcome is an HTTP answer.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        let (outcome, who) = match self.deps.cors.preflight(&request) {
            Some(Ok(response)) => {
                let status = response.status().as_u16();
                self.log(&request, "preflight", status, 0, &Who::default(), None, started);
                return response;
            }
            Some(Err(e)) => (Err(e), Who::default()),
            None => {
                let mut who = Who::default();
                (self.answer(&request, &mut who).await, who)
            }
        };
        match &outcome {
            Ok(answer) => {
                let jwt_bytes = match answer {
                    Answer::Jwt(token) => Some(token.len()),
                    _ => None,
                };
                self.log_issued(&request, &who, jwt_bytes, started)
            }
            Err(e) => {
                if e.status() >= 500 {
                    tracing::error!(route = self.route.name(), error = %e, "request failed");
                }
                self.log(&request, e.outcome(), e.status(), e.code(), &who, None, started)
            }
        }
        respond(outcome, &request, &self.deps.cors)
    }

    /// Answer a request whose event the [`crate::boundary`] refused: its problem, with the
    /// usual headers (CORS, `no-store`), logged like any request with the reason.
    pub fn refuse(&self, request: &Request, problem: IssueError) -> Response<Body> {
        let started = Instant::now();
        let reason = problem.to_string();
        self.log(
            request,
            problem.outcome(),
            problem.status(),
            problem.code(),
            &Who::default(),
            Some(&reason),
            started,
        );
        respond(Err(problem), request, &self.deps.cors)
    }

    fn log_issued(&self, request: &Request, who: &Who, jwt_bytes: Option<usize>, started: Instant) {
        self.log_line(request, "issued", 200, 0, who, None, jwt_bytes, started);
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        request: &Request,
        outcome: &str,
        status: u16,
        code: u32,
        who: &Who,
        error: Option<&str>,
        started: Instant,
    ) {
        self.log_line(request, outcome, status, code, who, error, None, started);
    }

    /// The request line: one per request, whatever the outcome (never a secret or a token),
    /// with the request's metrics ([`crate::metrics::Request`]) in it.
    #[allow(clippy::too_many_arguments)]
    fn log_line(
        &self,
        request: &Request,
        outcome: &str,
        status: u16,
        code: u32,
        who: &Who,
        error: Option<&str>,
        jwt_bytes: Option<usize>,
        started: Instant,
    ) {
        let duration_us = started.elapsed().as_micros() as u64;
        let route = self.route.name();
        tracing::info!(
            target: crate::metrics::TARGET,
            route,
            method = request.method().as_str(),
            outcome,
            status,
            code,
            client_id = who.client_id.as_deref(),
            caller = who.caller,
            error,
            duration_us,
            emf = tracing::field::display(crate::metrics::Request {
                route,
                status,
                code,
                preflight: outcome == "preflight",
                duration_us,
                jwt_bytes,
                init_us: crate::log::cold_start_init_us(),
                timestamp_ms: crate::metrics::now_ms(),
            }),
            "request"
        );
    }

    /// The route's path: the issuing path or the revocation path, unless the configuration
    /// refuses every request.
    async fn answer(&self, request: &Request, who: &mut Who) -> Result<Answer, IssueError> {
        if let Some(reason) = self.refusal {
            return Err(IssueError::Misconfigured(reason.into()));
        }
        match self.route.token() {
            Some(kind) => issue::issue(&self.deps, kind, request, who).await,
            None => revoke::handle(&self.deps, request, who).await,
        }
    }
}
