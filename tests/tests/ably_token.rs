//! `issue-ably-token`: the function exchanges a signed TokenRequest at (a fake) Ably and
//! answers the TokenDetails; every mapping of Ably's failures onto the caller's contract;
//! Ably's fallback hosts (RSC15) with fakes standing for the primary and the fallbacks.

mod fake_ably;

use fake_ably::support::*;
use fake_ably::{FakeAbly, Fault, Recorded};
use integration_tests::*;
use serde_json::{json, Value};
use shared::ably_rest::HttpAbly;
use shared::config::Config;
use shared::service::Deps;
use shared::{Route, Service};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

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
async fn rsc15g_custom_ably_rest_url_gets_no_fallbacks_so_ably_5xx_gets_502_50200_at_once() {
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
async fn stale_keep_alive_connection_is_retried_once_with_a_freshly_signed_token_request() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let service = service(Route::AblyToken, &fake, &[]);
    assert_token_details(&service.handle(valid_caller()).await);
    // The next request's connection dies before an answer (as a keep-alive socket that
    // went stale while the container was frozen), after Ably used up its nonce: one retry,
    // with a new nonce (the same one again would be refused, 40105), then success.
    fake.fail_next(Fault::HandleThenDrop);
    assert_token_details(&service.handle(valid_caller()).await);
    let calls = fake.requests_to("/requestToken");
    assert_eq!(calls.len(), 3);
    assert_ne!(calls[1].json()["nonce"], calls[2].json()["nonce"]);
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

fn nonce_and_timestamp(call: &Recorded) -> (String, u64) {
    let sent = call.json();
    let nonce = sent["nonce"].as_str().expect("nonce").to_owned();
    (nonce, sent["timestamp"].as_u64().expect("timestamp"))
}

#[tokio::test]
async fn rsc15l_primary_5xx_falls_back_with_a_newly_signed_token_request() {
    for status in [500, 502, 503, 504] {
        let primary = FakeAbly::start(&[DEV_API_KEY]).await;
        let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
        primary.fail_always(Fault::status(status, u32::from(status) * 100, "down at the fake"));
        let ably = http_ably(hosts(&primary.url(), &[&fallback]), SECOND);
        let response = service_with_ably(Route::AblyToken, &primary, &[], ably)
            .handle(valid_caller())
            .await;
        // The fallback recomputed the MAC and checked nonce and timestamp.
        assert_token_details(&response);
        let (first, retried) = (
            primary.requests_to("/requestToken"),
            fallback.requests_to("/requestToken"),
        );
        assert_eq!((first.len(), retried.len()), (1, 1), "HTTP {status}");
        let (first_nonce, first_ts) = nonce_and_timestamp(&first[0]);
        let (retried_nonce, retried_ts) = nonce_and_timestamp(&retried[0]);
        assert_ne!(first_nonce, retried_nonce, "HTTP {status}: a new nonce for the retry");
        assert!(retried_ts >= first_ts);
        assert_ne!(first[0].json()["mac"], retried[0].json()["mac"]);
    }
}

#[tokio::test]
async fn rsc15l_primary_refusing_connections_falls_back() {
    let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
    let ably = http_ably(hosts(&refusing_url(), &[&fallback]), SECOND);
    let response = service_with_ably(Route::AblyToken, &fallback, &[], ably)
        .handle(valid_caller())
        .await;
    assert_eq!(assert_token_details(&response)["clientId"], "alice");
    assert_eq!(fallback.requests_to("/requestToken").len(), 1);
}

#[tokio::test]
async fn rsc15l_primary_timeout_falls_back_with_a_fresh_timestamp() {
    let primary = FakeAbly::start(&[DEV_API_KEY]).await;
    let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
    primary.fail_always(Fault::Hang);
    let ably = http_ably(hosts(&primary.url(), &[&fallback]), Duration::from_millis(400));
    let response = service_with_ably(Route::AblyToken, &primary, &[], ably)
        .handle(valid_caller())
        .await;
    assert_token_details(&response);
    let first = primary.requests_to("/requestToken");
    assert_eq!(first.len(), 1, "a timed-out host is not asked again");
    let retried = fallback.requests_to("/requestToken");
    assert_eq!(retried.len(), 1);
    let ((first_nonce, first_ts), (retried_nonce, retried_ts)) =
        (nonce_and_timestamp(&first[0]), nonce_and_timestamp(&retried[0]));
    assert_ne!(first_nonce, retried_nonce);
    assert!(
        retried_ts >= first_ts + 350,
        "signed when sent, after the 400 ms timeout: {first_ts} then {retried_ts}"
    );
}

#[tokio::test]
async fn rsc15l_a_cdn_4xx_without_an_ably_error_falls_back() {
    let primary = FakeAbly::start(&[DEV_API_KEY]).await;
    let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
    primary.fail_always(Fault::NotAbly {
        status: 403,
        body: "<html><body>Request blocked.</body></html>",
    });
    let ably = http_ably(hosts(&primary.url(), &[&fallback]), SECOND);
    let response = service_with_ably(Route::AblyToken, &primary, &[], ably)
        .handle(valid_caller())
        .await;
    assert_token_details(&response);
    assert_eq!(primary.requests().len(), 1);
    assert_eq!(fallback.requests_to("/requestToken").len(), 1);
}

#[tokio::test]
async fn rsc15l_an_ordinary_ably_4xx_is_final_and_no_fallback_is_asked() {
    let cases = [
        (Fault::status(401, 40101, "Invalid mac"), 500, 50000),
        (Fault::status(400, 40003, "Invalid ttl: exceeds maximum"), 500, 50000),
        (
            Fault::Status {
                status: 429,
                code: 42910,
                message: "Rate limit exceeded",
                retry_after: Some(4),
            },
            503,
            50300,
        ),
    ];
    for (fault, status, code) in cases {
        let primary = FakeAbly::start(&[DEV_API_KEY]).await;
        let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
        primary.fail_always(fault.clone());
        let ably = http_ably(hosts(&primary.url(), &[&fallback]), SECOND);
        let response = service_with_ably(Route::AblyToken, &primary, &[], ably)
            .handle(valid_caller())
            .await;
        assert_error(&response, status, code);
        assert_eq!(primary.requests().len(), 1, "{fault:?}");
        assert!(fallback.requests().is_empty(), "{fault:?}: no fallback");
    }
}

#[tokio::test]
async fn rsc15a_every_host_failing_is_each_asked_once_and_the_last_failure_answered() {
    let primary = FakeAbly::start(&[DEV_API_KEY]).await;
    let fallbacks = [
        FakeAbly::start(&[DEV_API_KEY]).await,
        FakeAbly::start(&[DEV_API_KEY]).await,
    ];
    for fake in [&primary, &fallbacks[0], &fallbacks[1]] {
        fake.fail_always(Fault::status(503, 50300, "down at the fake"));
    }
    let ably = http_ably(hosts(&primary.url(), &[&fallbacks[0], &fallbacks[1]]), SECOND);
    let response = service_with_ably(Route::AblyToken, &primary, &[], ably)
        .handle(valid_caller())
        .await;
    assert_error(&response, 502, 50200);
    for fake in [&primary, &fallbacks[0], &fallbacks[1]] {
        assert_eq!(fake.requests_to("/requestToken").len(), 1);
    }
}

#[tokio::test]
async fn rsc15_all_attempts_end_within_the_total_deadline_with_504() {
    let primary = FakeAbly::start(&[DEV_API_KEY]).await;
    let fallbacks = [
        FakeAbly::start(&[DEV_API_KEY]).await,
        FakeAbly::start(&[DEV_API_KEY]).await,
        FakeAbly::start(&[DEV_API_KEY]).await,
    ];
    let all = [&primary, &fallbacks[0], &fallbacks[1], &fallbacks[2]];
    for fake in all {
        fake.fail_always(Fault::Hang);
    }
    // 300 ms per attempt, 700 ms in all: the third attempt is cut short, the fourth never made.
    let ably = http_ably(
        hosts(&primary.url(), &[&fallbacks[0], &fallbacks[1], &fallbacks[2]]),
        Duration::from_millis(300),
    )
    .with_deadline(Duration::from_millis(700));
    let service = service_with_ably(Route::AblyToken, &primary, &[], ably);
    let started = Instant::now();
    let response = service.handle(valid_caller()).await;
    let elapsed = started.elapsed();
    assert_error(&response, 504, 50400);
    assert!(
        elapsed >= Duration::from_millis(650) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let attempts: usize = all.iter().map(|f| f.requests().len()).sum();
    assert!((2..=3).contains(&attempts), "{attempts} attempts");
    assert_eq!(primary.requests().len(), 1);
}

#[tokio::test]
async fn one_request_s_ably_calls_together_end_by_the_invocation_deadline_with_504() {
    // Ably's /time answers after 1.5 s, then requestToken hangs: 2 s allowed per call, so 3.5 s
    // in all, against the 2 s the invocation has left. The answer leaves at the deadline.
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_next(Fault::Slow(Duration::from_millis(1500)));
    fake.fail_next(Fault::Hang);
    let ably = http_ably(hosts(&fake.url(), &[]), Duration::from_secs(2)).with_deadline(Duration::from_secs(2));
    let service = service_with_ably(Route::AblyToken, &fake, &[("ABLY_QUERY_TIME", Some("true"))], ably);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let response = shared::deadline::within(deadline, service.handle(valid_caller())).await;
    let elapsed = started.elapsed();
    assert_error(&response, 504, 50400);
    assert!(
        elapsed >= Duration::from_millis(1950) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[0].starts_with("/time") && paths[1].contains("/requestToken"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn rsc15f_a_fallback_that_answered_is_asked_first_on_the_next_request() {
    let primary = FakeAbly::start(&[DEV_API_KEY]).await;
    let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
    primary.fail_always(Fault::status(503, 50300, "down at the fake"));
    let ably = http_ably(hosts(&primary.url(), &[&fallback]), SECOND);
    let service = service_with_ably(Route::AblyToken, &primary, &[], ably);
    for _ in 0..3 {
        assert_token_details(&service.handle(valid_caller()).await);
    }
    assert_eq!(
        primary.requests().len(),
        1,
        "the down primary cost only the first request"
    );
    assert_eq!(fallback.requests_to("/requestToken").len(), 3);
}

/// Run as a child process of [`http_client_that_cannot_be_built_is_reported_as_such`]
/// (which sets `SSL_CERT_FILE` to an empty file): prints the configuration error.
const NO_CA_CHILD: &str = "ABLY_TEST_CHILD_WITHOUT_CA_CERTIFICATES";

#[test]
fn http_client_that_cannot_be_built_is_reported_as_such() {
    if std::env::var_os(NO_CA_CHILD).is_some() {
        let env = dev_env(&[("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(TOKEN_ROUTES_POLICY))]);
        let error = shared::Service::from_env_with(Route::AblyToken, &move |k: &str| env.get(k).cloned())
            .err()
            .expect("no HTTPS client without CA certificates");
        println!("CONFIG ERROR: {error}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("no-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").expect("empty CA file");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "http_client_that_cannot_be_built_is_reported_as_such",
            "--nocapture",
        ])
        .env(NO_CA_CHILD, "1")
        .env("SSL_CERT_FILE", &empty)
        .env_remove("SSL_CERT_DIR")
        .output()
        .expect("run the child");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG ERROR: "))
        .unwrap_or_else(|| panic!("the child printed no error: {stdout}"));
    assert!(line.starts_with("cannot build the HTTPS client"), "{line}");
    assert!(line.contains("No CA certificates"), "the cause: {line}");
    assert!(
        line.contains("ca-certificates") && line.contains("SSL_CERT_FILE"),
        "what to do: {line}"
    );
    assert!(line.contains("calling Ably's REST API"), "{line}");
    assert!(!line.contains("ABLY_REST_URL is invalid"), "{line}");
}
