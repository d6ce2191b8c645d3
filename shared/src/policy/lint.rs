//! Warnings about a valid policy (`ably-auth policy check`): what start-up accepts but an
//! operator most likely did not mean. Each names the field, like the start-up errors.

use super::{Policy, Rules, Template};
use crate::capability::Capability;
use crate::limits::MAX_REVOCABLE_TTL_SECONDS;
use crate::route::Route;

/// One warning: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The field path, as in start-up errors (`roles.grants["moderator"]`, `channelClaims["x"]`).
    pub field: String,
    pub message: String,
}

fn warn(field: impl Into<String>, message: impl Into<String>) -> Warning {
    Warning {
        field: field.into(),
        message: message.into(),
    }
}

/// Claims whose value can never be safe in a resource name or a clientId, and why.
fn never_safe_claim(policy: &Policy, name: &str) -> Option<&'static str> {
    if policy.role_claim.as_deref() == Some(name) {
        return Some("it is the roles claim, usually a list, and a list has no text to substitute");
    }
    match name {
        "iss" => Some("an issuer is a URL, which always holds `:`"),
        "aud" => Some("an audience is often a URL or a list"),
        "cognito:groups" | "groups" | "scope" | "scp" => {
            Some("it is usually a list (or space-separated), which cannot make one identifier")
        }
        _ => None,
    }
}

/// A placeholder's stand-in for overlap checks: one distinct, safe value per claim name, so
/// that `chat:{sub}` and `chat:{org}` are told apart.
fn stand_in(template: &Template) -> String {
    template.sample_with(|name| {
        let safe: String = name
            .chars()
            .map(|c| {
                if matches!(c, '*' | ':' | '[' | ']' | ',') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        format!("\u{2039}{safe}\u{203a}")
    })
}

fn capability_of(rules: &Rules) -> Capability {
    let mut c = Capability::default();
    for (resource, ops) in &rules.capability {
        let _ = c.insert(&stand_in(resource), *ops);
    }
    c
}

fn overlaps(resource: &str, capability: &Capability) -> bool {
    let mut one = Capability::default();
    if one.insert(resource, crate::capability::Ops::ALL).is_err() {
        return true;
    }
    !Capability::intersect(&one, capability).is_empty()
}

impl Policy {
    fn all_rules(&self) -> Vec<&Rules> {
        let mut all = vec![&self.rules];
        all.extend(self.roles.values().map(|r| &r.rules));
        all.extend(self.anonymous_rules.as_ref());
        all
    }

    /// Warnings about this (valid) policy on `route` (`None`: not said; the JWT route's rules,
    /// plus a warning when the policy could not serve the token routes).
    pub fn warnings(&self, route: Option<Route>) -> Vec<Warning> {
        let mut out = Vec::new();
        let mut everything = Capability::default();
        for rules in self.all_rules() {
            everything.union_with(&capability_of(rules));
        }

        // Claims and limits on resources no capability entry covers: they never apply.
        for rules in self.all_rules() {
            let p = &rules.path;
            let claim_entries = rules
                .channel_claims
                .iter()
                .map(|(r, _)| ("channelClaims", r))
                .chain(rules.room_claims.iter().map(|(r, _)| ("roomClaims", r)))
                .chain(rules.rate_limits.iter().map(|(r, _)| ("rateLimits", r)));
            for (section, resource) in claim_entries {
                if !overlaps(&stand_in(resource), &everything) {
                    out.push(warn(
                        format!("{p}{section}[{:?}]", resource.source()),
                        "can never match: no capability entry of the policy covers this resource, so no token can attach to a channel (or room) it applies to; fix the resource or add a capability entry for it",
                    ));
                }
            }
        }

        // Role grants that add nothing to the base grant.
        let base = capability_of(&self.rules);
        for (name, role) in &self.roles {
            let r = &role.rules;
            let caps = capability_of(r);
            let nothing_else = r.channel_claims.is_empty()
                && r.room_claims.is_empty()
                && r.rate_limits.is_empty()
                && !role.may_revoke
                && role.ttl_seconds.is_none_or(|t| t >= self.ttl_seconds);
            if nothing_else && Capability::intersect(&caps, &base) == caps {
                out.push(warn(
                    format!("roles.grants[{name:?}]"),
                    "adds nothing: every capability it lists is already in the base grant, and it has no claims, rate limits, shorter ttlSeconds or mayRevoke; remove it or give it what the role needs",
                ));
            }
        }

        // Templates whose substituted claim can never be safe.
        let mut templates: Vec<(String, &Template)> = Vec::new();
        if let Some(c) = &self.client_id {
            templates.push(("clientId".to_owned(), c));
        }
        for rules in self.all_rules() {
            let p = &rules.path;
            for (r, _) in &rules.capability {
                templates.push((format!("{p}capability[{:?}]", r.source()), r));
            }
            for (r, _) in &rules.channel_claims {
                templates.push((format!("{p}channelClaims[{:?}]", r.source()), r));
            }
            for (r, _) in &rules.room_claims {
                templates.push((format!("{p}roomClaims[{:?}]", r.source()), r));
            }
            for (r, _) in &rules.rate_limits {
                templates.push((format!("{p}rateLimits[{:?}]", r.source()), r));
            }
        }
        for (field, t) in templates {
            for claim in t.claim_names() {
                if let Some(why) = never_safe_claim(self, claim) {
                    let effect = if field == "clientId" {
                        "every caller would be refused (403)"
                    } else {
                        "the entry would be dropped for every caller"
                    };
                    out.push(warn(
                        field.clone(),
                        format!("`{{{claim}}}` can never be safe here: {why}; {effect}. Substitute a single-valued claim such as {{sub}}"),
                    ));
                }
            }
        }

        // Fields only JWTs carry, when the route was not said.
        let jwt_only = self.jwt_only_fields();
        if route.is_none() && !jwt_only.is_empty() {
            out.push(warn(
                jwt_only[0].clone(),
                format!(
                    "only Ably JWTs carry channelClaims, roomClaims, rateLimits and revocationKey ({}): this policy serves /auth/jwt, and /auth/token-request and /auth/token refuse it at start-up; check with --route to be sure",
                    jwt_only.join(", ")
                ),
            ));
        }

        // TTLs a revocable key would refuse.
        if !self.revocable {
            let mut ttls = vec![("ttlSeconds".to_owned(), self.ttl_seconds)];
            for (name, role) in &self.roles {
                if let Some(t) = role.ttl_seconds {
                    ttls.push((format!("roles.grants[{name:?}].ttlSeconds"), t));
                }
            }
            if let Some(a) = &self.anonymous {
                ttls.push(("anonymous.ttlSeconds".to_owned(), a.ttl_ms / 1000));
            }
            for (field, ttl) in ttls {
                if ttl > MAX_REVOCABLE_TTL_SECONDS {
                    out.push(warn(
                        field,
                        format!("{ttl} s is over {MAX_REVOCABLE_TTL_SECONDS} s, the most a key with revocable tokens allows: with ABLY_KEY_REVOCABLE=true (needed by /auth/revoke) the functions refuse this policy at start-up"),
                    ));
                }
            }
        }

        // Ably Chat needs a clientId.
        let rooms: Vec<&Rules> = self
            .all_rules()
            .into_iter()
            .filter(|r| !r.room_claims.is_empty())
            .collect();
        if !rooms.is_empty() && self.client_id.is_none() {
            out.push(warn(
                format!("{}roomClaims", rooms[0].path),
                "the policy has roomClaims but issues no clientId: Ably Chat needs one (set \"clientId\", e.g. \"{sub}\")",
            ));
        }
        if let Some(a) = self.anonymous_rules.as_ref().filter(|a| !a.room_claims.is_empty()) {
            out.push(warn(
                format!("{}roomClaims", a.path),
                "anonymous callers get no clientId, which Ably Chat needs: these room claims can never be used in a room",
            ));
        }
        out
    }
}
