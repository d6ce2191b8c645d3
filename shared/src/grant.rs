//! What one caller is issued, and how the client's hints narrow it.

use crate::capability::Capability;
use crate::error::{truncate_for_message, IssueError};
use crate::limits::MIN_TTL_SECONDS;
use crate::params::TokenHints;

/// A capability hint may not make the capability longer than this (canonical JSON bytes)
/// unless the grant itself is longer: the intersection of two patterns can be longer than
/// either, and the capability is JSON-escaped again inside a TokenRequest or TokenDetails,
/// which SDKs refuse above 128 KiB.
pub const MAX_NARROWED_CAPABILITY_BYTES: usize = 32 * 1024;

/// The rights decided for one caller: policy first, then narrowed by the client's hints.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub client_id: Option<String>,
    pub capability: Capability,
    /// `ably.channel.<resource>` claims, sorted by resource.
    pub channel_claims: Vec<(String, String)>,
    /// `ably.room.<room>` claims (Ably Chat's per-room user claims), sorted by room.
    pub room_claims: Vec<(String, String)>,
    /// Per-connection publish rate limits (messages/s), sorted by resource.
    pub rate_limits: Vec<(String, f64)>,
    pub ttl_ms: u64,
    pub revocation_key: Option<String>,
    /// May call the revoke route.
    pub may_revoke: bool,
}

impl Grant {
    /// Apply the client's hints. Hints only narrow: a different clientId is refused (40102),
    /// the capability is intersected (empty → 40160; grown past
    /// [`MAX_NARROWED_CAPABILITY_BYTES`] → 400), the TTL can only shorten (but not below
    /// [`MIN_TTL_SECONDS`] unless the grant itself is shorter).
    pub fn narrow(mut self, hints: &TokenHints) -> Result<Grant, IssueError> {
        if let Some(requested) = &hints.client_id {
            if self.client_id.as_deref() != Some(requested.as_str()) {
                return Err(IssueError::ClientIdMismatch {
                    requested: truncate_for_message(requested, 64),
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
            let size = narrowed.to_canonical_string().len();
            if size > MAX_NARROWED_CAPABILITY_BYTES && size > self.capability.to_canonical_string().len() {
                return Err(IssueError::bad_request(
                    "capability",
                    format!("narrowed to your grant it is {size} bytes, over the {MAX_NARROWED_CAPABILITY_BYTES}-byte limit; request fewer or shorter resource names, or omit `capability` to receive your whole grant"),
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        let mut capability = Capability::default();
        capability
            .insert(
                "chat:*",
                crate::capability::Ops::parse(&["publish", "subscribe"]).unwrap(),
            )
            .unwrap();
        Grant {
            client_id: Some("alice".into()),
            capability,
            channel_claims: vec![],
            room_claims: vec![],
            rate_limits: vec![],
            ttl_ms: 3_600_000,
            revocation_key: None,
            may_revoke: false,
        }
    }

    fn hints(client_id: Option<&str>, capability: Option<&str>, ttl_ms: Option<u64>) -> TokenHints {
        TokenHints {
            client_id: client_id.map(str::to_owned),
            capability: capability.map(|c| Capability::parse(c).unwrap()),
            ttl_ms,
        }
    }

    #[test]
    fn no_hints_keep_the_grant() {
        assert_eq!(grant().narrow(&TokenHints::default()).unwrap(), grant());
    }

    #[test]
    fn same_client_id_is_accepted_and_another_gets_40102() {
        assert!(grant().narrow(&hints(Some("alice"), None, None)).is_ok());
        for other in ["bob", "*", "Alice"] {
            let e = grant().narrow(&hints(Some(other), None, None)).unwrap_err();
            assert_eq!((e.status(), e.code()), (403, 40102));
        }
        let mut anonymous = grant();
        anonymous.client_id = None;
        let e = anonymous.narrow(&hints(Some("alice"), None, None)).unwrap_err();
        assert_eq!(e.code(), 40102);
    }

    #[test]
    fn capability_hint_narrows_and_disjoint_gets_40160() {
        let g = grant()
            .narrow(&hints(None, Some(r#"{"chat:lobby":["subscribe","presence"]}"#), None))
            .unwrap();
        assert_eq!(g.capability.to_canonical_string(), r#"{"chat:lobby":["subscribe"]}"#);
        let g = grant().narrow(&hints(None, Some(r#"{"*":["*"]}"#), None)).unwrap();
        assert_eq!(
            g.capability.to_canonical_string(),
            r#"{"chat:*":["publish","subscribe"]}"#
        );
        let e = grant()
            .narrow(&hints(None, Some(r#"{"news":["subscribe"]}"#), None))
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (403, 40160));
    }

    #[test]
    fn capability_hint_that_grows_the_capability_past_32_kib_gets_400_naming_capability() {
        // `*:<name>` meets the grant's `chat:*` as `chat:<name>`: each result is longer than
        // what was asked. 20 names of 2,000 bytes: about 40 KiB once narrowed.
        let names: Vec<String> = (0..20)
            .map(|i| format!("\"*:{i:02}{}\":[\"subscribe\"]", "n".repeat(1998)))
            .collect();
        let hint = format!("{{{}}}", names.join(","));
        let e = grant().narrow(&hints(None, Some(&hint), None)).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, 40000));
        assert!(
            matches!(&e, IssueError::BadRequest { field: "capability", message } if message.contains("32768-byte limit")),
            "{e}"
        );
        // Half as many fit.
        let hint = format!("{{{}}}", names[..10].join(","));
        let g = grant().narrow(&hints(None, Some(&hint), None)).unwrap();
        assert_eq!(g.capability.len(), 10);
    }

    #[test]
    fn a_grant_already_over_32_kib_is_not_blamed_on_a_narrowing_hint() {
        let mut big = grant();
        for i in 0..20 {
            big.capability
                .insert(
                    &format!("room:{i:02}{}", "n".repeat(1998)),
                    crate::capability::Ops::parse(&["subscribe"]).unwrap(),
                )
                .unwrap();
        }
        let g = big.narrow(&hints(None, Some(r#"{"*":["subscribe"]}"#), None)).unwrap();
        assert_eq!(g.capability.len(), 21, "the hint narrowed nothing but is not refused");
    }

    #[test]
    fn ttl_hint_only_shortens_with_a_floor() {
        assert_eq!(
            grant().narrow(&hints(None, None, Some(600_000))).unwrap().ttl_ms,
            600_000
        );
        assert_eq!(
            grant().narrow(&hints(None, None, Some(90_000_000))).unwrap().ttl_ms,
            3_600_000
        );
        // Ruby sends seconds: 3600 "ms" would churn; the floor keeps a usable token.
        assert_eq!(grant().narrow(&hints(None, None, Some(3600))).unwrap().ttl_ms, 60_000);
        let mut short = grant();
        short.ttl_ms = 30_000;
        assert_eq!(short.narrow(&hints(None, None, Some(1))).unwrap().ttl_ms, 30_000);
    }
}
