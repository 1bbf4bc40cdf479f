//! The Open Inference Protocol (KServe V2) model that the ensemble is, independent of transport:
//! its metadata and Triton-style configuration (each built once here, encoded by each transport),
//! and inference ([`infer`]): parameters read, input tensors turned into items ([`tensors`]), the
//! one request path, answers turned into output tensors. [`http`] and [`grpc`] only translate
//! their wire formats to and from these types.
//!
//! Inputs are tensors named after the ensemble's fields: BYTES `[N]` or `[N, 1]` for text fields
//! (an empty element means the item lacks the field), FP32 or FP64 `[N, width]` for numeric ones.
//! Outputs are `labels` (BYTES) and `scores` (FP32), both `[N, k]` with `k` the request's `top_k`
//! parameter (default 5); an answer with fewer than `k` predictions is padded with `""` and 0.
//! A `candidates` parameter restricts every item's answer to those labels or label prefixes, as
//! the own API's `candidates` does: V2 parameters are scalars, so it is a string holding a JSON
//! array of strings (`"[\"Toys\", \"Home > Kitchen\"]"`); over REST a plain JSON array is taken too.
//! A third output, `explanation` (BYTES `[N, 1]`), holds each item's whole answer as the own API
//! writes it with `explain` (every model's best labels and its term in the vote, the rules that
//! fired, the agreement), as JSON text. It is sent when a request names it among its outputs, or
//! names none and sets the `explain` parameter to true; labels and scores stay as they are.
//!
//! Every inference response carries the parameters `ensemble_name`, `ensemble_version` and
//! `ensemble_digest` ([`reply_parameters`]): the digest names the exact manifest and model bytes
//! that answered. The model metadata's `parameters` hold the digest and each model's provenance
//! ([`provenance_parameters`]).

pub mod extensions;
pub mod grpc;
pub mod http;
pub mod tensors;

use std::sync::Arc;

pub use tensors::{check_output_name, decode, InputTensor, Output, OutputData};

use super::error::ApiError;
use super::timeout;
use crate::ensemble::{Ensemble, ItemOptions};
use crate::runtime::InputKind;
use crate::service::{Request, Service, Target};
use tensors::TensorItems;

pub const LABELS: &str = "labels";
pub const SCORES: &str = "scores";
pub const EXPLANATION: &str = "explanation";
pub const OUTPUTS: [&str; 3] = [LABELS, SCORES, EXPLANATION];
/// What V2 calls the model's platform.
pub const PLATFORM: &str = "lastmile_ensemble";
/// What Triton's configuration calls the backend.
pub const BACKEND: &str = "lastmile";
/// Protocol extensions served (reported by server metadata).
pub const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "parameters",
    "statistics",
];

/// The tensor datatypes served, named once: their V2 name and Triton's configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Bytes,
    Fp32,
    Fp64,
}

impl Datatype {
    pub fn parse(name: &str) -> Option<Datatype> {
        match name {
            "BYTES" => Some(Datatype::Bytes),
            "FP32" => Some(Datatype::Fp32),
            "FP64" => Some(Datatype::Fp64),
            _ => None,
        }
    }

    /// The V2 name (`BYTES`, `FP32`, `FP64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Bytes => "BYTES",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
        }
    }

    /// Triton's model-configuration name.
    pub fn triton(self) -> &'static str {
        match self {
            Datatype::Bytes => "TYPE_STRING",
            Datatype::Fp32 => "TYPE_FP32",
            Datatype::Fp64 => "TYPE_FP64",
        }
    }
}

/// How a field is fed as a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Numbers { width: usize },
}

/// Each field's kind, in field order: numeric if some model reads it as features.
pub fn field_kinds(e: &Ensemble) -> Vec<FieldKind> {
    (0..e.fields.len())
        .map(|f| {
            e.models
                .iter()
                .filter(|m| m.field_ids.contains(&f))
                .find_map(|m| match m.runtime.input_kind() {
                    InputKind::Features { width } => Some(FieldKind::Numbers { width }),
                    InputKind::Text => None,
                })
                .unwrap_or(FieldKind::Text)
        })
        .collect()
}

/// One tensor's metadata: name, datatype and shape (-1: any size).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMeta {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<i64>,
}

pub fn inputs_meta(e: &Ensemble) -> Vec<TensorMeta> {
    e.fields
        .iter()
        .zip(field_kinds(e))
        .map(|(name, kind)| match kind {
            FieldKind::Text => TensorMeta {
                name: name.clone(),
                datatype: Datatype::Bytes,
                shape: vec![-1, 1],
            },
            FieldKind::Numbers { width } => TensorMeta {
                name: name.clone(),
                datatype: Datatype::Fp32,
                shape: vec![-1, width as i64],
            },
        })
        .collect()
}

pub fn outputs_meta() -> Vec<TensorMeta> {
    let meta = |name: &str, datatype, shape: [i64; 2]| TensorMeta {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    };
    vec![
        meta(LABELS, Datatype::Bytes, [-1, -1]),
        meta(SCORES, Datatype::Fp32, [-1, -1]),
        meta(EXPLANATION, Datatype::Bytes, [-1, 1]),
    ]
}

/// V2 model metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMeta>,
    pub outputs: Vec<TensorMeta>,
    /// [`provenance_parameters`].
    pub parameters: Vec<(String, String)>,
}

pub fn metadata(e: &Ensemble) -> ModelMetadata {
    ModelMetadata {
        name: e.name.clone(),
        versions: vec![e.version.clone()],
        platform: PLATFORM,
        inputs: inputs_meta(e),
        outputs: outputs_meta(),
        parameters: provenance_parameters(e),
    }
}

/// The parameters every inference response carries: which ensemble answered, to the byte.
pub fn reply_parameters(e: &Ensemble) -> [(&'static str, String); 3] {
    [
        ("ensemble_name", e.name.clone()),
        ("ensemble_version", e.version.clone()),
        ("ensemble_digest", e.digest.clone()),
    ]
}

/// The model metadata's parameters: the ensemble's digest and manifest hash, then each model's
/// provenance as `model.NAME.KEY` strings (V2 parameters are flat scalars).
pub fn provenance_parameters(e: &Ensemble) -> Vec<(String, String)> {
    let mut out = vec![
        ("ensemble_digest".to_owned(), e.digest.clone()),
        ("manifest_sha256".to_owned(), e.manifest_sha256.clone()),
    ];
    for m in &e.models {
        out.push((
            format!("model.{}.kind", m.spec.name),
            m.spec.kind.as_str().into(),
        ));
        for (k, v) in m.provenance.flat() {
            out.push((format!("model.{}.{k}", m.spec.name), v));
        }
    }
    out
}

/// One input or output of Triton's model configuration: dims leave out the batch dimension,
/// whose bound is [`ModelConfig::max_batch_size`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTensor {
    pub name: String,
    pub datatype: Datatype,
    pub dims: Vec<i64>,
    /// Inputs only: whether an item may lack it (every field is optional when there are several).
    pub optional: bool,
}

/// Triton's model configuration: what its tools (perf_analyzer, model analyzer) read before
/// they send load.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    pub version: String,
    pub max_batch_size: usize,
    pub inputs: Vec<ConfigTensor>,
    pub outputs: Vec<ConfigTensor>,
    /// One CPU instance group of this many instances: the compute threads.
    pub instances: usize,
}

pub fn config(e: &Ensemble, service: &Service) -> ModelConfig {
    let optional = e.fields.len() > 1;
    let tensor = |t: TensorMeta, optional: bool| ConfigTensor {
        name: t.name,
        datatype: t.datatype,
        dims: t.shape[1..].to_vec(),
        optional,
    };
    ModelConfig {
        name: e.name.clone(),
        version: e.version.clone(),
        max_batch_size: service.limits().max_items_per_request,
        inputs: inputs_meta(e)
            .into_iter()
            .map(|t| tensor(t, optional))
            .collect(),
        outputs: outputs_meta()
            .into_iter()
            .map(|t| tensor(t, false))
            .collect(),
        instances: service.pool().threads(),
    }
}

/// A request parameter's value, as either transport carries it.
pub enum Param<'a> {
    Int(i64),
    Bool(bool),
    Text(&'a str),
    /// A JSON array of strings (REST only).
    List(Vec<String>),
    Other,
}

/// The item options a request's `top_k`, `candidates`, `explain` and `cascade` parameters ask
/// for.
pub fn item_options(
    top_k: Option<Param<'_>>,
    candidates: Option<Param<'_>>,
    explain: Option<Param<'_>>,
    cascade: Option<Param<'_>>,
) -> Result<ItemOptions, ApiError> {
    let top_k = match top_k {
        None => ItemOptions::default().top_k,
        // The own gRPC API's bound (a uint32), on every transport.
        Some(Param::Int(k)) if (0..=i64::from(u32::MAX)).contains(&k) => k as usize,
        Some(_) => {
            return Err(ApiError::bad_request(
                "parameter top_k must be an integer from 0 to 4294967295",
            ))
        }
    };
    let bad = || {
        ApiError::bad_request(
            "parameter candidates must be a JSON array of label names or prefixes (as a string)",
        )
    };
    let candidates = match candidates {
        None => None,
        Some(Param::List(list)) => Some(list),
        Some(Param::Text(text)) => Some(serde_json::from_str(text).map_err(|_| bad())?),
        Some(_) => return Err(bad()),
    };
    let explain = match explain {
        None => false,
        Some(Param::Bool(b)) => b,
        Some(_) => return Err(ApiError::bad_request("parameter explain must be a boolean")),
    };
    let cascade = match cascade {
        None => true,
        Some(Param::Bool(b)) => b,
        Some(_) => return Err(ApiError::bad_request("parameter cascade must be a boolean")),
    };
    Ok(ItemOptions {
        top_k,
        candidates,
        explain,
        cascade,
    })
}

/// The outputs a request gets, in order: those it names (each checked), else `labels` and
/// `scores`, and `explanation` when `options` ask to explain. From here on the items explain
/// exactly when `explanation` is among them.
pub fn outputs_for(
    named: Option<Vec<String>>,
    options: &mut ItemOptions,
) -> Result<Vec<String>, ApiError> {
    let wanted = match named {
        Some(names) => {
            names.iter().try_for_each(|n| check_output_name(n))?;
            names
        }
        None => {
            let all = if options.explain { 3 } else { 2 };
            OUTPUTS[..all].iter().map(|n| n.to_string()).collect()
        }
    };
    options.explain = wanted.iter().any(|n| n == EXPLANATION);
    Ok(wanted)
}

/// An inference request as either transport decoded it.
pub struct Infer<P> {
    pub model: String,
    /// Empty: whatever version is served.
    pub version: String,
    pub inputs: Vec<InputTensor>,
    /// The request's parameter by name.
    pub param: P,
    /// The outputs it names, if it names any.
    pub outputs: Option<Vec<String>>,
    /// The transport's own word on how long the caller waits (`grpc-timeout`, the HTTP header);
    /// a `timeout_ms` parameter may shorten it.
    pub timeout: Option<std::time::Duration>,
}

/// What answered an inference request, and its outputs in the order asked.
pub struct Inferred {
    pub ensemble: Arc<Ensemble>,
    pub outputs: Vec<(String, Output)>,
}

/// Inference, the same steps whatever the transport: the parameters and outputs checked, the
/// tensors read against the snapshot, the one request path, the answers as output tensors.
pub async fn infer<'a, P>(service: &Service, req: Infer<P>) -> Result<Inferred, ApiError>
where
    P: Fn(&str) -> Option<Param<'a>>,
{
    let param = &req.param;
    let mut options = item_options(
        param("top_k"),
        param("candidates"),
        param("explain"),
        param("cascade"),
    )?;
    let wanted = outputs_for(req.outputs, &mut options)?;
    let asked = match param("timeout_ms") {
        None => None,
        Some(Param::Int(ms)) => Some(timeout::milliseconds(ms, "parameter timeout_ms")?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "parameter timeout_ms must be an integer number of milliseconds",
            ))
        }
    };
    let top_k = options.top_k;
    let target = Target::Model {
        name: req.model,
        version: req.version,
    };
    let items = TensorItems {
        inputs: req.inputs,
        options,
    };
    let timeout = timeout::shorter(req.timeout, asked);
    let reply = service
        .predict(Request {
            target,
            items,
            timeout,
        })
        .await?;
    // The k every item was asked for, as the request path bounds it.
    let k = top_k.min(reply.ensemble.labels.len());
    let outputs = wanted
        .into_iter()
        .map(|name| {
            let tensor = tensors::output(&name, &reply.answers, k);
            (name, tensor)
        })
        .collect();
    Ok(Inferred {
        ensemble: reply.ensemble,
        outputs,
    })
}
