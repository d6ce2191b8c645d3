//! Concurrent mode (Lambda Managed Instances): the release binaries polling a loopback
//! Runtime API that hands out many invocations at once ([`integration_tests::runtime_api`]).
//!
//! With `AWS_LAMBDA_MAX_CONCURRENCY=N` a function serves N invocations at once from one
//! process and one shared [`shared::Service`]; without it, one at a time as before. Every
//! answer is checked against the request it belongs to: JWTs verified independently with the
//! key secret, Ably Tokens issued by a fake Ably that recomputes each TokenRequest's MAC, the
//! clientId that of the caller of that very request id, and no answer for an id that was not
//! handed out or was already answered.
//!
//! These run release binaries and are `#[ignore]`d in a plain `cargo test`; `make
//! test-emulator` builds the binaries and runs them.

mod caller_support;
mod fake_ably;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use caller_support::{claims, jwks, JwksServer, TestKey, AUDIENCE, ISSUER};
use fake_ably::{FakeAbly, Fault};
use integration_tests::runtime_api::{trace_id, FunctionProcess, RuntimeApi};
use integration_tests::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Long enough for any of these tests; they end as soon as the answers are in.
const ANSWERS_WITHIN: Duration = Duration::from_secs(60);

/// The events/ file's HTTP API (v2) GET of /auth/jwt or /auth/token, with `Authorization:
/// Bearer <token>`.
fn jwt_event(token: &str) -> Vec<u8> {
    event_with_bearer(include_str!("../../events/jwt-get-valid-caller.json"), token)
}

fn token_event(token: &str) -> Vec<u8> {
    event_with_bearer(include_str!("../../events/ably-token-get-valid-caller.json"), token)
}

/// A dev (HS256) caller token for `sub`, valid for an hour.
fn dev_caller(sub: &str) -> String {
    caller_token(
        &json!({"sub": sub, "name": sub, "org": "acme", "exp": now_seconds() + 3600}),
        DEV_CALLER_SECRET,
    )
}

/// The function's answer to `id` (an API Gateway proxy response), parsed.
fn proxy_answer(api: &RuntimeApi, id: &str) -> Value {
    let answer = api.answer(id).unwrap_or_else(|| panic!("no answer for {id}"));
    assert_eq!(answer.kind, "response", "{id} was answered as an invocation error");
    serde_json::from_slice(&answer.body).expect("the answer is JSON")
}

/// The answer's body as API Gateway passes it on (decoded when the function base64-encoded
/// it, as lambda_http does for `application/jwt`).
fn body(answer: &Value) -> String {
    let text = answer["body"].as_str().expect("a body");
    if answer["isBase64Encoded"] == json!(true) {
        String::from_utf8(STANDARD.decode(text).expect("base64")).expect("UTF-8")
    } else {
        text.to_owned()
    }
}

fn header<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    answer["headers"][name].as_str()
}

/// Start `function` and wait until `workers` polls wait at once (it is initialised and its
/// workers are polling).
async fn start(
    function: &str,
    api: &RuntimeApi,
    concurrency: Option<u32>,
    settings: &HashMap<String, String>,
    workers: usize,
) -> FunctionProcess {
    let mut process = FunctionProcess::start(function, api, concurrency, settings).expect("start the function");
    let polling = api.wait_for_polls(workers, Duration::from_secs(20)).await;
    if let Some(status) = process.exited() {
        panic!("{function} exited at start ({status}):\n{}", process.logs());
    }
    assert_eq!(polling, workers, "polls waiting at once:\n{}", process.logs());
    process
}

/// The `initialised` start-up line.
fn init_line(process: &FunctionProcess) -> Value {
    process
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "initialised: serving requests")
        .unwrap_or_else(|| panic!("no start-up line:\n{}", process.logs()))
}

fn cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Every request line (the log line with the request's `status`), keyed by request id.
fn request_lines(process: &FunctionProcess) -> HashMap<String, Value> {
    let mut lines = HashMap::new();
    for line in process
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if line["message"] == "request" {
            let id = line["request_id"]
                .as_str()
                .expect("a request line names its request id")
                .to_owned();
            assert!(lines.insert(id.clone(), line).is_none(), "two request lines for {id}");
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the release binaries: make test-emulator"]
async fn eight_workers_serve_eight_invocations_at_once_each_answer_to_its_own_request() {
    // Each requestToken takes 250 ms at Ably, so invocations overlap: served one at a time,
    // 40 would take 10 s; with 8 workers 8 are in flight at once, never more.
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::Slow(Duration::from_millis(250)));
    let api = RuntimeApi::start(Duration::from_secs(10)).await.unwrap();
    let settings = fake_ably::support::env_for(&fake, &[]);
    let process = start("issue-ably-token", &api, Some(8), &settings, 8).await;
    let init = init_line(&process);
    assert_eq!(init["concurrency"], json!(8));
    let expected_runtime = if cpus() > 1 { "multi-thread" } else { "current-thread" };
    assert_eq!(init["runtime"], json!(expected_runtime));

    let ids: Vec<(String, String)> = (0..40)
        .map(|n| {
            let sub = format!("user-{n}");
            (api.push(token_event(&dev_caller(&sub))), sub)
        })
        .collect();
    assert_eq!(api.wait_for_answers(40, ANSWERS_WITHIN).await, 40, "{}", process.logs());

    assert_eq!(api.max_in_flight(), 8, "invocations in flight at once");
    // And the function worked on them at once: 8 calls to Ably open together, not one after
    // another behind a lock.
    assert_eq!(fake.most_slow_at_once(), 8, "requestToken calls open at once");
    assert_eq!(
        api.misrouted(),
        Vec::<String>::new(),
        "answers for ids not handed out, or twice"
    );
    let lines = request_lines(&process);
    for (id, sub) in &ids {
        let answer = proxy_answer(&api, id);
        assert_eq!(answer["statusCode"], json!(200), "{id}: {answer}");
        assert_eq!(header(&answer, "content-type"), Some("application/json"));
        let details: Value = serde_json::from_str(&body(&answer)).expect("TokenDetails");
        assert_eq!(details["clientId"], json!(sub), "{id} got another caller's token");
        assert_eq!(details["keyName"], json!(DEV_KEY_NAME));
        // The log line of that request id is that caller's.
        assert_eq!(lines[id]["client_id"], json!(sub), "{id}: {}", lines[id]);
    }
    // One TokenRequest per invocation, each with a valid MAC (the fake checks it), no
    // nonce twice; and one Ably Token per caller.
    let issued = fake.requests_to("/requestToken");
    assert_eq!(issued.len(), 40);
    let mut clients: Vec<String> = issued
        .iter()
        .map(|r| r.json()["clientId"].as_str().unwrap_or_default().to_owned())
        .collect();
    clients.sort();
    clients.dedup();
    assert_eq!(clients.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the release binaries: make test-emulator"]
async fn without_max_concurrency_a_function_serves_one_invocation_at_a_time() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::Slow(Duration::from_millis(100)));
    let api = RuntimeApi::start(Duration::from_secs(10)).await.unwrap();
    let settings = fake_ably::support::env_for(&fake, &[]);
    let process = start("issue-ably-token", &api, None, &settings, 1).await;
    let init = init_line(&process);
    assert_eq!(
        (&init["concurrency"], &init["runtime"]),
        (&json!(1), &json!("current-thread"))
    );
    let ids: Vec<String> = (0..6)
        .map(|n| api.push(token_event(&dev_caller(&format!("solo-{n}")))))
        .collect();
    assert_eq!(api.wait_for_answers(6, ANSWERS_WITHIN).await, 6, "{}", process.logs());
    assert_eq!(api.max_in_flight(), 1);
    assert_eq!(api.max_polls_waiting(), 1);
    assert_eq!(fake.most_slow_at_once(), 1);
    for (n, id) in ids.iter().enumerate() {
        let answer = proxy_answer(&api, id);
        let details: Value = serde_json::from_str(&body(&answer)).unwrap();
        assert_eq!(details["clientId"], json!(format!("solo-{n}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the release binaries: make test-emulator"]
async fn many_jwts_at_once_all_verify_and_belong_to_their_callers() {
    let api = RuntimeApi::start(Duration::from_secs(10)).await.unwrap();
    let process = start("issue-jwt", &api, Some(8), &dev_env(&[]), 8).await;
    let count = 600;
    let ids: Vec<(String, String)> = (0..count)
        .map(|n| {
            let sub = format!("member-{n}");
            (api.push(jwt_event(&dev_caller(&sub))), sub)
        })
        .collect();
    assert_eq!(
        api.wait_for_answers(count, ANSWERS_WITHIN).await,
        count,
        "{}",
        process.logs()
    );
    assert_eq!(api.misrouted(), Vec::<String>::new());
    assert!(
        api.max_in_flight() <= 8,
        "at most the workers' count in flight: {}",
        api.max_in_flight()
    );
    let lines = request_lines(&process);
    assert_eq!(lines.len(), count);
    for (id, sub) in &ids {
        let answer = proxy_answer(&api, id);
        assert_eq!(answer["statusCode"], json!(200), "{id}: {answer}");
        assert_eq!(header(&answer, "content-type"), Some("application/jwt"));
        let (_, claims) = verify_ably_jwt(&body(&answer), DEV_KEY_SECRET);
        assert_eq!(claims["x-ably-clientId"], json!(sub), "{id} got another caller's token");
        assert_eq!(lines[id]["client_id"], json!(sub));
        // Its own X-Ray trace id, not another concurrent invocation's.
        assert_eq!(lines[id]["xray_trace_id"], json!(trace_id(id)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the release binaries: make test-emulator"]
async fn a_cold_environment_fetches_the_keys_and_reads_ablys_clock_once_for_concurrent_requests() {
    // The identity provider's keys and Ably's clock are both slow, and 16 requests arrive at
    // once on a cold environment: each is fetched once, and every request waits for that one.
    let key = TestKey::rsa("kid-1");
    let provider = JwksServer::start(jwks(&[&key])).await;
    provider.set_jwks_delay(Duration::from_millis(300));
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::Slow(Duration::from_millis(300)));
    let api = RuntimeApi::start(Duration::from_secs(10)).await.unwrap();
    let settings = dev_env(&[
        ("CALLER_HS256_SECRET", None),
        ("CALLER_ISSUER", Some(ISSUER)),
        ("CALLER_AUDIENCE", Some(AUDIENCE)),
        ("CALLER_JWKS_URL", Some(provider.jwks_url().as_str())),
        ("ABLY_QUERY_TIME", Some("true")),
        ("ABLY_REST_URL", Some(fake.url().as_str())),
    ]);
    let process = start("issue-jwt", &api, Some(16), &settings, 16).await;
    let ids: Vec<(String, String)> = (0..16)
        .map(|n| {
            let sub = format!("oidc-{n}");
            (api.push(jwt_event(&key.sign(&claims(ISSUER, &sub)))), sub)
        })
        .collect();
    assert_eq!(api.wait_for_answers(16, ANSWERS_WITHIN).await, 16, "{}", process.logs());
    assert!(
        api.max_in_flight() > 1,
        "the requests overlapped: {}",
        api.max_in_flight()
    );
    // Exactly one of them was the environment's first (cold_start), whatever the order.
    let lines = request_lines(&process);
    assert_eq!(lines.len(), 16);
    assert_eq!(lines.values().filter(|l| l["cold_start"] == json!(true)).count(), 1);
    assert_eq!(provider.jwks_fetches(), 1, "one JWKS fetch for the environment");
    assert_eq!(
        fake.requests_to("/time").len(),
        1,
        "one read of Ably's clock for the environment"
    );
    for (id, sub) in &ids {
        let answer = proxy_answer(&api, id);
        assert_eq!(answer["statusCode"], json!(200), "{id}: {answer}");
        let (_, claims) = verify_ably_jwt(&body(&answer), DEV_KEY_SECRET);
        assert_eq!(claims["x-ably-clientId"], json!(sub));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the release binaries: make test-emulator"]
async fn a_bad_runtime_choice_refuses_to_start_and_says_which_setting() {
    let api = RuntimeApi::start(Duration::from_secs(10)).await.unwrap();
    let settings = dev_env(&[("TOKIO_RUNTIME", Some("green-threads"))]);
    let mut process = FunctionProcess::start("issue-jwt", &api, Some(8), &settings).expect("start");
    // Bounded by a count of attempts: this waits for the process to exit, it measures nothing.
    let mut status = None;
    for _ in 0..200 {
        status = process.exited();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = status.unwrap_or_else(|| panic!("still running:\n{}", process.logs()));
    assert!(!status.success());
    let logs = process.logs();
    assert!(
        logs.contains("configuration error: the function cannot start") && logs.contains("TOKIO_RUNTIME is invalid"),
        "{logs}"
    );
    assert_eq!(api.max_polls_waiting(), 0, "it never polled for an invocation");
}
