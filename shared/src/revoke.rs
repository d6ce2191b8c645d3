//! `POST /auth/revoke`: the revocation request body, and its execution against Ably in
//! batches of at most [`MAX_TARGETS_PER_CALL`] targets with the results merged.
//!
//! ```json
//! {"clientIds":["alice"],"revocationKeys":["org-7"],"channels":["chat:lobby"],
//!  "issuedBefore":1700000000000,"allowReauthMargin":true}
//! ```
//!
//! Everything Ably would refuse about the body is refused here first, with a 400 naming the
//! field and before any call to Ably: more than [`MAX_TARGETS`] entries (counted before
//! duplicates are dropped), an `issuedBefore` in the future or over an hour old. When Ably
//! still refuses a call because of what the admin asked for (HTTP 400, code 400xx), the
//! answer is a 400 with Ably's code and message ([`IssueError::RefusedByAbly`]); every other
//! Ably failure keeps the mapping of [`crate::ably_rest`] (a 4xx about our key or Ably's
//! configuration is a 500).

use crate::ably_rest::{AblyError, AblyRest, BatchResult, RevokeRequest, MAX_TARGETS_PER_CALL};
use crate::caller::Caller;
use crate::deps::Deps;
use crate::error::{truncate_for_message, IssueError};
use crate::grant::Grant;
use crate::http::Answer;
use crate::key::ApiKey;
use crate::log::Who;
use crate::params;
use crate::policy::Policy;
use crate::route::Route;
use lambda_http::http::Method;
use lambda_http::Request;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Entries per revocation request (ten Ably calls), counted before duplicates are dropped;
/// larger lists must be split by the caller.
pub const MAX_TARGETS: usize = 1000;
/// Ably refuses an `issuedBefore` more than one hour in the past.
pub const MAX_ISSUED_BEFORE_AGE_MS: u64 = 60 * 60 * 1000;
/// Clock difference tolerated for an `issuedBefore` ahead of our (calibrated) clock: up to
/// this far ahead it means "now" and is not sent (Ably then uses its own clock, and refuses
/// any future time); further ahead is a 400.
pub const ISSUED_BEFORE_SKEW_MS: u64 = 60 * 1000;
/// All the Ably calls of one revocation (up to ten batches, each with its fallbacks) end
/// within this: one [`crate::ably_rest::REQUEST_DEADLINE`], below the 10 s function timeout.
pub const REVOKE_DEADLINE: Duration = crate::ably_rest::REQUEST_DEADLINE;
/// Ably's codes for a malformed request (400xx): with HTTP 400 from `revokeTokens`, caused by
/// what the admin asked for.
const REQUEST_ERROR_CODES: std::ops::RangeInclusive<u32> = 40000..=40099;

const FIELDS: &str = "clientIds, revocationKeys, channels, issuedBefore, allowReauthMargin";
const EXAMPLE: &str = r#"{"clientIds":["alice"]}"#;

/// A validated revocation request: Ably targets (`clientId:…`, `revocationKey:…`,
/// `channel:…`), de-duplicated, in the order given. `issued_before` is `None` for "now"
/// (absent, or within [`ISSUED_BEFORE_SKEW_MS`] ahead of our clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub targets: Vec<String>,
    pub issued_before: Option<u64>,
    pub allow_reauth_margin: Option<bool>,
}

/// Parse and validate the JSON body. `now_ms` bounds `issuedBefore`. Every error is a 400
/// naming the field (or 413 / 415 for the body as a whole).
pub fn parse(request: &Request, now_ms: u64) -> Result<Revocation, IssueError> {
    let body = params::body_bytes(request)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IssueError::bad_request(
            "body",
            format!("is empty: POST a JSON object naming the targets, e.g. {EXAMPLE}"),
        ));
    }
    let (content_type, media_type) = params::content_type(request);
    if media_type != "application/json" {
        return Err(IssueError::UnsupportedMediaType(truncate_for_message(content_type, 64)));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        IssueError::bad_request(
            "body",
            format!("the JSON does not parse ({e}); send an object such as {EXAMPLE}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(IssueError::bad_request(
            "body",
            format!("must be a JSON object such as {EXAMPLE}"),
        ));
    };
    from_map(&map, now_ms)
}

fn from_map(map: &Map<String, Value>, now_ms: u64) -> Result<Revocation, IssueError> {
    if let Some(unknown) = map.keys().find(|k| {
        !matches!(
            k.as_str(),
            "clientIds" | "revocationKeys" | "channels" | "issuedBefore" | "allowReauthMargin"
        )
    }) {
        return Err(IssueError::bad_request(
            "body",
            format!(
                "unknown field {:?}; the fields are {FIELDS}",
                truncate_for_message(unknown, 40)
            ),
        ));
    }
    const LISTS: [(&str, &str); 3] = [
        ("clientIds", "clientId:"),
        ("revocationKeys", "revocationKey:"),
        ("channels", "channel:"),
    ];
    // The limit first, on the entries as given: a huge list is refused before any work on it.
    let given: usize = LISTS
        .iter()
        .filter_map(|(field, _)| map.get(*field).and_then(Value::as_array).map(Vec::len))
        .sum();
    if given > MAX_TARGETS {
        return Err(IssueError::bad_request(
            "clientIds",
            format!(
                "{given} entries in clientIds, revocationKeys and channels together; send at most {MAX_TARGETS} per request (split the list)"
            ),
        ));
    }
    let mut targets = Vec::with_capacity(given);
    let mut seen = HashSet::with_capacity(given);
    for (field, prefix) in LISTS {
        for name in string_list(map, field)? {
            let target = format!("{prefix}{name}");
            if seen.insert(target.clone()) {
                targets.push(target);
            }
        }
    }
    if targets.is_empty() {
        return Err(IssueError::bad_request(
            "clientIds",
            format!(
                "no target given: name at least one entry in clientIds, revocationKeys or channels, e.g. {EXAMPLE}"
            ),
        ));
    }
    let issued_before = match map.get("issuedBefore") {
        None | Some(Value::Null) => None,
        Some(v) => issued_before(v, now_ms)?,
    };
    let allow_reauth_margin = match map.get("allowReauthMargin") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(IssueError::bad_request(
                "allowReauthMargin",
                "must be true or false (true delays enforcement by 30 s so clients can re-authenticate)",
            ))
        }
    };
    Ok(Revocation {
        targets,
        issued_before,
        allow_reauth_margin,
    })
}

/// `field`: absent, null, or an array of non-empty strings without control characters.
fn string_list<'m>(map: &'m Map<String, Value>, field: &'static str) -> Result<Vec<&'m str>, IssueError> {
    let bad = || {
        IssueError::bad_request(
            field,
            "must be an array of non-empty strings without control characters, e.g. [\"alice\"]",
        )
    };
    match map.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(s.as_str()),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// `Some(ms)` to send, `None` for "now" (slightly ahead of our clock: Ably refuses a future
/// time, and its own "now" is what such a value means).
fn issued_before(v: &Value, now_ms: u64) -> Result<Option<u64>, IssueError> {
    let ms = v.as_u64().ok_or_else(|| {
        IssueError::bad_request(
            "issuedBefore",
            "must be an integer number of milliseconds since the Unix epoch, e.g. 1700000000000 (omit it for \"now\")",
        )
    })?;
    if ms > now_ms.saturating_add(ISSUED_BEFORE_SKEW_MS) {
        return Err(IssueError::bad_request(
            "issuedBefore",
            format!(
                "is {} s in the future; Ably accepts only times up to now: omit it for \"now\" (tokens issued after this request are not affected by it anyway)",
                (ms - now_ms) / 1000
            ),
        ));
    }
    if ms > now_ms {
        return Ok(None);
    }
    if ms < now_ms.saturating_sub(MAX_ISSUED_BEFORE_AGE_MS) {
        return Err(IssueError::bad_request(
            "issuedBefore",
            "is more than one hour in the past, which Ably refuses; tokens of revocable keys live at most one hour anyway, so omit it",
        ));
    }
    Ok(Some(ms))
}

/// A batch that failed after `done` of `total` targets were already revoked.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFailure {
    pub error: AblyError,
    pub done: usize,
    pub total: usize,
}

impl From<BatchFailure> for IssueError {
    /// The mapped Ably failure; when earlier batches went through, the message says so
    /// (revocation is idempotent: retrying the whole request is safe).
    fn from(f: BatchFailure) -> Self {
        let progress = format!(
            "{} of {} targets were revoked before the failure; revocation is idempotent, so retry the whole request",
            f.done, f.total
        );
        if let AblyError::Rejected {
            status: 400,
            code: Some(code),
            message,
        } = &f.error
        {
            if REQUEST_ERROR_CODES.contains(code) {
                let mut text = format!(
                    "Ably refused the revocation request (Ably error {code}): {}; correct the targets or issuedBefore and retry",
                    truncate_for_message(message, 300)
                );
                if f.done > 0 {
                    text = format!("{text}. {progress}");
                }
                return IssueError::RefusedByAbly {
                    code: *code,
                    message: text.into(),
                };
            }
        }
        let e = IssueError::from(f.error);
        if f.done == 0 {
            return e;
        }
        match e {
            IssueError::Unavailable {
                what,
                retry_after_seconds,
            } => IssueError::Unavailable {
                what: format!("{what} ({progress})").into(),
                retry_after_seconds,
            },
            IssueError::Upstream(crate::error::UpstreamFault::BadGateway(m)) => IssueError::Upstream(
                crate::error::UpstreamFault::BadGateway(format!("{m}; {progress}").into()),
            ),
            IssueError::Upstream(crate::error::UpstreamFault::Timeout(m)) => {
                IssueError::Upstream(crate::error::UpstreamFault::Timeout(format!("{m}; {progress}").into()))
            }
            IssueError::Internal(m) => IssueError::Internal(format!("{m}. {progress}").into()),
            other => other,
        }
    }
}

/// Revoke every target, [`MAX_TARGETS_PER_CALL`] per Ably call, in order, and merge the
/// answers. Stops at the first failed call, and when the calls together pass
/// [`REVOKE_DEADLINE`] (a 504 saying how far it got, rather than the function timing out).
pub async fn execute(ably: &dyn AblyRest, key: &ApiKey, revocation: &Revocation) -> Result<BatchResult, BatchFailure> {
    execute_within(ably, key, revocation, REVOKE_DEADLINE).await
}

/// [`execute`] with all Ably calls together ending within `deadline`.
pub async fn execute_within(
    ably: &dyn AblyRest,
    key: &ApiKey,
    revocation: &Revocation,
    deadline: Duration,
) -> Result<BatchResult, BatchFailure> {
    let started = tokio::time::Instant::now();
    let total = revocation.targets.len();
    let mut merged = BatchResult::default();
    let mut done = 0;
    for chunk in revocation.targets.chunks(MAX_TARGETS_PER_CALL) {
        let request = RevokeRequest {
            targets: chunk.to_vec(),
            issued_before: revocation.issued_before,
            allow_reauth_margin: revocation.allow_reauth_margin,
        };
        let remaining = crate::deadline::bounded(deadline.saturating_sub(started.elapsed()));
        let answer = tokio::time::timeout(remaining, ably.revoke_tokens(key, &request))
            .await
            .unwrap_or_else(|_| {
                Err(AblyError::Timeout(format!(
                    "revokeTokens: the calls did not finish in time ({} ms at most, and no longer than the function timeout leaves)",
                    deadline.as_millis()
                )))
            })
            .map_err(|error| BatchFailure { error, done, total })?;
        merge(&mut merged, answer);
        done += chunk.len();
    }
    Ok(merged)
}

/// Add one batch's answer to the running result.
pub fn merge(into: &mut BatchResult, batch: BatchResult) {
    into.success_count += batch.success_count;
    into.failure_count += batch.failure_count;
    into.results.extend(batch.results);
}

pub(crate) const NOT_REVOCABLE: &str = "token revocation is not enabled: enable revocable tokens on the Ably key (Ably dashboard, API Keys, \"Revocable tokens\"), then set ABLY_KEY_REVOCABLE=true (token TTLs are then at most 1 hour)";
const NOT_A_REVOKER: &str = "your identity may not revoke tokens: only callers holding a role whose policy grant has \"mayRevoke\": true can; ask the operator for that role";

/// May this caller revoke tokens? Anonymous: 401; a grant without `mayRevoke`: 403.
/// `client_id` learns the caller's clientId once the policy has built it (for the log).
/// The revocation route runs this; so does `ably-auth policy explain --route revoke`.
pub fn authorize(policy: &Policy, caller: &Caller, client_id: &mut Option<String>) -> Result<Grant, IssueError> {
    if matches!(caller, Caller::Anonymous) {
        return Err(IssueError::MissingCredential);
    }
    let grant = policy.grant(caller)?;
    client_id.clone_from(&grant.client_id);
    if !grant.may_revoke {
        return Err(IssueError::forbidden(NOT_A_REVOKER));
    }
    Ok(grant)
}

/// The revocation path (`POST /auth/revoke`): a verified caller whose grant has `mayRevoke`
/// revokes tokens at Ably; `who` learns the caller and clientId for the request log.
pub(crate) async fn handle(deps: &Deps, request: &Request, who: &mut Who) -> Result<Answer, IssueError> {
    if request.method() != Method::POST {
        return Err(IssueError::method_not_allowed(request.method().as_str(), "POST"));
    }
    let caller = deps.callers.identify(request).await?;
    if let Caller::Verified { via, .. } = &caller {
        who.caller = Some(via);
    }
    authorize(&deps.policy, &caller, &mut who.client_id)?;
    deps.clock.calibrate().await?;
    let revocation = parse(request, deps.clock.now_ms())?;
    let ably = deps
        .ably
        .as_deref()
        .ok_or(IssueError::Misconfigured(NOT_REVOCABLE.into()))?;
    let key = deps.keys.current().await?;
    let route = Route::Revoke.name();
    let result = execute(ably, &key, &revocation).await.map_err(|f| {
        tracing::error!(
            route,
            revoked_before_failure = f.done,
            targets = f.total,
            ably_code = f.error.ably_code(),
            ably_error = %f.error,
            "Ably revocation failed"
        );
        IssueError::from(f)
    })?;
    tracing::info!(
        route,
        revoker = who.client_id.as_deref(),
        targets = ?revocation.targets,
        issued_before = revocation.issued_before,
        success_count = result.success_count,
        failure_count = result.failure_count,
        "tokens revoked"
    );
    Answer::json(&result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ably_rest::{SignTokenRequest, TargetResult, TokenDetails};
    use crate::future::BoxFuture;
    use crate::params::MAX_BODY_BYTES;
    use lambda_http::Body;
    use std::sync::Mutex;

    const NOW: u64 = 1_700_000_000_000;

    fn post(content_type: &str, body: &str) -> Request {
        lambda_http::http::Request::builder()
            .method("POST")
            .uri("/auth/revoke")
            .header("content-type", content_type)
            .body(Body::Text(body.to_owned()))
            .unwrap()
    }

    fn parse_json(body: &str) -> Result<Revocation, IssueError> {
        parse(&post("application/json", body), NOW)
    }

    fn field_of(e: IssueError) -> &'static str {
        match e {
            IssueError::BadRequest { field, .. } => field,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn targets_are_prefixed_deduplicated_and_ordered() {
        let r = parse_json(
            r#"{"clientIds":["alice","bob","alice"],"revocationKeys":["org-7"],"channels":["chat:*"],"issuedBefore":1699999999000,"allowReauthMargin":true}"#,
        )
        .unwrap();
        assert_eq!(
            r.targets,
            [
                "clientId:alice",
                "clientId:bob",
                "revocationKey:org-7",
                "channel:chat:*"
            ]
        );
        assert_eq!(r.issued_before, Some(1_699_999_999_000));
        assert_eq!(r.allow_reauth_margin, Some(true));
        let r = parse(&post("application/json; charset=utf-8", r#"{"clientIds":["a"]}"#), NOW).unwrap();
        assert_eq!((r.issued_before, r.allow_reauth_margin), (None, None));
    }

    #[test]
    fn each_bad_field_is_named() {
        for (body, field) in [
            (r#"{"clientIds":"alice"}"#, "clientIds"),
            (r#"{"clientIds":[""]}"#, "clientIds"),
            (r#"{"clientIds":[1]}"#, "clientIds"),
            (r#"{"clientIds":["a\nb"]}"#, "clientIds"),
            (r#"{"revocationKeys":[null]}"#, "revocationKeys"),
            (r#"{"channels":{}}"#, "channels"),
            (r#"{"clientIds":[]}"#, "clientIds"),
            (r#"{}"#, "clientIds"),
            (r#"{"clientIds":["a"],"issuedBefore":"1700000000000"}"#, "issuedBefore"),
            (r#"{"clientIds":["a"],"issuedBefore":1.5}"#, "issuedBefore"),
            (r#"{"clientIds":["a"],"issuedBefore":-1}"#, "issuedBefore"),
            (r#"{"clientIds":["a"],"issuedBefore":1800000000000}"#, "issuedBefore"),
            (r#"{"clientIds":["a"],"issuedBefore":1600000000000}"#, "issuedBefore"),
            (r#"{"clientIds":["a"],"allowReauthMargin":"yes"}"#, "allowReauthMargin"),
            (r#"{"clientIDs":["a"]}"#, "body"),
            (r#"["a"]"#, "body"),
            (r#"{"clientIds":"#, "body"),
            ("  ", "body"),
        ] {
            assert_eq!(field_of(parse_json(body).unwrap_err()), field, "{body}");
        }
        let e = parse_json(r#"{"clientIDs":["a"]}"#).unwrap_err();
        assert!(
            e.to_string().contains("clientIDs") && e.to_string().contains("clientIds"),
            "{e}"
        );
    }

    #[test]
    fn too_many_targets_are_refused() {
        let ids: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("u{i}")).collect();
        let body = serde_json::json!({ "clientIds": ids }).to_string();
        assert_eq!(field_of(parse_json(&body).unwrap_err()), "clientIds");
    }

    #[test]
    fn the_target_limit_counts_entries_before_duplicates_are_dropped() {
        let body = serde_json::json!({ "clientIds": vec!["alice"; MAX_TARGETS], "channels": ["a"] }).to_string();
        let e = parse_json(&body).unwrap_err().to_string();
        assert!(e.contains("1001 entries") && e.contains("at most 1000"), "{e}");
        // 10,800 distinct targets in a body under the 64 KiB limit: two-character names in each list.
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let names: Vec<String> = (0..3600)
            .map(|i| String::from_utf8(vec![ALPHABET[i / 62], ALPHABET[i % 62]]).unwrap())
            .collect();
        let body = serde_json::json!({ "clientIds": names, "revocationKeys": names, "channels": names }).to_string();
        let e = parse_json(&body).unwrap_err();
        assert!(e.to_string().contains("10800 entries"), "{e}");
    }

    #[test]
    fn a_thousand_targets_are_deduplicated_in_order() {
        let ids: Vec<String> = (0..MAX_TARGETS / 2).map(|i| format!("u{}", i % 250)).collect();
        let keys: Vec<String> = (0..MAX_TARGETS / 2).map(|i| format!("u{i}")).collect();
        let body = serde_json::json!({ "clientIds": ids, "revocationKeys": keys }).to_string();
        let r = parse_json(&body).unwrap();
        assert_eq!(r.targets.len(), 250 + 500);
        assert_eq!(r.targets[..3], ["clientId:u0", "clientId:u1", "clientId:u2"]);
        assert_eq!(r.targets[249], "clientId:u249");
        assert_eq!(r.targets[250], "revocationKey:u0", "same name, other kind: kept");
    }

    #[test]
    fn issued_before_slightly_ahead_means_now_and_further_ahead_is_refused() {
        let at = |ms: u64| parse_json(&format!(r#"{{"clientIds":["a"],"issuedBefore":{ms}}}"#));
        assert_eq!(at(NOW).unwrap().issued_before, Some(NOW));
        assert_eq!(at(NOW - 1).unwrap().issued_before, Some(NOW - 1));
        assert_eq!(at(NOW + 1).unwrap().issued_before, None, "not sent: Ably's now");
        assert_eq!(at(NOW + ISSUED_BEFORE_SKEW_MS).unwrap().issued_before, None);
        let e = at(NOW + ISSUED_BEFORE_SKEW_MS + 1).unwrap_err();
        assert_eq!(
            (e.status(), e.code(), field_of(e.clone())),
            (400, 40000, "issuedBefore")
        );
        assert!(e.to_string().contains("in the future"), "{e}");
    }

    #[test]
    fn ably_400xx_about_the_request_is_a_400_with_ablys_code_and_message() {
        let rejected = |status, code| BatchFailure {
            error: AblyError::Rejected {
                status,
                code: Some(code),
                message: "issuedBefore must be within the last hour".into(),
            },
            done: 0,
            total: 3,
        };
        let e = IssueError::from(rejected(400, 40003));
        assert_eq!((e.status(), e.code()), (400, 40003));
        assert!(
            e.to_string().contains("issuedBefore must be within the last hour"),
            "{e}"
        );
        let later = IssueError::from(BatchFailure {
            done: 100,
            total: 250,
            ..rejected(400, 40000)
        });
        assert_eq!((later.status(), later.code()), (400, 40000));
        assert!(later.to_string().contains("100 of 250 targets were revoked"), "{later}");
        // About our key or Ably's configuration: a server-side fault.
        for (status, code) in [(401, 40101), (400, 40121), (401, 40133), (404, 40400), (403, 40300)] {
            let e = IssueError::from(rejected(status, code));
            assert_eq!((e.status(), e.code()), (500, 50000), "{status} {code}");
        }
    }

    #[test]
    fn body_must_be_json() {
        let e = parse(&post("application/x-www-form-urlencoded", "clientIds=a"), NOW).unwrap_err();
        assert_eq!((e.status(), e.code()), (415, 41500));
        let big = format!(r#"{{"clientIds":["{}"]}}"#, "a".repeat(MAX_BODY_BYTES));
        assert_eq!(parse_json(&big).unwrap_err().status(), 413);
    }

    /// Answers every target with success, except `clientId:fail…` targets; records calls.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<RevokeRequest>>,
        fail_call: Option<usize>,
    }

    impl AblyRest for Recorder {
        fn request_token<'a>(&'a self, _: &'a SignTokenRequest<'a>) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
            unreachable!()
        }
        fn revoke_tokens<'a>(
            &'a self,
            _: &'a ApiKey,
            request: &'a RevokeRequest,
        ) -> BoxFuture<'a, Result<BatchResult, AblyError>> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(request.clone());
            if self.fail_call == Some(calls.len()) {
                return Box::pin(std::future::ready(Err(AblyError::BadGateway {
                    status: Some(500),
                    code: Some(50000),
                    message: "boom".into(),
                })));
            }
            let results: Vec<TargetResult> = request
                .targets
                .iter()
                .map(|t| TargetResult {
                    target: t.clone(),
                    issued_before: (!t.starts_with("clientId:fail")).then_some(NOW),
                    applies_at: (!t.starts_with("clientId:fail")).then_some(NOW),
                    error: t
                        .starts_with("clientId:fail")
                        .then(|| serde_json::json!({"message":"nope","code":40000,"statusCode":400})),
                })
                .collect();
            let failures = results.iter().filter(|r| r.error.is_some()).count() as u64;
            Box::pin(std::future::ready(Ok(BatchResult {
                success_count: results.len() as u64 - failures,
                failure_count: failures,
                results,
            })))
        }
        fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>> {
            unreachable!()
        }
    }

    fn revocation(n: usize) -> Revocation {
        Revocation {
            targets: (0..n)
                .map(|i| {
                    if i % 50 == 7 {
                        format!("clientId:fail{i}")
                    } else {
                        format!("clientId:u{i}")
                    }
                })
                .collect(),
            issued_before: Some(NOW),
            allow_reauth_margin: Some(true),
        }
    }

    #[tokio::test]
    async fn batches_of_at_most_100_are_merged_in_order() {
        let key = ApiKey::parse("a.b:s").unwrap();
        let ably = Recorder::default();
        let r = revocation(250);
        let merged = execute(&ably, &key, &r).await.unwrap();
        let calls = ably.calls.lock().unwrap();
        assert_eq!(
            calls.iter().map(|c| c.targets.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert!(calls
            .iter()
            .all(|c| c.issued_before == Some(NOW) && c.allow_reauth_margin == Some(true)));
        assert_eq!((merged.success_count, merged.failure_count), (245, 5));
        assert_eq!(
            merged.results.iter().map(|t| t.target.as_str()).collect::<Vec<_>>(),
            r.targets.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }

    /// Answers every call after `delay_ms`.
    struct Slow(u64);

    impl AblyRest for Slow {
        fn request_token<'a>(&'a self, _: &'a SignTokenRequest<'a>) -> BoxFuture<'a, Result<TokenDetails, AblyError>> {
            unreachable!()
        }
        fn revoke_tokens<'a>(
            &'a self,
            _: &'a ApiKey,
            request: &'a RevokeRequest,
        ) -> BoxFuture<'a, Result<BatchResult, AblyError>> {
            let n = request.targets.len() as u64;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(self.0)).await;
                Ok(BatchResult {
                    success_count: n,
                    ..BatchResult::default()
                })
            })
        }
        fn time(&self) -> BoxFuture<'_, Result<u64, AblyError>> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn all_batches_together_end_within_the_deadline_with_504_and_progress() {
        let key = ApiKey::parse("a.b:s").unwrap();
        let started = std::time::Instant::now();
        let failure = execute_within(&Slow(50), &key, &revocation(1000), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(matches!(failure.error, AblyError::Timeout(_)), "{failure:?}");
        // 50 ms per batch of 100 against 300 ms for ten batches: some went through, not all.
        assert!(
            (100..1000).contains(&failure.done) && failure.done % 100 == 0,
            "{failure:?}"
        );
        let e = IssueError::from(failure);
        assert_eq!((e.status(), e.code()), (504, 50400));
        assert!(e.to_string().contains("retry the whole request"), "{e}");
        let merged = execute_within(&Slow(1), &key, &revocation(250), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(merged.success_count, 250);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_end_by_the_request_deadline_within_their_own() {
        let key = ApiKey::parse("a.b:s").unwrap();
        let started = tokio::time::Instant::now();
        // 100 ms per batch, REVOKE_DEADLINE (7 s) for ten: the request's 250 ms cut it first.
        let failure = crate::deadline::within(
            started + Duration::from_millis(250),
            execute(&Slow(100), &key, &revocation(1000)),
        )
        .await
        .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert!(matches!(failure.error, AblyError::Timeout(_)), "{failure:?}");
        assert_eq!((failure.done, failure.total), (200, 1000));
        let e = IssueError::from(failure);
        assert_eq!((e.status(), e.code()), (504, 50400));
    }

    #[tokio::test]
    async fn a_failed_batch_stops_and_reports_progress() {
        let key = ApiKey::parse("a.b:s").unwrap();
        let ably = Recorder {
            fail_call: Some(2),
            ..Recorder::default()
        };
        let failure = execute(&ably, &key, &revocation(250)).await.unwrap_err();
        assert_eq!((failure.done, failure.total), (100, 250));
        assert_eq!(ably.calls.lock().unwrap().len(), 2);
        let e = IssueError::from(failure);
        assert_eq!((e.status(), e.code()), (502, 50200));
        assert!(e.to_string().contains("100 of 250 targets were revoked"), "{e}");
    }
}
