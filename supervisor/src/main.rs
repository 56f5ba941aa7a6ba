//! halod: the node supervisor. Spawns the node's daemons, respawns one that dies (with a
//! growing delay), and on SIGTERM stops them in reverse start order.

mod children;

use anyhow::{anyhow, Context, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // One line on failure, as every halo command: what failed and why.
    if let Err(e) = run().await {
        eprintln!("halod: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let common::args::DaemonArgs { config, node } = common::args::DaemonArgs::parse("halod", std::env::args().skip(1)).map_err(|e| anyhow!("{e}"))?;
    let parsed = common::config::ClusterConfig::load(&config).map_err(|e| anyhow!("{e}"))?;
    let paths = common::paths::NodePaths::from_config(&parsed.config);
    paths.create_dirs().context("cannot create the node's directories")?;
    std::fs::write(paths.pid_file(common::paths::Daemon::Halod), format!("{}\n", std::process::id()))?;
    // halod's start is the node's boot: agents' run-time state (HA_RSCTMP) starts empty, as
    // /run does after a reboot, so nothing believes a resource still runs from before.
    let rsctmp = paths.run_dir.join("rsctmp");
    let _ = std::fs::remove_dir_all(&rsctmp);
    std::fs::create_dir_all(&rsctmp).with_context(|| format!("cannot create {}", rsctmp.display()))?;
    if let Some(d) = children::supervise(&config, node.as_deref(), &paths, parsed.config.halo.controller).await? {
        // The same code as the daemon's, so that a service manager does not restart the
        // node either (a systemd unit gives RestartPreventExitStatus=100).
        eprintln!("halod: {} asked this node to stay down (it was fenced)", d.name());
        std::process::exit(common::paths::EXIT_FATAL);
    }
    Ok(())
}
