//! A finished job's reply: every item's answer, voted among the members that answered it when
//! some are missing (degraded, under the ensemble's [`FailurePolicy`]), or every model's scores.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::job::{Job, Progress, Reply, Row, Slot};
use crate::combine::{Members, Readied};
use crate::ensemble::{
    CascadeAnswer, FailurePolicy, ItemAnswer, MissingMember, ModelScores, PredictError,
};
use crate::runtime::Scores;
use crate::telemetry;

impl Job {
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
                items: Vec::new(),
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
            // A cascade's stages not run are not asked: they are not missing.
            let asked: Vec<bool> = (0..models)
                .map(|m| !matches!(progress.rows[m * n + i], Slot::Skipped))
                .collect();
            let cascade = self.cascade_answer(progress, i, &asked);
            if present.iter().all(|&p| p) {
                let mut answer = self.ensemble.combine_readied(item, &scores, &readied);
                answer.cascade = cascade;
                answers.push(answer);
                continue;
            }
            if present == asked {
                // The cascade stopped early, every member asked answered: the vote of the
                // stages run, seated at load.
                let stopped = progress.items[i].stage;
                let c = self.ensemble.cascade.as_ref();
                let members = c
                    .and_then(|c| c.stages[stopped].members.as_ref())
                    .expect("a cascade stops early only where some member votes: this is a bug");
                let mut answer = self.ensemble.combine_readied_among(
                    members,
                    item,
                    &scores,
                    &readied,
                    Vec::new(),
                );
                answer.degraded = None;
                answer.cascade = cascade;
                answers.push(answer);
                continue;
            }
            let members = match seated.get(&present) {
                Some(members) => Arc::clone(members),
                None => {
                    let members = Arc::new(self.seat(&present, &asked, progress)?);
                    seated.insert(present.clone(), Arc::clone(&members));
                    members
                }
            };
            let missing = (0..models)
                .filter(|&m| asked[m] && !present[m])
                .map(|m| MissingMember {
                    model: self.ensemble.models[m].spec.name.clone(),
                    reason: progress.missing[m].clone().unwrap_or_default(),
                })
                .collect();
            let mut answer = self
                .ensemble
                .combine_readied_among(&members, item, &scores, &readied, missing);
            answer.cascade = cascade;
            telemetry::degraded_answer();
            answers.push(answer);
        }
        Ok(answers)
    }

    /// The members of an item's vote, if enough of them answered (`min_members`, `[quorum]`).
    fn seat(
        &self,
        present: &[bool],
        asked: &[bool],
        progress: &Progress,
    ) -> Result<Members, PredictError> {
        let e = &self.ensemble;
        let policy: &FailurePolicy = &e.failure;
        let voting = |m: usize| present[m] && e.models[m].spec.weight > 0.0;
        let answered = (0..present.len()).filter(|&m| voting(m)).count();
        let first_missing = || {
            let m = (0..present.len())
                .find(|&m| asked[m] && !present[m])
                .unwrap_or(0);
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

    /// Where item `i` of a cascaded job was answered (None when the job is not cascaded).
    fn cascade_answer(
        &self,
        progress: &Progress,
        i: usize,
        asked: &[bool],
    ) -> Option<CascadeAnswer> {
        let state = progress.items.get(i)?;
        let stages = self.ensemble.cascade.as_ref()?.stages.len();
        Some(CascadeAnswer {
            stage: state.stage as u32 + 1,
            stages: stages as u32,
            members_run: asked.iter().filter(|&&a| a).count() as u32,
            trace: state.trace.clone(),
        })
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
