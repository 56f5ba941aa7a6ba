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

/// A channel to a local API on a Unix socket (tonic speaks HTTP/2 over it; the URI is unused).
pub async fn connect_unix(path: std::path::PathBuf) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
}

/// The uid of the process that sent a request over a local API's Unix socket (from the
/// socket's peer credentials); None when the transport gives none.
pub fn peer_uid<T>(req: &tonic::Request<T>) -> Option<u32> {
    req.extensions().get::<tonic::transport::server::UdsConnectInfo>().and_then(|i| i.peer_cred).map(|c| c.uid())
}
