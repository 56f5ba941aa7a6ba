//! The join (CONTROLLER-NOTES §2, §9): a node reads its executor's history and hands it to
//! the DC, which writes it as that node's status (keeping shutdown-locked history).

use super::*;

impl Controller {
    pub(super) fn on_history(&mut self, xml: String) {
        let Some(dc) = self.seniority.dc() else { return };
        let xml = self.with_local_ops(xml);
        // Learn the recurring ops the executor runs (after a controller restart too).
        if let Ok(doc) = cib::xml::parse(&xml) {
            for r in doc.root.children_named("lrm_resource") {
                let Some(id) = r.id() else { continue };
                let agent = [r.attr("class"), r.attr("provider"), r.attr("type")].into_iter().flatten().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(":");
                self.agents.insert(id.to_string(), agent);
                for op in r.children_named("lrm_rsc_op") {
                    let iv: u64 = op.attr("interval").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if iv > 0 {
                        let action = op.attr("operation").unwrap_or("monitor").to_string();
                        self.recurring.entry(id.to_string()).or_default().insert((action, iv));
                    }
                }
            }
        }
        self.joined_to = Some(dc);
        let join = if xml.len() > records::DEFLATE_ABOVE { pb::Join { dc, history: String::new(), history_deflated: records::deflate(xml.as_bytes()) } } else { pb::Join { dc, history: xml, history_deflated: Vec::new() } };
        self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Join(join)) }));
        // Values still waiting out their delay may have been lost with a former DC.
        for a in self.own_damped.for_dc(dc) {
            self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Attribute(a)) }));
        }
    }

    /// The executor's history with the one-shot ops this controller handed it and has no
    /// answer for yet: an op the executor has not taken in yet is missing from it, and the
    /// join must not tell the DC that the resource ran nothing (its newest such op stands
    /// as pending `<rsc>_last_0`, as the executor shows its own).
    pub(super) fn with_local_ops(&self, xml: String) -> String {
        if self.local_ops.is_empty() {
            return xml;
        }
        let Ok(mut doc) = cib::xml::parse(&xml) else { return xml };
        for (rsc, ops) in &self.local_ops {
            let Some((action, key)) = ops.last() else { continue };
            let known = doc.root.children_named("lrm_resource").filter(|r| r.id() == Some(rsc.as_str())).any(|r| r.children_named("lrm_rsc_op").any(|o| o.attr("transition-key") == Some(key.as_str())));
            if known {
                continue;
            }
            let pending = cib::status::unfinished_op_record(rsc, action, 0, key, None, self.now.epoch_s, "halo-controld");
            let last_id = format!("{rsc}_last_0");
            let existing = doc.root.find_mut(|r| r.name == "lrm_resource" && r.id() == Some(rsc.as_str()));
            match existing {
                Some(r) => {
                    r.children.retain(|c| !matches!(c, cib::xml::Node::Element(e) if e.id() == Some(last_id.as_str())));
                    r.push(pending);
                }
                None => {
                    let Some(agent) = self.agents.get(rsc).filter(|a| a.contains(':')) else { continue };
                    let mut r = cib::status::lrm_resource_element(rsc, agent);
                    r.push(pending);
                    doc.root.push(r);
                }
            }
        }
        doc.root.to_xml()
    }

    pub(super) fn on_join(&mut self, from: u32, j: pb::Join) {
        if j.dc != self.cfg.me || self.dc.is_none() {
            return;
        }
        if !self.seniority.members().contains(&from) {
            return;
        }
        let id = from.to_string();
        let name = self.name(from);
        let xml = if j.history_deflated.is_empty() {
            j.history
        } else {
            match records::inflate(&j.history_deflated).and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_string())) {
                Ok(x) => x,
                Err(e) => return tracing::warn!("node {name}'s compressed history is refused: {e}"),
            }
        };
        let locked = self.dc.as_ref().and_then(|d| d.locked.get(&id)).cloned().unwrap_or_default();
        let history = match records::replace_history(&id, &xml, &locked) {
            Ok(w) => w,
            Err(e) => return tracing::warn!("node {name}'s history is refused: {e}"),
        };
        self.write(records::node_fields(&id, &name, &[("in_ccm", "true"), ("crmd", "online"), ("join", "member"), ("expected", "member")]), AfterWrite::Nothing);
        self.write(history, AfterWrite::Nothing);
        // A node back from a clean stop is no longer stopping.
        self.write(records::delete_transient_attrs(&id, &["shutdown".to_string()]), AfterWrite::Nothing);
        let d = self.dc.as_mut().expect("checked above");
        d.gone.remove(&from);
        d.fence_failures.remove(&name);
        d.joined.insert(from);
        d.seen.insert(from);
        d.dirty = true;
        if let Some(e) = d.engine.as_mut() {
            // A (re)joined node's history replaces what the graph was computed from.
            e.abort();
            e.fail_node(&name);
        }
        tracing::info!("node {name} joined");
        // A voter the CIB lost while this node was fenced takes its vote back.
        if self.writable() && self.cfg.nodes.contains_key(&from) && !self.cib_voters.contains(&from) {
            let voters: Vec<u32> = self.cib_voters.iter().copied().chain([from]).collect();
            tracing::info!("node {name} is a CIB voter again");
            self.outbox.push_back(Action::SetCibVoters { voters });
        }
    }
}
