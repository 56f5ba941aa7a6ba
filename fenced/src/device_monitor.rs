//! Devices watched on their monitor interval, whether or not a controller runs them: for
//! each device of the CIB with a monitor op, the first node (by name) that the configuration
//! allows and whose fencer is up runs the device's monitor, and tells every fencer when the
//! result changes, so `halo stonith status` on any node shows a failing device.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use execd::rc::{OpStatus, OCF_NOT_RUNNING, OCF_SUCCESS};

use crate::fencer::{now_ms, Fencer, Health};

/// Timeout of one monitor run.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs for the daemon's life.
pub async fn run(fencer: Fencer) {
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let me = fencer.node().to_string();
        let members = fencer.members();
        for d in fencer.cib_view() {
            let Some(interval) = d.monitor else { continue };
            let monitor_node = d.allowed.iter().find(|n| members.iter().any(|m| m.eq_ignore_ascii_case(n)));
            if monitor_node.is_none_or(|n| !n.eq_ignore_ascii_case(&me)) {
                last.remove(&d.device.id);
                continue;
            }
            let id = d.device.id.clone();
            if last.get(&id).is_some_and(|t| t.elapsed() < interval) {
                continue;
            }
            last.insert(id.clone(), Instant::now());
            let fencer = fencer.clone();
            let me = me.clone();
            tokio::spawn(async move {
                let (action, r) = fencer.monitor(&id, MONITOR_TIMEOUT.min(interval.max(Duration::from_secs(1)))).await;
                let ok = r.status == OpStatus::Done && (r.rc == OCF_SUCCESS || (action == "status" && r.rc == OCF_NOT_RUNNING));
                let reason = if ok {
                    String::new()
                } else {
                    let detail = r.stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(&r.exit_reason).to_string();
                    format!("{action}: {} rc {}{}", r.status.name(), r.rc, if detail.is_empty() { String::new() } else { format!(" ({detail})") })
                };
                let h = Health { node: me, ok, reason, at_ms: now_ms() };
                if fencer.set_health(&id, h.clone()) {
                    if ok {
                        tracing::info!("device {id}: monitor OK");
                    } else {
                        tracing::warn!("device {id}: monitor failed: {}", h.reason);
                    }
                    if let Some(p) = fencer.peers() {
                        p.announce_health(&id, &h);
                    }
                }
            });
        }
    }
}
