//! Graceful shutdown: requests in flight when SIGTERM arrives all complete, then the server stops;
//! the drain timeout bounds the wait; the binary exits 0. Requests are held in flight by the
//! server's test hook, so nothing here depends on timing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lastmile::app::Drained;
use lastmile::proto::lastmile::v1 as pb;
use serde_json::{json, Value};

use crate::support::{starter, Hold, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_when_sigterm_arrives_all_complete() {
    let hold = Hold::new();
    let mut server = TestServer::builder()
        .handle_signals()
        .hold_requests(&hold)
        .start()
        .await;
    let http = server.http.clone();
    let grpc = server.grpc.clone();

    let mut rest = Vec::new();
    for title in ["steel chef knife", "running shoes", "garden hose"] {
        let url = format!("{http}/v1/predict");
        rest.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .json(&json!({"item": {"title": title}}))
                .send()
                .await
                .expect("the request is answered despite the shutdown");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }));
    }
    let mut client = pb::lastmile_client::LastmileClient::connect(grpc.clone())
        .await
        .unwrap();
    let unary = tokio::spawn(async move {
        client
            .predict(pb::PredictRequest {
                items: vec![pb::Item {
                    fields: [("title".to_owned(), "wireless headphones".to_owned())].into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
    });
    hold.held(4).await;

    let killed = Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    server.draining().await;
    assert!(
        !server.service().ready(),
        "readiness turns false while draining"
    );

    hold.release();
    for request in rest {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(!body["item"]["predictions"].as_array().unwrap().is_empty());
    }
    let reply = unary.await.unwrap().expect("the gRPC call is answered");
    assert_eq!(reply.into_inner().items.len(), 1);

    let http_addr = server.app.http_addr;
    assert_eq!(server.wait().await, Drained::Clean);
    assert!(
        tokio::net::TcpStream::connect(http_addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_the_wait() {
    let hold = Hold::new();
    let mut server = TestServer::builder()
        .drain_timeout(Duration::ZERO)
        .hold_requests(&hold)
        .start()
        .await;
    let url = format!("{}/v1/predict", server.http);
    let stuck = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"item": {"title": "knife"}}))
            .send()
            .await
    });
    hold.held(1).await;
    server.shutdown();
    assert_eq!(server.wait().await, Drained::TimedOut);
    stuck.abort();
}

#[test]
fn the_binary_serves_until_sigterm_and_exits_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(["serve", "--manifest"])
        .arg(starter())
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .args([
            "--admin-addr",
            "127.0.0.1:0",
            "--admin-grpc-addr",
            "127.0.0.1:0",
        ])
        .args(["--log", "info", "--log-format", "json", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lastmile starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    let http = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the banner names the HTTP address; got {banner:?}"
        );
        banner.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("REST  http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ready = reqwest::get(format!("http://{http}/v2/health/ready"))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let answer = reqwest::Client::new()
            .post(format!("http://{http}/v1/predict"))
            .json(&json!({"item": {"title": "steel chef knife"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["item"]["predictions"][0]["label"], "kitchen_knives");
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("every in-flight request finished"),
        "{stderr}"
    );
    // --log-format json: every log line is one JSON object.
    let logs: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "SIGTERM received"),
        "{stderr}"
    );
}
