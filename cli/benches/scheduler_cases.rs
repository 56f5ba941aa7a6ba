//! Scheduler speed over Pacemaker's regression inputs, printed as figures:
//! the largest case (params-6.xml), and the median / p90 / max over every case,
//! side by side with `crm_simulate -S` on the same files when it is installed.
//! Run: `cargo bench -p halo-cli --bench scheduler_cases`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/scheduler-cases/xml")
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// One full run as `halo simulate -S` does it: parse, schedule, render every section.
fn halo_once(src: &str, now: chrono::NaiveDateTime) -> usize {
    let cib = cib::Cib::parse(src).expect("case parses");
    let t = scheduler::schedule(&cib, now);
    t.simulate_text().len() + t.revised_text().len()
}

fn time_halo(src: &str, runs: usize) -> Duration {
    let now = chrono::Utc::now().naive_utc();
    let mut v: Vec<Duration> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(halo_once(src, now));
            t0.elapsed()
        })
        .collect();
    median(&mut v)
}

fn crm_simulate_available() -> bool {
    Command::new("crm_simulate").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn time_process(program: &str, path: &Path, runs: usize) -> Option<Duration> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut cmd = Command::new(program);
        if program != "crm_simulate" {
            cmd.arg("simulate");
        }
        let st = cmd.arg("-x").arg(path).arg("-S").stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?;
        if !st.success() {
            return None;
        }
        v.push(t0.elapsed());
    }
    Some(median(&mut v))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = cases_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("../shared/scheduler-cases/xml beside the repo")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    let oracle = crm_simulate_available();

    let big = dir.join("params-6.xml");
    let big_src = std::fs::read_to_string(&big).expect("params-6.xml");
    let halo_big = time_halo(&big_src, 21);
    println!("largest case params-6.xml ({} KB): halo {:.2} ms (median of 21; target < 50 ms)", big_src.len() / 1024, ms(halo_big));
    if oracle {
        let halo_proc = time_process(HALO, &big, 5);
        if let (Some(c), Some(h)) = (time_process("crm_simulate", &big, 3), halo_proc) {
            println!("  as processes: halo simulate -S {:.1} ms, crm_simulate -S {:.1} ms, ratio crm_simulate/halo = {:.1}x", ms(h), ms(c), ms(c) / ms(h));
        }
    }

    let mut per_case = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let d = time_halo(&src, 5);
        if d > slowest.0 {
            slowest = (d, f.file_name().unwrap().to_string_lossy().into_owned());
        }
        per_case.push(d);
    }
    let mut v = per_case.clone();
    println!(
        "all {} cases, halo per case (median of 5 runs each): median {:.3} ms, p90 {:.3} ms, max {:.2} ms ({}); target median < 10 ms",
        files.len(),
        ms(median(&mut v)),
        ms(percentile(&mut v, 0.9)),
        ms(slowest.0),
        slowest.1
    );
    if oracle {
        // Every 10th case keeps the oracle's share of the run under a minute.
        let mut halo_s = Vec::new();
        let mut crm_s = Vec::new();
        for f in files.iter().step_by(10) {
            if let (Some(c), Some(h)) = (time_process("crm_simulate", f, 1), time_process(HALO, f, 1)) {
                crm_s.push(c);
                halo_s.push(h);
            }
        }
        if !crm_s.is_empty() {
            let (mh, mc) = (median(&mut halo_s), median(&mut crm_s));
            println!(
                "sample of {} cases, as processes: halo simulate -S median {:.1} ms, crm_simulate -S median {:.1} ms, ratio {:.1}x",
                crm_s.len(),
                ms(mh),
                ms(mc),
                ms(mc) / ms(mh)
            );
        }
    } else {
        println!("crm_simulate not installed: no side-by-side figures (apt-get install pacemaker-cli-utils)");
    }
}
