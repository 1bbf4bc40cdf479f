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

/// A model that panics on every batch.
pub struct Panicking(pub Arc<dyn Runtime>);

impl Runtime for Panicking {
    fn labels(&self) -> &[String] {
        self.0.labels()
    }
    fn input_kind(&self) -> InputKind {
        self.0.input_kind()
    }
    fn run(&self, _: &Inputs<'_>, _: &mut Scores) -> Result<(), RunError> {
        panic!("deliberately panicking test model")
    }
    fn reorder_columns(&mut self, _: &[usize]) {
        unreachable!("columns are ordered at load time, before the wrapper exists")
    }
}

/// How long a test waits for something that should happen: far beyond any machine's noise,
/// short enough that a hang fails its test instead of the whole run.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// A gate compute threads wait at: closed until [`Gate::open`]; counts who is waiting.
#[derive(Default)]
pub struct Gate {
    state: std::sync::Mutex<(bool, usize)>,
    changed: std::sync::Condvar,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Blocks the calling (compute) thread until the gate is open, or [`PATIENCE`] passed: a
    /// test that fails with the gate closed must not leave a compute thread (and the pool's
    /// drop, which joins it) hanging for ever.
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 += 1;
        self.changed.notify_all();
        let (mut s, _) = self
            .changed
            .wait_timeout_while(s, PATIENCE, |s| !s.0)
            .unwrap();
        s.1 -= 1;
    }

    /// Waits (on a blocking thread) until at least `n` threads are held at the gate; panics
    /// after [`PATIENCE`] rather than hang the suite.
    pub async fn holding(self: &Arc<Self>, n: usize) {
        let gate = Arc::clone(self);
        let held = tokio::task::spawn_blocking(move || {
            let s = gate.state.lock().unwrap();
            let (s, _) = gate
                .changed
                .wait_timeout_while(s, PATIENCE, |s| s.1 < n)
                .unwrap();
            s.1
        })
        .await
        .unwrap();
        assert!(
            held >= n,
            "gave up waiting for {n} runs at the gate ({held} held)"
        );
    }

    pub fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }

    /// Closes it again: later runs wait.
    pub fn close(&self) {
        self.state.lock().unwrap().0 = false;
    }
}

/// A model whose runs wait at a gate first (a member that hangs), then answer as it would.
pub struct Stuck(pub Arc<dyn Runtime>, pub Arc<Gate>);

impl Runtime for Stuck {
    fn labels(&self) -> &[String] {
        self.0.labels()
    }
    fn input_kind(&self) -> InputKind {
        self.0.input_kind()
    }
    fn run(&self, inputs: &Inputs<'_>, out: &mut Scores) -> Result<(), RunError> {
        self.1.pass();
        self.0.run(inputs, out)
    }
    fn reorder_columns(&mut self, _: &[usize]) {
        unreachable!("columns are ordered at load time, before the wrapper exists")
    }
}

/// A model that counts the rows it scores.
pub struct Counting(
    pub Arc<dyn Runtime>,
    pub Arc<std::sync::atomic::AtomicUsize>,
);

impl Runtime for Counting {
    fn labels(&self) -> &[String] {
        self.0.labels()
    }
    fn input_kind(&self) -> InputKind {
        self.0.input_kind()
    }
    fn run(&self, inputs: &Inputs<'_>, out: &mut Scores) -> Result<(), RunError> {
        self.1
            .fetch_add(inputs.rows(), std::sync::atomic::Ordering::SeqCst);
        self.0.run(inputs, out)
    }
    fn reorder_columns(&mut self, _: &[usize]) {
        unreachable!("columns are ordered at load time, before the wrapper exists")
    }
}
