//! The compute pool end to end: many concurrent requests, rows split and merged into batches of
//! any size, must get exactly the answers each item gets alone with batching off.

use std::path::Path;
use std::sync::Arc;

use lastmile::ensemble::{Ensemble, ItemAnswer, ItemOptions, ValidItem};
use lastmile::scheduler::{ComputePool, Priority};
use serde_json::json;

fn ensemble(max_batch: usize) -> Arc<Ensemble> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fasttext");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.toml");
    let mut text = format!(
        "name = \"b{max_batch}\"\nversion = \"1\"\n[defaults]\nfields = [\"title\", \"description\"]\nmax_batch = {max_batch}\n"
    );
    // Temperatures, so that readying each model's rows for the vote has work to do.
    for (name, file, temperature) in [
        ("soft", "softmax.bin", 1.0),
        ("hs", "hs.bin", 1.7),
        ("ngrams", "ngrams_subwords.bin", 1.0),
        ("q", "quantized.ftz", 0.6),
    ] {
        text += &format!(
            "[[model]]\nname = \"{name}\"\nkind = \"fasttext\"\npath = \"{}\"\ntemperature = {temperature}\n",
            fixtures.join(file).display()
        );
    }
    std::fs::write(&path, text).unwrap();
    Arc::new(Ensemble::load(&path, 2).unwrap())
}

fn items(e: &Ensemble, n: usize, seed: usize) -> Vec<ValidItem> {
    const WORDS: [&str; 10] = [
        "knife", "tent", "stroller", "laptop", "case", "coffee", "garden", "shoes", "paint", "game",
    ];
    (0..n)
        .map(|i| {
            let k = seed * 7 + i * 3;
            let object = json!({
                "title": format!("{} {}", WORDS[k % 10], WORDS[(k / 10) % 10]),
                "description": format!("{} for everyday use", WORDS[(k + 5) % 10]),
            });
            let options = ItemOptions {
                top_k: 4,
                explain: i % 2 == 0,
                ..ItemOptions::default()
            };
            e.item_from_json(object.as_object().unwrap(), options)
                .unwrap()
        })
        .collect()
}

fn assert_same(a: &ItemAnswer, b: &ItemAnswer) {
    assert_eq!(a.predictions.len(), b.predictions.len());
    for (x, y) in a.predictions.iter().zip(&b.predictions) {
        assert_eq!(x.label, y.label);
        assert!((x.score - y.score).abs() < 1e-6, "{x:?} vs {y:?}");
    }
    assert_eq!(a.agreement, b.agreement);
    assert_eq!(a.models.is_some(), b.models.is_some());
}

#[test]
fn batched_answers_equal_answers_alone() {
    let pool = ComputePool::new(2).unwrap();
    let alone = ensemble(1);
    let batched = ensemble(3);

    // Twelve requests of five items each, all in flight at once: lanes split and merge them.
    let requests: Vec<Vec<ValidItem>> = (0..12).map(|s| items(&batched, 5, s)).collect();
    let tickets: Vec<_> = requests
        .iter()
        .map(|r| pool.predict(&batched, r.clone()))
        .collect();
    for (request, ticket) in requests.iter().zip(tickets) {
        let answers = ticket.wait().expect("batched answers");
        assert_eq!(answers.len(), request.len());
        for (item, answer) in request.iter().zip(&answers) {
            let single = pool
                .predict(&alone, vec![item.clone()])
                .wait()
                .expect("answer alone");
            assert_same(answer, &single[0]);
        }
    }
    assert_eq!(pool.queue_depth(), 0);
}

#[test]
fn model_scores_come_back_uncombined() {
    let pool = ComputePool::new(1).unwrap();
    let e = ensemble(2);
    let its = items(&e, 3, 1);
    let scores = pool.score(&e, its).wait().unwrap();
    assert_eq!(scores.scores.len(), e.models.len());
    for (s, m) in scores.scores.iter().zip(&e.models) {
        assert_eq!((s.rows, s.cols), (3, m.label_ids.len()));
        for r in 0..3 {
            let total: f32 = s.row(r).iter().sum();
            assert!(total > 0.5, "model {} row {r} is scored", m.spec.name);
        }
    }
}

/// The pool readies each model's rows for the vote as they come back; the answers are exactly
/// those of combining every model's raw scores at the end.
#[test]
fn answers_equal_combining_the_raw_scores() {
    let pool = ComputePool::new(2).unwrap();
    let e = ensemble(3);
    let its = items(&e, 7, 5);
    let answers = pool.predict(&e, its.clone()).wait().unwrap();
    let scores = pool.score(&e, its.clone()).wait().unwrap();
    for (row, (item, answer)) in its.iter().zip(&answers).enumerate() {
        assert_eq!(answer, &e.combine(row, item, &scores), "item {row}");
    }
}

#[test]
fn an_empty_request_is_answered_at_once() {
    let pool = ComputePool::new(1).unwrap();
    let answers = pool.predict(&ensemble(4), Vec::new()).wait().unwrap();
    assert!(answers.is_empty());
}

#[test]
fn a_dropped_ticket_leaves_nothing_behind() {
    let pool = ComputePool::new(1).unwrap();
    let e = ensemble(2);
    for s in 0..20 {
        drop(pool.predict(&e, items(&e, 4, s)));
    }
    // Whatever ran or was dropped, a later request is answered and the queues drain.
    let answers = pool.predict(&e, items(&e, 2, 99)).wait().unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(pool.queue_depth(), 0);
}

#[test]
fn low_priority_work_gets_the_same_answers() {
    let pool = ComputePool::new(2).unwrap();
    let e = ensemble(8);
    let live = pool.predict(&e, items(&e, 6, 3));
    let shadow = pool.predict_at(Priority::Low, &e, items(&e, 6, 3));
    let (a, b) = (live.wait().unwrap(), shadow.wait().unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert_same(x, y);
    }
    assert_eq!(pool.low_queue_depth(), 0);
}

/// Validating a candidate scores at low priority (so live traffic goes first): same scores.
#[test]
fn low_priority_scores_equal_normal_ones() {
    let pool = ComputePool::new(2).unwrap();
    let e = ensemble(4);
    let normal = pool.score(&e, items(&e, 5, 2)).wait().unwrap();
    let low = pool
        .score_at(Priority::Low, &e, items(&e, 5, 2))
        .wait()
        .unwrap();
    for (a, b) in normal.scores.iter().zip(&low.scores) {
        assert_eq!(a.data, b.data);
    }
    assert_eq!(pool.low_queue_depth(), 0);
}

/// An evaluation whose caller has gone (a deploy abandoned at shutdown) stops after the batch in
/// hand instead of scoring the rest of the validation set.
#[test]
fn an_evaluation_stops_when_its_progress_says_break() {
    use lastmile::eval::{evaluate, LabelledItem};
    use std::ops::ControlFlow;

    let pool = ComputePool::new(2).unwrap();
    let e = ensemble(4);
    let data: Vec<LabelledItem> = items(&e, 12, 4)
        .into_iter()
        .map(|item| LabelledItem {
            item,
            label: "kitchen_knives".into(),
        })
        .collect();
    let mut batches = Vec::new();
    let stopped = evaluate(&e, &pool, Priority::Low, &data, 5, |n| {
        batches.push(n);
        ControlFlow::Break(())
    });
    assert!(stopped.is_err());
    assert_eq!(batches, [5], "one batch scored, then nothing");
    let mut seen = 0;
    let whole = evaluate(&e, &pool, Priority::Low, &data, 5, |n| {
        seen += n;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((seen, whole.items), (12, 12));
    assert_eq!(pool.low_queue_depth(), 0);
}
