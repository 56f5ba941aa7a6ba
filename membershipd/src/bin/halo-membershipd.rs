//! halo-membershipd: totem membership, quorum and process groups for one node.

use anyhow::{anyhow, Context, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // One line on failure, as every halo command: what failed and why.
    if let Err(e) = run().await {
        eprintln!("halo-membershipd: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let common::args::DaemonArgs { config, node } = common::args::DaemonArgs::parse("halo-membershipd", std::env::args().skip(1)).map_err(|e| anyhow!("{e}"))?;
    common::logging::init();
    let setup = membershipd::Setup::load(&config, node.as_deref())?;
    let sock = setup.socket_path();
    let listener = proto::bind_local_api(&sock).map_err(|e| anyhow!("{e}"))?;
    let addr = std::net::SocketAddr::new(setup.local.ring0_addr, setup.config.totem.port);
    let udp = tokio::net::UdpSocket::bind(addr).await.with_context(|| format!("cannot bind the totem socket {addr}"))?;
    tracing::info!("node {} ({}) on {addr}", setup.local.name, setup.local.nodeid);
    let shutdown = proto::shutdown_signal()?;
    membershipd::run(setup, listener, udp, shutdown).await
}
