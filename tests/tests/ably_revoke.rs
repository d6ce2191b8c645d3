//! `revoke-tokens`: who may revoke, the request body, batching of ≤ 100 targets per Ably
//! call with merged results, Basic auth at (a fake) Ably, and Ably's failures.

mod fake_ably;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fake_ably::support::*;
use fake_ably::{FakeAbly, Fault};
use integration_tests::*;
use serde_json::{json, Value};
use shared::Route;
use std::time::{Duration, Instant};

const REVOCABLE: (&str, Option<&str>) = ("ABLY_KEY_REVOCABLE", Some("true"));

fn revoker(fake: &FakeAbly) -> shared::Service {
    service(Route::Revoke, fake, &[REVOCABLE])
}

async fn revoke_as_admin(fake: &FakeAbly, body: &str) -> lambda_http::Response<lambda_http::Body> {
    revoker(fake)
        .handle(post_json("/auth/revoke", body, &[("authorization", &admin())]))
        .await
}

#[tokio::test]
async fn admin_revokes_and_gets_the_batch_result() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = revoker(&fake)
        .handle(event(include_str!("../../events/revoke-admin.json")))
        .await;
    let result = assert_json_ok(&response);
    assert_eq!(result["successCount"], 3);
    assert_eq!(result["failureCount"], 0);
    let results = result["results"].as_array().expect("results");
    let targets: Vec<&str> = results.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["clientId:alice", "clientId:bob", "revocationKey:acme"]);
    for r in results {
        let issued_before = r["issuedBefore"].as_u64().expect("issuedBefore");
        assert_eq!(
            r["appliesAt"].as_u64(),
            Some(issued_before + 30_000),
            "allowReauthMargin passed on"
        );
    }

    let calls = fake.requests_to("/revokeTokens");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, format!("/keys/{DEV_KEY_NAME}/revokeTokens"));
    let expected = format!("Basic {}", STANDARD.encode(DEV_API_KEY));
    assert_eq!(call.header("authorization"), Some(expected.as_str()));
    assert_eq!(call.header("x-ably-version"), Some("6"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        call.json(),
        json!({"targets":["clientId:alice","clientId:bob","revocationKey:acme"],"allowReauthMargin":true})
    );
}

#[tokio::test]
async fn large_revocation_is_sent_in_batches_of_100_and_merged_in_order() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let ids: Vec<String> = (0..245).map(|i| format!("user-{i}")).collect();
    let issued_before = system_ms() - 60_000;
    let body = json!({"clientIds": ids, "channels": ["chat:a", "chat:b", "chat:c", "chat:d", "chat:e"], "issuedBefore": issued_before});
    let result = assert_json_ok(&revoke_as_admin(&fake, &body.to_string()).await);

    let calls = fake.requests_to("/revokeTokens");
    let sizes: Vec<usize> = calls
        .iter()
        .map(|c| c.json()["targets"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert!(calls.iter().all(|c| c.json()["issuedBefore"] == json!(issued_before)));
    // Channel revocation is not enabled at the fake: those five fail per target.
    assert_eq!(
        (result["successCount"].as_u64(), result["failureCount"].as_u64()),
        (Some(245), Some(5))
    );
    let results = result["results"].as_array().unwrap();
    assert_eq!(results.len(), 250);
    assert_eq!(results[0]["target"], "clientId:user-0");
    assert_eq!(results[244]["target"], "clientId:user-244");
    assert_eq!(results[249]["target"], "channel:chat:e");
    assert!(results[249]["error"]["code"].is_u64());
    assert_eq!(results[0]["issuedBefore"], json!(issued_before));
}

#[tokio::test]
async fn caller_without_may_revoke_gets_403_40300() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = revoker(&fake)
        .handle(event(include_str!("../../events/revoke-not-allowed.json")))
        .await;
    let message = assert_error(&response, 403, 40300);
    assert!(message.contains("mayRevoke"), "{message}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn no_caller_gets_401_40100_even_with_an_anonymous_grant() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = revoker(&fake)
        .handle(event(include_str!("../../events/revoke-no-caller.json")))
        .await;
    assert_error(&response, 401, 40100);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn expired_session_gets_401_40101() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = revoker(&fake)
        .handle(event(include_str!("../../events/revoke-expired-caller.json")))
        .await;
    assert_error(&response, 401, 40101);
}

#[tokio::test]
async fn get_gets_405() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = revoker(&fake)
        .handle(event(include_str!("../../events/revoke-get.json")))
        .await;
    assert_error(&response, 405, 40500);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn bad_body_event_gets_400_naming_client_ids() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = revoker(&fake)
        .handle(event(include_str!("../../events/revoke-bad-body.json")))
        .await;
    let message = assert_error(&response, 400, 40000);
    assert!(message.contains("`clientIds`"), "{message}");
}

#[tokio::test]
async fn each_bad_field_gets_400_naming_it() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let now = system_ms();
    let cases: Vec<(String, &str)> = vec![
        (r#"{"clientIds":[""]}"#.into(), "`clientIds`"),
        (r#"{"clientIds":[7]}"#.into(), "`clientIds`"),
        (r#"{"revocationKeys":"acme"}"#.into(), "`revocationKeys`"),
        (r#"{"channels":[null]}"#.into(), "`channels`"),
        (r#"{"clientIds":[]}"#.into(), "at least one"),
        (
            r#"{"clientIds":["a"],"issuedBefore":"yesterday"}"#.into(),
            "`issuedBefore`",
        ),
        (r#"{"clientIds":["a"],"issuedBefore":12.5}"#.into(), "`issuedBefore`"),
        (
            format!(r#"{{"clientIds":["a"],"issuedBefore":{}}}"#, now + 3_600_000),
            "`issuedBefore`",
        ),
        (
            format!(r#"{{"clientIds":["a"],"issuedBefore":{}}}"#, now - 2 * 3_600_000),
            "`issuedBefore`",
        ),
        (
            r#"{"clientIds":["a"],"allowReauthMargin":1}"#.into(),
            "`allowReauthMargin`",
        ),
        (r#"{"clientIds":["a"],"clientID":["b"]}"#.into(), "clientID"),
        (r#"not json"#.into(), "`body`"),
    ];
    for (body, named) in cases {
        let response = revoke_as_admin(&fake, &body).await;
        let message = assert_error(&response, 400, 40000);
        assert!(message.contains(named), "{body}: {message}");
    }
    let form = revoker(&fake)
        .handle({
            let mut r = post_json("/auth/revoke", "clientIds=a", &[("authorization", &admin())]);
            r.headers_mut().insert(
                "content-type",
                "application/x-www-form-urlencoded".parse().expect("header"),
            );
            r
        })
        .await;
    assert_error(&form, 415, 41500);
    assert!(fake.requests().is_empty(), "nothing reaches Ably from a bad body");
}

#[tokio::test]
async fn key_without_revocable_tokens_refuses_with_500_saying_what_to_enable() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = service(Route::Revoke, &fake, &[])
        .handle(event(include_str!("../../events/revoke-admin.json")))
        .await;
    let message = assert_error(&response, 500, 50000);
    assert!(
        message.contains("revocable tokens") && message.contains("ABLY_KEY_REVOCABLE=true"),
        "{message}"
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn wrong_key_secret_rejected_by_ably_basic_auth_gets_500_never_401_or_403() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let wrong = format!("{DEV_KEY_NAME}:not-the-secret-0123456789");
    let response = service(
        Route::Revoke,
        &fake,
        &[REVOCABLE, ("ABLY_API_KEY", Some(wrong.as_str()))],
    )
    .handle(event(include_str!("../../events/revoke-admin.json")))
    .await;
    let message = assert_error(&response, 500, 50000);
    assert!(!message.contains("not-the-secret") && !message.contains("Invalid credentials"));
    assert_eq!(fake.requests_to("/revokeTokens").len(), 1);
}

#[tokio::test]
async fn ably_5xx_on_a_later_batch_gets_502_saying_how_far_it_got() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let ids: Vec<String> = (0..250).map(|i| format!("user-{i}")).collect();
    fake.fail_next(Fault::Pass);
    fake.fail_next(Fault::status(503, 50300, "unavailable"));
    let response = revoke_as_admin(&fake, &json!({ "clientIds": ids }).to_string()).await;
    let message = assert_error(&response, 502, 50200);
    assert!(message.contains("100 of 250 targets were revoked"), "{message}");
    assert!(message.contains("retry the whole request"), "{message}");
    assert_eq!(fake.requests_to("/revokeTokens").len(), 2, "stops at the failed batch");
}

#[tokio::test]
async fn ably_429_on_revocation_gets_503_with_retry_after() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::Status {
        status: 429,
        code: 42910,
        message: "Rate limit exceeded",
        retry_after: Some(3),
    });
    let response = revoke_as_admin(&fake, r#"{"clientIds":["alice"]}"#).await;
    assert_error(&response, 503, 50300);
    assert_eq!(retry_after(&response), 3);
}

#[tokio::test]
async fn revocation_answer_never_holds_the_basic_auth_credential() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let response = revoke_as_admin(&fake, r#"{"clientIds":["alice"]}"#).await;
    let result: Value = assert_json_ok(&response);
    assert_eq!(result["successCount"], 1);
    assert!(!body(&response).contains(&STANDARD.encode(DEV_API_KEY)));
}

#[tokio::test]
async fn issued_before_in_the_future_gets_400_before_calling_ably() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let ahead = system_ms() + 5 * 60 * 1000;
    let body = format!(r#"{{"clientIds":["alice"],"issuedBefore":{ahead}}}"#);
    let message = assert_error(&revoke_as_admin(&fake, &body).await, 400, 40000);
    assert!(
        message.contains("`issuedBefore`") && message.contains("in the future"),
        "{message}"
    );
    assert!(fake.requests().is_empty(), "Ably is not called");
}

#[tokio::test]
async fn issued_before_a_few_seconds_ahead_means_now_and_is_not_sent() {
    // Within the 60 s clock-skew margin: Ably would refuse the future time, so it is left
    // out and Ably revokes everything issued before its own now.
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let ahead = system_ms() + 20_000;
    let body = format!(r#"{{"clientIds":["alice"],"issuedBefore":{ahead}}}"#);
    let result = assert_json_ok(&revoke_as_admin(&fake, &body).await);
    assert_eq!(result["successCount"], 1);
    let calls = fake.requests_to("/revokeTokens");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].json(), json!({"targets": ["clientId:alice"]}));
}

#[tokio::test]
async fn ably_400_about_the_request_gets_400_with_ablys_code_and_message() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(Fault::status(400, 40003, "issuedBefore must be within the last hour"));
    let response = revoke_as_admin(&fake, r#"{"clientIds":["alice"]}"#).await;
    let message = assert_error(&response, 400, 40003);
    assert!(
        message.contains("issuedBefore must be within the last hour"),
        "Ably's message is passed on: {message}"
    );
    assert_eq!(fake.requests_to("/revokeTokens").len(), 1);
}

#[tokio::test]
async fn ably_400_on_a_later_batch_gets_400_saying_how_far_it_got() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let ids: Vec<String> = (0..150).map(|i| format!("user-{i}")).collect();
    fake.fail_next(Fault::Pass);
    fake.fail_next(Fault::status(400, 40000, "invalid target"));
    let response = revoke_as_admin(&fake, &json!({ "clientIds": ids }).to_string()).await;
    let message = assert_error(&response, 400, 40000);
    assert!(
        message.contains("invalid target") && message.contains("100 of 150 targets were revoked"),
        "{message}"
    );
}

#[tokio::test]
async fn more_than_1000_targets_are_refused_at_once_duplicates_included() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    // 10,800 distinct targets (two-character names in each list, under the 64 KiB body limit).
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let names: Vec<String> = (0..3600)
        .map(|i| String::from_utf8(vec![ALPHABET[i / 62], ALPHABET[i % 62]]).expect("ascii"))
        .collect();
    let body = json!({"clientIds": names, "revocationKeys": names, "channels": names}).to_string();
    let started = Instant::now();
    let response = revoke_as_admin(&fake, &body).await;
    let elapsed = started.elapsed();
    let message = assert_error(&response, 400, 40000);
    assert!(
        message.contains("10800 entries") && message.contains("at most 1000"),
        "{message}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "refused without de-duplicating: {elapsed:?}"
    );
    // The limit counts entries as given: 1001 copies of one name are refused too.
    let body = json!({ "clientIds": vec!["alice"; 1001] }).to_string();
    let message = assert_error(&revoke_as_admin(&fake, &body).await, 400, 40000);
    assert!(message.contains("1001 entries"), "{message}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn rsc15l_revocation_falls_back_when_the_primary_answers_5xx() {
    let primary = FakeAbly::start(&[DEV_API_KEY]).await;
    let fallback = FakeAbly::start(&[DEV_API_KEY]).await;
    primary.fail_always(Fault::status(503, 50300, "down at the fake"));
    let ably = http_ably(hosts(&primary.url(), &[&fallback]), Duration::from_secs(1));
    let response = service_with_ably(Route::Revoke, &primary, &[REVOCABLE], ably)
        .handle(post_json(
            "/auth/revoke",
            r#"{"clientIds":["alice","bob"]}"#,
            &[("authorization", &admin())],
        ))
        .await;
    let result = assert_json_ok(&response);
    assert_eq!(result["successCount"], 2);
    let (first, retried) = (
        primary.requests_to("/revokeTokens"),
        fallback.requests_to("/revokeTokens"),
    );
    assert_eq!((first.len(), retried.len()), (1, 1));
    assert_eq!(
        first[0].body, retried[0].body,
        "revocation is idempotent: the same body"
    );
    let expected = format!("Basic {}", STANDARD.encode(DEV_API_KEY));
    assert_eq!(retried[0].header("authorization"), Some(expected.as_str()));
}
