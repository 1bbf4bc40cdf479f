//! What the influence of a member needs about the combiner, worked out once (on the first item)
//! and kept with it: for each voting model, the vote without it, seated exactly as a manifest
//! without it would be ([`Combiner::members`]), and how far its absence can raise any label's
//! score ([`Bound`]); each model's column for each label.

use super::super::seating::Pools;
use super::super::strategy::{Pool, Strategy, Voter};
use super::super::{Combiner, Members};

/// A label a model lacks, in [`Prepared::columns`].
pub(crate) const NO_COLUMN: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct Prepared {
    /// Per voting model (indexed like `Combiner::models`): the vote without it.
    pub loo: Vec<Loo>,
    /// Per voting model: label → index into its readied scores ([`NO_COLUMN`] where it lacks the
    /// label); empty for a model whose scores are already in label order.
    pub columns: Vec<Vec<u32>>,
    /// Relative error budget of a voted score computed in f32, against the same sums in exact
    /// arithmetic; every bound is widened by it (see [`Bound::above`]).
    pub eta: f64,
}

/// The vote without one model.
#[derive(Debug)]
pub(crate) struct Loo {
    /// None when no other model votes: without it there is no answer.
    pub members: Option<Members>,
    /// Per group pool of `members`: the full vote's group pool of the same `[vote.groups.*]`.
    pub group_of: Vec<usize>,
    /// The group pool (of `members`) that lost the model and still votes, if it was in one.
    pub changed: Option<usize>,
    /// Bounds the score of a label across groups without the model, from its score with it.
    pub outer: Bound,
    /// Bounds the changed group's score of a label, from the full group's.
    pub group: Bound,
}

/// An upper bound on a label's score without a model, as a function of its score x with it.
/// Every strategy's is monotone in x, so labels can be visited best first and the rest skipped
/// once the bound of the next one falls below the best found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    /// r·x.
    Ratio(f64),
    /// floor·(x / floor)^exponent (a geometric vote losing a voter).
    Power { floor: f64, exponent: f64 },
}

impl Bound {
    /// The bound for a label that scored `x` with the model, widened by the float error `eta`
    /// on both sides (of x and of the result). A label that scored 0 scores 0 without it:
    /// taking a voter out never adds support to a label (the hard and rank votes across groups,
    /// where a group's changed top list can, are handled apart).
    pub(crate) fn above(self, x: f32, eta: f64) -> f64 {
        if x <= 0.0 || x.is_nan() {
            return 0.0;
        }
        let x = x as f64 * (1.0 + eta);
        let y = match self {
            Bound::Ratio(r) => r * x,
            Bound::Power { floor, exponent } => floor * (x.max(floor) / floor).powf(exponent),
        };
        y * (1.0 + eta)
    }

    /// A ratio bound valid for every x in [0, 1]: the power's worst ratio is at x = 1.
    fn as_ratio(self) -> f64 {
        match self {
            Bound::Ratio(r) => r,
            Bound::Power { floor, exponent } => floor.powf(1.0 - exponent),
        }
    }
}

impl Combiner {
    /// The influence tables, built on first use.
    pub(crate) fn prepared(&self) -> &Prepared {
        self.influence.get_or_init(|| Prepared::new(self))
    }
}

impl Prepared {
    fn new(c: &Combiner) -> Prepared {
        let n = c.labels;
        let columns = c
            .models
            .iter()
            .map(|plan| {
                let dense = plan.ids.iter().enumerate().all(|(j, &l)| l as usize == j);
                if dense {
                    return Vec::new();
                }
                let mut col = vec![NO_COLUMN; n];
                for (j, &l) in plan.ids.iter().enumerate() {
                    col[l as usize] = j as u32;
                }
                col
            })
            .collect();
        let full = &c.full;
        let group_covers: Vec<Vec<u32>> = full.groups.iter().map(Pool::covered).collect();
        let cover_of = |voter: Voter| -> &[u32] {
            match voter {
                Voter::Model(q) => &c.models[q].ids,
                Voter::Group(g) => &group_covers[g],
            }
        };
        let outer_weights = covered_weight(&full.outer, n, &cover_of);
        let group_weights: Vec<Vec<f64>> = full
            .groups
            .iter()
            .map(|g| covered_weight(g, n, &cover_of))
            .collect();
        let tables = Tables {
            c,
            group_covers: &group_covers,
            outer_weights: &outer_weights,
            group_weights: &group_weights,
        };
        let loo = (0..c.models.len()).map(|p| tables.loo(p)).collect();
        Prepared {
            loo,
            columns,
            eta: error_budget(c),
        }
    }
}

/// The full vote's coverage, for working out each model's [`Loo`].
struct Tables<'a> {
    c: &'a Combiner,
    group_covers: &'a [Vec<u32>],
    /// Per label: the summed weight of the pool's members covering it (f64, from the weights).
    outer_weights: &'a [f64],
    group_weights: &'a [Vec<f64>],
}

impl Tables<'_> {
    fn loo(&self, p: usize) -> Loo {
        let c = self.c;
        let present: Vec<bool> = (0..c.plan_of.len())
            .map(|i| i != c.models[p].index)
            .collect();
        let members = c.members(&present);
        let Some(pools) = members.as_ref().map(|m| &m.pools) else {
            return Loo {
                members: None,
                group_of: Vec::new(),
                changed: None,
                outer: Bound::Ratio(1.0),
                group: Bound::Ratio(1.0),
            };
        };
        let full = &c.full;
        let spec_of = |pool: &Pool| match pool.members.first().map(|m| m.voter) {
            Some(Voter::Model(q)) => c.models[q].group,
            _ => None,
        };
        let group_of: Vec<usize> = pools
            .groups
            .iter()
            .map(|g| {
                full.groups
                    .iter()
                    .position(|f| spec_of(f) == spec_of(g))
                    .expect("a group of a subset is a group of the ensemble; this is a bug")
            })
            .collect();
        let seat = full.seats[p].expect("a voting model has a seat; this is a bug");
        let position = |pool: &Pool, voter: Voter| {
            pool.members
                .iter()
                .position(|m| m.voter == voter)
                .expect("a seated voter is in its pool; this is a bug")
        };
        let plan_ids = &c.models[p].ids;
        let (changed, outer, group) = match seat.home {
            None => {
                let v = position(&full.outer, Voter::Model(p));
                let outer = removal(&full.outer, v, plan_ids, &pools.outer, self.outer_weights);
                (None, outer, Bound::Ratio(1.0))
            }
            Some(fg) => match group_of.iter().position(|&g| g == fg) {
                // The group votes on without the model: its scores change, bounded by `group`.
                Some(gi) => {
                    let pool = &full.groups[fg];
                    let v = position(pool, Voter::Model(p));
                    let group = removal(
                        pool,
                        v,
                        plan_ids,
                        &pools.groups[gi],
                        &self.group_weights[fg],
                    );
                    let outer = self.changed_group(fg, &pools.groups[gi], pools, group);
                    (Some(gi), outer, group)
                }
                // The model was its group's only voter: the group leaves the vote across groups.
                None => {
                    let v = position(&full.outer, Voter::Group(fg));
                    let cover = &self.group_covers[fg];
                    let outer = removal(&full.outer, v, cover, &pools.outer, self.outer_weights);
                    (None, outer, Bound::Ratio(1.0))
                }
            },
        };
        Loo {
            members,
            group_of,
            changed,
            outer,
            group,
        }
    }

    /// The bound across groups when group `fg` votes on with scores bounded by `group`:
    /// soft, max and geometric scale with the group's scores (and soft also with the labels the
    /// group no longer covers); hard and rank change only at the group's new top labels, which
    /// are looked at apart, and elsewhere never rise.
    fn changed_group(&self, fg: usize, loo_group: &Pool, pools: &Pools, group: Bound) -> Bound {
        let full = &self.c.full;
        let g = full
            .outer
            .members
            .iter()
            .find(|m| m.voter == Voter::Group(fg))
            .expect("a group that votes is in the pool across groups; this is a bug");
        let r = group.as_ratio();
        let w = g.weight as f64;
        match full.outer.strategy {
            Strategy::Soft => {
                let mut lost = 1.0f64;
                for &l in &self.group_covers[fg] {
                    let l = l as usize;
                    if loo_group.inv_cover[l] == 0.0 && pools.outer.inv_cover[l] > 0.0 {
                        let cw = self.outer_weights[l];
                        lost = lost.max(cw / (cw - w));
                    }
                }
                Bound::Ratio(r.max(lost))
            }
            Strategy::Max => Bound::Ratio(r),
            Strategy::Geometric { .. } => {
                let total: f64 = full.outer.members.iter().map(|m| m.weight as f64).sum();
                Bound::Ratio(r.powf(w / total))
            }
            Strategy::Hard | Strategy::Rank { .. } => Bound::Ratio(1.0),
        }
    }
}

/// How far taking member `v` (covering `cover`) out of `pool` can raise a label's score; `loo`
/// is the pool without it, `weights[l]` the pool's covering weight of label l.
fn removal(pool: &Pool, v: usize, cover: &[u32], loo: &Pool, weights: &[f64]) -> Bound {
    let w = pool.members[v].weight as f64;
    let others = || {
        pool.members
            .iter()
            .enumerate()
            .filter(move |&(j, _)| j != v)
            .map(|(_, m)| m.weight as f64)
    };
    match pool.strategy {
        // (Σ w·x − w_v·x_v) / (C − w_v) <= Σ w·x / C · C / (C − w_v), where the label stays covered.
        Strategy::Soft => {
            let mut r = 1.0f64;
            for &l in cover {
                let l = l as usize;
                if loo.inv_cover[l] > 0.0 {
                    let c = weights[l];
                    r = r.max(c / (c - w));
                }
            }
            Bound::Ratio(r)
        }
        // Votes only go away; the total shrinks from W to W − w_v.
        Strategy::Hard | Strategy::Rank { .. } => {
            let rest: f64 = others().sum();
            Bound::Ratio((rest + w) / rest)
        }
        // Only the weights' scale changes (the heaviest left weighs 1).
        Strategy::Max => Bound::Ratio(1.0 / others().fold(0.0, f64::max)),
        // exp(Σ w·λ / (W − w_v)) <= exp(Σ w·λ / W)^(W / (W − w_v)), every λ >= 0.
        Strategy::Geometric { floor } => {
            let rest: f64 = others().sum();
            Bound::Power {
                floor: floor as f64,
                exponent: (rest + w) / rest,
            }
        }
    }
}

/// Per label: the summed weight of `pool`'s members covering it.
fn covered_weight<'c>(pool: &Pool, n: usize, cover_of: &impl Fn(Voter) -> &'c [u32]) -> Vec<f64> {
    let mut weights = vec![0.0f64; n];
    for m in &pool.members {
        for &l in cover_of(m.voter) {
            weights[l as usize] += m.weight as f64;
        }
    }
    weights
}

/// The relative error of a voted score computed in f32 against exact arithmetic on the same
/// inputs, with a wide margin: a sum of n non-negative terms is within (n − 1)·u of it (u =
/// 2^-24), the weights, products and the last scaling add a few u each, two levels (groups, then
/// across them) add up; a geometric vote's logarithms scale the error by |ln floor|.
fn error_budget(c: &Combiner) -> f64 {
    let pools = std::iter::once(&c.full.outer).chain(&c.full.groups);
    let ln_floor = pools
        .filter_map(|p| match p.strategy {
            Strategy::Geometric { floor } => Some((floor as f64).ln().abs()),
            _ => None,
        })
        .fold(1.0f64, f64::max);
    let n = (c.models.len() + c.full.groups.len() + 8) as f64;
    (16.0 * n * f32::EPSILON as f64 / 2.0 * ln_floor).max(1e-4)
}
