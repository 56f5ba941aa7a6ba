//! halo-execd in a sandbox: halod starts it; ops through its gRPC API run halo's own agents
//! (ocf:halo:httpd serving a page, stonith:fence_sandbox powering a node off) with the
//! node's own HA_RSCTMP; a recurring monitor reports the service's death.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::execd as pb;
use proto::execd::executor_client::ExecutorClient;
use support::*;
use tonic::transport::Channel;

async fn client(sb: &Sandbox, node: &str) -> ExecutorClient<Channel> {
    ExecutorClient::new(sb.channel(node, "execd").await)
}

fn op(rsc: &str, agent: &str, action: &str, params: &[(&str, &str)], interval_ms: u64) -> pb::OpRequest {
    pb::OpRequest {
        rsc: rsc.into(),
        agent: agent.into(),
        action: action.into(),
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        meta: HashMap::new(),
        interval_ms,
        timeout_ms: 20_000,
    }
}

/// Pids of the group's processes that are not zombies (a zombie waits for its reaper).
fn live_members(pgid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command name: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect::<Vec<_>>()) else { continue };
        if rest.len() > 2 && rest[2] == pgid.to_string() && rest[0] != "Z" {
            v.push(pid);
        }
    }
    v
}

async fn next(events: &mut tonic::Streaming<pb::OpEvent>) -> pb::OpEvent {
    tokio::time::timeout(Duration::from_secs(5), events.message()).await.expect("an event in time").unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execd_runs_halo_agents_and_reports_a_dead_service() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("execd", 2);
    sb.start("node1");
    sb.start("node2");
    let mut c = client(&sb, "node1").await;
    let mut events = c.events(pb::EventsRequest { recurring_only: false }).await.unwrap().into_inner();
    let port = (sb.port + 7).to_string();
    let params = [("ip", "127.0.0.100"), ("port", port.as_str())];

    let r = c.exec(op("web", "ocf:halo:httpd", "start", &params, 0)).await.unwrap().into_inner();
    assert_eq!((r.rc, r.op_status), (0, 0), "{} {}", r.exit_reason, r.stderr);
    assert_eq!(r.operation_key, "web_start_0");
    // The page names the node that serves it (CRM_meta_on_node is the executor's node).
    let page = std::process::Command::new("python3")
        .args(["-c", &format!("import urllib.request;print(urllib.request.urlopen('http://127.0.0.100:{port}/',timeout=5).read().decode())")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&page.stdout).contains("served by node1"), "{:?}", page);
    // HA_RSCTMP is the node's own.
    let pidfile = sb.node_dir("node1").join("run/rsctmp/httpd-web.pid");
    assert!(pidfile.exists(), "no pid file in node1's HA_RSCTMP");

    // A recurring monitor: reported once while healthy, and again when the server dies.
    c.recur(op("web", "ocf:halo:httpd", "monitor", &params, 500)).await.unwrap();
    let start_ev = next(&mut events).await;
    assert_eq!(start_ev.operation_key, "web_start_0");
    let first = next(&mut events).await;
    assert_eq!((first.operation_key.as_str(), first.rc), ("web_monitor_500", 0));
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // SAFETY: killing the web server this test's agent started (its pid file).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t0 = Instant::now();
    let dead = next(&mut events).await;
    assert_eq!((dead.operation_key.as_str(), dead.rc), ("web_monitor_500", 7), "{}", dead.exit_reason);
    assert!(t0.elapsed() < Duration::from_millis(1500), "{:?}", t0.elapsed());
    assert!(c.cancel(pb::CancelRequest { rsc: "web".into(), action: "monitor".into(), interval_ms: 500 }).await.unwrap().into_inner().cancelled);
    let h = c.history(pb::HistoryRequest {}).await.unwrap().into_inner().xml;
    assert!(h.contains(r#"<lrm_resource id="web" class="ocf" provider="halo" type="httpd">"#), "{h}");
    let r = c.exec(op("web", "ocf:halo:httpd", "stop", &params, 0)).await.unwrap().into_inner();
    assert_eq!(r.rc, 0);

    // A missing agent: rc 5, op status "not installed", a reason naming it.
    let r = c.exec(op("x", "ocf:halo:nosuch", "start", &[], 0)).await.unwrap().into_inner();
    assert_eq!((r.rc, r.op_status), (5, 7));
    assert!(r.exit_reason.contains("ocf:halo:nosuch"), "{}", r.exit_reason);

    // Fencing goes through halo-fenced. node1's executor starts a fence_sandbox device (no
    // parameter: inside a sandbox it needs only the target); that registers it with node1's
    // fencer, which then powers node2 off, the services node2 runs included (they left
    // node2's process group).
    let mut c2 = client(&sb, "node2").await;
    let port2 = (sb.port + 8).to_string();
    let r = c2.exec(op("web2", "ocf:halo:httpd", "start", &[("ip", "127.0.0.101"), ("port", port2.as_str())], 0)).await.unwrap().into_inner();
    assert_eq!(r.rc, 0, "{} {}", r.exit_reason, r.stderr);
    let server2: i32 = std::fs::read_to_string(sb.node_dir("node2").join("run/rsctmp/httpd-web2.pid")).unwrap().trim().parse().unwrap();
    let halod2: i32 = std::fs::read_to_string(sb.node_dir("node2").join("halod.pid")).unwrap().trim().parse().unwrap();
    let r = c.exec(op("fence-sb", "stonith:fence_sandbox", "monitor", &[], 0)).await.unwrap().into_inner();
    assert_eq!(r.rc, 7, "probe before start: not registered");
    let r = c.exec(op("fence-sb", "stonith:fence_sandbox", "start", &[], 0)).await.unwrap().into_inner();
    assert_eq!((r.rc, r.op_status), (0, 0), "{}", r.exit_reason);
    let r = c.exec(op("fence-sb", "stonith:fence_sandbox", "off", &[("plug", "node2")], 0)).await.unwrap().into_inner();
    assert_eq!(r.op_status, 3, "the executor does not fence: {}", r.exit_reason);
    assert!(!live_members(halod2).is_empty(), "node2 still runs");
    // The device lists the sandbox's nodes (dynamic-list).
    let d = sb.halo("node1", &["stonith", "devices", "node2"]);
    assert!(d.code == 0 && d.out.contains("fence-sb (stonith:fence_sandbox) dynamic-list"), "{} {}", d.out, d.err);
    // node2 has no device and node1's cannot fence node1 itself: refused, nothing happens.
    let n = sb.halo("node2", &["stonith", "fence", "node1"]);
    assert_eq!(n.code, 1);
    assert!(n.err.contains("no fencing device on any node can fence node1"), "{}", n.err);
    let f = sb.halo("node1", &["stonith", "fence", "node2", "--off", "--timeout", "30"]);
    assert_eq!(f.code, 0, "{} {}", f.out, f.err);
    assert!(f.out.contains("node2 fenced (off) by node1 using fence-sb"), "{}", f.out);
    assert!(live_members(halod2).is_empty(), "node2's processes survived fencing: {:?}", live_members(halod2));
    let state = std::fs::read_to_string(format!("/proc/{server2}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')), "node2's web server survived fencing");
    let h = sb.halo("node1", &["stonith", "history"]);
    let lines: Vec<&str> = h.out.lines().collect();
    assert_eq!(lines.len(), 2, "{}", h.out);
    assert!(lines[0].starts_with("reboot of node1 failed: client=halo-cli.") && lines[0].contains("origin=node2"), "{}", h.out);
    assert!(lines[1].starts_with("off of node2 successful: delegate=node1, client=halo-cli."), "{}", h.out);
    assert!(lines[1].contains("origin=node1, devices=fence-sb, completed='"), "{}", h.out);
    let r = c.exec(op("fence-sb", "stonith:fence_sandbox", "stop", &[], 0)).await.unwrap().into_inner();
    assert_eq!(r.rc, 0);
    let d = sb.halo("node1", &["stonith", "devices"]);
    assert!(d.out.contains("no fencing device is registered"), "{}", d.out);
}
