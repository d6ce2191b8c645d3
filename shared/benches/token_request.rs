//! Signing one Ably TokenRequest in process (nonce from the CSPRNG, signText, HMAC-SHA256,
//! base64) — the work of the `issue-token-request` route after policy evaluation, and the
//! part `issue-ably-token` does before calling Ably. Target: ≤ 5 µs median.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use shared::key::ApiKey;
use shared::token_request::{self, Unsigned};
use std::hint::black_box;

const KEY: &str = "devApp.devKey:dev-key-secret-not-for-production";
const CAPABILITY: &str = r#"{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}"#;

fn sign(c: &mut Criterion) {
    let Ok(key) = ApiKey::parse(KEY) else {
        return;
    };
    c.bench_function("token_request_sign", |b| {
        b.iter(|| {
            let nonce = token_request::new_nonce().unwrap_or_default();
            let signed = token_request::sign(
                black_box(&key),
                &Unsigned {
                    ttl_ms: Some(3_600_000),
                    capability: Some(black_box(CAPABILITY)),
                    client_id: Some("alice"),
                    timestamp_ms: 1_700_000_000_000,
                    nonce: &nonce,
                },
            );
            serde_json::to_string(&signed).unwrap_or_default()
        })
    });
}

/// The HMAC baseline of this process (`benches/common`): `make bench` states ratios to it.
fn baseline(c: &mut Criterion) {
    common::baseline(c, "token_request");
}

criterion_group!(benches, baseline, sign);
criterion_main!(benches);
