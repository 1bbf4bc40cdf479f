//! Stopping a run nobody waits for: the run options the watchdog thread may flag, and the
//! guard that clears the flag again before the session is let go.

use std::sync::Arc;

use ort::session::{HasSelectedOutputs, RunOptions};

use crate::runtime::stop;

/// A run under the watchdog's eye; ending it (or dropping it, on a panic) clears the terminate
/// flag if the watchdog set it.
pub(super) struct Watch {
    pub(super) watched: Option<stop::Watched>,
    pub(super) options: Arc<SharedOptions>,
}

impl Watch {
    /// Whether the run was stopped.
    pub(super) fn end(mut self) -> bool {
        self.clear()
    }

    fn clear(&mut self) -> bool {
        let stopped = self.watched.take().is_some_and(stop::Watched::finish);
        if stopped {
            // Failing to clear it would fail the next run with a clear error, not a wrong answer.
            let _ = self.options.0.unterminate();
        }
        stopped
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Run options the watchdog can reach from its thread.
pub(super) struct SharedOptions(pub(super) RunOptions<HasSelectedOutputs>);

// SAFETY: ort withholds `Sync` from run options with selected outputs because a run may write
// into pre-allocated output values through them; this project selects outputs but never
// pre-allocates any, and the only call made from another thread is `terminate`, which sets
// onnxruntime's atomic terminate flag (made to be set from another thread while a run is on).
unsafe impl Sync for SharedOptions {}

impl stop::Stop for SharedOptions {
    fn stop(&self) {
        // Failing to set the flag only means the run finishes: nothing to report.
        let _ = self.0.terminate();
    }
}
