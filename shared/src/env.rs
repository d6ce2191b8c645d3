//! The vocabulary of configuration, shared by every module that reads a setting: where
//! variables come from ([`Env`]), how a bad one is reported ([`ConfigError`],
//! [`PolicyError`]), and flag parsing. A leaf: it names no module that reads settings, so
//! those modules and [`crate::config`], which assembles them, all point here.

use crate::http_client::ClientBuildError;

/// A policy that failed validation; `field` is a path into the policy document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token policy at `{field}`: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

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
    /// The outbound HTTPS client could not be built (e.g. no CA certificates on the
    /// machine); `needed_for` says which setting made the function need it.
    #[error("{source} (needed for {needed_for})")]
    HttpClient {
        needed_for: &'static str,
        source: ClientBuildError,
    },
}

pub(crate) fn invalid(var: &'static str, message: impl Into<String>) -> ConfigError {
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
