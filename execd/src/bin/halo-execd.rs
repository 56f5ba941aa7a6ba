//! halo-execd: runs resource agent actions for the node.

use anyhow::{anyhow, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // One line on failure, as every halo command: what failed and why.
    if let Err(e) = run().await {
        eprintln!("halo-execd: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let args = common::args::DaemonArgs::parse("halo-execd", std::env::args().skip(1)).map_err(|e| anyhow!("{e}"))?;
    common::logging::init();
    let setup = execd::daemon::Setup::load(&args.config, args.node.as_deref())?;
    let listener = proto::bind_local_api(&setup.socket).map_err(|e| anyhow!("{e}"))?;
    let shutdown = proto::shutdown_signal()?;
    execd::daemon::run(setup, listener, shutdown).await
}
