//! Shedding by queueing delay: with `--max-queue-wait`, a request that would wait longer than
//! that for the compute threads is refused at once (429 / RESOURCE_EXHAUSTED with Retry-After),
//! before it is admitted, while the requests already queued are served.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use lastmile::proto::lastmile::v1 as pb;
use lastmile::service::Limits;
use serde_json::json;

use crate::support::runtimes::{Counting, Gate, Stuck};
use crate::support::{eventually, manifest_text, proto_item, write, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_would_wait_too_long_is_refused_at_once_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "one.toml",
        &manifest_text("one", "1", &[("a", "softmax.bin")], ""),
    );
    let gate = Gate::new();
    gate.open();
    let rows = Arc::new(AtomicUsize::new(0));
    let (g, r) = (Arc::clone(&gate), Arc::clone(&rows));
    // Any queued work is too much to wait for.
    let server = TestServer::builder()
        .manifest(&manifest)
        .threads(2)
        .limits(Limits {
            max_queue_wait: Some(Duration::from_nanos(1)),
            ..Limits::default()
        })
        .wrap_models(move |_, m| {
            Arc::new(Stuck(Arc::new(Counting(m, Arc::clone(&r))), Arc::clone(&g)))
        })
        .start()
        .await;
    let predict = || {
        let url = format!("{}/v1/predict", server.http);
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&json!({"item": {"title": "garden hose"}}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().get("retry-after").cloned())
        })
    };
    // One request runs with the gate open: the model's cost is known from then on.
    assert_eq!(predict().await.unwrap().0, 200);
    // Two more hold both compute threads, a third waits in the queue: nothing was queued when
    // each came, so each was let in. One at a time: two sent together could find the other
    // still queued (and be refused), or share one batch.
    gate.close();
    let first = predict();
    gate.holding(1).await;
    let second = predict();
    gate.holding(2).await;
    let held = [first, second];
    let queued = predict();
    let pool = Arc::clone(server.pool());
    eventually("the third request to be queued", || {
        let pool = Arc::clone(&pool);
        async move { pool.queue_depth() == 1 }
    })
    .await;

    // Now there is work queued ahead: a newcomer would wait, so it is refused at once.
    let (status, retry) = predict().await.unwrap();
    assert_eq!(status, 429);
    let retry: u64 = retry
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let (status, body) = server
        .post_json("/v1/predict", &json!({"item": {"title": "hose"}}))
        .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("overloaded")));
    assert!(
        body["error"].as_str().unwrap().contains("--max-queue-wait"),
        "{body}"
    );
    let refused = server
        .own_client()
        .await
        .predict(pb::PredictRequest {
            items: vec![proto_item(&[("title", "hose")])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.metadata().get("retry-after").is_some());
    assert!(refused.metadata().get("grpc-retry-pushback-ms").is_some());

    // What was let in is served.
    gate.open();
    for h in held {
        assert_eq!(h.await.unwrap().0, 200);
    }
    assert_eq!(queued.await.unwrap().0, 200);
    assert_eq!(rows.load(std::sync::atomic::Ordering::SeqCst), 4);
}
