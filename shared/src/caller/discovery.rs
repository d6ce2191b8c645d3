//! OpenID Connect discovery: the issuer's `jwks_uri` from
//! `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0, §4).

use super::fetch::{check_secure_url, FetchError, HttpGet};
use serde::Deserialize;

/// The discovery document's URL for an issuer.
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

#[derive(Deserialize)]
struct Configuration {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// Fetch the issuer's discovery document and answer its `jwks_uri`.
///
/// The document must name the same issuer (a trailing `/` aside) and a `jwks_uri` on
/// https (or loopback http, for local tests).
pub async fn jwks_uri(http: &dyn HttpGet, issuer: &str) -> Result<String, FetchError> {
    let url = discovery_url(issuer);
    let document = http.get(&url).await?;
    let malformed = |reason: String| FetchError::Malformed {
        url: url.clone(),
        reason,
    };
    let config: Configuration =
        serde_json::from_slice(&document.body).map_err(|e| malformed(format!("not an OpenID configuration ({e})")))?;
    let Some(found) = config.issuer else {
        return Err(malformed("it has no `issuer`".into()));
    };
    if found.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(malformed(format!(
            "it names the issuer {found:?}, not CALLER_ISSUER {issuer:?}; set CALLER_ISSUER to exactly the issuer your tokens carry in `iss`"
        )));
    }
    let Some(jwks_uri) = config.jwks_uri else {
        return Err(malformed("it has no `jwks_uri`; set CALLER_JWKS_URL explicitly".into()));
    };
    check_secure_url(&jwks_uri).map_err(|reason| FetchError::Insecure {
        url: jwks_uri.clone(),
        reason,
    })?;
    Ok(jwks_uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::fetch::Document;
    use crate::future::BoxFuture;

    struct Fixed(&'static str);

    impl HttpGet for Fixed {
        fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Document, FetchError>> {
            assert_eq!(url, "https://idp.example/tenant/.well-known/openid-configuration");
            Box::pin(std::future::ready(Ok(Document {
                body: self.0.as_bytes().to_vec(),
                max_age: None,
            })))
        }
    }

    fn run(body: &'static str) -> Result<String, FetchError> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(jwks_uri(&Fixed(body), "https://idp.example/tenant/"))
    }

    #[test]
    fn finds_jwks_uri_of_the_same_issuer() {
        let uri = run(r#"{"issuer":"https://idp.example/tenant","jwks_uri":"https://idp.example/keys"}"#).unwrap();
        assert_eq!(uri, "https://idp.example/keys");
    }

    #[test]
    fn refuses_another_issuer_missing_uri_and_plain_http() {
        let e = run(r#"{"issuer":"https://evil.example","jwks_uri":"https://evil.example/keys"}"#).unwrap_err();
        assert!(e.to_string().contains("not CALLER_ISSUER"), "{e}");
        let e = run(r#"{"issuer":"https://idp.example/tenant"}"#).unwrap_err();
        assert!(e.to_string().contains("no `jwks_uri`"), "{e}");
        let e = run(r#"{"issuer":"https://idp.example/tenant","jwks_uri":"http://idp.example/keys"}"#).unwrap_err();
        assert!(matches!(e, FetchError::Insecure { .. }), "{e}");
        let e = run("<html>").unwrap_err();
        assert!(matches!(e, FetchError::Malformed { .. }), "{e}");
    }
}
