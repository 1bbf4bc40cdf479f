//! `lastmile bench`: driving a server it serves, and one already running.

use super::*;

/// The two fastText fixtures' manifest, and `items` (JSON Lines) beside it.
fn two_models_and_items(items: &str) -> (tempfile::TempDir, String, PathBuf) {
    let (dir, path) = manifest(&two_fasttext_models());
    let data = dir.path().join("items.jsonl");
    std::fs::write(&data, items).unwrap();
    (dir, path, data)
}

/// `lastmile bench` on `manifest` over `data`, kept short (levels of 1 and 2 clients, a small
/// floor), with `extra` arguments.
fn bench(manifest: &str, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "bench",
        "--manifest",
        manifest,
        "--data",
        data.to_str().unwrap(),
        "--duration",
        "0.2",
        "--concurrency",
        "1,2",
        "--floor-rows",
        "8",
    ];
    args.extend_from_slice(extra);
    lastmile(&args, "")
}

/// The load levels' rows of a bench report, each checked to have had no failed request (its
/// last column, errors, is 0).
fn level_rows(stdout: &str) -> Vec<&str> {
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| gRPC") || l.starts_with("| REST"))
        .collect();
    for row in &rows {
        assert!(
            row.trim_end().ends_with("| 0 |"),
            "no failed request: {row}"
        );
    }
    rows
}

#[test]
fn bench_drives_a_server_over_both_transports_without_errors() {
    let (_dir, path, data) = two_models_and_items(
        "{\"title\":\"chef knife\"}\n{\"title\":\"camping tent\",\"label\":\"x\"}\n",
    );
    let out = bench(&path, &data, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_succeeded(&out);
    assert_mentions(
        &stdout,
        &[
            "Bare floor",
            "| gRPC | 1 |",
            "| REST | 2 |",
            "batching off",
            "batching on then off, back to back",
            "just before",
            "just after",
            "cores %: compute / server I/O / clients",
            "the load generator took",
        ],
    );
    // Four levels batching on; one client and the busiest level batching off.
    assert_eq!(level_rows(&stdout).len(), 6, "{stdout}");
}

#[test]
fn bench_drives_a_server_already_running_and_refuses_another_ensemble() {
    let (dir, path, data) =
        two_models_and_items("{\"title\":\"chef knife\"}\n{\"title\":\"camping tent\"}\n");
    let served = crate::support::child::Served::start(Path::new(&path));
    let rest = format!("http://{}", served.rest);
    let running = ["--rest", &rest, "--grpc", &served.grpc];
    let out = bench(&path, &data, &running);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_succeeded(&out);
    assert_mentions(&stdout, &["already running at", &served.rest, "Bare floor"]);
    let rows = level_rows(&stdout);
    // Two levels per transport; batching off needs the ensemble served here, so none.
    assert_eq!(rows.len(), 4, "{stdout}");
    for row in rows {
        // The model columns come from the running server's /metrics.
        assert!(
            !row.contains("| - | - | - |"),
            "the server's metrics read: {row}"
        );
    }

    // A floor of other models says nothing about this server.
    let other = two_fasttext_models().replacen("name = \"t\"", "name = \"u\"", 1);
    let other_path = dir.path().join("other.toml");
    std::fs::write(&other_path, other).unwrap();
    let out = bench(other_path.to_str().unwrap(), &data, &running);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_mentions(&stderr, &["serves ensemble t version 1", "--manifest is u"]);
}

#[test]
fn bench_overload_accounts_for_every_request_offered_with_and_without_shedding() {
    let (_dir, path, data) = two_models_and_items("{\"title\":\"chef knife\"}\n");
    let out = bench(&path, &data, &["--overload", "--max-queue-wait", "50"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_succeeded(&out);
    assert_mentions(
        &stdout,
        &["offered open-loop over gRPC", "2× the saturation"],
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| --max-queue-wait"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 2, "off and on: {stdout}");
    assert!(
        rows[0][1].contains("0 (off)") && rows[1][1].contains("50"),
        "{stdout}"
    );
    // Every request offered ends answered, shed or failed: none is lost.
    let count = |cell: &str| -> usize { cell.split(' ').next().unwrap().parse().unwrap() };
    for row in &rows {
        let (offered, answered, shed, failed) =
            (count(row[2]), count(row[3]), count(row[4]), count(row[5]));
        assert!(offered > 0, "{stdout}");
        assert_eq!(offered, answered + shed + failed, "{stdout}");
        assert_eq!(failed, 0, "only answers and sheds: {stdout}");
    }
}
