//! The baseline every bench binary measures in its own process, so that each figure can be
//! stated as a ratio to it (`make bench` prints that ratio next to the median): HMAC-SHA256
//! of 256 bytes with AWS-LC, the primitive under every token this project signs. It is native
//! code (SHA-NI where the CPU has it) whose speed no release-profile setting changes, so the
//! ratios compare our code across machines and across profiles.
//!
//! Also the pieces several bench binaries need: one measured `/auth/jwt` request, an
//! in-memory JWKS, an RSA caller key.

// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code)]

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RsaPublicKeyComponents};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use criterion::{BatchSize, Criterion};
use jsonwebtoken::EncodingKey;
use lambda_http::{Body, Request};
use shared::caller::fetch::{Document, FetchError, HttpGet};
use shared::caller::BoxFuture;
use shared::Service;
use std::hint::black_box;

pub fn baseline(c: &mut Criterion, binary: &str) {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"baseline-key-0123456789abcdef012");
    let message = [0x5a_u8; 256];
    c.bench_function(&format!("baseline/{binary}"), |b| {
        b.iter(|| aws_lc_rs::hmac::sign(&key, black_box(&message)))
    });
}

/// `GET /auth/jwt` with `Authorization: Bearer <token>` through `Service::handle`, as a
/// Lambda function calls it: checked to answer 200 first (which also warms a JWKS cache),
/// then measured as `name`.
pub fn bench_jwt_request(c: &mut Criterion, name: &str, service: &Service, token: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let authorization = format!("Bearer {token}");
    let request = || -> Request {
        lambda_http::http::Request::builder()
            .method("GET")
            .uri("https://x.example/auth/jwt?rnd=123&clientId=alice")
            .header("authorization", authorization.as_str())
            .header("origin", "http://localhost:8080")
            .body(Body::Empty)
            .expect("request")
    };
    assert_eq!(runtime.block_on(service.handle(request())).status().as_u16(), 200);
    c.bench_function(name, |b| {
        b.iter_batched(request, |r| runtime.block_on(service.handle(r)), BatchSize::SmallInput)
    });
}

/// Answers the same JWKS for every URL.
pub struct StaticJwks(pub Vec<u8>);

impl HttpGet for StaticJwks {
    fn get<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Document, FetchError>> {
        Box::pin(std::future::ready(Ok(Document {
            body: self.0.clone(),
            max_age: None,
        })))
    }
}

/// A fresh RSA-2048 caller key: the key that signs caller tokens, and its public JWK.
pub struct RsaCaller {
    pub encoding: EncodingKey,
    pub jwk: serde_json::Value,
}

impl RsaCaller {
    pub fn generate(kid: &str) -> RsaCaller {
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&rsa).expect("PKCS#8");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        RsaCaller {
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA PEM"),
            jwk: serde_json::json!({
                "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(&components.n), "e": URL_SAFE_NO_PAD.encode(&components.e)
            }),
        }
    }
}

pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
