//! votequorum: vote-based quorum as a sans-IO state machine (no clock, no I/O; time in ms).
//!
//! Spec: Corosync 3.1.7 votequorum(5) (behaviour only; no Corosync code or text is copied) as
//! summarised in `shared/MEMBERSHIP-NOTES.md` §5, invariant 12 of §3 and the quorum traps of §8.
//! Inputs: every regular configuration (`on_membership`, identical and identically ordered on
//! every member) and the last_man_standing timer (`poll_timeout`/`handle_timeout`).
//! Outputs: `status()` (what `halo quorum status` prints) and `poll_event()`.
//!
//! Rules: expected votes E start at `quorum.expected_votes` or the nodelist sum, are raised to the
//! present votes T when T exceeds them and are only lowered by last_man_standing. Quorum is
//! max(E/2+1, T/2+1) (integer division), or 1 with two_node. A node is quorate when T ≥ quorum,
//! or by auto_tie_breaker, and it is not waiting for all (wait_for_all).
//!
//! Deliberate deviations:
//! 1. No node-info exchange. Corosync members exchange (votes, expected, flags) during sync and
//!    take the highest expected votes, and a waiting node that meets a quorate one clears its
//!    waiting state. Here every node derives everything from its own configuration history, so
//!    `highest_expected == expected_votes` and a waiting node only stops waiting once all expected
//!    votes are present at once. Members that share their history (every split, and everyone
//!    after a common start) agree; after a merge of partitions whose histories diverged
//!    (LMS-lowered expected votes, re-armed waiting, a restarted node) members can disagree.
//!    Invariant 12 therefore needs an exchange on merges; the safety half (never two quorate
//!    partitions without two_node) holds without it, and the property test below checks it.
//! 2. Merges are conservative: a configuration that brings in nodes not in our previous one
//!    resets E to at least the configured value (a joiner may still carry it), and a node whose E
//!    had been lowered by last_man_standing keeps quorum across such a merge only if the members
//!    from its previous configuration would have kept it on their own.
//! 3. auto_tie_breaker `lowest`/`highest` name the lowest/highest configured nodeid (static, so two
//!    halves can never both hold it). A `<list>` names the first listed node of the previous
//!    configuration, and applies only to a plain split of a quorate configuration (the notes'
//!    "first listed node that was in the previous membership"; taking the first listed node that
//!    is present could make both halves of a 2|2 split quorate).
//! 4. last_man_standing's window (re)starts at every configuration after which we are quorate with
//!    fewer votes than expected, including a merge that reset E (deviation 2); on expiry E becomes T.
//! 5. Losing quorum re-arms wait_for_all only when it is set explicitly (notes: unverified).
//! 6. Members absent from a non-empty nodelist have 0 votes; without a nodelist every member has 1.
//! 7. allow_downscale, expected_votes_tracking, quorum devices and runtime changes of votes or
//!    expected votes are not implemented.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Default `last_man_standing_window` in milliseconds.
pub const DEFAULT_LMS_WINDOW_MS: u64 = 10_000;

/// `quorum.auto_tie_breaker_node`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TieBreaker {
    #[default]
    Lowest,
    Highest,
    List(Vec<u32>),
}

/// The `quorum {}` section plus the nodelist's votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// nodeid → quorum_votes.
    pub nodes: BTreeMap<u32, u32>,
    pub expected_votes: Option<u32>,
    pub two_node: bool,
    /// `None`: implied by (effective) two_node.
    pub wait_for_all: Option<bool>,
    pub last_man_standing: bool,
    pub last_man_standing_window_ms: u64,
    pub auto_tie_breaker: bool,
    pub auto_tie_breaker_node: TieBreaker,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        let (nodes, expected_votes, wait_for_all, auto_tie_breaker_node) = (BTreeMap::new(), None, None, TieBreaker::Lowest);
        let (two_node, last_man_standing, auto_tie_breaker) = (false, false, false);
        let last_man_standing_window_ms = DEFAULT_LMS_WINDOW_MS;
        QuorumConfig { nodes, expected_votes, two_node, wait_for_all, last_man_standing, last_man_standing_window_ms, auto_tie_breaker, auto_tie_breaker_node }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumConfigError {
    #[error("no expected votes: neither a nodelist nor quorum.expected_votes")]
    NoExpectedVotes,
    #[error("expected votes must be greater than 0")]
    ZeroExpectedVotes,
    #[error("nodeid 0 is reserved")]
    NodeIdZero,
    #[error("last_man_standing requires 1 vote per node (node {nodeid} has {votes})")]
    LastManStandingVotes { nodeid: u32, votes: u32 },
    #[error("auto_tie_breaker with an odd node count requires wait_for_all when last_man_standing is on")]
    TieBreakerOddWithLastManStanding,
    #[error("auto_tie_breaker requires a nodelist")]
    TieBreakerWithoutNodelist,
    #[error("auto_tie_breaker_node list is empty")]
    TieBreakerEmptyList,
    #[error("auto_tie_breaker_node lists node {0}, which is not in the nodelist")]
    TieBreakerUnknownNode(u32),
    #[error("local node {0} is not in the nodelist")]
    LocalNodeNotInNodelist(u32),
}

/// Configuration problems that do not stop votequorum (the option concerned is switched off).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumConfigWarning {
    #[error("two_node disabled: {0} nodes configured")]
    TwoNodeTooManyNodes(usize),
    #[error("two_node disabled: incompatible with auto_tie_breaker")]
    TwoNodeWithTieBreaker,
    #[error("auto_tie_breaker disabled: odd node count without wait_for_all")]
    TieBreakerOddWithoutWaitForAll,
    #[error("last_man_standing without wait_for_all may let two partitions be quorate")]
    LastManStandingWithoutWaitForAll,
}

/// Options as they take effect after the automatic adjustments.
#[derive(Debug, Clone, Copy)]
struct Effective { base_expected: u32, two_node: bool, wfa: bool, wfa_explicit: bool, lms: bool, atb: bool }

impl QuorumConfig {
    /// Configured expected votes: the override, else the nodelist sum.
    pub fn configured_expected_votes(&self) -> u32 {
        self.expected_votes.unwrap_or_else(|| self.nodes.values().sum())
    }

    pub fn validate(&self) -> Result<(), QuorumConfigError> {
        use QuorumConfigError as E;
        if self.nodes.is_empty() && self.expected_votes.is_none() {
            return Err(E::NoExpectedVotes);
        }
        if self.configured_expected_votes() == 0 {
            return Err(E::ZeroExpectedVotes);
        }
        if self.nodes.contains_key(&0) {
            return Err(E::NodeIdZero);
        }
        if self.last_man_standing {
            if let Some((&nodeid, &votes)) = self.nodes.iter().find(|(_, &v)| v != 1) {
                return Err(E::LastManStandingVotes { nodeid, votes });
            }
        }
        if self.auto_tie_breaker {
            if self.nodes.is_empty() {
                return Err(E::TieBreakerWithoutNodelist);
            }
            if self.nodes.len() % 2 == 1 && self.wait_for_all != Some(true) && self.last_man_standing {
                return Err(E::TieBreakerOddWithLastManStanding);
            }
            if let TieBreaker::List(list) = &self.auto_tie_breaker_node {
                if list.is_empty() {
                    return Err(E::TieBreakerEmptyList);
                }
                if let Some(&n) = list.iter().find(|n| !self.nodes.contains_key(n)) {
                    return Err(E::TieBreakerUnknownNode(n));
                }
            }
        }
        Ok(())
    }

    pub fn warnings(&self) -> Vec<QuorumConfigWarning> {
        use QuorumConfigWarning as W;
        let mut out = Vec::new();
        if self.auto_tie_breaker && self.nodes.len() % 2 == 1 && self.wait_for_all != Some(true) {
            out.push(W::TieBreakerOddWithoutWaitForAll);
        }
        if self.two_node && self.auto_tie_breaker {
            out.push(W::TwoNodeWithTieBreaker);
        } else if self.two_node && self.nodes.len() > 2 {
            out.push(W::TwoNodeTooManyNodes(self.nodes.len()));
        }
        if self.last_man_standing && !self.effective().wfa {
            out.push(W::LastManStandingWithoutWaitForAll);
        }
        out
    }

    fn effective(&self) -> Effective {
        let n = self.nodes.len();
        let base_expected = self.configured_expected_votes();
        let atb = self.auto_tie_breaker && (n % 2 == 0 || self.wait_for_all == Some(true));
        let small = if n == 0 { base_expected <= 2 } else { n <= 2 };
        let two_node = self.two_node && !self.auto_tie_breaker && small;
        let (wfa, wfa_explicit) = (self.wait_for_all.unwrap_or(two_node), self.wait_for_all == Some(true));
        Effective { base_expected, two_node, wfa, wfa_explicit, lms: self.last_man_standing, atb }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumMember {
    pub nodeid: u32,
    pub votes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumFlags {
    pub two_node: bool,
    pub wait_for_all: bool,
    /// Still waiting for all votes to be present at once.
    pub wait_for_all_status: bool,
    pub last_man_standing: bool,
    pub auto_tie_breaker: bool,
}

/// What `halo quorum status --output json` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// (representative nodeid, ring sequence); (0, 0) before the first configuration.
    pub ring_id: (u32, u64),
    pub quorate: bool,
    pub expected_votes: u32,
    /// Equal to `expected_votes` (no node-info exchange, deviation 1).
    pub highest_expected: u32,
    pub total_votes: u32,
    pub quorum: u32,
    /// Sorted by nodeid.
    pub members: Vec<QuorumMember>,
    pub flags: QuorumFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumEventCause {
    Membership,
    LastManStanding,
}

/// The quorate flag, expected votes or quorum changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumEvent {
    pub cause: QuorumEventCause,
    pub status: QuorumStatus,
}

#[derive(Debug, Clone)]
pub struct Votequorum {
    local: u32,
    cfg: QuorumConfig,
    eff: Effective,
    two_node: bool,
    ring_id: (u32, u64),
    members: BTreeSet<u32>,
    total: u32,
    expected: u32,
    quorate: bool,
    waiting: bool,
    lms_deadline: Option<u64>,
    reported: (bool, u32, u32),
    events: VecDeque<QuorumEvent>,
}

impl Votequorum {
    pub fn new(local_nodeid: u32, config: QuorumConfig) -> Result<Self, QuorumConfigError> {
        config.validate()?;
        if !config.nodes.is_empty() && !config.nodes.contains_key(&local_nodeid) {
            return Err(QuorumConfigError::LocalNodeNotInNodelist(local_nodeid));
        }
        let eff = config.effective();
        let (local, two_node, expected, waiting) = (local_nodeid, eff.two_node, eff.base_expected, eff.wfa);
        let (ring_id, members, total, quorate, lms_deadline) = ((0, 0), BTreeSet::new(), 0, false, None);
        let (reported, events) = ((false, 0, 0), VecDeque::new());
        let mut vq = Votequorum { local, cfg: config, eff, two_node, ring_id, members, total, expected, quorate, waiting, lms_deadline, reported, events };
        vq.reported = (false, vq.expected, vq.quorum_of(vq.expected, 0));
        Ok(vq)
    }

    pub fn local_nodeid(&self) -> u32 {
        self.local
    }

    fn votes_of(&self, nodeid: u32) -> u32 {
        if self.cfg.nodes.is_empty() { 1 } else { self.cfg.nodes.get(&nodeid).copied().unwrap_or(0) }
    }

    fn total_of(&self, set: &BTreeSet<u32>) -> u32 {
        set.iter().map(|&n| self.votes_of(n)).sum()
    }

    fn quorum_of(&self, expected: u32, total: u32) -> u32 {
        if self.two_node { 1 } else { (expected / 2 + 1).max(total / 2 + 1) }
    }

    /// auto_tie_breaker: exactly half of `expected` present in `set`, and `set` holds the
    /// tie-breaker. `split_of` is the previous configuration when `set` is a plain split of it
    /// and it was quorate (needed by the list form, deviation 3).
    fn tie_break(&self, total: u32, expected: u32, set: &BTreeSet<u32>, split_of: Option<&BTreeSet<u32>>) -> bool {
        if !self.eff.atb || total * 2 != expected {
            return false;
        }
        let tie = match &self.cfg.auto_tie_breaker_node {
            TieBreaker::Lowest => self.cfg.nodes.keys().next().copied(),
            TieBreaker::Highest => self.cfg.nodes.keys().next_back().copied(),
            TieBreaker::List(list) => split_of.and_then(|prev| list.iter().copied().find(|n| prev.contains(n))),
        };
        tie.is_some_and(|t| set.contains(&t))
    }

    /// A new regular configuration (after sync), identical on every member.
    pub fn on_membership(&mut self, now_ms: u64, ring_id: (u32, u64), members: &[u32]) {
        let new: BTreeSet<u32> = members.iter().copied().collect();
        let prev = std::mem::replace(&mut self.members, new.clone());
        self.ring_id = ring_id;
        self.lms_deadline = None;
        if new.len() > 2 {
            self.two_node = false; // two_node switches itself off once more than two nodes join
        }
        let joined = new.iter().any(|n| !prev.contains(n));
        let total = self.total_of(&new);
        let (prev_expected, was_quorate) = (self.expected, self.quorate);
        // Deviation 2: a joiner may still carry the configured expected votes.
        let expected = if joined { prev_expected.max(self.eff.base_expected) } else { prev_expected }.max(total);
        (self.expected, self.total) = (expected, total);
        if self.waiting && total >= expected {
            self.waiting = false;
        }
        let split_of = (was_quorate && !joined).then_some(&prev);
        let mut quorate = !self.waiting
            && (total >= self.quorum_of(expected, total) || self.tie_break(total, expected, &new, split_of));
        if quorate && joined && was_quorate && prev_expected < self.eff.base_expected {
            // Deviation 2: our side alone must keep the quorum last_man_standing had lowered.
            let kept: BTreeSet<u32> = new.intersection(&prev).copied().collect();
            let kept_total = self.total_of(&kept);
            quorate = kept_total >= self.quorum_of(prev_expected, kept_total)
                || self.tie_break(kept_total, prev_expected, &kept, Some(&prev));
        }
        if was_quorate && !quorate && self.eff.wfa_explicit {
            self.waiting = true; // deviation 5
        }
        self.quorate = quorate;
        if self.eff.lms && quorate && total < expected {
            self.lms_deadline = Some(now_ms.saturating_add(self.cfg.last_man_standing_window_ms));
        }
        self.report(QuorumEventCause::Membership);
    }

    /// Absolute time (ms) at which `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.lms_deadline
    }

    /// Fires the last_man_standing window if it is due: expected votes drop to the present votes.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        match self.lms_deadline {
            Some(deadline) if now_ms >= deadline => self.lms_deadline = None,
            _ => return,
        }
        // The window is cancelled by every configuration, so the membership is unchanged here.
        if self.quorate && self.total < self.expected {
            self.expected = self.total.max(1);
            self.report(QuorumEventCause::LastManStanding);
        }
    }

    pub fn poll_event(&mut self) -> Option<QuorumEvent> {
        self.events.pop_front()
    }

    fn report(&mut self, cause: QuorumEventCause) {
        let status = self.status();
        let now = (status.quorate, status.expected_votes, status.quorum);
        if now != self.reported {
            self.reported = now;
            self.events.push_back(QuorumEvent { cause, status });
        }
    }

    pub fn status(&self) -> QuorumStatus {
        QuorumStatus {
            ring_id: self.ring_id,
            quorate: self.quorate,
            expected_votes: self.expected,
            highest_expected: self.expected,
            total_votes: self.total,
            quorum: self.quorum_of(self.expected, self.total),
            members: self.members.iter().map(|&nodeid| QuorumMember { nodeid, votes: self.votes_of(nodeid) }).collect(),
            flags: QuorumFlags {
                two_node: self.two_node,
                wait_for_all: self.eff.wfa,
                wait_for_all_status: self.waiting,
                last_man_standing: self.eff.lms,
                auto_tie_breaker: self.eff.atb,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: u32) -> QuorumConfig {
        QuorumConfig { nodes: (1..=n).map(|i| (i, 1)).collect(), ..Default::default() }
    }
    fn with(mut c: QuorumConfig, f: impl FnOnce(&mut QuorumConfig)) -> QuorumConfig {
        f(&mut c);
        c
    }
    fn wfa(c: QuorumConfig) -> QuorumConfig {
        with(c, |c| c.wait_for_all = Some(true))
    }
    fn lms(c: QuorumConfig) -> QuorumConfig {
        with(wfa(c), |c| c.last_man_standing = true)
    }
    fn atb(c: QuorumConfig, t: TieBreaker) -> QuorumConfig {
        with(c, |c| (c.auto_tie_breaker, c.auto_tie_breaker_node) = (true, t))
    }
    fn two_node(c: QuorumConfig) -> QuorumConfig {
        with(c, |c| c.two_node = true)
    }

    /// Splits of the notes' table: both sides start from the same history (`all` together), then
    /// each side computes its own status.
    #[test]
    fn splits_from_the_notes_table() {
        use TieBreaker::*;
        let (n2, n3, n4, n5) = (&[1, 2][..], &[1, 2, 3][..], &[1, 2, 3, 4][..], &[1, 2, 3, 4, 5][..]);
        #[rustfmt::skip]
        let cases: Vec<(&str, QuorumConfig, &[u32], &[u32], &[u32], (bool, bool), (u32, u32))> = vec![
            // name, config, all, side a, side b, (a quorate, b quorate), (expected, quorum) of a
            ("2 nodes", cfg(2), n2, &[1], &[2], (false, false), (2, 2)),
            ("2 nodes two_node", two_node(cfg(2)), n2, &[1], &[2], (true, true), (2, 1)),
            ("3 nodes 2|1", cfg(3), n3, &[1, 2], &[3], (true, false), (3, 2)),
            ("3 nodes ATB: no exact half", atb(wfa(cfg(3)), Lowest), n3, &[3, 2], &[1], (true, false), (3, 2)),
            ("3 nodes two_node: disabled", two_node(cfg(3)), n3, &[1], &[2, 3], (false, true), (3, 2)),
            ("4 nodes 2|2", cfg(4), n4, &[1, 2], &[3, 4], (false, false), (4, 3)),
            ("4 nodes 3|1", cfg(4), n4, &[1, 2, 4], &[3], (true, false), (4, 3)),
            ("4 nodes ATB lowest", atb(cfg(4), Lowest), n4, &[1, 2], &[3, 4], (true, false), (4, 3)),
            ("4 nodes ATB lowest, 1 and 4", atb(cfg(4), Lowest), n4, &[2, 3], &[1, 4], (false, true), (4, 3)),
            ("4 nodes ATB highest", atb(cfg(4), Highest), n4, &[1, 2], &[3, 4], (false, true), (4, 3)),
            ("4 nodes ATB list [3,1]", atb(cfg(4), List(vec![3, 1])), n4, &[1, 2], &[3, 4], (false, true), (4, 3)),
            ("4 nodes ATB list [3,1], 3 gone", atb(cfg(4), List(vec![3, 1])), &[1, 2, 4], &[1], &[2, 4], (false, false), (4, 3)),
            ("4 nodes ATB list [3,1], 3 gone, 1|2", atb(cfg(4), List(vec![3, 1])), &[1, 2, 4], &[1, 2], &[4], (true, false), (4, 3)),
            ("4 nodes ATB lowest, 3|1", atb(cfg(4), Lowest), n4, &[2, 3, 4], &[1], (true, false), (4, 3)),
            ("5 nodes 3|2", cfg(5), n5, &[1, 2, 3], &[4, 5], (true, false), (5, 3)),
            ("5 nodes 2|2|1", cfg(5), n5, &[1, 2], &[3, 4], (false, false), (5, 3)),
            ("5 nodes, 2 votes on node 1", with(cfg(5), |c| { c.nodes.insert(1, 2); }), n5, &[1, 2], &[3, 4, 5], (false, false), (6, 4)),
            ("expected raised by presence", with(cfg(3), |c| c.expected_votes = Some(2)), n3, &[1, 2], &[3], (true, false), (3, 2)),
            ("expected override above nodelist", with(cfg(3), |c| c.expected_votes = Some(5)), n3, &[1, 2, 3], &[], (true, false), (5, 3)),
        ];
        for (name, c, all, a, b, quorate, (expected, quorum)) in cases {
            let side = |members: &[u32]| {
                let mut vq = Votequorum::new(members.first().copied().unwrap_or(all[0]), c.clone()).unwrap();
                vq.on_membership(0, (all[0], 1), all);
                if !members.is_empty() {
                    vq.on_membership(1, (members[0], 2), members);
                }
                vq.status()
            };
            let sa = side(a);
            assert_eq!((sa.quorate, !b.is_empty() && side(b).quorate), quorate, "{name}");
            assert_eq!((sa.expected_votes, sa.quorum), (expected, quorum), "{name}");
        }
    }

    /// A step: (members, or empty for "time passes"; time in ms; expected quorate, expected votes,
    /// quorum). `handle_timeout(t)` runs after each step.
    type Step = (&'static [u32], u64, bool, u32, u32);

    #[test]
    fn sequences_two_node_wfa_lms() {
        const W: u64 = DEFAULT_LMS_WINDOW_MS;
        let (n4, n5): (&[u32], &[u32]) = (&[1, 2, 3, 4], &[1, 2, 3, 4, 5]);
        #[rustfmt::skip]
        let cases: Vec<(&str, QuorumConfig, u32, Vec<Step>)> = vec![
            ("two_node cold start waits for its peer", two_node(cfg(2)), 1,
                vec![(&[1], 0, false, 2, 1), (&[1, 2], 1, true, 2, 1), (&[1], 2, true, 2, 1)]),
            ("two_node without WFA", with(two_node(cfg(2)), |c| c.wait_for_all = Some(false)), 1, vec![(&[1], 0, true, 2, 1)]),
            ("two_node off once a 3rd node joins", QuorumConfig { expected_votes: Some(2), two_node: true, ..Default::default() }, 1,
                vec![(&[1, 2], 0, true, 2, 1), (&[1, 2, 3], 1, true, 3, 2), (&[1], 2, false, 3, 2)]),
            ("two_node off with ATB", atb(two_node(cfg(2)), TieBreaker::Lowest), 2, vec![(&[1, 2], 0, true, 2, 2), (&[2], 1, false, 2, 2)]),
            ("WFA cold start; loss re-arms", wfa(cfg(3)), 1, vec![(&[1, 2], 0, false, 3, 2), (&[1, 2, 3], 1, true, 3, 2),
                (&[1, 2], 2, true, 3, 2), (&[1], 3, false, 3, 2), (&[1, 2], 4, false, 3, 2), (&[1, 2, 3], 5, true, 3, 2)]),
            ("WFA cold start, 4 nodes", wfa(cfg(4)), 2, vec![(&[1, 2, 3], 0, false, 4, 3), (n4, 1, true, 4, 3), (&[1, 2, 3], 2, true, 4, 3)]),
            ("LMS 4 down to 2; last loss needs ATB", lms(cfg(4)), 1, vec![(n4, 0, true, 4, 3), (&[1, 2, 3], 100, true, 4, 3),
                (&[], 99 + W, true, 4, 3), (&[], 100 + W, true, 3, 2), (&[1, 2], 20_000, true, 3, 2),
                (&[], 30_000, true, 2, 2), (&[1], 40_000, false, 2, 2), (&[], 60_000, false, 2, 2)]),
            ("LMS 4 down to 1 with ATB lowest", atb(lms(cfg(4)), TieBreaker::Lowest), 1, vec![(n4, 0, true, 4, 3),
                (&[1, 2, 3], 0, true, 4, 3), (&[], W, true, 3, 2), (&[1, 2], W, true, 3, 2), (&[], 2 * W, true, 2, 2),
                (&[1], 2 * W, true, 2, 2), (&[], 3 * W, true, 1, 1)]),
            ("LMS 5: lose 2, then 1; last node inquorate", lms(cfg(5)), 1, vec![(n5, 0, true, 5, 3), (&[1, 2, 3], 0, true, 5, 3),
                (&[], W, true, 3, 2), (&[1, 2], W, true, 3, 2), (&[], 2 * W, true, 2, 2), (&[1], 2 * W, false, 2, 2)]),
            ("LMS 5: last node with ATB list", atb(lms(cfg(5)), TieBreaker::List(vec![2])), 2, vec![(n5, 0, true, 5, 3),
                (&[1, 2, 3], 0, true, 5, 3), (&[], W, true, 3, 2), (&[1, 2], W, true, 3, 2), (&[], 2 * W, true, 2, 2),
                (&[2], 2 * W, true, 2, 2), (&[], 3 * W, true, 1, 1)]),
            ("LMS window cancelled by a rejoin", lms(cfg(4)), 1,
                vec![(n4, 0, true, 4, 3), (&[1, 2, 3], 0, true, 4, 3), (n4, 5, true, 4, 3), (&[], 2 * W, true, 4, 3)]),
            ("LMS lowered; a rejoin restores", lms(cfg(4)), 1,
                vec![(n4, 0, true, 4, 3), (&[1, 2, 3], 0, true, 4, 3), (&[], W, true, 3, 2), (n4, W, true, 4, 3)]),
            ("LMS lowered; minority merge refused", lms(cfg(5)), 1, vec![(n5, 0, true, 5, 3), (&[1, 2, 3], 0, true, 5, 3),
                (&[], W, true, 3, 2), (&[1, 4, 5], W, false, 5, 3)]),
        ];
        for (name, c, local, steps) in &cases {
            let mut vq = Votequorum::new(*local, c.clone()).unwrap();
            for (i, &(members, t, quorate, expected, quorum)) in steps.iter().enumerate() {
                if !members.is_empty() {
                    vq.on_membership(t, (members[0], i as u64 + 1), members);
                }
                vq.handle_timeout(t);
                let s = vq.status();
                assert_eq!((s.quorate, s.expected_votes, s.quorum), (quorate, expected, quorum), "{name}: step {i}");
            }
        }
    }

    #[test]
    fn validation_errors_and_warnings() {
        use QuorumConfigError as E;
        use QuorumConfigWarning as W;
        let err = |c: QuorumConfig| c.validate().unwrap_err();
        assert_eq!(err(QuorumConfig::default()), E::NoExpectedVotes);
        assert_eq!(err(with(cfg(3), |c| c.expected_votes = Some(0))), E::ZeroExpectedVotes);
        assert_eq!(err(with(cfg(3), |c| { c.nodes.insert(0, 1); })), E::NodeIdZero);
        let weighted = with(cfg(3), |c| { c.nodes.insert(2, 2); c.last_man_standing = true; });
        assert_eq!(err(weighted), E::LastManStandingVotes { nodeid: 2, votes: 2 });
        let odd = with(atb(cfg(3), TieBreaker::Lowest), |c| c.last_man_standing = true);
        assert_eq!(err(odd.clone()), E::TieBreakerOddWithLastManStanding);
        assert!(with(odd, |c| c.wait_for_all = Some(true)).validate().is_ok());
        assert_eq!(err(atb(cfg(4), TieBreaker::List(vec![]))), E::TieBreakerEmptyList);
        assert_eq!(err(atb(cfg(4), TieBreaker::List(vec![1, 9]))), E::TieBreakerUnknownNode(9));
        let no_nodes = QuorumConfig { expected_votes: Some(4), ..Default::default() };
        assert_eq!(err(atb(no_nodes.clone(), TieBreaker::Lowest)), E::TieBreakerWithoutNodelist);
        assert!(Votequorum::new(7, no_nodes).is_ok());
        assert_eq!(Votequorum::new(9, cfg(3)).unwrap_err(), E::LocalNodeNotInNodelist(9));
        assert_eq!(err(QuorumConfig::default()).to_string().lines().count(), 1);

        assert_eq!(two_node(cfg(3)).warnings(), vec![W::TwoNodeTooManyNodes(3)]);
        assert_eq!(atb(two_node(cfg(2)), TieBreaker::Lowest).warnings(), vec![W::TwoNodeWithTieBreaker]);
        assert_eq!(atb(cfg(3), TieBreaker::Lowest).warnings(), vec![W::TieBreakerOddWithoutWaitForAll]);
        assert_eq!(with(cfg(3), |c| c.last_man_standing = true).warnings(), vec![W::LastManStandingWithoutWaitForAll]);
        assert!(lms(cfg(4)).warnings().is_empty());
        let s = Votequorum::new(1, atb(cfg(3), TieBreaker::Lowest)).unwrap().status();
        assert!(!s.flags.auto_tie_breaker && !s.flags.two_node);
        let s = Votequorum::new(1, two_node(cfg(2))).unwrap().status();
        assert!(s.flags.two_node && s.flags.wait_for_all && s.flags.wait_for_all_status);
    }

    #[test]
    fn events_and_status() {
        let mut vq = Votequorum::new(2, lms(cfg(3))).unwrap();
        assert_eq!(vq.status().ring_id, (0, 0));
        vq.on_membership(0, (1, 4), &[3, 1, 2]);
        let ev = vq.poll_event().unwrap();
        assert_eq!(ev.cause, QuorumEventCause::Membership);
        assert_eq!(ev.status, vq.status());
        let s = vq.status();
        assert_eq!((s.ring_id, s.quorate, s.total_votes, s.highest_expected), ((1, 4), true, 3, 3));
        assert_eq!(s.members.iter().map(|m| (m.nodeid, m.votes)).collect::<Vec<_>>(), vec![(1, 1), (2, 1), (3, 1)]);
        assert!(!s.flags.wait_for_all_status && s.flags.wait_for_all && s.flags.last_man_standing);
        vq.on_membership(10, (1, 8), &[1, 2]);
        assert_eq!(vq.poll_event(), None, "still quorate, same expected and quorum");
        assert_eq!(vq.poll_timeout(), Some(10 + DEFAULT_LMS_WINDOW_MS));
        vq.handle_timeout(10 + DEFAULT_LMS_WINDOW_MS);
        let ev = vq.poll_event().unwrap();
        assert_eq!((ev.cause, ev.status.expected_votes, ev.status.quorum), (QuorumEventCause::LastManStanding, 2, 2));
        assert_eq!(vq.poll_timeout(), None);
        vq.on_membership(20_000, (2, 12), &[2]);
        let ev = vq.poll_event().unwrap();
        assert!(!ev.status.quorate && ev.status.flags.wait_for_all_status);
        assert_eq!(vq.poll_event(), None);
    }

    /// splitmix64: a small seeded PRNG, enough for the property test.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    fn random_config(rng: &mut Rng) -> QuorumConfig {
        let n = 1 + rng.below(7) as usize;
        let mut ids = BTreeSet::new();
        while ids.len() < n {
            ids.insert(1 + rng.below(12) as u32);
        }
        let lms = rng.chance(35);
        let mut c = QuorumConfig {
            nodes: ids.iter().map(|&id| (id, if lms || rng.chance(80) { 1 } else { 2 })).collect(),
            two_node: n <= 3 && rng.chance(30),
            last_man_standing: lms,
            last_man_standing_window_ms: rng.below(5_000),
            auto_tie_breaker: rng.chance(40),
            ..Default::default()
        };
        let sum: u32 = c.nodes.values().sum();
        c.expected_votes = match rng.below(10) {
            0 => Some(sum + 1),
            1 => Some(sum.saturating_sub(1).max(1)), // below the nodelist: not split-brain safe
            _ => None,
        };
        let wfa = [Some(false), Some(true), None, None][rng.below(4) as usize];
        c.wait_for_all = if lms && rng.chance(90) { Some(true) } else { wfa };
        let mut list: Vec<u32> = ids.iter().copied().filter(|_| rng.chance(50)).collect();
        list.push(*ids.iter().next().unwrap());
        let r = rng.below(list.len() as u64) as usize;
        list.rotate_left(r);
        c.auto_tie_breaker_node = [TieBreaker::Lowest, TieBreaker::Highest, TieBreaker::List(list)][rng.below(3) as usize].clone();
        c
    }

    /// Random splits, merges, re-formations, crashes and restarts of a cluster, one state machine
    /// per node. Checks: (a) without two_node, no two partitions both hold a quorate member, for
    /// configs where votequorum promises it (expected votes not below the nodelist sum;
    /// last_man_standing only with explicit wait_for_all); (b) quorate ⇒ total ≥ quorum unless
    /// two_node or the tie-breaker applies; (c) expected votes fall only at a last_man_standing
    /// expiry; (d) members of a plain split of an agreed configuration agree, and members of any
    /// configuration disagree only while some of them wait for all.
    #[test]
    fn property_random_partitions() {
        let (mut configs, mut quorate_seen) = (0, 0);
        for seed in 0..1500u64 {
            let mut rng = Rng(seed);
            let c = random_config(&mut rng);
            if c.validate().is_err() {
                continue;
            }
            configs += 1;
            let (eff, sum) = (c.effective(), c.nodes.values().sum::<u32>());
            let promised = eff.base_expected >= sum && (!eff.lms || eff.wfa_explicit);
            let ids: Vec<u32> = c.nodes.keys().copied().collect();
            let fresh = |id| Votequorum::new(id, c.clone()).unwrap();
            let mut vq: BTreeMap<u32, Votequorum> = ids.iter().map(|&id| (id, fresh(id))).collect();
            let (mut groups, mut now, mut seq) = (Vec::<Vec<u32>>::new(), 0u64, 0u64);
            for _ in 0..60 {
                now += rng.below(6_000); // time passes; due last_man_standing windows fire
                for v in vq.values_mut() {
                    let before = v.status().expected_votes;
                    if v.poll_timeout().is_some_and(|t| t <= now) {
                        v.handle_timeout(now);
                    }
                    let lms_event = v.events.iter().any(|e| e.cause == QuorumEventCause::LastManStanding);
                    assert!(v.status().expected_votes >= before || lms_event, "seed {seed}: expected fell");
                }
                check(seed, &groups, &vq, promised);
                // A new partition of the live nodes; a node that goes down restarts with fresh state.
                let (old, mut reform) = (groups.clone(), None);
                let prev: BTreeMap<u32, QuorumStatus> = vq.iter().map(|(&id, v)| (id, v.status())).collect();
                let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
                match rng.below(6) {
                    0 => {
                        let k = 1 + pick(&mut rng, 3);
                        groups = vec![Vec::new(); k];
                        for &id in &ids {
                            match rng.chance(85) {
                                true => groups[pick(&mut rng, k)].push(id),
                                false => drop(vq.insert(id, fresh(id))),
                            }
                        }
                    }
                    1 if !groups.is_empty() => {
                        let g = groups.swap_remove(pick(&mut rng, groups.len()));
                        let (a, b): (Vec<u32>, Vec<u32>) = g.into_iter().partition(|_| rng.chance(50));
                        groups.extend([a, b]);
                    }
                    2 if groups.len() >= 2 => {
                        let a = groups.swap_remove(pick(&mut rng, groups.len()));
                        let i = pick(&mut rng, groups.len());
                        groups[i].extend(a);
                    }
                    3 if !groups.is_empty() => {
                        let i = pick(&mut rng, groups.len());
                        let j = pick(&mut rng, groups[i].len());
                        let id = groups[i].swap_remove(j);
                        vq.insert(id, fresh(id));
                    }
                    4 if !groups.is_empty() => reform = Some(groups[pick(&mut rng, groups.len())].clone()),
                    _ => {
                        let live: BTreeSet<u32> = groups.iter().flatten().copied().collect();
                        if let Some(&id) = ids.iter().find(|id| !live.contains(id)) {
                            match groups.len() {
                                0 => groups.push(vec![id]),
                                n => groups[pick(&mut rng, n)].push(id),
                            }
                        }
                    }
                }
                groups.retain(|g| !g.is_empty());
                groups.iter_mut().for_each(|g| g.sort_unstable());
                for g in groups.iter().filter(|g| !old.contains(g) || reform.as_ref() == Some(g)) {
                    seq += 1;
                    for id in g {
                        let before = vq[id].status().expected_votes;
                        vq.get_mut(id).unwrap().on_membership(now, (g[0], seq), g);
                        assert!(vq[id].status().expected_votes >= before, "seed {seed}: expected fell");
                    }
                    let first = &prev[&g[0]];
                    if g.iter().all(|id| prev[id] == *first && first.members.iter().any(|m| m.nodeid == *id)) {
                        for id in g {
                            assert_eq!(vq[id].status(), vq[&g[0]].status(), "seed {seed}: split members disagree");
                        }
                    }
                }
                check(seed, &groups, &vq, promised);
                for v in vq.values_mut() {
                    while let Some(ev) = v.poll_event() {
                        quorate_seen += ev.status.quorate as u32;
                    }
                }
            }
        }
        assert!(configs > 800 && quorate_seen > 2000, "weak test: {configs} configs, {quorate_seen}");
    }

    fn check(seed: u64, groups: &[Vec<u32>], vq: &BTreeMap<u32, Votequorum>, promised: bool) {
        let (mut quorate_groups, mut two_node) = (0, false);
        for g in groups {
            let mut any = false;
            for id in g {
                let s = vq[id].status();
                two_node |= s.flags.two_node;
                let tie = s.flags.auto_tie_breaker && s.total_votes * 2 == s.expected_votes;
                if s.quorate {
                    any = true;
                    assert!(s.total_votes >= s.quorum || s.flags.two_node || tie, "seed {seed}: {s:?}");
                    assert!(!s.flags.wait_for_all_status, "seed {seed}");
                } else {
                    // Members disagree only while a node still waits for all (deviation 1).
                    assert!(!promised || s.flags.wait_for_all_status || g.iter().all(|m| !vq[m].quorate), "seed {seed}");
                }
                let q = if s.flags.two_node { 1 } else { s.expected_votes / 2 + 1 };
                assert_eq!(s.quorum, q, "seed {seed}: {s:?}");
            }
            quorate_groups += any as u32;
        }
        if promised && !two_node {
            assert!(quorate_groups <= 1, "seed {seed}: split brain in {groups:?}");
        }
    }
}
