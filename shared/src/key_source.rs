//! Where the Ably API key comes from, behind one narrow trait: the environment locally,
//! AWS Secrets Manager in the cloud.

use crate::caller::BoxFuture;
use crate::error::IssueError;
use crate::key::ApiKey;
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
                retry_after_seconds: 5,
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
