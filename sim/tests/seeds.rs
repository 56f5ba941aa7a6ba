//! The whole-cluster simulator over many seeds (see `sim/src/lib.rs`).
//!
//! `HALO_SIM_SEED=N` replays one seed (with `HALO_SIM_TRACE=1`, its whole trace);
//! `HALO_SIM_SEEDS=N` sets how many seeds the normal test runs (default 500);
//! the long run (10,000 seeds) is `cargo test --release -p halo-sim -- --ignored long_run`
//! (`HALO_SIM_FROM=N` starts it at seed N).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Run seeds `from..to` on `threads` threads; the failures, in seed order.
fn run_seeds(from: u64, to: u64, threads: u64, opts: &sim::Options) -> (Vec<sim::Failure>, Vec<sim::Report>) {
    let next = AtomicU64::new(from);
    let failures = Mutex::new(Vec::new());
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= to {
                    return;
                }
                match std::panic::catch_unwind(|| sim::run(seed, opts)) {
                    Ok(Ok(r)) => reports.lock().unwrap().push(r),
                    Ok(Err(f)) => failures.lock().unwrap().push(f),
                    Err(p) => {
                        let message = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                        failures.lock().unwrap().push(sim::Failure { seed, at_ms: 0, invariant: "the simulator panicked", message, trace: Vec::new() });
                    }
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap();
    f.sort_by_key(|f| f.seed);
    let mut r = reports.into_inner().unwrap();
    r.sort_by_key(|r| r.seed);
    (f, r)
}

fn threads() -> u64 {
    std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(2).min(4)
}

fn summarize(what: &str, count: u64, started: Instant, failures: &[sim::Failure], reports: &[sim::Report]) {
    let mut rec: Vec<u64> = reports.iter().map(|r| r.recovery_ms).collect();
    let refreshed = reports.iter().filter(|r| r.refreshed).count();
    eprintln!("{what}: {refreshed} runs needed the administrator's refresh to place every resource");
    rec.sort_unstable();
    let steps: u64 = reports.iter().map(|r| r.steps).sum();
    let faults: usize = reports.iter().map(|r| r.faults.len()).sum();
    let sends: u64 = reports.iter().map(|r| r.checked_sends).sum();
    if !rec.is_empty() {
        eprintln!(
            "{what}: {count} seeds in {:.1?} ({} failed); {faults} scheduled faults, {steps} steps, {sends} actions sent by DCs checked against their graphs; all resources placed after the faults in median {} ms, max {} ms",
            started.elapsed(),
            failures.len(),
            rec[rec.len() / 2],
            rec[rec.len() - 1]
        );
    }
    for f in failures.iter().take(3) {
        eprintln!("{f}\n");
    }
    let seeds: Vec<String> = failures.iter().map(|f| format!("{} ({})", f.seed, f.invariant)).collect();
    assert!(failures.is_empty(), "{what}: {} of {count} seeds failed: {}; replay one with HALO_SIM_SEED=<seed>", failures.len(), seeds.join(", "));
}

#[test]
fn seeds() {
    let opts = sim::Options::from_env();
    if let Some(seed) = sim::seed_from_env() {
        match sim::run(seed, &opts) {
            Ok(r) => eprintln!("{r:?}"),
            Err(f) => panic!("{f}"),
        }
        return;
    }
    let count: u64 = std::env::var("HALO_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let t0 = Instant::now();
    let (failures, reports) = run_seeds(0, count, threads(), &opts);
    summarize("seeds", count, t0, &failures, &reports);
}

#[test]
fn clean_formation_places_everything() {
    let opts = sim::Options { faults: false, ..sim::Options::from_env() };
    for nodes in 2..=5 {
        let r = sim::run(1000 + nodes as u64, &sim::Options { nodes: Some(nodes), ..opts.clone() }).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(r.nodes, nodes);
    }
}

#[test]
fn a_seed_replays_exactly() {
    let opts = sim::Options::default();
    for seed in [3, 17] {
        let a = format!("{:?}", sim::run(seed, &opts).map_err(|f| (f.at_ms, f.message)));
        let b = format!("{:?}", sim::run(seed, &opts).map_err(|f| (f.at_ms, f.message)));
        assert_eq!(a, b, "seed {seed} ran twice differently");
    }
}

#[test]
#[ignore = "long run: 10,000 seeds"]
fn long_run() {
    let count: u64 = std::env::var("HALO_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let from: u64 = std::env::var("HALO_SIM_FROM").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let t0 = Instant::now();
    let (failures, reports) = run_seeds(from, from + count, threads(), &sim::Options::from_env());
    summarize("long run", count, t0, &failures, &reports);
}
