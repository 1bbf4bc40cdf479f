//! An ONNX run that every waiting request has given up on is stopped through onnxruntime's
//! terminate flag (`Runtime::run_stoppable`), and the flag never leaks into the next run: the
//! session answers the next batch exactly as a fresh one does.

use std::sync::Arc;

use lastmile::runtime::onnx::{Feed, OnnxLabels, OnnxModel, OnnxSpec, ScoreKind};
use lastmile::runtime::{Inputs, RunError, Runtime, Scores};

use crate::support::root;

fn spec(file: &str, feed: Feed, labels: OnnxLabels, scores: ScoreKind) -> OnnxSpec {
    OnnxSpec {
        path: root().join("tests/fixtures/onnx").join(file),
        input: None,
        feed,
        output: None,
        scores,
        labels,
        intra_threads: 1,
    }
}

fn labels(file: &str) -> OnnxLabels {
    let text = std::fs::read_to_string(root().join("tests/fixtures/onnx").join(file)).unwrap();
    OnnxLabels::List(text.lines().map(str::to_owned).collect())
}

/// Stops a run abandoned from the start, then checks the next runs, watched or not, answer
/// bit for bit what a fresh session answers.
fn stops_then_answers_exactly(spec: &OnnxSpec, inputs: &Inputs<'_>) {
    let model = OnnxModel::load(spec).unwrap();
    assert!(model.stoppable());
    let mut out = Scores::default();
    let stopped = model.run_stoppable(inputs, &mut out, Arc::new(|| true));
    assert!(
        matches!(stopped, Err(RunError::Stopped)),
        "an abandoned run is stopped, got {stopped:?}"
    );

    let mut fresh = Scores::default();
    OnnxModel::load(spec)
        .unwrap()
        .run(inputs, &mut fresh)
        .unwrap();
    let mut after = Scores::default();
    model.run(inputs, &mut after).unwrap();
    assert_eq!(after.data, fresh.data, "the terminate flag was cleared");
    let mut watched = Scores::default();
    model
        .run_stoppable(inputs, &mut watched, Arc::new(|| false))
        .unwrap();
    assert_eq!(watched.data, fresh.data, "a wanted run is not stopped");
}

#[test]
fn an_abandoned_onnx_run_is_stopped_and_the_next_run_answers_exactly() {
    let texts = [
        "red cotton shirt",
        "stainless steel pan",
        "",
        "usb cable 2m",
    ];
    let text = OnnxSpec {
        output: Some("probabilities".into()),
        ..spec(
            "tfidf_lr_nozipmap.onnx",
            Feed::Text,
            labels("tfidf_lr_nozipmap.labels.txt"),
            ScoreKind::Probabilities,
        )
    };
    stops_then_answers_exactly(&text, &Inputs::Text(&texts));

    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    let features = spec(
        "mlp_float.onnx",
        Feed::Features,
        labels("mlp_float.labels.txt"),
        ScoreKind::Logits,
    );
    stops_then_answers_exactly(
        &features,
        &Inputs::Features {
            data: &data,
            width: 6,
        },
    );
}
