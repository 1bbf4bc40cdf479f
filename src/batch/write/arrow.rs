//! The output rows as Arrow record batches (the schema Parquet and Arrow IPC outputs share), and
//! the Arrow IPC stream writer (for pipes: Spark's `mapInArrow` helper reads it).
//!
//! Integers are signed (`row` int64, `agreement` int32) because Spark has no unsigned types.

use std::io;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, Float32Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

use super::{Mark, Sink, Writer};
use crate::batch::chunk::OutRow;
use crate::ensemble::{Ensemble, LabelScore, ModelAnswer};

fn label_score_fields() -> Fields {
    Fields::from(vec![
        Field::new("label", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ])
}

/// `list<struct<label: string, score: float>>`.
fn label_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(label_score_fields()),
        false,
    )))
}

fn model_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("weight", DataType::Float32, false),
        Field::new("predictions", label_list_type(), false),
        Field::new("contributions", label_list_type(), false),
    ])
}

/// The output's schema (with `models` when explaining).
pub fn schema(explain: bool) -> SchemaRef {
    let utf8 = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let mut fields = vec![
        utf8("id", true),
        Field::new("row", DataType::Int64, false),
        utf8("label", true),
        Field::new("score", DataType::Float32, true),
        Field::new("top_k", label_list_type(), false),
        Field::new("agreement", DataType::Int32, true),
        utf8("abstained", true),
        Field::new(
            "rules_fired",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
            false,
        ),
        utf8("error", true),
        utf8("ensemble", false),
        utf8("version", false),
        utf8("digest", false),
    ];
    if explain {
        fields.push(Field::new(
            "models",
            DataType::List(Arc::new(Field::new_list_field(
                DataType::Struct(model_fields()),
                false,
            ))),
            false,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// A list column: row i holds `lists[i]`, each element made by `values` from the flattened items.
fn list(item: DataType, lengths: impl Iterator<Item = usize>, values: ArrayRef) -> ListArray {
    let offsets = arrow_buffer::OffsetBuffer::from_lengths(lengths);
    ListArray::new(
        Arc::new(Field::new_list_field(item, false)),
        offsets,
        values,
        None,
    )
}

/// `list<struct<label, score>>` of each row's ranked labels.
fn label_lists<'a>(rows: impl Iterator<Item = &'a [LabelScore]> + Clone) -> ListArray {
    let labels: StringArray = rows
        .clone()
        .flatten()
        .map(|p| Some(p.label.as_str()))
        .collect();
    let scores: Float32Array = rows.clone().flatten().map(|p| Some(p.score)).collect();
    let values = StructArray::new(
        label_score_fields(),
        vec![Arc::new(labels), Arc::new(scores)],
        None,
    );
    list(
        DataType::Struct(label_score_fields()),
        rows.map(<[LabelScore]>::len),
        Arc::new(values),
    )
}

fn models_column(rows: &[&OutRow]) -> ListArray {
    let per_row = || {
        rows.iter().map(|r| {
            r.result
                .as_ref()
                .ok()
                .and_then(|a| a.models.as_deref())
                .unwrap_or(&[])
        })
    };
    let all = || per_row().flatten();
    let names: StringArray = all().map(|m: &ModelAnswer| Some(m.name.as_str())).collect();
    let weights: Float32Array = all().map(|m| Some(m.weight)).collect();
    let predictions = label_lists(all().map(|m| m.predictions.as_slice()));
    let contributions = label_lists(all().map(|m| m.contributions.as_slice()));
    let values = StructArray::new(
        model_fields(),
        vec![
            Arc::new(names),
            Arc::new(weights),
            Arc::new(predictions),
            Arc::new(contributions),
        ],
        None,
    );
    list(
        DataType::Struct(model_fields()),
        per_row().map(<[ModelAnswer]>::len),
        Arc::new(values),
    )
}

/// The rows as one record batch of [`schema`].
pub fn batch(rows: &[&OutRow], e: &Ensemble, explain: bool) -> io::Result<RecordBatch> {
    let n = rows.len();
    let mut id = StringBuilder::new();
    let mut row = Int64Builder::with_capacity(n);
    let mut label = StringBuilder::new();
    let mut score = Float32Builder::with_capacity(n);
    let mut agreement = Int32Builder::with_capacity(n);
    let mut abstained = StringBuilder::new();
    let mut error = StringBuilder::new();
    for r in rows {
        id.append_option(r.id.text());
        row.append_value(r.number as i64);
        match &r.result {
            Ok(a) => {
                let top = a.predictions.first();
                label.append_option(top.map(|p| p.label.as_str()));
                score.append_option(top.map(|p| p.score));
                agreement.append_value(a.agreement as i32);
                abstained.append_option(a.abstained.as_deref());
                error.append_null();
            }
            Err(reason) => {
                label.append_null();
                score.append_null();
                agreement.append_null();
                abstained.append_null();
                error.append_value(reason);
            }
        }
    }
    let answers = || {
        rows.iter().map(|r| {
            r.result
                .as_ref()
                .map_or(&[][..], |a| a.predictions.as_slice())
        })
    };
    let rules: StringArray = rows
        .iter()
        .flat_map(|r| {
            r.result
                .as_ref()
                .map_or(&[][..], |a| a.rules_fired.as_slice())
        })
        .map(|s| Some(s.as_str()))
        .collect();
    let rules = list(
        DataType::Utf8,
        rows.iter()
            .map(|r| r.result.as_ref().map_or(0, |a| a.rules_fired.len())),
        Arc::new(rules),
    );
    let constant = |s: &str| -> ArrayRef { Arc::new(StringArray::from(vec![s; n])) };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(row.finish()),
        Arc::new(label.finish()),
        Arc::new(score.finish()),
        Arc::new(label_lists(answers())),
        Arc::new(agreement.finish()),
        Arc::new(abstained.finish()),
        Arc::new(rules),
        Arc::new(error.finish()),
        constant(&e.name),
        constant(&e.version),
        constant(&e.digest),
    ];
    if explain {
        columns.push(Arc::new(models_column(rows)));
    }
    RecordBatch::try_new(schema(explain), columns).map_err(io::Error::other)
}

/// The Arrow IPC stream format: the schema, one record batch per chunk (flushed at once, so a
/// reader at the other end of a pipe gets each chunk as it is scored), the end-of-stream marker.
pub struct IpcWriter {
    out: arrow_ipc::writer::StreamWriter<Sink>,
    explain: bool,
}

impl IpcWriter {
    pub fn new(sink: Sink, explain: bool) -> io::Result<Self> {
        let out = arrow_ipc::writer::StreamWriter::try_new(sink, &schema(explain))
            .map_err(io::Error::other)?;
        Ok(IpcWriter { out, explain })
    }
}

impl Writer for IpcWriter {
    fn write(&mut self, rows: &[&OutRow], ensemble: &Ensemble) -> io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = batch(rows, ensemble, self.explain)?;
        self.out.write(&batch).map_err(io::Error::other)?;
        self.out.flush().map_err(io::Error::other)
    }

    fn mark(&mut self) -> io::Result<Mark> {
        Ok(Mark {
            bytes: self.out.get_ref().bytes(),
            ..Mark::default()
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.get_mut().sync()
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.out.finish().map_err(io::Error::other)?;
        self.out.get_mut().sync()
    }
}
