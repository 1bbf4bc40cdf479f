//! A retrain that changes one model of the starter ensemble's seven loads one: the six unchanged
//! models are shared with the live ensemble (the same loaded runtime, `Arc::ptr_eq`), the status
//! counts them as reused and shared, and the model bytes held in memory grow by the changed
//! model only. Load times are printed, not asserted.

use std::sync::Arc;

use super::*;
use crate::support::{AdminOptions, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_models_are_not_loaded_twice() {
    let dir = tempfile::tempdir().unwrap();
    let starter = std::fs::read_to_string(root().join("models/starter/manifest.toml")).unwrap();
    let fixtures = root().join("tests/fixtures").display().to_string();
    let absolute = starter.replace("../../tests/fixtures", &fixtures);
    let v1 = write(dir.path(), "v1.toml", &absolute);
    // The retrain: ft-ova replaced by another file, everything else as it was.
    let v2 = write(
        dir.path(),
        "v2.toml",
        &absolute
            .replace("version = \"1\"", "version = \"2\"")
            .replace("fasttext/ova.bin", "fasttext/quantized_cutoff.ftz"),
    );
    // It reads the process-wide metrics: alone, and counting from what they say now.
    let server = TestServer::builder()
        .manifest(&v1)
        .admin(AdminOptions::default())
        .exclusive()
        .start()
        .await;
    let scratch_seconds = server.registry().snapshot().load_seconds;
    let before = server.metrics().await;

    let (code, body) = server.deploy(json!({"manifest": v2})).await;
    assert_eq!(code, 200, "{body}");
    let status = server.status().await;
    let live = status.live.as_ref().unwrap();
    let previous = status.previous.as_ref().unwrap();
    assert_eq!(
        (live.version.as_str(), previous.version.as_str()),
        ("2", "1")
    );
    assert_eq!(live.model_count, 7);
    assert_eq!(live.models_reused, 6, "six models shared, one loaded");
    for m in &live.models {
        assert_eq!(m.shared, m.name != "ft-ova", "{m:?}");
    }
    assert_ne!(live.models_digest, previous.models_digest);
    assert_ne!(live.manifest_sha256, previous.manifest_sha256);

    // One copy of each unchanged model in memory: the same runtime object.
    let (live_held, previous_held, _) = server.registry().held();
    let previous_held = previous_held.unwrap();
    for (new, old) in live_held
        .ensemble
        .models
        .iter()
        .zip(&previous_held.ensemble.models)
    {
        assert_eq!(new.spec.name, old.spec.name);
        assert_eq!(
            Arc::ptr_eq(&new.runtime, &old.runtime),
            new.spec.name != "ft-ova",
            "{}",
            new.spec.name
        );
    }
    let ova = previous.models.iter().find(|m| m.name == "ft-ova").unwrap();
    assert_eq!(status.resident_model_bytes, live.bytes + ova.bytes);

    println!(
        "starter ensemble (7 models): loaded from scratch in {:.1} ms; the retrain with 6 models \
         reused in {:.1} ms; model bytes in memory {} (live {} + previous's own {})",
        scratch_seconds * 1e3,
        live.load_seconds * 1e3,
        status.resident_model_bytes,
        live.bytes,
        ova.bytes
    );

    // The swap is in the metrics: its outcome, the load time, and which version is live. The
    // counters are the process's: this swap added one to each.
    let metrics = server.metrics().await;
    for counter in [
        "lastmile_registry_swaps_total{outcome=\"promoted\"}",
        "lastmile_registry_load_duration_seconds_count",
    ] {
        let added = value(&metrics, counter) - value(&before, counter);
        assert_eq!(added, 1.0, "{counter} in\n{metrics}");
    }
    for line in [
        "lastmile_ensemble_info{name=\"starter\",version=\"2\"} 1",
        "lastmile_ensemble_info{name=\"starter\",version=\"1\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Rolling back and deploying v2 again shares all seven (with the ensemble now previous).
    let (code, _) = server.admin("POST", "/admin/v1/rollback", None).await;
    assert_eq!(code, 200);
    let (code, body) = server
        .admin("POST", "/admin/v1/load", Some(json!({"manifest": v2})))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["models_reused"], 7);
}

/// A sample's value in Prometheus text (0 when it is not there yet).
fn value(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}
