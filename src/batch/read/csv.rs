//! CSV with a header row naming the columns (RFC 4180 quoting). An empty cell is an absent field,
//! as a null is in Parquet; a row with another number of cells than the header, or a cell the
//! ensemble reads that is not UTF-8, is a bad row named by its row number (the first row after
//! the header is row 1).

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use super::{bad, ColumnMap, Position, ReadOptions, Reader, Total};
use crate::batch::chunk::{InputRow, RowData, RowId};
use crate::batch::format::Location;
use crate::batch::BatchError;

pub struct CsvReader<R: Read> {
    input: csv::Reader<R>,
    map: ColumnMap,
    fields: Arc<[String]>,
    columns: usize,
    rows: u64,
    total: Total,
    record: csv::ByteRecord,
}

fn builder() -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(true).flexible(true);
    b
}

fn csv_error(location: &Location, e: csv::Error) -> BatchError {
    BatchError::Input(format!("input {location}: {e}"))
}

impl<R: Read + Send> CsvReader<R> {
    /// Reads the header from `input` and maps its columns.
    pub fn new(
        input: R,
        location: &Location,
        options: &ReadOptions,
        total: Total,
    ) -> Result<Self, BatchError> {
        Self::with_reader(builder().from_reader(input), location, options, total)
    }

    fn with_reader(
        mut input: csv::Reader<R>,
        location: &Location,
        options: &ReadOptions,
        total: Total,
    ) -> Result<Self, BatchError> {
        let header = input
            .byte_headers()
            .map_err(|e| csv_error(location, e))?
            .clone();
        let columns: Vec<String> = header
            .iter()
            .map(|c| String::from_utf8_lossy(c).trim().to_owned())
            .collect();
        if columns.iter().all(String::is_empty) {
            return Err(BatchError::Input(format!(
                "input {location}: no header row (CSV input needs one naming the columns)"
            )));
        }
        let map = ColumnMap::resolve(&columns, options, location)?;
        Ok(CsvReader {
            fields: map.field_names(),
            map,
            columns: columns.len(),
            input,
            rows: 0,
            total,
            record: csv::ByteRecord::new(),
        })
    }

    fn row(&self, number: u64) -> InputRow {
        let record = &self.record;
        let id = self
            .map
            .id
            .and_then(|i| record.get(i))
            .filter(|cell| !cell.is_empty())
            .map_or(RowId::None, |cell| {
                RowId::Text(String::from_utf8_lossy(cell).into_owned())
            });
        if record.len() != self.columns {
            return bad(
                number,
                id,
                format!(
                    "has {} cells, the header has {}",
                    record.len(),
                    self.columns
                ),
            );
        }
        let mut cells = Vec::with_capacity(self.map.fields.len());
        for (field, column) in &self.map.fields {
            let cell = record.get(*column).unwrap_or_default();
            if cell.is_empty() {
                cells.push(None);
                continue;
            }
            match std::str::from_utf8(cell) {
                Ok(text) => cells.push(Some(text.to_owned())),
                Err(e) => return bad(number, id, super::not_utf8(field, e)),
            }
        }
        InputRow {
            number,
            id,
            data: RowData::Text(cells),
        }
    }
}

impl CsvReader<File> {
    /// Opens a CSV file and moves to `from` (a checkpoint's position; the start is the header).
    pub fn open_at(
        file: File,
        location: &Location,
        options: &ReadOptions,
        from: Position,
        total: Total,
    ) -> Result<Self, BatchError> {
        let mut reader = Self::with_reader(builder().from_reader(file), location, options, total)?;
        if from.rows > 0 {
            let mut pos = csv::Position::new();
            pos.set_byte(from.byte)
                .set_line(from.line)
                .set_record(from.rows + 1);
            reader.input.seek(pos).map_err(|e| csv_error(location, e))?;
            reader.rows = from.rows;
        }
        Ok(reader)
    }
}

impl<R: Read + Send> Reader for CsvReader<R> {
    fn read(&mut self, max: usize, rows: &mut Vec<InputRow>) -> Result<(), BatchError> {
        for _ in 0..max {
            let more = self
                .input
                .read_byte_record(&mut self.record)
                .map_err(|e| BatchError::Input(format!("reading the input: {e}")))?;
            if !more {
                break;
            }
            self.rows += 1;
            rows.push(self.row(self.rows));
        }
        Ok(())
    }

    fn position(&self) -> Position {
        let pos = self.input.position();
        Position {
            byte: pos.byte(),
            line: pos.line(),
            rows: self.rows,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ReadOptions {
        ReadOptions {
            fields: vec!["title".into(), "description".into()],
            renames: Default::default(),
            id_column: "id".into(),
            id_explicit: false,
        }
    }

    #[test]
    fn rows_are_read_with_their_numbers_and_bad_cells_named() {
        let text = b"id,title,description\n1,\"a, quoted\",\n2,b\n3,\"\xff\",d\n4,e,f\n";
        let here = Location::parse("in.csv");
        let mut r = CsvReader::new(&text[..], &here, &options(), Total::Unknown).unwrap();
        let mut rows = Vec::new();
        r.read(10, &mut rows).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].id, RowId::Text("1".into()));
        assert_eq!(
            rows[0].data,
            RowData::Text(vec![Some("a, quoted".into()), None])
        );
        assert!(matches!(&rows[1].data, RowData::Bad(r) if r.contains("2 cells")));
        assert!(
            matches!(&rows[2].data, RowData::Bad(r) if r.contains("\"title\"") && r.contains("UTF-8"))
        );
        assert_eq!(rows[3].number, 4);
        assert_eq!(r.position().rows, 4);
    }

    #[test]
    fn a_file_resumes_where_its_position_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "title\na\n\"b\nb\"\nc\nd\n").unwrap();
        let here = Location::File(path.clone());
        let open = |from| {
            CsvReader::open_at(
                File::open(&path).unwrap(),
                &here,
                &options(),
                from,
                Total::Unknown,
            )
            .unwrap()
        };
        let mut first = open(Position::default());
        let mut rows = Vec::new();
        first.read(2, &mut rows).unwrap();
        let mut resumed = open(first.position());
        let mut rest = Vec::new();
        resumed.read(10, &mut rest).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].number, 3);
        assert_eq!(rest[0].data, RowData::Text(vec![Some("c".into())]));
    }
}
