//! Typed view of the `<status>` section: node states, each node's executor
//! history (`lrm_rsc_op` records) and transient attributes, and tickets.

use crate::error::CibError;
use crate::model::{read_nvset, NvSet, RefIndex};
use crate::xml::Element;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LrmOp {
    pub id: String,
    pub operation: String,
    pub interval_ms: u64,
    pub call_id: i64,
    pub rc_code: i32,
    pub op_status: i32,
    pub digest: Option<String>,
    pub restart_digest: Option<String>,
    pub secure_digest: Option<String>,
    pub transition_key: Option<String>,
    pub last_rc_change: Option<i64>,
    pub on_node: Option<String>,
    pub exit_reason: Option<String>,
    /// Attributes as read, for anything not lifted into a field.
    pub attrs: Vec<(String, String)>,
}

impl LrmOp {
    /// The rc the controller expected, from the transition key `action:transition:target_rc:uuid`.
    pub fn target_rc(&self) -> Option<i32> {
        let key = self.transition_key.as_deref()?;
        key.split(':').nth(2)?.parse().ok()
    }
}

/// An empty `<lrm_resource id class [provider] type>` for an agent spec `class:provider:type`
/// or `class:type` (as the executor and the controller name agents).
pub fn lrm_resource_element(id: &str, agent: &str) -> Element {
    let mut r = Element::new("lrm_resource");
    r.set_attr("id", id);
    let mut parts = agent.splitn(3, ':');
    let (class, second, third) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    r.set_attr("class", class);
    match (second, third) {
        (Some(p), Some(t)) => {
            r.set_attr("provider", p);
            r.set_attr("type", t);
        }
        (Some(t), None) => r.set_attr("type", t),
        _ => {}
    }
    r
}

/// A record of an op that has no result from its agent (call-id -1, so it sorts after
/// every real one): **pending** (op-status -1, rc 193: the op is queued or running, or was
/// sent, so the CIB says it may have run even if its result is lost), or **lost**
/// (`lost = Some(reason)`: op-status 2 "timed out", rc 1, the DC's own timer ran out,
/// CONTROLLER-NOTES §3.3). Its id is the one the op's real record will have
/// (`<rsc>_last_0`, or `<rsc>_<task>_<interval>` for a recurring op), which replaces it.
pub fn unfinished_op_record(rsc: &str, task: &str, interval_ms: u64, transition_key: &str, lost: Option<&str>, now_s: i64, origin: &str) -> Element {
    let key = format!("{rsc}_{task}_{interval_ms}");
    let (status, rc) = if lost.is_some() { (2, 1) } else { (-1, 193) };
    let mut op = Element::new("lrm_rsc_op");
    op.set_attr("id", &if interval_ms > 0 { key.clone() } else { format!("{rsc}_last_0") });
    op.set_attr("operation_key", &key);
    op.set_attr("operation", task);
    op.set_attr("crm-debug-origin", origin);
    op.set_attr("crm_feature_set", crate::FEATURE_SET);
    op.set_attr("transition-key", transition_key);
    op.set_attr("transition-magic", &format!("{status}:{rc};{transition_key}"));
    if let Some(reason) = lost {
        op.set_attr("exit-reason", reason);
    }
    op.set_attr("call-id", "-1");
    op.set_attr("rc-code", &rc.to_string());
    op.set_attr("op-status", &status.to_string());
    op.set_attr("interval", &interval_ms.to_string());
    op.set_attr("last-rc-change", &now_s.to_string());
    op.set_attr("exec-time", "0");
    op.set_attr("queue-time", "0");
    op
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LrmResource {
    pub id: String,
    pub class: Option<String>,
    pub provider: Option<String>,
    pub agent: Option<String>,
    pub container: Option<String>,
    /// `shutdown-lock`: when (epoch s) the resource was stopped by its node's clean
    /// shutdown and locked to it (0 or absent: not locked).
    pub shutdown_lock: Option<i64>,
    pub ops: Vec<LrmOp>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeState {
    pub id: String,
    pub uname: Option<String>,
    pub in_ccm: Option<String>,
    pub crmd: Option<String>,
    pub join: Option<String>,
    pub expected: Option<String>,
    pub transient: Vec<NvSet>,
    pub lrm: Vec<LrmResource>,
    pub attrs: Vec<(String, String)>,
}

impl NodeState {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketState {
    pub id: String,
    pub granted: bool,
    pub standby: bool,
    pub last_granted: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub nodes: Vec<NodeState>,
    pub tickets: Vec<TicketState>,
}

fn num<T: std::str::FromStr>(e: &Element, key: &str, default: T) -> Result<T, CibError> {
    match e.attr(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| CibError::InvalidValue {
            element: e.name.clone(),
            id: e.attr("id").unwrap_or("").to_string(),
            line: e.line,
            attribute: key.to_string(),
            value: v.to_string(),
            hint: "expected an integer".into(),
        }),
    }
}

fn read_op(e: &Element) -> Result<LrmOp, CibError> {
    let s = |k: &str| e.attr(k).map(str::to_string);
    Ok(LrmOp {
        id: s("id").unwrap_or_default(),
        operation: s("operation").unwrap_or_default(),
        interval_ms: num(e, "interval", 0u64)?,
        call_id: num(e, "call-id", 0i64)?,
        rc_code: num(e, "rc-code", 0i32)?,
        op_status: num(e, "op-status", 0i32)?,
        digest: s("op-digest"),
        restart_digest: s("op-restart-digest"),
        secure_digest: s("op-secure-digest"),
        transition_key: s("transition-key"),
        last_rc_change: e.attr("last-rc-change").and_then(|v| v.parse().ok()),
        on_node: s("on_node"),
        exit_reason: s("exit-reason"),
        attrs: e.attrs.clone(),
    })
}

pub(crate) fn read_status(ix: &RefIndex, status: &Element) -> Result<Status, CibError> {
    let mut out = Status::default();
    for ns in status.children_named("node_state") {
        let s = |k: &str| ns.attr(k).map(str::to_string);
        let mut node = NodeState {
            id: s("id").unwrap_or_default(),
            uname: s("uname"),
            in_ccm: s("in_ccm"),
            crmd: s("crmd"),
            join: s("join"),
            expected: s("expected"),
            attrs: ns.attrs.clone(),
            ..Default::default()
        };
        for ta in ns.children_named("transient_attributes") {
            for set in ta.children_named("instance_attributes") {
                node.transient.push(read_nvset(ix, set)?);
            }
        }
        for lrm in ns.children_named("lrm") {
            for rscs in lrm.children_named("lrm_resources") {
                for r in rscs.children_named("lrm_resource") {
                    node.lrm.push(LrmResource {
                        id: r.attr("id").unwrap_or_default().to_string(),
                        class: r.attr("class").map(str::to_string),
                        provider: r.attr("provider").map(str::to_string),
                        agent: r.attr("type").map(str::to_string),
                        container: r.attr("container").map(str::to_string),
                        shutdown_lock: r.attr("shutdown-lock").and_then(|v| v.parse().ok()).filter(|&t: &i64| t != 0),
                        ops: r.children_named("lrm_rsc_op").map(read_op).collect::<Result<_, _>>()?,
                    });
                }
            }
        }
        out.nodes.push(node);
    }
    for t in status.children_named("tickets") {
        for ts in t.children_named("ticket_state") {
            out.tickets.push(TicketState {
                id: ts.attr("id").unwrap_or_default().to_string(),
                granted: ts.attr("granted").map(crate::model::is_true).unwrap_or(false),
                standby: ts.attr("standby").map(crate::model::is_true).unwrap_or(false),
                last_granted: ts.attr("last-granted").map(str::to_string),
            });
        }
    }
    Ok(out)
}
