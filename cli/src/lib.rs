//! `ably-auth`: the operator's tool for the issuance policy, built on the very code the
//! functions run (`shared`): no second implementation.
//!
//! - `policy check FILE [--route R]`: start-up validation (same errors, same field paths)
//!   plus warnings ([`shared::policy::Policy::warnings`]).
//! - `policy explain FILE --claims JSON|@file | --anonymous [--route R] [--param n=v]…`:
//!   the outcome for that caller and those SDK parameters, decided by
//!   [`shared::issue::decide`] (the issuing functions' own steps) or
//!   [`shared::revoke::authorize`].
//! - `policy test FILE CASES.json`: operator-written cases, one line each, and a summary.
//! - `token decode TOKEN`: a JWT or TokenRequest explained (signature not checked).
//! - `dev-token --sub S …`: a development caller token signed with the dev caller secret.
//!
//! `--json` prints JSON on stdout. Exit 0 = ok, 1 = the policy or a test failed, 2 = usage.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use shared::caller::{Caller, Claims};
use shared::capability::Capability;
use shared::env::{flag, Env};
use shared::error::IssueError;
use shared::grant::Grant;
use shared::jwt::{self, JwtClaims};
use shared::params;
use shared::policy::{Dropped, Policy};
use shared::route::{Route, TokenKind};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// The key name shown in explained JWT headers when `ABLY_API_KEY` is not set (a JWT's
/// size depends on it; nothing secret is ever read or printed).
pub const PLACEHOLDER_KEY_NAME: &str = "appId.keyId";

pub const USAGE: &str = "\
usage:
  ably-auth policy check FILE [--route jwt|token-request|ably-token|revoke] [--json]
  ably-auth policy explain FILE (--claims JSON|@file | --anonymous) [--route R] [--param name=value]... [--now UNIX_SECONDS] [--key-name APP.KEY] [--json]
  ably-auth policy test FILE CASES.json [--route R] [--json]
  ably-auth token decode TOKEN|@file|- [--now UNIX_SECONDS] [--json]
  ably-auth dev-token --sub SUB [--name NAME] [--org ORG] [--roles a,b] [--ttl SECONDS] [--secret SECRET]

Environment: ABLY_KEY_REVOCABLE=true validates TTLs for a revocable key (at most 1 h), as the
functions do; ABLY_API_KEY's name (never its secret) is the explained JWT's kid;
CALLER_HS256_SECRET signs dev-token's tokens (default: dev/dev.env's).
Exit status: 0 ok, 1 the policy or a test failed, 2 usage error.";

/// What one run printed and how it ended.
#[derive(Debug, Default)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn usage(message: impl std::fmt::Display) -> Output {
        Output {
            code: EXIT_USAGE,
            stdout: String::new(),
            stderr: format!("ably-auth: {message}\n\n{USAGE}\n"),
        }
    }
    fn ok(stdout: String) -> Output {
        Output {
            code: EXIT_OK,
            stdout,
            stderr: String::new(),
        }
    }
}

/// Where a run reads its environment, files and time (the process's, or a test's).
pub struct Context<'a> {
    pub env: &'a dyn Env,
    pub now_ms: u64,
}

// ---------------------------------------------------------------------------------------
// Arguments

#[derive(Default)]
struct Args {
    positional: Vec<String>,
    json: bool,
    anonymous: bool,
    options: Vec<(String, String)>,
}

const VALUE_FLAGS: &[&str] = &[
    "route", "claims", "param", "now", "key-name", "sub", "name", "org", "roles", "ttl", "secret",
];

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let mut args = Args::default();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            let Some(flag) = a.strip_prefix("--") else {
                args.positional.push(a.clone());
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag, None),
            };
            match name {
                "json" => args.json = true,
                "anonymous" => args.anonymous = true,
                n if VALUE_FLAGS.contains(&n) => {
                    let value = match inline {
                        Some(v) => v,
                        None => it.next().cloned().ok_or_else(|| format!("--{n} needs a value"))?,
                    };
                    args.options.push((n.to_owned(), value));
                }
                other => return Err(format!("unknown option --{other}")),
            }
        }
        Ok(args)
    }

    fn one(&self, name: &str) -> Result<Option<&str>, String> {
        let mut values = self.options.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(format!("--{name} given twice"));
        }
        Ok(first)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn allow_only(&self, names: &[&str]) -> Result<(), String> {
        match self.options.iter().find(|(n, _)| !names.contains(&n.as_str())) {
            Some((n, _)) => Err(format!("--{n} does not apply to this command")),
            None => Ok(()),
        }
    }
}

/// `jwt`, `token-request`, `ably-token` (or `token`), `revoke`.
pub fn parse_route(name: &str) -> Result<Route, String> {
    Ok(match name {
        "jwt" => Route::Jwt,
        "token-request" => Route::TokenRequest,
        "ably-token" | "token" => Route::AblyToken,
        "revoke" => Route::Revoke,
        other => {
            return Err(format!(
                "unknown route {other:?}: use jwt, token-request, ably-token or revoke"
            ))
        }
    })
}

pub fn route_name(route: Route) -> &'static str {
    match route {
        Route::Jwt => "jwt",
        Route::TokenRequest => "token-request",
        Route::AblyToken => "ably-token",
        Route::Revoke => "revoke",
    }
}

/// Text of `value`, or of the file after `@`.
fn text_arg(value: &str) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}")),
        None if value == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok(s)
        }
        None => Ok(value.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------
// Entry point

/// Run one command line (without the program name).
pub fn run(raw: &[String], cx: &Context<'_>) -> Output {
    let args = match Args::parse(raw) {
        Ok(a) => a,
        Err(e) => return Output::usage(e),
    };
    let words: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["policy", "check", file] => policy_check(file, &args, cx),
        ["policy", "explain", file] => policy_explain(file, &args, cx),
        ["policy", "test", file, cases] => policy_test(file, cases, &args, cx),
        ["token", "decode", token] => token_decode(token, &args, cx),
        ["dev-token"] => dev_token(&args, cx),
        ["help"] | [] => return Output::ok(format!("{USAGE}\n")),
        _ => Err(Usage(format!("unknown command {:?}", words.join(" ")))),
    };
    match result {
        Ok(out) => out,
        Err(Usage(e)) => Output::usage(e),
    }
}

struct Usage(String);

impl From<String> for Usage {
    fn from(s: String) -> Usage {
        Usage(s)
    }
}

fn revocable(cx: &Context<'_>) -> Result<bool, Usage> {
    flag(cx.env, "ABLY_KEY_REVOCABLE").map_err(|e| Usage(e.to_string()))
}

/// The policy file validated as the functions' start-up does for `route`: `Err(message)`
/// with the start-up error (`invalid token policy at \`field\`: …`).
pub fn load_policy(text: &str, revocable: bool, route: Route) -> Result<Policy, shared::policy::PolicyError> {
    let policy = Policy::from_json(text, revocable)?;
    if matches!(route, Route::TokenRequest | Route::AblyToken) {
        policy.check_token_route()?;
    }
    Ok(policy)
}

fn route_arg(args: &Args) -> Result<Option<Route>, Usage> {
    Ok(args.one("route")?.map(parse_route).transpose()?)
}

fn read_file(path: &str) -> Result<String, Usage> {
    std::fs::read_to_string(path).map_err(|e| Usage(format!("cannot read {path:?}: {e}")))
}

fn print_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------
// policy check

fn policy_check(file: &str, args: &Args, cx: &Context<'_>) -> Result<Output, Usage> {
    args.allow_only(&["route"])?;
    let route = route_arg(args)?;
    let text = read_file(file)?;
    let revocable = revocable(cx)?;
    let result = check(&text, revocable, route);
    let code = if result["ok"] == json!(true) {
        EXIT_OK
    } else {
        EXIT_FAILED
    };
    let stdout = if args.json {
        print_json(&result)
    } else {
        let mut s = String::new();
        if let Some(e) = result["error"].as_object() {
            s.push_str(&format!(
                "error: invalid token policy at `{}`: {}\n",
                e["field"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            ));
        }
        for w in result["warnings"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "warning: `{}`: {}\n",
                w["field"].as_str().unwrap_or(""),
                w["message"].as_str().unwrap_or("")
            ));
        }
        if code == EXIT_OK {
            let n = result["warnings"].as_array().map_or(0, Vec::len);
            s.push_str(&format!(
                "{file}: valid for {} ({n} warning{})\n",
                route.map_or("/auth/jwt", |r| route_path(r)),
                if n == 1 { "" } else { "s" }
            ));
        }
        s
    };
    Ok(Output {
        code,
        stdout,
        stderr: String::new(),
    })
}

fn route_path(route: Route) -> &'static str {
    match route {
        Route::Jwt => "/auth/jwt",
        Route::TokenRequest => "/auth/token-request",
        Route::AblyToken => "/auth/token",
        Route::Revoke => "/auth/revoke",
    }
}

/// `{"ok", "error": {"field","message"} | null, "warnings": [{"field","message"}]}`.
pub fn check(text: &str, revocable: bool, route: Option<Route>) -> Value {
    match load_policy(text, revocable, route.unwrap_or(Route::Jwt)) {
        Err(e) => json!({"ok": false, "error": {"field": e.field, "message": e.message}, "warnings": []}),
        Ok(policy) => {
            let warnings: Vec<Value> = policy
                .warnings(route)
                .into_iter()
                .map(|w| json!({"field": w.field, "message": w.message}))
                .collect();
            json!({"ok": true, "error": null, "warnings": warnings})
        }
    }
}

// ---------------------------------------------------------------------------------------
// policy explain

/// One caller and the SDK's parameters, as explain and test take them.
pub struct Ask {
    pub caller: Caller,
    /// Token parameters as the SDK sends them (`clientId`, `capability`, `ttl` ms, …).
    pub params: Vec<(String, String)>,
}

impl Ask {
    /// A verified caller with these claims (must be a JSON object), or the anonymous one.
    pub fn new(claims: Option<Value>, params: Vec<(String, String)>) -> Result<Ask, String> {
        let caller = match claims {
            None => Caller::Anonymous,
            Some(Value::Object(map)) => Caller::Verified {
                claims: Claims::new(map),
                via: "explain",
            },
            Some(other) => return Err(format!("caller claims must be a JSON object, got {other}")),
        };
        Ok(Ask { caller, params })
    }
}

/// The token parameters as the function reads them: through `shared::params::parse` on a
/// GET request whose query string carries them, form-encoded as an SDK sends them.
pub fn hints_request(params: &[(String, String)]) -> lambda_http::Request {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish();
    let uri = if query.is_empty() {
        "https://explain.invalid/auth".to_owned()
    } else {
        format!("https://explain.invalid/auth?{query}")
    };
    lambda_http::http::Request::builder()
        .method("GET")
        .uri(uri)
        .body(lambda_http::Body::Empty)
        .unwrap_or_default()
}

fn error_value(e: &IssueError) -> (u16, Value, Value) {
    (e.status(), json!(e.code()), json!(e.to_string()))
}

fn pairs_object<V: Clone + Into<Value>>(pairs: &[(String, V)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect())
}

/// A rate as the JWT writes it: whole numbers without a fraction.
fn rate_number(rate: f64) -> Value {
    if rate.fract() == 0.0 && rate.abs() < 1e15 {
        json!(rate as i64)
    } else {
        json!(rate)
    }
}

fn grant_value(g: &Grant, jitter_percent: u64) -> Value {
    let capability: Value = serde_json::from_str(&g.capability.to_canonical_string()).unwrap_or(Value::Null);
    let mut v = json!({
        "clientId": g.client_id,
        "capability": capability,
        "ttlSeconds": g.ttl_ms / 1000,
        "ttlMs": g.ttl_ms,
        "channelClaims": pairs_object(&g.channel_claims),
        "roomClaims": pairs_object(&g.room_claims),
        "rateLimits": Value::Object(g.rate_limits.iter().map(|(r, rate)| (r.clone(), rate_number(*rate))).collect()),
        "revocationKey": g.revocation_key,
        "mayRevoke": g.may_revoke,
    });
    if jitter_percent > 0 {
        let min = shared::issue::jittered_ttl_ms(g.ttl_ms, jitter_percent, 1.0);
        v["ttlJitter"] =
            json!({"percent": jitter_percent, "minSeconds": min / 1000, "maxSeconds": g.ttl_ms / 1000, "minMs": min});
    }
    v
}

fn dropped_value(d: &[Dropped]) -> Value {
    Value::Array(
        d.iter()
            .map(|d| json!({"field": d.field, "entry": d.entry, "reason": d.reason}))
            .collect(),
    )
}

/// The outcome for `ask` on `route`, at `now_ms`, as the function decides it:
/// `{"route","status","code","message","grant","dropped","jwt"|"tokenRequest"}`. The TTL is
/// shown before jitter (`grant.ttlJitter` gives the range the function picks from).
pub fn explain(policy: &Policy, route: Route, ask: &Ask, now_ms: u64, key_name: &str) -> Value {
    let mut dropped = Vec::new();
    let request = hints_request(&ask.params);
    let decided = match route.token() {
        None => {
            let mut client_id = None;
            let _ = policy.grant_traced(&ask.caller, &mut dropped);
            shared::revoke::authorize(policy, &ask.caller, &mut client_id)
        }
        Some(kind) => params::parse(&request).and_then(|hints| {
            shared::issue::decide(policy, kind, &ask.caller, &hints, now_ms, key_name, 0.0, &mut dropped)
        }),
    };
    let mut out = json!({"route": route_name(route)});
    match decided {
        Err(e) => {
            let (status, code, message) = error_value(&e);
            out["status"] = json!(status);
            out["code"] = code;
            out["message"] = message;
            out["grant"] = Value::Null;
            out["dropped"] = dropped_value(&dropped);
        }
        Ok(grant) => {
            out["status"] = json!(200);
            out["code"] = Value::Null;
            out["message"] = Value::Null;
            out["grant"] = grant_value(&grant, policy.ttl_jitter_percent());
            out["dropped"] = dropped_value(&dropped);
            let capability = grant.capability.to_canonical_string();
            match route.token() {
                Some(TokenKind::Jwt) => {
                    let claims = JwtClaims::for_grant(&grant, &capability, now_ms);
                    let header: Value = serde_json::from_str(&jwt::header_json_for(key_name)).unwrap_or(Value::Null);
                    let payload: Value = serde_json::from_str(&jwt::payload_json(&claims)).unwrap_or(Value::Null);
                    out["jwt"] = json!({
                        "header": header,
                        "claims": payload,
                        "payload": jwt::payload_json(&claims),
                        "bytes": jwt::encoded_len_for(key_name, &claims),
                        "expiresInSeconds": claims.expires_at_seconds.saturating_sub(now_ms / 1000),
                    });
                }
                Some(TokenKind::TokenRequest | TokenKind::AblyToken) => {
                    out["tokenRequest"] = json!({
                        "keyName": key_name,
                        "ttl": grant.ttl_ms,
                        "capability": capability,
                        "clientId": grant.client_id,
                        "timestamp": now_ms,
                    });
                }
                None => {}
            }
        }
    }
    out
}

fn key_name(args: &Args, cx: &Context<'_>) -> Result<String, Usage> {
    if let Some(k) = args.one("key-name")? {
        return Ok(k.to_owned());
    }
    Ok(cx
        .env
        .var("ABLY_API_KEY")
        .and_then(|k| shared::key::ApiKey::parse(k.trim()).ok())
        .map_or_else(|| PLACEHOLDER_KEY_NAME.to_owned(), |k| k.name().to_owned()))
}

fn now_arg(args: &Args, cx: &Context<'_>) -> Result<u64, Usage> {
    match args.one("now")? {
        None => Ok(cx.now_ms),
        Some(s) => s
            .parse::<u64>()
            .map(|s| s * 1000)
            .map_err(|_| Usage(format!("--now expects Unix seconds, got {s:?}"))),
    }
}

fn params_arg(args: &Args) -> Result<Vec<(String, String)>, Usage> {
    args.all("param")
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Usage(format!("--param expects name=value, got {p:?}")))
        })
        .collect()
}

fn policy_explain(file: &str, args: &Args, cx: &Context<'_>) -> Result<Output, Usage> {
    args.allow_only(&["route", "claims", "param", "now", "key-name"])?;
    let route = route_arg(args)?.unwrap_or(Route::Jwt);
    let claims =
        match (args.one("claims")?, args.anonymous) {
            (Some(_), true) => return Err(Usage("give --claims or --anonymous, not both".into())),
            (None, false) => return Err(Usage(
                "give the caller's claims (--claims '{\"sub\":\"alice\"}' or --claims @claims.json), or --anonymous"
                    .into(),
            )),
            (Some(c), false) => {
                let text = text_arg(c)?;
                Some(serde_json::from_str::<Value>(&text).map_err(|e| Usage(format!("--claims is not JSON: {e}")))?)
            }
            (None, true) => None,
        };
    let ask = Ask::new(claims, params_arg(args)?)?;
    let text = read_file(file)?;
    let policy = match load_policy(&text, revocable(cx)?, route) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Output {
                code: EXIT_FAILED,
                stdout: if args.json {
                    print_json(&json!({"error": {"field": e.field, "message": e.message}}))
                } else {
                    String::new()
                },
                stderr: format!("ably-auth: {e}\n"),
            })
        }
    };
    let now_ms = now_arg(args, cx)?;
    let v = explain(&policy, route, &ask, now_ms, &key_name(args, cx)?);
    Ok(Output::ok(if args.json { print_json(&v) } else { explain_text(&v) }))
}

/// Seconds in words: `45 s`, `15 min`, `1 h`, `1 h 30 min`, `2 d`.
pub fn duration_words(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        s => format!("{} d", s / 86_400),
    }
}

fn explain_text(v: &Value) -> String {
    let mut s = String::new();
    let status = v["status"].as_u64().unwrap_or(0);
    if status != 200 {
        s.push_str(&format!(
            "{status} ({}) refused: {}\n",
            v["code"],
            v["message"].as_str().unwrap_or("")
        ));
    } else {
        let g = &v["grant"];
        s.push_str("200 issued\n");
        s.push_str(&format!(
            "  clientId        {}\n",
            g["clientId"].as_str().map_or("(none)".to_owned(), |c| format!("{c:?}"))
        ));
        let ttl = g["ttlSeconds"].as_u64().unwrap_or(0);
        s.push_str(&format!("  ttl             {ttl} s ({})", duration_words(ttl)));
        if let Some(j) = g.get("ttlJitter") {
            s.push_str(&format!(
                ", minus up to {}% at random (down to {} s)",
                j["percent"], j["minSeconds"]
            ));
        }
        s.push('\n');
        s.push_str("  capability\n");
        for (r, ops) in g["capability"].as_object().into_iter().flatten() {
            s.push_str(&format!("    {r:<28} {}\n", ops_list(ops)));
        }
        for (title, key) in [
            ("channel claims", "channelClaims"),
            ("room claims", "roomClaims"),
            ("rate limits /s", "rateLimits"),
        ] {
            if let Some(m) = g[key].as_object().filter(|m| !m.is_empty()) {
                s.push_str(&format!("  {title}\n"));
                for (r, val) in m {
                    s.push_str(&format!("    {r:<28} {}\n", val));
                }
            }
        }
        if let Some(k) = g["revocationKey"].as_str() {
            s.push_str(&format!("  revocationKey   {k:?}\n"));
        }
        if g["mayRevoke"] == json!(true) {
            s.push_str("  mayRevoke       yes (may call /auth/revoke)\n");
        }
    }
    if let Some(d) = v["dropped"].as_array().filter(|d| !d.is_empty()) {
        s.push_str("  dropped\n");
        for d in d {
            s.push_str(&format!(
                "    {} {:?}: {}\n",
                d["field"].as_str().unwrap_or(""),
                d["entry"].as_str().unwrap_or(""),
                d["reason"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(j) = v.get("jwt") {
        s.push_str(&format!(
            "  JWT             {} bytes, expires in {} (signature not shown)\n",
            j["bytes"],
            duration_words(j["expiresInSeconds"].as_u64().unwrap_or(0))
        ));
        s.push_str(&format!("    header {}\n    claims {}\n", j["header"], j["claims"]));
    }
    if let Some(t) = v.get("tokenRequest") {
        s.push_str(&format!("  TokenRequest    {t} (nonce and mac not shown)\n"));
    }
    s
}

fn ops_list(ops: &Value) -> String {
    ops.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// policy test

fn policy_test(file: &str, cases_file: &str, args: &Args, cx: &Context<'_>) -> Result<Output, Usage> {
    args.allow_only(&["route", "now", "key-name"])?;
    let cases_text = read_file(cases_file)?;
    let doc: Value = serde_json::from_str(&cases_text).map_err(|e| Usage(format!("{cases_file}: not JSON: {e}")))?;
    let default_route = match route_arg(args)? {
        Some(r) => r,
        None => doc["route"]
            .as_str()
            .map(parse_route)
            .transpose()?
            .unwrap_or(Route::Jwt),
    };
    let cases = doc["cases"]
        .as_array()
        .ok_or_else(|| Usage(format!("{cases_file}: expected {{\"cases\": [...]}}")))?;
    let text = read_file(file)?;
    let revocable = revocable(cx)?;
    let now_ms = now_arg(args, cx)?;
    let key_name = key_name(args, cx)?;
    let mut results = Vec::new();
    let mut lines = String::new();
    let (mut passed, mut failed) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"]
            .as_str()
            .map_or_else(|| format!("case {}", i + 1), str::to_owned);
        let failures = match run_case(&text, revocable, default_route, case, now_ms, &key_name) {
            Ok(f) => f,
            Err(e) => return Err(Usage(format!("{cases_file}: case {:?}: {e}", name))),
        };
        if failures.is_empty() {
            passed += 1;
            lines.push_str(&format!("ok    {name}\n"));
        } else {
            failed += 1;
            lines.push_str(&format!("FAIL  {name}: {}\n", failures.join("; ")));
        }
        results.push(json!({"name": name, "ok": failures.is_empty(), "failures": failures}));
    }
    lines.push_str(&format!("{passed} passed, {failed} failed\n"));
    let stdout = if args.json {
        print_json(&json!({"cases": results, "passed": passed, "failed": failed}))
    } else {
        lines
    };
    Ok(Output {
        code: if failed == 0 { EXIT_OK } else { EXIT_FAILED },
        stdout,
        stderr: String::new(),
    })
}

const CASE_FIELDS: &[&str] = &[
    "name",
    "claims",
    "anonymous",
    "sessionExpiresIn",
    "params",
    "route",
    "expect",
    "$comment",
];
const EXPECT_FIELDS: &[&str] = &[
    "status",
    "code",
    "clientId",
    "capability",
    "capabilityIncludes",
    "capabilityExcludes",
    "ttlSeconds",
    "channelClaims",
    "roomClaims",
    "rateLimits",
    "revocationKey",
    "mayRevoke",
    "claims",
    "claimsPresent",
    "claimsAbsent",
    "dropped",
    "messageContains",
];

/// One case: `Ok(failures)` (empty = passed), `Err` for a malformed case (usage).
fn run_case(
    policy_text: &str,
    revocable: bool,
    default_route: Route,
    case: &Value,
    now_ms: u64,
    key_name: &str,
) -> Result<Vec<String>, String> {
    let obj = case.as_object().ok_or("a case must be an object")?;
    if let Some(k) = obj.keys().find(|k| !CASE_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {k:?}; the fields are {}",
            CASE_FIELDS.join(", ")
        ));
    }
    let expect = case["expect"].as_object().ok_or("a case needs \"expect\": {...}")?;
    if let Some(k) = expect.keys().find(|k| !EXPECT_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown expectation {k:?}; the expectations are {}",
            EXPECT_FIELDS.join(", ")
        ));
    }
    let route = case["route"]
        .as_str()
        .map(parse_route)
        .transpose()?
        .unwrap_or(default_route);
    let anonymous = case["anonymous"] == json!(true);
    let mut claims = match (&case["claims"], anonymous) {
        (Value::Null, true) => None,
        (Value::Object(m), false) => Some(m.clone()),
        (Value::Null, false) => return Err("give \"claims\": {...} or \"anonymous\": true".into()),
        _ => return Err("\"claims\" must be an object, and not given with \"anonymous\"".into()),
    };
    if let Some(n) = case.get("sessionExpiresIn") {
        let n = n.as_i64().ok_or("\"sessionExpiresIn\" must be seconds (an integer)")?;
        let m = claims.as_mut().ok_or("\"sessionExpiresIn\" needs claims")?;
        m.insert("exp".into(), json!((now_ms / 1000) as i64 + n));
    }
    let params: Vec<(String, String)> = match &case["params"] {
        Value::Null => Vec::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect(),
        _ => return Err("\"params\" must be an object of SDK parameters".into()),
    };
    let ask = Ask::new(claims.map(Value::Object), params)?;
    let policy = match load_policy(policy_text, revocable, route) {
        Ok(p) => p,
        Err(e) => return Ok(vec![format!("the policy is invalid for {}: {e}", route_path(route))]),
    };
    let got = explain(&policy, route, &ask, now_ms, key_name);
    Ok(compare(expect, &got))
}

fn capability_arg(v: &Value, what: &str) -> Result<Capability, String> {
    Capability::from_value(v).map_err(|e| format!("{what}: {e}"))
}

/// The failed expectations of one case.
fn compare(expect: &Map<String, Value>, got: &Value) -> Vec<String> {
    let mut f = Vec::new();
    let status = got["status"].as_u64().unwrap_or(0);
    let refused = || {
        format!(
            "got {status} ({}: {})",
            got["code"],
            got["message"].as_str().unwrap_or("")
        )
    };
    let want_status = expect.get("status").and_then(Value::as_u64).unwrap_or(200);
    if status != want_status {
        f.push(format!(
            "expected status {want_status}, {}",
            if status == 200 { "got 200".to_owned() } else { refused() }
        ));
        return f;
    }
    if let Some(code) = expect.get("code") {
        if &got["code"] != code {
            f.push(format!("expected code {code}, got {}", got["code"]));
        }
    }
    if let Some(m) = expect.get("messageContains").and_then(Value::as_str) {
        if !got["message"].as_str().unwrap_or("").contains(m) {
            f.push(format!("expected the message to contain {m:?}, got {}", got["message"]));
        }
    }
    let g = &got["grant"];
    for key in [
        "clientId",
        "revocationKey",
        "mayRevoke",
        "channelClaims",
        "roomClaims",
        "rateLimits",
    ] {
        if let Some(want) = expect.get(key) {
            if g.is_null() {
                f.push(format!("expected {key} {want}, but nothing was granted"));
            } else if &g[key] != want {
                f.push(format!("expected {key} {want}, got {}", g[key]));
            }
        }
    }
    let granted = Capability::from_value(&g["capability"]).unwrap_or_default();
    if let Some(want) = expect.get("capability") {
        match capability_arg(want, "expect.capability") {
            Ok(c) if c == granted => {}
            Ok(_) => f.push(format!("expected capability {want}, got {}", g["capability"])),
            Err(e) => f.push(e),
        }
    }
    if let Some(want) = expect.get("capabilityIncludes") {
        match capability_arg(want, "expect.capabilityIncludes") {
            Ok(c) => {
                // Every asked (resource, operations) is in the intersection under its own name.
                let covered = Capability::intersect(&c, &granted);
                let all_in = c
                    .iter()
                    .all(|(r, ops)| covered.get(r).is_some_and(|g| ops.intersect(g) == ops));
                if !all_in {
                    f.push(format!(
                        "expected the capability to include {want}, got {}",
                        g["capability"]
                    ));
                }
            }
            Err(e) => f.push(e),
        }
    }
    if let Some(want) = expect.get("capabilityExcludes") {
        match capability_arg(want, "expect.capabilityExcludes") {
            Ok(c) => {
                let overlap = Capability::intersect(&c, &granted);
                if !overlap.is_empty() {
                    f.push(format!(
                        "expected the capability to exclude {want}, but it grants {}",
                        overlap.to_canonical_string()
                    ));
                }
            }
            Err(e) => f.push(e),
        }
    }
    if let Some(want) = expect.get("ttlSeconds") {
        let ttl = g["ttlSeconds"].as_u64().unwrap_or(0);
        let min_ttl = g["ttlJitter"]["minSeconds"].as_u64().unwrap_or(ttl);
        let (lo, hi) = match want {
            Value::Number(n) => (n.as_u64().unwrap_or(0), n.as_u64().unwrap_or(0)),
            Value::Object(b) => (
                b.get("min").and_then(Value::as_u64).unwrap_or(0),
                b.get("max").and_then(Value::as_u64).unwrap_or(u64::MAX),
            ),
            _ => (0, u64::MAX),
        };
        if min_ttl < lo || ttl > hi {
            let got = if min_ttl == ttl {
                format!("{ttl}")
            } else {
                format!("{min_ttl}..{ttl}")
            };
            f.push(format!("expected ttlSeconds {want}, got {got}"));
        }
    }
    let claims = &got["jwt"]["claims"];
    if let Some(want) = expect.get("claims").and_then(Value::as_object) {
        for (k, v) in want {
            if &claims[k] != v {
                f.push(format!("expected JWT claim {k:?} = {v}, got {}", claims[k]));
            }
        }
    }
    for name in expect
        .get("claimsPresent")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let n = name.as_str().unwrap_or("");
        if claims.get(n).is_none() {
            f.push(format!("expected JWT claim {n:?}, which is absent"));
        }
    }
    for name in expect
        .get("claimsAbsent")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let n = name.as_str().unwrap_or("");
        if let Some(v) = claims.get(n) {
            f.push(format!("expected no JWT claim {n:?}, got {v}"));
        }
    }
    if let Some(want) = expect.get("dropped").and_then(Value::as_array) {
        let entries: Vec<&Value> = got["dropped"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| &d["entry"])
            .collect();
        let want_entries: Vec<&Value> = want.iter().collect();
        if entries != want_entries {
            f.push(format!(
                "expected dropped entries {}, got {}",
                json!(want_entries),
                json!(entries)
            ));
        }
    }
    f
}

// ---------------------------------------------------------------------------------------
// token decode

fn token_decode(token: &str, args: &Args, cx: &Context<'_>) -> Result<Output, Usage> {
    args.allow_only(&["now"])?;
    let text = text_arg(token)?;
    let now_s = now_arg(args, cx)? / 1000;
    let v = decode(text.trim(), now_s);
    let ok = v.get("error").is_none();
    let stdout = if args.json { print_json(&v) } else { decode_text(&v) };
    Ok(Output {
        code: if ok { EXIT_OK } else { EXIT_FAILED },
        stdout,
        stderr: String::new(),
    })
}

fn expiry_words(exp_s: i64, now_s: i64) -> String {
    if exp_s >= now_s {
        format!("expires in {}", duration_words((exp_s - now_s) as u64))
    } else {
        format!("expired {} ago", duration_words((now_s - exp_s) as u64))
    }
}

fn capability_value(text: Option<&str>) -> Value {
    match text {
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
        None => Value::Null,
    }
}

/// A JWT (Ably's or a caller's) or a TokenRequest, explained. The signature or MAC is not
/// checked (that needs the secret) and never printed.
pub fn decode(token: &str, now_s: u64) -> Value {
    let now = now_s as i64;
    if token.starts_with('{') {
        let Ok(tr) = serde_json::from_str::<Value>(token) else {
            return json!({"error": "the text starts with { but is not JSON: paste a TokenRequest as JSON, or a JWT"});
        };
        if tr.get("keyName").is_none() || tr.get("mac").is_none() {
            return json!({"error": "this JSON is not a TokenRequest (it needs keyName and mac)"});
        }
        let ttl_ms = tr["ttl"].as_u64();
        let timestamp = tr["timestamp"].as_i64().unwrap_or(0);
        let mut out = json!({
            "kind": "TokenRequest",
            "keyName": tr["keyName"],
            "clientId": tr["clientId"],
            "capability": capability_value(tr["capability"].as_str()),
            "ttlMs": tr["ttl"],
            "timestamp": timestamp,
            "signature": "mac present, not checked",
        });
        if let Some(ttl) = ttl_ms {
            out["ttlWords"] = json!(duration_words(ttl / 1000));
            out["expiry"] = json!(format!(
                "once exchanged, {} (the request itself must be used within 60 s of {timestamp})",
                duration_words(ttl / 1000)
            ));
            let _ = now;
        }
        return out;
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return json!({"error": "not a JWT (three base64url parts separated by dots) nor a TokenRequest (JSON); an opaque Ably Token cannot be decoded"});
    }
    let part = |p: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (part(parts[0]), part(parts[1])) else {
        return json!({"error": "the JWT's header or claims are not base64url-encoded JSON"});
    };
    let mut out = json!({"kind": if claims.get("x-ably-capability").is_some() { "Ably JWT" } else { "JWT" }, "header": header, "claims": claims.clone(), "signature": "present, not checked"});
    if let Some(c) = claims.get("x-ably-capability") {
        out["capability"] = capability_value(c.as_str());
    }
    for (key, prefix) in [
        ("channelClaims", "ably.channel."),
        ("roomClaims", "ably.room."),
        ("rateLimits", "ably.limits.publish.perAttachment.maxRate."),
    ] {
        let m: Map<String, Value> = claims
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|r| (r.to_owned(), v.clone())))
            .collect();
        if !m.is_empty() {
            out[key] = Value::Object(m);
        }
    }
    if let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) {
        out["lifetime"] = json!(duration_words(exp.saturating_sub(iat).max(0) as u64));
    }
    if let Some(exp) = claims["exp"].as_i64() {
        out["expiry"] = json!(expiry_words(exp, now));
    }
    out
}

fn decode_text(v: &Value) -> String {
    if let Some(e) = v["error"].as_str() {
        return format!("error: {e}\n");
    }
    let mut s = format!("{}\n", v["kind"].as_str().unwrap_or(""));
    for key in ["header", "claims", "keyName", "clientId", "ttlMs", "timestamp"] {
        if let Some(x) = v.get(key).filter(|x| !x.is_null()) {
            s.push_str(&format!("  {key:<14}{x}\n"));
        }
    }
    if let Some(c) = v.get("capability").and_then(Value::as_object) {
        s.push_str("  capability\n");
        for (r, ops) in c {
            s.push_str(&format!("    {r:<28} {}\n", ops_list(ops)));
        }
    }
    for key in ["channelClaims", "roomClaims", "rateLimits"] {
        if let Some(m) = v.get(key).and_then(Value::as_object) {
            s.push_str(&format!("  {key}\n"));
            for (r, val) in m {
                s.push_str(&format!("    {r:<28} {val}\n"));
            }
        }
    }
    for key in ["lifetime", "ttlWords", "expiry", "signature"] {
        if let Some(x) = v[key].as_str() {
            s.push_str(&format!("  {key:<14}{x}\n"));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// dev-token

/// An HS256 JWT of `claims` signed with `secret` (the dev caller token).
pub fn hs256_token(claims: &Value, secret: &str) -> String {
    let mut input = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    input.push('.');
    input.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    input
}

/// `CALLER_HS256_SECRET` from dev/dev.env (the public development caller secret).
fn dev_env_secret() -> Option<String> {
    let text = std::fs::read_to_string("dev/dev.env").ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("CALLER_HS256_SECRET="))
        .map(|v| v.trim().to_owned())
        .next()
}

fn dev_token(args: &Args, cx: &Context<'_>) -> Result<Output, Usage> {
    args.allow_only(&["sub", "name", "org", "roles", "ttl", "secret"])?;
    let sub = args
        .one("sub")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Usage("--sub is required and must not be empty (e.g. --sub alice)".into()))?;
    let ttl: u64 = match args.one("ttl")? {
        None => 3600,
        Some(t) => t
            .parse()
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| Usage(format!("--ttl must be a positive number of seconds, got {t:?}")))?,
    };
    let secret = match args.one("secret")? {
        Some(s) => s.to_owned(),
        None => cx
            .env
            .var("CALLER_HS256_SECRET")
            .or_else(dev_env_secret)
            .ok_or_else(|| {
                Usage(
                    "no secret: pass --secret, set CALLER_HS256_SECRET, or run from the repository root (dev/dev.env)"
                        .into(),
                )
            })?,
    };
    let name = args.one("name")?.filter(|n| !n.is_empty()).unwrap_or(sub);
    let org = args.one("org")?.unwrap_or("acme");
    let roles: Vec<&str> = args
        .one("roles")?
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    let now = cx.now_ms / 1000;
    let mut claims = json!({"sub": sub, "name": name});
    if !org.is_empty() {
        claims["org"] = json!(org);
    }
    claims["roles"] = json!(roles);
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + ttl);
    Ok(Output::ok(format!("{}\n", hs256_token(&claims, &secret))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(duration_words(45), "45 s");
        assert_eq!(duration_words(900), "15 min");
        assert_eq!(duration_words(3600), "1 h");
        assert_eq!(duration_words(5400), "1 h 30 min");
        assert_eq!(duration_words(3 * 86_400), "3 d");
    }

    #[test]
    fn arguments_take_values_inline_or_next_and_refuse_unknown_options() {
        let a = Args::parse(&[
            "x".into(),
            "--route=jwt".into(),
            "--param".into(),
            "ttl=1".into(),
            "--json".into(),
        ])
        .unwrap();
        assert_eq!(a.positional, ["x"]);
        assert_eq!(a.one("route").unwrap(), Some("jwt"));
        assert_eq!(a.all("param"), ["ttl=1"]);
        assert!(a.json);
        assert!(Args::parse(&["--bogus".into()]).is_err());
        assert!(Args::parse(&["--route".into()]).is_err());
    }
}
