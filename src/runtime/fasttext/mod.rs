//! fastText models (`.bin`, `.ftz`) through the pure-Rust `fasttext` crate, answering exactly what
//! official fastText 0.9.3 answers.
//!
//! Two paths, one answer:
//! - models with dense matrices (softmax, one-vs-all, hierarchical softmax) score a whole batch as
//!   one product of its sentence vectors with the output matrix (`output::OutputMatrix`), which
//!   is where batching pays; hierarchical softmax then walks its Huffman tree over the node scores;
//! - quantised models score row by row through the crate's own predictor.
//!
//! Every score is what official fastText prints: for softmax and one-vs-all `exp(log(p + 1e-5))`,
//! i.e. the model's probability plus 1e-5; for hierarchical softmax the product of
//! `(p + 1e-5)` along the leaf's path. Labels hierarchical softmax prunes (below 1e-5) score 0.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use fasttext::args::LossName;
use fasttext::dictionary::EntryType;
use fasttext::FastText;

mod layout;
mod output;
mod tree;

use output::OutputMatrix;
use tree::{huffman_children, Tree, TreeScratch};

use super::{InputKind, Inputs, LoadError, RunError, Runtime, Scores};
use crate::wide::softmax;

/// Official fastText's end-of-sentence token, which its reader appends to every line read.
const EOS: &str = "</s>";
/// Added to every probability before the log official fastText reports (`std_log`).
const LOG_EPS: f32 = 1e-5;

thread_local! {
    /// Hierarchical softmax's node scores and walk buffers, one set per compute thread, reused
    /// from batch to batch: a batch's node scores (32 rows × 7,200 labels is 0.9 MB) allocated
    /// afresh on every run were new pages, faulted in and zeroed by the kernel each time (half of
    /// `lastmile batch`'s page faults on the demo, `perf record -e page-faults`).
    static TREE_SCRATCH: RefCell<(Vec<f32>, TreeScratch)> = RefCell::default();
}

/// The most node scores a thread keeps between batches (64 MB); a larger batch's are freed.
const TREE_SCRATCH_KEPT: usize = 16 << 20;

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
    /// Hierarchical softmax: the output matrix's rows are the tree's internal nodes, in the
    /// order the walk takes them.
    Tree(Tree),
}

impl FastTextModel {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let data = read_whole(path).map_err(io)?;
        Self::from_bytes(&data).map_err(|reason| LoadError::FastText {
            path: path.to_owned(),
            reason,
        })
    }

    /// Loads a model from the bytes of its file. The layout is checked first (see
    /// `layout::check`): the crate allocates whatever sizes a file declares, and a failed
    /// allocation would abort the process.
    pub fn from_bytes(data: &[u8]) -> Result<Self, String> {
        layout::check(data)?;
        // The crate validates more, and a reader that panics must not take the process down.
        let model = std::panic::catch_unwind(|| FastText::load(&mut std::io::Cursor::new(data)))
            .map_err(|_| String::from("the model file is malformed (the reader panicked)"))?
            .map_err(|e| e.to_string())?;
        let dict = model.dict();
        if dict.nlabels() <= 0 {
            return Err("the model has no labels (is it a supervised model?)".into());
        }
        let prefix = model.args().label.clone();
        let labels = (0..dict.nlabels())
            .map(|i| {
                dict.get_label(i)
                    .map(|l| l.strip_prefix(prefix.as_str()).unwrap_or(l).to_owned())
                    .map_err(|e| format!("label {i}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let dense_loss = match model.args().loss {
            LossName::Softmax => DenseLoss::Softmax,
            LossName::OneVsAll | LossName::NegativeSampling => DenseLoss::OneVsAll,
            LossName::HierarchicalSoftmax => DenseLoss::Tree(Tree::new(
                &huffman_children(&dict.get_counts(EntryType::Label)),
                labels.len(),
            )),
        };
        if model.quant_output().is_some() && matches!(dense_loss, DenseLoss::Tree(_)) {
            // The crate scores quantised outputs with a softmax whatever the loss; official
            // fastText walks the tree. Refuse rather than answer something else.
            return Err(
                "hierarchical softmax with a quantised output matrix (quantize -qout) is \
                        not supported; quantise without -qout"
                    .into(),
            );
        }
        let scorer = match dense_loss {
            // A quantised input matrix is read through the crate's sentence vector (see
            // `hidden_quantised`); the output matrix must be dense for the GEMM.
            loss if model.quant_output().is_none() => {
                let wo = model.output_matrix();
                let dim = model.args().dim as usize;
                if wo.data().len() < labels.len() * dim {
                    return Err(format!(
                        "output matrix holds {} floats, fewer than {} labels x dim {dim}",
                        wo.data().len(),
                        labels.len()
                    ));
                }
                let mut output = OutputMatrix::new(wo.data(), labels.len(), dim);
                if let DenseLoss::Tree(tree) = &loss {
                    output = output.select_rows(&tree.node_rows(labels.len()));
                }
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
            DenseLoss::Tree(tree) => TREE_SCRATCH.with_borrow_mut(|(logits, scratch)| {
                output.products(&hidden, texts.len(), logits);
                out.data.resize(texts.len() * n, 0.0);
                let rows = logits
                    .chunks_exact(n.max(1))
                    .zip(out.data.chunks_exact_mut(n.max(1)));
                for (row, (logits, dst)) in rows.enumerate() {
                    if empty[row] {
                        dst.fill(0.0);
                    } else {
                        tree.walk(logits, scratch, dst);
                    }
                }
                if logits.capacity() > TREE_SCRATCH_KEPT {
                    *logits = Vec::new();
                }
            }),
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

/// The whole file, read once: the layout is checked on the same bytes the model is built from,
/// so a file rewritten during the load cannot slip past the check. The buffer is reserved
/// fallibly, so even a file too big for memory is an error, not an abort.
fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut data = Vec::new();
    usize::try_from(len)
        .ok()
        .and_then(|len| data.try_reserve_exact(len).ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("the file is {len} bytes, more than can be held in memory"),
            )
        })?;
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// Softmax as fastText computes it, in place: subtract the max, exponentiate, divide by the sum;
/// then fastText's 1e-5 added (exp(log(p + 1e-5)) is p + 1e-5 to within a rounding).
fn softmax_in_place(logits: &mut [f32]) {
    softmax(logits, LOG_EPS);
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
                loss: DenseLoss::Tree(tree),
                ..
            } => tree.reorder_columns(order), // internal nodes keep their rows
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

    #[test]
    fn softmax_sums_to_one() {
        let mut out = [1.0, 2.0, 3.0];
        softmax_in_place(&mut out);
        assert!((out.iter().sum::<f32>() - 1.0 - 3.0 * LOG_EPS).abs() < 1e-6);
        assert!(out[2] > out[1] && out[1] > out[0]);
    }
}
