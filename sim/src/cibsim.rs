//! The simulated CIB: one shared document standing for the raft-replicated CIB of halo-cibd
//! (docs/architecture.md, "The replicated CIB"), and the scheduler call the controller's
//! driver makes on it (`controld/src/daemon.rs`: `schedule`, `facts_of`, `replan_needed`).
//!
//! What is real: every write is applied with `cib::ops::apply` (the same operation, version
//! bump and validation as the replicated state machine), every change is classified with the
//! daemon's own `replan_needed` over the real diff (`cib::diff::diff`), and graphs come from
//! the real `scheduler::schedule(&cib, now).graph()` with the daemon's `facts_of`.
//!
//! Simplifications: no raft (a write is committed when the simulator applies it; the
//! "raft index" is a counter of applied entries, refused ones included); every follower is
//! one and the same document, so a scheduler run always sees every acknowledged write
//! (read-your-writes holds trivially; a follower that is ahead is modelled, one that is
//! behind is not); combined writes (`records::combine`) are applied one by one, which the
//! controller's own test shows is equivalent.
//!
//! The controllers' writers (`impl Sim` below) perform writes in order, one at a time,
//! and offer a write raft cannot take (a partition without a majority) again for 30 s,
//! like the daemon's writer; a write handed over by a writer that dies may still commit.

use cib::xml::{Document, Element};
use controld::core::{CibFacts, Input};
use proto::cib as pb;
use rand::Rng;
use scheduler::graph::Graph;

use crate::world::{Ctl, Delivery, Event, Sim};

/// What a cluster runs: the nodes and the resources of the generated configuration.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// (node id, name), ids 1..=n.
    pub nodes: Vec<(u32, String)>,
    /// Ids of the ocf:heartbeat:Dummy primitives.
    pub dummies: Vec<String>,
    /// `resource-stickiness` in `rsc_defaults` (0: none).
    pub stickiness: u32,
    /// A preferred node per dummy (location constraint, score 50), if any.
    pub preferences: Vec<(String, String)>,
}

/// The fencing device's resource id (a `stonith:fence_dummy` primitive).
pub const FENCE_DEVICE: &str = "fencing";

impl ClusterSpec {
    /// Every configured primitive: the fencing device and the dummies.
    pub fn resources(&self) -> Vec<String> {
        let mut v = vec![FENCE_DEVICE.to_string()];
        v.extend(self.dummies.iter().cloned());
        v
    }

    /// The genesis CIB (as `cibd::machine::genesis` builds it) with the configuration.
    pub fn cib_xml(&self) -> String {
        let nvpair = |set: &str, name: &str, value: &str| format!(r#"<nvpair id="{set}-{name}" name="{name}" value="{value}"/>"#);
        let props: String = [("stonith-enabled", "true"), ("cluster-delay", "5s"), ("stonith-timeout", "10s"), ("no-quorum-policy", "stop")].iter().map(|(k, v)| nvpair("opts", k, v)).collect();
        let nodes: String = self.nodes.iter().map(|(id, name)| format!(r#"<node id="{id}" uname="{name}"/>"#)).collect();
        let mon = |id: &str| format!(r#"<operations><op id="{id}-monitor-10s" name="monitor" interval="10s" timeout="20s"/></operations>"#);
        let mut rscs = format!(r#"<primitive id="{FENCE_DEVICE}" class="stonith" type="fence_dummy">{}</primitive>"#, mon(FENCE_DEVICE));
        for d in &self.dummies {
            rscs += &format!(r#"<primitive id="{d}" class="ocf" provider="heartbeat" type="Dummy">{}</primitive>"#, mon(d));
        }
        let cons: String = self.preferences.iter().map(|(r, n)| format!(r#"<rsc_location id="prefer-{r}" rsc="{r}" node="{n}" score="50"/>"#)).collect();
        let defaults = if self.stickiness > 0 {
            format!(r#"<rsc_defaults><meta_attributes id="rsc-defaults">{}</meta_attributes></rsc_defaults>"#, nvpair("rsc-defaults", "resource-stickiness", &self.stickiness.to_string()))
        } else {
            String::new()
        };
        format!(
            r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config><cluster_property_set id="opts">{props}</cluster_property_set></crm_config><nodes>{nodes}</nodes><resources>{rscs}</resources><constraints>{cons}</constraints>{defaults}</configuration><status/></cib>"#
        )
    }
}

/// The shared CIB.
pub struct SimCib {
    pub doc: Document,
    /// Entries applied (the raft index of the last one).
    pub index: u64,
}

/// The outcome of one write: what the writer reports, and whether a change was committed
/// (and if so whether it needs a new plan, per `replan_needed`).
pub struct Applied {
    pub result: Result<u64, String>,
    pub change: Option<bool>,
}

fn op_of(w: &pb::WriteRequest) -> Result<cib::ops::Op, String> {
    use pb::write_request::Op as W;
    let parse = |s: &str| cib::xml::parse(s).map(|d| d.root).map_err(|e| e.to_string());
    Ok(match w.op.as_ref().ok_or("an empty write")? {
        W::Modify(m) => cib::ops::Op::Modify { xml: parse(&m.xml)? },
        W::Patch(p) => cib::ops::Op::Patch { diff: parse(&p.xml)? },
        W::Replace(r) => cib::ops::Op::Replace { section: (!r.section.is_empty()).then(|| r.section.clone()), xml: parse(&r.xml)? },
        W::Create(c) => cib::ops::Op::Create { section: c.section.clone(), xml: parse(&c.xml)? },
        W::Delete(d) => cib::ops::Op::Delete { xml: parse(&d.xml)? },
    })
}

impl SimCib {
    pub fn new(spec: &ClusterSpec) -> SimCib {
        let doc = cib::xml::parse(&spec.cib_xml()).expect("the generated CIB is well-formed");
        cib::Cib::from_document(doc.clone()).unwrap_or_else(|e| panic!("the generated CIB is valid: {e}"));
        SimCib { doc, index: 0 }
    }

    /// Commit one write, as the replicated state machine would (a refusal changes nothing).
    pub fn apply(&mut self, w: &pb::WriteRequest) -> Applied {
        self.index += 1;
        let next = op_of(w).and_then(|op| cib::ops::apply(&self.doc, &op).map_err(|e| e.to_string()));
        match next {
            Err(e) => Applied { result: Err(e), change: None },
            Ok(next) if cib::ops::same(&self.doc.root, &next.root) => Applied { result: Ok(0), change: None },
            Ok(next) => {
                let patch: Element = cib::diff::diff(&self.doc, &next);
                let change = cibclient::Change { index: self.index, patch };
                self.doc = next;
                Applied { result: Ok(self.index), change: Some(controld::daemon::replan_needed(&change)) }
            }
        }
    }

    /// The scheduler over the current document, as the daemon runs it.
    pub fn schedule(&self, epoch_s: i64, minority: Option<&controld::core::Minority>) -> Option<(Graph, CibFacts)> {
        let mut doc = self.doc.clone();
        if let Some(m) = minority {
            controld::records::minority_view(&mut doc, m);
        }
        let cib = cib::Cib::from_document(doc).ok()?;
        let now = chrono::DateTime::from_timestamp(epoch_s, 0)?.naive_utc();
        let graph = scheduler::schedule(&cib, now).graph();
        Some((graph, controld::daemon::facts_of(&cib)))
    }
}

/// How long the daemon's writer offers a write raft cannot take (`WRITE_RETRY_FOR`).
const WRITE_RETRY_MS: u64 = 30_000;

impl Sim {
    /// Whether a node's CIB replica can reach a raft majority: always, unless a partition
    /// leaves it with a minority of the nodes (node deaths do not count: the voter set is
    /// assumed to shrink once the dead are fenced, as the blueprint plans).
    pub fn raft_reachable(&self, node: u32) -> bool {
        let Some(groups) = &self.partition else {
            return true;
        };
        let up: Vec<u32> = self.nodes.values().filter(|n| n.up).map(|n| n.id).collect();
        groups.iter().find(|g| g.contains(&node)).is_some_and(|g| up.iter().filter(|n| g.contains(n)).count() * 2 > self.nodes.len())
    }

    /// The controller's writer: the next write, in order, one at a time.
    pub fn writer_step(&mut self, node: u32, inc: u64) {
        if self.ctl_inc(node) != Some(inc) {
            return;
        }
        let now = self.now;
        let reachable = self.raft_reachable(node);
        let c = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()).expect("controller");
        let Some(front) = c.writes.front_mut() else {
            c.writer_busy = false;
            return;
        };
        let (tag, result) = if reachable {
            let (tag, write, _) = c.writes.pop_front().expect("checked");
            (tag, self.commit(&write))
        } else {
            let first = *front.2.get_or_insert(now);
            if now < first + WRITE_RETRY_MS {
                self.at(now + 500, Event::WriterStep { node, inc });
                return;
            }
            let (tag, _, _) = c.writes.pop_front().expect("checked");
            (tag, Err("no raft leader: this partition has no majority (simulated)".to_string()))
        };
        if let Err(e) = &result {
            self.log(format!("node {node}: write {tag} refused: {e}"));
        }
        self.feed(node, Input::WriteDone { tag, result });
        if let Some(c) = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()).filter(|c| c.inc == inc) {
            if c.writes.is_empty() {
                c.writer_busy = false;
            } else {
                self.after(1, 10, Event::WriterStep { node, inc });
            }
        }
    }

    /// A controller died (`node`, `reachable`: whether its CIB could reach the raft majority
    /// then): the write its writer had handed to the CIB may still commit.
    pub fn writes_of_the_dead(&mut self, ctl: Option<Ctl>, reachable: bool) {
        let Some(c) = ctl else { return };
        if let Some((_, w, _)) = c.writes.front().filter(|_| c.writer_busy && reachable) {
            if self.rng.gen_bool(0.5) {
                let w = w.clone();
                self.after(1, 10, Event::Ghost { write: w });
            }
        }
    }

    /// Commit a write to the shared CIB; every live controller's follower sees the change
    /// (one cut off from the raft majority sees it once the partition heals).
    pub fn commit(&mut self, write: &proto::cib::WriteRequest) -> Result<u64, String> {
        self.commit_as(write, false)
    }

    /// `commit`; `replan`: the change asks the DC for a new plan whatever it touches (an
    /// administrator's refresh goes through the DC in Pacemaker, which then probes again).
    fn commit_as(&mut self, write: &proto::cib::WriteRequest, replan: bool) -> Result<u64, String> {
        let applied = self.cib.apply(write);
        if let Some(replan) = applied.change.map(|r| r || replan) {
            let live: Vec<u32> = self.nodes.values().filter(|n| n.up && n.ctl.is_some()).map(|n| n.id).collect();
            for n in live {
                if self.raft_reachable(n) {
                    self.after(0, 5, Event::Deliver { node: n, inc: None, what: Delivery::Input(Input::CibChanged { replan }) });
                } else {
                    self.behind.insert(n);
                }
            }
        }
        applied.result
    }

    /// The administrator refreshes every resource, as `crm_resource --refresh` would
    /// (written straight to the CIB here, not through the DC): every `fail-count-*` /
    /// `last-failure-*` attribute and every node's resource history go, so the DC probes
    /// everything again.
    pub fn cleanup_failures(&mut self) {
        let mut writes = Vec::new();
        if let Some(status) = self.cib.doc.root.child("status") {
            for ns in status.children_named("node_state") {
                let Some(id) = ns.id() else { continue };
                let names: Vec<String> = ns
                    .iter_descendants()
                    .filter(|e| e.name == "nvpair")
                    .filter_map(|e| e.attr("name"))
                    .filter(|n| n.starts_with("fail-count-") || n.starts_with("last-failure-"))
                    .map(str::to_string)
                    .collect();
                if !names.is_empty() {
                    writes.push(controld::records::delete_transient_attrs(id, &names));
                }
                for r in ns.iter_descendants().filter(|e| e.name == "lrm_resource") {
                    if let Some(rsc) = r.id() {
                        writes.push(controld::records::delete_resource_history(id, rsc));
                    }
                }
            }
        }
        self.log(format!("the administrator refreshes every resource ({} writes)", writes.len()));
        self.cleaned_up = true;
        for w in writes {
            let _ = self.commit_as(&w, true);
        }
    }
}
