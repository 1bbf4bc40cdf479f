//! One request on its way through the models: its items, the text each model reads, the scores
//! coming back from batches, and the reply sent when the last model's rows are in.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

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
    /// Per model: its rows, filled as batches come back.
    rows: Vec<Mutex<ModelRows>>,
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

/// One model's scores for a job's items, as its batches deliver them.
#[derive(Default)]
struct ModelRows {
    /// `[items, model labels]`; allocated by the first delivery, on a compute thread.
    scores: Scores,
    /// Per item, when the job wants answers: what [`Ensemble::ready`] found.
    readied: Vec<Readied>,
}

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
            rows: (0..models).map(|_| Mutex::default()).collect(),
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

    /// Stores model `model`'s scores for rows `rows` (`scores` holds exactly those rows) and its
    /// share of the batch's run time; the thread that brings the last rows replies. When the job
    /// wants answers, each row is readied for the vote here, while other models still run.
    pub fn deliver(&self, model: usize, rows: Range<usize>, scores: &[f32], nanos: u64) {
        {
            let mut own = self.rows[model].lock().expect("rows lock");
            let own = &mut *own;
            let n = self.items.len();
            let cols = self.ensemble.models[model].label_ids.len();
            if rows == (0..n) {
                // Every row at once (always so for one-item requests): take them as they are.
                own.scores.rows = n;
                own.scores.cols = cols;
                own.scores.data.clear();
                own.scores.data.extend_from_slice(scores);
            } else {
                if own.scores.data.len() != n * cols {
                    own.scores.reset(n, cols);
                }
                own.scores.data[rows.start * cols..rows.end * cols].copy_from_slice(scores);
            }
            if self.wants_answers {
                own.readied.resize_with(n, Readied::default);
                for row in rows.clone() {
                    let scores = own.scores.row_mut(row);
                    own.readied[row] = self.ensemble.ready(model, &self.items[row], scores);
                }
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
        let rows: Vec<ModelRows> = self
            .rows
            .iter()
            .map(|r| std::mem::take(&mut *r.lock().expect("rows lock")))
            .collect();
        match reply {
            Reply::Answers(tx) => {
                let answers = self
                    .items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let scores: Vec<&[f32]> = rows.iter().map(|r| r.scores.row(i)).collect();
                        let readied: Vec<&Readied> = rows.iter().map(|r| &r.readied[i]).collect();
                        self.ensemble.combine_readied(item, &scores, &readied)
                    })
                    .collect();
                let _ = tx.send(Ok(answers));
            }
            Reply::Scores(tx) => {
                let _ = tx.send(Ok(ModelScores {
                    scores: rows.into_iter().map(|r| r.scores).collect(),
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
