//! What the API serves: answers equal to the ensemble's on both transports, single and batched,
//! streamed, explained, restricted to candidates; and the ensemble's description.

use lastmile::ensemble::ItemOptions;
use lastmile::service::Limits;
use serde_json::json;

use super::*;
use crate::support::client::answers_lib;
use crate::support::{Answer, TestServer};

/// The answers of a REST batch reply's `items`.
fn item_answers(body: &Value) -> Vec<Answer> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(Answer::from_json)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_and_single_answers_equal_the_ensemble_on_both_transports() {
    let server = TestServer::start(Limits::default()).await;
    let options = ItemOptions {
        top_k: 3,
        ..ItemOptions::default()
    };
    let expected = answers_lib(
        &server
            .expected(server.items(&products_json(), options.clone()))
            .await,
    );
    assert!(expected.iter().all(|a| a.predictions.len() == 3));

    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({"items": products_json(), "top_k": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let digest = server.live().digest.clone();
    assert_eq!(
        body["ensemble"],
        json!({"name": "starter", "version": "1", "digest": digest})
    );
    let rest = item_answers(&body);
    assert_eq!(rest, expected);

    let mut client = server.own_client().await;
    let reply = client
        .predict(pb::PredictRequest {
            items: products_proto(),
            top_k: 3,
            id: "batch-1".into(),
            ..Default::default()
        })
        .await
        .expect("gRPC Predict answers")
        .into_inner();
    assert_eq!(reply.id, "batch-1");
    let ensemble = reply.ensemble.as_ref().unwrap();
    assert_eq!(
        (ensemble.name.as_str(), ensemble.version.as_str()),
        ("starter", "1")
    );
    let grpc: Vec<Answer> = reply.items.iter().map(Answer::from_proto).collect();
    assert_eq!(grpc, expected);

    // One item: the reply mirrors the request with `item`.
    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({"item": products_json()[0], "top_k": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("items").is_none());
    assert_eq!(Answer::from_json(&body["item"]), expected[0]);
    // The knife rule of the starter manifest fired, and says so.
    assert_eq!(expected[0].rules_fired, vec!["knives".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_candidates_travel_both_transports() {
    let server = TestServer::start(Limits::default()).await;
    let candidates = vec!["apparel".to_owned(), "running_shoes".to_owned()];
    let options = ItemOptions {
        top_k: 2,
        candidates: Some(candidates.clone()),
        explain: true,
        ..ItemOptions::default()
    };
    let items = products_json();
    let expected = answers_lib(&server.expected(server.items(&items, options)).await);
    for answer in &expected {
        assert!(!answer.models.is_empty(), "explain gives each model's part");
        assert!(answer
            .predictions
            .iter()
            .all(|p| candidates.contains(&p.label)));
    }

    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({"items": items, "top_k": 2, "candidates": candidates, "explain": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rest = item_answers(&body);
    assert_eq!(rest, expected);

    let reply = server
        .own_client()
        .await
        .predict(pb::PredictRequest {
            items: products_proto(),
            top_k: 2,
            candidates: candidates.clone(),
            explain: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let grpc: Vec<Answer> = reply.items.iter().map(Answer::from_proto).collect();
    assert_eq!(grpc, expected);

    // An item's own candidates override the request's.
    let mut item = json_item(&[("title", "steel chef knife")]);
    item["candidates"] = json!(["electronics"]);
    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({"item": item, "candidates": candidates}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let labels: Vec<&str> = body["item"]["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["electronics"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_answers_every_message_in_order_and_survives_a_bad_one() {
    let server = TestServer::start(Limits::default()).await;
    let expected = answers_lib(
        &server
            .expected(server.items(&products_json(), ItemOptions::default()))
            .await,
    );
    let mut requests: Vec<pb::PredictRequest> = products_proto()
        .into_iter()
        .enumerate()
        .map(|(i, item)| pb::PredictRequest {
            items: vec![item],
            id: format!("m{i}"),
            ..Default::default()
        })
        .collect();
    // A message with an item that has no field the ensemble reads, in the middle.
    requests.insert(
        2,
        pb::PredictRequest {
            items: vec![proto_item(&[("colour", "red")])],
            id: "bad".into(),
            ..Default::default()
        },
    );
    let replies: Vec<pb::PredictResponse> = server
        .own_client()
        .await
        .predict_stream(tokio_stream::iter(requests))
        .await
        .expect("the stream opens")
        .into_inner()
        .collect_all()
        .await;
    let ids: Vec<&str> = replies.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "bad", "m2", "m3"]);
    let bad = replies[2]
        .error
        .as_ref()
        .expect("the bad message gets an error");
    assert_eq!(bad.code, "invalid_input");
    assert!(
        bad.message.contains("none of the fields"),
        "{}",
        bad.message
    );
    let good: Vec<Answer> = replies
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| Answer::from_proto(&r.items[0]))
        .collect();
    assert_eq!(good, expected);
}

/// Collects a response stream, which must end cleanly.
trait CollectAll<T> {
    async fn collect_all(self) -> Vec<T>;
}

impl<T> CollectAll<T> for tonic::Streaming<T> {
    async fn collect_all(mut self) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(message) = self.message().await.expect("the stream ends cleanly") {
            out.push(message);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ensemble_description_is_one_document_on_both_transports() {
    let server = TestServer::start(Limits::default()).await;
    let (status, text) = server.get("/v1/ensemble").await;
    assert_eq!(status, 200);
    let rest: Value = serde_json::from_str(&text).unwrap();
    let grpc = server
        .own_client()
        .await
        .get_ensemble(pb::GetEnsembleRequest {})
        .await
        .unwrap()
        .into_inner();
    let grpc: Value = serde_json::from_str(&serde_json::to_string(&grpc).unwrap()).unwrap();
    assert_eq!(rest, grpc);

    assert_eq!(rest["name"], "starter");
    assert_eq!(rest["version"], "1");
    assert_eq!(rest["fields"], json!(["title", "description"]));
    assert_eq!(rest["label_count"], 15);
    let models = rest["models"].as_array().unwrap();
    assert_eq!(models.len(), 7);
    for m in models {
        assert_eq!(m["sha256"].as_str().unwrap().len(), 64);
        assert!(m["bytes"].as_u64().unwrap() > 0);
        assert!(m["labels"].as_u64().unwrap() > 0);
        assert!(["fasttext", "onnx"].contains(&m["kind"].as_str().unwrap()));
    }
    assert_eq!(rest["vote"]["strategy"], "soft");
    assert_eq!(rest["vote"]["groups"].as_array().unwrap().len(), 2);
    assert_eq!(
        rest["vote"]["rules"],
        json!([{"type": "keyword", "name": "knives"}])
    );
}
