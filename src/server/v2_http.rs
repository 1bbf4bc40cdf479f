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

use super::error::{ApiError, ErrorKind};
use super::http::{parse_json, LimitedBody};
use super::state::AppState;
use super::v2::{self, Elements, InputTensor};

/// Triton's header giving the length of the JSON part of a body with binary tensors.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

pub fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready));
    for base in [
        "/v2/models/{model}",
        "/v2/models/{model}/versions/{version}",
    ] {
        router = router
            .route(base, get(model_metadata))
            .route(&format!("{base}/ready"), get(model_ready))
            .route(&format!("{base}/config"), get(model_config))
            .route(&format!("{base}/infer"), post(infer));
    }
    router
}

type Params = Path<HashMap<String, String>>;

fn model(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<Arc<crate::ensemble::Ensemble>, ApiError> {
    let name = params.get("model").map_or("", String::as_str);
    let version = params.get("version").map_or("", String::as_str);
    v2::find_model(state, name, version)
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

async fn server_ready(State(state): State<Arc<AppState>>) -> Result<StatusCode, ApiError> {
    if state.ready() {
        Ok(StatusCode::OK)
    } else {
        Err(not_ready())
    }
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(params): Params,
) -> Result<StatusCode, ApiError> {
    model(&state, &params)?;
    server_ready(State(state)).await
}

fn tensors_json(meta: Vec<v2::TensorMeta>) -> Vec<Value> {
    meta.into_iter()
        .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
        .collect()
}

async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(params): Params,
) -> Result<Json<Value>, ApiError> {
    let e = model(&state, &params)?;
    Ok(Json(json!({
        "name": e.name,
        "versions": [e.version],
        "platform": v2::PLATFORM,
        "inputs": tensors_json(v2::inputs_meta(&e)),
        "outputs": tensors_json(v2::outputs_meta()),
    })))
}

/// Triton's model configuration, as JSON: what its tools read before they send load. Dims leave
/// out the batch dimension, whose bound is `max_batch_size`.
async fn model_config(
    State(state): State<Arc<AppState>>,
    Path(params): Params,
) -> Result<Json<Value>, ApiError> {
    let e = model(&state, &params)?;
    let optional = e.fields.len() > 1;
    let input: Vec<Value> = v2::inputs_meta(&e)
        .into_iter()
        .map(|t| {
            json!({"name": t.name, "data_type": v2::triton_type(t.datatype),
                   "dims": &t.shape[1..], "optional": optional})
        })
        .collect();
    let output: Vec<Value> = v2::outputs_meta()
        .into_iter()
        .map(|t| json!({"name": t.name, "data_type": v2::triton_type(t.datatype), "dims": &t.shape[1..]}))
        .collect();
    Ok(Json(json!({
        "name": e.name,
        "platform": v2::PLATFORM,
        "backend": "lastmile",
        "max_batch_size": state.limits.max_items_per_request,
        "input": input,
        "output": output,
        "instance_group": [{"name": e.name, "kind": "KIND_CPU", "count": state.pool.threads()}],
        "parameters": {"version": {"string_value": e.version}},
    })))
}

#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    outputs: Option<Vec<JsonOutput>>,
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(params): Params,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    if let Some(enc) = body.headers.get(header::CONTENT_ENCODING) {
        if enc.as_bytes() != b"identity" {
            return Err(ApiError::bad_request(
                "compressed request bodies are not supported (Content-Encoding)",
            ));
        }
    }
    let (head, mut binary) = match body.headers.get(HEADER_LENGTH) {
        None => (&body.bytes[..], &b""[..]),
        Some(v) => {
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
            body.bytes.split_at(n)
        }
    };
    let request: InferRequest = parse_json(head)?;
    let e = model(&state, &params)?;

    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
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
        inputs.push(InputTensor {
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
    let param = |name: &str| {
        request.parameters.get(name).map(|v| match v {
            Value::Number(n) => n.as_i64().map_or(v2::Param::Other, v2::Param::Int),
            Value::Bool(b) => v2::Param::Bool(*b),
            Value::String(s) => v2::Param::Text(s),
            Value::Array(_) => {
                serde_json::from_value(v.clone()).map_or(v2::Param::Other, v2::Param::List)
            }
            _ => v2::Param::Other,
        })
    };
    let mut options = v2::item_options(param("top_k"), param("candidates"), param("explain"))?;
    let binary_default = request
        .parameters
        .get("binary_data_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut binary_asked = std::collections::HashMap::new();
    let named = request.outputs.map(|outputs| {
        outputs
            .into_iter()
            .map(|o| {
                if let Some(b) = o.parameters.get("binary_data").and_then(Value::as_bool) {
                    binary_asked.insert(o.name.clone(), b);
                }
                o.name
            })
            .collect()
    });
    let wanted = v2::outputs_for(named, &mut options)?;

    let checked = v2::check_inputs(&state, Arc::clone(&e), inputs, options)?;
    let k = checked.items[0].options.top_k;
    let answers = state.predict(checked).await?;

    let mut outputs = Vec::with_capacity(wanted.len());
    let mut tail: Vec<u8> = Vec::new();
    for name in wanted {
        let tensor = v2::output(&name, &answers, k);
        let binary = binary_asked.get(&name).copied().unwrap_or(binary_default);
        let mut output = json!({"name": name, "datatype": tensor.datatype, "shape": tensor.shape});
        if binary {
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
    let mut reply = json!({"model_name": e.name, "model_version": e.version, "outputs": outputs});
    if let Some(id) = request.id {
        reply["id"] = Value::String(id);
    }
    let head = serde_json::to_vec(&reply).expect("JSON values serialise");
    if tail.is_empty() {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            head,
        )
            .into_response());
    }
    let length = head.len();
    let mut bytes = head;
    bytes.extend_from_slice(&tail);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(length),
            ),
        ],
        bytes,
    )
        .into_response())
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
    match input.datatype.as_str() {
        "BYTES" => flat
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(|s| s.as_bytes().to_vec())
                    .ok_or_else(|| bad(format!("element {i} of BYTES data is not a string")))
            })
            .collect::<Result<_, _>>()
            .map(Elements::Bytes),
        "FP32" | "FP64" => {
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
            Ok(if input.datatype == "FP32" {
                Elements::F32(numbers.into_iter().map(|x| x as f32).collect())
            } else {
                Elements::F64(numbers)
            })
        }
        other => Err(bad(format!(
            "datatype {other} is not served (BYTES for text, FP32 or FP64 for numbers)"
        ))),
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}
