//! Seating the voting models in pools: the groups that take part and the pool across them, for
//! the full ensemble at load time and, the same way, for any subset of it
//! ([`Combiner::members`](super::Combiner::members)).

use super::plan::ModelPlan;
use super::strategy::{Pool, Strategy, Voter};

/// How the voting models sit in pools: the strategy across groups, and each group's strategy and
/// weight. Kept so that the pools of any subset of the models can be built the way the full
/// ensemble's were ([`Seating::pools`]).
#[derive(Debug)]
pub(crate) struct Seating {
    pub outer: Strategy,
    /// Per `[vote.groups.*]` table, in name order.
    pub groups: Vec<(Strategy, f32)>,
}

/// Where a voting model sits: the group pool it votes in (None: the pool across groups) and its
/// weight there (the pool's heaviest member weighs 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seat {
    pub home: Option<usize>,
    pub weight: f32,
}

/// The pools of one vote: the groups that take part, the pool across them, the labels no member
/// covers, and each model's seat (None where it does not take part).
#[derive(Debug)]
pub(crate) struct Pools {
    pub groups: Vec<Pool>,
    pub outer: Pool,
    pub uncovered: Vec<u32>,
    /// Indexed like `Combiner::models`.
    pub seats: Vec<Option<Seat>>,
}

impl Seating {
    /// The pools of the plans for which `present(p)` holds, built exactly as if they were the
    /// only models of the manifest (same order, same weights, same coverage): a vote over them
    /// is the vote of the ensemble without the others, to the bit. None when nobody takes part.
    pub(crate) fn pools(
        &self,
        plans: &[ModelPlan],
        n: usize,
        present: impl Fn(usize) -> bool,
    ) -> Option<Pools> {
        let mut groups = Vec::new();
        let mut seats = vec![None; plans.len()];
        let mut outer_members = Vec::new();
        let mut outer_covers: Vec<Vec<u32>> = Vec::new();
        for (g, &(strategy, weight)) in self.groups.iter().enumerate() {
            let members: Vec<usize> = (0..plans.len())
                .filter(|&p| plans[p].group == Some(g) && present(p))
                .collect();
            if members.is_empty() {
                continue; // the group weighs 0, all its models do, or none is present
            }
            let pool = group_pool(strategy, &members, plans, groups.len(), &mut seats, n);
            outer_members.push((Voter::Group(groups.len()), weight));
            outer_covers.push(pool.covered());
            groups.push(pool);
        }
        for (p, plan) in plans.iter().enumerate() {
            if plan.group.is_none() && present(p) {
                outer_members.push((Voter::Model(p), plan.weight));
                outer_covers.push(plan.ids.clone());
            }
        }
        if outer_members.is_empty() {
            return None;
        }
        let covers: Vec<&[u32]> = outer_covers.iter().map(Vec::as_slice).collect();
        let outer = Pool::new(self.outer, outer_members, &covers, n);
        for member in &outer.members {
            if let Voter::Model(p) = member.voter {
                seats[p] = Some(Seat {
                    home: None,
                    weight: member.weight,
                });
            }
        }
        let uncovered = (0..n as u32)
            .filter(|&l| outer.inv_cover[l as usize] == 0.0)
            .collect();
        Some(Pools {
            groups,
            outer,
            uncovered,
            seats,
        })
    }
}

/// One group's pool over `members`, seated in it (pool number `home`) with their weights.
fn group_pool(
    strategy: Strategy,
    members: &[usize],
    plans: &[ModelPlan],
    home: usize,
    seats: &mut [Option<Seat>],
    n: usize,
) -> Pool {
    let covers: Vec<&[u32]> = members.iter().map(|&p| plans[p].ids.as_slice()).collect();
    let raw = members
        .iter()
        .map(|&p| (Voter::Model(p), plans[p].weight))
        .collect();
    let pool = Pool::new(strategy, raw, &covers, n);
    for (&p, member) in members.iter().zip(&pool.members) {
        seats[p] = Some(Seat {
            home: Some(home),
            weight: member.weight,
        });
    }
    pool
}
