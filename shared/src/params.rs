//! The client's token parameters: untrusted hints that can only narrow the grant.
//!
//! SDKs send them in the query string (`authMethod: "GET"`, the default) or in a
//! form-encoded body (`authMethod: "POST"`); JSON bodies are accepted too. `clientId` and
//! `client_id` (Python, Ruby), `capability` and `ttl` (milliseconds) are read; everything else
//! (`rnd`, `timestamp`, `nonce`, app `authParams`) is ignored.

use crate::capability::Capability;
use crate::error::{truncate_for_message, IssueError};
use crate::limits::MAX_CLIENT_ID_BYTES;
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::{Body, Request, RequestExt};

/// Larger bodies are refused (413): a token request carries a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Hints larger than any sane value are refused rather than parsed.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// Intersection costs |requested| × |granted|: cap the requested side.
pub const MAX_REQUESTED_RESOURCES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenHints {
    pub client_id: Option<String>,
    pub capability: Option<Capability>,
    pub ttl_ms: Option<u64>,
}

#[derive(Default)]
struct Raw {
    client_id: Option<String>,
    client_id_snake: Option<String>,
    capability: Option<String>,
    ttl: Option<String>,
}

impl Raw {
    /// Later sources (the body) override earlier ones (the query string).
    fn set(&mut self, name: &str, value: String) {
        if value.is_empty() {
            return;
        }
        match name {
            "clientId" => self.client_id = Some(value),
            "client_id" => self.client_id_snake = Some(value),
            "capability" => self.capability = Some(value),
            "ttl" => self.ttl = Some(value),
            _ => {}
        }
    }

    fn set_form(&mut self, text: &[u8]) {
        for (name, value) in form_urlencoded::parse(text) {
            self.set(&name, value.into_owned());
        }
    }
}

/// The request body's bytes; 413 over [`MAX_BODY_BYTES`].
pub(crate) fn body_bytes(request: &Request) -> Result<&[u8], IssueError> {
    let body: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        #[allow(unreachable_patterns)]
        _ => &[],
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(IssueError::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    Ok(body)
}

/// The `Content-Type` header as sent (`""` when absent or not text) and its media type,
/// parameters dropped, lower-cased.
pub(crate) fn content_type(request: &Request) -> (&str, String) {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    (content_type, media_type)
}

/// Read the hints of one request.
pub fn parse(request: &Request) -> Result<TokenHints, IssueError> {
    let mut raw = Raw::default();
    match request.uri().query() {
        Some(q) => raw.set_form(q.as_bytes()),
        None => {
            if let Some(map) = request.query_string_parameters_ref() {
                for (name, value) in map.iter() {
                    raw.set(name, value.to_owned());
                }
            }
        }
    }

    let body = body_bytes(request)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let (content_type, media_type) = content_type(request);
        match media_type.as_str() {
            "application/x-www-form-urlencoded" => raw.set_form(body),
            "application/json" => read_json(&mut raw, body)?,
            _ => return Err(IssueError::UnsupportedMediaType(truncate_for_message(content_type, 64))),
        }
    }

    let client_id = match (raw.client_id, raw.client_id_snake) {
        (Some(a), Some(b)) if a != b => {
            return Err(IssueError::bad_request(
                "clientId",
                "`clientId` and `client_id` disagree; send one of them",
            ))
        }
        (a, b) => a.or(b),
    };
    if let Some(c) = &client_id {
        if c.chars().any(char::is_control) {
            return Err(IssueError::bad_request(
                "clientId",
                "control characters are not allowed in a clientId",
            ));
        }
        if c.len() > MAX_CLIENT_ID_BYTES {
            return Err(IssueError::bad_request(
                "clientId",
                format!(
                    "is {} bytes; a clientId has at most {MAX_CLIENT_ID_BYTES}. Send the clientId you were issued, or omit it",
                    c.len()
                ),
            ));
        }
    }
    let capability = raw.capability.map(|c| parse_capability(&c)).transpose()?;
    let ttl_ms = raw.ttl.map(|t| parse_ttl(&t)).transpose()?;
    Ok(TokenHints {
        client_id,
        capability,
        ttl_ms,
    })
}

fn read_json(raw: &mut Raw, body: &[u8]) -> Result<(), IssueError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        IssueError::bad_request(
            "body",
            format!("the JSON body does not parse ({e}); send a JSON object such as {{\"ttl\":3600000}}"),
        )
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(IssueError::bad_request(
            "body",
            "the JSON body must be an object such as {\"ttl\":3600000}",
        ));
    };
    for (name, value) in map {
        let field: &'static str = match name.as_str() {
            "clientId" => "clientId",
            "client_id" => "client_id",
            "capability" => "capability",
            "ttl" => "ttl",
            _ => continue,
        };
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) if field == "ttl" => n.to_string(),
            v @ serde_json::Value::Object(_) if field == "capability" => v.to_string(),
            _ => return Err(IssueError::bad_request(field, "has the wrong JSON type")),
        };
        raw.set(field, text);
    }
    Ok(())
}

fn parse_capability(text: &str) -> Result<Capability, IssueError> {
    let capability = Capability::parse(text).map_err(|e| IssueError::bad_request("capability", e.to_string()))?;
    if capability.is_empty() {
        return Err(IssueError::bad_request(
            "capability",
            "names no resource; omit it to receive your whole grant",
        ));
    }
    if capability.len() > MAX_REQUESTED_RESOURCES {
        return Err(IssueError::bad_request(
            "capability",
            format!(
                "names {} resources; request at most {MAX_REQUESTED_RESOURCES} (use patterns such as \"chat:*\"), or omit it to receive your whole grant",
                capability.len()
            ),
        ));
    }
    Ok(capability)
}

fn parse_ttl(text: &str) -> Result<u64, IssueError> {
    let bad = || {
        IssueError::bad_request(
            "ttl",
            "must be a positive whole number of milliseconds, e.g. 3600000 for one hour",
        )
    };
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u64>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(n) if n > MAX_TTL_MS => Err(bad()),
        Ok(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: &str) -> Request {
        lambda_http::http::Request::builder()
            .uri(format!("https://example.com/auth/jwt?{query}"))
            .body(Body::Empty)
            .unwrap()
    }

    fn capability_query(resources: usize) -> String {
        let entries: Vec<String> = (0..resources).map(|i| format!("\"c{i}\":[\"subscribe\"]")).collect();
        let json = format!("{{{}}}", entries.join(","));
        let encoded: String = form_urlencoded::byte_serialize(json.as_bytes()).collect();
        format!("capability={encoded}")
    }

    #[test]
    fn up_to_100_requested_resources_are_read() {
        let hints = parse(&get(&capability_query(MAX_REQUESTED_RESOURCES))).unwrap();
        assert_eq!(hints.capability.unwrap().len(), MAX_REQUESTED_RESOURCES);
    }

    #[test]
    fn client_id_hint_over_2048_bytes_gets_400_naming_client_id() {
        let at_limit = "a".repeat(MAX_CLIENT_ID_BYTES);
        let hints = parse(&get(&format!("clientId={at_limit}"))).unwrap();
        assert_eq!(hints.client_id.as_deref(), Some(at_limit.as_str()));
        for name in ["clientId", "client_id"] {
            let e = parse(&get(&format!("{name}={at_limit}b"))).unwrap_err();
            assert_eq!((e.status(), e.code()), (400, 40000));
            assert!(
                matches!(&e, IssueError::BadRequest { field: "clientId", message } if message.contains("at most 2048")),
                "{e}"
            );
            assert!(e.to_string().len() < 200, "the value is not echoed: {e}");
        }
    }

    #[test]
    fn over_long_resource_name_in_the_capability_hint_gets_400_naming_capability() {
        let json = format!(r#"{{"chat:{}":["subscribe"]}}"#, "a".repeat(3000));
        let encoded: String = form_urlencoded::byte_serialize(json.as_bytes()).collect();
        let e = parse(&get(&format!("capability={encoded}"))).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, 40000));
        assert!(
            matches!(&e, IssueError::BadRequest { field: "capability", message } if message.contains("at most 2048 bytes")),
            "{e}"
        );
    }

    #[test]
    fn more_than_100_requested_resources_get_400_naming_capability() {
        let e = parse(&get(&capability_query(MAX_REQUESTED_RESOURCES + 1))).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, 40000));
        assert!(
            matches!(&e, IssueError::BadRequest { field: "capability", message } if message.contains("at most 100")),
            "{e}"
        );
    }
}
