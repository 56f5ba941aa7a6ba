//! The core task: totem, votequorum and CPG driven by one UDP socket, one clock and the
//! commands of local clients. Every queue is bounded; a client that cannot keep up with its
//! group's events is disconnected (its membership ends with PROCDOWN) rather than let the
//! daemon's memory grow.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use membership::cpg::{Cpg, CpgEvent, Reason};
use membership::crypto::{DropReason, PacketCrypto};
use membership::quorum::{QuorumConfig, TieBreaker, Votequorum};
use membership::totem::{ConfigKind, Dest, Output, Totem, TotemConfig};
use membership::wire::{NodeId, Packet};
use proto::membership as pb;
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::{mpsc, oneshot};

use crate::Setup;

/// Bound of every per-client event queue.
const CLIENT_QUEUE: usize = 4096;
/// Bound of the command queue from the gRPC handlers.
const COMMAND_QUEUE: usize = 1024;
/// Largest datagram accepted (totem's largest packet plus crypto overhead).
const MAX_DATAGRAM: usize = 70 * 1024;

pub enum Command {
    Status(oneshot::Sender<pb::MembershipStatus>),
    Quorum(oneshot::Sender<pb::QuorumStatus>),
    CpgJoin { group: String, reply: oneshot::Sender<Result<(u32, mpsc::Receiver<pb::CpgEvent>), String>> },
    CpgGone { pid: u32 },
    /// `to`: the nodes it is delivered on (empty: every node).
    CpgSend { group: String, pid: u32, data: Vec<u8>, to: Vec<u32>, reply: oneshot::Sender<Result<(), String>> },
}

struct Core {
    setup: Setup,
    start: Instant,
    totem: Totem,
    quorum: Votequorum,
    cpg: Cpg,
    crypto: PacketCrypto,
    socket: UdpSocket,
    addrs: BTreeMap<NodeId, SocketAddr>,
    clients: BTreeMap<u32, mpsc::Sender<pb::CpgEvent>>,
    next_pid: u32,
    /// CPG payloads totem refused for now (its queue was full): retried in order.
    backlog: VecDeque<Vec<u8>>,
    members: Vec<NodeId>,
    dropped_malformed: u64,
}

fn quorum_config(setup: &Setup) -> QuorumConfig {
    let q = &setup.config.quorum;
    QuorumConfig {
        nodes: setup.config.nodes.iter().map(|n| (n.nodeid, n.quorum_votes)).collect(),
        expected_votes: q.expected_votes,
        two_node: q.two_node,
        wait_for_all: q.wait_for_all,
        last_man_standing: q.last_man_standing,
        last_man_standing_window_ms: q.last_man_standing_window_ms,
        auto_tie_breaker: q.auto_tie_breaker,
        auto_tie_breaker_node: match &q.auto_tie_breaker_node {
            common::config::TieBreaker::Lowest => TieBreaker::Lowest,
            common::config::TieBreaker::Highest => TieBreaker::Highest,
            common::config::TieBreaker::List(l) => TieBreaker::List(l.clone()),
        },
    }
}

fn read_ring_seq(setup: &Setup) -> u64 {
    std::fs::read_to_string(setup.paths.ring_seq_file()).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn write_ring_seq(setup: &Setup, seq: u64) -> Result<()> {
    use std::io::Write;
    let path = setup.paths.ring_seq_file();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    writeln!(f, "{seq}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// A value that increases at every start of this node, even if the clock went back or the
/// state dir was lost: the larger of (last persisted + 1) and wall-clock milliseconds.
/// Packet nonces and replay windows depend on it never repeating.
fn next_boot_epoch(setup: &Setup) -> Result<u64> {
    use std::io::Write;
    let path = setup.paths.state_dir.join("boot_epoch");
    let last: u64 = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let epoch = (last + 1).max(wall);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    writeln!(f, "{epoch}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(epoch)
}

fn reason_name(r: &Reason) -> &'static str {
    match r {
        Reason::Join => "join",
        Reason::Leave => "leave",
        Reason::NodeDown => "nodedown",
        Reason::NodeUp => "nodeup",
        Reason::ProcDown => "procdown",
    }
}

impl Core {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn send_packet(&mut self, to: Dest, packet: Packet) {
        let datagram = self.crypto.seal(&packet.encode());
        let targets: Vec<SocketAddr> = match to {
            Dest::Node(n) => self.addrs.get(&n).copied().into_iter().collect(),
            Dest::All => self.addrs.iter().filter(|(&n, _)| n != self.setup.local.nodeid).map(|(_, &a)| a).collect(),
        };
        for addr in targets {
            // A lost datagram is what totem retransmits for; an error here is not fatal.
            if let Err(e) = self.socket.send_to(&datagram, addr).await {
                tracing::debug!("send to {addr}: {e}");
            }
        }
    }

    /// Drain every core's outputs until all are quiet.
    async fn pump(&mut self) -> Result<()> {
        loop {
            let mut progressed = false;
            while let Some(out) = self.totem.poll_output() {
                progressed = true;
                match out {
                    Output::Send { to, packet } => self.send_packet(to, packet).await,
                    Output::Deliver(d) => self.cpg.on_deliver(d.sender, &d.payload),
                    Output::Config(c) => {
                        self.cpg.on_config(&c);
                        if c.kind == ConfigKind::Regular {
                            tracing::info!("ring {} members {:?} joined {:?}", c.ring, c.members, c.joined);
                            self.members = c.members.clone();
                            let now = self.now_ms();
                            self.quorum.on_membership(now, (c.ring.rep, c.ring.seq), &c.members);
                        } else {
                            tracing::info!("transitional configuration {:?} left {:?}", c.members, c.left);
                        }
                    }
                    Output::PersistRingSeq(seq) => write_ring_seq(&self.setup, seq)?,
                }
            }
            while let Some(p) = self.cpg.poll_submit() {
                progressed = true;
                self.backlog.push_back(p);
            }
            while let Some(p) = self.backlog.front() {
                if !self.totem.submit(p.clone()) {
                    break;
                }
                self.backlog.pop_front();
                progressed = true;
            }
            while let Some(ev) = self.cpg.poll_event() {
                progressed = true;
                self.dispatch(ev);
            }
            while let Some(ev) = self.quorum.poll_event() {
                progressed = true;
                tracing::info!("quorum: quorate={} expected={} total={}", ev.status.quorate, ev.status.expected_votes, ev.status.total_votes);
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    fn dispatch(&mut self, ev: CpgEvent) {
        let member = |(n, p): (NodeId, u32), reason: &str| pb::CpgMember { nodeid: n, pid: p, reason: reason.to_string() };
        let (targets, event) = match ev {
            CpgEvent::Deliver { group, from, data, local_members } => {
                (local_members, pb::cpg_event::Event::Deliver(pb::CpgDeliver { group, from: Some(member(from, "")), data }))
            }
            CpgEvent::ConfChg { group, members, joined, left, local_members } => (
                local_members,
                pb::cpg_event::Event::Confchg(pb::CpgConfChg {
                    group,
                    members: members.into_iter().map(|m| member(m, "")).collect(),
                    joined: joined.iter().map(|(m, r)| member(*m, reason_name(r))).collect(),
                    left: left.iter().map(|(m, r)| member(*m, reason_name(r))).collect(),
                }),
            ),
        };
        let mut slow = Vec::new();
        for pid in targets {
            if let Some(tx) = self.clients.get(&pid) {
                if tx.try_send(pb::CpgEvent { event: Some(event.clone()) }).is_err() {
                    slow.push(pid);
                }
            }
        }
        for pid in slow {
            tracing::warn!("process-group client {pid} is too slow or gone: disconnecting it");
            self.clients.remove(&pid);
            self.cpg.client_gone(pid);
        }
    }

    fn status(&self) -> pb::MembershipStatus {
        let (ring, members) = self.totem.ring();
        let stats = self.crypto.stats();
        pb::MembershipStatus {
            local_nodeid: self.setup.local.nodeid,
            local_name: self.setup.local.name.clone(),
            ring_rep: ring.rep,
            ring_seq: ring.seq,
            state: format!("{:?}", self.totem.state()),
            nodes: self
                .setup
                .config
                .nodes
                .iter()
                .map(|n| pb::Member { nodeid: n.nodeid, name: n.name.clone(), address: n.ring0_addr.to_string(), member: members.contains(&n.nodeid) })
                .collect(),
            rings_formed: self.totem.stats.rings_formed,
            packets_accepted: stats.accepted,
            packets_dropped_auth: stats.bad_auth + stats.wrong_key,
            packets_dropped_replay: stats.replayed + stats.stale_epoch,
            packets_dropped_malformed: stats.malformed + self.dropped_malformed,
            delivered: self.totem.stats.delivered,
        }
    }

    fn quorum_status(&self) -> pb::QuorumStatus {
        let s = self.quorum.status();
        let name = |id: u32| self.setup.config.nodes.iter().find(|n| n.nodeid == id).map(|n| n.name.clone()).unwrap_or_default();
        pb::QuorumStatus {
            ring_rep: s.ring_id.0,
            ring_seq: s.ring_id.1,
            quorate: s.quorate,
            expected_votes: s.expected_votes,
            total_votes: s.total_votes,
            quorum: s.quorum,
            members: s.members.iter().map(|m| pb::QuorumMember { nodeid: m.nodeid, name: name(m.nodeid), votes: m.votes }).collect(),
            two_node: s.flags.two_node,
            wait_for_all: s.flags.wait_for_all,
            wait_for_all_status: s.flags.wait_for_all_status,
            last_man_standing: s.flags.last_man_standing,
            auto_tie_breaker: s.flags.auto_tie_breaker,
            highest_expected: s.highest_expected,
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Quorum(reply) => {
                let _ = reply.send(self.quorum_status());
            }
            Command::CpgJoin { group, reply } => {
                let pid = self.next_pid;
                self.next_pid = self.next_pid.wrapping_add(1).max(1);
                match self.cpg.join(&group, pid) {
                    Ok(()) => {
                        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
                        let _ = tx.try_send(pb::CpgEvent {
                            event: Some(pb::cpg_event::Event::JoinedAs(pb::CpgMember { nodeid: self.setup.local.nodeid, pid, reason: String::new() })),
                        });
                        self.clients.insert(pid, tx);
                        let _ = reply.send(Ok((pid, rx)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Command::CpgGone { pid } => {
                if self.clients.remove(&pid).is_some() {
                    self.cpg.client_gone(pid);
                }
            }
            Command::CpgSend { group, pid, data, to, reply } if pid != 0 => {
                let r = if self.clients.contains_key(&pid) { self.cpg.mcast_to(&group, pid, data, &to).map_err(|e| e.to_string()) } else { Err(format!("no process-group member {pid} on this node")) };
                let _ = reply.send(r);
            }
            Command::CpgSend { group, data, to, reply, .. } => {
                // A transient member: join, send, leave, all in one ordered sequence.
                let pid = self.next_pid;
                self.next_pid = self.next_pid.wrapping_add(1).max(1);
                let r = self
                    .cpg
                    .join(&group, pid)
                    .and_then(|_| self.cpg.mcast_to(&group, pid, data, &to))
                    .and_then(|_| self.cpg.leave(&group, pid))
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
        }
    }

    fn on_datagram(&mut self, buf: &[u8]) {
        match self.crypto.open(buf) {
            Ok((sender, payload)) => match Packet::decode(&payload) {
                Ok(p) => {
                    let now = self.now_ms();
                    self.totem.handle(now, sender, p);
                }
                Err(e) => {
                    self.dropped_malformed += 1;
                    tracing::debug!("undecodable packet from node {sender}: {e}");
                }
            },
            Err(DropReason::Replayed | DropReason::StaleEpoch) => {}
            Err(r) => tracing::debug!("dropped a packet: {r}"),
        }
    }
}

/// Run the daemon until `shutdown` resolves: `listener` serves the local API, `socket` is
/// bound to this node's ring0 address.
pub async fn run(setup: Setup, listener: UnixListener, socket: UdpSocket, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let me = setup.local.nodeid;
    let nodes: Vec<NodeId> = setup.config.nodes.iter().map(|n| n.nodeid).collect();
    let mut tc = TotemConfig::new(me, nodes, setup.config.totem.token_ms);
    tc.token_ms = setup.config.runtime_token_ms();
    tc.consensus_ms = setup.config.consensus_ms();
    tc.token_retransmit_ms = setup.config.token_retransmit_ms();
    tc.hold_ms = setup.config.hold_ms();
    tc.join_ms = setup.config.totem.join_ms;
    tc.merge_ms = setup.config.totem.merge_ms;
    tc.max_messages = setup.config.totem.max_messages as usize;
    tc.window_size = setup.config.totem.window_size;
    let start = Instant::now();
    let epoch = next_boot_epoch(&setup)?;
    let quorum = Votequorum::new(me, quorum_config(&setup)).map_err(|e| anyhow::anyhow!("quorum configuration: {e}"))?;
    let totem = Totem::new(tc, 0, read_ring_seq(&setup));
    let port = setup.config.totem.port;
    let addrs = setup.config.nodes.iter().map(|n| (n.nodeid, SocketAddr::new(n.ring0_addr, port))).collect();
    let crypto = PacketCrypto::new(setup.key.packet_key(), setup.key.key_id(), me, epoch);
    let mut core = Core {
        start,
        totem,
        quorum,
        cpg: Cpg::new(me),
        crypto,
        socket,
        addrs,
        clients: BTreeMap::new(),
        next_pid: 1,
        backlog: VecDeque::new(),
        members: Vec::new(),
        dropped_malformed: 0,
        setup,
    };
    let (tx, mut rx) = mpsc::channel::<Command>(COMMAND_QUEUE);
    let server = tokio::spawn(crate::service::serve(listener, tx));
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    core.pump().await?;
    loop {
        let now = core.now_ms();
        let next = [core.totem.poll_timeout(), core.quorum.poll_timeout()].into_iter().flatten().min();
        let sleep = next.map(|t| Duration::from_millis(t.saturating_sub(now))).unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => break,
            r = core.socket.recv_from(&mut buf) => {
                if let Ok((n, _)) = r {
                    let datagram = buf[..n].to_vec();
                    core.on_datagram(&datagram);
                }
            }
            Some(cmd) = rx.recv() => core.command(cmd),
            _ = tokio::time::sleep(sleep) => {
                let now = core.now_ms();
                core.totem.handle_timeout(now);
                core.quorum.handle_timeout(now);
            }
        }
        core.pump().await?;
    }
    server.abort();
    Ok(())
}
