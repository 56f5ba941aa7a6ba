//! halo-execd, the daemon: the node's [`Executor`] behind a gRPC API on
//! `run_dir/execd.sock` (mode 0660; callers must be root or the daemon's user: agents run
//! as root, so this socket is as powerful as root).
//!
//! Agents get `HA_RSCTMP = run_dir/rsctmp` (each sandbox node its own; halod empties it when
//! the node starts, as a reboot empties /run) and run in `state_dir/cores`.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{anyhow, Context, Result};
use common::config::ClusterConfig;
use common::paths::{Daemon, NodePaths};
use proto::execd as pb;
use proto::execd::executor_server::{Executor as ExecutorApi, ExecutorServer};
use tokio::net::UnixListener;
use tokio_stream::wrappers::{BroadcastStream, UnixListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::agent::{AgentDirs, AgentSpec};
use crate::executor::{Executor, OpEvent, DEFAULT_PARALLEL};
use crate::run::{ExecEnv, OpRequest};

/// Everything the daemon needs, read once at start.
pub struct Setup {
    pub env: ExecEnv,
    pub socket: std::path::PathBuf,
}

impl Setup {
    pub fn load(config_path: &Path, node: Option<&str>) -> Result<Setup> {
        let config = ClusterConfig::load(config_path).map_err(|e| anyhow!("{e}"))?.config;
        let local = config.find_local(node).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
        let paths = NodePaths::from_config(&config);
        paths.create_dirs().with_context(|| format!("cannot create the node's directories under {}", paths.state_dir.display()))?;
        let rsctmp = paths.run_dir.join("rsctmp");
        let workdir = paths.state_dir.join("cores");
        for d in [&rsctmp, &workdir] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let dirs = AgentDirs::discover(std::env::current_exe().ok().as_deref());
        let cluster_tools = cluster_tools(&paths.run_dir.join("sbin"), config_path);
        Ok(Setup {
            env: ExecEnv { dirs, rsctmp, workdir, node_name: local.name, systemd: crate::systemd::Systemd::host(), fencer: Some(paths.socket(Daemon::Fenced)), cluster_tools },
            socket: paths.socket(Daemon::Execd),
        })
    }
}

/// The tools agents call, as Pacemaker installs them: `halo` (found beside this daemon)
/// under the names `crm_attribute`, `crm_master`, `attrd_updater` and `crm_node`, as
/// symbolic links in `dir` (made anew at every start). None, with a warning, when `halo`
/// is not there: agents that set attributes then fail as they would without Pacemaker.
fn cluster_tools(dir: &Path, config: &Path) -> Option<(PathBuf, PathBuf)> {
    let halo = std::env::current_exe().ok()?.parent()?.join("halo");
    if !halo.exists() {
        tracing::warn!("{} not found: agents cannot call crm_attribute, crm_master, attrd_updater or crm_node", halo.display());
        return None;
    }
    let _ = std::fs::create_dir_all(dir);
    for name in ["crm_attribute", "crm_master", "attrd_updater", "crm_node"] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&halo, &link) {
            tracing::warn!("cannot link {}: {e}", link.display());
            return None;
        }
    }
    let config = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    Some((dir.to_path_buf(), config))
}

fn authorize<T>(req: &Request<T>) -> Result<(), Status> {
    proto::require_root_or_self(req, "halo-execd", "run agents")
}

fn to_request(r: pb::OpRequest) -> Result<OpRequest, Status> {
    let agent = AgentSpec::parse(&r.agent).map_err(Status::invalid_argument)?;
    if r.rsc.is_empty() || r.action.is_empty() {
        return Err(Status::invalid_argument("an op needs a resource id and an action"));
    }
    Ok(OpRequest {
        rsc: r.rsc,
        agent,
        action: r.action,
        params: r.params.into_iter().collect(),
        meta: r.meta.into_iter().collect(),
        interval_ms: r.interval_ms,
        timeout_ms: if r.timeout_ms == 0 { 20_000 } else { r.timeout_ms },
    })
}

pub fn to_event(e: &OpEvent) -> pb::OpEvent {
    let r = &e.record;
    pb::OpEvent {
        rsc: r.rsc.clone(),
        operation_key: r.operation_key.clone(),
        action: r.operation.clone(),
        interval_ms: r.interval_ms,
        call_id: r.call_id,
        rc: r.rc,
        op_status: r.status as i32,
        exit_reason: r.exit_reason.clone(),
        last_rc_change: r.last_rc_change,
        exec_ms: r.exec_ms,
        queue_ms: r.queue_ms,
        op_digest: r.op_digest.clone(),
        lrm_rsc_op: r.to_element().to_xml(),
        stdout: e.stdout.clone(),
        stderr: e.stderr.clone(),
    }
}

struct Api {
    ex: Executor,
}

#[tonic::async_trait]
impl ExecutorApi for Api {
    async fn exec(&self, req: Request<pb::OpRequest>) -> Result<Response<pb::OpEvent>, Status> {
        authorize(&req)?;
        let r = to_request(req.into_inner())?;
        if r.interval_ms > 0 {
            return Err(Status::invalid_argument("a recurring op (interval > 0) is started with Recur"));
        }
        let e = self.ex.exec(r).await;
        Ok(Response::new(to_event(&e)))
    }

    async fn recur(&self, req: Request<pb::OpRequest>) -> Result<Response<pb::RecurReply>, Status> {
        authorize(&req)?;
        let r = to_request(req.into_inner())?;
        if r.interval_ms == 0 {
            return Err(Status::invalid_argument("a recurring op needs an interval > 0"));
        }
        self.ex.recur(r);
        Ok(Response::new(pb::RecurReply {}))
    }

    async fn cancel(&self, req: Request<pb::CancelRequest>) -> Result<Response<pb::CancelReply>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        let cancelled = self.ex.cancel(&r.rsc, &r.action, r.interval_ms).await;
        Ok(Response::new(pb::CancelReply { cancelled }))
    }

    type EventsStream = Pin<Box<dyn Stream<Item = Result<pb::OpEvent, Status>> + Send + 'static>>;

    async fn events(&self, req: Request<pb::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        authorize(&req)?;
        let recurring_only = req.get_ref().recurring_only;
        let s = BroadcastStream::new(self.ex.subscribe())
            .filter(move |r| !(recurring_only && r.as_ref().is_ok_and(|e| e.record.interval_ms == 0)))
            .map(|r| r.map(|e| to_event(&e)).map_err(|_| Status::data_loss("the listener fell behind the executor's results; re-read the history")));
        Ok(Response::new(Box::pin(s)))
    }

    async fn forget(&self, req: Request<pb::ForgetRequest>) -> Result<Response<pb::ForgetReply>, Status> {
        authorize(&req)?;
        for rsc in &req.get_ref().rsc {
            self.ex.forget(rsc);
        }
        Ok(Response::new(pb::ForgetReply {}))
    }

    async fn stop_all(&self, req: Request<pb::StopAllRequest>) -> Result<Response<pb::StopAllReply>, Status> {
        authorize(&req)?;
        tracing::warn!("stopping every resource this node may run, on its own authority");
        let results: Vec<pb::OpEvent> = self.ex.stop_all().await.iter().map(to_event).collect();
        for r in &results {
            tracing::info!("{} {}: rc {} ({})", r.rsc, r.action, r.rc, if r.exit_reason.is_empty() { "-" } else { &r.exit_reason });
        }
        Ok(Response::new(pb::StopAllReply { results }))
    }

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryReply>, Status> {
        authorize(&req)?;
        let mut e = cib::xml::Element::new("lrm_resources");
        for h in self.ex.history().values() {
            e.push(h.to_element());
        }
        Ok(Response::new(pb::HistoryReply { xml: e.to_xml() }))
    }
}

pub async fn run(setup: Setup, listener: UnixListener, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    tracing::info!("node {}: agents from {:?} and {}", setup.env.node_name, setup.env.dirs.halo, setup.env.dirs.ocf_root.display());
    if !Path::new("/run/systemd/system").exists() {
        tracing::warn!("systemd is not running on this host: systemd-class resources will fail as not installed");
    }
    let ex = Executor::new(setup.env, DEFAULT_PARALLEL);
    let mut events = ex.subscribe();
    // Agent output goes to the log with the resource and the op named.
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let r = &e.record;
            tracing::info!("{} {} (call {}): rc {} status {:?} {} ms{}", r.rsc, r.operation_key, r.call_id, r.rc, r.status, r.exec_ms, if r.exit_reason.is_empty() { String::new() } else { format!(": {}", r.exit_reason) });
            for (name, text) in [("stdout", &e.stdout), ("stderr", &e.stderr)] {
                for line in text.lines().filter(|l| !l.trim().is_empty()).take(50) {
                    tracing::info!("{} {} {name}: {line}", r.rsc, r.operation_key);
                }
            }
        }
    });
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(256)
        .add_service(ExecutorServer::new(Api { ex }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| anyhow!("local API stopped: {e}"))
}
