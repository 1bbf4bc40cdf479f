//! The ONNX runtime against the official Python onnxruntime 1.31.1: every fixture model in
//! tests/fixtures/onnx (made by scripts/fixtures/make_onnx_fixtures.py, which recorded Python's
//! answers in expected.json) must give the same labels, in the same order, and the same
//! probabilities within 1e-5, row by row and as one batch. Also the load-time errors an operator
//! sees for bad bindings, label files, missing locales and a missing library.

use std::path::{Path, PathBuf};
use std::process::Command;

use lastmile::runtime::onnx::{Feed, OnnxLabels, OnnxModel, OnnxSpec, ScoreKind};
use lastmile::runtime::{InputKind, Inputs, LoadError, RunError, Runtime, Scores};
use serde_json::Value;

const TOLERANCE: f32 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

fn read_labels(file: &str) -> Vec<String> {
    std::fs::read_to_string(fixtures().join(file))
        .expect("labels file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The spec the manifest layer would build for one entry of expected.json.
fn spec_for(entry: &Value, name_output: bool) -> OnnxSpec {
    let s = |k: &str| entry[k].as_str().expect(k).to_owned();
    let labels_from = s("labels_from");
    let labels = if let Some(file) = labels_from.strip_prefix("file:") {
        OnnxLabels::List(read_labels(file))
    } else if let Some(key) = labels_from.strip_prefix("metadata:") {
        OnnxLabels::Metadata { key: key.into() }
    } else {
        assert_eq!(labels_from, "zipmap");
        OnnxLabels::ZipMap
    };
    OnnxSpec {
        path: fixtures().join(s("file")),
        input: name_output.then(|| s("input")),
        feed: if s("feed") == "text" {
            Feed::Text
        } else {
            Feed::Features
        },
        output: name_output.then(|| s("output")),
        scores: if s("scores") == "logits" {
            ScoreKind::Logits
        } else {
            ScoreKind::Probabilities
        },
        labels,
        intra_threads: 1,
    }
}

fn mlp_spec() -> OnnxSpec {
    spec_for(&expected()["models"]["mlp_float"], true)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// Runs every input alone and all as one batch; returns the largest difference from Python.
fn check_parity(name: &str, entry: &Value, model: &OnnxModel) -> f32 {
    assert_eq!(
        model.labels(),
        strings(&entry["labels"]).as_slice(),
        "{name}: label order"
    );
    let want: Vec<Vec<f32>> = entry["probabilities"]
        .as_array()
        .expect("probabilities")
        .iter()
        .map(floats)
        .collect();
    let cols = model.labels().len();

    let texts;
    let text_refs: Vec<&str>;
    let feats: Vec<Vec<f32>>;
    let flat: Vec<f32>;
    let batch = match model.input_kind() {
        InputKind::Text => {
            texts = strings(&entry["inputs"]);
            text_refs = texts.iter().map(String::as_str).collect();
            Inputs::Text(&text_refs)
        }
        InputKind::Features { width } => {
            feats = entry["inputs"]
                .as_array()
                .expect("inputs")
                .iter()
                .map(floats)
                .collect();
            flat = feats.concat();
            Inputs::Features { data: &flat, width }
        }
    };
    let rows = batch.rows();
    assert_eq!(rows, want.len());

    let mut max_diff = 0.0f32;
    let mut compare = |i: usize, got: &[f32], how: &str| {
        assert_eq!(got.len(), cols);
        assert_eq!(
            argmax(got),
            argmax(&want[i]),
            "{name} row {i} ({how}): top-1"
        );
        for (j, (&g, &w)) in got.iter().zip(&want[i]).enumerate() {
            let d = (g - w).abs();
            assert!(
                d <= TOLERANCE,
                "{name} row {i} col {j} ({how}): {g} vs Python {w}"
            );
            max_diff = max_diff.max(d);
        }
    };

    let mut out = Scores::default();
    model.run(&batch, &mut out).expect("batch run");
    assert_eq!((out.rows, out.cols), (rows, cols));
    for i in 0..rows {
        compare(i, out.row(i), "batch");
    }

    let mut one = Scores::default();
    for i in 0..rows {
        let single = match batch {
            Inputs::Text(t) => Inputs::Text(&t[i..i + 1]),
            Inputs::Features { data, width } => Inputs::Features {
                data: &data[i * width..(i + 1) * width],
                width,
            },
        };
        model.run(&single, &mut one).expect("single run");
        assert_eq!((one.rows, one.cols), (1, cols));
        compare(i, one.row(0), "alone");
    }
    max_diff
}

#[test]
fn every_fixture_matches_python_onnxruntime() {
    let doc = expected();
    let models = doc["models"].as_object().expect("models");
    assert_eq!(models.len(), 4);
    for (name, entry) in models {
        for name_bindings in [true, false] {
            let spec = spec_for(entry, name_bindings);
            let model = OnnxModel::load(&spec)
                .unwrap_or_else(|e| panic!("{name} (named bindings: {name_bindings}): {e}"));
            let diff = check_parity(name, entry, &model);
            eprintln!(
                "{name:<20} named bindings {name_bindings:<5}: max |diff| vs Python = {diff:.3e}"
            );
        }
    }
}

#[test]
fn features_model_reports_its_width() {
    let model = OnnxModel::load(&mlp_spec()).expect("load");
    assert_eq!(model.input_kind(), InputKind::Features { width: 6 });
}

#[test]
fn empty_batch_gives_empty_scores() {
    let model = OnnxModel::load(&mlp_spec()).expect("load");
    let mut out = Scores {
        rows: 9,
        cols: 9,
        data: vec![1.0; 81],
    };
    model
        .run(
            &Inputs::Features {
                data: &[],
                width: 6,
            },
            &mut out,
        )
        .expect("empty batch");
    assert_eq!((out.rows, out.cols, out.data.len()), (0, 4, 0));

    let entry = &expected()["models"]["tfidf_lr_zipmap"];
    let model = OnnxModel::load(&spec_for(entry, true)).expect("load");
    model
        .run(&Inputs::Text(&[]), &mut out)
        .expect("empty batch");
    assert_eq!((out.rows, out.cols, out.data.len()), (0, 5, 0));
}

#[test]
fn wrong_inputs_are_errors_not_panics() {
    let model = OnnxModel::load(&mlp_spec()).expect("load");
    let mut out = Scores::default();
    let err = model
        .run(
            &Inputs::Features {
                data: &[0.0; 5],
                width: 5,
            },
            &mut out,
        )
        .expect_err("width 5 into a width-6 model");
    assert!(matches!(err, RunError::BadInput(_)), "{err}");
    let err = model
        .run(&Inputs::Text(&["hello"]), &mut out)
        .expect_err("text into features");
    assert!(matches!(err, RunError::BadInput(_)), "{err}");
}

#[test]
fn nul_bytes_in_text_do_not_fail_the_batch() {
    let entry = &expected()["models"]["tfidf_lr_nozipmap"];
    let model = OnnxModel::load(&spec_for(entry, true)).expect("load");
    let mut out = Scores::default();
    model
        .run(&Inputs::Text(&["usb\0charger", "garden hose"]), &mut out)
        .expect("NUL in a row");
    assert_eq!(out.rows, 2);
}

#[test]
fn one_model_shared_by_threads_gives_the_same_answers() {
    let entry = &expected()["models"]["tfidf_lr_zipmap"];
    let model = OnnxModel::load(&spec_for(entry, false)).expect("load");
    let texts = strings(&entry["inputs"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut reference = Scores::default();
    model
        .run(&Inputs::Text(&refs), &mut reference)
        .expect("run");
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut out = Scores::default();
                for _ in 0..20 {
                    model.run(&Inputs::Text(&refs), &mut out).expect("run");
                    assert_eq!(out, reference);
                }
            });
        }
    });
}

#[test]
fn unknown_input_name_lists_the_real_inputs() {
    let mut spec = mlp_spec();
    spec.input = Some("pixels".into());
    match OnnxModel::load(&spec) {
        Err(LoadError::Binding { field, reason }) => {
            assert_eq!(field, "input");
            assert!(
                reason.contains("pixels") && reason.contains("'features'"),
                "{reason}"
            );
        }
        other => panic!("expected a binding error, got {:?}", other.err()),
    }
}

#[test]
fn unknown_output_name_lists_the_real_outputs() {
    let mut spec = mlp_spec();
    spec.output = Some("probs".into());
    match OnnxModel::load(&spec) {
        Err(LoadError::Binding { field, reason }) => {
            assert_eq!(field, "output");
            assert!(
                reason.contains("probs") && reason.contains("'logits'"),
                "{reason}"
            );
        }
        other => panic!("expected a binding error, got {:?}", other.err()),
    }
}

#[test]
fn feed_that_does_not_fit_the_input_type_is_a_binding_error() {
    let mut spec = mlp_spec();
    spec.feed = Feed::Text;
    match OnnxModel::load(&spec) {
        Err(LoadError::Binding { field, reason }) => {
            assert_eq!(field, "input");
            assert!(reason.contains("string tensor"), "{reason}");
        }
        other => panic!("expected a binding error, got {:?}", other.err()),
    }
    let entry = &expected()["models"]["tfidf_lr_nozipmap"];
    let mut spec = spec_for(entry, true);
    spec.feed = Feed::Features;
    assert!(matches!(
        OnnxModel::load(&spec),
        Err(LoadError::Binding { field: "input", .. })
    ));
}

#[test]
fn label_count_must_match_the_output_width() {
    let mut spec = mlp_spec();
    spec.labels = OnnxLabels::List(vec!["a".into(), "b".into(), "c".into()]);
    match OnnxModel::load(&spec) {
        Err(LoadError::Labels(reason)) => assert_eq!(
            reason,
            "labels file has 3 labels but output 'logits' has width 4"
        ),
        other => panic!("expected a labels error, got {:?}", other.err()),
    }
}

#[test]
fn zipmap_labels_must_match_the_keys_when_given() {
    let entry = &expected()["models"]["tfidf_lr_zipmap"];
    let mut spec = spec_for(entry, true);
    let mut labels = strings(&entry["labels"]);
    labels.reverse();
    spec.labels = OnnxLabels::List(labels.clone());
    // Same names in another order: accepted, columns follow the given list.
    let model = OnnxModel::load(&spec).expect("reordered labels");
    assert_eq!(model.labels(), labels.as_slice());
    labels[0] = "not_a_class".into();
    spec.labels = OnnxLabels::List(labels);
    assert!(matches!(OnnxModel::load(&spec), Err(LoadError::Labels(_))));
}

#[test]
fn missing_metadata_key_is_a_labels_error() {
    let entry = &expected()["models"]["mlp_probs"];
    let mut spec = spec_for(entry, true);
    spec.labels = OnnxLabels::Metadata {
        key: "classes".into(),
    };
    match OnnxModel::load(&spec) {
        Err(LoadError::Labels(reason)) => {
            assert!(
                reason.contains("classes") && reason.contains("labels"),
                "{reason}"
            )
        }
        other => panic!("expected a labels error, got {:?}", other.err()),
    }
}

#[test]
fn zipmap_labels_on_a_tensor_output_is_a_binding_error() {
    let mut spec = mlp_spec();
    spec.labels = OnnxLabels::ZipMap;
    assert!(matches!(
        OnnxModel::load(&spec),
        Err(LoadError::Binding {
            field: "output",
            ..
        })
    ));
}

#[test]
fn missing_model_file_is_an_io_error() {
    let mut spec = mlp_spec();
    spec.path = fixtures().join("no_such_model.onnx");
    assert!(matches!(OnnxModel::load(&spec), Err(LoadError::Io { .. })));
}

#[test]
fn missing_locale_is_reported_with_the_fix() {
    let spec = OnnxSpec {
        path: fixtures().join("needs_locale.onnx"),
        input: None,
        feed: Feed::Text,
        output: None,
        scores: ScoreKind::Probabilities,
        labels: OnnxLabels::List(vec!["a".into()]),
        intra_threads: 1,
    };
    match OnnxModel::load(&spec) {
        Err(err @ LoadError::Onnx { .. }) => {
            let msg = err.to_string();
            assert!(msg.contains("needs_locale.onnx"), "{msg}");
            assert!(msg.contains("model needs locale xx_XX.UTF-8"), "{msg}");
            assert!(
                msg.contains("locale-gen") && msg.contains("'locale': 'C'"),
                "{msg}"
            );
        }
        other => panic!("expected an ONNX load error, got {:?}", other.err()),
    }
}

const CHILD_ENV: &str = "LASTMILE_TEST_MISSING_ORT_CHILD";

/// Runs in a child process (the global environment is set once per process): with
/// ORT_DYLIB_PATH naming a file that does not exist, loading fails with instructions, twice, and
/// nothing panics or aborts.
#[test]
fn missing_library_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    for _ in 0..2 {
        match OnnxModel::load(&mlp_spec()) {
            Err(LoadError::OnnxRuntimeMissing(msg)) => {
                assert!(
                    msg.starts_with("ONNX Runtime library not found (looked in "),
                    "{msg}"
                );
                assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
                assert!(
                    msg.contains("run scripts/setup.sh, or set ORT_DYLIB_PATH"),
                    "{msg}"
                );
                println!("CHILD-OK: {msg}");
            }
            other => panic!("expected OnnxRuntimeMissing, got {:?}", other.err()),
        }
    }
}

#[test]
fn missing_library_is_an_error_with_instructions() {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "exact::onnx_parity::missing_library_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn model_with_a_fixed_batch_of_one_runs_row_by_row() {
    let entry = &expected()["models"]["mlp_float"];
    let mut spec = spec_for(entry, true);
    spec.path = fixtures().join("mlp_batch1.onnx");
    let model = OnnxModel::load(&spec).expect("load mlp_batch1");
    let diff = check_parity("mlp_batch1", entry, &model);
    eprintln!("mlp_batch1: max |diff| vs Python = {diff:.3e}");
}
