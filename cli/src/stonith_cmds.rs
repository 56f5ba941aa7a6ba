//! `halo stonith ...`: fencing through the node's halo-fenced (the node `--dir` names).

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use common::paths::Daemon;
use proto::fenced as pb;
use proto::fenced::fencer_client::FencerClient;
use tonic::transport::Channel;


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
    #[command(alias = "list")]
    Devices { node: Option<String> },
    /// The cluster's fencing devices: where they may run and their last monitor result.
    Status,
    /// Add a fencing device to the CIB (as pcs):
    /// `create ID AGENT [K=V]... [op monitor interval=T ...] [meta K=V...]`.
    /// Every node's fencer registers it where the configuration allows it.
    Create {
        id: String,
        /// The fence agent (fence_NAME or stonith:fence_NAME).
        agent: String,
        /// Instance attributes K=V (the agent's parameters and pcmk_* options), then
        /// `meta` and meta attributes K=V.
        #[arg(value_name = "K=V")]
        options: Vec<String>,
        /// Accept parameters the agent's meta-data does not list.
        #[arg(long)]
        force: bool,
    },
    /// Remove a fencing device from the CIB.
    Delete { id: String },
    /// Confirm by hand that NODE is down (powered off): recorded as fenced on every node.
    /// Wrong use risks data: only when you know the node is off.
    Confirm { node: String },
}

async fn connect(dir: Option<&Path>) -> Result<FencerClient<Channel>> {
    Ok(FencerClient::new(crate::local::channel(dir, Daemon::Fenced).await?))
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
        match cmd {
            StonithCmd::Create { id, agent, options, force } => return crate::stonith_cib::create(dir, &id, &agent, &options, force).await,
            StonithCmd::Delete { id } => return crate::stonith_cib::delete(dir, &id).await,
            _ => {}
        }
        let mut c = connect(dir).await?;
        match cmd {
            StonithCmd::Create { .. } | StonithCmd::Delete { .. } => unreachable!("CIB commands return above"),
            StonithCmd::Confirm { node } => {
                let client = format!("halo-cli.{}", std::process::id());
                let req = pb::FenceRequest { target: node.clone(), action: "off".into(), timeout_ms: 0, client, manual: true };
                let r = c.fence(req).await.map_err(|e| anyhow!("halo-fenced: {}", e.message()))?.into_inner();
                if r.op_status != 0 {
                    bail!("could not confirm {node}: {}", r.reason);
                }
                eprintln!("warning: {node} is now taken as fenced on every node; if it is not really off, its resources may run twice");
                println!("{node} confirmed fenced (manual)");
                Ok(0)
            }
            StonithCmd::Fence { node, off, timeout } => {
                let action = if off { "off" } else { "reboot" };
                let client = format!("halo-cli.{}", std::process::id());
                let req = pb::FenceRequest { target: node.clone(), action: action.into(), timeout_ms: timeout.map_or(0, |s| s * 1000), client, manual: false };
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
            StonithCmd::Status => {
                let r = c.status(pb::StatusRequest {}).await.map_err(|e| anyhow!("halo-fenced: {}", e.message()))?.into_inner();
                if r.devices.is_empty() {
                    println!("no fencing devices configured");
                }
                for d in &r.devices {
                    let health = if d.monitored_by.is_empty() {
                        if d.interval_ms == 0 { "not monitored".to_string() } else { "not checked yet".to_string() }
                    } else if d.ok {
                        format!("OK on {} at {}", d.monitored_by, when(d.checked_ms))
                    } else {
                        format!("FAILED on {} at {}: {}", d.monitored_by, when(d.checked_ms), d.reason)
                    };
                    let allowed = if d.allowed.is_empty() { "registered by the executor only".to_string() } else { format!("may run on {}", d.allowed.join(" ")) };
                    println!("* {} ({}): {health}; {allowed}", d.id, d.agent);
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
                    let mut how = Vec::new();
                    if d.started {
                        how.push("started here");
                    }
                    if d.from_cib {
                        how.push("allowed here by the CIB");
                    }
                    println!("{} ({}) {}{targets} [{}]", d.id, d.agent, d.host_check, how.join(", "));
                }
                Ok(0)
            }
        }
    })
}
