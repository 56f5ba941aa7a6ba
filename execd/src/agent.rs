//! Agents: what `ocf:heartbeat:Dummy` names, where its executable is, and which agents a
//! node has (EXECD-NOTES §1, §3, §4, §5).
//!
//! Search order for ocf agents: halo's own agents directory (`<dir>/ocf/<provider>/<type>`)
//! then `$OCF_ROOT/resource.d/<provider>/<type>`. Fence agents: `<dir>/fence/<name>`, then
//! `/usr/sbin/<name>`. LSB scripts: `/etc/init.d/<name>`. Nothing is cached, so an agent
//! dropped into a directory is usable at once. Names are checked before any path is built
//! (no `/`, no `..`, no leading `.`), and the resolved path must stay inside its directory.

use std::fmt;
use std::path::{Path, PathBuf};

/// The agent standards ("classes") Pacemaker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Standard {
    Ocf,
    Lsb,
    Systemd,
    Stonith,
}

impl Standard {
    pub fn name(self) -> &'static str {
        match self {
            Standard::Ocf => "ocf",
            Standard::Lsb => "lsb",
            Standard::Systemd => "systemd",
            Standard::Stonith => "stonith",
        }
    }

    pub fn parse(s: &str) -> Option<Standard> {
        match s {
            "ocf" => Some(Standard::Ocf),
            "lsb" => Some(Standard::Lsb),
            "systemd" => Some(Standard::Systemd),
            "stonith" => Some(Standard::Stonith),
            _ => None,
        }
    }
}

/// `standard[:provider]:type`, as in a primitive's class, provider and type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentSpec {
    pub standard: Standard,
    pub provider: Option<String>,
    pub kind: String,
}

impl fmt::Display for AgentSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.provider {
            Some(p) => write!(f, "{}:{}:{}", self.standard.name(), p, self.kind),
            None => write!(f, "{}:{}", self.standard.name(), self.kind),
        }
    }
}

/// A name that is safe as one path component.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
}

impl AgentSpec {
    /// Parse `ocf:heartbeat:Dummy`, `lsb:foo`, `systemd:foo.service`, `stonith:fence_dummy`.
    pub fn parse(s: &str) -> Result<AgentSpec, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let hint = "write it as ocf:PROVIDER:TYPE, lsb:NAME, systemd:NAME or stonith:NAME";
        let (std, provider, kind) = match parts.as_slice() {
            [std, provider, kind] => (*std, Some(*provider), *kind),
            [std, kind] => (*std, None, *kind),
            _ => return Err(format!("agent '{s}' is not STANDARD[:PROVIDER]:TYPE; {hint}")),
        };
        let standard = Standard::parse(std).ok_or_else(|| format!("unknown agent standard '{std}' in '{s}'; {hint}"))?;
        match (standard, provider) {
            (Standard::Ocf, None) => return Err(format!("ocf agent '{s}' needs a provider; {hint}")),
            (Standard::Ocf, Some(_)) => {}
            (_, Some(_)) => return Err(format!("only ocf agents have a provider: '{s}'; {hint}")),
            _ => {}
        }
        for n in provider.iter().chain(std::iter::once(&kind)) {
            if !safe_name(n) {
                return Err(format!("'{n}' in agent '{s}' is not a valid agent name (letters, digits, - _ . @ +; no leading dot)"));
            }
        }
        Ok(AgentSpec { standard, provider: provider.map(str::to_string), kind: kind.to_string() })
    }

    /// The spec of a CIB primitive's class/provider/type.
    pub fn from_parts(class: &str, provider: Option<&str>, kind: &str) -> Result<AgentSpec, String> {
        match provider {
            Some(p) => AgentSpec::parse(&format!("{class}:{p}:{kind}")),
            None => AgentSpec::parse(&format!("{class}:{kind}")),
        }
    }
}

/// Where a node's agents live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDirs {
    /// `OCF_ROOT` (default `/usr/lib/ocf`).
    pub ocf_root: PathBuf,
    /// halo's agents directory: `ocf/<provider>/<type>` and `fence/<name>` inside.
    pub halo: Option<PathBuf>,
    /// LSB init scripts (`/etc/init.d`).
    pub initd: PathBuf,
    /// Fence agents (`/usr/sbin`).
    pub fence: PathBuf,
}

impl AgentDirs {
    /// The directories of this host: `OCF_ROOT` from the environment or `/usr/lib/ocf`;
    /// halo's agents from `HALO_AGENTS_DIR`, else the repository's `agents/` when `exe`
    /// runs from a checkout (`<repo>/target/<profile>/...`), else `/usr/lib/halo/agents`.
    pub fn discover(exe: Option<&Path>) -> AgentDirs {
        let ocf_root = std::env::var_os("OCF_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/lib/ocf"));
        let halo = std::env::var_os("HALO_AGENTS_DIR").map(PathBuf::from).or_else(|| {
            let checkout = exe.and_then(|e| e.ancestors().find(|d| d.join("Cargo.toml").is_file() && d.join("agents").is_dir()));
            Some(checkout.map(|d| d.join("agents")).unwrap_or_else(|| PathBuf::from("/usr/lib/halo/agents")))
        });
        AgentDirs { ocf_root, halo, initd: PathBuf::from("/etc/init.d"), fence: PathBuf::from("/usr/sbin") }
    }

    /// Where the agent's executable is, or why there is none (the caller reports rc 5).
    pub fn locate(&self, spec: &AgentSpec) -> Result<PathBuf, String> {
        let candidates: Vec<(PathBuf, PathBuf)> = match spec.standard {
            Standard::Ocf => {
                let p = spec.provider.as_deref().unwrap_or_default();
                let mut v = Vec::new();
                if let Some(h) = &self.halo {
                    v.push((h.join("ocf"), h.join("ocf").join(p).join(&spec.kind)));
                }
                let rd = self.ocf_root.join("resource.d");
                v.push((rd.clone(), rd.join(p).join(&spec.kind)));
                v
            }
            Standard::Lsb => vec![(self.initd.clone(), self.initd.join(&spec.kind))],
            Standard::Stonith => {
                let mut v = Vec::new();
                if let Some(h) = &self.halo {
                    v.push((h.join("fence"), h.join("fence").join(&spec.kind)));
                }
                v.push((self.fence.clone(), self.fence.join(&spec.kind)));
                v
            }
            Standard::Systemd => return Err("systemd units are not files to run".into()),
        };
        for (root, path) in &candidates {
            if let Some(p) = executable_inside(root, path) {
                return Ok(p);
            }
        }
        let tried: Vec<String> = candidates.iter().map(|(_, p)| p.display().to_string()).collect();
        Err(format!("agent {spec} is not installed (looked for an executable at {})", tried.join(", ")))
    }

    /// Every agent of `standard` (and `provider`, for ocf) found on this host, sorted.
    pub fn list(&self, standard: Standard, provider: Option<&str>) -> Vec<AgentSpec> {
        let mut out = std::collections::BTreeSet::new();
        let mut scan = |dir: &Path, provider: Option<&str>| {
            for name in executables(dir) {
                out.insert(AgentSpec { standard, provider: provider.map(str::to_string), kind: name });
            }
        };
        match standard {
            Standard::Ocf => {
                let mut roots = vec![self.ocf_root.join("resource.d")];
                if let Some(h) = &self.halo {
                    roots.push(h.join("ocf"));
                }
                for root in roots {
                    for p in subdirs(&root) {
                        if provider.map_or(true, |want| want == p) {
                            scan(&root.join(&p), Some(&p));
                        }
                    }
                }
            }
            Standard::Lsb => scan(&self.initd, None),
            Standard::Stonith => {
                if let Some(h) = &self.halo {
                    scan(&h.join("fence"), None);
                }
                for name in executables(&self.fence).into_iter().filter(|n| n.starts_with("fence_")) {
                    out.insert(AgentSpec { standard, provider: None, kind: name });
                }
            }
            Standard::Systemd => {}
        }
        out.into_iter().filter(|s| s.standard != Standard::Stonith || s.kind.starts_with("fence_")).collect()
    }

    /// The ocf providers found.
    pub fn providers(&self) -> Vec<String> {
        let mut v: Vec<String> = subdirs(&self.ocf_root.join("resource.d"));
        if let Some(h) = &self.halo {
            v.extend(subdirs(&h.join("ocf")));
        }
        v.sort();
        v.dedup();
        v
    }
}

/// `path` (a checked name inside `dir`) if it is, or links to, an executable regular file.
/// Symlinks may point outside the directory (resource-agents links some agents): the name
/// was checked, and the link is the administrator's.
fn executable_inside(dir: &Path, path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    debug_assert!(path.starts_with(dir));
    let meta = path.metadata().ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(path.to_path_buf())
}

fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| safe_name(n))
        .collect();
    v.sort();
    v
}

fn executables(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| safe_name(n))
        .filter(|n| executable_inside(dir, &dir.join(n)).is_some())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_refuses_unsafe_names() {
        let s = AgentSpec::parse("ocf:heartbeat:Dummy").unwrap();
        assert_eq!((s.standard, s.provider.as_deref(), s.kind.as_str()), (Standard::Ocf, Some("heartbeat"), "Dummy"));
        assert_eq!(s.to_string(), "ocf:heartbeat:Dummy");
        assert_eq!(AgentSpec::parse("stonith:fence_dummy").unwrap().standard, Standard::Stonith);
        for bad in ["ocf:Dummy", "lsb:x:y", "foo:bar", "ocf:heartbeat:../../bin/sh", "ocf:..:Dummy", "lsb:.hidden", "ocf:a:b:c", "lsb:", "lsb:a b"] {
            assert!(AgentSpec::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn locates_halo_agents_first_and_reports_missing() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let halo = t.path().join("agents");
        let ocf = t.path().join("ocf");
        for d in [halo.join("ocf/test"), ocf.join("resource.d/test")] {
            std::fs::create_dir_all(&d).unwrap();
            let f = d.join("A");
            std::fs::write(&f, "#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(ocf.join("resource.d/test/notexec"), "x").unwrap();
        let dirs = AgentDirs { ocf_root: ocf.clone(), halo: Some(halo.clone()), initd: t.path().join("init.d"), fence: t.path().join("sbin") };
        assert_eq!(dirs.locate(&AgentSpec::parse("ocf:test:A").unwrap()).unwrap(), halo.join("ocf/test/A"));
        let e = dirs.locate(&AgentSpec::parse("ocf:test:notexec").unwrap()).unwrap_err();
        assert!(e.contains("not installed"), "{e}");
        assert_eq!(dirs.list(Standard::Ocf, Some("test")).len(), 1);
        assert_eq!(dirs.providers(), vec!["test".to_string()]);
    }
}
