//! The local gRPC API on `run_dir/cibd.sock` (mode 0660). Every call becomes a command for
//! the core task; writes first ask halo-membershipd whether the partition is quorate.
//!
//! Access, as Pacemaker's: the socket is mode 0660, group `haclient` when that group exists,
//! so only its members (and root) connect. Root, `hacluster` and the daemon's own user are
//! privileged; any other caller, identified by the socket's peer credentials, is subject to
//! the CIB's ACLs when `enable-acl` is true: reads are filtered, writes judged against the
//! resulting CIB (on every node alike: the user and its groups travel in the log entry).
//! Watching changes and changing the voters are for privileged callers only.

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
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::core::{Command, Writer};
use crate::machine::refusal;
use cib::acl::Requester;

struct Api {
    core: mpsc::Sender<Command>,
    watch: broadcast::Sender<pb::WatchEvent>,
    membership: MembershipClient<Channel>,
}

fn gone() -> Status {
    Status::unavailable("halo-cibd is shutting down")
}

/// Who is calling: None for a privileged caller, else the requester ACLs apply to.
fn caller<T>(req: &Request<T>) -> Result<Option<Requester>, Status> {
    let uid = proto::peer_uid(req).ok_or_else(|| Status::permission_denied("cannot identify the caller of the CIB socket"))?;
    // SAFETY: geteuid has no preconditions.
    if uid == 0 || uid == unsafe { libc::geteuid() } {
        return Ok(None);
    }
    let (user, gid) = user_of(uid).ok_or_else(|| Status::permission_denied(format!("uid {uid} has no user name; CIB ACLs need one")))?;
    if user == "hacluster" {
        return Ok(None);
    }
    Ok(Some(Requester { groups: groups_of(&user, gid), user }))
}

/// The caller's user and program names, for the CIB's record of who changed it last.
fn writer<T>(req: &Request<T>, who: Option<&Requester>) -> Writer {
    let cred = req.extensions().get::<tonic::transport::server::UdsConnectInfo>().and_then(|i| i.peer_cred);
    let user = match who {
        Some(r) => r.user.clone(),
        None => cred.and_then(|c| user_of(c.uid())).map(|(u, _)| u).unwrap_or_default(),
    };
    // The program as the kernel names it (at most 15 bytes, as ps shows it).
    let client = cred.and_then(|c| c.pid()).and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()).map(|s| s.trim_end().to_string()).unwrap_or_default();
    Writer { user, client }
}

fn privileged<T>(req: &Request<T>, what: &str) -> Result<(), Status> {
    match caller(req)? {
        None => Ok(()),
        Some(r) => Err(Status::permission_denied(format!("user '{}' may not {what}: only root and hacluster may", r.user))),
    }
}

/// The user name and primary group of `uid`.
fn user_of(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes into `pw` and `buf`, both ours and large enough per its contract.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) != 0 || out.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned();
        Some((name, pw.pw_gid))
    }
}

/// The names of the groups that list `user` as a member (what Pacemaker's acl_group
/// matches), plus its primary group.
fn groups_of(user: &str, gid: u32) -> Vec<String> {
    let Ok(cuser) = std::ffi::CString::new(user) else { return Vec::new() };
    let mut n: libc::c_int = 64;
    let mut gids: Vec<libc::gid_t> = vec![0; n as usize];
    // SAFETY: getgrouplist fills at most `n` entries of `gids` and updates `n`.
    unsafe {
        if libc::getgrouplist(cuser.as_ptr(), gid, gids.as_mut_ptr(), &mut n) < 0 {
            gids = vec![0; n.max(0) as usize];
            libc::getgrouplist(cuser.as_ptr(), gid, gids.as_mut_ptr(), &mut n);
        }
    }
    gids.truncate(n.max(0) as usize);
    let mut names: Vec<String> = gids.into_iter().filter_map(group_name).collect();
    names.sort();
    names.dedup();
    names
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getgrgid_r writes into `gr` and `buf`, both ours and large enough per its contract.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut out: *mut libc::group = std::ptr::null_mut();
        if libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) != 0 || out.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(gr.gr_name).to_string_lossy().into_owned())
    }
}

/// The gid of `haclient`, if that group exists (the CIB socket's group, as Pacemaker's).
pub fn haclient_gid() -> Option<u32> {
    let name = std::ffi::CString::new("haclient").ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getgrnam_r writes into `gr` and `buf`, both ours.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut out: *mut libc::group = std::ptr::null_mut();
        if libc::getgrnam_r(name.as_ptr(), &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) != 0 || out.is_null() {
            return None;
        }
        Some(gr.gr_gid)
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
        let who = caller(&req)?;
        let r = req.into_inner();
        Ok(Response::new(self.ask(|reply| Command::Query { section: r.section, xpath: r.xpath, who, reply }).await?))
    }

    async fn write(&self, req: Request<pb::WriteRequest>) -> Result<Response<pb::WriteReply>, Status> {
        let who = caller(&req)?;
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
        let writer = writer(&req, who.as_ref());
        let write = req.into_inner();
        let r = self.ask(|reply| Command::Write { write, who, writer, reply }).await?;
        Ok(Response::new(match r {
            Ok(reply) => reply,
            Err(e) => pb::WriteReply { error: Some(e), ..Default::default() },
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send + 'static>>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        privileged(&req, "watch the CIB's changes (patches are not filtered by ACLs)")?;
        let configuration_only = req.get_ref().configuration_only;
        let rx = tokio_stream::wrappers::BroadcastStream::new(self.watch.subscribe());
        let s = rx.filter(move |r| !(configuration_only && r.as_ref().is_ok_and(|e| !e.configuration))).map(|r| r.map_err(|_| Status::data_loss("the watcher fell behind the CIB's changes; watch again and re-read the CIB")));
        Ok(Response::new(Box::pin(s)))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::CibStatus>, Status> {
        caller(&req)?;
        let mut s = self.ask(|reply| Command::Status { reply }).await?;
        s.quorate = self.quorum().await.map(|q| q.quorate).unwrap_or(false);
        Ok(Response::new(s))
    }

    async fn change_voters(&self, req: Request<pb::ChangeVotersRequest>) -> Result<Response<pb::ChangeVotersReply>, Status> {
        privileged(&req, "change the CIB's voters")?;
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
