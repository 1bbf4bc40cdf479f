//! Resuming: a run killed with SIGKILL once it has committed a chunk, then rerun with
//! `--resume`, ends with an output byte-identical to a run never stopped, in every resumable
//! format; SIGINT stops cleanly with the checkpoint left; an unfinished output is not overwritten
//! without `--resume`, nor resumed with other settings.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use super::*;

/// Rows slow enough (one thread, one small chunk in flight) that a run is still going when its
/// first commit is seen.
const SLOW: [&str; 6] = ["--threads", "1", "--in-flight", "1", "--chunk-rows", "16"];

fn args<'a>(input: &'a Path, output: &'a Path, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "batch".into(),
        "--manifest".into(),
        starter().display().to_string(),
        "--input".into(),
        input.display().to_string(),
        "--output".into(),
        output.display().to_string(),
        "--quiet".into(),
    ];
    a.extend(SLOW.iter().map(|s| s.to_string()));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn checkpoint_of(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap().to_owned();
    name.push(".lastmile-checkpoint");
    output.with_file_name(name)
}

/// Starts a run and waits until its checkpoint exists; None if the run ended first.
fn start_and_wait_for_commit(
    input: &Path,
    output: &Path,
    extra: &[&str],
) -> Option<std::process::Child> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(args(input, output, extra))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lastmile starts");
    let checkpoint = checkpoint_of(output);
    // Bounded so that a bug cannot hang CI; nothing asserts on the time taken.
    for _ in 0..60_000 {
        if checkpoint.exists() {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    panic!("no checkpoint appeared at {}", checkpoint.display());
}

fn committed_rows(output: &Path) -> u64 {
    let text = std::fs::read_to_string(checkpoint_of(output)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["counts"]["rows"].as_u64().unwrap()
}

fn run_to_end(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let a = args(input, output, extra);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    lastmile(&a, b"")
}

fn errors_of(output: &Path) -> PathBuf {
    output.with_extension("errors.jsonl")
}

/// Kills a run with SIGKILL midway, resumes it, and checks its bytes (and its errors file's,
/// with `errors`) against a run never stopped.
fn killed_and_resumed_is_identical(
    input: &Path,
    output: &Path,
    reference: &Path,
    extra: &[&str],
    errors: bool,
) {
    let args_for = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if errors {
            a.extend(["--errors".to_owned(), errors_of(out).display().to_string()]);
        }
        a
    };
    let ref_args = args_for(reference);
    let ref_args: Vec<&str> = ref_args.iter().map(String::as_str).collect();
    let out = run_to_end(input, reference, &ref_args);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    let run_args = args_for(output);
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let mut child = start_and_wait_for_commit(input, output, &run_args)
        .expect("the run is still going when its first chunk is committed");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed, not finished: {status:?}");
    let done = committed_rows(output);
    assert!(done > 0, "at least one chunk was committed");

    let out = run_to_end(input, output, &[&run_args[..], &["--resume"]].concat());
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{done} done before and resumed")),
        "{}",
        stderr(&out)
    );
    assert!(
        !checkpoint_of(output).exists(),
        "the checkpoint is removed at the end"
    );
    let same = |a: &Path, b: &Path| {
        let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(
            x == y,
            "{} and {} differ ({} and {} bytes)",
            a.display(),
            b.display(),
            x.len(),
            y.len()
        );
    };
    same(reference, output);
    if errors {
        same(&errors_of(reference), &errors_of(output));
        assert!(
            std::fs::metadata(errors_of(output)).unwrap().len() > 0,
            "some rows failed"
        );
    }
}

#[test]
fn a_run_killed_with_sigkill_and_resumed_gives_identical_bytes() {
    let (_dir, at) = temp();
    let mut items = items(3000);
    // Some rows the ensemble cannot read: their errors go to the output or the errors file.
    for item in items.iter_mut().skip(5).step_by(97) {
        item.title = None;
        item.description = None;
    }
    let lines: Vec<Value> = items.iter().map(Item::json).collect();
    write_jsonl(&at("in.jsonl"), &lines);
    killed_and_resumed_is_identical(
        &at("in.jsonl"),
        &at("out.jsonl"),
        &at("ref.jsonl"),
        &[],
        false,
    );

    write_csv(&at("in.csv"), &items);
    killed_and_resumed_is_identical(
        &at("in.csv"),
        &at("out.csv"),
        &at("ref.csv"),
        &["--explain"],
        true,
    );

    write_parquet(&at("in.parquet"), &record_batch(&items));
    killed_and_resumed_is_identical(
        &at("in.parquet"),
        &at("out.parquet"),
        &at("ref.parquet"),
        &["--row-group-rows", "64"],
        true,
    );
    // The 31 rows without fields are in the errors file, not the output.
    assert_eq!(read_parquet(&at("out.parquet")).len() + 31, items.len());
}

#[test]
fn sigint_stops_cleanly_and_the_run_resumes() {
    let (_dir, at) = temp();
    let lines: Vec<Value> = items(3000).iter().map(Item::json).collect();
    write_jsonl(&at("in.jsonl"), &lines);
    let out = run_to_end(&at("in.jsonl"), &at("ref.jsonl"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let child = start_and_wait_for_commit(&at("in.jsonl"), &at("out.jsonl"), &[])
        .expect("the run is still going when its first chunk is committed");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let written = std::fs::read(at("out.jsonl")).unwrap();
    let done = committed_rows(&at("out.jsonl"));
    assert_eq!(
        written.iter().filter(|&&b| b == b'\n').count() as u64,
        done,
        "every row written is committed"
    );

    // Without --resume the unfinished output is not overwritten; with other settings it is not
    // resumed.
    let out = run_to_end(&at("in.jsonl"), &at("out.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("unfinished run"), "{}", stderr(&out));
    let out = run_to_end(
        &at("in.jsonl"),
        &at("out.jsonl"),
        &["--resume", "--top-k", "3"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("top_k 5"), "{}", stderr(&out));

    let out = run_to_end(&at("in.jsonl"), &at("out.jsonl"), &["--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(at("out.jsonl")).unwrap(),
        std::fs::read(at("ref.jsonl")).unwrap()
    );
    let out = run_to_end(&at("in.jsonl"), &at("out.jsonl"), &["--resume"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a complete output is not resumed"
    );
}
