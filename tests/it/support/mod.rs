//! The one test harness: [`TestServer`] (the real server in this process, built with options),
//! one [`client`] for every transport and the admin API, [`Hold`]s for the hook points, model
//! wrappers that fail or slow down ([`runtimes`]), and the fixtures' paths, manifests and items.
#![allow(dead_code)]

pub mod child;
pub mod client;
pub mod hooks;
pub mod runtimes;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub use client::{Answer, Ranked, Transport, TRANSPORTS};
pub use hooks::Hold;
pub use server::{AdminOptions, TestServer};

use lastmile::ensemble::{Ensemble, ItemOptions, ValidItem};
use lastmile::proto::lastmile::v1 as pb;
use serde_json::{json, Map, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// The bundled starter ensemble (7 models from the fixtures).
pub fn starter() -> PathBuf {
    root().join("models/starter/manifest.toml")
}

pub fn fasttext(file: &str) -> String {
    fixtures().join("fasttext").join(file).display().to_string()
}

pub fn onnx(file: &str) -> String {
    fixtures().join("onnx").join(file).display().to_string()
}

pub fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the `lastmile` binary with `args`.
pub fn lastmile_command(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lastmile"))
        .args(args)
        .output()
        .expect("the lastmile binary runs")
}

/// A manifest named `name` version `version` with one fastText model per `(model, fixture file)`,
/// reading `title`; `extra` goes before the models (e.g. `validation = "..."`, `[rename]`).
pub fn manifest_text(name: &str, version: &str, models: &[(&str, &str)], extra: &str) -> String {
    let mut text = format!(
        "name = \"{name}\"\nversion = \"{version}\"\n{extra}\n[defaults]\nfields = [\"title\"]\n"
    );
    for (model, file) in models {
        text += &format!(
            "\n[[model]]\nname = \"{model}\"\nkind = \"fasttext\"\npath = \"{}\"\n",
            fasttext(file)
        );
    }
    text
}

/// The starter manifest with `edit` applied, as version `version`, written to `dir` with
/// absolute model paths.
pub fn starter_variant(dir: &Path, version: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(starter()).unwrap();
    let text = text
        .replace("../../tests/fixtures", &fixtures().display().to_string())
        .replace("version = \"1\"", &format!("version = \"{version}\""));
    let path = dir.join(format!("starter-{version}.toml"));
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// The known-different shadow of the shadow tests, as version "2": the starter without its
/// knives rule, with a rank vote across groups, and "pack" in a title forcing `board_games`.
pub fn known_variant(dir: &Path) -> PathBuf {
    starter_variant(dir, "2", |text| {
        let (head, _) = text.split_once("[[rule]]").unwrap();
        head.replace(
            "strategy = \"soft\"\nagreement_k",
            "strategy = \"rank\"\nagreement_k",
        ) + "[[rule]]\ntype = \"keyword\"\nname = \"packs\"\nfield = \"title\"\n\
               keywords = [\"pack\"]\nlabel = \"board_games\"\naction = \"force\"\n"
    })
}

/// The fixtures' validation lines as labelled JSON Lines (`title`, `label`: the first label),
/// written to `dir/valid.jsonl`.
pub fn validation_set(dir: &Path) -> PathBuf {
    let valid = std::fs::read_to_string(fixtures().join("fasttext/valid.txt")).unwrap();
    let mut data = String::new();
    for line in valid.lines() {
        let (labels, words): (Vec<&str>, Vec<&str>) = line
            .split_whitespace()
            .partition(|t| t.starts_with("__label__"));
        let label = labels[0].trim_start_matches("__label__");
        data += &format!("{}\n", json!({"title": words.join(" "), "label": label}));
    }
    write(dir, "valid.jsonl", &data)
}

/// The fixtures' ten labels.
pub const LABELS: [&str; 10] = [
    "arts_&_crafts-supplies",
    "board_games",
    "laptops",
    "phone_cases",
    "running_shoes",
    "garden_tools",
    "camping_tents",
    "baby_strollers",
    "coffee_makers",
    "kitchen_knives",
];

/// A `[rename]` table moving every label to the next one: a "retrain" that is always wrong.
pub fn scrambled_labels() -> String {
    let mut text = "[rename]\n".to_owned();
    for (i, l) in LABELS.iter().enumerate() {
        text += &format!("\"{l}\" = \"{}\"\n", LABELS[(i + 1) % LABELS.len()]);
    }
    text
}

/// Titles from the fastText fixtures (validation set, then training set): `n` of them.
pub fn titles(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for file in ["valid.txt", "train.txt"] {
        let text = std::fs::read_to_string(fixtures().join("fasttext").join(file)).unwrap();
        for line in text.lines() {
            let text = line.split_once(' ').map_or(line, |(_, t)| t).trim();
            if !text.is_empty() {
                out.push(text.to_owned());
            }
        }
    }
    assert!(out.len() >= n, "only {} titles", out.len());
    out.truncate(n);
    out
}

/// Items with only a title, as the transports send them to [`client::send`].
pub fn title_items(titles: &[impl AsRef<str>]) -> Vec<Vec<(String, String)>> {
    titles
        .iter()
        .map(|t| vec![("title".to_owned(), t.as_ref().to_owned())])
        .collect()
}

/// `ensemble`'s item with only a title, asking for `top_k` labels.
pub fn title_item(e: &Ensemble, title: &str, top_k: usize) -> ValidItem {
    let o = json!({ "title": title });
    e.item_from_json(
        o.as_object().unwrap(),
        ItemOptions {
            top_k,
            ..ItemOptions::default()
        },
    )
    .expect("a valid item")
}

/// Products of the starter ensemble's kinds, as (title, description).
pub const PRODUCTS: [(&str, &str); 4] = [
    ("steel chef knife", "forged blade for the kitchen"),
    ("running shoes", "lightweight trainers"),
    ("garden hose", "30 m with spray nozzle"),
    ("wireless headphones", "noise cancelling"),
];

/// A proto item with text fields.
pub fn proto_item(fields: &[(&str, &str)]) -> pb::Item {
    pb::Item {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// A JSON item with text fields.
pub fn json_item(fields: &[(&str, &str)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// Waits (polling) until `check` holds; panics after a generous bound so a bug cannot hang CI.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..6000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for: {what}");
}
