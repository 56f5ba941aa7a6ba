//! The fencer of one node: its registered devices, running their agents, and fencing a
//! node with them (topology levels first, else every device able to, by priority).
//!
//! Devices are registered by the executor when a stonith resource starts (EXECD-NOTES §5),
//! so a device is used only where the cluster placed it. A fence request for one target and
//! action that arrives while the same one is running joins it: a node is fenced once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use execd::agent::AgentSpec;
use execd::rc::{OpStatus, OCF_NOT_RUNNING, OCF_SUCCESS};
use execd::run::{run_op, ExecEnv, OpRequest, OpResult};
use rand::Rng;
use tokio::sync::watch;

use crate::cib_devices::CibDevice;
use crate::device::{parse_list_output, AgentInfo, Device, HostCheck};
use crate::peers::Peers;
use crate::topology::{levels_for, Level};

/// How long a device's `list` output is believed (Pacemaker re-reads it after a minute).
pub const LIST_CACHE: Duration = Duration::from_secs(60);
/// Timeout of meta-data and of host checks (list, status).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(20);
/// Without a cluster option: Pacemaker's default `stonith-timeout`.
pub const DEFAULT_FENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// History kept per node.
pub const HISTORY_MAX: usize = 500;

/// Where the fencer reads the topology and `stonith-timeout`: the CIB, when there is one.
#[derive(Clone)]
pub enum CibSource {
    None,
    /// halo-cibd's socket.
    Cibd(std::path::PathBuf),
    /// A fixed document (tests, `--file`).
    Fixed(Arc<cib::xml::Element>),
}

/// A fencing operation as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub target: String,
    pub action: String,
    pub client: String,
    pub origin: String,
    pub executioner: String,
    pub devices: Vec<String>,
    pub state: State,
    pub reason: String,
    pub started_ms: u64,
    pub completed_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Done,
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
}

/// What came of a fence request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Done when the target is fenced.
    pub status: OpStatus,
    pub reason: String,
    pub entry: Entry,
}

struct Inner {
    env: ExecEnv,
    cib: CibSource,
    devices: Mutex<BTreeMap<String, Slot>>,
    info: Mutex<HashMap<AgentSpec, Option<AgentInfo>>>,
    lists: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    history: Mutex<Vec<Entry>>,
    pending: Mutex<HashMap<(String, String), watch::Receiver<Option<Outcome>>>>,
    next_id: Mutex<u64>,
    /// The other fencers, once the daemon has joined their process group.
    peers: OnceLock<Arc<Peers>>,
    /// The CIB's devices as last read.
    cib_view: Mutex<Vec<CibDevice>>,
    /// Each device's last monitor result, wherever it ran.
    health: Mutex<BTreeMap<String, Health>>,
    /// Operations as they end in this partition (the Watch stream).
    ended: tokio::sync::broadcast::Sender<proto::fenced::HistoryEntry>,
}

/// A device's last monitor result and the node that ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub node: String,
    pub ok: bool,
    pub reason: String,
    pub at_ms: u64,
}

/// A device id's registrations: by the executor (its stonith resource started here) and
/// from the CIB (the configuration allows it on this node), as Pacemaker's fencer keeps
/// both. The device is usable while either holds; the executor's is the one used.
#[derive(Default)]
struct Slot {
    api: Option<Device>,
    cib: Option<Device>,
}

impl Slot {
    fn current(&self) -> Option<&Device> {
        self.api.as_ref().or(self.cib.as_ref())
    }
}

/// One node's fencer. Cheap to clone.
#[derive(Clone)]
pub struct Fencer {
    inner: Arc<Inner>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Fencer {
    pub fn new(env: ExecEnv, cib: CibSource) -> Fencer {
        Fencer {
            inner: Arc::new(Inner {
                env,
                cib,
                devices: Mutex::new(BTreeMap::new()),
                info: Mutex::new(HashMap::new()),
                lists: Mutex::new(HashMap::new()),
                history: Mutex::new(Vec::new()),
                pending: Mutex::new(HashMap::new()),
                next_id: Mutex::new(1),
                peers: OnceLock::new(),
                cib_view: Mutex::new(Vec::new()),
                health: Mutex::new(BTreeMap::new()),
                ended: tokio::sync::broadcast::channel(256).0,
            }),
        }
    }

    /// Work with the other fencers of the cluster from now on (once; later calls are ignored).
    pub fn set_peers(&self, peers: Arc<Peers>) {
        let _ = self.inner.peers.set(peers);
    }

    pub fn node(&self) -> &str {
        &self.inner.env.node_name
    }

    /// Register or replace a device for the executor (its stonith resource started here).
    /// Its agent must exist here.
    pub async fn register(&self, device: Device) -> Result<(), (OpStatus, String)> {
        self.inner.env.dirs.locate(&device.agent).map_err(|e| (OpStatus::NotInstalled, format!("device {}: {e}", device.id)))?;
        self.agent_info(&device).await;
        self.inner.lists.lock().unwrap().remove(&device.id);
        tracing::info!("device {} ({}) registered (started)", device.id, device.agent);
        let id = device.id.clone();
        self.inner.devices.lock().unwrap().entry(id).or_default().api = Some(device);
        Ok(())
    }

    /// Drop the executor's registration (the stonith resource stopped); false if there was
    /// none. The device stays usable if the CIB allows it here.
    pub fn remove(&self, id: &str) -> bool {
        self.inner.lists.lock().unwrap().remove(id);
        let mut devices = self.inner.devices.lock().unwrap();
        let removed = devices.get_mut(id).and_then(|s| s.api.take()).is_some();
        if devices.get(id).is_some_and(|s| s.current().is_none()) {
            devices.remove(id);
        }
        if removed {
            tracing::info!("device {id} unregistered (stopped)");
        }
        removed
    }

    /// Take the CIB's devices: keep the view, register those allowed on this node.
    pub async fn sync_cib(&self, view: Vec<CibDevice>) {
        let me = self.node().to_string();
        let here = view.iter().filter(|d| d.allowed.iter().any(|n| n.eq_ignore_ascii_case(&me))).map(|d| d.device.clone()).collect();
        self.sync_cib_devices(here).await;
        let ids: Vec<String> = view.iter().map(|d| d.device.id.clone()).collect();
        self.inner.health.lock().unwrap().retain(|id, _| ids.contains(id) || self.started(id));
        *self.inner.cib_view.lock().unwrap() = view;
    }

    pub fn cib_view(&self) -> Vec<CibDevice> {
        self.inner.cib_view.lock().unwrap().clone()
    }

    pub fn health(&self, id: &str) -> Option<Health> {
        self.inner.health.lock().unwrap().get(id).cloned()
    }

    /// Store a device's monitor result; true if it says something new (node, result, reason).
    pub fn set_health(&self, id: &str, h: Health) -> bool {
        let mut m = self.inner.health.lock().unwrap();
        let new = m.get(id).is_none_or(|o| (&o.node, o.ok, &o.reason) != (&h.node, h.ok, &h.reason));
        m.insert(id.to_string(), h);
        new
    }

    /// The fencers of the cluster that are up (this one alone without a group).
    pub fn members(&self) -> Vec<String> {
        match self.inner.peers.get() {
            Some(p) => p.members(),
            None => vec![self.node().to_string()],
        }
    }

    pub(crate) fn peers(&self) -> Option<Arc<Peers>> {
        self.inner.peers.get().cloned()
    }

    /// Make the CIB's registrations exactly `allowed` (the devices the configuration allows
    /// on this node). A device whose agent is missing here is left out, with a warning.
    async fn sync_cib_devices(&self, allowed: Vec<Device>) {
        let mut usable = Vec::new();
        for d in allowed {
            match self.inner.env.dirs.locate(&d.agent) {
                Ok(_) => {
                    self.agent_info(&d).await;
                    usable.push(d);
                }
                Err(e) => tracing::warn!("device {} from the CIB cannot be used here: {e}", d.id),
            }
        }
        let mut devices = self.inner.devices.lock().unwrap();
        let mut lists = self.inner.lists.lock().unwrap();
        for (id, slot) in devices.iter_mut() {
            let keep = usable.iter().any(|d| &d.id == id);
            if !keep && slot.cib.take().is_some() {
                tracing::info!("device {id}: no longer allowed here by the CIB");
                lists.remove(id);
            }
        }
        for d in usable {
            let slot = devices.entry(d.id.clone()).or_default();
            if slot.cib.as_ref() != Some(&d) {
                tracing::info!("device {} ({}) registered from the CIB", d.id, d.agent);
                lists.remove(&d.id);
                slot.cib = Some(d);
            }
        }
        devices.retain(|_, s| s.current().is_some());
    }

    pub fn devices(&self) -> Vec<Device> {
        self.inner.devices.lock().unwrap().values().filter_map(|s| s.current().cloned()).collect()
    }

    pub fn device(&self, id: &str) -> Option<Device> {
        self.inner.devices.lock().unwrap().get(id).and_then(|s| s.current().cloned())
    }

    /// Whether the executor registered `id` (its stonith resource is started on this node).
    pub fn started(&self, id: &str) -> bool {
        self.inner.devices.lock().unwrap().get(id).is_some_and(|s| s.api.is_some())
    }

    /// Whether the CIB allows `id` on this node.
    pub fn from_cib(&self, id: &str) -> bool {
        self.inner.devices.lock().unwrap().get(id).is_some_and(|s| s.cib.is_some())
    }

    /// The agent's meta-data, read once per agent (None when it gives none).
    pub async fn agent_info(&self, device: &Device) -> Option<AgentInfo> {
        if let Some(i) = self.inner.info.lock().unwrap().get(&device.agent) {
            return i.clone();
        }
        let req = OpRequest {
            rsc: device.id.clone(),
            agent: device.agent.clone(),
            action: "metadata".into(),
            params: BTreeMap::new(),
            meta: BTreeMap::new(),
            interval_ms: 0,
            timeout_ms: QUERY_TIMEOUT.as_millis() as u64,
        };
        let r = run_op(&self.inner.env, &req, None).await;
        let info = if r.rc == OCF_SUCCESS { AgentInfo::from_metadata(&r.stdout) } else { None };
        if info.is_none() {
            tracing::warn!("{}: no usable meta-data (rc {}): {}", device.agent, r.rc, r.exit_reason);
        }
        self.inner.info.lock().unwrap().insert(device.agent.clone(), info.clone());
        info
    }

    /// Run one agent action of a device, for `target` if given.
    pub async fn run(&self, device: &Device, action: &str, target: Option<&str>, timeout: Duration) -> OpResult {
        let info = self.agent_info(device).await;
        let req = OpRequest {
            rsc: device.id.clone(),
            agent: device.agent.clone(),
            action: action.to_string(),
            params: device.agent_args(action, target, info.as_ref()),
            meta: BTreeMap::new(),
            interval_ms: 0,
            timeout_ms: timeout.as_millis().max(1) as u64,
        };
        let r = run_op(&self.inner.env, &req, None).await;
        let what = target.map(|t| format!(" {t}")).unwrap_or_default();
        if r.status != OpStatus::Done || (r.rc != OCF_SUCCESS && !(action == "status" && r.rc == OCF_NOT_RUNNING)) {
            tracing::warn!("{} {action}{what}: rc {} ({}) {}", device.id, r.rc, r.status.name(), first_line(&r.stderr).unwrap_or(&r.exit_reason));
        }
        r
    }

    /// A device's health check: its agent's `monitor`, else `list`, else `status`.
    pub async fn monitor(&self, id: &str, timeout: Duration) -> (String, OpResult) {
        let Some(device) = self.device(id) else {
            let r = OpResult { rc: OCF_NOT_RUNNING, status: OpStatus::NoFenceDevice, exit_reason: format!("no fencing device {id} is registered on {}", self.node()), stdout: String::new(), stderr: String::new(), started: SystemTime::now(), exec_ms: 0 };
            return ("monitor".into(), r);
        };
        let info = self.agent_info(&device).await;
        let action = match &info {
            Some(i) if !i.supports("monitor") && i.supports("list") => "list",
            Some(i) if !i.supports("monitor") && i.supports("status") => "status",
            _ => "monitor",
        };
        let action = device.agent_action(action);
        let r = self.run(&device, &action, None, timeout).await;
        if action == "list" && r.rc == OCF_SUCCESS {
            self.inner.lists.lock().unwrap().insert(device.id.clone(), (Instant::now(), parse_list_output(&r.stdout)));
        }
        (action, r)
    }

    /// Whether `device` can fence `target`, by its host check.
    pub async fn can_fence(&self, device: &Device, target: &str) -> bool {
        let info = self.agent_info(device).await;
        match device.effective_host_check(info.as_ref()) {
            HostCheck::StaticList => device.lists(target),
            HostCheck::None => true,
            HostCheck::Status => {
                let r = self.run(device, &device.agent_action("status"), Some(target), QUERY_TIMEOUT).await;
                r.status == OpStatus::Done && (r.rc == OCF_SUCCESS || r.rc == OCF_NOT_RUNNING)
            }
            HostCheck::DynamicList => {
                let cached = self.inner.lists.lock().unwrap().get(&device.id).filter(|(at, _)| at.elapsed() < LIST_CACHE).map(|(_, l)| l.clone());
                let list = match cached {
                    Some(l) => l,
                    None => {
                        let r = self.run(device, &device.agent_action("list"), None, QUERY_TIMEOUT).await;
                        if r.status != OpStatus::Done || r.rc != OCF_SUCCESS {
                            return false;
                        }
                        let l = parse_list_output(&r.stdout);
                        self.inner.lists.lock().unwrap().insert(device.id.clone(), (Instant::now(), l.clone()));
                        l
                    }
                };
                let port = device.port_for(target);
                list.iter().any(|n| n.eq_ignore_ascii_case(target) || n.eq_ignore_ascii_case(&port))
            }
        }
    }

    /// The registered devices that can fence `target`, highest priority first.
    pub async fn capable(&self, target: &str) -> Vec<Device> {
        let mut out = Vec::new();
        for d in self.devices() {
            if self.can_fence(&d, target).await {
                out.push(d);
            }
        }
        out.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// Fencing history, oldest first; only `target`'s when given.
    pub fn history(&self, target: Option<&str>) -> Vec<Entry> {
        self.inner.history.lock().unwrap().iter().filter(|e| target.is_none_or(|t| e.target == t)).cloned().collect()
    }

    /// Operations as they end, from now on.
    pub fn watch_ended(&self) -> tokio::sync::broadcast::Receiver<proto::fenced::HistoryEntry> {
        self.inner.ended.subscribe()
    }

    /// An operation ended in this partition (its end delivered by the fencers' group).
    pub fn ended(&self, entry: &proto::fenced::HistoryEntry) {
        let _ = self.inner.ended.send(entry.clone());
    }

    /// Add or update an entry (this fencer's own, or one another node's fencer reported).
    pub fn record(&self, entry: Entry) {
        let mut h = self.inner.history.lock().unwrap();
        match h.iter_mut().find(|e| e.id == entry.id) {
            Some(e) => *e = entry,
            None => h.push(entry),
        }
        let excess = h.len().saturating_sub(HISTORY_MAX);
        h.drain(..excess);
    }

    /// Fence `target`: `reboot`, `off` or `on`. Joins an identical request in flight.
    pub async fn fence(&self, target: &str, action: &str, timeout: Option<Duration>, client: &str) -> Outcome {
        let key = (target.to_string(), action.to_string());
        let (tx, joined) = {
            let mut p = self.inner.pending.lock().unwrap();
            match p.get(&key) {
                Some(rx) => (None, Some(rx.clone())),
                None => {
                    let (tx, rx) = watch::channel(None);
                    p.insert(key.clone(), rx);
                    (Some(tx), None)
                }
            }
        };
        if let Some(mut rx) = joined {
            tracing::info!("{client} asks to {action} {target}: joins the request in flight");
            loop {
                if let Some(o) = rx.borrow().clone() {
                    return o;
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
            if let Some(o) = rx.borrow().clone() {
                return o;
            }
        }
        let outcome = self.fence_once(target, action, timeout, client).await;
        self.inner.pending.lock().unwrap().remove(&key);
        if let Some(tx) = tx {
            let _ = tx.send(Some(outcome.clone()));
        }
        outcome
    }

    /// Record `target` as fenced without running a device: an administrator confirms it is
    /// down. Every fencer of the cluster records it.
    pub async fn confirm(&self, target: &str, client: &str) -> Outcome {
        let entry = Entry {
            id: self.new_id(),
            target: target.to_string(),
            action: "off".into(),
            client: client.to_string(),
            origin: self.node().to_string(),
            executioner: self.node().to_string(),
            devices: vec!["manual".into()],
            state: State::Done,
            reason: String::new(),
            started_ms: now_ms(),
            completed_ms: now_ms(),
        };
        if let Err(e) = check_target(target, "off") {
            return Outcome { status: OpStatus::Invalid, reason: e, entry };
        }
        tracing::warn!("{client} confirms that {target} is down (manual fencing)");
        self.record(entry.clone());
        if let Some(p) = self.inner.peers.get() {
            p.announce_end(&entry);
        }
        Outcome { status: OpStatus::Done, reason: String::new(), entry }
    }

    fn new_id(&self) -> String {
        let mut n = self.inner.next_id.lock().unwrap();
        *n += 1;
        format!("{}-{}-{}", self.node(), now_ms(), *n - 1)
    }

    async fn fence_once(&self, target: &str, action: &str, timeout: Option<Duration>, client: &str) -> Outcome {
        let mut entry = Entry {
            id: self.new_id(),
            target: target.to_string(),
            action: action.to_string(),
            client: client.to_string(),
            origin: self.node().to_string(),
            executioner: String::new(),
            devices: Vec::new(),
            state: State::Pending,
            reason: String::new(),
            started_ms: now_ms(),
            completed_ms: 0,
        };
        let end = |mut entry: Entry, status: OpStatus, reason: String, this: &Fencer| {
            entry.state = if status == OpStatus::Done { State::Done } else { State::Failed };
            entry.reason = reason.clone();
            entry.completed_ms = now_ms();
            this.record(entry.clone());
            if status == OpStatus::Done {
                tracing::warn!("{} {} by {} ({}): done", entry.action, entry.target, entry.executioner, entry.devices.join(","));
            } else {
                tracing::error!("{} {} failed: {reason}", entry.action, entry.target);
            }
            Outcome { status, reason, entry }
        };
        if let Err(e) = check_target(target, action) {
            return end(entry, OpStatus::Invalid, e, self);
        }
        let peers = self.inner.peers.get().cloned();
        if peers.is_none() && target.eq_ignore_ascii_case(self.node()) && action != "on" {
            let why = format!("{} does not fence its own node: ask the fencer of another node", self.node());
            return end(entry, OpStatus::Invalid, why, self);
        }
        tracing::warn!("{client} asks to {action} {target}");
        let (levels, cluster_timeout) = match self.read_cib(target).await {
            Ok(x) => x,
            Err(e) => return end(entry, OpStatus::Error, e, self),
        };
        let deadline = Instant::now() + timeout.or(cluster_timeout).unwrap_or(DEFAULT_FENCE_TIMEOUT);
        if let Some(p) = peers {
            let (e, status) = p.fence(self, entry, &levels, deadline).await;
            if status == OpStatus::Done {
                tracing::warn!("{} {} by {} ({}): done", e.action, e.target, e.executioner, e.devices.join(","));
            } else {
                tracing::error!("{} {} failed: {}", e.action, e.target, e.reason);
            }
            return Outcome { status, reason: e.reason.clone(), entry: e };
        }
        self.record(entry.clone());
        let result = if levels.is_empty() { self.fence_with_any(target, action, deadline).await } else { self.fence_with_levels(target, action, &levels, deadline).await };
        match result {
            Ok(devices) => {
                entry.executioner = self.node().to_string();
                entry.devices = devices;
                end(entry, OpStatus::Done, String::new(), self)
            }
            Err((status, reason)) => end(entry, status, reason, self),
        }
    }

    /// The levels that apply to `target` and the cluster's stonith-timeout, from the CIB.
    async fn read_cib(&self, target: &str) -> Result<(Vec<Level>, Option<Duration>), String> {
        let root = match &self.inner.cib {
            CibSource::None => return Ok((Vec::new(), None)),
            CibSource::Fixed(e) => (**e).clone(),
            CibSource::Cibd(sock) => match crate::cib_link::query_cib(sock).await {
                Ok(e) => e,
                Err(e) => {
                    // Without the CIB there is no topology to honour; devices still work.
                    tracing::warn!("cannot read the CIB for the fencing topology: {e}");
                    return Ok((Vec::new(), None));
                }
            },
        };
        let levels = levels_for(&root, target)?;
        let timeout = root
            .iter_descendants()
            .filter(|e| e.name == "cluster_property_set")
            .flat_map(|s| s.children_named("nvpair"))
            .find(|p| p.attr("name") == Some("stonith-timeout"))
            .and_then(|p| p.attr("value").and_then(|v| crate::device::parse_duration(v).ok()));
        Ok((levels, timeout))
    }

    async fn fence_with_any(&self, target: &str, action: &str, deadline: Instant) -> Result<Vec<String>, (OpStatus, String)> {
        let capable = self.capable(target).await;
        if capable.is_empty() {
            let registered: Vec<String> = self.devices().iter().map(|d| d.id.clone()).collect();
            let hint = if registered.is_empty() { "no device is registered on this node".to_string() } else { format!("registered here: {}", registered.join(", ")) };
            return Err((OpStatus::NoFenceDevice, format!("no fencing device can fence {target} ({hint})")));
        }
        let mut failures = Vec::new();
        for d in capable {
            match self.fence_with(&d, target, action, deadline).await {
                Ok(()) => return Ok(vec![d.id]),
                Err(e) => failures.push(e),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err((OpStatus::Error, failures.join("; ")))
    }

    async fn fence_with_levels(&self, target: &str, action: &str, levels: &[Level], deadline: Instant) -> Result<Vec<String>, (OpStatus, String)> {
        let mut failures = Vec::new();
        'levels: for level in levels {
            let mut used = Vec::new();
            for id in &level.devices {
                let Some(d) = self.device(id) else {
                    failures.push(format!("level {}: device {id} is not registered on {}", level.index, self.node()));
                    continue 'levels;
                };
                if !self.can_fence(&d, target).await {
                    failures.push(format!("level {}: device {id} cannot fence {target}", level.index));
                    continue 'levels;
                }
                if let Err(e) = self.fence_with(&d, target, action, deadline).await {
                    failures.push(format!("level {}: {e}", level.index));
                    continue 'levels;
                }
                used.push(id.clone());
            }
            return Ok(used);
        }
        Err((OpStatus::Error, failures.join("; ")))
    }

    /// Run one registered device against `target` (asked by another node's fencer).
    pub(crate) async fn execute_device(&self, id: &str, target: &str, action: &str, timeout: Duration) -> Result<(), String> {
        check_target(target, action)?;
        if target.eq_ignore_ascii_case(self.node()) && action != "on" {
            return Err(format!("{} does not fence itself", self.node()));
        }
        let Some(d) = self.device(id) else {
            return Err(format!("device {id} is not registered on {}", self.node()));
        };
        self.fence_with(&d, target, action, Instant::now() + timeout).await
    }

    /// One device, its delay first, then up to its retries while time remains.
    async fn fence_with(&self, d: &Device, target: &str, action: &str, deadline: Instant) -> Result<(), String> {
        let info = self.agent_info(d).await;
        let mut agent_action = d.agent_action(action);
        if agent_action == "reboot" && info.as_ref().is_some_and(|i| !i.supports("reboot") && i.supports("off")) {
            // A device that cannot reboot powers the node off, which is as safe.
            agent_action = "off".into();
        }
        let jitter = if d.delay_max.is_zero() { Duration::ZERO } else { rand::thread_rng().gen_range(Duration::ZERO..=d.delay_max) };
        let delay = d.base_delay(target) + jitter;
        if !delay.is_zero() {
            tracing::info!("{} waits {:?} before {agent_action} {target} (pcmk_delay)", d.id, delay);
            tokio::time::sleep_until((Instant::now() + delay).min(deadline).into()).await;
        }
        let mut last = String::new();
        for attempt in 1..=d.retries(action) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{}: {} timed out{}", d.id, agent_action, if last.is_empty() { String::new() } else { format!(" after: {last}") }));
            }
            let per_try = d.action_timeouts.get(action).map_or(left, |t| (*t).min(left));
            let r = self.run(d, &agent_action, Some(target), per_try).await;
            if r.status == OpStatus::Done && r.rc == OCF_SUCCESS {
                return Ok(());
            }
            last = describe_failure(&r);
            tracing::warn!("{} {agent_action} {target}: attempt {attempt} failed: {last}", d.id);
        }
        Err(format!("{}: {agent_action} {target} failed: {last}", d.id))
    }
}

impl Entry {
    pub fn to_pb(&self) -> proto::fenced::HistoryEntry {
        proto::fenced::HistoryEntry {
            id: self.id.clone(),
            target: self.target.clone(),
            action: self.action.clone(),
            client: self.client.clone(),
            origin: self.origin.clone(),
            executioner: self.executioner.clone(),
            devices: self.devices.clone(),
            state: self.state.name().into(),
            reason: self.reason.clone(),
            started_ms: self.started_ms,
            completed_ms: self.completed_ms,
        }
    }

    pub fn from_pb(e: &proto::fenced::HistoryEntry) -> Entry {
        Entry {
            id: e.id.clone(),
            target: e.target.clone(),
            action: e.action.clone(),
            client: e.client.clone(),
            origin: e.origin.clone(),
            executioner: e.executioner.clone(),
            devices: e.devices.clone(),
            state: match e.state.as_str() {
                "done" => State::Done,
                "pending" => State::Pending,
                _ => State::Failed,
            },
            reason: e.reason.clone(),
            started_ms: e.started_ms,
            completed_ms: e.completed_ms,
        }
    }
}

/// A target and action the fencer can act on.
fn check_target(target: &str, action: &str) -> Result<(), String> {
    if !matches!(action, "reboot" | "off" | "on") {
        return Err(format!("unknown fencing action {action:?}: use reboot, off or on"));
    }
    if target.is_empty() || target.contains(['\n', '\r', '\0', '=']) || target.len() > 255 {
        return Err(format!("{target:?} is not a node name"));
    }
    Ok(())
}

fn first_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).find(|l| !l.is_empty())
}

fn describe_failure(r: &OpResult) -> String {
    match r.status {
        OpStatus::Done => {
            let detail = first_line(&r.stderr).or(first_line(&r.stdout)).unwrap_or("");
            format!("rc {}{}", r.rc, if detail.is_empty() { String::new() } else { format!(" ({detail})") })
        }
        s => format!("{}{}", s.name(), if r.exit_reason.is_empty() { String::new() } else { format!(": {}", r.exit_reason) }),
    }
}
