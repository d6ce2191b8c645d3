//! `issue-ably-token`: the function exchanges a signed TokenRequest at (a fake) Ably and
//! answers the TokenDetails; every mapping of Ably's failures onto the caller's contract.

mod fake_ably;

use fake_ably::support::*;
use fake_ably::{FakeAbly, Fault};
use integration_tests::*;
use serde_json::{json, Value};
use shared::ably_rest::HttpAbly;
use shared::config::Config;
use shared::service::Deps;
use shared::{Route, Service};
use std::sync::Arc;
use std::time::Duration;

const TOKEN_DETAILS_FIELDS: [&str; 6] = ["token", "keyName", "issued", "expires", "capability", "clientId"];

fn valid_caller() -> lambda_http::Request {
    event(include_str!("../../events/ably-token-get-valid-caller.json"))
}

fn assert_token_details(response: &lambda_http::Response<lambda_http::Body>) -> Value {
    let details = assert_json_ok(response);
    let fields: Vec<&str> = details
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for f in &fields {
        assert!(
            TOKEN_DETAILS_FIELDS.contains(f),
            "unexpected field {f}: exactly the TokenDetails fields"
        );
    }
    assert!(details["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(details["keyName"], DEV_KEY_NAME);
    assert!(
        details["issued"].is_u64() && details["expires"].is_u64(),
        "ms as JSON numbers"
    );
    assert!(details["capability"].is_string());
    details
}

#[tokio::test]
async fn rsa8c_ably_token_route_answers_the_token_details_ably_issued() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    let details = assert_token_details(&response);
    assert_eq!(details["clientId"], "alice");
    assert_eq!(details["capability"], ALICE_CAPABILITY);
    assert_eq!(
        details["expires"].as_u64().unwrap() - details["issued"].as_u64().unwrap(),
        3_600_000
    );
    assert_eq!(header(&response, "access-control-allow-origin"), Some(DEV_ORIGIN));

    let calls = fake.requests();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, format!("/keys/{DEV_KEY_NAME}/requestToken"));
    assert_eq!(call.header("x-ably-version"), Some("6"));
    assert_eq!(call.header("accept"), Some("application/json"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        call.header("authorization"),
        None,
        "a signed TokenRequest needs no auth header"
    );
    let sent = call.json();
    assert_eq!(sent["clientId"], "alice");
    assert_eq!(sent["capability"], ALICE_CAPABILITY);
    assert!(!call.body.contains(DEV_KEY_SECRET));
}

#[tokio::test]
async fn post_json_capability_and_ttl_hints_narrow_the_ably_token() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::AblyToken, &fake, &[])
        .handle(event(include_str!("../../events/ably-token-post-json.json")))
        .await;
    let details = assert_token_details(&response);
    assert_eq!(details["capability"], r#"{"chat:alice":["publish"]}"#);
    assert_eq!(
        details["expires"].as_u64().unwrap() - details["issued"].as_u64().unwrap(),
        900_000
    );
}

#[tokio::test]
async fn anonymous_caller_gets_an_ably_token_without_client_id() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::AblyToken, &fake, &[])
        .handle(event(include_str!("../../events/ably-token-anonymous.json")))
        .await;
    let details = assert_token_details(&response);
    assert!(details.get("clientId").is_none());
    assert_eq!(details["capability"], r#"{"public:*":["subscribe"]}"#);
}

#[tokio::test]
async fn jwt_only_policy_in_hand_built_deps_refuses_every_request_with_500_before_calling_ably() {
    // Deps::from_config refuses such a policy at start-up for this route; a service built
    // from Deps made for another route still never drops those fields silently.
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let policy_file = root().join("dev/policy.json").display().to_string();
    let env = env_for(
        &fake,
        &[
            ("TOKEN_POLICY", None),
            ("TOKEN_POLICY_FILE", Some(policy_file.as_str())),
        ],
    );
    let config = Config::from_env(&move |k: &str| env.get(k).cloned()).expect("valid for /auth/jwt");
    let mut deps = Deps::from_config(config, Route::Jwt).expect("deps for /auth/jwt");
    let client = shared::http_client::build().expect("client");
    deps.ably = Some(Arc::new(HttpAbly::new(client, &fake.url())));
    let service = Service::new(Route::AblyToken, deps);
    for request in [
        valid_caller(),
        event(include_str!("../../events/ably-token-anonymous.json")),
    ] {
        let message = assert_error(&service.handle(request).await, 500, 50000);
        assert!(
            message.contains("revocation key") && message.contains("/auth/jwt"),
            "{message}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn capability_hint_grown_past_32_kib_by_narrowing_gets_400_before_calling_ably() {
    // Each `*:<name>` meets alice's `chat:*` as `chat:<name>`: 20 of them are ~40 KiB.
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let hint: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("*:{i:02}{}", "n".repeat(1998)), json!(["subscribe"])))
        .collect();
    let body = json!({ "capability": Value::Object(hint).to_string() }).to_string();
    let response = service(Route::AblyToken, &fake, &[])
        .handle(post_json("/auth/token", &body, &[("authorization", &alice())]))
        .await;
    let message = assert_error(&response, 400, 40000);
    assert!(
        message.contains("`capability`") && message.contains("32768-byte limit"),
        "{message}"
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn ably_5xx_gets_502_50200_without_retry() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::status(500, 50000, "internal fault at the fake"));
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    let message = assert_error(&response, 502, 50200);
    assert!(!message.contains("fake"), "Ably's text is not passed on: {message}");
    assert_eq!(fake.requests().len(), 1, "an answered request is not retried");
    assert!(response.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn ably_timeout_gets_504_50400() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::Hang);
    let service = service_with_timeout(Route::AblyToken, &fake, &[], Duration::from_millis(300));
    let response = service.handle(valid_caller()).await;
    assert_error(&response, 504, 50400);
    assert_eq!(fake.requests().len(), 1, "a timeout spent the budget: no retry");
}

#[tokio::test]
async fn ably_connection_refused_gets_503_50300_with_retry_after() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{closed}");
    let response = service(Route::AblyToken, &fake, &[("ABLY_REST_URL", Some(url.as_str()))])
        .handle(valid_caller())
        .await;
    assert_error(&response, 503, 50300);
    assert!(retry_after(&response) >= 1);
}

#[tokio::test]
async fn stale_keep_alive_connection_is_retried_once_and_succeeds() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let service = service(Route::AblyToken, &fake, &[]);
    assert_token_details(&service.handle(valid_caller()).await);
    // The next request's connection dies before an answer (as a keep-alive socket that
    // went stale while the container was frozen): one retry, then success.
    fake.fail_next(Fault::Drop);
    assert_token_details(&service.handle(valid_caller()).await);
    let calls = fake.requests_to("/requestToken");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[1].body, calls[2].body, "the retry resends the same TokenRequest");
}

#[tokio::test]
async fn connection_dropped_twice_gets_503_50300_with_retry_after() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::Drop);
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    assert_error(&response, 503, 50300);
    assert!(retry_after(&response) >= 1);
    assert_eq!(fake.requests().len(), 2, "exactly one retry");
}

#[tokio::test]
async fn ably_429_gets_503_with_ablys_retry_after() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::Status {
        status: 429,
        code: 42910,
        message: "Rate limit exceeded; request rejected",
        retry_after: Some(12),
    });
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    assert_error(&response, 503, 50300);
    assert_eq!(retry_after(&response), 12);
}

#[tokio::test]
async fn ably_rate_limit_code_40115_gets_503_with_retry_after() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::status(401, 40115, "Rate limit exceeded"));
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    assert_error(&response, 503, 50300);
    assert!(retry_after(&response) >= 1);
}

#[tokio::test]
async fn ably_403_becomes_500_never_403() {
    // A 403 would make the SDK give up for good over a server-side fault.
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::status(403, 40300, "Account disabled"));
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    let message = assert_error(&response, 500, 50000);
    assert!(!message.contains("Account disabled"), "{message}");
}

#[tokio::test]
async fn unknown_key_at_ably_gets_500() {
    let fake = FakeAbly::start(&["otherApp.otherKey:other-secret"]).await;
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    assert_error(&response, 500, 50000);
}

#[tokio::test]
async fn stale_timestamp_40104_gets_500_and_ably_query_time_fixes_it() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.set_skew_ms(-5 * 60 * 1000);
    let response = service(Route::AblyToken, &fake, &[]).handle(valid_caller()).await;
    assert_error(&response, 500, 50000);
    let service = service(Route::AblyToken, &fake, &[("ABLY_QUERY_TIME", Some("true"))]);
    assert_token_details(&service.handle(valid_caller()).await);
    assert_token_details(&service.handle(valid_caller()).await);
    assert_eq!(fake.requests_to("/time").len(), 1);
}
