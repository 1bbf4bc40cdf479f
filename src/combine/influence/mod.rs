//! Each voting member's influence on one item's answer: whether leaving it out changes the
//! ensemble's first label (it is *pivotal*), what the answer is then, whether its own best label is
//! the answer's, and its share of the winner's voted score.
//!
//! **Definitions.** The answer without member m is the answer of the same manifest without m, as
//! [`Combiner::members`] defines it (weights rescaled among those left, a group with no model left
//! drops out, labels only m covered are not answered, agreement counts the others), rules
//! included; its first label is the first prediction, None when it abstains. m is pivotal when
//! that first label differs from the full answer's. m *agrees* when its own best label is the
//! answer's first label or lies under it (a taxonomy parent answered by backoff). Its *share* of
//! the winner is its term in the vote of the winning label (summed over the labels under a
//! parent), as a part of its pool's terms, times its group's part across groups when it sits in
//! one: for soft, hard and rank these terms add up to the pool's score; for geometric they are the
//! parts of the log-score above the floor; for max the member (or members, sharing) whose score is
//! the pool's gets it all. A member of a group that abstains or answers nothing has share 0.
//!
//! **Computed exactly, cheaply.** The full vote runs once. For each member, the answer without it
//! is found without voting again ([`emulate`]): any label's score without the member is
//! recomputed exactly from the readied scores ([`replay`]: the vote's own float operations for
//! that one label, so the same bits), at the cost of one pass over the members; labels are looked
//! at best first by their full score, and the look stops once no label left can beat the best
//! found: each strategy's [`Bound`](prepared::Bound) (the soft vote's C / (C − w) for the covering
//! weight C and the member's weight w, the hard and rank votes' W / (W − w), max's weight rescale,
//! geometric's power W / (W − w), and what a group's change does across groups) caps how far a
//! label's score can rise without the member, widened by the float error budget. The rules then run
//! as [`Combiner::decide`] runs them, on those exact scores. In the usual case a member costs a
//! few labels; when the bound cannot settle it from the labels looked at (near ties deep in the
//! ranking, scores that underflow), the member's answer comes from the vote among the others
//! ([`Combiner::combine_readied_among`]), which is the definition: so the result always equals
//! it, and [`Work::revoted`] counts how often that happened.

mod emulate;
mod prepared;
mod replay;
#[cfg(test)]
mod tests;

use std::cell::Cell;

pub(crate) use prepared::Prepared;

use super::mathf::clean;
use super::ranking::EXCLUDED;
use super::rules::Kind;
use super::select::{rank_labels, voter_top, Entry, Ids};
use super::strategy::{Pool, Strategy, Voter};
use super::{Answer, Combiner, ItemView, Models, Readied, Scratch};
use emulate::{top1_without, Context, Marks, Unsure};

/// One voting member's part in one item's answer (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberInfluence {
    /// Index into the models given to [`Combiner::new`].
    pub model: usize,
    /// The answer's first label (or taxonomy node) without this member; None: no answer.
    pub without: Option<u32>,
    /// Leaving it out changes the answer's first label.
    pub pivotal: bool,
    /// Its own best label is the answer's first label, or lies under it.
    pub agrees: bool,
    /// Its share of the winner's voted score, 0 to 1.
    pub share: f32,
}

/// Every voting member's influence on one item, and the answer it is measured against.
#[derive(Debug, Clone, PartialEq)]
pub struct Influence {
    /// The full ensemble's answer (explanations off).
    pub answer: Answer,
    /// One per voting member, in name order ([`Combiner::voters`]).
    pub members: Vec<MemberInfluence>,
    pub work: Work,
}

/// What finding the answers without each member took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Label scores recomputed, over every member.
    pub labels: u64,
    /// Members whose answer came from voting again among the others.
    pub revoted: u32,
}

/// Labels of the full vote looked at first, per member; then [`DEEP`] before voting again.
const SHALLOW: usize = 32;
const DEEP: usize = 512;

/// Influence buffers, kept in [`Scratch`] and reused from item to item.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    voted: Vec<f32>,
    order: Vec<u32>,
    list: Vec<Entry>,
    group_lists: Vec<Vec<Entry>>,
    group_complete: Vec<bool>,
    matched: Vec<bool>,
    maxima: Vec<f32>,
    pick: Vec<f32>,
    marks: Marks,
}

impl Combiner {
    /// The models that vote (weight above 0, in a group of weight above 0), in name order: the
    /// members [`Combiner::influence`] reports on, as indices into the models given to
    /// [`Combiner::new`].
    pub fn voters(&self) -> impl Iterator<Item = usize> + '_ {
        self.models.iter().map(|p| p.index)
    }

    /// The answer to `item` from readied scores (as [`Combiner::combine_readied`], without
    /// explanations) and every voting member's influence on it: see the module's docs.
    pub fn influence(
        &self,
        item: &ItemView<'_>,
        scores: &[&[f32]],
        readied: &[&Readied],
        s: &mut Scratch,
    ) -> Influence {
        let item = ItemView {
            top_k: item.top_k.max(1),
            explain: false,
            ..*item
        };
        let prep = self.prepared();
        let models = Models::Readied(scores, readied);
        self.vote(&self.full, models, self.depth(&item), s);
        let mut b = std::mem::take(&mut s.influence);
        b.voted.clear();
        b.voted.extend_from_slice(&s.scores[..self.labels]);
        let answer = self.decide(&self.full, &item, models, s);
        let top1 = answer.predictions.first().map(|p| p.label);
        b.matched.clear();
        b.matched.extend(self.rules.iter().map(|r| {
            match &r.kind {
                Kind::Match { field, regex, .. } => item
                    .fields
                    .get(*field)
                    .copied()
                    .flatten()
                    .is_some_and(|t| regex.is_match(t)),
                _ => false,
            }
        }));
        if item.candidates.is_some() {
            for (v, &ok) in b.voted.iter_mut().zip(&s.mask) {
                if !ok {
                    *v = EXCLUDED;
                }
            }
        }
        let mask = item.candidates.is_some().then_some(&s.mask[..]);
        let evaluated = Cell::new(0u64);
        let mut members: Vec<MemberInfluence> = Vec::with_capacity(self.models.len());
        let mut unsure: Vec<usize> = Vec::new();
        for depth in [SHALLOW, DEEP] {
            let todo: Vec<usize> = if depth == SHALLOW {
                (0..self.models.len()).collect()
            } else {
                std::mem::take(&mut unsure)
            };
            if todo.is_empty() {
                break;
            }
            self.lists(&mut b, depth, s);
            let Buffers {
                list,
                group_lists,
                group_complete,
                marks,
                matched,
                voted,
                ..
            } = &mut b;
            let cx = Context {
                c: self,
                prep,
                item: &item,
                scores,
                groups: &s.groups,
                cap: super::strategy::accumulator_len(self.labels),
                group_tops: &s.group_tops,
                model_tops: &s.model_tops,
                mask,
                matched,
                list,
                list_complete: list.len() < depth || list.len() == voted.len(),
                group_lists,
                group_complete,
            };
            for p in todo {
                match top1_without(&cx, p, marks, &evaluated) {
                    Ok(without) => members.push(self.member(p, top1, without, &cx)),
                    Err(Unsure) => unsure.push(p),
                }
            }
        }
        // Settled by voting again among the others: their parts first, while the scratch still
        // holds the full vote.
        let parts: Vec<(usize, bool, f32)> = unsure
            .iter()
            .map(|&p| {
                let (agrees, share) = self.part(p, top1, scores, s);
                (p, agrees, share)
            })
            .collect();
        let work = Work {
            labels: evaluated.get(),
            revoted: parts.len() as u32,
        };
        for (p, agrees, share) in parts {
            let without = prep.loo[p].members.as_ref().and_then(|m| {
                let a = self.combine_readied_among(m, &item, scores, readied, s);
                a.predictions.first().map(|x| x.label)
            });
            members.push(MemberInfluence {
                model: self.models[p].index,
                without,
                pivotal: without != top1,
                agrees,
                share,
            });
        }
        members.sort_by_key(|m| self.plan_of[m.model]);
        s.influence = b;
        Influence {
            answer,
            members,
            work,
        }
    }

    /// The first label of the answer without each voting member (in name order), each by voting
    /// among the others ([`Combiner::combine_readied_among`]): the definition that
    /// [`Combiner::influence`] equals, at the cost of one vote per member.
    pub fn influence_reference(
        &self,
        item: &ItemView<'_>,
        scores: &[&[f32]],
        readied: &[&Readied],
        s: &mut Scratch,
    ) -> Vec<Option<u32>> {
        let item = ItemView {
            top_k: item.top_k.max(1),
            explain: false,
            ..*item
        };
        let prep = self.prepared();
        (0..self.models.len())
            .map(|p| {
                let members = prep.loo[p].members.as_ref()?;
                let a = self.combine_readied_among(members, &item, scores, readied, s);
                a.predictions.first().map(|x| x.label)
            })
            .collect()
    }

    /// The full vote's best labels (after the request's candidates) and each group's, `depth`
    /// deep, into `b`.
    fn lists(&self, b: &mut Buffers, depth: usize, s: &Scratch) {
        let tb = None;
        rank_labels(&b.voted, tb, None, depth, &mut b.order, &mut b.list);
        let groups = self.full.groups.len();
        b.group_lists.resize_with(groups, Vec::new);
        b.group_complete.resize(groups, false);
        if self.full.outer.strategy.top_depth() == 0 {
            return;
        }
        let cap = super::strategy::accumulator_len(self.labels);
        for g in 0..groups {
            let out = &mut b.group_lists[g];
            out.clear();
            let scores = &s.groups[g * cap..g * cap + self.labels];
            voter_top(scores, Ids::Dense, depth, out, &mut b.maxima, &mut b.pick);
            b.group_complete[g] = out.len() < depth;
        }
    }

    fn member(
        &self,
        p: usize,
        top1: Option<u32>,
        without: Option<u32>,
        cx: &Context<'_>,
    ) -> MemberInfluence {
        let (agrees, share) = self.part_in(p, top1, cx);
        MemberInfluence {
            model: self.models[p].index,
            without,
            pivotal: without != top1,
            agrees,
            share,
        }
    }

    /// [`Combiner::part_in`] straight from the scratch of the full vote.
    fn part(&self, p: usize, top1: Option<u32>, scores: &[&[f32]], s: &Scratch) -> (bool, f32) {
        let item = ItemView {
            fields: &[],
            top_k: 1,
            candidates: None,
            explain: false,
        };
        let cx = Context {
            c: self,
            prep: self.prepared(),
            item: &item,
            scores,
            groups: &s.groups,
            cap: super::strategy::accumulator_len(self.labels),
            group_tops: &s.group_tops,
            model_tops: &s.model_tops,
            mask: None,
            matched: &[],
            list: &[],
            list_complete: true,
            group_lists: &[],
            group_complete: &[],
        };
        self.part_in(p, top1, &cx)
    }

    /// Whether voting model `p` agrees with the answer's first label, and its share of it.
    fn part_in(&self, p: usize, top1: Option<u32>, cx: &Context<'_>) -> (bool, f32) {
        let Some(winner) = top1 else {
            return (false, 0.0);
        };
        let agrees = cx
            .model_top(p)
            .first()
            .is_some_and(|e| self.taxonomy.covers(winner, e.label));
        let labels: Vec<u32> = if (winner as usize) < self.labels {
            vec![winner]
        } else {
            self.taxonomy.below(winner).collect()
        };
        let full = &self.full;
        let seat = full.seats[p].expect("a voting model has a seat; this is a bug");
        let outer_voter = match seat.home {
            Some(g) => Voter::Group(g),
            None => Voter::Model(p),
        };
        let outer = share_in(&full.outer, outer_voter, &labels, |v, l| match v {
            Voter::Model(q) => given(cx, q, l),
            Voter::Group(g) => {
                let score = clean(cx.group_at(g, l));
                (score, rank_of(cx.group_tops.get(g), l))
            }
        });
        let share = match seat.home {
            None => outer,
            Some(g) => {
                let inner = share_in(&full.groups[g], Voter::Model(p), &labels, |v, l| match v {
                    Voter::Model(q) => given(cx, q, l),
                    Voter::Group(_) => unreachable!("groups hold models only; this is a bug"),
                });
                inner * outer
            }
        };
        (agrees, share)
    }
}

/// A model's cleaned score of `label` and its rank in its top list.
fn given(cx: &Context<'_>, q: usize, label: u32) -> (f32, Option<usize>) {
    let score = cx.model_at(q, label).map_or(0.0, clean);
    (score, rank_of(cx.model_top(q), label))
}

fn rank_of(top: &[Entry], label: u32) -> Option<usize> {
    top.iter().position(|e| e.label == label)
}

/// `voter`'s part of `pool`'s terms for `labels` (see the module's docs), 0 to 1.
fn share_in(
    pool: &Pool,
    voter: Voter,
    labels: &[u32],
    given: impl Fn(Voter, u32) -> (f32, Option<usize>),
) -> f32 {
    let mut own = 0.0f64;
    let mut all = 0.0f64;
    for &l in labels {
        let terms = pool.members.iter().map(|m| {
            let (score, rank) = given(m.voter, l);
            (m.voter, pool.term(m.weight, l, score, rank) as f64)
        });
        if let Strategy::Max = pool.strategy {
            let terms: Vec<(Voter, f64)> = terms.collect();
            let top = terms.iter().map(|t| t.1).fold(0.0, f64::max);
            if top <= 0.0 {
                continue;
            }
            let ties = terms.iter().filter(|t| t.1 == top).count() as f64;
            all += 1.0;
            if terms.iter().any(|t| t.0 == voter && t.1 == top) {
                own += 1.0 / ties;
            }
        } else {
            for (v, t) in terms {
                all += t;
                if v == voter {
                    own += t;
                }
            }
        }
    }
    if all > 0.0 {
        (own / all) as f32
    } else {
        0.0
    }
}
