//! The crm_mon-style status block ("Node List" and "Full List of Resources"), for the
//! current state and for the state after a transition ran. `halo status` reuses it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::unpack::{Cluster, Kind, NodeId, RscId};
use crate::Role;

/// The state to print: per primitive, where it is active and how.
#[derive(Debug, Clone, Default)]
pub struct StateView {
    pub active: BTreeMap<RscId, Vec<NodeId>>,
    pub role: BTreeMap<RscId, Role>,
    pub failed: BTreeSet<RscId>,
    pub pending: BTreeSet<RscId>,
    pub offline: BTreeSet<NodeId>,
    pub clean: BTreeSet<NodeId>,
}

impl StateView {
    pub fn current(cl: &Cluster) -> StateView {
        let mut v = StateView::default();
        for (id, r) in cl.rscs.iter().enumerate() {
            if !r.is_primitive() {
                continue;
            }
            v.active.insert(id, r.running_on.clone());
            v.role.insert(id, r.role);
            if r.failed {
                v.failed.insert(id);
            }
            if r.history.values().any(|h| h.pending_task.as_deref() == Some("start")) && r.running_on.len() == 1 {
                v.pending.insert(id);
            }
        }
        v
    }
}

/// Case-insensitive natural order: digit runs compare as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ny = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let tx = dx.iter().skip_while(|&&c| c == b'0').count();
                let ty = dy.iter().skip_while(|&&c| c == b'0').count();
                let o = tx.cmp(&ty).then_with(|| dx[nx - tx..].cmp(&dy[ny - ty..]));
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                let o = c.to_ascii_lowercase().cmp(&d.to_ascii_lowercase());
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

pub fn render(cl: &Cluster, v: &StateView, out: &mut String) {
    out.push_str("  * Node List:\n");
    render_nodes(cl, v, out);
    out.push_str("\n  * Full List of Resources:\n");
    for &t in &cl.top {
        render_rsc(cl, v, t, 4, out);
    }
}

fn render_nodes(cl: &Cluster, v: &StateView, out: &mut String) {
    let mut order: Vec<NodeId> = (0..cl.nodes.len()).collect();
    order.sort_by(|&a, &b| natural_cmp(&cl.nodes[a].name, &cl.nodes[b].name));
    let mut online = Vec::new();
    let mut offline = Vec::new();
    let mut remote_online = Vec::new();
    let mut remote_offline = Vec::new();
    let mut guest_online = Vec::new();
    let hosts_active = |n: NodeId| v.active.values().any(|nodes| nodes.contains(&n));
    for n in order {
        let node = &cl.nodes[n];
        let is_online = node.online && !v.offline.contains(&n);
        let unclean = node.unclean && !v.clean.contains(&n) && !v.offline.contains(&n);
        let name = &node.name;
        if unclean {
            let how = if node.online { "online" } else { "offline" };
            out.push_str(&format!("    * Node {name}: UNCLEAN ({how})\n"));
        } else if !is_online {
            if node.standby && !node.remote {
                out.push_str(&format!("    * Node {name}: OFFLINE (standby)\n"));
            } else if node.guest {
                // Guests are listed only while up.
            } else if node.remote {
                remote_offline.push(name.clone());
            } else {
                offline.push(name.clone());
            }
        } else if node.pending {
            out.push_str(&format!("    * Node {name}: pending\n"));
        } else if node.standby {
            if hosts_active(n) {
                out.push_str(&format!("    * Node {name}: standby (with active resources)\n"));
            } else {
                out.push_str(&format!("    * Node {name}: standby\n"));
            }
        } else if node.maintenance && !cl.options.maintenance_mode {
            out.push_str(&format!("    * Node {name}: maintenance\n"));
        } else if node.guest {
            guest_online.push(name.clone());
        } else if node.remote {
            remote_online.push(name.clone());
        } else {
            online.push(name.clone());
        }
    }
    for (label, list) in [("Online", online), ("OFFLINE", offline), ("RemoteOnline", remote_online), ("RemoteOFFLINE", remote_offline), ("GuestOnline", guest_online)] {
        if !list.is_empty() {
            out.push_str(&format!("    * {label}: [ {} ]\n", list.join(" ")));
        }
    }
}

fn role_word(r: Role) -> &'static str {
    match r {
        Role::Promoted => "Promoted",
        Role::Unpromoted => "Unpromoted",
        Role::Stopped | Role::Unknown => "Stopped",
        Role::Started => "Started",
    }
}

fn disabled(cl: &Cluster, id: RscId) -> bool {
    let mut cur = Some(id);
    while let Some(c) = cur {
        if cl.rscs[c].target_role == Some(Role::Stopped) {
            return true;
        }
        cur = cl.rscs[c].parent;
    }
    false
}

fn primitive_state(cl: &Cluster, v: &StateView, id: RscId, anonymous: bool) -> String {
    let r = &cl.rscs[id];
    let p = r.prim.as_ref();
    let spec = p.map(|p| p.agent_spec()).unwrap_or_default();
    let name = if anonymous { &r.base_id } else { &r.id };
    let nodes = v.active.get(&id).cloned().unwrap_or_default();
    let role = v.role.get(&id).copied().unwrap_or(Role::Stopped);
    let failed = v.failed.contains(&id);
    let mut state = String::new();
    if r.orphan {
        state.push_str("ORPHANED ");
    }
    let mut flags: Vec<&str> = Vec::new();
    let blocked = r.history.values().any(|h| h.failed && h.on_fail == Some(crate::unpack::OnFail::Block));
    if nodes.is_empty() {
        state.push_str("Stopped");
        // Shown once recorded: a lock taken by this transition's stop is not yet one.
        if let Some((n, _)) = r.lock.filter(|_| r.running_on.is_empty()) {
            state.push(' ');
            state.push_str(&cl.nodes[n].name);
            flags.push("LOCKED");
        }
        if r.history.values().any(|h| h.not_installed) {
            flags.push("not installed");
        }
    } else {
        let word = if failed {
            if role == Role::Promoted { "FAILED Promoted" } else { "FAILED" }
        } else if v.pending.contains(&id) {
            "Starting"
        } else if matches!(cl.clone_of(id).map(|c| cl.rscs[c].kind), Some(Kind::Clone { promotable: true, .. })) && role == Role::Started {
            "Unpromoted"
        } else {
            role_word(role)
        };
        state.push_str(word);
        if nodes.len() == 1 {
            state.push(' ');
            state.push_str(&cl.nodes[nodes[0]].name);
            let n = &cl.nodes[nodes[0]];
            if n.unclean && !n.online && !v.offline.contains(&nodes[0]) {
                flags.push("UNCLEAN");
            }
        }
        if r.history.values().any(|h| h.failure_ignored) {
            flags.push("failure ignored");
        }
    }
    if disabled(cl, id) {
        flags.push("disabled");
    }
    if blocked {
        flags.push("blocked");
    } else if !r.managed {
        flags.push("unmanaged");
    }
    if !flags.is_empty() {
        state.push_str(&format!(" ({})", flags.join(", ")));
    }
    if nodes.len() > 1 {
        let names: Vec<&str> = nodes.iter().map(|&n| cl.nodes[n].name.as_str()).collect();
        state.push_str(&format!(" [ {} ]", names.join(" ")));
    }
    format!("{name}\t({spec}):\t {state}")
}

/// "D of N resource instances DISABLED and B BLOCKED from further action due to failure",
/// printed above the status when anything is disabled or blocked.
pub fn disabled_blocked_line(cl: &Cluster) -> Option<String> {
    let prims: Vec<RscId> = (0..cl.rscs.len()).filter(|&i| cl.rscs[i].is_primitive() && !cl.rscs[i].hidden && !cl.rscs[i].orphan).collect();
    let disabled_n = prims.iter().filter(|&&i| disabled(cl, i)).count();
    let blocked_n = prims
        .iter()
        .filter(|&&i| cl.rscs[i].history.values().any(|h| h.failed && h.on_fail == Some(crate::unpack::OnFail::Block)))
        .count();
    (disabled_n > 0 || blocked_n > 0)
        .then(|| format!("{disabled_n} of {} resource instances DISABLED and {blocked_n} BLOCKED from further action due to failure", prims.len()))
}

fn indent(n: usize) -> String {
    " ".repeat(n)
}

fn render_rsc(cl: &Cluster, v: &StateView, id: RscId, depth: usize, out: &mut String) {
    let r = &cl.rscs[id];
    match r.kind {
        Kind::Primitive => {
            // Orphans are shown only while something of them is active.
            if r.hidden || (r.orphan && v.active.get(&id).is_none_or(|a| a.is_empty())) {
                return;
            }
            out.push_str(&format!("{}* {}\n", indent(depth), primitive_state(cl, v, id, false)));
        }
        Kind::Group => {
            let mut flags = Vec::new();
            if !r.managed {
                flags.push("unmanaged");
            }
            if r.target_role == Some(Role::Stopped) {
                flags.push("disabled");
            }
            let f = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
            out.push_str(&format!("{}* Resource Group: {}{}:\n", indent(depth), r.id, f));
            for &m in &r.children {
                render_rsc(cl, v, m, depth + 2, out);
            }
        }
        Kind::Clone { promotable, unique } => render_clone(cl, v, id, promotable, unique, depth, out),
        Kind::Bundle => render_bundle(cl, v, id, depth, out),
    }
}

fn render_bundle(cl: &Cluster, v: &StateView, id: RscId, depth: usize, out: &mut String) {
    let r = &cl.rscs[id];
    let Some(cib::Resource::Bundle(b)) = cl.cib.config.resources.iter().find(|x| x.id() == r.id) else { return };
    let spec = crate::unpack::BundleSpec::of(b);
    let set = if spec.replicas > 1 { " set" } else { "" };
    let mut flags = Vec::new();
    if !cl.rscs[id].meta.get("is-managed").is_none_or(|v| cib::is_true(v)) {
        flags.push("unmanaged");
    }
    if r.target_role == Some(Role::Stopped) {
        flags.push("disabled");
    }
    let f = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
    out.push_str(&format!("{}* Container bundle{set}: {} [{}]{f}:\n", indent(depth), r.id, spec.image));
    let pad = indent(depth + 2);
    for i in 0..spec.replicas {
        let Some(container) = cl.rsc_by_id(&spec.container_id(&r.id, i)) else { continue };
        let inner = b.primitive.as_ref().and_then(|p| cl.rsc_by_id(&format!("{}:{i}", p.id)));
        let Some(inner) = inner else {
            out.push_str(&format!("{pad}* {}\n", primitive_state(cl, v, container, false)));
            continue;
        };
        let mut name = format!("{}-{i}", r.id);
        if let Some(ip) = spec.ip(i) {
            name.push_str(&format!(" ({ip})"));
        }
        let spec_str = cl.rscs[inner].prim.as_ref().map(|p| p.agent_spec()).unwrap_or_default();
        let host = v.active.get(&container).and_then(|n| n.first().copied());
        let inner_active = v.active.get(&inner).is_some_and(|n| !n.is_empty());
        let role = v.role.get(&inner).copied().unwrap_or(Role::Stopped);
        let mut state = if !inner_active {
            "Stopped".to_string()
        } else if v.failed.contains(&inner) {
            if role == Role::Promoted { "FAILED Promoted".into() } else { "FAILED".into() }
        } else if role == Role::Started && promotable_bundle(b) {
            "Unpromoted".to_string()
        } else {
            role_word(role).to_string()
        };
        if let Some(h) = host {
            state.push(' ');
            state.push_str(&cl.nodes[h].name);
        }
        let mut rflags = Vec::new();
        if host.is_some_and(|h| cl.nodes[h].unclean && !v.offline.contains(&h)) {
            rflags.push("UNCLEAN");
        }
        if !flags.is_empty() && flags.contains(&"unmanaged") {
            rflags.push("unmanaged");
        }
        if !rflags.is_empty() {
            state.push_str(&format!(" ({})", rflags.join(", ")));
        }
        out.push_str(&format!("{pad}* {name}\t({spec_str}):\t {state}\n"));
    }
}

fn promotable_bundle(b: &cib::Bundle) -> bool {
    b.raw
        .elements()
        .filter(|e| matches!(e.name.as_str(), "docker" | "podman" | "rkt"))
        .any(|e| e.attr("promoted-max").or_else(|| e.attr("masters")).and_then(|v| v.parse::<u32>().ok()).is_some_and(|m| m > 0))
}

fn render_clone(cl: &Cluster, v: &StateView, id: RscId, promotable: bool, unique: bool, depth: usize, out: &mut String) {
    let r = &cl.rscs[id];
    let child_base = r.children.first().map(|&c| cl.rscs[c].base_id.clone()).unwrap_or_default();
    let mut flags = Vec::new();
    if promotable {
        flags.push("promotable");
    }
    if unique {
        flags.push("unique");
    }
    if !r.managed {
        flags.push("unmanaged");
    }
    if r.target_role == Some(Role::Stopped) {
        flags.push("disabled");
    }
    let f = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
    out.push_str(&format!("{}* Clone Set: {} [{}]{}:\n", indent(depth), r.id, child_base, f));
    let pad = indent(depth + 2);
    if unique {
        for &i in &r.children {
            render_rsc(cl, v, i, depth + 2, out);
        }
        return;
    }
    // Anonymous: plain active instances are grouped by role, the rest printed one by one.
    let mut by_role: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    let mut active_nodes: BTreeSet<NodeId> = BTreeSet::new();
    for &i in &r.children {
        let prims = cl.primitives_of(i);
        let nodes: BTreeSet<NodeId> = prims.iter().flat_map(|p| v.active.get(p).cloned().unwrap_or_default()).collect();
        if nodes.is_empty() {
            continue;
        }
        active_nodes.extend(nodes.iter().copied());
        let plain = nodes.len() == 1
            && prims.iter().all(|p| {
                let a = v.active.get(p).map(Vec::len).unwrap_or(0);
                a == 1 && !v.failed.contains(p) && !v.pending.contains(p) && cl.rscs[*p].managed && !cl.rscs[*p].orphan
            })
            && nodes.iter().all(|&n| !(cl.nodes[n].unclean && !cl.nodes[n].online && !v.offline.contains(&n)));
        if plain {
            let role = prims.iter().map(|p| v.role.get(p).copied().unwrap_or(Role::Stopped)).max().unwrap_or(Role::Started);
            let word = match role {
                Role::Promoted => "Promoted",
                _ if promotable => "Unpromoted",
                _ => "Started",
            };
            by_role.entry(word).or_default().push(*nodes.iter().next().unwrap());
        } else if cl.rscs[i].kind == Kind::Group {
            out.push_str(&format!("{}* Resource Group: {}:\n", pad, cl.rscs[i].id));
            for &m in &cl.rscs[i].children {
                out.push_str(&format!("{}  * {}\n", pad, primitive_state(cl, v, m, false)));
            }
        } else {
            out.push_str(&format!("{}* {}\n", pad, primitive_state(cl, v, i, true)));
        }
    }
    for word in ["Promoted", "Unpromoted", "Started"] {
        if let Some(nodes) = by_role.get(word) {
            let mut names: Vec<&str> = nodes.iter().map(|&n| cl.nodes[n].name.as_str()).collect();
            names.sort_by(|a, b| natural_cmp(a, b));
            out.push_str(&format!("{}* {}: [ {} ]\n", pad, word, names.join(" ")));
        }
    }
    let mut stopped: Vec<&str> = (0..cl.nodes.len())
        .filter(|n| !active_nodes.contains(n))
        .filter(|&n| {
            let lp = r.children.first().and_then(|&c| cl.lead_primitive(c));
            cl.options.symmetric || lp.is_some_and(|p| cl.rscs[p].allowed.get(&n).is_some_and(|s| s.0 >= 0))
        })
        .map(|n| cl.nodes[n].name.as_str())
        .collect();
    stopped.sort_by(|a, b| natural_cmp(a, b));
    if !stopped.is_empty() {
        let label = if r.target_role == Some(Role::Stopped) { "Stopped (disabled)" } else { "Stopped" };
        out.push_str(&format!("{}* {}: [ {} ]\n", pad, label, stopped.join(" ")));
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering;

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("pcmk-8", "pcmk-10"), Ordering::Less);
        assert_eq!(natural_cmp("Node2", "node10"), Ordering::Less);
        assert_eq!(natural_cmp("a", "b"), Ordering::Less);
    }
}
