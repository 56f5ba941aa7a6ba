//! Shared pieces of every halo daemon and of the CLI:
//!
//! - [`config`]: the cluster configuration file (corosync.conf syntax plus a
//!   `halo { }` section), parsed into typed values with line-numbered errors,
//!   and written back.
//! - [`args`]: the command line every daemon takes.
//! - [`authkey`]: the cluster key file and the packet key derived from it.
//! - [`paths`]: every file and directory a node uses, derived from its config,
//!   so several nodes can run on one host.
//! - [`logging`]: the daemons' log setup.

pub mod args;
pub mod authkey;
pub mod config;
pub mod logging;
pub mod paths;

pub use authkey::{generate_authkey, read_authkey, AuthKey, AuthKeyError};
pub use config::{ClusterConfig, ConfigError, ParsedConfig, Warning};
pub use paths::{Daemon, NodePaths};
