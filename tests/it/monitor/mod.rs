//! Knowing the members: each member's influence computed without voting again equals the
//! re-vote on the starter ensemble through the real compute pool (`influence`); the live monitor
//! on sampled traffic, its report and its gauges (`live`); prediction drift from every source of
//! reference, under and over the threshold (`drift`); `lastmile zombies`, `report` and `eval
//! --write-reference` as an operator runs them (`cli`); the HTML report opened in headless
//! Chromium (`report`).

mod cli;
mod drift;
mod influence;
mod live;
mod report;

use std::path::{Path, PathBuf};

use crate::support::{fasttext, fixtures, write};

/// Department paths for the fixtures' ten labels.
pub const DEPARTMENTS: [(&str, &str); 10] = [
    ("arts_&_crafts-supplies", "Toys > arts_&_crafts-supplies"),
    ("board_games", "Toys > board_games"),
    ("laptops", "Electronics > laptops"),
    ("phone_cases", "Electronics > phone_cases"),
    ("running_shoes", "Outdoor > running_shoes"),
    ("camping_tents", "Outdoor > camping_tents"),
    ("garden_tools", "Home > garden_tools"),
    ("kitchen_knives", "Home > kitchen_knives"),
    ("coffee_makers", "Home > coffee_makers"),
    ("baby_strollers", "Baby > baby_strollers"),
];

/// The fixtures' labelled lines (`file` in tests/fixtures/fasttext) as (title, label).
pub fn labelled(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fixtures().join("fasttext").join(file)).unwrap();
    text.lines()
        .filter_map(|line| {
            let (labels, words): (Vec<&str>, Vec<&str>) = line
                .split_whitespace()
                .partition(|t| t.starts_with("__label__"));
            let label = labels.first()?.trim_start_matches("__label__").to_owned();
            Some((words.join(" "), label))
        })
        .collect()
}

/// The department path of a fixture label.
pub fn department(label: &str) -> &'static str {
    DEPARTMENTS
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, p)| *p)
        .expect("a fixture label")
}

/// A manifest of four fastText fixtures whose labels are renamed to department paths, written to
/// `dir` as version `version`, with `extra` after the models (e.g. `[monitor]`); and the
/// validation set (renamed labels) beside it as `valid.jsonl`.
pub fn departments_manifest(dir: &Path, version: &str, head: &str, extra: &str) -> PathBuf {
    let mut valid = String::new();
    for (title, label) in labelled("valid.txt") {
        valid += &format!(
            "{}\n",
            serde_json::json!({"title": title, "label": department(&label)})
        );
    }
    write(dir, "valid.jsonl", &valid);
    let mut text = format!("name = \"departments\"\nversion = \"{version}\"\n{head}\n[rename]\n");
    for (label, path) in DEPARTMENTS {
        text += &format!("\"{label}\" = \"{path}\"\n");
    }
    text += "\n[defaults]\nfields = [\"title\"]\n";
    for (name, file) in [
        ("ft-softmax", "softmax.bin"),
        ("ft-ova", "ova.bin"),
        ("ft-hs", "hs.bin"),
        ("ft-ngrams", "ngrams_subwords.bin"),
    ] {
        text += &format!(
            "\n[[model]]\nname = \"{name}\"\nkind = \"fasttext\"\npath = \"{}\"\n",
            fasttext(file)
        );
    }
    write(dir, &format!("departments-{version}.toml"), &(text + extra))
}

/// `n` draws with replacement from `pool`, seeded.
pub fn draws<T: Clone>(pool: &[T], n: usize, seed: u64) -> Vec<T> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            pool[((x >> 33) as usize) % pool.len()].clone()
        })
        .collect()
}

/// The Grafana dashboard names only metrics the server exports.
#[test]
fn the_grafana_dashboard_names_only_exported_metrics() {
    let path = crate::support::root().join("deploy/grafana/lastmile-monitor.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
    let known = lastmile::telemetry::names();
    let mut named = 0;
    for (i, _) in text.match_indices("lastmile_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        if name == "lastmile_" {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            known.contains(&name.as_str()) || known.contains(&base),
            "the dashboard names {name}, which the server does not export"
        );
        named += 1;
    }
    assert!(named > 15, "{named}");
}
