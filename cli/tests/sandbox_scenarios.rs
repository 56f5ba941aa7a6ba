//! Pacemaker's everyday scenarios on three-node sandboxes (fence_sandbox, stonith-enabled):
//! migration-threshold moving a failed resource away, standby and back, a group's start and
//! stop order, an order + colocation pair, a start that hangs past its timeout, shutdown-lock,
//! and every
//! daemon of the node running a resource killed in turn. Each test runs on its own cluster;
//! a watcher samples the agents' state files every 20 ms throughout: never two at once.
//!
//! The hung agent is a test-local OCF agent (`ocf:halotest:Probe`), found through
//! `HALO_AGENTS_DIR` (a directory that also links the checkout's `fence/` and `ocf/halo/`).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use support::resources::*;
use support::*;


fn skip() -> bool {
    skip_without_dummy()
}

fn cib_create(sb: &Sandbox, section: &str, xml: &str) {
    let r = sb.halo("node1", &["cib", "create", "-o", section, "--xml", xml]);
    assert_eq!(r.code, 0, "cib create {xml}: {} {}", r.out, r.err);
}

fn cib_modify(sb: &Sandbox, xml: &str) {
    let r = sb.halo("node1", &["cib", "modify", "--xml", xml]);
    assert_eq!(r.code, 0, "cib modify {xml}: {} {}", r.out, r.err);
}

/// One `lrm_rsc_op` record of the status section.
#[derive(Debug, Clone)]
struct Op {
    node: String,
    rsc: String,
    id: String,
    operation: String,
    call_id: i64,
    rc: i32,
    op_status: i32,
}

/// Every `lrm_rsc_op` of the status section as `asked` sees it.
fn ops(sb: &Sandbox, asked: &str) -> Vec<Op> {
    let s = status_xml(sb, asked);
    let Ok(doc) = cib::xml::parse(&s) else { return Vec::new() };
    let mut v = Vec::new();
    for ns in doc.root.iter_descendants().filter(|e| e.name == "node_state") {
        let node = ns.attr("uname").unwrap_or_default().to_string();
        for r in ns.iter_descendants().filter(|e| e.name == "lrm_resource") {
            for o in r.children_named("lrm_rsc_op") {
                let num = |k: &str| o.attr(k).and_then(|x| x.parse::<i64>().ok()).unwrap_or(-99);
                v.push(Op {
                    node: node.clone(),
                    rsc: r.id().unwrap_or_default().to_string(),
                    id: o.id().unwrap_or_default().to_string(),
                    operation: o.attr("operation").unwrap_or_default().to_string(),
                    call_id: num("call-id"),
                    rc: num("rc-code") as i32,
                    op_status: num("op-status") as i32,
                });
            }
        }
    }
    v
}

/// The record `<rsc>_last_0` of `rsc` on `node`, if it is a completed `operation`.
fn last_op(sb: &Sandbox, asked: &str, node: &str, rsc: &str, operation: &str) -> Option<Op> {
    ops(sb, asked).into_iter().find(|o| o.node == node && o.rsc == rsc && o.id == format!("{rsc}_last_0") && o.operation == operation && o.op_status == 0)
}

/// The transient attributes of `node` (fail counts among them) as `asked` sees them.
fn transient_attrs(sb: &Sandbox, asked: &str, node: &str) -> BTreeMap<String, String> {
    let s = status_xml(sb, asked);
    let Ok(doc) = cib::xml::parse(&s) else { return BTreeMap::new() };
    let mut m = BTreeMap::new();
    for ns in doc.root.iter_descendants().filter(|e| e.name == "node_state" && e.attr("uname") == Some(node)) {
        for ta in ns.children_named("transient_attributes") {
            for nv in ta.iter_descendants().filter(|e| e.name == "nvpair") {
                m.insert(nv.attr("name").unwrap_or_default().to_string(), nv.attr("value").unwrap_or_default().to_string());
            }
        }
    }
    m
}

/// Samples the state files until finished: every moment a resource was active on two live
/// nodes, and (when `keep` is set) every moment its state file was missing on that node.
/// A test-local OCF agent, Dummy-like (state in `$HA_RSCTMP/Dummy-<rsc>.state`), that logs
/// the begin and end of every action but monitor to `$HA_RSCTMP/ops.log` (nanoseconds),
/// sleeps `delay` seconds in start and stop, and hangs in start (TERM ignored, its pid in
/// `$HA_RSCTMP/hung-<rsc>.pid`) when `$HA_RSCTMP/hang-<rsc>` exists.
const PROBE_AGENT: &str = r#"#!/bin/sh
rsc="$OCF_RESOURCE_INSTANCE"
state="$HA_RSCTMP/Dummy-$rsc.state"
log() { echo "$(date +%s%N) $rsc $1 $2" >> "$HA_RSCTMP/ops.log"; }
case "$1" in
meta-data)
    cat <<'EOF'
<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="Probe" version="1.0">
<version>1.0</version>
<longdesc lang="en">halo's scenario tests' agent</longdesc>
<shortdesc lang="en">test agent</shortdesc>
<parameters>
<parameter name="delay" unique="0"><longdesc lang="en">seconds in start and stop</longdesc><shortdesc lang="en">delay</shortdesc><content type="string" default="0"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="stop" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s"/>
<action name="meta-data" timeout="5s"/>
<action name="validate-all" timeout="5s"/>
</actions>
</resource-agent>
EOF
    exit 0;;
start)
    log start begin
    if [ -e "$HA_RSCTMP/hang-$rsc" ]; then
        trap '' TERM
        echo $$ > "$HA_RSCTMP/hung-$rsc.pid"
        exec sleep 3600
    fi
    sleep "${OCF_RESKEY_delay:-0}"
    touch "$state"
    log start end
    exit 0;;
stop)
    log stop begin
    sleep "${OCF_RESKEY_delay:-0}"
    rm -f "$state"
    log stop end
    exit 0;;
monitor)
    [ -f "$state" ] && exit 0
    exit 7;;
validate-all)
    exit 0;;
*)
    exit 3;;
esac
"#;

/// An agents directory for `HALO_AGENTS_DIR`: the checkout's fence agents and ocf:halo:*,
/// and ocf:halotest:Probe.
fn agents_dir(sb: &Sandbox) -> PathBuf {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("agents");
    let dir = sb.dir.join("agents");
    std::fs::create_dir_all(dir.join("ocf").join("halotest")).unwrap();
    std::os::unix::fs::symlink(checkout.join("fence"), dir.join("fence")).unwrap();
    std::os::unix::fs::symlink(checkout.join("ocf").join("halo"), dir.join("ocf").join("halo")).unwrap();
    let agent = dir.join("ocf").join("halotest").join("Probe");
    std::fs::write(&agent, PROBE_AGENT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A formed three-node cluster with a fence_sandbox device; with `probe_agent` its nodes run
/// with an agents directory holding ocf:halotest:Probe.
fn cluster(name: &str, probe_agent: bool) -> Sandbox {
    let sb = Sandbox::create_cluster(name, 3);
    let t0 = Instant::now();
    if probe_agent {
        let dir = agents_dir(&sb);
        for n in NODES {
            let out = std::process::Command::new(HALO).args(["sandbox", "start"]).arg(&sb.dir).arg(n).env("HALO_AGENTS_DIR", &dir).output().unwrap();
            assert!(out.status.success(), "start {n}: {}", String::from_utf8_lossy(&out.stderr));
        }
    } else {
        for n in NODES {
            sb.start(n);
        }
    }
    wait_formed(&sb, 3, Duration::from_secs(20));
    let r = sb.halo("node1", &["stonith", "create", "fs", "fence_sandbox", "pcmk_host_list=node1 node2 node3"]);
    assert_eq!(r.code, 0, "stonith create: {}", r.err);
    eprintln!("{name}: formation {:?}", t0.elapsed());
    sb
}

fn dummy(id: &str, meta: &[(&str, &str)]) -> String {
    let meta = if meta.is_empty() {
        String::new()
    } else {
        let nv: String = meta.iter().map(|(k, v)| format!(r#"<nvpair id="{id}-meta-{k}" name="{k}" value="{v}"/>"#)).collect();
        format!(r#"<meta_attributes id="{id}-meta">{nv}</meta_attributes>"#)
    };
    format!(r#"<primitive id="{id}" class="ocf" provider="heartbeat" type="Dummy">{meta}<operations><op id="{id}-mon" name="monitor" interval="1s" timeout="20s"/></operations></primitive>"#)
}

fn assert_never_twice(w: Watcher) {
    let twice = w.finish();
    assert!(twice.is_empty(), "active on two live nodes at once: {:?}", &twice[..twice.len().min(10)]);
}

#[test]
fn migration_threshold_1_moves_a_failed_resource_away() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-migthr", false);
    let w = Watcher::start(&sb, &["d1"]);
    cib_create(&sb, "resources", &dummy("d1", &[("migration-threshold", "1")]));
    let first = wait_for(Duration::from_secs(20), "d1 started", || active_on(&sb, "d1").pop());
    wait_for(Duration::from_secs(10), "d1's monitor recorded", || {
        ops(&sb, "node1").iter().any(|o| o.node == first && o.id == "d1_monitor_1000" && o.rc == 0).then_some(())
    });

    let failed_at = Instant::now();
    std::fs::remove_file(state_file(&sb, &first, "d1")).unwrap();
    let moved = wait_for(Duration::from_secs(20), "d1 started on another node", || active_on(&sb, "d1").into_iter().find(|n| *n != first));
    eprintln!("monitor failure to started elsewhere: {:?}", failed_at.elapsed());
    wait_for(Duration::from_secs(10), "fail count 1 on the first node", || {
        (transient_attrs(&sb, "node2", &first).get("fail-count-d1#monitor_1000").map(String::as_str) == Some("1")).then_some(())
    });
    // The record of the failure, and the stop on the first node before the start elsewhere.
    let o = ops(&sb, "node3");
    assert!(o.iter().any(|o| o.node == first && o.id == "d1_last_failure_0" && o.operation == "monitor" && o.rc == 7), "{o:?}");
    wait_for(Duration::from_secs(10), "d1 stopped on the first node", || last_op(&sb, "node1", &first, "d1", "stop"));
    let v = status_json_when(&sb, "node2", "d1's start recorded", |v| has_role(v, "d1", "Started"));
    let d1 = rsc_json(&v, "d1");
    assert_eq!((d1["role"].as_str(), d1["failcount"].as_i64()), (Some("Started"), Some(1)), "{v}");
    assert_eq!(d1["nodes"], serde_json::json!([moved]), "{v}");
    assert!(
        v["failed_actions"].as_array().unwrap().iter().any(|f| f["resource"] == "d1" && f["op"] == "monitor" && f["node"] == first.as_str() && f["rc"] == 7),
        "{v}"
    );
    // It stays where it went (the first node is banned for it by its fail count).
    hold(Duration::from_secs(3), "d1 stays", || {
        let on = active_on(&sb, "d1");
        (on == vec![moved.clone()]).then_some(()).ok_or(format!("d1 on {on:?}, expected [{moved}]"))
    });
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

#[test]
fn standby_moves_a_resource_off_and_unstandby_brings_it_back() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-standby", false);
    let w = Watcher::start(&sb, &["d1"]);
    cib_create(&sb, "resources", &dummy("d1", &[("resource-stickiness", "0")]));
    cib_create(&sb, "constraints", r#"<rsc_location id="loc-d1" rsc="d1" node="node1" score="50"/>"#);
    wait_for(Duration::from_secs(20), "d1 started on node1 (its preference)", || (active_on(&sb, "d1") == ["node1"]).then_some(()));
    wait_for(Duration::from_secs(10), "d1's monitor on node1 recorded", || ops(&sb, "node1").iter().any(|o| o.node == "node1" && o.id == "d1_monitor_1000").then_some(()));

    let r = sb.halo("node2", &["node", "standby", "node1"]);
    assert_eq!(r.code, 0, "node standby: {} {}", r.out, r.err);
    let at = Instant::now();
    let moved = wait_for(Duration::from_secs(20), "d1 moved off node1", || {
        let on = active_on(&sb, "d1");
        (on.len() == 1 && on[0] != "node1").then(|| on[0].clone())
    });
    eprintln!("standby to started elsewhere: {:?}", at.elapsed());
    let v = status_json(&sb, "node3");
    let n1 = v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "node1").cloned().unwrap();
    assert_eq!((n1["standby"].as_bool(), n1["state"].as_str()), (Some(true), Some("online")), "{v}");
    hold(Duration::from_secs(2), "d1 stays off node1 while it is in standby", || {
        let on = active_on(&sb, "d1");
        (on == vec![moved.clone()]).then_some(()).ok_or(format!("d1 on {on:?}"))
    });

    let r = sb.halo("node2", &["node", "unstandby", "node1"]);
    assert_eq!(r.code, 0, "node unstandby: {} {}", r.out, r.err);
    let at = Instant::now();
    wait_for(Duration::from_secs(20), "d1 back on node1", || (active_on(&sb, "d1") == ["node1"]).then_some(()));
    eprintln!("unstandby to back on node1: {:?}", at.elapsed());
    wait_for(Duration::from_secs(10), "d1 stopped on the node it had moved to", || last_op(&sb, "node1", &moved, "d1", "stop"));
    let v = status_json(&sb, "node3");
    let n1 = v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "node1").cloned().unwrap();
    assert_eq!(n1["standby"].as_bool(), Some(false), "{v}");
    assert_eq!(rsc_json(&v, "d1")["nodes"], serde_json::json!(["node1"]), "{v}");
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

#[test]
fn shutdown_lock_keeps_a_resource_on_its_cleanly_stopped_node_until_it_returns() {
    // CONTROLLER-NOTES §11, scenario 32.
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-shutlock", false);
    let w = Watcher::start(&sb, &["d1"]);
    cib_create(&sb, "crm_config", r#"<cluster_property_set id="sl"><nvpair id="sl-on" name="shutdown-lock" value="true"/></cluster_property_set>"#);
    cib_create(&sb, "resources", &dummy("d1", &[]));
    let first = wait_for(Duration::from_secs(20), "d1 started", || active_on(&sb, "d1").pop());
    wait_for(Duration::from_secs(10), "d1's monitor recorded", || ops(&sb, "node1").iter().any(|o| o.node == first && o.id == "d1_monitor_1000").then_some(()));
    let other = NODES.iter().find(|n| **n != first).unwrap().to_string();

    let r = sb.halo(&first, &["cluster", "stop"]);
    assert_eq!(r.code, 0, "halo cluster stop: {}", r.err);
    assert!(!state_file(&sb, &first, "d1").exists(), "d1 was stopped on {first} before it went");
    // Locked to its node: stopped, not started elsewhere, and shown so.
    wait_for(Duration::from_secs(10), "d1 shown locked", || {
        let out = sb.halo(&other, &["status"]).out;
        out.contains(&format!("Stopped {first} (LOCKED)")).then_some(())
    });
    hold(Duration::from_secs(3), "d1 stays stopped while its node is away", || {
        let on = active_on(&sb, "d1");
        on.is_empty().then_some(()).ok_or(format!("d1 started on {on:?}"))
    });
    // Its node returns: d1 starts there, and the lock is gone.
    sb.start(&first);
    let at = Instant::now();
    wait_for(Duration::from_secs(30), "d1 back on its node", || (active_on(&sb, "d1") == [first.clone()]).then_some(()));
    eprintln!("node back to d1 started there: {:?}", at.elapsed());
    wait_for(Duration::from_secs(10), "the lock cleared", || {
        let s = status_xml(&sb, &other);
        s.split(r#"shutdown-lock=""#).skip(1).all(|rest| rest.starts_with("0\"")).then_some(())
    });
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

#[test]
fn a_group_starts_in_order_and_stops_in_reverse() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-group", false);
    let w = Watcher::start(&sb, &["a", "b", "c"]);
    let members: String = ["a", "b", "c"].iter().map(|m| dummy(m, &[])).collect();
    cib_create(&sb, "resources", &format!(r#"<group id="g">{members}</group>"#));
    let node = wait_for(Duration::from_secs(30), "a, b and c started on one node", || {
        let on: Vec<Vec<String>> = ["a", "b", "c"].iter().map(|r| active_on(&sb, r)).collect();
        (on.iter().all(|v| v.len() == 1) && on[0] == on[1] && on[1] == on[2]).then(|| on[0][0].clone())
    });
    let starts = wait_for(Duration::from_secs(10), "the three starts recorded", || {
        let s: Vec<Op> = ["a", "b", "c"].iter().filter_map(|r| last_op(&sb, "node1", &node, r, "start")).collect();
        (s.len() == 3).then_some(s)
    });
    let ids: Vec<i64> = starts.iter().map(|o| o.call_id).collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "start call ids on {node} not in the order a, b, c: {starts:?}");
    // Dummy touches its state file at the end of its start: the files' times are in order.
    let mtimes: Vec<SystemTime> = ["a", "b", "c"].iter().map(|r| std::fs::metadata(state_file(&sb, &node, r)).unwrap().modified().unwrap()).collect();
    assert!(mtimes[0] < mtimes[1] && mtimes[1] < mtimes[2], "state files not created in the order a, b, c: {mtimes:?}");
    let v = status_json(&sb, "node2");
    for r in ["a", "b", "c"] {
        assert_eq!(rsc_json(&v, r)["nodes"], serde_json::json!([node]), "{v}");
    }

    // target-role=Stopped on the group: c, b, a stop, in that order.
    cib_modify(&sb, r#"<group id="g"><meta_attributes id="g-meta"><nvpair id="g-meta-target-role" name="target-role" value="Stopped"/></meta_attributes></group>"#);
    wait_for(Duration::from_secs(20), "a, b and c stopped", || ["a", "b", "c"].iter().all(|r| active_on(&sb, r).is_empty()).then_some(()));
    let stops = wait_for(Duration::from_secs(10), "the three stops recorded", || {
        let s: Vec<Op> = ["a", "b", "c"].iter().filter_map(|r| last_op(&sb, "node1", &node, r, "stop")).collect();
        (s.len() == 3).then_some(s)
    });
    let ids: Vec<i64> = stops.iter().map(|o| o.call_id).collect();
    assert!(ids[2] < ids[1] && ids[1] < ids[0], "stop call ids on {node} not in the order c, b, a: {stops:?}");
    let v = status_json(&sb, "node3");
    for r in ["a", "b", "c"] {
        assert_eq!(rsc_json(&v, r)["role"], "Stopped", "{v}");
    }
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

/// The begin and end lines of `$HA_RSCTMP/ops.log` on `node`: (time ns, rsc, action, phase).
fn op_log(sb: &Sandbox, node: &str) -> Vec<(u128, String, String, String)> {
    let s = std::fs::read_to_string(sb.node_dir(node).join("run").join("rsctmp").join("ops.log")).unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4).then(|| (f[0].parse().unwrap_or(0), f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

fn log_time(log: &[(u128, String, String, String)], rsc: &str, action: &str, phase: &str) -> Option<u128> {
    log.iter().rev().find(|(_, r, a, p)| r == rsc && a == action && p == phase).map(|e| e.0)
}

fn target_role(id: &str, role: &str) -> String {
    format!(r#"<primitive id="{id}"><meta_attributes id="{id}-meta"><nvpair id="{id}-meta-target-role" name="target-role" value="{role}"/></meta_attributes></primitive>"#)
}

/// ocf:halotest:Probe, created stopped (target-role=Stopped).
fn probe(id: &str, delay: &str, start_timeout: &str) -> String {
    probe_xml(id, delay, start_timeout, &format!(r#"<meta_attributes id="{id}-meta"><nvpair id="{id}-meta-target-role" name="target-role" value="Stopped"/></meta_attributes>"#))
}

fn probe_xml(id: &str, delay: &str, start_timeout: &str, meta: &str) -> String {
    format!(
        r#"<primitive id="{id}" class="ocf" provider="halotest" type="Probe">{meta}<instance_attributes id="{id}-ia"><nvpair id="{id}-delay" name="delay" value="{delay}"/></instance_attributes><operations><op id="{id}-start" name="start" interval="0s" timeout="{start_timeout}"/><op id="{id}-mon" name="monitor" interval="1s" timeout="20s"/></operations></primitive>"#
    )
}

#[test]
fn a_group_of_slow_members_never_overlaps_its_starts_or_its_stops() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-group-slow", true);
    let w = Watcher::start(&sb, &["a", "b", "c"]);
    // Each start and stop takes 0.3 s: a member that did not wait for the one before would overlap it.
    let members: String = ["a", "b", "c"].iter().map(|m| probe_xml(m, "0.3", "20s", "")).collect();
    cib_create(&sb, "resources", &format!(r#"<group id="g">{members}</group>"#));
    let node = wait_for(Duration::from_secs(30), "a, b and c started on one node", || {
        let on: Vec<Vec<String>> = ["a", "b", "c"].iter().map(|r| active_on(&sb, r)).collect();
        (on.iter().all(|v| v.len() == 1) && on[0] == on[1] && on[1] == on[2]).then(|| on[0][0].clone())
    });
    let log = op_log(&sb, &node);
    let t = |r: &str, a: &str, p: &str| log_time(&log, r, a, p).unwrap_or_else(|| panic!("no {r} {a} {p} in {log:?}"));
    assert!(t("a", "start", "end") < t("b", "start", "begin"), "b's start began before a's ended: {log:?}");
    assert!(t("b", "start", "end") < t("c", "start", "begin"), "c's start began before b's ended: {log:?}");
    cib_modify(&sb, r#"<group id="g"><meta_attributes id="g-meta"><nvpair id="g-meta-target-role" name="target-role" value="Stopped"/></meta_attributes></group>"#);
    wait_for(Duration::from_secs(20), "a, b and c stopped", || ["a", "b", "c"].iter().all(|r| active_on(&sb, r).is_empty()).then_some(()));
    // The stop of a (the last) is logged before its state file goes; wait for its end line.
    let log = wait_for(Duration::from_secs(5), "a's stop logged", || {
        let log = op_log(&sb, &node);
        log_time(&log, "a", "stop", "end").map(|_| log)
    });
    let t = |r: &str, a: &str, p: &str| log_time(&log, r, a, p).unwrap_or_else(|| panic!("no {r} {a} {p} in {log:?}"));
    assert!(t("c", "stop", "end") < t("b", "stop", "begin"), "b's stop began before c's ended: {log:?}");
    assert!(t("b", "stop", "end") < t("a", "stop", "begin"), "a's stop began before b's ended: {log:?}");
    for n in NODES.iter().filter(|n| **n != node) {
        let other = op_log(&sb, n);
        assert!(other.is_empty(), "actions ran on {n}: {other:?}");
    }
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

#[test]
fn an_order_and_colocation_pair_starts_together_in_order() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-order", true);
    let w = Watcher::start(&sb, &["x", "y"]);
    // y first in the configuration, so nothing but the constraint puts x first; each start
    // takes 0.5 s, so a start of y that did not wait for x's would overlap it. Both created
    // stopped (halo refuses constraints naming unknown resources), then y and x let start.
    cib_create(&sb, "resources", &probe("y", "0.5", "20s"));
    cib_create(&sb, "resources", &probe("x", "0.5", "20s"));
    cib_create(&sb, "constraints", r#"<rsc_order id="o-x-y" first="x" then="y" kind="Mandatory"/>"#);
    cib_create(&sb, "constraints", r#"<rsc_colocation id="c-y-x" rsc="y" with-rsc="x" score="INFINITY"/>"#);
    for r in ["y", "x"] {
        cib_modify(&sb, &target_role(r, "Started"));
    }
    let node = wait_for(Duration::from_secs(30), "x and y started on one node", || {
        let (x, y) = (active_on(&sb, "x"), active_on(&sb, "y"));
        (x.len() == 1 && x == y).then(|| x[0].clone())
    });
    let (sx, sy) = wait_for(Duration::from_secs(10), "the two starts recorded", || {
        Some((last_op(&sb, "node1", &node, "x", "start")?, last_op(&sb, "node1", &node, "y", "start")?))
    });
    assert!(sx.call_id < sy.call_id, "y's start (call {}) not after x's (call {}) on {node}", sy.call_id, sx.call_id);
    let log = op_log(&sb, &node);
    let x_end = log_time(&log, "x", "start", "end").expect("x's start logged");
    let y_begin = log_time(&log, "y", "start", "begin").expect("y's start logged");
    assert!(y_begin > x_end, "y's start began {} ms before x's start ended: {log:?}", (x_end - y_begin) / 1_000_000);
    // Neither ran anywhere else (probes only).
    for n in NODES.iter().filter(|n| **n != node) {
        let other = op_log(&sb, n);
        assert!(other.is_empty(), "actions ran on {n}: {other:?}");
    }

    // x stopped (target-role): y, which needs x, stops first.
    cib_modify(&sb, &target_role("x", "Stopped"));
    wait_for(Duration::from_secs(20), "x and y stopped", || (active_on(&sb, "x").is_empty() && active_on(&sb, "y").is_empty()).then_some(()));
    let log = op_log(&sb, &node);
    let y_end = log_time(&log, "y", "stop", "end").expect("y's stop logged");
    let x_begin = log_time(&log, "x", "stop", "begin").expect("x's stop logged");
    assert!(x_begin > y_end, "x's stop began before y's stop ended: {log:?}");
    let (px, py) = wait_for(Duration::from_secs(10), "the two stops recorded", || {
        Some((last_op(&sb, "node1", &node, "x", "stop")?, last_op(&sb, "node1", &node, "y", "stop")?))
    });
    assert!(py.call_id < px.call_id, "x's stop (call {}) not after y's (call {})", px.call_id, py.call_id);
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

#[test]
fn a_start_that_hangs_past_its_timeout_is_failed_and_recovered_elsewhere() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-hang", true);
    let w = Watcher::start(&sb, &["h"]);
    // node1 preferred, and there h's start hangs (TERM ignored): its timeout is 2 s.
    std::fs::write(sb.node_dir("node1").join("run").join("rsctmp").join("hang-h"), "").unwrap();
    cib_create(&sb, "resources", &probe("h", "0", "2s"));
    cib_create(&sb, "constraints", r#"<rsc_location id="loc-h" rsc="h" node="node1" score="100"/>"#);
    let created = Instant::now();
    cib_modify(&sb, &target_role("h", "Started"));
    let hung = wait_for(Duration::from_secs(20), "h's start running on node1", || {
        std::fs::read_to_string(sb.node_dir("node1").join("run").join("rsctmp").join("hung-h.pid")).ok()?.trim().parse::<i32>().ok()
    });
    let moved = wait_for(Duration::from_secs(30), "h started on another node", || active_on(&sb, "h").into_iter().find(|n| n != "node1"));
    eprintln!("created to recovered elsewhere: {:?}", created.elapsed());
    // The hung agent was killed (SIGTERM ignored: SIGKILL).
    wait_for(Duration::from_secs(5), "the hung start killed", || (!alive(hung)).then_some(()));
    // The timeout recorded, fail count INFINITY on node1 (start-failure-is-fatal).
    wait_for(Duration::from_secs(10), "fail count INFINITY on node1", || {
        (transient_attrs(&sb, "node2", "node1").get("fail-count-h#start_0").map(String::as_str) == Some("INFINITY")).then_some(())
    });
    let o = ops(&sb, "node3");
    let fail = o.iter().find(|o| o.node == "node1" && o.id == "h_last_failure_0").unwrap_or_else(|| panic!("no h_last_failure_0 on node1: {o:?}"));
    assert_eq!((fail.operation.as_str(), fail.op_status), ("start", 2), "the failure is a timed out start: {fail:?}");
    let v = status_json_when(&sb, "node3", "h's start recorded", |v| has_role(v, "h", "Started"));
    let h = rsc_json(&v, "h");
    assert_eq!((h["role"].as_str(), h["nodes"].clone()), (Some("Started"), serde_json::json!([moved])), "{v}");
    assert!(h["failcount"].as_i64().unwrap_or(0) >= 1_000_000, "failcount INFINITY: {v}");
    assert!(
        v["failed_actions"].as_array().unwrap().iter().any(|f| f["resource"] == "h" && f["op"] == "start" && f["node"] == "node1" && f["status"] == "Timed Out" && f["rc"] == 1),
        "a timed out start among the failed actions: {v}"
    );
    // Stopped on node1 after the failed start (the stop is what makes the move safe).
    wait_for(Duration::from_secs(10), "h stopped on node1", || last_op(&sb, "node1", "node1", "h", "stop"));
    hold(Duration::from_secs(3), "h stays off node1", || {
        let on = active_on(&sb, "h");
        (on == vec![moved.clone()]).then_some(()).ok_or(format!("h on {on:?}"))
    });
    let log = op_log(&sb, "node1");
    assert_eq!(log.iter().filter(|e| e.2 == "start" && e.3 == "begin").count(), 1, "one start tried on node1: {log:?}");
    // The stop on node1 ended before the start elsewhere began (one host: one clock).
    let stopped = log_time(&log, "h", "stop", "end").expect("h's stop on node1 logged");
    let started = log_time(&op_log(&sb, &moved), "h", "start", "begin").expect("h's start logged");
    assert!(stopped < started, "h started on {moved} {} ms before its stop on node1 ended", (stopped - started) / 1_000_000);

    // The agent fixed on node1 and the failure cleaned up: h goes back to node1 (its preference).
    std::fs::remove_file(sb.node_dir("node1").join("run").join("rsctmp").join("hang-h")).unwrap();
    let r = sb.halo("node2", &["resource", "cleanup", "h"]);
    assert_eq!(r.code, 0, "resource cleanup h: {} {}", r.out, r.err);
    let at = Instant::now();
    wait_for(Duration::from_secs(20), "h back on node1 after the cleanup", || (active_on(&sb, "h") == ["node1"]).then_some(()));
    eprintln!("cleanup to back on node1: {:?}", at.elapsed());
    let v = wait_for(Duration::from_secs(10), "h's failure forgotten", || {
        let v = status_json(&sb, "node3");
        let h = rsc_json(&v, "h");
        let failed = v["failed_actions"].as_array().unwrap().iter().any(|f| f["resource"] == "h");
        (h["failcount"] == 0 && !failed && !transient_attrs(&sb, "node3", "node1").contains_key("fail-count-h#start_0")).then_some(v)
    });
    assert_eq!(rsc_json(&v, "h")["nodes"], serde_json::json!(["node1"]), "{v}");
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

#[test]
fn every_daemon_of_the_resources_node_killed_in_turn_leaves_it_running() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-kill", false);
    let w = Watcher::start(&sb, &["d1"]);
    cib_create(&sb, "resources", &dummy("d1", &[]));
    let first = wait_for(Duration::from_secs(20), "d1 started", || active_on(&sb, "d1").pop());
    let start = wait_for(Duration::from_secs(10), "d1's start and monitor recorded", || {
        let o = ops(&sb, "node1");
        let s = o.iter().find(|o| o.node == first && o.id == "d1_last_0" && o.operation == "start" && o.rc == 0)?.clone();
        o.iter().any(|o| o.node == first && o.id == "d1_monitor_1000" && o.rc == 0).then_some(s)
    });
    let mtime = std::fs::metadata(state_file(&sb, &first, "d1")).unwrap().modified().unwrap();
    w.keep(&first, "d1");
    let mut notes = Vec::new();
    for daemon in ["cibd", "execd", "fenced", "controld"] {
        let pid = sb.pid_of(&first, daemon).unwrap_or_else(|| panic!("{daemon}'s pid file"));
        let at = Instant::now();
        // SAFETY: SIGKILL to a daemon of this sandbox (its pid file).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let new = wait_for(Duration::from_secs(15), &format!("{daemon} respawned"), || sb.pid_of(&first, daemon).filter(|&p| p != pid && alive(p)));
        let respawned = at.elapsed();
        // Time for the cluster to notice (a lost connection, a controller away) before it settles.
        std::thread::sleep(Duration::from_secs(3));
        // The cluster settles: every node joined under one DC again, d1's monitor recorded.
        wait_for(Duration::from_secs(25), &format!("all joined again after killing {daemon}"), || {
            let s = status_xml(&sb, "node1");
            (s.matches(r#"join="member""#).count() == 3).then_some(())
        });
        wait_for(Duration::from_secs(15), &format!("d1's monitor on {first} recorded after killing {daemon}"), || {
            ops(&sb, "node1").iter().any(|o| o.node == first && o.id == "d1_monitor_1000" && o.rc == 0).then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        let last = ops(&sb, "node1").into_iter().find(|o| o.node == first && o.id == "d1_last_0");
        notes.push(format!("{daemon}: pid {pid} -> {new} in {respawned:?}; d1_last_0 on {first} now {last:?}"));
        assert_eq!(active_on(&sb, "d1"), vec![first.clone()], "d1 moved after killing {first}'s {daemon}");
        assert!(w.gaps().is_empty(), "d1's state file went missing on {first} after killing {daemon}: {:?}", w.gaps());
        let now = std::fs::metadata(state_file(&sb, &first, "d1")).unwrap().modified().unwrap();
        assert_eq!(mtime, now, "d1 was started again on {first} after killing its {daemon}");
        let last = last.unwrap_or_else(|| panic!("no d1_last_0 on {first} after killing {daemon}"));
        // The start's record stays; after a new executor the node's history is a probe
        // that found d1 running (as after Pacemaker's executor restarts), never a new start.
        let kept = last.operation == "start" && last.call_id == start.call_id;
        let reprobed = last.operation == "monitor" && last.rc == 0;
        assert!(kept || reprobed, "d1's history on {first} after killing {daemon}: {last:?} (the start was {start:?})");
    }
    for n in &notes {
        eprintln!("{n}");
    }
    let fenced_before = sb.halo("node1", &["stonith", "history"]).out;
    assert!(!fenced_before.contains("reboot of"), "a node was fenced while daemons were killed: {fenced_before}");
    // The monitor still watches d1 after all of that: a failure is seen and d1 restarted in place.
    w.unkeep();
    std::fs::remove_file(state_file(&sb, &first, "d1")).unwrap();
    wait_for(Duration::from_secs(10), "the monitor failure seen after the kills", || {
        transient_attrs(&sb, "node1", &first).contains_key("fail-count-d1#monitor_1000").then_some(())
    });
    wait_for(Duration::from_secs(15), "d1 restarted in place", || (active_on(&sb, "d1") == vec![first.clone()]).then_some(()));
    assert!(w.twice().is_empty(), "d1 active twice: {:?}", w.twice());
    eprintln!("runtime before membershipd: {:?}", t0.elapsed());

    // halo-membershipd: the node may leave the ring. Whatever happens, d1 is never active twice.
    let mtime = std::fs::metadata(state_file(&sb, &first, "d1")).unwrap().modified().unwrap();
    let pid = sb.pid_of(&first, "membershipd").expect("membershipd's pid file");
    let at = Instant::now();
    // SAFETY: SIGKILL to a daemon of this sandbox (its pid file).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let new = wait_for(Duration::from_secs(15), "membershipd respawned", || sb.pid_of(&first, "membershipd").filter(|&p| p != pid && alive(p)));
    eprintln!("membershipd: pid {pid} -> {new} in {:?}", at.elapsed());
    let other = NODES.iter().find(|n| **n != first).unwrap();
    wait_for(Duration::from_secs(40), "all joined again after killing membershipd", || {
        let s = status_xml(&sb, other);
        (s.matches(r#"join="member""#).count() == 3 && !active_on(&sb, "d1").is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let history = sb.halo(other, &["stonith", "history"]).out;
    let on = active_on(&sb, "d1");
    let untouched = on == vec![first.clone()] && std::fs::metadata(state_file(&sb, &first, "d1")).ok().and_then(|m| m.modified().ok()) == Some(mtime);
    eprintln!("after killing {first}'s membershipd ({:?}): d1 on {on:?}, untouched: {untouched}; fencing history: {history:?}", at.elapsed());
    assert!(
        untouched || history.contains(&format!("reboot of {first}")),
        "killing membershipd restarted or moved d1 (now on {on:?}) without fencing {first}: {history}"
    );
    assert_never_twice(w);
    eprintln!("runtime {:?}", t0.elapsed());
}

#[test]
fn a_node_told_it_was_fenced_stops_its_resources_and_stays_down() {
    // CONTROLLER-NOTES §5.7 (fence-reaction=stop): an administrator confirms node3 fenced
    // while it still runs (as fabric fencing or a mistaken confirmation would leave it).
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let sb = cluster("sc-selffence", false);
    cib_create(&sb, "resources", &dummy("d1", &[]));
    cib_create(&sb, "constraints", r#"<rsc_location id="loc-d1" rsc="d1" node="node3" score="100"/>"#);
    wait_for(Duration::from_secs(20), "d1 started on node3", || (active_on(&sb, "d1") == ["node3"]).then_some(()));
    wait_for(Duration::from_secs(10), "d1's monitor on node3 recorded", || ops(&sb, "node1").iter().any(|o| o.node == "node3" && o.id == "d1_monitor_1000").then_some(()));

    let r = sb.halo("node1", &["stonith", "confirm", "node3"]);
    assert_eq!(r.code, 0, "stonith confirm: {} {}", r.out, r.err);
    let at = Instant::now();
    // node3 stops d1 itself, and its halod stops every daemon and does not come back.
    wait_for(Duration::from_secs(20), "node3's halod gone", || (!halod_alive(&sb, "node3")).then_some(()));
    eprintln!("confirmation to node3 down: {:?}", at.elapsed());
    assert!(!state_file(&sb, "node3", "d1").exists(), "d1 still runs on node3");
    let log: String = ["log/halo.log", "halod.out"].iter().map(|f| std::fs::read_to_string(sb.node_dir("node3").join(f)).unwrap_or_default()).collect();
    assert!(log.contains("we were allegedly just fenced by node1 for node1"), "node3's log says why it stopped");
    assert!(log.contains("controld exited fatally"), "halod says why it stopped the node");
    // The others recover d1 (the DC recorded node3 fenced from the fencer's notice).
    let moved = wait_for(Duration::from_secs(20), "d1 started on node1 or node2", || active_on(&sb, "d1").pop());
    assert_ne!(moved, "node3");
    hold(Duration::from_secs(2), "node3 stays down", || (!halod_alive(&sb, "node3")).then_some(()).ok_or("node3's halod is back".into()));
    eprintln!("runtime {:?}", t0.elapsed());
}
