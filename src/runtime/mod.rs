//! The one interface every model format sits behind: a batch of rows in, one score vector per row
//! (over the model's own labels) out. Synchronous on purpose: models run on the compute pool, never
//! on async worker threads.

pub mod fasttext;
pub mod onnx;
pub mod ort_env;
pub mod stop;

use std::path::PathBuf;

/// What a model reads from a request item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Text: the model's declared fields, joined with a space in declared order.
    Text,
    /// A fixed-width float vector taken from one numeric field of the item.
    Features { width: usize },
}

/// One batch of rows, already shaped for the model's input kind.
#[derive(Debug, Clone, Copy)]
pub enum Inputs<'a> {
    /// One string per row.
    Text(&'a [&'a str]),
    /// Row-major `[rows, width]` floats.
    Features { data: &'a [f32], width: usize },
}

impl Inputs<'_> {
    /// Number of rows in the batch.
    pub fn rows(&self) -> usize {
        match self {
            Inputs::Text(rows) => rows.len(),
            Inputs::Features { data, width } => data.len().checked_div(*width).unwrap_or(0),
        }
    }
}

/// Row-major `[rows, cols]` scores over the model's own labels (probabilities: each row is what the
/// model itself reports, e.g. softmax output).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Scores {
    /// Resizes to `[rows, cols]` and zeroes, reusing the allocation.
    pub fn reset(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        self.data.clear();
        self.data.resize(rows * cols, 0.0);
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// A loaded model, ready to score batches. Implementations are shared between threads.
pub trait Runtime: Send + Sync {
    /// The model's own labels, in output column order.
    fn labels(&self) -> &[String];

    /// What each row must carry.
    fn input_kind(&self) -> InputKind;

    /// Scores a batch; `out` is resized to `[inputs.rows(), labels().len()]`.
    fn run(&self, inputs: &Inputs<'_>, out: &mut Scores) -> Result<(), RunError>;

    /// Whether a run can be interrupted ([`Runtime::run_stoppable`] does more than [`Runtime::run`]).
    fn stoppable(&self) -> bool {
        false
    }

    /// Like [`Runtime::run`], but gives up (an error) once `abandoned` holds: nobody wants the
    /// answer any more (see [`stop`]). Without a way to interrupt the model, just runs.
    fn run_stoppable(
        &self,
        inputs: &Inputs<'_>,
        out: &mut Scores,
        abandoned: stop::Abandoned,
    ) -> Result<(), RunError> {
        let _ = abandoned;
        self.run(inputs, out)
    }

    /// Reorders the output columns (and `labels()`): afterwards column j holds what column
    /// `order[j]` held. Called once at load time so that every model reports in the label
    /// space's order, which lets voting add scores as contiguous vectors; each runtime folds the
    /// permutation into a pass it makes anyway (matrix rows, tree leaves, the copy out of
    /// onnxruntime), so it costs nothing per request. `order` is a permutation of the columns.
    fn reorder_columns(&mut self, order: &[usize]);
}

/// The inverse of a column order: `inverse[order[j]] = j`.
pub fn inverse_order(order: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; order.len()];
    for (j, &c) in order.iter().enumerate() {
        inverse[c] = j;
    }
    inverse
}

/// Failure while loading a model file. Messages name the file; the manifest layer adds the model name
/// and the manifest line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid fastText model: {reason}")]
    FastText { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Onnx { path: PathBuf, reason: String },
    #[error("{0}")]
    OnnxRuntimeMissing(String),
    #[error("labels: {0}")]
    Labels(String),
    #[error("{field}: {reason}")]
    Binding { field: &'static str, reason: String },
}

/// Failure while scoring a batch.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("input does not fit the model: {0}")]
    BadInput(String),
    #[error("runtime failure: {0}")]
    Runtime(String),
    /// Stopped part-way because every request waiting for it had given up.
    #[error("stopped: every request waiting for this run had given up")]
    Stopped,
}
