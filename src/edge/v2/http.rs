//! The Open Inference Protocol over HTTP/REST: health, server and model metadata, Triton's model
//! configuration, and inference with JSON tensors or Triton's binary tensor extension (the JSON
//! header's length in `Inference-Header-Content-Length`, tensor bytes after it, inputs and outputs
//! marked with `binary_data_size` / `binary_data` parameters). Routes exist with and without
//! `/versions/{version}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::tensors::Elements;
use super::{self as v2, Datatype, InputTensor, TensorMeta};
use crate::edge::body::{parse_object, present, LimitedBody};
use crate::edge::error::{ApiError, ErrorKind};
use crate::ensemble::Ensemble;
use crate::service::{Service, Target};

/// Triton's header giving the length of the JSON part of a body with binary tensors.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

pub fn routes() -> Router<Arc<Service>> {
    let mut router = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/models/stats", get(statistics));
    for base in [
        "/v2/models/{model}",
        "/v2/models/{model}/versions/{version}",
    ] {
        router = router
            .route(base, get(model_metadata))
            .route(&format!("{base}/ready"), get(model_ready))
            .route(&format!("{base}/config"), get(model_config))
            .route(&format!("{base}/stats"), get(statistics))
            .route(&format!("{base}/infer"), post(infer));
    }
    router
}

type Params = Path<HashMap<String, String>>;

/// The model and version a route names (no version: whatever is served).
fn target(params: &HashMap<String, String>) -> Target {
    let part = |key: &str| params.get(key).cloned().unwrap_or_default();
    Target::Model {
        name: part("model"),
        version: part("version"),
    }
}

fn model(service: &Service, params: &HashMap<String, String>) -> Result<Arc<Ensemble>, ApiError> {
    Ok(service.snapshot(&target(params))?)
}

fn not_ready() -> ApiError {
    ApiError::new(ErrorKind::ShuttingDown, "the server is shutting down")
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "lastmile",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": v2::EXTENSIONS,
    }))
}

async fn server_ready(State(service): State<Arc<Service>>) -> Result<StatusCode, ApiError> {
    if service.ready() {
        Ok(StatusCode::OK)
    } else {
        Err(not_ready())
    }
}

async fn model_ready(
    State(service): State<Arc<Service>>,
    Path(params): Params,
) -> Result<StatusCode, ApiError> {
    model(&service, &params)?;
    server_ready(State(service)).await
}

fn tensors_json(meta: &[TensorMeta]) -> Vec<Value> {
    meta.iter()
        .map(|t| json!({"name": t.name, "datatype": t.datatype.as_str(), "shape": t.shape}))
        .collect()
}

async fn model_metadata(
    State(service): State<Arc<Service>>,
    Path(params): Params,
) -> Result<Json<Value>, ApiError> {
    let m = v2::metadata(&*model(&service, &params)?);
    Ok(Json(json!({
        "name": m.name,
        "versions": m.versions,
        "platform": m.platform,
        "inputs": tensors_json(&m.inputs),
        "outputs": tensors_json(&m.outputs),
        "parameters": m
            .parameters
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<String, Value>>(),
    })))
}

/// Triton's model configuration, as JSON.
async fn model_config(
    State(service): State<Arc<Service>>,
    Path(params): Params,
) -> Result<Json<Value>, ApiError> {
    let c = v2::config(&*model(&service, &params)?, &service);
    let input: Vec<Value> = c
        .inputs
        .iter()
        .map(|t| {
            json!({"name": t.name, "data_type": t.datatype.triton(), "dims": t.dims,
                   "optional": t.optional})
        })
        .collect();
    let output: Vec<Value> = c
        .outputs
        .iter()
        .map(|t| json!({"name": t.name, "data_type": t.datatype.triton(), "dims": t.dims}))
        .collect();
    Ok(Json(json!({
        "name": c.name,
        "platform": v2::PLATFORM,
        "backend": v2::BACKEND,
        "max_batch_size": c.max_batch_size,
        "input": input,
        "output": output,
        "instance_group": [{"name": c.name, "kind": "KIND_CPU", "count": c.instances}],
        "parameters": {"version": {"string_value": c.version}},
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
    #[serde(default, deserialize_with = "present")]
    repository_name: Option<String>,
}

/// The model repository extension's index (an empty body asks for every model).
async fn repository_index(
    State(service): State<Arc<Service>>,
    body: LimitedBody,
) -> Result<Json<Value>, ApiError> {
    let request: IndexRequest = if body.bytes.iter().all(u8::is_ascii_whitespace) {
        IndexRequest {
            ready: false,
            repository_name: None,
        }
    } else {
        parse_object(&body.bytes)?
    };
    let _ = request.repository_name;
    let index = super::extensions::repository_index(&service, request.ready)
        .into_iter()
        .map(|e| {
            let mut entry = json!({"name": e.name, "version": e.version, "state": e.state});
            if !e.reason.is_empty() {
                entry["reason"] = Value::String(e.reason);
            }
            entry
        })
        .collect();
    Ok(Json(Value::Array(index)))
}

/// The statistics extension, in Triton's JSON shape.
async fn statistics(
    State(service): State<Arc<Service>>,
    params: Option<Params>,
) -> Result<Json<Value>, ApiError> {
    let params = params.map(|Path(p)| p).unwrap_or_default();
    let part = |key: &str| params.get(key).cloned().unwrap_or_default();
    let stats = super::extensions::statistics(&service, &part("model"), &part("version"))?;
    let d = |d: crate::ensemble::stats::StatDuration| json!({"count": d.count, "ns": d.ns});
    let zero = d(Default::default());
    let model_stats: Vec<Value> = stats
        .into_iter()
        .map(|n| {
            let s = n.stats;
            json!({
                "name": n.name,
                "version": n.version,
                "last_inference": s.last_inference,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": d(s.success),
                    "fail": d(s.fail),
                    "queue": d(s.queue),
                    "compute_input": zero,
                    "compute_infer": d(s.compute_infer),
                    "compute_output": zero,
                    "cache_hit": zero,
                    "cache_miss": zero,
                },
                "batch_stats": [],
            })
        })
        .collect();
    Ok(Json(json!({ "model_stats": model_stats })))
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default, deserialize_with = "present")]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    #[serde(default, deserialize_with = "present")]
    outputs: Option<Vec<JsonOutput>>,
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn infer(
    State(service): State<Arc<Service>>,
    Path(params): Params,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let part = |key: &str| params.get(key).cloned().unwrap_or_default();
    infer_body(&service, part("model"), part("version"), body).await
}

/// Answers a V2 inference body addressed to `model` (and `version`, if not empty): what the
/// infer route does, and what SageMaker's `/invocations` does with a V2 body.
pub async fn infer_body(
    service: &Service,
    model: String,
    version: String,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    let (head, binary) = split_body(&body)?;
    let timeout = crate::edge::timeout::http(&body.headers, None)?;
    let request: InferRequest = parse_object(head)?;
    let inputs = read_inputs(request.inputs, binary)?;
    let parameters = request.parameters;
    let param = |name: &str| parameters.get(name).map(param_of);
    let binary_default = flag(
        &parameters,
        "binary_data_output",
        "parameter binary_data_output",
    )?
    .unwrap_or(false);
    let mut binary_asked = HashMap::new();
    let named = match request.outputs {
        None => None,
        Some(outputs) => {
            let mut names = Vec::with_capacity(outputs.len());
            for o in outputs {
                let what = format!("output {:?}: parameter binary_data", o.name);
                if let Some(b) = flag(&o.parameters, "binary_data", &what)? {
                    binary_asked.insert(o.name.clone(), b);
                }
                names.push(o.name);
            }
            Some(names)
        }
    };
    let inferred = v2::infer(
        service,
        v2::Infer {
            model,
            version,
            inputs,
            param,
            outputs: named,
            timeout,
        },
    )
    .await?;
    let binary = |name: &str| binary_asked.get(name).copied().unwrap_or(binary_default);
    Ok(encode_reply(inferred, request.id, binary))
}

/// A boolean parameter, if given; anything else given is refused, naming it as `what`.
fn flag(parameters: &Map<String, Value>, name: &str, what: &str) -> Result<Option<bool>, ApiError> {
    match parameters.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(format!("{what} must be a boolean"))),
    }
}

/// The JSON part of a body and the binary tensor data after it (Triton's binary extension).
fn split_body(body: &LimitedBody) -> Result<(&[u8], &[u8]), ApiError> {
    if let Some(enc) = body.headers.get(header::CONTENT_ENCODING) {
        if enc.as_bytes() != b"identity" {
            return Err(ApiError::bad_request(
                "compressed request bodies are not supported (Content-Encoding)",
            ));
        }
    }
    let Some(v) = body.headers.get(HEADER_LENGTH) else {
        return Ok((&body.bytes[..], &b""[..]));
    };
    let n = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n <= body.bytes.len())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{HEADER_LENGTH} must be a number of bytes within the body ({} bytes)",
                body.bytes.len()
            ))
        })?;
    Ok(body.bytes.split_at(n))
}

/// The inputs' elements: from their JSON `data`, or in order from the binary data.
fn read_inputs(inputs: Vec<JsonInput>, mut binary: &[u8]) -> Result<Vec<InputTensor>, ApiError> {
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let elements = match binary_size(&input.parameters, &input.name)? {
            Some(size) => {
                if size > binary.len() {
                    return Err(ApiError::bad_request(format!(
                        "input {:?}: binary_data_size {size} runs past the end of the body",
                        input.name
                    )));
                }
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                v2::decode(&input.name, &input.datatype, raw)?
            }
            None => json_elements(&input)?,
        };
        tensors.push(InputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            elements,
        });
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} bytes of binary data follow the inputs' binary_data_size",
            binary.len()
        )));
    }
    Ok(tensors)
}

/// A JSON parameter as the V2 model reads parameters.
fn param_of(v: &Value) -> v2::Param<'_> {
    match v {
        Value::Number(n) => n.as_i64().map_or(v2::Param::Other, v2::Param::Int),
        Value::Bool(b) => v2::Param::Bool(*b),
        Value::String(s) => v2::Param::Text(s),
        Value::Array(_) => {
            serde_json::from_value(v.clone()).map_or(v2::Param::Other, v2::Param::List)
        }
        _ => v2::Param::Other,
    }
}

/// The answer as JSON, with the outputs `binary` says so as binary data after it.
fn encode_reply(
    inferred: v2::Inferred,
    id: Option<String>,
    binary: impl Fn(&str) -> bool,
) -> Response {
    let e = inferred.ensemble;
    let mut outputs = Vec::with_capacity(inferred.outputs.len());
    let mut tail: Vec<u8> = Vec::new();
    for (name, tensor) in inferred.outputs {
        let datatype = tensor.datatype.as_str();
        let mut output = json!({"name": name, "datatype": datatype, "shape": tensor.shape});
        if binary(&name) {
            let raw = tensor.data.encode();
            output["parameters"] = json!({"binary_data_size": raw.len()});
            tail.extend_from_slice(&raw);
        } else {
            output["data"] = match tensor.data {
                v2::OutputData::Bytes(v) => v
                    .iter()
                    .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                    .collect(),
                v2::OutputData::F32(v) => json!(v),
            };
        }
        outputs.push(output);
    }
    let parameters: Map<String, Value> = v2::reply_parameters(&e)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let mut reply = json!({
        "model_name": e.name,
        "model_version": e.version,
        "parameters": parameters,
        "outputs": outputs,
    });
    if let Some(id) = id {
        reply["id"] = Value::String(id);
    }
    let head = serde_json::to_vec(&reply).expect("JSON values serialise");
    if tail.is_empty() {
        let json = HeaderValue::from_static("application/json");
        return ([(header::CONTENT_TYPE, json)], head).into_response();
    }
    let length = head.len();
    let mut bytes = head;
    bytes.extend_from_slice(&tail);
    let binary = HeaderValue::from_static("application/octet-stream");
    let headers = [
        (header::CONTENT_TYPE, binary),
        (
            header::HeaderName::from_static(HEADER_LENGTH),
            HeaderValue::from(length),
        ),
    ];
    (headers, bytes).into_response()
}

/// The input's `binary_data_size`, if it is sent as binary.
fn binary_size(parameters: &Map<String, Value>, name: &str) -> Result<Option<usize>, ApiError> {
    match parameters.get("binary_data_size") {
        None => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            ApiError::bad_request(format!(
                "input {name:?}: binary_data_size must be a non-negative integer"
            ))
        }),
    }
}

/// A JSON input's `data`, flattened row-major and checked against its datatype.
fn json_elements(input: &JsonInput) -> Result<Elements, ApiError> {
    let bad = |why: String| ApiError::bad_request(format!("input {:?}: {why}", input.name));
    let Some(data) = &input.data else {
        return Err(bad(
            "no data (give `data`, or binary_data_size with binary data)".into(),
        ));
    };
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    match Datatype::parse(&input.datatype) {
        Some(Datatype::Bytes) => flat
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(|s| s.as_bytes().to_vec())
                    .ok_or_else(|| bad(format!("element {i} of BYTES data is not a string")))
            })
            .collect::<Result<_, _>>()
            .map(Elements::Bytes),
        Some(datatype) => {
            let numbers = flat
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_f64().ok_or_else(|| {
                        bad(format!(
                            "element {i} of {} data is not a number",
                            input.datatype
                        ))
                    })
                })
                .collect::<Result<Vec<f64>, _>>()?;
            Ok(if datatype == Datatype::Fp32 {
                Elements::F32(numbers.into_iter().map(|x| x as f32).collect())
            } else {
                Elements::F64(numbers)
            })
        }
        None => Err(bad(format!(
            "datatype {} is not served (BYTES for text, FP32 or FP64 for numbers)",
            input.datatype
        ))),
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}
