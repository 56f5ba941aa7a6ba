//! Wire types of halo's local APIs (gRPC over each node's Unix sockets), generated from
//! the .proto files in `proto/`. Nothing else lives here.

pub mod membership {
    tonic::include_proto!("halo.membership");
}
