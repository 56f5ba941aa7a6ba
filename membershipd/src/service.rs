//! The local gRPC API on the node's Unix socket: each call becomes a command for the core
//! task, answered through a oneshot channel.

use std::pin::Pin;

use proto::membership as pb;
use proto::membership::membership_server::{Membership, MembershipServer};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::core::Command;

struct Api {
    core: mpsc::Sender<Command>,
}

fn gone() -> Status {
    Status::unavailable("halo-membershipd is shutting down")
}

impl Api {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.core.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// Leaves the group when the client's stream is dropped.
struct Membership_ {
    pid: u32,
    core: mpsc::Sender<Command>,
    rx: mpsc::Receiver<pb::CpgEvent>,
}

impl Stream for Membership_ {
    type Item = Result<pb::CpgEvent, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

impl Drop for Membership_ {
    fn drop(&mut self) {
        let _ = self.core.try_send(Command::CpgGone { pid: self.pid });
    }
}

#[tonic::async_trait]
impl Membership for Api {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::MembershipStatus>, Status> {
        Ok(Response::new(self.ask(Command::Status).await?))
    }

    async fn quorum(&self, _: Request<pb::QuorumRequest>) -> Result<Response<pb::QuorumStatus>, Status> {
        Ok(Response::new(self.ask(Command::Quorum).await?))
    }

    type CpgJoinStream = Pin<Box<dyn Stream<Item = Result<pb::CpgEvent, Status>> + Send + 'static>>;

    async fn cpg_join(&self, req: Request<pb::CpgJoinRequest>) -> Result<Response<Self::CpgJoinStream>, Status> {
        let group = req.into_inner().group;
        let (pid, rx) = self.ask(|reply| Command::CpgJoin { group, reply }).await?.map_err(Status::invalid_argument)?;
        Ok(Response::new(Box::pin(Membership_ { pid, core: self.core.clone(), rx })))
    }

    async fn cpg_send(&self, req: Request<pb::CpgSendRequest>) -> Result<Response<pb::CpgSendReply>, Status> {
        let r = req.into_inner();
        self.ask(|reply| Command::CpgSend { group: r.group, pid: r.pid, data: r.data, to: r.to, reply }).await?.map_err(Status::invalid_argument)?;
        Ok(Response::new(pb::CpgSendReply {}))
    }
}

pub async fn serve(listener: UnixListener, core: mpsc::Sender<Command>) {
    let incoming = UnixListenerStream::new(listener);
    let r = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(64)
        .add_service(MembershipServer::new(Api { core }))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = r {
        tracing::error!("local API stopped: {e}");
    }
}
