//! Identity from API Gateway authorizer context (`CALLER_TRUST_AUTHORIZER=true`), over the
//! four event shapes in `events/authorizer-*.json`; the issued Ably JWT is verified with the
//! dev key and its clientId and role capabilities asserted.

mod caller_support;

use caller_support::*;
use lambda_http::request::from_str;
use lambda_http::Request;
use serde_json::{json, Value};
use shared::caller::{authorizer_claims, AuthorizerVerifier, VerifierChain};
use shared::Service;

const HTTP_JWT: &str = include_str!("../../events/authorizer-http-jwt.json");
const HTTP_LAMBDA: &str = include_str!("../../events/authorizer-http-lambda.json");
const REST_COGNITO: &str = include_str!("../../events/authorizer-rest-cognito.json");
const REST_LAMBDA: &str = include_str!("../../events/authorizer-rest-lambda.json");

/// Roles from Cognito groups; clientId from `sub`; an org-scoped channel from a nested claim.
const COGNITO_POLICY: &str = r#"{
  "clientId": "{sub}",
  "capability": {"chat:*": ["subscribe"]},
  "roles": {
    "claim": "cognito:groups",
    "grants": {
      "moderator": {"capability": {"chat:*": ["publish", "subscribe", "presence", "message-delete-any"]}},
      "admin": {"capability": {"admin:*": ["*"]}}
    }
  }
}"#;

const LAMBDA_POLICY: &str = r#"{
  "clientId": "{sub}",
  "capability": {"chat:*": ["subscribe"], "org:{org.id}": ["subscribe"], "org:{org}": ["subscribe"]},
  "roles": {
    "claim": "roles",
    "grants": {
      "moderator": {"capability": {"chat:*": ["publish", "subscribe", "presence", "message-delete-any"]}},
      "admin": {"capability": {"admin:*": ["*"]}}
    }
  }
}"#;

fn event(text: &str) -> Request {
    from_str(text).expect("the event parses as an API Gateway request")
}

fn trusting(policy: &str) -> Service {
    service(VerifierChain::new(vec![Box::new(AuthorizerVerifier::new())]), policy)
}

/// The service as `CALLER_TRUST_AUTHORIZER=true` + `CALLER_HS256_SECRET` configure it.
fn from_env(trust: bool, policy: &'static str) -> Service {
    let env = move |name: &str| -> Option<String> {
        match name {
            "ABLY_API_KEY" => Some(DEV_API_KEY.into()),
            "TOKEN_POLICY" => Some(policy.into()),
            "CALLER_HS256_SECRET" => Some("dev-caller-secret-0123456789abcdef0123456789".into()),
            "CALLER_TRUST_AUTHORIZER" => Some(trust.to_string()),
            _ => None,
        }
    };
    Service::from_env_with(shared::Route::Jwt, &env).unwrap()
}

const MODERATOR_OPS: [&str; 4] = ["message-delete-any", "presence", "publish", "subscribe"];

#[tokio::test]
async fn http_api_jwt_authorizer_claims_with_stringified_groups() {
    let issued = issued_claims(&trusting(COGNITO_POLICY).handle(event(HTTP_JWT)).await);
    assert_eq!(issued["x-ably-clientId"], "3f6b2a4e-jwt-user");
    let cap = capability(&issued);
    assert_eq!(cap["chat:*"], json!(MODERATOR_OPS), "`[moderator admin]` is two roles");
    assert_eq!(cap["admin:*"], json!(["*"]));
}

#[tokio::test]
async fn http_api_lambda_authorizer_context_with_lists_and_nested_claims() {
    let issued = issued_claims(&trusting(LAMBDA_POLICY).handle(event(HTTP_LAMBDA)).await);
    assert_eq!(issued["x-ably-clientId"], "lambda-user-7");
    let cap = capability(&issued);
    assert_eq!(cap["chat:*"], json!(MODERATOR_OPS));
    assert_eq!(cap["org:acme"], json!(["subscribe"]), "nested claim by dotted path");
    assert!(cap.get("admin:*").is_none());
}

#[tokio::test]
async fn rest_api_cognito_authorizer_claims() {
    let issued = issued_claims(&trusting(COGNITO_POLICY).handle(event(REST_COGNITO)).await);
    assert_eq!(issued["x-ably-clientId"], "9d1c7e21-cognito-user");
    let cap = capability(&issued);
    assert_eq!(cap["chat:*"], json!(MODERATOR_OPS));
    assert!(cap.get("admin:*").is_none());
}

#[tokio::test]
async fn rest_api_lambda_authorizer_principal_and_context() {
    let issued = issued_claims(&trusting(LAMBDA_POLICY).handle(event(REST_LAMBDA)).await);
    assert_eq!(issued["x-ably-clientId"], "principal-42", "sub defaults to principalId");
    let cap = capability(&issued);
    assert_eq!(cap["chat:*"], json!(MODERATOR_OPS));
    assert_eq!(cap["admin:*"], json!(["*"]), "`admin,moderator` is two roles");
    assert_eq!(cap["org:acme"], json!(["subscribe"]));
}

#[test]
fn each_shape_yields_its_claims() {
    let claims = |text| authorizer_claims(&event(text)).expect("claims");
    let jwt = claims(HTTP_JWT);
    assert_eq!(jwt.list("cognito:groups"), vec!["moderator", "admin"]);
    assert_eq!(jwt.text("scope").as_deref(), Some("openid email"));
    let lambda = claims(HTTP_LAMBDA);
    assert_eq!(lambda.text("org.id").as_deref(), Some("acme"));
    let cognito = claims(REST_COGNITO);
    assert_eq!(cognito.text("cognito:username").as_deref(), Some("carol"));
    let rest_lambda = claims(REST_LAMBDA);
    assert_eq!(rest_lambda.text("principalId").as_deref(), Some("principal-42"));
    assert_eq!(
        rest_lambda.get("integrationLatency"),
        None,
        "gateway metadata is not identity"
    );
}

#[tokio::test]
async fn authorizer_identity_wins_over_a_bearer_header_the_hs256_verifier_cannot_read() {
    // The events carry the IdP's token (or an opaque one) in Authorization; the HS256
    // verifier rejects it, the authorizer context verifies.
    for (text, policy, client_id) in [
        (HTTP_JWT, COGNITO_POLICY, "3f6b2a4e-jwt-user"),
        (REST_COGNITO, COGNITO_POLICY, "9d1c7e21-cognito-user"),
        (REST_LAMBDA, LAMBDA_POLICY, "principal-42"),
        (HTTP_LAMBDA, LAMBDA_POLICY, "lambda-user-7"),
    ] {
        let issued = issued_claims(&from_env(true, policy).handle(event(text)).await);
        assert_eq!(issued["x-ably-clientId"], client_id);
    }
}

#[tokio::test]
async fn authorizer_context_is_ignored_unless_trusted() {
    // Untrusted: the bearer header is all there is, and it is not a valid HS256 token.
    let response = from_env(false, COGNITO_POLICY).handle(event(HTTP_JWT)).await;
    assert_error(&response, 401, 40101, "malformed");
    // No Authorization header and no anonymous grant: 401 missing credential.
    let response = from_env(false, LAMBDA_POLICY).handle(event(HTTP_LAMBDA)).await;
    assert_error(&response, 401, 40100, "no caller credential");
}

#[tokio::test]
async fn trusted_but_no_authorizer_context_is_no_identity() {
    let mut plain: Value = serde_json::from_str(HTTP_LAMBDA).unwrap();
    plain["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let response = trusting(LAMBDA_POLICY).handle(event(&plain.to_string())).await;
    assert_error(&response, 401, 40100, "no caller credential");

    let mut empty: Value = serde_json::from_str(REST_LAMBDA).unwrap();
    empty["requestContext"]["authorizer"] = json!({});
    empty["headers"].as_object_mut().unwrap().remove("Authorization");
    empty["multiValueHeaders"]
        .as_object_mut()
        .unwrap()
        .remove("Authorization");
    let response = trusting(LAMBDA_POLICY).handle(event(&empty.to_string())).await;
    assert_error(&response, 401, 40100, "no caller credential");
}

#[tokio::test]
async fn authorizer_identity_with_unsafe_client_id_gets_403() {
    let mut evil: Value = serde_json::from_str(HTTP_LAMBDA).unwrap();
    evil["requestContext"]["authorizer"]["lambda"]["sub"] = json!("*");
    let response = trusting(LAMBDA_POLICY).handle(event(&evil.to_string())).await;
    assert_error(&response, 403, 40300, "clientId");
}
