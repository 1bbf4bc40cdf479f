//! Timing helpers shared by the benches: interleaved runs, medians, readable durations.

#![allow(dead_code)] // each bench uses its own subset

use std::time::{Duration, Instant};

/// Wall time of one call.
pub fn time(f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Median of the samples (sorts them).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Medians of `a` and `b`, run alternately (`iters` each, after a tenth as warm-up) so that drift
/// (turbo, caches, the other core's load) hits both alike.
pub fn interleaved(
    iters: usize,
    a: &mut impl FnMut(),
    b: &mut impl FnMut(),
) -> (Duration, Duration) {
    for _ in 0..iters / 10 {
        a();
        b();
    }
    let (mut ta, mut tb) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for _ in 0..iters {
        ta.push(time(a));
        tb.push(time(b));
    }
    (median(&mut ta), median(&mut tb))
}

pub fn fmt(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Deterministic values in [-1, 1) without a dependency.
pub fn pseudo_random(n: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
