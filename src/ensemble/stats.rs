//! Inference statistics of one loaded ensemble and each of its members, as the Open Inference
//! Protocol's statistics extension reports them (Triton's shape): counts and cumulative
//! nanoseconds of successful and failed requests, of the wait for a compute thread and of the
//! model runs, items scored (`inference_count`) and runs (`execution_count`).
//!
//! The request path records the ensemble's ([`Stats::request`]), the compute threads each
//! member's ([`Stats::member_run`]); plain atomics, so recording never waits. Each ensemble
//! version has its own: a new version starts from zero, as a newly loaded Triton model does.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and the nanoseconds summed over it.
#[derive(Debug, Default)]
pub struct Timed {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Timed {
    fn add(&self, count: u64, took: Duration) {
        self.count.fetch_add(count, Relaxed);
        self.ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    pub fn read(&self) -> StatDuration {
        StatDuration {
            count: self.count.load(Relaxed),
            ns: self.ns.load(Relaxed),
        }
    }
}

/// A [`Timed`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

/// One model's counters (the ensemble's or a member's).
#[derive(Debug, Default)]
pub struct Counters {
    success: Timed,
    fail: Timed,
    queue: Timed,
    compute_infer: Timed,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    /// Milliseconds since the Unix epoch of the last inference; 0: none yet.
    last_inference: AtomicU64,
}

/// [`Counters`] read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub success: StatDuration,
    pub fail: StatDuration,
    pub queue: StatDuration,
    pub compute_infer: StatDuration,
    pub inference_count: u64,
    pub execution_count: u64,
    pub last_inference: u64,
}

impl Counters {
    fn touch(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_inference.store(now, Relaxed);
    }

    pub fn read(&self) -> ModelStats {
        ModelStats {
            success: self.success.read(),
            fail: self.fail.read(),
            queue: self.queue.read(),
            compute_infer: self.compute_infer.read(),
            inference_count: self.inference_count.load(Relaxed),
            execution_count: self.execution_count.load(Relaxed),
            last_inference: self.last_inference.load(Relaxed),
        }
    }
}

/// The statistics of one ensemble and its members (in model order).
#[derive(Debug)]
pub struct Stats {
    ensemble: Counters,
    members: Vec<Counters>,
}

impl Stats {
    pub fn new(members: usize) -> Stats {
        Stats {
            ensemble: Counters::default(),
            members: (0..members).map(|_| Counters::default()).collect(),
        }
    }

    /// A request that reached this ensemble ended: `items` scored if it succeeded, after `took`
    /// in all.
    pub fn request(&self, ok: bool, items: usize, took: Duration) {
        let c = &self.ensemble;
        if ok {
            c.success.add(1, took);
            c.inference_count.fetch_add(items as u64, Relaxed);
            c.execution_count.fetch_add(1, Relaxed);
            c.touch();
        } else {
            c.fail.add(1, took);
        }
    }

    /// Member `model` ran a batch holding `rows` rows of one request, which waited `queued` for
    /// it; the run took `ran`.
    pub fn member_run(&self, model: usize, rows: usize, queued: Duration, ran: Duration, ok: bool) {
        let Some(c) = self.members.get(model) else {
            return;
        };
        c.queue.add(1, queued);
        if ok {
            c.success.add(1, queued + ran);
            c.compute_infer.add(1, ran);
            c.inference_count.fetch_add(rows as u64, Relaxed);
            c.touch();
        } else {
            c.fail.add(1, queued + ran);
        }
    }

    /// One run of member `model` (a batch, however many requests it held).
    pub fn member_executed(&self, model: usize) {
        if let Some(c) = self.members.get(model) {
            c.execution_count.fetch_add(1, Relaxed);
        }
    }

    pub fn ensemble(&self) -> ModelStats {
        self.ensemble.read()
    }

    /// Each member's, in model order.
    pub fn members(&self) -> Vec<ModelStats> {
        self.members.iter().map(Counters::read).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_times_add_up() {
        let s = Stats::new(2);
        s.request(true, 3, Duration::from_millis(2));
        s.request(true, 1, Duration::from_millis(1));
        s.request(false, 5, Duration::from_millis(4));
        let e = s.ensemble();
        assert_eq!(
            e.success,
            StatDuration {
                count: 2,
                ns: 3_000_000
            }
        );
        assert_eq!(
            e.fail,
            StatDuration {
                count: 1,
                ns: 4_000_000
            }
        );
        assert_eq!((e.inference_count, e.execution_count), (4, 2));
        assert!(e.last_inference > 0);
        let ms = Duration::from_millis(1);
        s.member_run(1, 3, ms, 2 * ms, true);
        s.member_run(1, 1, ms, 2 * ms, true);
        s.member_executed(1);
        s.member_run(7, 1, ms, ms, true);
        let m = s.members();
        assert_eq!(m[0], ModelStats::default());
        assert_eq!((m[1].inference_count, m[1].execution_count), (4, 1));
        assert_eq!(
            m[1].success,
            StatDuration {
                count: 2,
                ns: 6_000_000
            }
        );
        assert_eq!(
            m[1].compute_infer,
            StatDuration {
                count: 2,
                ns: 4_000_000
            }
        );
    }
}
