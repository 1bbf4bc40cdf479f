//! The soak: the real binary swaps its live ensemble back and forth `SWAPS` times through the
//! admin API while REST and gRPC clients predict without pause and a shadow is staged. Every
//! request ends with an answer, every answer is exactly what the version it names answers (never
//! a mix of two), and resident memory after the soak is within 10 % of what it was after the
//! first swaps (old ensembles are freed). `LASTMILE_SOAK_SWAPS` makes it longer: the bound is
//! the issue's, for 100 swaps; what stays behind is about 25 KiB a swap of allocator pages (one
//! starter ensemble is about 2 MB), measured in RELIABILITY.md, so 300 swaps come close to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lastmile::proto::lastmile::v1 as pb;
use serde_json::{json, Value};

use super::starter_without;
use crate::support::child::Served;
use crate::support::{known_variant, proto_item, starter_variant, validation_set};

const TITLES: [&str; 4] = [
    "steel chef knife with sharpener",
    "pack of playing cards",
    "lightweight running shoes for marathon",
    "ultralight backpacking tent",
];

/// Swaps after which the memory baseline is taken: every allocation pattern has been seen.
const WARM_UP: usize = 10;

/// One answer, as both transports can say it: labels in order, and their scores.
type Answer = Vec<(String, f32)>;

#[derive(Default)]
struct Seen {
    answers: AtomicU64,
    by_version: Mutex<HashMap<String, u64>>,
    failures: Mutex<Vec<String>>,
}

impl Seen {
    fn check(
        &self,
        expected: &HashMap<String, Vec<Answer>>,
        via: &str,
        version: &str,
        got: Vec<Answer>,
    ) {
        let Some(want) = expected.get(version) else {
            return self.fail(format!("{via}: unknown version {version:?}"));
        };
        let same = got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                g.len() == w.len()
                    && g.iter()
                        .zip(w)
                        .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= 1e-5)
            });
        if same {
            self.answers.fetch_add(got.len() as u64, Ordering::Relaxed);
            *self
                .by_version
                .lock()
                .unwrap()
                .entry(version.into())
                .or_default() += 1;
        } else {
            self.fail(format!(
                "{via}: version {version} answered {got:?}, expected {want:?}"
            ));
        }
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

async fn predict_rest(http: &reqwest::Client, rest: &str) -> Result<(String, Vec<Answer>), String> {
    let items: Vec<Value> = TITLES.iter().map(|t| json!({"title": t})).collect();
    let response = http
        .post(format!("http://{rest}/v1/predict"))
        .json(&json!({"items": items, "top_k": 3}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let answers = body["items"]
        .as_array()
        .ok_or("no items")?
        .iter()
        .map(|item| {
            let predictions = item["predictions"].as_array().cloned().unwrap_or_default();
            predictions
                .iter()
                .map(|p| {
                    (
                        p["label"].as_str().unwrap_or("").to_owned(),
                        p["score"].as_f64().unwrap_or(f64::NAN) as f32,
                    )
                })
                .collect()
        })
        .collect();
    Ok((
        body["ensemble"]["version"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        answers,
    ))
}

fn grpc_request() -> pb::PredictRequest {
    pb::PredictRequest {
        items: TITLES.iter().map(|t| proto_item(&[("title", t)])).collect(),
        top_k: 3,
        ..Default::default()
    }
}

fn grpc_answers(r: pb::PredictResponse) -> (String, Vec<Answer>) {
    let version = r.ensemble.map(|e| e.version).unwrap_or_default();
    let answers = r
        .items
        .into_iter()
        .map(|a| {
            a.predictions
                .into_iter()
                .map(|p| (p.label, p.score))
                .collect()
        })
        .collect();
    (version, answers)
}

async fn admin(http: &reqwest::Client, served: &Served, path: &str, body: Value) -> (u16, Value) {
    let response = http
        .post(format!("http://{}{path}", served.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_swaps_under_load_with_a_shadow_lose_nothing_mix_nothing_and_free_memory() {
    let swaps: usize = std::env::var("LASTMILE_SOAK_SWAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let v1 = starter_variant(dir.path(), "1", |t| t);
    let v2 = known_variant(dir.path());
    let shadow = starter_without(dir.path(), "ft-hs", "3");
    let served = Arc::new(Served::start(&v1));
    let http = reqwest::Client::new();
    // Any candidate passes the gate: the soak is about the swap, not the validation.
    let valid = validation_set(dir.path());
    let deploy = |manifest: &std::path::Path| json!({"manifest": manifest, "validation": valid, "max_drop": 1.0});

    // What each version answers, from a quiet server; the versions must tell apart.
    let mut expected = HashMap::new();
    for (version, manifest) in [("2", &v2), ("1", &v1)] {
        let (code, body) = admin(&http, &served, "/admin/v1/deploy", deploy(manifest)).await;
        assert_eq!(code, 200, "{body}");
        let (got, answers) = predict_rest(&http, &served.rest).await.unwrap();
        assert_eq!(got, version);
        expected.insert(version.to_owned(), answers);
    }
    assert_ne!(
        expected["1"], expected["2"],
        "the versions answer differently"
    );
    let expected = Arc::new(expected);
    let (code, body) = admin(
        &http,
        &served,
        "/admin/v1/shadow/stage",
        json!({"manifest": shadow, "fraction": 1.0}),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..2 {
        clients.push({
            let (served, seen, stop, expected) =
                (served.clone(), seen.clone(), stop.clone(), expected.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    match predict_rest(&http, &served.rest).await {
                        Ok((version, answers)) => {
                            seen.check(&expected, &format!("REST {c}"), &version, answers)
                        }
                        Err(e) => seen.fail(format!("REST {c}: {e}")),
                    }
                }
            })
        });
        clients.push({
            let (served, seen, stop, expected) =
                (served.clone(), seen.clone(), stop.clone(), expected.clone());
            tokio::spawn(async move {
                let mut client = pb::lastmile_client::LastmileClient::connect(served.grpc.clone())
                    .await
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match client.predict(grpc_request()).await {
                        Ok(r) => {
                            let (version, answers) = grpc_answers(r.into_inner());
                            seen.check(&expected, &format!("gRPC {c}"), &version, answers);
                        }
                        Err(e) => seen.fail(format!("gRPC {c}: {e}")),
                    }
                }
            })
        });
    }

    let mut before = 0;
    for swap in 0..swaps {
        let manifest = if swap % 2 == 0 { &v2 } else { &v1 };
        let (code, body) = admin(&http, &served, "/admin/v1/deploy", deploy(manifest)).await;
        assert_eq!(code, 200, "swap {swap}: {body}");
        assert_eq!(body["outcome"], "promoted", "swap {swap}: {body}");
        if swap + 1 == WARM_UP.min(swaps) {
            before = served.rss_kib();
        }
        if (swap + 1) % 50 == 0 {
            eprintln!(
                "soak: RSS {} KiB, {} threads after {} swaps",
                served.rss_kib(),
                served.threads(),
                swap + 1
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    // The previous ensemble is kept for a rollback: release it, as an operator would.
    let (code, body) = admin(
        &http,
        &served,
        "/admin/v1/release",
        json!({"slot": "previous"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let after = served.rss_kib();
    let report: Value = reqwest::get(format!("http://{}/admin/v1/shadow/report", served.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let failures = seen.failures.lock().unwrap();
    let by_version = seen.by_version.lock().unwrap().clone();
    eprintln!(
        "soak: {swaps} swaps, {} items answered ({by_version:?} requests per version), {} failed; \
         shadow compared {}; RSS {before} KiB after {WARM_UP} swaps, {after} KiB after {swaps}",
        seen.answers.load(Ordering::Relaxed),
        failures.len(),
        report["counts"]["compared"]
    );
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        by_version.get("1").is_some_and(|&n| n > 0) && by_version.get("2").is_some_and(|&n| n > 0),
        "{by_version:?}"
    );
    assert!(
        report["counts"]["compared"].as_u64().is_some_and(|n| n > 0),
        "the shadow compared: {report}"
    );
    assert!(
        after as f64 <= before as f64 * 1.10,
        "resident memory grew from {before} KiB to {after} KiB over {swaps} swaps"
    );
}
