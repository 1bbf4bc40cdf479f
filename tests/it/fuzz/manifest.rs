//! The manifest parser: any text is a manifest or an error naming where, never a panic.

use lastmile::ensemble::Manifest;
use proptest::prelude::*;

use super::{corpus, mutate, run, runner};

/// Lines a manifest is made of, to be shuffled into documents the byte mutations rarely reach.
const LINES: &[&str] = &[
    "name = \"fuzz\"",
    "version = \"1\"",
    "validation = \"valid.jsonl\"",
    "on_member_failure = \"degrade\"",
    "on_member_failure = \"fail\"",
    "min_members = 2",
    "min_members = -1",
    "quorum = { fasttext = 1 }",
    "[defaults]",
    "fields = [\"title\", \"description\"]",
    "fields = []",
    "[vote]",
    "strategy = \"soft\"",
    "strategy = \"rank\"",
    "strategy = \"geometric\"",
    "strategy = \"hard\"",
    "top_k = 5",
    "top_k = 0",
    "abstain_below = 0.2",
    "abstain_below = nan",
    "[vote.groups]",
    "fasttext = { weight = 2.0 }",
    "[[model]]",
    "name = \"a\"",
    "name = \"\"",
    "kind = \"fasttext\"",
    "kind = \"onnx\"",
    "path = \"../../tests/fixtures/fasttext/softmax.bin\"",
    "path = \"models:/catalogue/3\"",
    "path = \"models:/catalogue@champion\"",
    "path = \"runs:/abc/model.bin\"",
    "labels_file = \"labels.txt\"",
    "weight = 1e300",
    "weight = -1",
    "temperature = 0",
    "group = \"fasttext\"",
    "max_batch = 0",
    "max_batch = 18446744073709551615",
    "max_delay_ms = inf",
    "timeout_ms = -5",
    "timeout_ms = 1e20",
    "sha256 = \"00\"",
    "[model.provenance]",
    "training_run = \"x\"",
    "[[rule]]",
    "when = { label_prefix = \"a/\" }",
    "then = { abstain = true }",
    "[mlflow]",
    "tracking_uri = \"http://127.0.0.1:1\"",
    "[rename]",
    "x = \"y\"",
];

fn document() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(LINES), 0..40)
        .prop_map(|lines| lines.join("\n").into_bytes())
}

#[test]
fn any_text_is_a_manifest_or_an_error_that_says_where() {
    let mut seeds = corpus("manifest");
    seeds.push(std::fs::read(crate::support::starter()).unwrap());
    let inputs = prop_oneof![mutate::mutated(seeds, 8), document()];
    let path = crate::support::root().join("models/starter/fuzzed.toml");
    run(runner("manifest", 2000), "manifest", inputs, |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        match Manifest::parse(&path, &text) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().trim().is_empty() => Err("an error with no message".into()),
            Err(_) => Ok(()),
        }
    });
}
