//! A sandbox cluster for multi-process tests: created in a temporary directory with a
//! port of its own, every node started through `halo sandbox start` (halod in its own
//! process group), and on drop every node's process group killed by its pid file, even
//! when an assertion failed.

#![allow(dead_code)]

pub mod resources;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub const HALO: &str = env!("CARGO_BIN_EXE_halo");

pub struct Sandbox {
    pub dir: PathBuf,
    pub port: u16,
    nodes: u32,
}

impl Sandbox {
    /// A sandbox whose nodes run no controller: the daemons' own tests drive them by hand.
    pub fn create(name: &str, nodes: u32) -> Sandbox {
        Sandbox::create_with(name, nodes, false)
    }

    /// A sandbox of whole cluster nodes, controller included.
    pub fn create_cluster(name: &str, nodes: u32) -> Sandbox {
        Sandbox::create_with(name, nodes, true)
    }

    fn create_with(name: &str, nodes: u32, controller: bool) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("halo-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A port per test run so parallel runs and a real cluster never meet.
        let salt: u32 = name.bytes().map(u32::from).sum();
        let port = 20000 + ((std::process::id() * 13 + salt * 101) % 20000) as u16;
        let mut cmd = Command::new(HALO);
        cmd.args(["sandbox", "create"]).arg(&dir).args(["--nodes", &nodes.to_string(), "--port", &port.to_string()]);
        if !controller {
            cmd.arg("--no-controller");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "sandbox create: {}", String::from_utf8_lossy(&out.stderr));
        Sandbox { dir, port, nodes }
    }

    pub fn start(&self, node: &str) {
        let out = Command::new(HALO).args(["sandbox", "start"]).arg(&self.dir).arg(node).output().unwrap();
        assert!(out.status.success(), "start {node}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A clean stop (`halo sandbox stop`: SIGTERM to halod, which waits for its daemons).
    pub fn stop(&self, node: &str) {
        let out = Command::new(HALO).args(["sandbox", "stop"]).arg(&self.dir).arg(node).output().unwrap();
        assert!(out.status.success(), "stop {node}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn kill(&self, node: &str) {
        let out = Command::new(HALO).args(["sandbox", "kill"]).arg(&self.dir).arg(node).output().unwrap();
        assert!(out.status.success(), "kill {node}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    pub fn json(&self, node: &str, what: &str) -> Option<serde_json::Value> {
        let d = self.node_dir(node);
        let out = Command::new(HALO).arg("--dir").arg(&d).args([what, "status", "--output", "json"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn quorum(&self, node: &str) -> Option<(bool, Vec<u64>)> {
        let v = self.json(node, "quorum")?;
        let members = v["members"].as_array()?.iter().filter_map(|m| m["nodeid"].as_u64()).collect();
        Some((v["quorate"].as_bool()?, members))
    }

    /// Poll until `pred` holds for `node`'s quorum view, or panic at the deadline.
    pub fn wait_quorum(&self, node: &str, within: Duration, what: &str, pred: impl Fn(bool, &[u64]) -> bool) -> Duration {
        let t0 = Instant::now();
        loop {
            if let Some((q, m)) = self.quorum(node) {
                if pred(q, &m) {
                    return t0.elapsed();
                }
            }
            assert!(t0.elapsed() < within, "{node}: {what} not reached within {within:?} (last: {:?})", self.quorum(node));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn packets(&self, node: &str) -> serde_json::Value {
        self.json(node, "membership").expect("membership status")["packets"].clone()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            let pidf = self.dir.join(format!("node{i}")).join("halod.pid");
            if let Some(pid) = std::fs::read_to_string(&pidf).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                // SAFETY: SIGKILL to the process group of a halod this test started.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        if std::thread::panicking() {
            // A failed test keeps its nodes' logs (set HALO_TEST_KEEP=1 to keep everything).
            let keep = std::env::temp_dir().join(format!("halo-test-logs-{}", self.dir.file_name().unwrap_or_default().to_string_lossy()));
            for i in 1..=self.nodes {
                let log = self.dir.join(format!("node{i}")).join("log").join("halo.log");
                let _ = std::fs::create_dir_all(&keep);
                let _ = std::fs::copy(&log, keep.join(format!("node{i}.log")));
            }
            eprintln!("the nodes' logs are kept in {}", keep.display());
        }
        if std::env::var_os("HALO_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn have_loopback_aliases() -> bool {
    UdpSocket::bind("127.0.0.13:0").is_ok()
}


/// What one `halo` run gave: exit code, stdout, stderr.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Sandbox {
    /// Run `halo --dir NODE ARGS...`.
    pub fn halo(&self, node: &str, args: &[&str]) -> Run {
        let out = Command::new(HALO).arg("--dir").arg(self.node_dir(node)).args(args).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `halo cib status` of a node as (key, value) pairs; None if cibd does not answer.
    pub fn cib_status(&self, node: &str) -> Option<std::collections::BTreeMap<String, String>> {
        let r = self.halo(node, &["cib", "status"]);
        (r.code == 0).then(|| {
            r.out.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
        })
    }

    /// Wait until every listed node's cibd knows the same raft leader and is quorate.
    pub fn wait_cib_ready(&self, nodes: &[&str], within: Duration) {
        let t0 = Instant::now();
        loop {
            let leaders: Vec<Option<String>> = nodes
                .iter()
                .map(|n| self.cib_status(n).filter(|s| s["quorate"] == "yes" && s["leader"] != "none").map(|s| s["leader"].clone()))
                .collect();
            if leaders.iter().all(|l| l.is_some() && *l == leaders[0]) {
                return;
            }
            assert!(t0.elapsed() < within, "the CIB of {nodes:?} had no common leader within {within:?}: {leaders:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A channel to one of the node's daemons (`execd`, `fenced`, ...), waiting up to 20 s
    /// for it to come up.
    pub async fn channel(&self, node: &str, daemon: &str) -> tonic::transport::Channel {
        let sock = self.node_dir(node).join("run").join(format!("{daemon}.sock"));
        proto::connect_unix_within(sock, Duration::from_secs(20)).await.unwrap_or_else(|e| panic!("halo-{daemon} of {node}: {e}"))
    }

    pub fn pid_of(&self, node: &str, daemon: &str) -> Option<i32> {
        std::fs::read_to_string(self.node_dir(node).join("run").join(format!("{daemon}.pid"))).ok()?.trim().parse().ok()
    }
}
