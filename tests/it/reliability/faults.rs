//! Faults from outside the request path, injected into a real `lastmile serve` process: a model
//! file deleted or corrupted on disk before SIGHUP, the ONNX Runtime library missing when a
//! reload first needs it, or removed after it was loaded. Each leaves the live ensemble serving
//! and says what happened (the admin status's `last_rejection`, naming the model and the file).

use std::path::Path;

use serde_json::Value;

use crate::support::child::Served;
use crate::support::{eventually, fasttext, manifest_text, onnx, write};

/// Waits until the server has rejected a reload after the one `seen` (none: any); the
/// rejection, which becomes `seen`.
async fn rejection(served: &Served, seen: &mut Value, what: &str) -> Value {
    let before = seen["at_unix"].clone();
    eventually(what, || async {
        let now = &served.status().await["last_rejection"];
        !now.is_null() && now["at_unix"] != before
    })
    .await;
    *seen = served.status().await["last_rejection"].clone();
    seen.clone()
}

fn copy_fixture(dir: &Path, file: &str) -> String {
    let to = dir.join(file);
    std::fs::copy(fasttext(file), &to).unwrap();
    to.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_deleted_or_corrupted_before_sighup_leaves_live_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        copy_fixture(dir.path(), "softmax.bin"),
        copy_fixture(dir.path(), "ova.bin"),
    );
    let text = |version| manifest_text("faults", version, &[("a", &a), ("b", &b)], "");
    let manifest = write(dir.path(), "manifest.toml", &text("1"));
    let served = Served::start(&manifest);
    let (version, label) = served.predict("steel chef knife").await;
    assert_eq!(version, "1");
    let mut seen = Value::Null;

    // Deleted: the reload names the file; live answers as before.
    std::fs::remove_file(&b).unwrap();
    write(dir.path(), "manifest.toml", &text("2"));
    served.signal("HUP");
    let r = rejection(
        &served,
        &mut seen,
        "the reload without ova.bin to be rejected",
    )
    .await;
    assert_eq!(
        (r["trigger"].as_str(), r["stage"].as_str()),
        (Some("sighup"), Some("load"))
    );
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("ova.bin") && reason.contains("\"b\""),
        "{reason}"
    );
    assert_eq!(
        served.predict("steel chef knife").await,
        (version.clone(), label.clone())
    );

    // Corrupted the way that once aborted the process: a dictionary declared far larger than
    // the file (2^31-1 entries).
    let mut bytes = std::fs::read(fasttext("ova.bin")).unwrap();
    for (k, v) in [i32::MAX, i32::MAX - 1, 1].into_iter().enumerate() {
        bytes[64 + 4 * k..68 + 4 * k].copy_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&b, &bytes).unwrap();
    served.signal("HUP");
    let r = rejection(
        &served,
        &mut seen,
        "the reload of a corrupt ova.bin to be rejected",
    )
    .await;
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("ova.bin"), "{reason}");

    // Truncated half-way.
    std::fs::write(&b, &bytes[..bytes.len() / 2]).unwrap();
    served.signal("HUP");
    let r = rejection(
        &served,
        &mut seen,
        "the reload of a truncated ova.bin to be rejected",
    )
    .await;
    assert!(r["reason"].as_str().unwrap().contains("ova.bin"), "{r}");
    assert_eq!(served.predict("steel chef knife").await, (version, label));
    assert_eq!(served.status().await["live"]["version"], "1");

    // Mended, the same SIGHUP promotes.
    std::fs::copy(fasttext("ova.bin"), &b).unwrap();
    served.signal("HUP");
    eventually("the mended manifest to be promoted", || async {
        served.status().await["live"]["version"] == "2"
    })
    .await;
    assert_eq!(served.predict("steel chef knife").await.0, "2");
}

/// A manifest of one fastText model and, optionally, one ONNX model.
fn with_onnx(version: &str, onnx_model: bool) -> String {
    let mut text = manifest_text("ort", version, &[("a", &fasttext("softmax.bin"))], "");
    if onnx_model {
        text.push_str(&format!(
            "\n[[model]]\nname = \"departments\"\nkind = \"onnx\"\npath = \"{}\"\n\
             fields = [\"title\"]\noutput = \"probabilities\"\nlabels_file = \"{}\"\n",
            onnx("tfidf_lr_nozipmap.onnx"),
            onnx("tfidf_lr_nozipmap.labels.txt"),
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onnx_runtime_missing_when_a_reload_needs_it_is_a_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(dir.path(), "manifest.toml", &with_onnx("1", false));
    let missing = dir.path().join("gone/libonnxruntime.so");
    let env = [("ORT_DYLIB_PATH", missing.to_str().unwrap())];
    let served = Served::start_with(&manifest, &[], &env);
    let before = served.predict("steel chef knife").await;
    let mut seen = Value::Null;

    write(dir.path(), "manifest.toml", &with_onnx("2", true));
    served.signal("HUP");
    let r = rejection(
        &served,
        &mut seen,
        "the reload needing ONNX Runtime to be rejected",
    )
    .await;
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("ONNX Runtime") && reason.contains("gone/libonnxruntime.so"),
        "{reason}"
    );
    assert_eq!(served.predict("steel chef knife").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_onnx_runtime_removed_after_loading_does_not_stop_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libonnxruntime.so");
    let installed = std::fs::canonicalize(std::env::var("ORT_DYLIB_PATH").unwrap()).unwrap();
    std::fs::copy(installed, &library).unwrap();
    let manifest = write(dir.path(), "manifest.toml", &with_onnx("1", true));
    let env = [("ORT_DYLIB_PATH", library.to_str().unwrap())];
    let served = Served::start_with(&manifest, &[], &env);
    assert_eq!(served.predict("steel chef knife").await.0, "1");

    // The library is mapped: a reload with a new ONNX session works without the file.
    std::fs::remove_file(&library).unwrap();
    let v2 = with_onnx("2", true).replace("name = \"departments\"", "name = \"departments-2\"");
    write(dir.path(), "manifest.toml", &v2);
    served.signal("HUP");
    eventually(
        "version 2 to be promoted without the library file",
        || async { served.status().await["live"]["version"] == "2" },
    )
    .await;
    assert_eq!(served.predict("steel chef knife").await.0, "2");
}
