//! The cluster configuration file: corosync.conf syntax, typed.
//!
//! Spec: corosync.conf(5) and votequorum(5) of Corosync 3.1 (read, not copied),
//! and `shared/MEMBERSHIP-NOTES.md` sections 4 (timers), 5 (votequorum) and 7
//! (crypto). The syntax is line based: `name {` opens a section, `}` alone
//! closes it, `key: value` (or `key = value`) sets a value that runs to the end
//! of the line, and a line whose first non-blank character is `#` is a comment.
//!
//! Deliberate deviations from Corosync:
//! - The default `token` is 1000 ms, not 3000 ms (see [`DEFAULT_TOKEN_MS`]).
//! - Packets are always authenticated and encrypted (AEAD). `crypto_cipher`
//!   accepts Corosync's names and halo's own ([`CIPHERS`]); the default is
//!   `chacha20poly1305`, and `none` is accepted for compatibility only (with a
//!   warning: halo encrypts anyway).
//! - A `halo { }` section holds the node's directories and key path, so every
//!   path derives from the config file (several nodes can share one host).
//!   `totem.keyfile` is read as the key path when `halo.authkey` is not set.
//! - `totem.port` (default 5405) replaces `interface { mcastport }`;
//!   `interface { }` blocks are ignored with a warning.
//! - Addresses must be IP literals; host names are not resolved.
//! - Unknown sections and keys are warnings, never errors; Corosync options
//!   that halo does not use are reported as ignored.
//! - Comments must be on their own line (as in Corosync): `token: 1000 # x`
//!   is refused as a non-numeric value.

mod parse;
mod syntax;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use parse::{parse, parse_bytes};

/// halo's default token timeout.
///
/// The issue behind it asks for "Default token 1000 ms: aim at seeing a dead
/// node in about a second with no false alarm on a loaded host". Corosync 3.1
/// raised its own default to 3000 ms because loaded hosts lost the token at
/// 1000 ms; halo keeps 1000 ms and relies on a prioritised token path and
/// local-health checks in the membership layer to avoid those false alarms.
pub const DEFAULT_TOKEN_MS: u64 = 1000;
/// Added to the token timeout per configured node beyond two.
pub const DEFAULT_TOKEN_COEFFICIENT_MS: u64 = 650;
pub const DEFAULT_JOIN_MS: u64 = 50;
pub const DEFAULT_MERGE_MS: u64 = 200;
pub const DEFAULT_MAX_MESSAGES: u32 = 17;
pub const DEFAULT_WINDOW_SIZE: u32 = 50;
pub const DEFAULT_TOKEN_RETRANSMITS_BEFORE_LOSS: u32 = 4;
pub const DEFAULT_PORT: u16 = 5405;
pub const DEFAULT_CIPHER: &str = "chacha20poly1305";
pub const DEFAULT_HASH: &str = "none";
pub const DEFAULT_LMS_WINDOW_MS: u64 = 10_000;
pub const DEFAULT_QUORUM_PROVIDER: &str = "corosync_votequorum";
/// Accepted `crypto_cipher` values: Corosync's names, then halo's own.
pub const CIPHERS: &[&str] = &["none", "aes256", "aes192", "aes128", "chacha20poly1305"];
/// Accepted `crypto_hash` values (Corosync's names).
pub const HASHES: &[&str] = &["none", "md5", "sha1", "sha256", "sha384", "sha512"];
/// Largest config file accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// A parsed configuration and the warnings found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedConfig {
    pub config: ClusterConfig,
    pub warnings: Vec<Warning>,
}

/// Something in the file that halo ignored or adjusted; never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Every way a config file is refused. Each message is one line: where, what, a hint.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    InFile { path: PathBuf, source: Box<ConfigError> },
    #[error("config is {bytes} bytes, more than the {limit} accepted; is this the right file?")]
    TooLarge { bytes: usize, limit: usize },
    #[error("line {line}: {message}; {hint}")]
    Syntax { line: usize, message: String, hint: &'static str },
    #[error("line {line}: unbalanced braces: {message}; {hint}")]
    UnbalancedBraces { line: usize, message: String, hint: &'static str },
    #[error("line {line}: invalid value '{value}' for {key}: {hint}")]
    InvalidValue { line: usize, key: String, value: String, hint: String },
    #[error("line {line}: duplicate {what} '{value}' (first at line {first_line}); {hint}")]
    Duplicate { line: usize, what: &'static str, value: String, first_line: usize, hint: &'static str },
    #[error("line {line}: {what} is missing; {hint}")]
    Missing { line: usize, what: String, hint: &'static str },
    #[error("line {line}: {message}; {hint}")]
    Inconsistent { line: usize, message: String, hint: String },
}

impl ConfigError {
    /// The 1-based line the error is about, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } | ConfigError::TooLarge { .. } => None,
            ConfigError::InFile { source, .. } => source.line(),
            ConfigError::Syntax { line, .. }
            | ConfigError::UnbalancedBraces { line, .. }
            | ConfigError::InvalidValue { line, .. }
            | ConfigError::Duplicate { line, .. }
            | ConfigError::Missing { line, .. }
            | ConfigError::Inconsistent { line, .. } => Some(*line),
        }
    }
}

/// The whole configuration of one node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterConfig {
    pub totem: Totem,
    /// In file order; node ids, names and addresses are unique.
    pub nodes: Vec<NodeEntry>,
    pub quorum: Quorum,
    pub logging: Logging,
    pub halo: HaloPaths,
}

/// The `totem { }` section: ring timing, flow control, crypto and transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totem {
    pub cluster_name: String,
    /// Base token timeout; default [`DEFAULT_TOKEN_MS`] (1000, where Corosync 3.1 uses 3000).
    pub token_ms: u64,
    pub token_coefficient_ms: u64,
    /// Explicit consensus timeout; `None` derives it (see [`ClusterConfig::consensus_ms`]).
    pub consensus_ms: Option<u64>,
    pub join_ms: u64,
    pub merge_ms: u64,
    pub max_messages: u32,
    pub window_size: u32,
    pub token_retransmits_before_loss_const: u32,
    /// One of [`CIPHERS`], stored as written.
    pub crypto_cipher: String,
    /// One of [`HASHES`], stored as written.
    pub crypto_hash: String,
    pub transport: Transport,
    /// `None`: the transport's default (see [`Totem::netmtu`]).
    pub netmtu: Option<u32>,
    pub port: u16,
}

impl Default for Totem {
    fn default() -> Self {
        Totem {
            cluster_name: "halo".to_string(),
            token_ms: DEFAULT_TOKEN_MS,
            token_coefficient_ms: DEFAULT_TOKEN_COEFFICIENT_MS,
            consensus_ms: None,
            join_ms: DEFAULT_JOIN_MS,
            merge_ms: DEFAULT_MERGE_MS,
            max_messages: DEFAULT_MAX_MESSAGES,
            window_size: DEFAULT_WINDOW_SIZE,
            token_retransmits_before_loss_const: DEFAULT_TOKEN_RETRANSMITS_BEFORE_LOSS,
            crypto_cipher: DEFAULT_CIPHER.to_string(),
            crypto_hash: DEFAULT_HASH.to_string(),
            transport: Transport::Knet,
            netmtu: None,
            port: DEFAULT_PORT,
        }
    }
}

impl Totem {
    /// The configured netmtu, or the transport's default (1500 for udp/udpu, 65536 for knet).
    pub fn netmtu(&self) -> u32 {
        self.netmtu.unwrap_or(match self.transport {
            Transport::Knet => 65536,
            Transport::Udpu | Transport::Udp => 1500,
        })
    }
}

/// `totem.transport`. halo always sends unicast UDP; the value is kept for compatibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Knet,
    Udpu,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Knet => "knet",
            Transport::Udpu => "udpu",
            Transport::Udp => "udp",
        }
    }

    pub fn from_name(s: &str) -> Option<Transport> {
        match s {
            "knet" => Some(Transport::Knet),
            "udpu" => Some(Transport::Udpu),
            "udp" => Some(Transport::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `node { }` of the `nodelist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// Nonzero and unique.
    pub nodeid: u32,
    /// Unique; `node<nodeid>` when the file gives none.
    pub name: String,
    pub ring0_addr: IpAddr,
    pub ring1_addr: Option<IpAddr>,
    pub quorum_votes: u32,
}

/// `quorum { }` with votequorum's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    pub provider: String,
    /// Overrides the sum of the nodelist's votes when set; never 0.
    pub expected_votes: Option<u32>,
    pub two_node: bool,
    /// `None`: implied by an active two_node (see [`ClusterConfig::wait_for_all`]).
    pub wait_for_all: Option<bool>,
    pub last_man_standing: bool,
    pub last_man_standing_window_ms: u64,
    pub auto_tie_breaker: bool,
    pub auto_tie_breaker_node: TieBreaker,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum {
            provider: DEFAULT_QUORUM_PROVIDER.to_string(),
            expected_votes: None,
            two_node: false,
            wait_for_all: None,
            last_man_standing: false,
            last_man_standing_window_ms: DEFAULT_LMS_WINDOW_MS,
            auto_tie_breaker: false,
            auto_tie_breaker_node: TieBreaker::Lowest,
        }
    }
}

/// `quorum.auto_tie_breaker_node`: which half of an exact split keeps quorum.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TieBreaker {
    #[default]
    Lowest,
    Highest,
    /// Node ids in order of preference.
    List(Vec<u32>),
}

/// `logging { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub to_stderr: bool,
    pub to_logfile: bool,
    /// `None`: `<log_dir>/halo.log` (see [`crate::paths::NodePaths::log_file`]).
    pub logfile: Option<PathBuf>,
    pub debug: bool,
    pub timestamp: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Logging { to_stderr: true, to_logfile: false, logfile: None, debug: false, timestamp: false }
    }
}

/// `halo { }`: the node's directories and key file (halo only; not in Corosync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaloPaths {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Extra agents directory searched before the system ones.
    pub agents_dir: Option<PathBuf>,
    pub authkey: PathBuf,
    /// Whether halod runs halo-controld (`controller: off` leaves a node's daemons to be
    /// driven by hand: the daemons' own tests, or debugging).
    pub controller: bool,
}

impl Default for HaloPaths {
    fn default() -> Self {
        HaloPaths {
            state_dir: PathBuf::from("/var/lib/halo"),
            run_dir: PathBuf::from("/run/halo"),
            log_dir: PathBuf::from("/var/log/halo"),
            agents_dir: None,
            controller: true,
            authkey: PathBuf::from("/etc/halo/authkey"),
        }
    }
}

impl ClusterConfig {
    /// Read and parse a config file. Relative paths in `halo { }` and
    /// `logging.logfile` are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<ParsedConfig, ConfigError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ConfigError::Io { path: path.to_path_buf(), message: e.to_string() })?;
        let mut parsed = parse_bytes(&bytes)
            .map_err(|e| ConfigError::InFile { path: path.to_path_buf(), source: Box::new(e) })?;
        if let Some(dir) = path.parent() {
            parsed.config.resolve_relative_paths(dir);
        }
        Ok(parsed)
    }

    /// Make relative paths absolute against `base` (the config file's directory).
    pub fn resolve_relative_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.halo.state_dir);
        fix(&mut self.halo.run_dir);
        fix(&mut self.halo.log_dir);
        fix(&mut self.halo.authkey);
        if let Some(p) = self.halo.agents_dir.as_mut() {
            fix(p);
        }
        if let Some(p) = self.logging.logfile.as_mut() {
            fix(p);
        }
    }

    /// Check a config built in code: the same rules as the parser.
    pub fn validate(&self) -> Result<Vec<Warning>, ConfigError> {
        parse(&self.to_corosync_conf()).map(|p| p.warnings)
    }

    /// The token timeout in force: `token + (nodes - 2) × token_coefficient`
    /// with 3 or more configured nodes (the nodelist, not live members), else `token`.
    pub fn runtime_token_ms(&self) -> u64 {
        let n = self.nodes.len() as u64;
        if n >= 3 {
            self.totem
                .token_ms
                .saturating_add((n - 2).saturating_mul(self.totem.token_coefficient_ms))
        } else {
            self.totem.token_ms
        }
    }

    /// Explicit `consensus`, or 1.2 × the runtime token.
    pub fn consensus_ms(&self) -> u64 {
        self.totem
            .consensus_ms
            .unwrap_or_else(|| self.runtime_token_ms().saturating_mul(12) / 10)
    }

    /// Runtime token / (token_retransmits_before_loss_const + 0.2), rounded down.
    pub fn token_retransmit_ms(&self) -> u64 {
        let div = f64::from(self.totem.token_retransmits_before_loss_const) + 0.2;
        (self.runtime_token_ms() as f64 / div) as u64
    }

    /// How long an idle ring's representative keeps the token: retransmit × 0.8 − 10 ms.
    pub fn hold_ms(&self) -> u64 {
        (self.token_retransmit_ms().saturating_mul(8) / 10).saturating_sub(10)
    }

    /// Explicit `quorum.expected_votes`, or the sum of the nodes' votes.
    pub fn expected_votes(&self) -> u32 {
        self.quorum.expected_votes.unwrap_or_else(|| {
            self.nodes.iter().fold(0u32, |acc, n| acc.saturating_add(n.quorum_votes))
        })
    }

    /// two_node as votequorum applies it: only with exactly two nodes and
    /// without auto_tie_breaker.
    pub fn two_node(&self) -> bool {
        self.quorum.two_node && self.nodes.len() == 2 && !self.quorum.auto_tie_breaker
    }

    /// Explicit wait_for_all, or implied by an active two_node.
    pub fn wait_for_all(&self) -> bool {
        self.quorum.wait_for_all.unwrap_or_else(|| self.two_node())
    }

    pub fn node_by_id(&self, nodeid: u32) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.nodeid == nodeid)
    }

    pub fn node_by_name(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_by_addr(&self, addr: IpAddr) -> Option<&NodeEntry> {
        self.nodes
            .iter()
            .find(|n| n.ring0_addr == addr || n.ring1_addr == Some(addr))
    }

    /// The local node, named by one of its addresses or by its name.
    pub fn local_node(&self, addr_or_name: &str) -> Option<&NodeEntry> {
        match addr_or_name.trim().parse::<IpAddr>() {
            Ok(addr) => self.node_by_addr(addr),
            Err(_) => self.node_by_name(addr_or_name.trim()),
        }
    }

    /// This host's node: the one named (by name or address), else the first in nodelist
    /// order whose ring0 address this host can bind. The error is one line with a hint.
    pub fn find_local(&self, node: Option<&str>) -> Result<NodeEntry, String> {
        match node {
            Some(n) => self.local_node(n).cloned().ok_or_else(|| format!("node '{n}' is not in the nodelist; use a name or ring0_addr listed there")),
            None => self
                .nodes
                .iter()
                .find(|n| std::net::UdpSocket::bind((n.ring0_addr, 0)).is_ok())
                .cloned()
                .ok_or_else(|| "no node of the nodelist has an address on this host; pass --node NAME".to_string()),
        }
    }
}
