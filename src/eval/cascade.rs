//! A cascaded ensemble measured as the server runs it: every item through the scheduler's
//! cascade (stage after stage, stopping where the test passes), its accuracy, the share of items
//! answered at each stage and the compute per item against the full ensemble's. `lastmile eval`
//! adds it to its report when the manifest has a `[cascade]`.

use std::time::Instant;

use serde::Serialize;

use super::{LabelledItem, Metrics, Report, Tally};
use crate::ensemble::{Ensemble, ItemAnswer, PredictError, ValidItem};
use crate::scheduler::{ComputePool, Priority};
use std::sync::Arc;

/// The cascade's figures on the evaluation set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CascadeReport {
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Per stage (1-based order): share of the items it answered.
    pub answered: Vec<f64>,
    /// Members run per item, and the full ensemble's.
    pub members_run: f64,
    pub members: usize,
    /// Model time per item as a share of the full ensemble's (each member's time per row as the
    /// full evaluation measured it).
    pub compute_share: f64,
    /// Top-1 of the full ensemble minus the cascade's, in points: positive is a loss.
    pub drop_points: f64,
}

/// Runs `data` through `ensemble`'s cascade on `pool` in batches of `batch` at `priority`,
/// against `full`, the full ensemble's evaluation on the same data (its accuracy, each model's
/// time per row); `observe` hears each item's answer as served (in data order).
pub fn evaluate_cascade(
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    priority: Priority,
    data: &[LabelledItem],
    batch: usize,
    full: &Report,
    mut observe: impl FnMut(&ItemAnswer),
) -> Result<Option<CascadeReport>, PredictError> {
    let (seconds_per_row, full_top1) = (&full.seconds_per_row, full.overall.top1);
    let Some(cascade) = &ensemble.cascade else {
        return Ok(None);
    };
    let stages = cascade.stages.len();
    let mut tally = Tally::default();
    let mut answered = vec![0usize; stages];
    let (mut run, mut compute) = (0usize, 0f64);
    let stage_cost: Vec<f64> = cascade
        .stages
        .iter()
        .scan(0.0, |acc, s| {
            *acc += s.models.iter().map(|&m| seconds_per_row[m]).sum::<f64>();
            Some(*acc)
        })
        .collect();
    let full_cost = seconds_per_row.iter().sum::<f64>().max(1e-12);
    for chunk in data.chunks(batch.max(1)) {
        let items: Vec<ValidItem> = chunk
            .iter()
            .map(|l| {
                let mut item = l.item.clone();
                item.options.top_k = item.options.top_k.max(5);
                item.options.cascade = true;
                item
            })
            .collect();
        let started = Instant::now();
        let answers = pool.predict_at(priority, ensemble, items).wait()?;
        tally.seconds += started.elapsed().as_secs_f64();
        for (answer, truth) in answers.iter().zip(chunk) {
            observe(answer);
            tally.add(
                answer.predictions.iter().map(|p| p.label.as_str()),
                &truth.label,
            );
            let (stage, members) = match &answer.cascade {
                Some(c) => (c.stage as usize, c.members_run as usize),
                None => (stages, ensemble.models.len()),
            };
            let s = stage.clamp(1, stages) - 1;
            answered[s] += 1;
            run += members;
            compute += stage_cost[s];
        }
    }
    let n = data.len().max(1) as f64;
    let metrics = tally.metrics(data.len());
    Ok(Some(CascadeReport {
        drop_points: 100.0 * (full_top1 - metrics.top1),
        metrics,
        answered: answered.iter().map(|&a| a as f64 / n).collect(),
        members_run: run as f64 / n,
        members: ensemble.models.len(),
        compute_share: compute / n / full_cost,
    }))
}
