//! The systemd class (EXECD-NOTES §4), through `systemctl`, which waits for the unit's job
//! to finish on start and stop. Pacemaker talks D-Bus; the issue allows either, and
//! systemctl keeps halo free of a D-Bus stack until a host where systemd is PID 1 can test
//! the D-Bus path for real.
//!
//! * unit name: the agent name, plus `.service` unless it already ends in a unit suffix;
//! * start: a runtime drop-in `<unit>.d/50-halo.conf` (`Restart=no`, so systemd does not
//!   restart the unit behind the cluster's back), `daemon-reload`, `systemctl start`, then
//!   the unit must be active;
//! * stop: the drop-in removed, `daemon-reload`, `systemctl stop`;
//! * monitor/status: `ActiveState`: active or reloading is 0, activating or deactivating is
//!   asked again after a second (until the op's timeout), anything else 7 with the state as
//!   the exit reason;
//! * a unit systemd does not know is 5 (not installed); on a host where systemd is not
//!   running every op is 5 with that reason. Nothing is ever faked.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::rc::{OpStatus, OCF_ERR_GENERIC, OCF_ERR_INSTALLED, OCF_ERR_UNIMPLEMENTED, OCF_NOT_RUNNING, OCF_SUCCESS};
use crate::run::{OpRequest, OpResult};

/// Where this host's systemd is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Systemd {
    pub systemctl: PathBuf,
    /// `/run/systemd/system`: present only when systemd runs as PID 1; drop-ins go here.
    pub runtime_dir: PathBuf,
}

impl Systemd {
    pub fn host() -> Systemd {
        let systemctl = ["/usr/bin/systemctl", "/bin/systemctl"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from("/usr/bin/systemctl"));
        Systemd { systemctl, runtime_dir: PathBuf::from("/run/systemd/system") }
    }

    pub fn available(&self) -> bool {
        self.runtime_dir.is_dir() && self.systemctl.exists()
    }
}

const SUFFIXES: [&str; 5] = [".service", ".socket", ".mount", ".timer", ".path"];

pub fn unit_name(kind: &str) -> String {
    if SUFFIXES.iter().any(|s| kind.ends_with(s)) {
        kind.to_string()
    } else {
        format!("{kind}.service")
    }
}

fn result(rc: i32, status: OpStatus, reason: impl Into<String>, started: SystemTime, t0: Instant) -> OpResult {
    OpResult { rc, status, exit_reason: reason.into(), stdout: String::new(), stderr: String::new(), started, exec_ms: t0.elapsed().as_millis() as u64 }
}

/// One systemctl call: (exit code, stdout), or None when the deadline passed.
async fn systemctl(sd: &Systemd, args: &[&str], deadline: Instant) -> Option<(i32, String)> {
    let left = deadline.checked_duration_since(Instant::now())?;
    let mut cmd = tokio::process::Command::new(&sd.systemctl);
    cmd.args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("LC_ALL", "C").stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(left, cmd.output()).await.ok()?.ok()?;
    Some((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

pub async fn run_systemd(sd: &Systemd, req: &OpRequest) -> OpResult {
    let (started, t0) = (SystemTime::now(), Instant::now());
    let deadline = t0 + Duration::from_millis(req.timeout_ms.max(1));
    let unit = unit_name(&req.agent.kind);
    let timed_out = || result(OCF_ERR_GENERIC, OpStatus::Timeout, format!("{} of {unit} did not complete within {} ms", req.action, req.timeout_ms), started, t0);
    if req.action == "meta-data" {
        let mut r = result(OCF_SUCCESS, OpStatus::Done, "", started, t0);
        r.stdout = meta_data(&unit);
        return r;
    }
    if !sd.available() {
        return result(OCF_ERR_INSTALLED, OpStatus::NotInstalled, "systemd is not running on this host (not PID 1)", started, t0);
    }
    if !matches!(req.action.as_str(), "start" | "stop" | "monitor" | "status") {
        return result(OCF_ERR_UNIMPLEMENTED, OpStatus::Done, format!("systemd units do not implement {}", req.action), started, t0);
    }
    let Some((_, load)) = systemctl(sd, &["show", "--property=LoadState", "--value", &unit], deadline).await else { return timed_out() };
    if load == "not-found" || load.is_empty() {
        return result(OCF_ERR_INSTALLED, OpStatus::NotInstalled, format!("systemd has no unit {unit}"), started, t0);
    }
    let dropin_dir = sd.runtime_dir.join(format!("{unit}.d"));
    let dropin = dropin_dir.join("50-halo.conf");
    match req.action.as_str() {
        "start" => {
            let text = format!("[Unit]\nDescription=Cluster Controlled {}\nBefore=halod.service\n\n[Service]\nRestart=no\n", req.agent.kind);
            if let Err(e) = std::fs::create_dir_all(&dropin_dir).and_then(|_| std::fs::write(&dropin, text)) {
                return result(OCF_ERR_GENERIC, OpStatus::Error, format!("cannot write {}: {e}", dropin.display()), started, t0);
            }
            let Some(_) = systemctl(sd, &["daemon-reload"], deadline).await else { return timed_out() };
            let Some((code, _)) = systemctl(sd, &["start", &unit], deadline).await else { return timed_out() };
            if code != 0 {
                return result(OCF_ERR_GENERIC, OpStatus::Done, format!("systemctl start {unit} failed (exit {code})"), started, t0);
            }
            monitor(sd, &unit, deadline, true, started, t0).await.unwrap_or_else(timed_out)
        }
        "stop" => {
            let _ = std::fs::remove_file(&dropin);
            let _ = std::fs::remove_dir(&dropin_dir);
            let Some(_) = systemctl(sd, &["daemon-reload"], deadline).await else { return timed_out() };
            let Some((code, _)) = systemctl(sd, &["stop", &unit], deadline).await else { return timed_out() };
            if code != 0 {
                return result(OCF_ERR_GENERIC, OpStatus::Done, format!("systemctl stop {unit} failed (exit {code})"), started, t0);
            }
            match monitor(sd, &unit, deadline, false, started, t0).await {
                Some(r) if r.rc == OCF_NOT_RUNNING => result(OCF_SUCCESS, OpStatus::Done, "", started, t0),
                Some(r) => result(OCF_ERR_GENERIC, OpStatus::Done, format!("{unit} still {} after stop", r.exit_reason), started, t0),
                None => timed_out(),
            }
        }
        _ => monitor(sd, &unit, deadline, false, started, t0).await.unwrap_or_else(timed_out),
    }
}

/// The unit's state as an OCF code, waiting out transitions; None at the deadline.
/// After a start, "not running" is a failed start (1), as Pacemaker maps it.
async fn monitor(sd: &Systemd, unit: &str, deadline: Instant, after_start: bool, started: SystemTime, t0: Instant) -> Option<OpResult> {
    loop {
        let (_, state) = systemctl(sd, &["show", "--property=ActiveState", "--value", unit], deadline).await?;
        match state.as_str() {
            "active" | "reloading" => return Some(result(OCF_SUCCESS, OpStatus::Done, "", started, t0)),
            "activating" | "deactivating" => {
                let pause = Duration::from_secs(1).min(deadline.checked_duration_since(Instant::now())?);
                tokio::time::sleep(pause).await;
            }
            other => {
                let rc = if after_start { OCF_ERR_GENERIC } else { OCF_NOT_RUNNING };
                return Some(result(rc, OpStatus::Done, other.to_string(), started, t0));
            }
        }
    }
}

fn meta_data(unit: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<resource-agent name="{unit}" version="1.0">
  <version>1.1</version>
  <longdesc lang="en">systemd unit {unit}, started and stopped through systemd by halo-execd</longdesc>
  <shortdesc lang="en">systemd unit {unit}</shortdesc>
  <parameters/>
  <actions>
    <action name="start" timeout="100s"/>
    <action name="stop" timeout="100s"/>
    <action name="status" timeout="100s"/>
    <action name="monitor" timeout="100s" interval="60s"/>
    <action name="meta-data" timeout="5s"/>
  </actions>
</resource-agent>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(unit_name("foo.socket"), "foo.socket");
        assert_eq!(unit_name("getty@tty1.service"), "getty@tty1.service");
    }
}
