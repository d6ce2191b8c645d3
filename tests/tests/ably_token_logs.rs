//! `issue-ably-token` with a wrong key secret: Ably's refusal reaches the log (code and
//! message, for the operator) and not the caller. In a test binary of its own, so that no
//! other test thread races the capturing subscriber for tracing's callsite cache.

mod fake_ably;

use fake_ably::support::*;
use fake_ably::FakeAbly;
use integration_tests::*;
use serde_json::{json, Value};
use shared::Route;

fn valid_caller() -> lambda_http::Request {
    event(include_str!("../../events/ably-token-get-valid-caller.json"))
}

#[tokio::test]
async fn wrong_key_secret_gets_500_with_ablys_code_and_message_in_the_log_only() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    const WRONG_SECRET: &str = "a-wrong-secret-marker-0123456789";
    let wrong_key = format!("{DEV_KEY_NAME}:{WRONG_SECRET}");
    let response = service(Route::AblyToken, &fake, &[("ABLY_API_KEY", Some(wrong_key.as_str()))])
        .handle(valid_caller())
        .await;
    let message = assert_error(&response, 500, 50000);
    assert!(
        !message.contains("Invalid mac") && !message.contains("40101"),
        "{message}"
    );
    assert!(!body(&response).contains(WRONG_SECRET));

    let log = logs.text();
    assert!(
        log.contains("40101") && log.contains("Invalid mac"),
        "Ably's code and message are logged: {log}"
    );
    assert!(!log.contains(WRONG_SECRET), "the key secret is never logged");
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.iter().any(|l| l["fields"]["ably_code"] == json!(40101)), "{log}");
}
