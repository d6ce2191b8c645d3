//! `issue-jwt` over the API Gateway events in `events/` and every error path of the
//! HTTP contract: status, Ably code, ErrorInfo body and headers.

use integration_tests::*;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::{Route, Service};

fn service_with(overrides: &[(&str, Option<&str>)]) -> Service {
    let env = dev_env(overrides);
    Service::from_env_with(Route::Jwt, &move |k: &str| env.get(k).cloned()).expect("dev configuration is valid")
}

fn service() -> Service {
    service_with(&[])
}

fn event(text: &str) -> Request {
    lambda_http::request::from_str(text).expect("event parses")
}

fn body(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8(b.clone()).expect("utf-8 body"),
        Body::Empty => String::new(),
        _ => String::new(),
    }
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn call(service: &Service, request: Request) -> Response<Body> {
    service.handle(request).await
}

/// Assert an ErrorInfo answer and return its message.
fn assert_error(response: &Response<Body>, status: u16, code: u32) -> String {
    assert_eq!(response.status().as_u16(), status, "body: {}", body(response));
    assert_eq!(header(response, "content-type"), Some("application/json"));
    assert_eq!(header(response, "cache-control"), Some("no-store"));
    assert_eq!(header(response, "x-ably-errorcode"), Some(code.to_string().as_str()));
    let v: Value = serde_json::from_str(&body(response)).expect("ErrorInfo JSON");
    assert_eq!(v["error"]["code"], json!(code));
    assert_eq!(v["error"]["statusCode"], json!(status));
    let message = v["error"]["message"].as_str().expect("message is a string").to_owned();
    assert!(!message.is_empty());
    assert!(header(response, "x-ably-errormessage").is_some_and(|m| !m.is_empty()));
    assert!(v.get("response").is_none(), "never a top-level `response` property");
    assert!(!body(response).contains(DEV_KEY_SECRET) && !body(response).contains(DEV_CALLER_SECRET));
    message
}

fn assert_jwt(response: &Response<Body>) -> (Value, Value) {
    assert_eq!(response.status().as_u16(), 200, "body: {}", body(response));
    assert_eq!(header(response, "content-type"), Some("application/jwt"));
    assert_eq!(header(response, "cache-control"), Some("no-store"));
    let token = body(response);
    assert!(
        !token.ends_with('\n') && !token.starts_with('"'),
        "raw token, not JSON, no newline"
    );
    verify_ably_jwt(&token, DEV_KEY_SECRET)
}

fn capability(claims: &Value) -> Value {
    serde_json::from_str(claims["x-ably-capability"].as_str().expect("capability is a string"))
        .expect("capability JSON")
}

#[tokio::test]
async fn rsa8c_jwt_served_as_application_jwt_with_policy_claims() {
    let response = call(
        &service(),
        event(include_str!("../../events/jwt-get-valid-caller.json")),
    )
    .await;
    let (header_json, claims) = assert_jwt(&response);
    assert_eq!(header_json["kid"], DEV_KEY_NAME);
    assert_eq!(header_json["alg"], "HS256");
    assert_eq!(header_json["typ"], "JWT");
    assert_eq!(claims["x-ably-clientId"], "alice");
    assert_eq!(
        claims["x-ably-capability"],
        r#"{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}"#
    );
    assert_eq!(claims["ably.channel.chat:*"], r#"{"name":"Alice"}"#);
    assert_eq!(claims["ably.limits.publish.perAttachment.maxRate.chat:*"], 5);
    assert_eq!(claims["x-ably-revocation-key"], "acme");
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(claims["exp"].as_u64().expect("exp") - iat, 3600);
    assert!(iat.abs_diff(now_seconds()) <= 5, "iat is now, in seconds");
    // CORS for the listed origin.
    assert_eq!(header(&response, "access-control-allow-origin"), Some(DEV_ORIGIN));
    assert_eq!(header(&response, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some("X-Ably-ErrorCode, X-Ably-ErrorMessage")
    );
}

#[tokio::test]
async fn post_form_body_narrows_ttl_and_accepts_same_client_id() {
    let response = call(&service(), event(include_str!("../../events/jwt-post-form.json"))).await;
    let (_, claims) = assert_jwt(&response);
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 600);
    assert_eq!(claims["x-ably-clientId"], "alice");
}

#[tokio::test]
async fn post_json_body_narrows_capability_and_ttl() {
    let response = call(&service(), event(include_str!("../../events/jwt-post-json.json"))).await;
    let (_, claims) = assert_jwt(&response);
    assert_eq!(capability(&claims), json!({"chat:alice":["publish"]}));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 900);
}

#[tokio::test]
async fn moderator_role_widens_capability_and_shortens_ttl() {
    let response = call(&service(), event(include_str!("../../events/jwt-moderator.json"))).await;
    let (_, claims) = assert_jwt(&response);
    assert_eq!(claims["x-ably-clientId"], "mo");
    assert_eq!(
        capability(&claims)["chat:*"],
        json!(["history", "message-delete-any", "presence", "publish", "subscribe"])
    );
    assert_eq!(claims["ably.channel.chat:*"], "moderator");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 900);
}

#[tokio::test]
async fn anonymous_caller_gets_the_anonymous_grant_without_client_id() {
    let response = call(&service(), event(include_str!("../../events/jwt-anonymous.json"))).await;
    let (_, claims) = assert_jwt(&response);
    assert!(claims.get("x-ably-clientId").is_none());
    assert_eq!(capability(&claims), json!({"public:*":["subscribe"]}));
    assert!(claims.get("ably.limits.publish.perAttachment.maxRate.chat:*").is_none());
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 600);
}

#[tokio::test]
async fn expired_session_gets_401() {
    let response = call(&service(), event(include_str!("../../events/jwt-expired-caller.json"))).await;
    let message = assert_error(&response, 401, 40101);
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn bad_signature_gets_401() {
    let response = call(&service(), event(include_str!("../../events/jwt-bad-signature.json"))).await;
    assert_error(&response, 401, 40101);
}

#[tokio::test]
async fn alg_none_caller_token_gets_401() {
    let response = call(&service(), event(include_str!("../../events/jwt-alg-none.json"))).await;
    assert_error(&response, 401, 40101);
}

#[tokio::test]
async fn malformed_ttl_gets_400_naming_ttl() {
    let response = call(&service(), event(include_str!("../../events/jwt-bad-ttl.json"))).await;
    let message = assert_error(&response, 400, 40000);
    assert!(message.contains("`ttl`"), "{message}");
}

#[tokio::test]
async fn malformed_capability_gets_400_naming_capability() {
    let response = call(&service(), event(include_str!("../../events/jwt-bad-capability.json"))).await;
    let message = assert_error(&response, 400, 40000);
    assert!(
        message.contains("`capability`") && message.contains("publsh"),
        "{message}"
    );
}

#[tokio::test]
async fn rsa15_requested_client_id_other_than_issued_gets_403_40102() {
    let response = call(
        &service(),
        event(include_str!("../../events/jwt-client-id-mismatch.json")),
    )
    .await;
    let message = assert_error(&response, 403, 40102);
    assert!(message.contains("mallory") && message.contains("alice"), "{message}");
}

#[tokio::test]
async fn disjoint_capability_gets_403_40160() {
    let response = call(
        &service(),
        event(include_str!("../../events/jwt-capability-denied.json")),
    )
    .await;
    assert_error(&response, 403, 40160);
}

#[tokio::test]
async fn preflight_from_listed_origin_is_answered() {
    let response = call(&service(), event(include_str!("../../events/jwt-preflight.json"))).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(DEV_ORIGIN));
    assert_eq!(header(&response, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&response, "access-control-allow-headers"), Some("authorization"));
    assert!(header(&response, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
}

#[tokio::test]
async fn delete_gets_405() {
    let response = call(
        &service(),
        event(include_str!("../../events/jwt-method-not-allowed.json")),
    )
    .await;
    assert_error(&response, 405, 40500);
}

// ----- requests built in code, for the paths the fixtures do not cover -----------------

fn get(query: &str, headers: &[(&str, &str)]) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method("GET")
        .uri(format!("https://x.example/auth/jwt?{query}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::Empty).expect("request")
}

fn post(content_type: &str, body: &str, headers: &[(&str, &str)]) -> Request {
    let mut builder = lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://x.example/auth/jwt")
        .header("content-type", content_type);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::Text(body.to_owned())).expect("request")
}

fn alice_bearer() -> String {
    let claims = json!({"sub":"alice","name":"Alice","org":"acme","exp": now_seconds() + 600});
    format!("Bearer {}", caller_token(&claims, DEV_CALLER_SECRET))
}

#[tokio::test]
async fn status_matrix_for_every_error_path() {
    let svc = service();
    let bearer = alice_bearer();
    let auth = [("authorization", bearer.as_str())];
    let cases: Vec<(&str, Request, u16, u32)> = vec![
        ("ttl zero", get("ttl=0", &auth), 400, 40000),
        ("ttl negative", get("ttl=-5", &auth), 400, 40000),
        ("ttl fractional", get("ttl=1.5", &auth), 400, 40000),
        ("capability not JSON", get("capability=chat", &auth), 400, 40000),
        ("capability empty object", get("capability=%7B%7D", &auth), 400, 40000),
        (
            "clientId and client_id disagree",
            get("clientId=alice&client_id=bob", &auth),
            400,
            40000,
        ),
        (
            "JSON body not an object",
            post("application/json", "[1]", &auth),
            400,
            40000,
        ),
        ("JSON body malformed", post("application/json", "{", &auth), 400, 40000),
        (
            "JSON ttl of the wrong type",
            post("application/json", r#"{"ttl":true}"#, &auth),
            400,
            40000,
        ),
        ("unsupported content type", post("text/xml", "<a/>", &auth), 415, 41500),
        (
            "body too large",
            post("application/x-www-form-urlencoded", &"a".repeat(70_000), &auth),
            413,
            41300,
        ),
        (
            "basic auth scheme",
            get("", &[("authorization", "Basic YTpi")]),
            401,
            40101,
        ),
        ("empty bearer", get("", &[("authorization", "Bearer ")]), 401, 40101),
        (
            "garbage bearer",
            get("", &[("authorization", "Bearer abc.def")]),
            401,
            40101,
        ),
        (
            "client_id mismatch (python/ruby name)",
            get("client_id=bob", &auth),
            403,
            40102,
        ),
        ("wildcard clientId requested", get("clientId=*", &auth), 403, 40102),
        (
            "capability outside the grant",
            get("capability=%7B%22news%22%3A%5B%22subscribe%22%5D%7D", &auth),
            403,
            40160,
        ),
        (
            "PUT",
            lambda_http::http::Request::builder()
                .method("PUT")
                .uri("https://x.example/auth/jwt")
                .body(Body::Empty)
                .unwrap(),
            405,
            40500,
        ),
    ];
    for (name, request, status, code) in cases {
        let response = svc.handle(request).await;
        assert_eq!(response.status().as_u16(), status, "{name}: {}", body(&response));
        assert_error(&response, status, code);
    }
}

#[tokio::test]
async fn unknown_parameters_are_ignored() {
    let bearer = alice_bearer();
    let response = service()
        .handle(get(
            "rnd=123&timestamp=1&nonce=x&foo=bar",
            &[("authorization", bearer.as_str())],
        ))
        .await;
    assert_jwt(&response);
}

#[tokio::test]
async fn caller_claim_unusable_as_client_id_gets_403() {
    let token = caller_token(&json!({"sub":"*","exp": now_seconds() + 600}), DEV_CALLER_SECRET);
    let response = service()
        .handle(get("", &[("authorization", &format!("Bearer {token}"))]))
        .await;
    let message = assert_error(&response, 403, 40300);
    assert!(message.contains("`sub`"), "{message}");
}

#[tokio::test]
async fn wrong_issuer_and_audience_get_401_when_configured() {
    let svc = service_with(&[
        ("CALLER_ISSUER", Some("https://auth.example")),
        ("CALLER_AUDIENCE", Some("ably-auth,other")),
    ]);
    let exp = now_seconds() + 600;
    let cases = [
        (
            json!({"sub":"a","exp":exp,"iss":"https://auth.example","aud":"other"}),
            200,
        ),
        (
            json!({"sub":"a","exp":exp,"iss":"https://evil.example","aud":"ably-auth"}),
            401,
        ),
        (
            json!({"sub":"a","exp":exp,"iss":"https://auth.example","aud":"someone-else"}),
            401,
        ),
        (json!({"sub":"a","exp":exp,"aud":"ably-auth"}), 401),
        (json!({"sub":"a","exp":exp,"iss":"https://auth.example"}), 401),
    ];
    for (claims, status) in cases {
        let token = caller_token(&claims, DEV_CALLER_SECRET);
        let response = svc
            .handle(get("", &[("authorization", &format!("Bearer {token}"))]))
            .await;
        if status == 200 {
            assert_jwt(&response);
        } else {
            assert_error(&response, 401, 40101);
        }
    }
}

#[tokio::test]
async fn missing_credential_without_anonymous_grant_gets_401() {
    let policy = r#"{"clientId":"{sub}","capability":{"chat:*":["subscribe"]}}"#;
    let svc = service_with(&[("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(policy))]);
    let response = svc.handle(get("", &[])).await;
    assert_error(&response, 401, 40100);
}

#[tokio::test]
async fn no_verification_and_no_anonymous_refuses_every_request_with_500() {
    let policy = r#"{"clientId":"{sub}","capability":{"chat:*":["subscribe"]}}"#;
    let svc = service_with(&[
        ("TOKEN_POLICY_FILE", None),
        ("TOKEN_POLICY", Some(policy)),
        ("CALLER_HS256_SECRET", None),
    ]);
    let bearer = alice_bearer();
    for request in [get("", &[]), get("", &[("authorization", bearer.as_str())])] {
        let message = assert_error(&svc.handle(request).await, 500, 50000);
        assert!(message.contains("CALLER_HS256_SECRET"), "{message}");
    }
}

#[tokio::test]
async fn oversized_jwt_is_refused_with_advice() {
    let mut capability = serde_json::Map::new();
    let mut channel_claims = serde_json::Map::new();
    for i in 0..60 {
        capability.insert(
            format!("room-{i:03}-with-a-long-descriptive-name:*"),
            json!(["subscribe", "publish", "presence"]),
        );
        channel_claims.insert(
            format!("room-{i:03}-with-a-long-descriptive-name:*"),
            json!("{\"name\":\"{name}\"}"),
        );
    }
    let policy = json!({"clientId":"{sub}","capability":capability,"channelClaims":channel_claims}).to_string();
    let svc = service_with(&[("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(&policy))]);
    let bearer = alice_bearer();
    let message = assert_error(
        &svc.handle(get("", &[("authorization", bearer.as_str())])).await,
        500,
        50000,
    );
    assert!(
        message.contains("/auth/token") && message.contains("narrow"),
        "{message}"
    );
}

/// `capability={json}` for a query string.
fn capability_query(json: &Value) -> String {
    let encoded: String = json
        .to_string()
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("capability={encoded}")
}

#[tokio::test]
async fn anonymous_capability_hint_with_an_over_long_resource_name_gets_400_naming_capability() {
    // One 9,000-byte channel name: the JWT would be over 8 KiB. A client's hint is the
    // client's error (400), never a 500 that the SDK retries forever.
    let hint = json!({ format!("public:{}", "a".repeat(9000)): ["subscribe"] });
    let response = service().handle(get(&capability_query(&hint), &[])).await;
    let message = assert_error(&response, 400, 40000);
    assert!(
        message.contains("`capability`") && message.contains("at most 2048 bytes"),
        "{message}"
    );
    assert!(message.len() < 500, "the name is not echoed whole: {message}");
}

#[tokio::test]
async fn capability_hint_that_makes_the_jwt_too_large_gets_400_naming_capability() {
    // Five names of 2,000 bytes, each within the anonymous grant `public:*`: every one is
    // valid, together they make a JWT over 8 KiB. Without the hint the token is small.
    let names: serde_json::Map<String, Value> = (0..5)
        .map(|i| (format!("public:{i}{}", "a".repeat(1990)), json!(["subscribe"])))
        .collect();
    let response = service()
        .handle(get(&capability_query(&Value::Object(names)), &[]))
        .await;
    let message = assert_error(&response, 400, 40000);
    assert!(
        message.contains("`capability`") && message.contains("8192-byte limit"),
        "{message}"
    );
    assert_jwt(&service().handle(get("", &[])).await);
}

#[tokio::test]
async fn client_id_hint_over_2048_bytes_gets_400_naming_client_id() {
    let bearer = alice_bearer();
    let auth = [("authorization", bearer.as_str())];
    for name in ["clientId", "client_id"] {
        let query = format!("{name}={}", "a".repeat(2049));
        let message = assert_error(&service().handle(get(&query, &auth)).await, 400, 40000);
        assert!(
            message.contains("`clientId`") && message.contains("at most 2048"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn jwt_too_large_because_of_the_policy_stays_500_with_or_without_hints() {
    // The operator's policy alone makes the token too large: hints that narrow nothing (or
    // only repeat the clientId) do not shift the blame to the client.
    let rooms: serde_json::Map<String, Value> = (0..60)
        .map(|i| {
            (
                format!("room-{i:03}-with-a-long-descriptive-name:*"),
                json!(["subscribe", "publish", "presence"]),
            )
        })
        .collect();
    let channel_claims: serde_json::Map<String, Value> = rooms.keys().map(|k| (k.clone(), json!("{name}"))).collect();
    let policy = json!({"clientId":"{sub}","capability":rooms,"channelClaims":channel_claims}).to_string();
    let svc = service_with(&[("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(&policy))]);
    let bearer = alice_bearer();
    let auth = [("authorization", bearer.as_str())];
    for query in [
        String::new(),
        capability_query(&json!({"*": ["*"]})),
        "clientId=alice&ttl=600000".to_owned(),
    ] {
        let message = assert_error(&svc.handle(get(&query, &auth)).await, 500, 50000);
        assert!(message.contains("the token would be"), "{query}: {message}");
    }
    // A hint that narrows the grant enough is served.
    let (_, claims) = assert_jwt(
        &svc.handle(get(
            &capability_query(&json!({"room-001-with-a-long-descriptive-name:*": ["subscribe"]})),
            &auth,
        ))
        .await,
    );
    assert_eq!(
        capability(&claims),
        json!({"room-001-with-a-long-descriptive-name:*": ["subscribe"]})
    );
}

#[tokio::test]
async fn cors_headers_on_errors_and_none_for_unlisted_origins() {
    let svc = service();
    let listed = svc.handle(get("ttl=x", &[("origin", DEV_ORIGIN)])).await;
    assert_error(&listed, 400, 40000);
    assert_eq!(header(&listed, "access-control-allow-origin"), Some(DEV_ORIGIN));
    assert_eq!(
        header(&listed, "access-control-expose-headers"),
        Some("X-Ably-ErrorCode, X-Ably-ErrorMessage")
    );

    let unlisted = svc.handle(get("", &[("origin", "https://evil.example")])).await;
    assert_eq!(
        unlisted.status().as_u16(),
        200,
        "CORS is not authentication: the browser withholds the answer"
    );
    assert_eq!(header(&unlisted, "access-control-allow-origin"), None);
    assert_eq!(header(&unlisted, "access-control-allow-credentials"), None);

    let preflight = lambda_http::http::Request::builder()
        .method("OPTIONS")
        .uri("https://x.example/auth/jwt")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .body(Body::Empty)
        .unwrap();
    let response = svc.handle(preflight).await;
    assert_error(&response, 403, 40300);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_variable() {
    type Overrides<'a> = Vec<(&'a str, Option<&'a str>)>;
    let cases: Vec<(Overrides, &str)> = vec![
        (vec![("ABLY_API_KEY", None)], "ABLY_API_KEY"),
        (vec![("ABLY_API_KEY", Some("not-a-key"))], "ABLY_API_KEY"),
        (vec![("TOKEN_POLICY_FILE", None)], "TOKEN_POLICY"),
        (vec![("TOKEN_POLICY", Some("{}"))], "TOKEN_POLICY_FILE"),
        (
            vec![
                ("TOKEN_POLICY_FILE", None),
                ("TOKEN_POLICY", Some(r#"{"capability":{"a":["pub"]}}"#)),
            ],
            "capability[\"a\"]",
        ),
        (
            vec![("TOKEN_POLICY_FILE", Some("/nonexistent/policy.json"))],
            "TOKEN_POLICY_FILE",
        ),
        (vec![("CALLER_HS256_SECRET", Some("short"))], "CALLER_HS256_SECRET"),
        (vec![("CORS_ALLOWED_ORIGINS", Some("*"))], "CORS_ALLOWED_ORIGINS"),
        (vec![("ABLY_KEY_REVOCABLE", Some("yes"))], "ABLY_KEY_REVOCABLE"),
        (
            vec![
                ("ABLY_KEY_REVOCABLE", Some("true")),
                ("TOKEN_POLICY_FILE", None),
                (
                    "TOKEN_POLICY",
                    Some(r#"{"capability":{"a":["subscribe"]},"ttlSeconds":7200}"#),
                ),
            ],
            "ttlSeconds",
        ),
    ];
    for (overrides, needle) in cases {
        let env = dev_env(&overrides);
        let message = match Service::from_env_with(Route::Jwt, &move |k: &str| env.get(k).cloned()) {
            Ok(_) => panic!("{overrides:?} must not start"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains(needle), "{overrides:?}: {message}");
        assert!(!message.contains(DEV_KEY_SECRET), "{message}");
    }
}
