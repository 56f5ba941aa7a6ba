//! The raft replica on the durable sled store: three replicas commit CIB writes, one is
//! stopped and reopened from its directory, and it comes back with every committed write.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use cibd::replica::{Action, Replica, ReplicaConfig};
use cibd::store::SledStorage;

struct Node {
    replica: Replica<SledStorage>,
    applied: Vec<(u64, Vec<u8>)>,
}

fn dir(tag: &str, id: u64) -> PathBuf {
    std::env::temp_dir().join(format!("halo-cibd-{tag}-{}-{id}", std::process::id()))
}

fn open(tag: &str, id: u64, applied: u64, fresh: bool) -> Replica<SledStorage> {
    let d = dir(tag, id);
    let store = if fresh { SledStorage::create(&d).unwrap() } else { SledStorage::open(&d).unwrap() };
    let cfg = ReplicaConfig { initial_voters: vec![1, 2, 3], applied, seed: id, ..Default::default() };
    Replica::new(id, store, cfg).unwrap()
}

/// Deliver messages and poll until nothing moves (bounded).
fn settle(nodes: &mut BTreeMap<u64, Node>, acked: &mut usize) {
    let mut queue: VecDeque<(u64, u64, Vec<u8>)> = VecDeque::new();
    for _ in 0..10_000 {
        for (&id, n) in nodes.iter_mut() {
            for a in n.replica.poll().unwrap() {
                match a {
                    Action::Send { to, bytes } => queue.push_back((id, to, bytes)),
                    Action::Apply { index, data } => n.applied.push((index, data)),
                    Action::Acked { .. } => *acked += 1,
                    _ => {}
                }
            }
        }
        let Some((from, to, bytes)) = queue.pop_front() else { return };
        if let Some(n) = nodes.get_mut(&to) {
            n.replica.step(from, &bytes).unwrap();
        }
    }
    panic!("the cluster did not settle");
}

fn elect(nodes: &mut BTreeMap<u64, Node>, acked: &mut usize) -> u64 {
    for _ in 0..200 {
        for n in nodes.values_mut() {
            n.replica.tick();
        }
        settle(nodes, acked);
        if let Some(l) = nodes.values().find_map(|n| n.replica.is_leader().then(|| n.replica.id())) {
            return l;
        }
    }
    panic!("no leader elected");
}

#[test]
fn committed_writes_survive_a_restart_from_sled() {
    let tag = "restart";
    let mut nodes: BTreeMap<u64, Node> = (1..=3).map(|id| (id, Node { replica: open(tag, id, 0, true), applied: Vec::new() })).collect();
    let mut acked = 0;
    let leader = elect(&mut nodes, &mut acked);
    for i in 0..20 {
        nodes.get_mut(&leader).unwrap().replica.propose(format!("write {i}").into_bytes()).unwrap();
        settle(&mut nodes, &mut acked);
    }
    assert_eq!(acked, 20, "every write acknowledged once committed");
    let writes = |n: &Node| n.applied.iter().filter(|(_, d)| d.starts_with(b"write")).count();
    for n in nodes.values() {
        assert_eq!(writes(n), 20);
    }
    // Stop a follower (drop it: its sled store closes) and reopen it from disk.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let last_applied = nodes[&follower].applied.last().map(|(i, _)| *i).unwrap_or(0);
    nodes.remove(&follower);
    let reopened = open(tag, follower, last_applied, false);
    assert!(reopened.commit_index() >= last_applied, "the reopened replica lost committed entries");
    nodes.insert(follower, Node { replica: reopened, applied: Vec::new() });
    // It keeps working: new writes reach it.
    let leader = nodes.values().find_map(|n| n.replica.is_leader().then(|| n.replica.id())).unwrap_or_else(|| elect(&mut nodes, &mut acked));
    nodes.get_mut(&leader).unwrap().replica.propose(b"write after restart".to_vec()).unwrap();
    for _ in 0..50 {
        for n in nodes.values_mut() {
            n.replica.tick();
        }
        settle(&mut nodes, &mut acked);
    }
    assert!(nodes[&follower].applied.iter().any(|(_, d)| d == b"write after restart"));
    drop(nodes);
    for id in 1..=3 {
        let _ = std::fs::remove_dir_all(dir(tag, id));
    }
}
