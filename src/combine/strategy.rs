//! The five voting strategies, one function each, over a *pool*: the models of one group, or the
//! groups (and ungrouped models) of the ensemble. A pool's members are its voters, each with a
//! weight; every strategy reads the same [`Input`] per voter and writes one score per label.
//!
//! The formulas are in the module docs (`combine/mod.rs`); each has one small unit below: an
//! `add` step per member and a `finish` step per pool. Labels no voter of the pool covers score 0.

use super::config::{check, ConfigError, DEFAULT_FLOOR, DEFAULT_RANK_K, DEFAULT_STRATEGY};
use super::mathf::{clean, exp, ln};
use super::select::{Entry, Ids};
use crate::wide::widen;

/// A strategy with its parameters resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Strategy {
    Soft,
    Hard,
    Rank { k: usize },
    Max,
    Geometric { floor: f32 },
}

impl Strategy {
    /// Parses a strategy and its parameters from one table (`vote` or `vote.groups.<name>`).
    pub(crate) fn parse(
        name: Option<&str>,
        rank_k: Option<usize>,
        floor: Option<f32>,
        table: &str,
    ) -> Result<Self, ConfigError> {
        let k = check(
            rank_k.unwrap_or(DEFAULT_RANK_K),
            |k| k >= 1,
            table,
            "rank_k",
            "at least 1",
        )?;
        let floor = check(
            floor.unwrap_or(DEFAULT_FLOOR),
            |f| (f32::MIN_POSITIVE..1.0).contains(&f),
            table,
            "floor",
            "a probability > 0 and < 1 (at least 1.2e-38)",
        )?;
        Ok(match name.unwrap_or(DEFAULT_STRATEGY) {
            "soft" => Strategy::Soft,
            "hard" => Strategy::Hard,
            "rank" => Strategy::Rank { k },
            "max" => Strategy::Max,
            "geometric" => Strategy::Geometric { floor },
            other => {
                return Err(ConfigError::UnknownStrategy {
                    place: format!("{table}.strategy"),
                    name: other.to_owned(),
                })
            }
        })
    }

    /// How deep each voter's top list must be for this strategy (0: it reads none).
    pub(crate) fn top_depth(self) -> usize {
        match self {
            Strategy::Hard => 1,
            Strategy::Rank { k } => k,
            _ => 0,
        }
    }

    /// Whether equal scores are broken by the weighted probability sum.
    pub(crate) fn has_tiebreak(self) -> bool {
        matches!(self, Strategy::Hard | Strategy::Rank { .. })
    }
}

/// Who a pool member is: a model (index into the combiner's active models) or a group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Voter {
    Model(usize),
    Group(usize),
}

/// A voter and its weight in the pool, scaled so that the heaviest member weighs 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub voter: Voter,
    pub weight: f32,
}

/// One voter's scores for this item, as every strategy reads them.
pub(crate) struct Input<'a> {
    pub ids: Ids<'a>,
    /// Raw or prepared scores; strategies clean them as they read.
    pub scores: &'a [f32],
    /// The voter's best labels (cleaned), at least `strategy.top_depth()` deep where it has them.
    pub top: &'a [Entry],
}

/// Voters combined with one strategy, with everything that does not depend on the item
/// precomputed.
#[derive(Debug)]
pub(crate) struct Pool {
    pub strategy: Strategy,
    /// In a fixed order (models by name, groups by name) so sums never depend on manifest order.
    pub members: Vec<Member>,
    /// Per label: 1 / (total weight of the members covering it), or 0 where none does.
    pub inv_cover: Vec<f32>,
    /// Total member weight.
    pub total: f32,
}

impl Pool {
    /// `raw`: the members with their manifest weights (all > 0); `covers[i]`: member i's labels.
    pub(crate) fn new(
        strategy: Strategy,
        raw: Vec<(Voter, f32)>,
        covers: &[&[u32]],
        labels: usize,
    ) -> Self {
        let heaviest = raw.iter().map(|m| m.1).fold(0.0f32, f32::max);
        let members: Vec<Member> = raw
            .into_iter()
            .map(|(voter, w)| Member {
                voter,
                weight: w / heaviest,
            })
            .collect();
        let mut cover = vec![0.0f32; labels];
        for (m, ids) in members.iter().zip(covers) {
            for &l in ids.iter() {
                cover[l as usize] += m.weight;
            }
        }
        let inv_cover = cover
            .iter()
            .map(|&c| if c > 0.0 { 1.0 / c } else { 0.0 })
            .collect();
        let total = members.iter().map(|m| m.weight).sum();
        Pool {
            strategy,
            members,
            inv_cover,
            total,
        }
    }

    /// The labels some member covers.
    pub(crate) fn covered(&self) -> Vec<u32> {
        (0..self.inv_cover.len() as u32)
            .filter(|&l| self.inv_cover[l as usize] > 0.0)
            .collect()
    }

    /// Starts an item's vote. Then [`Pool::add`] each member, then [`Pool::finish`]. (Members are
    /// added one at a time so that each model's scores are read while they are still in cache.)
    pub(crate) fn begin(&self, out: &mut [f32], tiebreak: Option<&mut [f32]>) {
        out.fill(0.0);
        if let Some(tb) = tiebreak {
            tb.fill(0.0);
        }
    }

    /// Adds one member's vote to `out` (and to `tiebreak`, when the strategy has one). `tmp` is
    /// scratch space.
    pub(crate) fn add(
        &self,
        member: &Member,
        input: &Input<'_>,
        out: &mut [f32],
        tiebreak: Option<&mut [f32]>,
        tmp: &mut Vec<f32>,
    ) {
        let w = member.weight;
        match self.strategy {
            Strategy::Soft => add(out, input, w),
            Strategy::Hard => hard(out, input, w),
            Strategy::Rank { k } => rank(out, input, w, k),
            Strategy::Max => max(out, input, w),
            Strategy::Geometric { floor } => geometric(out, input, w, floor, tmp),
        }
        if let Some(tb) = tiebreak.filter(|_| self.strategy.has_tiebreak()) {
            add(tb, input, w);
        }
    }

    /// Turns the summed votes into the pool's scores.
    pub(crate) fn finish(&self, out: &mut [f32], tiebreak: Option<&mut [f32]>) {
        let inv_total = 1.0 / self.total;
        match self.strategy {
            // Weighted mean over the members that cover each label.
            Strategy::Soft => out
                .iter_mut()
                .zip(&self.inv_cover)
                .for_each(|(o, &c)| *o *= c),
            Strategy::Hard => out.iter_mut().for_each(|o| *o *= inv_total),
            Strategy::Rank { k } => {
                let scale = inv_total / k as f32;
                out.iter_mut().for_each(|o| *o *= scale);
            }
            Strategy::Max => {}
            // floor · exp(Σ w/W · (ln max(s, floor) − ln floor)), over the covered labels.
            Strategy::Geometric { floor } => {
                geometric_finish(out, &self.inv_cover, inv_total, floor)
            }
        }
        if let Some(tb) = tiebreak.filter(|_| self.strategy.has_tiebreak()) {
            tb.iter_mut().for_each(|t| *t *= inv_total);
        }
    }

    /// A member's term in this pool's score for `label` (explanations): the addend for soft, hard
    /// and rank; the log-addend above the floor for geometric; the candidate for max. `score` is
    /// the member's cleaned probability (0 if it lacks the label), `rank` its place in its top list.
    pub(crate) fn term(&self, weight: f32, label: u32, score: f32, rank: Option<usize>) -> f32 {
        match self.strategy {
            Strategy::Soft => weight * score * self.inv_cover[label as usize],
            Strategy::Hard => match rank {
                Some(0) => weight / self.total,
                _ => 0.0,
            },
            Strategy::Rank { k } => match rank {
                Some(r) if r < k => weight * (k - r) as f32 / (k as f32 * self.total),
                _ => 0.0,
            },
            Strategy::Max => weight * score,
            Strategy::Geometric { floor } => {
                weight / self.total * (ln(score.max(floor)) - ln(floor))
            }
        }
    }
}

/// Length of a vote accumulator for `labels` labels: a power of two, so that the scatter loops
/// index with `label & mask`, which the compiler knows is in bounds (a third faster than a bounds
/// check per score). The padding stays 0.
pub(crate) fn accumulator_len(labels: usize) -> usize {
    labels.next_power_of_two()
}

/// `out` (of [`accumulator_len`]) and its index mask.
#[inline(always)]
fn masked(out: &mut [f32]) -> (&mut [f32], usize) {
    debug_assert!(
        out.len().is_power_of_two(),
        "accumulators come from accumulator_len; this is a bug"
    );
    let mask = out.len().saturating_sub(1);
    (&mut out[..=mask], mask)
}

widen!(
    /// Soft (and tiebreak): `out[label] += w · s`.
    fn add(out: &mut [f32], input: &Input<'_>, w: f32) = add_body
);

#[inline(always)]
fn add_body(out: &mut [f32], input: &Input<'_>, w: f32) {
    match input.ids {
        Ids::Dense => {
            for (o, &s) in out.iter_mut().zip(input.scores) {
                *o += w * clean(s);
            }
        }
        Ids::Mapped(ids) => {
            let (out, mask) = masked(out);
            for (&l, &s) in ids.iter().zip(input.scores) {
                out[l as usize & mask] += w * clean(s);
            }
        }
    }
}

/// Hard: the member's weight goes to its top-1 label.
fn hard(out: &mut [f32], input: &Input<'_>, w: f32) {
    if let Some(e) = input.top.first() {
        out[e.label as usize] += w;
    }
}

/// Rank: rank r (0 = best) of the member's top k earns k − r points, times its weight.
fn rank(out: &mut [f32], input: &Input<'_>, w: f32, k: usize) {
    for (r, e) in input.top.iter().take(k).enumerate() {
        out[e.label as usize] += w * (k - r) as f32;
    }
}

widen!(
    /// Max: the best single weighted score per label.
    fn max(out: &mut [f32], input: &Input<'_>, w: f32) = max_body
);

#[inline(always)]
fn max_body(out: &mut [f32], input: &Input<'_>, w: f32) {
    match input.ids {
        Ids::Dense => {
            for (o, &s) in out.iter_mut().zip(input.scores) {
                let v = w * clean(s);
                *o = if v > *o { v } else { *o };
            }
        }
        Ids::Mapped(ids) => {
            let (out, mask) = masked(out);
            for (&l, &s) in ids.iter().zip(input.scores) {
                let o = &mut out[l as usize & mask];
                *o = o.max(w * clean(s));
            }
        }
    }
}

widen!(
    /// Geometric: `out[label] += w · (ln max(s, floor) − ln floor)`, so a member lacking a label
    /// adds nothing (it counts as `floor`). The logarithms are taken in a separate, vectorised pass.
    fn geometric(out: &mut [f32], input: &Input<'_>, w: f32, floor: f32, tmp: &mut Vec<f32>) =
        geometric_body
);

widen!(
    /// Geometric's last step: `out[label] = floor · exp(out[label] / W)` where a member covers
    /// the label, 0 elsewhere.
    fn geometric_finish(out: &mut [f32], inv_cover: &[f32], inv_total: f32, floor: f32) =
        geometric_finish_body
);

#[inline(always)]
fn geometric_finish_body(out: &mut [f32], inv_cover: &[f32], inv_total: f32, floor: f32) {
    let ln_floor = ln(floor);
    for (o, &c) in out.iter_mut().zip(inv_cover) {
        let g = exp(ln_floor + *o * inv_total);
        *o = if c > 0.0 { g } else { 0.0 };
    }
}

#[inline(always)]
fn geometric_body(out: &mut [f32], input: &Input<'_>, w: f32, floor: f32, tmp: &mut Vec<f32>) {
    let ln_floor = ln(floor);
    let lift = |s: f32| {
        let p = clean(s);
        ln(if p > floor { p } else { floor }) - ln_floor
    };
    match input.ids {
        Ids::Dense => {
            for (o, &s) in out.iter_mut().zip(input.scores) {
                *o += w * lift(s);
            }
        }
        Ids::Mapped(ids) => {
            tmp.resize(input.scores.len(), 0.0);
            for (t, &s) in tmp.iter_mut().zip(input.scores) {
                *t = lift(s);
            }
            let (out, mask) = masked(out);
            for (&l, &t) in ids.iter().zip(tmp.iter()) {
                out[l as usize & mask] += w * t;
            }
        }
    }
}
