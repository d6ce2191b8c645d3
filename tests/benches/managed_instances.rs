//! Concurrent mode (Lambda Managed Instances) against one-at-a-time, measured on the release
//! binaries through the loopback Runtime API of `integration_tests::runtime_api`
//! (docs/PERFORMANCE.md, "Concurrent mode"). Run by `make bench` and `make coldstart`:
//!
//! ```text
//! cargo bench -p integration-tests --bench managed_instances -- throughput [--rounds 7] [--invocations 20000] [--only hs256/8-workers] [--json FILE]
//! cargo bench -p integration-tests --bench managed_instances -- coldstart [--runs 20] [--json FILE]
//! ```
//!
//! **throughput**: for HS256 and RS256 callers of `issue-jwt` and HS256 callers of
//! `issue-ably-token` (Ably: a loopback fake answering at once), and each mode (one at a time
//! on a current-thread runtime; 8 workers on a multi-thread runtime; 8 workers on a
//! current-thread runtime), queue `--invocations` events at once and time them until all
//! are answered, `--rounds` times after a warm-up. "Per vCPU" is invocations per second of
//! the function process's own CPU time (the sum over its threads, `/proc/<pid>/task/*/schedstat`),
//! so the Runtime API's share of this 2-vCPU machine is not counted against the function.
//! The Runtime API's own CPU time per invocation is measured the same way (this process),
//! which gives its ceiling. Each figure is the median of the rounds, and also a ratio to an
//! in-process HMAC-SHA256 baseline (256 bytes, AWS-LC) measured in the same run.
//!
//! **coldstart**: start each binary `--runs` times, one event queued, one at a time and with
//! `AWS_LAMBDA_MAX_CONCURRENCY=8`: its own init (`init_us` of its start-up line), spawn to
//! first answer, and peak RSS; medians.

#[path = "../tests/caller_support/mod.rs"]
mod caller_support;
#[path = "../tests/fake_ably/mod.rs"]
mod fake_ably;

use aws_lc_rs::hmac;
use caller_support::{claims, jwks, JwksServer, TestKey, AUDIENCE, ISSUER};
use integration_tests::runtime_api::{FunctionProcess, RuntimeApi};
use integration_tests::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; our own flags follow the mode.
    let mode = args.iter().find(|a| !a.starts_with("--")).cloned().unwrap_or_default();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // The Runtime API on CPU 1, the function under test on CPU 0 (`--cpus 0`): the function
    // has one vCPU of its own, so its invocations per second are per vCPU.
    let pinned = pin_self_to_cpu(&flag("--api-cpu").unwrap_or_else(|| "1".into()));
    println!(
        "Runtime API pinned to CPU {}",
        pinned.as_deref().unwrap_or("(not pinned: one CPU)")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = match mode.as_str() {
        "throughput" => runtime.block_on(throughput(
            flag("--rounds").and_then(|v| v.parse().ok()).unwrap_or(7),
            flag("--invocations").and_then(|v| v.parse().ok()).unwrap_or(20_000),
            flag("--only"),
        )),
        "coldstart" => runtime.block_on(coldstart(flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(20))),
        _ => {
            eprintln!("usage: managed_instances throughput [--rounds N] [--invocations N] [--json FILE] | coldstart [--runs N] [--json FILE]");
            std::process::exit(2);
        }
    };
    if let Some(path) = flag("--json") {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&path, serde_json::to_string_pretty(&report).expect("JSON")).expect("write the report");
        println!("wrote {path}");
    }
}

// ------------------------------------------------------------------------- measuring

/// Pin every thread of this process to `cpu` (`taskset -a -p -c`); `None` on a one-CPU machine.
fn pin_self_to_cpu(cpu: &str) -> Option<String> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| cpu.to_owned())
}

/// CPU time of every thread of process `pid` (`self` for this one), in nanoseconds.
fn cpu_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Peak resident memory of `pid`, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// HMAC-SHA256 of 256 bytes (shared/benches/common's baseline), median ns per call.
fn hmac_baseline_ns() -> f64 {
    let key = hmac::Key::new(hmac::HMAC_SHA256, DEV_KEY_SECRET.as_bytes());
    let data = [0x5au8; 256];
    let mut samples = Vec::new();
    for _ in 0..31 {
        let started = Instant::now();
        for _ in 0..20_000 {
            std::hint::black_box(hmac::sign(&key, std::hint::black_box(&data)));
        }
        samples.push(started.elapsed().as_nanos() as f64 / 20_000.0);
    }
    median(&mut samples)
}

/// The events/ file's HTTP API (v2) GET of /auth/jwt with `Authorization: Bearer <token>`.
fn jwt_event(token: &str) -> Arc<[u8]> {
    event_with_bearer(include_str!("../../events/jwt-get-valid-caller.json"), token).into()
}

/// A dev (HS256) caller token for Alice, valid for a day.
fn hs256_caller() -> String {
    caller_token(
        &json!({"sub": "alice", "name": "Alice", "org": "acme", "exp": now_seconds() + 86_400}),
        DEV_CALLER_SECRET,
    )
}

struct Caller {
    /// `route/caller`.
    name: &'static str,
    function: &'static str,
    settings: HashMap<String, String>,
    event: Arc<[u8]>,
    /// Keeps the identity provider up for the RS256 caller.
    _provider: Option<JwksServer>,
    /// Keeps Ably (a loopback fake answering at once) up for the Ably Token route.
    ably: Option<fake_ably::FakeAbly>,
}

async fn callers() -> Vec<Caller> {
    let hs256 = hs256_caller();
    let key = TestKey::rsa("bench-1");
    let provider = JwksServer::start(jwks(&[&key])).await;
    let mut rs256_claims = claims(ISSUER, "alice");
    rs256_claims["exp"] = json!(now_seconds() + 86_400);
    let rs256 = key.sign(&rs256_claims);
    let ably = fake_ably::FakeAbly::start(&[DEV_API_KEY]).await;
    let ably_token_settings = fake_ably::support::env_for(&ably, &[]);
    vec![
        Caller {
            name: "jwt/hs256",
            function: "issue-jwt",
            settings: dev_env(&[]),
            event: jwt_event(&hs256),
            _provider: None,
            ably: None,
        },
        Caller {
            name: "token/hs256",
            function: "issue-ably-token",
            settings: ably_token_settings,
            event: event_with_bearer(include_str!("../../events/ably-token-get-valid-caller.json"), &hs256).into(),
            _provider: None,
            ably: Some(ably),
        },
        Caller {
            name: "jwt/rs256",
            function: "issue-jwt",
            settings: dev_env(&[
                ("CALLER_HS256_SECRET", None),
                ("CALLER_ISSUER", Some(ISSUER)),
                ("CALLER_AUDIENCE", Some(AUDIENCE)),
                ("CALLER_JWKS_URL", Some(provider.jwks_url().as_str())),
            ]),
            event: jwt_event(&rs256),
            _provider: Some(provider),
            ably: None,
        },
    ]
}

/// (name, AWS_LAMBDA_MAX_CONCURRENCY, TOKIO_RUNTIME, the function's CPUs). The last shares
/// CPU 1 with the Runtime API: its per-vCPU figure comes from CPU time alone.
const MODES: [(&str, Option<u32>, &str, &str); 4] = [
    ("one-at-a-time", None, "current-thread", "0"),
    ("8-workers-current-thread", Some(8), "current-thread", "0"),
    ("8-workers-multi-thread", Some(8), "multi-thread", "0"),
    ("8-workers-multi-thread-2cpu", Some(8), "multi-thread", "0,1"),
];

/// Queue `n` events, wait for their answers: (wall seconds, function CPU ns, own CPU ns).
async fn round(api: &RuntimeApi, pid: &str, event: &Arc<[u8]>, n: usize) -> (f64, u64, u64) {
    api.reset_counts();
    let (cpu0, own0) = (cpu_ns(pid), cpu_ns("self"));
    let started = Instant::now();
    for _ in 0..n {
        api.push(event.clone());
    }
    let answered = api.wait_for_answers(n, Duration::from_secs(600)).await;
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(answered, n, "answers");
    (wall, cpu_ns(pid) - cpu0, cpu_ns("self") - own0)
}

async fn throughput(rounds: usize, invocations: usize, only: Option<String>) -> Value {
    let baseline_ns = hmac_baseline_ns();
    println!("baseline: HMAC-SHA256 of 256 bytes {baseline_ns:.0} ns (median)");
    println!(
        "{:<12} {:<28} {:>10} {:>14} {:>10} {:>10} {:>9} {:>10}",
        "route/caller", "mode", "inv/s wall", "inv/s per vCPU", "µs CPU/inv", "× baseline", "in flight", "API µs/inv"
    );
    let mut results = Vec::new();
    let mut api_cpu_per_invocation = Vec::new();
    for caller in callers().await {
        for (mode, concurrency, flavour, cpus) in MODES {
            // `--only jwt/hs256/8-workers-current` (any part of `route/caller/mode`).
            if only
                .as_deref()
                .is_some_and(|o| !format!("{}/{mode}", caller.name).contains(o))
            {
                continue;
            }
            let api = RuntimeApi::start(Duration::from_secs(10)).await.expect("Runtime API");
            let mut settings = caller.settings.clone();
            settings.insert("TOKIO_RUNTIME".into(), flavour.into());
            let mut process =
                FunctionProcess::start_on(caller.function, &api, concurrency, &settings, Some(cpus)).expect("start");
            let workers = concurrency.unwrap_or(1) as usize;
            if api.wait_for_polls(workers, Duration::from_secs(20)).await < workers || process.exited().is_some() {
                panic!("{} did not start polling:\n{}", caller.function, process.logs());
            }
            let pid = process.pid().to_string();
            // Warm-up: connections, caches, the identity provider's keys.
            round(&api, &pid, &caller.event, invocations / 10).await;
            let (mut wall_rate, mut cpu_rate, mut cpu_us, mut api_us) = (vec![], vec![], vec![], vec![]);
            let mut in_flight = 0;
            for _ in 0..rounds {
                let (wall, cpu, own) = round(&api, &pid, &caller.event, invocations).await;
                if let Some(ably) = &caller.ably {
                    ably.clear_requests();
                }
                in_flight = in_flight.max(api.max_in_flight());
                wall_rate.push(invocations as f64 / wall);
                cpu_rate.push(invocations as f64 / (cpu as f64 / 1e9));
                cpu_us.push(cpu as f64 / 1e3 / invocations as f64);
                api_us.push(own as f64 / 1e3 / invocations as f64);
            }
            let answers = api.answers();
            let ok = answers
                .values()
                .filter(|a| a.kind == "response" && String::from_utf8_lossy(&a.body).contains("\"statusCode\":200"))
                .count();
            assert_eq!(ok, answers.len(), "every answer is a 200");
            let (wall, per_vcpu, us, api) = (
                median(&mut wall_rate),
                median(&mut cpu_rate),
                median(&mut cpu_us),
                median(&mut api_us),
            );
            // The fake Ably runs in this process too: its rows do not measure the Runtime API alone.
            if caller.ably.is_none() {
                api_cpu_per_invocation.push(api);
            }
            let ratio = us * 1e3 / baseline_ns;
            println!(
                "{:<12} {:<28} {:>10.0} {:>14.0} {:>10.1} {:>10.0} {:>9} {:>10.1}",
                caller.name, mode, wall, per_vcpu, us, ratio, in_flight, api
            );
            results.push(json!({
                "caller": caller.name, "function": caller.function, "mode": mode, "workers": workers, "runtime": flavour, "cpus": cpus,
                "invocations_per_round": invocations, "rounds": rounds,
                "median_invocations_per_s_wall": wall,
                "median_invocations_per_vcpu_s": per_vcpu,
                "median_cpu_us_per_invocation": us,
                "cpu_per_invocation_to_baseline": ratio,
                "max_in_flight": in_flight,
                "runtime_api_cpu_us_per_invocation": api,
                "peak_rss_kib": peak_rss_kib(process.pid()),
            }));
        }
    }
    let api_us = median(&mut api_cpu_per_invocation);
    println!(
        "Runtime API (this process): {api_us:.1} µs CPU per invocation (median over the /auth/jwt runs): its ceiling is {:.0} invocations/s per vCPU",
        1e6 / api_us
    );
    json!({"baseline_hmac_sha256_256b_ns": baseline_ns, "runtime_api_cpu_us_per_invocation": api_us,
           "runtime_api_ceiling_per_vcpu": 1e6 / api_us, "results": results})
}

async fn coldstart(runs: usize) -> Value {
    let event = jwt_event(&hs256_caller());
    println!(
        "{:<20} {:<22} {:>9} {:>16} {:>13}",
        "function", "mode", "init ms", "start→answer ms", "peak RSS MiB"
    );
    let mut results = Vec::new();
    for function in ["issue-jwt", "issue-token-request"] {
        for (mode, concurrency) in [("one-at-a-time", None), ("8-workers", Some(8u32))] {
            let (mut init, mut first, mut rss) = (vec![], vec![], vec![]);
            for _ in 0..runs {
                let api = RuntimeApi::start(Duration::from_secs(10)).await.expect("Runtime API");
                let id = api.push(event.clone());
                let settings = dev_env(&[("TOKEN_POLICY_FILE", None), ("TOKEN_POLICY", Some(TOKEN_ROUTES_POLICY))]);
                let started = Instant::now();
                let process =
                    FunctionProcess::start_on(function, &api, concurrency, &settings, Some("0")).expect("start");
                assert_eq!(
                    api.wait_for_answers(1, Duration::from_secs(20)).await,
                    1,
                    "{}",
                    process.logs()
                );
                first.push(started.elapsed().as_secs_f64() * 1e3);
                let answer = api.answer(&id).expect("the queued event's answer");
                assert!(
                    String::from_utf8_lossy(&answer.body).contains("\"statusCode\":200"),
                    "{function}: {}",
                    String::from_utf8_lossy(&answer.body)
                );
                rss.push(peak_rss_kib(process.pid()) as f64 / 1024.0);
                let init_us = process
                    .logs()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find_map(|l| l["init_us"].as_f64())
                    .expect("the start-up line gives init_us");
                init.push(init_us / 1e3);
            }
            let (i, f, r) = (median(&mut init), median(&mut first), median(&mut rss));
            println!("{function:<20} {mode:<22} {i:>9.2} {f:>16.2} {r:>13.1}");
            results.push(json!({"function": function, "mode": mode, "runs": runs,
                                "median_init_ms": i, "median_start_to_first_answer_ms": f, "median_peak_rss_mib": r}));
        }
    }
    json!({"results": results})
}
