//! What Pacemaker's RELAX NG schema allows, checked without the schema files:
//! which elements may appear under which parent, which attributes each may
//! carry, and the values of typed attributes (scores, booleans, enumerations,
//! XML ids), from a table generated from the schemas (union of pacemaker-1.0
//! up to 3.9, see `tools/gen_schema_table.py`). On top of that, values the
//! schema leaves as free text but Pacemaker parses: operation intervals and
//! well-known boolean, duration and score options in meta attributes and
//! cluster properties.
//!
//! Writes are checked ([`crate::ops::apply_validated`]); plain reads
//! ([`crate::Cib::parse`]) are not, so an old or hand-made CIB still loads.
//! The status section is open content in the schema and is not checked.
//! Context-sensitive rules (required attributes, choices between attribute
//! groups, ordering, per-version differences) are not checked either.

#[rustfmt::skip] // generated
#[path = "schema_table.rs"]
mod table;

use table::{ELEMENTS, T_BOOLEAN, T_ID, T_IDREF, T_INTEGER, T_NONNEGATIVEINTEGER, T_POSITIVEINTEGER};

use crate::error::CibError;
use crate::xml::{Document, Element};

/// Allowed values of one attribute: anything, or any of `values` or of the XSD `types` (bit set).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Val {
    any: bool,
    values: &'static [&'static str],
    types: u8,
}

const ANY: Val = Val { any: true, values: &[], types: 0 };

/// One element name under one parent element name (`""` for the root).
#[derive(Debug)]
pub(crate) struct E {
    parent: &'static str,
    name: &'static str,
    /// Anything goes below (the status section).
    open: bool,
    attrs: &'static [(&'static str, Val)],
    children: &'static [&'static str],
}

fn lookup(parent: &str, name: &str) -> Option<&'static E> {
    ELEMENTS.binary_search_by(|e| (e.parent, e.name).cmp(&(parent, name))).ok().map(|i| &ELEMENTS[i])
}

/// The first problem [`problems`] finds, if any.
pub fn check(doc: &Document) -> Result<(), CibError> {
    match problems(doc).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every schema problem in the document, in document order: unknown elements
/// (their contents are not looked at), unknown attributes and bad values.
/// A CIB that says `validate-with="none"` asks for no validation and has none.
pub fn problems(doc: &Document) -> Vec<CibError> {
    let mut out = Vec::new();
    if doc.root.attr("validate-with").map(str::trim) == Some("none") {
        return out;
    }
    // Explicit stack: no recursion, whatever the depth. Each element comes with its parent and the parent's rule.
    let mut stack: Vec<(&Element, Option<(&Element, &'static E)>)> = vec![(&doc.root, None)];
    while let Some((e, parent)) = stack.pop() {
        let pname = parent.map_or("", |(p, _)| p.name.as_str());
        let Some(rule) = lookup(pname, &e.name) else {
            out.push(unknown_element(e, parent));
            continue;
        };
        if rule.open {
            continue;
        }
        check_attributes(e, rule, &mut out);
        check_extra(e, pname, &mut out);
        let kids: Vec<&Element> = e.elements().collect();
        stack.extend(kids.into_iter().rev().map(|k| (k, Some((e, rule)))));
    }
    out
}

fn id_of(e: &Element) -> String {
    e.id().map(clean).unwrap_or_default()
}

/// A value fit for a one-line message: control characters escaped, long values cut.
fn clean(s: &str) -> String {
    let mut out: String =
        s.chars().take(80).flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

fn unknown_element(e: &Element, parent: Option<(&Element, &E)>) -> CibError {
    let (pname, pid) = parent.map_or((String::new(), String::new()), |(p, _)| (p.name.clone(), id_of(p)));
    let allowed: &[&str] = parent.map_or(&["cib"], |(_, r)| r.children);
    CibError::UnknownElement {
        element: clean(&e.name),
        parent: pname,
        parent_id: pid,
        line: e.line,
        hint: suggest(&e.name, allowed, "contains"),
    }
}

/// "; did you mean X?" for a near miss, else the allowed names.
fn suggest(got: &str, allowed: &[&str], verb: &str) -> String {
    if let Some(best) = allowed.iter().filter(|a| **a != "*").min_by_key(|a| distance(got, a)) {
        if distance(got, best) <= 2.max(got.len() / 4) {
            return format!("; did you mean \"{best}\"?");
        }
    }
    let list: Vec<&str> = allowed.iter().copied().filter(|a| *a != "*").collect();
    if list.is_empty() {
        format!("; it {verb} nothing")
    } else {
        format!("; it {verb} only {}", list.join(", "))
    }
}

/// Levenshtein distance, case-insensitive.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check_attributes(e: &Element, rule: &E, out: &mut Vec<CibError>) {
    let open = rule.attrs.iter().any(|(n, _)| *n == "*");
    for (k, v) in &e.attrs {
        if k == "xmlns" || k.starts_with("xmlns:") {
            continue;
        }
        match rule.attrs.iter().find(|(n, _)| n == k) {
            Some((_, val)) => {
                if let Err(hint) = check_val(val, v) {
                    out.push(invalid(e, k, v, hint));
                }
            }
            None if open => {}
            None => {
                let names: Vec<&str> = rule.attrs.iter().map(|(n, _)| *n).collect();
                out.push(CibError::UnknownAttribute {
                    element: e.name.clone(),
                    id: id_of(e),
                    line: e.line,
                    attribute: clean(k),
                    hint: suggest(k, &names, "takes"),
                });
            }
        }
    }
}

fn invalid(e: &Element, attribute: &str, value: &str, hint: String) -> CibError {
    CibError::InvalidValue {
        element: e.name.clone(),
        id: id_of(e),
        line: e.line,
        attribute: attribute.to_string(),
        value: clean(value),
        hint,
    }
}

/// `Ok` if `raw` is one of the values or types `val` allows (XML Schema trims the value first).
fn check_val(val: &Val, raw: &str) -> Result<(), String> {
    if val.any {
        return Ok(());
    }
    let v = raw.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    if val.values.contains(&v) {
        return Ok(());
    }
    let t = val.types;
    let ok = (t & T_INTEGER != 0 && is_integer(v))
        || (t & T_NONNEGATIVEINTEGER != 0 && is_integer(v) && !v.starts_with('-'))
        || (t & T_POSITIVEINTEGER != 0 && is_integer(v) && !v.starts_with('-') && v.bytes().any(|b| (b'1'..=b'9').contains(&b)))
        || (t & T_BOOLEAN != 0 && matches!(v, "true" | "false" | "1" | "0"))
        || (t & (T_ID | T_IDREF) != 0 && is_ncname(v));
    if ok {
        Ok(())
    } else {
        Err(describe(val))
    }
}

fn describe(val: &Val) -> String {
    let mut alts: Vec<String> = Vec::new();
    let t = val.types;
    if t & T_INTEGER != 0 {
        alts.push("an integer".into());
    } else if t & T_NONNEGATIVEINTEGER != 0 {
        alts.push("a whole number (0 or more)".into());
    } else if t & T_POSITIVEINTEGER != 0 {
        alts.push("a whole number (1 or more)".into());
    }
    if t & T_BOOLEAN != 0 {
        alts.push("true, false, 1 or 0".into());
    }
    if t & (T_ID | T_IDREF) != 0 {
        alts.push("an XML name (a letter or _ first, then letters, digits, '-', '_' or '.')".into());
    }
    if !val.values.is_empty() {
        alts.push(val.values.join(", "));
    }
    format!("expected {}", alts.join(" or "))
}

fn is_integer(v: &str) -> bool {
    let d = v.strip_prefix(['+', '-']).unwrap_or(v);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// An XML NCName, approximately: letters (any script), digits, `-`, `_`, `.`; not starting with a digit, `-` or `.`.
pub fn is_ncname(v: &str) -> bool {
    let mut cs = v.chars();
    let Some(first) = cs.next() else { return false };
    (first.is_alphabetic() || first == '_' || !first.is_ascii() && !first.is_whitespace())
        && cs.all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.') || !c.is_ascii() && !c.is_whitespace())
}

// ---------------------------------------------------------------------------
// Values the schema leaves as text but Pacemaker parses

/// Options (meta attributes, cluster properties) Pacemaker reads as booleans.
#[rustfmt::skip]
const BOOLEAN_OPTIONS: &[&str] = &[
    "is-managed", "maintenance", "globally-unique", "interleave", "notify", "ordered", "allow-migrate", "promotable", "critical",
    "remove-after-stop", "requires-quorum", "allow-unhealthy-nodes", "enabled", "record-pending", "stonith-enabled", "fencing-enabled",
    "symmetric-cluster", "start-failure-is-fatal", "enable-startup-probes", "stop-orphan-resources", "stop-orphan-actions",
    "stop-all-resources", "startup-fencing", "concurrent-fencing", "enable-acl", "shutdown-lock", "maintenance-mode",
];

/// Options Pacemaker reads as durations.
#[rustfmt::skip]
const DURATION_OPTIONS: &[&str] = &[
    "interval", "start-delay", "failure-timeout", "stonith-timeout", "fencing-timeout", "cluster-recheck-interval",
    "dc-deadtime", "election-timeout", "shutdown-escalation", "join-integration-timeout", "join-finalization-timeout",
    "transition-delay", "shutdown-lock-limit", "priority-fencing-delay", "cluster-ipc-limit-delay",
];

/// Options Pacemaker reads as scores.
const SCORE_OPTIONS: &[&str] = &["resource-stickiness", "migration-threshold", "default-resource-stickiness"];

/// Parents whose `<nvpair>`s are Pacemaker options (instance attributes belong to agents and are free).
const OPTION_SETS: &[&str] = &["meta_attributes", "cluster_property_set"];

fn check_extra(e: &Element, parent: &str, out: &mut Vec<CibError>) {
    match e.name.as_str() {
        "op" | "op_expression" => {
            // Not `timeout`: Pacemaker runs an operation with an unreadable timeout on the
            // default one, and its regression suite has such a CIB (intervals.xml).
            for key in ["interval", "start-delay"] {
                if let Some(v) = e.attr(key).filter(|v| !is_duration(v)) {
                    out.push(invalid(e, key, v, DURATION_HINT.into()));
                }
            }
        }
        "nvpair" if OPTION_SETS.contains(&parent) => {
            let (Some(name), Some(v)) = (e.attr("name"), e.attr("value")) else { return };
            let attribute = format!("value of {}", clean(name));
            if BOOLEAN_OPTIONS.contains(&name) && !is_boolean(v) {
                out.push(invalid(e, &attribute, v, "expected a boolean: true/false, yes/no, on/off, y/n or 1/0".into()));
            } else if DURATION_OPTIONS.contains(&name) && !is_duration(v) {
                out.push(invalid(e, &attribute, v, DURATION_HINT.into()));
            } else if SCORE_OPTIONS.contains(&name) && !is_score(v) {
                out.push(invalid(e, &attribute, v, "expected a score: an integer, INFINITY, +INFINITY or -INFINITY".into()));
            }
        }
        _ => {}
    }
}

/// Whether Pacemaker parses this option (a meta attribute or cluster property) as a boolean, duration or score.
pub fn is_typed_option(name: &str) -> bool {
    BOOLEAN_OPTIONS.contains(&name) || DURATION_OPTIONS.contains(&name) || SCORE_OPTIONS.contains(&name)
}

const DURATION_HINT: &str = "expected a duration: seconds (30), a number with a unit (500ms, 10s, 5min, 1h) or ISO 8601 (PT1M30S)";

/// Pacemaker's boolean spellings (case-insensitive).
pub fn is_boolean(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "1" | "0")
}

/// An integer, `INFINITY`, `+INFINITY` or `-INFINITY`.
pub fn is_score(v: &str) -> bool {
    let v = v.trim();
    matches!(v, "INFINITY" | "+INFINITY" | "-INFINITY") || is_integer(v)
}

/// A duration as Pacemaker reads one: a whole number with an optional unit
/// (`ms`, `msec`, `us`, `usec`, `s`, `sec`, `m`, `min`, `h`, `hr`; seconds by
/// default), or an ISO 8601 duration (`P1DT2H`, `PT90S`, `P1W`).
pub fn is_duration(v: &str) -> bool {
    let v = v.trim();
    if v.starts_with('P') {
        return is_iso_duration(v);
    }
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let unit = v[digits..].trim_start().to_ascii_lowercase();
    matches!(unit.as_str(), "" | "ms" | "msec" | "us" | "usec" | "s" | "sec" | "m" | "min" | "h" | "hr")
}

/// ISO 8601 as Pacemaker reads it: `P`, then number+unit fields (`Y M W D`,
/// and after an optional `T`, `H M S`; like Pacemaker, `H` and `S` are taken before `T` too).
fn is_iso_duration(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('P') else { return false };
    let (mut fields, mut seen_t, mut num) = (0, false, String::new());
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'T' if !seen_t && num.is_empty() => seen_t = true,
            'Y' | 'M' | 'W' | 'D' | 'H' | 'S' => {
                let frac_ok = c == 'S' && num.matches('.').count() == 1 && !num.starts_with('.') && !num.ends_with('.');
                if num.is_empty() || (num.contains('.') && !frac_ok) {
                    return false;
                }
                num.clear();
                fields += 1;
            }
            _ => return false,
        }
    }
    fields > 0 && num.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(ELEMENTS.windows(2).all(|w| (w[0].parent, w[0].name) < (w[1].parent, w[1].name)));
    }

    #[test]
    fn durations() {
        for ok in [
            "0", "10", "10s", "5min", "1h", "500ms", "20 s", "10S", "2hr", "PT10S", "P1D", "PT1M30S", "P1DT2H", "PT1.5S", "P1W", "P10S",
            "PT1S2M",
        ] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "s", "-5", "10x", "1.5s", "ten", "P", "PT", "PT5", "PTS", "P1.5D", "P1X", "PT1TM", "10 s s"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn scores_booleans_names() {
        assert!(is_score("-INFINITY") && is_score("+5") && is_score("0") && !is_score("inf") && !is_score("1.5"));
        assert!(is_boolean("Yes") && is_boolean("0") && is_boolean("off") && !is_boolean("maybe"));
        assert!(is_ncname("a-b.c_1") && is_ncname("_x") && is_ncname("été") && !is_ncname("1a") && !is_ncname("a b") && !is_ncname("a:b"));
        assert_eq!(distance("interva", "interval"), 1);
    }
}
