//! Models from the registry: by version, by alias and by run, fastText and ONNX with its labels
//! file, each file's provenance as MLflow knows it, answers equal to the same files loaded from
//! disk, downloaded once, and the same digest wherever the files are kept.

use super::*;
use crate::support::titles;

#[test]
fn models_resolve_by_version_by_alias_and_by_run() {
    let m = mlflow();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let by_run = format!("runs:/{}/model/softmax.bin", m.run("a"));
    let text = registry_manifest(
        &m.uri,
        "reg",
        &[
            ("by-version", "models:/ft-catalogue/2"),
            ("by-alias", "models:/ft-catalogue@champion"),
            ("by-run", &by_run),
        ],
        "",
    );
    let path = write(dir.path(), "manifest.toml", &text);
    let e = load(&path, m.sources(&cache)).unwrap();

    let model = |name: &str| e.models.iter().find(|x| x.spec.name == name).unwrap();
    let origin = |name: &str| model(name).provenance.model.registry.clone().unwrap();
    assert_eq!(model("by-version").sha256, sha_of(&fasttext("ova.bin")));
    assert_eq!(model("by-alias").sha256, sha_of(&fasttext("softmax.bin")));
    assert_eq!(model("by-run").sha256, sha_of(&fasttext("softmax.bin")));

    let v2 = origin("by-version");
    assert_eq!(
        (v2.model.as_str(), v2.version.as_str()),
        ("ft-catalogue", "2")
    );
    assert_eq!(v2.run_id, m.run("b"));
    assert_eq!(v2.params["loss"], "ova");
    assert!(
        v2.artifact_uri.ends_with("/model/ova.bin"),
        "{}",
        v2.artifact_uri
    );
    assert_eq!(v2.tracking_uri, m.uri);

    let champion = origin("by-alias");
    assert_eq!(
        (champion.version.as_str(), champion.alias.as_str()),
        ("1", "champion")
    );
    assert_eq!(champion.run_id, m.run("a"));
    assert_eq!(champion.params["lr"], "0.5");
    assert_eq!(champion.tags["git_commit"], "4f1c2e9");
    let data = &champion.datasets[0];
    assert_eq!(
        (data.name.as_str(), data.context.as_str()),
        ("catalogue-train", "training")
    );
    assert!(
        data.source.contains("s3://catalogue/train-v14.jsonl"),
        "{data:?}"
    );

    let run = origin("by-run");
    assert_eq!((run.run_id, run.version), (m.run("a"), String::new()));
    assert_eq!(model("by-run").provenance.model.source, by_run);

    // The same answers as the same files read from disk, to the bit.
    let local = registry_manifest(
        &m.uri,
        "reg",
        &[
            ("by-version", &fasttext("ova.bin")),
            ("by-alias", &fasttext("softmax.bin")),
            ("by-run", &fasttext("softmax.bin")),
        ],
        "",
    );
    let local = load(&write(dir.path(), "local.toml", &local), m.sources(&cache)).unwrap();
    let titles = titles(12);
    let digest = e.digest.clone();
    assert_eq!(answers(e, &titles), answers(local, &titles));

    // Downloaded once: one cache entry per content, untouched by a second load.
    let entries = || -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(cache.join("sha256"))
            .unwrap()
            .map(|f| {
                let f = f.unwrap();
                (f.path(), f.metadata().unwrap().modified().unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let before = entries();
    assert_eq!(
        before.len(),
        2,
        "softmax.bin and ova.bin, once each: {before:?}"
    );
    let again = load(&path, m.sources(&cache)).unwrap();
    assert_eq!(entries(), before);
    assert_eq!(again.digest, digest, "the same bytes, the same digest");

    // Another machine: another cache, the same bytes, the same digest.
    let elsewhere = load(&path, m.sources(&dir.path().join("other-cache"))).unwrap();
    assert_eq!(elsewhere.digest, digest);
}

#[test]
fn an_onnx_model_and_its_labels_file_come_from_the_registry() {
    let m = mlflow();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let manifest = |model: &str, labels: &str| {
        format!(
            "name = \"onnx-reg\"\nversion = \"1\"\n[mlflow]\ntracking_uri = \"{}\"\n\n\
             [[model]]\nname = \"tfidf\"\nkind = \"onnx\"\npath = \"{model}\"\n\
             fields = [\"title\"]\noutput = \"probabilities\"\nlabels_file = \"{labels}\"\n",
            m.uri
        )
    };
    let text = manifest(
        "models:/onnx-tfidf/1/tfidf_lr_nozipmap.onnx",
        "models:/onnx-tfidf/1/tfidf_lr_nozipmap.labels.txt",
    );
    let e = load(&write(dir.path(), "m.toml", &text), m.sources(&cache)).unwrap();
    let p = &e.models[0].provenance;
    assert_eq!(p.model.sha256, sha_of(&onnx("tfidf_lr_nozipmap.onnx")));
    let labels = p.labels.as_ref().expect("the labels file's provenance");
    assert_eq!(labels.sha256, sha_of(&onnx("tfidf_lr_nozipmap.labels.txt")));
    assert_eq!(labels.registry.as_ref().unwrap().version, "1");
    assert_eq!(p.model.registry.as_ref().unwrap().run_id, m.run("onnx"));

    let local = manifest(
        &onnx("tfidf_lr_nozipmap.onnx"),
        &onnx("tfidf_lr_nozipmap.labels.txt"),
    );
    let local = load(&write(dir.path(), "local.toml", &local), m.sources(&cache)).unwrap();
    let titles = titles(8);
    assert_eq!(answers(e, &titles), answers(local, &titles));
}
