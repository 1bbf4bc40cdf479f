//! Every bad source, deployed to a running server: rejected at load with a message naming the
//! model and what failed, and the live ensemble serving unchanged. Nothing but model files is
//! ever fetched: no pickle lands in the cache.

use serde_json::json;

use super::*;
use crate::support::{AdminOptions, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_are_rejected_and_live_keeps_serving() {
    let m = tokio::task::spawn_blocking(mlflow).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let server = TestServer::builder()
        .sources(m.sources(&cache))
        .admin(AdminOptions::default())
        .start()
        .await;
    let live = server.live();
    let (softmax, ova) = (
        sha_of(&fasttext("softmax.bin")),
        sha_of(&fasttext("ova.bin")),
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    let one =
        |uri: &str, path: &str, extra: &str| registry_manifest(uri, "bad", &[("ft", path)], extra);
    let zeros = "0".repeat(64);
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "MLflow unreachable",
            one(&dead, "models:/ft-catalogue/1", ""),
            vec![
                dead.clone(),
                "unreachable".into(),
                "models:/ft-catalogue/1".into(),
            ],
        ),
        (
            "unknown model",
            one(&m.uri, "models:/no-such-model/1", ""),
            vec!["no-such-model".into(), "not found".into()],
        ),
        (
            "unknown alias",
            one(&m.uri, "models:/ft-catalogue@nope", ""),
            vec![
                "models:/ft-catalogue@nope".into(),
                "alias nope not found".into(),
            ],
        ),
        (
            "a pyfunc, not a model file",
            one(&m.uri, "models:/pyfunc-model/1", ""),
            vec!["python_model.pkl".into(), "never a pickled pyfunc".into()],
        ),
        (
            "a pickle named outright",
            one(&m.uri, "models:/pyfunc-model/1/python_model.pkl", ""),
            vec!["python_model.pkl is not a fastText model file".into()],
        ),
        (
            "two model files",
            one(&m.uri, "models:/ft-two-files/1", ""),
            vec!["several".into(), "ova.bin".into(), "softmax.bin".into()],
        ),
        (
            "a registry model off its pin",
            one(
                &m.uri,
                "models:/ft-catalogue/1",
                &format!("sha256 = \"{ova}\"\n"),
            ),
            vec![
                "field `sha256`".into(),
                format!("expected sha256 {ova}, found {softmax}"),
            ],
        ),
        (
            "a local file off its pin",
            one(
                &m.uri,
                &fasttext("softmax.bin"),
                &format!("sha256 = \"{zeros}\"\n"),
            ),
            vec![format!("expected sha256 {zeros}, found {softmax}")],
        ),
        (
            "no tracking server",
            one("x", "models:/ft-catalogue/1", "").replace("[mlflow]\ntracking_uri = \"x\"\n", ""),
            vec!["MLFLOW_TRACKING_URI".into()],
        ),
    ];
    for (i, (case, text, needles)) in cases.into_iter().enumerate() {
        let path = write(dir.path(), &format!("bad-{i}.toml"), &text);
        let (code, answer) = server.deploy(json!({"manifest": path})).await;
        assert_eq!(code, 422, "{case}: {answer}");
        assert_eq!(answer["code"], "rejected", "{case}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("model \"ft\""), "{case}: {error}");
        for needle in &needles {
            assert!(
                error.contains(needle.as_str()),
                "{case}: {needle:?} not in: {error}"
            );
        }
        let status = server.status().await;
        assert_eq!(status.last_rejection.unwrap().stage, "load", "{case}");
        assert_eq!(status.live.unwrap().digest, live.digest, "{case}");
        let (version, answers) = server
            .predict_rest(&reqwest::Client::new(), &["chef knife"])
            .await
            .unwrap();
        assert_eq!(version, "1", "{case}: live still answers");
        assert!(!answers.is_empty());
    }
    assert_eq!(server.live().digest, live.digest);
    // Nothing but model files was fetched (a pickle starts with 0x80).
    if let Ok(entries) = std::fs::read_dir(cache.join("sha256")) {
        for entry in entries {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert_ne!(bytes.first(), Some(&0x80), "a pickle was fetched");
        }
    }
}
