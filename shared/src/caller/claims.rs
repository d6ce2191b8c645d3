//! Verified claims, as the policy sees them.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The verified caller's claims (a JSON object).
///
/// Lookup by name tries the exact key first (`cognito:groups`, `https://example.com/roles`),
/// then a dotted path into nested objects (`app_metadata.org`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Claims(Map<String, Value>);

impl Claims {
    pub fn new(map: Map<String, Value>) -> Self {
        Self(map)
    }

    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.0.insert(name.into(), value);
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The raw value at `name` (exact key, else dotted path). Keys may contain dots
    /// themselves (Auth0's namespaced claims): `https://example.com/meta.org` finds `org`
    /// inside the claim `https://example.com/meta`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        lookup(&self.0, name, 0)
    }

    /// A claim as text: strings as they are, numbers and booleans in JSON form; objects,
    /// arrays and null have no text.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.get(name)? {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }

    /// The credential's expiry (`exp`, seconds since the epoch) when the claims carry one:
    /// a JSON number (HS256, OIDC and cookie tokens always have one, checked by their
    /// verifier), or the decimal text API Gateway's JWT authorizer passes on. Anything else
    /// (absent, negative, not a number) is no expiry.
    pub fn expires_at_seconds(&self) -> Option<u64> {
        match self.0.get("exp")? {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                    .map(|f| f as u64)
            }),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
    }

    /// A claim as a list of strings: an array's string (and number) elements; a string is
    /// one item, or several when written as API Gateway stringifies arrays (`[a b]`) or
    /// separated by commas or spaces (`"admin, moderator"`, OAuth `scope`).
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => {
                let s = s.trim();
                let s = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s);
                s.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Nesting deeper than this is not followed (claims are attacker-shaped JSON).
const MAX_DEPTH: usize = 8;

fn lookup<'a>(map: &'a Map<String, Value>, name: &str, depth: usize) -> Option<&'a Value> {
    if let Some(v) = map.get(name) {
        return Some(v);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    // Each `.` may separate a key (itself possibly dotted) from the path inside it.
    name.match_indices('.').find_map(|(i, _)| match map.get(&name[..i]) {
        Some(Value::Object(inner)) => lookup(inner, &name[i + 1..], depth + 1),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exact_key_then_dotted_path() {
        let c = claims(json!({"sub":"alice","app_metadata":{"org":"acme"},"https://x.io/roles":["a"],"n":7,"b":true}));
        assert_eq!(c.text("sub").as_deref(), Some("alice"));
        assert_eq!(c.text("app_metadata.org").as_deref(), Some("acme"));
        assert_eq!(c.list("https://x.io/roles"), vec!["a"]);
        assert_eq!(c.text("n").as_deref(), Some("7"));
        assert_eq!(c.text("b").as_deref(), Some("true"));
        assert_eq!(c.text("app_metadata"), None);
        assert_eq!(c.text("missing"), None);
        assert_eq!(c.text("app_metadata.missing"), None);
    }

    #[test]
    fn dotted_paths_through_keys_that_contain_dots() {
        let c = claims(json!({
            "https://example.com/app_metadata": {"org": "acme", "team.name": "red"},
            "https://example.com/roles": ["admin"],
            "a": {"b": {"c": "deep"}},
            "a.b": {"d": "dotted key"}
        }));
        assert_eq!(c.text("https://example.com/app_metadata.org").as_deref(), Some("acme"));
        assert_eq!(
            c.text("https://example.com/app_metadata.team.name").as_deref(),
            Some("red")
        );
        assert_eq!(c.list("https://example.com/roles"), vec!["admin"]);
        assert_eq!(c.text("a.b.c").as_deref(), Some("deep"));
        assert_eq!(c.text("a.b.d").as_deref(), Some("dotted key"));
        assert_eq!(c.text("https://example.com/app_metadata.missing"), None);
        assert_eq!(c.text("."), None);
    }

    #[test]
    fn expiry_from_a_number_or_the_authorizers_decimal_text() {
        assert_eq!(
            claims(json!({"exp": 1_700_000_000})).expires_at_seconds(),
            Some(1_700_000_000)
        );
        assert_eq!(
            claims(json!({"exp": 1_700_000_000.5})).expires_at_seconds(),
            Some(1_700_000_000)
        );
        assert_eq!(
            claims(json!({"exp": "1700000000"})).expires_at_seconds(),
            Some(1_700_000_000)
        );
        for none in [
            json!({}),
            json!({"exp": -5}),
            json!({"exp": "soon"}),
            json!({"exp": null}),
            json!({"exp": [1]}),
        ] {
            assert_eq!(claims(none.clone()).expires_at_seconds(), None, "{none}");
        }
    }

    #[test]
    fn lists_from_arrays_and_strings() {
        let c = claims(json!({"a":["x","y",3,{"z":1}],"s":"admin","gw":"[admin moderator]","csv":"a, b","none":null}));
        assert_eq!(c.list("a"), vec!["x", "y", "3"]);
        assert_eq!(c.list("s"), vec!["admin"]);
        assert_eq!(c.list("gw"), vec!["admin", "moderator"]);
        assert_eq!(c.list("csv"), vec!["a", "b"]);
        assert!(c.list("none").is_empty());
        assert!(c.list("missing").is_empty());
    }
}
