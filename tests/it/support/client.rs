//! One client for every transport (own REST, own gRPC, V2 REST, V2 gRPC) that returns one answer
//! shape, [`Answer`] (also made from the library's own answers and from proto ones, to compare
//! with); plain HTTP calls; the admin API over REST and gRPC.

use lastmile::ensemble::{ItemAnswer, LabelScore};
use lastmile::proto::inference as v2;
use lastmile::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use lastmile::proto::lastmile::v1 as pb;
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::transport::Channel;

/// How a prediction comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Rest,
    Grpc,
    V2Rest,
    V2Grpc,
}

pub const TRANSPORTS: [Transport; 4] = [
    Transport::Rest,
    Transport::Grpc,
    Transport::V2Rest,
    Transport::V2Grpc,
];

/// An answer, whatever carried it. The Open Inference Protocol carries only the ranking: its
/// answers have the other fields empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Answer {
    pub predictions: Vec<Scored>,
    #[serde(default)]
    pub rules_fired: Vec<String>,
    #[serde(default)]
    pub agreement: u32,
    #[serde(default)]
    pub abstained: Option<String>,
    #[serde(default)]
    pub models: Vec<ModelPart>,
    /// The members a degraded answer was voted without (model, reason).
    #[serde(default)]
    pub degraded: Vec<Missing>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Missing {
    pub model: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Scored {
    pub label: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelPart {
    pub name: String,
    pub weight: f32,
    pub predictions: Vec<Scored>,
    pub contributions: Vec<Scored>,
}

/// One answer's ranking: (label, score), best first.
pub type Ranked = Vec<(String, f32)>;

impl Answer {
    pub fn from_lib(a: &ItemAnswer) -> Answer {
        let scored = |v: &[LabelScore]| {
            v.iter()
                .map(|p| Scored {
                    label: p.label.clone(),
                    score: p.score,
                })
                .collect()
        };
        Answer {
            predictions: scored(&a.predictions),
            rules_fired: a.rules_fired.clone(),
            agreement: a.agreement,
            abstained: a.abstained.clone(),
            degraded: a
                .degraded
                .iter()
                .flatten()
                .map(|m| Missing {
                    model: m.model.clone(),
                    reason: m.reason.clone(),
                })
                .collect(),
            models: a
                .models
                .iter()
                .flatten()
                .map(|m| ModelPart {
                    name: m.name.clone(),
                    weight: m.weight,
                    predictions: scored(&m.predictions),
                    contributions: scored(&m.contributions),
                })
                .collect(),
        }
    }

    pub fn from_proto(a: &pb::ItemAnswer) -> Answer {
        let scored = |v: &[pb::LabelScore]| {
            v.iter()
                .map(|p| Scored {
                    label: p.label.clone(),
                    score: p.score,
                })
                .collect()
        };
        Answer {
            predictions: scored(&a.predictions),
            rules_fired: a.rules_fired.clone(),
            agreement: a.agreement,
            abstained: (!a.abstained.is_empty()).then(|| a.abstained.clone()),
            degraded: a
                .degraded
                .iter()
                .map(|m| Missing {
                    model: m.model.clone(),
                    reason: m.reason.clone(),
                })
                .collect(),
            models: a
                .models
                .iter()
                .map(|m| ModelPart {
                    name: m.name.clone(),
                    weight: m.weight,
                    predictions: scored(&m.predictions),
                    contributions: scored(&m.contributions),
                })
                .collect(),
        }
    }

    pub fn from_json(v: &Value) -> Answer {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("an answer, got {v}: {e}"))
    }

    /// A V2 answer: one row of the `labels` and `scores` outputs.
    fn from_row(labels: &[String], scores: &[f32]) -> Answer {
        Answer {
            predictions: labels
                .iter()
                .zip(scores)
                .map(|(l, &s)| Scored {
                    label: l.clone(),
                    score: s,
                })
                .collect(),
            rules_fired: Vec::new(),
            agreement: 0,
            abstained: None,
            models: Vec::new(),
            degraded: Vec::new(),
        }
    }

    pub fn ranked(&self) -> Ranked {
        self.predictions
            .iter()
            .map(|p| (p.label.clone(), p.score))
            .collect()
    }

    /// Same labels in the same order, scores within `tol` (batching may change the last bits).
    pub fn matches(&self, other: &Answer, tol: f32) -> bool {
        self.predictions.len() == other.predictions.len()
            && self
                .predictions
                .iter()
                .zip(&other.predictions)
                .all(|(a, b)| a.label == b.label && (a.score - b.score).abs() <= tol)
    }
}

pub fn answers_lib(v: &[ItemAnswer]) -> Vec<Answer> {
    v.iter().map(Answer::from_lib).collect()
}

/// Each answer's ranking.
pub fn ranked(answers: &[ItemAnswer]) -> Vec<Ranked> {
    answers
        .iter()
        .map(|a| Answer::from_lib(a).ranked())
        .collect()
}

/// What a request over any transport got back: the version and digest that answered, one
/// answer per item.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub version: String,
    pub digest: String,
    pub answers: Vec<Answer>,
}

impl Reply {
    pub fn ranked(&self) -> Vec<Ranked> {
        self.answers.iter().map(Answer::ranked).collect()
    }
}

/// Sends items of text fields in one request over `transport` with `top_k` (V2: to `model`);
/// a refusal is the error's text.
pub async fn send(
    transport: Transport,
    http: &str,
    grpc: &str,
    model: &str,
    items: &[Vec<(String, String)>],
    top_k: usize,
) -> Result<Reply, String> {
    match transport {
        Transport::Rest => rest(http, items, top_k).await,
        Transport::Grpc => own_grpc(grpc, items, top_k).await,
        Transport::V2Rest => v2_rest(http, model, items, top_k).await,
        Transport::V2Grpc => v2_grpc(grpc, model, items, top_k).await,
    }
}

async fn rest(http: &str, items: &[Vec<(String, String)>], top_k: usize) -> Result<Reply, String> {
    let items: Vec<Value> = items
        .iter()
        .map(|fields| Value::Object(fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect()))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{http}/v1/predict"))
        .json(&json!({"items": items, "top_k": top_k}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    Ok(Reply {
        version: body["ensemble"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        digest: body["ensemble"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        answers: body["items"]
            .as_array()
            .ok_or("no items")?
            .iter()
            .map(Answer::from_json)
            .collect(),
    })
}

async fn own_grpc(
    grpc: &str,
    items: &[Vec<(String, String)>],
    top_k: usize,
) -> Result<Reply, String> {
    let mut client = pb::lastmile_client::LastmileClient::new(channel(grpc).await);
    let reply = client
        .predict(pb::PredictRequest {
            items: items
                .iter()
                .map(|fields| pb::Item {
                    fields: fields.iter().cloned().collect(),
                    ..Default::default()
                })
                .collect(),
            top_k: top_k as u32,
            ..Default::default()
        })
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let ensemble = reply.ensemble.unwrap_or_default();
    Ok(Reply {
        version: ensemble.version,
        digest: ensemble.digest,
        answers: reply.items.iter().map(Answer::from_proto).collect(),
    })
}

/// The items' fields as V2 BYTES columns: one per field any item has (an empty element where
/// an item lacks it).
fn columns(items: &[Vec<(String, String)>]) -> Vec<(String, Vec<String>)> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in items.iter().flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let values = items
                .iter()
                .map(|fields| {
                    fields
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map_or(String::new(), |(_, v)| v.clone())
                })
                .collect();
            (name, values)
        })
        .collect()
}

async fn v2_rest(
    http: &str,
    model: &str,
    items: &[Vec<(String, String)>],
    top_k: usize,
) -> Result<Reply, String> {
    let inputs: Vec<Value> = columns(items)
        .into_iter()
        .map(|(name, values)| {
            json!({"name": name, "shape": [values.len(), 1], "datatype": "BYTES", "data": values})
        })
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{http}/v2/models/{model}/infer"))
        .json(&json!({"parameters": {"top_k": top_k}, "inputs": inputs}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    let labels: Vec<String> =
        serde_json::from_value(body["outputs"][0]["data"].clone()).map_err(|e| e.to_string())?;
    let scores: Vec<f32> =
        serde_json::from_value(body["outputs"][1]["data"].clone()).map_err(|e| e.to_string())?;
    Ok(Reply {
        version: body["model_version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        digest: body["parameters"]["ensemble_digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        answers: rows(&labels, &scores, top_k),
    })
}

async fn v2_grpc(
    grpc: &str,
    model: &str,
    items: &[Vec<(String, String)>],
    top_k: usize,
) -> Result<Reply, String> {
    let top_k_param = v2::InferParameter {
        parameter_choice: Some(v2::infer_parameter::ParameterChoice::Int64Param(
            top_k as i64,
        )),
    };
    let inputs = columns(items)
        .into_iter()
        .map(|(name, values)| v2::model_infer_request::InferInputTensor {
            name,
            datatype: "BYTES".into(),
            shape: vec![values.len() as i64, 1],
            parameters: Default::default(),
            contents: Some(v2::InferTensorContents {
                bytes_contents: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
                ..Default::default()
            }),
        })
        .collect();
    let reply = GrpcInferenceServiceClient::new(channel(grpc).await)
        .model_infer(v2::ModelInferRequest {
            model_name: model.into(),
            parameters: [("top_k".to_owned(), top_k_param)].into(),
            inputs,
            ..Default::default()
        })
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let labels = decode_bytes(&reply.raw_output_contents[0]);
    let scores = decode_f32(&reply.raw_output_contents[1]);
    let digest = match reply
        .parameters
        .get("ensemble_digest")
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(v2::infer_parameter::ParameterChoice::StringParam(s)) => s,
        _ => String::new(),
    };
    Ok(Reply {
        version: reply.model_version,
        digest,
        answers: rows(&labels, &scores, top_k),
    })
}

/// `[N, k]` labels and scores as N answers; the padding (`""`, 0) is not a prediction.
fn rows(labels: &[String], scores: &[f32], k: usize) -> Vec<Answer> {
    labels
        .chunks(k.max(1))
        .zip(scores.chunks(k.max(1)))
        .map(|(l, s)| {
            let n = l.iter().take_while(|l| !l.is_empty()).count();
            Answer::from_row(&l[..n], &s[..n])
        })
        .collect()
}

/// BYTES elements in Triton's binary encoding.
pub fn encode_bytes(elements: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e.as_bytes());
    }
    out
}

pub fn decode_bytes(mut raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(raw[4..4 + len].to_vec()).unwrap());
        raw = &raw[4 + len..];
    }
    out
}

pub fn decode_f32(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub async fn channel(url: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("the gRPC server accepts a connection")
}

pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the HTTP server answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

pub async fn post_raw(url: &str, body: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the HTTP server answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("a JSON body, got {text:?}: {e}"));
    (status, value)
}

/// One call to the admin REST API: the status and the answer (its JSON, or its text as a JSON
/// string when it is not JSON).
pub async fn admin_call(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.expect("the admin API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub type AdminClient = pb::admin_client::AdminClient<
    tonic::service::interceptor::InterceptedService<Channel, BearerToken>,
>;

/// Adds `authorization: Bearer <token>` to every call (when there is a token).
#[derive(Clone)]
pub struct BearerToken(pub Option<String>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        Ok(req)
    }
}

pub async fn admin_client(url: &str, token: Option<&str>) -> AdminClient {
    pb::admin_client::AdminClient::with_interceptor(
        channel(url).await,
        BearerToken(token.map(str::to_owned)),
    )
}
