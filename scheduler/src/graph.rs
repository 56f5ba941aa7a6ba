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
        let on = node.map(|n| format!(" on_node=\"{}\" on_node_uuid=\"{}\"", esc(&n.name), esc(&n.id))).unwrap_or_default();
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
