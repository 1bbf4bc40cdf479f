//! `lastmile predict` and `lastmile eval` on JSON Lines: the model's answers, bad lines named,
//! and what happens without the ONNX Runtime library.

use super::*;

#[test]
fn predict_answers_what_the_model_answers() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nweight = 0");
    let (_dir, path) = manifest(&text);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("fasttext/expected.json")).unwrap(),
    )
    .unwrap();
    let case = &expected["softmax.bin"][0];
    let input = format!(
        "{}\n",
        serde_json::json!({"id": "q1", "title": case["text"]})
    );
    let out = lastmile(&["predict", "--manifest", &path, "--top-k", "3"], &input);
    assert_succeeded(&out);
    let answer: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(answer["id"], "q1");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for (ours, official) in predictions
        .iter()
        .zip(case["predictions"].as_array().unwrap())
    {
        assert_eq!(ours["label"], official[0]);
        let diff = ours["score"].as_f64().unwrap() - official[1].as_f64().unwrap();
        assert!(diff.abs() < 1e-5, "{ours} vs {official}");
    }
}

#[test]
fn predict_reports_bad_lines_and_goes_on() {
    let (_dir, path) = manifest(&two_fasttext_models());
    let input = "{\"id\":1,\"title\":\"chef knife\"}\nnot json\n{\"id\":3,\"title\":7}\n{\"id\":4,\"other\":\"x\"}\n\n{\"id\":5,\"title\":\"tent\"}\n";
    let out = lastmile(&["predict", "--manifest", &path, "--explain"], input);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5, "one answer per non-blank line");
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["predictions"].as_array().unwrap().len(), 5);
    assert_eq!(lines[0]["models"].as_array().unwrap().len(), 2);
    assert!(lines[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("line 2: not JSON"));
    assert_eq!(lines[2]["id"], 3);
    assert!(lines[2]["error"]
        .as_str()
        .unwrap()
        .contains("field \"title\""));
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .contains("none of the fields"));
    assert_eq!(lines[4]["id"], 5);
    assert!(lines[4]["predictions"].is_array());
}

/// Runs `predict` in a process that cannot find the ONNX Runtime library.
fn predict_without_onnxruntime(manifest_text: &str) -> Output {
    let (_dir, path) = manifest(manifest_text);
    lastmile_with(
        &["predict", "--manifest", &path],
        "{\"title\":\"tent\"}\n",
        |cmd| {
            cmd.env_remove("ORT_DYLIB_PATH")
                .env_remove("LD_LIBRARY_PATH");
        },
    )
}

#[test]
fn fasttext_only_manifest_needs_no_onnxruntime() {
    let out = predict_without_onnxruntime(&two_fasttext_models());
    assert_succeeded(&out);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["predictions"][0]["label"], "camping_tents");
}

#[test]
fn onnx_manifest_without_onnxruntime_says_how_to_install_it() {
    let extra = format!("labels_file = \"{}\"", onnx("tfidf_lr_nozipmap.labels.txt"));
    let out = predict_without_onnxruntime(&onnx_manifest(&extra));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_mentions(
        &stderr,
        &[
            "model \"tfidf\"",
            "ONNX Runtime library not found",
            "scripts/setup.sh",
            "ORT_DYLIB_PATH",
        ],
    );
}

#[test]
fn eval_of_a_one_model_ensemble_equals_the_model() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nweight = 0");
    let (dir, path) = manifest(&text);
    // The fixtures' validation lines, as labelled JSON Lines.
    let valid = std::fs::read_to_string(fixtures().join("fasttext/valid.txt")).unwrap();
    let mut data = String::new();
    for line in valid.lines().take(30) {
        let (labels, words): (Vec<&str>, Vec<&str>) = line
            .split_whitespace()
            .partition(|t| t.starts_with("__label__"));
        let label = labels[0].trim_start_matches("__label__");
        data += &format!(
            "{}\n",
            serde_json::json!({"title": words.join(" "), "label": label})
        );
    }
    let data_path = dir.path().join("valid.jsonl");
    std::fs::write(&data_path, data).unwrap();
    let out = lastmile(
        &[
            "eval",
            "--manifest",
            &path,
            "--data",
            data_path.to_str().unwrap(),
            "--json",
        ],
        "",
    );
    assert_succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["items"], 30);
    let model = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "a")
        .unwrap();
    for metric in ["top1", "top5", "macro_f1"] {
        assert_eq!(report["overall"][metric], model[metric], "{metric}");
    }
    assert!(
        model["top1"].as_f64().unwrap() > 0.8,
        "the fixture model is good: {model}"
    );
}

#[test]
fn eval_names_the_bad_line_of_its_data() {
    let (dir, path) = manifest(&two_fasttext_models());
    let data_path = dir.path().join("bad.jsonl");
    std::fs::write(
        &data_path,
        "{\"title\":\"tent\",\"label\":\"camping_tents\"}\n{\"title\":\"tent\"}\n",
    )
    .unwrap();
    let out = lastmile(
        &[
            "eval",
            "--manifest",
            &path,
            "--data",
            data_path.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_mentions(&stderr, &["bad.jsonl:2", "label"]);
}
