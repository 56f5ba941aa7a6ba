//! The invariants, checked after every step (BLUEPRINT "Style" rule 4) or at the moment
//! the action they are about is taken:
//!
//! 1. No resource runs (in the simulated executors) on two live nodes.
//! 2. Nothing that may have run on a node that died is started on another node before a
//!    fence of that node succeeded (a killed node's resources are "in doubt" from the
//!    kill until a fence of it succeeds or its next boot's controller sends its empty
//!    history; checked when a start is handed to an executor). What is in doubt: what ran,
//!    plus what was being started.
//! 3. At most one node considers itself DC (`dc() == Some(me)` and `status().quorate`)
//!    per partition, a partition being the nodes whose controllers processed the same
//!    configuration change last (a node that has not yet processed a change still acts in
//!    the old one: delivery is asynchronous, as with CPG).
//! 4. Every action the DC sends (an `Execute` message, a `Fence` action) had its graph
//!    inputs confirmed first. Checked from outside the engine: the simulator keeps the
//!    graph each transition number was made from (read back through `status().transitions`),
//!    and counts an input confirmed when its result, as expected, reached the DC and the
//!    DC's record of it was acknowledged by the CIB (a fence: when its success reached the
//!    DC); pseudo actions when their inputs are; cluster ops (shutdown, clear_failcount)
//!    are not tracked and count as confirmed. A DC without quorum writes nothing: its
//!    results confirm when they reach it.
//! 5. After `handle_timeout(now)`, `poll_timeout()` is none
//!    or later than `now`; otherwise the daemon's driver loop would spin.
//! 6. No replan storm: at most 20 transitions within a second by one DC.
//! 7. `stonith-max-attempts` is honoured: no more than 10 fencing attempts of one target
//!    in a row by one DC.
//!
//! The liveness check (every configured resource runs exactly once, some time after the
//! faults stop) is in `lib.rs`.

use std::collections::{BTreeMap, BTreeSet};

use controld::core::Input;
use controld::records;
use proto::controld as pb;
use scheduler::graph::{ActionKind, Graph};

use crate::world::Sim;

#[derive(Default)]
pub struct Checker {
    /// Per node: what may have run there when it was killed, with the call id of the
    /// resource's last one-shot op there (to tell whether the CIB ever learned of it).
    in_doubt: BTreeMap<u32, BTreeMap<String, Option<u64>>>,
    /// Graphs taken by a controller incarnation: (incarnation, transition) -> graph.
    graphs: BTreeMap<(u64, u64), Graph>,
    uuids: BTreeMap<u64, String>,
    /// A result as expected delivered to a DC whose record write is awaited: its key.
    pending_key: BTreeMap<u64, String>,
    write_keys: BTreeMap<(u64, u64), String>,
    confirmed: BTreeSet<(u64, String)>,
    fenced_ok: BTreeSet<(u64, u64, usize)>,
    failure: Option<(&'static str, String)>,
    /// Timer spins seen: node -> time.
    spins: BTreeMap<u32, u64>,
    /// Per controller incarnation: when its last transitions were taken (storm detection).
    recent: BTreeMap<u64, std::collections::VecDeque<u64>>,
    /// Consecutive failed fencing attempts per (DC incarnation, target).
    fence_failures: BTreeMap<(u64, u32), u32>,
    /// Sends (Execute, Fence) whose inputs were checked (invariant 4).
    pub checked_sends: u64,
    /// Controller incarnations whose last quorum input said no quorum.
    without_quorum: BTreeSet<u64>,
}

impl Checker {
    pub fn take_failure(&mut self) -> Option<(&'static str, String)> {
        self.failure.take()
    }

    pub fn controller_started(&mut self, inc: u64, uuid: &str) {
        self.uuids.insert(inc, uuid.to_string());
    }

    pub fn node_killed(&mut self, node: u32, running: BTreeMap<String, Option<u64>>, starting: BTreeSet<String>) {
        let e = self.in_doubt.entry(node).or_default();
        e.extend(running);
        e.extend(starting.into_iter().map(|r| (r, None)));
    }

    /// Invariant 7: a DC gives up fencing a node after `stonith-max-attempts` (10)
    /// consecutive failures, until something else changes.
    pub fn fence_result(&mut self, inc: u64, target: u32, ok: bool) {
        let n = self.fence_failures.entry((inc, target)).or_insert(0);
        *n = if ok { 0 } else { *n + 1 };
        if *n > 10 && self.failure.is_none() {
            self.failure = Some(("7: stonith-max-attempts is honoured", format!("controller {inc} tried to fence node {target} {n} times in a row")));
        }
    }

    pub fn node_fenced(&mut self, node: u32) {
        self.in_doubt.remove(&node);
    }

    pub fn join_sent(&mut self, node: u32) {
        self.in_doubt.remove(&node);
    }

    /// Invariant 2: a start of `rsc` handed to `node`'s executor. The node it is in doubt
    /// on and the call id of its last one-shot op there.
    pub fn start_requested(&self, node: u32, rsc: &str) -> Option<(u32, Option<u64>)> {
        self.in_doubt.iter().find(|(&o, set)| o != node && set.contains_key(rsc)).map(|(&o, set)| (o, set[rsc]))
    }

    pub fn timer_spin(&mut self, node: u32, now: u64, next: Option<u64>) {
        self.spins.insert(node, now);
        if self.failure.is_none() {
            self.failure =
                Some(("5: a timer is due again right after handle_timeout", format!("node {node}: poll_timeout() = {next:?} at {now} ms after handle_timeout (the daemon's loop would spin)")));
        }
    }

    pub fn spun(&self, node: u32, now: u64) -> bool {
        self.spins.get(&node) == Some(&now)
    }

    pub fn before_input(&mut self, node: u32, inc: u64, input: &Input) {
        match input {
            Input::Peer { msg: pb::PeerMessage { body: Some(pb::peer_message::Body::Result(r)) }, .. } if r.dc == node => {
                let expected = records::parse_transition_key(&r.transition_key).map(|p| p.2);
                let rc = match r.rc {
                    190 => 0,
                    191 => 8,
                    x => x,
                };
                if r.op_status == 0 && Some(rc) == expected && self.without_quorum.contains(&inc) {
                    // A DC without quorum records nothing: the result itself confirms.
                    self.confirmed.insert((inc, r.transition_key.clone()));
                } else if r.op_status == 0 && Some(rc) == expected {
                    self.pending_key.insert(inc, r.transition_key.clone());
                } else {
                    self.pending_key.remove(&inc);
                }
            }
            Input::WriteDone { tag, result } => {
                if let Some(key) = self.write_keys.remove(&(inc, *tag)) {
                    if result.is_ok() {
                        self.confirmed.insert((inc, key));
                    }
                }
            }
            Input::FenceDone { transition, action, ok: true, .. } => {
                self.fenced_ok.insert((inc, *transition, *action));
            }
            _ => {}
        }
    }

    /// After each input: whether the controller can write to the CIB (quorum, and a
    /// majority of the CIB's voters: a two-node survivor has the one, not the other).
    pub fn writable(&mut self, inc: u64, writable: bool) {
        if writable {
            self.without_quorum.remove(&inc);
        } else if self.without_quorum.insert(inc) {
            // Unable to write, a DC stops waiting for its writes: what they record counts
            // as confirmed.
            let waiting: Vec<(u64, u64)> = self.write_keys.keys().filter(|(i, _)| *i == inc).copied().collect();
            for k in waiting {
                let key = self.write_keys.remove(&k).expect("listed");
                self.confirmed.insert((inc, key));
            }
            if let Some(key) = self.pending_key.remove(&inc) {
                self.confirmed.insert((inc, key));
            }
        }
    }

    pub fn on_write(&mut self, inc: u64, tag: u64, write: &proto::cib::WriteRequest) {
        let Some(key) = self.pending_key.get(&inc) else {
            return;
        };
        let xml = match &write.op {
            Some(proto::cib::write_request::Op::Modify(m)) => &m.xml,
            _ => return,
        };
        if xml.contains(key.as_str()) {
            let key = self.pending_key.remove(&inc).expect("checked");
            self.write_keys.insert((inc, tag), key);
        }
    }

    /// A controller took a graph as `transition`. More than `STORM` transitions within a
    /// second is a replan storm: a failure.
    pub fn graph_taken(&mut self, inc: u64, transition: u64, graph: Graph, now: u64) {
        const STORM: usize = 20;
        self.graphs.insert((inc, transition), graph);
        let recent = self.recent.entry(inc).or_default();
        recent.push_back(now);
        while recent.front().is_some_and(|&t| t + 1000 < now) {
            recent.pop_front();
        }
        if recent.len() > STORM {
            recent.clear();
            if self.failure.is_none() {
                self.failure = Some(("6: no replan storm", format!("controller {inc} took more than {STORM} transitions within one second (transition {transition})")));
            }
        }
    }

    fn is_confirmed(&self, inc: u64, t: u64, graph: &Graph, j: usize, depth: usize) -> bool {
        let Some(a) = graph.actions.get(j) else {
            return false;
        };
        match &a.kind {
            ActionKind::Pseudo => depth < 64 && a.inputs.iter().all(|&i| self.is_confirmed(inc, t, graph, i, depth + 1)),
            ActionKind::Rsc(op) => {
                let uuid = self.uuids.get(&inc).map(String::as_str).unwrap_or("");
                self.confirmed.contains(&(inc, records::transition_key(j, t, op.expected_rc, uuid)))
            }
            ActionKind::Fence { .. } => self.fenced_ok.contains(&(inc, t, j)),
            ActionKind::Shutdown | ActionKind::ClearFailcount { .. } => true,
        }
    }

    /// Invariant 4 for action `a` of transition `t` of incarnation `inc`.
    fn inputs_confirmed(&mut self, inc: u64, t: u64, a: usize, what: &str) {
        let Some(graph) = self.graphs.get(&(inc, t)) else {
            self.failure = Some(("4: actions fire only after their inputs", format!("controller {inc} sent {what} for transition {t}, which it never took")));
            return;
        };
        let Some(action) = graph.actions.get(a) else {
            self.failure = Some(("4: actions fire only after their inputs", format!("controller {inc} sent {what}: transition {t} has no action {a}")));
            return;
        };
        self.checked_sends += 1;
        let missing: Vec<String> = action.inputs.iter().filter(|&&i| !self.is_confirmed(inc, t, graph, i, 0)).map(|&i| graph.actions[i].key.clone()).collect();
        if !missing.is_empty() {
            self.failure = Some(("4: actions fire only after their inputs", format!("controller {inc} sent {what} ({}) of transition {t} before its inputs {missing:?} were confirmed", action.key)));
        }
    }

    pub fn on_broadcast(&mut self, inc: u64, msg: &pb::PeerMessage) {
        if let Some(pb::peer_message::Body::Execute(x)) = &msg.body {
            let Some((a, t, _, uuid)) = records::parse_transition_key(&x.transition_key) else {
                self.failure = Some(("4: actions fire only after their inputs", format!("an Execute with a bad key {}", x.transition_key)));
                return;
            };
            if self.uuids.get(&inc).map(String::as_str) != Some(uuid) {
                self.failure = Some(("4: actions fire only after their inputs", format!("controller {inc} sent an Execute keyed to another DC: {}", x.transition_key)));
                return;
            }
            self.inputs_confirmed(inc, t, a, "an Execute");
        }
    }

    pub fn on_fence(&mut self, inc: u64, transition: u64, action: usize, target: &str) {
        self.inputs_confirmed(inc, transition, action, &format!("a Fence of {target}"));
    }
}

impl Sim {
    /// Whether the CIB holds a node's record of `rsc` at least as recent as the executor's
    /// one-shot op `call` (its `<rsc>_last_0` call id); false when there is no such op.
    pub fn cib_recorded(&self, node: u32, rsc: &str, call: Option<u64>) -> bool {
        let Some(call) = call else { return false };
        let Some(status) = self.cib.doc.root.child("status") else {
            return false;
        };
        let id = node.to_string();
        let rec = status
            .children_named("node_state")
            .find(|n| n.id() == Some(id.as_str()))
            .and_then(|n| n.child("lrm"))
            .and_then(|l| l.child("lrm_resources"))
            .and_then(|l| l.children_named("lrm_resource").find(|r| r.id() == Some(rsc)))
            .and_then(|r| r.children_named("lrm_rsc_op").find(|o| o.id() == Some(format!("{rsc}_last_0").as_str())))
            .and_then(|o| o.attr("call-id"))
            .and_then(|c| c.parse::<u64>().ok());
        rec.is_some_and(|c| c >= call)
    }

    /// Invariants 1 and 3, after every step.
    pub fn check_every_step(&mut self) {
        if let Some((inv, msg)) = self.check.take_failure() {
            return self.fail(inv, msg);
        }
        let mut active: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for n in self.nodes.values().filter(|n| n.up) {
            for r in n.exec.running() {
                active.entry(r.as_str()).or_default().push(n.id);
            }
        }
        let twice = active.into_iter().find(|(_, on)| on.len() > 1).map(|(r, on)| (r.to_string(), on));
        if let Some((r, on)) = twice {
            let unrecorded: Vec<u32> = on.iter().copied().filter(|n| !self.cib_recorded(*n, &r, self.nodes[n].exec.last_call(&r))).collect();
            return self.fail("1: no resource active on two live nodes", format!("{r} runs on nodes {on:?} (the CIB never recorded its last op on {unrecorded:?})"));
        }
        // A DC per view: the nodes that processed the same configuration change last.
        let mut by_view: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for n in self.nodes.values().filter(|n| n.up && n.view > 0) {
            if n.ctl.as_ref().is_some_and(|c| c.core.dc() == Some(n.id) && c.core.status().quorate) {
                by_view.entry(n.view).or_default().push(n.id);
            }
        }
        if let Some((view, dcs)) = by_view.into_iter().find(|(_, d)| d.len() > 1) {
            let orders: Vec<String> =
                dcs.iter().map(|id| format!("node {id}: order {:?}, group {:?}", self.nodes[id].ctl.as_ref().map(|c| c.core.status().seniority), self.nodes[id].group_view)).collect();
            self.fail("3: at most one DC per quorate partition", format!("nodes {dcs:?}, in the same view {view}, all act as quorate DC ({})", orders.join("; ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheduler::graph::{GraphAction, RscOp};

    fn action(id: usize, task: &str, inputs: &[usize]) -> GraphAction {
        let op = RscOp { rsc: "d1".into(), task: task.into(), interval_ms: if task == "monitor" { 10_000 } else { 0 }, ..Default::default() };
        GraphAction { id, priority: 0, inputs: inputs.to_vec(), key: format!("d1_{task}_{id}"), node: Some(("node1".into(), "1".into())), kind: ActionKind::Rsc(op) }
    }

    fn execute(a: usize) -> pb::PeerMessage {
        pb::PeerMessage { body: Some(pb::peer_message::Body::Execute(pb::Execute { to: 1, transition_key: records::transition_key(a, 1, 0, "u"), op: None })) }
    }

    #[test]
    fn an_action_sent_before_its_input_is_confirmed_is_caught() {
        let mut c = Checker::default();
        c.controller_started(7, "u");
        c.graph_taken(7, 1, Graph { actions: vec![action(0, "start", &[]), action(1, "monitor", &[0])], ..Default::default() }, 0);
        c.on_broadcast(7, &execute(0));
        assert!(c.take_failure().is_none());
        c.on_broadcast(7, &execute(1));
        assert!(c.take_failure().is_some(), "the monitor went out before the start was confirmed");
        // The start's result reaches the DC (node 1), its record is written and acknowledged.
        let key = records::transition_key(0, 1, 0, "u");
        let result = pb::OpResult { dc: 1, transition_key: key.clone(), rc: 0, op_status: 0, ..Default::default() };
        c.before_input(1, 7, &Input::Peer { from: 1, msg: pb::PeerMessage { body: Some(pb::peer_message::Body::Result(result)) } });
        let write = proto::cib::WriteRequest { op: Some(proto::cib::write_request::Op::Modify(proto::cib::Modify { xml: format!("<status transition-key=\"{key}\"/>") })) };
        c.on_write(7, 5, &write);
        c.on_broadcast(7, &execute(1));
        assert!(c.take_failure().is_some(), "written but not yet acknowledged");
        c.before_input(1, 7, &Input::WriteDone { tag: 5, result: Ok(3) });
        c.on_broadcast(7, &execute(1));
        assert!(c.take_failure().is_none());
        // An action of a transition the controller never took.
        c.on_broadcast(7, &pb::PeerMessage { body: Some(pb::peer_message::Body::Execute(pb::Execute { to: 1, transition_key: records::transition_key(0, 2, 0, "u"), op: None })) });
        assert!(c.take_failure().is_some());
    }

    #[test]
    fn starts_of_resources_in_doubt_are_caught_until_the_fence() {
        let mut c = Checker::default();
        c.node_killed(2, BTreeMap::from([("d1".to_string(), Some(4))]), BTreeSet::from(["d2".to_string()]));
        assert_eq!(c.start_requested(1, "d1"), Some((2, Some(4))));
        assert_eq!(c.start_requested(1, "d2"), Some((2, None)), "a start under way counts too");
        assert_eq!(c.start_requested(2, "d1"), None, "the node itself, rebooted");
        c.node_fenced(2);
        assert_eq!(c.start_requested(1, "d1"), None);
    }
}
