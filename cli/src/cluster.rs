//! Commands that talk to a running node: `halo quorum status`, `halo membership status`,
//! `halo cpg send|listen|bench`. They reach the node's daemons over gRPC on its Unix sockets.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::{Subcommand, ValueEnum};
use common::paths::Daemon;
use proto::membership as pb;
use proto::membership::membership_client::MembershipClient;
use tonic::transport::Channel;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum QuorumCmd {
    /// Quorum state of the node's partition (like corosync-quorumtool -s).
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

#[derive(Subcommand)]
pub enum MembershipCmd {
    /// Ring id and members with node id, name, address and link state.
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

#[derive(Subcommand)]
pub enum CpgCmd {
    /// Send one message to a process group.
    Send { group: String, message: String },
    /// Join a group and print its membership changes and messages until interrupted.
    Listen { group: String },
    /// Throughput of one sender through the ring (like cpgbench): messages/s and MB/s.
    Bench {
        #[arg(long, default_value = "halo-bench")]
        group: String,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        size: usize,
    },
}

/// The node's config file: `--dir DIR` means DIR/corosync.conf.
pub use crate::local::config_path;

async fn connect(dir: Option<&Path>, daemon: Daemon) -> Result<MembershipClient<Channel>> {
    Ok(MembershipClient::new(crate::local::channel(dir, daemon).await?))
}

fn status_err(e: tonic::Status) -> anyhow::Error {
    anyhow!("{}", e.message())
}

pub async fn quorum(dir: Option<&Path>, cmd: QuorumCmd) -> Result<()> {
    let QuorumCmd::Status { output } = cmd;
    let mut c = connect(dir, Daemon::Membershipd).await?;
    let q = c.quorum(pb::QuorumRequest {}).await.map_err(status_err)?.into_inner();
    let me = c.status(pb::StatusRequest {}).await.map_err(status_err)?.into_inner();
    if output == OutputFormat::Json {
        let v = serde_json::json!({
            "ring_id": format!("{}.{}", q.ring_rep, q.ring_seq),
            "quorate": q.quorate,
            "expected_votes": q.expected_votes,
            "highest_expected": q.highest_expected,
            "total_votes": q.total_votes,
            "quorum": q.quorum,
            "node_id": me.local_nodeid,
            "flags": {
                "two_node": q.two_node, "wait_for_all": q.wait_for_all, "wait_for_all_status": q.wait_for_all_status,
                "last_man_standing": q.last_man_standing, "auto_tie_breaker": q.auto_tie_breaker,
            },
            "members": q.members.iter().map(|m| serde_json::json!({"nodeid": m.nodeid, "name": m.name, "votes": m.votes})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let yes = |b: bool| if b { "Yes" } else { "No" };
    println!("Quorum information\n------------------");
    println!("Quorum provider:  corosync_votequorum");
    println!("Nodes:            {}", q.members.len());
    println!("Node ID:          {}", me.local_nodeid);
    println!("Ring ID:          {}.{}", q.ring_rep, q.ring_seq);
    println!("Quorate:          {}\n", yes(q.quorate));
    println!("Votequorum information\n----------------------");
    println!("Expected votes:   {}", q.expected_votes);
    println!("Highest expected: {}", q.highest_expected);
    println!("Total votes:      {}", q.total_votes);
    println!("Quorum:           {}", q.quorum);
    let mut flags = Vec::new();
    for (on, name) in [(q.quorate, "Quorate"), (q.two_node, "2Node"), (q.wait_for_all, "WaitForAll"), (q.last_man_standing, "LastManStanding"), (q.auto_tie_breaker, "AutoTieBreaker")] {
        if on {
            flags.push(name);
        }
    }
    println!("Flags:            {}\n", flags.join(" "));
    println!("Membership information\n----------------------");
    println!("    Nodeid      Votes Name");
    for m in &q.members {
        let local = if m.nodeid == me.local_nodeid { " (local)" } else { "" };
        println!("{:>10} {:>10} {}{local}", m.nodeid, m.votes, m.name);
    }
    Ok(())
}

pub async fn membership(dir: Option<&Path>, cmd: MembershipCmd) -> Result<()> {
    let MembershipCmd::Status { output } = cmd;
    let mut c = connect(dir, Daemon::Membershipd).await?;
    let s = c.status(pb::StatusRequest {}).await.map_err(status_err)?.into_inner();
    if output == OutputFormat::Json {
        let v = serde_json::json!({
            "ring_id": format!("{}.{}", s.ring_rep, s.ring_seq),
            "state": s.state,
            "local_nodeid": s.local_nodeid,
            "rings_formed": s.rings_formed,
            "packets": {"accepted": s.packets_accepted, "dropped_auth": s.packets_dropped_auth, "dropped_replay": s.packets_dropped_replay, "dropped_malformed": s.packets_dropped_malformed},
            "delivered": s.delivered,
            "nodes": s.nodes.iter().map(|n| serde_json::json!({"nodeid": n.nodeid, "name": n.name, "address": n.address, "link": if n.member {"up"} else {"down"}, "member": n.member})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("Ring ID:  {}.{}  ({})", s.ring_rep, s.ring_seq, s.state);
    println!("Local:    {} ({})", s.local_name, s.local_nodeid);
    println!("{:>8}  {:<16} {:<16} {}", "Nodeid", "Name", "Address", "Link");
    for n in &s.nodes {
        println!("{:>8}  {:<16} {:<16} {}", n.nodeid, n.name, n.address, if n.member { "up (member)" } else { "down" });
    }
    println!(
        "Packets: {} accepted, {} dropped (authentication), {} dropped (replay), {} dropped (malformed)",
        s.packets_accepted, s.packets_dropped_auth, s.packets_dropped_replay, s.packets_dropped_malformed
    );
    Ok(())
}

fn member_text(m: &pb::CpgMember) -> String {
    if m.reason.is_empty() {
        format!("{}:{}", m.nodeid, m.pid)
    } else {
        format!("{}:{} ({})", m.nodeid, m.pid, m.reason)
    }
}

pub async fn cpg(dir: Option<&Path>, cmd: CpgCmd) -> Result<()> {
    let mut c = connect(dir, Daemon::Membershipd).await?;
    match cmd {
        CpgCmd::Send { group, message } => {
            c.cpg_send(pb::CpgSendRequest { group, data: message.into_bytes(), pid: 0, to: Vec::new() }).await.map_err(status_err)?;
        }
        CpgCmd::Listen { group } => {
            let mut stream = c.cpg_join(pb::CpgJoinRequest { group }).await.map_err(status_err)?.into_inner();
            while let Some(ev) = stream.message().await.map_err(status_err)? {
                match ev.event {
                    Some(pb::cpg_event::Event::JoinedAs(m)) => println!("joined as {}", member_text(&m)),
                    Some(pb::cpg_event::Event::Confchg(cc)) => {
                        let list = |v: &[pb::CpgMember]| v.iter().map(member_text).collect::<Vec<_>>().join(" ");
                        println!("confchg {}: members [{}] joined [{}] left [{}]", cc.group, list(&cc.members), list(&cc.joined), list(&cc.left));
                    }
                    Some(pb::cpg_event::Event::Deliver(d)) => {
                        let from = d.from.as_ref().map(member_text).unwrap_or_default();
                        println!("message {} from {from}: {}", d.group, String::from_utf8_lossy(&d.data));
                    }
                    None => {}
                }
            }
        }
        CpgCmd::Bench { group, seconds, size } => bench(c, group, seconds, size).await?,
    }
    Ok(())
}

async fn bench(mut c: MembershipClient<Channel>, group: String, seconds: u64, size: usize) -> Result<()> {
    let mut stream = c.cpg_join(pb::CpgJoinRequest { group: group.clone() }).await.map_err(status_err)?.into_inner();
    let Some(pb::CpgEvent { event: Some(pb::cpg_event::Event::JoinedAs(me)) }) = stream.message().await.map_err(status_err)? else {
        return Err(anyhow!("the daemon did not confirm the group join"));
    };
    // Count our own messages as they come back in total order: delivered means ordered by the ring.
    let delivered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = delivered.clone();
    let counter = tokio::spawn(async move {
        while let Ok(Some(ev)) = stream.message().await {
            if let Some(pb::cpg_event::Event::Deliver(d)) = ev.event {
                if d.from.is_some_and(|f| f.nodeid == me.nodeid && f.pid == me.pid) {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    let payload = vec![b'x'; size];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut sends = tokio::task::JoinSet::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        // A bounded number of sends in flight.
        while sends.len() >= 64 {
            sends.join_next().await;
        }
        let mut cc = c.clone();
        let req = pb::CpgSendRequest { group: group.clone(), data: payload.clone(), pid: me.pid, to: Vec::new() };
        sends.spawn(async move { cc.cpg_send(req).await.is_ok() });
        sent += 1;
    }
    while sends.join_next().await.is_some() {}
    // Wait for the ring to deliver what was sent (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(std::sync::atomic::Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = delivered.load(std::sync::atomic::Ordering::Relaxed);
    counter.abort();
    println!(
        "{n} of {sent} messages of {size} bytes delivered in total order in {elapsed:.1} s: {:.0} msg/s, {:.2} MB/s",
        n as f64 / elapsed,
        n as f64 * size as f64 / elapsed / 1e6
    );
    Ok(())
}
