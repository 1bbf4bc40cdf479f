//! Measuring an ensemble on labelled data: top-1 and top-5 accuracy, macro-F1 and throughput, for
//! the ensemble and for each of its models on the same items. `lastmile eval` prints it; the
//! promotion gate of a hot swap compares two of these. [`record`] writes one down: as a table,
//! and as an MLflow run.

pub mod cascade;
pub mod record;

use std::collections::HashMap;
use std::io::BufRead;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ensemble::{Ensemble, ItemAnswer, ItemOptions, ModelScores, PredictError, ValidItem};
use crate::scheduler::{ComputePool, Priority};

/// One labelled item: what the ensemble reads, and the right answer.
#[derive(Debug, Clone)]
pub struct LabelledItem {
    pub item: ValidItem,
    pub label: String,
}

/// A labelled data file that cannot be used: the file, the 1-based line when there is one, why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DataError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub reason: String,
}

/// Reads labelled JSON Lines for `ensemble`: one object per line holding the ensemble's fields and
/// the right label under `label_field`; blank lines are skipped; at most `limit` items. Read once
/// per ensemble: two ensembles may read different fields of the same lines.
pub fn read_labelled(
    path: &Path,
    ensemble: &Ensemble,
    label_field: &str,
    limit: Option<usize>,
) -> Result<Vec<LabelledItem>, DataError> {
    let bad = |line: Option<usize>, reason: String| DataError {
        path: path.to_owned(),
        line,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(None, e.to_string()))?;
    let options = ItemOptions {
        top_k: 5,
        ..ItemOptions::default()
    };
    let mut data = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|limit| data.len() >= limit) {
            break;
        }
        let at = Some(n + 1);
        let line = line.map_err(|e| bad(at, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(&line).map_err(|e| bad(at, format!("not JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(bad(at, "expected a JSON object".into()));
        };
        let label = object
            .get(label_field)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(at, format!("no string field {label_field:?}")))?
            .to_owned();
        let item = ensemble
            .item_from_json(&object, options.clone())
            .map_err(|e| bad(at, e.to_string()))?;
        data.push(LabelledItem { item, label });
    }
    if data.is_empty() {
        return Err(bad(None, "no items".into()));
    }
    Ok(data)
}

/// Quality and speed of one predictor (the ensemble, or one model) on the evaluation set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub top1: f64,
    pub top5: f64,
    /// Unweighted mean of per-label F1 of the top-1 answer, over every label that is either a
    /// right answer or a prediction.
    pub macro_f1: f64,
    /// Items scored per second of wall time (the ensemble: on the whole compute pool; a model: its
    /// own run time, on one thread).
    pub items_per_second: f64,
}

/// The evaluation of an ensemble.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ensemble: String,
    pub version: String,
    /// The ensemble digest: the exact manifest and model bytes measured.
    pub digest: String,
    pub items: usize,
    /// Items whose right answer is not a label of the ensemble (they count as misses).
    pub unknown_labels: usize,
    pub compute_threads: usize,
    pub overall: Metrics,
    pub models: Vec<ModelReport>,
    /// With a `[cascade]`, once measured ([`cascade::evaluate_cascade`]; `lastmile eval` does):
    /// the cascade as the server runs it; `overall` is the full ensemble.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<cascade::CascadeReport>,
    /// Each model's time per row on the evaluation (seconds), indexed like the models.
    #[serde(skip)]
    pub seconds_per_row: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub kind: &'static str,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// Counts behind [`Metrics`] for one predictor.
#[derive(Default)]
struct Tally {
    top1: usize,
    top5: usize,
    /// Per label: (true positives, predicted, actual).
    per_label: HashMap<String, [usize; 3]>,
    seconds: f64,
}

impl Tally {
    /// Records one item: `ranked` best first (at least 5 when there are 5).
    fn add<'a>(&mut self, ranked: impl IntoIterator<Item = &'a str>, truth: &str) {
        let mut ranked = ranked.into_iter().take(5).peekable();
        let first = ranked.peek().copied();
        if first == Some(truth) {
            self.top1 += 1;
        }
        if ranked.any(|l| l == truth) {
            self.top5 += 1;
        }
        self.per_label.entry(truth.to_owned()).or_default()[2] += 1;
        if let Some(p) = first {
            let counts = self.per_label.entry(p.to_owned()).or_default();
            counts[1] += 1;
            if p == truth {
                counts[0] += 1;
            }
        }
    }

    fn metrics(&self, items: usize) -> Metrics {
        let n = items.max(1) as f64;
        let f1_sum: f64 = self
            .per_label
            .values()
            .map(|&[tp, predicted, actual]| {
                if tp == 0 {
                    0.0
                } else {
                    2.0 * tp as f64 / (predicted + actual) as f64
                }
            })
            .sum();
        Metrics {
            top1: self.top1 as f64 / n,
            top5: self.top5 as f64 / n,
            macro_f1: f1_sum / self.per_label.len().max(1) as f64,
            items_per_second: if self.seconds > 0.0 {
                items as f64 / self.seconds
            } else {
                0.0
            },
        }
    }
}

/// Scores `data` in batches of `batch` and measures the ensemble and every model. At
/// [`Priority::Low`] the work yields to live traffic on the same pool (its items/s then counts
/// the waiting too). `progress` hears how many items each batch scored; a `Break` from it stops
/// the evaluation there, with an error.
pub fn evaluate(
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    priority: Priority,
    data: &[LabelledItem],
    batch: usize,
    progress: impl FnMut(usize) -> ControlFlow<()>,
) -> Result<Report, PredictError> {
    evaluate_observing(ensemble, pool, priority, data, batch, progress, |_| {})
}

/// [`evaluate`], also handing each item's answer to `observe` (in data order): a drift reference
/// is built from the answers on the validation set this way.
pub fn evaluate_observing(
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    priority: Priority,
    data: &[LabelledItem],
    batch: usize,
    mut progress: impl FnMut(usize) -> ControlFlow<()>,
    mut observe: impl FnMut(&ItemAnswer),
) -> Result<Report, PredictError> {
    let mut overall = Tally::default();
    let mut models: Vec<Tally> = ensemble.models.iter().map(|_| Tally::default()).collect();
    let mut items: Vec<ValidItem> = Vec::with_capacity(batch);
    for chunk in data.chunks(batch.max(1)) {
        items.clear();
        items.extend(chunk.iter().map(|l| {
            let mut item = l.item.clone();
            item.options.top_k = item.options.top_k.max(5);
            item
        }));
        let started = Instant::now();
        let scores = pool.score_at(priority, ensemble, items.clone()).wait()?;
        let answers: Vec<ItemAnswer> = items
            .iter()
            .enumerate()
            .map(|(row, item)| ensemble.combine(row, item, &scores))
            .collect();
        overall.seconds += started.elapsed().as_secs_f64();
        for (answer, truth) in answers.iter().zip(chunk) {
            observe(answer);
            overall.add(
                answer.predictions.iter().map(|p| p.label.as_str()),
                &truth.label,
            );
        }
        tally_models(ensemble, &scores, chunk, &mut models);
        if progress(chunk.len()).is_break() {
            return Err(PredictError {
                model: String::new(),
                reason: "the evaluation was stopped before the end".into(),
            });
        }
    }
    let n = data.len();
    Ok(Report {
        ensemble: ensemble.name.clone(),
        version: ensemble.version.clone(),
        digest: ensemble.digest.clone(),
        items: n,
        unknown_labels: data
            .iter()
            .filter(|l| ensemble.labels.id(&l.label).is_none())
            .count(),
        compute_threads: pool.threads(),
        overall: overall.metrics(n),
        models: ensemble
            .models
            .iter()
            .zip(&models)
            .map(|(m, t)| ModelReport {
                name: m.spec.name.clone(),
                kind: m.spec.kind.as_str(),
                metrics: t.metrics(n),
            })
            .collect(),
        cascade: None,
        seconds_per_row: models.iter().map(|t| t.seconds / n.max(1) as f64).collect(),
    })
}

impl Report {
    /// The figures of the answers as the server gives them: the cascade's when there is one and
    /// it was measured, the full ensemble's otherwise. The promotion gate decides on these.
    pub fn served(&self) -> &Metrics {
        self.cascade.as_ref().map_or(&self.overall, |c| &c.metrics)
    }
}

/// Each model's own top 5 for each item of the batch, by label name.
fn tally_models(
    ensemble: &Ensemble,
    scores: &ModelScores,
    chunk: &[LabelledItem],
    tallies: &mut [Tally],
) {
    for (m, model) in ensemble.models.iter().enumerate() {
        let tally = &mut tallies[m];
        tally.seconds += scores.seconds[m];
        for (row, truth) in chunk.iter().enumerate() {
            let top = top5(scores.scores[m].row(row));
            let names = top
                .iter()
                .map(|&j| ensemble.labels.name(model.label_ids[j]));
            tally.add(names, &truth.label);
        }
    }
}

/// Columns of the 5 highest scores, best first (ties: lower column), skipping zero scores (labels
/// a model prunes or does not know are not its answers).
fn top5(row: &[f32]) -> Vec<usize> {
    let mut best: Vec<usize> = Vec::with_capacity(6);
    for (j, &s) in row.iter().enumerate() {
        if s.is_nan() || s <= 0.0 {
            continue;
        }
        if best.len() == 5 && s <= row[best[4]] {
            continue;
        }
        let pos = best.iter().position(|&b| s > row[b]).unwrap_or(best.len());
        best.insert(pos, j);
        best.truncate(5);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top5_ranks_best_first_and_skips_zeros() {
        let row = [0.1, 0.0, 0.5, 0.2, 0.05, 0.3, 0.01, 0.0];
        assert_eq!(top5(&row), vec![2, 5, 3, 0, 4]);
        assert_eq!(top5(&[0.0, 0.0]), Vec::<usize>::new());
        // Ties keep the lower column first.
        assert_eq!(top5(&[0.5, 0.5, 0.1]), vec![0, 1, 2]);
    }

    /// Three items, worked by hand:
    /// truth a, ranked [a, b]  → top-1 hit, top-5 hit
    /// truth b, ranked [a, b]  → top-1 miss, top-5 hit
    /// truth c, ranked []      → miss, miss (abstained)
    /// per label (tp, predicted, actual): a (1, 2, 1) → F1 2/3; b (0, 0, 1) → 0; c (0, 0, 1) → 0.
    #[test]
    fn metrics_match_a_hand_worked_example() {
        let mut t = Tally::default();
        t.add(["a", "b"], "a");
        t.add(["a", "b"], "b");
        t.add([], "c");
        t.seconds = 0.5;
        let m = t.metrics(3);
        assert_eq!(m.top1, 1.0 / 3.0);
        assert_eq!(m.top5, 2.0 / 3.0);
        assert!((m.macro_f1 - (2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(m.items_per_second, 6.0);
    }
}
