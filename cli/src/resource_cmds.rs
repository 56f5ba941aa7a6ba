//! `halo resource cleanup|refresh [RSC] [--node N]` and `halo resource failcount show`: what
//! `crm_resource --cleanup` / `--refresh` (Pacemaker 2.1.5, CONTROLLER-NOTES §4.2) and
//! `pcs resource failcount show` (pcs 0.11, PCS-NOTES §3 "cleanup/refresh") do, as edits of
//! the CIB's status section:
//! - cleanup: on each node acted on, the failure attributes `fail-count-R#…` /
//!   `last-failure-R#…` (transient, `status/node_state/transient_attributes`, §4.1) go, and
//!   R's whole `lrm_resource` history goes where R has a failed op. No R: every failure
//!   attribute, and the history of every resource with a failed op.
//! - refresh: the same, but histories go whether failed or not (no R: every history).
//! - then `crm_config` `last-lrm-refresh` = now (epoch seconds), so the DC re-plans and
//!   probes again what lost its history;
//! - and each node whose histories went is told (through the local controller) to have its
//!   executor forget them, so its next join does not write them back.
//!
//! R is taken up to its top-level group/clone/bundle unless --strict (crm_resource without
//! --force); a resource known only from the status (an orphan) may be named too. Nodes acted
//! on: the one --node names, else every online node. [`plan`] is pure: the old CIB in, one
//! v2 patchset (no `<version>`, paths scoped by node since history ids repeat across nodes,
//! as controld/src/records.rs builds them) or a one-line error out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use cib::xml::{Document, Element};
use clap::Subcommand;

use crate::node_cmds::{create_change, delete_change, known_nodes, modify_change, nvpair, patchset, solid_count, step, IdPool};

#[derive(Subcommand)]
pub enum ResourceCmd {
    /// Forget a resource's failures (crm_resource --cleanup): fail counts, and its history on
    /// nodes where it failed, so the cluster probes it again. No RSC: every resource.
    Cleanup(CleanupArgs),
    /// Forget a resource's history whether it failed or not (crm_resource --refresh), so it
    /// is probed again everywhere. No RSC: every resource's.
    Refresh(CleanupArgs),
    /// Fail counts.
    #[command(subcommand)]
    Failcount(FailcountCmd),
}

#[derive(clap::Args)]
pub struct CleanupArgs {
    /// The resource (default: all), and optionally pcs's `node=NODE`.
    #[arg(value_name = "RSC")]
    args: Vec<String>,
    /// Only on this node.
    #[arg(long)]
    node: Option<String>,
    /// Only the resource named, not its whole group or clone.
    #[arg(long)]
    strict: bool,
}

#[derive(Subcommand)]
pub enum FailcountCmd {
    /// Fail counts per resource and node, as pcs prints them.
    Show {
        /// The resource (default: all), and optionally pcs's `node=NODE`.
        #[arg(value_name = "RSC")]
        args: Vec<String>,
        /// Only on this node.
        #[arg(long)]
        node: Option<String>,
        /// Per operation and interval.
        #[arg(long)]
        full: bool,
    },
}

/// `[RSC] [node=NODE]` as pcs takes them, and `--node`.
fn rsc_and_node(args: Vec<String>, flag: Option<String>) -> Result<(Option<String>, Option<String>)> {
    let (mut rsc, mut node) = (None, flag);
    for a in args {
        match a.split_once('=') {
            Some(("node", n)) if node.as_ref().is_none_or(|m| m == n) => node = Some(n.to_string()),
            Some(("node", _)) => bail!("two different nodes given"),
            Some((k, _)) => bail!("'{k}=' is not supported here (only RSC and node=NODE or --node NODE)"),
            None if rsc.is_none() => rsc = Some(a),
            None => bail!("only one resource can be given ('{}' and '{a}')", rsc.unwrap_or_default()),
        }
    }
    Ok((rsc, node))
}

pub fn run(cmd: ResourceCmd, dir: Option<&Path>) -> Result<i32> {
    let (refresh, a) = match cmd {
        ResourceCmd::Cleanup(a) => (false, a),
        ResourceCmd::Refresh(a) => (true, a),
        ResourceCmd::Failcount(FailcountCmd::Show { args, node, full }) => {
            let (rsc, node) = rsc_and_node(args, node)?;
            let sock = crate::local::socket(dir, common::paths::Daemon::Cibd)?;
            let doc = crate::node_cmds::block_on(async move {
                let mut c = cibclient::Cib::connect(&sock).await.map_err(|e| anyhow!("{e}; is the node running (`halo sandbox start`)?"))?;
                c.query().await.map_err(|e| anyhow!("{e}"))
            })?;
            println!("{}", failcount_text(&doc, rsc.as_deref(), node.as_deref(), full));
            return Ok(0);
        }
    };
    let (rsc, node) = rsc_and_node(a.args, a.node)?;
    let req = Cleanup { refresh, rsc: rsc.as_deref(), node: node.as_deref(), strict: a.strict };
    // The lines and histories of the plan that was written (a retried write is planned again).
    let lines = std::cell::RefCell::new(Vec::new());
    let forgotten = std::cell::RefCell::new(BTreeMap::new());
    crate::node_cmds::block_on(crate::node_cmds::edit_live(dir, |doc| {
        let p = plan(doc, &req, now_s())?;
        *lines.borrow_mut() = p.report;
        *forgotten.borrow_mut() = p.patch.as_ref().map(histories_deleted).unwrap_or_default();
        Ok(p.patch)
    }))?;
    for l in lines.into_inner() {
        println!("{l}");
    }
    // Each node's executor forgets them too, or the next join would write them back.
    let forgotten = forgotten.into_inner();
    if !forgotten.is_empty() {
        let sent = crate::node_cmds::block_on(async {
            let ch = crate::local::channel(dir, common::paths::Daemon::Controld).await?;
            let mut c = proto::controld::controller_client::ControllerClient::new(ch);
            for (node, rsc) in forgotten {
                c.forget(proto::controld::ForgetRecords { node, rsc: rsc.into_iter().collect() }).await.map_err(|e| anyhow!("halo-controld: {}", e.message()))?;
            }
            Ok::<(), anyhow::Error>(())
        });
        if let Err(e) = sent {
            eprintln!("warning: the executors were not told to forget (their next join may write the old records back): {e}");
        }
    }
    Ok(0)
}

/// The `lrm_resource` histories a cleanup patch deletes: node id -> resource ids.
fn histories_deleted(patch: &Element) -> BTreeMap<u32, BTreeSet<String>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for c in patch.children_named("change").filter(|c| c.attr("operation") == Some("delete")) {
        let path = c.attr("path").unwrap_or("");
        let id_after = |marker: &str| path.split(marker).nth(1).and_then(|r| r.split('\'').next()).map(str::to_string);
        if let (Some(node), Some(rsc)) = (id_after("node_state[@id='").and_then(|n| n.parse().ok()), id_after("lrm_resource[@id='")) {
            out.entry(node).or_default().insert(rsc);
        }
    }
    out
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A cleanup or refresh request.
#[derive(Debug, Clone, Copy)]
pub struct Cleanup<'a> {
    pub refresh: bool,
    pub rsc: Option<&'a str>,
    pub node: Option<&'a str>,
    pub strict: bool,
}

/// The write (None: nothing to change) and what to print (crm_resource's lines).
#[derive(Debug)]
pub struct Planned {
    pub patch: Option<Element>,
    pub report: Vec<String>,
}

/// The resources a request covers, by the ids their history and fail counts carry.
struct Target {
    name: String,
    prims: BTreeSet<String>,
    /// A bundle's implicit resources (`B-docker-0`, `B-ip-…`, `B-0`).
    prefixes: Vec<String>,
}

impl Target {
    fn owns(&self, hist_id: &str) -> bool {
        self.prims.contains(hist_id) || self.prims.contains(base_id(hist_id)) || self.prefixes.iter().any(|p| hist_id.starts_with(p.as_str()))
    }
}

/// `d:1` (a clone instance) → `d`.
fn base_id(id: &str) -> &str {
    match id.rsplit_once(':') {
        Some((b, n)) if !b.is_empty() && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => id,
    }
}

const KINDS: [&str; 5] = ["primitive", "group", "clone", "master", "bundle"];

fn resolve(doc: &Document, rsc: &str, strict: bool) -> Result<Target, String> {
    let resources = doc.root.child("configuration").and_then(|c| c.child("resources"));
    let wanted = [rsc, base_id(rsc)];
    let found = resources.into_iter().flat_map(|r| r.elements()).find_map(|top| {
        top.iter_descendants().find(|e| KINDS.contains(&e.name.as_str()) && e.id().is_some_and(|i| wanted.contains(&i))).map(|e| (top, e))
    });
    if let Some((top, e)) = found {
        let e = if strict { e } else { top };
        let prims = e.iter_descendants().filter(|d| d.name == "primitive").filter_map(|d| d.id()).map(str::to_string).collect();
        let prefixes = e.iter_descendants().filter(|d| d.name == "bundle").filter_map(|d| d.id()).map(|b| format!("{b}-")).collect();
        return Ok(Target { name: e.id().unwrap_or(rsc).to_string(), prims, prefixes });
    }
    // An orphan: gone from the configuration, still in some node's history.
    let in_history = node_states(doc).flat_map(histories).any(|(_, r)| r.id().is_some_and(|i| i == rsc || base_id(i) == rsc));
    if in_history {
        return Ok(Target { name: rsc.to_string(), prims: BTreeSet::from([base_id(rsc).to_string()]), prefixes: Vec::new() });
    }
    Err(format!("Resource '{rsc}' not found"))
}

fn node_states(doc: &Document) -> impl Iterator<Item = &Element> {
    doc.root.child("status").into_iter().flat_map(|s| s.children_named("node_state"))
}

/// A node state's `lrm_resource`s, each with its lrm_resources parent.
fn histories(ns: &Element) -> impl Iterator<Item = (&Element, &Element)> {
    ns.children_named("lrm").flat_map(|l| l.children_named("lrm_resources")).flat_map(|rs| rs.children_named("lrm_resource").map(move |r| (rs, r)))
}

/// In the cluster, as the scheduler reads a node_state (2.1.7+ writes timestamps for true).
fn online(ns: &Element) -> bool {
    let yes = |v: Option<&str>, word: &str| v.is_some_and(|v| v == word || v == "true" || v.parse::<u64>().is_ok_and(|n| n > 0));
    if ns.attr("remote_node") == Some("true") {
        return ns.attr("in_ccm") != Some("false");
    }
    yes(ns.attr("in_ccm"), "true") && yes(ns.attr("crmd"), "online") && ns.attr("join").is_none_or(|j| j == "member")
}

/// A record that crm_mon lists as a failure (status crate `is_failure`, without the
/// failure-timeout expiry and unmanaged subtleties): an rc other than the one expected, or
/// an execution error. Probes finding the resource running or stopped are not failures.
fn op_failed(op: &Element) -> bool {
    let int = |k: &str, d: i64| op.attr(k).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(d);
    let (rc, status, interval) = (int("rc-code", 0), int("op-status", 0), int("interval", 0));
    let task = op.attr("operation").unwrap_or("");
    let probe = task == "monitor" && interval == 0;
    if task == "notify" || int("call-id", 0) < 0 || matches!(status, -1 | 1) {
        return false;
    }
    let target: Option<i64> = op.attr("transition-key").and_then(|k| k.split(':').nth(2)).and_then(|t| t.parse().ok());
    match status {
        0 | 4 => match rc {
            0 | 7 | 8 | 190 if probe => false,
            2 | 5 if probe => false,
            _ if target == Some(rc) => false,
            0 | 190 if target.is_none() => false,
            3 if interval > 0 => false,
            _ => true,
        },
        3 if interval > 0 => false,
        7 if probe => false,
        _ => true,
    }
}

/// The resource id a failure attribute is about: `fail-count-R#op_interval` → R.
fn failure_attr_rsc(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("fail-count-").or_else(|| name.strip_prefix("last-failure-"))?;
    Some(rest.split_once('#').map_or(rest, |(r, _)| r))
}

/// The cleanup or refresh of `req` on the CIB `doc`: its one write, or why not.
pub fn plan(doc: &Document, req: &Cleanup, now_s: i64) -> Result<Planned, String> {
    let target = req.rsc.map(|r| resolve(doc, r, req.strict)).transpose()?;
    let status = doc.root.child("status");
    // The node states acted on.
    let states: Vec<&Element> = match req.node {
        Some(n) => {
            let k = known_nodes(doc).into_iter().find(|k| k.uname == n).ok_or_else(|| format!("Node '{n}' does not appear to exist in configuration"))?;
            node_states(doc).filter(|ns| ns.id() == Some(k.id.as_str()) || ns.attr("uname") == Some(n)).take(1).collect()
        }
        None => node_states(doc).filter(|ns| online(ns)).collect(),
    };
    let owns = |id: &str| target.as_ref().is_none_or(|t| t.owns(id));
    let mut changes = Vec::new();
    for &ns in &states {
        let status = status.expect("a node state is in the status");
        let ns_path = format!("/cib/status/{}", step(status, ns)?);
        for ta in ns.children_named("transient_attributes") {
            for set in ta.children_named("instance_attributes") {
                for p in set.children_named("nvpair") {
                    if p.attr("name").and_then(failure_attr_rsc).is_some_and(owns) {
                        changes.push(delete_change(&format!("{ns_path}/{}/{}/{}", step(ns, ta)?, step(ta, set)?, step(set, p)?)));
                    }
                }
            }
        }
        for lrm in ns.children_named("lrm") {
            for rs in lrm.children_named("lrm_resources") {
                for r in rs.children_named("lrm_resource") {
                    let Some(id) = r.id() else { continue };
                    if owns(id) && (req.refresh || r.children_named("lrm_rsc_op").any(op_failed)) {
                        changes.push(delete_change(&format!("{ns_path}/{}/{}/{}", step(ns, lrm)?, step(lrm, rs)?, step(rs, r)?)));
                    }
                }
            }
        }
    }
    let where_ = |n: Option<&str>| n.map_or("all nodes".to_string(), str::to_string);
    let report = match &target {
        Some(t) if req.node.is_some() => vec![format!("Cleaned up {} on {}", t.name, where_(req.node))],
        Some(t) => states.iter().map(|ns| format!("Cleaned up {} on {}", t.name, ns.attr("uname").or(ns.id()).unwrap_or("?"))).collect(),
        None => vec![format!("Cleaned up all resources on {}", where_(req.node))],
    };
    if changes.is_empty() {
        return Ok(Planned { patch: None, report });
    }
    changes.push(lrm_refresh_change(doc, now_s)?);
    Ok(Planned { patch: Some(patchset(changes)), report })
}

/// `last-lrm-refresh` = now in `crm_config`: the nvpair of that name wherever it is, else
/// `cib-bootstrap-options-last-lrm-refresh` in `cib-bootstrap-options` (as the controller's
/// `update_attr_delegate` writes it), the set made if missing.
fn lrm_refresh_change(doc: &Document, now_s: i64) -> Result<Element, String> {
    const NAME: &str = "last-lrm-refresh";
    let now = now_s.to_string();
    let conf = doc.root.child("configuration").ok_or("the CIB has no configuration section")?;
    let mut ids = IdPool::new(doc);
    let new_set = |ids: &mut IdPool| {
        let mut set = Element::new("cluster_property_set");
        let set_id = ids.unique("cib-bootstrap-options");
        set.set_attr("id", &set_id);
        set.push(nvpair(&ids.unique(&format!("{set_id}-{NAME}")), NAME, &now));
        set
    };
    let Some(cc) = conf.child("crm_config") else {
        let mut cc = Element::new("crm_config");
        cc.push(new_set(&mut ids));
        return Ok(create_change("/cib/configuration", 0, cc));
    };
    let cc_path = format!("/cib/configuration/{}", step(conf, cc)?);
    for set in cc.children_named("cluster_property_set") {
        if let Some(p) = set.children_named("nvpair").find(|p| p.attr("name") == Some(NAME)) {
            return Ok(modify_change(&format!("{cc_path}/{}/{}", step(cc, set)?, step(set, p)?), &[("value", Some(&now))]));
        }
    }
    match cc.children_named("cluster_property_set").find(|s| s.id() == Some("cib-bootstrap-options")) {
        Some(set) => {
            let p = nvpair(&ids.unique(&format!("cib-bootstrap-options-{NAME}")), NAME, &now);
            Ok(create_change(&format!("{cc_path}/{}", step(cc, set)?), solid_count(set), p))
        }
        None => Ok(create_change(&cc_path, solid_count(cc), new_set(&mut ids))),
    }
}

// ---------------------------------------------------------------------------
// failcount show

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Count {
    N(u64),
    Infinity,
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Infinity => f.write_str("INFINITY"),
        }
    }
}

fn sum(counts: impl Iterator<Item = Count>) -> Count {
    let mut total: u64 = 0;
    for c in counts {
        match c {
            Count::Infinity => return Count::Infinity,
            Count::N(n) => total = total.saturating_add(n),
        }
    }
    if total >= 1_000_000 {
        Count::Infinity
    } else {
        Count::N(total)
    }
}

/// `pcs resource failcount show [RSC] [node=N] [--full]`: "Failcounts for resource 'A'" then
/// "  node1: INFINITY" (with --full "  node1:" / "    monitor 10000ms: 3"), resources, nodes,
/// ops and intervals sorted; none: "No failcounts for resource 'B'".
pub fn failcount_text(doc: &Document, rsc: Option<&str>, node: Option<&str>, full: bool) -> String {
    // resource -> node -> (op, interval) -> count
    type PerNode = BTreeMap<String, BTreeMap<(String, u64), Count>>;
    let mut all: BTreeMap<String, PerNode> = BTreeMap::new();
    for ns in node_states(doc) {
        let Some(uname) = ns.attr("uname").or(ns.id()) else { continue };
        if node.is_some_and(|n| n != uname) {
            continue;
        }
        let pairs = ns.children_named("transient_attributes").flat_map(|t| t.children_named("instance_attributes")).flat_map(|s| s.children_named("nvpair"));
        for p in pairs {
            let Some(rest) = p.attr("name").and_then(|n| n.strip_prefix("fail-count-")) else { continue };
            let Some((r, op_iv)) = rest.split_once('#') else { continue };
            let Some((op, iv)) = op_iv.rsplit_once('_') else { continue };
            let (Ok(iv), Some(v)) = (iv.parse::<u64>(), p.attr("value")) else { continue };
            let count = match v.trim() {
                "INFINITY" | "+INFINITY" => Count::Infinity,
                n => match n.parse::<u64>() {
                    Ok(n) => Count::N(n),
                    Err(_) => continue,
                },
            };
            if rsc.is_some_and(|want| want != r && base_id(r) != want) {
                continue;
            }
            all.entry(r.to_string()).or_default().entry(uname.to_string()).or_default().insert((op.to_string(), iv), count);
        }
    }
    let headline = |empty: bool, r: Option<&str>| {
        let mut h = if empty { "No failcounts".to_string() } else { "Failcounts".to_string() };
        if let Some(r) = r {
            h.push_str(&format!(" for resource '{r}'"));
        }
        if let Some(n) = node {
            h.push_str(&format!(" on node '{n}'"));
        }
        h
    };
    if all.is_empty() {
        return headline(true, rsc);
    }
    let mut out = Vec::new();
    for (r, nodes) in &all {
        out.push(headline(false, Some(r)));
        for (n, ops) in nodes {
            if full {
                out.push(format!("  {n}:"));
                for ((op, iv), c) in ops {
                    out.push(format!("    {op} {iv}ms: {c}"));
                }
            } else {
                out.push(format!("  {n}: {}", sum(ops.values().copied())));
            }
        }
    }
    out.join("\n")
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_cmds::tests::apply;

    fn op(id: &str, task: &str, interval: u64, rc: i32, expect: i32, call: u32) -> String {
        format!(
            r#"<lrm_rsc_op id="{id}" operation_key="{id}" operation="{task}" call-id="{call}" rc-code="{rc}" op-status="0" interval="{interval}" transition-key="{call}:1:{expect}:abc"/>"#
        )
    }

    fn rsc(id: &str, ops: &[String]) -> String {
        format!(r#"<lrm_resource id="{id}" class="ocf" provider="heartbeat" type="Dummy">{}</lrm_resource>"#, ops.concat())
    }

    fn state(id: &str, online: bool, attrs: &[(&str, &str)], rscs: &[String]) -> String {
        let nv: String = attrs.iter().map(|(n, v)| format!(r#"<nvpair id="status-{id}-{}" name="{n}" value="{v}"/>"#, n.replace('#', "."))).collect();
        let (ccm, crmd, join) = if online { ("true", "online", "member") } else { ("false", "offline", "down") };
        format!(
            r#"<node_state id="{id}" uname="node{id}" in_ccm="{ccm}" crmd="{crmd}" join="{join}" expected="member"><transient_attributes id="{id}"><instance_attributes id="status-{id}">{nv}</instance_attributes></transient_attributes><lrm id="{id}"><lrm_resources>{}</lrm_resources></lrm></node_state>"#,
            rscs.concat()
        )
    }

    /// d: started on 1 and 2, its monitor failed on 2; g1 (in group g) failed to start on 1;
    /// node 3 is offline with a failed d; cp is a clone's primitive, ok on 1.
    fn cib() -> Document {
        let ok_d = rsc("d", &[op("d_last_0", "start", 0, 0, 0, 2), op("d_monitor_10000", "monitor", 10000, 0, 0, 3)]);
        let failed_d = rsc("d", &[op("d_last_failure_0", "monitor", 10000, 7, 0, 4), op("d_last_0", "start", 0, 0, 0, 2), op("d_monitor_10000", "monitor", 10000, 7, 0, 4)]);
        let failed_g1 = rsc("g1", &[op("g1_last_failure_0", "start", 0, 1, 0, 5), op("g1_last_0", "start", 0, 1, 0, 5)]);
        let ok_g2 = rsc("g2", &[op("g2_last_0", "monitor", 0, 7, 7, 6)]);
        let ok_cp = rsc("cp", &[op("cp_last_0", "start", 0, 0, 0, 7)]);
        let s1 = state("1", true, &[("fail-count-g1#start_0", "INFINITY"), ("last-failure-g1#start_0", "100"), ("rack", "a")], &[ok_d, failed_g1, ok_g2, ok_cp]);
        let s2 = state("2", true, &[("fail-count-d#monitor_10000", "2"), ("last-failure-d#monitor_10000", "200"), ("fail-count-d#start_0", "1")], std::slice::from_ref(&failed_d));
        let s3 = state("3", false, &[], &[failed_d]);
        let xml = format!(
            r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="5" num_updates="7" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="false"/>
      </cluster_property_set>
    </crm_config>
    <nodes><node id="1" uname="node1"/><node id="2" uname="node2"/><node id="3" uname="node3"/></nodes>
    <resources>
      <primitive id="d" class="ocf" provider="heartbeat" type="Dummy"/>
      <group id="g"><primitive id="g1" class="ocf" provider="heartbeat" type="Dummy"/><primitive id="g2" class="ocf" provider="heartbeat" type="Dummy"/></group>
      <clone id="c-clone"><primitive id="cp" class="ocf" provider="heartbeat" type="Dummy"/></clone>
    </resources>
    <constraints/>
  </configuration>
  <status>{s1}{s2}{s3}</status>
</cib>
"#
        );
        cib::xml::parse(&xml).unwrap()
    }

    fn ns<'a>(doc: &'a Document, id: &str) -> &'a Element {
        node_states(doc).find(|n| n.id() == Some(id)).unwrap()
    }
    fn hist(doc: &Document, node: &str) -> Vec<String> {
        histories(ns(doc, node)).map(|(_, r)| format!("{}:{}", r.id().unwrap(), r.elements().count())).collect()
    }
    fn attrs(doc: &Document, node: &str) -> Vec<String> {
        let n = ns(doc, node);
        n.iter_descendants().filter(|e| e.name == "nvpair").map(|p| p.attr("name").unwrap().to_string()).collect()
    }
    fn refresh_value(doc: &Document) -> Option<String> {
        let cc = doc.root.child("configuration").unwrap().child("crm_config").unwrap();
        cc.iter_descendants().find(|e| e.attr("name") == Some("last-lrm-refresh")).map(|e| format!("{}={}", e.id().unwrap(), e.attr("value").unwrap()))
    }
    fn run(doc: &Document, refresh: bool, rsc: Option<&str>, node: Option<&str>, strict: bool) -> (Document, Vec<String>) {
        let p = plan(doc, &Cleanup { refresh, rsc, node, strict }, 1234).unwrap();
        (apply(doc, p.patch.as_ref().expect("a write")), p.report)
    }

    #[test]
    fn cleanup_of_one_resource_touches_only_its_failed_node() {
        let doc = cib();
        let (out, report) = run(&doc, false, Some("d"), None, false);
        // node2: d's history and d's failure attributes gone; node1's d (same ids) untouched.
        assert_eq!(hist(&out, "2"), Vec::<String>::new());
        assert_eq!(attrs(&out, "2"), Vec::<String>::new());
        assert_eq!(hist(&out, "1"), hist(&doc, "1"));
        assert_eq!(attrs(&out, "1"), attrs(&doc, "1"));
        // node3 is offline: left as it was.
        assert_eq!(hist(&out, "3"), ["d:3"]);
        assert_eq!(refresh_value(&out).as_deref(), Some("cib-bootstrap-options-last-lrm-refresh=1234"));
        assert_eq!(out.root.attr("epoch"), Some("6"));
        assert_eq!(report, ["Cleaned up d on node1", "Cleaned up d on node2"]);
        // Again: nothing left to do, no write.
        assert!(plan(&out, &Cleanup { refresh: false, rsc: Some("d"), node: None, strict: false }, 1).unwrap().patch.is_none());
    }

    #[test]
    fn cleanup_of_everything_keeps_histories_without_failures() {
        let doc = cib();
        let (out, report) = run(&doc, false, None, None, false);
        assert_eq!(hist(&out, "1"), ["d:2", "g2:1", "cp:1"]);
        assert_eq!(attrs(&out, "1"), ["rack"]);
        assert!(hist(&out, "2").is_empty() && attrs(&out, "2").is_empty());
        assert_eq!(report, ["Cleaned up all resources on all nodes"]);
        // An existing last-lrm-refresh is updated in place.
        let (out, _) = run(&out, true, Some("cp"), None, false);
        assert_eq!(refresh_value(&out).as_deref(), Some("cib-bootstrap-options-last-lrm-refresh=1234"));
    }

    #[test]
    fn the_executors_forget_exactly_the_histories_the_cib_forgets() {
        let doc = cib();
        let req = Cleanup { refresh: true, rsc: Some("d"), node: Some("node1"), strict: false };
        let p = plan(&doc, &req, 1000).unwrap();
        assert_eq!(histories_deleted(p.patch.as_ref().unwrap()), BTreeMap::from([(1, BTreeSet::from(["d".to_string()]))]));
        let req = Cleanup { refresh: true, rsc: None, node: None, strict: false };
        let p = plan(&doc, &req, 1000).unwrap();
        let all = histories_deleted(p.patch.as_ref().unwrap());
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), [1, 2], "online nodes only");
        assert!(all[&1].contains("d") && all[&1].contains("g1"), "{all:?}");
    }

    #[test]
    fn refresh_deletes_history_failed_or_not_on_the_node_given() {
        let doc = cib();
        let (out, report) = run(&doc, true, Some("d"), Some("node1"), false);
        assert_eq!(hist(&out, "1"), ["g1:2", "g2:1", "cp:1"]);
        assert_eq!(attrs(&out, "1"), attrs(&doc, "1"));
        assert_eq!(hist(&out, "2"), ["d:3"]);
        assert_eq!(attrs(&out, "2"), attrs(&doc, "2"));
        assert_eq!(report, ["Cleaned up d on node1"]);
        // Everything: every online node's histories and failure attributes; node3's stay.
        let (out, _) = run(&doc, true, None, None, false);
        assert!(hist(&out, "1").is_empty() && hist(&out, "2").is_empty());
        assert_eq!(attrs(&out, "1"), ["rack"]);
        assert_eq!(hist(&out, "3"), ["d:3"]);
        // An offline node named: acted on.
        let (out, _) = run(&doc, true, None, Some("node3"), false);
        assert!(hist(&out, "3").is_empty() && hist(&out, "1") == hist(&doc, "1"));
    }

    #[test]
    fn members_mean_their_group_unless_strict() {
        let doc = cib();
        let (out, report) = run(&doc, true, Some("g2"), Some("node1"), false);
        assert_eq!(hist(&out, "1"), ["d:2", "cp:1"]);
        assert_eq!(attrs(&out, "1"), ["rack"]);
        assert_eq!(report, ["Cleaned up g on node1"]);
        let (out, _) = run(&doc, true, Some("g2"), Some("node1"), true);
        assert_eq!(hist(&out, "1"), ["d:2", "g1:2", "cp:1"]);
        assert_eq!(attrs(&out, "1"), attrs(&doc, "1"));
        // A clone by its id or an instance id reaches the primitive's history.
        let (out, _) = run(&doc, true, Some("c-clone"), None, false);
        assert_eq!(hist(&out, "1"), ["d:2", "g1:2", "g2:1"]);
        let (out, _) = run(&doc, true, Some("cp:0"), None, false);
        assert_eq!(hist(&out, "1"), ["d:2", "g1:2", "g2:1"]);
    }

    #[test]
    fn orphans_and_unknown_names() {
        let doc = cib();
        let e = plan(&doc, &Cleanup { refresh: false, rsc: Some("nosuch"), node: None, strict: false }, 1).unwrap_err();
        assert_eq!(e, "Resource 'nosuch' not found");
        let e = plan(&doc, &Cleanup { refresh: true, rsc: None, node: Some("node9"), strict: false }, 1).unwrap_err();
        assert_eq!(e, "Node 'node9' does not appear to exist in configuration");
        // A resource gone from the configuration but still in a history can be cleaned up.
        let orphan = cib::xml::parse(&doc.to_xml().replace(r#"<primitive id="d" class="ocf" provider="heartbeat" type="Dummy"/>"#, "")).unwrap();
        let (out, _) = run(&orphan, false, Some("d"), None, false);
        assert!(hist(&out, "2").is_empty() && hist(&out, "1") == hist(&doc, "1"));
    }

    #[test]
    fn the_property_set_is_made_when_missing() {
        let doc = cib::xml::parse(&cib().to_xml().replace(r#"<nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="false"/>"#, "").replace("cib-bootstrap-options", "other")).unwrap();
        let (out, _) = run(&doc, true, Some("d"), None, false);
        assert_eq!(refresh_value(&out).as_deref(), Some("cib-bootstrap-options-last-lrm-refresh=1234"));
        assert_eq!(out.root.child("configuration").unwrap().child("crm_config").unwrap().elements().count(), 2);
    }

    #[test]
    fn failures_as_crm_mon_counts_them() {
        let p = |s: String| cib::xml::parse(&s).unwrap().root;
        assert!(!op_failed(&p(op("x", "monitor", 0, 7, 7, 1))), "probe: not running");
        assert!(!op_failed(&p(op("x", "monitor", 0, 0, 7, 1))), "probe: found running");
        assert!(op_failed(&p(op("x", "monitor", 0, 1, 7, 1))), "probe: error");
        assert!(op_failed(&p(op("x", "monitor", 5000, 7, 0, 1))));
        assert!(!op_failed(&p(op("x", "monitor", 5000, 8, 8, 1))), "promoted as expected");
        assert!(op_failed(&p(op("x", "start", 0, 0, 0, 1).replace(r#"op-status="0""#, r#"op-status="2""#))), "timeout");
        assert!(!op_failed(&p(op("x", "start", 0, 0, 0, 1).replace(r#"op-status="0""#, r#"op-status="-1""#))), "pending");
    }

    #[test]
    fn failcount_show_as_pcs_prints_it() {
        let doc = cib();
        assert_eq!(failcount_text(&doc, None, None, false), "Failcounts for resource 'd'\n  node2: 3\nFailcounts for resource 'g1'\n  node1: INFINITY");
        assert_eq!(failcount_text(&doc, Some("d"), None, true), "Failcounts for resource 'd'\n  node2:\n    monitor 10000ms: 2\n    start 0ms: 1");
        assert_eq!(failcount_text(&doc, Some("d"), Some("node2"), false), "Failcounts for resource 'd' on node 'node2'\n  node2: 3");
        assert_eq!(failcount_text(&doc, Some("g2"), None, false), "No failcounts for resource 'g2'");
        assert_eq!(failcount_text(&doc, None, Some("node3"), false), "No failcounts on node 'node3'");
        assert_eq!(rsc_and_node(vec!["d".into(), "node=node1".into()], None).unwrap(), (Some("d".into()), Some("node1".into())));
        assert!(rsc_and_node(vec!["operation=start".into()], None).is_err());
    }
}
