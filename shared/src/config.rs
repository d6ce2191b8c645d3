//! Configuration from the environment, parsed once at start-up into typed values. A bad
//! setting stops the function with a message naming the variable.

use crate::caller::{CallerVerifier, Hs256Verifier, VerifierChain};
use crate::http::Cors;
use crate::key::ApiKey;
use crate::policy::{Policy, PolicyError};
use crate::secret::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set: {hint}")]
    Missing { var: &'static str, hint: &'static str },
    #[error("{var} is invalid: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("both {0} and {1} are set; set exactly one")]
    Ambiguous(&'static str, &'static str),
}

fn invalid(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        message: message.into(),
    }
}

/// Variable lookup (the process environment, or a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment; empty values count as unset.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.trim().is_empty())
    }
}

pub fn flag(env: &dyn Env, var: &'static str) -> Result<bool, ConfigError> {
    match env.var(var).as_deref().map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(_) => Err(invalid(var, "expected true or false")),
    }
}

/// The caller-verification settings.
#[derive(Debug, Default)]
pub struct CallerConfig {
    pub hs256_secret: Option<SecretString>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
}

impl CallerConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(CallerConfig {
            hs256_secret: env.var("CALLER_HS256_SECRET").map(SecretString::new),
            issuer: env.var("CALLER_ISSUER").map(|s| s.trim().to_owned()),
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
        })
    }

    /// Build the verifier chain, in the documented order.
    pub fn verifiers(&self) -> Result<VerifierChain, ConfigError> {
        let mut verifiers: Vec<Box<dyn CallerVerifier>> = Vec::new();
        if let Some(secret) = &self.hs256_secret {
            let v = Hs256Verifier::new(secret, self.issuer.as_deref(), &self.audiences)
                .map_err(|e| invalid("CALLER_HS256_SECRET", e.to_string()))?;
            verifiers.push(Box::new(v));
        }
        Ok(VerifierChain::new(verifiers))
    }
}

/// Everything a function needs, parsed from the environment.
#[derive(Debug)]
pub struct Config {
    pub key: ApiKey,
    pub key_revocable: bool,
    pub policy: Policy,
    pub caller: CallerConfig,
    pub cors: Cors,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Config, ConfigError> {
        let key_revocable = flag(env, "ABLY_KEY_REVOCABLE")?;
        let key = match env.var("ABLY_API_KEY") {
            Some(raw) => ApiKey::parse(raw.trim()).map_err(|e| invalid("ABLY_API_KEY", e.to_string()))?,
            None => {
                return Err(ConfigError::Missing {
                    var: "ABLY_API_KEY",
                    hint: "set it to the Ably API key (appId.keyId:keySecret) from the Ably dashboard",
                })
            }
        };
        let policy = policy_from_env(env, key_revocable)?;
        let caller = CallerConfig::from_env(env)?;
        let cors = Cors::parse(&env.var("CORS_ALLOWED_ORIGINS").unwrap_or_default())
            .map_err(|e| invalid("CORS_ALLOWED_ORIGINS", e.to_string()))?;
        Ok(Config {
            key,
            key_revocable,
            policy,
            caller,
            cors,
        })
    }
}

/// `TOKEN_POLICY` (inline JSON) or `TOKEN_POLICY_FILE` (a path), exactly one.
pub fn policy_from_env(env: &dyn Env, revocable: bool) -> Result<Policy, ConfigError> {
    let text = match (env.var("TOKEN_POLICY"), env.var("TOKEN_POLICY_FILE")) {
        (Some(_), Some(_)) => return Err(ConfigError::Ambiguous("TOKEN_POLICY", "TOKEN_POLICY_FILE")),
        (Some(inline), None) => inline,
        (None, Some(path)) => std::fs::read_to_string(path.trim())
            .map_err(|e| invalid("TOKEN_POLICY_FILE", format!("cannot read {path:?}: {e}")))?,
        (None, None) => {
            return Err(ConfigError::Missing {
                var: "TOKEN_POLICY",
                hint: "set TOKEN_POLICY to the issuance policy JSON, or TOKEN_POLICY_FILE to its path (see README, \"Issuance policy\")",
            })
        }
    };
    Ok(Policy::from_json(&text, revocable)?)
}
