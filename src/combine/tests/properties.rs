//! Properties every strategy keeps, checked on many random ensembles (partial coverage, shuffled
//! label orders, temperatures, groups): permuting the models changes nothing, scaling all weights
//! changes nothing, a weight-0 model has no effect, a group of one model equals the model.

use super::*;

const LABELS: usize = 12;
const STRATEGIES: &[&str] = &[
    "strategy = \"soft\"",
    "strategy = \"hard\"",
    "strategy = \"rank\"\nrank_k = 3",
    "strategy = \"max\"",
    "strategy = \"geometric\"\nfloor = 0.001",
];

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f32) as usize).min(n - 1)
    }
}

/// A random ensemble: models with random weights, temperatures and label subsets (in random order),
/// and one item's scores for them.
fn ensemble(seed: u64) -> (Vec<M>, Vec<Vec<f32>>) {
    let mut rng = Rng(seed);
    let mut models = Vec::new();
    let mut scores = Vec::new();
    for i in 0..6 {
        let mut ids: Vec<u32> = (0..LABELS as u32).filter(|_| rng.unit() < 0.75).collect();
        if ids.is_empty() {
            ids.push(rng.below(LABELS) as u32);
        }
        for j in (1..ids.len()).rev() {
            ids.swap(j, rng.below(j + 1));
        }
        let temperature = [1.0, 0.7, 1.6][rng.below(3)];
        let weight = 0.5 + 2.5 * rng.unit();
        models.push(m(&format!("m{i}"), weight, &ids).temperature(temperature));
        let raw: Vec<f32> = ids.iter().map(|_| rng.unit().powi(3)).collect();
        let total: f32 = raw.iter().sum();
        scores.push(raw.iter().map(|x| x / total).collect());
    }
    (models, scores)
}

fn labels() -> LabelSpace {
    space(
        &(0..LABELS)
            .map(|i| format!("L{i:02}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
}

/// Each strategy, without groups and with two groups (of mixed inner strategies).
fn configs() -> Vec<(String, bool)> {
    let mut v = Vec::new();
    for (i, s) in STRATEGIES.iter().enumerate() {
        v.push((format!("[vote]\n{s}"), false));
        let inner = STRATEGIES[(i + 2) % STRATEGIES.len()];
        v.push((format!("[vote]\n{s}\n[vote.groups.g1]\n{inner}\nweight = 1.5\n[vote.groups.g2]\nweight = 0.7"), true));
    }
    v
}

fn grouped(models: &[M], groups: bool) -> Vec<M> {
    models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if groups {
                m.clone().group(["g1", "g2"][i % 2])
            } else {
                m.clone()
            }
        })
        .collect()
}

fn answer(toml: &str, models: &[M], scores: &[Vec<f32>]) -> Answer {
    let c = build(toml, models, &labels());
    let s: Vec<&[f32]> = scores.iter().map(Vec::as_slice).collect();
    let item = ItemView {
        top_k: 5,
        explain: true,
        ..item()
    };
    combine_both(&c, &item, &s)
}

#[track_caller]
fn same_ranking(a: &Answer, b: &Answer, what: &str) {
    let labels = |x: &Answer| x.predictions.iter().map(|p| p.label).collect::<Vec<_>>();
    assert_eq!(labels(a), labels(b), "{what}");
    for (p, q) in a.predictions.iter().zip(&b.predictions) {
        assert!(
            (p.score - q.score).abs() <= 1e-5 * p.score.abs().max(1.0),
            "{what}: {p:?} vs {q:?}"
        );
    }
    assert_eq!(a.agreement, b.agreement, "{what}");
}

#[test]
fn permuting_the_models_changes_nothing() {
    for seed in 0..20 {
        let (models, scores) = ensemble(seed);
        for (toml, groups) in configs() {
            let models = grouped(&models, groups);
            let base = answer(&toml, &models, &scores);
            let mut order: Vec<usize> = (0..models.len()).collect();
            order.rotate_left(seed as usize % models.len() + 1);
            order.swap(0, models.len() - 1);
            let pm: Vec<M> = order.iter().map(|&i| models[i].clone()).collect();
            let ps: Vec<Vec<f32>> = order.iter().map(|&i| scores[i].clone()).collect();
            let permuted = answer(&toml, &pm, &ps);
            // Bit for bit: models are always combined in name order.
            assert_eq!(
                base.predictions, permuted.predictions,
                "seed {seed}: {toml}"
            );
            assert_eq!(base.agreement, permuted.agreement, "seed {seed}: {toml}");
        }
    }
}

#[test]
fn scaling_all_weights_changes_nothing() {
    for seed in 0..20 {
        let (models, scores) = ensemble(seed);
        for (toml, groups) in configs() {
            let models = grouped(&models, groups);
            let scaled: Vec<M> = models
                .iter()
                .map(|m| M {
                    weight: m.weight * 3.7,
                    ..m.clone()
                })
                .collect();
            let scaled_toml = toml
                .replace("weight = 1.5", "weight = 0.3")
                .replace("weight = 0.7", "weight = 0.14");
            let what = format!("seed {seed}: {toml}");
            same_ranking(
                &answer(&toml, &models, &scores),
                &answer(&toml, &scaled, &scores),
                &what,
            );
            // Group weights scaled by 0.2 too.
            same_ranking(
                &answer(&toml, &models, &scores),
                &answer(&scaled_toml, &models, &scores),
                &what,
            );
        }
    }
}

#[test]
fn a_weight_0_model_has_no_effect() {
    for seed in 0..20 {
        let (models, scores) = ensemble(seed);
        for (toml, groups) in configs() {
            let models = grouped(&models, groups);
            let base = answer(&toml, &models, &scores);
            // A loud model with weight 0, in a group and outside any group.
            for group in [None, Some("g1")] {
                let mut zero = m("loud", 0.0, &[0, 1, 2]);
                zero.group = group.filter(|_| groups).map(str::to_owned);
                let with: Vec<M> = models.iter().cloned().chain([zero]).collect();
                let s: Vec<Vec<f32>> = scores
                    .iter()
                    .cloned()
                    .chain([vec![1.0, f32::NAN, 0.0]])
                    .collect();
                assert_eq!(base, answer(&toml, &with, &s), "seed {seed}: {toml}");
            }
        }
    }
}

#[test]
fn a_group_of_one_model_equals_the_model() {
    for seed in 0..20 {
        let (models, scores) = ensemble(seed);
        for s in STRATEGIES {
            let flat = format!("[vote]\n{s}");
            let base = answer(&flat, &models, &scores);
            // m0 alone in group "solo" (inner soft or max), with m0's weight as the group's weight.
            for inner in ["soft", "max"] {
                let toml = format!(
                    "{flat}\n[vote.groups.solo]\nstrategy = \"{inner}\"\nweight = {:?}",
                    models[0].weight
                );
                let mut solo = models.clone();
                solo[0] = M {
                    weight: 1.0,
                    ..models[0].clone().group("solo")
                };
                same_ranking(
                    &base,
                    &answer(&toml, &solo, &scores),
                    &format!("seed {seed}: {toml}"),
                );
            }
        }
    }
}

#[test]
fn no_input_panics_or_yields_a_non_finite_score() {
    let rules = "[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"x\"]\nlabel = \"L03\"\naction = \"multiply\"\nfactor = 1e30\n\
                 [[rule]]\ntype = \"keyword\"\nfield = \"description\"\nkeywords = [\"y\"]\nlabel = \"L04\"\naction = \"force\"\n\
                 [[rule]]\ntype = \"deny\"\nlabels = [\"L1\"]\n\
                 [[rule]]\ntype = \"min_agreement\"\nmodels = 2\nfallback = \"L00\"\n\
                 [[rule]]\ntype = \"min_confidence\"\nthreshold = 0.01";
    let garbage = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1.0,
        0.0,
        1e-40,
        0.3,
        7.0,
        1e30,
    ];
    let mut rng = Rng(7);
    for seed in 0..40 {
        let (models, _) = ensemble(seed);
        for (toml, groups) in configs() {
            let c = build(
                &format!("{toml}\n{rules}"),
                &grouped(&models, groups),
                &labels(),
            );
            let scores: Vec<Vec<f32>> = (0..rng.below(8))
                .map(|_| {
                    (0..rng.below(16))
                        .map(|_| garbage[rng.below(garbage.len())])
                        .collect()
                })
                .collect();
            let s: Vec<&[f32]> = scores.iter().map(Vec::as_slice).collect();
            let cands: Vec<String> = vec!["L0".into(), "".into(), "zz".into()];
            let fields = [Some("x"), Some("y y")];
            let item = ItemView {
                fields: &fields[..rng.below(3)],
                top_k: [0, 1, 3, 1000][rng.below(4)],
                candidates: (rng.unit() < 0.5).then_some(&cands[..rng.below(4)]),
                explain: true,
            };
            let a = combine_both(&c, &item, &s);
            let contributions = a
                .explanation
                .iter()
                .flatten()
                .flat_map(|e| e.contribution.iter().chain(&e.top));
            let all = a.predictions.iter().chain(contributions);
            assert!(
                all.clone().all(|p| p.score.is_finite()),
                "seed {seed}: {toml}: {a:?}"
            );
        }
    }
}
