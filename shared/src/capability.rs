//! Ably capabilities: parsing, validation, canonical form, matching and intersection.
//!
//! A capability is a JSON object mapping a *resource* (a channel, queue or
//! metachannel name, or a pattern of them) to the list of *operations* allowed on
//! it, e.g. `{"chat:*":["publish","subscribe"],"notifications":["subscribe"]}`.
//!
//! # Resources
//!
//! A resource is an optional qualifier followed by a name:
//!
//! | resource        | namespace                                   |
//! |-----------------|---------------------------------------------|
//! | `name`          | channels                                    |
//! | `[queue]name`   | queues                                      |
//! | `[meta]name`    | metachannels                                |
//! | `[*]name`       | channels, queues and metachannels alike     |
//!
//! The name is split on `:` into segments. A segment that is exactly `*` is a
//! wildcard; a `*` inside a longer segment (`foo*`) is literal.
//!
//! * A non-trailing `*` segment stands for exactly one segment: `foo:*:baz`
//!   matches `foo:x:baz` but not `foo:x:y:baz`.
//! * A trailing `*` segment stands for one or more segments: `ns:*` matches
//!   `ns:a` and `ns:a:b`, but not `ns` itself. Consequently `*` is every channel,
//!   `[queue]*` every queue, `[meta]*` every metachannel and `[*]*` everything.
//! * A plain (unqualified) pattern never matches queues or metachannels.
//!
//! Empty segments (`a::b`, `a:`) are legal in names. Ably does not document
//! whether a wildcard can stand for an empty segment, so this module takes the
//! narrow reading: **the segment a `*` stands for (the first one, for a trailing
//! `*`) must be non-empty**. A trailing `*` then absorbs any further segments,
//! empty or not: `ns:*` matches `ns:a::b` but not `ns:` or `ns::a`. Every
//! coverage or intersection claim made here also holds under the wider reading
//! (where `*` may stand for an empty segment), so the narrow choice can only
//! drop rights, never add them.
//!
//! # Operations
//!
//! The operations are the 17 names in [`OPERATIONS`], or `*` alone meaning every
//! operation (including operations Ably may add later, which is why `*` is kept
//! distinct from an explicit list of all 17). See [`Ops`].
//!
//! # Canonical form
//!
//! [`Capability::to_canonical_string`] writes compact JSON with resources and
//! operations sorted by byte order, the exact string Ably SDKs send and sign.
//!
//! # Intersection
//!
//! [`Capability::intersect`] computes what a client asked for (`requested`)
//! limited to what policy grants (`allowed`). It never grants a right on a
//! concrete resource that `allowed` does not grant; when the overlap of two
//! patterns cannot be written as a single pattern it is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Every operation name Ably accepts in a capability (besides `*`), in byte order.
///
/// Bit `i` of an [`Ops`] mask stands for `OPERATIONS[i]`.
pub const OPERATIONS: [&str; 17] = [
    "annotation-publish",
    "annotation-subscribe",
    "channel-metadata",
    "history",
    "message-delete-any",
    "message-delete-own",
    "message-update-any",
    "message-update-own",
    "object-publish",
    "object-subscribe",
    "presence",
    "privileged-headers",
    "publish",
    "push-admin",
    "push-subscribe",
    "stats",
    "subscribe",
];

/// [`OPERATIONS`] joined for error messages.
const OPERATION_LIST: &str = "annotation-publish, annotation-subscribe, channel-metadata, \
history, message-delete-any, message-delete-own, message-update-any, message-update-own, \
object-publish, object-subscribe, presence, privileged-headers, publish, push-admin, \
push-subscribe, stats, subscribe";

/// The `*` flag of an [`Ops`]; when set, no other bit is set.
const ALL_BIT: u32 = 1 << 31;

/// Echoed user input is cut to this many characters.
const MAX_ECHO: usize = 64;

/// The wildcard segment.
const WILD: &str = "*";

/// Why a capability was rejected. Every message says what was wrong and how to fix it.
///
/// Strings echoed from the input are truncated to about 64 characters. An empty
/// `resource` means the operations were parsed on their own (via [`Ops::parse`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CapabilityError {
    /// The text is not valid JSON; carries the (truncated) parser message.
    #[error("capability is not valid JSON ({0}); send a JSON object such as {{\"chat:*\":[\"subscribe\"]}}")]
    NotJson(String),
    /// The JSON is valid but its top level is not an object.
    #[error(
        "capability is not a JSON object; send an object mapping resource names to lists of operations, such as {{\"chat:*\":[\"subscribe\"]}}"
    )]
    NotAnObject,
    /// A resource name or pattern is malformed.
    #[error("capability resource {resource:?} is invalid: {reason}")]
    InvalidResource {
        /// The offending resource (truncated).
        resource: String,
        /// What is wrong and how to fix it.
        reason: &'static str,
    },
    /// The same resource appears twice in one JSON object.
    #[error("capability resource {resource:?} appears more than once; merge its operations into a single list")]
    DuplicateResource {
        /// The repeated resource (truncated).
        resource: String,
    },
    /// The value for a resource is not a JSON array.
    #[error(
        "{}the operations are not a JSON array; write them as a list of operation names, such as [\"subscribe\"]",
        at(.resource)
    )]
    NotAList {
        /// The resource whose value is wrong (truncated).
        resource: String,
    },
    /// An element of an operation list is not a JSON string.
    #[error(
        "{}an operation is not a JSON string; write each operation as a quoted name, such as \"subscribe\"",
        at(.resource)
    )]
    NotAString {
        /// The resource whose list is wrong (truncated).
        resource: String,
    },
    /// An operation list is empty.
    #[error(
        "{}the operation list is empty; list at least one operation (or \"*\" for all), or remove the resource",
        at(.resource)
    )]
    EmptyOperations {
        /// The resource with the empty list (truncated).
        resource: String,
    },
    /// An operation name is not one of [`OPERATIONS`] or `*`.
    #[error(
        "{}unknown operation {operation:?}; use one of {}, or \"*\" alone for every operation",
        at(.resource),
        OPERATION_LIST
    )]
    UnknownOperation {
        /// The resource whose list is wrong (truncated).
        resource: String,
        /// The unknown operation (truncated).
        operation: String,
    },
    /// `*` is listed together with other operations.
    #[error(
        "{}\"*\" already means every operation and cannot be combined with others; use [\"*\"] alone or list specific operations",
        at(.resource)
    )]
    MixedWildcard {
        /// The resource whose list is wrong (truncated).
        resource: String,
    },
}

/// Message prefix naming the resource an operation error belongs to.
fn at(resource: &str) -> String {
    if resource.is_empty() {
        "capability operations: ".to_owned()
    } else {
        format!("capability resource {resource:?}: ")
    }
}

/// Cuts `s` to [`MAX_ECHO`] characters (marking the cut with `…`) for echoing in errors.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => {
            let mut out = String::with_capacity(cut + 3);
            out.push_str(&s[..cut]);
            out.push('…');
            out
        }
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// A set of operations.
///
/// Internally a bitmask indexed by [`OPERATIONS`] (which is sorted), plus an
/// "all" flag for `*`. [`Ops::ALL`] is deliberately *not* equal to the set of all
/// 17 named operations: `*` also grants operations this crate does not know yet,
/// so an explicit list never [`contains`](Ops::contains) `*`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ops {
    /// Either exactly [`ALL_BIT`], or a mask of bits `0..17`.
    bits: u32,
}

impl Ops {
    /// `*`: every operation, including ones added to Ably later.
    pub const ALL: Ops = Ops { bits: ALL_BIT };
    /// No operation.
    pub const NONE: Ops = Ops { bits: 0 };

    /// The set holding the single operation `name`; `*` gives [`Ops::ALL`].
    /// Returns `None` for a name that is not an operation.
    pub fn from_name(name: &str) -> Option<Ops> {
        if name == WILD {
            return Some(Ops::ALL);
        }
        OPERATIONS.binary_search(&name).ok().map(|i| Ops { bits: 1 << i })
    }

    /// Parses an operation list such as `["publish","subscribe"]`.
    ///
    /// Each element must be one of [`OPERATIONS`], or the list must be `*`
    /// alone (repeats allowed). Duplicates are merged. An empty list, an unknown
    /// name or `*` mixed with other names is an error.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Ops, CapabilityError> {
        let mut acc = OpsAcc::default();
        for name in list {
            acc.add("", name.as_ref())?;
        }
        acc.finish("")
    }

    /// True when no operation is in the set.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// True for `*` (and only for `*`, not for an explicit list of every operation).
    pub fn is_all(self) -> bool {
        self.bits == ALL_BIT
    }

    /// The operations in both sets. `ALL ∩ x = x`.
    pub fn intersect(self, other: Ops) -> Ops {
        if self.is_all() {
            other
        } else if other.is_all() {
            self
        } else {
            Ops {
                bits: self.bits & other.bits,
            }
        }
    }

    /// The operations in either set. `ALL ∪ x = ALL`.
    pub fn union(self, other: Ops) -> Ops {
        if self.is_all() || other.is_all() {
            Ops::ALL
        } else {
            Ops {
                bits: self.bits | other.bits,
            }
        }
    }

    /// True when `other ⊆ self`. `ALL` contains everything; only `ALL` contains `ALL`.
    pub fn contains(self, other: Ops) -> bool {
        if self.is_all() {
            true
        } else if other.is_all() {
            false
        } else {
            other.bits & !self.bits == 0
        }
    }

    /// The operation names in byte order; just `*` for [`Ops::ALL`].
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        let all = self.is_all();
        let bits = self.bits;
        std::iter::once(WILD).filter(move |_| all).chain(
            OPERATIONS
                .iter()
                .enumerate()
                .filter(move |(i, _)| bits & (1 << i) != 0)
                .map(|(_, name)| *name),
        )
    }
}

impl fmt::Debug for Ops {
    /// Formats as the canonical JSON list, e.g. `["publish","subscribe"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "\"{name}\"")?;
        }
        f.write_str("]")
    }
}

/// Accumulates an operation list, reporting errors against `resource`.
#[derive(Default)]
struct OpsAcc {
    bits: u32,
    star: bool,
    seen: bool,
}

impl OpsAcc {
    fn add(&mut self, resource: &str, name: &str) -> Result<(), CapabilityError> {
        self.seen = true;
        if name == WILD {
            self.star = true;
            return Ok(());
        }
        match OPERATIONS.binary_search(&name) {
            Ok(i) => {
                self.bits |= 1 << i;
                Ok(())
            }
            Err(_) => Err(CapabilityError::UnknownOperation {
                resource: clip(resource),
                operation: clip(name),
            }),
        }
    }

    fn finish(self, resource: &str) -> Result<Ops, CapabilityError> {
        if !self.seen {
            Err(CapabilityError::EmptyOperations {
                resource: clip(resource),
            })
        } else if self.star && self.bits != 0 {
            Err(CapabilityError::MixedWildcard {
                resource: clip(resource),
            })
        } else if self.star {
            Ok(Ops::ALL)
        } else {
            Ok(Ops { bits: self.bits })
        }
    }
}

/// Parses a JSON value that should be an operation list.
fn ops_from_value(resource: &str, v: &Value) -> Result<Ops, CapabilityError> {
    let Value::Array(items) = v else {
        return Err(CapabilityError::NotAList {
            resource: clip(resource),
        });
    };
    let mut acc = OpsAcc::default();
    for item in items {
        let Value::String(name) = item else {
            return Err(CapabilityError::NotAString {
                resource: clip(resource),
            });
        };
        acc.add(resource, name)?;
    }
    acc.finish(resource)
}

// ---------------------------------------------------------------------------
// Resource patterns
// ---------------------------------------------------------------------------

/// The namespace a resource lives in; `Any` is the `[*]` qualifier.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ns {
    Channel,
    Queue,
    Meta,
    Any,
}

impl Ns {
    fn prefix(self) -> &'static str {
        match self {
            Ns::Channel => "",
            Ns::Queue => "[queue]",
            Ns::Meta => "[meta]",
            Ns::Any => "[*]",
        }
    }

    /// Does a pattern in namespace `self` reach resources in namespace `other`?
    fn covers(self, other: Ns) -> bool {
        self == Ns::Any || self == other
    }
}

/// A resource split into namespace and `:`-separated segments.
///
/// For a pattern a `*` segment is a wildcard; for a concrete name every segment
/// is literal (the matching functions below never look for wildcards on the
/// narrow side, so the same type serves both).
#[derive(Debug)]
struct Pattern<'a> {
    ns: Ns,
    segs: Vec<&'a str>,
}

impl Pattern<'_> {
    /// Does the pattern end in a (multi-segment) `*`?
    fn trailing(&self) -> bool {
        self.segs.last() == Some(&WILD)
    }

    fn render(&self) -> String {
        let prefix = self.ns.prefix();
        let len = prefix.len() + self.segs.iter().map(|s| s.len() + 1).sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push_str(prefix);
        for (i, seg) in self.segs.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(seg);
        }
        out
    }
}

const REASON_EMPTY: &str = "resource names must not be empty; use a channel name such as \"chat:lobby\", a pattern such as \"chat:*\", or \"*\"";
const REASON_CONTROL: &str = "resource names must not contain newlines or other control characters; remove them";
const REASON_BRACKET: &str = "a name starting with \"[\" must begin with the qualifier [queue], [meta] or [*]; remove the \"[\" or use one of those qualifiers";
const REASON_BARE_QUALIFIER: &str =
    "a qualifier must be followed by a name; write for example \"[queue]*\" or \"[meta]*\"";
const REASON_COLON: &str = "names must not start with \":\"; remove the leading colon";
const REASON_DOUBLE: &str = "only one qualifier is allowed, and the name after it must not start with \"[\"";
const REASON_TOO_LONG: &str =
    "resource names may be at most 2048 bytes (UTF-8, qualifier included); use a shorter name, or a pattern such as \"chat:*\"";

/// The longest resource name (or pattern) accepted, in UTF-8 bytes including any qualifier.
///
/// Ably sets no maximum but recommends channel names under 2,048 characters (they travel in
/// URLs); the bound keeps a client's capability hint from growing a token without limit.
pub const MAX_RESOURCE_BYTES: usize = 2048;

/// Splits and validates a resource (pattern or concrete name).
fn parse_resource(s: &str) -> Result<Pattern<'_>, &'static str> {
    if s.is_empty() {
        return Err(REASON_EMPTY);
    }
    if s.chars().any(char::is_control) {
        return Err(REASON_CONTROL);
    }
    let (ns, rest) = if let Some(rest) = s.strip_prefix("[queue]") {
        (Ns::Queue, rest)
    } else if let Some(rest) = s.strip_prefix("[meta]") {
        (Ns::Meta, rest)
    } else if let Some(rest) = s.strip_prefix("[*]") {
        (Ns::Any, rest)
    } else if s.starts_with('[') {
        return Err(REASON_BRACKET);
    } else {
        (Ns::Channel, s)
    };
    if rest.is_empty() {
        return Err(REASON_BARE_QUALIFIER);
    }
    if rest.starts_with(':') {
        return Err(REASON_COLON);
    }
    if rest.starts_with('[') {
        return Err(REASON_DOUBLE);
    }
    Ok(Pattern {
        ns,
        segs: rest.split(':').collect(),
    })
}

/// Splits a concrete resource name; `None` if it is not a valid concrete name
/// (including anything qualified with `[*]`, which is not a single resource).
fn parse_concrete(name: &str) -> Option<Pattern<'_>> {
    parse_resource(name).ok().filter(|p| p.ns != Ns::Any)
}

/// Does wide segment `w` cover narrow segment `v` (literal, or `*` meaning
/// "some non-empty segment")? A wildcard covers any non-empty segment (a `*` on
/// the narrow side is non-empty too); a literal only covers itself.
fn seg_covers(w: &str, v: &str) -> bool {
    if w == WILD {
        !v.is_empty()
    } else {
        w == v
    }
}

/// Syntactic coverage: true only when every name `narrow` matches is matched by `wide`.
///
/// Also used for matching a concrete name (as `narrow`): then a `*` segment in the
/// name is just a non-empty literal, which is exactly how [`seg_covers`] treats it.
fn covers(wide: &Pattern<'_>, narrow: &Pattern<'_>) -> bool {
    if !wide.ns.covers(narrow.ns) {
        return false;
    }
    let length_ok = if wide.trailing() {
        // The trailing `*` absorbs narrow's segments from its position on; the
        // first of them must exist and be non-empty (checked by the zip below).
        narrow.segs.len() >= wide.segs.len()
    } else {
        // wide's last segment is a literal, so narrow's last must equal it and
        // narrow cannot end in a multi-segment `*`.
        narrow.segs.len() == wide.segs.len()
    };
    length_ok && wide.segs.iter().zip(&narrow.segs).all(|(w, v)| seg_covers(w, v))
}

/// Meet of two single segments, if non-empty.
fn seg_meet<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    if a == WILD {
        (!b.is_empty()).then_some(b)
    } else if b == WILD {
        (!a.is_empty()).then_some(a)
    } else {
        (a == b).then_some(a)
    }
}

/// The single pattern matching exactly the names both patterns match, if any.
///
/// Segment-wise: namespaces meet (`[*]` ∧ x = x), literals must agree, `*` meets
/// a non-empty literal as that literal, and a trailing `*` absorbs the other
/// side's extra segments. Within the matching model of this module the result is
/// exact; callers still double-check it with [`covers`] against both inputs.
fn meet<'a>(p: &Pattern<'a>, q: &Pattern<'a>) -> Option<Pattern<'a>> {
    let ns = match (p.ns, q.ns) {
        (Ns::Any, other) | (other, Ns::Any) => other,
        (a, b) if a == b => a,
        _ => return None,
    };
    let (pl, ql) = (p.segs.len(), q.segs.len());
    let len = match (p.trailing(), q.trailing()) {
        (false, false) => (pl == ql).then_some(pl)?,
        (true, false) => (ql >= pl).then_some(ql)?,
        (false, true) => (pl >= ql).then_some(pl)?,
        (true, true) => pl.max(ql),
    };
    let mut segs = Vec::with_capacity(len);
    for i in 0..len {
        let seg = match (p.segs.get(i), q.segs.get(i)) {
            (Some(a), Some(b)) => seg_meet(a, b)?,
            // Past the end of a pattern with a trailing `*`: absorbed by it.
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return None,
        };
        segs.push(seg);
    }
    Some(Pattern { ns, segs })
}

/// Checks that `resource` is a valid capability resource (name or pattern).
///
/// Rejected: empty names; control characters (including newlines); a leading
/// `[` other than the qualifiers `[queue]`, `[meta]`, `[*]`; a qualifier with
/// nothing after it; a name (after any qualifier) starting with `:` or `[`; a name longer
/// than [`MAX_RESOURCE_BYTES`].
pub fn validate_resource(resource: &str) -> Result<(), CapabilityError> {
    let reason = match parse_resource(resource) {
        Err(reason) => reason,
        Ok(_) if resource.len() > MAX_RESOURCE_BYTES => REASON_TOO_LONG,
        Ok(_) => return Ok(()),
    };
    Err(CapabilityError::InvalidResource {
        resource: clip(resource),
        reason,
    })
}

/// True when every concrete resource matched by `narrow` is also matched by `wide`.
///
/// This is a proof, not a guess: when in doubt (e.g. a wildcard against an
/// empty segment) it answers `false`. Invalid patterns cover nothing and are
/// covered by nothing.
pub fn pattern_covers(wide: &str, narrow: &str) -> bool {
    match (parse_resource(wide), parse_resource(narrow)) {
        (Ok(w), Ok(n)) => covers(&w, &n),
        _ => false,
    }
}

/// True when the concrete resource `name` (e.g. `chat:lobby`, `[queue]q1`,
/// `[meta]log`) is matched by `pattern`.
///
/// Every segment of `name` is literal (a channel named `a:*` is matched by `a:*`
/// and `*`, not by `a:b`). Invalid patterns and invalid names (including names
/// qualified with `[*]`, which denote no single resource) never match.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match (parse_resource(pattern), parse_concrete(name)) {
        (Ok(p), Some(n)) => covers(&p, &n),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Capability
// ---------------------------------------------------------------------------

/// A capability: resource (name or pattern) → operations.
///
/// Every key is a valid resource (see [`validate_resource`]) and no entry has
/// empty [`Ops`]. Entries are kept sorted by byte order, as in the canonical
/// form. Two entries for different but overlapping patterns are kept as they
/// are; rights on a concrete resource are the union over all matching entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capability {
    map: BTreeMap<String, Ops>,
}

impl Capability {
    /// Parses capability JSON text (a client's hint or configuration).
    ///
    /// Whitespace and key order do not matter. A resource listed twice in the
    /// object is an error ([`CapabilityError::DuplicateResource`]). `{}` parses
    /// to the empty capability, which grants nothing.
    pub fn parse(json: &str) -> Result<Capability, CapabilityError> {
        let top: Top = serde_json::from_str(json).map_err(|e| CapabilityError::NotJson(clip(&e.to_string())))?;
        let Top::Object(entries) = top else {
            return Err(CapabilityError::NotAnObject);
        };
        let mut cap = Capability::default();
        for (resource, value) in &entries {
            validate_resource(resource)?;
            let ops = ops_from_value(resource, value)?;
            if cap.map.contains_key(resource.as_str()) {
                return Err(CapabilityError::DuplicateResource {
                    resource: clip(resource),
                });
            }
            cap.map.insert(resource.clone(), ops);
        }
        Ok(cap)
    }

    /// Builds a capability from an already parsed JSON value, validating as [`Capability::parse`].
    pub fn from_value(v: &Value) -> Result<Capability, CapabilityError> {
        let Value::Object(entries) = v else {
            return Err(CapabilityError::NotAnObject);
        };
        let mut cap = Capability::default();
        for (resource, value) in entries {
            validate_resource(resource)?;
            let ops = ops_from_value(resource, value)?;
            cap.add_valid(resource, ops);
        }
        Ok(cap)
    }

    /// Adds `ops` on `resource`, after validating the resource.
    ///
    /// If the resource is already present the operations are united. Empty `ops`
    /// add nothing (the resource is still validated).
    pub fn insert(&mut self, resource: &str, ops: Ops) -> Result<(), CapabilityError> {
        validate_resource(resource)?;
        self.add_valid(resource, ops);
        Ok(())
    }

    /// The operations listed for exactly this resource string (no pattern matching;
    /// see [`Capability::allows`] for that).
    pub fn get(&self, resource: &str) -> Option<Ops> {
        self.map.get(resource).copied()
    }

    /// The entries in canonical (byte) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Ops)> + '_ {
        self.map.iter().map(|(r, o)| (r.as_str(), *o))
    }

    /// Number of resources listed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no resource is listed (the capability grants nothing).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds every entry of `other`, uniting operations for identical resource strings.
    pub fn union_with(&mut self, other: &Capability) {
        for (resource, ops) in &other.map {
            self.add_valid(resource, *ops);
        }
    }

    /// Adds an entry whose resource is known to be valid.
    fn add_valid(&mut self, resource: &str, ops: Ops) {
        if ops.is_empty() {
            return;
        }
        match self.map.get_mut(resource) {
            Some(existing) => *existing = existing.union(ops),
            None => {
                self.map.insert(resource.to_owned(), ops);
            }
        }
    }

    /// The canonical JSON text: compact, resources and operations in byte order,
    /// strings escaped as `serde_json` does. For example
    /// `{"*":["subscribe"],"private":["presence","publish","subscribe"]}`.
    pub fn to_canonical_string(&self) -> String {
        let len = 2 + self
            .map
            .iter()
            .map(|(r, o)| r.len() + 6 + o.names().map(|n| n.len() + 3).sum::<usize>())
            .sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push('{');
        for (i, (resource, ops)) in self.map.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::json::push_string(&mut out, resource);
            out.push_str(":[");
            for (j, name) in ops.names().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(name);
                out.push('"');
            }
            out.push(']');
        }
        out.push('}');
        out
    }

    /// The rights both sides grant.
    ///
    /// For each pair of entries `(r, ops_r)` from `requested` and `(a, ops_a)`
    /// from `allowed` with `ops = ops_r ∩ ops_a` non-empty: if `a` covers `r`,
    /// `(r, ops)` is granted; else if `r` covers `a`, `(a, ops)`; else if the two
    /// patterns overlap in a set expressible as one pattern (e.g. `foo:*:baz` ∩
    /// `foo:bar:*` = `foo:bar:baz`, `[*]*` ∩ `[queue]q` = `[queue]q`) that pattern;
    /// otherwise nothing. Grants for the same resource are united.
    ///
    /// The result never grants an operation on a concrete resource that `allowed`
    /// (or `requested`) does not grant. Under this module's matching rules it
    /// grants exactly what both grant.
    pub fn intersect(requested: &Capability, allowed: &Capability) -> Capability {
        let req = requested.parsed();
        let alw = allowed.parsed();
        let mut out = Capability::default();
        for (r_str, r_pat, r_ops) in &req {
            for (a_str, a_pat, a_ops) in &alw {
                let ops = r_ops.intersect(*a_ops);
                if ops.is_empty() {
                    continue;
                }
                if covers(a_pat, r_pat) {
                    out.add_valid(r_str, ops);
                } else if covers(r_pat, a_pat) {
                    out.add_valid(a_str, ops);
                } else if let Some(m) = meet(r_pat, a_pat) {
                    if covers(a_pat, &m) && covers(r_pat, &m) {
                        let resource = m.render();
                        // The meet of two valid names can be longer than either.
                        if validate_resource(&resource).is_ok() {
                            out.add_valid(&resource, ops);
                        }
                    }
                }
            }
        }
        out
    }

    /// Does this capability grant `op` on the concrete resource `resource`
    /// (e.g. `chat:lobby`, `[queue]q1`, `[meta]log`)?
    ///
    /// The rights are the union over all entries whose pattern matches (see
    /// [`pattern_matches`]). `op` may be `*`, which asks whether `*` is granted.
    /// Returns `false` for an invalid resource name (including `[*]…`) and for
    /// an operation name this crate does not know, even under `*`.
    pub fn allows(&self, resource: &str, op: &str) -> bool {
        let (Some(want), Some(name)) = (Ops::from_name(op), parse_concrete(resource)) else {
            return false;
        };
        let mut got = Ops::NONE;
        for (pattern, ops) in &self.map {
            if want.intersect(*ops).is_empty() {
                continue;
            }
            if parse_resource(pattern).is_ok_and(|p| covers(&p, &name)) {
                got = got.union(*ops);
                if got.contains(want) {
                    return true;
                }
            }
        }
        false
    }

    /// Entries with their parsed patterns (entries are valid by construction).
    fn parsed(&self) -> Vec<(&str, Pattern<'_>, Ops)> {
        self.map
            .iter()
            .filter_map(|(r, o)| parse_resource(r).ok().map(|p| (r.as_str(), p, *o)))
            .collect()
    }
}

impl fmt::Display for Capability {
    /// Writes the canonical JSON text ([`Capability::to_canonical_string`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

impl FromStr for Capability {
    type Err = CapabilityError;

    /// Same as [`Capability::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::parse(s)
    }
}

// ---------------------------------------------------------------------------
// JSON reading
// ---------------------------------------------------------------------------

/// The top level of capability JSON: an object's entries in document order
/// (keeping duplicates, which a `serde_json::Map` would silently merge), or
/// anything else.
enum Top {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(entry) = map.next_entry::<String, Value>()? {
            entries.push(entry);
        }
        Ok(Top::Object(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::Other)
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(json: &str) -> Capability {
        Capability::parse(json).unwrap()
    }

    fn ops(names: &[&str]) -> Ops {
        Ops::parse(names).unwrap()
    }

    fn inter(req: &str, alw: &str) -> String {
        Capability::intersect(&cap(req), &cap(alw)).to_canonical_string()
    }

    // --- operations -------------------------------------------------------

    #[test]
    fn operation_table_is_sorted_and_listed() {
        assert!(OPERATIONS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(OPERATION_LIST, OPERATIONS.join(", "));
        assert_eq!(OPERATIONS.len(), 17);
    }

    #[test]
    fn ops_parse_and_names() {
        let o = ops(&["subscribe", "publish", "subscribe"]);
        assert_eq!(o.names().collect::<Vec<_>>(), ["publish", "subscribe"]);
        assert_eq!(format!("{o:?}"), r#"["publish","subscribe"]"#);
        assert_eq!(ops(&["*"]), Ops::ALL);
        assert_eq!(ops(&["*", "*"]), Ops::ALL);
        assert_eq!(Ops::ALL.names().collect::<Vec<_>>(), ["*"]);
        assert_eq!(format!("{:?}", Ops::NONE), "[]");
        for name in OPERATIONS {
            assert_eq!(ops(&[name]).names().collect::<Vec<_>>(), [name]);
        }
        let every = Ops::parse(&OPERATIONS).unwrap();
        assert_eq!(every.names().count(), 17);
        assert_ne!(every, Ops::ALL);
    }

    #[test]
    fn ops_parse_errors() {
        assert_eq!(
            Ops::parse::<&str>(&[]),
            Err(CapabilityError::EmptyOperations {
                resource: String::new()
            })
        );
        assert_eq!(
            Ops::parse(&["publsh"]),
            Err(CapabilityError::UnknownOperation {
                resource: String::new(),
                operation: "publsh".into()
            })
        );
        assert_eq!(
            Ops::parse(&["*", "publish"]),
            Err(CapabilityError::MixedWildcard {
                resource: String::new()
            })
        );
        assert!(Ops::parse(&["Publish"]).is_err());
        assert!(Ops::parse(&[""]).is_err());
    }

    #[test]
    fn ops_algebra() {
        let ps = ops(&["publish", "subscribe"]);
        let s = ops(&["subscribe"]);
        let every = Ops::parse(&OPERATIONS).unwrap();
        assert_eq!(Ops::ALL.intersect(ps), ps);
        assert_eq!(ps.intersect(Ops::ALL), ps);
        assert_eq!(Ops::ALL.intersect(Ops::ALL), Ops::ALL);
        assert_eq!(ps.intersect(s), s);
        assert_eq!(ps.intersect(ops(&["history"])), Ops::NONE);
        assert_eq!(ps.union(Ops::ALL), Ops::ALL);
        assert_eq!(s.union(ops(&["publish"])), ps);
        assert!(ps.contains(s));
        assert!(!s.contains(ps));
        assert!(Ops::ALL.contains(every));
        assert!(!every.contains(Ops::ALL));
        assert!(ps.contains(Ops::NONE));
        assert!(Ops::NONE.is_empty() && !Ops::NONE.is_all());
        assert!(Ops::ALL.is_all() && !Ops::ALL.is_empty());
        assert_eq!(Ops::from_name("history"), Some(ops(&["history"])));
        assert_eq!(Ops::from_name("*"), Some(Ops::ALL));
        assert_eq!(Ops::from_name("nope"), None);
    }

    // --- parsing errors ---------------------------------------------------

    #[test]
    fn parse_errors_are_specific() {
        use CapabilityError::*;
        assert!(matches!(Capability::parse("{"), Err(NotJson(_))));
        assert!(matches!(Capability::parse(""), Err(NotJson(_))));
        assert!(matches!(Capability::parse(r#"{"a":["publish"]} x"#), Err(NotJson(_))));
        for top in ["[]", "[1,2]", "\"x\"", "1", "-1", "1.5", "true", "null"] {
            assert_eq!(Capability::parse(top), Err(NotAnObject), "{top}");
        }
        assert_eq!(
            Capability::parse(r#"{"chat":"publish"}"#),
            Err(NotAList {
                resource: "chat".into()
            })
        );
        assert_eq!(
            Capability::parse(r#"{"chat":{"publish":true}}"#),
            Err(NotAList {
                resource: "chat".into()
            })
        );
        assert_eq!(
            Capability::parse(r#"{"chat":["publish",1]}"#),
            Err(NotAString {
                resource: "chat".into()
            })
        );
        assert_eq!(
            Capability::parse(r#"{"chat":[null]}"#),
            Err(NotAString {
                resource: "chat".into()
            })
        );
        assert_eq!(
            Capability::parse(r#"{"chat":[]}"#),
            Err(EmptyOperations {
                resource: "chat".into()
            })
        );
        assert_eq!(
            Capability::parse(r#"{"chat:x":["publsh"]}"#),
            Err(UnknownOperation {
                resource: "chat:x".into(),
                operation: "publsh".into()
            })
        );
        assert_eq!(
            Capability::parse(r#"{"chat":["*","publish"]}"#),
            Err(MixedWildcard {
                resource: "chat".into()
            })
        );
        assert_eq!(
            Capability::parse(r#"{"chat":["publish"],"chat":["subscribe"]}"#),
            Err(DuplicateResource {
                resource: "chat".into()
            })
        );
        // Duplicates spelled differently but equal after JSON unescaping.
        assert_eq!(
            Capability::parse(r#"{"chat":["publish"],"ch\u0061t":["subscribe"]}"#),
            Err(DuplicateResource {
                resource: "chat".into()
            })
        );
    }

    #[test]
    fn invalid_resources() {
        let cases = [
            ("", REASON_EMPTY),
            (":chat", REASON_COLON),
            ("[chat", REASON_BRACKET),
            ("[foo]bar", REASON_BRACKET),
            ("[queue]", REASON_BARE_QUALIFIER),
            ("[meta]", REASON_BARE_QUALIFIER),
            ("[*]", REASON_BARE_QUALIFIER),
            ("[queue]:x", REASON_COLON),
            ("[*][queue]x", REASON_DOUBLE),
            ("chat\nroom", REASON_CONTROL),
            ("chat\u{0}", REASON_CONTROL),
            ("chat\u{7f}", REASON_CONTROL),
            ("chat\u{85}", REASON_CONTROL),
        ];
        for (resource, reason) in cases {
            assert_eq!(
                validate_resource(resource),
                Err(CapabilityError::InvalidResource {
                    resource: resource.into(),
                    reason
                }),
                "{resource:?}"
            );
            let json = serde_json::json!({ resource: ["publish"] }).to_string();
            assert_eq!(
                Capability::parse(&json),
                Err(CapabilityError::InvalidResource {
                    resource: resource.into(),
                    reason
                })
            );
        }
        for ok in [
            "*",
            "chat",
            "chat:*",
            "foo*",
            "a::b",
            "a:",
            "[queue]*",
            "[queue]app-q1",
            "[meta]*",
            "[meta]log",
            "[*]*",
            "[*]chat:*",
            "ünïcødé:\"q\"\\",
            "x[y]",
        ] {
            assert_eq!(validate_resource(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn resource_names_over_2048_bytes_are_invalid_and_echoed_truncated() {
        let at_limit = format!("chat:{}", "a".repeat(MAX_RESOURCE_BYTES - 5));
        assert_eq!(validate_resource(&at_limit), Ok(()));
        // Bytes, not characters: 1,024 two-byte characters plus "x" is 2,049 bytes.
        for long in [format!("{at_limit}b"), format!("x{}", "é".repeat(1024))] {
            let e = validate_resource(&long).unwrap_err();
            assert_eq!(
                e,
                CapabilityError::InvalidResource {
                    resource: clip(&long),
                    reason: REASON_TOO_LONG
                }
            );
            assert!(e.to_string().contains("at most 2048 bytes"), "{e}");
            assert!(e.to_string().len() < 300, "the name is not echoed whole: {e}");
            let json = serde_json::json!({ long.as_str(): ["subscribe"] }).to_string();
            assert!(matches!(
                Capability::parse(&json),
                Err(CapabilityError::InvalidResource {
                    reason: REASON_TOO_LONG,
                    ..
                })
            ));
        }
        assert!(REASON_TOO_LONG.contains(&MAX_RESOURCE_BYTES.to_string()));
    }

    #[test]
    fn an_intersection_over_the_length_limit_is_dropped() {
        // Each side is valid; their meet ("a…:b…") would be longer than the limit.
        let requested = cap(&format!(r#"{{"*:{}":["subscribe"]}}"#, "b".repeat(2000)));
        let allowed = cap(&format!(r#"{{"{}:*":["subscribe"]}}"#, "a".repeat(100)));
        assert!(Capability::intersect(&requested, &allowed).is_empty());
        let short = cap(r#"{"*:b":["subscribe"]}"#);
        assert_eq!(
            Capability::intersect(&short, &allowed).to_canonical_string(),
            format!(r#"{{"{}:b":["subscribe"]}}"#, "a".repeat(100))
        );
    }

    #[test]
    fn error_messages_are_instructions_and_truncated() {
        let e = Capability::parse(r#"{"chat:x":["publsh"]}"#).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "capability resource \"chat:x\": unknown operation \"publsh\"; use one of annotation-publish,"
            ),
            "{msg}"
        );
        assert!(msg.contains("subscribe, or \"*\" alone"), "{msg}");
        let e = Ops::parse(&["nope"]).unwrap_err().to_string();
        assert!(e.starts_with("capability operations: unknown operation"), "{e}");

        let long = "x".repeat(10_000);
        let json = format!(r#"{{"{long}":["{long}"]}}"#);
        let msg = Capability::parse(&json).unwrap_err().to_string();
        assert!(msg.len() < 1_000, "{}", msg.len());
        assert!(msg.contains('…'));
        let msg = Capability::parse(&format!(r#"{{"{long}\n":["publish"]}}"#))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 400, "{msg}");
        assert!(msg.contains("control characters"), "{msg}");
        // Truncation respects char boundaries.
        assert_eq!(clip(&"é".repeat(100)).chars().count(), MAX_ECHO + 1);
        assert_eq!(clip("short"), "short");

        for e in [
            CapabilityError::NotJson("x".into()),
            CapabilityError::NotAnObject,
            CapabilityError::NotAList { resource: "r".into() },
            CapabilityError::NotAString { resource: "r".into() },
            CapabilityError::EmptyOperations { resource: "r".into() },
            CapabilityError::MixedWildcard { resource: "r".into() },
            CapabilityError::DuplicateResource { resource: "r".into() },
        ] {
            let msg = e.to_string();
            assert!(msg.contains(';'), "no instruction in {msg}");
        }
    }

    // --- canonical form ---------------------------------------------------

    #[test]
    fn canonical_spec_example() {
        let c = cap(r#"{"private":["subscribe","publish","presence"],"*":["subscribe"]}"#);
        assert_eq!(
            c.to_canonical_string(),
            r#"{"*":["subscribe"],"private":["presence","publish","subscribe"]}"#
        );
        assert_eq!(c.to_string(), c.to_canonical_string());
    }

    #[test]
    fn canonical_ignores_whitespace_order_and_duplicate_ops() {
        let a = cap(r#"{"chat:*":["publish","subscribe"],"notifications":["subscribe"]}"#);
        let b = cap(
            "{ \n\t\"notifications\" : [ \"subscribe\" ,\"subscribe\"] ,\r\n \"chat:*\": [\"subscribe\", \"publish\"] }",
        );
        assert_eq!(a, b);
        assert_eq!(a.to_canonical_string(), b.to_canonical_string());
        assert_eq!(
            a.to_canonical_string(),
            r#"{"chat:*":["publish","subscribe"],"notifications":["subscribe"]}"#
        );
        assert_eq!(cap(r#"{"x":["*","*"]}"#).to_canonical_string(), r#"{"x":["*"]}"#);
        assert_eq!(Capability::default().to_canonical_string(), "{}");
        assert_eq!(cap("{}"), Capability::default());
        assert_eq!(cap(" {\n} ").to_canonical_string(), "{}");
    }

    #[test]
    fn canonical_escaping_matches_serde_json() {
        for key in [
            "a\"b",
            "back\\slash",
            "ünïcødé",
            "emoji😀",
            "slash/x",
            "\u{2028}",
            "[queue]\"",
        ] {
            let mut c = Capability::default();
            c.insert(key, ops(&["publish"])).unwrap();
            let expected = serde_json::json!({ key: ["publish"] }).to_string();
            assert_eq!(c.to_canonical_string(), expected);
            assert_eq!(cap(&expected), c);
        }
    }

    #[test]
    fn byte_order_sorting() {
        // '*' (0x2a) < 'A' < '[' (0x5b) < 'a'.
        let c = cap(r#"{"a":["*"],"[queue]q":["publish"],"B":["history"],"*":["stats"]}"#);
        assert_eq!(
            c.to_canonical_string(),
            r#"{"*":["stats"],"B":["history"],"[queue]q":["publish"],"a":["*"]}"#
        );
    }

    #[test]
    fn from_value_insert_union() {
        let v = serde_json::json!({"b": ["publish"], "a": ["subscribe"]});
        let mut c = Capability::from_value(&v).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a"), Some(ops(&["subscribe"])));
        assert_eq!(c.get("zzz"), None);
        assert_eq!(
            Capability::from_value(&serde_json::json!([1])),
            Err(CapabilityError::NotAnObject)
        );
        assert_eq!(
            Capability::from_value(&serde_json::json!({"a": "x"})),
            Err(CapabilityError::NotAList { resource: "a".into() })
        );

        c.insert("a", ops(&["history"])).unwrap();
        assert_eq!(c.get("a"), Some(ops(&["history", "subscribe"])));
        c.insert("new", Ops::NONE).unwrap();
        assert_eq!(c.get("new"), None);
        assert!(c.insert(":bad", Ops::NONE).is_err());
        assert!(c.insert("\n", ops(&["publish"])).is_err());

        let mut d = cap(r#"{"a":["publish"],"c":["*"]}"#);
        d.union_with(&c);
        assert_eq!(
            d.to_canonical_string(),
            r#"{"a":["history","publish","subscribe"],"b":["publish"],"c":["*"]}"#
        );
        let names: Vec<_> = d.iter().map(|(r, _)| r).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(!d.is_empty());
        assert!(Capability::default().is_empty());
        assert_eq!(
            "{\"a\":[\"publish\"]}".parse::<Capability>(),
            Ok(cap(r#"{"a":["publish"]}"#))
        );
    }

    // --- matching ---------------------------------------------------------

    #[test]
    fn matching_rules() {
        let yes = [
            ("*", "chat"),
            ("*", "chat:lobby"),
            ("*", "a::b"),
            ("*", "a:"),
            ("*", "foo*"),
            ("chat", "chat"),
            ("ns:*", "ns:a"),
            ("ns:*", "ns:a:b"),
            ("ns:*", "ns:a::b"),
            ("ns:*", "ns:a:"),
            ("foo:*:baz", "foo:x:baz"),
            ("foo*", "foo*"),
            ("[queue]*", "[queue]q1"),
            ("[queue]q1", "[queue]q1"),
            ("[meta]*", "[meta]log"),
            ("[*]*", "chat"),
            ("[*]*", "[queue]q"),
            ("[*]*", "[meta]m"),
            ("[*]chat:*", "chat:x"),
            ("[*]chat:*", "[queue]chat:x"),
            ("[*]chat:*", "[meta]chat:x"),
            ("a:*", "a:*"),
            ("*:b", "*:b"),
        ];
        let no = [
            ("*", "[queue]q"),
            ("*", "[meta]m"),
            ("ns:*", "ns"),
            ("ns:*", "ns:"),
            ("ns:*", "ns::a"),
            ("ns:*", "nsx:a"),
            ("foo:*:baz", "foo:x:y:baz"),
            ("foo:*:baz", "foo::baz"),
            ("foo:*:baz", "foo:baz"),
            ("foo*", "foo"),
            ("foo*", "foox"),
            ("foo*", "foo:x"),
            ("chat", "chat:x"),
            ("chat", "[queue]chat"),
            ("[queue]*", "q"),
            ("[queue]*", "[meta]q"),
            ("[meta]*", "[queue]q"),
            ("[*]chat:*", "chat"),
            ("a:b", "a:*"),
            // Invalid names / `[*]` names are not concrete.
            ("*", ""),
            ("*", ":x"),
            ("[*]*", "[*]x"),
            ("*", "[x]y"),
            ("*", "a\nb"),
            // Invalid pattern.
            (":*", ":x"),
        ];
        for (p, n) in yes {
            assert!(pattern_matches(p, n), "{p} should match {n}");
        }
        for (p, n) in no {
            assert!(!pattern_matches(p, n), "{p} should not match {n}");
        }
    }

    #[test]
    fn covering_rules() {
        let yes = [
            ("*", "*"),
            ("*", "chat"),
            ("*", "chat:*"),
            ("*", "a:*:c"),
            ("*", "a::b"),
            ("[*]*", "*"),
            ("[*]*", "[queue]*"),
            ("[*]*", "[meta]x"),
            ("[*]*", "[*]chat:*"),
            ("[*]chat:*", "chat:x"),
            ("[*]chat:*", "[queue]chat:*"),
            ("ns:*", "ns:*"),
            ("ns:*", "ns:a"),
            ("ns:*", "ns:*:b"),
            ("ns:*", "ns:a::"),
            ("a:*", "a:b:*"),
            ("foo:*:baz", "foo:bar:baz"),
            ("foo:*:baz", "foo:*:baz"),
            ("*:*", "a:*"),
            ("foo*", "foo*"),
        ];
        let no = [
            ("*", "[queue]*"),
            ("*", "[*]chat"),
            ("*", "[*]*"),
            ("[queue]*", "[*]*"),
            ("[queue]*", "*"),
            ("chat:*", "chat"),
            ("chat:*", "*"),
            ("ns:*", "ns::a"),
            ("foo:*:baz", "foo::baz"),
            ("foo:*:baz", "foo:*:*"),
            ("a:*:c", "a:*"),
            ("foo*", "foo:*"),
            ("foo*", "foo"),
            ("a", "*"),
            ("a:b", "a:*"),
            (":x", ":x"),
        ];
        for (w, n) in yes {
            assert!(pattern_covers(w, n), "{w} should cover {n}");
        }
        for (w, n) in no {
            assert!(!pattern_covers(w, n), "{w} should not cover {n}");
        }
    }

    #[test]
    fn allows_unions_entries() {
        let c = cap(r#"{"*":["subscribe"],"chat:*":["publish"],"[queue]*":["*"],"x":["*"]}"#);
        assert!(c.allows("chat:a", "subscribe"));
        assert!(c.allows("chat:a", "publish"));
        assert!(!c.allows("chat:a", "presence"));
        assert!(!c.allows("chat:a", "*"));
        assert!(c.allows("x", "*"));
        assert!(c.allows("x", "history"));
        assert!(c.allows("[queue]q", "history"));
        assert!(!c.allows("[meta]m", "subscribe"));
        assert!(!c.allows("chat:a", "bogus"));
        assert!(!c.allows("x", "bogus"));
        assert!(!c.allows("[*]x", "subscribe"));
        assert!(!c.allows("", "subscribe"));
    }

    // --- intersection -----------------------------------------------------

    #[test]
    fn intersect_examples() {
        let cases = [
            // Exact resources.
            (
                r#"{"chat":["publish","subscribe"]}"#,
                r#"{"chat":["subscribe","presence"]}"#,
                r#"{"chat":["subscribe"]}"#,
            ),
            // Disjoint ops drop the resource.
            (r#"{"chat":["publish"]}"#, r#"{"chat":["subscribe"]}"#, "{}"),
            // Allowed wildcard covers the request.
            (
                r#"{"chat:lobby":["*"]}"#,
                r#"{"chat:*":["subscribe"]}"#,
                r#"{"chat:lobby":["subscribe"]}"#,
            ),
            // Request wider than allowed: narrowed to allowed.
            (
                r#"{"*":["subscribe","publish"]}"#,
                r#"{"chat:*":["subscribe"],"news":["publish","history"]}"#,
                r#"{"chat:*":["subscribe"],"news":["publish"]}"#,
            ),
            // `*` does not reach queues or metachannels.
            (
                r#"{"[queue]q":["subscribe"],"[meta]m":["subscribe"]}"#,
                r#"{"*":["*"]}"#,
                "{}",
            ),
            (r#"{"*":["*"]}"#, r#"{"[queue]*":["subscribe"]}"#, "{}"),
            // `[*]*` reaches everything.
            (
                r#"{"[queue]q":["subscribe"],"[meta]m":["subscribe"],"c":["publish"]}"#,
                r#"{"[*]*":["*"]}"#,
                r#"{"[meta]m":["subscribe"],"[queue]q":["subscribe"],"c":["publish"]}"#,
            ),
            (
                r#"{"[*]*":["subscribe"]}"#,
                r#"{"[queue]q":["*"]}"#,
                r#"{"[queue]q":["subscribe"]}"#,
            ),
            (
                r#"{"*":["subscribe"]}"#,
                r#"{"[*]*":["subscribe"]}"#,
                r#"{"*":["subscribe"]}"#,
            ),
            (
                r#"{"[*]*":["subscribe"]}"#,
                r#"{"*":["subscribe"]}"#,
                r#"{"*":["subscribe"]}"#,
            ),
            // `[*]pattern` against a namespaced pattern.
            (
                r#"{"[*]chat:*":["publish"]}"#,
                r#"{"[queue]*":["publish"],"chat:a":["publish"]}"#,
                r#"{"[queue]chat:*":["publish"],"chat:a":["publish"]}"#,
            ),
            (
                r#"{"[*]chat":["publish"]}"#,
                r#"{"[*]*":["publish"]}"#,
                r#"{"[*]chat":["publish"]}"#,
            ),
            // Meet of overlapping patterns.
            (
                r#"{"foo:*:baz":["publish"]}"#,
                r#"{"foo:bar:*":["publish"]}"#,
                r#"{"foo:bar:baz":["publish"]}"#,
            ),
            (
                r#"{"a:*":["publish"]}"#,
                r#"{"*:b:*":["publish"]}"#,
                r#"{"a:b:*":["publish"]}"#,
            ),
            (
                r#"{"*:x":["publish"]}"#,
                r#"{"a:*":["publish"]}"#,
                r#"{"a:x":["publish"]}"#,
            ),
            // Trailing `*` needs at least one segment.
            (r#"{"ns":["publish"]}"#, r#"{"ns:*":["publish"]}"#, "{}"),
            (r#"{"ns:*":["publish"]}"#, r#"{"ns":["publish"]}"#, "{}"),
            // Non-trailing `*` is one segment.
            (r#"{"foo:a:b:baz":["publish"]}"#, r#"{"foo:*:baz":["publish"]}"#, "{}"),
            (
                r#"{"foo:*:baz":["publish"]}"#,
                r#"{"foo:*":["publish"]}"#,
                r#"{"foo:*:baz":["publish"]}"#,
            ),
            (
                r#"{"foo:*":["publish"]}"#,
                r#"{"foo:*:baz":["publish"]}"#,
                r#"{"foo:*:baz":["publish"]}"#,
            ),
            // `foo*` is literal.
            (r#"{"foo":["publish"]}"#, r#"{"foo*":["publish"]}"#, "{}"),
            (r#"{"foo:x":["publish"]}"#, r#"{"foo*":["publish"]}"#, "{}"),
            (
                r#"{"foo*":["publish"]}"#,
                r#"{"*":["publish"]}"#,
                r#"{"foo*":["publish"]}"#,
            ),
            // Empty segments are never claimed by a wildcard.
            (r#"{"a::b":["publish"]}"#, r#"{"a:*:b":["publish"]}"#, "{}"),
            (r#"{"a:*:b":["publish"]}"#, r#"{"a::b":["publish"]}"#, "{}"),
            (r#"{"ns::x":["publish"]}"#, r#"{"ns:*":["publish"]}"#, "{}"),
            (
                r#"{"a::b":["publish"]}"#,
                r#"{"*":["publish"]}"#,
                r#"{"a::b":["publish"]}"#,
            ),
            (
                r#"{"a::b":["publish"]}"#,
                r#"{"a::b":["publish"]}"#,
                r#"{"a::b":["publish"]}"#,
            ),
            // `*` ops.
            (r#"{"chat":["*"]}"#, r#"{"chat":["*"]}"#, r#"{"chat":["*"]}"#),
            (
                r#"{"chat":["*"]}"#,
                r#"{"*":["history","subscribe"]}"#,
                r#"{"chat":["history","subscribe"]}"#,
            ),
            // Grants for the same resource are united.
            (
                r#"{"chat":["*"]}"#,
                r#"{"*":["subscribe"],"chat":["publish"]}"#,
                r#"{"chat":["publish","subscribe"]}"#,
            ),
            // Empty sides.
            ("{}", r#"{"*":["*"]}"#, "{}"),
            (r#"{"*":["*"]}"#, "{}", "{}"),
        ];
        for (req, alw, want) in cases {
            assert_eq!(inter(req, alw), want, "{req} ∩ {alw}");
        }
    }

    #[test]
    fn meet_is_covered_by_both() {
        let pats = [
            "*", "[*]*", "a", "a:*", "*:b", "a:*:c", "*:*", "a:b:*", "[queue]*", "[*]a:*", "[meta]a", "a::b", "a:",
        ];
        for p in pats {
            for q in pats {
                let (pp, qq) = (parse_resource(p).unwrap(), parse_resource(q).unwrap());
                if let Some(m) = meet(&pp, &qq) {
                    assert!(covers(&pp, &m) && covers(&qq, &m), "{p} ∧ {q} = {m:?}");
                }
            }
        }
    }
}
