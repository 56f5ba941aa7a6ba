//! The transition graph in Pacemaker's XML form (`crm_simulate -G`): one synapse
//! per executed action, with the actions it waits for as inputs.

use std::collections::BTreeMap;

use crate::actions::ActionId;
use crate::Transition;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Transition<'_> {
    pub fn graph_xml(&self) -> String {
        let cl = &self.cluster;
        let p = &self.plan;
        let index: BTreeMap<ActionId, usize> = self.executed.iter().enumerate().map(|(i, &a)| (a, i)).collect();
        let mut out = String::new();
        let fatal = if cl.options.start_failure_is_fatal { "INFINITY".to_string() } else { "1".to_string() };
        out.push_str(&format!(
            "<transition_graph cluster-delay=\"60s\" stonith-timeout=\"60s\" failed-stop-offset=\"INFINITY\" failed-start-offset=\"{fatal}\" transition_id=\"0\">\n"
        ));
        for (syn, &a) in self.executed.iter().enumerate() {
            let act = &p.actions[a];
            let prio = if act.priority != 0 { format!(" priority=\"{}\"", act.priority) } else { String::new() };
            out.push_str(&format!("  <synapse id=\"{syn}\"{prio}>\n    <action_set>\n"));
            out.push_str(&format!("      {}\n", self.action_xml(a, index[&a])));
            out.push_str("    </action_set>\n    <inputs>\n");
            let mut inputs: Vec<ActionId> = p.orderings.iter().filter(|o| o.then == a && index.contains_key(&o.first)).map(|o| o.first).collect();
            inputs.sort();
            inputs.dedup();
            for i in inputs {
                out.push_str(&format!("      <trigger>\n        {}\n      </trigger>\n", self.action_xml(i, index[&i])));
            }
            out.push_str("    </inputs>\n  </synapse>\n");
        }
        out.push_str("</transition_graph>\n");
        out
    }

    /// The op's timeout: its own, else op_defaults', else 20 s (Pacemaker's default).
    fn op_timeout_ms(&self, act: &crate::actions::Action) -> u64 {
        let cl = &self.cluster;
        let prim = act.rsc.and_then(|r| cl.rscs[r].prim.as_ref());
        let task = if act.task == "monitor" && act.interval_ms == 0 { "monitor" } else { act.task.as_str() };
        let own = prim.and_then(|p| {
            p.ops.iter().find(|o| o.name == task && crate::interval_ms(&o.interval) == Some(act.interval_ms)).and_then(|o| o.get("timeout")).and_then(crate::interval_ms)
        });
        own.or_else(|| {
            let mut d = std::collections::BTreeMap::new();
            crate::unpack::flatten(&cl.op_defaults, &crate::rules::RuleContext::default(), &mut d);
            d.get("timeout").and_then(|v| crate::interval_ms(v))
        })
        .unwrap_or(20_000)
    }

    fn action_xml(&self, a: ActionId, id: usize) -> String {
        let cl = &self.cluster;
        let act = &self.plan.actions[a];
        let key = esc(&self.plan.key(cl, a));
        let node = act.node.map(|n| &cl.nodes[n]);
        let mut on = node.map(|n| format!(" on_node=\"{}\" on_node_uuid=\"{}\"", esc(&n.name), esc(&n.id))).unwrap_or_default();
        if let Some(t) = self.shutdown_lock_of(act).filter(|&t| t != 0) {
            on.push_str(&format!(" shutdown-lock=\"{t}\""));
        }
        if act.task == "stonith" {
            let (action, _) = act.fence.clone().unwrap_or_default();
            return format!("<crm_event id=\"{id}\" operation=\"stonith\" operation_key=\"stonith-{}-{}\"{on}><attributes CRM_meta_stonith_action=\"{}\"/></crm_event>", esc(&node.map(|n| n.name.clone()).unwrap_or_default()), esc(&action), esc(&action));
        }
        if act.task == "do_shutdown" || act.task == "clear_failcount" {
            return format!("<crm_event id=\"{id}\" operation=\"{}\" operation_key=\"{key}\"{on}/>", act.task);
        }
        if act.pseudo {
            return format!("<pseudo_event id=\"{id}\" operation=\"{}\" operation_key=\"{key}\"/>", act.task);
        }
        let rsc = act.rsc.map(|r| &cl.rscs[r]);
        let prim = rsc.and_then(|r| r.prim.as_ref());
        let mut primitive = String::new();
        if let (Some(r), Some(pr)) = (rsc, prim) {
            let prov = pr.provider.as_ref().map(|p| format!(" provider=\"{}\"", esc(p))).unwrap_or_default();
            primitive = format!("<primitive id=\"{}\" class=\"{}\"{prov} type=\"{}\"/>", esc(&r.id), esc(&pr.class), esc(&pr.agent));
        }
        let mut attrs = String::new();
        if let Some(n) = node {
            attrs.push_str(&format!("CRM_meta_on_node=\"{}\" CRM_meta_on_node_uuid=\"{}\"", esc(&n.name), esc(&n.id)));
        }
        if act.interval_ms > 0 {
            attrs.push_str(&format!(" CRM_meta_interval=\"{}\" CRM_meta_name=\"{}\"", act.interval_ms, esc(&act.task)));
        }
        if act.task == "monitor" && act.interval_ms == 0 {
            attrs.push_str(" CRM_meta_op_target_rc=\"7\"");
        }
        attrs.push_str(&format!(" CRM_meta_timeout=\"{}\"", self.op_timeout_ms(act)));
        if let Some(r) = rsc {
            for (k, v) in &r.params {
                attrs.push_str(&format!(" {}=\"{}\"", esc(k), esc(v)));
            }
        }
        format!("<rsc_op id=\"{id}\" operation=\"{}\" operation_key=\"{key}\"{on}>{primitive}<attributes {attrs}/></rsc_op>", act.task)
    }
}

/// The transition graph as the controller executes it: the same synapses as
/// [`Transition::graph_xml`], typed. Synapse `i` holds action `i`; its inputs are the
/// synapses that must be confirmed before it may fire.
#[derive(Debug, Clone)]
pub struct Graph {
    pub actions: Vec<GraphAction>,
    /// `cluster-delay`: added to an action's timeout for the controller's own timer.
    pub cluster_delay_ms: u64,
    /// `stonith-timeout`: the fencing request's timeout.
    pub stonith_timeout_ms: u64,
    /// `batch-limit` (0: no limit).
    pub batch_limit: usize,
    /// `migration-limit` (-1: no limit).
    pub migration_limit: i64,
    /// `node-action-limit` (0: the controller's default, twice the cores).
    pub node_action_limit: usize,
    /// `start-failure-is-fatal`.
    pub start_failure_is_fatal: bool,
    /// The earliest moment (epoch s) at which a failure expires (`failure-timeout`): the
    /// scheduler must run again then even if nothing else happens.
    pub recheck_by: Option<i64>,
}

impl Default for Graph {
    /// An empty graph under Pacemaker's defaults (no migration limit).
    fn default() -> Graph {
        Graph {
            actions: Vec::new(),
            cluster_delay_ms: 0,
            stonith_timeout_ms: 0,
            batch_limit: 0,
            migration_limit: -1,
            node_action_limit: 0,
            start_failure_is_fatal: false,
            recheck_by: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GraphAction {
    pub id: usize,
    pub priority: i64,
    pub inputs: Vec<usize>,
    /// The operation key, e.g. `web_start_0`, `stonith-node2-reboot`, `grp_running_0`.
    pub key: String,
    /// The node it runs on (name, id).
    pub node: Option<(String, String)>,
    pub kind: ActionKind,
}

#[derive(Debug, Clone)]
pub enum ActionKind {
    /// Confirmed as soon as it fires.
    Pseudo,
    /// An agent action through the target node's executor.
    Rsc(RscOp),
    /// Fence the node (`reboot`, `off`).
    Fence { action: String },
    /// The node may stop its cluster stack now.
    Shutdown,
    /// Clear the resource's fail count on the node (an expired failure).
    ClearFailcount { rsc: String },
}

#[derive(Debug, Clone, Default)]
pub struct RscOp {
    /// The id the executor and the history use (an anonymous clone's instances share the
    /// primitive's id).
    pub rsc: String,
    /// The scheduler's id (`rsc:1` for a clone instance).
    pub long_id: String,
    pub class: String,
    pub provider: Option<String>,
    pub agent: String,
    pub task: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// The rc that means success (7 for a probe of a resource believed stopped, 8 for a
    /// Promoted-role monitor).
    pub expected_rc: i32,
    pub params: BTreeMap<String, String>,
    /// Meta attributes and op attributes (underscored, without `CRM_meta_`).
    pub meta: BTreeMap<String, String>,
    /// The op's on-fail, when set.
    pub on_fail: Option<String>,
    /// `shutdown-lock` to record on the resource's history once the op succeeds: the lock
    /// time (epoch s) for the stop of a clean shutdown, 0 (lock cleared) for the start on
    /// the node it was locked to.
    pub shutdown_lock: Option<i64>,
}

impl RscOp {
    /// `class:provider:type`, as the executor names an agent.
    pub fn agent_spec(&self) -> String {
        match &self.provider {
            Some(p) => format!("{}:{}:{}", self.class, p, self.agent),
            None => format!("{}:{}", self.class, self.agent),
        }
    }

    /// A probe: a one-shot monitor.
    pub fn is_probe(&self) -> bool {
        self.task == "monitor" && self.interval_ms == 0
    }
}

impl Transition<'_> {
    /// The graph the controller executes ([`Graph`]).
    pub fn graph(&self) -> Graph {
        let cl = &self.cluster;
        let p = &self.plan;
        let index: BTreeMap<ActionId, usize> = self.executed.iter().enumerate().map(|(i, &a)| (a, i)).collect();
        let opt_ms = |k: &str, d: u64| cl.options.raw.get(k).and_then(|v| crate::interval_ms(v)).unwrap_or(d);
        let mut g = Graph {
            actions: Vec::with_capacity(self.executed.len()),
            cluster_delay_ms: opt_ms("cluster-delay", 60_000),
            stonith_timeout_ms: opt_ms("stonith-timeout", 60_000),
            batch_limit: cl.options.raw.get("batch-limit").and_then(|v| v.parse().ok()).unwrap_or(0),
            migration_limit: cl.options.raw.get("migration-limit").and_then(|v| v.parse().ok()).unwrap_or(-1),
            node_action_limit: cl.options.raw.get("node-action-limit").and_then(|v| v.parse().ok()).unwrap_or(0),
            start_failure_is_fatal: cl.options.start_failure_is_fatal,
            recheck_by: self.recheck_by(),
        };
        let mut inputs: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for o in &p.orderings {
            if let (Some(&f), Some(&t)) = (index.get(&o.first), index.get(&o.then)) {
                if f != t {
                    inputs.entry(t).or_default().push(f);
                }
            }
        }
        for (i, &a) in self.executed.iter().enumerate() {
            let act = &p.actions[a];
            let node = act.node.map(|n| (cl.nodes[n].name.clone(), cl.nodes[n].id.clone()));
            let mut ins = inputs.remove(&i).unwrap_or_default();
            ins.sort_unstable();
            ins.dedup();
            let (key, kind) = match act.task.as_str() {
                "stonith" => {
                    let action = act.fence.as_ref().map(|f| f.0.clone()).unwrap_or_else(|| "reboot".into());
                    (format!("stonith-{}-{action}", node.as_ref().map(|n| n.0.as_str()).unwrap_or("")), ActionKind::Fence { action })
                }
                "do_shutdown" => (p.key(cl, a), ActionKind::Shutdown),
                "clear_failcount" => (p.key(cl, a), ActionKind::ClearFailcount { rsc: act.rsc.map(|r| self.lrm_id(r)).unwrap_or_default() }),
                _ if act.pseudo || act.rsc.and_then(|r| cl.rscs[r].prim.as_ref()).is_none() => (p.key(cl, a), ActionKind::Pseudo),
                _ => (p.key(cl, a), ActionKind::Rsc(self.rsc_op(act))),
            };
            g.actions.push(GraphAction { id: i, priority: act.priority, inputs: ins, key, node, kind });
        }
        g
    }

    /// The id a resource's history and executor use.
    fn lrm_id(&self, r: crate::unpack::RscId) -> String {
        let cl = &self.cluster;
        let rsc = &cl.rscs[r];
        let anonymous = rsc.parent.is_some_and(|p| matches!(cl.rscs[p].kind, crate::unpack::Kind::Clone { unique: false, .. }))
            || rsc.parent.and_then(|g| cl.rscs[g].parent).is_some_and(|p| matches!(cl.rscs[p].kind, crate::unpack::Kind::Clone { unique: false, .. }));
        if anonymous {
            rsc.base_id.clone()
        } else {
            rsc.id.clone()
        }
    }

    fn rsc_op(&self, act: &crate::actions::Action) -> RscOp {
        let cl = &self.cluster;
        let r = act.rsc.expect("resource actions have a resource");
        let rsc = &cl.rscs[r];
        let prim = rsc.prim.as_ref().expect("resource actions are on primitives");
        let task = if act.task == "monitor" && act.interval_ms == 0 { "monitor" } else { act.task.as_str() };
        let op = prim.ops.iter().find(|o| o.name == task && crate::interval_ms(&o.interval) == Some(act.interval_ms));
        let mut meta: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &rsc.meta {
            meta.insert(k.replace('-', "_"), v.clone());
        }
        if let Some(o) = op {
            for (k, v) in &o.attrs {
                if k != "timeout" && k != "interval" {
                    meta.insert(k.replace('-', "_"), v.clone());
                }
            }
        }
        // Clone instances learn their clone's shape (ocf_is_clone, ocf_is_ms and promotion).
        let clone = rsc.parent.into_iter().chain(rsc.parent.and_then(|g| cl.rscs[g].parent)).find(|&p| matches!(cl.rscs[p].kind, crate::unpack::Kind::Clone { .. }));
        if let Some(c) = clone {
            let cm = &cl.rscs[c].meta;
            let get = |k: &str, d: String| cm.get(k).cloned().unwrap_or(d);
            let promotable = matches!(cl.rscs[c].kind, crate::unpack::Kind::Clone { promotable: true, .. });
            meta.insert("clone_max".into(), get("clone-max", cl.nodes.iter().filter(|n| !n.remote).count().to_string()));
            meta.insert("clone_node_max".into(), get("clone-node-max", "1".into()));
            meta.insert("globally_unique".into(), get("globally-unique", "false".into()));
            meta.insert("notify".into(), get("notify", "false".into()));
            meta.insert("promotable".into(), promotable.to_string());
            if promotable {
                meta.insert("promoted_max".into(), cm.get("promoted-max").or_else(|| cm.get("master-max")).cloned().unwrap_or_else(|| "1".into()));
                meta.insert("promoted_node_max".into(), cm.get("promoted-node-max").or_else(|| cm.get("master-node-max")).cloned().unwrap_or_else(|| "1".into()));
            }
            if let Some((_, n)) = rsc.id.rsplit_once(':') {
                meta.insert("clone".into(), n.to_string());
            }
        }
        let node = act.node;
        let history_role = node.and_then(|n| rsc.history.get(&n)).map(|h| h.role).unwrap_or_default();
        let expected_rc = if act.task == "monitor" && act.interval_ms == 0 {
            match history_role {
                crate::Role::Promoted => 8,
                crate::Role::Started | crate::Role::Unpromoted => 0,
                _ => 7,
            }
        } else if act.task == "monitor" && op.and_then(|o| o.role.as_deref()).is_some_and(|x| x.eq_ignore_ascii_case("promoted") || x.eq_ignore_ascii_case("master")) {
            8
        } else {
            0
        };
        RscOp {
            rsc: self.lrm_id(r),
            long_id: rsc.id.clone(),
            class: prim.class.clone(),
            provider: prim.provider.clone(),
            agent: prim.agent.clone(),
            task: act.task.clone(),
            interval_ms: act.interval_ms,
            timeout_ms: self.op_timeout_ms(act),
            expected_rc,
            params: rsc.params.clone(),
            meta,
            on_fail: op.and_then(|o| o.get("on-fail")).map(str::to_string),
            shutdown_lock: self.shutdown_lock_of(act),
        }
    }

    /// The lock an action carries on the lock node: a stop takes it, a start clears it.
    fn shutdown_lock_of(&self, act: &crate::actions::Action) -> Option<i64> {
        let (n, t) = act.rsc.and_then(|r| self.cluster.rscs[r].lock)?;
        match act.task.as_str() {
            "stop" if act.node == Some(n) => Some(t),
            "start" if act.node == Some(n) => Some(0),
            _ => None,
        }
    }

    /// The earliest failure expiry (epoch s) still ahead, from `failure-timeout` and the
    /// last failure times.
    fn recheck_by(&self) -> Option<i64> {
        let cl = &self.cluster;
        let now = cl.now.and_utc().timestamp();
        cl.rscs
            .iter()
            .filter(|r| r.failure_timeout_s > 0)
            .flat_map(|r| r.fail_counts.values().filter_map(move |&(count, last)| (count > 0).then_some(last?).map(|l| l + r.failure_timeout_s)))
            // A shutdown lock expires one second after its limit (it holds up to the limit).
            .chain(cl.rscs.iter().filter_map(|r| r.lock).filter(|_| cl.options.shutdown_lock_limit_s > 0).map(|(_, t)| t + cl.options.shutdown_lock_limit_s + 1))
            .filter(|&t| t > now)
            .min()
    }
}
