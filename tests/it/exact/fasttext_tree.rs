//! Hierarchical softmax over a deep tree: our batched tree walk against the `fasttext` crate's own
//! tree search (which follows official fastText's `HierarchicalSoftmaxLoss::predict`) on a
//! 400-label model trained here, where pruning below 1e-5 really happens. The 10-label official
//! fixture (`fasttext_parity.rs`) has a tree too shallow to show it.

use std::collections::HashMap;
use std::fmt::Write as _;

use fasttext::args::{Args, LossName};
use fasttext::FastText;
use lastmile::runtime::fasttext::FastTextModel;
use lastmile::runtime::{Inputs, Runtime, Scores};

const LABELS: usize = 400;

fn line(l: usize, variant: usize) -> String {
    format!(
        "sig{l}a sig{l}b shared{} dept{} noise{}",
        l % 23,
        l % 7,
        (l * 31 + variant * 17) % 300
    )
}

#[test]
fn tree_walk_matches_the_crates_tree_search() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("train.txt");
    let mut text = String::new();
    for l in 0..LABELS {
        // Skewed counts give an unbalanced Huffman tree.
        for v in 0..1 + (l % 5) {
            writeln!(text, "__label__c{l} {}", line(l, v)).unwrap();
        }
    }
    std::fs::write(&corpus, text).unwrap();
    let mut args = Args::new();
    args.apply_supervised_defaults();
    args.input = corpus;
    args.output = dir.path().join("hs");
    args.loss = LossName::HierarchicalSoftmax;
    args.dim = 16;
    args.epoch = 5;
    args.lr = 0.5;
    args.thread = 1;
    args.verbose = 0;
    let trained = FastText::train(args).unwrap();
    let path = dir.path().join("hs.bin");
    trained.save_model(&path).unwrap();

    let reference = FastText::load_model(&path).unwrap();
    let ours = FastTextModel::load(&path).unwrap();
    let queries: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => line(i * 7 % LABELS, 9),
            1 => format!("sig{}a shared3", i * 11 % LABELS),
            2 => "words the model never saw".to_owned(),
            _ => format!("dept{} noise{}", i % 7, i),
        })
        .collect();
    let rows: Vec<&str> = queries.iter().map(String::as_str).collect();
    let mut scores = Scores::default();
    ours.run(&Inputs::Text(&rows), &mut scores).unwrap();

    let mut pruned = 0;
    for (r, q) in rows.iter().enumerate() {
        let (mut words, mut labels) = (Vec::new(), Vec::new());
        reference
            .dict()
            .get_line_from_str(&format!("{q} </s>"), &mut words, &mut labels);
        let want: HashMap<String, f32> = reference
            .predict_on_words(&words, LABELS, 0.0)
            .into_iter()
            .map(|p| (p.label.trim_start_matches("__label__").to_owned(), p.prob))
            .collect();
        pruned += LABELS - want.len();
        for (label, &got) in ours.labels().iter().zip(scores.row(r)) {
            let expected = want.get(label).copied().unwrap_or(0.0);
            assert!(
                (got - expected).abs() <= 1e-5,
                "query {q:?}, label {label}: ours {got}, crate {expected}"
            );
        }
    }
    assert!(pruned > 0, "the test must exercise pruning");
}
