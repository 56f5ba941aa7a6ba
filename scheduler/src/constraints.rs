//! Stage 6: constraints resolved to resources of the unpacked cluster. Targets may
//! be resources, templates (every primitive using it), tags, or `rsc-pattern`s;
//! resource sets become the pairwise constraints they stand for.

use cib::{Colocation, Location, Order, ResourceSet};

use crate::score::{Score, INFINITY};
use crate::unpack::{Cluster, RscId};
use crate::Role;

#[derive(Debug, Clone)]
pub struct Coloc {
    pub id: String,
    pub dependent: RscId,
    pub primary: RscId,
    pub score: Score,
    pub node_attribute: String,
    pub dependent_role: Option<Role>,
    pub primary_role: Option<Role>,
    pub influence: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    Mandatory,
    Optional,
    Serialize,
}

#[derive(Debug, Clone)]
pub struct OrderC {
    pub id: String,
    pub first: RscId,
    pub first_action: String,
    pub then: RscId,
    pub then_action: String,
    pub kind: OrderKind,
    pub symmetrical: bool,
}

pub fn role_of(s: Option<&str>) -> Option<Role> {
    match s?.to_ascii_lowercase().as_str() {
        "started" => Some(Role::Started),
        "stopped" => Some(Role::Stopped),
        "promoted" | "master" => Some(Role::Promoted),
        "unpromoted" | "slave" => Some(Role::Unpromoted),
        _ => None,
    }
}

impl Cluster<'_> {
    /// Resources a constraint's id names: the resource itself, a template's users, a tag's members.
    pub fn resolve_targets(&self, id: &str) -> Vec<RscId> {
        if let Some(r) = self.rsc_by_id(id) {
            return vec![r];
        }
        if let Some(members) = self.cib.config.tags.get(id) {
            return members.iter().flat_map(|m| self.resolve_targets(m)).collect();
        }
        // A template: every configured primitive built from it (not clone instances).
        self.rscs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.prim.as_ref().is_some_and(|p| p.template.as_deref() == Some(id)) && r.id == r.base_id)
            .map(|(i, _)| i)
            .collect()
    }

    pub fn location_targets(&self, loc: &Location) -> Vec<RscId> {
        if let Some(r) = &loc.rsc {
            return self.resolve_targets(r);
        }
        if let Some(pat) = &loc.rsc_pattern {
            let Ok(re) = regex::Regex::new(pat) else { return vec![] };
            return self.top_level_ids().into_iter().filter(|&i| re.is_match(&self.rscs[i].id)).collect();
        }
        loc.sets.iter().flat_map(|s| s.resources.iter().flat_map(|r| self.resolve_targets(r))).collect()
    }

    fn top_level_ids(&self) -> Vec<RscId> {
        let mut v: Vec<RscId> = (0..self.rscs.len()).filter(|&i| !self.is_clone_instance_part(i)).collect();
        v.sort();
        v
    }

    pub fn is_clone_instance_part(&self, id: RscId) -> bool {
        let mut cur = self.rscs[id].parent;
        while let Some(p) = cur {
            if matches!(self.rscs[p].kind, crate::unpack::Kind::Clone { .. }) {
                return true;
            }
            cur = self.rscs[p].parent;
        }
        false
    }

    pub fn colocations(&self) -> Vec<Coloc> {
        let mut out = Vec::new();
        for c in &self.cib.config.constraints.colocations {
            self.unpack_colocation(c, &mut out);
        }
        out
    }

    fn unpack_colocation(&self, c: &Colocation, out: &mut Vec<Coloc>) {
        let score = c.score.as_deref().and_then(Score::parse).unwrap_or(Score::ZERO);
        let node_attribute = c.node_attribute.clone().unwrap_or_else(|| "#uname".into());
        let influence = c.influence.as_deref().map(cib::is_true).unwrap_or(true);
        let mk = |d: RscId, p: RscId, dr: Option<&str>, pr: Option<&str>, s: Score| Coloc {
            id: c.id.clone(),
            dependent: d,
            primary: p,
            score: s,
            node_attribute: node_attribute.clone(),
            dependent_role: role_of(dr),
            primary_role: role_of(pr),
            influence,
        };
        if let (Some(d), Some(p)) = (&c.rsc, &c.with_rsc) {
            for dd in self.resolve_targets(d) {
                for pp in self.resolve_targets(p) {
                    out.push(mk(dd, pp, c.rsc_role.as_deref(), c.with_rsc_role.as_deref(), score));
                }
            }
            return;
        }
        // Sets: within a sequential set each member is with the previous one; between sets,
        // every member of a later set is with the members of the earlier set.
        let sets: Vec<(&ResourceSet, Vec<RscId>)> =
            c.sets.iter().map(|s| (s, s.resources.iter().flat_map(|r| self.resolve_targets(r)).collect())).collect();
        for (set, members) in &sets {
            let s = set.score.as_deref().and_then(Score::parse).unwrap_or(score);
            if set.sequential.as_deref().map(cib::is_true).unwrap_or(true) {
                for w in members.windows(2) {
                    out.push(mk(w[1], w[0], set.role.as_deref(), set.role.as_deref(), s));
                }
            }
        }
        for i in 1..sets.len() {
            // Between sets, the earlier set depends on the later one: its first member (or
            // every member, if not sequential) with the later set's last (or every) member.
            let (prev_set, prev) = &sets[i - 1];
            let (set, cur) = &sets[i];
            let sequential = |s: &ResourceSet| s.sequential.as_deref().map(cib::is_true).unwrap_or(true);
            let dependents: Vec<RscId> = if sequential(prev_set) { prev.first().copied().into_iter().collect() } else { prev.clone() };
            let primaries: Vec<RscId> = if sequential(set) { cur.last().copied().into_iter().collect() } else { cur.clone() };
            for &d in &dependents {
                for &p in &primaries {
                    out.push(mk(d, p, prev_set.role.as_deref(), set.role.as_deref(), score));
                }
            }
        }
    }

    pub fn orders(&self) -> Vec<OrderC> {
        let mut out = Vec::new();
        for o in &self.cib.config.constraints.orders {
            self.unpack_order(o, &mut out);
        }
        out
    }

    fn unpack_order(&self, o: &Order, out: &mut Vec<OrderC>) {
        let kind = match o.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("optional") => OrderKind::Optional,
            Some("serialize") => OrderKind::Serialize,
            Some(_) => OrderKind::Mandatory,
            None => match o.score.as_deref().and_then(Score::parse) {
                Some(s) if s.0 == 0 => OrderKind::Optional,
                _ => OrderKind::Mandatory,
            },
        };
        let symmetrical = o.symmetrical.as_deref().map(cib::is_true).unwrap_or(kind != OrderKind::Serialize);
        let mut push = |first: RscId, fa: &str, then: RscId, ta: &str| {
            out.push(OrderC { id: o.id.clone(), first, first_action: fa.to_string(), then, then_action: ta.to_string(), kind, symmetrical });
            if symmetrical && kind != OrderKind::Serialize {
                if let (Some(rfa), Some(rta)) = (reverse_action(ta), reverse_action(fa)) {
                    out.push(OrderC { id: o.id.clone(), first: then, first_action: rfa.into(), then: first, then_action: rta.into(), kind, symmetrical });
                }
            }
        };
        if let (Some(f), Some(t)) = (&o.first, &o.then) {
            let fa = o.first_action.clone().unwrap_or_else(|| "start".into());
            let ta = o.then_action.clone().unwrap_or_else(|| fa.clone());
            for ff in self.resolve_targets(f) {
                for tt in self.resolve_targets(t) {
                    push(ff, &fa, tt, &ta);
                }
            }
            return;
        }
        let sets: Vec<(&ResourceSet, Vec<RscId>)> =
            o.sets.iter().map(|s| (s, s.resources.iter().flat_map(|r| self.resolve_targets(r)).collect())).collect();
        for (set, members) in &sets {
            let a = set.action.clone().unwrap_or_else(|| "start".into());
            if set.sequential.as_deref().map(cib::is_true).unwrap_or(true) {
                for w in members.windows(2) {
                    push(w[0], &a, w[1], &a);
                }
            }
        }
        for i in 1..sets.len() {
            let (ps, prev) = &sets[i - 1];
            let (cs, cur) = &sets[i];
            let pa = ps.action.clone().unwrap_or_else(|| "start".into());
            let ca = cs.action.clone().unwrap_or_else(|| "start".into());
            let firsts: Vec<RscId> = if ps.sequential.as_deref().map(cib::is_true).unwrap_or(true) { prev.last().copied().into_iter().collect() } else { prev.clone() };
            let thens: Vec<RscId> = if cs.sequential.as_deref().map(cib::is_true).unwrap_or(true) { cur.first().copied().into_iter().collect() } else { cur.clone() };
            for &f in &firsts {
                for &t in &thens {
                    push(f, &pa, t, &ca);
                }
            }
        }
    }
}

pub fn reverse_action(a: &str) -> Option<&'static str> {
    Some(match a {
        "start" => "stop",
        "stop" => "start",
        "promote" => "demote",
        "demote" => "promote",
        "promoted" => "demoted",
        "demoted" => "promoted",
        "running" => "stopped",
        "stopped" => "running",
        _ => return None,
    })
}

/// Colocation factor of a score, as a fraction of INFINITY.
pub fn factor(score: Score) -> f64 {
    score.0 as f64 / INFINITY as f64
}
