//! The bare floor: every model of the ensemble called directly through its runtime, one after the
//! other on one thread, at several batch sizes; no server, no scheduler, no voting. Its per-item
//! cost at the best batch size, divided into the number of compute threads, is the throughput no
//! server can beat; its cost at batch 1 divided by the threads is the latency one client could
//! hope for if the threads did not slow each other down. The same models at batch 1, shared out
//! over the threads side by side, say what one client can really get on this machine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use lastmile::ensemble::{Ensemble, ValidItem};
use lastmile::runtime::{InputKind, Inputs, Scores};

/// Batch sizes tried for each model.
pub const SIZES: [usize; 4] = [1, 8, 32, 64];

/// Timed calls per model and batch size, at the least: one call of 64 rows is one sample, at the
/// mercy of whatever else the machine did in those milliseconds.
const MIN_CALLS: usize = 4;

/// Per-item compute of the whole ensemble.
pub struct Floor {
    /// Seconds per item, each model at batch 1, summed over the models.
    pub unbatched: f64,
    /// Seconds per item, each model at its best batch size, summed.
    pub batched: f64,
    /// Per model: (name, seconds per row at each of [`SIZES`]).
    pub models: Vec<(String, Vec<f64>)>,
    /// Median wall time of one item with every model at batch 1, the models shared out over the
    /// compute threads as they come free (as the server does with one client), and nothing else:
    /// what one client could get here, now that the threads share the memory bus and caches.
    pub side_by_side: f64,
    /// Items per second with every model at its best batch size and every compute thread taking
    /// its own items through all of them at once: the floor's throughput as this machine really
    /// gives it, once the threads share the memory bus and caches.
    pub batched_side_by_side: f64,
    /// Per model: its best batch size, of [`SIZES`].
    pub best: Vec<usize>,
}

/// The ensemble's models called directly on the benchmark items (cycled), with each model's
/// input text prepared once.
pub struct Bare<'a> {
    ensemble: &'a Ensemble,
    items: &'a [ValidItem],
    texts: Vec<Vec<String>>,
}

impl<'a> Bare<'a> {
    pub fn new(ensemble: &'a Ensemble, items: &'a [ValidItem]) -> Self {
        let texts = ensemble
            .models
            .iter()
            .map(|m| items.iter().map(|it| it.text(&m.field_ids)).collect())
            .collect();
        Bare {
            ensemble,
            items,
            texts,
        }
    }

    /// Runs model `m` on `size` items from item `from`.
    fn run(&self, m: usize, size: usize, from: usize, out: &mut Scores) {
        let model = &self.ensemble.models[m];
        let n = self.items.len();
        let result = match model.runtime.input_kind() {
            InputKind::Text => {
                let batch: Vec<&str> = (0..size)
                    .map(|k| self.texts[m][(from + k) % n].as_str())
                    .collect();
                model.runtime.run(&Inputs::Text(&batch), out)
            }
            InputKind::Features { width } => {
                let field = model.field_ids[0];
                let mut data = Vec::with_capacity(size * width);
                for k in 0..size {
                    self.items[(from + k) % n].push_features(field, width, &mut data);
                }
                model
                    .runtime
                    .run(&Inputs::Features { data: &data, width }, out)
            }
        };
        result.expect("the model runs on the benchmark items");
    }

    /// Seconds for item `item` through every model at batch 1, one after the other on this thread.
    pub fn alone(&self, item: usize) -> f64 {
        let mut out = Scores::default();
        let started = Instant::now();
        for m in 0..self.ensemble.models.len() {
            self.run(m, 1, item, &mut out);
        }
        started.elapsed().as_secs_f64()
    }

    /// Seconds for item `item` through every model at batch 1, on `threads` threads that take the
    /// next model as they come free.
    pub fn side_by_side(&self, item: usize, threads: usize) -> f64 {
        let models = self.ensemble.models.len();
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    let mut out = Scores::default();
                    loop {
                        let m = next.fetch_add(1, Ordering::Relaxed);
                        if m >= models {
                            break;
                        }
                        self.run(m, 1, item, &mut out);
                    }
                });
            }
        });
        started.elapsed().as_secs_f64()
    }

    /// Items per second with model m at batch `sizes[m]`, on `threads` threads at once, each
    /// taking its own `rows` items (a multiple of every size) through every model in turn, as
    /// [`measure`] does on one thread.
    pub fn items_per_second(&self, sizes: &[usize], rows: usize, threads: usize) -> f64 {
        let chunk = sizes.iter().copied().max().unwrap_or(1);
        let rows = rows.div_ceil(chunk).max(1) * chunk;
        let threads = threads.max(1);
        // Round by round, so that no model runs twice in a row with its weights still in cache.
        // Models at smaller batch sizes run again in later rounds among fewer others, which
        // favours them slightly (about 3 % on the demo, against spreading every model's calls
        // evenly over the rounds: inside this host's noise).
        let rounds = chunk / sizes.iter().copied().min().unwrap_or(1).max(1);
        let through_all = |from: usize, out: &mut Scores| {
            for call in 0..rounds {
                for (m, &size) in sizes.iter().enumerate() {
                    if call < chunk / size {
                        self.run(m, size, from + call * size, out);
                    }
                }
            }
        };
        // Warm-up: one chunk through every model on this thread.
        through_all(0, &mut Scores::default());
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    let mut out = Scores::default();
                    for from in (0..rows).step_by(chunk) {
                        through_all(t * rows + from, &mut out);
                    }
                });
            }
        });
        (threads * rows) as f64 / started.elapsed().as_secs_f64()
    }
}

/// The floor measured again, as seconds per item: every model at its best batch size, one after
/// the other on this thread, over `rows` items.
pub fn batched_again(bare: &Bare, floor: &Floor, rows: usize) -> f64 {
    1.0 / bare.items_per_second(&floor.best, rows, 1)
}

/// One client's two references, measured together over `rows` items: seconds per item.
#[derive(Clone, Copy)]
pub struct Latency {
    /// The bare models one after the other on one thread, divided by the compute threads.
    pub floor: f64,
    /// The bare models side by side on the compute threads.
    pub side_by_side: f64,
}

/// Medians over `rows` items of both latency references, the two alternating item by item.
pub fn latency(bare: &Bare, rows: usize, threads: usize) -> Latency {
    let (alone, side): (Vec<f64>, Vec<f64>) = (0..rows.max(1))
        .map(|item| (bare.alone(item), bare.side_by_side(item, threads)))
        .unzip();
    Latency {
        floor: median(alone) / threads.max(1) as f64,
        side_by_side: median(side),
    }
}

/// Measures every model on `items` (cycled) at each batch size, `rows` rows per size. As a
/// request would, each batch of items goes through every model in turn, so no model finds its
/// weights still in cache from its previous call: the floor pays the same memory traffic a
/// server does.
pub fn measure(bare: &Bare, rows: usize, threads: usize) -> Floor {
    let models = bare.ensemble.models.len();
    let mut seconds = vec![vec![0.0f64; SIZES.len()]; models];
    let mut out = Scores::default();
    // The whole pass runs twice and only the second counts: measured right after loading, the
    // first pass came out 5-10 % slower than the same pass moments later (first use of the
    // runtimes' buffers at each size), a cost no server pays past its warm-up.
    for _pass in 0..2 {
        seconds.iter_mut().for_each(|t| t.fill(0.0));
        for (s, &size) in SIZES.iter().enumerate() {
            // One untimed round to warm up, then timed rounds until `rows` rows (and at least
            // MIN_CALLS calls) are done.
            for m in 0..models {
                bare.run(m, size, 0, &mut out);
            }
            let rows_here = rows.max(MIN_CALLS * size);
            let mut from = size;
            while from < size + rows_here {
                for (m, total) in seconds.iter_mut().enumerate() {
                    let started = Instant::now();
                    bare.run(m, size, from, &mut out);
                    total[s] += started.elapsed().as_secs_f64();
                }
                from += size;
            }
            let done = (rows_here.div_ceil(size) * size) as f64;
            seconds.iter_mut().for_each(|t| t[s] /= done);
        }
    }
    let side_by_side = median((0..rows.max(1)).map(|item| bare.side_by_side(item, threads)));
    let models: Vec<(String, Vec<f64>)> = bare
        .ensemble
        .models
        .iter()
        .zip(seconds)
        .map(|(m, c)| (m.spec.name.clone(), c))
        .collect();
    // Each model's fastest batch size, as an index into SIZES.
    let fastest: Vec<usize> = models
        .iter()
        .map(|(_, c)| {
            (0..SIZES.len())
                .min_by(|&a, &b| c[a].total_cmp(&c[b]))
                .unwrap_or(0)
        })
        .collect();
    let best: Vec<usize> = fastest.iter().map(|&i| SIZES[i]).collect();
    Floor {
        unbatched: models.iter().map(|(_, c)| c[0]).sum(),
        batched: models.iter().zip(&fastest).map(|((_, c), &i)| c[i]).sum(),
        models,
        side_by_side,
        batched_side_by_side: bare.items_per_second(&best, rows, threads),
        best,
    }
}

/// The median of `values` (0 when there are none).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
