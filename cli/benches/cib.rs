//! Replicated-CIB figures on a 3-node sandbox (loopback, one host): committed small writes
//! per second with latency p50/p99, sequential and with 8 concurrent writers, through the
//! gRPC API of a follower and of the leader; then a 10,000-resource CIB from
//! `../shared/tools/gen-cib` loaded in batches: load time, resident memory of each
//! halo-cibd, and write latency at that size.
//! Run: `cargo bench -p halo-cli --bench cib` (needs 127.0.0.11-13 bindable).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use proto::cib as pb;
use proto::cib::cib_client::CibClient;
use proto::cib::write_request::Op;
use tonic::transport::Channel;

#[path = "../tests/support/mod.rs"]
mod support;
use support::Sandbox;

fn sock(sb: &Sandbox, node: u32) -> PathBuf {
    sb.node_dir(&format!("node{node}")).join("run/cibd.sock")
}

async fn client(sb: &Sandbox, node: u32) -> CibClient<Channel> {
    CibClient::new(proto::connect_unix(sock(sb, node)).await.expect("connect to halo-cibd"))
}

async fn leader(sb: &Sandbox) -> u32 {
    let t0 = Instant::now();
    loop {
        let mut views = Vec::new();
        for n in 1..=3 {
            if let Ok(mut c) = proto::connect_unix(sock(sb, n)).await.map(CibClient::new) {
                if let Ok(s) = c.status(pb::StatusRequest {}).await {
                    views.push(s.into_inner().leader);
                }
            }
        }
        if views.len() == 3 && views[0] != 0 && views.iter().all(|&l| l == views[0]) {
            return views[0] as u32;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no CIB leader: {views:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create(id: &str) -> pb::WriteRequest {
    let xml = format!(r#"<primitive id="{id}" class="ocf" provider="heartbeat" type="Dummy"/>"#);
    pb::WriteRequest { op: Some(Op::Create(pb::Create { section: "resources".into(), xml })) }
}

async fn write(c: &mut CibClient<Channel>, w: pb::WriteRequest) -> Duration {
    let t0 = Instant::now();
    let r = c.write(w).await.expect("write rpc").into_inner();
    if let Some(e) = r.error {
        panic!("write refused: {}", e.message);
    }
    t0.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

async fn sequential(sb: &Sandbox, node: u32, tag: &str, n: usize) {
    let id: String = tag.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let mut c = client(sb, node).await;
    let t0 = Instant::now();
    let mut lat = Vec::new();
    for i in 0..n {
        lat.push(write(&mut c, create(&format!("{id}-{i}"))).await);
    }
    let el = t0.elapsed().as_secs_f64();
    println!("  {tag:<28} {n:>5} writes  {:>7.0} writes/s  p50 {:>6.2} ms  p99 {:>6.2} ms", n as f64 / el, pct(&mut lat, 0.5), pct(&mut lat, 0.99));
}

async fn concurrent(sb: &Sandbox, writers: usize, per: usize) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut c = client(sb, 1 + (w % 3) as u32).await;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..per {
                lat.push(write(&mut c, create(&format!("conc-{w}-{i}"))).await);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let el = t0.elapsed().as_secs_f64();
    println!(
        "  {:<28} {:>5} writes  {:>7.0} writes/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        format!("{writers} writers (nodes 1-3)"),
        lat.len(),
        lat.len() as f64 / el,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
}

fn rss_kib(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| s.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    (get("VmRSS:"), get("VmHWM:"))
}

async fn big_cib(sb: &Sandbox) {
    let gen = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/gen-cib");
    let out = Command::new("python3").arg(&gen).args(["--nodes", "3", "--resources", "10000", "--state", "empty", "--seed", "1"]).output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        println!("  (skipped: {} not found or failed)", gen.display());
        return;
    };
    let text = String::from_utf8(out.stdout).unwrap();
    let doc = cib::xml::parse(&text).expect("gen-cib output parses");
    let resources = doc.root.child("configuration").and_then(|c| c.child("resources")).expect("resources");
    let items: Vec<String> = resources.elements().map(|e| e.to_xml()).collect();
    let pids: Vec<i32> = (1..=3)
        .filter_map(|i| std::fs::read_to_string(sb.node_dir(&format!("node{i}")).join("run/cibd.pid")).ok()?.trim().parse().ok())
        .collect();
    let before: Vec<u64> = pids.iter().map(|&p| rss_kib(p).0).collect();
    let mut c = client(sb, leader(sb).await).await.max_decoding_message_size(256 << 20);
    let t0 = Instant::now();
    let mut batches = 0;
    for chunk in items.chunks(250) {
        let xml = format!("<resources>{}</resources>", chunk.concat());
        write(&mut c, pb::WriteRequest { op: Some(Op::Modify(pb::Modify { xml })) }).await;
        batches += 1;
    }
    let load = t0.elapsed();
    println!("  gen-cib 10,000 primitives ({} KB of XML) loaded in {batches} modify batches of 250: {:.1} s", text.len() / 1024, load.as_secs_f64());
    let mut lat = Vec::new();
    for i in 0..30 {
        lat.push(write(&mut c, create(&format!("big-{i}"))).await);
    }
    println!("  one small write on the 10,000-resource CIB: p50 {:.1} ms  p99 {:.1} ms", pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let t0 = Instant::now();
    let q = c.query(pb::QueryRequest::default()).await.unwrap().into_inner();
    println!("  query of the whole CIB ({} KB): {:.1} ms", q.xml.len() / 1024, t0.elapsed().as_secs_f64() * 1000.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, &p) in pids.iter().enumerate() {
        let (rss, hwm) = rss_kib(p);
        println!("  halo-cibd node{}: RSS {:.1} MiB (before the load {:.1} MiB), peak {:.1} MiB", i + 1, rss as f64 / 1024.0, before[i] as f64 / 1024.0, hwm as f64 / 1024.0);
    }
}

fn main() {
    if !support::have_loopback_aliases() {
        println!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let sb = Sandbox::create("bench-cib", 3);
    for n in ["node1", "node2", "node3"] {
        sb.start(n);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let l = leader(&sb).await;
        let f = (1..=3).find(|&n| n != l).unwrap();
        println!("replicated CIB, 3-node sandbox, leader node{l}; writes are creates of one primitive, acknowledged once committed by a majority:");
        sequential(&sb, l, &format!("sequential via leader node{l}"), 500).await;
        sequential(&sb, f, &format!("sequential via follower node{f}"), 500).await;
        concurrent(&sb, 8, 150).await;
        big_cib(&sb).await;
    });
}
