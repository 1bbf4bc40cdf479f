//! The batching decisions, as plain data: per-model queues of waiting rows, and which batch a free
//! compute thread takes next. No threads, channels or clocks here (time is passed in), so every
//! rule is tested directly.
//!
//! The rules:
//! - every loaded model has one lane; a request puts its rows in the lane of each model;
//! - a lane is *ready* when it holds `max_batch` rows, or its oldest row has waited `max_delay`
//!   (with `max_delay = 0`, the default, a lane is ready as soon as it holds a row: a free thread
//!   never waits, so batches form only from rows that arrived while every thread was busy);
//! - a free thread takes the ready lane whose oldest row is oldest (oldest work first); among
//!   equally old lanes (the parts of one request), the one whose batches have been taking longest
//!   goes first, so a request's slowest models start early and its last model is a quick one; ties
//!   left go round-robin from the lane after the last one served (no lane starves);
//! - it takes rows from the front of that lane, up to `max_batch`, splitting a request's rows
//!   across batches when they do not fit;
//! - rows of cancelled requests are dropped wherever a batch meets them.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Instant;

use crate::ensemble::BatchConfig;

/// What the queues need to know of a request.
pub trait Request {
    /// The request's answer is no longer wanted (the caller went away, or it already failed).
    fn cancelled(&self) -> bool;
}

/// Rows `rows` of request `request`, waiting in a lane since `enqueued`.
#[derive(Debug, Clone)]
pub struct Entry<R> {
    pub request: R,
    pub rows: Range<usize>,
    pub enqueued: Instant,
}

/// One run's worth of rows for one lane.
#[derive(Debug)]
pub struct Batch<R> {
    pub lane: usize,
    pub entries: Vec<Entry<R>>,
}

impl<R> Batch<R> {
    pub fn rows(&self) -> usize {
        self.entries.iter().map(|e| e.rows.len()).sum()
    }
}

#[derive(Debug)]
struct Lane<R> {
    config: BatchConfig,
    queue: VecDeque<Entry<R>>,
    /// Rows in `queue`, cancelled ones included until a batch meets them.
    rows: usize,
    /// Seconds its recent batches took to run (exponentially weighted; 0 before the first).
    cost: f64,
}

/// Every lane's queue.
#[derive(Debug)]
pub struct Queues<R> {
    lanes: Vec<Lane<R>>,
    /// The lane served last, for round-robin among ties.
    last: usize,
}

impl<R> Default for Queues<R> {
    fn default() -> Self {
        Queues {
            lanes: Vec::new(),
            last: 0,
        }
    }
}

impl<R: Request + Clone> Queues<R> {
    /// Adds a lane; its index is returned and stays valid for the life of these queues.
    pub fn add_lane(&mut self, config: BatchConfig) -> usize {
        self.lanes.push(Lane {
            config: BatchConfig {
                max_batch: config.max_batch.max(1),
                ..config
            },
            queue: VecDeque::new(),
            rows: 0,
            cost: 0.0,
        });
        self.lanes.len() - 1
    }

    /// Hands lane `lane` (empty) to another model: batching as `config`, no run time known.
    pub fn reuse_lane(&mut self, lane: usize, config: BatchConfig) {
        self.configure(lane, config);
        self.lanes[lane].cost = 0.0;
    }

    /// A batch of lane `lane` took `seconds` to run.
    pub fn record_run(&mut self, lane: usize, seconds: f64) {
        let cost = &mut self.lanes[lane].cost;
        *cost = if *cost == 0.0 {
            seconds
        } else {
            0.8 * *cost + 0.2 * seconds
        };
    }

    /// Changes a lane's batching (a newer ensemble sharing the model may configure it anew).
    pub fn configure(&mut self, lane: usize, config: BatchConfig) {
        self.lanes[lane].config = BatchConfig {
            max_batch: config.max_batch.max(1),
            ..config
        };
    }

    /// Queues rows `rows` of `request` on `lane`.
    pub fn push(&mut self, lane: usize, request: R, rows: Range<usize>, now: Instant) {
        if rows.is_empty() {
            return;
        }
        let lane = &mut self.lanes[lane];
        lane.rows += rows.len();
        lane.queue.push_back(Entry {
            request,
            rows,
            enqueued: now,
        });
    }

    /// Rows waiting in all lanes (cancelled ones included until met).
    pub fn depth(&self) -> usize {
        self.lanes.iter().map(|l| l.rows).sum()
    }

    /// Rows waiting in one lane.
    pub fn lane_depth(&self, lane: usize) -> usize {
        self.lanes[lane].rows
    }

    /// Seconds of work queued, as the lanes' recent batches measure it: each lane's waiting rows
    /// in batches of `max_batch`, each costing what its recent batches took. Cancelled rows count
    /// until a batch meets them; a lane that never ran counts nothing.
    pub fn queued_seconds(&self) -> f64 {
        self.lanes
            .iter()
            .map(|l| l.rows.div_ceil(l.config.max_batch) as f64 * l.cost)
            .sum()
    }

    /// The batch a free thread should run now, if any lane is ready.
    pub fn next_batch(&mut self, now: Instant) -> Option<Batch<R>> {
        let n = self.lanes.len();
        let mut best: Option<(usize, Instant)> = None;
        // Scan from the lane after the last served, so that among equally old heads the first
        // one met wins: round-robin.
        for step in 1..=n {
            let i = (self.last + step) % n;
            let Some(head) = self.head(i) else { continue };
            let lane = &self.lanes[i];
            let ready = lane.rows >= lane.config.max_batch
                || now.saturating_duration_since(head) >= lane.config.max_delay;
            let better = |&(b, oldest): &(usize, Instant)| {
                head < oldest || (head == oldest && self.lanes[i].cost > self.lanes[b].cost)
            };
            if ready && best.as_ref().is_none_or(better) {
                best = Some((i, head));
            }
        }
        let (i, _) = best?;
        self.last = i;
        Some(self.take(i))
    }

    /// When the next lane becomes ready by waiting (None: nothing is waiting, or something is
    /// ready now).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        (0..self.lanes.len())
            .filter_map(|i| self.head(i).map(|h| h + self.lanes[i].config.max_delay))
            .min()
    }

    /// The enqueue time of lane `i`'s oldest live entry, dropping cancelled ones at its front.
    fn head(&mut self, i: usize) -> Option<Instant> {
        let lane = &mut self.lanes[i];
        while let Some(front) = lane.queue.front() {
            if !front.request.cancelled() {
                return Some(front.enqueued);
            }
            lane.rows -= front.rows.len();
            lane.queue.pop_front();
        }
        None
    }

    /// Takes up to `max_batch` live rows from the front of lane `i`.
    fn take(&mut self, i: usize) -> Batch<R> {
        let lane = &mut self.lanes[i];
        let max = lane.config.max_batch;
        let mut entries = Vec::new();
        let mut taken = 0;
        while taken < max {
            let Some(front) = lane.queue.front_mut() else {
                break;
            };
            if front.request.cancelled() {
                lane.rows -= front.rows.len();
                lane.queue.pop_front();
                continue;
            }
            let room = max - taken;
            if front.rows.len() <= room {
                let entry = lane.queue.pop_front().expect("front exists");
                taken += entry.rows.len();
                entries.push(entry);
            } else {
                let split = front.rows.start + room;
                entries.push(Entry {
                    request: front.request.clone(),
                    rows: front.rows.start..split,
                    enqueued: front.enqueued,
                });
                front.rows.start = split;
                taken += room;
            }
        }
        lane.rows -= taken;
        Batch { lane: i, entries }
    }
}

/// The batch a free thread runs: from `normal` when one of its lanes is ready, else from `low`.
pub fn next_by_priority<R: Request + Clone>(
    normal: &mut Queues<R>,
    low: &mut Queues<R>,
    now: Instant,
) -> Option<(Batch<R>, bool)> {
    match normal.next_batch(now) {
        Some(batch) => Some((batch, false)),
        None => low.next_batch(now).map(|batch| (batch, true)),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;

    /// A request in tests: a name, and a flag the test flips to cancel it.
    #[derive(Clone, Debug)]
    struct Req(&'static str, Rc<Cell<bool>>);

    impl Request for Req {
        fn cancelled(&self) -> bool {
            self.1.get()
        }
    }

    fn req(name: &'static str) -> Req {
        Req(name, Rc::new(Cell::new(false)))
    }

    fn config(max_batch: usize, delay_ms: u64) -> BatchConfig {
        BatchConfig {
            max_batch,
            max_delay: Duration::from_millis(delay_ms),
        }
    }

    /// (request, rows) of a batch, for comparing.
    fn shape(batch: &Batch<Req>) -> Vec<(&'static str, Range<usize>)> {
        batch
            .entries
            .iter()
            .map(|e| (e.request.0, e.rows.clone()))
            .collect()
    }

    #[test]
    fn queued_work_is_counted_in_batches_at_each_lane_s_cost() {
        let t0 = Instant::now();
        let mut q: Queues<Req> = Queues::default();
        let a = q.add_lane(config(4, 0));
        let b = q.add_lane(config(1, 0));
        q.push(a, req("x"), 0..6, t0);
        q.push(b, req("y"), 0..3, t0);
        assert_eq!(q.queued_seconds(), 0.0, "no lane has run yet");
        q.record_run(a, 0.010);
        q.record_run(b, 0.002);
        // a: 6 rows in batches of 4 = 2 batches x 10 ms; b: 3 batches x 2 ms.
        assert!(
            (q.queued_seconds() - 0.026).abs() < 1e-12,
            "{}",
            q.queued_seconds()
        );
    }

    #[test]
    fn without_delay_a_free_thread_takes_what_is_there() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lane = q.add_lane(config(32, 0));
        assert!(q.next_batch(t0).is_none());
        q.push(lane, req("a"), 0..1, t0);
        let b = q.next_batch(t0).expect("ready at once");
        assert_eq!(shape(&b), vec![("a", 0..1)]);
        assert_eq!(q.depth(), 0);
    }

    #[test]
    fn rows_that_arrive_while_threads_are_busy_run_together() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lane = q.add_lane(config(32, 0));
        q.push(lane, req("a"), 0..1, t0);
        q.push(lane, req("b"), 0..3, t0);
        q.push(lane, req("c"), 0..2, t0);
        let b = q.next_batch(t0).unwrap();
        assert_eq!(shape(&b), vec![("a", 0..1), ("b", 0..3), ("c", 0..2)]);
        assert_eq!(b.rows(), 6);
    }

    #[test]
    fn a_batch_never_exceeds_max_batch_and_splits_a_request() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lane = q.add_lane(config(4, 0));
        q.push(lane, req("a"), 0..3, t0);
        q.push(lane, req("b"), 0..5, t0);
        assert_eq!(
            shape(&q.next_batch(t0).unwrap()),
            vec![("a", 0..3), ("b", 0..1)]
        );
        assert_eq!(shape(&q.next_batch(t0).unwrap()), vec![("b", 1..5)]);
        assert!(q.next_batch(t0).is_none());
        assert_eq!(q.depth(), 0);
    }

    #[test]
    fn max_batch_one_turns_batching_off() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lane = q.add_lane(config(1, 0));
        q.push(lane, req("a"), 0..2, t0);
        q.push(lane, req("b"), 0..1, t0);
        let sizes: Vec<usize> = std::iter::from_fn(|| q.next_batch(t0))
            .map(|b| b.rows())
            .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn with_a_delay_a_lane_waits_until_full_or_due() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lane = q.add_lane(config(4, 10));
        q.push(lane, req("a"), 0..2, t0);
        assert!(q.next_batch(t0).is_none(), "not full, not due");
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert!(q.next_batch(t0 + Duration::from_millis(9)).is_none());
        let b = q.next_batch(t0 + Duration::from_millis(10)).expect("due");
        assert_eq!(b.rows(), 2);

        // Full before it is due: ready at once.
        q.push(lane, req("b"), 0..2, t0);
        q.push(lane, req("c"), 0..2, t0);
        assert_eq!(q.next_batch(t0).unwrap().rows(), 4);
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn the_oldest_work_goes_first() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let mut q = Queues::default();
        let young = q.add_lane(config(8, 0));
        let old = q.add_lane(config(8, 0));
        q.push(young, req("new"), 0..1, t1);
        q.push(old, req("old"), 0..1, t0);
        assert_eq!(q.next_batch(t1).unwrap().lane, old);
        assert_eq!(q.next_batch(t1).unwrap().lane, young);
    }

    #[test]
    fn lanes_with_equally_old_work_take_turns() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lanes: Vec<usize> = (0..3).map(|_| q.add_lane(config(1, 0))).collect();
        // Each lane gets two rows of the same request, as a request fans out to every model.
        for &l in &lanes {
            q.push(l, req("a"), 0..2, t0);
        }
        let served: Vec<usize> = std::iter::from_fn(|| q.next_batch(t0))
            .map(|b| b.lane)
            .collect();
        assert_eq!(
            served,
            vec![1, 2, 0, 1, 2, 0],
            "round-robin, no lane served twice in a row"
        );
    }

    #[test]
    fn among_equally_old_work_the_slowest_model_goes_first() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lanes: Vec<usize> = (0..4).map(|_| q.add_lane(config(8, 0))).collect();
        // Batches of lanes 0..4 have taken 1, 3, 2 and 3 ms: one request's parts go slowest
        // first, equal costs in turn.
        for (&l, ms) in lanes.iter().zip([1.0, 3.0, 2.0, 3.0]) {
            q.record_run(l, ms / 1e3);
        }
        for &l in &lanes {
            q.push(l, req("a"), 0..1, t0);
        }
        let served: Vec<usize> = std::iter::from_fn(|| q.next_batch(t0))
            .map(|b| b.lane)
            .collect();
        assert_eq!(served, vec![1, 3, 2, 0]);
        // Age still comes first: an older row of the cheapest lane beats a newer one.
        q.push(lanes[1], req("b"), 0..1, t0 + Duration::from_millis(1));
        q.push(lanes[0], req("c"), 0..1, t0);
        assert_eq!(q.next_batch(t0 + Duration::from_millis(1)).unwrap().lane, 0);
        // Recent runs weigh more: lane 1's cost moves towards what it takes now.
        for _ in 0..30 {
            q.record_run(lanes[1], 0.5e-3);
        }
        q.push(lanes[0], req("d"), 0..1, t0 + Duration::from_millis(1));
        assert_eq!(q.next_batch(t0 + Duration::from_millis(1)).unwrap().lane, 0);
    }

    #[test]
    fn a_flooded_lane_does_not_starve_the_others() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut q = Queues::default();
        let flooded = q.add_lane(config(2, 0));
        let quiet = q.add_lane(config(2, 0));
        for n in 0..100 {
            q.push(flooded, req("flood"), n as usize..n as usize + 1, ms(n));
        }
        q.push(quiet, req("quiet"), 0..1, ms(5));
        let order: Vec<usize> = std::iter::from_fn(|| q.next_batch(ms(100)))
            .map(|b| b.lane)
            .collect();
        // Flood rows 0-1, 2-3, 4-5 arrived before the quiet row; then it is the oldest work.
        assert_eq!(order[..4], [flooded, flooded, flooded, quiet]);
        assert_eq!(order.len(), 51);
    }

    #[test]
    fn low_priority_work_runs_only_when_no_normal_lane_is_ready() {
        let t0 = Instant::now();
        let (mut normal, mut low) = (Queues::default(), Queues::default());
        let n = normal.add_lane(config(2, 0));
        let delayed = normal.add_lane(config(8, 10));
        let l = low.add_lane(config(8, 0));
        // The shadow row is older than the live rows, and still waits for them.
        low.push(l, req("shadow"), 0..1, t0);
        normal.push(n, req("live"), 0..3, t0 + Duration::from_millis(1));
        normal.push(delayed, req("waiting"), 0..1, t0);
        let now = t0 + Duration::from_millis(2);
        let mut order = Vec::new();
        while let Some((batch, is_low)) = next_by_priority(&mut normal, &mut low, now) {
            order.push((batch.entries[0].request.0, is_low));
        }
        // A normal lane that is waiting for its delay does not hold low work back.
        assert_eq!(
            order,
            vec![("live", false), ("live", false), ("shadow", true)]
        );
        assert_eq!(normal.depth(), 1, "the delayed lane still waits");
    }

    #[test]
    fn cancelled_requests_are_dropped_and_not_run() {
        let t0 = Instant::now();
        let mut q = Queues::default();
        let lane = q.add_lane(config(8, 0));
        let gone = req("gone");
        q.push(lane, req("a"), 0..1, t0);
        q.push(lane, gone.clone(), 0..3, t0);
        q.push(lane, req("b"), 0..1, t0);
        gone.1.set(true);
        assert_eq!(q.depth(), 5, "counted until met");
        assert_eq!(
            shape(&q.next_batch(t0).unwrap()),
            vec![("a", 0..1), ("b", 0..1)]
        );
        assert_eq!(q.depth(), 0);

        // A cancelled request at the head does not hold a lane ready, nor set a deadline.
        let lane2 = q.add_lane(config(8, 10));
        let gone2 = req("gone2");
        q.push(lane2, gone2.clone(), 0..2, t0);
        gone2.1.set(true);
        assert_eq!(q.next_deadline(), None);
        assert!(q.next_batch(t0 + Duration::from_secs(1)).is_none());
        assert_eq!(q.depth(), 0);
    }
}
