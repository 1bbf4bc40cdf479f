//! Tests of the combiner on small label spaces. Every expected number is worked out by hand in a
//! comment next to it; configurations are written as the manifest would write them (TOML).

mod config;
mod properties;
mod rules;
mod strategies;

use serde::Deserialize;

use super::*;
use crate::labels::LabelSpace;

/// A model of a test ensemble.
#[derive(Clone, Debug)]
pub(super) struct M {
    pub name: String,
    pub weight: f32,
    pub temperature: f32,
    pub group: Option<String>,
    pub ids: Vec<u32>,
}

/// Model `name` with weight `weight` over global labels `ids` (in that order).
pub(super) fn m(name: &str, weight: f32, ids: &[u32]) -> M {
    M {
        name: name.to_owned(),
        weight,
        temperature: 1.0,
        group: None,
        ids: ids.to_vec(),
    }
}

impl M {
    pub fn group(mut self, g: &str) -> Self {
        self.group = Some(g.to_owned());
        self
    }
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }
}

pub(super) fn space(names: &[&str]) -> LabelSpace {
    LabelSpace::from_names(names.iter().map(|s| s.to_string()).collect()).expect("distinct labels")
}

pub(super) fn fields() -> Vec<String> {
    vec!["title".to_owned(), "description".to_owned()]
}

/// `[vote]` table body and `[[rule]]` entries, as TOML.
#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    vote: VoteConfig,
    #[serde(default)]
    rule: Vec<RuleConfig>,
}

pub(super) fn parse(toml_text: &str) -> (VoteConfig, Vec<RuleConfig>) {
    let m: Manifest = toml::from_str(toml_text).expect("test manifest parses");
    (m.vote, m.rule)
}

pub(super) fn try_build(
    toml_text: &str,
    models: &[M],
    labels: &LabelSpace,
) -> Result<Combiner, ConfigError> {
    let (vote, rules) = parse(toml_text);
    let views: Vec<ModelView<'_>> = models
        .iter()
        .map(|m| ModelView {
            name: &m.name,
            weight: m.weight,
            temperature: m.temperature,
            group: m.group.as_deref(),
            label_ids: &m.ids,
        })
        .collect();
    Combiner::new(&vote, &rules, &views, labels, &fields())
}

pub(super) fn build(toml_text: &str, models: &[M], labels: &LabelSpace) -> Combiner {
    try_build(toml_text, models, labels).expect("test configuration is valid")
}

/// An item with no text, asking for every label.
pub(super) fn item() -> ItemView<'static> {
    ItemView {
        fields: &[],
        top_k: 100,
        candidates: None,
        explain: false,
    }
}

pub(super) fn run(c: &Combiner, scores: &[&[f32]]) -> Answer {
    combine_both(c, &item(), scores)
}

/// Combines `scores` both ways the server can (raw, and readied model by model first) and
/// asserts the two answers are identical, to the bit.
#[track_caller]
pub(super) fn combine_both(c: &Combiner, item: &ItemView<'_>, scores: &[&[f32]]) -> Answer {
    let raw = c.combine(item, scores, &mut Scratch::default());
    let mut scratch = Scratch::default();
    let mut rows: Vec<Vec<f32>> = scores.iter().map(|s| s.to_vec()).collect();
    let readied: Vec<Readied> = rows
        .iter_mut()
        .enumerate()
        .map(|(m, row)| c.ready(m, item, row, &mut scratch))
        .collect();
    let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let readied: Vec<&Readied> = readied.iter().collect();
    let ready = c.combine_readied(item, &rows, &readied, &mut scratch);
    assert_eq!(raw, ready, "combining readied scores changed the answer");
    raw
}

/// `(label name, score)` of each prediction.
pub(super) fn named(c: &Combiner, a: &Answer) -> Vec<(String, f32)> {
    a.predictions
        .iter()
        .map(|p| (c.label_name(p.label).to_owned(), p.score))
        .collect()
}

/// Asserts the predictions are exactly these labels, with these scores (to 1e-5).
#[track_caller]
pub(super) fn expect(c: &Combiner, a: &Answer, want: &[(&str, f32)]) {
    let got = named(c, a);
    let ok = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((gl, gs), (wl, ws))| gl == wl && (gs - ws).abs() < 1e-5);
    assert!(ok, "got {got:?}\nwant {want:?}");
}

#[test]
fn combiner_is_shared_between_threads_and_scratch_moves_to_them() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Combiner>();
    send_sync::<Scratch>();
}

/// The manifest example in the module docs parses, builds and answers.
#[test]
fn documented_manifest_example_builds() {
    let source = include_str!("../mod.rs");
    let example: String = source
        .lines()
        .skip_while(|l| !l.starts_with("//! ```toml"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| l.strip_prefix("//! ").unwrap_or("").to_owned() + "\n")
        .collect();
    #[derive(Deserialize)]
    struct Model {
        name: String,
        #[serde(default = "one")]
        weight: f32,
        #[serde(default = "one")]
        temperature: f32,
        group: Option<String>,
    }
    fn one() -> f32 {
        1.0
    }
    #[derive(Deserialize)]
    struct Doc {
        model: Vec<Model>,
    }
    let doc: Doc = toml::from_str(&example).expect("the documented example parses");
    assert_eq!(doc.model.len(), 3);
    let labels = space(&[
        "Home > Kitchen > Knives",
        "Gift Cards",
        "Adult > Misc",
        "Other",
    ]);
    let models: Vec<M> = doc
        .model
        .iter()
        .map(|d| M {
            name: d.name.clone(),
            weight: d.weight,
            temperature: d.temperature,
            group: d.group.clone(),
            ids: vec![0, 1, 2, 3],
        })
        .collect();
    let c = build(&example, &models, &labels);
    let s: &[f32] = &[0.7, 0.1, 0.1, 0.1];
    let fields = [Some("a cleaver"), Some("no card here")];
    let item = ItemView {
        fields: &fields,
        top_k: 2,
        candidates: None,
        explain: true,
    };
    let a = combine_both(&c, &item, &[s, s, s]);
    assert_eq!(a.predictions[0].label, 0, "{a:?}");
    assert!(a.rules_fired.contains(&"knives".to_owned()), "{a:?}");
    assert_eq!(a.explanation.map(|e| e.len()), Some(3));
}
