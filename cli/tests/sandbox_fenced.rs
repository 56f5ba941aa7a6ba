//! halo-fenced on a three-node sandbox: the fencers work as one. A device started on node1
//! (by node1's executor, which registers it with node1's fencer) fences node3 when node2
//! asks; two concurrent requests from two nodes fence node3 once; every survivor's history
//! agrees; a node no other node's device can fence is refused; a fencer that comes back
//! learns the history from the others.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::execd as pb;
use proto::execd::executor_client::ExecutorClient;
use support::*;

async fn execd(sb: &Sandbox, node: &str) -> ExecutorClient<tonic::transport::Channel> {
    ExecutorClient::new(sb.channel(node, "execd").await)
}

/// The device waits 2 s before it fences (pcmk_delay_base), so requests sent together
/// overlap even on a slow machine.
fn op(action: &str) -> pb::OpRequest {
    pb::OpRequest {
        rsc: "fence-sb".into(),
        agent: "stonith:fence_sandbox".into(),
        action: action.into(),
        params: [("pcmk_delay_base".to_string(), "2s".to_string())].into(),
        meta: HashMap::new(),
        interval_ms: 0,
        timeout_ms: 20_000,
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

/// History lines of a node about `target`, without the client's pid and times (which
/// differ only in the requester, not between nodes).
fn history(sb: &Sandbox, node: &str, target: &str) -> Vec<String> {
    let r = sb.halo(node, &["stonith", "history", target]);
    assert_eq!(r.code, 0, "{}", r.err);
    r.out.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencers_fence_through_the_node_that_has_the_device_and_agree() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("fenced", 3);
    for n in ["node1", "node2", "node3"] {
        sb.start(n);
    }
    sb.wait_quorum("node1", Duration::from_secs(20), "three members", |q, m| q && m.len() == 3);
    let mut c1 = execd(&sb, "node1").await;
    let r = c1.exec(op("start")).await.unwrap().into_inner();
    assert_eq!((r.rc, r.op_status), (0, 0), "start of the fence device: {}", r.exit_reason);
    let halod3: i32 = std::fs::read_to_string(sb.node_dir("node3").join("halod.pid")).unwrap().trim().parse().unwrap();

    // node2 has no device; node3 cannot fence itself: nobody can fence node1.
    let n = sb.halo("node2", &["stonith", "fence", "node1", "--timeout", "20"]);
    assert_eq!(n.code, 1, "{} {}", n.out, n.err);
    assert!(n.err.contains("no fencing device on any node can fence node1 (answered: node1, node2, node3)"), "{}", n.err);

    // node1 and node2 ask at once to power node3 off: node1's device does it, once.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| sb.halo("node2", &["stonith", "fence", "node3", "--off", "--timeout", "30"]));
        let b = s.spawn(|| sb.halo("node1", &["stonith", "fence", "node3", "--off", "--timeout", "30"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    for r in [&a, &b] {
        assert_eq!(r.code, 0, "{} {}", r.out, r.err);
        assert!(r.out.contains("node3 fenced (off) by node1 using fence-sb"), "{}", r.out);
    }
    assert!(!alive(halod3), "node3's halod survived fencing");
    sb.wait_quorum("node1", Duration::from_secs(20), "node3 gone", |q, m| q && m.len() == 2);

    // One operation, the same on both survivors.
    let t0 = Instant::now();
    loop {
        let (h1, h2) = (history(&sb, "node1", "node3"), history(&sb, "node2", "node3"));
        if h1.len() == 1 && h1 == h2 {
            assert!(h1[0].starts_with("off of node3 successful: delegate=node1, client=halo-cli."), "{h1:?}");
            assert!(h1[0].contains("devices=fence-sb"), "{h1:?}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "histories differ: node1 {h1:?} node2 {h2:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refused request is in both histories too.
    let (f1, f2) = (history(&sb, "node1", "node1"), history(&sb, "node2", "node1"));
    assert_eq!(f1.len(), 1, "{f1:?}");
    assert!(f1[0].starts_with("reboot of node1 failed: client=halo-cli."), "{f1:?}");
    assert_eq!(f1, f2);

    // node3 comes back and learns the history from the others.
    sb.start("node3");
    let t0 = Instant::now();
    loop {
        let r = sb.halo("node3", &["stonith", "history"]);
        let mine = sb.halo("node1", &["stonith", "history"]);
        if r.code == 0 && r.out == mine.out {
            assert_eq!(r.out.lines().count(), 2, "{}", r.out);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "node3's history: {} (node1: {})", r.out, mine.out);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until `halo stonith devices` on `node` satisfies `pred`.
fn wait_devices(sb: &Sandbox, node: &str, what: &str, pred: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    loop {
        let r = sb.halo(node, &["stonith", "devices"]);
        if r.code == 0 && pred(&r.out) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{node}: {what} not reached: {} {}", r.out, r.err);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until `halo stonith status` on `node` satisfies `pred`.
fn wait_status(sb: &Sandbox, node: &str, what: &str, pred: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    loop {
        let r = sb.halo(node, &["stonith", "status"]);
        if r.code == 0 && pred(&r.out) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{node}: {what} not reached: {} {}", r.out, r.err);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A device created in the CIB (`halo stonith create`, as pcs writes it) is registered by
/// every fencer the configuration allows, with no executor involved, and watched on its
/// monitor interval by one of them (a failing device shows in every node's status); a ban
/// takes it away from one node; bad devices are refused before anything is written.
#[test]
fn devices_come_from_the_cib_and_follow_its_constraints() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("fenced-cib", 3);
    for n in ["node1", "node2", "node3"] {
        sb.start(n);
    }
    sb.wait_cib_ready(&["node1", "node2", "node3"], Duration::from_secs(30));
    let before = sb.halo("node1", &["cib", "query", "--section", "resources"]).out;
    for (args, why) in [
        (vec!["stonith", "create", "f1", "fence_nosuch"], "fence_nosuch"),
        (vec!["stonith", "create", "f1", "fence_sandbox", "bogus=1"], "has no parameter 'bogus'"),
        (vec!["stonith", "create", "f1", "fence_sandbox", "pcmk_host_check=sometimes"], "pcmk_host_check"),
        (vec!["stonith", "create", "f1", "fence_sandbox", "novalue"], "is not NAME=VALUE"),
        (vec!["stonith", "delete", "nosuch"], "no fencing device 'nosuch'"),
    ] {
        let r = sb.halo("node1", &args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.out);
        assert!(r.err.contains(why) && r.err.trim().lines().count() == 1, "{args:?}: {}", r.err);
    }
    assert_eq!(sb.halo("node1", &["cib", "query", "--section", "resources"]).out, before, "refusals wrote nothing");

    let r = sb.halo("node2", &["stonith", "create", "fsb", "fence_sandbox", "pcmk_delay_base=1s", "op", "monitor", "interval=1s", "meta", "priority=5"]);
    assert_eq!(r.code, 0, "{}", r.err);
    // Acknowledged once node2 applied it; node3 applies it a moment later.
    let t0 = Instant::now();
    let q = loop {
        let q = sb.halo("node3", &["cib", "query", "--xpath", "//primitive[@id='fsb']"]).out;
        if !q.is_empty() || t0.elapsed() > Duration::from_secs(10) {
            break q;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(q.contains(r#"<nvpair id="fsb-instance_attributes-pcmk_delay_base" name="pcmk_delay_base" value="1s"/>"#), "{q}");
    assert!(q.contains(r#"<op name="monitor" interval="1s" id="fsb-monitor-interval-1s"/>"#), "{q}");
    for n in ["node1", "node2", "node3"] {
        wait_devices(&sb, n, "fsb from the CIB", |o| o.contains("fsb (stonith:fence_sandbox) dynamic-list [allowed here by the CIB]"));
    }
    // Watched on its interval by node1 (the first node allowed), seen from every node; a
    // device that cannot work shows as failed.
    let r = sb.halo("node1", &["stonith", "create", "fbad", "fence_sandbox", "sandbox=/nonexistent", "op", "monitor", "interval=1s"]);
    assert_eq!(r.code, 0, "{}", r.err);
    wait_status(&sb, "node3", "fsb OK on node1", |o| o.contains("* fsb (stonith:fence_sandbox): OK on node1 at"));
    wait_status(&sb, "node2", "fbad failed", |o| o.contains("* fbad (stonith:fence_sandbox): FAILED on node1 at") && o.contains("/nonexistent does not exist"));
    assert_eq!(sb.halo("node1", &["stonith", "delete", "fbad"]).code, 0);
    // Banned from node1: node1's fencer lets it go, the others keep it.
    let ban = r#"<rsc_location id="ban-fsb" rsc="fsb" node="node1" score="-INFINITY"/>"#;
    assert_eq!(sb.halo("node1", &["cib", "create", "-o", "constraints", "--xml", ban]).code, 0);
    wait_devices(&sb, "node1", "fsb gone", |o| o.contains("no fencing device is registered"));
    wait_devices(&sb, "node2", "fsb kept", |o| o.contains("fsb"));
    wait_status(&sb, "node1", "fsb watched by node2", |o| o.contains("* fsb (stonith:fence_sandbox): OK on node2 at") && o.contains("may run on node2 node3"));
    // node1 asks: node2 (the lowest node that has it and is not the target) fences node3.
    let halod3: i32 = std::fs::read_to_string(sb.node_dir("node3").join("halod.pid")).unwrap().trim().parse().unwrap();
    let f = sb.halo("node1", &["stonith", "fence", "node3", "--timeout", "30"]);
    assert_eq!(f.code, 0, "{} {}", f.out, f.err);
    assert!(f.out.contains("node3 fenced (reboot) by node2 using fsb"), "{}", f.out);
    assert!(!alive(halod3), "node3 survived");
    // A reboot: fence_sandbox powers node3 on again, and it rejoins.
    sb.wait_quorum("node1", Duration::from_secs(30), "node3 back", |q, m| q && m.len() == 3);
    // A manual confirmation is recorded on every node.
    let c = sb.halo("node2", &["stonith", "confirm", "node3"]);
    assert!(c.code == 0 && c.err.contains("warning"), "{} {}", c.out, c.err);
    let t0 = Instant::now();
    loop {
        let h = history(&sb, "node1", "node3");
        if h.len() == 2 {
            assert!(h[0].starts_with("reboot of node3 successful: delegate=node2, client=halo-cli.") && h[0].contains("origin=node1"), "{h:?}");
            assert!(h[1].starts_with("off of node3 successful: delegate=node2") && h[1].contains("devices=manual"), "{h:?}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{h:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Deleting the device (its ban first: the CIB keeps no dangling reference), once the
    // three agree on a CIB leader again.
    sb.wait_cib_ready(&["node1", "node2", "node3"], Duration::from_secs(30));
    assert_eq!(sb.halo("node1", &["cib", "delete", "--xml", r#"<rsc_location id="ban-fsb"/>"#]).code, 0);
    let d = sb.halo("node1", &["stonith", "delete", "fsb"]);
    assert_eq!(d.code, 0, "{}", d.err);
    wait_devices(&sb, "node2", "fsb deleted", |o| o.contains("no fencing device is registered"));
}
