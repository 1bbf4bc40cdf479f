//! The V2 extensions Triton's clients call: the model repository index (over HTTP and gRPC on
//! the serving port; load and unload on the admin listener only, behind its token, through the
//! deploy path and its gate) and the statistics extension (per ensemble and per member, success
//! and failure counts and cumulative times), checked against the requests the test sent, with
//! tonic, reqwest and Triton's own Python client.

use std::path::Path;
use std::process::Command;

use lastmile::monitor::live::MonitorSettings;
use lastmile::proto::inference as v2pb;
use serde_json::{json, Value};

use crate::support::{starter_variant, AdminOptions, TestServer};

fn quiet() -> MonitorSettings {
    // The live monitor's re-scoring is its own work, never counted; off keeps the numbers plain.
    MonitorSettings {
        fraction: 0.0,
        ..MonitorSettings::default()
    }
}

fn infer_body(n: usize) -> Value {
    let data: Vec<String> = (0..n).map(|i| format!("steel chef knife {i}")).collect();
    json!({"inputs": [{"name": "title", "datatype": "BYTES", "shape": [n, 1], "data": data}]})
}

fn count(v: &Value, what: &str) -> u64 {
    v["inference_stats"][what]["count"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_every_request_per_ensemble_and_per_member() {
    let server = TestServer::builder().monitor(quiet()).start().await;
    let models: Vec<String> = server
        .live()
        .models
        .iter()
        .map(|m| m.spec.name.clone())
        .collect();
    // 3 REST requests of 2 items, 1 gRPC request of 4, 1 own-API request of 1, 1 refused.
    for _ in 0..3 {
        let (code, v) = server
            .post_json("/v2/models/starter/infer", &infer_body(2))
            .await;
        assert_eq!(code, 200, "{v}");
    }
    let mut grpc = v2pb::grpc_inference_service_client::GrpcInferenceServiceClient::new(
        server.channel().await,
    );
    let titles: Vec<Vec<u8>> = (0..4).map(|i| format!("mug {i}").into_bytes()).collect();
    grpc.model_infer(v2pb::ModelInferRequest {
        model_name: "starter".into(),
        inputs: vec![v2pb::model_infer_request::InferInputTensor {
            name: "title".into(),
            datatype: "BYTES".into(),
            shape: vec![4, 1],
            contents: Some(v2pb::InferTensorContents {
                bytes_contents: titles,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
    .await
    .expect("the gRPC inference answers");
    let (code, _) = server
        .post_json("/v1/predict", &json!({"item": {"title": "knife"}}))
        .await;
    assert_eq!(code, 200);
    let (code, _) = server
        .post_json("/v1/predict", &json!({"item": {"colour": "red"}}))
        .await;
    assert_eq!(code, 422);

    let (code, body) = server.get("/v2/models/starter/stats").await;
    assert_eq!(code, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    let entries = stats["model_stats"].as_array().unwrap();
    assert_eq!(entries.len(), 1 + models.len(), "{stats}");
    let e = &entries[0];
    assert_eq!(
        (e["name"].as_str(), e["version"].as_str()),
        (Some("starter"), Some("1"))
    );
    assert_eq!(count(e, "success"), 5, "{e}");
    assert_eq!(count(e, "fail"), 1, "{e}");
    assert_eq!(e["inference_count"], 3 * 2 + 4 + 1);
    assert_eq!(e["execution_count"], 5);
    assert!(e["inference_stats"]["success"]["ns"].as_u64().unwrap() > 0);
    assert!(e["last_inference"].as_u64().unwrap() > 0);
    for (entry, name) in entries[1..].iter().zip(&models) {
        assert_eq!(entry["name"], name.as_str());
        // Every member scored every item of every served request, in one run per request at
        // least (requests may share a batch).
        assert_eq!(entry["inference_count"], 11, "{entry}");
        assert_eq!(count(entry, "success"), 5, "{entry}");
        assert_eq!(count(entry, "fail"), 0, "{entry}");
        let runs = entry["execution_count"].as_u64().unwrap();
        assert!((1..=5).contains(&runs), "{entry}");
        assert!(count(entry, "compute_infer") == 5, "{entry}");
    }

    // gRPC says the same, in Triton's protobuf shape.
    let reply = grpc
        .model_statistics(v2pb::ModelStatisticsRequest {
            name: "starter".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.model_stats.len(), 1 + models.len());
    let e = &reply.model_stats[0];
    let s = e.inference_stats.as_ref().unwrap();
    assert_eq!((s.success.unwrap().count, s.fail.unwrap().count), (5, 1));
    assert_eq!((e.inference_count, e.execution_count), (11, 5));
    // One member by its name; an unknown name is 404 / NOT_FOUND.
    let (code, body) = server.get(&format!("/v2/models/{}/stats", models[0])).await;
    assert_eq!(code, 200, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["model_stats"].as_array().unwrap().len(), 1);
    assert_eq!(server.get("/v2/models/nope/stats").await.0, 404);
    let missing = grpc
        .model_statistics(v2pb::ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_index_lists_what_is_held_and_load_unload_are_admin_calls() {
    let dir = tempfile::tempdir().unwrap();
    let next = starter_variant(dir.path(), "2", |t| t);
    let admin = AdminOptions {
        token: Some("s3cret".into()),
        ..AdminOptions::default()
    };
    let server = TestServer::builder()
        .admin(admin)
        .monitor(quiet())
        .start()
        .await;
    let (code, v) = server.post_raw("/v2/repository/index", Vec::new()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v,
        json!([{"name": "starter", "version": "1", "state": "READY"}])
    );
    // serde would read the request's all-default fields from an array: refused.
    let (code, v) = server
        .post_raw("/v2/repository/index", b"[]".to_vec())
        .await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("JSON object"), "{v}");
    let mut grpc = v2pb::grpc_inference_service_client::GrpcInferenceServiceClient::new(
        server.channel().await,
    );
    let index = grpc
        .repository_index(v2pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(index.models.len(), 1);
    assert_eq!(
        (
            index.models[0].name.as_str(),
            index.models[0].state.as_str()
        ),
        ("starter", "READY")
    );

    // Load and unload are not on the serving port, over gRPC either: refused, naming the route.
    let refused = grpc
        .repository_model_load(v2pb::RepositoryModelLoadRequest {
            model_name: "starter".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("/v2/repository/models/starter/load on the admin listener"),
        "{refused:?}"
    );
    let refused = grpc
        .repository_model_unload(v2pb::RepositoryModelUnloadRequest {
            model_name: "starter".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
    assert!(refused.message().contains("unload"), "{refused:?}");
    // Load is not on the serving port.
    let load = json!({"parameters": {"manifest": next.to_str().unwrap()}});
    let (code, _) = server
        .post_json("/v2/repository/models/starter/load", &load)
        .await;
    assert_eq!(code, 404);
    // On the admin listener: the token, then the deploy path.
    let path = "/v2/repository/models/starter/load";
    let (code, _) = server
        .admin_as(None, "POST", path, Some(load.clone()))
        .await;
    assert_eq!(code, 401);
    let (code, v) = server.admin("POST", path, Some(json!({}))).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("parameters.manifest"),
        "{v}"
    );
    let (code, v) = server
        .admin(
            "POST",
            "/v2/repository/models/other/load",
            Some(load.clone()),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = server.admin("POST", path, Some(load)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["outcome"], "promoted", "{v}");
    assert_eq!(server.live().version, "2");
    let (_, v) = server.post_json("/v2/repository/index", &json!({})).await;
    let states: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["version"].as_str().unwrap().into(),
                e["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("2".into(), "READY".into()),
            ("1".into(), "UNAVAILABLE".into())
        ]
    );
    let (_, ready) = server
        .post_json("/v2/repository/index", &json!({"ready": true}))
        .await;
    assert_eq!(ready.as_array().unwrap().len(), 1);
    // Unloading the live ensemble is refused; the previous one is released.
    let unload = "/v2/repository/models/starter/unload";
    let (code, v) = server.admin("POST", unload, None).await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("always serves one ensemble"),
        "{v}"
    );
    let (code, v) = server
        .admin("POST", "/v2/repository/models/nope/unload", None)
        .await;
    assert_eq!(code, 404, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_reads_the_index_and_statistics_over_http_and_grpc() {
    let Some(python) = std::env::var_os("LASTMILE_TRITONCLIENT_PYTHON") else {
        eprintln!(
            "skipped: set LASTMILE_TRITONCLIENT_PYTHON to a Python with tritonclient[grpc,http]"
        );
        return;
    };
    let server = TestServer::builder().monitor(quiet()).start().await;
    let members = server.live().models.len();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tritonclient_extensions.py");
    let http = server.app.http_addr.to_string();
    let grpc = server.app.grpc_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["--http", &http, "--grpc", &grpc, "--model", "starter"])
            .args([
                "--http-requests",
                "3",
                "--grpc-requests",
                "2",
                "--items",
                "2",
            ])
            .output()
            .expect("the Python interpreter starts")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["http_index"][0]["name"], "starter", "{v}");
    assert_eq!(v["http_index"][0]["state"], "READY", "{v}");
    assert_eq!(v["grpc_index"]["models"][0]["name"], "starter", "{v}");
    assert_eq!(v["grpc_index"]["models"][0]["state"], "READY", "{v}");
    for ext in ["model_repository", "statistics"] {
        assert!(
            v["extensions"].as_array().unwrap().contains(&json!(ext)),
            "{v}"
        );
    }
    // The HTTP statistics were read after all 5 requests; gRPC's JSON has uint64 as strings.
    let h = &v["http_stats"]["model_stats"];
    assert_eq!(h.as_array().unwrap().len(), 1 + members, "{v}");
    assert_eq!(h[0]["inference_count"], 10, "{v}");
    assert_eq!(h[0]["execution_count"], 5, "{v}");
    assert_eq!(h[0]["inference_stats"]["success"]["count"], 5, "{v}");
    assert_eq!(h[1]["inference_count"], 10, "{v}");
    let g = &v["grpc_stats"]["model_stats"];
    assert_eq!(g[0]["name"], "starter", "{v}");
    assert_eq!(g[0]["inference_count"], "10", "{v}");
    assert_eq!(g[0]["inference_stats"]["success"]["count"], "5", "{v}");
    assert_eq!(
        v["http_all"]["model_stats"].as_array().unwrap().len(),
        1 + members
    );
}
