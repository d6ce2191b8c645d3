//! The Ably API key: `appId.keyId:keySecret`.

use crate::secret::SecretString;
use aws_lc_rs::hmac;
use std::fmt;

/// A parsed Ably API key. `Debug` shows the key name only.
///
/// Holds the HMAC-SHA256 key derived from the secret, so that minting a JWT or signing a
/// TokenRequest does not re-derive it on every request.
#[derive(Clone)]
pub struct ApiKey {
    name: String,
    secret: SecretString,
    hmac: hmac::Key,
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.secret == other.secret
    }
}

impl Eq for ApiKey {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "the Ably API key has no ':' — expected `appId.keyId:keySecret` as shown in the Ably dashboard (API Keys tab)"
    )]
    MissingColon,
    #[error("the Ably API key name has no '.' — expected `appId.keyId:keySecret`; copy the whole key from the Ably dashboard")]
    MissingDot,
    #[error("the Ably API key has an empty {0} — expected `appId.keyId:keySecret`; copy the whole key from the Ably dashboard")]
    EmptyPart(&'static str),
    #[error("the Ably API key contains whitespace or control characters — remove surrounding spaces or newlines from the stored value")]
    BadCharacters,
}

impl ApiKey {
    /// Parse `appId.keyId:keySecret`. The error never contains the input.
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeyError::BadCharacters);
        }
        let (name, secret) = raw.split_once(':').ok_or(KeyError::MissingColon)?;
        let (app_id, key_id) = name.split_once('.').ok_or(KeyError::MissingDot)?;
        if app_id.is_empty() {
            return Err(KeyError::EmptyPart("app id"));
        }
        if key_id.is_empty() {
            return Err(KeyError::EmptyPart("key id"));
        }
        if secret.is_empty() {
            return Err(KeyError::EmptyPart("secret"));
        }
        Ok(Self {
            name: name.to_owned(),
            hmac: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            secret: SecretString::new(secret),
        })
    }

    /// HMAC-SHA256 of `data` under the key secret.
    pub fn sign(&self, data: &[u8]) -> hmac::Tag {
        hmac::sign(&self.hmac, data)
    }

    /// `appId.keyId`: public, used as JWT `kid` and TokenRequest `keyName`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn secret(&self) -> &SecretString {
        &self.secret
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("secret", &self.secret)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_secret() {
        let key = ApiKey::parse("appId.keyId:keySecret").unwrap();
        assert_eq!(key.name(), "appId.keyId");
        assert_eq!(key.secret().expose(), "keySecret");
    }

    #[test]
    fn secret_may_contain_colons() {
        let key = ApiKey::parse("a.b:c:d").unwrap();
        assert_eq!(key.name(), "a.b");
        assert_eq!(key.secret().expose(), "c:d");
    }

    #[test]
    fn malformed_keys_are_rejected_with_specific_errors() {
        assert_eq!(ApiKey::parse("appIdkeyId:s"), Err(KeyError::MissingDot));
        assert_eq!(ApiKey::parse("appId.keyId"), Err(KeyError::MissingColon));
        assert_eq!(ApiKey::parse(".keyId:s"), Err(KeyError::EmptyPart("app id")));
        assert_eq!(ApiKey::parse("appId.:s"), Err(KeyError::EmptyPart("key id")));
        assert_eq!(ApiKey::parse("appId.keyId:"), Err(KeyError::EmptyPart("secret")));
        assert_eq!(ApiKey::parse(""), Err(KeyError::MissingColon));
        assert_eq!(ApiKey::parse("a.b:secret\n"), Err(KeyError::BadCharacters));
    }

    #[test]
    fn errors_and_debug_never_contain_the_secret() {
        let key = ApiKey::parse("appId.keyId:SECRETMARKER").unwrap();
        assert!(!format!("{key:?}").contains("SECRETMARKER"));
        for bad in ["SECRETMARKER", "a.:SECRETMARKER", "SECRETMARKER:x", " a.b:SECRETMARKER"] {
            let err = ApiKey::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("SECRETMARKER"), "{err}");
        }
    }
}
