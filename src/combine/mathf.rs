//! The few numeric kernels the voting loops share: cleaning a model's raw scores, its largest
//! score, and (from [`crate::wide`]) the branch-free `ln`/`exp` that the
//! geometric vote and temperature take of every score of every model, 350,000 per item. The
//! loops that run them over every score are built twice ([`crate::wide::widen!`]): for the
//! baseline x86-64 CPU and for AVX2 / AVX-512, chosen at run time, with the same answer to the bit.

use crate::wide::LANES;
pub(crate) use crate::wide::{exp, ln};

/// A model's score as the vote reads it: a probability. NaN and negative scores count as 0 and
/// anything above 1 (including +inf) as 1, so one broken model can never poison the others.
#[inline(always)]
pub(crate) fn clean(x: f32) -> f32 {
    let x = if x > 0.0 { x } else { 0.0 };
    if x < 1.0 {
        x
    } else {
        1.0
    }
}

/// Largest cleaned value of `xs` (0 for an empty slice). In [`LANES`] independent lanes so it
/// vectorises without one long chain of dependent operations;
/// clean() is monotone, so cleaning the maximum equals the maximum of the cleaned values (NaN never
/// wins a `>` comparison).
#[inline(always)]
pub(crate) fn max_clean(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    let mut m = 0.0f32;
    for &v in lanes.iter().chain(rest) {
        m = if v > m { v } else { m };
    }
    clean(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wide::map_sum;

    #[test]
    fn clean_maps_garbage_to_probabilities() {
        assert_eq!(clean(f32::NAN), 0.0);
        assert_eq!(clean(-0.5), 0.0);
        assert_eq!(clean(f32::NEG_INFINITY), 0.0);
        assert_eq!(clean(f32::INFINITY), 1.0);
        assert_eq!(clean(7.0), 1.0);
        assert_eq!(clean(0.25), 0.25);
    }

    #[test]
    fn reductions_clean_and_cover_the_remainder() {
        let xs = [0.1, f32::NAN, 0.3, -1.0, 0.2, 0.0, 0.0, 0.0, 0.9, 0.05];
        assert_eq!(max_clean(&xs), 0.9);
        assert_eq!(max_clean(&[]), 0.0);
        assert!((map_sum(&mut [1.0; 11], |x| x) - 11.0).abs() < 1e-6);
    }
}
