//! Readers: each input format turned into chunks of [`InputRow`]s, one chunk at a time, so that
//! memory holds a chunk and never the input. A reader also says where it stands
//! ([`Position`]: what a checkpoint records) and can start again from there (`--resume`).
//!
//! Columnar inputs (CSV, Parquet, Arrow) are checked once, when opened: the columns the ensemble
//! reads (after `--fields` renames) and the id column are looked up by name, and an input with
//! none of the ensemble's fields, or without a column named explicitly, is refused then
//! ([`ColumnMap::resolve`]). A row that cannot be read becomes a [`RowData::Bad`] row, never an
//! error of the reader; a reader's own errors (an unreadable file, a corrupt page) end the run.

mod arrow;
mod csv;
mod jsonl;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::chunk::{InputRow, RowData};
use super::format::{Format, Location};
use super::BatchError;

/// How far a reader has read: what a checkpoint records and a resumed reader starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Bytes of the input consumed (JSON Lines, CSV).
    pub byte: u64,
    /// Lines consumed (JSON Lines, CSV).
    pub line: u64,
    /// Rows read (every format; JSON Lines does not count blank lines).
    pub rows: u64,
}

/// How much input there is, when it can be known up front (for the progress bar's ETA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    Bytes(u64),
    Rows(u64),
    Unknown,
}

/// What a reader needs to know besides its input.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The ensemble's fields, in its order.
    pub fields: Vec<String>,
    /// Ensemble field → the input column it is read from (`--fields title=product_name`).
    pub renames: BTreeMap<String, String>,
    /// The column echoed as each row's id.
    pub id_column: String,
    /// Whether `id_column` was asked for (then it must exist in a columnar input).
    pub id_explicit: bool,
}

/// One input format's reader.
pub trait Reader: Send {
    /// Appends up to `max` rows to `rows`; appends none at the end of the input.
    fn read(&mut self, max: usize, rows: &mut Vec<InputRow>) -> Result<(), BatchError>;
    /// Where it stands after the rows read so far.
    fn position(&self) -> Position;
    /// `line` or `row`: what a row's number counts.
    fn unit(&self) -> &'static str;
    /// The ensemble fields [`RowData::Text`] rows hold, in order (empty for JSON Lines).
    fn fields(&self) -> Arc<[String]>;
    /// Input fields the ensemble reads that this input lacks (columnar inputs), for a warning.
    fn missing(&self) -> Vec<String> {
        Vec::new()
    }
    fn total(&self) -> Total;
}

/// Opens `location` as `format`, positioned at `from` (a checkpoint's position, or the start).
pub fn open(
    location: &Location,
    format: Format,
    options: &ReadOptions,
    from: Position,
) -> Result<Box<dyn Reader>, BatchError> {
    let input_error = |e: std::io::Error| BatchError::Input(format!("input {location}: {e}"));
    match location {
        Location::Stdio => {
            let stdin: Box<dyn Read + Send> = Box::new(std::io::stdin());
            match format {
                Format::Jsonl => Ok(Box::new(jsonl::JsonlReader::new(
                    BufReader::with_capacity(1 << 16, stdin),
                    options,
                    Position::default(),
                    Total::Unknown,
                ))),
                Format::Csv => Ok(Box::new(csv::CsvReader::new(
                    stdin,
                    location,
                    options,
                    Total::Unknown,
                )?)),
                Format::Arrow => Ok(Box::new(arrow::ipc(stdin, location, options, 0)?)),
                Format::Parquet => Err(BatchError::Usage(
                    "Parquet cannot be read from standard input (it is read from its end): give \
                     a file, or pipe Arrow IPC (--format arrow)"
                        .into(),
                )),
            }
        }
        Location::File(path) => {
            let file = File::open(path).map_err(input_error)?;
            let size = file.metadata().map_err(input_error)?.len();
            match format {
                Format::Jsonl => {
                    let mut file = file;
                    seek(&mut file, from.byte).map_err(input_error)?;
                    Ok(Box::new(jsonl::JsonlReader::new(
                        BufReader::with_capacity(1 << 16, file),
                        options,
                        from,
                        Total::Bytes(size),
                    )))
                }
                Format::Csv => Ok(Box::new(csv::CsvReader::open_at(
                    file,
                    location,
                    options,
                    from,
                    Total::Bytes(size),
                )?)),
                Format::Parquet => Ok(Box::new(arrow::parquet(
                    file, location, options, from.rows,
                )?)),
                Format::Arrow => Ok(Box::new(arrow::ipc(
                    BufReader::new(file),
                    location,
                    options,
                    from.rows,
                )?)),
            }
        }
    }
}

fn seek(file: &mut File, byte: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(byte)).map(|_| ())
}

/// Where a columnar input's columns go: the ensemble fields found (in [`Reader::fields`] order)
/// with their column index, and the id column's.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMap {
    /// (ensemble field, input column index)
    pub fields: Vec<(String, usize)>,
    pub id: Option<usize>,
    /// Ensemble fields the input has no column for.
    pub missing: Vec<String>,
}

impl ColumnMap {
    /// Looks the ensemble's fields and the id up among `columns` (the input's column names).
    pub fn resolve(
        columns: &[String],
        options: &ReadOptions,
        location: &Location,
    ) -> Result<ColumnMap, BatchError> {
        let find = |name: &str| columns.iter().position(|c| c == name);
        let mut fields = Vec::new();
        let mut missing = Vec::new();
        for field in &options.fields {
            let column = options.renames.get(field).unwrap_or(field);
            match find(column) {
                Some(i) => fields.push((field.clone(), i)),
                None if options.renames.contains_key(field) => {
                    return Err(BatchError::Input(format!(
                        "input {location}: no column {column:?} (--fields {field}={column}); its \
                         columns: {}",
                        columns.join(", ")
                    )))
                }
                None => missing.push(field.clone()),
            }
        }
        if fields.is_empty() {
            return Err(BatchError::Input(format!(
                "input {location}: none of the fields the ensemble reads ({}) is a column; its \
                 columns: {} (map one with --fields FIELD=COLUMN)",
                options.fields.join(", "),
                columns.join(", ")
            )));
        }
        let id = find(&options.id_column);
        if id.is_none() && options.id_explicit {
            return Err(BatchError::Input(format!(
                "input {location}: no column {:?} (--id-column); its columns: {}",
                options.id_column,
                columns.join(", ")
            )));
        }
        Ok(ColumnMap {
            fields,
            id,
            missing,
        })
    }

    pub fn field_names(&self) -> Arc<[String]> {
        self.fields.iter().map(|(f, _)| f.clone()).collect()
    }
}

/// A row whose cells could not all be read.
/// Why a cell is refused when its bytes are not text: the field and the first bad byte.
fn not_utf8(field: &str, e: std::str::Utf8Error) -> String {
    format!(
        "field {field:?}: not UTF-8 (invalid byte at {})",
        e.valid_up_to() + 1
    )
}

fn bad(number: u64, id: super::chunk::RowId, reason: String) -> InputRow {
    InputRow {
        number,
        id,
        data: RowData::Bad(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(renames: &[(&str, &str)], id: Option<&str>) -> ReadOptions {
        ReadOptions {
            fields: vec!["title".into(), "description".into()],
            renames: renames
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            id_column: id.unwrap_or("id").into(),
            id_explicit: id.is_some(),
        }
    }

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_resolve_with_renames_and_name_what_is_missing() {
        let here = Location::parse("in.csv");
        let map = ColumnMap::resolve(
            &columns(&["sku", "product_name", "description"]),
            &options(&[("title", "product_name")], Some("sku")),
            &here,
        )
        .unwrap();
        assert_eq!(
            map.fields,
            vec![("title".into(), 1), ("description".into(), 2)]
        );
        assert_eq!(map.id, Some(0));

        let map =
            ColumnMap::resolve(&columns(&["title", "x"]), &options(&[], None), &here).unwrap();
        assert_eq!(map.missing, vec!["description".to_owned()]);
        assert_eq!(map.id, None);

        let e = ColumnMap::resolve(&columns(&["a", "b"]), &options(&[], None), &here)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("title, description") && e.contains("a, b"),
            "{e}"
        );
        let e = ColumnMap::resolve(
            &columns(&["title"]),
            &options(&[("description", "desc")], None),
            &here,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"desc\"") && e.contains("--fields"), "{e}");
        let e = ColumnMap::resolve(&columns(&["title"]), &options(&[], Some("sku")), &here)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"sku\"") && e.contains("--id-column"), "{e}");
    }
}
