//! Child processes of halod: spawn, watch, respawn, stop in order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use common::paths::{Daemon, NodePaths};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

/// The daemons of a node, in start order (stopped in reverse).
const DAEMONS: &[Daemon] = &[Daemon::Membershipd, Daemon::Cibd, Daemon::Fenced, Daemon::Execd, Daemon::Controld];
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The controller stops first and only once the DC has moved the node's resources off
/// (Pacemaker bounds this with `shutdown-escalation`, 20 min by default).
const CONTROLLER_STOP_GRACE: Duration = Duration::from_secs(120);

struct Managed {
    daemon: Daemon,
    child: Option<Child>,
    backoff: Duration,
}

/// Daemon binaries live beside halod (installed together, or in target/ when developing).
fn binary(daemon: Daemon) -> PathBuf {
    let here = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    here.join(daemon.binary())
}

fn spawn(daemon: Daemon, config: &Path, node: Option<&str>, paths: &NodePaths) -> Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(paths.log_file()).context("cannot open the log file")?;
    let mut cmd = Command::new(binary(daemon));
    cmd.arg("--config").arg(config).stdout(log.try_clone()?).stderr(log).kill_on_drop(false);
    // halo-cibd allocates with mimalloc; committing its arenas only as they are used keeps an
    // idle node at ~11 MiB instead of ~54 MiB, at no cost in write speed.
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        cmd.env("MIMALLOC_ARENA_EAGER_COMMIT", "0");
    }
    if let Some(n) = node {
        cmd.arg("--node").arg(n);
    }
    let child = cmd.spawn().with_context(|| format!("cannot start {}", binary(daemon).display()))?;
    if let Some(pid) = child.id() {
        let _ = std::fs::write(paths.pid_file(daemon), format!("{pid}\n"));
    }
    Ok(child)
}

fn send_signal(child: &Child, sig: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

/// Run the node until SIGTERM (Ok(None)) or until a daemon exits fatally (Ok(Some(it))).
pub async fn supervise(config: &Path, node: Option<&str>, paths: &NodePaths, controller: bool) -> Result<Option<Daemon>> {
    let mut managed: Vec<Managed> = Vec::new();
    for &d in DAEMONS.iter().filter(|&&d| controller || d != Daemon::Controld) {
        let child = spawn(d, config, node, paths)?;
        managed.push(Managed { daemon: d, child: Some(child), backoff: Duration::from_millis(200) });
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut fatal = None;
    'watch: loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                for m in managed.iter_mut() {
                    let exited = match m.child.as_mut() {
                        Some(c) => c.try_wait().ok().flatten(),
                        None => None,
                    };
                    if let Some(status) = exited.filter(|s| s.code() == Some(common::paths::EXIT_FATAL)) {
                        // The daemon says this node must not go on (it was fenced): no
                        // respawn; every daemon stops and halod exits, the node stays down.
                        eprintln!("halod: {} exited fatally ({status}): stopping this node; it stays down until started again", m.daemon.name());
                        m.child = None;
                        fatal = Some(m.daemon);
                        break 'watch;
                    }
                    if let Some(status) = exited {
                        eprintln!("halod: {} exited ({status}); restarting in {:?}", m.daemon.name(), m.backoff);
                        tokio::time::sleep(m.backoff).await;
                        m.backoff = (m.backoff * 2).min(MAX_BACKOFF);
                        m.child = spawn(m.daemon, config, node, paths).ok();
                    }
                }
            }
        }
    }
    for m in managed.iter_mut().rev() {
        if let Some(mut c) = m.child.take() {
            send_signal(&c, libc::SIGTERM);
            let grace = if m.daemon == Daemon::Controld { CONTROLLER_STOP_GRACE } else { STOP_GRACE };
            if tokio::time::timeout(grace, c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
        let _ = std::fs::remove_file(paths.pid_file(m.daemon));
    }
    let _ = std::fs::remove_file(paths.pid_file(Daemon::Halod));
    Ok(fatal)
}
