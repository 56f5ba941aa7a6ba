//! The node side of running ops: the DC's `Execute` to the local executor, and the
//! executor's results back to the DC.

use super::*;

impl Controller {
    /// The node side: the DC asks this node to run an op.
    pub(super) fn on_execute(&mut self, from: u32, x: pb::Execute) {
        if x.to != self.cfg.me {
            return;
        }
        let Some(op) = x.op else { return };
        if Some(from) != self.current_dc() {
            tracing::warn!("node {from} is not the DC: its request to {} {} is refused", op.action, op.rsc);
            return;
        }
        // The executor stops a resource's recurring ops before it stops, moves or changes
        // role (Pacemaker's controller cancels them first), and the DC forgets their records.
        if matches!(op.action.as_str(), "stop" | "demote" | "promote" | "migrate_to") {
            if let Some(ops) = self.recurring.remove(&op.rsc) {
                let ops: Vec<(String, u64)> = ops.into_iter().collect();
                for (action, iv) in &ops {
                    self.outbox.push_back(Action::Broadcast(cancelled_result(from, &op, action, *iv)));
                }
                self.outbox.push_back(Action::CancelRecurring { rsc: op.rsc.clone(), ops });
            }
        }
        self.agents.insert(op.rsc.clone(), op.agent.clone());
        if op.interval_ms > 0 {
            self.recurring.entry(op.rsc.clone()).or_default().insert((op.action.clone(), op.interval_ms));
        } else {
            self.local_ops.entry(op.rsc.clone()).or_default().push((op.action.clone(), x.transition_key.clone()));
        }
        self.outbox.push_back(Action::Exec { op });
    }

    pub(super) fn on_exec_event(&mut self, ev: xpb::OpEvent) {
        let Some(dc) = self.current_dc() else { return };
        let key = cib::xml::parse(&ev.lrm_rsc_op).ok().and_then(|d| d.root.attr("transition-key").map(str::to_string)).unwrap_or_default();
        if ev.interval_ms == 0 {
            if let Some(ops) = self.local_ops.get_mut(&ev.rsc) {
                if let Some(i) = ops.iter().position(|(a, k)| *a == ev.action && *k == key) {
                    ops.remove(i);
                }
                if ops.is_empty() {
                    self.local_ops.remove(&ev.rsc);
                }
            }
        }
        let msg = pb::OpResult {
            dc,
            transition_key: key,
            rsc: ev.rsc.clone(),
            agent: self.agents.get(&ev.rsc).cloned().unwrap_or_default(),
            lrm_rsc_op: ev.lrm_rsc_op.clone(),
            task: ev.action.clone(),
            interval_ms: ev.interval_ms,
            rc: ev.rc,
            op_status: ev.op_status,
            exit_reason: ev.exit_reason.clone(),
        };
        self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Result(msg)) }));
    }
}
