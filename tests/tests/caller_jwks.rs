//! OIDC bearer JWTs verified against a JWKS served on loopback, driven through
//! `Service::handle` so each answer's status, Ably code and ErrorInfo body are asserted.

mod caller_support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use caller_support::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::caller::fetch::ReqwestGet;
use shared::caller::{
    CallerVerifier, Hs256Verifier, JwksSettings, JwksSource, JwksVerifier, VerifierChain, COLD_RETRY_INTERVAL,
    FETCH_DEADLINE,
};
use shared::secret::SecretString;
use shared::Service;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn rsa_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::rsa("rsa-1"))
}

fn rotated_rsa_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::rsa("rsa-2"))
}

fn ec_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::ec256("ec-1"))
}

fn ed_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::ed25519("ed-1"))
}

struct Fixture {
    server: JwksServer,
    clock: ManualClock,
    verifier: Arc<JwksVerifier>,
    service: Service,
}

impl Fixture {
    fn issuer(&self) -> String {
        self.server.base_url()
    }

    fn claims(&self, sub: &str) -> Value {
        claims(&self.issuer(), sub)
    }

    async fn call(&self, token: &str) -> lambda_http::Response<lambda_http::Body> {
        self.service.handle(bearer(token)).await
    }
}

async fn fixture_with(keys: &[&TestKey], source: fn(&JwksServer) -> JwksSource, audience_claim: &str) -> Fixture {
    fixture_tuned(keys, source, audience_claim, FETCH_DEADLINE).await
}

/// A fixture whose key fetches (discovery and JWKS together) get `fetch_deadline`.
async fn fixture_tuned(
    keys: &[&TestKey],
    source: fn(&JwksServer) -> JwksSource,
    audience_claim: &str,
    fetch_deadline: Duration,
) -> Fixture {
    let server = JwksServer::start(jwks(keys)).await;
    let clock = ManualClock::new();
    let verifier = Arc::new(
        JwksVerifier::new(
            JwksSettings {
                source: source(&server),
                issuer: server.base_url(),
                audiences: vec!["another-app".into(), AUDIENCE.into()],
                audience_claim: audience_claim.into(),
            },
            Arc::new(ReqwestGet::new(shared::http_client::build().unwrap())),
            Arc::new(clock.clone()),
        )
        .unwrap()
        .with_fetch_deadline(fetch_deadline),
    );
    let service = service(VerifierChain::new(vec![Box::new(verifier.clone())]), POLICY);
    Fixture {
        server,
        clock,
        verifier,
        service,
    }
}

async fn fixture() -> Fixture {
    fixture_with(
        &[rsa_key(), ec_key(), ed_key()],
        |s| JwksSource::Url(s.jwks_url()),
        "aud",
    )
    .await
}

// --- good tokens ---------------------------------------------------------------------

#[tokio::test]
async fn rs256_token_gets_an_ably_jwt_for_its_subject_and_roles() {
    let f = fixture().await;
    let mut c = f.claims("alice");
    c["roles"] = json!(["moderator", "unknown-role"]);
    let issued = issued_claims(&f.call(&rsa_key().sign(&c)).await);
    assert_eq!(issued["x-ably-clientId"], "alice");
    let cap = capability(&issued);
    assert_eq!(cap["chat:alice"], json!(["presence", "publish", "subscribe"]));
    assert_eq!(
        cap["chat:*"],
        json!(["message-delete-any", "presence", "publish", "subscribe"])
    );
    assert_eq!(f.server.jwks_fetches(), 1);
}

#[tokio::test]
async fn es256_token_gets_an_ably_jwt() {
    let f = fixture().await;
    let issued = issued_claims(&f.call(&ec_key().sign(&f.claims("bob"))).await);
    assert_eq!(issued["x-ably-clientId"], "bob");
    assert_eq!(capability(&issued)["chat:*"], json!(["subscribe"]));
}

#[tokio::test]
async fn eddsa_token_gets_an_ably_jwt() {
    let f = fixture().await;
    let issued = issued_claims(&f.call(&ed_key().sign(&f.claims("carol"))).await);
    assert_eq!(issued["x-ably-clientId"], "carol");
}

#[tokio::test]
async fn rs384_rs512_and_es384_tokens_verify() {
    let rs384 = TestKey::rsa_with("rs384", Algorithm::RS384);
    let rs512 = TestKey::rsa_with("rs512", Algorithm::RS512);
    let es384 = TestKey::ec384("es384");
    let f = fixture_with(&[&rs384, &rs512, &es384], |s| JwksSource::Url(s.jwks_url()), "aud").await;
    for (key, sub) in [(&rs384, "u384"), (&rs512, "u512"), (&es384, "e384")] {
        let issued = issued_claims(&f.call(&key.sign(&f.claims(sub))).await);
        assert_eq!(issued["x-ably-clientId"], sub);
    }
    assert_eq!(f.server.jwks_fetches(), 1);
}

#[tokio::test]
async fn nested_claims_and_a_second_allowed_audience_are_accepted() {
    let f = fixture().await;
    let mut c = f.claims("dave");
    c["aud"] = json!(["some-api", "another-app"]);
    c["app_metadata"] = json!({"roles": ["moderator"]});
    let token = rsa_key().sign(&c);
    let policy = POLICY.replace(r#""claim": "roles""#, r#""claim": "app_metadata.roles""#);
    let service = service(VerifierChain::new(vec![Box::new(f.verifier.clone())]), &policy);
    let issued = issued_claims(&service.handle(bearer(&token)).await);
    assert_eq!(issued["x-ably-clientId"], "dave");
    assert_eq!(
        capability(&issued)["chat:*"],
        json!(["message-delete-any", "presence", "publish", "subscribe"])
    );
}

#[tokio::test]
async fn expiry_within_the_30_second_leeway_is_accepted() {
    let f = fixture().await;
    let mut c = f.claims("erin");
    c["exp"] = json!(now_seconds() - 10);
    let token = rsa_key().sign(&c);
    // The verifier accepts it; a policy that does not bind tokens to the session issues one.
    let policy = POLICY.replacen('{', r#"{"boundToSession": false,"#, 1);
    let service = service(VerifierChain::new(vec![Box::new(f.verifier.clone())]), &policy);
    issued_claims(&service.handle(bearer(&token)).await);
    // Bound to the session (the default), a session already over gets 401: refresh it.
    let response = f.call(&token).await;
    assert_eq!(response.status(), 401);
    assert!(
        body_text(&response).contains("the session token has expired"),
        "{}",
        body_text(&response)
    );
}

#[tokio::test]
async fn token_without_kid_uses_the_only_key_for_its_algorithm() {
    let f = fixture().await;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = None;
    let token = jsonwebtoken::encode(&header, &f.claims("frank"), &ec_key().encoding).unwrap();
    let issued = issued_claims(&f.call(&token).await);
    assert_eq!(issued["x-ably-clientId"], "frank");
}

#[tokio::test]
async fn cognito_access_token_is_checked_by_client_id_when_configured() {
    let f = fixture_with(&[rsa_key()], |s| JwksSource::Url(s.jwks_url()), "client_id").await;
    let now = now_seconds();
    let access = json!({"iss": f.issuer(), "sub": "grace", "client_id": AUDIENCE, "token_use": "access",
                        "scope": "openid", "exp": now + 600, "iat": now});
    let issued = issued_claims(&f.call(&rsa_key().sign(&access)).await);
    assert_eq!(issued["x-ably-clientId"], "grace");

    let mut other = access.clone();
    other["client_id"] = json!("someone-elses-app");
    assert_error(
        &f.call(&rsa_key().sign(&other)).await,
        401,
        40101,
        "another audience (client_id)",
    );
    let mut missing = access;
    missing.as_object_mut().unwrap().remove("client_id");
    assert_error(&f.call(&rsa_key().sign(&missing)).await, 401, 40101, "another audience");
}

// --- rejected tokens -------------------------------------------------------------------

#[tokio::test]
async fn wrong_issuer_gets_401() {
    let f = fixture().await;
    let mut c = f.claims("mallory");
    c["iss"] = json!("https://evil.example");
    assert_error(&f.call(&rsa_key().sign(&c)).await, 401, 40101, "issuer");
}

#[tokio::test]
async fn wrong_audience_gets_401() {
    let f = fixture().await;
    let mut c = f.claims("mallory");
    c["aud"] = json!("some-other-app");
    assert_error(&f.call(&rsa_key().sign(&c)).await, 401, 40101, "audience");
}

#[tokio::test]
async fn missing_audience_gets_401() {
    let f = fixture().await;
    let mut c = f.claims("mallory");
    c.as_object_mut().unwrap().remove("aud");
    assert_error(&f.call(&rsa_key().sign(&c)).await, 401, 40101, "`aud`");
}

#[tokio::test]
async fn expired_token_gets_401() {
    let f = fixture().await;
    let mut c = f.claims("mallory");
    c["exp"] = json!(now_seconds() - 120);
    assert_error(&f.call(&ec_key().sign(&c)).await, 401, 40101, "expired");
}

#[tokio::test]
async fn token_not_yet_valid_gets_401() {
    let f = fixture().await;
    let mut c = f.claims("mallory");
    c["nbf"] = json!(now_seconds() + 300);
    assert_error(&f.call(&rsa_key().sign(&c)).await, 401, 40101, "not valid yet");
}

#[tokio::test]
async fn token_without_exp_gets_401() {
    let f = fixture().await;
    let mut c = f.claims("mallory");
    c.as_object_mut().unwrap().remove("exp");
    assert_error(&f.call(&rsa_key().sign(&c)).await, 401, 40101, "`exp`");
}

#[tokio::test]
async fn tampered_payload_gets_401() {
    let f = fixture().await;
    let token = rsa_key().sign(&f.claims("alice"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(f.claims("admin").to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_error(&f.call(&tampered).await, 401, 40101, "signature");
}

#[tokio::test]
async fn alg_none_gets_401() {
    let f = fixture().await;
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(f.claims("mallory").to_string());
    for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
        assert_error(&f.call(&token).await, 401, 40101, "caller credential rejected");
    }
    assert_eq!(f.server.jwks_fetches(), 0, "no key is needed to refuse alg none");
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_gets_401() {
    let f = fixture().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa_key().kid.clone());
    let secret = EncodingKey::from_secret(rsa_key().public_pem.as_bytes());
    let forged = jsonwebtoken::encode(&header, &f.claims("mallory"), &secret).unwrap();
    // JWKS only: an HMAC token is nobody's.
    assert_error(&f.call(&forged).await, 401, 40101, "does not accept");
    assert_eq!(f.server.jwks_fetches(), 0);

    // HS256 configured as well: its secret is not the public key, so the signature fails.
    let hs256 = Hs256Verifier::new(
        &SecretString::new("dev-caller-secret-0123456789abcdef0123456789"),
        Some(&f.issuer()),
        &[AUDIENCE.to_owned()],
    )
    .unwrap();
    let both = service(
        VerifierChain::new(vec![Box::new(hs256), Box::new(f.verifier.clone())]),
        POLICY,
    );
    assert_error(&both.handle(bearer(&forged)).await, 401, 40101, "signature");
    // …and the same with the public key's JWK form (n) as the secret.
    let n_secret = EncodingKey::from_secret(rsa_key().jwk["n"].as_str().unwrap().as_bytes());
    let forged = jsonwebtoken::encode(&header, &f.claims("mallory"), &n_secret).unwrap();
    assert_error(&both.handle(bearer(&forged)).await, 401, 40101, "signature");
}

#[tokio::test]
async fn key_used_with_another_algorithm_gets_401() {
    let f = fixture().await;
    // Signed by the EC key but claiming to be the RSA key.
    let token = ec_key().sign_as("rsa-1", &f.claims("mallory"));
    assert_error(&f.call(&token).await, 401, 40101, "does not match its signing key");
}

#[tokio::test]
async fn unsupported_asymmetric_algorithm_gets_401() {
    let f = fixture().await;
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(&header, &f.claims("mallory"), &rsa_key().encoding).unwrap();
    assert_error(&f.call(&token).await, 401, 40101, "algorithm is not accepted");
}

#[tokio::test]
async fn malformed_bearer_values_get_401() {
    let f = fixture().await;
    assert_error(&f.call("not-a-jwt").await, 401, 40101, "malformed");
    let basic = f.service.handle(get(&[("authorization", "Basic dXNlcjpwYXNz")])).await;
    assert_error(&basic, 401, 40101, "Bearer");
}

// --- key rotation and the cache --------------------------------------------------------

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_a_minute_then_rotated_in_kid_verifies() {
    let f = fixture_with(&[rsa_key()], |s| JwksSource::Url(s.jwks_url()), "aud").await;
    issued_claims(&f.call(&rsa_key().sign(&f.claims("alice"))).await);
    assert_eq!(f.server.jwks_fetches(), 1);

    // A token from a key not yet published: one refetch, still unknown → 401.
    let next = rotated_rsa_key().sign(&f.claims("alice"));
    assert_error(&f.call(&next).await, 401, 40101, "does not publish");
    assert_eq!(f.server.jwks_fetches(), 2);

    // The issuer publishes it now, but within the minute there is no further refetch.
    f.server.set_jwks(jwks(&[rsa_key(), rotated_rsa_key()]));
    f.clock.advance(Duration::from_secs(59));
    for _ in 0..20 {
        assert_error(&f.call(&next).await, 401, 40101, "does not publish");
    }
    assert_eq!(f.server.jwks_fetches(), 2, "unknown kids must not cause a fetch storm");

    // A minute after the last refetch the new key is fetched and verifies.
    f.clock.advance(Duration::from_secs(2));
    let issued = issued_claims(&f.call(&next).await);
    assert_eq!(issued["x-ably-clientId"], "alice");
    assert_eq!(f.server.jwks_fetches(), 3);
    // Both keys keep working without more fetches.
    issued_claims(&f.call(&rsa_key().sign(&f.claims("alice"))).await);
    issued_claims(&f.call(&next).await);
    assert_eq!(f.server.jwks_fetches(), 3);
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_verifying_after_refresh() {
    let f = fixture_with(
        &[rsa_key(), rotated_rsa_key()],
        |s| JwksSource::Url(s.jwks_url()),
        "aud",
    )
    .await;
    let old = rsa_key().sign(&f.claims("alice"));
    issued_claims(&f.call(&old).await);
    f.server.set_jwks(jwks(&[rotated_rsa_key()]));
    f.clock.advance(Duration::from_secs(601));
    assert_error(&f.call(&old).await, 401, 40101, "does not publish");
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test]
async fn one_jwks_fetch_for_1000_requests() {
    let f = fixture().await;
    let tokens = [
        rsa_key().sign(&f.claims("a")),
        ec_key().sign(&f.claims("b")),
        ed_key().sign(&f.claims("c")),
    ];
    for i in 0..1000 {
        let response = f.call(&tokens[i % 3]).await;
        assert_eq!(response.status(), 200, "{}", body_text(&response));
    }
    assert_eq!(f.server.jwks_fetches(), 1);
    assert_eq!(f.verifier.fetch_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_share_one_fetch() {
    let f = Arc::new(fixture().await);
    let token = Arc::new(rsa_key().sign(&f.claims("alice")));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (f, token) = (f.clone(), token.clone());
        tasks.push(tokio::spawn(async move { f.call(&token).await.status() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(f.server.jwks_fetches(), 1);
}

#[tokio::test]
async fn cache_control_max_age_is_honoured() {
    let f = fixture().await;
    f.server.set_cache_control("public, max-age=120, must-revalidate");
    let token = rsa_key().sign(&f.claims("alice"));
    issued_claims(&f.call(&token).await);
    f.clock.advance(Duration::from_secs(119));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.server.jwks_fetches(), 1);
    f.clock.advance(Duration::from_secs(2));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test]
async fn without_cache_control_the_keys_live_ten_minutes() {
    let f = fixture().await;
    let token = rsa_key().sign(&f.claims("alice"));
    issued_claims(&f.call(&token).await);
    f.clock.advance(Duration::from_secs(599));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.server.jwks_fetches(), 1);
    f.clock.advance(Duration::from_secs(2));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_tiny_max_age_is_raised_to_one_minute() {
    let f = fixture().await;
    f.server.set_cache_control("no-cache");
    let token = rsa_key().sign(&f.claims("alice"));
    for _ in 0..10 {
        issued_claims(&f.call(&token).await);
    }
    assert_eq!(f.server.jwks_fetches(), 1);
    f.clock.advance(Duration::from_secs(61));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.server.jwks_fetches(), 2);
}

// --- outages ---------------------------------------------------------------------------

#[tokio::test]
async fn jwks_down_while_warm_keeps_serving_cached_keys() {
    let mut f = fixture().await;
    let token = rsa_key().sign(&f.claims("alice"));
    issued_claims(&f.call(&token).await);
    f.server.stop().await;

    // Expired and unreachable: one failed attempt, then the cached keys.
    f.clock.advance(Duration::from_secs(601));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.verifier.fetch_count(), 2);
    // No retry on every request while it is down.
    f.clock.advance(Duration::from_secs(30));
    for _ in 0..10 {
        issued_claims(&f.call(&token).await);
    }
    assert_eq!(f.verifier.fetch_count(), 2);

    // Back up: the next attempt (a minute later) refreshes.
    f.server.restart().await;
    f.clock.advance(Duration::from_secs(31));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.verifier.fetch_count(), 3);
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test]
async fn jwks_down_at_cold_start_gets_503_with_retry_after() {
    let mut f = fixture().await;
    f.server.stop().await;
    let token = rsa_key().sign(&f.claims("alice"));
    let response = f.call(&token).await;
    assert_error(&response, 503, 50300, "JWKS");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0);
    assert!(!body_text(&response).contains(&token), "the token is never echoed");

    // Within the cold-retry interval: fail fast, no new attempt.
    f.server.restart().await;
    assert_error(&f.call(&token).await, 503, 50300, "retry in");
    assert_eq!(f.verifier.fetch_count(), 1);

    // After it: fetched, verified.
    f.clock.advance(Duration::from_secs(6));
    let issued = issued_claims(&f.call(&token).await);
    assert_eq!(issued["x-ably-clientId"], "alice");
    assert_eq!(f.server.jwks_fetches(), 1);
}

#[tokio::test]
async fn jwks_answering_garbage_at_cold_start_gets_503() {
    let f = fixture().await;
    f.server.set_jwks("<html>maintenance</html>".into());
    assert_error(&f.call(&rsa_key().sign(&f.claims("a"))).await, 503, 50300, "JWKS");
    // A set with only unusable keys (a symmetric key) is no better.
    f.server
        .set_jwks(json!({"keys": [{"kty": "oct", "kid": "rsa-1", "k": "c2VjcmV0"}]}).to_string());
    f.clock.advance(Duration::from_secs(6));
    assert_error(&f.call(&rsa_key().sign(&f.claims("a"))).await, 503, 50300, "JWKS");
}

/// One request's answer and how long it took.
async fn timed_call(f: &Fixture, token: &str) -> (lambda_http::Response<lambda_http::Body>, Duration) {
    let started = Instant::now();
    let response = f.call(token).await;
    (response, started.elapsed())
}

#[tokio::test]
async fn jwks_hanging_at_cold_start_gets_503_at_the_fetch_deadline_then_503_at_once() {
    let deadline = Duration::from_millis(300);
    let f = fixture_tuned(&[rsa_key()], |s| JwksSource::Url(s.jwks_url()), "aud", deadline).await;
    f.server.set_jwks_hangs(true);
    let token = rsa_key().sign(&f.claims("alice"));

    let (response, first) = timed_call(&f, &token).await;
    assert_error(&response, 503, 50300, "JWKS");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0);
    assert!(first >= deadline && first < Duration::from_secs(2), "{first:?}");

    // Known down: answered at once, without touching the identity provider.
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let (response, took) = timed_call(&f, &token).await;
        assert_error(&response, 503, 50300, "retry in");
        slowest = slowest.max(took);
    }
    eprintln!("hanging JWKS, deadline {deadline:?}: first request {first:?}, slowest of the next 10 {slowest:?}");
    assert!(slowest < Duration::from_millis(100), "{slowest:?}");
    assert_eq!(f.server.jwks_fetches(), 1);
    assert_eq!(f.verifier.fetch_count(), 1);

    // After the window (counted from the end of the attempt), the recovered JWKS is used.
    f.server.set_jwks_hangs(false);
    f.clock.advance(COLD_RETRY_INTERVAL + Duration::from_secs(1));
    issued_claims(&f.call(&token).await);
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test]
async fn jwks_hanging_while_warm_costs_one_request_one_deadline_then_cached_keys_at_once() {
    let deadline = Duration::from_millis(300);
    let f = fixture_tuned(&[rsa_key()], |s| JwksSource::Url(s.jwks_url()), "aud", deadline).await;
    let token = rsa_key().sign(&f.claims("alice"));
    issued_claims(&f.call(&token).await);

    // Expired and hanging: the refreshing request waits for the deadline, then uses the
    // cached keys; the next ones use them at once.
    f.server.set_jwks_hangs(true);
    f.clock.advance(Duration::from_secs(601));
    let (response, first) = timed_call(&f, &token).await;
    issued_claims(&response);
    assert!(first >= deadline && first < Duration::from_secs(2), "{first:?}");
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let (response, took) = timed_call(&f, &token).await;
        issued_claims(&response);
        slowest = slowest.max(took);
    }
    eprintln!(
        "warm, hanging JWKS, deadline {deadline:?}: refreshing request {first:?}, slowest of the next 10 {slowest:?}"
    );
    assert!(slowest < Duration::from_millis(100), "{slowest:?}");
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test]
async fn slow_discovery_and_a_hanging_jwks_are_bounded_by_one_fetch_deadline() {
    let deadline = Duration::from_millis(500);
    let f = fixture_tuned(&[rsa_key()], |_| JwksSource::Discover, "aud", deadline).await;
    f.server.set_discovery_delay(Duration::from_millis(300));
    f.server.set_jwks_hangs(true);
    let token = rsa_key().sign(&f.claims("alice"));

    // Discovery (300 ms) and the hanging JWKS share one deadline: not 300 ms plus the
    // HTTP client's 5 s timeout.
    let (response, first) = timed_call(&f, &token).await;
    assert_error(&response, 503, 50300, "JWKS");
    assert!(first >= deadline && first < Duration::from_millis(1500), "{first:?}");
    let (response, next) = timed_call(&f, &token).await;
    assert_error(&response, 503, 50300, "JWKS");
    eprintln!("300 ms discovery + hanging JWKS, deadline {deadline:?}: first request {first:?}, next {next:?}");
    assert!(next < Duration::from_millis(100), "{next:?}");
    assert_eq!((f.server.discovery_fetches(), f.server.jwks_fetches()), (1, 1));

    // Recovered: the discovered URL is reused, discovery is not repeated.
    f.server.set_jwks_hangs(false);
    f.clock.advance(COLD_RETRY_INTERVAL + Duration::from_secs(1));
    issued_claims(&f.call(&token).await);
    assert_eq!(
        f.server.discovery_fetches(),
        1,
        "a JWKS failure must not redo discovery"
    );
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_idp_is_known_down_requests_do_not_queue_behind_the_retry() {
    let deadline = Duration::from_millis(400);
    let f = Arc::new(fixture_tuned(&[rsa_key()], |s| JwksSource::Url(s.jwks_url()), "aud", deadline).await);
    f.server.set_jwks_hangs(true);
    let token = Arc::new(rsa_key().sign(&f.claims("alice")));
    assert_error(&f.call(&token).await, 503, 50300, "JWKS");

    // The window is over: one request retries and hangs until the deadline…
    f.clock.advance(COLD_RETRY_INTERVAL + Duration::from_secs(1));
    let retry = {
        let (f, token) = (f.clone(), token.clone());
        tokio::spawn(async move {
            let (response, took) = timed_call(&f, &token).await;
            (response.status().as_u16(), took)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // …and the requests arriving meanwhile answer at once.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (response, took) = timed_call(&f, &token).await;
        assert_error(&response, 503, 50300, "JWKS");
        slowest = slowest.max(took);
    }
    let (status, retry_took) = retry.await.unwrap();
    eprintln!("retrying request {retry_took:?}; slowest request during it {slowest:?}");
    assert_eq!(status, 503);
    assert!(retry_took >= deadline, "{retry_took:?}");
    assert!(slowest < Duration::from_millis(100), "{slowest:?}");
    assert_eq!(f.server.jwks_fetches(), 2);
}

// --- discovery -------------------------------------------------------------------------

#[tokio::test]
async fn discovery_finds_the_jwks_through_openid_configuration() {
    let f = fixture_with(&[rsa_key(), ec_key()], |_| JwksSource::Discover, "aud").await;
    for _ in 0..5 {
        issued_claims(&f.call(&rsa_key().sign(&f.claims("alice"))).await);
        issued_claims(&f.call(&ec_key().sign(&f.claims("bob"))).await);
    }
    assert_eq!(f.server.discovery_fetches(), 1);
    assert_eq!(f.server.jwks_fetches(), 1);
    // A refresh reuses the discovered URL.
    f.clock.advance(Duration::from_secs(601));
    issued_claims(&f.call(&rsa_key().sign(&f.claims("alice"))).await);
    assert_eq!(f.server.discovery_fetches(), 1);
    assert_eq!(f.server.jwks_fetches(), 2);
}

#[tokio::test]
async fn discovery_document_naming_another_issuer_gets_503() {
    let f = fixture_with(&[rsa_key()], |_| JwksSource::Discover, "aud").await;
    *f.server.state.discovery_issuer.lock().unwrap() = Some("https://evil.example".into());
    assert_error(&f.call(&rsa_key().sign(&f.claims("a"))).await, 503, 50300, "JWKS");
    assert_eq!(f.server.jwks_fetches(), 0);
}

#[tokio::test]
async fn issuer_alone_configures_oidc_through_discovery() {
    let server = JwksServer::start(jwks(&[rsa_key()])).await;
    let issuer = server.base_url();
    let env = move |name: &str| -> Option<String> {
        match name {
            "ABLY_API_KEY" => Some(DEV_API_KEY.into()),
            "TOKEN_POLICY" => Some(POLICY.into()),
            "CALLER_ISSUER" => Some(issuer.clone()),
            "CALLER_AUDIENCE" => Some(format!("x, {AUDIENCE}")),
            _ => None,
        }
    };
    let service = Service::from_env_with(shared::Route::Jwt, &env).unwrap();
    let token = rsa_key().sign(&claims(&server.base_url(), "alice"));
    let issued = issued_claims(&service.handle(bearer(&token)).await);
    assert_eq!(issued["x-ably-clientId"], "alice");
    assert_eq!(server.discovery_fetches(), 1);
    assert_eq!(server.jwks_fetches(), 1);
}

#[tokio::test]
async fn jwks_verifier_ignores_requests_without_a_bearer_token() {
    let f = fixture().await;
    let verdict = CallerVerifier::verify(f.verifier.as_ref(), &get(&[])).await;
    assert!(matches!(verdict, shared::caller::Verdict::Absent), "{verdict:?}");
    assert_error(&f.service.handle(get(&[])).await, 401, 40100, "no caller credential");
    assert_eq!(f.server.jwks_fetches(), 0);
}
