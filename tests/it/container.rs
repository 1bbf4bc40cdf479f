//! The container image (`Dockerfile`): hadolint finds nothing in it; built from local bases
//! (`scripts/container/local-bases`, debootstrap) with podman, it serves the starter ensemble
//! mounted at `/models` with the binary's answers, ready on `/v2/health/ready`; its `serve`
//! argument alone is SageMaker's contract on `/opt/ml/model` (`/ping`, `/invocations`); on SIGTERM
//! it drains and exits 0. Prints the build time and the image's size.
//!
//! hadolint: `LASTMILE_HADOLINT` names it (`scripts/test` points it at
//! `.runtime/hadolint-venv`, `scripts/setup.d/50-hadolint.sh`). The image: only where `podman`,
//! `runc` and `debootstrap` are installed (and as root); otherwise the test says so and passes,
//! since a clean build takes minutes (README, "Container").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};

use crate::support::child::Served;
use crate::support::{fixtures, root, starter};

const IMAGE: &str = "localhost/lastmile:test";
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let Some(hadolint) = std::env::var_os("LASTMILE_HADOLINT") else {
        eprintln!("skipped: set LASTMILE_HADOLINT to hadolint (scripts/test does)");
        return;
    };
    // Run from the root so that it reads .hadolint.yaml.
    let out = Command::new(hadolint)
        .current_dir(root())
        .args(["--no-color", "Dockerfile"])
        .output()
        .expect("hadolint runs");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `podman` with the runtime and rlimits this kind of machine needs (shared/DESIGN.md).
fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(["--runtime", "runc"]);
    command
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

fn run(mut command: Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the image from the local bases; the build's seconds.
fn build() -> f64 {
    let mut bases = Command::new(root().join("scripts/container/local-bases"));
    bases.current_dir(root());
    let bases = run(bases, "scripts/container/local-bases");
    let mut lines = bases.lines();
    let (base, builder) = (lines.next().unwrap(), lines.next().unwrap());
    let started = Instant::now();
    let mut command = podman();
    command
        .current_dir(root())
        .args(["build", "--format", "docker", "--network", "host"])
        .args(ULIMITS)
        .args(["--build-arg", &format!("BASE={base}")])
        .args(["--build-arg", &format!("BUILDER={builder}")])
        .args(["-t", IMAGE, "."]);
    run(command, "podman build");
    started.elapsed().as_secs_f64()
}

/// A container of the image, removed when dropped.
struct Container {
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.name]).output();
    }
}

/// The image run with `mounts` (host path, container path) and `env`, with `args` after the
/// entrypoint; every listener on a free port of the host's network.
fn serve_in_container(
    mounts: &[(&Path, &str)],
    env: &[(&str, &str)],
    args: &[&str],
) -> (Container, Served) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let container = Container {
        name: format!("lastmile-test-{}-{n}", std::process::id()),
    };
    let mut command = podman();
    command
        .args([
            "run",
            "--rm",
            "--no-healthcheck",
            "--name",
            &container.name,
            "--network",
            "host",
        ])
        .args(ULIMITS);
    for (host, inside) in mounts {
        command
            .arg("-v")
            .arg(format!("{}:{inside}:ro", host.display()));
    }
    for (key, value) in env {
        command.arg("-e").arg(format!("{key}={value}"));
    }
    command.arg(IMAGE).args(args);
    let served = Served::spawn(command);
    (container, served)
}

/// The starter manifest with its fixtures at `fixtures/` beside it, written to `dir`.
fn starter_for_container(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(starter()).unwrap();
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text.replace("../../tests/fixtures", "fixtures")).unwrap();
    path
}

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post(url: String, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn items() -> Value {
    json!({"items": [
        {"title": "steel chef knife", "description": "forged blade for the kitchen"},
        {"title": "running shoes"},
        {"title": "garden hose", "description": "30 m with spray nozzle"},
        {"title": "wireless headphones"},
    ], "top_k": 3})
}

/// Each item's predictions (labels and scores), as `/v1/predict` or `/invocations` answer them.
fn predictions(body: &Value) -> Vec<Value> {
    let items = body["items"]
        .as_array()
        .or_else(|| body["predictions"].as_array())
        .unwrap_or_else(|| panic!("no items in {body}"));
    items.iter().map(|i| i["predictions"].clone()).collect()
}

/// SIGTERM to `podman run`, which hands it to lastmile (PID 1): it drains and exits 0, which is
/// also `podman run`'s exit code (it would not be 0 had the drain timed out).
fn stops_cleanly(served: Served) {
    served.signal("TERM");
    let said = served.log();
    assert_eq!(
        served.wait(),
        Some(0),
        "exit code after SIGTERM; log:\n{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_the_starter_like_the_binary_and_drains_on_sigterm() {
    let missing: Vec<&str> = ["podman", "runc", "debootstrap"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "skipped: the container test needs {} (apt-get install -y podman runc debootstrap)",
            missing.join(", ")
        );
        return;
    }
    let seconds = tokio::task::spawn_blocking(build).await.unwrap();
    let mut command = podman();
    command.args(["image", "inspect", IMAGE]);
    let inspected: Value = serde_json::from_str(&run(command, "podman image inspect")).unwrap();
    let image = &inspected[0];
    let size = image["Size"].as_f64().unwrap();
    eprintln!(
        "container: built {IMAGE} in {seconds:.0} s; image size {:.1} MB",
        size / 1e6
    );
    let config = &image["Config"];
    assert_eq!(
        config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"],
        "true"
    );
    assert_eq!(config["User"], "10001:10001", "not root");
    assert_eq!(config["Entrypoint"], json!(["/usr/local/bin/lastmile"]));
    for port in ["8000/tcp", "8001/tcp", "8080/tcp"] {
        assert!(config["ExposedPorts"].get(port).is_some(), "EXPOSE {port}");
    }
    let health = image["Healthcheck"]["Test"].to_string();
    assert!(health.contains("/v2/health/ready"), "{health}");

    let binary = Served::start(&starter());
    let url = format!("http://{}/v1/predict", binary.rest);
    let expected = predictions(&post(url, &items()).await);
    assert_eq!(expected.len(), 4);

    let dir = tempfile::tempdir().unwrap();
    let manifest = starter_for_container(dir.path());
    let fixtures = fixtures();
    let listeners = [
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-grpc-addr",
        "127.0.0.1:0",
    ];

    // The models and the manifest at /models, as the image's default command reads them.
    let mut args = vec!["serve", "--manifest", "/models/manifest.toml"];
    args.extend(listeners);
    args.extend(["--drain-timeout", "10"]);
    let (_container, served) = serve_in_container(
        &[
            (&manifest, "/models/manifest.toml"),
            (&fixtures, "/models/fixtures"),
        ],
        &[],
        &args,
    );
    let (status, _) = get(format!("http://{}/v2/health/ready", served.rest)).await;
    assert_eq!(status, 200, "ready; log:\n{}", served.log());
    let url = format!("http://{}/v1/predict", served.rest);
    assert_eq!(predictions(&post(url, &items()).await), expected);
    stops_cleanly(served);

    // `serve` alone: SageMaker's contract, the models at /opt/ml/model, the port it is given.
    let (_container, served) = serve_in_container(
        &[
            (&manifest, "/opt/ml/model/manifest.toml"),
            (&fixtures, "/opt/ml/model/fixtures"),
        ],
        &[
            ("SAGEMAKER_BIND_TO_PORT", "0"),
            ("LASTMILE_GRPC_ADDR", "127.0.0.1:0"),
            ("LASTMILE_ADMIN_ADDR", "127.0.0.1:0"),
            ("LASTMILE_ADMIN_GRPC_ADDR", "127.0.0.1:0"),
            ("LASTMILE_DRAIN_TIMEOUT", "10"),
        ],
        &["serve"],
    );
    let port = served.rest.rsplit(':').next().unwrap().to_owned();
    let local = |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert_eq!(
        get(local("/ping")).await,
        (200, String::new()),
        "{}",
        served.log()
    );
    assert_eq!(get(local("/v2/health/ready")).await.0, 200);
    let answer = post(local("/invocations"), &items()).await;
    assert_eq!(predictions(&answer), expected);
    stops_cleanly(served);
}
