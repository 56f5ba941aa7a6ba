//! Behaviour tests: one small CIB per test, one scheduler concept each.
//!
//! Every expected line comes from Pacemaker 2.1.5, not from halo: each test's CIB was
//! run through `crm_simulate -x NAME.xml -S -t 2026-01-01T00:00:00Z` and its "Current
//! cluster status" and "Transition Summary" lines were copied here. The comparison
//! folds whitespace and treats each block as a multiset of lines (sub-headers such as
//! "* Node List:" are skipped). To check an expectation again:
//!
//!   BEHAVIOUR_DUMP=/tmp/bh cargo test --release -p halo-scheduler --test behaviour
//!   crm_simulate -x /tmp/bh/TEST_NAME.xml -S -t 2026-01-01T00:00:00Z
//!
//! (the dump uses the test thread's name, so do not run it with --test-threads=1).

use chrono::{DateTime, NaiveDateTime};

/// The `now` of every test: 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;
/// Digests Pacemaker computes for a Dummy without parameters (start/probe) and its 10s monitor.
const DIGEST_NOPARAMS: &str = "f2317cad3d54cec5d7d7aa7d0bf35cf8";
const DIGEST_MONITOR: &str = "4811cef7f7f94e3a35a70be7916cb2fd";

// <node_state> attributes as the controller writes them.
const ONLINE: &str = r#"in_ccm="true" crmd="online" join="member" expected="member""#;
/// Left the cluster cleanly (a shutdown).
const DOWN: &str = r#"in_ccm="false" crmd="offline" join="down" expected="down""#;
/// Vanished while expected to be a member: "peer is no longer part of the cluster".
const LOST: &str = r#"in_ccm="false" crmd="offline" join="down" expected="member""#;
const PENDING: &str = r#"in_ccm="true" crmd="online" join="pending" expected="member""#;

// ---------------------------------------------------------------------------
// Building CIBs from parts.

fn now() -> NaiveDateTime {
    DateTime::from_timestamp(NOW, 0).unwrap().naive_utc()
}

fn nvpair(prefix: &str, name: &str, value: &str) -> String {
    let id: String = format!("{prefix}-{name}").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!(r#"<nvpair id="{id}" name="{name}" value="{value}"/>"#)
}

struct Node {
    name: &'static str,
    state: &'static str,
    attrs: String,
    transient: String,
    lrm: String,
}

/// A CIB under construction; `cib()` starts one with stonith-enabled=false.
#[derive(Default)]
struct Cfg {
    props: String,
    defaults: String,
    nodes: Vec<Node>,
    resources: String,
    constraints: String,
}

fn cib() -> Cfg {
    Cfg::default().prop("stonith-enabled", "false")
}

fn fencing() -> Cfg {
    Cfg::default().prop("stonith-enabled", "true")
}

impl Cfg {
    fn prop(mut self, name: &str, value: &str) -> Self {
        self.props += &nvpair("opt", name, value);
        self
    }
    /// An rsc_defaults meta attribute.
    fn default_meta(mut self, name: &str, value: &str) -> Self {
        self.defaults += &nvpair("defaults", name, value);
        self
    }
    fn rsc(mut self, xml: &str) -> Self {
        self.resources += xml;
        self
    }
    fn con(mut self, xml: &str) -> Self {
        self.constraints += xml;
        self
    }
    /// A node (ids 1, 2, ... in call order) with its state and resource history.
    fn node(mut self, name: &'static str, state: &'static str, history: &[String]) -> Self {
        self.nodes.push(Node { name, state, attrs: String::new(), transient: String::new(), lrm: history.concat() });
        self
    }
    /// Online nodes, each with the probe (not running) of every resource in `rscs`.
    fn online(self, names: &[&'static str], rscs: &[&str]) -> Self {
        let history: Vec<String> = rscs.iter().map(|r| probed(r)).collect();
        names.iter().fold(self, |c, n| c.node(n, ONLINE, &history))
    }
    /// A node attribute in the configuration (e.g. standby) of the last node added.
    fn node_attr(mut self, name: &str, value: &str) -> Self {
        let i = self.nodes.len();
        self.nodes[i - 1].attrs += &nvpair(&format!("na{i}"), name, value);
        self
    }
    /// A transient (status) attribute of the last node added, e.g. a fail count.
    fn transient(mut self, name: &str, value: &str) -> Self {
        let i = self.nodes.len();
        self.nodes[i - 1].transient += &nvpair(&format!("st{i}"), name, value);
        self
    }
    fn xml(&self) -> String {
        let mut nodes = String::new();
        let mut status = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let (id, name) = (i + 1, n.name);
            let attrs = if n.attrs.is_empty() { String::new() } else { format!(r#"<instance_attributes id="na{id}">{}</instance_attributes>"#, n.attrs) };
            nodes += &format!(r#"<node id="{id}" uname="{name}">{attrs}</node>"#);
            let tr = if n.transient.is_empty() {
                String::new()
            } else {
                format!(r#"<transient_attributes id="{id}"><instance_attributes id="st{id}">{}</instance_attributes></transient_attributes>"#, n.transient)
            };
            status += &format!("\n<node_state id=\"{id}\" uname=\"{name}\" {}>{tr}<lrm id=\"{id}\"><lrm_resources>{}</lrm_resources></lrm></node_state>", n.state, n.lrm);
        }
        format!(
            r#"<cib validate-with="pacemaker-3.9" crm_feature_set="3.16.1" epoch="1" num_updates="0" admin_epoch="0" have-quorum="1" dc-uuid="1">
<configuration>
<crm_config><cluster_property_set id="opt">{}</cluster_property_set></crm_config>
<nodes>{nodes}</nodes>
<resources>{}</resources>
<constraints>{}</constraints>
<rsc_defaults><meta_attributes id="defaults">{}</meta_attributes></rsc_defaults>
</configuration>
<status>{status}
</status>
</cib>
"#,
            self.props, self.resources, self.constraints, self.defaults
        )
    }
}

/// An ocf:heartbeat:Dummy with a 10s monitor and the given meta attributes.
fn dummy(id: &str, meta: &[(&str, &str)]) -> String {
    let meta: String = meta.iter().map(|(k, v)| nvpair(&format!("{id}-meta"), k, v)).collect();
    format!(
        r#"<primitive id="{id}" class="ocf" provider="heartbeat" type="Dummy"><meta_attributes id="{id}-meta">{meta}</meta_attributes><operations><op id="{id}-mon" name="monitor" interval="10s"/></operations></primitive>"#
    )
}

/// A fence device (stonith:fence_dummy); history for it: ids starting with "fence".
fn fence_device(id: &str) -> String {
    format!(r#"<primitive id="{id}" class="stonith" type="fence_dummy"><operations><op id="{id}-mon" name="monitor" interval="10s"/></operations></primitive>"#)
}

fn group(id: &str, members: &[&str]) -> String {
    let m: String = members.iter().map(|m| dummy(m, &[])).collect();
    format!(r#"<group id="{id}">{m}</group>"#)
}

fn location(rsc: &str, node: &str, score: &str) -> String {
    format!(r#"<rsc_location id="loc-{rsc}-{node}" rsc="{rsc}" node="{node}" score="{score}"/>"#)
}

fn colocation(rsc: &str, with: &str, score: &str) -> String {
    format!(r#"<rsc_colocation id="col-{rsc}-{with}" rsc="{rsc}" with-rsc="{with}" score="{score}"/>"#)
}

fn order(first: &str, then: &str, kind: &str) -> String {
    format!(r#"<rsc_order id="ord-{first}-{then}" first="{first}" then="{then}" kind="{kind}"/>"#)
}

/// One operation result, `age` seconds before NOW.
fn op(rsc: &str, task: &str, interval_ms: u32, rc: u32, call: u32, age: i64) -> String {
    let key = format!("{rsc}_{task}_{interval_ms}");
    let probe = task == "monitor" && interval_ms == 0;
    let target = if probe { 7 } else { 0 };
    let id = match (interval_ms, rc == target) {
        (0, true) => format!("{rsc}_last_0"),
        (0, false) => format!("{rsc}_last_failure_0"),
        _ => key.clone(),
    };
    let digest = if interval_ms > 0 { DIGEST_MONITOR } else { DIGEST_NOPARAMS };
    let tk = format!("{call}:1:{target}:0b5e2c9a-5d6f-4c7e-9a4c-2b1d6c3e8f00");
    let t = NOW - age;
    format!(
        r#"<lrm_rsc_op id="{id}" operation_key="{key}" operation="{task}" crm_feature_set="3.16.1" transition-key="{tk}" transition-magic="0:{rc};{tk}" call-id="{call}" rc-code="{rc}" op-status="0" interval="{interval_ms}" last-rc-change="{t}" last-run="{t}" exec-time="10" queue-time="0" op-digest="{digest}"/>"#
    )
}

/// The history of one resource on one node.
fn hist(rsc: &str, ops: &[String]) -> String {
    let agent = if rsc.starts_with("fence") { r#"class="stonith" type="fence_dummy""# } else { r#"class="ocf" provider="heartbeat" type="Dummy""# };
    format!(r#"<lrm_resource id="{rsc}" {agent}>{}</lrm_resource>"#, ops.concat())
}

/// Probed: not running here.
fn probed(rsc: &str) -> String {
    hist(rsc, &[op(rsc, "monitor", 0, 7, 1, 3600)])
}

/// Started an hour ago, monitor fine.
fn running(rsc: &str) -> String {
    hist(rsc, &[op(rsc, "start", 0, 0, 2, 3600), op(rsc, "monitor", 10000, 0, 3, 3600)])
}

/// Started, then its monitor failed `age` seconds ago.
fn monitor_failed(rsc: &str, age: i64) -> String {
    hist(rsc, &[op(rsc, "start", 0, 0, 2, 3600), op(rsc, "monitor", 10000, 1, 3, age)])
}

// ---------------------------------------------------------------------------
// Running halo and comparing with Pacemaker's lines.

fn fold(l: &str) -> String {
    l.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Expected or produced lines as a sorted multiset: folded, no blanks, no sub-headers.
fn lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(fold).filter(|l| !l.is_empty() && !l.ends_with(':')).collect();
    v.sort();
    v
}

/// The lines of one block of `crm_simulate -S` style text.
fn block(text: &str, header: &str) -> Vec<String> {
    let start = text.find(header).unwrap_or_else(|| panic!("no {header:?} in:\n{text}")) + header.len();
    let rest = &text[start..];
    let end = ["Current cluster status:", "Transition Summary:", "Executing Cluster Transition:"].iter().filter_map(|h| rest.find(h)).min().unwrap_or(rest.len());
    lines(&rest[..end])
}

/// Schedule `cfg` at NOW and assert that halo's current status and Transition Summary
/// equal Pacemaker's (`status`, `summary`). Returns halo's simulate text.
fn check(cfg: &Cfg, status: &[&str], summary: &[&str]) -> String {
    let xml = cfg.xml();
    if let (Ok(dir), Some(name)) = (std::env::var("BEHAVIOUR_DUMP"), std::thread::current().name()) {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.xml"), &xml).unwrap();
    }
    let parsed = cib::Cib::parse(&xml).unwrap_or_else(|e| panic!("CIB refused: {e}\n{xml}"));
    let text = scheduler::schedule(&parsed, now()).simulate_text();
    let ctx = format!("--- halo output:\n{text}--- CIB:\n{xml}");
    assert_eq!(block(&text, "Current cluster status:"), lines(&status.join("\n")), "current status differs from Pacemaker's\n{ctx}");
    assert_eq!(block(&text, "Transition Summary:"), lines(&summary.join("\n")), "transition summary differs from Pacemaker's\n{ctx}");
    text
}

/// Position of the first executed action containing `what` (whitespace-folded).
fn exec_pos(text: &str, what: &str) -> usize {
    let exec = text.split("Executing Cluster Transition:").nth(1).unwrap();
    exec.lines().map(fold).position(|l| l.contains(what)).unwrap_or_else(|| panic!("no action {what:?} in:\n{text}"))
}

// ---------------------------------------------------------------------------
// Unpack: node states and resource roles from history.

#[test]
fn online_nodes_and_probed_resource_is_stopped() {
    let c = cib().rsc(&dummy("A", &[]))
        .online(&["node1", "node2"], &["A"]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node1 )"]);
}

#[test]
fn start_in_history_means_started() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[probed("A")]).node("node2", ONLINE, &[running("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node2"], &[]);
}

#[test]
fn probe_finding_it_active_means_started() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[hist("A", &[op("A", "monitor", 0, 0, 1, 60)])]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &[]);
}

#[test]
fn failed_monitor_means_failed_and_is_recovered() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[monitor_failed("A", 60)]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): FAILED node1"], &["* Recover A ( node1 )"]);
}

#[test]
fn active_on_two_nodes_is_restarted_on_one() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[running("A")]).node("node2", ONLINE, &[running("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started [ node1 node2 ]"], &["* Restart A ( node1 )"]);
}

#[test]
fn clean_offline_node_history_is_ignored() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[probed("A")]).node("node2", DOWN, &[running("A")]);
    check(&c, &["* Online: [ node1 ]", "* OFFLINE: [ node2 ]", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node1 )"]);
}

#[test]
fn lost_node_without_fencing_is_just_offline() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[probed("A")]).node("node2", LOST, &[running("A")]);
    check(&c, &["* Online: [ node1 ]", "* OFFLINE: [ node2 ]", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node1 )"]);
}

#[test]
fn standby_node_gives_up_its_resources() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[running("A")]).node_attr("standby", "on").node("node2", ONLINE, &[probed("A")]);
    check(
        &c,
        &["* Node node1: standby (with active resources)", "* Online: [ node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"],
        &["* Move A ( node1 -> node2 )"],
    );
}

#[test]
fn pending_node_runs_nothing() {
    let c = fencing().rsc(&fence_device("fence1")).rsc(&dummy("A", &[])).con(&location("A", "node1", "100"))
        .node("node1", PENDING, &[probed("A")]).node("node2", ONLINE, &[running("fence1"), probed("A")]);
    let status = ["* Node node1: pending", "* Online: [ node2 ]", "* fence1 (stonith:fence_dummy): Started node2", "* A (ocf:heartbeat:Dummy): Stopped"];
    check(&c, &status, &["* Start A ( node2 )"]);
}

#[test]
fn joining_node_without_fencing_is_offline() {
    let c = cib().rsc(&dummy("A", &[])).con(&location("A", "node1", "100"))
        .node("node1", PENDING, &[]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node2 ]", "* OFFLINE: [ node1 ]", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node2 )"]);
}

#[test]
fn target_role_stopped_stops_a_running_resource() {
    let c = cib().rsc(&dummy("A", &[("target-role", "Stopped")]))
        .node("node1", ONLINE, &[running("A")]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1 (disabled)"], &["* Stop A ( node1 ) due to node availability"]);
}

#[test]
fn maintenance_mode_leaves_everything_unmanaged() {
    let c = cib().prop("maintenance-mode", "true").rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node1", "-INFINITY"))
        .node("node1", ONLINE, &[running("A"), probed("B")]).node("node2", ONLINE, &[probed("A"), probed("B")]);
    let status = ["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1 (unmanaged)", "* B (ocf:heartbeat:Dummy): Stopped (unmanaged)"];
    check(&c, &status, &[]);
}

// ---------------------------------------------------------------------------
// Placement.

#[test]
fn highest_location_score_wins() {
    let c = cib().rsc(&dummy("A", &[])).con(&location("A", "node1", "50")).con(&location("A", "node3", "100"))
        .online(&["node1", "node2"], &["A"]).node("node3", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 node3 ]", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node3 )"]);
}

#[test]
fn minus_infinity_ban_moves_a_running_resource() {
    let c = cib().rsc(&dummy("A", &[])).con(&location("A", "node1", "-INFINITY"))
        .node("node1", ONLINE, &[running("A")]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &["* Move A ( node1 -> node2 )"]);
}

#[test]
fn banned_from_every_node_stops() {
    let c = cib().rsc(&dummy("A", &[])).con(&location("A", "node1", "-INFINITY")).con(&location("A", "node2", "-INFINITY"))
        .node("node1", ONLINE, &[running("A")]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &["* Stop A ( node1 ) due to node availability"]);
}

#[test]
fn stickiness_keeps_a_resource_in_place() {
    let c = cib().default_meta("resource-stickiness", "100").rsc(&dummy("A", &[])).con(&location("A", "node2", "50"))
        .node("node1", ONLINE, &[running("A")]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &[]);
}

#[test]
fn location_above_stickiness_moves_a_resource() {
    let c = cib().default_meta("resource-stickiness", "10").rsc(&dummy("A", &[])).con(&location("A", "node2", "50"))
        .node("node1", ONLINE, &[running("A")]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &["* Move A ( node1 -> node2 )"]);
}

#[test]
fn ties_go_to_the_node_with_fewest_resources() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).rsc(&dummy("C", &[]))
        .node("node1", ONLINE, &[]).node("node2", ONLINE, &[]).node("node3", ONLINE, &[]);
    let status = ["* Online: [ node1 node2 node3 ]", "* A (ocf:heartbeat:Dummy): Stopped", "* B (ocf:heartbeat:Dummy): Stopped", "* C (ocf:heartbeat:Dummy): Stopped"];
    check(&c, &status, &["* Start A ( node1 )", "* Start B ( node2 )", "* Start C ( node3 )"]);
}

#[test]
fn ties_go_to_the_first_node_by_name() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("nodec", ONLINE, &[probed("A")]).node("nodea", ONLINE, &[probed("A")]).node("nodeb", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ nodea nodeb nodec ]", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( nodea )"]);
}

#[test]
fn opt_in_cluster_runs_only_where_allowed() {
    let c = cib().prop("symmetric-cluster", "false").rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node2", "0"))
        .online(&["node1", "node2"], &["A", "B"]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Stopped", "* B (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node2 )"]);
}

#[test]
fn date_rules_are_evaluated_at_now() {
    let rule = |id: &str, score: &str, date: &str, node: &str| {
        format!(r##"<rsc_location id="{id}" rsc="A"><rule id="{id}-r" score="{score}"><date_expression id="{id}-d" {date}/><expression id="{id}-e" attribute="#uname" operation="eq" value="{node}"/></rule></rsc_location>"##)
    };
    let c = cib().rsc(&dummy("A", &[])).con(&rule("after", "100", r#"operation="gt" start="2025-06-01""#, "node2"))
        .con(&rule("before", "200", r#"operation="lt" end="2025-06-01""#, "node1"))
        .online(&["node1", "node2"], &["A"]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node2 )"]);
}

// ---------------------------------------------------------------------------
// Colocation.

#[test]
fn infinity_colocation_places_together() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node2", "100")).con(&location("B", "node1", "50"))
        .con(&colocation("B", "A", "INFINITY"))
        .online(&["node1", "node2"], &["A", "B"]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Stopped", "* B (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node2 )", "* Start B ( node2 )"]);
}

#[test]
fn minus_infinity_colocation_keeps_apart() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node1", "100")).con(&location("B", "node1", "100"))
        .con(&colocation("B", "A", "-INFINITY"))
        .online(&["node1", "node2"], &["A", "B"]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Stopped", "* B (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node1 )", "* Start B ( node2 )"]);
}

#[test]
fn dependent_follows_a_moving_primary() {
    let c = cib().default_meta("resource-stickiness", "50").rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node1", "-INFINITY"))
        .con(&colocation("B", "A", "INFINITY"))
        .node("node1", ONLINE, &[running("A"), running("B")]).node("node2", ONLINE, &[probed("A"), probed("B")]);
    let status = ["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1", "* B (ocf:heartbeat:Dummy): Started node1"];
    check(&c, &status, &["* Move A ( node1 -> node2 )", "* Move B ( node1 -> node2 )"]);
}

#[test]
fn dependent_stops_when_its_primary_stops() {
    let c = cib().rsc(&dummy("A", &[("target-role", "Stopped")])).rsc(&dummy("B", &[])).con(&colocation("B", "A", "INFINITY"))
        .node("node1", ONLINE, &[running("A"), running("B")]).node("node2", ONLINE, &[probed("A"), probed("B")]);
    let status = ["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1 (disabled)", "* B (ocf:heartbeat:Dummy): Started node1"];
    check(&c, &status, &["* Stop A ( node1 ) due to node availability", "* Stop B ( node1 ) due to node availability"]);
}

#[test]
fn group_members_follow_the_group() {
    let c = cib().rsc(&group("G", &["G1", "G2", "G3"])).con(&location("G", "node2", "100"))
        .node("node1", ONLINE, &[]).node("node2", ONLINE, &[]);
    let status = ["* Online: [ node1 node2 ]", "* G1 (ocf:heartbeat:Dummy): Stopped", "* G2 (ocf:heartbeat:Dummy): Stopped", "* G3 (ocf:heartbeat:Dummy): Stopped"];
    check(&c, &status, &["* Start G1 ( node2 )", "* Start G2 ( node2 )", "* Start G3 ( node2 )"]);
}

#[test]
fn banning_the_first_member_moves_the_group() {
    let c = cib().rsc(&group("G", &["G1", "G2"])).con(&location("G1", "node1", "-INFINITY"))
        .node("node1", ONLINE, &[running("G1"), running("G2")]).node("node2", ONLINE, &[probed("G1"), probed("G2")]);
    let status = ["* Online: [ node1 node2 ]", "* G1 (ocf:heartbeat:Dummy): Started node1", "* G2 (ocf:heartbeat:Dummy): Started node1"];
    check(&c, &status, &["* Move G1 ( node1 -> node2 )", "* Move G2 ( node1 -> node2 )"]);
}

#[test]
fn group_member_that_cannot_run_stops_the_rest() {
    let c = cib().rsc(&group("G", &["G1", "G2", "G3"])).con(&location("G2", "node1", "-INFINITY")).con(&location("G2", "node2", "-INFINITY"))
        .node("node1", ONLINE, &[]).node("node2", ONLINE, &[]);
    let status = ["* Online: [ node1 node2 ]", "* G1 (ocf:heartbeat:Dummy): Stopped", "* G2 (ocf:heartbeat:Dummy): Stopped", "* G3 (ocf:heartbeat:Dummy): Stopped"];
    check(&c, &status, &["* Start G1 ( node1 )"]);
}

// ---------------------------------------------------------------------------
// Ordering.

#[test]
fn mandatory_order_blocks_then_when_first_cannot_run() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node1", "-INFINITY")).con(&location("A", "node2", "-INFINITY"))
        .con(&order("A", "B", "Mandatory"))
        .online(&["node1", "node2"], &["A", "B"]);
    let status = ["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Stopped", "* B (ocf:heartbeat:Dummy): Stopped"];
    check(&c, &status, &["* Start B ( node1 ) due to unrunnable A start (blocked)"]);
}

#[test]
fn mandatory_order_starts_first_before_then() {
    let c = cib().rsc(&dummy("B", &[])).rsc(&dummy("A", &[])).con(&order("A", "B", "Mandatory"))
        .online(&["node1", "node2"], &["A", "B"]);
    let status = ["* Online: [ node1 node2 ]", "* B (ocf:heartbeat:Dummy): Stopped", "* A (ocf:heartbeat:Dummy): Stopped"];
    let text = check(&c, &status, &["* Start B ( node1 )", "* Start A ( node2 )"]);
    assert!(exec_pos(&text, "A start on node2") < exec_pos(&text, "B start on node1"), "{text}");
}

#[test]
fn stops_run_in_reverse_order() {
    let c = cib().rsc(&dummy("A", &[("target-role", "Stopped")])).rsc(&dummy("B", &[("target-role", "Stopped")])).con(&order("A", "B", "Mandatory"))
        .node("node1", ONLINE, &[running("A"), running("B")]).node("node2", ONLINE, &[probed("A"), probed("B")]);
    let status = ["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1 (disabled)", "* B (ocf:heartbeat:Dummy): Started node1 (disabled)"];
    let text = check(&c, &status, &["* Stop A ( node1 ) due to node availability", "* Stop B ( node1 ) due to node availability"]);
    assert!(exec_pos(&text, "B stop on node1") < exec_pos(&text, "A stop on node1"), "{text}");
}

#[test]
fn optional_order_does_not_block() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node1", "-INFINITY")).con(&location("A", "node2", "-INFINITY"))
        .con(&order("A", "B", "Optional"))
        .online(&["node1", "node2"], &["A", "B"]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Stopped", "* B (ocf:heartbeat:Dummy): Stopped"], &["* Start B ( node1 )"]);
}

#[test]
fn mandatory_order_restarts_then_when_first_moves() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node1", "-INFINITY")).con(&location("B", "node1", "100"))
        .con(&order("A", "B", "Mandatory"))
        .node("node1", ONLINE, &[running("A"), running("B")]).node("node2", ONLINE, &[probed("A"), probed("B")]);
    let status = ["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1", "* B (ocf:heartbeat:Dummy): Started node1"];
    check(&c, &status, &["* Move A ( node1 -> node2 )", "* Restart B ( node1 ) due to required A start"]);
}

// ---------------------------------------------------------------------------
// Failures.

/// A started on node1 with `fails` monitor failures recorded `age` seconds ago.
fn failed_on_node1(meta: &[(&str, &str)], history: String, fails: &str, age: i64) -> Cfg {
    cib().rsc(&dummy("A", meta)).node("node1", ONLINE, &[history]).transient("fail-count-A#monitor_10000", fails)
        .transient("last-failure-A#monitor_10000", &(NOW - age).to_string()).node("node2", ONLINE, &[probed("A")])
}

#[test]
fn migration_threshold_moves_a_resource_away() {
    let c = failed_on_node1(&[("migration-threshold", "3")], running("A"), "3", 60);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &["* Move A ( node1 -> node2 )"]);
}

#[test]
fn failure_at_threshold_recovers_elsewhere() {
    let c = failed_on_node1(&[("migration-threshold", "3")], monitor_failed("A", 60), "3", 60);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): FAILED node1"], &["* Recover A ( node1 -> node2 )"]);
}

#[test]
fn expired_failure_is_cleared_and_forgotten() {
    let c = failed_on_node1(&[("migration-threshold", "3"), ("failure-timeout", "60s")], running("A"), "3", 120);
    let text = check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &[]);
    exec_pos(&text, "Cluster action: clear_failcount for A on node1");
}

#[test]
fn unexpired_failure_still_counts() {
    let c = failed_on_node1(&[("migration-threshold", "3"), ("failure-timeout", "60s")], running("A"), "3", 30);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1"], &["* Move A ( node1 -> node2 )"]);
}

#[test]
fn failed_start_moves_the_resource() {
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[hist("A", &[op("A", "start", 0, 1, 2, 60)])]).transient("fail-count-A#start_0", "INFINITY")
        .transient("last-failure-A#start_0", &(NOW - 60).to_string()).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): FAILED node1"], &["* Recover A ( node1 -> node2 )"]);
}

#[test]
fn failed_group_member_moves_the_whole_group() {
    let c = cib().default_meta("migration-threshold", "1").rsc(&group("G", &["G1", "G2"]))
        .node("node1", ONLINE, &[running("G1"), monitor_failed("G2", 60)]).transient("fail-count-G2#monitor_10000", "1")
        .transient("last-failure-G2#monitor_10000", &(NOW - 60).to_string()).node("node2", ONLINE, &[probed("G1"), probed("G2")]);
    let status = ["* Online: [ node1 node2 ]", "* G1 (ocf:heartbeat:Dummy): Started node1", "* G2 (ocf:heartbeat:Dummy): FAILED node1"];
    check(&c, &status, &["* Move G1 ( node1 -> node2 )", "* Recover G2 ( node1 -> node2 )"]);
}

fn with_on_fail(policy: &str) -> Cfg {
    let a = dummy("A", &[]).replace(r#"interval="10s""#, &format!(r#"interval="10s" on-fail="{policy}""#));
    cib().rsc(&a).node("node1", ONLINE, &[monitor_failed("A", 60)]).node("node2", ONLINE, &[probed("A")])
}

#[test]
fn on_fail_block_leaves_the_failure_blocked() {
    check(&with_on_fail("block"), &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): FAILED node1 (blocked)"], &[]);
}

#[test]
fn on_fail_stop_stops_the_resource() {
    check(&with_on_fail("stop"), &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): FAILED node1"], &["* Stop A ( node1 ) due to node availability"]);
}

#[test]
fn on_fail_ignore_keeps_it_running() {
    check(&with_on_fail("ignore"), &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1 (failure ignored)"], &[]);
}

#[test]
fn failed_stop_without_fencing_is_blocked() {
    let stop_failed = hist("A", &[op("A", "start", 0, 0, 2, 3600), op("A", "stop", 0, 1, 4, 60)]);
    let c = cib().rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[stop_failed]).node("node2", ONLINE, &[probed("A")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): FAILED node1 (blocked)"], &[]);
}

// ---------------------------------------------------------------------------
// Fencing.

fn lost_node2(action: &str) -> Cfg {
    fencing().prop("stonith-action", action).rsc(&fence_device("fence1")).rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[running("fence1"), probed("A")]).node("node2", LOST, &[probed("fence1"), running("A")])
}

const LOST_NODE2_STATUS: [&str; 4] =
    ["* Node node2: UNCLEAN (offline)", "* Online: [ node1 ]", "* fence1 (stonith:fence_dummy): Started node1", "* A (ocf:heartbeat:Dummy): Started node2 (UNCLEAN)"];

#[test]
fn lost_node_is_fenced_and_its_resource_moves() {
    let text = check(&lost_node2("reboot"), &LOST_NODE2_STATUS, &["* Fence (reboot) node2 'peer is no longer part of the cluster'", "* Move A ( node2 -> node1 )"]);
    assert!(exec_pos(&text, "Fencing node2 (reboot)") < exec_pos(&text, "A start on node1"), "{text}");
}

#[test]
fn stonith_action_off_is_used_for_fencing() {
    check(&lost_node2("off"), &LOST_NODE2_STATUS, &["* Fence (off) node2 'peer is no longer part of the cluster'", "* Move A ( node2 -> node1 )"]);
}

#[test]
fn clean_shutdown_is_not_fenced() {
    let c = fencing().rsc(&fence_device("fence1")).rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[running("fence1"), running("A")]).node("node2", DOWN, &[probed("fence1"), probed("A")]);
    check(&c, &["* Online: [ node1 ]", "* OFFLINE: [ node2 ]", "* fence1 (stonith:fence_dummy): Started node1", "* A (ocf:heartbeat:Dummy): Started node1"], &[]);
}

#[test]
fn group_on_a_lost_node_moves_after_fencing() {
    let c = fencing().rsc(&fence_device("fence1")).rsc(&group("G", &["G1", "G2"]))
        .node("node1", ONLINE, &[probed("fence1"), probed("G1"), probed("G2")]).node("node2", LOST, &[running("G1"), running("G2")])
        .node("node3", ONLINE, &[running("fence1"), probed("G1"), probed("G2")]);
    let status = [
        "* Node node2: UNCLEAN (offline)",
        "* Online: [ node1 node3 ]",
        "* fence1 (stonith:fence_dummy): Started node3",
        "* G1 (ocf:heartbeat:Dummy): Started node2 (UNCLEAN)",
        "* G2 (ocf:heartbeat:Dummy): Started node2 (UNCLEAN)",
    ];
    let summary = ["* Fence (reboot) node2 'peer is no longer part of the cluster'", "* Move G1 ( node2 -> node1 )", "* Move G2 ( node2 -> node1 )"];
    let text = check(&c, &status, &summary);
    assert!(exec_pos(&text, "Fencing node2 (reboot)") < exec_pos(&text, "G1 start on node1"), "{text}");
}

// ---------------------------------------------------------------------------
// Bad input: Cib::parse refuses it with one line naming what and where.

fn parse_error(xml: &str) -> String {
    let e = cib::Cib::parse(xml).err().unwrap_or_else(|| panic!("accepted:\n{xml}")).to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn malformed_xml_is_refused_with_its_line() {
    let xml = cib().rsc(&dummy("A", &[])).node("node1", ONLINE, &[]).xml().replace("</resources>", "</resourcez>");
    let line = xml.lines().position(|l| l.contains("</resourcez>")).unwrap() + 1;
    let e = parse_error(&xml);
    assert!(e.contains(&format!("line {line}")), "{e}");
}

#[test]
fn dangling_location_reference_is_refused() {
    let xml = cib().rsc(&dummy("A", &[])).con(&location("Nope", "node1", "100")).node("node1", ONLINE, &[]).xml();
    let line = xml.lines().position(|l| l.contains("<constraints>")).unwrap() + 1;
    let e = parse_error(&xml);
    assert!(e.contains("loc-Nope-node1") && e.contains("'Nope'") && e.contains(&format!("line {line}")), "{e}");
}

#[test]
fn duplicate_id_is_refused() {
    let e = parse_error(&cib().rsc(&dummy("A", &[])).rsc(&dummy("A", &[])).node("node1", ONLINE, &[]).xml());
    assert!(e.contains("duplicate id") && e.contains("'A'"), "{e}");
}

// Regressions: each of these once differed from crm_simulate (see the note on each name).
#[test]
fn regression_no_fence_device_leaves_everything_alone() {
    let c = fencing().rsc(&dummy("A", &[])).rsc(&dummy("B", &[]))
        .node("node1", ONLINE, &[probed("A"), probed("B")]).node("node2", LOST, &[running("A")]).node("node3", ONLINE, &[probed("A"), probed("B")]);
    check(&c, &["* Node node2: UNCLEAN (offline)", "* Online: [ node1 node3 ]", "* A (ocf:heartbeat:Dummy): Started node2 (UNCLEAN)", "* B (ocf:heartbeat:Dummy): Stopped"], &[]);
}

#[test]
fn regression_offline_node_thought_to_run_a_resource_is_fenced() {
    let c = fencing().rsc(&fence_device("fence1")).rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[running("fence1"), probed("A")]).node("node2", DOWN, &[probed("fence1"), running("A")]);
    check(&c, &["* Node node2: UNCLEAN (offline)", "* Online: [ node1 ]", "* fence1 (stonith:fence_dummy): Started node1", "* A (ocf:heartbeat:Dummy): Started node2 (UNCLEAN)"],
        &["* Fence (reboot) node2 'A is thought to be active there'", "* Move A ( node2 -> node1 )"]);
}

#[test]
fn regression_start_waits_for_a_probe_on_a_pending_node() {
    let c = fencing().rsc(&fence_device("fence1")).rsc(&dummy("A", &[]))
        .node("node1", PENDING, &[]).node("node2", ONLINE, &[running("fence1"), probed("A")]);
    check(&c, &["* Node node1: pending", "* Online: [ node2 ]", "* fence1 (stonith:fence_dummy): Started node2", "* A (ocf:heartbeat:Dummy): Stopped"], &["* Start A ( node2 ) blocked"]);
}

#[test]
fn regression_clone_instance_on_lost_node() {
    let clone = r#"<clone id="C"><primitive id="D" class="ocf" provider="heartbeat" type="Dummy"><operations><op id="D-mon" name="monitor" interval="10s"/></operations></primitive></clone>"#;
    let c = fencing().rsc(&fence_device("fence1")).rsc(clone)
        .node("node1", ONLINE, &[running("fence1"), running("D")]).node("node2", LOST, &[running("D")]).node("node3", ONLINE, &[probed("fence1"), running("D")]);
    check(&c, &["* Node node2: UNCLEAN (offline)", "* Online: [ node1 node3 ]", "* fence1 (stonith:fence_dummy): Started node1", "* D (ocf:heartbeat:Dummy): Started node2 (UNCLEAN)", "* Started: [ node1 node3 ]"],
        &["* Fence (reboot) node2 'peer is no longer part of the cluster'", "* Stop D:1 ( node2 ) due to node availability"]);
}

#[test]
fn regression_failed_stop_with_fencing() {
    let c = fencing().rsc(&fence_device("fence1")).rsc(&dummy("A", &[]))
        .node("node1", ONLINE, &[running("fence1"), hist("A", &[op("A", "start", 0, 0, 2, 3600), op("A", "stop", 0, 1, 4, 60)])])
        .node("node2", ONLINE, &[probed("fence1"), probed("A")]);
    check(&c, &["* Node node1: UNCLEAN (online)", "* Online: [ node2 ]", "* fence1 (stonith:fence_dummy): Started node1", "* A (ocf:heartbeat:Dummy): FAILED node1"],
        &["* Fence (reboot) node1 'A failed there'", "* Move fence1 ( node1 -> node2 )", "* Recover A ( node1 -> node2 )"]);
}

#[test]
fn regression_group_stickiness_is_the_sum_of_its_members() {
    let c = cib().default_meta("resource-stickiness", "30").rsc(&group("G", &["G1", "G2", "G3"])).con(&location("G", "node2", "70"))
        .node("node1", ONLINE, &[running("G1"), running("G2"), running("G3")]).node("node2", ONLINE, &[probed("G1"), probed("G2"), probed("G3")]);
    check(&c, &["* Online: [ node1 node2 ]", "* G1 (ocf:heartbeat:Dummy): Started node1", "* G2 (ocf:heartbeat:Dummy): Started node1", "* G3 (ocf:heartbeat:Dummy): Started node1"], &[]);
}

#[test]
fn regression_maintenance_node_keeps_its_resources() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[]))
        .node("node1", ONLINE, &[running("A"), probed("B")]).node_attr("maintenance", "true").node("node2", ONLINE, &[probed("A"), probed("B")]);
    check(&c, &["* Node node1: maintenance", "* Online: [ node2 ]", "* A (ocf:heartbeat:Dummy): Started node1 (unmanaged)", "* B (ocf:heartbeat:Dummy): Stopped"], &["* Start B ( node2 )"]);
}

#[test]
fn regression_no_quorum_policy_stop() {
    let c = cib().prop("no-quorum-policy", "stop").rsc(&dummy("A", &[])).node("node1", ONLINE, &[running("A")]).node("node2", ONLINE, &[]);
    let xml = c.xml().replace(r#"have-quorum="1""#, r#"have-quorum="0""#);
    if let Ok(dir) = std::env::var("BEHAVIOUR_DUMP") { std::fs::write(format!("{dir}/d8_no_quorum_policy_stop.xml"), &xml).unwrap(); }
    let parsed = cib::Cib::parse(&xml).unwrap();
    let text = scheduler::schedule(&parsed, now()).simulate_text();
    assert_eq!(block(&text, "Transition Summary:"), lines("* Stop A ( node1 ) due to no quorum"), "{text}");
}

#[test]
fn regression_asymmetric_order_does_not_restart_then() {
    let c = cib().rsc(&dummy("A", &[])).rsc(&dummy("B", &[])).con(&location("A", "node1", "-INFINITY"))
        .con(r#"<rsc_order id="o1" first="A" then="B" kind="Mandatory" symmetrical="false"/>"#)
        .node("node1", ONLINE, &[running("A"), running("B")]).node("node2", ONLINE, &[probed("A"), probed("B")]);
    check(&c, &["* Online: [ node1 node2 ]", "* A (ocf:heartbeat:Dummy): Started node1", "* B (ocf:heartbeat:Dummy): Started node1"], &["* Move A ( node1 -> node2 )"]);
}
