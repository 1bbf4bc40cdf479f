//! Runtimes wrapping a loaded model to make it fail or slow, as a broken model file or a busy
//! machine would.

use std::sync::Arc;
use std::time::Duration;

use lastmile::runtime::{InputKind, Inputs, RunError, Runtime, Scores};

/// A model whose every batch fails at run time, as a broken model file or runtime would.
pub struct Failing(pub Arc<dyn Runtime>);

impl Runtime for Failing {
    fn labels(&self) -> &[String] {
        self.0.labels()
    }
    fn input_kind(&self) -> InputKind {
        self.0.input_kind()
    }
    fn run(&self, _: &Inputs<'_>, _: &mut Scores) -> Result<(), RunError> {
        Err(RunError::Runtime("deliberately failing test model".into()))
    }
    fn reorder_columns(&mut self, _: &[usize]) {
        unreachable!("columns are ordered at load time, before the wrapper exists")
    }
}

/// A model that takes `delay` longer per batch than the one it wraps (and answers the same).
pub struct Slow(pub Arc<dyn Runtime>, pub Duration);

impl Runtime for Slow {
    fn labels(&self) -> &[String] {
        self.0.labels()
    }
    fn input_kind(&self) -> InputKind {
        self.0.input_kind()
    }
    fn run(&self, inputs: &Inputs<'_>, out: &mut Scores) -> Result<(), RunError> {
        std::thread::sleep(self.1);
        self.0.run(inputs, out)
    }
    fn reorder_columns(&mut self, _: &[usize]) {
        unreachable!("columns are ordered at load time, before the wrapper exists")
    }
}
