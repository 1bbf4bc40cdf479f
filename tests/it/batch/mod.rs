//! `lastmile batch` as an operator runs it (the real binary): answers equal to `lastmile
//! predict`'s in every format, bad rows named and the rest scored, unreadable inputs refused with
//! exit 2, a run killed with SIGKILL (or stopped with SIGINT) and resumed ending with the same
//! bytes as one never stopped, and the Spark helpers over the starter ensemble.
//!
//! The helpers here write inputs and read outputs in every format into one [`OutRow`] shape.

mod exact;
mod resume;
mod rows;
mod spark;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{json, Value};

use crate::support::{starter, titles, PRODUCTS};

/// Runs the `lastmile` binary with `args`, `stdin` fed to it.
pub(crate) fn lastmile(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lastmile binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("lastmile finishes");
    feeder.join().unwrap();
    out
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `lastmile batch` on the starter ensemble from `input` to `output`, with `extra` arguments.
pub(crate) fn batch(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let manifest = starter();
    let mut args = vec![
        "batch",
        "--manifest",
        manifest.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    lastmile(&args, b"")
}

/// One input item: its id, title and (maybe) description.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub id: String,
    pub title: Option<String>,
    pub description: Option<String>,
}

/// `n` items of the starter ensemble's kinds: fixture titles, some with a description.
pub(crate) fn items(n: usize) -> Vec<Item> {
    let titles = titles(n.min(400));
    (0..n)
        .map(|i| {
            let title = &titles[i % titles.len()];
            let (product, description) = PRODUCTS[i % PRODUCTS.len()];
            Item {
                id: format!("item-{i}"),
                title: Some(if i < titles.len() {
                    title.clone()
                } else {
                    format!("{title} {product} {i}")
                }),
                description: (i % 3 == 0).then(|| description.to_owned()),
            }
        })
        .collect()
}

impl Item {
    pub fn json(&self) -> Value {
        let mut o = json!({"id": self.id});
        if let Some(t) = &self.title {
            o["title"] = json!(t);
        }
        if let Some(d) = &self.description {
            o["description"] = json!(d);
        }
        o
    }
}

pub(crate) fn write_jsonl(path: &Path, items: &[Value]) {
    let mut text = String::new();
    for v in items {
        text += &format!("{v}\n");
    }
    std::fs::write(path, text).unwrap();
}

pub(crate) fn write_csv(path: &Path, items: &[Item]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["id", "title", "description"]).unwrap();
    for it in items {
        w.write_record([
            it.id.as_str(),
            it.title.as_deref().unwrap_or(""),
            it.description.as_deref().unwrap_or(""),
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

/// The items as one record batch of string columns `id`, `title`, `description`.
pub(crate) fn record_batch(items: &[Item]) -> RecordBatch {
    let column = |f: &dyn Fn(&Item) -> Option<String>| -> ArrayRef {
        Arc::new(items.iter().map(f).collect::<StringArray>())
    };
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("title", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
        ])),
        vec![
            column(&|i| Some(i.id.clone())),
            column(&|i| i.title.clone()),
            column(&|i| i.description.clone()),
        ],
    )
    .unwrap()
}

pub(crate) fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// One output row, whatever the format it was read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutRow {
    pub id: Option<String>,
    pub row: i64,
    pub label: Option<String>,
    pub score: Option<f32>,
    pub top_k: Vec<(String, f32)>,
    pub agreement: Option<i64>,
    pub abstained: Option<String>,
    pub rules_fired: Vec<String>,
    pub error: Option<String>,
    pub ensemble: String,
    pub version: String,
    pub digest: String,
    /// With `--explain`: per model (name, weight, predictions, contributions).
    pub models: Option<Vec<ModelPart>>,
}

pub(crate) type ModelPart = (String, f32, Vec<(String, f32)>, Vec<(String, f32)>);

fn f32_of(v: &Value) -> f32 {
    v.as_f64().expect("a number") as f32
}

/// `[{"label", "score"}]` as pairs.
pub(crate) fn label_scores(v: &Value) -> Vec<(String, f32)> {
    v.as_array()
        .expect("an array of labels")
        .iter()
        .map(|p| (p["label"].as_str().unwrap().to_owned(), f32_of(&p["score"])))
        .collect()
}

/// `lastmile predict`'s (or the JSON outputs') `models` array.
pub(crate) fn model_parts(v: &Value) -> Vec<ModelPart> {
    v.as_array()
        .expect("an array of models")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                f32_of(&m["weight"]),
                label_scores(&m["predictions"]),
                label_scores(&m["contributions"]),
            )
        })
        .collect()
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn from_json(v: &Value) -> OutRow {
    OutRow {
        id: match &v["id"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        },
        row: v["row"].as_i64().unwrap(),
        label: opt_str(&v["label"]),
        score: v["score"].as_f64().map(|s| s as f32),
        top_k: label_scores(&v["top_k"]),
        agreement: v["agreement"].as_i64(),
        abstained: opt_str(&v["abstained"]),
        rules_fired: v["rules_fired"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect(),
        error: opt_str(&v["error"]),
        ensemble: v["ensemble"].as_str().unwrap().to_owned(),
        version: v["version"].as_str().unwrap().to_owned(),
        digest: v["digest"].as_str().unwrap().to_owned(),
        models: v.get("models").map(model_parts),
    }
}

pub(crate) fn read_jsonl(path: &Path) -> Vec<OutRow> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| from_json(&serde_json::from_str(l).expect("a JSON line")))
        .collect()
}

pub(crate) fn read_csv(path: &Path) -> Vec<OutRow> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let get = |name: &str| rec.get(col(name)).unwrap();
            let json = |name: &str| -> Value { serde_json::from_str(get(name)).unwrap() };
            OutRow {
                id: opt(get("id")),
                row: get("row").parse().unwrap(),
                label: opt(get("label")),
                score: opt(get("score")).map(|s| s.parse::<f32>().unwrap()),
                top_k: label_scores(&json("top_k")),
                agreement: opt(get("agreement")).map(|s| s.parse().unwrap()),
                abstained: opt(get("abstained")),
                rules_fired: serde_json::from_value(json("rules_fired")).unwrap(),
                error: opt(get("error")),
                ensemble: get("ensemble").to_owned(),
                version: get("version").to_owned(),
                digest: get("digest").to_owned(),
                models: header
                    .iter()
                    .any(|h| h == "models")
                    .then(|| model_parts(&json("models"))),
            }
        })
        .collect()
}

fn strings(a: &ArrayRef) -> Vec<Option<String>> {
    let a = a.as_string::<i32>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned()))
        .collect()
}

/// A `list<struct<label, score>>` column, row by row.
fn label_lists(a: &ArrayRef) -> Vec<Vec<(String, f32)>> {
    let lists = a.as_list::<i32>();
    (0..lists.len())
        .map(|i| {
            let v = lists.value(i);
            let s = v.as_struct();
            let labels = s.column(0).as_string::<i32>();
            let scores = s.column(1).as_primitive::<Float32Type>();
            (0..s.len())
                .map(|j| (labels.value(j).to_owned(), scores.value(j)))
                .collect()
        })
        .collect()
}

fn rows_of_batch(b: &RecordBatch, out: &mut Vec<OutRow>) {
    let c = |name: &str| b.column_by_name(name).unwrap();
    let ids = strings(c("id"));
    let rows = c("row").as_primitive::<Int64Type>().clone();
    let labels = strings(c("label"));
    let scores = c("score").as_primitive::<Float32Type>().clone();
    let top = label_lists(c("top_k"));
    let agreement = c("agreement").as_primitive::<Int32Type>().clone();
    let abstained = strings(c("abstained"));
    let rules = c("rules_fired").as_list::<i32>().clone();
    let errors = strings(c("error"));
    let (names, versions, digests) = (
        strings(c("ensemble")),
        strings(c("version")),
        strings(c("digest")),
    );
    let models = b.column_by_name("models").map(|m| {
        let lists = m.as_list::<i32>();
        (0..lists.len())
            .map(|i| {
                let v = lists.value(i);
                let s = v.as_struct();
                let names = s.column(0).as_string::<i32>();
                let weights = s.column(1).as_primitive::<Float32Type>();
                let p = label_lists(s.column(2));
                let k = label_lists(s.column(3));
                (0..s.len())
                    .map(|j| {
                        (
                            names.value(j).to_owned(),
                            weights.value(j),
                            p[j].clone(),
                            k[j].clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    });
    for i in 0..b.num_rows() {
        let r = rules.value(i);
        let r = r.as_string::<i32>();
        out.push(OutRow {
            id: ids[i].clone(),
            row: rows.value(i),
            label: labels[i].clone(),
            score: (!scores.is_null(i)).then(|| scores.value(i)),
            top_k: top[i].clone(),
            agreement: (!agreement.is_null(i)).then(|| agreement.value(i) as i64),
            abstained: abstained[i].clone(),
            rules_fired: (0..r.len()).map(|j| r.value(j).to_owned()).collect(),
            error: errors[i].clone(),
            ensemble: names[i].clone().unwrap(),
            version: versions[i].clone().unwrap(),
            digest: digests[i].clone().unwrap(),
            models: models.as_ref().map(|m| m[i].clone()),
        });
    }
}

pub(crate) fn read_parquet(path: &Path) -> Vec<OutRow> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
        File::open(path).unwrap(),
        1024,
    )
    .unwrap();
    let mut out = Vec::new();
    for b in reader {
        rows_of_batch(&b.unwrap(), &mut out);
    }
    out
}

pub(crate) fn read_arrow(bytes: &[u8]) -> Vec<OutRow> {
    let reader = arrow_ipc::reader::StreamReader::try_new(bytes, None).unwrap();
    let mut out = Vec::new();
    for b in reader {
        rows_of_batch(&b.unwrap(), &mut out);
    }
    out
}

/// `lastmile predict` on the starter ensemble: one answer per line of `lines`.
pub(crate) fn predict(lines: &[Value], extra: &[&str]) -> Vec<Value> {
    let manifest = starter();
    let mut args = vec!["predict", "--manifest", manifest.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut input = String::new();
    for l in lines {
        input += &format!("{l}\n");
    }
    let out = lastmile(&args, input.as_bytes());
    assert!(out.status.success(), "predict failed: {}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A temporary directory and a path in it.
pub(crate) fn temp() -> (tempfile::TempDir, impl Fn(&str) -> PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    (dir, move |name: &str| root.join(name))
}
