//! An ensemble: the models of one manifest, loaded, with their labels mapped onto one label space
//! and the vote resolved. [`Ensemble::predict`] fans a batch of items out to every model on the
//! compute pool, waits for all of them, and combines each item's scores into one answer.

mod item;
mod load;
pub mod manifest;
mod pool;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

pub use item::{FieldValue, ItemError, ItemOptions, ValidItem};
pub use manifest::{Manifest, ManifestError, ModelKind, ModelSpec};
pub use pool::ComputePool;

use crate::combine::{Combiner, ItemView, RuleConfig, Scratch, VoteConfig};
use crate::labels::LabelSpace;
use crate::runtime::{Inputs, Runtime, Scores};

/// One loaded model of an ensemble.
pub struct Model {
    pub spec: ModelSpec,
    /// Size of the model file.
    pub bytes: u64,
    /// sha256 of the model file, hex.
    pub sha256: String,
    pub runtime: Arc<dyn Runtime>,
    /// The model's own label j is global label `label_ids[j]`.
    pub label_ids: Vec<u32>,
    /// The request fields it reads, as indices into [`Ensemble::fields`].
    pub field_ids: Vec<usize>,
}

/// A servable ensemble. Immutable once loaded: share it behind an `Arc`.
pub struct Ensemble {
    pub name: String,
    pub version: String,
    pub manifest: PathBuf,
    /// The request fields, in the order [`ValidItem::fields`] holds them.
    pub fields: Vec<String>,
    pub models: Vec<Model>,
    pub labels: LabelSpace,
    pub combiner: Combiner,
    /// The manifest's `[vote]` table and rules as written, for describing what is served.
    pub vote: VoteConfig,
    pub rules: Vec<RuleConfig>,
    /// Wall time it took to load.
    pub load_seconds: f64,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelAnswer>>,
}

/// A batch that could not be scored: one model failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("model {model:?}: {reason}")]
pub struct PredictError {
    pub model: String,
    pub reason: String,
}

/// Every model's scores for one batch, and how long each model took (its own run, on one thread).
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
    /// Scores `items` with every model (side by side on `pool`) and combines each item's scores.
    pub fn predict(
        &self,
        pool: &ComputePool,
        items: &[ValidItem],
    ) -> Result<Vec<ItemAnswer>, PredictError> {
        pool.install(|| {
            let scores = self.run_models(items)?;
            Ok(items
                .par_iter()
                .enumerate()
                .map(|(i, item)| self.combine(i, item, &scores))
                .collect())
        })
    }

    /// Every model's scores for `items` (side by side on `pool`), not combined: for evaluating
    /// the models one by one.
    pub fn score(
        &self,
        pool: &ComputePool,
        items: &[ValidItem],
    ) -> Result<ModelScores, PredictError> {
        pool.install(|| self.run_models(items))
    }

    /// Every model's scores for the whole batch. Runs inside the pool.
    fn run_models(&self, items: &[ValidItem]) -> Result<ModelScores, PredictError> {
        // Models reading the same fields share one joined text per item.
        let mut views: Vec<(&[usize], Vec<String>)> = Vec::new();
        for m in &self.models {
            if !views.iter().any(|(f, _)| *f == m.field_ids.as_slice()) {
                let texts = items.iter().map(|it| join_text(it, &m.field_ids)).collect();
                views.push((&m.field_ids, texts));
            }
        }
        let runs: Vec<(Scores, f64)> = self
            .models
            .par_iter()
            .map(|m| {
                let mut out = Scores::default();
                let started = std::time::Instant::now();
                let result = match m.runtime.input_kind() {
                    crate::runtime::InputKind::Text => {
                        let (_, texts) = views
                            .iter()
                            .find(|(f, _)| *f == m.field_ids.as_slice())
                            .expect("every model has a view: this is a bug");
                        let rows: Vec<&str> = texts.iter().map(String::as_str).collect();
                        m.runtime.run(&Inputs::Text(&rows), &mut out)
                    }
                    crate::runtime::InputKind::Features { width } => {
                        let data = features(items, m.field_ids[0], width);
                        m.runtime
                            .run(&Inputs::Features { data: &data, width }, &mut out)
                    }
                };
                crate::telemetry::model_run(&m.spec.name, started.elapsed());
                let seconds = started.elapsed().as_secs_f64();
                result.map(|()| (out, seconds)).map_err(|e| PredictError {
                    model: m.spec.name.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let (scores, seconds) = runs.into_iter().unzip();
        Ok(ModelScores { scores, seconds })
    }

    /// Combines row `row` of a batch's model scores into the answer for `item`.
    pub fn combine(&self, row: usize, item: &ValidItem, scores: &ModelScores) -> ItemAnswer {
        let per_model: Vec<&[f32]> = scores.scores.iter().map(|s| s.row(row)).collect();
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
        let answer = SCRATCH.with(|s| {
            self.combiner
                .combine(&view, &per_model, &mut s.borrow_mut())
        });
        let named = |p: &crate::combine::Prediction| LabelScore {
            label: self.combiner.label_name(p.label).to_owned(),
            score: p.score,
        };
        ItemAnswer {
            predictions: answer.predictions.iter().map(named).collect(),
            rules_fired: answer.rules_fired,
            agreement: answer.agreement,
            abstained: answer.abstained,
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

/// The item's text for a model: its fields joined with a space, in the model's declared order
/// (absent fields are skipped).
fn join_text(item: &ValidItem, field_ids: &[usize]) -> String {
    let mut text = String::new();
    for &f in field_ids {
        if let Some(FieldValue::Text(t)) = &item.fields[f] {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(t);
        }
    }
    text
}

/// Row-major `[items, width]` floats from one numeric field (validated to be `width` long).
fn features(items: &[ValidItem], field: usize, width: usize) -> Vec<f32> {
    let mut data = Vec::with_capacity(items.len() * width);
    for item in items {
        match &item.fields[field] {
            Some(FieldValue::Numbers(v)) if v.len() == width => data.extend_from_slice(v),
            _ => data.extend(std::iter::repeat_n(0.0, width)),
        }
    }
    data
}
