//! A cascaded job's later stages (see [`crate::ensemble::cascade`]): only the first stage's rows
//! are queued when the job is submitted; when the last pending row of an item's stage lands, the
//! item's stopping test runs right there (on the compute thread that brought the row), and only
//! if it fails are the next stage's rows of that item queued, batched with whatever else waits
//! in those models' lanes. An item never waits for another item's later stage to be queued, and
//! rows of stages never needed are never queued at all.
//!
//! A member of a later stage that failed or ran out of time is handled as any member is (see
//! `job`): its rows are missing, the item is voted without it under the ensemble's policy. A job
//! that is cancelled (the caller went away, its deadline passed) queues no further stage.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::job::{Job, Part, Progress, Row, Slot};
use super::Priority;
use crate::combine::Readied;
use crate::ensemble::{PredictError, StageTrace};

impl Job {
    /// Row `item` of some model of the item's current stage has landed (scores or missing):
    /// when it was the stage's last, runs the item's stopping test, and moves it to its next
    /// stage if it does not stop, adding `(model, item)` to `next` for each row to queue.
    pub(super) fn landed(
        &self,
        progress: &mut Progress,
        item: usize,
        next: &mut Vec<(usize, usize)>,
    ) {
        let Some(state) = progress.items.get_mut(item) else {
            return; // not cascaded
        };
        state.waiting -= 1;
        if state.waiting == 0 {
            self.advance(progress, item, next);
        }
    }

    /// Runs item `item`'s stopping tests, stage after stage, until one stops it or a stage has
    /// rows to wait for.
    fn advance(&self, progress: &mut Progress, item: usize, next: &mut Vec<(usize, usize)>) {
        let cascade = self
            .ensemble
            .cascade
            .as_ref()
            .expect("a cascaded job's ensemble has a cascade: this is a bug");
        let n = self.items.len();
        let models = self.ensemble.models.len();
        loop {
            // Nobody waits for this job any more: nothing more is queued for it.
            if self.is_cancelled() {
                return;
            }
            let stage = progress.items[item].stage;
            let s = &cascade.stages[stage];
            let row = |m: usize| match &progress.rows[m * n + item] {
                Slot::Done(row) => Some(row),
                _ => None,
            };
            let unready = Readied::default();
            let scores: Vec<&[f32]> = (0..models)
                .map(|m| row(m).map_or(&[][..], Row::scores))
                .collect();
            let readied: Vec<&Readied> = (0..models)
                .map(|m| row(m).map_or(&unready, |r| &r.readied))
                .collect();
            let present: Vec<bool> = (0..models).map(|m| row(m).is_some()).collect();
            let fewer;
            let members = if present == s.asked {
                s.members.as_ref()
            } else {
                // Some member of this stage or an earlier one failed: the test is the vote of
                // those that answered (a degraded vote).
                fewer = self.ensemble.combiner.members(&present);
                fewer.as_ref()
            };
            let (value, stop) =
                self.ensemble
                    .stage_test(stage, members, &self.items[item], &scores, &readied);
            drop((scores, readied));
            let state = &mut progress.items[item];
            if self.items[item].options.explain {
                state.trace.push(StageTrace {
                    stage: stage as u32 + 1,
                    test: s.test.as_str(),
                    value,
                    threshold: (stage < cascade.last()).then_some(s.threshold),
                    members: present.iter().filter(|&&p| p).count() as u32,
                    stopped: stop,
                });
            }
            if stop {
                return;
            }
            state.stage = stage + 1;
            let mut queued = 0;
            for &m in &cascade.stages[stage + 1].models {
                if self.given_up(m) {
                    // It ran out of its timeout_ms before its stage came: missing at once.
                    progress.rows[m * n + item] = Slot::Missing;
                    progress.missing[m].get_or_insert_with(|| {
                        "no answer within its timeout_ms (before its cascade stage ran)".into()
                    });
                } else {
                    progress.rows[m * n + item] = Slot::Pending;
                    next.push((m, item));
                    queued += 1;
                }
            }
            progress.items[item].waiting = queued;
            progress.remaining += queued;
            if queued > 0 {
                return;
            }
        }
    }

    /// Queues `next`'s rows (model, item) in their models' lanes, consecutive items of one
    /// model as one entry. Never called with the job's progress lock held.
    pub(super) fn queue_stages(self: &Arc<Self>, mut next: Vec<(usize, usize)>) {
        if next.is_empty() {
            return;
        }
        let requeue = self
            .cascade
            .as_ref()
            .expect("only a cascaded job has later stages: this is a bug");
        let Some(shared) = requeue.shared.upgrade() else {
            self.fail(PredictError {
                model: "(scheduler)".into(),
                reason: "the compute pool shut down before a cascade stage ran".into(),
            });
            return;
        };
        next.sort_unstable();
        let mut parts: BTreeMap<usize, Vec<Range<usize>>> = BTreeMap::new();
        for (m, item) in next {
            let ranges = parts.entry(m).or_default();
            match ranges.last_mut() {
                Some(r) if r.end == item => r.end += 1,
                _ => ranges.push(item..item + 1),
            }
        }
        let now = Instant::now();
        let mut state = shared.state.lock().expect("scheduler lock");
        let tier = match requeue.priority {
            Priority::Normal => &mut state.normal,
            Priority::Low => &mut state.low,
        };
        for (m, ranges) in parts {
            let model = &self.ensemble.models[m];
            let lane = tier.lane(&model.runtime, model.spec.batch);
            for rows in ranges {
                let part = Part {
                    job: Arc::clone(self),
                    model: m,
                };
                tier.queues.push(lane, part, rows, now);
            }
        }
        state.report_depth();
        drop(state);
        shared.work.notify_all();
    }
}
