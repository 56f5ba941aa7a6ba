//! Stages 10-12: actions per resource (probes, stops, starts, monitors), fencing and
//! shutdown, orderings between them, and the propagation of "required" and
//! "unrunnable" along orderings (SCHEDULER-NOTES 6-11).

use std::collections::{BTreeMap, BTreeSet};

use crate::constraints::{OrderC, OrderKind};
use crate::unpack::{Cluster, Kind, NodeId, RscId};
use crate::{interval_ms, Role};

pub type ActionId = usize;

#[derive(Debug, Clone)]
pub struct Action {
    pub rsc: Option<RscId>,
    pub task: String,
    pub interval_ms: u64,
    pub node: Option<NodeId>,
    pub pseudo: bool,
    /// Optional actions are not needed by this transition and stay out of the graph.
    pub optional: bool,
    pub runnable: bool,
    /// Why the action became required or unrunnable, as the summary prints it.
    pub reason: Option<String>,
    /// Fencing: the fence action word (reboot/off/on) and the reason for the summary.
    pub fence: Option<(String, String)>,
    pub priority: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// first required => then required
    pub implies_then: bool,
    /// then required => first required
    pub implies_first: bool,
    /// first unrunnable => then unrunnable
    pub runnable_left: bool,
    /// first required => then's resource restarts (symmetrical mandatory orders, group chains)
    pub restart: bool,
}

impl Flags {
    pub const ORDER_ONLY: Flags = Flags { implies_then: false, implies_first: false, runnable_left: false, restart: false };
    pub const MANDATORY: Flags = Flags { implies_then: true, implies_first: false, runnable_left: true, restart: false };
    pub const MANDATORY_RESTART: Flags = Flags { implies_then: true, implies_first: false, runnable_left: true, restart: true };
    pub const MANDATORY_STOP: Flags = Flags { implies_then: false, implies_first: true, runnable_left: true, restart: false };
}

#[derive(Debug, Clone)]
pub struct Ordering {
    pub first: ActionId,
    pub then: ActionId,
    pub flags: Flags,
}

/// Actions of one resource, for the summary.
#[derive(Debug, Clone, Default)]
pub struct RscActions {
    pub start: Option<ActionId>,
    pub stops: Vec<ActionId>,
    pub promote: Option<ActionId>,
    pub demote: Option<ActionId>,
    /// Unmanaged or blocked: its actions only inform orderings, nothing runs.
    pub frozen: bool,
    /// Pseudo actions of groups and clones: start, running, stop, stopped.
    pub pseudo: BTreeMap<&'static str, ActionId>,
}

#[derive(Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub orderings: Vec<Ordering>,
    pub per_rsc: BTreeMap<RscId, RscActions>,
    pub fenced: Vec<NodeId>,
    /// Resources moving by live migration: (source, target).
    pub migrations: BTreeMap<RscId, (NodeId, NodeId)>,
    /// Mandatory colocations between primitives: (dependent, primary).
    pub must_colocate: Vec<(RscId, RscId)>,
}

impl Plan {
    fn add(&mut self, a: Action) -> ActionId {
        self.actions.push(a);
        self.actions.len() - 1
    }

    fn order(&mut self, first: ActionId, then: ActionId, flags: Flags) {
        self.orderings.push(Ordering { first, then, flags });
    }

    /// Graph key of an action, e.g. `rsc1_start_0`, `rsc1_monitor_10000`.
    pub fn key(&self, cl: &Cluster, id: ActionId) -> String {
        let a = &self.actions[id];
        match a.rsc {
            Some(r) => format!("{}_{}_{}", cl.rscs[r].id, a.task, a.interval_ms),
            None => a.task.clone(),
        }
    }
}

/// Nodes where a primitive must not be probed.
#[derive(Default)]
struct Discovery {
    never: BTreeSet<NodeId>,
    exclusive: Option<BTreeSet<NodeId>>,
}

fn new_action(rsc: Option<RscId>, task: &str, node: Option<NodeId>) -> Action {
    Action { rsc, task: task.into(), interval_ms: 0, node, pseudo: false, optional: true, runnable: true, reason: None, fence: None, priority: 0 }
}

impl Cluster<'_> {
    fn fencing_possible(&self) -> bool {
        self.options.stonith_enabled && (self.has_fencing_device || self.options.have_watchdog)
    }

    fn quorum_ok(&self) -> bool {
        self.have_quorum || self.options.no_quorum_policy == "ignore"
    }

    /// Where `resource-discovery` forbids probing each primitive (read once per run).
    fn discovery_limits(&self) -> BTreeMap<RscId, Discovery> {
        let mut out: BTreeMap<RscId, Discovery> = BTreeMap::new();
        for loc in &self.cib.config.constraints.locations {
            let mode = loc.resource_discovery.as_deref();
            if !matches!(mode, Some("never") | Some("exclusive")) {
                continue;
            }
            let node = loc.node.as_deref().and_then(|x| self.node_by_name(x));
            for t in self.location_targets(loc) {
                for prim in self.primitives_of(t) {
                    let d = out.entry(prim).or_default();
                    match (mode, node) {
                        (Some("never"), Some(n)) => {
                            d.never.insert(n);
                        }
                        (Some("exclusive"), n) => {
                            let ex = d.exclusive.get_or_insert_with(BTreeSet::new);
                            ex.extend(n);
                        }
                        _ => {}
                    }
                }
            }
        }
        out
    }

    fn probe_allowed(&self, r: RscId, n: NodeId, discovery: &BTreeMap<RscId, Discovery>) -> bool {
        let node = &self.nodes[n];
        if !node.online || node.unclean || node.pending || !self.options.enable_startup_probes {
            return false;
        }
        let rsc = &self.rscs[r];
        if rsc.orphan || rsc.unscheduled || rsc.history.get(&n).is_some_and(|h| h.known) {
            return false;
        }
        let in_bundle = rsc.parent.is_some_and(|p| self.rscs[p].kind == Kind::Bundle);
        if node.bundle_node && !in_bundle {
            return false;
        }
        // Remote nodes never run fencing devices or other remote connections.
        if node.remote && (rsc.is_remote_connection() || rsc.prim.as_ref().is_some_and(|p| p.class == "stonith")) {
            return false;
        }
        // resource-discovery=never on this node, or exclusive elsewhere.
        if let Some(d) = discovery.get(&r) {
            if d.never.contains(&n) || d.exclusive.as_ref().is_some_and(|ex| !ex.contains(&n)) {
                return false;
            }
        }
        true
    }

    /// The resource's configured recurring monitors for a role: (interval ms, op).
    fn recurring_monitors(&self, r: RscId, role: Role) -> Vec<u64> {
        let Some(p) = &self.rscs[r].prim else { return vec![] };
        p.ops
            .iter()
            .filter(|o| o.name == "monitor")
            .filter(|o| o.get("enabled").map(cib::is_true).unwrap_or(true))
            .filter_map(|o| {
                let iv = interval_ms(&o.interval)?;
                if iv == 0 {
                    return None;
                }
                let op_role = o.role.as_deref().and_then(|x| crate::constraints::role_of(Some(x)));
                let matches = match op_role {
                    None | Some(Role::Started) => matches!(role, Role::Started | Role::Unpromoted),
                    Some(Role::Unpromoted) => role == Role::Unpromoted || role == Role::Started,
                    Some(x) => x == role,
                };
                matches.then_some(iv)
            })
            .collect()
    }
}

/// Build every action and ordering for the allocated cluster.
pub fn plan(cl: &Cluster, orders: &[OrderC], colocs: &[crate::constraints::Coloc], clear_failcounts: &[(RscId, NodeId)]) -> Plan {
    let mut p = Plan::default();
    let discovery = cl.discovery_limits();
    let fencing = cl.fencing_possible();
    let any_managed = cl.rscs.iter().any(|r| r.managed);
    // Fencing of unclean nodes.
    let mut fence_of: BTreeMap<NodeId, ActionId> = BTreeMap::new();
    for (n, node) in cl.nodes.iter().enumerate() {
        let ticket = cl.ticket_fence.get(&n);
        if (node.unclean || ticket.is_some()) && fencing && any_managed && (cl.quorum_ok() || node.online) {
            let mut a = new_action(None, "stonith", Some(n));
            a.optional = false;
            let reason = node.fence_reason.clone().or_else(|| ticket.cloned()).unwrap_or_else(|| "node is unclean".into());
            a.fence = Some((cl.options.stonith_action.clone(), reason));
            let id = p.add(a);
            fence_of.insert(n, id);
            p.fenced.push(n);
        }
    }
    // Group and clone pseudo actions.
    for (id, r) in cl.rscs.iter().enumerate() {
        if matches!(r.kind, Kind::Group | Kind::Clone { .. }) {
            let mut ra = RscActions::default();
            for task in ["start", "running", "stop", "stopped"] {
                let mut a = new_action(Some(id), task, None);
                a.pseudo = true;
                a.priority = r.priority;
                ra.pseudo.insert(task, p.add(a));
            }
            p.order(ra.pseudo["start"], ra.pseudo["running"], Flags::ORDER_ONLY);
            p.order(ra.pseudo["stop"], ra.pseudo["stopped"], Flags::ORDER_ONLY);
            p.order(ra.pseudo["stopped"], ra.pseudo["start"], Flags::ORDER_ONLY);
            p.per_rsc.insert(id, ra);
        }
    }

    let no_quorum_stop = !cl.quorum_ok();
    let freeze = no_quorum_stop && cl.options.no_quorum_policy == "freeze";

    for (id, r) in cl.rscs.iter().enumerate() {
        if !r.is_primitive() {
            continue;
        }
        let mut ra = RscActions::default();
        let blocked_fail = r.history.values().any(|h| h.failed && h.on_fail == Some(crate::unpack::OnFail::Block));
        let managed = r.managed && !blocked_fail && !r.unscheduled;
        // Probes: the resource's state must be known everywhere before it starts anywhere.
        let mut probes = Vec::new();
        for n in 0..cl.nodes.len() {
            if cl.probe_allowed(id, n, &discovery) && probe_this_instance(cl, id, n) {
                let mut a = new_action(Some(id), "monitor", Some(n));
                a.optional = false;
                a.priority = r.priority;
                a.reason = Some("probe".into());
                probes.push(p.add(a));
            }
        }
        if !managed {
            // Nothing will be done to it, but orderings must still see whether it can be
            // relied on: a resource that is not (healthily) running cannot "start".
            if !r.unscheduled {
                let healthy = !r.running_on.is_empty() && !r.failed;
                let mut start = new_action(Some(id), "start", r.running_on.first().copied());
                start.runnable = healthy;
                ra.start = Some(p.add(start));
                // A failed one needs a stop it will not get: whatever must stop after it cannot.
                for &c in &r.running_on {
                    let mut stop = new_action(Some(id), "stop", Some(c));
                    stop.runnable = false;
                    stop.optional = !r.failed_on(c);
                    ra.stops.push(p.add(stop));
                }
            }
            ra.frozen = true;
            p.per_rsc.insert(id, ra);
            continue;
        }
        let next = r.assigned;
        // Start (always created so orderings can see whether it could run).
        let mut start = new_action(Some(id), "start", next);
        start.priority = r.priority;
        start.runnable = next.is_some();
        // A start still pending where it stays is sent again (its result may be lost; a
        // second start of a started resource succeeds).
        let start_pending = |n: NodeId| r.history.get(&n).is_some_and(|h| h.pending_task.as_deref() == Some("start"));
        let needs_start = next.is_some_and(|n| !r.running_on.contains(&n) || r.failed_on(n) || r.running_on.len() > 1 || start_pending(n));
        start.optional = !needs_start;
        if needs_start && next.is_some() && (no_quorum_stop) {
            start.runnable = false;
            start.reason = Some(if freeze { "due to quorum freeze".into() } else { "due to no quorum".into() });
        }
        // Unknown state on a node that cannot be probed yet (pending): it might run there.
        if needs_start && cl.nodes.iter().enumerate().any(|(n, node)| node.online && node.pending && !node.unclean && !r.history.contains_key(&n)) {
            start.runnable = false;
        }
        let start_id = p.add(start);
        for &pr in &probes {
            p.order(pr, start_id, Flags::ORDER_ONLY);
        }
        ra.start = Some(start_id);
        // Stops on every current node where it must stop.
        for &c in &r.running_on {
            let mut stop = new_action(Some(id), "stop", Some(c));
            stop.priority = r.priority;
            stop.reason = r.stop_reason.map(str::to_string);
            let must = next != Some(c) || r.failed_on(c) || r.running_on.len() > 1;
            stop.optional = !must;
            if let Some(&f) = fence_of.get(&c) {
                stop.pseudo = true;
                let sid = p.add(stop);
                p.order(f, sid, Flags::MANDATORY);
                ra.stops.push(sid);
            } else {
                if cl.nodes[c].unclean {
                    stop.runnable = false;
                }
                let sid = p.add(stop);
                ra.stops.push(sid);
            }
        }
        // The start elsewhere waits for the stop here, and cannot happen if that stop cannot.
        for &s in &ra.stops {
            p.order(s, start_id, Flags { implies_then: true, implies_first: false, runnable_left: true, restart: false });
        }
        p.per_rsc.insert(id, ra);
    }

    // Group internals: pseudo actions around members; members in a chain.
    for (id, r) in cl.rscs.iter().enumerate() {
        if r.kind != Kind::Group {
            continue;
        }
        let g = p.per_rsc[&id].clone();
        let members = r.children.clone();
        for (i, &m) in members.iter().enumerate() {
            let ma = p.per_rsc[&m].clone();
            if let Some(s) = ma.start {
                p.order(g.pseudo["start"], s, Flags { implies_then: false, implies_first: true, runnable_left: true, restart: false });
                // A group runs only if all its members can.
                p.order(s, g.pseudo["running"], Flags { implies_then: true, implies_first: false, runnable_left: true, restart: false });
                if i + 1 < members.len() {
                    if let Some(ns) = p.per_rsc[&members[i + 1]].start {
                        p.order(s, ns, Flags::MANDATORY_RESTART);
                    }
                }
            }
            for &st in &ma.stops {
                p.order(g.pseudo["stop"], st, Flags { implies_then: false, implies_first: true, runnable_left: false, restart: false });
                p.order(st, g.pseudo["stopped"], Flags { implies_then: true, implies_first: false, runnable_left: false, restart: false });
                if i > 0 {
                    for &ps in &p.per_rsc[&members[i - 1]].stops.clone() {
                        p.order(st, ps, Flags::MANDATORY_STOP);
                    }
                }
            }
        }
    }
    // Clone internals.
    for (id, r) in cl.rscs.iter().enumerate() {
        if !matches!(r.kind, Kind::Clone { .. }) {
            continue;
        }
        let c = p.per_rsc[&id].clone();
        for inst in r.children.clone() {
            let ia = p.per_rsc[&inst].clone();
            let (istart, irunning, istop, istopped) = match cl.rscs[inst].kind {
                Kind::Group => (Some(ia.pseudo["start"]), Some(ia.pseudo["running"]), vec![ia.pseudo["stop"]], vec![ia.pseudo["stopped"]]),
                _ => (ia.start, ia.start, ia.stops.clone(), ia.stops.clone()),
            };
            if let Some(s) = istart {
                p.order(c.pseudo["start"], s, Flags { implies_then: false, implies_first: true, runnable_left: true, restart: false });
            }
            if let Some(s) = irunning {
                p.order(s, c.pseudo["running"], Flags { implies_then: true, implies_first: false, runnable_left: false, restart: false });
            }
            for s in istop {
                p.order(c.pseudo["stop"], s, Flags { implies_then: false, implies_first: true, runnable_left: false, restart: false });
            }
            for s in istopped {
                p.order(s, c.pseudo["stopped"], Flags { implies_then: true, implies_first: false, runnable_left: false, restart: false });
            }
        }
    }

    // Configured orderings.
    for o in orders {
        let firsts = endpoint(cl, &p, o.first, &o.first_action, true);
        let thens = endpoint(cl, &p, o.then, &o.then_action, false);
        let stopping = o.then_action == "stop" || o.then_action == "demote";
        let flags = match o.kind {
            OrderKind::Mandatory if stopping => Flags::MANDATORY_STOP,
            OrderKind::Mandatory if o.symmetrical => Flags::MANDATORY_RESTART,
            OrderKind::Mandatory => Flags::MANDATORY,
            _ => Flags::ORDER_ONLY,
        };
        for &f in &firsts {
            for &t in &thens {
                p.order(f, t, flags);
            }
        }
    }

    for c in colocs.iter().filter(|c| c.score.is_inf()) {
        if let (Some(d), Some(pr)) = (cl.lead_primitive(c.dependent), cl.lead_primitive(c.primary)) {
            p.must_colocate.push((d, pr));
        }
    }
    // Resources that must never share a node: the one leaving stops before the other starts.
    for c in colocs.iter().filter(|c| c.score.is_neg_inf()) {
        let (Some(d), Some(pr)) = (cl.lead_primitive(c.dependent), cl.lead_primitive(c.primary)) else { continue };
        let (Some(dra), Some(pra)) = (p.per_rsc.get(&d).cloned(), p.per_rsc.get(&pr).cloned()) else { continue };
        if let Some(ps) = pra.start {
            for st in dra.stops {
                p.order(st, ps, Flags::ORDER_ONLY);
            }
        }
        if let Some(ds) = dra.start {
            for st in pra.stops {
                p.order(st, ds, Flags::ORDER_ONLY);
            }
        }
    }
    propagate(cl, &mut p);
    settle_pseudo(&mut p);
    plan_migrations(cl, &mut p);
    plan_role_changes(cl, &mut p);
    order_after_fencing(cl, &mut p);

    // Recurring monitors where the resource will be active.
    for (id, r) in cl.rscs.iter().enumerate() {
        if !r.is_primitive() {
            continue;
        }
        let Some(ra) = p.per_rsc.get(&id).cloned() else { continue };
        if ra.frozen {
            continue;
        }
        let Some(n) = r.assigned else { continue };
        let Some(s) = ra.start else { continue };
        let start = p.actions[s].clone();
        if !start.runnable {
            continue;
        }
        let role = if r.next_role > Role::Stopped { r.next_role } else { Role::Started };
        let role_change = ra.promote.or(ra.demote).filter(|&a| p.actions[a].runnable);
        for iv in cl.recurring_monitors(id, role) {
            let have = r.history.get(&n).is_some_and(|h| h.recurring.contains_key(&iv)) && r.running_on.contains(&n);
            if !start.optional || !have || role_change.is_some() && !have {
                let mut a = new_action(Some(id), "monitor", Some(n));
                a.interval_ms = iv;
                a.optional = false;
                let m = p.add(a);
                p.order(s, m, Flags::MANDATORY);
                if let Some(rc) = role_change {
                    p.order(rc, m, Flags::MANDATORY);
                }
            }
        }
    }
    for &(r, n) in clear_failcounts {
        let mut a = new_action(Some(r), "clear_failcount", Some(n));
        a.optional = false;
        p.add(a);
    }
    // Shutdown after the node's stops.
    for (n, node) in cl.nodes.iter().enumerate() {
        if node.shutdown && !node.unclean {
            let mut a = new_action(None, "do_shutdown", Some(n));
            a.optional = false;
            let sd = p.add(a);
            let stops: Vec<ActionId> = p.actions.iter().enumerate().filter(|(_, a)| a.task == "stop" && a.node == Some(n) && !a.optional).map(|(i, _)| i).collect();
            for s in stops {
                p.order(s, sd, Flags::ORDER_ONLY);
            }
        }
    }
    p
}

/// A resource's `requires` (meta, inherited from its parents, then rsc_defaults): `fencing`
/// by default when fencing is on, `quorum` for fencing devices and without fencing.
fn requires(cl: &Cluster, r: RscId) -> String {
    let mut cur = Some(r);
    while let Some(c) = cur {
        if let Some(v) = cl.rscs[c].meta.get("requires") {
            return v.clone();
        }
        cur = cl.rscs[c].parent;
    }
    if let Some(v) = cl.rsc_defaults.get("requires") {
        return v.clone();
    }
    let device = cl.rscs[r].prim.as_ref().is_some_and(|p| p.class == "stonith");
    if cl.options.stonith_enabled && !device { "fencing".into() } else { "quorum".into() }
}

/// What may make a resource active waits for the transition's fencing (Pacemaker
/// Explained, `requires`): with `requires=fencing` (the default with fencing) every start,
/// promote and migration waits for every fencing action, since the fenced node may run it
/// whatever its history says; with `requires=quorum` a start waits only for the fencing of
/// a node where its state is unknown (never probed there). Order only: fencing that cannot
/// run does not stop them (its own orderings do).
fn order_after_fencing(cl: &Cluster, p: &mut Plan) {
    let fences: Vec<(ActionId, NodeId)> = p.actions.iter().enumerate().filter(|(_, a)| a.fence.is_some()).filter_map(|(i, a)| a.node.map(|n| (i, n))).collect();
    if fences.is_empty() {
        return;
    }
    let mut orders = Vec::new();
    for (i, a) in p.actions.iter().enumerate() {
        let Some(r) = a.rsc.filter(|&r| cl.rscs[r].is_primitive()) else { continue };
        if a.pseudo || !matches!(a.task.as_str(), "start" | "promote" | "migrate_to" | "migrate_from") {
            continue;
        }
        match requires(cl, r).as_str() {
            "fencing" | "unfencing" => orders.extend(fences.iter().map(|&(f, _)| (f, i))),
            "quorum" if a.task == "start" => {
                let rsc = &cl.rscs[r];
                let unknown = |n: NodeId| rsc.allowed.contains_key(&n) && !rsc.history.get(&n).is_some_and(|h| h.known);
                orders.extend(fences.iter().filter(|&&(_, n)| unknown(n)).map(|&(f, _)| (f, i)));
            }
            _ => {}
        }
    }
    for (f, i) in orders {
        p.order(f, i, Flags::ORDER_ONLY);
    }
}

/// Promote and demote actions for instances of promotable clones, around their starts and stops.
fn plan_role_changes(cl: &Cluster, p: &mut Plan) {
    let mut clone_pseudo: BTreeMap<RscId, [ActionId; 4]> = BTreeMap::new();
    for id in 0..cl.rscs.len() {
        let r = &cl.rscs[id];
        if !r.is_primitive() || !r.managed || r.unscheduled {
            continue;
        }
        let Some(clone) = cl.clone_of(id) else { continue };
        if !matches!(cl.rscs[clone].kind, Kind::Clone { promotable: true, .. }) {
            continue;
        }
        let Some(ra) = p.per_rsc.get(&id).cloned() else { continue };
        let Some(start) = ra.start else { continue };
        let cur = if r.running_on.len() == 1 { Some(r.running_on[0]) } else { None };
        let stop_here = ra.stops.iter().copied().find(|&s| p.actions[s].node == cur && !p.actions[s].optional);
        let pseudo = *clone_pseudo.entry(clone).or_insert_with(|| {
            let mut ids = [0; 4];
            for (k, task) in ["promote", "promoted", "demote", "demoted"].iter().enumerate() {
                let mut a = new_action(Some(clone), task, None);
                a.pseudo = true;
                a.optional = true;
                ids[k] = p.add(a);
            }
            p.order(ids[0], ids[1], Flags::ORDER_ONLY);
            p.order(ids[2], ids[3], Flags::ORDER_ONLY);
            p.order(ids[3], ids[0], Flags::ORDER_ONLY);
            ids
        });
        let mut ra2 = ra.clone();
        if let Some(c) = cur {
            let demote = r.role == Role::Promoted && (stop_here.is_some() || r.next_role != Role::Promoted || r.assigned != Some(c));
            if demote {
                let mut a = new_action(Some(id), "demote", Some(c));
                a.optional = false;
                a.priority = r.priority;
                a.runnable = !cl.nodes[c].unclean;
                if let Some(st) = stop_here {
                    a.pseudo = p.actions[st].pseudo;
                }
                let d = p.add(a);
                if let Some(st) = stop_here {
                    p.order(d, st, Flags::ORDER_ONLY);
                }
                p.order(pseudo[2], d, Flags::ORDER_ONLY);
                p.order(d, pseudo[3], Flags::ORDER_ONLY);
                p.actions[pseudo[2]].optional = false;
                p.actions[pseudo[3]].optional = false;
                ra2.demote = Some(d);
            }
        }
        if let Some(n) = r.assigned {
            let sa = p.actions[start].clone();
            let restarted = !sa.optional;
            let promote = r.next_role == Role::Promoted && sa.runnable && (restarted || r.role != Role::Promoted || cur != Some(n));
            if promote {
                let mut a = new_action(Some(id), "promote", Some(n));
                a.optional = false;
                a.priority = r.priority;
                let pr = p.add(a);
                if restarted {
                    p.order(start, pr, Flags::MANDATORY);
                }
                p.order(pseudo[0], pr, Flags::ORDER_ONLY);
                p.order(pr, pseudo[1], Flags::ORDER_ONLY);
                p.actions[pseudo[0]].optional = false;
                p.actions[pseudo[1]].optional = false;
                ra2.promote = Some(pr);
            }
        }
        p.per_rsc.insert(id, ra2);
    }
    // Clones' starts come before promotions, demotions before their stops.
    for (&clone, ids) in &clone_pseudo {
        if let Some(cp) = p.per_rsc.get(&clone).cloned() {
            p.order(cp.pseudo["running"], ids[0], Flags::ORDER_ONLY);
            p.order(ids[3], cp.pseudo["stop"], Flags::ORDER_ONLY);
        }
    }
}

/// Can this move be a live migration (allow-migrate) instead of stop + start?
fn migratable(cl: &Cluster, p: &Plan, id: RscId) -> Option<(NodeId, NodeId)> {
    let r = &cl.rscs[id];
    // Remote connections migrate unless told otherwise.
    if !r.meta_bool("allow-migrate", r.is_remote_connection()) || cl.clone_of(id).is_some() || r.running_on.len() != 1 {
        return None;
    }
    if r.prim.as_ref().is_some_and(|p| p.class == "stonith") {
        return None;
    }
    if let Some(g) = r.parent {
        // A group migrates only if every member can.
        if cl.rscs[g].children.iter().any(|&m| !cl.rscs[m].meta_bool("allow-migrate", false)) {
            return None;
        }
    }
    let c = r.running_on[0];
    if r.failed_on(c) || !cl.nodes[c].online || cl.nodes[c].unclean {
        return None;
    }
    let ra = p.per_rsc.get(&id)?;
    let start = &p.actions[ra.start?];
    let n = start.node?;
    if n == c || start.optional || !start.runnable {
        return None;
    }
    let stop = &p.actions[*ra.stops.first()?];
    if stop.optional || !stop.runnable || stop.pseudo {
        return None;
    }
    Some((c, n))
}

/// Turn qualifying moves into migrate_to (source) -> migrate_from (target) -> stop (source),
/// with the start left as a pseudo action that the rest of the graph orders against.
fn plan_migrations(cl: &Cluster, p: &mut Plan) {
    for id in 0..cl.rscs.len() {
        if !cl.rscs[id].is_primitive() {
            continue;
        }
        let Some((src, dst)) = migratable(cl, p, id) else { continue };
        let ra = p.per_rsc[&id].clone();
        let (start, stop) = (ra.start.unwrap(), ra.stops[0]);
        let mut to = new_action(Some(id), "migrate_to", Some(src));
        to.optional = false;
        to.priority = cl.rscs[id].priority;
        let mut from = new_action(Some(id), "migrate_from", Some(dst));
        from.optional = false;
        from.priority = cl.rscs[id].priority;
        let to = p.add(to);
        let from = p.add(from);
        // Whatever had to happen before the start must happen before the migration.
        let befores: Vec<ActionId> = p.orderings.iter().filter(|o| o.then == start && o.first != stop).map(|o| o.first).collect();
        for b in befores {
            p.order(b, to, Flags::ORDER_ONLY);
        }
        p.order(to, from, Flags::MANDATORY);
        p.order(from, stop, Flags::MANDATORY);
        p.order(stop, start, Flags::ORDER_ONLY);
        p.actions[start].pseudo = true;
        p.migrations.insert(id, (src, dst));
    }
}

/// For anonymous clones only one instance is probed per node: the one placed or active there,
/// else the lowest-numbered instance not placed anywhere.
fn probe_this_instance(cl: &Cluster, id: RscId, n: NodeId) -> bool {
    let Some(clone) = cl.clone_of(id) else { return true };
    if let Kind::Clone { unique: true, .. } = cl.rscs[clone].kind {
        return true;
    }
    let base = &cl.rscs[id].base_id;
    let peers: Vec<RscId> = cl.primitives_of(clone).into_iter().filter(|&p| &cl.rscs[p].base_id == base).collect();
    if let Some(&owner) = peers.iter().find(|&&p| cl.rscs[p].assigned == Some(n) || cl.rscs[p].running_on.contains(&n)) {
        return owner == id;
    }
    let any_history = peers.iter().any(|&p| cl.rscs[p].history.contains_key(&n));
    if any_history {
        return false;
    }
    peers.iter().find(|&&p| cl.rscs[p].assigned.is_none() && cl.rscs[p].running_on.is_empty()) == Some(&id)
}

/// The actions an ordering's endpoint stands for.
fn endpoint(cl: &Cluster, p: &Plan, r: RscId, action: &str, is_first: bool) -> Vec<ActionId> {
    let ra = match p.per_rsc.get(&r) {
        Some(x) => x,
        None => return vec![],
    };
    match cl.rscs[r].kind {
        Kind::Group | Kind::Clone { .. } => {
            let key = match (action, is_first) {
                ("start", true) => "running",
                ("start", false) => "start",
                ("stop", true) => "stopped",
                ("stop", false) => "stop",
                ("running", _) => "running",
                ("stopped", _) => "stopped",
                _ => return vec![],
            };
            vec![ra.pseudo[key]]
        }
        Kind::Primitive => match action {
            "start" => ra.start.into_iter().collect(),
            "stop" => ra.stops.clone(),
            _ => vec![],
        },
        Kind::Bundle => vec![],
    }
}

fn describe(cl: &Cluster, p: &Plan, id: ActionId) -> String {
    let a = &p.actions[id];
    match a.rsc {
        Some(r) => format!("{} {}", cl.rscs[r].id, a.task),
        None => a.task.clone(),
    }
}

/// Run the orderings' implications to a fixed point.
fn propagate(cl: &Cluster, p: &mut Plan) {
    // Each clone's "running" pseudo action with its instances' starts (computed once).
    let clone_runs: Vec<(ActionId, Vec<ActionId>)> = cl
        .rscs
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.kind, Kind::Clone { .. }))
        .filter_map(|(id, r)| {
            let running = p.per_rsc.get(&id)?.pseudo["running"];
            let starts = r.children.iter().filter_map(|&i| cl.lead_primitive(i)).filter_map(|lp| p.per_rsc.get(&lp).and_then(|ra| ra.start)).collect();
            Some((running, starts))
        })
        .collect();
    let must_colocate = p.must_colocate.clone();
    let mut changed = true;
    let mut rounds = 0;
    while changed && rounds < 1000 {
        changed = false;
        rounds += 1;
        // A clone runs if at least one instance can.
        for (running, starts) in &clone_runs {
            if p.actions[*running].runnable && !starts.iter().any(|&s| p.actions[s].runnable && p.actions[s].node.is_some()) {
                p.actions[*running].runnable = false;
                changed = true;
            }
        }
        // A resource that must run with another cannot start where that one cannot.
        for &(d, pr) in &must_colocate {
            let (Some(ds), Some(ps)) = (p.per_rsc.get(&d).and_then(|ra| ra.start), p.per_rsc.get(&pr).and_then(|ra| ra.start)) else { continue };
            if !p.actions[ps].runnable && p.actions[ds].runnable && !p.per_rsc[&pr].frozen {
                p.actions[ds].runnable = false;
                let why = format!("due to colocation with {}", cl.rscs[pr].id);
                if p.actions[ds].reason.is_none() {
                    p.actions[ds].reason = Some(why.clone());
                }
                // Where it runs now it has to go.
                for st in p.per_rsc[&d].stops.clone() {
                    if p.actions[st].optional {
                        p.actions[st].optional = false;
                        p.actions[st].reason.get_or_insert(why.clone());
                    }
                }
                changed = true;
            }
        }
        for i in 0..p.orderings.len() {
            let o = p.orderings[i].clone();
            let (f, t) = (p.actions[o.first].clone(), p.actions[o.then].clone());
            if o.flags.runnable_left && !f.runnable && t.runnable && !(f.optional && f.task == "stop") {
                // A stop that is not happening does not block anything.
                let dead_start = f.task == "start" || f.task == "running" || f.task == "promote";
                if dead_start || !f.optional {
                    // A group/clone "start" pseudo action only passes the cause on: name the
                    // action that really cannot run. "running" is named itself, as Pacemaker does.
                    let why = match (&f.reason, f.pseudo && f.node.is_none() && f.task == "start") {
                        (Some(r), true) if r.starts_with("due to unrunnable") => r.clone(),
                        _ => format!("due to unrunnable {}", describe(cl, p, o.first)),
                    };
                    let ta = &mut p.actions[o.then];
                    ta.runnable = false;
                    if ta.reason.is_none() {
                        ta.reason = Some(why);
                    }
                    changed = true;
                }
            }
            if o.flags.implies_then && !f.optional && f.runnable && t.optional && t.node.is_some_or_pseudo(&t) {
                let desc = describe(cl, p, o.first);
                let ta = &mut p.actions[o.then];
                ta.optional = false;
                if ta.reason.is_none() && f.rsc != t.rsc && !f.pseudo_for(t.rsc, cl) {
                    ta.reason = Some(format!("due to required {desc}"));
                }
                changed = true;
            }
            if o.flags.restart && !f.optional && f.runnable && t.task == "start" {
                // The "then" resource restarts where it runs: its stops become required.
                if let Some(r) = t.rsc {
                    let stops = p.per_rsc.get(&r).map(|ra| ra.stops.clone()).unwrap_or_default();
                    let reason = p.actions[o.then].reason.clone();
                    for st in stops {
                        if p.actions[st].optional {
                            p.actions[st].optional = false;
                            if p.actions[st].reason.is_none() {
                                p.actions[st].reason = reason.clone();
                            }
                            changed = true;
                        }
                    }
                }
            }
            if o.flags.implies_first && !t.optional && f.optional && f.node.is_some_or_pseudo(&f) {
                p.actions[o.first].optional = false;
                changed = true;
            }
        }
        // A required start of a resource that stays where it runs is a restart only when its
        // stop is required too; that comes from the stop orderings (symmetrical orders), not
        // from the start: an asymmetrical order does not restart its "then".
        let _ = &mut changed;
    }
}

trait NodeOrPseudo {
    fn is_some_or_pseudo(&self, a: &Action) -> bool;
}

impl NodeOrPseudo for Option<NodeId> {
    fn is_some_or_pseudo(&self, a: &Action) -> bool {
        self.is_some() || a.pseudo
    }
}

impl Action {
    /// Is this a group/clone pseudo action of the resource `r` belongs to?
    fn pseudo_for(&self, r: Option<RscId>, cl: &Cluster) -> bool {
        match (self.rsc, r) {
            (Some(a), Some(b)) => self.pseudo && cl.rscs[b].parent == Some(a),
            _ => false,
        }
    }
}

/// Pseudo actions with no required neighbour stay optional (out of the graph).
fn settle_pseudo(p: &mut Plan) {
    for i in 0..p.actions.len() {
        if !p.actions[i].pseudo || p.actions[i].rsc.is_none() || p.actions[i].task == "stop" && p.actions[i].node.is_some() {
            continue;
        }
        // Real work next to it makes a group/clone pseudo action needed; a resource's own
        // pseudo action (a stop implied by fencing) has a node and counts as real work.
        let real = |a: &Action| !a.optional && a.runnable && (!a.pseudo || a.node.is_some());
        let needed = p.orderings.iter().any(|o| (o.first == i && real(&p.actions[o.then])) || (o.then == i && real(&p.actions[o.first])));
        if needed {
            p.actions[i].optional = false;
        } else if p.actions[i].node.is_none() {
            p.actions[i].optional = true;
        }
    }
}
