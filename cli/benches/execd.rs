//! Executor figures on a 1-node sandbox: the overhead of one op through halo-execd's gRPC
//! API over running the same agent directly (fork/exec, same environment size), and 1,000
//! resources with 10 s recurring monitors: do the runs keep their interval, and what CPU
//! does halo-execd use. The agents are tiny shell scripts in a temporary agents directory
//! (`HALO_AGENTS_DIR`), so the figures are the executor's, not an agent's.
//! Run: `cargo bench -p halo-cli --bench execd`.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use proto::execd as pb;
use proto::execd::executor_client::ExecutorClient;

#[path = "../tests/support/mod.rs"]
mod support;
use support::Sandbox;

fn agent(dir: &Path, name: &str, body: &str) {
    let p = dir.join("ocf/bench").join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn op(rsc: &str, agent: &str, action: &str, interval_ms: u64) -> pb::OpRequest {
    pb::OpRequest { rsc: rsc.into(), agent: agent.into(), action: action.into(), params: HashMap::new(), meta: HashMap::new(), interval_ms, timeout_ms: 20_000 }
}

fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = s.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    rest.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + rest.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() {
    let base = std::env::temp_dir().join(format!("halo-bench-execd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let agents = base.join("agents");
    let log = base.join("runs.log");
    agent(&agents, "noop", "exit 0");
    agent(&agents, "tick", &format!("[ \"$1\" = monitor ] && echo \"$OCF_RESOURCE_INSTANCE $(date +%s%N)\" >> {}\nexit 0", log.display()));
    let sb = Sandbox::create("bench-execd", 1);
    // halod, and so halo-execd, inherit it from `halo sandbox start`.
    std::env::set_var("HALO_AGENTS_DIR", &agents);
    sb.start("node1");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = ExecutorClient::new(sb.channel("node1", "execd").await);

        // 1. Overhead of one op.
        let n = 300;
        let noop = agents.join("ocf/bench/noop");
        let env: Vec<(String, String)> = (0..14).map(|i| (format!("OCF_VAR_{i}"), "x".repeat(20))).collect();
        let mut direct = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let st = tokio::process::Command::new(&noop).arg("monitor").env_clear().envs(env.clone()).process_group(0).status().await.unwrap();
            assert!(st.success());
            direct.push(t.elapsed());
        }
        let mut via = Vec::new();
        for i in 0..n {
            let t = Instant::now();
            let r = c.exec(op(&format!("n{}", i % 10), "ocf:bench:noop", "monitor", 0)).await.unwrap().into_inner();
            assert_eq!(r.rc, 0, "{}", r.exit_reason);
            via.push(t.elapsed());
        }
        let (d, v) = (median_ms(&mut direct), median_ms(&mut via));
        println!("one op, median of {n}: agent run directly {d:.2} ms, through halo-execd's API {v:.2} ms: overhead {:.2} ms (target < 2 ms)", v - d);

        // 2. 1,000 resources with 10 s monitors.
        let pid: i32 = std::fs::read_to_string(sb.node_dir("node1").join("run/execd.pid")).unwrap().trim().parse().unwrap();
        let resources = 1000;
        let t_reg = Instant::now();
        for i in 0..resources {
            c.recur(op(&format!("r{i}"), "ocf:bench:tick", "monitor", 10_000)).await.unwrap();
        }
        let reg = t_reg.elapsed();
        let cpu0 = cpu_ticks(pid);
        let window = Duration::from_secs(35);
        tokio::time::sleep(window).await;
        let cpu = (cpu_ticks(pid) - cpu0) as f64 / 100.0 / window.as_secs_f64() * 100.0;
        for i in 0..resources {
            let _ = c.cancel(pb::CancelRequest { rsc: format!("r{i}"), action: "monitor".into(), interval_ms: 10_000 }).await;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut runs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for l in text.lines() {
            if let Some((r, t)) = l.split_once(' ') {
                if let Ok(ns) = t.trim().parse::<u64>() {
                    runs.entry(r).or_default().push(ns);
                }
            }
        }
        let mut gaps: Vec<f64> = runs.values().flat_map(|v| v.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9)).collect();
        gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let total: usize = runs.values().map(Vec::len).sum();
        let late = gaps.iter().filter(|&&g| g > 10.5).count();
        println!(
            "{resources} resources, 10 s monitors, {}s: registered in {:.2} s; {total} runs ({} resources ran); gap between runs of one resource: median {:.3} s, p99 {:.3} s, max {:.3} s; gaps over 10.5 s: {late} of {}; halo-execd CPU {cpu:.1} % of a core",
            window.as_secs(),
            reg.as_secs_f64(),
            runs.len(),
            gaps.get(gaps.len() / 2).copied().unwrap_or(0.0),
            gaps.get(gaps.len() * 99 / 100).copied().unwrap_or(0.0),
            gaps.last().copied().unwrap_or(0.0),
            gaps.len()
        );
    });
    drop(sb);
    let _ = std::fs::remove_dir_all(&base);
}
