//! The operator's issuance policy: who gets which clientId, capability, channel claims,
//! rate limits and TTL. Parsed and validated once, at start-up; evaluated per request by
//! [`Policy::grant`] as a pure function of the verified caller.
//!
//! ```json
//! {
//!   "clientId": "{sub}",
//!   "ttlSeconds": 3600,
//!   "capability": {"chat:*": ["subscribe"], "chat:{sub}": ["publish", "subscribe", "presence"]},
//!   "channelClaims": {"chat:*": "{\"name\":\"{name}\"}"},
//!   "rateLimits": {"chat:*": 5},
//!   "revocationKey": "{org}",
//!   "roles": {"claim": "roles", "grants": {"moderator": {"capability": {"chat:*": ["*"]}, "ttlSeconds": 900}}},
//!   "anonymous": {"capability": {"public:*": ["subscribe"]}, "ttlSeconds": 600}
//! }
//! ```
//!
//! `{claim}` substitutes a verified claim. Substitution never widens rights: a value that
//! is empty or holds `*`, `:`, `[`, `]`, `,` or a control character drops the capability,
//! channel-claim or rate-limit entry built from it, and refuses issuance (403) when the
//! clientId would be built from it. In `channelClaims` values the substituted text is
//! JSON-string-escaped, so a claim holding JSON cannot add fields.

use crate::caller::{Caller, Claims};
use crate::capability::{validate_resource, Capability, Ops};
use crate::error::IssueError;
use crate::grant::Grant;
use serde::Deserialize;
use std::collections::BTreeMap;

pub use crate::limits::{
    DEFAULT_TTL_SECONDS, MAX_CLIENT_ID_BYTES, MAX_REVOCABLE_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS,
};

pub use crate::env::PolicyError;

mod lint;
pub use lint::Warning;

fn err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Templates

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Claim(String),
}

/// Text with `{claim}` placeholders. A placeholder is `{` + a claim name of letters, digits
/// and `_ . : - /` + `}`; any other brace is literal (so JSON text stays as written).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    /// The text as written in the policy (for diagnostics: `ably-auth policy explain`).
    source: String,
}

/// Why a template could not be rendered for a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    Missing(String),
    Unsafe(String),
}

fn is_claim_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/')
}

/// A substituted value that may not appear in a resource name or clientId.
pub fn is_unsafe_identifier(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| matches!(c, '*' | ':' | '[' | ']' | ',') || c.is_control())
}

impl Template {
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let name_len = after.find(|c: char| !is_claim_name_char(c)).unwrap_or(after.len());
            if name_len > 0 && after[name_len..].starts_with('}') {
                literal.push_str(&rest[..open]);
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Claim(after[..name_len].to_owned()));
                rest = &after[name_len + 1..];
            } else {
                literal.push_str(&rest[..=open]);
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Template {
            parts,
            source: text.to_owned(),
        }
    }

    /// The template as written in the policy.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Claim(_)))
    }

    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim(c) => Some(c.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The template with every placeholder replaced by `sample` (for start-up validation).
    pub(crate) fn sample(&self, sample: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_str(),
                Part::Claim(_) => sample,
            })
            .collect()
    }

    /// The template with each placeholder replaced by `sample(claim name)`.
    pub(crate) fn sample_with(&self, sample: impl Fn(&str) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.clone(),
                Part::Claim(c) => sample(c),
            })
            .collect()
    }

    /// Render for a resource name or clientId: every substituted value must be safe.
    pub fn render_identifier(&self, claims: Option<&Claims>) -> Result<String, RenderError> {
        self.render(claims, |out, name, value| {
            if is_unsafe_identifier(value) {
                return Err(RenderError::Unsafe(name.to_owned()));
            }
            out.push_str(value);
            Ok(())
        })
    }

    /// Render as plain text: substituted values as they are (the caller escapes the result
    /// where it goes; e.g. the JWT writer JSON-escapes the revocation key once).
    pub fn render_text(&self, claims: Option<&Claims>) -> Result<String, RenderError> {
        self.render(claims, |out, _, value| {
            out.push_str(value);
            Ok(())
        })
    }

    /// Render inside JSON text: substituted values are JSON-string-escaped.
    pub fn render_json_escaped(&self, claims: Option<&Claims>) -> Result<String, RenderError> {
        self.render(claims, |out, _, value| {
            crate::json::push_escaped(out, value);
            Ok(())
        })
    }

    /// Literals as they are; each claim's text (missing: an error) through `push(out, claim
    /// name, value)`, which decides how it is written or refuses it.
    fn render(
        &self,
        claims: Option<&Claims>,
        push: impl Fn(&mut String, &str, &str) -> Result<(), RenderError>,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Claim(name) => {
                    let value = claims
                        .and_then(|c| c.text(name))
                        .ok_or_else(|| RenderError::Missing(name.clone()))?;
                    push(&mut out, name, &value)?;
                }
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// The document

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyDoc {
    /// The JSON Schema the document names for editors (`schema/policy.schema.json`); ignored.
    #[serde(rename = "$schema")]
    #[allow(dead_code)]
    schema: Option<String>,
    client_id: Option<String>,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    capability: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    channel_claims: BTreeMap<String, String>,
    #[serde(default)]
    room_claims: BTreeMap<String, String>,
    #[serde(default)]
    rate_limits: BTreeMap<String, f64>,
    revocation_key: Option<String>,
    bound_to_session: Option<bool>,
    ttl_jitter_percent: Option<u64>,
    roles: Option<RolesDoc>,
    anonymous: Option<GrantDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RolesDoc {
    claim: String,
    grants: BTreeMap<String, GrantDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrantDoc {
    #[serde(default)]
    capability: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    channel_claims: BTreeMap<String, String>,
    #[serde(default)]
    room_claims: BTreeMap<String, String>,
    #[serde(default)]
    rate_limits: BTreeMap<String, f64>,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    may_revoke: bool,
}

/// Resource template → operations, or → a channel- or room-claim value, or → a rate.
#[derive(Debug, Clone, Default)]
struct Rules {
    /// Where these rules are in the document (`""`, `roles.grants["m"].`, `anonymous.`).
    path: String,
    capability: Vec<(Template, Ops)>,
    channel_claims: Vec<(Template, Template)>,
    room_claims: Vec<(Template, Template)>,
    rate_limits: Vec<(Template, f64)>,
}

/// A policy entry left out of one caller's grant because a claim it substitutes is
/// missing or unsafe (what `ably-auth policy explain` lists as `dropped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The field path of the section: `capability`, `roles.grants["moderator"].roomClaims`,
    /// `revocationKey`.
    pub field: String,
    /// The entry as written in the policy, e.g. `org:{org}:*`.
    pub entry: String,
    pub reason: String,
}

impl Dropped {
    fn new(field: String, entry: &Template, e: &RenderError) -> Dropped {
        let reason = match e {
            RenderError::Missing(c) => format!("the caller has no `{c}` claim (or it is an object, a list or null)"),
            RenderError::Unsafe(c) => format!(
                "the caller's `{c}` claim is empty or holds * : [ ] , or a control character, which could widen the resource"
            ),
        };
        Dropped {
            field,
            entry: entry.source().to_owned(),
            reason,
        }
    }
}

/// Most jitter a policy may ask for (`ttlJitterPercent`).
pub const MAX_TTL_JITTER_PERCENT: u64 = 20;

#[derive(Debug, Clone)]
struct RoleGrant {
    rules: Rules,
    ttl_seconds: Option<u64>,
    may_revoke: bool,
}

/// A validated issuance policy.
#[derive(Debug, Clone)]
pub struct Policy {
    client_id: Option<Template>,
    ttl_seconds: u64,
    bound_to_session: bool,
    ttl_jitter_percent: u64,
    revocable: bool,
    rules: Rules,
    revocation_key: Option<Template>,
    role_claim: Option<String>,
    roles: BTreeMap<String, RoleGrant>,
    anonymous: Option<Grant>,
    /// The anonymous grant's rules as written (for `ably-auth policy check`).
    anonymous_rules: Option<Rules>,
}

fn parse_rules(
    path: &str,
    capability: BTreeMap<String, serde_json::Value>,
    channel_claims: BTreeMap<String, String>,
    room_claims: BTreeMap<String, String>,
    rate_limits: BTreeMap<String, f64>,
    allow_templates: bool,
) -> Result<Rules, PolicyError> {
    let mut rules = Rules {
        path: path.to_owned(),
        ..Rules::default()
    };
    let check_resource = |section: &str, resource: &str| -> Result<Template, PolicyError> {
        let field = format!("{path}{section}[{resource:?}]");
        let t = Template::parse(resource);
        if t.has_placeholders() && !allow_templates {
            return Err(err(
                field,
                "placeholders like {claim} cannot be used here: an anonymous caller has no claims",
            ));
        }
        validate_resource(&t.sample("x")).map_err(|e| err(field, e.to_string()))?;
        Ok(t)
    };
    for (resource, ops) in capability {
        let t = check_resource("capability", &resource)?;
        let field = format!("{path}capability[{resource:?}]");
        let list = ops
            .as_array()
            .ok_or_else(|| err(&field, "expected a list of operations, e.g. [\"subscribe\"]"))?;
        let names = list
            .iter()
            .map(|v| v.as_str().ok_or_else(|| err(&field, "operations must be strings")))
            .collect::<Result<Vec<&str>, _>>()?;
        let ops = Ops::parse(&names).map_err(|e| err(&field, e.to_string()))?;
        rules.capability.push((t, ops));
    }
    for (section, entries) in [("channelClaims", channel_claims), ("roomClaims", room_claims)] {
        for (resource, value) in entries {
            let t = check_resource(section, &resource)?;
            let v = Template::parse(&value);
            if v.has_placeholders() && !allow_templates {
                return Err(err(
                    format!("{path}{section}[{resource:?}]"),
                    "placeholders like {claim} cannot be used here: an anonymous caller has no claims",
                ));
            }
            match section {
                "channelClaims" => rules.channel_claims.push((t, v)),
                _ => rules.room_claims.push((t, v)),
            }
        }
    }
    for (resource, rate) in rate_limits {
        let t = check_resource("rateLimits", &resource)?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(err(
                format!("{path}rateLimits[{resource:?}]"),
                "expected a positive number of messages per second (fractions allowed: 0.1 = one per 10 s)",
            ));
        }
        rules.rate_limits.push((t, rate));
    }
    Ok(rules)
}

fn check_ttl(field: &str, ttl: u64, max: u64) -> Result<u64, PolicyError> {
    if ttl < MIN_TTL_SECONDS {
        return Err(err(
            field,
            format!("{ttl} s is too short: Ably renews tokens ~30 s before expiry; use at least {MIN_TTL_SECONDS}"),
        ));
    }
    if ttl > max {
        return Err(err(
            field,
            if max == MAX_REVOCABLE_TTL_SECONDS {
                format!("{ttl} s exceeds {max} s, the maximum for keys with revocable tokens (ABLY_KEY_REVOCABLE=true)")
            } else {
                format!("{ttl} s exceeds Ably's 24 h maximum ({max} s)")
            },
        ));
    }
    Ok(ttl)
}

impl Policy {
    /// Parse and validate. `revocable`: the key has revocable tokens (TTL ≤ 1 h).
    pub fn from_json(text: &str, revocable: bool) -> Result<Policy, PolicyError> {
        let doc: PolicyDoc = serde_json::from_str(text).map_err(|e| {
            err(
                format!("line {} column {}", e.line(), e.column()),
                format!("{e}; the fields are clientId, ttlSeconds, capability, channelClaims, roomClaims, rateLimits, revocationKey, boundToSession, ttlJitterPercent, roles, anonymous"),
            )
        })?;
        let max_ttl = if revocable {
            MAX_REVOCABLE_TTL_SECONDS
        } else {
            MAX_TTL_SECONDS
        };

        let client_id = match doc.client_id {
            None => None,
            Some(c) => {
                let t = Template::parse(&c);
                let sample = t.sample("x");
                if sample.is_empty() || sample.contains('*') || sample.chars().any(char::is_control) {
                    return Err(err("clientId", "must be a non-empty identity without `*` (the wildcard would let every caller act as anyone); e.g. \"{sub}\""));
                }
                Some(t)
            }
        };
        let ttl_seconds = check_ttl(
            "ttlSeconds",
            doc.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS.min(max_ttl)),
            max_ttl,
        )?;
        let ttl_jitter_percent = doc.ttl_jitter_percent.unwrap_or(0);
        if ttl_jitter_percent > MAX_TTL_JITTER_PERCENT {
            return Err(err(
                "ttlJitterPercent",
                format!("{ttl_jitter_percent} is too much: use 0 to {MAX_TTL_JITTER_PERCENT} (percent of the TTL taken off at random, so that clients that connected together renew at different times)"),
            ));
        }
        let rules = parse_rules(
            "",
            doc.capability,
            doc.channel_claims,
            doc.room_claims,
            doc.rate_limits,
            true,
        )?;
        let revocation_key = doc.revocation_key.map(|r| Template::parse(&r));
        if let Some(r) = &revocation_key {
            if r.sample("x").is_empty() {
                return Err(err("revocationKey", "must be non-empty, e.g. \"{org}\""));
            }
        }

        let mut roles = BTreeMap::new();
        let mut role_claim = None;
        if let Some(doc_roles) = doc.roles {
            if doc_roles.claim.is_empty() {
                return Err(err(
                    "roles.claim",
                    "name the claim that holds the caller's roles, e.g. \"roles\" or \"cognito:groups\"",
                ));
            }
            for (name, g) in doc_roles.grants {
                let path = format!("roles.grants[{name:?}].");
                let ttl = g
                    .ttl_seconds
                    .map(|t| check_ttl(&format!("{path}ttlSeconds"), t, max_ttl))
                    .transpose()?;
                let rules = parse_rules(
                    &path,
                    g.capability,
                    g.channel_claims,
                    g.room_claims,
                    g.rate_limits,
                    true,
                )?;
                roles.insert(
                    name,
                    RoleGrant {
                        rules,
                        ttl_seconds: ttl,
                        may_revoke: g.may_revoke,
                    },
                );
            }
            role_claim = Some(doc_roles.claim);
        }

        let (anonymous, anonymous_rules) = match doc.anonymous {
            None => (None, None),
            Some(g) => {
                if g.may_revoke {
                    return Err(err("anonymous.mayRevoke", "anonymous callers can never revoke tokens"));
                }
                let ttl = check_ttl("anonymous.ttlSeconds", g.ttl_seconds.unwrap_or(ttl_seconds), max_ttl)?;
                let rules = parse_rules(
                    "anonymous.",
                    g.capability,
                    g.channel_claims,
                    g.room_claims,
                    g.rate_limits,
                    false,
                )?;
                let grant = evaluate_rules(&rules, None, ttl, &mut Vec::new());
                if grant.capability.is_empty() {
                    return Err(err("anonymous.capability", "an anonymous grant needs at least one capability entry; remove `anonymous` to refuse callers without credentials"));
                }
                (Some(grant), Some(rules))
            }
        };

        if rules.capability.is_empty() && roles.values().all(|r| r.rules.capability.is_empty()) && anonymous.is_none() {
            return Err(err("capability", "the policy grants nothing to anyone; add at least one capability entry, e.g. {\"chat:*\": [\"subscribe\"]}"));
        }

        Ok(Policy {
            client_id,
            ttl_seconds,
            bound_to_session: doc.bound_to_session.unwrap_or(true),
            ttl_jitter_percent,
            revocable,
            rules,
            revocation_key,
            role_claim,
            roles,
            anonymous,
            anonymous_rules,
        })
    }

    /// Where the policy can grant what only Ably JWTs carry: `channelClaims`, `roomClaims`,
    /// `rateLimits` and `revocationKey` entries, as field paths (`channelClaims`,
    /// `roles.grants["moderator"].rateLimits`, `anonymous.channelClaims`, `revocationKey`),
    /// in document order. Empty: the policy suits every route.
    pub fn jwt_only_fields(&self) -> Vec<String> {
        fn push(fields: &mut Vec<String>, path: &str, rules_of: (bool, bool, bool)) {
            let (channel_claims, room_claims, rate_limits) = rules_of;
            if channel_claims {
                fields.push(format!("{path}channelClaims"));
            }
            if room_claims {
                fields.push(format!("{path}roomClaims"));
            }
            if rate_limits {
                fields.push(format!("{path}rateLimits"));
            }
        }
        let of = |r: &Rules| {
            (
                !r.channel_claims.is_empty(),
                !r.room_claims.is_empty(),
                !r.rate_limits.is_empty(),
            )
        };
        let mut fields = Vec::new();
        push(&mut fields, "", of(&self.rules));
        if self.revocation_key.is_some() {
            fields.push("revocationKey".to_owned());
        }
        for (name, role) in &self.roles {
            push(&mut fields, &format!("roles.grants[{name:?}]."), of(&role.rules));
        }
        if let Some(g) = &self.anonymous {
            let anonymous = (
                !g.channel_claims.is_empty(),
                !g.room_claims.is_empty(),
                !g.rate_limits.is_empty(),
            );
            push(&mut fields, "anonymous.", anonymous);
        }
        fields
    }

    /// Start-up validation for the routes that answer with a TokenRequest or an Ably Token
    /// (`/auth/token-request`, `/auth/token`): neither can carry channel claims, rate limits
    /// or a revocation key, and dropping them would widen the client's rights (a rate limit)
    /// or let `revocationKey:` revocations miss the token. The error names the first such
    /// field and lists the others.
    pub fn check_token_route(&self) -> Result<(), PolicyError> {
        let fields = self.jwt_only_fields();
        let Some(first) = fields.first() else {
            return Ok(());
        };
        let also = match &fields[1..] {
            [] => String::new(),
            rest => format!(" (also at: {})", rest.join(", ")),
        };
        Err(err(
            first.clone(),
            format!(
                "channelClaims, roomClaims, rateLimits and revocationKey can only be issued in Ably JWTs, and this function answers with TokenRequests or Ably Tokens (/auth/token-request, /auth/token), which cannot carry them{also}; issue such grants from /auth/jwt, or give this function a policy without these fields (the template's TokenRoutesPolicy parameter; TOKEN_ROUTES_POLICY or TOKEN_ROUTES_POLICY_FILE in a shared environment)"
            ),
        ))
    }

    pub fn allows_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// The policy's TTL (`ttlSeconds`, or the default).
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// `boundToSession` (default true): no token outlives the caller credential's `exp`.
    pub fn bound_to_session(&self) -> bool {
        self.bound_to_session
    }

    /// `ttlJitterPercent` (0 when absent): at most this share of the TTL is taken off at random.
    pub fn ttl_jitter_percent(&self) -> u64 {
        self.ttl_jitter_percent
    }

    /// Whether the policy was validated for a key with revocable tokens (TTL ≤ 1 h).
    pub fn revocable(&self) -> bool {
        self.revocable
    }

    /// What this caller may have, before the client's hints narrow it.
    pub fn grant(&self, caller: &Caller) -> Result<Grant, IssueError> {
        self.grant_traced(caller, &mut Vec::new())
    }

    /// [`Self::grant`], listing in `dropped` the entries left out because a claim they
    /// substitute is missing or unsafe.
    pub fn grant_traced(&self, caller: &Caller, dropped: &mut Vec<Dropped>) -> Result<Grant, IssueError> {
        let claims = match caller {
            Caller::Anonymous => return self.anonymous.clone().ok_or(IssueError::MissingCredential),
            Caller::Verified { claims, .. } => claims,
        };

        let client_id = match &self.client_id {
            None => None,
            Some(t) => {
                let c = t.render_identifier(Some(claims)).map_err(|e| {
                    IssueError::forbidden(match e {
                        RenderError::Missing(c) => format!("your identity has no `{c}` claim, which the policy needs to build your clientId; ask the operator to check the policy's clientId"),
                        RenderError::Unsafe(c) => format!("your `{c}` claim is empty or holds characters (* : [ ] , or control characters) that cannot be used in a clientId"),
                    })
                })?;
                // The SDK sends the clientId back as a hint on renewal, where a longer one is
                // refused: never issue one that could not be renewed.
                if c.len() > MAX_CLIENT_ID_BYTES {
                    return Err(IssueError::forbidden(format!(
                        "the clientId built from your identity is {} bytes, over the {MAX_CLIENT_ID_BYTES}-byte limit; ask the operator to build the clientId from a shorter claim",
                        c.len()
                    )));
                }
                Some(c)
            }
        };

        let mut grant = evaluate_rules(&self.rules, Some(claims), self.ttl_seconds, dropped);
        grant.client_id = client_id;
        grant.revocation_key = self.revocation_key.as_ref().and_then(|t| {
            // Plain text: the JWT writer escapes it (escaping here too would put backslashes
            // into the key, and revoking by the claim's value would then miss these tokens).
            let rendered = t.render_text(Some(claims)).and_then(|v| {
                if v.is_empty() || v.chars().any(char::is_control) {
                    let name = t.claim_names().next().unwrap_or("").to_owned();
                    Err(RenderError::Unsafe(name))
                } else {
                    Ok(v)
                }
            });
            match rendered {
                Ok(v) => Some(v),
                Err(e) => {
                    let mut d = Dropped::new("revocationKey".to_owned(), t, &e);
                    if matches!(e, RenderError::Unsafe(_)) {
                        d.reason = "the revocation key would be empty or hold a control character".to_owned();
                    }
                    dropped.push(d);
                    None
                }
            }
        });

        if let Some(role_claim) = &self.role_claim {
            let mut held = claims.list(role_claim);
            held.sort();
            held.dedup();
            for role in held {
                let Some(role_grant) = self.roles.get(&role) else {
                    continue;
                };
                let extra = evaluate_rules(&role_grant.rules, Some(claims), self.ttl_seconds, dropped);
                grant.capability.union_with(&extra.capability);
                override_entries(&mut grant.channel_claims, extra.channel_claims);
                override_entries(&mut grant.room_claims, extra.room_claims);
                override_entries(&mut grant.rate_limits, extra.rate_limits);
                if let Some(ttl) = role_grant.ttl_seconds {
                    grant.ttl_ms = grant.ttl_ms.min(ttl * 1000);
                }
                grant.may_revoke |= role_grant.may_revoke;
            }
        }

        if grant.capability.is_empty() && !grant.may_revoke {
            return Err(IssueError::forbidden(
                "the policy grants your identity no capability; ask the operator for access",
            ));
        }
        Ok(grant)
    }
}

fn override_entries<V>(base: &mut Vec<(String, V)>, overrides: Vec<(String, V)>) {
    for (resource, value) in overrides {
        match base.binary_search_by(|(r, _)| r.as_str().cmp(&resource)) {
            Ok(i) => base[i].1 = value,
            Err(i) => base.insert(i, (resource, value)),
        }
    }
}

/// Claim values (channel or room) for one caller: entries whose substitution is missing or
/// unsafe are dropped (and listed in `dropped`).
fn evaluate_claims(
    field: &str,
    entries: &[(Template, Template)],
    claims: Option<&Claims>,
    dropped: &mut Vec<Dropped>,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(entries.len());
    for (resource, value) in entries {
        match resource
            .render_identifier(claims)
            .and_then(|r| value.render_json_escaped(claims).map(|v| (r, v)))
        {
            Ok(pair) => out.push(pair),
            Err(e) => dropped.push(Dropped::new(field.to_owned(), resource, &e)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Render rules for one caller; entries whose substitution is missing or unsafe are dropped
/// (and listed in `dropped`).
fn evaluate_rules(rules: &Rules, claims: Option<&Claims>, ttl_seconds: u64, dropped: &mut Vec<Dropped>) -> Grant {
    let path = &rules.path;
    let mut capability = Capability::default();
    for (resource, ops) in &rules.capability {
        match resource.render_identifier(claims) {
            // The rendered name was validated with a sample at start-up and the substituted
            // text is safe, so this cannot fail; if it did, dropping the entry is safe.
            Ok(r) => {
                let _ = capability.insert(&r, *ops);
            }
            Err(e) => dropped.push(Dropped::new(format!("{path}capability"), resource, &e)),
        }
    }
    let channel_claims = evaluate_claims(&format!("{path}channelClaims"), &rules.channel_claims, claims, dropped);
    let room_claims = evaluate_claims(&format!("{path}roomClaims"), &rules.room_claims, claims, dropped);
    let mut rate_limits = Vec::with_capacity(rules.rate_limits.len());
    for (resource, rate) in &rules.rate_limits {
        match resource.render_identifier(claims) {
            Ok(r) => rate_limits.push((r, *rate)),
            Err(e) => dropped.push(Dropped::new(format!("{path}rateLimits"), resource, &e)),
        }
    }
    rate_limits.sort_by(|a, b| a.0.cmp(&b.0));
    rate_limits.dedup_by(|a, b| a.0 == b.0);
    Grant {
        client_id: None,
        capability,
        channel_claims,
        room_claims,
        rate_limits,
        ttl_ms: ttl_seconds * 1000,
        revocation_key: None,
        may_revoke: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EXAMPLE: &str = include_str!("../../dev/policy.json");

    fn verified(v: serde_json::Value) -> Caller {
        Caller::Verified {
            claims: serde_json::from_value(v).unwrap(),
            via: "test",
        }
    }

    fn policy(v: serde_json::Value) -> Policy {
        Policy::from_json(&v.to_string(), false).unwrap()
    }

    fn policy_err(v: serde_json::Value) -> PolicyError {
        Policy::from_json(&v.to_string(), false).unwrap_err()
    }

    #[test]
    fn template_placeholders_and_literal_braces() {
        let t = Template::parse(r#"{"name":"{name}","org":"{app_metadata.org}"} {} {x y}"#);
        assert_eq!(t.claim_names().collect::<Vec<_>>(), vec!["name", "app_metadata.org"]);
        assert_eq!(t.sample("S"), r#"{"name":"S","org":"S"} {} {x y}"#);
        assert!(!Template::parse(r#"{"a":1}"#).has_placeholders());
        assert_eq!(
            Template::parse("chat:{cognito:username}")
                .claim_names()
                .collect::<Vec<_>>(),
            vec!["cognito:username"]
        );
    }

    #[test]
    fn example_policy_grants_a_plain_user_the_base_rights() {
        let p = Policy::from_json(EXAMPLE, false).unwrap();
        let g = p
            .grant(&verified(json!({"sub":"alice","name":"Alice","org":"acme"})))
            .unwrap();
        assert_eq!(g.client_id.as_deref(), Some("alice"));
        assert_eq!(
            g.capability.to_canonical_string(),
            r#"{"chat:*":["history","subscribe"],"chat:alice":["presence","publish","subscribe"]}"#
        );
        assert_eq!(
            g.channel_claims,
            vec![("chat:*".to_owned(), r#"{"name":"Alice"}"#.to_owned())]
        );
        assert_eq!(g.rate_limits, vec![("chat:*".to_owned(), 5.0)]);
        assert_eq!(g.revocation_key.as_deref(), Some("acme"));
        assert_eq!(g.ttl_ms, 3_600_000);
        assert!(!g.may_revoke);
    }

    #[test]
    fn revocation_key_is_the_claims_text_unescaped_and_control_characters_drop_it() {
        let p = Policy::from_json(EXAMPLE, false).unwrap();
        let key = |org: serde_json::Value| {
            p.grant(&verified(json!({"sub":"alice","org":org})))
                .unwrap()
                .revocation_key
        };
        assert_eq!(key(json!(r#"a"b\c"#)).as_deref(), Some(r#"a"b\c"#));
        assert_eq!(key(json!("org:7")).as_deref(), Some("org:7"));
        assert_eq!(key(json!("a\nb")), None);
        assert_eq!(key(json!("")), None);
    }

    #[test]
    fn role_grants_union_capabilities_override_claims_and_shorten_ttl() {
        let p = Policy::from_json(EXAMPLE, false).unwrap();
        let g = p
            .grant(&verified(
                json!({"sub":"mo","name":"Mo","roles":["moderator","unknown"]}),
            ))
            .unwrap();
        assert_eq!(
            g.capability.get("chat:*").unwrap().names().collect::<Vec<_>>(),
            vec!["history", "message-delete-any", "presence", "publish", "subscribe"]
        );
        assert!(g.capability.get("chat:mo").is_some());
        assert_eq!(g.channel_claims, vec![("chat:*".to_owned(), "moderator".to_owned())]);
        assert_eq!(g.ttl_ms, 900_000);
        assert_eq!(g.revocation_key, None, "no org claim: no revocation key");
    }

    #[test]
    fn role_claim_as_a_single_string_and_may_revoke() {
        let p = Policy::from_json(EXAMPLE, false).unwrap();
        let g = p.grant(&verified(json!({"sub":"root","roles":"admin"}))).unwrap();
        assert!(g.may_revoke);
        assert_eq!(g.ttl_ms, 3_600_000);
    }

    #[test]
    fn anonymous_caller_gets_exactly_the_anonymous_grant() {
        let p = Policy::from_json(EXAMPLE, false).unwrap();
        let g = p.grant(&Caller::Anonymous).unwrap();
        assert_eq!(g.client_id, None);
        assert_eq!(g.capability.to_canonical_string(), r#"{"public:*":["subscribe"]}"#);
        assert!(g.channel_claims.is_empty() && g.rate_limits.is_empty());
        assert_eq!(g.ttl_ms, 600_000);
    }

    #[test]
    fn anonymous_without_a_grant_gets_401() {
        let p = policy(json!({"clientId":"{sub}","capability":{"a":["subscribe"]}}));
        assert_eq!(p.grant(&Caller::Anonymous), Err(IssueError::MissingCredential));
    }

    #[test]
    fn unsafe_substitution_drops_the_capability_entry() {
        let p = policy(json!({"capability":{"chat:{sub}":["publish"],"lobby":["subscribe"]}}));
        for sub in ["", "*", "a:b", "[meta]x", "a]", "a,b", "a\nb", "a\u{0}b"] {
            let g = p.grant(&verified(json!({ "sub": sub }))).unwrap();
            assert_eq!(
                g.capability.to_canonical_string(),
                r#"{"lobby":["subscribe"]}"#,
                "sub={sub:?}"
            );
        }
        let g = p.grant(&verified(json!({"sub":"bob"}))).unwrap();
        assert!(g.capability.get("chat:bob").is_some());
    }

    #[test]
    fn unsafe_or_missing_client_id_claim_is_refused_with_403() {
        let p = policy(json!({"clientId":"{sub}","capability":{"lobby":["subscribe"]}}));
        for claims in [
            json!({"sub":"*"}),
            json!({"sub":""}),
            json!({"sub":"a:b"}),
            json!({"sub":"x,y"}),
            json!({}),
        ] {
            let e = p.grant(&verified(claims.clone())).unwrap_err();
            assert_eq!((e.status(), e.code()), (403, 40300), "{claims}");
        }
        let e = p.grant(&verified(json!({"sub":"*"}))).unwrap_err();
        assert!(e.to_string().contains("`sub`"), "{e}");
    }

    #[test]
    fn channel_claim_values_are_json_escaped() {
        let p =
            policy(json!({"capability":{"chat:*":["subscribe"]},"channelClaims":{"chat:*":"{\"name\":\"{name}\"}"}}));
        let g = p.grant(&verified(json!({"name":"x\",\"role\":\"admin"}))).unwrap();
        let value: serde_json::Value = serde_json::from_str(&g.channel_claims[0].1).unwrap();
        assert_eq!(value, json!({"name":"x\",\"role\":\"admin"}));
        assert!(value.get("role").is_none());
    }

    #[test]
    fn numeric_and_nested_claims_substitute() {
        let p = policy(json!({"clientId":"user-{id}","capability":{"org:{app_metadata.org}":["subscribe"]}}));
        let g = p
            .grant(&verified(json!({"id":42,"app_metadata":{"org":"acme"}})))
            .unwrap();
        assert_eq!(g.client_id.as_deref(), Some("user-42"));
        assert!(g.capability.get("org:acme").is_some());
    }

    #[test]
    fn verified_caller_without_any_capability_gets_403() {
        let p = policy(json!({"capability":{"chat:{team}":["subscribe"]}}));
        let e = p.grant(&verified(json!({"sub":"a"}))).unwrap_err();
        assert_eq!((e.status(), e.code()), (403, 40300));
    }

    #[test]
    fn invalid_policies_name_the_field() {
        let cases = [
            (json!({"capability":{"a":["publsh"]}}), "capability[\"a\"]"),
            (json!({"capability":{"a":[]}}), "capability[\"a\"]"),
            (json!({"capability":{"a":"subscribe"}}), "capability[\"a\"]"),
            (json!({"capability":{":bad":["subscribe"]}}), "capability[\":bad\"]"),
            (json!({"capability":{"a":["*","publish"]}}), "capability[\"a\"]"),
            (
                json!({"capability":{"a":["subscribe"]},"ttlSeconds":90000}),
                "ttlSeconds",
            ),
            (json!({"capability":{"a":["subscribe"]},"ttlSeconds":10}), "ttlSeconds"),
            (json!({"capability":{"a":["subscribe"]},"clientId":"*"}), "clientId"),
            (
                json!({"capability":{"a":["subscribe"]},"rateLimits":{"a":0}}),
                "rateLimits[\"a\"]",
            ),
            (
                json!({"capability":{"a":["subscribe"]},"roles":{"claim":"","grants":{}}}),
                "roles.claim",
            ),
            (
                json!({"capability":{"a":["subscribe"]},"roles":{"claim":"r","grants":{"m":{"ttlSeconds":1}}}}),
                "roles.grants[\"m\"].ttlSeconds",
            ),
            (
                json!({"anonymous":{"capability":{"chat:{sub}":["subscribe"]}}}),
                "anonymous.capability[\"chat:{sub}\"]",
            ),
            (json!({"anonymous":{"capability":{}}}), "anonymous.capability"),
            (
                json!({"anonymous":{"capability":{"a":["subscribe"]},"mayRevoke":true}}),
                "anonymous.mayRevoke",
            ),
            (json!({}), "capability"),
        ];
        for (doc, field) in cases {
            let e = policy_err(doc.clone());
            assert_eq!(e.field, field, "{doc}: {e}");
        }
        let e = Policy::from_json(r#"{"capabilty":{}}"#, false).unwrap_err();
        assert!(e.message.contains("unknown field `capabilty`"), "{e}");
        assert!(e.field.starts_with("line 1"), "{e}");
    }

    #[test]
    fn jwt_only_fields_are_listed_in_every_branch() {
        let p = Policy::from_json(EXAMPLE, false).unwrap();
        assert_eq!(
            p.jwt_only_fields(),
            [
                "channelClaims",
                "rateLimits",
                "revocationKey",
                "roles.grants[\"moderator\"].channelClaims"
            ]
        );
        let p = policy(json!({
            "capability": {"a": ["subscribe"]},
            "roles": {"claim": "roles", "grants": {"m": {"rateLimits": {"a": 1}}, "n": {"capability": {"b": ["subscribe"]}}}},
            "anonymous": {"capability": {"p": ["subscribe"]}, "channelClaims": {"p": "anon"}}
        }));
        assert_eq!(
            p.jwt_only_fields(),
            ["roles.grants[\"m\"].rateLimits", "anonymous.channelClaims"]
        );
        let plain = policy(
            json!({"capability": {"a": ["subscribe"]}, "roles": {"claim": "r", "grants": {"admin": {"mayRevoke": true}}}}),
        );
        assert!(plain.jwt_only_fields().is_empty());
        assert_eq!(plain.check_token_route(), Ok(()));
    }

    #[test]
    fn token_route_check_names_the_first_jwt_only_field_and_lists_the_rest() {
        let e = Policy::from_json(EXAMPLE, false)
            .unwrap()
            .check_token_route()
            .unwrap_err();
        assert_eq!(e.field, "channelClaims");
        assert!(
            e.message
                .contains("also at: rateLimits, revocationKey, roles.grants[\"moderator\"].channelClaims"),
            "{e}"
        );
        assert!(
            e.message.contains("/auth/jwt") && e.message.contains("TokenRoutesPolicy"),
            "{e}"
        );
        let role_only = policy(json!({
            "capability": {"a": ["subscribe"]},
            "roles": {"claim": "roles", "grants": {"moderator": {"channelClaims": {"a": "mod"}}}}
        }));
        let e = role_only.check_token_route().unwrap_err();
        assert_eq!(e.field, "roles.grants[\"moderator\"].channelClaims");
        assert!(!e.message.contains("also at"), "{e}");
    }

    #[test]
    fn the_token_routes_dev_policy_passes_the_token_route_check() {
        let p = Policy::from_json(include_str!("../../dev/policy-token-routes.json"), false).unwrap();
        assert_eq!(p.check_token_route(), Ok(()));
    }

    #[test]
    fn client_id_over_2048_bytes_is_refused_with_403() {
        let p = policy(json!({"clientId":"user-{sub}","capability":{"lobby":["subscribe"]}}));
        let at_limit = "a".repeat(MAX_CLIENT_ID_BYTES - 5);
        let g = p.grant(&verified(json!({ "sub": at_limit }))).unwrap();
        assert_eq!(g.client_id.map(|c| c.len()), Some(MAX_CLIENT_ID_BYTES));
        let e = p
            .grant(&verified(json!({ "sub": format!("{at_limit}b") })))
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (403, 40300));
        assert!(e.to_string().contains("2048-byte limit"), "{e}");
    }

    #[test]
    fn revocable_keys_cap_ttl_at_one_hour() {
        let doc = json!({"capability":{"a":["subscribe"]},"ttlSeconds":7200}).to_string();
        assert!(Policy::from_json(&doc, false).is_ok());
        let e = Policy::from_json(&doc, true).unwrap_err();
        assert_eq!(e.field, "ttlSeconds");
        assert!(e.message.contains("revocable"), "{e}");
        let default_ttl = Policy::from_json(r#"{"capability":{"a":["subscribe"]}}"#, true).unwrap();
        assert_eq!(default_ttl.ttl_seconds(), 3600);
    }

    #[test]
    fn room_claims_template_and_escape_like_channel_claims_and_roles_override_them() {
        let p = policy(json!({
            "clientId": "{sub}",
            "capability": {"support:*": ["publish", "subscribe"]},
            "roomClaims": {"support:*": "{\"name\":\"{name}\"}", "support:{team}": "team"},
            "roles": {"claim": "roles", "grants": {"agent": {"roomClaims": {"support:*": "agent"}}}}
        }));
        let g = p
            .grant(&verified(json!({"sub": "alice", "name": "x\",\"admin\":\"1"})))
            .unwrap();
        assert_eq!(g.room_claims.len(), 1, "no team claim: that entry is dropped");
        let v: serde_json::Value = serde_json::from_str(&g.room_claims[0].1).unwrap();
        assert_eq!(v, json!({"name": "x\",\"admin\":\"1"}));
        let g = p
            .grant(&verified(
                json!({"sub": "a", "name": "A", "team": "red", "roles": ["agent"]}),
            ))
            .unwrap();
        assert_eq!(
            g.room_claims,
            vec![
                ("support:*".to_owned(), "agent".to_owned()),
                ("support:red".to_owned(), "team".to_owned())
            ]
        );
        assert_eq!(
            p.jwt_only_fields(),
            ["roomClaims", "roles.grants[\"agent\"].roomClaims"]
        );
        let e = policy_err(json!({"anonymous": {"capability": {"p": ["subscribe"]}, "roomClaims": {"p": "{name}"}}}));
        assert_eq!(e.field, "anonymous.roomClaims[\"p\"]");
    }

    #[test]
    fn bound_to_session_defaults_to_true_and_ttl_jitter_is_at_most_20_percent() {
        let base = json!({"capability": {"a": ["subscribe"]}});
        assert!(policy(base.clone()).bound_to_session());
        assert_eq!(policy(base.clone()).ttl_jitter_percent(), 0);
        let p = policy(json!({"capability": {"a": ["subscribe"]}, "boundToSession": false, "ttlJitterPercent": 20}));
        assert!(!p.bound_to_session());
        assert_eq!(p.ttl_jitter_percent(), 20);
        let e = policy_err(json!({"capability": {"a": ["subscribe"]}, "ttlJitterPercent": 21}));
        assert_eq!(e.field, "ttlJitterPercent");
        assert!(Policy::from_json(
            r#"{"$schema":"../schema/policy.schema.json","capability":{"a":["subscribe"]}}"#,
            false
        )
        .is_ok());
    }

    #[test]
    fn dropped_entries_name_the_entry_as_written_and_why() {
        let p = Policy::from_json(EXAMPLE, false).unwrap();
        let mut dropped = Vec::new();
        p.grant_traced(
            &verified(json!({"sub": "alice", "name": "Al", "org": "a\nb"})),
            &mut dropped,
        )
        .unwrap();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert_eq!(
            (dropped[0].field.as_str(), dropped[0].entry.as_str()),
            ("revocationKey", "{org}")
        );
        let p = policy(json!({"capability": {"org:{org}:*": ["subscribe"], "lobby": ["subscribe"]}}));
        let mut dropped = Vec::new();
        p.grant_traced(&verified(json!({"org": "a:b"})), &mut dropped).unwrap();
        assert_eq!(dropped[0].entry, "org:{org}:*");
        assert!(dropped[0].reason.contains("`org`"), "{dropped:?}");
    }

    #[test]
    fn warnings_flag_claims_that_never_apply_idle_roles_unsafe_templates_and_chat_without_client_id() {
        let p = policy(json!({
            "capability": {"chat:*": ["subscribe"], "u:{iss}": ["publish"]},
            "channelClaims": {"news:*": "x"},
            "roomClaims": {"chat:*": "r"},
            "ttlSeconds": 7200,
            "roles": {"claim": "roles", "grants": {"idle": {"capability": {"chat:x": ["subscribe"]}}, "busy": {"mayRevoke": true}}}
        }));
        let w = p.warnings(Some(crate::route::Route::Jwt));
        let fields: Vec<&str> = w.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "channelClaims[\"news:*\"]",
                "roles.grants[\"idle\"]",
                "capability[\"u:{iss}\"]",
                "ttlSeconds",
                "roomClaims"
            ],
            "{w:?}"
        );
        assert!(w[4].message.contains("clientId"), "{w:?}");
        let quiet = Policy::from_json(include_str!("../../dev/policy-token-routes.json"), false).unwrap();
        assert_eq!(quiet.warnings(None), []);
        let dev = Policy::from_json(EXAMPLE, false).unwrap();
        let w = dev.warnings(None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.contains("/auth/token-request"), "{w:?}");
        assert_eq!(dev.warnings(Some(crate::route::Route::Jwt)), []);
    }
}
