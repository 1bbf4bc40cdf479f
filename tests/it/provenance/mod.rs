//! Where an answer came from, against a real MLflow server: models resolved from the registry by
//! version, alias and run (`registry`), their provenance and the ensemble digest on every path
//! that describes or answers (`shown`), lock files and the cache (`lock`), an alias moved and the
//! new version deployed through the gate, and runs logged by eval and the gate, read back with
//! MLflow's own Python client (`logged`), and every bad source rejected with live unchanged
//! (`bad`).
//!
//! One `mlflow server` (sqlite backend, local artifacts, loopback, a free port) serves every test
//! here: [`mlflow`] starts it on first use and registers the fixtures ([`register.py`]). It runs
//! under a supervisor that stops its whole process group as soon as the test process's end
//! closes the supervisor's stdin, whether the tests passed, failed or were killed. It needs
//! `.runtime/mlflow-venv` (scripts/setup.d/40-mlflow.sh, run by scripts/setup.sh and
//! scripts/test): without it the tests fail, never skip.

mod bad;
mod lock;
mod logged;
mod registry;
mod shown;

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use lastmile::ensemble::{Ensemble, Loader, LockMode, Sources};
use lastmile::mlflow::TrackingConfig;
use serde_json::Value;

pub(crate) use crate::support::{fasttext, fixtures, onnx, root, write};

/// The tests' MLflow server.
pub(crate) struct Mlflow {
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
    /// Run ids of the fixture runs (`a`, `b`, `onnx`, ...), for `runs:/` URIs.
    pub runs: Value,
    /// Holding it keeps the server up; the process's end closes it, which stops the server.
    _stdin: Mutex<ChildStdin>,
    _supervisor: Mutex<Child>,
    _dir: tempfile::TempDir,
}

static SERVER: OnceLock<Mlflow> = OnceLock::new();

/// The MLflow virtual environment's Python (installed by the set-up part).
pub(crate) fn python() -> PathBuf {
    let python = root().join(".runtime/mlflow-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup.sh (scripts/setup.d/40-mlflow.sh installs MLflow)",
        python.display()
    );
    python
}

/// A port nobody listens on now (bound, read, released).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The server, started (and the fixtures registered) by the first test that asks.
pub(crate) fn mlflow() -> &'static Mlflow {
    SERVER.get_or_init(start)
}

fn start() -> Mlflow {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let here = root().join("tests/it/provenance");
    let mut supervisor = Command::new(python())
        .arg(here.join("supervise.py"))
        .arg(port.to_string())
        .arg(dir.path())
        .stdin(Stdio::piped())
        .spawn()
        .expect("the MLflow supervisor starts");
    let stdin = supervisor.stdin.take().unwrap();
    let uri = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Some(status) = supervisor.try_wait().unwrap() {
            panic!(
                "mlflow server exited ({status}): {}",
                server_log(dir.path())
            );
        }
        let healthy = reqwest::blocking::get(format!("{uri}/health"))
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if healthy {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "mlflow server did not answer in 180 s: {}",
            server_log(dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let registered = run_python(
        &uri,
        &[
            here.join("register.py").display().to_string(),
            fixtures().display().to_string(),
        ],
    );
    let runs = serde_json::from_str(registered.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("register.py printed {registered:?}: {e}"));
    Mlflow {
        uri,
        runs,
        _stdin: Mutex::new(stdin),
        _supervisor: Mutex::new(supervisor),
        _dir: dir,
    }
}

fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// Runs the MLflow venv's Python with `args` against the server at `uri`; its stdout.
fn run_python(uri: &str, args: &[String]) -> String {
    let out = Command::new(python())
        .args(args)
        .env("MLFLOW_TRACKING_URI", uri)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

impl Mlflow {
    /// Runs `code` with MLflow's Python client (`client` is an `MlflowClient`); its stdout.
    pub fn python(&self, code: &str) -> String {
        let program = format!(
            "import json, mlflow\nfrom mlflow import MlflowClient\nclient = MlflowClient()\n{code}"
        );
        run_python(&self.uri, &["-c".into(), program])
    }

    /// Points `alias` of registered model `model` at `version`, as a team would.
    pub fn move_alias(&self, model: &str, alias: &str, version: u32) {
        self.python(&format!(
            "client.set_registered_model_alias({model:?}, {alias:?}, \"{version}\")"
        ));
    }

    /// Run id of fixture run `key`.
    pub fn run(&self, key: &str) -> String {
        self.runs[key].as_str().expect("a fixture run").to_owned()
    }

    /// Sources with the cache at `cache` (the tracking server comes from the manifest).
    pub fn sources(&self, cache: &Path) -> Sources {
        Sources {
            cache: Some(cache.to_owned()),
            tracking: TrackingConfig::default(),
            lock: LockMode::Obey,
        }
    }
}

/// A manifest named `name` with `[mlflow] tracking_uri = uri` and one fastText model per
/// `(model, path)` (a registry URI or a file), reading `title`; `extra` goes after each model.
pub(crate) fn registry_manifest(
    uri: &str,
    name: &str,
    models: &[(&str, &str)],
    extra: &str,
) -> String {
    let mut text = format!(
        "name = \"{name}\"\nversion = \"1\"\n\n[mlflow]\ntracking_uri = \"{uri}\"\n\n[defaults]\nfields = [\"title\"]\n"
    );
    for (model, path) in models {
        text += &format!(
            "\n[[model]]\nname = \"{model}\"\nkind = \"fasttext\"\npath = \"{path}\"\n{extra}"
        );
    }
    text
}

/// Loads `manifest` (blocking) with files from `sources`.
pub(crate) fn load(manifest: &Path, sources: Sources) -> Result<Ensemble, String> {
    let loader = Loader {
        threads: 2,
        sources,
    };
    Ensemble::load_with(manifest, &loader, &[]).map_err(|e| e.to_string())
}

/// sha256 of a fixture file.
pub(crate) fn sha_of(path: &str) -> String {
    lastmile::ensemble::sha256_hex(&std::fs::read(path).unwrap())
}

/// Runs the `lastmile` binary; (exit code, stdout, stderr).
pub(crate) fn lastmile(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lastmile"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the lastmile binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Lines of `text` holding `needle`, for messages.
pub(crate) fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// The answers `ensemble` gives `titles` (top 3), straight from a compute pool.
pub(crate) fn answers(ensemble: Ensemble, titles: &[String]) -> Vec<crate::support::Answer> {
    let pool = lastmile::scheduler::ComputePool::new(2).unwrap();
    let ensemble = std::sync::Arc::new(ensemble);
    let items = titles
        .iter()
        .map(|t| crate::support::title_item(&ensemble, t, 3))
        .collect();
    let answers = pool
        .predict(&ensemble, items)
        .wait()
        .expect("the ensemble answers");
    answers
        .iter()
        .map(crate::support::Answer::from_lib)
        .collect()
}
