//! Cold-start cost of AWS Secrets Manager access, in process (target: ≤ 15 ms).
//!
//! - `secrets_client_build`: what `Service::from_env` does at init before the first read:
//!   load the SDK configuration (region and credentials as Lambda passes them, in the
//!   environment) and build the client with this project's timeouts and retries.
//! - `secrets_client_build_and_first_read`: the same, plus the first `GetSecretValue` to a
//!   canned Secrets Manager on loopback: this adds what the SDK builds lazily on first use
//!   (the rustls/aws-lc-rs connector with the platform's root certificates, request signing,
//!   the connection), but no real network round trip.
//! - Before those (which measure warm repetitions: the SDK loads the root certificates once
//!   per process), the *cold* cost: the same two steps as the first thing a fresh process
//!   does, in 21 fresh processes (this binary re-run), reported as medians.

use criterion::{criterion_group, Criterion};
use shared::secrets::{AwsSecretReader, AwsSettings, SecretReader};
use std::hint::black_box;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANSWER: &str = r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/ably-AbCdEf","Name":"prod/ably","SecretString":"app.key:bench-secret","VersionId":"v1","VersionStages":["AWSCURRENT"],"CreatedDate":1.7E9}"#;

/// Answer every request on the connection with [`ANSWER`].
async fn serve(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() < end + 4 + length {
            continue;
        }
        buf.drain(..end + 4 + length);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn settings(endpoint: &str) -> AwsSettings {
    let vars = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDBENCHMARK"),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret-access-key"),
        ("AWS_SESSION_TOKEN", "bench-session-token"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint),
    ];
    AwsSettings::from_env(&|k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
        .expect("settings")
}

/// A current-thread runtime (as in the Lambda functions) serving the canned store; its URL.
fn runtime_with_store() -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    (runtime, endpoint)
}

const COLD_FLAG: &str = "SECRETS_CLIENT_BENCH_COLD_ONCE";
const COLD_RUNS: usize = 21;

/// Child mode: build the client and read once, as the first thing this process does; print
/// the two durations in microseconds.
fn cold_once() {
    let (runtime, endpoint) = runtime_with_store();
    let settings = settings(&endpoint);
    let _runtime_context = runtime.enter();
    let started = Instant::now();
    let reader = AwsSecretReader::new(settings).unwrap();
    let built = started.elapsed();
    runtime.block_on(reader.read("prod/ably")).unwrap();
    let read = started.elapsed();
    println!("{} {}", built.as_micros(), read.as_micros());
}

fn median(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Parent mode: run [`cold_once`] in fresh processes and report the medians.
fn cold_report() {
    let exe = std::env::current_exe().unwrap();
    let (mut built, mut read) = (Vec::new(), Vec::new());
    for _ in 0..COLD_RUNS {
        let out = std::process::Command::new(&exe).env(COLD_FLAG, "1").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut parts = text.split_whitespace().map(|n| n.parse::<u128>().unwrap());
        built.push(parts.next().unwrap());
        read.push(parts.next().unwrap());
    }
    println!(
        "secrets_client/cold (first use in a fresh process, median of {COLD_RUNS}): build {:.2} ms, build + first GetSecretValue {:.2} ms",
        median(built) as f64 / 1000.0,
        median(read) as f64 / 1000.0
    );
}

fn client(c: &mut Criterion) {
    let (runtime, endpoint) = runtime_with_store();
    let settings = settings(&endpoint);
    // Sanity: the canned store answers through the real client.
    let _runtime_context = runtime.enter();
    let reader = AwsSecretReader::new(settings.clone()).unwrap();
    let value = runtime.block_on(reader.read("prod/ably")).unwrap();
    assert_eq!(value.string.expose(), "app.key:bench-secret");

    let mut group = c.benchmark_group("secrets_client");
    group.sample_size(50);
    group.bench_function("secrets_client_build", |b| {
        b.iter(|| black_box(AwsSecretReader::new(settings.clone()).unwrap()))
    });
    group.bench_function("secrets_client_build_and_first_read", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let reader = AwsSecretReader::new(settings.clone()).unwrap();
                black_box(reader.read("prod/ably").await.unwrap())
            })
        })
    });
    group.finish();
}

criterion_group!(benches, client);

fn main() {
    if std::env::var_os(COLD_FLAG).is_some() {
        return cold_once();
    }
    cold_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
