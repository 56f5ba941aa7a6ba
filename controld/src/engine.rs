//! The transition engine: runs one transition graph, firing each action once its inputs
//! are confirmed, and decides when the graph is done. Sans-IO: the caller sends what
//! [`Engine::fire`] returns, reports results with [`Engine::confirm`], and passes time in.
//!
//! Spec: CONTROLLER-NOTES §3.2 (firing, batch-limit), §3.3 (the DC's own action timer:
//! op timeout + `cluster-delay`), §3.5 (an abort never cancels work in flight; Complete,
//! Stopped, Terminated), §3.6 (actions of a lost node fail at once).
//!
//! Deliberate deviations: an abort stops all further firing (Pacemaker's abort priority is
//! INFINITY in almost every case; priorities below it are not modelled); the per-node limit
//! is `node-action-limit`, else the controller's default (32, see `core::Config`), with no
//! shrinking under load (Pacemaker asks each node for its load). `migration-limit` bounds
//! the migrations (`migrate_to`, `migrate_from`) in flight on each node, as Pacemaker's.

use scheduler::graph::{ActionKind, Graph, GraphAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    Waiting,
    /// Sent; the deadline (ms) of the DC's own timer, if the action has one.
    InFlight { deadline_ms: Option<u64> },
    Confirmed,
    Failed,
}

/// How a finished graph ended (Pacemaker's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every action confirmed.
    Complete,
    /// Aborted: some actions were skipped; a new graph must be computed.
    Stopped,
    /// Actions failed and others could not fire because of them.
    Terminated,
}

pub struct Engine {
    /// The transition's number (in its transition keys).
    pub id: u64,
    pub graph: Graph,
    state: Vec<ActionState>,
    aborted: bool,
    /// Actions in flight per node may not exceed this (0: no limit).
    node_limit: usize,
    /// Counts kept with the states (every state change goes through `set`).
    in_flight: usize,
    per_node: std::collections::BTreeMap<String, usize>,
    /// Migrations in flight per node (for `migration-limit`).
    migrating: std::collections::BTreeMap<String, usize>,
    /// Failed actions that were given up on (fencing past `stonith-max-attempts`): they
    /// do not call for a new graph.
    given_up: usize,
    /// Per action: the actions that wait for it, and how many of its own inputs are not
    /// confirmed yet (an input naming no action never is). Waiting actions with none
    /// missing are ready, kept in their lane (see `Lanes`); so firing costs what it
    /// fires, not the graph's size, even when thousands wait on a full node.
    dependents: Vec<Vec<usize>>,
    missing: Vec<usize>,
    lanes: Lanes,
    /// Actions per state (kept by `set`), so `outcome` costs nothing per result.
    waiting: usize,
    confirmed: usize,
    failed: usize,
    /// The DC's timers of actions in flight: (deadline ms, action).
    deadlines: std::collections::BTreeSet<(u64, usize)>,
}

/// The ready actions, by what may hold them back: lane 0 holds pseudo actions (never held),
/// lane 1 the actions no per-node limit applies to, and one lane per node its resource
/// actions. A full node's lane is passed over in one step.
struct Lanes {
    of: Vec<usize>,
    ready: Vec<std::collections::BTreeSet<usize>>,
    /// The node of each lane from 2 on.
    node: Vec<String>,
    count: usize,
}

const PSEUDO_LANE: usize = 0;
const FREE_LANE: usize = 1;

impl Lanes {
    fn new(graph: &Graph, node_limit: usize) -> Lanes {
        let mut node: Vec<String> = Vec::new();
        let mut index: std::collections::BTreeMap<&str, usize> = Default::default();
        let of = graph
            .actions
            .iter()
            .map(|a| match (&a.kind, &a.node) {
                (ActionKind::Pseudo, _) => PSEUDO_LANE,
                (ActionKind::Rsc(_), Some((n, _))) if node_limit > 0 => *index.entry(n.as_str()).or_insert_with(|| {
                    node.push(n.clone());
                    node.len() + 1
                }),
                _ => FREE_LANE,
            })
            .collect();
        Lanes { of, ready: vec![Default::default(); node.len() + 2], node, count: 0 }
    }

    fn insert(&mut self, i: usize) {
        if self.ready[self.of[i]].insert(i) {
            self.count += 1;
        }
    }

    fn remove(&mut self, i: usize) {
        if self.ready[self.of[i]].remove(&i) {
            self.count -= 1;
        }
    }

    /// The first ready action of `lane` from `from` on.
    fn next(&self, lane: usize, from: usize) -> Option<usize> {
        self.ready[lane].range(from..).next().copied()
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A live migration step, which `migration-limit` counts.
fn is_migration(a: &GraphAction) -> bool {
    matches!(&a.kind, ActionKind::Rsc(op) if op.task == "migrate_to" || op.task == "migrate_from")
}

impl Engine {
    /// `default_node_limit` applies when the graph sets no `node-action-limit`.
    pub fn new(id: u64, graph: Graph, default_node_limit: usize) -> Engine {
        let n = graph.actions.len();
        let state = vec![ActionState::Waiting; n];
        let node_limit = if graph.node_action_limit > 0 { graph.node_action_limit } else { default_node_limit };
        let mut dependents = vec![Vec::new(); n];
        let mut missing = vec![0; n];
        for (i, a) in graph.actions.iter().enumerate() {
            for &j in &a.inputs {
                missing[i] += 1;
                if let Some(d) = dependents.get_mut(j) {
                    d.push(i);
                }
            }
        }
        let mut lanes = Lanes::new(&graph, node_limit);
        for i in (0..n).filter(|&i| missing[i] == 0) {
            lanes.insert(i);
        }
        Engine { id, graph, state, aborted: false, node_limit, in_flight: 0, per_node: Default::default(), migrating: Default::default(), given_up: 0, dependents, missing, lanes, waiting: n, confirmed: 0, failed: 0, deadlines: Default::default() }
    }

    fn in_flight_on(&self, node: &str) -> usize {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    fn migrations_on(&self, node: &str) -> usize {
        self.migrating.get(node).copied().unwrap_or(0)
    }

    fn set(&mut self, i: usize, new: ActionState) {
        let was = matches!(self.state[i], ActionState::InFlight { .. });
        let is = matches!(new, ActionState::InFlight { .. });
        if was != is {
            let a = &self.graph.actions[i];
            let node = a.node.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
            let counters = if is_migration(a) { [Some(&mut self.per_node), Some(&mut self.migrating)] } else { [Some(&mut self.per_node), None] };
            for c in counters.into_iter().flatten() {
                let c = c.entry(node.clone()).or_insert(0);
                *c = if is { *c + 1 } else { *c - 1 };
            }
            self.in_flight = if is { self.in_flight + 1 } else { self.in_flight - 1 };
        }
        if self.state[i] == ActionState::Waiting {
            self.lanes.remove(i);
        }
        for (s, up) in [(self.state[i], false), (new, true)] {
            let counter = match s {
                ActionState::Waiting => &mut self.waiting,
                ActionState::Confirmed => &mut self.confirmed,
                ActionState::Failed => &mut self.failed,
                ActionState::InFlight { .. } => continue,
            };
            *counter = if up { *counter + 1 } else { *counter - 1 };
        }
        if let ActionState::InFlight { deadline_ms: Some(d) } = self.state[i] {
            self.deadlines.remove(&(d, i));
        }
        if let ActionState::InFlight { deadline_ms: Some(d) } = new {
            self.deadlines.insert((d, i));
        }
        self.state[i] = new;
        if new == ActionState::Confirmed {
            for k in 0..self.dependents[i].len() {
                let d = self.dependents[i][k];
                self.missing[d] -= 1;
                if self.missing[d] == 0 && self.state[d] == ActionState::Waiting {
                    self.lanes.insert(d);
                }
            }
        }
    }

    pub fn action(&self, i: usize) -> Option<&GraphAction> {
        self.graph.actions.get(i)
    }

    pub fn state(&self, i: usize) -> Option<ActionState> {
        self.state.get(i).copied()
    }

    /// Whether this graph fenced `node` (by name) or is fencing it.
    pub fn fences(&self, node: &str) -> bool {
        self.graph.actions.iter().zip(&self.state).any(|(a, s)| matches!(a.kind, ActionKind::Fence { .. }) && matches!(s, ActionState::InFlight { .. } | ActionState::Confirmed) && a.node.as_ref().is_some_and(|(n, _)| n == node))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
    pub fn confirmed(&self) -> usize {
        self.confirmed
    }
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Fire every action that may run now: inputs confirmed, not aborted, within
    /// `batch-limit`. Pseudo actions are confirmed on the spot (which may make others
    /// ready). Returns the actions to send, in graph order.
    pub fn fire(&mut self, now_ms: u64) -> Vec<usize> {
        let mut out = Vec::new();
        if self.aborted {
            return out;
        }
        loop {
            let mut progressed = false;
            while let Some(i) = self.lanes.next(PSEUDO_LANE, 0) {
                self.set(i, ActionState::Confirmed);
                progressed = true;
            }
            for lane in FREE_LANE..self.lanes.ready.len() {
                let node_full = |e: &Engine| lane > FREE_LANE && e.in_flight_on(&e.lanes.node[lane - 2]) >= e.node_limit;
                let mut from = 0;
                loop {
                    let limit = self.graph.batch_limit;
                    if (limit > 0 && self.in_flight() >= limit) || node_full(self) {
                        break;
                    }
                    let Some(i) = self.lanes.next(lane, from) else { break };
                    from = i + 1;
                    let a = &self.graph.actions[i];
                    // migration-limit: -1 is no limit, 0 allows no migration at all (Pacemaker's).
                    let migrations = self.graph.migration_limit;
                    if migrations >= 0 && is_migration(a) && a.node.as_ref().is_some_and(|(n, _)| self.migrations_on(n) as i64 >= migrations) {
                        continue;
                    }
                    let deadline_ms = match &a.kind {
                        ActionKind::Rsc(op) => Some(now_ms + op.timeout_ms + self.graph.cluster_delay_ms),
                        _ => None,
                    };
                    self.set(i, ActionState::InFlight { deadline_ms });
                    out.push(i);
                    progressed = true;
                }
            }
            if !progressed {
                out.sort_unstable();
                return out;
            }
        }
    }

    /// The result of an action in flight. False (and nothing changes) if it was not in
    /// flight: a duplicate or late result never counts twice.
    pub fn confirm(&mut self, i: usize, ok: bool) -> bool {
        match self.state.get(i) {
            Some(ActionState::InFlight { .. }) => {
                self.set(i, if ok { ActionState::Confirmed } else { ActionState::Failed });
                if !ok {
                    self.aborted = true;
                }
                true
            }
            _ => false,
        }
    }

    /// An action in flight that will not be tried again: failed, without aborting the
    /// graph (what does not depend on it still runs; what does never fires).
    pub fn give_up(&mut self, i: usize) -> bool {
        if !matches!(self.state.get(i), Some(ActionState::InFlight { .. })) {
            return false;
        }
        self.set(i, ActionState::Failed);
        self.given_up += 1;
        true
    }

    /// Failures that call for a new graph (all but the given-up ones).
    pub fn failed_to_replan(&self) -> usize {
        self.failed() - self.given_up
    }

    /// Nothing more fires from this graph; what is in flight still finishes.
    pub fn abort(&mut self) {
        self.aborted = true;
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// A node left: its actions in flight fail now (§3.6). Returns them.
    pub fn fail_node(&mut self, node_name: &str) -> Vec<usize> {
        let hit: Vec<usize> = (0..self.state.len())
            .filter(|&i| matches!(self.state[i], ActionState::InFlight { .. }))
            .filter(|&i| self.graph.actions[i].node.as_ref().is_some_and(|(n, _)| n == node_name) && !matches!(self.graph.actions[i].kind, ActionKind::Fence { .. }))
            .collect();
        for &i in &hit {
            self.confirm(i, false);
        }
        hit
    }

    /// Actions whose timer expired by `now_ms`: failed. Returns them.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<usize> {
        let hit: Vec<usize> = self.deadlines.iter().take_while(|(d, _)| *d <= now_ms).map(|&(_, i)| i).collect();
        for &i in &hit {
            self.confirm(i, false);
        }
        hit
    }

    /// The earliest action timer.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// Done: nothing in flight and nothing can fire. None while still running.
    pub fn outcome(&self) -> Option<Outcome> {
        if self.in_flight() > 0 {
            return None;
        }
        if self.waiting == 0 {
            return Some(if self.failed() > 0 { Outcome::Terminated } else { Outcome::Complete });
        }
        if self.aborted {
            return Some(if self.failed() > 0 && self.lanes.is_empty() { Outcome::Terminated } else { Outcome::Stopped });
        }
        // Waiting actions none of which can ever fire: their inputs failed.
        if self.lanes.is_empty() {
            return Some(Outcome::Terminated);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheduler::graph::RscOp;

    fn rsc(id: usize, node: &str, inputs: &[usize]) -> GraphAction {
        GraphAction {
            id,
            priority: 0,
            inputs: inputs.to_vec(),
            key: format!("r{id}_start_0"),
            node: Some((node.into(), node.into())),
            kind: ActionKind::Rsc(RscOp { rsc: format!("r{id}"), task: "start".into(), timeout_ms: 20_000, ..Default::default() }),
        }
    }

    fn graph(actions: Vec<GraphAction>) -> Graph {
        Graph { actions, cluster_delay_ms: 60_000, ..Default::default() }
    }

    #[test]
    fn fires_in_dependency_order_and_completes() {
        let mut p = rsc(1, "", &[0]);
        p.kind = ActionKind::Pseudo;
        let mut e = Engine::new(1, graph(vec![rsc(0, "n1", &[]), p, rsc(2, "n2", &[1])]), 0);
        assert_eq!(e.fire(0), vec![0]);
        assert_eq!(e.outcome(), None);
        assert!(e.confirm(0, true));
        assert!(!e.confirm(0, true), "a duplicate result is ignored");
        assert_eq!(e.fire(10), vec![2], "the pseudo action is confirmed on the spot");
        assert!(e.confirm(2, true));
        assert_eq!(e.fire(20), Vec::<usize>::new());
        assert_eq!(e.outcome(), Some(Outcome::Complete));
    }

    #[test]
    fn batch_limit_bounds_actions_in_flight() {
        let mut g = graph((0..5).map(|i| rsc(i, "n1", &[])).collect());
        g.batch_limit = 2;
        let mut e = Engine::new(1, g, 0);
        assert_eq!(e.fire(0).len(), 2);
        assert_eq!(e.fire(0).len(), 0);
        e.confirm(0, true);
        assert_eq!(e.fire(0).len(), 1);
        assert_eq!(e.in_flight(), 2);
    }

    #[test]
    fn the_node_limit_bounds_each_nodes_actions_in_flight() {
        let mut acts: Vec<GraphAction> = (0..4).map(|i| rsc(i, "n1", &[])).collect();
        acts.push(rsc(4, "n2", &[]));
        let mut e = Engine::new(1, graph(acts.clone()), 2);
        assert_eq!(e.fire(0), vec![0, 1, 4]);
        e.confirm(1, true);
        assert_eq!(e.fire(0), vec![2]);
        let mut g = graph(acts);
        g.node_action_limit = 3;
        assert_eq!(Engine::new(1, g, 2).fire(0), vec![0, 1, 2, 4], "node-action-limit wins over the default");
    }

    #[test]
    fn migration_limit_bounds_each_nodes_migrations_in_flight() {
        let migrate = |id, node: &str, task: &str| {
            let mut a = rsc(id, node, &[]);
            if let ActionKind::Rsc(op) = &mut a.kind {
                op.task = task.into();
            }
            a
        };
        let acts = vec![migrate(0, "n1", "migrate_to"), migrate(1, "n1", "migrate_to"), rsc(2, "n1", &[]), migrate(3, "n2", "migrate_from")];
        let mut g = graph(acts.clone());
        g.migration_limit = 1;
        let mut e = Engine::new(1, g, 0);
        assert_eq!(e.fire(0), vec![0, 2, 3], "one migration per node; other actions are not held");
        e.confirm(0, true);
        assert_eq!(e.fire(0), vec![1]);
        let mut g = graph(acts.clone());
        g.migration_limit = 0;
        assert_eq!(Engine::new(1, g, 0).fire(0), vec![2], "0 allows no migration");
        assert_eq!(Engine::new(1, graph(acts), 0).fire(0), vec![0, 1, 2, 3], "-1 (the default) is no limit");
    }

    #[test]
    fn a_failure_aborts_but_work_in_flight_finishes() {
        let mut e = Engine::new(1, graph(vec![rsc(0, "n1", &[]), rsc(1, "n2", &[]), rsc(2, "n1", &[0, 1])]), 0);
        assert_eq!(e.fire(0), vec![0, 1]);
        e.confirm(0, false);
        assert_eq!(e.fire(0), Vec::<usize>::new());
        assert_eq!(e.outcome(), None, "action 1 is still in flight");
        e.confirm(1, true);
        assert_eq!(e.outcome(), Some(Outcome::Terminated));
    }

    #[test]
    fn an_abort_stops_firing_and_ends_stopped() {
        let mut e = Engine::new(1, graph(vec![rsc(0, "n1", &[]), rsc(1, "n1", &[0])]), 0);
        e.fire(0);
        e.abort();
        e.confirm(0, true);
        assert!(e.fire(0).is_empty());
        assert_eq!(e.outcome(), Some(Outcome::Stopped));
    }

    #[test]
    fn timers_and_lost_nodes_fail_actions() {
        let mut e = Engine::new(1, graph(vec![rsc(0, "n1", &[]), rsc(1, "n2", &[])]), 0);
        e.fire(1000);
        assert_eq!(e.poll_timeout(), Some(81_000));
        assert_eq!(e.fail_node("n2"), vec![1]);
        assert_eq!(e.handle_timeout(80_999), Vec::<usize>::new());
        assert_eq!(e.handle_timeout(81_000), vec![0]);
        assert_eq!(e.outcome(), Some(Outcome::Terminated));
    }
}
