//! The executor with real agents: Debian's resource-agents (ocf:heartbeat:Dummy,
//! ocf:pacemaker:Dummy, ocf:pacemaker:Stateful, ocf:heartbeat:anything) unmodified, and
//! small shell agents written by the tests for hangs, timing and parameter passing.
//! The resource-agents tests are skipped, with a note, where the package is missing
//! (`.ci/run` installs it).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use execd::agent::{AgentDirs, AgentSpec};
use execd::executor::{Executor, OpEvent};
use execd::rc::OpStatus;
use execd::run::{run_op, ExecEnv, OpRequest};

struct Bench {
    dir: tempfile::TempDir,
    env: ExecEnv,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let rsctmp = dir.path().join("rsctmp");
        std::fs::create_dir_all(&rsctmp).unwrap();
        std::fs::create_dir_all(dir.path().join("agents/ocf/test")).unwrap();
        let env = ExecEnv {
            cluster_tools: None,
            dirs: AgentDirs {
                ocf_root: PathBuf::from("/usr/lib/ocf"),
                halo: Some(dir.path().join("agents")),
                initd: dir.path().join("init.d"),
                fence: dir.path().join("sbin"),
            },
            rsctmp,
            workdir: PathBuf::from("/"),
            node_name: "node1".into(),
            systemd: execd::systemd::Systemd { systemctl: dir.path().join("systemctl"), runtime_dir: dir.path().join("run-systemd") },
            fencer: None,
        };
        Bench { dir, env }
    }

    /// A shell agent `ocf:test:NAME`.
    fn agent(&self, name: &str, body: &str) {
        let p = self.dir.path().join("agents/ocf/test").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn req(rsc: &str, agent: &str, action: &str, params: &[(&str, &str)]) -> OpRequest {
    OpRequest {
        rsc: rsc.into(),
        agent: AgentSpec::parse(agent).unwrap(),
        action: action.into(),
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        meta: BTreeMap::new(),
        interval_ms: 0,
        timeout_ms: 20_000,
    }
}

fn have_resource_agents() -> bool {
    let ok = Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").exists() && Path::new("/usr/lib/ocf/resource.d/pacemaker/Stateful").exists();
    if !ok {
        eprintln!("skipped: resource-agents / pacemaker's agents are not installed (apt-get install resource-agents pacemaker)");
    }
    ok
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

async fn rcs(ex: &Executor, rsc: &str, agent: &str, params: &[(&str, &str)], actions: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for a in actions {
        let e = ex.exec(req(rsc, agent, a, params)).await;
        assert_eq!(e.record.status, OpStatus::Done, "{agent} {a}: {:?}", e);
        out.push(e.record.rc);
    }
    out
}

#[tokio::test]
async fn resource_agents_run_unmodified() {
    if !have_resource_agents() {
        return;
    }
    let b = Bench::new();
    let ex = Executor::new(b.env.clone(), 8);
    let st = b.path("d.state");
    let st = st.to_str().unwrap();
    for agent in ["ocf:heartbeat:Dummy", "ocf:pacemaker:Dummy"] {
        let got = rcs(&ex, "d", agent, &[("state", st)], &["monitor", "start", "start", "monitor", "stop", "stop", "monitor"]).await;
        assert_eq!(got, [7, 0, 0, 0, 0, 0, 7], "{agent}");
    }
    let ss = b.path("s.state");
    let got = rcs(&ex, "s", "ocf:pacemaker:Stateful", &[("state", ss.to_str().unwrap())], &["monitor", "start", "monitor", "promote", "monitor", "demote", "monitor", "stop", "monitor"]).await;
    assert_eq!(got, [7, 0, 0, 0, 8, 0, 0, 0, 7]);

    // A real long-running process, started in the background by the agent: the op ends
    // when the agent exits, although the process keeps running (and may hold pipes).
    let pidfile = b.path("anything.pid");
    let params = [("binfile", "/bin/sleep"), ("cmdline_options", "1000"), ("pidfile", pidfile.to_str().unwrap())];
    let t0 = Instant::now();
    let got = rcs(&ex, "a", "ocf:heartbeat:anything", &params, &["start", "monitor"]).await;
    assert_eq!(got, [0, 0]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // SAFETY: existence check of the process the agent started.
    assert!(unsafe { libc::kill(pid, 0) } == 0, "the service is running");
    assert_eq!(rcs(&ex, "a", "ocf:heartbeat:anything", &params, &["stop", "monitor"]).await, [0, 7]);
    // SAFETY: as above.
    assert!(unsafe { libc::kill(pid, 0) } != 0, "stop ended the service");

    // The history holds the last op and is written in lrm_rsc_op form.
    let h = ex.history();
    let d = &h["d"];
    let last = d.last.as_ref().unwrap();
    assert_eq!((last.operation_key.as_str(), last.rc, last.id.as_str()), ("d_monitor_0", 7, "d_last_0"));
    let xml = d.to_element().to_xml();
    assert!(xml.starts_with(r#"<lrm_resource id="d" class="ocf" provider="pacemaker" type="Dummy">"#), "{xml}");
    assert!(xml.contains(r#"operation_key="d_monitor_0""#) && xml.contains(r#"rc-code="7""#), "{xml}");
}

#[tokio::test]
async fn a_missing_agent_is_not_installed() {
    let b = Bench::new();
    let r = run_op(&b.env, &req("x", "ocf:test:nosuch", "start", &[]), None).await;
    assert_eq!((r.rc, r.status), (5, OpStatus::NotInstalled));
    assert!(r.exit_reason.contains("ocf:test:nosuch is not installed"), "{}", r.exit_reason);
}

#[tokio::test]
async fn a_hung_agent_is_killed_with_its_whole_group_at_the_timeout() {
    let b = Bench::new();
    let pids = b.path("pgid");
    b.agent("hang", &format!("echo $$ > {}\nsleep 1000 &\nsleep 1000\n", pids.display()));
    let mut r = req("h", "ocf:test:hang", "start", &[]);
    r.timeout_ms = 500;
    let t0 = Instant::now();
    let res = run_op(&b.env, &r, None).await;
    let took = t0.elapsed();
    assert_eq!((res.status, res.rc), (OpStatus::Timeout, 1));
    assert!(res.exit_reason.contains("did not complete within 500 ms"), "{}", res.exit_reason);
    assert!(took < Duration::from_millis(500) + execd::run::KILL_GRACE + Duration::from_millis(1500), "{took:?}");
    let pgid: i32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    wait_group_gone(pgid).await;
}

#[tokio::test]
async fn a_background_child_holding_the_pipes_does_not_delay_the_op() {
    let b = Bench::new();
    b.agent("bg", "sleep 3 &\necho started\nexit 0");
    let t0 = Instant::now();
    let r = run_op(&b.env, &req("b", "ocf:test:bg", "start", &[]), None).await;
    assert_eq!((r.rc, r.status), (0, OpStatus::Done));
    assert!(r.stdout.contains("started"));
    assert!(t0.elapsed() < Duration::from_secs(2), "waited for the background child: {:?}", t0.elapsed());
}

#[tokio::test]
async fn parameter_values_reach_the_agent_literally() {
    let b = Bench::new();
    let out = b.path("v.out");
    b.agent("echo", &format!("printf '%s' \"$OCF_RESKEY_v\" > {}\nprintf '%s' \"$OCF_RESKEY_CRM_meta_timeout $OCF_RESOURCE_INSTANCE $OCF_RESKEY_CRM_meta_on_node\" > {}.meta", out.display(), out.display()));
    for v in ["plain", "with space", "quote ' and \" quotes", "$(touch /tmp/halo-injected)", "`id`; rm -rf /nonexistent", "back\\slash\nnewline", "*"] {
        let r = run_op(&b.env, &req("p", "ocf:test:echo", "start", &[("v", v)]), None).await;
        assert_eq!(r.rc, 0, "{v}: {}", r.stderr);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), v);
    }
    assert!(!Path::new("/tmp/halo-injected").exists(), "a parameter value was executed");
    assert_eq!(std::fs::read_to_string(format!("{}.meta", out.display())).unwrap(), "20000 p node1");
    // Names that cannot be environment names are refused before anything runs.
    let r = run_op(&b.env, &req("p", "ocf:test:echo", "start", &[("bad-name", "x")]), None).await;
    assert_eq!((r.status, r.rc), (OpStatus::Invalid, 2));
}

#[tokio::test]
async fn ops_on_one_resource_are_serialised_and_resources_run_in_parallel() {
    let b = Bench::new();
    let log = b.path("log");
    b.agent("slow", &format!("echo \"$OCF_RESOURCE_INSTANCE begin $(date +%s%N)\" >> {l}\nsleep 0.3\necho \"$OCF_RESOURCE_INSTANCE end $(date +%s%N)\" >> {l}", l = log.display()));
    let ex = Executor::new(b.env.clone(), 8);
    let t0 = Instant::now();
    let jobs: Vec<_> = ["r1", "r1", "r1", "r2", "r2", "r2"]
        .iter()
        .map(|rsc| {
            let ex = ex.clone();
            let r = req(rsc, "ocf:test:slow", "start", &[]);
            tokio::spawn(async move { ex.exec(r).await })
        })
        .collect();
    for j in jobs {
        assert_eq!(j.await.unwrap().record.rc, 0);
    }
    // Three ops in a row per resource: at least 0.9 s.
    assert!(t0.elapsed() >= Duration::from_millis(900), "{:?}", t0.elapsed());
    let text = std::fs::read_to_string(&log).unwrap();
    let mut spans: Vec<Vec<(u128, u128)>> = Vec::new();
    for rsc in ["r1", "r2"] {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{rsc} "))).collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(kinds, ["begin", "end", "begin", "end", "begin", "end"], "{rsc} overlapped: {lines:?}");
        let t: Vec<u128> = lines.iter().map(|l| l.split(' ').nth(2).unwrap().parse().unwrap()).collect();
        spans.push(t.chunks(2).map(|c| (c[0], c[1])).collect());
    }
    // The two resources ran side by side: some op of r1 overlapped some op of r2.
    let overlap = spans[0].iter().any(|a| spans[1].iter().any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(overlap, "r1 and r2 never ran at the same time: {spans:?}");
}

#[tokio::test]
async fn an_op_still_running_shows_as_pending_in_the_history() {
    let b = Bench::new();
    b.agent("slow", "sleep 0.5");
    let ex = Executor::new(b.env.clone(), 8);
    let first = req("r", "ocf:test:slow", "start", &[]);
    assert_eq!(ex.exec(first).await.record.rc, 0);
    let mut second = req("r", "ocf:test:slow", "stop", &[]);
    second.meta.insert("transition_key".into(), "4:2:0:dc".into());
    let job = tokio::spawn({
        let ex = ex.clone();
        async move { ex.exec(second).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let xml = ex.history()["r"].to_element().to_xml();
    // The stop stands as `r_last_0`, pending (op-status -1, call-id -1), in place of the start.
    assert!(xml.contains(r#"id="r_last_0" operation_key="r_stop_0" operation="stop""#) && xml.contains(r#"op-status="-1""#) && xml.contains(r#"transition-key="4:2:0:dc""#), "{xml}");
    assert!(!xml.contains("r_start_0"), "{xml}");
    assert_eq!(job.await.unwrap().record.rc, 0);
    let xml = ex.history()["r"].to_element().to_xml();
    assert!(xml.contains(r#"operation_key="r_stop_0""#) && xml.contains(r#"op-status="0""#) && !xml.contains(r#"op-status="-1""#), "{xml}");
}

async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<OpEvent>, within: Duration) -> OpEvent {
    tokio::time::timeout(within, rx.recv()).await.expect("an event in time").expect("event stream open")
}

#[tokio::test]
async fn a_recurring_monitor_reports_changes_only_and_sees_a_failure_within_its_interval() {
    let b = Bench::new();
    let state = b.path("up");
    b.agent("flag", &format!("case $1 in\n start) touch {s};;\n stop) rm -f {s};;\n monitor) [ -e {s} ] || exit 7;;\nesac\nexit 0", s = state.display()));
    let ex = Executor::new(b.env.clone(), 8);
    let mut rx = ex.subscribe();
    assert_eq!(ex.exec(req("f", "ocf:test:flag", "start", &[])).await.record.rc, 0);
    assert_eq!(next_event(&mut rx, Duration::from_secs(1)).await.record.operation, "start");
    let mut mon = req("f", "ocf:test:flag", "monitor", &[]);
    mon.interval_ms = 300;
    ex.recur(mon.clone());
    let first = next_event(&mut rx, Duration::from_secs(1)).await;
    assert_eq!((first.record.operation_key.as_str(), first.record.rc), ("f_monitor_300", 0));
    // Unchanged results are not reported again.
    assert!(tokio::time::timeout(Duration::from_millis(1000), rx.recv()).await.is_err(), "an unchanged result was re-reported");
    // The service dies behind the cluster's back: seen within one interval (plus the run).
    std::fs::remove_file(&state).unwrap();
    let t0 = Instant::now();
    let failed = next_event(&mut rx, Duration::from_secs(2)).await;
    assert_eq!(failed.record.rc, 7);
    // The next run after the failure (one interval), with room for a loaded machine.
    assert!(t0.elapsed() < Duration::from_millis(300 + 1000), "{:?}", t0.elapsed());
    assert_eq!(ex.history()["f"].last_failure.as_ref().map(|r| r.rc), None, "7 from a monitor is a state, judged by the controller");
    // Registered again (a controller after a cleanup): it runs at once, its first result is
    // reported even though unchanged, and it keeps running on its interval.
    std::fs::write(&state, "").unwrap();
    let back = next_event(&mut rx, Duration::from_secs(2)).await;
    assert_eq!(back.record.rc, 0);
    ex.recur(mon.clone());
    let again = next_event(&mut rx, Duration::from_secs(1)).await;
    assert_eq!((again.record.operation_key.as_str(), again.record.rc), ("f_monitor_300", 0));
    std::fs::remove_file(&state).unwrap();
    assert_eq!(next_event(&mut rx, Duration::from_secs(2)).await.record.rc, 7, "the re-registered monitor stopped running");
    // Cancelled: no more runs.
    assert!(ex.cancel("f", "monitor", 300).await);
    assert!(!ex.cancel("f", "monitor", 300).await, "cancelling twice");
    std::fs::write(&state, "").unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(800), rx.recv()).await.is_err(), "a cancelled monitor still ran");
}

#[tokio::test]
async fn cancelling_an_in_flight_recurring_op_kills_it_and_reports_cancelled() {
    let b = Bench::new();
    let pids = b.path("pgid");
    b.agent("slowmon", &format!("echo $$ > {}\nsleep 1000", pids.display()));
    let ex = Executor::new(b.env.clone(), 8);
    let mut rx = ex.subscribe();
    let mut mon = req("m", "ocf:test:slowmon", "monitor", &[]);
    mon.interval_ms = 10_000;
    ex.recur(mon);
    let t0 = Instant::now();
    while !pids.exists() && t0.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ex.cancel("m", "monitor", 10_000).await);
    let e = next_event(&mut rx, Duration::from_secs(3)).await;
    assert_eq!((e.record.status, e.record.rc), (OpStatus::Cancelled, 0));
    let pgid: i32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    wait_group_gone(pgid).await;
}

/// Killed processes are reaped by their new parent a moment later.
async fn wait_group_gone(pgid: i32) {
    let t1 = Instant::now();
    while group_alive(pgid) && t1.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!group_alive(pgid), "a process of the killed agent's group survived");
}

/// A stand-in for systemctl (systemd is not PID 1 on the machines these tests run on):
/// knows one unit, `web.service`, whose state is a file.
fn fake_systemctl(b: &Bench) {
    let st = b.path("sd");
    std::fs::create_dir_all(&st).unwrap();
    let script = format!(
        r#"#!/bin/sh
S={s}
echo "$*" >> $S/calls
case "$1" in
  daemon-reload) exit 0;;
  show) prop=${{2#--property=}}; unit=$4
     if [ "$unit" != web.service ]; then [ "$prop" = LoadState ] && echo not-found; exit 0; fi
     if [ "$prop" = LoadState ]; then echo loaded; elif [ -e $S/up ]; then echo active; else echo inactive; fi; exit 0;;
  start) touch $S/up; exit 0;;
  stop) rm -f $S/up; exit 0;;
esac
exit 1
"#,
        s = st.display()
    );
    let p = b.env.systemd.systemctl.clone();
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn systemd_units_through_systemctl_and_refused_without_systemd() {
    let b = Bench::new();
    fake_systemctl(&b);
    // No runtime directory: systemd is not running, and nothing is faked.
    let r = run_op(&b.env, &req("w", "systemd:web", "start", &[]), None).await;
    assert_eq!((r.rc, r.status), (5, OpStatus::NotInstalled));
    assert!(r.exit_reason.contains("systemd is not running"), "{}", r.exit_reason);
    assert!(!b.path("sd/calls").exists(), "systemctl was called without systemd");

    std::fs::create_dir_all(&b.env.systemd.runtime_dir).unwrap();
    let env = b.env.clone();
    let run = |action: &str, unit: &str| {
        let (env, r) = (env.clone(), req("w", unit, action, &[]));
        async move { run_op(&env, &r, None).await }
    };
    assert_eq!(run("monitor", "systemd:web").await.rc, 7);
    assert_eq!(run("start", "systemd:web").await.rc, 0);
    let dropin = b.env.systemd.runtime_dir.join("web.service.d/50-halo.conf");
    assert!(std::fs::read_to_string(&dropin).unwrap().contains("Restart=no"));
    assert_eq!(run("monitor", "systemd:web").await.rc, 0);
    assert_eq!(run("stop", "systemd:web").await.rc, 0);
    assert!(!dropin.exists(), "the drop-in outlived the stop");
    let m = run("monitor", "systemd:web.service").await;
    assert_eq!((m.rc, m.exit_reason.as_str()), (7, "inactive"));
    let r = run("start", "systemd:nosuch").await;
    assert_eq!((r.rc, r.status), (5, OpStatus::NotInstalled));
    assert_eq!(run("promote", "systemd:web").await.rc, 3);
    let calls = std::fs::read_to_string(b.path("sd/calls")).unwrap();
    assert!(calls.contains("start web.service") && calls.contains("daemon-reload"), "{calls}");
}

#[tokio::test]
async fn stop_all_cancels_monitors_then_demotes_and_stops_what_may_run_newest_first() {
    let b = Bench::new();
    let log = b.path("log");
    // Each instance keeps its state in a file named by its parameter and logs every action.
    b.agent(
        "flag",
        &format!(
            "s=$OCF_RESKEY_state\necho \"$OCF_RESOURCE_INSTANCE $1\" >> {log}\ncase $1 in\n start) echo started > $s;;\n stop) rm -f $s;;\n promote) echo promoted > $s;;\n demote) echo started > $s;;\n monitor) [ -e $s ] || exit 7; grep -q promoted $s && exit 8;;\nesac\nexit 0",
            log = log.display()
        ),
    );
    let ex = Executor::new(b.env.clone(), 8);
    let st = |n: &str| b.path(n).to_str().unwrap().to_string();
    let (a, p, gone, never) = (st("a"), st("p"), st("gone"), st("never"));
    assert_eq!(rcs(&ex, "a", "ocf:test:flag", &[("state", &a)], &["start"]).await, [0]);
    assert_eq!(rcs(&ex, "p", "ocf:test:flag", &[("state", &p)], &["start", "promote"]).await, [0, 0]);
    assert_eq!(rcs(&ex, "gone", "ocf:test:flag", &[("state", &gone)], &["start", "stop"]).await, [0, 0]);
    assert_eq!(rcs(&ex, "never", "ocf:test:flag", &[("state", &never)], &["monitor"]).await, [7]);
    let mut mon = req("a", "ocf:test:flag", "monitor", &[("state", &a)]);
    mon.interval_ms = 200;
    ex.recur(mon);
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&log, "").unwrap();

    let results = ex.stop_all().await;
    let done: Vec<(String, String, i32)> = results.iter().map(|e| (e.record.rsc.clone(), e.record.operation.clone(), e.record.rc)).collect();
    assert_eq!(done, [("p".into(), "demote".into(), 0), ("p".into(), "stop".into(), 0), ("a".into(), "stop".into(), 0)]);
    assert!(!Path::new(&a).exists() && !Path::new(&p).exists());
    // The monitor was cancelled first: nothing ran after the stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "p demote\np stop\na stop\n");
    assert!(ex.history().values().all(|h| !h.may_be_active()));
}
