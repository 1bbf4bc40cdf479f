//! `lastmile deploy` as a CI pipeline uses it, against the real server: exit 0 and a summary when
//! the new ensemble is live (or already was), exit 2 with the reason and the numbers when it is
//! rejected, exit 1 when the server refuses to be asked (no token). Relative paths are resolved
//! against the caller's working directory.

use std::path::Path;
use std::process::{Command, Output};

use super::*;

async fn deploy(cwd: &Path, args: Vec<String>, token_env: Option<&str>) -> Output {
    let cwd = cwd.to_owned();
    let token_env = token_env.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lastmile"));
        cmd.arg("deploy").args(args).current_dir(cwd);
        cmd.env_remove("LASTMILE_ADMIN_TOKEN");
        if let Some(t) = token_env {
            cmd.env("LASTMILE_ADMIN_TOKEN", t);
        }
        cmd.output().expect("lastmile runs")
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_promotes_rejects_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let valid = validation_set(dir.path());
    let v1 = write(
        dir.path(),
        "v1.toml",
        &manifest_text("cli", "1", &[("a", "softmax.bin")], ""),
    );
    write(
        dir.path(),
        "v2.toml",
        &manifest_text(
            "cli",
            "2",
            &[("a", "softmax.bin"), ("b", "ova.bin")],
            "validation = \"valid.jsonl\"",
        ),
    );
    write(
        dir.path(),
        "bad.toml",
        &manifest_text("cli", "3", &[("a", "softmax.bin")], &scrambled_labels()),
    );
    let server = start(&v1, Options::default()).await;
    let base = |manifest: &str| {
        vec![
            "--server".to_owned(),
            server.admin_http.clone(),
            "--manifest".to_owned(),
            manifest.to_owned(),
        ]
    };

    // Relative to the caller's directory; validated on the manifest's own set.
    let out = deploy(
        dir.path(),
        [base("v2.toml"), vec!["--max-drop".into(), "0.05".into()]].concat(),
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout
            .contains("promoted: \"cli\" version \"2\" is live (replacing \"cli\" version \"1\")"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 shared with an ensemble already loaded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("validation on")
            && stdout.contains("60 items")
            && stdout.contains("passed"),
        "{stdout}"
    );
    assert!(stdout.contains("kept for rollback"), "{stdout}");

    // The same again: nothing to do, still success.
    let out = deploy(dir.path(), base("v2.toml"), None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("unchanged:"), "{stdout}");

    // Worse than live on the validation set: rejected, exit 2, the numbers shown.
    let out = deploy(
        dir.path(),
        [
            base("bad.toml"),
            vec!["--validation".into(), "valid.jsonl".into()],
        ]
        .concat(),
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("rejected: candidate \"cli\" version \"3\" rejected at validate"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("validation on {}", valid.display())),
        "{stdout}"
    );
    assert!(stdout.contains("candidate top-1 0.0000"), "{stdout}");
    assert!(
        stdout.contains("live: \"cli\" version \"2\" (unchanged)"),
        "{stdout}"
    );
    assert!(stderr.contains("rejected"), "{stderr}");

    // A manifest that does not exist: rejected at load, naming it.
    let out = deploy(
        dir.path(),
        [base("nowhere.toml"), vec!["--json".into()]].concat(),
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["code"], "rejected");
    assert!(
        answer["error"].as_str().unwrap().contains("nowhere.toml"),
        "{answer}"
    );
    assert_eq!(answer["status"]["live"]["version"], "2");
    assert_eq!(server.status().await.live.unwrap().version, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_needs_the_token_the_server_has() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(
        dir.path(),
        "v1.toml",
        &manifest_text("cli", "1", &[("a", "softmax.bin")], ""),
    );
    let v2 = write(
        dir.path(),
        "v2.toml",
        &manifest_text("cli", "2", &[("b", "hs.bin")], ""),
    );
    let server = start(
        &v1,
        Options {
            token: Some("s3cret".into()),
            ..Options::default()
        },
    )
    .await;
    let args = vec![
        "--server".to_owned(),
        server.admin_http.clone(),
        "--manifest".to_owned(),
        v2.display().to_string(),
    ];
    let out = deploy(dir.path(), args.clone(), None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("unauthenticated"),
        "{stderr}"
    );
    assert_eq!(server.status().await.live.unwrap().version, "1");

    let out = deploy(dir.path(), args, Some("s3cret")).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(server.status().await.live.unwrap().version, "2");
}
