//! One way for the CLI to reach a node's daemons: the node's config (from `--dir`, else
//! /etc/halo/corosync.conf) names its run directory and so each daemon's socket.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use common::paths::{Daemon, NodePaths};

/// The node's config file: `DIR/corosync.conf` with `--dir`, else the system one.
pub fn config_path(dir: Option<&Path>) -> PathBuf {
    match dir {
        Some(d) => d.join("corosync.conf"),
        None => PathBuf::from("/etc/halo/corosync.conf"),
    }
}

/// A daemon's socket on the node.
pub fn socket(dir: Option<&Path>, daemon: Daemon) -> Result<PathBuf> {
    let parsed = common::config::ClusterConfig::load(&config_path(dir)).map_err(|e| anyhow!("{e}"))?;
    Ok(NodePaths::from_config(&parsed.config).socket(daemon))
}

/// A channel to a daemon of the node; the error says how to start the node.
pub async fn channel(dir: Option<&Path>, daemon: Daemon) -> Result<tonic::transport::Channel> {
    let sock = socket(dir, daemon)?;
    proto::connect_unix(sock.clone())
        .await
        .map_err(|e| anyhow!("cannot reach {} at {} ({e}); is the node running (`halo sandbox start`)?", daemon.binary(), sock.display()))
}
