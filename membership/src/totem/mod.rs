//! Totem single-ring protocol, sans-IO (Amir et al., "The Totem single-ring ordering and
//! membership protocol", TOCS 1995; Moser et al., "Extended Virtual Synchrony", 1994).
//! This module: the node's state, its API, and the Operational token visit (ordering,
//! retransmission, flow control, agreed delivery). `membership.rs`: Gather, Commit, Recovery.
//!
//! Deliberate deviations from the paper and from Corosync:
//! - Sequence numbers are 64-bit and restart at 1 in every ring, so they never wrap.
//! - A gap is requested on the first visit that sees it (no `miss_count_const` delay); a
//!   duplicate retransmission is harmless.
//! - After Recovery every transitional member holds the same set of old-ring messages; all
//!   of them are delivered (in order, holes skipped) — the paper's behaviour, not Corosync's
//!   "stop at the first hole" — so a surviving sender always gets its own messages back.
//! - The idle representative holds the token (`hold_ms`); a node with new data wakes it with
//!   `HoldCancel`.
//!
//! Driver contract: feed packets with `handle`, call `handle_timeout` when `poll_timeout`
//! says, drain `poll_output` after every call, and perform `PersistRingSeq` before sending
//! anything that follows it.

mod membership;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use crate::wire::{AppMsg, Body, CommitToken, Join, Mcast, NodeId, Packet, RingId, Token};

#[derive(Debug, Clone)]
pub struct TotemConfig {
    pub node_id: NodeId,
    /// Every configured node (the nodelist), this one included.
    pub nodes: Vec<NodeId>,
    pub token_ms: u64,
    pub token_retransmit_ms: u64,
    pub consensus_ms: u64,
    pub join_ms: u64,
    pub merge_ms: u64,
    pub hold_ms: u64,
    pub max_messages: usize,
    pub window_size: u32,
    /// Largest payload carried by one message; larger submissions are fragmented.
    pub frag_size: usize,
    /// Bound on messages waiting to be sent; `submit` refuses beyond it.
    pub max_queue: usize,
    pub seqno_unchanged_const: u32,
    pub fail_recv_const: u32,
}

impl TotemConfig {
    /// Timers derived as Corosync derives them from `token` (runtime token with the
    /// per-node coefficient for nodelists of three or more).
    pub fn new(node_id: NodeId, nodes: Vec<NodeId>, token_ms: u64) -> TotemConfig {
        let runtime = if nodes.len() >= 3 { token_ms + (nodes.len() as u64 - 2) * 650 } else { token_ms };
        let retransmit = (runtime as f64 / 4.2) as u64;
        TotemConfig {
            node_id,
            nodes,
            token_ms: runtime,
            token_retransmit_ms: retransmit.max(10),
            consensus_ms: runtime * 6 / 5,
            join_ms: 50,
            merge_ms: 200,
            hold_ms: ((retransmit as f64 * 0.8) as u64).saturating_sub(10).max(5),
            max_messages: 17,
            window_size: 50,
            frag_size: 1200,
            max_queue: 10_000,
            seqno_unchanged_const: 30,
            fail_recv_const: 2500,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Operational,
    Gather,
    Commit,
    Recovery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dest {
    Node(NodeId),
    /// Every configured node but this one.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Transitional,
    Regular,
}

/// A configuration event, delivered in the same stream as messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub kind: ConfigKind,
    pub ring: RingId,
    pub members: Vec<NodeId>,
    pub left: Vec<NodeId>,
    pub joined: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub ring: RingId,
    pub sender: NodeId,
    pub msg_id: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send { to: Dest, packet: Packet },
    Deliver(Delivery),
    Config(ConfigChange),
    /// Store this ring sequence durably before acting on later outputs.
    PersistRingSeq(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    TokenLoss,
    TokenRetransmit,
    Join,
    Consensus,
    Merge,
    Hold,
}

/// The messages of one ring as this node holds them.
#[derive(Debug, Clone, Default)]
pub(super) struct RingStore {
    ring: RingId,
    members: Vec<NodeId>,
    msgs: BTreeMap<u64, Mcast>,
    /// Everything up to here is received.
    aru: u64,
    high: u64,
    delivered: u64,
}

impl RingStore {
    pub(super) fn insert(&mut self, m: Mcast) -> bool {
        if m.seq <= self.delivered || self.msgs.contains_key(&m.seq) || m.seq <= self.aru {
            return false;
        }
        self.high = self.high.max(m.seq);
        self.msgs.insert(m.seq, m);
        while self.msgs.contains_key(&(self.aru + 1)) {
            self.aru += 1;
        }
        true
    }
}

/// Counters a daemon exposes (packets dropped are counted by the transport).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub tokens: u64,
    pub retransmitted: u64,
    pub rings_formed: u64,
    pub delivered: u64,
}

pub struct Totem {
    cfg: TotemConfig,
    me: NodeId,
    state: State,
    cur: RingStore,
    /// The ring being left, kept through Commit and Recovery.
    old: Option<RingStore>,
    highest_ring_seq: u64,
    /// The highest ring sequence this node has stored durably.
    persisted_seq: u64,
    // Operational token bookkeeping.
    last_token_seq: u64,
    last_token_sent: Option<(NodeId, Packet)>,
    prev_token_aru: u64,
    aru_stuck_visits: u32,
    seq_unchanged_rotations: u32,
    last_seen_seq: u64,
    sent_last_visit: u32,
    backlog_last_visit: u32,
    holding: Option<Token>,
    // Application message fragments waiting for the token.
    queue: VecDeque<AppMsg>,
    /// Fragments already sent of the message at the head of the queue.
    sent_frags: Vec<AppMsg>,
    next_msg_id: u64,
    // Reassembly of fragmented messages per sender.
    partial: BTreeMap<NodeId, (u64, Vec<u8>, u16)>,
    // Gather.
    proc_set: BTreeSet<NodeId>,
    fail_set: BTreeSet<NodeId>,
    /// The last join seen from each node in this Gather: (proc set, fail set).
    last_join: BTreeMap<NodeId, (BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    // Commit and Recovery.
    commit: Option<CommitToken>,
    recovery_queue: VecDeque<Mcast>,
    /// Messages of the ring being installed that arrived before we installed it.
    pending_new: Vec<Mcast>,
    retransmits_left: u32,
    retrans_clear_visits: u32,
    install_seq: Option<u64>,
    install_covered_visits: u32,
    timers: BTreeMap<Timer, u64>,
    outputs: VecDeque<Output>,
    now: u64,
    pub stats: Stats,
}

impl Totem {
    /// A node that has just started: `ring_seq` is the highest ring sequence it persisted.
    pub fn new(cfg: TotemConfig, now_ms: u64, ring_seq: u64) -> Totem {
        let me = cfg.node_id;
        let mut t = Totem {
            me,
            state: State::Gather,
            cur: RingStore { ring: RingId { rep: me, seq: ring_seq }, members: vec![me], ..Default::default() },
            old: None,
            highest_ring_seq: ring_seq,
            persisted_seq: ring_seq,
            last_token_seq: 0,
            last_token_sent: None,
            prev_token_aru: 0,
            aru_stuck_visits: 0,
            seq_unchanged_rotations: 0,
            last_seen_seq: 0,
            sent_last_visit: 0,
            backlog_last_visit: 0,
            holding: None,
            queue: VecDeque::new(),
            sent_frags: Vec::new(),
            next_msg_id: 1,
            partial: BTreeMap::new(),
            proc_set: BTreeSet::from([me]),
            fail_set: BTreeSet::new(),
            last_join: BTreeMap::new(),
            commit: None,
            recovery_queue: VecDeque::new(),
            pending_new: Vec::new(),
            retransmits_left: 0,
            retrans_clear_visits: 0,
            install_seq: None,
            install_covered_visits: 0,
            timers: BTreeMap::new(),
            outputs: VecDeque::new(),
            now: now_ms,
            stats: Stats::default(),
            cfg,
        };
        t.enter_gather();
        t
    }

    pub fn node_id(&self) -> NodeId {
        self.me
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The installed ring and its members (the last regular configuration).
    pub fn ring(&self) -> (RingId, &[NodeId]) {
        (self.cur.ring, &self.cur.members)
    }

    /// One line of internal counters, for traces and failure reports.
    pub fn debug_state(&self) -> String {
        format!(
            "{:?} ring {} aru {} high {} delivered {} held {} queued {} partial {:?} holding {} last_token_seq {}",
            self.state,
            self.cur.ring,
            self.cur.aru,
            self.cur.high,
            self.cur.delivered,
            self.cur.msgs.len(),
            self.queue.len(),
            self.partial.iter().map(|(n, (id, _, k))| (*n, *id, *k)).collect::<Vec<_>>(),
            self.holding.is_some(),
            self.last_token_seq
        )
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queue an application message for total-order broadcast. Refused (returns false) when
    /// the queue is full: the caller retries later (flow control), never drops.
    pub fn submit(&mut self, payload: Vec<u8>) -> bool {
        let frags = payload.len().div_ceil(self.cfg.frag_size).max(1);
        if self.queue.len() + frags > self.cfg.max_queue || frags > u16::MAX as usize {
            return false;
        }
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        for i in 0..frags {
            let chunk = payload[i * self.cfg.frag_size..((i + 1) * self.cfg.frag_size).min(payload.len())].to_vec();
            self.queue.push_back(AppMsg { msg_id, frag_index: i as u16, frag_count: frags as u16, payload: chunk });
        }
        // Wake an idle ring whose representative holds the token.
        if self.state == State::Operational && self.cur.ring.rep != self.me {
            self.send(Dest::Node(self.cur.ring.rep), Packet::HoldCancel { sender: self.me, ring: self.cur.ring });
        } else if self.holding.is_some() {
            self.release_held_token();
        }
        true
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.values().min().copied()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now = now_ms;
        let due: Vec<Timer> = self.timers.iter().filter(|(_, &t)| t <= now_ms).map(|(&k, _)| k).collect();
        for t in due {
            self.timers.remove(&t);
            match t {
                Timer::TokenLoss => self.on_token_loss(),
                Timer::TokenRetransmit => {
                    if let Some((to, p)) = self.last_token_sent.clone() {
                        if self.retransmits_left > 0 {
                            self.retransmits_left -= 1;
                            self.send(Dest::Node(to), p);
                            self.arm(Timer::TokenRetransmit, self.cfg.token_retransmit_ms);
                        }
                    }
                }
                Timer::Join => {
                    if matches!(self.state, State::Gather | State::Commit) {
                        self.send_join();
                    }
                }
                Timer::Consensus => self.on_consensus_timeout(),
                Timer::Merge => {
                    if self.state == State::Operational && self.cur.ring.rep == self.me {
                        self.send(Dest::All, Packet::MergeDetect { sender: self.me, ring: self.cur.ring });
                        self.arm(Timer::Merge, self.cfg.merge_ms);
                    }
                }
                Timer::Hold => self.release_held_token(),
            }
        }
    }

    pub fn handle(&mut self, now_ms: u64, from: NodeId, packet: Packet) {
        self.now = now_ms;
        match packet {
            Packet::Token(t) => self.on_token(from, t),
            Packet::Mcast(m) => self.on_mcast(m),
            Packet::Join(j) => self.on_join(j),
            Packet::Commit(c) => self.on_commit_token(c),
            Packet::MergeDetect { sender, ring } => self.on_foreign(sender, ring),
            Packet::HoldCancel { ring, .. } => {
                if ring == self.cur.ring && self.holding.is_some() {
                    self.release_held_token();
                }
            }
        }
    }

    // ---- plumbing ------------------------------------------------------------------

    pub(super) fn send(&mut self, to: Dest, packet: Packet) {
        self.outputs.push_back(Output::Send { to, packet });
    }

    pub(super) fn arm(&mut self, t: Timer, after_ms: u64) {
        self.timers.insert(t, self.now + after_ms);
    }

    pub(super) fn disarm(&mut self, t: Timer) {
        self.timers.remove(&t);
    }

    pub(super) fn successor(members: &[NodeId], me: NodeId) -> NodeId {
        let i = members.iter().position(|&m| m == me).unwrap_or(0);
        members[(i + 1) % members.len()]
    }

    pub(super) fn send_token(&mut self, to: NodeId, packet: Packet) {
        self.last_token_sent = Some((to, packet.clone()));
        self.retransmits_left = 4;
        self.send(Dest::Node(to), packet);
        self.arm(Timer::TokenRetransmit, self.cfg.token_retransmit_ms);
        self.arm(Timer::TokenLoss, self.cfg.token_ms);
    }

    // ---- data messages ---------------------------------------------------------------

    fn on_mcast(&mut self, m: Mcast) {
        if m.ring == self.cur.ring {
            if !self.cur.members.contains(&m.sender) {
                return;
            }
            self.cur.insert(m);
            // In Recovery the new ring carries only recovery traffic until installed.
            if self.state != State::Recovery {
                self.deliver_ready();
            }
            return;
        }
        // A ring we will install: keep it until we get there.
        if let Some(c) = &self.commit {
            if m.ring == c.ring {
                if c.members.contains(&m.sender) {
                    self.pending_new.push(m);
                }
                return;
            }
        }
        self.on_foreign(m.sender, m.ring);
    }

    /// Deliver, in sequence order, every message received without a hole.
    pub(super) fn deliver_ready(&mut self) {
        while self.cur.delivered < self.cur.aru {
            let seq = self.cur.delivered + 1;
            self.cur.delivered = seq;
            let Some(m) = self.cur.msgs.get(&seq).cloned() else { continue };
            if let Body::App(app) = m.body {
                self.deliver_app(m.ring, m.sender, app);
            }
        }
    }

    pub(super) fn deliver_app(&mut self, ring: RingId, sender: NodeId, app: AppMsg) {
        if app.frag_count == 1 {
            self.stats.delivered += 1;
            self.outputs.push_back(Output::Deliver(Delivery { ring, sender, msg_id: app.msg_id, payload: app.payload }));
            return;
        }
        let entry = self.partial.entry(sender).or_insert((app.msg_id, Vec::new(), 0));
        if entry.0 != app.msg_id || entry.2 != app.frag_index {
            // A fragment out of place: the rest of that message was lost with a ring change.
            *entry = (app.msg_id, Vec::new(), 0);
            if app.frag_index != 0 {
                return;
            }
        }
        entry.1.extend_from_slice(&app.payload);
        entry.2 += 1;
        if entry.2 == app.frag_count {
            let (msg_id, payload, _) = self.partial.remove(&sender).unwrap();
            self.stats.delivered += 1;
            self.outputs.push_back(Output::Deliver(Delivery { ring, sender, msg_id, payload }));
        }
    }

    // ---- the Operational token visit ------------------------------------------------

    pub(super) fn on_token(&mut self, from: NodeId, mut t: Token) {
        let _ = from;
        if t.ring != self.cur.ring || !matches!(self.state, State::Operational | State::Recovery) {
            if t.ring != self.cur.ring && self.state == State::Operational && !self.cur.members.contains(&t.ring.rep) {
                self.on_foreign(t.ring.rep, t.ring);
            }
            return;
        }
        if t.token_seq <= self.last_token_seq && self.last_token_seq != 0 {
            return; // duplicate or retransmitted token already handled
        }
        self.last_token_seq = t.token_seq;
        self.stats.tokens += 1;
        self.disarm(Timer::TokenRetransmit);
        let rep = self.cur.ring.rep == self.me;

        // Retransmissions first.
        let mut budget = self.cfg.max_messages as i64;
        let window_left = self.cfg.window_size as i64 - t.fcc as i64;
        budget = budget.min(window_left.max(0));
        let mut sent = 0u32;
        let mut remaining_rtr = Vec::new();
        for &s in &t.rtr {
            if let Some(m) = self.cur.msgs.get(&s).cloned() {
                if sent < self.cfg.max_messages as u32 {
                    self.send(Dest::All, Packet::Mcast(m));
                    self.stats.retransmitted += 1;
                    sent += 1;
                    continue;
                }
            }
            remaining_rtr.push(s);
        }
        t.rtr = remaining_rtr;
        budget -= sent as i64;

        // Originate: old-ring messages during Recovery, application messages when Operational.
        while budget > 0 {
            let body = if self.state == State::Recovery {
                match self.recovery_queue.pop_front() {
                    Some(m) => Body::Recovered(Box::new(m)),
                    None => break,
                }
            } else {
                match self.queue.pop_front() {
                    Some(a) => {
                        if a.frag_count > 1 {
                            if a.frag_index + 1 == a.frag_count {
                                self.sent_frags.clear();
                            } else {
                                self.sent_frags.push(a.clone());
                            }
                        }
                        Body::App(a)
                    }
                    None => break,
                }
            };
            t.seq += 1;
            let m = Mcast { ring: self.cur.ring, seq: t.seq, sender: self.me, body };
            self.send(Dest::All, Packet::Mcast(m.clone()));
            self.cur.insert(m);
            budget -= 1;
            sent += 1;
        }

        // Ask for what is missing.
        for s in (self.cur.aru + 1)..=t.seq {
            if t.rtr.len() >= 256 {
                break;
            }
            if !self.cur.msgs.contains_key(&s) && !t.rtr.contains(&s) {
                t.rtr.push(s);
            }
        }

        // The all-received-up-to mark.
        if self.cur.aru < t.aru || t.aru_addr == self.me || t.aru_addr == 0 {
            t.aru = self.cur.aru.min(t.seq);
            t.aru_addr = if t.aru == t.seq { 0 } else { self.me };
        }
        if t.aru_addr == self.me {
            self.aru_stuck_visits += 1;
        } else {
            self.aru_stuck_visits = 0;
        }

        // Flow control: running totals over one rotation.
        t.fcc = (t.fcc as i64 + sent as i64 - self.sent_last_visit as i64).max(0) as u32;
        self.sent_last_visit = sent;
        let backlog = (self.queue.len() + self.recovery_queue.len()) as u32;
        t.backlog = (t.backlog as i64 + backlog as i64 - self.backlog_last_visit as i64).max(0) as u32;
        self.backlog_last_visit = backlog;

        // Recovery termination bookkeeping.
        if self.state == State::Recovery {
            let pending = !self.recovery_queue.is_empty();
            if rep {
                t.retrans_prev = t.retrans_cur;
                t.retrans_cur = pending;
            } else {
                t.retrans_cur |= pending;
            }
        }

        let token_aru = t.aru;
        // Free what every member holds (two consecutive visits agree on it).
        let stable = token_aru.min(self.prev_token_aru).min(self.cur.delivered);
        let keep = self.cur.msgs.split_off(&(stable + 1));
        self.cur.msgs = keep;
        let prev_aru = self.prev_token_aru;
        self.prev_token_aru = token_aru;

        // Idle detection and hold (the representative only).
        if rep {
            if t.seq == self.last_seen_seq && t.rtr.is_empty() && self.queue.is_empty() {
                self.seq_unchanged_rotations += 1;
            } else {
                self.seq_unchanged_rotations = 0;
            }
            self.last_seen_seq = t.seq;
        }
        t.token_seq += 1;
        let next = Self::successor(&self.cur.members, self.me);
        let idle = rep && self.state == State::Operational && self.seq_unchanged_rotations >= self.cfg.seqno_unchanged_const;
        if idle {
            self.holding = Some(t.clone());
            self.arm(Timer::Hold, self.cfg.hold_ms);
            self.arm(Timer::TokenLoss, self.cfg.token_ms);
        } else {
            self.send_token(next, Packet::Token(t.clone()));
        }

        match self.state {
            State::Operational => {
                self.deliver_ready();
                if self.aru_stuck_visits > self.cfg.fail_recv_const {
                    // This node cannot receive: leave the ring rather than stall it.
                    self.aru_stuck_visits = 0;
                    self.fail_set.insert(self.me);
                    self.enter_gather();
                }
            }
            State::Recovery => self.recovery_visit(&t, prev_aru),
            _ => {}
        }
    }

    /// A ring change cut a fragmented message: put its sent fragments back in front.
    pub(super) fn requeue_partial_message(&mut self) {
        for f in std::mem::take(&mut self.sent_frags).into_iter().rev() {
            self.queue.push_front(f);
        }
    }

    fn release_held_token(&mut self) {
        self.disarm(Timer::Hold);
        if let Some(t) = self.holding.take() {
            self.seq_unchanged_rotations = 0;
            let next = Self::successor(&self.cur.members, self.me);
            self.send_token(next, Packet::Token(t));
        }
    }
}
