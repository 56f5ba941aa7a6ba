//! The daemons' log setup: `HALO_LOG` filters (default `info`); colour only on a terminal,
//! so the node's log file holds plain text.

use std::io::IsTerminal;

pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HALO_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}
