//! The README's main job: `halo demo` runs its whole scenario (power loss, the DC's
//! controller killed, the web server killed, a clean stop) and exits 0, having measured an
//! outage for each failure that interrupts the page, and stops everything it started.

mod support;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn the_demo_keeps_the_page_served_through_its_failures_and_cleans_up() {
    if !have_loopback_aliases() {
        eprintln!("skipped: 127.0.0.13 cannot be bound here");
        return;
    }
    let dir = std::env::temp_dir().join(format!("halo-test-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = 20000 + (std::process::id() * 7 % 20000) as u16;
    let web_port = 40000 + (std::process::id() % 20000) as u16;
    let mut child = Command::new(HALO)
        .args(["demo", "--workdir"])
        .arg(&dir)
        .args(["--port", &port.to_string(), "--web-port", &web_port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > Duration::from_secs(240) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.is_none() {
        // Bounded: the demo and its cluster are stopped by pid.
        let _ = child.kill();
        let _ = child.wait();
        for n in ["node1", "node2", "node3"] {
            let _ = Command::new(HALO).args(["sandbox", "kill"]).arg(&dir).arg(n).output();
        }
    }
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    eprintln!("{out}\n{err}");
    assert!(status.is_some_and(|s| s.success()), "halo demo did not succeed within 240 s");
    // Each failure was survived: the power loss and the dead web server interrupt the page
    // and are measured; fencing happened; the end state is one node running web.
    assert!(out.contains("1. ") && out.lines().any(|l| l.contains("the page was unavailable for") && l.contains("then served by")), "{out}");
    assert!(out.contains("fencing: reboot of"), "{out}");
    assert!(out.contains("(its monitor failed; halo restarted it)"), "{out}");
    assert!(out.contains("web runs on") && out.contains("(1 node)"), "{out}");
    assert!(!dir.exists(), "the demo removed its directory");
    let _ = std::fs::remove_dir_all(&dir);
}
