//! The test side of `lastmile::hooks`: a [`Hold`] that work waits at until released, and
//! [`TestHooks`], which puts a hold at each hook point a test asks for.

use std::sync::Arc;

use lastmile::hooks::{Hooks, Pause};
use tokio::sync::watch;

use crate::support::runtimes::PATIENCE;

/// Work that reaches a hold waits there until [`Hold::release`], so that a test can have
/// requests (or a deploy, or a shadow batch) in flight for certain without timing anything.
#[derive(Debug)]
pub struct Hold {
    waiting: watch::Sender<usize>,
    open: watch::Sender<bool>,
}

impl Hold {
    pub fn new() -> Arc<Hold> {
        Arc::new(Hold {
            waiting: watch::Sender::new(0),
            open: watch::Sender::new(false),
        })
    }

    /// Waits until at least `n` pieces of work are held; panics after [`PATIENCE`] rather
    /// than hang the suite.
    pub async fn held(&self, n: usize) {
        let mut rx = self.waiting.subscribe();
        let waited = tokio::time::timeout(PATIENCE, rx.wait_for(|&w| w >= n)).await;
        let waited = waited.unwrap_or_else(|_| {
            panic!(
                "gave up waiting for {n} held pieces of work ({} held)",
                *self.waiting.borrow()
            )
        });
        waited.expect("the hold owns its sender");
    }

    /// Lets every held (and later) piece of work through.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// The pause a hook point awaits: at once when the hold is open.
    fn pause(self: &Arc<Self>) -> Option<Pause> {
        if *self.open.borrow() {
            return None;
        }
        let hold = Arc::clone(self);
        Some(Box::pin(async move {
            let mut open = hold.open.subscribe();
            if *open.borrow() {
                return;
            }
            hold.waiting.send_modify(|w| *w += 1);
            open.wait_for(|&o| o)
                .await
                .expect("the hold owns its sender");
        }))
    }
}

/// Holds at the hook points a test chose; the others go on at once.
#[derive(Default)]
pub struct TestHooks {
    /// Admitted requests, before they are scored.
    pub admitted: Option<Arc<Hold>>,
    /// Every deploy operation once its candidate is loaded.
    pub candidate_loaded: Option<Arc<Hold>>,
    /// The shadow worker, before each batch.
    pub shadow_batch: Option<Arc<Hold>>,
}

impl Hooks for TestHooks {
    fn admitted(&self) -> Option<Pause> {
        self.admitted.as_ref()?.pause()
    }

    fn candidate_loaded(&self) -> Option<Pause> {
        self.candidate_loaded.as_ref()?.pause()
    }

    fn shadow_batch(&self) -> Option<Pause> {
        self.shadow_batch.as_ref()?.pause()
    }
}
