//! A request's deadline, however its transport gives it, fails it with DEADLINE_EXCEEDED / 504
//! and its work still queued is never computed; a client that goes away cancels its queued work
//! the same way, on every transport.
//!
//! Each test holds both compute threads at a gate with two requests of their own, so that the
//! request under test is certainly queued, not running; once the gate opens, a model that counts
//! its rows shows whether the request's row was ever computed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lastmile::proto::inference as v2;
use lastmile::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use lastmile::proto::lastmile::v1 as pb;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::support::runtimes::{Counting, Gate, Stuck};
use crate::support::{eventually, manifest_text, proto_item, write, TestServer};

/// A one-model server whose model counts its rows and waits at a gate, with both compute threads
/// held by a request each (their answers come once the gate opens).
struct Held {
    server: TestServer,
    gate: Arc<Gate>,
    rows: Arc<AtomicUsize>,
    holders: Vec<JoinHandle<u16>>,
    _dir: tempfile::TempDir,
}

async fn held() -> Held {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "one.toml",
        &manifest_text("one", "1", &[("a", "softmax.bin")], ""),
    );
    let gate = Gate::new();
    let rows = Arc::new(AtomicUsize::new(0));
    let (g, r) = (Arc::clone(&gate), Arc::clone(&rows));
    let server = TestServer::builder()
        .manifest(&manifest)
        .threads(2)
        .wrap_models(move |_, m| {
            Arc::new(Stuck(Arc::new(Counting(m, Arc::clone(&r))), Arc::clone(&g)))
        })
        .start()
        .await;
    let mut holders = Vec::new();
    for n in 1..=2 {
        let url = format!("{}/v1/predict", server.http);
        holders.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"item": {"title": "steel chef knife"}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
        gate.holding(n).await;
    }
    Held {
        server,
        gate,
        rows,
        holders,
        _dir: dir,
    }
}

impl Held {
    /// Opens the gate: the holders are answered, and once the queues are empty, the rows
    /// computed are theirs only (the request under test's row was dropped, never computed).
    async fn only_the_holders_were_computed(self) {
        self.gate.open();
        for h in self.holders {
            assert_eq!(h.await.unwrap(), 200);
        }
        let pool = Arc::clone(self.server.pool());
        eventually("the queues to be empty", || {
            let pool = Arc::clone(&pool);
            async move { pool.queue_depth() == 0 }
        })
        .await;
        assert_eq!(
            self.rows.load(Ordering::SeqCst),
            2,
            "the request's queued row was computed"
        );
    }

    async fn queued(&self, rows: usize) {
        let pool = Arc::clone(self.server.pool());
        eventually("the request to be queued", || {
            let pool = Arc::clone(&pool);
            async move { pool.queue_depth() >= rows }
        })
        .await;
    }
}

#[track_caller]
fn deadline_exceeded_rest(status: u16, body: &Value) {
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "deadline_exceeded");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("deadline (200 ms) passed"), "{error}");
}

/// A request whose deadline is `grpc-timeout`: tonic's client arms a timer of its own from the
/// same header, and it can fire a moment before the server's DEADLINE_EXCEEDED arrives (the
/// client's clock started first). Then the client says Cancelled, "Timeout expired", from its
/// transport; the server's side (never computed) is checked by the caller either way, and its
/// answer by the tests whose deadline the client does not know (`timeout_ms`).
/// The server admitted the request before the client gave up, so its own deadline is at most
/// 200 ms after that: the caller waits it out before opening the gate (a wait, not a measure).
async fn deadline_exceeded_grpc_or_client_timer(status: &tonic::Status) {
    let client_timer = status.code() == tonic::Code::Cancelled
        && status.message() == "Timeout expired"
        && status.metadata().get("lastmile-error").is_none();
    if client_timer {
        tokio::time::sleep(Duration::from_millis(400)).await;
    } else {
        deadline_exceeded_grpc(status);
    }
}

#[track_caller]
fn deadline_exceeded_grpc(status: &tonic::Status) {
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.metadata().get("lastmile-error").unwrap(),
        "deadline_exceeded"
    );
    assert!(
        status.message().contains("deadline (200 ms) passed"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_request_past_its_header_deadline_is_refused_and_never_computed() {
    let held = held().await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/predict", held.server.http))
        .header("lastmile-timeout-ms", "200")
        .json(&json!({"item": {"title": "garden hose"}}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    deadline_exceeded_rest(status, &response.json().await.unwrap());
    held.only_the_holders_were_computed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_request_past_its_body_deadline_is_refused_and_never_computed() {
    let held = held().await;
    let (status, body) = held
        .server
        .post_json(
            "/v1/predict",
            &json!({"item": {"title": "garden hose"}, "timeout_ms": 200}),
        )
        .await;
    deadline_exceeded_rest(status, &body);
    held.only_the_holders_were_computed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_request_past_its_deadline_is_refused_and_never_computed() {
    let held = held().await;
    let mut request = tonic::Request::new(pb::PredictRequest {
        items: vec![proto_item(&[("title", "garden hose")])],
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(200));
    let status = held
        .server
        .own_client()
        .await
        .predict(request)
        .await
        .unwrap_err();
    deadline_exceeded_grpc_or_client_timer(&status).await;
    held.only_the_holders_were_computed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_message_past_its_own_timeout_is_refused_and_never_computed() {
    let held = held().await;
    let status = held
        .server
        .own_client()
        .await
        .predict(pb::PredictRequest {
            items: vec![proto_item(&[("title", "garden hose")])],
            timeout_ms: 200,
            ..Default::default()
        })
        .await
        .unwrap_err();
    deadline_exceeded_grpc(&status);
    held.only_the_holders_were_computed().await;
}

fn v2_input() -> Value {
    json!({"name": "title", "shape": [1, 1], "datatype": "BYTES", "data": ["garden hose"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_rest_request_past_its_parameter_deadline_is_refused_and_never_computed() {
    let held = held().await;
    let (status, body) = held
        .server
        .post_json(
            "/v2/models/one/infer",
            &json!({"parameters": {"timeout_ms": 200}, "inputs": [v2_input()]}),
        )
        .await;
    deadline_exceeded_rest(status, &body);
    held.only_the_holders_were_computed().await;
}

fn v2_request() -> v2::ModelInferRequest {
    v2::ModelInferRequest {
        model_name: "one".into(),
        inputs: vec![v2::model_infer_request::InferInputTensor {
            name: "title".into(),
            datatype: "BYTES".into(),
            shape: vec![1, 1],
            parameters: Default::default(),
            contents: Some(v2::InferTensorContents {
                bytes_contents: vec![b"garden hose".to_vec()],
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_grpc_request_past_its_deadline_is_refused_and_never_computed() {
    let held = held().await;
    let mut request = tonic::Request::new(v2_request());
    request.set_timeout(Duration::from_millis(200));
    let status = GrpcInferenceServiceClient::new(held.server.channel().await)
        .model_infer(request)
        .await
        .unwrap_err();
    deadline_exceeded_grpc_or_client_timer(&status).await;
    held.only_the_holders_were_computed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_s_request_timeout_bounds_a_request_that_gives_none() {
    // The held server with --request-timeout 200 ms: built by hand, as held() builds it.
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "one.toml",
        &manifest_text("one", "1", &[("a", "softmax.bin")], ""),
    );
    let gate = Gate::new();
    let g = Arc::clone(&gate);
    let server = TestServer::builder()
        .manifest(&manifest)
        .limits(lastmile::service::Limits {
            request_timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        })
        .wrap_models(move |_, m| Arc::new(Stuck(m, Arc::clone(&g))))
        .start()
        .await;
    let (status, body) = server
        .post_json("/v1/predict", &json!({"item": {"title": "garden hose"}}))
        .await;
    deadline_exceeded_rest(status, &body);
    gate.open();
}

/// A client that goes away while its request is queued: `send` starts the request, which must
/// then be queued, and the task is aborted (its connection or stream closed). Returns once the
/// server has dropped the request: its place among the items in flight is given back.
async fn goes_away(held: &Held, send: JoinHandle<()>) {
    held.queued(1).await;
    let service = Arc::clone(held.server.service());
    assert_eq!(
        service.admission().in_flight(),
        3,
        "the holders' items and this one"
    );
    send.abort();
    let _ = send.await;
    eventually("the server to drop the request of a client gone", || {
        let service = Arc::clone(&service);
        async move { service.admission().in_flight() == 2 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_client_that_goes_away_cancels_its_queued_work() {
    let held = held().await;
    let url = format!("{}/v1/predict", held.server.http);
    let send = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .json(&json!({"item": {"title": "garden hose"}}))
            .send()
            .await;
    });
    goes_away(&held, send).await;
    held.only_the_holders_were_computed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_that_goes_away_cancels_its_queued_work() {
    let held = held().await;
    let mut client = held.server.own_client().await;
    let send = tokio::spawn(async move {
        let _ = client
            .predict(pb::PredictRequest {
                items: vec![proto_item(&[("title", "garden hose")])],
                ..Default::default()
            })
            .await;
    });
    goes_away(&held, send).await;
    held.only_the_holders_were_computed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_rest_client_that_goes_away_cancels_its_queued_work() {
    let held = held().await;
    let url = format!("{}/v2/models/one/infer", held.server.http);
    let send = tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .json(&json!({"inputs": [v2_input()]}))
            .send()
            .await;
    });
    goes_away(&held, send).await;
    held.only_the_holders_were_computed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_grpc_client_that_goes_away_cancels_its_queued_work() {
    let held = held().await;
    let mut client = GrpcInferenceServiceClient::new(held.server.channel().await);
    let send = tokio::spawn(async move {
        let _ = client.model_infer(v2_request()).await;
    });
    goes_away(&held, send).await;
    held.only_the_holders_were_computed().await;
}
