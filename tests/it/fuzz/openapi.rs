//! schemathesis against the served `/openapi.json`: every request the document allows is
//! served, every request it forbids is refused with a 4xx, no answer is a 5xx (but the 504 the
//! document gives for a request's own passed deadline), and every answer conforms to the
//! document. The configuration and its two exceptions are in `tests/fuzz/schemathesis.toml`.
//!
//! Runs when `LASTMILE_SCHEMATHESIS` names the schemathesis CLI: `scripts/test` points it at
//! `.runtime/schemathesis-venv` (`scripts/setup.d/45-schemathesis.sh`). Without it the test
//! says so and passes, so that a bare `cargo test` needs nothing but Rust. Examples per
//! operation: `LASTMILE_SCHEMATHESIS_EXAMPLES` (default 100, CI's short run).

use std::process::Command;

use crate::support::{root, TestServer};
use lastmile::service::Limits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_openapi_document_allows_is_served_as_it_says() {
    let Some(cli) = std::env::var_os("LASTMILE_SCHEMATHESIS") else {
        eprintln!("skipped: set LASTMILE_SCHEMATHESIS to the schemathesis CLI");
        return;
    };
    let examples = std::env::var("LASTMILE_SCHEMATHESIS_EXAMPLES").unwrap_or("100".into());
    let server = TestServer::start(Limits::default()).await;
    let url = format!("{}/openapi.json", server.http);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(cli)
            .arg("--config-file")
            .arg(root().join("tests/fuzz/schemathesis.toml"))
            .args(["--no-color", "run", &url, "--max-examples", &examples])
            // Its own report and cache stay out of the tree.
            .current_dir(std::env::temp_dir())
            .output()
            .expect("schemathesis starts")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("No issues found"),
        "schemathesis found what the document and the server disagree on:\n{stdout}\n{stderr}"
    );
    let summary = stdout
        .lines()
        .filter(|l| l.contains("generated"))
        .collect::<Vec<_>>();
    assert!(
        summary.iter().any(|l| l.contains("passed")),
        "schemathesis ran cases:\n{stdout}"
    );
    eprintln!("schemathesis: {}", summary.join(" "));
}
