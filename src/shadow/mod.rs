//! Shadow traffic: a staged candidate ensemble answers a sampled share of live items, off the
//! request path, and its answers are compared with the live ones.
//!
//! The request path ([`crate::service::Service::predict`]) asks the [`ShadowSlot`] which items to
//! mirror before it scores them ([`ShadowSlot::pick`], one atomic increment per item), and hands
//! the picked items with their live answers to the shadow's bounded queue once the live answer is
//! in ([`Pending::send`], never waiting: a full queue skips the item and counts it). The client
//! gets the live answer whatever the shadow does. The shadow worker (`worker.rs`) takes items off
//! the queue in batches, runs them on the compute pool at low priority, compares each answer
//! ([`agreement`]) and records it ([`Stats`]); the admin API reads the [`Report`].
//!
//! # For operators
//!
//! ```sh
//! lastmile deploy --shadow --fraction 0.2 --manifest models/next/manifest.toml   # stage
//! lastmile shadow report            # agreement since staging and over the window, top pairs
//! lastmile shadow promote --validation data/valid.jsonl   # same gate and swap as deploy
//! lastmile shadow stop              # or stop mirroring; the final report stays readable
//! ```
//!
//! (REST `/admin/v1/shadow/{stage,report,stop,promote}` and gRPC `lastmile.v1.Shadow` on the
//! admin addresses: see `edge::admin`; the operations are the deployer's, `deploy::shadow`.) `lastmile serve` settings: `--shadow-queue-items`
//! (1024: beyond, mirrored items are skipped and counted), `--shadow-compare-k` (5),
//! `--shadow-window-items` (1000) and `--shadow-window-seconds` (300) for the rolling window,
//! `--shadow-log FILE` (off) with `--shadow-log-max-bytes` and `--shadow-log-files` for the
//! rotating JSON Lines log of items whose winners differ.
//!
//! Per mirrored item: top-1 agreement (both winners equal, or both answers empty), top-k overlap
//! (share of live's first k labels among the shadow's first k; k capped by the length of the
//! live answer the client asked for), the shadow's score for the live winner (the shadow is asked
//! for at least `compare_k` labels; a winner outside them has no score and counts against
//! `live_winner_in_shadow`), both latencies (seconds on the compute pool), and shadow failures
//! (an item that does not fit the shadow's fields, a model that fails). Metrics:
//! `lastmile_shadow_{mirrored,skipped,compared,failed}_items_total`, `lastmile_shadow_queue_items`,
//! `lastmile_shadow_batch_duration_seconds`, and `lastmile_shadow_top1_agreement_ratio` /
//! `lastmile_shadow_topk_overlap_ratio` by `window` (`staging`, `rolling`).
//!
//! Cost: the request path pays one atomic increment per item, a clone of each picked item and
//! one short lock to queue them; the shadow runs at low priority on the same compute threads, so
//! it delays live work by at most the batch a thread is already running.

mod compare;
mod log;
mod queue;
mod report;
mod sample;
mod stats;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

pub use compare::{agreement, Agreement, Comparison, Outcome};
pub use log::{DisagreementLog, LogConfig};
pub use queue::{MirrorQueue, QueueState};
pub use report::{
    Aggregate, Counts, EnsembleRef, LabelAgreement, Latency, LogStatus, PairCount, QueueStatus,
    Report, WindowReport,
};
pub use sample::Sampler;
pub use stats::{Stats, Window};

use crate::ensemble::{Ensemble, ItemAnswer, ValidItem};
use crate::hooks::Hooks;
use crate::registry::Held;
use crate::scheduler::ComputePool;
use crate::telemetry;

/// How every shadow staged on this server runs; set when the server starts.
#[derive(Clone)]
pub struct ShadowSettings {
    /// Mirrored items waiting for the shadow, at most; beyond, items are skipped.
    pub queue_items: usize,
    /// Items the worker hands the compute pool at once.
    pub batch_items: usize,
    /// Depth of the top-k comparison; the shadow is asked for at least this many labels.
    pub compare_k: usize,
    /// The rolling window: the last `window_items` items, none older than `window`.
    pub window_items: usize,
    pub window: Duration,
    /// Entries in the report's lists (disagreement pairs, labels).
    pub report_top: usize,
    /// The disagreement log; None (the default) writes none.
    pub log: Option<LogConfig>,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        ShadowSettings {
            queue_items: 1024,
            batch_items: 64,
            compare_k: 5,
            window_items: 1000,
            window: Duration::from_secs(300),
            report_top: 10,
            log: None,
        }
    }
}

/// What one staging asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageOptions {
    /// Share of live items mirrored, in [0, 1].
    pub fraction: f64,
    /// Seed of the per-item sampling.
    pub seed: u64,
}

impl Default for StageOptions {
    fn default() -> Self {
        StageOptions {
            fraction: 0.1,
            seed: 0,
        }
    }
}

/// One staged shadow ensemble, its queue and its statistics.
pub struct Shadow {
    pub ensemble: Arc<Ensemble>,
    /// How it was loaded (for the status, and for promotion through the gate).
    pub held: Held,
    pub options: StageOptions,
    compare_k: usize,
    report_top: usize,
    sampler: Sampler,
    queue: MirrorQueue<Mirrored>,
    stats: Mutex<Stats>,
    log: Option<Arc<Mutex<DisagreementLog>>>,
    /// Live ensemble of the latest mirrored request.
    live: Mutex<Option<EnsembleRef>>,
    sampled: AtomicU64,
    mirrored: AtomicU64,
    skipped: AtomicU64,
    stopped: AtomicBool,
    /// Mirrored items not yet compared, failed or discarded.
    outstanding: watch::Sender<u64>,
    staged: Instant,
    staged_at: SystemTime,
}

/// A live item on its way to the shadow.
struct Mirrored {
    live_ensemble: Arc<Ensemble>,
    item: ValidItem,
    live: ItemAnswer,
    live_seconds: f64,
}

impl Shadow {
    fn new(held: Held, options: StageOptions, settings: &ShadowSettings) -> Self {
        Shadow {
            ensemble: Arc::clone(&held.ensemble),
            held,
            compare_k: settings.compare_k.max(1),
            report_top: settings.report_top,
            sampler: Sampler::new(options.fraction, options.seed),
            queue: MirrorQueue::new(settings.queue_items),
            stats: Mutex::new(Stats::new(Window::new(
                settings.window_items,
                settings.window,
            ))),
            log: settings
                .log
                .clone()
                .map(|c| Arc::new(Mutex::new(DisagreementLog::new(c)))),
            live: Mutex::new(None),
            sampled: AtomicU64::new(0),
            mirrored: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            outstanding: watch::Sender::new(0),
            staged: Instant::now(),
            staged_at: SystemTime::now(),
            options,
        }
    }

    pub fn is_running(&self) -> bool {
        !self.stopped.load(Ordering::Acquire)
    }

    /// Stops mirroring; what is queued is discarded, a batch on the pool finishes and is counted.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let left = self.queue.close().len() as u64;
        self.stats().counts.discarded += left;
        self.settle(left);
    }

    /// Waits until every mirrored item has been compared, failed or discarded (for tests and
    /// for a final report).
    pub async fn settled(&self) {
        let mut rx = self.outstanding.subscribe();
        let _ = rx.wait_for(|&n| n == 0).await;
    }

    fn settle(&self, n: u64) {
        self.outstanding.send_modify(|o| *o -= n);
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().expect("shadow stats lock")
    }

    /// The report as of now.
    pub fn report(&self) -> Report {
        self.report_with(self.report_top)
    }

    /// The report as of now, with `top` entries in its lists.
    pub fn report_with(&self, top: usize) -> Report {
        let now = Instant::now();
        let mut stats = self.stats();
        let mut counts = stats.counts.clone();
        counts.sampled = self.sampled.load(Ordering::Relaxed);
        counts.mirrored = self.mirrored.load(Ordering::Relaxed);
        counts.skipped = self.skipped.load(Ordering::Relaxed);
        let (untracked_pairs, untracked_labels) = stats.untracked();
        let window = WindowReport {
            max_items: stats.window.max_items,
            max_seconds: stats.window.max_age.as_secs_f64(),
            aggregate: stats.window.aggregate(now),
        };
        Report {
            state: if self.is_running() {
                "running"
            } else {
                "stopped"
            }
            .into(),
            shadow: EnsembleRef::of(&self.ensemble),
            live: self.live.lock().expect("shadow live lock").clone(),
            fraction: self.options.fraction,
            compare_k: self.compare_k,
            staged_at: self
                .staged_at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            seconds_staged: now.duration_since(self.staged).as_secs_f64(),
            counts,
            queue: QueueStatus {
                capacity: self.queue.capacity(),
                depth: self.queue.depth(),
            },
            since_staging: stats.since_staging(),
            window,
            top_disagreements: stats.top_disagreements(top),
            labels: stats.label_agreement(top),
            untracked_pairs,
            untracked_labels,
            last_error: stats.last_error.clone(),
            log: self.log.as_ref().map(|log| {
                let log = log.lock().expect("shadow log lock");
                LogStatus {
                    path: log.path().display().to_string(),
                    lines: log.lines,
                    rotations: log.rotations,
                    errors: log.errors,
                }
            }),
        }
    }
}

impl EnsembleRef {
    pub fn of(e: &Ensemble) -> Self {
        EnsembleRef {
            name: e.name.clone(),
            version: e.version.clone(),
            digest: e.digest.clone(),
        }
    }
}

/// Where the server keeps its shadow, the one place shadow state lives: the running one, or the
/// last one stopped (for its final report).
pub struct ShadowSlot {
    settings: ShadowSettings,
    current: ArcSwapOption<Shadow>,
    hooks: Arc<dyn Hooks>,
}

impl ShadowSlot {
    pub fn new(settings: ShadowSettings, hooks: Arc<dyn Hooks>) -> Self {
        ShadowSlot {
            settings,
            current: ArcSwapOption::empty(),
            hooks,
        }
    }

    pub fn settings(&self) -> &ShadowSettings {
        &self.settings
    }

    /// Stages `held` as the shadow, replacing (stopping) any other, and starts its worker on
    /// `pool`. Must be called within a tokio runtime.
    pub fn stage(&self, held: Held, options: StageOptions, pool: Arc<ComputePool>) -> Arc<Shadow> {
        let shadow = Arc::new(Shadow::new(held, options, &self.settings));
        tokio::spawn(worker::shadow_task(
            Arc::clone(&shadow),
            pool,
            Arc::clone(&self.hooks),
            self.settings.batch_items.max(1),
        ));
        if let Some(old) = self.current.swap(Some(Arc::clone(&shadow))) {
            old.stop();
        }
        tracing::info!(
            shadow = %shadow.ensemble.name, version = %shadow.ensemble.version,
            fraction = options.fraction, "shadow staged"
        );
        shadow
    }

    /// The running shadow, if any.
    pub fn running(&self) -> Option<Arc<Shadow>> {
        self.current.load_full().filter(|s| s.is_running())
    }

    /// The running shadow, or the last one stopped.
    pub fn latest(&self) -> Option<Arc<Shadow>> {
        self.current.load_full()
    }

    /// Stops the running shadow; it stays readable through [`ShadowSlot::latest`].
    pub fn stop(&self) -> Option<Arc<Shadow>> {
        let shadow = self.running()?;
        shadow.stop();
        tracing::info!(shadow = %shadow.ensemble.name, "shadow stopped");
        Some(shadow)
    }

    /// Picks which of a request's items to mirror, before they are scored: None when no shadow
    /// runs or no item was picked. Costs one load and one atomic increment per item.
    pub fn pick(&self, live: &Arc<Ensemble>, items: &[ValidItem]) -> Option<Pending> {
        let guard = self.current.load();
        let shadow = guard.as_ref().filter(|s| s.is_running())?;
        let picked: Vec<(usize, ValidItem)> = items
            .iter()
            .enumerate()
            .filter(|_| shadow.sampler.pick())
            .map(|(i, item)| (i, item.clone()))
            .collect();
        (!picked.is_empty()).then(|| Pending {
            shadow: Arc::clone(shadow),
            live: Arc::clone(live),
            picked,
            started: Instant::now(),
        })
    }
}

/// Items picked for mirroring, waiting for their live answers.
pub struct Pending {
    shadow: Arc<Shadow>,
    live: Arc<Ensemble>,
    picked: Vec<(usize, ValidItem)>,
    started: Instant,
}

impl Pending {
    /// Hands the picked items and their live answers to the shadow's queue; never waits. What
    /// does not fit is skipped and counted.
    pub fn send(self, answers: &[ItemAnswer]) {
        let Pending {
            shadow,
            live,
            picked,
            started,
        } = self;
        if !shadow.is_running() {
            // Stopped while the live answer was computed: its counts are final.
            return;
        }
        let live_seconds = started.elapsed().as_secs_f64();
        let picked_count = picked.len() as u64;
        let mirrored = picked.into_iter().map(|(i, item)| Mirrored {
            live_ensemble: Arc::clone(&live),
            item,
            live: ItemAnswer {
                // The comparison and the log need the ranking, not the explanation.
                models: None,
                ..answers[i].clone()
            },
            live_seconds,
        });
        // Counted as outstanding before they can be taken, so `settled` never sees them early.
        shadow.outstanding.send_modify(|o| *o += picked_count);
        let (queued, depth) = shadow.queue.push(mirrored);
        let queued = queued as u64;
        let skipped = picked_count - queued;
        shadow.settle(skipped);
        shadow.sampled.fetch_add(picked_count, Ordering::Relaxed);
        shadow.mirrored.fetch_add(queued, Ordering::Relaxed);
        shadow.skipped.fetch_add(skipped, Ordering::Relaxed);
        telemetry::shadow_mirrored(queued, skipped, depth);
    }
}
