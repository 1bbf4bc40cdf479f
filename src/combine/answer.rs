//! What one item's combination returns: the ranked predictions, the rules that fired, how many
//! models agree, and (when asked) each model's part in it.

use super::mathf::clean;
use super::seating::Pools;
use super::select::{Ids, TopLists};
use super::strategy::Input;
use super::Combiner;

/// The combined answer for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Best first. Labels are label-space ids, except parents answered by taxonomy backoff that
    /// are not labels themselves: name them with [`Combiner::label_name`].
    pub predictions: Vec<Prediction>,
    /// Names of the rules that fired, in order.
    pub rules_fired: Vec<String>,
    /// Models whose top `vote.agreement_k` holds the first prediction (or, for a taxonomy parent,
    /// a label under it); when abstaining, the label the rule refused.
    pub agreement: u32,
    /// Why the answer is empty, when it is (the abstaining rule's reason).
    pub abstained: Option<String>,
    pub explanation: Option<Vec<ModelContribution>>,
}

/// One ranked label and its score (for a soft vote, a probability).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub label: u32,
    pub score: f32,
}

/// One model's part in an answer, for `explain`. Only models with a positive weight are listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelContribution {
    /// Index into the models given to [`Combiner::new`].
    pub model: usize,
    /// The model's weight as configured.
    pub weight: f32,
    /// Its own best labels (after temperature), at most `top_k`.
    pub top: Vec<Prediction>,
    /// Per final prediction, its term in the vote of its pool (its group, or the ensemble): the
    /// part of the pool's score it added for soft, hard and rank; its part of the log-score above
    /// the floor for geometric; its candidate score for max. Parents: summed over their labels.
    pub contribution: Vec<Prediction>,
}

const NONE: u32 = u32::MAX;

/// Scratch for [`Combiner::explain`]: `slots` is label-space wide, all `NONE` between calls;
/// `needed` and `values` are reused.
pub(crate) struct TermBuffers<'s> {
    pub slots: &'s mut Vec<u32>,
    pub needed: &'s mut Vec<u32>,
    pub values: &'s mut Vec<f32>,
}

impl Combiner {
    /// Models whose top `agreement_k` holds `node` or a label below it.
    pub(crate) fn agreement(&self, node: u32, tops: &TopLists) -> u32 {
        let agrees = |m: usize| {
            let top = tops.get(m);
            top[..top.len().min(self.agreement_k)]
                .iter()
                .any(|e| self.taxonomy.covers(node, e.label))
        };
        (0..self.models.len()).filter(|&m| agrees(m)).count() as u32
    }

    /// `input(m)` gives model m's scores and top list.
    pub(crate) fn explain<'a>(
        &self,
        pools: &Pools,
        predictions: &[Prediction],
        top_k: usize,
        input: &impl Fn(usize) -> Input<'a>,
        buffers: TermBuffers<'_>,
    ) -> Vec<ModelContribution> {
        let TermBuffers {
            slots,
            needed,
            values,
        } = buffers;
        // The labels whose scores the terms need: each predicted label, or the labels under a
        // predicted parent; `slots[label]` is the label's place in `needed`.
        slots.resize(self.labels, NONE);
        needed.clear();
        for p in predictions {
            let labels = (p.label as usize) < self.labels;
            let under = self.taxonomy.below(p.label).filter(|_| !labels);
            for l in [p.label].into_iter().filter(|_| labels).chain(under) {
                if slots[l as usize] == NONE {
                    slots[l as usize] = needed.len() as u32;
                    needed.push(l);
                }
            }
        }
        let mut out = Vec::with_capacity(self.models.len());
        for (m, plan) in self.models.iter().enumerate() {
            // A model that did not take part (a subset's vote) has no part to explain.
            let Some(seat) = pools.seats[m] else { continue };
            let i = input(m);
            values.clear();
            values.resize(needed.len(), 0.0);
            match i.ids {
                Ids::Dense => {
                    for (v, &l) in values.iter_mut().zip(needed.iter()) {
                        *v = i.scores.get(l as usize).map_or(0.0, |&s| clean(s));
                    }
                }
                Ids::Mapped(ids) => {
                    for (&l, &s) in ids.iter().zip(i.scores) {
                        if let Some(&slot) = slots.get(l as usize).filter(|&&s| s != NONE) {
                            values[slot as usize] = clean(s);
                        }
                    }
                }
            }
            let pool = seat.home.map_or(&pools.outer, |g| &pools.groups[g]);
            let term = |l: u32| {
                let rank = i.top.iter().position(|e| e.label == l);
                let score = values[slots[l as usize] as usize];
                pool.term(seat.weight, l, score, rank)
            };
            let contribution = predictions
                .iter()
                .map(|p| Prediction {
                    label: p.label,
                    score: if (p.label as usize) < self.labels {
                        term(p.label)
                    } else {
                        self.taxonomy.below(p.label).map(term).sum()
                    },
                })
                .collect();
            let top = i.top.iter().take(top_k).map(|e| Prediction {
                label: e.label,
                score: e.score,
            });
            out.push(ModelContribution {
                model: plan.index,
                weight: plan.weight,
                top: top.collect(),
                contribution,
            });
        }
        for &l in needed.iter() {
            slots[l as usize] = NONE;
        }
        out
    }
}
