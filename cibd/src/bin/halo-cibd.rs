//! halo-cibd: the replicated CIB of one node.

use anyhow::{anyhow, Result};

// Every write copies the CIB, a tree of many small strings: with glibc's malloc a third of a
// write on a large CIB goes to allocating and freeing; mimalloc is faster at that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // One line on failure, as every halo command: what failed and why.
    if let Err(e) = run().await {
        eprintln!("halo-cibd: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let args = common::args::DaemonArgs::parse("halo-cibd", std::env::args().skip(1)).map_err(|e| anyhow!("{e}"))?;
    common::logging::init();
    // --node is accepted for symmetry with the other daemons; the local node is the one
    // halo-membershipd runs as.
    let setup = cibd::daemon::Setup::load(&args.config)?;
    let sock = setup.socket_path();
    let listener = proto::bind_local_api(&sock).map_err(|e| anyhow!("{e}"))?;
    // Members of haclient may connect, as to Pacemaker's CIB; ACLs then apply to them.
    if let Some(gid) = cibd::daemon::haclient_gid() {
        let _ = std::os::unix::fs::chown(&sock, None, Some(gid));
    }
    let shutdown = proto::shutdown_signal()?;
    cibd::daemon::run(setup, listener, shutdown).await
}
