//! The monitor's worker task: takes sampled items off the queue in batches, scores them again on
//! the compute pool beside live requests (normal priority: the sampling fraction bounds it) for
//! every model's own scores, computes each item's influence on a blocking thread (milliseconds of
//! arithmetic, never on the async threads), and records it.

use std::sync::Arc;

use super::{reference, Monitor, Record};
use crate::ensemble::{Ensemble, ValidItem};
use crate::monitor::drift::Bucketing;
use crate::monitor::influence::Analyser;
use crate::scheduler::{ComputePool, Priority};

pub(super) async fn monitor_task(monitor: Arc<Monitor>, pool: Arc<ComputePool>) {
    let mut analyser = Some(Analyser::default());
    let batch_items = monitor.settings.batch_items.max(1);
    while let Some(mut rest) = monitor.queue.take(batch_items).await {
        // Let the batch fill (a while at most) so that the models run on many rows at once.
        let deadline = tokio::time::Instant::now() + monitor.settings.linger;
        while rest.len() < batch_items {
            let more = monitor.queue.take(batch_items - rest.len());
            match tokio::time::timeout_at(deadline, more).await {
                Ok(Some(more)) => rest.extend(more),
                _ => break,
            }
        }
        let n = rest.len() as u64;
        // Runs of items answered by one ensemble (all of them, but around a swap).
        while !rest.is_empty() {
            let ensemble = Arc::clone(&rest[0].ensemble);
            let end = rest
                .iter()
                .position(|s| !Arc::ptr_eq(&s.ensemble, &ensemble))
                .unwrap_or(rest.len());
            let tail = rest.split_off(end);
            let items: Vec<ValidItem> = rest.into_iter().map(|s| s.item).collect();
            let a = analyser.take().unwrap_or_default();
            analyser = analyse(&monitor, &pool, ensemble, items, a).await;
            rest = tail;
        }
        monitor.settle(n);
    }
}

/// Scores, analyses and records one run; gives the analyser back (None if its thread died).
async fn analyse(
    monitor: &Arc<Monitor>,
    pool: &Arc<ComputePool>,
    ensemble: Arc<Ensemble>,
    items: Vec<ValidItem>,
    mut analyser: Analyser,
) -> Option<Analyser> {
    reference::ensure(monitor, pool, &ensemble);
    let n = items.len() as u64;
    let scores = match pool
        .score_at(Priority::Normal, &ensemble, items.clone())
        .await
    {
        Ok(scores) => scores,
        Err(e) => {
            monitor.fail(n, e.to_string());
            return Some(analyser);
        }
    };
    let e = Arc::clone(&ensemble);
    let analysed = tokio::task::spawn_blocking(move || {
        let bucketing = Bucketing::of(&e);
        let records: Vec<Record> = items
            .iter()
            .enumerate()
            .map(|(row, item)| {
                let inf = analyser.influence(&e, &scores, row, item);
                let answer = inf.answer.predictions.first().map(|p| {
                    let name = e.combiner.label_name(p.label);
                    (bucketing.bucket(name).to_owned(), p.score)
                });
                Record {
                    parts: inf
                        .members
                        .iter()
                        .map(|m| (m.pivotal, m.agrees, m.share))
                        .collect(),
                    answer,
                    seconds: scores.seconds.iter().map(|s| s / n as f64).collect(),
                    labels: inf.work.labels,
                    revoted: inf.work.revoted,
                }
            })
            .collect();
        (analyser, records)
    })
    .await;
    match analysed {
        Ok((analyser, records)) => {
            monitor.record(&ensemble, records);
            Some(analyser)
        }
        Err(e) => {
            monitor.fail(n, format!("the analysis failed: {e}"));
            None
        }
    }
}
