//! Runs logged to MLflow and read back with MLflow's own Python client: `lastmile eval
//! --mlflow-experiment` (the digest and each model's version as params, every metric of the
//! ensemble and each model), and the deploy gate's validation when an alias moved and
//! `lastmile deploy` took the new version through the gate.

use super::*;
use crate::support::{validation_set, AdminOptions, TestServer, Transport};

/// A run's experiment name, params, metrics and artifact files, as MLflow's client reads them.
fn read_run(m: &Mlflow, run_id: &str) -> Value {
    let out = m.python(&format!(
        "r = client.get_run({run_id:?})\n\
         print(json.dumps({{\"experiment\": client.get_experiment(r.info.experiment_id).name,\n\
         \"status\": r.info.status, \"params\": r.data.params, \"metrics\": r.data.metrics,\n\
         \"artifacts\": [f.path for f in client.list_artifacts({run_id:?})]}}))"
    ));
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

#[test]
fn an_eval_run_is_logged_and_read_back_with_mlflows_client() {
    let m = mlflow();
    let dir = tempfile::tempdir().unwrap();
    // No [mlflow] table: the tracking server comes from MLFLOW_TRACKING_URI.
    let text = registry_manifest(
        "unused",
        "evaluated",
        &[
            ("ft", "models:/ft-catalogue@champion"),
            ("local", &fasttext("ova.bin")),
        ],
        "",
    )
    .replace("[mlflow]\ntracking_uri = \"unused\"\n", "");
    let path = write(dir.path(), "manifest.toml", &text);
    let data = validation_set(dir.path());
    let cache = dir.path().join("cache");
    let (manifest, data, cache) = (
        path.display().to_string(),
        data.display().to_string(),
        cache.display().to_string(),
    );
    let (code, out, err) = lastmile(
        &[
            "eval",
            "--manifest",
            &manifest,
            "--data",
            &data,
            "--json",
            "--model-cache",
            &cache,
            "--mlflow-experiment",
            "lastmile-eval",
        ],
        &[
            ("MLFLOW_TRACKING_URI", &m.uri),
            ("MLFLOW_TRACKING_TOKEN", "a-token"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let logged = lines_with(&err, "logged to MLflow");
    let run_id = logged[0]
        .split("run ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("no run id in {err}"));

    let run = read_run(m, run_id);
    assert_eq!(run["experiment"], "lastmile-eval");
    assert_eq!(run["status"], "FINISHED");
    let params = &run["params"];
    assert_eq!(params["ensemble.digest"], report["digest"]);
    assert_eq!(params["ensemble.version"], "1");
    assert_eq!(params["model.ft.version"], "1");
    assert_eq!(params["model.ft.source"], "models:/ft-catalogue@champion");
    assert_eq!(params["model.local.version"], "file");
    let metrics = &run["metrics"];
    for key in ["top1", "top5", "macro_f1"] {
        assert_eq!(
            metrics[key].as_f64(),
            report["overall"][key].as_f64(),
            "{key}"
        );
    }
    for model in report["models"].as_array().unwrap() {
        let name = model["name"].as_str().unwrap();
        for key in ["top1", "top5", "macro_f1"] {
            assert_eq!(
                metrics[format!("model.{name}.{key}")].as_f64(),
                model[key].as_f64(),
                "{name} {key}"
            );
        }
    }
    let artifacts: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        artifacts.contains(&"eval.json") && artifacts.contains(&"eval.txt"),
        "{artifacts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_move_then_lastmile_deploy_serves_the_new_version_through_the_gate() {
    let m = tokio::task::spawn_blocking(mlflow).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = registry_manifest(&m.uri, "moving", &[("ft", "models:/ft-moving@live")], "");
    let path = write(dir.path(), "manifest.toml", &text);
    let server = TestServer::builder()
        .manifest(&path)
        .sources(m.sources(&cache))
        .admin(AdminOptions::default())
        .mlflow_experiment("lastmile-gate")
        .start()
        .await;
    let before = server.live();
    assert_eq!(before.models[0].sha256, sha_of(&fasttext("softmax.bin")));

    let m2 = m;
    tokio::task::spawn_blocking(move || m2.move_alias("ft-moving", "live", 2))
        .await
        .unwrap();
    let (admin, manifest) = (server.admin_http.clone(), path.display().to_string());
    let data = validation_set(dir.path()).display().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        lastmile(
            &[
                "deploy",
                "--server",
                &admin,
                "--manifest",
                &manifest,
                "--validation",
                &data,
                "--max-drop",
                "1",
                "--json",
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["outcome"], "promoted");

    let live = server.live();
    let p = live.models[0].provenance.model.registry.clone().unwrap();
    assert_eq!((p.version.as_str(), p.alias.as_str()), ("2", "live"));
    assert_eq!(live.models[0].sha256, sha_of(&fasttext("hs.bin")));
    assert_ne!(live.digest, before.digest, "another model, another digest");
    let reply = server
        .send(Transport::Rest, &["chef knife"], 3)
        .await
        .unwrap();
    assert_eq!(reply.digest, live.digest);
    assert_eq!(result["live"]["digest"], Value::String(live.digest.clone()));

    // The gate's validation, logged as a run: the candidate's digest, version and metrics.
    let validation = &result["validation"];
    let run_id = validation["mlflow_run_id"].as_str().unwrap().to_owned();
    assert!(!run_id.is_empty(), "{validation}");
    let run = tokio::task::spawn_blocking(move || read_run(m, &run_id))
        .await
        .unwrap();
    assert_eq!(run["experiment"], "lastmile-gate");
    assert_eq!(
        run["params"]["ensemble.digest"],
        Value::String(live.digest.clone())
    );
    assert_eq!(run["params"]["model.ft.version"], "2");
    assert_eq!(run["params"]["gate.passed"], "true");
    assert_eq!(
        run["params"]["live.digest"],
        Value::String(before.digest.clone())
    );
    assert_eq!(
        run["metrics"]["top1"].as_f64(),
        validation["candidate_metrics"]["top1"].as_f64()
    );
}
