//! The few numeric kernels the voting loops share: cleaning a model's raw scores, and a branch-free
//! `ln`/`exp` that the compiler can vectorise (the geometric vote and temperature take a logarithm
//! of every score of every model, 350,000 per item; scalar libm calls would cost more than the
//! models themselves).
//!
//! Both are within a few ulp of `f32::ln`/`f32::exp` over the ranges used here (tested below);
//! `exp` is Cephes' `expf`, the polynomial most SIMD math libraries use. The loops that run them
//! over every score are built twice ([`crate::wide::widen!`]): for the baseline x86-64 CPU and for AVX2 /
//! AVX-512, chosen at run time, with the same answer to the bit.

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

/// Natural logarithm of a positive normal number (callers clamp to a floor >= `f32::MIN_POSITIVE`).
/// x = m·2^e with m in [√½, √2); ln m = 2·atanh(f), f = (m − 1)/(m + 1), |f| < 0.172, whose series
/// to f⁹ is exact to float precision.
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    const SQRT2: f32 = std::f32::consts::SQRT_2;
    let bits = x.to_bits();
    let exponent = ((bits >> 23) as i32 - 127) as f32;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // mantissa in [1, 2)
    let (m, exponent) = if m > SQRT2 {
        (m * 0.5, exponent + 1.0)
    } else {
        (m, exponent)
    };
    let f = (m - 1.0) / (m + 1.0);
    let f2 = f * f;
    let p = f2 * (1.0 / 9.0) + 1.0 / 7.0;
    let p = p * f2 + 1.0 / 5.0;
    let p = p * f2 + 1.0 / 3.0;
    let p = p * f2 + 1.0;
    2.0 * f * p + exponent * std::f32::consts::LN_2
}

/// `e^x`, for x clamped to [-87, 88] (below that the result is ~0 anyway).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to the nearest integer
    let x = if x > -87.0 { x } else { -87.0 };
    let x = if x < 88.0 { x } else { 88.0 };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4; // x - n ln 2, in two parts
    let z = r * r;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let y = p * z + r + 1.0;
    // The low mantissa bits of `shifted` hold n: 2^n is built from them with integer operations
    // (a float-to-int `as` would saturate lane by lane and defeat vectorisation).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

const LANES: usize = 8;

/// Largest cleaned value of `xs` (0 for an empty slice). Eight independent lanes so it vectorises;
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

/// Sum of `xs`, in eight lanes (a fixed order, so the result is reproducible).
#[inline(always)]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            lanes[i] += c[i];
        }
    }
    lanes.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ln_matches_std_within_a_few_ulp() {
        let mut x = f32::MIN_POSITIVE;
        while x < 4.0 {
            let (got, want) = (ln(x), x.ln());
            assert!(
                (got - want).abs() <= 4e-7 * want.abs().max(1.0),
                "ln({x}) = {got}, want {want}"
            );
            x *= 1.001_3;
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn exp_matches_std_within_a_few_ulp() {
        let mut x = -86.0f32;
        while x < 87.0 {
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4e-7 * want,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(1000.0).is_finite());
    }

    #[test]
    fn reductions_clean_and_cover_the_remainder() {
        let xs = [0.1, f32::NAN, 0.3, -1.0, 0.2, 0.0, 0.0, 0.0, 0.9, 0.05];
        assert_eq!(max_clean(&xs), 0.9);
        assert_eq!(max_clean(&[]), 0.0);
        assert!((sum(&[1.0; 11]) - 11.0).abs() < 1e-6);
    }
}
