//! The README's provider examples (Cognito, Auth0, Firebase), each run as written: a token
//! shaped as that provider issues it, verified through the JWKS path, against the README's
//! policy for it.

mod caller_support;

use caller_support::*;
use serde_json::{json, Value};
use shared::caller::fetch::ReqwestGet;
use shared::caller::{JwksSettings, JwksSource, JwksVerifier, VerifierChain};
use std::sync::{Arc, OnceLock};

fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::rsa("provider-key"))
}

/// README, "Amazon Cognito".
const COGNITO_POLICY: &str = r#"{
  "clientId": "{sub}",
  "capability": {"chat:*": ["subscribe", "history"], "chat:{sub}": ["publish", "subscribe", "presence"]},
  "channelClaims": {"chat:*": "{\"name\":\"{cognito:username}\"}"},
  "roles": {
    "claim": "cognito:groups",
    "grants": {"moderators": {"capability": {"chat:*": ["publish", "subscribe", "presence", "history", "message-delete-any"]}}}
  }
}"#;

/// README, "Auth0".
const AUTH0_POLICY: &str = r#"{
  "clientId": "{sub}",
  "capability": {"chat:*": ["subscribe"], "org:{https://example.com/app_metadata.org}:*": ["publish", "subscribe", "presence"]},
  "roles": {
    "claim": "https://example.com/roles",
    "grants": {"moderator": {"capability": {"chat:*": ["publish", "subscribe", "message-delete-any"]}}}
  }
}"#;

/// README, "Firebase Authentication".
const FIREBASE_POLICY: &str = r#"{
  "clientId": "{sub}",
  "capability": {"chat:*": ["subscribe"], "chat:{sub}": ["publish", "subscribe", "presence"]},
  "channelClaims": {"chat:*": "{\"via\":\"{firebase.sign_in_provider}\"}"},
  "roles": {
    "claim": "roles",
    "grants": {"moderator": {"capability": {"chat:*": ["publish", "subscribe", "message-delete-any"]}}}
  }
}"#;

/// Issue a token shaped like `claims` for `issuer`, verified with `audiences`/`audience_claim`
/// through a JWKS on loopback, under `policy`; answers the Ably JWT's claims.
async fn issue(issuer: &str, audiences: &[&str], audience_claim: &str, policy: &str, claims: Value) -> Value {
    let server = JwksServer::start(jwks(&[key()])).await;
    let verifier = JwksVerifier::new(
        JwksSettings {
            source: JwksSource::Url(server.jwks_url()),
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            audience_claim: audience_claim.into(),
        },
        Arc::new(ReqwestGet::new(shared::http_client::build().unwrap())),
        Arc::new(ManualClock::new()),
    )
    .unwrap();
    let service = service(VerifierChain::new(vec![Box::new(verifier)]), policy);
    issued_claims(&service.handle(bearer(&key().sign(&claims))).await)
}

const COGNITO_ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
const COGNITO_CLIENT: &str = "4abcdefghijklmnopqrstuvwx";

#[tokio::test]
async fn cognito_id_token_with_groups() {
    let now = now_seconds();
    let id_token = json!({
        "sub": "3f6b2a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "aud": COGNITO_CLIENT, "iss": COGNITO_ISSUER,
        "token_use": "id", "cognito:username": "carol", "cognito:groups": ["moderators"],
        "email": "carol@example.com", "auth_time": now, "iat": now, "exp": now + 3600
    });
    let issued = issue(COGNITO_ISSUER, &[COGNITO_CLIENT], "aud", COGNITO_POLICY, id_token).await;
    assert_eq!(issued["x-ably-clientId"], "3f6b2a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
    assert_eq!(
        capability(&issued)["chat:*"],
        json!(["history", "message-delete-any", "presence", "publish", "subscribe"])
    );
    assert_eq!(issued["ably.channel.chat:*"], r#"{"name":"carol"}"#);
}

#[tokio::test]
async fn cognito_access_token_checked_by_client_id() {
    let now = now_seconds();
    let access_token = json!({
        "sub": "3f6b2a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "client_id": COGNITO_CLIENT, "iss": COGNITO_ISSUER,
        "token_use": "access", "username": "carol", "scope": "openid email", "iat": now, "exp": now + 3600
    });
    let issued = issue(
        COGNITO_ISSUER,
        &[COGNITO_CLIENT],
        "client_id",
        COGNITO_POLICY,
        access_token,
    )
    .await;
    assert_eq!(issued["x-ably-clientId"], "3f6b2a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
    assert_eq!(capability(&issued)["chat:*"], json!(["history", "subscribe"]));
    assert!(
        issued.get("ably.channel.chat:*").is_none(),
        "no cognito:username in access tokens"
    );
}

#[tokio::test]
async fn auth0_access_token_with_namespaced_roles_and_app_metadata() {
    let issuer = "https://example-tenant.eu.auth0.com/";
    let now = now_seconds();
    let access_token = json!({
        "iss": issuer, "sub": "auth0|65f0c1d2e3f4a5b6c7d8e9f0",
        "aud": ["https://api.example.com", "https://example-tenant.eu.auth0.com/userinfo"],
        "azp": "kL9mN0pQ1rS2tU3v", "scope": "openid profile", "iat": now, "exp": now + 3600,
        "https://example.com/roles": ["moderator"],
        "https://example.com/app_metadata": {"org": "acme"}
    });
    let issued = issue(issuer, &["https://api.example.com"], "aud", AUTH0_POLICY, access_token).await;
    assert_eq!(issued["x-ably-clientId"], "auth0|65f0c1d2e3f4a5b6c7d8e9f0");
    let cap = capability(&issued);
    assert_eq!(cap["chat:*"], json!(["message-delete-any", "publish", "subscribe"]));
    assert_eq!(cap["org:acme:*"], json!(["presence", "publish", "subscribe"]));
}

#[tokio::test]
async fn firebase_id_token_with_custom_claims() {
    let issuer = "https://securetoken.google.com/my-project";
    let now = now_seconds();
    let id_token = json!({
        "iss": issuer, "aud": "my-project", "auth_time": now, "user_id": "kXz9LmN0pQ1rS2tU3vW4xY5z",
        "sub": "kXz9LmN0pQ1rS2tU3vW4xY5z", "iat": now, "exp": now + 3600, "email": "dana@example.com",
        "roles": ["moderator"],
        "firebase": {"identities": {"google.com": ["1234567890"]}, "sign_in_provider": "google.com"}
    });
    let issued = issue(issuer, &["my-project"], "aud", FIREBASE_POLICY, id_token).await;
    assert_eq!(issued["x-ably-clientId"], "kXz9LmN0pQ1rS2tU3vW4xY5z");
    let cap = capability(&issued);
    assert_eq!(cap["chat:*"], json!(["message-delete-any", "publish", "subscribe"]));
    assert_eq!(
        cap["chat:kXz9LmN0pQ1rS2tU3vW4xY5z"],
        json!(["presence", "publish", "subscribe"])
    );
    assert_eq!(issued["ably.channel.chat:*"], r#"{"via":"google.com"}"#);
}
