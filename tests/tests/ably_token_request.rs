//! `issue-token-request`: a signed TokenRequest that a fake Ably (verifying the MAC with its
//! own HMAC) accepts; the channel-claims refusal; `ABLY_QUERY_TIME`.

mod fake_ably;

use fake_ably::support::*;
use fake_ably::{FakeAbly, Fault};
use integration_tests::*;
use serde_json::{json, Value};
use shared::ably_rest::{AblyRest, HttpAbly};
use shared::token_request::TokenRequest;
use shared::Route;
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

#[tokio::test]
async fn channel_claims_in_the_grant_refuse_the_token_request_with_500() {
    // The dev policy gives every verified caller channel claims and a rate limit: a
    // TokenRequest cannot carry them, and dropping a rate limit would widen the client's
    // rights, so the route refuses (500: the operator must fix the policy) instead.
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let policy_file = root().join("dev/policy.json").display().to_string();
    let overrides = [
        ("TOKEN_POLICY", None),
        ("TOKEN_POLICY_FILE", Some(policy_file.as_str())),
    ];
    let response = service(Route::TokenRequest, &fake, &overrides)
        .handle(event(include_str!("../../events/token-request-get-valid-caller.json")))
        .await;
    let message = assert_error(&response, 500, 50000);
    assert!(
        message.contains("channel claims or rate limits") && message.contains("/auth/jwt"),
        "{message}"
    );
    // The anonymous grant has none: still served.
    let response = service(Route::TokenRequest, &fake, &overrides)
        .handle(event(include_str!("../../events/token-request-anonymous.json")))
        .await;
    assert_json_ok(&response);
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
