//! Hot swaps under continuous concurrent load: REST and gRPC (unary and stream) clients predict
//! without pause while the admin API swaps the live ensemble between two versions whose answers
//! differ, over and over (deploy, load + promote, rollback; REST and gRPC admin calls). No request
//! fails, and every answer is the one the version it reports gives. A request in flight during a
//! swap finishes on the ensemble it was admitted with, and that ensemble is freed after it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use lastmile::app::Drained;
use lastmile::proto::lastmile::v1 as pb;
use serde_json::json;

/// Titles whose answers differ between the two versions (checked below).
const TITLES: [&str; 4] = [
    "steel chef knife with sharpener",
    "lightweight running shoes for marathon",
    "family board game with dice",
    "ultralight backpacking tent",
];

const SWAPS: usize = 24;

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Answers per version.
    by_version: Mutex<HashMap<String, u64>>,
    answers: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Seen {
    fn ok(&self, version: &str, n: u64) {
        *self
            .by_version
            .lock()
            .unwrap()
            .entry(version.to_owned())
            .or_default() += n;
        self.answers.fetch_add(n, Ordering::Relaxed);
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    fn count(&self, version: &str) -> u64 {
        self.by_version
            .lock()
            .unwrap()
            .get(version)
            .copied()
            .unwrap_or(0)
    }
}

/// Checks one response: its version is one of ours and its answers are that version's.
fn check(
    seen: &Seen,
    expected: &HashMap<String, Vec<Answer>>,
    via: &str,
    version: &str,
    got: Vec<Answer>,
) {
    match expected.get(version) {
        None => seen.fail(format!("{via}: unknown version {version:?}")),
        Some(want) => {
            if got.len() == want.len() && got.iter().zip(want).all(|(g, w)| g.matches(w, 1e-5)) {
                seen.ok(version, got.len() as u64);
            } else {
                seen.fail(format!(
                    "{via}: version {version:?} answered {got:?}, expected {want:?}"
                ));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaps_under_load_lose_no_request_and_never_mix_versions() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(
        dir.path(),
        "v1.toml",
        &manifest_text("swap", "1", &[("a", "softmax.bin")], ""),
    );
    let v2 = write(
        dir.path(),
        "v2.toml",
        &manifest_text("swap", "2", &[("b", "hs.bin"), ("c", "ova.bin")], ""),
    );
    let server = Arc::new(start(&v1, Options::default()).await);

    // Each version's answers, computed in-process, and proof that they tell the versions apart.
    let live1 = server.registry().snapshot();
    let (code, body) = server
        .admin("POST", "/admin/v1/load", Some(json!({"manifest": v2})))
        .await;
    assert_eq!(code, 200, "{body}");
    let live2 = server.registry().candidate().unwrap().ensemble;
    let mut expected = HashMap::new();
    expected.insert("1".to_owned(), server.expected_for(&live1, &TITLES).await);
    expected.insert("2".to_owned(), server.expected_for(&live2, &TITLES).await);
    for (a, b) in expected["1"].iter().zip(&expected["2"]) {
        assert!(
            !a.matches(b, 1e-3),
            "the versions must answer differently: {a:?}"
        );
    }
    drop((live1, live2));
    let expected = Arc::new(expected);

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..2 {
        // REST: a batch of every title per request.
        let (server, seen, stop, expected) =
            (server.clone(), seen.clone(), stop.clone(), expected.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                match server.predict_rest(&http, &TITLES).await {
                    Ok((version, items)) => check(
                        &seen,
                        &expected,
                        &format!("REST client {c}"),
                        &version,
                        items.iter().map(Answer::from_json).collect(),
                    ),
                    Err(e) => seen.fail(format!("REST client {c}: {e}")),
                }
            }
        }));
    }
    for c in 0..2 {
        // gRPC unary.
        let (server, seen, stop, expected) =
            (server.clone(), seen.clone(), stop.clone(), expected.clone());
        clients.push(tokio::spawn(async move {
            let mut client = server.own_client().await;
            while !stop.load(Ordering::Relaxed) {
                match client.predict(request(&TITLES)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        let version = r.ensemble.map(|e| e.version).unwrap_or_default();
                        let got = r.items.iter().map(Answer::from_proto).collect();
                        check(&seen, &expected, &format!("gRPC client {c}"), &version, got);
                    }
                    Err(status) => seen.fail(format!("gRPC client {c}: {status:?}")),
                }
            }
        }));
    }
    {
        // gRPC stream: bursts of messages on one stream, each answered by its own snapshot.
        let (server, seen, stop, expected) =
            (server.clone(), seen.clone(), stop.clone(), expected.clone());
        clients.push(tokio::spawn(async move {
            let mut client = server.own_client().await;
            while !stop.load(Ordering::Relaxed) {
                let burst: Vec<pb::PredictRequest> = (0..16).map(|_| request(&TITLES)).collect();
                match client.predict_stream(tokio_stream::iter(burst)).await {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        loop {
                            match stream.message().await {
                                Ok(Some(r)) if r.error.is_none() => {
                                    let version = r.ensemble.map(|e| e.version).unwrap_or_default();
                                    let got = r.items.iter().map(Answer::from_proto).collect();
                                    check(&seen, &expected, "gRPC stream", &version, got);
                                }
                                Ok(Some(r)) => {
                                    seen.fail(format!("gRPC stream message: {:?}", r.error))
                                }
                                Ok(None) => break,
                                Err(status) => {
                                    seen.fail(format!("gRPC stream: {status:?}"));
                                    break;
                                }
                            }
                        }
                    }
                    Err(status) => seen.fail(format!("gRPC stream: {status:?}")),
                }
            }
        }));
    }

    // Swap back and forth through every admin path. After each swap, wait until a client has been
    // answered by the new version, so that every version served traffic.
    let mut admin = server.admin_client().await;
    let manifests = [v1.display().to_string(), v2.display().to_string()];
    let mut live = 1; // index into manifests of the live version: 0 → "1", 1 → "2"
    let before_first = seen.count("2");
    // The candidate loaded above is promoted first.
    let (code, body) = server.admin("POST", "/admin/v1/promote", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["live"]["version"], "2");
    let mut waited_for = before_first;
    eventually("an answer from version 2", || {
        let n = seen.count("2");
        async move { n > waited_for }
    })
    .await;
    for i in 1..SWAPS {
        let other = 1 - live;
        let version = (other + 1).to_string();
        waited_for = seen.count(&version);
        let result: pb::SwapResult = match i % 4 {
            0 => {
                let (code, body) = server.deploy(json!({"manifest": manifests[other]})).await;
                assert_eq!(code, 200, "{body}");
                serde_json::from_value(body).unwrap()
            }
            1 => admin
                .rollback(pb::RollbackRequest {})
                .await
                .expect("gRPC rollback")
                .into_inner(),
            2 => {
                let (code, body) = server.admin("POST", "/admin/v1/rollback", None).await;
                assert_eq!(code, 200, "{body}");
                serde_json::from_value(body).unwrap()
            }
            _ => {
                admin
                    .load(pb::LoadRequest {
                        manifest: manifests[other].clone(),
                    })
                    .await
                    .expect("gRPC load");
                admin
                    .promote(pb::PromoteRequest::default())
                    .await
                    .expect("gRPC promote")
                    .into_inner()
            }
        };
        assert_eq!(result.live.as_ref().unwrap().version, version, "swap {i}");
        live = other;
        let seen2 = seen.clone();
        let v = version.clone();
        eventually(
            &format!("an answer from version {version} after swap {i}"),
            || {
                let n = seen2.count(&v);
                async move { n > waited_for }
            },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let failures = seen.failures.lock().unwrap().clone();
    let total = seen.answers.load(Ordering::Relaxed);
    let by_version = seen.by_version.lock().unwrap().clone();
    println!(
        "{SWAPS} swaps under load: {total} answers, by version {by_version:?}, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let status = server.status().await;
    assert_eq!(status.swaps, SWAPS as u64);
    assert_eq!(status.live.unwrap().version, (live + 1).to_string());
}

fn request(titles: &[&str]) -> pb::PredictRequest {
    pb::PredictRequest {
        items: titles
            .iter()
            .map(|t| pb::Item {
                fields: [("title".to_owned(), t.to_string())].into(),
                ..Default::default()
            })
            .collect(),
        top_k: 3,
        ..Default::default()
    }
}

/// Version 1 (model a, softmax) and version 2 (model b, hierarchical softmax) of "swap", in a
/// temporary directory that lives as long as the returned handle.
fn one_model_versions() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(
        dir.path(),
        "v1.toml",
        &manifest_text("swap", "1", &[("a", "softmax.bin")], ""),
    );
    let v2 = write(
        dir.path(),
        "v2.toml",
        &manifest_text("swap", "2", &[("b", "hs.bin")], ""),
    );
    (dir, v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_keeps_its_ensemble_which_is_freed_after_it() {
    let (_dir, v1, v2) = one_model_versions();
    let hold = Hold::new();
    let server = Arc::new(
        start(
            &v1,
            Options {
                keep_previous: false,
                hold: Some(hold.clone()),
                ..Options::default()
            },
        )
        .await,
    );
    let old = server.registry().snapshot();
    let want = server.expected_for(&old, &TITLES).await;
    let old_weak = Arc::downgrade(&old);
    drop(old);

    // Admitted on version 1, then held.
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move { server.predict_rest(&reqwest::Client::new(), &TITLES).await })
    };
    hold.held(1).await;

    let (code, body) = server.deploy(json!({"manifest": v2})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["live"]["version"], "2");
    assert!(body["previous"].is_null(), "--no-keep-previous: {body}");
    assert!(
        old_weak.upgrade().is_some(),
        "version 1 lives on while its request is in flight"
    );

    hold.release();
    let (version, items) = in_flight.await.unwrap().expect("the held request succeeds");
    assert_eq!(
        version, "1",
        "answered by the ensemble it was admitted with"
    );
    let got: Vec<Answer> = items.iter().map(Answer::from_json).collect();
    assert!(got.iter().zip(&want).all(|(g, w)| g.matches(w, 1e-5)));

    // New requests see version 2; version 1 is freed once its last request is done.
    let (version, _) = server
        .predict_rest(&reqwest::Client::new(), &TITLES)
        .await
        .unwrap();
    assert_eq!(version, "2");
    eventually("version 1 to be freed", || {
        let gone = old_weak.upgrade().is_none();
        async move { gone }
    })
    .await;
}

/// Shutdown (SIGTERM) while a deploy is in flight: the deploy is answered `shutting_down` with
/// nothing swapped (a swap now would claim a version the restarted server will not run), and the
/// admin servers drain with the serving ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_in_flight_at_shutdown_is_answered_and_changes_nothing() {
    let (_dir, v1, v2) = one_model_versions();
    let hold = Hold::new();
    let mut server = start(
        &v1,
        Options {
            deploy_hold: Some(hold.clone()),
            ..Options::default()
        },
    )
    .await;
    let deploying = {
        let admin = server.admin_http.clone();
        tokio::spawn(async move {
            crate::support::client::admin_call(
                &admin,
                None,
                "POST",
                "/admin/v1/deploy",
                Some(json!({"manifest": v2})),
            )
            .await
        })
    };
    hold.held(1).await; // version 2 is loaded, not yet staged or swapped

    server.shutdown();
    let (code, body) = deploying.await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["code"], "shutting_down", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing more was changed"),
        "{body}"
    );
    assert_eq!(server.registry().snapshot().version, "1");
    assert!(server.registry().candidate().is_none(), "nothing staged");

    let admin_addr = server.app.admin.unwrap().http_addr;
    assert_eq!(server.wait().await, Drained::Clean);
    assert!(
        tokio::net::TcpStream::connect(admin_addr).await.is_err(),
        "the admin listener is closed"
    );
}
