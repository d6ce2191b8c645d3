//! The bodies of the fuzz targets, one public function per target.
//!
//! Each function takes the fuzzer's raw bytes, turns them into structured input with
//! [`arbitrary::Unstructured`] (biased towards the characters and names that matter here:
//! `*`, `:`, `[queue]`, `{sub}`, quotes, control characters, operation names…), runs the
//! project's code on it, and **panics when a property is broken** — that panic is the crash
//! libFuzzer reports. The properties (besides "no panic anywhere"):
//!
//! - `params`: a parse error is a 4xx ErrorInfo; accepted hints are well-formed.
//! - `capability`: canonicalisation is idempotent; an intersection never allows an
//!   (operation, resource) that either side does not allow.
//! - `policy`: a granted clientId never holds `*` and every granted resource, channel claim
//!   and rate limit is one of the policy's templates with safe values substituted; channel
//!   claim values keep the JSON shape of their template; TTLs stay within Ably's bounds.
//! - `caller_token`: a token is accepted only when it is HS256 signed with the secret, not
//!   expired (30 s leeway) and, when configured, from the issuer for the audience.
//! - `request`: a whole request, to all four routes: never a 5xx (no fault is configured),
//!   never the key secret or the caller secret in an answer, every answer `no-store`, every
//!   error an ErrorInfo, every token well-formed and signed.
//!
//! The file is also compiled, on stable and without libFuzzer, into the regression test
//! `tests/tests/fuzz_regressions.rs`, which replays the committed inputs in
//! `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/`. So: no `crate::` paths here.

use arbitrary::{Result as AResult, Unstructured};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use lambda_http::http::header::{HeaderName, HeaderValue};
use lambda_http::http::{Method, Uri};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Map, Value};
use shared::ably_rest::{
    AblyError, AblyRest, BatchResult, RevokeRequest, SignTokenRequest, TargetResult, TokenDetails,
};
use shared::caller::{
    AuthorizerVerifier, BoxFuture, Caller, CallerVerifier, Claims, CookieVerifier, Hs256Verifier, TokenVerifier,
    Verdict, VerifierChain,
};
use shared::capability::{validate_resource, Capability, OPERATIONS};
use shared::clock::SystemClock;
use shared::error::IssueError;
use shared::http::Cors;
use shared::key::ApiKey;
use shared::key_source::{KeySource, KeySourceError};
use shared::policy::Policy;
use shared::secret::SecretString;
use shared::service::{Deps, Route, Service};
use shared::token_request::TokenRequest;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The Ably key the `request` target's services sign with (its secret must never show).
pub const KEY_NAME: &str = "fuzzApp.fuzzKey";
pub const KEY_SECRET: &str = "MARKERkeySECRETfuzz0123456789";
/// The HS256 caller secret (≥ 32 bytes; must never show either).
pub const CALLER_SECRET: &str = "MARKERcallerSECRETfuzz-0123456789abcdef";
pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "fuzz-app";
pub const COOKIE: &str = "session";
pub const ORIGIN: &str = "http://localhost:8080";
/// `jsonwebtoken`'s leeway in this project (see `shared::caller`), plus slack for the
/// seconds that pass between building a token and verifying it.
const LEEWAY_S: i64 = 30;
const SLACK_S: i64 = 5;

const DEV_POLICY: &str = include_str!("../../dev/policy.json");
/// The dev policy without channel claims, rate limits and revocation key (TokenRequests and Ably Tokens
/// cannot carry them): the policy of the other three routes.
const TOKEN_POLICY: &str = include_str!("../../dev/policy-token-routes.json");

// =======================================================================================
// Biased text

/// Fragments that steer generated text towards the interesting cases.
const PIECES: &[&str] = &[
    "*",
    ":",
    "[",
    "]",
    ",",
    "{",
    "}",
    "\"",
    "\\",
    "\n",
    "\u{0}",
    "\u{7f}",
    " ",
    "é",
    "\u{2028}",
    "%",
    "%2",
    "%zz",
    "%2A",
    "%3A",
    "+",
    "=",
    "&",
    ";",
    "[queue]",
    "[meta]",
    "[*]",
    "[other]",
    "chat",
    "chat:*",
    "chat:alice",
    "alice",
    "public",
    "{sub}",
    "{name}",
    "{org}",
    "{roles}",
    "{a.b}",
    "{app_metadata.org}",
    "{",
    "x\",\"role\":\"admin",
    "publish",
    "subscribe",
    "presence",
    "history",
    "admin",
    "moderator",
    "null",
    "true",
    "1",
    "0",
    "-1",
    "1e999",
    "3600000",
    "18446744073709551616",
    "::",
    "*:*",
    ":*",
    "a::b",
];

fn piece(u: &mut Unstructured<'_>) -> AResult<String> {
    let i = u.choose_index(PIECES.len() + 2)?;
    Ok(match PIECES.get(i) {
        Some(p) => (*p).to_owned(),
        None if i == PIECES.len() => {
            let n = u.int_in_range(0..=8)?;
            (0..n)
                .map(|_| u.int_in_range(b'a'..=b'z').map(char::from))
                .collect::<AResult<String>>()?
        }
        None => u.arbitrary::<String>()?,
    })
}

/// Text of 0..=`max` pieces.
fn text(u: &mut Unstructured<'_>, max: usize) -> AResult<String> {
    let n = u.int_in_range(0..=max)?;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(&piece(u)?);
    }
    Ok(s)
}

fn pick<'a, T: ?Sized>(u: &mut Unstructured<'_>, items: &[&'a T]) -> AResult<&'a T> {
    Ok(items[u.choose_index(items.len())?])
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// An operation list as JSON text: names, `*`, junk, or not a list at all.
fn ops_json(u: &mut Unstructured<'_>) -> AResult<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => "[]".to_owned(),
        1 => "\"subscribe\"".to_owned(),
        2 => "null".to_owned(),
        3 => "[\"*\"]".to_owned(),
        4 => "[1]".to_owned(),
        _ => {
            let n = u.int_in_range(1..=4)?;
            let mut names = Vec::new();
            for _ in 0..n {
                names.push(match u.int_in_range(0..=5)? {
                    0 => "*".to_owned(),
                    1 => text(u, 2)?,
                    _ => OPERATIONS[u.choose_index(OPERATIONS.len())?].to_owned(),
                });
            }
            format!(
                "[{}]",
                names.iter().map(|n| json_string(n)).collect::<Vec<_>>().join(",")
            )
        }
    })
}

/// A resource name or pattern.
fn resource(u: &mut Unstructured<'_>) -> AResult<String> {
    if u.ratio(1, 6)? {
        return text(u, 4);
    }
    let mut r = pick(u, &["", "", "", "[queue]", "[meta]", "[*]"])?.to_owned();
    let segments = u.int_in_range(1..=4)?;
    for i in 0..segments {
        if i > 0 {
            r.push(':');
        }
        r.push_str(match u.int_in_range(0..=7)? {
            0 | 1 => "*",
            2 => "",
            3 => "a",
            4 => "b",
            5 => "chat",
            6 => "x*",
            _ => "alice",
        });
    }
    Ok(r)
}

/// Capability JSON text, written by hand so that duplicates and junk stay possible.
fn capability_text(u: &mut Unstructured<'_>) -> AResult<String> {
    match u.int_in_range(0..=11)? {
        0 => return text(u, 6),
        1 => {
            return Ok(pick(
                u,
                &["{}", "[]", "null", "\"*\"", "{\"*\":[\"*\"]}", "{\"[*]*\":[\"*\"]}"],
            )?
            .to_owned())
        }
        _ => {}
    }
    let n = u.int_in_range(1..=5)?;
    let mut entries = Vec::new();
    for _ in 0..n {
        entries.push(format!("{}:{}", json_string(&resource(u)?), ops_json(u)?));
    }
    Ok(format!("{{{}}}", entries.join(",")))
}

// =======================================================================================
// Checks shared by the targets

/// An error answer: the right status, ErrorInfo JSON, the code in a header, no-store.
fn check_error_answer(e: &IssueError) {
    let response = shared::http::error_response(e);
    assert_eq!(response.status().as_u16(), e.status());
    check_error_response(&response);
}

fn body_text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

fn header<'r>(response: &'r Response<Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn check_error_response(response: &Response<Body>) {
    let status = response.status().as_u16();
    let body = body_text(response);
    assert_eq!(header(response, "content-type"), Some("application/json"), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("ErrorInfo is not JSON ({e}): {body}"));
    assert_eq!(v["error"]["statusCode"], json!(status), "{body}");
    let code = v["error"]["code"].as_u64().unwrap_or_else(|| panic!("no code: {body}"));
    assert_eq!(header(response, "x-ably-errorcode"), Some(code.to_string().as_str()));
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

fn check_no_secrets(what: &str, text: &str) {
    assert!(!text.contains(KEY_SECRET), "the key secret leaked into {what}: {text}");
    assert!(
        !text.contains(CALLER_SECRET),
        "the caller secret leaked into {what}: {text}"
    );
}

/// Concrete names to probe capabilities with: each resource with its wildcards filled in
/// several ways, in each namespace, plus `extra`.
fn probe_names<'a>(resources: impl Iterator<Item = &'a str>, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = extra.to_vec();
    for r in resources {
        names.push(r.to_owned());
        let (prefixes, rest): (&[&str], &str) = if let Some(rest) = r.strip_prefix("[*]") {
            (&["", "[queue]", "[meta]"], rest)
        } else if let Some(rest) = r.strip_prefix("[queue]") {
            (&["[queue]", ""], rest)
        } else if let Some(rest) = r.strip_prefix("[meta]") {
            (&["[meta]", ""], rest)
        } else {
            (&["", "[queue]"], r)
        };
        let segs: Vec<&str> = rest.split(':').collect();
        for fill in ["x", "*", "", "chat"] {
            for tail in ["", ":y", ":y:z", "::", ":"] {
                let filled: Vec<&str> = segs.iter().map(|s| if *s == "*" { fill } else { s }).collect();
                let body = format!("{}{tail}", filled.join(":"));
                for p in prefixes {
                    names.push(format!("{p}{body}"));
                }
            }
        }
        // One segment fewer and one more.
        if segs.len() > 1 {
            names.push(segs[..segs.len() - 1].join(":"));
        }
    }
    names.sort();
    names.dedup();
    names.truncate(400);
    names
}

fn all_ops() -> impl Iterator<Item = &'static str> {
    OPERATIONS.iter().copied().chain(std::iter::once("*"))
}

/// `narrow` allows nothing that `wide` does not, on any probe name.
fn check_subset(narrow: &Capability, wide: &Capability, names: &[String], what: &str) {
    for name in names {
        for op in all_ops() {
            if narrow.allows(name, op) {
                assert!(
                    wide.allows(name, op),
                    "{what}: {op:?} on {name:?} is allowed by {narrow} but not by {wide}"
                );
            }
        }
    }
}

// =======================================================================================
// Target `params`

/// Percent-encode what a URI's query cannot hold raw (keeps `%`, so bad escapes stay).
fn uri_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn form_encode(pairs: &[(String, String)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b' ' => out.push('+'),
                b if b.is_ascii_alphanumeric() || b"-._*".contains(&b) => out.push(char::from(b)),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn param_name(u: &mut Unstructured<'_>) -> AResult<String> {
    Ok(match u.int_in_range(0..=8)? {
        0 => "clientId".to_owned(),
        1 => "client_id".to_owned(),
        2 | 3 => "capability".to_owned(),
        4 => "ttl".to_owned(),
        5 => "rnd".to_owned(),
        // The revoke route's fields.
        6 => pick(
            u,
            &[
                "clientIds",
                "revocationKeys",
                "channels",
                "issuedBefore",
                "allowReauthMargin",
            ],
        )?
        .to_owned(),
        _ => text(u, 2)?,
    })
}

pub fn param_value(u: &mut Unstructured<'_>, name: &str) -> AResult<String> {
    Ok(match (name, u.int_in_range(0..=3)?) {
        ("capability", 0..=2) => capability_text(u)?,
        ("ttl", 0) => u.arbitrary::<u64>()?.to_string(),
        ("ttl", 1) => pick(
            u,
            &[
                "3600000",
                "0",
                "1",
                "315360000001",
                "999999999999999",
                "1e3",
                "-5",
                " 60000",
            ],
        )?
        .to_owned(),
        ("clientId" | "client_id", 0) => pick(u, &["alice", "*", "bob", "ali\nce", ""])?.to_owned(),
        _ => text(u, 4)?,
    })
}

/// A JSON body value for `name`: mostly the right type, sometimes not.
fn json_param(u: &mut Unstructured<'_>, name: &str) -> AResult<Value> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<i64>()?),
        2 => json!(u.arbitrary::<f64>()?),
        3 => json!([text(u, 2)?]),
        4 if name == "capability" => serde_json::from_str(&capability_text(u)?).unwrap_or(Value::Null),
        5 => json!(u.arbitrary::<bool>()?),
        _ => Value::String(param_value(u, name)?),
    })
}

/// A `revoke-tokens` body: target lists, `issuedBefore`, `allowReauthMargin`, sometimes junk.
fn revoke_body(u: &mut Unstructured<'_>) -> AResult<Value> {
    let mut map = Map::new();
    for field in ["clientIds", "revocationKeys", "channels"] {
        if u.ratio(1, 2)? {
            let value = match u.int_in_range(0..=5)? {
                0 => json!(text(u, 2)?),
                1 => json!([]),
                2 => json!([1, null]),
                _ => {
                    let n = u.int_in_range(1..=3)?;
                    let mut items = Vec::new();
                    for _ in 0..n {
                        items.push(json!(if u.ratio(1, 2)? {
                            pick(u, &["alice", "bob", "acme", "chat:lobby"])?.to_owned()
                        } else {
                            text(u, 2)?
                        }));
                    }
                    Value::Array(items)
                }
            };
            map.insert(field.into(), value);
        }
    }
    if u.ratio(1, 3)? {
        let now_ms = now_s() * 1000;
        let v = match u.int_in_range(0..=4)? {
            0 => json!(now_ms - 60_000),
            1 => json!(now_ms + 3_600_000),
            2 => json!(now_ms - 7_200_000),
            3 => json!(u.arbitrary::<i64>()?),
            _ => json!(text(u, 1)?),
        };
        map.insert("issuedBefore".into(), v);
    }
    if u.ratio(1, 3)? {
        map.insert(
            "allowReauthMargin".into(),
            if u.ratio(3, 4)? {
                json!(u.arbitrary::<bool>()?)
            } else {
                json!("yes")
            },
        );
    }
    if u.ratio(1, 10)? {
        map.insert(text(u, 1)?, json!(1));
    }
    Ok(Value::Object(map))
}

/// The body and its Content-Type.
fn params_body(u: &mut Unstructured<'_>) -> AResult<(Option<String>, Body)> {
    let content_type = match u.int_in_range(0..=9)? {
        0 => None,
        1 => Some(text(u, 3)?),
        2 => Some("text/plain".to_owned()),
        3 => Some("APPLICATION/JSON; charset=utf-8".to_owned()),
        4 | 5 => Some("application/x-www-form-urlencoded".to_owned()),
        _ => Some("application/json".to_owned()),
    };
    let body = match u.int_in_range(0..=8)? {
        7 | 8 => Body::Text(revoke_body(u)?.to_string()),
        0 => Body::Empty,
        1 => Body::Binary(u.arbitrary::<Vec<u8>>()?),
        2 => Body::Text(text(u, 6)?),
        3 | 4 => {
            let n = u.int_in_range(0..=4)?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let name = param_name(u)?;
                let value = param_value(u, &name)?;
                pairs.push((name, value));
            }
            Body::Text(form_encode(&pairs))
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            for _ in 0..n {
                let name = param_name(u)?;
                let value = json_param(u, &name)?;
                map.insert(name, value);
            }
            let v = if u.ratio(1, 10)? {
                json!([Value::Object(map)])
            } else {
                Value::Object(map)
            };
            Body::Text(v.to_string())
        }
    };
    Ok((content_type, body))
}

/// A GET/POST-ish request carrying token parameters in its query and/or body.
fn params_request(u: &mut Unstructured<'_>, path: &str) -> AResult<Request> {
    let method = pick(
        u,
        &[
            "GET", "GET", "GET", "POST", "POST", "POST", "POST", "POST", "PUT", "OPTIONS", "DELETE", "get",
        ],
    )?;
    let n = u.int_in_range(0..=4)?;
    let mut pairs = Vec::new();
    for _ in 0..n {
        let name = param_name(u)?;
        let value = param_value(u, &name)?;
        pairs.push((name, value));
    }
    let query_mode = u.int_in_range(0..=3)?;
    let query = match query_mode {
        0 => form_encode(&pairs),
        1 => uri_query(&text(u, 6)?),
        _ => String::new(),
    };
    let uri = if query.is_empty() {
        format!("https://abc123.execute-api.eu-west-1.amazonaws.com{path}")
    } else {
        format!("https://abc123.execute-api.eu-west-1.amazonaws.com{path}?{query}")
    };
    let uri: Uri = uri
        .parse()
        .unwrap_or_else(|_| Uri::from_static("https://abc123.example/"));
    let (content_type, body) = params_body(u)?;
    let mut builder = lambda_http::http::Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET))
        .uri(uri);
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        builder = builder.header("content-type", ct);
    }
    let mut request = builder.body(body).unwrap_or_default();
    if query_mode == 2 {
        // The query as API Gateway's pre-parsed map (no query in the URI).
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            map.entry(k).or_default().push(v);
        }
        request = request.with_query_string_parameters(map);
    }
    Ok(request)
}

/// Target `params`: `shared::params::parse` over arbitrary queries, bodies, content types.
pub fn params(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(request) = params_request(&mut u, "/auth/jwt") else {
        return;
    };
    match shared::params::parse(&request) {
        Ok(hints) => {
            if let Some(c) = &hints.client_id {
                assert!(!c.is_empty() && !c.chars().any(char::is_control), "clientId hint {c:?}");
            }
            if let Some(cap) = &hints.capability {
                assert!(!cap.is_empty(), "an empty capability hint is refused");
                assert!(
                    cap.len() <= shared::params::MAX_REQUESTED_RESOURCES,
                    "{} resources read",
                    cap.len()
                );
                let canonical = cap.to_canonical_string();
                let again = Capability::parse(&canonical).unwrap_or_else(|e| panic!("{canonical}: {e}"));
                assert_eq!(&again, cap);
            }
            if let Some(ttl) = hints.ttl_ms {
                assert!(ttl > 0 && ttl <= 10 * 365 * 24 * 3600 * 1000, "ttl hint {ttl}");
            }
        }
        Err(e) => {
            assert!(
                (400..500).contains(&e.status()),
                "params error with status {}: {e}",
                e.status()
            );
            check_error_answer(&e);
        }
    }
}

// =======================================================================================
// Target `capability`

/// Target `capability`: parse two arbitrary capabilities, check canonical form and that
/// their intersection (both ways round) never widens either side.
pub fn capability(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(a_text), Ok(b_text)) = (capability_text(&mut u), capability_text(&mut u)) else {
        return;
    };
    let mut extra = Vec::new();
    for _ in 0..u.int_in_range(0..=3).unwrap_or(0) {
        if let Ok(name) = resource(&mut u) {
            extra.push(name);
        }
    }
    let parsed: Vec<Capability> = [&a_text, &b_text]
        .into_iter()
        .filter_map(|t| match Capability::parse(t) {
            Ok(c) => Some(c),
            Err(e) => {
                // Errors display (clipped input) without panicking.
                let _ = e.to_string();
                None
            }
        })
        .collect();
    for c in &parsed {
        let canonical = c.to_canonical_string();
        let again = Capability::parse(&canonical).unwrap_or_else(|e| panic!("canonical {canonical} fails: {e}"));
        assert_eq!(&again, c, "canonical form changes the capability");
        assert_eq!(
            again.to_canonical_string(),
            canonical,
            "canonicalisation is not idempotent"
        );
        for (r, _) in c.iter() {
            assert!(
                validate_resource(r).is_ok(),
                "a parsed capability holds invalid resource {r:?}"
            );
        }
    }
    let [a, b] = parsed.as_slice() else {
        return;
    };
    for (req, alw) in [(a, b), (b, a)] {
        let i = Capability::intersect(req, alw);
        let canonical = i.to_canonical_string();
        let again = Capability::parse(&canonical).unwrap_or_else(|e| panic!("intersection {canonical} invalid: {e}"));
        assert_eq!(again, i);
        let names = probe_names(req.iter().chain(alw.iter()).chain(i.iter()).map(|(r, _)| r), &extra);
        check_subset(&i, alw, &names, "intersection widens the allowed side");
        check_subset(&i, req, &names, "intersection widens the requested side");
    }
}

// =======================================================================================
// Target `policy`

const CLAIM_NAMES: &[&str] = &[
    "sub",
    "name",
    "org",
    "roles",
    "a.b",
    "app_metadata.org",
    "cognito:groups",
];

/// A template: literals and `{claim}` placeholders.
fn template(u: &mut Unstructured<'_>, resource_like: bool) -> AResult<String> {
    let n = u.int_in_range(1..=4)?;
    let mut t = String::new();
    for _ in 0..n {
        match u.int_in_range(0..=5)? {
            0 | 1 => t.push_str(&format!("{{{}}}", pick(u, CLAIM_NAMES)?)),
            2 if resource_like => t.push_str(&resource(u)?),
            2 => t.push_str(&text(u, 2)?),
            3 => t.push_str(pick(u, &["chat:", ":", "*", "user-", "[queue]", "-", "{", "}"])?),
            _ => t.push_str(&piece(u)?),
        }
    }
    Ok(t)
}

fn rules_doc(u: &mut Unstructured<'_>, doc: &mut Map<String, Value>) -> AResult<()> {
    let n = u.int_in_range(0..=3)?;
    if n > 0 || u.ratio(1, 4)? {
        let mut cap = Map::new();
        for _ in 0..n {
            let ops: Value = serde_json::from_str(&ops_json(u)?).unwrap_or(Value::Null);
            cap.insert(template(u, true)?, ops);
        }
        doc.insert("capability".into(), Value::Object(cap));
    }
    if u.ratio(1, 3)? {
        let mut claims = Map::new();
        for _ in 0..u.int_in_range(0..=2)? {
            let value = match u.int_in_range(0..=3)? {
                0 => r#"{"name":"{name}"}"#.to_owned(),
                1 => format!(
                    "{{\"n\":\"{}\",\"o\":[\"{}\"]}}",
                    template(u, false)?,
                    template(u, false)?
                ),
                2 => json!(u.arbitrary::<u8>()?).to_string(),
                _ => template(u, false)?,
            };
            let v = if u.ratio(1, 10)? {
                json!(7)
            } else {
                Value::String(value)
            };
            claims.insert(template(u, true)?, v);
        }
        doc.insert("channelClaims".into(), Value::Object(claims));
    }
    if u.ratio(1, 3)? {
        let mut limits = Map::new();
        for _ in 0..u.int_in_range(0..=2)? {
            let rate = match u.int_in_range(0..=3)? {
                0 => json!(0),
                1 => json!(-1.5),
                2 => json!(u.arbitrary::<f64>()?),
                _ => json!(5),
            };
            limits.insert(template(u, true)?, rate);
        }
        doc.insert("rateLimits".into(), Value::Object(limits));
    }
    Ok(())
}

fn ttl_value(u: &mut Unstructured<'_>) -> AResult<Option<Value>> {
    Ok(match u.int_in_range(0..=7)? {
        0 | 1 => None,
        2 => Some(json!(30)),
        3 => Some(json!(86_401)),
        4 => Some(json!(u.arbitrary::<u64>()?)),
        5 => Some(json!("3600")),
        _ => Some(json!(pick(u, &[&60u64, &900, &3600, &86_400])?)),
    })
}

pub fn policy_doc(u: &mut Unstructured<'_>) -> AResult<Value> {
    let mut doc = Map::new();
    match u.int_in_range(0..=5)? {
        0 => {}
        1 => {
            doc.insert("clientId".into(), json!(template(u, false)?));
        }
        _ => {
            doc.insert(
                "clientId".into(),
                json!(pick(u, &["{sub}", "user-{sub}", "{org}:{sub}", "{sub}*", "fixed"])?),
            );
        }
    }
    if let Some(ttl) = ttl_value(u)? {
        doc.insert("ttlSeconds".into(), ttl);
    }
    rules_doc(u, &mut doc)?;
    if u.ratio(1, 2)? {
        doc.insert("revocationKey".into(), json!(template(u, false)?));
    }
    if u.ratio(1, 2)? {
        let mut grants = Map::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let mut g = Map::new();
            rules_doc(u, &mut g)?;
            if let Some(ttl) = ttl_value(u)? {
                g.insert("ttlSeconds".into(), ttl);
            }
            if u.ratio(1, 3)? {
                g.insert("mayRevoke".into(), json!(true));
            }
            grants.insert(
                pick(u, &["admin", "moderator", "x", "*", ""])?.to_owned(),
                Value::Object(g),
            );
        }
        let claim = pick(u, &["roles", "roles", "cognito:groups", "", "a.b"])?;
        doc.insert("roles".into(), json!({"claim": claim, "grants": grants}));
    }
    if u.ratio(1, 3)? {
        let mut g = Map::new();
        rules_doc(u, &mut g)?;
        if let Some(ttl) = ttl_value(u)? {
            g.insert("ttlSeconds".into(), ttl);
        }
        if u.ratio(1, 8)? {
            g.insert("mayRevoke".into(), json!(true));
        }
        doc.insert("anonymous".into(), Value::Object(g));
    }
    if u.ratio(1, 16)? {
        doc.insert(text(u, 2)?, json!(1));
    }
    // Added last, so that the committed inputs still build the documents they were found with.
    if u.ratio(1, 4)? {
        let mut rooms = Map::new();
        for _ in 0..u.int_in_range(0..=2)? {
            let value = match u.int_in_range(0..=2)? {
                0 => r#"{"name":"{name}"}"#.to_owned(),
                1 => template(u, false)?,
                _ => "agent".to_owned(),
            };
            rooms.insert(template(u, true)?, Value::String(value));
        }
        let target = match u.int_in_range(0..=3)? {
            0 => doc
                .get_mut("roles")
                .and_then(|r| r.get_mut("grants"))
                .and_then(Value::as_object_mut)
                .and_then(|g| g.values_mut().next()),
            1 => doc.get_mut("anonymous"),
            _ => None,
        };
        match target.and_then(Value::as_object_mut) {
            Some(g) => g.insert("roomClaims".into(), Value::Object(rooms)),
            None => doc.insert("roomClaims".into(), Value::Object(rooms)),
        };
    }
    if u.ratio(1, 4)? {
        doc.insert("boundToSession".into(), json!(u.arbitrary::<bool>()?));
    }
    if u.ratio(1, 4)? {
        let pct = match u.int_in_range(0..=3)? {
            0 => json!(21),
            1 => json!(-1),
            _ => json!(u.int_in_range(0..=20)?),
        };
        doc.insert("ttlJitterPercent".into(), pct);
    }
    Ok(Value::Object(doc))
}

fn claim_value(u: &mut Unstructured<'_>) -> AResult<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<i64>()?),
        2 => json!(u.arbitrary::<f64>()?),
        3 => json!(u.arbitrary::<bool>()?),
        4 => json!([pick(u, &["admin", "moderator", "x"])?, text(u, 2)?]),
        5 => json!({"b": text(u, 3)?, "org": text(u, 2)?}),
        6 => json!(pick(
            u,
            &[
                "*",
                "x:*",
                "a]",
                "",
                "x\",\"role\":\"admin",
                "[admin moderator]",
                "admin, moderator",
                "{org}"
            ]
        )?),
        _ => json!(text(u, 4)?),
    })
}

pub fn claims(u: &mut Unstructured<'_>) -> AResult<Map<String, Value>> {
    let mut map = Map::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let name = if u.ratio(1, 8)? {
            text(u, 2)?
        } else {
            pick(u, CLAIM_NAMES)?.to_owned()
        };
        map.insert(name, claim_value(u)?);
    }
    Ok(map)
}

/// A template split into literal text and placeholders (an independent reading of the
/// rule in `shared::policy`: `{` + claim-name characters + `}`).
fn template_parts(t: &str) -> Vec<Option<String>> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/');
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
        if len > 0 && after[len..].starts_with('}') {
            literal.push_str(&rest[..open]);
            parts.push(Some(std::mem::take(&mut literal)));
            parts.push(None);
            rest = &after[len + 1..];
        } else {
            literal.push_str(&rest[..=open]);
            rest = after;
        }
    }
    literal.push_str(rest);
    parts.push(Some(literal));
    parts
}

fn safe_value(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '*' | ':' | '[' | ']' | ',') || c.is_control())
}

/// Does `s` equal template `t` with every placeholder replaced by a safe value?
fn matches_template(t: &str, s: &str) -> bool {
    matches_template_by(t, s, &safe_value)
}

/// Does `s` equal template `t` with every placeholder replaced by a value `ok` accepts?
/// (`ok` must reject a value whenever it rejects a prefix of it: values are grown.)
fn matches_template_by(t: &str, s: &str, ok: &dyn Fn(&str) -> bool) -> bool {
    fn go(parts: &[Option<String>], s: &str, ok: &dyn Fn(&str) -> bool) -> bool {
        match parts.split_first() {
            None => s.is_empty(),
            Some((Some(lit), rest)) => s.strip_prefix(lit.as_str()).is_some_and(|tail| go(rest, tail, ok)),
            Some((None, rest)) => {
                if ok("") && go(rest, s, ok) {
                    return true;
                }
                for (i, c) in s.char_indices() {
                    let end = i + c.len_utf8();
                    if !ok(&s[..end]) {
                        return false;
                    }
                    if go(rest, &s[end..], ok) {
                        return true;
                    }
                }
                false
            }
        }
    }
    go(&template_parts(t), s, ok)
}

/// Every (section, resource template, value) of the policy document, over all grants.
fn doc_templates<'d>(doc: &'d Value, section: &str) -> Vec<(&'d String, &'d Value)> {
    let mut grants: Vec<&Value> = vec![doc, &doc["anonymous"]];
    if let Some(g) = doc["roles"]["grants"].as_object() {
        grants.extend(g.values());
    }
    grants
        .into_iter()
        .filter_map(|g| g[section].as_object())
        .flat_map(|m| m.iter())
        .collect()
}

/// Same JSON shape: same types, same object keys (strings may differ).
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_shape(v, w)),
        (Value::String(_), Value::String(_)) => true,
        (x, y) => x == y,
    }
}

fn check_grant(doc: &Value, revocable: bool, caller: &Caller, grant: &shared::grant::Grant) {
    if let Some(c) = &grant.client_id {
        assert!(
            !c.is_empty() && !c.contains('*') && !c.chars().any(char::is_control),
            "clientId {c:?}"
        );
        let t = doc["clientId"]
            .as_str()
            .unwrap_or_else(|| panic!("clientId {c:?} without a clientId template"));
        assert!(
            matches_template(t, c),
            "clientId {c:?} is not template {t:?} with safe values"
        );
    }
    if matches!(caller, Caller::Anonymous) {
        assert!(
            grant.client_id.is_none() && !grant.may_revoke,
            "anonymous grant {grant:?}"
        );
    }
    let caps = doc_templates(doc, "capability");
    for (r, _) in grant.capability.iter() {
        assert!(validate_resource(r).is_ok(), "granted invalid resource {r:?}");
        assert!(
            caps.iter().any(|(t, _)| matches_template(t, r)),
            "granted resource {r:?} is no capability template of the policy with safe values"
        );
    }
    let claims = doc_templates(doc, "channelClaims");
    for (r, v) in &grant.channel_claims {
        let owners: Vec<&Value> = claims
            .iter()
            .filter(|(t, _)| matches_template(t, r))
            .map(|(_, v)| *v)
            .collect();
        assert!(!owners.is_empty(), "channel claim on {r:?} from no template");
        // A value template that is JSON (placeholders inside strings) stays JSON of that shape.
        let shapes: Vec<Value> = owners
            .iter()
            .filter_map(|t| t.as_str())
            .filter_map(|t| {
                let sample: String = template_parts(t).iter().map(|p| p.as_deref().unwrap_or("x")).collect();
                serde_json::from_str::<Value>(&sample).ok()
            })
            .collect();
        if !shapes.is_empty() && shapes.len() == owners.len() {
            let got: Value = serde_json::from_str(v).unwrap_or_else(|e| panic!("channel claim {v:?} is not JSON: {e}"));
            assert!(
                shapes.iter().any(|s| same_shape(s, &got)),
                "channel claim {v:?} changed shape"
            );
        }
    }
    let rooms = doc_templates(doc, "roomClaims");
    for (r, _) in &grant.room_claims {
        assert!(
            rooms.iter().any(|(t, _)| matches_template(t, r)),
            "room claim on {r:?} from no template"
        );
    }
    let limits = doc_templates(doc, "rateLimits");
    for (r, rate) in &grant.rate_limits {
        assert!(rate.is_finite() && *rate > 0.0, "rate {rate}");
        assert!(
            limits.iter().any(|(t, _)| matches_template(t, r)),
            "rate limit on {r:?} from no template"
        );
    }
    let max = if revocable { 3_600_000 } else { 86_400_000 };
    assert!((60_000..=max).contains(&grant.ttl_ms), "ttl {} ms", grant.ttl_ms);
    if let Some(k) = &grant.revocation_key {
        assert!(
            !k.is_empty() && !k.chars().any(char::is_control),
            "revocation key {k:?}"
        );
        // The claims' text as it is (not JSON-escaped: the JWT writer escapes it once).
        let t = doc["revocationKey"]
            .as_str()
            .unwrap_or_else(|| panic!("revocation key {k:?} without a template"));
        let plain = |v: &str| !v.chars().any(char::is_control);
        assert!(
            matches_template_by(t, k, &plain),
            "revocation key {k:?} is not template {t:?} with claim text"
        );
    }
}

/// Target `policy`: arbitrary policy documents (as text, or built field by field) through
/// `Policy::from_json`, then arbitrary claims through `Policy::grant`.
pub fn policy(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(revocable) = u.arbitrary::<bool>() else {
        return;
    };
    let (text_form, doc) = match u.ratio(1, 8) {
        Ok(true) => match text(&mut u, 12) {
            Ok(t) => (t, None),
            Err(_) => return,
        },
        _ => match policy_doc(&mut u) {
            Ok(d) => (d.to_string(), Some(d)),
            Err(_) => return,
        },
    };
    let policy = match Policy::from_json(&text_form, revocable) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.field.is_empty() && !e.to_string().is_empty());
            return;
        }
    };
    let Some(doc) = doc else {
        return;
    };
    for _ in 0..3 {
        let Ok(map) = claims(&mut u) else {
            break;
        };
        let callers = [
            Caller::Verified {
                claims: Claims::new(map),
                via: "fuzz",
            },
            Caller::Anonymous,
        ];
        for caller in &callers {
            match policy.grant(caller) {
                Ok(grant) => check_grant(&doc, revocable, caller, &grant),
                Err(e) => {
                    assert!(matches!(e.status(), 401 | 403), "grant error {}: {e}", e.status());
                    check_error_answer(&e);
                }
            }
        }
    }
}

// =======================================================================================
// Target `caller_token`

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn hs256(secret: &str, input: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
}

/// A JWT-shaped string, and the one token string that is signed correctly with
/// [`CALLER_SECRET`] (`header.payload.signature`, canonical base64url), if any.
struct TokenCase {
    token: String,
    exact: Option<String>,
}

impl TokenCase {
    /// Is `seen` (the token as a verifier received it) the correctly signed token?
    fn signed(&self, seen: &str) -> bool {
        self.exact.as_deref() == Some(seen)
    }
}

fn time_claim(u: &mut Unstructured<'_>, now: i64) -> AResult<Option<Value>> {
    Ok(match u.int_in_range(0..=11)? {
        0 => None,
        1 => Some(json!(now - 3600)),
        2 => Some(json!(now - 20)),
        3 => Some(json!(now - 40)),
        4 => Some(json!(now + 20)),
        5 => Some(json!(now + 40)),
        6 => Some(json!((now + 3600).to_string())),
        7 => Some(json!(u.arbitrary::<i64>()?)),
        8 => Some(json!(u.arbitrary::<f64>()?)),
        9 => Some(json!(now as f64 + 3600.5)),
        _ => Some(json!(now + 3600)),
    })
}

fn b64(u: &mut Unstructured<'_>, bytes: &[u8]) -> AResult<String> {
    Ok(match u.int_in_range(0..=15)? {
        0 => STANDARD.encode(bytes),
        1 => format!("{}=", URL_SAFE_NO_PAD.encode(bytes)),
        _ => URL_SAFE_NO_PAD.encode(bytes),
    })
}

fn token_case(u: &mut Unstructured<'_>) -> AResult<TokenCase> {
    let now = now_s();
    if u.ratio(1, 6)? {
        return Ok(TokenCase {
            token: text(u, 8)?,
            exact: None,
        });
    }
    let header = if u.ratio(1, 10)? {
        text(u, 4)?
    } else {
        let mut h = Map::new();
        if !u.ratio(1, 12)? {
            let alg = pick(
                u,
                &[
                    "HS256", "HS256", "HS256", "HS384", "HS512", "none", "None", "RS256", "ES256", "EdDSA", "hs256", "",
                ],
            )?;
            h.insert("alg".into(), json!(alg));
        }
        if u.ratio(1, 2)? {
            h.insert("typ".into(), json!(pick(u, &["JWT", "jwt", "at+jwt", "x"])?));
        }
        if u.ratio(1, 4)? {
            h.insert("kid".into(), claim_value(u)?);
        }
        if u.ratio(1, 8)? {
            h.insert(text(u, 1)?, claim_value(u)?);
        }
        Value::Object(h).to_string()
    };
    let payload = if u.ratio(1, 10)? {
        text(u, 6)?
    } else {
        let mut p = claims(u)?;
        for name in ["exp", "nbf", "iat"] {
            if let Some(v) = time_claim(u, now)? {
                p.insert(name.into(), v);
            }
        }
        match u.int_in_range(0..=4)? {
            0 => {}
            1 => {
                p.insert("iss".into(), json!("https://other.example"));
            }
            2 => {
                p.insert("iss".into(), claim_value(u)?);
            }
            _ => {
                p.insert("iss".into(), json!(ISSUER));
            }
        }
        match u.int_in_range(0..=5)? {
            0 => {}
            1 => {
                p.insert("aud".into(), json!("other-app"));
            }
            2 => {
                p.insert("aud".into(), json!(["other-app", AUDIENCE]));
            }
            3 => {
                p.insert("aud".into(), claim_value(u)?);
            }
            _ => {
                p.insert("aud".into(), json!(AUDIENCE));
            }
        }
        if u.ratio(1, 20)? {
            Value::Array(vec![Value::Object(p)]).to_string()
        } else {
            Value::Object(p).to_string()
        }
    };
    let signing_input = format!("{}.{}", b64(u, header.as_bytes())?, b64(u, payload.as_bytes())?);
    let (signature, signed) = match u.int_in_range(0..=9)? {
        0 => (
            b64(u, &hs256("wrong-secret-0123456789abcdef0123456789", &signing_input))?,
            false,
        ),
        1 => (String::new(), false),
        2 => (text(u, 3)?, false),
        3 => {
            let junk = u.arbitrary::<Vec<u8>>()?;
            (b64(u, &junk)?, false)
        }
        _ => {
            let sig = hs256(CALLER_SECRET, &signing_input);
            let encoded = b64(u, &sig)?;
            let exact = encoded == URL_SAFE_NO_PAD.encode(&sig);
            (encoded, exact)
        }
    };
    let token = match u.int_in_range(0..=19)? {
        0 => signing_input.clone(),
        1 => format!("{signing_input}.{signature}.x"),
        2 => format!("{signing_input}.{signature}{}", piece(u)?),
        _ => format!("{signing_input}.{signature}"),
    };
    let exact = signed.then(|| format!("{signing_input}.{signature}"));
    Ok(TokenCase { token, exact })
}

/// What acceptance of `token` requires: signed with the secret, HS256, unexpired, and the
/// issuer/audience when `strict`.
fn check_accepted(token: &str, signed: bool, strict: bool, claims: &Claims) {
    assert!(signed, "accepted a token not signed with the caller secret: {token:?}");
    let mut parts = token.split('.');
    let header: Value = parts
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice(&h).ok())
        .unwrap_or_else(|| panic!("accepted a token whose header is not base64url JSON: {token}"));
    assert_eq!(header["alg"], json!("HS256"), "accepted alg {}: {token}", header["alg"]);
    let payload: Value = parts
        .next()
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or_else(|| panic!("accepted a token whose payload is not base64url JSON: {token}"));
    assert_eq!(
        &Value::Object(claims.as_map().clone()),
        &payload,
        "claims differ from the payload"
    );
    let now = now_s();
    let exp = payload["exp"]
        .as_f64()
        .unwrap_or_else(|| panic!("accepted a token without numeric exp: {payload}"));
    assert!(
        exp >= (now - LEEWAY_S - SLACK_S) as f64,
        "accepted an expired token: exp {exp}, now {now}"
    );
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf
            .as_f64()
            .unwrap_or_else(|| panic!("accepted a non-numeric nbf: {payload}"));
        assert!(
            nbf <= (now + LEEWAY_S + SLACK_S) as f64,
            "accepted a token not valid yet: nbf {nbf}, now {now}"
        );
    }
    if strict {
        assert_eq!(payload["iss"], json!(ISSUER), "accepted issuer {}", payload["iss"]);
        let aud_ok = match &payload["aud"] {
            Value::String(a) => a == AUDIENCE,
            Value::Array(list) => list.iter().any(|a| a == AUDIENCE),
            _ => false,
        };
        assert!(aud_ok, "accepted audience {}", payload["aud"]);
    }
}

struct Runtime(tokio::runtime::Runtime);

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("tokio runtime: {e}")),
        )
    })
}

struct Verifiers {
    plain: Arc<Hs256Verifier>,
    strict: Arc<Hs256Verifier>,
    /// strict bearer, then the cookie (verified by the plain verifier).
    chain: VerifierChain,
}

fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| {
        let secret = SecretString::new(CALLER_SECRET);
        let plain = Arc::new(Hs256Verifier::new(&secret, None, &[]).unwrap_or_else(|e| panic!("{e}")));
        let strict = Arc::new(
            Hs256Verifier::new(&secret, Some(ISSUER), &[AUDIENCE.to_owned()]).unwrap_or_else(|e| panic!("{e}")),
        );
        let cookie_tokens: Vec<Arc<dyn TokenVerifier>> = vec![plain.clone()];
        let cookie = CookieVerifier::new(COOKIE, cookie_tokens).unwrap_or_else(|e| panic!("{e}"));
        let chain = VerifierChain::new(vec![Box::new(strict.clone()), Box::new(cookie)]);
        Verifiers { plain, strict, chain }
    })
}

/// Target `caller_token`: arbitrary bearer strings and JWT-shaped tokens (any header, any
/// claims, right or wrong signatures and encodings) through the HS256 verifier directly,
/// and inside requests (Authorization header, cookie) through a verifier chain.
pub fn caller_token(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(case) = token_case(&mut u) else {
        return;
    };
    let v = verifiers();
    let rt = &runtime().0;
    for (verifier, strict) in [(&v.plain, false), (&v.strict, true)] {
        match rt.block_on(verifier.verify_token(&case.token)) {
            Verdict::Verified(claims) => check_accepted(&case.token, case.signed(&case.token), strict, &claims),
            Verdict::Rejected(e) => {
                let e = IssueError::from(e);
                assert_eq!(e.status(), 401, "{e}");
                check_error_answer(&e);
                check_no_secrets("a rejection", &e.to_string());
                assert!(
                    !e.to_string().contains(&case.token) || case.token.len() < 8,
                    "the token is echoed: {e}"
                );
            }
            Verdict::NotMine | Verdict::Absent => {}
        }
    }
    // In a request: the Authorization header (in several spellings) and/or the cookie.
    let Ok(mode) = u.int_in_range(0..=7) else {
        return;
    };
    let authorization = match mode {
        0 => None,
        1 => Some(format!("bearer  {} ", case.token)),
        2 => Some(format!("Basic {}", case.token)),
        3 => Some(case.token.clone()),
        4 => text(&mut u, 3).ok(),
        _ => Some(format!("Bearer {}", case.token)),
    };
    let cookie = match u.int_in_range(0..=3) {
        Ok(0) => Some(format!("{COOKIE}={}", case.token)),
        Ok(1) => Some(format!("a=b; {COOKIE}={}; {COOKIE}=other", case.token)),
        Ok(2) => text(&mut u, 3).ok().map(|t| format!("{COOKIE}={t}")),
        _ => None,
    };
    let mut builder = lambda_http::http::Request::builder()
        .method("GET")
        .uri("https://x.example/auth/jwt");
    let mut has_authorization = false;
    if let Some(a) = authorization.and_then(|a| HeaderValue::from_bytes(a.as_bytes()).ok()) {
        builder = builder.header("authorization", a);
        has_authorization = true;
    }
    if let Some(c) = cookie.as_ref().and_then(|c| HeaderValue::from_bytes(c.as_bytes()).ok()) {
        builder = builder.header("cookie", c);
    }
    let Ok(request) = builder.body(Body::Empty) else {
        return;
    };
    match rt.block_on(v.chain.identify(&request)) {
        // Either the bearer (strict) or the cookie (plain) verified it: the case's token is
        // the only signed one, so the claims must be its claims. Header values and cookies
        // lose surrounding whitespace on the way (RFC 9110 OWS), so a token that is the
        // signed one plus whitespace is the signed one.
        Ok(Caller::Verified { claims, via }) => {
            check_accepted(&case.token, case.signed(case.token.trim()), via == "hs256", &claims);
        }
        Ok(Caller::Anonymous) => assert!(!has_authorization, "an Authorization header made the caller anonymous"),
        Err(e) => {
            assert!(matches!(e.status(), 401), "identify error {}: {e}", e.status());
            check_error_answer(&e);
        }
    }
}

// =======================================================================================
// Target `request`

/// A key source that answers one fixed key (the fake of `shared::key_source::KeySource`).
pub struct FakeKeys(pub Arc<ApiKey>);

impl KeySource for FakeKeys {
    fn current(&self) -> BoxFuture<'_, Result<Arc<ApiKey>, KeySourceError>> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// Ably that always answers: TokenDetails for a TokenRequest, success for every target.
pub struct FakeAbly;

impl AblyRest for FakeAbly {
    fn request_token<'a>(&'a self, sign: &'a SignTokenRequest<'a>) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
        let request = match sign() {
            Ok(request) => request,
            Err(e) => return Box::pin(std::future::ready(Err(AblyError::NotSent(e)))),
        };
        let details = TokenDetails {
            token: "fake-ably-token".to_owned(),
            key_name: request.key_name.clone(),
            issued: request.timestamp,
            expires: request.timestamp + request.ttl.unwrap_or(3_600_000),
            capability: request.capability.clone().unwrap_or_default(),
            client_id: request.client_id.clone(),
        };
        Box::pin(std::future::ready(Ok(details)))
    }

    fn revoke_tokens<'a>(
        &'a self,
        _key: &'a ApiKey,
        request: &'a RevokeRequest,
    ) -> BoxFuture<'a, Result<BatchResult, AblyError>> {
        let result = BatchResult {
            success_count: request.targets.len() as u64,
            failure_count: 0,
            results: request
                .targets
                .iter()
                .map(|t| TargetResult {
                    target: t.clone(),
                    issued_before: Some(1),
                    applies_at: Some(2),
                    error: None,
                })
                .collect(),
        };
        Box::pin(std::future::ready(Ok(result)))
    }

    fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>> {
        Box::pin(std::future::ready(Ok(now_s() as u64 * 1000)))
    }
}

pub struct Services(Vec<(Route, Service)>);

/// The four routes, configured as in production but with the fakes above: HS256 bearer
/// (issuer and audience checked), API Gateway authorizer context, and the cookie.
pub fn services() -> &'static Services {
    static S: OnceLock<Services> = OnceLock::new();
    S.get_or_init(|| {
        let key = Arc::new(ApiKey::parse(&format!("{KEY_NAME}:{KEY_SECRET}")).unwrap_or_else(|e| panic!("{e}")));
        let build = |route: Route| {
            let policy_text = if route == Route::Jwt { DEV_POLICY } else { TOKEN_POLICY };
            let secret = SecretString::new(CALLER_SECRET);
            let bearer = Arc::new(
                Hs256Verifier::new(&secret, Some(ISSUER), &[AUDIENCE.to_owned()]).unwrap_or_else(|e| panic!("{e}")),
            );
            let tokens: Vec<Arc<dyn TokenVerifier>> = vec![bearer.clone()];
            let chain: Vec<Box<dyn CallerVerifier>> = vec![
                Box::new(bearer),
                Box::new(AuthorizerVerifier::new()),
                Box::new(CookieVerifier::new(COOKIE, tokens).unwrap_or_else(|e| panic!("{e}"))),
            ];
            let deps = Deps {
                policy: Policy::from_json(policy_text, true).unwrap_or_else(|e| panic!("{e}")),
                callers: VerifierChain::new(chain),
                keys: Arc::new(FakeKeys(key.clone())),
                clock: Arc::new(SystemClock),
                cors: Cors::parse(ORIGIN).unwrap_or_else(|e| panic!("{e}")),
                ably: Some(Arc::new(FakeAbly)),
            };
            (route, Service::new(route, deps))
        };
        Services(
            [Route::Jwt, Route::TokenRequest, Route::AblyToken, Route::Revoke]
                .into_iter()
                .map(build)
                .collect(),
        )
    })
}

/// A caller token signed with the secret, for generated claims.
fn valid_token(u: &mut Unstructured<'_>) -> AResult<String> {
    let mut claims = Map::new();
    claims.insert(
        "sub".into(),
        match u.int_in_range(0..=4)? {
            0 => claim_value(u)?,
            1 => json!(text(u, 3)?),
            _ => json!(pick(u, &["alice", "bob", "ops-1", "*", "a:b"])?),
        },
    );
    for name in ["name", "org", "roles"] {
        if u.ratio(2, 3)? {
            let v = match (name, u.int_in_range(0..=3)?) {
                ("roles", 0 | 1) => json!([pick(u, &["admin", "admin", "moderator", "x"])?]),
                ("roles", 2) => json!("admin moderator"),
                (_, 0) => json!(text(u, 3)?),
                _ => claim_value(u)?,
            };
            claims.insert(name.into(), v);
        }
    }
    claims.insert("iss".into(), json!(ISSUER));
    claims.insert("aud".into(), json!(AUDIENCE));
    let exp = if u.ratio(1, 10)? {
        now_s() - 3600
    } else {
        now_s() + 3600
    };
    claims.insert("exp".into(), json!(exp));
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
    );
    let sig = URL_SAFE_NO_PAD.encode(hs256(CALLER_SECRET, &input));
    Ok(format!("{input}.{sig}"))
}

/// Arbitrary extra headers: names that matter, and others; values from arbitrary bytes.
fn extra_headers(u: &mut Unstructured<'_>, token: Option<&str>) -> AResult<Vec<(String, Vec<u8>)>> {
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let name = pick(
            u,
            &[
                "authorization",
                "cookie",
                "origin",
                "access-control-request-headers",
                "content-type",
                "x-forwarded-for",
                "accept",
            ],
        )?;
        let value: Vec<u8> = match (name, u.int_in_range(0..=3)?) {
            ("authorization", 0 | 1) => format!("Bearer {}", token.unwrap_or("x")).into_bytes(),
            ("cookie", 0 | 1) => format!("{COOKIE}={}", token.unwrap_or("x")).into_bytes(),
            ("origin", 0 | 1) => pick(u, &[ORIGIN, "http://LOCALHOST:8080", "https://evil.example", "null"])?
                .as_bytes()
                .to_vec(),
            (_, 2) => text(u, 3)?.into_bytes(),
            _ => u.arbitrary::<Vec<u8>>()?,
        };
        headers.push((name.to_owned(), value));
    }
    Ok(headers)
}

/// A request as API Gateway would deliver it, with an authorizer context (event JSON
/// through `lambda_http::request::from_str`): exercises the trusted-claims path.
fn authorizer_event(u: &mut Unstructured<'_>, method: &str, query: &str, body: &Body) -> AResult<Option<Request>> {
    let claims = claims(u)?;
    let body_text = match body {
        Body::Text(t) => Some(t.clone()),
        Body::Binary(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    };
    let strings: Map<String, Value> = claims
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::String(v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            )
        })
        .collect();
    let authorizer = match u.int_in_range(0..=2)? {
        0 => json!({"jwt": {"claims": strings, "scopes": ["openid"]}}),
        1 => json!({"lambda": Value::Object(claims)}),
        _ => json!({}),
    };
    let content_type = pick(
        u,
        &["application/json", "application/x-www-form-urlencoded", "text/plain"],
    )?;
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/auth/x",
        "rawQueryString": query,
        "headers": {"content-type": content_type, "host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "authorizer": authorizer,
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "domainPrefix": "abc123",
            "http": {"method": method, "path": "/auth/x", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "fuzz"},
            "requestId": "fuzz", "routeKey": "$default", "stage": "$default", "time": "14/Nov/2023:22:13:20 +0000", "timeEpoch": 1700000000000u64
        },
        "body": body_text,
        "isBase64Encoded": false
    });
    Ok(lambda_http::request::from_str(&event.to_string()).ok())
}

/// One arbitrary request (built anew per route: requests are not `Clone`).
struct RequestSpec {
    event: bool,
    bytes: Vec<u8>,
}

fn build_request(spec: &RequestSpec) -> Option<(Request, Option<String>)> {
    let mut u = Unstructured::new(&spec.bytes);
    let token = match u.int_in_range(0..=3).ok()? {
        0 => None,
        _ => Some(valid_token(&mut u).ok()?),
    };
    let base = params_request(&mut u, "/auth/x").ok()?;
    if spec.event {
        let query = base.uri().query().unwrap_or("").to_owned();
        let body = base.body().clone();
        let request = authorizer_event(&mut u, base.method().as_str(), &query, &body).ok()??;
        return Some((request, token));
    }
    let mut request = base;
    if let Some(t) = &token {
        let (name, value) = match u.int_in_range(0..=3).ok()? {
            0 => ("cookie", format!("{COOKIE}={t}")),
            _ => ("authorization", format!("Bearer {t}")),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            request.headers_mut().insert(name, v);
        }
    }
    for (name, value) in extra_headers(&mut u, token.as_deref()).ok()? {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            request.headers_mut().append(n, v);
        }
    }
    Some((request, token))
}

fn check_answer(route: Route, response: &Response<Body>, token: Option<&str>) {
    let status = response.status().as_u16();
    let body = body_text(response);
    // The one 5xx a request can cause without a fault: the dev policy copies the caller's
    // `sub` and `name` claims into the JWT, and long enough claims push it over Ably's
    // 8 KiB JWT limit. That limit is the policy's (the answer tells the operator to narrow
    // it or use /auth/token), so it is a configured refusal, allowed here and nowhere else.
    let too_large = route == Route::Jwt && status == 500 && body.contains("the token would be");
    assert!(
        status < 500 || too_large,
        "{route:?} answered {status} (no fault is configured): {body}"
    );
    check_no_secrets("an answer body", &body);
    for (name, value) in response.headers() {
        check_no_secrets(name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
        if let Some(t) = token {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(t),
                "the caller token echoed in {name}"
            );
        }
    }
    if let Some(t) = token {
        assert!(!body.contains(t), "the caller token echoed in the body");
    }
    assert_eq!(
        header(response, "cache-control"),
        Some("no-store"),
        "{route:?} {status}"
    );
    if status >= 400 {
        check_error_response(response);
        return;
    }
    if status == 204 {
        return;
    }
    assert_eq!(status, 200, "{route:?}: {body}");
    match route {
        Route::Jwt => {
            assert_eq!(header(response, "content-type"), Some("application/jwt"));
            check_ably_jwt(&body);
        }
        Route::TokenRequest => {
            assert_eq!(header(response, "content-type"), Some("application/json"));
            let tr: TokenRequest = serde_json::from_str(&body).unwrap_or_else(|e| panic!("TokenRequest {body}: {e}"));
            assert_eq!(tr.key_name, KEY_NAME);
            assert!(tr.nonce.len() >= 16, "nonce {:?}", tr.nonce);
            assert!(tr.ttl.is_some_and(|t| (1..=3_600_000).contains(&t)), "ttl {:?}", tr.ttl);
            if let Some(c) = &tr.client_id {
                assert!(!c.contains('*') && !c.is_empty(), "clientId {c:?}");
            }
            let cap = tr.capability.as_deref().unwrap_or("");
            Capability::parse(cap).unwrap_or_else(|e| panic!("capability {cap}: {e}"));
            // The MAC, recomputed here (the spec's text to sign).
            let text = format!(
                "{KEY_NAME}\n{}\n{cap}\n{}\n{}\n{}\n",
                tr.ttl.map(|t| t.to_string()).unwrap_or_default(),
                tr.client_id.as_deref().unwrap_or(""),
                tr.timestamp,
                tr.nonce
            );
            assert_eq!(
                tr.mac,
                STANDARD.encode(hs256(KEY_SECRET, &text)),
                "the TokenRequest MAC does not verify"
            );
        }
        Route::AblyToken => {
            let details: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("TokenDetails {body}: {e}"));
            assert_eq!(details["token"], json!("fake-ably-token"));
            assert_eq!(details["keyName"], json!(KEY_NAME));
        }
        Route::Revoke => {
            let result: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("BatchResult {body}: {e}"));
            assert!(result["successCount"].is_u64(), "{body}");
        }
    }
}

/// An Ably JWT: signed with the key secret (checked here with aws-lc-rs), sane claims.
fn check_ably_jwt(token: &str) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "JWT {token}");
    let input = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(
        parts[2],
        URL_SAFE_NO_PAD.encode(hs256(KEY_SECRET, &input)),
        "the Ably JWT signature does not verify"
    );
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap_or_default())
        .unwrap_or_else(|e| panic!("JWT header: {e}"));
    assert_eq!(header["kid"], json!(KEY_NAME));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap_or_default())
        .unwrap_or_else(|e| panic!("JWT claims: {e}"));
    let iat = claims["iat"].as_u64().unwrap_or_else(|| panic!("iat in {claims}"));
    let exp = claims["exp"].as_u64().unwrap_or_else(|| panic!("exp in {claims}"));
    assert!(
        exp > iat && exp - iat <= 3600,
        "ttl {} s over the revocable maximum",
        exp - iat
    );
    let cap = claims["x-ably-capability"]
        .as_str()
        .unwrap_or_else(|| panic!("capability in {claims}"));
    let cap = Capability::parse(cap).unwrap_or_else(|e| panic!("capability {cap}: {e}"));
    assert!(!cap.is_empty());
    if let Some(c) = claims.get("x-ably-clientId") {
        let c = c.as_str().unwrap_or_else(|| panic!("clientId {c}"));
        assert!(!c.is_empty() && !c.contains('*'), "clientId {c:?}");
    }
}

/// Target `request`: one arbitrary request (method, path, query, headers, body, caller
/// token or authorizer context) to each of the four routes.
pub fn request(data: &[u8]) {
    let _ = request_statuses(data);
}

/// [`request`], answering the status each route gave (for coverage reports).
pub fn request_statuses(data: &[u8]) -> Vec<(&'static str, u16)> {
    let mut statuses = Vec::new();
    let Some((&first, rest)) = data.split_first() else {
        return statuses;
    };
    let spec = RequestSpec {
        event: first % 4 == 0,
        bytes: rest.to_vec(),
    };
    let rt = &runtime().0;
    for (route, service) in &services().0 {
        let Some((request, token)) = build_request(&spec) else {
            return statuses;
        };
        let response = rt.block_on(service.handle(request));
        check_answer(*route, &response, token.as_deref());
        statuses.push((route.name(), response.status().as_u16()));
    }
    statuses
}

// =======================================================================================
// Target `event`

/// A string that is mostly what a gateway sends for `what`, sometimes anything at all
/// (control characters, quotes, spaces, non-ASCII), sometimes very long.
fn field(u: &mut Unstructured<'_>, usual: &[&str]) -> AResult<String> {
    Ok(match u.int_in_range(0..=47)? {
        0..=29 => pick(u, usual)?.to_owned(),
        30..=39 => text(u, 4)?,
        40..=46 => u.arbitrary::<String>()?,
        // Rarely, one long value (over the URL limit, over http::Uri's 64 KiB).
        _ => {
            let unit = pick(u, &["a", "\"", "%", " ", "é", "{", "#"])?;
            unit.repeat(u.int_in_range(1_000..=70_000)?)
        }
    })
}

/// A raw query string as a client may type it: parameters with values not percent-encoded
/// (`capability={"a":["subscribe"]}`), encoded, or anything at all.
fn raw_query(u: &mut Unstructured<'_>) -> AResult<String> {
    let mut parts = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let name = param_name(u)?;
        let value = param_value(u, &name)?;
        parts.push(match u.int_in_range(0..=2)? {
            0 => format!("{name}={value}"),
            1 => format!("{}={}", uri_query(&name), uri_query(&value)),
            _ => text(u, 3)?,
        });
    }
    if u.ratio(1, 12)? {
        parts.push(field(u, &["rnd=1"])?);
    }
    Ok(parts.join("&"))
}

/// Headers as a JSON object: the ones that matter (host, proto, credentials, origin,
/// content type) with usual or arbitrary values, and arbitrary others.
fn event_headers(u: &mut Unstructured<'_>, token: Option<&str>) -> AResult<Map<String, Value>> {
    let mut headers = Map::new();
    if u.ratio(7, 8)? {
        let host = field(u, &["abc123.execute-api.eu-west-1.amazonaws.com", "localhost:9000"])?;
        headers.insert("host".into(), json!(host));
    }
    if u.ratio(3, 4)? {
        headers.insert("x-forwarded-proto".into(), json!(field(u, &["https", "http"])?));
    }
    if let Some(t) = token {
        if u.ratio(3, 4)? {
            headers.insert("authorization".into(), json!(format!("Bearer {t}")));
        }
    }
    for (name, value) in extra_headers(u, token)? {
        headers.insert(name, json!(String::from_utf8_lossy(&value)));
    }
    if u.ratio(1, 8)? {
        headers.insert(text(u, 2)?, json!(text(u, 2)?));
    }
    Ok(headers)
}

/// A body and its `isBase64Encoded` flag: token parameters (form or JSON), a revoke body,
/// base64 of those, or anything.
fn event_body(u: &mut Unstructured<'_>) -> AResult<(Value, bool)> {
    let text_body = match u.int_in_range(0..=5)? {
        0 => return Ok((Value::Null, false)),
        1 => form_encode(&[("capability".to_owned(), capability_text(u)?)]),
        2 => revoke_body(u)?.to_string(),
        3 => json!({"ttl": u.arbitrary::<u32>()?, "clientId": text(u, 2)?}).to_string(),
        _ => text(u, 6)?,
    };
    Ok(match u.int_in_range(0..=3)? {
        0 => (json!(STANDARD.encode(&text_body)), true),
        1 => (json!(text_body), true),
        _ => (json!(text_body), false),
    })
}

/// One whole raw event: HTTP API payload 2.0, REST (payload 1.0), a Function URL event,
/// one of those with a field of the wrong type, or arbitrary JSON.
fn raw_event(u: &mut Unstructured<'_>, token: Option<&str>) -> AResult<String> {
    if u.ratio(1, 20)? {
        return Ok(String::from_utf8_lossy(u.bytes(u.len().min(512))?).into_owned());
    }
    let method = field(u, &["GET", "POST", "OPTIONS", "PUT"])?;
    let path = field(u, &["/auth/jwt", "/auth/token-request", "/auth/token", "/auth/revoke"])?;
    let stage = field(u, &["$default", "prod"])?;
    let domain = field(u, &["abc123.execute-api.eu-west-1.amazonaws.com"])?;
    let query = raw_query(u)?;
    let headers = event_headers(u, token)?;
    let (body, is_base64) = event_body(u)?;
    let claims = claims(u)?;
    let mut event = match u.int_in_range(0..=2)? {
        // REST API: decoded query maps, single- and multi-value headers.
        0 => {
            let params: Map<String, Value> = form_urlencoded_pairs(&query)
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect();
            let multi: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
            let multi_headers: Map<String, Value> = headers.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
            json!({
                "resource": path, "path": path, "httpMethod": method,
                "headers": headers, "multiValueHeaders": multi_headers,
                "queryStringParameters": params, "multiValueQueryStringParameters": multi,
                "requestContext": {
                    "accountId": "123456789012", "apiId": "abc123", "stage": stage, "domainName": domain,
                    "httpMethod": method, "path": path, "requestId": "fuzz", "resourcePath": path,
                    "authorizer": if u.ratio(1, 3)? { json!({"claims": claims}) } else { json!({"lambda": claims}) },
                    "identity": {"sourceIp": "203.0.113.7"}
                },
                "body": body, "isBase64Encoded": is_base64
            })
        }
        // HTTP API or Function URL: the raw query as the client sent it, cookies apart.
        shape => {
            let cookies: Vec<Value> = (0..u.int_in_range(0..=2)?)
                .map(|_| {
                    Ok(match (token, u.int_in_range(0..=2)?) {
                        (Some(t), 0) => json!(format!("{COOKIE}={t}")),
                        _ => json!(field(u, &["a=b"])?),
                    })
                })
                .collect::<AResult<_>>()?;
            let authorizer = if shape == 1 && u.ratio(1, 3)? {
                json!({"jwt": {"claims": claims, "scopes": []}})
            } else {
                json!(null)
            };
            json!({
                "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
                "cookies": cookies, "headers": headers,
                "requestContext": {
                    "accountId": "123456789012", "apiId": "abc123", "authorizer": authorizer,
                    "domainName": if shape == 2 { "abc.lambda-url.eu-west-1.on.aws".to_owned() } else { domain },
                    "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "fuzz"},
                    "requestId": "fuzz", "routeKey": "$default", "stage": stage, "time": "14/Nov/2023:22:13:20 +0000",
                    "timeEpoch": 1700000000000u64
                },
                "body": body, "isBase64Encoded": is_base64
            })
        }
    };
    if u.ratio(1, 16)? {
        // Shapes only a direct invocation sends: no rawQueryString, empty value lists in the
        // query maps, a flood of header names.
        match u.int_in_range(0..=3)? {
            0 => {
                if let Some(e) = event.as_object_mut() {
                    e.remove("rawQueryString");
                }
            }
            1 => event["queryStringParameters"] = json!({ text(u, 1)?: [] }),
            2 => event["multiValueQueryStringParameters"] = json!({ text(u, 1)?: [] }),
            _ => {
                let n = u.int_in_range(900..=26_000)?;
                let flood: Map<String, Value> = (0..n).map(|i| (format!("x-h{i}"), json!("v"))).collect();
                event[pick(u, &["headers", "multiValueHeaders"])?] = if u.ratio(1, 2)? {
                    Value::Object(flood)
                } else {
                    Value::Object(flood.into_iter().map(|(k, v)| (k, json!([v]))).collect())
                };
            }
        }
    }
    if u.ratio(1, 10)? {
        // A field of the wrong type.
        let name = pick(
            u,
            &[
                "headers",
                "body",
                "isBase64Encoded",
                "cookies",
                "rawQueryString",
                "requestContext",
            ],
        )?;
        event[name] = pick(
            u,
            &[&json!(5), &json!([1]), &json!("x"), &json!({"a": 1}), &json!(null)],
        )?
        .clone();
    }
    Ok(event.to_string())
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// The Lambda answer (as serialized for API Gateway) back as an HTTP response, so that
/// [`check_answer`] judges it like any other.
fn answer_response(answer: &Value) -> Response<Body> {
    let status = answer["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("statusCode in {answer}"));
    let mut response = Response::new(Body::Empty);
    *response.status_mut() =
        lambda_http::http::StatusCode::from_u16(status as u16).unwrap_or_else(|e| panic!("status {status}: {e}"));
    let mut add = |name: &str, value: &str| {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("header {name}: {e}"));
        let value = HeaderValue::from_str(value).unwrap_or_else(|e| panic!("header value {value:?}: {e}"));
        response.headers_mut().append(name, value);
    };
    if let Some(headers) = answer["headers"].as_object() {
        for (name, value) in headers {
            add(name, value.as_str().unwrap_or_else(|| panic!("header {name}: {value}")));
        }
    }
    if let Some(headers) = answer["multiValueHeaders"].as_object() {
        for (name, values) in headers {
            for value in values.as_array().unwrap_or_else(|| panic!("header {name}: {values}")) {
                add(name, value.as_str().unwrap_or_else(|| panic!("header {name}: {value}")));
            }
        }
    }
    let body = answer["body"].as_str().unwrap_or_default();
    *response.body_mut() = if answer["isBase64Encoded"] == json!(true) {
        Body::Binary(STANDARD.decode(body).unwrap_or_else(|e| panic!("base64 body: {e}")))
    } else {
        Body::Text(body.to_owned())
    };
    response
}

/// Target `event`: one arbitrary raw event through one route's entry point (the first byte
/// picks the route: `shared::runtime::answer`, i.e. the boundary, the real `lambda_http`
/// conversion and the service), judged like the `request` target's answers. No input may panic (it would abort
/// the function), answer a 5xx, or show a secret.
pub fn event(data: &[u8]) {
    let _ = event_statuses(data);
}

/// One raw event through one route's entry point, judged; its status.
fn event_status(raw: &str, route: usize, token: Option<&str>) -> u16 {
    let (route, service) = &services().0[route % 4];
    let answer = runtime()
        .0
        .block_on(shared::runtime::answer(service, raw, lambda_http::Context::default()));
    let answer = serde_json::to_value(answer).unwrap_or_else(|e| panic!("the answer must serialize: {e}"));
    let response = answer_response(&answer);
    check_answer(*route, &response, token);
    response.status().as_u16()
}

/// The event with the marker secrets replaced: the fuzzer learns them from the oracle's own
/// comparisons and types them into events, and an answer echoing what the client sent
/// (a 400 quoting its capability) shows the client nothing it did not have.
fn without_markers(raw: String) -> String {
    if !raw.contains("MARKER") {
        return raw;
    }
    raw.replace(KEY_SECRET, "client-sent-text")
        .replace(CALLER_SECRET, "client-sent-text")
}

/// [`event`], answering (route, status) for each input (for the seed coverage test).
pub fn event_statuses(data: &[u8]) -> Option<(&'static str, u16)> {
    let mut u = Unstructured::new(data);
    let route = u.arbitrary::<u8>().ok()? as usize;
    let token = match u.int_in_range(0..=2).ok()? {
        0 => None,
        _ => Some(valid_token(&mut u).ok()?),
    };
    let raw = without_markers(raw_event(&mut u, token.as_deref()).ok()?);
    let status = event_status(&raw, route, token.as_deref());
    Some((services().0[route % 4].0.name(), status))
}
