// Voting benchmark: 50 models x 7,000 classes, one item at a time, per strategy.
//
//     cargo bench --bench voting
//
// Prints microseconds per item and the share of the models' own compute for the same item. The
// reference is the demo ensemble's (50 models, 7,200 labels): 5.75 ms per item at each model's
// best batch size, the bare floor `lastmile bench` measures (BENCHMARKS.md); set LASTMILE_MODEL_US
// to compare with another per-model figure. As a floor that no model can go under, it also times
// the models' softmax alone (7,000 exps per model). LASTMILE_BENCH_FILTER=geo runs only the cases
// whose name contains "geo" (or exactly the one named, if one is).
//
// Scores are softmax outputs of random logits with two strong labels, in label-space order (as
// the ensemble loads every model: see `Runtime::reorder_columns`), except in the one case that
// shows what a scattered order would cost. Items rotate through 8 sets of scores (11 MB), so that,
// as in the server, the scores are not already in the core's cache when voting starts.

use std::hint::black_box;
use std::time::Instant;

use lastmile::combine::{Combiner, ItemView, ModelView, Readied, RuleConfig, Scratch, VoteConfig};
use lastmile::labels::LabelSpace;

const MODELS: usize = 50;
const LABELS: usize = 7_000;
const ITEMS: usize = 8;

const RULES: &str = r#"
[[rule]]
type = "keyword"
field = "title"
keywords = ["knife", "knives"]
label = "Dept 3 > Cat 70 > Leaf 2450"
action = "multiply"
factor = 2.0

[[rule]]
type = "taxonomy_backoff"
leaf_threshold = 0.5
parent_threshold = 0.6

[[rule]]
type = "min_agreement"
models = 10

[[rule]]
type = "min_confidence"
threshold = 0.1
"#;

/// One benchmark case: a manifest's `[vote]` and `[[rule]]` parts, and how the models are set up.
struct Case {
    name: &'static str,
    manifest: &'static str,
    temperature: f32,
    groups: bool,
    in_label_order: bool,
    explain: bool,
}

const fn case(name: &'static str, manifest: &'static str) -> Case {
    Case {
        name,
        manifest,
        temperature: 1.0,
        groups: false,
        in_label_order: true,
        explain: false,
    }
}

const CASES: &[Case] = &[
    case("soft", ""),
    Case {
        in_label_order: false,
        ..case("soft, outputs in each model's own order", "")
    },
    case("hard", "vote.strategy = \"hard\""),
    case(
        "rank (k = 10)",
        "vote.strategy = \"rank\"\nvote.rank_k = 10",
    ),
    case("max", "vote.strategy = \"max\""),
    case("geometric", "vote.strategy = \"geometric\""),
    Case {
        temperature: 1.5,
        ..case("soft, temperature on every model", "")
    },
    Case {
        groups: true,
        ..case(
            "soft in 2 groups, soft across",
            "[vote.groups.fasttext]\n[vote.groups.onnx]",
        )
    },
    case("soft + 4 rules", RULES),
    Case {
        explain: true,
        ..case("soft + explain", "")
    },
];

#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(default)]
    vote: VoteConfig,
    #[serde(default)]
    rule: Vec<RuleConfig>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn softmax(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for v in logits.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    logits.iter_mut().for_each(|v| *v /= sum);
}

/// `ITEMS` items, each with `MODELS` score vectors in the models' own label order.
fn scores(rng: &mut Rng, label_ids: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
    (0..ITEMS)
        .map(|_| {
            let truth = rng.below(LABELS) as u32;
            let rival = rng.below(LABELS) as u32;
            let logit = |rng: &mut Rng, l: u32| {
                let boost = [(truth, 9.0), (rival, 8.0)]
                    .iter()
                    .find(|(t, _)| *t == l)
                    .map_or(0.0, |(_, b)| *b);
                rng.unit() * 4.0 + boost
            };
            label_ids
                .iter()
                .map(|ids| {
                    let mut v: Vec<f32> = ids.iter().map(|&l| logit(rng, l)).collect();
                    softmax(&mut v);
                    v
                })
                .collect()
        })
        .collect()
}

/// Best of several rounds of `n` calls, in microseconds per call: the figure the code can reach,
/// not the machine's other load.
fn best_us(rounds: usize, n: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0);
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            (0..n).for_each(&mut f);
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let model_us: f64 = std::env::var("LASTMILE_MODEL_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(115.0);
    let only = std::env::var("LASTMILE_BENCH_FILTER").unwrap_or_default();
    let names: Vec<String> = (0..LABELS)
        .map(|i| format!("Dept {} > Cat {} > Leaf {i}", i / 700, i / 35))
        .collect();
    let space = LabelSpace::from_names(names).expect("distinct names");
    let fields = vec!["title".to_string(), "description".to_string()];
    let model_names: Vec<String> = (0..MODELS).map(|m| format!("model-{m:02}")).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let own_order: Vec<Vec<u32>> = (0..MODELS)
        .map(|_| {
            let mut ids: Vec<u32> = (0..LABELS as u32).collect();
            for i in (1..ids.len()).rev() {
                ids.swap(i, rng.below(i + 1));
            }
            ids
        })
        .collect();
    let label_order: Vec<Vec<u32>> = vec![(0..LABELS as u32).collect(); MODELS];
    let own_order_items = scores(&mut rng, &own_order);
    let label_order_items = scores(&mut rng, &label_order);

    let reference = model_us * MODELS as f64;
    println!("{MODELS} models x {LABELS} labels, one item at a time, best of 7 rounds");
    println!("reference model compute: {MODELS} x {model_us} us = {reference:.0} us per item\n");
    let mut buf = vec![0.0f32; LABELS];
    let softmax_us = best_us(5, 40, |i| {
        for scores in &own_order_items[i % ITEMS] {
            buf.copy_from_slice(scores);
            softmax(&mut buf);
            black_box(&buf);
        }
    });
    let line = |name: &str, us: f64, note: &str| println!("{name:<40} {us:>8.1} us/item  {note}");
    line(
        "models' softmax alone",
        softmax_us,
        "(a floor under the models' compute)",
    );

    let exact = CASES.iter().any(|c| c.name == only);
    let chosen = CASES.iter().filter(|c| {
        if exact {
            c.name == only
        } else {
            c.name.contains(only.as_str())
        }
    });
    for c in chosen {
        let (ids, items) = if c.in_label_order {
            (&label_order, &label_order_items)
        } else {
            (&own_order, &own_order_items)
        };
        let views: Vec<ModelView<'_>> = (0..MODELS)
            .map(|m| ModelView {
                name: &model_names[m],
                weight: 1.0 + (m % 3) as f32,
                temperature: c.temperature,
                group: c.groups.then_some(["fasttext", "onnx"][m % 2]),
                label_ids: &ids[m],
            })
            .collect();
        let manifest: Manifest = toml::from_str(c.manifest).expect("bench manifest parses");
        let combiner = Combiner::new(&manifest.vote, &manifest.rule, &views, &space, &fields)
            .expect("bench manifest is valid");
        let per_item: Vec<Vec<&[f32]>> = items
            .iter()
            .map(|i| i.iter().map(Vec::as_slice).collect())
            .collect();
        let item_fields = [Some("a chef knife with a wooden handle"), None];
        let item = ItemView {
            fields: &item_fields,
            top_k: 5,
            candidates: None,
            explain: c.explain,
        };
        let mut scratch = Scratch::default();
        let us = best_us(7, 200, |i| {
            black_box(combiner.combine(&item, &per_item[i % ITEMS], &mut scratch));
        });
        // The server's split: each model's part (merge, temperature, top labels) readied as its
        // rows come in, beside the other models; then the pools and rules after the last one.
        let mut rows: Vec<Vec<Vec<f32>>> = items.clone();
        let mut readied: Vec<Vec<Readied>> = vec![vec![Readied::default(); MODELS]; ITEMS];
        let ready_us = best_us(7, 200, |i| {
            let i = i % ITEMS;
            for (m, row) in rows[i].iter_mut().enumerate() {
                row.copy_from_slice(&items[i][m]);
                readied[i][m] = combiner.ready(m, &item, row, &mut scratch);
            }
        });
        let final_us = best_us(7, 200, |i| {
            let i = i % ITEMS;
            let scores: Vec<&[f32]> = rows[i].iter().map(Vec::as_slice).collect();
            let readied: Vec<&Readied> = readied[i].iter().collect();
            black_box(combiner.combine_readied(&item, &scores, &readied, &mut scratch));
        });
        let share = format!(
            "{:5.2} % of model compute   (served: {ready_us:6.1} us readied beside the models, \
             {final_us:5.1} us after the last)",
            100.0 * us / reference
        );
        line(c.name, us, &share);
    }
}
