//! The core task: the only owner of the raft replica and the CIB state machine.
//!
//! Inputs, one at a time: a raft tick (every [`TICK`]), a process-group event (raft
//! messages, forwarded writes and their refusals from peer cibds), a command from the local
//! API. After each input the replica is polled and its actions carried out in order
//! (`replica.rs` fixes that order): sends go to the peer sender task, committed writes are
//! applied to the CIB, and clients waiting for them are answered.
//!
//! A write's journey: the node a client asked (its *origin*) wraps it in a
//! [`pb::LogEntry`] naming itself, its incarnation and a request number. If the origin is
//! the raft leader it proposes it; otherwise it forwards the entry to the leader as a
//! process-group message, and the leader proposes it (or sends back a refusal). Once
//! committed, every node applies the entry; the origin answers its client when *it*
//! applies the entry, so an acknowledgement always means a majority committed it and the
//! origin's own CIB shows it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use cib::cibadmin;
use prost::Message as _;
use proto::cib as pb;
use proto::cib::cib_error::Kind;
use proto::cib::peer_message::Body;
use proto::cib::{PeerBatch, PeerMessage};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::machine::{cib_refusal, decode_entry, decode_write, encode_entry, refusal, requester_of, stamp_now, CibMachine};
use cib::acl::Requester;
use crate::replica::{Action, ProposalId, Replica, ReplicaError};
use crate::store::SledStorage;


/// Raft's clock: election after 10-20 ticks without a leader, heartbeats every 2.
pub const TICK: Duration = Duration::from_millis(100);
/// How long a client waits for its write to commit before it is told the outcome is unknown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Snapshot the CIB every this many applied entries, keeping this many entries behind it
/// in the log for followers that lag a little.
const SNAPSHOT_EVERY: u64 = 1000;
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 500;

pub type WriteResult = Result<pb::WriteReply, pb::CibError>;

/// What the local API asks the core.
pub enum Command {
    /// `who`: None for a privileged caller, else the requester CIB ACLs apply to.
    Query { section: String, xpath: String, who: Option<Requester>, reply: oneshot::Sender<pb::QueryReply> },
    /// `writer`: the calling user's name and program, recorded when the write changes the
    /// configuration.
    Write { write: pb::WriteRequest, who: Option<Requester>, writer: Writer, reply: oneshot::Sender<WriteResult> },
    Status { reply: oneshot::Sender<pb::CibStatus> },
    ChangeVoters { voters: Vec<u64>, reply: oneshot::Sender<Result<Vec<u64>, String>> },
}

/// Who calls: the user's name and the program's (update-user and update-client).
#[derive(Debug, Clone, Default)]
pub struct Writer {
    pub user: String,
    pub client: String,
}

/// An event of the process group, as the core needs it.
pub enum PeerEvent {
    Deliver { from: u64, data: Vec<u8> },
    /// The group's members after a change.
    Members(Vec<u64>),
}

struct Waiter {
    reply: oneshot::Sender<WriteResult>,
    deadline: Instant,
}

/// Who waits for a proposal of this node (as leader).
enum Proposer {
    Write { origin: u64, incarnation: u64, request: u64 },
    Voters(oneshot::Sender<Result<Vec<u64>, String>>),
}

pub struct Core {
    id: u64,
    /// This node's name (update-origin of the writes made here).
    name: String,
    incarnation: u64,
    replica: Replica<SledStorage>,
    machine: CibMachine,
    /// Peer messages for the sender task (which batches them).
    peers: mpsc::Sender<PeerMessage>,
    outgoing: Vec<PeerMessage>,
    watch: broadcast::Sender<pb::WatchEvent>,
    next_request: u64,
    waiting: HashMap<u64, Waiter>,
    /// Own writes waiting for a leader to be known.
    unsent: VecDeque<pb::LogEntry>,
    proposals: BTreeMap<ProposalId, Proposer>,
    last_snapshot: u64,
    /// Largest encoded write the replica accepts.
    max_write: usize,
    /// The leader last logged, with its term.
    logged_leader: (Option<u64>, u64),
}

impl Core {
    pub fn new(
        id: u64,
        name: String,
        replica: Replica<SledStorage>,
        machine: CibMachine,
        peers: mpsc::Sender<PeerMessage>,
        watch: broadcast::Sender<pb::WatchEvent>,
        max_write: usize,
    ) -> Core {
        let incarnation = rand::random::<u64>() | 1;
        let last_snapshot = machine.index();
        Core {
            id,
            name,
            incarnation,
            replica,
            machine,
            peers,
            outgoing: Vec::new(),
            watch,
            next_request: 1,
            waiting: HashMap::new(),
            unsent: VecDeque::new(),
            proposals: BTreeMap::new(),
            last_snapshot,
            max_write,
            logged_leader: (None, 0),
        }
    }

    /// Run until shutdown, the process group's stream ends, or storage fails.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<PeerEvent>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tick.tick() => {
                    self.replica.tick();
                    self.on_tick();
                }
                ev = events.recv() => match ev {
                    Some(PeerEvent::Deliver { from, data }) => self.on_peer(from, &data),
                    Some(PeerEvent::Members(m)) => self.replica.leader_left(&m),
                    None => anyhow::bail!("the process group stream from halo-membershipd ended"),
                },
                cmd = commands.recv() => match cmd {
                    Some(c) => self.on_command(c),
                    None => return Ok(()),
                },
            }
            self.pump()?;
        }
    }

    // ---- inputs ----------------------------------------------------------------------

    fn on_tick(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self.waiting.iter().filter(|(_, w)| w.deadline <= now).map(|(r, _)| *r).collect();
        for r in expired {
            let queued = self.unsent.iter().any(|e| e.request == r);
            let e = if queued {
                refusal(
                    Kind::Unavailable,
                    cibadmin::EX_UNAVAILABLE,
                    format!(
                        "no CIB leader within {} s: this partition does not hold a majority of the CIB's voters; nothing was changed",
                        WRITE_TIMEOUT.as_secs()
                    ),
                )
            } else {
                refusal(
                    Kind::Unknown,
                    cibadmin::EX_TIMEOUT,
                    format!("the write was not confirmed within {} s; it may or may not have been applied: query the CIB before retrying", WRITE_TIMEOUT.as_secs()),
                )
            };
            self.unsent.retain(|e| e.request != r);
            self.answer(r, Err(e));
        }
        self.send_unsent();
    }

    fn on_peer(&mut self, from: u64, data: &[u8]) {
        let batch = match PeerBatch::decode(data) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("undecodable message from node {from} in the CIB group dropped: {e}");
                return;
            }
        };
        for m in batch.messages {
            if m.to != self.id {
                continue;
            }
            match m.body {
                Some(Body::Raft(bytes)) => {
                    if let Err(e) = self.replica.step(from, &bytes) {
                        tracing::debug!("raft message from node {from} refused: {e}");
                    }
                }
                Some(Body::Forward(bytes)) => {
                    let entry = match decode_entry(&bytes) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!("undecodable write forwarded by node {from} dropped: {e}");
                            continue;
                        }
                    };
                    if entry.origin != from {
                        tracing::warn!("node {from} forwarded a write claiming origin {}; dropped", entry.origin);
                        continue;
                    }
                    self.lead_or_forward(entry);
                }
                Some(Body::ForwardReply(r)) => {
                    if r.incarnation == self.incarnation {
                        let e = r.error.unwrap_or_else(|| refusal(Kind::Unavailable, cibadmin::EX_ERROR, "refused by the leader"));
                        self.unsent.retain(|x| x.request != r.request);
                        self.answer(r.request, Err(e));
                    }
                }
                None => {}
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Query { section, xpath, who, reply } => {
                fn opt(s: &str) -> Option<&str> {
                    (!s.is_empty()).then_some(s)
                }
                let r = self.machine.readable(who.as_ref()).and_then(|filtered| {
                    cibadmin::query_text(filtered.as_ref().unwrap_or(self.machine.doc()), opt(&section), opt(&xpath))
                });
                let r = match r {
                    Ok((xml, n)) => pb::QueryReply { xml, matches: n as u32, version: self.machine.version().to_string(), error: None },
                    Err(e) => pb::QueryReply { error: Some(cib_refusal(&e)), ..Default::default() },
                };
                let _ = reply.send(r);
            }
            Command::Write { write, who, writer, reply } => {
                // Refuse what can never be applied before it travels.
                if let Err(e) = decode_write(&write) {
                    let _ = reply.send(Err(cib_refusal(&e)));
                    return;
                }
                let request = self.next_request;
                self.next_request += 1;
                self.waiting.insert(request, Waiter { reply, deadline: Instant::now() + WRITE_TIMEOUT });
                let (user, groups) = who.map(|w| (w.user, w.groups)).unwrap_or_default();
                let stamp = Some(stamp_now(&writer.user, &writer.client, &self.name));
                let entry = pb::LogEntry { origin: self.id, incarnation: self.incarnation, request, write: Some(write), user, groups, stamp };
                let size = encode_entry(&entry).len();
                if size > self.max_write {
                    let e = refusal(
                        Kind::Invalid,
                        cibadmin::EX_USAGE,
                        format!("the write is {size} bytes compressed; halo-cibd takes writes up to {} bytes: split it (e.g. one section or a batch of objects at a time); nothing was changed", self.max_write),
                    );
                    self.answer(request, Err(e));
                    return;
                }
                self.lead_or_forward(entry);
            }
            Command::Status { reply } => {
                let _ = reply.send(pb::CibStatus {
                    node_id: self.id,
                    leader: self.replica.leader().unwrap_or(0),
                    term: self.replica.term(),
                    voters: self.replica.voters(),
                    learners: self.replica.learners(),
                    commit_index: self.replica.commit_index(),
                    applied_index: self.replica.applied_index(),
                    version: self.machine.version().to_string(),
                    quorate: false,
                });
            }
            Command::ChangeVoters { voters, reply } => match self.replica.change_voters(&voters) {
                Ok(p) => {
                    self.proposals.insert(p, Proposer::Voters(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
        }
    }

    // ---- writes ----------------------------------------------------------------------

    /// As leader, check and propose `entry`; otherwise pass it on to the leader, or keep
    /// it (an own write) until a leader is known.
    fn lead_or_forward(&mut self, entry: pb::LogEntry) {
        if !self.replica.is_leader() {
            match self.replica.leader() {
                Some(l) if l != self.id => self.push(l, Body::Forward(encode_entry(&entry))),
                _ if entry.origin == self.id => self.unsent.push_back(entry),
                _ => self.refuse(
                    &entry,
                    refusal(Kind::Unavailable, cibadmin::EX_UNAVAILABLE, "the CIB leader changed and no new one is known yet; nothing was changed, retry"),
                ),
            }
            return;
        }
        let Some(write) = entry.write.as_ref() else { return };
        let op = match decode_write(write) {
            Ok(op) => op,
            Err(e) => return self.refuse(&entry, cib_refusal(&e)),
        };
        // With nothing else in flight the CIB the write will meet is the one applied now,
        // so a refusal here is the refusal it would get when applied.
        if self.proposals.is_empty() {
            if let Err(e) = self.machine.check(&op, requester_of(&entry).as_ref()) {
                return self.refuse(&entry, cib_refusal(&e));
            }
        }
        match self.replica.propose(encode_entry(&entry)) {
            Ok(p) => {
                self.proposals.insert(p, Proposer::Write { origin: entry.origin, incarnation: entry.incarnation, request: entry.request });
            }
            Err(ReplicaError::NotLeader { .. }) => {
                if entry.origin == self.id {
                    self.unsent.push_back(entry);
                } else {
                    self.refuse(&entry, refusal(Kind::Unavailable, cibadmin::EX_UNAVAILABLE, "the CIB leader stepped down; nothing was changed, retry"));
                }
            }
            Err(e) => self.refuse(&entry, refusal(Kind::Unavailable, cibadmin::EX_ERROR, format!("{e}; nothing was changed"))),
        }
    }

    fn send_unsent(&mut self) {
        if self.unsent.is_empty() || self.replica.leader().is_none() {
            return;
        }
        for e in std::mem::take(&mut self.unsent) {
            self.lead_or_forward(e);
        }
    }

    /// Tell the origin of `entry` why it was not proposed.
    fn refuse(&mut self, entry: &pb::LogEntry, error: pb::CibError) {
        if entry.origin == self.id {
            if entry.incarnation == self.incarnation {
                self.answer(entry.request, Err(error));
            }
        } else {
            let r = pb::ForwardReply { incarnation: entry.incarnation, request: entry.request, error: Some(error) };
            self.push(entry.origin, Body::ForwardReply(r));
        }
    }

    fn answer(&mut self, request: u64, result: WriteResult) {
        if let Some(w) = self.waiting.remove(&request) {
            let _ = w.reply.send(result);
        }
    }

    fn push(&mut self, to: u64, body: Body) {
        self.outgoing.push(PeerMessage { to, body: Some(body) });
    }

    // ---- raft's actions --------------------------------------------------------------

    fn pump(&mut self) -> anyhow::Result<()> {
        if self.peers.is_closed() {
            anyhow::bail!("the CIB group sender stopped (halo-membershipd gone?)");
        }
        loop {
            let actions = self.replica.poll().map_err(|e| anyhow::anyhow!("the raft replica stopped: {e}"))?;
            if actions.is_empty() {
                break;
            }
            for a in actions {
                self.perform(a)?;
            }
        }
        self.maybe_snapshot();
        self.flush();
        let leader = (self.replica.leader(), self.replica.term());
        if leader != self.logged_leader {
            self.logged_leader = leader;
            match leader.0 {
                Some(l) => tracing::info!("CIB leader: node {l} (term {})", leader.1),
                None => tracing::info!("CIB leader: none known (term {})", leader.1),
            }
        }
        Ok(())
    }

    fn perform(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Send { to, bytes } => self.push(to, Body::Raft(bytes)),
            Action::RestoreSnapshot { index, data, .. } => {
                self.machine = CibMachine::from_snapshot(&data, index)
                    .map_err(|e| anyhow::anyhow!("the CIB snapshot at index {index} from the leader is unreadable: {e}"))?;
                self.last_snapshot = index;
                tracing::info!("CIB restored from the leader's snapshot at index {index} (version {})", self.machine.version());
            }
            Action::Apply { index, data } => self.apply(index, &data),
            Action::Acked { proposal, .. } => {
                if let Some(Proposer::Voters(reply)) = self.proposals.remove(&proposal) {
                    let _ = reply.send(Ok(self.replica.voters()));
                }
            }
            Action::Dropped { proposal } => self.lost(proposal, false),
            Action::Unknown { proposal } => self.lost(proposal, true),
            Action::VotersChanged { voters } => tracing::info!("CIB voters are now {voters:?}"),
        }
        Ok(())
    }

    fn apply(&mut self, index: u64, data: &[u8]) {
        let entry = match decode_entry(data) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("committed entry {index} is undecodable ({e}); skipped on every node");
                self.machine.skip(index);
                return;
            }
        };
        let op = entry.write.as_ref().map(decode_write);
        let result = match op {
            None => {
                self.machine.skip(index);
                Err(refusal(Kind::Invalid, cibadmin::EX_USAGE, "the write names no operation"))
            }
            Some(Err(e)) => {
                self.machine.skip(index);
                Err(cib_refusal(&e))
            }
            Some(Ok(op)) => {
                let who = requester_of(&entry);
                let (r, patch) = self.machine.apply(index, &op, who.as_ref(), entry.stamp.as_ref(), self.watch.receiver_count() > 0);
                match r {
                    Ok(a) => {
                        if let Some(p) = patch {
                            let _ = self.watch.send(pb::WatchEvent { index, version: a.version.to_string(), configuration: changes_configuration(&p), patch: p.to_xml() });
                        }
                        Ok(pb::WriteReply { version: a.version.to_string(), index, changed: a.changed, error: None })
                    }
                    Err(e) => Err(cib_refusal(&e)),
                }
            }
        };
        if entry.origin == self.id && entry.incarnation == self.incarnation {
            self.answer(entry.request, result);
        }
    }

    /// A proposal of this leader will not commit (`unknown`: or might have).
    fn lost(&mut self, proposal: ProposalId, unknown: bool) {
        match self.proposals.remove(&proposal) {
            Some(Proposer::Voters(reply)) => {
                let _ = reply.send(Err("the voter change was dropped by a leader change; retry".into()));
            }
            Some(Proposer::Write { origin, incarnation, request }) => {
                let e = if unknown {
                    refusal(Kind::Unknown, cibadmin::EX_TIMEOUT, "the leader lost track of the write; it may or may not have been applied: query the CIB before retrying")
                } else {
                    refusal(Kind::Unavailable, cibadmin::EX_UNAVAILABLE, "the write was dropped by a change of CIB leader; nothing was changed, retry")
                };
                let entry = pb::LogEntry { origin, incarnation, request, ..Default::default() };
                self.refuse(&entry, e);
            }
            None => {}
        }
    }

    /// Every [`SNAPSHOT_EVERY`] entries store the CIB as a snapshot and drop the log
    /// before it (keeping a tail for followers that lag a little).
    fn maybe_snapshot(&mut self) {
        let applied = self.replica.applied_index();
        if applied < self.last_snapshot + SNAPSHOT_EVERY {
            return;
        }
        let store = self.replica.storage();
        let r = store
            .create_snapshot(applied, store.conf_state(), self.machine.snapshot())
            .and_then(|_| match applied.saturating_sub(LOG_KEPT_BEHIND_SNAPSHOT) {
                0 => Ok(()),
                upto => store.compact(upto),
            });
        match r {
            Ok(()) => self.last_snapshot = applied,
            Err(e) => {
                tracing::warn!("CIB snapshot at {applied} failed: {e}");
                self.last_snapshot = applied; // try again after another SNAPSHOT_EVERY
            }
        }
    }

    /// Hand this round's peer messages to the sender task. A full queue drops them: raft
    /// retransmits, and a lost forward times out at its origin.
    fn flush(&mut self) {
        let mut dropped = 0;
        for m in std::mem::take(&mut self.outgoing) {
            if self.peers.try_send(m).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::warn!("the CIB's outgoing queue is full; {dropped} messages dropped");
        }
    }
}

/// Whether a patch changes the configuration: every such change moves the epoch (or the
/// admin epoch), a status write only `num_updates`.
fn changes_configuration(patch: &cib::xml::Element) -> bool {
    let Some(v) = patch.child("version") else { return true };
    let config = |e: Option<&cib::xml::Element>| e.map(cib::ops::Version::of).map(|v| (v.admin_epoch, v.epoch));
    config(v.child("source")) != config(v.child("target"))
}
