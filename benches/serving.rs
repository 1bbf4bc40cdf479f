//! Serving overhead: end-to-end latency of one prediction over REST (`POST /v1/predict`), the own
//! gRPC API (`Predict`) and V2 gRPC (`ModelInfer`) against the same prediction in-process
//! (`ComputePool::predict`, blocking), for a one-model ensemble (the fastText softmax fixture), one item and a
//! batch of 32. The server runs in this process on loopback with keep-alive clients; medians of
//! interleaved runs; the ratio to in-process is printed.
//!
//!     cargo bench --bench serving

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{fmt, median, time};
use lastmile::app::{self, AppConfig};
use lastmile::ensemble::{Ensemble, ItemOptions, ValidItem};
use lastmile::proto::inference as v2;
use lastmile::proto::lastmile::v1 as pb;
use lastmile::registry::Registry;
use lastmile::scheduler::ComputePool;
use lastmile::service::Limits;
use serde_json::{json, Value};

const ITERS: usize = 2000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fasttext/softmax.bin");
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = \"one\"\nversion = \"1\"\n\n[[model]]\nname = \"ft\"\nkind = \"fasttext\"\n\
             path = {:?}\nfields = [\"title\"]\n",
            model.display().to_string()
        ),
    )
    .unwrap();
    let pool = Arc::new(ComputePool::new(1).unwrap());
    let ensemble = Arc::new(Ensemble::load(&manifest, 1).unwrap());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut handle = runtime
        .block_on(app::start(
            Arc::new(Registry::new(Arc::clone(&ensemble))),
            Arc::clone(&pool),
            AppConfig {
                http_addr: "127.0.0.1:0".parse().unwrap(),
                grpc_addr: "127.0.0.1:0".parse().unwrap(),
                limits: Limits::default(),
                ..AppConfig::default()
            },
        ))
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/predict", handle.http_addr);
    let grpc_url = format!("http://{}", handle.grpc_addr);
    let (mut own, mut infer) = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(grpc_url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        (
            pb::lastmile_client::LastmileClient::new(channel.clone()),
            v2::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel),
        )
    });

    println!("serving overhead, one fastText model, {ITERS} requests each (medians):");
    for batch in [1usize, 32] {
        let titles: Vec<String> = (0..batch)
            .map(|i| format!("stainless steel chef knife number {i}"))
            .collect();
        let items: Vec<ValidItem> = titles
            .iter()
            .map(|t| {
                let object = json!({"title": t});
                ensemble
                    .item_from_json(object.as_object().unwrap(), ItemOptions::default())
                    .unwrap()
            })
            .collect();
        let body: Value =
            json!({"items": titles.iter().map(|t| json!({"title": t})).collect::<Vec<_>>()});
        let body = serde_json::to_vec(&body).unwrap();
        let own_request = pb::PredictRequest {
            items: titles
                .iter()
                .map(|t| pb::Item {
                    fields: [("title".to_owned(), t.clone())].into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let infer_request = v2::ModelInferRequest {
            model_name: "one".into(),
            inputs: vec![v2::model_infer_request::InferInputTensor {
                name: "title".into(),
                datatype: "BYTES".into(),
                shape: vec![batch as i64, 1],
                parameters: Default::default(),
                contents: Some(v2::InferTensorContents {
                    bytes_contents: titles.iter().map(|t| t.as_bytes().to_vec()).collect(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        };

        let mut in_process = || {
            pool.predict(&ensemble, items.clone()).wait().unwrap();
        };
        let mut rest = || {
            runtime.block_on(async {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            })
        };
        let mut grpc_own = || {
            runtime.block_on(async {
                own.predict(own_request.clone()).await.unwrap();
            })
        };
        let mut grpc_v2 = || {
            runtime.block_on(async {
                infer.model_infer(infer_request.clone()).await.unwrap();
            })
        };
        let runs: [(&str, &mut dyn FnMut()); 4] = [
            ("in-process", &mut in_process),
            ("REST /v1/predict", &mut rest),
            ("gRPC Predict", &mut grpc_own),
            ("gRPC ModelInfer", &mut grpc_v2),
        ];
        let medians = interleaved_all(runs);
        let base = medians[0].1;
        println!("  batch {batch}:");
        for (name, m) in &medians {
            println!(
                "    {name:<18} {:>10}  ({:.1}x in-process, +{})",
                fmt(*m),
                m.as_secs_f64() / base.as_secs_f64(),
                fmt(m.saturating_sub(base))
            );
        }
    }
    handle.shutdown();
    runtime.block_on(handle.wait()).unwrap();
}

/// Medians of every run, run in turn (after a tenth as warm-up) so that drift hits all alike.
fn interleaved_all(mut runs: [(&str, &mut dyn FnMut()); 4]) -> Vec<(String, Duration)> {
    for _ in 0..ITERS / 10 {
        for (_, f) in runs.iter_mut() {
            f();
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ITERS); runs.len()];
    for _ in 0..ITERS {
        for (i, (_, f)) in runs.iter_mut().enumerate() {
            samples[i].push(time(&mut || f()));
        }
    }
    runs.iter()
        .zip(samples.iter_mut())
        .map(|((name, _), s)| (name.to_string(), median(s)))
        .collect()
}
