//! The XML of `crm_mon -1 -r --output-as=xml` (Pacemaker 2.1.5, API 2.25): `<summary>`,
//! `<nodes>`, `<resources>` (primitives, groups, clones, bundles with their replicas),
//! `<failures>`, `<fence_history>` when a fencing history is given, and `<status>`.
//!
//! Deviations: `<node_attributes>`, `<node_history>`, `<tickets>` (crm_mon lists them in
//! hash-table order) and `<bans>` are not produced; a node's health is read from its
//! `#health-*` attributes' colours and signs only; a bundle replica's IP address resource is
//! inferred from `ip-range-start` and shown where its container runs; a pending fencing
//! action has no `extended-status` (halo's fencer has no numeric op state). The `request`
//! attribute names crm_mon's command line, so scripts written for crm_mon's XML read it.

use std::fmt::Write;

use scheduler::display::natural_cmp;
use scheduler::unpack::{BundleSpec, Kind, NodeInfo};
use scheduler::Role;

use crate::failures::{epoch_iso, exec_status_str, exit_str};
use crate::{Facts, FenceState};

/// Attribute value escaping as libxml2 writes it.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\n' => o.push_str("&#10;"),
            '\r' => o.push_str("&#13;"),
            '\t' => o.push_str("&#9;"),
            c => o.push(c),
        }
    }
    o
}

/// `<name a="v" ...` (without the closing bracket).
fn open(depth: usize, name: &str, attrs: &[(&str, String)]) -> String {
    let mut s = format!("{}<{name}", " ".repeat(depth * 2));
    for (k, v) in attrs {
        let _ = write!(s, " {k}=\"{}\"", esc(v));
    }
    s
}

fn leaf(out: &mut String, depth: usize, name: &str, attrs: &[(&str, String)]) {
    out.push_str(&open(depth, name, attrs));
    out.push_str("/>\n");
}

fn b(v: bool) -> String {
    v.to_string()
}

pub(crate) fn render(f: &Facts) -> String {
    let mut out = String::from("<pacemaker-result api-version=\"2.25\" request=\"crm_mon -1 -r --output-as=xml\">\n");
    summary(f, &mut out);
    nodes(f, &mut out);
    out.push_str("  <resources>\n");
    for &t in &f.cl.top {
        resource(f, t, 2, &mut out);
    }
    out.push_str("  </resources>\n");
    if !f.failed.is_empty() {
        out.push_str("  <failures>\n");
        for a in &f.failed {
            let mut attrs = vec![
                (if a.keyed { "op_key" } else { "id" }, a.op_key.clone()),
                ("node", a.node.clone()),
                ("exitstatus", exit_str(a.rc).to_string()),
                ("exitreason", a.exit_reason.clone().unwrap_or_else(|| "none".into())),
                ("exitcode", a.rc.to_string()),
                ("call", a.call_id.to_string()),
                ("status", exec_status_str(a.status).to_string()),
            ];
            if let Some(t) = a.last_rc_change.filter(|&t| t > 0) {
                attrs.push(("last-rc-change", epoch_iso(t, f.input.utc_offset_s)));
                attrs.extend(a.queue_ms.clone().map(|q| ("queued", q)));
                attrs.extend(a.exec_ms.clone().map(|e| ("exec", e)));
                attrs.push(("interval", a.interval_ms.to_string()));
                attrs.push(("task", a.task.clone()));
            }
            leaf(&mut out, 2, "failure", &attrs);
        }
        out.push_str("  </failures>\n");
    }
    if !f.fencing.is_empty() {
        out.push_str("  <fence_history>\n");
        for e in &f.fencing {
            let mut attrs = vec![("action", e.action.clone()), ("target", e.target.clone()), ("client", e.client.clone()), ("origin", e.origin.clone())];
            match e.state {
                FenceState::Failed => {
                    attrs.push(("status", "failed".into()));
                    attrs.extend(e.exit_reason.clone().map(|r| ("exit-reason", r)));
                }
                FenceState::Done => attrs.push(("status", "success".into())),
                FenceState::Pending => attrs.push(("status", "pending".into())),
            }
            attrs.extend(e.executioner.clone().map(|d| ("delegate", d)));
            if let (FenceState::Failed | FenceState::Done, Some(ms)) = (e.state, e.completed_ms) {
                attrs.push(("completed", epoch_iso(ms.div_euclid(1000), f.input.utc_offset_s)));
            }
            leaf(&mut out, 2, "fence_event", &attrs);
        }
        out.push_str("  </fence_history>\n");
    }
    out.push_str("  <status code=\"0\" message=\"OK\"/>\n</pacemaker-result>\n");
    out
}

fn summary(f: &Facts, out: &mut String) {
    let cib = f.cl.cib;
    out.push_str("  <summary>\n");
    leaf(out, 2, "stack", &[("type", f.stack.clone())]);
    match f.dc {
        Some(dc) => leaf(
            out,
            2,
            "current_dc",
            &[
                ("present", "true".into()),
                ("version", f.dc_version.clone().unwrap_or_default()),
                ("name", f.node_name(dc).to_string()),
                ("id", f.cl.nodes[dc].id.clone()),
                ("with_quorum", b(f.quorate)),
                ("mixed_version", b(mixed_version(f))),
            ],
        ),
        None => leaf(out, 2, "current_dc", &[("present", "false".into())]),
    }
    let mut update = vec![("time", crate::failures::ctime(f.input.now))];
    update.extend(f.input.local_node.clone().map(|n| ("origin", n)));
    leaf(out, 2, "last_update", &update);
    let a = |k: &str| cib.attr(k).unwrap_or("").to_string();
    leaf(out, 2, "last_change", &[("time", a("cib-last-written")), ("user", a("update-user")), ("client", a("update-client")), ("origin", a("update-origin"))]);
    leaf(out, 2, "nodes_configured", &[("number", f.cl.nodes.len().to_string())]);
    leaf(out, 2, "resources_configured", &[("number", f.instances.to_string()), ("disabled", f.disabled.to_string()), ("blocked", f.blocked.to_string())]);
    let o = &f.cl.options;
    let ms = |k: &str, d: u64| o.raw.get(k).and_then(|v| scheduler::interval_ms(v)).unwrap_or(d).to_string();
    // Suicide only with fencing, and once the cluster has had quorum (or may panic).
    let may_panic = f.cl.have_quorum || cib.attr("no-quorum-panic").is_some_and(|v| v.parse::<i64>().is_ok_and(|x| x != 0));
    let nqp = match o.no_quorum_policy.as_str() {
        p @ ("freeze" | "ignore" | "demote") => p,
        "fence" | "suicide" if o.stonith_enabled && may_panic => "suicide",
        _ => "stop",
    };
    leaf(
        out,
        2,
        "cluster_options",
        &[
            ("stonith-enabled", b(o.stonith_enabled)),
            ("symmetric-cluster", b(o.symmetric)),
            ("no-quorum-policy", nqp.into()),
            ("maintenance-mode", b(o.maintenance_mode)),
            ("stop-all-resources", b(o.stop_all_resources)),
            ("stonith-timeout-ms", ms("stonith-timeout", 60_000)),
            ("priority-fencing-delay-ms", ms("priority-fencing-delay", 0)),
        ],
    );
    out.push_str("  </summary>\n");
}

/// Asked to shut down (whether up or not).
fn shutdown(n: &NodeInfo) -> bool {
    n.attrs.get("shutdown").is_some_and(|s| s != "0" && !s.is_empty())
}

/// Expected to be a member, and not asked to shut down.
fn expected_up(f: &Facts, n: &NodeInfo) -> bool {
    !shutdown(n) && f.cl.cib.status.nodes.iter().find(|s| s.id == n.id).is_some_and(|s| s.expected.as_deref() == Some("member"))
}

/// An online cluster node's feature set ("<3.15.1" when it does not say).
fn feature_set(n: &NodeInfo) -> Option<String> {
    (n.online && !n.remote).then(|| n.attrs.get("#feature-set").cloned().unwrap_or_else(|| "<3.15.1".into()))
}

fn mixed_version(f: &Facts) -> bool {
    let sets: Vec<String> = f.cl.nodes.iter().filter_map(feature_set).collect();
    sets.windows(2).any(|w| w[0] != w[1])
}

/// A node's health: green unless a node-health-strategy is in force.
fn health(f: &Facts, n: &NodeInfo) -> &'static str {
    if f.cl.options.raw.get("node-health-strategy").is_none_or(|s| s == "none") {
        return "green";
    }
    let values: Vec<&str> = n.attrs.iter().filter(|(k, _)| k.starts_with("#health")).map(|(_, v)| v.as_str()).collect();
    let is = |w: &str| values.iter().any(|v| v.eq_ignore_ascii_case(w));
    if is("red") || values.iter().any(|v| v.eq_ignore_ascii_case("-INFINITY")) {
        "red"
    } else if is("yellow") || values.iter().any(|v| v.parse::<i64>().is_ok_and(|x| x < 0)) {
        "yellow"
    } else {
        "green"
    }
}

fn nodes(f: &Facts, out: &mut String) {
    out.push_str("  <nodes>\n");
    let mut order: Vec<usize> = (0..f.cl.nodes.len()).collect();
    order.sort_by(|&a, &b| natural_cmp(&f.cl.nodes[a].name, &f.cl.nodes[b].name));
    for i in order {
        let n = &f.cl.nodes[i];
        let running = f.view.active.values().filter(|nodes| nodes.contains(&i)).count();
        let mut attrs = vec![
            ("name", n.name.clone()),
            ("id", n.id.clone()),
            ("online", b(n.online)),
            // A node still joining is held in standby.
            ("standby", b(n.standby || n.pending)),
            ("standby_onfail", "false".into()),
            ("maintenance", b(crate::node_maintenance(n))),
            ("pending", b(n.pending)),
            ("unclean", b(n.unclean)),
            ("health", health(f, n).into()),
        ];
        attrs.extend(feature_set(n).map(|v| ("feature_set", v)));
        attrs.extend([
            ("shutdown", b(shutdown(n))),
            ("expected_up", b(expected_up(f, n))),
            ("is_dc", b(f.dc == Some(i))),
            ("resources_running", running.to_string()),
            ("type", if n.remote { "remote" } else { "member" }.into()),
        ]);
        if n.guest {
            attrs.extend(n.connection.clone().map(|c| ("id_as_resource", c)));
        }
        leaf(out, 2, "node", &attrs);
    }
    out.push_str("  </nodes>\n");
}

/// The id crm_mon prints: an anonymous clone's instances go by the primitive's own id.
fn printable_id(f: &Facts, id: usize) -> String {
    let r = &f.cl.rscs[id];
    let anonymous = f.cl.clone_of(id).is_some_and(|c| matches!(f.cl.rscs[c].kind, Kind::Clone { unique: false, .. }));
    let in_bundle = r.parent.is_some_and(|p| f.cl.rscs[p].kind == Kind::Bundle) && r.id.contains(':');
    if anonymous || in_bundle {
        r.base_id.clone()
    } else {
        r.id.clone()
    }
}

/// The target-role as written ("#default" means none); a clone without one shows its
/// first instance's.
fn target_role(f: &Facts, id: usize) -> Option<String> {
    let r = &f.cl.rscs[id];
    let own = r.meta.get("target-role").or_else(|| match r.kind {
        Kind::Clone { .. } => r.children.first().and_then(|&c| f.cl.rscs[c].meta.get("target-role")),
        _ => None,
    });
    let own = own.or_else(|| f.cl.rsc_defaults.get("target-role"));
    own.filter(|t| t.as_str() != "#default").cloned()
}

/// A recurring monitor still in flight (probes in flight are not shown).
fn pending_monitor(f: &Facts, id: usize) -> bool {
    let r = &f.cl.rscs[id];
    r.history.iter().any(|(&n, h)| {
        let node = &f.cl.nodes[n];
        let state = f.cl.cib.status.nodes.iter().find(|s| s.id == node.id || s.uname.as_deref() == Some(node.name.as_str()));
        state.into_iter().flat_map(|s| &s.lrm).filter(|l| l.id == h.lrm_id).flat_map(|l| &l.ops).any(|o| {
            o.operation == "monitor" && o.interval_ms > 0 && (o.op_status == -1 || o.call_id == -1)
        })
    })
}

fn in_promotable_bundle(f: &Facts, id: usize) -> bool {
    let Some(p) = f.cl.rscs[id].parent.filter(|&p| f.cl.rscs[p].kind == Kind::Bundle) else { return false };
    let is_inner = f.cl.rscs[id].id.contains(':');
    is_inner
        && f.cl.cib.config.resources.iter().any(|x| matches!(x, cib::Resource::Bundle(b) if b.id == f.cl.rscs[p].id && promotable_bundle(b)))
}

/// A bundle whose replicas may be promoted.
fn promotable_bundle(b: &cib::Bundle) -> bool {
    b.raw
        .elements()
        .filter(|e| matches!(e.name.as_str(), "docker" | "podman" | "rkt"))
        .any(|e| e.attr("promoted-max").or_else(|| e.attr("masters")).and_then(|v| v.parse::<u32>().ok()).is_some_and(|m| m > 0))
}

fn primitive(f: &Facts, id: usize, depth: usize, out: &mut String) {
    let r = &f.cl.rscs[id];
    let nodes = f.view.active.get(&id).cloned().unwrap_or_default();
    // Inactive orphans are left out at the top level; a clone lists all its instances.
    if r.hidden || (r.orphan && nodes.is_empty() && r.parent.is_none()) {
        return;
    }
    // A pending start, stop, migration, promotion or demotion shows as the role; a pending
    // monitor as `pending="Monitoring"`.
    let pending = r.history.values().find_map(|h| h.pending_task.clone());
    let role = match pending.as_deref() {
        Some("start") => "Starting",
        Some("stop") => "Stopping",
        Some("migrate_to" | "migrate_from") => "Migrating",
        Some("promote") => "Promoting",
        Some("demote") => "Demoting",
        _ => match crate::json::role_word(f, id) {
            "Failed" | "Starting" => match f.view.role.get(&id).copied().unwrap_or(Role::Stopped) {
                Role::Promoted => "Promoted",
                Role::Unpromoted => "Unpromoted",
                _ => "Started",
            },
            "Started" if in_promotable_bundle(f, id) => "Unpromoted",
            w => w,
        },
    };
    let mut attrs = vec![
        ("id", printable_id(f, id)),
        ("resource_agent", r.prim.as_ref().map(|p| p.agent_spec()).unwrap_or_default()),
        ("role", role.to_string()),
    ];
    attrs.extend(target_role(f, id).map(|t| ("target_role", t)));
    attrs.extend([
        ("active", b(!nodes.is_empty())),
        ("orphaned", b(r.orphan)),
        ("blocked", b(f.blocked(id))),
        ("managed", b(r.managed && !f.blocked(id))),
        ("failed", b(f.view.failed.contains(&id))),
        ("failure_ignored", b(r.history.values().any(|h| h.failure_ignored))),
        ("nodes_running_on", nodes.len().to_string()),
    ]);
    if pending.as_deref() == Some("monitor") && pending_monitor(f, id) {
        attrs.push(("pending", "Monitoring".into()));
    }
    node_refs(f, &attrs, &nodes, depth, out);
}

/// An element listing the nodes something runs on (`<node name id cached/>` children).
fn node_refs(f: &Facts, attrs: &[(&str, String)], nodes: &[usize], depth: usize, out: &mut String) {
    if nodes.is_empty() {
        leaf(out, depth, "resource", attrs);
        return;
    }
    out.push_str(&open(depth, "resource", attrs));
    out.push_str(">\n");
    for &n in nodes {
        let node = &f.cl.nodes[n];
        leaf(out, depth + 1, "node", &[("name", node.name.clone()), ("id", node.id.clone()), ("cached", b(node.online))]);
    }
    out.push_str(&format!("{}</resource>\n", " ".repeat(depth * 2)));
}

fn resource(f: &Facts, id: usize, depth: usize, out: &mut String) {
    let r = &f.cl.rscs[id];
    let pad = " ".repeat(depth * 2);
    match r.kind {
        Kind::Primitive => primitive(f, id, depth, out),
        Kind::Group => {
            let members = r.children.len().to_string();
            out.push_str(&open(depth, "group", &[("id", r.id.clone()), ("number_resources", members), ("managed", b(r.managed)), ("disabled", b(f.disabled(id)))]));
            out.push_str(">\n");
            for &m in &r.children {
                primitive(f, m, depth + 1, out);
            }
            out.push_str(&format!("{pad}</group>\n"));
        }
        Kind::Clone { promotable, unique } => {
            let mut attrs = vec![
                ("id", r.id.clone()),
                ("multi_state", b(promotable)),
                ("unique", b(unique)),
                ("managed", b(r.managed)),
                ("disabled", b(f.disabled(id))),
                // The clone's own flags, which its instances' failures do not set.
                ("failed", "false".into()),
                ("failure_ignored", "false".into()),
            ];
            attrs.extend(target_role(f, id).map(|t| ("target_role", t)));
            out.push_str(&open(depth, "clone", &attrs));
            out.push_str(">\n");
            for &c in &r.children {
                resource(f, c, depth + 1, out);
            }
            out.push_str(&format!("{pad}</clone>\n"));
        }
        Kind::Bundle => bundle(f, id, depth, out),
    }
}

fn bundle(f: &Facts, id: usize, depth: usize, out: &mut String) {
    let r = &f.cl.rscs[id];
    let Some(cib::Resource::Bundle(b_cfg)) = f.cl.cib.config.resources.iter().find(|x| x.id() == r.id) else { return };
    let spec = BundleSpec::of(b_cfg);
    let attrs = [
        ("id", r.id.clone()),
        ("type", spec.runtime.clone()),
        ("image", spec.image.clone()),
        ("unique", b(r.meta.get("globally-unique").is_some_and(|v| cib::is_true(v)))),
        ("managed", b(r.managed)),
        ("failed", "false".into()),
    ];
    let pad = " ".repeat(depth * 2);
    out.push_str(&open(depth, "bundle", &attrs));
    out.push_str(">\n");
    for i in 0..spec.replicas {
        out.push_str(&format!("{pad}  <replica id=\"{i}\">\n"));
        let container = f.cl.rsc_by_id(&spec.container_id(&r.id, i));
        if let (Some(ip), Some(c)) = (spec.ip(i), container) {
            let nodes = f.view.active.get(&c).cloned().unwrap_or_default();
            let attrs = [
                ("id", format!("{}-ip-{ip}", r.id)),
                ("resource_agent", "ocf:heartbeat:IPaddr2".to_string()),
                ("role", if nodes.is_empty() { "Stopped" } else { "Started" }.to_string()),
                ("active", b(!nodes.is_empty())),
                ("orphaned", "false".into()),
                ("blocked", "false".into()),
                ("managed", b(r.managed)),
                ("failed", "false".into()),
                ("failure_ignored", "false".into()),
                ("nodes_running_on", nodes.len().to_string()),
            ];
            node_refs(f, &attrs, &nodes, depth + 2, out);
        }
        if let Some(inner) = b_cfg.primitive.as_ref().and_then(|p| f.cl.rsc_by_id(&format!("{}:{i}", p.id))) {
            primitive(f, inner, depth + 2, out);
        }
        if let Some(c) = container {
            primitive(f, c, depth + 2, out);
        }
        // The replica's remote connection (hidden in the resource list, shown here).
        if let Some(conn) = f.cl.rsc_by_id(&format!("{}-{i}", r.id)) {
            let nodes = f.view.active.get(&conn).cloned().unwrap_or_default();
            let attrs = [
                ("id", f.cl.rscs[conn].id.clone()),
                ("resource_agent", "ocf:pacemaker:remote".to_string()),
                ("role", if nodes.is_empty() { "Stopped" } else { "Started" }.to_string()),
                ("active", b(!nodes.is_empty())),
                ("orphaned", "false".into()),
                ("blocked", "false".into()),
                ("managed", b(r.managed)),
                ("failed", b(f.view.failed.contains(&conn))),
                ("failure_ignored", "false".into()),
                ("nodes_running_on", nodes.len().to_string()),
            ];
            node_refs(f, &attrs, &nodes, depth + 2, out);
        }
        out.push_str(&format!("{pad}  </replica>\n"));
    }
    out.push_str(&format!("{pad}</bundle>\n"));
}
