//! Closed process groups (CPG) over totem, as a sans-IO state machine: one instance per node,
//! owned by the membership daemon. Behaviour follows cpg_overview(3) as summarised in
//! `shared/MEMBERSHIP-NOTES.md` §6 (no Corosync code or text is copied).
//!
//! A group is a name (1..=128 bytes); a member is `(nodeid, pid)`. Local requests (join, leave,
//! multicast, a client that went away) become totem messages; every node applies them at the
//! same point of totem's agreed stream, interleaved with the configuration changes, so members
//! that move together see the same membership changes and messages in the same order.
//!
//! Views. Each node keeps its view of every group (`members`). A node's own members change only
//! through its own messages; other nodes apply the same messages, so their view of that node's
//! members is always a subset of the node's own view (equal while they share a history).
//! - Transitional configuration: members on nodes outside the transitional membership are
//!   removed, reason NodeDown, one ConfChg per group, before any message of the new
//!   configuration is applied (later messages from those nodes are dropped).
//! - Regular configuration: a sync round starts. Every node submits a JoinList (its own members
//!   as its view holds them at this point, tagged with the new ring id). Until the JoinList of
//!   every member of the ring has been delivered, other messages are held, so no node's view of
//!   its own members changes and each list stays exact. When the last list arrives, the entries
//!   a node did not have are added (reason NodeUp, one ConfChg per group) — at that point every
//!   node of the ring holds the same view — and the held messages are then applied in order.
//!   This is the sync barrier of the notes §2.5: after it, group-level virtual synchrony holds
//!   across the whole ring, merged partitions included.
//!
//! Refinements of the brief's rule "add the members of a JoinList from a joined node":
//! - Lists from every member are applied (entries already present are ignored). For a node
//!   that shares our history this adds nothing; for a node we had lost it restores what we
//!   miss, also when an earlier sync with it was interrupted (see next point).
//! - A configuration change that arrives before a sync round completes ends it: the lists
//!   received so far are applied, then the held messages (under the views as they stand, which
//!   may still differ between formerly separate sides), then the change. JoinLists of that
//!   round delivered later are stale and ignored (counted). The next regular configuration
//!   starts a new round that reconciles the views again.
//! - Liveness: a member that never sends its JoinList stalls the round (messages stay held)
//!   until the next configuration change; the daemon must submit every payload it polls.
//!
//! Events are produced for every group change and message, also when no local process is a
//! member (`local_members` empty: nothing to hand out, but the stream stays the same on every
//! node). A process that leaves receives the ConfChg that shows it leaving; a process that
//! disconnected (ProcDown) does not. Members are ordered by `(nodeid, pid)` everywhere.
//! Not implemented: the model-v1 totem callback, flow-control state (the daemon sees it from
//! `Totem::submit`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::totem::{ConfigChange, ConfigKind};
use crate::wire::{NodeId, RingId};

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME: usize = 128;
/// Largest multicast payload, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A group member: (nodeid, pid).
pub type Member = (NodeId, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The process joined.
    Join,
    /// The process left cleanly.
    Leave,
    /// Its node left the totem membership.
    NodeDown,
    /// It appears because its node merged in.
    NodeUp,
    /// The process disconnected without leaving.
    ProcDown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpgEvent {
    /// A message for every local member of `group` (the daemon fans it out to them).
    Deliver { group: String, from: Member, data: Vec<u8>, local_members: Vec<u32> },
    /// Membership change of a group, for its local members: full member list, joined and left
    /// with reasons.
    ConfChg {
        group: String,
        members: Vec<Member>,
        joined: Vec<(Member, Reason)>,
        left: Vec<(Member, Reason)>,
        local_members: Vec<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpgError {
    #[error("invalid group name: {0} bytes, must be 1 to 128")]
    GroupName(usize),
    #[error("message of {0} bytes is larger than the limit of 1048576")]
    TooLarge(usize),
    #[error("process {pid} has already joined group {group:?}")]
    AlreadyJoined { group: String, pid: u32 },
    #[error("process {pid} is not a member of group {group:?}")]
    NotJoined { group: String, pid: u32 },
    #[error("a message may be addressed to at most 64 nodes, not {0}")]
    TooManyAddressees(usize),
}

/// Counters a daemon exposes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpgStats {
    /// Payloads that did not decode (ignored).
    pub malformed: u64,
    /// Messages from a node outside the current configuration (ignored).
    pub foreign: u64,
    /// Multicasts from a process that is not a member of the group (dropped).
    pub not_member: u64,
    /// JoinLists of another ring or sync round, or repeated (ignored).
    pub stale_joinlists: u64,
    /// Deliver events produced.
    pub delivered: u64,
}

// ---- wire format -------------------------------------------------------------------------
//
// One type byte, then fields in order; integers little-endian; a group name is a u8 length
// (1..=128) and UTF-8 bytes; data is a u32 length (≤ MAX_MESSAGE) and bytes; a JoinList is the
// ring (u32 rep, u64 seq), a u32 count and (group, u32 pid) entries. Trailing bytes are an error.

const T_JOIN: u8 = 1;
const T_LEAVE: u8 = 2;
const T_PROCDOWN: u8 = 3;
const T_MCAST: u8 = 4;
const T_JOINLIST: u8 = 5;
const T_MCAST_TO: u8 = 6;
/// The most nodes one message may be addressed to.
const MAX_ADDRESSEES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Join { group: String, pid: u32 },
    Leave { group: String, pid: u32 },
    ProcDown { group: String, pid: u32 },
    /// `to`: the nodes whose members are given it (empty: every node).
    Mcast { group: String, pid: u32, to: Vec<NodeId>, data: Vec<u8> },
    JoinList { ring: RingId, entries: Vec<(String, u32)> },
}

fn put_group(out: &mut Vec<u8>, group: &str) {
    out.push(group.len() as u8);
    out.extend_from_slice(group.as_bytes());
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Msg::Join { group, pid } | Msg::Leave { group, pid } | Msg::ProcDown { group, pid } => {
                out.push(match self {
                    Msg::Join { .. } => T_JOIN,
                    Msg::Leave { .. } => T_LEAVE,
                    _ => T_PROCDOWN,
                });
                put_group(&mut out, group);
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Msg::Mcast { group, pid, to, data } => {
                out.reserve(11 + 4 * to.len() + group.len() + data.len());
                if to.is_empty() {
                    out.push(T_MCAST);
                } else {
                    out.push(T_MCAST_TO);
                    out.push(to.len() as u8);
                    for n in to {
                        out.extend_from_slice(&n.to_le_bytes());
                    }
                }
                put_group(&mut out, group);
                out.extend_from_slice(&pid.to_le_bytes());
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
            Msg::JoinList { ring, entries } => {
                out.push(T_JOINLIST);
                out.extend_from_slice(&ring.rep.to_le_bytes());
                out.extend_from_slice(&ring.seq.to_le_bytes());
                out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for (group, pid) in entries {
                    put_group(&mut out, group);
                    out.extend_from_slice(&pid.to_le_bytes());
                }
            }
        }
        out
    }

    fn decode(buf: &[u8]) -> Option<Msg> {
        let mut r = Reader(buf);
        let msg = match r.u8()? {
            T_JOIN => Msg::Join { group: r.group()?, pid: r.u32()? },
            T_LEAVE => Msg::Leave { group: r.group()?, pid: r.u32()? },
            T_PROCDOWN => Msg::ProcDown { group: r.group()?, pid: r.u32()? },
            t @ (T_MCAST | T_MCAST_TO) => {
                let mut to = Vec::new();
                if t == T_MCAST_TO {
                    let count = r.u8()? as usize;
                    if count == 0 || count > MAX_ADDRESSEES {
                        return None;
                    }
                    for _ in 0..count {
                        to.push(r.u32()?);
                    }
                }
                let (group, pid) = (r.group()?, r.u32()?);
                let len = r.u32()? as usize;
                if len > MAX_MESSAGE {
                    return None;
                }
                Msg::Mcast { group, pid, to, data: r.take(len)?.to_vec() }
            }
            T_JOINLIST => {
                let ring = RingId { rep: r.u32()?, seq: r.u64()? };
                let count = r.u32()? as usize;
                // Every entry takes at least 6 bytes: refuse counts the payload cannot hold.
                if count > r.0.len() / 6 {
                    return None;
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push((r.group()?, r.u32()?));
                }
                Msg::JoinList { ring, entries }
            }
            _ => return None,
        };
        r.0.is_empty().then_some(msg)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn group(&mut self) -> Option<String> {
        let len = self.u8()? as usize;
        if len == 0 || len > MAX_GROUP_NAME {
            return None;
        }
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn check_group(group: &str) -> Result<(), CpgError> {
    match group.len() {
        1..=MAX_GROUP_NAME => Ok(()),
        n => Err(CpgError::GroupName(n)),
    }
}

// ---- the state machine -------------------------------------------------------------------

/// A sync round: from a regular configuration until every member's JoinList is delivered.
#[derive(Debug)]
struct SyncRound {
    ring: RingId,
    /// Members whose JoinList for this ring has not been delivered yet.
    waiting: BTreeSet<NodeId>,
    /// JoinLists delivered so far, in order.
    lists: Vec<(NodeId, Vec<(String, u32)>)>,
    /// Other messages delivered meanwhile, applied when the round ends.
    held: Vec<(NodeId, Msg)>,
}

pub struct Cpg {
    local: NodeId,
    /// The agreed view: group → members. Groups without members are not kept.
    groups: BTreeMap<String, BTreeSet<Member>>,
    /// Local memberships as they will stand once every message submitted so far has been
    /// applied: (pid, group). Validates local requests.
    intent: BTreeSet<(u32, String)>,
    /// Nodes of the current configuration (transitional or regular); others' messages are ignored.
    config: BTreeSet<NodeId>,
    /// The last regular configuration.
    ring: Option<RingId>,
    sync: Option<SyncRound>,
    /// True once a sync round has completed in the current regular configuration: every node
    /// of the ring holds the same view (kept through a following transitional configuration).
    synced: bool,
    submit: VecDeque<Vec<u8>>,
    events: VecDeque<CpgEvent>,
    stats: CpgStats,
}

impl Cpg {
    pub fn new(local: NodeId) -> Cpg {
        Cpg {
            local,
            groups: BTreeMap::new(),
            intent: BTreeSet::new(),
            config: BTreeSet::new(),
            ring: None,
            sync: None,
            synced: false,
            submit: VecDeque::new(),
            events: VecDeque::new(),
            stats: CpgStats::default(),
        }
    }

    pub fn local(&self) -> NodeId {
        self.local
    }

    // ---- local client requests ----------------------------------------------------------

    /// Join `group` as local process `pid`. Takes effect (ConfChg) when the message comes back
    /// through totem.
    pub fn join(&mut self, group: &str, pid: u32) -> Result<(), CpgError> {
        check_group(group)?;
        if !self.intent.insert((pid, group.to_string())) {
            return Err(CpgError::AlreadyJoined { group: group.to_string(), pid });
        }
        self.push(Msg::Join { group: group.to_string(), pid });
        Ok(())
    }

    /// Leave `group`. The process receives the ConfChg showing it leaving.
    pub fn leave(&mut self, group: &str, pid: u32) -> Result<(), CpgError> {
        check_group(group)?;
        if !self.intent.remove(&(pid, group.to_string())) {
            return Err(CpgError::NotJoined { group: group.to_string(), pid });
        }
        self.push(Msg::Leave { group: group.to_string(), pid });
        Ok(())
    }

    /// Multicast to `group` in agreed order; only a process that joined (and has not asked to
    /// leave) may send. Its own join is ordered before the message.
    pub fn mcast(&mut self, group: &str, pid: u32, data: Vec<u8>) -> Result<(), CpgError> {
        self.mcast_to(group, pid, data, &[])
    }

    /// Multicast that only members on the nodes `to` are given (every node if empty): it is
    /// ordered with the group's other messages everywhere, and skipped where not addressed.
    pub fn mcast_to(&mut self, group: &str, pid: u32, data: Vec<u8>, to: &[NodeId]) -> Result<(), CpgError> {
        check_group(group)?;
        if data.len() > MAX_MESSAGE {
            return Err(CpgError::TooLarge(data.len()));
        }
        if to.len() > MAX_ADDRESSEES {
            return Err(CpgError::TooManyAddressees(to.len()));
        }
        if !self.intent.contains(&(pid, group.to_string())) {
            return Err(CpgError::NotJoined { group: group.to_string(), pid });
        }
        self.push(Msg::Mcast { group: group.to_string(), pid, to: to.to_vec(), data });
        Ok(())
    }

    /// A local process disconnected without leaving: ProcDown for every group it joined.
    pub fn client_gone(&mut self, pid: u32) {
        let gone: Vec<(u32, String)> = self.intent.range((pid, String::new())..).take_while(|(p, _)| *p == pid).cloned().collect();
        for key in gone {
            self.intent.remove(&key);
            self.push(Msg::ProcDown { group: key.1, pid });
        }
    }

    /// Payloads for the daemon to hand to `Totem::submit`, in order (retry, never drop, when
    /// totem refuses one).
    pub fn poll_submit(&mut self) -> Option<Vec<u8>> {
        self.submit.pop_front()
    }

    fn push(&mut self, msg: Msg) {
        self.submit.push_back(msg.encode());
    }

    // ---- input from totem -----------------------------------------------------------------

    /// A message delivered by totem (agreed order). Malformed payloads are ignored and counted.
    pub fn on_deliver(&mut self, sender: NodeId, payload: &[u8]) {
        let Some(msg) = Msg::decode(payload) else {
            self.stats.malformed += 1;
            return;
        };
        if !self.config.contains(&sender) {
            self.stats.foreign += 1;
            return;
        }
        match (self.sync.as_mut(), msg) {
            (Some(round), Msg::JoinList { ring, entries }) if ring == round.ring && round.waiting.contains(&sender) => {
                round.waiting.remove(&sender);
                round.lists.push((sender, entries));
                if round.waiting.is_empty() {
                    self.end_sync();
                    self.synced = true;
                }
            }
            (_, Msg::JoinList { .. }) => self.stats.stale_joinlists += 1,
            (Some(round), msg) => round.held.push((sender, msg)),
            (None, msg) => self.apply(sender, msg),
        }
    }

    /// A configuration change from totem, at its place in the delivery stream.
    pub fn on_config(&mut self, change: &ConfigChange) {
        // A round still open is cut short here: what it gathered is applied first.
        if self.sync.is_some() {
            self.end_sync();
        }
        match change.kind {
            ConfigKind::Transitional => {
                let keep: BTreeSet<NodeId> = change.members.iter().copied().chain([self.local]).collect();
                let local = self.local;
                self.remove_nodes(|n| n != local && !keep.contains(&n));
                self.config = keep;
            }
            ConfigKind::Regular => {
                let members: BTreeSet<NodeId> = change.members.iter().copied().chain([self.local]).collect();
                let joined: BTreeSet<NodeId> = change.joined.iter().copied().collect();
                // Normally a no-op (the transitional configuration removed them); covers a
                // regular configuration without one, and a joined node's earlier incarnation.
                let local = self.local;
                self.remove_nodes(|n| n != local && (!members.contains(&n) || joined.contains(&n)));
                self.config = members.clone();
                self.ring = Some(change.ring);
                self.synced = false;
                let own: Vec<(String, u32)> = self
                    .groups
                    .iter()
                    .flat_map(|(g, set)| set.range((local, 0)..=(local, u32::MAX)).map(move |&(_, pid)| (g.clone(), pid)))
                    .collect();
                self.push(Msg::JoinList { ring: change.ring, entries: own });
                self.sync = Some(SyncRound { ring: change.ring, waiting: members, lists: Vec::new(), held: Vec::new() });
            }
        }
    }

    /// Ends the sync round: NodeUp for the listed members we lack, then the held messages.
    fn end_sync(&mut self) {
        let Some(round) = self.sync.take() else { return };
        let mut added: BTreeMap<String, BTreeSet<Member>> = BTreeMap::new();
        for (node, entries) in round.lists {
            for (group, pid) in entries {
                if !self.groups.get(&group).is_some_and(|s| s.contains(&(node, pid))) {
                    added.entry(group).or_default().insert((node, pid));
                }
            }
        }
        for (group, new) in added {
            self.groups.entry(group.clone()).or_default().extend(new.iter().copied());
            let joined = new.into_iter().map(|m| (m, Reason::NodeUp)).collect();
            self.confchg(group, joined, Vec::new());
        }
        for (sender, msg) in round.held {
            self.apply(sender, msg);
        }
    }

    fn apply(&mut self, sender: NodeId, msg: Msg) {
        match msg {
            Msg::Join { group, pid } => {
                if self.groups.entry(group.clone()).or_default().insert((sender, pid)) {
                    self.confchg(group, vec![((sender, pid), Reason::Join)], Vec::new());
                }
            }
            Msg::Leave { group, pid } => self.remove_one(group, (sender, pid), Reason::Leave),
            Msg::ProcDown { group, pid } => self.remove_one(group, (sender, pid), Reason::ProcDown),
            Msg::Mcast { group, pid, to, data } => {
                if !self.groups.get(&group).is_some_and(|s| s.contains(&(sender, pid))) {
                    self.stats.not_member += 1;
                    return;
                }
                if !to.is_empty() && !to.contains(&self.local) {
                    return;
                }
                let local_members = self.local_pids(&group);
                self.stats.delivered += 1;
                self.events.push_back(CpgEvent::Deliver { group, from: (sender, pid), data, local_members });
            }
            Msg::JoinList { .. } => self.stats.stale_joinlists += 1,
        }
    }

    fn remove_one(&mut self, group: String, member: Member, reason: Reason) {
        let Some(set) = self.groups.get_mut(&group) else { return };
        if set.remove(&member) {
            if set.is_empty() {
                self.groups.remove(&group);
            }
            self.confchg(group, Vec::new(), vec![(member, reason)]);
        }
    }

    /// Removes every member whose node matches, NodeDown, one ConfChg per affected group.
    fn remove_nodes(&mut self, gone: impl Fn(NodeId) -> bool) {
        let mut changes = Vec::new();
        self.groups.retain(|group, set| {
            let left: Vec<Member> = set.iter().copied().filter(|m| gone(m.0)).collect();
            if !left.is_empty() {
                set.retain(|m| !gone(m.0));
                changes.push((group.clone(), left));
            }
            !set.is_empty()
        });
        for (group, left) in changes {
            self.confchg(group, Vec::new(), left.into_iter().map(|m| (m, Reason::NodeDown)).collect());
        }
    }

    fn local_pids(&self, group: &str) -> Vec<u32> {
        let local = self.local;
        self.groups.get(group).map(|s| s.range((local, 0)..=(local, u32::MAX)).map(|m| m.1).collect()).unwrap_or_default()
    }

    /// Emits a ConfChg for the view as it now stands; local processes that left cleanly get it too.
    fn confchg(&mut self, group: String, joined: Vec<(Member, Reason)>, left: Vec<(Member, Reason)>) {
        let members: Vec<Member> = self.groups.get(&group).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let mut local_members = self.local_pids(&group);
        local_members.extend(left.iter().filter(|(m, r)| m.0 == self.local && *r == Reason::Leave).map(|(m, _)| m.1));
        local_members.sort_unstable();
        self.events.push_back(CpgEvent::ConfChg { group, members, joined, left, local_members });
    }

    // ---- output and queries -----------------------------------------------------------------

    /// Events for local clients, in order.
    pub fn poll_event(&mut self) -> Option<CpgEvent> {
        self.events.pop_front()
    }

    /// The current view of a group (empty if it has no members).
    pub fn members(&self, group: &str) -> Vec<Member> {
        self.groups.get(group).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// Groups with at least one member, by name.
    pub fn groups(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Groups a local process has joined or asked to join (and not left).
    pub fn joined_groups(&self, pid: u32) -> Vec<String> {
        self.intent.range((pid, String::new())..).take_while(|(p, _)| *p == pid).map(|(_, g)| g.clone()).collect()
    }

    /// True once every member's JoinList of the current regular configuration has been
    /// delivered (views agree across the ring); false while messages are held for the sync.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The last regular configuration seen.
    pub fn ring(&self) -> Option<RingId> {
        self.ring
    }

    pub fn stats(&self) -> CpgStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    // ---- a fake totem: components with an agreed stream each ---------------------------------

    #[derive(Debug, Clone)]
    enum Item {
        Msg(NodeId, Vec<u8>),
        Conf(ConfigChange),
    }

    struct Node {
        cpg: Cpg,
        alive: bool,
        /// Submitted, not yet ordered (totem's send queue).
        outbox: VecDeque<Vec<u8>>,
        /// (step, event) as this incarnation produced them.
        events: Vec<(u64, CpgEvent)>,
        /// The view replayed from this node's ConfChg events.
        view: BTreeMap<String, Vec<Member>>,
        /// Test multicast ids this incarnation sent, and all it delivered.
        sent: BTreeSet<u64>,
        delivered: BTreeSet<u64>,
        last_from: BTreeMap<Member, u64>,
        /// The last configuration fed: (ring, its members).
        conf: (RingId, Vec<NodeId>),
        synced_ring: Option<RingId>,
    }

    impl Node {
        fn new(id: NodeId) -> Node {
            Node {
                cpg: Cpg::new(id),
                alive: true,
                outbox: VecDeque::new(),
                events: Vec::new(),
                view: BTreeMap::new(),
                sent: BTreeSet::new(),
                delivered: BTreeSet::new(),
                last_from: BTreeMap::new(),
                conf: (RingId::default(), Vec::new()),
                synced_ring: None,
            }
        }
    }

    struct Comp {
        ring: RingId,
        members: Vec<NodeId>,
        delivered_any: bool,
    }

    #[derive(Default)]
    struct Sim {
        nodes: BTreeMap<NodeId, Node>,
        comps: Vec<Comp>,
        ring_seq: u64,
        step: u64,
        next_msg: u64,
        /// At most this many messages are in flight when a ring breaks.
        max_inflight: usize,
        /// Each ring's view at sync completion, as the first node to complete it held it.
        synced_views: BTreeMap<RingId, BTreeMap<String, BTreeSet<Member>>>,
        /// (message id, configuration) → (group, from, members) as delivered under synced views.
        agreed: BTreeMap<Agreed, (String, Member, Vec<Member>)>,
        /// Every item fed, with its receivers.
        log: Vec<(Vec<NodeId>, Item)>,
    }

    type Agreed = (u64, RingId, Vec<NodeId>);

    fn regular(ring: RingId, members: &[NodeId], joined: &[NodeId]) -> ConfigChange {
        ConfigChange { kind: ConfigKind::Regular, ring, members: members.to_vec(), left: vec![], joined: joined.to_vec() }
    }

    fn transitional(ring: RingId, members: &[NodeId], left: &[NodeId]) -> ConfigChange {
        ConfigChange { kind: ConfigKind::Transitional, ring, members: members.to_vec(), left: left.to_vec(), joined: vec![] }
    }

    fn strip(ev: &CpgEvent) -> CpgEvent {
        let mut ev = ev.clone();
        match &mut ev {
            CpgEvent::Deliver { local_members, .. } | CpgEvent::ConfChg { local_members, .. } => local_members.clear(),
        }
        ev
    }

    fn group_of(ev: &CpgEvent) -> &str {
        match ev {
            CpgEvent::Deliver { group, .. } | CpgEvent::ConfChg { group, .. } => group,
        }
    }

    impl Sim {
        /// Nodes that start together: one ring, initial regular configuration.
        fn new(ids: &[NodeId]) -> Sim {
            let mut sim = Sim::default();
            for &id in ids {
                sim.nodes.insert(id, Node::new(id));
            }
            sim.ring_seq = 1;
            let ring = RingId { rep: ids[0], seq: 1 };
            sim.comps.push(Comp { ring, members: ids.to_vec(), delivered_any: false });
            sim.feed(ids, Item::Conf(regular(ring, ids, ids)));
            sim
        }

        fn pump(&mut self, id: NodeId) {
            let n = self.nodes.get_mut(&id).unwrap();
            while let Some(p) = n.cpg.poll_submit() {
                n.outbox.push_back(p);
            }
        }

        /// Feeds one item identically to `to`, then checks each receiver's events.
        fn feed(&mut self, to: &[NodeId], item: Item) {
            self.step += 1;
            for &id in to {
                let n = self.nodes.get_mut(&id).unwrap();
                assert!(n.alive);
                match &item {
                    Item::Msg(sender, payload) => n.cpg.on_deliver(*sender, payload),
                    Item::Conf(c) => {
                        n.conf = (c.ring, c.members.clone());
                        n.cpg.on_config(c)
                    }
                }
                while let Some(p) = n.cpg.poll_submit() {
                    n.outbox.push_back(p);
                }
                let synced = n.cpg.synced();
                while let Some(ev) = n.cpg.poll_event() {
                    check_event(id, n, &ev, synced, &mut self.agreed);
                    n.events.push((self.step, ev));
                }
                if synced && n.synced_ring != n.cpg.ring() {
                    n.synced_ring = n.cpg.ring();
                    let ring = n.cpg.ring().unwrap();
                    let view = self.synced_views.entry(ring).or_insert_with(|| n.cpg.groups.clone());
                    assert_eq!(*view, n.cpg.groups, "node {id}: views differ at the end of ring {ring}'s sync");
                }
            }
            self.log.push((to.to_vec(), item));
        }

        fn comp_of(&self, id: NodeId) -> Option<usize> {
            self.comps.iter().position(|c| c.members.contains(&id))
        }

        /// Totem orders the head of `sender`'s queue in its component.
        fn deliver_from(&mut self, sender: NodeId) -> bool {
            let Some(ci) = self.comp_of(sender) else { return false };
            let Some(p) = self.nodes.get_mut(&sender).unwrap().outbox.pop_front() else { return false };
            self.comps[ci].delivered_any = true;
            let to = self.comps[ci].members.clone();
            self.feed(&to, Item::Msg(sender, p));
            true
        }

        /// Orders everything queued in every component, round robin.
        fn drain(&mut self) {
            for _ in 0..100_000 {
                let senders: Vec<NodeId> = self.comps.iter().flat_map(|c| c.members.clone()).collect();
                let mut any = false;
                for s in senders {
                    any |= self.deliver_from(s);
                }
                if !any {
                    return;
                }
            }
            panic!("drain does not terminate");
        }

        fn mcast(&mut self, id: NodeId, group: &str, pid: u32, pad: usize) -> Result<(), CpgError> {
            self.next_msg += 1;
            let mut data = self.next_msg.to_le_bytes().to_vec();
            data.resize(8 + pad, 0xAB);
            let n = self.nodes.get_mut(&id).unwrap();
            n.cpg.mcast(group, pid, data)?;
            n.sent.insert(self.next_msg);
            self.pump(id);
            Ok(())
        }

        fn op(&mut self, id: NodeId, f: impl FnOnce(&mut Cpg) -> Result<(), CpgError>) -> Result<(), CpgError> {
            let r = f(&mut self.nodes.get_mut(&id).unwrap().cpg);
            self.pump(id);
            r
        }

        /// Replaces the components that hold any node of `parts` (plus `dead` nodes) by new
        /// rings, one per part, as totem would: per old ring a transitional configuration
        /// (skipped for a never-used single-node ring), messages in flight delivered in it,
        /// then the new regular configuration.
        fn reconfigure(&mut self, parts: Vec<Vec<NodeId>>, rng: &mut SmallRng) {
            let touched: BTreeSet<NodeId> = parts.iter().flatten().copied().collect();
            let (old, keep): (Vec<Comp>, Vec<Comp>) =
                std::mem::take(&mut self.comps).into_iter().partition(|c| c.members.iter().any(|m| touched.contains(m) || !self.nodes[m].alive));
            self.comps = keep;
            // Messages in flight when each old ring broke: heads of random members' queues.
            let mut inflight: Vec<Vec<(NodeId, Vec<u8>)>> = Vec::new();
            for c in &old {
                let mut f = Vec::new();
                let initial = c.members.len() == 1 && !c.delivered_any;
                if !initial {
                    for _ in 0..rng.gen_range(0..=self.max_inflight) {
                        let s = c.members[rng.gen_range(0..c.members.len())];
                        if let Some(p) = self.nodes.get_mut(&s).unwrap().outbox.pop_front() {
                            f.push((s, p));
                        }
                    }
                }
                inflight.push(f);
            }
            for mut part in parts {
                part.sort_unstable();
                self.ring_seq += 1;
                let ring = RingId { rep: part[0], seq: self.ring_seq };
                for (ci, c) in old.iter().enumerate() {
                    let piece: Vec<NodeId> = c.members.iter().copied().filter(|m| part.contains(m)).collect();
                    if piece.is_empty() {
                        continue;
                    }
                    if c.members.len() == 1 && !c.delivered_any {
                        self.feed(&piece, Item::Conf(regular(ring, &part, &part)));
                        continue;
                    }
                    let left: Vec<NodeId> = c.members.iter().copied().filter(|m| !piece.contains(m)).collect();
                    self.feed(&piece, Item::Conf(transitional(c.ring, &piece, &left)));
                    // A sender's own side always gets its messages; another side a prefix of them.
                    let mut cut = BTreeSet::new();
                    for (s, p) in inflight[ci].clone() {
                        if piece.contains(&s) || (!cut.contains(&s) && rng.gen_bool(0.5)) {
                            self.feed(&piece, Item::Msg(s, p));
                        } else {
                            cut.insert(s);
                        }
                    }
                    let joined: Vec<NodeId> = part.iter().copied().filter(|m| !piece.contains(m)).collect();
                    self.feed(&piece, Item::Conf(regular(ring, &part, &joined)));
                }
                self.comps.push(Comp { ring, members: part, delivered_any: false });
            }
        }

        fn crash(&mut self, id: NodeId, rng: &mut SmallRng) {
            let ci = self.comp_of(id).unwrap();
            self.nodes.get_mut(&id).unwrap().alive = false;
            let rest: Vec<NodeId> = self.comps[ci].members.iter().copied().filter(|&m| m != id).collect();
            if rest.is_empty() {
                self.comps.remove(ci);
            } else {
                self.reconfigure(vec![rest], rng);
            }
            self.nodes.get_mut(&id).unwrap().outbox.clear();
        }

        /// A crashed node comes back with fresh state in a ring of its own.
        fn restart(&mut self, id: NodeId) {
            assert!(!self.nodes[&id].alive);
            self.nodes.insert(id, Node::new(id));
            self.ring_seq += 1;
            let ring = RingId { rep: id, seq: self.ring_seq };
            self.comps.push(Comp { ring, members: vec![id], delivered_any: false });
            self.feed(&[id], Item::Conf(regular(ring, &[id], &[id])));
        }

        fn live(&self) -> Vec<NodeId> {
            self.nodes.iter().filter(|(_, n)| n.alive).map(|(&id, _)| id).collect()
        }

        /// Events of `id` for `group`, without local_members.
        fn stream(&self, id: NodeId, group: &str) -> Vec<CpgEvent> {
            self.nodes[&id].events.iter().filter(|(_, e)| group_of(e) == group).map(|(_, e)| strip(e)).collect()
        }

        fn take_events(&mut self, id: NodeId) -> Vec<CpgEvent> {
            std::mem::take(&mut self.nodes.get_mut(&id).unwrap().events).into_iter().map(|(_, e)| e).collect()
        }
    }

    /// Per-node checks of one event: ConfChgs are consistent with the previous view, messages
    /// come from members, local_members is right, no duplicate and per-sender FIFO delivery, and
    /// members that share a configuration and a synced view deliver a message identically.
    fn check_event(
        id: NodeId,
        n: &mut Node,
        ev: &CpgEvent,
        synced: bool,
        agreed: &mut BTreeMap<Agreed, (String, Member, Vec<Member>)>,
    ) {
        let local_of = |members: &[Member]| members.iter().filter(|m| m.0 == id).map(|m| m.1).collect::<Vec<u32>>();
        match ev {
            CpgEvent::ConfChg { group, members, joined, left, local_members } => {
                assert!(!joined.is_empty() || !left.is_empty(), "empty confchg");
                let mut expect: BTreeSet<Member> = n.view.get(group).cloned().unwrap_or_default().into_iter().collect();
                for (m, r) in left {
                    assert!(expect.remove(m), "node {id}: {m:?} left {group} without being a member");
                    assert!(matches!(r, Reason::Leave | Reason::NodeDown | Reason::ProcDown));
                    assert!(!(m.0 == id && *r == Reason::NodeDown), "node {id} saw itself down");
                }
                for (m, r) in joined {
                    assert!(expect.insert(*m), "node {id}: {m:?} joined {group} twice");
                    assert!(matches!(r, Reason::Join | Reason::NodeUp));
                }
                assert_eq!(expect.into_iter().collect::<Vec<_>>(), *members, "node {id}: confchg list of {group}");
                let mut local = local_of(members);
                local.extend(left.iter().filter(|(m, r)| m.0 == id && *r == Reason::Leave).map(|(m, _)| m.1));
                local.sort_unstable();
                assert_eq!(*local_members, local);
                if members.is_empty() {
                    n.view.remove(group);
                } else {
                    n.view.insert(group.clone(), members.clone());
                }
            }
            CpgEvent::Deliver { group, from, data, local_members } => {
                let view = n.view.get(group).cloned().unwrap_or_default();
                assert!(view.contains(from), "node {id}: message from non-member {from:?} of {group}");
                assert_eq!(*local_members, local_of(&view));
                // Test multicasts start with a unique id; scenario payloads may be shorter.
                let Some(mid) = data.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap())) else { return };
                assert!(n.delivered.insert(mid), "node {id}: message {mid} delivered twice");
                let last = n.last_from.insert(*from, mid).unwrap_or(0);
                assert!(last < mid, "node {id}: messages of {from:?} out of order");
                if synced {
                    let key = (mid, n.conf.0, n.conf.1.clone());
                    let seen = agreed.entry(key).or_insert_with(|| (group.clone(), *from, view.clone()));
                    assert_eq!(*seen, (group.clone(), *from, view), "node {id}: message {mid} delivered under another view");
                }
            }
        }
    }

    fn confchg(group: &str, members: &[Member], joined: &[(Member, Reason)], left: &[(Member, Reason)], local: &[u32]) -> CpgEvent {
        CpgEvent::ConfChg {
            group: group.into(),
            members: members.to_vec(),
            joined: joined.to_vec(),
            left: left.to_vec(),
            local_members: local.to_vec(),
        }
    }

    fn deliver(group: &str, from: Member, data: &[u8], local: &[u32]) -> CpgEvent {
        CpgEvent::Deliver { group: group.into(), from, data: data.to_vec(), local_members: local.to_vec() }
    }

    /// Initial rings after their sync, events cleared.
    fn started(ids: &[NodeId]) -> Sim {
        let mut sim = Sim::new(ids);
        sim.drain();
        for &id in ids {
            assert!(sim.nodes[&id].cpg.synced());
            assert!(sim.take_events(id).is_empty());
        }
        sim
    }

    // ---- unit tests --------------------------------------------------------------------------

    #[test]
    fn cpg_wire_roundtrip_and_malformed_input() {
        let ring = RingId { rep: 3, seq: 77 };
        let msgs = vec![
            Msg::Join { group: "g".into(), pid: 1 },
            Msg::Leave { group: "x".repeat(128), pid: u32::MAX },
            Msg::ProcDown { group: "é".into(), pid: 0 },
            Msg::Mcast { group: "g".into(), pid: 9, to: vec![], data: vec![] },
            Msg::Mcast { group: "g".into(), pid: 9, to: vec![], data: vec![7; 300] },
            Msg::Mcast { group: "g".into(), pid: 9, to: vec![2, 7], data: vec![7; 30] },
            Msg::JoinList { ring, entries: vec![] },
            Msg::JoinList { ring, entries: vec![("a".into(), 1), ("b".into(), 2)] },
        ];
        let mut cpg = Cpg::new(1);
        cpg.on_config(&regular(ring, &[1, 2], &[1, 2]));
        for m in &msgs {
            let bytes = m.encode();
            assert_eq!(Msg::decode(&bytes).as_ref(), Some(m));
            for cut in 0..bytes.len() {
                assert_eq!(Msg::decode(&bytes[..cut]), None, "{m:?} cut at {cut}");
                cpg.on_deliver(2, &bytes[..cut]);
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(Msg::decode(&long), None);
            cpg.on_deliver(2, &long);
        }
        let expected_malformed: usize = msgs.iter().map(|m| m.encode().len() + 1).sum();
        let bad: Vec<Vec<u8>> = vec![
            vec![0, 1, b'g', 0, 0, 0, 0],
            vec![6, 1, b'g', 0, 0, 0, 0],
            vec![T_JOIN, 0, 0, 0, 0, 0],                            // empty group name
            [vec![T_JOIN, 129], vec![b'x'; 129], vec![0; 4]].concat(), // name too long
            vec![T_JOIN, 2, 0xff, 0xfe, 0, 0, 0, 0],                // not UTF-8
            [vec![T_MCAST, 1, b'g', 0, 0, 0, 0], (MAX_MESSAGE as u32 + 1).to_le_bytes().to_vec()].concat(),
            [vec![T_JOINLIST], vec![0; 12], u32::MAX.to_le_bytes().to_vec()].concat(),
        ];
        for b in &bad {
            assert_eq!(Msg::decode(b), None, "{b:?}");
            cpg.on_deliver(2, b);
        }
        // Random bytes never panic.
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if !b.is_empty() {
                b[0] = rng.gen_range(0..7);
            }
            let _ = Msg::decode(&b);
        }
        assert_eq!(cpg.stats().malformed, (expected_malformed + bad.len()) as u64);
        assert!(cpg.groups().is_empty() && cpg.poll_event().is_none());
    }

    #[test]
    fn cpg_validation_errors() {
        let mut cpg = Cpg::new(1);
        assert_eq!(cpg.join("", 1), Err(CpgError::GroupName(0)));
        assert_eq!(cpg.join(&"x".repeat(129), 1), Err(CpgError::GroupName(129)));
        assert_eq!(cpg.leave("g", 1), Err(CpgError::NotJoined { group: "g".into(), pid: 1 }));
        assert_eq!(cpg.mcast("g", 1, vec![]), Err(CpgError::NotJoined { group: "g".into(), pid: 1 }));
        cpg.join(&"x".repeat(128), 1).unwrap();
        cpg.join("g", 1).unwrap();
        assert_eq!(cpg.join("g", 1), Err(CpgError::AlreadyJoined { group: "g".into(), pid: 1 }));
        assert_eq!(cpg.mcast("g", 1, vec![0; MAX_MESSAGE + 1]), Err(CpgError::TooLarge(MAX_MESSAGE + 1)));
        cpg.mcast("g", 1, vec![0; MAX_MESSAGE]).unwrap();
        assert_eq!(cpg.mcast("g", 2, vec![]), Err(CpgError::NotJoined { group: "g".into(), pid: 2 }));
        cpg.leave("g", 1).unwrap();
        assert_eq!(cpg.mcast("g", 1, vec![]), Err(CpgError::NotJoined { group: "g".into(), pid: 1 }));
        assert_eq!(cpg.leave("g", 1), Err(CpgError::NotJoined { group: "g".into(), pid: 1 }));
        cpg.join("g", 1).unwrap(); // re-join after a leave: ordered after it
        assert_eq!(cpg.joined_groups(1), vec!["g".to_string(), "x".repeat(128)]);
        let mut submitted = 0;
        while cpg.poll_submit().is_some() {
            submitted += 1;
        }
        assert_eq!(submitted, 5);
        for e in [CpgError::GroupName(200), CpgError::TooLarge(5), CpgError::AlreadyJoined { group: "a\nb".into(), pid: 1 }, CpgError::NotJoined { group: "a\nb".into(), pid: 1 }] {
            let s = e.to_string();
            assert!(!s.contains('\n') && !s.is_empty(), "{s}");
        }
    }

    #[test]
    fn cpg_join_leave_mcast_ordering_is_identical_everywhere() {
        let mut sim = started(&[1, 2, 3]);
        sim.op(1, |c| c.join("g", 10)).unwrap();
        sim.op(2, |c| c.join("g", 20)).unwrap();
        sim.op(1, |c| c.mcast("g", 10, b"a".to_vec())).unwrap();
        // Not applied before totem delivers it.
        assert!(sim.nodes[&1].cpg.members("g").is_empty() && sim.nodes[&1].events.is_empty());
        sim.deliver_from(2); // 2's join first
        sim.deliver_from(1);
        sim.deliver_from(1);
        sim.op(2, |c| c.mcast("g", 20, b"b".to_vec())).unwrap();
        sim.op(2, |c| c.leave("g", 20)).unwrap();
        sim.op(3, |c| c.join("h", 30)).unwrap();
        sim.drain();
        let expect = |id: NodeId| {
            // Node n runs pid 10n here.
            let l = |pids: &[u32]| pids.iter().copied().filter(|&p| p / 10 == id).collect::<Vec<_>>();
            vec![
                confchg("g", &[(2, 20)], &[((2, 20), Reason::Join)], &[], &l(&[20])),
                confchg("g", &[(1, 10), (2, 20)], &[((1, 10), Reason::Join)], &[], &l(&[10, 20])),
                deliver("g", (1, 10), b"a", &l(&[10, 20])),
                // Round robin: 2's multicast, 3's join, then 2's leave.
                deliver("g", (2, 20), b"b", &l(&[10, 20])),
                confchg("h", &[(3, 30)], &[((3, 30), Reason::Join)], &[], &l(&[30])),
                // The leaver is told it left.
                confchg("g", &[(1, 10)], &[], &[((2, 20), Reason::Leave)], &l(&[10, 20])),
            ]
        };
        for id in [1, 2, 3] {
            assert_eq!(sim.take_events(id), expect(id), "node {id}");
            assert_eq!(sim.nodes[&id].cpg.members("g"), vec![(1, 10)]);
            assert_eq!(sim.nodes[&id].cpg.groups(), vec!["g".to_string(), "h".to_string()]);
        }
    }

    #[test]
    fn cpg_non_member_cannot_send() {
        let mut sim = started(&[1, 2]);
        sim.op(1, |c| c.join("g", 10)).unwrap();
        assert!(matches!(sim.op(2, |c| c.mcast("g", 20, vec![1])), Err(CpgError::NotJoined { .. })));
        sim.drain();
        // A forged or stale multicast from a process that is not a member is dropped everywhere.
        let forged = Msg::Mcast { group: "g".into(), pid: 20, to: vec![], data: vec![1] }.encode();
        let unknown_group = Msg::Mcast { group: "nope".into(), pid: 10, to: vec![], data: vec![1] }.encode();
        sim.feed(&[1, 2], Item::Msg(2, forged));
        sim.feed(&[1, 2], Item::Msg(1, unknown_group));
        // A node outside the configuration is ignored altogether.
        sim.feed(&[1, 2], Item::Msg(9, Msg::Join { group: "g".into(), pid: 1 }.encode()));
        for id in [1, 2] {
            let evs = sim.take_events(id);
            assert_eq!(evs.len(), 1, "only the join: {evs:?}");
            let s = sim.nodes[&id].cpg.stats();
            assert_eq!((s.not_member, s.foreign, s.delivered), (2, 1, 0));
            assert_eq!(sim.nodes[&id].cpg.members("g"), vec![(1, 10)]);
        }
    }

    #[test]
    fn cpg_addressed_messages_reach_only_their_nodes_in_order() {
        let mut sim = started(&[1, 2, 3]);
        for id in [1, 2, 3] {
            sim.op(id, |c| c.join("g", 10)).unwrap();
        }
        sim.drain();
        for id in [1, 2, 3] {
            sim.take_events(id);
        }
        sim.op(1, |c| c.mcast_to("g", 10, vec![1], &[2])).unwrap();
        sim.op(1, |c| c.mcast("g", 10, vec![2])).unwrap();
        sim.op(1, |c| c.mcast_to("g", 10, vec![3], &[2, 3])).unwrap();
        assert_eq!(sim.op(1, |c| c.mcast_to("g", 10, vec![4], &[1; 65])), Err(CpgError::TooManyAddressees(65)));
        sim.drain();
        let got = |sim: &mut Sim, id| -> Vec<u8> {
            sim.take_events(id).into_iter().filter_map(|e| if let CpgEvent::Deliver { data, .. } = e { Some(data[0]) } else { None }).collect()
        };
        assert_eq!(got(&mut sim, 1), vec![2]);
        assert_eq!(got(&mut sim, 2), vec![1, 2, 3]);
        assert_eq!(got(&mut sim, 3), vec![2, 3]);
    }

    #[test]
    fn cpg_malformed_payloads_in_the_stream_are_ignored() {
        let mut sim = started(&[1, 2]);
        sim.op(1, |c| c.join("g", 10)).unwrap();
        sim.drain();
        sim.take_events(1);
        sim.take_events(2);
        let mut good = Msg::Mcast { group: "g".into(), pid: 10, to: vec![], data: vec![5; 20] }.encode();
        good.pop();
        for junk in [vec![], vec![0xff], good, vec![T_LEAVE, 1, b'g']] {
            sim.feed(&[1, 2], Item::Msg(1, junk));
        }
        for id in [1, 2] {
            assert!(sim.take_events(id).is_empty());
            assert_eq!(sim.nodes[&id].cpg.stats().malformed, 4);
            assert_eq!(sim.nodes[&id].cpg.members("g"), vec![(1, 10)]);
        }
    }

    #[test]
    fn cpg_procdown_when_a_client_goes_away() {
        let mut sim = started(&[1, 2]);
        sim.op(1, |c| c.join("a", 10)).unwrap();
        sim.op(1, |c| c.join("b", 10)).unwrap();
        sim.op(1, |c| c.join("b", 11)).unwrap();
        sim.drain();
        sim.take_events(1);
        sim.take_events(2);
        sim.op(1, |c| {
            c.client_gone(10);
            c.client_gone(99); // unknown: nothing
            Ok(())
        })
        .unwrap();
        assert!(sim.nodes[&1].cpg.joined_groups(10).is_empty());
        // The pid may be reused at once; its join is ordered after the ProcDown.
        sim.op(1, |c| c.join("a", 10)).unwrap();
        sim.drain();
        for id in [1, 2] {
            let l = |p: &[u32]| if id == 1 { p.to_vec() } else { vec![] };
            assert_eq!(
                sim.take_events(id),
                vec![
                    confchg("a", &[], &[], &[((1, 10), Reason::ProcDown)], &[]),
                    confchg("b", &[(1, 11)], &[], &[((1, 10), Reason::ProcDown)], &l(&[11])),
                    confchg("a", &[(1, 10)], &[((1, 10), Reason::Join)], &[], &l(&[10])),
                ],
                "node {id}"
            );
        }
    }

    #[test]
    fn cpg_node_failure_gives_nodedown_before_any_new_message() {
        let mut sim = started(&[1, 2, 3]);
        for (id, pid) in [(1, 10), (2, 20), (3, 30), (3, 31)] {
            sim.op(id, |c| c.join("g", pid)).unwrap();
        }
        sim.op(3, |c| c.join("h", 30)).unwrap();
        sim.op(1, |c| c.join("k", 10)).unwrap();
        sim.drain();
        for id in [1, 2, 3] {
            sim.take_events(id);
        }
        // Node 3 sends, then fails: the message reaches the survivors only after the
        // transitional configuration (EVS allows it), and must not be delivered.
        sim.mcast(3, "g", 30, 0).unwrap();
        sim.mcast(1, "g", 10, 0).unwrap(); // queued: goes out in the new ring
        sim.nodes.get_mut(&3).unwrap().alive = false;
        let late = sim.nodes.get_mut(&3).unwrap().outbox.pop_front().unwrap();
        let old = sim.comps[0].ring;
        sim.comps.clear();
        sim.feed(&[1, 2], Item::Conf(transitional(old, &[1, 2], &[3])));
        sim.feed(&[1, 2], Item::Msg(3, late));
        let new = RingId { rep: 1, seq: 50 };
        sim.feed(&[1, 2], Item::Conf(regular(new, &[1, 2], &[])));
        sim.comps.push(Comp { ring: new, members: vec![1, 2], delivered_any: false });
        // Node 1's queued multicast is delivered in the new ring before the JoinLists: held.
        sim.deliver_from(1);
        assert!(sim.nodes[&1].events.iter().all(|(_, e)| matches!(e, CpgEvent::ConfChg { .. })));
        sim.drain();
        for id in [1, 2] {
            let l = |pids: &[u32]| pids.iter().copied().filter(|&p| p / 10 == id).collect::<Vec<_>>();
            let evs = sim.take_events(id);
            assert_eq!(
                evs[..2],
                [
                    confchg("g", &[(1, 10), (2, 20)], &[], &[((3, 30), Reason::NodeDown), ((3, 31), Reason::NodeDown)], &l(&[10, 20])),
                    confchg("h", &[], &[], &[((3, 30), Reason::NodeDown)], &[]),
                ],
                "node {id}"
            );
            assert_eq!(evs.len(), 3, "node {id}: {evs:?}");
            assert!(matches!(&evs[2], CpgEvent::Deliver { from: (1, 10), .. }));
            let s = sim.nodes[&id].cpg.stats();
            assert_eq!((s.foreign, s.not_member), (1, 0));
            assert_eq!(sim.nodes[&id].cpg.groups(), vec!["g".to_string(), "k".to_string()]);
        }
    }

    #[test]
    fn cpg_merge_brings_nodeup_through_joinlists() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut sim = started(&[1, 2, 3]);
        sim.op(3, |c| c.join("g", 30)).unwrap();
        sim.op(1, |c| c.join("g", 10)).unwrap();
        sim.drain();
        // Partition {1,2} | {3}; each side changes the group on its own.
        sim.reconfigure(vec![vec![1, 2], vec![3]], &mut rng);
        sim.drain();
        sim.op(2, |c| c.join("g", 20)).unwrap();
        sim.op(3, |c| c.join("g", 31)).unwrap();
        sim.op(3, |c| c.join("solo", 32)).unwrap();
        sim.drain();
        for id in [1, 2, 3] {
            sim.take_events(id);
        }
        assert_eq!(sim.nodes[&1].cpg.members("g"), vec![(1, 10), (2, 20)]);
        assert_eq!(sim.nodes[&3].cpg.members("g"), vec![(3, 30), (3, 31)]);
        // Merge. Node 3 multicasts before the JoinLists are all in: the message is held until
        // the sync completes and then delivered under the merged view on every node.
        sim.op(3, |c| c.mcast("g", 31, b"x".to_vec())).unwrap();
        sim.reconfigure(vec![vec![1, 2, 3]], &mut rng);
        let ring = sim.comps[0].ring;
        sim.deliver_from(3);
        sim.deliver_from(3);
        assert!(sim.nodes[&1].events.iter().all(|(_, e)| matches!(e, CpgEvent::ConfChg { .. })));
        sim.drain();
        let all = [(1, 10), (2, 20), (3, 30), (3, 31)];
        for id in [1, 2, 3] {
            let evs: Vec<CpgEvent> = sim.take_events(id).iter().map(strip).collect();
            let side_a = [((3, 30), Reason::NodeUp), ((3, 31), Reason::NodeUp)];
            let side_b = [((1, 10), Reason::NodeUp), ((2, 20), Reason::NodeUp)];
            let mut expect = vec![confchg("g", &all, if id == 3 { &side_b } else { &side_a }, &[], &[])];
            if id != 3 {
                expect.push(confchg("solo", &[(3, 32)], &[((3, 32), Reason::NodeUp)], &[], &[]));
            }
            expect.push(deliver("g", (3, 31), b"x", &[]));
            assert_eq!(evs, expect, "node {id}");
            assert_eq!(sim.nodes[&id].cpg.members("g"), all);
            assert!(sim.nodes[&id].cpg.synced() && sim.nodes[&id].cpg.ring() == Some(ring));
        }
    }

    #[test]
    fn cpg_restarted_node_reuses_pids() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut sim = started(&[1, 2]);
        sim.op(2, |c| c.join("g", 7)).unwrap();
        sim.drain();
        sim.crash(2, &mut rng);
        sim.restart(2);
        sim.op(2, |c| c.join("g", 7)).unwrap();
        sim.reconfigure(vec![vec![1, 2]], &mut rng);
        sim.drain();
        let evs: Vec<CpgEvent> = sim.take_events(1).iter().map(strip).collect();
        assert_eq!(
            evs,
            vec![
                confchg("g", &[(2, 7)], &[((2, 7), Reason::Join)], &[], &[]),
                confchg("g", &[], &[], &[((2, 7), Reason::NodeDown)], &[]),
                confchg("g", &[(2, 7)], &[((2, 7), Reason::Join)], &[], &[]),
            ]
        );
        assert_eq!(sim.take_events(2), vec![confchg("g", &[(2, 7)], &[((2, 7), Reason::Join)], &[], &[7])]);
    }

    #[test]
    fn cpg_sync_cut_short_by_a_configuration_change() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut sim = started(&[1, 2, 3]);
        sim.reconfigure(vec![vec![1, 2], vec![3]], &mut rng);
        sim.drain();
        sim.op(3, |c| c.join("g", 30)).unwrap();
        sim.op(3, |c| c.join("g", 31)).unwrap();
        sim.drain();
        // Merge; node 3's leave is ordered before its JoinList, then node 2 fails before node
        // 1's JoinList arrives. The held leave is applied at the cut.
        sim.op(3, |c| c.leave("g", 31)).unwrap();
        sim.reconfigure(vec![vec![1, 2, 3]], &mut rng);
        while sim.nodes[&3].outbox.len() > 1 {
            sim.deliver_from(3);
        }
        let stale = sim.nodes.get_mut(&3).unwrap().outbox.pop_front().unwrap(); // 3's JoinList, delayed
        assert!(matches!(Msg::decode(&stale), Some(Msg::JoinList { .. })));
        sim.deliver_from(2);
        sim.crash(2, &mut rng);
        // Node 3's JoinList of the interrupted round arrives late: ignored.
        sim.feed(&[1, 3], Item::Msg(3, stale));
        assert_eq!(sim.nodes[&1].cpg.stats().stale_joinlists, 1);
        assert_eq!(sim.nodes[&1].cpg.members("g"), vec![]);
        assert_eq!(sim.nodes[&3].cpg.members("g"), vec![(3, 30)]);
        sim.drain();
        for id in [1, 3] {
            assert_eq!(sim.nodes[&id].cpg.members("g"), vec![(3, 30)], "node {id}");
            assert!(sim.nodes[&id].cpg.synced());
        }
    }

    // ---- property tests ----------------------------------------------------------------------

    const GROUPS: [&str; 3] = ["alpha", "beta", "gamma"];

    /// One random client request on a live node; checks its result against the local intent.
    fn random_op(sim: &mut Sim, rng: &mut SmallRng) {
        let live = sim.live();
        let id = live[rng.gen_range(0..live.len())];
        let (group, pid) = (GROUPS[rng.gen_range(0..GROUPS.len())], rng.gen_range(1..4u32));
        let joined = sim.nodes[&id].cpg.joined_groups(pid).contains(&group.to_string());
        match rng.gen_range(0..10) {
            0..=2 => assert_eq!(sim.op(id, |c| c.join(group, pid)).is_ok(), !joined),
            3 => assert_eq!(sim.op(id, |c| c.leave(group, pid)).is_ok(), joined),
            4 => {
                sim.op(id, |c| {
                    c.client_gone(pid);
                    Ok(())
                })
                .unwrap();
            }
            5 => {
                // Junk in the stream, from a member node.
                let mut b = Msg::Join { group: group.into(), pid }.encode();
                b.truncate(rng.gen_range(0..b.len()));
                let ci = sim.comp_of(id).unwrap();
                let to = sim.comps[ci].members.clone();
                sim.feed(&to, Item::Msg(id, b));
            }
            _ => {
                let pad = if rng.gen_bool(0.05) { rng.gen_range(0..5000) } else { 0 };
                assert_eq!(sim.mcast(id, group, pid, pad).is_ok(), joined);
            }
        }
    }

    fn random_delivery(sim: &mut Sim, rng: &mut SmallRng) {
        let senders: Vec<NodeId> = sim.live().into_iter().filter(|id| !sim.nodes[id].outbox.is_empty()).collect();
        if !senders.is_empty() {
            sim.deliver_from(senders[rng.gen_range(0..senders.len())]);
        }
    }

    /// After everything is ordered in one ring: every live node holds the same view, which is
    /// exactly what the live nodes' processes asked for, and each got its own messages back.
    fn check_converged(sim: &Sim, seed: u64) {
        let live = sim.live();
        let mut truth: BTreeMap<String, BTreeSet<Member>> = BTreeMap::new();
        for &id in &live {
            for (pid, g) in &sim.nodes[&id].cpg.intent {
                truth.entry(g.clone()).or_default().insert((id, *pid));
            }
        }
        for &id in &live {
            let n = &sim.nodes[&id];
            assert!(n.cpg.synced() && n.cpg.sync.is_none(), "seed {seed}: node {id} not synced");
            assert_eq!(n.cpg.groups, truth, "seed {seed}: node {id} view");
            let replayed: BTreeMap<String, BTreeSet<Member>> = n.view.iter().map(|(g, m)| (g.clone(), m.iter().copied().collect())).collect();
            assert_eq!(replayed, truth, "seed {seed}: node {id} events");
            assert!(n.sent.is_subset(&n.delivered), "seed {seed}: node {id} lost its own messages");
            assert!(n.outbox.is_empty());
        }
    }

    /// Random requests on 3-5 nodes in one ring, with crashes (messages of the failed node in
    /// flight at the transitional configuration): the per-group event streams of all surviving
    /// nodes are identical apart from local_members, and a crashed node's stream is a prefix
    /// of theirs.
    #[test]
    fn cpg_property_streams_identical_in_one_ring() {
        let mut total_events = 0;
        for seed in 0..1000u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let n = rng.gen_range(3..=5u32);
            let ids: Vec<NodeId> = (1..=n).collect();
            let mut sim = Sim::new(&ids);
            sim.max_inflight = 3;
            let mut crashed = Vec::new();
            for _ in 0..600 {
                match rng.gen_range(0..100) {
                    0..=49 => random_op(&mut sim, &mut rng),
                    50..=97 => random_delivery(&mut sim, &mut rng),
                    _ if sim.live().len() > 2 => {
                        let live = sim.live();
                        let id = live[rng.gen_range(0..live.len())];
                        sim.crash(id, &mut rng);
                        crashed.push(id);
                    }
                    _ => {}
                }
            }
            sim.drain();
            check_converged(&sim, seed);
            let live = sim.live();
            for g in GROUPS {
                let reference = sim.stream(live[0], g);
                total_events += reference.len();
                for &id in &live[1..] {
                    assert_eq!(sim.stream(id, g), reference, "seed {seed}: node {id} group {g}");
                }
                for &id in &crashed {
                    let s = sim.stream(id, g);
                    assert_eq!(s[..], reference[..s.len()], "seed {seed}: crashed node {id} group {g}");
                }
            }
        }
        assert!(total_events > 100_000, "weak test: {total_events} events");
    }

    /// Random requests with splits, merges, reformations, crashes and restarts (fresh state,
    /// pids reused) of 3-5 nodes, messages in flight at every change. Checks after every event
    /// (see `check_event`), at every completed sync (all nodes of the ring hold the same view),
    /// that nodes fed the same history produce the same per-group streams, and after healing
    /// into one ring that the views converge to what the processes asked for.
    #[test]
    fn cpg_property_partitions_merges_restarts() {
        let (mut merges, mut syncs, mut agreed, mut same_history) = (0, 0, 0, 0);
        for seed in 0..1000u64 {
            let mut rng = SmallRng::seed_from_u64(1000 + seed);
            let n = rng.gen_range(3..=5u32);
            let ids: Vec<NodeId> = (1..=n).collect();
            let mut sim = Sim::new(&ids);
            sim.max_inflight = 3;
            // Churn varies per seed: from rare membership changes to one every ~12 steps.
            let churn = rng.gen_range(1..=8);
            for _ in 0..800 {
                match rng.gen_range(0..100) {
                    x if x < 45 => random_op(&mut sim, &mut rng),
                    x if x < 100 - churn => random_delivery(&mut sim, &mut rng),
                    _ => {
                        let dead: Vec<NodeId> = sim.nodes.iter().filter(|(_, n)| !n.alive).map(|(&id, _)| id).collect();
                        match rng.gen_range(0..6) {
                            0 => {
                                // Split a component in two.
                                let c = &sim.comps[rng.gen_range(0..sim.comps.len())];
                                if c.members.len() >= 2 {
                                    let mut m = c.members.clone();
                                    let k = rng.gen_range(1..m.len());
                                    let b = m.split_off(k);
                                    sim.reconfigure(vec![m, b], &mut rng);
                                }
                            }
                            1 if sim.comps.len() >= 2 => {
                                let a = rng.gen_range(0..sim.comps.len());
                                let b = (a + rng.gen_range(1..sim.comps.len())) % sim.comps.len();
                                let merged = [sim.comps[a].members.clone(), sim.comps[b].members.clone()].concat();
                                sim.reconfigure(vec![merged], &mut rng);
                                merges += 1;
                            }
                            2 if sim.live().len() > 1 => {
                                let live = sim.live();
                                sim.crash(live[rng.gen_range(0..live.len())], &mut rng);
                            }
                            3 if !dead.is_empty() => sim.restart(dead[rng.gen_range(0..dead.len())]),
                            4 => {
                                let m = sim.comps[rng.gen_range(0..sim.comps.len())].members.clone();
                                sim.reconfigure(vec![m], &mut rng);
                            }
                            _ if sim.comps.len() >= 2 => {
                                // One node moves from its component to another.
                                let a = rng.gen_range(0..sim.comps.len());
                                let b = (a + rng.gen_range(1..sim.comps.len())) % sim.comps.len();
                                let mut from = sim.comps[a].members.clone();
                                let mover = from.remove(rng.gen_range(0..from.len()));
                                let mut to = sim.comps[b].members.clone();
                                to.push(mover);
                                let parts = if from.is_empty() { vec![to] } else { vec![from, to] };
                                sim.reconfigure(parts, &mut rng);
                            }
                            _ => {}
                        }
                    }
                }
            }
            // Heal: everyone alive in one ring, everything ordered.
            let live = sim.live();
            sim.reconfigure(vec![live], &mut rng);
            sim.drain();
            check_converged(&sim, seed);
            // Nodes whose incarnations were fed exactly the same items produced the same streams.
            let mut histories: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
            for (i, (to, _)) in sim.log.iter().enumerate() {
                for id in to {
                    histories.entry(*id).or_default().push(i);
                }
            }
            let live = sim.live();
            for (i, &a) in live.iter().enumerate() {
                for &b in &live[i + 1..] {
                    if histories[&a] == histories[&b] {
                        same_history += 1;
                        for g in GROUPS {
                            assert_eq!(sim.stream(a, g), sim.stream(b, g), "seed {seed}: nodes {a} {b} group {g}");
                        }
                    }
                }
            }
            syncs += sim.synced_views.len();
            agreed += sim.agreed.len();
        }
        let counts = format!("{merges} merges, {syncs} syncs, {agreed} agreed deliveries, {same_history} same-history pairs");
        assert!(merges > 2000 && syncs > 20_000 && agreed > 40_000 && same_history > 150, "weak test: {counts}");
    }
}
