//! halo-controld, the daemon: one task owns the [`Controller`] core and performs its
//! actions (the order is the one `core.rs` writes down); helpers only do I/O and report
//! back through one bounded channel.
//!
//! ```text
//! membershipd ── CpgJoin("halo-controld") ──► confchg / deliver ─┐
//! membershipd ── Quorum (every 500 ms) ─────────────────────────►│
//! cibd ── Watch (Follower: local copy + raft index) ────────────►│   core task
//! execd ── Events (recurring results) ──────────────────────────►│
//! fenced ── Watch (fencing operations as they end) ─────────────►│   (Controller)
//! helpers: writer (CIB writes, one at a time, in order), sender ─┤
//!   (group messages, in order), exec / fence / history / scheduler ◄┘
//! ```
//! The scheduler runs on a blocking thread over a copy of the followed CIB taken once the
//! copy includes the DC's own acknowledged writes; a panic there is caught and logged, the
//! controller goes on (it is a library call, not a process: no IPC, no second copy of
//! the CIB; see docs/architecture.md).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use common::config::ClusterConfig;
use common::paths::{Daemon, NodePaths};
use proto::controld as pb;
use proto::controld::controller_server::{Controller as ControllerApi, ControllerServer};
use proto::execd as xpb;
use proto::execd::executor_client::ExecutorClient;
use proto::fenced as fpb;
use proto::fenced::fencer_client::FencerClient;
use proto::membership as mpb;
use proto::membership::membership_client::MembershipClient;
use prost::Message as _;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::core::{Action, CibFacts, Config, Controller, Input, Now};

pub const GROUP: &str = "halo-controld";
/// How often the CIB's voters are read again.
const VOTERS_POLL: Duration = Duration::from_secs(2);
/// How long a change of the CIB's voters is asked again while the CIB refuses it.
const VOTERS_RETRY_FOR: Duration = Duration::from_secs(60);
/// Bound of the core's input queue and of the writer's and sender's queues.
const QUEUE: usize = 4096;
/// How long a status write that raft could not take for want of a leader is offered again.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(30);
/// Most queued status writes combined into one.
const WRITE_BATCH: usize = 512;
/// Peer messages are batched into group messages of about this size (the group's limit is
/// 1 MiB); a single message larger than `MAX_PEER_MESSAGE` cannot travel.
const BATCH_BYTES: usize = 256 * 1024;
const MAX_PEER_MESSAGE: usize = 960 * 1024;

pub struct Setup {
    pub me: u32,
    pub name: String,
    pub nodes: BTreeMap<u32, String>,
    pub socket: PathBuf,
    pub cib_socket: PathBuf,
    pub execd_socket: PathBuf,
    pub fenced_socket: PathBuf,
    pub membership_socket: PathBuf,
}

impl Setup {
    pub fn load(config_path: &Path, node: Option<&str>) -> Result<Setup> {
        let config = ClusterConfig::load(config_path).map_err(|e| anyhow!("{e}"))?.config;
        let local = config.find_local(node).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
        let paths = NodePaths::from_config(&config);
        Ok(Setup {
            me: local.nodeid,
            name: local.name,
            nodes: config.nodes.iter().map(|n| (n.nodeid, n.name.clone())).collect(),
            socket: paths.socket(Daemon::Controld),
            cib_socket: paths.socket(Daemon::Cibd),
            execd_socket: paths.socket(Daemon::Execd),
            fenced_socket: paths.socket(Daemon::Fenced),
            membership_socket: paths.socket(Daemon::Membershipd),
        })
    }
}

/// A DC identity for this process: a random UUID (version 4 layout).
fn new_dc_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-4{}-{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[16..20], &h[20..32])
}

struct Api {
    status: mpsc::Sender<oneshot::Sender<pb::StatusReply>>,
    attributes: mpsc::Sender<pb::AttributeUpdate>,
    forgets: mpsc::Sender<pb::ForgetRecords>,
}

#[tonic::async_trait]
impl ControllerApi for Api {
    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        let (tx, rx) = oneshot::channel();
        self.status.send(tx).await.map_err(|_| Status::unavailable("the controller is stopping"))?;
        rx.await.map(Response::new).map_err(|_| Status::unavailable("the controller is stopping"))
    }

    async fn update_attribute(&self, req: Request<pb::AttributeUpdate>) -> Result<Response<pb::AttributeReply>, Status> {
        // Agents run as root (or the daemon's user); attributes steer placement.
        proto::require_root_or_self(&req, "halo-controld", "set node attributes")?;
        let a = req.into_inner();
        if a.name.is_empty() || a.name.len() > 256 || a.value.len() > 4096 {
            return Err(Status::invalid_argument("an attribute needs a name (at most 256 bytes) and a value of at most 4096 bytes"));
        }
        self.attributes.send(a).await.map_err(|_| Status::unavailable("the controller is stopping"))?;
        Ok(Response::new(pb::AttributeReply {}))
    }

    async fn forget(&self, req: Request<pb::ForgetRecords>) -> Result<Response<pb::AttributeReply>, Status> {
        proto::require_root_or_self(&req, "halo-controld", "clean up resources")?;
        let f = req.into_inner();
        if f.node == 0 || f.rsc.len() > 100_000 || f.rsc.iter().any(|r| r.is_empty() || r.len() > 256) {
            return Err(Status::invalid_argument("a forget names a node and resource ids (each at most 256 bytes)"));
        }
        self.forgets.send(f).await.map_err(|_| Status::unavailable("the controller is stopping"))?;
        Ok(Response::new(pb::AttributeReply {}))
    }
}

/// Whether a committed change touches what scheduling reads beyond the DC's own status
/// writes: the configuration, transient attributes, tickets.
pub fn replan_needed(change: &cibclient::Change) -> bool {
    change.paths().any(|p| p.starts_with("/cib/configuration") || p.contains("transient_attributes") || p.contains("tickets"))
        || change.patch.children_named("change").any(|c| c.iter_descendants().any(|e| e.name == "transient_attributes" || e.name == "configuration" || e.name == "tickets"))
}

pub fn facts_of(cib: &cib::Cib) -> CibFacts {
    let mut f = CibFacts { have_quorum: cib.doc.root.attr("have-quorum").map(cib::model::is_true), dc_uuid: cib.doc.root.attr("dc-uuid").map(str::to_string), ..Default::default() };
    for ns in &cib.status.nodes {
        if let Ok(id) = ns.id.parse() {
            f.seen.insert(id);
        }
        let names: Vec<String> = ns.transient.iter().flat_map(|s| s.pairs.iter().map(|(k, _)| k.clone())).filter(|k| k.starts_with("fail-count-") || k.starts_with("last-failure-")).collect();
        if !names.is_empty() {
            f.fail_attrs.insert(ns.id.clone(), names);
        }
    }
    let states = cib.doc.root.child("status").into_iter().flat_map(|s| s.children_named("node_state"));
    for ns in states {
        let locked: Vec<String> = ns
            .children_named("lrm")
            .flat_map(|l| l.children_named("lrm_resources"))
            .flat_map(|l| l.children_named("lrm_resource"))
            .filter(|r| r.attr("shutdown-lock").is_some_and(|t| t != "0"))
            .map(|r| r.to_xml())
            .collect();
        if let (Some(id), false) = (ns.id(), locked.is_empty()) {
            f.locked.insert(id.to_string(), locked);
        }
    }
    f
}

/// The scheduler over one CIB: its graph and the facts the DC needs. A panic is caught.
fn schedule(doc: cib::xml::Document) -> Option<(scheduler::graph::Graph, CibFacts)> {
    let run = std::panic::catch_unwind(move || {
        let cib = match cib::Cib::from_document(doc) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("the CIB cannot be scheduled: {e}");
                return None;
            }
        };
        let now = chrono::Utc::now().naive_utc();
        let t0 = Instant::now();
        let graph = scheduler::schedule(&cib, now).graph();
        tracing::debug!("scheduler: {} actions in {:?}", graph.actions.len(), t0.elapsed());
        Some((graph, facts_of(&cib)))
    });
    run.unwrap_or_else(|_| {
        tracing::error!("the scheduler panicked; the controller goes on");
        None
    })
}

async fn connect(path: &Path) -> Result<Channel> {
    proto::connect_unix_within(path.to_path_buf(), Duration::from_secs(60)).await.map_err(|e| anyhow!("{e}"))
}

pub async fn run(setup: Setup, listener: UnixListener, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let t0 = Instant::now();
    let now = move || Now { ms: t0.elapsed().as_millis() as u64, epoch_s: chrono::Utc::now().timestamp() };
    let mut membership = MembershipClient::new(connect(&setup.membership_socket).await?);
    let execd = ExecutorClient::new(connect(&setup.execd_socket).await?);
    let fencer = FencerClient::new(connect(&setup.fenced_socket).await?);
    let mut follower = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match cibclient::Follower::start(&setup.cib_socket).await {
                Ok(f) => break f,
                Err(e) if Instant::now() >= deadline => return Err(anyhow!("{e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    let writer_cib = cibclient::Cib::connect(&setup.cib_socket).await.map_err(|e| anyhow!("{e}"))?;
    let mut events = execd.clone().events(xpb::EventsRequest { recurring_only: true }).await.map_err(|e| anyhow!("halo-execd: {}", e.message()))?.into_inner();
    let mut fencing = fencer.clone().watch(fpb::WatchRequest {}).await.map_err(|e| anyhow!("halo-fenced: {}", e.message()))?.into_inner();
    let (mut group, pid) = proto::cpg_join(&mut membership, GROUP).await.map_err(|e| anyhow!("{e}"))?;
    tracing::info!("node {} ({}) joined {GROUP}", setup.name, setup.me);

    let (tx, mut rx) = mpsc::channel::<Input>(QUEUE);
    // The CIB's voters, for the core to know whether this partition can write (the CIB is
    // the authority; the core starts from the configured nodes): read at start and again
    // every VOTERS_POLL, since another node's controller may change them.
    let voters_cib = writer_cib.clone();
    {
        let (mut cib, tx) = (voters_cib.clone(), tx.clone());
        tokio::spawn(async move {
            let mut known: Option<Vec<u64>> = None;
            loop {
                match cib.status().await {
                    Ok(s) if known.as_ref() != Some(&s.voters) => {
                        known = Some(s.voters.clone());
                        if tx.send(Input::CibVoters { voters: s.voters.into_iter().map(|v| v as u32).collect() }).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot read the CIB's voters: {e}"),
                }
                tokio::time::sleep(VOTERS_POLL).await;
            }
        });
    }
    // The writer: CIB writes one at a time, in order. Each carries the era it was queued in;
    // `Action::AbandonWrites` starts a new era, and the writes of an older one are dropped,
    // not written (nor offered again).
    let era = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (write_tx, mut write_rx) = mpsc::channel::<(u64, proto::cib::WriteRequest, u64)>(QUEUE);
    {
        let tx = tx.clone();
        let mut cib = writer_cib;
        let era = era.clone();
        tokio::spawn(async move {
            let current = |e: u64| e == era.load(std::sync::atomic::Ordering::SeqCst);
            while let Some(first) = write_rx.recv().await {
                // What else is queued goes with it: consecutive status modifies become one
                // write (records::combine), so a burst of results costs one raft entry.
                let mut queued = vec![first];
                while queued.len() < WRITE_BATCH {
                    match write_rx.try_recv() {
                        Ok(w) => queued.push(w),
                        Err(_) => break,
                    }
                }
                let (queued, abandoned): (Vec<_>, Vec<_>) = queued.into_iter().partition(|(_, _, e)| current(*e));
                for (tag, _, _) in abandoned {
                    if tx.send(Input::WriteDone { tag, result: Err("abandoned: this controller is no longer the DC it was".into()) }).await.is_err() {
                        return;
                    }
                }
                let Some(&(_, _, batch_era)) = queued.first() else { continue };
                let queued: Vec<(u64, proto::cib::WriteRequest)> = queued.into_iter().map(|(t, w, _)| (t, w)).collect();
                let tags: Vec<u64> = queued.iter().map(|(t, _)| *t).collect();
                for (w, ix) in crate::records::combine(queued.into_iter().map(|(_, w)| w).collect()) {
                    // A write refused because raft had no leader changed nothing: send it
                    // again, in order, until a leader takes it (halo-cibd holds a write while
                    // it knows none, but refuses one whose leader vanished under it). Bounded:
                    // after WRITE_RETRY_FOR the refusal stands and the DC plans from what it has.
                    let t0 = Instant::now();
                    let result = loop {
                        if !current(batch_era) {
                            break Err("abandoned: this controller is no longer the DC it was".to_string());
                        }
                        match cib.write(w.clone()).await {
                            Err(cibclient::Error::Unavailable(_)) if t0.elapsed() < WRITE_RETRY_FOR => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            r => break r.map(|r| if r.changed { r.index } else { 0 }).map_err(|e| e.to_string()),
                        }
                    };
                    for i in ix {
                        if tx.send(Input::WriteDone { tag: tags[i], result: result.clone() }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    // The sender: group messages, in order, batched (a burst of Execute messages or results
    // is one group message).
    let (send_tx, send_rx) = mpsc::channel::<pb::PeerMessage>(QUEUE);
    {
        let m = membership.clone();
        tokio::spawn(async move {
            let dropped = |msg: &pb::PeerMessage| tracing::error!("a {}-byte message exceeds the group's limit; dropped", msg.encoded_len());
            if let Err(e) = proto::send_batched(m, GROUP, pid, send_rx, |messages| pb::PeerMessages { messages }, addressees, MAX_PEER_MESSAGE, BATCH_BYTES, dropped).await {
                tracing::error!("cannot send to {GROUP}: {e}");
            }
        });
    }
    let (status_tx, mut status_rx) = mpsc::channel::<oneshot::Sender<pb::StatusReply>>(64);
    let (attr_tx, mut attr_rx) = mpsc::channel::<pb::AttributeUpdate>(1024);
    let (forget_tx, mut forget_rx) = mpsc::channel::<pb::ForgetRecords>(64);
    // SIGTERM does not stop the API at once: it asks the core to move this node's resources
    // off first (Input::Shutdown); the core says when to exit (Action::Exit).
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut stop_signal = Box::pin(shutdown);
    let mut stop_tx = Some(stop_tx);
    let server = tonic::transport::Server::builder().add_service(ControllerServer::new(Api { status: status_tx, attributes: attr_tx, forgets: forget_tx })).serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
        let _ = stop_rx.await;
    });
    let mut server = Box::pin(server);
    let mut stopping = false;

    let mut core = Controller::new(Config::new(setup.me, setup.nodes.clone(), new_dc_uuid()), now());
    let mut quorum_tick = tokio::time::interval(Duration::from_millis(500));
    let mut pending_schedule: Option<(u64, u64, Option<crate::core::Minority>)> = None;
    let mut cancels: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    let mut members: BTreeMap<u32, ()> = BTreeMap::new();
    loop {
        let timeout = core.poll_timeout().map(|ms| ms.saturating_sub(now().ms));
        let sleep = tokio::time::sleep(Duration::from_millis(timeout.unwrap_or(3_600_000)));
        tokio::select! {
            r = &mut server => {
                r.map_err(|e| anyhow!("local API stopped: {e}"))?;
                return Ok(());
            }
            _ = &mut stop_signal, if !stopping => {
                stopping = true;
                core.handle(now(), Input::Shutdown);
            }
            ev = group.message() => {
                let ev = ev.map_err(|e| anyhow!("halo-membershipd: {}", e.message()))?.ok_or_else(|| anyhow!("halo-membershipd closed the group"))?;
                match ev.event {
                    Some(mpb::cpg_event::Event::Confchg(c)) => {
                        let now_members: Vec<u32> = { let mut v: Vec<u32> = c.members.iter().map(|m| m.nodeid).collect(); v.sort_unstable(); v.dedup(); v };
                        let joined: Vec<u32> = c.joined.iter().map(|m| m.nodeid).filter(|n| !members.contains_key(n)).collect();
                        let left: Vec<(u32, bool)> = c.left.iter().filter(|m| !now_members.contains(&m.nodeid)).map(|m| (m.nodeid, m.reason == "nodedown")).collect();
                        members = now_members.iter().map(|&n| (n, ())).collect();
                        tracing::info!("{GROUP}: members {now_members:?}, joined {joined:?}, left {left:?}");
                        // The ring as it is now, before the change is judged.
                        if let Ok(q) = membership.quorum(mpb::QuorumRequest {}).await {
                            let q = q.into_inner();
                            core.handle(now(), Input::Quorum { quorate: q.quorate, ring: q.members.iter().map(|m| m.nodeid).collect() });
                        }
                        core.handle(now(), Input::Confchg { members: now_members, joined, left });
                    }
                    Some(mpb::cpg_event::Event::Deliver(d)) => {
                        let from = d.from.map(|f| f.nodeid).unwrap_or(0);
                        match pb::PeerMessages::decode(d.data.as_slice()) {
                            Ok(batch) => {
                                for msg in batch.messages {
                                    core.handle(now(), Input::Peer { from, msg });
                                }
                            }
                            Err(e) => tracing::warn!("a malformed message from node {from} ignored: {e}"),
                        }
                    }
                    _ => {}
                }
            }
            _ = quorum_tick.tick() => {
                if let Ok(q) = membership.quorum(mpb::QuorumRequest {}).await {
                    let q = q.into_inner();
                    core.handle(now(), Input::Quorum { quorate: q.quorate, ring: q.members.iter().map(|m| m.nodeid).collect() });
                }
            }
            change = follower.next() => {
                let change = change.map_err(|e| anyhow!("{e}"))?;
                core.handle(now(), Input::CibChanged { replan: replan_needed(&change) });
            }
            ev = events.message() => {
                let ev = ev.map_err(|e| anyhow!("halo-execd: {}", e.message()))?.ok_or_else(|| anyhow!("halo-execd closed its event stream"))?;
                if ev.interval_ms > 0 {
                    core.handle(now(), Input::ExecEvent(ev));
                }
            }
            ended = fencing.message() => {
                let e = ended.map_err(|e| anyhow!("halo-fenced: {}", e.message()))?.ok_or_else(|| anyhow!("halo-fenced closed its stream of fencing results"))?;
                core.handle(now(), Input::FencingEnded { ok: e.state == "done", target: e.target, action: e.action, executioner: e.executioner, origin: e.origin });
            }
            Some(input) = rx.recv() => core.handle(now(), input),
            Some(reply) = status_rx.recv() => { let _ = reply.send(core.status()); }
            Some(a) = attr_rx.recv() => core.handle(now(), Input::Attribute(a)),
            Some(f) = forget_rx.recv() => core.handle(now(), Input::Forget(f)),
            _ = sleep, if timeout.is_some() => core.handle_timeout(now()),
        }
        while let Some(a) = core.poll_action() {
            match a {
                Action::Broadcast(m) => {
                    if send_tx.try_send(m).is_err() {
                        return Err(anyhow!("the group sender is {QUEUE} messages behind; restarting"));
                    }
                }
                Action::CibWrite { tag, write } => {
                    if write_tx.try_send((tag, write, era.load(std::sync::atomic::Ordering::SeqCst))).is_err() {
                        return Err(anyhow!("the CIB writer is {QUEUE} writes behind; restarting"));
                    }
                }
                Action::Schedule { seq, min_index, minority } => pending_schedule = Some((seq, min_index, minority)),
                Action::ReadHistory => {
                    let (mut ex, tx) = (execd.clone(), tx.clone());
                    tokio::spawn(async move {
                        match ex.history(xpb::HistoryRequest {}).await {
                            Ok(h) => drop(tx.send(Input::History { xml: h.into_inner().xml }).await),
                            Err(e) => tracing::error!("cannot read the executor's history: {}", e.message()),
                        }
                    });
                }
                Action::AbandonWrites => {
                    era.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Action::SetCibVoters { voters } => {
                    let (mut cib, tx) = (voters_cib.clone(), tx.clone());
                    tokio::spawn(async move {
                        // A node that rejoined becomes a voter once its replica has caught up
                        // (halo-cibd refuses until then): asked again for a while.
                        let t0 = Instant::now();
                        loop {
                            match cib.change_voters(voters.iter().map(|&v| v as u64).collect()).await {
                                Ok(now) => {
                                    tracing::info!("the CIB's voters are {now:?}");
                                    let _ = tx.send(Input::CibVoters { voters: now.into_iter().map(|v| v as u32).collect() }).await;
                                    return;
                                }
                                Err(e) if t0.elapsed() < VOTERS_RETRY_FOR => tracing::debug!("cannot make {voters:?} the CIB's voters yet: {e}"),
                                Err(e) => return tracing::error!("cannot make {voters:?} the CIB's voters: {e}"),
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    });
                }
                Action::ForgetHistory { rsc } => {
                    let mut ex = execd.clone();
                    tokio::spawn(async move {
                        if let Err(e) = ex.forget(xpb::ForgetRequest { rsc }).await {
                            tracing::error!("the executor could not forget resources' records: {}", e.message());
                        }
                    });
                }
                Action::CancelRecurring { rsc, ops } => {
                    cancels.entry(rsc).or_default().extend(ops);
                }
                Action::Exec { op } => {
                    let (mut ex, tx) = (execd.clone(), tx.clone());
                    let cancel = cancels.remove(&op.rsc).unwrap_or_default();
                    tokio::spawn(async move {
                        for (action, interval_ms) in cancel {
                            let _ = ex.cancel(xpb::CancelRequest { rsc: op.rsc.clone(), action, interval_ms }).await;
                        }
                        if op.interval_ms > 0 {
                            if let Err(e) = ex.recur(op.clone()).await {
                                tracing::error!("cannot start {} {}: {}", op.rsc, op.action, e.message());
                            }
                        } else {
                            match ex.exec(op.clone()).await {
                                Ok(r) => drop(tx.send(Input::ExecEvent(r.into_inner())).await),
                                Err(e) => tracing::error!("cannot run {} {}: {}", op.rsc, op.action, e.message()),
                            }
                        }
                    });
                }
                Action::Exit => {
                    // Let the queued writes be acknowledged and the messages go out first
                    // (bounded); the actions that follow, if any, are dropped.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while let Some(a) = core.poll_action() {
                        if let Action::CibWrite { tag, write } = a {
                            let _ = write_tx.try_send((tag, write, era.load(std::sync::atomic::Ordering::SeqCst)));
                        }
                    }
                    while (core.writes_in_flight() > 0 || send_tx.capacity() < QUEUE) && Instant::now() < deadline {
                        if let Ok(Some(input)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
                            if matches!(input, Input::WriteDone { .. }) {
                                core.handle(now(), input);
                            }
                        }
                    }
                    tracing::info!("stopped");
                    if let Some(tx) = stop_tx.take() {
                        let _ = tx.send(());
                    }
                    return Ok(());
                }
                Action::StopEverythingAndDie => {
                    let mut ex = execd.clone();
                    match ex.stop_all(xpb::StopAllRequest {}).await {
                        Ok(r) => {
                            let failed: Vec<String> = r.into_inner().results.into_iter().filter(|e| e.rc != 0 || e.op_status != 0).map(|e| format!("{} {}", e.rsc, e.action)).collect();
                            if failed.is_empty() {
                                tracing::error!("every resource here is stopped; exiting so that halod stops this node and keeps it down");
                            } else {
                                tracing::error!("could not stop {}; exiting so that halod stops this node and keeps it down", failed.join(", "));
                            }
                        }
                        Err(e) => tracing::error!("the executor could not stop this node's resources: {}; exiting so that halod stops this node", e.message()),
                    }
                    std::process::exit(common::paths::EXIT_FATAL);
                }
                Action::Fence { transition, action, target, fence_action, timeout_ms } => {
                    let (mut f, tx) = (fencer.clone(), tx.clone());
                    tokio::spawn(async move {
                        let req = fpb::FenceRequest { target: target.clone(), action: fence_action, timeout_ms, client: "halo-controld".into(), manual: false };
                        let (ok, reason) = match f.fence(req).await {
                            Ok(r) => {
                                let r = r.into_inner();
                                (r.op_status == 0, r.reason)
                            }
                            Err(e) => (false, e.message().to_string()),
                        };
                        let _ = tx.send(Input::FenceDone { transition, action, ok, reason }).await;
                    });
                }
            }
        }
        // Schedule once the followed CIB includes the DC's own acknowledged writes.
        if let Some((seq, min_index, minority)) = pending_schedule.take() {
            if follower.index < min_index {
                pending_schedule = Some((seq, min_index, minority));
            } else {
                let mut doc = follower.doc.clone();
                if let Some(m) = &minority {
                    crate::records::minority_view(&mut doc, m);
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    let graph = tokio::task::spawn_blocking(move || schedule(doc)).await.ok().flatten();
                    let _ = tx.send(Input::Graph { seq, graph }).await;
                });
            }
        }
    }
}

/// The nodes a group message is for (empty: every node). Each controller ignores what names
/// another node, so those nodes need not be given it: an op and its result reach two
/// controllers, not all of them.
fn addressees(m: &pb::PeerMessage) -> Vec<u32> {
    use pb::peer_message::Body;
    let one = |n: u32| if n == 0 { Vec::new() } else { vec![n] };
    match &m.body {
        Some(Body::Execute(x)) => one(x.to),
        Some(Body::Result(r)) => one(r.dc),
        Some(Body::Join(j)) => one(j.dc),
        Some(Body::ShutdownRequest(r)) => one(r.dc),
        Some(Body::Shutdown(s)) => one(s.to),
        Some(Body::Attribute(a)) => one(a.dc),
        Some(Body::Forget(f)) => one(f.node),
        Some(Body::Seniority(_)) | None => Vec::new(),
    }
}
