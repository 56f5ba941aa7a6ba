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
/// decodes that list and takes its messages in order). `to` names the nodes a message is
/// for (empty: all): what is queued at once goes as one batch per set of nodes, delivered
/// on those nodes alone (the others would decode it only to drop it). Each node still gets
/// its messages in the order they were queued: messages for other nodes may overtake one
/// another, never a message for all. A message whose encoding exceeds `max_one` cannot
/// travel: `dropped` is told and it is skipped. Returns when the queue closes (Ok) or
/// halo-membershipd refuses a send (Err, its reason).
#[allow(clippy::too_many_arguments)]
pub async fn send_batched<M: prost::Message, B: prost::Message>(
    mut membership: membership::membership_client::MembershipClient<tonic::transport::Channel>,
    group: &str,
    pid: u32,
    mut rx: tokio::sync::mpsc::Receiver<M>,
    batch: impl Fn(Vec<M>) -> B,
    to: impl Fn(&M) -> Vec<u32>,
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
        let mut queued = Vec::new();
        let mut size = 0;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            if fits(&m) {
                size += m.encoded_len();
                queued.push(m);
            }
            if size < batch_bytes {
                next = rx.try_recv().ok();
            }
        }
        for (nodes, messages) in by_addressees(queued, &to) {
            let data = batch(messages).encode_to_vec();
            membership.cpg_send(membership::CpgSendRequest { group: group.into(), data, pid, to: nodes }).await.map_err(|e| e.message().to_string())?;
        }
    }
    Ok(())
}

/// `queued` in batches by addressees (empty: all nodes), in order of first appearance; a
/// message for all nodes is a barrier that nothing after it is moved across.
fn by_addressees<M>(queued: Vec<M>, to: &impl Fn(&M) -> Vec<u32>) -> Vec<(Vec<u32>, Vec<M>)> {
    let mut batches: Vec<(Vec<u32>, Vec<M>)> = Vec::new();
    let mut barrier = 0;
    for m in queued {
        let nodes = to(&m);
        if nodes.is_empty() {
            match batches.last_mut().filter(|(n, _)| n.is_empty()) {
                Some((_, b)) => b.push(m),
                None => batches.push((nodes, vec![m])),
            }
            barrier = batches.len();
            continue;
        }
        match batches[barrier..].iter_mut().find(|(n, _)| *n == nodes) {
            Some((_, b)) => b.push(m),
            None => batches.push((nodes, vec![m])),
        }
    }
    batches
}

#[cfg(test)]
mod batching_tests {
    #[test]
    fn batches_by_addressees_keep_each_nodes_order_and_broadcasts_in_place() {
        // (addressee, label); addressee 0 is every node.
        let queued = vec![(2, "a"), (3, "b"), (2, "c"), (0, "all1"), (0, "all2"), (3, "d"), (2, "e"), (3, "f")];
        let to = |m: &(u32, &str)| if m.0 == 0 { Vec::new() } else { vec![m.0] };
        let got: Vec<(Vec<u32>, Vec<&str>)> = super::by_addressees(queued, &to).into_iter().map(|(n, b)| (n, b.into_iter().map(|m| m.1).collect())).collect();
        assert_eq!(
            got,
            vec![(vec![2], vec!["a", "c"]), (vec![3], vec!["b"]), (vec![], vec!["all1", "all2"]), (vec![3], vec!["d", "f"]), (vec![2], vec!["e"])]
        );
    }
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
