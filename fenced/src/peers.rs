//! The fencers of a cluster working as one, over the process group `halo-fenced`
//! (BLUEPRINT: "fenced on a node that can run the device runs the agent → result broadcast").
//!
//! A request reaches one fencer, the origin. It announces the operation to the group; every
//! fencer records it as pending and answers which of its registered devices can fence the
//! target. The origin waits for every member's answer (or [`QUERY_WAIT`]), then has the
//! devices run, level by level when a topology applies, each on a node that has it and is
//! not the target, and announces the end; every fencer records the same result. The group
//! delivers every message to every member in one order, so when two origins announce the
//! same target and action, every fencer sees the same one first: the later one joins it
//! and the node is fenced once. A node name in a message must be its sender's (membership
//! authenticates the sender); anything else is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use execd::rc::OpStatus;
use prost::Message;
use proto::fenced as pb;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::fencer::{Entry, Fencer, State as EntryState};
use crate::topology::Level;

pub const GROUP: &str = "halo-fenced";
/// How long an origin waits for every fencer's answer about its devices.
pub const QUERY_WAIT: Duration = Duration::from_secs(5);
/// How long an origin waits for the group to deliver its own announcement.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// What happened to an announcement.
enum Announced {
    Proceed,
    /// An identical operation was announced first: wait for its end.
    Joined(String),
}

#[derive(Default)]
struct Shared {
    /// Node names whose fencer is in the group.
    members: BTreeSet<String>,
    /// Announced and not finished, in delivery order.
    inflight: Vec<pb::HistoryEntry>,
    announce_waiters: HashMap<String, oneshot::Sender<Announced>>,
    capable_waiters: HashMap<String, mpsc::UnboundedSender<pb::Capable>>,
    /// (op, device) -> (the node running it, who waits).
    exec_waiters: HashMap<(String, String), (String, oneshot::Sender<pb::Executed>)>,
    finished_waiters: HashMap<String, Vec<oneshot::Sender<pb::HistoryEntry>>>,
    /// Devices reported to have succeeded, per operation in flight: (device, node).
    successes: HashMap<String, Vec<(String, String)>>,
}

/// This node's link to the other fencers.
pub struct Peers {
    me: String,
    names: HashMap<u32, String>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    shared: Mutex<Shared>,
    members_changed: Notify,
}

impl Peers {
    /// `names`: node id -> node name for every configured node; `out` carries encoded
    /// messages to the group.
    pub fn new(me: &str, names: HashMap<u32, String>, out: mpsc::UnboundedSender<Vec<u8>>) -> Arc<Peers> {
        Arc::new(Peers { me: me.to_string(), names, out, shared: Mutex::new(Shared::default()), members_changed: Notify::new() })
    }

    fn send(&self, body: pb::peer_message::Body) {
        let _ = self.out.send(pb::PeerMessage { body: Some(body) }.encode_to_vec());
    }

    /// Names of the nodes whose fencer is in the group.
    pub fn members(&self) -> Vec<String> {
        self.shared.lock().unwrap().members.iter().cloned().collect()
    }

    /// Tell every fencer a device's new monitor result.
    pub fn announce_health(&self, device: &str, h: &crate::fencer::Health) {
        self.send(pb::peer_message::Body::Health(pb::DeviceHealth { device: device.to_string(), node: h.node.clone(), ok: h.ok, reason: h.reason.clone(), at_ms: h.at_ms }));
    }

    /// The group's members changed: `members` are the node ids now in it.
    pub fn on_members(&self, fencer: &Fencer, members: &[u32]) {
        let now: BTreeSet<String> = members.iter().filter_map(|id| self.names.get(id).cloned()).collect();
        let mut s = self.shared.lock().unwrap();
        let gone: Vec<String> = s.members.difference(&now).cloned().collect();
        let joined = now.difference(&s.members).any(|n| *n != self.me);
        // The lowest-named node among those that stay tells newcomers what it knows.
        let stayed: BTreeSet<&String> = s.members.intersection(&now).collect();
        if joined && stayed.first().is_some_and(|n| **n == self.me) {
            let entries = fencer.history(None).iter().map(Entry::to_pb).collect();
            self.send(pb::peer_message::Body::History(pb::HistorySync { entries }));
        }
        s.members = now;
        for node in &gone {
            // An operation whose origin left ends here: nobody is left to finish it.
            let orphans: Vec<pb::HistoryEntry> = s.inflight.iter().filter(|e| &e.origin == node).cloned().collect();
            s.inflight.retain(|e| &e.origin != node);
            for mut e in orphans {
                let done = s.successes.remove(&e.id).unwrap_or_default();
                if e.target.eq_ignore_ascii_case(node) && !done.is_empty() {
                    // The target asked for itself and left once a device succeeded: fenced.
                    e.state = "done".into();
                    let mut nodes: Vec<String> = done.iter().map(|(_, n)| n.clone()).collect();
                    nodes.dedup();
                    e.executioner = nodes.join(",");
                    e.devices = done.into_iter().map(|(d, _)| d).collect();
                } else {
                    e.state = "failed".into();
                    e.reason = format!("its origin {node} left before the operation completed");
                }
                e.completed_ms = crate::fencer::now_ms();
                fencer.record(Entry::from_pb(&e));
                for w in s.finished_waiters.remove(&e.id).unwrap_or_default() {
                    let _ = w.send(e.clone());
                }
            }
            let lost: Vec<(String, String)> = s.exec_waiters.iter().filter(|(_, (n, _))| n == node).map(|(k, _)| k.clone()).collect();
            for k in lost {
                if let Some((n, w)) = s.exec_waiters.remove(&k) {
                    let _ = w.send(pb::Executed { op_id: k.0.clone(), node: n.clone(), device: k.1.clone(), ok: false, reason: format!("{n} left the cluster while running {}", k.1) });
                }
            }
        }
        drop(s);
        self.members_changed.notify_waiters();
    }

    /// A message of the group, from the node with id `from`.
    pub fn on_message(self: &Arc<Self>, fencer: &Fencer, from: u32, data: &[u8]) {
        let Some(sender) = self.names.get(&from).cloned() else {
            tracing::warn!("a fencer message from unknown node id {from} dropped");
            return;
        };
        let Ok(pb::PeerMessage { body: Some(body) }) = pb::PeerMessage::decode(data) else {
            tracing::warn!("a malformed fencer message from {sender} dropped");
            return;
        };
        use pb::peer_message::Body;
        let forged = |what: &str, claimed: &str| {
            tracing::warn!("a {what} from {sender} claiming to come from {claimed:?} dropped");
        };
        match body {
            Body::Announce(e) => {
                if e.origin != sender {
                    return forged("fencing request", &e.origin);
                }
                let mut s = self.shared.lock().unwrap();
                let earlier = s.inflight.iter().find(|x| x.target.eq_ignore_ascii_case(&e.target) && x.action == e.action).map(|x| x.id.clone());
                let mine = e.origin == self.me;
                let waiter = if mine { s.announce_waiters.remove(&e.id) } else { None };
                if let Some(first) = earlier {
                    if let Some(w) = waiter {
                        let _ = w.send(Announced::Joined(first));
                    }
                    return;
                }
                s.inflight.push(e.clone());
                drop(s);
                fencer.record(Entry::from_pb(&e));
                if let Some(w) = waiter {
                    let _ = w.send(Announced::Proceed);
                }
                // Which of this node's devices can fence the target (none when it is the target).
                let (this, fencer) = (self.clone(), fencer.clone());
                tokio::spawn(async move {
                    let devices = if e.target.eq_ignore_ascii_case(&this.me) {
                        Vec::new()
                    } else {
                        fencer.capable(&e.target).await.into_iter().map(|d| pb::CapableDevice { id: d.id, priority: d.priority }).collect()
                    };
                    this.send(Body::Capable(pb::Capable { op_id: e.id, node: this.me.clone(), devices }));
                });
            }
            Body::Capable(c) => {
                if c.node != sender {
                    return forged("device answer", &c.node);
                }
                if let Some(w) = self.shared.lock().unwrap().capable_waiters.get(&c.op_id) {
                    let _ = w.send(c);
                }
            }
            Body::Execute(x) => {
                if x.node != self.me {
                    return;
                }
                let known = self.shared.lock().unwrap().inflight.iter().any(|e| e.id == x.op_id && e.origin == sender);
                if !known {
                    return forged("device run for an operation it did not announce", &sender);
                }
                let (this, fencer) = (self.clone(), fencer.clone());
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(x.timeout_ms.max(1));
                    let r = fencer.execute_device(&x.device, &x.target, &x.action, timeout).await;
                    let (ok, reason) = match r {
                        Ok(()) => (true, String::new()),
                        Err(e) => (false, e),
                    };
                    this.send(Body::Executed(pb::Executed { op_id: x.op_id, node: this.me.clone(), device: x.device, ok, reason }));
                });
            }
            Body::Executed(r) => {
                if r.node != sender {
                    return forged("device result", &r.node);
                }
                let mut s = self.shared.lock().unwrap();
                if r.ok && s.inflight.iter().any(|e| e.id == r.op_id) {
                    s.successes.entry(r.op_id.clone()).or_default().push((r.device.clone(), r.node.clone()));
                }
                let key = (r.op_id.clone(), r.device.clone());
                if s.exec_waiters.get(&key).is_some_and(|(n, _)| *n == r.node) {
                    if let Some((_, w)) = s.exec_waiters.remove(&key) {
                        let _ = w.send(r);
                    }
                }
            }
            Body::Health(h) => {
                if h.node != sender {
                    return forged("device monitor result", &h.node);
                }
                if sender != self.me {
                    fencer.set_health(&h.device, crate::fencer::Health { node: h.node, ok: h.ok, reason: h.reason, at_ms: h.at_ms });
                }
            }
            Body::History(h) => {
                if sender == self.me {
                    return;
                }
                let mut s = self.shared.lock().unwrap();
                for e in &h.entries {
                    if e.state == "pending" && !s.inflight.iter().any(|x| x.id == e.id) {
                        s.inflight.push(e.clone());
                    }
                }
                drop(s);
                for e in &h.entries {
                    if fencer.history(None).iter().all(|x| x.id != e.id) {
                        fencer.record(Entry::from_pb(e));
                    }
                }
            }
            Body::Finished(e) => {
                if e.origin != sender {
                    return forged("fencing result", &e.origin);
                }
                let mut s = self.shared.lock().unwrap();
                s.inflight.retain(|x| x.id != e.id);
                s.successes.remove(&e.id);
                let waiters = s.finished_waiters.remove(&e.id).unwrap_or_default();
                drop(s);
                fencer.record(Entry::from_pb(&e));
                fencer.ended(&e);
                for w in waiters {
                    let _ = w.send(e.clone());
                }
            }
        }
    }

    /// Carry out `entry` (announced here) across the cluster; the entry as it ended, and
    /// the request's status (done, no fence device, or error).
    pub async fn fence(self: &Arc<Self>, fencer: &Fencer, mut entry: Entry, levels: &[Level], deadline: Instant) -> (Entry, OpStatus) {
        let id = entry.id.clone();
        let (atx, arx) = oneshot::channel();
        let (ctx, mut crx) = mpsc::unbounded_channel();
        {
            let mut s = self.shared.lock().unwrap();
            s.announce_waiters.insert(id.clone(), atx);
            s.capable_waiters.insert(id.clone(), ctx);
        }
        self.send(pb::peer_message::Body::Announce(entry.to_pb()));
        let announced = tokio::time::timeout(DELIVERY_WAIT, arx).await;
        let cleanup = |this: &Peers| {
            let mut s = this.shared.lock().unwrap();
            s.announce_waiters.remove(&id);
            s.capable_waiters.remove(&id);
        };
        match announced {
            Ok(Ok(Announced::Proceed)) => {}
            Ok(Ok(Announced::Joined(first))) => {
                cleanup(self);
                tracing::info!("{} {} joins operation {first}, announced first", entry.action, entry.target);
                return match self.wait_finished(&first, deadline).await.map(|e| Entry::from_pb(&e)) {
                    Some(e) if e.state == EntryState::Done => (e, OpStatus::Done),
                    Some(e) => (e, OpStatus::Error),
                    None => {
                        entry.state = EntryState::Failed;
                        entry.reason = format!("operation {first}, which this request joined, did not end in time");
                        (entry, OpStatus::Error)
                    }
                };
            }
            _ => {
                cleanup(self);
                entry.state = EntryState::Failed;
                entry.reason = "the fencers' process group did not deliver the request (is halo-membershipd running?)".into();
                fencer.record(entry.clone());
                return (entry, OpStatus::Error);
            }
        }
        // Every member's answer, or as many as come in QUERY_WAIT.
        let mut answers: BTreeMap<String, Vec<pb::CapableDevice>> = BTreeMap::new();
        let query_end = (Instant::now() + QUERY_WAIT).min(deadline);
        loop {
            let missing = {
                let s = self.shared.lock().unwrap();
                s.members.iter().any(|m| !answers.contains_key(m))
            };
            if !missing {
                break;
            }
            let changed = self.members_changed.notified();
            tokio::select! {
                c = crx.recv() => match c {
                    Some(c) => { answers.insert(c.node.clone(), c.devices); }
                    None => break,
                },
                _ = changed => {}
                _ = tokio::time::sleep_until(query_end.into()) => break,
            }
        }
        cleanup(self);
        let status = match self.execute(fencer, &entry, &answers, levels, deadline).await {
            Ok(runs) => {
                let mut nodes: Vec<String> = runs.iter().map(|(_, n)| n.clone()).collect();
                nodes.dedup();
                entry.executioner = nodes.join(",");
                entry.devices = runs.into_iter().map(|(d, _)| d).collect();
                entry.state = EntryState::Done;
                OpStatus::Done
            }
            Err((status, reason)) => {
                entry.state = EntryState::Failed;
                entry.reason = reason;
                status
            }
        };
        entry.completed_ms = crate::fencer::now_ms();
        fencer.record(entry.clone());
        // Answer once the group has delivered the end here too: the other fencers have it
        // in the same order, so a history read right after the answer shows it.
        let (tx, rx) = oneshot::channel();
        self.shared.lock().unwrap().finished_waiters.entry(id.clone()).or_default().push(tx);
        self.send(pb::peer_message::Body::Finished(entry.to_pb()));
        if tokio::time::timeout(DELIVERY_WAIT, rx).await.is_err() {
            tracing::warn!("the end of {id} was not delivered back within {DELIVERY_WAIT:?}");
            self.shared.lock().unwrap().finished_waiters.remove(&id);
        }
        (entry, status)
    }

    /// Tell every fencer how an operation of this node ended (a manual confirmation).
    pub fn announce_end(&self, entry: &Entry) {
        self.send(pb::peer_message::Body::Finished(entry.to_pb()));
    }

    async fn wait_finished(&self, id: &str, deadline: Instant) -> Option<pb::HistoryEntry> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.shared.lock().unwrap();
            if !s.inflight.iter().any(|e| e.id == id) {
                // Already over (or its origin left): the history has it.
                return None;
            }
            s.finished_waiters.entry(id.to_string()).or_default().push(tx);
        }
        tokio::time::timeout_at(deadline.into(), rx).await.ok().and_then(Result::ok)
    }

    /// Run the devices: the levels in order, else every (device, node) pair by priority.
    /// Returns the (device, node) pairs that fenced the target.
    async fn execute(&self, fencer: &Fencer, entry: &Entry, answers: &BTreeMap<String, Vec<pb::CapableDevice>>, levels: &[Level], deadline: Instant) -> Result<Vec<(String, String)>, (OpStatus, String)> {
        let target = &entry.target;
        // (device, node, priority): never the target itself; this node first among equals.
        let mut offers: Vec<(String, String, i64)> = answers
            .iter()
            .filter(|(node, _)| !node.eq_ignore_ascii_case(target))
            .flat_map(|(node, ds)| ds.iter().map(move |d| (d.id.clone(), node.clone(), d.priority)))
            .collect();
        offers.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.1 != self.me).cmp(&(b.1 != self.me))).then_with(|| a.1.cmp(&b.1)).then_with(|| a.0.cmp(&b.0)));
        let asked: Vec<&str> = answers.keys().map(String::as_str).collect();
        if offers.is_empty() {
            let asked = if asked.is_empty() { "nobody".to_string() } else { asked.join(", ") };
            return Err((OpStatus::NoFenceDevice, format!("no fencing device on any node can fence {target} (answered: {asked})")));
        }
        let mut failures = Vec::new();
        if !levels.is_empty() {
            'levels: for level in levels {
                let mut used = Vec::new();
                for dev in &level.devices {
                    let Some((_, node, _)) = offers.iter().find(|(d, _, _)| d == dev) else {
                        failures.push(format!("level {}: no node can fence {target} with {dev}", level.index));
                        continue 'levels;
                    };
                    if let Err(e) = self.run_on(fencer, entry, dev, node, deadline).await {
                        failures.push(format!("level {}: {e}", level.index));
                        continue 'levels;
                    }
                    used.push((dev.clone(), node.clone()));
                }
                return Ok(used);
            }
            return Err((OpStatus::Error, failures.join("; ")));
        }
        let mut tried = BTreeSet::new();
        for (dev, node, _) in &offers {
            if !tried.insert(dev.clone()) {
                continue;
            }
            match self.run_on(fencer, entry, dev, node, deadline).await {
                Ok(()) => return Ok(vec![(dev.clone(), node.clone())]),
                Err(e) => failures.push(e),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err((OpStatus::Error, failures.join("; ")))
    }

    /// One device on one node: here directly, elsewhere by asking that node's fencer.
    async fn run_on(&self, fencer: &Fencer, entry: &Entry, device: &str, node: &str, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{device}: no time left"));
        }
        if node == self.me {
            return fencer.execute_device(device, &entry.target, &entry.action, left).await;
        }
        let (tx, rx) = oneshot::channel();
        self.shared.lock().unwrap().exec_waiters.insert((entry.id.clone(), device.to_string()), (node.to_string(), tx));
        tracing::info!("asks {node} to {} {} with {device}", entry.action, entry.target);
        self.send(pb::peer_message::Body::Execute(pb::Execute {
            op_id: entry.id.clone(),
            node: node.to_string(),
            device: device.to_string(),
            target: entry.target.clone(),
            action: entry.action.clone(),
            timeout_ms: left.as_millis() as u64,
        }));
        // The executing node enforces the timeout; a little slack for its answer to arrive.
        let r = tokio::time::timeout_at((deadline + Duration::from_secs(5)).into(), rx).await;
        self.shared.lock().unwrap().exec_waiters.remove(&(entry.id.clone(), device.to_string()));
        match r {
            Ok(Ok(x)) if x.ok => Ok(()),
            Ok(Ok(x)) => Err(x.reason),
            _ => Err(format!("{node} did not report the result of {device} in time")),
        }
    }
}
