//! halo-cibd: the replicated CIB of one node. It joins the process group `halo-cib` of the
//! node's halo-membershipd, carries raft's messages (and forwarded writes) as group
//! messages, applies committed writes to the CIB, and serves the local API on
//! `run_dir/cibd.sock`.
//!
//! Tasks: the core (`core.rs`, sole owner of the replica and the CIB), a reader of the
//! group's events, a sender that batches peer messages into group messages, and the gRPC
//! server (`service.rs`). If halo-membershipd goes away the daemon exits and halod starts
//! it again: everything it holds is in the raft log on disk.

mod core;
mod service;

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use common::config::ClusterConfig;
use common::paths::{Daemon, NodePaths};
use prost::Message as _;
use proto::cib::{PeerBatch, PeerMessage};
use proto::membership as mpb;
use proto::membership::membership_client::MembershipClient;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc};
use tonic::transport::Channel;

pub use self::core::{Command, TICK, WRITE_TIMEOUT};
pub use self::service::haclient_gid;
use self::core::{Core, PeerEvent};
use crate::machine::{genesis, CibMachine};
use crate::replica::{Replica, ReplicaConfig};
use crate::store::{SledStorage, StoreError};

/// The process group of the CIB daemons.
pub const GROUP: &str = "halo-cib";
/// How long to wait for halo-membershipd's socket at start.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(30);
/// Peer messages are batched into group messages of about this size (the group's limit is 1 MiB).
const BATCH_BYTES: usize = 512 * 1024;
/// A single peer message larger than this cannot travel (raft's own are a quarter of it).
const MAX_PEER_MESSAGE: usize = 960 * 1024;

/// Everything the daemon needs, read once at start.
pub struct Setup {
    pub config: ClusterConfig,
    pub paths: NodePaths,
}

impl Setup {
    pub fn load(config_path: &Path) -> Result<Setup> {
        let parsed = ClusterConfig::load(config_path).map_err(|e| anyhow!("{e}"))?;
        let config = parsed.config;
        let paths = NodePaths::from_config(&config);
        paths.create_dirs().with_context(|| format!("cannot create the node's directories under {}", paths.state_dir.display()))?;
        Ok(Setup { config, paths })
    }

    pub fn socket_path(&self) -> std::path::PathBuf {
        self.paths.socket(Daemon::Cibd)
    }
}

async fn connect_membership(paths: &NodePaths) -> Result<MembershipClient<Channel>> {
    let ch = proto::connect_unix_within(paths.socket(Daemon::Membershipd), MEMBERSHIP_WAIT).await.map_err(|e| anyhow!("halo-membershipd: {e}"))?;
    Ok(MembershipClient::new(ch))
}

/// Open the node's raft store and the CIB it holds: the latest snapshot, or the genesis
/// CIB of this cluster; the log after it is replayed by the replica.
fn open_replica(setup: &Setup, id: u64) -> Result<(Replica<SledStorage>, CibMachine, usize)> {
    let dir = setup.paths.state_dir.join("cib");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let store = match SledStorage::open(&dir) {
        Ok(s) => s,
        Err(StoreError::NotFound { .. }) => SledStorage::create(&dir).map_err(|e| anyhow!("{e}"))?,
        Err(e) => return Err(anyhow!("{e}")),
    };
    let machine = match store.latest_snapshot().map_err(|e| anyhow!("{e}"))? {
        Some(s) => {
            let index = s.get_metadata().index;
            CibMachine::from_snapshot(&s.data, index).map_err(|e| anyhow!("the stored CIB snapshot at index {index} is unreadable: {e}"))?
        }
        None => {
            let nodes: Vec<(u32, String)> = setup.config.nodes.iter().map(|n| (n.nodeid, n.name.clone())).collect();
            CibMachine::new(genesis(&nodes), 0)
        }
    };
    let cfg = ReplicaConfig {
        election_tick: 10,
        heartbeat_tick: 2,
        initial_voters: setup.config.nodes.iter().map(|n| n.nodeid as u64).collect(),
        applied: machine.index(),
        seed: rand::random(),
        ..ReplicaConfig::default()
    };
    let max_write = cfg.max_entry_bytes;
    let replica = Replica::new(id, store, cfg).map_err(|e| anyhow!("cannot start the CIB replica: {e}"))?;
    Ok((replica, machine, max_write))
}

pub async fn run(setup: Setup, listener: UnixListener, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let mut membership = connect_membership(&setup.paths).await?;
    let status = membership.status(mpb::StatusRequest {}).await.map_err(|e| anyhow!("halo-membershipd: {}", e.message()))?.into_inner();
    let id = status.local_nodeid as u64;
    let (mut stream, pid) = proto::cpg_join(&mut membership, GROUP).await.map_err(|e| anyhow!("{e}"))?;
    let (replica, machine, max_write) = open_replica(&setup, id)?;
    tracing::info!("CIB of node {id}: version {} at index {}", machine.version(), machine.index());

    let (event_tx, event_rx) = mpsc::channel(4096);
    tokio::spawn(async move {
        while let Ok(Some(ev)) = stream.message().await {
            let event = match ev.event {
                Some(mpb::cpg_event::Event::Deliver(d)) => PeerEvent::Deliver { from: d.from.map(|m| m.nodeid as u64).unwrap_or(0), data: d.data },
                Some(mpb::cpg_event::Event::Confchg(c)) => PeerEvent::Members(c.members.iter().map(|m| m.nodeid as u64).collect()),
                _ => continue,
            };
            if event_tx.send(event).await.is_err() {
                return;
            }
        }
        // Dropping event_tx tells the core the stream ended.
    });
    let (peer_tx, peer_rx) = mpsc::channel(8192);
    tokio::spawn(send_peers(membership.clone(), pid, peer_rx));
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (watch_tx, _) = broadcast::channel(4096);
    tokio::spawn(service::serve(listener, cmd_tx, watch_tx.clone(), membership));
    let name = setup.config.nodes.iter().find(|n| n.nodeid as u64 == id).map(|n| n.name.clone()).unwrap_or_else(|| format!("node{id}"));
    Core::new(id, name, replica, machine, peer_tx, watch_tx, max_write).run(cmd_rx, event_rx, shutdown).await
}

/// Send peer messages as group messages, batching what is queued ([`proto::send_batched`]);
/// stops (and so stops the core) when halo-membershipd refuses.
async fn send_peers(membership: MembershipClient<Channel>, pid: u32, rx: mpsc::Receiver<PeerMessage>) {
    let dropped = |m: &PeerMessage| tracing::error!("a {}-byte message for node {} exceeds the group's limit; dropped", m.encoded_len(), m.to);
    if let Err(e) = proto::send_batched(membership, GROUP, pid, rx, |messages| PeerBatch { messages }, |m| if m.to == 0 { Vec::new() } else { vec![m.to as u32] }, MAX_PEER_MESSAGE, BATCH_BYTES, dropped).await {
        tracing::error!("halo-membershipd refused a CIB group message: {e}");
    }
}
