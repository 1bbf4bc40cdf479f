//! What operators and generic tools rely on: gRPC health (`grpc.health.v1`), server reflection
//! (what grpcurl uses without proto files), Prometheus metrics with the documented names, and an
//! OpenAPI document whose routes all answer and whose references all resolve.

use crate::support::{proto_item, TestServer};
use lastmile::proto::lastmile::v1 as pb;
use lastmile::service::Limits;
use serde_json::{json, Value};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_for_the_server_and_each_service() {
    let server = TestServer::start(Limits::default()).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "lastmile.v1.Lastmile", "inference.GRPCInferenceService"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_the_services() {
    let server = TestServer::start(Limits::default()).await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "inference.GRPCInferenceService".into(),
            )),
        },
    ];
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("a list of services first");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "lastmile.v1.Lastmile",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("the file holding the V2 service");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_documented_names_and_labels() {
    // The process has one metrics recorder: no other test's server runs meanwhile.
    let server = TestServer::builder().exclusive().start().await;
    let (status, _) = server
        .post_json(
            "/v1/predict",
            &json!({"item": {"title": "steel chef knife"}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server.post_raw("/v1/predict", b"nope".to_vec()).await;
    assert_eq!(status, 400);
    server
        .own_client()
        .await
        .predict(pb::PredictRequest {
            items: vec![proto_item(&[("title", "running shoes")])],
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"lastmile_server_requests_total{method="POST /v1/predict",code="ok"}"#,
        r#"lastmile_server_requests_total{method="POST /v1/predict",code="bad_request"}"#,
        r#"lastmile_server_requests_total{method="/lastmile.v1.Lastmile/Predict",code="ok"}"#,
        r#"lastmile_server_request_duration_seconds_bucket{method="POST /v1/predict",le="+Inf"}"#,
        r#"lastmile_model_run_duration_seconds_bucket{model="ft-softmax",le="+Inf"}"#,
        r#"lastmile_model_run_duration_seconds_count{model="tfidf-zipmap"}"#,
        "lastmile_server_items_in_flight ",
        "lastmile_server_items_total ",
        "lastmile_ensemble_models_loaded 7",
        r#"lastmile_ensemble_info{name="starter",version="1"} 1"#,
    ] {
        assert!(text.contains(line), "/metrics lacks {line}:\n{text}");
    }
    // An unknown route is counted, but not as a label of its own.
    let _ = server.get("/no/such/path/123").await;
    let (_, text) = server.get("/metrics").await;
    assert!(text.contains(r#"method="unmatched",code="not_found""#));
    assert!(!text.contains("/no/such/path/123"));
}

/// Every `$ref` in `value` names a schema of `doc`.
fn check_refs(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unexpected $ref {r}"));
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "dangling $ref {r}"
                );
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let server = TestServer::start(Limits::default()).await;
    let (status, text) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    check_refs(&doc, &doc);
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/predict",
        "/v1/ensemble",
        "/metrics",
        "/openapi.json",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model}",
        "/v2/models/{model}/ready",
        "/v2/models/{model}/config",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/stats",
        "/v2/models/stats",
        "/v2/repository/index",
    ] {
        assert!(paths.contains_key(route), "{route} is documented");
    }
    // Every documented GET answers 200, every documented POST exists (a body that is not JSON is
    // a 400 from the handler, not a 404 or 405).
    for (route, ops) in paths {
        let path = route.replace("{model}", "starter");
        if ops.get("get").is_some() {
            assert_eq!(server.get(&path).await.0, 200, "GET {path}");
        }
        if ops.get("post").is_some() {
            let (status, body) = server.post_raw(&path, b"{".to_vec()).await;
            assert_eq!(status, 400, "POST {path}: {body}");
        }
    }
    // The documented error codes are the ones the server uses.
    let codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap();
    assert!(codes.contains(&json!("overloaded")) && codes.contains(&json!("too_many_items")));
}
