//! fastText models (`.bin`, `.ftz`) through the pure-Rust `fasttext` crate, answering exactly what
//! official fastText 0.9.3 answers.
//!
//! Two paths, one answer:
//! - models with dense matrices (softmax, one-vs-all, hierarchical softmax) score a whole batch as
//!   one product of its sentence vectors with the output matrix ([`output::OutputMatrix`]), which
//!   is where batching pays; hierarchical softmax then walks its Huffman tree over the node scores;
//! - quantised models score row by row through the crate's own predictor.
//!
//! Every score is what official fastText prints: for softmax and one-vs-all `exp(log(p + 1e-5))`,
//! i.e. the model's probability plus 1e-5; for hierarchical softmax the product of
//! `(p + 1e-5)` along the leaf's path. Labels hierarchical softmax prunes (below 1e-5) score 0.

use std::collections::HashMap;
use std::path::Path;

use fasttext::args::LossName;
use fasttext::dictionary::EntryType;
use fasttext::FastText;

mod output;

use output::OutputMatrix;

use super::{InputKind, Inputs, LoadError, RunError, Runtime, Scores};
use crate::wide::{exp, ln, map_sum, widen};

/// Official fastText's end-of-sentence token, which its reader appends to every line read.
const EOS: &str = "</s>";
/// Added to every probability before the log official fastText reports (`std_log`).
const LOG_EPS: f32 = 1e-5;

/// A loaded fastText model.
pub struct FastTextModel {
    model: FastText,
    /// Labels in dictionary order, prefix (`__label__` or the model's own) stripped.
    labels: Vec<String>,
    scorer: Scorer,
    /// The `</s>` input row of a quantised model (see `hidden_quantised`).
    eos_row: Option<Vec<f32>>,
}

/// How a batch is turned into scores.
enum Scorer {
    /// `[labels, dim]` output matrix, multiplied against the batch's sentence vectors at once.
    Gemm {
        output: OutputMatrix,
        loss: DenseLoss,
    },
    /// The crate's own predictor, one row at a time; `index` maps its label strings to columns.
    PerRow { index: HashMap<String, usize> },
}

/// How a row of output-matrix products becomes label scores.
enum DenseLoss {
    Softmax,
    /// Also negative sampling, which predicts the same way.
    OneVsAll,
    /// Hierarchical softmax: `children[i]` are the (left, right) children of internal node
    /// `labels + i`, whose score is output row `i`; nodes below `labels` are leaves, and column
    /// `c` holds leaf `column_leaf[c]`'s score.
    Tree {
        children: Vec<[u32; 2]>,
        column_leaf: Vec<u32>,
    },
}

impl FastTextModel {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        if let Err(source) = std::fs::metadata(path) {
            return Err(LoadError::Io {
                path: path.to_owned(),
                source,
            });
        }
        let bad = |reason: String| LoadError::FastText {
            path: path.to_owned(),
            reason,
        };
        // The crate validates the header, but a truncated or hostile file must never take the
        // process down with it.
        let model = std::panic::catch_unwind(|| FastText::load_model(path))
            .map_err(|_| bad("the model file is malformed (the reader panicked)".into()))?
            .map_err(|e| bad(e.to_string()))?;
        let dict = model.dict();
        if dict.nlabels() <= 0 {
            return Err(bad(
                "the model has no labels (is it a supervised model?)".into()
            ));
        }
        let prefix = model.args().label.clone();
        let labels = (0..dict.nlabels())
            .map(|i| {
                dict.get_label(i)
                    .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l).to_owned())
                    .map_err(|e| bad(format!("label {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let dense_loss = match model.args().loss {
            LossName::Softmax => DenseLoss::Softmax,
            LossName::OneVsAll | LossName::NegativeSampling => DenseLoss::OneVsAll,
            LossName::HierarchicalSoftmax => DenseLoss::Tree {
                children: huffman_children(&dict.get_counts(EntryType::Label)),
                column_leaf: (0..labels.len() as u32).collect(),
            },
        };
        if model.quant_output().is_some() && matches!(dense_loss, DenseLoss::Tree { .. }) {
            // The crate scores quantised outputs with a softmax whatever the loss; official
            // fastText walks the tree. Refuse rather than answer something else.
            return Err(bad(
                "hierarchical softmax with a quantised output matrix (quantize -qout) is not \
                 supported; quantise without -qout"
                    .into(),
            ));
        }
        let scorer = match dense_loss {
            // A quantised input matrix is read through the crate's sentence vector (see
            // `hidden_quantised`); the output matrix must be dense for the GEMM.
            loss if model.quant_output().is_none() => {
                let wo = model.output_matrix();
                let dim = model.args().dim as usize;
                if wo.data().len() < labels.len() * dim {
                    return Err(bad(format!(
                        "output matrix holds {} floats, fewer than {} labels x dim {dim}",
                        wo.data().len(),
                        labels.len()
                    )));
                }
                let output = OutputMatrix::new(wo.data(), labels.len(), dim);
                Scorer::Gemm { output, loss }
            }
            _ => Scorer::PerRow {
                index: labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), i))
                    .collect(),
            },
        };
        let eos_row = (model.is_quant() && dict.get_id(EOS).is_some()).then(|| {
            let mut row = vec![0.0f32; model.args().dim as usize];
            model.get_word_vector_into(EOS, &mut row);
            row
        });
        Ok(Self {
            model,
            labels,
            scorer,
            eos_row,
        })
    }

    /// The sentence vector of a quantised model: the mean of the (dequantised) input rows of the
    /// line's `n` ids. The crate exposes quantised rows only through `get_sentence_vector`, which
    /// tokenises `line` as we do and then adds one more `</s>`; that extra row (the `</s>` word
    /// vector, which has no subwords) is taken back out: `(sv * (n + 1) - eos) / n`.
    fn hidden_quantised(&self, line: &str, n: usize, h: &mut [f32]) {
        self.model.get_sentence_vector_into(line, h);
        // Without `</s>` in the dictionary the crate adds nothing.
        if let Some(eos) = &self.eos_row {
            let (with_eos, without) = ((n + 1) as f32, n as f32);
            for (v, e) in h.iter_mut().zip(eos) {
                *v = (*v * with_eos - e) / without;
            }
        }
    }

    /// Word, subword and n-gram ids of one row, tokenised as official fastText reads a line;
    /// returns the line as tokenised.
    fn tokenize(&self, text: &str, words: &mut Vec<i32>, scratch: &mut Vec<i32>) -> String {
        // Official fastText also splits on \v and \0, which `get_line_from_str` does not; the
        // end-of-sentence token must come last so word n-grams include (last word, </s>).
        let mut line = text.replace(['\u{b}', '\0'], " ");
        line.push(' ');
        line.push_str(EOS);
        self.model.dict().get_line_from_str(&line, words, scratch);
        line
    }

    /// The label prefix stripped from the crate's predictions (they carry it).
    fn strip<'a>(&self, label: &'a str) -> &'a str {
        label
            .strip_prefix(self.model.args().label.as_str())
            .unwrap_or(label)
    }

    fn run_gemm(&self, texts: &[&str], output: &OutputMatrix, loss: &DenseLoss, out: &mut Scores) {
        let dim = output.dim();
        let mut hidden = vec![0.0f32; texts.len() * dim];
        let mut empty = vec![false; texts.len()];
        let (mut words, mut scratch) = (Vec::new(), Vec::new());
        for (row, text) in texts.iter().enumerate() {
            let line = self.tokenize(text, &mut words, &mut scratch);
            if words.is_empty() {
                empty[row] = true;
                continue;
            }
            let h = &mut hidden[row * dim..(row + 1) * dim];
            if self.model.is_quant() {
                self.hidden_quantised(&line, words.len(), h);
            } else {
                let input = self.model.input_matrix();
                for &id in &words {
                    for (acc, w) in h.iter_mut().zip(input.row(i64::from(id))) {
                        *acc += w;
                    }
                }
                let scale = 1.0 / words.len() as f32;
                h.iter_mut().for_each(|v| *v *= scale);
            }
        }
        let n = self.labels.len();
        out.rows = texts.len();
        out.cols = n;
        match loss {
            // One logit per label: the products go straight into `out`, turned into
            // probabilities where they are.
            DenseLoss::Softmax | DenseLoss::OneVsAll => {
                output.products(&hidden, texts.len(), &mut out.data);
                for (row, dst) in out.data.chunks_exact_mut(n.max(1)).enumerate() {
                    if empty[row] {
                        dst.fill(0.0); // official fastText predicts nothing for an empty line
                    } else if matches!(loss, DenseLoss::Softmax) {
                        softmax_in_place(dst);
                    } else {
                        // exp(log(p + 1e-5)) is p + 1e-5 to within a rounding.
                        dst.iter_mut()
                            .for_each(|d| *d = sigmoid_table(*d) + LOG_EPS);
                    }
                }
            }
            DenseLoss::Tree {
                children,
                column_leaf,
            } => {
                let mut logits = Vec::new();
                output.products(&hidden, texts.len(), &mut logits);
                out.data.resize(texts.len() * n, 0.0);
                let mut tree = TreeScratch::default();
                let rows = logits
                    .chunks_exact(n.max(1))
                    .zip(out.data.chunks_exact_mut(n.max(1)));
                for (row, (logits, dst)) in rows.enumerate() {
                    if empty[row] {
                        dst.fill(0.0);
                    } else {
                        walk_tree(children, column_leaf, logits, &mut tree, dst);
                    }
                }
            }
        }
    }

    fn run_per_row(&self, texts: &[&str], index: &HashMap<String, usize>, out: &mut Scores) {
        let (mut words, mut scratch) = (Vec::new(), Vec::new());
        for (row, text) in texts.iter().enumerate() {
            self.tokenize(text, &mut words, &mut scratch);
            let dst = out.row_mut(row);
            for p in self.model.predict_on_words(&words, self.labels.len(), 0.0) {
                if let Some(&col) = index.get(self.strip(&p.label)) {
                    dst[col] = p.prob;
                }
            }
        }
    }
}

/// The children of every internal node of fastText's Huffman tree over label counts (sorted by
/// count, descending, as the dictionary holds them): the same construction as fastText's
/// `HierarchicalSoftmaxLoss::buildTree`, so node `labels + i` scores with output row `i`.
fn huffman_children(counts: &[i64]) -> Vec<[u32; 2]> {
    let n = counts.len();
    let mut count: Vec<i64> = counts.to_vec();
    count.resize(2 * n - 1, 1_000_000_000_000_000);
    let mut children = Vec::with_capacity(n.saturating_sub(1));
    let (mut leaf, mut node) = (n as i64 - 1, n);
    for i in n..2 * n - 1 {
        let mut pick = [0usize; 2];
        for p in &mut pick {
            if leaf >= 0 && count[leaf as usize] < count[node] {
                *p = leaf as usize;
                leaf -= 1;
            } else {
                *p = node;
                node += 1;
            }
        }
        count[i] = count[pick[0]] + count[pick[1]];
        children.push([pick[0] as u32, pick[1] as u32]);
    }
    children
}

/// Scores every leaf as fastText's tree search does with threshold 0: the sum of
/// `log(p + 1e-5)` along the path (left: 1 − σ, right: σ, exact sigmoid of the node's output
/// row), leaves whose path drops below log(1e-5) at any node left at 0. `node_logits[i]` is
/// internal node `labels + i`'s product with the sentence vector; column c holds leaf
/// `column_leaf[c]`.
///
/// Where fastText searches depth first, this walks the nodes from the root down in one pass
/// (every node was built after its children, so descending order meets a parent first): each
/// node hands its score plus the branch term to its children, and a node below the floor hands
/// down −∞, which prunes its subtree exactly as the search does. Same additions, same answer to
/// the bit, no stack and no unpredictable branch; the logarithms and exponentials run over whole
/// rows in wide loops ([`branch_logs`], [`leaf_probabilities`]). The leaves' scores are gathered
/// into the row in column order: `dst` may be cold memory, and writes in order stream into it
/// where scattered ones would miss the cache one by one.
fn walk_tree(
    children: &[[u32; 2]],
    column_leaf: &[u32],
    node_logits: &[f32],
    scratch: &mut TreeScratch,
    dst: &mut [f32],
) {
    let labels = dst.len();
    let floor = LOG_EPS.ln();
    if children.is_empty() {
        // One label: the root is the leaf.
        dst[0] = 1.0;
        return;
    }
    let nodes = children.len();
    let TreeScratch { left, right, path } = scratch;
    left.resize(nodes, 0.0);
    right.resize(nodes, 0.0);
    branch_logs(&node_logits[..nodes], left, right);
    path.resize(labels + nodes, 0.0);
    path[labels + nodes - 1] = 0.0; // the root
    for i in (0..nodes).rev() {
        let score = path[labels + i];
        let score = if score < floor {
            f32::NEG_INFINITY
        } else {
            score
        };
        let [l, r] = children[i];
        path[l as usize] = score + left[i];
        path[r as usize] = score + right[i];
    }
    let leaves = &path[..labels];
    for (d, &leaf) in dst.iter_mut().zip(column_leaf) {
        *d = leaves[leaf as usize];
    }
    leaf_probabilities(dst, floor);
}

/// Buffers a tree walk reuses from row to row.
#[derive(Default)]
struct TreeScratch {
    left: Vec<f32>,
    right: Vec<f32>,
    /// Every node's path score: leaves first, then internal nodes.
    path: Vec<f32>,
}

widen!(
    /// Each internal node's two branch terms: fastText's `log(1 − σ(x) + 1e-5)` (left) and
    /// `log(σ(x) + 1e-5)` (right) of its logit x.
    fn branch_logs(logits: &[f32], left: &mut [f32], right: &mut [f32]) = branch_logs_body
);

#[inline(always)]
fn branch_logs_body(logits: &[f32], left: &mut [f32], right: &mut [f32]) {
    for ((&x, l), r) in logits.iter().zip(left.iter_mut()).zip(right.iter_mut()) {
        let f = 1.0 / (1.0 + exp(-x));
        *l = ln(1.0 - f + LOG_EPS);
        *r = ln(f + LOG_EPS);
    }
}

widen!(
    /// A leaf's path score to its probability; leaves the search pruned (below `floor`) to 0.
    fn leaf_probabilities(scores: &mut [f32], floor: f32) = leaf_probabilities_body
);

#[inline(always)]
fn leaf_probabilities_body(scores: &mut [f32], floor: f32) {
    for s in scores.iter_mut() {
        let p = exp(*s);
        *s = if *s >= floor { p } else { 0.0 };
    }
}

widen!(
    /// Softmax as fastText computes it, in place: subtract the max, exponentiate, divide by the
    /// sum; then fastText's 1e-5 added (exp(log(p + 1e-5)) is p + 1e-5 to within a rounding).
    fn softmax_in_place(logits: &mut [f32]) = softmax_body
);

#[inline(always)]
fn softmax_body(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv = 1.0 / map_sum(logits, |x| exp(x - max));
    logits.iter_mut().for_each(|p| *p = *p * inv + LOG_EPS);
}

/// fastText's table sigmoid (512 steps over [-8, 8]), which one-vs-all models report with; an
/// exact sigmoid would differ by up to ~1e-2.
fn sigmoid_table(x: f32) -> f32 {
    const MAX: f32 = 8.0;
    const STEPS: usize = 512;
    static TABLE: std::sync::LazyLock<[f32; STEPS + 1]> = std::sync::LazyLock::new(|| {
        std::array::from_fn(|i| {
            let t = (i as f32 * 2.0 * MAX) / STEPS as f32 - MAX;
            1.0 / (1.0 + (-t).exp())
        })
    });
    if x < -MAX {
        return 0.0;
    }
    if x > MAX {
        return 1.0;
    }
    TABLE[((x + MAX) * STEPS as f32 / MAX / 2.0) as usize]
}

impl Runtime for FastTextModel {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Text
    }

    fn reorder_columns(&mut self, order: &[usize]) {
        self.labels = order.iter().map(|&c| self.labels[c].clone()).collect();
        match &mut self.scorer {
            Scorer::Gemm {
                output,
                loss: DenseLoss::Tree { column_leaf, .. },
            } => {
                let _ = output; // internal nodes keep their rows
                *column_leaf = order.iter().map(|&c| column_leaf[c]).collect();
            }
            Scorer::Gemm { output, .. } => {
                *output = output.select_rows(order);
            }
            Scorer::PerRow { index } => {
                *index = self
                    .labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (l.clone(), i))
                    .collect();
            }
        }
    }

    fn run(&self, inputs: &Inputs<'_>, out: &mut Scores) -> Result<(), RunError> {
        let Inputs::Text(texts) = inputs else {
            return Err(RunError::BadInput(
                "a fastText model reads text, not a feature vector".into(),
            ));
        };
        match &self.scorer {
            Scorer::Gemm { output, loss } => self.run_gemm(texts, output, loss, out),
            Scorer::PerRow { index } => {
                out.reset(texts.len(), self.labels.len());
                self.run_per_row(texts, index, out)
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sigmoid_matches_fasttext_steps() {
        assert_eq!(sigmoid_table(-9.0), 0.0);
        assert_eq!(sigmoid_table(9.0), 1.0);
        assert_eq!(sigmoid_table(0.0), 0.5);
        // 0.02 lies inside the step starting at 0: the table answers sigmoid(0), not sigmoid(0.02).
        assert_eq!(sigmoid_table(0.02), 0.5);
    }

    /// fastText's own depth-first search, kept here as the reference the one-pass walk must equal.
    fn depth_first(children: &[[u32; 2]], node_logits: &[f32], labels: usize) -> Vec<f32> {
        let floor = LOG_EPS.ln();
        let mut out = vec![0.0f32; labels];
        let (mut left, mut right) = (vec![0.0; children.len()], vec![0.0; children.len()]);
        branch_logs(&node_logits[..children.len()], &mut left, &mut right);
        let mut stack = vec![(labels + children.len() - 1, 0.0f32)];
        while let Some((node, score)) = stack.pop() {
            if score < floor {
                continue;
            }
            if node < labels {
                out[node] = exp(score);
                continue;
            }
            let [l, r] = children[node - labels];
            stack.push((r as usize, score + right[node - labels]));
            stack.push((l as usize, score + left[node - labels]));
        }
        out
    }

    #[test]
    fn the_one_pass_walk_equals_the_depth_first_search_to_the_bit() {
        let labels = 300;
        // Skewed counts make a deep, lopsided tree, as real label frequencies do.
        let counts: Vec<i64> = (0..labels as i64)
            .map(|i| 1 + (i * 7919) % 97 * (i % 5 + 1))
            .collect();
        let children = huffman_children(&counts);
        let column_leaf: Vec<u32> = (0..labels as u32).collect();
        let mut scratch = TreeScratch::default();
        let mut pruned = 0;
        for seed in 0..20u32 {
            // Logits from ±0.1 (nothing pruned) to ±12 (most of the tree pruned).
            let scale = 0.1 + seed as f32 * 0.6;
            let logits: Vec<f32> = (0..labels - 1)
                .map(|i| {
                    let h = (i as u32)
                        .wrapping_mul(2_654_435_761)
                        .wrapping_add(seed * 40_503);
                    ((h >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * scale
                })
                .collect();
            let want = depth_first(&children, &logits, labels);
            let mut got = vec![0.0f32; labels];
            walk_tree(&children, &column_leaf, &logits, &mut scratch, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "seed {seed}");
            pruned += want.iter().filter(|&&p| p == 0.0).count();
        }
        assert!(pruned > 0, "some subtrees were pruned");
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut out = [1.0, 2.0, 3.0];
        softmax_in_place(&mut out);
        assert!((out.iter().sum::<f32>() - 1.0 - 3.0 * LOG_EPS).abs() < 1e-6);
        assert!(out[2] > out[1] && out[1] > out[0]);
    }
}
