//! From the syntax tree to a validated [`ClusterConfig`]. Sections are read in
//! file order; the first error found is returned, nothing is half-applied.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::syntax::{clip, tokenize, Entry, Pair, Section};
use super::{
    ClusterConfig, ConfigError, NodeEntry, ParsedConfig, TieBreaker, Transport, Warning, CIPHERS,
    DEFAULT_QUORUM_PROVIDER, HASHES, MAX_CONFIG_BYTES,
};

/// Corosync options halo knows and does not use: a softer warning than an unknown key.
const TOTEM_IGNORED: &[&str] = &[
    "secauth", "crypto_model", "ip_version", "link_mode", "hold", "token_retransmit",
    "token_warning", "send_join", "downcheck", "fail_recv_const", "seqno_unchanged_const",
    "miss_count_const", "max_network_delay", "heartbeat_failures_allowed", "rrp_mode",
    "clear_node_high_bit", "threads", "nodeid", "key", "config_version", "block_unlisted_ips",
    "cancel_token_hold_on_retransmit", "rrp_problem_count_timeout", "vsftype",
];
const QUORUM_IGNORED: &[&str] = &["allow_downscale", "expected_votes_tracking", "votes"];
const LOGGING_IGNORED: &[&str] = &[
    "to_syslog", "syslog_facility", "syslog_priority", "logfile_priority", "fileline",
    "function_name", "blackbox", "subsys", "tags",
];
const NODE_IGNORED: &[&str] = &[
    "ring2_addr", "ring3_addr", "ring4_addr", "ring5_addr", "ring6_addr", "ring7_addr",
];
/// Longest `auto_tie_breaker_node` list accepted.
const MAX_TIE_BREAKER_IDS: usize = 1024;
const SECTIONS_IGNORED: &[&str] = &["system", "resources", "qb", "nozzle", "uidgid", "service"];

/// Parse a whole config file's text.
pub fn parse(text: &str) -> Result<ParsedConfig, ConfigError> {
    let (root, last_line) = tokenize(text)?;
    let mut p = Parser { end_line: last_line, ..Parser::default() };
    p.root(&root)?;
    p.finish()
}

/// Parse raw file contents; refuses bytes that are not UTF-8 with the line of the first bad byte.
pub fn parse_bytes(bytes: &[u8]) -> Result<ParsedConfig, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { bytes: bytes.len(), limit: MAX_CONFIG_BYTES });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
            Err(ConfigError::Syntax {
                line,
                message: "the file is not valid UTF-8".to_string(),
                hint: "save it as UTF-8 text",
            })
        }
    }
}

#[derive(Default)]
struct Parser {
    config: ClusterConfig,
    warnings: Vec<Warning>,
    end_line: usize,
    /// (section, key) -> line where first set, to warn about repeats.
    seen: BTreeMap<(String, String), usize>,
    /// Lines of the settings that later cross-checks point at.
    nodelist_line: Option<usize>,
    consensus_line: usize,
    two_node_line: usize,
    atb_line: usize,
    atb_node_line: usize,
    lms_line: usize,
    cipher_line: usize,
    keyfile: Option<PathBuf>,
    authkey_set: bool,
    node_ids: BTreeMap<u32, usize>,
    node_names: BTreeMap<String, usize>,
    node_addrs: BTreeMap<IpAddr, usize>,
}

impl Parser {
    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(Warning { line, message });
    }

    /// Warn when a key is set twice in the same kind of section; the last value wins.
    fn note(&mut self, section: &str, p: &Pair) {
        let k = (section.to_string(), p.key.clone());
        if let Some(&first) = self.seen.get(&k) {
            self.warn(p.line, format!("{section}.{} set again (first at line {first}); the last value is used", p.key));
        } else {
            self.seen.insert(k, p.line);
        }
    }

    fn unknown_key(&mut self, section: &str, p: &Pair, ignored: &[&str]) {
        let msg = if ignored.contains(&p.key.as_str()) || p.key.starts_with("knet_") {
            format!("{section}.{} is a Corosync option halo does not use; ignored", p.key)
        } else {
            format!("unknown key {section}.{}; ignored", p.key)
        };
        self.warn(p.line, msg);
    }

    fn unknown_section(&mut self, parent: &str, s: &Section) {
        self.warn(s.line, format!("unknown section {parent}.{} {{ }}; ignored", s.name));
    }

    fn root(&mut self, root: &Section) -> Result<(), ConfigError> {
        for entry in &root.entries {
            match entry {
                Entry::Pair(p) => self.warn(p.line, format!("unknown top-level key '{}'; ignored", p.key)),
                Entry::Section(s) => match s.name.as_str() {
                    "totem" => self.totem(s)?,
                    "nodelist" => self.nodelist(s)?,
                    "quorum" => self.quorum(s)?,
                    "logging" => self.logging(s)?,
                    "halo" => self.halo(s)?,
                    name if SECTIONS_IGNORED.contains(&name) => self.warn(
                        s.line,
                        format!("section {name} {{ }} is a Corosync section halo does not use; ignored"),
                    ),
                    name => self.warn(s.line, format!("unknown section {name} {{ }}; ignored")),
                },
            }
        }
        Ok(())
    }

    fn totem(&mut self, sec: &Section) -> Result<(), ConfigError> {
        for entry in &sec.entries {
            let p = match entry {
                Entry::Section(s) if s.name == "interface" => {
                    self.warn(s.line, "totem.interface { } is ignored: halo uses the nodes' ring addresses and totem.port".to_string());
                    continue;
                }
                Entry::Section(s) => {
                    self.unknown_section("totem", s);
                    continue;
                }
                Entry::Pair(p) => p,
            };
            self.note("totem", p);
            let t = &mut self.config.totem;
            match p.key.as_str() {
                "cluster_name" => t.cluster_name = word(p, "totem", "give the cluster a one-word name")?,
                "token" => t.token_ms = number(p, "totem", 1, u64::from(u32::MAX), "milliseconds")?,
                "token_coefficient" => {
                    t.token_coefficient_ms = number(p, "totem", 0, u64::from(u32::MAX), "milliseconds")?
                }
                "consensus" => {
                    t.consensus_ms = Some(number(p, "totem", 1, u64::from(u32::MAX), "milliseconds")?);
                    self.consensus_line = p.line;
                }
                "join" => t.join_ms = number(p, "totem", 1, u64::from(u32::MAX), "milliseconds")?,
                "merge" => t.merge_ms = number(p, "totem", 1, u64::from(u32::MAX), "milliseconds")?,
                "max_messages" => t.max_messages = number(p, "totem", 1, 65535, "messages")? as u32,
                "window_size" => t.window_size = number(p, "totem", 1, 65535, "messages")? as u32,
                "token_retransmits_before_loss_const" => {
                    t.token_retransmits_before_loss_const = number(p, "totem", 1, 1000, "retransmits")? as u32
                }
                "crypto_cipher" => {
                    if !CIPHERS.contains(&p.value.as_str()) {
                        return Err(invalid(p, "totem", format!("expected one of {}", CIPHERS.join(", "))));
                    }
                    t.crypto_cipher = p.value.clone();
                    self.cipher_line = p.line;
                }
                "crypto_hash" => {
                    if !HASHES.contains(&p.value.as_str()) {
                        return Err(invalid(p, "totem", format!("expected one of {}", HASHES.join(", "))));
                    }
                    t.crypto_hash = p.value.clone();
                }
                "transport" => {
                    t.transport = Transport::from_name(&p.value)
                        .ok_or_else(|| invalid(p, "totem", "expected knet, udpu or udp".to_string()))?
                }
                "netmtu" => t.netmtu = Some(number(p, "totem", 576, 65536, "bytes")? as u32),
                "port" => t.port = number(p, "totem", 1, 65535, "UDP port")? as u16,
                "keyfile" => self.keyfile = Some(path(p, "totem")?),
                "version" => {
                    if p.value != "2" {
                        self.warn(p.line, format!("totem.version is '{}', Corosync 3 expects 2; ignored", clip(&p.value)));
                    }
                }
                _ => self.unknown_key("totem", p, TOTEM_IGNORED),
            }
        }
        Ok(())
    }

    fn nodelist(&mut self, sec: &Section) -> Result<(), ConfigError> {
        self.nodelist_line.get_or_insert(sec.line);
        for entry in &sec.entries {
            match entry {
                Entry::Pair(p) => self.warn(p.line, format!("unknown key nodelist.{}; ignored (node settings go inside node {{ }})", p.key)),
                Entry::Section(s) if s.name == "node" => self.node(s)?,
                Entry::Section(s) => self.unknown_section("nodelist", s),
            }
        }
        Ok(())
    }

    fn node(&mut self, sec: &Section) -> Result<(), ConfigError> {
        let mut nodeid: Option<(u32, usize)> = None;
        let mut name: Option<(String, usize)> = None;
        let mut ring0: Option<(IpAddr, usize)> = None;
        let mut ring1: Option<(IpAddr, usize)> = None;
        let mut votes = 1u32;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for entry in &sec.entries {
            let p = match entry {
                Entry::Section(s) => {
                    self.unknown_section("nodelist.node", s);
                    continue;
                }
                Entry::Pair(p) => p,
            };
            if let Some(first) = seen.insert(p.key.as_str(), p.line) {
                self.warn(p.line, format!("node.{} set again (first at line {first}); the last value is used", p.key));
            }
            match p.key.as_str() {
                "nodeid" => {
                    let id = number(p, "nodelist.node", 0, u64::from(u32::MAX), "node id")? as u32;
                    if id == 0 {
                        return Err(invalid(p, "nodelist.node", "node ids must be nonzero".to_string()));
                    }
                    nodeid = Some((id, p.line));
                }
                "name" => name = Some((word(p, "nodelist.node", "node names are one word")?, p.line)),
                "ring0_addr" => ring0 = Some((address(p)?, p.line)),
                "ring1_addr" => ring1 = Some((address(p)?, p.line)),
                "quorum_votes" => votes = number(p, "nodelist.node", 0, 1_000_000, "votes")? as u32,
                _ => self.unknown_key("nodelist.node", p, NODE_IGNORED),
            }
        }
        let Some((nodeid, id_line)) = nodeid else {
            return Err(ConfigError::Missing {
                line: sec.line,
                what: "nodeid of this node { }".to_string(),
                hint: "add 'nodeid: N' (a unique nonzero number) inside node { }",
            });
        };
        let Some((ring0_addr, _)) = ring0 else {
            return Err(ConfigError::Missing {
                line: sec.line,
                what: format!("ring0_addr of node {nodeid}"),
                hint: "add 'ring0_addr: IP' inside node { }",
            });
        };
        if let Some(&first_line) = self.node_ids.get(&nodeid) {
            return Err(dup(id_line, "nodeid", nodeid.to_string(), first_line, "each node needs its own nodeid"));
        }
        self.node_ids.insert(nodeid, id_line);
        let (name, name_line) = match name {
            Some(n) => n,
            None => {
                let n = format!("node{nodeid}");
                self.warn(sec.line, format!("node {nodeid} has no name; using '{n}'"));
                (n, sec.line)
            }
        };
        if let Some(&first_line) = self.node_names.get(&name) {
            return Err(dup(name_line, "node name", name, first_line, "each node needs its own name"));
        }
        self.node_names.insert(name.clone(), name_line);
        for (addr, line) in ring0.into_iter().chain(ring1) {
            if let Some(&first_line) = self.node_addrs.get(&addr) {
                return Err(dup(line, "address", addr.to_string(), first_line, "each ring address belongs to one node"));
            }
            self.node_addrs.insert(addr, line);
        }
        self.config.nodes.push(NodeEntry {
            nodeid,
            name,
            ring0_addr,
            ring1_addr: ring1.map(|(a, _)| a),
            quorum_votes: votes,
        });
        Ok(())
    }

    fn quorum(&mut self, sec: &Section) -> Result<(), ConfigError> {
        for entry in &sec.entries {
            let p = match entry {
                Entry::Section(s) if s.name == "device" => {
                    self.warn(s.line, "quorum.device { } (qdevice) is not supported by halo; ignored".to_string());
                    continue;
                }
                Entry::Section(s) => {
                    self.unknown_section("quorum", s);
                    continue;
                }
                Entry::Pair(p) => p,
            };
            self.note("quorum", p);
            let q = &mut self.config.quorum;
            match p.key.as_str() {
                "provider" => {
                    if p.value != DEFAULT_QUORUM_PROVIDER {
                        return Err(invalid(p, "quorum", format!("halo implements votequorum only: use '{DEFAULT_QUORUM_PROVIDER}'")));
                    }
                    q.provider = p.value.clone();
                }
                "expected_votes" => {
                    let v = number(p, "quorum", 0, 1_000_000, "votes")? as u32;
                    if v == 0 {
                        return Err(invalid(p, "quorum", "expected_votes must be at least 1; remove it to use the sum of the nodelist's votes".to_string()));
                    }
                    q.expected_votes = Some(v);
                }
                "two_node" => {
                    q.two_node = boolean(p, "quorum")?;
                    self.two_node_line = p.line;
                }
                "wait_for_all" => q.wait_for_all = Some(boolean(p, "quorum")?),
                "last_man_standing" => {
                    q.last_man_standing = boolean(p, "quorum")?;
                    self.lms_line = p.line;
                }
                "last_man_standing_window" => {
                    q.last_man_standing_window_ms = number(p, "quorum", 1, u64::from(u32::MAX), "milliseconds")?
                }
                "auto_tie_breaker" => {
                    q.auto_tie_breaker = boolean(p, "quorum")?;
                    self.atb_line = p.line;
                }
                "auto_tie_breaker_node" => {
                    q.auto_tie_breaker_node = tie_breaker(p)?;
                    self.atb_node_line = p.line;
                }
                _ => self.unknown_key("quorum", p, QUORUM_IGNORED),
            }
        }
        Ok(())
    }

    fn logging(&mut self, sec: &Section) -> Result<(), ConfigError> {
        for entry in &sec.entries {
            let p = match entry {
                Entry::Section(s) if s.name == "logger_subsys" => {
                    self.warn(s.line, "logging.logger_subsys { } is ignored by halo".to_string());
                    continue;
                }
                Entry::Section(s) => {
                    self.unknown_section("logging", s);
                    continue;
                }
                Entry::Pair(p) => p,
            };
            self.note("logging", p);
            let l = &mut self.config.logging;
            match p.key.as_str() {
                "to_stderr" => l.to_stderr = boolean(p, "logging")?,
                "to_logfile" => l.to_logfile = boolean(p, "logging")?,
                "logfile" => l.logfile = Some(path(p, "logging")?),
                "debug" => l.debug = p.value == "trace" || boolean(p, "logging")?,
                "timestamp" => l.timestamp = p.value == "hires" || boolean(p, "logging")?,
                _ => self.unknown_key("logging", p, LOGGING_IGNORED),
            }
        }
        Ok(())
    }

    fn halo(&mut self, sec: &Section) -> Result<(), ConfigError> {
        for entry in &sec.entries {
            let p = match entry {
                Entry::Section(s) => {
                    self.unknown_section("halo", s);
                    continue;
                }
                Entry::Pair(p) => p,
            };
            self.note("halo", p);
            let h = &mut self.config.halo;
            match p.key.as_str() {
                "state_dir" => h.state_dir = path(p, "halo")?,
                "run_dir" => h.run_dir = path(p, "halo")?,
                "log_dir" => h.log_dir = path(p, "halo")?,
                "agents_dir" => h.agents_dir = Some(path(p, "halo")?),
                "controller" => h.controller = boolean(p, "halo")?,
                "authkey" => {
                    h.authkey = path(p, "halo")?;
                    self.authkey_set = true;
                }
                _ => self.unknown_key("halo", p, &[]),
            }
        }
        Ok(())
    }

    /// Cross-checks that need the whole file.
    fn finish(mut self) -> Result<ParsedConfig, ConfigError> {
        let Some(nodelist_line) = self.nodelist_line else {
            return Err(ConfigError::Missing {
                line: self.end_line,
                what: "nodelist { } section".to_string(),
                hint: "add nodelist { node { nodeid: 1  ring0_addr: IP  name: NAME } ... } with one node { } per node",
            });
        };
        if self.config.nodes.is_empty() {
            return Err(ConfigError::Missing {
                line: nodelist_line,
                what: "node { } in nodelist".to_string(),
                hint: "add one node { nodeid: N  ring0_addr: IP  name: NAME } per node",
            });
        }
        if let Some(keyfile) = self.keyfile.take() {
            if !self.authkey_set {
                self.config.halo.authkey = keyfile;
            }
        }
        let cfg = &self.config;
        let n = cfg.nodes.len();
        if n >= 3 {
            if let Some(consensus) = cfg.totem.consensus_ms {
                let token = cfg.runtime_token_ms();
                if consensus <= token {
                    return Err(ConfigError::Inconsistent {
                        line: self.consensus_line,
                        message: format!("consensus {consensus} ms is not above the runtime token {token} ms of this {n}-node cluster"),
                        hint: format!("remove consensus to use 1.2 x token ({} ms), or raise it", token.saturating_mul(12) / 10),
                    });
                }
            }
        }
        let sum = cfg.nodes.iter().fold(0u64, |a, n| a + u64::from(n.quorum_votes));
        if cfg.quorum.expected_votes.is_none() && sum == 0 {
            return Err(ConfigError::Inconsistent {
                line: nodelist_line,
                message: "every node has quorum_votes 0, so expected_votes would be 0".to_string(),
                hint: "give at least one node a vote, or set quorum.expected_votes".to_string(),
            });
        }
        let q = &cfg.quorum;
        if let TieBreaker::List(ids) = &q.auto_tie_breaker_node {
            if let Some(id) = ids.iter().find(|id| cfg.node_by_id(**id).is_none()) {
                return Err(ConfigError::InvalidValue {
                    line: self.atb_node_line,
                    key: "quorum.auto_tie_breaker_node".to_string(),
                    value: id.to_string(),
                    hint: "list only node ids of the nodelist".to_string(),
                });
            }
        }
        if q.last_man_standing {
            if let Some(node) = cfg.nodes.iter().find(|n| n.quorum_votes != 1) {
                return Err(ConfigError::Inconsistent {
                    line: self.lms_line,
                    message: format!("last_man_standing with node {} having {} votes", node.nodeid, node.quorum_votes),
                    hint: "last_man_standing needs quorum_votes 1 on every node".to_string(),
                });
            }
        }
        let mut warnings = Vec::new();
        if q.two_node && n != 2 {
            warnings.push((self.two_node_line, format!("two_node with {n} nodes in the nodelist: votequorum disables two_node unless there are exactly 2")));
        }
        if q.two_node && q.auto_tie_breaker {
            warnings.push((self.two_node_line, "two_node is turned off by auto_tie_breaker".to_string()));
        }
        if q.auto_tie_breaker && n % 2 == 1 && q.wait_for_all != Some(true) {
            if q.last_man_standing {
                return Err(ConfigError::Inconsistent {
                    line: self.atb_line,
                    message: format!("auto_tie_breaker and last_man_standing with an odd number of nodes ({n}) and no wait_for_all"),
                    hint: "set wait_for_all: 1".to_string(),
                });
            }
            warnings.push((self.atb_line, format!("auto_tie_breaker with an odd number of nodes ({n}) needs wait_for_all: 1; it is disabled")));
        }
        if let Some(e) = q.expected_votes {
            if u64::from(e) < sum {
                warnings.push((nodelist_line, format!("expected_votes {e} is below the nodelist's {sum} votes; votequorum raises it when they are present")));
            }
        }
        let t = &cfg.totem;
        if t.crypto_cipher == "none" {
            warnings.push((self.cipher_line, format!("crypto_cipher none: halo always authenticates and encrypts packets (with {})", super::DEFAULT_CIPHER)));
        } else if t.crypto_cipher.starts_with("aes") && t.crypto_hash == "none" {
            warnings.push((self.cipher_line, format!("crypto_cipher {} with crypto_hash none: Corosync refuses this; halo's AEAD authenticates anyway", t.crypto_cipher)));
        }
        for (line, message) in warnings {
            self.warn(line, message);
        }
        Ok(ParsedConfig { config: self.config, warnings: self.warnings })
    }
}

fn invalid(p: &Pair, section: &str, hint: String) -> ConfigError {
    ConfigError::InvalidValue { line: p.line, key: format!("{section}.{}", p.key), value: clip(&p.value), hint }
}

fn dup(line: usize, what: &'static str, value: String, first_line: usize, hint: &'static str) -> ConfigError {
    ConfigError::Duplicate { line, what, value: clip(&value), first_line, hint }
}

fn number(p: &Pair, section: &str, min: u64, max: u64, unit: &str) -> Result<u64, ConfigError> {
    match p.value.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => {
            let mut hint = format!("expected a whole number ({unit}) from {min} to {max}");
            if p.value.contains('#') {
                hint.push_str("; comments go on their own line");
            }
            Err(invalid(p, section, hint))
        }
    }
}

fn boolean(p: &Pair, section: &str) -> Result<bool, ConfigError> {
    match p.value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Ok(true),
        "0" | "no" | "off" | "false" => Ok(false),
        _ => Err(invalid(p, section, "expected 1/0, yes/no or on/off".to_string())),
    }
}

fn word(p: &Pair, section: &str, hint: &str) -> Result<String, ConfigError> {
    if p.value.is_empty() || p.value.chars().any(char::is_whitespace) {
        return Err(invalid(p, section, hint.to_string()));
    }
    Ok(p.value.clone())
}

fn path(p: &Pair, section: &str) -> Result<PathBuf, ConfigError> {
    if p.value.is_empty() {
        return Err(invalid(p, section, "expected a path".to_string()));
    }
    Ok(PathBuf::from(&p.value))
}

fn address(p: &Pair) -> Result<IpAddr, ConfigError> {
    p.value.parse::<IpAddr>().map_err(|_| {
        invalid(p, "nodelist.node", "expected an IPv4 or IPv6 address; halo does not resolve host names".to_string())
    })
}

fn tie_breaker(p: &Pair) -> Result<TieBreaker, ConfigError> {
    match p.value.as_str() {
        "lowest" => return Ok(TieBreaker::Lowest),
        "highest" => return Ok(TieBreaker::Highest),
        _ => {}
    }
    let hint = "expected lowest, highest or a list of nonzero node ids separated by spaces";
    let mut ids = Vec::new();
    for part in p.value.split_whitespace() {
        if ids.len() >= MAX_TIE_BREAKER_IDS {
            return Err(invalid(p, "quorum", format!("at most {MAX_TIE_BREAKER_IDS} node ids")));
        }
        match part.parse::<u32>() {
            Ok(id) if id != 0 && !ids.contains(&id) => ids.push(id),
            _ => return Err(invalid(p, "quorum", hint.to_string())),
        }
    }
    if ids.is_empty() {
        return Err(invalid(p, "quorum", hint.to_string()));
    }
    Ok(TieBreaker::List(ids))
}
