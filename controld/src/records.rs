//! The status writes the DC makes, as CIB writes: node states, executor history, failure
//! attributes. Pure functions of their inputs (no CIB read), so each write says exactly
//! what it changes; paths are scoped by node, since record ids repeat across nodes.
//!
//! Spec: CONTROLLER-NOTES §2.1 (`node_state` fields), §3.3 (record ids, transition key and
//! magic), §4.1 (`fail-count-*`, `last-failure-*` and their increments), §5.2 (after
//! fencing: `join=down`, `expected=down`, history and transient attributes deleted);
//! EXECD-NOTES §6 (the `lrm_rsc_op` record).

use cib::diff::build;
use cib::xml::Element;
use proto::cib as pb;

/// `action:transition:expected-rc:dc-uuid`.
pub fn transition_key(action: usize, transition: u64, expected_rc: i32, dc_uuid: &str) -> String {
    format!("{action}:{transition}:{expected_rc}:{dc_uuid}")
}

/// A transition key's parts: (action, transition, expected rc, DC uuid).
pub fn parse_transition_key(key: &str) -> Option<(usize, u64, i32, &str)> {
    let mut it = key.splitn(4, ':');
    let a = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    let rc = it.next()?.parse().ok()?;
    let uuid = it.next()?;
    Some((a, t, rc, uuid))
}

fn modify(xml: Element) -> pb::WriteRequest {
    pb::WriteRequest { op: Some(pb::write_request::Op::Modify(pb::Modify { xml: xml.to_xml() })) }
}

fn patch(changes: Vec<Element>) -> pb::WriteRequest {
    pb::WriteRequest { op: Some(pb::write_request::Op::Patch(pb::Patch { xml: build::patchset(changes).to_xml() })) }
}

fn node_path(node_id: &str) -> String {
    format!("/cib/status/node_state[@id='{node_id}']")
}

/// `<status><node_state id uname ...attrs/></status>` wrapping `children`.
fn node_state(node_id: &str, uname: &str, attrs: &[(&str, &str)], children: Vec<Element>) -> Element {
    let mut ns = Element::new("node_state");
    ns.set_attr("id", node_id);
    ns.set_attr("uname", uname);
    for (k, v) in attrs {
        ns.set_attr(k, v);
    }
    for c in children {
        ns.push(c);
    }
    let mut status = Element::new("status");
    status.push(ns);
    status
}

/// Set a node's membership fields (created if the node has no state yet).
pub fn node_fields(node_id: &str, uname: &str, attrs: &[(&str, &str)]) -> pb::WriteRequest {
    let mut all: Vec<(&str, &str)> = attrs.to_vec();
    all.push(("crm-debug-origin", "halo-controld"));
    modify(node_state(node_id, uname, &all, Vec::new()))
}

/// A node that is not in the cluster: `in_ccm=false`, `crmd=offline`, only if it has a
/// state (a node never seen keeps none, so the scheduler still treats it as never seen:
/// startup fencing). The CIB refuses the write when there is no state; nothing changes.
pub fn node_gone_if_known(node_id: &str) -> pb::WriteRequest {
    patch(vec![build::modify(&node_path(node_id), &[("in_ccm", Some("false")), ("crmd", Some("offline"))])])
}

/// The `<cib>` attributes the DC owns: `dc-uuid` and `have-quorum`.
pub fn cib_attrs(dc_node_id: &str, quorate: bool) -> pb::WriteRequest {
    let mut cib = Element::new("cib");
    cib.set_attr("dc-uuid", dc_node_id);
    cib.set_attr("have-quorum", if quorate { "1" } else { "0" });
    modify(cib)
}

/// The version `dc-version` names (crm_mon: "Current DC: NODE (version V)").
pub const DC_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-halo");

/// The cluster properties the DC keeps, as Pacemaker's does on taking over: `dc-version`
/// and `cluster-infrastructure` in `cib-bootstrap-options` ("corosync": halo's membership
/// layer is read from corosync.conf and offers what Corosync offers Pacemaker). Writing
/// values already there changes nothing.
pub fn dc_properties(version: &str) -> pb::WriteRequest {
    let mut set = Element::new("cluster_property_set");
    set.set_attr("id", "cib-bootstrap-options");
    for (name, value) in [("dc-version", version), ("cluster-infrastructure", "corosync")] {
        let mut nv = Element::new("nvpair");
        nv.set_attr("id", &format!("cib-bootstrap-options-{name}"));
        nv.set_attr("name", name);
        nv.set_attr("value", value);
        set.push(nv);
    }
    let mut crm_config = Element::new("crm_config");
    crm_config.push(set);
    modify(crm_config)
}

/// Replace a node's whole history with `lrm_resources` (the executor's `<lrm_resources>`),
/// as the join does: one write, so no reader sees the node without history. The node
/// must have a state already (write [`node_fields`] first).
///
/// `locked` are the node's `lrm_resource`s that carry a `shutdown-lock` in the CIB: they
/// are kept unless the node reports that resource itself (the lock outlives the restart
/// that emptied the node's executor).
pub fn replace_history(node_id: &str, lrm_resources: &str, locked: &[String]) -> Result<pb::WriteRequest, String> {
    let mut resources = cib::xml::parse(lrm_resources).map_err(|e| format!("a node's history does not parse: {e}"))?.root;
    if resources.name != "lrm_resources" {
        return Err(format!("a node's history is <{}>, not <lrm_resources>", resources.name));
    }
    for x in locked {
        let Ok(kept) = cib::xml::parse(x) else { continue };
        if kept.root.name == "lrm_resource" && !resources.children_named("lrm_resource").any(|r| r.id() == kept.root.id()) {
            resources.push(kept.root);
        }
    }
    let mut lrm = Element::new("lrm");
    lrm.set_attr("id", node_id);
    lrm.push(resources);
    Ok(patch(vec![build::delete(&format!("{}/lrm", node_path(node_id))), build::create(&node_path(node_id), 0, lrm)]))
}

/// After fencing: the node is down and ran nothing; its history and transient attributes
/// are gone (they died with it).
pub fn node_fenced(node_id: &str) -> pb::WriteRequest {
    patch(vec![build::delete(&format!("{}/lrm", node_path(node_id))), build::delete(&format!("{}/transient_attributes", node_path(node_id)))])
}

/// One op result into a node's history: its record (`lrm_rsc_op` as the executor made it,
/// with the transition key), and for a failure a copy as `<rsc>_last_failure_0`.
///
/// `lock` is the `shutdown-lock` the resource's history takes with it (the graph's, for a
/// stop of a clean shutdown or the start that clears it).
pub fn record_op(node_id: &str, uname: &str, rsc: &str, agent: &str, op_xml: &str, failed: bool, lock: Option<i64>) -> Result<pb::WriteRequest, String> {
    let op = cib::xml::parse(op_xml).map_err(|e| format!("an op record does not parse: {e}"))?.root;
    if op.name != "lrm_rsc_op" || op.id().is_none() {
        return Err(format!("an op record is <{}> without an id", op.name));
    }
    let mut r = cib::status::lrm_resource_element(rsc, agent);
    if let Some(t) = lock {
        r.set_attr("shutdown-lock", &t.to_string());
    }
    if failed {
        let mut f = op.clone();
        f.set_attr("id", &format!("{rsc}_last_failure_0"));
        r.push(f);
    }
    r.push(op);
    let mut list = Element::new("lrm_resources");
    list.push(r);
    let mut lrm = Element::new("lrm");
    lrm.set_attr("id", node_id);
    lrm.push(list);
    Ok(modify(node_state(node_id, uname, &[], vec![lrm])))
}

/// A node's history larger than this travels deflated in its Join.
pub const DEFLATE_ABOVE: usize = 64 * 1024;
/// What a deflated history may expand to at most (a bomb is refused, not inflated).
const MAX_INFLATED: u64 = 256 << 20;

pub fn deflate(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

pub fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes).take(MAX_INFLATED + 1).read_to_end(&mut out).map_err(|e| format!("corrupt compressed data: {e}"))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(format!("expands beyond {MAX_INFLATED} bytes"));
    }
    Ok(out)
}

/// The CIB as the DC of a partition without quorum plans from: `have-quorum="0"`, itself
/// as `dc-uuid`, and the nodes outside the partition out of the membership (the copy only:
/// nothing is written).
pub fn minority_view(doc: &mut cib::xml::Document, m: &crate::core::Minority) {
    doc.root.set_attr("have-quorum", if m.quorate { "1" } else { "0" });
    doc.root.set_attr("dc-uuid", &m.dc.to_string());
    let Some(status) = doc.root.child_mut("status") else { return };
    for ns in status.elements_mut().filter(|e| e.name == "node_state") {
        if ns.id().and_then(|id| id.parse::<u32>().ok()).is_some_and(|id| m.outside.contains(&id)) {
            ns.set_attr("in_ccm", "false");
            ns.set_attr("crmd", "offline");
        }
    }
}

/// Forget one record (a cancelled recurring op).
pub fn delete_op(node_id: &str, rsc: &str, op_id: &str) -> pb::WriteRequest {
    patch(vec![build::delete(&format!("{}/lrm/lrm_resources/lrm_resource[@id='{rsc}']/lrm_rsc_op[@id='{op_id}']", node_path(node_id)))])
}

/// Forget a resource's whole history on a node (cleanup, refresh): it is probed again.
pub fn delete_resource_history(node_id: &str, rsc: &str) -> pb::WriteRequest {
    patch(vec![build::delete(&format!("{}/lrm/lrm_resources/lrm_resource[@id='{rsc}']", node_path(node_id)))])
}

/// The id of a transient attribute's nvpair: `status-<node>-<name>`, `#` made `.` (as
/// Pacemaker's attribute manager names them).
pub fn transient_attr_id(node_id: &str, name: &str) -> String {
    format!("status-{node_id}-{}", name.replace('#', "."))
}

/// Transient node attributes (`status-<node>` set, nvpair ids [`transient_attr_id`]); a value
/// may be Pacemaker's `value++`.
pub fn transient_attrs(node_id: &str, uname: &str, attrs: &[(String, String)]) -> pb::WriteRequest {
    let mut set = Element::new("instance_attributes");
    set.set_attr("id", &format!("status-{node_id}"));
    for (name, value) in attrs {
        let mut nv = Element::new("nvpair");
        nv.set_attr("id", &transient_attr_id(node_id, name));
        nv.set_attr("name", name);
        nv.set_attr("value", value);
        set.push(nv);
    }
    let mut ta = Element::new("transient_attributes");
    ta.set_attr("id", node_id);
    ta.push(set);
    modify(node_state(node_id, uname, &[], vec![ta]))
}

/// A node that left cleanly (§6.1 step 5): down, not lost, and its transient attributes
/// gone with it, in one write (no reader sees one without the other). The node has a
/// state: it joined before it asked to stop.
pub fn node_left_cleanly(node_id: &str) -> pb::WriteRequest {
    let down = [("in_ccm", Some("false")), ("crmd", Some("offline")), ("join", Some("down")), ("expected", Some("down"))];
    patch(vec![build::modify(&node_path(node_id), &down), build::delete(&format!("{}/transient_attributes", node_path(node_id)))])
}


/// Delete transient attributes by name (patch paths select by id only).
pub fn delete_transient_attrs(node_id: &str, names: &[String]) -> pb::WriteRequest {
    patch(
        names
            .iter()
            .map(|n| build::delete(&format!("{}/transient_attributes/instance_attributes/nvpair[@id='{}']", node_path(node_id), transient_attr_id(node_id, n))))
            .collect(),
    )
}

/// The failure attributes a failed op sets (§4.1): the fail count (`value++`, or
/// INFINITY for a stop, and for a start when `start-failure-is-fatal`) and the time.
/// Probes never count; `on-fail=ignore` sets only the time.
pub fn failure_attrs(rsc: &str, task: &str, interval_ms: u64, start_fatal: bool, on_fail_ignore: bool, now_s: i64) -> Vec<(String, String)> {
    if task == "monitor" && interval_ms == 0 || matches!(task, "notify" | "migrate_to" | "migrate_from" | "reload" | "meta-data") {
        return Vec::new();
    }
    let suffix = format!("{rsc}#{task}_{interval_ms}");
    let mut out = Vec::new();
    if !on_fail_ignore {
        let count = if task == "stop" || task == "start" && start_fatal { "INFINITY".to_string() } else { "value++".to_string() };
        out.push((format!("fail-count-{suffix}"), count));
    }
    out.push((format!("last-failure-{suffix}"), now_s.to_string()));
    out
}

/// Status writes queued together, combined where that changes nothing: consecutive
/// modifies of `<status>` become one (their fragments merged element by element, the later
/// value winning, as applying them in turn would give), so a burst of results costs one
/// raft entry. A modify with an increment (`value++`) or anything else (a patch) keeps its
/// own write. Returns the writes, each with the indexes of the queued writes it stands for.
pub fn combine(writes: Vec<pb::WriteRequest>) -> Vec<(pb::WriteRequest, Vec<usize>)> {
    let mut out: Vec<(pb::WriteRequest, Vec<usize>)> = Vec::new();
    let mut open: Option<(Element, Vec<usize>)> = None;
    let flush = |open: &mut Option<(Element, Vec<usize>)>, out: &mut Vec<(pb::WriteRequest, Vec<usize>)>| {
        if let Some((e, ix)) = open.take() {
            out.push((modify(e), ix));
        }
    };
    for (i, w) in writes.into_iter().enumerate() {
        let status = match &w.op {
            Some(pb::write_request::Op::Modify(m)) if !m.xml.contains("++") && !m.xml.contains("+=") => {
                cib::xml::parse(&m.xml).ok().map(|d| d.root).filter(|e| e.name == "status")
            }
            _ => None,
        };
        match status {
            Some(frag) => match open.as_mut() {
                Some((e, ix)) => {
                    merge_into(e, frag);
                    ix.push(i);
                }
                None => open = Some((frag, vec![i])),
            },
            None => {
                flush(&mut open, &mut out);
                out.push((w, vec![i]));
            }
        }
    }
    flush(&mut open, &mut out);
    out
}

/// Merge `frag` into `into` as a modify would apply it after `into`: attributes set, child
/// elements paired by name and id (by name alone when they have no id), others appended.
fn merge_into(into: &mut Element, frag: Element) {
    for (k, v) in &frag.attrs {
        into.set_attr(k, v);
    }
    for child in frag.children {
        let cib::xml::Node::Element(c) = child else { continue };
        let same = into.find_mut(|e| e.name == c.name && e.id() == c.id());
        match same {
            Some(e) => merge_into(e, std::sync::Arc::unwrap_or_clone(c)),
            None => into.children.push(cib::xml::Node::Element(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheduler::graph::ActionKind;

    fn apply(doc: &cib::xml::Document, w: &pb::WriteRequest) -> cib::xml::Document {
        let op = match w.op.as_ref().unwrap() {
            pb::write_request::Op::Modify(m) => cib::ops::Op::Modify { xml: cib::xml::parse(&m.xml).unwrap().root },
            pb::write_request::Op::Patch(p) => cib::ops::Op::Patch { diff: cib::xml::parse(&p.xml).unwrap().root },
            _ => unreachable!(),
        };
        cib::ops::apply(doc, &op).unwrap_or_else(|e| panic!("{e}"))
    }

    const CIB: &str = r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config/><nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes><resources><primitive id="d" class="ocf" provider="heartbeat" type="Dummy"/></resources><constraints/></configuration><status/></cib>"#;

    #[test]
    fn writes_build_a_status_the_cib_accepts() {
        let mut doc = cib::xml::parse(CIB).unwrap();
        for n in ["1", "2"] {
            doc = apply(&doc, &node_fields(n, &format!("n{n}"), &[("in_ccm", "true"), ("crmd", "online"), ("join", "member"), ("expected", "member")]));
        }
        let hist = r#"<lrm_resources><lrm_resource id="d" class="ocf" provider="heartbeat" type="Dummy"><lrm_rsc_op id="d_last_0" operation_key="d_start_0" operation="start" call-id="2" rc-code="0" op-status="0" interval="0"/></lrm_resource></lrm_resources>"#;
        doc = apply(&doc, &replace_history("2", hist, &[]).unwrap());
        doc = apply(&doc, &replace_history("2", hist, &[]).unwrap());
        doc = apply(&doc, &replace_history("1", "<lrm_resources/>", &[]).unwrap());
        let key = transition_key(3, 7, 0, "abc");
        let op = format!(r#"<lrm_rsc_op id="d_monitor_10000" operation_key="d_monitor_10000" operation="monitor" call-id="3" rc-code="7" op-status="0" interval="10000" transition-key="{key}"/>"#);
        doc = apply(&doc, &record_op("2", "n2", "d", "ocf:heartbeat:Dummy", &op, true, None).unwrap());
        doc = apply(&doc, &transient_attrs("2", "n2", &failure_attrs("d", "monitor", 10_000, true, false, 1000)));
        doc = apply(&doc, &transient_attrs("2", "n2", &failure_attrs("d", "monitor", 10_000, true, false, 1001)));
        let c = cib::Cib::from_document(doc.clone()).unwrap();
        let n2 = c.status.nodes.iter().find(|n| n.id == "2").unwrap();
        assert_eq!(n2.lrm.len(), 1);
        let ids: Vec<&str> = n2.lrm[0].ops.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["d_last_0", "d_last_failure_0", "d_monitor_10000"]);
        assert_eq!(n2.lrm[0].ops[2].target_rc(), Some(0));
        let xml = doc.to_xml();
        assert!(xml.contains(r#"name="fail-count-d#monitor_10000" value="2""#), "{xml}");
        assert!(xml.contains(r#"name="last-failure-d#monitor_10000" value="1001""#), "{xml}");
        // Record ids repeat across nodes: a delete names its node.
        doc = apply(&doc, &record_op("1", "n1", "d", "ocf:heartbeat:Dummy", &op, false, None).unwrap());
        doc = apply(&doc, &delete_op("1", "d", "d_monitor_10000"));
        let c = cib::Cib::from_document(doc.clone()).unwrap();
        assert!(c.status.nodes.iter().find(|n| n.id == "2").unwrap().lrm[0].ops.iter().any(|o| o.id == "d_monitor_10000"));
        doc = apply(&doc, &delete_transient_attrs("2", &["last-failure-d#monitor_10000".to_string()]));
        assert!(!doc.to_xml().contains("last-failure-d#monitor_10000") && doc.to_xml().contains("fail-count-d#monitor_10000"));
        let left = apply(&doc, &node_left_cleanly("2"));
        assert!(left.to_xml().contains(r#"<node_state id="2" uname="n2" in_ccm="false" crmd="offline" join="down" expected="down""#) && !left.to_xml().contains("fail-count"));
        doc = apply(&doc, &node_gone_if_known("2"));
        assert!(doc.to_xml().contains(r#"<node_state id="2" uname="n2" in_ccm="false" crmd="offline" join="member""#));
        doc = apply(&doc, &node_fenced("2"));
        let c = cib::Cib::from_document(doc).unwrap();
        let n2 = c.status.nodes.iter().find(|n| n.id == "2").unwrap();
        assert!(n2.lrm.is_empty() && n2.transient.is_empty());
    }

    #[test]
    fn combined_writes_give_what_the_writes_give_in_turn() {
        let base = {
            let mut doc = cib::xml::parse(CIB).unwrap();
            for n in ["1", "2"] {
                doc = apply(&doc, &node_fields(n, &format!("n{n}"), &[("in_ccm", "true"), ("join", "member")]));
            }
            doc
        };
        let op = |id: &str, rc: i32| format!(r#"<lrm_rsc_op id="{id}" operation_key="d_start_0" operation="start" call-id="{rc}" rc-code="{rc}" op-status="0" interval="0"/>"#);
        let writes = vec![
            record_op("1", "n1", "d", "ocf:heartbeat:Dummy", &op("d_last_0", 7), false, None).unwrap(),
            record_op("2", "n2", "d", "ocf:heartbeat:Dummy", &op("d_last_0", 7), false, None).unwrap(),
            node_fields("2", "n2", &[("expected", "down")]),
            record_op("1", "n1", "d", "ocf:heartbeat:Dummy", &op("d_last_0", 0), false, None).unwrap(),
            transient_attrs("1", "n1", &failure_attrs("d", "monitor", 1000, true, false, 5)),
            transient_attrs("1", "n1", &failure_attrs("d", "monitor", 1000, true, false, 6)),
            delete_op("2", "d", "d_last_0"),
            record_op("2", "n2", "d", "ocf:heartbeat:Dummy", &op("d_monitor_1000", 0), true, None).unwrap(),
        ];
        let mut one_by_one = base.clone();
        for w in &writes {
            one_by_one = apply(&one_by_one, w);
        }
        let combined = combine(writes);
        assert_eq!(combined.iter().map(|(_, ix)| ix.clone()).collect::<Vec<_>>(), vec![vec![0, 1, 2, 3], vec![4], vec![5], vec![6], vec![7]]);
        let mut together = base;
        for (w, _) in &combined {
            together = apply(&together, w);
        }
        let a = cib::Cib::from_document(one_by_one).unwrap();
        let b = cib::Cib::from_document(together).unwrap();
        assert_eq!(a.status, b.status);
    }

    #[test]
    fn a_minority_plans_without_quorum_and_without_the_nodes_it_cannot_see() {
        // Without fencing (with it, Pacemaker 2.1.5 stops nothing while the node it cannot
        // see is unclean and cannot be fenced without quorum; halo's scheduler agrees).
        let no_fencing = r#"<crm_config><cluster_property_set id="o"><nvpair id="o-s" name="stonith-enabled" value="false"/></cluster_property_set></crm_config>"#;
        let mut doc = cib::xml::parse(&CIB.replace("<crm_config/>", no_fencing)).unwrap();
        for n in ["1", "2"] {
            doc = apply(&doc, &node_fields(n, &format!("n{n}"), &[("in_ccm", "true"), ("crmd", "online"), ("join", "member"), ("expected", "member")]));
        }
        doc = apply(&doc, &cib_attrs("2", true));
        minority_view(&mut doc, &crate::core::Minority { dc: 1, outside: vec![2], quorate: false });
        let c = cib::Cib::from_document(doc.clone()).unwrap();
        assert_eq!((c.attr("have-quorum"), c.attr("dc-uuid")), (Some("0"), Some("1")));
        let xml = doc.to_xml();
        assert!(xml.contains(r#"<node_state id="2" uname="n2" in_ccm="false" crmd="offline""#), "{xml}");
        assert!(xml.contains(r#"<node_state id="1" uname="n1" in_ccm="true" crmd="online""#), "{xml}");
        // With the default no-quorum-policy (stop), what runs in the minority stops.
        let hist = r#"<lrm_resources><lrm_resource id="d" class="ocf" provider="heartbeat" type="Dummy"><lrm_rsc_op id="d_last_0" operation_key="d_start_0" operation="start" call-id="2" rc-code="0" op-status="0" interval="0" transition-key="1:1:0:x"/></lrm_resource></lrm_resources>"#;
        doc = apply(&doc, &replace_history("1", hist, &[]).unwrap());
        let now = chrono::DateTime::from_timestamp(1_767_225_700, 0).unwrap().naive_utc();
        let keys: Vec<String> = scheduler::schedule(&cib::Cib::from_document(doc).unwrap(), now).graph().actions.iter().map(|a| a.key.clone()).collect();
        assert_eq!(keys, ["d_stop_0"], "stopped due to no quorum");
    }

    #[test]
    fn a_shutdown_lock_is_recorded_kept_at_join_and_cleared_by_a_start() {
        const LOCKING: &str = r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config><cluster_property_set id="o"><nvpair id="o-sl" name="shutdown-lock" value="true"/><nvpair id="o-st" name="stonith-enabled" value="false"/></cluster_property_set></crm_config><nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes><resources><primitive id="d" class="ocf" provider="heartbeat" type="Dummy"/></resources><constraints/></configuration><status/></cib>"#;
        let mut doc = cib::xml::parse(LOCKING).unwrap();
        doc = apply(&doc, &cib_attrs("1", true));
        // The DC's properties join an existing property set, and again change nothing.
        doc = apply(&doc, &dc_properties("9.9-halo"));
        let again = apply(&doc, &dc_properties("9.9-halo"));
        assert!(cib::ops::same(&doc.root, &again.root));
        let xml = doc.to_xml();
        assert!(xml.contains(r#"<cluster_property_set id="cib-bootstrap-options"><nvpair id="cib-bootstrap-options-dc-version" name="dc-version" value="9.9-halo"/><nvpair id="cib-bootstrap-options-cluster-infrastructure" name="cluster-infrastructure" value="corosync"/></cluster_property_set>"#), "{xml}");
        assert!(xml.contains(r#"<nvpair id="o-sl" name="shutdown-lock" value="true"/>"#), "{xml}");
        for n in ["1", "2"] {
            doc = apply(&doc, &node_fields(n, &format!("n{n}"), &[("in_ccm", "true"), ("crmd", "online"), ("join", "member"), ("expected", "member")]));
        }
        doc = apply(&doc, &replace_history("1", "<lrm_resources/>", &[]).unwrap());
        let started = r#"<lrm_resources><lrm_resource id="d" class="ocf" provider="heartbeat" type="Dummy"><lrm_rsc_op id="d_last_0" operation_key="d_start_0" operation="start" call-id="2" rc-code="0" op-status="0" interval="0" transition-key="1:1:0:x"/></lrm_resource></lrm_resources>"#;
        doc = apply(&doc, &replace_history("2", started, &[]).unwrap());
        doc = apply(&doc, &transient_attrs("2", "n2", &[("shutdown".to_string(), "1767225600".to_string())]));
        let now = chrono::DateTime::from_timestamp(1_767_225_700, 0).unwrap().naive_utc();
        let g = scheduler::schedule(&cib::Cib::from_document(doc.clone()).unwrap(), now).graph();
        let stop: Vec<(String, Option<i64>)> = g.actions.iter().filter_map(|a| match &a.kind { ActionKind::Rsc(op) => Some((a.key.clone(), op.shutdown_lock)), _ => None }).collect();
        assert!(stop.contains(&("d_stop_0".to_string(), Some(1_767_225_600))), "{stop:?}");
        assert!(stop.iter().all(|(k, _)| !k.starts_with("d_start")), "stopped on the leaving node, not started elsewhere: {stop:?}");
        let stopped = r#"<lrm_rsc_op id="d_last_0" operation_key="d_stop_0" operation="stop" call-id="3" rc-code="0" op-status="0" interval="0" transition-key="2:2:0:x"/>"#;
        doc = apply(&doc, &record_op("2", "n2", "d", "ocf:heartbeat:Dummy", stopped, false, Some(1_767_225_600)).unwrap());
        doc = apply(&doc, &node_left_cleanly("2"));
        let c = cib::Cib::from_document(doc.clone()).unwrap();
        let g = scheduler::schedule(&c, now).graph();
        assert!(g.actions.iter().all(|a| !a.key.starts_with("d_start")), "locked to n2 while it is away");
        // n2 comes back with an empty executor: the join keeps the locked history, so d
        // starts on n2 only, and that start clears the lock.
        let locked = crate::daemon::facts_of(&c).locked.remove("2").unwrap();
        doc = apply(&doc, &node_fields("2", "n2", &[("in_ccm", "true"), ("crmd", "online"), ("join", "member"), ("expected", "member")]));
        doc = apply(&doc, &replace_history("2", "<lrm_resources/>", &locked).unwrap());
        assert!(doc.to_xml().contains(r#"shutdown-lock="1767225600""#));
        let g = scheduler::schedule(&cib::Cib::from_document(doc.clone()).unwrap(), now).graph();
        let start = g.actions.iter().find(|a| a.key == "d_start_0").expect("d starts");
        assert_eq!(start.node.as_ref().map(|n| n.0.as_str()), Some("n2"));
        assert!(matches!(&start.kind, ActionKind::Rsc(op) if op.shutdown_lock == Some(0)));
        // A node that reports the resource itself needs no kept copy.
        let w = replace_history("2", started, &locked).unwrap();
        assert!(!format!("{w:?}").contains("shutdown-lock"));
    }

    #[test]
    fn large_histories_travel_deflated_and_bombs_are_refused() {
        let op = r#"<lrm_rsc_op id="d_last_0" operation_key="d_start_0" operation="start" call-id="2" rc-code="0" op-status="0" interval="0"/>"#;
        let xml = format!("<lrm_resources>{}</lrm_resources>", (0..3000).map(|i| format!(r#"<lrm_resource id="d{i}" class="ocf" provider="heartbeat" type="Dummy">{op}</lrm_resource>"#)).collect::<String>());
        let z = deflate(xml.as_bytes());
        assert!(xml.len() > DEFLATE_ABOVE && z.len() * 10 < xml.len(), "{} -> {}", xml.len(), z.len());
        assert_eq!(inflate(&z).unwrap(), xml.as_bytes());
        assert!(inflate(b"not deflate at all").is_err());
        let bomb = deflate(&vec![b' '; (MAX_INFLATED + 10) as usize]);
        assert!(inflate(&bomb).unwrap_err().contains("expands beyond"));
    }

    #[test]
    fn failures_count_as_pacemaker_counts_them() {
        assert!(failure_attrs("d", "monitor", 0, true, false, 1).is_empty(), "probes never count");
        assert_eq!(failure_attrs("d", "start", 0, true, false, 1)[0].1, "INFINITY");
        assert_eq!(failure_attrs("d", "start", 0, false, false, 1)[0].1, "value++");
        assert_eq!(failure_attrs("d", "stop", 0, false, false, 1)[0].1, "INFINITY");
        let ignore = failure_attrs("d", "monitor", 5000, true, true, 9);
        assert_eq!(ignore, vec![("last-failure-d#monitor_5000".to_string(), "9".to_string())]);
        assert_eq!(parse_transition_key("3:7:0:ab:cd"), Some((3, 7, 0, "ab:cd")));
        assert_eq!(parse_transition_key("x:7:0:u"), None);
    }
}
