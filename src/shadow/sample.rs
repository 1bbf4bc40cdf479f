//! Which live items are mirrored: item number n (counted from staging) is picked when a seeded
//! hash of n falls below the fraction. Deterministic for a seed and an order of items, so tests
//! know exactly which items were picked; one atomic increment per item on the request path.

use std::sync::atomic::{AtomicU64, Ordering};

/// Picks a fraction of items.
#[derive(Debug)]
pub struct Sampler {
    /// Picked when `hash < threshold`; `u64::MAX` picks every item.
    threshold: u64,
    seed: u64,
    next: AtomicU64,
}

impl Sampler {
    /// `fraction` is clamped to [0, 1]; NaN picks nothing.
    pub fn new(fraction: f64, seed: u64) -> Self {
        let threshold = if fraction >= 1.0 {
            u64::MAX
        } else if fraction > 0.0 {
            // Exact enough: a share of 2^64 values.
            (fraction * 18_446_744_073_709_551_616.0) as u64
        } else {
            0
        };
        Sampler {
            threshold,
            seed,
            next: AtomicU64::new(0),
        }
    }

    /// Whether the next item is picked.
    pub fn pick(&self) -> bool {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        picked(self.threshold, self.seed, n)
    }
}

fn picked(threshold: u64, seed: u64, n: u64) -> bool {
    threshold == u64::MAX || splitmix64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) < threshold
}

/// A good 64-bit mixer (Steele, Lea, Flood: SplitMix64's finaliser).
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &Sampler, n: usize) -> usize {
        (0..n).filter(|_| s.pick()).count()
    }

    #[test]
    fn all_and_nothing() {
        assert_eq!(count(&Sampler::new(1.0, 7), 1000), 1000);
        assert_eq!(count(&Sampler::new(2.0, 7), 1000), 1000);
        assert_eq!(count(&Sampler::new(0.0, 7), 1000), 0);
        assert_eq!(count(&Sampler::new(-1.0, 7), 1000), 0);
        assert_eq!(count(&Sampler::new(f64::NAN, 7), 1000), 0);
    }

    #[test]
    fn a_fraction_picks_about_that_share_the_same_way_every_time() {
        let a = Sampler::new(0.25, 42);
        let b = Sampler::new(0.25, 42);
        let picks_a: Vec<bool> = (0..20_000).map(|_| a.pick()).collect();
        let picks_b: Vec<bool> = (0..20_000).map(|_| b.pick()).collect();
        assert_eq!(picks_a, picks_b);
        let n = picks_a.iter().filter(|&&p| p).count();
        // 5,000 expected; the standard deviation is about 61.
        assert!((4_700..5_300).contains(&n), "{n}");
        // Another seed picks other items.
        let c = Sampler::new(0.25, 43);
        let picks_c: Vec<bool> = (0..20_000).map(|_| c.pick()).collect();
        assert_ne!(picks_a, picks_c);
    }
}
