//! Statistics of a shadow, built from [`Comparison`]s: totals since staging, the same over a
//! rolling window (last N items, none older than T), the most frequent disagreement pairs and
//! per-label agreement. Pure data: the time is passed in, so tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::compare::{Comparison, Outcome};
use super::report::{Aggregate, Counts, LabelAgreement, Latency, PairCount};

/// What a window keeps of one comparison: numbers only, no labels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    live_seconds: f64,
    /// None: the shadow failed the item.
    answered: Option<Answered>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Answered {
    top1: bool,
    overlap: Option<f64>,
    live_winner_score: Option<Option<f32>>,
    shadow_seconds: f64,
}

impl Sample {
    fn of(c: &Comparison) -> Sample {
        Sample {
            live_seconds: c.live_seconds,
            answered: match &c.outcome {
                Outcome::Answered {
                    agreement,
                    shadow_seconds,
                } => Some(Answered {
                    top1: agreement.top1,
                    overlap: agreement.overlap,
                    live_winner_score: agreement.live_winner_score,
                    shadow_seconds: *shadow_seconds,
                }),
                Outcome::Failed { .. } => None,
            },
        }
    }
}

/// Running sums over a set of samples.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    compared: u64,
    failed: u64,
    agreed: u64,
    overlap_items: u64,
    overlap_sum: f64,
    /// Compared items with a live winner; those whose winner the shadow answered; its scores.
    winners: u64,
    winners_found: u64,
    winner_score_sum: f64,
    live_sum: f64,
    live_max: f64,
    shadow_sum: f64,
    shadow_max: f64,
}

impl Totals {
    fn add(&mut self, s: &Sample) {
        let Some(a) = &s.answered else {
            self.failed += 1;
            return;
        };
        self.compared += 1;
        self.agreed += u64::from(a.top1);
        if let Some(o) = a.overlap {
            self.overlap_items += 1;
            self.overlap_sum += o;
        }
        if let Some(score) = a.live_winner_score {
            self.winners += 1;
            if let Some(score) = score {
                self.winners_found += 1;
                self.winner_score_sum += f64::from(score);
            }
        }
        self.live_sum += s.live_seconds;
        self.live_max = self.live_max.max(s.live_seconds);
        self.shadow_sum += a.shadow_seconds;
        self.shadow_max = self.shadow_max.max(a.shadow_seconds);
    }

    fn aggregate(&self) -> Aggregate {
        let ratio = |n: f64, d: u64| (d > 0).then(|| n / d as f64);
        let latency = |sum: f64, max: f64| Latency {
            mean: ratio(sum, self.compared),
            p50: None,
            p95: None,
            max: (self.compared > 0).then_some(max),
        };
        Aggregate {
            compared: self.compared,
            failed: self.failed,
            top1_agreed: self.agreed,
            top1_agreement: ratio(self.agreed as f64, self.compared),
            topk_overlap: ratio(self.overlap_sum, self.overlap_items),
            live_winner_in_shadow: ratio(self.winners_found as f64, self.winners),
            shadow_score_for_live_winner: ratio(self.winner_score_sum, self.winners_found),
            failure_ratio: ratio(self.failed as f64, self.compared + self.failed),
            live_seconds: latency(self.live_sum, self.live_max),
            shadow_seconds: latency(self.shadow_sum, self.shadow_max),
        }
    }
}

/// The rolling window: the last `max_items` samples, none older than `max_age`.
#[derive(Debug, Clone)]
pub struct Window {
    pub max_items: usize,
    pub max_age: Duration,
    samples: VecDeque<(Instant, Sample)>,
}

impl Window {
    pub fn new(max_items: usize, max_age: Duration) -> Self {
        Window {
            max_items,
            max_age,
            samples: VecDeque::with_capacity(max_items.min(4096)),
        }
    }

    fn push(&mut self, at: Instant, sample: Sample) {
        if self.max_items == 0 {
            return;
        }
        if self.samples.len() == self.max_items {
            self.samples.pop_front();
        }
        self.samples.push_back((at, sample));
    }

    /// Drops what is older than `max_age` at `now`.
    fn evict(&mut self, now: Instant) {
        while let Some((at, _)) = self.samples.front() {
            if now.saturating_duration_since(*at) <= self.max_age {
                break;
            }
            self.samples.pop_front();
        }
    }

    /// Aggregates over the window as of `now`, without latency quantiles (cheap enough for every
    /// batch).
    pub fn totals(&mut self, now: Instant) -> Aggregate {
        self.evict(now);
        let mut totals = Totals::default();
        for (_, s) in &self.samples {
            totals.add(s);
        }
        totals.aggregate()
    }

    /// Aggregates over the window as of `now`, with latency quantiles.
    pub fn aggregate(&mut self, now: Instant) -> Aggregate {
        self.evict(now);
        let mut totals = Totals::default();
        let mut live = Vec::with_capacity(self.samples.len());
        let mut shadow = Vec::with_capacity(self.samples.len());
        for (_, s) in &self.samples {
            totals.add(s);
            if let Some(a) = &s.answered {
                live.push(s.live_seconds);
                shadow.push(a.shadow_seconds);
            }
        }
        let mut aggregate = totals.aggregate();
        for (latency, values) in [
            (&mut aggregate.live_seconds, &mut live),
            (&mut aggregate.shadow_seconds, &mut shadow),
        ] {
            values.sort_by(f64::total_cmp);
            latency.p50 = quantile(values, 0.5);
            latency.p95 = quantile(values, 0.95);
        }
        aggregate
    }
}

/// The nearest-rank quantile of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// Exact counts for up to `capacity` distinct keys; keys seen once it is full are counted in
/// `untracked` only, so memory stays bounded whatever the label space.
#[derive(Debug, Clone)]
struct Tally<K, V> {
    capacity: usize,
    counts: HashMap<K, V>,
    untracked: u64,
}

impl<K: Hash + Eq + Clone + Ord, V: Default> Tally<K, V> {
    fn new(capacity: usize) -> Self {
        Tally {
            capacity,
            counts: HashMap::new(),
            untracked: 0,
        }
    }

    fn entry(&mut self, key: &K) -> Option<&mut V> {
        if !self.counts.contains_key(key) {
            if self.counts.len() >= self.capacity {
                self.untracked += 1;
                return None;
            }
            self.counts.insert(key.clone(), V::default());
        }
        self.counts.get_mut(key)
    }

    /// The `n` entries with the largest `weight`, ties broken by key.
    fn top(&self, n: usize, weight: impl Fn(&V) -> u64) -> Vec<(&K, &V)> {
        let mut all: Vec<(&K, &V)> = self.counts.iter().collect();
        all.sort_by(|a, b| weight(b.1).cmp(&weight(a.1)).then_with(|| a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

type Label = Option<String>;

/// Every statistic of one staged shadow.
#[derive(Debug, Clone)]
pub struct Stats {
    pub counts: Counts,
    since: Totals,
    pub window: Window,
    pairs: Tally<(Label, Label), u64>,
    /// Per live winner: (compared items, agreed).
    labels: Tally<Label, (u64, u64)>,
    pub last_error: Option<String>,
}

/// Distinct pairs and labels tallied exactly; beyond, they count as untracked.
pub const TALLY_CAPACITY: usize = 16_384;

impl Stats {
    pub fn new(window: Window) -> Self {
        Self::with_capacity(window, TALLY_CAPACITY)
    }

    fn with_capacity(window: Window, capacity: usize) -> Self {
        Stats {
            counts: Counts::default(),
            since: Totals::default(),
            window,
            pairs: Tally::new(capacity),
            labels: Tally::new(capacity),
            last_error: None,
        }
    }

    /// Records a compared or failed item at `now`.
    pub fn record(&mut self, c: &Comparison, now: Instant) {
        let sample = Sample::of(c);
        self.since.add(&sample);
        self.window.push(now, sample);
        match &c.outcome {
            Outcome::Failed { reason } => {
                self.counts.failed += 1;
                self.last_error = Some(reason.clone());
            }
            Outcome::Answered { agreement, .. } => {
                self.counts.compared += 1;
                if let Some((items, agreed)) = self.labels.entry(&c.live_top) {
                    *items += 1;
                    *agreed += u64::from(agreement.top1);
                }
                if !agreement.top1 {
                    let pair = (c.live_top.clone(), agreement.shadow_top.clone());
                    if let Some(n) = self.pairs.entry(&pair) {
                        *n += 1;
                    }
                }
            }
        }
    }

    pub fn since_staging(&self) -> Aggregate {
        self.since.aggregate()
    }

    /// The `n` most frequent disagreement pairs.
    pub fn top_disagreements(&self, n: usize) -> Vec<PairCount> {
        self.pairs
            .top(n, |&c| c)
            .into_iter()
            .map(|((live, shadow), &count)| PairCount {
                live: live.clone(),
                shadow: shadow.clone(),
                count,
            })
            .collect()
    }

    /// Agreement for the `n` most frequent live winners.
    pub fn label_agreement(&self, n: usize) -> Vec<LabelAgreement> {
        self.labels
            .top(n, |&(items, _)| items)
            .into_iter()
            .map(|(label, &(items, agreed))| LabelAgreement {
                label: label.clone(),
                items,
                agreed,
                agreement: agreed as f64 / items as f64,
            })
            .collect()
    }

    pub fn untracked(&self) -> (u64, u64) {
        (self.pairs.untracked, self.labels.untracked)
    }
}

#[cfg(test)]
mod tests {
    use super::super::compare::Agreement;
    use super::*;

    fn answered(
        live: Option<&str>,
        shadow: Option<&str>,
        overlap: f64,
        seconds: f64,
    ) -> Comparison {
        Comparison {
            live_top: live.map(str::to_owned),
            outcome: Outcome::Answered {
                agreement: Agreement {
                    shadow_top: shadow.map(str::to_owned),
                    top1: live == shadow,
                    overlap: live.map(|_| overlap),
                    live_winner_score: live.map(|_| (live == shadow).then_some(0.5)),
                },
                shadow_seconds: seconds,
            },
            live_seconds: 0.001,
        }
    }

    fn failed() -> Comparison {
        Comparison {
            live_top: Some("a".into()),
            outcome: Outcome::Failed {
                reason: "boom".into(),
            },
            live_seconds: 0.001,
        }
    }

    fn at(t0: Instant, seconds: u64) -> Instant {
        t0 + Duration::from_secs(seconds)
    }

    #[test]
    fn totals_since_staging() {
        let t0 = Instant::now();
        let mut s = Stats::new(Window::new(100, Duration::from_secs(60)));
        s.record(&answered(Some("a"), Some("a"), 1.0, 0.002), t0);
        s.record(&answered(Some("a"), Some("b"), 0.5, 0.004), t0);
        s.record(&answered(Some("c"), Some("c"), 0.0, 0.006), t0);
        s.record(&failed(), t0);
        let a = s.since_staging();
        assert_eq!((a.compared, a.failed, a.top1_agreed), (3, 1, 2));
        assert_eq!(a.top1_agreement, Some(2.0 / 3.0));
        assert_eq!(a.topk_overlap, Some(0.5));
        assert_eq!(a.live_winner_in_shadow, Some(2.0 / 3.0));
        assert_eq!(a.shadow_score_for_live_winner, Some(0.5));
        assert_eq!(a.failure_ratio, Some(0.25));
        assert!((a.shadow_seconds.mean.unwrap() - 0.004).abs() < 1e-12);
        assert_eq!(a.shadow_seconds.max, Some(0.006));
        assert_eq!((s.counts.compared, s.counts.failed), (3, 1));
        assert_eq!(s.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn nothing_compared_gives_no_ratios() {
        let mut s = Stats::new(Window::new(10, Duration::from_secs(60)));
        let a = s.since_staging();
        assert_eq!(a.top1_agreement, None);
        assert_eq!(a.live_seconds.mean, None);
        assert_eq!(s.window.aggregate(Instant::now()), a);
    }

    #[test]
    fn the_window_keeps_the_last_n_items() {
        let t0 = Instant::now();
        let mut s = Stats::new(Window::new(3, Duration::from_secs(600)));
        for _ in 0..5 {
            s.record(&answered(Some("a"), Some("b"), 0.0, 0.001), t0);
        }
        for _ in 0..3 {
            s.record(&answered(Some("a"), Some("a"), 1.0, 0.001), t0);
        }
        let w = s.window.aggregate(t0);
        assert_eq!((w.compared, w.top1_agreed), (3, 3));
        assert_eq!(w.top1_agreement, Some(1.0));
        assert_eq!(s.since_staging().top1_agreement, Some(3.0 / 8.0));
    }

    #[test]
    fn the_window_forgets_old_items() {
        let t0 = Instant::now();
        let mut s = Stats::new(Window::new(100, Duration::from_secs(60)));
        s.record(&answered(Some("a"), Some("b"), 0.0, 0.001), at(t0, 0));
        s.record(&answered(Some("a"), Some("b"), 0.0, 0.001), at(t0, 30));
        s.record(&answered(Some("a"), Some("a"), 1.0, 0.001), at(t0, 61));
        // At 61 s the first item is 61 s old: out; the one at 30 s stays.
        let w = s.window.aggregate(at(t0, 61));
        assert_eq!((w.compared, w.top1_agreed), (2, 1));
        // At 200 s every item is out, and nothing is reported.
        let w = s.window.aggregate(at(t0, 200));
        assert_eq!((w.compared, w.top1_agreement), (0, None));
        assert_eq!(s.since_staging().compared, 3);
    }

    #[test]
    fn window_latency_quantiles() {
        let t0 = Instant::now();
        let mut s = Stats::new(Window::new(100, Duration::from_secs(60)));
        for i in 1..=20 {
            s.record(&answered(Some("a"), Some("a"), 1.0, i as f64), t0);
        }
        let w = s.window.aggregate(t0);
        assert_eq!(w.shadow_seconds.p50, Some(10.0));
        assert_eq!(w.shadow_seconds.p95, Some(19.0));
        assert_eq!(w.shadow_seconds.max, Some(20.0));
        assert_eq!(w.live_seconds.p95, Some(0.001));
        assert_eq!(s.since_staging().shadow_seconds.p50, None);
        let mut quick = w.clone();
        quick.live_seconds.p50 = None;
        quick.live_seconds.p95 = None;
        quick.shadow_seconds.p50 = None;
        quick.shadow_seconds.p95 = None;
        assert_eq!(s.window.totals(t0), quick);
    }

    #[test]
    fn top_pairs_and_label_agreement_are_ranked_with_ties_by_name() {
        let t0 = Instant::now();
        let mut s = Stats::new(Window::new(100, Duration::from_secs(60)));
        let script = [
            ("a", "b", 3),
            ("a", "a", 2),
            ("c", "b", 3),
            ("c", "c", 1),
            ("d", "e", 1),
        ];
        for (live, shadow, n) in script {
            for _ in 0..n {
                s.record(&answered(Some(live), Some(shadow), 0.0, 0.001), t0);
            }
        }
        s.record(&answered(Some("d"), None, 0.0, 0.001), t0);
        let pairs = s.top_disagreements(3);
        let pair = |l: &str, sh: Option<&str>, count| PairCount {
            live: Some(l.into()),
            shadow: sh.map(Into::into),
            count,
        };
        assert_eq!(
            pairs,
            vec![
                pair("a", Some("b"), 3),
                pair("c", Some("b"), 3),
                pair("d", None, 1)
            ]
        );
        let labels = s.label_agreement(2);
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[0].label.as_deref(), Some("a"));
        assert_eq!((labels[0].items, labels[0].agreed), (5, 2));
        assert_eq!(labels[0].agreement, 0.4);
        assert_eq!(labels[1].label.as_deref(), Some("c"));
        assert_eq!((labels[1].items, labels[1].agreed), (4, 1));
    }

    #[test]
    fn tallies_are_bounded() {
        let t0 = Instant::now();
        let mut s = Stats::with_capacity(Window::new(10, Duration::from_secs(60)), 2);
        for l in ["a", "b", "c", "a"] {
            s.record(&answered(Some(l), Some("z"), 0.0, 0.001), t0);
        }
        assert_eq!(s.untracked(), (1, 1));
        assert_eq!(s.top_disagreements(10).len(), 2);
        assert_eq!(s.top_disagreements(10)[0].count, 2);
        // The aggregates still count everything.
        assert_eq!(s.since_staging().compared, 4);
    }
}
