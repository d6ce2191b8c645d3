//! The fuzz targets' bodies (`fuzz/src/lib.rs`, the same code `cargo fuzz` runs) over every
//! committed input, on stable and without libFuzzer: the inputs that once crashed a target
//! (`fuzz/regressions/<target>/`, one file each, named after what they found) and a small
//! seed corpus (`fuzz/seeds/<target>/`). Plus a short deterministic pseudo-random run of
//! each target, so the properties are exercised by `make test` even where nobody fuzzes.
//!
//! A failure here prints the input's file name; replay it with
//! `make fuzz-regressions` or `cargo fuzz run <target> fuzz/regressions/<target>/<file>`.

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::path::PathBuf;

/// A fuzz target's body: panics when the input breaks a property.
type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("params", harness::params),
    ("capability", harness::capability),
    ("policy", harness::policy),
    ("caller_token", harness::caller_token),
    ("request", harness::request),
    ("event", harness::event),
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The committed inputs of `target`: (path, bytes).
fn committed_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for dir in ["regressions", "seeds"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && path.file_name().is_some_and(|n| n != "README.md") {
                let bytes = std::fs::read(&path).expect("readable input");
                inputs.push((path, bytes));
            }
        }
    }
    inputs.sort();
    inputs
}

fn replay(target: &str, run: Target) -> usize {
    let inputs = committed_inputs(target);
    for (path, bytes) in &inputs {
        if std::panic::catch_unwind(|| run(bytes)).is_err() {
            panic!("fuzz target `{target}` fails on the committed input {}", path.display());
        }
    }
    inputs.len()
}

#[test]
fn every_committed_fuzz_input_passes_its_target() {
    let mut total = 0;
    for (target, run) in TARGETS {
        let n = replay(target, run);
        assert!(
            n > 0,
            "no committed inputs for `{target}` in fuzz/seeds or fuzz/regressions"
        );
        total += n;
    }
    println!("{total} committed fuzz inputs replayed");
}

/// xorshift64*: deterministic bytes, the same on every run.
fn pseudo_random_inputs(seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count).map(move |i| {
        let len = 16 + (next() as usize % (64 + 8 * i.min(100)));
        (0..len).map(|_| next() as u8).collect()
    })
}

#[test]
fn fuzz_targets_hold_on_pseudo_random_inputs() {
    for (i, (target, run)) in TARGETS.into_iter().enumerate() {
        let count = if target == "request" { 150 } else { 600 };
        for (n, input) in pseudo_random_inputs(0x5eed + i as u64, count).enumerate() {
            if std::panic::catch_unwind(|| run(&input)).is_err() {
                panic!("fuzz target `{target}` fails on pseudo-random input #{n}: {input:?}");
            }
        }
    }
}

/// The committed request seeds reach every route's success and its main refusals: what the
/// fuzzer starts from is not just a pile of 400s.
#[test]
fn request_seeds_reach_success_and_refusals_on_every_route() {
    let mut seen: std::collections::BTreeMap<(&str, u16), usize> = Default::default();
    for (_, bytes) in committed_inputs("request") {
        for outcome in harness::request_statuses(&bytes) {
            *seen.entry(outcome).or_default() += 1;
        }
    }
    println!("{seen:?}");
    for route in ["issue-jwt", "issue-token-request", "issue-ably-token", "revoke-tokens"] {
        for status in [200, 400, 401] {
            assert!(
                seen.contains_key(&(route, status)),
                "no seed gets {status} from {route}: {seen:?}"
            );
        }
    }
}

/// The committed event seeds reach every issuing route's success, refusals of the caller and
/// the 400s of the boundary and the parameters: the fuzzer starts from whole events that
/// convert and from events that do not.
#[test]
fn event_seeds_reach_success_and_refusals_on_every_route() {
    let mut seen: std::collections::BTreeMap<(&str, u16), usize> = Default::default();
    for (_, bytes) in committed_inputs("event") {
        if let Some(outcome) = harness::event_statuses(&bytes) {
            *seen.entry(outcome).or_default() += 1;
        }
    }
    println!("{seen:?}");
    for (route, statuses) in [
        ("issue-jwt", [200, 400, 401]),
        ("issue-token-request", [200, 400, 401]),
        ("issue-ably-token", [200, 400, 401]),
        ("revoke-tokens", [400, 401, 405]),
    ] {
        for status in statuses {
            assert!(
                seen.contains_key(&(route, status)),
                "no seed gets {status} from {route}: {seen:?}"
            );
        }
    }
}

/// Prints `route status file` for every input of the working corpus (`fuzz/corpus/event`),
/// to choose seeds that cover each outcome: `cargo test --test fuzz_regressions
/// list_event_corpus_outcomes -- --ignored --nocapture`.
#[test]
#[ignore = "a tool for choosing seeds, not a check"]
fn list_event_corpus_outcomes() {
    let dir = fuzz_dir().join("corpus/event");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        if let Some((route, status)) = harness::event_statuses(&bytes) {
            println!("OUTCOME {route} {status} {}", entry.path().display());
            n += 1;
        }
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
