//! The live monitor's rolling window: the last `max_items` analysed items, none older than
//! `max_age`, of the ensemble the latest item was answered by (an item of another ensemble starts
//! the window over). Running sums per member and of the answers are kept as items come and go, so
//! a report or a gauge update reads them without a pass over the window. Plain state, tested
//! directly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::drift::{Counts, Drift};
use super::super::influence::{figures, MemberCounts, MemberFigures, MemberInfo};

/// One analysed item.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Per voting member (in the window's member order): pivotal, agrees, share.
    pub parts: Vec<(bool, bool, f32)>,
    /// The answer's bucket and first-label score; None: no answer.
    pub answer: Option<(String, f32)>,
    /// Per model of the ensemble: its seconds for this item.
    pub seconds: Vec<f64>,
    /// Label scores recomputed and members voted again for its influence.
    pub labels: u64,
    pub revoted: u32,
}

/// A point of the drift series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at: Instant,
    pub psi: f64,
    pub js: f64,
    pub confidence_psi: f64,
    pub abstention_change: f64,
}

/// Points kept in the drift series.
const SERIES: usize = 240;

#[derive(Debug)]
pub struct Window {
    pub max_items: usize,
    pub max_age: Duration,
    digest: String,
    members: Vec<MemberInfo>,
    records: VecDeque<(Instant, Record)>,
    /// Per model of the ensemble.
    counts: Vec<MemberCounts>,
    answers: Counts,
    labels: u64,
    revoted: u64,
    series: VecDeque<Point>,
}

impl Window {
    pub fn new(max_items: usize, max_age: Duration) -> Self {
        Window {
            max_items,
            max_age,
            digest: String::new(),
            members: Vec::new(),
            records: VecDeque::new(),
            counts: Vec::new(),
            answers: Counts::default(),
            labels: 0,
            revoted: 0,
            series: VecDeque::new(),
        }
    }

    /// The ensemble (by digest) the window follows.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn members(&self) -> &[MemberInfo] {
        &self.members
    }

    /// Follows the ensemble with `digest`, `models` models and these voting members: the window
    /// starts over when it followed another. Returns whether it did.
    pub fn follow(&mut self, digest: &str, models: usize, members: Vec<MemberInfo>) -> bool {
        if self.digest == digest {
            return false;
        }
        *self = Window::new(self.max_items, self.max_age);
        self.digest = digest.to_owned();
        self.members = members;
        self.counts = vec![MemberCounts::default(); models];
        true
    }

    /// Adds one item analysed at `now`, and lets the oldest go.
    pub fn push(&mut self, record: Record, now: Instant) {
        self.change(&record, true);
        self.records.push_back((now, record));
        self.expire(now);
    }

    /// Lets go of items beyond the window's size or age.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.records.front() {
            let old = now.saturating_duration_since(*at) > self.max_age;
            if !old && self.records.len() <= self.max_items {
                break;
            }
            let (_, record) = self.records.pop_front().expect("a front item");
            self.change(&record, false);
        }
    }

    fn change(&mut self, r: &Record, add: bool) {
        let answered = r.answer.is_some();
        for (info, &(pivotal, agrees, share)) in self.members.iter().zip(&r.parts) {
            let c = &mut self.counts[info.model];
            if add {
                c.add(answered, pivotal, agrees, share);
            } else {
                c.remove(answered, pivotal, agrees, share);
            }
        }
        for (c, &s) in self.counts.iter_mut().zip(&r.seconds) {
            c.seconds = if add {
                c.seconds + s
            } else {
                (c.seconds - s).max(0.0)
            };
        }
        let answer = r.answer.as_ref().map(|(b, s)| (b.as_str(), *s));
        if add {
            self.answers.add(answer);
            self.labels += r.labels;
            self.revoted += r.revoted as u64;
        } else {
            self.answers.remove(answer);
            self.labels -= r.labels;
            self.revoted -= r.revoted as u64;
        }
    }

    pub fn items(&self) -> usize {
        self.records.len()
    }

    /// Every member's figures over the window.
    pub fn figures(&self) -> Vec<MemberFigures> {
        figures(&self.members, &self.counts, self.records.len() as u64)
    }

    pub fn answers(&self) -> &Counts {
        &self.answers
    }

    /// Label scores recomputed per member and item, and member-items voted again, over the
    /// window.
    pub fn work(&self) -> (f64, u64) {
        let member_items = (self.records.len() * self.members.len()).max(1) as f64;
        (self.labels as f64 / member_items, self.revoted)
    }

    /// Adds a point to the drift series when the last is at least `every` old.
    pub fn point(&mut self, drift: &Drift, now: Instant, every: Duration) {
        if self
            .series
            .back()
            .is_some_and(|p| now.saturating_duration_since(p.at) < every)
        {
            return;
        }
        if self.series.len() == SERIES {
            self.series.pop_front();
        }
        self.series.push_back(Point {
            at: now,
            psi: drift.psi,
            js: drift.js,
            confidence_psi: drift.confidence_psi,
            abstention_change: drift.abstention_change,
        });
    }

    pub fn series(&self) -> impl Iterator<Item = &Point> {
        self.series.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(model: usize, name: &str) -> MemberInfo {
        MemberInfo {
            model,
            name: name.into(),
            kind: "fasttext".into(),
            group: None,
            weight: 1.0,
        }
    }

    fn record(pivotal: bool, bucket: Option<&str>, seconds: [f64; 2]) -> Record {
        Record {
            parts: vec![(pivotal, true, 0.25), (false, false, 0.75)],
            answer: bucket.map(|b| (b.to_owned(), 0.55)),
            seconds: seconds.to_vec(),
            labels: 4,
            revoted: 0,
        }
    }

    /// Three items into a window of two: the first leaves; figures are over the last two.
    /// Pivotal for a: 1 of 2; compute: a 3 s of 4; agreement over answered items only.
    #[test]
    fn the_window_keeps_the_last_items_and_its_sums() {
        let mut w = Window::new(2, Duration::from_secs(60));
        assert!(w.follow("d1", 2, vec![info(0, "a"), info(1, "b")]));
        let t = Instant::now();
        w.push(record(true, Some("X"), [9.0, 9.0]), t);
        w.push(record(true, Some("X"), [2.0, 1.0]), t);
        w.push(record(false, None, [1.0, 0.0]), t);
        assert_eq!(w.items(), 2);
        let f = w.figures();
        assert_eq!(f[0].pivotal_rate, 0.5);
        assert_eq!(f[0].agreement, 1.0, "one answered item, a agrees");
        assert_eq!(f[1].agreement, 0.0);
        assert_eq!(f[0].compute_share, 0.75);
        assert_eq!(f[1].winner_share, 0.75);
        assert_eq!((w.answers().items, w.answers().abstained), (2, 1));
        // 4 label scores per item over its 2 members: 2 per member-item.
        assert_eq!(w.work(), (2.0, 0));
    }

    #[test]
    fn old_items_leave_and_another_ensemble_starts_over() {
        let mut w = Window::new(10, Duration::from_secs(5));
        w.follow("d1", 2, vec![info(0, "a"), info(1, "b")]);
        let t = Instant::now();
        w.push(record(true, Some("X"), [1.0, 1.0]), t);
        w.expire(t + Duration::from_secs(6));
        assert_eq!(w.items(), 0);
        assert_eq!(w.figures()[0].pivotal_rate, 0.0);
        w.push(
            record(true, Some("X"), [1.0, 1.0]),
            t + Duration::from_secs(7),
        );
        assert!(!w.follow("d1", 2, vec![info(0, "a"), info(1, "b")]));
        assert_eq!(w.items(), 1);
        assert!(w.follow("d2", 1, vec![info(0, "c")]));
        assert_eq!(w.items(), 0);
        assert_eq!(w.members()[0].name, "c");
    }
}
