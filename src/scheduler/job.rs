//! One request on its way through the models: its items, the text each model reads, the scores
//! coming back from batches, and the reply sent when every model's rows are in, or known
//! missing.
//!
//! A row is *missing* when its model failed on it (an error, a panic, a wrong output) or did not
//! answer within its `timeout_ms` ([`Job::give_up_on_late`]). What a missing row does is the
//! ensemble's [`FailurePolicy`]: with `fail`, the request fails at once (its other rows are
//! dropped); with `degrade` (the default), each item is voted among the members that answered it
//! (`Combiner::members`, exactly as a manifest without the others) and says which are missing,
//! unless fewer than `min_members` (or a group's quorum) answered, which fails the request.
//! Raw scores (evaluation) never degrade: any failure fails them.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::state::Request;
use crate::combine::{Members, Readied};
use crate::ensemble::{
    Ensemble, FailurePolicy, ItemAnswer, MissingMember, ModelScores, PredictError, ValidItem,
};
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
    nanos: Vec<AtomicU64>,
    reply: Mutex<Option<Reply>>,
    /// The reply is answers (not raw scores): rows are readied for the vote as they come.
    wants_answers: bool,
    /// Nobody wants the answer any more (caller gone, or it failed): rows still queued are
    /// dropped.
    cancelled: AtomicBool,
    /// Per model: its rows are no longer wanted (it ran out of time): queued ones are dropped.
    given_up: Vec<AtomicBool>,
    /// Past it the request is not wanted: rows still queued are dropped, never computed.
    deadline: Option<Instant>,
}

/// Where each row stands, under one lock.
struct Progress {
    /// `[model][item]`, flattened.
    rows: Vec<Slot>,
    /// Rows still pending, over all models.
    remaining: usize,
    /// Per model: why its first missing row is missing.
    missing: Vec<Option<String>>,
}

/// One model's row for one item.
enum Slot {
    Pending,
    Done(Row),
    /// It failed, or its model ran out of time: the item is voted without it.
    Missing,
}

/// One model's scores for one item: a row of the output of the batch it ran in. The output is
/// shared by every request of that batch rather than copied out, row by row, into each.
struct Row {
    batch: Arc<Scores>,
    row: usize,
    /// When the job wants answers: what [`Ensemble::ready`] found (the row itself was readied
    /// in place before the output was shared).
    readied: Readied,
}

impl Row {
    fn scores(&self) -> &[f32] {
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
    ) -> Arc<Job> {
        let texts = ensemble
            .views
            .iter()
            .map(|fields| items.iter().map(|it| it.text(fields)).collect())
            .collect();
        let n = items.len();
        let models = ensemble.models.len();
        Arc::new(Job {
            texts,
            progress: Mutex::new(Progress {
                rows: (0..n * models).map(|_| Slot::Pending).collect(),
                remaining: n * models,
                missing: vec![None; models],
            }),
            nanos: (0..models).map(|_| AtomicU64::new(0)).collect(),
            wants_answers: matches!(reply, Reply::Answers(_)),
            reply: Mutex::new(Some(reply)),
            cancelled: AtomicBool::new(false),
            given_up: (0..models).map(|_| AtomicBool::new(false)).collect(),
            deadline,
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
        &self,
        model: usize,
        rows: Range<usize>,
        batch: &Arc<Scores>,
        first: usize,
        readied: ReadiedRows,
        nanos: u64,
    ) {
        self.nanos[model].fetch_add(nanos, Ordering::Relaxed);
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
                }
            }
            progress.settle(landed)
        };
        if done {
            self.finish();
        }
    }

    /// Model `model` has no scores for rows `rows` (`why`, in words); on a compute thread.
    pub fn member_failed(&self, model: usize, rows: Range<usize>, failure: Failure, why: String) {
        if self.mark_missing(model, rows, failure, why) {
            self.finish();
        }
    }

    /// Marks rows `rows` of `model` missing. With the ensemble's policy `degrade` the items go
    /// on without it; otherwise (or when the reply is raw scores) the request fails now. Returns
    /// whether that left nothing pending, in which case the caller must [`Job::finish`] it.
    fn mark_missing(
        &self,
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
        let mut progress = self.progress();
        progress.missing[model].get_or_insert(why);
        let n = self.items.len();
        let mut lost = 0;
        for slot in &mut progress.rows[model * n + rows.start..model * n + rows.end] {
            if matches!(slot, Slot::Pending) {
                *slot = Slot::Missing;
                lost += 1;
            }
        }
        progress.settle(lost)
    }

    /// Gives up on every model whose `timeout_ms`, counted from `admitted`, has passed by `now`
    /// and that still has rows pending: they become missing, and its queued rows are dropped.
    /// Returns whether that left nothing pending, in which case the caller must
    /// [`Job::finish`] it (off any async thread: finishing combines).
    pub fn give_up_on_late(&self, admitted: Instant, now: Instant) -> bool {
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

    fn progress(&self) -> MutexGuard<'_, Progress> {
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

    /// Sends the reply once nothing is pending: every item's answer (degraded where some of
    /// its members are missing), or every model's scores.
    pub fn finish(&self) {
        let Some(reply) = self.reply.lock().expect("reply lock").take() else {
            return; // already failed
        };
        let progress = std::mem::replace(
            &mut *self.progress(),
            Progress {
                rows: Vec::new(),
                remaining: 0,
                missing: Vec::new(),
            },
        );
        match reply {
            Reply::Answers(tx) => {
                let _ = tx.send(self.answers(&progress));
            }
            Reply::Scores(tx) => {
                let _ = tx.send(Ok(self.model_scores(&progress)));
            }
        }
    }

    /// Every item's answer; an item some members are missing from is voted among the others.
    fn answers(&self, progress: &Progress) -> Result<Vec<ItemAnswer>, PredictError> {
        let n = self.items.len();
        let models = self.ensemble.models.len();
        let unready = Readied::default();
        let row = |m: usize, i: usize| match &progress.rows[m * n + i] {
            Slot::Done(row) => Some(row),
            _ => None,
        };
        // Items missing the same members share one seating.
        let mut seated: HashMap<Vec<bool>, Arc<Members>> = HashMap::new();
        let mut answers = Vec::with_capacity(n);
        for (i, item) in self.items.iter().enumerate() {
            let scores: Vec<&[f32]> = (0..models)
                .map(|m| row(m, i).map_or(&[][..], Row::scores))
                .collect();
            let readied: Vec<&Readied> = (0..models)
                .map(|m| row(m, i).map_or(&unready, |r| &r.readied))
                .collect();
            let present: Vec<bool> = (0..models).map(|m| row(m, i).is_some()).collect();
            if present.iter().all(|&p| p) {
                answers.push(self.ensemble.combine_readied(item, &scores, &readied));
                continue;
            }
            let members = match seated.get(&present) {
                Some(members) => Arc::clone(members),
                None => {
                    let members = Arc::new(self.seat(&present, progress)?);
                    seated.insert(present.clone(), Arc::clone(&members));
                    members
                }
            };
            let missing = (0..models)
                .filter(|&m| !present[m])
                .map(|m| MissingMember {
                    model: self.ensemble.models[m].spec.name.clone(),
                    reason: progress.missing[m].clone().unwrap_or_default(),
                })
                .collect();
            let answer = self
                .ensemble
                .combine_readied_among(&members, item, &scores, &readied, missing);
            telemetry::degraded_answer();
            answers.push(answer);
        }
        Ok(answers)
    }

    /// The members of an item's vote, if enough of them answered (`min_members`, `[quorum]`).
    fn seat(&self, present: &[bool], progress: &Progress) -> Result<Members, PredictError> {
        let e = &self.ensemble;
        let policy: &FailurePolicy = &e.failure;
        let voting = |m: usize| present[m] && e.models[m].spec.weight > 0.0;
        let answered = (0..present.len()).filter(|&m| voting(m)).count();
        let first_missing = || {
            let m = (0..present.len()).find(|&m| !present[m]).unwrap_or(0);
            (
                e.models[m].spec.name.clone(),
                progress.missing[m].clone().unwrap_or_default(),
            )
        };
        let short = |what: String| {
            let (model, why) = first_missing();
            PredictError {
                model,
                reason: format!("{why}; {what}"),
            }
        };
        if answered < policy.min_members {
            return Err(short(format!(
                "only {answered} voting members answered an item, fewer than min_members = {}",
                policy.min_members
            )));
        }
        for (group, &need) in &policy.quorum {
            let have = (0..present.len())
                .filter(|&m| voting(m) && e.models[m].spec.group.as_deref() == Some(group))
                .count();
            if have < need {
                return Err(short(format!(
                    "only {have} members of group {group:?} answered an item, fewer than its \
                     quorum of {need}"
                )));
            }
        }
        e.combiner
            .members(present)
            .ok_or_else(|| short("no voting member answered an item".to_owned()))
    }

    /// Every model's scores (all present: raw scores never degrade).
    fn model_scores(&self, progress: &Progress) -> ModelScores {
        let n = self.items.len();
        let scores = |m: usize, i: usize| match &progress.rows[m * n + i] {
            Slot::Done(row) => row.scores(),
            _ => &[][..],
        };
        ModelScores {
            scores: (0..self.ensemble.models.len())
                .map(|m| {
                    let cols = self.ensemble.models[m].label_ids.len();
                    let mut own = Scores::default();
                    own.reset(n, cols);
                    for i in 0..n {
                        let row = scores(m, i);
                        if row.len() == cols {
                            own.row_mut(i).copy_from_slice(row);
                        }
                    }
                    own
                })
                .collect(),
            seconds: self
                .nanos
                .iter()
                .map(|n| n.load(Ordering::Relaxed) as f64 / 1e9)
                .collect(),
        }
    }
}

impl Progress {
    /// `n` rows left pending; whether none is left now.
    fn settle(&mut self, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        self.remaining -= n;
        self.remaining == 0
    }
}

/// The caller's end of a submitted request: await it (or [`Ticket::wait`] outside async code).
/// Dropping it cancels the request: rows still queued are not run.
pub struct Ticket<T> {
    pub(crate) rx: oneshot::Receiver<Result<T, PredictError>>,
    pub(crate) job: Arc<Job>,
}

impl<T> Ticket<T> {
    /// Awaits the answer, going on without each model that has not answered within its
    /// `timeout_ms` counted from `admitted`: its items are voted without it (see the module's
    /// docs). Without timeouts in the manifest this is awaiting the ticket.
    pub async fn within_member_timeouts(mut self, admitted: Instant) -> Result<T, PredictError> {
        for at in self.job.member_deadlines(admitted) {
            tokio::select! {
                biased;
                answer = &mut self => return answer,
                () = tokio::time::sleep_until(at.into()) => {
                    if self.job.give_up_on_late(admitted, Instant::now()) {
                        // Finishing combines: not on this async thread.
                        let job = Arc::clone(&self.job);
                        let _ = tokio::task::spawn_blocking(move || job.finish()).await;
                    }
                }
            }
        }
        (&mut self).await
    }

    /// Blocks until the answer is there. Not for async code, nor for compute threads.
    pub fn wait(mut self) -> Result<T, PredictError> {
        let rx = std::mem::replace(&mut self.rx, oneshot::channel().1);
        rx.blocking_recv().unwrap_or_else(|_| Err(dropped()))
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T, PredictError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(dropped())))
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        self.job.cancel();
    }
}

fn dropped() -> PredictError {
    PredictError {
        model: "(scheduler)".into(),
        reason: "the request was dropped before it was answered: this is a bug".into(),
    }
}
