//! The fencers' group protocol (`fenced::peers`) with three fencers in one process: a relay
//! stands in for the process group (every message to every member, in one order, with the
//! sender's node id), as halo-membershipd's CPG does. The real group is exercised by
//! cli/tests/sandbox_fenced.rs; here the orderings and bad messages are chosen on purpose.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use execd::agent::AgentDirs;
use execd::rc::OpStatus;
use execd::run::ExecEnv;
use fenced::device::Device;
use fenced::fencer::{CibSource, Fencer, State};
use fenced::peers::Peers;
use prost::Message;
use proto::fenced as pb;
use tokio::sync::mpsc;

/// Records each fencing action in `log`, takes `sleep` seconds, lists node1..node3.
const FENCE_RECORD: &str = r#"#!/bin/sh
action=""; port=""; log=/dev/null; sleep=0
while IFS= read -r line; do
  case "$line" in action=*) action="${line#action=}" ;; port=*) port="${line#port=}" ;; log=*) log="${line#log=}" ;; sleep=*) sleep="${line#sleep=}" ;; esac
done
case "$action" in
  metadata) echo '<resource-agent name="fence_record"><parameters><parameter name="port"/></parameters><actions><action name="off"/><action name="reboot"/><action name="list"/><action name="monitor"/></actions></resource-agent>' ;;
  list) echo node1; echo node2; echo node3 ;;
  off|reboot) echo "$action $port" >> "$log"; sleep "$sleep" ;;
esac
exit 0
"#;

struct Node {
    fencer: Fencer,
    peers: Arc<Peers>,
}

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// What the relay delivers: (from node id, bytes). Tests inject here too.
    inject: mpsc::UnboundedSender<(u32, Vec<u8>)>,
}

impl Cluster {
    /// Three fencers; `devices[i]` are registered on node i+1.
    async fn new(devices: &[&[(&str, &[(&str, &str)])]]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let fence = dir.path().join("agents/fence");
        std::fs::create_dir_all(&fence).unwrap();
        let agent = fence.join("fence_record");
        std::fs::write(&agent, FENCE_RECORD).unwrap();
        std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let names: HashMap<u32, String> = (1..=3).map(|i| (i, format!("node{i}"))).collect();
        let (relay_tx, mut relay_rx) = mpsc::unbounded_channel::<(u32, Vec<u8>)>();
        let mut nodes = Vec::new();
        for i in 1..=3u32 {
            let rsctmp = dir.path().join(format!("rsctmp{i}"));
            std::fs::create_dir_all(&rsctmp).unwrap();
            let env = ExecEnv {
            cluster_tools: None,
                dirs: AgentDirs { ocf_root: PathBuf::from("/usr/lib/ocf"), halo: Some(dir.path().join("agents")), initd: dir.path().join("init.d"), fence: dir.path().join("sbin") },
                rsctmp,
                workdir: PathBuf::from("/"),
                node_name: format!("node{i}"),
                systemd: execd::systemd::Systemd { systemctl: dir.path().join("systemctl"), runtime_dir: dir.path().join("run-systemd") },
                fencer: None,
            };
            let fencer = Fencer::new(env, CibSource::None);
            let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
            let relay = relay_tx.clone();
            tokio::spawn(async move {
                while let Some(m) = out_rx.recv().await {
                    let _ = relay.send((i, m));
                }
            });
            let peers = Peers::new(&format!("node{i}"), names.clone(), out_tx);
            fencer.set_peers(peers.clone());
            for (id, params) in devices.get(i as usize - 1).copied().unwrap_or(&[]) {
                let mut p: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                p.insert("log".into(), dir.path().join("log").display().to_string());
                fencer.register(Device::new(id, "fence_record", &p, &BTreeMap::new()).unwrap()).await.unwrap();
            }
            nodes.push(Node { fencer, peers });
        }
        let members: Vec<u32> = vec![1, 2, 3];
        for n in &nodes {
            n.peers.on_members(&n.fencer, &members);
        }
        // The group: one order for everybody.
        let targets: Vec<(Fencer, Arc<Peers>)> = nodes.iter().map(|n| (n.fencer.clone(), n.peers.clone())).collect();
        tokio::spawn(async move {
            while let Some((from, data)) = relay_rx.recv().await {
                for (f, p) in &targets {
                    p.on_message(f, from, &data);
                }
            }
        });
        Cluster { dir, nodes, inject: relay_tx }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    fn history(&self, i: usize) -> Vec<(String, String, State, Vec<String>)> {
        self.node(i).fencer.history(None).into_iter().map(|e| (e.target, e.executioner, e.state, e.devices)).collect()
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_from_two_nodes_fence_once_and_everyone_agrees() {
    let c = Cluster::new(&[&[("rec", &[("sleep", "1")])]]).await;
    let (a, b) = tokio::join!(c.node(2).fencer.fence("node3", "reboot", None, "a"), c.node(3).fencer.fence("node3", "reboot", None, "b"));
    assert_eq!((a.status, b.status), (OpStatus::Done, OpStatus::Done), "{a:?} {b:?}");
    assert_eq!(a.entry.id, b.entry.id, "one operation");
    assert_eq!(a.entry.executioner, "node1");
    assert_eq!(c.log(), "reboot node3\n", "the agent ran once");
    settle().await;
    let h = c.history(1);
    assert_eq!(h, vec![("node3".to_string(), "node1".to_string(), State::Done, vec!["rec".to_string()])]);
    assert_eq!(c.history(2), h);
    assert_eq!(c.history(3), h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_never_runs_its_own_fencing() {
    // Only node3 has a device; it could "fence" node3 but must not.
    let c = Cluster::new(&[&[], &[], &[("rec", &[])]]).await;
    let o = c.node(1).fencer.fence("node3", "off", Some(Duration::from_secs(10)), "t").await;
    assert_eq!(o.status, OpStatus::NoFenceDevice, "{o:?}");
    assert!(o.reason.contains("answered: node1, node2, node3"), "{}", o.reason);
    assert_eq!(c.log(), "");
    // node3 fencing node1 is fine.
    let o = c.node(2).fencer.fence("node1", "off", None, "t").await;
    assert_eq!((o.status, o.entry.executioner.as_str()), (OpStatus::Done, "node3"), "{o:?}");
    assert_eq!(c.log(), "off node1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_corrupt_and_unasked_messages_change_nothing() {
    let c = Cluster::new(&[&[("rec", &[])]]).await;
    let entry = |origin: &str| pb::HistoryEntry {
        id: "x-1".into(),
        target: "node3".into(),
        action: "off".into(),
        client: "evil".into(),
        origin: origin.into(),
        state: "pending".into(),
        ..Default::default()
    };
    let msg = |b: pb::peer_message::Body| pb::PeerMessage { body: Some(b) }.encode_to_vec();
    // node2 claims to be node1; node2 reports an end for node1; garbage; an unknown node id.
    c.inject.send((2, msg(pb::peer_message::Body::Announce(entry("node1"))))).unwrap();
    let mut done = entry("node1");
    done.state = "done".into();
    c.inject.send((2, msg(pb::peer_message::Body::Finished(done)))).unwrap();
    c.inject.send((2, vec![0xff, 0x01, 0x02, 0x03])).unwrap();
    c.inject.send((9, msg(pb::peer_message::Body::Announce(entry("node9"))))).unwrap();
    // An order to run a device for an operation nobody announced.
    let exec = pb::Execute { op_id: "y-1".into(), node: "node1".into(), device: "rec".into(), target: "node3".into(), action: "off".into(), timeout_ms: 5000 };
    c.inject.send((2, msg(pb::peer_message::Body::Execute(exec)))).unwrap();
    settle().await;
    for i in 1..=3 {
        assert!(c.history(i).is_empty(), "node{i}: {:?}", c.history(i));
    }
    assert_eq!(c.log(), "", "no device ran");
    // The fencers still work.
    let o = c.node(2).fencer.fence("node3", "off", None, "t").await;
    assert_eq!(o.status, OpStatus::Done, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_whose_origin_leaves_ends_failed_everywhere() {
    let c = Cluster::new(&[&[("rec", &[])]]).await;
    let msg = |b: pb::peer_message::Body| pb::PeerMessage { body: Some(b) }.encode_to_vec();
    // node2 announces (genuinely) and then vanishes before it finishes.
    let e = pb::HistoryEntry { id: "n2-1".into(), target: "node3".into(), action: "off".into(), client: "t".into(), origin: "node2".into(), state: "pending".into(), ..Default::default() };
    c.inject.send((2, msg(pb::peer_message::Body::Announce(e)))).unwrap();
    settle().await;
    assert_eq!(c.history(1)[0].2, State::Pending);
    for i in [1, 3] {
        c.node(i).peers.on_members(&c.node(i).fencer, &[1, 3]);
    }
    let h = c.node(1).fencer.history(None);
    assert_eq!(h[0].state, State::Failed);
    assert!(h[0].reason.contains("origin node2 left"), "{}", h[0].reason);
    assert_eq!(c.node(3).fencer.history(None)[0].state, State::Failed);
    // A new request for the same target is not held up by the dead one.
    let o = c.node(1).fencer.fence("node3", "off", None, "t").await;
    assert_eq!(o.status, OpStatus::Done, "{o:?}");
}
