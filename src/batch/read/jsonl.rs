//! JSON Lines: one object of fields per line, read as `lastmile predict` reads it. Blank lines are
//! skipped; a line that is not UTF-8, not JSON or not an object is a bad row named by its line.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;

use serde_json::Value;

use super::{bad, Position, ReadOptions, Reader, Total};
use crate::batch::chunk::{InputRow, RowData, RowId};
use crate::batch::BatchError;

pub struct JsonlReader<R> {
    input: R,
    renames: BTreeMap<String, String>,
    id_column: String,
    position: Position,
    total: Total,
    line: Vec<u8>,
}

impl<R: BufRead + Send> JsonlReader<R> {
    /// `input` is already at `from`.
    pub fn new(input: R, options: &ReadOptions, from: Position, total: Total) -> Self {
        JsonlReader {
            input,
            renames: options
                .renames
                .iter()
                .filter(|(field, column)| field != column)
                .map(|(f, c)| (f.clone(), c.clone()))
                .collect(),
            id_column: options.id_column.clone(),
            position: from,
            total,
            line: Vec::new(),
        }
    }

    fn row(&self, number: u64, line: &[u8]) -> InputRow {
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(e) => {
                return bad(
                    number,
                    RowId::None,
                    format!("not UTF-8 (invalid byte at column {})", e.valid_up_to() + 1),
                )
            }
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return bad(number, RowId::None, format!("not JSON: {e}")),
        };
        let Value::Object(mut object) = value else {
            return bad(
                number,
                RowId::None,
                "expected a JSON object of fields".into(),
            );
        };
        let id = RowId::Json(object.get(&self.id_column).cloned().unwrap_or(Value::Null));
        for (field, column) in &self.renames {
            match object.remove(column) {
                Some(v) => object.insert(field.clone(), v),
                None => object.remove(field),
            };
        }
        InputRow {
            number,
            id,
            data: RowData::Json(object),
        }
    }
}

impl<R: BufRead + Send> Reader for JsonlReader<R> {
    fn read(&mut self, max: usize, rows: &mut Vec<InputRow>) -> Result<(), BatchError> {
        let mut added = 0;
        while added < max {
            self.line.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.line)
                .map_err(|e| BatchError::Input(format!("reading the input: {e}")))?;
            if n == 0 {
                break;
            }
            self.position.byte += n as u64;
            self.position.line += 1;
            let line = self.line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let row = self.row(self.position.line, line);
            rows.push(row);
            self.position.rows += 1;
            added += 1;
        }
        Ok(())
    }

    fn position(&self) -> Position {
        self.position
    }

    fn unit(&self) -> &'static str {
        "line"
    }

    fn fields(&self) -> Arc<[String]> {
        Arc::from(Vec::new())
    }

    fn total(&self) -> Total {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &[u8], renames: &[(&str, &str)]) -> (Vec<InputRow>, Position) {
        let options = ReadOptions {
            fields: vec!["title".into()],
            renames: renames
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            id_column: "sku".into(),
            id_explicit: true,
        };
        let mut r = JsonlReader::new(text, &options, Position::default(), Total::Unknown);
        let mut rows = Vec::new();
        r.read(100, &mut rows).unwrap();
        (rows, r.position())
    }

    #[test]
    fn lines_become_rows_named_by_their_line() {
        let text = b"{\"sku\": 7, \"name\": \"a\"}\n\n  \nnot json\n[1]\n{\"x\": \"\xff\"}\n{\"title\": \"t\"}";
        let (rows, pos) = read_all(text, &[("title", "name")]);
        assert_eq!(rows.len(), 5);
        assert_eq!(
            rows.iter().map(|r| r.number).collect::<Vec<_>>(),
            [1, 4, 5, 6, 7]
        );
        assert_eq!(rows[0].id, RowId::Json(Value::from(7)));
        let RowData::Json(o) = &rows[0].data else {
            panic!()
        };
        assert_eq!(o.get("title"), Some(&Value::from("a")));
        assert!(matches!(&rows[1].data, RowData::Bad(r) if r.starts_with("not JSON")));
        assert!(matches!(&rows[2].data, RowData::Bad(r) if r.contains("object")));
        assert!(matches!(&rows[3].data, RowData::Bad(r) if r.contains("UTF-8")));
        // The rename takes the field from its column only: `title` itself is dropped.
        let RowData::Json(o) = &rows[4].data else {
            panic!()
        };
        assert_eq!(o.get("title"), None);
        assert_eq!(
            pos,
            Position {
                byte: text.len() as u64,
                line: 7,
                rows: 5
            }
        );
    }
}
