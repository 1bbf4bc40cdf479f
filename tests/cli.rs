//! The `lastmile` binary as an operator uses it: `check` on good and broken manifests (one clear
//! line naming file, line, model and field; exit code 2; never a panic), and `predict` on JSON
//! Lines, with and without the ONNX Runtime library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fasttext(name: &str) -> String {
    fixtures().join("fasttext").join(name).display().to_string()
}

fn onnx(name: &str) -> String {
    fixtures().join("onnx").join(name).display().to_string()
}

fn lastmile(args: &[&str], stdin: &str) -> Output {
    lastmile_with(args, stdin, |_| {})
}

fn lastmile_with(args: &[&str], stdin: &str, env: impl FnOnce(&mut Command)) -> Output {
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
fn manifest(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, text).expect("the manifest is written");
    (dir, path.display().to_string())
}

/// Runs `check` on a manifest that must be refused; returns its one line of error.
fn refused(text: &str) -> String {
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

fn assert_mentions(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "{line:?} should mention {part:?}");
    }
}

fn two_fasttext_models() -> String {
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

#[test]
fn check_summarises_a_good_manifest() {
    let (_dir, path) = manifest(&two_fasttext_models());
    let out = lastmile(&["check", &path], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_mentions(
        &stdout,
        &[
            "ok: t version 1",
            "2 models (2 fasttext, 0 onnx)",
            "10 labels",
        ],
    );
}

#[test]
fn missing_model_file_is_named() {
    let text = two_fasttext_models().replace(&fasttext("ova.bin"), "nowhere/ova.bin");
    let line = refused(&text);
    assert_mentions(
        &line,
        &[
            ":15:",
            "model \"b\"",
            "field `path`",
            "nowhere/ova.bin",
            "does not exist",
        ],
    );
}

#[test]
fn unknown_kind_is_named() {
    let text = two_fasttext_models().replacen("kind = \"fasttext\"", "kind = \"tensorflow\"", 1);
    let line = refused(&text);
    assert_mentions(
        &line,
        &[
            ":9:",
            "model \"a\"",
            "field `kind`",
            "tensorflow",
            "fasttext",
        ],
    );
}

#[test]
fn duplicate_model_name_is_named() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"a\"");
    let line = refused(&text);
    assert_mentions(
        &line,
        &[":12:", "model \"a\"", "field `name`", "duplicate", "line 7"],
    );
}

#[test]
fn toml_syntax_error_gives_the_line() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b");
    let line = refused(&text);
    assert_mentions(&line, &[":13"]);
}

#[test]
fn unknown_model_key_is_named() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nwieght = 2");
    let line = refused(&text);
    assert_mentions(&line, &["model \"b\"", "wieght"]);
}

#[test]
fn onnx_keys_on_a_fasttext_model_are_refused() {
    let text =
        two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nlabels_file = \"x.txt\"");
    let line = refused(&text);
    assert_mentions(
        &line,
        &[":14:", "model \"b\"", "field `labels_file`", "only ONNX"],
    );
}

fn onnx_manifest(extra: &str) -> String {
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

#[test]
fn label_file_not_matching_the_output_width_is_named() {
    let (dir, _) = manifest("");
    let labels = dir.path().join("three.txt");
    std::fs::write(&labels, "a\nb\nc\n").unwrap();
    let line = refused(&onnx_manifest(&format!(
        "labels_file = \"{}\"",
        labels.display()
    )));
    assert_mentions(&line, &["model \"tfidf\"", "field `labels_file`", "3", "5"]);
}

#[test]
fn label_that_is_not_utf8_is_named() {
    let (dir, _) = manifest("");
    let labels = dir.path().join("bad.txt");
    std::fs::write(
        &labels,
        b"apparel\nbooks\nelec\xfftronics\nhome_garden\ntoys\n",
    )
    .unwrap();
    let line = refused(&onnx_manifest(&format!(
        "labels_file = \"{}\"",
        labels.display()
    )));
    assert_mentions(
        &line,
        &["model \"tfidf\"", "field `labels_file`", "line 3", "UTF-8"],
    );
}

#[test]
fn binding_to_a_tensor_the_model_lacks_is_named() {
    let extra = format!(
        "labels_file = \"{}\"\ninput = \"no_such_input\"",
        onnx("tfidf_lr_nozipmap.labels.txt")
    );
    let line = refused(&onnx_manifest(&extra));
    assert_mentions(
        &line,
        &["model \"tfidf\"", "field `input`", "no_such_input"],
    );
}

#[test]
fn onnx_model_without_a_label_source_is_refused() {
    let line = refused(&onnx_manifest(""));
    assert_mentions(&line, &[":4:", "model \"tfidf\"", "labels_file"]);
}

#[test]
fn vote_configuration_errors_are_refused_with_their_place() {
    let base = two_fasttext_models();
    let cases: [(&str, &[&str]); 7] = [
        ("[vote]\nstrategy = \"plurality\"\n", &[":17:", "plurality", "soft"]),
        (
            "[[rule]]\ntype = \"deny\"\nlabels = [\"no_such_label\"]\n",
            &[":18:", "rule 1 (deny)", "no_such_label"],
        ),
        (
            "[[rule]]\ntype = \"keyword\"\nfield = \"brand\"\nkeywords = [\"x\"]\nlabel = \"laptops\"\naction = \"exclude\"\n",
            &["rule 1 (keyword)", "brand", "title"],
        ),
        (
            "[[rule]]\ntype = \"regex\"\nfield = \"title\"\npattern = \"(unclosed\"\nlabel = \"laptops\"\naction = \"exclude\"\n",
            &["rule 1 (regex)", "pattern"],
        ),
        ("[vote.groups.empty]\nstrategy = \"soft\"\n", &["vote.groups.empty", "no models"]),
        ("", &[]),
        ("", &[]),
    ];
    for (extra, parts) in cases.iter().filter(|c| !c.0.is_empty()) {
        let line = refused(&format!("{base}\n{extra}"));
        assert_mentions(&line, parts);
    }
    let negative = base.replace("name = \"b\"", "name = \"b\"\nweight = -1");
    assert_mentions(
        &refused(&negative),
        &["model \"b\"", "field `weight`", ">= 0"],
    );
    let nan = base.replace("name = \"b\"", "name = \"b\"\nweight = nan");
    assert_mentions(&refused(&nan), &["model \"b\"", "field `weight`"]);
}

#[test]
fn predict_answers_what_the_model_answers() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nweight = 0");
    let (_dir, path) = manifest(&text);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("fasttext/expected.json")).unwrap(),
    )
    .unwrap();
    let case = &expected["softmax.bin"][0];
    let input = format!(
        "{}\n",
        serde_json::json!({"id": "q1", "title": case["text"]})
    );
    let out = lastmile(&["predict", "--manifest", &path, "--top-k", "3"], &input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(answer["id"], "q1");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for (ours, official) in predictions
        .iter()
        .zip(case["predictions"].as_array().unwrap())
    {
        assert_eq!(ours["label"], official[0]);
        let diff = ours["score"].as_f64().unwrap() - official[1].as_f64().unwrap();
        assert!(diff.abs() < 1e-5, "{ours} vs {official}");
    }
}

#[test]
fn predict_reports_bad_lines_and_goes_on() {
    let (_dir, path) = manifest(&two_fasttext_models());
    let input = "{\"id\":1,\"title\":\"chef knife\"}\nnot json\n{\"id\":3,\"title\":7}\n{\"id\":4,\"other\":\"x\"}\n\n{\"id\":5,\"title\":\"tent\"}\n";
    let out = lastmile(&["predict", "--manifest", &path, "--explain"], input);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5, "one answer per non-blank line");
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["predictions"].as_array().unwrap().len(), 5);
    assert_eq!(lines[0]["models"].as_array().unwrap().len(), 2);
    assert!(lines[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("line 2: not JSON"));
    assert_eq!(lines[2]["id"], 3);
    assert!(lines[2]["error"]
        .as_str()
        .unwrap()
        .contains("field \"title\""));
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .contains("none of the fields"));
    assert_eq!(lines[4]["id"], 5);
    assert!(lines[4]["predictions"].is_array());
}

/// Runs `predict` in a process that cannot find the ONNX Runtime library.
fn predict_without_onnxruntime(manifest_text: &str) -> Output {
    let (_dir, path) = manifest(manifest_text);
    lastmile_with(
        &["predict", "--manifest", &path],
        "{\"title\":\"tent\"}\n",
        |cmd| {
            cmd.env_remove("ORT_DYLIB_PATH")
                .env_remove("LD_LIBRARY_PATH");
        },
    )
}

#[test]
fn fasttext_only_manifest_needs_no_onnxruntime() {
    let out = predict_without_onnxruntime(&two_fasttext_models());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["predictions"][0]["label"], "camping_tents");
}

#[test]
fn onnx_manifest_without_onnxruntime_says_how_to_install_it() {
    let extra = format!("labels_file = \"{}\"", onnx("tfidf_lr_nozipmap.labels.txt"));
    let out = predict_without_onnxruntime(&onnx_manifest(&extra));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_mentions(
        &stderr,
        &[
            "model \"tfidf\"",
            "ONNX Runtime library not found",
            "scripts/setup.sh",
            "ORT_DYLIB_PATH",
        ],
    );
}

#[test]
fn eval_of_a_one_model_ensemble_equals_the_model() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nweight = 0");
    let (dir, path) = manifest(&text);
    // The fixtures' validation lines, as labelled JSON Lines.
    let valid = std::fs::read_to_string(fixtures().join("fasttext/valid.txt")).unwrap();
    let mut data = String::new();
    for line in valid.lines().take(30) {
        let (labels, words): (Vec<&str>, Vec<&str>) = line
            .split_whitespace()
            .partition(|t| t.starts_with("__label__"));
        let label = labels[0].trim_start_matches("__label__");
        data += &format!(
            "{}\n",
            serde_json::json!({"title": words.join(" "), "label": label})
        );
    }
    let data_path = dir.path().join("valid.jsonl");
    std::fs::write(&data_path, data).unwrap();
    let out = lastmile(
        &[
            "eval",
            "--manifest",
            &path,
            "--data",
            data_path.to_str().unwrap(),
            "--json",
        ],
        "",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["items"], 30);
    let model = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "a")
        .unwrap();
    for metric in ["top1", "top5", "macro_f1"] {
        assert_eq!(report["overall"][metric], model[metric], "{metric}");
    }
    assert!(
        model["top1"].as_f64().unwrap() > 0.8,
        "the fixture model is good: {model}"
    );
}

#[test]
fn eval_names_the_bad_line_of_its_data() {
    let (dir, path) = manifest(&two_fasttext_models());
    let data_path = dir.path().join("bad.jsonl");
    std::fs::write(
        &data_path,
        "{\"title\":\"tent\",\"label\":\"camping_tents\"}\n{\"title\":\"tent\"}\n",
    )
    .unwrap();
    let out = lastmile(
        &[
            "eval",
            "--manifest",
            &path,
            "--data",
            data_path.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_mentions(&stderr, &["bad.jsonl:2", "label"]);
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
    let (dir, path) = manifest(&two_fasttext_models());
    let data = dir.path().join("items.jsonl");
    std::fs::write(
        &data,
        "{\"title\":\"chef knife\"}\n{\"title\":\"camping tent\",\"label\":\"x\"}\n",
    )
    .unwrap();
    let out = bench(&path, &data, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let (dir, path) = manifest(&two_fasttext_models());
    let data = dir.path().join("items.jsonl");
    std::fs::write(
        &data,
        "{\"title\":\"chef knife\"}\n{\"title\":\"camping tent\"}\n",
    )
    .unwrap();
    let served = Served::start(&path);
    let running = ["--rest", &served.rest, "--grpc", &served.grpc];
    let out = bench(&path, &data, &running);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
