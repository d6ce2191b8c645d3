//! One full in-process request per route — `issue-jwt`, `issue-token-request`,
//! `issue-ably-token`, `revoke-tokens` — with an HS256 caller and with an RS256 (OIDC/JWKS)
//! caller, through `Service::handle` exactly as the Lambda functions call it.
//!
//! - Ably itself is an in-memory fake [`AblyRest`] answering at once, so the two routes that
//!   call Ably measure our own work (signing, JSON, mapping) and not a network round trip.
//! - The JWKS comes from an in-memory fetcher and is warmed by one request before measuring
//!   (a container fetches it once; that fetch is not on the per-request path).
//! - Without a tracing subscriber the request's log line costs next to nothing, so the
//!   `…_logged` variants install the production JSON subscriber (the settings of
//!   `shared::log::init`) writing to `io::sink()`: the difference is the logging cost.
//!
//! `make bench` runs these with the other benches and prints the medians.

mod common;

use common::RsaCaller;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::{Body, Request};
use shared::ably_rest::{
    AblyError, AblyRest, BatchResult, RevokeRequest, SignTokenRequest, TargetResult, TokenDetails,
};
use shared::caller::BoxFuture;
use shared::clock::SystemClock;
use shared::config::{CallerConfig, Config};
use shared::key::ApiKey;
use shared::service::Deps;
use shared::{Route, Service};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

const KEY: &str = "devApp.devKey:dev-key-secret-not-for-production";
const CALLER_SECRET: &str = "dev-caller-secret-0123456789abcdef0123456789";
/// `issue-jwt`: the development policy (channel claims, rate limits, roles).
const JWT_POLICY: &str = include_str!("../../dev/policy.json");
/// The other routes: the same policy without channel claims and rate limits, which only JWTs
/// carry (`make dev DEV_ENV=dev/token-routes.env` and env.json use it for them too).
const PLAIN_POLICY: &str = include_str!("../../dev/policy-token-routes.json");
const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "ably-auth-bench";
const JWKS_URL: &str = "https://idp.example.com/.well-known/jwks.json";
const ORIGIN: &str = "http://localhost:8080";

/// Ably answering at once, in memory.
struct InstantAbly;

impl AblyRest for InstantAbly {
    fn request_token<'a>(&'a self, sign: &'a SignTokenRequest<'a>) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
        let request = match sign() {
            Ok(request) => request,
            Err(e) => return Box::pin(std::future::ready(Err(AblyError::NotSent(e)))),
        };
        let details = TokenDetails {
            token: "xVLyHw.A-pwh7wicf3afTfgiw4k2Ku33kcnSA7z6y8FjuYpe3QaNRTEo4".into(),
            key_name: request.key_name.clone(),
            issued: request.timestamp,
            expires: request.timestamp + request.ttl.unwrap_or(3_600_000),
            capability: request.capability.clone().unwrap_or_default(),
            client_id: request.client_id.clone(),
        };
        Box::pin(std::future::ready(Ok(details)))
    }

    fn revoke_tokens<'a>(
        &'a self,
        _key: &'a ApiKey,
        request: &'a RevokeRequest,
    ) -> BoxFuture<'a, Result<BatchResult, AblyError>> {
        let results: Vec<TargetResult> = request
            .targets
            .iter()
            .map(|t| TargetResult {
                target: t.clone(),
                issued_before: Some(1_700_000_000_000),
                applies_at: Some(1_700_000_000_000),
                error: None,
            })
            .collect();
        Box::pin(std::future::ready(Ok(BatchResult {
            success_count: results.len() as u64,
            failure_count: 0,
            results,
        })))
    }

    fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>> {
        Box::pin(std::future::ready(Ok(common::now_seconds() * 1000)))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum CallerKind {
    Hs256,
    Rs256,
}

impl CallerKind {
    fn name(self) -> &'static str {
        match self {
            CallerKind::Hs256 => "hs256",
            CallerKind::Rs256 => "rs256",
        }
    }
}

/// Caller tokens for a moderator (issuing routes) and an admin (revocation), both ways signed.
struct Callers {
    jwks: String,
    rsa: EncodingKey,
}

impl Callers {
    /// A fresh RSA-2048 key and its JWKS.
    fn new() -> Self {
        let rsa = RsaCaller::generate("rsa-bench");
        Callers {
            jwks: serde_json::json!({ "keys": [rsa.jwk] }).to_string(),
            rsa: rsa.encoding,
        }
    }

    fn token(&self, kind: CallerKind, role: &str) -> String {
        let mut claims = serde_json::json!({
            "sub": "alice", "name": "Alice", "org": "acme", "roles": [role],
            "iat": common::now_seconds(), "exp": common::now_seconds() + 3600
        });
        match kind {
            CallerKind::Hs256 => jsonwebtoken::encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(CALLER_SECRET.as_bytes()),
            ),
            CallerKind::Rs256 => {
                claims["iss"] = ISSUER.into();
                claims["aud"] = AUDIENCE.into();
                let mut header = Header::new(Algorithm::RS256);
                header.kid = Some("rsa-bench".into());
                jsonwebtoken::encode(&header, &claims, &self.rsa)
            }
        }
        .expect("caller token")
    }

    /// The service of `route` as its function builds it, with the fakes swapped in.
    fn service(&self, route: Route, kind: CallerKind) -> Service {
        let policy = if route == Route::Jwt { JWT_POLICY } else { PLAIN_POLICY };
        let env = |k: &str| -> Option<String> {
            match (k, kind) {
                ("ABLY_API_KEY", _) => Some(KEY.into()),
                ("TOKEN_POLICY", _) => Some(policy.into()),
                ("CORS_ALLOWED_ORIGINS", _) => Some(ORIGIN.into()),
                ("ABLY_KEY_REVOCABLE", _) if route == Route::Revoke => Some("true".into()),
                ("CALLER_HS256_SECRET", CallerKind::Hs256) => Some(CALLER_SECRET.into()),
                ("CALLER_ISSUER", CallerKind::Rs256) => Some(ISSUER.into()),
                ("CALLER_AUDIENCE", CallerKind::Rs256) => Some(AUDIENCE.into()),
                ("CALLER_JWKS_URL", CallerKind::Rs256) => Some(JWKS_URL.into()),
                _ => None,
            }
        };
        let mut deps = Deps::from_config(Config::from_env(&env).expect("config"), route).expect("deps");
        deps.callers = CallerConfig::from_env(&env)
            .expect("caller config")
            .verifiers_with(
                Some(Arc::new(common::StaticJwks(self.jwks.as_bytes().to_vec()))),
                Arc::new(SystemClock),
            )
            .expect("verifiers");
        if matches!(route, Route::AblyToken | Route::Revoke) {
            deps.ably = Some(Arc::new(InstantAbly));
        }
        Service::new(route, deps)
    }
}

/// The request each function gets from API Gateway in the common case.
fn request(route: Route, authorization: &str) -> Request {
    let builder = lambda_http::http::Request::builder()
        .header("authorization", authorization)
        .header("origin", ORIGIN);
    let built = match route {
        Route::Revoke => builder
            .method("POST")
            .uri("https://x.example/auth/revoke")
            .header("content-type", "application/json")
            .body(Body::Text(
                r#"{"clientIds":["mallory"],"revocationKeys":["acme"]}"#.into(),
            )),
        _ => {
            let path = match route {
                Route::Jwt => "jwt",
                Route::TokenRequest => "token-request",
                _ => "token",
            };
            builder
                .method("GET")
                .uri(format!("https://x.example/auth/{path}?rnd=8164&clientId=alice"))
                .body(Body::Empty)
        }
    };
    built.expect("request")
}

/// The production JSON log subscriber (`shared::log::init`'s settings) writing to a sink.
fn sink_subscriber() -> impl tracing::Subscriber + Send + Sync {
    shared::log::subscriber(EnvFilter::new(shared::log::DEFAULT_FILTER), std::io::sink)
}

fn routes(c: &mut Criterion) {
    let callers = Callers::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for route in [Route::Jwt, Route::TokenRequest, Route::AblyToken, Route::Revoke] {
        for kind in [CallerKind::Hs256, CallerKind::Rs256] {
            let service = callers.service(route, kind);
            let role = if route == Route::Revoke { "admin" } else { "moderator" };
            let authorization = format!("Bearer {}", callers.token(kind, role));
            // Sanity (and JWKS warm-up): the measured request succeeds.
            let answer = runtime.block_on(service.handle(request(route, &authorization)));
            assert_eq!(
                answer.status().as_u16(),
                200,
                "{} {}: {answer:?}",
                route.name(),
                kind.name()
            );
            let name = format!("route_{}_{}", route.name().replace('-', "_"), kind.name());
            c.bench_function(&name, |b| {
                b.iter_batched(
                    || request(route, &authorization),
                    |r| runtime.block_on(service.handle(r)),
                    BatchSize::SmallInput,
                )
            });
            if route == Route::Jwt && kind == CallerKind::Hs256 {
                // The whole event path of one invocation in the binary: the raw event through
                // the boundary, lambda_http's conversion, the service, the answer in the
                // event's shape, serialized as the runtime posts it; with the log line.
                let event = include_str!("../../events/jwt-get-valid-caller.json");
                let context = lambda_http::Context::default();
                let posted = |service: &Service| {
                    let answer = runtime.block_on(shared::runtime::answer(service, event, context.clone()));
                    serde_json::to_vec(&answer).expect("JSON")
                };
                assert!(String::from_utf8_lossy(&posted(&service)).contains(r#""statusCode":200"#));
                tracing::subscriber::with_default(sink_subscriber(), || {
                    c.bench_function(&format!("{name}_raw_event_logged"), |b| b.iter(|| posted(&service)));
                });
            }
            if route == Route::Jwt {
                tracing::subscriber::with_default(sink_subscriber(), || {
                    c.bench_function(&format!("{name}_logged"), |b| {
                        b.iter_batched(
                            || request(route, &authorization),
                            |r| runtime.block_on(service.handle(r)),
                            BatchSize::SmallInput,
                        )
                    });
                });
            }
        }
    }
}

/// The HMAC baseline of this process (`benches/common`): `make bench` states ratios to it.
fn baseline(c: &mut Criterion) {
    common::baseline(c, "routes");
}

criterion_group!(benches, baseline, routes);
criterion_main!(benches);
