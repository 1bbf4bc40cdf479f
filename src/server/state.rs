//! What every handler shares, and the one path a prediction takes whatever the transport: take a
//! snapshot of the live ensemble, check the item count, check each item (the ensemble's own
//! `validate`, then the field limit), take places among the items in flight, then score on the
//! compute pool (never on a tokio thread) and await the answer. When a shadow ensemble is staged,
//! the sampled items are handed to it with their live answers once those are in, without waiting
//! for the shadow (see [`crate::shadow`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::admission::{Admission, Hold, Limits};
use super::error::{ApiError, ErrorKind};
use crate::ensemble::{Ensemble, ItemAnswer, ItemError, ValidItem};
use crate::registry::Registry;
use crate::scheduler::ComputePool;
use crate::shadow::{ShadowSettings, ShadowSlot};
use crate::telemetry;

/// Shared by every handler of both servers.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub pool: Arc<ComputePool>,
    pub limits: Limits,
    pub admission: Admission,
    /// The shadow ensemble live items are mirrored to, when one is staged.
    pub shadow: ShadowSlot,
    /// Set when shutdown begins: readiness turns false, new predictions are refused.
    draining: AtomicBool,
    hold: Option<Arc<Hold>>,
}

/// A checked request: its snapshot and its items, not yet admitted.
pub struct Checked {
    pub ensemble: Arc<Ensemble>,
    pub items: Vec<ValidItem>,
}

impl AppState {
    pub fn new(
        registry: Arc<Registry>,
        pool: Arc<ComputePool>,
        limits: Limits,
        hold: Option<Arc<Hold>>,
        shadow: ShadowSettings,
    ) -> Self {
        AppState {
            registry,
            pool,
            admission: Admission::new(limits.max_items_in_flight),
            shadow: ShadowSlot::new(shadow),
            limits,
            draining: AtomicBool::new(false),
            hold,
        }
    }

    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Checks a request's items against one snapshot of the live ensemble. `parse` turns the
    /// transport's item `i` into an item, using the snapshot (typically `item_from_json`, or
    /// fields split out by the transport and then `validate`).
    pub fn check<T>(
        &self,
        raw: Vec<T>,
        parse: impl FnMut(&Ensemble, T) -> Result<ValidItem, ItemError>,
    ) -> Result<Checked, ApiError> {
        self.check_with(self.registry.snapshot(), raw, parse)
    }

    /// As [`AppState::check`], against a snapshot the transport already took (to read the
    /// ensemble's fields before splitting items out).
    pub fn check_with<T>(
        &self,
        ensemble: Arc<Ensemble>,
        raw: Vec<T>,
        mut parse: impl FnMut(&Ensemble, T) -> Result<ValidItem, ItemError>,
    ) -> Result<Checked, ApiError> {
        self.limits.check_count(raw.len())?;
        let mut items = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let mut item = parse(&ensemble, r).map_err(|e| ApiError::item(i, e))?;
            // More predictions than labels cannot be given; a larger top_k would only cost memory.
            item.options.top_k = item.options.top_k.min(ensemble.labels.len());
            self.limits.check_fields(i, &item, &ensemble.fields)?;
            items.push(item);
        }
        Ok(Checked { ensemble, items })
    }

    /// Admits and scores checked items; refuses at once when the server is full or draining.
    pub async fn predict(&self, checked: Checked) -> Result<Vec<ItemAnswer>, ApiError> {
        if !self.ready() {
            return Err(ApiError::new(
                ErrorKind::ShuttingDown,
                "the server is shutting down; retry on another instance",
            ));
        }
        let admitted = self.admission.try_admit(checked.items.len())?;
        if let Some(hold) = &self.hold {
            hold.pass().await;
        }
        let Checked { ensemble, items } = checked;
        let count = items.len() as u64;
        // Which items the shadow (if any) also answers is decided before they go; they are
        // handed to it once the live answers are in, never waiting for it.
        let mirror = self.shadow.pick(&ensemble, &items);
        // The compute pool batches these rows with every other request's; dropping the ticket
        // (the client went away) cancels what has not run yet.
        let answers = self.pool.predict(&ensemble, items).await;
        if let Ok(answers) = &answers {
            telemetry::items_scored(count);
            if let Some(mirror) = mirror {
                mirror.send(answers);
            }
        }
        drop(admitted);
        Ok(answers?)
    }
}
