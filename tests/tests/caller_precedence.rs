//! Which credential decides when a request carries several (issue #11, "a rejected
//! credential is final"): trusted API Gateway authorizer context first, then the
//! `Authorization` header, then the cookie; the first present decides, whatever its verdict,
//! and the identity comes from that one credential alone. Configured from the environment as
//! a function would be, answered by `Service::handle`.

mod caller_support;

use caller_support::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::request::from_str;
use lambda_http::Request;
use serde_json::{json, Value};

const HTTP_JWT: &str = include_str!("../../events/authorizer-http-jwt.json");
/// The identity the HTTP API JWT authorizer put in `HTTP_JWT`.
const GATEWAY_USER: &str = "3f6b2a4e-jwt-user";

fn hs256_with(header: Header, claims: &Value) -> String {
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(CALLER_SECRET.as_bytes())).unwrap()
}

/// A session for `sub` holding `roles`, valid for an hour.
fn session(sub: &str, roles: &[&str]) -> Value {
    let mut c = claims(ISSUER, sub);
    c["roles"] = json!(roles);
    c
}

fn expired(sub: &str) -> Value {
    let mut c = session(sub, &[]);
    c["exp"] = json!(now_seconds() - 300);
    c
}

fn bearer_and_cookie(bearer: &str, cookie: &str) -> Request {
    get(&[
        ("authorization", &format!("Bearer {bearer}")),
        ("cookie", &format!("session={cookie}")),
    ])
}

/// The HTTP API JWT authorizer event, with `authorization` as its header (none when `None`)
/// and a session cookie.
fn gateway_event(authorization: Option<&str>, cookie: &str, with_context: bool) -> Request {
    let mut event: Value = serde_json::from_str(HTTP_JWT).unwrap();
    let headers = event["headers"].as_object_mut().unwrap();
    match authorization {
        Some(value) => headers.insert("authorization".into(), json!(value)),
        None => headers.remove("authorization"),
    };
    event["cookies"] = json!([format!("session={cookie}")]);
    if !with_context {
        event["requestContext"].as_object_mut().unwrap().remove("authorizer");
    }
    from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn expired_bearer_for_alice_with_a_valid_cookie_for_bob_gets_401_not_bob() {
    let service = service_from(&[]);
    let request = bearer_and_cookie(&hs256(&expired("alice")), &hs256(&session("bob", &[])));
    let response = service.handle(request).await;
    assert_error(&response, 401, 40101, "expired");
    let body: Value = serde_json::from_str(&body_text(&response)).unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "message": "caller credential rejected: the session token has expired; sign in again and retry with a fresh session token",
            "code": 40101,
            "statusCode": 401,
            "href": "https://help.ably.io/error/40101",
        }})
    );
}

#[tokio::test]
async fn forged_bearer_with_a_valid_cookie_gets_401() {
    let service = service_from(&[]);
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &session("alice", &[]),
        &EncodingKey::from_secret(b"not-the-caller-secret-0123456789abcdef"),
    )
    .unwrap();
    let response = service
        .handle(bearer_and_cookie(&forged, &hs256(&session("bob", &[]))))
        .await;
    assert_error(&response, 401, 40101, "signature");
}

#[tokio::test]
async fn bearer_of_a_kind_the_service_does_not_accept_with_a_valid_cookie_gets_401() {
    let service = service_from(&[]);
    let cookie = hs256(&session("bob", &[]));
    // An ES256 token and no OIDC provider configured: no verifier takes it.
    let es256 = TestKey::ec256("not-configured").sign(&session("alice", &[]));
    let response = service.handle(bearer_and_cookie(&es256, &cookie)).await;
    assert_error(&response, 401, 40101, "does not accept");
    // Not a bearer token at all.
    let request = get(&[
        ("authorization", "Basic YWxpY2U6c2VjcmV0"),
        ("cookie", &format!("session={cookie}")),
    ]);
    assert_error(&service.handle(request).await, 401, 40101, "Bearer scheme");
}

#[tokio::test]
async fn valid_bearer_with_a_cookie_for_another_user_gets_the_bearer_identity_alone() {
    let service = service_from(&[]);
    let request = bearer_and_cookie(&hs256(&session("alice", &[])), &hs256(&session("bob", &["admin"])));
    let issued = issued_claims(&service.handle(request).await);
    assert_eq!(issued["x-ably-clientId"], "alice");
    assert_eq!(
        capability(&issued),
        json!({"chat:*": ["subscribe"], "chat:alice": ["presence", "publish", "subscribe"]}),
        "none of bob's roles"
    );
}

#[tokio::test]
async fn hs256_bearer_or_cookie_with_a_crit_header_gets_401() {
    let service = service_from(&[]);
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let token = hs256_with(header, &session("alice", &[]));
    let response = service.handle(bearer(&token)).await;
    assert_error(&response, 401, 40101, "critical header extensions (crit)");
    let response = service.handle(get(&[("cookie", &format!("session={token}"))])).await;
    assert_error(&response, 401, 40101, "critical header extensions (crit)");
}

#[tokio::test]
async fn trusted_authorizer_identity_wins_over_a_valid_bearer_and_cookie_for_other_users() {
    let service = service_from(&[("CALLER_TRUST_AUTHORIZER", "true")]);
    let alice = format!("Bearer {}", hs256(&session("alice", &["admin"])));
    let bob = hs256(&session("bob", &["moderator"]));
    let issued = issued_claims(&service.handle(gateway_event(Some(&alice), &bob, true)).await);
    assert_eq!(issued["x-ably-clientId"], GATEWAY_USER);
    // POLICY reads roles from `roles`, which the gateway's claims lack: no role grant, and
    // nothing of alice's or bob's.
    assert_eq!(
        capability(&issued),
        json!({"chat:*": ["subscribe"], format!("chat:{GATEWAY_USER}"): ["presence", "publish", "subscribe"]}),
    );
}

#[tokio::test]
async fn trusted_authorizer_identity_wins_over_a_bearer_the_function_cannot_verify_without_reading_it() {
    // The function verifies OIDC tokens of its own issuer; the gateway verified a Cognito
    // token signed with a key that issuer does not publish. The bearer is not even read:
    // no key set is fetched.
    let own = TestKey::rsa("own-key");
    let server = JwksServer::start(jwks(&[&own])).await;
    let service = service_from(&[
        ("CALLER_HS256_SECRET", ""),
        ("CALLER_COOKIE", ""),
        ("CALLER_ISSUER", &server.base_url()),
        ("CALLER_JWKS_URL", &server.jwks_url()),
        ("CALLER_TRUST_AUTHORIZER", "true"),
    ]);
    let cognito = TestKey::rsa("cognito-key").sign(&claims("https://cognito-idp.example", GATEWAY_USER));
    let request = gateway_event(Some(&format!("Bearer {cognito}")), "unused", true);
    let issued = issued_claims(&service.handle(request).await);
    assert_eq!(issued["x-ably-clientId"], GATEWAY_USER);
    assert_eq!(server.jwks_fetches(), 0);
}

#[tokio::test]
async fn trusted_authorizer_without_context_leaves_the_verdict_to_the_bearer_then_the_cookie() {
    let service = service_from(&[("CALLER_TRUST_AUTHORIZER", "true")]);
    let bob = hs256(&session("bob", &[]));
    let alice_expired = format!("Bearer {}", hs256(&expired("alice")));
    let response = service.handle(gateway_event(Some(&alice_expired), &bob, false)).await;
    assert_error(&response, 401, 40101, "expired");
    let issued = issued_claims(&service.handle(gateway_event(None, &bob, false)).await);
    assert_eq!(issued["x-ably-clientId"], "bob");
}
