//! Many random small ensembles (partial coverage, shuffled label orders, temperatures, weights
//! that tie, groups of every strategy, rules, candidates; scores on a coarse grid so that ties
//! happen): for every member, the answer without it equals the re-vote and the first label of a
//! combiner built from the manifest without it. Most members are settled without voting again.

use super::super::super::tests::m;
use super::*;

const STRATEGIES: &[&str] = &[
    "strategy = \"soft\"",
    "strategy = \"hard\"",
    "strategy = \"rank\"\nrank_k = 3",
    "strategy = \"max\"",
    "strategy = \"geometric\"\nfloor = 0.001",
];

const RULES: &[&str] = &[
    "",
    "[[rule]]\ntype = \"min_confidence\"\nthreshold = 0.3\n",
    "[[rule]]\ntype = \"min_agreement\"\nmodels = 3\nfallback = \"D1 > C0 > L0\"\n",
    "[[rule]]\ntype = \"taxonomy_backoff\"\nleaf_threshold = 0.5\nparent_threshold = 0.4\nlevels = 2\n",
    "[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"x\"]\nlabel = \"D0 > C1 > L2\"\naction = \"multiply\"\nfactor = 3.0\n\
     [[rule]]\ntype = \"deny\"\nlabels = [\"D1 > C1\"]\n",
    "[[rule]]\ntype = \"keyword\"\nfield = \"title\"\nkeywords = [\"x\"]\nlabel = \"D0 > C0 > L1\"\naction = \"force\"\n\
     [[rule]]\ntype = \"min_confidence\"\nthreshold = 0.2\nfallback = \"D0 > C0 > L1\"\n",
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

/// Label paths D0..D1 > C0..C{categories} > L0..L{leaves}.
fn names(categories: usize, leaves: usize) -> Vec<String> {
    let mut v = Vec::new();
    for d in 0..2 {
        for c in 0..categories {
            for l in 0..leaves {
                v.push(format!("D{d} > C{c} > L{l}"));
            }
        }
    }
    v
}

/// A random ensemble of `n` models (in groups g1, g2 or none when `groups`) and one item's
/// scores for them.
fn ensemble(rng: &mut Rng, n: usize, labels: usize, groups: bool) -> (Vec<M>, Vec<Vec<f32>>) {
    let mut models = Vec::new();
    let mut scores = Vec::new();
    for i in 0..n {
        let mut ids: Vec<u32> = (0..labels as u32).filter(|_| rng.unit() < 0.7).collect();
        if ids.is_empty() {
            ids.push(rng.below(labels) as u32);
        }
        for j in (1..ids.len()).rev() {
            ids.swap(j, rng.below(j + 1));
        }
        let weight = [1.0, 1.0, 2.0, 0.5, 3.0][rng.below(5)];
        let temperature = [1.0, 1.0, 0.7, 1.6][rng.below(4)];
        let mut model = m(&format!("m{i}"), weight, &ids).temperature(temperature);
        if groups && i < n - 1 {
            model = model.group(["g1", "g2"][rng.below(2)]);
        }
        models.push(model);
        let coarse = rng.unit() < 0.5;
        let raw: Vec<f32> = ids
            .iter()
            .map(|_| {
                let x = rng.unit();
                if coarse {
                    (x * 4.0).floor() / 4.0
                } else {
                    x * x * x
                }
            })
            .collect();
        let total: f32 = raw.iter().sum::<f32>().max(1e-6);
        scores.push(raw.iter().map(|x| x / total).collect());
    }
    (models, scores)
}

/// `[vote]` with `outer`, groups g1 and g2 (those that have a model among `models`) with the
/// given inner strategies, then `rules`.
fn config(outer: &str, inner: [&str; 2], models: &[M], rules: &str) -> String {
    let mut text = format!("[vote]\n{outer}\nagreement_k = 2\n");
    for (g, strategy) in ["g1", "g2"].iter().zip(inner) {
        if models.iter().any(|x| x.group.as_deref() == Some(g)) {
            text += &format!("[vote.groups.{g}]\n{strategy}\nweight = 1.5\n");
        }
    }
    text + rules
}

/// 12 labels: every label is looked at.
#[test]
fn random_ensembles_match_the_definition_for_every_member() {
    random_ensembles(2, 3, 400, 3, 20);
}

/// 200 labels: most are never looked at; the bounds decide where to stop.
#[test]
fn random_ensembles_over_many_labels_match_the_definition() {
    random_ensembles(4, 25, 150, 6, 21);
}

fn random_ensembles(categories: usize, leaves: usize, cases: usize, min_models: usize, seed: u64) {
    let names = names(categories, leaves);
    let label_names: Vec<&str> = names.iter().map(String::as_str).collect();
    let space = labels(&label_names);
    let mut rng = Rng(seed);
    let (mut members, mut revoted, mut pivotal) = (0u32, 0u32, 0u32);
    let mut evaluated = 0u64;
    for case in 0..cases {
        let groups = case % 2 == 1;
        let n = min_models + rng.below(4);
        let (models, scores) = ensemble(&mut rng, n, names.len(), groups);
        let outer = STRATEGIES[rng.below(STRATEGIES.len())];
        let inner = [
            STRATEGIES[rng.below(STRATEGIES.len())],
            STRATEGIES[rng.below(STRATEGIES.len())],
        ];
        let rules = RULES[rng.below(RULES.len())];
        let c = build(&config(outer, inner, &models, rules), &models, &space);
        let title = if rng.unit() < 0.5 {
            "an x here"
        } else {
            "none"
        };
        let fields = [Some(title), None];
        let candidates = ["D0 > ".to_owned(), "D1 > C0 > L2".to_owned()];
        let it = ItemView {
            fields: &fields,
            top_k: 1 + rng.below(3),
            candidates: (rng.unit() < 0.25).then_some(&candidates[..]),
            explain: false,
        };
        let inf = influence_of(&c, &it, &scores);
        members += inf.members.len() as u32;
        revoted += inf.work.revoted;
        evaluated += inf.work.labels;
        // Against a combiner built from the manifest without each member.
        for mi in &inf.members {
            let kept: Vec<M> = models
                .iter()
                .enumerate()
                .filter(|&(i, x)| i != mi.model && x.weight > 0.0)
                .map(|(_, x)| x.clone())
                .collect();
            let kept_scores: Vec<Vec<f32>> = (0..models.len())
                .filter(|&i| i != mi.model)
                .map(|i| scores[i].clone())
                .collect();
            let alone = crate::combine::tests::try_build(
                &config(outer, inner, &kept, rules),
                &kept,
                &space,
            );
            let want = alone.ok().and_then(|alone| {
                let rows: Vec<&[f32]> = kept_scores.iter().map(Vec::as_slice).collect();
                let a = alone.combine(&it, &rows, &mut Scratch::default());
                a.predictions
                    .first()
                    .map(|p| alone.label_name(p.label).to_owned())
            });
            let got = mi.without.map(|l| c.label_name(l).to_owned());
            assert_eq!(got, want, "case {case}, without {}", models[mi.model].name);
            pivotal += mi.pivotal as u32;
        }
    }
    eprintln!("members {members}, revoted {revoted}, pivotal {pivotal}, labels {evaluated}");
    assert!(
        pivotal > 50,
        "pivotal members are common enough to test: {pivotal}"
    );
    assert!(
        revoted * 10 < members,
        "most members are settled without voting again: {revoted} of {members}"
    );
}
