//! Prediction drift: how far the answers of a window of items have moved from a reference (the
//! answers on the validation set), without labels.
//!
//! **What is compared.** Each answer is reduced to its *bucket*: the first label's path cut to
//! `label_depth` components (`Electronics > Car Electronics > Koufinra Cases` → `Electronics` at
//! depth 1; depth 0 keeps the whole label), because 7,000 classes are too many to count item by
//! item. The reference's `top_labels` most frequent buckets are tracked, everything else counts
//! as `other`; answers that abstain are not in the label distribution but in the abstention rate.
//! The first label's score goes into a histogram of [`BINS`] equal bins over [0, 1] (above 1, the
//! last bin).
//!
//! **Statistics.** With p the window's shares and q the reference's over the same buckets, both
//! smoothed by half an item per bucket (so an empty bucket is never a zero):
//! population stability index PSI = Σ (p − q) · ln(p / q), and Jensen–Shannon distance
//! JS = sqrt(½ KL(p ‖ m) + ½ KL(q ‖ m)) with m = (p + q) / 2 in bits (0: the same, 1: disjoint).
//! The confidence PSI is the PSI of the score histograms. The abstention change is the window's
//! abstention rate minus the reference's. A statistic *crosses* its `[monitor]` threshold when it
//! is above it, once the window holds `min_items` items.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ensemble::manifest::MonitorConfig;
use crate::ensemble::Ensemble;

/// Bins of the confidence histogram over [0, 1].
pub const BINS: usize = 10;

/// The bin of a first-label score.
pub fn bin(score: f32) -> usize {
    if score.is_nan() || score <= 0.0 {
        0
    } else {
        ((score as f64 * BINS as f64) as usize).min(BINS - 1)
    }
}

/// How answers are put in buckets: the path separator and the depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucketing {
    pub separator: String,
    /// Path components kept; 0: the whole label.
    pub depth: usize,
}

impl Bucketing {
    /// The ensemble's: its label separator; `[monitor] label_depth`, by default 1 when label
    /// names are paths and 0 otherwise.
    pub fn of(ensemble: &Ensemble) -> Self {
        let separator = ensemble
            .vote
            .label_separator
            .clone()
            .unwrap_or_else(|| crate::combine::DEFAULT_SEPARATOR.to_owned());
        let paths = ensemble
            .labels
            .names()
            .iter()
            .any(|n| n.contains(separator.as_str()));
        let depth = ensemble
            .monitor
            .label_depth
            .unwrap_or(if paths { 1 } else { 0 });
        Bucketing { separator, depth }
    }

    /// The bucket of a first label's name.
    pub fn bucket<'n>(&self, name: &'n str) -> &'n str {
        if self.depth == 0 {
            return name;
        }
        match name
            .match_indices(self.separator.as_str())
            .nth(self.depth - 1)
        {
            Some((i, _)) => &name[..i],
            None => name,
        }
    }
}

/// Counts of answers: per bucket, abstentions, the confidence histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub items: u64,
    pub abstained: u64,
    /// Answered items per bucket.
    pub buckets: HashMap<String, u64>,
    /// First-label scores of answered items, [`BINS`] bins.
    pub confidence: Vec<u64>,
}

impl Counts {
    /// Counts one answer: its first label's bucket and score, or None when it abstained.
    pub fn add(&mut self, answer: Option<(&str, f32)>) {
        self.change(answer, true);
    }

    pub fn remove(&mut self, answer: Option<(&str, f32)>) {
        self.change(answer, false);
    }

    fn change(&mut self, answer: Option<(&str, f32)>, add: bool) {
        let step = |n: &mut u64| {
            if add {
                *n += 1
            } else {
                *n = n.saturating_sub(1)
            }
        };
        self.confidence.resize(BINS, 0);
        step(&mut self.items);
        match answer {
            None => step(&mut self.abstained),
            Some((bucket, score)) => {
                step(&mut self.confidence[bin(score)]);
                let n = self.buckets.entry(bucket.to_owned()).or_default();
                step(n);
                if *n == 0 {
                    self.buckets.remove(bucket);
                }
            }
        }
    }

    pub fn abstention(&self) -> f64 {
        if self.items == 0 {
            0.0
        } else {
            self.abstained as f64 / self.items as f64
        }
    }
}

/// The reference distribution of an ensemble's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Where it comes from (the validation set's path, or the file it was read from).
    pub source: String,
    /// The ensemble whose answers these are.
    pub ensemble: String,
    pub version: String,
    pub bucketing: Bucketing,
    pub counts: Counts,
}

impl Reference {
    /// Reads a reference written by `lastmile eval --write-reference`.
    pub fn read(path: &std::path::Path) -> Result<Reference, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the drift reference {}: {e}", path.display()))?;
        let mut r: Reference = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a drift reference (as `lastmile eval --write-reference` writes): {e}",
                path.display()
            )
        })?;
        r.counts.confidence.resize(BINS, 0);
        if r.counts.items == 0 {
            return Err(format!(
                "the drift reference {} counts no items",
                path.display()
            ));
        }
        Ok(r)
    }

    /// The `top` most frequent buckets (ties by name), the ones the statistics track.
    pub fn tracked(&self, top: usize) -> Vec<String> {
        let mut buckets: Vec<(&String, &u64)> = self.counts.buckets.iter().collect();
        buckets.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        buckets
            .into_iter()
            .take(top)
            .map(|(b, _)| b.clone())
            .collect()
    }
}

/// Builds a reference from answers, one at a time.
pub struct ReferenceBuilder {
    bucketing: Bucketing,
    counts: Counts,
}

impl ReferenceBuilder {
    pub fn new(ensemble: &Ensemble) -> Self {
        ReferenceBuilder {
            bucketing: Bucketing::of(ensemble),
            counts: Counts::default(),
        }
    }

    /// One answer: its first label's name and score, or None.
    pub fn add(&mut self, first: Option<(&str, f32)>) {
        let bucketing = &self.bucketing;
        self.counts
            .add(first.map(|(name, score)| (bucketing.bucket(name), score)));
    }

    pub fn finish(self, ensemble: &Ensemble, source: String) -> Reference {
        let mut counts = self.counts;
        counts.confidence.resize(BINS, 0);
        Reference {
            source,
            ensemble: ensemble.name.clone(),
            version: ensemble.version.clone(),
            bucketing: self.bucketing,
            counts,
        }
    }
}

/// The drift statistics of a window against its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub items: u64,
    pub psi: f64,
    pub js: f64,
    pub confidence_psi: f64,
    /// The window's abstention rate minus the reference's.
    pub abstention_change: f64,
    pub abstention: f64,
    pub reference_abstention: f64,
    /// Tracked buckets (then `other`), with the reference's and the window's shares.
    pub buckets: Vec<BucketShare>,
    /// The confidence histograms, as shares of answered items.
    pub confidence: Vec<f64>,
    pub reference_confidence: Vec<f64>,
    /// The statistics above their threshold (none until the window holds `min_items`).
    pub crossed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketShare {
    pub bucket: String,
    pub reference: f64,
    pub window: f64,
}

/// The name of the bucket of everything not tracked.
pub const OTHER: &str = "(other)";

/// `window`'s drift from `reference`, judged by `config`'s thresholds.
pub fn drift(reference: &Reference, window: &Counts, config: &MonitorConfig) -> Drift {
    let tracked = reference.tracked(config.top_labels);
    let split = |c: &Counts| -> Vec<u64> {
        let mut v: Vec<u64> = tracked
            .iter()
            .map(|b| c.buckets.get(b).copied().unwrap_or(0))
            .collect();
        let answered = c.items - c.abstained;
        v.push(answered - v.iter().sum::<u64>());
        v
    };
    let (q, p) = (split(&reference.counts), split(window));
    let shares = |v: &[u64]| -> Vec<f64> {
        let total: u64 = v.iter().sum();
        v.iter()
            .map(|&n| {
                if total > 0 {
                    n as f64 / total as f64
                } else {
                    0.0
                }
            })
            .collect()
    };
    let mut confidence = window.confidence.clone();
    confidence.resize(BINS, 0);
    let mut reference_confidence = reference.counts.confidence.clone();
    reference_confidence.resize(BINS, 0);
    let psi = psi(&p, &q);
    let js = js(&p, &q);
    let confidence_psi = self::psi(&confidence, &reference_confidence);
    let (abstention, reference_abstention) = (window.abstention(), reference.counts.abstention());
    let abstention_change = abstention - reference_abstention;
    let mut crossed = Vec::new();
    if window.items >= config.min_items as u64 {
        for (name, value, threshold) in [
            ("psi", psi, config.psi),
            ("js", js, config.js),
            ("confidence_psi", confidence_psi, config.confidence_psi),
            ("abstention", abstention_change, config.abstention),
        ] {
            if value > threshold {
                crossed.push(name.to_owned());
            }
        }
    }
    let (ps, qs) = (shares(&p), shares(&q));
    let buckets = tracked
        .iter()
        .map(String::as_str)
        .chain([OTHER])
        .zip(qs.iter().zip(&ps))
        .map(|(b, (&reference, &window))| BucketShare {
            bucket: b.to_owned(),
            reference,
            window,
        })
        .collect();
    Drift {
        items: window.items,
        psi,
        js,
        confidence_psi,
        abstention_change,
        abstention,
        reference_abstention,
        buckets,
        confidence: shares(&confidence),
        reference_confidence: shares(&reference_confidence),
        crossed,
    }
}

/// Shares of counts smoothed by half an item per bucket.
fn smoothed(v: &[u64]) -> Vec<f64> {
    let total = v.iter().sum::<u64>() as f64 + 0.5 * v.len() as f64;
    v.iter().map(|&n| (n as f64 + 0.5) / total).collect()
}

/// Population stability index of counts `p` against `q` (same buckets).
pub fn psi(p: &[u64], q: &[u64]) -> f64 {
    let (p, q) = (smoothed(p), smoothed(q));
    p.iter().zip(&q).map(|(a, b)| (a - b) * (a / b).ln()).sum()
}

/// Jensen–Shannon distance (base 2) of counts `p` and `q` (same buckets).
pub fn js(p: &[u64], q: &[u64]) -> f64 {
    let (p, q) = (smoothed(p), smoothed(q));
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    (0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// p = (50, 50), q = (80, 20), smoothed: p = (50.5, 50.5)/101 = (0.5, 0.5), q = (80.5,
    /// 20.5)/101 = (0.79703, 0.20297). PSI = (0.5 − 0.79703)·ln(0.5/0.79703) + (0.5 −
    /// 0.20297)·ln(0.5/0.20297) = 0.13850 + 0.26779 = 0.40629.
    #[test]
    fn psi_by_hand() {
        assert!((psi(&[50, 50], &[80, 20]) - 0.40629).abs() < 1e-4);
        assert_eq!(psi(&[7, 3], &[7, 3]), 0.0);
    }

    /// Identical: 0; disjoint (all mass apart, apart from the smoothing): close to 1.
    #[test]
    fn js_is_a_distance_between_0_and_1() {
        assert_eq!(js(&[5, 5], &[5, 5]), 0.0);
        let far = js(&[1_000_000, 0], &[0, 1_000_000]);
        assert!(far > 0.999 && far <= 1.0, "{far}");
        assert!((js(&[10, 0], &[0, 10]) - js(&[0, 10], &[10, 0])).abs() < 1e-12);
    }

    #[test]
    fn buckets_cut_paths_and_bins_cover_zero_to_one() {
        let b = Bucketing {
            separator: " > ".into(),
            depth: 1,
        };
        assert_eq!(b.bucket("Electronics > Car > Cases"), "Electronics");
        assert_eq!(b.bucket("plain"), "plain");
        let b2 = Bucketing { depth: 2, ..b };
        assert_eq!(b2.bucket("Electronics > Car > Cases"), "Electronics > Car");
        assert_eq!(
            (bin(0.0), bin(0.05), bin(0.95), bin(1.0), bin(7.0)),
            (0, 0, 9, 9, 9)
        );
    }

    #[test]
    fn counts_add_and_remove_back_to_nothing() {
        let mut c = Counts::default();
        c.add(Some(("A", 0.5)));
        c.add(None);
        assert_eq!((c.items, c.abstained, c.buckets["A"]), (2, 1, 1));
        assert_eq!(c.abstention(), 0.5);
        c.remove(Some(("A", 0.5)));
        c.remove(None);
        assert_eq!(c.items, 0);
        assert!(c.buckets.is_empty());
        assert_eq!(c.confidence.iter().sum::<u64>(), 0);
    }
}
