//! The Ably key (and the HS256 caller secret) from AWS Secrets Manager, end to end: the real
//! `aws-sdk-secretsmanager` client, built by `Service::init` from the standard variables
//! (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_REGION`, credentials), against `moto_server`
//! on loopback, started and stopped by each test. Requests go through `Service::handle`
//! with real HS256 caller tokens; minted JWTs are verified with the `jsonwebtoken` crate.
//!
//! GetSecretValue calls are counted by moto itself (its request recorder), not by our code.

use integration_tests::moto::Moto;
use integration_tests::*;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::{Route, Service};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const SM_KEY: &str = "smApp.smKey:sm-key-secret-from-secrets-manager";
const SM_KEY_NAME: &str = "smApp.smKey";
const SM_KEY_SECRET: &str = "sm-key-secret-from-secrets-manager";
const ROTATED_KEY: &str = "smApp.rotated:rotated-key-secret-after-put";
const SM_CALLER_SECRET: &str = "caller-secret-from-secrets-manager-0123456789abcdef";

// ------------------------------------------------------------------ the service

/// The dev environment with the key in Secrets Manager (`ABLY_API_KEY` removed) and the
/// AWS variables a Lambda has, pointing at moto.
fn env(moto_url: &str, overrides: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let mut all: Vec<(&str, Option<&str>)> = vec![
        ("ABLY_API_KEY", None),
        ("ABLY_API_KEY_SECRET_ID", Some("prod/ably")),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", Some(moto_url)),
        ("AWS_REGION", Some("us-east-1")),
        ("AWS_ACCESS_KEY_ID", Some("testing")),
        ("AWS_SECRET_ACCESS_KEY", Some("testing")),
    ];
    all.extend_from_slice(overrides);
    dev_env(&all)
}

/// `Service::init` exactly as a function's `main` runs it (`Service::from_env`), with the
/// variables from `env` instead of the process environment.
async fn service(env: HashMap<String, String>) -> Service {
    Service::init(Route::Jwt, &move |k: &str| env.get(k).cloned(), None)
        .await
        .expect("the configuration starts")
}

fn session(secret: &str) -> String {
    caller_token(
        &json!({"sub": "alice", "name": "Alice", "org": "acme", "exp": now_seconds() + 600}),
        secret,
    )
}

fn request(session_token: &str) -> Request {
    lambda_http::http::Request::builder()
        .method("GET")
        .uri("https://auth.example.com/auth/jwt?rnd=1")
        .header("authorization", format!("Bearer {session_token}"))
        .body(Body::Empty)
        .expect("request")
}

fn body(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8(b.clone()).expect("utf-8 body"),
        _ => String::new(),
    }
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A 200 JWT signed with `secret` and naming `key_name` as its `kid`; returns the claims.
fn assert_jwt(response: &Response<Body>, key_name: &str, secret: &str) -> Value {
    assert_eq!(response.status().as_u16(), 200, "body: {}", body(response));
    assert_eq!(header(response, "content-type"), Some("application/jwt"));
    let (header_json, claims) = verify_ably_jwt(&body(response), secret);
    assert_eq!(header_json["kid"], key_name);
    assert_eq!(claims["x-ably-clientId"], "alice");
    claims
}

/// An ErrorInfo answer with this status and code; returns its message.
fn assert_error(response: &Response<Body>, status: u16, code: u32) -> String {
    let text = body(response);
    assert_eq!(response.status().as_u16(), status, "body: {text}");
    assert_eq!(header(response, "content-type"), Some("application/json"));
    assert_eq!(header(response, "cache-control"), Some("no-store"));
    assert_eq!(header(response, "x-ably-errorcode"), Some(code.to_string().as_str()));
    let v: Value = serde_json::from_str(&text).expect("ErrorInfo JSON");
    assert_eq!(v["error"]["code"], json!(code));
    assert_eq!(v["error"]["statusCode"], json!(status));
    for secret in [SM_KEY_SECRET, DEV_KEY_SECRET, SM_CALLER_SECRET, "MARKER"] {
        assert!(!text.contains(secret), "no secret in the answer: {text}");
    }
    v["error"]["message"].as_str().expect("message").to_owned()
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn raw_secret_string_is_the_key_that_signs_the_jwt() {
    let moto = Moto::start();
    moto.create_secret("prod/ably", SM_KEY).await;
    let service = service(env(&moto.url(), &[])).await;
    let response = service.handle(request(&session(DEV_CALLER_SECRET))).await;
    assert_jwt(&response, SM_KEY_NAME, SM_KEY_SECRET);
}

#[tokio::test]
async fn json_secret_string_yields_the_key_from_its_field() {
    let moto = Moto::start();
    moto.create_secret(
        "prod/ably",
        &json!({"ABLY_API_KEY": SM_KEY, "unrelated": "x"}).to_string(),
    )
    .await;
    moto.create_secret("prod/custom", &json!({"key": ROTATED_KEY}).to_string())
        .await;
    let default_field = service(env(&moto.url(), &[])).await;
    let response = default_field.handle(request(&session(DEV_CALLER_SECRET))).await;
    assert_jwt(&response, SM_KEY_NAME, SM_KEY_SECRET);
    let custom_field = service(env(
        &moto.url(),
        &[
            ("ABLY_API_KEY_SECRET_ID", Some("prod/custom")),
            ("ABLY_API_KEY_SECRET_FIELD", Some("key")),
        ],
    ))
    .await;
    let response = custom_field.handle(request(&session(DEV_CALLER_SECRET))).await;
    assert_jwt(&response, "smApp.rotated", "rotated-key-secret-after-put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_get_secret_value_per_ttl_under_many_sequential_and_concurrent_requests() {
    let moto = Moto::start();
    moto.create_secret("prod/ably", SM_KEY).await;
    let service = Arc::new(service(env(&moto.url(), &[])).await);
    assert_eq!(moto.get_secret_value_calls(), 1, "read once during init");
    let session = session(DEV_CALLER_SECRET);
    for _ in 0..200 {
        let response = service.handle(request(&session)).await;
        assert_eq!(response.status().as_u16(), 200, "body: {}", body(&response));
    }
    let concurrent: Vec<_> = (0..200)
        .map(|_| {
            let (service, session) = (service.clone(), session.clone());
            tokio::spawn(async move { service.handle(request(&session)).await })
        })
        .collect();
    for task in concurrent {
        assert_jwt(&task.await.expect("task"), SM_KEY_NAME, SM_KEY_SECRET);
    }
    assert_eq!(
        moto.get_secret_value_calls(),
        1,
        "400 requests within the TTL: still one read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_after_the_ttl_share_one_get_secret_value() {
    let moto = Moto::start();
    moto.create_secret("prod/ably", SM_KEY).await;
    let service = Arc::new(service(env(&moto.url(), &[("SECRET_CACHE_TTL_SECONDS", Some("1"))])).await);
    assert_eq!(moto.get_secret_value_calls(), 1);
    // Past the TTL (a behaviour wait, not a timing assertion): the next requests refresh.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let session = session(DEV_CALLER_SECRET);
    let concurrent: Vec<_> = (0..100)
        .map(|_| {
            let (service, session) = (service.clone(), session.clone());
            tokio::spawn(async move { service.handle(request(&session)).await })
        })
        .collect();
    for task in concurrent {
        assert_jwt(&task.await.expect("task"), SM_KEY_NAME, SM_KEY_SECRET);
    }
    // 100 requests that all found the value expired: one refresh between them. (A request
    // arriving after a further second would legitimately read again: allow that, no more.)
    let calls = moto.get_secret_value_calls();
    assert!((2..=3).contains(&calls), "single flight: {calls} GetSecretValue calls");
}

#[tokio::test]
async fn rotation_via_put_secret_value_is_picked_up_after_the_ttl() {
    let moto = Moto::start();
    moto.create_secret("prod/ably", SM_KEY).await;
    let service = service(env(&moto.url(), &[("SECRET_CACHE_TTL_SECONDS", Some("1"))])).await;
    let session = session(DEV_CALLER_SECRET);
    assert_jwt(&service.handle(request(&session)).await, SM_KEY_NAME, SM_KEY_SECRET);
    moto.put_secret_value("prod/ably", ROTATED_KEY).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let claims = assert_jwt(
        &service.handle(request(&session)).await,
        "smApp.rotated",
        "rotated-key-secret-after-put",
    );
    assert_eq!(claims["x-ably-clientId"], "alice");
}

#[tokio::test]
async fn secrets_manager_stopped_while_warm_keeps_issuing_with_the_cached_key() {
    let mut moto = Moto::start();
    moto.create_secret("prod/ably", SM_KEY).await;
    let service = service(env(&moto.url(), &[("SECRET_CACHE_TTL_SECONDS", Some("1"))])).await;
    let session = session(DEV_CALLER_SECRET);
    assert_jwt(&service.handle(request(&session)).await, SM_KEY_NAME, SM_KEY_SECRET);
    moto.stop();
    // Past the TTL: the refresh fails (connection refused) and the cached key is served.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..20 {
        assert_jwt(&service.handle(request(&session)).await, SM_KEY_NAME, SM_KEY_SECRET);
    }
}

#[tokio::test]
async fn secrets_manager_down_at_cold_start_is_503_with_retry_after_and_no_token() {
    let mut moto = Moto::start();
    moto.create_secret("prod/ably", SM_KEY).await;
    moto.stop();
    let service = service(env(&moto.url(), &[])).await;
    for _ in 0..3 {
        let response = service.handle(request(&session(DEV_CALLER_SECRET))).await;
        let message = assert_error(&response, 503, 50300);
        assert_eq!(header(&response, "retry-after"), Some("5"));
        assert!(message.contains("AWS Secrets Manager"), "{message}");
        assert!(!body(&response).contains("eyJ"), "no token");
    }
}

#[tokio::test]
async fn missing_secret_is_500_naming_the_secret_id() {
    let moto = Moto::start();
    let service = service(env(
        &moto.url(),
        &[("ABLY_API_KEY_SECRET_ID", Some("prod/no-such-secret"))],
    ))
    .await;
    let response = service.handle(request(&session(DEV_CALLER_SECRET))).await;
    let message = assert_error(&response, 500, 50000);
    assert!(
        message.contains(r#"ABLY_API_KEY_SECRET_ID="prod/no-such-secret""#) && message.contains("does not exist"),
        "{message}"
    );
}

#[tokio::test]
async fn malformed_secrets_are_500_saying_what_is_wrong_never_the_content() {
    let moto = Moto::start();
    moto.create_secret("prod/not-a-key", "MARKER-not-an-ably-key").await;
    moto.create_secret("prod/no-field", &json!({"key": "app.key:MARKER"}).to_string())
        .await;
    moto.create_secret("prod/bad-json", r#"{"ABLY_API_KEY": "app.key:MARKER""#)
        .await;
    let cases = [
        ("prod/not-a-key", "no ':'"),
        ("prod/no-field", "ABLY_API_KEY_SECRET_FIELD"),
        ("prod/bad-json", "not a valid JSON object"),
    ];
    for (id, needle) in cases {
        let service = service(env(&moto.url(), &[("ABLY_API_KEY_SECRET_ID", Some(id))])).await;
        let response = service.handle(request(&session(DEV_CALLER_SECRET))).await;
        let message = assert_error(&response, 500, 50000);
        assert!(message.contains(&format!("ABLY_API_KEY_SECRET_ID={id:?}")), "{message}");
        assert!(message.contains(needle), "{id}: {message}");
    }
}

#[tokio::test]
async fn caller_hs256_secret_from_secrets_manager_verifies_sessions() {
    let moto = Moto::start();
    let both = json!({"ABLY_API_KEY": SM_KEY, "CALLER_HS256_SECRET": SM_CALLER_SECRET});
    moto.create_secret("prod/auth", &both.to_string()).await;
    let service = service(env(
        &moto.url(),
        &[
            ("ABLY_API_KEY_SECRET_ID", Some("prod/auth")),
            ("CALLER_HS256_SECRET", None),
            ("CALLER_HS256_SECRET_ID", Some("prod/auth")),
        ],
    ))
    .await;
    let response = service.handle(request(&session(SM_CALLER_SECRET))).await;
    assert_jwt(&response, SM_KEY_NAME, SM_KEY_SECRET);
    // A session signed with another secret (the dev one) is not accepted.
    let response = service.handle(request(&session(DEV_CALLER_SECRET))).await;
    assert_error(&response, 401, 40101);
}

#[tokio::test]
async fn key_in_both_places_or_nowhere_refuses_to_start() {
    let cases = [
        (
            vec![("ABLY_API_KEY", Some(DEV_API_KEY))],
            "both ABLY_API_KEY and ABLY_API_KEY_SECRET_ID",
        ),
        (
            vec![("ABLY_API_KEY_SECRET_ID", None)],
            "ABLY_API_KEY_SECRET_ID is not set",
        ),
        (
            vec![("CALLER_HS256_SECRET_ID", Some("prod/caller"))],
            "both CALLER_HS256_SECRET and CALLER_HS256_SECRET_ID",
        ),
        (
            vec![("SECRET_CACHE_TTL_SECONDS", Some("0"))],
            "SECRET_CACHE_TTL_SECONDS",
        ),
        // The client is configured from the environment alone (no profile files or IMDS):
        // without a region or credentials it would fail every read, so it does not start.
        (vec![("AWS_REGION", None)], "AWS_REGION"),
        (vec![("AWS_SECRET_ACCESS_KEY", None)], "AWS_ACCESS_KEY_ID"),
    ];
    for (overrides, needle) in cases {
        let env = env("http://127.0.0.1:9", &overrides);
        match Service::init(Route::Jwt, &move |k: &str| env.get(k).cloned(), None).await {
            Ok(_) => panic!("{overrides:?} must not start"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains(needle), "{overrides:?}: {message}");
                assert!(!message.contains(DEV_KEY_SECRET), "{message}");
            }
        }
    }
}
