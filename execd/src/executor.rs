//! The executor: per-resource op queues, recurring ops, cancellation, history and the
//! stream of results (EXECD-NOTES §2 "Serialisation", "Recurring monitors", "Cancel").
//!
//! Each resource has a worker task owning its FIFO and at most one active op; different
//! resources run in parallel, bounded by a semaphore. A recurring op runs at once when
//! registered, then `interval` after each run *completed*, through the same FIFO as every
//! other op of its resource. Its results are published only when rc or op status change.
//! Cancelling removes the repeat and kills an in-flight run (reported `Cancelled`).
//! Registering a recurring op that exists (same action and interval) replaces its request
//! without a second repeat.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot, Notify, Semaphore};

use crate::history::{OpRecord, RscHistory};
use crate::rc::OpStatus;
use crate::run::{ExecEnv, OpRequest, OpResult};

/// Ops running at once on a node, over all resources.
pub const DEFAULT_PARALLEL: usize = 64;

/// A finished op as published on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpEvent {
    pub record: OpRecord,
    pub stdout: String,
    pub stderr: String,
}

/// What a worker is asked.
enum Work {
    Exec { req: OpRequest, reply: oneshot::Sender<OpEvent>, queued: Instant },
    Recur { req: OpRequest },
    Due { key: (String, u64), generation: u64 },
    Cancel { action: String, interval_ms: u64, reply: oneshot::Sender<bool> },
    /// Cancel every recurring op of the resource.
    CancelAll { reply: oneshot::Sender<()> },
    Done { req: OpRequest, result: OpResult, job: Job, queued: Instant },
}

/// An op waiting in or taken from a resource's queue.
enum Job {
    Once { req: OpRequest, reply: oneshot::Sender<OpEvent> },
    Repeat { key: (String, u64), generation: u64 },
}

struct Recurring {
    req: OpRequest,
    generation: u64,
    last: Option<(i32, OpStatus)>,
}

struct Shared {
    env: ExecEnv,
    limit: Semaphore,
    events: broadcast::Sender<OpEvent>,
    history: Mutex<BTreeMap<String, RscHistory>>,
    next_call: Mutex<u64>,
}

/// The node's executor. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    shared: Arc<Shared>,
    workers: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Work>>>>,
}

impl Executor {
    pub fn new(env: ExecEnv, parallel: usize) -> Executor {
        let (events, _) = broadcast::channel(4096);
        let shared = Shared { env, limit: Semaphore::new(parallel.max(1)), events, history: Mutex::new(BTreeMap::new()), next_call: Mutex::new(1) };
        Executor { shared: Arc::new(shared), workers: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Results as they happen: every one-shot op, and recurring ops whose rc or status changed.
    pub fn subscribe(&self) -> broadcast::Receiver<OpEvent> {
        self.shared.events.subscribe()
    }

    /// The history of every resource this executor ran something for.
    pub fn history(&self) -> BTreeMap<String, RscHistory> {
        self.shared.history.lock().unwrap().clone()
    }

    fn worker(&self, rsc: &str) -> mpsc::UnboundedSender<Work> {
        let mut w = self.workers.lock().unwrap();
        if let Some(tx) = w.get(rsc).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(worker(self.shared.clone(), tx.downgrade(), rx));
        w.insert(rsc.to_string(), tx.clone());
        tx
    }

    /// Run a one-shot op after the resource's earlier ops; its result.
    pub async fn exec(&self, req: OpRequest) -> OpEvent {
        let (reply, rx) = oneshot::channel();
        let rsc = req.rsc.clone();
        self.shared.history.lock().unwrap().entry(rsc.clone()).or_insert_with(|| RscHistory::new(&rsc, &req.agent)).accept(&req, now_epoch());
        let _ = self.worker(&rsc).send(Work::Exec { req, reply, queued: Instant::now() });
        rx.await.expect("resource workers answer every op")
    }

    /// Start (or replace) a recurring op; its results arrive on [`Executor::subscribe`].
    pub fn recur(&self, req: OpRequest) {
        let rsc = req.rsc.clone();
        let _ = self.worker(&rsc).send(Work::Recur { req });
    }

    /// Forget a resource's records (cleanup, refresh): ops still running stay pending and
    /// recurring ops keep running (their next change is recorded again).
    pub fn forget(&self, rsc: &str) {
        let mut h = self.shared.history.lock().unwrap();
        match h.get_mut(rsc) {
            Some(r) if !r.pending.is_empty() => {
                r.last = None;
                r.last_failure = None;
                r.recurring.clear();
            }
            Some(_) => drop(h.remove(rsc)),
            None => {}
        }
    }

    /// Cancel a recurring op; false if there was none.
    pub async fn cancel(&self, rsc: &str, action: &str, interval_ms: u64) -> bool {
        let (reply, rx) = oneshot::channel();
        let _ = self.worker(rsc).send(Work::Cancel { action: action.to_string(), interval_ms, reply });
        rx.await.unwrap_or(false)
    }

    /// Stop everything that may run here, on this node's own authority (it learnt it was
    /// fenced): every recurring op cancelled first, then each resource that may be active
    /// demoted if promoted and stopped, the most recently started first (the reverse of the
    /// order the cluster started them in), with the parameters of its last op. The results,
    /// in order.
    pub async fn stop_all(&self) -> Vec<OpEvent> {
        let resources: Vec<RscHistory> = self.history().into_values().collect();
        for h in &resources {
            let (reply, rx) = oneshot::channel();
            let _ = self.worker(&h.id).send(Work::CancelAll { reply });
            let _ = rx.await;
        }
        // Their records go with them, as a cancel's do.
        for h in self.shared.history.lock().unwrap().values_mut() {
            h.recurring.clear();
        }
        let mut active: Vec<&RscHistory> = resources.iter().filter(|h| h.may_be_active() && h.last_request.is_some()).collect();
        active.sort_by_key(|h| std::cmp::Reverse(if h.pending.is_empty() { h.last.as_ref().map_or(0, |r| r.call_id) } else { u64::MAX }));
        let mut out = Vec::new();
        for h in active {
            let Some(last) = &h.last_request else { continue };
            let actions: &[&str] = if h.promoted() { &["demote", "stop"] } else { &["stop"] };
            for &action in actions {
                let mut meta = last.meta.clone();
                meta.remove("transition_key");
                meta.remove("op_target_rc");
                let req = OpRequest { action: action.into(), interval_ms: 0, timeout_ms: last.timeout_ms.max(STOP_ALL_TIMEOUT_MS), meta, ..last.clone() };
                out.push(self.exec(req).await);
            }
        }
        out
    }
}

/// Least time a stop of [`Executor::stop_all`] is given (Pacemaker's default op timeout).
const STOP_ALL_TIMEOUT_MS: u64 = 20_000;

async fn worker(shared: Arc<Shared>, me: mpsc::WeakUnboundedSender<Work>, mut rx: mpsc::UnboundedReceiver<Work>) {
    let mut queue: VecDeque<(Job, Instant)> = VecDeque::new();
    let mut recurring: HashMap<(String, u64), Recurring> = HashMap::new();
    let mut active: Option<((String, u64), Arc<Notify>)> = None;
    let mut generation = 0u64;
    while let Some(w) = rx.recv().await {
        match w {
            Work::Exec { req, reply, queued } => queue.push_back((Job::Once { req, reply }, queued)),
            Work::Recur { req } => {
                // A (re-)registration runs at once and reports its first result whatever it
                // is: the caller (the controller confirming an action) waits for it. The
                // previous registration's pending run is dropped by its generation.
                let key = (req.action.clone(), req.interval_ms);
                generation += 1;
                recurring.insert(key.clone(), Recurring { req, generation, last: None });
                queue.retain(|(j, _)| !matches!(j, Job::Repeat { key: k, .. } if *k == key));
                queue.push_back((Job::Repeat { key, generation }, Instant::now()));
            }
            Work::Due { key, generation } => {
                if recurring.get(&key).is_some_and(|r| r.generation == generation) {
                    queue.push_back((Job::Repeat { key, generation }, Instant::now()));
                }
            }
            Work::Cancel { action, interval_ms, reply } => {
                let key = (action, interval_ms);
                let known = recurring.remove(&key).is_some();
                queue.retain(|(j, _)| !matches!(j, Job::Repeat { key: k, .. } if *k == key));
                if let Some((k, n)) = &active {
                    if *k == key {
                        n.notify_one();
                    }
                }
                let _ = reply.send(known);
            }
            Work::CancelAll { reply } => {
                recurring.clear();
                queue.retain(|(j, _)| !matches!(j, Job::Repeat { .. }));
                if let Some(((_, interval_ms), n)) = &active {
                    if *interval_ms > 0 {
                        n.notify_one();
                    }
                }
                let _ = reply.send(());
            }
            Work::Done { req, result, job, queued } => {
                active = None;
                finish(&shared, &me, &mut recurring, req, result, job, queued);
            }
        }
        if active.is_none() {
            while let Some((job, queued)) = queue.pop_front() {
                let req = match &job {
                    Job::Once { req, .. } => req.clone(),
                    Job::Repeat { key, generation } => match recurring.get(key) {
                        Some(r) if r.generation == *generation => r.req.clone(),
                        _ => continue,
                    },
                };
                let cancel = Arc::new(Notify::new());
                active = Some(((req.action.clone(), req.interval_ms), cancel.clone()));
                let (shared, me) = (shared.clone(), me.clone());
                tokio::spawn(async move {
                    let permit = shared.limit.acquire().await;
                    let result = crate::stonith::dispatch(&shared.env, &req, Some(cancel)).await;
                    drop(permit);
                    if let Some(tx) = me.upgrade() {
                        let _ = tx.send(Work::Done { req, result, job, queued });
                    }
                });
                break;
            }
        }
    }
}

fn now_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Record a finished op, publish it when due, answer its caller, arm the next repeat.
fn finish(
    shared: &Shared,
    me: &mpsc::WeakUnboundedSender<Work>,
    recurring: &mut HashMap<(String, u64), Recurring>,
    req: OpRequest,
    result: OpResult,
    job: Job,
    queued: Instant,
) {
    let call_id = {
        let mut c = shared.next_call.lock().unwrap();
        *c += 1;
        *c - 1
    };
    let queue_ms = queued.elapsed().as_millis().saturating_sub(result.exec_ms as u128) as u64;
    let record = {
        let mut h = shared.history.lock().unwrap();
        let rh = h.entry(req.rsc.clone()).or_insert_with(|| RscHistory::new(&req.rsc, &req.agent));
        rh.record(&req, &result, call_id, queue_ms, now_epoch())
    };
    let event = OpEvent { record, stdout: result.stdout.clone(), stderr: result.stderr.clone() };
    match job {
        Job::Once { reply, .. } => {
            let _ = shared.events.send(event.clone());
            let _ = reply.send(event);
        }
        Job::Repeat { key, generation } => {
            let Some(r) = recurring.get_mut(&key) else {
                // Cancelled while it ran: the cancellation is the news.
                let _ = shared.events.send(event);
                return;
            };
            if r.generation != generation {
                return;
            }
            let now = (result.rc, result.status);
            if r.last != Some(now) {
                r.last = Some(now);
                let _ = shared.events.send(event);
            }
            let (me, interval) = (me.clone(), Duration::from_millis(key.1.max(1)));
            tokio::spawn(async move {
                tokio::time::sleep(interval).await;
                if let Some(tx) = me.upgrade() {
                    let _ = tx.send(Work::Due { key, generation });
                }
            });
        }
    }
}
