//! A fake Ably REST server on loopback, for the integration tests of the token routes.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, `Content-Length` bodies) and implements the
//! parts of Ably's REST API this project calls, checking them the way Ably does:
//!
//! - `POST /keys/{keyName}/requestToken`: recomputes the TokenRequest MAC itself (HMAC-SHA256
//!   with the `aws-lc-rs` crate directly — not the project's signing code), refuses a bad
//!   MAC (40101), a timestamp more than 2 minutes from its clock (40104), a replayed nonce
//!   (40105), a short nonce, a ttl over 24 h (40003); answers TokenDetails.
//! - `POST /keys/{keyName}/revokeTokens`: checks Basic auth with the key (40101), at most 100
//!   targets, `issuedBefore` bounds; answers 201 with a BatchResult. Channel targets fail
//!   per target unless enabled (like an app without channel revocation).
//! - `GET /time`: `[ms]` from its clock, which can be skewed.
//!
//! Every request is recorded. Faults can be queued (one per request) or made permanent:
//! an HTTP status with an Ably error, an answer that is not Ably's (a CDN's 4xx), a hang
//! (no answer), a dropped connection (before or after handling the request).
//!
//! Several fakes stand for Ably's primary and fallback hosts (each with its own state).
#![allow(dead_code)]

pub mod support;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Ably's tolerance for TokenRequest timestamps.
pub const TIMESTAMP_TOLERANCE_MS: i64 = 2 * 60 * 1000;

/// What the fake does instead of answering properly.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with an Ably ErrorInfo body (and `Retry-After` when given).
    Status {
        status: u16,
        code: u32,
        message: &'static str,
        retry_after: Option<u32>,
    },
    /// Read the request, then never answer (the client times out).
    Hang,
    /// Answer as usual, after this long.
    Slow(Duration),
    /// Read the request, then close the connection without answering.
    Drop,
    /// Handle the request (a TokenRequest's nonce is used up), then close the connection
    /// without answering: the answer was lost on the way back.
    HandleThenDrop,
    /// Answer this status and body without any Ably error (no code in the body, no
    /// `X-Ably-ErrorCode`), as a CDN in front of Ably does.
    NotAbly { status: u16, body: &'static str },
    /// Answer properly (to queue a fault for a later request).
    Pass,
}

impl Fault {
    pub fn status(status: u16, code: u32, message: &'static str) -> Fault {
        Fault::Status {
            status,
            code,
            message,
            retry_after: None,
        }
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct State {
    keys: HashMap<String, String>,
    skew_ms: AtomicI64,
    nonces: Mutex<HashSet<String>>,
    requests: Mutex<Vec<Recorded>>,
    queued: Mutex<VecDeque<Fault>>,
    always: Mutex<Option<Fault>>,
    channel_revocation: AtomicBool,
    tokens: AtomicU64,
    /// Requests inside a `Fault::Slow` delay now, and the most at once.
    slow_now: AtomicU64,
    slow_most: AtomicU64,
}

/// The running fake; stops when dropped.
pub struct FakeAbly {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAbly {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl FakeAbly {
    /// Start on 127.0.0.1 (a free port) knowing these keys (`appId.keyId:secret`).
    pub async fn start(keys: &[&str]) -> FakeAbly {
        let keys = keys
            .iter()
            .map(|k| {
                let (name, secret) = k.split_once(':').expect("key has ':'");
                (name.to_owned(), secret.to_owned())
            })
            .collect();
        let state = Arc::new(State {
            keys,
            skew_ms: AtomicI64::new(0),
            nonces: Mutex::new(HashSet::new()),
            requests: Mutex::new(Vec::new()),
            queued: Mutex::new(VecDeque::new()),
            always: Mutex::new(None),
            channel_revocation: AtomicBool::new(false),
            tokens: AtomicU64::new(0),
            slow_now: AtomicU64::new(0),
            slow_most: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve_connection(stream, task_state.clone()));
            }
        });
        FakeAbly { addr, state, task }
    }

    /// `http://127.0.0.1:<port>` — the `ABLY_REST_URL` to use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The fake's clock (system time plus the skew).
    pub fn now_ms(&self) -> i64 {
        system_ms() + self.state.skew_ms.load(Ordering::SeqCst)
    }

    /// Run the fake's clock `skew_ms` ahead of (or behind) the system clock.
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.state.skew_ms.store(skew_ms, Ordering::SeqCst);
    }

    pub fn enable_channel_revocation(&self, enabled: bool) {
        self.state.channel_revocation.store(enabled, Ordering::SeqCst);
    }

    /// The next request gets `fault` (queued faults apply in order, one per request).
    pub fn fail_next(&self, fault: Fault) {
        self.state.queued.lock().unwrap().push_back(fault);
    }

    /// Every request gets `fault` until [`FakeAbly::heal`].
    pub fn fail_always(&self, fault: Fault) {
        *self.state.always.lock().unwrap() = Some(fault);
    }

    pub fn heal(&self) {
        *self.state.always.lock().unwrap() = None;
        self.state.queued.lock().unwrap().clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The most requests that were being answered slowly (`Fault::Slow`) at one time: how
    /// many calls a client had open at once.
    pub fn most_slow_at_once(&self) -> u64 {
        self.state.slow_most.load(Ordering::SeqCst)
    }

    /// Forget the requests recorded so far (long benchmark runs).
    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    pub fn requests_to(&self, path_suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .collect()
    }
}

async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        state.requests.lock().unwrap().push(request.clone());
        let fault = state
            .queued
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| state.always.lock().unwrap().clone());
        let (status, headers, body) = match fault {
            Some(Fault::Hang) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Some(Fault::Drop) => return,
            Some(Fault::HandleThenDrop) => {
                let _ = route(&state, &request);
                return;
            }
            Some(Fault::NotAbly { status, body }) => (status, vec![], body.to_owned()),
            Some(Fault::Pass) | None => route(&state, &request),
            Some(Fault::Slow(delay)) => {
                let now = state.slow_now.fetch_add(1, Ordering::SeqCst) + 1;
                state.slow_most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                state.slow_now.fetch_sub(1, Ordering::SeqCst);
                route(&state, &request)
            }
            Some(Fault::Status {
                status,
                code,
                message,
                retry_after,
            }) => {
                let mut headers = vec![("X-Ably-ErrorCode".to_owned(), code.to_string())];
                if let Some(r) = retry_after {
                    headers.push(("Retry-After".to_owned(), r.to_string()));
                }
                (status, headers, error_body(status, code, message))
            }
        };
        let mut answer = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        for (name, value) in headers {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str("\r\n");
        answer.push_str(&body);
        if stream.write_all(answer.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// One HTTP/1.1 request with a `Content-Length` body (or none). `None` at EOF or on garbage.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[body_start..body_start + length]).into_owned();
    buffer.drain(..body_start + length);
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn error_body(status: u16, code: u32, message: &str) -> String {
    json!({"error": {"message": message, "code": code, "statusCode": status, "href": format!("https://help.ably.io/error/{code}")}})
        .to_string()
}

type Answer = (u16, Vec<(String, String)>, String);

fn error(status: u16, code: u32, message: &str) -> Answer {
    (
        status,
        vec![("X-Ably-ErrorCode".to_owned(), code.to_string())],
        error_body(status, code, message),
    )
}

fn route(state: &State, request: &Recorded) -> Answer {
    let path = request.path.split('?').next().unwrap_or("");
    let now = system_ms() + state.skew_ms.load(Ordering::SeqCst);
    if request.method == "GET" && path == "/time" {
        return (200, vec![], format!("[{now}]"));
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (request.method.as_str(), parts.as_slice()) {
        ("POST", ["keys", key_name, "requestToken"]) => request_token(state, key_name, request, now),
        ("POST", ["keys", key_name, "revokeTokens"]) => revoke_tokens(state, key_name, request, now),
        _ => error(404, 40400, "no such resource"),
    }
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn request_token(state: &State, key_name: &str, request: &Recorded, now: i64) -> Answer {
    let Some(secret) = state.keys.get(key_name) else {
        return error(404, 40400, "key not found");
    };
    let Ok(tr) = serde_json::from_str::<Value>(&request.body) else {
        return error(400, 40000, "body is not JSON");
    };
    if tr.get("keyName").and_then(Value::as_str) != Some(key_name) {
        return error(401, 40101, "keyName does not match the key in the path");
    }
    let nonce = text_of(tr.get("nonce"));
    if nonce.len() < 16 {
        return error(400, 40000, "nonce must be at least 16 characters");
    }
    // signText = keyName \n ttl \n capability \n clientId \n timestamp \n nonce \n
    let sign_text = format!(
        "{key_name}\n{}\n{}\n{}\n{}\n{nonce}\n",
        text_of(tr.get("ttl")),
        text_of(tr.get("capability")),
        text_of(tr.get("clientId")),
        text_of(tr.get("timestamp")),
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mac = STANDARD.decode(text_of(tr.get("mac"))).unwrap_or_default();
    if hmac::verify(&key, sign_text.as_bytes(), &mac).is_err() {
        return error(401, 40101, "Invalid mac");
    }
    let Some(timestamp) = tr.get("timestamp").and_then(Value::as_i64) else {
        return error(400, 40000, "timestamp must be an integer");
    };
    if (timestamp - now).abs() > TIMESTAMP_TOLERANCE_MS {
        return error(401, 40104, "Timestamp not current");
    }
    if !state.nonces.lock().unwrap().insert(nonce) {
        return error(401, 40105, "Nonce value replayed");
    }
    let ttl = tr.get("ttl").and_then(Value::as_i64).unwrap_or(3_600_000);
    if ttl > 24 * 3_600_000 {
        return error(400, 40003, "Invalid ttl: exceeds maximum");
    }
    let capability = text_of(tr.get("capability"));
    if !capability.is_empty() && serde_json::from_str::<serde_json::Map<String, Value>>(&capability).is_err() {
        return error(400, 40000, "capability is not a JSON object string");
    }
    let n = state.tokens.fetch_add(1, Ordering::SeqCst);
    let mut details = json!({
        "token": format!("fake-ably-token-{n}.{}", STANDARD.encode(now.to_be_bytes())),
        "keyName": key_name,
        "issued": now,
        "expires": now + ttl,
        "capability": if capability.is_empty() { r#"{"*":["*"]}"#.to_owned() } else { capability },
        "extraFieldAblyMayAdd": true,
    });
    if let Some(client_id) = tr.get("clientId").and_then(Value::as_str) {
        details["clientId"] = json!(client_id);
    }
    (200, vec![], details.to_string())
}

fn revoke_tokens(state: &State, key_name: &str, request: &Recorded, now: i64) -> Answer {
    let Some(secret) = state.keys.get(key_name) else {
        return error(404, 40400, "key not found");
    };
    let expected = format!("Basic {}", STANDARD.encode(format!("{key_name}:{secret}")));
    if request.header("authorization") != Some(expected.as_str()) {
        return error(401, 40101, "Invalid credentials");
    }
    let Ok(body) = serde_json::from_str::<Value>(&request.body) else {
        return error(400, 40000, "body is not JSON");
    };
    let Some(targets) = body.get("targets").and_then(Value::as_array) else {
        return error(400, 40000, "targets is required");
    };
    if targets.is_empty() || targets.len() > 100 {
        return error(400, 40003, "between 1 and 100 targets per request");
    }
    let issued_before = match body.get("issuedBefore") {
        None => now,
        Some(v) => match v.as_i64() {
            Some(ms) if ms <= now && ms >= now - 3_600_000 => ms,
            _ => return error(400, 40003, "issuedBefore must be within the last hour"),
        },
    };
    let margin = body.get("allowReauthMargin").and_then(Value::as_bool).unwrap_or(false);
    let mut success = 0;
    let mut failure = 0;
    let results: Vec<Value> = targets
        .iter()
        .map(|t| {
            let target = t.as_str().unwrap_or("");
            let known = ["clientId:", "revocationKey:", "channel:"]
                .iter()
                .any(|p| target.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            let channel_off = target.starts_with("channel:") && !state.channel_revocation.load(Ordering::SeqCst);
            if !known || channel_off {
                failure += 1;
                let message = if known {
                    "revocation by channel is not enabled for this app"
                } else {
                    "invalid target"
                };
                json!({"target": target, "error": {"message": message, "code": 40000, "statusCode": 400}})
            } else {
                success += 1;
                json!({"target": target, "issuedBefore": issued_before, "appliesAt": issued_before + if margin { 30_000 } else { 0 }})
            }
        })
        .collect();
    (
        201,
        vec![],
        json!({"successCount": success, "failureCount": failure, "results": results}).to_string(),
    )
}
