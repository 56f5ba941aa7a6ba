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
//! Bugs the simulator found are kept as named scenarios in `tests/regressions.rs`.
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
//! trace, `HALO_SIM_OPTS=no-partitions,...` changes the options (`Options::from_env`),
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
    /// Network partitions among the faults (3 nodes or more): the cluster splits in two
    /// and heals later. Drawn from their own random stream, so a seed's other faults are
    /// the same with or without them.
    pub partitions: bool,
    /// The fencer may fence the asking node itself through another node (as halo-fenced's
    /// peers do); false: a node's fencing request for itself fails.
    pub self_fencing: bool,
    /// 60 s after the faults stop, if the resources are not all placed by then, the
    /// administrator refreshes every resource (fail counts and histories deleted, so the
    /// DC probes again): start failures on every node would otherwise keep a resource
    /// stopped for good.
    /// `Report::refreshed` says when it was needed.
    pub cleanup_after_faults: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: None,
            faults: true,
            trace: false,
            fault_window_ms: None,
            liveness_ms: 300_000,
            partitions: true,
            self_fencing: true,
            cleanup_after_faults: true,
        }
    }
}

impl Options {
    /// Defaults, with `HALO_SIM_TRACE` set meaning `trace`, and `HALO_SIM_OPTS` a comma
    /// list of changes: `no-partitions`, `no-refresh`, `no-self-fencing`, `nodes=N`.
    /// Unknown words panic.
    pub fn from_env() -> Options {
        let mut o = Options { trace: std::env::var_os("HALO_SIM_TRACE").is_some(), ..Options::default() };
        for w in std::env::var("HALO_SIM_OPTS").unwrap_or_default().split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match w {
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
    /// The last lines of the run's trace.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {}: invariant {} violated at {} ms: {}", self.seed, self.invariant, self.at_ms, self.message)?;
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
    /// Virtual time from the end of the faults until every resource ran exactly once.
    pub recovery_ms: u64,
    pub steps: u64,
    /// Actions sent by a DC whose inputs were checked (invariant 4).
    pub checked_sends: u64,
    /// The administrator's refresh was needed before every resource ran once.
    pub refreshed: bool,
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
                    sim.fail("liveness: every configured resource runs exactly once", format!("{} ms after the faults stopped: {missing} ({state})", sim.now - window));
                    return Err(sim.failure.take().expect("just set"));
                }
            } else {
                return Ok(report(&sim, seed, n, resources.len(), names, window, sim.now - window));
            }
        }
    }
    if let Ok(path) = std::env::var("HALO_SIM_DUMP") {
        let _ = std::fs::write(path, sim.cib.doc.to_xml());
    }
    let state = sim.describe();
    sim.fail("liveness: every configured resource runs exactly once", format!("the simulation went idle: nothing left to happen ({state})"));
    Err(sim.failure.take().expect("just set"))
}

fn report(sim: &Sim, seed: u64, nodes: u32, resources: usize, faults: Vec<String>, fault_window_ms: u64, recovery_ms: u64) -> Report {
    Report {
        seed,
        nodes,
        resources,
        faults,
        fault_window_ms,
        recovery_ms,
        steps: sim.steps,
        checked_sends: sim.check.checked_sends,
        refreshed: sim.cleaned_up,
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
