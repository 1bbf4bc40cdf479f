//! Hierarchical softmax: fastText's Huffman tree over the labels, laid out level by level so that
//! scoring every leaf of a row is a few passes over contiguous memory.
//!
//! Every leaf scores the sum of `log(p + 1e-5)` along its path from the root (left: 1 − σ,
//! right: σ, exact sigmoid of the node's output row), and a leaf whose path drops below
//! log(1e-5) at any node scores 0: what fastText's depth-first search answers with threshold 0.
//!
//! Where fastText searches depth first, [`Tree::walk`] goes one level of the tree at a time. At
//! load the internal nodes are numbered level by level from the root, and the output matrix rows
//! follow that numbering ([`Tree::node_rows`]), so a level's nodes, their logits and their branch
//! terms sit side by side. Each level hands its nodes' scores plus their branch terms to all of
//! their left children, then all of their right children, in one wide loop; the next level's
//! nodes are picked out of those children in order, and the leaves at the end, in column order. A
//! node below the floor hands down −∞, which prunes its subtree exactly as the search does. Same
//! additions as the search, so the same answer to the bit, with no stack, no unpredictable branch
//! and no write that depends on the one before.

use super::LOG_EPS;
use crate::wide::{exp, ln, widen};

/// The children of every internal node of fastText's Huffman tree over label counts (sorted by
/// count, descending, as the dictionary holds them): the same construction as fastText's
/// `HierarchicalSoftmaxLoss::buildTree`, so node `labels + i` scores with output row `i`.
pub(super) fn huffman_children(counts: &[i64]) -> Vec<[u32; 2]> {
    let n = counts.len();
    let mut count: Vec<i64> = counts.to_vec();
    count.resize(2 * n - 1, 1_000_000_000_000_000);
    let mut children = Vec::with_capacity(n.saturating_sub(1));
    let (mut leaf, mut node) = (n as i64 - 1, n);
    for i in n..2 * n - 1 {
        let mut pick = [0usize; 2];
        for p in &mut pick {
            if leaf >= 0 && count[leaf as usize] < count[node] {
                *p = leaf as usize;
                leaf -= 1;
            } else {
                *p = node;
                node += 1;
            }
        }
        count[i] = count[pick[0]] + count[pick[1]];
        children.push([pick[0] as u32, pick[1] as u32]);
    }
    children
}

/// A tree laid out for [`Tree::walk`]. Internal nodes are numbered level by level from the root
/// (the root is 0); "children" are every node but the root, numbered as the walk writes them:
/// level by level, within a level the left children of its nodes in order, then the right ones.
pub(super) struct Tree {
    /// Level d's internal nodes are `levels[d]..levels[d + 1]`.
    levels: Vec<usize>,
    /// Internal node k (k > 0) is child `from_child[k]`; `from_child[0]` (the root) is unused.
    from_child: Vec<u32>,
    /// Column c's leaf is child `column_child[c]`.
    column_child: Vec<u32>,
    /// Internal node k is fastText's node `labels + node_rows[k]`, scored by output row
    /// `node_rows[k]`.
    node_rows: Vec<usize>,
}

impl Tree {
    /// Lays out the tree of `children` (as [`huffman_children`] gives it) over `labels` leaves,
    /// column c holding leaf c.
    pub(super) fn new(children: &[[u32; 2]], labels: usize) -> Self {
        let nodes = children.len();
        let mut tree = Tree {
            levels: vec![0],
            from_child: Vec::with_capacity(nodes),
            column_child: vec![0; labels],
            node_rows: Vec::with_capacity(nodes),
        };
        if nodes == 0 {
            return tree;
        }
        // (fastText's internal node index, child number) of each node of the current level.
        let mut level = vec![(nodes - 1, 0u32)];
        let mut written = 0usize;
        while !level.is_empty() {
            let n = level.len();
            let mut next = Vec::new();
            for (side, first) in [(0, written), (1, written + n)] {
                for (j, &(node, _)) in level.iter().enumerate() {
                    let child = children[node][side] as usize;
                    let number = (first + j) as u32;
                    if child < labels {
                        tree.column_child[child] = number;
                    } else {
                        next.push((child - labels, number));
                    }
                }
            }
            for (node, number) in level {
                tree.node_rows.push(node);
                tree.from_child.push(number);
            }
            tree.levels.push(tree.node_rows.len());
            written += 2 * n;
            level = next;
        }
        tree
    }

    /// The output matrix's rows in the walk's node order (then the rest, unused by the tree),
    /// for a matrix of `rows` rows.
    pub(super) fn node_rows(&self, rows: usize) -> Vec<usize> {
        let mut order = self.node_rows.clone();
        let mut used = vec![false; rows];
        order.iter().for_each(|&r| used[r] = true);
        order.extend((0..rows).filter(|&r| !used[r]));
        order
    }

    /// Column j now holds what column `order[j]` held.
    pub(super) fn reorder_columns(&mut self, order: &[usize]) {
        self.column_child = order.iter().map(|&c| self.column_child[c]).collect();
    }

    /// Scores every column's leaf into `dst` (one per column), from `node_logits`: the row's
    /// products with the output matrix rows in [`Tree::node_rows`] order.
    pub(super) fn walk(&self, node_logits: &[f32], scratch: &mut TreeScratch, dst: &mut [f32]) {
        let floor = LOG_EPS.ln();
        let nodes = self.node_rows.len();
        if nodes == 0 {
            // One label: the root is the leaf.
            dst.fill(1.0);
            return;
        }
        let TreeScratch {
            left,
            right,
            inner,
            children,
        } = scratch;
        left.resize(nodes, 0.0);
        right.resize(nodes, 0.0);
        branch_logs(&node_logits[..nodes], left, right);
        inner.resize(nodes, 0.0);
        children.resize(2 * nodes, 0.0);
        inner[0] = 0.0; // the root
        let mut written = 0;
        for level in self.levels.windows(2) {
            let (start, end) = (level[0], level[1]);
            // This level's nodes, picked out of the children the levels above wrote.
            if start > 0 {
                let (done, _) = children.split_at(written);
                for (s, &c) in inner[start..end]
                    .iter_mut()
                    .zip(&self.from_child[start..end])
                {
                    *s = done[c as usize];
                }
            }
            let (lefts, rights) =
                children[written..written + 2 * (end - start)].split_at_mut(end - start);
            hand_down(
                &inner[start..end],
                &left[start..end],
                &right[start..end],
                floor,
                lefts,
                rights,
            );
            written += 2 * (end - start);
        }
        for (d, &c) in dst.iter_mut().zip(&self.column_child) {
            *d = children[c as usize];
        }
        leaf_probabilities(dst, floor);
    }
}

/// Buffers a tree walk reuses from row to row.
#[derive(Default)]
pub(super) struct TreeScratch {
    left: Vec<f32>,
    right: Vec<f32>,
    /// Each internal node's path score.
    inner: Vec<f32>,
    /// Each child's path score.
    children: Vec<f32>,
}

widen!(
    /// Each internal node's two branch terms: fastText's `log(1 − σ(x) + 1e-5)` (left) and
    /// `log(σ(x) + 1e-5)` (right) of its logit x.
    fn branch_logs(logits: &[f32], left: &mut [f32], right: &mut [f32]) = branch_logs_body
);

#[inline(always)]
fn branch_logs_body(logits: &[f32], left: &mut [f32], right: &mut [f32]) {
    for ((&x, l), r) in logits.iter().zip(left.iter_mut()).zip(right.iter_mut()) {
        let f = 1.0 / (1.0 + exp(-x));
        *l = ln(1.0 - f + LOG_EPS);
        *r = ln(f + LOG_EPS);
    }
}

widen!(
    /// One level's nodes hand their path scores plus their branch terms down to their left and
    /// right children; a node below `floor` hands down −∞.
    fn hand_down(
        scores: &[f32],
        left: &[f32],
        right: &[f32],
        floor: f32,
        lefts: &mut [f32],
        rights: &mut [f32]
    ) = hand_down_body
);

#[inline(always)]
fn hand_down_body(
    scores: &[f32],
    left: &[f32],
    right: &[f32],
    floor: f32,
    lefts: &mut [f32],
    rights: &mut [f32],
) {
    let n = scores.len();
    let (left, right, lefts, rights) = (&left[..n], &right[..n], &mut lefts[..n], &mut rights[..n]);
    for i in 0..n {
        let s = if scores[i] < floor {
            f32::NEG_INFINITY
        } else {
            scores[i]
        };
        lefts[i] = s + left[i];
        rights[i] = s + right[i];
    }
}

widen!(
    /// A leaf's path score to its probability; leaves the search pruned (below `floor`) to 0.
    fn leaf_probabilities(scores: &mut [f32], floor: f32) = leaf_probabilities_body
);

#[inline(always)]
fn leaf_probabilities_body(scores: &mut [f32], floor: f32) {
    for s in scores.iter_mut() {
        let p = exp(*s);
        *s = if *s >= floor { p } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fastText's own depth-first search, kept here as the reference the walk must equal;
    /// `node_logits[i]` is node `labels + i`'s.
    fn depth_first(children: &[[u32; 2]], node_logits: &[f32], labels: usize) -> Vec<f32> {
        let floor = LOG_EPS.ln();
        let mut out = vec![0.0f32; labels];
        let (mut left, mut right) = (vec![0.0; children.len()], vec![0.0; children.len()]);
        branch_logs(&node_logits[..children.len()], &mut left, &mut right);
        let mut stack = vec![(labels + children.len() - 1, 0.0f32)];
        while let Some((node, score)) = stack.pop() {
            if score < floor {
                continue;
            }
            if node < labels {
                out[node] = exp(score);
                continue;
            }
            let [l, r] = children[node - labels];
            stack.push((r as usize, score + right[node - labels]));
            stack.push((l as usize, score + left[node - labels]));
        }
        out
    }

    /// Logits from ±0.1 (nothing pruned) to ±12 (most of the tree pruned) as `seed` grows.
    fn logits(nodes: usize, seed: u32) -> Vec<f32> {
        let scale = 0.1 + seed as f32 * 0.6;
        (0..nodes)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 40_503);
                ((h >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    /// The walk over `tree`, given logits in fastText's node order.
    fn walk(tree: &Tree, logits: &[f32], labels: usize) -> Vec<f32> {
        let in_walk_order: Vec<f32> = tree.node_rows.iter().map(|&r| logits[r]).collect();
        let mut got = vec![0.0f32; labels];
        tree.walk(&in_walk_order, &mut TreeScratch::default(), &mut got);
        got
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn the_level_walk_equals_the_depth_first_search_to_the_bit() {
        // Skewed counts make a deep, lopsided tree, as real label frequencies do; equal counts
        // a balanced one; doubling counts the deepest possible (one leaf per level).
        let skewed: Vec<i64> = (0..300)
            .map(|i| 1 + (i * 7919) % 97 * (i % 5 + 1))
            .collect();
        let mut doubling: Vec<i64> = (0..30).map(|i| 1i64 << i).collect();
        doubling.reverse(); // the dictionary holds counts in descending order
        let mut pruned = 0;
        for counts in [skewed, vec![5; 257], doubling] {
            let labels = counts.len();
            let children = huffman_children(&counts);
            let tree = Tree::new(&children, labels);
            assert_eq!(tree.node_rows(labels).len(), labels);
            for seed in 0..20 {
                let logits = logits(labels - 1, seed);
                let want = depth_first(&children, &logits, labels);
                assert_eq!(
                    bits(&walk(&tree, &logits, labels)),
                    bits(&want),
                    "seed {seed}"
                );
                pruned += want.iter().filter(|&&p| p == 0.0).count();
            }
        }
        assert!(pruned > 0, "some subtrees were pruned");
    }

    #[test]
    fn reordered_columns_carry_their_leaves() {
        let counts: Vec<i64> = (0..40).map(|i| 100 - 2 * i).collect();
        let children = huffman_children(&counts);
        let mut tree = Tree::new(&children, 40);
        let order: Vec<usize> = (0..40).map(|j| (j * 7) % 40).collect();
        tree.reorder_columns(&order);
        let logits = logits(39, 3);
        let want = depth_first(&children, &logits, 40);
        let got = walk(&tree, &logits, 40);
        for (j, &c) in order.iter().enumerate() {
            assert_eq!(
                got[j].to_bits(),
                want[c].to_bits(),
                "column {j} holds leaf {c}"
            );
        }
    }

    #[test]
    fn one_label_is_certain() {
        let tree = Tree::new(&huffman_children(&[3]), 1);
        let mut dst = [0.0];
        tree.walk(&[0.7], &mut TreeScratch::default(), &mut dst);
        assert_eq!(dst, [1.0]);
    }
}
