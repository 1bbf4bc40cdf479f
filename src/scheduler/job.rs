//! One request on its way through the models: its items, the text each model reads, the scores
//! coming back from batches, and the reply sent when every model's rows are in, or known
//! missing.
//!
//! A row is *missing* when its model failed on it (an error, a panic, a wrong output) or did not
//! answer within its `timeout_ms` ([`Job::give_up_on_late`]). What a missing row does is the
//! ensemble's [`FailurePolicy`](crate::ensemble::FailurePolicy): with `fail`, the request fails at once (its other rows are
//! dropped); with `degrade` (the default), each item is voted among the members that answered it
//! (`Combiner::members`, exactly as a manifest without the others) and says which are missing,
//! unless fewer than `min_members` (or a group's quorum) answered, which fails the request.
//! Raw scores (evaluation) never degrade: any failure fails them.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::state::Request;
use crate::combine::Readied;
use crate::ensemble::{Ensemble, ItemAnswer, ModelScores, PredictError, ValidItem};
use crate::runtime::Scores;
use crate::telemetry;

/// What the caller wants back.
pub(crate) enum Reply {
    /// Combined answers, one per item.
    Answers(oneshot::Sender<Result<Vec<ItemAnswer>, PredictError>>),
    /// Every model's own scores (for evaluating models one by one).
    Scores(oneshot::Sender<Result<ModelScores, PredictError>>),
}

pub(crate) struct Job {
    pub ensemble: Arc<Ensemble>,
    pub items: Vec<ValidItem>,
    /// Per [`Ensemble::views`]: each item's text for the models reading that view.
    texts: Vec<Vec<String>>,
    progress: Mutex<Progress>,
    /// Per model: its share of the run time of the batches it took part in.
    pub(super) nanos: Vec<AtomicU64>,
    pub(super) reply: Mutex<Option<Reply>>,
    /// The reply is answers (not raw scores): rows are readied for the vote as they come.
    wants_answers: bool,
    /// Nobody wants the answer any more (caller gone, or it failed): rows still queued are
    /// dropped.
    cancelled: AtomicBool,
    /// Per model: its rows are no longer wanted (it ran out of time): queued ones are dropped.
    given_up: Vec<AtomicBool>,
    /// Past it the request is not wanted: rows still queued are dropped, never computed.
    deadline: Option<Instant>,
    /// Where a cascade's later stages are queued, when the job runs as a cascade (see
    /// `scheduler::cascade`): only the first stage is queued at first.
    pub(super) cascade: Option<Requeue>,
    /// A served request: its member runs count in the ensemble's statistics (the shadow's,
    /// the monitor's and the deploy gate's do not).
    pub(super) counted: bool,
}

/// How a cascaded job queues its later stages: the pool it came from, at its priority.
pub(crate) struct Requeue {
    pub shared: std::sync::Weak<super::Shared>,
    pub priority: super::Priority,
}

/// Where each row stands, under one lock.
pub(super) struct Progress {
    /// `[model][item]`, flattened.
    pub rows: Vec<Slot>,
    /// Rows still pending, over all models.
    pub remaining: usize,
    /// Per model: why its first missing row is missing.
    pub missing: Vec<Option<String>>,
    /// A cascade's progress, per item (empty when the job is not cascaded).
    pub items: Vec<ItemStage>,
}

/// Where one item of a cascaded job stands.
#[derive(Default, Clone)]
pub(super) struct ItemStage {
    /// The stage it runs (or answered at).
    pub stage: usize,
    /// Its rows of that stage still pending.
    pub waiting: usize,
    /// With explain: every stage it went through.
    pub trace: Vec<crate::ensemble::StageTrace>,
}

/// One model's row for one item.
pub(super) enum Slot {
    Pending,
    Done(Row),
    /// It failed, or its model ran out of time: the item is voted without it.
    Missing,
    /// A cascade's later stage that has not run (and, once the item stopped, never will).
    Skipped,
}

/// One model's scores for one item: a row of the output of the batch it ran in. The output is
/// shared by every request of that batch rather than copied out, row by row, into each.
pub(super) struct Row {
    batch: Arc<Scores>,
    row: usize,
    /// When the job wants answers: what [`Ensemble::ready`] found (the row itself was readied
    /// in place before the output was shared).
    pub readied: Readied,
}

impl Row {
    pub fn scores(&self) -> &[f32] {
        self.batch.row(self.row)
    }
}

/// What [`Job::ready`] found for each row of one batch entry (usually one row: held inline).
pub(crate) type ReadiedRows = SmallVec<[Readied; 1]>;

/// A job's rows for one of its models, as the queues hold them.
#[derive(Clone)]
pub(crate) struct Part {
    pub job: Arc<Job>,
    pub model: usize,
}

impl Request for Part {
    fn cancelled(&self) -> bool {
        let job = &self.job;
        job.cancelled.load(Ordering::Relaxed)
            || job.given_up[self.model].load(Ordering::Relaxed)
            || job.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// What made a model's rows missing, for the reason an answer gives and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The model returned an error or a wrong output.
    Error,
    /// It panicked (while scoring, or while its scores were readied).
    Panic,
    /// It did not answer within its `timeout_ms`.
    Timeout,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Error => "error",
            Failure::Panic => "panic",
            Failure::Timeout => "timeout",
        }
    }
}

impl Job {
    pub fn new(
        ensemble: Arc<Ensemble>,
        items: Vec<ValidItem>,
        reply: Reply,
        deadline: Option<Instant>,
        requeue: Option<Requeue>,
        counted: bool,
    ) -> Arc<Job> {
        let texts = ensemble
            .views
            .iter()
            .map(|fields| items.iter().map(|it| it.text(fields)).collect())
            .collect();
        let n = items.len();
        let models = ensemble.models.len();
        let wants_answers = matches!(reply, Reply::Answers(_));
        // A cascade runs when the ensemble has one, the caller wants answers, and no item asks
        // for the full ensemble; then only the first stage's rows are pending at first.
        let first = ensemble
            .cascade
            .as_ref()
            .filter(|_| wants_answers && items.iter().all(|i| i.options.cascade))
            .filter(|_| requeue.is_some())
            .map(|c| &c.stages[0]);
        let cascade = first.and(requeue);
        let pending = |m: usize| first.is_none_or(|s| s.models.contains(&m));
        let per_item = (0..models).filter(|&m| pending(m)).count();
        let rows = (0..models)
            .flat_map(|m| {
                let slot = move || {
                    if pending(m) {
                        Slot::Pending
                    } else {
                        Slot::Skipped
                    }
                };
                (0..n).map(move |_| slot())
            })
            .collect();
        let stages = match first {
            Some(_) => vec![
                ItemStage {
                    stage: 0,
                    waiting: per_item,
                    trace: Vec::new(),
                };
                n
            ],
            None => Vec::new(),
        };
        Arc::new(Job {
            texts,
            progress: Mutex::new(Progress {
                rows,
                remaining: n * per_item,
                missing: vec![None; models],
                items: stages,
            }),
            nanos: (0..models).map(|_| AtomicU64::new(0)).collect(),
            wants_answers,
            reply: Mutex::new(Some(reply)),
            cancelled: AtomicBool::new(false),
            given_up: (0..models).map(|_| AtomicBool::new(false)).collect(),
            deadline,
            cascade,
            counted,
            ensemble,
            items,
        })
    }

    /// Row `row`'s text for model `model`.
    pub fn text(&self, model: usize, row: usize) -> &str {
        &self.texts[self.ensemble.models[model].view][row]
    }

    /// Appends rows `rows` of numeric field `field` to `data` (zeros where absent: validation
    /// already refused a missing or misshapen field).
    pub fn features(&self, field: usize, width: usize, rows: Range<usize>, data: &mut Vec<f32>) {
        for item in &self.items[rows] {
            item.push_features(field, width, data);
        }
    }

    /// Readies rows `rows` of model `model` for the vote, in place in `scores` (which holds
    /// exactly those rows), when the job wants answers; runs on the compute thread before the
    /// batch's output is shared, while other models still run.
    pub fn ready(&self, model: usize, rows: Range<usize>, scores: &mut [f32]) -> ReadiedRows {
        if !self.wants_answers {
            return ReadiedRows::new();
        }
        let cols = self.ensemble.models[model].label_ids.len();
        rows.zip(scores.chunks_exact_mut(cols))
            .map(|(row, scores)| self.ensemble.ready(model, &self.items[row], scores))
            .collect()
    }

    /// Hands model `model`'s scores for rows `rows` (rows `first..` of `batch`, readied as
    /// [`Job::ready`] returned) and its share of the batch's run time; the thread that brings
    /// the last rows replies.
    pub fn deliver(
        self: &Arc<Self>,
        model: usize,
        rows: Range<usize>,
        batch: &Arc<Scores>,
        first: usize,
        readied: ReadiedRows,
        nanos: u64,
    ) {
        self.nanos[model].fetch_add(nanos, Ordering::Relaxed);
        let mut next = Vec::new();
        let done = {
            let mut progress = self.progress();
            let n = self.items.len();
            let mut readied = readied.into_iter();
            let mut landed = 0;
            for (i, row) in rows.enumerate() {
                let slot = &mut progress.rows[model * n + row];
                let readied = readied.next().unwrap_or_default();
                // A row given up on (its model ran out of time) stays missing.
                if matches!(slot, Slot::Pending) {
                    *slot = Slot::Done(Row {
                        batch: Arc::clone(batch),
                        row: first + i,
                        readied,
                    });
                    landed += 1;
                    self.landed(&mut progress, row, &mut next);
                }
            }
            progress.settle(landed)
        };
        self.queue_stages(next);
        if done {
            self.finish();
        }
    }

    /// Model `model` has no scores for rows `rows` (`why`, in words); on a compute thread.
    pub fn member_failed(
        self: &Arc<Self>,
        model: usize,
        rows: Range<usize>,
        failure: Failure,
        why: String,
    ) {
        if self.mark_missing(model, rows, failure, why) {
            self.finish();
        }
    }

    /// Marks rows `rows` of `model` missing. With the ensemble's policy `degrade` the items go
    /// on without it; otherwise (or when the reply is raw scores) the request fails now. Returns
    /// whether that left nothing pending, in which case the caller must [`Job::finish`] it.
    fn mark_missing(
        self: &Arc<Self>,
        model: usize,
        rows: Range<usize>,
        failure: Failure,
        why: String,
    ) -> bool {
        let name = &self.ensemble.models[model].spec.name;
        telemetry::member_failed(name, failure.as_str());
        if !(self.wants_answers && self.ensemble.failure.degrade) {
            self.fail(PredictError {
                model: name.clone(),
                reason: why,
            });
            return false;
        }
        let mut next = Vec::new();
        let done = {
            let mut progress = self.progress();
            progress.missing[model].get_or_insert(why);
            let n = self.items.len();
            let mut lost = 0;
            for row in rows {
                let slot = &mut progress.rows[model * n + row];
                if matches!(slot, Slot::Pending) {
                    *slot = Slot::Missing;
                    lost += 1;
                    self.landed(&mut progress, row, &mut next);
                }
            }
            progress.settle(lost)
        };
        self.queue_stages(next);
        done
    }

    /// Gives up on every model whose `timeout_ms`, counted from `admitted`, has passed by `now`
    /// and that still has rows pending: they become missing, and its queued rows are dropped.
    /// Returns whether that left nothing pending, in which case the caller must
    /// [`Job::finish`] it (off any async thread: finishing combines).
    pub fn give_up_on_late(self: &Arc<Self>, admitted: Instant, now: Instant) -> bool {
        let n = self.items.len();
        let mut done = false;
        for (m, model) in self.ensemble.models.iter().enumerate() {
            let Some(timeout) = model.spec.timeout.filter(|&t| admitted + t <= now) else {
                continue;
            };
            if self.given_up[m].swap(true, Ordering::Relaxed) {
                continue;
            }
            let why = format!(
                "no answer within its timeout_ms of {} ms",
                timeout.as_millis()
            );
            let pending = {
                let progress = self.progress();
                (0..n).any(|i| matches!(progress.rows[m * n + i], Slot::Pending))
            };
            if pending {
                done |= self.mark_missing(m, 0..n, Failure::Timeout, why);
            }
        }
        done
    }

    /// The moments, counted from `admitted`, at which some model's `timeout_ms` runs out.
    pub fn member_deadlines(&self, admitted: Instant) -> Vec<Instant> {
        let mut at: Vec<Instant> = self
            .ensemble
            .models
            .iter()
            .filter_map(|m| m.spec.timeout)
            .map(|t| admitted + t)
            .collect();
        at.sort();
        at.dedup();
        at
    }

    /// Whether model `model`'s rows are queued when the job is submitted (a cascade's later
    /// stages are not).
    pub(super) fn queued_at_start(&self, model: usize) -> bool {
        match (&self.cascade, &self.ensemble.cascade) {
            (Some(_), Some(c)) => c.stages[0].models.contains(&model),
            _ => true,
        }
    }

    pub(super) fn given_up(&self, model: usize) -> bool {
        self.given_up[model].load(Ordering::Relaxed)
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    pub(super) fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().expect("progress lock")
    }

    /// The request fails now, and its other rows are dropped.
    pub fn fail(&self, error: PredictError) {
        self.cancelled.store(true, Ordering::Relaxed);
        match self.reply.lock().expect("reply lock").take() {
            Some(Reply::Answers(tx)) => {
                let _ = tx.send(Err(error));
            }
            Some(Reply::Scores(tx)) => {
                let _ = tx.send(Err(error));
            }
            None => {}
        }
    }

    /// A request with no rows (or an ensemble without models) is answered at once.
    pub fn deliver_nothing(&self) {
        self.finish();
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Progress {
    /// `n` rows left pending; whether none is left now.
    pub(super) fn settle(&mut self, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        self.remaining -= n;
        self.remaining == 0
    }
}
