//! "Failed Resource Actions": which `lrm_rsc_op` records crm_mon 2.1.5 lists, and the words
//! and time formats it prints them with (the friendly form `crm_mon -1` uses by default, not
//! `--show-detail`'s technical one).
//!
//! A record is a failure when its result differs from the one the controller expected (the
//! target rc in `transition-key`) or its execution status is not "complete", after the
//! remapping Pacemaker applies: a probe that finds the resource stopped, running or promoted
//! is not a failure; neither is a pending or cancelled operation, a `notify`, a recurring
//! operation the agent does not support, nor a failure whose `failure-timeout` has passed.
//! Probes that found the agent missing (rc 5 or 2, status 7) are masked, as crm_mon does.
//! Records are read node by node in status order (nodes that are up only), each resource's
//! operations by call id, and one operation key is listed once per node (records without a
//! key count as one key, as in Pacemaker).
//!
//! A remote connection's failures expire after its `reconnect_interval` if that is longer.
//!
//! Deviations: failures expired by `failure-timeout` are judged only against
//! `last-rc-change` (Pacemaker also looks at the fail count's last-failure time).

use chrono::{DateTime, Duration, NaiveDateTime};

use scheduler::Cluster;

/// One failed operation, as crm_mon lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedAction {
    /// The operation key (`rsc_monitor_10000`), or the record's id when it has none.
    pub op_key: String,
    /// True when `op_key` came from `operation_key` (crm_mon's XML then says `op_key=`).
    pub keyed: bool,
    pub rsc: String,
    pub task: String,
    pub interval_ms: u64,
    pub node: String,
    pub rc: i32,
    pub status: i32,
    /// The agent's exit reason as recorded (possibly empty); see `reason()`.
    pub exit_reason: Option<String>,
    pub call_id: i64,
    pub last_rc_change: Option<i64>,
    pub exec_ms: Option<String>,
    pub queue_ms: Option<String>,
}

/// The OCF exit code's name (`services_ocf_exitcode_str`).
pub(crate) fn exit_str(rc: i32) -> &'static str {
    match rc {
        0 => "ok",
        1 => "error",
        2 => "invalid parameter",
        3 => "unimplemented feature",
        4 => "insufficient privileges",
        5 => "not installed",
        6 => "not configured",
        7 => "not running",
        8 => "promoted",
        9 => "promoted (failed)",
        190 => "degraded",
        191 => "promoted (degraded)",
        _ => "unknown",
    }
}

/// The execution status's name (`pcmk_exec_status_str`).
pub(crate) fn exec_status_str(status: i32) -> &'static str {
    match status {
        -1 => "pending",
        0 => "complete",
        1 => "Cancelled",
        2 => "Timed Out",
        3 => "NOT SUPPORTED",
        4 => "Error",
        5 => "Hard error",
        6 => "Fatal error",
        7 => "Not installed",
        8 => "Internal communication failure",
        9 => "Cannot execute now",
        10 => "No fence device",
        11 => "CIB secrets unavailable",
        _ => "unknown",
    }
}

/// A duration as crm_mon 2.1.5 words it: "1m30.009s", "60s", "9.101s", "1000ms" (a unit is
/// used only when the value is strictly above it).
pub(crate) fn readable_interval(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let mut rest = ms;
    let mut out = String::new();
    for (unit, suffix) in [(D, "d"), (H, "h"), (M, "m")] {
        if rest > unit {
            out.push_str(&format!("{}{suffix}", rest / unit));
            rest %= unit;
        }
    }
    if rest > S {
        out.push_str(&format!("{}", rest / S));
        if !rest.is_multiple_of(S) {
            out.push_str(&format!(".{:03}", rest % S));
        }
        out.push('s');
    } else if rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

fn local(epoch_s: i64, utc_offset_s: i32) -> Option<NaiveDateTime> {
    Some(DateTime::from_timestamp(epoch_s, 0)?.naive_utc() + Duration::seconds(utc_offset_s.into()))
}

/// ctime(3) style, as crm_mon prints times in text: "Wed Jun  6 16:03:42 2012".
pub(crate) fn ctime(t: NaiveDateTime) -> String {
    t.format("%a %b %e %H:%M:%S %Y").to_string()
}

pub(crate) fn epoch_ctime(epoch_s: i64, utc_offset_s: i32) -> String {
    local(epoch_s, utc_offset_s).map(ctime).unwrap_or_default()
}

/// crm_time's "date, time of day, zone" form: "2012-03-19 21:41:29Z", "2013-08-02 01:52:06 -05:00".
pub(crate) fn epoch_iso(epoch_s: i64, utc_offset_s: i32) -> String {
    let Some(t) = local(epoch_s, utc_offset_s) else { return String::new() };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if utc_offset_s == 0 {
        s.push('Z');
    } else {
        let a = utc_offset_s.unsigned_abs();
        let sign = if utc_offset_s < 0 { '-' } else { '+' };
        s.push_str(&format!(" {sign}{:02}:{:02}", a / 3600, a % 3600 / 60));
    }
    s
}

/// Split an operation key `rsc_task_interval` (tasks may hold underscores: `migrate_to`,
/// `pre_notify_start`).
pub(crate) fn parse_op_key(key: &str) -> Option<(String, String, u64)> {
    let (head, interval) = key.rsplit_once('_')?;
    let interval: u64 = interval.parse().ok()?;
    for multi in ["_migrate_to", "_migrate_from"] {
        if let Some(rsc) = head.strip_suffix(multi) {
            return Some((rsc.to_string(), multi[1..].to_string(), interval));
        }
    }
    // Notifications: rsc_{pre,post}_notify_ACTION.
    for kind in ["_pre_notify_", "_post_notify_"] {
        if let Some(pos) = head.rfind(kind) {
            return Some((head[..pos].to_string(), head[pos + 1..].to_string(), interval));
        }
    }
    let (rsc, task) = head.rsplit_once('_')?;
    if rsc.is_empty() || task.is_empty() {
        return None;
    }
    Some((rsc.to_string(), task.to_string(), interval))
}

fn is_probe(op: &cib::LrmOp) -> bool {
    op.operation == "monitor" && op.interval_ms == 0
}

/// Is this record a failure crm_mon lists?
fn is_failure(cl: &Cluster, rsc_id: &str, op: &cib::LrmOp) -> bool {
    let probe = is_probe(op);
    if op.operation == "notify" || op.call_id < 0 || matches!(op.op_status, -1 | 1) {
        return false;
    }
    let target = op.target_rc();
    let status = match op.op_status {
        0 | 4 => {
            // Re-derived from the rc, as Pacemaker's remap does.
            let rc = op.rc_code;
            let expected = target == Some(rc);
            match rc {
                0 | 190 if probe => false,
                7 if probe => false,
                8 if probe => false,
                _ if expected => false,
                0 | 190 if target.is_none() => false,
                // Not-running on an unmanaged resource is taken at its word.
                7 if !rsc_managed(cl, rsc_id) => false,
                3 if op.interval_ms > 0 => false,
                _ => true,
            }
        }
        3 if op.interval_ms > 0 => false,
        _ => true,
    };
    if !status {
        return false;
    }
    if probe && (matches!(op.rc_code, 2 | 5) || op.op_status == 7) {
        return false;
    }
    !expired(cl, rsc_id, op)
}

fn rsc_managed(cl: &Cluster, rsc_id: &str) -> bool {
    cl.rsc_by_id(rsc_id).or_else(|| cl.rscs.iter().position(|r| r.base_id == rsc_id)).is_none_or(|r| cl.rscs[r].managed)
}

fn expired(cl: &Cluster, rsc_id: &str, op: &cib::LrmOp) -> bool {
    let Some(r) = cl.rsc_by_id(rsc_id).or_else(|| cl.rscs.iter().position(|r| r.base_id == rsc_id)) else { return false };
    let rsc = &cl.rscs[r];
    // A remote connection's failures last at least its reconnect interval.
    let reconnect_s = match rsc.is_remote_connection() {
        true => rsc.params.get("reconnect_interval").and_then(|v| scheduler::unpack::parse_duration_s(v)).unwrap_or(0),
        false => 0,
    };
    let timeout = rsc.failure_timeout_s.max(reconnect_s);
    timeout > 0 && op.last_rc_change.is_some_and(|t| cl.now.and_utc().timestamp() > t + timeout)
}

/// The failed actions of a CIB, in the order crm_mon lists them.
pub(crate) fn failed_actions(cl: &Cluster) -> Vec<FailedAction> {
    let mut out: Vec<FailedAction> = Vec::new();
    // Operation keys already listed per node (a record without a key counts as one key).
    let mut seen: Vec<(Option<String>, String)> = Vec::new();
    for st in &cl.cib.status.nodes {
        // Only nodes that are up report failures.
        let Some(n) = cl.node_by_id_or_name(&st.id) else { continue };
        if !cl.nodes[n].online {
            continue;
        }
        let node = cl.nodes[n].name.clone();
        for lrm in &st.lrm {
            let mut ops: Vec<&cib::LrmOp> = lrm.ops.iter().collect();
            ops.sort_by_key(|o| o.call_id);
            for op in ops {
                if !is_failure(cl, &lrm.id, op) {
                    continue;
                }
                let attr = |k: &str| op.attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let key = attr("operation_key");
                let seen_key = (key.as_ref().map(|k| k.to_ascii_lowercase()), node.to_ascii_lowercase());
                if seen.contains(&seen_key) {
                    continue;
                }
                seen.push(seen_key);
                let keyed = key.is_some();
                let op_key = key.unwrap_or_else(|| op.id.clone());
                let (rsc, task, interval_ms) =
                    parse_op_key(&op_key).unwrap_or_else(|| ("unknown resource".into(), "unknown action".into(), 0));
                out.push(FailedAction {
                    op_key,
                    keyed,
                    rsc,
                    task,
                    interval_ms,
                    node: node.clone(),
                    rc: op.rc_code,
                    status: op.op_status,
                    exit_reason: op.exit_reason.clone(),
                    call_id: op.call_id,
                    last_rc_change: op.last_rc_change,
                    exec_ms: attr("exec-time"),
                    queue_ms: attr("queue-time"),
                });
            }
        }
    }
    out
}

impl FailedAction {
    /// The exit reason, if the agent gave one.
    pub(crate) fn reason(&self) -> Option<&str> {
        self.exit_reason.as_deref().filter(|r| !r.is_empty())
    }

    /// The friendly line: "rsc 10s-interval monitor on node returned 'not running' at ... after 10ms".
    pub(crate) fn friendly_line(&self, utc_offset_s: i32) -> String {
        let mut s = format!("{} ", self.rsc);
        if self.interval_ms != 0 {
            s.push_str(&format!("{}-interval ", readable_interval(self.interval_ms)));
        }
        let task = if self.task == "monitor" && self.interval_ms == 0 { "probe" } else { &self.task };
        s.push_str(&format!("{task} on {}", self.node));
        if self.status == 0 {
            s.push_str(&format!(" returned '{}'", exit_str(self.rc)));
            if let Some(r) = self.reason() {
                s.push_str(&format!(" ({r})"));
            }
        } else {
            s.push_str(&format!(" could not be executed ({}", exec_status_str(self.status)));
            if let Some(r) = self.reason() {
                s.push_str(&format!(": {r}"));
            }
            s.push(')');
        }
        if let Some(t) = self.last_rc_change {
            s.push_str(&format!(" at {}", epoch_ctime(t, utc_offset_s)));
        }
        if let Some(ms) = self.exec_ms.as_deref().and_then(|v| v.parse::<u64>().ok()).filter(|&v| v > 0) {
            s.push_str(&format!(" after {}", readable_interval(ms)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_as_crm_mon_words_them() {
        assert_eq!(readable_interval(1000), "1000ms");
        assert_eq!(readable_interval(60_000), "60s");
        assert_eq!(readable_interval(10_000), "10s");
        assert_eq!(readable_interval(179_014), "2m59.014s");
        assert_eq!(readable_interval(90_009), "1m30.009s");
        assert_eq!(readable_interval(30_160), "30.160s");
        assert_eq!(readable_interval(10), "10ms");
    }

    #[test]
    fn op_keys() {
        assert_eq!(parse_op_key("rsc1_monitor_10000"), Some(("rsc1".into(), "monitor".into(), 10_000)));
        assert_eq!(parse_op_key("my_rsc_migrate_to_0"), Some(("my_rsc".into(), "migrate_to".into(), 0)));
        assert_eq!(parse_op_key("a_b_post_notify_start_0"), Some(("a_b".into(), "post_notify_start".into(), 0)));
        assert_eq!(parse_op_key("nokey"), None);
    }

    #[test]
    fn times() {
        assert_eq!(epoch_ctime(1_338_998_622, 0), "Wed Jun  6 16:03:42 2012");
        assert_eq!(epoch_iso(1_332_193_289, 0), "2012-03-19 21:41:29Z");
        assert_eq!(epoch_iso(1_375_426_326, -5 * 3600), "2013-08-02 01:52:06 -05:00");
    }
}
