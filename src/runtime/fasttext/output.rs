//! fastText's output layer for a batch: every row's sentence vector times every output row of the
//! model (a label, or a tree node of hierarchical softmax).
//!
//! Each score sums its `dim` products in one fixed order (k = 0, 1, 2, ...) whatever the batch
//! size, so a row's scores never depend on the rows batched with it: an item gets the same answer,
//! to the bit, alone or in a batch of 64 (a GEMM library picks different kernels, and so
//! different roundings, by batch size). The matrix is stored in blocks of [`BLOCK`] output rows,
//! each block `dim × BLOCK` floats, transposed, so one pass reads it front to back once per batch;
//! four batch rows share each load of it.

use crate::wide::widen;

/// Output rows per block: one AVX-512 register, two AVX2 ones.
const BLOCK: usize = 16;
/// Batch rows computed together against one block.
const ROWS: usize = 4;

/// An output matrix (`n` rows of `dim`), laid out for [`OutputMatrix::products`].
pub(super) struct OutputMatrix {
    /// Block b holds, for k in 0..dim, the k-th weight of rows `b·BLOCK ..`: `dim × BLOCK` floats;
    /// the last block is padded with zero rows.
    blocks: Vec<f32>,
    n: usize,
    dim: usize,
}

impl OutputMatrix {
    /// From `n × dim` floats, row-major (as fastText stores it).
    pub(super) fn new(rows: &[f32], n: usize, dim: usize) -> Self {
        let mut blocks = vec![0.0f32; n.div_ceil(BLOCK) * BLOCK * dim];
        for (i, row) in rows.chunks_exact(dim.max(1)).take(n).enumerate() {
            let (b, l) = (i / BLOCK, i % BLOCK);
            for (k, &w) in row.iter().enumerate() {
                blocks[(b * dim + k) * BLOCK + l] = w;
            }
        }
        OutputMatrix { blocks, n, dim }
    }

    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    /// Output row `i`, as fastText stores it.
    fn row(&self, i: usize) -> Vec<f32> {
        let (b, l) = (i / BLOCK, i % BLOCK);
        (0..self.dim)
            .map(|k| self.blocks[(b * self.dim + k) * BLOCK + l])
            .collect()
    }

    /// The same matrix with its rows in `order` (row j is the old row `order[j]`).
    pub(super) fn select_rows(&self, order: &[usize]) -> Self {
        let rows: Vec<f32> = order.iter().flat_map(|&i| self.row(i)).collect();
        OutputMatrix::new(&rows, order.len(), self.dim)
    }

    /// `out[r · n + i]` = Σ_k `hidden[r · dim + k]` · row i's k-th weight, for each of the `rows`
    /// sentence vectors in `hidden`. Every cell is written: what `out` held is not cleared first.
    pub(super) fn products(&self, hidden: &[f32], rows: usize, out: &mut Vec<f32>) {
        out.resize(rows * self.n, 0.0);
        products(
            &self.blocks,
            self.n,
            self.dim,
            &hidden[..rows * self.dim],
            out,
        );
    }
}

widen!(
    /// [`OutputMatrix::products`] over the raw blocks.
    fn products(blocks: &[f32], n: usize, dim: usize, hidden: &[f32], out: &mut [f32]) =
        products_body
);

#[inline(always)]
fn products_body(blocks: &[f32], n: usize, dim: usize, hidden: &[f32], out: &mut [f32]) {
    if dim == 0 {
        return;
    }
    let rows = hidden.len() / dim;
    for (b, block) in blocks.chunks_exact(dim * BLOCK).enumerate() {
        let first = b * BLOCK;
        let cols = BLOCK.min(n - first);
        let mut r = 0;
        while r + ROWS <= rows {
            let acc = dot_block::<ROWS>(block, &hidden[r * dim..(r + ROWS) * dim]);
            store(&acc, out, r, n, first, cols);
            r += ROWS;
        }
        while r < rows {
            let acc = dot_block::<1>(block, &hidden[r * dim..(r + 1) * dim]);
            store(&acc, out, r, n, first, cols);
            r += 1;
        }
    }
}

/// `R` sentence vectors against one block: `[R][BLOCK]` scores, each summed over k in order.
#[inline(always)]
fn dot_block<const R: usize>(block: &[f32], hidden: &[f32]) -> [[f32; BLOCK]; R] {
    let dim = hidden.len() / R;
    let mut acc = [[0.0f32; BLOCK]; R];
    for (k, w) in block.chunks_exact(BLOCK).enumerate() {
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = hidden[r * dim + k];
            for (a, &w) in acc.iter_mut().zip(w) {
                *a += x * w;
            }
        }
    }
    acc
}

#[inline(always)]
fn store<const R: usize>(
    acc: &[[f32; BLOCK]; R],
    out: &mut [f32],
    row: usize,
    n: usize,
    first: usize,
    cols: usize,
) {
    for (r, acc) in acc.iter().enumerate() {
        let at = (row + r) * n + first;
        out[at..at + cols].copy_from_slice(&acc[..cols]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 37 rows of dim 5 (blocks 16 + 16 + 5), against 6 sentence vectors (one group of four and
    /// two single rows): every product equals the plain sum in order, and a row's products are the
    /// same alone as in the batch, to the bit.
    #[test]
    fn products_are_in_order_sums_whatever_the_batch() {
        let (n, dim) = (37, 5);
        let w: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.3)
            .collect();
        let h: Vec<f32> = (0..6 * dim)
            .map(|i| ((i * 13) % 29) as f32 / 7.0 - 1.9)
            .collect();
        let m = OutputMatrix::new(&w, n, dim);
        let mut batch = Vec::new();
        m.products(&h, 6, &mut batch);
        for r in 0..6 {
            let mut alone = Vec::new();
            m.products(&h[r * dim..(r + 1) * dim], 1, &mut alone);
            for i in 0..n {
                let mut want = 0.0f32;
                for k in 0..dim {
                    want += h[r * dim + k] * w[i * dim + k];
                }
                assert_eq!(
                    batch[r * n + i].to_bits(),
                    want.to_bits(),
                    "row {r} output {i}"
                );
                assert_eq!(
                    alone[i].to_bits(),
                    want.to_bits(),
                    "row {r} alone, output {i}"
                );
            }
        }
    }

    #[test]
    fn select_rows_reorders_the_outputs() {
        let w: Vec<f32> = (0..3 * 2).map(|i| i as f32).collect(); // rows [0,1] [2,3] [4,5]
        let m = OutputMatrix::new(&w, 3, 2).select_rows(&[2, 0, 1]);
        let mut out = Vec::new();
        m.products(&[1.0, 10.0], 1, &mut out);
        assert_eq!(out, vec![54.0, 10.0, 32.0]);
    }
}
