//! Fencer figures on a 3-node sandbox. A tiny fence agent (`fence_bench`, a shell script
//! that only reads its stdin) shows the fencer's own cost: one request through halo-fenced's
//! API when the device is on the asking node, and when it is on another node (announce,
//! every fencer's answer, the remote run, the result delivered to all), against running the
//! agent directly. Then halo's `fence_sandbox` for real: node2 asks, node1 powers node3 off;
//! time until the request is answered, and until node1's membership has reformed without
//! node3. Run: `cargo bench -p halo-cli --bench fenced`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use proto::fenced as pb;
use proto::fenced::fencer_client::FencerClient;

#[path = "../tests/support/mod.rs"]
mod support;
use support::Sandbox;

const FENCE_BENCH: &str = "#!/bin/sh\naction=\nwhile IFS= read -r l; do case \"$l\" in action=*) action=\"${l#action=}\";; esac; done\ncase \"$action\" in\n  list) echo node1; echo node2; echo node3 ;;\n  metadata) echo '<resource-agent name=\"fence_bench\"><parameters><parameter name=\"port\"/></parameters><actions><action name=\"off\"/><action name=\"reboot\"/><action name=\"list\"/><action name=\"monitor\"/></actions></resource-agent>' ;;\nesac\nexit 0\n";

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn p90_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[(v.len() * 9 / 10).min(v.len() - 1)].as_secs_f64() * 1000.0
}

async fn fencer(sb: &Sandbox, node: &str) -> FencerClient<tonic::transport::Channel> {
    FencerClient::new(sb.channel(node, "fenced").await)
}

async fn wait_devices(c: &mut FencerClient<tonic::transport::Channel>, want: &[&str]) {
    let t0 = Instant::now();
    loop {
        let d = c.devices(pb::DevicesRequest { target: String::new() }).await.unwrap().into_inner();
        let ids: Vec<&str> = d.devices.iter().map(|d| d.id.as_str()).collect();
        if want.iter().all(|w| ids.contains(w)) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "devices {want:?} not registered: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fence(target: &str, action: &str) -> pb::FenceRequest {
    pb::FenceRequest { target: target.into(), action: action.into(), timeout_ms: 30_000, client: "bench".into(), manual: false }
}

fn main() {
    let base = std::env::temp_dir().join(format!("halo-bench-fenced-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let agents = base.join("agents");
    std::fs::create_dir_all(agents.join("fence")).unwrap();
    // The shipped fence_sandbox beside the bench agent: HALO_AGENTS_DIR replaces the checkout's.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents/fence/fence_sandbox");
    std::fs::copy(&shipped, agents.join("fence/fence_sandbox")).unwrap();
    let bench = agents.join("fence/fence_bench");
    std::fs::write(&bench, FENCE_BENCH).unwrap();
    std::fs::set_permissions(&bench, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::set_var("HALO_AGENTS_DIR", &agents);

    let sb = Sandbox::create("bench-fenced", 3);
    for n in ["node1", "node2", "node3"] {
        sb.start(n);
    }
    sb.wait_cib_ready(&["node1", "node2", "node3"], Duration::from_secs(30));
    // Both devices may run only on node1; fence_bench first (priority).
    for (id, agent, prio) in [("fb", "fence_bench", "10"), ("fsb", "fence_sandbox", "0")] {
        let r = sb.halo("node1", &["stonith", "create", id, agent, "--force", "meta", &format!("priority={prio}")]);
        assert_eq!(r.code, 0, "{}", r.err);
        for n in ["node2", "node3"] {
            let ban = format!(r#"<rsc_location id="ban-{id}-{n}" rsc="{id}" node="{n}" score="-INFINITY"/>"#);
            assert_eq!(sb.halo("node1", &["cib", "create", "-o", "constraints", "--xml", &ban]).code, 0);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c1 = fencer(&sb, "node1").await;
        let mut c2 = fencer(&sb, "node2").await;
        wait_devices(&mut c1, &["fb", "fsb"]).await;
        // node2 and node3 drop what the bans take from them.
        let t0 = Instant::now();
        while !c2.devices(pb::DevicesRequest { target: String::new() }).await.unwrap().into_inner().devices.is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(20), "node2 kept a banned device");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The agent alone, as the fencer runs it: argv [agent], parameters on stdin.
        let mut direct = Vec::new();
        for _ in 0..30 {
            let t0 = Instant::now();
            let mut child = std::process::Command::new(&bench).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(b"action=off\nport=node3\nnodename=node3\n").unwrap();
            child.wait().unwrap();
            direct.push(t0.elapsed());
        }
        // fence_bench "fences" by doing nothing: node1 asking (device here), node2 asking
        // (device on node1). Each request is a whole operation: announce, three answers,
        // the run, the end delivered everywhere.
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for _ in 0..30 {
            let t0 = Instant::now();
            let r = c1.fence(fence("node2", "off")).await.unwrap().into_inner();
            assert_eq!((r.op_status, r.devices.as_slice()), (0, &["fb".to_string()][..]), "{}", r.reason);
            local.push(t0.elapsed());
            let t0 = Instant::now();
            let r = c2.fence(fence("node3", "off")).await.unwrap().into_inner();
            assert_eq!((r.op_status, r.devices.as_slice()), (0, &["fb".to_string()][..]), "{}", r.reason);
            remote.push(t0.elapsed());
        }
        println!("fence agent run directly:                    median {:.2} ms", median_ms(&mut direct));
        println!("fence via the fencers, device on the asker:  median {:.2} ms, p90 {:.2} ms", median_ms(&mut local), p90_ms(&mut local));
        println!("fence via the fencers, device on another:    median {:.2} ms, p90 {:.2} ms", median_ms(&mut remote), p90_ms(&mut remote));

        // For real: without fence_bench, node2's request has node1 power node3 off.
        assert_eq!(sb.halo("node1", &["cib", "delete", "--xml", r#"<rsc_location id="ban-fb-node2"/>"#]).code, 0);
        assert_eq!(sb.halo("node1", &["cib", "delete", "--xml", r#"<rsc_location id="ban-fb-node3"/>"#]).code, 0);
        assert_eq!(sb.halo("node1", &["stonith", "delete", "fb"]).code, 0);
        let t0 = Instant::now();
        while c1.devices(pb::DevicesRequest { target: String::new() }).await.unwrap().into_inner().devices.iter().any(|d| d.id == "fb") {
            assert!(t0.elapsed() < Duration::from_secs(20), "fb stayed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (mut answered, mut reformed) = (Vec::new(), Vec::new());
        for round in 0..3 {
            let t0 = Instant::now();
            let r = c2.fence(fence("node3", "off")).await.unwrap().into_inner();
            assert_eq!(r.op_status, 0, "round {round}: {}", r.reason);
            answered.push(t0.elapsed());
            sb.wait_quorum("node1", Duration::from_secs(30), "node3 gone", |q, m| q && m.len() == 2);
            reformed.push(t0.elapsed());
            sb.start("node3");
            sb.wait_quorum("node1", Duration::from_secs(30), "node3 back", |q, m| q && m.len() == 3);
            sb.wait_cib_ready(&["node1", "node2", "node3"], Duration::from_secs(30));
        }
        println!("fence_sandbox, node2 asks, node1 powers node3 off: answered median {:.0} ms", median_ms(&mut answered));
        println!("  ... until node1's membership has reformed without node3: median {:.0} ms (token timeout 1000 ms)", median_ms(&mut reformed));
    });
}
