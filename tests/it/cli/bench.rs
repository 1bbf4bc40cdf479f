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

/// A `lastmile serve` on free loopback ports; killed when dropped.
struct Served {
    child: std::process::Child,
    rest: String,
    grpc: String,
}

impl Served {
    fn start(manifest: &str) -> Served {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_lastmile"))
            .args(["serve", "--manifest", manifest])
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .args([
                "--admin-addr",
                "127.0.0.1:0",
                "--admin-grpc-addr",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the lastmile binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (mut rest, mut grpc) = (None, None);
        let mut lines = std::io::BufReader::new(stdout).lines();
        // The server prints where it listens once it does.
        for line in &mut lines {
            let line = line.expect("the server's stdout reads");
            let address = |prefix: &str| {
                let rest = line.trim_start().strip_prefix(prefix)?;
                rest.split_whitespace().next().map(str::to_owned)
            };
            rest = rest.or_else(|| address("REST  "));
            grpc = grpc.or_else(|| address("gRPC  ").map(|a| format!("http://{a}")));
            if rest.is_some() && grpc.is_some() {
                break;
            }
        }
        // Whatever it prints later must find the pipe open.
        std::thread::spawn(move || lines.for_each(drop));
        Served {
            rest: rest.expect("the server printed its REST address"),
            grpc: grpc.expect("the server printed its gRPC address"),
            child,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bench_drives_a_server_already_running_and_refuses_another_ensemble() {
    let (dir, path, data) =
        two_models_and_items("{\"title\":\"chef knife\"}\n{\"title\":\"camping tent\"}\n");
    let served = Served::start(&path);
    let running = ["--rest", &served.rest, "--grpc", &served.grpc];
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
