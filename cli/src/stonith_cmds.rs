//! `halo stonith ...`: fencing through the node's halo-fenced (the node `--dir` names).

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use common::paths::{Daemon, NodePaths};
use proto::fenced as pb;
use proto::fenced::fencer_client::FencerClient;
use tonic::transport::Channel;

use crate::cluster::config_path;

#[derive(Subcommand)]
pub enum StonithCmd {
    /// Fence a node (reboot, or power it off with --off); exits 0 only once it is fenced.
    Fence {
        node: String,
        /// Power the node off instead of rebooting it.
        #[arg(long)]
        off: bool,
        /// Give up after this many seconds (default: the cluster's stonith-timeout, 60 s).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Fencing operations this node's fencer knows of, oldest first.
    History { node: Option<String> },
    /// Fencing devices registered on this node; with NODE, those that can fence it.
    Devices { node: Option<String> },
}

async fn connect(dir: Option<&Path>) -> Result<FencerClient<Channel>> {
    let cfg = config_path(dir);
    let parsed = common::config::ClusterConfig::load(&cfg).map_err(|e| anyhow!("{e}"))?;
    let sock = NodePaths::from_config(&parsed.config).socket(Daemon::Fenced);
    let ch = proto::connect_unix(sock.clone())
        .await
        .map_err(|e| anyhow!("cannot reach halo-fenced at {} ({e}); is the node running (`halo sandbox start`)?", sock.display()))?;
    Ok(FencerClient::new(ch))
}

fn when(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
}

/// One history line, in the form crm_mon's fencing history uses.
fn history_line(e: &pb::HistoryEntry) -> String {
    let (result, time) = match e.state.as_str() {
        "done" => ("successful", format!("completed='{}'", when(e.completed_ms))),
        "failed" => ("failed", format!("last-failed='{}'", when(e.completed_ms))),
        _ => ("pending", format!("started='{}'", when(e.started_ms))),
    };
    let delegate = if e.executioner.is_empty() { String::new() } else { format!("delegate={}, ", e.executioner) };
    let devices = if e.devices.is_empty() { String::new() } else { format!(", devices={}", e.devices.join(",")) };
    let reason = if e.reason.is_empty() { String::new() } else { format!(" ({})", e.reason) };
    format!("{} of {} {result}: {delegate}client={}, origin={}{devices}, {time}{reason}", e.action, e.target, e.client, e.origin)
}

pub fn run(cmd: StonithCmd, dir: Option<&Path>) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut c = connect(dir).await?;
        match cmd {
            StonithCmd::Fence { node, off, timeout } => {
                let action = if off { "off" } else { "reboot" };
                let client = format!("halo-cli.{}", std::process::id());
                let req = pb::FenceRequest { target: node.clone(), action: action.into(), timeout_ms: timeout.map_or(0, |s| s * 1000), client };
                let mut call = tonic::Request::new(req);
                // The fencer enforces the timeout; this only bounds a fencer that went away.
                call.set_timeout(Duration::from_secs(timeout.unwrap_or(600) + 30));
                let r = c.fence(call).await.map_err(|e| anyhow!("halo-fenced: {}", e.message()))?.into_inner();
                if r.op_status != 0 {
                    bail!("could not {action} {node}: {}", r.reason);
                }
                println!("{node} fenced ({action}) by {} using {}", r.entry.map(|e| e.executioner).unwrap_or_default(), r.devices.join(", "));
                Ok(0)
            }
            StonithCmd::History { node } => {
                let r = c.history(pb::HistoryRequest { target: node.unwrap_or_default() }).await.map_err(|e| anyhow!("halo-fenced: {}", e.message()))?.into_inner();
                for e in &r.entries {
                    println!("{}", history_line(e));
                }
                Ok(0)
            }
            StonithCmd::Devices { node } => {
                let r = c.devices(pb::DevicesRequest { target: node.clone().unwrap_or_default() }).await.map_err(|e| anyhow!("halo-fenced: {}", e.message()))?.into_inner();
                if r.devices.is_empty() {
                    match node {
                        Some(n) => println!("no device registered on this node can fence {n}"),
                        None => println!("no fencing device is registered on this node"),
                    }
                }
                for d in &r.devices {
                    let targets = if d.targets.is_empty() { String::new() } else { format!(": {}", d.targets.join(" ")) };
                    println!("{} ({}) {}{targets}", d.id, d.agent, d.host_check);
                }
                Ok(0)
            }
        }
    })
}
