//! A shadow that fails or is slow, under concurrent load on all four transports: clients always get
//! the live answers, no live request fails, and the shadow's cost shows in its counters: failed
//! items when a shadow model fails at run time or the shadow cannot read the live items, skipped
//! items when its bounded queue is full. Nothing here is timed: the queue is filled for certain by
//! holding the shadow worker (a test hook) while the load runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{answers, send, Server};
use super::{ranked, root, starter, titles, Failing, Slow, TRANSPORTS};
use crate::support::{Hold, TestServer};
use futures_util::future::join_all;
use lastmile::ensemble::{Ensemble, FailurePolicy};
use lastmile::runtime::Runtime;
use lastmile::shadow::{Counts, ShadowSettings};

const K: usize = 5;
const CLIENTS: usize = 8;
const REQUESTS: usize = 6;
const ITEMS: usize = 3;
const TOTAL: u64 = (CLIENTS * REQUESTS * ITEMS) as u64;

/// `CLIENTS` concurrent clients, each sending `REQUESTS` requests of `ITEMS` titles over the four
/// transports in turn; every answer must equal the live ensemble's own.
async fn load(server: &Arc<Server>) {
    let titles = titles(40);
    let expected: HashMap<String, Vec<(String, f32)>> = titles
        .iter()
        .cloned()
        .zip(ranked(&answers(server, &server.live(), &titles, K).await))
        .collect();
    let expected = Arc::new(expected);
    let clients = (0..CLIENTS).map(|c| {
        let server = Arc::clone(server);
        let expected = Arc::clone(&expected);
        let titles = titles.clone();
        tokio::spawn(async move {
            for r in 0..REQUESTS {
                let start = (c * REQUESTS + r) * ITEMS % (titles.len() - ITEMS);
                let part = &titles[start..start + ITEMS];
                let got = send(&server, TRANSPORTS[(c + r) % 4], part, K).await;
                for (title, answer) in part.iter().zip(got) {
                    assert_eq!(answer, expected[title], "{title}");
                }
            }
        })
    });
    for client in join_all(clients).await {
        client.expect("every live request succeeds with the live answer");
    }
}

/// The starter, loaded beside live, with `wrap` applied to each model's runtime.
fn starter_with(server: &Server, wrap: impl Fn(Arc<dyn Runtime>) -> Arc<dyn Runtime>) -> Ensemble {
    let mut shadow = server.load(&starter());
    for model in &mut shadow.models {
        model.runtime = wrap(Arc::clone(&model.runtime));
    }
    shadow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_shadow_model_fails_only_shadow_items() {
    // It reads the process-wide shadow metrics: alone.
    let server = Arc::new(TestServer::builder().exclusive().start().await);
    // One model of the shadow fails every batch it runs, and the shadow fails an item then
    // (on_member_failure = "fail"; by default it would answer it degraded).
    let mut shadow = server.load(&starter());
    shadow.models[2].runtime = Arc::new(Failing(Arc::clone(&shadow.models[2].runtime)));
    shadow.failure = FailurePolicy::fail();
    let failing = shadow.models[2].spec.name.clone();
    let staged = server.stage(Arc::new(shadow), 1.0);

    load(&server).await;
    staged.settled().await;

    let report = staged.report();
    assert_eq!(
        report.counts,
        Counts {
            sampled: TOTAL,
            mirrored: TOTAL,
            failed: TOTAL,
            ..Counts::default()
        }
    );
    assert_eq!(report.since_staging.failure_ratio, Some(1.0));
    assert_eq!(report.since_staging.top1_agreement, None);
    let error = report.last_error.unwrap();
    assert!(
        error.contains(&failing) && error.contains("deliberately failing"),
        "{error}"
    );
    let metrics = server.metrics().await;
    let failed = counter(&metrics, "lastmile_shadow_failed_items_total");
    assert!(failed >= TOTAL as f64, "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_cannot_read_live_items_fails_them_and_live_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = root().join("tests/fixtures/onnx");
    // A shadow reading a numeric field `vec` that live requests never carry.
    let manifest = dir.path().join("features.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"features\"\nversion = \"1\"\n\n[[model]]\nname = \"mlp\"\nkind = \"onnx\"\n\
             path = \"{}\"\nfeed = \"features\"\nfields = [\"vec\"]\nlabels_file = \"{}\"\n",
            fixtures.join("mlp_float.onnx").display(),
            fixtures.join("mlp_float.labels.txt").display()
        ),
    )
    .unwrap();
    let server = Arc::new(super::start(ShadowSettings::default()).await);
    let shadow = Arc::new(Ensemble::load(&manifest, 1).expect("the features model loads"));
    let staged = server.stage(shadow, 1.0);

    load(&server).await;
    staged.settled().await;

    let report = staged.report();
    assert_eq!(
        (report.counts.mirrored, report.counts.failed),
        (TOTAL, TOTAL)
    );
    assert_eq!(report.counts.compared, 0);
    let error = report.last_error.unwrap();
    assert!(error.contains("does not fit the shadow"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_fills_its_queue_and_the_rest_is_skipped() {
    let hold = Hold::new();
    // It reads the process-wide shadow metrics: alone.
    let server = Arc::new(
        TestServer::builder()
            .shadow(ShadowSettings {
                queue_items: 10,
                ..ShadowSettings::default()
            })
            .hold_shadow(&hold)
            .exclusive()
            .start()
            .await,
    );
    // Every shadow model takes 2 ms longer per batch (and answers as live does); the worker is
    // held, as a shadow far slower than the load would be, until the load is over.
    let shadow = starter_with(&server, |r| Arc::new(Slow(r, Duration::from_millis(2))));
    let staged = server.stage(Arc::new(shadow), 1.0);

    load(&server).await;

    let report = staged.report();
    assert_eq!(
        report.counts,
        Counts {
            sampled: TOTAL,
            mirrored: 10,
            skipped: TOTAL - 10,
            ..Counts::default()
        }
    );
    assert_eq!(report.queue.depth, 10);
    let metrics = server.metrics().await;
    let skipped = counter(&metrics, "lastmile_shadow_skipped_items_total");
    assert!(skipped >= (TOTAL - 10) as f64, "{skipped}");

    hold.release();
    staged.settled().await;
    let report = staged.report();
    assert_eq!((report.counts.compared, report.counts.failed), (10, 0));
    assert_eq!(report.since_staging.top1_agreement, Some(1.0));
    assert_eq!(report.queue.depth, 0);
    // No other shadow runs meanwhile (the server is exclusive), and this one agrees fully.
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lastmile_shadow_top1_agreement_ratio{window=\"staging\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("lastmile_shadow_batch_duration_seconds_count"));
}

/// The value of an unlabelled counter in Prometheus text.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
        .parse()
        .unwrap()
}
