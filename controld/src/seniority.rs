//! Who is the DC: the oldest member of the controllers' process group, as a function of
//! the group's agreed history (no election, no timer).
//!
//! Spec: CONTROLLER-NOTES §1 (what Pacemaker's election decides) and §9 ("DC = a
//! deterministic function of the agreed controller-group membership"); CPG's virtual
//! synchrony (every member sees the same configuration changes and messages in the same
//! order from the moment it joins).
//!
//! Every member keeps the group's members in order of seniority. A change that only
//! removes members is applied by everyone alike, so a lost DC is replaced within that
//! same change, with no message. A change that adds members cannot be applied alone: a
//! newcomer does not know the history, and after a partition heals each side has its own.
//! Then the head of each side's order (the DC of that side) announces its order with the
//! newcomers appended (sorted by node id), and every member adopts the **first**
//! announcement delivered that names exactly the current members: the group's total order
//! makes it the same one everywhere. Until then nobody is DC. A group that forms with
//! every member new at once (a cold start seen in one change) orders itself by node id.
//!
//! Stability: a node that rejoins is appended, so it never takes the role back (§1.4).
//!
//! Liveness when everyone who knew the order is gone: a newcomer counts as possible
//! announcers the members that were there when it joined; once all of them have left with
//! no announcement delivered, nobody can owe one, and the newcomer announces the members
//! sorted by node id itself (the earliest newcomer still present always gets there, so
//! some announcement always comes; the first delivered wins, as always).
//!
//! Deliberate deviations from Pacemaker: no feature-set or CPU-time comparison (§1.1); a
//! node whose controller restarts loses its seniority. Quorum is not this module's:
//! the caller acts as DC only while its partition is quorate.

use std::collections::BTreeSet;

#[derive(Debug, Clone)]
pub struct Seniority {
    me: u32,
    members: BTreeSet<u32>,
    /// The agreed order; None while an announcement is awaited.
    order: Option<Vec<u32>>,
    /// What this member knew before the awaited announcement (None for a newcomer): the
    /// order it would announce.
    basis: Option<Vec<u32>>,
    /// For a newcomer: the members that may know the order (there before it joined).
    knowers: BTreeSet<u32>,
}

impl Seniority {
    pub fn new(me: u32) -> Seniority {
        Seniority { me, members: BTreeSet::new(), order: None, basis: None, knowers: BTreeSet::new() }
    }

    /// A configuration change of the group (`members` after it). Returns the order this
    /// member must announce, if it is the head of its side.
    pub fn on_confchg(&mut self, members: &[u32], joined: &[u32], left: &[u32]) -> Option<Vec<u32>> {
        self.members = members.iter().copied().collect();
        let everyone_new = !self.members.is_empty() && self.members.iter().all(|m| joined.contains(m));
        if everyone_new || (self.members.len() == 1 && self.members.contains(&self.me)) {
            let order: Vec<u32> = self.members.iter().copied().collect();
            self.order = Some(order.clone());
            self.basis = Some(order);
            return None;
        }
        if joined.contains(&self.me) {
            // A newcomer: it learns the order from an announcement.
            self.order = None;
            self.basis = None;
            self.knowers = self.members.iter().copied().filter(|m| !joined.contains(m)).collect();
            return None;
        }
        self.knowers.retain(|m| members.contains(m) && !left.contains(m));
        if self.order.is_none() && self.basis.is_none() && self.knowers.is_empty() {
            // Everyone who could announce is gone: this newcomer does (see the module doc).
            let order: Vec<u32> = self.members.iter().copied().collect();
            self.basis = Some(order.clone());
            return Some(order);
        }
        let apply = |o: &Vec<u32>| -> Vec<u32> {
            let mut v: Vec<u32> = o.iter().copied().filter(|m| self.members.contains(m) && !left.contains(m)).collect();
            let mut new: Vec<u32> = self.members.iter().copied().filter(|m| !v.contains(m)).collect();
            new.sort_unstable();
            v.extend(new);
            v
        };
        let basis = self.order.as_ref().or(self.basis.as_ref()).map(apply);
        self.basis = basis.clone();
        if joined.is_empty() && self.order.is_some() {
            self.order = basis;
            return None;
        }
        self.order = None;
        basis.filter(|b| b.first() == Some(&self.me))
    }

    /// An announced order. Adopted only while one is awaited and only if it names exactly
    /// the current members; anything else (a late or stale announcement) is ignored.
    pub fn on_announce(&mut self, order: &[u32]) -> bool {
        if self.order.is_some() {
            return false;
        }
        let set: BTreeSet<u32> = order.iter().copied().collect();
        if set.len() != order.len() || set != self.members {
            return false;
        }
        self.order = Some(order.to_vec());
        self.basis = self.order.clone();
        true
    }

    /// The DC (the oldest member), once the order is agreed.
    pub fn dc(&self) -> Option<u32> {
        self.order.as_ref().and_then(|o| o.first().copied())
    }

    pub fn order(&self) -> Option<&[u32]> {
        self.order.as_deref()
    }

    pub fn members(&self) -> &BTreeSet<u32> {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group of members driven by the same sequence of changes and deliveries.
    struct Group {
        nodes: Vec<Seniority>,
    }

    impl Group {
        fn node(&mut self, id: u32) -> &mut Seniority {
            self.nodes.iter_mut().find(|n| n.me == id).unwrap()
        }

        /// Deliver a change to the given members, then every announcement (in order) to them.
        fn change(&mut self, to: &[u32], members: &[u32], joined: &[u32], left: &[u32]) {
            let mut announcements = Vec::new();
            for &id in to {
                if let Some(o) = self.node(id).on_confchg(members, joined, left) {
                    announcements.push(o);
                }
            }
            for o in announcements {
                for &id in to {
                    self.node(id).on_announce(&o);
                }
            }
        }

        fn dcs(&self, ids: &[u32]) -> BTreeSet<Option<u32>> {
            self.nodes.iter().filter(|n| ids.contains(&n.me)).map(|n| n.dc()).collect()
        }
    }

    #[test]
    fn cold_start_in_one_change_orders_by_node_id() {
        let mut g = Group { nodes: (1..=3).map(Seniority::new).collect() };
        g.change(&[1, 2, 3], &[1, 2, 3], &[1, 2, 3], &[]);
        assert_eq!(g.dcs(&[1, 2, 3]), BTreeSet::from([Some(1)]));
    }

    #[test]
    fn staggered_start_keeps_the_first_and_a_rejoiner_does_not_take_over() {
        let mut g = Group { nodes: (1..=3).map(Seniority::new).collect() };
        g.change(&[3], &[3], &[3], &[]);
        g.change(&[3, 1], &[1, 3], &[1], &[]);
        g.change(&[3, 1, 2], &[1, 2, 3], &[2], &[]);
        assert_eq!(g.dcs(&[1, 2, 3]), BTreeSet::from([Some(3)]));
        assert_eq!(g.node(2).order(), Some(&[3, 1, 2][..]));
        // The DC leaves: the next oldest takes over in the same change, with no message.
        g.change(&[1, 2], &[1, 2], &[], &[3]);
        assert_eq!(g.dcs(&[1, 2]), BTreeSet::from([Some(1)]));
        // It comes back: appended, the DC stays.
        g.nodes[2] = Seniority::new(3);
        g.change(&[1, 2, 3], &[1, 2, 3], &[3], &[]);
        assert_eq!(g.dcs(&[1, 2, 3]), BTreeSet::from([Some(1)]));
        assert_eq!(g.node(3).order(), Some(&[1, 2, 3][..]));
    }

    #[test]
    fn a_healed_partition_agrees_on_one_dc() {
        let mut g = Group { nodes: (1..=4).map(Seniority::new).collect() };
        g.change(&[1, 2, 3, 4], &[1, 2, 3, 4], &[1, 2, 3, 4], &[]);
        // Split {1,2} | {3,4}: each side has its own DC.
        g.change(&[1, 2], &[1, 2], &[], &[3, 4]);
        g.change(&[3, 4], &[3, 4], &[], &[1, 2]);
        assert_eq!(g.dcs(&[1, 2]), BTreeSet::from([Some(1)]));
        assert_eq!(g.dcs(&[3, 4]), BTreeSet::from([Some(3)]));
        // Merge: each side sees the other join; both heads announce; the first wins.
        let mut announcements = Vec::new();
        for id in [1, 2] {
            announcements.extend(g.node(id).on_confchg(&[1, 2, 3, 4], &[3, 4], &[]));
        }
        for id in [3, 4] {
            announcements.extend(g.node(id).on_confchg(&[1, 2, 3, 4], &[1, 2], &[]));
        }
        assert_eq!(announcements.len(), 2);
        assert_eq!(g.dcs(&[1, 2, 3, 4]), BTreeSet::from([None]), "nobody is DC until the order is agreed");
        // Delivered in the other order on purpose: the side of node 3 wins everywhere.
        announcements.reverse();
        for o in &announcements {
            for id in 1..=4 {
                g.node(id).on_announce(o);
            }
        }
        assert_eq!(g.dcs(&[1, 2, 3, 4]), BTreeSet::from([Some(3)]));
    }

    #[test]
    fn stale_announcements_are_ignored() {
        let mut s = Seniority::new(2);
        s.on_confchg(&[1, 2], &[2], &[]);
        assert!(!s.on_announce(&[1]), "does not name the members");
        assert!(!s.on_announce(&[1, 2, 2]), "duplicates");
        assert!(s.on_announce(&[1, 2]));
        assert!(!s.on_announce(&[2, 1]), "already agreed");
        assert_eq!(s.dc(), Some(1));
    }

    #[test]
    fn a_leave_while_waiting_makes_the_new_head_announce() {
        let mut g = Group { nodes: (1..=3).map(Seniority::new).collect() };
        g.change(&[1, 2], &[1, 2], &[1, 2], &[]);
        // 3 joins; before 1's announcement is delivered, 1 leaves.
        assert_eq!(g.node(1).on_confchg(&[1, 2, 3], &[3], &[]), Some(vec![1, 2, 3]));
        g.node(2).on_confchg(&[1, 2, 3], &[3], &[]);
        g.node(3).on_confchg(&[1, 2, 3], &[3], &[]);
        let again = g.node(2).on_confchg(&[2, 3], &[], &[1]);
        g.node(3).on_confchg(&[2, 3], &[], &[1]);
        // 1's late announcement no longer names the members; 2's does.
        assert!(!g.node(3).on_announce(&[1, 2, 3]));
        let o = again.expect("2 heads its order now");
        for id in [2, 3] {
            assert!(g.node(id).on_announce(&o));
        }
        assert_eq!(g.dcs(&[2, 3]), BTreeSet::from([Some(2)]));
    }
}
