//! Operation history per resource, in the shape of the CIB's `lrm_resource` /
//! `lrm_rsc_op` records (EXECD-NOTES §6): `<rsc>_last_0` for the last one-shot op,
//! `<rsc>_last_failure_0` for the last failure, `<rsc>_<action>_<interval>` per recurring op.

use std::collections::BTreeMap;

use cib::xml::Element;
use md5::{Digest, Md5};

use crate::agent::{AgentSpec, Standard};
use crate::rc::{OpStatus, OCF_DEGRADED, OCF_DEGRADED_PROMOTED, OCF_NOT_RUNNING, OCF_RUNNING_PROMOTED, OCF_SUCCESS};
use crate::run::{OpRequest, OpResult};

/// One `lrm_rsc_op`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    pub id: String,
    pub rsc: String,
    pub operation_key: String,
    pub operation: String,
    pub interval_ms: u64,
    pub call_id: u64,
    pub rc: i32,
    pub status: OpStatus,
    pub exit_reason: String,
    /// Epoch seconds of the last change of rc for this op.
    pub last_rc_change: u64,
    pub exec_ms: u64,
    pub queue_ms: u64,
    pub op_digest: String,
    /// The controller's `transition-key` for the op (`action:transition:expected-rc:dc-uuid`),
    /// passed as the `transition_key` meta attribute, so a history read after a controller
    /// restart still says which transition asked for what and which rc it expected.
    pub transition_key: Option<String>,
}

impl OpRecord {
    /// The record as an `lrm_rsc_op` element.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("lrm_rsc_op");
        for (k, v) in [
            ("id", self.id.clone()),
            ("operation_key", self.operation_key.clone()),
            ("operation", self.operation.clone()),
            ("crm-debug-origin", "halo-execd".to_string()),
            ("crm_feature_set", cib::FEATURE_SET.to_string()),
            ("exit-reason", self.exit_reason.clone()),
            ("call-id", self.call_id.to_string()),
            ("rc-code", self.rc.to_string()),
            ("op-status", (self.status as i32).to_string()),
            ("interval", self.interval_ms.to_string()),
            ("last-rc-change", self.last_rc_change.to_string()),
            ("exec-time", self.exec_ms.to_string()),
            ("queue-time", self.queue_ms.to_string()),
            ("op-digest", self.op_digest.clone()),
        ] {
            e.set_attr(k, &v);
        }
        if let Some(key) = &self.transition_key {
            e.set_attr("transition-key", key);
            e.set_attr("transition-magic", &format!("{}:{};{key}", self.status as i32, self.rc));
        }
        e
    }
}

/// Whether a result counts as a failure in the history (the expected rc is the
/// controller's to judge; here: what can never be a success for this action).
fn failed(action: &str, r: &OpResult) -> bool {
    if r.status == OpStatus::Cancelled {
        return false;
    }
    if r.status != OpStatus::Done {
        return true;
    }
    match action {
        "monitor" | "status" => !matches!(r.rc, OCF_SUCCESS | OCF_NOT_RUNNING | OCF_RUNNING_PROMOTED | OCF_DEGRADED | OCF_DEGRADED_PROMOTED),
        _ => r.rc != OCF_SUCCESS,
    }
}

/// Pacemaker's `op-digest`: MD5 of `" <parameters name="value" .../>\n"`, the instance
/// parameters sorted by name, no meta attributes (checked against the digests recorded in
/// Pacemaker's scheduler cases: `execd/tests/digests.rs`).
pub fn op_digest(params: &BTreeMap<String, String>) -> String {
    let mut e = Element::new("parameters");
    for (k, v) in params {
        e.set_attr(k, v);
    }
    format!("{:x}", Md5::digest(format!(" {}\n", e.to_xml()).as_bytes()))
}

/// The history of one resource on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RscHistory {
    pub id: String,
    pub agent: AgentSpec,
    pub last: Option<OpRecord>,
    pub last_failure: Option<OpRecord>,
    pub recurring: BTreeMap<(String, u64), OpRecord>,
    /// One-shot ops accepted and not finished, oldest first: (action, transition key,
    /// epoch s). The newest stands as `<rsc>_last_0` (pending), so a history read while an
    /// op runs says it may have run (a join after a controller or DC change).
    pub pending: Vec<(String, String, u64)>,
    /// The last one-shot op asked of it: its parameters are the ones a stop needs when this
    /// node must stop everything on its own ([`crate::executor::Executor::stop_all`]).
    pub last_request: Option<OpRequest>,
}

impl RscHistory {
    pub fn new(id: &str, agent: &AgentSpec) -> RscHistory {
        RscHistory { id: id.to_string(), agent: agent.clone(), last: None, last_failure: None, recurring: BTreeMap::new(), pending: Vec::new(), last_request: None }
    }

    /// A one-shot op accepted: pending until [`RscHistory::record`] gets its result.
    pub fn accept(&mut self, req: &OpRequest, now: u64) {
        self.last_request = Some(req.clone());
        self.pending.push((req.action.clone(), req.meta.get("transition_key").cloned().unwrap_or_default(), now));
    }

    /// Record a finished op; the record as stored.
    pub fn record(&mut self, req: &OpRequest, r: &OpResult, call_id: u64, queue_ms: u64, now: u64) -> OpRecord {
        self.agent = req.agent.clone();
        let operation_key = format!("{}_{}_{}", req.rsc, req.action, req.interval_ms);
        let previous = if req.interval_ms > 0 { self.recurring.get(&(req.action.clone(), req.interval_ms)) } else { self.last.as_ref() };
        let last_rc_change = match previous {
            Some(p) if p.operation_key == operation_key && p.rc == r.rc => p.last_rc_change,
            _ => now,
        };
        let id = if req.interval_ms > 0 { operation_key.clone() } else { format!("{}_last_0", req.rsc) };
        let rec = OpRecord {
            id,
            rsc: req.rsc.clone(),
            operation_key,
            operation: req.action.clone(),
            interval_ms: req.interval_ms,
            call_id,
            rc: r.rc,
            status: r.status,
            exit_reason: r.exit_reason.clone(),
            last_rc_change,
            exec_ms: r.exec_ms,
            queue_ms,
            op_digest: op_digest(&req.params),
            transition_key: req.meta.get("transition_key").cloned(),
        };
        if failed(&req.action, r) {
            self.last_failure = Some(OpRecord { id: format!("{}_last_failure_0", req.rsc), ..rec.clone() });
        }
        if req.interval_ms > 0 {
            if r.status == OpStatus::Cancelled {
                self.recurring.remove(&(req.action.clone(), req.interval_ms));
            } else {
                self.recurring.insert((req.action.clone(), req.interval_ms), rec.clone());
            }
        } else {
            let key = req.meta.get("transition_key").cloned().unwrap_or_default();
            if let Some(i) = self.pending.iter().position(|(a, k, _)| *a == req.action && *k == key) {
                self.pending.remove(i);
            }
            self.last = Some(rec.clone());
        }
        rec
    }

    /// Whether it may be running here: anything but a last op that left it stopped (a stop
    /// that succeeded, a probe that found it not running) with nothing pending or recurring.
    pub fn may_be_active(&self) -> bool {
        if !self.pending.is_empty() || self.recurring.values().any(|r| r.status != OpStatus::Cancelled) {
            return true;
        }
        match &self.last {
            None => false,
            Some(r) => !(r.status == OpStatus::Done && ((r.operation == "stop" && r.rc == OCF_SUCCESS) || (r.operation == "monitor" && r.rc == OCF_NOT_RUNNING))),
        }
    }

    /// Whether its last op left it promoted.
    pub fn promoted(&self) -> bool {
        self.last.as_ref().is_some_and(|r| r.status == OpStatus::Done && ((r.operation == "promote" && r.rc == OCF_SUCCESS) || r.rc == OCF_RUNNING_PROMOTED))
    }

    /// The resource's `lrm_resource` element with its records.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("lrm_resource");
        e.set_attr("id", &self.id);
        e.set_attr("class", self.agent.standard.name());
        if self.agent.standard == Standard::Ocf {
            e.set_attr("provider", self.agent.provider.as_deref().unwrap_or(""));
        }
        e.set_attr("type", &self.agent.kind);
        let pending = self.pending.last().map(|(action, key, since)| cib::status::unfinished_op_record(&self.id, action, 0, key, None, *since as i64, "halo-execd"));
        if let Some(p) = pending {
            e.push(p);
        }
        let last = self.last.iter().filter(|_| self.pending.is_empty());
        for r in last.chain(self.last_failure.iter()).chain(self.recurring.values()) {
            e.push(r.to_element());
        }
        e
    }
}
