//! Metric names and the few functions that record them, so that every name the process exports is
//! written down once, here. Recording goes through the `metrics` facade: without an installed
//! recorder (the CLI's `check` and `predict`) every call is a no-op. [`install`] sets up the
//! Prometheus recorder that `lastmile serve` renders at `/metrics`.
//!
//! Names follow `lastmile_<subsystem>_<thing>_<unit>`; label sets are small and fixed (`method`,
//! `code`, `model`, `name`, `version`, `outcome`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests handled, by `method` (route or gRPC method) and `code` (the error kind, or `ok`).
pub const REQUESTS_TOTAL: &str = "lastmile_server_requests_total";
/// End-to-end latency of a request as the server sees it, by `method`.
pub const REQUEST_DURATION: &str = "lastmile_server_request_duration_seconds";
/// Items admitted and not yet answered.
pub const ITEMS_IN_FLIGHT: &str = "lastmile_server_items_in_flight";
/// Items scored, whatever the transport.
pub const ITEMS_TOTAL: &str = "lastmile_server_items_total";
/// Requests refused by admission control, by `reason` (`overloaded`, `too_many_items`, ...).
pub const REJECTED_TOTAL: &str = "lastmile_admission_rejected_total";
/// Time one model took to score one batch, by `model`.
pub const MODEL_RUN_DURATION: &str = "lastmile_model_run_duration_seconds";
/// Rows in one batch a model ran, by `model`.
pub const BATCH_ROWS: &str = "lastmile_scheduler_batch_rows";
/// Time a row waited in its model's queue before its batch started.
pub const QUEUE_WAIT: &str = "lastmile_scheduler_queue_wait_seconds";
/// Rows waiting in all models' queues, by `priority` (`normal`, `low`).
pub const QUEUE_ROWS: &str = "lastmile_scheduler_queue_rows";
/// Models of the live ensemble.
pub const MODELS_LOADED: &str = "lastmile_ensemble_models_loaded";
/// 1 for the live ensemble's `name` and `version`, 0 for ensembles that were live before (select
/// the current one with `lastmile_ensemble_info == 1`).
pub const ENSEMBLE_INFO: &str = "lastmile_ensemble_info";
/// Attempts to replace the live ensemble, by `outcome`: `promoted`, `rolled_back`, `rejected`.
pub const SWAPS_TOTAL: &str = "lastmile_registry_swaps_total";
/// Time to load a candidate ensemble (parse, load or share models, warm up).
pub const LOAD_DURATION: &str = "lastmile_registry_load_duration_seconds";
/// Time to validate a candidate (the candidate and the live ensemble on the validation set).
pub const VALIDATION_DURATION: &str = "lastmile_registry_validation_duration_seconds";

/// Every metric name the process exports (histograms also as `_bucket`, `_sum`, `_count`):
/// what dashboards may name.
pub fn names() -> Vec<&'static str> {
    vec![
        REQUESTS_TOTAL,
        REQUEST_DURATION,
        ITEMS_IN_FLIGHT,
        ITEMS_TOTAL,
        REJECTED_TOTAL,
        MODEL_RUN_DURATION,
        BATCH_ROWS,
        QUEUE_WAIT,
        QUEUE_ROWS,
        MODELS_LOADED,
        ENSEMBLE_INFO,
        SWAPS_TOTAL,
        LOAD_DURATION,
        VALIDATION_DURATION,
        SHADOW_MIRRORED,
        SHADOW_SKIPPED,
        SHADOW_COMPARED,
        SHADOW_FAILED,
        SHADOW_QUEUE,
        SHADOW_DURATION,
        SHADOW_TOP1_AGREEMENT,
        SHADOW_TOPK_OVERLAP,
        MONITOR_SAMPLED,
        MONITOR_SKIPPED,
        MONITOR_ANALYSED,
        MONITOR_QUEUE,
        MONITOR_WINDOW,
        MONITOR_PIVOTAL,
        MONITOR_AGREEMENT,
        MONITOR_WINNER_SHARE,
        MONITOR_COMPUTE_SHARE,
        MONITOR_PSI,
        MONITOR_JS,
        MONITOR_CONFIDENCE_PSI,
        MONITOR_ABSTENTION,
        MONITOR_ABSTENTION_CHANGE,
        MONITOR_CONFIDENCE,
        MONITOR_ALERT,
        MONITOR_ALERTS,
    ]
}

/// Histogram buckets (seconds): 50 µs to 10 s, roughly ×2.5 apart.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Buckets (seconds) for loading and validating whole ensembles: 10 ms to 10 minutes.
const LONG_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Batch-size buckets (rows): powers of two up to 512.
const ROW_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
/// None if another recorder was installed first, in which case `/metrics` has nothing to show.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(BATCH_ROWS.into()), ROW_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(LOAD_DURATION.into()), LONG_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(VALIDATION_DURATION.into()),
                        LONG_BUCKETS,
                    )
                })
                .expect("the buckets are not empty: this is a bug")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            describe_shadow();
            describe_monitor();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(REQUESTS_TOTAL, "Requests handled, by method and code.");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "End-to-end request latency, by method."
    );
    metrics::describe_gauge!(ITEMS_IN_FLIGHT, "Items admitted and not yet answered.");
    metrics::describe_counter!(ITEMS_TOTAL, "Items scored.");
    metrics::describe_counter!(REJECTED_TOTAL, "Requests refused by admission control.");
    metrics::describe_histogram!(
        MODEL_RUN_DURATION,
        metrics::Unit::Seconds,
        "Time one model took to score one batch, by model."
    );
    metrics::describe_histogram!(BATCH_ROWS, "Rows in one batch a model ran, by model.");
    metrics::describe_histogram!(
        QUEUE_WAIT,
        metrics::Unit::Seconds,
        "Time a row waited in its model's queue before its batch started."
    );
    metrics::describe_gauge!(
        QUEUE_ROWS,
        "Rows waiting in all models' queues, by priority."
    );
    metrics::describe_gauge!(MODELS_LOADED, "Models of the live ensemble.");
    metrics::describe_gauge!(
        ENSEMBLE_INFO,
        "1 for the live ensemble's name and version, 0 for those live before."
    );
    metrics::describe_counter!(
        SWAPS_TOTAL,
        "Attempts to replace the live ensemble, by outcome (promoted, rolled_back, rejected)."
    );
    metrics::describe_histogram!(
        LOAD_DURATION,
        metrics::Unit::Seconds,
        "Time to load and warm up a candidate ensemble."
    );
    metrics::describe_histogram!(
        VALIDATION_DURATION,
        metrics::Unit::Seconds,
        "Time to validate a candidate against the live ensemble."
    );
}

/// One model scored one batch in `took`. Called by the scheduler for every model run.
pub fn model_run(model: &str, took: Duration) {
    metrics::histogram!(MODEL_RUN_DURATION, "model" => model.to_owned()).record(took);
}

/// One model ran a batch of `rows` rows.
pub fn batch_size(model: &str, rows: usize) {
    metrics::histogram!(BATCH_ROWS, "model" => model.to_owned()).record(rows as f64);
}

/// A row waited `took` in its model's queue.
pub fn queue_wait(took: Duration) {
    metrics::histogram!(QUEUE_WAIT).record(took);
}

/// Rows now waiting in all queues, normal and low priority.
pub fn queue_depth(normal: usize, low: usize) {
    metrics::gauge!(QUEUE_ROWS, "priority" => "normal").set(normal as f64);
    metrics::gauge!(QUEUE_ROWS, "priority" => "low").set(low as f64);
}

/// One request finished: `code` is `ok` or an error kind.
pub fn request(method: &str, code: &'static str, took: Duration) {
    metrics::counter!(REQUESTS_TOTAL, "method" => method.to_owned(), "code" => code).increment(1);
    metrics::histogram!(REQUEST_DURATION, "method" => method.to_owned()).record(took);
}

/// Items entered (`delta > 0`) or left (`delta < 0`) the server's hands.
pub fn items_in_flight(delta: f64) {
    metrics::gauge!(ITEMS_IN_FLIGHT).increment(delta);
}

/// Items answered.
pub fn items_scored(n: u64) {
    metrics::counter!(ITEMS_TOTAL).increment(n);
}

/// A request refused by admission control.
pub fn rejected(reason: &'static str) {
    metrics::counter!(REJECTED_TOTAL, "reason" => reason).increment(1);
}

/// An ensemble is no longer live (call before [`ensemble_live`] for its successor).
pub fn ensemble_retired(name: &str, version: &str) {
    metrics::gauge!(ENSEMBLE_INFO, "name" => name.to_owned(), "version" => version.to_owned())
        .set(0.0);
}

/// An attempt to replace the live ensemble ended: `promoted`, `rolled_back` or `rejected`.
pub fn swap(outcome: &'static str) {
    metrics::counter!(SWAPS_TOTAL, "outcome" => outcome).increment(1);
}

/// A candidate took `took` to load and warm up.
pub fn candidate_loaded(took: Duration) {
    metrics::histogram!(LOAD_DURATION).record(took);
}

/// A candidate took `took` to validate.
pub fn candidate_validated(took: Duration) {
    metrics::histogram!(VALIDATION_DURATION).record(took);
}

/// The ensemble now live.
pub fn ensemble_live(name: &str, version: &str, models: usize) {
    metrics::gauge!(MODELS_LOADED).set(models as f64);
    metrics::gauge!(ENSEMBLE_INFO, "name" => name.to_owned(), "version" => version.to_owned())
        .set(1.0);
}

/// Rows a member had no scores for, by `model` and `reason` (`error`, `panic`, `timeout`): the
/// items were voted without it (or failed, with `on_member_failure = "fail"`).
pub const MEMBER_FAILURES: &str = "lastmile_member_failures_total";
/// Model runs stopped part-way, by `model`, because every request waiting for them had given
/// up (their deadline, the member's `timeout_ms`, a client gone): compute given back.
pub const RUNS_STOPPED: &str = "lastmile_model_runs_stopped_total";
/// Items answered without some of their members (degraded answers).
pub const DEGRADED_ITEMS: &str = "lastmile_server_degraded_items_total";

/// A batch of `model` left its rows without scores, for `reason`.
pub fn member_failed(model: &str, reason: &'static str) {
    metrics::counter!(MEMBER_FAILURES, "model" => model.to_owned(), "reason" => reason)
        .increment(1);
}

/// A run of `model` was stopped part-way: nobody waited for it any more.
pub fn run_stopped(model: &str) {
    metrics::counter!(RUNS_STOPPED, "model" => model.to_owned()).increment(1);
}

/// One item answered without some of its members.
pub fn degraded_answer() {
    metrics::counter!(DEGRADED_ITEMS).increment(1);
}

/// Shadow traffic (see `crate::shadow`): sampled live items handed to the shadow's queue.
pub const SHADOW_MIRRORED: &str = "lastmile_shadow_mirrored_items_total";
/// Sampled live items not mirrored because the shadow's queue was full.
pub const SHADOW_SKIPPED: &str = "lastmile_shadow_skipped_items_total";
/// Mirrored items the shadow answered and that were compared with the live answer.
pub const SHADOW_COMPARED: &str = "lastmile_shadow_compared_items_total";
/// Mirrored items the shadow could not answer (the item does not fit it, a model failed).
pub const SHADOW_FAILED: &str = "lastmile_shadow_failed_items_total";
/// Mirrored items waiting in the shadow's queue.
pub const SHADOW_QUEUE: &str = "lastmile_shadow_queue_items";
/// Time one batch of mirrored items took on the compute pool (low priority, queueing included).
pub const SHADOW_DURATION: &str = "lastmile_shadow_batch_duration_seconds";
/// Share of compared items whose shadow winner is the live winner, by `window` (`staging`: since
/// the shadow was staged, `rolling`: the rolling window).
pub const SHADOW_TOP1_AGREEMENT: &str = "lastmile_shadow_top1_agreement_ratio";
/// Mean share of the live top-k found in the shadow's top-k, by `window`.
pub const SHADOW_TOPK_OVERLAP: &str = "lastmile_shadow_topk_overlap_ratio";

fn describe_shadow() {
    metrics::describe_counter!(
        SHADOW_MIRRORED,
        "Sampled live items handed to the shadow ensemble."
    );
    metrics::describe_counter!(
        SHADOW_SKIPPED,
        "Sampled live items not mirrored: the shadow queue was full."
    );
    metrics::describe_counter!(
        SHADOW_COMPARED,
        "Mirrored items the shadow answered, compared with the live answer."
    );
    metrics::describe_counter!(SHADOW_FAILED, "Mirrored items the shadow could not answer.");
    metrics::describe_gauge!(SHADOW_QUEUE, "Mirrored items waiting for the shadow.");
    metrics::describe_histogram!(
        SHADOW_DURATION,
        metrics::Unit::Seconds,
        "Time one batch of mirrored items took on the compute pool."
    );
    metrics::describe_gauge!(
        SHADOW_TOP1_AGREEMENT,
        "Top-1 agreement of the shadow with live, by window (staging, rolling)."
    );
    metrics::describe_gauge!(
        SHADOW_TOPK_OVERLAP,
        "Mean top-k overlap of the shadow with live, by window (staging, rolling)."
    );
}

/// `queued` sampled items went to the shadow's queue, `skipped` did not fit; `depth` now wait.
pub fn shadow_mirrored(queued: u64, skipped: u64, depth: usize) {
    metrics::counter!(SHADOW_MIRRORED).increment(queued);
    if skipped > 0 {
        metrics::counter!(SHADOW_SKIPPED).increment(skipped);
    }
    metrics::gauge!(SHADOW_QUEUE).set(depth as f64);
}

/// The shadow ran a batch in `seconds`.
pub fn shadow_batch(seconds: f64) {
    metrics::histogram!(SHADOW_DURATION).record(seconds);
}

/// The shadow answered `compared` items and failed `failed`; the agreement since staging and over
/// the rolling window is now `top1` and `overlap` (None: nothing compared).
pub fn shadow_compared(
    compared: u64,
    failed: u64,
    staging: (Option<f64>, Option<f64>),
    rolling: (Option<f64>, Option<f64>),
    depth: usize,
) {
    metrics::counter!(SHADOW_COMPARED).increment(compared);
    metrics::counter!(SHADOW_FAILED).increment(failed);
    for (window, (top1, overlap)) in [("staging", staging), ("rolling", rolling)] {
        if let Some(top1) = top1 {
            metrics::gauge!(SHADOW_TOP1_AGREEMENT, "window" => window).set(top1);
        }
        if let Some(overlap) = overlap {
            metrics::gauge!(SHADOW_TOPK_OVERLAP, "window" => window).set(overlap);
        }
    }
    metrics::gauge!(SHADOW_QUEUE).set(depth as f64);
}

/// The live monitor (see `crate::monitor::live`): live items sampled for analysis.
pub const MONITOR_SAMPLED: &str = "lastmile_monitor_sampled_items_total";
/// Sampled items dropped because the monitor's queue was full.
pub const MONITOR_SKIPPED: &str = "lastmile_monitor_skipped_items_total";
/// Sampled items re-scored and analysed (influence and drift).
pub const MONITOR_ANALYSED: &str = "lastmile_monitor_analysed_items_total";
/// Sampled items waiting in the monitor's queue.
pub const MONITOR_QUEUE: &str = "lastmile_monitor_queue_items";
/// Items in the monitor's rolling window.
pub const MONITOR_WINDOW: &str = "lastmile_monitor_window_items";
/// Per `model`, over the window: share of items on which leaving it out changes the answer.
pub const MONITOR_PIVOTAL: &str = "lastmile_monitor_member_pivotal_ratio";
/// Per `model`: share of answered items whose first label is its own best label.
pub const MONITOR_AGREEMENT: &str = "lastmile_monitor_member_agreement_ratio";
/// Per `model`: mean share of the winner's voted score.
pub const MONITOR_WINNER_SHARE: &str = "lastmile_monitor_member_winner_share_ratio";
/// Per `model`: share of the ensemble's model time.
pub const MONITOR_COMPUTE_SHARE: &str = "lastmile_monitor_member_compute_share_ratio";
/// Population stability index of the window's label buckets against the reference.
pub const MONITOR_PSI: &str = "lastmile_monitor_drift_psi";
/// Jensen-Shannon distance (0 to 1) of the window's label buckets against the reference.
pub const MONITOR_JS: &str = "lastmile_monitor_drift_js_distance";
/// Population stability index of the window's confidence histogram against the reference.
pub const MONITOR_CONFIDENCE_PSI: &str = "lastmile_monitor_drift_confidence_psi";
/// Share of the window's items without an answer.
pub const MONITOR_ABSTENTION: &str = "lastmile_monitor_abstention_ratio";
/// The window's abstention rate minus the reference's.
pub const MONITOR_ABSTENTION_CHANGE: &str = "lastmile_monitor_abstention_change_ratio";
/// Share of the window's answers whose first-label score is in `bin` (its lower edge, 0.0 to
/// 0.9), and the reference's (`source` = `window` or `reference`).
pub const MONITOR_CONFIDENCE: &str = "lastmile_monitor_confidence_ratio";
/// 1 while a drift statistic is above its `[monitor]` threshold, else 0.
pub const MONITOR_ALERT: &str = "lastmile_monitor_drift_alert";
/// Times a drift statistic crossed its threshold, by `statistic`.
pub const MONITOR_ALERTS: &str = "lastmile_monitor_drift_alerts_total";

fn describe_monitor() {
    metrics::describe_counter!(MONITOR_SAMPLED, "Live items sampled for the monitor.");
    metrics::describe_counter!(
        MONITOR_SKIPPED,
        "Sampled live items dropped: the monitor queue was full."
    );
    metrics::describe_counter!(MONITOR_ANALYSED, "Sampled items re-scored and analysed.");
    metrics::describe_gauge!(MONITOR_QUEUE, "Sampled items waiting for the monitor.");
    metrics::describe_gauge!(MONITOR_WINDOW, "Items in the monitor's rolling window.");
    metrics::describe_gauge!(
        MONITOR_PIVOTAL,
        "Share of the window's items on which leaving the model out changes the answer."
    );
    metrics::describe_gauge!(
        MONITOR_AGREEMENT,
        "Share of answered items whose first label is the model's own best label."
    );
    metrics::describe_gauge!(
        MONITOR_WINNER_SHARE,
        "The model's mean share of the winner's voted score."
    );
    metrics::describe_gauge!(MONITOR_COMPUTE_SHARE, "The model's share of model time.");
    metrics::describe_gauge!(
        MONITOR_PSI,
        "PSI of the answers' label buckets against the reference."
    );
    metrics::describe_gauge!(
        MONITOR_JS,
        "Jensen-Shannon distance of the answers' label buckets against the reference."
    );
    metrics::describe_gauge!(
        MONITOR_CONFIDENCE_PSI,
        "PSI of the answers' confidence histogram against the reference."
    );
    metrics::describe_gauge!(
        MONITOR_ABSTENTION,
        "Share of the window's items without an answer."
    );
    metrics::describe_gauge!(
        MONITOR_ABSTENTION_CHANGE,
        "The window's abstention rate minus the reference's."
    );
    metrics::describe_gauge!(
        MONITOR_CONFIDENCE,
        "Share of answers per first-label score bin, window and reference."
    );
    metrics::describe_gauge!(
        MONITOR_ALERT,
        "1 while a drift statistic is above its threshold."
    );
    metrics::describe_counter!(
        MONITOR_ALERTS,
        "Times a drift statistic crossed its threshold, by statistic."
    );
}

/// `queued` sampled items went to the monitor's queue, `skipped` did not fit; `depth` now wait.
pub fn monitor_sampled(queued: u64, skipped: u64, depth: usize) {
    metrics::counter!(MONITOR_SAMPLED).increment(queued + skipped);
    if skipped > 0 {
        metrics::counter!(MONITOR_SKIPPED).increment(skipped);
    }
    metrics::gauge!(MONITOR_QUEUE).set(depth as f64);
}

/// `analysed` items were analysed; the window holds `window` items, `depth` wait.
pub fn monitor_analysed(analysed: u64, window: usize, depth: usize) {
    metrics::counter!(MONITOR_ANALYSED).increment(analysed);
    metrics::gauge!(MONITOR_WINDOW).set(window as f64);
    metrics::gauge!(MONITOR_QUEUE).set(depth as f64);
}

/// One member's figures over the window (NaN for a member no longer served).
pub fn monitor_member(model: &str, pivotal: f64, agreement: f64, share: f64, compute: f64) {
    let m = || model.to_owned();
    metrics::gauge!(MONITOR_PIVOTAL, "model" => m()).set(pivotal);
    metrics::gauge!(MONITOR_AGREEMENT, "model" => m()).set(agreement);
    metrics::gauge!(MONITOR_WINNER_SHARE, "model" => m()).set(share);
    metrics::gauge!(MONITOR_COMPUTE_SHARE, "model" => m()).set(compute);
}

/// The drift statistics of the window (abstention: the window's rate and its change).
pub fn monitor_drift(psi: f64, js: f64, confidence_psi: f64, abstention: (f64, f64)) {
    metrics::gauge!(MONITOR_PSI).set(psi);
    metrics::gauge!(MONITOR_JS).set(js);
    metrics::gauge!(MONITOR_CONFIDENCE_PSI).set(confidence_psi);
    metrics::gauge!(MONITOR_ABSTENTION).set(abstention.0);
    metrics::gauge!(MONITOR_ABSTENTION_CHANGE).set(abstention.1);
}

/// The confidence histogram of `source` (`window` or `reference`), as shares per bin.
pub fn monitor_confidence(source: &'static str, shares: &[f64]) {
    let n = shares.len().max(1);
    for (b, &v) in shares.iter().enumerate() {
        let bin = format!("{:.1}", b as f64 / n as f64);
        metrics::gauge!(MONITOR_CONFIDENCE, "bin" => bin, "source" => source).set(v);
    }
}

/// Whether a drift statistic is above its threshold now; `crossed` are those that just crossed.
pub fn monitor_alert(alert: bool, crossed: &[String]) {
    metrics::gauge!(MONITOR_ALERT).set(if alert { 1.0 } else { 0.0 });
    for statistic in crossed {
        metrics::counter!(MONITOR_ALERTS, "statistic" => statistic.clone()).increment(1);
    }
}
