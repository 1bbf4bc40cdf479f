//! The bare floor: every model of the ensemble called directly through its runtime, one by one on
//! one thread, at several batch sizes; no server, no scheduler, no voting. Its per-item cost at the
//! best batch size, divided into the number of compute threads, is the throughput no server can
//! beat; its cost at batch 1 divided by the threads is the latency one client could hope for.

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
}

/// Measures every model on `items` (cycled) at each batch size, `rows` rows per size.
pub fn measure(ensemble: &Ensemble, items: &[ValidItem], rows: usize) -> Floor {
    let mut models = Vec::with_capacity(ensemble.models.len());
    for model in &ensemble.models {
        let texts: Vec<String> = items.iter().map(|it| it.text(&model.field_ids)).collect();
        let mut per_size = Vec::with_capacity(SIZES.len());
        let mut out = Scores::default();
        for size in SIZES {
            let mut done = 0;
            let mut start_row = 0;
            // One warm-up call, then timed calls until `rows` rows are done.
            let mut run = |from: usize| {
                let batch: Vec<&str> = (0..size)
                    .map(|k| texts[(from + k) % texts.len()].as_str())
                    .collect();
                let result = match model.runtime.input_kind() {
                    InputKind::Text => model.runtime.run(&Inputs::Text(&batch), &mut out),
                    InputKind::Features { width } => {
                        let data = features(items, model.field_ids[0], width, from, size);
                        model
                            .runtime
                            .run(&Inputs::Features { data: &data, width }, &mut out)
                    }
                };
                result.expect("the model runs on the benchmark items");
            };
            run(0);
            let started = Instant::now();
            while done < rows {
                run(start_row);
                start_row += size;
                done += size;
            }
            per_size.push(started.elapsed().as_secs_f64() / done as f64);
        }
        models.push((model.spec.name.clone(), per_size));
    }
    Floor {
        unbatched: models.iter().map(|(_, c)| c[0]).sum(),
        batched: models
            .iter()
            .map(|(_, c)| c.iter().copied().fold(f64::INFINITY, f64::min))
            .sum(),
        models,
    }
}

fn features(items: &[ValidItem], field: usize, width: usize, from: usize, n: usize) -> Vec<f32> {
    let mut data = Vec::with_capacity(n * width);
    for k in 0..n {
        items[(from + k) % items.len()].push_features(field, width, &mut data);
    }
    data
}
