//! Controller figures on 3-node sandboxes (fence_sandbox, stonith-enabled, default token):
//! formation (sandbox start to a DC with 3 nodes joined); failover of a node kill, 10 runs,
//! total and the controller's share (from the survivors' new ring to the resource started
//! elsewhere, fencing included); a failed monitor recovered in place (1 s interval);
//! 1,000 ocf:heartbeat:Dummy primitives added at once (time until all run, one scheduler
//! run at that size, RSS of the DC's halo-controld).
//! Run: `cargo bench -p halo-cli --bench controld` (needs resource-agents' Dummy).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

#[path = "../tests/support/mod.rs"]
mod support;
use support::Sandbox;

const NODES: [&str; 3] = ["node1", "node2", "node3"];
const DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";

fn state(sb: &Sandbox, node: &str, rsc: &str) -> std::path::PathBuf {
    sb.node_dir(node).join("run").join("rsctmp").join(format!("Dummy-{rsc}.state"))
}

fn halod_alive(sb: &Sandbox, node: &str) -> bool {
    let pid: Option<i32> = std::fs::read_to_string(sb.node_dir(node).join("halod.pid")).ok().and_then(|s| s.trim().parse().ok());
    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}

fn running_on(sb: &Sandbox, rsc: &str) -> Option<String> {
    NODES.iter().find(|n| halod_alive(sb, n) && state(sb, n, rsc).exists()).map(|n| n.to_string())
}

fn wait<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn joined(sb: &Sandbox, n: usize) -> bool {
    let s = sb.halo("node1", &["cib", "query"]).out;
    s.contains("dc-uuid=") && s.matches(r#"join="member""#).count() == n
}

/// Epoch seconds (fractional) of a log line's timestamp (`2026-12-03T09:37:14.760859Z`).
fn line_time(line: &str) -> Option<f64> {
    let start = line.find("20")?;
    let end = start + line[start..].find('Z')?;
    let t = chrono::DateTime::parse_from_rfc3339(&format!("{}Z", &line[start..end])).ok()?;
    Some(t.timestamp_micros() as f64 / 1e6)
}

/// The first log line after `after` (epoch s) containing every needle: its time.
fn first_after(log: &Path, after: f64, needles: &[&str]) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().filter(|l| needles.iter().all(|n| l.contains(n))).filter_map(line_time).find(|&t| t > after)
}

fn epoch_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn stats(name: &str, v: &mut [f64], unit: &str) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{name}: median {:.0} {unit}, max {:.0} {unit} ({} runs)", v[v.len() / 2], v[v.len() - 1], v.len());
}

fn cluster(name: &str) -> Sandbox {
    let sb = Sandbox::create_cluster(name, 3);
    for n in NODES {
        sb.start(n);
    }
    wait(Duration::from_secs(30), "formation", || joined(&sb, 3).then_some(()));
    let r = sb.halo("node1", &["stonith", "create", "fs", "fence_sandbox", "pcmk_host_list=node1 node2 node3"]);
    assert_eq!(r.code, 0, "{}", r.err);
    sb
}

fn main() {
    if !Path::new(DUMMY).exists() {
        println!("skipped: {DUMMY} is not installed (resource-agents)");
        return;
    }
    // HALO_BENCH_ONLY=formation|failover|many runs one part.
    let only = std::env::var("HALO_BENCH_ONLY").ok();
    let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
    if part("formation") {
        formation();
    }
    if part("failover") {
        failover();
    }
    if part("many") {
        many();
    }
}

fn formation() {
    let mut formation = Vec::new();
    for i in 0..5 {
        let sb = Sandbox::create_cluster(&format!("bench-ctl-form{i}"), 3);
        let t0 = Instant::now();
        for n in NODES {
            sb.start(n);
        }
        wait(Duration::from_secs(30), "formation", || joined(&sb, 3).then_some(()));
        formation.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    stats("formation (sandbox start to a DC with 3 nodes joined)", &mut formation, "ms");
}

fn failover() {
    // 2. Failover of a node kill, and 3. a failed monitor recovered in place.
    let sb = cluster("bench-ctl-fail");
    let dummy = r#"<primitive id="d1" class="ocf" provider="heartbeat" type="Dummy"><operations><op id="d1-mon" name="monitor" interval="1s" timeout="20s"/></operations></primitive>"#;
    assert_eq!(sb.halo("node1", &["cib", "create", "-o", "resources", "--xml", dummy]).code, 0);
    wait(Duration::from_secs(20), "d1 started", || running_on(&sb, "d1"));
    let (mut monitor_total, mut monitor_ctl) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let on = wait(Duration::from_secs(20), "d1 running", || running_on(&sb, "d1"));
        std::thread::sleep(Duration::from_millis(300));
        let t0 = epoch_now();
        let started = Instant::now();
        std::fs::remove_file(state(&sb, &on, "d1")).unwrap();
        wait(Duration::from_secs(20), "d1 recovered", || state(&sb, &on, "d1").exists().then_some(()));
        monitor_total.push(started.elapsed().as_secs_f64() * 1000.0);
        let log = sb.node_dir(&on).join("log").join("halo.log");
        let failed = wait(Duration::from_secs(5), "the failed monitor in the log", || first_after(&log, t0, &["d1_monitor_1000", "rc 7"]));
        let restarted = wait(Duration::from_secs(5), "the restart in the log", || first_after(&log, failed, &["d1_start_0", "rc 0"]));
        monitor_ctl.push((restarted - failed) * 1000.0);
        // Clean the fail count so the next round starts alike.
        std::thread::sleep(Duration::from_millis(500));
    }
    stats("failed monitor (1 s interval) recovered in place: state file gone to running again", &mut monitor_total, "ms");
    stats("  of which: failed monitor's result to the restart's completion", &mut monitor_ctl, "ms");

    let (mut total, mut share) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        wait(Duration::from_secs(60), "all joined", || joined(&sb, 3).then_some(()));
        let victim = wait(Duration::from_secs(20), "d1 running", || running_on(&sb, "d1"));
        std::thread::sleep(Duration::from_millis(500));
        let t0 = epoch_now();
        let killed = Instant::now();
        sb.kill(&victim);
        let moved = wait(Duration::from_secs(30), "d1 elsewhere", || running_on(&sb, "d1").filter(|n| *n != victim));
        let t_total = killed.elapsed().as_secs_f64();
        total.push(t_total * 1000.0);
        let log = sb.node_dir(&moved).join("log").join("halo.log");
        let ring = wait(Duration::from_secs(5), "the new ring in the log", || first_after(&log, t0, &["membershipd::core", "ring ", "members"]));
        share.push((t0 + t_total - ring) * 1000.0);
    }
    stats("failover of a node kill: kill to the resource running elsewhere", &mut total, "ms");
    stats("  controller's share: survivors' new ring to the resource running (fencing included)", &mut share, "ms");
}

/// What the agents' work for `n` resources (a probe on each of 3 nodes, then a start)
/// costs without halo: the agent run directly with an OCF environment, one runner per
/// core. Seconds.
fn agents_alone(dir: &Path, n: usize) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let threads = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(2);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= 4 * n {
                    return;
                }
                let (rsc, action) = if i < 3 * n { (i / 3, "monitor") } else { (i - 3 * n, "start") };
                let state = dir.join(format!("r{rsc}-{}.state", if action == "monitor" { i % 3 } else { 0 }));
                let st = std::process::Command::new(DUMMY)
                    .arg(action)
                    .env_clear()
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .env("OCF_ROOT", "/usr/lib/ocf")
                    .env("OCF_RESOURCE_INSTANCE", format!("r{rsc}"))
                    .env("OCF_RESKEY_state", &state)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.code().is_some(), "the agent ran");
            });
        }
    });
    t0.elapsed().as_secs_f64()
}

const DAEMONS: [&str; 5] = ["membershipd", "cibd", "execd", "fenced", "controld"];

/// CPU seconds (user + system) each daemon of each node has used so far, by (node, daemon).
fn daemon_cpu(sb: &Sandbox) -> Vec<((String, String), f64)> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = Vec::new();
    for node in NODES {
        for d in DAEMONS {
            let Some(pid) = sb.pid_of(node, d) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // Fields after the command's closing parenthesis: utime and stime are 14 and 15.
            let rest: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            out.push(((node.to_string(), d.to_string()), (field(14) + field(15)) / tick));
        }
    }
    out
}

fn many() {
    // 4. 1,000 primitives at once.
    let sb = cluster("bench-ctl-1000");
    let n = 1000;
    let mut xml = String::from("<resources>");
    for i in 0..n {
        xml.push_str(&format!(r#"<primitive id="r{i}" class="ocf" provider="heartbeat" type="Dummy"/>"#));
    }
    xml.push_str("</resources>");
    let file = sb.dir.join("many.xml");
    std::fs::write(&file, &xml).unwrap();
    let cpu0 = daemon_cpu(&sb);
    let ring = |sb: &Sandbox| sb.json("node1", "membership").unwrap_or_default();
    let ring0 = ring(&sb);
    let t0 = Instant::now();
    let r = sb.halo("node1", &["cib", "create", "-o", "resources", "-x", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.err);
    let count = |sb: &Sandbox| NODES.iter().map(|nd| std::fs::read_dir(sb.node_dir(nd).join("run").join("rsctmp")).map(|d| d.count()).unwrap_or(0)).sum::<usize>();
    let mut last = 0;
    wait(Duration::from_secs(600), "1,000 started", || {
        // Look every 50 ms: reading 3,000 directory entries takes CPU the cluster needs.
        std::thread::sleep(Duration::from_millis(45));
        let c = count(&sb);
        if c / 100 != last / 100 {
            eprintln!("  {c} running after {:.1} s", t0.elapsed().as_secs_f64());
        }
        last = c;
        (c >= n).then_some(())
    });
    println!("1,000 Dummy primitives added at once: all running after {:.1} s", t0.elapsed().as_secs_f64());
    // Where the daemons' CPU went meanwhile (a daemon respawned in between is left out).
    let cpu1 = daemon_cpu(&sb);
    let mut per_daemon = Vec::new();
    for d in DAEMONS {
        let used: Vec<f64> = cpu1.iter().filter(|((_, dd), _)| dd == d).filter_map(|(k, v)| cpu0.iter().find(|(k0, _)| k0 == k).map(|(_, v0)| v - v0)).collect();
        per_daemon.push(format!("{d} {:.2}", used.iter().sum::<f64>()));
    }
    println!("  CPU seconds of the daemons meanwhile, 3 nodes summed: {}", per_daemon.join(", "));
    let ring1 = ring(&sb);
    let moved = |f: &dyn Fn(&serde_json::Value) -> Option<u64>| f(&ring1).unwrap_or(0).saturating_sub(f(&ring0).unwrap_or(0));
    println!(
        "  node1's membership layer meanwhile: {} packets accepted, {} group messages delivered",
        moved(&|v| v["packets"]["accepted"].as_u64()),
        moved(&|v| v["delivered"].as_u64())
    );
    let cib_xml = sb.halo("node1", &["cib", "query"]).out;
    let cib = cib::Cib::parse(&cib_xml).unwrap();
    let now = chrono::Utc::now().naive_utc();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let g = scheduler::schedule(&cib, now).graph();
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = g;
    }
    stats("one scheduler run on that CIB (1,000 resources, 3 nodes, their status)", &mut runs, "ms");
    // The floor under that figure on this machine: the same agent runs alone.
    let floor = agents_alone(&sb.dir.join("floor"), n);
    println!("  the agents alone ({} probes and {n} starts of Dummy run directly, as many at once as cores): {floor:.1} s", 3 * n);
    let dc = cib.attr("dc-uuid").unwrap_or("1").to_string();
    let dc_node = format!("node{dc}");
    // The work behind it: status writes committed (num_updates counts them since the
    // resources were added) and transitions the DC ran.
    let log = std::fs::read_to_string(sb.node_dir(&dc_node).join("log").join("halo.log")).unwrap_or_default();
    let transitions = log.lines().filter(|l| l.contains("controld::core") && l.contains(" transition ") && l.contains(" actions")).count();
    println!("  status writes committed: {}; transitions: {transitions}", cib.attr("num_updates").unwrap_or("?"));
    if let Some(pid) = sb.pid_of(&dc_node, "controld") {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?").trim().to_string();
        println!("halo-controld on the DC ({dc_node}): {rss}");
    }
}
