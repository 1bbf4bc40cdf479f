//! A member that fails, panics or runs out of its `timeout_ms` is left out of that item's vote:
//! the answer equals the ensemble's without it, to the bit, and says which member is missing and
//! why; `on_member_failure = "fail"`, `min_members` and `[quorum]` fail the request instead.

use std::sync::Arc;

use lastmile::ensemble::{Ensemble, ItemOptions};
use lastmile::proto::lastmile::v1 as pb;
use serde_json::{json, Value};

use super::{starter_keys, starter_with, starter_without};
use crate::support::client::{Answer, Missing};
use crate::support::runtimes::{Failing, Gate, Panicking, Stuck};
use crate::support::{json_item, proto_item, TestServer, PRODUCTS};

fn products() -> Vec<Value> {
    PRODUCTS
        .iter()
        .map(|(t, d)| json_item(&[("title", t), ("description", d)]))
        .collect()
}

/// The answers of the starter without `model`, as the compute pool gives them.
async fn without(server: &TestServer, dir: &std::path::Path, model: &str) -> Vec<Answer> {
    let manifest = starter_without(dir, model, "1");
    let ensemble = Arc::new(Ensemble::load(&manifest, 1).expect("the starter without it loads"));
    let items = products()
        .iter()
        .map(|o| {
            ensemble
                .item_from_json(o.as_object().unwrap(), ItemOptions::default())
                .unwrap()
        })
        .collect();
    let answers = server.answers_of(&ensemble, items).await;
    answers.iter().map(Answer::from_lib).collect()
}

/// POST /v1/predict with the products: the status and the answers.
async fn rest(server: &TestServer) -> (u16, Value) {
    server
        .post_json("/v1/predict", &json!({ "items": products() }))
        .await
}

/// The degraded answer's rankings equal `want`'s, and it names `model` as missing for `why`.
#[track_caller]
fn degraded_as(got: &[Answer], want: &[Answer], model: &str, why: &str) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.predictions, w.predictions, "the vote without {model}");
        assert_eq!(g.degraded.len(), 1, "{g:?}");
        let Missing { model: m, reason } = &g.degraded[0];
        assert_eq!(m, model);
        assert!(reason.contains(why), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_member_is_left_out_and_the_answer_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::builder()
        .wrap_models(|name, r| match name {
            "ft-ova" => Arc::new(Failing(r)),
            _ => r,
        })
        .start()
        .await;
    let want = without(&server, dir.path(), "ft-ova").await;

    let (status, body) = rest(&server).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<Answer> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(Answer::from_json)
        .collect();
    degraded_as(&got, &want, "ft-ova", "deliberately failing");

    let reply = server
        .own_client()
        .await
        .predict(pb::PredictRequest {
            items: PRODUCTS
                .iter()
                .map(|(t, d)| proto_item(&[("title", t), ("description", d)]))
                .collect(),
            ..Default::default()
        })
        .await
        .expect("gRPC answers degraded")
        .into_inner();
    let got: Vec<Answer> = reply.items.iter().map(Answer::from_proto).collect();
    degraded_as(&got, &want, "ft-ova", "deliberately failing");

    // The Open Inference Protocol carries it in the explanation: the whole answer.
    let (status, body) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({
                "parameters": {"explain": true},
                "inputs": [{"name": "title", "shape": [1, 1], "datatype": "BYTES",
                            "data": ["steel chef knife"]}]
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let explanation: Value =
        serde_json::from_str(body["outputs"][2]["data"][0].as_str().unwrap()).unwrap();
    assert_eq!(
        explanation["degraded"][0]["model"], "ft-ova",
        "{explanation}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_member_is_left_out_like_a_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::builder()
        .wrap_models(|name, r| match name {
            "tfidf-zipmap" => Arc::new(Panicking(r)),
            _ => r,
        })
        .start()
        .await;
    let want = without(&server, dir.path(), "tfidf-zipmap").await;
    let (status, body) = rest(&server).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<Answer> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(Answer::from_json)
        .collect();
    degraded_as(&got, &want, "tfidf-zipmap", "panicked while scoring");
    // The compute threads survived: an answer comes back whole when nothing else fails.
    let (status, _) = rest(&server).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_past_its_timeout_is_left_out_and_the_answer_does_not_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = starter_with(dir.path(), "ft-hs", "timeout_ms = 300");
    let gate = Gate::new();
    let held = Arc::clone(&gate);
    let server = TestServer::builder()
        .manifest(&manifest)
        .wrap_models(move |name, r| match name {
            "ft-hs" => Arc::new(Stuck(r, Arc::clone(&held))),
            _ => r,
        })
        .start()
        .await;
    let want = without(&server, dir.path(), "ft-hs").await;
    let (status, body) = rest(&server).await;
    assert_eq!(status, 200, "{body}");
    // Answered while ft-hs is still held at its gate: the answer did not wait for it.
    gate.holding(1).await;
    let got: Vec<Answer> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(Answer::from_json)
        .collect();
    degraded_as(
        &got,
        &want,
        "ft-hs",
        "no answer within its timeout_ms of 300 ms",
    );
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_member_failure_fails_the_request_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = starter_keys(dir.path(), "on_member_failure = \"fail\"", "");
    let server = TestServer::builder()
        .manifest(&manifest)
        .wrap_models(|name, r| match name {
            "ft-ova" => Arc::new(Failing(r)),
            _ => r,
        })
        .start()
        .await;
    let (status, body) = rest(&server).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "predict_failed");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("\"ft-ova\"") && error.contains("deliberately failing"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_members_or_too_few_of_a_group_fail_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("min_members = 7", "", "fewer than min_members = 7"),
        (
            "",
            "[quorum]\ndepartments = 2",
            "only 1 members of group \"departments\" answered an item, fewer than its quorum of 2",
        ),
    ];
    for (keys, tables, says) in cases {
        let manifest = starter_keys(dir.path(), keys, tables);
        let server = TestServer::builder()
            .manifest(&manifest)
            .wrap_models(|name, r| match name {
                "tfidf-zipmap" => Arc::new(Failing(r)),
                _ => r,
            })
            .start()
            .await;
        let (status, body) = rest(&server).await;
        assert_eq!(status, 500, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        assert!(error.contains("\"tfidf-zipmap\""), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_failures_are_counted_per_member() {
    // It reads the process's metrics: alone.
    let server = TestServer::builder()
        .wrap_models(|name, r| match name {
            "ft-ova" => Arc::new(Failing(r)),
            _ => r,
        })
        .exclusive()
        .start()
        .await;
    let sample = r#"lastmile_member_failures_total{model="ft-ova",reason="error"}"#;
    let before = value(&server.metrics().await, sample);
    let degraded = "lastmile_server_degraded_items_total";
    let degraded_before = value(&server.metrics().await, degraded);
    let (status, _) = rest(&server).await;
    assert_eq!(status, 200);
    let metrics = server.metrics().await;
    assert!(value(&metrics, sample) > before, "{metrics}");
    assert_eq!(
        value(&metrics, degraded) - degraded_before,
        4.0,
        "{metrics}"
    );
}

/// A sample's value in Prometheus text (0 when it is not there yet).
fn value(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn the_manifest_refuses_bad_failure_keys_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "on_member_failure = \"ignore\"",
            "",
            "on_member_failure",
            "\"degrade\" or \"fail\"",
        ),
        (
            "min_members = 0",
            "",
            "min_members",
            "between 1 and the 7 voting models",
        ),
        (
            "min_members = 8",
            "",
            "min_members",
            "between 1 and the 7 voting models",
        ),
        (
            "",
            "[quorum]\nnobody = 1",
            "quorum.nobody",
            "no voting model is in group",
        ),
        (
            "",
            "[quorum]\ndepartments = 3",
            "quorum.departments",
            "group's 2 members",
        ),
        (
            "on_member_failure = \"fail\"\nmin_members = 2",
            "",
            "",
            "apply to on_member_failure = \"degrade\" only",
        ),
    ];
    for (keys, tables, field, says) in cases {
        let manifest = starter_keys(dir.path(), keys, tables);
        let e = lastmile::ensemble::Manifest::load(&manifest).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(says), "{keys} {tables}: {text}");
        if !field.is_empty() {
            assert_eq!(e.field.as_deref(), Some(field), "{text}");
        }
    }
    let manifest = starter_with(dir.path(), "ft-ova", "timeout_ms = 0");
    let e = lastmile::ensemble::Manifest::load(&manifest).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("timeout_ms"), "{e}");
}
