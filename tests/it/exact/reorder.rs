//! `Runtime::reorder_columns`: a model whose columns were put in another order (twice, so that
//! reorderings compose) gives every label the score it gave before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lastmile::runtime::fasttext::FastTextModel;
use lastmile::runtime::onnx::{Feed, OnnxLabels, OnnxModel, OnnxSpec, ScoreKind};
use lastmile::runtime::{Inputs, Runtime, Scores};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// A fixed, non-trivial permutation of `n` columns.
fn shuffled(n: usize, seed: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).rev().collect();
    for i in 0..n {
        order.swap(i, (i * 7 + seed) % n);
    }
    order
}

fn by_label(model: &dyn Runtime, inputs: &Inputs<'_>) -> Vec<HashMap<String, f32>> {
    let mut out = Scores::default();
    model.run(inputs, &mut out).expect("the model runs");
    (0..out.rows)
        .map(|r| {
            model
                .labels()
                .iter()
                .cloned()
                .zip(out.row(r).iter().copied())
                .collect()
        })
        .collect()
}

fn check(mut reordered: Box<dyn Runtime>, original: Box<dyn Runtime>, inputs: &Inputs<'_>) {
    let n = reordered.labels().len();
    let (first, second) = (shuffled(n, 3), shuffled(n, 5));
    reordered.reorder_columns(&first);
    reordered.reorder_columns(&second);
    let composed: Vec<usize> = second.iter().map(|&j| first[j]).collect();
    let moved = composed.iter().enumerate().any(|(j, &c)| j != c);
    assert_eq!(
        moved,
        reordered.labels() != original.labels(),
        "labels follow the columns"
    );
    let want = by_label(original.as_ref(), inputs);
    let got = by_label(reordered.as_ref(), inputs);
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.len(), g.len());
        for (label, score) in w {
            let other = g[label];
            assert!((score - other).abs() < 1e-6, "{label}: {score} vs {other}");
        }
    }
}

const TEXTS: [&str; 4] = [
    "forged chef knife with wooden handle",
    "two person camping tent",
    "board game for the family",
    "",
];

#[test]
fn fasttext_models_keep_their_scores() {
    let inputs = Inputs::Text(&TEXTS);
    for file in [
        "softmax.bin",
        "ova.bin",
        "hs.bin",
        "ngrams_subwords.bin",
        "quantized.ftz",
    ] {
        let path = fixture(&format!("fasttext/{file}"));
        let load = || Box::new(FastTextModel::load(&path).unwrap()) as Box<dyn Runtime>;
        check(load(), load(), &inputs);
    }
}

#[test]
fn onnx_models_keep_their_scores() {
    let labels = |file: &str| {
        std::fs::read_to_string(fixture(&format!("onnx/{file}")))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let text = |file: &str, output: Option<&str>, labels: OnnxLabels| OnnxSpec {
        path: fixture(&format!("onnx/{file}")),
        input: None,
        feed: Feed::Text,
        output: output.map(str::to_owned),
        scores: ScoreKind::Probabilities,
        labels,
        intra_threads: 1,
    };
    let specs = [
        text(
            "tfidf_lr_nozipmap.onnx",
            Some("probabilities"),
            OnnxLabels::List(labels("tfidf_lr_nozipmap.labels.txt")),
        ),
        text("tfidf_lr_zipmap.onnx", None, OnnxLabels::ZipMap),
    ];
    let inputs = Inputs::Text(&TEXTS);
    for spec in &specs {
        let load = || Box::new(OnnxModel::load(spec).unwrap()) as Box<dyn Runtime>;
        check(load(), load(), &inputs);
    }
    let features = OnnxSpec {
        path: fixture("onnx/mlp_float.onnx"),
        input: None,
        feed: Feed::Features,
        output: None,
        scores: ScoreKind::Logits,
        labels: OnnxLabels::List(labels("mlp_float.labels.txt")),
        intra_threads: 1,
    };
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    let load = || Box::new(OnnxModel::load(&features).unwrap()) as Box<dyn Runtime>;
    check(
        load(),
        load(),
        &Inputs::Features {
            data: &data,
            width: 6,
        },
    );
}
