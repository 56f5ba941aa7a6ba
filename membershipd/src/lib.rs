//! halo-membershipd: drives the sans-IO cores of the `membership` crate (totem, votequorum,
//! CPG) with a UDP socket, a clock and the node's local gRPC API.
//!
//! One task owns every core; it is the only writer. Order of its outputs, fixed here once:
//! a ring sequence to persist is written (and synced) before any later packet is sent;
//! deliveries and configuration changes go to CPG and votequorum in the order totem emits
//! them; CPG's submissions go back to totem before the next event is handled.

mod core;
mod service;

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use common::authkey::{read_authkey, AuthKey};
use common::config::{ClusterConfig, NodeEntry};
use common::paths::{Daemon, NodePaths};

pub use crate::core::{run, Command};

/// Everything the daemon needs, read once at start.
pub struct Setup {
    pub config: ClusterConfig,
    pub local: NodeEntry,
    pub paths: NodePaths,
    pub key: AuthKey,
}

impl Setup {
    /// Read the node's config file and key; `node` picks the local node by name or address
    /// (default: the node whose address this host can bind, tried in nodelist order).
    pub fn load(config_path: &PathBuf, node: Option<&str>) -> Result<Setup> {
        let parsed = ClusterConfig::load(config_path).map_err(|e| anyhow!("{e}"))?;
        for w in &parsed.warnings {
            tracing::warn!("{}: {w}", config_path.display());
        }
        let config = parsed.config;
        let local = config.find_local(node).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
        let paths = NodePaths::from_config(&config);
        paths.create_dirs().with_context(|| format!("cannot create the node's directories under {}", paths.state_dir.display()))?;
        let key = read_authkey(&paths.authkey).map_err(|e| anyhow!("{e}"))?;
        Ok(Setup { config, local, paths, key })
    }

    pub fn socket_path(&self) -> PathBuf {
        self.paths.socket(Daemon::Membershipd)
    }
}
