//! What a [`crate::Service`] is built from: its narrow dependencies, assembled from the
//! parsed configuration (or by hand in tests and benchmarks).

use crate::ably_rest::{AblyClock, AblyRest, HttpAbly};
use crate::caller::VerifierChain;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::env::ConfigError;
use crate::http::Cors;
use crate::key_source::KeySource;
use crate::policy::Policy;
use crate::route::Route;
use crate::secrets::SecretStore;
use std::sync::Arc;

/// The narrow dependencies of a [`crate::Service`]; tests swap the key source and the clock.
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
        let (ably, clock) = ably_for_route(route, &config)?;
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

/// A route's Ably client (if it calls Ably) and its clock.
pub type RouteAbly = (Option<Arc<dyn AblyRest>>, Arc<dyn Clock>);

/// The Ably client and the clock for one route, from the configuration: the client only
/// when the route calls Ably (`issue-ably-token`; `revoke-tokens` with a revocable key; any
/// route with `ABLY_QUERY_TIME=true`, whose clock then follows Ably's).
pub fn ably_for_route(route: Route, config: &Config) -> Result<RouteAbly, ConfigError> {
    let system: Arc<dyn Clock> = Arc::new(SystemClock);
    let needed = config.ably_query_time
        || match route {
            Route::AblyToken => true,
            Route::Revoke => config.key_revocable,
            Route::Jwt | Route::TokenRequest => false,
        };
    if !needed {
        return Ok((None, system));
    }
    let client = crate::http_client::build_with(crate::http_client::CONNECT_TIMEOUT, crate::ably_rest::ATTEMPT_TIMEOUT)
        .map_err(|source| ConfigError::HttpClient {
            needed_for: "calling Ably's REST API",
            source,
        })?;
    let ably: Arc<dyn AblyRest> = Arc::new(HttpAbly::new(client, &config.ably_rest_url));
    let clock: Arc<dyn Clock> = if config.ably_query_time {
        Arc::new(AblyClock::new(system, ably.clone()))
    } else {
        system
    };
    Ok((Some(ably), clock))
}
