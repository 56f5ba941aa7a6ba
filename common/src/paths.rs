//! Every file and directory a node uses, derived from its config's `halo { }`
//! and `logging { }` sections (BLUEPRINT "Paths and the sandbox"): nothing is
//! hard-coded, so several nodes run on one host, each with its own dirs.
//!
//! Layout:
//! ```text
//! run_dir/<daemon>.sock     gRPC Unix socket of each daemon (halod.sock, membershipd.sock, cibd.sock, ...)
//! run_dir/<daemon>.pid      pid file of each daemon
//! run_dir/rsctmp/           HA_RSCTMP for resource agents
//! state_dir/cib/            CIB storage
//! state_dir/ring_seq        highest totem ring sequence used (persisted, MEMBERSHIP-NOTES 2.4)
//! log_dir/halo.log          log file unless logging.logfile says otherwise
//! ```

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use crate::config::ClusterConfig;

/// Exit code of a daemon that must not be respawned: halod stops the node and stays down
/// (Pacemaker's CRM_EX_FATAL). halo-controld exits so once the node learnt it was fenced.
pub const EXIT_FATAL: i32 = 100;

/// Longest Unix socket path the kernel accepts (sun_path is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// The processes of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Daemon {
    Halod,
    Membershipd,
    Cibd,
    Schedulerd,
    Execd,
    Fenced,
    Controld,
}

impl Daemon {
    pub const ALL: [Daemon; 7] = [
        Daemon::Halod,
        Daemon::Membershipd,
        Daemon::Cibd,
        Daemon::Schedulerd,
        Daemon::Execd,
        Daemon::Fenced,
        Daemon::Controld,
    ];

    /// Short name, used for its socket and pid file (`cibd` -> `cibd.sock`).
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Halod => "halod",
            Daemon::Membershipd => "membershipd",
            Daemon::Cibd => "cibd",
            Daemon::Schedulerd => "schedulerd",
            Daemon::Execd => "execd",
            Daemon::Fenced => "fenced",
            Daemon::Controld => "controld",
        }
    }

    /// Executable name (`halo-cibd`; the supervisor is plain `halod`).
    pub fn binary(self) -> &'static str {
        match self {
            Daemon::Halod => "halod",
            Daemon::Membershipd => "halo-membershipd",
            Daemon::Cibd => "halo-cibd",
            Daemon::Schedulerd => "halo-schedulerd",
            Daemon::Execd => "halo-execd",
            Daemon::Fenced => "halo-fenced",
            Daemon::Controld => "halo-controld",
        }
    }
}

/// A node's paths, computed once from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    pub agents_dir: Option<PathBuf>,
    pub authkey: PathBuf,
    logfile: Option<PathBuf>,
}

impl NodePaths {
    pub fn from_config(config: &ClusterConfig) -> NodePaths {
        let h = &config.halo;
        NodePaths {
            state_dir: h.state_dir.clone(),
            run_dir: h.run_dir.clone(),
            log_dir: h.log_dir.clone(),
            agents_dir: h.agents_dir.clone(),
            authkey: h.authkey.clone(),
            logfile: config.logging.logfile.clone(),
        }
    }

    /// `run_dir/<daemon>.sock`.
    pub fn socket(&self, daemon: Daemon) -> PathBuf {
        self.run_dir.join(format!("{}.sock", daemon.name()))
    }

    /// `run_dir/<daemon>.pid`.
    pub fn pid_file(&self, daemon: Daemon) -> PathBuf {
        self.run_dir.join(format!("{}.pid", daemon.name()))
    }

    /// HA_RSCTMP for this node's resource agents: `run_dir/rsctmp`.
    pub fn rsctmp_dir(&self) -> PathBuf {
        self.run_dir.join("rsctmp")
    }

    /// Where the CIB daemon keeps its store: `state_dir/cib`.
    pub fn cib_dir(&self) -> PathBuf {
        self.state_dir.join("cib")
    }

    /// The persisted totem ring sequence: `state_dir/ring_seq`.
    pub fn ring_seq_file(&self) -> PathBuf {
        self.state_dir.join("ring_seq")
    }

    /// `logging.logfile` if set, else `log_dir/halo.log`.
    pub fn log_file(&self) -> PathBuf {
        self.logfile.clone().unwrap_or_else(|| self.log_dir.join("halo.log"))
    }

    /// The first socket path too long for the kernel, if any (deep sandbox dirs hit this).
    pub fn socket_path_too_long(&self) -> Option<PathBuf> {
        Daemon::ALL
            .iter()
            .map(|d| self.socket(*d))
            .find(|p| p.as_os_str().len() > MAX_SOCKET_PATH_BYTES)
    }

    /// Create the state (0700), run, rsctmp and log (0755) directories with their parents.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o700).create(&self.state_dir)?;
        for dir in [&self.run_dir, &self.rsctmp_dir(), &self.log_dir] {
            DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const CONF: &str = "totem {\n cluster_name: t\n}\nnodelist {\n node {\n  nodeid: 1\n  ring0_addr: 127.0.0.11\n }\n}\n";

    #[test]
    fn defaults_are_the_system_paths() {
        let c = parse(CONF).unwrap().config;
        let p = NodePaths::from_config(&c);
        assert_eq!(p.socket(Daemon::Membershipd), PathBuf::from("/run/halo/membershipd.sock"));
        assert_eq!(p.socket(Daemon::Cibd), PathBuf::from("/run/halo/cibd.sock"));
        assert_eq!(p.pid_file(Daemon::Halod), PathBuf::from("/run/halo/halod.pid"));
        assert_eq!(p.rsctmp_dir(), PathBuf::from("/run/halo/rsctmp"));
        assert_eq!(p.cib_dir(), PathBuf::from("/var/lib/halo/cib"));
        assert_eq!(p.ring_seq_file(), PathBuf::from("/var/lib/halo/ring_seq"));
        assert_eq!(p.log_file(), PathBuf::from("/var/log/halo/halo.log"));
        assert_eq!(p.authkey, PathBuf::from("/etc/halo/authkey"));
        assert_eq!(p.socket_path_too_long(), None);
    }

    #[test]
    fn sandbox_paths_follow_the_config_and_dirs_are_created() {
        let base = std::env::temp_dir().join(format!("halo-common-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let text = format!(
            "{CONF}halo {{\n state_dir: node1/state\n run_dir: node1/run\n log_dir: node1/log\n authkey: authkey\n}}\nlogging {{\n logfile: node1/log/n1.log\n}}\n"
        );
        let file = base.join("node1.conf");
        std::fs::write(&file, text).unwrap();
        let c = ClusterConfig::load(&file).unwrap().config;
        let p = NodePaths::from_config(&c);
        assert_eq!(p.socket(Daemon::Execd), base.join("node1/run/execd.sock"));
        assert_eq!(p.rsctmp_dir(), base.join("node1/run/rsctmp"));
        assert_eq!(p.authkey, base.join("authkey"));
        assert_eq!(p.log_file(), base.join("node1/log/n1.log"));
        p.create_dirs().unwrap();
        for d in [&p.state_dir, &p.run_dir, &p.log_dir, &p.rsctmp_dir()] {
            assert!(d.is_dir(), "{}", d.display());
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn long_run_dir_is_reported() {
        let mut c = parse(CONF).unwrap().config;
        c.halo.run_dir = PathBuf::from(format!("/tmp/{}", "d".repeat(100)));
        let p = NodePaths::from_config(&c);
        assert!(p.socket_path_too_long().is_some());
        assert_eq!(Daemon::ALL.len(), 7);
        assert_eq!(Daemon::Cibd.binary(), "halo-cibd");
    }
}
