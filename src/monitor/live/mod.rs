//! The live monitor: on a sampled share of live items, off the request path (like the shadow),
//! every member's influence and the answers' drift over a rolling window, as Prometheus gauges
//! and in the admin API's report (JSON and HTML).
//!
//! **Path.** The request path asks [`Monitor::pick`] which items to sample before they are scored
//! (one atomic increment per item; nothing at all when the fraction is 0) and hands them over once
//! the live answer is in ([`Pending::send`]: a bounded queue, never waiting; a full queue drops the
//! items and counts them). The worker (`worker.rs`) takes them in batches, scores them again on the
//! compute pool at normal priority, beside live requests, for every model's own scores (at low
//! priority it waited behind live work for as long as saturation lasted, and the window stopped
//! filling exactly when the traffic mattered most; the sampling fraction bounds what it takes),
//! computes each member's influence ([`crate::monitor::influence`]) on a blocking thread, and
//! records the item in the [`Window`] of the ensemble that answered it.
//!
//! **Reference.** Drift needs the answers the ensemble gave on its validation set: the deploy
//! gate hands them over when it validates a candidate ([`Monitor::set_reference`]); else the
//! manifest's `[monitor] reference` file; else, when the manifest names a `validation` set, the
//! monitor scores up to `reference_items` of it at low priority when it first sees the ensemble.
//! Without any, the drift statistics are not computed (the report says why).
//!
//! **Alerts.** When a statistic goes above its `[monitor]` threshold (once the window holds
//! `min_items` items), a `prediction drift: threshold crossed` warning is logged with the
//! statistic, its value and threshold, `lastmile_monitor_drift_alerts_total{statistic}` counts it
//! and `lastmile_monitor_drift_alert` is 1 until every statistic is back under.
//!
//! **Degraded answers.** A live answer voted without a member that failed or ran out of its
//! `timeout_ms` (a degraded answer) is analysed like any other: the worker scores the item again
//! with every member (raw scores never degrade: a member failing there fails the batch, counted
//! in `failed`), so its influence and its place in the drift window are the full ensemble's on
//! that item, which is what `lastmile zombies` and the validation reference measure. Influence
//! among a degraded answer's members is never mixed into the window: a member left out has none,
//! and the others' would be of another vote. The report counts the analysed items whose live
//! answer was degraded (`degraded`).
//!
//! **Cost.** Sampled items are scored a second time: at fraction f the monitor adds about f of
//! the models' work, plus each item's influence (a fraction of a millisecond on
//! the demo ensemble). The default fraction, 0.01, is measured against saturation throughput by
//! `lastmile bench --monitor-cost` (BENCHMARKS.md).

mod reference;
mod report;
mod window;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use report::{LiveReport, ReferenceStatus};
pub use window::{Point, Record, Window};

use super::drift::Reference;
use crate::ensemble::{Ensemble, ItemAnswer, ValidItem};
use crate::scheduler::ComputePool;
use crate::shadow::{MirrorQueue, Sampler};
use crate::telemetry;

/// How the live monitor runs; set when the server starts.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Share of live items analysed, in [0, 1]; 0 turns the monitor off.
    pub fraction: f64,
    /// Seed of the per-item sampling.
    pub seed: u64,
    /// Sampled items waiting for the worker, at most; beyond, items are dropped and counted.
    pub queue_items: usize,
    /// Items the worker scores at once.
    pub batch_items: usize,
    /// How long the worker waits for a batch to fill before scoring fewer items: sampled items
    /// are sparse, and scoring them one by one would run every model on one row.
    pub linger: Duration,
    /// The rolling window: the last `window_items` items, none older than `window`.
    pub window_items: usize,
    pub window: Duration,
    /// Items of the validation set scored for a reference when nothing else gives one.
    pub reference_items: usize,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            fraction: 0.01,
            seed: 0,
            queue_items: 256,
            batch_items: 32,
            linger: Duration::from_millis(500),
            window_items: 2000,
            window: Duration::from_secs(900),
            reference_items: 2000,
        }
    }
}

/// Where an ensemble's drift reference stands.
#[derive(Debug, Clone)]
pub(crate) enum RefState {
    Ready(Arc<Reference>),
    Computing(String),
    Failed(String),
    Missing,
}

/// References kept (live, candidate, previous and a few more).
const REFERENCES: usize = 8;

/// The serving state's monitor: the sampler, the queue, the window and the references.
pub struct Monitor {
    settings: MonitorSettings,
    on: bool,
    sampler: Sampler,
    queue: MirrorQueue<Sampled>,
    state: Mutex<State>,
    references: Mutex<Vec<(String, RefState)>>,
    sampled: AtomicU64,
    skipped: AtomicU64,
    analysed: AtomicU64,
    failed: AtomicU64,
    /// Sampled items whose live answer was degraded.
    degraded: AtomicU64,
    /// Sampled items not yet analysed or dropped (tests wait for 0).
    outstanding: watch::Sender<u64>,
    /// Bumped whenever a reference changes state.
    references_changed: watch::Sender<u64>,
    started: Instant,
}

struct State {
    /// The ensemble the window follows.
    served: Option<Served>,
    window: Window,
    /// The statistics above their threshold at the last update.
    crossed: Vec<String>,
    last_error: Option<String>,
}

/// What the report says of the ensemble the window follows.
#[derive(Debug, Clone)]
struct Served {
    name: String,
    version: String,
    digest: String,
    config: crate::ensemble::manifest::MonitorConfig,
}

/// A live item on its way to the monitor.
struct Sampled {
    ensemble: Arc<Ensemble>,
    item: ValidItem,
}

impl Monitor {
    pub fn new(settings: MonitorSettings) -> Self {
        let on = settings.fraction > 0.0;
        Monitor {
            sampler: Sampler::new(settings.fraction, settings.seed),
            queue: MirrorQueue::new(settings.queue_items),
            state: Mutex::new(State {
                served: None,
                window: Window::new(settings.window_items, settings.window),
                crossed: Vec::new(),
                last_error: None,
            }),
            references: Mutex::new(Vec::new()),
            sampled: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            analysed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            degraded: AtomicU64::new(0),
            outstanding: watch::Sender::new(0),
            references_changed: watch::Sender::new(0),
            started: Instant::now(),
            on,
            settings,
        }
    }

    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Whether live items are sampled at all.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Starts the worker on `pool` (when the monitor is on). Must be called within a tokio
    /// runtime.
    pub fn start(self: &Arc<Self>, pool: Arc<ComputePool>) {
        if self.on {
            tokio::spawn(worker::monitor_task(Arc::clone(self), pool));
        }
    }

    /// Picks which of a request's items to analyse, before they are scored: None when the monitor
    /// is off or picked none. One atomic increment per item.
    pub fn pick(&self, ensemble: &Arc<Ensemble>, items: &[ValidItem]) -> Option<Pending<'_>> {
        if !self.on {
            return None;
        }
        let picked: Vec<(usize, ValidItem)> = items
            .iter()
            .enumerate()
            .filter(|_| self.sampler.pick())
            .map(|(i, item)| (i, item.clone()))
            .collect();
        (!picked.is_empty()).then(|| Pending {
            monitor: self,
            ensemble: Arc::clone(ensemble),
            picked,
        })
    }

    /// Waits until every sampled item has been analysed or dropped (for tests).
    pub async fn settled(&self) {
        let mut rx = self.outstanding.subscribe();
        let _ = rx.wait_for(|&n| n == 0).await;
    }

    /// Waits until the reference of the ensemble with `digest` is known to be there or not
    /// (not being computed any more, and looked for), for tests.
    pub async fn reference_settled(&self, digest: &str) {
        let mut rx = self.references_changed.subscribe();
        loop {
            match self.reference_state(digest) {
                None | Some(RefState::Computing(_)) => {}
                Some(_) => return,
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn settle(&self, n: u64) {
        self.outstanding.send_modify(|o| *o = o.saturating_sub(n));
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("monitor state lock")
    }

    /// The drift reference of `ensemble` from now on: its answers on its validation set.
    pub fn set_reference(&self, ensemble: &Ensemble, reference: Reference) {
        tracing::info!(
            ensemble = %ensemble.name, version = %ensemble.version, source = %reference.source,
            items = reference.counts.items, "drift reference set"
        );
        self.put_reference(&ensemble.digest, RefState::Ready(Arc::new(reference)));
    }

    fn put_reference(&self, digest: &str, state: RefState) {
        let mut refs = self.references.lock().expect("monitor references lock");
        refs.retain(|(d, _)| d != digest);
        if refs.len() == REFERENCES {
            refs.remove(0);
        }
        refs.push((digest.to_owned(), state));
        drop(refs);
        self.references_changed.send_modify(|n| *n += 1);
    }

    fn reference_state(&self, digest: &str) -> Option<RefState> {
        let refs = self.references.lock().expect("monitor references lock");
        refs.iter()
            .find(|(d, _)| d == digest)
            .map(|(_, s)| s.clone())
    }

    /// Records analysed items of `ensemble`, updates the gauges and judges the drift.
    fn record(&self, ensemble: &Ensemble, records: Vec<Record>) {
        let now = Instant::now();
        let n = records.len() as u64;
        let reference = match self.reference_state(&ensemble.digest) {
            Some(RefState::Ready(r)) => Some(r),
            _ => None,
        };
        let mut state = self.state();
        let members = super::influence::members_of(ensemble);
        if state.window.digest() != ensemble.digest {
            for gone in state.window.members() {
                if !members.iter().any(|m| m.name == gone.name) {
                    telemetry::monitor_member(&gone.name, f64::NAN, f64::NAN, f64::NAN, f64::NAN);
                }
            }
            state
                .window
                .follow(&ensemble.digest, ensemble.models.len(), members);
            state.served = Some(Served {
                name: ensemble.name.clone(),
                version: ensemble.version.clone(),
                digest: ensemble.digest.clone(),
                config: ensemble.monitor.clone(),
            });
            state.crossed.clear();
        }
        for r in records {
            state.window.push(r, now);
        }
        for f in state.window.figures() {
            telemetry::monitor_member(
                &f.name,
                f.pivotal_rate,
                f.agreement,
                f.winner_share,
                f.compute_share,
            );
        }
        let drift = reference
            .as_ref()
            .map(|r| super::drift::drift(r, state.window.answers(), &ensemble.monitor));
        if let Some(d) = &drift {
            telemetry::monitor_drift(
                d.psi,
                d.js,
                d.confidence_psi,
                (d.abstention, d.abstention_change),
            );
            telemetry::monitor_confidence("window", &d.confidence);
            telemetry::monitor_confidence("reference", &d.reference_confidence);
            // The series starts once the window is big enough to be judged.
            if state.window.items() >= ensemble.monitor.min_items {
                let every = (self.settings.window / 100).max(Duration::from_millis(500));
                state.window.point(d, now, every);
            }
            let newly: Vec<String> = d
                .crossed
                .iter()
                .filter(|c| !state.crossed.contains(c))
                .cloned()
                .collect();
            for statistic in &newly {
                let (value, threshold) = statistic_value(d, &ensemble.monitor, statistic);
                tracing::warn!(
                    ensemble = %ensemble.name, version = %ensemble.version, %statistic, value,
                    threshold, items = d.items, "prediction drift: threshold crossed"
                );
            }
            if !state.crossed.is_empty() && d.crossed.is_empty() {
                tracing::info!(ensemble = %ensemble.name, "prediction drift: back under every threshold");
            }
            telemetry::monitor_alert(!d.crossed.is_empty(), &newly);
            state.crossed = d.crossed.clone();
        }
        let items = state.window.items();
        drop(state);
        self.analysed.fetch_add(n, Ordering::Relaxed);
        telemetry::monitor_analysed(n, items, self.queue.depth());
    }

    fn fail(&self, n: u64, reason: String) {
        self.failed.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(items = n, %reason, "monitor: sampled items could not be analysed");
        self.state().last_error = Some(reason);
    }
}

/// A statistic's value in `d` and its threshold in `config`.
fn statistic_value(
    d: &super::drift::Drift,
    config: &crate::ensemble::manifest::MonitorConfig,
    statistic: &str,
) -> (f64, f64) {
    match statistic {
        "psi" => (d.psi, config.psi),
        "js" => (d.js, config.js),
        "confidence_psi" => (d.confidence_psi, config.confidence_psi),
        _ => (d.abstention_change, config.abstention),
    }
}

/// Items picked for the monitor, waiting for their live answers.
pub struct Pending<'m> {
    monitor: &'m Monitor,
    ensemble: Arc<Ensemble>,
    /// Each picked item with its place in the request.
    picked: Vec<(usize, ValidItem)>,
}

impl Pending<'_> {
    /// Hands the picked items to the monitor's queue once the request was answered (`answers`,
    /// the request's, in order: how many picked items were answered degraded is counted); never
    /// waits. What does not fit is dropped and counted.
    pub fn send(self, answers: &[ItemAnswer]) {
        let Pending {
            monitor,
            ensemble,
            picked,
        } = self;
        let n = picked.len() as u64;
        let degraded = picked
            .iter()
            .filter(|(i, _)| answers.get(*i).is_some_and(|a| a.degraded.is_some()))
            .count();
        monitor
            .degraded
            .fetch_add(degraded as u64, Ordering::Relaxed);
        monitor.outstanding.send_modify(|o| *o += n);
        let sampled = picked.into_iter().map(|(_, item)| Sampled {
            ensemble: Arc::clone(&ensemble),
            item,
        });
        let (queued, depth) = monitor.queue.push(sampled);
        let skipped = n - queued as u64;
        monitor.settle(skipped);
        monitor.sampled.fetch_add(n, Ordering::Relaxed);
        monitor.skipped.fetch_add(skipped, Ordering::Relaxed);
        telemetry::monitor_sampled(queued as u64, skipped, depth);
    }
}

/// The references computed or being computed, for the report.
impl Monitor {
    fn references(&self) -> HashMap<String, RefState> {
        let refs = self.references.lock().expect("monitor references lock");
        refs.iter().cloned().collect()
    }
}
