//! fastText models (`.bin`, `.ftz`) through the pure-Rust `fasttext` crate, answering exactly what
//! official fastText 0.9.3 answers.

use std::path::Path;

use super::{InputKind, Inputs, LoadError, RunError, Runtime, Scores};

/// A loaded fastText model.
pub struct FastTextModel {
    labels: Vec<String>,
}

impl FastTextModel {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        Err(LoadError::FastText {
            path: path.to_owned(),
            reason: "not built yet".into(),
        })
    }
}

impl Runtime for FastTextModel {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Text
    }

    fn run(&self, _inputs: &Inputs<'_>, _out: &mut Scores) -> Result<(), RunError> {
        Err(RunError::Runtime("not built yet".into()))
    }
}
