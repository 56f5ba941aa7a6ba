//! Multi-process membership tests on a 3-node sandbox (127.0.0.11-13, a port of its own).
//! Every process is started through `halo sandbox start` and killed by its pid file's
//! process group; the guard below kills whatever is left even when an assertion fails.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn three_nodes_form_lose_and_regain_quorum() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("quorum", 3);
    for n in ["node1", "node2", "node3"] {
        sb.start(n);
    }
    sb.wait_quorum("node1", Duration::from_secs(30), "a quorate ring of 3", |q, m| q && m == [1, 2, 3]);
    sb.wait_quorum("node3", Duration::from_secs(10), "a quorate ring of 3", |q, m| q && m == [1, 2, 3]);

    // Runtime token for 3 nodes: 1000 + 650 = 1650 ms; consensus 1.2 x that = 1980 ms.
    let bound = Duration::from_millis(1650 + 1980 + 500);
    sb.kill("node3");
    let took = sb.wait_quorum("node1", Duration::from_secs(20), "a quorate ring of 2", |q, m| q && m == [1, 2]);
    assert!(took <= bound, "node3's loss took {took:?} to see; the bound is token + consensus + 500 ms = {bound:?}");
    eprintln!("detection of a killed node: {took:?}");

    sb.kill("node2");
    sb.wait_quorum("node1", Duration::from_secs(20), "loss of quorum", |q, m| !q && m == [1]);

    sb.start("node2");
    sb.start("node3");
    sb.wait_quorum("node1", Duration::from_secs(30), "the rejoined ring of 3", |q, m| q && m == [1, 2, 3]);
}

#[test]
fn wrong_key_never_joins_and_bad_packets_are_counted() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("auth", 3);
    // node3 gets a key of its own: it must never become a member.
    let bad_key = sb.dir.join("other-authkey");
    common::authkey::generate_authkey(&bad_key).unwrap();
    let conf3 = sb.node_dir("node3").join("corosync.conf");
    let text = std::fs::read_to_string(&conf3).unwrap().replace(&format!("authkey: {}", sb.dir.join("authkey").display()), &format!("authkey: {}", bad_key.display()));
    std::fs::write(&conf3, text).unwrap();
    for n in ["node1", "node2", "node3"] {
        sb.start(n);
    }
    sb.wait_quorum("node1", Duration::from_secs(30), "a ring of node1 and node2", |q, m| q && m == [1, 2]);
    std::thread::sleep(Duration::from_secs(3));
    let (_, members) = sb.quorum("node1").unwrap();
    assert_eq!(members, vec![1, 2], "a node with another key joined");
    let p = sb.packets("node1");
    assert!(p["dropped_auth"].as_u64().unwrap() > 0, "node3's packets were not counted as dropped: {p}");

    // Garbage and a replayed authentic datagram, sent straight to node1's totem port.
    let before = sb.packets("node1");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.11:{}", sb.port);
    sock.send_to(b"certainly not a totem packet", &target).unwrap();
    let key = common::authkey::read_authkey(&sb.dir.join("authkey")).unwrap();
    // Sender 99 is not a cluster node: totem ignores it, but the crypto layer checks it first.
    let mut crypto = membership::crypto::PacketCrypto::new(key.packet_key(), key.key_id(), 99, 1);
    let datagram = crypto.seal(&membership::wire::Packet::MergeDetect { sender: 99, ring: Default::default() }.encode());
    sock.send_to(&datagram, &target).unwrap();
    sock.send_to(&datagram, &target).unwrap();
    let t0 = Instant::now();
    loop {
        let after = sb.packets("node1");
        let malformed = after["dropped_malformed"].as_u64().unwrap() > before["dropped_malformed"].as_u64().unwrap();
        let replayed = after["dropped_replay"].as_u64().unwrap() > before["dropped_replay"].as_u64().unwrap();
        if malformed && replayed {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "bad packets not counted: before {before}, after {after}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn halod_respawns_a_dead_daemon() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("respawn", 1);
    sb.start("node1");
    sb.wait_quorum("node1", Duration::from_secs(30), "a ring of one", |q, m| q && m == [1]);
    let pidf = sb.node_dir("node1").join("run").join("membershipd.pid");
    let old: i32 = std::fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
    // SAFETY: SIGKILL to the membershipd this sandbox's halod started (its pid file).
    unsafe { libc::kill(old, libc::SIGKILL) };
    let t0 = Instant::now();
    loop {
        let new = std::fs::read_to_string(&pidf).ok().and_then(|s| s.trim().parse::<i32>().ok());
        if new.is_some_and(|p| p != old) && sb.quorum("node1").is_some_and(|(q, m)| q && m == [1]) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "halod did not bring membershipd back");
        std::thread::sleep(Duration::from_millis(50));
    }
}
