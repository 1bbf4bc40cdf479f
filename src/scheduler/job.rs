//! One request on its way through the models: its items, the text each model reads, the scores
//! coming back from batches, and the reply sent when the last model's rows are in.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::state::Request;
use crate::combine::Readied;
use crate::ensemble::{Ensemble, ItemAnswer, ModelScores, PredictError, ValidItem};
use crate::runtime::Scores;

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
    /// `[model][item]`, flattened: each model's row for each item, filled as batches come back.
    rows: Mutex<Vec<Option<Row>>>,
    /// Per model: its share of the run time of the batches it took part in.
    nanos: Vec<AtomicU64>,
    /// Rows not yet back, over all models.
    remaining: AtomicUsize,
    reply: Mutex<Option<Reply>>,
    /// The reply is answers (not raw scores): rows are readied for the vote as they come.
    wants_answers: bool,
    /// Nobody wants the answer any more (caller gone, or a model failed): rows still queued
    /// are dropped.
    cancelled: AtomicBool,
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
        self.job.cancelled.load(Ordering::Relaxed)
    }
}

impl Job {
    pub fn new(ensemble: Arc<Ensemble>, items: Vec<ValidItem>, reply: Reply) -> Arc<Job> {
        let texts = ensemble
            .views
            .iter()
            .map(|fields| items.iter().map(|it| it.text(fields)).collect())
            .collect();
        let n = items.len();
        let models = ensemble.models.len();
        Arc::new(Job {
            texts,
            rows: Mutex::new((0..n * models).map(|_| None).collect()),
            nanos: (0..models).map(|_| AtomicU64::new(0)).collect(),
            remaining: AtomicUsize::new(n * models),
            wants_answers: matches!(reply, Reply::Answers(_)),
            reply: Mutex::new(Some(reply)),
            cancelled: AtomicBool::new(false),
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
        {
            let mut own = self.rows.lock().expect("rows lock");
            let n = self.items.len();
            let mut readied = readied.into_iter();
            for (i, row) in rows.clone().enumerate() {
                own[model * n + row] = Some(Row {
                    batch: Arc::clone(batch),
                    row: first + i,
                    readied: readied.next().unwrap_or_default(),
                });
            }
        }
        self.nanos[model].fetch_add(nanos, Ordering::Relaxed);
        if self.remaining.fetch_sub(rows.len(), Ordering::AcqRel) == rows.len() {
            self.finish();
        }
    }

    /// A model failed: the request fails now, and its other rows are dropped.
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

    fn finish(&self) {
        let Some(reply) = self.reply.lock().expect("reply lock").take() else {
            return; // already failed
        };
        let rows = std::mem::take(&mut *self.rows.lock().expect("rows lock"));
        let n = self.items.len();
        // Every row is in once `remaining` is 0; a missing one would count as zeros.
        let row = |m: usize, i: usize| rows[m * n + i].as_ref();
        let scores = |m: usize, i: usize| row(m, i).map_or(&[][..], Row::scores);
        let models = self.ensemble.models.len();
        match reply {
            Reply::Answers(tx) => {
                let unready = Readied::default();
                let answers = self
                    .items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let scores: Vec<&[f32]> = (0..models).map(|m| scores(m, i)).collect();
                        let readied: Vec<&Readied> = (0..models)
                            .map(|m| row(m, i).map_or(&unready, |r| &r.readied))
                            .collect();
                        self.ensemble.combine_readied(item, &scores, &readied)
                    })
                    .collect();
                let _ = tx.send(Ok(answers));
            }
            Reply::Scores(tx) => {
                let _ = tx.send(Ok(ModelScores {
                    scores: (0..models)
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
                }));
            }
        }
    }
}

/// The caller's end of a submitted request: await it (or [`Ticket::wait`] outside async code).
/// Dropping it cancels the request: rows still queued are not run.
pub struct Ticket<T> {
    pub(crate) rx: oneshot::Receiver<Result<T, PredictError>>,
    pub(crate) job: Arc<Job>,
}

impl<T> Ticket<T> {
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
