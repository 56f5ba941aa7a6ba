//! ocf:heartbeat:IPaddr2, unmodified, run by `halo agent exec` inside a network namespace
//! this test creates (addresses from 198.18.0.0/15 on a veth pair inside it, so nothing
//! leaves the namespace). Skipped where it cannot run: not root, no `ip netns`, or no
//! resource-agents (CI installs them).

use std::process::Command;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AGENT: &str = "/usr/lib/ocf/resource.d/heartbeat/IPaddr2";

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().map(|s| s.success()).unwrap_or(false)
}

fn in_ns(ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("ip").args(["netns", "exec", ns]).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn ipaddr2_adds_and_removes_a_floating_address_in_a_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new(AGENT).exists() {
        eprintln!("skipped: needs root and resource-agents' IPaddr2");
        return;
    }
    let name = format!("halo-ip2-{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        eprintln!("skipped: cannot create a network namespace here");
        return;
    }
    let ns = Netns(name);
    let n = ns.0.as_str();
    assert!(ip(&["-n", n, "link", "add", "hv0", "type", "veth", "peer", "name", "hv1"]));
    for l in ["lo", "hv0", "hv1"] {
        assert!(ip(&["-n", n, "link", "set", l, "up"]));
    }
    assert!(ip(&["-n", n, "addr", "add", "198.18.7.1/24", "dev", "hv0"]));
    let params = ["--param", "ip=198.18.7.77", "--param", "cidr_netmask=24", "--param", "nic=hv0", "--rsc", "vip"];
    let run = |action: &str| {
        let mut args = vec![HALO, "agent", "exec", "ocf:heartbeat:IPaddr2", action];
        args.extend(params);
        in_ns(n, &args)
    };
    let addrs = || in_ns(n, &["ip", "-o", "addr", "show", "dev", "hv0"]).1;

    assert_eq!(run("monitor").0, 7, "not there before start");
    let (rc, _, err) = run("start");
    assert_eq!(rc, 0, "{err}");
    assert!(addrs().contains("198.18.7.77/24"), "{}", addrs());
    assert_eq!(run("monitor").0, 0);
    assert_eq!(run("start").0, 0, "start is idempotent");
    let (rc, _, err) = run("stop");
    assert_eq!(rc, 0, "{err}");
    assert!(!addrs().contains("198.18.7.77"), "{}", addrs());
    assert_eq!(run("monitor").0, 7);
    assert_eq!(run("stop").0, 0, "stop is idempotent");
    // A bad parameter is the agent's to refuse: not-configured or invalid, with a reason.
    let mut args = vec![HALO, "agent", "exec", "ocf:heartbeat:IPaddr2", "start", "--rsc", "bad"];
    args.extend(["--param", "ip=not-an-address"]);
    let (rc, _, err) = in_ns(n, &args);
    assert!(rc == 6 || rc == 2 || rc == 1, "rc {rc}: {err}");
}
