//! Membership: Gather (agree on who is in the next ring), Commit (the commit token goes
//! round twice), Recovery (old-ring messages exchanged so that nodes moving together
//! delivered the same ones), then the transitional and regular configurations.
//! MEMBERSHIP-NOTES sections 2.3-2.6; deviations are listed in `mod.rs`.

use std::collections::BTreeSet;

use super::*;
use crate::wire::MemberEntry;

impl Totem {
    pub(super) fn enter_gather(&mut self) {
        if self.state == State::Recovery {
            // Abandon the ring being installed: the old one is still ours.
            if let Some(old) = self.old.take() {
                self.cur = old;
            }
            self.recovery_queue.clear();
        }
        self.pending_new.clear();
        self.commit = None;
        self.holding = None;
        self.state = State::Gather;
        self.proc_set.insert(self.me);
        self.fail_set.remove(&self.me);
        for t in [Timer::TokenLoss, Timer::TokenRetransmit, Timer::Hold, Timer::Merge] {
            self.disarm(t);
        }
        self.last_token_sent = None;
        // Agreement is per Gather round: old joins must not make a stale consensus.
        self.last_join.clear();
        self.restart_gather();
    }

    /// Announce our current view and give the others a consensus period to agree with it.
    fn restart_gather(&mut self) {
        self.send_join();
        self.arm(Timer::Consensus, self.cfg.consensus_ms);
        self.check_consensus();
    }

    pub(super) fn send_join(&mut self) {
        let j = Join { sender: self.me, proc_set: self.proc_set.clone(), fail_set: self.fail_set.clone(), ring_seq: self.highest_ring_seq };
        self.send(Dest::All, Packet::Join(j));
        self.arm(Timer::Join, self.cfg.join_ms);
    }

    fn active(&self) -> BTreeSet<NodeId> {
        self.proc_set.difference(&self.fail_set).copied().collect()
    }

    pub(super) fn on_join(&mut self, j: Join) {
        if j.sender == self.me || j.sender == 0 {
            return;
        }
        self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
        match self.state {
            State::Operational => {
                let member = self.cur.members.contains(&j.sender);
                if (member && j.ring_seq < self.cur.ring.seq) || j.fail_set.contains(&self.me) {
                    return; // stale, or a node that gave up on us (it will form its own ring)
                }
                self.proc_set = self.cur.members.iter().copied().collect();
                self.fail_set.clear();
                self.enter_gather();
                self.gather_join(j);
            }
            State::Commit | State::Recovery => {
                let theirs: BTreeSet<NodeId> = j.proc_set.difference(&j.fail_set).copied().collect();
                let ours: BTreeSet<NodeId> = self.commit.as_ref().map(|c| c.members.iter().copied().collect()).unwrap_or_default();
                // A late join from the agreement we are installing, or from a node this round
                // already gave up on: finish installing; the node can merge in afterwards
                // (fail sets only grow within a round, which keeps rounds from oscillating).
                if theirs == ours || self.fail_set.contains(&j.sender) || j.fail_set.contains(&self.me) && !ours.contains(&j.sender) {
                    return;
                }
                self.enter_gather();
                self.gather_join(j);
            }
            State::Gather => self.gather_join(j),
        }
    }

    fn gather_join(&mut self, j: Join) {
        self.last_join.insert(j.sender, (j.proc_set.clone(), j.fail_set.clone()));
        if j.proc_set == self.proc_set && j.fail_set == self.fail_set {
            self.check_consensus();
            return;
        }
        if j.proc_set.is_subset(&self.proc_set) && j.fail_set.is_subset(&self.fail_set) {
            return; // it will come round to our view
        }
        if self.fail_set.contains(&j.sender) {
            return;
        }
        let before = (self.proc_set.clone(), self.fail_set.clone());
        self.proc_set.extend(j.proc_set.iter().copied());
        if j.fail_set.contains(&self.me) {
            // Suspicion is made symmetric so asymmetric links split cleanly.
            self.fail_set.insert(j.sender);
        } else if self.cur.members.contains(&j.sender) {
            self.fail_set.extend(j.fail_set.iter().copied().filter(|&n| n != self.me));
        }
        // Only a changed view restarts the consensus period; otherwise a peer repeating its
        // join would hold our consensus timer off forever.
        if before != (self.proc_set.clone(), self.fail_set.clone()) {
            self.restart_gather();
        }
    }

    fn check_consensus(&mut self) {
        if self.state != State::Gather {
            return;
        }
        let active = self.active();
        let agreed = active.iter().all(|&n| {
            n == self.me || self.last_join.get(&n).is_some_and(|(p, f)| *p == self.proc_set && *f == self.fail_set)
        });
        if !agreed || active.first() != Some(&self.me) {
            return;
        }
        // We are the representative of the agreed membership: create the commit token.
        let seq = self.highest_ring_seq.max(self.cur.ring.seq) + 4;
        self.highest_ring_seq = seq;
        let members: Vec<NodeId> = active.into_iter().collect();
        let ct = CommitToken {
            ring: RingId { rep: self.me, seq },
            entries: vec![MemberEntry::default(); members.len()],
            members,
            rotation: 1,
            token_seq: 0,
        };
        self.accept_commit(ct);
    }

    pub(super) fn on_consensus_timeout(&mut self) {
        if self.state != State::Gather {
            return;
        }
        // Whoever has not agreed with us by now is given up on.
        let silent: Vec<NodeId> = self
            .active()
            .into_iter()
            .filter(|&n| n != self.me && !self.last_join.get(&n).is_some_and(|(p, f)| *p == self.proc_set && *f == self.fail_set))
            .collect();
        self.fail_set.extend(silent);
        self.fail_set.remove(&self.me);
        self.restart_gather();
    }

    pub(super) fn on_token_loss(&mut self) {
        match self.state {
            State::Operational | State::Commit | State::Recovery => {
                let members: Vec<NodeId> = match self.state {
                    State::Operational => self.cur.members.clone(),
                    _ => self.old.as_ref().map(|o| o.members.clone()).unwrap_or_else(|| self.cur.members.clone()),
                };
                self.proc_set.extend(members);
                self.fail_set.clear();
                self.enter_gather();
            }
            State::Gather => {}
        }
    }

    /// Something from a node outside our ring: it should be in our next ring.
    pub(super) fn on_foreign(&mut self, sender: NodeId, ring: RingId) {
        if sender == self.me || ring == self.cur.ring || !self.cfg.nodes.contains(&sender) {
            return;
        }
        match self.state {
            State::Operational => {
                if self.cur.members.contains(&sender) {
                    return; // a late packet of an older ring of ours
                }
                self.proc_set = self.cur.members.iter().copied().collect();
                self.proc_set.insert(sender);
                self.fail_set.clear();
                self.enter_gather();
            }
            State::Gather => {
                if !self.proc_set.contains(&sender) && !self.fail_set.contains(&sender) {
                    self.proc_set.insert(sender);
                    self.restart_gather();
                }
            }
            State::Commit | State::Recovery => {}
        }
    }

    /// First rotation: record our old-ring state in the commit token and pass it on.
    fn accept_commit(&mut self, mut ct: CommitToken) {
        let Some(i) = ct.members.iter().position(|&m| m == self.me) else { return };
        ct.entries[i] = MemberEntry {
            old_ring: self.cur.ring,
            old_aru: self.cur.aru,
            high_delivered: self.cur.delivered,
            received_flg: self.cur.aru >= self.cur.high,
            filled: true,
        };
        self.highest_ring_seq = self.highest_ring_seq.max(ct.ring.seq);
        self.persisted_seq = self.persisted_seq.max(ct.ring.seq);
        self.outputs.push_back(Output::PersistRingSeq(ct.ring.seq));
        self.state = State::Commit;
        self.disarm(Timer::Consensus);
        self.disarm(Timer::Join);
        ct.token_seq += 1;
        self.commit = Some(ct.clone());
        let next = Self::successor(&ct.members, self.me);
        self.send_token(next, Packet::Commit(ct));
    }

    pub(super) fn on_commit_token(&mut self, mut ct: CommitToken) {
        if !ct.members.contains(&self.me) || ct.members.len() != ct.entries.len() || ct.members.is_empty() {
            return;
        }
        let rep = ct.members[0] == self.me;
        match self.state {
            State::Gather if ct.rotation == 1 && !rep => {
                let ours: Vec<NodeId> = self.active().into_iter().collect();
                // Never join a ring whose sequence is not above any we have used: ring ids
                // must not repeat, across restarts too (our joins carry our highest sequence,
                // so the next attempt's representative will pick a higher one).
                if ours == ct.members && ct.ring.seq > self.cur.ring.seq && ct.ring.seq > self.persisted_seq {
                    self.accept_commit(ct);
                }
            }
            State::Commit if !rep && ct.rotation == 1 && self.commit.as_ref().is_some_and(|c| ct.ring.seq > c.ring.seq && c.members == ct.members) => {
                // The representative gave up on the round we are in and started a newer one.
                if ct.ring.seq > self.persisted_seq {
                    self.accept_commit(ct);
                }
            }
            State::Commit if self.commit.as_ref().is_some_and(|c| c.ring == ct.ring) => {
                if (rep && ct.rotation == 1 && ct.entries.iter().all(|e| e.filled)) || (!rep && ct.rotation == 2) {
                    ct.rotation = 2;
                    ct.token_seq += 1;
                    self.enter_recovery(&ct);
                    let next = Self::successor(&ct.members, self.me);
                    self.send_token(next, Packet::Commit(ct));
                }
            }
            State::Recovery if rep && ct.rotation == 2 && ct.ring == self.cur.ring && self.last_token_seq == 0 => {
                // Second rotation done: the first regular token of the new ring.
                let t = Token { ring: ct.ring, token_seq: 1, ..Default::default() };
                self.on_token(self.me, t);
            }
            _ => {}
        }
    }

    fn enter_recovery(&mut self, ct: &CommitToken) {
        let new = RingStore { ring: ct.ring, members: ct.members.clone(), ..Default::default() };
        let old = std::mem::replace(&mut self.cur, new);
        // Transitional peers: members of the new ring that come from our old ring.
        let peers: Vec<&MemberEntry> = ct.entries.iter().filter(|e| e.old_ring == old.ring).collect();
        let low = peers.iter().map(|e| e.old_aru).min().unwrap_or(old.aru);
        let all_had_all = peers.iter().all(|e| e.received_flg && e.old_aru == peers[0].old_aru);
        // Only application messages are re-sent: an old ring's own recovery traffic is spent.
        self.recovery_queue = if all_had_all {
            VecDeque::new()
        } else {
            old.msgs.range(low + 1..).filter(|(_, m)| matches!(m.body, Body::App(_))).map(|(_, m)| m.clone()).collect()
        };
        self.old = Some(old);
        self.commit = Some(ct.clone());
        self.state = State::Recovery;
        self.last_token_seq = 0;
        self.prev_token_aru = 0;
        self.sent_last_visit = 0;
        self.backlog_last_visit = 0;
        self.retrans_clear_visits = 0;
        self.install_seq = None;
        self.install_covered_visits = 0;
        self.seq_unchanged_rotations = 0;
        self.last_seen_seq = 0;
        self.aru_stuck_visits = 0;
        for m in std::mem::take(&mut self.pending_new) {
            self.cur.insert(m);
        }
    }

    /// After each token visit in Recovery: decide the install point, then install once every
    /// member holds everything up to it.
    pub(super) fn recovery_visit(&mut self, t: &Token, prev_aru: u64) {
        if !t.retrans_prev && self.recovery_queue.is_empty() {
            self.retrans_clear_visits += 1;
        } else {
            self.retrans_clear_visits = 0;
        }
        if self.retrans_clear_visits >= 2 && self.install_seq.is_none() {
            self.install_seq = Some(t.seq);
        }
        let Some(install) = self.install_seq else { return };
        if t.aru >= install && prev_aru >= install && self.cur.aru >= install {
            self.install_covered_visits += 1;
        } else {
            self.install_covered_visits = 0;
        }
        if self.install_covered_visits >= 2 {
            self.install(install);
        }
    }

    fn install(&mut self, install: u64) {
        let Some(mut old) = self.old.take() else { return };
        let ct = self.commit.take().expect("commit token kept through Recovery");
        for (_, m) in self.cur.msgs.range(..=install) {
            if let Body::Recovered(inner) = &m.body {
                if inner.ring == old.ring {
                    old.insert((**inner).clone());
                }
            }
        }
        let trans: Vec<NodeId> = ct.members.iter().zip(&ct.entries).filter(|(_, e)| e.old_ring == old.ring).map(|(&m, _)| m).collect();
        // Old-ring messages: the contiguous ones in the old configuration...
        self.cur_swap_deliver(&mut old, false);
        let initial = old.ring.seq == 0 || (old.members == [self.me] && old.msgs.is_empty() && old.delivered == 0);
        if !initial {
            let left: Vec<NodeId> = old.members.iter().copied().filter(|m| !trans.contains(m)).collect();
            self.outputs.push_back(Output::Config(ConfigChange { kind: ConfigKind::Transitional, ring: old.ring, members: trans.clone(), left, joined: vec![] }));
        }
        // ...the rest, past holes nobody here can fill, in the transitional configuration.
        self.cur_swap_deliver(&mut old, true);
        // A fragmented message cut by the change is abandoned by receivers and re-sent whole.
        self.partial.clear();
        self.requeue_partial_message();
        let joined: Vec<NodeId> = ct.members.iter().copied().filter(|m| !trans.contains(m) || initial).collect();
        self.outputs.push_back(Output::Config(ConfigChange { kind: ConfigKind::Regular, ring: ct.ring, members: ct.members.clone(), left: vec![], joined }));
        self.state = State::Operational;
        self.stats.rings_formed += 1;
        self.install_seq = None;
        self.proc_set = ct.members.iter().copied().collect();
        self.fail_set.clear();
        self.last_join.clear();
        self.recovery_queue.clear();
        // Recovery traffic is not delivered; new-ring delivery starts after it.
        self.cur.delivered = install;
        self.deliver_ready();
        if self.cur.ring.rep == self.me {
            self.arm(Timer::Merge, self.cfg.merge_ms);
        }
    }

    /// Deliver the old ring's messages: the contiguous prefix, or (`past_holes`) the rest.
    fn cur_swap_deliver(&mut self, old: &mut RingStore, past_holes: bool) {
        loop {
            let next = if past_holes {
                match old.msgs.range(old.delivered + 1..).next() {
                    Some((&s, _)) => s,
                    None => break,
                }
            } else if old.delivered < old.aru {
                old.delivered + 1
            } else {
                break;
            };
            old.delivered = next;
            if let Some(m) = old.msgs.get(&next).cloned() {
                if let Body::App(app) = m.body {
                    self.deliver_app(m.ring, m.sender, app);
                }
            }
        }
    }
}
