//! Parity with official fastText 0.9.3. Every model in `tests/fixtures/fasttext` is scored on every
//! query that `scripts/fixtures/make_fasttext_fixtures.py` recorded with the official tool
//! (`expected.json`: all labels, best first, prefix stripped, probabilities exactly as fastText
//! reports them, i.e. `exp(log(p + 1e-5))`). Each model runs the queries one row at a time and all
//! in one batch; both must give the official top 5 in order and every score within 1e-5.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lastmile::runtime::{fasttext::FastTextModel, Inputs, Runtime, Scores};
use serde_json::Value;

/// Largest allowed difference between our score and official fastText's, for every label.
const SCORE_TOL: f64 = 1e-5;
/// Official scores closer than this are a tie: their order in the top 5 is free.
const TIE_TOL: f64 = 1e-6;
/// How many leading labels must come out in the official order.
const TOP_K: usize = 5;
/// Hierarchical softmax's tree search drops leaves scoring below log(1e-5), so official output
/// can lack labels; ours must then be at most this (plus `SCORE_TOL`).
const HS_FLOOR: f64 = 1e-5;
/// Mismatches listed in one failure message before the rest are only counted.
const MAX_REPORTED: usize = 25;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fasttext")
}

fn read_json(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One recorded query: the text and official fastText's `(label, probability)` list, best first.
struct Case {
    text: String,
    official: Vec<(String, f64)>,
}

fn cases(model_file: &str) -> Vec<Case> {
    let expected = read_json("expected.json");
    let rows = expected[model_file]
        .as_array()
        .unwrap_or_else(|| panic!("expected.json has no entry for {model_file}"));
    rows.iter()
        .map(|row| Case {
            text: row["text"].as_str().expect("text is a string").to_owned(),
            official: row["predictions"]
                .as_array()
                .expect("predictions is an array")
                .iter()
                .map(|p| {
                    let label = p[0].as_str().expect("label is a string").to_owned();
                    let prob = p[1].as_f64().expect("probability is a number");
                    (label, prob)
                })
                .collect(),
        })
        .collect()
}

/// The model's labels as official fastText lists them (dictionary order, prefix stripped).
fn official_labels(model_file: &str) -> Vec<String> {
    let meta = read_json("models.json");
    meta[model_file]["labels"]
        .as_array()
        .unwrap_or_else(|| panic!("models.json has no labels for {model_file}"))
        .iter()
        .map(|l| l.as_str().expect("label is a string").to_owned())
        .collect()
}

/// A query as shown in failure messages: escaped, and cut when long.
fn show(text: &str) -> String {
    let shown: String = text.chars().take(60).collect();
    if shown.len() < text.len() {
        format!("{shown:?}… ({} chars)", text.chars().count())
    } else {
        format!("{shown:?}")
    }
}

/// Compares one row of our scores with official output; appends each mismatch to `errors`.
fn compare_row(mode: &str, case: &Case, labels: &[String], ours: &[f32], errors: &mut Vec<String>) {
    let query = show(&case.text);
    let official: HashMap<&str, f64> = case
        .official
        .iter()
        .map(|(l, p)| (l.as_str(), *p))
        .collect();
    let ours_by_label: HashMap<&str, f64> = labels
        .iter()
        .zip(ours)
        .map(|(l, &s)| (l.as_str(), f64::from(s)))
        .collect();

    // Every label's score.
    for (label, &score) in &ours_by_label {
        if !score.is_finite() {
            errors.push(format!("{mode} {query}: label {label}: ours is {score}"));
            continue;
        }
        match official.get(label) {
            Some(&want) if (score - want).abs() > SCORE_TOL => errors.push(format!(
                "{mode} {query}: label {label}: ours {score:.8} vs official {want:.8} (diff {:+.2e})",
                score - want
            )),
            Some(_) => {}
            None if score > HS_FLOOR + SCORE_TOL => errors.push(format!(
                "{mode} {query}: label {label}: ours {score:.8}, official fastText prunes it \
                 (below {HS_FLOOR:e})"
            )),
            None => {}
        }
    }
    for (label, _) in &case.official {
        if !ours_by_label.contains_key(label.as_str()) {
            errors.push(format!(
                "{mode} {query}: official label {label} missing from labels()"
            ));
        }
    }

    // The top 5 in order; a swap is fine only between labels official fastText scores as tied.
    let mut ranked: Vec<(&str, f64)> = ours_by_label.iter().map(|(l, s)| (*l, *s)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let k = TOP_K.min(case.official.len());
    for (i, ((want_label, want_score), (got_label, got_score))) in
        case.official.iter().zip(&ranked).take(k).enumerate()
    {
        if want_label == got_label {
            continue;
        }
        let got_official = official.get(got_label).copied().unwrap_or(0.0);
        if (got_official - want_score).abs() > TIE_TOL {
            let ours_top: Vec<String> = ranked
                .iter()
                .take(k)
                .map(|(l, s)| format!("{l}={s:.6}"))
                .collect();
            let official_top: Vec<String> = case
                .official
                .iter()
                .take(k)
                .map(|(l, s)| format!("{l}={s:.6}"))
                .collect();
            errors.push(format!(
                "{mode} {query}: rank {}: ours {got_label} ({got_score:.8}) vs official \
                 {want_label} ({want_score:.8})\n      ours top:     {}\n      official top: {}",
                i + 1,
                ours_top.join(" "),
                official_top.join(" "),
            ));
            break;
        }
    }
}

/// Loads one fixture model and checks it against every recorded query, row by row and batched.
fn check_model(model_file: &str) {
    let path = fixture_dir().join(model_file);
    let model =
        FastTextModel::load(&path).unwrap_or_else(|e| panic!("{model_file}: load failed: {e}"));
    let cases = cases(model_file);
    assert!(!cases.is_empty(), "{model_file}: no recorded queries");

    // Labels: the same set as official fastText, prefix stripped, no duplicates.
    let labels = model.labels().to_vec();
    let ours: HashSet<&str> = labels.iter().map(String::as_str).collect();
    let official = official_labels(model_file);
    let theirs: HashSet<&str> = official.iter().map(String::as_str).collect();
    assert_eq!(
        ours.len(),
        labels.len(),
        "{model_file}: duplicate labels in {labels:?}"
    );
    assert_eq!(
        ours, theirs,
        "{model_file}: labels() differ from official fastText's"
    );

    let mut errors = Vec::new();

    // One row at a time.
    let mut out = Scores::default();
    for case in &cases {
        let rows = [case.text.as_str()];
        if let Err(e) = model.run(&Inputs::Text(&rows), &mut out) {
            errors.push(format!("single {}: run failed: {e}", show(&case.text)));
            continue;
        }
        assert_eq!(
            (out.rows, out.cols),
            (1, labels.len()),
            "{model_file}: single {}: output shape",
            show(&case.text)
        );
        compare_row("single", case, &labels, out.row(0), &mut errors);
    }

    // All queries as one batch, into a buffer that already holds something else.
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let mut out = Scores {
        rows: 1,
        cols: 3,
        data: vec![f32::NAN; 3],
    };
    match model.run(&Inputs::Text(&texts), &mut out) {
        Err(e) => errors.push(format!("batch of {}: run failed: {e}", texts.len())),
        Ok(()) => {
            assert_eq!(
                (out.rows, out.cols),
                (texts.len(), labels.len()),
                "{model_file}: batch output shape"
            );
            for (i, case) in cases.iter().enumerate() {
                compare_row("batch ", case, &labels, out.row(i), &mut errors);
            }
        }
    }

    if !errors.is_empty() {
        let mut msg = format!(
            "{model_file}: {} mismatches with official fastText 0.9.3 (tolerance {SCORE_TOL:e}; \
             a constant offset of 1e-5 means fastText's `+ 1e-5` smoothing is missing):\n",
            errors.len()
        );
        for e in errors.iter().take(MAX_REPORTED) {
            writeln!(msg, "  {e}").unwrap();
        }
        if errors.len() > MAX_REPORTED {
            writeln!(msg, "  … and {} more", errors.len() - MAX_REPORTED).unwrap();
        }
        panic!("{msg}");
    }
}

#[test]
fn softmax_bin() {
    check_model("softmax.bin");
}

#[test]
fn ova_bin() {
    check_model("ova.bin");
}

#[test]
fn hs_bin() {
    check_model("hs.bin");
}

#[test]
fn ngrams_subwords_bin() {
    check_model("ngrams_subwords.bin");
}

#[test]
fn quantized_ftz() {
    check_model("quantized.ftz");
}

#[test]
fn quantized_hs_ftz() {
    check_model("quantized_hs.ftz");
}

#[test]
fn quantized_cutoff_ftz() {
    check_model("quantized_cutoff.ftz");
}

/// Every model file in the fixture folder has recorded answers and a test above.
#[test]
fn every_fixture_model_is_covered() {
    const TESTED: &[&str] = &[
        "softmax.bin",
        "ova.bin",
        "hs.bin",
        "ngrams_subwords.bin",
        "quantized.ftz",
        "quantized_hs.ftz",
        "quantized_cutoff.ftz",
    ];
    let expected = read_json("expected.json");
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".bin") || n.ends_with(".ftz"))
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = TESTED.iter().map(|s| s.to_string()).collect();
    tested.sort();
    assert_eq!(
        on_disk, tested,
        "fixture models on disk vs models with a parity test"
    );
    for name in TESTED {
        let rows = expected[*name].as_array().map_or(0, Vec::len);
        assert!(rows > 0, "expected.json has no queries for {name}");
    }
}
