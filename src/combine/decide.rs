//! Deciding one item's answer from its voted ranking ([`Combiner::decide`]): the request's
//! candidates, then the rules in manifest order, then the top-k, agreement and explanation.

use super::answer::TermBuffers;
use super::ranking::{Outcome, Ranking, EXCLUDED};
use super::seating::Pools;
use super::select::{rank_labels, Entry};
use super::strategy::Input;
use super::{Answer, Combiner, ItemView, ModelContribution, Models, Prediction, Scratch};

/// What the rules did to one item: the rules that fired, and why (and what) they refused.
struct RulesRun {
    fired: Vec<String>,
    abstained: Option<String>,
    refused: Option<u32>,
}

impl Combiner {
    /// Candidates, rules, the final ranking, agreement and the explanation.
    pub(crate) fn decide(
        &self,
        pools: &Pools,
        item: &ItemView<'_>,
        models: Models<'_>,
        s: &mut Scratch,
    ) -> Answer {
        let l = self.labels;
        if let Some(cands) = item.candidates {
            self.restrict_to_candidates(cands, &mut s.mask, &mut s.scores);
        }
        let accepts = |node: u32| {
            let name = self.taxonomy.name(node);
            item.candidates
                .is_none_or(|c| c.iter().any(|c| name.starts_with(c.as_str())))
        };
        let model_tops = &s.model_tops;
        let agreement = |node: u32| self.agreement(node, model_tops);
        let mut ranking = Ranking {
            scores: &mut s.scores[..l],
            tiebreak: pools
                .outer
                .strategy
                .has_tiebreak()
                .then_some(&s.tiebreak[..l]),
            pinned: None,
        };
        let run = self.run_rules(item.fields, &mut ranking, &agreement, &accepts);

        let mut abstained = run.abstained;
        let mut predictions = Vec::new();
        if abstained.is_none() && item.top_k > 0 {
            predictions = top_k(&ranking, item.top_k, &mut s.order, &mut s.ranked);
            if predictions.is_empty() {
                abstained =
                    Some("no label can be answered (all excluded or not covered)".to_owned());
            }
        }
        let judged = predictions.first().map(|p| p.label).or(run.refused);
        let agreement = judged.map_or(0, agreement);
        let explanation = item
            .explain
            .then(|| self.explanation(pools, &predictions, item.top_k, models, s));
        Answer {
            agreement,
            predictions,
            rules_fired: run.fired,
            abstained,
            explanation,
        }
    }

    /// The request's candidate restriction, applied before any rule so no rule can undo it.
    pub(super) fn restrict_to_candidates(
        &self,
        candidates: &[String],
        mask: &mut Vec<bool>,
        scores: &mut [f32],
    ) {
        mask.clear();
        mask.resize(self.labels, false);
        for c in candidates {
            self.taxonomy
                .with_prefix(c)
                .for_each(|id| mask[id as usize] = true);
        }
        for (score, &ok) in scores.iter_mut().zip(mask.iter()) {
            if !ok {
                *score = EXCLUDED;
            }
        }
    }

    /// Runs the rules in manifest order, until one decides the answer or abstains.
    fn run_rules(
        &self,
        fields: &[Option<&str>],
        ranking: &mut Ranking<'_>,
        agreement: &dyn Fn(u32) -> u32,
        accepts: &dyn Fn(u32) -> bool,
    ) -> RulesRun {
        let mut run = RulesRun {
            fired: Vec::new(),
            abstained: None,
            refused: None,
        };
        for rule in &self.rules {
            match self.apply(rule, fields, ranking, agreement, accepts) {
                Outcome::Unchanged => continue,
                Outcome::Fired => run.fired.push(rule.name.clone()),
                Outcome::Final => {
                    run.fired.push(rule.name.clone());
                    break;
                }
                Outcome::Abstain { reason, about } => {
                    run.fired.push(rule.name.clone());
                    run.abstained = Some(reason);
                    run.refused = about;
                    break;
                }
            }
        }
        run
    }

    /// Each voting model's part in the answer, for requests that ask for it.
    fn explanation(
        &self,
        pools: &Pools,
        predictions: &[Prediction],
        top_k: usize,
        models: Models<'_>,
        s: &mut Scratch,
    ) -> Vec<ModelContribution> {
        let Scratch {
            prepared,
            model_tops,
            slots,
            needed,
            values,
            ..
        } = s;
        let input = |m: usize| {
            let (ids, scores) = self.model_scores(m, models, prepared);
            Input {
                ids,
                scores,
                top: model_tops.get(m),
            }
        };
        let buffers = TermBuffers {
            slots,
            needed,
            values,
        };
        self.explain(pools, predictions, top_k, &input, buffers)
    }
}

/// The answer's first `k` predictions: the pinned node, then the best answerable labels.
fn top_k(
    ranking: &Ranking<'_>,
    k: usize,
    order: &mut Vec<u32>,
    ranked: &mut Vec<Entry>,
) -> Vec<Prediction> {
    let mut predictions = Vec::new();
    let pinned = ranking.pinned;
    predictions.extend(pinned.map(|p| Prediction {
        label: p.label,
        score: p.score,
    }));
    let rest = k - predictions.len();
    let skip = pinned.map(|p| p.label);
    rank_labels(ranking.scores, ranking.tiebreak, skip, rest, order, ranked);
    predictions.extend(ranked.iter().map(|e| Prediction {
        label: e.label,
        score: e.score,
    }));
    predictions
}
