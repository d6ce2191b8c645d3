//! The real [`SecretReader`]: `aws-sdk-secretsmanager`, built once per container.

use super::{ReadError, SecretReader, SecretValue};
use crate::env::{flag, ConfigError, Env};
use crate::future::BoxFuture;
use crate::metrics::{Dependency, Failure};
use crate::secret::SecretString;
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::Config;
use std::time::Duration;

/// Time to establish a connection to Secrets Manager (same-region endpoints answer in ms).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// One attempt, including reading the answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
/// All attempts together: well inside a Lambda's seconds, and the longest a request waits
/// before a cached value is served in its place.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// Standard retry mode (throttling-aware, with a retry quota), two attempts in all.
pub const MAX_ATTEMPTS: u32 = 2;
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// The AWS settings taken from the function's environment. In Lambda: `AWS_REGION` and the
/// execution role's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); required.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER` (or `AWS_ENDPOINT_URL`), unless
    /// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`: the standard endpoint override.
    pub endpoint_url: Option<String>,
    /// Credentials from the environment; required (Lambda always sets them).
    pub credentials: Option<EnvCredentials>,
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (`Debug` redacts).
#[derive(Debug, Clone)]
pub struct EnvCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

impl AwsSettings {
    /// Read through [`Env`], so that tests can point one service at a local Secrets Manager
    /// without touching the process environment. With the process environment this is what
    /// the SDK itself would pick up.
    pub fn from_env(env: &dyn Env) -> Result<AwsSettings, ConfigError> {
        let ignore_endpoints = flag(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")?;
        let endpoint_url = if ignore_endpoints {
            None
        } else {
            env.var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                .or_else(|| env.var("AWS_ENDPOINT_URL"))
                .map(|u| u.trim().to_owned())
        };
        let credentials = match (env.var("AWS_ACCESS_KEY_ID"), env.var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some(EnvCredentials {
                access_key_id: id.trim().to_owned(),
                secret_access_key: SecretString::new(secret.trim()),
                session_token: env.var("AWS_SESSION_TOKEN").map(|t| SecretString::new(t.trim())),
            }),
            _ => None,
        };
        Ok(AwsSettings {
            region: env
                .var("AWS_REGION")
                .or_else(|| env.var("AWS_DEFAULT_REGION"))
                .map(|r| r.trim().to_owned()),
            endpoint_url,
            credentials,
        })
    }
}

/// `GetSecretValue` through the AWS SDK. Build it once per container (during init).
#[derive(Debug, Clone)]
pub struct AwsSecretReader {
    client: Client,
}

impl AwsSecretReader {
    /// The client with this project's timeouts and retries, configured from the environment
    /// alone (no `aws-config` loader: no profile files, SSO or IMDS, which a Lambda never needs
    /// and which cost ~0.4 MB of binary and most of the client's build time). Fails when the
    /// region or the credentials are missing: the function cannot start usefully.
    pub fn new(settings: AwsSettings) -> Result<AwsSecretReader, ConfigError> {
        let Some(region) = settings.region else {
            return Err(ConfigError::Missing {
                var: "AWS_REGION",
                hint: "reading secrets from AWS Secrets Manager needs the region (Lambda sets it; locally export AWS_REGION=…)",
            });
        };
        let Some(c) = settings.credentials else {
            return Err(ConfigError::Missing {
                var: "AWS_ACCESS_KEY_ID",
                hint: "reading secrets from AWS Secrets Manager needs AWS credentials in the environment (Lambda and `sam local` pass the role's or profile's; for `cargo lambda watch` run `eval \"$(aws configure export-credentials --format env)\"` first, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            });
        };
        let credentials = Credentials::new(
            c.access_key_id,
            c.secret_access_key.expose(),
            c.session_token.map(|t| t.expose().to_owned()),
            None,
            "environment",
        );
        let mut config = Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .credentials_provider(credentials)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF),
            );
        if let Some(url) = settings.endpoint_url {
            config = config.endpoint_url(url);
        }
        tracing::debug!(region = %region, "AWS Secrets Manager client built");
        Ok(Self::from_client(Client::from_conf(config.build())))
    }

    /// Wrap a client configured elsewhere.
    pub fn from_client(client: Client) -> AwsSecretReader {
        AwsSecretReader { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl SecretReader for AwsSecretReader {
    fn read<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretValue, ReadError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_secret_value()
                .secret_id(secret_id)
                .send()
                .await
                .map_err(classify)?;
            let Some(string) = output.secret_string() else {
                return Err(ReadError::NotText);
            };
            Ok(SecretValue {
                string: SecretString::new(string),
                version: output.version_id().map(str::to_owned),
            })
        })
    }
}

/// Which failures are transient (serve the cached value, retry) and which are the
/// operator's to fix; each is counted in the `UpstreamFailures` metric by its kind.
fn classify(e: SdkError<GetSecretValueError>) -> ReadError {
    let error = read_error(&e);
    crate::metrics::upstream_failure(Dependency::SecretsManager, failure_kind(&e, &error));
    error
}

/// The metric kind of a failed `GetSecretValue`.
fn failure_kind(e: &SdkError<GetSecretValueError>, error: &ReadError) -> Failure {
    match e {
        SdkError::TimeoutError(_) => Failure::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => Failure::Timeout,
        SdkError::DispatchFailure(_) => Failure::Unreachable,
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded") => Failure::Throttled,
            Some("RequestTimeout" | "RequestTimeoutException") => Failure::Timeout,
            _ if matches!(error, ReadError::Unavailable(_)) => match service.raw().status().as_u16() {
                429 => Failure::Throttled,
                _ => Failure::ServerError,
            },
            _ => Failure::Rejected,
        },
        SdkError::ResponseError(_) => Failure::ServerError,
        _ if matches!(error, ReadError::Unavailable(_)) => Failure::Unreachable,
        _ => Failure::Rejected,
    }
}

fn read_error(e: &SdkError<GetSecretValueError>) -> ReadError {
    let detail = || DisplayErrorContext(e).to_string();
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let status = service.raw().status().as_u16();
            let what = || match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => format!("HTTP {status}"),
            };
            match err {
                GetSecretValueError::ResourceNotFoundException(_) => ReadError::NotFound,
                GetSecretValueError::DecryptionFailure(_) => ReadError::AccessDenied(what()),
                GetSecretValueError::InternalServiceError(_) => ReadError::Unavailable(what()),
                _ => match kind_of(err.code(), status) {
                    Kind::Transient => ReadError::Unavailable(what()),
                    Kind::Denied => ReadError::AccessDenied(what()),
                    Kind::Refused => ReadError::Refused(what()),
                },
            }
        }
        // Not answered: unreachable, timed out, connection dropped, garbled answer.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ReadError::Unavailable(detail())
        }
        // The request could not even be built: configuration.
        SdkError::ConstructionFailure(_) => ReadError::Refused(detail()),
        _ => ReadError::Unavailable(detail()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Transient,
    Denied,
    Refused,
}

/// An error answer that is not one of `GetSecretValue`'s modelled errors.
fn kind_of(code: Option<&str>, status: u16) -> Kind {
    match code {
        Some(
            "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "RequestTimeoutException",
        ) => Kind::Transient,
        Some("AccessDeniedException" | "AccessDenied" | "KMSAccessDeniedException") => Kind::Denied,
        _ if status == 429 || status >= 500 => Kind::Transient,
        // Bad id, deleted secret, invalid or expired credentials, wrong signature…
        _ => Kind::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn throttling_and_server_errors_are_transient_the_rest_is_for_the_operator() {
        assert_eq!(kind_of(Some("ThrottlingException"), 400), Kind::Transient);
        assert_eq!(kind_of(Some("SomethingNew"), 503), Kind::Transient);
        assert_eq!(kind_of(None, 429), Kind::Transient);
        assert_eq!(kind_of(Some("AccessDeniedException"), 400), Kind::Denied);
        assert_eq!(kind_of(Some("InvalidRequestException"), 400), Kind::Refused);
        assert_eq!(kind_of(Some("UnrecognizedClientException"), 400), Kind::Refused);
        assert_eq!(kind_of(Some("ExpiredTokenException"), 400), Kind::Refused);
    }

    #[test]
    fn settings_come_from_the_given_environment() {
        let vars: HashMap<&str, &str> = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "SECRETMARKER"),
        ]
        .into_iter()
        .collect();
        let env = |k: &str| vars.get(k).map(|v| (*v).to_owned());
        let s = AwsSettings::from_env(&env).unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            s.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000"),
            "the service-specific override wins"
        );
        assert!(
            !format!("{s:?}").contains("SECRETMARKER"),
            "Debug redacts the secret key"
        );
        let ignore = |k: &str| match k {
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS" => Some("true".to_owned()),
            k => env(k),
        };
        assert_eq!(AwsSettings::from_env(&ignore).unwrap().endpoint_url, None);
        let bare = AwsSettings::from_env(&|_: &str| None).unwrap();
        assert!(bare.region.is_none() && bare.endpoint_url.is_none() && bare.credentials.is_none());
    }
}
