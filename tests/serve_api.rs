//! lastmile's own API served for real, over REST (reqwest) and gRPC (tonic clients generated from
//! `proto/`): answers equal `Ensemble::predict` on both transports, batches, streams, explain,
//! candidate restriction, the ensemble description, malformed input, every limit and overload,
//! each refused with the same error kind on both transports.

mod serve_support;

use lastmile::ensemble::ItemOptions;
use lastmile::proto::lastmile::v1 as pb;
use lastmile::server::Limits;
use serde_json::{json, Value};
use serve_support::{answers_lib, json_item, proto_item, Answer, TestServer, PRODUCTS};
use tonic::Code;

fn products_json() -> Vec<Value> {
    PRODUCTS
        .iter()
        .map(|(t, d)| json_item(&[("title", t), ("description", d)]))
        .collect()
}

fn products_proto() -> Vec<pb::Item> {
    PRODUCTS
        .iter()
        .map(|(t, d)| proto_item(&[("title", t), ("description", d)]))
        .collect()
}

/// The `lastmile-error` kind a gRPC status carries.
fn kind(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("lastmile-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
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
    assert_eq!(body["ensemble"], json!({"name": "starter", "version": "1"}));
    let rest: Vec<Answer> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(Answer::from_json)
        .collect();
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
    let rest: Vec<Answer> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(Answer::from_json)
        .collect();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_with_a_clear_4xx() {
    let server = TestServer::start(Limits::default()).await;
    let cases: Vec<(&[u8], u16, &str, &str)> = vec![
        (b"{not json", 400, "bad_request", "malformed JSON"),
        (b"[1, 2]", 400, "bad_request", "malformed JSON"),
        (
            br#"{"itme": {}}"#,
            400,
            "bad_request",
            "unknown field `itme`",
        ),
        (br#"{}"#, 400, "bad_request", "exactly one of `item`"),
        (
            br#"{"item": {"title": "a"}, "items": []}"#,
            400,
            "bad_request",
            "exactly one of",
        ),
        (br#"{"items": []}"#, 400, "bad_request", "no items"),
        (
            br#"{"item": "knife"}"#,
            400,
            "bad_request",
            "malformed JSON",
        ),
        (
            br#"{"item": {"title": 7}}"#,
            422,
            "invalid_input",
            "item 0: field \"title\": expected a string",
        ),
        (
            br#"{"items": [{"title": "a"}, {"colour": "red"}]}"#,
            422,
            "invalid_input",
            "item 1: the item has none of the fields",
        ),
        (
            br#"{"item": {"title": "a"}, "top_k": -1}"#,
            400,
            "bad_request",
            "top_k",
        ),
    ];
    for (body, status, code, message) in cases {
        let (got, reply) = server.post_raw("/v1/predict", body.to_vec()).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(got, status, "{shown} -> {reply}");
        assert_eq!(reply["code"], code, "{shown} -> {reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(
            error.contains(message),
            "{shown}: {error:?} lacks {message:?}"
        );
    }

    let (status, body) = server.get("/v1/nope").await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "not_found"
    );
    let (status, body) = server.get("/v1/predict").await;
    assert_eq!(status, 405);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "method_not_allowed"
    );

    // The same bad item over gRPC: the same kind, as INVALID_ARGUMENT.
    let mut client = server.own_client().await;
    let status = client
        .predict(pb::PredictRequest {
            items: vec![
                proto_item(&[("title", "a")]),
                proto_item(&[("colour", "red")]),
            ],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(kind(&status), "invalid_input");
    assert!(status
        .message()
        .contains("item 1: the item has none of the fields"));
    let status = client
        .predict(pb::PredictRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(kind(&status), "bad_request");

    // Bytes that are not a PredictRequest at all.
    let status = raw_grpc_call(&server, "/lastmile.v1.Lastmile/Predict", vec![0xff; 16])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(kind(&status), "bad_request");
    assert!(status.message().contains("malformed message"), "{status:?}");

    // The server is still fine.
    let (status, _) = server
        .post_json("/v1/predict", &json!({"item": {"title": "knife"}}))
        .await;
    assert_eq!(status, 200);
}

/// Sends `payload` as the message of a unary gRPC call, bypassing protobuf encoding.
async fn raw_grpc_call(
    server: &TestServer,
    path: &'static str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(payload),
        http::uri::PathAndQuery::from_static(path),
        raw::RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

mod raw {
    //! A gRPC codec that sends and receives bytes as they are.
    use bytes::{Buf, BufMut};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    pub struct RawCodec;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawCodec;
        type Decoder = RawCodec;
        fn encoder(&mut self) -> RawCodec {
            RawCodec
        }
        fn decoder(&mut self) -> RawCodec {
            RawCodec
        }
    }

    impl Encoder for RawCodec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawCodec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            Ok(Some(bytes.to_vec()))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_is_refused_naming_its_flag_on_both_transports() {
    let limits = Limits {
        max_items_in_flight: 100,
        max_items_per_request: 3,
        max_field_bytes: 64,
        max_body_bytes: 4096,
    };
    let server = TestServer::start(limits).await;
    let mut client = server.own_client().await;

    // Items per request.
    let items: Vec<Value> = (0..4).map(|_| json_item(&[("title", "knife")])).collect();
    let (status, body) = server
        .post_json("/v1/predict", &json!({"items": items}))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "too_many_items");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("--max-items-per-request"));
    let status = client
        .predict(pb::PredictRequest {
            items: (0..4).map(|_| proto_item(&[("title", "knife")])).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(kind(&status), "too_many_items");
    assert!(status.message().contains("--max-items-per-request"));

    // Bytes per field.
    let long = "knife ".repeat(20);
    let (status, body) = server
        .post_json("/v1/predict", &json!({"item": {"title": long}}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "field_too_large");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("--max-field-bytes"));
    let status = client
        .predict(pb::PredictRequest {
            items: vec![proto_item(&[("title", &long)])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(kind(&status), "field_too_large");

    // Body size.
    let huge = json!({"item": {"title": "knife", "notes": "x".repeat(5000)}});
    let (status, body) = server.post_json("/v1/predict", &huge).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "body_too_large");
    assert!(body["error"].as_str().unwrap().contains("--max-body-bytes"));
    let mut big = proto_item(&[("title", "knife")]);
    big.fields.insert("notes".into(), "x".repeat(5000));
    let status = client
        .predict(pb::PredictRequest {
            items: vec![big],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(kind(&status), "body_too_large");
    assert!(status.message().contains("--max-body-bytes"));

    // Within every limit, all is well.
    let (status, _) = server
        .post_json(
            "/v1/predict",
            &json!({"items": [{"title": "knife"}, {"title": "shoe"}]}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_room_in_flight_every_transport_refuses_at_once() {
    let server = TestServer::start(Limits {
        max_items_in_flight: 0,
        ..Limits::default()
    })
    .await;
    let (status, body) = server
        .post_json("/v1/predict", &json!({"item": {"title": "knife"}}))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "overloaded");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("--max-items-in-flight"));

    let status = server
        .own_client()
        .await
        .predict(pb::PredictRequest {
            items: vec![proto_item(&[("title", "knife")])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(kind(&status), "overloaded");

    let (status, body) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({"inputs": [{"name": "title", "shape": [1], "datatype": "BYTES", "data": ["knife"]}]}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "overloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_new_work_and_finishes_what_it_admitted() {
    let server = TestServer::start_held(Limits {
        max_items_in_flight: 2,
        ..Limits::default()
    })
    .await;
    let hold = server.hold.clone().unwrap();
    let url = format!("{}/v1/predict", server.http);
    let first = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"items": [{"title": "knife"}, {"title": "shoes"}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    // Both places are taken once the first request is held.
    hold.held(1).await;
    assert_eq!(server.handle().state.admission.in_flight(), 2);
    let (status, body) = server
        .post_json("/v1/predict", &json!({"item": {"title": "hose"}}))
        .await;
    assert_eq!(status, 429, "{body}");
    let status = server
        .own_client()
        .await
        .predict(pb::PredictRequest {
            items: vec![proto_item(&[("title", "hose")])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    hold.release();
    assert_eq!(first.await.unwrap(), 200);
    let (status, _) = server
        .post_json("/v1/predict", &json!({"item": {"title": "hose"}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.handle().state.admission.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_top_k_is_capped_at_the_label_count() {
    let server = TestServer::start(Limits::default()).await;
    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({"item": {"title": "knife"}, "top_k": 1_000_000_000u64, "explain": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["item"]["predictions"].as_array().unwrap().len(), 15);
    let (status, body) = server
        .post_json(
            "/v2/models/starter/infer",
            &json!({"parameters": {"top_k": 1_000_000_000u64},
                    "inputs": [{"name": "title", "shape": [1], "datatype": "BYTES", "data": ["knife"]}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["shape"], json!([1, 15]));
}
