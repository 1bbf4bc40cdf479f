//! Generates the gRPC code for the protos in `proto/` (lastmile's own API and the Open Inference
//! Protocol) and the descriptor set that server reflection serves. Uses the vendored `protoc`
//! unless `PROTOC` names one.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        std::env::set_var("PROTOC", protoc);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/lastmile/v1/lastmile.proto",
        "proto/lastmile/v1/admin.proto",
        "proto/lastmile/v1/shadow.proto",
        "proto/inference/grpc_service.proto",
    ];
    let mut config = tonic_prost_build::configure();
    // The ensemble description is served as JSON too (`GET /v1/ensemble`): one source for both.
    for message in [
        "EnsembleInfo",
        "ModelInfo",
        "VoteInfo",
        "VoteGroup",
        "RuleInfo",
    ] {
        config = config.type_attribute(
            format!(".lastmile.v1.{message}"),
            "#[derive(serde::Serialize)]",
        );
    }
    // The admin API speaks these messages as REST JSON too (both ways: `lastmile deploy` reads
    // them back). Missing fields take their proto defaults; requests refuse unknown fields.
    // Provenance maps keep their keys in order, in JSON as in text.
    for message in [".lastmile.v1.RegistryOrigin", ".lastmile.v1.Provenance"] {
        config = config.btree_map(message);
    }
    for message in [
        "EnsembleRef",
        "Provenance",
        "FileProvenance",
        "RegistryOrigin",
        "Dataset",
        "RegistryStatus",
        "EnsembleSummary",
        "ModelDigest",
        "Metrics",
        "Validation",
        "Rejection",
        "SwapResult",
    ] {
        config = config.type_attribute(
            format!(".lastmile.v1.{message}"),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        );
    }
    for message in [
        "LoadRequest",
        "ValidateRequest",
        "PromoteRequest",
        "DeployRequest",
        "RollbackRequest",
        "ReleaseRequest",
        "StatusRequest",
        "StageShadowRequest",
        "ShadowReportRequest",
        "StopShadowRequest",
    ] {
        config = config.type_attribute(
            format!(".lastmile.v1.{message}"),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        );
    }
    config
        .file_descriptor_set_path(out.join("descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
