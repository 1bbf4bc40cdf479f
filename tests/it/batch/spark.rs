//! The Spark helpers (`clients/python`, package `lastmile_client`) in a real local PySpark 4.3
//! session: `tests/python/spark_check.py` scores a few thousand rows through `predict_udf` over
//! the own gRPC API and over the Open Inference Protocol (tritonclient) against the real server
//! started here, and through `batch_map` (mapInArrow piping partitions through this build's
//! `lastmile batch`), and checks every answer against `lastmile predict`'s.
//!
//! The server admits few items at once, so the helpers' requests are refused as overloaded and
//! retried with back-off; a few rows have none of the ensemble's fields, so requests are split
//! to isolate them (their rows get an error, the others their answers).
//!
//! Runs when `LASTMILE_SPARK_PYTHON` names the Python of `.runtime/spark-venv` (which
//! `scripts/setup.d/30-spark.sh` makes and `scripts/test` points it at); without it the test
//! says so and passes, so that a bare `cargo test` needs nothing but Rust.

use super::*;
use crate::support::TestServer;
use lastmile::service::Limits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_helpers_score_a_dataframe_as_lastmile_predict_does() {
    let Some(python) = std::env::var_os("LASTMILE_SPARK_PYTHON") else {
        eprintln!("skipped: set LASTMILE_SPARK_PYTHON to the Python of .runtime/spark-venv");
        return;
    };
    let (_dir, at) = temp();
    let mut lines: Vec<Value> = items(3000).iter().map(Item::json).collect();
    for i in (7..lines.len()).step_by(500) {
        lines[i] = json!({"id": format!("item-{i}")});
    }
    write_jsonl(&at("items.jsonl"), &lines);
    let expected = tokio::task::spawn_blocking({
        let lines = lines.clone();
        move || predict(&lines, &["--top-k", "3"])
    })
    .await
    .unwrap();
    write_jsonl(&at("expected.jsonl"), &expected);

    let server = TestServer::start(Limits {
        max_items_in_flight: 48,
        ..Limits::default()
    })
    .await;
    let script = crate::support::root().join("tests/python/spark_check.py");
    let grpc = server.app.grpc_addr.to_string();
    let (items, expected) = (at("items.jsonl"), at("expected.jsonl"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(script)
            .args(["--grpc", &grpc, "--binary", env!("CARGO_BIN_EXE_lastmile")])
            .arg("--manifest")
            .arg(starter())
            .arg("--items")
            .arg(items)
            .arg("--expected")
            .arg(expected)
            .args(["--top-k", "3"])
            .env("PYSPARK_PYTHON", &python)
            .output()
            .expect("the Spark venv's Python starts")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("4 passed, 0 failed"),
        "the Spark checks failed:\n{stdout}\n{}",
        stderr.lines().rev().take(60).collect::<Vec<_>>().join("\n")
    );
    eprintln!("{stdout}");
}
