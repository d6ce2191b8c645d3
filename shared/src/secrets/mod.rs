//! Secrets from AWS Secrets Manager: the Ably API key (`ABLY_API_KEY_SECRET_ID`) and the
//! HS256 caller secret (`CALLER_HS256_SECRET_ID`), read once per container and cached.
//!
//! - [`SecretReader`]: the one narrow trait in front of the AWS SDK (one method:
//!   `GetSecretValue` of `AWSCURRENT`). [`AwsSecretReader`] is the real client; unit tests
//!   use an in-memory fake.
//! - [`SecretCache`]: a single-flight TTL cache of one secret's parsed value, serving a
//!   cached value while Secrets Manager is unreachable, up to a maximum staleness.
//! - [`SecretStore`]: one reader and one set of [`CacheSettings`] per container; it hands out
//!   the caches and reads them all once during init ([`SecretStore::prefetch`]).
//!
//! A secret string is either the value itself or a JSON object holding it in a field
//! ([`extract`]). Nothing here ever puts a secret's content in an error, a log line or a
//! `Debug` output: messages name the secret id and what is wrong with it.

mod aws;
mod cache;

pub use aws::{AwsSecretReader, AwsSettings};
pub use cache::SecretCache;

use crate::clock::{Clock, SystemClock};
use crate::env::{ConfigError, Env};
use crate::future::BoxFuture;
use crate::secret::SecretString;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Which secret to read and where in it the value sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Secret name or ARN (not secret itself).
    pub id: String,
    /// The field holding the value when the secret string is a JSON object.
    pub field: String,
    /// The variable that named the secret (`ABLY_API_KEY_SECRET_ID`), for messages.
    pub id_var: &'static str,
    /// The variable that overrides [`SecretRef::field`] (`ABLY_API_KEY_SECRET_FIELD`), for messages.
    pub field_var: &'static str,
}

impl SecretRef {
    /// `id_var` set: the secret it names, with the field from `field_var` (default `default_field`).
    pub fn from_env(
        env: &dyn Env,
        id_var: &'static str,
        field_var: &'static str,
        default_field: &str,
    ) -> Result<Option<SecretRef>, ConfigError> {
        let Some(id) = env.var(id_var).map(|s| s.trim().to_owned()) else {
            return Ok(None);
        };
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid {
                var: id_var,
                message: "a secret name or ARN has no whitespace or control characters".into(),
            });
        }
        let field = env
            .var(field_var)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| default_field.to_owned());
        Ok(Some(SecretRef {
            id,
            field,
            id_var,
            field_var,
        }))
    }

    /// `ABLY_API_KEY_SECRET_ID="prod/ably"`: how messages name the secret.
    pub fn label(&self) -> String {
        format!("{}={:?}", self.id_var, self.id)
    }
}

/// One `GetSecretValue` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValue {
    /// The `SecretString` of the `AWSCURRENT` version.
    pub string: SecretString,
    /// Its `VersionId` (not secret): a new one means the secret was rotated.
    pub version: Option<String>,
}

/// Why a read failed, as the reader saw it. The texts carry AWS's error code and message
/// (which never contain the secret's content), never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Secrets Manager could not be asked now: unreachable, timed out, throttled, or a 5xx.
    /// A cached value keeps being served (up to the maximum staleness); retried later.
    #[error("AWS Secrets Manager is unreachable or throttling ({0})")]
    Unavailable(String),
    #[error("the secret does not exist in this account and region, or has no AWSCURRENT version; check the name or ARN and the function's region")]
    NotFound,
    #[error("access denied ({0}); allow `secretsmanager:GetSecretValue` on this secret to the function's role (and `kms:Decrypt` on its key when the secret uses a customer-managed KMS key)")]
    AccessDenied(String),
    #[error("the secret holds binary data (SecretBinary), not a string; store the value with `--secret-string`")]
    NotText,
    /// Any other refusal (secret scheduled for deletion, invalid id, bad credentials…).
    #[error("AWS Secrets Manager refused the request ({0})")]
    Refused(String),
}

/// The one narrow trait in front of AWS Secrets Manager.
pub trait SecretReader: Send + Sync {
    /// `GetSecretValue` of the `AWSCURRENT` version of `secret_id` (a name or an ARN).
    fn read<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretValue, ReadError>>;
}

impl<R: SecretReader + ?Sized> SecretReader for Arc<R> {
    fn read<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretValue, ReadError>> {
        (**self).read(secret_id)
    }
}

/// What a [`SecretCache`] answers when it has no usable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager cannot be asked now and nothing usable is cached: 503, retry. The
    /// text (for logs) says why; answers to clients only say that the store is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// The secret is missing, denied or unusable: 500 until an operator fixes it. The text
    /// names the secret id and what is wrong with it, never its content.
    #[error("{0}")]
    Misconfigured(String),
}

/// How long values are trusted, from `SECRET_CACHE_TTL_SECONDS` and `SECRET_MAX_STALENESS_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// A value younger than this is served without asking Secrets Manager (default 5 min);
    /// a rotation is picked up at the first request after it.
    pub ttl: Duration,
    /// While Secrets Manager is unreachable or throttling, a value up to this old is still
    /// served, with a warning (default 1 h).
    pub max_staleness: Duration,
    /// After a failed read, the same answer is given for this long without asking again
    /// (a throttled or failing store is not hammered); also the `Retry-After` of the 503.
    pub retry_after: Duration,
}

pub const DEFAULT_TTL_SECONDS: u64 = 300;
pub const DEFAULT_MAX_STALENESS_SECONDS: u64 = 3600;
pub const RETRY_AFTER_SECONDS: u64 = 5;
/// Longest TTL and staleness accepted: a day.
pub const MAX_SECONDS: u64 = 86_400;

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(DEFAULT_TTL_SECONDS),
            max_staleness: Duration::from_secs(DEFAULT_MAX_STALENESS_SECONDS),
            retry_after: Duration::from_secs(RETRY_AFTER_SECONDS),
        }
    }
}

impl CacheSettings {
    pub fn from_env(env: &dyn Env) -> Result<CacheSettings, ConfigError> {
        let seconds = |var: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            let Some(raw) = env.var(var) else { return Ok(default) };
            match raw.trim().parse::<u64>() {
                Ok(n) if (min..=MAX_SECONDS).contains(&n) => Ok(n),
                _ => Err(ConfigError::Invalid {
                    var,
                    message: format!("expected whole seconds from {min} to {MAX_SECONDS}"),
                }),
            }
        };
        let ttl = seconds("SECRET_CACHE_TTL_SECONDS", DEFAULT_TTL_SECONDS, 1)?;
        let max_staleness = seconds(
            "SECRET_MAX_STALENESS_SECONDS",
            DEFAULT_MAX_STALENESS_SECONDS.max(ttl),
            1,
        )?;
        if max_staleness < ttl {
            return Err(ConfigError::Invalid {
                var: "SECRET_MAX_STALENESS_SECONDS",
                message: format!(
                    "{max_staleness} is below SECRET_CACHE_TTL_SECONDS ({ttl}); set it to at least the TTL"
                ),
            });
        }
        Ok(CacheSettings {
            ttl: Duration::from_secs(ttl),
            max_staleness: Duration::from_secs(max_staleness),
            retry_after: Duration::from_secs(RETRY_AFTER_SECONDS),
        })
    }
}

/// The value inside a secret string: the whole (untrimmed) string, or, when it is a JSON
/// object, the string in its field `secret.field`. The error says what is wrong, never
/// what the secret holds.
pub fn extract(string: &SecretString, secret: &SecretRef) -> Result<SecretString, String> {
    let text = string.expose();
    if !text.trim_start().starts_with('{') {
        return Ok(string.clone());
    }
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        // Only the position: serde_json's messages may quote the input.
        format!(
            "the secret string starts with `{{` but is not a valid JSON object (syntax error at line {} column {}); store the raw value, or valid JSON",
            e.line(),
            e.column()
        )
    })?;
    match object.get(&secret.field) {
        Some(serde_json::Value::String(value)) => Ok(SecretString::new(value.as_str())),
        Some(_) => Err(format!(
            "the JSON field `{}` of the secret is not a string; store the value as a JSON string",
            secret.field
        )),
        None => Err(format!(
            "the secret is a JSON object without the field `{}`; set {} to the name of the field that holds the value",
            secret.field, secret.field_var
        )),
    }
}

/// Something that can be read once ahead of the first request.
trait Prefetch: Send + Sync {
    fn prefetch(&self) -> BoxFuture<'_, ()>;
}

impl<T: Send + Sync + 'static> Prefetch for SecretCache<T> {
    fn prefetch(&self) -> BoxFuture<'_, ()> {
        // Failures are logged by the cache and answered to the first requests.
        Box::pin(async move {
            let _ = self.get().await;
        })
    }
}

/// The per-container source of secret caches: one reader (one AWS client), one clock, one
/// set of cache settings.
pub struct SecretStore {
    reader: Arc<dyn SecretReader>,
    settings: CacheSettings,
    clock: Arc<dyn Clock>,
    caches: Mutex<Vec<Arc<dyn Prefetch>>>,
}

impl SecretStore {
    pub fn new(reader: Arc<dyn SecretReader>, settings: CacheSettings) -> SecretStore {
        Self::with_clock(reader, settings, Arc::new(SystemClock))
    }

    pub fn with_clock(reader: Arc<dyn SecretReader>, settings: CacheSettings, clock: Arc<dyn Clock>) -> SecretStore {
        SecretStore {
            reader,
            settings,
            clock,
            caches: Mutex::new(Vec::new()),
        }
    }

    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// A cache of `secret`, parsed by `parse` (whose error says what is wrong, never the value).
    pub fn cache<T, P>(&self, secret: SecretRef, parse: P) -> Arc<SecretCache<T>>
    where
        T: Send + Sync + 'static,
        P: Fn(&SecretString) -> Result<T, String> + Send + Sync + 'static,
    {
        let cache = Arc::new(SecretCache::new(
            secret,
            self.reader.clone(),
            Box::new(parse),
            self.settings,
            self.clock.clone(),
        ));
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cache.clone());
        cache
    }

    /// Read every secret handed out so far once (during init, so that the first request
    /// finds them cached). Failures are logged and left for the requests to answer.
    pub async fn prefetch(&self) {
        let caches: Vec<Arc<dyn Prefetch>> = self.caches.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for cache in caches {
            cache.prefetch().await;
        }
    }
}

/// The in-memory fake [`SecretReader`] and a hand-driven clock, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) use cache::tests as testing;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn secret(field: &str) -> SecretRef {
        SecretRef {
            id: "prod/ably".into(),
            field: field.into(),
            id_var: "ABLY_API_KEY_SECRET_ID",
            field_var: "ABLY_API_KEY_SECRET_FIELD",
        }
    }

    fn extracted(text: &str, field: &str) -> Result<String, String> {
        extract(&SecretString::new(text), &secret(field)).map(|s| s.expose().to_owned())
    }

    #[test]
    fn raw_secret_string_is_the_value() {
        assert_eq!(extracted("app.key:MARKER", "ABLY_API_KEY").unwrap(), "app.key:MARKER");
        assert_eq!(
            extracted("app.key:MARKER\n", "ABLY_API_KEY").unwrap(),
            "app.key:MARKER\n"
        );
    }

    #[test]
    fn json_secret_string_yields_the_named_field() {
        let text = r#"{"ABLY_API_KEY":"app.key:MARKER","other":"x"}"#;
        assert_eq!(extracted(text, "ABLY_API_KEY").unwrap(), "app.key:MARKER");
        assert_eq!(extracted(&format!("  {text}\n"), "other").unwrap(), "x");
    }

    #[test]
    fn json_problems_name_the_field_and_never_the_content() {
        let cases = [
            (
                r#"{"key":"MARKER"}"#,
                "ABLY_API_KEY",
                "without the field `ABLY_API_KEY`",
            ),
            (r#"{"ABLY_API_KEY":["MARKER"]}"#, "ABLY_API_KEY", "is not a string"),
            (r#"{"ABLY_API_KEY":"MARKER""#, "ABLY_API_KEY", "not a valid JSON object"),
            (r#"{"ABLY_API_KEY":MARKER}"#, "ABLY_API_KEY", "not a valid JSON object"),
            (r#"["MARKER"]"#, "ABLY_API_KEY", ""),
        ];
        for (text, field, needle) in cases {
            match extracted(text, field) {
                // A JSON array is not an object: it is taken as a raw value (and then
                // refused by the key parser).
                Ok(v) => assert!(needle.is_empty() && v == text, "{text}"),
                Err(message) => {
                    assert!(message.contains(needle), "{text}: {message}");
                    assert!(!message.contains("MARKER"), "{message}");
                }
            }
        }
        let missing = extracted(r#"{"key":"MARKER"}"#, "ABLY_API_KEY").unwrap_err();
        assert!(missing.contains("ABLY_API_KEY_SECRET_FIELD"), "{missing}");
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn secret_ref_reads_the_id_and_the_field_with_its_default() {
        let e = env(&[("ABLY_API_KEY_SECRET_ID", " prod/ably ")]);
        let r = SecretRef::from_env(
            &e,
            "ABLY_API_KEY_SECRET_ID",
            "ABLY_API_KEY_SECRET_FIELD",
            "ABLY_API_KEY",
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.id.as_str(), r.field.as_str()), ("prod/ably", "ABLY_API_KEY"));
        assert_eq!(r.label(), r#"ABLY_API_KEY_SECRET_ID="prod/ably""#);
        let e = env(&[
            ("ABLY_API_KEY_SECRET_ID", "arn:aws:secretsmanager:us-east-1:1:secret:x"),
            ("ABLY_API_KEY_SECRET_FIELD", "key"),
        ]);
        let r = SecretRef::from_env(
            &e,
            "ABLY_API_KEY_SECRET_ID",
            "ABLY_API_KEY_SECRET_FIELD",
            "ABLY_API_KEY",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.field, "key");
        let none = SecretRef::from_env(
            &env(&[]),
            "ABLY_API_KEY_SECRET_ID",
            "ABLY_API_KEY_SECRET_FIELD",
            "ABLY_API_KEY",
        );
        assert_eq!(none.unwrap(), None);
        let bad = env(&[("ABLY_API_KEY_SECRET_ID", "prod ably")]);
        let err = SecretRef::from_env(
            &bad,
            "ABLY_API_KEY_SECRET_ID",
            "ABLY_API_KEY_SECRET_FIELD",
            "ABLY_API_KEY",
        );
        assert!(err.unwrap_err().to_string().contains("ABLY_API_KEY_SECRET_ID"));
    }

    #[test]
    fn cache_settings_default_to_five_minutes_and_one_hour() {
        let s = CacheSettings::from_env(&env(&[])).unwrap();
        assert_eq!(s, CacheSettings::default());
        assert_eq!(
            (s.ttl.as_secs(), s.max_staleness.as_secs(), s.retry_after.as_secs()),
            (300, 3600, 5)
        );
        let s = CacheSettings::from_env(&env(&[
            ("SECRET_CACHE_TTL_SECONDS", "60"),
            ("SECRET_MAX_STALENESS_SECONDS", "600"),
        ]))
        .unwrap();
        assert_eq!((s.ttl.as_secs(), s.max_staleness.as_secs()), (60, 600));
        // A TTL above the default staleness raises the default staleness with it.
        let s = CacheSettings::from_env(&env(&[("SECRET_CACHE_TTL_SECONDS", "7200")])).unwrap();
        assert_eq!(s.max_staleness.as_secs(), 7200);
    }

    #[test]
    fn bad_cache_settings_name_the_variable() {
        let cases = [
            (vec![("SECRET_CACHE_TTL_SECONDS", "0")], "SECRET_CACHE_TTL_SECONDS"),
            (vec![("SECRET_CACHE_TTL_SECONDS", "5m")], "SECRET_CACHE_TTL_SECONDS"),
            (vec![("SECRET_CACHE_TTL_SECONDS", "86401")], "SECRET_CACHE_TTL_SECONDS"),
            (
                vec![("SECRET_MAX_STALENESS_SECONDS", "-1")],
                "SECRET_MAX_STALENESS_SECONDS",
            ),
            (
                vec![
                    ("SECRET_CACHE_TTL_SECONDS", "600"),
                    ("SECRET_MAX_STALENESS_SECONDS", "300"),
                ],
                "SECRET_MAX_STALENESS_SECONDS",
            ),
        ];
        for (vars, needle) in cases {
            let message = CacheSettings::from_env(&env(&vars)).unwrap_err().to_string();
            assert!(message.contains(needle), "{vars:?}: {message}");
        }
    }
}
