//! Building the token routes' services against a [`super::FakeAbly`], and checking answers.

use super::FakeAbly;
use integration_tests::*;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::ably_rest::{AblyClock, AblyHosts, AblyRest, HttpAbly};
use shared::clock::SystemClock;
use shared::config::Config;
use shared::service::Deps;
use shared::{Route, Service};
use std::sync::Arc;
use std::time::Duration;

/// Alice's capability under [`TOKEN_ROUTES_POLICY`], canonical.
pub const ALICE_CAPABILITY: &str =
    r#"{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}"#;

/// The dev settings with the token policy, Ably at the fake, and `overrides` on top.
pub fn env_for(fake: &FakeAbly, overrides: &[(&str, Option<&str>)]) -> std::collections::HashMap<String, String> {
    let url = fake.url();
    let mut all: Vec<(&str, Option<&str>)> = vec![
        ("TOKEN_POLICY_FILE", None),
        ("TOKEN_POLICY", Some(TOKEN_ROUTES_POLICY)),
        ("ABLY_REST_URL", Some(url.as_str())),
    ];
    all.extend_from_slice(overrides);
    dev_env(&all)
}

/// A route's service configured from the environment (as each function's `main` does).
pub fn service(route: Route, fake: &FakeAbly, overrides: &[(&str, Option<&str>)]) -> Service {
    let env = env_for(fake, overrides);
    Service::from_env_with(route, &move |k: &str| env.get(k).cloned()).expect("configuration is valid")
}

/// As [`service`], but Ably reached through a client with short timeouts (hang tests).
pub fn service_with_timeout(
    route: Route,
    fake: &FakeAbly,
    overrides: &[(&str, Option<&str>)],
    total: Duration,
) -> Service {
    let ably = http_ably(AblyHosts::new(&fake.url(), std::iter::empty::<&str>()), total);
    service_with_ably(route, fake, overrides, ably)
}

/// As [`service`], but Ably reached through `ably` (e.g. a primary and fallbacks at fakes),
/// also for Ably's clock when `ABLY_QUERY_TIME=true`.
pub fn service_with_ably(route: Route, fake: &FakeAbly, overrides: &[(&str, Option<&str>)], ably: HttpAbly) -> Service {
    let env = env_for(fake, overrides);
    let config = Config::from_env(&move |k: &str| env.get(k).cloned()).expect("configuration is valid");
    let query_time = config.ably_query_time;
    let mut deps = Deps::from_config(config, route).expect("deps");
    let ably: Arc<dyn AblyRest> = Arc::new(ably);
    if query_time {
        deps.clock = Arc::new(AblyClock::new(Arc::new(SystemClock), ably.clone()));
    }
    deps.ably = Some(ably);
    Service::new(route, deps)
}

/// The real Ably client at `hosts`, each attempt bounded by `attempt` (connecting: 500 ms).
pub fn http_ably(hosts: AblyHosts, attempt: Duration) -> HttpAbly {
    let client = shared::http_client::build_with(Duration::from_millis(500).min(attempt), attempt).expect("client");
    HttpAbly::with_hosts(client, hosts)
}

/// Hosts as the default endpoint has them: `primary` and fallbacks, all on loopback.
pub fn hosts(primary: &str, fallbacks: &[&FakeAbly]) -> AblyHosts {
    AblyHosts::new(primary, fallbacks.iter().map(|f| f.url()))
}

/// `http://127.0.0.1:<port>` where nothing listens: connections are refused.
pub fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    format!("http://127.0.0.1:{port}")
}

pub fn event(text: &str) -> Request {
    lambda_http::request::from_str(text).expect("event parses")
}

pub fn body(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8(b.clone()).expect("utf-8 body"),
        _ => String::new(),
    }
}

pub fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn assert_no_secrets(response: &Response<Body>) {
    let text = body(response);
    assert!(!text.contains(DEV_KEY_SECRET), "the key secret leaked: {text}");
    assert!(!text.contains(DEV_CALLER_SECRET), "the caller secret leaked: {text}");
    for (_, v) in response.headers() {
        let v = v.to_str().unwrap_or("");
        assert!(!v.contains(DEV_KEY_SECRET) && !v.contains(DEV_CALLER_SECRET));
    }
}

/// A 200 `application/json` answer, parsed.
pub fn assert_json_ok(response: &Response<Body>) -> Value {
    assert_eq!(response.status().as_u16(), 200, "body: {}", body(response));
    assert_eq!(header(response, "content-type"), Some("application/json"));
    assert_eq!(header(response, "cache-control"), Some("no-store"));
    assert_no_secrets(response);
    let v: Value = serde_json::from_str(&body(response)).expect("JSON body");
    assert!(v.get("response").is_none(), "never a top-level `response` property");
    v
}

/// An Ably ErrorInfo answer with this status and code; returns the message.
pub fn assert_error(response: &Response<Body>, status: u16, code: u32) -> String {
    assert_eq!(response.status().as_u16(), status, "body: {}", body(response));
    assert_eq!(header(response, "content-type"), Some("application/json"));
    assert_eq!(header(response, "cache-control"), Some("no-store"));
    assert_eq!(header(response, "x-ably-errorcode"), Some(code.to_string().as_str()));
    assert!(header(response, "x-ably-errormessage").is_some_and(|m| !m.is_empty()));
    assert_no_secrets(response);
    let v: Value = serde_json::from_str(&body(response)).expect("ErrorInfo JSON");
    assert_eq!(v["error"]["code"], json!(code));
    assert_eq!(v["error"]["statusCode"], json!(status));
    let message = v["error"]["message"].as_str().expect("message is a string").to_owned();
    assert!(!message.is_empty());
    message
}

/// `Retry-After` in seconds, required.
pub fn retry_after(response: &Response<Body>) -> u32 {
    header(response, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in seconds")
}

pub fn get(path: &str, query: &str, headers: &[(&str, &str)]) -> Request {
    let mut b = lambda_http::http::Request::builder().method("GET").uri(format!(
        "https://abc123.execute-api.eu-west-1.amazonaws.com{path}?{query}"
    ));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::Empty).expect("request")
}

pub fn post_json(path: &str, body: &str, headers: &[(&str, &str)]) -> Request {
    let mut b = lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("https://abc123.execute-api.eu-west-1.amazonaws.com{path}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::Text(body.to_owned())).expect("request")
}

/// `Authorization: Bearer …` for a dev caller with these claims (valid for an hour).
pub fn bearer(claims: Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(now_seconds() + 3600);
    format!("Bearer {}", caller_token(&claims, DEV_CALLER_SECRET))
}

pub fn alice() -> String {
    bearer(json!({"sub": "alice", "name": "Alice", "org": "acme"}))
}

pub fn admin() -> String {
    bearer(json!({"sub": "ops-1", "org": "acme", "roles": ["admin"]}))
}

pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
