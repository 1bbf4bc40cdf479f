//! Which ensemble is live. A request takes ONE snapshot when it is admitted and keeps it to the
//! end, so its items are never answered by two ensembles; replacing the live ensemble is a single
//! atomic store, and the old one is dropped with its last request.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::ensemble::Ensemble;
use crate::telemetry;

/// The live ensemble, swappable while requests read it.
pub struct Registry {
    live: ArcSwap<Ensemble>,
}

impl Registry {
    pub fn new(ensemble: Arc<Ensemble>) -> Self {
        Registry {
            live: ArcSwap::new(ensemble),
        }
    }

    /// The live ensemble, for one request.
    pub fn snapshot(&self) -> Arc<Ensemble> {
        self.live.load_full()
    }

    /// Records which ensemble is live in the metrics (once a recorder is installed).
    pub fn announce(&self) {
        let live = self.live.load();
        telemetry::ensemble_live(&live.name, &live.version, live.models.len());
    }
}
