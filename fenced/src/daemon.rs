//! halo-fenced, the daemon: the node's [`Fencer`] behind a gRPC API on `run_dir/fenced.sock`
//! (mode 0660; callers must be root or the daemon's user: fencing powers nodes off).
//! The fencing topology and `stonith-timeout` are read from the local halo-cibd when a
//! request needs them, and the devices the CIB allows here are registered (`cib_link`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use common::config::ClusterConfig;
use common::paths::{Daemon, NodePaths};
use proto::fenced as pb;
use proto::fenced::fencer_server::{Fencer as FencerApi, FencerServer};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::device::Device;
use crate::fencer::{CibSource, Entry, Fencer};
use crate::peers::{Peers, GROUP};
use proto::membership as mpb;
use proto::membership::membership_client::MembershipClient;
use execd::run::ExecEnv;

/// Everything the daemon needs, read once at start.
pub struct Setup {
    pub env: ExecEnv,
    pub socket: PathBuf,
    pub cib_socket: PathBuf,
    /// halo-membershipd's socket and the configured nodes (id -> name), to work with the
    /// other fencers; None: this fencer works alone (tests).
    pub membership: Option<(PathBuf, HashMap<u32, String>)>,
}

impl Setup {
    pub fn load(config_path: &Path, node: Option<&str>) -> Result<Setup> {
        // Fence agents run as the executor runs agents: the same directories and environment.
        let exec = execd::daemon::Setup::load(config_path, node)?;
        let config = ClusterConfig::load(config_path).map_err(|e| anyhow!("{e}"))?.config;
        let paths = NodePaths::from_config(&config);
        Ok(Setup {
            env: ExecEnv { fencer: None, ..exec.env },
            socket: paths.socket(Daemon::Fenced),
            cib_socket: paths.socket(Daemon::Cibd),
            membership: Some((paths.socket(Daemon::Membershipd), config.nodes.iter().map(|n| (n.nodeid, n.name.clone())).collect())),
        })
    }
}

fn authorize<T>(req: &Request<T>) -> Result<(), Status> {
    proto::require_root_or_self(req, "halo-fenced", "fence")
}

struct Api {
    fencer: Fencer,
}

#[tonic::async_trait]
impl FencerApi for Api {
    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterReply>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        let params = r.params.into_iter().collect();
        let meta = r.meta.into_iter().collect();
        let d = Device::new(&r.id, &r.agent, &params, &meta).map_err(Status::invalid_argument)?;
        self.fencer.register(d).await.map_err(|(_, e)| Status::failed_precondition(e))?;
        Ok(Response::new(pb::RegisterReply {}))
    }

    async fn remove(&self, req: Request<pb::RemoveRequest>) -> Result<Response<pb::RemoveReply>, Status> {
        authorize(&req)?;
        Ok(Response::new(pb::RemoveReply { removed: self.fencer.remove(&req.into_inner().id) }))
    }

    async fn monitor(&self, req: Request<pb::MonitorRequest>) -> Result<Response<pb::ActionResult>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        let timeout = Duration::from_millis(if r.timeout_ms == 0 { 20_000 } else { r.timeout_ms });
        let (action, res) = self.fencer.monitor(&r.id, timeout).await;
        Ok(Response::new(pb::ActionResult {
            rc: res.rc,
            op_status: res.status as i32,
            reason: if res.exit_reason.is_empty() { res.stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string() } else { res.exit_reason },
            output: res.stdout,
            exec_ms: res.exec_ms,
            action,
        }))
    }

    async fn devices(&self, req: Request<pb::DevicesRequest>) -> Result<Response<pb::DevicesReply>, Status> {
        authorize(&req)?;
        let target = req.into_inner().target;
        let list = if target.is_empty() { self.fencer.devices() } else { self.fencer.capable(&target).await };
        let mut devices = Vec::new();
        for d in list {
            let info = self.fencer.agent_info(&d).await;
            devices.push(pb::Device {
                id: d.id.clone(),
                agent: d.agent.to_string(),
                host_check: d.effective_host_check(info.as_ref()).name().into(),
                targets: d.listed_targets(),
                started: self.fencer.started(&d.id),
                from_cib: self.fencer.from_cib(&d.id),
            });
        }
        Ok(Response::new(pb::DevicesReply { devices }))
    }

    async fn fence(&self, req: Request<pb::FenceRequest>) -> Result<Response<pb::FenceReply>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        let action = if r.action.is_empty() { "reboot".to_string() } else { r.action };
        let timeout = (r.timeout_ms > 0).then(|| Duration::from_millis(r.timeout_ms));
        let client = if r.client.is_empty() { "a client".to_string() } else { r.client };
        let o = if r.manual { self.fencer.confirm(&r.target, &client).await } else { self.fencer.fence(&r.target, &action, timeout, &client).await };
        Ok(Response::new(pb::FenceReply { op_status: o.status as i32, reason: o.reason, devices: o.entry.devices.clone(), entry: Some(o.entry.to_pb()) }))
    }

    type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::HistoryEntry, Status>> + Send + 'static>>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        authorize(&req)?;
        use tokio_stream::StreamExt as _;
        let s = tokio_stream::wrappers::BroadcastStream::new(self.fencer.watch_ended()).map(|r| r.map_err(|_| Status::data_loss("the watcher fell behind the fencing results; read the history")));
        Ok(Response::new(Box::pin(s)))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        authorize(&req)?;
        let mut devices = Vec::new();
        let view = self.fencer.cib_view();
        let here: Vec<String> = self.fencer.devices().iter().map(|d| d.id.clone()).collect();
        let status = |id: &str, agent: String, allowed: Vec<String>, interval_ms: u64| {
            let h = self.fencer.health(id);
            pb::DeviceStatus {
                id: id.to_string(),
                agent,
                allowed,
                here: here.iter().any(|x| x == id),
                started: self.fencer.started(id),
                monitored_by: h.as_ref().map(|h| h.node.clone()).unwrap_or_default(),
                ok: h.as_ref().is_some_and(|h| h.ok),
                reason: h.as_ref().map(|h| h.reason.clone()).unwrap_or_default(),
                checked_ms: h.as_ref().map_or(0, |h| h.at_ms),
                interval_ms,
            }
        };
        for d in &view {
            devices.push(status(&d.device.id, d.device.agent.to_string(), d.allowed.clone(), d.monitor.map_or(0, |m| m.as_millis() as u64)));
        }
        for d in self.fencer.devices().into_iter().filter(|d| !view.iter().any(|v| v.device.id == d.id)) {
            devices.push(status(&d.id, d.agent.to_string(), Vec::new(), 0));
        }
        Ok(Response::new(pb::StatusReply { devices }))
    }

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryReply>, Status> {
        authorize(&req)?;
        let t = req.into_inner().target;
        let entries = self.fencer.history((!t.is_empty()).then_some(t.as_str())).iter().map(Entry::to_pb).collect();
        Ok(Response::new(pb::HistoryReply { entries }))
    }
}

/// How long a starting fencer waits for halo-membershipd.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(30);

/// Join the fencers' process group and wire it to `fencer`; the returned task ends (with
/// the reason) when halo-membershipd goes away.
async fn join_group(fencer: &Fencer, sock: &Path, names: HashMap<u32, String>) -> Result<tokio::task::JoinHandle<String>> {
    let ch = proto::connect_unix_within(sock.to_path_buf(), MEMBERSHIP_WAIT).await.map_err(|e| anyhow!("halo-membershipd: {e}"))?;
    let mut membership = MembershipClient::new(ch);
    let (mut stream, pid) = proto::cpg_join(&mut membership, GROUP).await.map_err(|e| anyhow!("{e}"))?;
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let peers = Peers::new(fencer.node(), names, out_tx);
    fencer.set_peers(peers.clone());
    tokio::spawn(async move {
        while let Some(data) = out_rx.recv().await {
            if let Err(e) = membership.cpg_send(mpb::CpgSendRequest { group: GROUP.into(), data, pid, to: Vec::new() }).await {
                tracing::error!("halo-membershipd refused a fencer message: {}", e.message());
            }
        }
    });
    let fencer = fencer.clone();
    Ok(tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(ev)) => match ev.event {
                    Some(mpb::cpg_event::Event::Deliver(d)) => {
                        let from = d.from.map(|m| m.nodeid).unwrap_or(0);
                        peers.on_message(&fencer, from, &d.data);
                    }
                    Some(mpb::cpg_event::Event::Confchg(c)) => {
                        let ids: Vec<u32> = c.members.iter().map(|m| m.nodeid).collect();
                        peers.on_members(&fencer, &ids);
                    }
                    _ => {}
                },
                Ok(None) => return "halo-membershipd closed the process group stream".to_string(),
                Err(e) => return format!("halo-membershipd: {}", e.message()),
            }
        }
    }))
}

pub async fn run(setup: Setup, listener: UnixListener, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    tracing::info!("node {}: fence agents from {:?} and {}", setup.env.node_name, setup.env.dirs.halo, setup.env.dirs.fence.display());
    let fencer = Fencer::new(setup.env, CibSource::Cibd(setup.cib_socket.clone()));
    tokio::spawn(crate::cib_link::follow(fencer.clone(), setup.cib_socket));
    tokio::spawn(crate::device_monitor::run(fencer.clone()));
    let group = match setup.membership {
        Some((sock, names)) => Some(join_group(&fencer, &sock, names).await?),
        None => None,
    };
    let lost = async move {
        match group {
            Some(g) => g.await.unwrap_or_else(|e| format!("the process group task failed: {e}")),
            None => std::future::pending().await,
        }
    };
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let _ = lost_tx.send(lost.await);
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(FencerServer::new(Api { fencer }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    tokio::pin!(shutdown);
    tokio::select! {
        r = &mut server => return r.map_err(|e| anyhow!("local API stopped: {e}")),
        _ = &mut shutdown => {}
        why = lost_rx => {
            // Without the group this fencer cannot work with the others: halod restarts it.
            let _ = stop_tx.send(());
            let _ = server.await;
            return Err(anyhow!("{}", why.unwrap_or_else(|_| "the process group task ended".into())));
        }
    }
    let _ = stop_tx.send(());
    server.await.map_err(|e| anyhow!("local API stopped: {e}"))
}
