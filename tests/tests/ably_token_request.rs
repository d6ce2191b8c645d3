//! `issue-token-request`: a signed TokenRequest that a fake Ably (verifying the MAC with its
//! own HMAC) accepts; the start-up refusal of JWT-only policy fields (both token routes);
//! `ABLY_QUERY_TIME`.

mod fake_ably;

use fake_ably::support::*;
use fake_ably::{FakeAbly, Fault};
use integration_tests::*;
use serde_json::{json, Value};
use shared::ably_rest::{AblyRest, HttpAbly};
use shared::token_request::TokenRequest;
use shared::{Route, Service};
use std::time::Duration;

/// Exchange a TokenRequest at the fake as an SDK would (`POST /keys/{keyName}/requestToken`).
async fn exchange(fake: &FakeAbly, token_request: &Value) -> Result<Value, shared::ably_rest::AblyError> {
    let tr: TokenRequest = serde_json::from_value(token_request.clone()).expect("TokenRequest shape");
    let client = shared::http_client::build().expect("client");
    HttpAbly::new(client, &fake.url())
        .request_token(&|| Ok(tr.clone()))
        .await
        .map(|d| serde_json::to_value(d).expect("json"))
}

fn assert_token_request_shape(tr: &Value) {
    let fields: Vec<&str> = tr.as_object().expect("object").keys().map(String::as_str).collect();
    for f in &fields {
        assert!(
            ["keyName", "ttl", "capability", "clientId", "timestamp", "nonce", "mac"].contains(f),
            "unexpected field {f}"
        );
    }
    assert!(tr.get("token").is_none() && tr.get("issued").is_none());
    assert_eq!(tr["keyName"], DEV_KEY_NAME);
    assert!(tr["ttl"].is_u64(), "ttl is a JSON number");
    assert!(tr["timestamp"].is_u64(), "timestamp is a JSON number");
    assert!(tr["capability"].is_string(), "capability is a string");
    let nonce = tr["nonce"].as_str().expect("nonce");
    assert!(nonce.len() >= 16, "nonce has at least 16 characters");
    let mac = tr["mac"].as_str().expect("mac");
    assert_eq!(mac.len(), 44, "standard base64 of 32 bytes, with padding");
    assert!(mac.ends_with('='));
}

#[tokio::test]
async fn rsa8c_token_request_served_as_json_and_exchanged_at_ably() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let service = service(Route::TokenRequest, &fake, &[]);
    let response = service
        .handle(event(include_str!("../../events/token-request-get-valid-caller.json")))
        .await;
    let tr = assert_json_ok(&response);
    assert_token_request_shape(&tr);
    assert_eq!(tr["clientId"], "alice");
    assert_eq!(tr["ttl"], 3_600_000);
    assert_eq!(tr["capability"], ALICE_CAPABILITY);
    let timestamp = tr["timestamp"].as_u64().unwrap();
    assert!(timestamp.abs_diff(system_ms()) < 5_000, "timestamp is now, in ms");
    assert_eq!(header(&response, "access-control-allow-origin"), Some(DEV_ORIGIN));
    assert!(
        fake.requests().is_empty(),
        "signing a TokenRequest needs no call to Ably"
    );

    let details = exchange(&fake, &tr)
        .await
        .expect("the fake verifies the MAC and issues a token");
    assert_eq!(details["clientId"], "alice");
    assert_eq!(details["capability"], ALICE_CAPABILITY);
    assert_eq!(
        details["expires"].as_u64().unwrap() - details["issued"].as_u64().unwrap(),
        3_600_000
    );
}

#[tokio::test]
async fn post_form_hints_narrow_ttl_and_keep_the_client_id() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::TokenRequest, &fake, &[])
        .handle(event(include_str!("../../events/token-request-post-form.json")))
        .await;
    let tr = assert_json_ok(&response);
    assert_eq!(
        (tr["ttl"].as_u64(), tr["clientId"].as_str()),
        (Some(600_000), Some("alice"))
    );
    exchange(&fake, &tr).await.expect("accepted");
}

#[tokio::test]
async fn capability_hint_is_intersected_and_signed_canonically() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let request = get(
        "/auth/token-request",
        "capability=%7B%22chat%3Aalice%22%3A%5B%22subscribe%22%2C%22publish%22%2C%22push-admin%22%5D%7D",
        &[("authorization", &alice())],
    );
    let tr = assert_json_ok(&service(Route::TokenRequest, &fake, &[]).handle(request).await);
    assert_eq!(tr["capability"], r#"{"chat:alice":["publish","subscribe"]}"#);
    exchange(&fake, &tr)
        .await
        .expect("the MAC covers exactly the capability string sent");
}

#[tokio::test]
async fn anonymous_caller_gets_a_token_request_without_client_id() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::TokenRequest, &fake, &[])
        .handle(event(include_str!("../../events/token-request-anonymous.json")))
        .await;
    let tr = assert_json_ok(&response);
    assert!(tr.get("clientId").is_none());
    assert_eq!(tr["capability"], r#"{"public:*":["subscribe"]}"#);
    assert_eq!(tr["ttl"], 600_000);
    let details = exchange(&fake, &tr).await.expect("accepted");
    assert!(details.get("clientId").is_none());
}

#[tokio::test]
async fn expired_session_gets_401() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::TokenRequest, &fake, &[])
        .handle(event(include_str!("../../events/token-request-expired-caller.json")))
        .await;
    let message = assert_error(&response, 401, 40101);
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn rsa8c_every_token_request_has_a_fresh_nonce_and_a_replay_is_refused_40105() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let service = service(Route::TokenRequest, &fake, &[]);
    let request = || event(include_str!("../../events/token-request-get-valid-caller.json"));
    let a = assert_json_ok(&service.handle(request()).await);
    let b = assert_json_ok(&service.handle(request()).await);
    assert_ne!(a["nonce"], b["nonce"]);
    assert_ne!(a["mac"], b["mac"]);
    exchange(&fake, &a).await.expect("first use accepted");
    let replay = exchange(&fake, &a).await.expect_err("a replayed nonce is refused");
    assert_eq!(replay.ably_code(), Some(40105));
    exchange(&fake, &b).await.expect("the other request is still good");
}

#[tokio::test]
async fn tampered_token_request_is_refused_by_the_mac_check_40101() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::TokenRequest, &fake, &[])
        .handle(event(include_str!("../../events/token-request-get-valid-caller.json")))
        .await;
    let mut tr = assert_json_ok(&response);
    tr["capability"] = json!(r#"{"*":["*"]}"#);
    let e = exchange(&fake, &tr).await.expect_err("tampered");
    assert_eq!(e.ably_code(), Some(40101));
}

/// The start-up error of `route` with `policy` (no Ably call is needed to start).
fn start_up_error(route: Route, policy: &str) -> Option<String> {
    let env = dev_env(&[("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(policy))]);
    Service::from_env_with(route, &move |k: &str| env.get(k).cloned())
        .err()
        .map(|e| e.to_string())
}

/// Both token routes refuse `policy` at start-up naming `field` and pointing to /auth/jwt,
/// which starts with it.
fn assert_token_routes_refuse(policy: serde_json::Value, field: &str) {
    let policy = policy.to_string();
    for route in [Route::TokenRequest, Route::AblyToken] {
        let message = start_up_error(route, &policy).unwrap_or_else(|| panic!("{route:?} started with {policy}"));
        assert!(
            message.starts_with(&format!("invalid token policy at `{field}`:")),
            "{route:?}: {message}"
        );
        assert!(
            message.contains("/auth/jwt") && message.contains("cannot carry them"),
            "{route:?}: {message}"
        );
    }
    assert_eq!(
        start_up_error(Route::Jwt, &policy),
        None,
        "the JWT route accepts {policy}"
    );
}

#[test]
fn token_routes_refuse_channel_claims_at_start_up_naming_the_field() {
    assert_token_routes_refuse(
        json!({"capability":{"chat:*":["subscribe"]},"channelClaims":{"chat:*":"{\"name\":\"{name}\"}"}}),
        "channelClaims",
    );
}

#[test]
fn token_routes_refuse_rate_limits_at_start_up_naming_the_field() {
    assert_token_routes_refuse(
        json!({"capability":{"chat:*":["publish"]},"rateLimits":{"chat:*":5}}),
        "rateLimits",
    );
}

#[test]
fn token_routes_refuse_a_revocation_key_at_start_up_naming_the_field() {
    // TokenRequests and Ably Tokens cannot carry it: `revocationKey:` revocations would
    // silently miss these tokens.
    assert_token_routes_refuse(
        json!({"clientId":"{sub}","capability":{"chat:*":["subscribe"]},"revocationKey":"{org}"}),
        "revocationKey",
    );
}

#[test]
fn token_routes_refuse_a_role_only_rate_limit_at_start_up_naming_the_role() {
    // Nothing JWT-only at the top level: only the moderator role's grant has it.
    assert_token_routes_refuse(
        json!({
            "clientId": "{sub}",
            "capability": {"chat:*": ["subscribe"]},
            "roles": {"claim": "roles", "grants": {
                "admin": {"mayRevoke": true},
                "moderator": {"capability": {"chat:*": ["publish"]}, "rateLimits": {"chat:*": 20}}
            }}
        }),
        "roles.grants[\"moderator\"].rateLimits",
    );
}

#[test]
fn token_routes_refuse_anonymous_channel_claims_at_start_up_naming_the_field() {
    assert_token_routes_refuse(
        json!({"anonymous":{"capability":{"public:*":["subscribe"]},"channelClaims":{"public:*":"guest"}}}),
        "anonymous.channelClaims",
    );
}

#[test]
fn the_dev_jwt_policy_is_refused_by_the_token_routes_naming_every_jwt_only_field() {
    let policy = std::fs::read_to_string(root().join("dev/policy.json")).expect("dev/policy.json");
    let message = start_up_error(Route::TokenRequest, &policy).expect("refused");
    assert!(
        message.contains(r#"also at: rateLimits, revocationKey, roles.grants["moderator"].channelClaims"#),
        "{message}"
    );
    assert_eq!(start_up_error(Route::TokenRequest, TOKEN_ROUTES_POLICY), None);
    assert_eq!(start_up_error(Route::AblyToken, TOKEN_ROUTES_POLICY), None);
}

#[tokio::test]
async fn over_long_resource_name_in_the_capability_hint_gets_400_naming_capability() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let hint = json!({ format!("chat:{}", "a".repeat(3000)): ["subscribe"] }).to_string();
    let body = json!({ "capability": hint }).to_string();
    let response = service(Route::TokenRequest, &fake, &[])
        .handle(post_json("/auth/token-request", &body, &[("authorization", &alice())]))
        .await;
    let message = assert_error(&response, 400, 40000);
    assert!(
        message.contains("`capability`") && message.contains("at most 2048 bytes"),
        "{message}"
    );
}

#[tokio::test]
async fn rsa10k_clock_off_by_ten_minutes_is_refused_40104_unless_ably_query_time() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.set_skew_ms(10 * 60 * 1000);
    let request = || event(include_str!("../../events/token-request-get-valid-caller.json"));

    let plain = service(Route::TokenRequest, &fake, &[]);
    let tr = assert_json_ok(&plain.handle(request()).await);
    let e = exchange(&fake, &tr).await.expect_err("stale timestamp");
    assert_eq!(e.ably_code(), Some(40104));

    let queried = service(Route::TokenRequest, &fake, &[("ABLY_QUERY_TIME", Some("true"))]);
    for _ in 0..3 {
        let tr = assert_json_ok(&queried.handle(request()).await);
        let ts = tr["timestamp"].as_u64().unwrap() as i64;
        assert!((ts - fake.now_ms()).abs() < 5_000, "timestamp follows Ably's clock");
        exchange(&fake, &tr).await.expect("accepted with Ably's time");
    }
    let time_calls = fake.requests_to("/time");
    assert_eq!(time_calls.len(), 1, "Ably's /time is read once per container");
    assert_eq!(time_calls[0].method, "GET");
    assert_eq!(time_calls[0].header("x-ably-version"), Some("6"));
}

#[tokio::test]
async fn ably_query_time_with_ably_unreachable_gets_503_and_recovers() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let service = service(Route::TokenRequest, &fake, &[("ABLY_QUERY_TIME", Some("true"))]);
    let request = || event(include_str!("../../events/token-request-get-valid-caller.json"));
    fake.fail_always(Fault::Drop);
    let response = service.handle(request()).await;
    assert_error(&response, 503, 50300);
    assert!(retry_after(&response) >= 1);
    fake.heal();
    assert_json_ok(&service.handle(request()).await);
    assert_eq!(
        fake.requests_to("/time").len(),
        3,
        "one retry, then a fresh read next request"
    );
}

#[tokio::test]
async fn rsc15l_ably_time_falls_back_when_the_primary_fails() {
    let primary = FakeAbly::start(&[DEV_API_KEY]).await;
    let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
    primary.fail_always(Fault::status(500, 50000, "down at the fake"));
    fallback.set_skew_ms(10 * 60 * 1000);
    let ably = http_ably(hosts(&primary.url(), &[&fallback]), Duration::from_secs(1));
    let service = service_with_ably(
        Route::TokenRequest,
        &primary,
        &[("ABLY_QUERY_TIME", Some("true"))],
        ably,
    );
    let tr = assert_json_ok(
        &service
            .handle(event(include_str!("../../events/token-request-get-valid-caller.json")))
            .await,
    );
    let ts = tr["timestamp"].as_u64().unwrap() as i64;
    assert!((ts - fallback.now_ms()).abs() < 5_000, "the fallback's clock was read");
    assert_eq!(primary.requests_to("/time").len(), 1);
    assert_eq!(fallback.requests_to("/time").len(), 1);
    exchange(&fallback, &tr)
        .await
        .expect("accepted with the fallback's time");
}
