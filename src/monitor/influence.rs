//! Members' influence over many items: each item's models' raw scores (as
//! [`ComputePool::score`](crate::scheduler::ComputePool::score) returns them) readied as the server
//! readies them, [`Combiner::influence`](crate::combine::Combiner::influence) on them, and the tallies per member that `lastmile
//! zombies` prints and the live monitor keeps over its window.

use serde::{Deserialize, Serialize};

use crate::combine::{Influence, Members, Readied, Scratch};
use crate::ensemble::{with_view, Ensemble, ModelScores, ValidItem};

/// Readies and analyses items one at a time, reusing its buffers.
#[derive(Default)]
pub struct Analyser {
    scratch: Scratch,
    rows: Vec<Vec<f32>>,
    readied: Vec<Readied>,
}

impl Analyser {
    /// Row `row` of `scores`, for `item`: every model's row readied in place (in this analyser's
    /// buffers: `scores` is not changed), then each member's influence.
    pub fn influence(
        &mut self,
        ensemble: &Ensemble,
        scores: &ModelScores,
        row: usize,
        item: &ValidItem,
    ) -> Influence {
        self.ready(ensemble, scores, row, item);
        self.influence_readied(ensemble, item)
    }

    /// [`Analyser::influence`] of the item last readied ([`Analyser::ready`]).
    pub fn influence_readied(&mut self, ensemble: &Ensemble, item: &ValidItem) -> Influence {
        let (rows, readied, scratch) = self.parts();
        with_view(item, |view| {
            ensemble.combiner.influence(view, &rows, &readied, scratch)
        })
    }

    /// For the item last readied: the first label without each member,
    /// by voting among the others (the definition the influence equals).
    pub fn reference(&mut self, ensemble: &Ensemble, item: &ValidItem) -> Vec<Option<u32>> {
        let (rows, readied, scratch) = self.parts();
        with_view(item, |view| {
            ensemble
                .combiner
                .influence_reference(view, &rows, &readied, scratch)
        })
    }

    /// For the item last readied: the first label of the vote among
    /// `members`.
    pub fn among(
        &mut self,
        ensemble: &Ensemble,
        members: &Members,
        item: &ValidItem,
    ) -> Option<u32> {
        let (rows, readied, scratch) = self.parts();
        with_view(item, |view| {
            let one = crate::combine::ItemView {
                top_k: 1,
                explain: false,
                ..*view
            };
            ensemble
                .combiner
                .combine_readied_among(members, &one, &rows, &readied, scratch)
                .predictions
                .first()
                .map(|p| p.label)
        })
    }

    /// For the item last readied: the value of `test` for the vote among `members`
    /// ([`Ensemble::test_value`], what a cascade's stage compares with its threshold).
    pub fn test_value(
        &mut self,
        ensemble: &Ensemble,
        test: crate::ensemble::manifest::StageTest,
        members: &Members,
        item: &ValidItem,
    ) -> f32 {
        let (rows, readied, _) = self.parts();
        ensemble.test_value(test, members, item, &rows, &readied)
    }

    /// Model `model`'s own best label for the item last analysed.
    pub fn model_best(&self, model: usize) -> Option<u32> {
        self.readied.get(model).and_then(|r| r.best()).map(|b| b.0)
    }

    /// Readies row `row` of `scores` for `item`, as the server readies each model's scores
    /// where it ran: what every other call reads.
    pub fn ready(
        &mut self,
        ensemble: &Ensemble,
        scores: &ModelScores,
        row: usize,
        item: &ValidItem,
    ) {
        let models = ensemble.models.len();
        self.rows.resize_with(models, Vec::new);
        self.readied.clear();
        for (m, out) in self.rows.iter_mut().enumerate() {
            out.clear();
            out.extend_from_slice(scores.scores[m].row(row));
            let readied = with_view(item, |view| {
                ensemble.combiner.ready(m, view, out, &mut self.scratch)
            });
            self.readied.push(readied);
        }
    }

    /// The readied rows and tops as the combiner takes them, and the scratch beside them.
    fn parts(&mut self) -> (Vec<&[f32]>, Vec<&Readied>, &mut Scratch) {
        (
            self.rows.iter().map(Vec::as_slice).collect(),
            self.readied.iter().collect(),
            &mut self.scratch,
        )
    }
}

/// One member's counts over a set of items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberCounts {
    /// Items the ensemble answered (the others count for pivotal only).
    pub answered: u64,
    pub pivotal: u64,
    pub agrees: u64,
    /// Sum of its shares of the winner's score.
    pub share: f64,
    /// Seconds its runs took (its share of the batches it ran in).
    pub seconds: f64,
}

impl MemberCounts {
    /// Counts one item; agreement and share count on answered items only (an item with no
    /// answer has no winner to agree with or share in).
    pub fn add(&mut self, answered: bool, pivotal: bool, agrees: bool, share: f32) {
        self.answered += answered as u64;
        self.pivotal += pivotal as u64;
        self.agrees += (answered && agrees) as u64;
        self.share += if answered { share as f64 } else { 0.0 };
    }

    /// Takes back what [`MemberCounts::add`] counted for the same item.
    pub fn remove(&mut self, answered: bool, pivotal: bool, agrees: bool, share: f32) {
        self.answered -= answered as u64;
        self.pivotal -= pivotal as u64;
        self.agrees -= (answered && agrees) as u64;
        let share = if answered { share as f64 } else { 0.0 };
        self.share = (self.share - share).max(0.0);
    }
}

/// Per member, the figures both reports give: over `items` items (of which the counts'
/// `answered` had an answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberFigures {
    pub name: String,
    pub kind: String,
    pub group: Option<String>,
    pub weight: f32,
    /// Share of items on which leaving it out changes the answer's first label.
    pub pivotal_rate: f64,
    /// Share of answered items whose first label is its own best label.
    pub agreement: f64,
    /// Mean share of the winner's voted score, over answered items.
    pub winner_share: f64,
    /// Share of the ensemble's model time spent in it.
    pub compute_share: f64,
}

/// What the figures name a member by.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    /// Index into the ensemble's models.
    pub model: usize,
    pub name: String,
    pub kind: String,
    pub group: Option<String>,
    pub weight: f32,
}

/// The voting members of `ensemble`, in name order ([`crate::combine::Combiner::voters`]).
pub fn members_of(ensemble: &Ensemble) -> Vec<MemberInfo> {
    ensemble
        .combiner
        .voters()
        .map(|m| {
            let spec = &ensemble.models[m].spec;
            MemberInfo {
                model: m,
                name: spec.name.clone(),
                kind: spec.kind.as_str().to_owned(),
                group: spec.group.clone(),
                weight: spec.weight,
            }
        })
        .collect()
}

/// The figures of `members` from the counts of every model (indexed like the ensemble's models:
/// compute shares are of all of them) over `items` items.
pub fn figures(members: &[MemberInfo], counts: &[MemberCounts], items: u64) -> Vec<MemberFigures> {
    let seconds: f64 = counts.iter().map(|c| c.seconds).sum();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    members
        .iter()
        .map(|info| {
            let c = &counts[info.model];
            MemberFigures {
                name: info.name.clone(),
                kind: info.kind.clone(),
                group: info.group.clone(),
                weight: info.weight,
                pivotal_rate: ratio(c.pivotal as f64, items as f64),
                agreement: ratio(c.agrees as f64, c.answered as f64),
                winner_share: ratio(c.share, c.answered as f64),
                compute_share: ratio(c.seconds, seconds),
            }
        })
        .collect()
}
