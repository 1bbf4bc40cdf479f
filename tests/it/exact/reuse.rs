//! Loading a new ensemble beside a live one: models whose file, bindings and labels are unchanged
//! are shared, not loaded twice, and the new ensemble answers exactly as if loaded from scratch,
//! even when its label space orders labels differently.

use std::path::Path;
use std::sync::Arc;

use lastmile::ensemble::{Ensemble, ItemAnswer, ItemOptions};
use lastmile::scheduler::ComputePool;
use serde_json::json;

fn fixture(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fasttext")
        .join(file)
        .display()
        .to_string()
}

fn manifest(dir: &Path, name: &str, files: &[&str], extra: &str) -> std::path::PathBuf {
    let mut text =
        format!("name = \"{name}\"\nversion = \"1\"\n{extra}\n[defaults]\nfields = [\"title\"]\n");
    for (i, f) in files.iter().enumerate() {
        text += &format!(
            "[[model]]\nname = \"m{i}\"\nkind = \"fasttext\"\npath = \"{}\"\n",
            fixture(f)
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn answers(pool: &ComputePool, e: &Arc<Ensemble>) -> Vec<ItemAnswer> {
    let items = [
        "chef knife",
        "camping tent for two",
        "board game",
        "running shoes",
    ]
    .iter()
    .map(|t| {
        let o = json!({ "title": t });
        e.item_from_json(
            o.as_object().unwrap(),
            ItemOptions {
                top_k: 10,
                ..ItemOptions::default()
            },
        )
        .unwrap()
    })
    .collect();
    pool.predict(e, items).wait().unwrap()
}

#[test]
fn unchanged_models_are_shared_and_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let pool = ComputePool::new(2).unwrap();
    let live = Arc::new(
        Ensemble::load(
            &manifest(
                dir.path(),
                "live",
                &["softmax.bin", "hs.bin", "ova.bin"],
                "",
            ),
            2,
        )
        .unwrap(),
    );
    assert_eq!(live.reused, 0);

    // The retrain changed one model (ova → quantized) and kept two.
    let next_path = manifest(
        dir.path(),
        "next",
        &["softmax.bin", "hs.bin", "quantized.ftz"],
        "",
    );
    let next = Arc::new(Ensemble::load_reusing(&next_path, 2, &[&live]).unwrap());
    assert_eq!(next.reused, 2);
    assert!(Arc::ptr_eq(
        &next.models[0].runtime,
        &live.models[0].runtime
    ));
    assert!(Arc::ptr_eq(
        &next.models[1].runtime,
        &live.models[1].runtime
    ));
    assert!(!Arc::ptr_eq(
        &next.models[2].runtime,
        &live.models[2].runtime
    ));

    let scratch = Arc::new(Ensemble::load(&next_path, 2).unwrap());
    assert_eq!(answers(&pool, &next), answers(&pool, &scratch));
}

#[test]
fn a_shared_model_serves_a_label_space_in_another_order() {
    let dir = tempfile::tempdir().unwrap();
    let pool = ComputePool::new(2).unwrap();
    let live = Arc::new(
        Ensemble::load(
            &manifest(dir.path(), "live", &["softmax.bin", "hs.bin"], ""),
            2,
        )
        .unwrap(),
    );
    // The same models, but a canonical label file listing the labels in reverse.
    let mut labels: Vec<String> = live.labels.names().to_vec();
    labels.reverse();
    std::fs::write(dir.path().join("labels.txt"), labels.join("\n")).unwrap();
    let path = manifest(
        dir.path(),
        "reversed",
        &["softmax.bin", "hs.bin"],
        "label_file = \"labels.txt\"",
    );
    let shared = Arc::new(Ensemble::load_reusing(&path, 2, &[&live]).unwrap());
    assert_eq!(shared.reused, 2);
    let scratch = Arc::new(Ensemble::load(&path, 2).unwrap());
    let (a, b) = (answers(&pool, &shared), answers(&pool, &scratch));
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.predictions.iter().zip(&y.predictions) {
            assert_eq!(p.label, q.label);
            assert!((p.score - q.score).abs() < 1e-6);
        }
    }
}

/// The ensemble digest names the bytes: two loads of the same files agree, and a change to the
/// manifest or to one model file changes it.
#[test]
fn the_digest_is_stable_and_changes_with_any_byte() {
    let dir = tempfile::tempdir().unwrap();
    let starter = crate::support::starter();
    let a = Ensemble::load(&starter, 1).unwrap();
    let b = Ensemble::load(&starter, 1).unwrap();
    assert!(
        a.digest.starts_with("sha256:") && a.digest.len() == 7 + 64,
        "{}",
        a.digest
    );
    assert_eq!(a.digest, b.digest);

    let renamed = crate::support::starter_variant(dir.path(), "1", |t| t + "\n# a comment\n");
    let c = Ensemble::load(&renamed, 1).unwrap();
    assert_ne!(c.digest, a.digest, "the manifest text changed");

    // The same manifest text over a copy of ova.bin, before and after one bit of it changes.
    let ova = dir.path().join("ova.bin");
    std::fs::copy(fixture("ova.bin"), &ova).unwrap();
    let text = std::fs::read_to_string(&renamed)
        .unwrap()
        .replace(&fixture("ova.bin"), &ova.display().to_string());
    let copy = dir.path().join("copy.toml");
    std::fs::write(&copy, text).unwrap();
    let before = Ensemble::load(&copy, 1).unwrap();
    let mut bytes = std::fs::read(&ova).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // one bit of the output matrix's last float
    std::fs::write(&ova, bytes).unwrap();
    let after = Ensemble::load(&copy, 1).unwrap();
    assert_ne!(after.digest, before.digest, "one model file changed");

    // An ONNX model's labels file is part of the model: the same labels, reordered.
    let labels = dir.path().join("labels.txt");
    let original = crate::support::onnx("tfidf_lr_nozipmap.labels.txt");
    let text = std::fs::read_to_string(&copy)
        .unwrap()
        .replace(&original, &labels.display().to_string());
    std::fs::write(&copy, text).unwrap();
    std::fs::copy(&original, &labels).unwrap();
    let same_labels = Ensemble::load(&copy, 1).unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(&labels)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.swap(0, 1);
    std::fs::write(&labels, lines.join("\n") + "\n").unwrap();
    let swapped = Ensemble::load(&copy, 1).unwrap();
    assert_ne!(swapped.digest, same_labels.digest, "a labels file changed");
}
