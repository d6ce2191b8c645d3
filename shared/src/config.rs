//! Configuration from the environment, parsed once at start-up into typed values. A bad
//! setting stops the function with a message naming the variable.

use crate::caller::fetch::{HttpGet, ReqwestGet};
use crate::caller::{
    AuthorizerVerifier, CallerVerifier, CookieVerifier, Hs256Verifier, JwksConfigError, JwksSettings, JwksSource,
    JwksVerifier, TokenVerifier, VerifierChain,
};
use crate::clock::{Clock, SystemClock};
use crate::http::Cors;
use crate::key_source::KeyConfig;
use crate::policy::Policy;
use crate::route::Route;
use crate::secret::SecretString;
use crate::secrets::{CacheSettings, SecretRef, SecretStore};
use std::sync::Arc;

use crate::env::invalid;
pub use crate::env::{flag, ConfigError, Env, ProcessEnv};

/// The caller-verification settings.
#[derive(Debug, Default)]
pub struct CallerConfig {
    pub hs256_secret: Option<SecretString>,
    /// `CALLER_HS256_SECRET_ID` (+ `CALLER_HS256_SECRET_FIELD`, default `CALLER_HS256_SECRET`):
    /// the HS256 secret in AWS Secrets Manager, cached like the Ably key. Exclusive with
    /// `CALLER_HS256_SECRET`.
    pub hs256_secret_id: Option<SecretRef>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    /// `CALLER_AUDIENCE_CLAIM` (JWKS tokens): the claim checked against `audiences`; `None` = `aud`.
    pub audience_claim: Option<String>,
    /// `CALLER_JWKS_URL`, or discovery from `CALLER_ISSUER` (see [`jwks_source`]).
    pub jwks: Option<JwksSource>,
    /// `CALLER_TRUST_AUTHORIZER=true`: API Gateway authorizer context is a verified identity.
    pub trust_authorizer: bool,
    /// `CALLER_COOKIE`: the cookie that may carry the caller's JWT.
    pub cookie: Option<String>,
}

/// Where OIDC signing keys come from:
///
/// - `CALLER_JWKS_URL` set: that URL;
/// - `CALLER_OIDC_DISCOVERY=true`: the `jwks_uri` of `{CALLER_ISSUER}/.well-known/openid-configuration`;
/// - neither, but `CALLER_ISSUER` set: discovery too, unless the issuer is meant for HS256
///   tokens (`CALLER_HS256_SECRET` or `CALLER_HS256_SECRET_ID` set) or the function trusts an
///   API Gateway authorizer (which already checked the issuer); `CALLER_OIDC_DISCOVERY=false`
///   turns discovery off.
pub fn jwks_source(
    env: &dyn Env,
    issuer: Option<&str>,
    trust_authorizer: bool,
) -> Result<Option<JwksSource>, ConfigError> {
    let discovery = match env.var("CALLER_OIDC_DISCOVERY") {
        None => None,
        Some(_) => Some(flag(env, "CALLER_OIDC_DISCOVERY")?),
    };
    match (env.var("CALLER_JWKS_URL").map(|u| u.trim().to_owned()), discovery) {
        (Some(_), Some(true)) => Err(ConfigError::Ambiguous("CALLER_JWKS_URL", "CALLER_OIDC_DISCOVERY=true")),
        (Some(url), _) => Ok(Some(JwksSource::Url(url))),
        (None, Some(true)) if issuer.is_none() => Err(ConfigError::Missing {
            var: "CALLER_ISSUER",
            hint: "CALLER_OIDC_DISCOVERY=true finds the signing keys from the issuer: set CALLER_ISSUER to the `iss` of your identity provider's tokens",
        }),
        (None, Some(true)) => Ok(Some(JwksSource::Discover)),
        (None, Some(false)) => Ok(None),
        (None, None) => {
            let hs256 = env.var("CALLER_HS256_SECRET").is_some() || env.var("CALLER_HS256_SECRET_ID").is_some();
            Ok((issuer.is_some() && !hs256 && !trust_authorizer).then_some(JwksSource::Discover))
        }
    }
}

impl CallerConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let issuer = env.var("CALLER_ISSUER").map(|s| s.trim().to_owned());
        let trust_authorizer = flag(env, "CALLER_TRUST_AUTHORIZER")?;
        let hs256_secret = env.var("CALLER_HS256_SECRET").map(SecretString::new);
        let hs256_secret_id = SecretRef::from_env(
            env,
            "CALLER_HS256_SECRET_ID",
            "CALLER_HS256_SECRET_FIELD",
            "CALLER_HS256_SECRET",
        )?;
        if hs256_secret.is_some() && hs256_secret_id.is_some() {
            return Err(ConfigError::Ambiguous("CALLER_HS256_SECRET", "CALLER_HS256_SECRET_ID"));
        }
        Ok(CallerConfig {
            hs256_secret,
            hs256_secret_id,
            issuer: issuer.clone(),
            audiences: env
                .var("CALLER_AUDIENCE")
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            audience_claim: env.var("CALLER_AUDIENCE_CLAIM").map(|s| s.trim().to_owned()),
            jwks: jwks_source(env, issuer.as_deref(), trust_authorizer)?,
            trust_authorizer,
            cookie: env.var("CALLER_COOKIE").map(|s| s.trim().to_owned()),
        })
    }

    /// Build the verifier chain. It decides by credential source (see [`crate::caller`]):
    /// API Gateway authorizer context, then the bearer header (HS256, JWKS), then the cookie;
    /// the first present decides.
    pub fn verifiers(&self) -> Result<VerifierChain, ConfigError> {
        self.verifiers_with(None, Arc::new(SystemClock))
    }

    /// [`Self::verifiers`] with the JWKS fetcher and cache clock given (tests, benchmarks);
    /// `http: None` builds the real client when a JWKS is configured.
    pub fn verifiers_with(
        &self,
        http: Option<Arc<dyn HttpGet>>,
        clock: Arc<dyn Clock>,
    ) -> Result<VerifierChain, ConfigError> {
        self.verifiers_with_secrets(http, clock, None)
    }

    /// [`Self::verifiers_with`], with the AWS Secrets Manager store that serves
    /// `CALLER_HS256_SECRET_ID` (required when it is set).
    pub fn verifiers_with_secrets(
        &self,
        http: Option<Arc<dyn HttpGet>>,
        clock: Arc<dyn Clock>,
        secrets: Option<&SecretStore>,
    ) -> Result<VerifierChain, ConfigError> {
        let mut verifiers: Vec<Box<dyn CallerVerifier>> = Vec::new();
        let mut tokens: Vec<Arc<dyn TokenVerifier>> = Vec::new();
        let hs256 = match (&self.hs256_secret, &self.hs256_secret_id, secrets) {
            (Some(secret), _, _) => Some(
                Hs256Verifier::new(secret, self.issuer.as_deref(), &self.audiences)
                    .map_err(|e| invalid("CALLER_HS256_SECRET", e.to_string()))?,
            ),
            (None, Some(secret), Some(store)) => Some(Hs256Verifier::managed(
                store,
                secret.clone(),
                self.issuer.as_deref(),
                &self.audiences,
            )),
            (None, Some(_), None) => return Err(invalid("CALLER_HS256_SECRET_ID", crate::key_source::NO_STORE)),
            (None, None, _) => None,
        };
        if let Some(v) = hs256 {
            let v = Arc::new(v);
            tokens.push(v.clone());
            verifiers.push(Box::new(v));
        }
        if let Some(source) = &self.jwks {
            let v = Arc::new(self.jwks_verifier(source, http, clock)?);
            tokens.push(v.clone());
            verifiers.push(Box::new(v));
        }
        if self.trust_authorizer {
            verifiers.push(Box::new(AuthorizerVerifier::new()));
        }
        if let Some(name) = &self.cookie {
            let v = CookieVerifier::new(name, tokens).map_err(|e| invalid("CALLER_COOKIE", e.to_string()))?;
            verifiers.push(Box::new(v));
        }
        Ok(VerifierChain::new(verifiers))
    }

    fn jwks_verifier(
        &self,
        source: &JwksSource,
        http: Option<Arc<dyn HttpGet>>,
        clock: Arc<dyn Clock>,
    ) -> Result<JwksVerifier, ConfigError> {
        let settings = JwksSettings {
            source: source.clone(),
            issuer: self.issuer.clone().unwrap_or_default(),
            audiences: self.audiences.clone(),
            audience_claim: self.audience_claim.clone().unwrap_or_else(|| "aud".to_owned()),
        };
        let http = match http {
            Some(http) => http,
            None => Arc::new(ReqwestGet::new(crate::http_client::build().map_err(|source| {
                ConfigError::HttpClient {
                    needed_for: "fetching the caller JWKS (CALLER_JWKS_URL / CALLER_ISSUER)",
                    source,
                }
            })?)),
        };
        JwksVerifier::new(settings, http, clock).map_err(|e| match e {
            JwksConfigError::MissingIssuer => ConfigError::Missing {
                var: "CALLER_ISSUER",
                hint: "OIDC/JWKS verification needs it: set it to the `iss` your identity provider puts in its tokens",
            },
            JwksConfigError::MissingAudience => ConfigError::Missing {
                var: "CALLER_AUDIENCE",
                hint: "OIDC/JWKS verification needs it: set it to your app's client id or API identifier (comma-separated for several), so tokens the same issuer made for other apps are refused",
            },
            JwksConfigError::InsecureUrl { var, .. } => invalid(var, e.to_string()),
            JwksConfigError::BadAudienceClaim => invalid("CALLER_AUDIENCE_CLAIM", e.to_string()),
        })
    }
}

/// Everything a function needs, parsed from the environment.
#[derive(Debug)]
pub struct Config {
    /// `ABLY_API_KEY` or `ABLY_API_KEY_SECRET_ID` (exactly one).
    pub key: KeyConfig,
    /// `SECRET_CACHE_TTL_SECONDS`, `SECRET_MAX_STALENESS_SECONDS`: secrets read from AWS
    /// Secrets Manager (the key, the HS256 caller secret).
    pub secret_cache: CacheSettings,
    pub key_revocable: bool,
    pub policy: Policy,
    pub caller: CallerConfig,
    pub cors: Cors,
    /// `ABLY_REST_URL`: Ably's REST base URL (the Ably Token and revoke routes, `ABLY_QUERY_TIME`).
    pub ably_rest_url: String,
    /// `ABLY_QUERY_TIME=true`: timestamps follow Ably's clock (`/time`, read once per container).
    pub ably_query_time: bool,
}

impl Config {
    /// The configuration with the policy from `TOKEN_POLICY` / `TOKEN_POLICY_FILE`.
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        Self::read(env, None)
    }

    /// The configuration of `route`'s function: as [`Self::from_env`], except that the token
    /// routes take their policy from `TOKEN_ROUTES_POLICY` / `TOKEN_ROUTES_POLICY_FILE` when
    /// either is set ([`policy_for_route`]).
    pub fn for_route(env: &dyn Env, route: Route) -> Result<Config, ConfigError> {
        Self::read(env, Some(route))
    }

    fn read(env: &dyn Env, route: Option<Route>) -> Result<Config, ConfigError> {
        let key_revocable = flag(env, "ABLY_KEY_REVOCABLE")?;
        let key = KeyConfig::from_env(env)?;
        let secret_cache = CacheSettings::from_env(env)?;
        let policy = match route {
            Some(route) => policy_for_route(env, route, key_revocable)?,
            None => policy_from_env(env, key_revocable)?,
        };
        let caller = CallerConfig::from_env(env)?;
        let cors = Cors::parse(&env.var("CORS_ALLOWED_ORIGINS").unwrap_or_default())
            .map_err(|e| invalid("CORS_ALLOWED_ORIGINS", e.to_string()))?;
        Ok(Config {
            key,
            secret_cache,
            key_revocable,
            policy,
            caller,
            cors,
            ably_rest_url: crate::ably_rest::rest_url_from_env(env)?,
            ably_query_time: flag(env, "ABLY_QUERY_TIME")?,
        })
    }
}

impl Config {
    /// Whether anything is read from AWS Secrets Manager (then the start-up builds its client).
    pub fn uses_secrets_manager(&self) -> bool {
        matches!(self.key, KeyConfig::SecretsManager(_)) || self.caller.hs256_secret_id.is_some()
    }
}

/// `TOKEN_POLICY` (inline JSON) or `TOKEN_POLICY_FILE` (a path), exactly one.
pub fn policy_from_env(env: &dyn Env, revocable: bool) -> Result<Policy, ConfigError> {
    read_policy(env, "TOKEN_POLICY", "TOKEN_POLICY_FILE", revocable)?.ok_or(ConfigError::Missing {
        var: "TOKEN_POLICY",
        hint: "set TOKEN_POLICY to the issuance policy JSON, or TOKEN_POLICY_FILE to its path (see README, \"Issuance policy\")",
    })
}

/// The policy of `route`'s function. `/auth/token-request` and `/auth/token` take
/// `TOKEN_ROUTES_POLICY` / `TOKEN_ROUTES_POLICY_FILE` when either is set (exactly one), so that
/// one environment can serve every route: the token routes cannot issue the JWT-only fields a
/// `TOKEN_POLICY` for `/auth/jwt` may have. Otherwise, and on the other routes, [`policy_from_env`].
pub fn policy_for_route(env: &dyn Env, route: Route, revocable: bool) -> Result<Policy, ConfigError> {
    if matches!(route, Route::TokenRequest | Route::AblyToken) {
        if let Some(policy) = read_policy(env, "TOKEN_ROUTES_POLICY", "TOKEN_ROUTES_POLICY_FILE", revocable)? {
            return Ok(policy);
        }
    }
    policy_from_env(env, revocable)
}

/// The policy in `inline` (JSON) or in the file `file` names, exactly one; `None` when neither
/// is set.
fn read_policy(
    env: &dyn Env,
    inline: &'static str,
    file: &'static str,
    revocable: bool,
) -> Result<Option<Policy>, ConfigError> {
    let text = match (env.var(inline), env.var(file)) {
        (Some(_), Some(_)) => return Err(ConfigError::Ambiguous(inline, file)),
        (Some(text), None) => text,
        (None, Some(path)) => {
            std::fs::read_to_string(path.trim()).map_err(|e| invalid(file, format!("cannot read {path:?}: {e}")))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Policy::from_json(&text, revocable)?))
}
