//! The command line every halo daemon takes: `[--config PATH] [--node NAME]`.

use std::path::PathBuf;

/// Default config file of an installed node.
pub const DEFAULT_CONFIG: &str = "/etc/halo/corosync.conf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonArgs {
    pub config: PathBuf,
    /// The local node by name or address; `None`: the daemon finds it.
    pub node: Option<String>,
}

impl DaemonArgs {
    /// Parse `args` (without the program name); the error is one line with the usage.
    pub fn parse(program: &str, args: impl IntoIterator<Item = String>) -> Result<DaemonArgs, String> {
        let usage = format!("usage: {program} [--config PATH] [--node NAME]");
        let mut out = DaemonArgs { config: PathBuf::from(DEFAULT_CONFIG), node: None };
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--config" => out.config = args.next().ok_or_else(|| format!("--config needs a path; {usage}"))?.into(),
                "--node" => out.node = Some(args.next().ok_or_else(|| format!("--node needs a name; {usage}"))?),
                other => return Err(format!("unknown argument '{other}'; {usage}")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<DaemonArgs, String> {
        DaemonArgs::parse("d", v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(parse(&[]).unwrap().config, PathBuf::from(DEFAULT_CONFIG));
        let a = parse(&["--config", "/x.conf", "--node", "n1"]).unwrap();
        assert_eq!((a.config, a.node), (PathBuf::from("/x.conf"), Some("n1".to_string())));
        assert!(parse(&["--config"]).unwrap_err().contains("needs a path"));
        assert!(parse(&["--bogus"]).unwrap_err().contains("unknown argument '--bogus'"));
    }
}
