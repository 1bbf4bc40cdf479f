//! Per-model dynamic batching on a fixed pool of compute threads: the one way models run.
//!
//! A request is split into one part per model; each part waits in that model's lane (see
//! [`state`] for the rules a free thread follows to pick the next batch). Rows from any number of
//! concurrent requests run together as one batch; a request is answered by the thread that brings
//! back its last rows. Models never run on async worker threads: a 7,000-way scoring blocks for
//! milliseconds, which would stall a reactor.
//!
//! One pool serves every ensemble the process holds (live, candidate, shadow): lanes belong to
//! loaded models, so a model shared by two ensembles batches their rows together.
//!
//! With a `[cascade]`, only the first stage's rows are queued; an item's later stage is queued
//! when its stopping test fails (see [`cascade`]).
//!
//! Work comes in two priorities. Low-priority work (shadow traffic) has lanes of its own and runs
//! only when no normal lane is ready, so it never delays a live request by more than the batch a
//! thread is already running.

mod cascade;
mod job;
mod reply;
mod run;
pub mod state;
mod ticket;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

pub use ticket::Ticket;

use job::{Job, Part, Reply, Requeue};
use run::{run_batch, Outputs};
use state::{Batch, Queues};

use crate::ensemble::{BatchConfig, Ensemble, ItemAnswer, ModelScores, ValidItem};
use crate::runtime::Runtime;
use crate::telemetry;

/// The compute threads' names start with this (then their number), for tools that tell threads
/// apart: `top -H`, `perf`, the bench's count of where the cores went.
pub const COMPUTE_THREAD_PREFIX: &str = "lastmile-compute-";

/// The compute threads and the queues they serve.
pub struct ComputePool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled when rows are queued or the pool shuts down.
    work: Condvar,
}

struct State {
    normal: Tier,
    low: Tier,
    shutdown: bool,
}

/// Which queues a request waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Normal,
    /// Runs only when no normal-priority batch is ready: work no caller waits on (shadow
    /// traffic, validating a candidate while live traffic flows).
    Low,
}

/// The lanes of one priority.
#[derive(Default)]
struct Tier {
    queues: Queues<Part>,
    /// The lane of each loaded model, by the model's address; the weak reference tells when the
    /// model is gone so its lane can be reused.
    lanes: HashMap<usize, (usize, Weak<dyn Runtime>)>,
}

impl ComputePool {
    /// Starts `threads` compute threads (0: one per core).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        } else {
            threads
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                normal: Tier::default(),
                low: Tier::default(),
                shutdown: false,
            }),
            work: Condvar::new(),
        });
        let threads = (0..threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("{COMPUTE_THREAD_PREFIX}{i}"))
                    .spawn(move || compute_task(&shared))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(ComputePool { shared, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Queues `items` on every model of `ensemble`; the ticket resolves to one answer per item.
    pub fn predict(
        &self,
        ensemble: &Arc<Ensemble>,
        items: Vec<ValidItem>,
    ) -> Ticket<Vec<ItemAnswer>> {
        self.predict_at(Priority::Normal, ensemble, items)
    }

    /// [`ComputePool::predict`] at a chosen priority.
    pub fn predict_at(
        &self,
        priority: Priority,
        ensemble: &Arc<Ensemble>,
        items: Vec<ValidItem>,
    ) -> Ticket<Vec<ItemAnswer>> {
        self.predict_by(priority, ensemble, items, None)
    }

    /// [`ComputePool::predict_at`] of a request wanted until `deadline`: rows still queued then
    /// are dropped, never computed (the caller stops waiting for the ticket itself).
    pub fn predict_by(
        &self,
        priority: Priority,
        ensemble: &Arc<Ensemble>,
        items: Vec<ValidItem>,
        deadline: Option<Instant>,
    ) -> Ticket<Vec<ItemAnswer>> {
        let (tx, rx) = oneshot::channel();
        let job = self.submit(
            priority,
            ensemble,
            items,
            Reply::Answers(tx),
            deadline,
            false,
        );
        Ticket { rx, job }
    }

    /// [`ComputePool::predict_by`] at normal priority for a served request: its members' runs
    /// count in the ensemble's statistics ([`Ensemble::stats`]).
    pub fn predict_served(
        &self,
        ensemble: &Arc<Ensemble>,
        items: Vec<ValidItem>,
        deadline: Option<Instant>,
    ) -> Ticket<Vec<ItemAnswer>> {
        let (tx, rx) = oneshot::channel();
        let reply = Reply::Answers(tx);
        let job = self.submit(Priority::Normal, ensemble, items, reply, deadline, true);
        Ticket { rx, job }
    }

    /// As [`ComputePool::predict`], but answers every model's own scores, uncombined.
    pub fn score(&self, ensemble: &Arc<Ensemble>, items: Vec<ValidItem>) -> Ticket<ModelScores> {
        self.score_at(Priority::Normal, ensemble, items)
    }

    /// [`ComputePool::score`] at a chosen priority.
    pub fn score_at(
        &self,
        priority: Priority,
        ensemble: &Arc<Ensemble>,
        items: Vec<ValidItem>,
    ) -> Ticket<ModelScores> {
        let (tx, rx) = oneshot::channel();
        let job = self.submit(priority, ensemble, items, Reply::Scores(tx), None, false);
        Ticket { rx, job }
    }

    /// Rows waiting in every normal-priority lane.
    pub fn queue_depth(&self) -> usize {
        self.lock().normal.queues.depth()
    }

    /// Rows waiting in every low-priority lane.
    pub fn low_queue_depth(&self) -> usize {
        self.lock().low.queues.depth()
    }

    /// How long normal-priority work queued now would wait before its turn: the work queued
    /// ahead of it (each model's waiting rows at that model's recent batch cost) shared by the
    /// compute threads. An estimate, for shedding load before the queues grow without bound.
    pub fn estimated_wait(&self) -> std::time::Duration {
        let seconds = self.lock().normal.queues.queued_seconds() / self.threads.len().max(1) as f64;
        std::time::Duration::from_secs_f64(seconds)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().expect("scheduler lock")
    }

    fn submit(
        &self,
        priority: Priority,
        ensemble: &Arc<Ensemble>,
        items: Vec<ValidItem>,
        reply: Reply,
        deadline: Option<Instant>,
        counted: bool,
    ) -> Arc<Job> {
        let rows = items.len();
        let requeue = Requeue {
            shared: Arc::downgrade(&self.shared),
            priority,
        };
        let job = Job::new(
            Arc::clone(ensemble),
            items,
            reply,
            deadline,
            Some(requeue),
            counted,
        );
        if rows == 0 || ensemble.models.is_empty() {
            job.deliver_nothing();
            return job;
        }
        let now = Instant::now();
        let mut state = self.lock();
        let tier = match priority {
            Priority::Normal => &mut state.normal,
            Priority::Low => &mut state.low,
        };
        for (m, model) in ensemble.models.iter().enumerate() {
            // A cascade queues its first stage only (see `cascade`).
            if !job.queued_at_start(m) {
                continue;
            }
            let lane = tier.lane(&model.runtime, model.spec.batch);
            let part = Part {
                job: Arc::clone(&job),
                model: m,
            };
            tier.queues.push(lane, part, 0..rows, now);
        }
        state.report_depth();
        drop(state);
        self.shared.work.notify_all();
        job
    }
}

impl State {
    /// The batch a free thread runs now, and whether it is low-priority work: normal work
    /// first, low-priority work only when no normal lane is ready.
    fn next_batch(&mut self, now: Instant) -> Option<(Batch<Part>, bool)> {
        state::next_by_priority(&mut self.normal.queues, &mut self.low.queues, now)
    }

    /// A batch of lane `lane` (of the low-priority lanes if `low`) took `seconds`.
    fn record_run(&mut self, low: bool, lane: usize, seconds: f64) {
        let tier = if low { &mut self.low } else { &mut self.normal };
        tier.queues.record_run(lane, seconds);
    }

    /// When a lane of either priority becomes ready by waiting.
    fn next_deadline(&mut self) -> Option<Instant> {
        match (
            self.normal.queues.next_deadline(),
            self.low.queues.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn report_depth(&self) {
        telemetry::queue_depth(self.normal.queues.depth(), self.low.queues.depth());
    }
}

impl Tier {
    /// The lane of `runtime`, made on first use (or taken over from a model that is gone).
    fn lane(&mut self, runtime: &Arc<dyn Runtime>, config: BatchConfig) -> usize {
        let key = Arc::as_ptr(runtime) as *const () as usize;
        if let Some((lane, weak)) = self.lanes.get(&key) {
            if weak.strong_count() > 0 {
                let lane = *lane;
                self.queues.configure(lane, config);
                return lane;
            }
        }
        // Lanes of models that are gone and have nothing queued are reused; a hot swap does not
        // grow the lanes for ever.
        let free = self
            .lanes
            .iter()
            .find(|(_, (lane, weak))| {
                weak.strong_count() == 0 && self.queues.lane_depth(*lane) == 0
            })
            .map(|(&k, &(lane, _))| (k, lane));
        let lane = match free {
            Some((old_key, lane)) => {
                self.lanes.remove(&old_key);
                self.queues.reuse_lane(lane, config);
                lane
            }
            None => self.queues.add_lane(config),
        };
        self.lanes.insert(key, (lane, Arc::downgrade(runtime)));
        lane
    }
}

impl Drop for ComputePool {
    fn drop(&mut self) {
        self.lock().shutdown = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A compute thread: take the next batch, run it, hand the rows back; until shutdown.
fn compute_task(shared: &Shared) {
    let mut outputs = Outputs::default();
    // The last batch run: (low priority, lane, seconds), recorded when the lock is next taken.
    let mut ran: Option<(bool, usize, f64)> = None;
    loop {
        let (batch, low) = {
            let mut state = shared.state.lock().expect("scheduler lock");
            if let Some((low, lane, seconds)) = ran.take() {
                state.record_run(low, lane, seconds);
            }
            loop {
                if state.shutdown {
                    return;
                }
                let now = Instant::now();
                if let Some(next) = state.next_batch(now) {
                    state.report_depth();
                    break next;
                }
                state = match state.next_deadline() {
                    Some(due) => {
                        shared
                            .work
                            .wait_timeout(state, due.saturating_duration_since(now))
                            .expect("scheduler lock")
                            .0
                    }
                    // Nothing queued anywhere: the outputs kept for reuse go back to the
                    // allocator instead of holding a burst's memory while idle. Freed outside
                    // the lock; then the queues are looked at again before waiting.
                    None if outputs.holds_any() => {
                        drop(state);
                        outputs.release();
                        shared.state.lock().expect("scheduler lock")
                    }
                    None => shared.work.wait(state).expect("scheduler lock"),
                };
            }
        };
        let lane = batch.lane;
        ran = Some((low, lane, run_batch(batch, &mut outputs)));
    }
}
