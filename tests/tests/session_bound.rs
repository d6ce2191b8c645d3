//! Tokens bounded by the caller's session (`boundToSession`, on by default), through
//! `Service::handle` for each source of identity: an HS256 bearer token, a session cookie,
//! trusted HTTP API authorizer claims (whose `exp` API Gateway passes as text), and the
//! TokenRequest route. The minted JWTs are verified with the `jsonwebtoken` crate.

mod caller_support;

use caller_support::*;
use lambda_http::request::from_str;
use lambda_http::{Body, Request};
use serde_json::{json, Value};
use shared::{Route, Service};

const HTTP_JWT: &str = include_str!("../../events/authorizer-http-jwt.json");

/// Alice's session, ending `left` seconds from now.
fn session(left: i64) -> (Value, u64) {
    let exp = (now_seconds() as i64 + left) as u64;
    let mut c = claims(ISSUER, "alice");
    c["exp"] = json!(exp);
    (c, exp)
}

/// The JWT's `exp`, never later than the session's and at most a second earlier (whole
/// seconds), and its `iat`.
fn assert_bounded(issued: &Value, session_exp: u64) {
    let exp = issued["exp"].as_u64().unwrap();
    assert!(
        exp <= session_exp && exp + 1 >= session_exp,
        "token exp {exp}, session exp {session_exp}"
    );
    assert_eq!(issued["x-ably-clientId"], "alice");
}

#[tokio::test]
async fn an_hs256_session_ending_in_10_minutes_bounds_the_one_hour_token() {
    let (c, exp) = session(600);
    let issued = issued_claims(&service_from(&[]).handle(bearer(&hs256(&c))).await);
    assert_bounded(&issued, exp);
    assert!(issued["exp"].as_u64().unwrap() - issued["iat"].as_u64().unwrap() <= 600);
}

#[tokio::test]
async fn a_session_cookie_ending_in_15_minutes_bounds_the_token() {
    let (c, exp) = session(900);
    let request = get(&[("cookie", &format!("theme=dark; session={}", hs256(&c)))]);
    assert_bounded(&issued_claims(&service_from(&[]).handle(request).await), exp);
}

#[tokio::test]
async fn a_session_longer_than_the_ttl_leaves_the_policy_ttl() {
    let (c, _) = session(7200);
    let issued = issued_claims(&service_from(&[]).handle(bearer(&hs256(&c))).await);
    assert_eq!(issued["exp"].as_u64().unwrap() - issued["iat"].as_u64().unwrap(), 3600);
}

#[tokio::test]
async fn a_session_with_30_s_left_gets_401_saying_to_refresh_it() {
    let (c, _) = session(30);
    let response = service_from(&[]).handle(bearer(&hs256(&c))).await;
    assert_error(&response, 401, 40101, "refresh the session");
}

#[tokio::test]
async fn authorizer_claims_with_a_textual_exp_bound_the_token() {
    let exp = now_seconds() + 300;
    let mut event: Value = serde_json::from_str(HTTP_JWT).unwrap();
    event["requestContext"]["authorizer"]["jwt"]["claims"]["exp"] = json!(exp.to_string());
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!("alice");
    let request: Request = from_str(&event.to_string()).unwrap();
    let service = service_from(&[("CALLER_TRUST_AUTHORIZER", "true")]);
    assert_bounded(&issued_claims(&service.handle(request).await), exp);
}

#[tokio::test]
async fn boundless_policies_keep_the_full_ttl() {
    let unbound = POLICY.replacen('{', r#"{"boundToSession": false,"#, 1);
    let (c, _) = session(600);
    let service = service_from(&[("TOKEN_POLICY", &unbound)]);
    let issued = issued_claims(&service.handle(bearer(&hs256(&c))).await);
    assert_eq!(issued["exp"].as_u64().unwrap() - issued["iat"].as_u64().unwrap(), 3600);
}

#[tokio::test]
async fn a_token_request_is_bounded_by_the_session_too() {
    let env = std::collections::HashMap::from([
        ("ABLY_API_KEY", integration_tests::DEV_API_KEY.to_owned()),
        ("TOKEN_POLICY", POLICY.to_owned()),
        ("CALLER_HS256_SECRET", CALLER_SECRET.to_owned()),
        ("CALLER_ISSUER", ISSUER.to_owned()),
        ("CALLER_AUDIENCE", AUDIENCE.to_owned()),
    ]);
    let lookup = move |name: &str| env.get(name).cloned();
    let service = Service::from_env_with(Route::TokenRequest, &lookup).unwrap();
    let (c, exp) = session(600);
    let request = lambda_http::http::Request::builder()
        .method("GET")
        .uri("/auth/token-request")
        .header("authorization", format!("Bearer {}", hs256(&c)))
        .body(Body::Empty)
        .unwrap();
    let response = service.handle(request).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    let tr: Value = serde_json::from_str(&body_text(&response)).unwrap();
    let ends_ms = tr["timestamp"].as_u64().unwrap() + tr["ttl"].as_u64().unwrap();
    assert!(
        ends_ms <= exp * 1000 && ends_ms + 1000 >= exp * 1000,
        "TokenRequest ends at {ends_ms} ms, the session at {exp} s: {tr}"
    );
    assert_eq!(tr["clientId"], "alice");
}
