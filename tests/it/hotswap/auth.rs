//! Admin security: with a token configured, every admin call without it (or with a wrong one) is
//! refused, over REST (401) and gRPC (UNAUTHENTICATED), before it can change anything; with it,
//! the same calls work. An admin API bound beyond loopback without a token does not start.

use super::*;
use lastmile::app::AdminConfig;
use lastmile::proto::lastmile::v1 as pb;
use serde_json::{json, Value};
use tonic::Code;

const TOKEN: &str = "correct-horse-battery-staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_without_the_token_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(
        dir.path(),
        "v1.toml",
        &manifest_text("auth", "1", &[("a", "softmax.bin")], ""),
    );
    let v2 = write(
        dir.path(),
        "v2.toml",
        &manifest_text("auth", "2", &[("b", "hs.bin")], ""),
    );
    let server = start(
        &v1,
        Options {
            token: Some(TOKEN.into()),
            ..Options::default()
        },
    )
    .await;
    // Something to roll back to and a candidate, so that every call would change something.
    let (code, body) = server.deploy(json!({"manifest": v2})).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = server
        .admin("POST", "/admin/v1/load", Some(json!({"manifest": v1})))
        .await;
    assert_eq!(code, 200, "{body}");
    let before = serde_json::to_value(server.status().await).unwrap();

    let calls: [(&str, &str, Option<Value>); 7] = [
        ("GET", "/admin/v1/status", None),
        ("POST", "/admin/v1/load", Some(json!({"manifest": v1}))),
        ("POST", "/admin/v1/validate", Some(json!({}))),
        ("POST", "/admin/v1/promote", None),
        ("POST", "/admin/v1/deploy", Some(json!({"manifest": v1}))),
        ("POST", "/admin/v1/rollback", None),
        (
            "POST",
            "/admin/v1/release",
            Some(json!({"slot": "previous"})),
        ),
    ];
    for token in [None, Some("wrong"), Some("")] {
        for (method, path, body) in &calls {
            let (code, answer) = crate::support::client::admin_call(
                &server.admin_http,
                token,
                method,
                path,
                body.clone(),
            )
            .await;
            assert_eq!(code, 401, "{method} {path} with {token:?}: {answer}");
            assert_eq!(answer["code"], "unauthenticated");
        }
    }

    let mut anonymous = crate::support::client::admin_client(&server.admin_grpc, None).await;
    let mut wrong = crate::support::client::admin_client(&server.admin_grpc, Some("wrong")).await;
    for client in [&mut anonymous, &mut wrong] {
        let manifest = v1.display().to_string();
        let refusals = [
            client.status(pb::StatusRequest {}).await.map(drop),
            client
                .load(pb::LoadRequest {
                    manifest: manifest.clone(),
                })
                .await
                .map(drop),
            client
                .validate(pb::ValidateRequest::default())
                .await
                .map(drop),
            client
                .promote(pb::PromoteRequest::default())
                .await
                .map(drop),
            client
                .deploy(pb::DeployRequest {
                    manifest,
                    ..Default::default()
                })
                .await
                .map(drop),
            client.rollback(pb::RollbackRequest {}).await.map(drop),
            client
                .release(pb::ReleaseRequest {
                    slot: "candidate".into(),
                })
                .await
                .map(drop),
        ];
        for (i, r) in refusals.into_iter().enumerate() {
            let e = r.expect_err("refused");
            assert_eq!(e.code(), Code::Unauthenticated, "call {i}: {e:?}");
        }
    }

    let after = serde_json::to_value(server.status().await).unwrap();
    assert_eq!(after, before, "refused calls change nothing");
    let (version, _) = server
        .predict_rest(&reqwest::Client::new(), &["chef knife"])
        .await
        .unwrap();
    assert_eq!(version, "2");

    // With the token, gRPC works too.
    let mut admin = server.admin_client().await;
    let back = admin
        .rollback(pb::RollbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.live.unwrap().version, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_beyond_loopback_needs_a_token() {
    let exposed = AdminConfig {
        http_addr: "0.0.0.0:0".parse().unwrap(),
        ..AdminConfig::default()
    };
    let error = exposed.check().unwrap_err();
    assert!(
        error.contains("0.0.0.0:0") && error.contains("--admin-token"),
        "{error}"
    );
    let with_token = AdminConfig {
        token: Some(TOKEN.into()),
        ..exposed.clone()
    };
    assert!(with_token.check().is_ok());
    let empty = AdminConfig {
        token: Some(" ".into()),
        ..AdminConfig::default()
    };
    assert!(empty.check().is_err());
    assert!(
        AdminConfig::default().check().is_ok(),
        "loopback needs no token"
    );

    // The binary refuses at once, before loading anything.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args([
            "serve",
            "--manifest",
            "does-not-matter.toml",
            "--admin-grpc-addr",
            "0.0.0.0:0",
        ])
        .env_remove("LASTMILE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not loopback") && stderr.contains("--admin-token"),
        "{stderr}"
    );
}
