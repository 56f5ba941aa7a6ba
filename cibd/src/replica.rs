//! The CIB's raft replica: a sans-IO wrapper around raft-rs's `RawNode` (no clock, socket,
//! thread or RNG of its own; time comes in as ticks, messages as opaque bytes).
//!
//! Spec: Raft (Ongaro & Ousterhout 2014; Ongaro's thesis ch. 4 for joint consensus),
//! raft-rs 0.7 `RawNode`/`Ready`/`LightReady` and its `five_mem_node` example for the
//! Ready handling order.
//!
//! A CIB write is a normal log entry; it is acknowledged ([`Action::Acked`]) only once
//! committed by a majority of the voters and handed to the driver ([`Action::Apply`]).
//! Messages travel as process-group messages of the membership layer; their bytes are
//! raft's own protobuf encoding (the `protobuf` 2 crate raft-rs uses), opaque outside
//! this module.
//!
//! # Driving a replica (the order is written down here, once)
//!
//! After every input — [`Replica::tick`], [`Replica::step`], [`Replica::propose`],
//! [`Replica::change_voters`] — the driver calls [`Replica::poll`]. `poll` handles raft's
//! `Ready` rounds itself, and for each round, **before it returns**:
//!
//! 1. makes raft's state durable through [`Persist`]: snapshot, then log entries, then the
//!    hard state, then the configuration, then [`Persist::sync`] when raft requires it;
//! 2. queues the round's messages ([`Action::Send`]) — durable state first, then sends,
//!    as raft requires;
//! 3. applies committed configuration changes to raft and queues committed CIB writes
//!    ([`Action::Apply`]) in log order, each followed by the fate of the local proposal at
//!    that index ([`Action::Acked`] / [`Action::Dropped`]) and by [`Action::VotersChanged`]
//!    when a configuration change took effect;
//! 4. advances raft and repeats 2–3 for the post-advance `LightReady`.
//!
//! The driver performs the returned actions in the order given: it may send while it
//! applies (everything is already durable), but it must apply `RestoreSnapshot`/`Apply`
//! in order and answer a client only on `Acked`, which always follows the `Apply` of
//! the same index.
//!
//! # Shrinking the voter set after fencing
//!
//! [`Replica::change_voters`] demotes voters that are not in the new set to learners and
//! promotes learners that are. A demoted node keeps receiving the log as a learner, so a
//! returning node catches up before it can be promoted (promotion is refused until its
//! log matches the commit index). Two paths:
//!
//! * the leader proposes a `ConfChangeV2` (a simple change for one voter, joint consensus
//!   with automatic leave otherwise); it commits under the old configuration;
//! * **forced**: a two-voter configuration shrinking to this node alone cannot commit
//!   without the peer. Every quorum of `{self, peer}` contains this node, so this node
//!   holds every committed entry and the peer cannot win an election without it; the
//!   replica therefore starts a new term as leader on its own authority, appends the
//!   change, applies it at once and commits with itself as the only voter. The change is
//!   in the log, so the peer adopts it (and becomes a learner) when it catches up. This is
//!   sound only if the peer is really gone — the caller must have fenced it; otherwise
//!   both halves of a split two-node cluster could each force themselves.
//!
//! # Deliberate deviations
//!
//! * Raft-rs draws election timeouts from `thread_rng`; this replica overrides each draw
//!   (whenever term or role changes) from its own PRNG seeded by
//!   [`ReplicaConfig::seed`], so a seeded simulation replays exactly.
//! * A proposal is `Dropped` when it is certain not to commit: a different entry (or a
//!   later term) committed at its index, or an entry of a later term committed while
//!   its index was still uncommitted (such a log can never contain it). A bare term
//!   change is not enough — a deposed leader's entry may still be committed by its
//!   successor, and reporting it lost would make the client write twice.
//! * Followers never forward proposals (raft-rs would): [`Replica::propose`] returns
//!   [`ReplicaError::NotLeader`] and the daemon forwards the request to the leader.
//! * Only message types the replica itself produces are accepted from the network, and
//!   a few raft invariants whose violation would make raft-rs panic are checked first.
//!   Authenticity is the membership layer's job: a peer that lies about raft state can
//!   still confuse raft.
//! * Storage failures poison the replica: `poll` returns the error (it never panics on
//!   one) and every later call returns [`ReplicaError::Poisoned`]; restart it from storage.
//! * The forced shrink is refused ([`ReplicaError::ConfChangePending`]) while an older
//!   configuration change sits unapplied in the log (applied after the forced one, it
//!   would undo it), except an earlier forced demotion of the same peer whose
//!   configuration write a crash lost. Only a joint-free two-voter configuration can be
//!   forced.
//! * Raft-rs logs through its default slog logger (stderr, filtered by `RUST_LOG`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RawNode, SnapshotStatus, StateRole, Storage};

/// Most `Ready` rounds one `poll` handles; leftover work waits for the next `poll`.
const MAX_READY_ROUNDS: usize = 64;
/// Most voters a configuration may have.
pub const MAX_VOTERS: usize = 64;
/// Bytes the proposal header adds to a CIB write.
pub const HEADER_LEN: usize = 18;
const HEADER_MAGIC: [u8; 2] = *b"hR";
/// Room for an entry's and a message's own fields around the proposal data.
const ENTRY_OVERHEAD: usize = 1024;

/// What identifies a local proposal until it is `Acked` or `Dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId(pub u64);

/// After the leader left, how many ticks apart the survivors campaign (by node id).
pub const LEADER_LEFT_STAGGER_TICKS: usize = 2;

/// Knobs of a replica. Ticks are the driver's; `election_tick` ticks without a leader
/// start an election (randomized in `[election_tick, 2 * election_tick)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    /// Voters of a brand-new cluster; used only when the storage is empty, and then
    /// every node must be given the same list. Empty: start with no configuration and
    /// wait for the leader (a node joining as a learner).
    pub initial_voters: Vec<u64>,
    /// The last log index the driver's state machine (the CIB) has applied; entries after
    /// it are handed out again after a restart.
    pub applied: u64,
    /// Seeds the election-timeout jitter.
    pub seed: u64,
    /// Largest CIB write `propose` accepts.
    pub max_entry_bytes: usize,
    /// Largest message `step` accepts and `poll` emits (the process group's limit).
    pub max_message_bytes: usize,
    /// Most proposals awaiting their fate at once.
    pub max_pending_proposals: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            election_tick: 10,
            heartbeat_tick: 2,
            initial_voters: Vec::new(),
            applied: 0,
            seed: 0,
            max_entry_bytes: 192 * 1024,
            // The membership layer's process-group message limit (cpg::MAX_MESSAGE).
            max_message_bytes: 1 << 20,
            max_pending_proposals: 1024,
        }
    }
}

impl ReplicaConfig {
    fn validate(&self) -> Result<(), ReplicaError> {
        let bad = |why: String| Err(ReplicaError::Config(why));
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return bad(format!(
                "need 0 < heartbeat_tick ({}) < election_tick ({})",
                self.heartbeat_tick, self.election_tick
            ));
        }
        if self.election_tick > 100_000 {
            return bad(format!(
                "election_tick {} is absurdly large",
                self.election_tick
            ));
        }
        if self.max_message_bytes < 64 * 1024 {
            return bad(format!(
                "max_message_bytes {} is below 64 KiB",
                self.max_message_bytes
            ));
        }
        if self.max_entry_bytes == 0
            || self
                .max_entry_bytes
                .saturating_add(HEADER_LEN + ENTRY_OVERHEAD)
                > self.max_message_bytes / 4
        {
            return bad(format!(
                "max_entry_bytes {} must be positive and fit a quarter of max_message_bytes {} with {} bytes to spare",
                self.max_entry_bytes,
                self.max_message_bytes,
                HEADER_LEN + ENTRY_OVERHEAD
            ));
        }
        if self.max_pending_proposals == 0 || self.max_pending_proposals > 1 << 20 {
            return bad(format!(
                "max_pending_proposals {} must be in 1..=1048576",
                self.max_pending_proposals
            ));
        }
        Ok(())
    }
}

/// What the driver must do, in the order `poll` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to node `to` as a process-group message.
    Send { to: u64, bytes: Vec<u8> },
    /// Replace the state machine by this snapshot (taken at `index`); later `Apply`s
    /// continue from `index + 1`.
    RestoreSnapshot {
        index: u64,
        term: u64,
        data: Vec<u8>,
    },
    /// A committed CIB write, in log order (the proposal header is stripped).
    Apply { index: u64, data: Vec<u8> },
    /// A local proposal committed at `index` (after its `Apply`): acknowledge the client.
    Acked { proposal: ProposalId, index: u64 },
    /// A local proposal will never commit: tell the client to retry.
    Dropped { proposal: ProposalId },
    /// A snapshot replaced the log around a local proposal, so whether it committed is
    /// unknown: the client must check the CIB before retrying.
    Unknown { proposal: ProposalId },
    /// The voters (both halves while joint) changed to this set.
    VotersChanged { voters: Vec<u64> },
}

/// The durable mutators the replica calls from `poll` (raft's `Storage` is read-only).
/// Each call must be visible to `Storage` reads as soon as it returns; `sync` makes all
/// earlier calls durable (called once per `Ready` that raft says must be synced, before
/// any message of that `Ready` is returned).
pub trait Persist {
    /// Append `entries` (contiguous, starting at most one past the last index),
    /// discarding any existing entries at and after the first one's index.
    fn append(&mut self, entries: &[Entry]) -> raft::Result<()>;
    fn set_hardstate(&mut self, hs: &HardState) -> raft::Result<()>;
    /// The configuration after the last applied configuration change.
    fn set_conf_state(&mut self, cs: &ConfState) -> raft::Result<()>;
    /// Install a snapshot from the leader: drop the log up to it, take its metadata's
    /// configuration, and commit index.
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> raft::Result<()>;
    fn sync(&mut self) -> raft::Result<()> {
        Ok(())
    }
}

impl Persist for MemStorage {
    fn append(&mut self, entries: &[Entry]) -> raft::Result<()> {
        self.wl().append(entries)
    }
    fn set_hardstate(&mut self, hs: &HardState) -> raft::Result<()> {
        self.wl().set_hardstate(hs.clone());
        Ok(())
    }
    fn set_conf_state(&mut self, cs: &ConfState) -> raft::Result<()> {
        self.wl().set_conf_state(cs.clone());
        Ok(())
    }
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> raft::Result<()> {
        self.wl().apply_snapshot(snapshot.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("invalid replica configuration: {0}")]
    Config(String),
    #[error("node id 0 is reserved")]
    ZeroNodeId,
    #[error("not the raft leader (leader: {leader:?}); forward the request to the leader")]
    NotLeader { leader: Option<u64> },
    #[error("raft message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: usize, max: usize },
    #[error("undecodable raft message from node {from}: {source}")]
    Decode {
        from: u64,
        #[source]
        source: protobuf::ProtobufError,
    },
    #[error("raft message delivered as from node {from} claims to be from node {claimed}")]
    SenderMismatch { from: u64, claimed: u64 },
    #[error("raft message for node {to} delivered to node {id}")]
    WrongRecipient { to: u64, id: u64 },
    #[error("raft message type {kind} from node {from} is not accepted over the network")]
    UnexpectedMessage { from: u64, kind: String },
    #[error("malformed raft message from node {from}: {reason}")]
    Malformed { from: u64, reason: &'static str },
    #[error("CIB write of {len} bytes exceeds the limit of {max}")]
    EntryTooLarge { len: usize, max: usize },
    #[error("{max} proposals are already pending; wait for acknowledgements")]
    TooManyPending { max: usize },
    #[error("raft dropped the proposal (leadership transfer or too much uncommitted data); retry")]
    ProposalDropped,
    #[error("the voter set must not be empty")]
    EmptyVoters,
    #[error("{count} voters exceed the limit of {MAX_VOTERS}")]
    TooManyVoters { count: usize },
    #[error("the voters already are {voters:?}")]
    NoChange { voters: Vec<u64> },
    #[error("a configuration change is still in progress; retry once it is applied")]
    ConfChangePending,
    #[error("node {node} is not a learner: only demoted voters can be promoted back")]
    NotALearner { node: u64 },
    #[error("node {node} has not caught up (matched {matched}, commit {commit}); retry later")]
    NotCaughtUp {
        node: u64,
        matched: u64,
        commit: u64,
    },
    #[error("the leader (node {id}) must stay a voter")]
    LeaderStaysVoter { id: u64 },
    #[error("unapplied raft work is pending; call poll() and retry")]
    Busy,
    #[error("raft storage failed: {0}; restart the replica from storage")]
    Storage(#[source] raft::Error),
    #[error("the replica stopped after a storage failure; restart it from storage")]
    Poisoned,
    #[error("raft: {0}")]
    Raft(#[source] raft::Error),
}

/// The sans-IO raft replica. `S` is raft's log storage plus the [`Persist`] mutators.
pub struct Replica<S: Storage + Persist> {
    id: u64,
    raw: RawNode<S>,
    cfg: ReplicaConfig,
    outbox: VecDeque<Action>,
    /// Local proposals awaiting their fate, by (log index, term) of their entry.
    pending: BTreeMap<(u64, u64), ProposalId>,
    next_proposal: u64,
    /// Last index handed out (applied, or covered by a restored snapshot) and its term.
    applied: u64,
    applied_term: u64,
    reported_voters: Vec<u64>,
    conf_dirty: bool,
    failed_snapshots: Vec<u64>,
    timer_sig: Option<(u64, StateRole)>,
    rng: SplitMix64,
    poisoned: bool,
    /// Ticks until the campaign `leader_left` scheduled (none pending: None).
    pending_campaign: Option<usize>,
}

impl<S: Storage + Persist> Replica<S> {
    /// Open a replica on `storage` (empty for a new node: it is bootstrapped with
    /// `config.initial_voters`).
    pub fn new(id: u64, mut storage: S, config: ReplicaConfig) -> Result<Self, ReplicaError> {
        if id == 0 {
            return Err(ReplicaError::ZeroNodeId);
        }
        config.validate()?;
        let state = storage.initial_state().map_err(ReplicaError::Storage)?;
        let commit = state.hard_state.commit;
        if config.applied > commit {
            return Err(ReplicaError::Config(format!(
                "applied index {} is beyond the stored commit index {commit}",
                config.applied
            )));
        }
        let first = storage.first_index().map_err(ReplicaError::Storage)?;
        if config.applied.saturating_add(1) < first {
            return Err(ReplicaError::Config(format!(
                "applied index {} is behind the log, which starts at {first}: restore the state machine from the snapshot first",
                config.applied
            )));
        }
        let bootstrap = if !state.initialized() && !config.initial_voters.is_empty() {
            let voters = normalize_voters(&config.initial_voters)?;
            if !voters.contains(&id) {
                return Err(ReplicaError::Config(format!(
                    "initial voters {voters:?} do not include this node ({id})"
                )));
            }
            Some(ConfState::from((voters, Vec::<u64>::new())))
        } else {
            None
        };
        let applied_term = storage.term(config.applied).unwrap_or(0);
        let max_size_per_msg = (config.max_message_bytes / 4) as u64;
        let rc = raft::Config {
            id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied: config.applied,
            max_size_per_msg,
            max_inflight_msgs: 64,
            check_quorum: true,
            pre_vote: true,
            max_uncommitted_size: (config.max_message_bytes as u64) * 16,
            max_committed_size_per_ready: (config.max_message_bytes as u64) * 4,
            ..Default::default()
        };
        rc.validate()
            .map_err(|e| ReplicaError::Config(e.to_string()))?;
        if let Some(cs) = bootstrap {
            storage.set_conf_state(&cs).map_err(ReplicaError::Storage)?;
        }
        let raw = RawNode::with_default_logger(&rc, storage).map_err(ReplicaError::Raft)?;
        let seed = config.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let applied = config.applied;
        let mut replica = Replica {
            id,
            raw,
            cfg: config,
            outbox: VecDeque::new(),
            pending: BTreeMap::new(),
            next_proposal: 1,
            applied,
            applied_term,
            reported_voters: Vec::new(),
            conf_dirty: false,
            failed_snapshots: Vec::new(),
            timer_sig: None,
            rng: SplitMix64(seed),
            poisoned: false,
            pending_campaign: None,
        };
        replica.reported_voters = replica.voters();
        replica.rejitter();
        Ok(replica)
    }

    /// Advance raft's clock by one tick (heartbeats, elections, leader lease).
    pub fn tick(&mut self) {
        if self.poisoned {
            return;
        }
        self.raw.tick();
        self.rejitter();
        if let Some(n) = self.pending_campaign.as_mut() {
            *n = n.saturating_sub(1);
        }
        self.campaign_if_due();
    }

    /// Feed a raft message received from node `from` through the process group.
    pub fn step(&mut self, from: u64, msg_bytes: &[u8]) -> Result<(), ReplicaError> {
        self.check_poisoned()?;
        if msg_bytes.len() > self.cfg.max_message_bytes {
            return Err(ReplicaError::MessageTooLarge {
                len: msg_bytes.len(),
                max: self.cfg.max_message_bytes,
            });
        }
        let msg = Message::parse_from_bytes(msg_bytes)
            .map_err(|source| ReplicaError::Decode { from, source })?;
        self.check_message(from, &msg)?;
        let result = self.raw.step(msg);
        self.rejitter();
        match result {
            Ok(()) => Ok(()),
            // A response from a node no longer in the configuration: stale, harmless.
            Err(raft::Error::StepPeerNotFound) => Ok(()),
            Err(e) => Err(ReplicaError::Raft(e)),
        }
    }

    /// Propose a CIB write; it is acknowledged (`Action::Acked`) only once committed.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, ReplicaError> {
        self.check_poisoned()?;
        if data.len() > self.cfg.max_entry_bytes {
            return Err(ReplicaError::EntryTooLarge {
                len: data.len(),
                max: self.cfg.max_entry_bytes,
            });
        }
        self.check_can_propose()?;
        let id = ProposalId(self.next_proposal);
        let mut buf = Vec::with_capacity(HEADER_LEN + data.len());
        buf.extend_from_slice(&proposal_header(self.id, id));
        buf.extend_from_slice(&data);
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose(Vec::new(), buf)
            .map_err(map_propose_error)?;
        self.track(before, id);
        Ok(id)
    }

    /// Change the voter set to `voters`: voters not listed become learners (they keep
    /// receiving the log), listed learners that have caught up become voters again.
    /// Shrinking a two-voter configuration to this node alone is forced (see the module
    /// documentation): call it only after fencing confirmed the peer is gone.
    pub fn change_voters(&mut self, voters: &[u64]) -> Result<ProposalId, ReplicaError> {
        self.check_poisoned()?;
        let target = normalize_voters(voters)?;
        let conf = self.raw.raft.prs().conf().to_conf_state();
        if !conf.voters_outgoing.is_empty() {
            return Err(ReplicaError::ConfChangePending);
        }
        let current: BTreeSet<u64> = conf.voters.iter().copied().collect();
        let learners: BTreeSet<u64> = conf.learners.iter().copied().collect();
        let wanted: BTreeSet<u64> = target.iter().copied().collect();
        if wanted == current {
            return Err(ReplicaError::NoChange { voters: target });
        }
        if self.pending.len() >= self.cfg.max_pending_proposals {
            return Err(ReplicaError::TooManyPending {
                max: self.cfg.max_pending_proposals,
            });
        }
        if current.len() == 2 && current.contains(&self.id) && target == [self.id] {
            let peer = current.iter().copied().find(|&n| n != self.id);
            let peer = peer.expect("a two-voter set holds a node other than this one");
            return self.force_shrink(peer);
        }
        self.check_can_propose()?;
        if self.raw.raft.has_pending_conf() {
            return Err(ReplicaError::ConfChangePending);
        }
        if !wanted.contains(&self.id) {
            return Err(ReplicaError::LeaderStaysVoter { id: self.id });
        }
        let commit = self.raw.raft.raft_log.committed;
        let mut changes = Vec::new();
        for &node in wanted.difference(&current) {
            if !learners.contains(&node) {
                return Err(ReplicaError::NotALearner { node });
            }
            let matched = self.raw.raft.prs().get(node).map_or(0, |pr| pr.matched);
            if matched < commit {
                return Err(ReplicaError::NotCaughtUp {
                    node,
                    matched,
                    commit,
                });
            }
            changes.push(conf_change_single(node, ConfChangeType::AddNode));
        }
        for &node in current.difference(&wanted) {
            changes.push(conf_change_single(node, ConfChangeType::AddLearnerNode));
        }
        let mut cc = ConfChangeV2::default();
        cc.set_changes(changes.into());
        let id = ProposalId(self.next_proposal);
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose_conf_change(proposal_header(self.id, id).to_vec(), cc)
            .map_err(map_propose_error)?;
        self.track(before, id);
        Ok(id)
    }

    /// Handle raft's pending work (see the module documentation for the order) and
    /// return what the driver must do, in order.
    pub fn poll(&mut self) -> Result<Vec<Action>, ReplicaError> {
        self.drive()?;
        Ok(self.outbox.drain(..).collect())
    }

    /// Whether `poll` has anything to do.
    pub fn has_work(&self) -> bool {
        !self.poisoned && (!self.outbox.is_empty() || self.raw.has_ready())
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn leader(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    /// The group changed (`survivors` are its members now) and the leader's node left, or
    /// this node knows no leader (while a lost node stalls the membership layer for longer
    /// than the election timeout, followers lose their leader and the leader steps down for
    /// want of a quorum). Waiting out the election timeout after the new membership would
    /// add 1-2 s to every failover, so this node forgets its leader and the surviving voters
    /// campaign in turn, by node id: the lowest at once, the next
    /// [`LEADER_LEFT_STAGGER_TICKS`] later unless a leader has appeared by then, and so on.
    /// The campaign is raft's leadership-transfer kind (no pre-vote, past the other voters'
    /// leader lease), since a survivor may still believe in a leader that stepped down:
    /// raft's safety is untouched (one vote per term, only an up-to-date log wins); the cost
    /// is that a live leader some survivor did not know of is replaced, once.
    pub fn leader_left(&mut self, survivors: &[u64]) {
        if self.poisoned {
            return;
        }
        if self.is_leader() || self.leader().is_some_and(|l| survivors.contains(&l)) {
            return;
        }
        let term = self.raw.raft.term;
        self.raw.raft.become_follower(term, raft::INVALID_ID);
        self.rejitter();
        let rank = self.voters().iter().filter(|v| survivors.contains(v)).position(|&v| v == self.id);
        self.pending_campaign = rank.map(|k| k * LEADER_LEFT_STAGGER_TICKS);
        self.campaign_if_due();
    }

    /// The campaign [`Replica::leader_left`] scheduled, when its turn has come and still no
    /// leader is known.
    fn campaign_if_due(&mut self) {
        match self.pending_campaign {
            Some(_) if self.leader().is_some() => self.pending_campaign = None,
            Some(0) => {
                self.pending_campaign = None;
                let mut m = Message::default();
                m.set_msg_type(MessageType::MsgTimeoutNow);
                m.from = self.id;
                m.to = self.id;
                let _ = self.raw.step(m);
            }
            _ => {}
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The nodes whose votes count (both halves while joint), sorted.
    pub fn voters(&self) -> Vec<u64> {
        let ids: BTreeSet<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        ids.into_iter().collect()
    }

    /// The nodes that receive the log without voting, sorted.
    pub fn learners(&self) -> Vec<u64> {
        let ids: BTreeSet<u64> = self
            .raw
            .raft
            .prs()
            .conf()
            .learners()
            .iter()
            .copied()
            .collect();
        ids.into_iter().collect()
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The last log index handed out through `Apply` (or covered by a snapshot).
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// The storage (read access for the daemon: snapshots, status).
    pub fn storage(&self) -> &S {
        self.raw.store()
    }

    // ---- proposals -------------------------------------------------------------------

    fn check_can_propose(&self) -> Result<(), ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader {
                leader: self.leader(),
            });
        }
        if self.pending.len() >= self.cfg.max_pending_proposals {
            return Err(ReplicaError::TooManyPending {
                max: self.cfg.max_pending_proposals,
            });
        }
        Ok(())
    }

    /// Record the proposal raft just appended after index `before`.
    fn track(&mut self, before: u64, id: ProposalId) {
        let index = self.raw.raft.raft_log.last_index();
        assert_eq!(index, before + 1, "a proposal appends exactly one entry");
        let term = self.raw.raft.term;
        let previous = self.pending.insert((index, term), id);
        assert!(
            previous.is_none(),
            "two proposals at index {index} term {term}"
        );
        self.next_proposal += 1;
    }

    /// The forced path of `change_voters`: see the module documentation.
    fn force_shrink(&mut self, peer: u64) -> Result<ProposalId, ReplicaError> {
        self.drive()?;
        let last = self.raw.raft.raft_log.last_index();
        if self.raw.has_ready() || self.raw.raft.raft_log.persisted != last {
            return Err(ReplicaError::Busy);
        }
        let applied = self.raw.raft.raft_log.applied;
        let tail = self
            .raw
            .raft
            .raft_log
            .entries(applied + 1, None, GetEntriesContext::empty(false))
            .map_err(ReplicaError::Raft)?;
        // Applying an older change after the forced one would undo or garble it; only an
        // earlier forced demotion of the same peer (its configuration write lost to a
        // crash) is harmless to commit after this one.
        let harmless = |e: &Entry| match e.get_entry_type() {
            EntryType::EntryNormal => true,
            EntryType::EntryConfChange => false,
            EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data)
                .map_or(false, |cc| is_demotion_of(&cc, peer)),
        };
        if !tail.iter().all(harmless) {
            return Err(ReplicaError::ConfChangePending);
        }
        // A new term, led by this node on its own authority.
        let raft = &mut self.raw.raft;
        if raft.state == StateRole::Leader {
            let term = raft.term;
            raft.become_follower(term, raft::INVALID_ID);
        }
        raft.become_candidate();
        raft.become_leader();
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![conf_change_single(peer, ConfChangeType::AddLearnerNode)].into());
        let id = ProposalId(self.next_proposal);
        let mut entry = Entry::default();
        entry.set_entry_type(EntryType::EntryConfChangeV2);
        entry.data = encode(&cc).into();
        entry.context = proposal_header(self.id, id).to_vec().into();
        let before = raft.raft_log.last_index();
        assert!(
            raft.append_entry(&mut [entry]),
            "a new leader accepts a small entry"
        );
        raft.pending_conf_index = raft.raft_log.last_index();
        self.track(before, id);
        if let Err(e) = self.raw.apply_conf_change(&cc) {
            panic!("demoting voter {peer} of a two-voter configuration failed: {e}");
        }
        self.conf_dirty = true;
        self.note_voters();
        self.rejitter();
        Ok(id)
    }

    // ---- the Ready loop --------------------------------------------------------------

    fn check_poisoned(&self) -> Result<(), ReplicaError> {
        if self.poisoned {
            Err(ReplicaError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn drive(&mut self) -> Result<(), ReplicaError> {
        self.check_poisoned()?;
        let result = self.drive_rounds();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn drive_rounds(&mut self) -> Result<(), ReplicaError> {
        for _ in 0..MAX_READY_ROUNDS {
            if !self.raw.has_ready() && !self.maybe_leave_joint() {
                break;
            }
            self.handle_ready()?;
        }
        self.note_voters();
        self.rejitter();
        Ok(())
    }

    fn handle_ready(&mut self) -> Result<(), ReplicaError> {
        let mut rd = self.raw.ready();

        // 1. Durable state, before anything that depends on it leaves this node.
        let snapshot = if rd.snapshot().is_empty() {
            None
        } else {
            let snap = rd.snapshot().clone();
            self.store()
                .apply_snapshot(&snap)
                .map_err(ReplicaError::Storage)?;
            Some(snap)
        };
        if !rd.entries().is_empty() {
            self.store()
                .append(rd.entries())
                .map_err(ReplicaError::Storage)?;
        }
        if let Some(hs) = rd.hs() {
            self.store()
                .set_hardstate(hs)
                .map_err(ReplicaError::Storage)?;
        }
        self.flush_conf()?;
        if rd.must_sync() {
            self.store().sync().map_err(ReplicaError::Storage)?;
        }
        if let Some(snap) = snapshot {
            self.on_snapshot(&snap);
        }

        // 2. Messages.
        for m in rd.take_messages() {
            self.send(m);
        }
        for m in rd.take_persisted_messages() {
            self.send(m);
        }

        // 3. Committed entries.
        let committed = rd.take_committed_entries();
        self.apply_entries(committed);

        // 4. Advance, then the LightReady: new commit index, messages, entries.
        let mut light = self.raw.advance(rd);
        if light.commit_index().is_some() {
            let hs = self.raw.raft.hard_state();
            self.store()
                .set_hardstate(&hs)
                .map_err(ReplicaError::Storage)?;
        }
        for m in light.take_messages() {
            self.send(m);
        }
        let committed = light.take_committed_entries();
        self.apply_entries(committed);
        self.raw.advance_apply();
        self.flush_conf()?;
        for to in std::mem::take(&mut self.failed_snapshots) {
            self.raw.report_snapshot(to, SnapshotStatus::Failure);
        }
        Ok(())
    }

    fn store(&mut self) -> &mut S {
        self.raw.mut_store()
    }

    fn flush_conf(&mut self) -> Result<(), ReplicaError> {
        if self.conf_dirty {
            let cs = self.raw.raft.prs().conf().to_conf_state();
            self.store()
                .set_conf_state(&cs)
                .map_err(ReplicaError::Storage)?;
            self.conf_dirty = false;
        }
        Ok(())
    }

    fn send(&mut self, m: Message) {
        let to = m.to;
        let bytes = encode(&m);
        if bytes.len() > self.cfg.max_message_bytes {
            // Appends are bounded by the configuration; only a snapshot can be this big.
            assert_eq!(
                m.get_msg_type(),
                MessageType::MsgSnapshot,
                "a {}-byte raft message exceeds max_message_bytes",
                bytes.len()
            );
            self.failed_snapshots.push(to);
            return;
        }
        self.outbox.push_back(Action::Send { to, bytes });
    }

    fn on_snapshot(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        assert!(
            index > self.applied,
            "snapshot at {index} is not ahead of applied {}",
            self.applied
        );
        self.outbox.push_back(Action::RestoreSnapshot {
            index,
            term,
            data: snap.data.to_vec(),
        });
        self.applied = index;
        self.applied_term = self.applied_term.max(term);
        let covered: Vec<(u64, u64)> = self
            .pending
            .range(..=(index, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in covered {
            if let Some(proposal) = self.pending.remove(&key) {
                self.outbox.push_back(Action::Unknown { proposal });
            }
        }
        self.drop_superseded();
        self.note_voters();
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        for e in entries {
            self.apply_entry(e);
        }
        self.drop_superseded();
    }

    fn apply_entry(&mut self, e: Entry) {
        let (index, term) = (e.index, e.term);
        assert_eq!(
            index,
            self.applied + 1,
            "committed entries arrive in log order"
        );
        assert!(
            term >= self.applied_term,
            "terms never decrease along the log"
        );
        self.applied = index;
        self.applied_term = term;
        let (header, effective) = match e.get_entry_type() {
            EntryType::EntryNormal => {
                let header = parse_header(&e.data);
                if !e.data.is_empty() {
                    let data = match header {
                        Some(_) => e.data[HEADER_LEN..].to_vec(),
                        None => e.data.to_vec(),
                    };
                    self.outbox.push_back(Action::Apply { index, data });
                }
                (header, true)
            }
            EntryType::EntryConfChange => {
                let applied = match ConfChange::parse_from_bytes(&e.data) {
                    Ok(v1) => {
                        let mut cc = ConfChangeV2::default();
                        cc.set_changes(
                            vec![conf_change_single(v1.node_id, v1.get_change_type())].into(),
                        );
                        self.apply_conf(&cc)
                    }
                    Err(_) => false,
                };
                (parse_header(&e.context), applied)
            }
            EntryType::EntryConfChangeV2 => {
                // Empty data is the leave-joint change.
                let applied = match ConfChangeV2::parse_from_bytes(&e.data) {
                    Ok(cc) => self.apply_conf(&cc),
                    Err(_) => false,
                };
                (parse_header(&e.context), applied)
            }
        };
        let here: Vec<(u64, u64)> = self
            .pending
            .range((index, 0)..=(index, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in here {
            let Some(proposal) = self.pending.remove(&key) else {
                continue;
            };
            let ours = key.1 == term && header == Some((self.id, proposal.0));
            if ours && effective {
                self.outbox.push_back(Action::Acked { proposal, index });
            } else {
                self.outbox.push_back(Action::Dropped { proposal });
            }
        }
    }

    /// Apply a committed configuration change. A change raft rejects is rejected the
    /// same way on every node (same log, same starting configuration) and skipped.
    fn apply_conf(&mut self, cc: &ConfChangeV2) -> bool {
        match self.raw.apply_conf_change(cc) {
            Ok(_) => {
                self.conf_dirty = true;
                self.note_voters();
                true
            }
            Err(_) => false,
        }
    }

    /// Proposals past the applied index from a term older than the last applied entry's
    /// can never commit: every later log holds that newer entry before their index.
    fn drop_superseded(&mut self) {
        let (applied, applied_term) = (self.applied, self.applied_term);
        let stale: Vec<(u64, u64)> = self
            .pending
            .keys()
            .filter(|(_, term)| *term < applied_term)
            .copied()
            .collect();
        for key in stale {
            assert!(key.0 > applied, "proposal at {} outlived its index", key.0);
            if let Some(proposal) = self.pending.remove(&key) {
                self.outbox.push_back(Action::Dropped { proposal });
            }
        }
    }

    /// Raft-rs leaves a joint configuration automatically, except when leadership moved
    /// at the wrong moment; a leader that finds itself joint and idle proposes the leave.
    fn maybe_leave_joint(&mut self) -> bool {
        if !self.is_leader() || self.raw.raft.has_pending_conf() {
            return false;
        }
        let cs = self.raw.raft.prs().conf().to_conf_state();
        if cs.voters_outgoing.is_empty() || !cs.auto_leave {
            return false;
        }
        self.raw
            .propose_conf_change(Vec::new(), ConfChangeV2::default())
            .is_ok()
            && self.raw.has_ready()
    }

    fn note_voters(&mut self) {
        let voters = self.voters();
        if voters != self.reported_voters {
            self.reported_voters = voters.clone();
            self.outbox.push_back(Action::VotersChanged { voters });
        }
    }

    /// Re-draw raft's election timeout from our seeded PRNG whenever raft may have drawn
    /// one itself (every term or role change), so runs are reproducible.
    fn rejitter(&mut self) {
        let sig = (self.raw.raft.term, self.raw.raft.state);
        if self.timer_sig == Some(sig) {
            return;
        }
        self.timer_sig = Some(sig);
        let base = self.raw.raft.election_timeout();
        let jitter = (self.rng.next() % base as u64) as usize;
        self.raw.raft.set_randomized_election_timeout(base + jitter);
    }

    // ---- network input checks --------------------------------------------------------

    fn check_message(&self, from: u64, m: &Message) -> Result<(), ReplicaError> {
        if from == 0 || m.from != from {
            return Err(ReplicaError::SenderMismatch {
                from,
                claimed: m.from,
            });
        }
        if m.to != self.id {
            return Err(ReplicaError::WrongRecipient {
                to: m.to,
                id: self.id,
            });
        }
        let kind = m.get_msg_type();
        let accepted = matches!(
            kind,
            MessageType::MsgAppend
                | MessageType::MsgAppendResponse
                | MessageType::MsgRequestVote
                | MessageType::MsgRequestVoteResponse
                | MessageType::MsgRequestPreVote
                | MessageType::MsgRequestPreVoteResponse
                | MessageType::MsgSnapshot
                | MessageType::MsgHeartbeat
                | MessageType::MsgHeartbeatResponse
        );
        if !accepted {
            return Err(ReplicaError::UnexpectedMessage {
                from,
                kind: format!("{kind:?}"),
            });
        }
        let malformed = |reason| Err(ReplicaError::Malformed { from, reason });
        let raft = &self.raw.raft;
        let current = m.term >= raft.term;
        match kind {
            MessageType::MsgAppend => {
                let mut prev_term = m.log_term;
                for (k, e) in m.get_entries().iter().enumerate() {
                    if m.index.checked_add(1 + k as u64) != Some(e.index) {
                        return malformed("entries are not contiguous after the message index");
                    }
                    if e.term < prev_term || e.term > m.term {
                        return malformed("entry terms are out of order");
                    }
                    prev_term = e.term;
                    if current && e.index <= raft.raft_log.committed {
                        if let Ok(t) = raft.raft_log.term(e.index) {
                            if t != e.term {
                                return malformed("entry conflicts with a committed entry");
                            }
                        }
                    }
                }
            }
            MessageType::MsgHeartbeat => {
                if current && m.commit > raft.raft_log.last_index() {
                    return malformed("heartbeat commits beyond this node's log");
                }
            }
            MessageType::MsgAppendResponse => {
                if m.term == raft.term
                    && raft.state == StateRole::Leader
                    && !m.reject
                    && m.index > raft.raft_log.last_index()
                {
                    return malformed("append acknowledged beyond the leader's log");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Raft's protobuf encoding; it cannot fail for proto3 messages held in memory.
fn encode(m: &impl protobuf::Message) -> Vec<u8> {
    match m.write_to_bytes() {
        Ok(bytes) => bytes,
        Err(e) => panic!("encoding a raft protobuf message failed: {e}"),
    }
}

fn map_propose_error(e: raft::Error) -> ReplicaError {
    match e {
        raft::Error::ProposalDropped => ReplicaError::ProposalDropped,
        other => ReplicaError::Raft(other),
    }
}

fn normalize_voters(voters: &[u64]) -> Result<Vec<u64>, ReplicaError> {
    if voters.is_empty() {
        return Err(ReplicaError::EmptyVoters);
    }
    if voters.contains(&0) {
        return Err(ReplicaError::ZeroNodeId);
    }
    let set: BTreeSet<u64> = voters.iter().copied().collect();
    if set.len() > MAX_VOTERS {
        return Err(ReplicaError::TooManyVoters { count: set.len() });
    }
    Ok(set.into_iter().collect())
}

/// Whether `cc` is exactly "make `peer` a learner" as a simple change.
fn is_demotion_of(cc: &ConfChangeV2, peer: u64) -> bool {
    cc.get_transition() == ConfChangeTransition::Auto
        && matches!(cc.get_changes(), [c] if c.node_id == peer
            && c.get_change_type() == ConfChangeType::AddLearnerNode)
}

fn conf_change_single(node: u64, kind: ConfChangeType) -> ConfChangeSingle {
    let mut cc = ConfChangeSingle::default();
    cc.node_id = node;
    cc.set_change_type(kind);
    cc
}

/// `magic(2) | origin node (u64 LE) | proposal counter (u64 LE)`.
fn proposal_header(node: u64, id: ProposalId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..2].copy_from_slice(&HEADER_MAGIC);
    h[2..10].copy_from_slice(&node.to_le_bytes());
    h[10..18].copy_from_slice(&id.0.to_le_bytes());
    h
}

fn parse_header(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < HEADER_LEN || bytes[..2] != HEADER_MAGIC {
        return None;
    }
    let mut node = [0u8; 8];
    let mut counter = [0u8; 8];
    node.copy_from_slice(&bytes[2..10]);
    counter.copy_from_slice(&bytes[10..18]);
    Some((u64::from_le_bytes(node), u64::from_le_bytes(counter)))
}

/// SplitMix64: small, seedable, good enough for timer jitter.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn config(voters: &[u64], seed: u64) -> ReplicaConfig {
        ReplicaConfig {
            initial_voters: voters.to_vec(),
            seed,
            ..ReplicaConfig::default()
        }
    }

    struct Node {
        replica: Replica<MemStorage>,
        storage: MemStorage,
        up: bool,
        applied: BTreeMap<u64, Vec<u8>>,
        acked: BTreeMap<ProposalId, u64>,
        dropped: BTreeSet<ProposalId>,
        voter_changes: Vec<Vec<u64>>,
    }

    /// An in-memory cluster: replicas on MemStorage, one message queue, links that can be
    /// cut, seeded drops and reorders. Safety is checked on every `Apply`.
    struct Cluster {
        seed: u64,
        nodes: BTreeMap<u64, Node>,
        queue: VecDeque<(u64, u64, Vec<u8>)>,
        cut: BTreeSet<(u64, u64)>,
        rng: SmallRng,
        drop_per_mille: u32,
        reorder: bool,
        /// Delivery waves per round (a message sent in the last wave waits a round).
        waves: usize,
        /// What any replica applied at each index.
        committed: BTreeMap<u64, Vec<u8>>,
        /// (node, incarnation-local proposal id) → data; cleared for a node on reboot.
        proposals: BTreeMap<(u64, ProposalId), Vec<u8>>,
        /// Proposals whose proposer rebooted before learning their fate.
        abandoned: Vec<Vec<u8>>,
        /// (node, index) of every snapshot restored.
        restored: Vec<(u64, u64)>,
    }

    impl Cluster {
        fn new(ids: &[u64], seed: u64) -> Cluster {
            let mut nodes = BTreeMap::new();
            for &id in ids {
                let storage = MemStorage::new();
                let replica = Replica::new(id, storage.clone(), config(ids, seed)).unwrap();
                nodes.insert(
                    id,
                    Node {
                        replica,
                        storage,
                        up: true,
                        applied: BTreeMap::new(),
                        acked: BTreeMap::new(),
                        dropped: BTreeSet::new(),
                        voter_changes: Vec::new(),
                    },
                );
            }
            Cluster {
                seed,
                nodes,
                queue: VecDeque::new(),
                cut: BTreeSet::new(),
                rng: SmallRng::seed_from_u64(seed),
                drop_per_mille: 0,
                reorder: false,
                waves: 10,
                committed: BTreeMap::new(),
                proposals: BTreeMap::new(),
                abandoned: Vec::new(),
                restored: Vec::new(),
            }
        }

        fn ids(&self) -> Vec<u64> {
            self.nodes.keys().copied().collect()
        }

        fn node(&self, id: u64) -> &Node {
            &self.nodes[&id]
        }

        fn replica(&mut self, id: u64) -> &mut Replica<MemStorage> {
            &mut self.nodes.get_mut(&id).unwrap().replica
        }

        fn link(a: u64, b: u64) -> (u64, u64) {
            (a.min(b), a.max(b))
        }

        fn connected(&self, a: u64, b: u64) -> bool {
            !self.cut.contains(&Self::link(a, b))
        }

        fn isolate(&mut self, id: u64) {
            for other in self.ids() {
                if other != id {
                    self.cut.insert(Self::link(id, other));
                }
            }
        }

        fn heal(&mut self) {
            self.cut.clear();
        }

        fn crash(&mut self, id: u64) {
            self.nodes.get_mut(&id).unwrap().up = false;
        }

        /// Power-cycle `id`: a new replica on the same storage, told what it applied.
        fn reboot(&mut self, id: u64) {
            let seed = self.seed;
            let node = self.nodes.get_mut(&id).unwrap();
            let applied = node.applied.keys().next_back().copied().unwrap_or(0);
            let cfg = ReplicaConfig {
                applied,
                seed: seed.wrapping_add(applied),
                ..ReplicaConfig::default()
            };
            node.replica = Replica::new(id, node.storage.clone(), cfg).unwrap();
            node.up = true;
            node.acked.clear();
            node.dropped.clear();
            let lost: Vec<(u64, ProposalId)> = self
                .proposals
                .keys()
                .filter(|(n, _)| *n == id)
                .copied()
                .collect();
            for key in lost {
                let data = self.proposals.remove(&key).unwrap();
                self.abandoned.push(data);
            }
        }

        fn poll(&mut self, id: u64) {
            let actions = self.replica(id).poll().unwrap();
            for action in actions {
                match action {
                    Action::Send { to, bytes } => self.queue.push_back((id, to, bytes)),
                    Action::Apply { index, data } => {
                        let node = self.nodes.get_mut(&id).unwrap();
                        if let Some((&last, _)) = node.applied.iter().next_back() {
                            assert!(index > last, "node {id} applied {index} after {last}");
                        }
                        node.applied.insert(index, data.clone());
                        match self.committed.get(&index) {
                            Some(other) => assert_eq!(
                                other, &data,
                                "seed {}: replicas applied different data at index {index}",
                                self.seed
                            ),
                            None => {
                                self.committed.insert(index, data);
                            }
                        }
                    }
                    Action::Acked { proposal, index } => {
                        let node = self.nodes.get_mut(&id).unwrap();
                        assert!(node.acked.insert(proposal, index).is_none());
                        assert!(!node.dropped.contains(&proposal));
                    }
                    Action::Dropped { proposal } => {
                        let node = self.nodes.get_mut(&id).unwrap();
                        assert!(!node.acked.contains_key(&proposal));
                        assert!(node.dropped.insert(proposal));
                    }
                    Action::VotersChanged { voters } => {
                        self.nodes.get_mut(&id).unwrap().voter_changes.push(voters);
                    }
                    Action::RestoreSnapshot { index, .. } => {
                        // MemStorage snapshots carry no data: restore from what was committed.
                        let restored = self
                            .committed
                            .range(..=index)
                            .map(|(i, d)| (*i, d.clone()))
                            .collect();
                        self.nodes.get_mut(&id).unwrap().applied = restored;
                        self.restored.push((id, index));
                    }
                    Action::Unknown { .. } => {
                        panic!("no proposal is pending across a snapshot here")
                    }
                }
            }
        }

        fn deliver(&mut self) {
            for _ in 0..self.waves {
                if self.queue.is_empty() {
                    break;
                }
                let mut batch: Vec<_> = self.queue.drain(..).collect();
                if self.reorder {
                    batch.shuffle(&mut self.rng);
                }
                for (from, to, bytes) in batch {
                    if !self.nodes[&to].up || !self.connected(from, to) {
                        continue;
                    }
                    if self.drop_per_mille > 0 && self.rng.gen_range(0..1000) < self.drop_per_mille
                    {
                        continue;
                    }
                    self.replica(to).step(from, &bytes).unwrap();
                    self.poll(to);
                }
            }
        }

        fn round(&mut self) {
            for id in self.ids() {
                if self.nodes[&id].up {
                    self.replica(id).tick();
                    self.poll(id);
                }
            }
            self.deliver();
        }

        fn run(&mut self, rounds: usize) {
            for _ in 0..rounds {
                self.round();
            }
        }

        fn run_until(&mut self, rounds: usize, done: impl Fn(&Cluster) -> bool) -> bool {
            for _ in 0..rounds {
                if done(self) {
                    return true;
                }
                self.round();
            }
            done(self)
        }

        /// The leader every live node connected to it agrees on.
        fn agreed_leader(&self) -> Option<u64> {
            let leaders: Vec<u64> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.up && n.replica.is_leader())
                .map(|(id, _)| *id)
                .collect();
            let &[leader] = leaders.as_slice() else {
                return None;
            };
            let agreed = self.nodes.iter().all(|(&id, n)| {
                !n.up || !self.connected(id, leader) || n.replica.leader() == Some(leader)
            });
            agreed.then_some(leader)
        }

        fn wait_leader(&mut self) -> u64 {
            assert!(
                self.run_until(500, |c| c.agreed_leader().is_some()),
                "no leader elected"
            );
            self.agreed_leader().unwrap()
        }

        fn propose(&mut self, id: u64, data: &[u8]) -> Result<ProposalId, ReplicaError> {
            let result = self.replica(id).propose(data.to_vec());
            if let Ok(pid) = result {
                self.proposals.insert((id, pid), data.to_vec());
            }
            self.poll(id);
            result
        }

        fn change_voters(&mut self, id: u64, voters: &[u64]) -> Result<ProposalId, ReplicaError> {
            let result = self.replica(id).change_voters(voters);
            self.poll(id);
            result
        }

        fn acked(&self, id: u64, pid: ProposalId) -> Option<u64> {
            self.node(id).acked.get(&pid).copied()
        }

        fn wait_acked(&mut self, id: u64, pid: ProposalId) -> u64 {
            assert!(
                self.run_until(500, |c| c.acked(id, pid).is_some()),
                "proposal {pid:?} on node {id} never acked"
            );
            self.acked(id, pid).unwrap()
        }

        /// Propose on `id` and wait for the acknowledgement.
        fn write(&mut self, id: u64, data: &[u8]) -> u64 {
            let pid = self.propose(id, data).unwrap();
            self.wait_acked(id, pid)
        }

        /// Commit `data` through whoever leads, retrying proposals lost to leader changes.
        fn commit(&mut self, data: &[u8]) -> u64 {
            for _ in 0..20 {
                let leader = self.wait_leader();
                let Ok(pid) = self.propose(leader, data) else {
                    continue;
                };
                self.run_until(500, |c| {
                    c.acked(leader, pid).is_some() || c.node(leader).dropped.contains(&pid)
                });
                if let Some(index) = self.acked(leader, pid) {
                    return index;
                }
            }
            panic!(
                "seed {}: could not commit {:?}",
                self.seed,
                String::from_utf8_lossy(data)
            );
        }

        /// `change_voters` on `id`, retried while a learner catches up or a change is
        /// still being applied, then waited for.
        fn settle_voters(&mut self, id: u64, voters: &[u64]) {
            for _ in 0..200 {
                match self.change_voters(id, voters) {
                    Ok(pid) => {
                        self.wait_acked(id, pid);
                        return;
                    }
                    Err(ReplicaError::NotCaughtUp { .. })
                    | Err(ReplicaError::ConfChangePending) => self.run(5),
                    Err(e) => panic!("seed {}: change_voters({voters:?}) on {id}: {e}", self.seed),
                }
            }
            panic!(
                "seed {}: change_voters({voters:?}) on {id} never went through",
                self.seed
            );
        }

        fn applied_everywhere(&self, data: &[u8]) -> bool {
            self.nodes
                .values()
                .all(|n| n.applied.values().any(|d| d == data))
        }

        fn applied_anywhere(&self, data: &[u8]) -> bool {
            self.nodes
                .values()
                .any(|n| n.applied.values().any(|d| d == data))
        }

        fn same_logs(&self, ids: &[u64]) -> bool {
            ids.windows(2)
                .all(|w| self.node(w[0]).applied == self.node(w[1]).applied)
        }
    }

    #[test]
    fn replica_elects_a_single_leader() {
        let mut c = Cluster::new(&[1, 2, 3], 1);
        let leader = c.wait_leader();
        c.run(50);
        assert_eq!(
            c.agreed_leader(),
            Some(leader),
            "leadership is stable without faults"
        );
        for id in c.ids() {
            assert_eq!(c.node(id).replica.voters(), vec![1, 2, 3]);
        }
    }

    #[test]
    fn replica_proposals_apply_in_the_same_order_everywhere() {
        let mut c = Cluster::new(&[1, 2, 3], 2);
        let leader = c.wait_leader();
        let pids: Vec<ProposalId> = (0..20)
            .map(|i| c.propose(leader, format!("w{i}").as_bytes()).unwrap())
            .collect();
        let mut indexes = Vec::new();
        for pid in pids {
            indexes.push(c.wait_acked(leader, pid));
        }
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "acked in log order"
        );
        assert!(c.run_until(200, |c| c.same_logs(&[1, 2, 3])
            && c.applied_everywhere(b"w19")));
        let order: Vec<&Vec<u8>> = c.node(1).applied.values().collect();
        let expected: Vec<Vec<u8>> = (0..20).map(|i| format!("w{i}").into_bytes()).collect();
        assert_eq!(order, expected.iter().collect::<Vec<_>>());
        for (pid_index, i) in indexes.iter().zip(0..) {
            assert_eq!(c.node(2).applied[pid_index], format!("w{i}").into_bytes());
        }
    }

    #[test]
    fn replica_follower_proposal_names_the_leader() {
        let mut c = Cluster::new(&[1, 2, 3], 3);
        let leader = c.wait_leader();
        let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
        match c.propose(follower, b"x") {
            Err(ReplicaError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
            other => panic!("expected NotLeader, got {other:?}"),
        }
    }

    #[test]
    fn replica_majority_commits_with_one_replica_isolated() {
        let mut c = Cluster::new(&[1, 2, 3], 4);
        let leader = c.wait_leader();
        let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
        c.isolate(follower);
        c.write(leader, b"while-isolated");
        assert!(!c
            .node(follower)
            .applied
            .values()
            .any(|d| d == b"while-isolated"));
        c.heal();
        assert!(c.run_until(300, |c| c.applied_everywhere(b"while-isolated")));
    }

    #[test]
    fn replica_leader_left_elects_at_once_and_keeps_committed_writes() {
        for seed in 0..20 {
            let mut c = Cluster::new(&[1, 2, 3], seed);
            let leader = c.wait_leader();
            c.write(leader, b"before");
            c.crash(leader);
            let survivors: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
            for &id in &survivors {
                c.replica(id).leader_left(&survivors);
                c.poll(id);
            }
            // Without the hint the election waits 10-20 ticks; with it, a round trip or two
            // (one stagger more when the lowest survivor's log is behind).
            assert!(c.run_until(4 + LEADER_LEFT_STAGGER_TICKS, |c| c.agreed_leader().is_some()), "seed {seed}: no quick leader");
            let new = c.agreed_leader().unwrap();
            assert!(survivors.contains(&new));
            c.write(new, b"after");
            assert!(survivors.iter().all(|&id| c.node(id).applied.values().any(|d| d == b"before")), "seed {seed}");
            // A hint naming the live leader changes nothing.
            let term = c.replica(new).term();
            for &id in &survivors {
                c.replica(id).leader_left(&survivors);
            }
            assert_eq!(c.replica(new).term(), term);
            assert!(c.replica(new).is_leader());
        }
    }

    #[test]
    fn replica_leaderless_after_a_stall_elects_at_once_when_membership_settles() {
        for seed in 0..20 {
            let mut c = Cluster::new(&[1, 2, 3], seed);
            let leader = c.wait_leader();
            c.write(leader, b"before");
            // The membership layer stalls while it detects a lost node: nothing is delivered
            // for longer than the election timeout; the leader steps down (check_quorum).
            for id in c.ids() {
                c.isolate(id);
            }
            c.run(45);
            c.crash(leader);
            c.heal();
            let survivors: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
            assert!(survivors.iter().all(|&id| c.node(id).replica.leader().is_none()), "seed {seed}: the stall left a leader");
            for &id in &survivors {
                c.replica(id).leader_left(&survivors);
                c.poll(id);
            }
            assert!(c.run_until(4 + LEADER_LEFT_STAGGER_TICKS, |c| c.agreed_leader().is_some()), "seed {seed}: no quick leader");
        }
    }

    #[test]
    fn replica_a_survivor_that_still_trusts_a_stepped_down_leader_does_not_stall_the_election() {
        for seed in 0..10 {
            let mut c = Cluster::new(&[1, 2, 3], seed);
            let leader = c.wait_leader();
            for id in c.ids() {
                c.isolate(id);
            }
            c.run(45);
            assert!(!c.replica(leader).is_leader(), "seed {seed}: check_quorum steps the leader down");
            // A stale heartbeat reached one survivor after the stall: it trusts the old leader
            // (and its lease) again, while the old leader itself knows none.
            let others: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
            let (trusting, lost) = (others[0], others[1]);
            let term = c.replica(trusting).term();
            c.replica(trusting).raw.raft.become_follower(term, leader);
            c.crash(lost);
            c.heal();
            let survivors = vec![leader.min(trusting), leader.max(trusting)];
            for &id in &survivors {
                c.replica(id).leader_left(&survivors);
                c.poll(id);
            }
            assert!(c.run_until(4 + LEADER_LEFT_STAGGER_TICKS, |c| c.agreed_leader().is_some()), "seed {seed}: no quick leader");
        }
    }

    #[test]
    fn replica_isolated_minority_never_acks() {
        let mut c = Cluster::new(&[1, 2, 3], 5);
        let old = c.wait_leader();
        c.write(old, b"before");
        c.isolate(old);
        let lost = c.propose(old, b"minority").unwrap();
        c.run(200);
        assert_eq!(c.acked(old, lost), None, "a minority must not commit");
        assert!(
            !c.node(old).replica.is_leader(),
            "check_quorum deposes the isolated leader"
        );
        // The majority elected a new leader and keeps committing.
        let others: Vec<u64> = c.ids().into_iter().filter(|&id| id != old).collect();
        let new = others
            .iter()
            .copied()
            .find(|&id| c.node(id).replica.is_leader())
            .unwrap();
        c.write(new, b"majority");
        c.heal();
        assert!(
            c.run_until(300, |c| c.node(old).dropped.contains(&lost)),
            "lost proposal is dropped"
        );
        assert!(c.run_until(300, |c| c.applied_everywhere(b"majority")));
        assert!(!c.applied_anywhere(b"minority"));
    }

    /// Two nodes; the leader is fenced; the survivor shrinks the voters to itself, keeps
    /// committing, and the fenced node rejoins as a learner and is promoted back.
    fn two_node_fencing(seed: u64, drop_per_mille: u32) {
        let mut c = Cluster::new(&[1, 2], seed);
        c.drop_per_mille = drop_per_mille;
        c.reorder = drop_per_mille > 0;
        c.commit(b"a");
        assert!(c.run_until(300, |c| c.applied_everywhere(b"a")));

        // The leader is cut off with a write it can never commit, then fenced.
        let fenced = c.wait_leader();
        let survivor = 3 - fenced;
        c.isolate(fenced);
        let orphan = c.propose(fenced, b"orphan").unwrap();
        c.run(30);
        assert_eq!(c.acked(fenced, orphan), None);
        c.crash(fenced);
        c.run(100);
        assert!(
            !c.node(survivor).replica.is_leader(),
            "one of two voters cannot win"
        );
        assert!(matches!(
            c.propose(survivor, b"x"),
            Err(ReplicaError::NotLeader { leader: None })
        ));

        // Fencing confirmed: the survivor shrinks the voter set to itself.
        let shrink = c.change_voters(survivor, &[survivor]).unwrap();
        c.wait_acked(survivor, shrink);
        assert!(c.node(survivor).replica.is_leader());
        assert_eq!(c.node(survivor).replica.voters(), vec![survivor]);
        assert_eq!(c.node(survivor).replica.learners(), vec![fenced]);
        assert_eq!(c.node(survivor).voter_changes.last(), Some(&vec![survivor]));
        for i in 0..5 {
            c.write(survivor, format!("alone{i}").as_bytes());
        }

        // The fenced node powers back up and rejoins: a learner that catches up first.
        c.reboot(fenced);
        c.heal();
        match c.change_voters(survivor, &[1, 2]) {
            Err(ReplicaError::NotCaughtUp { node, .. }) => assert_eq!(node, fenced),
            other => panic!("expected NotCaughtUp, got {other:?}"),
        }
        assert!(c.run_until(500, |c| c.same_logs(&[1, 2])
            && c.applied_everywhere(b"alone4")));
        assert!(
            !c.applied_anywhere(b"orphan"),
            "the uncommitted write was overwritten"
        );
        assert_eq!(
            c.node(fenced).replica.voters(),
            vec![survivor],
            "the returning node adopted the shrink"
        );
        assert_eq!(c.node(fenced).replica.learners(), vec![fenced]);
        assert!(matches!(
            c.propose(fenced, b"x"),
            Err(ReplicaError::NotLeader { leader: Some(l) }) if l == survivor
        ));

        // Promote it back; from now on its vote is needed again.
        c.settle_voters(survivor, &[1, 2]);
        assert!(c.run_until(300, |c| c
            .nodes
            .values()
            .all(|n| n.replica.voters() == vec![1, 2])));
        assert_eq!(c.node(fenced).voter_changes.last(), Some(&vec![1, 2]));
        c.commit(b"both");

        let leader = c.wait_leader();
        let other = 3 - leader;
        c.isolate(other);
        let blocked = c.propose(leader, b"needs-both").unwrap();
        c.run(150);
        assert_eq!(
            c.acked(leader, blocked),
            None,
            "one of two voters cannot commit"
        );
        assert!(!c.node(leader).replica.is_leader());
        c.heal();
        c.commit(b"together");
        assert!(c.run_until(500, |c| c.same_logs(&[1, 2])
            && c.applied_everywhere(b"together")));
    }

    #[test]
    fn replica_two_nodes_survive_fencing_and_the_peer_rejoins() {
        two_node_fencing(6, 0);
    }

    #[test]
    fn replica_two_nodes_survive_fencing_with_lossy_links() {
        for seed in 100..132 {
            two_node_fencing(seed, 100);
        }
    }

    #[test]
    fn replica_three_shrink_to_two_then_one_as_nodes_are_fenced() {
        let mut c = Cluster::new(&[1, 2, 3], 7);
        let leader = c.wait_leader();
        let others: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
        let (a, b) = (others[0], others[1]);
        c.write(leader, b"three");

        c.crash(a);
        // Two of three are a majority: the ordinary (committed) path.
        let mut pair = vec![leader, b];
        pair.sort();
        let shrink = c.change_voters(leader, &pair).unwrap();
        c.wait_acked(leader, shrink);
        assert!(c.run_until(100, |c| c.node(b).replica.voters() == pair));
        c.write(leader, b"two");

        c.crash(b);
        c.run(5);
        let alone = c.change_voters(leader, &[leader]).unwrap();
        c.wait_acked(leader, alone);
        assert_eq!(c.node(leader).replica.voters(), vec![leader]);
        c.write(leader, b"one");

        // Both come back as learners, catch up, and are promoted one at a time.
        c.reboot(a);
        c.reboot(b);
        assert!(c.run_until(300, |c| c.same_logs(&[1, 2, 3])
            && c.applied_everywhere(b"one")));
        let mut two = vec![leader, a];
        two.sort();
        let p = c.change_voters(leader, &two).unwrap();
        c.wait_acked(leader, p);
        c.run(10);
        let p = c.change_voters(leader, &[1, 2, 3]).unwrap();
        c.wait_acked(leader, p);
        assert!(c.run_until(100, |c| c
            .nodes
            .values()
            .all(|n| n.replica.voters() == vec![1, 2, 3])));
        c.write(leader, b"three-again");
    }

    #[test]
    fn replica_joint_change_swaps_a_voter() {
        let mut c = Cluster::new(&[1, 2, 3], 8);
        let leader = c.wait_leader();
        let others: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
        let (a, b) = (others[0], others[1]);
        let mut keep_a = vec![leader, a];
        keep_a.sort();
        let p = c.change_voters(leader, &keep_a).unwrap();
        c.wait_acked(leader, p);
        c.write(leader, b"b-is-a-learner");
        assert!(c.run_until(200, |c| c.applied_everywhere(b"b-is-a-learner")));
        c.run(5);

        // Demote a and promote b in one change: joint consensus, left automatically.
        let mut keep_b = vec![leader, b];
        keep_b.sort();
        let p = c.change_voters(leader, &keep_b).unwrap();
        c.wait_acked(leader, p);
        assert!(c.run_until(200, |c| c
            .nodes
            .values()
            .all(|n| n.replica.voters() == keep_b)));
        for id in c.ids() {
            assert_eq!(c.node(id).voter_changes.last(), Some(&keep_b), "node {id}");
            assert_eq!(c.node(id).replica.learners(), vec![a], "node {id}");
        }
        c.write(leader, b"after-joint");
        assert!(c.run_until(200, |c| c.applied_everywhere(b"after-joint")));
    }

    #[test]
    fn replica_lagging_node_catches_up_by_snapshot() {
        let mut c = Cluster::new(&[1, 2, 3], 12);
        let leader = c.wait_leader();
        let lagging = c.ids().into_iter().find(|&id| id != leader).unwrap();
        c.write(leader, b"early");
        assert!(c.run_until(100, |c| c.applied_everywhere(b"early")));
        c.crash(lagging);
        for i in 0..10 {
            c.write(leader, format!("missed{i}").as_bytes());
        }
        let live: Vec<u64> = c.ids().into_iter().filter(|&id| id != lagging).collect();
        assert!(c.run_until(100, |c| {
            let commit = c.node(leader).replica.commit_index();
            live.iter()
                .all(|&id| c.node(id).replica.applied_index() == commit)
        }));
        // The live nodes compact their logs past what the lagging node has.
        for &id in &live {
            let applied = c.node(id).replica.applied_index();
            c.node(id).storage.wl().compact(applied).unwrap();
        }
        c.reboot(lagging);
        assert!(c.run_until(300, |c| c.same_logs(&[1, 2, 3])));
        assert_eq!(c.restored.len(), 1, "caught up through one snapshot");
        assert_eq!(c.restored[0].0, lagging);
        c.write(leader, b"after-snapshot");
        assert!(c.run_until(200, |c| c.applied_everywhere(b"after-snapshot")
            && c.same_logs(&[1, 2, 3])));
        assert_eq!(c.node(lagging).replica.voters(), vec![1, 2, 3]);
    }

    /// MemStorage whose configuration write can be made to fail, as if the node died
    /// between persisting a Ready's entries and its configuration.
    struct LosesConfWrites {
        inner: MemStorage,
        fail: bool,
    }

    impl Storage for LosesConfWrites {
        fn initial_state(&self) -> raft::Result<raft::RaftState> {
            self.inner.initial_state()
        }
        fn entries(
            &self,
            low: u64,
            high: u64,
            max_size: impl Into<Option<u64>>,
            context: GetEntriesContext,
        ) -> raft::Result<Vec<Entry>> {
            self.inner.entries(low, high, max_size, context)
        }
        fn term(&self, idx: u64) -> raft::Result<u64> {
            self.inner.term(idx)
        }
        fn first_index(&self) -> raft::Result<u64> {
            self.inner.first_index()
        }
        fn last_index(&self) -> raft::Result<u64> {
            self.inner.last_index()
        }
        fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
            self.inner.snapshot(request_index, to)
        }
    }

    impl Persist for LosesConfWrites {
        fn append(&mut self, entries: &[Entry]) -> raft::Result<()> {
            self.inner.append(entries)
        }
        fn set_hardstate(&mut self, hs: &HardState) -> raft::Result<()> {
            self.inner.set_hardstate(hs)
        }
        fn set_conf_state(&mut self, cs: &ConfState) -> raft::Result<()> {
            if self.fail {
                return Err(raft::Error::Store(raft::StorageError::Unavailable));
            }
            self.inner.set_conf_state(cs)
        }
        fn apply_snapshot(&mut self, snapshot: &Snapshot) -> raft::Result<()> {
            self.inner.apply_snapshot(snapshot)
        }
    }

    #[test]
    fn replica_forced_shrink_survives_a_crash_before_the_conf_write() {
        let storage = MemStorage::new();
        let flaky = LosesConfWrites {
            inner: storage.clone(),
            fail: false,
        };
        // Node 1 of {1, 2}; node 2 is gone (fenced) and never answers.
        let mut r = Replica::new(1, flaky, config(&[1, 2], 13)).unwrap();
        for _ in 0..50 {
            r.tick();
            r.poll().unwrap();
        }
        assert!(!r.is_leader());
        r.raw.mut_store().fail = true;
        r.change_voters(&[1]).unwrap();
        assert!(matches!(r.poll(), Err(ReplicaError::Storage(_))));
        assert!(matches!(r.poll(), Err(ReplicaError::Poisoned)));
        assert!(matches!(
            r.propose(b"x".to_vec()),
            Err(ReplicaError::Poisoned)
        ));
        drop(r);

        // Restart: the forced record is in the log, uncommitted; the configuration
        // still says {1, 2}. Forcing again must work and commit both records.
        let mut r = Replica::new(1, storage.clone(), config(&[1, 2], 13)).unwrap();
        assert_eq!(r.voters(), vec![1, 2]);
        let pid = r.change_voters(&[1]).unwrap();
        let actions = r.poll().unwrap();
        assert!(actions.contains(&Action::Acked {
            proposal: pid,
            index: r.commit_index()
        }));
        assert!(actions.contains(&Action::VotersChanged { voters: vec![1] }));
        assert_eq!(r.voters(), vec![1]);
        assert_eq!(r.learners(), vec![2]);
        let write = r.propose(b"alone".to_vec()).unwrap();
        let actions = r.poll().unwrap();
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Apply { data, .. } if data == b"alone")));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Acked { proposal, .. } if *proposal == write)));
        assert_eq!(storage.initial_state().unwrap().conf_state.voters, vec![1]);
    }

    #[test]
    fn replica_new_checks_its_config() {
        let new = |id, cfg| Replica::new(id, MemStorage::new(), cfg);
        assert!(matches!(
            new(0, config(&[1], 0)),
            Err(ReplicaError::ZeroNodeId)
        ));
        assert!(matches!(
            new(1, config(&[2, 3], 0)),
            Err(ReplicaError::Config(_))
        ));
        assert!(matches!(
            new(1, config(&[0, 1], 0)),
            Err(ReplicaError::ZeroNodeId)
        ));
        let beyond = ReplicaConfig {
            applied: 5,
            ..config(&[1], 0)
        };
        assert!(matches!(new(1, beyond), Err(ReplicaError::Config(_))));
        let ticks = ReplicaConfig {
            election_tick: 2,
            heartbeat_tick: 2,
            ..config(&[1], 0)
        };
        assert!(matches!(new(1, ticks), Err(ReplicaError::Config(_))));
        let big = ReplicaConfig {
            max_entry_bytes: 1 << 20,
            ..config(&[1], 0)
        };
        assert!(matches!(new(1, big), Err(ReplicaError::Config(_))));
        // A failed open leaves empty storage untouched.
        let storage = MemStorage::new();
        let bad = ReplicaConfig {
            applied: 5,
            ..config(&[1], 0)
        };
        assert!(Replica::new(1, storage.clone(), bad).is_err());
        assert!(!storage.initial_state().unwrap().initialized());
        // No initial voters: an empty node that waits for a leader.
        let r = new(4, ReplicaConfig::default()).unwrap();
        assert!(r.voters().is_empty());
    }

    #[test]
    fn replica_change_voters_checks_its_input() {
        let mut c = Cluster::new(&[1, 2, 3], 9);
        let leader = c.wait_leader();
        let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
        let r = c.replica(leader);
        assert!(matches!(
            r.change_voters(&[]),
            Err(ReplicaError::EmptyVoters)
        ));
        assert!(matches!(
            r.change_voters(&[0, 1]),
            Err(ReplicaError::ZeroNodeId)
        ));
        assert!(matches!(
            r.change_voters(&[3, 2, 1, 1]),
            Err(ReplicaError::NoChange { .. })
        ));
        assert!(matches!(
            r.change_voters(&[1, 2, 3, 4]),
            Err(ReplicaError::NotALearner { node: 4 })
        ));
        let without_leader: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
        assert!(matches!(
            r.change_voters(&without_leader),
            Err(ReplicaError::LeaderStaysVoter { .. })
        ));
        let many: Vec<u64> = (1..=(MAX_VOTERS as u64 + 1)).collect();
        assert!(matches!(
            r.change_voters(&many),
            Err(ReplicaError::TooManyVoters { .. })
        ));
        assert!(matches!(
            c.replica(follower).change_voters(&[1, 2]),
            Err(ReplicaError::NotLeader { leader: Some(l) }) if l == leader
        ));
        // Three voters are never shrunk by force, even to the calling node alone.
        assert!(matches!(
            c.replica(follower).change_voters(&[follower]),
            Err(ReplicaError::NotLeader { .. })
        ));
        // Nothing above changed anything.
        c.run(20);
        for id in c.ids() {
            assert_eq!(c.node(id).replica.voters(), vec![1, 2, 3]);
        }
    }

    #[test]
    fn replica_step_rejects_bad_input() {
        let mut c = Cluster::new(&[1, 2, 3], 10);
        let leader = c.wait_leader();
        let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
        let mut rng = SmallRng::seed_from_u64(10);
        for len in 0..200 {
            let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Errors or harmless messages, never a panic.
            let _ = c.replica(follower).step(leader, &junk);
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = leader;
        m.to = follower;
        m.term = c.node(leader).replica.term();
        let other = 6 - leader - follower;
        assert!(matches!(
            c.replica(follower).step(other, &encode(&m)),
            Err(ReplicaError::SenderMismatch { .. })
        ));
        assert!(matches!(
            c.replica(other).step(leader, &encode(&m)),
            Err(ReplicaError::WrongRecipient { .. })
        ));
        m.commit = 1_000_000;
        assert!(matches!(
            c.replica(follower).step(leader, &encode(&m)),
            Err(ReplicaError::Malformed { .. })
        ));
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgPropose,
            MessageType::MsgTimeoutNow,
        ] {
            m.set_msg_type(kind);
            assert!(matches!(
                c.replica(follower).step(leader, &encode(&m)),
                Err(ReplicaError::UnexpectedMessage { .. })
            ));
        }
        let big = vec![0u8; ReplicaConfig::default().max_message_bytes + 1];
        assert!(matches!(
            c.replica(follower).step(leader, &big),
            Err(ReplicaError::MessageTooLarge { .. })
        ));
        // The cluster is unharmed.
        c.run(20);
        let leader = c.wait_leader();
        c.write(leader, b"still-fine");
    }

    #[test]
    fn replica_propose_limits() {
        let mut c = Cluster::new(&[1], 11);
        let leader = c.wait_leader();
        assert_eq!(leader, 1);
        let max = ReplicaConfig::default().max_entry_bytes;
        assert!(matches!(
            c.propose(1, &vec![0; max + 1]),
            Err(ReplicaError::EntryTooLarge { .. })
        ));
        c.write(1, &vec![7; max]);
        // One voter: a single node commits alone.
        assert!(c.applied_everywhere(&vec![7; max]));
    }

    /// One seeded run with drops, reorders, partitions and reboots; returns each node's
    /// applied log for the determinism check.
    fn chaos(seed: u64) -> Vec<BTreeMap<u64, Vec<u8>>> {
        let mut c = Cluster::new(&[1, 2, 3], seed);
        c.drop_per_mille = 150;
        c.reorder = true;
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xc4a05);
        let mut isolated: Option<(u64, usize)> = None;
        let mut counter = 0;
        for round in 0..1500 {
            if let Some((_, until)) = isolated {
                if round >= until {
                    c.heal();
                    isolated = None;
                }
            } else if rng.gen_range(0..40) == 0 {
                let id = rng.gen_range(1..=3);
                c.isolate(id);
                isolated = Some((id, round + rng.gen_range(10..60)));
            }
            if rng.gen_range(0..300) == 0 {
                c.reboot(rng.gen_range(1..=3));
            }
            c.waves = rng.gen_range(1..=3);
            for _ in 0..rng.gen_range(0..=2) {
                let id = rng.gen_range(1..=3);
                counter += 1;
                let data = format!("s{seed}-n{id}-{counter}");
                // Like the daemon: a follower's answer names the leader to forward to.
                let result = match c.propose(id, data.as_bytes()) {
                    Err(ReplicaError::NotLeader { leader: Some(l) }) => {
                        c.propose(l, data.as_bytes())
                    }
                    other => other,
                };
                match result {
                    Ok(_) | Err(ReplicaError::NotLeader { .. }) => {}
                    Err(e) => panic!("seed {seed}: propose failed: {e}"),
                }
            }
            c.round();
        }
        c.heal();
        c.drop_per_mille = 0;
        c.waves = 10;
        let settled = c.run_until(1000, |c| {
            c.same_logs(&[1, 2, 3])
                && c.proposals.keys().all(|(n, p)| {
                    c.node(*n).acked.contains_key(p) || c.node(*n).dropped.contains(p)
                })
        });
        assert!(settled, "seed {seed}: cluster did not settle");
        for ((node, pid), data) in &c.proposals {
            if let Some(index) = c.acked(*node, *pid) {
                for id in c.ids() {
                    assert_eq!(
                        c.node(id).applied.get(&index),
                        Some(data),
                        "seed {seed}: acked proposal missing on node {id}"
                    );
                }
            } else {
                assert!(
                    !c.applied_anywhere(data),
                    "seed {seed}: dropped proposal was applied"
                );
            }
        }
        let mut seen = BTreeSet::new();
        for data in c.node(1).applied.values() {
            assert!(
                seen.insert(data.clone()),
                "seed {seed}: a write applied twice"
            );
        }
        c.ids()
            .into_iter()
            .map(|id| c.node(id).applied.clone())
            .collect()
    }

    #[test]
    fn replica_chaos_keeps_replicas_consistent() {
        let mut committed = 0;
        for seed in 0..64 {
            let logs = chaos(seed);
            committed += logs[0].len();
        }
        assert!(
            committed > 64 * 200,
            "chaos runs commit real work ({committed} entries)"
        );
    }

    #[test]
    fn replica_chaos_replays_from_its_seed() {
        assert_eq!(chaos(1234), chaos(1234));
    }
}
