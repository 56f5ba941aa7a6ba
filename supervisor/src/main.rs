//! halod: the node supervisor. Spawns the node's daemons, respawns one that dies (with a
//! growing delay), and on SIGTERM stops them in reverse start order.

mod children;

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut config, mut node) = (PathBuf::from("/etc/halo/corosync.conf"), None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next().context("--config needs a path")?.into(),
            "--node" => node = Some(args.next().context("--node needs a name")?),
            other => anyhow::bail!("unknown argument '{other}'; usage: halod [--config PATH] [--node NAME]"),
        }
    }
    let parsed = common::config::ClusterConfig::load(&config).map_err(|e| anyhow!("{e}"))?;
    let paths = common::paths::NodePaths::from_config(&parsed.config);
    paths.create_dirs().context("cannot create the node's directories")?;
    std::fs::write(paths.pid_file(common::paths::Daemon::Halod), format!("{}\n", std::process::id()))?;
    children::supervise(&config, node.as_deref(), &paths).await
}
