//! What the API refuses, and how: malformed requests, every limit, overload; the same error
//! kind on both transports, and nothing admitted ever lost.

use lastmile::service::Limits;
use serde_json::json;
use tonic::Code;

use super::*;
use crate::support::{Hold, TestServer};

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
        ..Limits::default()
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
    let hold = Hold::new();
    let server = TestServer::builder()
        .limits(Limits {
            max_items_in_flight: 2,
            ..Limits::default()
        })
        .hold_requests(&hold)
        .start()
        .await;
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
    assert_eq!(server.service().admission().in_flight(), 2);
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
    assert_eq!(server.service().admission().in_flight(), 0);
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
