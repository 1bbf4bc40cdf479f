//! The shadow's worker task: takes mirrored items off the queue in batches, reads each against the
//! shadow's own fields, runs them on the compute pool at low priority, compares every answer with
//! the live one and records it (statistics, metrics, the disagreement log). It ends when the
//! shadow is stopped.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::compare::{agreement, Comparison, Outcome};
use super::{DisagreementLog, EnsembleRef, Mirrored, Shadow};
use crate::ensemble::{Ensemble, FieldValue, ItemAnswer, ItemError, ItemOptions, ValidItem};
use crate::hooks::{self, Hooks};
use crate::scheduler::{ComputePool, Priority};
use crate::telemetry;

pub(super) async fn shadow_task(
    shadow: Arc<Shadow>,
    pool: Arc<ComputePool>,
    hooks: Arc<dyn Hooks>,
    batch_items: usize,
) {
    loop {
        hooks::pass(hooks.shadow_batch()).await;
        let Some(batch) = shadow.queue.take(batch_items).await else {
            break;
        };
        let n = batch.len() as u64;
        let (results, seconds) = run(&shadow, &pool, &batch).await;
        record(&shadow, batch, results, seconds).await;
        shadow.settle(n);
    }
}

/// The shadow's answer for each item (or why there is none), and the seconds its batch took.
async fn run(
    shadow: &Shadow,
    pool: &ComputePool,
    batch: &[Mirrored],
) -> (Vec<Result<ItemAnswer, String>>, f64) {
    let mut results = vec![Err(String::new()); batch.len()];
    let mut rows = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    for (i, m) in batch.iter().enumerate() {
        match shadow_item(&shadow.ensemble, m, shadow.compare_k) {
            Ok(item) => {
                rows.push(i);
                items.push(item);
            }
            Err(e) => results[i] = Err(format!("the item does not fit the shadow: {e}")),
        }
    }
    if items.is_empty() {
        return (results, 0.0);
    }
    let started = Instant::now();
    let answers = pool
        .predict_at(Priority::Low, &shadow.ensemble, items)
        .await;
    let seconds = started.elapsed().as_secs_f64();
    telemetry::shadow_batch(seconds);
    match answers {
        Ok(answers) => {
            for (i, a) in rows.into_iter().zip(answers) {
                results[i] = Ok(a);
            }
        }
        Err(e) => {
            let reason = e.to_string();
            for i in rows {
                results[i] = Err(reason.clone());
            }
        }
    }
    (results, seconds)
}

/// The live item as the shadow reads it: its fields by name (a field the live ensemble does not
/// read is absent), the caller's options, and at least `k` labels.
fn shadow_item(shadow: &Ensemble, m: &Mirrored, k: usize) -> Result<ValidItem, ItemError> {
    let live = &m.live_ensemble;
    let fields = shadow
        .fields
        .iter()
        .map(|name| {
            live.fields
                .iter()
                .position(|f| f == name)
                .and_then(|i| m.item.fields[i].clone())
        })
        .collect();
    let options = ItemOptions {
        top_k: m.item.options.top_k.max(k).min(shadow.labels.len()),
        candidates: m.item.options.candidates.clone(),
        explain: false,
        cascade: m.item.options.cascade,
    };
    shadow.validate(ValidItem { fields, options })
}

/// Compares and records a batch; writes the disagreeing items to the log, if there is one.
async fn record(
    shadow: &Shadow,
    batch: Vec<Mirrored>,
    results: Vec<Result<ItemAnswer, String>>,
    shadow_seconds: f64,
) {
    let now = Instant::now();
    let mut lines = Vec::new();
    let (mut compared, mut failed) = (0, 0);
    {
        let mut stats = shadow.stats();
        for (m, result) in batch.iter().zip(results) {
            let live_top = m.live.predictions.first().map(|p| p.label.clone());
            let outcome = match result {
                Ok(answer) => {
                    compared += 1;
                    let agreement = agreement(&m.live, &answer, shadow.compare_k);
                    if !agreement.top1 && shadow.log.is_some() {
                        lines.push(log_line(shadow, m, &answer));
                    }
                    Outcome::Answered {
                        agreement,
                        shadow_seconds,
                    }
                }
                Err(reason) => {
                    failed += 1;
                    Outcome::Failed { reason }
                }
            };
            let comparison = Comparison {
                live_top,
                outcome,
                live_seconds: m.live_seconds,
            };
            stats.record(&comparison, now);
        }
        let since = stats.since_staging();
        let window = stats.window.totals(now);
        telemetry::shadow_compared(
            compared,
            failed,
            (since.top1_agreement, since.topk_overlap),
            (window.top1_agreement, window.topk_overlap),
            shadow.queue.depth(),
        );
    }
    if let Some(m) = batch.last() {
        *shadow.live.lock().expect("shadow live lock") = Some(EnsembleRef::of(&m.live_ensemble));
    }
    if let (Some(log), false) = (&shadow.log, lines.is_empty()) {
        write_log(Arc::clone(log), lines).await;
    }
}

/// File I/O off the async threads.
async fn write_log(log: Arc<Mutex<DisagreementLog>>, lines: Vec<String>) {
    let _ = tokio::task::spawn_blocking(move || {
        let mut log = log.lock().expect("shadow log lock");
        for line in &lines {
            log.write(line);
        }
    })
    .await;
}

/// One line of the disagreement log: when, which ensembles, the input fields, both answers.
fn log_line(shadow: &Shadow, m: &Mirrored, answer: &ItemAnswer) -> String {
    let fields: Map<String, Value> = m
        .live_ensemble
        .fields
        .iter()
        .zip(&m.item.fields)
        .filter_map(|(name, value)| {
            let value = match value.as_ref()? {
                FieldValue::Text(t) => Value::from(t.as_str()),
                FieldValue::Numbers(v) => Value::from(v.clone()),
            };
            Some((name.clone(), value))
        })
        .collect();
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    json!({
        "at": at,
        "live_ensemble": EnsembleRef::of(&m.live_ensemble),
        "shadow_ensemble": EnsembleRef::of(&shadow.ensemble),
        "fields": fields,
        "live": m.live,
        "shadow": answer,
    })
    .to_string()
}
