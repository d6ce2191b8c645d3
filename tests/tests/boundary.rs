//! Whole raw events through `shared::runtime::answer` — the function's entry point, with the
//! real `lambda_http` conversion — for every kind of input that used to abort the runtime
//! (shared::boundary): each is decoded or answered with a 400 ErrorInfo in the event's own
//! response shape, with CORS and `no-store`, and the same service answers the next event.

use integration_tests::*;
use lambda_http::Context;
use serde_json::{json, Value};
use shared::{Route, Service};

const VALID_V2: &str = include_str!("../../events/jwt-get-valid-caller.json");
const ANONYMOUS_V2: &str = include_str!("../../events/jwt-anonymous.json");
const VALID_V1: &str = include_str!("../../events/authorizer-rest-lambda.json");

/// The dev settings of `route` (the token routes use the policy without JWT-only fields).
fn service(route: Route) -> Service {
    let env = match route {
        Route::Jwt | Route::Revoke => dev_env(&[]),
        Route::TokenRequest | Route::AblyToken => {
            dev_env(&[("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(TOKEN_ROUTES_POLICY))])
        }
    };
    let env = move |k: &str| env.get(k).cloned();
    Service::from_env_with(route, &env).expect("dev configuration is valid")
}

fn with(template: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut event: Value = serde_json::from_str(template).expect("event JSON");
    edit(&mut event);
    event.to_string()
}

/// The serialized Lambda answer (what the runtime posts back to API Gateway).
async fn answer(service: &Service, event: &str) -> Value {
    let answer = shared::runtime::answer(service, event, Context::default()).await;
    serde_json::to_value(answer).expect("the answer serializes")
}

/// A header of an HTTP API answer (`headers`) or a REST answer (`multiValueHeaders`).
fn header(answer: &Value, name: &str) -> Option<String> {
    if let Some(v) = answer["headers"].get(name).and_then(Value::as_str) {
        return Some(v.to_owned());
    }
    answer["multiValueHeaders"]
        .get(name)
        .and_then(|v| v.get(0))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The answer's body (`application/jwt` travels base64-encoded: lambda_http sends media
/// types it does not know as text in binary form, and API Gateway decodes them).
fn body(answer: &Value) -> String {
    let text = answer["body"].as_str().unwrap_or_default();
    if answer["isBase64Encoded"] == json!(true) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64 body");
        return String::from_utf8(bytes).expect("utf-8 body");
    }
    text.to_owned()
}

/// HTTP API / Function URL answers carry `cookies`; REST answers put headers in
/// `multiValueHeaders` and have no `cookies`.
fn is_http_api_shape(answer: &Value) -> bool {
    answer.get("cookies").is_some()
}

/// Assert a 400 ErrorInfo for a refused event (CORS for the dev origin, no-store) and return
/// its message.
fn assert_refused(answer: &Value) -> String {
    assert_eq!(answer["statusCode"], json!(400), "answer: {answer}");
    assert_eq!(header(answer, "content-type").as_deref(), Some("application/json"));
    assert_eq!(header(answer, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(header(answer, "x-ably-errorcode").as_deref(), Some("40000"));
    let info: Value = serde_json::from_str(&body(answer)).expect("ErrorInfo JSON");
    assert_eq!(info["error"]["code"], json!(40000));
    assert_eq!(info["error"]["statusCode"], json!(400));
    let message = info["error"]["message"].as_str().expect("message").to_owned();
    assert!(message.starts_with("the request cannot be processed: "), "{message}");
    assert!(!body(answer).contains(DEV_KEY_SECRET) && !body(answer).contains(DEV_CALLER_SECRET));
    message
}

fn assert_cors(answer: &Value) {
    assert_eq!(
        header(answer, "access-control-allow-origin").as_deref(),
        Some(DEV_ORIGIN),
        "answer: {answer}"
    );
}

/// The capability of the JWT an answer carries (signature checked with the key secret).
fn jwt_capability(answer: &Value) -> Value {
    assert_eq!(answer["statusCode"], json!(200), "answer: {answer}");
    assert_eq!(header(answer, "content-type").as_deref(), Some("application/jwt"));
    let (_, claims) = verify_ably_jwt(&body(answer), DEV_KEY_SECRET);
    serde_json::from_str(claims["x-ably-capability"].as_str().expect("capability claim")).expect("capability JSON")
}

#[tokio::test]
async fn unencoded_quotes_in_the_query_are_decoded_as_the_client_meant() {
    let service = service(Route::Jwt);
    let event = with(ANONYMOUS_V2, |e| {
        e["rawQueryString"] = json!(r#"capability={"public:news":["subscribe"]}&rnd=1"#);
    });
    let answer = answer(&service, &event).await;
    assert_eq!(jwt_capability(&answer), json!({"public:news": ["subscribe"]}));
}

#[tokio::test]
async fn a_raw_control_character_reaches_the_capability_check_decoded() {
    let service = service(Route::Jwt);
    let event = with(ANONYMOUS_V2, |e| {
        e["rawQueryString"] = json!("capability={\"public:a\u{7f}\":[\"subscribe\"]}")
    });
    let answer = answer(&service, &event).await;
    assert_eq!(answer["statusCode"], json!(400));
    let info: Value = serde_json::from_str(&body(&answer)).expect("ErrorInfo");
    let message = info["error"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("invalid parameter `capability`") && message.contains("control characters"),
        "{message}"
    );
}

#[tokio::test]
async fn every_character_a_uri_cannot_carry_is_decoded_not_fatal() {
    let service = service(Route::Jwt);
    for (raw, channel) in [
        ("public:a b", "public:a b"),
        ("public:<x>", "public:<x>"),
        ("public:a\\b^c`d|e", "public:a\\b^c`d|e"),
        ("public:{x}", "public:{x}"),
        ("public:[x]", "public:[x]"),
    ] {
        // JSON-escape the channel inside the capability, then send it raw (no percent-encoding).
        let capability = json!({ raw: ["subscribe"] }).to_string();
        let event = with(ANONYMOUS_V2, |e| {
            e["rawQueryString"] = json!(format!("capability={capability}"))
        });
        let answer = answer(&service, &event).await;
        assert_eq!(
            jwt_capability(&answer),
            json!({ channel: ["subscribe"] }),
            "channel {raw:?}"
        );
    }
}

#[tokio::test]
async fn a_hash_in_the_raw_query_does_not_cut_the_parameters() {
    let service = service(Route::Jwt);
    let event = with(ANONYMOUS_V2, |e| {
        e["rawQueryString"] = json!(r#"rnd=1#x&capability={"public:n":["subscribe"]}"#);
    });
    assert_eq!(
        jwt_capability(&answer(&service, &event).await),
        json!({"public:n": ["subscribe"]})
    );
}

#[tokio::test]
async fn a_query_over_the_limit_gets_400_naming_post() {
    let service = service(Route::Jwt);
    let event = with(VALID_V2, |e| {
        e["rawQueryString"] = json!(format!("rnd={}", "a".repeat(70 * 1024)))
    });
    let answer = answer(&service, &event).await;
    let message = assert_refused(&answer);
    assert!(
        message.contains("16384-byte limit") && message.contains("POST"),
        "{message}"
    );
    assert_cors(&answer);
}

#[tokio::test]
async fn a_rest_query_over_the_limit_gets_400_in_the_rest_shape() {
    let service = service(Route::Jwt);
    let event = with(VALID_V1, |e| {
        e["queryStringParameters"] = json!({"capability": "x".repeat(20 * 1024)});
        e["multiValueQueryStringParameters"] = json!({"capability": ["x".repeat(20 * 1024)]});
    });
    let answer = answer(&service, &event).await;
    assert_refused(&answer);
    assert!(!is_http_api_shape(&answer), "a REST answer: {answer}");
    assert_eq!(header(&answer, "cache-control").as_deref(), Some("no-store"));
    assert!(answer["multiValueHeaders"]["cache-control"].is_array(), "{answer}");
}

#[tokio::test]
async fn a_host_header_that_is_not_a_host_gets_400() {
    let service = service(Route::Jwt);
    for host in ["exa mple.com", "example.com:99999", "[::1", "a:b:c"] {
        let event = with(VALID_V2, |e| e["headers"]["host"] = json!(host));
        let message = assert_refused(&answer(&service, &event).await);
        assert!(message.contains("Host header"), "{host}: {message}");
    }
}

#[tokio::test]
async fn a_forwarded_proto_that_is_not_a_scheme_gets_400() {
    let service = service(Route::Jwt);
    let event = with(VALID_V2, |e| e["headers"]["x-forwarded-proto"] = json!("ht tp"));
    let message = assert_refused(&answer(&service, &event).await);
    assert!(message.contains("X-Forwarded-Proto"), "{message}");
}

#[tokio::test]
async fn a_path_that_is_not_a_url_path_gets_400() {
    let service = service(Route::Jwt);
    let event = with(VALID_V2, |e| {
        e["headers"].as_object_mut().expect("headers").remove("host");
        e["requestContext"]
            .as_object_mut()
            .expect("context")
            .remove("domainName");
        e["rawPath"] = json!(":99999");
    });
    let message = assert_refused(&answer(&service, &event).await);
    assert!(message.contains("path"), "{message}");
}

#[tokio::test]
async fn a_body_marked_base64_that_is_not_gets_400() {
    let service = service(Route::Jwt);
    let event = with(VALID_V2, |e| {
        e["body"] = json!("not base64!");
        e["isBase64Encoded"] = json!(true);
        e["requestContext"]["http"]["method"] = json!("POST");
    });
    let message = assert_refused(&answer(&service, &event).await);
    assert!(message.contains("base64"), "{message}");
}

#[tokio::test]
async fn a_cookie_with_a_control_character_gets_400_not_a_silently_dropped_credential() {
    let service = service(Route::Jwt);
    let event = with(VALID_V2, |e| e["cookies"] = json!(["session=a\u{1}b"]));
    let message = assert_refused(&answer(&service, &event).await);
    assert!(message.contains("cookie"), "{message}");
}

#[tokio::test]
async fn a_header_value_with_a_control_character_gets_400_in_the_http_api_shape() {
    let service = service(Route::Jwt);
    let event = with(VALID_V2, |e| e["headers"]["x-odd"] = json!("a\u{0}b"));
    let answer = answer(&service, &event).await;
    assert_refused(&answer);
    assert_cors(&answer);
    assert!(is_http_api_shape(&answer), "an HTTP API answer: {answer}");
}

#[tokio::test]
async fn an_event_that_is_not_an_http_event_gets_400() {
    let service = service(Route::Jwt);
    for event in [r#"{"Records":[]}"#, "[]", "42", r#""text""#, "null"] {
        assert_refused(&answer(&service, event).await);
    }
}

#[tokio::test]
async fn a_refused_preflight_keeps_its_cors_headers() {
    let service = service(Route::TokenRequest);
    let event = with(VALID_V2, |e| {
        e["requestContext"]["http"]["method"] = json!("OPTIONS");
        e["headers"]["host"] = json!("bad host");
    });
    let answer = answer(&service, &event).await;
    assert_refused(&answer);
    assert_cors(&answer);
}

#[tokio::test]
async fn the_same_service_answers_the_next_event_after_each_bad_one() {
    for route in [Route::Jwt, Route::TokenRequest, Route::Revoke] {
        let service = service(route);
        let valid = with(VALID_V2, |_| {});
        let first = answer(&service, &valid).await;
        assert_ne!(first["statusCode"], json!(400), "{route:?}: {first}");
        for bad in [
            with(VALID_V2, |e| {
                e["rawQueryString"] = json!(format!("x={}", "y".repeat(70_000)))
            }),
            with(VALID_V2, |e| e["headers"]["host"] = json!("a b")),
            r#"{"Records":[]}"#.to_owned(),
        ] {
            assert_refused(&answer(&service, &bad).await);
            let next = answer(&service, &valid).await;
            assert_eq!(next["statusCode"], first["statusCode"], "{route:?}: {next}");
            assert_eq!(header(&next, "content-type"), header(&first, "content-type"));
        }
    }
}

#[tokio::test]
async fn valid_events_answer_exactly_as_the_service_does() {
    let service = service(Route::Jwt);
    for event in [VALID_V2, ANONYMOUS_V2, VALID_V1] {
        let via_entry = answer(&service, event).await;
        let direct = service
            .handle(lambda_http::request::from_str(event).expect("event parses"))
            .await;
        assert_eq!(via_entry["statusCode"], json!(direct.status().as_u16()));
        assert_eq!(
            header(&via_entry, "content-type").as_deref(),
            direct.headers().get("content-type").and_then(|v| v.to_str().ok())
        );
    }
}

#[tokio::test]
async fn shapes_that_panic_while_deserializing_get_400_not_a_lost_container() {
    let service = service(Route::Jwt);
    let names: Vec<String> = (0..25_000).map(|i| format!(r#""h{i}":"v""#)).collect();
    let many_headers = format!(
        r#"{{"httpMethod":"GET","path":"/auth/jwt","requestContext":{{"httpMethod":"GET"}},"headers":{{{}}}}}"#,
        names.join(",")
    );
    for event in [
        many_headers,
        r#"{"httpMethod":"GET","path":"/auth/jwt","multiValueQueryStringParameters":{"a":[]},"requestContext":{"httpMethod":"GET"}}"#.to_owned(),
        r#"{"version":"2.0","rawPath":"/auth/jwt","queryStringParameters":{"a":[]},"requestContext":{"http":{"method":"GET"}}}"#.to_owned(),
    ] {
        assert_refused(&answer(&service, &event).await);
    }
}

#[tokio::test]
async fn an_http_api_event_without_raw_query_string_is_answered() {
    let service = service(Route::Jwt);
    let event = with(ANONYMOUS_V2, |e| {
        e.as_object_mut().expect("event").remove("rawQueryString");
        e["queryStringParameters"] = json!({"capability": "{\"public:x\":[\"subscribe\"]}"});
    });
    // The gateway always sends rawQueryString; without it the query is empty (the parsed
    // map is not a second source of hints): the whole anonymous grant.
    assert_eq!(
        jwt_capability(&answer(&service, &event).await),
        json!({"public:*": ["subscribe"]})
    );
}
