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

mod execute;
mod join;
mod transition;

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
    /// A fencing operation ended in this partition (the fencer's notice): `target` was
    /// fenced (`ok`) or not, with `action`, run by `executioner` for `origin`.
    FencingEnded { target: String, action: String, ok: bool, executioner: String, origin: String },
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
    /// This node was fenced while it still runs (`fence-reaction=stop`): the driver has the
    /// executor stop every resource at once, then exits fatally so that halod stops the
    /// node and keeps it down. The core does nothing more.
    StopEverythingAndDie,
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
    /// This DC stops with its node: it exits when its current transition is done.
    exit_after_transition: bool,
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
    /// The cluster fenced this node while it runs: it stops everything and takes no input.
    fenced: bool,
    /// This node's dampened attributes, handed to every DC it joins.
    own_damped: crate::attrs::OwnDamped,
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
            exit_after_transition: false,
            ring: BTreeSet::new(),
            joined_to: None,
            recurring: BTreeMap::new(),
            agents: BTreeMap::new(),
            local_ops: BTreeMap::new(),
            seen_other_dc: false,
            last_dc: None,
            shutting_down: false,
            fenced: false,
            own_damped: Default::default(),
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
        if self.fenced {
            return;
        }
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
            Input::FencingEnded { target, action, ok, executioner, origin } => {
                // Pacemaker's fence-reaction=stop (its default; "panic", a reboot, is not
                // offered): the rest of the cluster now recovers this node's resources, so
                // they must not run here a moment longer. An "on" is no such news.
                if ok && action != "on" && target == names_of(&self.cfg.nodes, self.cfg.me) {
                    tracing::error!("we were allegedly just fenced by {executioner} for {origin}: stopping every resource here, then this node stays down");
                    self.fenced = true;
                    self.dc = None;
                    self.outbox.clear();
                    self.outbox.push_back(Action::StopEverythingAndDie);
                    return;
                }
                if ok && action != "on" {
                    self.on_fenced_elsewhere(&target, &executioner, &origin);
                }
            }
            Input::Forget(f) => self.outbox.push_back(Action::Broadcast(pb::PeerMessage { body: Some(pb::peer_message::Body::Forget(f)) })),
            Input::Attribute(mut a) => {
                if a.node == 0 {
                    a.node = self.cfg.me;
                }
                if a.node == self.cfg.me {
                    self.own_damped.note(&a);
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
        if self.fenced {
            return None;
        }
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
        if self.fenced {
            return;
        }
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
        if self.exit_after_transition && self.dc.is_none() {
            // No longer DC: there is no transition of its own left to finish.
            self.exit_after_transition = false;
            self.outbox.push_back(Action::Exit);
            return;
        }
        let me = self.cfg.me;
        let quorate = self.writable();
        let Some(d) = self.dc.as_mut() else { return };
        // `have-quorum` is written only with quorum (a CIB without quorum takes no write;
        // the minority's DC plans from its own view, `minority_view`).
        if quorate && d.quorum_written != Some(true) {
            d.quorum_written = Some(true);
            self.write(records::cib_attrs(&me.to_string(), true), AfterWrite::Nothing);
            self.write(records::dc_properties(records::DC_VERSION), AfterWrite::Nothing);
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
        if self.exit_after_transition {
            if self.dc.as_ref().is_some_and(|d| d.engine.is_none()) {
                self.exit_after_transition = false;
                tracing::info!("the stopping DC's last transition is done: exiting");
                self.outbox.push_back(Action::Exit);
            }
            return;
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
