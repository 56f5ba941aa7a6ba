//! Two nodes with two_node (as `pcs cluster setup` writes for a two-node cluster, and
//! `halo sandbox create --nodes 2` does): the survivor fences its peer and takes over.
//!
//! A two-node sandbox with fence_sandbox and stonith-enabled=true runs ocf:heartbeat:Dummy
//! with a 1 s monitor; its node is killed (`halo sandbox kill`, SIGKILL: power loss). The
//! survivor stays quorate throughout (two_node: quorum is 1), fences its peer (its fencing
//! history shows the reboot before the Dummy is started on it), and starts the Dummy on
//! itself. fence_sandbox's reboot powers the peer on again: it rejoins (wait_for_all is met,
//! both nodes are seen) and is given nothing. A watcher samples the agents' state files of
//! the live nodes every 20 ms throughout: never two at once.

mod support;

use std::time::{Duration, Instant};

use support::resources::*;
use support::*;

const BOTH: [&str; 2] = ["node1", "node2"];

fn nodeid(node: &str) -> u64 {
    node.trim_start_matches("node").parse().unwrap()
}

#[test]
fn two_nodes_with_two_node_the_survivor_fences_its_peer_and_takes_over() {
    if skip_without_dummy() {
        return;
    }
    let t0 = Instant::now();
    let sb = Sandbox::create_cluster("two-node", 2);
    // What `pcs cluster setup` writes for two nodes: votequorum with two_node (which
    // implies wait_for_all).
    for n in BOTH {
        let conf = std::fs::read_to_string(sb.node_dir(n).join("corosync.conf")).unwrap();
        let quorum = conf.split("quorum {").nth(1).and_then(|q| q.split('}').next()).unwrap_or_else(|| panic!("no quorum section: {conf}"));
        assert!(quorum.contains("provider: corosync_votequorum") && quorum.contains("two_node: 1"), "{n}'s quorum section: {quorum}");
    }
    for n in BOTH {
        sb.start(n);
    }
    wait_formed(&sb, 2, Duration::from_secs(20));
    eprintln!("formation: {:?}", t0.elapsed());
    for n in BOTH {
        let q = sb.json(n, "quorum").expect("quorum status");
        assert_eq!((q["quorate"].as_bool(), q["quorum"].as_u64()), (Some(true), Some(1)), "{n}: {q}");
        assert_eq!((q["flags"]["two_node"].as_bool(), q["flags"]["wait_for_all"].as_bool()), (Some(true), Some(true)), "{n}: {q}");
    }

    let props = r#"<cluster_property_set id="test-options"><nvpair id="test-options-stonith-enabled" name="stonith-enabled" value="true"/></cluster_property_set>"#;
    let r = sb.halo("node1", &["cib", "create", "-o", "crm_config", "--xml", props]);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = sb.halo("node1", &["stonith", "create", "fs", "fence_sandbox", "pcmk_host_list=node1 node2"]);
    assert_eq!(r.code, 0, "stonith create: {}", r.err);
    let watcher = Watcher::start(&sb, &["d1"]);
    // Sticky (resource-stickiness=100, as `pcs resource defaults update` is often used): without
    // it the scheduler may move d1 back to the rebooted peer (equal scores go to the node with
    // fewer resources, and the fencing device counts), as Pacemaker does; not checked here.
    let dummy = r#"<primitive id="d1" class="ocf" provider="heartbeat" type="Dummy"><meta_attributes id="d1-meta"><nvpair id="d1-meta-stickiness" name="resource-stickiness" value="100"/></meta_attributes><operations><op id="d1-mon" name="monitor" interval="1s" timeout="20s"/></operations></primitive>"#;
    let r = sb.halo("node2", &["cib", "create", "-o", "resources", "--xml", dummy]);
    assert_eq!(r.code, 0, "{}", r.err);
    let first = wait_for(Duration::from_secs(20), "d1 started", || active_on(&sb, "d1").pop());
    let survivor = BOTH.iter().find(|n| **n != first).unwrap().to_string();
    let v = status_json_when(&sb, &survivor, "d1's start recorded", |v| has_role(v, "d1", "Started"));
    assert_eq!(rsc_json(&v, "d1")["nodes"], serde_json::json!([first]), "{v}");
    wait_for(Duration::from_secs(10), "d1's monitor recorded", || status_xml(&sb, &survivor).contains(r#"id="d1_monitor_1000""#).then_some(()));
    let dc = v["dc"].as_str().unwrap_or_default().to_string();
    let history = sb.halo(&survivor, &["stonith", "history"]).out;
    assert!(!history.contains("reboot of"), "a node was fenced before the kill: {history}");

    // Power loss of d1's node.
    let killed_at = Instant::now();
    sb.kill(&first);
    // Its /run is gone with its power (halod empties HA_RSCTMP when the node boots again;
    // removed here so the watcher never sees the old state file in that moment).
    let _ = std::fs::remove_file(state_file(&sb, &first, "d1"));
    let fenced = format!("reboot of {first} successful");
    let (mut quorum_samples, mut fenced_at, mut left_at) = (0u32, None, None);
    let started_at = loop {
        // The survivor never loses quorum (two_node).
        if let Some((quorate, members)) = sb.quorum(&survivor) {
            quorum_samples += 1;
            assert!(quorate, "{survivor} lost quorum {:?} after its peer was killed (members {members:?})", killed_at.elapsed());
            if members == [nodeid(&survivor)] && left_at.is_none() {
                left_at = Some(killed_at.elapsed());
            }
        }
        if fenced_at.is_none() && sb.halo(&survivor, &["stonith", "history", &first]).out.contains(&fenced) {
            fenced_at = Some(killed_at.elapsed());
        }
        if state_file(&sb, &survivor, "d1").exists() {
            // Nothing is recovered from a node before it is fenced.
            let h = sb.halo(&survivor, &["stonith", "history", &first]).out;
            assert!(h.contains(&fenced), "d1 started on {survivor} before {first} was fenced: {h}");
            break killed_at.elapsed();
        }
        let waited = killed_at.elapsed();
        assert!(
            waited < Duration::from_secs(30),
            "d1 not started on {survivor} within {waited:?} of {first}'s kill ({first} was DC: {}): alone in the ring after {left_at:?}, fenced: {fenced_at:?}; {survivor}'s CIB: {:?}; its fencing history: {:?}",
            dc == first,
            sb.halo(&survivor, &["cib", "status"]).out.split_whitespace().collect::<Vec<_>>().join(" "),
            sb.halo(&survivor, &["stonith", "history"]).out.trim(),
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let history = sb.halo(&survivor, &["stonith", "history", &first]).out;
    eprintln!(
        "{first} (DC: {}) killed: alone in the ring after {left_at:?}, fenced by {fenced_at:?}, d1 started on {survivor} after {started_at:?} ({quorum_samples} quorum samples, all quorate)",
        dc == first
    );
    eprintln!("fencing history of {survivor}: {}", history.trim());
    assert!(history.contains(&format!("delegate={survivor}")), "the survivor ran the fencing: {history}");
    let v = status_json_when(&sb, &survivor, "d1's start on the survivor recorded", |v| has_role(v, "d1", "Started") && rsc_json(v, "d1")["nodes"] == serde_json::json!([survivor]));
    assert!(v["quorate"] == true && v["dc"] == survivor.as_str(), "{v}");

    // fence_sandbox's reboot powers the peer on again: it rejoins (wait_for_all is met once
    // it sees the survivor) and is given nothing.
    wait_for(Duration::from_secs(30), "the fenced node back and joined", || {
        (halod_alive(&sb, &first) && status_xml(&sb, &survivor).matches(r#"join="member""#).count() == 2).then_some(())
    });
    sb.wait_quorum(&first, Duration::from_secs(10), "the rebooted node quorate with both", |q, m| q && m == [1, 2]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(active_on(&sb, "d1"), vec![survivor.clone()]);
    let again = sb.halo(&survivor, &["stonith", "history"]).out;
    assert_eq!(again.matches("reboot of").count(), 1, "fenced once: {again}");
    // The survivor took the CIB's votes alone to write while its peer was away; the peer
    // has its vote back once it rejoined, so either node can lose the other again.
    wait_for(Duration::from_secs(10), "both nodes CIB voters again", || {
        let s = sb.halo(&survivor, &["cib", "status"]).out;
        s.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["voters:", "1", "2"]).then_some(())
    });
    let twice = watcher.finish();
    assert!(twice.is_empty(), "d1 was active on two live nodes at once: {twice:?}");
    eprintln!("runtime {:?}", t0.elapsed());
}
