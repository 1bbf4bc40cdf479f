//! Hot float loops built twice: for the baseline x86-64 CPU and for AVX2 / AVX-512, chosen at run
//! time, so one portable binary runs eight or sixteen floats per instruction where the CPU can; and
//! what such loops call: a map-and-sum in fixed lanes (reproducible, and no chain of dependent
//! adds), and the branch-free `ln`/`exp` (scalar libm calls do not vectorise: in fastText's
//! hierarchical softmax and in the vote's temperature they cost more than the arithmetic around
//! them). Both are within a few ulp of `f32::ln`/`f32::exp` over the ranges used (tested below);
//! `exp` is Cephes' `expf`, the polynomial most SIMD math libraries use. Their polynomials
//! use fused multiply-adds (`mul_add`): one instruction a step where the CPU has FMA, and the same
//! correctly rounded result from libm where it has not, so every build answers alike. The one
//! softmax that fastText's softmax models and ONNX models that output logits both go through
//! lives here too.

/// `widen!(pub(crate) fn name(args) -> T = body)` defines `name`, which calls `body` (an
/// `#[inline(always)]` function) compiled for AVX-512 or AVX2 with FMA (sixteen or eight floats per
/// instruction instead of four) where the CPU has it. The loops here are written lane by lane, so both builds do the same float
/// operations in the same order: the answer does not depend on the CPU.
macro_rules! widen {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use widen;

/// Lanes of the fixed-order reductions: four AVX-512 registers, eight AVX2 ones.
pub(crate) const LANES: usize = 32;

/// Replaces each `x` of `xs` by `f(x)` and returns the sum of the results, in [`LANES`] lanes (a
/// fixed order, so the result is reproducible; several registers of lanes, so the adds do not
/// wait on each other). One pass: the values are summed as they are written.
#[inline(always)]
pub(crate) fn map_sum(xs: &mut [f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            c[i] = f(c[i]);
            lanes[i] += c[i];
        }
    }
    let rest = chunks.into_remainder();
    rest.iter_mut().for_each(|v| *v = f(*v));
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

widen!(
    /// Softmax of one row of logits, in place, with `floor` added to every probability (fastText
    /// reports p + 1e-5; ONNX logits add 0). Shifted by the row's largest logit so nothing
    /// overflows. A row with a NaN turns all NaN, as the plain formula would make it (the vote
    /// then counts it as zeros); a row whose largest logit is infinite is left as it is.
    pub(crate) fn softmax(row: &mut [f32], floor: f32) = softmax_body
);

#[inline(always)]
fn softmax_body(row: &mut [f32], floor: f32) {
    // The largest logit and whether there is a NaN, in lanes (NaN never wins a `>`).
    let (mut tops, mut nan) = ([f32::NEG_INFINITY; LANES], [false; LANES]);
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            tops[i] = if c[i] > tops[i] { c[i] } else { tops[i] };
            nan[i] |= c[i].is_nan();
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in tops.iter().chain(rest) {
        max = if v > max { v } else { max };
    }
    if nan.iter().any(|&n| n) || rest.iter().any(|v| v.is_nan()) {
        row.fill(f32::NAN);
        return;
    }
    if !max.is_finite() {
        return;
    }
    // Below e^-87 a term is beneath f32's normal range (and [`exp`]'s clamp): it counts as 0.
    let term = |x: f32| {
        let z = x - max;
        if z > -87.0 {
            exp(z)
        } else {
            0.0
        }
    };
    let inv = 1.0 / map_sum(row, term);
    row.iter_mut().for_each(|p| *p = *p * inv + floor);
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
    let p = f2.mul_add(1.0 / 9.0, 1.0 / 7.0);
    let p = p.mul_add(f2, 1.0 / 5.0);
    let p = p.mul_add(f2, 1.0 / 3.0);
    let p = p.mul_add(f2, 1.0);
    (2.0 * f).mul_add(p, exponent * std::f32::consts::LN_2)
}

/// `e^x`, for x clamped to [-87, 88] (below that the result is ~0 anyway).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to the nearest integer
    let x = if x > -87.0 { x } else { -87.0 };
    let x = if x < 88.0 { x } else { 88.0 };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x)); // x - n ln 2, in two parts
    let z = r * r;
    let p = 1.987_569_1e-4f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 5e-1);
    let y = p.mul_add(z, r + 1.0);
    // The low mantissa bits of `shifted` hold n: 2^n is built from them with integer operations
    // (a float-to-int `as` would saturate lane by lane and defeat vectorisation).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn softmax_is_stable_and_sums_to_one() {
        let mut row: Vec<f32> = (0..1000).map(|i| (i % 37) as f32 * 0.7 - 10.0).collect();
        row[3] = 1000.0;
        row[4] = 999.0;
        softmax(&mut row, 0.0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((row[3] - 0.731_058_6).abs() < 1e-6, "{}", row[3]);
        assert_eq!(row[0], 0.0);
        // Against the plain formula in f64, over as many logits as the demo's label space.
        let logits: Vec<f32> = (0..7_203)
            .map(|i| ((i * 7919) % 101) as f32 / 9.0)
            .collect();
        let mut got = logits.clone();
        softmax(&mut got, 0.0);
        let max = logits.iter().copied().fold(f32::MIN, f32::max) as f64;
        let total: f64 = logits.iter().map(|&z| (z as f64 - max).exp()).sum();
        for (g, &z) in got.iter().zip(&logits) {
            let want = (z as f64 - max).exp() / total;
            assert!(
                (*g as f64 - want).abs() <= 1e-6 * want,
                "{g} against {want}"
            );
        }
        // The wide build (where this CPU has one) answers what the baseline build answers.
        let mut base = logits.clone();
        softmax_body(&mut base, 0.0);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&base));
        // A NaN logit spoils the row, as it would the formula; an infinite one is left alone.
        let mut bad = vec![0.5f32; 40];
        bad[39] = f32::NAN;
        softmax(&mut bad, 0.0);
        assert!(bad.iter().all(|v| v.is_nan()));
        let mut inf = [1.0, f32::INFINITY];
        softmax(&mut inf, 0.0);
        assert_eq!(inf, [1.0, f32::INFINITY]);
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
}
