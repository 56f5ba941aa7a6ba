//! Promotable clones: promotion scores in the instances' node tables, and the choice of
//! which placed instances are promoted (SCHEDULER-NOTES 5, promotable clones).

use std::collections::{BTreeMap, BTreeSet};

use super::{scale, Allocator, PrimColoc, Primary};
use crate::constraints::factor;
use crate::rules::{self, RuleContext};
use crate::score::Score;
use crate::unpack::{Kind, NodeId, RscId};
use crate::Role;

impl Allocator<'_, '_> {
    /// A promotable clone's instances prefer the nodes where they would be promoted: a
    /// positive promotion score is added to the instance's table on each available node.
    pub(super) fn add_promotion_preferences(&mut self) {
        for clone in 0..self.cl.rscs.len() {
            let Kind::Clone { promotable: true, unique } = self.cl.rscs[clone].kind else { continue };
            for inst in self.cl.instances(clone) {
                if !self.cl.rscs[inst].is_primitive() {
                    continue;
                }
                for n in 0..self.cl.nodes.len() {
                    if !self.cl.nodes[n].available() {
                        continue;
                    }
                    let Some(v) = self.promotion_attr(inst, n, unique) else { continue };
                    if v.0 > 0 {
                        if let Some(e) = self.base.get_mut(&inst).and_then(|t| t.get_mut(&n)) {
                            *e = e.add(v);
                        }
                    }
                }
            }
        }
    }

    /// The promotion attribute an instance's agent set on a node, under the name the
    /// instance ran as (anonymous instance numbers are not stable across runs). For an
    /// anonymous clone only the instance active on the node reads it there (any instance,
    /// when none is active); an instance that ran elsewhere but never on this node reads
    /// nothing there.
    fn promotion_attr(&self, p: RscId, n: NodeId, unique: bool) -> Option<Score> {
        let node = &self.cl.nodes[n];
        let r = &self.cl.rscs[p];
        let get = |name: &str| node.attrs.get(&format!("master-{name}")).and_then(|v| Score::parse(v));
        let mine = !unique && {
            let siblings: Vec<RscId> = match self.cl.clone_of(p) {
                Some(c) => self.cl.primitives_of(c).into_iter().filter(|&q| self.cl.rscs[q].base_id == r.base_id).collect(),
                None => vec![p],
            };
            let active: Vec<RscId> = siblings.into_iter().filter(|&q| self.cl.rscs[q].running_on.contains(&n)).collect();
            active.is_empty() || active.contains(&p)
        };
        if !mine {
            let seen = !r.running_on.is_empty() || !r.history.is_empty();
            if seen && !r.running_on.contains(&n) && !r.history.contains_key(&n) {
                return None;
            }
        }
        let active = |h: &&crate::unpack::NodeHistory| h.role > Role::Stopped;
        let known = r.history.get(&n).filter(active).or_else(|| r.history.values().find(active)).map(|h| h.lrm_id.as_str()).unwrap_or(r.id.as_str());
        get(known).or_else(|| if unique { None } else { get(&r.base_id) })
    }

    /// Score of one instance for promotion on its node: the agent's promotion attribute
    /// (`master-<id>`; -1 when unset), plus location constraints for the Promoted role.
    fn instance_promotion_score(&self, clone: RscId, inst: RscId, n: NodeId) -> Score {
        let node = &self.cl.nodes[n];
        let prims = self.cl.primitives_of(inst);
        let mut s = None;
        for &p in &prims {
            let unique = matches!(self.cl.rscs[clone].kind, Kind::Clone { unique: true, .. });
            let found = self.promotion_attr(p, n, unique);
            if let Some(v) = found {
                s = Some(s.map_or(v, |x: Score| x.add(v)));
            }
        }
        let mut score = s.unwrap_or(Score(-1));
        // A ticket the Promoted role depends on, if not granted, forbids promotion.
        for t in &self.cl.cib.config.constraints.tickets {
            let state = self.cl.cib.status.tickets.iter().find(|s| s.id == t.ticket);
            if state.is_some_and(|s| s.granted && !s.standby) {
                continue;
            }
            let promoted = |r: Option<&str>| crate::constraints::role_of(r) == Some(Role::Promoted);
            let mut names: Vec<&str> = Vec::new();
            if promoted(t.rsc_role.as_deref()) {
                names.extend(t.rsc.iter().map(String::as_str));
            }
            for set in &t.sets {
                if promoted(set.role.as_deref().or(t.rsc_role.as_deref())) {
                    names.extend(set.resources.iter().map(String::as_str));
                }
            }
            if names.is_empty() {
                continue;
            }
            // loss-policy=freeze keeps what is promoted now and promotes nothing new.
            let granted = state.is_some_and(|s| s.granted);
            let freeze = !granted && t.loss_policy.as_deref() == Some("freeze");
            let promoted_now = prims.iter().any(|&p| self.cl.rscs[p].role == Role::Promoted && self.cl.rscs[p].running_on == [n]);
            if names.iter().any(|x| self.cl.resolve_targets(x).contains(&clone)) && !(freeze && promoted_now) {
                score = Score::NEG_INF;
            }
        }
        let targets: BTreeSet<RscId> = std::iter::once(clone).chain(std::iter::once(inst)).chain(prims.iter().copied()).collect();
        for loc in &self.cl.cib.config.constraints.locations {
            let hits = self.cl.location_targets(loc).iter().any(|t| targets.contains(t) || self.cl.rscs[*t].base_id == self.cl.rscs[inst].base_id);
            if !hits {
                continue;
            }
            let loc_promoted = crate::constraints::role_of(loc.role.as_deref()) == Some(Role::Promoted);
            if let Some(nn) = &loc.node {
                if loc_promoted && nn == &node.name {
                    score = score.add(loc.score.as_deref().and_then(Score::parse).unwrap_or(Score::ZERO));
                }
                continue;
            }
            for rule in &loc.rules {
                let rule_promoted = loc_promoted || crate::constraints::role_of(rule.role.as_deref()) == Some(Role::Promoted);
                if !rule_promoted {
                    continue;
                }
                let ctx = RuleContext { node_attrs: Some(&node.attrs), now: Some(self.cl.now), ..Default::default() };
                if rules::evaluate(rule, &ctx) {
                    let v = match &rule.score_attribute {
                        Some(a) => node.attrs.get(a).and_then(|v| Score::parse(v)).unwrap_or(Score::ZERO),
                        None => rule.score.as_deref().and_then(Score::parse).unwrap_or(Score::ZERO),
                    };
                    score = score.add(v);
                }
            }
        }
        score
    }

    /// A primitive that stands for its group (the first member) or for itself.
    pub(super) fn is_lead(&self, p: RscId) -> bool {
        match self.cl.rscs[p].parent {
            Some(g) if self.cl.rscs[g].kind == Kind::Group => self.cl.rscs[g].children.first() == Some(&p),
            _ => true,
        }
    }

    /// A resource's node table once placed, as its dependents see it: -INFINITY everywhere
    /// when it is to be stopped.
    fn final_table(&self, p: Primary) -> BTreeMap<NodeId, Score> {
        match p {
            Primary::Prim(id) => {
                let r = &self.cl.rscs[id];
                if self.cl.to_be_stopped(id) {
                    r.allowed.keys().map(|&n| (n, Score::NEG_INF)).collect()
                } else {
                    r.allowed.clone()
                }
            }
            Primary::CloneSet(c) | Primary::CloneRole(c, _) => self.own.get(&c).cloned().unwrap_or_default(),
        }
    }

    /// Choose which placed instances of a promotable clone are promoted (SCHEDULER-NOTES 5,
    /// promotable section): per-instance scores, summed per node over the non-negative ones,
    /// best first, within promoted-max and promoted-node-max.
    pub(super) fn assign_promotion(&mut self, clone: RscId) {
        let meta = |k: &str, old: &str| {
            let m = &self.cl.rscs[clone].meta;
            m.get(k).or_else(|| m.get(old)).and_then(|v| v.parse::<usize>().ok()).unwrap_or(1)
        };
        let (max, node_max) = (meta("promoted-max", "master-max"), meta("promoted-node-max", "master-node-max"));
        for pc in self.promotion_colocs.clone() {
            if pc.clone == clone {
                self.allocate_primary(pc.primary);
            }
        }
        let placed: Vec<(RscId, NodeId)> = self
            .cl
            .instances(clone)
            .into_iter()
            .filter_map(|i| self.cl.lead_primitive(i).and_then(|lp| self.cl.rscs[lp].assigned).map(|n| (i, n)))
            .collect();
        let mut scores: BTreeMap<RscId, Score> = BTreeMap::new();
        for &(i, n) in &placed {
            let mut s = self.instance_promotion_score(clone, i, n);
            for pc in self.promotion_colocs.iter().filter(|pc| pc.clone == clone) {
                let pnodes = self.primary_nodes(pc.primary);
                // A primary that is not placed says nothing about promotion.
                if pnodes.is_empty() {
                    continue;
                }
                let want = self.node_attr(n, &pc.node_attribute);
                let matches = pnodes.iter().any(|&m| self.node_attr(m, &pc.node_attribute) == want);
                if matches {
                    s = s.add(pc.score);
                } else if pc.score.is_inf() {
                    s = Score::NEG_INF;
                }
            }
            scores.insert(i, s);
        }
        let mut per_node: BTreeMap<NodeId, Score> = BTreeMap::new();
        for &(i, n) in &placed {
            if scores[&i].0 >= 0 {
                let e = per_node.entry(n).or_insert(Score::ZERO);
                *e = e.add(scores[&i]);
            }
        }
        // Promoted-role colocations also fold the primary's node table into the per-node
        // sums, at the colocation's strength (a primary banned everywhere bans promotion).
        for pc in self.promotion_colocs.iter().filter(|pc| pc.clone == clone) {
            let ptable = self.final_table(pc.primary);
            let f = factor(pc.score);
            for (&n, total) in per_node.iter_mut() {
                let want = self.node_attr(n, &pc.node_attribute);
                let best = ptable.iter().filter(|(&m, _)| self.node_attr(m, &pc.node_attribute) == want).map(|(_, &v)| v).max();
                if let Some(best) = best {
                    if f < 0.0 && best.0 < 0 {
                        continue;
                    }
                    *total = total.add(scale(best, f));
                }
            }
        }
        // Resources that want to be with the promoted instance pull promotion their way: their
        // node tables fold in (positive pulls only count where they leave a usable node).
        let deps: Vec<PrimColoc> = self
            .colocs
            .iter()
            .filter(|c| c.primary == Primary::CloneRole(clone, Role::Promoted) && c.influence && self.is_lead(c.dependent))
            .cloned()
            .collect();
        for c in deps {
            let Some(dtable) = self.base.get(&c.dependent) else { continue };
            let f = factor(c.score);
            let before = per_node.clone();
            for (&n, total) in per_node.iter_mut() {
                let want = self.node_attr(n, &c.node_attribute);
                let best = dtable.iter().filter(|(&m, _)| self.cl.nodes[m].available() && self.node_attr(m, &c.node_attribute) == want).map(|(_, &v)| v).max();
                if let Some(best) = best {
                    if f < 0.0 && best.0 < 0 {
                        continue;
                    }
                    // A pull never turns a node negative: a node that was preferred keeps 1.
                    let sum = total.add(scale(best, f));
                    *total = if sum.0 < 0 && total.0 >= 0 { Score(total.0.min(1)) } else { sum };
                }
            }
            if !per_node.values().any(|s| s.0 >= 0) {
                per_node = before;
            }
        }
        let final_score = |i: RscId, n: NodeId| if scores[&i].0 >= 0 { per_node[&n] } else { scores[&i] };
        let currently_promoted = |i: RscId| self.cl.primitives_of(i).iter().any(|&p| self.cl.rscs[p].role == Role::Promoted);
        let mut order: Vec<(RscId, NodeId)> = placed.clone();
        order.sort_by(|a, b| final_score(b.0, b.1).cmp(&final_score(a.0, a.1)).then(currently_promoted(b.0).cmp(&currently_promoted(a.0))));
        let mut promoted = 0;
        let mut on_node: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut decided: Vec<(RscId, Role)> = Vec::new();
        for (i, n) in order {
            let ok = final_score(i, n).0 >= 0 && promoted < max && on_node.get(&n).copied().unwrap_or(0) < node_max;
            if ok {
                promoted += 1;
                *on_node.entry(n).or_default() += 1;
            }
            decided.push((i, if ok { Role::Promoted } else { Role::Unpromoted }));
        }
        for &(i, n) in &placed {
            self.cl.rscs[i].promotion_score = Some((Some(n), final_score(i, n)));
        }
        for (i, role) in decided {
            for p in self.cl.primitives_of(i) {
                let r = &mut self.cl.rscs[p];
                // Unmanaged instances keep whatever role they have.
                r.next_role = if !r.managed || r.unscheduled { r.role.max(Role::Unpromoted) } else { role };
            }
        }
    }
}
