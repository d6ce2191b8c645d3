//! Shared by the `caller_*` tests: test-generated signing keys (RSA, EC, Ed25519) with their
//! public JWKs, a JWKS / OpenID discovery server on loopback that counts fetches and can be
//! stopped and restarted, a hand-driven clock, and a `Service` built around a caller chain.
#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
pub use integration_tests::{now_seconds, DEV_API_KEY, DEV_KEY_SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::caller::VerifierChain;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::service::Deps;
use shared::{Route, Service};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub const AUDIENCE: &str = "ably-auth-tests";
/// The HS256 caller secret and issuer of the cookie and precedence tests.
pub const CALLER_SECRET: &str = "dev-caller-secret-0123456789abcdef0123456789";
pub const ISSUER: &str = "https://app.example.com";

/// A `/auth/jwt` service with the HS256 bearer (issuer and audience checked) and
/// `CALLER_COOKIE=session`, configured from the environment as a function would be, plus
/// `vars`.
pub fn service_from(vars: &[(&str, &str)]) -> Service {
    let mut env: std::collections::HashMap<String, String> = std::collections::HashMap::from([
        ("ABLY_API_KEY".into(), DEV_API_KEY.into()),
        ("TOKEN_POLICY".into(), POLICY.into()),
        ("CALLER_HS256_SECRET".into(), CALLER_SECRET.into()),
        ("CALLER_ISSUER".into(), ISSUER.into()),
        ("CALLER_AUDIENCE".into(), AUDIENCE.into()),
        ("CALLER_COOKIE".into(), "session".into()),
    ]);
    for (k, v) in vars {
        env.insert((*k).into(), (*v).into());
    }
    let lookup = move |name: &str| env.get(name).cloned();
    Service::from_env_with(Route::Jwt, &lookup).unwrap()
}

/// Issues 1 role-based capability per role, so tests can see which roles arrived.
pub const POLICY: &str = r#"{
  "clientId": "{sub}",
  "ttlSeconds": 3600,
  "capability": {"chat:*": ["subscribe"], "chat:{sub}": ["publish", "subscribe", "presence"]},
  "roles": {
    "claim": "roles",
    "grants": {
      "moderator": {"capability": {"chat:*": ["publish", "subscribe", "presence", "message-delete-any"]}},
      "admin": {"capability": {"admin:*": ["*"]}}
    }
  }
}"#;

// ---------------------------------------------------------------------------------------
// Keys

/// A signing key made for this test run, and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), for confusion attacks.
    pub public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    pub fn rsa(kid: &str) -> TestKey {
        Self::rsa_with(kid, Algorithm::RS256)
    }

    /// An RSA-2048 key used with `alg` (RS256, RS384 or RS512).
    pub fn rsa_with(kid: &str, alg: Algorithm) -> TestKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let encoding = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap();
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key()).unwrap();
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": format!("{alg:?}"),
                        "n": b64(&components.n), "e": b64(&components.e)}),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    pub fn ec256(kid: &str) -> TestKey {
        Self::ec(kid, Algorithm::ES256)
    }

    pub fn ec384(kid: &str) -> TestKey {
        Self::ec(kid, Algorithm::ES384)
    }

    fn ec(kid: &str, alg: Algorithm) -> TestKey {
        let (signing, crv, size) = match alg {
            Algorithm::ES256 => (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            _ => (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
        };
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        assert_eq!(point[0], 4, "uncompressed point");
        let (x, y) = point[1..].split_at(size);
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "kid": kid, "use": "sig", "crv": crv, "x": b64(x), "y": b64(y)}),
            public_pem: String::new(),
        }
    }

    pub fn ed25519(kid: &str) -> TestKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA", "x": b64(pair.public_key().as_ref())}),
            public_pem: String::new(),
        }
    }

    /// A token with this key's `alg` and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A token with a `kid` other than this key's (as if signed by a key not yet published).
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWKS document holding these keys.
/// An HS256 caller token over `claims`, signed with [`CALLER_SECRET`].
pub fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(CALLER_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Good claims for `issuer`, valid for an hour.
pub fn claims(issuer: &str, sub: &str) -> Value {
    let now = now_seconds();
    json!({"iss": issuer, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600})
}

// ---------------------------------------------------------------------------------------
// The JWKS server

/// What the server answers and what it saw.
#[derive(Default)]
pub struct ServerState {
    pub jwks: Mutex<String>,
    /// `Cache-Control` sent with the JWKS (none when `None`).
    pub cache_control: Mutex<Option<String>>,
    /// The issuer the discovery document names (the server's base URL when `None`).
    pub discovery_issuer: Mutex<Option<String>>,
    pub jwks_fetches: AtomicUsize,
    pub discovery_fetches: AtomicUsize,
    /// Accept JWKS requests but never answer them (a hanging identity provider).
    pub jwks_hangs: AtomicBool,
    /// Answer the discovery document only after this many ms (a slow identity provider).
    pub discovery_delay_ms: AtomicU64,
    /// Answer the JWKS only after this many ms.
    pub jwks_delay_ms: AtomicU64,
}

/// A JWKS + OpenID discovery server on 127.0.0.1: `GET /jwks.json`,
/// `GET /.well-known/openid-configuration`. HTTP/1.1 with keep-alive.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    task: Option<JoinHandle<()>>,
}

impl JwksServer {
    pub async fn start(jwks: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState::default());
        *state.jwks.lock().unwrap() = jwks;
        let task = Some(tokio::spawn(serve(listener, state.clone())));
        JwksServer { addr, state, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.base_url())
    }

    pub fn set_jwks(&self, jwks: String) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    pub fn set_cache_control(&self, value: &str) {
        *self.state.cache_control.lock().unwrap() = Some(value.to_owned());
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Leave JWKS requests unanswered (`true`) or answer them again (`false`).
    pub fn set_jwks_hangs(&self, hangs: bool) {
        self.state.jwks_hangs.store(hangs, Ordering::SeqCst);
    }

    /// Delay the discovery document by `delay`.
    pub fn set_discovery_delay(&self, delay: Duration) {
        self.state
            .discovery_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Delay the JWKS by `delay`.
    pub fn set_jwks_delay(&self, delay: Duration) {
        self.state
            .jwks_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Close the port and every open connection: clients get "connection refused".
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listen again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(serve(listener, self.state.clone())));
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<ServerState>) {
    // Connections live in the set: aborting `serve` drops the set, which aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                connections.spawn(connection(stream, state.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(mut stream: TcpStream, state: Arc<ServerState>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (status, body, cache_control) = match path.as_str() {
            "/jwks.json" => {
                state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                if state.jwks_hangs.load(Ordering::SeqCst) {
                    // Until the client gives up or the server stops (which aborts this task).
                    std::future::pending::<()>().await;
                }
                let delay = state.jwks_delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let cc = state.cache_control.lock().unwrap().clone();
                ("200 OK", state.jwks.lock().unwrap().clone(), cc)
            }
            "/.well-known/openid-configuration" => {
                state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                let delay = state.discovery_delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let host = head
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").or_else(|| l.strip_prefix("Host: ")))
                    .unwrap_or("127.0.0.1")
                    .trim()
                    .to_owned();
                let base = format!("http://{host}");
                let issuer = state.discovery_issuer.lock().unwrap().clone().unwrap_or(base.clone());
                let doc = json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks.json"),
                                 "id_token_signing_alg_values_supported": ["RS256", "ES256"]});
                ("200 OK", doc.to_string(), None)
            }
            _ => ("404 Not Found", "{}".to_owned(), None),
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n",
            body.len()
        );
        if let Some(cc) = cache_control {
            response.push_str(&format!("Cache-Control: {cc}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&body);
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clock, service, requests

/// A clock the test moves by hand (starts at the real time).
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(SystemClock.now_ms())))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The `issue-jwt` service around `callers`, with the dev key and `policy` (everything
/// else as the environment would configure it).
pub fn service(callers: VerifierChain, policy: &str) -> Service {
    let policy = policy.to_owned();
    let env = move |name: &str| -> Option<String> {
        match name {
            "ABLY_API_KEY" => Some(DEV_API_KEY.into()),
            "TOKEN_POLICY" => Some(policy.clone()),
            _ => None,
        }
    };
    let config = Config::from_env(&env).unwrap();
    let mut deps = Deps::from_config(config, Route::Jwt).unwrap();
    deps.callers = callers;
    Service::new(Route::Jwt, deps)
}

pub fn get(headers: &[(&str, &str)]) -> Request {
    let mut builder = lambda_http::http::Request::builder().method("GET").uri("/auth/jwt");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::Empty).unwrap()
}

pub fn bearer(token: &str) -> Request {
    get(&[("authorization", &format!("Bearer {token}"))])
}

pub fn body_text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8(b.clone()).unwrap(),
        _ => String::new(),
    }
}

/// The issued Ably JWT's claims, its HS256 signature verified with the dev key secret.
pub fn issued_claims(response: &Response<Body>) -> Value {
    assert_eq!(response.status(), 200, "body: {}", body_text(response));
    assert_eq!(response.headers()["content-type"], "application/jwt");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iat"]);
    jsonwebtoken::decode::<Value>(
        body_text(response),
        &jsonwebtoken::DecodingKey::from_secret(DEV_KEY_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims
}

/// The capability the issued token carries, parsed.
pub fn capability(claims: &Value) -> Value {
    serde_json::from_str(claims["x-ably-capability"].as_str().unwrap()).unwrap()
}

/// Assert an Ably ErrorInfo answer: status, code (body, header), `statusCode`, and that the
/// message contains `needle`.
pub fn assert_error(response: &Response<Body>, status: u16, code: u64, needle: &str) {
    let body = body_text(response);
    assert_eq!(response.status().as_u16(), status, "body: {body}");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.headers()["x-ably-errorcode"].to_str().unwrap(),
        code.to_string()
    );
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["error"]["code"], code, "{body}");
    assert_eq!(info["error"]["statusCode"], status, "{body}");
    let message = info["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "message {message:?} lacks {needle:?}");
}
