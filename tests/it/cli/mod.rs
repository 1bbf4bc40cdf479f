//! The `lastmile` binary as an operator uses it: `check` on good and broken manifests (one clear
//! line naming file, line, model and field; exit code 2; never a panic), `predict` and `eval` on
//! JSON Lines, with and without the ONNX Runtime library, and `bench` against a server it serves
//! or one already running.
//!
//! `check`, `score` (predict and eval) and `bench` share the helpers here.

mod bench;
pub(crate) mod cascade;
mod check;
mod score;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub(crate) use crate::support::{fasttext, fixtures, onnx};

pub(crate) fn lastmile(args: &[&str], stdin: &str) -> Output {
    lastmile_with(args, stdin, |_| {})
}

pub(crate) fn lastmile_with(args: &[&str], stdin: &str, env: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lastmile"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    env(&mut cmd);
    let mut child = cmd.spawn().expect("the lastmile binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin takes the input");
    child.wait_with_output().expect("lastmile finishes")
}

/// A manifest in a temporary directory (kept alive by the returned guard).
pub(crate) fn manifest(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, text).expect("the manifest is written");
    (dir, path.display().to_string())
}

/// Runs `check` on a manifest that must be refused; returns its one line of error.
pub(crate) fn refused(text: &str) -> String {
    let (_dir, path) = manifest(text);
    let out = lastmile(&["check", &path], "");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "check must exit 2; stderr:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout when refused");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got:\n{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(&path),
        "the error names the manifest file: {stderr}"
    );
    lines[0].to_owned()
}

/// The command exited 0 (its stderr shown when not).
pub(crate) fn assert_succeeded(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn assert_mentions(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "{line:?} should mention {part:?}");
    }
}

pub(crate) fn two_fasttext_models() -> String {
    format!(
        r#"name = "t"
version = "1"

[defaults]
fields = ["title"]

[[model]]
name = "a"
kind = "fasttext"
path = "{}"

[[model]]
name = "b"
kind = "fasttext"
path = "{}"
"#,
        fasttext("softmax.bin"),
        fasttext("ova.bin")
    )
}

/// A one-model ONNX manifest (the tf-idf fixture on `title`), with `extra` lines in its model.
pub(crate) fn onnx_manifest(extra: &str) -> String {
    format!(
        r#"name = "o"
version = "1"

[[model]]
name = "tfidf"
kind = "onnx"
path = "{}"
fields = ["title"]
{extra}
"#,
        onnx("tfidf_lr_nozipmap.onnx")
    )
}
