//! Wire types of halo's local APIs (gRPC over each node's Unix sockets), generated from
//! the .proto files in `proto/`, and how to connect to them.

pub mod membership {
    tonic::include_proto!("halo.membership");
}

pub mod cib {
    tonic::include_proto!("halo.cib");
}

pub mod execd {
    tonic::include_proto!("halo.execd");
}

pub mod fenced {
    tonic::include_proto!("halo.fenced");
}

pub mod controld {
    tonic::include_proto!("halo.controld");
}

/// A channel to a local API on a Unix socket (tonic speaks HTTP/2 over it; the URI is unused).
pub async fn connect_unix(path: std::path::PathBuf) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
}

/// Bind a local API's Unix socket: a stale socket file from an earlier run is removed
/// first; the socket gets mode 0660 (its owner and group may connect).
pub fn bind_local_api(path: &std::path::Path) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(listener)
}

/// A daemon's shutdown: resolves on SIGTERM (halod stopping the node) or SIGINT.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
    })
}

/// Join the process group `group` through halo-membershipd: the group's event stream and
/// the member id (pid) this stream was given, which sends name as their sender.
pub async fn cpg_join(
    client: &mut membership::membership_client::MembershipClient<tonic::transport::Channel>,
    group: &str,
) -> Result<(tonic::Streaming<membership::CpgEvent>, u32), String> {
    let mut stream = client
        .cpg_join(membership::CpgJoinRequest { group: group.into() })
        .await
        .map_err(|e| format!("cannot join the process group {group}: {}", e.message()))?
        .into_inner();
    match stream.message().await {
        Ok(Some(membership::CpgEvent { event: Some(membership::cpg_event::Event::JoinedAs(m)) })) => Ok((stream, m.pid)),
        other => Err(format!("halo-membershipd did not confirm the join of {group}: {other:?}")),
    }
}

/// The one sender of a daemon's group messages: what is queued in `rx` goes out in order,
/// batched into group messages of about `batch_bytes` (`batch` wraps a list; the receiver
/// decodes that list and takes its messages in order). A message whose encoding exceeds
/// `max_one` cannot travel: `dropped` is told and it is skipped. Returns when the queue
/// closes (Ok) or halo-membershipd refuses a send (Err, its reason).
pub async fn send_batched<M: prost::Message, B: prost::Message>(
    mut membership: membership::membership_client::MembershipClient<tonic::transport::Channel>,
    group: &str,
    pid: u32,
    mut rx: tokio::sync::mpsc::Receiver<M>,
    batch: impl Fn(Vec<M>) -> B,
    max_one: usize,
    batch_bytes: usize,
    dropped: impl Fn(&M),
) -> Result<(), String> {
    let fits = |m: &M| {
        let ok = m.encoded_len() <= max_one;
        if !ok {
            dropped(m);
        }
        ok
    };
    while let Some(first) = rx.recv().await {
        if !fits(&first) {
            continue;
        }
        let mut size = first.encoded_len();
        let mut messages = vec![first];
        while size < batch_bytes {
            match rx.try_recv() {
                Ok(m) if fits(&m) => {
                    size += m.encoded_len();
                    messages.push(m);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let data = batch(messages).encode_to_vec();
        membership.cpg_send(membership::CpgSendRequest { group: group.into(), data, pid }).await.map_err(|e| e.message().to_string())?;
    }
    Ok(())
}

/// [`connect_unix`], retried until the socket answers or `within` has passed (a daemon
/// waiting for another that halod started just before it).
pub async fn connect_unix_within(path: std::path::PathBuf, within: std::time::Duration) -> Result<tonic::transport::Channel, String> {
    let t0 = std::time::Instant::now();
    loop {
        match connect_unix(path.clone()).await {
            Ok(ch) => return Ok(ch),
            Err(e) if t0.elapsed() >= within => return Err(format!("cannot reach {} within {} s: {e}", path.display(), within.as_secs())),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// Refuse a request unless it comes from root or from the daemon's own user: for the
/// local APIs that are as powerful as root (running agents, fencing). `daemon` names the
/// daemon and `what` what a caller would do with it, for the refusal.
pub fn require_root_or_self<T>(req: &tonic::Request<T>, daemon: &str, what: &str) -> Result<(), tonic::Status> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match peer_uid(req) {
        Some(u) if u == 0 || u == me => Ok(()),
        Some(u) => Err(tonic::Status::permission_denied(format!("uid {u} may not {what}: only root and uid {me} may use {daemon}"))),
        None => Err(tonic::Status::permission_denied(format!("cannot identify the caller of {daemon}'s socket"))),
    }
}

/// The uid of the process that sent a request over a local API's Unix socket (from the
/// socket's peer credentials); None when the transport gives none.
pub fn peer_uid<T>(req: &tonic::Request<T>) -> Option<u32> {
    req.extensions().get::<tonic::transport::server::UdsConnectInfo>().and_then(|i| i.peer_cred).map(|c| c.uid())
}
