//! The simulated membership layer as the controllers see it: the ring, quorum, and the
//! controllers' process group (CPG) with its virtual synchrony (MEMBERSHIP-NOTES; the
//! daemon side in `controld/src/daemon.rs`: a configuration change is preceded by a
//! quorum query, `left` carries whether the node left the membership).
//!
//! The model: the membership "settles" whenever something it can see changes (a node
//! formed into the ring, a loss detected after a token timeout, a controller process that
//! joined or left the group). At a settle every live node gets, through its FIFO of group
//! events, its new ring and quorum, and if its controller is in the group the change of
//! the group (`members`, `joined` as CPG reports it: a newcomer sees only the newcomers,
//! an old member sees who is new; `left` with `node_down`). A broadcast is ordered when
//! its sender's sender task hands it over: it then goes to the members of the sender's
//! current view, into each one's FIFO. Every member therefore sees the same messages and
//! changes in the same order, and a message ordered before a change reaches exactly the
//! members of the old view (virtual synchrony); a message of a dead sender that was not
//! yet ordered is lost.
//!
//! Quorum: a simple majority of the configured nodes; two nodes use votequorum's
//! `two_node` with `wait_for_all` (quorate alone only after both were seen together
//! since boot).
//!
//! Simplifications: no token loss other than node death or partition; messages ordered in
//! the old view during a partition's detection are still delivered to the whole view (a
//! legal virtual-synchrony execution); no message loss or duplication inside the group.

use std::collections::BTreeSet;

use controld::core::Input;
use proto::controld as pb;
use rand::Rng;

use crate::world::{Delivery, Event, Sim};

impl Sim {
    /// Connected groups of the given nodes under the current partition.
    pub fn components(&self, of: &[u32]) -> Vec<BTreeSet<u32>> {
        let mut out: Vec<BTreeSet<u32>> = Vec::new();
        match &self.partition {
            None => {
                if !of.is_empty() {
                    out.push(of.iter().copied().collect());
                }
            }
            Some(groups) => {
                for g in groups {
                    let c: BTreeSet<u32> = of.iter().copied().filter(|n| g.contains(n)).collect();
                    if !c.is_empty() {
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    /// Whether two nodes can talk (no partition between them).
    pub fn connected(&self, a: u32, b: u32) -> bool {
        self.partition.as_ref().is_none_or(|gs| gs.iter().any(|g| g.contains(&a) && g.contains(&b)))
    }

    /// A partition heals: the ring forms again shortly, and followers that were cut off
    /// from the raft majority catch up (their controllers see a change).
    pub fn heal(&mut self) {
        if self.partition.take().is_none() {
            return;
        }
        self.log("the partition heals".into());
        self.after(200, 1500, Event::Settle);
        for n in std::mem::take(&mut self.behind) {
            self.after(0, 5, Event::Deliver { node: n, inc: None, what: Delivery::Input(Input::CibChanged { replan: true }) });
        }
    }

    /// Whether a ring is quorate for a node (`wfa`: its wait_for_all is satisfied).
    pub fn quorate(&self, ring_len: usize, wfa: bool) -> bool {
        let n = self.nodes.len();
        if n == 2 {
            wfa && ring_len >= 1
        } else {
            ring_len * 2 > n
        }
    }

    /// Recompute every live node's ring, quorum and group view; queue the changes.
    pub fn settle(&mut self) {
        let visible: Vec<u32> = self.nodes.values().filter(|n| n.visible).map(|n| n.id).collect();
        let newcomers: BTreeSet<u32> = self.nodes.values().filter(|n| n.visible && n.ctl_joined && n.group_view.is_empty()).map(|n| n.id).collect();
        let total = self.nodes.len();
        for comp in self.components(&visible) {
            let ring: BTreeSet<u32> = comp.clone();
            let group: BTreeSet<u32> = comp.iter().copied().filter(|m| self.nodes[m].ctl_joined).collect();
            self.next_view += 1;
            let view = self.next_view;
            for &id in &comp {
                if !self.nodes[&id].up {
                    continue;
                }
                if total == 2 && ring.len() == 2 {
                    self.nodes.get_mut(&id).expect("node").wfa = true;
                }
                let quorate = self.quorate(ring.len(), self.nodes[&id].wfa);
                let n = &self.nodes[&id];
                let ring_changed = n.ring_view != ring || n.quorate_view != Some(quorate);
                let confchg = if n.ctl_joined && group != n.group_view {
                    let joined: Vec<u32> = if n.group_view.is_empty() { group.intersection(&newcomers).copied().collect() } else { group.difference(&n.group_view).copied().collect() };
                    let left: Vec<(u32, bool)> = n.group_view.difference(&group).map(|&m| (m, !ring.contains(&m))).collect();
                    Some((group.iter().copied().collect::<Vec<u32>>(), joined, left))
                } else {
                    None
                };
                let inc = n.ctl.as_ref().map(|c| c.inc);
                let n = self.nodes.get_mut(&id).expect("node");
                n.ring_view = ring.clone();
                n.quorate_view = Some(quorate);
                if n.ctl_joined {
                    n.group_view = group.clone();
                }
                let Some(inc) = inc else { continue };
                if ring_changed || confchg.is_some() {
                    if let Some((m, j, l)) = &confchg {
                        self.log(format!("node {id}: confchg members {m:?} joined {j:?} left {l:?}, quorate {quorate}"));
                    }
                    let what = Delivery::Membership { quorate, ring: ring.iter().copied().collect(), confchg: confchg.clone(), view };
                    self.deliver_group(id, confchg.is_some().then_some(inc), what);
                }
            }
        }
    }

    /// Queue a group event for a node, after everything queued for it before.
    fn deliver_group(&mut self, node: u32, inc: Option<u64>, what: Delivery) {
        let d = self.rng.gen_range(0..=3);
        let n = self.nodes.get_mut(&node).expect("node");
        n.group_at = n.group_at.max(self.now + d);
        let at = n.group_at;
        self.at(at, Event::Deliver { node, inc, what });
    }

    /// A broadcast reaches the total order: it goes to the sender's current view.
    pub fn order(&mut self, node: u32, inc: u64, msg: pb::PeerMessage) {
        let n = &self.nodes[&node];
        if !n.up || !n.ctl_joined || n.ctl.as_ref().map(|c| c.inc) != Some(inc) {
            return;
        }
        if matches!(msg.body, Some(pb::peer_message::Body::Join(_))) {
            self.check.join_sent(node);
        }
        let to: Vec<u32> = n.group_view.iter().copied().collect();
        for r in to {
            let m = &self.nodes[&r];
            let Some(rinc) = m.ctl.as_ref().map(|c| c.inc).filter(|_| m.up && m.ctl_joined) else {
                continue;
            };
            self.deliver_group(r, Some(rinc), Delivery::Input(Input::Peer { from: node, msg: msg.clone() }));
        }
    }

    /// A delivery reaches a node's controller (the one it was meant for, if it names one).
    pub fn deliver(&mut self, node: u32, inc: Option<u64>, what: Delivery) {
        let n = &self.nodes[&node];
        let Some(cur) = n.ctl.as_ref().map(|c| c.inc) else {
            return;
        };
        if !n.up || inc.is_some_and(|i| i != cur) {
            return;
        }
        match what {
            Delivery::Membership { quorate, ring, confchg, view } => {
                self.feed(node, Input::Quorum { quorate, ring });
                if let Some((members, joined, left)) = confchg {
                    self.nodes.get_mut(&node).expect("node").view = view;
                    self.feed(node, Input::Confchg { members, joined, left });
                }
            }
            Delivery::Input(i) => self.feed(node, i),
        }
    }
}
