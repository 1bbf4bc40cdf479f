//! One pool's score of one label, recomputed exactly as the vote computes it: the same members in
//! the same order, the same weights, the same float operations one label at a time (the vote runs
//! them over every label at once, lane by lane, with the same result per label: no operation is
//! fused or reordered across lanes). So a score recomputed here for a vote without a member is, to
//! the bit, the score that vote gives the label; it costs one pass over the pool's members.

use super::super::mathf::{clean, exp, ln};
use super::super::select::Entry;
use super::super::strategy::{Pool, Strategy, Voter};

/// What one voter gives a label: its score as the vote reads it (None where the vote's loop over
/// its scores does not reach the label), and its top list (hard and rank read it).
pub(super) type Given<'a> = (Option<f32>, &'a [Entry]);

/// `pool`'s score of `label` and its tiebreak (the weighted score sum that hard and rank votes
/// break ties with; 0 for the other strategies), from what each member gives it.
pub(super) fn pool_at<'a>(
    pool: &Pool,
    label: u32,
    given: impl Fn(Voter) -> Given<'a>,
) -> (f32, f32) {
    let (mut acc, mut tb) = (0.0f32, 0.0f32);
    let tiebreak = pool.strategy.has_tiebreak();
    for member in &pool.members {
        let w = member.weight;
        let (x, top) = given(member.voter);
        match pool.strategy {
            Strategy::Soft => {
                if let Some(x) = x {
                    acc += w * clean(x);
                }
            }
            Strategy::Hard => {
                if top.first().is_some_and(|e| e.label == label) {
                    acc += w;
                }
            }
            Strategy::Rank { k } => {
                if let Some(r) = top.iter().take(k).position(|e| e.label == label) {
                    acc += w * (k - r) as f32;
                }
            }
            Strategy::Max => {
                if let Some(x) = x {
                    let v = w * clean(x);
                    acc = if v > acc { v } else { acc };
                }
            }
            Strategy::Geometric { floor } => {
                if let Some(x) = x {
                    acc += w * lift(x, floor);
                }
            }
        }
        if tiebreak {
            if let Some(x) = x {
                tb += w * clean(x);
            }
        }
    }
    let inv_total = 1.0 / pool.total;
    let l = label as usize;
    let score = match pool.strategy {
        Strategy::Soft => acc * pool.inv_cover[l],
        Strategy::Hard => acc * inv_total,
        Strategy::Rank { k } => acc * (inv_total / k as f32),
        Strategy::Max => acc,
        Strategy::Geometric { floor } => {
            let g = exp(ln(floor) + acc * inv_total);
            if pool.inv_cover[l] > 0.0 {
                g
            } else {
                0.0
            }
        }
    };
    (score, if tiebreak { tb * inv_total } else { 0.0 })
}

/// The geometric vote's term of one score: ln max(p, floor) − ln floor.
#[inline]
fn lift(s: f32, floor: f32) -> f32 {
    let p = clean(s);
    ln(if p > floor { p } else { floor }) - ln(floor)
}

/// `a` ranks above `b` in a voter's top list: higher score, then lower label.
pub(super) fn above(a: Entry, b: Entry) -> bool {
    a.score > b.score || (a.score == b.score && a.label < b.label)
}

/// Inserts `e` into `top` (best first, by [`above`]) if it belongs among the best `k`.
pub(super) fn insert_top(top: &mut Vec<Entry>, k: usize, e: Entry) {
    if top.len() == k && !top.last().is_some_and(|&last| above(e, last)) {
        return;
    }
    let pos = top.partition_point(|&x| above(x, e));
    if top.len() == k {
        top.pop();
    }
    top.insert(pos, e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::strategy::Member;

    /// One pool, members over dense scores, replayed label by label against `Pool::add`/`finish`
    /// over all labels at once: every strategy, to the bit.
    #[test]
    fn a_label_replayed_is_the_vote_of_that_label_to_the_bit() {
        let scores: Vec<Vec<f32>> = vec![
            vec![0.61, 0.0, 0.3, 0.09, f32::NAN],
            vec![0.2, 0.5, 0.1, 0.2, 0.0],
            vec![0.05, 0.05, 0.7, 0.1, 0.1],
        ];
        let strategies = [
            Strategy::Soft,
            Strategy::Hard,
            Strategy::Rank { k: 2 },
            Strategy::Max,
            Strategy::Geometric { floor: 1e-3 },
        ];
        for strategy in strategies {
            let raw = vec![
                (Voter::Model(0), 1.0),
                (Voter::Model(1), 2.5),
                (Voter::Model(2), 0.7),
            ];
            let covers: Vec<Vec<u32>> = vec![vec![0, 1, 2, 3, 4]; 3];
            let covers: Vec<&[u32]> = covers.iter().map(Vec::as_slice).collect();
            let pool = Pool::new(strategy, raw, &covers, 5);
            let tops: Vec<Vec<Entry>> = scores
                .iter()
                .map(|s| {
                    let mut top = Vec::new();
                    for (l, &v) in s.iter().enumerate() {
                        let e = Entry {
                            score: clean(v),
                            label: l as u32,
                        };
                        if e.score > 0.0 {
                            insert_top(&mut top, 2, e);
                        }
                    }
                    top
                })
                .collect();
            let cap = super::super::super::strategy::accumulator_len(5);
            let (mut out, mut tb) = (vec![0.0; cap], vec![0.0; cap]);
            pool.begin(&mut out, Some(&mut tb));
            let mut tmp = Vec::new();
            for (i, member) in pool.members.iter().enumerate() {
                let input = super::super::super::strategy::Input {
                    ids: super::super::super::select::Ids::Dense,
                    scores: &scores[i],
                    top: &tops[i],
                };
                pool.add(member, &input, &mut out, Some(&mut tb), &mut tmp);
            }
            pool.finish(&mut out, Some(&mut tb));
            for l in 0..5u32 {
                let (s, t) = pool_at(&pool, l, |v| {
                    let Voter::Model(i) = v else { unreachable!() };
                    (Some(scores[i][l as usize]), &tops[i][..])
                });
                assert_eq!(
                    s.to_bits(),
                    out[l as usize].to_bits(),
                    "{strategy:?} label {l}"
                );
                if strategy.has_tiebreak() {
                    assert_eq!(t.to_bits(), tb[l as usize].to_bits(), "{strategy:?} tb {l}");
                }
            }
            let _: &[Member] = &pool.members;
        }
    }
}
