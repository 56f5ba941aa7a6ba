//! Pacemaker v2 patchsets (`<diff format="2">`, CIB-NOTES §4): computing one
//! between two documents and applying one to a document.
//!
//! Paths are absolute: each step is the tag plus `[@id='…']` when the element
//! has an id, resolved (like Pacemaker's applier) to the first child with that
//! tag and id, or the first with that tag when the step has no id.
//!
//! Positions count every child except blank text, so comments count. CIB-NOTES
//! says "element siblings", but crm_diff 2.1.5 counts comments (it moved a
//! primitive to position 9 among 5 elements and 4 comments), and it deletes a
//! comment by `…/comment` plus `position`, which the applier accepts too.
//!
//! Applying, as `crm_diff -p` 2.1.5 was seen to do (see `applier_matches_crm_diff`):
//! deletes, modifies and moves in patch order, where a move only parks the
//! element at the end of its parent (a delete whose target is gone is
//! tolerated); then creates and moves by position (stable), a create inserting
//! at its position and a move taking the element out and putting it there (a
//! position past the end is refused, as by crm_diff). The generator moves the
//! survivors outside a heaviest common subsequence of the old and new orders,
//! which under those rules always lands, and simulates it to be sure. When an
//! element that must change cannot be addressed by a path (an id-less element
//! after a sibling with the same tag, duplicate tag+id siblings, ids holding
//! `'` or `/`), or comments or text are added, removed or reordered, the nearest
//! addressable ancestor is deleted and re-created whole instead.
//!
//! Checked against crm_diff 2.1.5 on all 599 scheduler CIBs with random edits
//! (nvpair change, constraint and lrm_rsc_op deletes, attribute unset, new
//! primitive, added comment, several moves among commented siblings): crm_diff
//! applies our patches to the intended CIB every time, and we apply crm_diff's
//! to the same CIB crm_diff itself produces every time.
//!
//! Blank text is layout only and never sent. The applier keeps the parent's
//! indentation (a node is inserted and removed with the blank text before it),
//! so a patch made from a pretty-printed CIB yields the same text; whitespace
//! changes inside a matched element are not carried.

use crate::error::CibError;
use crate::ops::{at_mut as node_mut, is_blank, Version};
use crate::xml::{Document, Element, Node};

/// The v2 patchset turning `old` into `new` (no change: a diff with only `<version>`).
pub fn diff(old: &Document, new: &Document) -> Element {
    let mut out = Element::new("diff");
    out.set_attr("format", "2");
    let mut version = Element::new("version");
    for (tag, doc) in [("source", old), ("target", new)] {
        let mut v = Element::new(tag);
        Version::of(&doc.root).write_to(&mut v);
        version.push(v);
    }
    out.push(version);
    let path = format!("/{}", new.root.name);
    let ch = match diff_elem(&old.root, &new.root, &path) {
        Ok(c) => c,
        // Children of the root that cannot be told apart: only the root's attributes can be sent.
        Err(()) => Changes { modifies: modify_change(&old.root, &new.root, &path).into_iter().collect(), ..Changes::default() },
    };
    let mut placed = ch.placed;
    placed.sort_by_key(|(p, _)| *p);
    ch.deletes.into_iter().chain(ch.modifies).chain(placed.into_iter().map(|(_, c)| c)).for_each(|c| out.push(c));
    out
}

#[derive(Default)]
struct Changes {
    deletes: Vec<Element>,
    modifies: Vec<Element>,
    /// Creates and moves with their position.
    placed: Vec<(usize, Element)>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.modifies.is_empty() && self.placed.is_empty()
    }
    fn extend(&mut self, o: Changes) {
        self.deletes.extend(o.deletes);
        self.modifies.extend(o.modifies);
        self.placed.extend(o.placed);
    }
}

fn change(op: &str, path: &str) -> Element {
    let mut c = Element::new("change");
    c.set_attr("operation", op);
    c.set_attr("path", path);
    c
}

fn step(e: &Element) -> String {
    match e.id() {
        Some(id) => format!("{}[@id='{id}']", e.name),
        None => e.name.clone(),
    }
}

fn modify_change(o: &Element, n: &Element, path: &str) -> Option<Element> {
    if o.attrs == n.attrs {
        return None;
    }
    let mut list = Element::new("change-list");
    for (k, v) in &n.attrs {
        if o.attr(k) != Some(v.as_str()) {
            let mut a = Element::new("change-attr");
            a.attrs = vec![("name".into(), k.clone()), ("operation".into(), "set".into()), ("value".into(), v.clone())];
            list.push(a);
        }
    }
    for (k, _) in o.attrs.iter().filter(|(k, _)| n.attr(k).is_none()) {
        let mut a = Element::new("change-attr");
        a.attrs = vec![("name".into(), k.clone()), ("operation".into(), "unset".into())];
        list.push(a);
    }
    let mut result = Element::new("change-result");
    result.push(Element { name: n.name.clone(), attrs: n.attrs.clone(), children: Default::default(), line: 0 });
    let mut c = change("modify", path);
    c.push(list);
    c.push(result);
    Some(c)
}

/// A positioned child during the simulation: element `j` of the new parent, or the `k`-th other (comment, text) node.
#[derive(Clone, Copy, PartialEq)]
enum Item {
    Elem(usize),
    Other(usize),
}

/// Changes below the matched pair `o`/`n` at `path`; `Err` when they cannot be expressed (replace `o` whole).
fn diff_elem(o: &Element, n: &Element, path: &str) -> Result<Changes, ()> {
    // Most of a large CIB is untouched by a write: no change, and nothing to allocate.
    if std::ptr::eq(o, n) || (o.attrs == n.attrs && crate::ops::same(o, n)) {
        return Ok(Changes::default());
    }
    let other = |e: &Element| e.children.iter().filter(|c| !is_blank(c) && !matches!(c, Node::Element(_))).cloned().collect::<Vec<_>>();
    if other(o) != other(n) {
        return Err(());
    }
    let mut ch = Changes::default();
    ch.modifies.extend(modify_change(o, n, path));
    if let Some(inner) = in_step(o, n, path) {
        ch.extend(inner);
        return Ok(ch);
    }
    let oe: Vec<&Element> = o.elements().collect();
    let ne: Vec<&Element> = n.elements().collect();
    let Pairing { old_of, used, o_first, n_first } = pair(&oe, &ne);
    let mut new_of = vec![None; oe.len()];
    old_of.iter().enumerate().for_each(|(j, i)| i.iter().for_each(|&i| new_of[i] = Some(j)));
    // New children to create whole at their position (unmatched, or matched but replaced).
    let mut fresh: Vec<bool> = old_of.iter().map(Option::is_none).collect();
    for (j, oi) in old_of.iter().enumerate() {
        let Some(i) = *oi else { continue };
        if std::ptr::eq(oe[i], ne[j]) || (oe[i].attrs == ne[j].attrs && crate::ops::same(oe[i], ne[j])) {
            continue;
        }
        let cpath = format!("{path}/{}", step(ne[j]));
        let addressable = o_first[i] && n_first[j];
        match diff_elem(oe[i], ne[j], &cpath) {
            Ok(c) if c.is_empty() => {}
            Ok(c) if addressable => ch.extend(c),
            _ if addressable => {
                fresh[j] = true;
                ch.deletes.push(change("delete", &cpath));
            }
            _ => return Err(()),
        }
    }
    for (i, e) in oe.iter().enumerate().filter(|(i, _)| !used[*i]) {
        if !o_first[i] {
            return Err(());
        }
        ch.deletes.push(change("delete", &format!("{path}/{}", step(e))));
    }
    // Survivors outside a heaviest common subsequence of the old and new orders move
    // (comments and text weigh most: they cannot). Under the applier's rules that
    // always lands; the simulation double-checks before anything is emitted.
    let cur = items(o, &mut |i| new_of[i].filter(|&j| !fresh[j]).map(Item::Elem));
    let target = items(n, &mut |j| Some(Item::Elem(j)));
    let kept: Vec<Item> = target.iter().copied().filter(|t| !matches!(*t, Item::Elem(j) if fresh[j])).collect();
    let mut moving = vec![false; ne.len()];
    if cur != kept {
        for t in not_in_common(&cur, &kept) {
            let Item::Elem(j) = t else { return Err(()) };
            moving[j] = true;
        }
    }
    let steps = plan(&cur, &target, &fresh, &moving).ok_or(())?;
    for (p, t) in steps {
        let Item::Elem(j) = t else { unreachable!("only elements are placed") };
        if fresh[j] {
            let mut c = change("create", path);
            c.set_attr("position", &p.to_string());
            c.push(ne[j].clone());
            ch.placed.push((p, c));
        } else if o_first[old_of[j].unwrap()] && n_first[j] {
            let mut c = change("move", &format!("{path}/{}", step(ne[j])));
            c.set_attr("position", &p.to_string());
            ch.placed.push((p, c));
        } else {
            return Err(());
        }
    }
    Ok(ch)
}

/// The changes below `o` and `n` when their children line up one for one (the same tags and
/// ids in the same places: a write changed some of them in place, the common case in a long
/// list), found by comparing in step, mostly by pointer. None when they do not, or when a
/// changed child cannot be addressed or changed in place: the general pairing decides then.
fn in_step(o: &Element, n: &Element, path: &str) -> Option<Changes> {
    let (oc, nc) = (o.children.as_slice(), n.children.as_slice());
    if oc.len() != nc.len() {
        return None;
    }
    let mut changed = Vec::new();
    for (k, (a, b)) in oc.iter().zip(nc).enumerate() {
        match (a, b) {
            (Node::Element(x), Node::Element(y)) if std::sync::Arc::ptr_eq(x, y) => {}
            (Node::Element(x), Node::Element(y)) if x.name == y.name && x.id() == y.id() => {
                if !(x.attrs == y.attrs && crate::ops::same(x, y)) {
                    changed.push(k);
                }
            }
            (Node::Element(_), _) | (_, Node::Element(_)) => return None,
            (x, y) if x == y || (is_blank(x) && is_blank(y)) => {}
            _ => return None,
        }
    }
    // A path step reaches a child only if no earlier sibling has its tag and id (its tag,
    // without one): a scan back for a few, one pass over the list for many.
    const FEW: usize = 16;
    let first: Option<rustc_hash::FxHashSet<usize>> = (changed.len() > FEW).then(|| {
        let mut seen = rustc_hash::FxHashSet::default();
        let mut names = rustc_hash::FxHashSet::default();
        oc.iter()
            .enumerate()
            .filter_map(|(k, c)| Some((k, c.as_element()?)))
            .filter(|(_, e)| if e.id().is_some() { seen.insert((e.name.as_str(), e.id())) } else { names.insert(e.name.as_str()) })
            .map(|(k, _)| k)
            .collect()
    });
    let mut ch = Changes::default();
    for k in changed {
        let (Node::Element(x), Node::Element(y)) = (&oc[k], &nc[k]) else { unreachable!("checked above") };
        let addressable = match &first {
            Some(first) => first.contains(&k),
            None => !oc[..k].iter().filter_map(Node::as_element).any(|e| e.name == x.name && (x.id().is_none() || e.id() == x.id())),
        };
        if !addressable || !usable_id(x.id()) {
            return None;
        }
        ch.extend(diff_elem(x, y, &format!("{path}/{}", step(y))).ok()?);
    }
    Some(ch)
}

/// The non-blank children of `e` in order: elements as `elem(index)` gives them, others numbered.
fn items(e: &Element, elem: &mut dyn FnMut(usize) -> Option<Item>) -> Vec<Item> {
    let (mut ei, mut k) = (0, 0);
    let mut v = Vec::new();
    for c in e.children.iter().filter(|c| !is_blank(c)) {
        if let Node::Element(_) = c {
            v.extend(elem(ei));
            ei += 1;
        } else {
            v.push(Item::Other(k));
            k += 1;
        }
    }
    v
}

/// Creates and moves, in position order, that turn `cur` into `target` under the
/// applier's rules: moved elements first go to the end of the parent (in patch
/// order, which is position order), then, by position, each created element is
/// inserted and each moved one taken out and put at its position. `None` if
/// the result would miss `target`.
fn plan(cur: &[Item], target: &[Item], fresh: &[bool], moving: &[bool]) -> Option<Vec<(usize, Item)>> {
    let placed = |t: &Item| matches!(t, Item::Elem(j) if fresh[*j] || moving[*j]);
    let steps: Vec<(usize, Item)> = target.iter().copied().enumerate().filter(|(_, t)| placed(t)).collect();
    let mut cur: Vec<Item> = cur.iter().copied().filter(|t| !placed(t)).collect();
    cur.extend(steps.iter().filter(|(_, t)| matches!(t, Item::Elem(j) if moving[*j])).map(|(_, t)| *t));
    for &(p, t) in &steps {
        cur.retain(|&x| x != t);
        if p > cur.len() {
            return None;
        }
        cur.insert(p, t);
    }
    (cur == target).then_some(steps)
}

/// Items of `a` outside a heaviest common subsequence of `a` and `b` (same items, other order).
fn not_in_common(a: &[Item], b: &[Item]) -> Vec<Item> {
    let w = |t: Item| if matches!(t, Item::Other(_)) { a.len() as u32 + 1 } else { 1 };
    let (n, m) = (a.len(), b.len());
    let mut dp = vec![0u32; (n + 1) * (m + 1)];
    let ix = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[ix(i, j)] = if a[i] == b[j] { dp[ix(i + 1, j + 1)] + w(a[i]) } else { dp[ix(i + 1, j)].max(dp[ix(i, j + 1)]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if dp[ix(i + 1, j)] >= dp[ix(i, j + 1)] {
            out.push(a[i]);
            i += 1;
        } else {
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out
}

/// How the children of a matched pair correspond: for each new child, the old child it
/// continues (the first unused one of the same tag and id); and for each child of either
/// list whether a path step to it resolves to it, i.e. its id is usable in a path and no
/// earlier sibling has the same tag and id (for an element without an id: the same tag).
struct Pairing {
    old_of: Vec<Option<usize>>,
    used: Vec<bool>,
    o_first: Vec<bool>,
    n_first: Vec<bool>,
}

/// The old children of one tag and id, in order, and what the new list has taken of them.
#[derive(Default)]
struct Kin {
    old: Vec<usize>,
    taken: usize,
    seen_new: bool,
}

/// Whether an id can be written in a path step.
fn usable_id(id: Option<&str>) -> bool {
    id.is_none_or(|id| !id.contains(['\'', '/', '[', ']']))
}

/// [`Pairing`] in one map lookup per child (a section of a large CIB has thousands).
fn pair(oe: &[&Element], ne: &[&Element]) -> Pairing {
    let usable = usable_id;
    /// Whether `name` is new to `seen` (most siblings share a tag: the last one is checked first).
    fn first_name<'a>(seen: &mut rustc_hash::FxHashSet<&'a str>, last: &mut Option<&'a str>, name: &'a str) -> bool {
        if *last == Some(name) {
            return false;
        }
        *last = Some(name);
        seen.insert(name)
    }
    let mut kin: rustc_hash::FxHashMap<(&str, Option<&str>), Kin> = rustc_hash::FxHashMap::with_capacity_and_hasher(oe.len(), Default::default());
    let (mut names, mut last) = (rustc_hash::FxHashSet::default(), None);
    let mut o_first = Vec::with_capacity(oe.len());
    for (i, e) in oe.iter().enumerate() {
        let (name, id) = (e.name.as_str(), e.id());
        let new_name = first_name(&mut names, &mut last, name);
        let k = kin.entry((name, id)).or_default();
        o_first.push(usable(id) && if id.is_some() { k.old.is_empty() } else { new_name });
        k.old.push(i);
    }
    let (mut names, mut last) = (rustc_hash::FxHashSet::default(), None);
    let mut used = vec![false; oe.len()];
    let (mut old_of, mut n_first) = (Vec::with_capacity(ne.len()), Vec::with_capacity(ne.len()));
    for c in ne {
        let (name, id) = (c.name.as_str(), c.id());
        let new_name = first_name(&mut names, &mut last, name);
        let k = kin.entry((name, id)).or_default();
        n_first.push(usable(id) && if id.is_some() { !k.seen_new } else { new_name });
        k.seen_new = true;
        let hit = k.old.get(k.taken).copied();
        if let Some(i) = hit {
            k.taken += 1;
            used[i] = true;
        }
        old_of.push(hit);
    }
    Pairing { old_of, used, o_first, n_first }
}

// ---------------------------------------------------------------------------
// Layout-keeping insertion and removal (shared with `ops`).

fn blank_before(parent: &Element, k: usize) -> Option<usize> {
    (k > 0 && is_blank(&parent.children[k - 1])).then(|| k - 1)
}

/// The document's indentation step: the blank before the root's first child, after its newline ("  " if none).
pub(crate) fn indent_unit(root: &Element) -> String {
    match root.children.first() {
        Some(Node::Text(t)) if t.trim().is_empty() && t.contains('\n') => t.rsplit('\n').next().unwrap_or("").to_string(),
        _ => "  ".to_string(),
    }
}

/// Insert `node` at position `p` (among non-blank children; appended if past
/// the end), preceded by `lead` if given, else by a copy of the neighbour's
/// indentation (in a parent holding only its closing blank: that plus `unit`).
pub(crate) fn insert_node(parent: &mut Element, p: usize, node: Node, lead: Option<Node>, unit: &str) {
    let only_blank = match parent.children.as_slice() {
        [Node::Text(t)] if t.trim().is_empty() && t.contains('\n') => Some(Node::Text(format!("{t}{unit}"))),
        _ => None,
    };
    let mut solid = parent.children.iter().enumerate().filter(|(_, c)| !is_blank(c)).map(|(i, _)| i);
    let (at, copy) = match solid.nth(p) {
        Some(k) => {
            let b = blank_before(parent, k);
            (b.unwrap_or(k), b.map(|b| parent.children[b].clone()))
        }
        None => match parent.children.iter().rposition(|c| !is_blank(c)) {
            Some(l) => (l + 1, blank_before(parent, l).map(|b| parent.children[b].clone())),
            None if only_blank.is_some() => (0, only_blank),
            None => (parent.children.len(), None),
        },
    };
    parent.children.splice(at..at, lead.or(copy).into_iter().chain([node]));
}

/// Remove the child at index `k` of `children` and the blank text just before it; returns both.
pub(crate) fn remove_at(parent: &mut Element, k: usize) -> (Node, Option<Node>) {
    let node = parent.children.remove(k);
    (node, blank_before(parent, k).map(|b| parent.children.remove(b)))
}

// ---------------------------------------------------------------------------
// Applying

/// Indices (into `children`) from the root to the element a patch path names.
fn resolve(root: &Element, path: &str) -> Result<Option<Vec<usize>>, CibError> {
    let bad = || CibError::BadPatch(format!("cannot parse path '{path}': expected /tag or /tag[@id='…'] steps"));
    let mut rest = path.strip_prefix('/').ok_or_else(bad)?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        let end = rest.find(['/', '[']).unwrap_or(rest.len());
        let tag = &rest[..end];
        rest = &rest[end..];
        let mut id = None;
        if let Some(r) = rest.strip_prefix("[@id='") {
            let close = r.find("']").ok_or_else(bad)?;
            id = Some(&r[..close]);
            rest = &r[close + 2..];
        }
        if tag.is_empty() || !(rest.is_empty() || rest.starts_with('/')) {
            return Err(bad());
        }
        rest = rest.strip_prefix('/').unwrap_or(rest);
        steps.push((tag, id));
    }
    let Some(((tag, id), below)) = steps.split_first() else { return Err(bad()) };
    if root.name != *tag || id.is_some_and(|i| root.id() != Some(i)) {
        return Ok(None);
    }
    let mut cur = root;
    let mut out = Vec::new();
    for (tag, id) in below {
        let hit = cur.children.iter().enumerate().find_map(|(k, c)| match c {
            Node::Element(e) if e.name == *tag && id.is_none_or(|i| e.id() == Some(i)) => Some((k, e)),
            _ => None,
        });
        let Some((k, e)) = hit else { return Ok(None) };
        out.push(k);
        cur = e;
    }
    Ok(Some(out))
}

/// Prefix of the attributes that tag targets while a patch is applied (not valid XML, so never in a CIB).
const MARK: &str = "\u{1}halo-patch-";

/// The element at `path` (child indexes), if there is one.
fn element_at<'a>(e: &'a Element, path: &[usize]) -> Option<&'a Element> {
    match path.split_first() {
        None => Some(e),
        Some((&k, rest)) => match e.children.get(k) {
            Some(Node::Element(c)) => element_at(c, rest),
            _ => None,
        },
    }
}

/// The path of the element carrying `marker`: at `hint` if it is still there (a patch of
/// many creates would otherwise search the whole document once per create), else found.
fn marked_near(e: &Element, marker: &str, hint: &[usize]) -> Option<Vec<usize>> {
    if element_at(e, hint).is_some_and(|x| x.attr(marker).is_some()) {
        return Some(hint.to_vec());
    }
    marked(e, marker)
}

fn marked(e: &Element, marker: &str) -> Option<Vec<usize>> {
    if e.attr(marker).is_some() {
        return Some(Vec::new());
    }
    e.children.iter().enumerate().find_map(|(k, c)| match c {
        Node::Element(x) => marked(x, marker).map(|mut p| {
            p.insert(0, k);
            p
        }),
        _ => None,
    })
}

/// Apply a v2 patchset to `doc`. The patch's `<source>` version must equal the
/// document's: an older document needs a full refresh, a newer one means the
/// patch is stale (both `PatchVersionMismatch`). A patch without `<version>`
/// (`crm_diff -u`) is applied unchecked. The result takes the `<target>` version.
pub fn apply_patch(doc: &Document, patch: &Element) -> Result<Document, CibError> {
    let mut out = doc.clone();
    apply_patch_in_place(&mut out, patch)?;
    Ok(out)
}

/// [`apply_patch`] on `out` itself, for a copy that is thrown away when a patch does not
/// apply (a follower of the CIB re-reads it then): no clone of the whole document per
/// patch. On an error `out` may be partly changed.
pub fn apply_patch_in_place(out: &mut Document, patch: &Element) -> Result<(), CibError> {
    if patch.name != "diff" || patch.attr("format") != Some("2") {
        return Err(CibError::BadPatch(format!("<{}> is not a <diff format=\"2\"> patchset (v1 diffs are not supported)", patch.name)));
    }
    let version = patch.child("version");
    let target = version.and_then(|v| v.child("target")).map(Version::of);
    if let Some(source) = version.and_then(|v| v.child("source")).map(Version::of) {
        let current = Version::of(&out.root);
        if current != source {
            let hint = if current < source {
                "the CIB is behind, a full refresh is needed (cibadmin: Application of update diff failed)"
            } else {
                "the patch is stale (cibadmin: Update was older than existing configuration)"
            };
            return Err(CibError::PatchVersionMismatch { from: source.to_string(), current: current.to_string(), hint });
        }
    }
    let unit = indent_unit(&out.root);
    // Creates and moves run after everything else, by position. Their targets are
    // found now and tagged with a marker attribute, as paths may stop resolving.
    let mut placed: Vec<(usize, String, &Element, Vec<usize>)> = Vec::new();
    for c in patch.children_named("change") {
        let op = c.attr("operation").unwrap_or("");
        let path = c.attr("path").ok_or_else(|| CibError::BadPatch(format!("<change operation=\"{op}\"> has no path")))?;
        if let (Some(parent), Some(pos), "delete") = (path.strip_suffix("/comment"), c.attr("position"), op) {
            // Pacemaker names a comment by its parent and its position at that moment.
            let pos: usize = pos.parse().map_err(|_| CibError::BadPatch(format!("bad position '{pos}' at {path}")))?;
            if let Some(p) = resolve(&out.root, parent)? {
                let e = node_mut(&mut out.root, &p);
                let k = e.children.iter().enumerate().filter(|(_, n)| !is_blank(n)).nth(pos).map(|(k, _)| k);
                if let Some(k) = k.filter(|&k| matches!(e.children[k], Node::Comment(_))) {
                    remove_at(e, k);
                }
            }
            continue;
        }
        let found = resolve(&out.root, path)?;
        if op == "delete" {
            if let Some(p) = found {
                let (last, parent) = p.split_last().ok_or_else(|| CibError::BadPatch("a patch cannot delete the root".into()))?;
                remove_at(node_mut(&mut out.root, parent), *last);
            }
            continue;
        }
        let p = found.ok_or_else(|| CibError::BadPatch(format!("{op} target {path} does not exist")))?;
        match op {
            "modify" => {
                let e = node_mut(&mut out.root, &p);
                match c.child("change-result").and_then(|r| r.elements().next()) {
                    Some(r) => e.attrs = r.attrs.clone(),
                    None => {
                        for a in c.child("change-list").into_iter().flat_map(|l| l.children_named("change-attr")) {
                            let name = a.attr("name").ok_or_else(|| CibError::BadPatch(format!("change-attr without name at {path}")))?;
                            match (a.attr("operation"), a.attr("value")) {
                                (Some("set"), Some(v)) => e.set_attr(name, v),
                                (Some("unset"), _) => drop(e.remove_attr(name)),
                                _ => return Err(CibError::BadPatch(format!("bad change-attr '{name}' at {path}"))),
                            }
                        }
                    }
                }
            }
            "create" | "move" => {
                let pos = c.attr("position").and_then(|p| p.parse().ok());
                let pos = pos.ok_or_else(|| CibError::BadPatch(format!("{op} at {path} has no valid position")))?;
                if op == "create" && c.children.iter().all(is_blank) {
                    return Err(CibError::BadPatch(format!("create at {path} carries nothing")));
                }
                let marker = format!("{MARK}{}", placed.len());
                let hint = if op == "move" { Vec::new() } else { p.clone() };
                if op == "move" {
                    // A moved element waits at the end of its parent.
                    let (last, parent) = p.split_last().ok_or_else(|| CibError::BadPatch("a patch cannot move the root".into()))?;
                    let parent = node_mut(&mut out.root, parent);
                    let (mut node, lead) = remove_at(parent, *last);
                    if let Some(e) = node.element_mut() {
                        e.set_attr(&marker, "");
                    }
                    insert_node(parent, usize::MAX, node, lead, &unit);
                } else {
                    node_mut(&mut out.root, &p).set_attr(&marker, "");
                }
                placed.push((pos, marker, c, hint));
            }
            other => return Err(CibError::BadPatch(format!("unknown change operation '{other}' at {path}"))),
        }
    }
    placed.sort_by_key(|(p, _, _, _)| *p);
    for (pos, marker, c, hint) in &placed {
        let p = marked_near(&out.root, marker, hint).expect("marked above");
        if c.attr("operation") == Some("create") {
            // An element, or a comment as Pacemaker may create one.
            let node = c.children.iter().find(|n| !is_blank(n)).expect("checked").clone();
            insert_node(node_mut(&mut out.root, &p), *pos, node, None, &unit);
        } else {
            let (last, parent) = p.split_last().expect("not the root");
            let parent = node_mut(&mut out.root, parent);
            let (node, lead) = remove_at(parent, *last);
            if *pos > parent.children.iter().filter(|n| !is_blank(n)).count() {
                return Err(CibError::BadPatch(format!("move of {} to position {pos} is past the end", c.attr("path").unwrap_or(""))));
            }
            insert_node(parent, *pos, node, lead, &unit);
        }
    }
    // Only the marked elements are visited again: walking the whole document would also
    // unshare every level of it (xml::Children).
    for (_, marker, _, hint) in &placed {
        if let Some(p) = marked_near(&out.root, marker, hint) {
            node_mut(&mut out.root, &p).remove_attr(marker);
        }
    }
    if let Some(t) = target.filter(|t| *t != Version::of(&out.root)) {
        t.write_to(&mut out.root);
    }
    Ok(())
}

/// Building a v2 patchset without `<version>` (applied to whatever CIB is current): for
/// writes that name their targets by path, e.g. the DC's status writes scoped by node and
/// the CLI's pure edits. Paths select by `@id` only, as [`apply_patch`] reads them.
pub mod build {
    use crate::xml::Element;

    pub fn delete(path: &str) -> Element {
        let mut c = Element::new("change");
        c.set_attr("operation", "delete");
        c.set_attr("path", path);
        c
    }

    /// Set (Some) or unset (None) attributes of the element at `path`.
    pub fn modify(path: &str, attrs: &[(&str, Option<&str>)]) -> Element {
        let mut c = Element::new("change");
        c.set_attr("operation", "modify");
        c.set_attr("path", path);
        let mut list = Element::new("change-list");
        for (k, v) in attrs {
            let mut a = Element::new("change-attr");
            a.set_attr("name", k);
            match v {
                Some(v) => {
                    a.set_attr("operation", "set");
                    a.set_attr("value", v);
                }
                None => a.set_attr("operation", "unset"),
            }
            list.push(a);
        }
        c.push(list);
        c
    }

    /// Put `xml` as the child at `position` of the element at `parent_path`.
    pub fn create(parent_path: &str, position: usize, xml: Element) -> Element {
        let mut c = Element::new("change");
        c.set_attr("operation", "create");
        c.set_attr("path", parent_path);
        c.set_attr("position", &position.to_string());
        c.push(xml);
        c
    }

    /// `<diff format="2">` without `<version>`.
    pub fn patchset(changes: Vec<Element>) -> Element {
        let mut d = Element::new("diff");
        d.set_attr("format", "2");
        for c in changes {
            d.push(c);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{self, Op};
    use crate::xml::parse;

    const OLD: &str = r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="4" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="false"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources>
      <primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2">
        <instance_attributes id="ip-ia">
          <nvpair id="ip-ia-addr" name="ip" value="10.0.0.5"/>
        </instance_attributes>
      </primitive>
      <primitive id="web" class="ocf" provider="heartbeat" type="apache"/>
    </resources>
    <constraints/>
  </configuration>
  <status/>
</cib>
"#;

    fn doc(s: &str) -> Document {
        parse(s).unwrap()
    }
    fn ops_of(d: &Element) -> Vec<String> {
        d.children_named("change").map(|c| format!("{} {}", c.attr("operation").unwrap(), c.attr("path").unwrap())).collect()
    }

    /// The edits of CIB-NOTES §4 (checked there against crm_diff): same changes, same paths.
    #[test]
    fn notes_example() {
        let new = OLD
            .replace("epoch=\"4\"", "epoch=\"8\"")
            .replace("        <nvpair id=\"cib-bootstrap-options-stonith-enabled\" name=\"stonith-enabled\" value=\"false\"/>\n", "")
            .replace("10.0.0.5", "10.0.0.6")
            .replace("<constraints/>", "<constraints>\n      <rsc_colocation id=\"web-with-ip\" rsc=\"web\" with-rsc=\"ip\" score=\"INFINITY\"/>\n    </constraints>");
        let (old, new) = (doc(OLD), doc(&new));
        let d = diff(&old, &new);
        assert_eq!(
            ops_of(&d),
            [
                "delete /cib/configuration/crm_config/cluster_property_set[@id='cib-bootstrap-options']/nvpair[@id='cib-bootstrap-options-stonith-enabled']",
                "modify /cib",
                "modify /cib/configuration/resources/primitive[@id='ip']/instance_attributes[@id='ip-ia']/nvpair[@id='ip-ia-addr']",
                "create /cib/configuration/constraints",
            ]
        );
        let v = d.child("version").unwrap();
        assert_eq!(Version::of(v.child("source").unwrap()).to_string(), "0.4.0");
        assert_eq!(Version::of(v.child("target").unwrap()).to_string(), "0.8.0");
        let m = d.children_named("change").nth(2).unwrap();
        assert_eq!(
            m.child("change-list").unwrap().elements().next().unwrap().to_xml(),
            r#"<change-attr name="value" operation="set" value="10.0.0.6"/>"#
        );
        assert_eq!(
            m.child("change-result").unwrap().elements().next().unwrap().to_xml(),
            r#"<nvpair id="ip-ia-addr" name="ip" value="10.0.0.6"/>"#
        );
        assert_eq!(d.children_named("change").nth(3).unwrap().attr("position"), Some("0"));
        // Equal in meaning; layout differs only where <constraints/> gained indentation (blank text is never sent).
        let back = apply_patch(&old, &d).unwrap();
        assert!(ops::same(&back.root, &new.root), "{}", back.to_xml());
        // An attribute removed is an unset.
        let d = diff(&new, &doc(&new.to_xml().replace(" provider=\"heartbeat\" type=\"apache\"", " type=\"apache\"")));
        assert!(d.to_xml().contains(r#"<change-attr name="provider" operation="unset"/>"#), "{}", d.to_xml());
    }

    /// A crm_diff patch as Pacemaker 2.1.5 printed it (swap of ip/web, node added) applies here.
    #[test]
    fn applies_pacemaker_patch_with_moves() {
        let patch = doc(r#"<diff format="2">
  <version><source admin_epoch="0" epoch="4" num_updates="0"/><target admin_epoch="0" epoch="5" num_updates="0"/></version>
  <change operation="modify" path="/cib"><change-list><change-attr name="epoch" operation="set" value="5"/></change-list>
    <change-result><cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="5" num_updates="0" admin_epoch="0"/></change-result></change>
  <change operation="create" path="/cib/configuration/nodes" position="0"><node id="0" uname="n0"/></change>
  <change operation="move" path="/cib/configuration/resources/primitive[@id=&apos;web&apos;]" position="0"/>
  <change operation="move" path="/cib/configuration/resources/primitive[@id=&apos;ip&apos;]" position="1"/>
</diff>"#)
        .root;
        let out = apply_patch(&doc(OLD), &patch).unwrap();
        let ids: Vec<_> =
            out.root.child("configuration").unwrap().child("resources").unwrap().elements().map(|e| e.id().unwrap()).collect();
        assert_eq!(ids, ["web", "ip"]);
        assert_eq!(Version::of(&out.root).to_string(), "0.5.0");
        assert_eq!(out.root.child("configuration").unwrap().child("nodes").unwrap().elements().count(), 1);
        // Our own diff of the same change is one move (ip stays once web is first), and round-trips.
        let d = diff(&doc(OLD), &out);
        assert_eq!(d.children_named("change").filter(|c| c.attr("operation") == Some("move")).count(), 1);
        assert_eq!(apply_patch(&doc(OLD), &d).unwrap().to_xml(), out.to_xml());
    }

    #[test]
    fn version_mismatch_is_refused() {
        let old = doc(OLD);
        let new = doc(&OLD.replace("10.0.0.5", "10.0.0.9").replace("epoch=\"4\"", "epoch=\"5\""));
        let d = diff(&old, &new);
        let behind = doc(&OLD.replace("epoch=\"4\"", "epoch=\"3\""));
        let e = apply_patch(&behind, &d).unwrap_err();
        assert!(matches!(e, CibError::PatchVersionMismatch { .. }) && e.to_string().contains("full refresh"), "{e}");
        let e = apply_patch(&new, &d).unwrap_err();
        assert!(e.to_string().contains("stale"), "{e}");
        let bad = doc(r#"<diff format="1"/>"#).root;
        assert!(matches!(apply_patch(&old, &bad), Err(CibError::BadPatch(_))));
        // Through ops::apply: the target version is adopted as is (no extra bump).
        assert_eq!(Version::of(&ops::apply(&old, &Op::Patch { diff: d.clone() }).unwrap().root).to_string(), "0.5.0");
        // A patch that would break validation changes nothing.
        let dangling =
            doc(&OLD.replace("<constraints/>", r#"<constraints><rsc_location id="l" rsc="ghost" node="n" score="1"/></constraints>"#));
        assert!(matches!(ops::apply(&old, &Op::Patch { diff: diff(&old, &dangling) }), Err(CibError::DanglingReference { .. })));
    }

    /// What `crm_diff -p` (2.1.5) made of hand-written patches on [A, B, C]; ours must agree.
    #[test]
    fn applier_matches_crm_diff() {
        let abc = doc(
            r#"<cib epoch="1" num_updates="0" admin_epoch="0"><configuration><resources><primitive id="A"/><primitive id="B"/><primitive id="C"/><!--c--></resources></configuration></cib>"#,
        );
        let run = |changes: &str| {
            let p = doc(&format!(
                r#"<diff format="2"><version><source admin_epoch="0" epoch="1" num_updates="0"/><target admin_epoch="0" epoch="1" num_updates="0"/></version>{changes}</diff>"#
            ));
            apply_patch(&abc, &p.root).map(|d| {
                let res = d.root.child("configuration").unwrap().child("resources").unwrap();
                res.children
                    .iter()
                    .map(|n| match n {
                        Node::Element(e) => e.id().unwrap().to_string(),
                        _ => "#".into(),
                    })
                    .collect::<Vec<_>>()
                    .join("")
            })
        };
        let mv = |id: &str, p: usize| {
            format!(r#"<change operation="move" path="/cib/configuration/resources/primitive[@id='{id}']" position="{p}"/>"#)
        };
        let mk = |p: usize| {
            format!(r#"<change operation="create" path="/cib/configuration/resources" position="{p}"><primitive id="X"/></change>"#)
        };
        assert_eq!(run(&mv("A", 1)).unwrap(), "BAC#");
        assert_eq!(run(&format!("{}{}", mk(1), mv("A", 2))).unwrap(), "BXAC#");
        assert_eq!(run(&format!("{}{}", mk(0), mv("A", 2))).unwrap(), "XBAC#");
        assert_eq!(run(&format!("{}{}", mv("B", 2), mv("A", 1))).unwrap(), "CAB#");
        assert_eq!(run(&format!("{}{}", mv("C", 1), mv("B", 0))).unwrap(), "BCA#");
        assert!(run(&mv("A", 5)).is_err());
        // Comments count in positions, and crm_diff deletes one by position.
        assert_eq!(run(&mk(3)).unwrap(), "ABCX#");
        assert_eq!(run(r#"<change operation="delete" path="/cib/configuration/resources/comment" position="3"/>"#).unwrap(), "ABC");
        assert_eq!(run(r#"<change operation="delete" path="/cib/configuration/resources/comment" position="2"/>"#).unwrap(), "ABC#");
    }

    /// Elements a path cannot tell apart are sent as a delete and re-create of an addressable ancestor.
    #[test]
    fn unaddressable_children_replace_their_parent() {
        let old = doc(
            r#"<cib epoch="1"><configuration><resources><primitive id="p"><operations><op name="a"/><op name="b"/></operations></primitive></resources></configuration></cib>"#,
        );
        let new = doc(&old.to_xml().replace(r#"name="b""#, r#"name="c""#));
        let d = diff(&old, &new);
        assert_eq!(
            ops_of(&d),
            ["delete /cib/configuration/resources/primitive[@id='p']/operations", "create /cib/configuration/resources/primitive[@id='p']"]
        );
        assert_eq!(apply_patch(&old, &d).unwrap().to_xml(), new.to_xml());
        // No change, nothing but the version.
        assert_eq!(diff(&old, &old).elements().count(), 1);
    }

    /// Children changed in place in a long list are compared in step (few or many); a
    /// change the path cannot reach (a repeated tag without an id) still falls back.
    #[test]
    fn in_place_changes_in_long_lists() {
        let list = |changed: &dyn Fn(usize) -> bool, dup: bool| {
            let mut s = String::from(r#"<cib epoch="1" num_updates="0" admin_epoch="0"><configuration><resources>"#);
            for k in 0..40 {
                let v = if changed(k) { "2" } else { "1" };
                s.push_str(&format!(r#"<primitive id="p{k}" description="{v}"/>"#));
                if dup && k == 30 {
                    s.push_str(&format!(r#"<template description="{v}"/><template description="{v}"/>"#));
                }
            }
            s.push_str("</resources></configuration></cib>");
            doc(&s)
        };
        for (every, dup) in [(13, false), (2, false), (2, true)] {
            let old = list(&|_| false, dup);
            let new = list(&|k| k % every == 0, dup);
            let d = diff(&old, &new);
            if dup {
                // The second template cannot be addressed: its parent is sent whole.
                assert_eq!(ops_of(&d), ["delete /cib/configuration/resources", "create /cib/configuration"], "{}", d.to_xml());
            } else {
                let modifies = d.children_named("change").filter(|c| c.attr("operation") == Some("modify")).count();
                assert_eq!(modifies, 40_usize.div_ceil(every), "every {every}:\n{}", d.to_xml());
            }
            same_text(&apply_patch(&old, &d).unwrap(), &new, &d.to_xml());
        }
    }

    /// Text equality; on failure, show where the texts part.
    fn same_text(got: &Document, want: &Document, ctx: &str) {
        let (g, w) = (got.to_xml(), want.to_xml());
        if g != w {
            let at = g.bytes().zip(w.bytes()).take_while(|(a, b)| a == b).count();
            let from = g[..at].char_indices().rev().nth(150).map_or(0, |(i, _)| i);
            panic!("{ctx}\ngot:  …{}\nwant: …{}", &g[from..(at + 150).min(g.len())], &w[from..(at + 150).min(w.len())]);
        }
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }
    }

    fn with_attr(e: &Element, k: &str, v: &str) -> Element {
        let mut f = Element::new(&e.name);
        f.set_attr("id", e.id().unwrap());
        f.set_attr(k, v);
        f
    }

    /// Random edits on a sample of the scheduler regression CIBs: patch(old, diff(old, new)) == new, text for text.
    #[test]
    fn round_trip_over_real_cibs() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/scheduler-cases/xml");
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "xml")).collect();
        files.sort();
        assert!(files.len() >= 599);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut checked, mut fallbacks) = (0, 0);
        for path in files.iter().step_by(6) {
            let old = parse(&std::fs::read_to_string(path).unwrap()).unwrap();
            let all: Vec<&Element> = old.root.descendants();
            // Options Pacemaker parses (booleans, durations, scores) would refuse a made-up value.
            let free = |e: &Element| e.attr("name").is_some_and(|n| !crate::schema::is_typed_option(n));
            let nvpairs: Vec<&&Element> = all.iter().filter(|e| e.name == "nvpair" && e.id().is_some() && free(e)).collect();
            let conf = old.root.child("configuration").unwrap();
            let cons: Vec<&Element> =
                conf.child("constraints").map(|c| c.elements().filter(|e| e.id().is_some()).collect()).unwrap_or_default();
            let newp = parse(&format!(r#"<primitive id="halo-prop-{}" class="ocf" provider="heartbeat" type="Dummy"><instance_attributes id="halo-prop-ia"><nvpair id="halo-prop-ia-x" name="x" value="1"/></instance_attributes></primitive>"#, checked)).unwrap().root;
            let mut edits: Vec<Document> = Vec::new();
            if !nvpairs.is_empty() {
                let e = nvpairs[rng.below(nvpairs.len())];
                edits.push(ops::apply(&old, &Op::Modify { xml: with_attr(e, "value", "halo-changed") }).unwrap());
            }
            if !cons.is_empty() {
                let c = cons[rng.below(cons.len())];
                edits.push(ops::delete(&old, with_attr(c, "id", c.id().unwrap())).unwrap());
            }
            if conf.child("resources").is_some() {
                edits.push(ops::apply(&old, &Op::Create { section: "resources".into(), xml: newp.clone() }).unwrap());
            }
            // Everything at once, plus a move among resources, a root attribute and a status deletion.
            let mut all_in = edits.last().cloned().unwrap_or_else(|| old.clone());
            if let Some(e) = nvpairs.first() {
                all_in = ops::modify(&all_in, with_attr(e, "value", "halo-again")).unwrap();
            }
            if let Some(res) = all_in.root.child_mut("configuration").and_then(|c| c.child_mut("resources")) {
                let n = res.elements().count();
                if n > 1 {
                    // Any non-blank child moves (comments stay put, as in Pacemaker's model).
                    let k = res.children.iter().enumerate().filter(|(_, c)| matches!(c, Node::Element(_))).nth(rng.below(n)).unwrap().0;
                    let (node, lead) = remove_at(res, k);
                    let solid = res.children.iter().filter(|c| !is_blank(c)).count();
                    insert_node(res, rng.below(solid + 1), node, lead, "  ");
                }
            }
            all_in.root.set_attr("have-quorum", "halo");
            if let Some(op) = all_in.root.descendants().into_iter().find(|e| e.name == "lrm_rsc_op").cloned() {
                all_in = ops::delete(&all_in, op).unwrap();
            }
            edits.push(all_in);
            for new in &edits {
                let d = diff(&old, new);
                // A parent re-created: a create of something that is also deleted.
                let deleted: Vec<&str> =
                    d.children_named("change").filter(|c| c.attr("operation") == Some("delete")).filter_map(|c| c.attr("path")).collect();
                if d.children_named("change")
                    .filter(|c| c.attr("operation") == Some("create"))
                    .any(|c| deleted.contains(&format!("{}/{}", c.attr("path").unwrap(), step(c.elements().next().unwrap())).as_str()))
                {
                    fallbacks += 1;
                }
                let got = apply_patch(&old, &d).unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), d.to_xml()));
                same_text(&got, new, &format!("{}\n{}", path.display(), d.to_xml()));
                // And the reverse direction.
                same_text(&apply_patch(new, &diff(new, &old)).unwrap(), &old, &format!("{} (reverse)", path.display()));
            }
            checked += 1;
        }
        assert!(checked >= 100, "{checked}");
        // No edit here adds or drops a comment, so every patch should be minimal.
        assert_eq!(fallbacks, 0, "patches that re-created a parent");
    }
}
