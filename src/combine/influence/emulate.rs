//! The answer without one member, found without voting again: the rules run as
//! [`Combiner::decide`] runs them, on a ranking whose scores are recomputed exactly
//! ([`replay`](super::replay)) only for the labels that can matter. Those are visited best
//! first by the full vote's score; the member's [`Bound`] says how high a label's score can
//! rise without it, so the visit stops at the first label whose bound is below the best score
//! found. When the labels looked at run out before that, the answer is not certain and the
//! caller votes again ([`Unsure`]).

use std::cell::Cell;

use smallvec::SmallVec;

use super::super::ranking::{EXCLUDED, UNCOVERED};
use super::super::rules::{Act, Kind};
use super::super::seating::Pools;
use super::super::select::{Entry, TopLists};
use super::super::strategy::Voter;
use super::super::{Combiner, ItemView};
use super::prepared::{Bound, Loo, Prepared, NO_COLUMN};
use super::replay::{insert_top, pool_at, Given};

/// The labels looked at were not enough to be certain of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unsure;

/// Scores this small are where float underflow, not the bounds' relative error, rules: an answer
/// decided among them is left to the re-vote.
const TINY: f32 = 1e-30;

/// One item's full vote, as every member's leave-one-out reads it.
pub(super) struct Context<'a> {
    pub c: &'a Combiner,
    pub prep: &'a Prepared,
    pub item: &'a ItemView<'a>,
    /// Readied scores, indexed like the models given to `Combiner::new`.
    pub scores: &'a [&'a [f32]],
    /// The full vote's group outputs (`cap` apart) and their top lists.
    pub groups: &'a [f32],
    pub cap: usize,
    pub group_tops: &'a TopLists,
    /// Every voting model's top list, as the vote filled it.
    pub model_tops: &'a TopLists,
    /// The request's candidates, per label (None: every label).
    pub mask: Option<&'a [bool]>,
    /// Per rule: whether its pattern matched the item (keyword and regex rules).
    pub matched: &'a [bool],
    /// The labels the request accepts, best first by the full vote's score, and whether they are
    /// all of them.
    pub list: &'a [Entry],
    pub list_complete: bool,
    /// Per group of the full vote (when the vote across groups reads top lists): its best
    /// labels, and whether they are all its labels with a score.
    pub group_lists: &'a [Vec<Entry>],
    pub group_complete: &'a [bool],
}

impl Context<'_> {
    /// Voting model `q`'s readied score of `label`, where the vote's loop reaches it.
    pub(super) fn model_at(&self, q: usize, label: u32) -> Option<f32> {
        let plan = &self.c.models[q];
        let row = self.scores.get(plan.index).copied().unwrap_or(&[]);
        let (_, row) = plan.readied(row);
        let columns = &self.prep.columns[q];
        let j = if columns.is_empty() {
            label as usize
        } else {
            match columns[label as usize] {
                NO_COLUMN => return None,
                j => j as usize,
            }
        };
        row.get(j).copied()
    }

    pub(super) fn model_top(&self, q: usize) -> &[Entry] {
        self.model_tops.get(q)
    }

    /// Full group `fg`'s score of `label`.
    pub(super) fn group_at(&self, fg: usize, label: u32) -> f32 {
        self.groups[fg * self.cap + label as usize]
    }
}

/// Scratch for one member's ranking, reused from member to member.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// Per label: a rule excluded it (reset after each member).
    excluded: Vec<bool>,
    touched: Vec<u32>,
    group_top: Vec<Entry>,
}

/// The first label (or taxonomy node) of the answer without voting model `p`, None for no
/// answer; `evaluated` counts the labels whose score was recomputed.
pub(super) fn top1_without(
    cx: &Context<'_>,
    p: usize,
    marks: &mut Marks,
    evaluated: &Cell<u64>,
) -> Result<Option<u32>, Unsure> {
    let loo = &cx.prep.loo[p];
    let Some(members) = &loo.members else {
        return Ok(None);
    };
    let pools = &members.pools;
    marks.excluded.resize(cx.c.labels, false);
    let depth = pools.outer.strategy.top_depth();
    let mut group_top = std::mem::take(&mut marks.group_top);
    group_top.clear();
    if let (Some(gi), true) = (loo.changed, depth > 0) {
        changed_group_top(cx, loo, pools, gi, depth, &mut group_top, evaluated)?;
    }
    let mut ranking = Without {
        cx,
        p,
        loo,
        pools,
        group_top: &group_top,
        pinned: None,
        overlay: SmallVec::new(),
        marks,
        evaluated,
    };
    let result = ranking.run();
    for &l in &ranking.marks.touched {
        ranking.marks.excluded[l as usize] = false;
    }
    ranking.marks.touched.clear();
    marks.group_top = group_top;
    result
}

/// The top list of the group that lost the model, `k` deep, exactly as the vote across groups
/// reads it: its best labels by (score, lower id) among those scoring above 0.
fn changed_group_top(
    cx: &Context<'_>,
    loo: &Loo,
    pools: &Pools,
    gi: usize,
    k: usize,
    top: &mut Vec<Entry>,
    evaluated: &Cell<u64>,
) -> Result<(), Unsure> {
    let fg = loo.group_of[gi];
    let pool = &pools.groups[gi];
    let eta = cx.prep.eta;
    let list = &cx.group_lists[fg];
    let full = |e: &Entry, top: &[Entry]| {
        top.len() == k && loo.group.above(e.score, eta) < top[k - 1].score as f64
    };
    for e in list {
        if full(e, top) {
            return Ok(());
        }
        evaluated.set(evaluated.get() + 1);
        let (score, _) = pool_at(pool, e.label, |v| model_given(cx, v, e.label));
        let score = super::super::mathf::clean(score);
        if score > 0.0 {
            insert_top(
                top,
                k,
                Entry {
                    score,
                    label: e.label,
                },
            );
        }
    }
    let settled = cx.group_complete[fg] || list.last().is_some_and(|e| full(e, top));
    if settled && top.last().is_none_or(|e| e.score >= TINY) {
        Ok(())
    } else {
        Err(Unsure)
    }
}

fn model_given<'a>(cx: &'a Context<'a>, voter: Voter, label: u32) -> Given<'a> {
    match voter {
        Voter::Model(q) => (cx.model_at(q, label), cx.model_top(q)),
        Voter::Group(_) => unreachable!("groups hold models only; this is a bug"),
    }
}

/// The ranking of the vote without model `p` while the rules run on it: what
/// `combine::ranking::Ranking` holds, with scores recomputed on demand.
struct Without<'a> {
    cx: &'a Context<'a>,
    p: usize,
    loo: &'a Loo,
    pools: &'a Pools,
    /// The changed group's top list (when the vote across groups reads top lists).
    group_top: &'a [Entry],
    pinned: Option<Entry>,
    /// Labels a rule multiplied: their current score.
    overlay: SmallVec<[(u32, f32); 4]>,
    marks: &'a mut Marks,
    evaluated: &'a Cell<u64>,
}

impl Without<'_> {
    /// The rules in manifest order, then the first label: [`Combiner::decide`]'s steps.
    fn run(&mut self) -> Result<Option<u32>, Unsure> {
        let c = self.cx.c;
        for (i, rule) in c.rules.iter().enumerate() {
            match &rule.kind {
                Kind::MinConfidence {
                    threshold,
                    fallback,
                } => {
                    let best = self.best()?;
                    if best.map_or(0.0, |e| e.score) >= *threshold {
                        continue;
                    }
                    if !self.fall_back(*fallback) {
                        return Ok(None);
                    }
                    break;
                }
                Kind::MinAgreement { models, fallback } => {
                    let best = self.best()?;
                    if best.map_or(0, |e| self.agreement(e.label)) >= *models {
                        continue;
                    }
                    if !self.fall_back(*fallback) {
                        return Ok(None);
                    }
                    break;
                }
                Kind::Match { label, act, .. } => {
                    if !self.cx.matched[i] {
                        continue;
                    }
                    match act {
                        Act::Force => {
                            if !self.is_excluded(*label) {
                                self.pin(*label, 1.0);
                            }
                        }
                        Act::Multiply(f) => self.multiply(*label, *f),
                        Act::Exclude => self.exclude(*label),
                    }
                }
                Kind::Exclude { labels } => labels.iter().for_each(|&l| self.exclude(l)),
                Kind::Backoff {
                    leaf,
                    parent,
                    levels,
                } => {
                    let Some(top) = self.best()?.filter(|e| e.score < *leaf) else {
                        continue;
                    };
                    let mut node = top.label;
                    for _ in 0..*levels {
                        let Some(up) = c.taxonomy.parent(node) else {
                            break;
                        };
                        let sum = self.sum_under(up);
                        if sum >= *parent && self.accepts(up) {
                            self.pin(up, sum);
                            break;
                        }
                        node = up;
                    }
                }
            }
        }
        if let Some(p) = self.pinned {
            return Ok(Some(p.label));
        }
        Ok(self.best()?.map(|e| e.label))
    }

    /// A failed test: pin the fallback (true) or abstain (false).
    fn fall_back(&mut self, fallback: Option<u32>) -> bool {
        match fallback {
            Some(f) if !self.is_excluded(f) => {
                let score = self.score_of(f);
                self.pin(f, score);
                true
            }
            _ => false,
        }
    }

    fn pin(&mut self, node: u32, score: f32) {
        self.pinned = Some(Entry { score, label: node });
    }

    fn accepts(&self, node: u32) -> bool {
        let name = self.cx.c.taxonomy.name(node);
        self.cx
            .item
            .candidates
            .is_none_or(|c| c.iter().any(|c| name.starts_with(c.as_str())))
    }

    /// Models (other than the one left out) whose top `agreement_k` holds `node` or a label
    /// under it.
    fn agreement(&self, node: u32) -> u32 {
        let c = self.cx.c;
        let all = c.agreement(node, self.cx.model_tops);
        let top = self.cx.model_top(self.p);
        let own = top[..top.len().min(c.agreement_k)]
            .iter()
            .any(|e| c.taxonomy.covers(node, e.label));
        all - own as u32
    }

    fn is_excluded(&self, label: u32) -> bool {
        let l = label as usize;
        l < self.cx.c.labels && (self.marks.excluded[l] || self.cx.mask.is_some_and(|m| !m[l]))
    }

    fn exclude(&mut self, label: u32) {
        let l = label as usize;
        if l < self.cx.c.labels && !self.marks.excluded[l] {
            self.marks.excluded[l] = true;
            self.marks.touched.push(label);
        }
        if self.pinned.is_some_and(|p| p.label == label) {
            self.pinned = None;
        }
    }

    fn multiply(&mut self, label: u32, factor: f32) {
        let current = self.current(label);
        if current > 0.0 {
            let v = (current * factor).min(f32::MAX);
            match self.overlay.iter_mut().find(|(l, _)| *l == label) {
                Some(entry) => entry.1 = v,
                None => self.overlay.push((label, v)),
            }
        }
        if let Some(p) = self.pinned.as_mut().filter(|p| p.label == label) {
            p.score = (p.score * factor).min(f32::MAX);
        }
    }

    /// The label's score as the rules have left it (negative: excluded or not covered).
    fn current(&self, label: u32) -> f32 {
        if self.is_excluded(label) {
            return EXCLUDED;
        }
        if let Some(&(_, v)) = self.overlay.iter().find(|(l, _)| *l == label) {
            return v;
        }
        self.base(label).0
    }

    fn score_of(&self, label: u32) -> f32 {
        if (label as usize) < self.cx.c.labels {
            self.current(label).max(0.0)
        } else {
            0.0
        }
    }

    fn sum_under(&self, node: u32) -> f32 {
        let own = self.score_of(node);
        let below: f32 = self
            .cx
            .c
            .taxonomy
            .below(node)
            .map(|l| self.score_of(l))
            .sum();
        (own + below).min(f32::MAX)
    }

    /// The vote's score of `label` and its tiebreak, before any rule: recomputed over the pools
    /// without the model.
    fn base(&self, label: u32) -> (f32, f32) {
        if self.pools.outer.inv_cover[label as usize] == 0.0 {
            return (UNCOVERED, 0.0);
        }
        self.evaluated.set(self.evaluated.get() + 1);
        pool_at(&self.pools.outer, label, |v| self.given(v, label))
    }

    /// What one voter of the pool across groups gives `label`.
    fn given(&self, voter: Voter, label: u32) -> Given<'_> {
        let cx = self.cx;
        match voter {
            Voter::Model(q) => (cx.model_at(q, label), cx.model_top(q)),
            Voter::Group(gi) if Some(gi) == self.loo.changed => {
                let pool = &self.pools.groups[gi];
                let (score, _) = pool_at(pool, label, |v| model_given(cx, v, label));
                (Some(score), self.group_top)
            }
            Voter::Group(gi) => {
                let fg = self.loo.group_of[gi];
                (Some(cx.group_at(fg, label)), cx.group_tops.get(fg))
            }
        }
    }

    /// The current answer: the pinned node, else the best answerable label by (score,
    /// tiebreak, lower id), as `Ranking::best` finds it.
    fn best(&self) -> Result<Option<Entry>, Unsure> {
        if self.pinned.is_some() {
            return Ok(self.pinned);
        }
        let mut best: Option<(Entry, f32)> = None;
        for &(label, score) in &self.overlay {
            if !self.is_excluded(label) {
                consider(&mut best, label, score, self.base(label).1);
            }
        }
        let bound: Bound = self.loo.outer;
        let eta = self.cx.prep.eta;
        let beaten = |e: &Entry, best: &Option<(Entry, f32)>| {
            best.is_some_and(|(b, _)| bound.above(e.score, eta) < b.score as f64)
        };
        // A hard or rank vote across groups: the changed group's new top labels may gain.
        for e in self.group_top {
            if !self.is_excluded(e.label) && !self.overlay.iter().any(|(l, _)| *l == e.label) {
                let (score, tb) = self.base(e.label);
                consider(&mut best, e.label, score, tb);
            }
        }
        for e in self.cx.list {
            if self.is_excluded(e.label) || self.overlay.iter().any(|(l, _)| *l == e.label) {
                continue;
            }
            if beaten(e, &best) {
                return settle(best, false);
            }
            let (score, tb) = self.base(e.label);
            consider(&mut best, e.label, score, tb);
        }
        let settled =
            self.cx.list_complete || self.cx.list.last().is_some_and(|e| beaten(e, &best));
        if settled {
            settle(best, self.cx.list_complete)
        } else {
            Err(Unsure)
        }
    }
}

/// Keeps `(label, score, tb)` if it ranks above `best`, as `Ranking::best` ranks (answerable
/// labels only: score >= 0).
fn consider(best: &mut Option<(Entry, f32)>, label: u32, score: f32, tb: f32) {
    if score < 0.0 {
        return;
    }
    let better = match *best {
        None => true,
        Some((b, btb)) => {
            score > b.score || (score == b.score && (tb > btb || (tb == btb && label < b.label)))
        }
    };
    if better {
        *best = Some((Entry { score, label }, tb));
    }
}

/// The best label found, unless it was decided among underflowing scores without looking at
/// every label.
fn settle(best: Option<(Entry, f32)>, exhaustive: bool) -> Result<Option<Entry>, Unsure> {
    match best {
        Some((b, _)) if !exhaustive && b.score < TINY => Err(Unsure),
        best => Ok(best.map(|(b, _)| b)),
    }
}
