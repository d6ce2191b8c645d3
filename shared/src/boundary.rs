//! The runtime boundary: the raw event a function receives, checked against what
//! `lambda_http`'s conversion can take before it becomes a [`lambda_http::Request`].
//!
//! `lambda_http` turns an API Gateway event into an `http::Request` with code that panics
//! (`expect("failed to build request")`, `Url::parse(..).unwrap()`,
//! `expect("failed to decode aws base64 encoded body")`) on input a client controls, and with
//! `panic = "abort"` each such panic kills the container. Read from `lambda_http` 1.3 and
//! `aws_lambda_events` 1.2, the whole class is:
//!
//! | event field | conversion | failure | here |
//! |---|---|---|---|
//! | `rawQueryString` (HTTP API, Function URLs) | appended to the URI unencoded | `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`, space, control bytes: `InvalidUriChar`; `#` silently cuts the query | bytes a URI cannot carry are percent-encoded (they decode back to what the client sent) |
//! | URI length (path + query) | `http::Uri` | over 65,534 bytes: `TooLong` | over [`MAX_URI_BYTES`]: 400 |
//! | `Host` header / `requestContext.domainName`, `X-Forwarded-Proto`, the path and stage | `Url::parse(format!("{proto}://{host}{path}")).unwrap()` | a host with a space or a bad port, a proto with `/` … | 400 naming the part |
//! | `body` with `isBase64Encoded: true` | base64 decode `.expect(..)` | not base64 | 400 |
//! | `cookies` (HTTP API) | joined into a `Cookie` header; dropped if not a header value | a credential silently lost | 400 |
//! | a query map entry with an empty value list (`"a": []`) | `QueryMap`'s iterator indexes `values[0]` (in `to_query_string`, and in our own parameter reading) | index out of bounds | 400 |
//! | more than 24,576 distinct header names (`headers` + `multiValueHeaders`) | `HeaderMap::insert` / `extend` | `expect("size overflows MAX_SIZE")`, during deserialization or the merge | over [`MAX_HEADERS`]: 400, counted before the typed parse |
//! | no `rawQueryString` (HTTP API) | the query is read from `queryStringParameters` instead | (the empty-list panic above) | treated as `""`, as API Gateway always sends it |
//! | anything else that does not deserialize as an API Gateway event (bad header values, wrong types) | `lambda_runtime` reports an invocation error (the gateway answers 502) | — | 400 |
//!
//! The first three rows cannot come through API Gateway or a Function URL (only a direct
//! `lambda:InvokeFunction` or a test event), but a function must not die of them either.
//!
//! [`admit`] first scans the raw JSON for the shapes that panic during deserialization
//! ([`Shape`]), then checks exactly the values the conversion builds (the same URI string, the same
//! parsers), so whatever it admits converts; what it refuses is answered with a 400 ErrorInfo
//! by [`crate::runtime`] through a harmless stand-in event of the same origin, so the answer
//! still carries CORS, `no-store` and the right response shape. `fuzz/` runs whole events
//! through [`crate::runtime::answer`] to keep this table complete.

use crate::error::IssueError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::header::{HeaderMap, HOST, ORIGIN};
use lambda_http::http::{Method, Uri};
use lambda_http::request::LambdaRequest;
use std::borrow::Cow;
use url::Url;

/// Longest URI (scheme, host, path and query) accepted. API Gateway's own limit on the
/// request line is about 10 KiB; `http::Uri` cannot hold more than 65,534 bytes. Token
/// parameters larger than this belong in a POST body (ably-js `authMethod: "POST"`).
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Most header names accepted in one event (`headers` and `multiValueHeaders` together).
/// API Gateway limits headers to about 10 KiB; `http::HeaderMap` panics past 24,576 names.
pub const MAX_HEADERS: usize = 1000;

/// A raw event, admitted or refused.
#[derive(Debug)]
pub enum Admitted {
    /// Converts into a `Request` without a panic (possibly after a repair of its query).
    Event(LambdaRequest),
    /// Cannot be converted: answer `problem` to `stand_in`, a harmless event of the same
    /// origin that keeps the method and the `Origin` header (for CORS).
    Refused {
        stand_in: LambdaRequest,
        problem: IssueError,
    },
}

/// Check (and where it is safe, repair) one raw event.
pub fn admit(raw: &str) -> Admitted {
    if let Err(problem) = Shape::check(raw) {
        return Admitted::Refused {
            stand_in: stand_in_for_unparsed(raw),
            problem,
        };
    }
    match serde_json::from_str::<LambdaRequest>(raw) {
        Ok(mut event) => match check(&mut event) {
            Ok(()) => Admitted::Event(event),
            Err(problem) => Admitted::Refused {
                stand_in: stand_in_for(&event),
                problem,
            },
        },
        Err(_) => Admitted::Refused {
            stand_in: stand_in_for_unparsed(raw),
            problem: refused(
                "it is not an API Gateway (REST or HTTP API) or Function URL event, or a field has the wrong type (for example a header value with a control character)",
            ),
        },
    }
}

fn refused(message: impl Into<Cow<'static, str>>) -> IssueError {
    IssueError::BadEvent(message.into())
}

/// Check `event` against what `lambda_http`'s conversion can take; repair its raw query.
pub fn check(event: &mut LambdaRequest) -> Result<(), IssueError> {
    match event {
        LambdaRequest::ApiGatewayV2(ag) => check_v2(ag),
        LambdaRequest::ApiGatewayV1(ag) => check_v1(ag),
        #[allow(unreachable_patterns)]
        _ => Err(refused(
            "only API Gateway (REST or HTTP API) and Function URL events are served",
        )),
    }
}

fn check_v2(ag: &mut ApiGatewayV2httpRequest) -> Result<(), IssueError> {
    // API Gateway always sends it; without it lambda_http would read `queryStringParameters`.
    let query = ag.raw_query_string.get_or_insert_with(String::new);
    if let Cow::Owned(repaired) = encode_query(query) {
        *query = repaired;
    }
    if let Some(cookies) = &ag.cookies {
        if !cookies.iter().all(|c| is_header_text(c)) {
            return Err(refused(
                "a cookie holds a control character, which no Cookie header can carry; clear the site's cookies",
            ));
        }
    }
    check_body(ag.is_base64_encoded, ag.body.as_deref())?;
    let host = host(&ag.headers, ag.request_context.domain_name.as_deref());
    let path = path_with_stage(
        ag.request_context.stage.as_deref(),
        ag.raw_path.as_deref().unwrap_or(""),
    );
    let mut uri = request_uri(&path, &ag.headers, host)?;
    if let Some(query) = ag.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(query);
    }
    check_uri(&uri)
}

fn check_v1(ag: &mut ApiGatewayProxyRequest) -> Result<(), IssueError> {
    check_body(ag.is_base64_encoded, ag.body.as_deref())?;
    let host = host(&ag.headers, ag.request_context.domain_name.as_deref());
    let path = path_with_stage(ag.request_context.stage.as_deref(), ag.path.as_deref().unwrap_or(""));
    let mut uri = request_uri(&path, &ag.headers, host)?;
    let query = query_of(&ag.multi_value_query_string_parameters, &ag.query_string_parameters);
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query);
    }
    check_uri(&uri)
}

/// The query the REST conversion appends: the multi-value map when it has entries, else the
/// single-value map, form-encoded.
fn query_of(multi: &QueryMap, single: &QueryMap) -> String {
    if !multi.is_empty() {
        multi.to_query_string()
    } else if !single.is_empty() {
        single.to_query_string()
    } else {
        String::new()
    }
}

fn host<'a>(headers: &'a HeaderMap, domain_name: Option<&'a str>) -> Option<&'a str> {
    headers.get(HOST).and_then(|h| h.to_str().ok()).or(domain_name)
}

/// `lambda_http`'s `apigw_path_with_stage`.
fn path_with_stage<'a>(stage: Option<&str>, path: &'a str) -> Cow<'a, str> {
    if std::env::var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_ok() {
        return Cow::Borrowed(path);
    }
    match stage {
        None | Some("$default") => Cow::Borrowed(path),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => Cow::Borrowed(path),
        Some(stage) => Cow::Owned(format!("/{stage}{path}")),
    }
}

/// `lambda_http`'s `build_request_uri` without the query, fallible where it unwraps.
fn request_uri(path: &str, headers: &HeaderMap, host: Option<&str>) -> Result<String, IssueError> {
    let Some(host) = host else {
        return Url::parse(&format!("http://localhost{path}"))
            .map(|url| url.path().to_owned())
            .map_err(|_| refused("the request path is not a valid URL path"));
    };
    let proto = headers.get("x-forwarded-proto").and_then(|s| s.to_str().ok());
    let scheme = proto.unwrap_or("https");
    if let Ok(url) = Url::parse(&format!("{scheme}://{host}{path}")) {
        return Ok(url.to_string());
    }
    // Name the part that does not parse.
    Err(
        if proto.is_some() && Url::parse(&format!("https://{host}{path}")).is_ok() {
            refused("the X-Forwarded-Proto header is not a URL scheme; send http or https")
        } else if Url::parse(&format!("https://localhost{path}")).is_ok() {
            refused("the Host header is not a valid host[:port]")
        } else {
            refused("the request path is not a valid URL path")
        },
    )
}

fn check_uri(uri: &str) -> Result<(), IssueError> {
    if uri.len() > MAX_URI_BYTES {
        return Err(refused(format!(
            "the URL is {} bytes, over the {MAX_URI_BYTES}-byte limit; send the token parameters in a POST body instead (ably-js authMethod: \"POST\")",
            uri.len()
        )));
    }
    Uri::try_from(uri)
        .map(drop)
        .map_err(|_| refused("the request URL cannot be parsed"))
}

fn check_body(is_base64: bool, body: Option<&str>) -> Result<(), IssueError> {
    match body {
        Some(text) if is_base64 && STANDARD.decode(text).is_err() => Err(refused(
            "the body is marked base64-encoded (isBase64Encoded) but is not valid base64",
        )),
        _ => Ok(()),
    }
}

/// What `http::HeaderValue::from_str` accepts: tab, visible ASCII, space and bytes ≥ 0x80.
fn is_header_text(text: &str) -> bool {
    text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Whether a query byte goes into a URI as it is: the characters RFC 3986 allows in a query
/// (unreserved, sub-delims, `:@/?`), `%` (escapes, kept as sent) and UTF-8 bytes (which
/// `http::Uri` accepts). Everything else (`"`, `#`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`,
/// `}`, `[`, `]`, space, control bytes) is percent-encoded.
fn keeps(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// Percent-encode the bytes of a raw query that a URI cannot carry. Form decoding (how the
/// parameters are read) turns `%XX` back into the byte, so the client's value is preserved.
pub fn encode_query(query: &str) -> Cow<'_, str> {
    if query.bytes().all(keeps) {
        return Cow::Borrowed(query);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(query.len() + 16);
    for c in query.chars() {
        match u8::try_from(c) {
            Ok(b) if b.is_ascii() && !keeps(b) => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The parts of a raw event that panic during deserialization, read without building them:
/// header names are counted, query maps are checked for empty value lists. Every other field
/// is skipped, and a field of another type counts as absent (the typed parse judges it).
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Shape {
    headers: Keys,
    #[serde(rename = "multiValueHeaders")]
    multi_value_headers: Keys,
    #[serde(rename = "queryStringParameters")]
    query: Lists,
    #[serde(rename = "multiValueQueryStringParameters")]
    multi_value_query: Lists,
}

impl Shape {
    fn check(raw: &str) -> Result<(), IssueError> {
        let Ok(shape) = serde_json::from_str::<Shape>(raw) else {
            return Ok(()); // not an object: the typed parse refuses it
        };
        if shape.headers.0 + shape.multi_value_headers.0 > MAX_HEADERS {
            return Err(refused(format!(
                "it has {} header names, over the limit of {MAX_HEADERS}",
                shape.headers.0 + shape.multi_value_headers.0
            )));
        }
        if shape.query.empty || shape.multi_value_query.empty {
            return Err(refused("a query parameter has an empty list of values"));
        }
        Ok(())
    }
}

/// The number of keys of a JSON object (0 for any other value).
#[derive(Default)]
struct Keys(usize);

/// Whether a JSON object has a value that is an empty array.
#[derive(Default)]
struct Lists {
    empty: bool,
}

/// Visits any JSON value; objects are counted (`Keys`) or their values inspected (`Lists`).
struct Scan<T>(std::marker::PhantomData<T>);

macro_rules! skip_scalars {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method<E: serde::de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(Default::default())
        })*
    };
}

macro_rules! scan_impl {
    ($t:ty, |$map:ident| $count:block) => {
        impl<'de> serde::de::Visitor<'de> for Scan<$t> {
            type Value = $t;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut $map: A) -> Result<$t, A::Error> $count
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<$t, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Default::default())
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<$t, E> {
                Ok(Default::default())
            }
            skip_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                d.deserialize_any(Scan::<$t>(std::marker::PhantomData))
            }
        }
    };
}

scan_impl!(Keys, |map| {
    let mut n = 0;
    while map
        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
        .is_some()
    {
        n += 1;
    }
    Ok(Keys(n))
});

scan_impl!(Lists, |map| {
    let mut empty = false;
    while let Some((_, len)) = map.next_entry::<serde::de::IgnoredAny, SeqLen>()? {
        empty |= len.0 == Some(0);
    }
    Ok(Lists { empty })
});

/// The length of a JSON array (`None` for any other value).
#[derive(Default)]
struct SeqLen(Option<usize>);

impl<'de> serde::de::Visitor<'de> for Scan<SeqLen> {
    type Value = SeqLen;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SeqLen, A::Error> {
        let mut n = 0;
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(SeqLen(Some(n)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SeqLen, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(SeqLen(None))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<SeqLen, E> {
        Ok(SeqLen(None))
    }
    skip_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

impl<'de> serde::Deserialize<'de> for SeqLen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SeqLen, D::Error> {
        d.deserialize_any(Scan::<SeqLen>(std::marker::PhantomData))
    }
}

/// A stand-in of `event`'s origin: path `/`, no query, no body, the same method, and only
/// the `Origin` header (for the CORS headers of the answer).
fn stand_in_for(event: &LambdaRequest) -> LambdaRequest {
    match event {
        LambdaRequest::ApiGatewayV1(ag) => {
            // The conversion merges `headers` into `multiValueHeaders`; the Origin may be in either.
            let headers = if ag.headers.contains_key(ORIGIN) {
                &ag.headers
            } else {
                &ag.multi_value_headers
            };
            stand_in_v1(ag.http_method.clone(), headers)
        }
        LambdaRequest::ApiGatewayV2(ag) => stand_in_v2(ag.request_context.http.method.clone(), &ag.headers),
        #[allow(unreachable_patterns)]
        _ => stand_in_v2(Method::GET, &HeaderMap::new()),
    }
}

/// A stand-in for a payload that is not an event we can read: HTTP API shaped when it says
/// `"version": "2.0"` (HTTP API payload 2.0, Function URLs), REST shaped otherwise.
fn stand_in_for_unparsed(raw: &str) -> LambdaRequest {
    let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
    let mut headers = HeaderMap::new();
    let origin = value
        .get("headers")
        .and_then(|h| h.get("origin").or_else(|| h.get("Origin")))
        .and_then(|o| o.as_str())
        .and_then(|o| o.parse().ok());
    if let Some(origin) = origin {
        headers.insert(ORIGIN, origin);
    }
    if value.get("version").and_then(|v| v.as_str()) == Some("2.0") {
        let method = value
            .pointer("/requestContext/http/method")
            .and_then(|m| m.as_str())
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET);
        stand_in_v2(method, &headers)
    } else {
        let method = value
            .get("httpMethod")
            .and_then(|m| m.as_str())
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET);
        stand_in_v1(method, &headers)
    }
}

fn origin_only(headers: &HeaderMap) -> HeaderMap {
    let mut only = HeaderMap::new();
    if let Some(origin) = headers.get(ORIGIN) {
        only.insert(ORIGIN, origin.clone());
    }
    only
}

fn stand_in_v2(method: Method, headers: &HeaderMap) -> LambdaRequest {
    let mut ag = ApiGatewayV2httpRequest::default();
    ag.version = Some("2.0".to_owned());
    ag.raw_path = Some("/".to_owned());
    ag.headers = origin_only(headers);
    ag.request_context.http.method = method;
    LambdaRequest::ApiGatewayV2(ag)
}

fn stand_in_v1(method: Method, headers: &HeaderMap) -> LambdaRequest {
    let mut ag = ApiGatewayProxyRequest::default();
    ag.path = Some("/".to_owned());
    ag.http_method = method;
    ag.headers = origin_only(headers);
    LambdaRequest::ApiGatewayV1(ag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes_a_uri_cannot_carry_are_percent_encoded() {
        assert_eq!(
            encode_query(r#"capability={"public:*":["subscribe"]}"#),
            "capability=%7B%22public:*%22:%5B%22subscribe%22%5D%7D"
        );
        assert_eq!(
            encode_query("a=b c#d<e>f\\g^h`i|j\u{7f}k\u{1}"),
            "a=b%20c%23d%3Ce%3Ef%5Cg%5Eh%60i%7Cj%7Fk%01"
        );
    }

    #[test]
    fn a_valid_query_is_kept_as_is() {
        let q = "clientId=alice&ttl=3600000&capability=%7B%22a%22%3A%5B%22subscribe%22%5D%7D&x=%zz&é=ü";
        assert!(matches!(encode_query(q), Cow::Borrowed(_)));
    }

    #[test]
    fn utf8_survives_encoding() {
        assert_eq!(encode_query("n=é\"ü"), "n=é%22ü");
    }

    #[test]
    fn the_encoded_query_decodes_to_what_the_client_sent() {
        let sent = r#"capability={"chat:*":["publish","subscribe"]}&clientId=a b#c"#;
        let encoded = encode_query(sent);
        assert!(Uri::try_from(format!("/auth/jwt?{encoded}")).is_ok());
        let pairs: Vec<(String, String)> = form_urlencoded::parse(encoded.as_bytes()).into_owned().collect();
        assert_eq!(pairs[0].1, r#"{"chat:*":["publish","subscribe"]}"#);
        assert_eq!(pairs[1].1, "a b#c");
    }

    #[test]
    fn empty_query_value_lists_are_refused_before_the_typed_parse() {
        for event in [
            r#"{"httpMethod":"GET","path":"/auth/jwt","multiValueQueryStringParameters":{"a":[]},"requestContext":{"httpMethod":"GET"}}"#,
            r#"{"httpMethod":"GET","path":"/auth/jwt","queryStringParameters":{"a":[]},"requestContext":{"httpMethod":"GET"}}"#,
            r#"{"version":"2.0","rawPath":"/auth/jwt","queryStringParameters":{"b":"1","a":[]},"requestContext":{"http":{"method":"GET"}}}"#,
        ] {
            let Admitted::Refused { problem, .. } = admit(event) else {
                panic!("admitted {event}");
            };
            assert_eq!((problem.status(), problem.code()), (400, 40000));
            assert!(problem.to_string().contains("empty list"), "{problem}");
        }
    }

    #[test]
    fn too_many_header_names_are_refused_before_the_typed_parse() {
        let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!(r#""h{i}":"v""#)).collect();
        let event = format!(
            r#"{{"httpMethod":"GET","path":"/auth/jwt","requestContext":{{"httpMethod":"GET"}},"headers":{{{}}}}}"#,
            names.join(",")
        );
        let Admitted::Refused { problem, .. } = admit(&event) else {
            panic!("admitted {} header names", MAX_HEADERS + 1);
        };
        assert!(problem.to_string().contains("header names"), "{problem}");
        // Split across headers and multiValueHeaders: counted together.
        let half = MAX_HEADERS / 2 + 1;
        let single: Vec<String> = (0..half).map(|i| format!(r#""a{i}":"v""#)).collect();
        let multi: Vec<String> = (0..half).map(|i| format!(r#""b{i}":["v"]"#)).collect();
        let event = format!(
            r#"{{"httpMethod":"GET","path":"/auth/jwt","requestContext":{{"httpMethod":"GET"}},"headers":{{{}}},"multiValueHeaders":{{{}}}}}"#,
            single.join(","),
            multi.join(",")
        );
        assert!(matches!(admit(&event), Admitted::Refused { .. }));
    }

    #[test]
    fn shape_scanning_accepts_what_the_gateway_sends() {
        for event in [
            include_str!("../../events/jwt-get-valid-caller.json"),
            include_str!("../../events/authorizer-rest-lambda.json"),
            include_str!("../../events/authorizer-rest-cognito.json"),
            r#"{"version":"2.0","headers":null,"queryStringParameters":5,"multiValueHeaders":[1,{"a":[]}],"rawPath":"/","requestContext":{"http":{"method":"GET"}}}"#,
        ] {
            assert!(Shape::check(event).is_ok(), "{event}");
        }
    }

    #[test]
    fn a_missing_raw_query_string_is_read_as_empty_not_from_the_parsed_map() {
        let event = r#"{"version":"2.0","rawPath":"/auth/jwt","queryStringParameters":{"ttl":"1"},"requestContext":{"http":{"method":"GET"}}}"#;
        let Admitted::Event(LambdaRequest::ApiGatewayV2(ag)) = admit(event) else {
            panic!("not admitted as an HTTP API event");
        };
        assert_eq!(ag.raw_query_string.as_deref(), Some(""));
    }

    #[test]
    fn stage_is_prefixed_like_lambda_http() {
        assert_eq!(path_with_stage(Some("prod"), "/auth/jwt"), "/prod/auth/jwt");
        assert_eq!(path_with_stage(Some("prod"), "/prod/auth/jwt"), "/prod/auth/jwt");
        assert_eq!(path_with_stage(Some("$default"), "/auth/jwt"), "/auth/jwt");
        assert_eq!(path_with_stage(None, "/auth/jwt"), "/auth/jwt");
    }
}
