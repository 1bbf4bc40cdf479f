//! Bad rows never stop a batch: each kind gets an error naming its line or row, the others are
//! scored, and the exit code (3) says some failed. An input that cannot be read at all, or whose
//! columns hold none of the ensemble's fields, fails at once with exit 2 and the reason.

use arrow_array::BinaryArray;

use super::*;

/// The rows that failed, as (row number, error).
fn failures(rows: &[OutRow]) -> Vec<(i64, String)> {
    rows.iter()
        .filter_map(|r| r.error.clone().map(|e| (r.row, e)))
        .collect()
}

fn assert_error(failed: &[(i64, String)], row: i64, parts: &[&str]) {
    let (_, e) = failed
        .iter()
        .find(|(r, _)| *r == row)
        .unwrap_or_else(|| panic!("row {row} failed; failures: {failed:?}"));
    for p in parts {
        assert!(e.contains(p), "row {row}: {e:?} should mention {p:?}");
    }
}

#[test]
fn malformed_json_lines_get_errors_with_their_line_numbers() {
    let (_dir, at) = temp();
    let mut text = Vec::new();
    text.extend_from_slice(b"{\"id\": \"a\", \"title\": \"steel chef knife\"}\n");
    text.extend_from_slice(b"this is not json\n");
    text.extend_from_slice(b"{\"id\": \"b\", \"title\": \"caf\xe9 \xff\"}\n");
    text.extend_from_slice(b"\n");
    text.extend_from_slice(b"{\"id\": \"c\", \"title\": 42}\n");
    text.extend_from_slice(b"{\"id\": \"d\", \"colour\": \"red\"}\n");
    text.extend_from_slice(b"[\"an\", \"array\"]\n");
    text.extend_from_slice(
        b"{\"id\": \"e\", \"title\": \"running shoes\", \"candidates\": \"x\"}\n",
    );
    text.extend_from_slice(b"{\"id\": \"f\", \"title\": \"garden hose\"}\n");
    std::fs::write(at("in.jsonl"), &text).unwrap();
    let out = batch(&at("in.jsonl"), &at("out.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("6 of 8 rows could not be scored"),
        "{}",
        stderr(&out)
    );
    let rows = read_jsonl(&at("out.jsonl"));
    assert_eq!(rows.len(), 8, "one row per line, the blank one skipped");
    let failed = failures(&rows);
    assert_eq!(failed.len(), 6, "{failed:?}");
    assert_error(&failed, 2, &["line 2", "not JSON"]);
    assert_error(&failed, 3, &["line 3", "UTF-8"]);
    assert_error(&failed, 5, &["line 5", "\"title\"", "expected a string"]);
    assert_error(&failed, 6, &["line 6", "none of the fields"]);
    assert_error(&failed, 7, &["line 7", "object"]);
    assert_error(&failed, 8, &["line 8", "candidates"]);
    let scored: Vec<_> = rows.iter().filter(|r| r.error.is_none()).collect();
    assert_eq!(scored.len(), 2);
    assert_eq!(scored[0].id.as_deref(), Some("a"));
    assert_eq!(scored[0].label.as_deref(), Some("kitchen_knives"));
    assert_eq!(scored[1].row, 9);
    assert_eq!(
        rows[3].id.as_deref(),
        Some("c"),
        "a bad row keeps its id when it has one"
    );

    // With --errors, the failed rows go there and the output holds the scored ones.
    let out = batch(
        &at("in.jsonl"),
        &at("ok.jsonl"),
        &["--errors", at("errors.jsonl").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(read_jsonl(&at("ok.jsonl")).len(), 2);
    let errors: Vec<Value> = std::fs::read_to_string(at("errors.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(errors.len(), 6);
    assert_eq!(errors[0]["row"], 2);
    assert!(errors[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("line 2: not JSON"));
}

#[test]
fn malformed_csv_and_parquet_rows_get_errors_with_their_row_numbers() {
    let (_dir, at) = temp();
    let mut text = b"id,title,description\n".to_vec();
    text.extend_from_slice(b"a,steel chef knife,forged\n");
    text.extend_from_slice(b"b,too,many,cells\n");
    text.extend_from_slice(b"c,\"bad \xff utf-8\",\n");
    text.extend_from_slice(b"d,,\n");
    text.extend_from_slice(b"e,garden hose,\n");
    std::fs::write(at("in.csv"), &text).unwrap();
    let out = batch(&at("in.csv"), &at("out.csv"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = read_csv(&at("out.csv"));
    assert_eq!(rows.len(), 5);
    let failed = failures(&rows);
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_error(&failed, 2, &["row 2", "4 cells", "header has 3"]);
    assert_error(&failed, 3, &["row 3", "\"title\"", "UTF-8"]);
    assert_error(&failed, 4, &["row 4", "none of the fields"]);
    assert_eq!(rows[4].label.as_deref(), Some("garden_tools"));

    // Parquet: a binary column that is not UTF-8, a row of nulls.
    let titles: BinaryArray = vec![
        Some(&b"steel chef knife"[..]),
        Some(&b"\xc3\x28 broken"[..]),
        None,
        Some(&b"camping tent"[..]),
    ]
    .into_iter()
    .collect();
    let batch_ = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "title",
            DataType::Binary,
            true,
        )])),
        vec![Arc::new(titles)],
    )
    .unwrap();
    write_parquet(&at("in.parquet"), &batch_);
    let out = batch(&at("in.parquet"), &at("out.parquet"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = read_parquet(&at("out.parquet"));
    let failed = failures(&rows);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_error(&failed, 2, &["row 2", "UTF-8"]);
    assert_error(&failed, 3, &["row 3", "none of the fields"]);
    assert_eq!(rows[3].label.as_deref(), Some("camping_tents"));
}

fn assert_refused(out: &Output, parts: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    let e = stderr(out);
    for p in parts {
        assert!(e.contains(p), "{e:?} should mention {p:?}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn unreadable_inputs_and_schemas_fail_at_once_with_exit_2() {
    let (_dir, at) = temp();
    // A Parquet file cut short (its footer gone), and one that is not Parquet at all.
    write_parquet(&at("good.parquet"), &record_batch(&items(10)));
    let bytes = std::fs::read(at("good.parquet")).unwrap();
    std::fs::write(at("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    let out = batch(&at("cut.parquet"), &at("out.jsonl"), &[]);
    assert_refused(&out, &["cut.parquet", "not a readable Parquet file"]);
    assert!(!at("out.jsonl").exists(), "nothing is written");
    std::fs::write(at("text.parquet"), "id,title\n1,a\n").unwrap();
    assert_refused(
        &batch(&at("text.parquet"), &at("out.jsonl"), &[]),
        &["text.parquet", "not a readable Parquet file"],
    );
    // A corrupt page (footer intact): the run stops with exit 2 and the reason.
    let mut corrupt = bytes.clone();
    for b in &mut corrupt[8..bytes.len() / 3] {
        *b = 0xA5;
    }
    std::fs::write(at("pages.parquet"), &corrupt).unwrap();
    let out = batch(&at("pages.parquet"), &at("out.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // Columns that hold none of the fields, a field column of another type, a missing file.
    std::fs::write(at("cols.csv"), "sku,name\n1,a\n").unwrap();
    assert_refused(
        &batch(&at("cols.csv"), &at("out.jsonl"), &[]),
        &[
            "cols.csv",
            "none of the fields",
            "title, description",
            "sku, name",
        ],
    );
    let numbers = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "title",
            DataType::Int64,
            false,
        )])),
        vec![Arc::new(arrow_array::Int64Array::from(vec![1, 2]))],
    )
    .unwrap();
    write_parquet(&at("numbers.parquet"), &numbers);
    assert_refused(
        &batch(&at("numbers.parquet"), &at("out.jsonl"), &[]),
        &["\"title\"", "Int64", "must be strings"],
    );
    assert_refused(
        &batch(&at("missing.jsonl"), &at("out.jsonl"), &[]),
        &["missing.jsonl"],
    );
    assert_refused(
        &batch(
            &at("good.parquet"),
            &at("out.jsonl"),
            &["--id-column", "sku"],
        ),
        &["\"sku\"", "--id-column"],
    );
    assert_refused(
        &batch(
            &at("good.parquet"),
            &at("out.jsonl"),
            &["--fields", "colour=title"],
        ),
        &["--fields", "colour"],
    );
}
