//! Membership figures on sandbox clusters (loopback, one host): time to form a ring of 3
//! and of 16 nodes, time to see a killed node at token 1000 ms and 300 ms, process-group
//! throughput on 3 nodes, and the idle CPU of a 3-node ring.
//! Run: `cargo bench -p halo-cli --bench membership` (needs 127.0.0.11.. bindable).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");

struct Sandbox {
    dir: PathBuf,
    nodes: u32,
}

impl Sandbox {
    fn new(tag: &str, nodes: u32, token: u64, port: u16) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("halo-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ok = Command::new(HALO)
            .args(["sandbox", "create"])
            .arg(&dir)
            .args(["--nodes", &nodes.to_string(), "--port", &port.to_string(), "--token", &token.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "sandbox create failed");
        Sandbox { dir, nodes }
    }

    fn start_all(&self) {
        assert!(Command::new(HALO).args(["sandbox", "start"]).arg(&self.dir).output().unwrap().status.success());
    }

    fn members(&self, node: &str) -> Option<usize> {
        let out = Command::new(HALO).arg("--dir").arg(self.dir.join(node)).args(["quorum", "status", "--output", "json"]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v["members"].as_array()?.len())
    }

    fn wait_members(&self, node: &str, n: usize, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.members(node) == Some(n) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn daemon_pids(&self) -> Vec<i32> {
        (1..=self.nodes)
            .filter_map(|i| std::fs::read_to_string(self.dir.join(format!("node{i}/run/membershipd.pid"))).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            if let Some(pid) = std::fs::read_to_string(self.dir.join(format!("node{i}/halod.pid"))).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                // SAFETY: SIGKILL to the process group of a halod this benchmark started.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

fn formation(nodes: u32, port: u16) {
    let sb = Sandbox::new(&format!("form{nodes}"), nodes, 1000, port);
    let t0 = Instant::now();
    sb.start_all();
    match sb.wait_members("node1", nodes as usize, Duration::from_secs(60)) {
        Some(_) => println!("ring of {nodes}: formed {:.0} ms after `sandbox start` began", t0.elapsed().as_secs_f64() * 1000.0),
        None => println!("ring of {nodes}: NOT formed within 60 s"),
    }
}

fn detection(token: u64, port: u16) {
    let sb = Sandbox::new(&format!("detect{token}"), 3, token, port);
    sb.start_all();
    if sb.wait_members("node1", 3, Duration::from_secs(30)).is_none() {
        println!("detection at token {token}: ring did not form");
        return;
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid: i32 = std::fs::read_to_string(sb.dir.join("node3/halod.pid")).unwrap().trim().parse().unwrap();
    let t0 = Instant::now();
    // SAFETY: power loss of node3: SIGKILL its process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let seen = sb.wait_members("node1", 2, Duration::from_secs(30));
    let runtime = token + 650;
    match seen {
        Some(_) => println!(
            "detection at token {token} ms (runtime token {runtime}, consensus {}): killed node gone from node1's quorum after {:.0} ms",
            runtime * 6 / 5,
            t0.elapsed().as_secs_f64() * 1000.0
        ),
        None => println!("detection at token {token}: not seen within 30 s"),
    }
}

fn throughput(port: u16) {
    let sb = Sandbox::new("cpg", 3, 1000, port);
    sb.start_all();
    if sb.wait_members("node1", 3, Duration::from_secs(30)).is_none() {
        println!("cpg bench: ring did not form");
        return;
    }
    // Members on the other nodes make the group a real 3-node group.
    let mut listeners: Vec<std::process::Child> = ["node2", "node3"]
        .iter()
        .map(|n| Command::new(HALO).arg("--dir").arg(sb.dir.join(n)).args(["cpg", "listen", "halo-bench"]).stdout(std::process::Stdio::null()).spawn().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for size in [100usize, 1000, 10_000] {
        let out = Command::new(HALO).arg("--dir").arg(sb.dir.join("node1")).args(["cpg", "bench", "--seconds", "3", "--size", &size.to_string()]).output().unwrap();
        println!("cpg bench on 3 nodes, {size} B: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    for l in listeners.iter_mut() {
        let _ = l.kill();
        let _ = l.wait();
    }
}

fn idle_cpu(port: u16) {
    let sb = Sandbox::new("idle", 3, 1000, port);
    sb.start_all();
    if sb.wait_members("node1", 3, Duration::from_secs(30)).is_none() {
        println!("idle CPU: ring did not form");
        return;
    }
    std::thread::sleep(Duration::from_secs(2));
    let pids = sb.daemon_pids();
    let before: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
    let secs = 10;
    std::thread::sleep(Duration::from_secs(secs));
    let after: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pct = (after - before) as f64 / hz / secs as f64 * 100.0 / pids.len().max(1) as f64;
    println!("idle CPU of a 3-node ring: {pct:.2}% of one core per node (membershipd, {secs} s)");
}

fn main() {
    if std::net::UdpSocket::bind("127.0.0.26:0").is_err() {
        println!("127.0.0.11-26 cannot be bound here: no membership figures");
        return;
    }
    let base = 30000 + (std::process::id() % 10000) as u16;
    formation(3, base);
    formation(16, base + 1);
    detection(1000, base + 2);
    detection(300, base + 3);
    throughput(base + 4);
    idle_cpu(base + 5);

}
