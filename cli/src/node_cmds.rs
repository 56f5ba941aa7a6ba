//! `halo node standby|unstandby|maintenance|unmaintenance [NODE...|--all]`, as pcs 0.11 does
//! them (PCS-NOTES §5 "node standby…"; ids from §1: set `nodes-<nodeid>`, nvpair
//! `nodes-<nodeid>-<name>`, both made unique): a **permanent** node attribute in
//! `configuration/nodes/node[@uname=NODE]/instance_attributes`, `standby="on"` /
//! `maintenance="on"`; the un-forms delete the nvpair and keep the set. No NODE: the local
//! node; a node missing from `<nodes>` but known to the status section gets a `<node>` made
//! from its `node_state`. What the cluster then does: CONTROLLER-NOTES §8.
//!
//! Each command is a pure function of the CIB ([`attr_patch`]) giving one v2 patchset
//! without `<version>` (paths by id, as `cib::diff::apply_patch` takes them); the live mode
//! reads the CIB through `cibclient`, computes, and sends that one write. The patch helpers
//! here are shared with `resource_cmds`.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use cib::xml::{Document, Element, Node};
use clap::Subcommand;
use common::paths::Daemon;
use proto::cib as pb;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Put nodes in standby (resources move off them): permanent attribute standby=on.
    Standby(NodesArg),
    /// Take nodes out of standby: the standby attribute is removed.
    Unstandby(NodesArg),
    /// Put nodes in maintenance (their resources unmanaged, monitors stopped): maintenance=on.
    Maintenance(NodesArg),
    /// Take nodes out of maintenance: the maintenance attribute is removed.
    Unmaintenance(NodesArg),
}

#[derive(clap::Args)]
pub struct NodesArg {
    /// Node names as in the CIB (default: this node; with --dir, that node).
    #[arg(value_name = "NODE")]
    nodes: Vec<String>,
    /// Every node of the cluster.
    #[arg(long)]
    all: bool,
}

/// Which nodes a command acts on.
#[derive(Debug, Clone, Copy)]
pub enum Nodes<'a> {
    All,
    Named(&'a [String]),
}

pub fn run(cmd: NodeCmd, dir: Option<&Path>) -> Result<i32> {
    let (arg, name, on) = match cmd {
        NodeCmd::Standby(a) => (a, "standby", true),
        NodeCmd::Unstandby(a) => (a, "standby", false),
        NodeCmd::Maintenance(a) => (a, "maintenance", true),
        NodeCmd::Unmaintenance(a) => (a, "maintenance", false),
    };
    if arg.all && !arg.nodes.is_empty() {
        bail!("Cannot specify both --all and a list of nodes.");
    }
    let names = if arg.all || !arg.nodes.is_empty() { arg.nodes } else { vec![local_node_name(dir)?] };
    let sel = if arg.all { Nodes::All } else { Nodes::Named(&names) };
    let value = on.then_some("on");
    block_on(edit_live(dir, |doc| attr_patch(doc, sel, name, value)))?;
    Ok(0)
}

/// This node's name: with `--dir D`, the node the directory is named after when the nodelist
/// has it (a sandbox's `DIR/node2`); else the first node of the nodelist with an address here.
pub fn local_node_name(dir: Option<&Path>) -> Result<String> {
    let path = crate::local::config_path(dir);
    let parsed = common::config::ClusterConfig::load(&path).map_err(|e| anyhow!("{e}"))?;
    let base = dir.and_then(|d| d.canonicalize().ok().or_else(|| Some(d.to_path_buf()))).and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let Some(n) = base.and_then(|b| parsed.config.node_by_name(&b).map(|n| n.name.clone())) {
        return Ok(n);
    }
    Ok(parsed.config.find_local(None).map_err(|e| anyhow!("{}: {e}", path.display()))?.name)
}

pub(crate) fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

/// Read the running cluster's CIB, compute the edit, send it as one write. `Ok(false)` when
/// there was nothing to change. A write refused for want of a raft leader changed nothing:
/// it is computed and sent again for up to 15 s.
pub(crate) async fn edit_live(dir: Option<&Path>, edit: impl Fn(&Document) -> Result<Option<Element>, String>) -> Result<bool> {
    let sock = crate::local::socket(dir, Daemon::Cibd)?;
    let mut cib = cibclient::Cib::connect(&sock).await.map_err(|e| anyhow!("{e}; is the node running (`halo sandbox start`)?"))?;
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let doc = cib.query().await.map_err(|e| anyhow!("{e}"))?;
        let Some(patch) = edit(&doc).map_err(|e| anyhow!("{e}"))? else { return Ok(false) };
        let req = pb::WriteRequest { op: Some(pb::write_request::Op::Patch(pb::Patch { xml: patch.to_xml() })) };
        match cib.write(req).await {
            Ok(_) => return Ok(true),
            Err(cibclient::Error::Unavailable(_)) if Instant::now() < until => tokio::time::sleep(Duration::from_millis(300)).await,
            Err(e) => bail!("cannot change the CIB: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The edit

/// The one write that sets (`value` Some) or removes (None) the permanent node attribute
/// `name` on the nodes; `Ok(None)` when every node has it so already. An unknown node is an
/// error and nothing is written.
pub fn attr_patch(doc: &Document, sel: Nodes, name: &str, value: Option<&str>) -> Result<Option<Element>, String> {
    let nodes_el = doc.root.child("configuration").and_then(|c| c.child("nodes")).ok_or("the CIB has no configuration/nodes section")?;
    let known = known_nodes(doc);
    let targets: Vec<&KnownNode> = match sel {
        Nodes::All => known.iter().collect(),
        Nodes::Named(names) => {
            let mut uniq: Vec<&str> = Vec::new();
            for n in names {
                if !uniq.contains(&n.as_str()) {
                    uniq.push(n);
                }
            }
            let unknown: Vec<&str> = uniq.iter().copied().filter(|n| !known.iter().any(|k| k.uname == *n)).collect();
            match unknown.as_slice() {
                [] => {}
                [one] => return Err(format!("Node '{one}' does not appear to exist in configuration")),
                many => return Err(format!("Nodes '{}' do not appear to exist in configuration", many.join("', '"))),
            }
            uniq.iter().filter_map(|n| known.iter().find(|k| k.uname == *n)).collect()
        }
    };
    let mut ids = IdPool::new(doc);
    let mut changes = Vec::new();
    let mut appended = 0;
    for t in targets {
        match (t.element, value) {
            (Some(node), Some(v)) => {
                let path = format!("/cib/configuration/nodes/{}", step(nodes_el, node)?);
                match node.children_named("instance_attributes").next() {
                    Some(set) => {
                        let set_path = format!("{path}/{}", step(node, set)?);
                        match set.children_named("nvpair").find(|p| p.attr("name") == Some(name)) {
                            Some(p) if p.attr("value") == Some(v) => {}
                            Some(p) => changes.push(modify_change(&format!("{set_path}/{}", step(set, p)?), &[("value", Some(v))])),
                            None => {
                                let set_id = set.id().ok_or_else(|| format!("node {}'s instance_attributes has no id", t.uname))?;
                                let p = nvpair(&ids.unique(&format!("{set_id}-{name}")), name, v);
                                changes.push(create_change(&set_path, solid_count(set), p));
                            }
                        }
                    }
                    None => changes.push(create_change(&path, 0, new_set(&mut ids, &t.id, name, v))),
                }
            }
            (Some(node), None) => {
                let path = format!("/cib/configuration/nodes/{}", step(nodes_el, node)?);
                for set in node.children_named("instance_attributes") {
                    for p in set.children_named("nvpair").filter(|p| p.attr("name") == Some(name)) {
                        changes.push(delete_change(&format!("{path}/{}/{}", step(node, set)?, step(set, p)?)));
                    }
                }
            }
            // Known only from the status section: pcs makes the <node> first.
            (None, Some(v)) => {
                let mut node = Element::new("node");
                node.set_attr("id", &t.id);
                node.set_attr("uname", &t.uname);
                node.push(new_set(&mut ids, &t.id, name, v));
                changes.push(create_change("/cib/configuration/nodes", solid_count(nodes_el) + appended, node));
                appended += 1;
            }
            (None, None) => {}
        }
    }
    Ok((!changes.is_empty()).then(|| patchset(changes)))
}

/// `<instance_attributes id="nodes-<id>">` holding one nvpair `nodes-<id>-<name>`.
fn new_set(ids: &mut IdPool, node_id: &str, name: &str, value: &str) -> Element {
    let mut set = Element::new("instance_attributes");
    let set_id = ids.unique(&format!("nodes-{node_id}"));
    set.set_attr("id", &set_id);
    set.push(nvpair(&ids.unique(&format!("{set_id}-{name}")), name, value));
    set
}

pub(crate) fn nvpair(id: &str, name: &str, value: &str) -> Element {
    let mut p = Element::new("nvpair");
    p.set_attr("id", id);
    p.set_attr("name", name);
    p.set_attr("value", value);
    p
}

/// A node as the CIB knows it: from `<nodes>` (with its element), or only from `<status>`.
pub(crate) struct KnownNode<'a> {
    pub id: String,
    pub uname: String,
    pub element: Option<&'a Element>,
}

/// The nodes of `<nodes>` in order, then those only in `<status>` (pcs takes both: the
/// cluster state lists every node the cluster knows).
pub(crate) fn known_nodes(doc: &Document) -> Vec<KnownNode<'_>> {
    let mut out: Vec<KnownNode> = Vec::new();
    if let Some(nodes) = doc.root.child("configuration").and_then(|c| c.child("nodes")) {
        for n in nodes.children_named("node") {
            if let Some(id) = n.id() {
                out.push(KnownNode { id: id.to_string(), uname: n.attr("uname").unwrap_or(id).to_string(), element: Some(n) });
            }
        }
    }
    if let Some(status) = doc.root.child("status") {
        for ns in status.children_named("node_state") {
            let (Some(id), Some(uname)) = (ns.id(), ns.attr("uname")) else { continue };
            if !out.iter().any(|k| k.id == id || k.uname == uname) {
                out.push(KnownNode { id: id.to_string(), uname: uname.to_string(), element: None });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Patch building (shared with resource_cmds)

/// Ids in use outside `<status>` (pcs's "taken"), plus those booked by this command.
pub(crate) struct IdPool(HashSet<String>);

impl IdPool {
    pub fn new(doc: &Document) -> IdPool {
        let mut taken = HashSet::new();
        for top in doc.root.elements().filter(|e| e.name != "status") {
            taken.extend(top.iter_descendants().filter_map(|e| e.id()).map(str::to_string));
        }
        IdPool(taken)
    }

    /// `cand`, else `cand-1`, `cand-2`, … (PCS-NOTES §1 "Uniquify"); booked.
    pub fn unique(&mut self, cand: &str) -> String {
        let mut id = cand.to_string();
        let mut k = 1;
        while self.0.contains(&id) {
            id = format!("{cand}-{k}");
            k += 1;
        }
        self.0.insert(id.clone());
        id
    }
}

/// The path step from `parent` to its child `child`: `tag[@id='ID']` (or `tag` without an
/// id). A patch path takes the first sibling that matches a step, so the step must find
/// `child` itself; an element that cannot be named so is refused.
pub(crate) fn step(parent: &Element, child: &Element) -> Result<String, String> {
    let id = child.id();
    let first = parent.elements().find(|e| e.name == child.name && (id.is_none() || e.id() == id));
    if !first.is_some_and(|f| std::ptr::eq(f, child)) || id.is_some_and(|i| i.contains(['\'', '/', '[', ']'])) {
        return Err(format!("<{}{}> cannot be named by a patch path (duplicate or odd id)", child.name, id.map(|i| format!(" id=\"{i}\"")).unwrap_or_default()));
    }
    Ok(match id {
        Some(i) => format!("{}[@id='{i}']", child.name),
        None => child.name.clone(),
    })
}

/// Children that count for a patch `position`: everything but blank text.
pub(crate) fn solid_count(e: &Element) -> usize {
    e.children.iter().filter(|n| !matches!(n, Node::Text(t) if t.trim().is_empty())).count()
}

pub(crate) use cib::diff::build::{create as create_change, delete as delete_change, modify as modify_change, patchset};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Apply a patch as halo-cibd does (with the version bump and validation).
    pub(crate) fn apply(doc: &Document, patch: &Element) -> Document {
        let diff = cib::xml::parse(&patch.to_xml()).unwrap().root;
        cib::ops::apply(doc, &cib::ops::Op::Patch { diff }).unwrap_or_else(|e| panic!("{e}\n{}", patch.to_xml()))
    }

    const CIB: &str = r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="3" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config/>
    <nodes>
      <node id="1" uname="node1"/>
      <node id="2" uname="node2">
        <instance_attributes id="nodes-2">
          <nvpair id="nodes-2-rack" name="rack" value="1"/>
        </instance_attributes>
      </node>
    </nodes>
    <resources/>
    <constraints/>
  </configuration>
  <status>
    <node_state id="3" uname="node3" in_ccm="true" crmd="online" join="member" expected="member"/>
  </status>
</cib>
"#;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn node<'a>(doc: &'a Document, uname: &str) -> &'a Element {
        let nodes = doc.root.child("configuration").unwrap().child("nodes").unwrap();
        nodes.children_named("node").find(|n| n.attr("uname") == Some(uname)).unwrap()
    }

    fn pairs(n: &Element) -> Vec<String> {
        n.children_named("instance_attributes")
            .flat_map(|s| s.children_named("nvpair").map(move |p| format!("{}/{}:{}={}", s.id().unwrap(), p.id().unwrap(), p.attr("name").unwrap(), p.attr("value").unwrap())))
            .collect()
    }

    #[test]
    fn standby_writes_pcs_ids_and_unstandby_keeps_the_set() {
        let doc = cib::xml::parse(CIB).unwrap();
        let n = names(&["node1", "node2"]);
        let p = attr_patch(&doc, Nodes::Named(&n), "standby", Some("on")).unwrap().unwrap();
        let out = apply(&doc, &p);
        assert_eq!(pairs(node(&out, "node1")), ["nodes-1/nodes-1-standby:standby=on"]);
        assert_eq!(pairs(node(&out, "node2")), ["nodes-2/nodes-2-rack:rack=1", "nodes-2/nodes-2-standby:standby=on"]);
        assert!(out.root.attr("epoch") == Some("4"), "a configuration change: epoch + 1");
        // Again: nothing to change, no write.
        assert!(attr_patch(&out, Nodes::Named(&n), "standby", Some("on")).unwrap().is_none());
        // Unstandby one node: the nvpair goes, the set stays; the other node keeps its.
        let p = attr_patch(&out, Nodes::Named(&names(&["node1"])), "standby", None).unwrap().unwrap();
        let out = apply(&out, &p);
        let n1 = node(&out, "node1");
        assert!(pairs(n1).is_empty() && n1.child("instance_attributes").unwrap().id() == Some("nodes-1"));
        assert_eq!(pairs(node(&out, "node2")).len(), 2);
        // A value other than "on" is changed in place.
        let off = out.to_xml().replace(r#"id="nodes-2-standby" name="standby" value="on""#, r#"id="nodes-2-standby" name="standby" value="off""#);
        let off = cib::xml::parse(&off).unwrap();
        let out = apply(&off, &attr_patch(&off, Nodes::Named(&names(&["node2"])), "standby", Some("on")).unwrap().unwrap());
        assert_eq!(pairs(node(&out, "node2"))[1], "nodes-2/nodes-2-standby:standby=on");
    }

    #[test]
    fn all_nodes_and_nodes_known_only_from_status() {
        let doc = cib::xml::parse(CIB).unwrap();
        let out = apply(&doc, &attr_patch(&doc, Nodes::All, "maintenance", Some("on")).unwrap().unwrap());
        for (n, id) in [("node1", "1"), ("node2", "2"), ("node3", "3")] {
            assert!(pairs(node(&out, n)).contains(&format!("nodes-{id}/nodes-{id}-maintenance:maintenance=on")), "{n}: {}", out.to_xml());
        }
        assert_eq!(node(&out, "node3").id(), Some("3"));
        let out = apply(&out, &attr_patch(&out, Nodes::All, "maintenance", None).unwrap().unwrap());
        assert!(!out.to_xml().contains("maintenance"));
        // Un-forms on a node only in status: nothing to do.
        assert!(attr_patch(&doc, Nodes::Named(&names(&["node3"])), "standby", None).unwrap().is_none());
    }

    #[test]
    fn taken_ids_are_suffixed() {
        let doc = cib::xml::parse(&CIB.replace("<resources/>", r#"<resources><primitive id="nodes-1" class="ocf" provider="heartbeat" type="Dummy"/></resources>"#)).unwrap();
        let out = apply(&doc, &attr_patch(&doc, Nodes::Named(&names(&["node1"])), "standby", Some("on")).unwrap().unwrap());
        assert_eq!(pairs(node(&out, "node1")), ["nodes-1-1/nodes-1-1-standby:standby=on"]);
    }

    #[test]
    fn unknown_nodes_are_refused() {
        let doc = cib::xml::parse(CIB).unwrap();
        let e = attr_patch(&doc, Nodes::Named(&names(&["node1", "nodeX"])), "standby", Some("on")).unwrap_err();
        assert_eq!(e, "Node 'nodeX' does not appear to exist in configuration");
        let e = attr_patch(&doc, Nodes::Named(&names(&["a", "b"])), "standby", None).unwrap_err();
        assert_eq!(e, "Nodes 'a', 'b' do not appear to exist in configuration");
    }
}
