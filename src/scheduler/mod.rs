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
//! Work comes in two priorities. Low-priority work (shadow traffic) has lanes of its own and runs
//! only when no normal lane is ready, so it never delays a live request by more than the batch a
//! thread is already running.

mod job;
pub mod state;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

pub use job::Ticket;

use job::Failure;

use job::{Job, Part, ReadiedRows, Reply};
use state::{Batch, Entry, Queues};

use crate::ensemble::{BatchConfig, Ensemble, ItemAnswer, ModelScores, PredictError, ValidItem};
use crate::runtime::{InputKind, Inputs, RunError, Runtime, Scores};
use crate::telemetry;

/// The compute threads' names start with this (then their number), for tools that tell threads
/// apart: `top -H`, `perf`, the bench's count of where the cores went.
pub const COMPUTE_THREAD_PREFIX: &str = "lastmile-compute-";

/// The compute threads and the queues they serve.
pub struct ComputePool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
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
        let job = self.submit(priority, ensemble, items, Reply::Answers(tx), deadline);
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
        let job = self.submit(priority, ensemble, items, Reply::Scores(tx), None);
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
    ) -> Arc<Job> {
        let rows = items.len();
        let job = Job::new(Arc::clone(ensemble), items, reply, deadline);
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

/// A compute thread's batch outputs. A batch's output is shared by the requests in it (each
/// holds it until it is answered) instead of copied out row by row, so the next batch writes
/// into an output no request holds any more, reusing its allocation.
#[derive(Default)]
struct Outputs {
    kept: Vec<Arc<Scores>>,
}

impl Outputs {
    /// Enough for every batch of a full round of the demo's 50 models to be in flight at once;
    /// past that, outputs are freed by the last request holding them.
    const KEPT: usize = 64;

    /// An output nobody holds.
    fn free(&mut self) -> Arc<Scores> {
        match self.kept.iter().position(|o| Arc::strong_count(o) == 1) {
            Some(i) => self.kept.swap_remove(i),
            None => Arc::default(),
        }
    }

    fn keep(&mut self, output: &Arc<Scores>) {
        if self.kept.len() < Self::KEPT {
            self.kept.push(Arc::clone(output));
        }
    }

    fn holds_any(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Lets go of every kept output: each is freed by whoever holds it last.
    fn release(&mut self) {
        self.kept.clear();
    }
}

/// Runs one batch: gathers its rows from every request in it, runs the model once, readies each
/// request's rows in place and shares the output with them. Returns the seconds the model ran.
fn run_batch(batch: Batch<Part>, outputs: &mut Outputs) -> f64 {
    let Some(first) = batch.entries.first() else {
        return 0.0;
    };
    let started = Instant::now();
    for e in &batch.entries {
        telemetry::queue_wait(started.saturating_duration_since(e.enqueued));
    }
    // Every entry of a lane runs the same loaded model; its name and input come from the first.
    let model = &first.request.job.ensemble.models[first.request.model];
    let runtime = Arc::clone(&model.runtime);
    let name = model.spec.name.clone();
    let rows = batch.rows();
    let mut output = outputs.free();
    // Nobody else holds it: this never copies.
    let out = Arc::make_mut(&mut output);
    let result = catch_unwind(AssertUnwindSafe(|| {
        run_model(&*runtime, &batch.entries, rows, out)
    }));
    let elapsed = started.elapsed();
    telemetry::model_run(&name, elapsed);
    telemetry::batch_size(&name, rows);
    let cols = runtime.labels().len();
    if let Some((failure, reason)) = output_error(result, out, rows, cols) {
        for e in batch.entries {
            let Part { job, model } = e.request;
            job.member_failed(model, e.rows, failure, reason.clone());
        }
        return elapsed.as_secs_f64();
    }
    // Readying runs here, while the output is still this thread's alone. It and combining
    // (by the request's last delivery) are caught: a bug there fails that request, and never
    // takes a compute thread down with it.
    let readied = ready_rows(&batch.entries, &mut out.data, cols);
    outputs.keep(&output);
    let nanos_per_row = elapsed.as_nanos() as u64 / rows.max(1) as u64;
    deliver_rows(batch.entries, readied, &output, nanos_per_row, &name);
    elapsed.as_secs_f64()
}

/// Gathers the batch's inputs, in entry order, and runs the model on them once.
fn run_model(
    runtime: &dyn Runtime,
    entries: &[Entry<Part>],
    rows: usize,
    out: &mut Scores,
) -> Result<(), RunError> {
    match runtime.input_kind() {
        InputKind::Text => {
            let texts: Vec<&str> = entries
                .iter()
                .flat_map(|e| {
                    e.rows
                        .clone()
                        .map(|r| e.request.job.text(e.request.model, r))
                })
                .collect();
            runtime.run(&Inputs::Text(&texts), out)
        }
        InputKind::Features { width } => {
            let mut data = Vec::with_capacity(rows * width);
            for e in entries {
                let job = &e.request.job;
                let field = job.ensemble.models[e.request.model].field_ids[0];
                job.features(field, width, e.rows.clone(), &mut data);
            }
            runtime.run(&Inputs::Features { data: &data, width }, out)
        }
    }
}

/// Why the whole batch failed, if it did: the model erred, panicked, or answered a wrong shape.
fn output_error(
    result: std::thread::Result<Result<(), RunError>>,
    out: &Scores,
    rows: usize,
    cols: usize,
) -> Option<(Failure, String)> {
    match result {
        Ok(Ok(())) if out.rows == rows && out.cols == cols && out.data.len() == rows * cols => None,
        Ok(Ok(())) => Some((
            Failure::Error,
            format!(
                "returned {} rows of {} scores for {rows} rows of {cols}: this is a bug",
                out.rows, out.cols
            ),
        )),
        Ok(Err(e)) => Some((Failure::Error, e.to_string())),
        Err(_) => Some((
            Failure::Panic,
            "the model panicked while scoring".to_owned(),
        )),
    }
}

/// Readies each request's rows of `data` in place; None where readying panicked (and failed it).
fn ready_rows(entries: &[Entry<Part>], data: &mut [f32], cols: usize) -> Vec<Option<ReadiedRows>> {
    let mut offset = 0;
    let mut readied = Vec::with_capacity(entries.len());
    for e in entries {
        let (job, n) = (&e.request.job, e.rows.len());
        let scores = &mut data[offset * cols..(offset + n) * cols];
        let ready = catch_unwind(AssertUnwindSafe(|| {
            job.ready(e.request.model, e.rows.clone(), scores)
        }));
        if ready.is_err() {
            let why = "readying its scores panicked: this is a bug".to_owned();
            job.member_failed(e.request.model, e.rows.clone(), Failure::Panic, why);
        }
        readied.push(ready.ok());
        offset += n;
    }
    readied
}

/// Hands each readied request its rows of the shared `output` and its share of the run time.
fn deliver_rows(
    entries: Vec<Entry<Part>>,
    readied: Vec<Option<ReadiedRows>>,
    output: &Arc<Scores>,
    nanos_per_row: u64,
    name: &str,
) {
    let mut offset = 0;
    for (e, ready) in entries.into_iter().zip(readied) {
        let (job, n) = (&e.request.job, e.rows.len());
        if let Some(ready) = ready {
            let delivered = catch_unwind(AssertUnwindSafe(|| {
                let nanos = nanos_per_row * n as u64;
                job.deliver(e.request.model, e.rows, output, offset, ready, nanos)
            }));
            if delivered.is_err() {
                fail(
                    job,
                    name,
                    "combining its scores panicked: this is a bug".to_owned(),
                );
            }
        }
        offset += n;
    }
}

/// Fails `job` with `reason`, naming the model whose batch failed it.
fn fail(job: &Job, name: &str, reason: String) {
    job.fail(PredictError {
        model: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_still_held_by_a_request_is_never_reused() {
        let mut outputs = Outputs::default();
        let mut first = outputs.free();
        Arc::make_mut(&mut first).data = vec![1.0; 8];
        outputs.keep(&first);
        let held = Arc::clone(&first); // a request still reading its rows
        drop(first);
        let second = outputs.free();
        assert!(
            !Arc::ptr_eq(&second, &held),
            "a held output is not handed out"
        );
        assert!(second.data.is_empty());
        drop(held); // the request is answered
        let third = outputs.free();
        assert_eq!(third.data.capacity(), 8, "the freed output is reused");
        assert_eq!(Arc::strong_count(&third), 1);
        outputs.keep(&third);
        outputs.release();
        assert_eq!(
            Arc::strong_count(&third),
            1,
            "released outputs are not kept"
        );
    }
}
