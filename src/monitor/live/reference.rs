//! Where the live ensemble's drift reference comes from when the deploy gate did not hand one
//! over: the manifest's `[monitor] reference` file, else its `validation` set scored here (up to
//! `reference_items` items, at low priority, on a blocking thread), else none.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Monitor, RefState};
use crate::ensemble::Ensemble;
use crate::eval::{evaluate_observing, read_labelled};
use crate::monitor::drift::{Reference, ReferenceBuilder};
use crate::scheduler::{ComputePool, Priority};

/// Makes sure `ensemble` has a reference, or one on its way, or a reason why not.
pub(super) fn ensure(monitor: &Arc<Monitor>, pool: &Arc<ComputePool>, ensemble: &Arc<Ensemble>) {
    if monitor.reference_state(&ensemble.digest).is_some() {
        return;
    }
    if let Some(path) = &ensemble.monitor.reference {
        let state = match Reference::read(path) {
            Ok(r) => RefState::Ready(Arc::new(r)),
            Err(e) => {
                tracing::warn!(ensemble = %ensemble.name, error = %e, "monitor: no drift reference");
                RefState::Failed(e)
            }
        };
        monitor.put_reference(&ensemble.digest, state);
        return;
    }
    let Some(path) = ensemble.validation.clone() else {
        monitor.put_reference(&ensemble.digest, RefState::Missing);
        return;
    };
    monitor.put_reference(
        &ensemble.digest,
        RefState::Computing(path.display().to_string()),
    );
    let (monitor, pool, ensemble) = (Arc::clone(monitor), Arc::clone(pool), Arc::clone(ensemble));
    tokio::task::spawn_blocking(move || {
        let state = match compute(&monitor, &pool, &ensemble, path) {
            Ok(r) => RefState::Ready(Arc::new(r)),
            Err(e) => {
                tracing::warn!(ensemble = %ensemble.name, error = %e, "monitor: no drift reference");
                RefState::Failed(e)
            }
        };
        monitor.put_reference(&ensemble.digest, state);
    });
}

/// The ensemble's answers on (the start of) its validation set.
fn compute(
    monitor: &Monitor,
    pool: &ComputePool,
    ensemble: &Arc<Ensemble>,
    path: PathBuf,
) -> Result<Reference, String> {
    let limit = Some(monitor.settings.reference_items.max(1));
    let items = read_labelled(&path, ensemble, "label", limit).map_err(|e| e.to_string())?;
    let mut builder = ReferenceBuilder::new(ensemble);
    evaluate_observing(
        ensemble,
        pool,
        Priority::Low,
        &items,
        64,
        |_| ControlFlow::Continue(()),
        |a| {
            builder.add(a.predictions.first().map(|p| (p.label.as_str(), p.score)));
        },
    )
    .map_err(|e| e.to_string())?;
    let source = format!(
        "{} (first {} items, scored by the monitor)",
        path.display(),
        items.len()
    );
    Ok(builder.finish(ensemble, source))
}
