//! Top-k selection, the one piece of ordering every strategy and the final answer need.
//!
//! A voter's top-k (hard vote, rank vote, agreement, explanations) costs two streaming passes over
//! its scores and a look inside only the few blocks that hold a winner ([`voter_top`]); the final
//! ranking skips every block whose scores cannot enter the current top-k. Ties go to the lower
//! label id, so the order in which a model lists its labels never matters.

use super::mathf::{clean, max_clean};

/// Where a voter's scores land in the label space.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ids<'a> {
    /// `scores[j]` is global label `j` (models that list labels in label-space order, groups).
    Dense,
    /// `scores[j]` is global label `ids[j]`; ids are distinct.
    Mapped(&'a [u32]),
}

impl Ids<'_> {
    #[inline(always)]
    pub(crate) fn label(&self, j: usize) -> u32 {
        match self {
            Ids::Dense => j as u32,
            Ids::Mapped(ids) => ids[j],
        }
    }
}

/// One label and its score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Entry {
    pub score: f32,
    pub label: u32,
}

/// `a` ranks above `b`: higher score, then lower label id.
#[inline(always)]
fn above(a: Entry, b: Entry) -> bool {
    a.score > b.score || (a.score == b.score && a.label < b.label)
}

/// Scores per skip test.
const BLOCK: usize = 128;
/// Above this many, top lists use partial selection instead of one insertion pass.
const SMALL_K: usize = 64;

/// Appends to `out` the `k` best labels of one voter with a positive (cleaned) score, best first.
///
/// Two passes: first the maximum of every block of scores (vectorised); the k-th largest of those
/// maxima is a floor under the k-th best score (k distinct scores reach it), so the second pass
/// only looks inside the few blocks whose maximum reaches that floor. `maxima` and `pick` are
/// scratch space.
pub(crate) fn voter_top(
    scores: &[f32],
    ids: Ids<'_>,
    k: usize,
    out: &mut Vec<Entry>,
    maxima: &mut Vec<f32>,
    pick: &mut Vec<f32>,
) {
    if k == 0 {
        return;
    }
    let start = out.len();
    if k > SMALL_K {
        // A deep list (explanations with a large top_k): partial selection, then sort the winners.
        let positive = scores.iter().enumerate().map(|(j, &s)| Entry {
            score: clean(s),
            label: ids.label(j),
        });
        out.extend(positive.filter(|e| e.score > 0.0));
        let order = |a: &Entry, b: &Entry| b.score.total_cmp(&a.score).then(a.label.cmp(&b.label));
        let found = &mut out[start..];
        if found.len() > k {
            found.select_nth_unstable_by(k - 1, order);
        }
        out.truncate(start + k.min(out.len() - start));
        out[start..].sort_unstable_by(order);
        return;
    }
    maxima.clear();
    maxima.extend(scores.chunks(BLOCK).map(max_clean));
    let floor = if k < maxima.len() {
        pick.clear();
        pick.extend_from_slice(maxima);
        *pick.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1
    } else {
        0.0
    };
    for (b, block) in scores.chunks(BLOCK).enumerate() {
        let max = maxima[b];
        if max <= 0.0 || max < floor {
            continue;
        }
        for (i, &raw) in block.iter().enumerate() {
            let e = Entry {
                score: clean(raw),
                label: ids.label(b * BLOCK + i),
            };
            if e.score > 0.0 && e.score >= floor {
                insert(out, start, k, e);
            }
        }
    }
}

/// Whether any score of `block` is >= `bar`. One branch-free pass, so it vectorises.
#[inline]
fn reaches(block: &[f32], bar: f32) -> bool {
    block.iter().fold(false, |any, &x| any | (x >= bar))
}

/// Inserts `e` into the sorted list `out[start..]` of at most `k` entries, if it belongs there.
#[inline]
fn insert(out: &mut Vec<Entry>, start: usize, k: usize, e: Entry) {
    let len = out.len() - start;
    if len == k && !above(e, out[out.len() - 1]) {
        return;
    }
    let pos = start + out[start..].partition_point(|&x| above(x, e));
    if len == k {
        out.pop();
    }
    out.insert(pos, e);
}

/// The final ranking: the `k` best labels by (score, tiebreak, lower id) among labels whose score
/// is >= 0 (a negative score marks a label that is excluded or that no model covers), except
/// `skip`. `order` is scratch space for a large `k`.
pub(crate) fn rank_labels(
    scores: &[f32],
    tiebreak: Option<&[f32]>,
    skip: Option<u32>,
    k: usize,
    order: &mut Vec<u32>,
    out: &mut Vec<Entry>,
) {
    out.clear();
    let tb = |l: u32| tiebreak.map_or(0.0, |t| t[l as usize]);
    let cmp = |a: &u32, b: &u32| {
        let (sa, sb) = (scores[*a as usize], scores[*b as usize]);
        sb.total_cmp(&sa)
            .then_with(|| tb(*b).total_cmp(&tb(*a)))
            .then_with(|| a.cmp(b))
    };
    let eligible = |l: usize| scores[l] >= 0.0 && skip != Some(l as u32);
    if k == 0 {
        return;
    }
    if k > SMALL_K {
        // Large k: partial selection over the eligible labels, then sort only the winners.
        order.clear();
        order.extend((0..scores.len()).filter(|&l| eligible(l)).map(|l| l as u32));
        if order.len() > k {
            order.select_nth_unstable_by(k - 1, cmp);
            order.truncate(k);
        }
        order.sort_unstable_by(cmp);
        out.extend(order.iter().map(|&l| Entry {
            score: scores[l as usize],
            label: l,
        }));
        return;
    }
    // Small k: one pass keeping the best k, skipping blocks that cannot reach the current k-th.
    for (b, block) in scores.chunks(BLOCK).enumerate() {
        if out.len() == k && !reaches(block, out[k - 1].score) {
            continue;
        }
        for i in 0..block.len() {
            let l = b * BLOCK + i;
            if !eligible(l) {
                continue;
            }
            let l = l as u32;
            if out.len() == k && cmp(&l, &out[k - 1].label).is_ge() {
                continue;
            }
            let pos = out.partition_point(|e| cmp(&e.label, &l).is_lt());
            if out.len() == k {
                out.pop();
            }
            let score = scores[l as usize];
            out.insert(pos, Entry { score, label: l });
        }
    }
}

/// Each voter's top list, reused from item to item; voters are visited in any order.
#[derive(Debug, Default)]
pub(crate) struct TopLists {
    entries: Vec<Entry>,
    spans: Vec<(usize, usize)>,
    maxima: Vec<f32>,
    pick: Vec<f32>,
}

impl TopLists {
    /// Forgets every list; lists `0..voters` read as empty until filled.
    pub(crate) fn reset(&mut self, voters: usize) {
        self.entries.clear();
        self.spans.clear();
        self.spans.resize(voters, (0, 0));
    }

    /// Fills voter `i`'s list with its top `k`.
    pub(crate) fn fill(&mut self, i: usize, scores: &[f32], ids: Ids<'_>, k: usize) {
        let start = self.entries.len();
        voter_top(
            scores,
            ids,
            k,
            &mut self.entries,
            &mut self.maxima,
            &mut self.pick,
        );
        if let Some(span) = self.spans.get_mut(i) {
            *span = (start, self.entries.len());
        }
    }

    /// Sets voter `i`'s list to `top` (found beforehand).
    pub(crate) fn set(&mut self, i: usize, top: &[Entry]) {
        let start = self.entries.len();
        self.entries.extend_from_slice(top);
        if let Some(span) = self.spans.get_mut(i) {
            *span = (start, self.entries.len());
        }
    }

    pub(crate) fn get(&self, i: usize) -> &[Entry] {
        let (start, end) = self.spans.get(i).copied().unwrap_or((0, 0));
        &self.entries[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[Entry]) -> Vec<u32> {
        v.iter().map(|e| e.label).collect()
    }

    #[test]
    fn voter_top_orders_by_score_then_lower_id_and_skips_non_positive() {
        // Mapped ids: local 0..5 are global 9, 3, 7, 1, 5. Scores 0.2, 0.5, 0.2, NaN, 0.
        // Best: global 3 (0.5); then 0.2 twice: global 7 before global 9; NaN and 0 never enter.
        let ids = [9, 3, 7, 1, 5];
        let mut out = Vec::new();
        voter_top(
            &[0.2, 0.5, 0.2, f32::NAN, 0.0],
            Ids::Mapped(&ids),
            10,
            &mut out,
            &mut vec![],
            &mut vec![],
        );
        assert_eq!(labels(&out), vec![3, 7, 9]);
        out.clear();
        voter_top(
            &[0.2, 0.5, 0.2, f32::NAN, 0.0],
            Ids::Mapped(&ids),
            2,
            &mut out,
            &mut vec![],
            &mut vec![],
        );
        assert_eq!(labels(&out), vec![3, 7]);
    }

    #[test]
    fn voter_top_agrees_with_a_full_sort_across_blocks() {
        let scores: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1009) as f32 / 1009.0)
            .collect();
        let mut want: Vec<u32> = (0..1000).collect();
        want.sort_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(a.cmp(&b))
        });
        want.retain(|&l| scores[l as usize] > 0.0);
        for k in [1, 5, 64, 65, 300, 5000] {
            let mut out = Vec::new();
            voter_top(&scores, Ids::Dense, k, &mut out, &mut vec![], &mut vec![]);
            assert_eq!(labels(&out), want[..k.min(want.len())].to_vec(), "k = {k}");
        }
    }

    #[test]
    fn rank_labels_uses_tiebreak_skips_negatives_and_the_pinned_label() {
        // Scores: label 0 excluded (-inf), 1 and 2 tie at 0.5 (tiebreak 0.1 vs 0.3: 2 first),
        // 3 at 0.2, 4 pinned elsewhere (skipped), 5 uncovered (-1).
        let scores = [f32::NEG_INFINITY, 0.5, 0.5, 0.2, 0.9, -1.0];
        let tb = [0.0, 0.1, 0.3, 0.0, 0.0, 0.0];
        let mut order = Vec::new();
        let mut out = Vec::new();
        rank_labels(&scores, Some(&tb), Some(4), 10, &mut order, &mut out);
        assert_eq!(labels(&out), vec![2, 1, 3]);
        rank_labels(&scores, None, None, 2, &mut order, &mut out);
        assert_eq!(labels(&out), vec![4, 1]);
    }

    #[test]
    fn rank_labels_large_k_matches_small_k_path() {
        let scores: Vec<f32> = (0..500).map(|i| ((i * 31) % 97) as f32 / 97.0).collect();
        let (mut order, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
        rank_labels(&scores, None, None, 200, &mut order, &mut a);
        rank_labels(&scores, None, None, 64, &mut order, &mut b);
        assert_eq!(a.len(), 200);
        assert_eq!(a[..64], b[..]);
    }
}
