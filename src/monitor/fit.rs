//! `lastmile cascade fit`: a `[cascade]` fitted on labelled data. Every member is scored once on
//! the data (as `lastmile zombies` scores them, readied as the server readies them); each member's
//! cost is its measured time per row, its merit its agreement with the full ensemble's answer.
//! Candidate first stages are prefixes of the members ranked by agreement, and by agreement per
//! cost; for each candidate cascade (two stages: a prefix, then the rest; three: two nested
//! prefixes, then the rest) the thresholds are searched over the observed test values so that the
//! items the cascade loses (the full ensemble right, the stage that answers wrong) stay within
//! `max_drop` of the data at the least expected compute per item. Items a stage gets right where
//! the full ensemble is wrong earn no credit: counting them against the losses fits thresholds to
//! the calibration data's luck (on the demo, a fit with no drop on its data lost 0.27 points on the
//! validation split), while the losses alone bound the drop from above. The test's value and each
//! stage's answer come from the code the server runs ([`Ensemble::test_value`], the vote among the
//! members run so far), so the fitted accuracy is the accuracy the server's cascade has on the same
//! data.

use std::sync::Arc;

use serde::Serialize;

use crate::combine::Members;
use crate::ensemble::cascade::stops;
use crate::ensemble::manifest::StageTest;
use crate::ensemble::{Ensemble, PredictError};
use crate::eval::LabelledItem;
use crate::monitor::influence::Analyser;
use crate::scheduler::{ComputePool, Priority};

/// How the fit runs.
#[derive(Debug, Clone)]
pub struct FitSettings {
    pub max_drop: f64,
    pub batch: usize,
    pub test: StageTest,
    /// Items used to rank the members (the first ones of the data).
    pub pilot: usize,
}

/// One member's measured figures.
#[derive(Debug, Clone, Serialize)]
pub struct MemberFit {
    pub name: String,
    pub seconds_per_row: f64,
    pub top1: f64,
    /// Share of the pilot items on which its own best label is the full ensemble's.
    pub agreement: f64,
}

/// One fitted stage.
#[derive(Debug, Clone, Serialize)]
pub struct FittedStage {
    pub members: Vec<String>,
    /// None on the last stage.
    pub threshold: Option<f32>,
    /// Share of the items answered at this stage.
    pub answered: f64,
    /// Top-1 accuracy on the items answered at this stage.
    pub top1: f64,
    /// Compute (seconds per item) of running every stage up to this one, as a share of the full
    /// ensemble's.
    pub cost_share: f64,
    /// Members run by an item answered at this stage.
    pub members_run: usize,
}

/// The fit's result.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub items: usize,
    pub test: &'static str,
    pub max_drop: f64,
    pub full_top1: f64,
    pub full_seconds_per_item: f64,
    /// The cascade's top-1 on the data (every stage's answer as the server computes it).
    pub top1: f64,
    /// Expected compute per item as a share of the full ensemble's.
    pub cost_share: f64,
    /// Expected members run per item.
    pub members_run: f64,
    pub stages: Vec<FittedStage>,
    pub members: Vec<MemberFit>,
    pub candidates: usize,
}

/// A candidate stage set (a prefix of one ranking) and what each item does with it.
struct Prefix {
    models: Vec<usize>,
    members: Option<Members>,
    values: Vec<f32>,
    right: Vec<bool>,
}

/// Fits a cascade of `ensemble` on `data`; `progress` hears how many items each batch scored.
pub fn fit(
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    data: &[LabelledItem],
    settings: &FitSettings,
    mut progress: impl FnMut(usize),
) -> Result<Fit, PredictError> {
    let n_models = ensemble.models.len();
    let everyone = ensemble.combiner.members(&vec![true; n_models]);
    let mut analyser = Analyser::default();
    let truth: Vec<Option<u32>> = data.iter().map(|l| ensemble.labels.id(&l.label)).collect();
    // The pilot: each member's agreement with the full ensemble.
    let pilot = &data[..settings.pilot.clamp(1, data.len())];
    let mut agree = vec![0u64; n_models];
    let mut pilot_cost = vec![1e-12f64; n_models];
    for chunk in pilot.chunks(settings.batch.max(1)) {
        let items: Vec<_> = chunk.iter().map(|l| l.item.clone()).collect();
        let scores = pool
            .score_at(Priority::Normal, ensemble, items.clone())
            .wait()?;
        for (m, c) in pilot_cost.iter_mut().enumerate() {
            *c += scores.seconds[m];
        }
        for (row, item) in items.iter().enumerate() {
            analyser.ready(ensemble, &scores, row, item);
            let full = everyone
                .as_ref()
                .and_then(|e| analyser.among(ensemble, e, item));
            for (m, a) in agree.iter_mut().enumerate() {
                *a += (full.is_some() && analyser.model_best(m) == full) as u64;
            }
        }
    }
    let mut seconds = vec![0f64; n_models];
    let by_agreement = ranking(n_models, |m| agree[m] as f64);
    let by_value = ranking(n_models, |m| agree[m] as f64 / pilot_cost[m]);
    let sizes: Vec<usize> = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32]
        .into_iter()
        .filter(|&k| k < n_models)
        .collect();
    let mut prefixes: Vec<Prefix> = Vec::new();
    for order in [&by_agreement, &by_value] {
        for &k in &sizes {
            let mut models = order[..k].to_vec();
            models.sort_unstable();
            if prefixes.iter().any(|p| p.models == models) {
                continue;
            }
            let present: Vec<bool> = (0..n_models).map(|m| models.contains(&m)).collect();
            prefixes.push(Prefix {
                members: ensemble.combiner.members(&present),
                models,
                values: Vec::with_capacity(data.len()),
                right: Vec::with_capacity(data.len()),
            });
        }
    }
    let mut full_right = Vec::with_capacity(data.len());
    let mut own_right = vec![0u64; n_models];
    for (c, chunk) in data.chunks(settings.batch.max(1)).enumerate() {
        let items: Vec<_> = chunk.iter().map(|l| l.item.clone()).collect();
        let scores = pool
            .score_at(Priority::Normal, ensemble, items.clone())
            .wait()?;
        for (m, s) in seconds.iter_mut().enumerate() {
            *s += scores.seconds[m];
        }
        for (row, item) in items.iter().enumerate() {
            let t = truth[c * settings.batch.max(1) + row];
            let right = |l: Option<u32>| t.is_some() && l == t;
            analyser.ready(ensemble, &scores, row, item);
            let full = everyone
                .as_ref()
                .and_then(|e| analyser.among(ensemble, e, item));
            full_right.push(right(full));
            for (m, r) in own_right.iter_mut().enumerate() {
                *r += right(analyser.model_best(m)) as u64;
            }
            for p in &mut prefixes {
                let (value, answer) = match &p.members {
                    Some(ms) => (
                        analyser.test_value(ensemble, settings.test, ms, item),
                        analyser.among(ensemble, ms, item),
                    ),
                    None => (f32::NAN, None),
                };
                p.values.push(value);
                p.right.push(right(answer));
            }
        }
        progress(chunk.len());
    }
    let n = data.len();
    let per_row: Vec<f64> = seconds.iter().map(|s| s / n.max(1) as f64).collect();
    let full_cost: f64 = per_row.iter().sum::<f64>().max(1e-12);
    let cost = |models: &[usize]| models.iter().map(|&m| per_row[m]).sum::<f64>() / full_cost;
    let budget = (settings.max_drop * n as f64 + 1e-9).floor() as usize;
    // The best plan: (expected cost share, stages as (prefix index, threshold)).
    let mut best: (f64, Vec<(usize, f32)>) = (1.0, Vec::new());
    for (i, p) in prefixes.iter().enumerate() {
        let all: Vec<usize> = (0..n).collect();
        let c1 = cost(&p.models);
        // Two stages.
        let (t, stopped, _) = sweep(&p.values, &p.right, &full_right, &all, budget);
        let expected = c1 + (1.0 - stopped as f64 / n as f64) * (1.0 - c1);
        if expected < best.0 {
            best = (expected, vec![(i, t)]);
        }
        // Three stages: a bigger prefix of the same members second.
        for (j, q) in prefixes.iter().enumerate() {
            if q.models.len() <= p.models.len() || !p.models.iter().all(|m| q.models.contains(m)) {
                continue;
            }
            let c2 = cost(&q.models);
            for t1 in candidates(&p.values, 24) {
                let stop1: Vec<bool> = p.values.iter().map(|&v| stops(v, t1)).collect();
                let lost = (0..n)
                    .filter(|&x| stop1[x] && full_right[x] && !p.right[x])
                    .count();
                if lost > budget {
                    continue;
                }
                let rest: Vec<usize> = (0..n).filter(|&x| !stop1[x]).collect();
                let (t2, stopped2, _) =
                    sweep(&q.values, &q.right, &full_right, &rest, budget - lost);
                let s1 = (n - rest.len()) as f64 / n as f64;
                let s2 = stopped2 as f64 / n as f64;
                let expected = c1 + (1.0 - s1) * (c2 - c1) + (1.0 - s1 - s2) * (1.0 - c2);
                if expected < best.0 - 1e-9 {
                    best = (expected, vec![(i, t1), (j, t2)]);
                }
            }
        }
    }
    Ok(describe(
        ensemble,
        settings,
        &prefixes,
        &best.1,
        &full_right,
        &per_row,
        full_cost,
        &own_right,
        &agree,
        pilot.len(),
    ))
}

/// Model indices best first by `merit` (ties: lower index).
fn ranking(n: usize, merit: impl Fn(usize) -> f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| merit(b).total_cmp(&merit(a)).then(a.cmp(&b)));
    order
}

/// Up to `k` thresholds from the observed values (quantiles), and `inf`.
fn candidates(values: &[f32], k: usize) -> Vec<f32> {
    let mut v: Vec<f32> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let mut out: Vec<f32> = (0..k)
        .filter_map(|i| v.get(i * v.len() / k.max(1)).copied())
        .collect();
    out.push(f32::INFINITY);
    out.dedup();
    out
}

/// Among `items` (those reaching this stage), the lowest threshold on `values` such that the
/// items lost where the stage stops (`full_right` but not `right`) number at most `budget`:
/// (threshold, items stopped, items lost).
fn sweep(
    values: &[f32],
    right: &[bool],
    full_right: &[bool],
    items: &[usize],
    budget: usize,
) -> (f32, usize, usize) {
    let mut order: Vec<usize> = items
        .iter()
        .copied()
        .filter(|&x| !values[x].is_nan())
        .collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let (mut best, mut stopped, mut lost) = ((f32::INFINITY, 0usize, 0usize), 0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        // Every item with the same value stops together.
        let v = values[order[i]];
        while i < order.len() && values[order[i]] == v {
            let x = order[i];
            lost += (full_right[x] && !right[x]) as usize;
            stopped += 1;
            i += 1;
        }
        if lost > budget {
            break;
        }
        if v.is_finite() {
            best = (v, stopped, lost);
        }
    }
    best
}

#[allow(clippy::too_many_arguments)]
fn describe(
    ensemble: &Ensemble,
    settings: &FitSettings,
    prefixes: &[Prefix],
    plan: &[(usize, f32)],
    full_right: &[bool],
    per_row: &[f64],
    full_cost: f64,
    own_right: &[u64],
    agree: &[u64],
    pilot: usize,
) -> Fit {
    let n = full_right.len();
    let n_models = ensemble.models.len();
    let name = |m: usize| ensemble.models[m].spec.name.clone();
    let mut stage_of_item: Vec<usize> = vec![plan.len(); n];
    for (x, s) in stage_of_item.iter_mut().enumerate() {
        if let Some(k) = plan
            .iter()
            .position(|&(p, t)| stops(prefixes[p].values[x], t))
        {
            *s = k;
        }
    }
    let mut stages = Vec::new();
    let mut seen: Vec<usize> = Vec::new();
    let (mut correct, mut cost_total, mut run_total) = (0usize, 0f64, 0f64);
    for k in 0..=plan.len() {
        let upto: Vec<usize> = match plan.get(k) {
            Some(&(p, _)) => prefixes[p].models.clone(),
            None => (0..n_models).collect(),
        };
        let own: Vec<usize> = upto.iter().copied().filter(|m| !seen.contains(m)).collect();
        seen = upto.clone();
        let here: Vec<usize> = (0..n).filter(|&x| stage_of_item[x] == k).collect();
        let right_here = here
            .iter()
            .filter(|&&x| match plan.get(k) {
                Some(&(p, _)) => prefixes[p].right[x],
                None => full_right[x],
            })
            .count();
        correct += right_here;
        let cost_share = upto.iter().map(|&m| per_row[m]).sum::<f64>() / full_cost;
        cost_total += cost_share * here.len() as f64;
        run_total += (upto.len() * here.len()) as f64;
        let mut members: Vec<String> = own.iter().map(|&m| name(m)).collect();
        members.sort();
        stages.push(FittedStage {
            members,
            threshold: plan.get(k).map(|&(_, t)| t),
            answered: here.len() as f64 / n.max(1) as f64,
            top1: right_here as f64 / here.len().max(1) as f64,
            cost_share,
            members_run: upto.len(),
        });
    }
    let rate = |c: f64| c / n.max(1) as f64;
    let mut members: Vec<MemberFit> = (0..n_models)
        .map(|m| MemberFit {
            name: name(m),
            seconds_per_row: per_row[m],
            top1: rate(own_right[m] as f64),
            agreement: agree[m] as f64 / pilot.max(1) as f64,
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Fit {
        items: n,
        test: settings.test.as_str(),
        max_drop: settings.max_drop,
        full_top1: rate(full_right.iter().filter(|&&r| r).count() as f64),
        full_seconds_per_item: full_cost,
        top1: rate(correct as f64),
        cost_share: rate(cost_total),
        members_run: rate(run_total),
        stages,
        members,
        candidates: prefixes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Items by value, highest first: 0.9 (right), 0.8 (lost: stage wrong, full right),
    // 0.7 (gained: stage right, full wrong), 0.6 (right), 0.5 (lost).
    const VALUES: [f32; 5] = [0.9, 0.8, 0.7, 0.6, 0.5];
    const RIGHT: [bool; 5] = [true, false, true, true, false];
    const FULL: [bool; 5] = [true, true, false, true, true];

    #[test]
    fn the_sweep_stops_before_the_first_loss_over_budget() {
        let all: Vec<usize> = (0..5).collect();
        // No loss allowed: only the item above the first loss stops.
        assert_eq!(sweep(&VALUES, &RIGHT, &FULL, &all, 0), (0.9, 1, 0));
        // One: down to the item just above the second loss; the gain earns nothing.
        assert_eq!(sweep(&VALUES, &RIGHT, &FULL, &all, 1), (0.6, 4, 1));
        assert_eq!(sweep(&VALUES, &RIGHT, &FULL, &all, 2), (0.5, 5, 2));
    }

    #[test]
    fn the_sweep_sees_only_the_items_that_reach_it_and_ties_stop_together() {
        // Items 0 and 1 answered earlier: the first loss left is item 4.
        assert_eq!(sweep(&VALUES, &RIGHT, &FULL, &[2, 3, 4], 0), (0.6, 2, 0));
        // A tie between a right item and a lost one: both stop or neither.
        let values = [0.9, 0.9, 0.5];
        let right = [true, false, true];
        let full = [true, true, true];
        assert_eq!(
            sweep(&values, &right, &full, &[0, 1, 2], 0),
            (f32::INFINITY, 0, 0)
        );
        // Unscored items (NaN) never stop.
        let values = [f32::NAN, 0.4];
        assert_eq!(
            sweep(&values, &[true, true], &[true, true], &[0, 1], 0),
            (0.4, 1, 0)
        );
    }

    #[test]
    fn candidate_thresholds_are_quantiles_and_infinity() {
        let values: Vec<f32> = (0..10).map(|v| v as f32).collect();
        assert_eq!(
            candidates(&values, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, f32::INFINITY]
        );
        assert_eq!(candidates(&[f32::NAN], 4), vec![f32::INFINITY]);
    }
}
