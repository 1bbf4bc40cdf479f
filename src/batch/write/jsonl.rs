//! JSON Lines out: one object per row with every column (see the module above), and the errors
//! file (`--errors`): one `{"id", "row", "error"}` object per row that failed.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

use super::{Mark, Sink, Writer};
use crate::batch::chunk::OutRow;
use crate::ensemble::{Ensemble, LabelScore, ModelAnswer};

/// One output row as JSON: the columns in order. Scores are written as the shortest decimal that
/// reads back as the same `f32`.
#[derive(Serialize)]
pub struct JsonRow<'a> {
    pub id: Value,
    pub row: u64,
    pub label: Option<&'a str>,
    pub score: Option<f32>,
    pub top_k: &'a [LabelScore],
    pub agreement: Option<u32>,
    pub abstained: Option<&'a str>,
    pub rules_fired: &'a [String],
    pub error: Option<&'a str>,
    pub ensemble: &'a str,
    pub version: &'a str,
    pub digest: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<&'a [ModelAnswer]>,
}

impl<'a> JsonRow<'a> {
    pub fn new(row: &'a OutRow, e: &'a Ensemble, explain: bool) -> JsonRow<'a> {
        let (answer, error) = match &row.result {
            Ok(a) => (Some(a), None),
            Err(reason) => (None, Some(reason.as_str())),
        };
        let top = answer.and_then(|a| a.predictions.first());
        JsonRow {
            id: row.id.json(),
            row: row.number,
            label: top.map(|p| p.label.as_str()),
            score: top.map(|p| p.score),
            top_k: answer.map_or(&[], |a| &a.predictions),
            agreement: answer.map(|a| a.agreement),
            abstained: answer.and_then(|a| a.abstained.as_deref()),
            rules_fired: answer.map_or(&[], |a| &a.rules_fired),
            error,
            ensemble: &e.name,
            version: &e.version,
            digest: &e.digest,
            models: explain.then(|| answer.and_then(|a| a.models.as_deref()).unwrap_or(&[])),
        }
    }
}

pub struct JsonlWriter {
    sink: Sink,
    explain: bool,
}

impl JsonlWriter {
    pub fn new(sink: Sink, explain: bool) -> Self {
        JsonlWriter { sink, explain }
    }
}

impl Writer for JsonlWriter {
    fn write(&mut self, rows: &[&OutRow], ensemble: &Ensemble) -> io::Result<()> {
        for row in rows {
            serde_json::to_writer(&mut self.sink, &JsonRow::new(row, ensemble, self.explain))?;
            self.sink.write_all(b"\n")?;
        }
        Ok(())
    }

    fn mark(&mut self) -> io::Result<Mark> {
        Ok(Mark {
            bytes: self.sink.bytes(),
            ..Mark::default()
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sink.sync()
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.sink.sync()
    }
}

/// The errors file.
pub struct ErrorsWriter {
    sink: Sink,
}

#[derive(Serialize)]
struct ErrorRow<'a> {
    id: Value,
    row: u64,
    error: &'a str,
}

impl ErrorsWriter {
    pub fn new(sink: Sink) -> Self {
        ErrorsWriter { sink }
    }

    pub fn write(&mut self, rows: &[&OutRow]) -> io::Result<()> {
        for row in rows {
            let Err(error) = &row.result else { continue };
            let line = ErrorRow {
                id: row.id.json(),
                row: row.number,
                error,
            };
            serde_json::to_writer(&mut self.sink, &line)?;
            self.sink.write_all(b"\n")?;
        }
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.sink.bytes()
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.sink.sync()
    }
}
