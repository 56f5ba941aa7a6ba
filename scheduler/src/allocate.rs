//! Stages 7 and 9: each primitive's node table (locations, stickiness, failure
//! bans), colocations, and the choice of one node per primitive (SCHEDULER-NOTES 4-5).

use std::collections::{BTreeMap, BTreeSet};

use crate::constraints::{factor, Coloc};
use crate::rules::{self, RuleContext};
use crate::score::Score;
use crate::unpack::{Cluster, Kind, NodeId, RscId};
use crate::Role;

mod clone;
mod promotion;

/// A colocation between primitives (groups and clones resolved).
#[derive(Debug, Clone)]
pub struct PrimColoc {
    pub id: String,
    pub dependent: RscId,
    pub primary: Primary,
    pub score: Score,
    pub node_attribute: String,
    pub influence: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primary {
    Prim(RscId),
    /// Every placed instance of a clone.
    CloneSet(RscId),
    /// The placed instances of a promotable clone that will have this role.
    CloneRole(RscId, Role),
}

/// A colocation that constrains which instances of a promotable clone get promoted.
#[derive(Debug, Clone)]
pub struct PromotionColoc {
    pub clone: RscId,
    pub primary: Primary,
    pub score: Score,
    pub node_attribute: String,
}

pub struct Allocator<'c, 'a> {
    pub cl: &'c mut Cluster<'a>,
    pub colocs: Vec<PrimColoc>,
    /// Per primitive: its node table before colocations (what dependents fold from).
    pub base: BTreeMap<RscId, BTreeMap<NodeId, Score>>,
    /// Per group or clone: its own node table (the locations aimed at it or an ancestor).
    pub own: BTreeMap<RscId, BTreeMap<NodeId, Score>>,
    /// Clones, cloned groups and their members: their tables when they are placed.
    pub assign_tables: BTreeMap<RscId, BTreeMap<NodeId, Score>>,
    /// Expired failures to clear: (resource, node).
    pub clear_failcounts: Vec<(RscId, NodeId)>,
    /// Clone instances that keep their current node when it is still allowed.
    pub preferred: BTreeMap<RscId, NodeId>,
    pub promotion_colocs: Vec<PromotionColoc>,
    /// Utilization already placed on each node in this run.
    pub used: BTreeMap<NodeId, BTreeMap<String, i64>>,
}

/// A resource's or node's utilization numbers (non-numeric values are ignored).
fn utilization_of(sets: &[cib::NvSet]) -> BTreeMap<String, i64> {
    let mut raw = BTreeMap::new();
    crate::unpack::flatten(sets, &RuleContext::default(), &mut raw);
    raw.into_iter().filter_map(|(k, v)| v.trim().parse::<i64>().ok().map(|n| (k, n))).collect()
}

impl Cluster<'_> {
    /// The first primitive of a resource: where a group or clone instance is placed.
    pub fn lead_primitive(&self, id: RscId) -> Option<RscId> {
        match self.rscs[id].kind {
            Kind::Primitive => Some(id),
            Kind::Group => self.rscs[id].children.first().copied(),
            _ => None,
        }
    }

    /// Stopped whatever the scores say: disabled (target-role, its own or inherited), an
    /// orphan, or forced to stop.
    pub fn to_be_stopped(&self, id: RscId) -> bool {
        let r = &self.rscs[id];
        // Losing quorum stops resources without banning them.
        if (r.force_stop && r.stop_reason != Some("due to no quorum")) || r.orphan {
            return true;
        }
        // Meta attributes are inherited, so this is the nearest target-role configured.
        r.target_role == Some(Role::Stopped)
    }

    /// A resource and everything below it.
    pub fn descendants(&self, id: RscId) -> Vec<RscId> {
        let mut out = vec![id];
        for &c in &self.rscs[id].children {
            out.extend(self.descendants(c));
        }
        out
    }

    /// Clone instances (top of each instance subtree) of a clone.
    pub fn instances(&self, clone: RscId) -> Vec<RscId> {
        self.rscs[clone].children.clone()
    }

    /// Where a clone (or anything in it) lives.
    pub fn clone_of(&self, id: RscId) -> Option<RscId> {
        let mut cur = Some(id);
        while let Some(c) = cur {
            if matches!(self.rscs[c].kind, Kind::Clone { .. }) {
                return Some(c);
            }
            cur = self.rscs[c].parent;
        }
        None
    }
}

fn is_started_role(r: Option<Role>) -> bool {
    matches!(r, None | Some(Role::Started))
}

impl<'c, 'a> Allocator<'c, 'a> {
    pub fn new(cl: &'c mut Cluster<'a>, colocs: &[Coloc]) -> Allocator<'c, 'a> {
        let mut a = Allocator { cl, colocs: Vec::new(), base: BTreeMap::new(), own: BTreeMap::new(), assign_tables: BTreeMap::new(), clear_failcounts: Vec::new(), preferred: BTreeMap::new(), promotion_colocs: Vec::new(), used: BTreeMap::new() };
        a.build_colocations(colocs);
        a
    }

    fn build_colocations(&mut self, colocs: &[Coloc]) {
        let cl = &*self.cl;
        // Group members form a chain: each with the previous one at INFINITY.
        for (i, r) in cl.rscs.iter().enumerate() {
            if r.kind == Kind::Group {
                for w in r.children.windows(2) {
                    self.colocs.push(PrimColoc {
                        id: format!("{}-chain", cl.rscs[i].id),
                        dependent: w[1],
                        primary: Primary::Prim(w[0]),
                        score: Score::INF,
                        node_attribute: "#uname".into(),
                        influence: true,
                    });
                }
            }
        }
        for c in colocs {
            let primary = match cl.rscs[c.primary].kind {
                Kind::Clone { promotable: true, .. } if matches!(c.primary_role, Some(Role::Promoted) | Some(Role::Unpromoted)) => {
                    Primary::CloneRole(c.primary, c.primary_role.unwrap())
                }
                _ if !is_started_role(c.primary_role) => continue,
                Kind::Clone { .. } => Primary::CloneSet(c.primary),
                _ => match cl.lead_primitive(c.primary) {
                    Some(p) => Primary::Prim(p),
                    None => continue,
                },
            };
            // A promotable clone's promoted role following something: decides promotion only.
            if c.dependent_role == Some(Role::Promoted) {
                if let Kind::Clone { promotable: true, .. } = cl.rscs[c.dependent].kind {
                    self.promotion_colocs.push(PromotionColoc {
                        clone: c.dependent,
                        primary,
                        score: c.score,
                        node_attribute: c.node_attribute.clone(),
                    });
                }
                continue;
            }
            if !is_started_role(c.dependent_role) {
                continue;
            }
            let dependents: Vec<RscId> = match cl.rscs[c.dependent].kind {
                Kind::Clone { .. } => cl.instances(c.dependent).into_iter().filter_map(|i| cl.lead_primitive(i)).collect(),
                // A mandatory colocation binds every member of a group (an unmanaged first
                // member does not carry it for the rest); a preference goes to the first only.
                Kind::Group if c.score.is_inf() || c.score.is_neg_inf() => cl.rscs[c.dependent].children.clone(),
                _ => cl.lead_primitive(c.dependent).into_iter().collect(),
            };
            for d in dependents {
                self.colocs.push(PrimColoc {
                    id: c.id.clone(),
                    dependent: d,
                    primary,
                    score: c.score,
                    node_attribute: c.node_attribute.clone(),
                    influence: c.influence,
                });
            }
        }
    }

    /// Stage 7: the node table of every primitive.
    pub fn build_tables(&mut self) {
        let n_nodes = self.cl.nodes.len();
        let symmetric = self.cl.options.symmetric;
        let mut tables: BTreeMap<RscId, BTreeMap<NodeId, Score>> = BTreeMap::new();
        for id in 0..self.cl.rscs.len() {
            if self.cl.rscs[id].is_primitive() {
                let t = if symmetric { (0..n_nodes).map(|n| (n, Score::ZERO)).collect() } else { BTreeMap::new() };
                tables.insert(id, t);
            } else {
                let t = if symmetric { (0..n_nodes).map(|n| (n, Score::ZERO)).collect() } else { BTreeMap::new() };
                self.own.insert(id, t);
            }
        }
        // Locations: a constraint on a group or clone applies to every primitive below it.
        for loc in self.cl.cib.config.constraints.locations.clone() {
            if !is_started_role(crate::constraints::role_of(loc.role.as_deref())) {
                continue;
            }
            for target in self.cl.location_targets(&loc) {
                // A group's location (preference or ban) goes to the member the group is placed
                // by; the others follow it through the group's chain and only learn where the
                // constraint names a node.
                let prims = self.cl.primitives_of(target);
                let entries = self.location_scores(&loc, target);
                for c in self.cl.descendants(target) {
                    if let Some(t) = self.own.get_mut(&c) {
                        for &(n, s) in &entries {
                            let e = t.entry(n).or_insert(Score::ZERO);
                            *e = e.add(s);
                        }
                    }
                }
                for p in prims {
                    let lead = match self.cl.rscs[p].parent {
                        Some(g) if self.cl.rscs[g].kind == Kind::Group && target != p => self.cl.rscs[g].children.first() == Some(&p),
                        _ => true,
                    };
                    let t = tables.entry(p).or_default();
                    for &(n, s) in &entries {
                        let e = t.entry(n).or_insert(Score::ZERO);
                        if lead {
                            *e = e.add(s);
                        }
                    }
                }
            }
        }
        self.apply_tickets(&mut tables);
        let health: Vec<Score> = (0..self.cl.nodes.len()).map(|n| self.node_health(n)).collect();
        for (&id, table) in tables.iter_mut() {
            if self.cl.rscs[id].meta_bool("allow-unhealthy-nodes", false) {
                continue;
            }
            for (&n, s) in table.iter_mut() {
                if health[n] != Score::ZERO {
                    *s = s.add(health[n]);
                }
            }
        }
        let now_s = self.cl.now.and_utc().timestamp();
        for (&id, table) in tables.iter_mut() {
            let r = &self.cl.rscs[id];
            if r.managed && r.running_on.len() == 1 {
                let n = r.running_on[0];
                if let Some(s) = table.get_mut(&n) {
                    *s = s.add(r.stickiness);
                }
            }
            // An unmanaged resource is held where it is active.
            if !r.managed {
                for &n in &r.running_on {
                    let e = table.entry(n).or_insert(Score::ZERO);
                    *e = e.add(Score::INF);
                }
            }
            for (&n, &(count, last)) in &r.fail_counts {
                let expired = r.failure_timeout_s > 0 && last.is_some_and(|l| now_s > l + r.failure_timeout_s);
                if expired {
                    self.clear_failcounts.push((id, n));
                    continue;
                }
                // Failures of operations with on-fail=ignore never reach the threshold.
                let only_ignored = r.history.get(&n).is_some_and(|h| h.failure_ignored && !h.failed);
                if count >= r.migration_threshold && !only_ignored {
                    table.insert(n, Score::NEG_INF);
                }
            }
            for &n in r.history_bans.keys() {
                table.insert(n, Score::NEG_INF);
            }
            let in_bundle = r.parent.is_some_and(|p| self.cl.rscs[p].kind == Kind::Bundle);
            for (n, node) in self.cl.nodes.iter().enumerate() {
                if node.bundle_node && !in_bundle {
                    table.insert(n, Score::NEG_INF);
                }
            }
            if r.is_remote_connection() || r.prim.as_ref().is_some_and(|p| p.class == "stonith") {
                for (n, node) in self.cl.nodes.iter().enumerate() {
                    if node.remote {
                        table.insert(n, Score::NEG_INF);
                    }
                }
            }
            if r.banned_everywhere {
                for s in table.values_mut() {
                    *s = Score::NEG_INF;
                }
            }
        }
        self.base = tables;
        // What an anonymous clone's instance may never do on a node, no instance may.
        for id in 0..self.cl.rscs.len() {
            let Some(c) = self.cl.clone_of(id).filter(|&c| matches!(self.cl.rscs[c].kind, Kind::Clone { unique: false, .. })) else { continue };
            let bans: Vec<NodeId> = self.cl.rscs[id].history_bans.keys().copied().collect();
            if let Some(t) = self.own.get_mut(&c) {
                for n in bans {
                    t.insert(n, Score::NEG_INF);
                }
            }
        }
        self.add_promotion_preferences();
    }

    /// A node's health score under `node-health-strategy`: the sum over its `#health*`
    /// attributes, where red, yellow and green stand for the configured (or, for the
    /// migrate-on-red and only-green strategies, fixed) scores.
    fn node_health(&self, n: NodeId) -> Score {
        let raw = &self.cl.options.raw;
        let strategy = raw.get("node-health-strategy").map(|s| s.to_ascii_lowercase()).unwrap_or_else(|| "none".into());
        let conf = |k: &str| raw.get(k).and_then(|v| Score::parse(v)).unwrap_or(Score::ZERO);
        let (red, yellow, green) = match strategy.as_str() {
            "migrate-on-red" => (Score::NEG_INF, Score::ZERO, Score::ZERO),
            "only-green" => (Score::NEG_INF, Score::NEG_INF, Score::ZERO),
            "progressive" | "custom" => (conf("node-health-red"), conf("node-health-yellow"), conf("node-health-green")),
            _ => return Score::ZERO,
        };
        let mut total = Score::ZERO;
        for (k, v) in &self.cl.nodes[n].attrs {
            if !k.starts_with("#health") {
                continue;
            }
            let s = match v.trim().to_ascii_lowercase().as_str() {
                "red" => red,
                "yellow" => yellow,
                "green" => green,
                other => Score::parse(other).unwrap_or(Score::ZERO),
            };
            total = total.add(s);
        }
        total
    }

    /// rsc_ticket: a resource needing a ticket that is not granted (or is on standby)
    /// loses it per loss-policy: stop and demote ban it, freeze keeps it only where it runs,
    /// fence also fences the nodes it runs on.
    fn apply_tickets(&mut self, tables: &mut BTreeMap<RscId, BTreeMap<NodeId, Score>>) {
        for t in self.cl.cib.config.constraints.tickets.clone() {
            let state = self.cl.cib.status.tickets.iter().find(|s| s.id == t.ticket);
            let granted = state.is_some_and(|s| s.granted);
            let standby = state.is_some_and(|s| s.standby);
            if granted && !standby {
                continue;
            }
            // A ticket on standby stops what needs it gracefully; for the Promoted role the
            // loss-policy still decides (demote only demotes).
            let configured = t.loss_policy.as_deref().unwrap_or("stop");
            let policy = if granted { "stop" } else { configured };
            // A dependency of the Promoted role only blocks promotion (at promotion time) when
            // the loss-policy is demote or freeze; losing it with stop or fence takes the whole
            // resource down.
            // A ticket never granted ("initial") only keeps the role from being taken.
            let revoked = state.is_some();
            let whole = |role: Option<Role>| is_started_role(role) || (revoked && matches!(configured, "stop" | "fence"));
            let mut targets: Vec<RscId> = Vec::new();
            if whole(crate::constraints::role_of(t.rsc_role.as_deref())) {
                targets.extend(t.rsc.iter().flat_map(|r| self.cl.resolve_targets(r)));
            }
            for set in &t.sets {
                let role = crate::constraints::role_of(set.role.as_deref().or(t.rsc_role.as_deref()));
                if whole(role) {
                    targets.extend(set.resources.iter().flat_map(|r| self.cl.resolve_targets(r)));
                }
            }
            for target in targets {
                for p in self.cl.primitives_of(target) {
                    let running = self.cl.rscs[p].running_on.clone();
                    if policy == "fence" {
                        for &n in &running {
                            self.cl.ticket_fence.entry(n).or_insert_with(|| "deadman ticket was lost".into());
                        }
                    }
                    let t = tables.entry(p).or_default();
                    for n in 0..self.cl.nodes.len() {
                        if policy == "freeze" && running.contains(&n) {
                            continue;
                        }
                        t.insert(n, Score::NEG_INF);
                    }
                }
            }
        }
    }

    fn location_scores(&self, loc: &cib::Location, target: RscId) -> Vec<(NodeId, Score)> {
        let cl = &*self.cl;
        let mut out = Vec::new();
        if let Some(node) = &loc.node {
            let score = loc.score.as_deref().and_then(Score::parse).unwrap_or(Score::ZERO);
            if let Some(n) = cl.node_by_name(node) {
                out.push((n, score));
            }
            return out;
        }
        let r = &cl.rscs[target];
        let (class, provider, agent) = match &r.prim {
            Some(p) => (p.class.as_str(), p.provider.as_deref(), p.agent.as_str()),
            None => ("", None, ""),
        };
        for rule in &loc.rules {
            if !is_started_role(crate::constraints::role_of(rule.role.as_deref())) {
                continue;
            }
            for (n, node) in cl.nodes.iter().enumerate() {
                let ctx = RuleContext {
                    node_attrs: Some(&node.attrs),
                    now: Some(cl.now),
                    rsc: Some((class, provider, agent)),
                    op: None,
                    rsc_params: Some(&r.params),
                    rsc_meta: Some(&r.meta),
                };
                if !rules::evaluate(rule, &ctx) {
                    continue;
                }
                let score = if let Some(attr) = &rule.score_attribute {
                    node.attrs.get(attr).and_then(|v| Score::parse(v))
                } else {
                    Some(rule.score.as_deref().and_then(Score::parse).unwrap_or(Score::ZERO))
                };
                if let Some(s) = score {
                    out.push((n, s));
                }
            }
        }
        out
    }

    fn node_attr<'n>(&'n self, n: NodeId, attr: &str) -> Option<&'n str> {
        self.cl.nodes[n].attrs.get(attr).map(String::as_str)
    }

    /// Nodes a primary occupies (one for a primitive, several for a clone).
    fn primary_nodes(&self, p: Primary) -> Vec<NodeId> {
        match p {
            Primary::Prim(id) => self.cl.rscs[id].assigned.into_iter().collect(),
            Primary::CloneSet(c) => {
                let mut v: BTreeSet<NodeId> = BTreeSet::new();
                for i in self.cl.instances(c) {
                    if let Some(lp) = self.cl.lead_primitive(i) {
                        if let Some(n) = self.cl.rscs[lp].assigned {
                            v.insert(n);
                        }
                    }
                }
                v.into_iter().collect()
            }
            Primary::CloneRole(c, role) => {
                let mut v: BTreeSet<NodeId> = BTreeSet::new();
                for i in self.cl.instances(c) {
                    for p in self.cl.primitives_of(i) {
                        let r = &self.cl.rscs[p];
                        let promoted = r.next_role == Role::Promoted;
                        if let Some(n) = r.assigned {
                            if promoted == (role == Role::Promoted) {
                                v.insert(n);
                            }
                        }
                    }
                }
                v.into_iter().collect()
            }
        }
    }

    fn primary_priority(&self, p: Primary) -> i64 {
        match p {
            Primary::Prim(id) | Primary::CloneSet(id) | Primary::CloneRole(id, _) => self.cl.rscs[id].priority,
        }
    }

    pub fn allocate_all(&mut self) {
        let mut top = self.cl.top.clone();
        // With a placement strategy, resources that care most about a node go first
        // (SCHEDULER-NOTES 5.2): priority, then the score of their best available node.
        if self.cl.options.placement_strategy != "default" {
            let best = |t: RscId| -> Score {
                let lead = match self.cl.rscs[t].kind {
                    Kind::Clone { .. } => self.cl.instances(t).first().and_then(|&i| self.cl.lead_primitive(i)),
                    _ => self.cl.lead_primitive(t),
                };
                lead.and_then(|p| self.base.get(&p))
                    .and_then(|tb| tb.iter().filter(|(&n, _)| self.cl.nodes[n].available()).map(|(_, &s)| s).max())
                    .unwrap_or(Score::NEG_INF)
            };
            top.sort_by_key(|&t| (std::cmp::Reverse(self.cl.rscs[t].priority), std::cmp::Reverse(best(t))));
        }
        // Remote connections first: where (and whether) they run decides their nodes' fate.
        for &t in &top {
            if self.cl.rscs[t].is_remote_connection() {
                self.allocate_resource(t);
            }
        }
        for n in 0..self.cl.nodes.len() {
            if !self.cl.nodes[n].remote || self.cl.nodes[n].guest {
                continue;
            }
            let conn = self.cl.nodes[n].connection.clone().and_then(|c| self.cl.rsc_by_id(&c));
            if conn.is_some_and(|c| self.cl.rscs[c].assigned.is_none()) {
                self.cl.nodes[n].connection_lost = true;
            }
        }
        for t in top {
            self.allocate_resource(t);
        }
    }

    pub fn allocate_resource(&mut self, id: RscId) {
        match self.cl.rscs[id].kind {
            Kind::Primitive => self.allocate_primitive(id),
            Kind::Group => {
                for m in self.cl.rscs[id].children.clone() {
                    self.allocate_primitive(m);
                }
            }
            Kind::Clone { .. } => self.allocate_clone(id),
            Kind::Bundle => {}
        }
    }

    fn allocate_primary(&mut self, p: Primary) {
        match p {
            Primary::Prim(id) => self.allocate_primitive(id),
            Primary::CloneSet(c) | Primary::CloneRole(c, _) => self.allocate_clone(c),
        }
    }

    pub fn allocate_primitive(&mut self, id: RscId) {
        if self.cl.rscs[id].allocated || self.cl.rscs[id].allocating {
            return;
        }
        self.cl.rscs[id].allocating = true;
        // Primaries first, highest priority first.
        let mut mine: Vec<PrimColoc> = self.colocs.iter().filter(|c| c.dependent == id).cloned().collect();
        mine.sort_by_key(|c| std::cmp::Reverse(self.primary_priority(c.primary)));
        for c in &mine {
            self.allocate_primary(c.primary);
        }
        let mut table = self.base.get(&id).cloned().unwrap_or_default();
        for c in &mine {
            self.apply_dependent_colocation(&mut table, c);
        }
        let mut visited = BTreeSet::from([id]);
        self.fold_dependents(&mut table, id, 1.0, &mut visited);
        let pinned = self.cl.rscs[id].pinned;
        let choice = match pinned {
            Some(n) => n,
            None => self.choose_node(id, &table),
        };
        let r = &mut self.cl.rscs[id];
        r.allowed = table;
        r.assigned = choice;
        r.allocating = false;
        r.allocated = true;
        if let Some(n) = choice {
            self.cl.nodes[n].assigned_count += 1;
            if let Some(p) = &self.cl.rscs[id].prim {
                let e = self.used.entry(n).or_default();
                for (k, v) in utilization_of(&p.utilization) {
                    *e.entry(k).or_insert(0) += v;
                }
            }
        }
    }

    fn apply_dependent_colocation(&self, table: &mut BTreeMap<NodeId, Score>, c: &PrimColoc) {
        // A colocation loop: the primary is the resource whose placement led here; it is
        // placed after us and follows us, so this constraint says nothing yet.
        let in_progress = match c.primary {
            Primary::Prim(p) => self.cl.rscs[p].allocating,
            Primary::CloneSet(p) | Primary::CloneRole(p, _) => self.cl.rscs[p].allocating,
        };
        if in_progress {
            return;
        }
        let pnodes = self.interleaved_partner(c, table).unwrap_or_else(|| self.primary_nodes(c.primary));
        let attr_vals: BTreeSet<Option<&str>> = pnodes.iter().map(|&n| self.node_attr(n, &c.node_attribute)).collect();
        let matches = |n: NodeId| !pnodes.is_empty() && attr_vals.contains(&self.node_attr(n, &c.node_attribute));
        if c.score.is_inf() {
            // With a role of a promotable clone, the dependent also takes on the score the
            // instance in that role got on its node.
            let role_weight = |n: NodeId| -> Score {
                let Primary::CloneRole(clone, role) = c.primary else { return Score::ZERO };
                // A group takes it once, through its first member.
                if !self.is_lead(c.dependent) {
                    return Score::ZERO;
                }
                let want = self.node_attr(n, &c.node_attribute);
                self.cl
                    .instances(clone)
                    .into_iter()
                    .filter_map(|i| self.cl.lead_primitive(i))
                    .filter(|&p| (self.cl.rscs[p].next_role == Role::Promoted) == (role == Role::Promoted))
                    .filter_map(|p| {
                        let r = &self.cl.rscs[p];
                        let at = r.assigned?;
                        (self.node_attr(at, &c.node_attribute) == want).then(|| r.allowed.get(&at).copied().unwrap_or(Score::ZERO))
                    })
                    .max()
                    .unwrap_or(Score::ZERO)
            };
            for (&n, s) in table.iter_mut() {
                if !matches(n) {
                    *s = Score::NEG_INF;
                } else {
                    *s = s.add(role_weight(n));
                }
            }
            return;
        }
        if c.score.is_neg_inf() {
            for (&n, s) in table.iter_mut() {
                if matches(n) {
                    *s = Score::NEG_INF;
                }
            }
            return;
        }
        let before = table.clone();
        if pnodes.is_empty() {
            if c.score.0 > 0 {
                for s in table.values_mut() {
                    *s = s.add(Score(-c.score.0));
                }
            }
        } else {
            for (&n, s) in table.iter_mut() {
                if matches(n) {
                    *s = s.add(c.score);
                }
            }
        }
        // A finite preference never makes a resource unplaceable.
        if !self.has_usable_node(table) {
            *table = before;
        }
    }

    /// An instance of an interleaved clone colocated with another clone follows one
    /// instance of it: the one placed on the best node of the instance's table that has one.
    fn interleaved_partner(&self, c: &PrimColoc, table: &BTreeMap<NodeId, Score>) -> Option<Vec<NodeId>> {
        let Primary::CloneSet(primary) = c.primary else { return None };
        let mine = self.cl.clone_of(c.dependent)?;
        if mine == primary || !self.cl.rscs[mine].meta_bool("interleave", false) {
            return None;
        }
        let placed = self.primary_nodes(c.primary);
        let mut nodes: Vec<(NodeId, Score)> = table.iter().map(|(&n, &s)| (n, s)).collect();
        let nd = |n: NodeId| &self.cl.nodes[n];
        nodes.sort_by(|a, b| b.1.cmp(&a.1).then(nd(a.0).assigned_count.cmp(&nd(b.0).assigned_count)).then(nd(a.0).name.as_bytes().cmp(nd(b.0).name.as_bytes())));
        Some(nodes.into_iter().map(|(n, _)| n).find(|n| placed.contains(n)).into_iter().collect())
    }

    fn has_usable_node(&self, table: &BTreeMap<NodeId, Score>) -> bool {
        table.iter().any(|(&n, s)| s.0 >= 0 && self.cl.nodes[n].available())
    }

    /// Fold the preferences of resources colocated with `id` into its table (SCHEDULER-NOTES 5.4).
    fn fold_dependents(&self, table: &mut BTreeMap<NodeId, Score>, id: RscId, outer: f64, visited: &mut BTreeSet<RscId>) {
        let deps: Vec<&PrimColoc> = self.colocs.iter().filter(|c| c.primary == Primary::Prim(id) && c.influence).collect();
        for c in deps {
            let d = c.dependent;
            if visited.contains(&d) || self.cl.rscs[d].allocated {
                continue;
            }
            // Nested dependents fold at their own strength; only the sign carries over.
            let f = outer.signum() * factor(c.score);
            let Some(dtable) = self.base.get(&d) else { continue };
            let before = table.clone();
            for (&n, s) in table.iter_mut() {
                let want = self.node_attr(n, &c.node_attribute);
                let best = dtable
                    .iter()
                    .filter(|(&m, _)| self.cl.nodes[m].available() && self.node_attr(m, &c.node_attribute) == want)
                    .map(|(_, &v)| v)
                    .max();
                // No usable node with that value: the dependent counts as banned there.
                let best = best.unwrap_or(Score::NEG_INF);
                if f < 0.0 && best.0 < 0 {
                    continue;
                }
                *s = s.add(scale(best, f));
            }
            if !self.has_usable_node(table) {
                *table = before;
                continue;
            }
            visited.insert(d);
            let sign = if f < 0.0 { -1.0 } else { 1.0 };
            self.fold_dependents(table, d, sign, visited);
        }
    }

    /// With a placement strategy other than `default`, a node must have the capacity left
    /// for the resource's utilization (every attribute the node declares).
    fn fits(&self, id: RscId, n: NodeId) -> bool {
        if self.cl.options.placement_strategy == "default" {
            return true;
        }
        // A group's first member is placed for the whole group: it needs room for all of it.
        let r = &self.cl.rscs[id];
        let members: Vec<RscId> = match r.parent {
            Some(g) if self.cl.rscs[g].kind == Kind::Group && self.cl.rscs[g].children.first() == Some(&id) => self.cl.rscs[g].children.clone(),
            _ => vec![id],
        };
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        for m in members {
            for (k, v) in utilization_of(self.cl.rscs[m].prim.as_ref().map(|p| p.utilization.as_slice()).unwrap_or(&[])) {
                *want.entry(k).or_insert(0) += v;
            }
        }
        if want.is_empty() {
            return true;
        }
        let node = &self.cl.nodes[n];
        let capacity = self.cl.cib.config.nodes.iter().find(|c| c.uname == node.name || c.id == node.id).map(|c| utilization_of(&c.utilization)).unwrap_or_default();
        let used = self.used.get(&n);
        want.iter().all(|(k, v)| match capacity.get(k) {
            None => true,
            Some(cap) => cap - used.and_then(|u| u.get(k)).copied().unwrap_or(0) >= *v,
        })
    }

    fn choose_node(&self, id: RscId, table: &BTreeMap<NodeId, Score>) -> Option<NodeId> {
        let r = &self.cl.rscs[id];
        if self.cl.options.stop_all_resources || r.target_role == Some(Role::Stopped) || r.orphan || r.force_stop {
            return None;
        }
        let current = if r.running_on.len() == 1 { Some(r.running_on[0]) } else { None };
        let eff = |n: NodeId| -> Score {
            let s = table.get(&n).copied().unwrap_or(Score::NEG_INF);
            if self.cl.nodes[n].available() && self.fits(id, n) { s } else { Score::NEG_INF }
        };
        let mut cands: Vec<NodeId> = table.keys().copied().collect();
        cands.sort_by(|&a, &b| {
            eff(b).cmp(&eff(a))
                .then(self.cl.nodes[a].assigned_count.cmp(&self.cl.nodes[b].assigned_count))
                .then((Some(b) == current).cmp(&(Some(a) == current)))
                .then(self.cl.nodes[a].name.as_bytes().cmp(self.cl.nodes[b].name.as_bytes()))
        });
        let best = *cands.first()?;
        if eff(best).0 < 0 {
            return None;
        }
        if let Some(&n) = self.preferred.get(&id) {
            if eff(n) == eff(best) {
                return Some(n);
            }
        }
        if let Some(c) = current {
            if eff(best).0 > 0 && eff(c) == eff(best) {
                return Some(c);
            }
        }
        Some(best)
    }
}

/// A score times a colocation factor: rounded half away from zero, never rounding a
/// non-zero product to zero.
fn scale(s: Score, f: f64) -> Score {
    if f == 0.0 || s.0 == 0 {
        return Score::ZERO;
    }
    let v = (s.0 as f64 * f).round() as i64;
    let v = if v == 0 { if (s.0 as f64 * f) < 0.0 { -1 } else { 1 } } else { v };
    Score(v.clamp(-crate::score::INFINITY, crate::score::INFINITY))
}
