//! A loaded `[cascade]`: its stages over the ensemble's models, each with the seated vote of
//! every member up to it (seated once at load), and the stopping test an item passes after a
//! stage. The scheduler runs it (`scheduler::cascade`); the manifest side is
//! [`manifest::CascadeConfig`](super::manifest::CascadeConfig).

use serde::Serialize;

use super::manifest::{CascadeConfig, StageTest};
use super::{combining, Ensemble, Model, ValidItem};
use crate::combine::{Combiner, Members, Readied};

/// One stage, resolved against the loaded models.
#[derive(Debug)]
pub struct Stage {
    /// The stage's own models (indices into [`Ensemble::models`]).
    pub models: Vec<usize>,
    /// `+inf` on the last stage: it always answers.
    pub threshold: f32,
    pub test: StageTest,
    /// Per model: whether it runs in this stage or an earlier one.
    pub asked: Vec<bool>,
    /// The vote among every member of this stage and the earlier ones; None when none of them
    /// votes (weight 0), which never stops.
    pub members: Option<Members>,
}

/// The stages of a loaded cascade.
#[derive(Debug)]
pub struct Cascade {
    pub stages: Vec<Stage>,
}

/// Where an answer came from in a cascade: the stage that answered, and how many members ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CascadeAnswer {
    /// 1-based.
    pub stage: u32,
    pub stages: u32,
    pub members_run: u32,
    /// With `explain`: each stage run, its test's value and threshold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<StageTrace>,
}

/// One stage an item went through (with `explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTrace {
    /// 1-based.
    pub stage: u32,
    pub test: &'static str,
    /// The test's value for the vote of the members run so far (None: no member voted).
    pub value: Option<f32>,
    /// None on the last stage.
    pub threshold: Option<f32>,
    pub members: u32,
    pub stopped: bool,
}

impl Cascade {
    /// The cascade of `config` over `models` (as loaded, named like the manifest's).
    pub fn new(
        config: &CascadeConfig,
        manifest_names: &[String],
        models: &[Model],
        combiner: &Combiner,
    ) -> Cascade {
        let index = |m: usize| {
            models
                .iter()
                .position(|x| x.spec.name == manifest_names[m])
                .expect("every manifest model is loaded: this is a bug")
        };
        let mut asked = vec![false; models.len()];
        let stages = config
            .stages
            .iter()
            .map(|s| {
                let own: Vec<usize> = s.models.iter().map(|&m| index(m)).collect();
                for &m in &own {
                    asked[m] = true;
                }
                Stage {
                    models: own,
                    threshold: s.threshold.unwrap_or(f32::INFINITY),
                    test: s.test,
                    members: combiner.members(&asked),
                    asked: asked.clone(),
                }
            })
            .collect();
        Cascade { stages }
    }

    pub fn last(&self) -> usize {
        self.stages.len() - 1
    }
}

impl Ensemble {
    /// The stopping test of stage `stage` for `item`, on the vote among `members` (the stage's
    /// own, or fewer when some failed): the test's value (None when nobody voted) and whether
    /// the item stops here. The last stage always stops.
    pub fn stage_test(
        &self,
        stage: usize,
        members: Option<&Members>,
        item: &ValidItem,
        scores: &[&[f32]],
        readied: &[&Readied],
    ) -> (Option<f32>, bool) {
        let cascade = self
            .cascade
            .as_ref()
            .expect("a stage test needs a cascade: this is a bug");
        let s = &cascade.stages[stage];
        let last = stage == cascade.last();
        let Some(members) = members else {
            return (None, last);
        };
        let value = self.test_value(s.test, members, item, scores, readied);
        (Some(value), last || stops(value, s.threshold))
    }

    /// The value of `test` for the vote among `members` on `item`: what a stage's stopping test
    /// compares with its threshold (also what `lastmile cascade fit` fits thresholds on).
    pub fn test_value(
        &self,
        test: StageTest,
        members: &Members,
        item: &ValidItem,
        scores: &[&[f32]],
        readied: &[&Readied],
    ) -> f32 {
        let (top1, top2) = combining(item, |view, scratch| {
            self.combiner
                .top_two_among(members, view, scores, readied, scratch)
        });
        test.value(top1, top2)
    }
}

/// Whether a stage whose test's value is `value` stops at `threshold`: NaN (no label
/// answerable) never does; a threshold of `+inf` never stops.
pub fn stops(value: f32, threshold: f32) -> bool {
    value >= threshold
}
