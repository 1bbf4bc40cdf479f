//! Shadow mode driven through the admin API, as an operator would: staged over REST, gRPC and
//! `lastmile deploy --shadow`, behind the admin token; the report as JSON; stop; promotion through
//! the same validation gate and swap as any candidate (rejected: live unchanged and the shadow goes
//! on; passed: the shadow is live and no longer mirrored).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{known_variant, root, titles, TOKEN, TRANSPORTS};
use super::{send, Server};
use lastmile::proto::lastmile::v1 as pb;
use lastmile::proto::lastmile::v1::shadow_client::ShadowClient;
use lastmile::shadow::{Report, ShadowSettings};
use serde_json::{json, Value};

/// The fastText validation texts as labelled JSON Lines; `label` replaces every right answer.
fn labelled(dir: &Path, name: &str, label: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(root().join("tests/fixtures/fasttext/valid.txt")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(l, t)| {
            let right = l.trim_start_matches("__label__");
            json!({"title": t, "label": label.unwrap_or(right)}).to_string()
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

async fn send_titles(server: &Server, n: usize) {
    let titles = titles(n);
    for (i, part) in titles.chunks(5).enumerate() {
        send(server, TRANSPORTS[i % 4], part, 5).await;
    }
}

fn report(v: Value) -> Report {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("a report, got {v}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_report_reject_and_promote_over_rest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = known_variant(dir.path());
    let server = super::start_admin(ShadowSettings::default()).await;

    // The token guards the shadow routes like every admin route.
    let (status, body) = server
        .admin_as(None, "GET", "/admin/v1/shadow/report", None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.admin("GET", "/admin/v1/shadow/report", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = server.admin("POST", "/admin/v1/shadow/promote", None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    for bad in [
        json!({"manifest": manifest, "fraction": 0.0}),
        json!({"fraction": 0.5}),
    ] {
        let (status, _) = server
            .admin("POST", "/admin/v1/shadow/stage", Some(bad))
            .await;
        assert_eq!(status, 400);
    }
    let (status, body) = server
        .admin(
            "POST",
            "/admin/v1/shadow/stage",
            Some(json!({"manifest": dir.path().join("missing.toml")})),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("rejected")));

    let (status, body) = server
        .admin(
            "POST",
            "/admin/v1/shadow/stage",
            Some(json!({"manifest": manifest, "fraction": 1.0})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let staged = report(body);
    assert_eq!(
        (staged.state.as_str(), staged.shadow.version.as_str()),
        ("running", "2")
    );
    assert_eq!(staged.counts.sampled, 0);
    let (_, status) = server.admin("GET", "/admin/v1/status", None).await;
    assert_eq!(status["shadow"]["version"], "2");
    assert_eq!(status["candidate"], Value::Null);

    send_titles(&server, 40).await;
    let shadow = server.shadow_slot().running().unwrap();
    shadow.settled().await;
    let (status, body) = server
        .admin("GET", "/admin/v1/shadow/report?top=3", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let r = report(body);
    assert_eq!((r.counts.mirrored, r.counts.compared), (40, 40));
    // The JSON says what the shadow holds in-process.
    let local = shadow.report_with(3);
    assert_eq!(r.counts, local.counts);
    // (Numbers compared, not latencies: JSON round-trips floats only to the last digit.)
    assert_eq!(r.since_staging.top1_agreed, local.since_staging.top1_agreed);
    assert_eq!(r.since_staging.compared, local.since_staging.compared);
    assert_eq!(r.top_disagreements, local.top_disagreements);
    assert_eq!(r.labels, local.labels);
    assert!(r.top_disagreements.len() <= 3 && !r.top_disagreements.is_empty());
    assert!(r.since_staging.top1_agreement.unwrap() < 1.0);

    // A gate the shadow cannot pass: rejected, live unchanged, the shadow still mirrored.
    let wrong = labelled(dir.path(), "wrong.jsonl", Some("garden_tools"));
    let (status, body) = server
        .admin(
            "POST",
            "/admin/v1/shadow/promote",
            Some(json!({"validation": wrong, "min_accuracy": 0.5})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("rejected")),
        "{body}"
    );
    assert_eq!(server.live().version, "1");
    assert!(server.shadow_slot().running().is_some());
    let (_, status) = server.admin("GET", "/admin/v1/status", None).await;
    assert_eq!(status["shadow"]["version"], "2");
    assert_eq!(status["candidate"], Value::Null);

    // A gate it passes: one swap, and it is no longer a shadow.
    let right = labelled(dir.path(), "right.jsonl", None);
    let (status, body) = server
        .admin(
            "POST",
            "/admin/v1/shadow/promote",
            Some(json!({"validation": right, "max_drop": 1.0})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "promoted");
    assert_eq!(body["live"]["version"], "2");
    assert_eq!(body["previous"]["version"], "1");
    assert_eq!(body["validation"]["passed"], true);
    assert_eq!(server.live().version, "2");
    assert!(server.shadow_slot().running().is_none());
    let (_, body) = server.admin("GET", "/admin/v1/shadow/report", None).await;
    assert_eq!(report(body).state, "stopped");
    let (_, status) = server.admin("GET", "/admin/v1/status", None).await;
    assert_eq!(status["shadow"], Value::Null);
    let (status, _) = server.admin("POST", "/admin/v1/shadow/stop", None).await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_report_and_stop_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = known_variant(dir.path());
    let server = super::start_admin(ShadowSettings::default()).await;
    let addr = server.admin_grpc.clone();
    let mut client = ShadowClient::connect(addr).await.unwrap();

    let refused = client
        .report(pb::ShadowReportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let staged = client
        .stage(authorised(pb::StageShadowRequest {
            manifest: manifest.display().to_string(),
            fraction: Some(0.5),
            seed: 3,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(staged.state, "running");
    assert_eq!(staged.fraction, 0.5);
    assert_eq!(staged.shadow.unwrap().version, "2");

    send_titles(&server, 40).await;
    server.shadow_slot().running().unwrap().settled().await;
    let r = client
        .report(authorised(pb::ShadowReportRequest { top: 2 }))
        .await
        .unwrap()
        .into_inner();
    let counts = r.counts.unwrap();
    assert!(counts.sampled > 0 && counts.sampled < 40, "{counts:?}");
    assert_eq!(counts.compared, counts.sampled);
    let since = r.since_staging.unwrap();
    assert_eq!(since.compared, counts.compared);
    assert!(since.top1_agreement.is_some());
    assert!(r.top_disagreements.len() <= 2);

    let stopped = client
        .stop(authorised(pb::StopShadowRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.state, "stopped");
    assert_eq!(stopped.counts.unwrap(), counts);
    let again = client
        .stop(authorised(pb::StopShadowRequest {}))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
}

/// A gRPC request with the admin token.
fn authorised<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req
}

async fn lastmile(server: &Server, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lastmile"));
    command
        .args(args)
        .args(["--server", &server.admin_http])
        .env("LASTMILE_ADMIN_TOKEN", TOKEN);
    tokio::task::spawn_blocking(move || command.output().expect("lastmile runs"))
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lastmile_deploy_shadow_report_stop_and_promote() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = known_variant(dir.path());
    let server = super::start_admin(ShadowSettings::default()).await;

    let manifest = manifest.display().to_string();
    let out = lastmile(
        &server,
        &[
            "deploy",
            "--shadow",
            "--fraction",
            "1",
            "--manifest",
            &manifest,
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("100.0 % of live items"),
        "{}",
        stdout(&out)
    );
    assert_eq!(server.live().version, "1");

    send_titles(&server, 20).await;
    server.shadow_slot().running().unwrap().settled().await;
    let out = lastmile(&server, &["shadow", "report"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("compared 20"), "{text}");
    assert!(text.contains("top-1 agreement"), "{text}");
    let out = lastmile(&server, &["shadow", "report", "--json"]).await;
    assert_eq!(
        report(serde_json::from_slice(&out.stdout).unwrap())
            .counts
            .compared,
        20
    );

    let out = lastmile(&server, &["shadow", "stop"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("stopped"));
    let out = lastmile(&server, &["shadow", "stop"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no shadow is running"));

    // Staged again and promoted through the gate: rejected (exit 2, live unchanged), then passed.
    let out = lastmile(&server, &["deploy", "--shadow", "--manifest", &manifest]).await;
    assert!(out.status.success(), "{out:?}");
    let wrong = labelled(dir.path(), "wrong.jsonl", Some("garden_tools"));
    let wrong = wrong.display().to_string();
    let out = lastmile(
        &server,
        &[
            "shadow",
            "promote",
            "--validation",
            &wrong,
            "--min-accuracy",
            "0.5",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stdout(&out).contains("the shadow keeps running"),
        "{}",
        stdout(&out)
    );
    assert_eq!(server.live().version, "1");
    let right = labelled(dir.path(), "right.jsonl", None);
    let right = right.display().to_string();
    let out = lastmile(
        &server,
        &[
            "shadow",
            "promote",
            "--validation",
            &right,
            "--max-drop",
            "1",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("promoted"), "{}", stdout(&out));
    assert_eq!(server.live().version, "2");
}
