//! The Open Inference Protocol (KServe V2) model that the ensemble is, independent of transport:
//! its metadata and Triton-style configuration, turning input tensors into items, answers into
//! output tensors, and the binary tensor encoding that both Triton's HTTP extension and gRPC's
//! `raw_*_contents` use. `v2_http` and `v2_grpc` only translate their wire formats to these types.
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

use std::sync::Arc;

use super::error::ApiError;
use super::state::{AppState, Checked};
use crate::ensemble::{Ensemble, FieldValue, ItemAnswer, ItemOptions, ValidItem};
use crate::runtime::InputKind;

pub const LABELS: &str = "labels";
pub const SCORES: &str = "scores";
pub const EXPLANATION: &str = "explanation";
pub const OUTPUTS: [&str; 3] = [LABELS, SCORES, EXPLANATION];
/// What V2 calls the model's platform.
pub const PLATFORM: &str = "lastmile_ensemble";
/// Protocol extensions served (reported by server metadata).
pub const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "model_configuration", "parameters"];

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
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

pub fn inputs_meta(e: &Ensemble) -> Vec<TensorMeta> {
    e.fields
        .iter()
        .zip(field_kinds(e))
        .map(|(name, kind)| match kind {
            FieldKind::Text => TensorMeta {
                name: name.clone(),
                datatype: "BYTES",
                shape: vec![-1, 1],
            },
            FieldKind::Numbers { width } => TensorMeta {
                name: name.clone(),
                datatype: "FP32",
                shape: vec![-1, width as i64],
            },
        })
        .collect()
}

pub fn outputs_meta() -> Vec<TensorMeta> {
    vec![
        TensorMeta {
            name: LABELS.into(),
            datatype: "BYTES",
            shape: vec![-1, -1],
        },
        TensorMeta {
            name: SCORES.into(),
            datatype: "FP32",
            shape: vec![-1, -1],
        },
        TensorMeta {
            name: EXPLANATION.into(),
            datatype: "BYTES",
            shape: vec![-1, 1],
        },
    ]
}

/// Triton's name of a V2 datatype in a model configuration.
pub fn triton_type(datatype: &str) -> &'static str {
    match datatype {
        "BYTES" => "TYPE_STRING",
        "FP32" => "TYPE_FP32",
        _ => "TYPE_INVALID",
    }
}

/// Whether `name`/`version` address the served ensemble; the error names what is served.
pub fn find_model(state: &AppState, name: &str, version: &str) -> Result<Arc<Ensemble>, ApiError> {
    let e = state.registry.snapshot();
    if name != e.name {
        return Err(ApiError::not_found(format!(
            "unknown model {name:?}: this server serves {:?}",
            e.name
        )));
    }
    if !version.is_empty() && version != e.version {
        return Err(ApiError::not_found(format!(
            "model {name:?} has no version {version:?}: version {:?} is served",
            e.version
        )));
    }
    Ok(e)
}

/// A tensor's elements, as a transport decoded them.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    Bytes(Vec<Vec<u8>>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Elements {
    fn len(&self) -> usize {
        match self {
            Elements::Bytes(v) => v.len(),
            Elements::F32(v) => v.len(),
            Elements::F64(v) => v.len(),
        }
    }
}

/// One input tensor of a request.
#[derive(Debug, Clone)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub elements: Elements,
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

/// The item options a request's `top_k`, `candidates` and `explain` parameters ask for.
pub fn item_options(
    top_k: Option<Param<'_>>,
    candidates: Option<Param<'_>>,
    explain: Option<Param<'_>>,
) -> Result<ItemOptions, ApiError> {
    let top_k = match top_k {
        None => ItemOptions::default().top_k,
        Some(Param::Int(k)) if k >= 0 => k as usize,
        Some(_) => {
            return Err(ApiError::bad_request(
                "parameter top_k must be a non-negative integer",
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
    Ok(ItemOptions {
        top_k,
        candidates,
        explain,
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

/// Checks input tensors against the model and turns them into a request's items, each with
/// `options`.
pub fn check_inputs(
    state: &AppState,
    e: Arc<Ensemble>,
    inputs: Vec<InputTensor>,
    options: ItemOptions,
) -> Result<Checked, ApiError> {
    let fields = e.fields.join(", ");
    if inputs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the request has no inputs (inputs: {fields})"
        )));
    }
    let kinds = field_kinds(&e);
    let mut columns: Vec<Option<(usize, InputTensor)>> = vec![None; e.fields.len()];
    let mut batch: Option<(usize, String)> = None;
    for input in inputs {
        let Some(f) = e.fields.iter().position(|n| *n == input.name) else {
            return Err(ApiError::bad_request(format!(
                "unknown input {:?} (inputs: {fields})",
                input.name
            )));
        };
        if columns[f].is_some() {
            return Err(ApiError::bad_request(format!(
                "input {:?} is given twice",
                input.name
            )));
        }
        let rows = check_tensor(&input, kinds[f])?;
        match &batch {
            Some((n, first)) if *n != rows => {
                return Err(ApiError::bad_request(format!(
                    "inputs disagree on the batch size: {first:?} has {n} rows, {:?} has {rows}",
                    input.name
                )))
            }
            Some(_) => {}
            None => batch = Some((rows, input.name.clone())),
        }
        columns[f] = Some((rows, input));
    }
    let rows = batch.map_or(0, |(n, _)| n);
    let mut raw = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut fields = Vec::with_capacity(columns.len());
        for column in &columns {
            fields.push(match column {
                None => None,
                Some((_, tensor)) => cell(tensor, row, rows)?,
            });
        }
        raw.push(ValidItem {
            fields,
            options: options.clone(),
        });
    }
    state.check_with(e, raw, |e, item| e.validate(item))
}

/// Checks an input's datatype and shape against its field; returns its number of rows.
fn check_tensor(t: &InputTensor, kind: FieldKind) -> Result<usize, ApiError> {
    let bad = |why: String| ApiError::bad_request(format!("input {:?}: {why}", t.name));
    if let Some(d) = t.shape.iter().find(|&&d| d < 0) {
        return Err(bad(format!(
            "shape {:?} has a negative dimension {d}",
            t.shape
        )));
    }
    let count = t.shape.iter().try_fold(1i64, |a, &d| a.checked_mul(d));
    if count.and_then(|c| usize::try_from(c).ok()) != Some(t.elements.len()) {
        let count = count.map_or("too many".to_owned(), |c| c.to_string());
        return Err(bad(format!(
            "shape {:?} holds {count} elements but {} were given",
            t.shape,
            t.elements.len()
        )));
    }
    match kind {
        FieldKind::Text => {
            if t.datatype != "BYTES" {
                return Err(bad(format!(
                    "datatype {} where BYTES (text) is expected",
                    t.datatype
                )));
            }
            match t.shape.as_slice() {
                [n] | [n, 1] => Ok(*n as usize),
                _ => Err(bad(format!(
                    "shape {:?}: expected [N] or [N, 1], one text per item",
                    t.shape
                ))),
            }
        }
        FieldKind::Numbers { width } => {
            if t.datatype != "FP32" && t.datatype != "FP64" {
                return Err(bad(format!(
                    "datatype {} where FP32 is expected",
                    t.datatype
                )));
            }
            match t.shape.as_slice() {
                [n, w] if *w as usize == width => Ok(*n as usize),
                _ => Err(bad(format!("shape {:?}: expected [N, {width}]", t.shape))),
            }
        }
    }
}

/// Row `row` of a checked tensor as a field value; an empty text is an absent field.
fn cell(t: &InputTensor, row: usize, rows: usize) -> Result<Option<FieldValue>, ApiError> {
    let width = t.elements.len().checked_div(rows).unwrap_or(0);
    Ok(match &t.elements {
        Elements::Bytes(v) => {
            let text = std::str::from_utf8(&v[row]).map_err(|_| {
                ApiError::bad_request(format!(
                    "input {:?}: element {row} is not UTF-8 text",
                    t.name
                ))
            })?;
            (!text.is_empty()).then(|| FieldValue::Text(text.to_owned()))
        }
        Elements::F32(v) => Some(FieldValue::Numbers(
            v[row * width..(row + 1) * width].to_vec(),
        )),
        Elements::F64(v) => Some(FieldValue::Numbers(
            v[row * width..(row + 1) * width]
                .iter()
                .map(|&x| x as f32)
                .collect(),
        )),
    })
}

/// One output tensor of a response.
pub struct Output {
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    pub data: OutputData,
}

/// An output's elements.
#[derive(Debug, PartialEq)]
pub enum OutputData {
    Bytes(Vec<Vec<u8>>),
    F32(Vec<f32>),
}

impl OutputData {
    /// The elements in the binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            OutputData::Bytes(v) => encode_bytes(v),
            OutputData::F32(v) => encode_f32(v),
        }
    }
}

/// Output `name` (one of [`OUTPUTS`]) of `answers`. Labels and scores are `[N, k]`, an answer
/// with fewer than `k` predictions padded with `""` and 0.
pub fn output(name: &str, answers: &[ItemAnswer], k: usize) -> Output {
    let cells = || {
        answers.iter().flat_map(move |a| {
            (0..k).map(move |j| {
                a.predictions
                    .get(j)
                    .map_or(("", 0.0), |p| (p.label.as_str(), p.score))
            })
        })
    };
    let table = vec![answers.len() as i64, k as i64];
    match name {
        LABELS => Output {
            datatype: "BYTES",
            shape: table,
            data: OutputData::Bytes(cells().map(|(l, _)| l.as_bytes().to_vec()).collect()),
        },
        SCORES => Output {
            datatype: "FP32",
            shape: table,
            data: OutputData::F32(cells().map(|(_, s)| s).collect()),
        },
        _ => Output {
            datatype: "BYTES",
            shape: vec![answers.len() as i64, 1],
            data: OutputData::Bytes(
                answers
                    .iter()
                    .map(|a| serde_json::to_vec(a).expect("answers serialise"))
                    .collect(),
            ),
        },
    }
}

/// Checks the names of requested outputs.
pub fn check_output_name(name: &str) -> Result<(), ApiError> {
    if OUTPUTS.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "unknown output {name:?} (outputs: {})",
            OUTPUTS.join(", ")
        )))
    }
}

/// BYTES elements in the binary encoding: each preceded by its length (u32, little-endian).
pub fn encode_bytes(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.len() + 4).sum());
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

pub fn encode_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes binary tensor data of `datatype`; `name` is for the error message.
pub fn decode(name: &str, datatype: &str, raw: &[u8]) -> Result<Elements, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("input {name:?}: {why}"));
    match datatype {
        "BYTES" => {
            let mut elements = Vec::new();
            let mut rest = raw;
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    return Err(bad("binary BYTES data ends inside a length prefix"));
                };
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return Err(bad("binary BYTES data ends inside an element"));
                }
                elements.push(tail[..len].to_vec());
                rest = &tail[len..];
            }
            Ok(Elements::Bytes(elements))
        }
        "FP32" => chunks::<4>(raw)
            .map(|c| Elements::F32(c.map(f32::from_le_bytes).collect()))
            .ok_or_else(|| bad("binary FP32 data is not a whole number of 4-byte elements")),
        "FP64" => chunks::<8>(raw)
            .map(|c| Elements::F64(c.map(f64::from_le_bytes).collect()))
            .ok_or_else(|| bad("binary FP64 data is not a whole number of 8-byte elements")),
        other => Err(bad(&format!(
            "datatype {other} is not served (BYTES for text, FP32 or FP64 for numbers)"
        ))),
    }
}

fn chunks<const N: usize>(raw: &[u8]) -> Option<impl Iterator<Item = [u8; N]> + '_> {
    raw.len().is_multiple_of(N).then(|| {
        raw.chunks_exact(N)
            .map(|c| c.try_into().expect("chunks_exact gives N bytes"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_the_binary_encoding() {
        let elements = vec![b"steel knife".to_vec(), Vec::new(), "ä".as_bytes().to_vec()];
        let raw = encode_bytes(&elements);
        assert_eq!(raw.len(), 4 + 11 + 4 + 4 + 2);
        assert_eq!(
            decode("t", "BYTES", &raw).unwrap(),
            Elements::Bytes(elements)
        );
        assert!(decode("t", "BYTES", &raw[..raw.len() - 1]).is_err());
        assert!(decode("t", "BYTES", &[1, 0]).is_err());
    }

    #[test]
    fn floats_decode_little_endian() {
        let raw = encode_f32(&[1.5, -2.0]);
        assert_eq!(
            decode("x", "FP32", &raw).unwrap(),
            Elements::F32(vec![1.5, -2.0])
        );
        assert!(decode("x", "FP32", &raw[..7]).is_err());
        assert!(decode("x", "INT8", &raw).is_err());
    }

    #[test]
    fn outputs_are_padded_to_k() {
        use crate::ensemble::LabelScore;
        let answer = |labels: &[&str]| ItemAnswer {
            predictions: labels
                .iter()
                .map(|l| LabelScore {
                    label: (*l).into(),
                    score: 0.5,
                })
                .collect(),
            rules_fired: vec![],
            agreement: 1,
            abstained: None,
            models: None,
        };
        let answers = [answer(&["a", "b"]), answer(&[])];
        let labels = output(LABELS, &answers, 2);
        assert_eq!(labels.shape, vec![2, 2]);
        assert_eq!(
            labels.data,
            OutputData::Bytes(vec![b"a".to_vec(), b"b".to_vec(), vec![], vec![]])
        );
        let scores = output(SCORES, &answers, 2);
        assert_eq!(scores.data, OutputData::F32(vec![0.5, 0.5, 0.0, 0.0]));
        let explanation = output(EXPLANATION, &answers, 2);
        assert_eq!(explanation.shape, vec![2, 1]);
        let OutputData::Bytes(texts) = explanation.data else {
            panic!("explanations are text")
        };
        let first: serde_json::Value = serde_json::from_slice(&texts[0]).unwrap();
        assert_eq!(first["predictions"][1]["label"], "b");
        assert_eq!(first["agreement"], 1);
    }
}
