//! Building a [`Combiner`]: the `[vote]` table, the models and the rules are checked against the
//! label space and the request fields, and every name becomes an id, so that nothing on the
//! per-item path looks up a string or can fail.

use super::config::{
    check, list, non_negative, ConfigError, RuleConfig, VoteConfig, DEFAULT_AGREEMENT_K,
    DEFAULT_SEPARATOR,
};
use super::mathf::{clean, exp, ln, max_clean};
use super::rules::Rule;
use super::seating::Seating;
use super::select::Ids;
use super::strategy::Strategy;
use super::taxonomy::Taxonomy;
use super::{Combiner, ModelView};
use crate::labels::LabelSpace;
use crate::wide::{map_sum, widen, LANES};

/// One voting model, resolved.
#[derive(Debug)]
pub(crate) struct ModelPlan {
    /// Position in the models given to `Combiner::new`.
    pub index: usize,
    /// Weight as configured (explanations report it).
    pub weight: f32,
    /// The `[vote.groups.*]` table it votes in (an index into `Combiner::group_specs`), or None.
    pub group: Option<usize>,
    /// Global label of each score the vote reads; distinct.
    pub(crate) ids: Vec<u32>,
    /// `ids` is 0, 1, 2, ...: scores land on labels without indirection.
    dense: bool,
    /// How many scores the model outputs.
    width: usize,
    prep: Option<Prep>,
}

/// Work done on a model's raw scores before voting, into `Scratch::prepared`.
#[derive(Debug)]
struct Prep {
    /// Several outputs of the model map to one label (a merge): `slots[j]` = index into `ids`.
    slots: Option<Vec<u32>>,
    inv_temperature: f32,
    offset: usize,
}

impl ModelPlan {
    fn new(index: usize, view: &ModelView<'_>, labels: usize, prepared_len: &mut usize) -> Self {
        let mut slot_of = vec![u32::MAX; labels];
        let mut ids = Vec::with_capacity(view.label_ids.len());
        let slots: Vec<u32> = view
            .label_ids
            .iter()
            .map(|&l| {
                let slot = &mut slot_of[l as usize];
                if *slot == u32::MAX {
                    *slot = ids.len() as u32;
                    ids.push(l);
                }
                *slot
            })
            .collect();
        let merged = ids.len() < view.label_ids.len();
        let prep = (merged || view.temperature != 1.0).then(|| {
            let offset = *prepared_len;
            *prepared_len += ids.len();
            Prep {
                slots: merged.then_some(slots),
                inv_temperature: 1.0 / view.temperature,
                offset,
            }
        });
        ModelPlan {
            index,
            weight: view.weight,
            group: None,
            dense: ids.iter().enumerate().all(|(j, &l)| l as usize == j),
            ids,
            width: view.label_ids.len(),
            prep,
        }
    }

    /// This model's raw scores for the item, cut to its declared width.
    fn raw<'a>(&self, per_model: &[&'a [f32]]) -> &'a [f32] {
        let raw = per_model.get(self.index).copied().unwrap_or(&[]);
        &raw[..raw.len().min(self.width)]
    }

    /// Merges and tempers the raw scores into `prepared`, if this model needs it.
    pub(crate) fn prepare(&self, per_model: &[&[f32]], prepared: &mut [f32]) {
        let Some(p) = &self.prep else { return };
        let out = &mut prepared[p.offset..p.offset + self.ids.len()];
        p.apply(self.raw(per_model), out);
    }

    /// [`ModelPlan::prepare`] in place: `scores` (one row as the model answered) ends with the
    /// scores the vote reads, whose number is returned. `tmp` is scratch space.
    pub(crate) fn prepare_in_place(&self, scores: &mut [f32], tmp: &mut Vec<f32>) -> usize {
        let width = scores.len().min(self.width);
        let Some(p) = &self.prep else { return width };
        if p.slots.is_none() {
            // One score per label already: clean and temper where they are.
            p.temper(&mut scores[..width], true);
            return width;
        }
        tmp.resize(self.ids.len(), 0.0);
        p.apply(&scores[..width], tmp);
        let n = self.ids.len().min(scores.len());
        scores[..n].copy_from_slice(&tmp[..n]);
        n
    }

    /// Where this model's scores land, and the scores the vote reads, for a row that went
    /// through [`ModelPlan::prepare_in_place`].
    pub(crate) fn readied<'a>(&'a self, row: &'a [f32]) -> (Ids<'a>, &'a [f32]) {
        (self.ids(), &row[..row.len().min(self.ids.len())])
    }

    fn ids(&self) -> Ids<'_> {
        if self.dense {
            Ids::Dense
        } else {
            Ids::Mapped(&self.ids)
        }
    }

    /// Where this model's scores land, and the scores the vote reads.
    pub(crate) fn scores<'a>(
        &'a self,
        per_model: &[&'a [f32]],
        prepared: &'a [f32],
    ) -> (Ids<'a>, &'a [f32]) {
        let ids = self.ids();
        match &self.prep {
            Some(p) => (ids, &prepared[p.offset..p.offset + self.ids.len()]),
            None => (ids, self.raw(per_model)),
        }
    }
}

impl Prep {
    /// Merges and tempers `raw` (a model's scores) into `out` (one score per label it has).
    fn apply(&self, raw: &[f32], out: &mut [f32]) {
        match &self.slots {
            Some(slots) => {
                out.fill(0.0);
                for (&s, &v) in slots.iter().zip(raw) {
                    out[s as usize] += clean(v);
                }
                self.temper(out, false);
            }
            None => {
                let n = raw.len().min(out.len());
                out[..n].copy_from_slice(&raw[..n]);
                out[n..].fill(0.0);
                self.temper(out, true);
            }
        }
    }

    /// Tempers `scores` where there is a temperature; with `clean_first`, cleans them too (in
    /// temperature's first pass when there is one).
    fn temper(&self, scores: &mut [f32], clean_first: bool) {
        if self.inv_temperature != 1.0 {
            temper(scores, self.inv_temperature, clean_first);
        } else if clean_first {
            clean_all(scores);
        }
    }
}

impl Combiner {
    /// Resolves the manifest's `[vote]`, `[[rule]]` list and models against the label space and
    /// the request fields. Every error names its place in the manifest.
    pub fn new(
        vote: &VoteConfig,
        rules: &[RuleConfig],
        models: &[ModelView<'_>],
        labels: &LabelSpace,
        fields: &[String],
    ) -> Result<Self, ConfigError> {
        let n = labels.len();
        let (outer_strategy, agreement_k, sep) = vote_settings(vote)?;
        let group_specs = group_specs(vote, models)?;
        let order = name_order(models)?;
        check_models(vote, models, &order, &group_specs, n)?;
        let (mut plans, prepared_len) = plan_models(models, &order, &group_specs, n);
        for plan in &mut plans {
            plan.group = group_of(&group_specs, &models[plan.index]);
        }
        let seating = Seating {
            outer: outer_strategy,
            groups: group_specs.iter().map(|g| (g.strategy, g.weight)).collect(),
        };
        let full = seating.pools(&plans, n, |_| true).ok_or_else(|| {
            invalid(
                "vote",
                "no model takes part: every model (or its group) has weight 0",
            )
        })?;
        let model_depth = full
            .groups
            .iter()
            .map(|g| g.strategy.top_depth())
            .chain([agreement_k, full.outer.strategy.top_depth()])
            .max()
            .unwrap_or(1);
        let taxonomy = Taxonomy::new(labels, sep);
        let rules = compile_rules(rules, labels, &taxonomy, fields)?;
        let mut plan_of = vec![None; models.len()];
        for (p, plan) in plans.iter().enumerate() {
            plan_of[plan.index] = Some(p);
        }
        Ok(Combiner {
            labels: n,
            models: plans,
            plan_of,
            full,
            seating,
            model_depth,
            agreement_k,
            taxonomy,
            rules,
            prepared_len,
            influence: std::sync::OnceLock::new(),
        })
    }
}

/// One `[vote.groups.*]` table, checked.
struct GroupSpec<'v> {
    name: &'v str,
    strategy: Strategy,
    weight: f32,
}

/// `[vote]`'s own keys, checked first: the outer strategy, `agreement_k`, the separator.
fn vote_settings(vote: &VoteConfig) -> Result<(Strategy, usize, &str), ConfigError> {
    let outer_strategy =
        Strategy::parse(vote.strategy.as_deref(), vote.rank_k, vote.floor, "vote")?;
    let agreement_k = check(
        vote.agreement_k.unwrap_or(DEFAULT_AGREEMENT_K),
        |k| k >= 1,
        "vote",
        "agreement_k",
        "at least 1",
    )?;
    let sep = vote.label_separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
    check(
        sep.len(),
        |l| l > 0,
        "vote",
        "label_separator",
        "a non-empty string",
    )?;
    Ok((outer_strategy, agreement_k, sep))
}

/// The `[vote.groups.*]` tables with `[vote]`'s defaults filled in; a group no model names fails.
fn group_specs<'v>(
    vote: &'v VoteConfig,
    models: &[ModelView<'_>],
) -> Result<Vec<GroupSpec<'v>>, ConfigError> {
    let mut group_specs = Vec::new();
    for (name, g) in &vote.groups {
        let table = format!("vote.groups.{name}");
        let rank_k = g.rank_k.or(vote.rank_k);
        let strategy = Strategy::parse(
            g.strategy.as_deref(),
            rank_k,
            g.floor.or(vote.floor),
            &table,
        )?;
        let weight = check(
            g.weight.unwrap_or(1.0),
            non_negative,
            &table,
            "weight",
            "a finite number >= 0",
        )?;
        if !models.iter().any(|m| m.group == Some(name.as_str())) {
            return Err(ConfigError::EmptyGroup { place: table });
        }
        group_specs.push(GroupSpec {
            name: name.as_str(),
            strategy,
            weight,
        });
    }
    Ok(group_specs)
}

/// Model indices in name order, so that every sum runs in one order; a repeated name fails.
fn name_order(models: &[ModelView<'_>]) -> Result<Vec<usize>, ConfigError> {
    if models.is_empty() {
        return Err(invalid("vote", "the ensemble has no models"));
    }
    let mut order: Vec<usize> = (0..models.len()).collect();
    order.sort_by(|&a, &b| models[a].name.cmp(models[b].name));
    for pair in order.windows(2) {
        if models[pair[0]].name == models[pair[1]].name {
            return Err(invalid(
                &format!("model {:?}", models[pair[0]].name),
                "two models have this name",
            ));
        }
    }
    Ok(order)
}

/// The group model `m` names, as an index into `groups`, if that group exists.
fn group_of(groups: &[GroupSpec<'_>], m: &ModelView<'_>) -> Option<usize> {
    m.group
        .and_then(|g| groups.iter().position(|s| s.name == g))
}

/// Each model's weight, temperature, group and label ids, checked in name order.
fn check_models(
    vote: &VoteConfig,
    models: &[ModelView<'_>],
    order: &[usize],
    groups: &[GroupSpec<'_>],
    n: usize,
) -> Result<(), ConfigError> {
    for &i in order {
        let m = &models[i];
        let place = format!("model {:?}", m.name);
        check(
            m.weight,
            non_negative,
            &place,
            "weight",
            "a finite number >= 0",
        )?;
        check(
            m.temperature,
            |t| t.is_finite() && t > 0.0,
            &place,
            "temperature",
            "a finite number > 0",
        )?;
        if let (Some(g), None) = (m.group, group_of(groups, m)) {
            return Err(ConfigError::UnknownGroup {
                place,
                group: g.to_owned(),
                groups: list(vote.groups.keys().map(String::as_str)),
            });
        }
        if let Some(bad) = m.label_ids.iter().find(|&&l| l as usize >= n) {
            return Err(invalid(
                &place,
                &format!("label id {bad} is outside the label space ({n} labels)"),
            ));
        }
    }
    Ok(())
}

/// Plans of the models that vote (weight > 0, group weight > 0), and the `prepared` floats used.
fn plan_models(
    models: &[ModelView<'_>],
    order: &[usize],
    groups: &[GroupSpec<'_>],
    n: usize,
) -> (Vec<ModelPlan>, usize) {
    let active = order.iter().copied().filter(|&i| {
        models[i].weight > 0.0
            && group_of(groups, &models[i]).is_none_or(|g| groups[g].weight > 0.0)
    });
    let mut prepared_len = 0;
    let plans = active
        .map(|i| ModelPlan::new(i, &models[i], n, &mut prepared_len))
        .collect();
    (plans, prepared_len)
}

/// Every `[[rule]]`, compiled in manifest order and numbered from 1, as messages name them.
fn compile_rules(
    rules: &[RuleConfig],
    labels: &LabelSpace,
    taxonomy: &Taxonomy,
    fields: &[String],
) -> Result<Vec<Rule>, ConfigError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| Rule::compile(i + 1, r, labels, taxonomy, fields))
        .collect()
}

fn invalid(place: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        place: place.to_owned(),
        reason: reason.to_owned(),
    }
}

widen!(
    /// Every score of `scores` cleaned ([`clean`]).
    fn clean_all(scores: &mut [f32]) = clean_all_body
);

#[inline(always)]
fn clean_all_body(scores: &mut [f32]) {
    scores.iter_mut().for_each(|v| *v = clean(*v));
}

widen!(
    /// Temperature T on one model's scores: p^(1/T), rescaled to the scores' total. Computed as
    /// exp((ln p − ln p_max) / T) so nothing overflows; zeros stay zeros. With `clean_first`, each
    /// score is cleaned ([`clean`]) in the same pass that sums them and finds the largest.
    fn temper(scores: &mut [f32], inv_t: f32, clean_first: bool) = temper_body
);

/// [`temper`], in three passes over the scores (each a few hundred cycles of a model's row that
/// the vote pays for every model of every item): clean, sum and find the largest; temper and sum
/// again ([`map_sum`]); rescale. The first pass sums lane for lane as [`map_sum`] does.
#[inline(always)]
fn temper_body(scores: &mut [f32], inv_t: f32, clean_first: bool) {
    let (mut totals, mut tops) = ([0.0f32; LANES], [0.0f32; LANES]);
    let mut chunks = scores.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let v = if clean_first { clean(c[i]) } else { c[i] };
            c[i] = v;
            totals[i] += v;
            tops[i] = if v > tops[i] { v } else { tops[i] };
        }
    }
    let rest = chunks.into_remainder();
    if clean_first {
        rest.iter_mut().for_each(|v| *v = clean(*v));
    }
    let total = totals.iter().sum::<f32>() + rest.iter().sum::<f32>();
    let top = max_clean(&tops).max(max_clean(rest));
    if top <= 0.0 {
        return;
    }
    let ln_top = ln(top);
    let tempered = |v: f32| {
        let q = exp(inv_t * (ln(v) - ln_top));
        if v >= f32::MIN_POSITIVE {
            q
        } else {
            0.0
        }
    };
    let z = map_sum(scores, tempered);
    if z > 0.0 {
        let k = total / z;
        scores.iter_mut().for_each(|v| *v = clean(*v * k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wide build (AVX2 / AVX-512, where this CPU has them) answers what the baseline build
    /// answers, to the bit.
    #[test]
    fn wide_and_baseline_builds_agree_to_the_bit() {
        let scores: Vec<f32> = (0..1000)
            .map(|i| match i % 7 {
                0 => 0.0,
                1 => f32::NAN,
                _ => ((i * 7919) % 1009) as f32 / 2e4,
            })
            .collect();
        let (mut wide, mut base) = (scores.clone(), scores.clone());
        clean_all(&mut wide);
        clean_all_body(&mut base);
        temper(&mut wide, 1.0 / 1.7, false);
        temper_body(&mut base, 1.0 / 1.7, false);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&wide), bits(&base));
        assert!(wide.iter().all(|v| v.is_finite() && *v >= 0.0));
        // Cleaning in temper's first pass is cleaning first, to the bit.
        let mut fused = scores.clone();
        temper(&mut fused, 1.0 / 1.7, true);
        assert_eq!(bits(&fused), bits(&wide));
    }
}
