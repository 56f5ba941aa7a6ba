//! The fencer with real fence agents: Debian's fence_dummy (unmodified) and small agents
//! written here that speak the fence-agent protocol (stdin key=value lines) and record what
//! they were asked. Also the executor's stonith class handed to a real halo-fenced API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use execd::agent::{AgentDirs, AgentSpec};
use execd::executor::Executor;
use execd::rc::OpStatus;
use execd::run::{ExecEnv, OpRequest};
use fenced::device::Device;
use fenced::fencer::{CibSource, Fencer, State};

struct Bench {
    dir: tempfile::TempDir,
    env: ExecEnv,
}

/// A fence agent for tests: reads key=value lines, appends "ACTION TARGET" to `log`, sleeps
/// `sleep` seconds on off/reboot, fails them when `fail=1`, lists `hosts` for list.
const FENCE_RECORD: &str = r#"#!/bin/sh
action=""; port=""; nodename=""; log=/dev/null; sleep=0; fail=0; hosts=""
while IFS= read -r line; do
  case "$line" in
    action=*) action="${line#action=}" ;; port=*) port="${line#port=}" ;; nodename=*) nodename="${line#nodename=}" ;;
    log=*) log="${line#log=}" ;; sleep=*) sleep="${line#sleep=}" ;; fail=*) fail="${line#fail=}" ;; hosts=*) hosts="${line#hosts=}" ;;
  esac
done
case "$action" in
  metadata) cat <<EOF
<?xml version="1.0" ?>
<resource-agent name="fence_record" shortdesc="test agent">
<parameters><parameter name="port"/><parameter name="log"/></parameters>
<actions><action name="on"/><action name="off"/><action name="reboot"/><action name="status"/><action name="list"/><action name="monitor"/><action name="metadata"/></actions>
</resource-agent>
EOF
  exit 0 ;;
  list) for h in $hosts; do echo "$h"; done; exit 0 ;;
  monitor|status) echo "$action $port" >> "$log"; exit 0 ;;
  off|reboot|on) echo "$action $port $nodename" >> "$log"; sleep "$sleep"; [ "$fail" = 1 ] && exit 1; exit 0 ;;
  *) exit 1 ;;
esac
"#;

/// Answers meta-data at once (without any), hangs on everything else.
const FENCE_HANG: &str = "#!/bin/sh\ngrep -q '^action=metadata' && exit 1\nsleep 60\n";

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let fence = dir.path().join("agents/fence");
        std::fs::create_dir_all(&fence).unwrap();
        for (name, body) in [("fence_record", FENCE_RECORD), ("fence_hang", FENCE_HANG)] {
            let p = fence.join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let rsctmp = dir.path().join("rsctmp");
        std::fs::create_dir_all(&rsctmp).unwrap();
        let env = ExecEnv {
            cluster_tools: None,
            dirs: AgentDirs { ocf_root: PathBuf::from("/usr/lib/ocf"), halo: Some(dir.path().join("agents")), initd: dir.path().join("init.d"), fence: PathBuf::from("/usr/sbin") },
            rsctmp,
            workdir: PathBuf::from("/"),
            node_name: "node1".into(),
            systemd: execd::systemd::Systemd { systemctl: dir.path().join("systemctl"), runtime_dir: dir.path().join("run-systemd") },
            fencer: None,
        };
        Bench { dir, env }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("log")).unwrap_or_default()
    }
}

fn device(id: &str, agent: &str, kv: &[(&str, &str)]) -> Device {
    let params: BTreeMap<String, String> = kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Device::new(id, agent, &params, &BTreeMap::new()).unwrap()
}

fn have_fence_dummy() -> bool {
    if Path::new("/usr/sbin/fence_dummy").exists() {
        return true;
    }
    eprintln!("skipped: /usr/sbin/fence_dummy is missing (apt-get install fence-agents)");
    false
}

#[tokio::test]
async fn fence_dummy_fences_a_listed_node_and_the_history_says_so() {
    if !have_fence_dummy() {
        return;
    }
    let b = Bench::new();
    let f = Fencer::new(b.env.clone(), CibSource::None);
    let status = b.path("fd.status");
    let status = status.to_str().unwrap();
    f.register(device("fd", "stonith:fence_dummy", &[("type", "file"), ("status_file", status), ("pcmk_host_list", "node2 node3")])).await.unwrap();
    let (action, r) = f.monitor("fd", Duration::from_secs(20)).await;
    assert_eq!((action.as_str(), r.status, r.rc), ("monitor", OpStatus::Done, 0), "{r:?}");
    std::fs::write(status, "on").unwrap();
    let o = f.fence("node2", "off", None, "test").await;
    assert_eq!(o.status, OpStatus::Done, "{o:?}");
    assert_eq!(o.entry.devices, ["fd"]);
    assert_eq!(o.entry.executioner, "node1");
    // fence_dummy powered its "node" off: its status file says so, and its status action too.
    assert_eq!(std::fs::read_to_string(status).unwrap().trim(), "off");
    let st = f.run(&f.device("fd").unwrap(), "status", Some("node2"), Duration::from_secs(20)).await;
    assert_eq!(st.rc, 7, "status after off: {}", st.stdout);
    // node4 is in no list: nothing runs, and the reason names the devices there are.
    let o = f.fence("node4", "reboot", None, "test").await;
    assert_eq!(o.status, OpStatus::NoFenceDevice);
    assert!(o.reason.contains("no fencing device can fence node4") && o.reason.contains("fd"), "{}", o.reason);
    let h = f.history(None);
    assert_eq!(h.len(), 2);
    assert_eq!((h[0].target.as_str(), h[0].state), ("node2", State::Done));
    assert_eq!((h[1].target.as_str(), h[1].state), ("node4", State::Failed));
    assert_eq!(f.history(Some("node2")).len(), 1);
}

#[tokio::test]
async fn a_failing_first_level_falls_through_to_the_second() {
    if !have_fence_dummy() {
        return;
    }
    let b = Bench::new();
    let log = b.path("log");
    let topo = format!(
        r#"<cib><configuration><crm_config/><nodes/><resources/><constraints/><fencing-topology>
            <fencing-level id="l1" target="node2" index="1" devices="broken"/>
            <fencing-level id="l2" target="node2" index="2" devices="rec-a,rec-b"/>
        </fencing-topology></configuration><status/></cib>"#
    );
    let cib = cib::xml::parse(&topo).unwrap().root;
    let f = Fencer::new(b.env.clone(), CibSource::Fixed(Arc::new(cib)));
    f.register(device("broken", "stonith:fence_dummy", &[("type", "fail"), ("power_timeout", "1"), ("pcmk_host_check", "none"), ("pcmk_off_retries", "1")])).await.unwrap();
    for id in ["rec-a", "rec-b"] {
        f.register(device(id, "fence_record", &[("log", log.to_str().unwrap()), ("pcmk_host_map", &format!("node2:{id}-port"))])).await.unwrap();
    }
    let o = f.fence("node2", "off", Some(Duration::from_secs(60)), "test").await;
    assert_eq!(o.status, OpStatus::Done, "{o:?}");
    assert_eq!(o.entry.devices, ["rec-a", "rec-b"], "both devices of level 2");
    // Each got the target under its own port name, and the node name.
    assert_eq!(b.log(), "off rec-a-port node2\noff rec-b-port node2\n");
}

#[tokio::test]
async fn a_hung_agent_times_out_and_the_request_fails_within_its_timeout() {
    let b = Bench::new();
    let f = Fencer::new(b.env.clone(), CibSource::None);
    f.register(device("hang", "fence_hang", &[("pcmk_host_check", "none")])).await.unwrap();
    let t0 = Instant::now();
    let o = f.fence("node2", "reboot", Some(Duration::from_secs(2)), "test").await;
    assert_eq!(o.status, OpStatus::Error);
    assert!(o.reason.contains("hang") && o.reason.to_lowercase().contains("timed out"), "{}", o.reason);
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    assert_eq!(f.history(None)[0].state, State::Failed);
}

#[tokio::test]
async fn two_requests_for_one_node_fence_it_once() {
    let b = Bench::new();
    let log = b.path("log");
    let f = Fencer::new(b.env.clone(), CibSource::None);
    f.register(device("rec", "fence_record", &[("log", log.to_str().unwrap()), ("sleep", "1"), ("pcmk_host_list", "node2")])).await.unwrap();
    let (a, c) = tokio::join!(f.fence("node2", "reboot", None, "one"), f.fence("node2", "reboot", None, "two"));
    assert_eq!((a.status, c.status), (OpStatus::Done, OpStatus::Done));
    assert_eq!(a.entry.id, c.entry.id, "the second request joined the first");
    assert_eq!(b.log(), "reboot node2 node2\n", "the agent ran once");
    assert_eq!(f.history(None).len(), 1);
}

#[tokio::test]
async fn dynamic_list_and_priority_choose_the_device() {
    let b = Bench::new();
    let log = b.path("log");
    let l = log.to_str().unwrap();
    let f = Fencer::new(b.env.clone(), CibSource::None);
    // No lists configured: the agent's list action decides (dynamic-list).
    f.register(device("low", "fence_record", &[("log", l), ("hosts", "node2 node3")])).await.unwrap();
    f.register(device("high", "fence_record", &[("log", l), ("hosts", "node3"), ("priority", "10")])).await.unwrap();
    f.register(device("failing", "fence_record", &[("log", l), ("hosts", "node2"), ("fail", "1"), ("priority", "20"), ("pcmk_reboot_retries", "1")])).await.unwrap();
    let ids = |v: Vec<Device>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(f.capable("node3").await), ["high", "low"]);
    assert_eq!(ids(f.capable("node2").await), ["failing", "low"]);
    assert!(f.capable("node9").await.is_empty());
    // The highest-priority device fails; the next one fences.
    let o = f.fence("node2", "reboot", None, "test").await;
    assert_eq!((o.status, o.entry.devices.clone()), (OpStatus::Done, vec!["low".to_string()]), "{o:?}");
    assert_eq!(b.log(), "reboot node2 node2\nreboot node2 node2\n");
}

#[tokio::test]
async fn a_node_does_not_fence_itself_and_bad_requests_change_nothing() {
    let b = Bench::new();
    let log = b.path("log");
    let f = Fencer::new(b.env.clone(), CibSource::None);
    f.register(device("rec", "fence_record", &[("log", log.to_str().unwrap()), ("pcmk_host_check", "none")])).await.unwrap();
    let o = f.fence("node1", "off", None, "test").await;
    assert_eq!(o.status, OpStatus::Invalid);
    assert!(o.reason.contains("does not fence its own node"), "{}", o.reason);
    let o = f.fence("node2", "explode", None, "test").await;
    assert!(o.status == OpStatus::Invalid && o.reason.contains("unknown fencing action"), "{o:?}");
    let o = f.fence("node2\naction=on", "off", None, "test").await;
    assert_eq!(o.status, OpStatus::Invalid);
    assert_eq!(b.log(), "", "no agent ran");
    // A missing agent is refused at registration, with the reason.
    let e = f.register(device("nope", "fence_does_not_exist", &[])).await.unwrap_err();
    assert_eq!(e.0, OpStatus::NotInstalled);
    assert!(e.1.contains("fence_does_not_exist"), "{}", e.1);
    assert!(f.device("nope").is_none());
}

/// The executor's stonith class against a halo-fenced API on a socket: start registers and
/// monitors, a probe reflects registration, a recurring monitor runs the agent through
/// the fencer, stop unregisters, and off is refused by the executor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_hands_stonith_resources_to_the_fencer() {
    let b = Bench::new();
    let sock = b.path("fenced.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let setup = fenced::daemon::Setup { env: b.env.clone(), socket: sock.clone(), cib_socket: b.path("no-cibd.sock"), membership: None };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fenced::daemon::run(setup, listener, async move {
        let _ = stop_rx.await;
    }));
    let mut env = b.env.clone();
    env.fencer = Some(sock.clone());
    let ex = Executor::new(env, 4);
    let log = b.path("log");
    let op = |action: &str, interval_ms: u64| OpRequest {
        rsc: "rec".into(),
        agent: AgentSpec::parse("stonith:fence_record").unwrap(),
        action: action.into(),
        params: [("log".to_string(), log.to_str().unwrap().to_string()), ("pcmk_host_list".to_string(), "node2".to_string())].into(),
        meta: BTreeMap::new(),
        interval_ms,
        timeout_ms: 10_000,
    };
    let probe = ex.exec(op("monitor", 0)).await;
    assert_eq!(probe.record.rc, 7, "not registered yet: {:?}", probe.record);
    let start = ex.exec(op("start", 0)).await;
    assert_eq!((start.record.rc, start.record.status), (0, OpStatus::Done), "{:?}", start.record);
    assert_eq!(b.log(), "monitor \n", "start ran the device's monitor through the fencer");
    assert_eq!(ex.exec(op("monitor", 0)).await.record.rc, 0, "probe: registered");
    let mut events = ex.subscribe();
    ex.recur(op("monitor", 300));
    let first = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap();
    assert_eq!((first.record.operation_key.as_str(), first.record.rc), ("rec_monitor_300", 0));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(b.log().lines().count() >= 3, "the recurring monitor ran the agent: {}", b.log());
    let off = ex.exec(op("off", 0)).await;
    assert_eq!(off.record.status, OpStatus::NotSupported);
    assert!(off.record.exit_reason.contains("halo-fenced"), "{}", off.record.exit_reason);
    assert!(!b.log().contains("off"), "the executor never fences");
    assert!(ex.cancel("rec", "monitor", 300).await);
    let stop = ex.exec(op("stop", 0)).await;
    assert_eq!(stop.record.rc, 0);
    assert_eq!(ex.exec(op("monitor", 0)).await.record.rc, 7, "probe after stop: unregistered");
    // Start of a device whose agent does not exist: not installed, with the name.
    let mut bad = op("start", 0);
    bad.rsc = "bad".into();
    bad.agent = AgentSpec::parse("stonith:fence_missing").unwrap();
    let r = ex.exec(bad).await;
    assert_eq!((r.record.rc, r.record.status), (5, OpStatus::NotInstalled), "{:?}", r.record);
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
