//! Triton's own Python client against the real server: `tests/python/tritonclient_check.py` over
//! HTTP (JSON and binary tensors) and gRPC, its answers checked against the own API's.
//!
//! Runs when `LASTMILE_TRITONCLIENT_PYTHON` names a Python with `tritonclient[grpc,http]`
//! installed: `scripts/test` points it at `.runtime/test-venv`, which `scripts/setup.sh` makes.
//! Without it the test says so and passes, so that a bare `cargo test` needs nothing but Rust.

use std::path::Path;
use std::process::Command;

use crate::support::TestServer;
use lastmile::service::Limits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_talks_to_the_server_over_http_and_grpc() {
    let Some(python) = std::env::var_os("LASTMILE_TRITONCLIENT_PYTHON") else {
        eprintln!(
            "skipped: set LASTMILE_TRITONCLIENT_PYTHON to a Python with tritonclient[grpc,http]"
        );
        return;
    };
    let server = TestServer::start(Limits::default()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tritonclient_check.py");
    let http = server.app.http_addr.to_string();
    let grpc = server.app.grpc_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["--http", &http, "--grpc", &grpc])
            .output()
            .expect("the Python interpreter starts")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tritonclient checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
