//! The development settings shipped in `dev/` start every function and behave as the
//! README says: `dev/dev.env` serves every route (`/auth/jwt` and `/auth/revoke` with
//! `dev/policy.json`, the token routes with `dev/policy-token-routes.json` through
//! `TOKEN_ROUTES_POLICY_FILE`, as they refuse the JWT-only fields of the other);
//! `dev/token-routes.env` gives every route the token routes' policy.

use base64::Engine;
use integration_tests::*;
use lambda_http::{Body, Request};
use serde_json::{json, Value};
use shared::{Route, Service};
use std::collections::HashMap;

const ROUTES: [Route; 4] = [Route::Jwt, Route::TokenRequest, Route::AblyToken, Route::Revoke];

/// `KEY=value` lines of an env file; relative paths are resolved against the repository root.
fn env_file(name: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(root().join(name)).expect("env file");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = if k.ends_with("_FILE") {
                root().join(v).display().to_string()
            } else {
                v.to_owned()
            };
            (k.to_owned(), v)
        })
        .collect()
}

fn service(file: &str, route: Route) -> Service {
    let env = env_file(file);
    Service::from_env_with(route, &move |k: &str| env.get(k).cloned()).expect("dev settings start every function")
}

fn alice_get() -> Request {
    let token = caller_token(
        &json!({"sub":"alice","name":"Alice","org":"acme","exp": now_seconds() + 7200}),
        DEV_CALLER_SECRET,
    );
    lambda_http::http::Request::builder()
        .uri("http://127.0.0.1:9000/auth/token-request")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::Empty)
        .expect("request")
}

fn text(body: &Body) -> String {
    match body {
        Body::Text(t) => t.clone(),
        _ => String::new(),
    }
}

#[test]
fn both_dev_envs_start_every_function() {
    for route in ROUTES {
        let _ = service("dev/token-routes.env", route);
        let _ = service("dev/dev.env", route);
    }
}

#[tokio::test]
async fn dev_env_issues_jwts_by_the_jwt_policy_and_token_requests_by_the_token_routes_policy() {
    // /auth/jwt ignores TOKEN_ROUTES_POLICY_FILE: its JWT carries dev/policy.json's channel claim.
    let request = lambda_http::http::Request::builder()
        .uri("http://127.0.0.1:9000/auth/jwt")
        .header("authorization", alice_get().headers()["authorization"].clone())
        .body(Body::Empty)
        .expect("request");
    let answered = service("dev/dev.env", Route::Jwt).handle(request).await;
    assert_eq!(answered.status().as_u16(), 200, "{}", text(answered.body()));
    let (_, claims) = verify_ably_jwt(&text(answered.body()), DEV_KEY_SECRET);
    assert_eq!(claims["ably.channel.chat:*"], r#"{"name":"Alice"}"#, "{claims}");
    // The token route, from the same file, answers a TokenRequest.
    let answered = service("dev/dev.env", Route::TokenRequest).handle(alice_get()).await;
    assert_eq!(answered.status().as_u16(), 200, "{}", text(answered.body()));
}

#[test]
fn token_routes_policy_must_be_given_once_and_keeps_the_jwt_only_check() {
    let mut env = env_file("dev/dev.env");
    env.insert("TOKEN_ROUTES_POLICY".into(), "{}".into());
    let both = env.clone();
    let message = match Service::from_env_with(Route::TokenRequest, &move |k: &str| both.get(k).cloned()) {
        Ok(_) => panic!("started with TOKEN_ROUTES_POLICY and TOKEN_ROUTES_POLICY_FILE"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("TOKEN_ROUTES_POLICY") && message.contains("TOKEN_ROUTES_POLICY_FILE"),
        "{message}"
    );
    env.remove("TOKEN_ROUTES_POLICY_FILE");
    env.insert(
        "TOKEN_ROUTES_POLICY".into(),
        std::fs::read_to_string(root().join("dev/policy.json")).expect("dev policy"),
    );
    let message = match Service::from_env_with(Route::AblyToken, &move |k: &str| env.get(k).cloned()) {
        Ok(_) => panic!("a token route started with JWT-only fields in TOKEN_ROUTES_POLICY"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("`channelClaims`"), "{message}");
}

#[tokio::test]
async fn token_routes_refuse_the_jwt_only_dev_policy_at_start_up_and_serve_the_token_routes_policy() {
    for route in [Route::TokenRequest, Route::AblyToken] {
        let mut env = env_file("dev/dev.env");
        env.remove("TOKEN_ROUTES_POLICY_FILE");
        let message = match Service::from_env_with(route, &move |k: &str| env.get(k).cloned()) {
            Ok(_) => panic!("{route:?} must not start with dev/policy.json"),
            Err(e) => e.to_string(),
        };
        assert!(
            message.contains("`channelClaims`") && message.contains("/auth/jwt"),
            "{message}"
        );
    }

    let answered = service("dev/token-routes.env", Route::TokenRequest)
        .handle(alice_get())
        .await;
    assert_eq!(answered.status().as_u16(), 200, "{}", text(answered.body()));
    let tr: Value = serde_json::from_str(&text(answered.body())).expect("TokenRequest JSON");
    assert_eq!(tr["keyName"], DEV_KEY_NAME);
    assert_eq!(tr["clientId"], "alice");
    assert_eq!(tr["ttl"], 3_600_000);
    // Recompute the MAC independently (aws-lc-rs directly, not the project's signing code).
    let sign_text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n",
        tr["keyName"].as_str().unwrap_or(""),
        tr["ttl"],
        tr["capability"].as_str().unwrap_or(""),
        tr["clientId"].as_str().unwrap_or(""),
        tr["timestamp"],
        tr["nonce"].as_str().unwrap_or("")
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, DEV_KEY_SECRET.as_bytes());
    let mac = base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, sign_text.as_bytes()));
    assert_eq!(tr["mac"], mac);
}
