//! Clones: placing the instances of a clone (SCHEDULER-NOTES 5, clones).

use std::collections::BTreeMap;

use super::{scale, Allocator, Primary};
use crate::constraints::factor;
use crate::score::Score;
use crate::unpack::{Kind, NodeId, RscId};

impl Allocator<'_, '_> {
    pub(super) fn allocate_clone(&mut self, clone: RscId) {
        if self.cl.rscs[clone].allocated || self.cl.rscs[clone].allocating {
            return;
        }
        self.cl.rscs[clone].allocating = true;
        self.fold_clone_dependents(clone);
        let mut insts: Vec<RscId> = self.cl.instances(clone).into_iter().filter(|&i| !self.cl.rscs[i].orphan).collect();
        // Instances running on a node that can keep them go first and stay put; then the
        // rest, so an instance on a lost node is the one left stopped (no reshuffling).
        let cl = &*self.cl;
        let home = |i: RscId| -> Option<NodeId> {
            let lp = cl.lead_primitive(i)?;
            let r = &cl.rscs[lp];
            let n = *r.running_on.first()?;
            let allowed = self.base.get(&lp).and_then(|t| t.get(&n)).is_some_and(|s| s.0 >= 0);
            (r.running_on.len() == 1 && cl.nodes[n].available() && allowed).then_some(n)
        };
        // Then instances that are stopped, and last those stranded on a node that can no
        // longer keep them: when there are fewer places than instances, they stay stopped.
        let stranded = |i: RscId| cl.lead_primitive(i).is_some_and(|p| cl.rscs[p].running_on.iter().any(|&n| !cl.nodes[n].online || cl.nodes[n].unclean));
        // Then an instance with stronger preferences goes first: its available nodes'
        // scores, best first, compared in turn.
        let prefs = |i: RscId| -> Vec<std::cmp::Reverse<Score>> {
            let mut v: Vec<Score> = cl
                .lead_primitive(i)
                .and_then(|p| self.base.get(&p))
                .map(|t| t.iter().filter(|(&n, _)| cl.nodes[n].available()).map(|(_, &s)| s).collect())
                .unwrap_or_default();
            v.sort_by(|a, b| b.cmp(a));
            v.into_iter().map(std::cmp::Reverse).collect()
        };
        // Failed instances come after healthy ones.
        let failed = |i: RscId| cl.primitives_of(i).iter().any(|&p| cl.rscs[p].failed);
        // Active instances on nodes the clone likes better (its own table, with what is
        // colocated with it) go first.
        let clone_table = self.own.get(&clone).cloned().unwrap_or_default();
        let at_home = |i: RscId| std::cmp::Reverse(home(i).and_then(|n| clone_table.get(&n).copied()).unwrap_or(Score::NEG_INF));
        insts.sort_by_key(|&i| (home(i).is_none(), stranded(i), failed(i), at_home(i), prefs(i)));
        // An instance keeps its node only within a fair share of the instances per node.
        let available = cl.nodes.iter().filter(|n| n.available()).count().max(1);
        let fair = insts.len().div_ceil(available);
        let mut kept: BTreeMap<NodeId, usize> = BTreeMap::new();
        for &i in &insts {
            if let (Some(n), Some(lp)) = (home(i), cl.lead_primitive(i)) {
                let k = kept.entry(n).or_default();
                if *k < fair {
                    *k += 1;
                    self.preferred.insert(lp, n);
                }
            }
        }
        let node_max: usize = self.cl.rscs[clone].meta.get("clone-node-max").and_then(|v| v.parse().ok()).unwrap_or(1);
        let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
        for i in insts {
            let Some(lp) = self.cl.lead_primitive(i) else { continue };
            // Nodes already at their instance limit are closed to this instance.
            let full: Vec<NodeId> = per_node.iter().filter(|(_, &c)| c >= node_max).map(|(&n, _)| n).collect();
            let members: Vec<RscId> = self.cl.primitives_of(i);
            // So are nodes that cannot run anything, and a ban on the clone holds for each
            // instance.
            let closed: Vec<NodeId> = (0..self.cl.nodes.len()).filter(|&n| !self.cl.nodes[n].available()).collect();
            let clone_bans: Vec<(NodeId, Score)> = self.own.get(&clone).map(|t| t.iter().filter(|(_, s)| s.0 < 0).map(|(&n, &s)| (n, s)).collect()).unwrap_or_default();
            let is_group = self.cl.rscs[i].kind == Kind::Group;
            let touched: Vec<RscId> = if is_group { self.cl.descendants(i) } else { members.clone() };
            for &m in &touched {
                let table = if self.cl.rscs[m].is_primitive() { self.base.get_mut(&m) } else { self.own.get_mut(&m) };
                if let Some(t) = table {
                    for &n in &full {
                        t.insert(n, Score::NEG_INF);
                    }
                    for &(n, b) in &clone_bans {
                        if let Some(e) = t.get_mut(&n) {
                            *e = e.add(b);
                        }
                    }
                    for &n in &closed {
                        if let Some(e) = t.get_mut(&n) {
                            *e = Score::NEG_INF;
                        }
                    }
                }
            }
            // A cloned group shows its tables as they are when it is placed.
            if is_group {
                for &m in &touched {
                    if let Some(t) = self.base.get(&m).or_else(|| self.own.get(&m)) {
                        self.assign_tables.insert(m, t.clone());
                    }
                }
            }
            for m in members {
                self.allocate_primitive(m);
            }
            if let Some(n) = self.cl.rscs[lp].assigned {
                *per_node.entry(n).or_default() += 1;
            }
        }
        if let Kind::Clone { promotable: true, .. } = self.cl.rscs[clone].kind {
            self.assign_promotion(clone);
        }
        self.cl.rscs[clone].allocating = false;
        self.cl.rscs[clone].allocated = true;
    }

    /// Before its instances are placed, a clone's own table takes in the preferences of
    /// what is colocated with it, scaled by the colocation; a pull never turns a node
    /// negative.
    fn fold_clone_dependents(&mut self, clone: RscId) {
        let Some(mut table) = self.own.get(&clone).cloned() else { return };
        let deps: Vec<_> = self
            .colocs
            .iter()
            .filter(|c| matches!(c.primary, Primary::CloneSet(p) | Primary::CloneRole(p, _) if p == clone) && c.influence && self.is_lead(c.dependent))
            .cloned()
            .collect();
        let mut seen_clones = Vec::new();
        for c in deps {
            let r = &self.cl.rscs[c.dependent];
            // Another clone counts once, with its own table.
            let dtable = match self.cl.clone_of(c.dependent) {
                Some(dc) if seen_clones.contains(&dc) => continue,
                Some(dc) => {
                    seen_clones.push(dc);
                    self.own.get(&dc).cloned().unwrap_or_default()
                }
                None if r.allocated => r.allowed.clone(),
                None => self.base.get(&c.dependent).cloned().unwrap_or_default(),
            };
            let f = factor(c.score);
            for (&n, total) in table.iter_mut() {
                let want = self.node_attr(n, &c.node_attribute);
                let best = dtable
                    .iter()
                    .filter(|(&m, _)| self.cl.nodes[m].available() && self.node_attr(m, &c.node_attribute) == want)
                    .map(|(_, &v)| v)
                    .max()
                    .unwrap_or(Score::NEG_INF);
                if f < 0.0 && best.0 < 0 {
                    continue;
                }
                let sum = total.add(scale(best, f));
                *total = if sum.0 < 0 && total.0 >= 0 { Score(total.0.min(1)) } else { sum };
            }
        }
        self.assign_tables.insert(clone, table.clone());
        self.own.insert(clone, table);
    }
}
