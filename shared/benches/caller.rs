//! OIDC callers in process: verifying an RS256 bearer token against a warm JWKS cache, and
//! one full `issue-jwt` request with an RS256 (and an ES256) caller. The JWKS comes from an
//! in-memory fetcher, so only the per-request work is measured (the fetch happens once per
//! container and is not on this path). `make bench` runs these.

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::RsaCaller;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shared::caller::{JwksSettings, JwksSource, JwksVerifier};
use shared::clock::SystemClock;
use shared::config::{CallerConfig, Config};
use shared::service::Deps;
use shared::{Route, Service};
use std::hint::black_box;
use std::sync::Arc;

const KEY: &str = "devApp.devKey:dev-key-secret-not-for-production";
const POLICY: &str = include_str!("../../dev/policy.json");
const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "ably-auth-bench";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Keys {
    jwks: String,
    rs256: String,
    es256: String,
}

/// A fresh RSA-2048 and P-256 key, their JWKS, and a caller token signed by each.
fn keys() -> Keys {
    let rsa = RsaCaller::generate("rsa-bench");

    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref()).unwrap();
    let (x, y) = ec.public_key().as_ref()[1..].split_at(32);

    let jwks = serde_json::json!({"keys": [
        rsa.jwk,
        {"kty": "EC", "kid": "ec-bench", "use": "sig", "crv": "P-256", "x": b64(x), "y": b64(y)}
    ]})
    .to_string();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "name": "Alice", "org": "acme",
        "roles": ["moderator"], "iat": common::now_seconds(), "exp": common::now_seconds() + 3600
    });
    let sign = |alg, kid: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    Keys {
        rs256: sign(Algorithm::RS256, "rsa-bench", &rsa.encoding),
        es256: sign(
            Algorithm::ES256,
            "ec-bench",
            &EncodingKey::from_ec_der(ec_pkcs8.as_ref()),
        ),
        jwks,
    }
}

fn settings() -> JwksSettings {
    JwksSettings {
        source: JwksSource::Url("https://idp.example.com/.well-known/jwks.json".into()),
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        audience_claim: "aud".into(),
    }
}

fn service(jwks: &str) -> Service {
    let env = |k: &str| -> Option<String> {
        match k {
            "ABLY_API_KEY" => Some(KEY.into()),
            "TOKEN_POLICY" => Some(POLICY.into()),
            "CALLER_ISSUER" => Some(ISSUER.into()),
            "CALLER_AUDIENCE" => Some(AUDIENCE.into()),
            "CALLER_JWKS_URL" => Some("https://idp.example.com/.well-known/jwks.json".into()),
            "CORS_ALLOWED_ORIGINS" => Some("http://localhost:8080".into()),
            _ => None,
        }
    };
    let callers = CallerConfig::from_env(&env)
        .unwrap()
        .verifiers_with(
            Some(Arc::new(common::StaticJwks(jwks.as_bytes().to_vec()))),
            Arc::new(SystemClock),
        )
        .unwrap();
    let mut deps = Deps::from_config(Config::from_env(&env).unwrap(), Route::Jwt).unwrap();
    deps.callers = callers;
    Service::new(Route::Jwt, deps)
}

fn verify_only(c: &mut Criterion) {
    let keys = keys();
    let verifier = JwksVerifier::new(
        settings(),
        Arc::new(common::StaticJwks(keys.jwks.as_bytes().to_vec())),
        Arc::new(SystemClock),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let verdict = runtime.block_on(verifier.verify(&keys.rs256));
    assert!(matches!(verdict, shared::caller::Verdict::Verified(_)), "{verdict:?}");
    c.bench_function("caller_verify_rs256_warm_jwks", |b| {
        b.iter(|| runtime.block_on(verifier.verify(black_box(&keys.rs256))))
    });
    c.bench_function("caller_verify_es256_warm_jwks", |b| {
        b.iter(|| runtime.block_on(verifier.verify(black_box(&keys.es256))))
    });
}

fn full_request(c: &mut Criterion) {
    let keys = keys();
    let service = service(&keys.jwks);
    common::bench_jwt_request(c, "issue_jwt_full_request_rs256_caller", &service, &keys.rs256);
    common::bench_jwt_request(c, "issue_jwt_full_request_es256_caller", &service, &keys.es256);
}

/// The RSA-2048 signature check alone, as `jsonwebtoken` does it (key rebuilt from n/e on
/// every call) and with a pre-parsed key: the floor under the RS256 numbers above.
fn rsa_primitive(c: &mut Criterion) {
    use aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256;
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    let mut signature = vec![0; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message,
        &mut signature,
    )
    .unwrap();
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let parsed = components.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256).unwrap();
    c.bench_function("rsa2048_verify_from_components", |b| {
        b.iter(|| components.verify(&RSA_PKCS1_2048_8192_SHA256, black_box(message), &signature))
    });
    c.bench_function("rsa2048_verify_parsed_key", |b| {
        b.iter(|| parsed.verify_sig(black_box(message), &signature))
    });
}

/// The HMAC baseline of this process (`benches/common`): `make bench` states ratios to it.
fn baseline(c: &mut Criterion) {
    common::baseline(c, "caller");
}

criterion_group!(benches, baseline, verify_only, full_request, rsa_primitive);
criterion_main!(benches);
