//! Stage 13: the Transition Summary (one line per resource that changes), the
//! executed-action lines in a topological order, and the state after the transition.

use std::collections::{BTreeMap, BTreeSet};

use crate::actions::{ActionId, Plan};
use crate::display::StateView;
use crate::unpack::{Cluster, Kind, RscId};
use crate::Role;

fn fmt_line(word: &str, rsc: &str, details: &str, reason: Option<&str>) -> String {
    let mut s = format!("  * {word:<8}   {rsc}   ( {details} )");
    if let Some(r) = reason {
        s.push_str("  ");
        s.push_str(r);
    }
    s
}

fn reason_text(reason: Option<&String>, runnable: bool) -> Option<String> {
    match (reason, runnable) {
        (Some(r), true) => Some(r.clone()),
        (Some(r), false) => Some(format!("{r} (blocked)")),
        (None, false) => Some("blocked".into()),
        (None, true) => None,
    }
}

/// The reason shown on a Stop line: what blocks it, what prevents the start elsewhere, or
/// that the resource has nowhere to run.
fn stop_reason(stop: &crate::actions::Action, start: &crate::actions::Action) -> Option<String> {
    if !stop.runnable {
        blocked_stop_reason(stop, start)
    } else if start.node.is_some() {
        reason_text(start.reason.as_ref(), true)
    } else {
        Some(stop.reason.clone().unwrap_or_else(|| "due to node availability".into()))
    }
}

/// Why a stop that cannot run is shown: a resource with nowhere to go stops "due to node
/// availability"; one that wanted to move names what blocks it; no cause at all is "blocked".
fn blocked_stop_reason(stop: &crate::actions::Action, start: &crate::actions::Action) -> Option<String> {
    match (&stop.reason, start.node) {
        (None, _) => Some("blocked".into()),
        (Some(r), None) if r.starts_with("due to unrunnable") => Some("due to node availability (blocked)".into()),
        (Some(r), None) => Some(format!("{r} (blocked)")),
        (Some(r), Some(_)) => Some(format!("{r} (blocked)")),
    }
}

/// Primitives in print order (resource list order, recursing into groups and clones).
pub fn print_order(cl: &Cluster) -> Vec<RscId> {
    fn walk(cl: &Cluster, id: RscId, out: &mut Vec<RscId>) {
        if cl.rscs[id].is_primitive() {
            out.push(id);
        }
        for &c in &cl.rscs[id].children {
            walk(cl, c, out);
        }
    }
    let mut out = Vec::new();
    for &t in &cl.top {
        walk(cl, t, &mut out);
    }
    out
}

pub fn transition_summary(cl: &Cluster, p: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for &n in &p.fenced {
        for a in &p.actions {
            if a.task == "stonith" && a.node == Some(n) {
                let (action, reason) = a.fence.clone().unwrap_or_default();
                lines.push(format!("  * Fence ({action}) {} '{reason}'", cl.nodes[n].name));
            }
        }
    }
    for id in print_order(cl) {
        lines.extend(resource_lines(cl, p, id));
    }
    lines
}

fn resource_lines(cl: &Cluster, p: &Plan, id: RscId) -> Vec<String> {
    let r = &cl.rscs[id];
    let Some(ra) = p.per_rsc.get(&id) else { return vec![] };
    if ra.frozen {
        return vec![];
    }
    let Some(start_id) = ra.start else { return vec![] };
    let start = &p.actions[start_id];
    let name = &r.id;
    let node_name = |n: usize| cl.nodes[n].name.clone();
    let stops: Vec<&crate::actions::Action> = ra.stops.iter().map(|&s| &p.actions[s]).collect();
    if cl.clone_of(id).is_some_and(|c| matches!(cl.rscs[c].kind, Kind::Clone { promotable: true, .. })) && r.running_on.len() <= 1 {
        return promotable_lines(cl, p, id);
    }
    let mut out = Vec::new();
    match r.running_on.len() {
        0 => {
            if !start.optional {
                if let Some(n) = start.node {
                    out.push(fmt_line("Start", name, &node_name(n), reason_text(start.reason.as_ref(), start.runnable).as_deref()));
                }
            }
        }
        1 => {
            let c = r.running_on[0];
            let stop = stops.first();
            let stop_required = stop.is_some_and(|s| !s.optional);
            let failed = r.failed_on(c);
            match start.node {
                Some(n) if n == c && start.runnable => {
                    if stop_required {
                        let word = if failed { "Recover" } else { "Restart" };
                        let reason = if failed { None } else { start.reason.clone().or_else(|| stop.and_then(|s| s.reason.clone())) };
                        out.push(fmt_line(word, name, &node_name(c), reason.as_deref()));
                    }
                }
                Some(n) if start.runnable && !start.optional => {
                    let word = if failed {
                        "Recover"
                    } else if p.migrations.contains_key(&id) {
                        "Migrate"
                    } else {
                        "Move"
                    };
                    let reason = if failed { None } else { start.reason.clone() };
                    out.push(fmt_line(word, name, &format!("{} -> {}", node_name(c), node_name(n)), reason.as_deref()));
                }
                _ => {
                    if stop_required || start.node.is_none() {
                        let s = stop.unwrap();
                        out.push(fmt_line("Stop", name, &node_name(c), stop_reason(s, start).as_deref()));
                    }
                }
            }
        }
        _ => {
            // Multiply active: stopped everywhere, started on the chosen node.
            if let Some(n) = start.node.filter(|_| start.runnable) {
                let failed = r.running_on.iter().any(|&c| r.failed_on(c));
                let reason = (r.meta.get("multiple-active").map(String::as_str) == Some("stop_unexpected")).then_some("due to being multiply active");
                if r.running_on.contains(&n) {
                    out.push(fmt_line(if failed { "Recover" } else { "Restart" }, name, &node_name(n), reason));
                } else {
                    let word = if failed { "Recover" } else { "Move" };
                    out.push(fmt_line(word, name, &format!("{} -> {}", node_name(r.running_on[0]), node_name(n)), reason));
                }
            } else {
                for (i, &c) in r.running_on.iter().enumerate() {
                    let s = stops.get(i);
                    let runnable = s.is_none_or(|s| s.runnable);
                    out.push(fmt_line("Stop", name, &node_name(c), reason_text(Some(&"due to node availability".to_string()), runnable).as_deref()));
                }
            }
        }
    }
    out
}

fn role_word(r: Role) -> &'static str {
    if r == Role::Promoted { "Promoted" } else { "Unpromoted" }
}

/// Summary lines of one instance of a promotable clone: role changes name both roles.
fn promotable_lines(cl: &Cluster, p: &Plan, id: RscId) -> Vec<String> {
    let r = &cl.rscs[id];
    let ra = &p.per_rsc[&id];
    let Some(start_id) = ra.start else { return vec![] };
    let start = &p.actions[start_id];
    let name = &r.id;
    let node_name = |n: usize| cl.nodes[n].name.clone();
    let promote = ra.promote.map(|a| &p.actions[a]);
    let demote = ra.demote.map(|a| &p.actions[a]);
    let mut out = Vec::new();
    let Some(&c) = r.running_on.first() else {
        if let (false, Some(n)) = (start.optional, start.node) {
            let reason = reason_text(start.reason.as_ref(), start.runnable);
            if promote.is_some() {
                out.push(fmt_line("Promote", name, &format!("Stopped -> Promoted {}", node_name(n)), reason.as_deref()));
            } else {
                out.push(fmt_line("Start", name, &node_name(n), reason.as_deref()));
            }
        }
        return out;
    };
    let cur = role_word(r.role);
    let stop = ra.stops.first().map(|&s| &p.actions[s]).filter(|s| !s.optional);
    let failed = r.failed_on(c);
    match (stop, start.node) {
        (Some(_), Some(n)) if n == c && start.runnable => {
            let word = if failed { "Recover" } else if r.role == Role::Promoted && r.next_role == Role::Promoted { "Re-promote" } else { "Restart" };
            let reason = if failed { None } else { start.reason.clone() };
            out.push(fmt_line(word, name, &format!("{cur} {}", node_name(c)), reason.as_deref()));
        }
        (Some(_), Some(n)) if start.runnable && !start.optional => {
            let word = if failed { "Recover" } else { "Move" };
            out.push(fmt_line(word, name, &format!("{} -> {} {}", node_name(c), node_name(n), role_word(r.next_role)), start.reason.as_deref()));
        }
        (Some(s), _) => {
            out.push(fmt_line("Stop", name, &format!("{cur} {}", node_name(c)), stop_reason(s, start).as_deref()));
        }
        (None, _) => {
            if let Some(a) = promote {
                out.push(fmt_line("Promote", name, &format!("Unpromoted -> Promoted {}", node_name(c)), reason_text(a.reason.as_ref(), a.runnable).as_deref()));
            } else if let Some(a) = demote {
                out.push(fmt_line("Demote", name, &format!("Promoted -> Unpromoted {}", node_name(c)), reason_text(a.reason.as_ref(), a.runnable).as_deref()));
            }
        }
    }
    out
}

/// Non-optional actions in an order consistent with the orderings (ties by creation order).
pub fn executed(p: &Plan) -> Vec<ActionId> {
    let live: Vec<ActionId> = (0..p.actions.len()).filter(|&i| !p.actions[i].optional && p.actions[i].runnable).collect();
    let live_set: BTreeSet<ActionId> = live.iter().copied().collect();
    let mut indeg: BTreeMap<ActionId, usize> = live.iter().map(|&i| (i, 0)).collect();
    let mut succ: BTreeMap<ActionId, Vec<ActionId>> = BTreeMap::new();
    for o in &p.orderings {
        if live_set.contains(&o.first) && live_set.contains(&o.then) && o.first != o.then {
            *indeg.get_mut(&o.then).unwrap() += 1;
            succ.entry(o.first).or_default().push(o.then);
        }
    }
    let mut ready: BTreeSet<ActionId> = indeg.iter().filter(|(_, &d)| d == 0).map(|(&i, _)| i).collect();
    let mut out = Vec::new();
    while let Some(&i) = ready.iter().next() {
        ready.remove(&i);
        out.push(i);
        for &t in succ.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            let d = indeg.get_mut(&t).unwrap();
            *d -= 1;
            if *d == 0 {
                ready.insert(t);
            }
        }
    }
    // Cycles (a bug or a looping configuration): print what is left in creation order.
    for i in live {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

pub fn action_line(cl: &Cluster, p: &Plan, id: ActionId) -> String {
    let a = &p.actions[id];
    let node = a.node.map(|n| cl.nodes[n].name.clone()).unwrap_or_default();
    match a.task.as_str() {
        "stonith" => format!("  * Fencing {} ({})", node, a.fence.as_ref().map(|f| f.0.as_str()).unwrap_or("reboot")),
        "do_shutdown" => format!("  * Cluster action:  do_shutdown on {node}"),
        "clear_failcount" => format!("  * Cluster action:  clear_failcount for {} on {node}", a.rsc.map(|r| cl.rscs[r].id.as_str()).unwrap_or("")),
        _ if a.pseudo => format!("  * Pseudo action:   {}", p.key(cl, id)),
        _ => {
            let rsc = a.rsc.map(|r| cl.rscs[r].id.as_str()).unwrap_or("");
            let task = match (a.task.as_str(), a.interval_ms) {
                ("monitor", 0) => "monitor".to_string(),
                (t, 0) => t.to_string(),
                (t, iv) => format!("{t}={iv}"),
            };
            format!("  * Resource action: {rsc:<15} {task} on {node}")
        }
    }
}

/// The state after every executed action succeeded.
pub fn revised(cl: &Cluster, p: &Plan, executed: &[ActionId]) -> StateView {
    let mut v = StateView::current(cl);
    v.pending.clear();
    let done: BTreeSet<ActionId> = executed.iter().copied().collect();
    for &n in &p.fenced {
        v.offline.insert(n);
    }
    for (&id, ra) in &p.per_rsc {
        if !cl.rscs[id].is_primitive() {
            continue;
        }
        let mut nodes = v.active.get(&id).cloned().unwrap_or_default();
        for &s in &ra.stops {
            if done.contains(&s) {
                let n = p.actions[s].node;
                nodes.retain(|&x| Some(x) != n);
            }
        }
        let mut recovered = false;
        if let Some(s) = ra.start {
            if done.contains(&s) {
                if let Some(n) = p.actions[s].node {
                    if !nodes.contains(&n) {
                        nodes.push(n);
                    }
                    recovered = true;
                    let role = if cl.rscs[id].next_role > Role::Started { cl.rscs[id].next_role } else { Role::Started };
                    v.role.insert(id, role);
                }
            }
        }
        if let Some(a) = ra.promote.filter(|a| done.contains(a)) {
            let _ = a;
            v.role.insert(id, Role::Promoted);
        }
        if ra.demote.is_some_and(|a| done.contains(&a)) && ra.promote.is_none_or(|a| !done.contains(&a)) {
            v.role.insert(id, if nodes.is_empty() { Role::Stopped } else { Role::Unpromoted });
        }
        if recovered || nodes.is_empty() {
            v.failed.remove(&id);
        }
        if nodes.is_empty() {
            v.role.insert(id, Role::Stopped);
        }
        v.active.insert(id, nodes);
    }
    // Resources on fenced nodes are gone.
    for nodes in v.active.values_mut() {
        nodes.retain(|n| !p.fenced.contains(n));
    }
    let _ = Kind::Primitive;
    v
}
