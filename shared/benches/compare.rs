//! The Rust side of `make bench-compare`: the two operations Node.js users do today with
//! npm `jsonwebtoken` and the `ably` SDK, with exactly the inputs the Node side uses.
//!
//! - `compare_jwt_mint`: the Ably JWT of [`claims`] (header `typ`/`alg`/`kid`, capability,
//!   clientId, revocation key, a channel claim, a rate limit), from a parsed key — what
//!   `jwt.sign(claims, secret, {header: {typ, kid}})` does in Node.
//! - `compare_token_request`: what `rest.auth.createTokenRequest({ttl, capability, clientId,
//!   timestamp})` does in the SDK — canonicalise the capability (Rust also validates it), make
//!   a nonce (Rust: 16 bytes of CSPRNG; the SDK: `Math.random`), HMAC the signText — plus
//!   serialising the TokenRequest to JSON (Node: `JSON.stringify`), as an `authUrl` answers it.
//!
//! With `BENCH_COMPARE_OUT=<file>` set, the inputs and one Rust result of each go there as
//! JSON; `bench/node/compare.mjs` signs the same claims, checks that its token decodes to the
//! same header and claims and that the Rust token verifies with Node's `jsonwebtoken`, and that
//! the SDK computes the same MAC for the same nonce, before it measures anything.

use criterion::{criterion_group, criterion_main, Criterion};
use shared::capability::Capability;
use shared::jwt::{self, JwtClaims};
use shared::key::ApiKey;
use shared::token_request::{self, Unsigned};
use std::hint::black_box;

const KEY: &str = "devApp.devKey:dev-key-secret-not-for-production";
/// As a client or policy would write it: not canonical (unsorted resources and operations).
const REQUESTED_CAPABILITY: &str =
    r#"{"chat:alice":["subscribe","publish","presence"],"chat:*":["subscribe","history"]}"#;
const CANONICAL_CAPABILITY: &str =
    r#"{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}"#;
const TTL_MS: u64 = 3_600_000;
const TIMESTAMP_MS: u64 = 1_700_000_000_000;

fn channel_claims() -> Vec<(String, String)> {
    vec![("chat:*".to_owned(), r#"{"name":"Alice"}"#.to_owned())]
}

fn rate_limits() -> Vec<(String, f64)> {
    vec![("chat:*".to_owned(), 5.0)]
}

fn claims<'a>(channel_claims: &'a [(String, String)], rate_limits: &'a [(String, f64)]) -> JwtClaims<'a> {
    JwtClaims {
        issued_at_seconds: TIMESTAMP_MS / 1000,
        expires_at_seconds: TIMESTAMP_MS / 1000 + TTL_MS / 1000,
        capability: CANONICAL_CAPABILITY,
        client_id: Some("alice"),
        revocation_key: Some("acme"),
        channel_claims,
        room_claims: &[],
        rate_limits,
    }
}

/// Canonical capability, nonce, MAC, JSON: one TokenRequest as an `authUrl` answers it.
fn token_request_json(key: &ApiKey, nonce: Option<&str>) -> String {
    let Ok(capability) = Capability::parse(REQUESTED_CAPABILITY) else {
        return String::new();
    };
    let capability = capability.to_canonical_string();
    let fresh;
    let nonce = match nonce {
        Some(n) => n,
        None => {
            fresh = token_request::new_nonce().unwrap_or_default();
            &fresh
        }
    };
    let signed = token_request::sign(
        key,
        &Unsigned {
            ttl_ms: Some(TTL_MS),
            capability: Some(&capability),
            client_id: Some("alice"),
            timestamp_ms: TIMESTAMP_MS,
            nonce,
        },
    );
    serde_json::to_string(&signed).unwrap_or_default()
}

/// The inputs and one Rust result of each operation, for the Node side to check itself against.
fn write_fixture(key: &ApiKey) {
    let Some(path) = std::env::var_os("BENCH_COMPARE_OUT") else {
        return;
    };
    let (cc, rl) = (channel_claims(), rate_limits());
    let token = jwt::mint(key, &claims(&cc, &rl)).unwrap_or_default();
    let fixed_nonce = "0123456789abcdef";
    let fixture = serde_json::json!({
        "key": KEY,
        "jwt": token,
        "tokenParams": {
            "ttl": TTL_MS,
            "capability": REQUESTED_CAPABILITY,
            "clientId": "alice",
            "timestamp": TIMESTAMP_MS,
        },
        "fixedNonce": fixed_nonce,
        "tokenRequest": serde_json::from_str::<serde_json::Value>(&token_request_json(key, Some(fixed_nonce)))
            .unwrap_or_default(),
    });
    let path = std::path::PathBuf::from(path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&path, fixture.to_string()) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

fn compare(c: &mut Criterion) {
    let Ok(key) = ApiKey::parse(KEY) else {
        return;
    };
    write_fixture(&key);
    let (cc, rl) = (channel_claims(), rate_limits());
    let claims = claims(&cc, &rl);
    c.bench_function("compare_jwt_mint", |b| {
        b.iter(|| jwt::mint(black_box(&key), black_box(&claims)))
    });
    c.bench_function("compare_token_request", |b| {
        b.iter(|| token_request_json(black_box(&key), None))
    });
    // The floor under both sides: the HMAC-SHA256 alone over the same bytes (the JWT's
    // signing input; the TokenRequest's signText), with the key already set up. Node's
    // `crypto` and AWS-LC both run it natively; a ratio cannot exceed Node's time / this.
    let token = jwt::mint(&key, &claims).unwrap_or_default();
    let signing_input = token.rsplit_once('.').map_or("", |(input, _)| input).to_owned();
    c.bench_function("compare_hmac_floor_jwt", |b| {
        b.iter(|| key.sign(black_box(signing_input.as_bytes())))
    });
    let sign_text = token_request::sign_text(
        key.name(),
        &Unsigned {
            ttl_ms: Some(TTL_MS),
            capability: Some(CANONICAL_CAPABILITY),
            client_id: Some("alice"),
            timestamp_ms: TIMESTAMP_MS,
            nonce: "0123456789abcdef",
        },
    );
    c.bench_function("compare_hmac_floor_token_request", |b| {
        b.iter(|| key.sign(black_box(sign_text.as_bytes())))
    });
}

criterion_group!(benches, compare);
criterion_main!(benches);
