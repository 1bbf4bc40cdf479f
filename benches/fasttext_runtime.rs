//! What `FastTextModel::run` costs next to calling the `fasttext` crate directly, on 7,000-label
//! models: one row at a time and in batches of 32, for a softmax model (our batched GEMM path) and
//! a hierarchical-softmax model (per-row path). Both sides produce the full distribution over every
//! label, which is what an ensemble needs; the crate's top-1 alone is printed for reference.
//!
//! The models are trained with the crate on a synthetic corpus into target/bench-models/ on the
//! first run (about half a minute) and reused after.
//!
//!     cargo bench --bench fasttext_runtime

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fmt, interleaved};
use fasttext::args::{Args, LossName};
use fasttext::FastText;
use lastmile::runtime::fasttext::FastTextModel;
use lastmile::runtime::{Inputs, Runtime, Scores};

const LABELS: usize = 7000;
const DIM: i32 = 64;
const BATCH: usize = 32;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-models");
    std::fs::create_dir_all(&dir).expect("target/bench-models");
    let corpus = corpus(&dir);
    let queries: Vec<String> = (0..BATCH).map(|i| query(i * 211 % LABELS)).collect();
    let query_refs: Vec<&str> = queries.iter().map(String::as_str).collect();

    println!("fasttext_runtime: {LABELS} labels, dim {DIM}, full distribution per row");
    println!(
        "{:<8} {:>6} {:>16} {:>16} {:>9} {:>16}",
        "loss", "batch", "FastTextModel/row", "crate/row", "ratio", "crate top-1/row"
    );
    for (name, loss) in [
        ("softmax", LossName::Softmax),
        ("hs", LossName::HierarchicalSoftmax),
    ] {
        let path = model(&dir, &corpus, name, loss);
        let ours = FastTextModel::load(&path).expect("our runtime loads the model");
        let crate_model = FastText::load_model(&path).expect("the crate loads the model");
        let nlabels = ours.labels().len();
        for (batch, iters) in [(1usize, 400usize), (BATCH, 40)] {
            let rows = &query_refs[..batch];
            let mut out = Scores::default();
            let mut through_runtime = || {
                ours.run(&Inputs::Text(rows), &mut out).expect("run");
                std::hint::black_box(&out.data);
            };
            let mut direct = || {
                for text in rows {
                    std::hint::black_box(crate_predict(&crate_model, text, nlabels));
                }
            };
            let (t_ours, t_crate) = interleaved(iters, &mut through_runtime, &mut direct);
            let mut top1 = || {
                for text in rows {
                    std::hint::black_box(crate_predict(&crate_model, text, 1));
                }
            };
            let (t_top1, _) = interleaved(iters, &mut top1, &mut || {});
            let per_row = |d: Duration| fmt(d / batch as u32);
            println!(
                "{name:<8} {batch:>6} {:>16} {:>16} {:>8.3}x {:>16}",
                per_row(t_ours),
                per_row(t_crate),
                t_ours.as_secs_f64() / t_crate.as_secs_f64(),
                per_row(t_top1),
            );
        }
    }
}

/// The crate's own prediction, tokenised as official fastText reads a line (with `</s>`).
fn crate_predict(model: &FastText, text: &str, k: usize) -> Vec<fasttext::Prediction> {
    let (mut words, mut labels) = (Vec::new(), Vec::new());
    model
        .dict()
        .get_line_from_str(&format!("{text} </s>"), &mut words, &mut labels);
    model.predict_on_words(&words, k, 0.0)
}

/// A product-title-like line for label `l`: three signature words, two shared, one noise word.
fn query(l: usize) -> String {
    format!(
        "sig{l}a sig{l}b shared{} dept{} sig{l}c noise{}",
        l % 97,
        l % 12,
        (l * 7919) % 5000
    )
}

fn corpus(dir: &Path) -> PathBuf {
    let path = dir.join("fasttext_7000.train.txt");
    if !path.is_file() {
        let mut text = String::new();
        for l in 0..LABELS {
            for v in 0..2 {
                let _ = writeln!(text, "__label__c{l} {} variant{v}", query(l));
            }
        }
        std::fs::write(&path, text).expect("corpus written");
    }
    path
}

fn model(dir: &Path, corpus: &Path, name: &str, loss: LossName) -> PathBuf {
    let path = dir.join(format!("fasttext_7000_{name}.bin"));
    if path.is_file() {
        return path;
    }
    eprintln!("training {} (first run only)...", path.display());
    let mut args = Args::new();
    args.apply_supervised_defaults();
    args.input = corpus.to_owned();
    args.output = path.with_extension("");
    args.loss = loss;
    args.dim = DIM;
    args.epoch = 2;
    args.lr = 0.5;
    args.thread = 2;
    args.verbose = 0;
    let model = FastText::train(args).expect("training the bench model");
    model.save_model(&path).expect("bench model saved");
    path
}
