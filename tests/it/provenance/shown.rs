//! Provenance and the digest wherever the ensemble is described or answers: every transport's
//! answer carries the digest; `GET /v1/ensemble`, gRPC `GetEnsemble`, the V2 model metadata
//! (REST and gRPC), the admin status, `lastmile check` and `lastmile predict` show it and each
//! model's provenance.

use lastmile::proto::inference as v2;
use lastmile::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use lastmile::proto::lastmile::v1 as pb;

use super::*;
use crate::support::{AdminOptions, TestServer, TRANSPORTS};

const DECLARED: &str =
    "[model.provenance]\ndata_version = \"catalogue-v14\"\ncode_commit = \"4f1c2e9\"\nparameters = { dim = 16 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_and_the_digest_are_on_every_path() {
    let m = tokio::task::spawn_blocking(mlflow).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = registry_manifest(
        &m.uri,
        "shown",
        &[
            ("reg", "models:/ft-catalogue@champion"),
            ("local", &fasttext("ova.bin")),
        ],
        DECLARED,
    );
    let path = write(dir.path(), "manifest.toml", &text);
    let server = TestServer::builder()
        .manifest(&path)
        .sources(m.sources(&cache))
        .admin(AdminOptions::default())
        .start()
        .await;
    let digest = server.live().digest.clone();
    assert!(digest.starts_with("sha256:"));

    for transport in TRANSPORTS {
        let reply = server.send(transport, &["chef knife"], 3).await.unwrap();
        assert_eq!(reply.digest, digest, "{transport:?}");
    }

    let (status, body) = server.get("/v1/ensemble").await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["digest"], json(&digest));
    let reg = &info["models"][0]["provenance"];
    assert_eq!(reg["model"]["source"], "models:/ft-catalogue@champion");
    assert_eq!(
        reg["model"]["sha256"],
        json(&sha_of(&fasttext("softmax.bin")))
    );
    let origin = &reg["model"]["registry"];
    assert_eq!(origin["version"], "1");
    assert_eq!(origin["alias"], "champion");
    assert_eq!(origin["run_id"], json(&m.run("a")));
    assert_eq!(origin["params"]["lr"], "0.5");
    assert_eq!(origin["datasets"][0]["name"], "catalogue-train");
    assert_eq!(reg["declared"]["data_version"], "catalogue-v14");
    assert_eq!(reg["declared"]["parameters.dim"], "16");
    let local = &info["models"][1]["provenance"]["model"];
    assert_eq!(local["source"], json(&fasttext("ova.bin")));
    assert_eq!(local["sha256"], json(&sha_of(&fasttext("ova.bin"))));

    let got = server
        .own_client()
        .await
        .get_ensemble(pb::GetEnsembleRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.digest, digest);
    let p = got.models[0].provenance.clone().unwrap();
    assert_eq!(p.model.unwrap().registry.unwrap().version, "1");
    assert_eq!(p.declared["code_commit"], "4f1c2e9");

    let (status, body) = server.get("/v2/models/shown").await;
    assert_eq!(status, 200);
    let meta: Value = serde_json::from_str(&body).unwrap();
    let params = &meta["parameters"];
    assert_eq!(params["ensemble_digest"], json(&digest));
    assert_eq!(params["model.reg.registry.version"], "1");
    assert_eq!(params["model.reg.run.params.lr"], "0.5");
    assert_eq!(params["model.reg.declared.data_version"], "catalogue-v14");
    assert_eq!(
        params["model.local.sha256"],
        json(&sha_of(&fasttext("ova.bin")))
    );

    let meta = GrpcInferenceServiceClient::new(server.channel().await)
        .model_metadata(v2::ModelMetadataRequest {
            name: "shown".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let text = |key: &str| match meta
        .parameters
        .get(key)
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(v2::infer_parameter::ParameterChoice::StringParam(s)) => s,
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(text("ensemble_digest"), digest);
    assert_eq!(text("model.reg.registry.alias"), "champion");

    let status = server.status().await;
    let live = status.live.unwrap();
    assert_eq!(live.digest, digest);
    let p = live.models[0].provenance.clone().unwrap().model.unwrap();
    assert_eq!(p.registry.unwrap().run_id, m.run("a"));

    // The command line, on the same manifest and cache.
    let (manifest, cache_arg) = (path.display().to_string(), cache.display().to_string());
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        lastmile(
            &[
                "check",
                &manifest,
                "--provenance",
                "--model-cache",
                &cache_arg,
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    for needle in [
        format!("digest {digest}"),
        "models:/ft-catalogue@champion = ft-catalogue version 1".into(),
        "params dim=16 epoch=25 lr=0.5".into(),
        "dataset catalogue-train".into(),
        "declared code_commit=4f1c2e9 data_version=catalogue-v14 parameters.dim=16".into(),
    ] {
        assert!(out.contains(&needle), "{needle:?} not in:\n{out}");
    }
    let (manifest, cache_arg) = (path.display().to_string(), cache.display().to_string());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lastmile"))
            .args([
                "predict",
                "--manifest",
                &manifest,
                "--model-cache",
                &cache_arg,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"{\"title\": \"chef knife\"}\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        line["ensemble"],
        serde_json::json!({"name": "shown", "version": "1", "digest": digest})
    );
}

fn json(s: &str) -> Value {
    Value::String(s.to_owned())
}
