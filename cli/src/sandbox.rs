//! `halo sandbox`: several nodes on one host, each with its own config, key, state and
//! loopback address (127.0.0.11 upwards), started detached with pid files in DIR/NODE.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use common::config::{ClusterConfig, NodeEntry};

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// Write configs, a shared key and state dirs for node1..nodeN.
    Create {
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// UDP port of every node (change it to run several sandboxes at once).
        #[arg(long, default_value_t = 5405)]
        port: u16,
        /// Totem token timeout in ms.
        #[arg(long, default_value_t = 1000)]
        token: u64,
        /// Run no controller (the daemons are driven by hand, as their own tests do).
        #[arg(long)]
        no_controller: bool,
    },
    /// Start halod for every node, or one, detached.
    Start { dir: PathBuf, node: Option<String> },
    /// Stop cleanly (SIGTERM to halod, which stops its daemons).
    Stop { dir: PathBuf, node: Option<String> },
    /// Power loss: SIGKILL every process of that node.
    Kill { dir: PathBuf, node: String },
}

pub const MAX_NODES: u32 = 32;

pub fn node_config_path(dir: &Path, node: &str) -> PathBuf {
    dir.join(node).join("corosync.conf")
}

fn abs(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

fn nodes_of(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{} is not a sandbox (halo sandbox create DIR first)", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("corosync.conf").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort_by(|a, b| scheduler::display::natural_cmp(a, b));
    Ok(v)
}

fn pid_path(dir: &Path, node: &str) -> PathBuf {
    dir.join(node).join("halod.pid")
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn create(dir: &Path, nodes: u32, port: u16, token: u64, controller: bool) -> Result<()> {
    if nodes == 0 || nodes > MAX_NODES {
        bail!("--nodes must be between 1 and {MAX_NODES}");
    }
    let dir = abs(dir)?;
    if dir.join("authkey").exists() {
        bail!("{} already holds a sandbox; remove it or choose another directory", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    common::authkey::generate_authkey(&dir.join("authkey")).map_err(|e| anyhow!("{e}"))?;
    let entries: Vec<NodeEntry> = (1..=nodes)
        .map(|i| NodeEntry {
            nodeid: i,
            name: format!("node{i}"),
            ring0_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i as u8)),
            ring1_addr: None,
            quorum_votes: 1,
        })
        .collect();
    for e in &entries {
        let ndir = dir.join(&e.name);
        std::fs::create_dir_all(&ndir)?;
        let mut c = ClusterConfig::default();
        c.totem.cluster_name = "sandbox".into();
        c.totem.port = port;
        c.totem.token_ms = token;
        c.nodes = entries.clone();
        // As pcs does for a two-node cluster: either node alone keeps quorum (fencing decides).
        c.quorum.two_node = nodes == 2;
        c.halo.state_dir = ndir.join("state");
        c.halo.run_dir = ndir.join("run");
        c.halo.log_dir = ndir.join("log");
        c.halo.authkey = dir.join("authkey");
        c.halo.controller = controller;
        c.logging.logfile = Some(ndir.join("log").join("halo.log"));
        c.validate().map_err(|e| anyhow!("{e}"))?;
        std::fs::write(ndir.join("corosync.conf"), c.to_corosync_conf())?;
        common::paths::NodePaths::from_config(&c).create_dirs()?;
    }
    println!("sandbox of {nodes} nodes in {} (127.0.0.11..127.0.0.{}, port {port})", dir.display(), 10 + nodes);
    Ok(())
}

fn start(dir: &Path, node: &str) -> Result<()> {
    let pidf = pid_path(dir, node);
    if read_pid(&pidf).is_some_and(alive) {
        println!("{node}: already running");
        return Ok(());
    }
    let halod = std::env::current_exe()?.parent().map(|p| p.join("halod")).context("cannot locate halod beside halo")?;
    let out = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(node).join("halod.out"))?;
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(&halod)
            .arg("--config")
            .arg(node_config_path(dir, node))
            .arg("--node")
            .arg(node)
            // For fence_sandbox, run by this node's fencing: where the sandbox is, and halo.
            .env("HALO_SANDBOX", abs(dir)?)
            // Marks every process of this node, services included (see fence_sandbox).
            .env("HALO_SANDBOX_NODE", abs(dir)?.join(node))
            .env("HALO_BIN", std::env::current_exe()?)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group, so `kill` can take down the whole node at once.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", halod.display()))?
    };
    std::fs::write(&pidf, format!("{}\n", child.id()))?;
    println!("{node}: started (pid {})", child.id());
    Ok(())
}

fn stop(dir: &Path, node: &str) -> Result<()> {
    let pidf = pid_path(dir, node);
    let Some(pid) = read_pid(&pidf).filter(|&p| alive(p)) else {
        println!("{node}: not running");
        return Ok(());
    };
    // SAFETY: signalling the halod we started (its pid file).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // The controller first has the DC move the node's resources off (bounded by halod).
    let deadline = Instant::now() + Duration::from_secs(150);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        reap(pid);
    }
    if alive(pid) {
        bail!("{node}: halod (pid {pid}) did not stop within 150 s; use `halo sandbox kill`");
    }
    let _ = std::fs::remove_file(&pidf);
    println!("{node}: stopped");
    Ok(())
}

/// halod is our child only when started by this process; reap it if so.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: non-blocking waitpid on a specific pid.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Live processes marked as `node`'s (`HALO_SANDBOX_NODE=<its dir>` in their environment,
/// as `start` sets it for halod and everything it runs inherits): services that left
/// halod's process group (daemonized agents' servers) included, as fence_sandbox finds them.
fn marked_processes(dir: &Path, node: &str) -> Vec<i32> {
    let Ok(node_dir) = abs(dir).map(|d| d.join(node)) else { return Vec::new() };
    let mut marker = b"HALO_SANDBOX_NODE=".to_vec();
    marker.extend_from_slice(node_dir.as_os_str().as_encoded_bytes());
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_slice())))
        .collect()
}

fn kill(dir: &Path, node: &str) -> Result<()> {
    let pidf = pid_path(dir, node);
    let Some(pid) = read_pid(&pidf) else { bail!("{node}: no pid file; is it running?") };
    // SAFETY: SIGKILL to the node's process group (halod and every daemon it spawned).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    // Power loss takes the node's services too, also those that left the group.
    for p in marked_processes(dir, node) {
        // SAFETY: a process of this sandbox node (its environment says so).
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        reap(pid);
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&pidf);
    println!("{node}: killed");
    Ok(())
}

pub fn run(cmd: SandboxCmd) -> Result<()> {
    match cmd {
        SandboxCmd::Create { dir, nodes, port, token, no_controller } => create(&dir, nodes, port, token, !no_controller),
        SandboxCmd::Start { dir, node } => {
            let list = match node {
                Some(n) => vec![n],
                None => nodes_of(&dir)?,
            };
            list.iter().try_for_each(|n| start(&abs(&dir)?, n))
        }
        SandboxCmd::Stop { dir, node } => {
            let list = match node {
                Some(n) => vec![n],
                None => nodes_of(&dir)?,
            };
            list.iter().try_for_each(|n| stop(&abs(&dir)?, n))
        }
        SandboxCmd::Kill { dir, node } => kill(&abs(&dir)?, &node),
    }
}
