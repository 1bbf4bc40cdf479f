//! Candidates that must not go live: a corrupt model file, a manifest that does not parse, and an
//! ensemble less accurate than live on the validation set. Each is rejected with its reason (in
//! the answer and in the status), and the live ensemble keeps serving exactly as before. A good
//! candidate passes the same gate; the step-by-step calls (load, validate, promote, release,
//! rollback) over gRPC say when the registry's state does not allow them.

use std::path::{Path, PathBuf};

use super::*;
use lastmile::proto::lastmile::v1 as pb;
use serde_json::json;
use tonic::Code;

const TITLES: [&str; 3] = [
    "steel chef knife",
    "running shoes for marathon",
    "garden hose",
];

/// Live: version 1, one model, gated by the fixtures' validation set.
async fn live(dir: &Path) -> (Server, PathBuf) {
    let valid = validation_set(dir);
    let extra = format!("validation = \"{}\"", valid.display());
    let v1 = write(
        dir,
        "v1.toml",
        &manifest_text("gate", "1", &[("a", "softmax.bin")], &extra),
    );
    (start(&v1, Options::default()).await, valid)
}

/// Live still serves version 1, with the same answers, and nothing was swapped.
async fn assert_unchanged(server: &Server, before: &pb::RegistryStatus, answers: &[Answer]) {
    let now = server.status().await;
    let (was, is) = (before.live.as_ref().unwrap(), now.live.as_ref().unwrap());
    assert_eq!(is.version, "1");
    assert_eq!(is.models_digest, was.models_digest);
    assert_eq!(now.swaps, before.swaps);
    assert!(
        now.candidate.is_none(),
        "a rejected deploy keeps no candidate"
    );
    let (version, items) = server
        .predict_rest(&reqwest::Client::new(), &TITLES)
        .await
        .expect("live keeps serving");
    assert_eq!(version, "1");
    let got: Vec<Answer> = items.iter().map(Answer::from_json).collect();
    assert_eq!(got, answers);
}

async fn answers(server: &Server) -> Vec<Answer> {
    let (_, items) = server
        .predict_rest(&reqwest::Client::new(), &TITLES)
        .await
        .unwrap();
    items.iter().map(Answer::from_json).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_file_is_rejected_and_live_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = live(dir.path()).await;
    let before = server.status().await;
    let answers = answers(&server).await;

    // A model file cut short and overwritten with garbage, as a failed copy leaves it.
    let mut bytes = std::fs::read(fasttext("hs.bin")).unwrap();
    bytes.truncate(bytes.len() / 3);
    bytes[8..64].fill(0xAB);
    let broken = dir.path().join("broken.bin");
    std::fs::write(&broken, bytes).unwrap();
    let text = manifest_text("gate", "2", &[("a", "softmax.bin")], "").replace(
        "\n[[model]]\nname = \"a\"",
        &format!(
            "\n[[model]]\nname = \"broken\"\nkind = \"fasttext\"\npath = \"{}\"\n\n[[model]]\nname = \"a\"",
            broken.display()
        ),
    );
    let v2 = write(dir.path(), "v2.toml", &text);

    let (code, body) = server.deploy(json!({"manifest": v2})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["code"], "rejected");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("rejected at load"), "{error}");
    assert!(
        error.contains("\"broken\"") && error.contains("`path`"),
        "{error}"
    );

    let rejection = server
        .status()
        .await
        .last_rejection
        .expect("the rejection is kept");
    assert_eq!(rejection.stage, "load");
    assert_eq!(rejection.trigger, "admin");
    assert!(rejection.reason.contains("broken"), "{}", rejection.reason);
    assert_unchanged(&server, &before, &answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_is_rejected_with_its_line_and_live_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = live(dir.path()).await;
    let before = server.status().await;
    let answers = answers(&server).await;

    let text = manifest_text("gate", "2", &[("a", "softmax.bin")], "")
        .replace("kind = \"fasttext\"", "kind = \"fasttext\"\nwieght = 2.0");
    let v2 = write(dir.path(), "v2.toml", &text);
    let (code, body) = server.deploy(json!({"manifest": v2})).await;
    assert_eq!(code, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("v2.toml:10"),
        "names the file and line: {error}"
    );
    assert!(error.contains("wieght"), "{error}");

    // And one that does not exist at all.
    let (code, body) = server
        .deploy(json!({"manifest": dir.path().join("nowhere.toml")}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("cannot read the manifest"));

    let rejection = server.status().await.last_rejection.unwrap();
    assert_eq!(rejection.stage, "load");
    assert!(rejection.candidate.is_none());
    assert_unchanged(&server, &before, &answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_less_accurate_candidate_is_rejected_and_live_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, valid) = live(dir.path()).await;
    let before = server.status().await;
    let answers = answers(&server).await;

    // A "retrain" whose labels are all wrong, gated by the manifest's own validation set.
    let extra = format!(
        "validation = \"{}\"\n{}",
        valid.display(),
        scrambled_labels()
    );
    let v2 = write(
        dir.path(),
        "v2.toml",
        &manifest_text("gate", "2", &[("a", "softmax.bin")], &extra),
    );
    let (code, body) = server.deploy(json!({"manifest": v2})).await;
    assert_eq!(code, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("rejected at validate"), "{error}");
    assert!(error.contains("below live top-1"), "{error}");

    let rejection = server.status().await.last_rejection.unwrap();
    assert_eq!(rejection.stage, "validate");
    assert_eq!(rejection.candidate.as_ref().unwrap().version, "2");
    let v = rejection.validation.expect("the numbers are kept");
    let (cand, live) = (
        v.candidate_metrics.unwrap().top1,
        v.live_metrics.unwrap().top1,
    );
    println!(
        "rejected: candidate top-1 {cand:.4}, live top-1 {live:.4}: {}",
        v.reason
    );
    assert!(!v.passed);
    assert!(cand < live, "{cand} vs {live}");
    assert_eq!(v.items, 60);
    assert_unchanged(&server, &before, &answers).await;

    // A good candidate under a floor it does not reach: rejected by min_accuracy.
    let v3 = write(
        dir.path(),
        "v3.toml",
        &manifest_text("gate", "3", &[("b", "hs.bin"), ("a", "softmax.bin")], ""),
    );
    let (code, body) = server
        .deploy(json!({"manifest": v3, "validation": valid, "min_accuracy": 0.999}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("below min_accuracy 0.9990"),
        "{body}"
    );
    assert_unchanged(&server, &before, &answers).await;

    // The same candidate with a gate it passes goes live, with its validation in the answer.
    let (code, body) = server
        .deploy(json!({"manifest": v3, "validation": valid, "max_drop": 0.05}))
        .await;
    assert_eq!(code, 200, "{body}");
    let result: pb::SwapResult = serde_json::from_value(body).unwrap();
    assert_eq!(result.outcome, "promoted");
    assert_eq!(result.live.unwrap().version, "3");
    let v = result.validation.unwrap();
    assert!(v.passed, "{}", v.reason);
    assert_eq!(v.max_drop, 0.05);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_by_step_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let (server, valid) = live(dir.path()).await;
    let mut admin = server.admin_client().await;

    // Nothing to promote, nothing to roll back to.
    let e = admin
        .promote(pb::PromoteRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("no candidate"), "{e:?}");
    let e = admin.rollback(pb::RollbackRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = admin.load(pb::LoadRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A bad candidate: loaded, validated (not passed), refused by promote, released.
    let bad_extra = format!(
        "validation = \"{}\"\n{}",
        valid.display(),
        scrambled_labels()
    );
    let bad = write(
        dir.path(),
        "bad.toml",
        &manifest_text("gate", "bad", &[("a", "softmax.bin")], &bad_extra),
    );
    let summary = admin
        .load(pb::LoadRequest {
            manifest: bad.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.version, "bad");
    assert_eq!(summary.validation_set, valid.display().to_string());
    let validation = admin
        .validate(pb::ValidateRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!validation.passed);
    let status = admin
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.candidate.unwrap().validation.unwrap().passed);
    let e = admin
        .promote(pb::PromoteRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("rejected at validate"), "{e:?}");
    let status = admin
        .release(pb::ReleaseRequest {
            slot: "candidate".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.candidate.is_none());
    assert_eq!(status.live.unwrap().version, "1");

    // A good one: load, promote (validated on the way), roll back, roll forward, release.
    let good = write(
        dir.path(),
        "good.toml",
        &manifest_text(
            "gate",
            "2",
            &[("a", "softmax.bin"), ("b", "ova.bin")],
            &format!("validation = \"{}\"", valid.display()),
        ),
    );
    admin
        .load(pb::LoadRequest {
            manifest: good.display().to_string(),
        })
        .await
        .unwrap();
    let result = admin
        .promote(pb::PromoteRequest {
            max_drop: Some(0.05),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result.outcome, "promoted");
    assert!(result.validation.unwrap().passed);
    assert_eq!(result.previous.unwrap().version, "1");
    let back = admin
        .rollback(pb::RollbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.outcome, "rolled_back");
    assert_eq!(back.live.unwrap().version, "1");
    assert_eq!(back.previous.unwrap().version, "2");
    let forth = admin
        .rollback(pb::RollbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forth.live.unwrap().version, "2");
    let status = admin
        .release(pb::ReleaseRequest {
            slot: "previous".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.previous.is_none());
    assert_eq!(status.swaps, 3);
    let e = admin.rollback(pb::RollbackRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = admin
        .release(pb::ReleaseRequest {
            slot: "live".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Deploying what is live changes nothing.
    let same = admin
        .deploy(pb::DeployRequest {
            manifest: good.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.outcome, "unchanged");
    assert_eq!(
        admin
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .swaps,
        3
    );
}

/// A model whose header declares more than its file holds (here a dictionary of 2^31 - 1
/// entries) once made the loader ask for ~137 GB and abort the live server. Deployed, it is
/// rejected at load like any corrupt file, and live keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_declaring_more_than_its_file_holds_is_rejected_and_live_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = live(dir.path()).await;
    let before = server.status().await;
    let answers = answers(&server).await;

    let mut bytes = std::fs::read(fasttext("ova.bin")).unwrap();
    for (i, v) in [i32::MAX, i32::MAX - 1, 1].iter().enumerate() {
        bytes[64 + 4 * i..68 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    let huge = dir.path().join("huge.bin");
    std::fs::write(&huge, bytes).unwrap();
    let v2 = write(
        dir.path(),
        "v2.toml",
        &manifest_text("gate", "2", &[("a", "softmax.bin")], "")
            .replace(&fasttext("softmax.bin"), &huge.display().to_string()),
    );

    let (code, body) = server.deploy(json!({"manifest": v2})).await;
    assert_eq!(code, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("rejected at load"), "{error}");
    assert!(error.contains("declares 2147483647 entries"), "{error}");
    assert_unchanged(&server, &before, &answers).await;
}

/// A cascaded candidate is gated on its answers as it serves them (the cascade's), not on its
/// full ensemble's: the starter's models behind a cascade that always stops after the fastText
/// group (on the fixtures' validation set, better than all seven members), promoted over the
/// starter, then keeping the plain starter out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascaded_candidate_is_validated_as_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let valid = validation_set(dir.path());
    let live = crate::support::starter_variant(dir.path(), "1", |text| text);
    let server = start(&live, Options::default()).await;
    let cascaded = crate::support::starter_variant(dir.path(), "2", |text| {
        format!(
            "{text}\n[cascade]\n\n[[cascade.stage]]\nmembers = [\"fasttext\"]\nthreshold = -1\n\n\
             [[cascade.stage]]\nmembers = [\"departments\"]\n"
        )
    });
    let report = crate::cli::cascade::eval(
        &cascaded.display().to_string(),
        &valid.display().to_string(),
    );
    let (full, served) = (
        report["overall"]["top1"].as_f64().unwrap(),
        report["cascade"]["top1"].as_f64().unwrap(),
    );
    assert_ne!(
        full, served,
        "the cascade must answer differently: {report}"
    );

    let (code, body) = server
        .deploy(json!({"manifest": cascaded, "validation": valid, "max_drop": 1.0}))
        .await;
    assert_eq!(code, 200, "{body}");
    let result: pb::SwapResult = serde_json::from_value(body).unwrap();
    let v = result.validation.unwrap();
    assert_eq!(v.candidate_metrics.unwrap().top1, served, "{}", v.reason);
    assert_eq!(v.live_metrics.unwrap().top1, full);

    // Live now answers through the cascade (better than its full ensemble on this set): the full
    // starter, equal to the cascade's full ensemble, is below it and refused with no drop allowed.
    assert!(served > full, "{report}");
    let plain = crate::support::starter_variant(dir.path(), "3", |text| text);
    let (code, body) = server
        .deploy(json!({"manifest": plain, "validation": valid, "max_drop": 0.0}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("below live top-1"),
        "{body}"
    );
    let v = server
        .status()
        .await
        .last_rejection
        .unwrap()
        .validation
        .unwrap();
    assert_eq!(v.live_metrics.unwrap().top1, served);
    assert_eq!(v.candidate_metrics.unwrap().top1, full);
}
