//! Support for the integration tests in `tests/tests/`: development settings, event
//! loading, and an independent check of minted JWTs (the `jsonwebtoken` crate, not the
//! project's own minting code).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const DEV_API_KEY: &str = "devApp.devKey:dev-key-secret-not-for-production";
pub const DEV_KEY_NAME: &str = "devApp.devKey";
pub const DEV_KEY_SECRET: &str = "dev-key-secret-not-for-production";
pub const DEV_CALLER_SECRET: &str = "dev-caller-secret-0123456789abcdef0123456789";
pub const DEV_ORIGIN: &str = "http://localhost:8080";
/// The policy for the TokenRequest and Ably Token routes (`make dev DEV_ENV=dev/token-routes.env`):
/// the dev policy without channel claims, rate limits and revocation key, which only JWTs can carry.
pub const TOKEN_ROUTES_POLICY: &str = include_str!("../dev/policy-token-routes.json");

/// An in-memory log sink for `shared::log::subscriber`: clones share one buffer, so the
/// test keeps one and reads what the functions logged.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The development environment of `make dev`, plus overrides (`None` removes a variable).
pub fn dev_env(overrides: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("ABLY_API_KEY", DEV_API_KEY.to_owned()),
        ("CALLER_HS256_SECRET", DEV_CALLER_SECRET.to_owned()),
        (
            "TOKEN_POLICY_FILE",
            root().join("dev/policy.json").display().to_string(),
        ),
        ("CORS_ALLOWED_ORIGINS", format!("{DEV_ORIGIN},http://127.0.0.1:8080")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in overrides {
        match v {
            Some(v) => env.insert((*k).to_owned(), (*v).to_owned()),
            None => env.remove(*k),
        };
    }
    env
}

/// Decoded and signature-checked Ably JWT: (header, claims).
pub fn verify_ably_jwt(token: &str, secret: &str) -> (serde_json::Value, serde_json::Value) {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let header = decode_header(token).expect("JWT header");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iat"]);
    let data = decode::<serde_json::Value>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .expect("the Ably JWT must verify with the key secret");
    (serde_json::to_value(header).expect("header"), data.claims)
}

/// HS256 caller (session) token signed with `secret`.
pub fn caller_token(claims: &serde_json::Value, secret: &str) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("encode caller token")
}

/// Seconds since the epoch.
pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
