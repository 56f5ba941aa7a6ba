//! CIB access control lists, as Pacemaker applies them (CIB-NOTES §6, §7 trap 5).
//! Pure functions: the daemon resolves who asks, skips privileged users, and calls
//! [`acl_for`], then [`Acl::filter`] on reads and [`Acl::check_write`] on writes.
//!
//! Behaviour, checked against cibadmin 2.1.5 in file mode with `CIB_user`
//! (`tests/acl_oracle.rs`):
//!
//! * ACLs apply when the cluster option `enable-acl` is true (`true`, `yes`, `on`,
//!   `y`, `1`, any case). Among the `cluster_property_set`s of `crm_config`, taken by
//!   ascending `score` (document order on ties), the first that sets it decides; inside
//!   one set the last `nvpair` with a value counts. Rules on the sets are not evaluated
//!   (a set with a rule counts as applying).
//! * Who: `acl_target` whose `name` (else `id`) is the user; `acl_group` whose `name`
//!   (else `id`) is one of the requester's groups (cibadmin counts a group only when it
//!   lists the user as a member, not the user's primary group); the 1.x `acl_user` by
//!   `id`. Everything that matches adds up.
//! * Their roles (`role`/`role_ref` naming an `acl_role`) and any permissions placed
//!   directly in them: `acl_permission kind=read|write|deny`, or the 1.x `read`,
//!   `write`, `deny` elements. Selector: `xpath`; else `reference`/`ref` (elements
//!   with that id), `object-type`/`tag` (elements with that name) and `attribute`
//!   (elements carrying it), combined.
//! * A permission marks the selected elements. To decide on an element, walk from it up
//!   to `<cib>`: the first element marked `deny` refuses, the first marked `write`
//!   grants; a `read` mark grants reading but is passed over when writing (so `read` on
//!   a child of a writable element does not make the child read-only). Unmarked at the
//!   top: refused.
//! * Reads: unreadable elements are pruned; an unreadable ancestor of a readable one
//!   stays with only its `id` (so `<cib>` loses its version attributes).
//! * Writes: every element whose attributes change must be writable in the old CIB;
//!   every deleted element whose parent remains must be writable in the old CIB
//!   (cibadmin does not look inside it); every created element must be writable in the
//!   new CIB or be scaffolding (no attribute but `id`). Moving children is not checked.

use std::collections::HashMap;

use crate::error::CibError;
use crate::ops::XPath;
use crate::xml::{Document, Element, Node};

/// Who asks: a user name and its Unix group names (resolved by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requester {
    pub user: String,
    pub groups: Vec<String>,
}

impl Requester {
    pub fn new(user: &str, groups: &[&str]) -> Requester {
        Requester { user: user.to_string(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Deny,
}

impl Kind {
    fn bit(self) -> u8 {
        match self {
            Kind::Read => READ,
            Kind::Write => WRITE,
            Kind::Deny => DENY,
        }
    }
}

const READ: u8 = 1;
const WRITE: u8 = 2;
const DENY: u8 = 4;

#[derive(Debug, Clone)]
enum Selector {
    XPath(XPath),
    /// Elements with this name (any when `None`), this id, carrying this attribute.
    Match {
        tag: Option<String>,
        id: Option<String>,
        attribute: Option<String>,
    },
    /// A permission that could not be understood: it matches nothing.
    Nothing,
}

/// One permission granted to the requester.
#[derive(Debug, Clone)]
pub struct Permission {
    /// The `id` of the permission element.
    pub id: String,
    pub kind: Kind,
    selector: Selector,
}

/// A permission that halo cannot apply; it matches nothing. The caller should log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclProblem {
    /// The `id` of the permission element.
    pub permission: String,
    pub message: String,
}

/// The ACL rules that apply to one requester, taken from a CIB's `<acls>` section.
#[derive(Debug, Clone)]
pub struct Acl {
    user: String,
    perms: Vec<Permission>,
    problems: Vec<AclProblem>,
}

/// Version attributes of `<cib>` that the daemon, not the requester, changes.
const VERSION_ATTRS: [&str; 7] =
    ["admin_epoch", "epoch", "num_updates", "cib-last-written", "update-origin", "update-client", "update-user"];

/// Whether the cluster option `enable-acl` is true in this CIB.
pub fn acls_enabled(doc: &Document) -> bool {
    let Some(cfg) = doc.root.child("configuration").and_then(|c| c.child("crm_config")) else { return false };
    let mut sets: Vec<&Element> = cfg.children_named("cluster_property_set").collect();
    sets.sort_by_key(|s| score(s.attr("score").unwrap_or("0")));
    for set in sets {
        let value =
            set.children_named("nvpair").filter(|nv| nv.attr("name") == Some("enable-acl")).filter_map(|nv| nv.attr("value")).last();
        if let Some(v) = value {
            return is_true(v);
        }
    }
    false
}

/// Pacemaker's boolean spelling of true.
pub fn is_true(v: &str) -> bool {
    ["true", "yes", "on", "y", "1"].iter().any(|t| v.trim().eq_ignore_ascii_case(t))
}

fn score(s: &str) -> i64 {
    const INF: i64 = 1_000_000;
    match s.trim() {
        "INFINITY" | "+INFINITY" => INF,
        "-INFINITY" => -INF,
        t => t.parse::<i64>().map_or(0, |v| v.clamp(-INF, INF)),
    }
}

/// None when ACLs do not apply: the cluster option enable-acl is not true (crm_config
/// cluster_property_set nvpair). Privileged users (root, hacluster) are the caller's business.
pub fn acl_for(doc: &Document, who: &Requester) -> Option<Acl> {
    if !acls_enabled(doc) {
        return None;
    }
    let mut acl = Acl { user: who.user.clone(), perms: Vec::new(), problems: Vec::new() };
    let Some(acls) = doc.root.child("configuration").and_then(|c| c.child("acls")) else { return Some(acl) };
    let roles: HashMap<&str, &Element> = {
        let mut m = HashMap::new();
        for r in acls.children_named("acl_role") {
            if let Some(id) = r.id() {
                m.entry(id).or_insert(r);
            }
        }
        m
    };
    let label = |e: &Element| e.attr("name").or(e.id()).map(str::to_string);
    for holder in acls.elements() {
        let applies = match holder.name.as_str() {
            "acl_target" => label(holder).as_deref() == Some(who.user.as_str()),
            "acl_group" => label(holder).is_some_and(|g| who.groups.contains(&g)),
            "acl_user" => holder.id() == Some(who.user.as_str()),
            _ => false,
        };
        if !applies {
            continue;
        }
        acl.add_permissions(holder);
        for r in holder.elements().filter(|e| e.name == "role" || e.name == "role_ref") {
            match r.id().and_then(|id| roles.get(id)) {
                Some(role) => acl.add_permissions(role),
                None => acl.problems.push(AclProblem {
                    permission: r.id().unwrap_or("").to_string(),
                    message: format!("{} refers to an unknown acl_role; it grants nothing", r.id().unwrap_or("<role> without id")),
                }),
            }
        }
    }
    Some(acl)
}

impl Acl {
    /// The user these rules are for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The permissions that apply, in the order found.
    pub fn permissions(&self) -> &[Permission] {
        &self.perms
    }

    /// Permissions that match nothing because halo cannot apply them (an xpath outside
    /// the [`XPath`] subset, no selector, a bad kind), for the caller to log.
    pub fn problems(&self) -> &[AclProblem] {
        &self.problems
    }

    /// The error for a read that shows nothing.
    pub fn read_denied(&self) -> CibError {
        CibError::PermissionDenied { user: self.user.clone(), action: "read", element: "cib".into(), id: String::new() }
    }

    fn add_permissions(&mut self, holder: &Element) {
        for p in holder.elements() {
            let kind = match (p.name.as_str(), p.attr("kind")) {
                ("acl_permission", Some("read")) | ("read", _) => Kind::Read,
                ("acl_permission", Some("write")) | ("write", _) => Kind::Write,
                ("acl_permission", Some("deny")) | ("deny", _) => Kind::Deny,
                ("acl_permission", k) => {
                    let id = p.id().unwrap_or("").to_string();
                    let message = format!("acl_permission '{id}' has kind '{}', not read, write or deny; it is ignored", k.unwrap_or(""));
                    self.problems.push(AclProblem { permission: id, message });
                    continue;
                }
                _ => continue,
            };
            let id = p.id().unwrap_or("").to_string();
            let selector = self.selector(&id, p);
            self.perms.push(Permission { id, kind, selector });
        }
    }

    fn selector(&mut self, id: &str, p: &Element) -> Selector {
        if let Some(x) = p.attr("xpath") {
            return match XPath::parse(&owner_of_attribute(x)) {
                Ok(xp) => Selector::XPath(xp),
                Err(e) => {
                    self.problems
                        .push(AclProblem { permission: id.to_string(), message: format!("acl_permission '{id}' matches nothing: {e}") });
                    Selector::Nothing
                }
            };
        }
        let get = |a: &str, b: &str| p.attr(a).or(p.attr(b)).map(str::to_string);
        let (tag, rid) = (get("object-type", "tag"), get("reference", "ref"));
        if tag.is_none() && rid.is_none() {
            let message = format!("acl_permission '{id}' has no xpath, reference or object-type; it matches nothing");
            self.problems.push(AclProblem { permission: id.to_string(), message });
            return Selector::Nothing;
        }
        Selector::Match { tag, id: rid, attribute: p.attr("attribute").map(str::to_string) }
    }

    /// The marks (READ|WRITE|DENY bits) the permissions put on `doc`'s elements, by path.
    fn marks(&self, doc: &Document) -> Marks {
        let mut m: Marks = HashMap::new();
        for p in &self.perms {
            let paths = match &p.selector {
                Selector::XPath(x) => x.select_paths(&doc.root),
                Selector::Match { tag, id, attribute } => {
                    let mut out = Vec::new();
                    select_match(&doc.root, &mut Vec::new(), tag.as_deref(), id.as_deref(), attribute.as_deref(), &mut out);
                    out
                }
                Selector::Nothing => Vec::new(),
            };
            for path in paths {
                *m.entry(path).or_insert(0) |= p.kind.bit();
            }
        }
        m
    }

    /// What this requester may read: unreadable subtrees pruned, ancestors of readable
    /// elements kept as bare tags holding only their `id` (`<cib>` loses its version
    /// attributes); None when nothing at all is readable (the caller answers Permission denied).
    pub fn filter(&self, doc: &Document) -> Option<Document> {
        let marks = self.marks(doc);
        let root = filter_element(&doc.root, &mut Vec::new(), State::NONE, &marks, 0)?;
        Some(Document { prolog: Vec::new(), root, epilog: Vec::new() })
    }

    /// Whether the element at `path` (child indices from the root, text nodes counted)
    /// may be read and written, as `(read, write)`.
    pub fn access(&self, doc: &Document, path: &[usize]) -> (bool, bool) {
        let marks = self.marks(doc);
        let mut st = State::NONE.enter(marks.get(&[][..]).copied().unwrap_or(0));
        let mut e = &doc.root;
        for (k, &i) in path.iter().enumerate() {
            match e.children.get(i) {
                Some(Node::Element(c)) => e = c,
                _ => return (false, false),
            }
            st = st.enter(marks.get(&path[..=k]).copied().unwrap_or(0));
        }
        (st.read, st.write)
    }

    /// A write that turns `old` into `new` is allowed only if every created, modified or
    /// deleted element is writable (created ones judged in `new`, others in `old`).
    /// Changes of the version attributes on `<cib>` (admin_epoch, epoch, num_updates,
    /// cib-last-written, update-origin, update-client, update-user) are not the
    /// requester's and are ignored.
    pub fn check_write(&self, old: &Document, new: &Document) -> Result<(), CibError> {
        self.check(old, new, true)
    }

    /// Like [`Acl::check_write`], but the version attributes count too: cibadmin refuses a
    /// request that sets `epoch` itself unless `<cib>` is writable. Use it on the result
    /// of the operation before the daemon bumps the version.
    pub fn check_request(&self, old: &Document, new: &Document) -> Result<(), CibError> {
        self.check(old, new, false)
    }

    fn check(&self, old: &Document, new: &Document, ignore_versions: bool) -> Result<(), CibError> {
        let w = Walk { acl: self, old: self.marks(old), new: self.marks(new), ignore_versions };
        let os = State::NONE.enter(w.old.get(&[][..]).copied().unwrap_or(0));
        let ns = State::NONE.enter(w.new.get(&[][..]).copied().unwrap_or(0));
        if old.root.name != new.root.name {
            w.deny_unless(os.write, "delete", &old.root)?;
            return w.created(&new.root, &mut Vec::new(), ns);
        }
        w.pair(&old.root, &mut Vec::new(), os, &new.root, &mut Vec::new(), ns, true)
    }
}

type Marks = HashMap<Vec<usize>, u8>;

/// `.../tag/@name` selects an attribute; cibadmin applies the permission to the element
/// that holds it, which is `.../tag[@name]`.
fn owner_of_attribute(x: &str) -> String {
    match x.trim().rsplit_once("/@") {
        Some((head, name))
            if !head.is_empty()
                && !head.ends_with('/')
                && !name.is_empty()
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-:.".contains(&c)) =>
        {
            format!("{head}[@{name}]")
        }
        _ => x.to_string(),
    }
}

fn select_match(e: &Element, path: &mut Vec<usize>, tag: Option<&str>, id: Option<&str>, attr: Option<&str>, out: &mut Vec<Vec<usize>>) {
    if tag.is_none_or(|t| t == e.name) && id.is_none_or(|i| e.id() == Some(i)) && attr.is_none_or(|a| e.attr(a).is_some()) {
        out.push(path.clone());
    }
    for (i, n) in e.children.iter().enumerate() {
        if let Node::Element(c) = n {
            path.push(i);
            select_match(c, path, tag, id, attr, out);
            path.pop();
        }
    }
}

/// Access decided so far on the way down from `<cib>`.
#[derive(Debug, Clone, Copy)]
struct State {
    read: bool,
    write: bool,
}

impl State {
    const NONE: State = State { read: false, write: false };

    /// The state of an element carrying `marks`, below a parent in state `self`:
    /// the nearest mark decides; a bare `read` mark does not decide writing.
    fn enter(self, marks: u8) -> State {
        if marks & DENY != 0 {
            return State::NONE;
        }
        State { read: marks & (READ | WRITE) != 0 || self.read, write: marks & WRITE != 0 || self.write }
    }
}

fn filter_element(e: &Element, path: &mut Vec<usize>, parent: State, marks: &Marks, depth: usize) -> Option<Element> {
    let st = parent.enter(marks.get(path.as_slice()).copied().unwrap_or(0));
    let mut kids = Vec::new();
    for (i, n) in e.children.iter().enumerate() {
        match n {
            Node::Element(c) => {
                path.push(i);
                if let Some(k) = filter_element(c, path, st, marks, depth + 1) {
                    kids.push(Node::from(k));
                }
                path.pop();
            }
            Node::Text(t) if t.trim().is_empty() => {}
            other if st.read => kids.push(other.clone()),
            _ => {}
        }
    }
    if !st.read && kids.is_empty() {
        return None;
    }
    let attrs = if st.read { e.attrs.clone() } else { e.attrs.iter().filter(|(k, _)| k == "id").cloned().collect() };
    Some(Element { name: e.name.clone(), attrs, children: indent(kids, depth).into(), line: e.line })
}

/// Children laid out one per line, two spaces deeper than their parent at `depth`.
fn indent(kids: Vec<Node>, depth: usize) -> Vec<Node> {
    if !kids.iter().any(|k| matches!(k, Node::Element(_) | Node::Comment(_))) {
        return kids;
    }
    let mut out = Vec::with_capacity(kids.len() * 2 + 1);
    for k in kids {
        out.push(Node::Text(format!("\n{}", "  ".repeat(depth + 1))));
        out.push(k);
    }
    out.push(Node::Text(format!("\n{}", "  ".repeat(depth))));
    out
}

struct Walk<'a> {
    acl: &'a Acl,
    old: Marks,
    new: Marks,
    ignore_versions: bool,
}

impl Walk<'_> {
    fn deny_unless(&self, ok: bool, action: &'static str, e: &Element) -> Result<(), CibError> {
        if ok {
            return Ok(());
        }
        Err(CibError::PermissionDenied {
            user: self.acl.user.clone(),
            action,
            element: e.name.clone(),
            id: e.id().unwrap_or("").to_string(),
        })
    }

    /// An element present on both sides, in state `os` in the old CIB and `ns` in the new.
    #[allow(clippy::too_many_arguments)]
    fn pair(
        &self,
        o: &Element,
        op: &mut Vec<usize>,
        os: State,
        n: &Element,
        np: &mut Vec<usize>,
        ns: State,
        root: bool,
    ) -> Result<(), CibError> {
        let counts = |k: &str| !(root && self.ignore_versions && VERSION_ATTRS.contains(&k));
        let changed = o.attrs.iter().filter(|(k, _)| counts(k)).any(|(k, v)| n.attr(k) != Some(v.as_str()))
            || n.attrs.iter().filter(|(k, _)| counts(k)).any(|(k, _)| o.attr(k).is_none());
        if changed {
            self.deny_unless(os.write, "modify", o)?;
        }
        let old_kids: Vec<(usize, &Element)> = element_children(o);
        let mut used = vec![false; old_kids.len()];
        for (ni, nc) in element_children(n) {
            np.push(ni);
            let found = old_kids.iter().enumerate().find(|(k, (_, oc))| !used[*k] && oc.name == nc.name && oc.id() == nc.id());
            let ncs = ns.enter(self.new.get(np.as_slice()).copied().unwrap_or(0));
            match found {
                Some((k, &(oi, oc))) => {
                    used[k] = true;
                    op.push(oi);
                    let ocs = os.enter(self.old.get(op.as_slice()).copied().unwrap_or(0));
                    let r = self.pair(oc, op, ocs, nc, np, ncs, false);
                    op.pop();
                    r?;
                }
                None => self.created(nc, np, ncs)?,
            }
            np.pop();
        }
        for (k, (oi, oc)) in old_kids.iter().enumerate() {
            if !used[k] {
                op.push(*oi);
                let ocs = os.enter(self.old.get(op.as_slice()).copied().unwrap_or(0));
                op.pop();
                self.deny_unless(ocs.write, "delete", oc)?;
            }
        }
        Ok(())
    }

    /// A created element and everything in it: each writable, or scaffolding (no attribute but `id`).
    fn created(&self, e: &Element, path: &mut Vec<usize>, st: State) -> Result<(), CibError> {
        self.deny_unless(st.write || e.attrs.iter().all(|(k, _)| k == "id"), "create", e)?;
        for (i, c) in element_children(e) {
            path.push(i);
            let cs = st.enter(self.new.get(path.as_slice()).copied().unwrap_or(0));
            let r = self.created(c, path, cs);
            path.pop();
            r?;
        }
        Ok(())
    }
}

fn element_children(e: &Element) -> Vec<(usize, &Element)> {
    e.children
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            Node::Element(c) => Some((i, &**c)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;
    use crate::xml::parse;

    const CIB: &str = r#"<cib validate-with="pacemaker-3.9" epoch="5" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="opts"><nvpair id="opt-acl" name="enable-acl" value="true"/></cluster_property_set>
    </crm_config>
    <nodes><node id="1" uname="n1"/></nodes>
    <resources>
      <primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2">
        <instance_attributes id="ip-ia">
          <nvpair id="ip-ia-ip" name="ip" value="10.0.0.1"/>
          <nvpair id="ip-ia-mask" name="cidr_netmask" value="24"/>
        </instance_attributes>
        <meta_attributes id="ip-meta"><nvpair id="ip-meta-tr" name="target-role" value="Started"/></meta_attributes>
      </primitive>
      <primitive id="d1" class="ocf" provider="pacemaker" type="Dummy"/>
    </resources>
    <constraints/>
    <acls>
      <acl_target id="alice"><role id="ro"/></acl_target>
      <acl_target id="t-bob" name="bob"><role id="rw"/></acl_target>
      <acl_group id="ops"><role id="tr"/></acl_group>
      <acl_target id="nobody"/>
      <acl_user id="old"><write id="old-w" tag="primitive" ref="d1"/></acl_user>
      <acl_role id="ro">
        <acl_permission id="ro-res" kind="read" xpath="/cib/configuration/resources"/>
        <acl_permission id="ro-deny" kind="deny" reference="ip-ia"/>
        <acl_permission id="ro-bad" kind="read" xpath="//primitive[@id='a' or @id='b']"/>
      </acl_role>
      <acl_role id="rw">
        <acl_permission id="rw-ip" kind="write" reference="ip"/>
        <acl_permission id="rw-ia" kind="read" reference="ip-ia"/>
        <acl_permission id="rw-meta" kind="deny" xpath="//meta_attributes[@id='ip-meta']"/>
      </acl_role>
      <acl_role id="tr">
        <acl_permission id="tr-w" kind="write" object-type="nvpair" attribute="value"/>
        <acl_permission id="tr-d" kind="deny" xpath="//nvpair[@name='ip']"/>
      </acl_role>
    </acls>
  </configuration>
  <status/>
</cib>"#;

    fn doc() -> Document {
        parse(CIB).unwrap()
    }

    fn acl(user: &str, groups: &[&str]) -> Acl {
        acl_for(&doc(), &Requester::new(user, groups)).unwrap()
    }

    fn modify(frag: &str) -> Document {
        ops::modify(&doc(), parse(frag).unwrap().root).unwrap()
    }

    #[test]
    fn disabled_unless_enable_acl_is_true() {
        assert!(acl_for(&parse(&CIB.replace("value=\"true\"", "value=\"false\"")).unwrap(), &Requester::new("alice", &[])).is_none());
        assert!(acl_for(&parse(&CIB.replace("value=\"true\"", "value=\"Yes\"")).unwrap(), &Requester::new("alice", &[])).is_some());
        let two = CIB.replace(
            r#"<cluster_property_set id="opts">"#,
            r#"<cluster_property_set id="first" score="5"><nvpair id="x" name="enable-acl" value="false"/></cluster_property_set><cluster_property_set id="opts" score="1">"#,
        );
        // The lower score is taken first (as cibadmin 2.1.5 does).
        assert!(acls_enabled(&parse(&two).unwrap()));
    }

    #[test]
    fn filtered_read_prunes_and_keeps_bare_ancestors() {
        let a = acl("alice", &[]);
        assert_eq!(a.problems().len(), 1, "{:?}", a.problems());
        assert!(a.problems()[0].message.contains("ro-bad"));
        let f = a.filter(&doc()).unwrap();
        assert_eq!(f.root.attrs, vec![]);
        let res = f.root.child("configuration").unwrap().child("resources").unwrap();
        let ip = res.child("primitive").unwrap();
        assert_eq!(ip.attr("class"), Some("ocf"));
        assert!(ip.child("instance_attributes").is_none());
        assert!(ip.child("meta_attributes").is_some());
        assert!(f.root.child("configuration").unwrap().child("acls").is_none());
        assert!(f.root.child("status").is_none());
    }

    #[test]
    fn readable_inside_unreadable_keeps_ids_of_ancestors() {
        let f = acl("bob", &[]).filter(&doc()).unwrap();
        let ip = f.root.child("configuration").unwrap().child("resources").unwrap().child("primitive").unwrap();
        assert_eq!(ip.attr("type"), Some("IPaddr2"));
        assert!(ip.child("meta_attributes").is_none());
        let g = acl("carol", &["ops"]).filter(&doc()).unwrap();
        let ip = g.root.child("configuration").unwrap().child("resources").unwrap().child("primitive").unwrap();
        assert_eq!(ip.attrs, vec![("id".to_string(), "ip".to_string())]);
        let ia = ip.child("instance_attributes").unwrap();
        assert_eq!(ia.elements().map(|e| e.id().unwrap()).collect::<Vec<_>>(), ["ip-ia-mask"]);
    }

    #[test]
    fn nothing_readable_is_none() {
        assert!(acl("nobody", &[]).filter(&doc()).is_none());
        assert!(acl("stranger", &["wheel"]).filter(&doc()).is_none());
        assert!(acl("t-bob", &[]).filter(&doc()).is_none(), "name= replaces id= as the user");
        let e = acl("nobody", &[]).read_denied();
        assert_eq!(crate::cibadmin::exit_code(&e), 4);
        assert!(e.to_string().contains("the CIB"), "{e}");
    }

    #[test]
    fn writes() {
        let bob = acl("bob", &[]);
        let old = doc();
        assert!(bob.check_write(&old, &modify(r#"<primitive id="ip" description="x"/>"#)).is_ok());
        // read on ip-ia does not make it read-only under the writable ip
        assert!(bob.check_write(&old, &modify(r#"<nvpair id="ip-ia-ip" value="1"/>"#)).is_ok());
        let e = bob.check_write(&old, &modify(r#"<nvpair id="ip-meta-tr" value="Stopped"/>"#)).unwrap_err();
        assert!(matches!(&e, CibError::PermissionDenied { action: "modify", id, .. } if id == "ip-meta-tr"), "{e}");
        assert!(e.to_string().contains("ask an administrator for write permission"), "{e}");
        assert!(bob.check_write(&old, &modify(r#"<primitive id="d1" description="x"/>"#)).is_err());
        // deleting a writable element does not look inside it
        let del = ops::delete(&old, parse(r#"<instance_attributes id="ip-ia"/>"#).unwrap().root).unwrap();
        assert!(bob.check_write(&old, &del).is_ok());
        let del = ops::delete(&old, parse(r#"<meta_attributes id="ip-meta"/>"#).unwrap().root).unwrap();
        assert!(matches!(bob.check_write(&old, &del), Err(CibError::PermissionDenied { action: "delete", .. })));
    }

    #[test]
    fn created_elements_are_judged_in_the_new_cib_with_scaffolding() {
        let ops_user = acl("carol", &["ops"]);
        let old = doc();
        let ok = modify(
            r#"<primitive id="d1"><meta_attributes id="m"><nvpair id="n" name="target-role" value="Stopped"/></meta_attributes></primitive>"#,
        );
        assert!(ops_user.check_write(&old, &ok).is_ok());
        let bad = modify(
            r#"<primitive id="d1"><meta_attributes id="m" score="1"><nvpair id="n" name="a" value="b"/></meta_attributes></primitive>"#,
        );
        assert!(matches!(ops_user.check_write(&old, &bad), Err(CibError::PermissionDenied { action: "create", .. })));
        // modified elements are judged in the old CIB: renaming into a denied name is fine
        assert!(ops_user.check_write(&old, &modify(r#"<nvpair id="ip-meta-tr" name="ip"/>"#)).is_ok());
        assert!(ops_user.check_write(&old, &modify(r#"<nvpair id="ip-ia-ip" name="x"/>"#)).is_err());
    }

    #[test]
    fn version_attributes() {
        let bob = acl("bob", &[]);
        let old = doc();
        let mut new = modify(r#"<primitive id="ip" description="x"/>"#);
        new.root.set_attr("epoch", "6");
        new.root.set_attr("cib-last-written", "now");
        assert!(bob.check_write(&old, &new).is_ok());
        assert!(bob.check_request(&old, &new).is_err());
        new.root.set_attr("have-quorum", "1");
        assert!(bob.check_write(&old, &new).is_err());
    }

    #[test]
    fn legacy_forms_and_access() {
        let o = acl("old", &[]);
        let old = doc();
        assert!(o.check_write(&old, &modify(r#"<primitive id="d1" description="x"/>"#)).is_ok());
        assert!(o.check_write(&old, &modify(r#"<primitive id="ip" description="x"/>"#)).is_err());
        assert_eq!(o.access(&old, &[]), (false, false));
        assert_eq!(o.access(&old, &[99, 3]), (false, false));
    }

    #[test]
    fn attribute_xpath_applies_to_its_element() {
        assert_eq!(owner_of_attribute("//nvpair/@value"), "//nvpair[@value]");
        assert_eq!(owner_of_attribute("/cib/configuration//op[@name='x']/@interval"), "/cib/configuration//op[@name='x'][@interval]");
        assert_eq!(owner_of_attribute("//@id"), "//@id");
        assert_eq!(owner_of_attribute("/@"), "/@");
    }

    #[test]
    fn no_panic_on_odd_input() {
        let odd = parse(r#"<cib><configuration><crm_config><cluster_property_set id="o" score="junk"><nvpair name="enable-acl" value="1"/></cluster_property_set></crm_config><acls><acl_target/><acl_target id="u"><role/><role id="missing"/><acl_permission kind="x"/><acl_permission kind="read"/><acl_permission kind="read" xpath="("/></acl_target></acls></configuration></cib>"#).unwrap();
        let a = acl_for(&odd, &Requester::new("u", &[])).unwrap();
        assert_eq!(a.problems().len(), 5, "{:?}", a.problems());
        assert!(a.filter(&odd).is_none());
        let other = parse("<other/>").unwrap();
        assert!(a.check_write(&odd, &other).is_err());
        assert!(a.filter(&other).is_none());
    }
}
