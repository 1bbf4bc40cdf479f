//! Reloading the server's own manifest without an admin call: SIGHUP (sent to this test process,
//! where the server runs) and the manifest watch. Both go through the gate: a broken manifest is
//! rejected with the trigger named, and live keeps serving.

use std::time::{Duration, SystemTime};

use super::*;

/// Rewrites `path` and moves its modification time forward, so that a coarse clock cannot hide
/// the change from the watch.
fn rewrite(path: &std::path::Path, text: &str, tick: u64) {
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(tick))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_manifest_through_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "manifest.toml",
        &manifest_text("hup", "1", &[("a", "softmax.bin")], ""),
    );
    let server = start(
        &manifest,
        Options {
            reload: Some(manifest.clone()),
            sighup: true,
            ..Options::default()
        },
    )
    .await;
    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };

    rewrite(
        &manifest,
        &manifest_text("hup", "2", &[("b", "hs.bin")], ""),
        1,
    );
    hup();
    eventually("SIGHUP to promote version 2", || async {
        server.status().await.live.unwrap().version == "2"
    })
    .await;
    let live = server.status().await.live.unwrap();
    assert_eq!(live.trigger, "sighup");

    rewrite(&manifest, "name = \"hup\"\nversion = \"3\"\n[[model]]\n", 2);
    hup();
    eventually("SIGHUP to reject the broken manifest", || async {
        server.status().await.last_rejection.is_some()
    })
    .await;
    let status = server.status().await;
    let rejection = status.last_rejection.unwrap();
    assert_eq!(
        (rejection.trigger.as_str(), rejection.stage.as_str()),
        ("sighup", "load")
    );
    assert_eq!(status.live.unwrap().version, "2");
    let (version, _) = server
        .predict_rest(&reqwest::Client::new(), &["chef knife"])
        .await
        .unwrap();
    assert_eq!(version, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_deploys_a_changed_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "manifest.toml",
        &manifest_text("watch", "1", &[("a", "softmax.bin")], ""),
    );
    let server = start(
        &manifest,
        Options {
            reload: Some(manifest.clone()),
            watch: Some(Duration::from_millis(20)),
            ..Options::default()
        },
    )
    .await;
    rewrite(
        &manifest,
        &manifest_text("watch", "2", &[("b", "hs.bin")], ""),
        1,
    );
    eventually("the watch to promote version 2", || async {
        server.status().await.live.unwrap().version == "2"
    })
    .await;
    let status = server.status().await;
    assert_eq!(status.live.unwrap().trigger, "watch");
    assert_eq!(status.swaps, 1);
}
