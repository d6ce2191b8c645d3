//! `schema/policy.schema.json` (JSON Schema draft 2020-12) and the Rust parser agree:
//! every policy in the repository validates against the schema, and on a corpus of
//! generated documents (the fuzz generator `policy_doc`, valid and invalid) the schema
//! accepts every document `Policy::from_json` accepts, and refuses every document it
//! refuses except for the few checks a schema cannot express (listed in `SEMANTIC_ONLY`).
//!
//! The schema is checked by Python's `jsonschema` (the validator editors' language servers
//! agree with), run once per test over all documents: `.tools/venv/bin/python` when
//! `make tools-py` installed it, else `python3`.

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

use arbitrary::Unstructured;
use serde_json::{json, Value};
use shared::policy::Policy;
use std::io::Write;
use std::process::{Command, Stdio};

/// Rust refusals the schema cannot express: cross-field rules and byte lengths.
const SEMANTIC_ONLY: &[&str] = &[
    // Roles are present but no grant anywhere has a capability entry.
    "the policy grants nothing to anyone",
    // Resource names are limited to 2,048 UTF-8 bytes (a schema counts characters).
    "2048",
];

const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1], encoding="utf-8"))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
for line in sys.stdin:
    doc = json.loads(line)
    errors = sorted(e.message for e in v.iter_errors(doc))
    print(json.dumps(errors[:3]))
"#;

/// The schema's verdict on each document: its first errors (empty: valid).
fn schema_errors(docs: &[Value]) -> Vec<Vec<String>> {
    let root = integration_tests::root();
    let venv = root.join(".tools/venv/bin/python");
    let python = if venv.is_file() { venv } else { "python3".into() };
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(VALIDATE)
        .arg(root.join("schema/policy.schema.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make tools-py`", python.display()));
    let mut stdin = child.stdin.take().unwrap();
    let input: String = docs.iter().map(|d| format!("{d}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the schema check failed (is Python's jsonschema installed? `make tools-py`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The policies the repository ships and runs: dev/, examples/policies/, env.json, the
/// template's default, the integration tests' policies, and the README's examples.
fn repository_policies() -> Vec<(String, Value)> {
    let root = integration_tests::root();
    let mut out = Vec::new();
    for dir in ["dev", "examples/policies"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
                out.push((name, serde_json::from_str(&text).unwrap()));
            }
        }
    }
    // The development settings for `sam local` (env.json): each function's TOKEN_POLICY.
    let env: Value = serde_json::from_str(&std::fs::read_to_string(root.join("env.json")).unwrap()).unwrap();
    for (function, vars) in env.as_object().unwrap() {
        if let Some(policy) = vars["TOKEN_POLICY"].as_str() {
            out.push((
                format!("env.json {function}.TOKEN_POLICY"),
                serde_json::from_str(policy).unwrap(),
            ));
        }
    }
    // The template's default TokenPolicy (one line after `Default: >-`).
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let default = template
        .split("\n  TokenPolicy:\n")
        .nth(1)
        .and_then(|rest| rest.split("Default: >-\n").nth(1))
        .and_then(|rest| rest.lines().next())
        .expect("template.yaml: TokenPolicy's Default");
    out.push((
        "template.yaml TokenPolicy default".into(),
        serde_json::from_str(default.trim()).unwrap(),
    ));
    // The policies the integration tests configure (their raw-string `POLICY` constants).
    let tests = root.join("tests/tests");
    let mut sources: Vec<_> = std::fs::read_dir(&tests).unwrap().flatten().map(|e| e.path()).collect();
    sources.push(tests.join("caller_support/mod.rs"));
    for path in sources.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, block) in text.split("POLICY: &str = r#\"").skip(1).enumerate() {
            let policy = block.split("\"#").next().unwrap();
            let name = format!(
                "{} POLICY #{}",
                path.strip_prefix(&root).unwrap_or(&path).display(),
                i + 1
            );
            let doc = serde_json::from_str(policy).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, doc));
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (i, block) in readme.split("```json\n").skip(1).enumerate() {
        let text = block.split("```").next().unwrap();
        let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if doc.contains_key("capability") || doc.contains_key("roles") || doc.contains_key("anonymous") {
            out.push((format!("README.md json block #{}", i + 1), Value::Object(doc)));
        }
    }
    out
}

#[test]
fn every_policy_in_the_repository_is_valid_for_the_schema_and_the_parser() {
    let policies = repository_policies();
    assert!(
        policies.len() >= 15,
        "found only {:?}",
        policies.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    let docs: Vec<Value> = policies.iter().map(|(_, d)| d.clone()).collect();
    for ((name, doc), errors) in policies.iter().zip(schema_errors(&docs)) {
        assert!(
            errors.is_empty(),
            "{name} does not validate against the schema: {errors:?}"
        );
        Policy::from_json(&doc.to_string(), false).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, doc) in &policies {
        if name.starts_with("dev/") || name.starts_with("examples/") {
            assert!(
                doc["$schema"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("schema/policy.schema.json")),
                "{name} names no $schema"
            );
        }
    }
}

#[test]
fn the_schema_and_the_parser_agree_on_generated_policies() {
    // Generated documents: every one the parser accepts (about 1 in 80), a sample of the rest.
    let (mut valid, mut invalid) = (Vec::new(), Vec::new());
    for seed in 1..25_000u64 {
        let data = integration_tests::pseudo_random_bytes(0x5c4e_4a00 + seed, 200);
        if let Ok(doc) = harness::policy_doc(&mut Unstructured::new(&data)) {
            if Policy::from_json(&doc.to_string(), false).is_ok() {
                valid.push(doc);
            } else if invalid.len() < 1500 {
                invalid.push(doc);
            }
        }
        if valid.len() >= 200 {
            break;
        }
    }
    // Each valid document mutated at one field: near the boundary, valid and invalid.
    let mut mutated = Vec::new();
    for (i, doc) in valid
        .iter()
        .chain(repository_policies().iter().map(|(_, d)| d))
        .enumerate()
    {
        for m in 0..4 {
            let mut d = doc.clone();
            match (i + m) % 8 {
                0 => d["ttlSeconds"] = json!([59, 60, 3600, 86_400, 86_401][(i + m) % 5]),
                1 => d["ttlJitterPercent"] = json!([0, 20, 21][(i + m) % 3]),
                2 => d["roomClaims"] = json!({["support:*", ":x", "[meta]r", "*"][(i + m) % 4]: "{\"n\":\"{name}\"}"}),
                3 => d["clientId"] = json!(["{sub}", "user-{sub}*", "", "a\u{1}"][(i + m) % 4]),
                4 => d["anonymous"] = json!({"capability": {["public:*", "p:{sub}"][(i + m) % 2]: ["subscribe"]}}),
                5 => d["boundToSession"] = json!([json!(false), json!("no")][(i + m) % 2]),
                6 => {
                    let ops = [
                        json!(["subscribe"]),
                        json!([]),
                        json!(["*", "publish"]),
                        json!(["channel-metadata"]),
                    ];
                    d["capability"] = json!({ "a": ops[(i + m) % 4] });
                }
                _ => d["revocationKey"] = json!(["{org}", ""][(i + m) % 2]),
            }
            mutated.push(d);
        }
    }
    let mut docs: Vec<Value> = valid.into_iter().chain(invalid).chain(mutated).collect();
    // Hand-written edges: each field's type and bounds.
    for doc in [
        json!({"capability": {"a": ["subscribe"]}, "ttlJitterPercent": 20}),
        json!({"capability": {"a": ["subscribe"]}, "ttlJitterPercent": 21}),
        json!({"capability": {"a": ["subscribe"]}, "boundToSession": "yes"}),
        json!({"capability": {"a": ["subscribe"]}, "roomClaims": {"support:*": "{\"n\":\"{name}\"}"}}),
        json!({"capability": {"a": ["subscribe"]}, "roomClaims": {":x": "v"}}),
        json!({"capability": {"a": ["subscribe"]}, "$schema": "x"}),
        json!({"anonymous": {"capability": {"p": ["subscribe"]}, "roomClaims": {"p": "{name}"}}}),
        json!({"capability": {"a": ["*", "publish"]}}),
        json!({"capability": {"[queue]": ["subscribe"]}}),
        json!({"capability": {"a": ["subscribe"]}, "clientId": "a*"}),
        json!({"capability": {"a": ["subscribe"]}, "ttlSeconds": 59}),
        json!({"capability": {"a": ["subscribe"]}, "ttlSeconds": 86400}),
    ] {
        docs.push(doc);
    }
    let verdicts = schema_errors(&docs);
    let (mut both_ok, mut both_refuse, mut semantic) = (0, 0, 0);
    for (doc, schema) in docs.iter().zip(&verdicts) {
        let rust = Policy::from_json(&doc.to_string(), false);
        match (&rust, schema.is_empty()) {
            (Ok(_), true) => both_ok += 1,
            (Err(_), false) => both_refuse += 1,
            (Ok(_), false) => panic!("the schema refuses a policy the functions accept: {doc}\n  schema: {schema:?}"),
            (Err(e), true) => {
                let text = e.to_string();
                assert!(
                    SEMANTIC_ONLY.iter().any(|s| text.contains(s)),
                    "the schema accepts a policy the functions refuse: {doc}\n  parser: {text}"
                );
                semantic += 1;
            }
        }
    }
    println!("{} documents: {both_ok} valid for both, {both_refuse} refused by both, {semantic} refused only by the parser's semantic checks", docs.len());
    assert!(
        both_ok >= 300 && both_refuse >= 300,
        "{both_ok} valid, {both_refuse} invalid: the corpus is too one-sided"
    );
}
