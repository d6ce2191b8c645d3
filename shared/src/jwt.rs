//! Minting Ably JWTs (HS256 signed with the API key secret).
//!
//! The header and claims are serialised by hand, in a fixed order, so that the output is
//! byte-for-byte predictable (the spec's worked example is reproduced in a test) and cheap.

use crate::grant::Grant;
use crate::json;
use crate::key::ApiKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::fmt::Write as _;

/// Ably documents a practical limit of about 8 KB for a JWT (it travels in URLs and headers).
pub const MAX_JWT_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the JWT would be {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
}

/// What goes into one Ably JWT, already decided by policy and narrowing.
#[derive(Debug, Clone, Copy)]
pub struct JwtClaims<'a> {
    pub issued_at_seconds: u64,
    pub expires_at_seconds: u64,
    /// Canonical capability JSON text.
    pub capability: &'a str,
    pub client_id: Option<&'a str>,
    pub revocation_key: Option<&'a str>,
    /// `ably.channel.<resource>` → value (sorted by resource).
    pub channel_claims: &'a [(String, String)],
    /// `ably.room.<room>` → value (sorted by room): Ably Chat's per-room user claims.
    pub room_claims: &'a [(String, String)],
    /// `ably.limits.publish.perAttachment.maxRate.<resource>` → messages per second.
    pub rate_limits: &'a [(String, f64)],
}

impl<'a> JwtClaims<'a> {
    /// Claims for a grant issued at `now_ms` (the clock in milliseconds).
    pub fn for_grant(grant: &'a Grant, capability: &'a str, now_ms: u64) -> Self {
        let issued_at_seconds = now_ms / 1000;
        JwtClaims {
            issued_at_seconds,
            expires_at_seconds: issued_at_seconds + grant.ttl_ms / 1000,
            capability,
            client_id: grant.client_id.as_deref(),
            revocation_key: grant.revocation_key.as_deref(),
            channel_claims: &grant.channel_claims,
            room_claims: &grant.room_claims,
            rate_limits: &grant.rate_limits,
        }
    }
}

/// Mint a compact JWS: `base64url(header).base64url(payload).base64url(HMAC-SHA256)`.
pub fn mint(key: &ApiKey, claims: &JwtClaims<'_>) -> Result<String, JwtError> {
    let header = header_json(key);
    let payload = payload_json(claims);

    let encoded_len = jws_len(header.len(), payload.len());
    if encoded_len > MAX_JWT_BYTES {
        return Err(JwtError::TooLarge {
            size: encoded_len,
            limit: MAX_JWT_BYTES,
        });
    }
    let mut token = String::with_capacity(encoded_len);
    URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload.as_bytes(), &mut token);
    let tag = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
    Ok(token)
}

/// The length [`mint`] would give these claims, without signing (it may exceed the limit).
pub fn encoded_len(key: &ApiKey, claims: &JwtClaims<'_>) -> usize {
    encoded_len_for(key.name(), claims)
}

/// [`encoded_len`] for a key named `key_name` (the JWT's length depends on nothing secret).
pub fn encoded_len_for(key_name: &str, claims: &JwtClaims<'_>) -> usize {
    jws_len(header_json_for(key_name).len(), payload_json(claims).len())
}

fn header_json(key: &ApiKey) -> String {
    header_json_for(key.name())
}

/// The JWT header for a key named `key_name`, in the fixed order.
pub fn header_json_for(key_name: &str) -> String {
    let mut header = String::with_capacity(48 + key_name.len());
    header.push_str(r#"{"typ":"JWT","alg":"HS256","kid":"#);
    json::push_string(&mut header, key_name);
    header.push('}');
    header
}

/// `base64url(header) "." base64url(payload) "." base64url(32-byte tag)`.
fn jws_len(header_len: usize, payload_len: usize) -> usize {
    b64_len(header_len) + 1 + b64_len(payload_len) + 1 + 43
}

/// The payload JSON in the fixed claim order.
pub fn payload_json(claims: &JwtClaims<'_>) -> String {
    let mut p = String::with_capacity(128 + claims.capability.len() * 2);
    let _ = write!(
        p,
        r#"{{"iat":{},"exp":{},"x-ably-capability":"#,
        claims.issued_at_seconds, claims.expires_at_seconds
    );
    json::push_string(&mut p, claims.capability);
    if let Some(client_id) = claims.client_id {
        p.push_str(r#","x-ably-clientId":"#);
        json::push_string(&mut p, client_id);
    }
    if let Some(revocation_key) = claims.revocation_key {
        p.push_str(r#","x-ably-revocation-key":"#);
        json::push_string(&mut p, revocation_key);
    }
    for (resource, value) in claims.channel_claims {
        p.push(',');
        push_json_string_prefixed(&mut p, "ably.channel.", resource);
        p.push(':');
        json::push_string(&mut p, value);
    }
    for (room, value) in claims.room_claims {
        p.push(',');
        push_json_string_prefixed(&mut p, "ably.room.", room);
        p.push(':');
        json::push_string(&mut p, value);
    }
    for (resource, rate) in claims.rate_limits {
        p.push(',');
        push_json_string_prefixed(&mut p, "ably.limits.publish.perAttachment.maxRate.", resource);
        p.push(':');
        push_json_number(&mut p, *rate);
    }
    p.push('}');
    p
}

fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

fn push_json_string_prefixed(out: &mut String, prefix: &str, s: &str) {
    out.push('"');
    out.push_str(prefix);
    json::push_escaped(out, s);
    out.push('"');
}

/// JSON number: integers without a fraction, others in shortest round-trip form.
fn push_json_number(out: &mut String, n: f64) {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        let _ = write!(out, "{}", n as i64);
    } else {
        let _ = write!(out, "{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::parse("appId.keyId:keySecret").unwrap()
    }

    #[test]
    fn spec_worked_example_byte_for_byte() {
        let claims = JwtClaims {
            issued_at_seconds: 1_700_000_000,
            expires_at_seconds: 1_700_003_600,
            capability: r#"{"*":["subscribe"]}"#,
            client_id: Some("user-123"),
            revocation_key: None,
            channel_claims: &[],
            room_claims: &[],
            rate_limits: &[],
        };
        assert_eq!(
            payload_json(&claims),
            r#"{"iat":1700000000,"exp":1700003600,"x-ably-capability":"{\"*\":[\"subscribe\"]}","x-ably-clientId":"user-123"}"#
        );
        let token = mint(&key(), &claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
            br#"{"typ":"JWT","alg":"HS256","kid":"appId.keyId"}"#
        );
        assert_eq!(parts[2], "CCJ7XiTwO9n4SnuNgjRugkfopae4mog_wH-ux4Gbjgw");
    }

    #[test]
    fn channel_claims_and_rate_limits_are_emitted_in_order() {
        let channel_claims = vec![("chat:*".to_owned(), r#"{"name":"x\"y"}"#.to_owned())];
        let rate_limits = vec![("chat:*".to_owned(), 5.0), ("news".to_owned(), 0.1)];
        let claims = JwtClaims {
            issued_at_seconds: 10,
            expires_at_seconds: 70,
            capability: "{}",
            client_id: None,
            revocation_key: Some("org-1"),
            channel_claims: &channel_claims,
            room_claims: &[],
            rate_limits: &rate_limits,
        };
        let v: serde_json::Value = serde_json::from_str(&payload_json(&claims)).unwrap();
        assert_eq!(v["x-ably-revocation-key"], "org-1");
        assert_eq!(v["ably.channel.chat:*"], r#"{"name":"x\"y"}"#);
        assert_eq!(v["ably.limits.publish.perAttachment.maxRate.chat:*"], 5);
        assert_eq!(v["ably.limits.publish.perAttachment.maxRate.news"], 0.1);
        assert!(v.get("x-ably-clientId").is_none());
    }

    #[test]
    fn room_claims_are_emitted_as_ably_room_claims_after_channel_claims() {
        let channel_claims = vec![("chat:*".to_owned(), "c".to_owned())];
        let room_claims = vec![
            ("*".to_owned(), "any".to_owned()),
            ("support:*".to_owned(), r#"{"tier":"x\"y"}"#.to_owned()),
        ];
        let claims = JwtClaims {
            issued_at_seconds: 10,
            expires_at_seconds: 70,
            capability: "{}",
            client_id: Some("alice"),
            revocation_key: None,
            channel_claims: &channel_claims,
            room_claims: &room_claims,
            rate_limits: &[],
        };
        let payload = payload_json(&claims);
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["ably.room.*"], "any");
        assert_eq!(v["ably.room.support:*"], r#"{"tier":"x\"y"}"#);
        assert!(payload.find("ably.channel.").unwrap() < payload.find("ably.room.").unwrap());
    }

    #[test]
    fn refuses_tokens_over_8_kib() {
        let big = vec![("r".repeat(40), "v".repeat(200)); 40];
        let claims = JwtClaims {
            issued_at_seconds: 10,
            expires_at_seconds: 70,
            capability: "{}",
            client_id: None,
            revocation_key: None,
            channel_claims: &big,
            room_claims: &[],
            rate_limits: &[],
        };
        match mint(&key(), &claims) {
            Err(JwtError::TooLarge { size, limit }) => {
                assert_eq!(limit, 8192);
                assert!(size > 8192);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn size_estimate_is_exact() {
        let claims = JwtClaims {
            issued_at_seconds: 1,
            expires_at_seconds: 2,
            capability: r#"{"a":["*"]}"#,
            client_id: Some("c"),
            revocation_key: None,
            channel_claims: &[],
            room_claims: &[],
            rate_limits: &[],
        };
        let token = mint(&key(), &claims).unwrap();
        let header_len = r#"{"typ":"JWT","alg":"HS256","kid":"appId.keyId"}"#.len();
        assert_eq!(
            token.len(),
            b64_len(header_len) + 1 + b64_len(payload_json(&claims).len()) + 1 + 43
        );
        assert_eq!(encoded_len(&key(), &claims), token.len());
    }
}
