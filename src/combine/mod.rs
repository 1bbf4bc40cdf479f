//! Combining: every model's scores for one item, aligned on the ensemble's label space, become one
//! ranked answer. This module owns the manifest's `[vote]` table, the `group`, `weight` and
//! `temperature` of each `[[model]]`, and the `[[rule]]` list; this documentation is their
//! reference.
//!
//! ```toml
//! [[model]]                    # (kind, path, fields... belong to the manifest loader)
//! name = "ft-title"
//! weight = 1.0                 # >= 0, default 1; 0 takes the model out of everything below
//! temperature = 1.5            # > 0, default 1; its probabilities become p^(1/T), rescaled
//! group = "fasttext"           # optional: one of the [vote.groups.*] tables
//!
//! [[model]]
//! name = "ft-desc"
//! group = "fasttext"
//!
//! [[model]]
//! name = "onnx-desc"
//! weight = 2.0
//! group = "onnx"
//!
//! [vote]
//! strategy = "soft"            # across groups: soft (default), hard, rank, max, geometric
//! rank_k = 10                  # rank: Borda points over each voter's top 10 (default 10)
//! floor = 1e-6                 # geometric: probability where a voter lacks a label (default 1e-6)
//! agreement_k = 3              # a model agrees when the answer is in its top 3 (default 1)
//! label_separator = " > "      # taxonomy paths inside label names (default " > ")
//!
//! [vote.groups.fasttext]
//! strategy = "soft"            # inside the group (default soft)
//! weight = 1.0                 # the group's weight across groups (default 1)
//!
//! [vote.groups.onnx]
//! strategy = "geometric"
//! floor = 1e-4                 # rank_k and floor default to the [vote] values
//! weight = 2.0
//!
//! [[rule]]
//! type = "deny"
//! labels = ["Adult > "]        # label names or name prefixes
//!
//! [[rule]]
//! type = "keyword"
//! name = "knives"              # optional on every rule: what rules_fired reports
//! field = "title"              # a request field
//! keywords = ["knife", "knives", "cleaver"]
//! label = "Home > Kitchen > Knives"
//! action = "multiply"          # force | multiply | exclude
//! factor = 2.0                 # multiply only
//!
//! [[rule]]
//! type = "regex"
//! field = "description"
//! pattern = '(?i)\bgift ?card\b'
//! label = "Gift Cards"
//! action = "force"
//!
//! [[rule]]
//! type = "taxonomy_backoff"
//! leaf_threshold = 0.35        # the answer scores below 0.35 ...
//! parent_threshold = 0.6       # ... answer the nearest ancestor whose labels sum to >= 0.6
//! levels = 2                   # look at most 2 levels up (default 1)
//!
//! [[rule]]
//! type = "min_agreement"
//! models = 3                   # fewer than 3 models agree ...
//! fallback = "Other"           # ... answer "Other" (without a fallback: abstain)
//!
//! [[rule]]
//! type = "min_confidence"
//! threshold = 0.2              # the answer scores below 0.2: abstain
//! ```
//!
//! **Voting.** Each model's scores are probabilities over its own labels. NaN and negative scores
//! count as 0, scores above 1 as 1. `temperature` T turns them into p^(1/T), rescaled to the same
//! total (for a softmax model exactly softmax(logits / T)). Without groups the models vote with
//! `vote.strategy`; with groups, each group's models vote with the group's strategy, then the
//! groups (plus every model without a group, as a voter of its own) vote with `vote.strategy`,
//! each group's output counting as one voter's probabilities. For one label l, with w a voter's weight,
//! W the total weight, s the voter's probability for l:
//!
//! | strategy    | score of l                                                                  |
//! |-------------|-----------------------------------------------------------------------------|
//! | `soft`      | Σ w·s / Σ w, both sums over the voters that have l: a probability           |
//! | `hard`      | Σ w / W over the voters whose best label is l; ties: Σ w·s / W              |
//! | `rank`      | Σ w·(k − r) / (k·W) over voters ranking l at r < k = `rank_k`; ties as hard |
//! | `max`       | max over the voters of (w / heaviest w)·s                                   |
//! | `geometric` | exp(Σ w·ln max(s, `floor`) / W), s = `floor` where a voter lacks l           |
//!
//! Rank r counts from 0 (the best label). A voter's best labels are its labels with a positive
//! score, ties going to the lower label id.
//! The default, an empty `[vote]`, is the weighted mean of the aligned probabilities. Only weight
//! *ratios* matter; a weight of 0 takes a model (or group) out of the vote, the agreement and the
//! explanation. The order of the models in the manifest never changes a bit of the answer: they
//! are always summed in name order.
//!
//! **Partial coverage.** A model takes part only for the labels it has. Soft vote: each label's
//! score is the weighted mean over the models that have that label, so a label only one model knows
//! gets that model's probability. Hard and rank vote: a model votes among its own labels. Max: a
//! model proposes scores for its own labels. Geometric: where a model lacks a label it counts as
//! having given it `floor`. A label no model has is never ranked (a rule can still force it or name
//! it as fallback). The same holds for groups: a group has the union of its models' labels.
//!
//! **Rules** run in manifest order on the voted ranking, after the request's own candidate
//! restriction (a candidate accepts every label whose name starts with it). Excluded labels (deny,
//! allow, exclude, candidates) are never answered, not even when forced or named as fallback.
//! A forced label ranks first with score 1. Multiply scales a label's score. `min_confidence`
//! and `min_agreement` test the current top answer; a fallback ends the rules and ranks first
//! with its own score; abstaining ends them with an empty answer and the reason.
//! `taxonomy_backoff` answers a parent path (first, scored with the sum of its labels), which
//! need not be a label itself: see [`Combiner::label_name`].
//!
//! **Answer.** The top-k (ties: hard/rank by the weighted probability sum, then the lower label
//! id), the rules that fired (those that changed the answer), and `agreement`: the number of
//! models whose top `agreement_k` holds the answer or, for a parent, a label under it (when
//! abstaining, the label that was refused).
//!
//! **Cost.** Per item, every strategy reads each model's scores about twice (its top labels, then
//! its vote). A model whose `label_ids` are 0, 1, 2, ... (its outputs already in label-space order)
//! is added as one contiguous vector; any other order costs a random-access scatter, about three
//! times as much (`benches/voting.rs`). `temperature` and `geometric` take a logarithm (and an
//! exponential) of every score. The per-model part (merging, temperature, top labels) can run
//! ahead, model by model, as each model's scores arrive ([`Combiner::ready`]); the server does so
//! on the thread that ran the model, which leaves only the pools and the rules after the last one
//! ([`Combiner::combine_readied`], with the same answer to the bit).
//!
//! **Influence.** [`Combiner::influence`] also says, for each voting model, what the answer would
//! be without it (exactly the vote of [`Combiner::members`] without it, found without voting
//! again), whether its own best label is the answer's and its share of the winner's score: see
//! `influence/mod.rs` for the definitions and the method.

mod answer;
mod config;
mod decide;
mod influence;
mod mathf;
mod members;
mod plan;
mod ranking;
mod rules;
mod seating;
mod select;
mod strategy;
mod taxonomy;
#[cfg(test)]
mod tests;

pub use answer::{Answer, ModelContribution, Prediction};
pub use config::{
    Action, ConfigError, GroupConfig, RuleConfig, VoteConfig, DEFAULT_AGREEMENT_K, DEFAULT_FLOOR,
    DEFAULT_RANK_K, DEFAULT_SEPARATOR, DEFAULT_STRATEGY,
};
pub use influence::{Influence, MemberInfluence, Work};
pub use members::Members;

use std::sync::OnceLock;

use smallvec::SmallVec;

use plan::ModelPlan;
use ranking::UNCOVERED;
use rules::Rule;
use seating::{Pools, Seating};
use select::{Entry, Ids, TopLists};
use strategy::{accumulator_len, Input, Voter};
use taxonomy::Taxonomy;

/// What the combiner needs to know about one model of the manifest.
#[derive(Debug, Clone, Copy)]
pub struct ModelView<'a> {
    pub name: &'a str,
    pub weight: f32,
    pub temperature: f32,
    pub group: Option<&'a str>,
    /// The model's own label j is global label `label_ids[j]`.
    pub label_ids: &'a [u32],
}

/// One item of a request, as the rules and the answer need it.
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    /// Indexed like the `fields` given to [`Combiner::new`]; None where the item lacks the field.
    pub fields: &'a [Option<&'a str>],
    /// How many predictions to return (0: none).
    pub top_k: usize,
    /// Labels, or label-name prefixes, the request accepts; None accepts every label.
    pub candidates: Option<&'a [String]>,
    /// Also return each model's contribution.
    pub explain: bool,
}

/// Buffers reused from item to item (one per worker thread), so that combining allocates nothing
/// label-space wide. Works with any combiner; it grows to the largest it has served.
#[derive(Debug, Default)]
pub struct Scratch {
    scores: Vec<f32>,
    tiebreak: Vec<f32>,
    groups: Vec<f32>,
    prepared: Vec<f32>,
    tmp: Vec<f32>,
    model_tops: TopLists,
    group_tops: TopLists,
    order: Vec<u32>,
    ranked: Vec<Entry>,
    mask: Vec<bool>,
    slots: Vec<u32>,
    needed: Vec<u32>,
    values: Vec<f32>,
    influence: influence::Buffers,
}

/// An ensemble's voting and rules, resolved against its label space and request fields once per
/// load. Immutable; share it between threads.
#[derive(Debug)]
pub struct Combiner {
    labels: usize,
    /// Models with a positive weight (in a group of positive weight), in name order.
    models: Vec<ModelPlan>,
    /// Per model given to [`Combiner::new`]: its place in `models`, if it votes.
    plan_of: Vec<Option<usize>>,
    /// The pools of every voting model: the groups that take part (in name order), the vote
    /// across them (or across models when there are none), the labels nobody covers.
    full: Pools,
    /// How to seat any subset of the models the same way ([`Combiner::members`]).
    seating: Seating,
    /// Depth of each model's top list: agreement and every hard/rank pool read from it.
    model_depth: usize,
    agreement_k: usize,
    taxonomy: Taxonomy,
    rules: Vec<Rule>,
    /// Floats of `Scratch::prepared` (models with a temperature or merged labels).
    prepared_len: usize,
    /// What [`Combiner::influence`] needs, built on its first item.
    influence: OnceLock<influence::Prepared>,
}

/// One model's scores for one item after [`Combiner::ready`]: its best labels, found where the
/// model ran (its scores, merged and tempered, stay in the caller's buffer). Held inline: one is
/// made per model per item, and the usual list is a few labels long.
#[derive(Debug, Clone, Default)]
pub struct Readied {
    top: SmallVec<[Entry; 8]>,
}

impl Readied {
    /// The model's own best label and its score (after temperature), if it scores any above 0.
    pub fn best(&self) -> Option<(u32, f32)> {
        self.top.first().map(|e| (e.label, e.score))
    }
}

/// Every model's scores for one item, indexed like the models given to [`Combiner::new`].
#[derive(Clone, Copy)]
pub(crate) enum Models<'a> {
    /// As the models answered: prepared into the scratch, top lists found, as the vote goes.
    Raw(&'a [&'a [f32]]),
    /// Readied by [`Combiner::ready`]: read as they are.
    Readied(&'a [&'a [f32]], &'a [&'a Readied]),
}

impl Combiner {
    /// Name of a prediction's label: a label-space name, or a taxonomy parent path.
    pub fn label_name(&self, id: u32) -> &str {
        self.taxonomy.name(id)
    }

    /// Combines one item. `per_model[m]` holds model m's scores over its own labels (model order
    /// as given to [`Combiner::new`]); a missing or short slice counts as zeros.
    pub fn combine(
        &self,
        item: &ItemView<'_>,
        per_model: &[&[f32]],
        scratch: &mut Scratch,
    ) -> Answer {
        self.combine_models(item, Models::Raw(per_model), scratch)
    }

    /// Does the per-model part of [`Combiner::combine`] ahead of time, on one model's scores for
    /// `item`: merges and tempers them in place, and finds the model's best labels. Run where
    /// each model's scores come in, it takes that work off the path after the last model.
    pub fn ready(
        &self,
        model: usize,
        item: &ItemView<'_>,
        scores: &mut [f32],
        scratch: &mut Scratch,
    ) -> Readied {
        let Some(p) = self.plan_of.get(model).copied().flatten() else {
            return Readied::default(); // weight 0: it does not vote
        };
        let plan = &self.models[p];
        let len = plan.prepare_in_place(scores, &mut scratch.prepared);
        let (ids, scores) = plan.readied(&scores[..len]);
        scratch.model_tops.reset(1);
        scratch.model_tops.fill(0, scores, ids, self.depth(item));
        Readied {
            top: SmallVec::from_slice(scratch.model_tops.get(0)),
        }
    }

    /// [`Combiner::combine`] of scores that went through [`Combiner::ready`]: `scores[m]` is
    /// model m's readied scores, `readied[m]` what `ready` returned for them.
    pub fn combine_readied(
        &self,
        item: &ItemView<'_>,
        scores: &[&[f32]],
        readied: &[&Readied],
        scratch: &mut Scratch,
    ) -> Answer {
        self.combine_models(item, Models::Readied(scores, readied), scratch)
    }

    fn combine_models(&self, item: &ItemView<'_>, models: Models<'_>, s: &mut Scratch) -> Answer {
        self.combine_in(&self.full, item, models, s)
    }

    /// Votes with `pools` (every voting model's, or a subset's) and decides the answer.
    fn combine_in(
        &self,
        pools: &Pools,
        item: &ItemView<'_>,
        models: Models<'_>,
        s: &mut Scratch,
    ) -> Answer {
        self.vote(pools, models, self.depth(item), s);
        self.decide(pools, item, models, s)
    }

    /// How deep each model's top list goes for `item`.
    fn depth(&self, item: &ItemView<'_>) -> usize {
        self.model_depth
            .max(if item.explain { item.top_k } else { 0 })
    }

    /// Runs `pools`' group pools, then the pool across groups, into `s.scores` / `s.tiebreak`,
    /// filling each seated model's top list (`depth` deep) on the way; the others stay empty.
    fn vote(&self, pools: &Pools, models: Models<'_>, depth: usize, s: &mut Scratch) {
        let l = self.labels;
        let cap = accumulator_len(l);
        s.scores.resize(cap, 0.0);
        s.tiebreak.resize(cap, 0.0);
        s.groups.resize(pools.groups.len() * cap, 0.0);
        s.prepared.resize(self.prepared_len, 0.0);
        s.model_tops.reset(self.models.len());
        s.group_tops.reset(pools.groups.len());
        for (g, pool) in pools.groups.iter().enumerate() {
            let out = &mut s.groups[g * cap..(g + 1) * cap];
            pool.begin(out, None);
            for member in &pool.members {
                if let Voter::Model(m) = member.voter {
                    let input = self.visit(m, models, depth, &mut s.prepared, &mut s.model_tops);
                    pool.add(member, &input, out, None, &mut s.tmp);
                }
            }
            pool.finish(out, None);
            let depth = pools.outer.strategy.top_depth();
            s.group_tops.fill(g, &out[..l], Ids::Dense, depth);
        }
        let (out, mut tb) = (&mut s.scores[..cap], Some(&mut s.tiebreak[..cap]));
        pools.outer.begin(out, tb.as_deref_mut());
        for member in &pools.outer.members {
            let input = match member.voter {
                Voter::Model(m) => self.visit(m, models, depth, &mut s.prepared, &mut s.model_tops),
                Voter::Group(g) => Input {
                    ids: Ids::Dense,
                    scores: &s.groups[g * cap..g * cap + l],
                    top: s.group_tops.get(g),
                },
            };
            pools
                .outer
                .add(member, &input, out, tb.as_deref_mut(), &mut s.tmp);
        }
        pools.outer.finish(out, tb);
        for &u in &pools.uncovered {
            out[u as usize] = UNCOVERED;
        }
    }

    /// Where voting model `m`'s scores land, and the scores the vote reads (`prepared` holds
    /// them for raw models that need preparing).
    fn model_scores<'a>(
        &'a self,
        m: usize,
        models: Models<'a>,
        prepared: &'a [f32],
    ) -> (Ids<'a>, &'a [f32]) {
        let plan = &self.models[m];
        match models {
            Models::Raw(per_model) => plan.scores(per_model, prepared),
            Models::Readied(scores, _) => {
                plan.readied(scores.get(plan.index).copied().unwrap_or(&[]))
            }
        }
    }

    /// Prepares model `m`'s scores (raw ones) and fills its top list: what a pool reads of it.
    fn visit<'a>(
        &'a self,
        m: usize,
        models: Models<'a>,
        depth: usize,
        prepared: &'a mut [f32],
        tops: &'a mut TopLists,
    ) -> Input<'a> {
        let plan = &self.models[m];
        if let Models::Raw(per_model) = models {
            plan.prepare(per_model, prepared);
        }
        let (ids, scores) = self.model_scores(m, models, prepared);
        match models {
            Models::Raw(_) => tops.fill(m, scores, ids, depth),
            Models::Readied(_, readied) => {
                tops.set(m, readied.get(plan.index).map_or(&[][..], |r| &r.top[..]))
            }
        }
        Input {
            ids,
            scores,
            top: tops.get(m),
        }
    }
}
