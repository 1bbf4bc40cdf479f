//! An ensemble: the models of one manifest, loaded, with their labels mapped onto one label space
//! and the vote resolved. It is run by the compute pool ([`crate::scheduler::ComputePool`]), which
//! batches every model's rows and hands each item's scores back to [`Ensemble::combine`].

pub mod cascade;
mod item;
mod load;
pub mod manifest;
pub mod provenance;
pub mod source;
pub mod stats;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use cascade::{Cascade, CascadeAnswer, StageTrace};
pub use item::{FieldValue, ItemError, ItemOptions, ValidItem};
pub use load::Loader;
pub use manifest::{BatchConfig, FailurePolicy, Manifest, ManifestError, ModelKind, ModelSpec};
pub use provenance::{FileProvenance, Provenance, RegistryOrigin};
pub use source::{LockMode, Sources};
pub use stats::Stats;

use crate::combine::{
    Answer, Combiner, ItemView, Members, Readied, RuleConfig, Scratch, VoteConfig,
};
use crate::labels::LabelSpace;
use crate::runtime::{Runtime, Scores};

/// One loaded model of an ensemble.
pub struct Model {
    pub spec: ModelSpec,
    /// Size of the model file.
    pub bytes: u64,
    /// sha256 of the model file, hex.
    pub sha256: String,
    /// Where the model's files came from, and what the manifest declares about it.
    pub provenance: Provenance,
    /// What the runtime computes (file content, bindings, labels): equal identities can share
    /// one loaded runtime.
    pub identity: String,
    pub runtime: Arc<dyn Runtime>,
    /// The model's own label j is global label `label_ids[j]`.
    pub label_ids: Vec<u32>,
    /// The request fields it reads, as indices into [`Ensemble::fields`].
    pub field_ids: Vec<usize>,
    /// Its index in [`Ensemble::views`].
    pub view: usize,
}

/// A servable ensemble. Immutable once loaded: share it behind an `Arc`.
pub struct Ensemble {
    pub name: String,
    pub version: String,
    pub manifest: PathBuf,
    /// sha256 of the manifest text the ensemble was loaded from (hex).
    pub manifest_sha256: String,
    /// What answered, to the byte: see [`digest`].
    pub digest: String,
    /// The manifest's `[mlflow] tracking_uri`, if it names one.
    pub tracking_uri: Option<String>,
    /// The request fields, in the order [`ValidItem::fields`] holds them.
    pub fields: Vec<String>,
    pub models: Vec<Model>,
    /// The distinct field lists models read (as [`Model::field_ids`]): each item's text for a
    /// view is joined once, whatever the number of models reading it.
    pub views: Vec<Vec<usize>>,
    pub labels: LabelSpace,
    pub combiner: Combiner,
    /// The manifest's `[vote]` table and rules as written, for describing what is served.
    pub vote: VoteConfig,
    pub rules: Vec<RuleConfig>,
    /// The manifest's `[monitor]` table: how its prediction drift is judged.
    pub monitor: manifest::MonitorConfig,
    /// The manifest's `validation` set (where the monitor takes a drift reference from when it
    /// has none).
    pub validation: Option<PathBuf>,
    /// What an item's answer does when a member fails or runs out of time.
    pub failure: FailurePolicy,
    /// The manifest's `[cascade]`, if it has one: see [`cascade`].
    pub cascade: Option<Cascade>,
    /// Wall time it took to load.
    pub load_seconds: f64,
    /// Models shared with an ensemble loaded before instead of loaded again.
    pub reused: usize,
    /// What this ensemble and each member served (the V2 statistics extension).
    pub stats: Stats,
}

/// A ranked label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// One model's part in an answer (with `explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAnswer {
    pub name: String,
    pub weight: f32,
    /// The model's own best labels.
    pub predictions: Vec<LabelScore>,
    /// Its term in the vote for each of the answer's predictions.
    pub contributions: Vec<LabelScore>,
}

/// The ensemble's answer for one item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemAnswer {
    pub predictions: Vec<LabelScore>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules_fired: Vec<String>,
    /// Models whose top labels hold the winner.
    pub agreement: u32,
    /// Why the answer is empty, when a rule abstained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abstained: Option<String>,
    /// The members left out of this answer's vote, and why (it failed, panicked or ran out of
    /// its `timeout_ms`): present only on a degraded answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Vec<MissingMember>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelAnswer>>,
    /// With a `[cascade]`: the stage that answered and how many members ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeAnswer>,
}

/// A member a degraded answer was voted without.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingMember {
    pub model: String,
    pub reason: String,
}

/// A batch that could not be scored: one model failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model {model:?}: {reason}")]
pub struct PredictError {
    pub model: String,
    pub reason: String,
}

/// Every model's scores for a set of items, and how long each model took (its share of the runs
/// it took part in, each on one thread).
pub struct ModelScores {
    /// Indexed like [`Ensemble::models`]; `[items, model labels]` each.
    pub scores: Vec<Scores>,
    pub seconds: Vec<f64>,
}

thread_local! {
    /// Combining buffers, one set per compute thread, reused from item to item.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Ensemble {
    /// Combines row `row` of a batch's model scores into the answer for `item`.
    pub fn combine(&self, row: usize, item: &ValidItem, scores: &ModelScores) -> ItemAnswer {
        let per_model: Vec<&[f32]> = scores.scores.iter().map(|s| s.row(row)).collect();
        self.named(combining(item, |view, s| {
            self.combiner.combine(view, &per_model, s)
        }))
    }

    /// Readies model `model`'s scores for `item` in place ([`Combiner::ready`]), on the thread
    /// that ran the model.
    pub fn ready(&self, model: usize, item: &ValidItem, scores: &mut [f32]) -> Readied {
        combining(item, |view, s| self.combiner.ready(model, view, scores, s))
    }

    /// [`Ensemble::combine`] of scores readied by [`Ensemble::ready`]: `scores[m]` and
    /// `readied[m]` are model m's.
    pub fn combine_readied(
        &self,
        item: &ValidItem,
        scores: &[&[f32]],
        readied: &[&Readied],
    ) -> ItemAnswer {
        self.named(combining(item, |view, s| {
            self.combiner.combine_readied(view, scores, readied, s)
        }))
    }

    /// [`Ensemble::combine_readied`] among `members` only (the others gave no scores), the
    /// answer marked degraded with `missing`.
    pub fn combine_readied_among(
        &self,
        members: &Members,
        item: &ValidItem,
        scores: &[&[f32]],
        readied: &[&Readied],
        missing: Vec<MissingMember>,
    ) -> ItemAnswer {
        let mut answer = self.named(combining(item, |view, s| {
            self.combiner
                .combine_readied_among(members, view, scores, readied, s)
        }));
        answer.degraded = Some(missing);
        answer
    }

    /// The combiner's answer, with label and model names.
    fn named(&self, answer: Answer) -> ItemAnswer {
        let named = |p: &crate::combine::Prediction| LabelScore {
            label: self.combiner.label_name(p.label).to_owned(),
            score: p.score,
        };
        ItemAnswer {
            predictions: answer.predictions.iter().map(named).collect(),
            rules_fired: answer.rules_fired,
            agreement: answer.agreement,
            abstained: answer.abstained,
            degraded: None,
            cascade: None,
            models: answer.explanation.map(|contributions| {
                contributions
                    .iter()
                    .map(|c| ModelAnswer {
                        name: self.models[c.model].spec.name.clone(),
                        weight: c.weight,
                        predictions: c.top.iter().map(named).collect(),
                        contributions: c.contribution.iter().map(named).collect(),
                    })
                    .collect()
            }),
        }
    }

    /// Total size of the model files.
    pub fn bytes(&self) -> u64 {
        self.models.iter().map(|m| m.bytes).sum()
    }
}

/// Calls `f` with the combiner's view of `item` and this thread's combining buffers.
fn combining<T>(item: &ValidItem, f: impl FnOnce(&ItemView<'_>, &mut Scratch) -> T) -> T {
    with_view(item, |view| SCRATCH.with(|s| f(view, &mut s.borrow_mut())))
}

/// Calls `f` with the combiner's view of `item`: its text fields and its options. For callers
/// that combine with buffers of their own (the monitor's analysis).
pub fn with_view<T>(item: &ValidItem, f: impl FnOnce(&ItemView<'_>) -> T) -> T {
    let fields: Vec<Option<&str>> = item
        .fields
        .iter()
        .map(|f| match f {
            Some(FieldValue::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let view = ItemView {
        fields: &fields,
        top_k: item.options.top_k,
        candidates: item.options.candidates.as_deref(),
        explain: item.options.explain,
    };
    f(&view)
}

/// The ensemble digest: sha256 over the manifest text's sha256 and, in manifest order, every
/// model's name and file sha256 (and its labels file's, for an ONNX model that has one)
/// (`sha256:` and hex). The same bytes give the same digest on any machine and across restarts
/// (wherever the files are, a cache or a checkout); a change to the manifest or to any model
/// file changes it.
pub fn digest(manifest_sha256: &str, models: &[Model]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"lastmile-ensemble-digest-v1\n");
    hasher.update(manifest_sha256.as_bytes());
    for m in models {
        hasher.update(b"\n");
        hasher.update(m.spec.name.as_bytes());
        hasher.update(b"\t");
        hasher.update(m.sha256.as_bytes());
        if let Some(labels) = &m.provenance.labels {
            hasher.update(b"\tlabels\t");
            hasher.update(labels.sha256.as_bytes());
        }
    }
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}
