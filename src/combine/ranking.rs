//! One item's ranking while the rules run: the voted score of every label, plus at most one
//! *pinned* node that ranks first whatever its score (a forced label, a fallback, a backoff
//! parent), and what applying a rule did to it ([`Outcome`]).
//!
//! Labels that cannot be answered carry a negative score, so the final selection only has to look
//! at one array: [`UNCOVERED`] for labels no model covers (they can still be forced or be a
//! fallback), [`EXCLUDED`] for labels a rule or the request removed (nothing brings them back).

use super::select::Entry;
use super::taxonomy::Taxonomy;

/// Score of a label no voting model covers.
pub(crate) const UNCOVERED: f32 = -1.0;
/// Score of a label removed by a rule or by the request's candidates.
pub(crate) const EXCLUDED: f32 = f32::NEG_INFINITY;

/// What applying one rule did.
pub(crate) enum Outcome {
    Unchanged,
    Fired,
    /// Fired and decided the answer (a fallback): no later rule runs.
    Final,
    /// Fired and emptied the answer; `about` is the label it refused, if any.
    Abstain {
        reason: String,
        about: Option<u32>,
    },
}

pub(crate) struct Ranking<'s> {
    pub scores: &'s mut [f32],
    /// Secondary key for equal scores (hard and rank vote), if the strategy has one.
    pub tiebreak: Option<&'s [f32]>,
    pub pinned: Option<Entry>,
}

impl Ranking<'_> {
    /// The current answer: the pinned node, else the best answerable label (score, then tiebreak,
    /// then lower id).
    pub(crate) fn best(&self) -> Option<Entry> {
        if self.pinned.is_some() {
            return self.pinned;
        }
        let tb = |l: usize| self.tiebreak.map_or(0.0, |t| t[l]);
        let mut best: Option<(usize, f32)> = None;
        for (l, &s) in self.scores.iter().enumerate() {
            if s < 0.0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((b, bs)) => s > bs || (s == bs && tb(l) > tb(b)),
            };
            if better {
                best = Some((l, s));
            }
        }
        best.map(|(l, s)| Entry {
            score: s,
            label: l as u32,
        })
    }

    /// Whether a rule or the request removed `label` (never true of a taxonomy parent).
    pub(crate) fn is_excluded(&self, label: u32) -> bool {
        self.scores
            .get(label as usize)
            .is_some_and(|&s| s == EXCLUDED)
    }

    /// The label's voted score, 0 if it has none.
    pub(crate) fn score_of(&self, label: u32) -> f32 {
        self.scores.get(label as usize).map_or(0.0, |&s| s.max(0.0))
    }

    /// Never answer `label` (unpins it if pinned).
    pub(crate) fn exclude(&mut self, label: u32) {
        if let Some(s) = self.scores.get_mut(label as usize) {
            *s = EXCLUDED;
        }
        if self.pinned.is_some_and(|p| p.label == label) {
            self.pinned = None;
        }
    }

    /// Multiplies the label's score (and its pinned score) by `factor`.
    pub(crate) fn multiply(&mut self, label: u32, factor: f32) {
        if let Some(s) = self.scores.get_mut(label as usize).filter(|s| **s > 0.0) {
            *s = (*s * factor).min(f32::MAX);
        }
        if let Some(p) = self.pinned.as_mut().filter(|p| p.label == label) {
            p.score = (p.score * factor).min(f32::MAX);
        }
    }

    /// Answers `label` first with score 1, unless it is excluded.
    pub(crate) fn force(&mut self, label: u32) {
        if !self.is_excluded(label) {
            self.pin(label, 1.0);
        }
    }

    pub(crate) fn pin(&mut self, node: u32, score: f32) {
        self.pinned = Some(Entry { score, label: node });
    }

    /// Sum of the answerable scores of `node` and every label below it.
    pub(crate) fn sum_under(&self, node: u32, taxonomy: &Taxonomy) -> f32 {
        let own = self.score_of(node);
        let below: f32 = taxonomy.below(node).map(|l| self.score_of(l)).sum();
        (own + below).min(f32::MAX)
    }

    /// A failed test: answer `fallback` (if it may be answered) and stop, or abstain.
    pub(crate) fn fall_back<'n>(
        &mut self,
        fallback: Option<u32>,
        reason: String,
        about: Option<u32>,
        name: impl Fn(u32) -> &'n str,
    ) -> Outcome {
        match fallback {
            Some(f) if !self.is_excluded(f) => {
                self.pin(f, self.score_of(f));
                Outcome::Final
            }
            Some(f) => Outcome::Abstain {
                reason: format!("{reason}; fallback {:?} is excluded", name(f)),
                about,
            },
            None => Outcome::Abstain { reason, about },
        }
    }
}
