//! ONNX models through ONNX Runtime (`ort`, loaded dynamically). Owned by the ONNX runtime work;
//! this is the interface the rest of the crate builds against.

use std::path::PathBuf;

use super::{InputKind, Inputs, LoadError, RunError, Runtime, Scores};

/// What a model's input tensor is fed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// A string tensor (`[N]` or `[N,1]`, as the model declares) of the joined text fields.
    Text,
    /// A float tensor `[N, width]` from one numeric field of the request.
    Features,
}

/// Whether the score tensor holds probabilities or logits (softmax applied on our side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    Probabilities,
    Logits,
}

/// Where the model's class labels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnnxLabels {
    /// Read by the manifest layer from a labels file, one per line, in output column order.
    List(Vec<String>),
    /// A key of the model's custom metadata holding the labels (JSON array or one per line).
    Metadata { key: String },
    /// The keys of sklearn-onnx's ZipMap output (sequence of maps).
    ZipMap,
}

/// Everything needed to load one ONNX model, already validated by the manifest layer.
#[derive(Debug, Clone)]
pub struct OnnxSpec {
    pub path: PathBuf,
    /// Input tensor name; `None` means the model's only input.
    pub input: Option<String>,
    pub feed: Feed,
    /// Score tensor name; `None` means: the only float output, else sklearn-onnx's probability
    /// tensor or ZipMap output.
    pub output: Option<String>,
    pub scores: ScoreKind,
    pub labels: OnnxLabels,
    /// Intra-op threads per run (1 by default: parallelism comes from running models side by side).
    pub intra_threads: usize,
}

/// A loaded ONNX model.
pub struct OnnxModel {
    labels: Vec<String>,
    input_kind: InputKind,
}

impl OnnxModel {
    pub fn load(spec: &OnnxSpec) -> Result<Self, LoadError> {
        Err(LoadError::Onnx {
            path: spec.path.clone(),
            reason: "ONNX support is not built yet".into(),
        })
    }
}

impl Runtime for OnnxModel {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn input_kind(&self) -> InputKind {
        self.input_kind
    }

    fn run(&self, _inputs: &Inputs<'_>, _out: &mut Scores) -> Result<(), RunError> {
        Err(RunError::Runtime("ONNX support is not built yet".into()))
    }
}
