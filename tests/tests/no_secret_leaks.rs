//! No secret ever leaves the function: every route over every event in `events/` and every
//! error path we know of — bad parameters, missing/expired/forged callers, Ably failures
//! (the fake Ably server), Secrets Manager failures (a failing `SecretReader` behind the real
//! cache), misconfiguration refusals, start-up configuration errors — with the Ably key
//! secret and the caller HS256 secret set to marker values. Every log line (the functions'
//! JSON format, at TRACE level, from every thread) and every answer (status, headers, body)
//! is captured, and the test fails if a marker, or a caller's bearer token, appears in them.
//!
//! In a test binary of its own with one test function: the capturing subscriber is the
//! process-wide default, so no other test can race it for tracing's callsite cache.

mod fake_ably;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fake_ably::{FakeAbly, Fault};
use integration_tests::*;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::caller::BoxFuture;
use shared::config::Config;
use shared::key::ApiKey;
use shared::key_source::{KeySource, KeySourceError};
use shared::secret::SecretString;
use shared::secrets::{ReadError, SecretReader, SecretValue};
use shared::service::Deps;
use shared::{Route, Service};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The Ably key secret marker.
const KEY_SECRET: &str = "MARKERkeySECRET0123456789";
/// The caller HS256 secret marker (≥ 32 bytes).
const CALLER_SECRET: &str = "MARKERcallerSECRET-0123456789abcdef-0123456789";
/// A too-short caller secret (refused at start-up, must not be echoed either).
const SHORT_CALLER_SECRET: &str = "MARKERshortCALLER";
const MARKERS: [&str; 3] = [KEY_SECRET, CALLER_SECRET, SHORT_CALLER_SECRET];

fn marker_key() -> String {
    format!("{DEV_KEY_NAME}:{KEY_SECRET}")
}

const ROUTES: [Route; 4] = [Route::Jwt, Route::TokenRequest, Route::AblyToken, Route::Revoke];

const DEV_POLICY: &str = include_str!("../../dev/policy.json");
/// No `anonymous` grant: with no caller verification configured, every request is refused.
const POLICY_WITHOUT_ANONYMOUS: &str =
    r#"{"clientId": "{sub}", "capability": {"chat:{sub}": ["publish", "subscribe"]}}"#;

// ---------------------------------------------------------------------------------------
// Capture

/// Everything the functions said, and what the test sent, for the final checks.
#[derive(Default)]
struct Record {
    /// Every answer as text: status line, headers, body.
    answers: Vec<(String, String)>,
    /// Every start-up error and Debug output checked.
    texts: Vec<(String, String)>,
    /// Every caller token sent (must appear in no log line).
    tokens: Vec<String>,
    /// (route, status, Ably code) → count.
    outcomes: BTreeMap<(String, u16, String), usize>,
    requests: usize,
}

impl Record {
    fn answer(&mut self, what: &str, route: Route, response: &Response<Body>) {
        self.requests += 1;
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-ably-errorcode")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        *self
            .outcomes
            .entry((route.name().to_owned(), status, code))
            .or_default() += 1;
        let mut text = format!("HTTP {status}\n");
        for (name, value) in response.headers() {
            text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
        text.push('\n');
        text.push_str(&body(response));
        self.answers.push((format!("{what} → {}", route.name()), text));
    }

    fn text(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }

    fn token(&mut self, token: &str) {
        if token.len() >= 16 && !self.tokens.iter().any(|t| t == token) {
            self.tokens.push(token.to_owned());
        }
    }

    /// Remember the caller tokens a request carries (bearer header and cookies).
    fn tokens_of(&mut self, request: &Request) {
        for name in ["authorization", "cookie"] {
            for value in request.headers().get_all(name) {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                for part in value.split([' ', ';', '=', ',']) {
                    if part.matches('.').count() == 2 {
                        self.token(part);
                    }
                }
            }
        }
    }
}

fn body(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Caller tokens

fn hs256(secret: &str, input: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, input.as_bytes()).as_ref())
}

/// A JWT with this header and claims, signed HS256 with `secret` whatever the header says.
fn signed(header: &Value, claims: &Value, secret: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = hs256(secret, &input);
    format!("{input}.{sig}")
}

fn marker_token(claims: Value) -> String {
    signed(&json!({"alg": "HS256", "typ": "JWT"}), &claims, CALLER_SECRET)
}

fn in_an_hour() -> u64 {
    now_seconds() + 3600
}

fn alice() -> String {
    marker_token(json!({"sub": "alice", "name": "Alice", "org": "acme", "exp": in_an_hour()}))
}

fn admin() -> String {
    marker_token(json!({"sub": "ops-1", "org": "acme", "roles": ["admin"], "exp": in_an_hour()}))
}

/// `text` with every JWT in it that the dev caller secret signed re-signed with the marker
/// secret (same header, same claims: an expired one stays expired).
fn resign(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let parts: Vec<&str> = word.split('.').collect();
        if parts.len() == 3 && hs256(DEV_CALLER_SECRET, &format!("{}.{}", parts[0], parts[1])) == parts[2] {
            let input = format!("{}.{}", parts[0], parts[1]);
            out.push_str(&format!("{input}.{}", hs256(CALLER_SECRET, &input)));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Services

/// Settings with the marker secrets, the fake Ably, revocable tokens; `overrides` on top.
fn env(fake: &FakeAbly, route: Route, overrides: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let key = marker_key();
    let url = fake.url();
    let policy = if route == Route::Jwt {
        None
    } else {
        Some(TOKEN_ROUTES_POLICY)
    };
    let mut all: Vec<(&str, Option<&str>)> = vec![
        ("ABLY_API_KEY", Some(key.as_str())),
        ("CALLER_HS256_SECRET", Some(CALLER_SECRET)),
        ("ABLY_REST_URL", Some(url.as_str())),
        ("ABLY_KEY_REVOCABLE", Some("true")),
    ];
    if let Some(p) = policy {
        all.push(("TOKEN_POLICY_FILE", None));
        all.push(("TOKEN_POLICY", Some(p)));
    }
    all.extend_from_slice(overrides);
    dev_env(&all)
}

fn lookup(env: HashMap<String, String>) -> impl Fn(&str) -> Option<String> {
    move |k: &str| env.get(k).cloned()
}

fn service(fake: &FakeAbly, route: Route, overrides: &[(&str, Option<&str>)], rec: &mut Record) -> Service {
    try_service(fake, route, overrides, rec).expect("configuration is valid")
}

/// As [`service`]; a start-up refusal (the dev policy's JWT-only fields on the token routes)
/// is recorded and logged as the function's `main` would, and gives `None`.
fn try_service(fake: &FakeAbly, route: Route, overrides: &[(&str, Option<&str>)], rec: &mut Record) -> Option<Service> {
    let env = env(fake, route, overrides);
    let config = Config::from_env(&lookup(env.clone())).expect("configuration is valid");
    rec.text(
        format!("Debug of Config ({overrides:?})"),
        format!("{config:?} {config:#?}"),
    );
    match Service::from_env_with(route, &lookup(env)) {
        Ok(service) => Some(service),
        Err(e) => {
            shared::log::startup_error(&e);
            rec.text(
                format!("start-up error of {route:?} ({overrides:?})"),
                format!("{e} {e:?} {e:#?}"),
            );
            None
        }
    }
}

/// Configurations every event is run under.
/// Environment overrides: variable → value (`None` removes it).
type Overrides = Vec<(&'static str, Option<&'static str>)>;

fn variants() -> Vec<(&'static str, Overrides)> {
    vec![
        ("hs256 bearer", vec![]),
        (
            "authorizer and cookie",
            vec![
                ("CALLER_TRUST_AUTHORIZER", Some("true")),
                ("CALLER_COOKIE", Some("session")),
            ],
        ),
        (
            // The token routes refuse it at start-up (channel claims, rate limits, revocation key).
            "dev policy on every route",
            vec![("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(DEV_POLICY))],
        ),
        (
            "issuer and audience",
            vec![
                ("CALLER_ISSUER", Some("https://idp.example.com/")),
                ("CALLER_AUDIENCE", Some("ably-authurl")),
            ],
        ),
        ("Ably's clock", vec![("ABLY_QUERY_TIME", Some("true"))]),
        ("key not revocable", vec![("ABLY_KEY_REVOCABLE", None)]),
        ("no caller verification", vec![("CALLER_HS256_SECRET", None)]),
        (
            "no caller verification, no anonymous grant",
            vec![
                ("CALLER_HS256_SECRET", None),
                ("TOKEN_POLICY_FILE", None),
                ("TOKEN_POLICY", Some(POLICY_WITHOUT_ANONYMOUS)),
            ],
        ),
    ]
}

async fn run(service: &Service, route: Route, what: &str, request: Request, rec: &mut Record) {
    rec.tokens_of(&request);
    let response = service.handle(request).await;
    rec.answer(what, route, &response);
}

fn get(path: &str, query: &str, headers: &[(&str, &str)]) -> Request {
    let mut b = lambda_http::http::Request::builder().method("GET").uri(format!(
        "https://abc123.execute-api.eu-west-1.amazonaws.com{path}?{query}"
    ));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::Empty).expect("request")
}

fn post(path: &str, content_type: &str, body: &str, headers: &[(&str, &str)]) -> Request {
    let mut b = lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("https://abc123.execute-api.eu-west-1.amazonaws.com{path}"))
        .header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::Text(body.to_owned())).expect("request")
}

/// What a legitimate caller sends to `route`: Alice asking for a token, or an admin revoking
/// Bob's tokens.
fn valid_request(route: Route) -> Request {
    if route == Route::Revoke {
        let auth = format!("Bearer {}", admin());
        post(
            path_of(route),
            "application/json",
            r#"{"clientIds":["bob"]}"#,
            &[("authorization", &auth)],
        )
    } else {
        get(path_of(route), "", &[("authorization", &format!("Bearer {}", alice()))])
    }
}

fn path_of(route: Route) -> &'static str {
    match route {
        Route::Jwt => "/auth/jwt",
        Route::TokenRequest => "/auth/token-request",
        Route::AblyToken => "/auth/token",
        Route::Revoke => "/auth/revoke",
    }
}

/// The handcrafted requests of one route: every parameter, caller and body error we know.
fn handcrafted(route: Route) -> Vec<(String, Request)> {
    let path = path_of(route);
    let bearer = |t: &str| format!("Bearer {t}");
    let alice_bearer = bearer(&alice());
    let admin = bearer(&admin());
    let now = now_seconds();
    let forged = [
        ("garbage bearer", "Bearer not.a.jwt".to_owned()),
        ("empty bearer", "Bearer ".to_owned()),
        (
            "basic scheme",
            format!("Basic {}", URL_SAFE_NO_PAD.encode(marker_key())),
        ),
        ("scheme only", "Bearer".to_owned()),
        (
            "wrong secret",
            bearer(&signed(
                &json!({"alg":"HS256"}),
                &json!({"sub":"alice","exp":now+3600}),
                "a-wrong-secret-0123456789abcdef0123",
            )),
        ),
        (
            "signed with the Ably key secret",
            bearer(&signed(
                &json!({"alg":"HS256"}),
                &json!({"sub":"alice","exp":now+3600}),
                KEY_SECRET,
            )),
        ),
        (
            "alg none",
            format!(
                "Bearer {}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"alice","exp":{}}}"#, now + 3600))
            ),
        ),
        (
            "HS512 header",
            bearer(&signed(
                &json!({"alg":"HS512"}),
                &json!({"sub":"alice","exp":now+3600}),
                CALLER_SECRET,
            )),
        ),
        (
            "RS256 header",
            bearer(&signed(
                &json!({"alg":"RS256","kid":"k1"}),
                &json!({"sub":"alice","exp":now+3600}),
                CALLER_SECRET,
            )),
        ),
        (
            "expired",
            bearer(&marker_token(json!({"sub":"alice","exp":now - 3600}))),
        ),
        (
            "not yet valid",
            bearer(&marker_token(json!({"sub":"alice","exp":now + 7200,"nbf":now + 3600}))),
        ),
        ("no exp", bearer(&marker_token(json!({"sub":"alice"})))),
        (
            "exp as text",
            bearer(&marker_token(json!({"sub":"alice","exp":(now + 3600).to_string()}))),
        ),
        (
            "wildcard sub",
            bearer(&marker_token(json!({"sub":"*","exp":now + 3600}))),
        ),
        (
            "sub with a colon",
            bearer(&marker_token(json!({"sub":"x:*","exp":now + 3600}))),
        ),
        (
            "claims injection",
            bearer(&marker_token(
                json!({"sub":"alice","name":"x\",\"role\":\"admin","exp":now + 3600}),
            )),
        ),
        (
            "no sub",
            bearer(&marker_token(json!({"name":"nobody","exp":now + 3600}))),
        ),
    ];
    let mut requests: Vec<(String, Request)> = Vec::new();
    for (what, authorization) in &forged {
        let r = if route == Route::Revoke {
            post(
                path,
                "application/json",
                r#"{"clientIds":["bob"]}"#,
                &[("authorization", authorization)],
            )
        } else {
            get(path, "rnd=1", &[("authorization", authorization)])
        };
        requests.push(((*what).to_owned(), r));
    }
    // A header that is not ASCII.
    let mut r = get(path, "", &[]);
    r.headers_mut().insert(
        "authorization",
        lambda_http::http::HeaderValue::from_bytes(b"Bearer \xffMARKER").expect("opaque header"),
    );
    requests.push(("non-ASCII authorization".into(), r));
    // The token in a cookie.
    requests.push((
        "cookie".into(),
        get(path, "", &[("cookie", &format!("a=b; session={}", alice()))]),
    ));

    let big = "x".repeat(70 * 1024);
    if route == Route::Revoke {
        for (what, ct, body) in [
            (
                "revoke clientIds",
                "application/json",
                r#"{"clientIds":["alice","bob"],"revocationKeys":["acme"]}"#.to_owned(),
            ),
            (
                "revoke channels",
                "application/json",
                r#"{"channels":["chat:lobby"],"allowReauthMargin":true}"#.to_owned(),
            ),
            (
                "revoke issuedBefore in the future",
                "application/json",
                format!(r#"{{"clientIds":["bob"],"issuedBefore":{}}}"#, (now + 7200) * 1000),
            ),
            (
                "revoke unknown field",
                "application/json",
                r#"{"clientIds":["bob"],"secret":"MARKERkeySECRET0123456789"}"#.to_owned(),
            ),
            ("revoke not JSON", "application/json", "{\"clientIds\": [".to_owned()),
            ("revoke empty", "application/json", String::new()),
            (
                "revoke too many targets",
                "application/json",
                json!({"clientIds": (0..1001).map(|i| format!("u{i}")).collect::<Vec<_>>()}).to_string(),
            ),
            (
                "revoke form body",
                "application/x-www-form-urlencoded",
                "clientIds=bob".to_owned(),
            ),
            ("revoke too large", "application/json", big.clone()),
        ] {
            requests.push((what.into(), post(path, ct, &body, &[("authorization", &admin)])));
        }
        requests.push((
            "revoke by a plain user".into(),
            post(
                path,
                "application/json",
                r#"{"clientIds":["bob"]}"#,
                &[("authorization", &alice_bearer)],
            ),
        ));
        requests.push((
            "revoke anonymous".into(),
            post(path, "application/json", r#"{"clientIds":["bob"]}"#, &[]),
        ));
        requests.push(("revoke GET".into(), get(path, "", &[("authorization", &admin)])));
        return requests;
    }
    for (what, query) in [
        ("valid", "rnd=1"),
        ("ttl", "ttl=600000"),
        ("bad ttl", "ttl=abc"),
        ("zero ttl", "ttl=0"),
        ("huge ttl", "ttl=99999999999999999999"),
        ("bad capability", "capability=not-json"),
        ("empty capability", "capability=%7B%7D"),
        (
            "disjoint capability",
            "capability=%7B%22news%22%3A%5B%22subscribe%22%5D%7D",
        ),
        ("wildcard capability", "capability=%7B%22*%22%3A%5B%22*%22%5D%7D"),
        ("clientId mismatch", "clientId=bob"),
        ("clientId wildcard", "clientId=*"),
        ("clientId control", "clientId=a%01b"),
        ("clientId disagreement", "clientId=alice&client_id=bob"),
    ] {
        requests.push((what.into(), get(path, query, &[("authorization", &alice_bearer)])));
    }
    for (what, ct, body) in [
        (
            "form",
            "application/x-www-form-urlencoded",
            "ttl=600000&clientId=alice".to_owned(),
        ),
        (
            "json",
            "application/json",
            r#"{"capability":{"chat:alice":["publish"]},"ttl":600000}"#.to_owned(),
        ),
        ("json not an object", "application/json", "[1]".to_owned()),
        ("json broken", "application/json", "{\"ttl\":".to_owned()),
        ("json wrong type", "application/json", r#"{"ttl":true}"#.to_owned()),
        ("xml", "text/xml", "<ttl>1</ttl>".to_owned()),
        ("too large", "application/json", big),
    ] {
        requests.push((what.into(), post(path, ct, &body, &[("authorization", &alice_bearer)])));
    }
    requests.push(("anonymous".into(), get(path, "", &[])));
    requests.push((
        "moderator".into(),
        get(
            path,
            "",
            &[(
                "authorization",
                &bearer(&marker_token(
                    json!({"sub":"mo","roles":["moderator"],"exp":now + 3600}),
                )),
            )],
        ),
    ));
    let mut put = get(path, "", &[("authorization", &alice_bearer)]);
    *put.method_mut() = lambda_http::http::Method::PUT;
    requests.push(("PUT".into(), put));
    for origin in [DEV_ORIGIN, "https://evil.example"] {
        let mut preflight = get(
            path,
            "",
            &[("origin", origin), ("access-control-request-headers", "authorization")],
        );
        *preflight.method_mut() = lambda_http::http::Method::OPTIONS;
        requests.push((format!("preflight from {origin}"), preflight));
    }
    requests
}

// ---------------------------------------------------------------------------------------
// Failing dependencies

/// A key source that always fails the given way.
struct FailingKeys(KeySourceError);

impl KeySource for FailingKeys {
    fn current(&self) -> BoxFuture<'_, Result<Arc<ApiKey>, KeySourceError>> {
        Box::pin(std::future::ready(Err(self.0.clone())))
    }
}

/// An in-memory Secrets Manager: secret id → answer.
struct FakeSecrets(HashMap<String, Result<String, ReadError>>);

impl SecretReader for FakeSecrets {
    fn read<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretValue, ReadError>> {
        let answer = match self.0.get(secret_id) {
            Some(Ok(s)) => Ok(SecretValue {
                string: SecretString::new(s.as_str()),
                version: Some("v1".into()),
            }),
            Some(Err(e)) => Err(e.clone()),
            None => Err(ReadError::NotFound),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// What the fake Secrets Manager holds under `prod/ably` in each scenario.
fn secret_scenarios() -> Vec<(&'static str, Result<String, ReadError>)> {
    let key = marker_key();
    vec![
        ("raw key", Ok(key.clone())),
        ("raw key with a newline", Ok(format!("{key}\n"))),
        ("JSON secret", Ok(json!({"ABLY_API_KEY": key}).to_string())),
        ("JSON without the field", Ok(json!({"OTHER": key}).to_string())),
        (
            "JSON field not a string",
            Ok(json!({"ABLY_API_KEY": [key]}).to_string()),
        ),
        ("broken JSON", Ok(format!("{{\"ABLY_API_KEY\": \"{key}"))),
        ("secret only, no key name", Ok(KEY_SECRET.to_owned())),
        ("key with a space", Ok(format!("{DEV_KEY_NAME}:{KEY_SECRET} x"))),
        ("key without app id", Ok(format!(".devKey:{KEY_SECRET}"))),
        ("unreachable", Err(ReadError::Unavailable("connection refused".into()))),
        ("not found", Err(ReadError::NotFound)),
        (
            "access denied",
            Err(ReadError::AccessDenied("AccessDeniedException".into())),
        ),
        ("binary", Err(ReadError::NotText)),
        ("refused", Err(ReadError::Refused("InvalidRequestException".into()))),
    ]
}

/// Start-up configurations that must be refused without echoing a secret.
/// Overrides with computed values.
type OwnedOverrides = Vec<(&'static str, Option<String>)>;

fn bad_configurations() -> Vec<(&'static str, OwnedOverrides)> {
    let key = marker_key();
    vec![
        ("key without colon", vec![("ABLY_API_KEY", Some(KEY_SECRET.to_owned()))]),
        (
            "key without dot",
            vec![("ABLY_API_KEY", Some(format!("devAppdevKey:{KEY_SECRET}")))],
        ),
        (
            "key with whitespace",
            vec![("ABLY_API_KEY", Some(format!("{key} trailing")))],
        ),
        (
            "key with empty app id",
            vec![("ABLY_API_KEY", Some(format!(".devKey:{KEY_SECRET}")))],
        ),
        (
            "key and secret id",
            vec![("ABLY_API_KEY_SECRET_ID", Some("prod/ably".into()))],
        ),
        (
            "short caller secret",
            vec![("CALLER_HS256_SECRET", Some(SHORT_CALLER_SECRET.to_owned()))],
        ),
        (
            "caller secret and its id",
            vec![("CALLER_HS256_SECRET_ID", Some("prod/caller".into()))],
        ),
        (
            "key in ABLY_REST_URL",
            vec![("ABLY_REST_URL", Some(format!("https://{key}@rest.example")))],
        ),
        (
            "key in TOKEN_POLICY",
            vec![("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(key.clone()))],
        ),
        ("bad flag", vec![("ABLY_KEY_REVOCABLE", Some("yes".into()))]),
        (
            "policy TTL over the revocable maximum",
            vec![
                ("TOKEN_POLICY_FILE", None),
                (
                    "TOKEN_POLICY",
                    Some(r#"{"ttlSeconds":7200,"capability":{"a":["subscribe"]}}"#.into()),
                ),
            ],
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn no_marker_secret_or_caller_token_appears_in_any_log_line_or_answer() {
    let logs = Captured::default();
    let writer = logs.clone();
    let filter = tracing_subscriber::EnvFilter::new("trace");
    tracing::subscriber::set_global_default(shared::log::subscriber(filter, move || writer.clone()))
        .expect("the only subscriber of this test binary");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rec = rt.block_on(exercise());

    let log = logs.text();
    let mut leaks = Vec::new();
    for marker in MARKERS {
        for (n, line) in log.lines().enumerate() {
            if line.contains(marker) {
                leaks.push(format!("log line {n}: {line}"));
            }
        }
        for (what, text) in rec.answers.iter().chain(&rec.texts) {
            if text.contains(marker) {
                leaks.push(format!("{what}: {text}"));
            }
        }
    }
    for token in &rec.tokens {
        for (n, line) in log.lines().enumerate() {
            if line.contains(token.as_str()) {
                leaks.push(format!("caller token in log line {n}: {line}"));
            }
        }
        // The signature alone identifies the token too.
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() >= 16) {
            if log.contains(sig) {
                leaks.push(format!("caller token signature {sig} in the log"));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));

    // Coverage: the paths this test went through.
    let lines = log.lines().count();
    println!(
        "{} requests, {} distinct (route, status, code) outcomes, {} start-up texts, {} caller tokens, {} log lines checked",
        rec.requests,
        rec.outcomes.len(),
        rec.texts.len(),
        rec.tokens.len(),
        lines
    );
    for ((route, status, code), n) in &rec.outcomes {
        println!("  {route:20} {status} {code:6} ×{n}");
    }
    let statuses: Vec<u16> = rec.outcomes.keys().map(|(_, s, _)| *s).collect();
    for expected in [200, 204, 400, 401, 403, 405, 413, 415, 500, 502, 503, 504] {
        assert!(
            statuses.contains(&expected),
            "no request was answered {expected}: the test lost coverage"
        );
    }
    assert!(lines > rec.requests, "every request logs at least one line");
}

async fn exercise() -> Record {
    let mut rec = Record::default();
    let fake = FakeAbly::start(&[&marker_key()]).await;
    fake.enable_channel_revocation(false);

    // 1. Every event, every route, every configuration.
    let mut events: Vec<(String, String)> = std::fs::read_dir(root().join("events"))
        .expect("events/")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).expect("event");
            (name, resign(&text))
        })
        .collect();
    events.sort();
    assert!(events.len() >= 30, "events/ has {} events", events.len());
    for (variant, overrides) in variants() {
        for route in ROUTES {
            let Some(service) = try_service(&fake, route, &overrides, &mut rec) else {
                assert!(
                    variant == "dev policy on every route" && matches!(route, Route::TokenRequest | Route::AblyToken),
                    "{variant}: {route:?} must start"
                );
                continue;
            };
            for (name, text) in &events {
                let request = lambda_http::request::from_str(text).expect("event parses");
                run(&service, route, &format!("{name} ({variant})"), request, &mut rec).await;
            }
            for (what, request) in handcrafted(route) {
                run(&service, route, &format!("{what} ({variant})"), request, &mut rec).await;
            }
        }
    }

    // 2. Ably failing in every way, on the routes that call it.
    let faults: Vec<(&str, Fault)> = vec![
        ("Ably 500", Fault::status(500, 50000, "internal error")),
        ("Ably 503", Fault::status(503, 50300, "unavailable")),
        (
            "Ably 429",
            Fault::Status {
                status: 429,
                code: 42910,
                message: "rate limit",
                retry_after: Some(7),
            },
        ),
        ("Ably 40115", Fault::status(403, 40115, "account rate limit")),
        ("Ably 401 40101", Fault::status(401, 40101, "Invalid mac")),
        ("Ably 400 40003", Fault::status(400, 40003, "ttl too long")),
        ("Ably 404 40400", Fault::status(404, 40400, "not found")),
        ("Ably drops the connection", Fault::Drop),
    ];
    for route in [Route::AblyToken, Route::Revoke] {
        let service = service(&fake, route, &[], &mut rec);
        for (what, fault) in &faults {
            fake.fail_always(fault.clone());
            let request = valid_request(route);
            run(&service, route, what, request, &mut rec).await;
            fake.heal();
        }
        // Ably hangs: a client with a short timeout (504).
        let env = env(&fake, route, &[]);
        let config = Config::from_env(&lookup(env)).expect("config");
        let mut deps = Deps::from_config(config, route).expect("deps");
        let client =
            shared::http_client::build_with(Duration::from_millis(300), Duration::from_millis(600)).expect("client");
        deps.ably = Some(Arc::new(shared::ably_rest::HttpAbly::new(client, &fake.url())));
        let hung = Service::new(route, deps);
        fake.fail_always(Fault::Hang);
        let request = valid_request(route);
        run(&hung, route, "Ably hangs", request, &mut rec).await;
        fake.heal();
    }
    // Ably's clock unreachable (ABLY_QUERY_TIME=true), on every route.
    for route in ROUTES {
        let service = service(&fake, route, &[("ABLY_QUERY_TIME", Some("true"))], &mut rec);
        fake.fail_always(Fault::status(503, 50300, "unavailable"));
        let request = valid_request(route);
        run(&service, route, "Ably's /time fails", request, &mut rec).await;
        fake.heal();
    }
    // Ably does not know the key (its own MAC check refuses our TokenRequest).
    let stranger = FakeAbly::start(&["devApp.devKey:another-secret"]).await;
    for route in [Route::AblyToken, Route::Revoke] {
        let service = service(&stranger, route, &[], &mut rec);
        let request = valid_request(route);
        run(&service, route, "Ably refuses the key", request, &mut rec).await;
    }

    // 3. The key source failing (a fake behind the trait), on every route.
    for route in ROUTES {
        for failure in [
            KeySourceError::Unavailable("the Ably API key store (AWS Secrets Manager)".into()),
            KeySourceError::Misconfigured("ABLY_API_KEY_SECRET_ID=\"prod/ably\": the secret is not a key".into()),
        ] {
            let env = env(&fake, route, &[]);
            let config = Config::from_env(&lookup(env)).expect("config");
            let mut deps = Deps::from_config(config, route).expect("deps");
            deps.keys = Arc::new(FailingKeys(failure.clone()));
            let service = Service::new(route, deps);
            let request = valid_request(route);
            run(&service, route, &format!("key source: {failure}"), request, &mut rec).await;
        }
    }

    // 4. Secrets Manager (the real cache, a fake reader) holding or refusing the secrets.
    for (what, answer) in secret_scenarios() {
        for route in ROUTES {
            let caller_secret = if what == "raw key" {
                Ok(CALLER_SECRET.to_owned())
            } else {
                Ok(SHORT_CALLER_SECRET.to_owned())
            };
            let reader = FakeSecrets(HashMap::from([
                ("prod/ably".to_owned(), answer.clone()),
                ("prod/caller".to_owned(), caller_secret),
            ]));
            for caller_from_store in [false, true] {
                let mut overrides: Vec<(&str, Option<&str>)> =
                    vec![("ABLY_API_KEY", None), ("ABLY_API_KEY_SECRET_ID", Some("prod/ably"))];
                if caller_from_store {
                    overrides.push(("CALLER_HS256_SECRET", None));
                    overrides.push(("CALLER_HS256_SECRET_ID", Some("prod/caller")));
                }
                let env = env(&fake, route, &overrides);
                let reader: Arc<dyn SecretReader> = Arc::new(FakeSecrets(reader.0.clone()));
                let service = match Service::init(route, &lookup(env), Some(reader)).await {
                    Ok(s) => s,
                    Err(e) => {
                        shared::log::startup_error(&e);
                        rec.text(format!("start-up with secret {what}"), format!("{e} {e:?}"));
                        continue;
                    }
                };
                let request = valid_request(route);
                let label = format!(
                    "secret {what}{}",
                    if caller_from_store {
                        ", caller secret in store"
                    } else {
                        ""
                    }
                );
                run(&service, route, &label, request, &mut rec).await;
            }
        }
    }

    // 5. Start-up configuration errors: Display and Debug, and the start-up log line.
    for (what, overrides) in bad_configurations() {
        let overrides: Vec<(&str, Option<&str>)> = overrides.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        let env = env(&fake, Route::Jwt, &overrides);
        match Service::from_env_with(Route::Jwt, &lookup(env)) {
            Ok(_) => panic!("configuration {what:?} must be refused"),
            Err(e) => {
                shared::log::startup_error(&e);
                rec.text(format!("start-up error: {what}"), format!("{e} {e:?} {e:#?}"));
            }
        }
    }

    // 6. Debug output of the types that hold secrets.
    let key = ApiKey::parse(&marker_key()).expect("key");
    rec.text("Debug of ApiKey", format!("{key:?} {key:#?}"));
    let secret = SecretString::new(CALLER_SECRET);
    rec.text("SecretString", format!("{secret:?} {secret}"));
    let value = SecretValue {
        string: SecretString::new(marker_key()),
        version: None,
    };
    rec.text("Debug of SecretValue", format!("{value:?}"));

    rec
}
