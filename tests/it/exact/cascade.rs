//! Cascades answer exactly what they say: with every threshold at `inf` a cascaded starter
//! answers what the starter answers, to the bit; a first stage that always stops answers what an
//! ensemble of its members alone answers, with the rules; and `"cascade": false` is the full
//! ensemble whatever the thresholds.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::{starter_variant, titles, TestServer};

/// The starter with `[cascade]`: the fastText group first, the departments (ONNX) after it.
fn cascaded(dir: &Path, threshold: &str) -> PathBuf {
    starter_variant(dir, "c", |text| {
        format!(
            "{text}\n[cascade]\ntest = \"margin\"\n\n[[cascade.stage]]\nmembers = [\"fasttext\"]\n\
             threshold = {threshold}\n\n[[cascade.stage]]\nmembers = [\"departments\"]\n"
        )
    })
}

/// The starter with only its fastText members (the ONNX models and their group removed).
fn fasttext_only(dir: &Path) -> PathBuf {
    starter_variant(dir, "f", |text| {
        let kept: Vec<&str> = text
            .split("\n[[model]]\n")
            .filter(|m| !m.contains("kind = \"onnx\""))
            .collect();
        let text = kept.join("\n[[model]]\n");
        // The last ONNX model's entry carried the tables after it: put them back.
        let tail = &starter_tail();
        let text = match text.find("\n[vote]") {
            Some(_) => text,
            None => format!("{text}\n{tail}"),
        };
        text.replace(
            "[vote.groups.departments]\nstrategy = \"soft\"\nweight = 1.0\n",
            "",
        )
    })
}

/// The starter's tables after its models (`[vote]` on).
fn starter_tail() -> String {
    let text = std::fs::read_to_string(crate::support::starter()).unwrap();
    text[text.find("\n[vote]").unwrap()..].to_owned()
}

/// The answers of `manifest` to the fixtures' titles, each without its `cascade` report.
async fn answers(manifest: &Path, extra: Value) -> (Vec<Value>, Vec<Value>) {
    let server = TestServer::builder().manifest(manifest).start().await;
    let items: Vec<Value> = titles(60).iter().map(|t| json!({ "title": t })).collect();
    let mut body = json!({ "items": items, "top_k": 5 });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, body) = server.post_json("/v1/predict", &body).await;
    assert_eq!(status, 200, "{body}");
    let mut reports = Vec::new();
    let answers = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut a = a.clone();
            reports.push(
                a.as_object_mut()
                    .unwrap()
                    .remove("cascade")
                    .unwrap_or(Value::Null),
            );
            a
        })
        .collect();
    (answers, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_threshold_at_inf_answers_the_full_ensemble_to_the_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (full, _) = answers(&crate::support::starter(), json!({})).await;
    let (cascade, reports) = answers(&cascaded(dir.path(), "inf"), json!({})).await;
    assert_eq!(cascade, full);
    assert!(
        full.iter()
            .any(|a| a["rules_fired"].as_array().is_some_and(|r| !r.is_empty())),
        "some rule fired"
    );
    for r in &reports {
        assert_eq!(r["stage"], 2, "every item ran both stages: {r}");
        assert_eq!(r["members_run"], 7, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_stage_that_always_stops_answers_what_its_members_alone_answer() {
    let dir = tempfile::tempdir().unwrap();
    // A margin is never negative: a threshold of 0 stops every item after the first stage.
    let (first, reports) = answers(&cascaded(dir.path(), "0"), json!({})).await;
    let (alone, _) = answers(&fasttext_only(dir.path()), json!({})).await;
    assert_eq!(first.len(), alone.len());
    for (i, (c, a)) in first.iter().zip(&alone).enumerate() {
        // The rules ran on the first stage's vote as on the fastText ensemble's.
        assert_eq!(c["predictions"], a["predictions"], "item {i}");
        assert_eq!(c["abstained"], a["abstained"], "item {i}");
        assert_eq!(c["rules_fired"], a["rules_fired"], "item {i}");
        assert!(
            c["predictions"].as_array().is_some_and(|p| p.len() == 5),
            "{c}"
        );
    }
    for r in &reports {
        assert_eq!(r["stage"], 1, "{r}");
        assert_eq!(r["members_run"], 5, "{r}");
    }
    // Asked for the full ensemble, the same cascade answers what the starter answers.
    let (full, _) = answers(&crate::support::starter(), json!({})).await;
    assert_ne!(first, full, "the first stage alone answers differently");
    let (asked, _) = answers(&cascaded(dir.path(), "0"), json!({ "cascade": false })).await;
    assert_eq!(asked, full);
}
