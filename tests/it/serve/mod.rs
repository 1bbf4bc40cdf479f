//! The server as clients see it: lastmile's own API over REST (reqwest) and gRPC (tonic clients
//! generated from `proto/`): answers equal the compute pool's on both transports, batches,
//! streams, explain, candidate restriction, the ensemble description, malformed input, every
//! limit and overload, each refused with the same error kind on both transports (`answers`,
//! `refusals`); the Open Inference Protocol (KServe V2) over REST with JSON tensors and Triton's
//! binary tensor extension and over gRPC with typed and raw contents, metadata, Triton's model
//! configuration, readiness, malformed tensors refused with what is wrong (`v2_rest`, `v2_grpc`,
//! `v2_both`); health, reflection, metrics and the OpenAPI document (`ops`); graceful shutdown
//! (`shutdown`); binding every listener (`listen`); SageMaker's container contract
//! (`sagemaker`); the repository index and statistics extensions (`v2_extensions`); Triton's own Python client (`tritonclient`).

mod answers;
mod listen;
mod ops;
mod refusals;
mod sagemaker;
mod shutdown;
mod tritonclient;
mod v2_both;
mod v2_extensions;
mod v2_grpc;
mod v2_rest;

use lastmile::ensemble::{ItemAnswer, ItemOptions};
use lastmile::proto::inference as v2pb;
use lastmile::proto::lastmile::v1 as pb;
use serde_json::Value;

pub(crate) use crate::support::client::{decode_bytes, decode_f32, encode_bytes};
use crate::support::{json_item, proto_item, TestServer, PRODUCTS};

pub(crate) fn products_json() -> Vec<Value> {
    PRODUCTS
        .iter()
        .map(|(t, d)| json_item(&[("title", t), ("description", d)]))
        .collect()
}

pub(crate) fn products_proto() -> Vec<pb::Item> {
    PRODUCTS
        .iter()
        .map(|(t, d)| proto_item(&[("title", t), ("description", d)]))
        .collect()
}

/// The `lastmile-error` kind a gRPC status carries.
pub(crate) fn kind(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("lastmile-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Labels and scores, `[N][k]`, as `Ensemble::predict` gives them for the products.
pub(crate) async fn expected(server: &TestServer, k: usize) -> (Vec<Vec<String>>, Vec<Vec<f32>>) {
    expected_with(
        server,
        ItemOptions {
            top_k: k,
            ..ItemOptions::default()
        },
    )
    .await
}

pub(crate) async fn expected_with(
    server: &TestServer,
    options: ItemOptions,
) -> (Vec<Vec<String>>, Vec<Vec<f32>>) {
    let answers = expected_answers(server, options).await;
    let labels = answers
        .iter()
        .map(|a| a.predictions.iter().map(|p| p.label.clone()).collect())
        .collect();
    let scores = answers
        .iter()
        .map(|a| a.predictions.iter().map(|p| p.score).collect())
        .collect();
    (labels, scores)
}

/// The products' whole answers, as `Ensemble::predict` gives them with `options`.
pub(crate) async fn expected_answers(server: &TestServer, options: ItemOptions) -> Vec<ItemAnswer> {
    let objects: Vec<Value> = PRODUCTS
        .iter()
        .map(|(t, d)| json_item(&[("title", t), ("description", d)]))
        .collect();
    server.expected(server.items(&objects, options)).await
}

pub(crate) fn titles() -> Vec<&'static str> {
    PRODUCTS.iter().map(|(t, _)| *t).collect()
}

pub(crate) fn descriptions() -> Vec<&'static str> {
    PRODUCTS.iter().map(|(_, d)| *d).collect()
}

pub(crate) fn rows<T: Clone>(flat: &[T], k: usize) -> Vec<Vec<T>> {
    flat.chunks(k).map(<[T]>::to_vec).collect()
}

pub(crate) fn bytes_input(
    name: &str,
    values: &[&str],
) -> v2pb::model_infer_request::InferInputTensor {
    v2pb::model_infer_request::InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![values.len() as i64, 1],
        parameters: Default::default(),
        contents: Some(v2pb::InferTensorContents {
            bytes_contents: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
    }
}

/// The products' titles and descriptions as the two BYTES inputs.
pub(crate) fn product_inputs() -> Vec<v2pb::model_infer_request::InferInputTensor> {
    vec![
        bytes_input("title", &titles()),
        bytes_input("description", &descriptions()),
    ]
}

pub(crate) fn top_k(k: i64) -> std::collections::HashMap<String, v2pb::InferParameter> {
    [(
        "top_k".to_owned(),
        v2pb::InferParameter {
            parameter_choice: Some(v2pb::infer_parameter::ParameterChoice::Int64Param(k)),
        },
    )]
    .into()
}
