//! The Open Inference Protocol (KServe V2) served for real: REST with JSON tensors and with
//! Triton's binary tensor extension, gRPC with typed and raw contents, metadata, Triton's model
//! configuration, readiness; answers equal `Ensemble::predict`; malformed tensors are refused with
//! a 4xx / INVALID_ARGUMENT that says what is wrong.
//!
//! One test binary: `rest` (REST only), `grpc` (gRPC only) and `both` (what must hold on both
//! transports) share the helpers here.

#[path = "../serve_support/mod.rs"]
mod serve_support;

mod both;
mod grpc;
mod rest;

use lastmile::ensemble::{ItemAnswer, ItemOptions};
use lastmile::proto::inference as pb;
use serde_json::Value;
use serve_support::{json_item, TestServer, PRODUCTS};

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

/// BYTES elements in Triton's binary encoding.
pub(crate) fn encode_bytes(elements: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e.as_bytes());
    }
    out
}

pub(crate) fn decode_bytes(mut raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(raw[4..4 + len].to_vec()).unwrap());
        raw = &raw[4 + len..];
    }
    out
}

pub(crate) fn decode_f32(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub(crate) fn bytes_input(
    name: &str,
    values: &[&str],
) -> pb::model_infer_request::InferInputTensor {
    pb::model_infer_request::InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![values.len() as i64, 1],
        parameters: Default::default(),
        contents: Some(pb::InferTensorContents {
            bytes_contents: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
    }
}

/// The products' titles and descriptions as the two BYTES inputs.
pub(crate) fn product_inputs() -> Vec<pb::model_infer_request::InferInputTensor> {
    vec![
        bytes_input("title", &titles()),
        bytes_input("description", &descriptions()),
    ]
}

pub(crate) fn top_k(k: i64) -> std::collections::HashMap<String, pb::InferParameter> {
    [(
        "top_k".to_owned(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(k)),
        },
    )]
    .into()
}
