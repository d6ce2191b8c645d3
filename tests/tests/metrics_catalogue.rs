//! The metrics the functions emit, as CloudWatch will see them: every route over every event of
//! `events/` (issued, refused 4xx, refused 5xx as misconfigured, preflight, a cold start) and
//! every upstream failure and stale-secret line, logged by the production subscriber. Every
//! EMF line must follow the Embedded Metric Format specification, and what they publish
//! (metric, dimension set, unit, dimension values) must equal the committed catalogue
//! `tests/template/emitted-metrics.json`, which `make test-template` checks every alarm and
//! dashboard widget of `template.yaml` against.
//!
//! After changing the metrics: `UPDATE_METRICS_CATALOGUE=1 cargo test -p integration-tests
//! --test metrics_catalogue`, then review the diff. The catalogue test has its own binary (it
//! installs the global subscriber), shared only with a check of the EMF validator itself.

use integration_tests::*;
use serde_json::{json, Value};
use shared::log::Invocation;
use shared::metrics::{Dependency, Failure};
use shared::{Route, Service};
use std::collections::HashMap;

const CATALOGUE: &str = "tests/template/emitted-metrics.json";

fn events(prefix: &str) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("events"))
        .expect("events/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(prefix) && name.ends_with(".json")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("event"))
        .collect()
}

fn service(route: Route, overrides: &[(&str, Option<&str>)]) -> Service {
    let mut all = vec![
        ("ABLY_REST_URL", Some("http://127.0.0.1:9")),
        ("ABLY_KEY_REVOCABLE", Some("true")),
    ];
    if matches!(route, Route::TokenRequest | Route::AblyToken) {
        all.push(("TOKEN_POLICY_FILE", None));
        all.push(("TOKEN_POLICY", Some(TOKEN_ROUTES_POLICY)));
    }
    all.extend_from_slice(overrides);
    let env: HashMap<String, String> = dev_env(&all);
    Service::from_env_with(route, &move |k: &str| env.get(k).cloned()).expect("service")
}

fn as_json(catalogue: &EmfCatalogue) -> Value {
    Value::Array(
        catalogue
            .iter()
            .map(|((namespace, metric, dimensions), (unit, values))| {
                json!({"namespace": namespace, "metric": metric, "dimensions": dimensions, "unit": unit, "values": values})
            })
            .collect(),
    )
}

#[test]
fn emitted_metrics_follow_the_emf_specification_and_match_the_committed_catalogue() {
    let logs = Captured::default();
    let writer = logs.clone();
    let filter = tracing_subscriber::EnvFilter::new("info,metrics=info");
    tracing::subscriber::set_global_default(shared::log::subscriber(filter, move || writer.clone()))
        .expect("the only subscriber of this test binary");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let preflight = events("jwt-preflight").remove(0);
        for (route, prefix) in [
            (Route::Jwt, "jwt-"),
            (Route::TokenRequest, "token-request-"),
            (Route::AblyToken, "ably-token-"),
            (Route::Revoke, "revoke-"),
        ] {
            let working = service(route, &[]);
            // No caller verification and no anonymous grant: every request is 500 / 50000.
            let misconfigured = service(
                route,
                &[
                    ("CALLER_HS256_SECRET", None),
                    ("TOKEN_POLICY_FILE", None),
                    (
                        "TOKEN_POLICY",
                        Some(r#"{"clientId":"{sub}","capability":{"a":["subscribe"]}}"#),
                    ),
                ],
            );
            let mut texts = events(prefix);
            texts.push(preflight.clone());
            for (n, text) in texts.iter().enumerate() {
                let request = lambda_http::request::from_str(text).expect("event");
                let invocation = Invocation {
                    request_id: format!("catalogue-{n}"),
                    cold_start: n == 0,
                    init_us: 2500,
                    ..Invocation::default()
                };
                shared::log::within(invocation, working.handle(request)).await;
            }
            let request = lambda_http::request::from_str(&texts[0]).expect("event");
            misconfigured.handle(request).await;
        }
    });
    for dependency in Dependency::ALL {
        for kind in Failure::ALL {
            shared::metrics::upstream_failure(dependency, kind);
        }
    }
    for secret in ["ABLY_API_KEY_SECRET_ID", "CALLER_HS256_SECRET_ID"] {
        shared::metrics::secret_served_stale(secret);
    }

    let text = logs.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}")))
        .collect();
    let mut catalogue = EmfCatalogue::new();
    let mut requests = 0;
    for line in lines.iter().filter(|l| is_emf(l)) {
        let problems = emf_problems(line);
        assert!(problems.is_empty(), "{problems:?} in {line}");
        if line["message"] == "request" {
            requests += 1;
        }
        catalogue_add(&mut catalogue, line);
    }
    let request_lines = lines.iter().filter(|l| l["message"] == "request").count();
    assert_eq!(requests, request_lines, "every request line carries its metrics");
    assert!(requests > 40, "{requests} requests exercised");
    let emitted = as_json(&catalogue);
    // The alarms need these exact values to have been emitted.
    let has = |metric: &str, key: &str, value: &str| {
        emitted.as_array().into_iter().flatten().any(|e| {
            e["metric"] == metric
                && e["values"][key]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x == value))
        })
    };
    assert!(has("Requests", "Result", "refused_5xx") && has("Refusals", "ErrorCode", "50000"));
    assert!(has("ColdStart", "Route", "revoke-tokens") && has("JwtBytes", "Route", "issue-jwt"));

    let path = root().join(CATALOGUE);
    let pretty = serde_json::to_string_pretty(&emitted).expect("JSON") + "\n";
    if std::env::var_os("UPDATE_METRICS_CATALOGUE").is_some() {
        std::fs::write(&path, &pretty).expect("write the catalogue");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed, pretty,
        "{CATALOGUE} differs from the metrics the code emits: run UPDATE_METRICS_CATALOGUE=1 cargo test -p integration-tests --test metrics_catalogue, review, commit"
    );
}

/// The validator the tests above rely on refuses each kind of break of the specification
/// (a validator that accepted anything would let every EMF test pass).
#[test]
fn the_emf_validator_refuses_each_break_of_the_specification() {
    let valid = json!({
        "_aws": {"Timestamp": 1_700_000_000_000u64, "CloudWatchMetrics": [{
            "Namespace": "AblyAuth/test",
            "Dimensions": [["Route"]],
            "Metrics": [{"Name": "Requests", "Unit": "Count"}]
        }]},
        "Route": "issue-jwt",
        "Requests": 1
    });
    assert_eq!(emf_problems(&valid), Vec::<String>::new());
    type Break = (&'static str, fn(&mut Value), &'static str);
    let broken: [Break; 12] = [
        ("not an object", |v| *v = json!([1]), "root node"),
        (
            "no metadata",
            |v| drop(v.as_object_mut().unwrap().remove("_aws")),
            "no `_aws`",
        ),
        (
            "no timestamp",
            |v| drop(v["_aws"].as_object_mut().unwrap().remove("Timestamp")),
            "Timestamp",
        ),
        ("unknown metadata", |v| v["_aws"]["Extra"] = json!(1), "\"Extra\""),
        (
            "no directives",
            |v| v["_aws"]["CloudWatchMetrics"] = json!([]),
            "is empty",
        ),
        (
            "empty namespace",
            |v| v["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!(""),
            "Namespace",
        ),
        (
            "dimension without a value",
            |v| drop(v.as_object_mut().unwrap().remove("Route")),
            "dimension \"Route\"",
        ),
        (
            "31 dimensions",
            |v| {
                let keys: Vec<String> = (0..31).map(|i| format!("D{i}")).collect();
                for k in &keys {
                    v[k.as_str()] = json!("x");
                }
                v["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([keys]);
            },
            "more than 30",
        ),
        (
            "metric without a number",
            |v| v["Requests"] = json!("1"),
            "metric \"Requests\"",
        ),
        (
            "unknown unit",
            |v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Requests"),
            "not a CloudWatch unit",
        ),
        (
            "bad resolution",
            |v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"] = json!(5),
            "StorageResolution",
        ),
        (
            "metric that is a dimension",
            |v| {
                v["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([["Requests"]]);
                v["Requests"] = json!(1);
            },
            "both a metric and a dimension",
        ),
    ];
    for (what, edit, needle) in broken {
        let mut line = valid.clone();
        edit(&mut line);
        let problems = emf_problems(&line);
        assert!(problems.iter().any(|p| p.contains(needle)), "{what}: {problems:?}");
    }
}
