//! The release binaries under AWS's Lambda runtime interface emulator: the real Lambda
//! runtime protocol, the real binaries, the events of `events/` and the settings of
//! `env.json` — what `sam local invoke` does inside Docker, on loopback, without Docker.
//!
//! The emulator (`aws-lambda-rie`) ships inside the aws-sam-cli wheel in `.tools/venv`
//! (`make tools`). It runs the binary as `bootstrap` with `AWS_LAMBDA_RUNTIME_API` pointing at
//! itself; each event is POSTed to `/2015-03-31/functions/function/invocations` and the
//! function's API Gateway proxy response comes back.
//!
//! Each event goes to the function of its path (the routes of `template.yaml`), all events of
//! one function through one emulator (one warm container). Every answer must equal what the
//! library answers in process for the same event and settings (status, content type, Ably
//! error code, error body, token claims), keep the HTTP contract (no-store, ErrorInfo), and the
//! events known here must give their pinned status and code. Tokens are checked independently:
//! JWTs with the `jsonwebtoken` crate, TokenRequests by a fake Ably that recomputes the MAC.
//! Logs and answers must never show the key secret, the caller secret or a caller's token.
//!
//! The tests that run binaries are `#[ignore]`d in a plain `cargo test`, which builds no
//! release binaries: `make test-emulator` builds them (`make release`) and runs these with
//! `--ignored`.

mod fake_ably;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fake_ably::FakeAbly;
use integration_tests::*;
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use shared::{Route, Service};
use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

/// The workspace root, as this test was compiled.
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (path, function = binary name, logical id in template.yaml, route).
const FUNCTIONS: [(&str, &str, &str, Route); 4] = [
    ("/auth/jwt", "issue-jwt", "IssueJwtFunction", Route::Jwt),
    (
        "/auth/token-request",
        "issue-token-request",
        "IssueTokenRequestFunction",
        Route::TokenRequest,
    ),
    (
        "/auth/token",
        "issue-ably-token",
        "IssueAblyTokenFunction",
        Route::AblyToken,
    ),
    ("/auth/revoke", "revoke-tokens", "RevokeTokensFunction", Route::Revoke),
];

/// The answers pinned for the events in `events/` under env.json: (file, status, Ably code
/// or 0 for success). Events added later are still checked against the in-process answer and
/// the HTTP contract; pin them here too.
const EXPECTED: &[(&str, u16, u32)] = &[
    ("jwt-get-valid-caller.json", 200, 0),
    ("jwt-post-form.json", 200, 0),
    ("jwt-post-json.json", 200, 0),
    ("jwt-moderator.json", 200, 0),
    ("jwt-anonymous.json", 200, 0),
    ("jwt-preflight.json", 204, 0),
    ("jwt-expired-caller.json", 401, 40101),
    ("jwt-bad-signature.json", 401, 40101),
    ("jwt-alg-none.json", 401, 40101),
    ("jwt-bad-ttl.json", 400, 40000),
    ("jwt-bad-capability.json", 400, 40000),
    ("jwt-client-id-mismatch.json", 403, 40102),
    ("jwt-capability-denied.json", 403, 40160),
    ("jwt-method-not-allowed.json", 405, 40500),
    ("authorizer-http-jwt.json", 200, 0),
    ("authorizer-http-lambda.json", 200, 0),
    ("authorizer-rest-cognito.json", 200, 0),
    ("authorizer-rest-lambda.json", 200, 0),
    ("token-request-get-valid-caller.json", 200, 0),
    ("token-request-post-form.json", 200, 0),
    ("token-request-anonymous.json", 200, 0),
    ("token-request-expired-caller.json", 401, 40101),
    ("token-request-bad-ttl.json", 400, 40000),
    ("token-request-authorizer.json", 200, 0),
    ("ably-token-get-valid-caller.json", 200, 0),
    ("ably-token-post-json.json", 200, 0),
    ("ably-token-anonymous.json", 200, 0),
    ("ably-token-expired-caller.json", 401, 40101),
    ("ably-token-bad-capability.json", 400, 40000),
    ("ably-token-authorizer.json", 200, 0),
    ("revoke-admin.json", 200, 0),
    ("revoke-authorizer-admin.json", 200, 0),
    ("revoke-not-allowed.json", 403, 40300),
    ("revoke-no-caller.json", 401, 40100),
    ("revoke-expired-caller.json", 401, 40101),
    ("revoke-get.json", 405, 40500),
    ("revoke-bad-body.json", 400, 40000),
];

// ---------------------------------------------------------------------- the emulator

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `aws-lambda-rie-<arch>` from the aws-sam-cli wheel in `.tools/venv`.
fn find_rie() -> PathBuf {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "arm64",
        other => panic!("no aws-lambda-rie for {other}"),
    };
    let lib = workspace().join(".tools/venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| {
                d.path()
                    .join("site-packages/samcli/local/rapid")
                    .join(format!("aws-lambda-rie-{arch}"))
            })
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "FAIL: aws-lambda-rie not found under {} (it ships inside aws-sam-cli): run `make tools`",
            lib.display()
        )
    })
}

/// One emulator process running one function: one warm Lambda container.
struct Emulator {
    child: Child,
    port: u16,
    dir: PathBuf,
}

static EMULATORS: AtomicU32 = AtomicU32::new(0);

impl Emulator {
    async fn start(function: &str, settings: &HashMap<String, String>) -> Emulator {
        let n = EMULATORS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rie-test-{}-{n}-{function}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("task directory");
        // Run as `bootstrap` from its task directory, as Lambda runs it from /var/task.
        std::os::unix::fs::symlink(release_binary(function), dir.join("bootstrap")).expect("bootstrap link");
        let log = std::fs::File::create(dir.join("emulator.log")).expect("log file");
        let port = free_port();
        let mut command = Command::new(find_rie());
        command
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg(dir.join("bootstrap"))
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_TIMEOUT", "5")
            .env("AWS_REGION", "us-east-1")
            .env("LAMBDA_TASK_ROOT", &dir)
            .envs(settings)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = command.spawn().expect("start aws-lambda-rie");
        let mut emulator = Emulator { child, port, dir };
        emulator.wait_listening().await;
        emulator
    }

    async fn wait_listening(&mut self) {
        // Bounded by a count of attempts: this waits for a process to listen, it measures nothing.
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("aws-lambda-rie exited at start ({status}):\n{}", self.logs());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "aws-lambda-rie is not listening on 127.0.0.1:{}:\n{}",
            self.port,
            self.logs()
        );
    }

    /// POST one event; the function's answer (the emulator's response body) as JSON.
    async fn invoke(&self, event: &str) -> Value {
        let (status, body) = http_post(self.port, INVOKE_PATH, event).await;
        assert_eq!(status, 200, "the emulator answered {status}: {body}\n{}", self.logs());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("no JSON from the emulator ({e}): {body}"))
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("emulator.log")).unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Our own child, by its id.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal HTTP/1.0 POST on loopback: (status, body). The body is read by its
/// Content-Length (a keep-alive server need not close), else to the end of the connection.
/// Bounded: a peer that does not answer fails the test instead of hanging it.
async fn http_post(port: u16, path: &str, body: &str) -> (u16, String) {
    tokio::time::timeout(EXCHANGE_BOUND, exchange(port, path, body))
        .await
        .unwrap_or_else(|_| panic!("no answer from 127.0.0.1:{port}{path} within {EXCHANGE_BOUND:?}"))
}

/// The longest wait for one HTTP answer (a bound against hangs, not a performance check).
const EXCHANGE_BOUND: Duration = Duration::from_secs(120);

async fn exchange(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if let Some(length) = length {
                while raw.len() < end + 4 + length {
                    let n = stream.read(&mut chunk).await.expect("receive");
                    assert!(n > 0, "connection closed before the whole body arrived");
                    raw.extend_from_slice(&chunk[..n]);
                }
                raw.truncate(end + 4 + length);
                break;
            }
        }
        let n = stream.read(&mut chunk).await.expect("receive");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (status, body.to_owned())
}

// ---------------------------------------------------------------------- settings and events

fn env_json() -> Value {
    let text = std::fs::read_to_string(workspace().join("env.json")).expect("env.json");
    serde_json::from_str(&text).expect("env.json is JSON")
}

/// What `sam local invoke --env-vars env.json` gives `logical_id`: "Parameters", then its own
/// section; then `overrides`.
fn settings(logical_id: &str, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let doc = env_json();
    let mut env = HashMap::new();
    for section in ["Parameters", logical_id] {
        if let Some(vars) = doc.get(section).and_then(Value::as_object) {
            for (k, v) in vars {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                env.insert(k.clone(), v);
            }
        }
    }
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

struct Event {
    file: String,
    text: String,
}

/// The events in `events/` whose path is `path` (API Gateway v2 `rawPath`, or v1 `path`).
fn events_for(path: &str) -> Vec<Event> {
    let mut events: Vec<Event> = all_events()
        .into_iter()
        .filter(|(_, p, _)| p == path)
        .map(|(file, _, text)| Event { file, text })
        .collect();
    events.sort_by(|a, b| a.file.cmp(&b.file));
    events
}

/// (file name, path, text) of every event.
fn all_events() -> Vec<(String, String, String)> {
    let dir = workspace().join("events");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("events/") {
        let path = entry.expect("events/ entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("event file");
        let event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let route = event["rawPath"]
            .as_str()
            .or_else(|| event["path"].as_str())
            .unwrap_or_default()
            .to_owned();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
        out.push((file, route, text));
    }
    out
}

// ---------------------------------------------------------------------- answers

/// A function's answer, from the emulator or in process, in one shape.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn from_lambda(response: &Value) -> Answer {
        let status = response["statusCode"].as_u64().expect("statusCode") as u16;
        let mut headers: HashMap<String, String> = response["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(multi) = response["multiValueHeaders"].as_object() {
            for (k, v) in multi {
                let joined: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if !joined.is_empty() {
                    headers
                        .entry(k.to_ascii_lowercase())
                        .or_insert_with(|| joined.join(", "));
                }
            }
        }
        let raw = response["body"].as_str().unwrap_or_default();
        let body = if response["isBase64Encoded"].as_bool() == Some(true) {
            String::from_utf8(STANDARD.decode(raw).expect("base64 body")).expect("utf-8 body")
        } else {
            raw.to_owned()
        };
        Answer { status, headers, body }
    }

    fn from_service(response: &Response<Body>) -> Answer {
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = match response.body() {
            Body::Text(t) => t.clone(),
            Body::Binary(b) => String::from_utf8(b.clone()).expect("utf-8 body"),
            _ => String::new(),
        };
        Answer {
            status: response.status().as_u16(),
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.body))
    }

    /// The Ably error code of an error answer, 0 for success.
    fn code(&self) -> u32 {
        if self.status < 400 {
            return 0;
        }
        self.json()["error"]["code"].as_u64().unwrap_or_default() as u32
    }
}

/// The HTTP contract every answer keeps, whatever the event.
fn assert_contract(file: &str, answer: &Answer) {
    assert_eq!(
        answer.header("cache-control"),
        Some("no-store"),
        "{file}: Cache-Control"
    );
    if answer.status >= 400 {
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{file}: error content type"
        );
        let body = answer.json();
        let code = body["error"]["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("{file}: ErrorInfo code: {body}"));
        assert_eq!(
            body["error"]["statusCode"],
            json!(answer.status),
            "{file}: statusCode = HTTP status"
        );
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{file}: message"
        );
        assert_eq!(
            answer.header("x-ably-errorcode"),
            Some(code.to_string().as_str()),
            "{file}: X-Ably-ErrorCode"
        );
        assert!(
            answer.header("x-ably-errormessage").is_some_and(|m| !m.is_empty()),
            "{file}: X-Ably-ErrorMessage"
        );
        assert!(
            body.get("response").is_none(),
            "{file}: no top-level `response` property"
        );
    }
    for secret in [DEV_KEY_SECRET, DEV_CALLER_SECRET] {
        assert!(!answer.body.contains(secret), "{file}: a secret in the body");
        assert!(
            answer.headers.values().all(|v| !v.contains(secret)),
            "{file}: a secret in a header"
        );
    }
}

/// The parts of two answers to the same event that must agree (tokens differ in time and nonce).
/// A difference can also mean a stale binary: `make test-emulator` rebuilds them first.
fn assert_same_answer(file: &str, route: Route, emulated: &Answer, in_process: &Answer) {
    let file = &format!("{file} (left: the release binary under the emulator; right: the current source in process; a stale binary? run `make release`)");
    assert_eq!(
        emulated.status, in_process.status,
        "{file}: status (emulator vs in process): {}",
        emulated.body
    );
    for h in [
        "content-type",
        "x-ably-errorcode",
        "access-control-allow-origin",
        "access-control-allow-credentials",
    ] {
        assert_eq!(emulated.header(h), in_process.header(h), "{file}: header {h}");
    }
    if emulated.status >= 400 || emulated.status == 204 {
        assert_eq!(emulated.body, in_process.body, "{file}: body");
        return;
    }
    match route {
        Route::Jwt => {
            let (eh, ec) = verify_ably_jwt(&emulated.body, DEV_KEY_SECRET);
            let (ih, ic) = verify_ably_jwt(&in_process.body, DEV_KEY_SECRET);
            assert_eq!(eh, ih, "{file}: JWT header");
            assert_eq!(
                ec["exp"].as_u64().unwrap() - ec["iat"].as_u64().unwrap(),
                ic["exp"].as_u64().unwrap() - ic["iat"].as_u64().unwrap(),
                "{file}: JWT lifetime"
            );
            assert_eq!(
                without(&ec, &["iat", "exp"]),
                without(&ic, &["iat", "exp"]),
                "{file}: JWT claims"
            );
        }
        Route::TokenRequest => assert_eq!(
            without(&emulated.json(), &["timestamp", "nonce", "mac"]),
            without(&in_process.json(), &["timestamp", "nonce", "mac"]),
            "{file}: TokenRequest"
        ),
        Route::AblyToken => assert_eq!(
            without(&emulated.json(), &["token", "issued", "expires"]),
            without(&in_process.json(), &["token", "issued", "expires"]),
            "{file}: TokenDetails"
        ),
        Route::Revoke => assert_eq!(
            without(&emulated.json(), &["results"]),
            without(&in_process.json(), &["results"]),
            "{file}: BatchResult"
        ),
    }
}

fn without(value: &Value, fields: &[&str]) -> Value {
    let mut v = value.clone();
    if let Some(map) = v.as_object_mut() {
        for f in fields {
            map.remove(*f);
        }
    }
    v
}

/// The token a successful answer carries, checked by an implementation other than ours.
async fn assert_token(file: &str, route: Route, answer: &Answer, fake: &FakeAbly) {
    match route {
        Route::Jwt => {
            assert_eq!(answer.header("content-type"), Some("application/jwt"), "{file}");
            let (header, claims) = verify_ably_jwt(&answer.body, DEV_KEY_SECRET);
            assert_eq!(header["kid"], DEV_KEY_NAME, "{file}");
            assert!(claims["x-ably-capability"].is_string(), "{file}: {claims}");
        }
        Route::TokenRequest => {
            assert_eq!(answer.header("content-type"), Some("application/json"), "{file}");
            let request = answer.json();
            assert_eq!(request["keyName"], DEV_KEY_NAME, "{file}");
            // The fake recomputes the MAC (aws-lc-rs HMAC directly) as Ably does, and refuses a bad one.
            let (status, body) =
                http_post(fake.port(), &format!("/keys/{DEV_KEY_NAME}/requestToken"), &answer.body).await;
            assert!(
                (200..300).contains(&status),
                "{file}: the fake Ably refused the TokenRequest: {status} {body}"
            );
        }
        Route::AblyToken => {
            let details = answer.json();
            assert!(
                details["token"].as_str().is_some_and(|t| !t.is_empty()),
                "{file}: {details}"
            );
            assert_eq!(details["keyName"], DEV_KEY_NAME, "{file}");
        }
        Route::Revoke => {
            let result = answer.json();
            assert!(
                result["successCount"].is_u64() && result["failureCount"].is_u64(),
                "{file}: {result}"
            );
        }
    }
}

/// Every token a caller presented in the events (bearer headers).
fn caller_tokens(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let v: Value = serde_json::from_str(&e.text).ok()?;
            let headers = v["headers"].as_object()?;
            let auth = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))?
                .1
                .as_str()?;
            auth.strip_prefix("Bearer ").map(str::to_owned)
        })
        .collect()
}

/// Run every event of `path` through the function's release binary under the emulator.
async fn function_answers_its_events(path: &str) {
    let (_, function, logical_id, route) = FUNCTIONS
        .into_iter()
        .find(|(p, ..)| *p == path)
        .expect("a template route");
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let url = fake.url();
    let env = settings(logical_id, &[("ABLY_REST_URL", &url)]);
    let in_process = {
        let env = env.clone();
        Service::from_env_with(route, &move |k: &str| env.get(k).cloned()).expect("env.json configures the function")
    };
    let events = events_for(path);
    assert!(!events.is_empty(), "no events for {path} in events/");

    let emulator = Emulator::start(function, &env).await;
    let mut statuses = Vec::new();
    for event in &events {
        let file = event.file.as_str();
        let lambda_response = emulator.invoke(&event.text).await;
        let emulated = Answer::from_lambda(&lambda_response);
        assert_contract(file, &emulated);
        let request = lambda_http::request::from_str(&event.text).expect("event parses");
        let expected = Answer::from_service(&in_process.handle(request).await);
        assert_same_answer(file, route, &emulated, &expected);
        if let Some((_, status, code)) = EXPECTED.iter().find(|(f, ..)| *f == file) {
            assert_eq!(
                (emulated.status, emulated.code()),
                (*status, *code),
                "{file}: pinned status and code; body {}",
                emulated.body
            );
        }
        if emulated.status == 200 {
            assert_token(file, route, &emulated, &fake).await;
        }
        statuses.push(emulated.status);
    }

    // One JSON log line per request, naming the route and the status, and no secret anywhere.
    let logs = emulator.logs();
    let mut logged: Vec<u16> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["route"] == function)
        .filter_map(|l| l["status"].as_u64().map(|s| s as u16))
        .collect();
    logged.sort_unstable();
    statuses.sort_unstable();
    assert_eq!(
        logged, statuses,
        "one request log line per invocation with its status:\n{logs}"
    );
    eprintln!("{function}: {} events answered under the emulator", events.len());
    for secret in [DEV_KEY_SECRET, DEV_CALLER_SECRET] {
        assert!(!logs.contains(secret), "a secret in the logs:\n{logs}");
    }
    for token in caller_tokens(&events) {
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            signature.len() < 8 || !logs.contains(signature),
            "a caller token in the logs:\n{logs}"
        );
    }
}

// ---------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn issue_jwt_answers_its_events_under_the_lambda_emulator() {
    function_answers_its_events("/auth/jwt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn issue_token_request_answers_its_events_under_the_lambda_emulator() {
    function_answers_its_events("/auth/token-request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn issue_ably_token_answers_its_events_under_the_lambda_emulator() {
    function_answers_its_events("/auth/token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn revoke_tokens_answers_its_events_under_the_lambda_emulator() {
    function_answers_its_events("/auth/revoke").await;
}

/// A bad policy stops the function during the Lambda init phase: the invocation gets no HTTP
/// answer and no token, and the log names the field and the fault; the key secret stays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn bad_policy_fails_the_init_phase_with_a_message_naming_the_field() {
    let policy = r#"{"clientId":"{sub}","ttlSeconds":3600,"capability":{"chat:*":["publsh"]}}"#;
    let env = settings("IssueJwtFunction", &[("TOKEN_POLICY", policy)]);
    let emulator = Emulator::start("issue-jwt", &env).await;
    let event = std::fs::read_to_string(workspace().join("events/jwt-get-valid-caller.json")).expect("event");
    let (_, body) = http_post(emulator.port, INVOKE_PATH, &event).await;
    assert!(
        !body.contains("eyJ"),
        "no token from a function that failed to start: {body}"
    );
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert!(
        answer.get("statusCode").is_none(),
        "an init failure is no HTTP answer: {body}"
    );
    let logs = emulator.logs();
    let config_error = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("a JSON error line at start-up:\n{logs}"));
    let error = config_error["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"capability["chat:*"]"#) && error.contains("publsh"),
        "names field and fault: {error}"
    );
    assert!(
        !logs.contains(DEV_KEY_SECRET) && !body.contains(DEV_KEY_SECRET),
        "no key secret:\n{logs}"
    );
}

/// Every event in `events/` goes to a route of the template (and so to a function).
#[test]
fn every_event_targets_a_template_route() {
    let template = std::fs::read_to_string(workspace().join("template.yaml")).expect("template.yaml");
    for (file, path, _) in all_events() {
        assert!(
            FUNCTIONS.iter().any(|(p, ..)| *p == path),
            "events/{file}: path {path:?} is not one of the template's routes"
        );
        assert!(
            template.contains(&format!("{path}:")),
            "template.yaml has no route {path}"
        );
    }
}

/// template.yaml builds every function of the workspace, under the logical ids env.json uses.
#[test]
fn template_builds_every_function_binary() {
    let template = std::fs::read_to_string(workspace().join("template.yaml")).expect("template.yaml");
    let mut dirs: Vec<String> = std::fs::read_dir(workspace().join("functions"))
        .expect("functions/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    dirs.sort();
    let mut known: Vec<String> = FUNCTIONS.iter().map(|(_, f, ..)| (*f).to_owned()).collect();
    known.sort();
    assert_eq!(dirs, known, "functions/ and the emulator tests' routes differ");
    for (_, function, logical_id, _) in FUNCTIONS {
        assert!(
            template.contains(&format!("  {logical_id}:\n    Type: AWS::Serverless::Function")),
            "{logical_id}"
        );
        assert!(
            template.contains(&format!("Binary: {function}\n")),
            "template.yaml does not build {function}"
        );
    }
}

/// env.json (sam local invoke --env-vars, make invoke) carries the settings of `make dev`:
/// regenerate it with `python3 scripts/make-env-json.py` when dev/ changes.
#[test]
fn env_json_matches_the_dev_settings() {
    let doc = env_json();
    let params = &doc["Parameters"];
    assert_eq!(params["ABLY_API_KEY"], DEV_API_KEY);
    assert_eq!(params["CALLER_HS256_SECRET"], DEV_CALLER_SECRET);
    let dev_policy: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace().join("dev/policy.json")).expect("dev/policy.json"))
            .expect("policy JSON");
    let inline: Value = serde_json::from_str(params["TOKEN_POLICY"].as_str().expect("TOKEN_POLICY")).expect("JSON");
    assert_eq!(
        inline, dev_policy,
        "env.json TOKEN_POLICY differs from dev/policy.json: run scripts/make-env-json.py"
    );
    // The TokenRequest / Ably Token functions: the same policy without the JWT-only fields
    // (dev/policy-token-routes.json, the policy of `make dev DEV_ENV=dev/token-routes.env`).
    let routes_file = workspace().join("dev/policy-token-routes.json");
    let routes_policy: Option<Value> = std::fs::read_to_string(&routes_file)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("dev/policy-token-routes.json is JSON"));
    for logical_id in ["IssueTokenRequestFunction", "IssueAblyTokenFunction"] {
        let policy: Value =
            serde_json::from_str(doc[logical_id]["TOKEN_POLICY"].as_str().expect("TOKEN_POLICY")).expect("JSON");
        let text = policy.to_string();
        assert!(
            !text.contains("channelClaims") && !text.contains("rateLimits") && !text.contains("revocationKey"),
            "{logical_id}: {text}"
        );
        assert_eq!(policy["capability"], dev_policy["capability"], "{logical_id}");
        assert_eq!(policy["clientId"], dev_policy["clientId"], "{logical_id}");
        if let Some(expected) = &routes_policy {
            assert_eq!(
                &policy, expected,
                "{logical_id}: differs from dev/policy-token-routes.json"
            );
        }
    }
    // Every variable env.json sets is declared by the template (SAM ignores the others).
    let template = std::fs::read_to_string(workspace().join("template.yaml")).expect("template.yaml");
    for section in doc.as_object().expect("object").values() {
        for name in section.as_object().expect("object").keys() {
            assert!(
                template.contains(&format!("        {name}: ")),
                "template.yaml does not declare {name}"
            );
        }
    }
}

// ---------------------------------------------------------------------- the runtime boundary

/// `event` (a JSON event) with `edit` applied.
fn edited(event: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_str(event).expect("event JSON");
    edit(&mut value);
    value.to_string()
}

/// Raw events that once aborted the runtime (shared::boundary), each with its expected
/// status: the unencoded capability typed into a curl command line is decoded (the caller's
/// answer as for the encoded query), the rest is a 400.
fn boundary_events(valid: &str) -> Vec<(&'static str, String, Option<u16>)> {
    let v2 = std::fs::read_to_string(workspace().join("events/jwt-get-valid-caller.json")).expect("event");
    let path = serde_json::from_str::<Value>(valid).expect("event")["rawPath"].clone();
    let v2 = edited(&v2, |e| {
        e["rawPath"] = path.clone();
        e["requestContext"]["http"]["path"] = path.clone();
    });
    let rest = std::fs::read_to_string(workspace().join("events/authorizer-rest-lambda.json")).expect("event");
    vec![
        (
            "unencoded capability in the query",
            edited(&v2, |e| {
                e["rawQueryString"] = json!(r#"capability={"chat:lobby":["subscribe"]}&rnd=1 2<3>"#)
            }),
            None,
        ),
        (
            "query over 64 KiB",
            edited(&v2, |e| {
                e["rawQueryString"] = json!(format!("rnd={}", "\"".repeat(66_000)))
            }),
            Some(400),
        ),
        (
            "Host header with a space",
            edited(&v2, |e| e["headers"]["host"] = json!("a b")),
            Some(400),
        ),
        (
            "X-Forwarded-Proto that is no scheme",
            edited(&v2, |e| e["headers"]["x-forwarded-proto"] = json!("h/s")),
            Some(400),
        ),
        (
            "body marked base64 that is not",
            edited(&v2, |e| {
                e["body"] = json!("%%%");
                e["isBase64Encoded"] = json!(true);
            }),
            Some(400),
        ),
        (
            "header value with a NUL",
            edited(&v2, |e| e["headers"]["x-odd"] = json!("a\u{0}b")),
            Some(400),
        ),
        (
            "REST query over the URL limit",
            edited(&rest, |e| {
                e["path"] = path.clone();
                e["queryStringParameters"] = json!({"capability": "x".repeat(20_000)});
            }),
            Some(400),
        ),
        (
            "not an HTTP event",
            r#"{"Records":[{"eventSource":"aws:sqs"}]}"#.to_owned(),
            Some(400),
        ),
        (
            "REST query parameter with an empty value list",
            edited(&rest, |e| {
                e["path"] = path.clone();
                e["multiValueQueryStringParameters"] = json!({"capability": []});
            }),
            Some(400),
        ),
        (
            "25,000 header names",
            edited(&v2, |e| {
                let flood: serde_json::Map<String, Value> =
                    (0..25_000).map(|i| (format!("h{i}"), json!("v"))).collect();
                e["headers"] = Value::Object(flood);
            }),
            Some(400),
        ),
        (
            "cookie with a control character",
            edited(&v2, |e| e["cookies"] = json!(["session=a\u{1}b"])),
            Some(400),
        ),
    ]
}

/// Every function, one container: after each raw event of the class that used to abort the
/// runtime, the same container answers the next valid event as before, and the function
/// initialised exactly once (one "initialised" log line, no runtime exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn bad_raw_events_are_answered_without_restarting_the_container() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    let url = fake.url();
    for (path, function, logical_id, _) in FUNCTIONS {
        let env = settings(logical_id, &[("ABLY_REST_URL", &url)]);
        let valid = &events_for(path)[0].text;
        let emulator = Emulator::start(function, &env).await;
        let baseline = Answer::from_lambda(&emulator.invoke(valid).await);
        let mut invocations = 1;
        for (what, event, expected) in boundary_events(valid) {
            let answer = Answer::from_lambda(&emulator.invoke(&event).await);
            assert_contract(what, &answer);
            match expected {
                Some(status) => {
                    assert_eq!(
                        (answer.status, answer.code()),
                        (status, 40000),
                        "{function}, {what}: {}",
                        answer.body
                    );
                    let message = answer.json()["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    assert!(
                        message.starts_with("the request cannot be processed: "),
                        "{what}: {message}"
                    );
                }
                None => assert!(answer.status < 500, "{function}, {what}: {}", answer.body),
            }
            let next = Answer::from_lambda(&emulator.invoke(valid).await);
            assert_eq!(next.status, baseline.status, "{function} after {what}: {}", next.body);
            assert_eq!(next.header("content-type"), baseline.header("content-type"));
            invocations += 2;
        }
        let logs = emulator.logs();
        let inits = logs.matches("initialised: serving requests").count();
        assert_eq!(inits, 1, "{function}: one init for {invocations} invocations:\n{logs}");
        assert!(
            !logs.contains("Runtime exited"),
            "{function}: the runtime exited:\n{logs}"
        );
        let refused = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["outcome"] == "bad_event")
            .count();
        assert_eq!(refused, 10, "{function}: one log line per refused event:\n{logs}");
        eprintln!("{function}: {invocations} invocations, {inits} init");
    }
}

/// The unencoded capability reaches issue-jwt decoded: the token carries exactly it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn an_unencoded_capability_in_the_query_is_issued_decoded() {
    let env = settings("IssueJwtFunction", &[]);
    let emulator = Emulator::start("issue-jwt", &env).await;
    let valid = std::fs::read_to_string(workspace().join("events/jwt-get-valid-caller.json")).expect("event");
    let (_, event, _) = boundary_events(&valid).remove(0);
    let answer = Answer::from_lambda(&emulator.invoke(&event).await);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (_, claims) = verify_ably_jwt(&answer.body, DEV_KEY_SECRET);
    assert_eq!(claims["x-ably-capability"], json!(r#"{"chat:lobby":["subscribe"]}"#));
}

// ---------------------------------------------------------------------- operating it: logs and metrics

/// The function's JSON lines of the emulator's log, each with the request id of the
/// invocation the emulator was running when it was written (from its
/// `INVOKE START(requestId: …)` and `END RequestId: …` lines; the init phase comes before the
/// first), `None` outside any invocation.
fn lines_by_invocation(logs: &str) -> Vec<(Option<String>, Value)> {
    let mut current: Option<String> = None;
    let mut lines = Vec::new();
    for line in logs.lines() {
        if let Some(rest) = line.split("INVOKE START(requestId: ").nth(1) {
            current = rest.split(')').next().map(str::to_owned);
            continue;
        }
        if line.contains("END RequestId: ") {
            current = None;
            continue;
        }
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            if value.is_object() {
                lines.push((current.clone(), value));
            }
        }
    }
    lines
}

/// The EMF lines of `lines`, each checked against the specification and against the
/// committed catalogue of what the code emits (tests/template/emitted-metrics.json).
fn emf_lines(lines: &[(Option<String>, Value)]) -> Vec<Value> {
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("tests/template/emitted-metrics.json")).expect("catalogue"),
    )
    .expect("catalogue JSON");
    let known: Vec<(String, Vec<String>)> = committed
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let dims = e["dimensions"].as_array().expect("dimensions");
            (
                e["metric"].as_str().unwrap_or_default().to_owned(),
                dims.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect(),
            )
        })
        .collect();
    let emf: Vec<Value> = lines.iter().map(|(_, v)| v).filter(|v| is_emf(v)).cloned().collect();
    for line in &emf {
        let problems = emf_problems(line);
        assert!(problems.is_empty(), "EMF specification: {problems:?} in {line}");
        let mut only = EmfCatalogue::new();
        catalogue_add(&mut only, line);
        for (_, metric, dims) in only.keys() {
            assert!(
                known.iter().any(|(m, d)| m == metric && d == dims),
                "{metric} {dims:?} is not in the committed catalogue: {line}"
            );
        }
    }
    emf
}

/// Whether `line` publishes `metric` with these dimension values.
fn publishes(line: &Value, metric: &str, dims: &[(&str, &str)]) -> bool {
    line[metric].is_number()
        && dims.iter().all(|(k, v)| line[*k] == *v)
        && line["_aws"]["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| {
                d["Metrics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["Name"] == metric)
            })
}

/// Every line a request writes carries the request id the emulator gave the invocation (and
/// the function name, and `cold_start` on the first only); the request lines carry their
/// metrics, valid EMF; a refused request counts its Ably code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn every_log_line_carries_the_invocation_id_the_emulator_assigned() {
    let env = settings("IssueJwtFunction", &[]);
    let emulator = Emulator::start("issue-jwt", &env).await;
    let events = [
        "jwt-get-valid-caller.json",
        "jwt-expired-caller.json",
        "jwt-preflight.json",
        "jwt-get-valid-caller.json",
    ];
    for file in events {
        let text = std::fs::read_to_string(workspace().join("events").join(file)).expect("event");
        emulator.invoke(&text).await;
    }
    let logs = emulator.logs();
    let lines = lines_by_invocation(&logs);
    let mut ids = Vec::new();
    for (invocation, line) in &lines {
        match invocation {
            Some(id) => {
                assert_eq!(
                    line["request_id"],
                    id.as_str(),
                    "a line without its invocation's id:\n{logs}"
                );
                assert_eq!(line["function_name"], "issue-jwt", "{line}");
                assert!(line["cold_start"].is_boolean(), "{line}");
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
            None => assert!(
                line.get("request_id").is_none(),
                "a request id outside an invocation: {line}"
            ),
        }
    }
    assert_eq!(ids.len(), events.len(), "one emulator id per invocation:\n{logs}");
    let requests: Vec<&Value> = lines
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["message"] == "request")
        .collect();
    assert_eq!(requests.len(), events.len(), "{logs}");
    let cold: Vec<bool> = requests.iter().map(|r| r["cold_start"] == true).collect();
    assert_eq!(
        cold,
        [true, false, false, false],
        "cold_start on the first request only"
    );

    let emf = emf_lines(&lines);
    assert_eq!(emf.iter().filter(|l| l["message"] == "request").count(), events.len());
    assert!(emf.iter().any(|l| publishes(l, "ColdStart", &[("Route", "issue-jwt")])
        && l["InitDuration"].as_f64().is_some_and(|ms| ms > 0.0)));
    assert!(emf.iter().any(
        |l| publishes(l, "Refusals", &[("Route", "issue-jwt"), ("ErrorCode", "40101")]) && l["Result"] == "refused_4xx"
    ));
    assert!(emf
        .iter()
        .any(|l| publishes(l, "Requests", &[("Route", "issue-jwt"), ("Result", "preflight")])));
    assert_eq!(
        emf.iter()
            .filter(|l| publishes(l, "JwtBytes", &[("Route", "issue-jwt")]) && l["JwtBytes"].as_u64() > Some(100))
            .count(),
        2,
        "the two issued JWTs' sizes"
    );
}

/// Secrets Manager goes away: the next request after the cache TTL is still issued from the
/// cached key and its lines count a stale secret and a Secrets Manager failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn a_secrets_manager_outage_served_stale_emits_its_metrics() {
    let mut moto = integration_tests::moto::Moto::start();
    moto.create_secret("prod/ably", DEV_API_KEY).await;
    let url = moto.url();
    let env = settings(
        "IssueJwtFunction",
        &[
            ("ABLY_API_KEY", ""),
            ("ABLY_API_KEY_SECRET_ID", "prod/ably"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &url),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("SECRET_CACHE_TTL_SECONDS", "1"),
        ],
    );
    let emulator = Emulator::start("issue-jwt", &env).await;
    let valid = std::fs::read_to_string(workspace().join("events/jwt-get-valid-caller.json")).expect("event");
    let first = Answer::from_lambda(&emulator.invoke(&valid).await);
    assert_eq!(first.status, 200, "{}\n{}", first.body, emulator.logs());
    moto.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stale = Answer::from_lambda(&emulator.invoke(&valid).await);
    assert_eq!(
        stale.status,
        200,
        "served from the cached key: {}\n{}",
        stale.body,
        emulator.logs()
    );

    let logs = emulator.logs();
    let lines = lines_by_invocation(&logs);
    let emf = emf_lines(&lines);
    let second = lines
        .iter()
        .filter(|(_, v)| v["message"] == "request")
        .nth(1)
        .and_then(|(id, _)| id.clone())
        .expect("the second request's invocation");
    let of_second: Vec<&Value> = emf.iter().filter(|l| l["request_id"] == second.as_str()).collect();
    assert!(
        of_second
            .iter()
            .any(|l| publishes(l, "SecretsServedStale", &[("Secret", "ABLY_API_KEY_SECRET_ID")])),
        "a stale-secret metric in the second request:\n{logs}"
    );
    assert!(
        of_second.iter().any(|l| publishes(
            l,
            "UpstreamFailures",
            &[("Dependency", "SecretsManager"), ("Kind", "unreachable")]
        )),
        "a Secrets Manager failure in the second request:\n{logs}"
    );
    assert!(of_second
        .iter()
        .any(|l| publishes(l, "Requests", &[("Route", "issue-jwt"), ("Result", "issued")])));
}

/// Ably does not answer: the request is refused 504 / 50400 and its lines count an Ably
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the release binaries: make test-emulator"]
async fn an_ably_timeout_emits_an_upstream_timeout_metric() {
    let fake = FakeAbly::start(&[DEV_API_KEY]).await;
    fake.fail_always(fake_ably::Fault::Hang);
    let url = fake.url();
    let env = settings("IssueAblyTokenFunction", &[("ABLY_REST_URL", &url)]);
    let emulator = Emulator::start("issue-ably-token", &env).await;
    let valid = std::fs::read_to_string(workspace().join("events/ably-token-get-valid-caller.json")).expect("event");
    let answer = Answer::from_lambda(&emulator.invoke(&valid).await);
    assert!(
        answer.status == 504 || answer.status == 503,
        "{} {}",
        answer.status,
        answer.body
    );

    let logs = emulator.logs();
    let lines = lines_by_invocation(&logs);
    let emf = emf_lines(&lines);
    assert!(
        emf.iter()
            .any(|l| publishes(l, "UpstreamFailures", &[("Dependency", "Ably"), ("Kind", "timeout")])),
        "an Ably timeout metric:\n{logs}"
    );
    let code = answer.code().to_string();
    assert!(
        emf.iter().any(|l| publishes(
            l,
            "Refusals",
            &[("Route", "issue-ably-token"), ("ErrorCode", code.as_str())]
        ) && l["Result"] == "refused_5xx"),
        "the refusal counted with its code:\n{logs}"
    );
}
