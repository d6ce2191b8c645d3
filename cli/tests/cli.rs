//! `ably-auth` end to end: the binary run as an operator runs it (arguments, environment,
//! files, stdout, exit status). `cargo test` runs the debug binary; `make test-cli` runs
//! these against the release binary (`ABLY_AUTH_BIN=target/release/ably-auth`).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEV_CALLER_SECRET: &str = "dev-caller-secret-0123456789abcdef0123456789";
const NOW: &str = "1700000000";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn binary() -> PathBuf {
    match std::env::var_os("ABLY_AUTH_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            let p = if p.is_absolute() { p } else { root().join(p) };
            assert!(p.is_file(), "{} not found: run `make release`", p.display());
            p
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_ably-auth")),
    }
}

/// (exit status, stdout, stderr), run from the repository root without ABLY_* variables.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args).current_dir(root());
    for var in ["ABLY_KEY_REVOCABLE", "ABLY_API_KEY", "CALLER_HS256_SECRET"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ably-auth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ably-auth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_dev_policy_and_warns_that_token_routes_refuse_it() {
    let (code, out, _) = run(&["policy", "check", "dev/policy.json", "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let v = json_of(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["warnings"][0]["field"], "channelClaims");
    let (code, out, _) = run(&["policy", "check", "dev/policy.json", "--route", "jwt"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("valid for /auth/jwt (0 warnings)"), "{out}");
}

#[test]
fn check_on_a_token_route_fails_with_the_functions_start_up_error() {
    let (code, out, _) = run(
        &[
            "policy",
            "check",
            "dev/policy.json",
            "--route",
            "token-request",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 1);
    let v = json_of(&out);
    assert_eq!(v["error"]["field"], "channelClaims");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("TokenRoutesPolicy"),
        "{v}"
    );
    let (code, _, _) = run(
        &[
            "policy",
            "check",
            "dev/policy-token-routes.json",
            "--route",
            "ably-token",
        ],
        &[],
    );
    assert_eq!(code, 0);
}

#[test]
fn check_names_the_field_of_an_invalid_policy_and_honours_ably_key_revocable() {
    let bad = temp_file("bad.json", r#"{"capability":{"a":["publsh"]}}"#);
    let (code, out, _) = run(&["policy", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(out.contains("invalid token policy at `capability[\"a\"]`"), "{out}");
    let long = temp_file("long.json", r#"{"capability":{"a":["subscribe"]},"ttlSeconds":7200}"#);
    let (code, out, _) = run(&["policy", "check", long.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["warnings"][0]["field"], "ttlSeconds");
    let (code, out, _) = run(
        &["policy", "check", long.to_str().unwrap(), "--json"],
        &[("ABLY_KEY_REVOCABLE", "true")],
    );
    assert_eq!(code, 1);
    assert_eq!(json_of(&out)["error"]["field"], "ttlSeconds");
}

#[test]
fn explain_shows_the_grant_and_the_jwt_claims_without_a_signature() {
    let (code, out, _) = run(
        &[
            "policy",
            "explain",
            "dev/policy.json",
            "--claims",
            r#"{"sub":"alice","name":"Alice","roles":["moderator"],"exp":1700000600}"#,
            "--now",
            NOW,
            "--json",
        ],
        &[("ABLY_API_KEY", "devApp.devKey:dev-key-secret-not-for-production")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("dev-key-secret"), "key material in the output: {out}");
    let v = json_of(&out);
    assert_eq!(v["status"], 200);
    let g = &v["grant"];
    assert_eq!(g["clientId"], "alice");
    assert_eq!(
        g["ttlSeconds"], 600,
        "bound to the session's exp, under the role's 900 s"
    );
    assert_eq!(g["channelClaims"], json!({"chat:*": "moderator"}));
    assert_eq!(g["mayRevoke"], false);
    assert_eq!(
        v["dropped"],
        json!([{"field": "revocationKey", "entry": "{org}", "reason": "the caller has no `org` claim (or it is an object, a list or null)"}])
    );
    let jwt = &v["jwt"];
    assert_eq!(
        jwt["header"],
        json!({"typ": "JWT", "alg": "HS256", "kid": "devApp.devKey"})
    );
    assert_eq!(jwt["claims"]["iat"], 1_700_000_000);
    assert_eq!(jwt["claims"]["exp"], 1_700_000_600);
    assert_eq!(jwt["claims"]["x-ably-clientId"], "alice");
    assert!(jwt["bytes"].as_u64().unwrap() > 300);
    assert!(v.get("signature").is_none() && jwt.get("signature").is_none());
}

#[test]
fn explain_answers_refusals_as_the_function_would() {
    let (code, out, _) = run(
        &[
            "policy",
            "explain",
            "dev/policy.json",
            "--claims",
            r#"{"sub":"alice"}"#,
            "--param",
            "clientId=bob",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "an explained refusal is not a tool failure");
    let v = json_of(&out);
    assert_eq!((v["status"].clone(), v["code"].clone()), (json!(403), json!(40102)));
    assert!(v["grant"].is_null());
    let (_, out, _) = run(
        &[
            "policy",
            "explain",
            "dev/policy.json",
            "--anonymous",
            "--route",
            "revoke",
            "--json",
        ],
        &[],
    );
    assert_eq!(json_of(&out)["status"], 401);
    let (_, out, _) = run(&["policy", "explain", "dev/policy.json", "--anonymous"], &[]);
    assert!(out.starts_with("200 issued") && out.contains("public:*"), "{out}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["policy", "frobnicate"],
        vec!["policy", "explain", "dev/policy.json"],
        vec!["policy", "check", "dev/policy.json", "--route", "nope"],
        vec!["policy", "check", "no/such/file.json"],
        vec!["policy", "check", "dev/policy.json", "--bogus"],
        vec!["dev-token"],
    ] {
        let (code, _, err) = run(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("usage:"), "{err}");
    }
}

#[test]
fn policy_test_passes_the_shipped_cases_and_fails_a_wrong_expectation() {
    let (code, out, _) = run(
        &[
            "policy",
            "test",
            "dev/policy.json",
            "examples/policy-tests/dev-policy.cases.json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.ends_with("passed, 0 failed"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count() + 1,
        out.lines().count()
    );
    let cases = temp_file(
        "cases.json",
        &json!({"cases": [
            {"name": "right", "claims": {"sub": "alice"}, "expect": {"status": 200, "clientId": "alice"}},
            {"name": "wrong", "claims": {"sub": "alice"}, "expect": {"capabilityIncludes": {"chat:bob": ["publish"]}}},
            {"name": "wrong status", "anonymous": true, "expect": {"status": 401}}
        ]})
        .to_string(),
    );
    let (code, out, _) = run(&["policy", "test", "dev/policy.json", cases.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  wrong: expected the capability to include"), "{out}");
    assert!(
        out.contains("FAIL  wrong status: expected status 401, got 200"),
        "{out}"
    );
    assert!(out.ends_with("1 passed, 2 failed\n"), "{out}");
    let (_, out, _) = run(
        &["policy", "test", "dev/policy.json", cases.to_str().unwrap(), "--json"],
        &[],
    );
    let v = json_of(&out);
    assert_eq!((v["passed"].clone(), v["failed"].clone()), (json!(1), json!(2)));
}

#[test]
fn the_chat_example_policy_is_valid_and_passes_its_cases() {
    let (code, out, _) = run(
        &[
            "policy",
            "check",
            "examples/policies/chat.json",
            "--route",
            "jwt",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let v = json_of(&out);
    assert_eq!(
        (v["ok"].clone(), v["warnings"].clone()),
        (json!(true), json!([])),
        "{out}"
    );
    let (code, out, _) = run(
        &[
            "policy",
            "test",
            "examples/policies/chat.json",
            "examples/policy-tests/chat.cases.json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("5 passed, 0 failed\n"), "{out}");
}

/// Every kind of expectation, each written wrong once against dev/policy.json: each case
/// fails with its own message (a check that silently passed would show as "ok").
#[test]
fn policy_test_fails_each_kind_of_wrong_expectation_with_its_message() {
    let alice = json!({"sub": "alice", "name": "Alice", "org": "acme"});
    let wrong = [
        ("status", json!({"status": 403}), "expected status 403, got 200"),
        ("code", json!({"code": 40100}), "expected code 40100, got null"),
        (
            "clientId",
            json!({"clientId": "bob"}),
            r#"expected clientId "bob", got "alice""#,
        ),
        (
            "revocationKey",
            json!({"revocationKey": "other"}),
            r#"expected revocationKey "other", got "acme""#,
        ),
        (
            "mayRevoke",
            json!({"mayRevoke": true}),
            "expected mayRevoke true, got false",
        ),
        (
            "channelClaims",
            json!({"channelClaims": {"chat:*": "nobody"}}),
            r#"expected channelClaims {"chat:*":"nobody"}, got"#,
        ),
        (
            "roomClaims",
            json!({"roomClaims": {"room": "x"}}),
            r#"expected roomClaims {"room":"x"}, got"#,
        ),
        ("rateLimits", json!({"rateLimits": {}}), "expected rateLimits {}, got"),
        (
            "capability",
            json!({"capability": {"chat:*": ["subscribe"]}}),
            r#"expected capability {"chat:*":["subscribe"]}, got"#,
        ),
        (
            "capabilityIncludes",
            json!({"capabilityIncludes": {"chat:bob": ["publish"]}}),
            "expected the capability to include",
        ),
        (
            "capabilityExcludes",
            json!({"capabilityExcludes": {"chat:alice": ["publish"]}}),
            r#"expected the capability to exclude {"chat:alice":["publish"]}, but it grants {"chat:alice":["publish"]}"#,
        ),
        (
            "ttlSeconds",
            json!({"ttlSeconds": 60}),
            "expected ttlSeconds 60, got 3600",
        ),
        (
            "ttlSeconds bounds",
            json!({"ttlSeconds": {"min": 10, "max": 100}}),
            r#"expected ttlSeconds {"max":100,"min":10}, got 3600"#,
        ),
        (
            "claims",
            json!({"claims": {"x-ably-revocation-key": "other"}}),
            r#"expected JWT claim "x-ably-revocation-key" = "other", got "acme""#,
        ),
        (
            "claimsPresent",
            json!({"claimsPresent": ["ably.no.such.claim"]}),
            r#"expected JWT claim "ably.no.such.claim", which is absent"#,
        ),
        (
            "claimsAbsent",
            json!({"claimsAbsent": ["x-ably-revocation-key"]}),
            r#"expected no JWT claim "x-ably-revocation-key", got "acme""#,
        ),
        (
            "dropped",
            json!({"dropped": ["{org}"]}),
            r#"expected dropped entries ["{org}"], got []"#,
        ),
    ];
    let mut cases: Vec<Value> = wrong
        .iter()
        .map(|(name, expect, _)| json!({"name": name, "claims": alice, "expect": expect}))
        .collect();
    cases.push(json!({
        "name": "messageContains",
        "route": "revoke",
        "anonymous": true,
        "expect": {"status": 401, "messageContains": "no such words"}
    }));
    let file = temp_file("every-check.cases.json", &json!({ "cases": cases }).to_string());
    let (code, out, _) = run(&["policy", "test", "dev/policy.json", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    for (name, _, message) in &wrong {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("FAIL  {name}: ")))
            .unwrap_or_else(|| panic!("{name} did not fail:\n{out}"));
        assert!(line.contains(message), "{name}: {line}");
    }
    assert!(
        out.contains(r#"FAIL  messageContains: expected the message to contain "no such words""#),
        "{out}"
    );
    assert!(
        out.ends_with(&format!("0 passed, {} failed\n", wrong.len() + 1)),
        "{out}"
    );
}

#[test]
fn dev_token_is_an_hs256_session_token_that_decode_explains() {
    let (code, out, _) = run(
        &[
            "dev-token",
            "--sub",
            "alice",
            "--roles",
            "moderator,admin",
            "--ttl",
            "600",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let token = out.trim();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(DEV_CALLER_SECRET.as_bytes()),
        &validation,
    )
    .expect("signed with the dev caller secret");
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(data.claims["roles"], json!(["moderator", "admin"]));
    assert_eq!(data.claims["org"], "acme");
    assert_eq!(
        data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap(),
        600
    );
    let (code, out, _) = run(&["token", "decode", token, "--json"], &[]);
    assert_eq!(code, 0);
    let v = json_of(&out);
    assert_eq!(v["kind"], "JWT");
    assert_eq!(v["lifetime"], "10 min");
    assert!(v["expiry"].as_str().unwrap().starts_with("expires in"), "{v}");
}

#[test]
fn token_decode_explains_an_ably_jwt_and_a_token_request() {
    let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiIsImtpZCI6ImFwcElkLmtleUlkIn0.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwieC1hYmx5LWNhcGFiaWxpdHkiOiJ7XCIqXCI6W1wic3Vic2NyaWJlXCJdfSIsIngtYWJseS1jbGllbnRJZCI6InVzZXItMTIzIn0.CCJ7XiTwO9n4SnuNgjRugkfopae4mog_wH-ux4Gbjgw";
    let (code, out, _) = run(&["token", "decode", jwt, "--now", "1700000600", "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let v = json_of(&out);
    assert_eq!(v["kind"], "Ably JWT");
    assert_eq!(v["capability"], json!({"*": ["subscribe"]}));
    assert_eq!(v["expiry"], "expires in 50 min");
    let tr = r#"{"keyName":"a.b","ttl":900000,"capability":"{\"chat:*\":[\"subscribe\"]}","clientId":"alice","timestamp":1700000000000,"nonce":"n","mac":"m"}"#;
    let (code, out, _) = run(&["token", "decode", tr], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("TokenRequest") && out.contains("chat:*") && out.contains("15 min"),
        "{out}"
    );
    let (code, _, _) = run(&["token", "decode", "not-a-token"], &[]);
    assert_eq!(code, 1);
}
