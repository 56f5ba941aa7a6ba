//! halo-fenced: the node's fencer.

use std::os::unix::fs::PermissionsExt;

use anyhow::{anyhow, Context, Result};

#[tokio::main]
async fn main() {
    // One line on failure, as every halo command: what failed and why.
    if let Err(e) = run().await {
        eprintln!("halo-fenced: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let args = common::args::DaemonArgs::parse("halo-fenced", std::env::args().skip(1)).map_err(|e| anyhow!("{e}"))?;
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HALO_LOG").unwrap_or_else(|_| "info".into())).init();
    let setup = fenced::daemon::Setup::load(&args.config, args.node.as_deref())?;
    let _ = std::fs::remove_file(&setup.socket);
    let listener = tokio::net::UnixListener::bind(&setup.socket).with_context(|| format!("cannot bind {}", setup.socket.display()))?;
    std::fs::set_permissions(&setup.socket, std::fs::Permissions::from_mode(0o660))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
    };
    fenced::daemon::run(setup, listener, shutdown).await
}
