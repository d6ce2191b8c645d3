//! CloudWatch metrics with no call to CloudWatch: log lines in the Embedded Metric Format
//! (EMF), which CloudWatch Logs turns into metrics as it ingests them (no `PutMetricData`, no
//! IAM permission, no latency on the request).
//!
//! Three kinds of line carry metrics, all logged through `tracing` with the target
//! [`TARGET`] (always enabled at `info`, whatever the log level: they *are* the metrics), and
//! the EMF members in a field named `emf` that [`crate::log`]'s formatter writes as raw JSON
//! members of the line:
//!
//! | line | metrics | dimension sets |
//! |---|---|---|
//! | the request line (one per request) | `Requests` | `Route, Result` and `Route` |
//! | | `Duration` (ms), `JwtBytes` (issued JWTs), `ColdStart`, `InitDuration` (ms; the container's first request) | `Route` |
//! | | `Refusals` (status ≥ 400) | `Route, ErrorCode` |
//! | `upstream failure` (one per failed call or attempt) | `UpstreamFailures` | `Dependency, Kind` |
//! | `secret served stale` (one per request answered with a stale secret) | `SecretsServedStale` | `Secret` |
//!
//! Every dimension has a small, fixed set of values (4 routes, 4 results, the Ably codes of
//! [`crate::error::IssueError`], 3 dependencies, 5 kinds, 2 secrets): no clientId, no URL, no
//! request id — each distinct combination is a billed custom metric.

use crate::env::{invalid, ConfigError, Env};
use std::fmt::{self, Display, Write as _};
use std::sync::OnceLock;

/// The `tracing` target of the lines that carry metrics.
pub const TARGET: &str = "metrics";

/// The CloudWatch namespace when `METRICS_NAMESPACE` is unset (the template sets
/// `AblyAuth/<stack name>`).
pub const DEFAULT_NAMESPACE: &str = "AblyAuth";

static NAMESPACE: OnceLock<String> = OnceLock::new();

/// Read `METRICS_NAMESPACE` (once per process, before the first request).
pub fn init(env: &dyn Env) -> Result<(), ConfigError> {
    let Some(namespace) = env.var("METRICS_NAMESPACE") else {
        return Ok(());
    };
    let namespace = namespace.trim();
    check_namespace(namespace).map_err(|why| invalid("METRICS_NAMESPACE", why))?;
    let _ = NAMESPACE.set(namespace.to_owned());
    Ok(())
}

/// The namespace the metrics are published under.
pub fn namespace() -> &'static str {
    NAMESPACE.get().map_or(DEFAULT_NAMESPACE, String::as_str)
}

/// CloudWatch's rules for a namespace: 1–255 of `A-Z a-z 0-9 . - _ / # : space`, not `AWS/…`.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if namespace.is_empty() || namespace.len() > 255 || !namespace.chars().all(allowed) {
        return Err(format!(
            "{namespace:?} is not a CloudWatch namespace: use 1 to 255 letters, digits and . - _ / # : (e.g. AblyAuth/my-stack)"
        ));
    }
    if namespace.starts_with("AWS/") {
        return Err("namespaces starting with AWS/ are reserved for AWS services; use e.g. AblyAuth/my-stack".into());
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (the EMF `Timestamp`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A service the functions call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    SecretsManager,
    Jwks,
    Ably,
}

impl Dependency {
    pub const ALL: [Dependency; 3] = [Dependency::SecretsManager, Dependency::Jwks, Dependency::Ably];

    /// The `Dependency` dimension value.
    pub fn name(self) -> &'static str {
        match self {
            Dependency::SecretsManager => "SecretsManager",
            Dependency::Jwks => "JWKS",
            Dependency::Ably => "Ably",
        }
    }
}

/// How a call to a [`Dependency`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer in time.
    Timeout,
    /// An HTTP 5xx, or an answer that is not the service's.
    ServerError,
    /// HTTP 429 or the service's throttling error.
    Throttled,
    /// No connection (refused, reset, DNS).
    Unreachable,
    /// A 4xx or an unusable answer: usually configuration (access denied, unknown secret,
    /// a JWKS URL that is not one, a key Ably refuses).
    Rejected,
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::Timeout,
        Failure::ServerError,
        Failure::Throttled,
        Failure::Unreachable,
        Failure::Rejected,
    ];

    /// The `Kind` dimension value.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::ServerError => "5xx",
            Failure::Throttled => "throttled",
            Failure::Unreachable => "unreachable",
            Failure::Rejected => "rejected",
        }
    }

    /// The kind of an HTTP error status.
    pub fn of_status(status: u16) -> Failure {
        match status {
            429 => Failure::Throttled,
            500.. => Failure::ServerError,
            _ => Failure::Rejected,
        }
    }
}

/// Log the metric line of one failed call (or attempt) to `dependency`.
pub fn upstream_failure(dependency: Dependency, kind: Failure) {
    tracing::warn!(
        target: TARGET,
        dependency = dependency.name(),
        kind = kind.name(),
        emf = tracing::field::display(Upstream {
            dependency,
            kind,
            timestamp_ms: now_ms()
        }),
        "upstream failure"
    );
}

/// Log the metric line of one request answered with a cached secret that could not be
/// refreshed (`secret` is the variable naming it, e.g. `ABLY_API_KEY_SECRET_ID`).
pub fn secret_served_stale(secret: &'static str) {
    tracing::warn!(
        target: TARGET,
        secret,
        emf = tracing::field::display(Stale {
            secret,
            timestamp_ms: now_ms()
        }),
        "secret served stale"
    );
}

/// The `Result` dimension of a request: `issued`, `preflight`, `refused_4xx`, `refused_5xx`.
pub fn result_of(status: u16, preflight: bool) -> &'static str {
    match status {
        500.. => "refused_5xx",
        400.. => "refused_4xx",
        _ if preflight => "preflight",
        _ => "issued",
    }
}

/// The EMF members of a request line.
#[derive(Debug, Clone)]
pub struct Request {
    pub route: &'static str,
    pub status: u16,
    pub code: u32,
    pub preflight: bool,
    pub duration_us: u64,
    /// The size of the JWT answered, when one was.
    pub jwt_bytes: Option<usize>,
    /// The container's init duration, on its first request (a cold start).
    pub init_us: Option<u64>,
    pub timestamp_ms: u64,
}

/// Writes `"_aws":{…}` and the members it names, for embedding in a JSON object.
impl Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = namespace();
        write!(
            f,
            r#""_aws":{{"Timestamp":{},"CloudWatchMetrics":[{{"Namespace":"{ns}","Dimensions":[["Route","Result"],["Route"]],"Metrics":[{{"Name":"Requests","Unit":"Count"}}]}},{{"Namespace":"{ns}","Dimensions":[["Route"]],"Metrics":[{{"Name":"Duration","Unit":"Milliseconds"}}"#,
            self.timestamp_ms
        )?;
        if self.jwt_bytes.is_some() {
            f.write_str(r#",{"Name":"JwtBytes","Unit":"Bytes"}"#)?;
        }
        if self.init_us.is_some() {
            f.write_str(r#",{"Name":"ColdStart","Unit":"Count"},{"Name":"InitDuration","Unit":"Milliseconds"}"#)?;
        }
        f.write_str("]}")?;
        let refused = self.status >= 400;
        if refused {
            write!(
                f,
                r#",{{"Namespace":"{ns}","Dimensions":[["Route","ErrorCode"]],"Metrics":[{{"Name":"Refusals","Unit":"Count"}}]}}"#
            )?;
        }
        write!(
            f,
            r#"]}},"Route":"{}","Result":"{}","Requests":1,"Duration":{}"#,
            self.route,
            result_of(self.status, self.preflight),
            Millis(self.duration_us)
        )?;
        if refused {
            write!(f, r#","ErrorCode":"{}","Refusals":1"#, self.code)?;
        }
        if let Some(bytes) = self.jwt_bytes {
            write!(f, r#","JwtBytes":{bytes}"#)?;
        }
        if let Some(init_us) = self.init_us {
            write!(f, r#","ColdStart":1,"InitDuration":{}"#, Millis(init_us))?;
        }
        Ok(())
    }
}

/// The EMF members of an `upstream failure` line.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub dependency: Dependency,
    pub kind: Failure,
    pub timestamp_ms: u64,
}

impl Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#""_aws":{{"Timestamp":{},"CloudWatchMetrics":[{{"Namespace":"{}","Dimensions":[["Dependency","Kind"]],"Metrics":[{{"Name":"UpstreamFailures","Unit":"Count"}}]}}]}},"Dependency":"{}","Kind":"{}","UpstreamFailures":1"#,
            self.timestamp_ms,
            namespace(),
            self.dependency.name(),
            self.kind.name()
        )
    }
}

/// The EMF members of a `secret served stale` line.
#[derive(Debug, Clone)]
pub struct Stale {
    pub secret: &'static str,
    pub timestamp_ms: u64,
}

impl Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#""_aws":{{"Timestamp":{},"CloudWatchMetrics":[{{"Namespace":"{}","Dimensions":[["Secret"]],"Metrics":[{{"Name":"SecretsServedStale","Unit":"Count"}}]}}]}},"Secret":"{}","SecretsServedStale":1"#,
            self.timestamp_ms,
            namespace(),
            self.secret
        )
    }
}

/// Microseconds written as milliseconds with three decimals (`1234` → `1.234`).
struct Millis(u64);

impl Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.", self.0 / 1000)?;
        let frac = self.0 % 1000;
        f.write_char(char::from(b'0' + (frac / 100) as u8))?;
        f.write_char(char::from(b'0' + (frac / 10 % 10) as u8))?;
        f.write_char(char::from(b'0' + (frac % 10) as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn line(members: &dyn Display) -> Value {
        serde_json::from_str(&format!("{{{members}}}")).expect("EMF members make a JSON object")
    }

    #[test]
    fn millis_keep_three_decimals() {
        assert_eq!(Millis(1234).to_string(), "1.234");
        assert_eq!(Millis(5).to_string(), "0.005");
        assert_eq!(Millis(2_000_050).to_string(), "2000.050");
    }

    #[test]
    fn a_refused_cold_request_carries_every_request_metric() {
        let v = line(&Request {
            route: "issue-jwt",
            status: 401,
            code: 40101,
            preflight: false,
            duration_us: 1500,
            jwt_bytes: None,
            init_us: Some(2500),
            timestamp_ms: 1_700_000_000_000,
        });
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(v["Route"], "issue-jwt");
        assert_eq!(v["Result"], "refused_4xx");
        assert_eq!(v["ErrorCode"], "40101");
        assert_eq!(v["Refusals"], 1);
        assert_eq!(v["Duration"], 1.5);
        assert_eq!(v["ColdStart"], 1);
        assert_eq!(v["InitDuration"], 2.5);
        assert!(v.get("JwtBytes").is_none());
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().expect("directives");
        assert_eq!(directives.len(), 3);
        assert_eq!(directives[2]["Dimensions"], serde_json::json!([["Route", "ErrorCode"]]));
    }

    #[test]
    fn an_issued_jwt_has_no_refusal_and_its_size() {
        let v = line(&Request {
            route: "issue-jwt",
            status: 200,
            code: 0,
            preflight: false,
            duration_us: 10,
            jwt_bytes: Some(612),
            init_us: None,
            timestamp_ms: 1,
        });
        assert_eq!(v["Result"], "issued");
        assert_eq!(v["JwtBytes"], 612);
        assert!(v.get("Refusals").is_none() && v.get("ErrorCode").is_none());
        assert_eq!(v["_aws"]["CloudWatchMetrics"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn results_follow_the_status_class() {
        assert_eq!(result_of(200, false), "issued");
        assert_eq!(result_of(204, true), "preflight");
        assert_eq!(result_of(403, true), "refused_4xx");
        assert_eq!(result_of(503, false), "refused_5xx");
    }

    #[test]
    fn failure_kinds_follow_the_status() {
        assert_eq!(Failure::of_status(429), Failure::Throttled);
        assert_eq!(Failure::of_status(502), Failure::ServerError);
        assert_eq!(Failure::of_status(404), Failure::Rejected);
    }

    #[test]
    fn namespaces_follow_cloudwatch_rules() {
        assert!(check_namespace("AblyAuth/prod-stack").is_ok());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("AWS/Lambda").is_err());
        assert!(check_namespace("a\"b").is_err());
        assert!(check_namespace(&"a".repeat(256)).is_err());
    }

    #[test]
    fn upstream_and_stale_lines_name_their_dimensions() {
        let v = line(&Upstream {
            dependency: Dependency::Ably,
            kind: Failure::Timeout,
            timestamp_ms: 1,
        });
        assert_eq!(
            (v["Dependency"].as_str(), v["Kind"].as_str()),
            (Some("Ably"), Some("timeout"))
        );
        assert_eq!(v["UpstreamFailures"], 1);
        let v = line(&Stale {
            secret: "ABLY_API_KEY_SECRET_ID",
            timestamp_ms: 1,
        });
        assert_eq!(v["Secret"], "ABLY_API_KEY_SECRET_ID");
        assert_eq!(v["SecretsServedStale"], 1);
    }
}
