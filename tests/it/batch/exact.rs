//! `lastmile batch` answers what `lastmile predict` answers for the same items and options
//! (top_k, candidates, explain), to the bit, from and to every format.

use super::*;

/// Checks each output row against predict's answer for the same item: labels and scores equal
/// as `f32`, rules, abstention, agreement and (when asked) every model's part.
fn assert_same(rows: &[OutRow], expected: &[Value], items: &[Item], explain: bool, what: &str) {
    assert_eq!(rows.len(), expected.len(), "{what}: one row per item");
    for (i, (row, want)) in rows.iter().zip(expected).enumerate() {
        let ctx = format!("{what}, row {}", i + 1);
        assert_eq!(row.row, i as i64 + 1, "{ctx}");
        assert_eq!(row.id.as_deref(), Some(items[i].id.as_str()), "{ctx}");
        assert_eq!(row.error, None, "{ctx}");
        let top = label_scores(&want["predictions"]);
        assert_eq!(row.top_k, top, "{ctx}: top_k");
        assert_eq!(row.label, top.first().map(|p| p.0.clone()), "{ctx}");
        assert_eq!(row.score, top.first().map(|p| p.1), "{ctx}");
        let rules: Vec<String> = want
            .get("rules_fired")
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .unwrap_or_default();
        assert_eq!(row.rules_fired, rules, "{ctx}: rules");
        assert_eq!(row.abstained, opt_str(&want["abstained"]), "{ctx}");
        assert_eq!(row.agreement, want["agreement"].as_i64(), "{ctx}");
        assert_eq!(
            (row.ensemble.as_str(), row.version.as_str()),
            ("starter", "1")
        );
        assert!(row.digest.starts_with("sha256:"), "{ctx}: {}", row.digest);
        if explain {
            assert_eq!(
                row.models,
                Some(model_parts(&want["models"])),
                "{ctx}: models"
            );
        }
    }
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// Every format in, the same format out (and Parquet to JSON Lines, and Arrow through pipes),
/// with --top-k 3 --explain, against predict's answers.
#[test]
fn batch_answers_equal_predict_in_every_format() {
    let items = items(300);
    let (_dir, at) = temp();
    let lines: Vec<Value> = items.iter().map(Item::json).collect();
    let expected = predict(&lines, &["--top-k", "3", "--explain"]);
    assert!(
        expected.iter().any(|a| a.get("rules_fired").is_some()),
        "the items make a rule fire"
    );
    let opts = ["--top-k", "3", "--explain", "--chunk-rows", "64"];

    write_jsonl(&at("in.jsonl"), &lines);
    let out = batch(&at("in.jsonl"), &at("out.jsonl"), &opts);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(
        &read_jsonl(&at("out.jsonl")),
        &expected,
        &items,
        true,
        "jsonl",
    );

    write_csv(&at("in.csv"), &items);
    let out = batch(&at("in.csv"), &at("out.csv"), &opts);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(&read_csv(&at("out.csv")), &expected, &items, true, "csv");

    write_parquet(&at("in.parquet"), &record_batch(&items));
    let mut parquet_opts = opts.to_vec();
    parquet_opts.extend(["--row-group-rows", "100"]);
    let out = batch(&at("in.parquet"), &at("out.parquet"), &parquet_opts);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(
        &read_parquet(&at("out.parquet")),
        &expected,
        &items,
        true,
        "parquet",
    );
    assert!(
        !at("out.parquet.lastmile-parts").exists()
            && !at("out.parquet.lastmile-checkpoint").exists(),
        "a completed run leaves neither parts nor checkpoint"
    );

    let out = batch(&at("in.parquet"), &at("p.jsonl"), &opts);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(
        &read_jsonl(&at("p.jsonl")),
        &expected,
        &items,
        true,
        "parquet -> jsonl",
    );

    // Arrow IPC through standard input and output, as the mapInArrow helper pipes it.
    let mut ipc = Vec::new();
    {
        let batch = record_batch(&items);
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema()).unwrap();
        for start in (0..items.len()).step_by(70) {
            w.write(&batch.slice(start, 70.min(items.len() - start)))
                .unwrap();
        }
        w.finish().unwrap();
    }
    let manifest = starter();
    let mut args = vec![
        "batch",
        "--manifest",
        manifest.to_str().unwrap(),
        "--input",
        "-",
        "--output",
        "-",
        "--format",
        "arrow",
    ];
    args.extend_from_slice(&opts);
    let out = lastmile(&args, &ipc);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(&read_arrow(&out.stdout), &expected, &items, true, "arrow");
}

/// Candidates: a JSON Lines row's own, or --candidates for every row, as predict reads them.
#[test]
fn candidates_restrict_answers_as_in_predict() {
    let items = items(60);
    let (_dir, at) = temp();
    let restricted = ["kitchen_knives", "laptops", "home"];
    let mut lines: Vec<Value> = items.iter().map(Item::json).collect();
    for (i, l) in lines.iter_mut().enumerate() {
        if i % 2 == 0 {
            l["candidates"] = json!(["board_games", "running"]);
        }
    }
    let own = predict(&lines, &["--top-k", "2"]);
    write_jsonl(&at("in.jsonl"), &lines);
    let out = batch(
        &at("in.jsonl"),
        &at("out.jsonl"),
        &[
            "--top-k",
            "2",
            "--candidates",
            "kitchen_knives,laptops,home",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Odd rows take --candidates: predict gives the same with them on the line.
    let expected: Vec<Value> = {
        let mut with_flag = lines.clone();
        for (i, l) in with_flag.iter_mut().enumerate() {
            if i % 2 == 1 {
                l["candidates"] = json!(restricted);
            }
        }
        predict(&with_flag, &["--top-k", "2"])
    };
    assert_eq!(own[0], expected[0]);
    assert_same(
        &read_jsonl(&at("out.jsonl")),
        &expected,
        &items,
        false,
        "jsonl candidates",
    );
    for row in read_jsonl(&at("out.jsonl")).iter().skip(1).step_by(2) {
        for (label, _) in &row.top_k {
            assert!(
                restricted.iter().any(|c| label.starts_with(c)),
                "{label} is a candidate"
            );
        }
    }

    write_parquet(&at("in.parquet"), &record_batch(&items));
    let everywhere: Vec<Value> = lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l["candidates"] = json!(restricted);
            l
        })
        .collect();
    let expected = predict(&everywhere, &["--top-k", "2"]);
    let out = batch(
        &at("in.parquet"),
        &at("out.csv"),
        &[
            "--top-k",
            "2",
            "--candidates",
            "kitchen_knives,laptops,home",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(
        &read_csv(&at("out.csv")),
        &expected,
        &items,
        false,
        "parquet -> csv",
    );
}

/// `--fields` maps columns to the ensemble's fields and `--id-column` names the id.
#[test]
fn fields_and_id_columns_are_mapped() {
    let items = items(40);
    let (_dir, at) = temp();
    let mut w = csv::Writer::from_path(at("in.csv")).unwrap();
    w.write_record(["sku", "product_name", "body"]).unwrap();
    for it in &items {
        w.write_record([
            it.id.as_str(),
            it.title.as_deref().unwrap(),
            it.description.as_deref().unwrap_or(""),
        ])
        .unwrap();
    }
    w.flush().unwrap();
    let out = batch(
        &at("in.csv"),
        &at("out.jsonl"),
        &[
            "--fields",
            "title=product_name,description=body",
            "--id-column",
            "sku",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = predict(&items.iter().map(Item::json).collect::<Vec<_>>(), &[]);
    assert_same(
        &read_jsonl(&at("out.jsonl")),
        &expected,
        &items,
        false,
        "renamed csv",
    );
}
