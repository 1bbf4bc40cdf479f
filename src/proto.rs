//! Code generated from `proto/` by `build.rs`: messages, tonic servers and clients.

/// lastmile's own API (`proto/lastmile/v1/lastmile.proto`).
pub mod lastmile {
    pub mod v1 {
        tonic::include_proto!("lastmile.v1");
    }
}

/// The Open Inference Protocol (KServe V2) with Triton's model-config call
/// (`proto/inference/grpc_service.proto`).
pub mod inference {
    tonic::include_proto!("inference");
}

/// Descriptors of every service above, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");
