//! Caller configuration from the environment: which providers, in which order, and the
//! start-up errors that name the variable to fix.

use shared::caller::JwksSource;
use shared::config::{CallerConfig, ConfigError};
use std::collections::HashMap;

const SECRET: &str = "dev-caller-secret-0123456789abcdef0123456789";

fn config(vars: &[(&str, &str)]) -> Result<CallerConfig, ConfigError> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    CallerConfig::from_env(&move |name: &str| env.get(name).cloned())
}

fn chain(vars: &[(&str, &str)]) -> Result<Vec<&'static str>, String> {
    let config = config(vars).map_err(|e| e.to_string())?;
    config.verifiers().map(|c| c.names()).map_err(|e| e.to_string())
}

#[test]
fn providers_are_asked_authorizer_then_bearer_hs256_jwks_then_cookie() {
    let names = chain(&[
        ("CALLER_HS256_SECRET", SECRET),
        ("CALLER_ISSUER", "https://idp.example"),
        ("CALLER_AUDIENCE", "app"),
        ("CALLER_JWKS_URL", "https://idp.example/jwks.json"),
        ("CALLER_TRUST_AUTHORIZER", "true"),
        ("CALLER_COOKIE", "session"),
    ])
    .unwrap();
    // By credential source: the gateway's verdict, the Authorization header, the cookie.
    assert_eq!(names, ["authorizer", "hs256", "jwks", "cookie"]);
}

#[test]
fn issuer_alone_means_oidc_discovery() {
    let c = config(&[
        ("CALLER_ISSUER", "https://tenant.auth0.com/"),
        ("CALLER_AUDIENCE", "api"),
    ])
    .unwrap();
    assert_eq!(c.jwks, Some(JwksSource::Discover));
    assert_eq!(c.verifiers().unwrap().names(), ["jwks"]);
}

#[test]
fn issuer_with_an_hs256_secret_is_an_hs256_issuer_check_only() {
    let c = config(&[
        ("CALLER_ISSUER", "https://app.example"),
        ("CALLER_HS256_SECRET", SECRET),
    ])
    .unwrap();
    assert_eq!(c.jwks, None);
    let c = config(&[
        ("CALLER_ISSUER", "https://app.example"),
        ("CALLER_HS256_SECRET_ID", "caller-secret"),
    ])
    .unwrap();
    assert_eq!(c.jwks, None);
}

#[test]
fn issuer_with_a_trusted_authorizer_does_not_fetch_keys() {
    let c = config(&[
        ("CALLER_ISSUER", "https://idp.example"),
        ("CALLER_TRUST_AUTHORIZER", "true"),
    ])
    .unwrap();
    assert_eq!(c.jwks, None);
    assert_eq!(c.verifiers().unwrap().names(), ["authorizer"]);
}

#[test]
fn oidc_discovery_flag_forces_or_disables_discovery() {
    let c = config(&[
        ("CALLER_ISSUER", "https://idp.example"),
        ("CALLER_AUDIENCE", "app"),
        ("CALLER_HS256_SECRET", SECRET),
        ("CALLER_OIDC_DISCOVERY", "true"),
    ])
    .unwrap();
    assert_eq!(c.jwks, Some(JwksSource::Discover));
    assert_eq!(c.verifiers().unwrap().names(), ["hs256", "jwks"]);

    let c = config(&[
        ("CALLER_ISSUER", "https://idp.example"),
        ("CALLER_OIDC_DISCOVERY", "false"),
    ])
    .unwrap();
    assert_eq!(c.jwks, None);

    let e = config(&[("CALLER_OIDC_DISCOVERY", "true")]).unwrap_err().to_string();
    assert!(e.contains("CALLER_ISSUER is not set"), "{e}");
    let e = config(&[
        ("CALLER_OIDC_DISCOVERY", "true"),
        ("CALLER_ISSUER", "https://idp.example"),
        ("CALLER_JWKS_URL", "https://idp.example/jwks"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("both CALLER_JWKS_URL and CALLER_OIDC_DISCOVERY=true"), "{e}");
}

#[test]
fn jwks_needs_an_issuer_and_an_audience() {
    let e = chain(&[
        ("CALLER_JWKS_URL", "https://idp.example/jwks.json"),
        ("CALLER_AUDIENCE", "app"),
    ])
    .unwrap_err();
    assert!(e.starts_with("CALLER_ISSUER is not set"), "{e}");
    let e = chain(&[
        ("CALLER_JWKS_URL", "https://idp.example/jwks.json"),
        ("CALLER_ISSUER", "https://idp.example"),
    ])
    .unwrap_err();
    assert!(e.starts_with("CALLER_AUDIENCE is not set"), "{e}");
    let e = chain(&[("CALLER_ISSUER", "https://idp.example")]).unwrap_err();
    assert!(e.starts_with("CALLER_AUDIENCE is not set"), "{e}");
}

#[test]
fn keys_are_only_fetched_over_https_or_loopback() {
    let base = [("CALLER_ISSUER", "https://idp.example"), ("CALLER_AUDIENCE", "app")];
    let with = |url: &'static str| {
        let mut v = base.to_vec();
        v.push(("CALLER_JWKS_URL", url));
        chain(&v)
    };
    assert!(with("https://idp.example/jwks.json").is_ok());
    assert!(with("http://127.0.0.1:9999/jwks.json").is_ok());
    let e = with("http://idp.example/jwks.json").unwrap_err();
    assert!(
        e.starts_with("CALLER_JWKS_URL is invalid") && e.contains("https://"),
        "{e}"
    );
    let e = chain(&[("CALLER_ISSUER", "http://idp.example"), ("CALLER_AUDIENCE", "app")]).unwrap_err();
    assert!(e.starts_with("CALLER_ISSUER is invalid"), "{e}");
}

#[test]
fn cookie_needs_a_token_verifier_and_a_valid_name() {
    let e = chain(&[("CALLER_COOKIE", "session")]).unwrap_err();
    assert!(
        e.starts_with("CALLER_COOKIE is invalid") && e.contains("CALLER_HS256_SECRET"),
        "{e}"
    );
    let e = chain(&[("CALLER_COOKIE", "my session"), ("CALLER_HS256_SECRET", SECRET)]).unwrap_err();
    assert!(e.contains("not a valid cookie name"), "{e}");
    // The authorizer alone cannot verify a cookie's JWT.
    let e = chain(&[("CALLER_COOKIE", "session"), ("CALLER_TRUST_AUTHORIZER", "true")]).unwrap_err();
    assert!(e.starts_with("CALLER_COOKIE is invalid"), "{e}");
}

#[test]
fn trust_authorizer_must_be_a_boolean() {
    let e = config(&[("CALLER_TRUST_AUTHORIZER", "yes")]).err().unwrap().to_string();
    assert_eq!(e, "CALLER_TRUST_AUTHORIZER is invalid: expected true or false");
    assert!(!config(&[]).unwrap().trust_authorizer);
}

#[test]
fn audience_claim_is_configurable_for_cognito_access_tokens() {
    let c = config(&[
        (
            "CALLER_ISSUER",
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example",
        ),
        ("CALLER_AUDIENCE", "4abcdefghijklmnopqrstuvwx"),
        ("CALLER_AUDIENCE_CLAIM", "client_id"),
    ])
    .unwrap();
    assert_eq!(c.audience_claim.as_deref(), Some("client_id"));
    assert_eq!(c.verifiers().unwrap().names(), ["jwks"]);
}
