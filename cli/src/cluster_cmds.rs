//! `halo cluster stop`: a clean stop of this node (pcs `cluster stop` for the local node):
//! SIGTERM to its halod, whose controller first has the DC move the node's resources off
//! (as the constraints allow), then its daemons exit; the command waits for halod to be
//! gone. Other nodes, `start`, `enable` and the rest of pcs's `cluster` are not here yet.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use common::paths::{Daemon, NodePaths};

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Stop this node cleanly: its resources are moved off first, then its daemons stop.
    Stop {
        /// How long to wait for the node to stop, in seconds.
        #[arg(long, default_value_t = 150)]
        wait: u64,
    },
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

/// The pid in halod's pid file, if that process is a live halod.
fn halod_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "halod" && alive(pid)).then_some(pid)
}

pub fn run(cmd: ClusterCmd, dir: Option<&Path>) -> Result<i32> {
    match cmd {
        ClusterCmd::Stop { wait } => {
            let config = crate::local::config_path(dir);
            let parsed = common::config::ClusterConfig::load(&config).map_err(|e| anyhow!("{e}"))?;
            let pid_file = NodePaths::from_config(&parsed.config).pid_file(Daemon::Halod);
            let Some(pid) = halod_pid(&pid_file) else {
                println!("Stopping Cluster (halo)... not running");
                return Ok(0);
            };
            println!("Stopping Cluster (halo)...");
            // SAFETY: SIGTERM to the halod named by this node's pid file, checked to be one.
            if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
                bail!("cannot signal halod (pid {pid}): {} (need root?)", std::io::Error::last_os_error());
            }
            let t0 = Instant::now();
            while alive(pid) {
                if t0.elapsed() > Duration::from_secs(wait) {
                    bail!("halod (pid {pid}) has not stopped after {wait} s; its controller may still be moving resources off (see its log)");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            println!("Stopped in {:.1} s", t0.elapsed().as_secs_f64());
            Ok(0)
        }
    }
}
