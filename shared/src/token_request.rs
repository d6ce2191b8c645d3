//! Signed Ably TokenRequests (exchanged by the client SDK, or by us, for an Ably Token).

use crate::key::ApiKey;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A signed TokenRequest, serialised in the camelCase shape the Ably SDKs expect from an
/// `authUrl` answering `application/json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub key_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub timestamp: u64,
    pub nonce: String,
    pub mac: String,
}

/// The fields that are signed, before the MAC.
#[derive(Debug, Clone, Copy)]
pub struct Unsigned<'a> {
    pub ttl_ms: Option<u64>,
    pub capability: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub timestamp_ms: u64,
    pub nonce: &'a str,
}

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed; retry")]
pub struct RandomError;

/// 16 bytes from the operating system's CSPRNG, as 22 base64url characters.
pub fn new_nonce() -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `keyName\nttl\ncapability\nclientId\ntimestamp\nnonce\n` — absent fields as empty strings.
pub fn sign_text(key_name: &str, u: &Unsigned<'_>) -> String {
    let mut t = String::with_capacity(64 + key_name.len() + u.capability.map_or(0, str::len));
    t.push_str(key_name);
    t.push('\n');
    if let Some(ttl) = u.ttl_ms {
        let _ = write!(t, "{ttl}");
    }
    t.push('\n');
    t.push_str(u.capability.unwrap_or(""));
    t.push('\n');
    t.push_str(u.client_id.unwrap_or(""));
    t.push('\n');
    let _ = write!(t, "{}", u.timestamp_ms);
    t.push('\n');
    t.push_str(u.nonce);
    t.push('\n');
    t
}

/// Sign: `mac` = standard base64 (with padding) of HMAC-SHA256(secret, signText).
pub fn sign(key: &ApiKey, u: &Unsigned<'_>) -> TokenRequest {
    let tag = key.sign(sign_text(key.name(), u).as_bytes());
    TokenRequest {
        key_name: key.name().to_owned(),
        ttl: u.ttl_ms,
        capability: u.capability.map(str::to_owned),
        client_id: u.client_id.map(str::to_owned),
        timestamp: u.timestamp_ms,
        nonce: u.nonce.to_owned(),
        mac: STANDARD.encode(tag.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_vector_ably_python() {
        let key = ApiKey::parse("a_key.name:a_secret").unwrap();
        // The vector's key name is `a_key_name`; sign_text takes the name explicitly.
        let u = Unsigned {
            ttl_ms: Some(1000),
            capability: None,
            client_id: Some("a_id"),
            timestamp_ms: 1000,
            nonce: "abcde100",
        };
        let tag = key.sign(sign_text("a_key_name", &u).as_bytes());
        assert_eq!(
            STANDARD.encode(tag.as_ref()),
            "sYkCH0Un+WgzI7/Nhy0BoQIKq9HmjKynCRs4E3qAbGQ="
        );
    }

    #[test]
    fn mac_vector_full_request() {
        let key = ApiKey::parse("appId.keyId:keySecret").unwrap();
        let u = Unsigned {
            ttl_ms: Some(3_600_000),
            capability: Some(r#"{"*":["subscribe"],"private":["presence","publish","subscribe"]}"#),
            client_id: Some("user-123"),
            timestamp_ms: 1_700_000_000_000,
            nonce: "0123456789abcdef",
        };
        let tr = sign(&key, &u);
        assert_eq!(tr.mac, "RizTbd1EgiVSjKn3wlsdMgay/fkzsH5PKCN0VbaKOqI=");
        assert_eq!(tr.key_name, "appId.keyId");
    }

    #[test]
    fn mac_vector_minimal_request() {
        let key = ApiKey::parse("appId.keyId:keySecret").unwrap();
        let u = Unsigned {
            ttl_ms: None,
            capability: None,
            client_id: None,
            timestamp_ms: 1_700_000_000_000,
            nonce: "0123456789abcdef",
        };
        let tr = sign(&key, &u);
        assert_eq!(tr.mac, "hof9jY3Ir8CZuMxMW/MEF7NHdZ61VWK2ByjCJDseUO0=");
        let json = serde_json::to_value(&tr).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"keyName":"appId.keyId","timestamp":1_700_000_000_000u64,"nonce":"0123456789abcdef","mac":"hof9jY3Ir8CZuMxMW/MEF7NHdZ61VWK2ByjCJDseUO0="})
        );
    }

    #[test]
    fn nonces_are_long_and_distinct() {
        let a = new_nonce().unwrap();
        let b = new_nonce().unwrap();
        assert!(a.len() >= 16);
        assert_ne!(a, b);
    }
}
