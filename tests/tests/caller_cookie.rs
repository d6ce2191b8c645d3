//! The caller's JWT in a cookie (`CALLER_COOKIE=session`), verified like a bearer token by
//! the HS256 and JWKS verifiers; configured from the environment as a function would be.

mod caller_support;

use caller_support::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::request::from_str;
use serde_json::{json, Value};

fn session(sub: &str) -> Value {
    claims(ISSUER, sub)
}

fn with_cookie(cookie: &str) -> lambda_http::Request {
    get(&[("cookie", cookie)])
}

#[tokio::test]
async fn session_cookie_among_others_gets_an_ably_jwt() {
    let service = service_from(&[]);
    let cookie = format!("theme=dark; session={}; _ga=GA1.2.3", hs256(&session("alice")));
    let issued = issued_claims(&service.handle(with_cookie(&cookie)).await);
    assert_eq!(issued["x-ably-clientId"], "alice");
}

#[tokio::test]
async fn quoted_cookie_value_and_several_cookie_headers() {
    let service = service_from(&[]);
    let quoted = format!("session=\"{}\"", hs256(&session("bob")));
    let issued = issued_claims(&service.handle(with_cookie(&quoted)).await);
    assert_eq!(issued["x-ably-clientId"], "bob");

    let token = hs256(&session("carol"));
    let request = get(&[("cookie", "a=1; b=2"), ("cookie", &format!("session={token}"))]);
    let issued = issued_claims(&service.handle(request).await);
    assert_eq!(issued["x-ably-clientId"], "carol");
}

#[tokio::test]
async fn http_api_cookies_array_reaches_the_verifier() {
    let service = service_from(&[]);
    let event = json!({
        "version": "2.0", "routeKey": "GET /auth/jwt", "rawPath": "/auth/jwt", "rawQueryString": "",
        "cookies": ["theme=dark", format!("session={}", hs256(&session("dora")))],
        "headers": {"host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "requestContext": {"accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "http": {"method": "GET", "path": "/auth/jwt", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "t"},
            "requestId": "cookie", "routeKey": "GET /auth/jwt", "stage": "$default", "time": "14/Nov/2023:22:13:20 +0000", "timeEpoch": 1_700_000_000_000_u64},
        "isBase64Encoded": false
    });
    let issued = issued_claims(&service.handle(from_str(&event.to_string()).unwrap()).await);
    assert_eq!(issued["x-ably-clientId"], "dora");
}

#[tokio::test]
async fn expired_session_cookie_gets_401() {
    let service = service_from(&[]);
    let mut c = session("erin");
    c["exp"] = json!(now_seconds() - 300);
    let response = service.handle(with_cookie(&format!("session={}", hs256(&c)))).await;
    assert_error(&response, 401, 40101, "expired");
}

#[tokio::test]
async fn forged_session_cookie_gets_401() {
    let service = service_from(&[]);
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &session("mallory"),
        &EncodingKey::from_secret(b"not-the-caller-secret-0123456789abcdef"),
    )
    .unwrap();
    let response = service.handle(with_cookie(&format!("session={forged}"))).await;
    assert_error(&response, 401, 40101, "signature");
    let response = service.handle(with_cookie("session=garbage")).await;
    assert_error(&response, 401, 40101, "malformed");
}

#[tokio::test]
async fn asymmetric_cookie_token_without_jwks_gets_401() {
    let service = service_from(&[]);
    let key = TestKey::ec256("ec-cookie");
    let response = service
        .handle(with_cookie(&format!("session={}", key.sign(&session("x")))))
        .await;
    assert_error(&response, 401, 40101, "does not accept");
}

#[tokio::test]
async fn other_cookies_only_is_no_credential() {
    let service = service_from(&[]);
    for cookie in ["theme=dark", "session=", "my_session=abc", "Session=abc"] {
        let response = service.handle(with_cookie(cookie)).await;
        assert_error(&response, 401, 40100, "no caller credential");
    }
}

#[tokio::test]
async fn bearer_header_wins_over_the_cookie() {
    let service = service_from(&[]);
    let request = get(&[
        ("authorization", &format!("Bearer {}", hs256(&session("alice")))),
        ("cookie", &format!("session={}", hs256(&session("bob")))),
    ]);
    let issued = issued_claims(&service.handle(request).await);
    assert_eq!(issued["x-ably-clientId"], "alice");
}

#[tokio::test]
async fn oidc_token_in_a_cookie_is_verified_by_the_jwks() {
    let key = TestKey::rsa("cookie-rsa");
    let server = JwksServer::start(jwks(&[&key])).await;
    let issuer = server.base_url();
    let service = service_from(&[
        ("CALLER_HS256_SECRET", ""),
        ("CALLER_ISSUER", &issuer),
        ("CALLER_JWKS_URL", &server.jwks_url()),
        ("CALLER_COOKIE", "__Host-id_token"),
    ]);
    let token = key.sign(&claims(&issuer, "frida"));
    let issued = issued_claims(&service.handle(with_cookie(&format!("__Host-id_token={token}"))).await);
    assert_eq!(issued["x-ably-clientId"], "frida");
    assert_eq!(server.jwks_fetches(), 1);
}
