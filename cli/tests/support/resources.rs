//! What the controller's sandbox tests watch: the agents' state files on the live nodes
//! (ocf:heartbeat:Dummy and the tests' own agents keep `run/rsctmp/Dummy-<rsc>.state`), the
//! status, and a watcher that samples every 20 ms that nothing is active on two nodes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Sandbox;

pub const DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";
pub const NODES: [&str; 3] = ["node1", "node2", "node3"];

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

pub fn halod_alive(sb: &Sandbox, node: &str) -> bool {
    halod_up(&sb.node_dir(node))
}

pub fn halod_up(node_dir: &Path) -> bool {
    std::fs::read_to_string(node_dir.join("halod.pid")).ok().and_then(|s| s.trim().parse().ok()).is_some_and(alive)
}

/// Where ocf:heartbeat:Dummy (and the test agent) keep their state.
pub fn state_path(node_dir: &Path, rsc: &str) -> PathBuf {
    node_dir.join("run").join("rsctmp").join(format!("Dummy-{rsc}.state"))
}

pub fn state_file(sb: &Sandbox, node: &str, rsc: &str) -> PathBuf {
    state_path(&sb.node_dir(node), rsc)
}

/// The live nodes where the resource's state file exists.
pub fn active_in(dir: &Path, rsc: &str) -> Vec<String> {
    NODES
        .iter()
        .filter(|n| {
            let d = dir.join(n);
            halod_up(&d) && state_path(&d, rsc).exists()
        })
        .map(|n| n.to_string())
        .collect()
}

pub fn active_on(sb: &Sandbox, rsc: &str) -> Vec<String> {
    active_in(&sb.dir, rsc)
}

pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `f` holds for the whole `span` (checked every 100 ms), else panic with `what`.
pub fn hold(span: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let t0 = Instant::now();
    while t0.elapsed() < span {
        if let Err(e) = f() {
            panic!("{what}: {e} (after {:?})", t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn status_xml(sb: &Sandbox, node: &str) -> String {
    sb.halo(node, &["cib", "query", "--section", "status"]).out
}

/// Wait until node1's CIB names a DC and `nodes` nodes have joined it.
pub fn wait_formed(sb: &Sandbox, nodes: usize, within: Duration) {
    wait_for(within, &format!("{nodes} nodes joined under a DC"), || {
        let s = status_xml(sb, "node1");
        (s.matches(r#"join="member""#).count() == nodes && sb.halo("node1", &["cib", "query"]).out.contains("dc-uuid=")).then_some(())
    });
}

pub fn status_json(sb: &Sandbox, node: &str) -> serde_json::Value {
    let r = sb.halo(node, &["status", "--output", "json"]);
    assert_eq!(r.code, 0, "halo status --output json on {node}: {}", r.err);
    serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}", r.out))
}

/// `halo status --output json` once `ok` holds for it (a result follows the agent's own
/// effect, such as its state file, by a moment: until it is recorded a start shows as
/// Starting).
pub fn status_json_when(sb: &Sandbox, node: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    wait_for(Duration::from_secs(10), what, || Some(status_json(sb, node)).filter(|v| ok(v)))
}

/// Whether the JSON status shows `rsc` in `role`.
pub fn has_role(v: &serde_json::Value, rsc: &str, role: &str) -> bool {
    v["resources"].as_array().is_some_and(|a| a.iter().any(|r| r["id"] == rsc && r["role"] == role))
}

pub fn rsc_json(v: &serde_json::Value, id: &str) -> serde_json::Value {
    v["resources"].as_array().and_then(|a| a.iter().find(|r| r["id"] == id).cloned()).unwrap_or_else(|| panic!("{id} not in {v}"))
}

pub struct Watcher {
    stop: Arc<AtomicBool>,
    twice: Arc<Mutex<Vec<(String, Vec<String>)>>>,
    gaps: Arc<Mutex<Vec<String>>>,
    keep: Arc<Mutex<Option<(String, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub fn start(sb: &Sandbox, rscs: &[&str]) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let twice = Arc::new(Mutex::new(Vec::new()));
        let gaps = Arc::new(Mutex::new(Vec::new()));
        let keep: Arc<Mutex<Option<(String, String)>>> = Arc::new(Mutex::new(None));
        let dir = sb.dir.clone();
        let rscs: Vec<String> = rscs.iter().map(|s| s.to_string()).collect();
        let (s, t, g, k) = (stop.clone(), twice.clone(), gaps.clone(), keep.clone());
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for r in &rscs {
                    let on = active_in(&dir, r);
                    if on.len() > 1 {
                        t.lock().unwrap().push((r.clone(), on));
                    }
                }
                if let Some((node, rsc)) = k.lock().unwrap().clone() {
                    if !state_path(&dir.join(&node), &rsc).exists() {
                        g.lock().unwrap().push(format!("{rsc} missing on {node} at {:?}", t0.elapsed()));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watcher { stop, twice, gaps, keep, thread: Some(thread) }
    }

    /// From now on, the state file of `rsc` on `node` must never be missing.
    pub fn keep(&self, node: &str, rsc: &str) {
        *self.keep.lock().unwrap() = Some((node.to_string(), rsc.to_string()));
    }

    pub fn unkeep(&self) {
        *self.keep.lock().unwrap() = None;
    }

    pub fn gaps(&self) -> Vec<String> {
        self.gaps.lock().unwrap().clone()
    }

    pub fn twice(&self) -> Vec<(String, Vec<String>)> {
        self.twice.lock().unwrap().clone()
    }

    pub fn finish(mut self) -> Vec<(String, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.twice()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}


/// Whether a test of resources must be skipped here, saying why: the sandbox's loopback
/// addresses cannot be bound, or resource-agents' Dummy is not installed.
pub fn skip_without_dummy() -> bool {
    if !super::have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return true;
    }
    if !std::path::Path::new(DUMMY).exists() {
        eprintln!("skipped: {DUMMY} is not installed (resource-agents)");
        return true;
    }
    false
}
