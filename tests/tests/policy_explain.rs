//! `ably-auth policy explain` tells the truth: for a corpus of policies × callers × SDK
//! parameters × routes, built with the fuzz generators (`fuzz/src/lib.rs`), what `explain`
//! says (status, code, message, and the grant: JWT claims, TokenRequest or TokenDetails
//! fields) equals what `Service::handle` answers and signs for the same caller token and
//! query string. The services are built as in production (HS256 caller tokens verified by
//! the real verifier, the real parameter parser, the policy, the key) with a fixed clock.

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

use ably_auth::{explain, Ask};
use arbitrary::Unstructured;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lambda_http::{Body, Request};
use serde_json::{json, Map, Value};
use shared::caller::{CallerVerifier, Hs256Verifier, VerifierChain};
use shared::clock::FixedClock;
use shared::http::Cors;
use shared::key::ApiKey;
use shared::policy::Policy;
use shared::secret::SecretString;
use shared::service::{Deps, Route, Service};
use std::sync::Arc;

const ROUTES: [Route; 4] = [Route::Jwt, Route::TokenRequest, Route::AblyToken, Route::Revoke];

fn service(policy_text: &str, route: Route, now_ms: u64) -> Service {
    let key = Arc::new(ApiKey::parse(&format!("{}:{}", harness::KEY_NAME, harness::KEY_SECRET)).unwrap());
    let bearer = Hs256Verifier::new(&SecretString::new(harness::CALLER_SECRET), None, &[]).unwrap();
    let chain: Vec<Box<dyn CallerVerifier>> = vec![Box::new(bearer)];
    Service::new(
        route,
        Deps {
            policy: Policy::from_json(policy_text, false).unwrap(),
            callers: VerifierChain::new(chain),
            keys: Arc::new(harness::FakeKeys(key)),
            clock: Arc::new(FixedClock(now_ms)),
            cors: Cors::parse("").unwrap(),
            ably: Some(Arc::new(harness::FakeAbly)),
        },
    )
}

fn request(route: Route, token: Option<&str>, params: &[(String, String)]) -> Request {
    let query = harness::form_encode(params);
    let mut uri = "https://abc123.execute-api.eu-west-1.amazonaws.com/auth/x".to_owned();
    if !query.is_empty() {
        uri = format!("{uri}?{query}");
    }
    let (method, body) = match route {
        Route::Revoke => ("POST", Body::Text(r#"{"clientIds":["someone"]}"#.to_owned())),
        _ => ("GET", Body::Empty),
    };
    let mut b = lambda_http::http::Request::builder().method(method).uri(uri);
    if route == Route::Revoke {
        b = b.header("content-type", "application/json");
    }
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(body).unwrap()
}

fn body_text(r: &lambda_http::Response<Body>) -> String {
    match r.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The TTL range explain gives (ms): (min after the most jitter, max).
fn ttl_range_ms(grant: &Value) -> (u64, u64) {
    let max = grant["ttlMs"].as_u64().unwrap();
    match grant.get("ttlJitter") {
        Some(j) => (j["minMs"].as_u64().unwrap(), max),
        None => (max, max),
    }
}

/// Compare one service answer with explain's; panics with the case on a difference.
fn agree(case: &str, route: Route, response: &lambda_http::Response<Body>, said: &Value, now_ms: u64) {
    let status = response.status().as_u16();
    let body = body_text(response);
    assert_eq!(
        json!(status),
        said["status"],
        "{case}: status; service said {body}; explain said {said}"
    );
    if status != 200 {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], said["code"], "{case}: code");
        assert_eq!(v["error"]["message"], said["message"], "{case}: message");
        assert!(said["grant"].is_null(), "{case}");
        return;
    }
    let grant = &said["grant"];
    let (lo, hi) = ttl_range_ms(grant);
    match route {
        Route::Jwt => {
            let signed = jwt_claims(&body);
            let mut explained = said["jwt"]["claims"].clone();
            let exp = signed["exp"].as_u64().unwrap();
            let iat = signed["iat"].as_u64().unwrap();
            assert_eq!(json!(iat), explained["iat"], "{case}: iat");
            let range = iat + lo / 1000..=iat + hi / 1000;
            assert!(
                range.contains(&exp),
                "{case}: exp {exp} outside explain's range {range:?}"
            );
            if lo == hi {
                assert_eq!(json!(exp), explained["exp"], "{case}: exp");
                assert_eq!(json!(body.len()), said["jwt"]["bytes"], "{case}: JWT bytes");
            }
            explained["exp"] = json!(exp);
            assert_eq!(signed, explained, "{case}: the JWT claims differ");
        }
        Route::TokenRequest | Route::AblyToken => {
            let v: Value = serde_json::from_str(&body).unwrap();
            let tr = &said["tokenRequest"];
            assert_eq!(v["keyName"], json!(harness::KEY_NAME), "{case}");
            assert_eq!(v["capability"], tr["capability"], "{case}: capability");
            assert_eq!(v["clientId"], tr["clientId"], "{case}: clientId");
            let ttl = if route == Route::TokenRequest {
                assert_eq!(v["timestamp"], json!(now_ms), "{case}: timestamp");
                v["ttl"].as_u64().unwrap()
            } else {
                v["expires"].as_u64().unwrap() - v["issued"].as_u64().unwrap()
            };
            assert!((lo..=hi).contains(&ttl), "{case}: ttl {ttl} outside {lo}..={hi}");
        }
        Route::Revoke => assert_eq!(grant["mayRevoke"], json!(true), "{case}"),
    }
}

/// Generated claims without the registered claims the verifier itself checks (and with a
/// string `sub`, which the verifier requires), plus `exp`.
fn caller_claims(u: &mut Unstructured<'_>, now_s: u64) -> Option<Map<String, Value>> {
    let mut claims = harness::claims(u).ok()?;
    for registered in ["exp", "nbf", "iat", "iss", "aud"] {
        claims.remove(registered);
    }
    // The bearer verifier refuses a token whose `sub` is not a string (malformed).
    if claims.get("sub").is_some_and(|s| !s.is_string()) || u.ratio(1, 2).ok()? {
        claims.insert(
            "sub".into(),
            json!(["alice", "bob", "mo", "root"][u.choose_index(4).ok()?]),
        );
    }
    // Often safe values for the claims the generated templates read, so that many grants issue.
    if u.ratio(1, 2).ok()? {
        claims.insert("name".into(), json!("Alice"));
        claims.insert("org".into(), json!("acme"));
        claims.insert("a".into(), json!({"b": "team"}));
        claims.insert("app_metadata".into(), json!({"org": "acme"}));
        claims.insert("cognito:groups".into(), json!("admin"));
    }
    if u.ratio(1, 3).ok()? {
        claims.insert(
            "roles".into(),
            json!(["admin", "moderator", "x"][u.choose_index(3).ok()?]),
        );
    }
    let left = [7200, 7200, 3600, 3600, 600, 120, 75, 59, 20][u.choose_index(9).ok()?];
    claims.insert("exp".into(), json!(now_s + left));
    Some(claims)
}

fn params(u: &mut Unstructured<'_>) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for _ in 0..u.int_in_range(0..=2).ok()? {
        let name = harness::param_name(u).ok()?;
        let value = harness::param_value(u, &name).ok()?;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// The corpus: the repository's policies, then generated ones that start-up accepts.
fn policies() -> Vec<String> {
    let root = integration_tests::root();
    let mut out: Vec<String> = [
        "dev/policy.json",
        "dev/policy-token-routes.json",
        "examples/policies/chat.json",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
    .collect();
    let mut seed = 1u64;
    while out.len() < 160 && seed < 40_000 {
        seed += 1;
        let data = integration_tests::pseudo_random_bytes(seed, 256);
        let Ok(doc) = harness::policy_doc(&mut Unstructured::new(&data)) else {
            continue;
        };
        let text = doc.to_string();
        if Policy::from_json(&text, false).is_ok() {
            out.push(text);
        }
    }
    out
}

#[test]
fn explain_agrees_with_what_the_service_answers_and_signs() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let now_ms = integration_tests::now_seconds() * 1000 + 250;
    let now_s = now_ms / 1000;
    let corpus = policies();
    assert!(corpus.len() >= 150, "only {} valid generated policies", corpus.len());
    let (mut cases, mut issued, mut refused) = (0, 0, 0);
    let mut codes = std::collections::BTreeMap::new();
    for (p, text) in corpus.iter().enumerate() {
        let policy = Policy::from_json(text, false).unwrap();
        let routes: Vec<Route> = ROUTES
            .into_iter()
            .filter(|r| !matches!(r, Route::TokenRequest | Route::AblyToken) || policy.check_token_route().is_ok())
            .collect();
        let services: Vec<(Route, Service)> = routes.iter().map(|r| (*r, service(text, *r, now_ms))).collect();
        let data = integration_tests::pseudo_random_bytes(0xd1ff + p as u64, 2048);
        let mut u = Unstructured::new(&data);
        for c in 0..5 {
            let claims = if c == 4 { None } else { caller_claims(&mut u, now_s) };
            if c < 4 && claims.is_none() {
                continue;
            }
            let token = claims
                .as_ref()
                .map(|m| integration_tests::caller_token(&Value::Object(m.clone()), harness::CALLER_SECRET));
            // Explain is given the claims the verifier reads: the token's payload, parsed.
            let claims: Option<Map<String, Value>> = token.as_deref().map(|t| match jwt_claims(t) {
                Value::Object(m) => m,
                other => panic!("payload {other}"),
            });
            for n in 0..3 {
                // Without parameters, as most SDK calls are; then generated ones.
                let Some(pairs) = (if n == 0 { Some(Vec::new()) } else { params(&mut u) }) else {
                    continue;
                };
                let ask = Ask::new(claims.clone().map(Value::Object), pairs.clone()).unwrap();
                for (route, svc) in &services {
                    let said = explain(&policy, *route, &ask, now_ms, harness::KEY_NAME);
                    let response = rt.block_on(svc.handle(request(*route, token.as_deref(), &pairs)));
                    let case = format!("policy #{p} {text}\n  route {route:?}, claims {claims:?}, params {pairs:?}");
                    agree(&case, *route, &response, &said, now_ms);
                    cases += 1;
                    *codes.entry(said["code"].to_string()).or_insert(0usize) += 1;
                    if response.status() == 200 {
                        issued += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        }
    }
    println!(
        "{} policies, {cases} cases: {issued} issued, {refused} refused; by code {codes:?}",
        corpus.len()
    );
    assert!(
        cases > 5_000 && issued > 800 && refused > 800,
        "{cases} cases, {issued} issued, {refused} refused"
    );
}
