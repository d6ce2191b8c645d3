//! Identity already verified by an API Gateway authorizer (`CALLER_TRUST_AUTHORIZER=true`).
//!
//! API Gateway puts the authorizer's result into the event's request context, which the
//! client cannot write. Four shapes are read:
//!
//! | API | authorizer | event field | claims |
//! |---|---|---|---|
//! | HTTP API (v2) | JWT | `requestContext.authorizer.jwt.claims` | strings; arrays stringified as `[a b]` |
//! | HTTP API (v2) | Lambda | `requestContext.authorizer.lambda` | the authorizer's `context`, as JSON |
//! | REST API (v1) | Cognito | `requestContext.authorizer.claims` | strings |
//! | REST API (v1) | Lambda | `requestContext.authorizer` | `principalId` + the `context` fields (strings, numbers, booleans) |
//!
//! For the REST Lambda shape `sub` is set to `principalId` when the context has no `sub`,
//! so `"clientId": "{sub}"` works with every shape.
//!
//! When trusted and present, the context is the caller's identity: the chain reads neither
//! the `Authorization` header nor the cookie (see [`super`] for why it comes first). An absent
//! or empty context is no verdict; the bearer header and the cookie then decide.
//!
//! **Deployment rule**: enable this only on a function that can be reached *solely*
//! through an API Gateway route with that authorizer attached. Anyone who can invoke the
//! function another way (a route without the authorizer, a Function URL, `lambda:Invoke`)
//! can write any identity into the event.

use super::{BoxFuture, CallerVerifier, Claims, Source, Verdict};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::{Map, Value};

/// Fields API Gateway adds to a REST Lambda authorizer's context that are not identity.
const GATEWAY_FIELDS: [&str; 1] = ["integrationLatency"];

#[derive(Debug, Default, Clone, Copy)]
pub struct AuthorizerVerifier;

impl AuthorizerVerifier {
    pub fn new() -> Self {
        Self
    }
}

/// The claims an API Gateway authorizer left in the request, if any.
pub fn authorizer_claims(request: &Request) -> Option<Claims> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => {
            let authorizer = context.authorizer.as_ref()?;
            if let Some(jwt) = authorizer.jwt.as_ref().filter(|j| !j.claims.is_empty()) {
                let mut map: Map<String, Value> = jwt
                    .claims
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                if let Some(scopes) = jwt.scopes.as_ref().filter(|s| !s.is_empty()) {
                    map.entry("scope").or_insert_with(|| Value::String(scopes.join(" ")));
                }
                return Some(Claims::new(map));
            }
            if !authorizer.fields.is_empty() {
                return Some(Claims::new(
                    authorizer.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                ));
            }
            None
        }
        RequestContext::ApiGatewayV1(context) => {
            let fields = &context.authorizer.fields;
            if let Some(Value::Object(claims)) = fields.get("claims") {
                return (!claims.is_empty()).then(|| Claims::new(claims.clone()));
            }
            let mut map: Map<String, Value> = fields
                .iter()
                .filter(|(k, _)| !GATEWAY_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if map.is_empty() {
                return None;
            }
            if let Some(Value::String(principal)) = map.get("principalId").cloned() {
                map.entry("sub").or_insert(Value::String(principal));
            }
            Some(Claims::new(map))
        }
        _ => None,
    }
}

impl CallerVerifier for AuthorizerVerifier {
    fn name(&self) -> &'static str {
        "authorizer"
    }

    fn source(&self) -> Source {
        Source::Authorizer
    }

    fn verify<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Verdict> {
        let verdict = match authorizer_claims(request) {
            Some(claims) => Verdict::Verified(claims),
            None => Verdict::Absent,
        };
        Box::pin(std::future::ready(verdict))
    }
}
