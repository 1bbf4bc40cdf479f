//! Points on the live paths where a test can step in, injected as one interface whose every
//! method does nothing by default ([`NoHooks`], what `lastmile serve` runs with).
//!
//! A hook returns `None` to let work go on at once, or a [`Pause`] that the path awaits before
//! going on: that is how a test has a request, a deploy or a shadow batch in flight for certain
//! without timing anything. Production code never implements this trait; the cost on the request
//! path is one virtual call that returns `None`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a hook asks the path to await before it goes on.
pub type Pause = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The hook points. Every method defaults to going on at once.
pub trait Hooks: Send + Sync + 'static {
    /// A request was admitted and is about to be scored.
    fn admitted(&self) -> Option<Pause> {
        None
    }

    /// A candidate (or shadow) ensemble is loaded and warmed up, not yet staged.
    fn candidate_loaded(&self) -> Option<Pause> {
        None
    }

    /// The shadow worker is about to take its next batch of mirrored items.
    fn shadow_batch(&self) -> Option<Pause> {
        None
    }
}

/// The hooks of a server no test steps into.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// The hooks of a server no test steps into, shared.
pub fn none() -> Arc<dyn Hooks> {
    Arc::new(NoHooks)
}

/// Awaits what a hook asked for, if anything.
pub async fn pass(pause: Option<Pause>) {
    if let Some(pause) = pause {
        pause.await;
    }
}
