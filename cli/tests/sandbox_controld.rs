//! halo-controld on a three-node sandbox with fence_sandbox and stonith-enabled (the
//! default): ocf:heartbeat:Dummy with a 1 s monitor is started on one node; its state file
//! deleted, the monitor fails and it restarts in place with fail count 1; its node killed,
//! the node is fenced and the resource starts on a survivor; the controller of every node
//! killed in turn, the resource is untouched. A watcher samples the agents' state files of
//! the live nodes every 20 ms throughout: never two at once.

mod support;

use std::time::{Duration, Instant};

use support::resources::*;
use support::*;

#[test]
fn a_dummy_resource_is_kept_running_through_failures_and_never_runs_twice() {
    if skip_without_dummy() {
        return;
    }
    let sb = Sandbox::create_cluster("controld", 3);
    let t0 = Instant::now();
    for n in NODES {
        sb.start(n);
    }
    // Formation: a DC with every node joined.
    wait_formed(&sb, 3, Duration::from_secs(20));
    eprintln!("formation: {:?}", t0.elapsed());

    let r = sb.halo("node1", &["stonith", "create", "fs", "fence_sandbox", "pcmk_host_list=node1 node2 node3"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let dummy = r#"<primitive id="d1" class="ocf" provider="heartbeat" type="Dummy"><operations><op id="d1-mon" name="monitor" interval="1s" timeout="20s"/></operations></primitive>"#;
    let r = sb.halo("node2", &["cib", "create", "-o", "resources", "--xml", dummy]);
    assert_eq!(r.code, 0, "{}", r.err);
    let watcher = Watcher::start(&sb, &["d1"]);
    let first = wait_for(Duration::from_secs(20), "d1 started", || active_on(&sb, "d1").pop());
    // Its start and monitor are recorded with the DC's transition keys.
    wait_for(Duration::from_secs(10), "d1's monitor recorded", || status_xml(&sb, "node1").contains(r#"id="d1_monitor_1000""#).then_some(()));
    let s = status_xml(&sb, "node3");
    assert!(s.contains(r#"operation_key="d1_start_0""#) && s.contains("transition-key=") && s.contains("transition-magic="), "{s}");

    // The monitor fails: restarted in place, fail count 1.
    std::fs::remove_file(state_file(&sb, &first, "d1")).unwrap();
    wait_for(Duration::from_secs(10), "fail count 1", || status_xml(&sb, "node1").contains(r#"name="fail-count-d1#monitor_1000" value="1""#).then_some(()));
    let again = wait_for(Duration::from_secs(10), "d1 restarted", || active_on(&sb, "d1").pop());
    assert_eq!(again, first, "restarted in place");
    let s = status_xml(&sb, "node1");
    assert!(s.contains(r#"id="d1_last_failure_0""#), "{s}");
    // `halo status --output json`, the contract scripts rely on (once the restart's result,
    // which follows the agent's own state file, is recorded).
    let v = status_json_when(&sb, "node3", "d1's restart recorded", |v| has_role(v, "d1", "Started"));
    assert!(v["dc"].is_string() && v["quorate"] == true, "{v}");
    assert_eq!(v["nodes"].as_array().unwrap().iter().filter(|n| n["state"] == "online").count(), 3, "{v}");
    let d1 = v["resources"].as_array().unwrap().iter().find(|r| r["id"] == "d1").cloned().unwrap_or_default();
    assert_eq!((d1["agent"].as_str(), d1["role"].as_str(), d1["failcount"].as_i64()), (Some("ocf:heartbeat:Dummy"), Some("Started"), Some(1)), "{v}");
    assert_eq!(d1["nodes"], serde_json::json!([first]), "{v}");
    let failed = v["failed_actions"].as_array().unwrap();
    assert!(failed.iter().any(|f| f["resource"] == "d1" && f["op"] == "monitor" && f["interval_ms"] == 1000 && f["rc"] == 7), "{v}");
    let text = sb.halo("node1", &["status"]).out;
    assert!(text.contains("Current DC:") && text.contains("partition with quorum") && text.contains("* d1\t(ocf:heartbeat:Dummy):\t Started"), "{text}");
    // The DC's properties, as Pacemaker's DC writes them.
    assert!(text.contains("Stack: corosync") && text.contains(&format!("(version {}-halo) - partition with quorum", env!("CARGO_PKG_VERSION"))), "{text}");
    // The last configuration change is d1's creation, from node2 by the halo command.
    let last = text.lines().find(|l| l.contains("Last change:")).unwrap_or_default();
    assert!(last.contains(" 20") && last.ends_with(" via halo on node2"), "{text}");

    // The controllers killed one by one: respawned by halod, the resource left alone.
    for n in NODES {
        let before = std::fs::metadata(state_file(&sb, &first, "d1")).unwrap().modified().unwrap();
        let pid = sb.pid_of(n, "controld").expect("controld's pid file");
        // SAFETY: SIGKILL to a halo-controld of this sandbox (its pid file).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_for(Duration::from_secs(15), "controld respawned", || sb.pid_of(n, "controld").filter(|&p| p != pid && alive(p)).map(|_| ()));
        // Every node joined again under one DC.
        wait_for(Duration::from_secs(20), "all joined again", || (status_xml(&sb, "node1").matches(r#"join="member""#).count() == 3).then_some(()));
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(active_on(&sb, "d1"), vec![first.clone()], "after killing {n}'s controller");
        let after = std::fs::metadata(state_file(&sb, &first, "d1")).unwrap().modified().unwrap();
        assert_eq!(before, after, "d1 was restarted when {n}'s controller was killed");
    }

    // A resource whose agent is missing: its probes find it "not installed" on every node
    // (recorded, rc 5), so it is banned everywhere and never started, while d1 runs on. (crm_mon
    // does not list a probe's "not installed" among failed actions; neither does halo status.)
    let ghost = r#"<primitive id="ghost" class="ocf" provider="heartbeat" type="NoSuchAgent"/>"#;
    assert_eq!(sb.halo("node1", &["cib", "create", "-o", "resources", "--xml", ghost]).code, 0);
    wait_for(Duration::from_secs(15), "ghost's probes recorded", || (status_xml(&sb, "node1").matches(r#"id="ghost_last_failure_0" operation_key="ghost_monitor_0""#).count() == 3).then_some(()));
    assert_eq!(status_xml(&sb, "node1").matches(r#"operation_key="ghost_monitor_0" operation="monitor" crm-debug-origin="halo-execd" crm_feature_set="3.16.1" exit-reason="agent ocf:heartbeat:NoSuchAgent is not installed"#).count(), 6);
    let r = sb.halo("node1", &["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let ghost_role = v["resources"].as_array().unwrap().iter().find(|r| r["id"] == "ghost").map(|r| r["role"].clone());
    assert_eq!(ghost_role, Some(serde_json::json!("Stopped")), "{v}");
    assert_eq!(active_on(&sb, "d1"), vec![first.clone()]);
    assert_eq!(sb.halo("node1", &["cib", "delete", "--xml", r#"<primitive id="ghost"/>"#]).code, 0);

    // Its node is lost: fenced (fence_sandbox reboots it), then d1 starts on a survivor.
    let killed_at = Instant::now();
    sb.kill(&first);
    let moved = wait_for(Duration::from_secs(30), "d1 started elsewhere", || active_on(&sb, "d1").into_iter().find(|n| n != &first));
    eprintln!("failover of a node kill: {:?}", killed_at.elapsed());
    wait_for(Duration::from_secs(10), "the fencing recorded", || {
        let h = sb.halo(&moved, &["stonith", "history", &first]);
        h.out.contains(&format!("reboot of {first} successful")).then_some(())
    });
    // The rebooted node rejoins and is given nothing.
    wait_for(Duration::from_secs(30), "all joined after the reboot", || (status_xml(&sb, "node1").matches(r#"join="member""#).count() == 3).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(active_on(&sb, "d1"), vec![moved.clone()]);

    // A clean stop (`halo cluster stop`) of the node running d1: d1 is moved off first, the
    // node is not fenced.
    let fenced_before = sb.halo("node1", &["stonith", "history"]).out.lines().count();
    let stop_at = Instant::now();
    let r = sb.halo(&moved, &["cluster", "stop"]);
    assert_eq!(r.code, 0, "halo cluster stop: {}", r.err);
    assert!(!halod_alive(&sb, &moved), "halo cluster stop returned before the node stopped");
    eprintln!("clean stop of the node running d1: {:?}", stop_at.elapsed());
    let now_on = wait_for(Duration::from_secs(10), "d1 moved off the stopped node", || active_on(&sb, "d1").pop());
    assert_ne!(now_on, moved);
    assert!(!state_file(&sb, &moved, "d1").exists(), "d1 was stopped on {moved} before it went");
    let stopped = wait_for(Duration::from_secs(10), "the stopped node recorded as down", || {
        let s = status_xml(&sb, &now_on);
        s.contains(&format!(r#"uname="{moved}" in_ccm="false" crmd="offline" join="down" expected="down""#)).then_some(s)
    });
    assert!(!stopped.contains("name=\"shutdown\""), "down and its attributes gone in one write: {stopped}");
    std::thread::sleep(Duration::from_secs(2));
    let other = NODES.iter().find(|n| **n != moved && **n != now_on).unwrap();
    assert_eq!(sb.halo(other, &["stonith", "history"]).out.lines().count(), fenced_before, "nobody fenced the cleanly stopped node");
    assert_eq!(active_on(&sb, "d1"), vec![now_on]);
    let twice = watcher.finish();
    assert!(twice.is_empty(), "d1 was active on two live nodes at once: {twice:?}");
}

/// The promoted node of a clone, from `halo status --output json`.
fn promoted(sb: &Sandbox, asked: &str, rsc: &str) -> Option<String> {
    let r = sb.halo(asked, &["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).ok()?;
    let on: Vec<String> = v["resources"]
        .as_array()?
        .iter()
        .filter(|r| r["id"].as_str().is_some_and(|id| id.split(':').next() == Some(rsc)) && r["role"] == "Promoted")
        .flat_map(|r| r["nodes"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    (on.len() == 1).then(|| on[0].clone())
}

/// The tools agents call, as an agent calls them (the executor's links, HALO_CONFIG).
fn tool(sb: &Sandbox, node: &str, name: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(sb.node_dir(node).join("run").join("sbin").join(name))
        .args(args)
        .env("HALO_CONFIG", sb.node_dir(node).join("corosync.conf"))
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_promotable_clone_is_promoted_once_through_the_agents_own_scores_and_promotion_moves_with_its_node() {
    const STATEFUL: &str = "/usr/lib/ocf/resource.d/pacemaker/Stateful";
    if !have_loopback_aliases() || !std::path::Path::new(STATEFUL).exists() {
        eprintln!("skipped: needs 127.0.0.13 and {STATEFUL} (pacemaker-resource-agents)");
        return;
    }
    let sb = Sandbox::create_cluster("controld-promotable", 3);
    for n in NODES {
        sb.start(n);
    }
    wait_for(Duration::from_secs(20), "three nodes joined", || (status_xml(&sb, "node1").matches(r#"join="member""#).count() == 3).then_some(()));
    assert_eq!(sb.halo("node1", &["stonith", "create", "fs", "fence_sandbox", "pcmk_host_list=node1 node2 node3"]).code, 0);
    // The tools agents call.
    assert_eq!(tool(&sb, "node2", "crm_node", &["-n"]), (0, "node2".to_string()));
    assert_eq!(tool(&sb, "node2", "crm_node", &["-q"]), (0, "1".to_string()));
    assert_eq!(tool(&sb, "node2", "crm_attribute", &["-N", "node3", "-n", "rack", "-v", "r7", "-l", "forever"]).0, 0);
    assert_eq!(tool(&sb, "node1", "crm_attribute", &["-N", "node3", "-n", "rack", "-G", "-q"]), (0, "r7".to_string()));
    assert_eq!(tool(&sb, "node1", "crm_attribute", &["-N", "node3", "-n", "nosuch", "-G", "-q"]).0, 105);
    assert_eq!(tool(&sb, "node3", "attrd_updater", &["-n", "probe-me", "-U", "yes"]).0, 0);
    wait_for(Duration::from_secs(10), "a transient attribute through the DC", || status_xml(&sb, "node1").contains(r#"name="probe-me" value="yes""#).then_some(()));
    // The same through `halo attribute`, transient and permanent, on another node.
    assert_eq!(sb.halo("node1", &["attribute", "set", "tier", "gold", "--node", "node2"]).code, 0);
    wait_for(Duration::from_secs(10), "halo attribute set", || (sb.halo("node3", &["attribute", "query", "tier", "--node", "node2"]).out.trim() == "gold").then_some(()));
    assert_eq!(sb.halo("node1", &["attribute", "delete", "tier", "--node", "node2"]).code, 0);
    wait_for(Duration::from_secs(10), "halo attribute delete", || (sb.halo("node1", &["attribute", "query", "tier", "--node", "node2"]).code == 105).then_some(()));
    assert_eq!(sb.halo("node2", &["attribute", "set", "zone", "b", "--lifetime", "forever"]).code, 0);
    assert_eq!(sb.halo("node1", &["attribute", "query", "zone", "--node", "node2", "--lifetime", "forever"]).out.trim(), "b");

    let clone = r#"<clone id="st-clone"><meta_attributes id="st-clone-meta"><nvpair id="st-p" name="promotable" value="true"/></meta_attributes><primitive id="st" class="ocf" provider="pacemaker" type="Stateful"><operations><op id="st-mon-p" name="monitor" interval="1s" role="Promoted" timeout="20s"/><op id="st-mon-u" name="monitor" interval="2s" role="Unpromoted" timeout="20s"/></operations></primitive></clone>"#;
    assert_eq!(sb.halo("node1", &["cib", "create", "-o", "resources", "--xml", clone]).code, 0);
    let first = wait_for(Duration::from_secs(30), "one promoted instance", || promoted(&sb, "node1", "st"));
    // The agents set their own promotion scores (crm_attribute --promotion).
    let s = status_xml(&sb, "node1");
    assert_eq!(s.matches(r#"name="master-st""#).count(), 3, "{s}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(promoted(&sb, "node1", "st"), Some(first.clone()), "promotion is stable");
    sb.kill(&first);
    let other = NODES.iter().find(|n| **n != first).unwrap();
    let next = wait_for(Duration::from_secs(30), "promotion moved", || promoted(&sb, other, "st").filter(|n| *n != first));
    assert_ne!(next, first);
}

/// no-quorum-policy=stop (the default) without fencing: the node left alone when the two
/// others are killed has no quorum, and its controller, DC of its own partition, stops what
/// runs there (Pacemaker does the same; with fencing on it would wait to be fenced). Once a
/// second node is back, quorum returns and the resource runs again; never on two nodes.
#[test]
fn a_node_without_quorum_stops_its_resources_and_they_return_with_quorum() {
    if skip_without_dummy() {
        return;
    }
    let sb = Sandbox::create_cluster("controld-noquorum", 3);
    for n in NODES {
        sb.start(n);
    }
    wait_for(Duration::from_secs(20), "three nodes joined", || {
        let s = status_xml(&sb, "node1");
        (s.matches(r#"join="member""#).count() == 3).then_some(())
    });
    let props = r#"<cluster_property_set id="test-options"><nvpair id="test-options-stonith-enabled" name="stonith-enabled" value="false"/></cluster_property_set>"#;
    let r = sb.halo("node1", &["cib", "create", "-o", "crm_config", "--xml", props]);
    assert_eq!(r.code, 0, "{}", r.err);
    let dummy = r#"<primitive id="d1" class="ocf" provider="heartbeat" type="Dummy"><operations><op id="d1-mon" name="monitor" interval="1s" timeout="20s"/></operations></primitive>"#;
    let r = sb.halo("node1", &["cib", "create", "-o", "resources", "--xml", dummy]);
    assert_eq!(r.code, 0, "{}", r.err);
    let watcher = Watcher::start(&sb, &["d1"]);
    let on = wait_for(Duration::from_secs(20), "d1 started", || active_on(&sb, "d1").pop());
    let others: Vec<&str> = NODES.iter().copied().filter(|n| *n != on).collect();
    let lost_at = Instant::now();
    for n in &others {
        sb.kill(n);
    }
    wait_for(Duration::from_secs(20), "d1 stopped on the node left without quorum", || (!state_file(&sb, &on, "d1").exists()).then_some(()));
    eprintln!("alone without quorum, d1 stopped {:?} after the kills", lost_at.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    assert!(active_on(&sb, "d1").is_empty(), "nothing restarts d1 without quorum");
    sb.start(others[0]);
    let back = wait_for(Duration::from_secs(40), "d1 running again with quorum", || active_on(&sb, "d1").pop());
    eprintln!("quorum back: d1 runs on {back}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(active_on(&sb, "d1"), vec![back]);
    let twice = watcher.finish();
    assert!(twice.is_empty(), "d1 was active on two live nodes at once: {twice:?}");
}
