//! The promotion gate: a candidate goes live only if its top-1 accuracy on the validation set is
//! at least `min_accuracy` and at most `max_drop` below the live ensemble's on the same set. Both
//! are measured here, on the shared compute pool at low priority, behind live traffic, as each
//! serves: a cascaded ensemble by its cascade's answers (measured after the full ensemble's,
//! which the report keeps as `overall`).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::ensemble::Ensemble;
use crate::eval::cascade::evaluate_cascade;
use crate::eval::{evaluate_observing, read_labelled, Metrics, Report};
use crate::monitor::drift::{Reference, ReferenceBuilder};
use crate::proto::lastmile::v1 as pb;
use crate::scheduler::{ComputePool, Priority};

/// An ensemble's evaluation on the validation set, how many items it read, and its answers'
/// distribution there (its drift reference).
pub(super) type Measured = (Report, usize, Reference);

/// Why an ensemble could not be measured on the validation set.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MeasureError {
    /// `who` (the candidate or the live ensemble) cannot read the set: a reason to reject.
    #[error("the {who} ensemble cannot read the validation set: {error}")]
    Unreadable { who: &'static str, error: String },
    /// `who` failed scoring it: a reason to reject.
    #[error("the {who} ensemble failed on the validation set: {error}")]
    Failed { who: &'static str, error: String },
    /// The thread measuring died: not the candidate's fault.
    #[error("the validation thread failed: {0}")]
    Lost(String),
}

/// Measures the candidate, then the live ensemble, on the labelled JSON Lines at `path` (each
/// reads the fields it needs), on a blocking thread. Dropping the future (the server shutting
/// down) stops that thread after the batch in hand.
pub(super) async fn measure_both(
    candidate: &Arc<Ensemble>,
    live: &Arc<Ensemble>,
    pool: Arc<ComputePool>,
    path: PathBuf,
    batch: usize,
) -> Result<(Measured, Measured), MeasureError> {
    let (candidate, live) = (Arc::clone(candidate), Arc::clone(live));
    let abandoned = AbandonedOnDrop::default();
    let stopped = Arc::clone(&abandoned.0);
    tokio::task::spawn_blocking(move || {
        let measure = |e: &Arc<Ensemble>, who: &'static str| -> Result<Measured, MeasureError> {
            let items =
                read_labelled(&path, e, "label", None).map_err(|err| MeasureError::Unreadable {
                    who,
                    error: err.to_string(),
                })?;
            let go_on = |_| match stopped.load(Ordering::Relaxed) {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            };
            let failed = |err: crate::ensemble::PredictError| MeasureError::Failed {
                who,
                error: err.to_string(),
            };
            // The drift reference is the answers as served: the cascade's when there is one.
            let mut answers = ReferenceBuilder::new(e);
            let mut observe = |a: &crate::ensemble::ItemAnswer| {
                answers.add(a.predictions.first().map(|p| (p.label.as_str(), p.score)));
            };
            let cascaded = e.cascade.is_some();
            let full_observer = |a: &crate::ensemble::ItemAnswer| {
                if !cascaded {
                    observe(a)
                }
            };
            let mut report =
                evaluate_observing(e, &pool, Priority::Low, &items, batch, go_on, full_observer)
                    .map_err(failed)?;
            if cascaded && !stopped.load(Ordering::Relaxed) {
                report.cascade =
                    evaluate_cascade(e, &pool, Priority::Low, &items, batch, &report, observe)
                        .map_err(failed)?;
            }
            let source = format!("{} (validation, {} items)", path.display(), items.len());
            Ok((report, items.len(), answers.finish(e, source)))
        };
        Ok((measure(&candidate, "candidate")?, measure(&live, "live")?))
    })
    .await
    .map_err(|e| MeasureError::Lost(e.to_string()))?
}

/// Set when dropped: tells a blocking thread that nobody waits for its work any more.
#[derive(Default)]
struct AbandonedOnDrop(Arc<AtomicBool>);

impl Drop for AbandonedOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub(super) fn metrics(m: &Metrics) -> pb::Metrics {
    pb::Metrics {
        top1: m.top1,
        top5: m.top5,
        macro_f1: m.macro_f1,
        items_per_second: m.items_per_second,
    }
}

/// Thresholds on top-1 accuracy (fractions, 0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// The candidate's top-1 must reach this, whatever the live ensemble's.
    pub min_accuracy: f64,
    /// How far below the live ensemble's top-1 the candidate's may fall (0: at least as good).
    pub max_drop: f64,
}

impl Default for Gate {
    /// At least as good as live, no absolute floor.
    fn default() -> Self {
        Gate {
            min_accuracy: 0.0,
            max_drop: 0.0,
        }
    }
}

/// What the gate said, with the numbers in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub passed: bool,
    pub reason: String,
}

/// Accuracies computed the same way from the same counts compare exactly; this only absorbs the
/// rounding of `live - max_drop`.
const EPSILON: f64 = 1e-9;

impl Gate {
    /// This gate with a request's overrides, each a fraction between 0 and 1.
    pub fn with(self, min_accuracy: Option<f64>, max_drop: Option<f64>) -> Result<Gate, String> {
        let check = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("{name} must be between 0 and 1, got {v}"))
            }
        };
        Ok(Gate {
            min_accuracy: check("min_accuracy", min_accuracy.unwrap_or(self.min_accuracy))?,
            max_drop: check("max_drop", max_drop.unwrap_or(self.max_drop))?,
        })
    }

    /// Decides on the candidate's and the live ensemble's top-1 accuracy.
    pub fn decide(&self, candidate: f64, live: f64) -> Decision {
        let floor = live - self.max_drop;
        if candidate + EPSILON < self.min_accuracy {
            Decision {
                passed: false,
                reason: format!(
                    "candidate top-1 {candidate:.4} is below min_accuracy {:.4} (live top-1 {live:.4})",
                    self.min_accuracy
                ),
            }
        } else if candidate + EPSILON < floor {
            Decision {
                passed: false,
                reason: format!(
                    "candidate top-1 {candidate:.4} is more than max_drop {:.4} below live top-1 {live:.4}",
                    self.max_drop
                ),
            }
        } else {
            Decision {
                passed: true,
                reason: format!(
                    "candidate top-1 {candidate:.4} >= min_accuracy {:.4} and >= live top-1 {live:.4} - max_drop {:.4}",
                    self.min_accuracy, self.max_drop
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_as_good_as_live_passes_by_default() {
        let gate = Gate::default();
        assert!(gate.decide(0.9, 0.9).passed);
        assert!(gate.decide(0.95, 0.9).passed);
        let worse = gate.decide(0.89, 0.9);
        assert!(!worse.passed);
        assert!(worse.reason.contains("max_drop"), "{}", worse.reason);
    }

    #[test]
    fn max_drop_allows_a_small_loss() {
        let gate = Gate::default().with(None, Some(0.02)).unwrap();
        assert!(gate.decide(0.88, 0.9).passed);
        assert!(!gate.decide(0.879, 0.9).passed);
    }

    #[test]
    fn min_accuracy_is_a_floor_even_above_live() {
        let gate = Gate::default().with(Some(0.95), None).unwrap();
        let d = gate.decide(0.94, 0.5);
        assert!(!d.passed);
        assert!(d.reason.contains("min_accuracy 0.9500"), "{}", d.reason);
        assert!(gate.decide(0.95, 0.5).passed);
    }

    #[test]
    fn overrides_out_of_range_are_refused() {
        assert!(Gate::default().with(Some(1.5), None).is_err());
        assert!(Gate::default().with(None, Some(-0.1)).is_err());
        assert!(Gate::default().with(None, Some(f64::NAN)).is_err());
        let keep = Gate {
            min_accuracy: 0.3,
            max_drop: 0.1,
        };
        assert_eq!(keep.with(None, None).unwrap(), keep);
    }
}
