// Generates the gRPC types with the vendored protoc: the build needs nothing outside cargo.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_build::configure().compile_protos(&["proto/membership.proto", "proto/cib.proto", "proto/execd.proto", "proto/fenced.proto", "proto/controld.proto"], &["proto"])?;
    Ok(())
}
