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
}

/// Measures every model on `items` (cycled) at each batch size, `rows` rows per size. As a
/// request would, each batch of items goes through every model in turn, so no model finds its
/// weights still in cache from its previous call: the floor pays the same memory traffic a
/// server does.
pub fn measure(ensemble: &Ensemble, items: &[ValidItem], rows: usize, threads: usize) -> Floor {
    let texts: Vec<Vec<String>> = ensemble
        .models
        .iter()
        .map(|m| items.iter().map(|it| it.text(&m.field_ids)).collect())
        .collect();
    let mut seconds = vec![vec![0.0f64; SIZES.len()]; ensemble.models.len()];
    let mut out = Scores::default();
    let mut side_by_side = 0.0;
    for (s, &size) in SIZES.iter().enumerate() {
        let run = |m: usize, from: usize, out: &mut Scores| {
            let model = &ensemble.models[m];
            let result = match model.runtime.input_kind() {
                InputKind::Text => {
                    let batch: Vec<&str> = (0..size)
                        .map(|k| texts[m][(from + k) % items.len()].as_str())
                        .collect();
                    model.runtime.run(&Inputs::Text(&batch), out)
                }
                InputKind::Features { width } => {
                    let data = features(items, model.field_ids[0], width, from, size);
                    model
                        .runtime
                        .run(&Inputs::Features { data: &data, width }, out)
                }
            };
            result.expect("the model runs on the benchmark items");
        };
        // One untimed round to warm up, then timed rounds until `rows` rows are done.
        for m in 0..ensemble.models.len() {
            run(m, 0, &mut out);
        }
        let mut from = size;
        while from < size + rows {
            for (m, total) in seconds.iter_mut().enumerate() {
                let started = Instant::now();
                run(m, from, &mut out);
                total[s] += started.elapsed().as_secs_f64();
            }
            from += size;
        }
        let done = (rows.div_ceil(size) * size) as f64;
        seconds.iter_mut().for_each(|t| t[s] /= done);
        if size == 1 {
            side_by_side = side_by_side_median(ensemble.models.len(), rows, threads, run);
        }
    }
    let models: Vec<(String, Vec<f64>)> = ensemble
        .models
        .iter()
        .zip(seconds)
        .map(|(m, c)| (m.spec.name.clone(), c))
        .collect();
    Floor {
        unbatched: models.iter().map(|(_, c)| c[0]).sum(),
        batched: models
            .iter()
            .map(|(_, c)| c.iter().copied().fold(f64::INFINITY, f64::min))
            .sum(),
        models,
        side_by_side,
    }
}

/// Median seconds per item of `items` items, each running all `models` models (`run(m, item,
/// out)`) on `threads` threads that take the next model as they come free.
fn side_by_side_median(
    models: usize,
    items: usize,
    threads: usize,
    run: impl Fn(usize, usize, &mut Scores) + Sync,
) -> f64 {
    let mut times: Vec<f64> = (0..items.max(1))
        .map(|item| {
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
                            run(m, item, &mut out);
                        }
                    });
                }
            });
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn features(items: &[ValidItem], field: usize, width: usize, from: usize, n: usize) -> Vec<f32> {
    let mut data = Vec::with_capacity(n * width);
    for k in 0..n {
        items[(from + k) % items.len()].push_features(field, width, &mut data);
    }
    data
}
