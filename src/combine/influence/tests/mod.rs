//! Influence against its definition: every member's answer without it equals the vote among the
//! others ([`Combiner::influence_reference`]) and the first label of a combiner built without it;
//! hand-worked examples for every strategy, for groups and for rules ([`hand`]), and many random
//! ensembles ([`random`]).

mod hand;
mod random;

use super::super::tests::{build, space, M};
use super::super::{Combiner, ItemView, Readied, Scratch};
use super::Influence;
use crate::labels::LabelSpace;

/// `scores` readied, then [`Combiner::influence`], checked against the re-vote for every member
/// and its answer against `combine_readied`.
#[track_caller]
pub(super) fn influence_of(c: &Combiner, item: &ItemView<'_>, scores: &[Vec<f32>]) -> Influence {
    let mut scratch = Scratch::default();
    let mut rows: Vec<Vec<f32>> = scores.to_vec();
    let readied: Vec<Readied> = rows
        .iter_mut()
        .enumerate()
        .map(|(m, row)| c.ready(m, item, row, &mut scratch))
        .collect();
    let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let readied: Vec<&Readied> = readied.iter().collect();
    let got = c.influence(item, &rows, &readied, &mut scratch);
    let reference = c.influence_reference(item, &rows, &readied, &mut Scratch::default());
    let without: Vec<Option<u32>> = got.members.iter().map(|m| m.without).collect();
    assert_eq!(without, reference, "cheap against the re-vote");
    let plain = ItemView {
        top_k: item.top_k.max(1),
        explain: false,
        ..*item
    };
    let answer = c.combine_readied(&plain, &rows, &readied, &mut Scratch::default());
    assert_eq!(got.answer, answer, "the influence's answer is the answer");
    // The same item again, with the scratch warm: the same result.
    let again = c.influence(item, &rows, &readied, &mut scratch);
    assert_eq!(again, got, "a warm scratch changes nothing");
    got
}

/// The first label, by name, without each model (by name), as `influence_of` finds them.
pub(super) fn without_by_name(
    c: &Combiner,
    models: &[M],
    inf: &Influence,
) -> Vec<(String, String)> {
    inf.members
        .iter()
        .map(|m| {
            let label = m
                .without
                .map_or("(none)".to_owned(), |l| c.label_name(l).to_owned());
            (models[m.model].name.clone(), label)
        })
        .collect()
}

/// An item without text asking for one label.
pub(super) fn item() -> ItemView<'static> {
    ItemView {
        fields: &[],
        top_k: 1,
        candidates: None,
        explain: false,
    }
}

pub(super) fn labels(names: &[&str]) -> LabelSpace {
    space(names)
}

pub(super) fn combiner(config: &str, models: &[M], names: &[&str]) -> Combiner {
    build(config, models, &labels(names))
}
