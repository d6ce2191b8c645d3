//! Where the Ably API key comes from, behind one narrow trait: the environment locally,
//! AWS Secrets Manager in the cloud.

use crate::env::{ConfigError, Env};
use crate::error::IssueError;
use crate::future::BoxFuture;
use crate::key::ApiKey;
use crate::secret::SecretString;
use crate::secrets::{SecretCache, SecretError, SecretRef, SecretStore, RETRY_AFTER_SECONDS};
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeySourceError {
    /// The store cannot be reached now and no usable key is cached: 503, retry.
    #[error("{0}")]
    Unavailable(Cow<'static, str>),
    /// The store answered, but the key cannot be used (missing, denied, malformed): 500.
    #[error("{0}")]
    Misconfigured(Cow<'static, str>),
}

impl From<KeySourceError> for IssueError {
    fn from(e: KeySourceError) -> Self {
        match e {
            KeySourceError::Unavailable(what) => IssueError::Unavailable {
                what,
                retry_after_seconds: RETRY_AFTER_SECONDS as u32,
            },
            KeySourceError::Misconfigured(why) => IssueError::Misconfigured(why),
        }
    }
}

/// The current Ably API key.
pub trait KeySource: Send + Sync {
    fn current(&self) -> BoxFuture<'_, Result<Arc<ApiKey>, KeySourceError>>;
}

/// A key fixed at start-up (from `ABLY_API_KEY`).
#[derive(Debug, Clone)]
pub struct StaticKey(Arc<ApiKey>);

impl StaticKey {
    pub fn new(key: ApiKey) -> Self {
        Self(Arc::new(key))
    }
}

impl KeySource for StaticKey {
    fn current(&self) -> BoxFuture<'_, Result<Arc<ApiKey>, KeySourceError>> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// Where the key comes from: exactly one of `ABLY_API_KEY` and `ABLY_API_KEY_SECRET_ID`.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyConfig {
    /// `ABLY_API_KEY`: fixed for the life of the container (local development).
    Static(Box<ApiKey>),
    /// `ABLY_API_KEY_SECRET_ID` (+ `ABLY_API_KEY_SECRET_FIELD`): read from AWS Secrets
    /// Manager and cached (the cloud).
    SecretsManager(SecretRef),
}

/// The JSON field that holds the key when the secret string is a JSON object.
pub const DEFAULT_SECRET_FIELD: &str = "ABLY_API_KEY";

impl KeyConfig {
    pub fn from_env(env: &dyn Env) -> Result<KeyConfig, ConfigError> {
        let secret = SecretRef::from_env(
            env,
            "ABLY_API_KEY_SECRET_ID",
            "ABLY_API_KEY_SECRET_FIELD",
            DEFAULT_SECRET_FIELD,
        )?;
        match (env.var("ABLY_API_KEY"), secret) {
            (Some(_), Some(_)) => Err(ConfigError::Ambiguous("ABLY_API_KEY", "ABLY_API_KEY_SECRET_ID")),
            (Some(raw), None) => ApiKey::parse(raw.trim())
                .map(|key| KeyConfig::Static(Box::new(key)))
                .map_err(|e| ConfigError::Invalid {
                    var: "ABLY_API_KEY",
                    message: e.to_string(),
                }),
            (None, Some(secret)) => Ok(KeyConfig::SecretsManager(secret)),
            (None, None) => Err(ConfigError::Missing {
                var: "ABLY_API_KEY_SECRET_ID",
                hint: "set it to the name or ARN of the AWS Secrets Manager secret holding the Ably API key (in the cloud), or set ABLY_API_KEY to the key itself, appId.keyId:keySecret (local development)",
            }),
        }
    }

    /// The key source this configuration describes; `secrets` must be given for
    /// [`KeyConfig::SecretsManager`].
    pub fn source(&self, secrets: Option<&SecretStore>) -> Result<Arc<dyn KeySource>, ConfigError> {
        match (self, secrets) {
            (KeyConfig::Static(key), _) => Ok(Arc::new(StaticKey::new((**key).clone()))),
            (KeyConfig::SecretsManager(secret), Some(store)) => {
                Ok(Arc::new(SecretsManagerKey::new(store, secret.clone())))
            }
            (KeyConfig::SecretsManager(_), None) => Err(ConfigError::Invalid {
                var: "ABLY_API_KEY_SECRET_ID",
                message: NO_STORE.into(),
            }),
        }
    }
}

/// For programs that build a service without the AWS client (tests, benchmarks).
pub(crate) const NO_STORE: &str = "reading it needs the AWS Secrets Manager client, which this start-up path does not build; start with `Service::from_env` (or `Service::init`)";

/// The key in AWS Secrets Manager: the secret string is the key itself, or a JSON object
/// holding it in a field. Cached per [`crate::secrets::CacheSettings`].
pub struct SecretsManagerKey {
    cache: Arc<SecretCache<ApiKey>>,
}

impl SecretsManagerKey {
    pub fn new(store: &SecretStore, secret: SecretRef) -> Self {
        let cache = store.cache(secret, |value: &SecretString| {
            // Outer whitespace is a common accident of `--secret-string file://key.txt`.
            ApiKey::parse(value.expose().trim()).map_err(|e| e.to_string())
        });
        SecretsManagerKey { cache }
    }
}

impl From<SecretError> for KeySourceError {
    fn from(e: SecretError) -> Self {
        match e {
            // The reason is in the log; the caller learns only that the store is down.
            SecretError::Unavailable(_) => {
                KeySourceError::Unavailable("the Ably API key store (AWS Secrets Manager)".into())
            }
            SecretError::Misconfigured(why) => KeySourceError::Misconfigured(why.into()),
        }
    }
}

impl KeySource for SecretsManagerKey {
    fn current(&self) -> BoxFuture<'_, Result<Arc<ApiKey>, KeySourceError>> {
        Box::pin(async move { self.cache.get().await.map_err(KeySourceError::from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::testing::{FakeReader, ManualClock};
    use crate::secrets::{CacheSettings, ReadError};
    use std::collections::HashMap;
    use std::time::Duration;

    const KEY: &str = "app.key:KEYSECRETMARKER";

    fn config(vars: &[(&str, &str)]) -> Result<KeyConfig, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        KeyConfig::from_env(&move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn ably_api_key_alone_is_a_static_key() {
        let KeyConfig::Static(key) = config(&[("ABLY_API_KEY", KEY)]).unwrap() else {
            panic!()
        };
        assert_eq!(key.name(), "app.key");
        let err = config(&[("ABLY_API_KEY", "nocolon")]).unwrap_err().to_string();
        assert!(err.contains("ABLY_API_KEY"), "{err}");
    }

    #[test]
    fn secret_id_alone_reads_secrets_manager_with_the_default_field() {
        let KeyConfig::SecretsManager(secret) = config(&[("ABLY_API_KEY_SECRET_ID", "prod/ably")]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (secret.id.as_str(), secret.field.as_str()),
            ("prod/ably", "ABLY_API_KEY")
        );
        let KeyConfig::SecretsManager(secret) = config(&[
            ("ABLY_API_KEY_SECRET_ID", "prod/ably"),
            ("ABLY_API_KEY_SECRET_FIELD", "key"),
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(secret.field, "key");
    }

    #[test]
    fn both_key_variables_refuse_to_start() {
        let err = config(&[("ABLY_API_KEY", KEY), ("ABLY_API_KEY_SECRET_ID", "prod/ably")]).unwrap_err();
        assert!(
            matches!(err, ConfigError::Ambiguous("ABLY_API_KEY", "ABLY_API_KEY_SECRET_ID")),
            "{err}"
        );
        assert!(!err.to_string().contains("KEYSECRETMARKER"));
    }

    #[test]
    fn neither_key_variable_refuses_to_start_naming_both() {
        let err = config(&[]).unwrap_err().to_string();
        assert!(
            err.contains("ABLY_API_KEY_SECRET_ID") && err.contains("ABLY_API_KEY to the key"),
            "{err}"
        );
    }

    #[test]
    fn a_secrets_manager_key_needs_the_store() {
        let secret = config(&[("ABLY_API_KEY_SECRET_ID", "prod/ably")]).unwrap();
        let err = secret.source(None).err().expect("refused").to_string();
        assert!(err.contains("ABLY_API_KEY_SECRET_ID"), "{err}");
        assert!(config(&[("ABLY_API_KEY", KEY)]).unwrap().source(None).is_ok());
    }

    fn source(reader: Arc<FakeReader>) -> (SecretsManagerKey, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let store = SecretStore::with_clock(reader, CacheSettings::default(), clock.clone());
        let secret = SecretRef::from_env(
            &|k: &str| (k == "ABLY_API_KEY_SECRET_ID").then(|| "prod/ably".to_owned()),
            "ABLY_API_KEY_SECRET_ID",
            "ABLY_API_KEY_SECRET_FIELD",
            DEFAULT_SECRET_FIELD,
        )
        .unwrap()
        .unwrap();
        (SecretsManagerKey::new(&store, secret), clock)
    }

    #[tokio::test]
    async fn key_is_read_raw_or_from_the_json_field_and_trimmed() {
        for stored in [
            KEY.to_owned(),
            format!("{KEY}\n"),
            format!(r#"{{"ABLY_API_KEY":"{KEY}","other":1}}"#),
        ] {
            let (keys, _) = source(FakeReader::with(&stored));
            let key = keys.current().await.unwrap();
            assert_eq!(
                (key.name(), key.secret().expose()),
                ("app.key", "KEYSECRETMARKER"),
                "{stored}"
            );
        }
    }

    #[tokio::test]
    async fn key_store_unreachable_at_cold_start_is_503_with_retry_after() {
        let reader = FakeReader::with(KEY);
        reader.fail(ReadError::Unavailable("connection refused".into()));
        let (keys, _) = source(reader);
        let e = IssueError::from(keys.current().await.unwrap_err());
        assert_eq!((e.status(), e.code(), e.retry_after_seconds()), (503, 50300, Some(5)));
        assert!(e.to_string().contains("AWS Secrets Manager"), "{e}");
    }

    #[tokio::test]
    async fn key_store_unreachable_while_warm_keeps_serving_the_key() {
        let reader = FakeReader::with(KEY);
        let (keys, clock) = source(reader.clone());
        keys.current().await.unwrap();
        reader.fail(ReadError::Unavailable("connection refused".into()));
        clock.advance(Duration::from_secs(900));
        assert_eq!(keys.current().await.unwrap().name(), "app.key");
    }

    #[tokio::test]
    async fn unusable_secret_is_500_naming_the_secret_never_its_content() {
        let cases = [
            (FakeReader::with("app.key"), "no ':'"),
            (
                FakeReader::with(r#"{"key":"app.key:KEYSECRETMARKER"}"#),
                "ABLY_API_KEY_SECRET_FIELD",
            ),
            (Arc::new(FakeReader::default()), "does not exist"),
        ];
        for (reader, needle) in cases {
            let (keys, _) = source(reader);
            let e = IssueError::from(keys.current().await.unwrap_err());
            assert_eq!((e.status(), e.code(), e.retry_after_seconds()), (500, 50000, None));
            let message = e.to_string();
            assert!(message.contains(r#"ABLY_API_KEY_SECRET_ID="prod/ably""#), "{message}");
            assert!(message.contains(needle), "{message}");
            assert!(!message.contains("KEYSECRETMARKER"), "{message}");
        }
    }
}
