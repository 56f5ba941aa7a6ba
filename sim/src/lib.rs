//! halo-sim: a seeded whole-cluster simulator (BLUEPRINT "Style" rule 4; TigerBeetle's
//! VOPR, FoundationDB's simulation). It runs the REAL `controld::core::Controller` of 2 to
//! 5 nodes, the real CIB operations and the real scheduler, and simulates deterministically
//! what surrounds them: the membership layer and the controllers' process group
//! (`group.rs`), the CIB's replication (`cibsim.rs`), the executors and their agents
//! (`executor.rs`), the fencer and the nodes' power (`world.rs`). Faults are chosen by the
//! seed: node kills and reboots, controller crashes, the DC's loss, resources that fail,
//! agents that fail, hang until the executor's timeout or whose result is lost, fencing
//! failures, network partitions (3 nodes or more). Invariants are checked after every
//! step (`check.rs`); after the faults stop, every node is brought back and every
//! configured resource must run exactly once within `Options::liveness_ms`.
//!
//! Controller bugs the simulator found are named here (`KNOWN_BUG_*`): a violation it can
//! attribute to one of them ends the run as tolerated (`Options::tolerate_known_bugs`,
//! `Report::tolerated`) so that the seed suite keeps guarding everything else; the
//! scenarios are kept in `tests/regressions.rs`. Bugs whose check is off by default (B,
//! D, E) are counted in the `Report`.
//!
//! ```no_run
//! let seed = sim::seed_from_env().unwrap_or(7);
//! match sim::run(seed, &sim::Options::default()) {
//!     Ok(report) => println!("{report:?}"),
//!     Err(failure) => panic!("{failure}"),
//! }
//! ```
//!
//! A run is a pure function of its seed and options: one `SmallRng`, ordered maps, virtual
//! time. `HALO_SIM_SEED=N` replays seed N (`seed_from_env`), `HALO_SIM_TRACE=1` prints its
//! trace, `HALO_SIM_OPTS=strict,replan-storm,...` changes the options (`Options::from_env`),
//! `HALO_SIM_DUMP=FILE` writes the CIB to FILE when liveness fails.
//!
//! Not simulated: raft (the CIB is one document, see `cibsim.rs`), totem's packets (the
//! membership is modelled at the level of its configuration changes), message loss
//! inside the group, clean shutdown, node attributes, promotable and clone resources.

pub mod check;
pub mod cibsim;
pub mod executor;
pub mod group;
pub mod world;

use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cibsim::ClusterSpec;
use crate::world::{Event, Rates, Sim};

#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes in the cluster (2..=5); None: chosen by the seed.
    pub nodes: Option<u32>,
    /// Faults at all (false: a clean formation and placement only).
    pub faults: bool,
    /// Print the trace to stderr as the run goes.
    pub trace: bool,
    /// How long faults happen (virtual ms); None: chosen by the seed (60-150 s).
    pub fault_window_ms: Option<u64>,
    /// After the faults stop: how long (virtual ms) until every resource must run once.
    pub liveness_ms: u64,
    /// Invariant 2 also covers starts that were under way on a node that died.
    pub check_pending_starts: bool,
    /// Invariant 5 (a timer due again right after `handle_timeout`) fails the run.
    pub check_timer_spin: bool,
    /// Invariant 6 (more than 20 transitions within a second by one DC) fails the run.
    pub check_replan_storm: bool,
    /// Network partitions among the faults (3 nodes or more): the cluster splits in two
    /// and heals later. Drawn from their own random stream, so a seed's other faults are
    /// the same with or without them.
    pub partitions: bool,
    /// The fencer may fence the asking node itself through another node (as halo-fenced's
    /// peers do); false: a node's fencing request for itself fails.
    pub self_fencing: bool,
    /// Invariant 7 (more consecutive fencing attempts than `stonith-max-attempts`) fails
    /// the run.
    pub check_fence_attempts: bool,
    /// A violation attributed to a known controller bug (`Failure::known_bug`) ends the
    /// run as tolerated (counted in `Report::tolerated`) instead of failing it.
    pub tolerate_known_bugs: bool,
    /// 60 s after the faults stop, if the resources are not all placed by then, the
    /// administrator refreshes every resource (fail counts and histories deleted, so the
    /// DC probes again): start failures on every node would otherwise keep a resource
    /// stopped for good, and a stale monitor record hides a failure (scheduler bug C).
    /// `Report::refreshed` says when it was needed.
    pub cleanup_after_faults: bool,
}

/// Known controller bug A: the DC records nothing for an action it sent until its result
/// arrives, and nothing when it gives the action up (its timer, a lost node or controller):
/// no pending record, no synthesized timeout record (CONTROLLER-NOTES §3.3, catalogue
/// item 15). The scheduler then believes a resource that was (or may have been) started
/// is stopped, and starts it elsewhere: twice active, or recovered before its node is
/// fenced. Attributed when the CIB lacks the node's last record of the resource.
pub const KNOWN_BUG_A: &str = "A: no record of an action whose result the DC did not get";

/// Known controller bug F (seniority): when every member that knew the order leaves (dies)
/// before announcing it, the members left are all newcomers without a basis; none ever
/// announces and no DC is ever agreed. Attributed when liveness fails while every live
/// controller is quorate and none has an agreed order.
pub const KNOWN_BUG_F: &str = "F: no DC is ever agreed once every member that knew the order is gone";

/// Known controller bug G: a deposed DC's status writes, offered again by its writer for
/// up to 30 s while raft has no leader for it (a minority partition), commit after the
/// partition heals and overwrite the current DC's; `have-quorum="0"` then stays, since the
/// current DC rewrites it only when its own quorum changes, and the scheduler
/// (`no-quorum-policy=stop`) stops everything. Attributed when liveness fails while the
/// CIB says `have-quorum="0"` and a quorate DC is agreed.
pub const KNOWN_BUG_G: &str = "G: a deposed DC's late write leaves have-quorum=0 in the CIB";

/// The known bug a liveness failure is attributed to, if any.
fn liveness_known_bug(sim: &Sim) -> Option<&'static str> {
    let ctls: Vec<&controld::core::Controller> = sim.nodes.values().filter(|n| n.up).filter_map(|n| n.ctl.as_ref()).map(|c| &c.core).collect();
    if !ctls.is_empty() && ctls.iter().all(|c| c.dc().is_none() && c.status().quorate) {
        return Some(KNOWN_BUG_F);
    }
    let quorate_dc = sim.nodes.values().any(|n| n.up && n.ctl.as_ref().is_some_and(|c| c.core.dc() == Some(n.id) && c.core.status().quorate));
    (quorate_dc && sim.cib.doc.root.attr("have-quorum") == Some("0")).then_some(KNOWN_BUG_G)
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: None,
            faults: true,
            trace: false,
            fault_window_ms: None,
            liveness_ms: 300_000,
            check_pending_starts: false,
            check_timer_spin: false,
            check_replan_storm: false,
            partitions: true,
            self_fencing: true,
            check_fence_attempts: false,
            tolerate_known_bugs: true,
            cleanup_after_faults: true,
        }
    }
}

impl Options {
    /// Defaults, with `HALO_SIM_TRACE` set meaning `trace`, and `HALO_SIM_OPTS` a comma
    /// list of changes: `strict` (no known bug tolerated), `timer-spin`, `replan-storm`,
    /// `fence-attempts`, `pending-starts` (the optional checks), `no-partitions`,
    /// `no-refresh`, `no-self-fencing`, `nodes=N`. Unknown words panic.
    pub fn from_env() -> Options {
        let mut o = Options { trace: std::env::var_os("HALO_SIM_TRACE").is_some(), ..Options::default() };
        for w in std::env::var("HALO_SIM_OPTS").unwrap_or_default().split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match w {
                "strict" => o.tolerate_known_bugs = false,
                "timer-spin" => o.check_timer_spin = true,
                "replan-storm" => o.check_replan_storm = true,
                "fence-attempts" => o.check_fence_attempts = true,
                "pending-starts" => o.check_pending_starts = true,
                "no-partitions" => o.partitions = false,
                "no-refresh" => o.cleanup_after_faults = false,
                "no-self-fencing" => o.self_fencing = false,
                _ => match w.strip_prefix("nodes=").and_then(|n| n.parse().ok()) {
                    Some(n) => o.nodes = Some(n),
                    None => panic!("HALO_SIM_OPTS: unknown option {w:?}"),
                },
            }
        }
        o
    }
}

/// `HALO_SIM_SEED`, if set.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("HALO_SIM_SEED").ok().map(|s| s.trim().parse().expect("HALO_SIM_SEED is a number"))
}

/// A violated invariant (or liveness): everything needed to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub at_ms: u64,
    pub invariant: &'static str,
    pub message: String,
    /// The known controller bug the violation is attributed to, if any.
    pub known_bug: Option<&'static str>,
    /// The last lines of the run's trace.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {}: invariant {} violated at {} ms: {}", self.seed, self.invariant, self.at_ms, self.message)?;
        if let Some(b) = self.known_bug {
            writeln!(f, "  (known bug {b})")?;
        }
        let skip = self.trace.len().saturating_sub(60);
        for l in &self.trace[skip..] {
            writeln!(f, "  {l}")?;
        }
        write!(f, "seed {}: replay with HALO_SIM_SEED={} (HALO_SIM_TRACE=1 for the whole trace)", self.seed, self.seed)
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub nodes: u32,
    pub resources: usize,
    /// The scheduled faults, as "time: what".
    pub faults: Vec<String>,
    pub fault_window_ms: u64,
    /// Virtual time from the end of the faults until every resource ran exactly once
    /// (0 when the run ended on a tolerated violation).
    pub recovery_ms: u64,
    pub steps: u64,
    /// The violation attributed to a known bug that ended the run, if any.
    pub tolerated: Option<Failure>,
    /// Replan storms seen (more than 20 transitions within a second by one DC).
    pub storms: u64,
    /// Timers due again right after `handle_timeout`.
    pub timer_spins: u64,
    /// Actions sent by a DC whose inputs were checked (invariant 4).
    pub checked_sends: u64,
    /// The administrator's refresh was needed before every resource ran once.
    pub refreshed: bool,
    /// Fencing requests beyond `stonith-max-attempts` in a row for one target (bug D).
    pub fence_retries_beyond_max: u64,
}

/// The cluster and fault plan of a seed.
fn plan(seed: u64, opts: &Options) -> (ClusterSpec, Rates, u64, Vec<(u64, Event, String)>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let n = opts.nodes.unwrap_or_else(|| rng.gen_range(2..=5)).clamp(2, 5);
    let nodes: Vec<(u32, String)> = (1..=n).map(|i| (i, format!("node{i}"))).collect();
    let dummies: Vec<String> = (1..=rng.gen_range(2..=6)).map(|i| format!("d{i}")).collect();
    let stickiness = [0, 0, 100][rng.gen_range(0..3)];
    let mut preferences = Vec::new();
    for d in &dummies {
        if rng.gen_bool(0.3) {
            preferences.push((d.clone(), format!("node{}", rng.gen_range(1..=n))));
        }
    }
    let spec = ClusterSpec { nodes, dummies, stickiness, preferences };
    let pick = |rng: &mut SmallRng, choices: &[f64]| choices[rng.gen_range(0..choices.len())];
    let rates = Rates {
        op_fail: pick(&mut rng, &[0.0, 0.02, 0.05]),
        op_timeout: pick(&mut rng, &[0.0, 0.0, 0.01, 0.03]),
        op_lost: pick(&mut rng, &[0.0, 0.0, 0.01, 0.03]),
        fence_fail: pick(&mut rng, &[0.0, 0.1, 0.3]),
    };
    let window = opts.fault_window_ms.unwrap_or_else(|| rng.gen_range(60_000..=150_000));
    let mut events = Vec::new();
    if opts.faults {
        for _ in 0..rng.gen_range(0..=6) {
            let at = rng.gen_range(3_000..window);
            let node = rng.gen_range(1..=n);
            let (e, what) = match rng.gen_range(0..10) {
                0..=2 => (Event::Kill { node, why: "fault" }, format!("kill node {node}")),
                3 => (Event::DcFault { kill_node: true }, "kill the DC's node".to_string()),
                4 => (Event::DcFault { kill_node: false }, "crash the DC's controller".to_string()),
                5 => (Event::CtlCrash { node }, format!("crash node {node}'s controller")),
                _ => (Event::RscFail { node }, format!("a resource of node {node} fails")),
            };
            events.push((at, e, what));
        }
    }
    if opts.faults && opts.partitions && n >= 3 {
        let mut prng = SmallRng::seed_from_u64(seed ^ 0x9a27_1710);
        for _ in 0..prng.gen_range(0..=2) {
            let at = prng.gen_range(3_000..window.saturating_sub(5_000).max(3_001));
            let mut a = BTreeSet::new();
            let mut b = BTreeSet::new();
            for id in 1..=n {
                if prng.gen_bool(0.5) {
                    a.insert(id);
                } else {
                    b.insert(id);
                }
            }
            if a.is_empty() || b.is_empty() {
                continue;
            }
            let heal = (at + prng.gen_range(3_000..40_000)).min(window);
            events.push((at, Event::Partition { groups: vec![a.clone(), b.clone()] }, format!("partition {a:?} | {b:?}")));
            events.push((heal, Event::Heal, "heal the partition".to_string()));
        }
    }
    let rates = if opts.faults { rates } else { Rates { op_fail: 0.0, op_timeout: 0.0, op_lost: 0.0, fence_fail: 0.0 } };
    (spec, rates, window, events)
}

/// Run one seed: Ok with what happened, or the first invariant violated.
pub fn run(seed: u64, opts: &Options) -> Result<Report, Failure> {
    let (spec, rates, window, faults) = plan(seed, opts);
    let n = spec.nodes.len() as u32;
    let resources = spec.resources();
    let mut sim = Sim::new(seed, opts.clone(), spec, rates);
    sim.log(format!("seed {seed}: {n} nodes, resources {resources:?}, rates {rates:?}, faults until {window} ms"));
    for id in 1..=n {
        let at = sim.rng.gen_range(0..500);
        sim.at(at, Event::Boot { node: id });
    }
    let mut names = Vec::new();
    for (at, e, what) in faults {
        names.push(format!("{at}: {what}"));
        sim.at(at, e);
    }
    sim.at(window, Event::FaultsOff);
    let cleanup_at = window + 60_000;
    names.sort_by_key(|f| f.split(':').next().and_then(|t| t.parse::<u64>().ok()));
    let deadline = window + opts.liveness_ms;
    let mut next_check = window;
    const MAX_STEPS: u64 = 5_000_000;
    while sim.step() {
        if let Some(f) = sim.failure.take() {
            if f.known_bug.is_some() && opts.tolerate_known_bugs {
                return Ok(report(&sim, seed, n, resources.len(), names, window, 0, Some(f)));
            }
            return Err(f);
        }
        if sim.steps > MAX_STEPS {
            sim.fail("runaway", format!("more than {MAX_STEPS} steps"));
            return Err(sim.failure.take().expect("just set"));
        }
        if sim.now >= next_check && sim.next_time().is_none_or(|t| t > sim.now) {
            next_check = sim.now + 1000;
            if opts.cleanup_after_faults && !sim.cleaned_up && sim.now >= cleanup_at && liveness_gap(&sim, &resources).is_some() {
                sim.at(sim.now, Event::Cleanup);
                continue;
            }
            if let Some(missing) = liveness_gap(&sim, &resources) {
                if sim.now > deadline {
                    if let Ok(path) = std::env::var("HALO_SIM_DUMP") {
                        let _ = std::fs::write(path, sim.cib.doc.to_xml());
                    }
                    let state = sim.describe();
                    let known = liveness_known_bug(&sim);
                    sim.fail_known("liveness: every configured resource runs exactly once", format!("{} ms after the faults stopped: {missing} ({state})", sim.now - window), known);
                    let f = sim.failure.take().expect("just set");
                    if known.is_some() && opts.tolerate_known_bugs {
                        return Ok(report(&sim, seed, n, resources.len(), names, window, 0, Some(f)));
                    }
                    return Err(f);
                }
            } else {
                return Ok(report(&sim, seed, n, resources.len(), names, window, sim.now - window, None));
            }
        }
    }
    if let Ok(path) = std::env::var("HALO_SIM_DUMP") {
        let _ = std::fs::write(path, sim.cib.doc.to_xml());
    }
    let state = sim.describe();
    let known = liveness_known_bug(&sim);
    sim.fail_known("liveness: every configured resource runs exactly once", format!("the simulation went idle: nothing left to happen ({state})"), known);
    let f = sim.failure.take().expect("just set");
    if known.is_some() && opts.tolerate_known_bugs {
        return Ok(report(&sim, seed, n, resources.len(), names, window, 0, Some(f)));
    }
    Err(f)
}

#[allow(clippy::too_many_arguments)]
fn report(sim: &Sim, seed: u64, nodes: u32, resources: usize, faults: Vec<String>, fault_window_ms: u64, recovery_ms: u64, tolerated: Option<Failure>) -> Report {
    Report {
        seed,
        nodes,
        resources,
        faults,
        fault_window_ms,
        recovery_ms,
        steps: sim.steps,
        tolerated,
        storms: sim.check.storms,
        timer_spins: sim.check.spin_count,
        checked_sends: sim.check.checked_sends,
        refreshed: sim.cleaned_up,
        fence_retries_beyond_max: sim.check.fence_retries,
    }
}

/// None when every resource runs exactly once on a live node; else what is wrong.
fn liveness_gap(sim: &Sim, resources: &[String]) -> Option<String> {
    let mut wrong = Vec::new();
    let away: Vec<u32> = sim.nodes.values().filter(|n| !(n.up && n.ctl_joined)).map(|n| n.id).collect();
    if !away.is_empty() {
        wrong.push(format!("nodes {away:?} are not back"));
    }
    for r in resources {
        let on: Vec<u32> = sim.nodes.values().filter(|n| n.up && n.exec.running().contains(r)).map(|n| n.id).collect();
        if on.len() != 1 {
            wrong.push(format!("{r} runs on {on:?}"));
        }
    }
    (!wrong.is_empty()).then(|| wrong.join(", "))
}
