//! halo's JSON status, a contract scripts rely on (not a Pacemaker format). Exactly:
//!
//! ```text
//! {"dc": NAME|null, "quorate": bool,
//!  "nodes": [{"name", "id", "state": "online"|"offline"|"unclean"|"pending",
//!             "dc", "standby", "maintenance"}],
//!  "resources": [{"id", "agent": "class:provider:type", "role", "nodes": [NAME],
//!                 "failcount", "managed"}],
//!  "failed_actions": [{"resource", "op", "interval_ms", "node", "rc", "status", "reason"}]}
//! ```
//!
//! Nodes come in the configuration's order (`standby` is also true for a node still joining,
//! and `maintenance` is the node's own attribute, as in crm_mon's XML). Resources come in
//! crm_mon's print order, one entry per primitive: clone instances under their instance id
//! (`rsc:0`), bundle containers and their resources included, orphans only while active.
//! `role` is "Stopped", "Started", "Promoted", "Unpromoted", "Failed" (active and failed) or
//! "Starting" (start pending). `failcount` is the highest over nodes; `managed` is false when
//! unmanaged or blocked by a failure. A failed action's `status` is the execution status's
//! name ("complete", "Timed Out", "Error", ...) and `reason` the agent's exit reason or null.

use serde::Serialize;

use scheduler::unpack::Kind;
use scheduler::Role;

use crate::Facts;

#[derive(Serialize)]
struct Status<'a> {
    dc: Option<&'a str>,
    quorate: bool,
    nodes: Vec<Node<'a>>,
    resources: Vec<Resource<'a>>,
    failed_actions: Vec<FailedAction<'a>>,
}

#[derive(Serialize)]
struct Node<'a> {
    name: &'a str,
    id: &'a str,
    state: &'static str,
    dc: bool,
    standby: bool,
    maintenance: bool,
}

#[derive(Serialize)]
struct Resource<'a> {
    id: &'a str,
    agent: String,
    role: &'static str,
    nodes: Vec<&'a str>,
    failcount: i64,
    managed: bool,
}

#[derive(Serialize)]
struct FailedAction<'a> {
    resource: &'a str,
    op: &'a str,
    interval_ms: u64,
    node: &'a str,
    rc: i32,
    status: &'static str,
    reason: Option<&'a str>,
}

pub(crate) fn render(f: &Facts) -> String {
    let nodes = f
        .cl
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            name: &n.name,
            id: &n.id,
            state: node_state(n),
            dc: f.dc == Some(i),
            standby: n.standby || n.pending,
            maintenance: crate::node_maintenance(n),
        })
        .collect();
    let mut resources = Vec::new();
    for &t in &f.cl.top {
        collect(f, t, &mut resources);
    }
    let failed_actions = f
        .failed
        .iter()
        .map(|a| FailedAction {
            resource: &a.rsc,
            op: &a.task,
            interval_ms: a.interval_ms,
            node: &a.node,
            rc: a.rc,
            status: crate::failures::exec_status_str(a.status),
            reason: a.reason(),
        })
        .collect();
    let status = Status { dc: f.dc.map(|d| f.node_name(d)), quorate: f.quorate, nodes, resources, failed_actions };
    let mut s = serde_json::to_string_pretty(&status).unwrap_or_default();
    s.push('\n');
    s
}

pub(crate) fn node_state(n: &scheduler::unpack::NodeInfo) -> &'static str {
    if n.unclean {
        "unclean"
    } else if !n.online {
        "offline"
    } else if n.pending {
        "pending"
    } else {
        "online"
    }
}

fn collect<'a>(f: &'a Facts, id: usize, out: &mut Vec<Resource<'a>>) {
    let r = &f.cl.rscs[id];
    if !r.is_primitive() {
        for &c in &r.children {
            collect(f, c, out);
        }
        return;
    }
    let nodes: Vec<usize> = f.view.active.get(&id).cloned().unwrap_or_default();
    if r.hidden || (r.orphan && nodes.is_empty()) {
        return;
    }
    out.push(Resource {
        id: &r.id,
        agent: r.prim.as_ref().map(|p| p.agent_spec()).unwrap_or_default(),
        role: role_word(f, id),
        nodes: nodes.iter().map(|&n| f.node_name(n)).collect(),
        failcount: f.failcount(id),
        managed: r.managed && !f.blocked(id),
    });
}

/// The role word crm_mon would print for a primitive (its text's "FAILED" as "Failed").
pub(crate) fn role_word(f: &Facts, id: usize) -> &'static str {
    let active = f.view.active.get(&id).is_some_and(|n| !n.is_empty());
    let role = f.view.role.get(&id).copied().unwrap_or(Role::Stopped);
    let promotable = matches!(f.cl.clone_of(id).map(|c| f.cl.rscs[c].kind), Some(Kind::Clone { promotable: true, .. }));
    if !active {
        "Stopped"
    } else if f.view.failed.contains(&id) {
        "Failed"
    } else if f.view.pending.contains(&id) {
        "Starting"
    } else {
        match role {
            Role::Promoted => "Promoted",
            Role::Unpromoted => "Unpromoted",
            Role::Started if promotable => "Unpromoted",
            Role::Started => "Started",
            Role::Stopped | Role::Unknown => "Stopped",
        }
    }
}
