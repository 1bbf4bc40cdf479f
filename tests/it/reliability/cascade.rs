//! A cascade never loses an item: a failing member of a later stage degrades the items that
//! reach it exactly as it does without a cascade (or fails them, with `"fail"`); a request whose
//! deadline passes during its first stage never has its later stages queued; and a bad
//! `[cascade]` table is refused with its place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::starter_keys;
use crate::support::runtimes::{Counting, Failing, Gate, Stuck};
use crate::support::{starter_variant, titles, TestServer};

/// The starter with a two-stage cascade (its fastText group, then its departments), top-level
/// `keys` added, and `threshold` on the first stage.
fn cascaded(dir: &Path, version: &str, keys: &str, threshold: &str) -> PathBuf {
    starter_variant(dir, version, |text| {
        format!(
            "{keys}\n{text}\n[cascade]\n\n[[cascade.stage]]\nmembers = [\"fasttext\"]\n\
             threshold = {threshold}\n\n[[cascade.stage]]\nmembers = [\"departments\"]\n"
        )
    })
}

/// POST /v1/predict with 30 titles: the status and the body, the answers without their
/// `cascade` report.
async fn predict(server: &TestServer) -> (u16, Value) {
    let items: Vec<Value> = titles(30).iter().map(|t| json!({ "title": t })).collect();
    let (status, mut body) = server
        .post_json("/v1/predict", &json!({ "items": items, "top_k": 5 }))
        .await;
    if let Some(items) = body["items"].as_array_mut() {
        for a in items {
            a.as_object_mut().unwrap().remove("cascade");
        }
    }
    (status, body)
}

fn failing_zipmap(
    name: &str,
    r: Arc<dyn lastmile::runtime::Runtime>,
) -> Arc<dyn lastmile::runtime::Runtime> {
    match name {
        "tfidf-zipmap" => Arc::new(Failing(r)),
        _ => r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_member_of_a_later_stage_degrades_as_without_a_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let plain = TestServer::builder()
        .wrap_models(failing_zipmap)
        .start()
        .await;
    let (status, want) = predict(&plain).await;
    assert_eq!(status, 200, "{want}");
    assert!(
        want["items"][0]["degraded"][0]["model"] == "tfidf-zipmap",
        "the plain starter degrades: {want}"
    );
    let manifest = cascaded(dir.path(), "c", "", "inf");
    let server = TestServer::builder()
        .manifest(&manifest)
        .wrap_models(failing_zipmap)
        .start()
        .await;
    let (status, got) = predict(&server).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["items"], want["items"]);

    // With "fail", the item that reaches the failing stage fails the request, naming the member.
    let manifest = cascaded(dir.path(), "f", "on_member_failure = \"fail\"", "inf");
    let server = TestServer::builder()
        .manifest(&manifest)
        .wrap_models(failing_zipmap)
        .start()
        .await;
    let (status, body) = predict(&server).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "predict_failed");
    assert!(
        body["error"].as_str().unwrap().contains("\"tfidf-zipmap\""),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passed_in_the_first_stage_never_queues_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = cascaded(dir.path(), "d", "", "inf");
    let gate = Gate::new();
    let rows = Arc::new(AtomicUsize::new(0));
    let (g, r) = (Arc::clone(&gate), Arc::clone(&rows));
    let server = TestServer::builder()
        .manifest(&manifest)
        .threads(2)
        .wrap_models(move |name, m| match name {
            "ft-ova" => Arc::new(Stuck(m, Arc::clone(&g))),
            "tfidf-zipmap" | "tfidf-labels-file" => Arc::new(Counting(m, Arc::clone(&r))),
            _ => m,
        })
        .start()
        .await;
    let body = json!({"item": {"title": "steel chef knife"}, "timeout_ms": 300});
    let (status, refused) = server.post_json("/v1/predict", &body).await;
    assert_eq!(status, 504, "{refused}");
    assert_eq!(refused["code"], "deadline_exceeded");
    gate.holding(1).await;
    gate.open();
    // The next request runs both stages (its second stage: one row on each ONNX member); the
    // first one's second stage was never queued, so it adds nothing.
    let (status, answer) = server
        .post_json(
            "/v1/predict",
            &json!({"item": {"title": "steel chef knife"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["item"]["cascade"]["stage"], 2, "{answer}");
    assert_eq!(rows.load(Ordering::SeqCst), 2);
}

#[test]
fn a_bad_cascade_table_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let stage = |members: &str, threshold: &str| {
        format!("[[cascade.stage]]\nmembers = [{members}]\n{threshold}\n")
    };
    let cases = [
        (
            "[cascade]\ntest = \"margin\"\n".to_owned(),
            "cascade.stage",
            "at least one [[cascade.stage]]",
        ),
        (
            format!(
                "[cascade]\n{}{}",
                stage("\"fasttext\", \"nobody\"", "threshold = 0.5"),
                stage("\"departments\"", "")
            ),
            "cascade.stage[0].members",
            "\"nobody\" is neither a model nor a group",
        ),
        (
            format!(
                "[cascade]\n{}{}",
                stage("\"fasttext\"", "threshold = 0.5"),
                stage("\"departments\", \"ft-ova\"", "")
            ),
            "cascade.stage[1].members",
            "model \"ft-ova\" is already in stage 0",
        ),
        (
            format!(
                "[cascade]\n{}{}",
                stage("\"fasttext\"", "threshold = 0.5"),
                stage("\"departments\"", "threshold = 0.5")
            ),
            "cascade.stage[1].threshold",
            "takes no threshold",
        ),
        (
            format!(
                "[cascade]\n{}{}",
                stage("\"fasttext\"", ""),
                stage("\"departments\"", "")
            ),
            "cascade.stage[0].threshold",
            "needs a threshold",
        ),
        (
            format!(
                "[cascade]\n{}{}",
                stage("\"fasttext\"", "threshold = 0.5"),
                stage("\"tfidf-zipmap\"", "")
            ),
            "cascade.stage",
            "model \"tfidf-labels-file\" is in no stage",
        ),
        (
            format!(
                "[cascade]\ntest = \"entropy\"\n{}{}",
                stage("\"fasttext\"", "threshold = 0.5"),
                stage("\"departments\"", "")
            ),
            "",
            "entropy",
        ),
    ];
    for (tables, field, says) in cases {
        let manifest = starter_keys(dir.path(), "", &tables);
        let e = lastmile::ensemble::Manifest::load(&manifest).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(says), "{tables}: {text}");
        if !field.is_empty() {
            assert_eq!(e.field.as_deref(), Some(field), "{tables}: {text}");
        }
    }
}
