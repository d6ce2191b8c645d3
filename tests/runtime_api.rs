//! A Lambda Runtime API on loopback that hands out many invocations at once, for the tests
//! and benchmarks of concurrent mode (Lambda Managed Instances).
//!
//! AWS's emulator (`aws-lambda-rie`) serves one invocation at a time, so it cannot show that
//! a function answers concurrently. This server speaks the Runtime API a function's runtime
//! polls (`GET /2018-06-01/runtime/invocation/next`, `POST …/{id}/response`, `…/{id}/error`,
//! `POST /2018-06-01/runtime/init/error`; HTTP/1.1 with keep-alive), hands every waiting
//! poll an event as soon as one is queued, and records:
//!
//! - each answer by request id, and anything that does not fit: an answer for an id never
//!   handed out or already answered;
//! - how many invocations were in flight (handed out, not yet answered) at most, and how
//!   many polls were waiting at most.
//!
//! Events are queued with [`RuntimeApi::push`]; [`RuntimeApi::wait_for_answers`] waits for
//! them to be answered. The deadline given to each invocation is `timeout` after it is
//! handed out, as Lambda's `Lambda-Runtime-Deadline-Ms` is.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

/// One answer, as the function posted it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `response` or `error`.
    pub kind: &'static str,
    pub body: Vec<u8>,
    /// From handing the event out to receiving its answer.
    pub took: Duration,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Arc<[u8]>)>,
    /// Handed out, not yet answered: when.
    in_flight: HashMap<String, Instant>,
    answers: HashMap<String, Answer>,
    /// Answers for ids never handed out, or answered twice.
    misrouted: Vec<String>,
    max_in_flight: usize,
    polls_waiting: usize,
    max_polls_waiting: usize,
    init_errors: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    /// Woken when an event is queued.
    queued: Notify,
    /// Woken when an answer arrives.
    answered: Notify,
    timeout: Duration,
    ids: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The server; it stops when dropped.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Listen on 127.0.0.1 (a free port); each invocation's deadline is `timeout` after it is
    /// handed out.
    pub async fn start(timeout: Duration) -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            answered: Notify::new(),
            timeout,
            ids: AtomicU64::new(0),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(RuntimeApi { addr, shared, task })
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the function: `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queue `event`; returns its request id.
    pub fn push(&self, event: impl Into<Arc<[u8]>>) -> String {
        let n = self.shared.ids.fetch_add(1, Ordering::Relaxed);
        let id = format!("req-{n:08}-{:08x}", (n.wrapping_mul(0x9E37_79B9)) as u32);
        self.shared.lock().queue.push_back((id.clone(), event.into()));
        self.shared.queued.notify_one();
        id
    }

    /// Wait until `count` answers have arrived in all, or `limit` passes; the answers so far.
    pub async fn wait_for_answers(&self, count: usize, limit: Duration) -> usize {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.answered.notified();
            let have = self.shared.lock().answers.len();
            if have >= count {
                return have;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.shared.lock().answers.len();
            }
        }
    }

    /// Wait until at least `count` polls wait at once (the function's workers are ready), or
    /// `limit` passes; the most seen.
    pub async fn wait_for_polls(&self, count: usize, limit: Duration) -> usize {
        let until = Instant::now() + limit;
        loop {
            let seen = self.shared.lock().max_polls_waiting;
            if seen >= count || Instant::now() >= until {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn answer(&self, id: &str) -> Option<Answer> {
        self.shared.lock().answers.get(id).cloned()
    }

    pub fn answers(&self) -> HashMap<String, Answer> {
        self.shared.lock().answers.clone()
    }

    pub fn misrouted(&self) -> Vec<String> {
        self.shared.lock().misrouted.clone()
    }

    /// The most invocations handed out and not yet answered at one time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().max_in_flight
    }

    /// The most `/next` polls waiting at one time.
    pub fn max_polls_waiting(&self) -> usize {
        self.shared.lock().max_polls_waiting
    }

    pub fn init_errors(&self) -> Vec<String> {
        self.shared.lock().init_errors.clone()
    }

    /// Forget the answers and the maxima (between benchmark rounds).
    pub fn reset_counts(&self) {
        let mut state = self.shared.lock();
        state.answers.clear();
        state.max_in_flight = state.in_flight.len();
        state.max_polls_waiting = state.polls_waiting;
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, shared.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One request read off a connection.
struct Incoming {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        out.clear();
        if request.method == "GET" && request.path == NEXT {
            let (id, event) = next_event(&shared).await;
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| (d + shared.timeout).as_millis());
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {id}\r\nlambda-runtime-deadline-ms: {deadline}\r\nlambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:under-test\r\nlambda-runtime-trace-id: {}\r\ncontent-length: {}\r\n\r\n",
                    trace_id(&id),
                    event.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(&event);
        } else if request.method == "POST" && request.path == INIT_ERROR {
            shared
                .lock()
                .init_errors
                .push(String::from_utf8_lossy(&request.body).into_owned());
            out.extend_from_slice(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
        } else if let Some((id, kind)) = request
            .path
            .strip_prefix(INVOCATION)
            .and_then(|rest| rest.rsplit_once('/'))
            .filter(|_| request.method == "POST")
        {
            match kind {
                "response" | "error" => {
                    let kind = if kind == "response" { "response" } else { "error" };
                    record(&shared, id, kind, request.body);
                    out.extend_from_slice(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
                }
                _ => out.extend_from_slice(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            }
        } else {
            out.extend_from_slice(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The X-Ray trace header of invocation `id`: its own, so that a log line carrying another
/// invocation's trace id is detectable.
pub fn trace_id(id: &str) -> String {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("Root=1-00000000-{hash:024x};Sampled=0")
}

/// The next queued event, waiting for one; counts the waiting poll and the invocation in flight.
async fn next_event(shared: &Shared) -> (String, Arc<[u8]>) {
    {
        let mut state = shared.lock();
        state.polls_waiting += 1;
        state.max_polls_waiting = state.max_polls_waiting.max(state.polls_waiting);
    }
    loop {
        let notified = shared.queued.notified();
        {
            let mut state = shared.lock();
            if let Some((id, event)) = state.queue.pop_front() {
                state.polls_waiting -= 1;
                state.in_flight.insert(id.clone(), Instant::now());
                state.max_in_flight = state.max_in_flight.max(state.in_flight.len());
                if !state.queue.is_empty() {
                    shared.queued.notify_one();
                }
                return (id, event);
            }
        }
        notified.await;
    }
}

fn record(shared: &Shared, id: &str, kind: &'static str, body: Vec<u8>) {
    {
        let mut state = shared.lock();
        match state.in_flight.remove(id) {
            Some(since) if !state.answers.contains_key(id) => {
                let took = since.elapsed();
                state.answers.insert(id.to_owned(), Answer { kind, body, took });
            }
            _ => state.misrouted.push(id.to_owned()),
        }
    }
    shared.answered.notify_waiters();
}

/// Read one HTTP/1.1 request (a `Content-Length` or chunked body); `None` when the
/// connection closes.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Incoming> {
    let head_end = loop {
        if let Some(i) = find(buffer, b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end);
    let mut words = head.split_whitespace();
    let method = words.next()?.to_owned();
    let path = words.next()?.to_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(buffer, b"\r\n") {
                    break i;
                }
                fill(stream, buffer).await?;
            };
            let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            buffer.drain(..line_end + 2);
            while buffer.len() < size + 2 {
                fill(stream, buffer).await?;
            }
            body.extend_from_slice(&buffer[..size]);
            buffer.drain(..size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buffer.len() < length {
            fill(stream, buffer).await?;
        }
        buffer.drain(..length).collect()
    };
    Some(Incoming { method, path, body })
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A function's release binary polling a [`RuntimeApi`], as Lambda runs it: a clean
/// environment with Lambda's variables, `settings` on top; its output in a file. Killed
/// when dropped.
pub struct FunctionProcess {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl FunctionProcess {
    /// Start `function` (a binary name) against `api`, with `AWS_LAMBDA_MAX_CONCURRENCY` set
    /// to `concurrency` when given.
    pub fn start(
        function: &str,
        api: &RuntimeApi,
        concurrency: Option<u32>,
        settings: &HashMap<String, String>,
    ) -> std::io::Result<FunctionProcess> {
        Self::start_on(function, api, concurrency, settings, None)
    }

    /// [`Self::start`], on these CPUs only (`taskset -c <cpus>`, e.g. "0") when given.
    pub fn start_on(
        function: &str,
        api: &RuntimeApi,
        concurrency: Option<u32>,
        settings: &HashMap<String, String>,
        cpus: Option<&str>,
    ) -> std::io::Result<FunctionProcess> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("runtime-api-{}-{n}-{function}.log", std::process::id()));
        let out = std::fs::File::create(&log)?;
        let binary = crate::release_binary(function);
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = std::process::Command::new("taskset");
                c.arg("-c").arg(cpus).arg(binary);
                c
            }
            None => std::process::Command::new(binary),
        };
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.endpoint())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_REGION", "us-east-1")
            .envs(settings)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(n) = concurrency {
            command.env("AWS_LAMBDA_MAX_CONCURRENCY", n.to_string());
        }
        Ok(FunctionProcess {
            child: command.spawn()?,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its output so far (JSON log lines).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited (a crash, or a refusal to start).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
