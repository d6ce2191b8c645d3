//! What one caller is issued, and how the client's hints narrow it.

use crate::capability::Capability;
use crate::error::IssueError;
use crate::params::TokenHints;
use crate::policy::MIN_TTL_SECONDS;

/// The rights decided for one caller: policy first, then narrowed by the client's hints.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub client_id: Option<String>,
    pub capability: Capability,
    /// `ably.channel.<resource>` claims, sorted by resource.
    pub channel_claims: Vec<(String, String)>,
    /// Per-connection publish rate limits (messages/s), sorted by resource.
    pub rate_limits: Vec<(String, f64)>,
    pub ttl_ms: u64,
    pub revocation_key: Option<String>,
    /// May call the revoke route.
    pub may_revoke: bool,
}

impl Grant {
    /// Apply the client's hints. Hints only narrow: a different clientId is refused (40102),
    /// the capability is intersected (empty → 40160), the TTL can only shorten (but not
    /// below [`MIN_TTL_SECONDS`] unless the grant itself is shorter).
    pub fn narrow(mut self, hints: &TokenHints) -> Result<Grant, IssueError> {
        if let Some(requested) = &hints.client_id {
            if self.client_id.as_deref() != Some(requested.as_str()) {
                return Err(IssueError::ClientIdMismatch {
                    requested: truncate(requested, 64),
                    issued: self
                        .client_id
                        .as_deref()
                        .map_or_else(|| "none: anonymous".to_owned(), |c| format!("{c:?}")),
                });
            }
        }
        if let Some(requested) = &hints.capability {
            let narrowed = Capability::intersect(requested, &self.capability);
            if narrowed.is_empty() {
                return Err(IssueError::CapabilityDenied);
            }
            self.capability = narrowed;
        }
        if let Some(ttl_ms) = hints.ttl_ms {
            let floor = (MIN_TTL_SECONDS * 1000).min(self.ttl_ms);
            self.ttl_ms = ttl_ms.clamp(floor, self.ttl_ms);
        }
        Ok(self)
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
