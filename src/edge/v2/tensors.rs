//! Tensors on the wire: the elements a transport decoded (typed JSON or protobuf contents, or the
//! binary encoding both Triton's HTTP extension and gRPC's `raw_*_contents` use), input tensors
//! read into a request's items, and answers written back as output tensors.

use super::{field_kinds, Datatype, FieldKind, LABELS, OUTPUTS, SCORES};
use crate::edge::error::ApiError;
use crate::ensemble::{Ensemble, FieldValue, ItemAnswer, ItemError, ItemOptions, ValidItem};
use crate::service::{Items, ServiceError};

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

/// A request's input tensors, read into one item per row with the request's options.
pub struct TensorItems {
    pub inputs: Vec<InputTensor>,
    pub options: ItemOptions,
}

impl Items for TensorItems {
    fn read(self, e: &Ensemble) -> Result<Vec<Result<ValidItem, ItemError>>, ServiceError> {
        let rows = rows(e, self.inputs, &self.options)
            .map_err(|err| ServiceError::Malformed(err.message))?;
        Ok(rows.into_iter().map(|item| e.validate(item)).collect())
    }
}

/// Checks input tensors against the model and splits them into one unchecked item per row,
/// each with `options`.
fn rows(
    e: &Ensemble,
    inputs: Vec<InputTensor>,
    options: &ItemOptions,
) -> Result<Vec<ValidItem>, ApiError> {
    let fields = e.fields.join(", ");
    if inputs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the request has no inputs (inputs: {fields})"
        )));
    }
    let kinds = field_kinds(e);
    let mut columns: Vec<Option<InputTensor>> = vec![None; e.fields.len()];
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
        columns[f] = Some(input);
    }
    let rows = batch.map_or(0, |(n, _)| n);
    let mut items = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut fields = Vec::with_capacity(columns.len());
        for column in &columns {
            fields.push(match column {
                None => None,
                Some(tensor) => cell(tensor, row, rows)?,
            });
        }
        items.push(ValidItem {
            fields,
            options: options.clone(),
        });
    }
    Ok(items)
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
            if Datatype::parse(&t.datatype) != Some(Datatype::Bytes) {
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
            if !matches!(
                Datatype::parse(&t.datatype),
                Some(Datatype::Fp32 | Datatype::Fp64)
            ) {
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
    pub datatype: Datatype,
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
            datatype: Datatype::Bytes,
            shape: table,
            data: OutputData::Bytes(cells().map(|(l, _)| l.as_bytes().to_vec()).collect()),
        },
        SCORES => Output {
            datatype: Datatype::Fp32,
            shape: table,
            data: OutputData::F32(cells().map(|(_, s)| s).collect()),
        },
        _ => Output {
            datatype: Datatype::Bytes,
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
    match Datatype::parse(datatype) {
        Some(Datatype::Bytes) => {
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
        Some(Datatype::Fp32) => chunks::<4>(raw)
            .map(|c| Elements::F32(c.map(f32::from_le_bytes).collect()))
            .ok_or_else(|| bad("binary FP32 data is not a whole number of 4-byte elements")),
        Some(Datatype::Fp64) => chunks::<8>(raw)
            .map(|c| Elements::F64(c.map(f64::from_le_bytes).collect()))
            .ok_or_else(|| bad("binary FP64 data is not a whole number of 8-byte elements")),
        None => Err(bad(&format!(
            "datatype {datatype} is not served (BYTES for text, FP32 or FP64 for numbers)"
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
    use super::super::EXPLANATION;
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
            degraded: None,
            cascade: None,
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
