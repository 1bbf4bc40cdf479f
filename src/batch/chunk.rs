//! The unit a batch moves: a chunk of input rows as a reader made them, handed to the request
//! path as one request ([`Items`] for `&mut Chunk`), and the same rows scored, as the writers
//! take them.
//!
//! A row that cannot be scored never fails its chunk: [`Items::read`] hands the request path only
//! the rows that fit the ensemble and keeps each other row's reason, which becomes that row's
//! error in the output.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::ensemble::{Ensemble, FieldValue, ItemAnswer, ItemError, ItemOptions, ValidItem};
use crate::service::{Items, ServiceError};

/// An input row's id as the input gave it, echoed in its output row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowId {
    None,
    Text(String),
    /// A JSON Lines value of any type (or a Parquet number), echoed as it was.
    Json(Value),
}

impl RowId {
    /// As text, for columnar outputs (JSON text for a value that is not a string).
    pub fn text(&self) -> Option<String> {
        match self {
            RowId::None | RowId::Json(Value::Null) => None,
            RowId::Text(s) | RowId::Json(Value::String(s)) => Some(s.clone()),
            RowId::Json(v) => Some(v.to_string()),
        }
    }

    /// As JSON, for JSON outputs.
    pub fn json(&self) -> Value {
        match self {
            RowId::None => Value::Null,
            RowId::Text(s) => Value::String(s.clone()),
            RowId::Json(v) => v.clone(),
        }
    }
}

/// One row's content as read, before the ensemble sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum RowData {
    /// A JSON Lines object, with `--fields` renames applied: read as `lastmile predict` reads a
    /// line (its fields, its own `candidates`).
    Json(Map<String, Value>),
    /// Text cells of a columnar input, one per [`Chunk::fields`]; None where absent (a null, an
    /// empty CSV cell).
    Text(Vec<Option<String>>),
    /// The row could not be read (not JSON, not UTF-8, ...): why.
    Bad(String),
}

/// One input row.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRow {
    /// Its line (JSON Lines) or row (CSV, Parquet, Arrow) number, from 1.
    pub number: u64,
    pub id: RowId,
    pub data: RowData,
}

/// What became of one row of a chunk once the request path read it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Not read yet.
    Pending,
    /// Sent: its answer is the request's answer at this index.
    Sent(usize),
    Failed(String),
}

/// A chunk of rows, in input order, and where the input stands after it.
pub struct Chunk {
    /// 0-based, in input order.
    pub index: u64,
    pub rows: Vec<InputRow>,
    /// The ensemble fields the cells of [`RowData::Text`] rows hold, in order.
    pub fields: Arc<[String]>,
    /// What names a row's number in messages: `line` or `row`.
    pub unit: &'static str,
    /// The request's options (top_k, candidates, explain).
    pub options: Arc<ItemOptions>,
    /// Where the input stands after this chunk: what a checkpoint records.
    pub end: super::read::Position,
    outcomes: Vec<Outcome>,
}

impl Chunk {
    pub fn new(
        index: u64,
        rows: Vec<InputRow>,
        fields: Arc<[String]>,
        unit: &'static str,
        options: Arc<ItemOptions>,
        end: super::read::Position,
    ) -> Chunk {
        let outcomes = vec![Outcome::Pending; rows.len()];
        Chunk {
            index,
            rows,
            fields,
            unit,
            options,
            end,
            outcomes,
        }
    }

    /// The rows scored: `answers` is the request's reply (None when no row was sent, or the
    /// request failed as a whole: then `failure` is every sent row's error).
    pub fn scored(
        self,
        ensemble: Arc<Ensemble>,
        answers: Result<Vec<ItemAnswer>, String>,
    ) -> ScoredChunk {
        let mut answers = answers.map(|a| a.into_iter().map(Some).collect::<Vec<_>>());
        let unit = self.unit;
        let rows = self
            .rows
            .into_iter()
            .zip(self.outcomes)
            .map(|(row, outcome)| {
                let result = match outcome {
                    Outcome::Sent(i) => match &mut answers {
                        Ok(answers) => answers
                            .get_mut(i)
                            .and_then(Option::take)
                            .ok_or_else(|| "no answer came back: this is a bug".to_owned()),
                        Err(reason) => Err(reason.clone()),
                    },
                    Outcome::Failed(reason) => Err(reason),
                    // Not read: the request failed before it read its items.
                    Outcome::Pending => match (&row.data, &answers) {
                        (RowData::Bad(reason), _) | (_, Err(reason)) => Err(reason.clone()),
                        (_, Ok(_)) => Err("not read: this is a bug".to_owned()),
                    },
                };
                OutRow {
                    number: row.number,
                    id: row.id,
                    result: result.map_err(|reason| format!("{unit} {}: {reason}", row.number)),
                }
            })
            .collect();
        ScoredChunk {
            index: self.index,
            rows,
            ensemble,
            end: self.end,
        }
    }

    /// Whether any row may still fit the ensemble (rows already known bad are not sent).
    pub fn has_candidates(&self) -> bool {
        self.rows.iter().any(|r| !matches!(r.data, RowData::Bad(_)))
    }

    /// One row as the ensemble reads it.
    fn item(&self, ensemble: &Ensemble, row: &InputRow) -> Result<ValidItem, String> {
        match &row.data {
            RowData::Bad(reason) => Err(reason.clone()),
            RowData::Json(object) => item_from_object(ensemble, object, &self.options),
            RowData::Text(cells) => {
                let fields = ensemble
                    .fields
                    .iter()
                    .map(|name| {
                        self.fields
                            .iter()
                            .position(|f| f == name)
                            .and_then(|i| cells[i].clone())
                            .map(FieldValue::Text)
                    })
                    .collect();
                ensemble
                    .validate(ValidItem {
                        fields,
                        options: (*self.options).clone(),
                    })
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// The rows of a chunk that fit the ensemble go to the request path; the others keep their
/// reason for the output.
impl Items for &mut Chunk {
    fn read(self, ensemble: &Ensemble) -> Result<Vec<Result<ValidItem, ItemError>>, ServiceError> {
        let mut items = Vec::with_capacity(self.rows.len());
        for (i, row) in self.rows.iter().enumerate() {
            self.outcomes[i] = match self.item(ensemble, row) {
                Ok(item) => {
                    items.push(Ok(item));
                    Outcome::Sent(items.len() - 1)
                }
                Err(reason) => Outcome::Failed(reason),
            };
        }
        Ok(items)
    }
}

/// A JSON object of fields read as `lastmile predict` reads a line: its fields, and its own
/// `candidates` (an array of label names or prefixes) over the request's.
pub fn item_from_object(
    ensemble: &Ensemble,
    object: &Map<String, Value>,
    options: &ItemOptions,
) -> Result<ValidItem, String> {
    let mut options = options.clone();
    match object.get("candidates") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            let names: Option<Vec<String>> =
                list.iter().map(|v| v.as_str().map(str::to_owned)).collect();
            options.candidates =
                Some(names.ok_or_else(|| "candidates: expected an array of strings".to_owned())?);
        }
        Some(_) => return Err("candidates: expected an array of strings".into()),
    }
    ensemble
        .item_from_json(object, options)
        .map_err(|e| e.to_string())
}

/// One output row: the input row's number and id, and its answer or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRow {
    pub number: u64,
    pub id: RowId,
    /// The error names the row (`line 12: ...`).
    pub result: Result<ItemAnswer, String>,
}

/// A chunk's rows scored, in input order, and the ensemble that answered them.
pub struct ScoredChunk {
    pub index: u64,
    pub rows: Vec<OutRow>,
    pub ensemble: Arc<Ensemble>,
    pub end: super::read::Position,
}

impl ScoredChunk {
    pub fn failed(&self) -> u64 {
        self.rows.iter().filter(|r| r.result.is_err()).count() as u64
    }
}
