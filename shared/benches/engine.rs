//! The token engine in process: minting, capability algebra, policy evaluation, and one
//! full `issue-jwt` request with an HS256 caller. `make bench` runs these.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use shared::caller::{Caller, Claims};
use shared::capability::{Capability, Ops};
use shared::jwt::{self, JwtClaims};
use shared::key::ApiKey;
use shared::policy::Policy;
use shared::{Route, Service};
use std::hint::black_box;

const KEY: &str = "devApp.devKey:dev-key-secret-not-for-production";
const CALLER_SECRET: &str = "dev-caller-secret-0123456789abcdef0123456789";
const POLICY: &str = include_str!("../../dev/policy.json");

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn caller_token() -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let claims = serde_json::json!({"sub":"alice","name":"Alice","org":"acme","roles":["moderator"],"exp": now_seconds() + 3600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(CALLER_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

fn mint(c: &mut Criterion) {
    let key = ApiKey::parse(KEY).unwrap();
    let claims = JwtClaims {
        issued_at_seconds: 1_700_000_000,
        expires_at_seconds: 1_700_003_600,
        capability: r#"{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}"#,
        client_id: Some("alice"),
        revocation_key: Some("acme"),
        channel_claims: &[("chat:*".to_owned(), r#"{"name":"Alice"}"#.to_owned())],
        room_claims: &[],
        rate_limits: &[("chat:*".to_owned(), 5.0)],
    };
    c.bench_function("jwt_mint", |b| {
        b.iter(|| jwt::mint(black_box(&key), black_box(&claims)))
    });
}

fn capability_intersection(c: &mut Criterion) {
    let ops = Ops::parse(&["publish", "subscribe", "presence", "history"]).unwrap();
    let mut allowed = Capability::default();
    for i in 0..50 {
        allowed.insert(&format!("tenant-{i}:room:*"), ops).unwrap();
    }
    let requested =
        Capability::parse(r#"{"tenant-7:room:lobby":["subscribe","publish"],"tenant-42:*":["*"],"*":["subscribe"]}"#)
            .unwrap();
    c.bench_function("capability_intersect_50_resources", |b| {
        b.iter(|| Capability::intersect(black_box(&requested), black_box(&allowed)))
    });
    c.bench_function("capability_canonical_50_resources", |b| {
        b.iter(|| black_box(&allowed).to_canonical_string())
    });
}

fn policy_evaluation(c: &mut Criterion) {
    let policy = Policy::from_json(POLICY, false).unwrap();
    let claims: Claims =
        serde_json::from_value(serde_json::json!({"sub":"alice","name":"Alice","org":"acme","roles":["moderator"]}))
            .unwrap();
    let caller = Caller::Verified { claims, via: "bench" };
    c.bench_function("policy_grant_moderator", |b| {
        b.iter(|| policy.grant(black_box(&caller)))
    });
}

fn full_request(c: &mut Criterion) {
    let env = |k: &str| -> Option<String> {
        match k {
            "ABLY_API_KEY" => Some(KEY.into()),
            "CALLER_HS256_SECRET" => Some(CALLER_SECRET.into()),
            "TOKEN_POLICY" => Some(POLICY.into()),
            "CORS_ALLOWED_ORIGINS" => Some("http://localhost:8080".into()),
            _ => None,
        }
    };
    let service = Service::from_env_with(Route::Jwt, &env).unwrap();
    common::bench_jwt_request(c, "issue_jwt_full_request_hs256_caller", &service, &caller_token());
}

/// The HMAC baseline of this process (`benches/common`): `make bench` states ratios to it.
fn baseline(c: &mut Criterion) {
    common::baseline(c, "engine");
}

criterion_group!(
    benches,
    baseline,
    mint,
    capability_intersection,
    policy_evaluation,
    full_request
);
criterion_main!(benches);
