//! Support for the integration tests in `tests/tests/`: development settings, event
//! loading, and an independent check of minted JWTs (the `jsonwebtoken` crate, not the
//! project's own minting code).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub mod moto;
pub mod runtime_api;

pub const DEV_API_KEY: &str = "devApp.devKey:dev-key-secret-not-for-production";
pub const DEV_KEY_NAME: &str = "devApp.devKey";
pub const DEV_KEY_SECRET: &str = "dev-key-secret-not-for-production";
pub const DEV_CALLER_SECRET: &str = "dev-caller-secret-0123456789abcdef0123456789";
pub const DEV_ORIGIN: &str = "http://localhost:8080";
/// The policy for the TokenRequest and Ably Token routes (`make dev DEV_ENV=dev/token-routes.env`):
/// the dev policy without channel claims, rate limits and revocation key, which only JWTs can carry.
pub const TOKEN_ROUTES_POLICY: &str = include_str!("../dev/policy-token-routes.json");

/// An in-memory log sink for `shared::log::subscriber`: clones share one buffer, so the
/// test keeps one and reads what the functions logged.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A function's release binary: `$EMULATOR_BINARIES/<name>`, else `$CARGO_TARGET_DIR/release/<name>`
/// (default `target/release`); panics with what to run when it is missing.
pub fn release_binary(function: &str) -> PathBuf {
    let dir = std::env::var_os("EMULATOR_BINARIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root().join("target"), PathBuf::from)
                .join("release")
        });
    let binary = dir.join(function);
    assert!(
        binary.is_file(),
        "FAIL: {} not found: the tests that run functions' binaries use the release builds; run `make release` \
         (or `make test-emulator`, which builds them first)",
        binary.display()
    );
    binary
}

/// An event of `events/` (its text, e.g. `include_str!`) with `Authorization: Bearer <token>`.
pub fn event_with_bearer(event: &str, token: &str) -> Vec<u8> {
    let mut event: serde_json::Value = serde_json::from_str(event).expect("an events/ file is JSON");
    event["headers"]["authorization"] = serde_json::Value::String(format!("Bearer {token}"));
    event.to_string().into_bytes()
}

/// The development environment of `make dev`, plus overrides (`None` removes a variable).
pub fn dev_env(overrides: &[(&str, Option<&str>)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("ABLY_API_KEY", DEV_API_KEY.to_owned()),
        ("CALLER_HS256_SECRET", DEV_CALLER_SECRET.to_owned()),
        (
            "TOKEN_POLICY_FILE",
            root().join("dev/policy.json").display().to_string(),
        ),
        ("CORS_ALLOWED_ORIGINS", format!("{DEV_ORIGIN},http://127.0.0.1:8080")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in overrides {
        match v {
            Some(v) => env.insert((*k).to_owned(), (*v).to_owned()),
            None => env.remove(*k),
        };
    }
    env
}

/// Decoded and signature-checked Ably JWT: (header, claims).
pub fn verify_ably_jwt(token: &str, secret: &str) -> (serde_json::Value, serde_json::Value) {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let header = decode_header(token).expect("JWT header");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iat"]);
    let data = decode::<serde_json::Value>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .expect("the Ably JWT must verify with the key secret");
    (serde_json::to_value(header).expect("header"), data.claims)
}

/// HS256 caller (session) token signed with `secret`.
pub fn caller_token(claims: &serde_json::Value, secret: &str) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("encode caller token")
}

/// Seconds since the epoch.
pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// CloudWatch Embedded Metric Format (EMF)

/// The units CloudWatch accepts (`MetricDefinition.Unit`).
const EMF_UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Whether a log line is an EMF document (has the `_aws` metadata member).
pub fn is_emf(line: &serde_json::Value) -> bool {
    line.get("_aws").is_some()
}

/// What makes `line` break CloudWatch's Embedded Metric Format specification
/// (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html);
/// empty when it follows it.
pub fn emf_problems(line: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(p);
    let Some(root) = line.as_object() else {
        return vec!["the root node is not a JSON object".into()];
    };
    let Some(aws) = root.get("_aws").and_then(Value::as_object) else {
        return vec!["no `_aws` metadata object".into()];
    };
    for key in aws.keys() {
        if key != "Timestamp" && key != "CloudWatchMetrics" {
            problem(format!(
                "`_aws` has the member {key:?}, which the specification does not define"
            ));
        }
    }
    if aws.get("Timestamp").is_none_or(|t| t.as_u64().is_none()) {
        problem("`_aws.Timestamp` is not a number of milliseconds since the epoch".into());
    }
    let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else {
        problem("`_aws.CloudWatchMetrics` is not an array".into());
        return problems;
    };
    if directives.is_empty() {
        problem("`_aws.CloudWatchMetrics` is empty".into());
    }
    for (i, directive) in directives.iter().enumerate() {
        let at = format!("CloudWatchMetrics[{i}]");
        let Some(d) = directive.as_object() else {
            problem(format!("{at} is not an object"));
            continue;
        };
        for key in d.keys() {
            if !["Namespace", "Dimensions", "Metrics"].contains(&key.as_str()) {
                problem(format!(
                    "{at} has the member {key:?}, which the specification does not define"
                ));
            }
        }
        match d.get("Namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns.len() <= 1024 => {}
            _ => problem(format!("{at}.Namespace is not a string of 1 to 1024 characters")),
        }
        let mut dimension_keys = Vec::new();
        match d.get("Dimensions").and_then(Value::as_array) {
            None => problem(format!("{at}.Dimensions is not an array of dimension sets")),
            Some(sets) => {
                for (j, set) in sets.iter().enumerate() {
                    let Some(keys) = set.as_array() else {
                        problem(format!("{at}.Dimensions[{j}] is not an array"));
                        continue;
                    };
                    if keys.len() > 30 {
                        problem(format!("{at}.Dimensions[{j}] has more than 30 dimension keys"));
                    }
                    for key in keys {
                        let Some(key) = key.as_str() else {
                            problem(format!("{at}.Dimensions[{j}] holds a key that is not a string"));
                            continue;
                        };
                        match root.get(key).and_then(Value::as_str) {
                            Some(v) if !v.is_empty() && v.len() <= 1024 => {}
                            _ => problem(format!(
                                "dimension {key:?} has no target member holding a string of 1 to 1024 characters"
                            )),
                        }
                        dimension_keys.push(key.to_owned());
                    }
                }
            }
        }
        match d.get("Metrics").and_then(Value::as_array) {
            None => problem(format!("{at}.Metrics is not an array")),
            Some(metrics) => {
                if metrics.len() > 100 {
                    problem(format!("{at}.Metrics has more than 100 metrics"));
                }
                for (j, metric) in metrics.iter().enumerate() {
                    let at = format!("{at}.Metrics[{j}]");
                    let Some(m) = metric.as_object() else {
                        problem(format!("{at} is not an object"));
                        continue;
                    };
                    for key in m.keys() {
                        if !["Name", "Unit", "StorageResolution"].contains(&key.as_str()) {
                            problem(format!(
                                "{at} has the member {key:?}, which the specification does not define"
                            ));
                        }
                    }
                    let Some(name) = m
                        .get("Name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty() && n.len() <= 1024)
                    else {
                        problem(format!("{at}.Name is not a string of 1 to 1024 characters"));
                        continue;
                    };
                    match root.get(name) {
                        Some(Value::Number(_)) => {}
                        Some(Value::Array(values)) if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                        _ => problem(format!("metric {name:?} has no target member holding a number")),
                    }
                    if dimension_keys.iter().any(|k| k == name) {
                        problem(format!("{name:?} is both a metric and a dimension"));
                    }
                    if let Some(unit) = m.get("Unit") {
                        if !unit.as_str().is_some_and(|u| EMF_UNITS.contains(&u)) {
                            problem(format!("{at}.Unit {unit} is not a CloudWatch unit"));
                        }
                    }
                    if let Some(resolution) = m.get("StorageResolution") {
                        if resolution != 1 && resolution != 60 {
                            problem(format!("{at}.StorageResolution is neither 1 nor 60"));
                        }
                    }
                }
            }
        }
    }
    problems
}

/// The metrics that EMF lines publish: `(namespace, metric, sorted dimension keys)` → unit and,
/// per dimension key, the values seen.
pub type EmfCatalogue = std::collections::BTreeMap<
    (String, String, Vec<String>),
    (
        String,
        std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    ),
>;

/// Add what `line` (an EMF document) publishes to `catalogue`.
pub fn catalogue_add(catalogue: &mut EmfCatalogue, line: &serde_json::Value) {
    let empty = Vec::new();
    for d in line["_aws"]["CloudWatchMetrics"].as_array().unwrap_or(&empty) {
        let namespace = d["Namespace"].as_str().unwrap_or_default().to_owned();
        for set in d["Dimensions"].as_array().unwrap_or(&empty) {
            let mut keys: Vec<String> = set
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            keys.sort();
            for m in d["Metrics"].as_array().unwrap_or(&empty) {
                let name = m["Name"].as_str().unwrap_or_default().to_owned();
                let unit = m["Unit"].as_str().unwrap_or("None").to_owned();
                let entry = catalogue
                    .entry((namespace.clone(), name, keys.clone()))
                    .or_insert_with(|| (unit, Default::default()));
                for key in &keys {
                    if let Some(value) = line[key].as_str() {
                        entry.1.entry(key.clone()).or_default().insert(value.to_owned());
                    }
                }
            }
        }
    }
}

/// `len` deterministic bytes from `seed` (xorshift64*, the high byte of each step): the same
/// on every run, for generated test inputs.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}
