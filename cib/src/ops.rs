//! Pure CIB operations with cibadmin's semantics (see CIB-NOTES.md §1, §3, §7).
//! Each takes a document and returns a new one, or an error that changes nothing.
//! [`apply`] adds the version bump and re-validation that the daemon needs.
//!
//! Matching follows cibadmin: objects are found by tag + `id` (first depth-first
//! hit, an element without `id` matches one without `id`), never by path.

use std::fmt;

use crate::diff::{indent_unit, insert_node, remove_at};
use crate::error::CibError;
use crate::xml::{Document, Element, Node};
use crate::Cib;

/// Children of `<configuration>` that `-o`/section arguments may name.
pub const CONFIG_SECTIONS: [&str; 10] =
    ["crm_config", "nodes", "resources", "constraints", "rsc_defaults", "op_defaults", "fencing-topology", "acls", "tags", "alerts"];

/// `(admin_epoch, epoch, num_updates)`, compared left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Version {
    pub admin_epoch: u64,
    pub epoch: u64,
    pub num_updates: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{}.{}", self.admin_epoch, self.epoch, self.num_updates)
    }
}

impl Version {
    /// The counters on an element (`<cib>` or a patch's `<source>`/`<target>`); missing or bad ones read as 0.
    pub fn of(e: &Element) -> Version {
        let n = |k| e.attr(k).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        Version { admin_epoch: n("admin_epoch"), epoch: n("epoch"), num_updates: n("num_updates") }
    }

    pub fn write_to(&self, e: &mut Element) {
        e.set_attr("admin_epoch", &self.admin_epoch.to_string());
        e.set_attr("epoch", &self.epoch.to_string());
        e.set_attr("num_updates", &self.num_updates.to_string());
    }
}

/// A write request, as halo-cibd receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Replace { section: Option<String>, xml: Element },
    Modify { xml: Element },
    Create { section: String, xml: Element },
    Delete { xml: Element },
    Patch { diff: Element },
}

/// Apply `op`, bump the version, re-validate (including the schema check,
/// [`validate_write`]); the document as stored afterwards.
pub fn apply(doc: &Document, op: &Op) -> Result<Document, CibError> {
    apply_validated(doc, op).map(|c| c.doc)
}

/// Like [`apply`], returning the validated [`Cib`] so callers need not parse it again.
///
/// Versions (CIB-NOTES §1): the request may set the counters itself (`<cib epoch=..>`
/// in a modify or replace); lowering `admin_epoch`, or `epoch` at the same
/// `admin_epoch`, is refused (a whole-CIB replace compares the full triple).
/// Then a change under `<configuration>` gives `epoch + 1, num_updates = 0`, any
/// other change `num_updates + 1`, and a no-op nothing. A patch that carries
/// its own target version is stored at that version with no extra bump (the
/// peer-replication rule; file-mode cibadmin bumps once more).
/// A delete that matches nothing succeeds without a change, as cibadmin's does.
pub fn apply_validated(doc: &Document, op: &Op) -> Result<Cib, CibError> {
    validate_write(apply_unvalidated(doc, op)?)
}

/// The operation and the version bump, without validating the result.
fn apply_unvalidated(doc: &Document, op: &Op) -> Result<Document, CibError> {
    let changed = match op {
        Op::Replace { section, xml } => replace(doc, section.as_deref(), xml.clone())?,
        Op::Modify { xml } => modify(doc, xml.clone())?,
        Op::Create { section, xml } => create(doc, section, xml.clone())?,
        Op::Delete { xml } => match delete(doc, xml.clone()) {
            Err(CibError::NotFound { .. }) => doc.clone(),
            r => r?,
        },
        Op::Patch { diff } => crate::diff::apply_patch(doc, diff)?,
    };
    let whole = matches!(op, Op::Replace { xml, .. } if xml.name == "cib");
    bump(doc, changed, whole, matches!(op, Op::Patch { .. }))
}

/// [`apply_validated`] for a document that is valid already (the replicated CIB): when the
/// write left `<configuration>` as it was (a status update: the DC writes many), only the
/// status section is read again, not the whole configuration and schema (CIB-NOTES §7.5).
/// Same result as `apply_validated` for every valid input, in less time.
pub fn apply_to_valid(doc: &Document, op: &Op) -> Result<Document, CibError> {
    let next = apply_unvalidated(doc, op)?;
    let conf_same = match (doc.root.child("configuration"), next.root.child("configuration")) {
        (Some(a), Some(b)) => same(a, b),
        _ => false,
    };
    if conf_same && doc.root.attr("validate-with") == next.root.attr("validate-with") && next.root.name == "cib" {
        if let Some(st) = next.root.child("status") {
            check_changed_status(doc.root.child("status"), st)?;
        }
        return Ok(next);
    }
    validate_write(next).map(|c| c.doc)
}

/// Read again only what a status write changed: the `node_state`s that are new or differ
/// from the valid document's (a status update touches one node; reading the status of a
/// large cluster whole costs far more than comparing it). Anything else under `<status>`
/// is read too. If the changed part alone does not read (an id-ref into an unchanged
/// node), the whole status decides.
fn check_changed_status(old: Option<&Element>, new: &Element) -> Result<(), CibError> {
    use crate::model::RefIndex;
    use crate::status::read_status;
    let Some(old) = old else {
        return read_status(&RefIndex::new(new), new).map(|_| ());
    };
    let before: rustc_hash::FxHashMap<&str, &Element> = old.children_named("node_state").filter_map(|e| e.attr("id").map(|id| (id, e))).collect();
    let mut changed = Element::new("status");
    for e in new.elements() {
        match (e.name == "node_state").then(|| e.attr("id").and_then(|id| before.get(id))).flatten() {
            Some(o) if same(o, e) => {}
            // Within a node: only its resources whose history changed (a result touches one).
            Some(o) => changed.push(changed_within(o, e, &["node_state", "lrm", "lrm_resources"])),
            None => changed.push(e.clone()),
        }
    }
    if read_status(&RefIndex::new(&changed), &changed).is_ok() {
        return Ok(());
    }
    read_status(&RefIndex::new(new), new).map(|_| ())
}

/// `new` with only what differs from `old` below it: children that are the same (by name
/// and id) as one of `old`'s are left out, and those named in `narrow` (the levels from
/// `new` down) are narrowed the same way. Attributes are kept.
fn changed_within(old: &Element, new: &Element, narrow: &[&str]) -> Element {
    if narrow.first() != Some(&new.name.as_str()) {
        return new.clone();
    }
    let mut out = Element::new(&new.name);
    out.attrs = new.attrs.clone();
    // Usually the lists line up child by child (a write replaced a few in place): compare
    // them in step, most by pointer, and pair by key only when they do not.
    let (olds, news) = (old.elements().collect::<Vec<_>>(), new.elements().collect::<Vec<_>>());
    if olds.len() == news.len() && olds.iter().zip(&news).all(|(o, c)| std::ptr::eq(*o, *c) || same_key(o, c)) {
        for (o, c) in olds.into_iter().zip(news) {
            if !same(o, c) {
                out.push(changed_within(o, c, &narrow[1..]));
            }
        }
        return out;
    }
    let before: rustc_hash::FxHashMap<(&str, Option<&str>), &Element> = olds.into_iter().map(|o| ((o.name.as_str(), o.id()), o)).collect();
    for c in news {
        match before.get(&(c.name.as_str(), c.id())).copied() {
            Some(o) if same(o, c) => {}
            Some(o) => out.push(changed_within(o, c, &narrow[1..])),
            None => out.push(c.clone()),
        }
    }
    out
}

/// The validation a written CIB gets: what [`Cib::from_document`] checks, then
/// the elements, attributes and values Pacemaker's schema allows ([`crate::schema`]).
pub fn validate_write(doc: Document) -> Result<Cib, CibError> {
    let cib = Cib::from_document(doc)?;
    crate::schema::check(&cib.doc)?;
    check_topology_devices(&cib.doc)?;
    Ok(cib)
}

/// Every device a fencing level names must be a primitive of the configuration. The schema
/// only says `devices` is a list of ids; a level naming no real device would make fencing
/// fail when it is needed, so a write that leaves one behind is refused.
fn check_topology_devices(doc: &Document) -> Result<(), CibError> {
    let Some(conf) = doc.root.child("configuration") else { return Ok(()) };
    let Some(topo) = conf.child("fencing-topology") else { return Ok(()) };
    let primitives: std::collections::HashSet<&str> = conf
        .child("resources")
        .map(|r| r.iter_descendants().filter(|e| e.name == "primitive").filter_map(|e| e.attr("id")).collect())
        .unwrap_or_default();
    for level in topo.children_named("fencing-level") {
        for dev in level.attr("devices").unwrap_or("").split(',').map(str::trim).filter(|d| !d.is_empty()) {
            if !primitives.contains(dev) {
                return Err(CibError::DanglingReference {
                    element: "fencing-level".into(),
                    id: level.attr("id").unwrap_or("").to_string(),
                    line: level.line,
                    what: "fencing device",
                    target: dev.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn bump(old: &Document, mut new: Document, whole: bool, patch: bool) -> Result<Document, CibError> {
    let (ov, rv) = (Version::of(&old.root), Version::of(&new.root));
    let stale = if whole { rv < ov } else { (rv.admin_epoch, rv.epoch) < (ov.admin_epoch, ov.epoch) };
    if stale {
        return Err(CibError::StaleUpdate { current: ov.to_string(), update: rv.to_string() });
    }
    if patch && rv != ov {
        return Ok(new);
    }
    let conf_changed = match (old.root.child("configuration"), new.root.child("configuration")) {
        (Some(a), Some(b)) => !same(a, b),
        (a, b) => a.is_some() != b.is_some(),
    };
    if conf_changed {
        Version { epoch: rv.epoch + 1, num_updates: 0, ..rv }.write_to(&mut new.root);
    } else if !same(&old.root, &new.root) {
        Version { num_updates: rv.num_updates + 1, ..rv }.write_to(&mut new.root);
    }
    Ok(new)
}

/// Equal in meaning: attributes as a set, children in order, whitespace-only text and line numbers ignored.
pub fn same(a: &Element, b: &Element) -> bool {
    // One element shared by both trees.
    if std::ptr::eq(a, b) {
        return true;
    }
    if a.name != b.name || a.attrs.len() != b.attrs.len() || a.attrs.iter().any(|(k, v)| b.attr(k) != Some(v.as_str())) {
        return false;
    }
    // A subtree still shared with the document it was copied from is unchanged.
    if a.children.shared_with(&b.children) {
        return true;
    }
    fn kids(e: &Element) -> impl Iterator<Item = &Node> {
        e.children.iter().filter(|n| !is_blank(n))
    }
    if kids(a).count() != kids(b).count() {
        return false;
    }
    kids(a).zip(kids(b)).all(|(x, y)| match (x, y) {
        (Node::Element(x), Node::Element(y)) => same(x, y),
        (x, y) => x == y,
    })
}

pub(crate) fn is_blank(n: &Node) -> bool {
    matches!(n, Node::Text(t) if t.trim().is_empty())
}

// ---------------------------------------------------------------------------
// Sections and searching

/// The element a section name denotes: `cib`/`all` is the root, `configuration`
/// and `status` its children, the ten configuration children below those.
fn section_steps(name: &str) -> Result<Vec<&str>, CibError> {
    match name {
        "cib" | "all" => Ok(vec![]),
        "configuration" | "status" => Ok(vec![name]),
        n if CONFIG_SECTIONS.contains(&n) => Ok(vec!["configuration", n]),
        n => Err(CibError::UnknownSection(n.to_string())),
    }
}

fn is_section_tag(name: &str) -> bool {
    name != "cib" && section_steps(name).is_ok()
}

/// Child indices (into `children`) from the root to the named section.
fn section_path(root: &Element, name: &str) -> Result<Vec<usize>, CibError> {
    let mut path = Vec::new();
    let mut cur = root;
    for step in section_steps(name)? {
        let i = cur
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.name == step))
            .ok_or_else(|| CibError::NotFound { what: format!("section <{name}>") })?;
        path.push(i);
        cur = at(cur, &path[path.len() - 1..]);
    }
    Ok(path)
}

fn at<'a>(mut e: &'a Element, path: &[usize]) -> &'a Element {
    for &i in path {
        e = match &e.children[i] {
            Node::Element(c) => c,
            _ => unreachable!("paths only hold element indices"),
        };
    }
    e
}

pub(crate) fn at_mut<'a>(mut e: &'a mut Element, path: &[usize]) -> &'a mut Element {
    for &i in path {
        e = e.children[i].element_mut().expect("paths only hold element indices");
    }
    e
}

/// First element (preorder) below `e` (and `e` itself if `with_self`) meeting `pred`, as a path from `e`.
fn find(e: &Element, with_self: bool, pred: &dyn Fn(&Element) -> bool) -> Option<Vec<usize>> {
    if with_self && pred(e) {
        return Some(vec![]);
    }
    for (i, n) in e.children.iter().enumerate() {
        if let Node::Element(c) = n {
            if let Some(mut p) = find(c, true, pred) {
                p.insert(0, i);
                return Some(p);
            }
        }
    }
    None
}

fn same_key(a: &Element, b: &Element) -> bool {
    a.name == b.name && a.id() == b.id()
}

fn describe(e: &Element) -> String {
    match e.id() {
        Some(id) => format!("<{} id=\"{id}\">", e.name),
        None => format!("<{}>", e.name),
    }
}

// ---------------------------------------------------------------------------
// Query

/// Elements selected by a section and/or an xpath, in document order.
///
/// * `section`: `cib`/`all`, `configuration`, `status` or a configuration
///   child. A known but absent section is `NotFound`, like cibadmin; an unknown
///   name is `UnknownSection` (file-mode cibadmin returns the whole CIB instead).
/// * `xpath`: evaluated from the document root (see [`XPath`] for the subset).
///   With a section too, only matches inside that section are kept. No match is
///   `NotFound` (cibadmin exit 105).
pub fn query(doc: &Document, section: Option<&str>, xpath: Option<&str>) -> Result<Vec<Element>, CibError> {
    let scope = match section {
        Some(s) => section_path(&doc.root, s)?,
        None => vec![],
    };
    let Some(x) = xpath else { return Ok(vec![at(&doc.root, &scope).clone()]) };
    let xp = XPath::parse(x)?;
    let found: Vec<Element> =
        xp.select_paths(&doc.root).into_iter().filter(|p| p.starts_with(&scope)).map(|p| at(&doc.root, &p).clone()).collect();
    if found.is_empty() {
        return Err(CibError::NotFound { what: format!("xpath {x}") });
    }
    Ok(found)
}

/// The xpath subset halo understands (anything else is `UnsupportedXpath`):
///
/// * absolute location paths only: a sequence of steps, each introduced by `/`
///   (child) or `//` (any descendant);
/// * a step is a tag name or `*`;
/// * a step may carry predicates `[@attr]` (has the attribute) or
///   `[@attr='value']` / `[@attr="value"]`, several per bracket joined by `and`,
///   or several brackets.
///
/// Examples: `/cib/configuration/resources`, `//primitive[@id='x']`,
/// `//*[@id='x']`, `//nvpair`, `/cib/status/node_state[@uname='n']`,
/// `/cib/configuration//op[@name='monitor' and @interval='10s']`.
/// Not supported: relative paths, `..`, `.`, axes, positions, functions, `|`, `or`, `!=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    descendant: bool,
    /// `None` for `*`.
    name: Option<String>,
    preds: Vec<(String, Option<String>)>,
}

impl XPath {
    pub fn parse(src: &str) -> Result<XPath, CibError> {
        let err = |reason: String| CibError::UnsupportedXpath { xpath: src.to_string(), reason };
        let s = src.trim();
        if !s.starts_with('/') {
            return Err(err("it must start with /".into()));
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        let is_name = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
        while i < b.len() {
            if b[i] != b'/' {
                return Err(err(format!("unexpected '{}' at offset {i}", &s[i..i + 1])));
            }
            let descendant = b.get(i + 1) == Some(&b'/');
            i += if descendant { 2 } else { 1 };
            let start = i;
            let name = if b.get(i) == Some(&b'*') {
                i += 1;
                None
            } else {
                while i < b.len() && is_name(b[i]) {
                    i += 1;
                }
                if i == start || s[start..i].starts_with('.') || s[start..i].contains("::") {
                    return Err(err(format!("expected a tag name or * at offset {start}")));
                }
                Some(s[start..i].to_string())
            };
            if b.get(i) == Some(&b'(') {
                return Err(err("functions are not supported".into()));
            }
            let mut preds = Vec::new();
            while b.get(i) == Some(&b'[') {
                let close = s[i..].find(']').map(|k| i + k).ok_or_else(|| err("unclosed [".into()))?;
                for part in split_and(&s[i + 1..close]) {
                    preds.push(parse_pred(part.trim()).map_err(err)?);
                }
                i = close + 1;
            }
            steps.push(Step { descendant, name, preds });
        }
        if steps.is_empty() {
            return Err(err("it selects the document itself".into()));
        }
        Ok(XPath { steps })
    }

    /// Paths (child indices from the root) of the selected elements, in document order, without duplicates.
    pub(crate) fn select_paths(&self, root: &Element) -> Vec<Vec<usize>> {
        // `None` stands for the document node above the root.
        let mut ctx: Vec<Option<Vec<usize>>> = vec![None];
        for step in &self.steps {
            let mut next: Vec<Vec<usize>> = Vec::new();
            for c in &ctx {
                let mut cands: Vec<Vec<usize>> = Vec::new();
                match c {
                    None if step.descendant => all_paths(root, vec![], &mut cands),
                    None => cands.push(vec![]),
                    Some(p) => {
                        let e = at(root, p);
                        for (i, n) in e.children.iter().enumerate() {
                            if let Node::Element(_) = n {
                                let mut q = p.clone();
                                q.push(i);
                                if step.descendant {
                                    all_paths(at(root, &q), q, &mut cands);
                                } else {
                                    cands.push(q);
                                }
                            }
                        }
                    }
                }
                next.extend(cands.into_iter().filter(|q| step.matches(at(root, q))));
            }
            next.sort();
            next.dedup();
            ctx = next.into_iter().map(Some).collect();
        }
        ctx.into_iter().flatten().collect()
    }
}

fn all_paths(e: &Element, here: Vec<usize>, out: &mut Vec<Vec<usize>>) {
    for (i, n) in e.children.iter().enumerate() {
        if let Node::Element(c) = n {
            let mut q = here.clone();
            q.push(i);
            all_paths(c, q.clone(), out);
            out.push(q);
        }
    }
    out.push(here);
}

impl Step {
    fn matches(&self, e: &Element) -> bool {
        self.name.as_ref().is_none_or(|n| *n == e.name)
            && self.preds.iter().all(|(k, v)| match v {
                None => e.attr(k).is_some(),
                Some(v) => e.attr(k) == Some(v.as_str()),
            })
    }
}

/// Split a predicate body on ` and ` outside quotes.
fn split_and(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quote, mut start) = (None, 0);
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (quote, b[i]) {
            (None, q @ (b'\'' | b'"')) => quote = Some(q),
            (Some(q), c) if c == q => quote = None,
            (None, _) if body[i..].starts_with(" and ") => {
                parts.push(&body[start..i]);
                start = i + 5;
                i += 4;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&body[start..]);
    parts
}

fn parse_pred(p: &str) -> Result<(String, Option<String>), String> {
    let Some(rest) = p.strip_prefix('@') else {
        return Err(format!("predicate [{p}] is not [@attr] or [@attr='value']"));
    };
    let Some((k, v)) = rest.split_once('=') else {
        return if !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-:.".contains(&c)) {
            Ok((rest.to_string(), None))
        } else {
            Err(format!("predicate [{p}] is not [@attr] or [@attr='value']"))
        };
    };
    let (k, v) = (k.trim(), v.trim());
    let quoted = v.len() >= 2 && (v.starts_with('\'') && v.ends_with('\'') || v.starts_with('"') && v.ends_with('"'));
    if k.is_empty() || k.ends_with('!') || !quoted || v[1..v.len() - 1].contains(['\'', '"']) {
        return Err(format!("predicate [{p}] is not [@attr='value']"));
    }
    Ok((k.to_string(), Some(v[1..v.len() - 1].to_string())))
}

// ---------------------------------------------------------------------------
// Writes

/// `NAME="NAME++"` / `NAME="NAME+=N"`: Pacemaker's score arithmetic on the old
/// value (leading integer, INFINITY = 1000000, clamped; missing or non-numeric = 0).
/// Checked with cibadmin: "10.0.0.5"++ gives 11, INFINITY+=3 gives 1000000, abc+=3 gives 3.
pub fn expand_increment(name: &str, value: &str, old: Option<&str>) -> Option<String> {
    let rest = value.strip_prefix(name)?;
    let by = if rest == "++" { 1 } else { leading_int(rest.strip_prefix("+=")?) };
    let base = old.map_or(0, score);
    Some((base + by).clamp(-1_000_000, 1_000_000).to_string())
}

fn score(v: &str) -> i64 {
    match v.trim() {
        "INFINITY" | "+INFINITY" => 1_000_000,
        "-INFINITY" => -1_000_000,
        t => leading_int(t).clamp(-1_000_000, 1_000_000),
    }
}

fn leading_int(s: &str) -> i64 {
    let s = s.trim_start();
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let n: i64 = digits.bytes().take_while(u8::is_ascii_digit).take(12).fold(0, |a, d| a * 10 + (d - b'0') as i64);
    if s.starts_with('-') {
        -n
    } else {
        n
    }
}

/// Expand increments everywhere in a new subtree (no old values: base 0).
fn expand_new(e: &mut Element) {
    for (k, v) in e.attrs.iter_mut() {
        if let Some(n) = expand_increment(k, v, None) {
            *v = n;
        }
    }
    e.elements_mut().for_each(expand_new);
}

/// cibadmin -M: overwrite given attributes (never remove any), merge children by tag+id, append the rest.
fn merge(target: &mut Element, update: &Element, unit: &str) {
    for (k, v) in &update.attrs {
        let nv = expand_increment(k, v, target.attr(k)).unwrap_or_else(|| v.clone());
        target.set_attr(k, &nv);
    }
    // Many updates into a long list (a batch of results into 1,000 histories): find each
    // by an index of the list's keys instead of a scan per update.
    let mut index = (update.children.len() > 16 && target.children.len() > 64).then(|| KeyIndex::of(target));
    for uc in update.elements() {
        let hit = match &index {
            Some(ix) => ix.find(target, uc),
            None => target.children.iter().position(|c| matches!(c, Node::Element(c) if same_key(c, uc))),
        };
        match hit {
            Some(i) => merge(target.children[i].element_mut().expect("an element's index"), uc, unit),
            None => {
                let mut c = uc.clone();
                expand_new(&mut c);
                insert_node(target, usize::MAX, Node::from(c), None, unit);
                // Appended: the last element of the list.
                if let (Some(ix), Some(i)) = (index.as_mut(), target.children.iter().rposition(|n| matches!(n, Node::Element(_)))) {
                    ix.add(uc, i);
                }
            }
        }
    }
}

/// The child index of each (tag, id) key of a list, by the key's hash; the first child
/// with a key wins, as a scan from the front would find it.
struct KeyIndex(rustc_hash::FxHashMap<u64, Vec<usize>>);

impl KeyIndex {
    fn hash(e: &Element) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = rustc_hash::FxBuildHasher.build_hasher();
        e.name.hash(&mut h);
        e.id().hash(&mut h);
        h.finish()
    }

    fn of(list: &Element) -> KeyIndex {
        let mut ix = KeyIndex(Default::default());
        for (i, n) in list.children.iter().enumerate() {
            if let Node::Element(e) = n {
                ix.add(e, i);
            }
        }
        ix
    }

    fn add(&mut self, e: &Element, i: usize) {
        self.0.entry(Self::hash(e)).or_default().push(i);
    }

    fn find(&self, list: &Element, key: &Element) -> Option<usize> {
        let at = self.0.get(&Self::hash(key))?;
        at.iter().copied().find(|&i| matches!(&list.children[i], Node::Element(e) if same_key(e, key)))
    }
}

/// `cibadmin --modify`: the first element (depth-first from `<cib>`, the root
/// included) with the fragment's tag and id is merged with the fragment.
/// No match is `NotFound` (cibadmin 105); `--allow-create` is not offered here.
pub fn modify(doc: &Document, fragment: Element) -> Result<Document, CibError> {
    let path = find(&doc.root, true, &|e| same_key(e, &fragment)).ok_or_else(|| CibError::NotFound { what: describe(&fragment) })?;
    let mut out = doc.clone();
    let unit = indent_unit(&doc.root);
    merge(at_mut(&mut out.root, &path), &fragment, &unit);
    Ok(out)
}

/// `cibadmin --replace`:
/// * a `<cib>` replaces the whole document (prolog and epilog are kept);
/// * a section element (`<resources>`, `<status>`...) replaces that section,
///   which must exist (`NotFound` otherwise, as cibadmin);
/// * anything else replaces, children included, the first tag+id match inside
///   `section` (the whole CIB when `None`); no match is `NotFound`.
pub fn replace(doc: &Document, section: Option<&str>, mut new: Element) -> Result<Document, CibError> {
    let mut out = doc.clone();
    if new.name == "cib" {
        if let Some(s) = section.filter(|s| !matches!(*s, "cib" | "all")) {
            return Err(CibError::BadRequest(format!("a whole <cib> cannot replace section <{s}>")));
        }
        out.root = new;
        return Ok(out);
    }
    expand_new(&mut new);
    let path = if is_section_tag(&new.name) {
        section_path(&doc.root, &new.name)?
    } else {
        let scope = section_path(&doc.root, section.unwrap_or("cib"))?;
        let rel = find(at(&doc.root, &scope), false, &|e| same_key(e, &new)).ok_or_else(|| CibError::NotFound { what: describe(&new) })?;
        [scope, rel].concat()
    };
    if path.is_empty() {
        return Err(CibError::BadRequest("replace the whole CIB with a <cib> element".into()));
    }
    *at_mut(&mut out.root, &path) = new;
    Ok(out)
}

/// `cibadmin --create -o SECTION`: append the fragment as the last child of the
/// section (each of its children in turn when the fragment is the section
/// element itself). The section must exist. A child of the section with the
/// same tag and id is `AlreadyExists` (cibadmin 108, "File exists"); the same
/// id elsewhere is left to validation in [`apply`] (cibadmin: schema error).
pub fn create(doc: &Document, section: &str, mut fragment: Element) -> Result<Document, CibError> {
    let path = section_path(&doc.root, section)?;
    let mut out = doc.clone();
    let unit = indent_unit(&doc.root);
    let sec = at_mut(&mut out.root, &path);
    expand_new(&mut fragment);
    let objects: Vec<Element> = if fragment.name == sec.name { fragment.elements().cloned().collect() } else { vec![fragment] };
    for obj in objects {
        if sec.elements().any(|c| same_key(c, &obj)) {
            return Err(CibError::AlreadyExists {
                element: obj.name.clone(),
                id: obj.id().unwrap_or("").to_string(),
                section: sec.name.clone(),
            });
        }
        insert_node(sec, usize::MAX, Node::from(obj), None, &unit);
    }
    Ok(out)
}

/// `cibadmin --delete`: remove the first element (depth-first, never `<cib>`)
/// whose tag equals the fragment's ignoring case, whose `id` equals the
/// fragment's (if it has one), and which has every other attribute of the
/// fragment with a value equal ignoring case (attribute names are exact).
/// All checked with cibadmin: `<PRIMITIVE id="ip"/>` and
/// `<primitive id="ip" class="OCF"/>` delete `ip`; `id="IP"` or `CLASS="ocf"` do not.
///
/// No match is `NotFound` here; cibadmin (and [`apply`]) treat it as success.
pub fn delete(doc: &Document, fragment: Element) -> Result<Document, CibError> {
    let hit = |e: &Element| {
        e.name.eq_ignore_ascii_case(&fragment.name)
            && fragment.attrs.iter().all(|(k, v)| match e.attr(k) {
                Some(ev) if k == "id" => ev == v,
                Some(ev) => ev.eq_ignore_ascii_case(v),
                None => false,
            })
    };
    let path = find(&doc.root, false, &hit).ok_or_else(|| CibError::NotFound { what: describe(&fragment) })?;
    let mut out = doc.clone();
    let (last, parent) = path.split_last().expect("never the root");
    remove_at(at_mut(&mut out.root, parent), *last);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    const BASE: &str = r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="3" num_updates="2" admin_epoch="0">
  <configuration>
    <crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="o-st" name="stonith-enabled" value="false"/></cluster_property_set></crm_config>
    <nodes><node id="1" uname="n1"/></nodes>
    <resources>
      <primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2"><instance_attributes id="ip-ia"><nvpair id="ip-ia-addr" name="ip" value="10.0.0.5"/></instance_attributes></primitive>
      <primitive id="web" class="ocf" provider="heartbeat" type="apache"/>
    </resources>
    <constraints><rsc_location id="loc" rsc="web" node="n1" score="100"/></constraints>
  </configuration>
  <status><node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member"/></status>
</cib>"#;

    fn base() -> Document {
        parse(BASE).unwrap()
    }
    fn el(s: &str) -> Element {
        parse(s).unwrap().root
    }
    fn ver(d: &Document) -> String {
        Version::of(&d.root).to_string()
    }
    fn ids(v: &[Element]) -> Vec<&str> {
        v.iter().map(|e| e.id().unwrap_or(&e.name)).collect()
    }

    #[test]
    fn fencing_levels_must_name_real_devices_and_status_writes_skip_the_configuration() {
        let d = base();
        let dev = Op::Create {
            section: "resources".into(),
            xml: el(r#"<primitive id="fence1" class="stonith" type="fence_dummy"/>"#),
        };
        let d = apply(&d, &dev).unwrap();
        let level = |devices: &str| Op::Modify {
            xml: el(&format!(
                r#"<configuration><fencing-topology><fencing-level id="l1" index="1" target="n1" devices="{devices}"/></fencing-topology></configuration>"#
            )),
        };
        assert!(apply(&d, &level("fence1")).is_ok());
        let e = apply(&d, &level("fence1,nosuch")).unwrap_err();
        assert!(e.to_string().contains("fencing device 'nosuch'"), "{e}");
        // A status write on a valid CIB gives what full validation gives.
        let st = Op::Modify { xml: el(r#"<status><node_state id="1" uname="n1" in_ccm="false" crmd="offline" join="down" expected="down"/></status>"#) };
        assert_eq!(apply_to_valid(&d, &st).unwrap().to_xml(), apply(&d, &st).unwrap().to_xml());
        let cfg = Op::Create { section: "resources".into(), xml: el(r#"<primitive id="x" class="ocf" provider="heartbeat" type="Dummy" bogus="1"/>"#) };
        assert!(apply_to_valid(&d, &cfg).is_err(), "a configuration write is still validated in full");
        // Only the changed node is read again, and a bad record there is still refused,
        // with the other nodes' states left alone.
        let two = Op::Modify { xml: el(r#"<status><node_state id="2" uname="n2" in_ccm="true" crmd="online" join="member" expected="member"/></status>"#) };
        let d = apply_to_valid(&apply_to_valid(&d, &st).unwrap(), &two).unwrap();
        let bad = Op::Create {
            section: "status".into(),
            xml: el(r#"<node_state id="2"><lrm id="2"><lrm_resources><lrm_resource id="r" class="ocf" provider="heartbeat" type="Dummy"><lrm_rsc_op id="r_last_0" operation="start" call-id="x" rc-code="zero" interval="0"/></lrm_resource></lrm_resources></lrm></node_state>"#),
        };
        let modify_bad = Op::Modify { xml: el(&format!("<status>{}</status>", match &bad { Op::Create { xml, .. } => xml.to_xml(), _ => unreachable!() })) };
        assert_eq!(apply_to_valid(&d, &modify_bad).is_err(), apply(&d, &modify_bad).is_err());
        assert!(apply_to_valid(&d, &modify_bad).is_err(), "a bad lrm_rsc_op is refused");
        let good = Op::Modify { xml: el(r#"<status><node_state id="2"><lrm id="2"><lrm_resources><lrm_resource id="r" class="ocf" provider="heartbeat" type="Dummy"><lrm_rsc_op id="r_last_0" operation="start" call-id="3" rc-code="0" interval="0"/></lrm_resource></lrm_resources></lrm></node_state></status>"#) };
        assert_eq!(apply_to_valid(&d, &good).unwrap().to_xml(), apply(&d, &good).unwrap().to_xml());
    }

    #[test]
    fn query_sections_and_xpaths() {
        let d = base();
        assert_eq!(query(&d, Some("resources"), None).unwrap()[0].name, "resources");
        assert_eq!(query(&d, None, None).unwrap()[0].name, "cib");
        assert_eq!(ids(&query(&d, None, Some("/cib/configuration/resources")).unwrap()), ["resources"]);
        assert_eq!(ids(&query(&d, None, Some("//primitive[@id='web']")).unwrap()), ["web"]);
        assert_eq!(ids(&query(&d, None, Some("//*[@id='ip-ia']")).unwrap()), ["ip-ia"]);
        assert_eq!(ids(&query(&d, None, Some("//primitive")).unwrap()), ["ip", "web"]);
        assert_eq!(ids(&query(&d, None, Some("//*[@id]")).unwrap()).len(), 9);
        assert_eq!(ids(&query(&d, None, Some("/cib/status/node_state[@uname=\"n1\"]")).unwrap()), ["1"]);
        assert_eq!(ids(&query(&d, None, Some("//primitive[@class='ocf' and @type='apache']")).unwrap()), ["web"]);
        assert_eq!(ids(&query(&d, None, Some("/cib//nvpair[@name='ip']")).unwrap()), ["ip-ia-addr"]);
        assert_eq!(ids(&query(&d, Some("status"), Some("//*[@id='1']")).unwrap()), ["1"]);
        // Same as cibadmin: an absent section or no xpath match is "No such device or address".
        assert!(matches!(query(&d, Some("acls"), None), Err(CibError::NotFound { .. })));
        assert!(matches!(query(&d, None, Some("//primitive[@id='nope']")), Err(CibError::NotFound { .. })));
        assert!(matches!(query(&d, Some("bogus"), None), Err(CibError::UnknownSection(_))));
    }

    #[test]
    fn bad_xpaths_say_what_is_supported() {
        let d = base();
        let bad = "primitive;//primitive[1];//primitive[@id!='x'];count(//x);/cib/..;//a | //b;//a[@id='x' or @id='y'];/;//node()";
        for x in bad.split(';') {
            let e = query(&d, None, Some(x)).unwrap_err();
            assert!(matches!(e, CibError::UnsupportedXpath { .. }), "{x}: {e}");
            assert!(e.to_string().contains("halo supports absolute paths"), "{e}");
        }
    }

    #[test]
    fn modify_merges_and_bumps() {
        let d = base();
        let m = Op::Modify {
            xml: el(
                r#"<primitive id="ip"><instance_attributes id="ip-ia"><nvpair id="new" name="n" value="v"/></instance_attributes></primitive>"#,
            ),
        };
        let out = apply(&d, &m).unwrap();
        let ia = &query(&out, None, Some("//*[@id='ip-ia']")).unwrap()[0];
        assert_eq!(ids(&ia.elements().cloned().collect::<Vec<_>>()), ["ip-ia-addr", "new"]);
        assert_eq!(query(&out, None, Some("//primitive[@id='ip']")).unwrap()[0].attr("type"), Some("IPaddr2"));
        assert_eq!(ver(&out), "0.4.0");
        // Setting a value to what it is changes nothing and bumps nothing (cibadmin agrees).
        let same = apply(&d, &Op::Modify { xml: el(r#"<nvpair id="ip-ia-addr" value="10.0.0.5"/>"#) }).unwrap();
        assert_eq!(same, d);
        // Status-only change bumps num_updates (cibadmin: 0.3.2 -> 0.3.3).
        let st = apply(&d, &Op::Modify { xml: el(r#"<status><node_state id="1" join="down"/></status>"#) }).unwrap();
        assert_eq!(ver(&st), "0.3.3");
        assert_eq!(query(&st, None, Some("//node_state")).unwrap()[0].attr("join"), Some("down"));
        // Root attributes: num_updates only, on top of what the request set (cibadmin: epoch=50 -> 0.50.3).
        assert_eq!(ver(&apply(&d, &Op::Modify { xml: el(r#"<cib have-quorum="1"/>"#) }).unwrap()), "0.3.3");
        assert_eq!(ver(&apply(&d, &Op::Modify { xml: el(r#"<cib epoch="50"/>"#) }).unwrap()), "0.50.3");
        assert_eq!(ver(&apply(&d, &Op::Modify { xml: el(r#"<cib admin_epoch="1"/>"#) }).unwrap()), "1.3.3");
        let e = apply(&d, &Op::Modify { xml: el(r#"<cib epoch="1"/>"#) }).unwrap_err();
        assert!(matches!(e, CibError::StaleUpdate { .. }), "{e}");
    }

    #[test]
    fn modify_refusals() {
        let d = base();
        assert!(matches!(modify(&d, el(r#"<nvpair id="nope" value="1"/>"#)), Err(CibError::NotFound { .. })));
        // A dangling reference is refused by validation and nothing changes (cibadmin: schema error, 78).
        let e = apply(&d, &Op::Modify { xml: el(r#"<rsc_location id="loc" rsc="ghost"/>"#) }).unwrap_err();
        assert!(matches!(e, CibError::DanglingReference { ref target, .. } if target == "ghost"), "{e}");
    }

    #[test]
    fn increments() {
        let d = base();
        let out = apply(&d, &Op::Modify { xml: el(r#"<nvpair id="ip-ia-addr" value="value++"/>"#) }).unwrap();
        assert_eq!(query(&out, None, Some("//nvpair[@id='ip-ia-addr']")).unwrap()[0].attr("value"), Some("11"));
        assert_eq!(expand_increment("value", "value+=3", Some("INFINITY")).as_deref(), Some("1000000"));
        assert_eq!(expand_increment("value", "value+=3", Some("-5")).as_deref(), Some("-2"));
        assert_eq!(expand_increment("value", "value+=3", Some("abc")).as_deref(), Some("3"));
        assert_eq!(expand_increment("value", "other++", Some("1")), None);
        let st = create(&d, "status", el(r#"<node_state id="2" uname="n2" foo="foo++"/>"#)).unwrap();
        assert_eq!(query(&st, None, Some("//node_state[@id='2']")).unwrap()[0].attr("foo"), Some("1"));
    }

    #[test]
    fn create_appends_and_refuses_duplicates() {
        let d = base();
        let p = r#"<primitive id="db" class="ocf" provider="heartbeat" type="pgsql"/>"#;
        let out = apply(&d, &Op::Create { section: "resources".into(), xml: el(p) }).unwrap();
        assert_eq!(ids(&query(&out, None, Some("//primitive")).unwrap()), ["ip", "web", "db"]);
        assert_eq!(ver(&out), "0.4.0");
        let two = r#"<resources><primitive id="z1" class="ocf" provider="heartbeat" type="apache"/><primitive id="z2" class="ocf" provider="heartbeat" type="apache"/></resources>"#;
        let out = create(&d, "resources", el(two)).unwrap();
        assert_eq!(ids(&query(&out, None, Some("//primitive")).unwrap()), ["ip", "web", "z1", "z2"]);
        // Same tag+id in the section: File exists (cibadmin 108).
        let e =
            apply(&d, &Op::Create { section: "resources".into(), xml: el(r#"<primitive id="web" class="ocf" type="x"/>"#) }).unwrap_err();
        assert!(matches!(e, CibError::AlreadyExists { ref id, .. } if id == "web"), "{e}");
        // Same id under another tag: caught by validation (cibadmin: schema error, 78).
        let e =
            apply(&d, &Op::Create { section: "constraints".into(), xml: el(r#"<rsc_location id="web" rsc="web" node="n1" score="1"/>"#) })
                .unwrap_err();
        assert!(matches!(e, CibError::DuplicateId { .. }), "{e}");
        // Absent or unknown section.
        assert!(matches!(create(&d, "acls", el(r#"<acl_role id="ro"/>"#)), Err(CibError::NotFound { .. })));
        assert!(matches!(create(&d, "bogus", el(p)), Err(CibError::UnknownSection(_))));
    }

    #[test]
    fn delete_semantics() {
        let d = base();
        let out = apply(&d, &Op::Delete { xml: el(r#"<PRIMITIVE id="ip" class="OCF"/>"#) }).unwrap();
        assert_eq!(ids(&query(&out, None, Some("//primitive")).unwrap()), ["web"]);
        assert_eq!(ver(&out), "0.4.0");
        assert!(matches!(delete(&d, el(r#"<primitive id="IP"/>"#)), Err(CibError::NotFound { .. })));
        assert!(matches!(delete(&d, el(r#"<primitive id="ip" CLASS="ocf"/>"#)), Err(CibError::NotFound { .. })));
        assert!(matches!(delete(&d, el(r#"<primitive id="nope"/>"#)), Err(CibError::NotFound { .. })));
        // Through apply a miss is success with no change, as with cibadmin (exit 0).
        assert_eq!(apply(&d, &Op::Delete { xml: el(r#"<primitive id="nope"/>"#) }).unwrap(), d);
        // No id: the first element of that tag with those attributes.
        let out = delete(&d, el(r#"<nvpair name="stonith-enabled"/>"#)).unwrap();
        assert!(query(&out, None, Some("//nvpair[@id='o-st']")).is_err());
        // Deleting a referenced resource leaves a dangling constraint: refused.
        assert!(matches!(apply(&d, &Op::Delete { xml: el(r#"<primitive id="web"/>"#) }), Err(CibError::DanglingReference { .. })));
        assert!(matches!(delete(&d, el("<cib/>")), Err(CibError::NotFound { .. })));
    }

    #[test]
    fn replace_forms_and_versions() {
        let d = base();
        let out = apply(
            &d,
            &Op::Replace {
                section: None,
                xml: el(r#"<primitive id="web" class="ocf" provider="heartbeat" type="apache"><meta_attributes id="wm"/></primitive>"#),
            },
        )
        .unwrap();
        assert_eq!(query(&out, None, Some("//primitive[@id='web']")).unwrap()[0].elements().count(), 1);
        assert_eq!(ver(&out), "0.4.0");
        let out = replace(&d, Some("constraints"), el("<constraints/>")).unwrap();
        assert_eq!(query(&out, Some("constraints"), None).unwrap()[0].elements().count(), 0);
        assert!(matches!(replace(&d, None, el(r#"<nvpair id="nope"/>"#)), Err(CibError::NotFound { .. })));
        assert!(matches!(replace(&d, None, el("<acls/>")), Err(CibError::NotFound { .. })));
        assert!(matches!(replace(&d, Some("status"), el(r#"<primitive id="web"/>"#)), Err(CibError::NotFound { .. })));
        // Whole CIB: the full triple may not go backwards (cibadmin: lower num_updates refused too).
        let whole = |s: String| Op::Replace { section: None, xml: el(&s) };
        let e = apply(&d, &whole(BASE.replace("num_updates=\"2\"", "num_updates=\"0\""))).unwrap_err();
        assert!(matches!(e, CibError::StaleUpdate { .. }), "{e}");
        assert_eq!(ver(&apply(&d, &whole(BASE.to_string())).unwrap()), "0.3.2");
        // cibadmin: same configuration marked epoch 50 stored as 0.50.3; changed configuration bumps epoch.
        assert_eq!(ver(&apply(&d, &whole(BASE.replace("epoch=\"3\"", "epoch=\"50\""))).unwrap()), "0.50.3");
        let changed = BASE.replace("epoch=\"3\"", "epoch=\"50\"").replace("score=\"100\"", "score=\"7\"");
        assert_eq!(ver(&apply(&d, &whole(changed)).unwrap()), "0.51.0");
    }
}
