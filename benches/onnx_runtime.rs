//! What `OnnxModel::run` adds on top of onnxruntime itself: a 256 → 7000 MatMul + Softmax model,
//! one row at a time and in batches of 32, through `OnnxModel::run` and through `Session::run` on
//! the same tensor (both intra-op 1), printed with the overhead ratio.
//!
//! The model is made by `scripts/fixtures/make_onnx_fixtures.py --bench` into
//! target/bench-models/ (7 MB, not committed); without it the bench says so and exits.
//!
//!     cargo bench --bench onnx_runtime

mod common;

use std::path::Path;
use std::time::Duration;

use common::{fmt, interleaved, pseudo_random, time};

use lastmile::runtime::onnx::{Feed, OnnxLabels, OnnxModel, OnnxSpec, ScoreKind};
use lastmile::runtime::{ort_env, Inputs, Runtime, Scores};
use ort::session::Session;
use ort::value::TensorRef;

const WIDTH: usize = 256;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-models");
    let model_path = dir.join("matmul_7000.onnx");
    if !model_path.is_file() {
        println!(
            "onnx_runtime: skipped, {} is missing; make it with\n  \
             .runtime/fixtures-venv-onnx/bin/python scripts/fixtures/make_onnx_fixtures.py --bench",
            model_path.display()
        );
        return;
    }
    let labels: Vec<String> = std::fs::read_to_string(dir.join("matmul_7000.labels.txt"))
        .expect("labels file beside the bench model")
        .lines()
        .map(str::to_owned)
        .collect();
    let spec = OnnxSpec {
        path: model_path.clone(),
        input: None,
        feed: Feed::Features,
        output: None,
        scores: ScoreKind::Probabilities,
        labels: OnnxLabels::List(labels),
        intra_threads: 1,
    };
    let model = OnnxModel::load(&spec).unwrap_or_else(|e| panic!("load: {e}"));
    let env = ort_env::environment().unwrap_or_else(|e| panic!("{e}"));
    let mut session = Session::builder(env)
        .and_then(|b| Ok(b.with_intra_threads(1)?.with_inter_threads(1)?))
        .and_then(|mut b| b.commit_from_file(&model_path))
        .unwrap_or_else(|e| panic!("direct session: {e}"));

    let data = pseudo_random(32 * WIDTH);
    println!("onnx_runtime: 256 -> 7000 MatMul+Softmax, intra-op 1");
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>9}",
        "batch", "OnnxModel/row", "ort direct/row", "OnnxModel/call", "overhead"
    );
    for (batch, iters) in [(1usize, 3000usize), (32, 300)] {
        let rows = &data[..batch * WIDTH];
        let inputs = Inputs::Features {
            data: rows,
            width: WIDTH,
        };
        let mut out = Scores::default();
        let mut through_model = || {
            model.run(&inputs, &mut out).expect("OnnxModel::run");
            std::hint::black_box(&out.data);
        };
        let mut direct = || {
            let tensor = TensorRef::from_array_view(([batch, WIDTH], rows)).expect("tensor");
            let outputs = session.run(ort::inputs![tensor]).expect("Session::run");
            let (_, probs) = outputs[0].try_extract_tensor::<f32>().expect("f32 output");
            std::hint::black_box(probs);
        };
        let (m, d) = interleaved(iters, &mut through_model, &mut direct);
        // The part of the difference that is copying the scores out of onnxruntime's buffer
        // into the caller's (`Scores`), which the direct call does not do.
        let mut copy_buf: Vec<f32> = Vec::with_capacity(batch * 7000);
        let src = vec![0.5f32; batch * 7000];
        let mut copy = || {
            copy_buf.clear();
            copy_buf.extend_from_slice(&src);
            std::hint::black_box(&copy_buf);
        };
        let mut t_copy: Vec<Duration> = (0..iters).map(|_| time(&mut copy)).collect();
        let c = common::median(&mut t_copy);
        println!(
            "{batch:>6} {:>14} {:>14} {:>14} {:>8.3}x   (copying the scores out: {})",
            fmt(m / batch as u32),
            fmt(d / batch as u32),
            fmt(m),
            m.as_secs_f64() / d.as_secs_f64(),
            fmt(c)
        );
    }
}
