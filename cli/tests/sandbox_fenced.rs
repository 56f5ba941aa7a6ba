//! halo-fenced on a three-node sandbox: the fencers work as one. A device started on node1
//! (by node1's executor, which registers it with node1's fencer) fences node3 when node2
//! asks; two concurrent requests from two nodes fence node3 once; every survivor's history
//! agrees; a node no other node's device can fence is refused.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::execd as pb;
use proto::execd::executor_client::ExecutorClient;
use support::*;

async fn execd(sb: &Sandbox, node: &str) -> ExecutorClient<tonic::transport::Channel> {
    let sock = sb.node_dir(node).join("run/execd.sock");
    let t0 = Instant::now();
    loop {
        if let Ok(ch) = proto::connect_unix(sock.clone()).await {
            return ExecutorClient::new(ch);
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "halo-execd of {node} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
}
