//! The local gRPC API on `run_dir/cibd.sock` (mode 0660). Every call becomes a command for
//! the core task; writes first ask halo-membershipd whether the partition is quorate.
//!
//! Access: the socket's mode limits who can connect; the peer's uid (from the socket) must
//! be root or the daemon's own user. CIB ACLs for other users are not enforced yet, so
//! other users are refused outright rather than given unfiltered access.

use std::pin::Pin;

use cib::cibadmin;
use proto::cib as pb;
use proto::cib::cib_error::Kind;
use proto::cib::cib_server::{Cib, CibServer};
use proto::membership as mpb;
use proto::membership::membership_client::MembershipClient;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::UdsConnectInfo;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::core::Command;
use crate::machine::refusal;

struct Api {
    core: mpsc::Sender<Command>,
    watch: broadcast::Sender<pb::WatchEvent>,
    membership: MembershipClient<Channel>,
}

fn gone() -> Status {
    Status::unavailable("halo-cibd is shutting down")
}

/// Refuse callers other than root and the daemon's own user (see the module comment).
fn authorize<T>(req: &Request<T>) -> Result<(), Status> {
    let uid = req.extensions().get::<UdsConnectInfo>().and_then(|i| i.peer_cred).map(|c| c.uid());
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match uid {
        Some(0) => Ok(()),
        Some(u) if u == me => Ok(()),
        Some(u) => Err(Status::permission_denied(format!(
            "uid {u} may not use the CIB: halo does not enforce CIB ACLs yet, so only root and uid {me} are allowed"
        ))),
        None => Err(Status::permission_denied("cannot identify the caller of the CIB socket")),
    }
}

impl Api {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.core.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    async fn quorum(&self) -> Result<mpb::QuorumStatus, Status> {
        let mut m = self.membership.clone();
        m.quorum(mpb::QuorumRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|e| Status::unavailable(format!("cannot ask halo-membershipd about quorum: {}", e.message())))
    }
}

#[tonic::async_trait]
impl Cib for Api {
    async fn query(&self, req: Request<pb::QueryRequest>) -> Result<Response<pb::QueryReply>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        Ok(Response::new(self.ask(|reply| Command::Query { section: r.section, xpath: r.xpath, reply }).await?))
    }

    async fn write(&self, req: Request<pb::WriteRequest>) -> Result<Response<pb::WriteReply>, Status> {
        authorize(&req)?;
        let q = self.quorum().await?;
        if !q.quorate {
            let e = refusal(
                Kind::NoQuorum,
                cibadmin::EX_QUORUM,
                format!(
                    "no quorum: this partition has {} of {} expected votes (needs {}); the CIB was not changed",
                    q.total_votes, q.expected_votes, q.quorum
                ),
            );
            return Ok(Response::new(pb::WriteReply { error: Some(e), ..Default::default() }));
        }
        let write = req.into_inner();
        let r = self.ask(|reply| Command::Write { write, reply }).await?;
        Ok(Response::new(match r {
            Ok(reply) => reply,
            Err(e) => pb::WriteReply { error: Some(e), ..Default::default() },
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send + 'static>>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        authorize(&req)?;
        let rx = tokio_stream::wrappers::BroadcastStream::new(self.watch.subscribe());
        let s = rx.map(|r| r.map_err(|_| Status::data_loss("the watcher fell behind the CIB's changes; watch again and re-read the CIB")));
        Ok(Response::new(Box::pin(s)))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::CibStatus>, Status> {
        authorize(&req)?;
        let mut s = self.ask(|reply| Command::Status { reply }).await?;
        s.quorate = self.quorum().await.map(|q| q.quorate).unwrap_or(false);
        Ok(Response::new(s))
    }

    async fn change_voters(&self, req: Request<pb::ChangeVotersRequest>) -> Result<Response<pb::ChangeVotersReply>, Status> {
        authorize(&req)?;
        let voters = req.into_inner().voters;
        match self.ask(|reply| Command::ChangeVoters { voters, reply }).await? {
            Ok(voters) => Ok(Response::new(pb::ChangeVotersReply { voters })),
            Err(e) => Err(Status::failed_precondition(e)),
        }
    }
}

pub async fn serve(
    listener: UnixListener,
    core: mpsc::Sender<Command>,
    watch: broadcast::Sender<pb::WatchEvent>,
    membership: MembershipClient<Channel>,
) {
    let incoming = UnixListenerStream::new(listener);
    let r = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(64)
        .add_service(CibServer::new(Api { core, watch, membership }).max_decoding_message_size(64 << 20).max_encoding_message_size(256 << 20))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = r {
        tracing::error!("local API stopped: {e}");
    }
}
