//! Parquet files and Arrow IPC streams, both read as Arrow record batches (the arrow-rs `parquet`
//! and `arrow-ipc` crates). The fields the ensemble reads must be string (or binary) columns, the
//! id column strings or integers; only those columns are decoded (a Parquet projection). A null
//! is an absent field; a binary value that is not UTF-8 is a bad row.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::Value;

use super::{bad, ColumnMap, Position, ReadOptions, Reader, Total};
use crate::batch::chunk::{InputRow, RowData, RowId};
use crate::batch::format::Location;
use crate::batch::BatchError;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Record batches cut into rows, whatever size the batches come in.
pub struct ArrowReader {
    batches: Batches,
    map: ColumnMap,
    fields: Arc<[String]>,
    current: Option<RecordBatch>,
    offset: usize,
    /// Rows still to skip from the start (resuming a stream).
    skip: u64,
    rows: u64,
    total: Total,
}

/// Opens a Parquet file, its columns checked and projected, positioned after `skip` rows.
pub fn parquet(
    file: File,
    location: &Location,
    options: &ReadOptions,
    skip: u64,
) -> Result<ArrowReader, BatchError> {
    let unreadable = |e: parquet::errors::ParquetError| {
        BatchError::Input(format!(
            "input {location}: not a readable Parquet file: {e}"
        ))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let map = check(builder.schema(), options, location)?;
    let mut roots: Vec<usize> = map.fields.iter().map(|(_, i)| *i).chain(map.id).collect();
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1024)
        .with_offset(usize::try_from(skip).unwrap_or(usize::MAX))
        .build()
        .map_err(unreadable)?;
    // Column indices in the projected batches.
    let map = ColumnMap::resolve(&names(&reader_schema(&reader)), options, location)?;
    Ok(ArrowReader::new(
        Box::new(reader),
        map,
        0,
        skip,
        Total::Rows(total),
    ))
}

fn reader_schema(reader: &parquet::arrow::arrow_reader::ParquetRecordBatchReader) -> Arc<Schema> {
    use arrow_array::RecordBatchReader;
    reader.schema()
}

/// Opens an Arrow IPC stream, positioned after `skip` rows (read and dropped).
pub fn ipc<R: Read + Send + 'static>(
    input: R,
    location: &Location,
    options: &ReadOptions,
    skip: u64,
) -> Result<ArrowReader, BatchError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(input, None).map_err(|e| {
        BatchError::Input(format!(
            "input {location}: not a readable Arrow IPC stream: {e}"
        ))
    })?;
    let map = check(&reader.schema(), options, location)?;
    Ok(ArrowReader::new(
        Box::new(reader),
        map,
        skip,
        skip,
        Total::Unknown,
    ))
}

fn names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Maps the schema's columns and checks their types.
fn check(
    schema: &Schema,
    options: &ReadOptions,
    location: &Location,
) -> Result<ColumnMap, BatchError> {
    let map = ColumnMap::resolve(&names(schema), options, location)?;
    for (field, i) in &map.fields {
        let column = schema.field(*i);
        if !is_text(column.data_type()) {
            return Err(BatchError::Input(format!(
                "input {location}: column {:?} (field {field:?}) is {}; the fields the ensemble \
                 reads must be strings",
                column.name(),
                column.data_type()
            )));
        }
    }
    if let Some(i) = map.id {
        let column = schema.field(i);
        if !is_text(column.data_type()) && !column.data_type().is_integer() {
            return Err(BatchError::Input(format!(
                "input {location}: id column {:?} is {}; it must hold strings or integers",
                column.name(),
                column.data_type()
            )));
        }
    }
    Ok(map)
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::Null
    )
}

/// Row `i` of a text column (checked by [`is_text`]): None when null; an error when binary and
/// not UTF-8.
fn text(array: &ArrayRef, i: usize) -> Option<Result<&str, std::str::Utf8Error>> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Ok(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Ok(array.as_string_view().value(i)),
        DataType::Binary => std::str::from_utf8(array.as_binary::<i32>().value(i)),
        DataType::LargeBinary => std::str::from_utf8(array.as_binary::<i64>().value(i)),
        DataType::BinaryView => std::str::from_utf8(array.as_binary_view().value(i)),
        _ => return None,
    })
}

/// Row `i` of the id column: text as text, an integer as a JSON number.
fn id(array: &ArrayRef, i: usize) -> RowId {
    use arrow_array::types::*;
    if array.is_null(i) {
        return RowId::None;
    }
    let number = |v: Value| RowId::Json(v);
    match array.data_type() {
        DataType::Int8 => number(array.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => number(array.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => number(array.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => number(array.as_primitive::<Int64Type>().value(i).into()),
        DataType::UInt8 => number(array.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => number(array.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => number(array.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => number(array.as_primitive::<UInt64Type>().value(i).into()),
        _ => match text(array, i) {
            Some(Ok(s)) => RowId::Text(s.to_owned()),
            Some(Err(_)) => RowId::Text(String::from_utf8_lossy(binary(array, i)).into_owned()),
            None => RowId::None,
        },
    }
}

fn binary(array: &ArrayRef, i: usize) -> &[u8] {
    match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(i),
        DataType::LargeBinary => array.as_binary::<i64>().value(i),
        DataType::BinaryView => array.as_binary_view().value(i),
        _ => &[],
    }
}

impl ArrowReader {
    fn new(batches: Batches, map: ColumnMap, skip: u64, rows: u64, total: Total) -> Self {
        ArrowReader {
            batches,
            fields: map.field_names(),
            map,
            current: None,
            offset: 0,
            skip,
            rows,
            total,
        }
    }

    fn row(&self, batch: &RecordBatch, i: usize, number: u64) -> InputRow {
        let id = self.map.id.map_or(RowId::None, |c| id(batch.column(c), i));
        let mut cells = Vec::with_capacity(self.map.fields.len());
        for (field, c) in &self.map.fields {
            match text(batch.column(*c), i) {
                None => cells.push(None),
                Some(Ok(t)) => cells.push(Some(t.to_owned())),
                Some(Err(e)) => return bad(number, id, super::not_utf8(field, e)),
            }
        }
        InputRow {
            number,
            id,
            data: RowData::Text(cells),
        }
    }
}

impl Reader for ArrowReader {
    fn read(&mut self, max: usize, rows: &mut Vec<InputRow>) -> Result<(), BatchError> {
        let mut added = 0;
        while added < max {
            let batch = match &self.current {
                Some(b) if self.offset < b.num_rows() => b.clone(),
                _ => match self.batches.next() {
                    None => break,
                    Some(Err(e)) => {
                        return Err(BatchError::Input(format!("reading the input: {e}")))
                    }
                    Some(Ok(b)) => {
                        self.offset = 0;
                        let n = b.num_rows() as u64;
                        if self.skip >= n {
                            self.skip -= n;
                            continue;
                        }
                        self.offset = std::mem::take(&mut self.skip) as usize;
                        self.current = Some(b.clone());
                        b
                    }
                },
            };
            let end = batch.num_rows().min(self.offset + (max - added));
            for i in self.offset..end {
                self.rows += 1;
                rows.push(self.row(&batch, i, self.rows));
            }
            added += end - self.offset;
            self.offset = end;
        }
        Ok(())
    }

    fn position(&self) -> Position {
        Position {
            rows: self.rows,
            ..Position::default()
        }
    }

    fn unit(&self) -> &'static str {
        "row"
    }

    fn fields(&self) -> Arc<[String]> {
        Arc::clone(&self.fields)
    }

    fn missing(&self) -> Vec<String> {
        self.map.missing.clone()
    }

    fn total(&self) -> Total {
        self.total
    }
}
