//! The protobuf requests of both gRPC services, decoded from mutated bytes and, when they decode,
//! answered in process: never a panic, never INTERNAL or UNKNOWN.
//!
//! The seeds are encoded here from messages (a binary corpus would drift from the schema).

use lastmile::edge::grpc::LastmileGrpc;
use lastmile::edge::v2::grpc::V2Grpc;
use lastmile::proto::inference as v2pb;
use lastmile::proto::inference::grpc_inference_service_server::GrpcInferenceService;
use lastmile::proto::lastmile::v1 as pb;
use lastmile::proto::lastmile::v1::lastmile_server::Lastmile;
use prost::Message;
use tonic::Code;

use super::api::{guard, service};
use super::{mutate, run, runner};

fn own_seeds() -> Vec<Vec<u8>> {
    let item = |title: &str| pb::Item {
        fields: [("title".to_string(), title.to_string())].into(),
        ..Default::default()
    };
    let requests = [
        pb::PredictRequest {
            items: vec![item("steel chef knife")],
            ..Default::default()
        },
        pb::PredictRequest {
            items: vec![item("oak desk"), item("")],
            top_k: 3,
            candidates: vec!["kitchen".into()],
            explain: true,
            id: "r1".into(),
            timeout_ms: 5000,
            cascade: None,
        },
    ];
    requests.iter().map(Message::encode_to_vec).collect()
}

fn v2_seeds() -> Vec<Vec<u8>> {
    use v2pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
    let bytes_input = |data: Vec<&str>| InferInputTensor {
        name: "title".into(),
        datatype: "BYTES".into(),
        shape: vec![data.len() as i64],
        contents: Some(v2pb::InferTensorContents {
            bytes_contents: data.into_iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let raw = {
        let mut r = Vec::new();
        for s in ["steel chef knife", "oak desk"] {
            r.extend((s.len() as u32).to_le_bytes());
            r.extend(s.as_bytes());
        }
        r
    };
    let requests = [
        v2pb::ModelInferRequest {
            model_name: "starter".into(),
            inputs: vec![bytes_input(vec!["steel chef knife"])],
            ..Default::default()
        },
        v2pb::ModelInferRequest {
            model_name: "starter".into(),
            inputs: vec![InferInputTensor {
                contents: None,
                shape: vec![2, 1],
                ..bytes_input(vec!["", ""])
            }],
            outputs: vec![InferRequestedOutputTensor {
                name: "labels".into(),
                ..Default::default()
            }],
            raw_input_contents: vec![raw],
            parameters: [(
                "top_k".to_string(),
                v2pb::InferParameter {
                    parameter_choice: Some(v2pb::infer_parameter::ParameterChoice::Int64Param(2)),
                },
            )]
            .into(),
            ..Default::default()
        },
    ];
    requests.iter().map(Message::encode_to_vec).collect()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn acceptable(status: &tonic::Status, what: &str) -> Result<(), String> {
    match status.code() {
        Code::Internal | Code::Unknown => Err(format!("{what}: {status:?}")),
        _ if status.message().is_empty() => Err(format!("{what}: a status with no message")),
        _ => Ok(()),
    }
}

#[test]
fn own_grpc_requests_decode_and_answer_or_are_refused_clearly() {
    let grpc = LastmileGrpc { service: service() };
    let _servers = guard();
    run(
        runner("grpc", 800),
        "grpc",
        mutate::mutated(own_seeds(), 6),
        |bytes| {
            let Ok(request) = pb::PredictRequest::decode(bytes.as_slice()) else {
                return Ok(());
            };
            match block_on(grpc.predict(tonic::Request::new(request))) {
                Ok(_) => Ok(()),
                Err(status) => acceptable(&status, "Predict"),
            }
        },
    );
}

#[test]
fn v2_grpc_requests_decode_and_answer_or_are_refused_clearly() {
    let grpc = V2Grpc { service: service() };
    let _servers = guard();
    run(
        runner("v2-grpc", 800),
        "v2-grpc",
        mutate::mutated(v2_seeds(), 6),
        |bytes| {
            let Ok(request) = v2pb::ModelInferRequest::decode(bytes.as_slice()) else {
                return Ok(());
            };
            match block_on(grpc.model_infer(tonic::Request::new(request))) {
                Ok(_) => Ok(()),
                Err(status) => acceptable(&status, "ModelInfer"),
            }
        },
    );
}
