//! The `[cascade]` table: answer most items with a few members, running the others only for the
//! items those few are not sure of.
//!
//! ```toml
//! [cascade]
//! test = "margin"                  # margin (default): voted top-1 score minus top-2 score
//!                                  # top1: the voted top-1 score
//!
//! [[cascade.stage]]                # stages run in this order
//! members = ["ft-title", "onnx"]   # model names and/or [vote.groups] names (all of its models)
//! threshold = 0.35                 # stop here when the test's value is >= threshold
//! test = "top1"                    # optional: this stage's own test
//!
//! [[cascade.stage]]                # the last stage: no threshold, it always answers
//! members = ["ft-desc", "mlp"]
//! ```
//!
//! After each stage, the members run so far are voted with the ensemble's own `[vote]` (groups
//! and weights as configured, restricted to those members, exactly as a manifest without the
//! others: see `crate::combine::members`), on the request's candidates; when the test passes,
//! that vote (with the rules applied) is the answer, else the next stage runs. Every model is in
//! exactly one stage, so the last stage's vote is the full ensemble's. A threshold of `inf`
//! never stops: every threshold at `inf` answers what the ensemble without `[cascade]` answers,
//! to the bit.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ManifestError, ModelSpec, Parser};

/// What a stage's confidence test reads from the vote of the members run so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageTest {
    /// Top-1 score minus top-2 score (with thousands of classes, top-1 alone is a poor signal).
    #[default]
    Margin,
    /// The top-1 score.
    Top1,
}

impl StageTest {
    pub fn as_str(self) -> &'static str {
        match self {
            StageTest::Margin => "margin",
            StageTest::Top1 => "top1",
        }
    }

    /// The test's value for a vote whose two best scores are `top1` and `top2` (`top2` is
    /// `-inf` when only one label can be answered).
    pub fn value(self, top1: f32, top2: f32) -> f32 {
        match self {
            StageTest::Margin => top1 - top2,
            StageTest::Top1 => top1,
        }
    }
}

/// One checked stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    /// Indices into [`super::Manifest::models`], in manifest order.
    pub models: Vec<usize>,
    /// The names as written (models and groups).
    pub members: Vec<String>,
    /// None on the last stage only: it always answers.
    pub threshold: Option<f32>,
    pub test: StageTest,
}

/// The checked `[cascade]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeConfig {
    pub stages: Vec<StageConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCascade {
    #[serde(default)]
    test: StageTest,
    #[serde(default, rename = "stage")]
    stages: Vec<RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    members: Vec<String>,
    threshold: Option<f64>,
    test: Option<StageTest>,
}

impl Parser<'_> {
    /// Checks `[cascade]` against the models and their groups.
    pub(super) fn cascade(
        &self,
        raw: Option<Spanned<RawCascade>>,
        models: &[ModelSpec],
    ) -> Result<Option<CascadeConfig>, ManifestError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let at = |stage: Option<usize>, field: &str, reason: String| ManifestError {
            field: Some(match stage {
                Some(s) => format!("cascade.stage[{s}].{field}"),
                None => format!("cascade.{field}"),
            }),
            ..self.error(Some(span.clone()), reason)
        };
        if raw.stages.is_empty() {
            return Err(at(
                None,
                "stage",
                "a cascade needs at least one [[cascade.stage]]".into(),
            ));
        }
        let by_name: HashMap<&str, usize> = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        let mut stage_of: Vec<Option<usize>> = vec![None; models.len()];
        let last = raw.stages.len() - 1;
        let mut stages = Vec::with_capacity(raw.stages.len());
        for (s, stage) in raw.stages.into_iter().enumerate() {
            if stage.members.is_empty() {
                return Err(at(Some(s), "members", "a stage needs members".into()));
            }
            let mut own = Vec::new();
            for name in &stage.members {
                let named: Vec<usize> = match by_name.get(name.as_str()) {
                    Some(&m) => vec![m],
                    None => (0..models.len())
                        .filter(|&m| models[m].group.as_deref() == Some(name.as_str()))
                        .collect(),
                };
                if named.is_empty() {
                    return Err(at(
                        Some(s),
                        "members",
                        format!("{name:?} is neither a model nor a group of the manifest"),
                    ));
                }
                for m in named {
                    if let Some(first) = stage_of[m] {
                        let model = &models[m].name;
                        return Err(at(
                            Some(s),
                            "members",
                            format!("model {model:?} is already in stage {first}"),
                        ));
                    }
                    stage_of[m] = Some(s);
                    own.push(m);
                }
            }
            own.sort_unstable();
            let threshold = match (stage.threshold, s == last) {
                (Some(_), true) => {
                    return Err(at(
                        Some(s),
                        "threshold",
                        "the last stage always answers: it takes no threshold".into(),
                    ))
                }
                (None, false) => {
                    return Err(at(
                        Some(s),
                        "threshold",
                        "every stage but the last needs a threshold (inf: never stop here)".into(),
                    ))
                }
                (Some(t), false) if t.is_nan() => {
                    return Err(at(Some(s), "threshold", "must be a number, got NaN".into()))
                }
                (t, _) => t.map(|t| t as f32),
            };
            stages.push(StageConfig {
                models: own,
                members: stage.members,
                threshold,
                test: stage.test.unwrap_or(raw.test),
            });
        }
        if let Some(m) = stage_of.iter().position(Option::is_none) {
            let name = &models[m].name;
            return Err(ManifestError {
                model: Some(name.clone()),
                ..at(
                    None,
                    "stage",
                    format!(
                        "model {name:?} is in no stage: every model runs in exactly one stage \
                         (the last stage's vote is the full ensemble's)"
                    ),
                )
            });
        }
        Ok(Some(CascadeConfig { stages }))
    }
}
