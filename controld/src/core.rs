//! The controller of one node as a sans-IO state machine: the DC choice ([`Seniority`]),
//! the join, the transition engine ([`Engine`]) on the DC, and on every node the local
//! executor's voice. Inputs through [`Controller::handle`] and
//! [`Controller::handle_timeout`]; outputs through [`Controller::poll_action`]; time comes
//! in as [`Now`]. One task owns it (`daemon.rs`).
//!
//! # Driving it (the order is written down here, once)
//!
//! After every input the driver drains [`Controller::poll_action`] and performs the
//! actions **in the order given**:
//! * `CibWrite`s go to one writer that performs them one at a time, in order, and reports
//!   each with `Input::WriteDone` (its raft index, or the refusal). The DC relies on that
//!   order (node fields before the history that needs them) and confirms an action only
//!   once the write of its result is acknowledged.
//! * `Schedule { min_index }` runs the scheduler on a CIB that includes every write up to
//!   `min_index` (read-your-writes: the follower's applied index must have reached it; no
//!   sleep, no re-query, CONTROLLER-NOTES §9), answered by `Input::Graph`.
//! * `Broadcast` goes to the process group; the sender receives its own message back, in
//!   the group's order, like everyone (the DC's own results travel the same path).
//! * `Exec` runs an op on the local executor (recurring ops through `Recur`: their results
//!   arrive as executor events); every result comes back as `Input::ExecEvent`.
//!   `CancelRecurring` is performed before any later `Exec` of the same resource.
//! * `Fence` asks the local fencer; its end comes back as `Input::FenceDone`.
//!
//! # Who writes the status
//!
//! Only the DC writes `node_state`, history and failure attributes (Pacemaker's nodes write
//! their own results and the DC learns them from the CIB diff, §3.3: halo sends the result
//! to the DC, which records it and acts once it is committed — one hop less). A result
//! carries its transition key; one of another DC or an older transition is recorded, never
//! confirmed, and makes the DC plan again (§3.4).
//!
//! Deliberate deviations: see `seniority.rs` and `engine.rs`; pending records only for ops
//! that may make a resource active (`dispatch`); a DC without quorum records nothing
//! (`on_quorum_change`); the attribute manager is the DC itself, with dampening (`attrs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proto::controld as pb;
use proto::execd as xpb;
use scheduler::graph::{ActionKind, Graph};

use crate::engine::{Engine, Outcome};
use crate::records;
use crate::seniority::Seniority;

const OCF_NOT_RUNNING: i32 = 7;
const OCF_RUNNING_PROMOTED: i32 = 8;
const OCF_DEGRADED: i32 = 190;
const OCF_DEGRADED_PROMOTED: i32 = 191;
const OP_DONE: i32 = 0;
const OP_CANCELLED: i32 = 1;
const OP_TIMEOUT: i32 = 2;

/// Monotonic milliseconds (timers) and the wall clock in epoch seconds (records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub ms: u64,
    pub epoch_s: i64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub me: u32,
    /// Configured nodes: id -> name.
    pub nodes: BTreeMap<u32, String>,
    /// This controller process's DC identity (in every transition key it makes).
    pub dc_uuid: String,
    /// How long a node whose controller left the group (its node still in the ring) may
    /// take to come back before it counts as down: halod respawns a controller within
    /// its back-off.
    pub controller_grace_ms: u64,
    /// How long a member may take to send its history after a DC change.
    pub join_timeout_ms: u64,
    /// At formation, how long the DC waits for configured nodes never seen before
    /// (Pacemaker's `dc-deadtime`): scheduling earlier would fence them at startup.
    pub startup_wait_ms: u64,
    /// `stonith-max-attempts`.
    pub stonith_max_attempts: u32,
    /// Actions in flight per node when the CIB sets no `node-action-limit`. Pacemaker's is
    /// twice the node's cores, shrunk under load; halo's executor bounds the agents it runs
    /// at once itself (64) and queues the rest per resource, so the DC's limit only bounds
    /// that queue, and the round trip of an action (~100 ms through the group and the CIB)
    /// rather than the agents sets the pace: 32.
    pub node_action_limit: usize,
}

impl Config {
    pub fn new(me: u32, nodes: BTreeMap<u32, String>, dc_uuid: String) -> Config {
        Config { me, nodes, dc_uuid, controller_grace_ms: 15_000, join_timeout_ms: 5_000, startup_wait_ms: 20_000, stonith_max_attempts: 10, node_action_limit: 32 }
    }
}

/// What the scheduler's CIB said that the DC needs besides the graph.
#[derive(Debug, Clone, Default)]
pub struct CibFacts {
    /// Failure attribute names (`fail-count-*`, `last-failure-*`) per node id.
    pub fail_attrs: BTreeMap<String, Vec<String>>,
    /// Nodes that have a `node_state`.
    pub seen: BTreeSet<u32>,
    /// The `<cib>`'s `have-quorum` and `dc-uuid` (the DC's to keep true).
    pub have_quorum: Option<bool>,
    pub dc_uuid: Option<String>,
    /// Per node id, its `lrm_resource`s that carry a `shutdown-lock` (XML), which its
    /// next join keeps.
    pub locked: BTreeMap<String, Vec<String>>,
}

#[derive(Debug)]
pub enum Input {
    /// The controllers' group changed. `left` says for each leaver whether its node left
    /// the membership (true) or only its controller went (false).
    Confchg { members: Vec<u32>, joined: Vec<u32>, left: Vec<(u32, bool)> },
    Peer { from: u32, msg: pb::PeerMessage },
    /// The membership layer's view: quorum and the nodes in the ring.
    Quorum { quorate: bool, ring: Vec<u32> },
    /// A committed CIB change; `replan`: it touches what scheduling reads beyond the
    /// status the DC writes (configuration, transient attributes, tickets).
    CibChanged { replan: bool },
    /// The local executor's history (`<lrm_resources>`), after [`Action::ReadHistory`].
    History { xml: String },
    /// A result of the local executor.
    ExecEvent(xpb::OpEvent),
    /// The scheduler's answer to `Schedule { seq }`; None if it failed.
    Graph { seq: u64, graph: Option<(Graph, CibFacts)> },
    WriteDone { tag: u64, result: Result<u64, String> },
    FenceDone { transition: u64, action: usize, ok: bool, reason: String },
    /// The node is stopping (halod's SIGTERM): move its resources off, then exit.
    Shutdown,
    /// A local client sets or deletes a transient node attribute (an agent's crm_attribute,
    /// attrd_updater, crm_master): handed to the DC.
    Attribute(pb::AttributeUpdate),
    /// A local client (cleanup, refresh) has a node's executor forget resources' records:
    /// handed to that node's controller through the group.
    Forget(pb::ForgetRecords),
    /// The CIB's raft voters (at start, and after [`Action::SetCibVoters`]).
    CibVoters { voters: Vec<u32> },
}

#[derive(Debug)]
pub enum Action {
    Broadcast(pb::PeerMessage),
    CibWrite { tag: u64, write: proto::cib::WriteRequest },
    /// `minority`: this partition has no quorum; schedule from the CIB as this partition
    /// sees it ([`records::minority_view`]).
    Schedule { seq: u64, min_index: u64, minority: Option<Minority> },
    ReadHistory,
    CancelRecurring { rsc: String, ops: Vec<(String, u64)> },
    /// The local executor forgets these resources' records.
    ForgetHistory { rsc: Vec<String> },
    /// The writes queued so far are no longer wanted (this node stopped being DC, or lost
    /// quorum): the writer drops them instead of offering them again, so a former DC's
    /// late write cannot land over the current DC's.
    AbandonWrites,
    Exec { op: xpb::OpRequest },
    Fence { transition: u64, action: usize, target: String, fence_action: String, timeout_ms: u64 },
    /// Make these nodes the CIB's raft voters: shrink to a quorate partition once it fenced
    /// the voters it lost (a two-node cluster's survivor), grow back when they rejoin.
    SetCibVoters { voters: Vec<u32> },
    /// This controller's work is done (a clean stop): the driver exits.
    Exit,
}

/// A partition without quorum, as its DC schedules it: `have-quorum` 0, this DC, and the
/// nodes outside the partition gone (their state in the CIB is the last the majority
/// wrote, which this partition cannot see past).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minority {
    pub dc: u32,
    pub outside: Vec<u32>,
    /// The partition is quorate but holds no majority of the CIB's voters (a two-node
    /// cluster's survivor): it plans with quorum, fences, then takes the CIB's voters.
    pub quorate: bool,
}

/// Why a status write is made: what to do once it is acknowledged.
#[derive(Debug, Clone)]
enum AfterWrite {
    Nothing,
    Confirm { transition: u64, action: usize, ok: bool },
    /// The action's pending record is in: send it (if it is still in flight).
    Send { transition: u64, action: usize, msg: pb::PeerMessage },
    /// A refusal is expected and harmless (a conditional write).
    MayBeRefused,
}

/// The DC role's state; rebuilt every time this node becomes DC.
#[derive(Default)]
struct DcState {
    joined: BTreeSet<u32>,
    /// Transient attributes on their way to the CIB (dampening).
    attrs: crate::attrs::AttrWriter,
    /// The shutdown-locked history per node id, as the last graph's CIB had it.
    locked: BTreeMap<String, Vec<String>>,
    formation: bool,
    writes: BTreeMap<u64, AfterWrite>,
    last_index: u64,
    dirty: bool,
    scheduling: Option<u64>,
    engine: Option<Engine>,
    transitions: u64,
    /// Controllers gone while their node stays: when they count as down.
    gone: BTreeMap<u32, u64>,
    fence_failures: BTreeMap<String, u32>,
    /// The graph's `recheck-by` (epoch s).
    recheck_by: Option<i64>,
    seen: BTreeSet<u32>,
    quorum_written: Option<bool>,
    /// Failure attribute names per node id, from the CIB the current graph came from.
    fail_attrs: BTreeMap<String, Vec<String>>,
    /// Nodes that asked to stop: their leaving is clean.
    stopping: BTreeSet<u32>,
    /// Actions of the current graph in flight but not sent: held for a node whose
    /// controller is away (within its grace), or waiting for their pending record.
    unsent: BTreeSet<usize>,
    /// Until when members of the group that have not joined yet are waited for.
    join_until: u64,
}

pub struct Controller {
    cfg: Config,
    seniority: Seniority,
    quorate: bool,
    /// The CIB's raft voters: writes commit only with a majority of them in the ring.
    cib_voters: BTreeSet<u32>,
    /// Nodes this DC fenced while the CIB could take no write: recorded once it can.
    fenced_unrecorded: BTreeMap<String, String>,
    /// Nodes in the membership ring (their controllers may not be in the group).
    ring: BTreeSet<u32>,
    /// The DC this node last sent its history to.
    joined_to: Option<u32>,
    /// Recurring ops the local executor runs, per resource: (action, interval).
    recurring: BTreeMap<String, BTreeSet<(String, u64)>>,
    /// The agent of each resource the local executor ran (for the history's lrm_resource).
    agents: BTreeMap<String, String>,
    /// One-shot ops handed to the local executor and not answered, per resource, oldest
    /// first: (action, transition key). A join reports them as pending even if the
    /// executor has not taken them yet.
    local_ops: BTreeMap<String, Vec<(String, String)>>,
    seen_other_dc: bool,
    last_dc: Option<u32>,
    /// The node is stopping: it asked (and asks every new DC) to have its resources moved.
    shutting_down: bool,
    dc: Option<DcState>,
    next_tag: u64,
    next_seq: u64,
    /// Writes a DC without quorum does not make (the CIB cannot take them): what waits
    /// for each goes on at once, in order.
    unwritten: VecDeque<AfterWrite>,
    outbox: VecDeque<Action>,
    now: Now,
}

fn names_of(nodes: &BTreeMap<u32, String>, id: u32) -> String {
    nodes.get(&id).cloned().unwrap_or_else(|| format!("node{id}"))
}

impl Controller {
    pub fn new(cfg: Config, now: Now) -> Controller {
        let cib_voters = cfg.nodes.keys().copied().collect();
        Controller {
            seniority: Seniority::new(cfg.me),
            cfg,
            quorate: false,
            cib_voters,
            fenced_unrecorded: BTreeMap::new(),
            ring: BTreeSet::new(),
            joined_to: None,
            recurring: BTreeMap::new(),
            agents: BTreeMap::new(),
            local_ops: BTreeMap::new(),
            seen_other_dc: false,
            last_dc: None,
            shutting_down: false,
            dc: None,
            next_tag: 1,
            next_seq: 1,
            unwritten: VecDeque::new(),
            outbox: VecDeque::new(),
            now,
        }
    }

    /// Status writes of the DC not yet acknowledged.
    pub fn writes_in_flight(&self) -> usize {
        self.dc.as_ref().map_or(0, |d| d.writes.len())
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    pub fn dc(&self) -> Option<u32> {
        self.seniority.dc()
    }

    fn name(&self, id: u32) -> String {
        names_of(&self.cfg.nodes, id)
    }

    fn id_of(&self, name: &str) -> Option<u32> {
        self.cfg.nodes.iter().find(|(_, n)| n.as_str() == name).map(|(&id, _)| id)
    }

    /// The state the local API reports.
    pub fn status(&self) -> pb::StatusReply {
        let mut r = pb::StatusReply { node_id: self.cfg.me, dc: self.dc().unwrap_or(0), quorate: self.quorate, seniority: self.seniority.order().map(<[u32]>::to_vec).unwrap_or_default(), ..Default::default() };
        if let Some(d) = &self.dc {
            r.joined = d.joined.iter().copied().collect();
            r.transitions = d.transitions;
            r.state = if d.engine.is_some() {
                "executing"
            } else if d.scheduling.is_some() {
                "scheduling"
            } else if !d.writes.is_empty() || !self.all_joined(d) {
                "waiting"
            } else {
                "idle"
            }
            .into();
            if let Some(e) = &d.engine {
                r.confirmed = e.confirmed() as u32;
                r.failed = e.failed() as u32;
                r.in_flight = e.in_flight() as u32;
                r.actions = e.graph.actions.len() as u32;
            }
        }
        r
    }

    pub fn handle(&mut self, now: Now, input: Input) {
        self.now = now;
        match input {
            Input::Confchg { members, joined, left } => self.on_confchg(&members, &joined, &left),
            Input::Peer { from, msg } => self.on_peer(from, msg),
            Input::Quorum { quorate, ring } => {
                let ring: BTreeSet<u32> = ring.into_iter().collect();
                let ring_changed = ring != self.ring;
                let was = self.writable();
                self.ring = ring;
                self.quorate = quorate;
                let now_writable = self.writable();
                if was != now_writable {
                    self.on_quorum_change(now_writable);
                } else if ring_changed && !now_writable {
                    if let Some(d) = self.dc.as_mut() {
                        d.dirty = true;
                    }
                }
            }
            Input::CibVoters { voters } => {
                let was = self.writable();
                self.cib_voters = voters.into_iter().collect();
                tracing::info!("CIB voters: {:?}", self.cib_voters);
                let now_writable = self.writable();
                if was != now_writable {
                    self.on_quorum_change(now_writable);
                }
            }
            Input::CibChanged { replan } => {
                if let Some(d) = self.dc.as_mut() {
                    if replan {
                        d.dirty = true;
                        if let Some(e) = d.engine.as_mut() {
                            e.abort();
                        }
                    }
                }
            }
            Input::History { xml } => self.on_history(xml),
            Input::ExecEvent(ev) => self.on_exec_event(ev),
            Input::Graph { seq, graph } => self.on_graph(seq, graph),
            Input::WriteDone { tag, result } => self.on_write_done(tag, result),
            Input::FenceDone { transition, action, ok, reason } => self.on_fence_done(transition, action, ok, &reason),
            Input::Shutdown => self.on_shutdown(),
            Input::Forget(f) => self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Forget(f)) })),
            Input::Attribute(mut a) => {
                if a.node == 0 {
                    a.node = self.cfg.me;
                }
                match self.current_dc() {
                    Some(dc) => {
                        a.dc = dc;
                        self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Attribute(a)) }));
                    }
                    None => tracing::warn!("attribute {} of node {} dropped: no DC", a.name, a.node),
                }
            }
        }
        self.step();
    }

    /// Timers: the engine's action timers, controllers that did not come back, the join
    /// and formation waits, failure expiry.
    pub fn poll_timeout(&self) -> Option<u64> {
        let d = self.dc.as_ref()?;
        let mut t: Vec<u64> = d.gone.values().copied().collect();
        t.extend(d.engine.as_ref().and_then(Engine::poll_timeout));
        if !self.all_joined_strict(d) && d.join_until > self.now.ms {
            t.push(d.join_until);
        }
        if let Some(by) = d.recheck_by {
            let wait_s = (by - self.now.epoch_s).max(0) as u64;
            t.push(self.now.ms + wait_s * 1000 + 1000);
        }
        t.extend(d.attrs.next_due());
        t.into_iter().min()
    }

    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        let due = self.dc.as_mut().map(|d| d.attrs.due(now.ms)).unwrap_or_default();
        for ((node, attr), value) in due {
            self.write_attribute(node, attr, value);
        }
        let nodes = self.cfg.nodes.clone();
        let mut writes = Vec::new();
        if let Some(d) = self.dc.as_mut() {
            let due: Vec<u32> = d.gone.iter().filter(|(_, &t)| t <= now.ms).map(|(&n, _)| n).collect();
            for n in due {
                d.gone.remove(&n);
                writes.push(records::node_fields(&n.to_string(), &names_of(&nodes, n), &[("crmd", "offline")]));
                if let Some(e) = d.engine.as_mut() {
                    e.fail_node(&names_of(&nodes, n));
                }
                d.dirty = true;
            }
            if let Some(e) = d.engine.as_mut() {
                let hit = e.handle_timeout(now.ms);
                if !hit.is_empty() {
                    d.dirty = true;
                }
                // A result that did not come back in time (op timeout + cluster-delay): the
                // op may have run, so the DC records it as failed (timed out), as Pacemaker
                // does (§3.3): the scheduler then recovers the resource where it may run,
                // never beside it. An action never sent has nothing to record.
                for i in hit {
                    if d.unsent.remove(&i) {
                        continue;
                    }
                    let a = &e.graph.actions[i];
                    let (ActionKind::Rsc(op), Some((name, node_id))) = (&a.kind, &a.node) else { continue };
                    let key = records::transition_key(i, e.id, op.expected_rc, &self.cfg.dc_uuid);
                    let why = format!("Controller on {name} did not return result in time");
                    tracing::warn!("{}: {why}", a.key);
                    let rec = cib::status::unfinished_op_record(&op.rsc, &op.task, op.interval_ms, &key, Some(&why), now.epoch_s, "halo-controld");
                    if let Ok(w) = records::record_op(node_id, name, &op.rsc, &op.agent_spec(), &rec.to_xml(), true, None) {
                        writes.push(w);
                    }
                    let attrs = records::failure_attrs(&op.rsc, &op.task, op.interval_ms, e.graph.start_failure_is_fatal, false, now.epoch_s);
                    if !attrs.is_empty() {
                        writes.push(records::transient_attrs(node_id, name, &attrs));
                    }
                }
            }
            if d.recheck_by.is_some_and(|by| by <= now.epoch_s) {
                d.recheck_by = None;
                d.dirty = true;
            }
        }
        for w in writes {
            self.write(w, AfterWrite::Nothing);
        }
        self.step();
    }

    fn on_confchg(&mut self, members: &[u32], joined: &[u32], left: &[(u32, bool)]) {
        let left_ids: Vec<u32> = left.iter().map(|l| l.0).collect();
        if let Some(order) = self.seniority.on_confchg(members, joined, &left_ids) {
            self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Seniority(pb::Seniority { order })) }));
        }
        let nodes = self.cfg.nodes.clone();
        let now = self.now;
        let grace = self.cfg.controller_grace_ms;
        let mut writes = Vec::new();
        if let Some(d) = self.dc.as_mut() {
            for &(n, node_down) in left {
                d.joined.remove(&n);
                if node_down || d.stopping.contains(&n) {
                    d.attrs.forget_node(n);
                }
                if d.stopping.remove(&n) {
                    // A clean stop: down, not lost; its transient attributes go with it.
                    d.gone.remove(&n);
                    writes.push(records::node_left_cleanly(&n.to_string()));
                    d.dirty = true;
                } else if node_down {
                    d.gone.remove(&n);
                    writes.push(records::node_fields(&n.to_string(), &names_of(&nodes, n), &[("in_ccm", "false"), ("crmd", "offline")]));
                    if let Some(e) = d.engine.as_mut() {
                        e.fail_node(&names_of(&nodes, n));
                    }
                    d.dirty = true;
                } else {
                    d.gone.insert(n, now.ms + grace);
                }
            }
            for n in joined {
                d.gone.remove(n);
            }
            // A member new to the group is waited for (its history) as at a DC change.
            if !joined.is_empty() {
                d.join_until = d.join_until.max(now.ms + self.cfg.join_timeout_ms);
            }
        }
        for w in writes {
            self.write(w, AfterWrite::Nothing);
        }
        self.after_dc_change();
    }

    fn after_dc_change(&mut self) {
        let now_dc = self.seniority.dc();
        if let Some(dc) = now_dc {
            self.last_dc = Some(dc);
            if dc != self.cfg.me {
                self.seen_other_dc = true;
            }
        }
        // While a new order is being agreed (now_dc None) a DC keeps its state but starts
        // nothing new (`step`); it gives the role up only to an agreed other DC.
        if now_dc.is_some_and(|d| d != self.cfg.me) && self.dc.is_some() {
            tracing::info!("no longer the DC");
            self.dc = None;
            self.outbox.push_back(Action::AbandonWrites);
        }
        if now_dc == Some(self.cfg.me) && self.dc.is_none() {
            tracing::info!("this node is the DC now (formation: {})", !self.seen_other_dc);
            let wait = if self.seen_other_dc { self.cfg.join_timeout_ms } else { self.cfg.startup_wait_ms };
            self.dc = Some(DcState { formation: !self.seen_other_dc, dirty: true, join_until: self.now.ms + wait, ..Default::default() });
            self.mark_absent_nodes();
        }
        if now_dc.is_some() && now_dc != self.joined_to {
            // Members push their history to a new DC (§9): no offer round.
            self.outbox.push_back(Action::ReadHistory);
            if self.shutting_down {
                self.request_shutdown();
            }
        }
    }

    /// Whether the CIB can take this partition's writes: quorum, and a majority of the
    /// CIB's voters in the ring (raft commits nothing otherwise).
    pub fn writable(&self) -> bool {
        let present = self.cib_voters.iter().filter(|v| self.ring.contains(v)).count();
        self.quorate && present * 2 > self.cib_voters.len()
    }

    /// Quorum lost: the DC of this partition goes on without the CIB's writes (what waited
    /// for one goes on at once) and plans with `no-quorum-policy` (stop, by default, stops
    /// what runs here; freeze and ignore keep it). Quorum back: every node joins its DC
    /// again, since what ran here meanwhile was never recorded.
    fn on_quorum_change(&mut self, quorate: bool) {
        let now = self.now.ms;
        let join_timeout = self.cfg.join_timeout_ms;
        if let Some(d) = self.dc.as_mut() {
            d.dirty = true;
            // The graph was made for the other case: nothing more fires from it (a start it
            // holds must not run unrecorded in a minority).
            if let Some(e) = d.engine.as_mut() {
                e.abort();
            }
            if quorate {
                d.joined.clear();
                d.join_until = d.join_until.max(now + join_timeout);
                d.quorum_written = None;
            } else {
                let waiting: Vec<AfterWrite> = std::mem::take(&mut d.writes).into_values().collect();
                self.unwritten.extend(waiting);
                self.outbox.push_back(Action::AbandonWrites);
            }
        }
        if quorate && self.dc.is_some() {
            // Fencing done while the CIB took no write is recorded first.
            for (id, name) in std::mem::take(&mut self.fenced_unrecorded) {
                self.write(records::node_fields(&id, &name, &[("in_ccm", "false"), ("crmd", "offline"), ("join", "down"), ("expected", "down")]), AfterWrite::Nothing);
                self.write(records::node_fenced(&id), AfterWrite::Nothing);
            }
            self.mark_absent_nodes();
        }
        if quorate && self.seniority.dc().is_some() {
            self.joined_to = None;
            self.outbox.push_back(Action::ReadHistory);
        }
    }

    /// Nodes that left while this DC could not record it (before it took over, with the
    /// former DC, while the order was being agreed, or while it had no quorum) must not look
    /// alive to the scheduler. A node still in the ring whose controller is away
    /// (restarting) gets the same grace as if this DC had seen it leave.
    fn mark_absent_nodes(&mut self) {
        let absent: Vec<u32> = self.cfg.nodes.keys().copied().filter(|n| !self.seniority.members().contains(n)).collect();
        let grace_until = self.now.ms + self.cfg.controller_grace_ms;
        for n in absent {
            if self.ring.contains(&n) {
                if let Some(d) = self.dc.as_mut() {
                    d.gone.entry(n).or_insert(grace_until);
                }
            } else {
                self.write(records::node_gone_if_known(&n.to_string()), AfterWrite::MayBeRefused);
            }
        }
    }

    /// What waited for writes that a DC without quorum does not make.
    fn finish_unwritten(&mut self) {
        while let Some(after) = self.unwritten.pop_front() {
            self.after_write(after, true);
        }
    }

    /// What waited for a write, once it is done (`ok`: taken, or not needed).
    fn after_write(&mut self, after: AfterWrite, ok: bool) {
        match after {
            AfterWrite::Confirm { transition, action, ok: as_expected } => self.confirm(transition, action, as_expected),
            AfterWrite::Send { transition, action, msg } => {
                let Some(d) = self.dc.as_mut() else { return };
                let current = d.engine.as_ref().is_some_and(|e| e.id == transition && matches!(e.state(action), Some(crate::engine::ActionState::InFlight { .. })));
                if !current || !d.unsent.remove(&action) {
                    return;
                }
                if ok {
                    self.outbox.push_back(Action::Broadcast(msg));
                } else {
                    self.confirm(transition, action, false);
                }
            }
            AfterWrite::Nothing | AfterWrite::MayBeRefused => {}
        }
    }

    /// halod stops the node (§6.1): the DC moves this node's resources off and then
    /// answers `Shutdown`. With no DC to ask (no quorum, alone) there is nothing to wait for.
    fn on_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        tracing::info!("stopping: asking the DC to move this node's resources off");
        if self.current_dc().is_none() || !self.quorate {
            self.outbox.push_back(Action::Exit);
            return;
        }
        self.request_shutdown();
    }

    fn request_shutdown(&mut self) {
        if let Some(dc) = self.current_dc() {
            self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::ShutdownRequest(pb::ShutdownRequest { dc })) }));
        }
    }

    /// The DC: a transient attribute for a node in the cluster (names are checked as the
    /// CIB checks any write: a bad one is refused there and changes nothing).
    fn on_attribute(&mut self, a: pb::AttributeUpdate) {
        if a.dc != self.cfg.me || self.dc.is_none() || !self.cfg.nodes.contains_key(&a.node) || a.name.is_empty() {
            return;
        }
        let value = (!a.delete).then(|| a.value.clone());
        let now = self.now.ms;
        let d = self.dc.as_mut().expect("checked above");
        if let Some(((node, attr), value)) = d.attrs.update(now, (a.node, a.name.clone()), value, a.dampen_ms, a.only_delay) {
            self.write_attribute(node, attr, value);
        }
    }

    /// Write one transient attribute (None: delete it).
    fn write_attribute(&mut self, node: u32, attr: String, value: Option<String>) {
        let (id, name) = (node.to_string(), self.name(node));
        let w = match value {
            None => records::delete_transient_attrs(&id, &[attr]),
            Some(v) => records::transient_attrs(&id, &name, &[(attr, v)]),
        };
        self.write(w, AfterWrite::MayBeRefused);
    }

    /// The DC: a node asks to stop. It is expected down from now on (so its leaving is not
    /// a failure) and its `shutdown` attribute makes the scheduler move its resources off
    /// and end with `do_shutdown`.
    fn on_shutdown_request(&mut self, from: u32, r: pb::ShutdownRequest) {
        if r.dc != self.cfg.me || self.dc.is_none() {
            return;
        }
        let (id, name) = (from.to_string(), self.name(from));
        tracing::info!("node {name} asks to stop");
        self.dc.as_mut().expect("checked above").stopping.insert(from);
        self.write(records::node_fields(&id, &name, &[("expected", "down")]), AfterWrite::Nothing);
        self.write(records::transient_attrs(&id, &name, &[("shutdown".to_string(), self.now.epoch_s.to_string())]), AfterWrite::Nothing);
    }

    /// The DC this node works for: the agreed one, else the last agreed while a new
    /// order is awaited (its requests and results still count).
    fn current_dc(&self) -> Option<u32> {
        self.seniority.dc().or(self.last_dc)
    }

    fn on_peer(&mut self, from: u32, msg: pb::PeerMessage) {
        use pb::peer_message::Body;
        match msg.body {
            Some(Body::Seniority(s)) => {
                if self.seniority.on_announce(&s.order) {
                    self.after_dc_change();
                }
            }
            Some(Body::Join(j)) => self.on_join(from, j),
            Some(Body::Execute(x)) => self.on_execute(from, x),
            Some(Body::Result(r)) => self.on_result(from, r),
            Some(Body::ShutdownRequest(r)) => self.on_shutdown_request(from, r),
            Some(Body::Attribute(a)) => self.on_attribute(a),
            Some(Body::Forget(f)) => {
                if f.node == self.cfg.me && !f.rsc.is_empty() {
                    self.outbox.push_back(Action::ForgetHistory { rsc: f.rsc });
                }
            }
            Some(Body::Shutdown(x)) => {
                if x.to == self.cfg.me && Some(from) == self.current_dc() && self.shutting_down {
                    tracing::info!("the DC has moved this node's resources off: exiting");
                    self.outbox.push_back(Action::Exit);
                }
            }
            None => tracing::warn!("an empty message from node {from}: ignored"),
        }
    }

    fn on_history(&mut self, xml: String) {
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
    }

    /// The executor's history with the one-shot ops this controller handed it and has no
    /// answer for yet: an op the executor has not taken in yet is missing from it, and the
    /// join must not tell the DC that the resource ran nothing (its newest such op stands
    /// as pending `<rsc>_last_0`, as the executor shows its own).
    fn with_local_ops(&self, xml: String) -> String {
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
            let existing = doc.root.elements_mut().find(|r| r.name == "lrm_resource" && r.id() == Some(rsc.as_str()));
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

    fn on_join(&mut self, from: u32, j: pb::Join) {
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

    /// The node side: the DC asks this node to run an op.
    fn on_execute(&mut self, from: u32, x: pb::Execute) {
        if x.to != self.cfg.me {
            return;
        }
        let Some(op) = x.op else { return };
        if Some(from) != self.current_dc() {
            tracing::warn!("node {from} is not the DC: its request to {} {} is refused", op.action, op.rsc);
            return;
        }
        // The executor stops a resource's recurring ops before it stops, moves or changes
        // role (Pacemaker's controller cancels them first), and the DC forgets their records.
        if matches!(op.action.as_str(), "stop" | "demote" | "promote" | "migrate_to") {
            if let Some(ops) = self.recurring.remove(&op.rsc) {
                let ops: Vec<(String, u64)> = ops.into_iter().collect();
                for (action, iv) in &ops {
                    self.outbox.push_back(Action::Broadcast(cancelled_result(from, &op, action, *iv)));
                }
                self.outbox.push_back(Action::CancelRecurring { rsc: op.rsc.clone(), ops });
            }
        }
        self.agents.insert(op.rsc.clone(), op.agent.clone());
        if op.interval_ms > 0 {
            self.recurring.entry(op.rsc.clone()).or_default().insert((op.action.clone(), op.interval_ms));
        } else {
            self.local_ops.entry(op.rsc.clone()).or_default().push((op.action.clone(), x.transition_key.clone()));
        }
        self.outbox.push_back(Action::Exec { op });
    }

    fn on_exec_event(&mut self, ev: xpb::OpEvent) {
        let Some(dc) = self.current_dc() else { return };
        let key = cib::xml::parse(&ev.lrm_rsc_op).ok().and_then(|d| d.root.attr("transition-key").map(str::to_string)).unwrap_or_default();
        if ev.interval_ms == 0 {
            if let Some(ops) = self.local_ops.get_mut(&ev.rsc) {
                if let Some(i) = ops.iter().position(|(a, k)| *a == ev.action && *k == key) {
                    ops.remove(i);
                }
                if ops.is_empty() {
                    self.local_ops.remove(&ev.rsc);
                }
            }
        }
        let msg = pb::OpResult {
            dc,
            transition_key: key,
            rsc: ev.rsc.clone(),
            agent: self.agents.get(&ev.rsc).cloned().unwrap_or_default(),
            lrm_rsc_op: ev.lrm_rsc_op.clone(),
            task: ev.action.clone(),
            interval_ms: ev.interval_ms,
            rc: ev.rc,
            op_status: ev.op_status,
            exit_reason: ev.exit_reason.clone(),
        };
        self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Result(msg)) }));
    }

    /// The DC: a node's result.
    fn on_result(&mut self, from: u32, r: pb::OpResult) {
        if r.dc != self.cfg.me || self.dc.is_none() {
            return;
        }
        let node = from.to_string();
        let name = self.name(from);
        if r.op_status == OP_CANCELLED {
            let op_id = format!("{}_{}_{}", r.rsc, r.task, r.interval_ms);
            self.write(records::delete_op(&node, &r.rsc, &op_id), AfterWrite::Nothing);
            return;
        }
        let parsed = records::parse_transition_key(&r.transition_key);
        let expected = parsed.map(|p| p.2).unwrap_or(0);
        let probe = r.task == "monitor" && r.interval_ms == 0;
        let rc = match r.rc {
            OCF_DEGRADED => 0,
            OCF_DEGRADED_PROMOTED => OCF_RUNNING_PROMOTED,
            x => x,
        };
        let as_expected = r.op_status == OP_DONE && rc == expected;
        // A probe that finds a resource running or stopped reports state, not a failure.
        let failure = !as_expected && !(probe && r.op_status == OP_DONE && matches!(rc, 0 | OCF_NOT_RUNNING | OCF_RUNNING_PROMOTED));
        let agent = r.agent.clone();
        let (uuid_matches, current) = {
            let d = self.dc.as_ref().expect("checked above");
            let mine = parsed.is_some_and(|p| p.3 == self.cfg.dc_uuid);
            let current = parsed.and_then(|(a, t, _, _)| {
                let e = d.engine.as_ref()?;
                (mine && e.id == t && matches!(e.state(a), Some(crate::engine::ActionState::InFlight { .. }))).then_some((t, a))
            });
            (mine, current)
        };
        // The shutdown lock the graph's action carries is recorded with its success.
        let lock = current
            .filter(|_| as_expected)
            .and_then(|(_, a)| match &self.dc.as_ref()?.engine.as_ref()?.action(a)?.kind {
                ActionKind::Rsc(op) => op.shutdown_lock,
                _ => None,
            });
        let write = match records::record_op(&node, &name, &r.rsc, &agent, &r.lrm_rsc_op, failure, lock) {
            Ok(w) => w,
            Err(e) => return tracing::warn!("a result from {name} is refused: {e}"),
        };
        let on_fail_ignore = current.and_then(|(_, a)| self.dc.as_ref()?.engine.as_ref()?.action(a).cloned()).is_some_and(|a| matches!(&a.kind, ActionKind::Rsc(op) if op.on_fail.as_deref() == Some("ignore")));
        match current {
            Some((t, a)) => self.write(write, AfterWrite::Confirm { transition: t, action: a, ok: as_expected || on_fail_ignore }),
            None => {
                self.write(write, AfterWrite::Nothing);
                // A result no graph waits for: a recurring op's later result, another DC's or
                // an older transition's. Recorded; if it is not what was expected, plan again.
                if !as_expected {
                    let d = self.dc.as_mut().expect("checked above");
                    d.dirty = true;
                    if let Some(e) = d.engine.as_mut() {
                        e.abort();
                    }
                }
                let _ = uuid_matches;
            }
        }
        if failure && !probe {
            let start_fatal = self.dc.as_ref().and_then(|d| d.engine.as_ref()).map(|e| e.graph.start_failure_is_fatal).unwrap_or(true);
            let attrs = records::failure_attrs(&r.rsc, &r.task, r.interval_ms, start_fatal, on_fail_ignore, self.now.epoch_s);
            if !attrs.is_empty() {
                self.write(records::transient_attrs(&node, &name, &attrs), AfterWrite::Nothing);
            }
        }
        if r.op_status == OP_TIMEOUT {
            tracing::warn!("{} {} on {name} timed out", r.rsc, r.task);
        }
    }

    fn on_graph(&mut self, seq: u64, graph: Option<(Graph, CibFacts)>) {
        let Some(d) = self.dc.as_mut() else { return };
        if d.scheduling != Some(seq) {
            return;
        }
        d.scheduling = None;
        let Some((graph, facts)) = graph else {
            tracing::error!("the scheduler failed; waiting for the next change");
            return;
        };
        d.seen.extend(facts.seen.iter().copied());
        d.locked = facts.locked.clone();
        // The CIB must say who the DC is and whether it has quorum (a former DC's late write
        // may have changed them): put it right, and plan from the corrected CIB.
        let (me, quorate) = (self.cfg.me, self.quorate);
        if facts.have_quorum != Some(quorate) || facts.dc_uuid.as_deref() != Some(me.to_string().as_str()) {
            tracing::info!("the CIB says have-quorum={:?} dc-uuid={:?}: writing them again", facts.have_quorum, facts.dc_uuid);
            d.quorum_written = None;
            d.dirty = true;
            return;
        }
        if d.dirty {
            // Something changed while the scheduler ran: its graph is obsolete (§3.1).
            return;
        }
        d.recheck_by = graph.recheck_by;
        d.transitions += 1;
        let id = d.transitions;
        let n = graph.actions.len();
        if n == 0 {
            tracing::info!("transition {id}: nothing to do");
            return;
        }
        tracing::info!("transition {id}: {n} actions");
        let mut e = Engine::new(id, graph, self.cfg.node_action_limit);
        let fired = e.fire(self.now.ms);
        let d = self.dc.as_mut().expect("checked above");
        d.engine = Some(e);
        d.unsent.clear();
        // Failure attributes a clear_failcount action removes: known now, from this CIB.
        d.fail_attrs = facts.fail_attrs;
        self.dispatch(fired);
    }

    fn dispatch(&mut self, fired: Vec<usize>) {
        for i in fired {
            let Some(d) = self.dc.as_ref() else { return };
            let Some(e) = d.engine.as_ref() else { return };
            let t = e.id;
            let a = e.graph.actions[i].clone();
            let stonith_timeout = e.graph.stonith_timeout_ms;
            let target = a.node.as_ref().and_then(|(name, _)| self.id_of(name));
            match &a.kind {
                ActionKind::Pseudo => {}
                ActionKind::Rsc(op) => {
                    // A node whose controller is away but may come back (its grace): the
                    // action waits for it, as Pacemaker's wait for a node's result does,
                    // until it rejoins (the graph is aborted then) or counts as lost.
                    // (Also a node in the ring whose controller this DC never saw leave: it
                    // left while this DC was in another partition.)
                    let away = target.filter(|n| d.gone.contains_key(n) || !self.seniority.members().contains(n) && self.ring.contains(n));
                    if let Some(n) = away {
                        tracing::info!("{} waits: the controller of its node is away", a.key);
                        let until = self.now.ms + self.cfg.controller_grace_ms;
                        let d = self.dc.as_mut().expect("checked");
                        d.gone.entry(n).or_insert(until);
                        d.unsent.insert(i);
                        continue;
                    }
                    let Some(target) = target.filter(|n| self.seniority.members().contains(n)) else {
                        tracing::warn!("{} cannot run: its node is not in the cluster", a.key);
                        self.confirm(t, i, false);
                        continue;
                    };
                    let key = records::transition_key(i, t, op.expected_rc, &self.cfg.dc_uuid);
                    let mut meta: std::collections::HashMap<String, String> = op.meta.clone().into_iter().collect();
                    meta.insert("transition_key".into(), key.clone());
                    meta.insert("on_node".into(), self.name(target));
                    meta.insert("on_node_uuid".into(), target.to_string());
                    if op.is_probe() {
                        meta.insert("op_target_rc".into(), op.expected_rc.to_string());
                    }
                    let req = xpb::OpRequest {
                        rsc: op.rsc.clone(),
                        agent: op.agent_spec(),
                        action: op.task.clone(),
                        params: op.params.clone().into_iter().collect(),
                        meta,
                        interval_ms: op.interval_ms,
                        timeout_ms: op.timeout_ms,
                    };
                    let msg = pb::PeerMessage { body: Some(pb::peer_message::Body::Execute(pb::Execute { to: target, transition_key: key.clone(), op: Some(req) })) };
                    // An op that may make a resource active (or promoted) somewhere is
                    // recorded as pending before it is sent: if its result is lost with
                    // the node's controller or with this DC, the CIB still says it may
                    // have run (§3.3). Pacemaker records every op pending; the others need
                    // no record for safety (a lost stop or probe is simply done again) and
                    // each record costs a CIB round trip before the op may run.
                    let may_activate = matches!(op.task.as_str(), "start" | "promote" | "migrate_to" | "migrate_from");
                    let record_pending = op.meta.get("record_pending").is_none_or(|v| cib::model::is_true(v));
                    if may_activate && record_pending {
                        let (node_id, name) = (target.to_string(), self.name(target));
                        let rec = cib::status::unfinished_op_record(&op.rsc, &op.task, op.interval_ms, &key, None, self.now.epoch_s, "halo-controld");
                        match records::record_op(&node_id, &name, &op.rsc, &op.agent_spec(), &rec.to_xml(), false, None) {
                            Ok(w) => {
                                self.dc.as_mut().expect("checked").unsent.insert(i);
                                self.write(w, AfterWrite::Send { transition: t, action: i, msg });
                            }
                            Err(e) => {
                                tracing::error!("{}: its pending record cannot be made: {e}", a.key);
                                self.confirm(t, i, false);
                            }
                        }
                        continue;
                    }
                    self.outbox.push_back(Action::Broadcast(msg));
                }
                ActionKind::Fence { action } => {
                    let Some((name, _)) = &a.node else {
                        self.confirm(t, i, false);
                        continue;
                    };
                    let failures = d.fence_failures.get(name).copied().unwrap_or(0);
                    if failures >= self.cfg.stonith_max_attempts {
                        // stonith-max-attempts: not tried again until the node rejoins or
                        // a new DC takes over; what needs it waits, the rest goes on.
                        tracing::error!("fencing {name} failed {failures} times: not tried again (stonith-max-attempts)");
                        if let Some(e) = self.dc.as_mut().and_then(|d| d.engine.as_mut()) {
                            e.give_up(i);
                        }
                        continue;
                    }
                    self.outbox.push_back(Action::Fence { transition: t, action: i, target: name.clone(), fence_action: action.clone(), timeout_ms: stonith_timeout });
                }
                ActionKind::Shutdown => {
                    // Its resources are off: the node's controller may exit (this one too,
                    // when the DC itself stops: the scheduler orders it after the others').
                    match target {
                        Some(n) if n == self.cfg.me => {
                            if self.shutting_down {
                                // The DC goes last and says so itself (§6.1 step 6): the next
                                // DC finds it down, not lost.
                                self.write(records::node_left_cleanly(&n.to_string()), AfterWrite::Nothing);
                                self.outbox.push_back(Action::Exit);
                            }
                        }
                        Some(n) => self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Shutdown(pb::Shutdown { to: n })) })),
                        None => {}
                    }
                    self.confirm(t, i, true);
                }
                ActionKind::ClearFailcount { rsc } => {
                    let node_id = a.node.as_ref().map(|(_, id)| id.clone()).unwrap_or_default();
                    let names: Vec<String> = d.fail_attrs.get(&node_id).into_iter().flatten().filter(|n| attr_is_for(n, rsc)).cloned().collect();
                    self.write(records::delete_op(&node_id, rsc, &format!("{rsc}_last_failure_0")), AfterWrite::Nothing);
                    self.write(records::delete_transient_attrs(&node_id, &names), AfterWrite::Confirm { transition: t, action: i, ok: true });
                }
            }
        }
    }

    fn confirm(&mut self, transition: u64, action: usize, ok: bool) {
        let Some(d) = self.dc.as_mut() else { return };
        let Some(e) = d.engine.as_mut().filter(|e| e.id == transition) else { return };
        if e.confirm(action, ok) && !ok {
            d.dirty = true;
        }
        let fired = e.fire(self.now.ms);
        self.dispatch(fired);
    }

    fn on_write_done(&mut self, tag: u64, result: Result<u64, String>) {
        let Some(d) = self.dc.as_mut() else { return };
        let Some(after) = d.writes.remove(&tag) else { return };
        let result_ok = result.is_ok();
        match result {
            Ok(index) => d.last_index = d.last_index.max(index),
            Err(_) if matches!(after, AfterWrite::MayBeRefused) => {}
            Err(e) => {
                tracing::error!("a status write was refused: {e}");
                d.dirty = true;
            }
        }
        self.after_write(after, result_ok);
    }

    fn on_fence_done(&mut self, transition: u64, action: usize, ok: bool, reason: &str) {
        let Some(d) = self.dc.as_ref() else { return };
        let Some(a) = d.engine.as_ref().filter(|e| e.id == transition).and_then(|e| e.action(action)).cloned() else { return };
        let Some((name, node_id)) = a.node.clone() else { return };
        if ok {
            tracing::info!("node {name} was fenced");
            self.dc.as_mut().expect("checked").fence_failures.remove(&name);
            if self.quorate && !self.writable() {
                // A quorate partition without the CIB's majority (a two-node survivor): once
                // every voter it lost is fenced, the CIB's voters shrink to those here.
                self.fenced_unrecorded.insert(node_id.clone(), name.clone());
                let fenced: BTreeSet<u32> = self.fenced_unrecorded.keys().filter_map(|i| i.parse().ok()).collect();
                let lost_all_fenced = self.cib_voters.iter().all(|v| self.ring.contains(v) || fenced.contains(v));
                let keep: Vec<u32> = self.cib_voters.iter().copied().filter(|v| self.ring.contains(v)).collect();
                if lost_all_fenced && !keep.is_empty() {
                    tracing::info!("the CIB's voters lost here are fenced: shrinking them to {keep:?}");
                    self.outbox.push_back(Action::SetCibVoters { voters: keep });
                }
            }
            self.write(records::node_fields(&node_id, &name, &[("in_ccm", "false"), ("crmd", "offline"), ("join", "down"), ("expected", "down")]), AfterWrite::Nothing);
            self.write(records::node_fenced(&node_id), AfterWrite::Confirm { transition, action, ok: true });
        } else {
            let max = self.cfg.stonith_max_attempts;
            let d = self.dc.as_mut().expect("checked");
            let n = d.fence_failures.entry(name.clone()).or_insert(0);
            *n += 1;
            tracing::error!("fencing {name} failed ({reason}); attempt {n} of {max}");
            if *n >= max {
                // Given up: the graph goes on without it and calls for no new one.
                tracing::error!("too many failures to fence {name}: giving up until it rejoins or another DC takes over");
                if let Some(e) = d.engine.as_mut() {
                    e.give_up(action);
                }
            } else {
                self.confirm(transition, action, false);
            }
        }
    }

    fn write(&mut self, write: proto::cib::WriteRequest, after: AfterWrite) {
        if self.dc.is_some() && !self.writable() {
            // No quorum here: raft cannot commit it. The join after quorum returns writes
            // every node's history instead.
            self.unwritten.push_back(after);
            return;
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        if let Some(d) = self.dc.as_mut() {
            d.writes.insert(tag, after);
        }
        self.outbox.push_back(Action::CibWrite { tag, write });
    }

    fn all_joined_strict(&self, d: &DcState) -> bool {
        let members_joined = self.seniority.members().iter().all(|m| d.joined.contains(m));
        if d.formation {
            members_joined && self.cfg.nodes.keys().all(|n| d.joined.contains(n) || d.seen.contains(n) && !self.seniority.members().contains(n))
        } else {
            members_joined
        }
    }

    fn all_joined(&self, d: &DcState) -> bool {
        self.all_joined_strict(d) || self.now.ms >= d.join_until
    }

    /// After every input: finish a done graph, and ask for a new one when due.
    fn step(&mut self) {
        self.finish_unwritten();
        let me = self.cfg.me;
        let quorate = self.writable();
        let Some(d) = self.dc.as_mut() else { return };
        // `have-quorum` is written only with quorum (a CIB without quorum takes no write;
        // the minority's DC plans from its own view, `minority_view`).
        if quorate && d.quorum_written != Some(true) {
            d.quorum_written = Some(true);
            self.write(records::cib_attrs(&me.to_string(), true), AfterWrite::Nothing);
        }
        let d = self.dc.as_mut().expect("checked");
        if let Some(outcome) = d.engine.as_ref().and_then(Engine::outcome) {
            let e = d.engine.take().expect("checked");
            tracing::info!("transition {} {:?}: {} confirmed, {} failed", e.id, outcome, e.confirmed(), e.failed());
            let replan = match outcome {
                Outcome::Complete => false,
                Outcome::Stopped => true,
                Outcome::Terminated => e.failed_to_replan() > 0,
            };
            if replan {
                d.dirty = true;
            }
        }
        let d = self.dc.as_ref().expect("checked");
        if self.seniority.dc() != Some(me) || !d.dirty || d.engine.is_some() || d.scheduling.is_some() || !d.writes.is_empty() || !self.all_joined(d) {
            return;
        }
        let minority = (!quorate).then(|| Minority { dc: me, outside: self.cfg.nodes.keys().copied().filter(|n| !self.ring.contains(n)).collect(), quorate: self.quorate });
        let seq = self.next_seq;
        self.next_seq += 1;
        let d = self.dc.as_mut().expect("checked");
        d.dirty = false;
        d.scheduling = Some(seq);
        tracing::debug!("scheduling (request {seq}, CIB index {}, quorate {quorate})", d.last_index);
        self.outbox.push_back(Action::Schedule { seq, min_index: d.last_index, minority });
    }
}

/// Whether a failure attribute name belongs to a resource (`fail-count-R#op_interval`).
fn attr_is_for(name: &str, rsc: &str) -> bool {
    ["fail-count-", "last-failure-"].iter().any(|p| name.strip_prefix(p).and_then(|r| r.strip_prefix(rsc)).is_some_and(|r| r.starts_with('#') || r.is_empty()))
}

/// The record of a recurring op this node cancelled, for the DC to forget.
fn cancelled_result(dc: u32, op: &xpb::OpRequest, action: &str, interval_ms: u64) -> pb::PeerMessage {
    pb::PeerMessage {
        body: Some(pb::peer_message::Body::Result(pb::OpResult {
            dc,
            rsc: op.rsc.clone(),
            agent: op.agent.clone(),
            task: action.to_string(),
            interval_ms,
            op_status: OP_CANCELLED,
            ..Default::default()
        })),
    }
}
