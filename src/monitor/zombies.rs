//! `lastmile zombies`' analysis: every voting member's influence on labelled items, with the
//! accuracy of the ensemble without it (leave-one-out, computed exactly: each item's answer
//! without the member is [`Combiner::influence`](crate::combine::Combiner::influence)'s, which
//! equals the vote among the others), and what `lastmile report` draws: the agreement between
//! the voters across groups and between members, the confidence histogram.
//!
//! A member is a **zombie** when leaving it out changes no answer on the data (pivotal rate 0):
//! it costs its compute share on every request for nothing. It is **harmful** when the ensemble
//! is more accurate without it.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::drift::{self, Counts, Drift, Reference, ReferenceBuilder};
use super::influence::{figures, members_of, Analyser, MemberCounts, MemberFigures};
use crate::combine::Members;
use crate::ensemble::{Ensemble, PredictError};
use crate::eval::LabelledItem;
use crate::scheduler::{ComputePool, Priority};

/// How the analysis runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Items scored together.
    pub batch: usize,
    /// Also vote again without each member for every item, and count where the two differ.
    pub check: bool,
}

/// Everything `lastmile zombies` found, as `--json` prints it and `lastmile report` reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZombieReport {
    pub ensemble: String,
    pub version: String,
    pub digest: String,
    pub manifest: String,
    pub data: String,
    pub items: usize,
    pub compute_threads: usize,
    /// The full ensemble's top-1 accuracy and abstention rate on the data.
    pub top1: f64,
    pub abstention: f64,
    /// Every voting member, in name order.
    pub members: Vec<MemberRow>,
    /// Pairwise top-1 agreement of the voters across groups (each group's models voting alone,
    /// as a manifest of only them; each model outside a group alone).
    pub voters: Agreement,
    /// Pairwise agreement of the members' own best labels.
    pub member_agreement: Agreement,
    /// First-label scores of the answered items, [`drift::BINS`] bins.
    pub confidence: Vec<u64>,
    /// The drift of the data's answers from the manifest's `[monitor] reference`, when it has
    /// one; the reference these answers make otherwise.
    pub drift: Option<Drift>,
    pub reference: Reference,
    /// Why the manifest's `[monitor] reference` could not be read, if it names one.
    pub reference_error: Option<String>,
    pub work: Work,
    /// With `--check`.
    pub exactness: Option<Exactness>,
    /// Filled by `lastmile zombies` once the proposal is verified.
    pub pruning: Option<super::prune::Pruning>,
}

/// One member's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRow {
    #[serde(flatten)]
    pub figures: MemberFigures,
    /// Its own top-1 accuracy.
    pub top1: f64,
    /// The ensemble's top-1 without it.
    pub without_top1: f64,
    /// `without_top1 − top1` of the ensemble: negative when it helps.
    pub without_change: f64,
    /// `zombie`, `harmful` or `useful` (see the module's docs).
    pub verdict: String,
}

/// Pairwise agreement: `rates[i][j]` is the share of items on which `names[i]` and `names[j]`
/// give the same first label.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Agreement {
    pub names: Vec<String>,
    /// The group of each name, when it is a model in one (for drawing group boundaries).
    pub groups: Vec<Option<String>>,
    pub rates: Vec<Vec<f64>>,
}

/// What the leave-one-out answers took.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Work {
    /// Label scores recomputed, per member and item.
    pub labels_per_member: f64,
    /// Member-items settled by voting again.
    pub revoted: u64,
    /// Seconds per item spent on every member's influence (the vote included; after scoring and
    /// readying, which serving does anyway).
    pub influence_seconds_per_item: f64,
}

/// `--check`: the influence against voting again without each member, item by item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exactness {
    pub items: usize,
    pub member_items: u64,
    /// Member-items where the two answers differ (0 is the only right number).
    pub mismatches: u64,
    /// Seconds per item for voting again without every member, against
    /// `work.influence_seconds_per_item`.
    pub revote_seconds_per_item: f64,
}

/// The voters across groups: each group's voting models, and each voting model outside a group.
fn outer_voters(ensemble: &Ensemble) -> Vec<(String, Vec<usize>)> {
    let mut voters: Vec<(String, Vec<usize>)> = Vec::new();
    for m in ensemble.combiner.voters() {
        let spec = &ensemble.models[m].spec;
        match &spec.group {
            Some(g) => match voters.iter_mut().find(|(n, _)| n == g) {
                Some((_, models)) => models.push(m),
                None => voters.push((g.clone(), vec![m])),
            },
            None => voters.push((spec.name.clone(), vec![m])),
        }
    }
    voters.sort_by(|a, b| a.0.cmp(&b.0));
    voters
}

/// Pairwise counts of equal answers.
struct Pairs {
    same: Vec<Vec<u64>>,
}

impl Pairs {
    fn new(n: usize) -> Self {
        Pairs {
            same: vec![vec![0; n]; n],
        }
    }

    fn add(&mut self, answers: &[Option<u32>]) {
        for (i, a) in answers.iter().enumerate() {
            for (j, b) in answers.iter().enumerate() {
                if a.is_some() && a == b {
                    self.same[i][j] += 1;
                }
            }
        }
    }

    fn rates(&self, items: usize) -> Vec<Vec<f64>> {
        let n = items.max(1) as f64;
        self.same
            .iter()
            .map(|row| row.iter().map(|&c| c as f64 / n).collect())
            .collect()
    }
}

/// Runs the analysis over `data`, `progress` hearing how many items each batch scored.
pub fn analyse(
    ensemble: &Arc<Ensemble>,
    pool: &ComputePool,
    data: &[LabelledItem],
    settings: &Settings,
    mut progress: impl FnMut(usize),
) -> Result<ZombieReport, PredictError> {
    let models = ensemble.models.len();
    let voters: Vec<usize> = ensemble.combiner.voters().collect();
    let outer = outer_voters(ensemble);
    let outer_members: Vec<Option<Members>> = outer
        .iter()
        .map(|(_, ms)| {
            let present: Vec<bool> = (0..models).map(|m| ms.contains(&m)).collect();
            ensemble.combiner.members(&present)
        })
        .collect();
    let mut counts = vec![MemberCounts::default(); models];
    let mut own_correct = vec![0u64; models];
    let mut without_correct = vec![0u64; models];
    let (mut correct, mut abstained) = (0u64, 0u64);
    let mut member_pairs = Pairs::new(voters.len());
    let mut voter_pairs = Pairs::new(outer.len());
    let mut reference = ReferenceBuilder::new(ensemble);
    let mut window = Counts::default();
    let bucketing = drift::Bucketing::of(ensemble);
    let mut work = Work::default();
    let (mut labels, mut influence_seconds, mut revote_seconds) = (0u64, 0.0f64, 0.0f64);
    let mut check = settings.check.then_some((0u64, 0u64));
    let mut analyser = Analyser::default();
    for chunk in data.chunks(settings.batch.max(1)) {
        let items: Vec<_> = chunk.iter().map(|l| l.item.clone()).collect();
        let scores = pool
            .score_at(Priority::Normal, ensemble, items.clone())
            .wait()?;
        for (m, c) in counts.iter_mut().enumerate() {
            c.seconds += scores.seconds[m];
        }
        for (row, (item, truth)) in items.iter().zip(chunk).enumerate() {
            let truth = ensemble.labels.id(&truth.label);
            analyser.ready(ensemble, &scores, row, item);
            let started = Instant::now();
            let inf = analyser.influence_readied(ensemble, item);
            influence_seconds += started.elapsed().as_secs_f64();
            labels += inf.work.labels;
            work.revoted += inf.work.revoted as u64;
            let first = inf.answer.predictions.first();
            let top1 = first.map(|p| p.label);
            let right = |l: Option<u32>| truth.is_some() && l == truth;
            correct += right(top1) as u64;
            abstained += first.is_none() as u64;
            let named = first.map(|p| (ensemble.combiner.label_name(p.label), p.score));
            reference.add(named);
            window.add(named.map(|(n, s)| (bucketing.bucket(n), s)));
            for mi in &inf.members {
                counts[mi.model].add(top1.is_some(), mi.pivotal, mi.agrees, mi.share);
                without_correct[mi.model] += right(mi.without) as u64;
            }
            for (m, c) in own_correct.iter_mut().enumerate() {
                *c += right(analyser.model_best(m)) as u64;
            }
            let bests: Vec<Option<u32>> = voters.iter().map(|&m| analyser.model_best(m)).collect();
            member_pairs.add(&bests);
            let outer_answers: Vec<Option<u32>> = outer_members
                .iter()
                .map(|ms| {
                    ms.as_ref()
                        .and_then(|ms| analyser.among(ensemble, ms, item))
                })
                .collect();
            voter_pairs.add(&outer_answers);
            if let Some((member_items, mismatches)) = check.as_mut() {
                let started = Instant::now();
                let want = analyser.reference(ensemble, item);
                revote_seconds += started.elapsed().as_secs_f64();
                *member_items += want.len() as u64;
                *mismatches += want
                    .iter()
                    .zip(&inf.members)
                    .filter(|(w, got)| **w != got.without)
                    .count() as u64;
            }
        }
        progress(chunk.len());
    }
    let n = data.len();
    let rate = |c: u64| c as f64 / n.max(1) as f64;
    let top1 = rate(correct);
    let figures = figures(&members_of(ensemble), &counts, n as u64);
    let members = voters
        .iter()
        .zip(figures)
        .map(|(&m, figures)| {
            let without_top1 = rate(without_correct[m]);
            let verdict = if counts[m].pivotal == 0 {
                "zombie"
            } else if without_top1 > top1 {
                "harmful"
            } else {
                "useful"
            };
            MemberRow {
                figures,
                top1: rate(own_correct[m]),
                without_top1,
                without_change: without_top1 - top1,
                verdict: verdict.into(),
            }
        })
        .collect();
    let member_items = (n * voters.len()).max(1) as f64;
    work.labels_per_member = labels as f64 / member_items;
    work.influence_seconds_per_item = influence_seconds / n.max(1) as f64;
    let reference = reference.finish(ensemble, "the analysed data".into());
    let (drift, reference, reference_error) =
        match ensemble.monitor.reference.as_deref().map(Reference::read) {
            Some(Ok(file)) => (
                Some(drift::drift(&file, &window, &ensemble.monitor)),
                file,
                None,
            ),
            Some(Err(e)) => (None, reference, Some(e)),
            None => (None, reference, None),
        };
    Ok(ZombieReport {
        ensemble: ensemble.name.clone(),
        version: ensemble.version.clone(),
        digest: ensemble.digest.clone(),
        manifest: ensemble.manifest.display().to_string(),
        data: String::new(),
        items: n,
        compute_threads: pool.threads(),
        top1,
        abstention: rate(abstained),
        members,
        voters: Agreement {
            names: outer.iter().map(|(name, _)| name.clone()).collect(),
            groups: vec![None; outer.len()],
            rates: voter_pairs.rates(n),
        },
        member_agreement: Agreement {
            names: voters
                .iter()
                .map(|&m| ensemble.models[m].spec.name.clone())
                .collect(),
            groups: voters
                .iter()
                .map(|&m| ensemble.models[m].spec.group.clone())
                .collect(),
            rates: member_pairs.rates(n),
        },
        confidence: window.confidence.clone(),
        drift,
        reference,
        reference_error,
        work,
        exactness: check.map(|(member_items, mismatches)| Exactness {
            items: n,
            member_items,
            mismatches,
            revote_seconds_per_item: revote_seconds / n.max(1) as f64,
        }),
        pruning: None,
    })
}
