//! The replicated CIB on sandbox clusters: real halod, halo-membershipd and halo-cibd
//! processes on 127.0.0.11-13, driven through `halo cib`.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const NODES3: [&str; 3] = ["node1", "node2", "node3"];

fn primitive(id: &str) -> String {
    format!(r#"<primitive id="{id}" class="ocf" provider="heartbeat" type="Dummy"/>"#)
}

/// Ids of the primitives in a node's CIB (None if its cibd does not answer).
fn primitives(sb: &Sandbox, node: &str) -> Option<BTreeSet<String>> {
    let r = sb.halo(node, &["cib", "query", "-o", "resources"]);
    if r.code != 0 {
        return None;
    }
    let doc = cib::xml::parse(&r.out).ok()?;
    Some(doc.root.elements().filter(|e| e.name == "primitive").filter_map(|e| e.id().map(str::to_string)).collect())
}

fn version(sb: &Sandbox, node: &str) -> String {
    sb.cib_status(node).expect("cib status")["version"].clone()
}

/// Wait until `node` holds every id of `want` (its CIB may still be applying the log).
fn wait_for_ids(sb: &Sandbox, node: &str, want: &BTreeSet<String>, within: Duration) {
    let t0 = Instant::now();
    loop {
        let have = primitives(sb, node).unwrap_or_default();
        if want.is_subset(&have) {
            return;
        }
        let missing: Vec<_> = want.difference(&have).collect();
        assert!(t0.elapsed() < within, "{node} still misses {} acknowledged writes after {within:?}: {missing:?}", missing.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_all(sb: &Sandbox, nodes: &[&str]) {
    for n in nodes {
        sb.start(n);
    }
    sb.wait_cib_ready(nodes, Duration::from_secs(30));
}

#[test]
fn a_write_anywhere_is_seen_everywhere_and_refusals_change_nothing() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("cib-basic", 3);
    start_all(&sb, &NODES3);
    // The genesis CIB: cibadmin --empty with the cluster's nodes.
    let nodes = sb.halo("node3", &["cib", "query", "-o", "nodes"]);
    assert_eq!(nodes.code, 0, "{}", nodes.err);
    for (id, name) in [(1, "node1"), (2, "node2"), (3, "node3")] {
        assert!(nodes.out.contains(&format!(r#"<node id="{id}" uname="{name}"/>"#)), "{}", nodes.out);
    }

    // A write on each node is seen on every node.
    let mut want = BTreeSet::new();
    for (i, n) in NODES3.iter().enumerate() {
        let id = format!("via-{n}");
        let r = sb.halo(n, &["cib", "create", "-o", "resources", "--xml", &primitive(&id)]);
        assert_eq!(r.code, 0, "create on {n}: {}", r.err);
        want.insert(id);
        for m in NODES3 {
            wait_for_ids(&sb, m, &want, Duration::from_secs(5));
        }
        assert_eq!(version(&sb, "node1"), format!("0.{}.0", 2 + i), "one epoch per configuration change");
    }

    // Refusals: each prints one line, exits with cibadmin's code, and changes nothing anywhere.
    let before: Vec<String> = NODES3.iter().map(|n| sb.halo(n, &["cib", "query"]).out).collect();
    let (dup, x) = (primitive("via-node2"), primitive("x"));
    let refused = [
        (vec!["cib", "modify", "--xml", "<primitive id=\"via-node1\""], 78, "malformed XML"),
        (vec!["cib", "create", "-o", "resources", "--xml", &dup], 108, "already exists"),
        (
            vec!["cib", "create", "-o", "constraints", "--xml", r#"<rsc_colocation id="c" rsc="via-node1" with-rsc="nowhere" score="INFINITY"/>"#],
            78,
            "nowhere",
        ),
        (vec!["cib", "create", "-o", "bogus", "--xml", &x], 64, "unknown CIB section"),
        (vec!["cib", "modify", "--xml", r#"<primitive id="no-such"/>"#], 105, "no match"),
    ];
    for (args, code, says) in &refused {
        let r = sb.halo("node2", args);
        assert_eq!(r.code, *code, "{args:?}: {}", r.err);
        assert!(r.err.contains(says), "{args:?}: {}", r.err);
        assert_eq!(r.err.trim_end().lines().count(), 1, "one line: {}", r.err);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<String> = NODES3.iter().map(|n| sb.halo(n, &["cib", "query"]).out).collect();
    assert_eq!(before, after, "refused writes changed a CIB");

    // A lone node of three refuses writes: no quorum, and nothing changes.
    sb.kill("node2");
    sb.kill("node3");
    sb.wait_quorum("node1", Duration::from_secs(20), "loss of quorum", |q, _| !q);
    let r = sb.halo("node1", &["cib", "create", "-o", "resources", "--xml", &primitive("alone")]);
    assert_eq!(r.code, 109, "{}", r.err);
    assert!(r.err.contains("no quorum"), "{}", r.err);
    assert_eq!(sb.halo("node1", &["cib", "query"]).out, after[0], "a write without quorum changed the CIB");
}

#[test]
fn acknowledged_writes_survive_kill_9_of_every_node() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Arc::new(Sandbox::create("cib-kill", 3));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut attempts = 0;
    let refused_while_up = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for round in 0..4 {
        start_all(&sb, &NODES3);
        // Writers on every node, while the whole cluster is killed under them.
        let stop = Arc::new(AtomicBool::new(false));
        // Writes refused while every node was up (printed: a healthy cluster should refuse none).
        let killing = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = NODES3
            .iter()
            .map(|&n| {
                let (sb, acked, stop, killing) = (sb.clone(), acked.clone(), stop.clone(), killing.clone());
                let refused_while_up = refused_while_up.clone();
                std::thread::spawn(move || {
                    let mut tried = 0;
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("r{round}-{n}-{i}");
                        i += 1;
                        tried += 1;
                        let r = sb.halo(n, &["cib", "create", "-o", "resources", "--xml", &primitive(&id)]);
                        if r.code == 0 {
                            acked.lock().unwrap().insert(id);
                        } else if !killing.load(Ordering::SeqCst) {
                            refused_while_up.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tried
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        killing.store(true, Ordering::SeqCst);
        for n in NODES3 {
            sb.kill(n);
        }
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            attempts += w.join().unwrap();
        }
    }
    start_all(&sb, &NODES3);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "too few writes acknowledged to test anything: {}", acked.len());
    for n in NODES3 {
        wait_for_ids(&sb, n, &acked, Duration::from_secs(20));
    }
    let lost = acked.difference(&primitives(&sb, "node1").unwrap()).count();
    eprintln!(
        "kill -9 of all nodes, 4 rounds: {attempts} writes tried, {} acknowledged, {} refused before the kill, lost acknowledged writes: {lost}",
        acked.len(),
        refused_while_up.load(Ordering::SeqCst)
    );
    assert_eq!(lost, 0);
}

#[test]
fn writers_on_three_nodes_at_once_lose_nothing() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Arc::new(Sandbox::create("cib-concurrent", 3));
    start_all(&sb, &NODES3);
    let writers: Vec<_> = NODES3
        .iter()
        .map(|&n| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let id = format!("{n}-{i}");
                        let r = sb.halo(n, &["cib", "create", "-o", "resources", "--xml", &primitive(&id)]);
                        assert_eq!(r.code, 0, "{id}: {}", r.err);
                        id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let want: BTreeSet<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert_eq!(want.len(), 75);
    for n in NODES3 {
        wait_for_ids(&sb, n, &want, Duration::from_secs(10));
    }
    // Every node applied the same writes in the same order: the same document.
    let docs: BTreeSet<String> = NODES3.iter().map(|n| sb.halo(n, &["cib", "query"]).out).collect();
    assert_eq!(docs.len(), 1, "the nodes' CIBs differ");
    assert_eq!(version(&sb, "node2"), "0.76.0");
}

#[test]
fn two_nodes_survivor_shrinks_the_voters_and_the_peer_catches_up() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("cib-two", 2);
    let both = ["node1", "node2"];
    start_all(&sb, &both);
    assert_eq!(sb.halo("node2", &["cib", "create", "-o", "resources", "--xml", &primitive("before")]).code, 0);

    // node2 is gone (as if fenced); node1 keeps quorum (two_node) but raft has 1 of 2 voters.
    sb.kill("node2");
    sb.wait_quorum("node1", Duration::from_secs(20), "a quorate ring of node1", |q, m| q && m == [1]);
    let r = sb.halo("node1", &["cib", "voters", "--set", "1"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = sb.halo("node1", &["cib", "create", "-o", "resources", "--xml", &primitive("after-fencing")]);
    assert_eq!(r.code, 0, "the survivor refused a write after shrinking the voters: {}", r.err);
    let s = sb.cib_status("node1").unwrap();
    assert_eq!((s["voters"].as_str(), s["learners"].as_str()), ("1", "2"));

    // The peer returns as a learner and catches up before it votes again.
    sb.start("node2");
    let want: BTreeSet<String> = ["before", "after-fencing"].iter().map(|s| s.to_string()).collect();
    wait_for_ids(&sb, "node2", &want, Duration::from_secs(30));
    let t0 = Instant::now();
    loop {
        let r = sb.halo("node1", &["cib", "voters", "--set", "1,2"]);
        if r.code == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "node2 was not promoted back: {}", r.err);
        std::thread::sleep(Duration::from_millis(200));
    }
    // node2 learns that the change committed with the leader's next message.
    let t0 = Instant::now();
    while sb.cib_status("node2").map(|s| s["voters"].clone()).as_deref() != Some("1 2") {
        assert!(t0.elapsed() < Duration::from_secs(5), "node2 does not see itself promoted: {:?}", sb.cib_status("node2"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sb.halo("node2", &["cib", "create", "-o", "resources", "--xml", &primitive("together-again")]).code, 0);
    let want: BTreeSet<String> = ["before", "after-fencing", "together-again"].iter().map(|s| s.to_string()).collect();
    wait_for_ids(&sb, "node1", &want, Duration::from_secs(5));
}

/// `halo` run as the unprivileged user `nobody` (uid/gid 65534).
fn as_nobody(sb: &Sandbox, node: &str, args: &[&str]) -> Run {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(HALO).arg("--dir").arg(sb.node_dir(node)).args(args).uid(65534).gid(65534).output().unwrap();
    Run { code: out.status.code().unwrap_or(-1), out: String::from_utf8_lossy(&out.stdout).into_owned(), err: String::from_utf8_lossy(&out.stderr).into_owned() }
}

#[test]
fn acls_filter_reads_and_refuse_writes_of_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    if !have_loopback_aliases() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (to act as another user) and 127.0.0.13");
        return;
    }
    let sb = Sandbox::create("cib-acl", 1);
    start_all(&sb, &["node1"]);
    let ok = |args: &[&str]| {
        let r = sb.halo("node1", args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.err);
    };
    ok(&["cib", "create", "-o", "resources", "--xml", &primitive("web")]);
    ok(&["cib", "modify", "--xml", r#"<configuration><acls><acl_target id="nobody"><role id="ro-res"/></acl_target><acl_role id="ro-res"><acl_permission id="ro-res-read" kind="read" xpath="/cib/configuration/resources"/></acl_role></acls></configuration>"#]);
    ok(&["cib", "modify", "--xml", r#"<crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="acl-on" name="enable-acl" value="true"/></cluster_property_set></crm_config>"#]);
    // The socket is group haclient where that group exists; here the test opens it to
    // everyone so that `nobody` can connect at all, and ACLs decide the rest.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sb.node_dir("node1").join("run/cibd.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
    for p in [sb.dir.clone(), sb.node_dir("node1"), sb.node_dir("node1").join("run")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let r = as_nobody(&sb, "node1", &["cib", "query"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains(r#"<primitive id="web""#), "{}", r.out);
    assert!(!r.out.contains("enable-acl") && !r.out.contains("acl_role"), "nobody read what it may not: {}", r.out);
    let before = sb.halo("node1", &["cib", "query"]).out;
    let r = as_nobody(&sb, "node1", &["cib", "create", "-o", "resources", "--xml", &primitive("intruder")]);
    assert_eq!(r.code, 4, "{}", r.err);
    assert!(r.err.contains("permission denied"), "{}", r.err);
    let r = as_nobody(&sb, "node1", &["cib", "watch"]);
    assert_eq!(r.code, 4, "{}", r.err);
    assert_eq!(sb.halo("node1", &["cib", "query"]).out, before, "a refused write changed the CIB");
    // Root is not subject to ACLs.
    ok(&["cib", "create", "-o", "resources", "--xml", &primitive("by-root")]);
}

#[test]
fn what_the_cluster_writes_validates_against_pacemakers_schema() {
    let rng = "/usr/share/pacemaker/pacemaker-3.9.rng";
    if !have_loopback_aliases() || !std::path::Path::new(rng).exists() || std::process::Command::new("xmllint").arg("--version").output().is_err() {
        eprintln!("skipped: needs xmllint and {rng}");
        return;
    }
    let sb = Sandbox::create("cib-rng", 1);
    start_all(&sb, &["node1"]);
    // A status write is replicated like any other and bumps num_updates only.
    for (args, want) in [
        (vec!["cib", "create", "-o", "resources", "--xml", r#"<primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2"><instance_attributes id="ip-ia"><nvpair id="ip-ip" name="ip" value="198.18.0.10"/></instance_attributes><operations><op id="ip-mon" name="monitor" interval="10s"/></operations></primitive>"#], "0.2.0"),
        (vec!["cib", "create", "-o", "constraints", "--xml", r#"<rsc_location id="ip-pref" rsc="ip" node="node1" score="50"/>"#], "0.3.0"),
        (vec!["cib", "modify", "--xml", r#"<status><node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"/></status>"#], "0.3.1"),
        (vec!["cib", "delete", "--xml", r#"<rsc_location id="ip-pref"/>"#], "0.4.0"),
    ] {
        let r = sb.halo("node1", &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.err);
        let file = sb.dir.join("cib.xml");
        std::fs::write(&file, sb.halo("node1", &["cib", "query"]).out).unwrap();
        let v = std::process::Command::new("xmllint").args(["--noout", "--relaxng", rng]).arg(&file).output().unwrap();
        assert!(v.status.success(), "after {args:?}: {}", String::from_utf8_lossy(&v.stderr));
        assert_eq!(version(&sb, "node1"), want, "after {args:?}");
    }
}

#[test]
fn replace_patch_and_watch_against_the_running_cluster() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("cib-rpw", 3);
    start_all(&sb, &NODES3);
    // Watch on node3 while node1 writes: every change, and the configuration's alone.
    let watcher = |args: &[&str]| std::process::Command::new(HALO).arg("--dir").arg(sb.node_dir("node3")).args(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let watch = watcher(&["cib", "watch"]);
    let config_watch = watcher(&["cib", "watch", "--configuration"]);
    std::thread::sleep(Duration::from_millis(500));
    // A status-only write.
    let r = sb.halo("node1", &["cib", "create", "-o", "status", "--xml", r#"<node_state id="3" uname="node3" in_ccm="true" crmd="online"/>"#]);
    assert_eq!(r.code, 0, "{}", r.err);
    // replace a section from a file
    let f = sb.dir.join("resources.xml");
    std::fs::write(&f, format!("<resources>{}{}</resources>", primitive("a"), primitive("b"))).unwrap();
    let r = sb.halo("node1", &["cib", "replace", "-o", "resources", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.err);
    // patch: the diff between two CIB files, applied to the cluster. Read where the write
    // was acknowledged (its origin applied it; another node may apply it a moment later).
    let old = sb.halo("node1", &["cib", "query"]).out;
    let new = old.replace(&primitive("b"), &primitive("c"));
    assert_ne!(old, new);
    let (fa, fb, fp) = (sb.dir.join("a.xml"), sb.dir.join("b.xml"), sb.dir.join("p.xml"));
    std::fs::write(&fa, &old).unwrap();
    std::fs::write(&fb, &new).unwrap();
    let d = std::process::Command::new(HALO).args(["cib", "diff"]).arg(&fa).arg(&fb).output().unwrap();
    assert_eq!(d.status.code(), Some(1), "the files differ");
    std::fs::write(&fp, &d.stdout).unwrap();
    let r = sb.halo("node2", &["cib", "patch", fp.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.err);
    let want: BTreeSet<String> = ["a", "c"].iter().map(|s| s.to_string()).collect();
    for n in NODES3 {
        wait_for_ids(&sb, n, &want, Duration::from_secs(5));
        assert_eq!(primitives(&sb, n).unwrap(), want);
    }
    // The same patch again is stale: refused, nothing changes.
    let r = sb.halo("node2", &["cib", "patch", fp.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    std::thread::sleep(Duration::from_millis(300));
    let mut texts = Vec::new();
    for w in [watch, config_watch] {
        // SAFETY: SIGTERM to a watcher this test started.
        unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
        texts.push(String::from_utf8_lossy(&w.wait_with_output().unwrap().stdout).to_string());
    }
    for (text, patches) in texts.iter().zip([3, 2]) {
        assert_eq!(text.matches("<diff format=\"2\">").count(), patches, "one patch per committed change (of the configuration: 2):\n{text}");
        assert!(text.contains("primitive[@id='c']") || text.contains(r#"<primitive id="c""#), "{text}");
    }
    assert!(texts[0].contains("node_state") && !texts[1].contains("node_state"), "{texts:?}");
}

#[test]
fn a_node_far_behind_catches_up_from_a_snapshot() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("cib-snap", 3);
    start_all(&sb, &NODES3);
    sb.kill("node3");
    sb.wait_quorum("node1", Duration::from_secs(20), "a ring of two", |q, m| q && m == [1, 2]);
    sb.wait_cib_ready(&["node1", "node2"], Duration::from_secs(20));
    // More writes than the snapshot interval (1000) plus the log kept behind it (500), so
    // the leader's log no longer holds what node3 misses.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let n = 1600;
    rt.block_on(async {
        use proto::cib as pb;
        let ch = proto::connect_unix(sb.node_dir("node1").join("run/cibd.sock")).await.unwrap();
        let mut c = pb::cib_client::CibClient::new(ch);
        for i in 0..n {
            let w = pb::WriteRequest {
                op: Some(pb::write_request::Op::Modify(pb::Modify {
                    xml: format!(r#"<crm_config><cluster_property_set id="opts"><nvpair id="counter" name="counter" value="{i}"/></cluster_property_set></crm_config>"#),
                })),
            };
            let r = c.write(w).await.unwrap().into_inner();
            assert!(r.error.is_none(), "write {i}: {:?}", r.error);
        }
    });
    sb.start("node3");
    let want = sb.halo("node1", &["cib", "query"]).out;
    let t0 = Instant::now();
    loop {
        let got = sb.halo("node3", &["cib", "query"]);
        if got.code == 0 && got.out == want {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "node3 did not catch up: {}", sb.cib_status("node3").map(|s| format!("{s:?}")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(sb.node_dir("node3").join("log/halo.log")).unwrap_or_default();
    assert!(log.contains("restored from the leader's snapshot"), "node3 caught up without a snapshot; the test did not test it");
    assert!(want.contains(&format!(r#"value="{}""#, n - 1)));
}
