//! The simulated world around the real controllers: a virtual-time event queue (grown from
//! `membership/tests/totem_sim.rs`: one seeded RNG, ordered maps, events ordered by time
//! then by insertion), the nodes (power, executor, controller process), and the driver of
//! each `controld::core::Controller` as `core.rs` writes it down: after every input the
//! actions are drained and performed in order; CIB writes go through one writer per
//! controller, in order; group messages through one sender, in order; timers through
//! `poll_timeout` / `handle_timeout`.
//!
//! The membership and process group are in `group.rs`, the CIB in `cibsim.rs`, the executor
//! in `executor.rs`, the invariants in `check.rs`.
//!
//! Faults: a killed node loses its executor and controller at once (what ran there is in
//! doubt until it is fenced, see `check.rs`) and boots again 4-30 s later with an empty
//! executor; a crashed controller is respawned 0.5-20 s later (halod) while its node and
//! executor stay; the fencer kills its target unless a random fencing failure happens or
//! no other node of the asker's side is up to run the device (the asker itself may be the
//! target: halo-fenced then runs the device through a peer); a fenced node reboots.
//!
//! Simplifications: a controller's inputs of different kinds race freely, as in the daemon,
//! but each kind keeps its order (group events, write acknowledgements); the fencer has no
//! topology, history or delay options; scheduler runs and history reads take 1-20 ms of
//! virtual time and nothing else; clean shutdown (`Input::Shutdown`) and node attributes
//! (`Input::Attribute`) are not exercised.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use controld::core::{Action, Config, Controller, Input, Now};
use proto::controld as pb;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::check::Checker;
use crate::cibsim::{ClusterSpec, SimCib};
use crate::executor::{Executor, Job, Outcome, Report};
use crate::{Failure, Options};

/// The virtual wall clock at time 0 (2026-01-01T00:00:00Z).
pub const EPOCH0: i64 = 1_767_225_600;

/// One controller process.
pub struct Ctl {
    /// Unique over the whole run (every process start gets a new one).
    pub inc: u64,
    pub core: Controller,
    pub uuid: String,
    armed: Option<u64>,
    /// The sender's queue: the time its last message goes out.
    send_at: u64,
    /// The writer's queue: writes not yet committed, the first with the time it was first
    /// offered (a write raft cannot take is offered again, 30 s at most, as the daemon's
    /// writer does).
    pub writes: VecDeque<(u64, proto::cib::WriteRequest, Option<u64>)>,
    pub writer_busy: bool,
}

pub struct Node {
    pub id: u32,
    pub name: String,
    pub up: bool,
    pub boot: u64,
    /// The membership layer counts the node in (its loss not yet detected, or formed).
    pub visible: bool,
    pub ctl: Option<Ctl>,
    /// The node's controller is a member of the controllers' process group.
    pub ctl_joined: bool,
    pub ring_view: BTreeSet<u32>,
    pub quorate_view: Option<bool>,
    pub group_view: BTreeSet<u32>,
    pub exec: Executor,
    /// The time of the last group event queued for this node (delivery is FIFO).
    pub group_at: u64,
    /// two_node's wait_for_all: both nodes seen together since this boot.
    pub wfa: bool,
    /// The last group configuration the node's controller processed (0: none yet).
    pub view: u64,
}

/// A configuration change as `Input::Confchg` carries it: members, joined, left.
pub type Confchg = (Vec<u32>, Vec<u32>, Vec<(u32, bool)>);

/// What a process-group delivery carries.
#[derive(Debug)]
pub enum Delivery {
    /// `view`: the configuration the change installs (one id per component and settle).
    Membership {
        quorate: bool,
        ring: Vec<u32>,
        confchg: Option<Confchg>,
        view: u64,
    },
    Input(Input),
}

#[derive(Debug)]
pub enum Event {
    Boot {
        node: u32,
    },
    Formed {
        node: u32,
        boot: u64,
    },
    CtlStart {
        node: u32,
        boot: u64,
    },
    GroupJoin {
        node: u32,
        inc: u64,
    },
    Kill {
        node: u32,
        why: &'static str,
    },
    Detect {
        node: u32,
        boot: u64,
    },
    CtlCrash {
        node: u32,
    },
    Order {
        node: u32,
        inc: u64,
        msg: pb::PeerMessage,
    },
    Deliver {
        node: u32,
        inc: Option<u64>,
        what: Delivery,
    },
    Wake {
        node: u32,
        inc: u64,
    },
    /// The controller's writer performs its next write.
    WriterStep {
        node: u32,
        inc: u64,
    },
    /// A write a dead writer had handed over, committed by raft anyway.
    Ghost {
        write: proto::cib::WriteRequest,
    },
    /// The membership settles (after a partition's token loss, or its healing).
    Settle,
    Partition {
        groups: Vec<BTreeSet<u32>>,
    },
    Heal,
    ExecDone {
        node: u32,
        boot: u64,
        rsc: String,
        job: u64,
        exec_ms: u64,
    },
    RecurDue {
        node: u32,
        boot: u64,
        rsc: String,
        action: String,
        interval_ms: u64,
        generation: u64,
    },
    Fence {
        node: u32,
        inc: u64,
        transition: u64,
        action: usize,
        target: String,
    },
    /// Fault: a random running resource of the node fails.
    RscFail {
        node: u32,
    },
    /// Fault on whoever is DC then: its node dies, or only its controller.
    DcFault {
        kill_node: bool,
    },
    FaultsOff,
    /// The administrator refreshes every resource.
    Cleanup,
}

/// Per-op and fencing fault rates chosen by the seed.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub op_fail: f64,
    pub op_timeout: f64,
    pub op_lost: f64,
    pub fence_fail: f64,
}

pub struct Sim {
    pub seed: u64,
    pub opts: Options,
    pub rng: SmallRng,
    pub now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    pub spec: ClusterSpec,
    pub nodes: BTreeMap<u32, Node>,
    pub cib: SimCib,
    pub check: Checker,
    pub rates: Rates,
    pub faults_on: bool,
    next_inc: u64,
    pub trace: VecDeque<String>,
    pub steps: u64,
    pub failure: Option<Failure>,
    pub partition: Option<Vec<BTreeSet<u32>>>,
    /// The administrator's refresh happened.
    pub cleaned_up: bool,
    /// Nodes whose CIB follower missed changes while cut off from the raft majority.
    pub behind: BTreeSet<u32>,
    pub next_view: u64,
}

const TRACE_KEEP: usize = 400;

impl Sim {
    pub fn new(seed: u64, opts: Options, spec: ClusterSpec, rates: Rates) -> Sim {
        let cib = SimCib::new(&spec);
        let check = Checker::default();
        let nodes = spec
            .nodes
            .iter()
            .map(|(id, name)| {
                let n = Node {
                    id: *id,
                    name: name.clone(),
                    up: false,
                    boot: 0,
                    visible: false,
                    ctl: None,
                    ctl_joined: false,
                    ring_view: BTreeSet::new(),
                    quorate_view: None,
                    group_view: BTreeSet::new(),
                    exec: Executor::default(),
                    group_at: 0,
                    wfa: false,
                    view: 0,
                };
                (*id, n)
            })
            .collect();
        Sim {
            seed,
            opts,
            rng: SmallRng::seed_from_u64(seed ^ 0x05ee_d0fc_0117),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            spec,
            nodes,
            cib,
            check,
            rates,
            faults_on: true,
            next_inc: 0,
            trace: VecDeque::new(),
            steps: 0,
            failure: None,
            partition: None,
            cleaned_up: false,
            behind: BTreeSet::new(),
            next_view: 0,
        }
    }

    pub fn log(&mut self, line: String) {
        let line = format!("{:>8} {line}", self.now);
        if self.opts.trace {
            eprintln!("{line}");
        }
        if self.trace.len() >= TRACE_KEEP {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    pub fn at(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), e);
    }

    pub fn after(&mut self, lo: u64, hi: u64, e: Event) {
        let d = self.rng.gen_range(lo..=hi);
        self.at(self.now + d, e);
    }

    pub fn now_of(&self) -> Now {
        Now { ms: self.now, epoch_s: EPOCH0 + (self.now / 1000) as i64 }
    }

    pub fn id_of(&self, name: &str) -> Option<u32> {
        self.nodes.values().find(|n| n.name == name).map(|n| n.id)
    }

    pub fn ctl_inc(&self, node: u32) -> Option<u64> {
        self.nodes.get(&node).and_then(|n| n.ctl.as_ref()).map(|c| c.inc)
    }

    /// The earliest pending event's time.
    pub fn next_time(&self) -> Option<u64> {
        self.queue.keys().next().map(|k| k.0)
    }

    /// Run one event; false when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), e)) = self.queue.pop_first() else {
            return false;
        };
        self.now = at;
        self.steps += 1;
        self.on_event(e);
        if self.failure.is_none() {
            self.check_every_step();
        }
        true
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Boot { node } => self.boot(node),
            Event::Formed { node, boot } => {
                if self.nodes[&node].up && self.nodes[&node].boot == boot {
                    self.log(format!("node {node}: in the membership"));
                    self.nodes.get_mut(&node).expect("node").visible = true;
                    self.settle();
                    self.after(5, 200, Event::CtlStart { node, boot });
                }
            }
            Event::CtlStart { node, boot } => self.start_controller(node, boot),
            Event::GroupJoin { node, inc } => {
                if self.ctl_inc(node) == Some(inc) && self.nodes[&node].visible {
                    self.nodes.get_mut(&node).expect("node").ctl_joined = true;
                    self.settle();
                }
            }
            Event::Kill { node, why } => self.kill(node, why),
            Event::Detect { node, boot } => {
                let n = self.nodes.get_mut(&node).expect("node");
                if n.boot == boot && !n.up && n.visible {
                    n.visible = false;
                    n.ctl_joined = false;
                    self.log(format!("node {node}: its loss is detected"));
                    self.settle();
                }
            }
            Event::CtlCrash { node } => self.crash_controller(node),
            Event::Order { node, inc, msg } => self.order(node, inc, msg),
            Event::Deliver { node, inc, what } => self.deliver(node, inc, what),
            Event::Wake { node, inc } => {
                let now = self.now_of();
                let Some(c) = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()).filter(|c| c.inc == inc) else {
                    return;
                };
                if c.armed != Some(now.ms) {
                    return;
                }
                c.armed = None;
                if c.core.poll_timeout().is_some_and(|t| t <= now.ms) {
                    c.core.handle_timeout(now);
                    let after = c.core.poll_timeout();
                    if after.is_some_and(|t| t <= now.ms) {
                        let st = c.core.status();
                        self.log(format!("node {node}: timer due again at once ({after:?}); DC state {:?}, joined {:?}", st.state, st.joined));
                        self.check.timer_spin(node, now.ms, after);
                    }
                    self.drain(node);
                } else {
                    self.rearm(node);
                }
            }
            Event::WriterStep { node, inc } => self.writer_step(node, inc),
            Event::Ghost { write } => {
                self.log("a write of a dead controller commits".into());
                let _ = self.commit(&write);
            }
            Event::Settle => self.settle(),
            Event::Partition { groups } => {
                self.log(format!("FAULT partition {groups:?}"));
                self.partition = Some(groups);
                self.after(1000, 3000, Event::Settle);
            }
            Event::Heal => self.heal(),
            Event::ExecDone { node, boot, rsc, job, exec_ms } => self.exec_done(node, boot, &rsc, job, exec_ms),
            Event::RecurDue { node, boot, rsc, action, interval_ms, generation } => {
                if self.nodes[&node].up && self.nodes[&node].boot == boot {
                    let outcome = self.outcome_for("monitor");
                    let j = self.nodes.get_mut(&node).expect("node").exec.due(&rsc, &action, interval_ms, generation, outcome);
                    self.begin(node, j);
                }
            }
            Event::Fence { node, inc, transition, action, target } => self.fence(node, inc, transition, action, &target),
            Event::RscFail { node } => {
                let n = &self.nodes[&node];
                let running: Vec<String> = n.exec.running().iter().cloned().collect();
                if n.up && !running.is_empty() {
                    let r = running[self.rng.gen_range(0..running.len())].clone();
                    self.log(format!("FAULT node {node}: resource {r} fails"));
                    self.nodes.get_mut(&node).expect("node").exec.crash_resource(&r);
                }
            }
            Event::DcFault { kill_node } => {
                let dc = self.nodes.values().find(|n| n.ctl.as_ref().is_some_and(|c| c.core.dc() == Some(n.id))).map(|n| n.id);
                if let Some(dc) = dc {
                    if kill_node {
                        self.kill(dc, "the DC's node dies");
                    } else {
                        self.crash_controller(dc);
                    }
                }
            }
            Event::FaultsOff => {
                self.faults_on = false;
                self.heal();
                self.log("faults stop; every node is brought back".into());
                let down: Vec<u32> = self.nodes.values().filter(|n| !n.up).map(|n| n.id).collect();
                for n in down {
                    self.after(0, 500, Event::Boot { node: n });
                }
            }
            Event::Cleanup => self.cleanup_failures(),
        }
    }

    fn boot(&mut self, node: u32) {
        let n = self.nodes.get_mut(&node).expect("node");
        if n.up {
            return;
        }
        n.up = true;
        n.boot += 1;
        n.exec = Executor::default();
        n.ctl = None;
        n.ctl_joined = false;
        n.group_view.clear();
        n.ring_view.clear();
        n.quorate_view = None;
        n.wfa = false;
        let boot = n.boot;
        self.log(format!("node {node}: boots (boot {boot})"));
        self.after(200, 1500, Event::Formed { node, boot });
    }

    fn start_controller(&mut self, node: u32, boot: u64) {
        let now = self.now_of();
        let n = &self.nodes[&node];
        if !n.up || n.boot != boot || n.ctl.is_some() {
            return;
        }
        self.next_inc += 1;
        let inc = self.next_inc;
        let uuid = format!("{:08x}-sim-{inc}", self.rng.gen::<u32>());
        let names: BTreeMap<u32, String> = self.spec.nodes.iter().cloned().collect();
        let core = Controller::new(Config::new(node, names, uuid.clone()), now);
        self.check.controller_started(inc, &uuid);
        let n = self.nodes.get_mut(&node).expect("node");
        n.ctl = Some(Ctl { inc, core, uuid, armed: None, send_at: 0, writes: VecDeque::new(), writer_busy: false });
        n.view = 0;
        n.ctl_joined = false;
        n.group_view.clear();
        n.quorate_view = None;
        n.ring_view.clear();
        self.log(format!("node {node}: controller {inc} starts"));
        // The membership's view first (the daemon asks for quorum before anything else).
        self.settle();
        self.after(1, 50, Event::GroupJoin { node, inc });
    }

    /// Power loss (a fault, or the fencer's doing).
    pub fn kill(&mut self, node: u32, why: &'static str) {
        let reachable = self.raft_reachable(node);
        let n = self.nodes.get_mut(&node).expect("node");
        if !n.up {
            return;
        }
        let running: BTreeMap<String, Option<u64>> = n.exec.running().iter().map(|r| (r.clone(), n.exec.last_call(r))).collect();
        let starting: BTreeSet<String> = n.exec.maybe_running().into_iter().filter(|r| !running.contains_key(r)).collect();
        n.up = false;
        let boot = n.boot;
        let ctl = n.ctl.take();
        n.exec = Executor::default();
        self.writes_of_the_dead(ctl, reachable);
        self.log(format!("node {node}: killed ({why}); it ran {:?}, was starting {starting:?}", running.keys().collect::<Vec<_>>()));
        self.check.node_killed(node, running, starting);
        self.after(1000, 3000, Event::Detect { node, boot });
        if self.faults_on {
            self.after(4000, 30_000, Event::Boot { node });
        }
    }

    fn crash_controller(&mut self, node: u32) {
        let n = self.nodes.get_mut(&node).expect("node");
        let Some(c) = n.ctl.take() else { return };
        n.ctl_joined = false;
        n.group_view.clear();
        let boot = n.boot;
        self.log(format!("FAULT node {node}: controller {} crashes", c.inc));
        let reachable = self.raft_reachable(node);
        self.writes_of_the_dead(Some(c), reachable);
        self.settle();
        self.after(500, 20_000, Event::CtlStart { node, boot });
    }

    /// Feed one input to a node's controller and perform what it asks.
    pub fn feed(&mut self, node: u32, input: Input) {
        let now = self.now_of();
        let Some(inc) = self.ctl_inc(node) else {
            return;
        };
        self.check.before_input(node, inc, &input);
        let before = self.nodes[&node].ctl.as_ref().map(|c| c.core.status().transitions).unwrap_or(0);
        let graph = match &input {
            Input::Graph { graph: Some((g, _)), .. } => Some(g.clone()),
            _ => None,
        };
        let c = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()).expect("controller");
        c.core.handle(now, input);
        let writable = c.core.writable();
        let after = c.core.status().transitions;
        if let Some(g) = graph.filter(|_| after > before) {
            let keys: Vec<String> =
                g.actions.iter().filter(|a| !matches!(a.kind, scheduler::graph::ActionKind::Pseudo)).map(|a| format!("{}@{}", a.key, a.node.as_ref().map_or("", |n| n.0.as_str()))).collect();
            self.log(format!("node {node}: transition {after}: {}", keys.join(" ")));
            self.check.graph_taken(inc, after, g, now.ms);
        }
        self.check.writable(inc, writable);
        self.drain(node);
    }

    fn drain(&mut self, node: u32) {
        loop {
            let Some(c) = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()) else {
                return;
            };
            let Some(a) = c.core.poll_action() else { break };
            let inc = c.inc;
            self.perform(node, inc, a);
            if self.failure.is_some() {
                return;
            }
        }
        self.rearm(node);
    }

    fn rearm(&mut self, node: u32) {
        let now = self.now;
        let Some(c) = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()) else {
            return;
        };
        let Some(t) = c.core.poll_timeout() else {
            return;
        };
        // A timer already due right after handle_timeout is the spin the checker reports;
        // it is armed again only by the next input.
        let t = t.max(now);
        if c.armed == Some(t) {
            return;
        }
        if t == now && c.armed.is_none() && self.check.spun(node, now) {
            return;
        }
        c.armed = Some(t);
        let inc = c.inc;
        self.at(t, Event::Wake { node, inc });
    }

    fn perform(&mut self, node: u32, inc: u64, a: Action) {
        match a {
            Action::Broadcast(msg) => {
                self.check.on_broadcast(inc, &msg);
                if let Some(f) = self.check.take_failure() {
                    return self.fail(f.0, f.1);
                }
                let d = self.rng.gen_range(1..=5);
                let c = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()).expect("controller");
                c.send_at = c.send_at.max(self.now + d);
                let at = c.send_at;
                self.at(at, Event::Order { node, inc, msg });
            }
            Action::CibWrite { tag, write } => {
                self.check.on_write(inc, tag, &write);
                let c = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()).expect("controller");
                c.writes.push_back((tag, write, None));
                if !c.writer_busy {
                    c.writer_busy = true;
                    self.after(1, 10, Event::WriterStep { node, inc });
                }
            }
            Action::Schedule { seq, min_index, minority } => {
                assert!(self.cib.index >= min_index, "the shared CIB is behind an acknowledged write");
                let epoch = self.now_of().epoch_s;
                let graph = self.cib.schedule(epoch, minority.as_ref());
                self.after(1, 20, Event::Deliver { node, inc: Some(inc), what: Delivery::Input(Input::Graph { seq, graph }) });
            }
            Action::ReadHistory => {
                let xml = self.nodes[&node].exec.history_xml();
                self.after(1, 5, Event::Deliver { node, inc: Some(inc), what: Delivery::Input(Input::History { xml }) });
            }
            Action::CancelRecurring { rsc, ops } => self.nodes.get_mut(&node).expect("node").exec.cancel(&rsc, &ops),
            Action::AbandonWrites => {
                // The writer drops what is queued (what it handed to the CIB already, if
                // anything, is committed: the simulated CIB commits at once when it can).
                let c = self.nodes.get_mut(&node).and_then(|n| n.ctl.as_mut()).expect("controller");
                c.writes.clear();
            }
            Action::SetCibVoters { voters } => {
                // The simulated CIB has no raft voters (it commits with quorum): the change
                // is granted as asked.
                self.after(1, 20, Event::Deliver { node, inc: Some(inc), what: Delivery::Input(Input::CibVoters { voters }) });
            }
            Action::ForgetHistory { rsc } => {
                let exec = &mut self.nodes.get_mut(&node).expect("node").exec;
                for r in &rsc {
                    exec.forget(r);
                }
            }
            Action::Exec { op } => {
                if op.action == "start" {
                    if let Some((other, call)) = self.check.start_requested(node, &op.rsc) {
                        let msg = format!(
                            "{} is started on node {node} while node {other}, which it may have run on when it died, is not fenced (the CIB {} its last op there)",
                            op.rsc,
                            if self.cib_recorded(other, &op.rsc, call) { "had recorded" } else { "never recorded" }
                        );
                        return self.fail("2: nothing recovered from a lost node before it is fenced", msg);
                    }
                }
                let outcome = self.outcome_for(&op.action);
                let j = self.nodes.get_mut(&node).expect("node").exec.submit(op, inc, outcome);
                self.begin(node, j);
            }
            Action::Fence { transition, action, target, fence_action, .. } => {
                self.check.on_fence(inc, transition, action, &target);
                if let Some(f) = self.check.take_failure() {
                    return self.fail(f.0, f.1);
                }
                self.log(format!("node {node}: fence {target} ({fence_action}), transition {transition} action {action}"));
                self.after(100, 3000, Event::Fence { node, inc, transition, action, target });
            }
            Action::Exit => {
                self.log(format!("node {node}: controller exits"));
                self.nodes.get_mut(&node).expect("node").ctl = None;
            }
            Action::StopEverythingAndDie => {
                // Its executor stops everything and halod keeps the node down: to the rest
                // of the cluster, as if it lost power once its resources stopped.
                self.kill(node, "learnt it was fenced");
            }
        }
    }

    fn outcome_for(&mut self, action: &str) -> Outcome {
        if !self.faults_on {
            return Outcome::Normal;
        }
        let r = self.rates;
        let x: f64 = self.rng.gen();
        let took = self.rng.gen_bool(0.5);
        if x < r.op_lost {
            Outcome::Lost { took }
        } else if x < r.op_lost + r.op_timeout {
            Outcome::Timeout { took }
        } else if x < r.op_lost + r.op_timeout + r.op_fail && action == "start" {
            Outcome::Fail
        } else {
            Outcome::Normal
        }
    }

    /// An op begins on the executor: its end is scheduled.
    fn begin(&mut self, node: u32, job: Option<Job>) {
        let Some(j) = job else { return };
        let boot = self.nodes[&node].boot;
        let exec_ms = match j.outcome {
            Outcome::Timeout { .. } => j.req.timeout_ms.max(1000),
            _ if matches!(j.req.action.as_str(), "start" | "stop") => self.rng.gen_range(10..=1000),
            _ => self.rng.gen_range(5..=200),
        };
        if j.outcome != Outcome::Normal {
            self.log(format!("FAULT node {node}: {} {} {} will end {:?}", j.req.rsc, j.req.action, j.req.interval_ms, j.outcome));
        }
        self.at(self.now + exec_ms, Event::ExecDone { node, boot, rsc: j.req.rsc.clone(), job: j.id, exec_ms });
    }

    fn exec_done(&mut self, node: u32, boot: u64, rsc: &str, job: u64, exec_ms: u64) {
        if !self.nodes[&node].up || self.nodes[&node].boot != boot {
            return;
        }
        let epoch = self.now_of().epoch_s as u64;
        let (report, rearm, next) = self.nodes.get_mut(&node).expect("node").exec.complete(rsc, job, exec_ms, epoch);
        if let Some((action, interval_ms, generation)) = rearm {
            self.at(self.now + interval_ms, Event::RecurDue { node, boot, rsc: rsc.to_string(), action, interval_ms, generation });
        }
        match report {
            Some(Report::Requester(inc, ev)) => {
                self.log(format!("node {node}: {} {} rc {} status {}", ev.rsc, ev.action, ev.rc, ev.op_status));
                self.after(0, 2, Event::Deliver { node, inc: Some(inc), what: Delivery::Input(Input::ExecEvent(ev)) });
            }
            Some(Report::Subscribers(ev)) => {
                self.log(format!("node {node}: {} {}_{} rc {} status {}", ev.rsc, ev.action, ev.interval_ms, ev.rc, ev.op_status));
                self.after(0, 2, Event::Deliver { node, inc: None, what: Delivery::Input(Input::ExecEvent(ev)) });
            }
            None => {}
        }
        self.begin(node, next);
    }

    fn fence(&mut self, node: u32, inc: u64, transition: u64, action: usize, target: &str) {
        let asker_alive = self.ctl_inc(node) == Some(inc);
        let Some(t) = self.id_of(target) else { return };
        // The fencer of the asker runs the device through another node's fencer when the
        // target is the asker itself (fenced/src/peers.rs: "never the target itself").
        let helper = self.nodes.values().any(|n| n.id != t && n.up && n.visible && self.connected(n.id, node));
        let (ok, reason) = if !helper {
            (false, "no other node can run the fence device".to_string())
        } else if !self.nodes[&node].up {
            (false, "the asker died".to_string())
        } else if t == node && !self.opts.self_fencing {
            (false, "a node does not fence itself".to_string())
        } else if self.faults_on && self.rng.gen_bool(self.rates.fence_fail) {
            (false, "the fence device failed (simulated)".to_string())
        } else {
            (true, String::new())
        };
        if ok {
            self.log(format!("node {t} fenced (asked by node {node})"));
            if self.nodes[&t].up {
                self.kill(t, "fenced");
                // A fenced node reboots, faults or not.
                if !self.faults_on {
                    self.after(4000, 30_000, Event::Boot { node: t });
                }
            }
            self.check.node_fenced(t);
        } else {
            self.log(format!("fencing {target} failed: {reason}"));
        }
        self.check.fence_result(inc, t, ok);
        if asker_alive && self.ctl_inc(node) == Some(inc) {
            self.feed(node, Input::FenceDone { transition, action, ok, reason });
        }
    }

    /// Each live node's controller as its status says: DC, order, quorum, DC state.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.up)
            .map(|n| match &n.ctl {
                Some(c) => {
                    let st = c.core.status();
                    format!("node {}: dc {} order {:?} quorate {} state {:?}", n.id, st.dc, st.seniority, st.quorate, st.state)
                }
                None => format!("node {}: no controller", n.id),
            })
            .collect();
        parts.join("; ")
    }

    /// A violation (the first one ends the run).
    pub fn fail(&mut self, invariant: &'static str, message: String) {
        if self.failure.is_none() {
            self.log(format!("VIOLATION {invariant}: {message}"));
            self.failure = Some(Failure { seed: self.seed, at_ms: self.now, invariant, message, trace: self.trace.iter().cloned().collect() });
        }
    }
}
