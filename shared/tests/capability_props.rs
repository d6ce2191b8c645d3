//! Property tests for `shared::capability`.
//!
//! Patterns and names are drawn from a tiny alphabet (`a`, `b`, `*`, rarely the
//! empty segment) so that generated capabilities overlap often. Rights are
//! compared through `Capability::allows` on concrete names: random ones plus
//! instances derived from every pattern involved (so matches are frequent).

use proptest::collection::vec;
use proptest::prelude::*;
use shared::capability::{pattern_covers, pattern_matches, validate_resource, Capability, Ops, OPERATIONS};

/// Operations checked on every sampled name: all named ones and `*`.
fn all_op_names() -> impl Iterator<Item = &'static str> {
    OPERATIONS.iter().copied().chain(std::iter::once("*"))
}

fn join(qualifier: &str, mut segs: Vec<&str>) -> String {
    // A name may not start with `:` (an empty first segment).
    if segs.first() == Some(&"") {
        segs[0] = "a";
    }
    format!("{qualifier}{}", segs.join(":"))
}

/// A resource pattern: optional qualifier, 1–4 segments from {a, b, *, ""}.
fn pattern() -> impl Strategy<Value = String> {
    let qualifier = prop_oneof![
        6 => Just(""),
        1 => Just("[queue]"),
        1 => Just("[meta]"),
        2 => Just("[*]"),
    ];
    let seg = prop_oneof![
        4 => Just("a"),
        3 => Just("b"),
        4 => Just("*"),
        1 => Just(""),
        1 => Just("a*"),
    ];
    (qualifier, vec(seg, 1..=4)).prop_map(|(q, segs)| join(q, segs))
}

/// A concrete resource name: channel, queue or metachannel; segments are literal.
fn name() -> impl Strategy<Value = String> {
    let qualifier = prop_oneof![6 => Just(""), 1 => Just("[queue]"), 1 => Just("[meta]")];
    let seg = prop_oneof![
        5 => Just("a"),
        4 => Just("b"),
        1 => Just("c"),
        1 => Just(""),
        1 => Just("*"),
        1 => Just("a*"),
    ];
    (qualifier, vec(seg, 1..=5)).prop_map(|(q, segs)| join(q, segs))
}

/// An operation set, mostly over a few operations so that sets overlap.
fn ops() -> impl Strategy<Value = Ops> {
    let common = prop_oneof![
        4 => Just("publish"),
        4 => Just("subscribe"),
        2 => Just("presence"),
        1 => (0..OPERATIONS.len()).prop_map(|i| OPERATIONS[i]),
    ];
    prop_oneof![
        1 => Just(Ops::ALL),
        5 => vec(common, 1..=3).prop_map(|names| Ops::parse(&names).expect("valid operations")),
    ]
}

/// A pattern whose literal segments need JSON escaping or are non-ASCII.
fn odd_pattern() -> impl Strategy<Value = String> {
    let qualifier = prop_oneof![Just(""), Just("[queue]"), Just("[*]")];
    let seg = prop_oneof![
        Just("a"),
        Just("*"),
        Just("\""),
        Just("\\"),
        Just("/"),
        Just("é"),
        Just("😀"),
        Just("x[y]"),
        Just("\u{2028}"),
    ];
    (qualifier, vec(seg, 1..=3)).prop_map(|(q, segs)| join(q, segs))
}

fn capability() -> impl Strategy<Value = Capability> {
    capability_of(pattern())
}

fn capability_of(pattern: impl Strategy<Value = String>) -> impl Strategy<Value = Capability> {
    vec((pattern, ops()), 0..=5).prop_map(|entries| {
        let mut cap = Capability::default();
        for (resource, ops) in entries {
            cap.insert(&resource, ops).expect("generated resources are valid");
        }
        cap
    })
}

/// Concrete names matched by (or near) `pattern`: every namespace for `[*]`,
/// wildcards replaced by `a`, `zz` or `*`, and a trailing wildcard also
/// expanded into two segments.
fn instances(pattern: &str) -> Vec<String> {
    let (qualifiers, rest): (&[&str], &str) = if let Some(rest) = pattern.strip_prefix("[*]") {
        (&["", "[queue]", "[meta]"], rest)
    } else if let Some(rest) = pattern.strip_prefix("[queue]") {
        (&["[queue]"], rest)
    } else if let Some(rest) = pattern.strip_prefix("[meta]") {
        (&["[meta]"], rest)
    } else {
        (&[""], pattern)
    };
    let mut out = Vec::new();
    for q in qualifiers {
        for fill in ["a", "zz", "*", "a:b", "a:"] {
            let body: Vec<&str> = rest.split(':').map(|seg| if seg == "*" { fill } else { seg }).collect();
            out.push(format!("{q}{}", body.join(":")));
        }
        // The name one segment shorter/longer than the pattern.
        out.push(format!("{q}{rest}:a"));
        if let Some((head, _)) = rest.rsplit_once(':') {
            out.push(format!("{q}{head}"));
        }
    }
    out
}

/// Random names plus instances of every pattern in the given capabilities.
fn sample_names(random: &[String], caps: &[&Capability]) -> Vec<String> {
    let mut names = random.to_vec();
    for cap in caps {
        for (resource, _) in cap.iter() {
            names.extend(instances(resource));
        }
    }
    names.sort();
    names.dedup();
    names
}

proptest! {
    /// (1) The intersection never grants what either side does not grant, and
    /// (5) it grants everything both sides grant (exact within our matching model).
    #[test]
    fn intersect_never_widens_and_is_exact(
        requested in capability(),
        allowed in capability(),
        random in vec(name(), 0..12),
    ) {
        let result = Capability::intersect(&requested, &allowed);
        for (resource, ops) in result.iter() {
            prop_assert!(validate_resource(resource).is_ok(), "{resource:?}");
            prop_assert!(!ops.is_empty());
        }
        for n in sample_names(&random, &[&requested, &allowed, &result]) {
            for op in all_op_names() {
                let got = result.allows(&n, op);
                let req = requested.allows(&n, op);
                let alw = allowed.allows(&n, op);
                prop_assert!(!got || (req && alw),
                    "widened: {n} {op}: {} ∩ {} = {}", requested, allowed, result);
                prop_assert_eq!(got, req && alw,
                    "lost {} {}: {} ∩ {} = {}", n, op, requested, allowed, result);
            }
        }
    }

    /// (2) The canonical string re-parses to an equal capability, and
    /// canonicalization is idempotent and agrees with serde_json.
    #[test]
    fn canonical_round_trip(cap in prop_oneof![capability(), capability_of(odd_pattern())]) {
        let text = cap.to_canonical_string();
        let reparsed = Capability::parse(&text).expect("canonical text parses");
        prop_assert_eq!(&reparsed, &cap);
        prop_assert_eq!(reparsed.to_canonical_string(), text.clone());
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        prop_assert_eq!(Capability::from_value(&value).expect("valid value"), cap);
        // serde_json's own compact form of the same (sorted) map.
        prop_assert_eq!(serde_json::to_string(&value).expect("serializes"), text);
    }

    /// (2b) Whitespace and entry order in the input do not change the canonical form.
    #[test]
    fn canonical_ignores_layout(
        cap in prop_oneof![capability(), capability_of(odd_pattern())],
        reverse in any::<bool>(),
    ) {
        let mut entries: Vec<String> = cap
            .iter()
            .map(|(r, o)| {
                let mut names: Vec<&str> = o.names().collect();
                names.reverse();
                format!(
                    " {} :\n[ {} ] ",
                    serde_json::to_string(r).expect("string"),
                    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(" , ")
                )
            })
            .collect();
        if reverse {
            entries.reverse();
        }
        let text = format!("\t{{{}}}\r\n", entries.join(","));
        let parsed = Capability::parse(&text).expect("layout variant parses");
        prop_assert_eq!(parsed.to_canonical_string(), cap.to_canonical_string());
    }

    /// (3) Intersecting with itself allows exactly what the capability allows.
    #[test]
    fn intersect_with_self_is_identity(cap in capability(), random in vec(name(), 0..12)) {
        let result = Capability::intersect(&cap, &cap);
        for n in sample_names(&random, &[&cap]) {
            for op in all_op_names() {
                prop_assert_eq!(result.allows(&n, op), cap.allows(&n, op), "{} {}", n, op);
            }
        }
        // Every entry of `cap` is kept verbatim.
        for (resource, ops) in cap.iter() {
            let kept = result.get(resource).unwrap_or(Ops::NONE);
            prop_assert!(kept.contains(ops), "{resource}");
        }
    }

    /// (4) The intersection is contained in both sides, for both argument orders,
    /// and both orders allow the same.
    #[test]
    fn intersect_contained_in_both_orders(
        x in capability(),
        y in capability(),
        random in vec(name(), 0..12),
    ) {
        let xy = Capability::intersect(&x, &y);
        let yx = Capability::intersect(&y, &x);
        for n in sample_names(&random, &[&x, &y]) {
            for op in all_op_names() {
                for r in [&xy, &yx] {
                    if r.allows(&n, op) {
                        prop_assert!(x.allows(&n, op) && y.allows(&n, op), "{} {}", n, op);
                    }
                }
                prop_assert_eq!(xy.allows(&n, op), yx.allows(&n, op), "{} {}", n, op);
            }
        }
    }

    /// A requested resource that is exactly an allowed resource keeps `ops_r ∩ ops_a`.
    #[test]
    fn exact_resource_keeps_common_ops(resource in pattern(), r in ops(), a in ops()) {
        let mut requested = Capability::default();
        requested.insert(&resource, r).expect("valid");
        let mut allowed = Capability::default();
        allowed.insert(&resource, a).expect("valid");
        let result = Capability::intersect(&requested, &allowed);
        let common = r.intersect(a);
        if common.is_empty() {
            prop_assert!(result.is_empty());
        } else {
            prop_assert_eq!(result.get(&resource), Some(common));
            prop_assert_eq!(result.len(), 1);
        }
    }

    /// `pattern_covers` is sound: whatever the narrow pattern matches, the wide one matches.
    #[test]
    fn covers_is_sound(wide in pattern(), narrow in pattern(), random in vec(name(), 0..12)) {
        let mut names = random;
        names.extend(instances(&narrow));
        names.extend(instances(&wide));
        if pattern_covers(&wide, &narrow) {
            for n in &names {
                if pattern_matches(&narrow, n) {
                    prop_assert!(pattern_matches(&wide, n), "{wide} ⊉ {narrow} at {n}");
                }
            }
        }
        prop_assert!(pattern_covers(&wide, &wide));
    }

    /// Operation-set algebra agrees with membership of single operations.
    #[test]
    fn ops_algebra(x in ops(), y in ops()) {
        let (i, u) = (x.intersect(y), x.union(y));
        for op in all_op_names() {
            let o = Ops::from_name(op).expect("known");
            prop_assert_eq!(i.contains(o), x.contains(o) && y.contains(o), "{}", op);
            prop_assert_eq!(u.contains(o), x.contains(o) || y.contains(o), "{}", op);
        }
        prop_assert!(x.contains(i) && y.contains(i) && u.contains(x) && u.contains(y));
        prop_assert_eq!(Ops::parse(&x.names().collect::<Vec<_>>()), Ok(x));
    }
}
